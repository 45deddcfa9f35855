"""[cluster] provisioning links made, used or revoked through one node take
effect on the others at once (docs/cluster.md, "How it works").

Nodes and helpers of test_cluster.py (a private PostgreSQL, A on
127.0.0.2, B on 127.0.0.3). A link lives in table prov_links; its row's
trigger notifies the extension, and each other node reads the link
again into its admin's index. Each wait polls a view that does not
count a fetch (GET /api/extensions/N/prov on the node), then the
document is fetched once (/prov/<token>, counted):

  - a link made on A serves the document through B (the password it hands
    out registers at B); renewed on A, the old token is 404 on B and the
    new one is served;
  - revoked on A, B answers 404 as A does (as on one node);
  - with prov_link_max_fetches = 1, the link used through B answers 410
    through A (as on one node after one fetch);
  - made and revoked on A while B's notification listener is away: B's
    resynchronisation (the listener back) brings its links up to date.

A fetch is counted by the database (one UPDATE on the row that still
holds the token, only while the link may serve), not written from a
node's index:

  - a one-time link fetched through A and B at the same moment (each
    connection open first, the two requests sent together) is served
    once: one 200 and one 410, round after round;
  - a link revoked on A while B, not hearing it, counts a fetch: B
    answers 404 and the row is not written back; revoked on both.
"""
import http.client
import json
import threading
import time

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from test_cluster import cluster  # noqa: F401

from test_calls import UA
from test_cluster import nodes, wait_for
from test_cluster_resync import (B_ROLE, b_may_connect, cut_listener,
                                 listener_pids)

PW300 = "secret300"


def both_up(a, b):
    for p in (a, b):
        wait_for("%s sees both nodes up" % p.name,
                 lambda: len(nodes(p)) == 2 and
                 all(n["alive"] for n in nodes(p).values()))


def make_ext(a, b, number):
    """An API extension made on A, known at B."""
    st, j = a.admin.call("POST", "/api/extensions",
                         {"number": number, "password": PW300})
    assert st == 201, j
    wait_for("B knows %s" % number,
             lambda: b.admin.call("GET", "/api/extensions/%s" %
                                  number)[0] == 200)


def token(link):
    return link["url"].rsplit("/", 1)[1]


def link_at(p, ext):
    """(status, link JSON) of ext's link in p's index (not a fetch)."""
    return p.admin.call("GET", "/api/extensions/%s/prov" % ext)


def wait_link(p, ext, tok, timeout=5):
    """p's index has ext's link with token tok; the ms it took."""
    t0 = time.monotonic()
    wait_for("%s has the link of %s" % (p.name, ext),
             lambda: link_at(p, ext)[0] == 200 and
             token(link_at(p, ext)[1]) == tok, timeout=timeout)
    return (time.monotonic() - t0) * 1000


def fetch(p, tok):
    """(status, JSON) of the document fetched through p (counted)."""
    return p.admin.call("GET", "/prov/" + tok, token="")


def test_link_made_on_a_serves_through_b(cluster):
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    both_up(a, b)
    make_ext(a, b, "300")
    st, link = a.admin.call("POST", "/api/extensions/300/prov")
    assert st == 201, link
    ms = wait_link(b, "300", token(link))
    print("link made on A -> in B's index: %.0f ms" % ms)
    assert link_at(b, "300")[1]["fetches_left"] == link["fetches_left"]
    st, doc = fetch(b, token(link))
    assert st == 200, doc
    assert doc["extension"] == "300"
    assert doc["credentials"]["username"] == "300"
    # The password the link hands out (set on A when the link was made)
    # is the extension's at B too.
    ua = UA(b, "300")
    ua.pw = doc["credentials"]["password"]
    assert ua.pw != PW300
    ua.register()
    ua.close()
    # The fetch through B is counted at A (and at B).
    wait_for("A counts B's fetch",
             lambda: link_at(a, "300")[1]["fetches"] == 1, timeout=5)
    assert link_at(b, "300")[1]["fetches"] == 1

    # Renewed on A: the old token is gone on B, the new one served.
    st, link2 = a.admin.call("POST", "/api/extensions/300/prov")
    assert st == 201, link2
    assert token(link2) != token(link)
    wait_link(b, "300", token(link2))
    assert fetch(b, token(link))[0] == 404
    st, doc2 = fetch(b, token(link2))
    assert st == 200 and doc2["extension"] == "300", doc2


