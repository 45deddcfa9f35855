"""[cluster] Silent refreshes (docs/cluster.md "Refreshes").

A REGISTER refresh at the node that holds the phone (B) rewrites its
binding row without notifying the other nodes (schema version 6: only
inserts, deletes and changes of what nodes route on notify), so node A
keeps the remote binding as it last read it:

- a refresh at B changes nothing at A (A did not read the extension: its
  copy keeps the expiry of the first REGISTER) while a new contact at B
  reaches A;
- a remote binding whose expiry as A read it has passed stays routable
  from A while B is up and the phone refreshes there: a call from A rings
  the phone through B;
- when the binding expires at B, B deletes its row, which notifies, and A
  drops it.

Two real nodes on one private PostgreSQL (test_cluster's fixtures); phones
are the scripted UAs of test_calls.py. Every wait polls for an event with a
bound; the only sleeps are the phone's refresh schedule.
"""
import time

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from test_calls import Call, Callee, UA
from test_cluster import cluster, held_by, ua_at, wait_for  # noqa: F401

EXTRA = """
[registrar]
min_expires = 1

[extension.300]
password = pw300
"""


def bindings_at(p, ext):
    """The bindings of ext node p lists (GET /api/extensions/N/registrations)."""
    st, j = p.admin.call("GET", "/api/extensions/%s/registrations" % ext)
    assert st == 200, j
    return j["items"][0]["bindings"]


def binding_of(p, ext, ua):
    """ua's binding of ext as node p lists it, or None."""
    port = ":%d" % ua.port
    for b in bindings_at(p, ext):
        if port in b["contact"]:
            return b
    return None


def two_nodes(cluster):
    a = cluster.start("A", "127.0.0.2", EXTRA)
    b = cluster.start("B", "127.0.0.3", EXTRA)
    return a, b


def test_refresh_at_b_does_not_reach_a_a_new_contact_does(cluster):
    a, b = two_nodes(cluster)
    phone = UA(b, "200")
    phone.register(expires=30)
    first = wait_for("A sees 200's binding held by B",
                     lambda: binding_of(a, "200", phone))
    assert first["node"] == "B"

    # The refresh: a new expiry (and Call-ID, CSeq) for the same contact.
    phone.register(expires=90)
    at_b = binding_of(b, "200", phone)
    assert at_b["expires_at"] >= first["expires_at"] + 50, (at_b, first)
    # A marker: a new binding of another extension at B, committed after
    # the refresh (notifications come in commit order, and A applies them
    # in order): once A has 300's binding, it heard all it will of 200.
    marker = ua_at(b, "300")
    wait_for("A sees 300's binding", lambda: binding_of(a, "300", marker))
    now = binding_of(a, "200", phone)
    assert now is not None
    assert now["expires_at"] == first["expires_at"], (now, first, at_b)

    # A new contact of 200 at B notifies: A reads 200 again (and then has
    # the refreshed expiry of the first contact too).
    second = UA(b, "200")
    second.register(expires=30)
    wait_for("A sees 200's second contact",
             lambda: binding_of(a, "200", second))
    assert binding_of(a, "200", phone)["expires_at"] == at_b["expires_at"]
    for ua in (phone, marker, second):
        ua.close()


def test_remote_binding_routable_past_its_expiry_while_refreshed(cluster):
    a, b = two_nodes(cluster)
    callee = UA(b, "200")
    t0 = time.monotonic()
    callee.register(expires=2)
    caller = ua_at(a, "100")
    wait_for("A sees 200's binding held by B", held_by(a, "B"))
    # The phone refreshes at B (every 0.7 s, Expires: 2) until the expiry
    # A read (t0 + 2 s) is 1.5 s behind.
    while time.monotonic() - t0 < 3.5:
        time.sleep(0.7)
        callee.register(expires=2)
    listed = binding_of(a, "200", callee)
    assert listed is not None and listed["node"] == "B", bindings_at(a, "200")
    assert listed["expires_in"] > 0, listed

    call = Call(caller, "200")
    assert call.invite(expect_100=True) is None
    inv = callee.request("INVITE")
    assert inv.ruri.startswith("sip:200@127.0.0.1:%d" % callee.port)
    cl = Callee(callee, inv)
    cl.reply(180)
    assert caller.response("INVITE").status == 180
    call.answered(cl)
    call.hang_up(cl)
    caller.close()
    callee.close()


def test_expiry_at_b_deletes_the_row_and_a_drops_the_binding(cluster,
                                                            pg_server):
    a, b = two_nodes(cluster)
    phone = UA(b, "200")
    phone.register(expires=2)
    wait_for("A sees 200's binding held by B",
             lambda: binding_of(a, "200", phone))
    # No refresh: B's expiry sweep (a sixteenth of the shards a second)
    # drops the binding and deletes its row; the delete notifies A.
    wait_for("B deletes the expired row",
             lambda: pg_server.psql(
                 "SELECT count(*) FROM bindings WHERE ext='200'").strip()
             == "0", timeout=30)
    wait_for("A drops B's binding", lambda: not bindings_at(a, "200"),
             timeout=10)
    phone.close()
