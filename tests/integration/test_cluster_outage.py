"""[cluster] A binding removed while its node could not write to PostgreSQL
(docs/cluster.md "PostgreSQL restarts").

Refreshes are silent, so the other nodes keep a remote binding until its
holding node deletes the row (or stops beating): a delete lost in an outage
must be repaired by the holding node. Two nodes (127.0.0.2 = A, 127.0.0.3
= B, test_cluster.py's helpers) over one private PostgreSQL (pgfixture.py):

  - phone 200 and phone 300 register at B; A lists both, held by B;
  - PostgreSQL is stopped; 200 unregisters at B (Expires: 0: answered 200
    from memory, its row's delete is rolled back with its batch, which an
    admin write queued after it and refused proves); 400 registers at B
    (its row's insert is rolled back too);
  - PostgreSQL is started again: once B's writer commits again, B deletes
    200's row (the delete notifies A) and writes 400's row again; A lists
    300 and 400 held by B and no longer 200, and a call from A to 200 gets
    480 from A with no branch (not routed via B, whose binding is gone).

Every wait polls for an event with a bound.
"""
# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from test_calls import UA, Call
from test_cluster import cluster, nodes, wait_for  # noqa: F401

EXTRA = """
[extension.300]
password = pw300
[extension.400]
password = pw400
"""


def bindings_at(p, ext):
    """The bindings of ext node p lists."""
    st, j = p.admin.call("GET", "/api/extensions/%s/registrations" % ext)
    assert st == 200, j
    return j["items"][0]["bindings"]


def rows(pg, ext):
    return pg.psql("SELECT node FROM bindings WHERE ext='%s'" % ext).split()


def test_unregister_during_outage_is_deleted_after_it(cluster, pg_server):
    a = cluster.start("A", "127.0.0.2", EXTRA)
    b = cluster.start("B", "127.0.0.3", EXTRA)
    gone, live = UA(b, "200"), UA(b, "300")
    gone.register()
    live.register()
    caller = UA(a, "100")
    caller.register()
    wait_for("A lists 200 and 300 held by B",
             lambda: [x["node"] for x in bindings_at(a, "200")] == ["B"] and
             [x["node"] for x in bindings_at(a, "300")] == ["B"])
    assert rows(pg_server, "200") == ["B"]

    pg_server.stop()
    gone.register(expires=0)  # answered from memory
    assert bindings_at(b, "200") == []
    late = UA(b, "400")
    late.register()
    # An admin write queued after the delete and the insert: refused once
    # its batch (hence theirs, in the same or an earlier batch) failed.
    st, j = b.admin.call("POST", "/api/extensions",
                         {"number": "900", "password": "pw900pw"})
    assert st in (500, 503), (st, j)
    pg_server.start()

    # B's writer commits again (a heartbeat within 1 s): B repairs its
    # rows. A hears of the delete and of the insert.
    wait_for("A lists 300 and 400 held by B",
             lambda: [x["node"] for x in bindings_at(a, "300")] == ["B"] and
             [x["node"] for x in bindings_at(a, "400")] == ["B"] and
             nodes(a)["B"]["alive"], timeout=15)
    wait_for("A no longer lists 200", lambda: bindings_at(a, "200") == [],
             timeout=10)
    assert [x["node"] for x in bindings_at(a, "300")] == ["B"]
    assert rows(pg_server, "200") == []
    assert rows(pg_server, "300") == ["B"]
    assert rows(pg_server, "400") == ["B"]
    assert b.wait_log("1 row it no longer holds deleted")
    assert nodes(a)["B"]["bindings"] == 2

    # A call from A to 200: no binding anywhere, A answers 480 itself
    # (no branch: not routed via B).
    call = Call(caller, "200")
    assert call.invite() is None
    r = call.response()
    assert r.status == 480, r.raw
    call.ack_failure(r)
    cid = call.call_id

    def record():
        st, j = a.admin.call("GET", "/api/calls")
        assert st == 200, j
        return next((c for c in j["items"] if c["call_id"] == cid and
                     c["node"] == "A"), None)
    rec = wait_for("A's record of the call", record)
    assert rec["status"] == 480 and rec["branches"] == 0, rec
    for ua in (gone, live, late, caller):
        ua.close()