def test_link_revoked_on_a_is_revoked_on_b(cluster):
    a = cluster.start("A", "127.0.0.2")
    # A configuration-file extension (100 on both nodes): its link hands
    # out the file's password. Made before B starts: B loads it at start,
    # so only the revocation is the change feed's.
    st, link = a.admin.call("POST", "/api/extensions/100/prov")
    assert st == 201, link
    b = cluster.start("B", "127.0.0.3")
    both_up(a, b)
    assert token(link_at(b, "100")[1]) == token(link)
    st, doc = fetch(b, token(link))
    assert st == 200 and doc["credentials"]["password"] == "pw100", doc
    assert a.admin.call("DELETE", "/api/extensions/100/prov")[0] == 204
    t0 = time.monotonic()
    wait_for("B drops the revoked link",
             lambda: link_at(b, "100")[0] == 404, timeout=5)
    print("link revoked on A -> gone from B's index: %.0f ms" %
          ((time.monotonic() - t0) * 1000))
    # B answers as A does (as one node does for a revoked link).
    st_a, j_a = fetch(a, token(link))
    st_b, j_b = fetch(b, token(link))
    assert st_a == 404 and st_b == 404, (j_a, j_b)
    assert j_b["error"] == j_a["error"] == "unknown or revoked link"
    # Revoked on B, gone on A (each node is the other's peer).
    st, link = b.admin.call("POST", "/api/extensions/100/prov")
    assert st == 201, link
    wait_link(a, "100", token(link))
    assert b.admin.call("DELETE", "/api/extensions/100/prov")[0] == 204
    wait_for("A drops the link revoked on B",
             lambda: link_at(a, "100")[0] == 404, timeout=5)
    assert fetch(a, token(link))[0] == 404


def test_one_time_link_used_through_b_refused_through_a(cluster):
    one = "[admin]\nprov_link_max_fetches = 1\n"
    a = cluster.start("A", "127.0.0.2", extra=one)
    st, j = a.admin.call("POST", "/api/extensions",
                         {"number": "300", "password": PW300})
    assert st == 201, j
    # Made before B starts (B loads it): only the fetch counted through
    # B is the change feed's.
    st, link = a.admin.call("POST", "/api/extensions/300/prov")
    assert st == 201 and link["max_fetches"] == 1, link
    b = cluster.start("B", "127.0.0.3", extra=one)
    both_up(a, b)
    assert token(link_at(b, "300")[1]) == token(link)
    st, doc = fetch(b, token(link))
    assert st == 200 and doc["extension"] == "300", doc
    t0 = time.monotonic()
    wait_for("A sees the link used up",
             lambda: link_at(a, "300")[1]["state"] == "used up", timeout=5)
    print("one-time link used through B -> used up at A: %.0f ms" %
          ((time.monotonic() - t0) * 1000))
    # 410 through A, as through B (and as one node after one fetch).
    st_a, j_a = fetch(a, token(link))
    st_b, j_b = fetch(b, token(link))
    assert st_a == 410 and st_b == 410, (j_a, j_b)
    assert j_a["error"] == j_b["error"]
    assert "used as many times as it may be" in j_a["error"], j_a


def start_b_own_role(cluster, pg_server):  # noqa: F811
    """B started as B_ROLE, so that cut_listener can keep B from hearing."""
    if not pg_server.psql("SELECT 1 FROM pg_roles WHERE rolname = '%s'" %
                          B_ROLE).strip():
        pg_server.psql("CREATE ROLE %s SUPERUSER" % B_ROLE)
    b_may_connect(pg_server, True)
    cluster.dsn = cluster.dsn.replace("user=postgres", "user=" + B_ROLE)
    return cluster.start("B", "127.0.0.3")


