"""[cluster] a node whose notification listener was away resynchronises,
and the resynchronisation removes what another node deleted meanwhile
(docs/cluster.md, "PostgreSQL restarts" and "How it works").

Two nodes (127.0.0.2 = A, 127.0.0.3 = B, test_cluster.py's helpers) over
one private PostgreSQL (pgfixture.py); B connects as a role of its own.
B's LISTEN backend is ended with pg_terminate_backend while that role may
not log in (ALTER ROLE ... NOLOGIN: B's established writer and reader
connections go on working, its listener cannot reconnect), so B misses
every notification of what A does then:

  - A deletes extension 300 through its admin API (300 had a binding held
    by A and a push device);
  - the phone of 200 registered at A unregisters (Expires: 0).

While the listener is away B still has 300 (it cannot know). Once
connections are allowed again B's listener reconnects and resynchronises:
B's own API answers 404 for 300, B's REGISTER of 300 is refused, B keeps
no binding or push device of 300 and no remote binding of 200, and the
phone registered at B itself (100) is still registered there.
"""
import time

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from test_cluster import cluster, wake_cluster  # noqa: F401
from wakeharness import keys, phones  # noqa: F401

from test_cluster import held_by, nodes, wait_for
from wakeharness import VOIP, apns_token, background

PW300 = "secret300"


B_ROLE = "pushpbx_b"


def listener_pids(pg):
    """The pids of B's LISTEN backends (B connects as B_ROLE)."""
    return pg.psql("SELECT pid FROM pg_stat_activity WHERE usename = '%s'"
                   " AND query = 'LISTEN pushpbx'" % B_ROLE).split()


def b_may_connect(pg, yes):
    """B_ROLE may open new connections or not (NOLOGIN: its established
    ones go on)."""
    pg.psql("ALTER ROLE %s %s" % (B_ROLE, "LOGIN" if yes else "NOLOGIN"))


def cut_listener(pg, b):
    """End B's LISTEN backend while B may not log in (b_may_connect
    False), so that B misses every notification until it may again."""
    b_may_connect(pg, False)
    pids = listener_pids(pg)
    assert len(pids) == 1, pids
    assert pg.psql("SELECT pg_terminate_backend(%s)" % pids[0]).strip() \
        == "t"
    assert b.wait_log("listener lost its connection")


def device_exts(p):
    st, j = p.admin.call("GET", "/api/devices")
    assert st == 200, j
    return {d["ext"] for d in j["items"]}


def binding_nodes(p, ext):
    """[node of each binding of ext] in p's GET /api/registrations."""
    st, j = p.admin.call("GET", "/api/registrations")
    assert st == 200, j
    for e in j["items"]:
        if e["number"] == ext:
            return sorted(b["node"] for b in e["bindings"])
    return []


def test_resync_removes_what_was_deleted(wake_cluster, phones,  # noqa: F811
                                         pg_server):  # noqa: F811
    start, sim, cl = wake_cluster
    a = start("A", "127.0.0.2")
    if not pg_server.psql("SELECT 1 FROM pg_roles WHERE rolname = '%s'" %
                          B_ROLE).strip():
        pg_server.psql("CREATE ROLE %s SUPERUSER" % B_ROLE)
    b_may_connect(pg_server, True)
    cl.dsn = cl.dsn.replace("user=postgres", "user=" + B_ROLE)
    b = start("B", "127.0.0.3")
    for p in (a, b):
        wait_for("%s sees both nodes up" % p.name,
                 lambda: len(nodes(p)) == 2 and
                 all(n["alive"] for n in nodes(p).values()))
    st, j = a.admin.call("POST", "/api/extensions",
                         {"number": "300", "password": PW300})
    assert st == 201, j
    wait_for("B knows 300",
             lambda: b.admin.call("GET", "/api/extensions/300")[0] == 200)
    # 300: a push device (committed) and a binding, both at A.
    background(phones(a, "300", password=PW300), ("apns", apns_token(), VOIP))
    assert phones(a, "300", password=PW300).register()["status"] == 200
    away = phones(a, "200")
    assert away.register()["status"] == 200
    mine = phones(b, "100")
    assert mine.register()["status"] == 200
    wait_for("B has 300's push device and the bindings held by A",
             lambda: "300" in device_exts(b) and
             binding_nodes(b, "300") == ["A"] and
             binding_nodes(b, "200") == ["A"])
    assert binding_nodes(b, "100") == ["B"]

    try:
        cut_listener(pg_server, b)
        st, j = a.admin.call("DELETE", "/api/extensions/300")
        assert st in (200, 204), j
        assert away.register(expires=0)["status"] == 200
        wait_for("300 and 200's binding gone from PostgreSQL",
                 lambda: pg_server.psql(
                     "SELECT count(*) FROM extensions WHERE number='300'"
                 ).strip() == "0" and pg_server.psql(
                     "SELECT count(*) FROM bindings WHERE ext IN"
                     " ('200', '300')").strip() == "0")
        # B cannot have heard of it: its listener cannot connect.
        assert listener_pids(pg_server) == []
        assert b.admin.call("GET", "/api/extensions/300")[0] == 200
    finally:
        b_may_connect(pg_server, True)
    t0 = time.monotonic()

    assert b.wait_log("listener connected again")
    wait_for("B forgot 300 (resynchronised)",
             lambda: b.admin.call("GET", "/api/extensions/300")[0] == 404,
             timeout=5)
    print("B may connect again -> 300 gone from B's API: %.0f ms "
          "(listener backoff up to 2 s)" % ((time.monotonic() - t0) * 1000))
    assert b.wait_log("deleted extensions=1")
    assert "300" not in device_exts(b)
    assert binding_nodes(b, "300") == []
    assert binding_nodes(b, "200") == []
    # This node's own live binding is kept.
    assert binding_nodes(b, "100") == ["B"]
    assert held_by(a, "B")()
    # Its REGISTER with the credentials it had is refused: challenged
    # again, as for any unknown extension ([registrar] unknown_ext =
    # challenge, the default), where it got 200 before.
    r = phones(b, "300", password=PW300).register()
    assert r["status"] == 401, r["first"]
