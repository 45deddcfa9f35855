"""Call records live in the store (issue 17 behaviour 1, docs/calls.md):

- SQLite: a finished call's record is in /api/calls after a restart of
  the daemon (the in-memory ring it came from is gone then).
- PostgreSQL: a call handled on node A of a cluster is listed by node B's
  /api/calls, with "node": "A" (the nodes share one table).
"""
from pgfixture import pg_server  # noqa: F401
from test_calls import EXTS, UA, Call
# The cluster's helpers (and its fixture, which needs pg_server above).
from test_cluster import cluster, ua_at, wait_for  # noqa: F401
from test_admin import Admin

TOKEN = "call-records-token-0123456789"


def calls(admin):
    st, j = admin.call("GET", "/api/calls")
    assert st == 200, j
    assert j["available"] is True, j
    return j["items"]


def unanswered_call(ua, callee="300"):
    """ua calls an extension with no binding and no push device: 480."""
    call = Call(ua, callee)
    assert call.invite() is None
    r = call.response()
    assert r.status == 480, r.raw
    call.ack_failure(r)
    return call


def of_call(admin, call):
    return [c for c in calls(admin) if c["call_id"] == call.call_id]


def test_record_survives_restart_sqlite(start_pbx, tmp_path):
    extra = ("[store]\npath = %s\nflush_ms = 50\n"
             "[admin]\nlisten = 127.0.0.1:0\ntoken = %s\n%s" %
             (tmp_path / "pbx.db", TOKEN, EXTS))
    pbx = start_pbx(workers=2, extra=extra)
    admin = Admin(pbx.info["admin_port"], TOKEN)
    ua = UA(pbx, "100")
    ua.register()
    call = unanswered_call(ua)
    ua.close()
    # written behind: in the listing once its batch committed
    first = wait_for("the call in /api/calls", lambda: of_call(admin, call))
    assert pbx.stop() == 0

    pbx2 = start_pbx(workers=2, extra=extra)
    admin2 = Admin(pbx2.info["admin_port"], TOKEN)
    rec = of_call(admin2, call)
    assert rec == first, (rec, first)
    r = rec[0]
    assert (r["from"], r["to"], r["outcome"], r["status"], r["result"]) == \
        ("100", "300", "unavailable", 480, "unavailable 480")
    assert r["node"] == ""  # a single node
    assert r["state"] == "ended" and r["media"] is None
    assert r["started_at"] <= r["ended_at"]


def test_call_on_a_listed_by_b_postgresql(cluster):
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    caller = ua_at(a, "100")
    call = unanswered_call(caller, "200")
    caller.close()
    rec = wait_for("A's call in B's /api/calls",
                   lambda: of_call(b.admin, call))
    assert len(rec) == 1, rec
    assert rec[0]["node"] == "A"
    assert (rec[0]["from"], rec[0]["to"], rec[0]["status"]) == \
        ("100", "200", 480)
    # and A lists the same row
    assert of_call(a.admin, call) == rec