def test_resync_brings_links_made_and_revoked_meanwhile(cluster,
                                                        pg_server):  # noqa
    a = cluster.start("A", "127.0.0.2")
    st, old = a.admin.call("POST", "/api/extensions/100/prov")
    assert st == 201, old  # B loads it at start
    b = start_b_own_role(cluster, pg_server)
    both_up(a, b)
    make_ext(a, b, "300")
    assert token(link_at(b, "100")[1]) == token(old)

    try:
        cut_listener(pg_server, b)
        # While B cannot hear: 300's link made, 100's revoked.
        st, new = a.admin.call("POST", "/api/extensions/300/prov")
        assert st == 201, new
        assert a.admin.call("DELETE", "/api/extensions/100/prov")[0] == 204
        assert pg_server.psql(
            "SELECT ext FROM prov_links ORDER BY ext").split() == ["300"]
        assert listener_pids(pg_server) == []
        # B cannot know yet.
        assert link_at(b, "300")[0] == 404
        assert link_at(b, "100")[0] == 200
        # B tried to listen again and was refused: it resynchronises
        # when it gets through, not sooner.
        assert b.wait_log("(retrying)")
    finally:
        b_may_connect(pg_server, True)
    assert b.wait_log("listener connected again")
    wait_link(b, "300", token(new), timeout=2)
    assert b.wait_log("provisioning links read again: 1")
    assert link_at(b, "100")[0] == 404
    assert fetch(b, token(old))[0] == 404
    st, doc = fetch(b, token(new))
    assert st == 200 and doc["extension"] == "300", doc


def fetch_at_once(peers, tok):
    """[(status, JSON)] of the document fetched through each of peers at
    the same moment: every connection is open first, then the requests
    leave together."""
    go = threading.Barrier(len(peers))
    out = [None] * len(peers)

    def run(i, p):
        c = http.client.HTTPConnection("127.0.0.1", p.admin.port, timeout=10)
        try:
            c.connect()
            go.wait(timeout=10)
            c.request("GET", "/prov/" + tok)
            r = c.getresponse()
            out[i] = (r.status, json.loads(r.read() or b"null"))
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(i, p))
               for i, p in enumerate(peers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert all(o is not None for o in out), out
    return out


def test_one_time_link_fetched_through_a_and_b_at_once(cluster,
                                                       pg_server):  # noqa
    one = "[admin]\nprov_link_max_fetches = 1\n"
    a = cluster.start("A", "127.0.0.2", extra=one)
    b = cluster.start("B", "127.0.0.3", extra=one)
    both_up(a, b)
    # Each round a new one-time link of 100 (the file's extension: the
    # document hands out the file's password) made on A.
    for rnd in range(5):
        st, link = a.admin.call("POST", "/api/extensions/100/prov")
        assert st == 201 and link["max_fetches"] == 1, link
        wait_link(b, "100", token(link))
        got = fetch_at_once((a, b), token(link))
        assert sorted(st for st, _ in got) == [200, 410], (rnd, got)
        gone = [j for st, j in got if st == 410][0]
        assert "used as many times as it may be" in gone["error"], gone
        assert pg_server.psql("SELECT fetches FROM prov_links"
                              " WHERE ext = '100'").strip() == "1"
        for p in (a, b):
            wait_for("%s sees the link used up" % p.name,
                     lambda: link_at(p, "100")[1]["state"] == "used up",
                     timeout=5)
            assert link_at(p, "100")[1]["fetches"] == 1


def test_link_revoked_on_a_while_b_counts_stays_revoked(cluster,
                                                        pg_server):  # noqa
    a = cluster.start("A", "127.0.0.2")
    st, link = a.admin.call("POST", "/api/extensions/100/prov")
    assert st == 201, link  # B loads it at start
    b = start_b_own_role(cluster, pg_server)
    both_up(a, b)
    tok = token(link)
    assert token(link_at(b, "100")[1]) == tok
    try:
        # B does not hear the revocation: its fetch comes while the link
        # is still in its index, as one that raced the revocation does.
        cut_listener(pg_server, b)
        assert a.admin.call("DELETE", "/api/extensions/100/prov")[0] == 204
        assert link_at(b, "100")[0] == 200
        st, j = fetch(b, tok)
        assert st == 404 and j["error"] == "unknown or revoked link", j
        # Not written back, and B knows now.
        assert pg_server.psql("SELECT count(*) FROM prov_links").strip() \
            == "0"
        assert link_at(b, "100")[0] == 404
        # B's listener was refused meanwhile: it reads every link again
        # when it gets through.
        assert b.wait_log("(retrying)")
    finally:
        b_may_connect(pg_server, True)
    assert b.wait_log("listener connected again")
    assert b.wait_log("provisioning links read again: 0")
    for p in (a, b):
        assert link_at(p, "100")[0] == 404
        assert fetch(p, tok)[0] == 404
    assert pg_server.psql("SELECT count(*) FROM prov_links").strip() == "0"
