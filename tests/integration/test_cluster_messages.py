"""[cluster] stored messages across nodes (docs/cluster.md, docs/messages.md).

Two nodes (A on 127.0.0.2, B on 127.0.0.3) on a private PostgreSQL, push to
one pushsim (the helpers and fixtures of test_cluster.py). The app (100)
goes to background at A; the sender is 200 (a Python phone answering the
407):

  - a MESSAGE stored on A for the sleeping app is delivered when the app
    registers at B, once; B's delivery removes it from A too: the app
    registering at A afterwards does not get it again;
  - messages stored on A and on B for one app get different ids (one
    sequence for the cluster): the app gets both, none replaced;
  - messages sent alternately to B and A are delivered in the order sent
    (arrival order across nodes), not by id (ids come in blocks per node:
    A's block is below B's).
"""
import pytest

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from test_cluster import (cluster, nodes, wait_for,  # noqa: F401
                          wake_cluster)
from wakeharness import (VOIP, apns_token, background, hget, keys,
                         phones)  # noqa: F401

APP, SENDER = "100", "200"


def stored(p):
    """{ext: count} of node p's message index (GET /api/messages)."""
    st, j = p.admin.call("GET", "/api/messages")
    assert st == 200, j
    return {x["ext"]: x["count"] for x in j["items"]}


def both_up(a, b):
    """Each node sees the other up: a request B routes via A (a remote
    binding B still has) is not refused as from a stranger (403 Not A
    Cluster Node) because A has not read B's first heartbeat yet."""
    for p in (a, b):
        wait_for("%s sees both nodes up" % p.name,
                 lambda: len(nodes(p)) == 2 and
                 all(n["alive"] for n in nodes(p).values()))


def app_device_at(p):
    return lambda: any(d["ext"] == APP for d in
                       p.admin.call("GET", "/api/devices")[1]["items"])


def asleep_at_both(a, b):
    """Wait until both nodes see each other up and B knows the app only
    as asleep (its push device, no binding at A): until then B may still
    fork a MESSAGE to the app's old binding via A, or A may not yet take
    B for a node (403 Not A Cluster Node)."""
    for p in (a, b):
        wait_for("%s sees both nodes up" % p.name,
                 lambda: len(nodes(p)) == 2 and
                 all(n["alive"] for n in nodes(p).values()), timeout=5)
    wait_for("B has the app's push device and no binding at A",
             lambda: app_device_at(b)() and
             nodes(b)["A"].get("bindings", 0) == 0, timeout=5)


def test_stored_on_a_delivered_at_b_once(wake_cluster, phones):
    start, sim, _ = wake_cluster
    a, b = start("A", "127.0.0.2"), start("B", "127.0.0.3")
    both_up(a, b)
    pn = ("apns", apns_token(), VOIP)
    background(phones(a, APP), pn)
    snd = phones(a, SENDER)
    r = snd.message(APP, "stored on A", call_id="clmsg-1")
    assert r["status"] == 202, r["first"]
    sim.wait_push(pn[1], kind="message")  # A pushed
    # B heard the write: its index has the message too.
    wait_for("B's index has the message", lambda: stored(b) == {APP: 1},
             timeout=5)
    # The app wakes and registers at B: B delivers it.
    app = phones(b, APP)
    assert app.register(pn=pn)["status"] == 200
    m = app.wait_messages(1)[0]
    assert m["body"] == "stored on A"
    assert hget(m, "call-id") == "clmsg-1"
    # Delivered: gone from the table, so from A's index as well.
    wait_for("A's index empty", lambda: stored(a) == {}, timeout=5)
    wait_for("B's index empty", lambda: stored(b) == {}, timeout=5)
    # The app goes to background at B and registers at A next: A has
    # nothing to deliver again. A MESSAGE sent to
    # the live binding afterwards is the next (and only other) one the
    # app gets.
    assert app.register(pn=pn, expires=0)["status"] == 200
    app_a = phones(a, APP)
    assert app_a.register(pn=pn)["status"] == 200
    r = snd.message(APP, "live at A", call_id="clmsg-2")
    assert r["status"] == 200, r["first"]
    got = app_a.wait_messages(1)
    assert [x["body"] for x in got] == ["live at A"]
    assert [x["body"] for x in app.messages] == ["stored on A"]
    assert len(sim.pushes(pn[1])) == 1


def test_messages_stored_on_both_nodes_keep_their_ids(wake_cluster, phones):
    start, sim, _ = wake_cluster
    a, b = start("A", "127.0.0.2"), start("B", "127.0.0.3")
    both_up(a, b)
    pn = ("apns", apns_token(), VOIP)
    background(phones(a, APP), pn)
    asleep_at_both(a, b)
    r = phones(a, SENDER).message(APP, "via A", call_id="ids-a")
    assert r["status"] == 202, r["first"]
    r = phones(b, SENDER).message(APP, "via B", call_id="ids-b")
    assert r["status"] == 202, r["first"]
    pushes = sim.wait_push(pn[1], count=2, kind="message")
    ids = [int(p["payload"]["message_id"]) for p in pushes]
    assert len(set(ids)) == 2, ids  # one sequence for every node
    wait_for("both nodes index both", lambda: stored(a) == {APP: 2} and
             stored(b) == {APP: 2}, timeout=5)
    app = phones(b, APP)
    assert app.register(pn=pn)["status"] == 200
    got = app.wait_messages(2)
    # In the order they arrived (A's was stored first).
    assert [x["body"] for x in got] == ["via A", "via B"]
    wait_for("A's index empty", lambda: stored(a) == {}, timeout=5)
    wait_for("B's index empty", lambda: stored(b) == {}, timeout=5)


def test_messages_via_both_nodes_in_order_sent(wake_cluster, phones):
    """Four messages for the sleeping app, sent alternately to B and A
    (each answered 202 before the next is sent), reach the app in the
    order sent. A started first, so its ids are below B's: by id the
    order would be A's two, then B's two."""
    start, sim, _ = wake_cluster
    a, b = start("A", "127.0.0.2"), start("B", "127.0.0.3")
    pn = ("apns", apns_token(), VOIP)
    background(phones(a, APP), pn)
    asleep_at_both(a, b)
    via = {"A": phones(a, SENDER), "B": phones(b, SENDER)}
    sent = [("B", "one"), ("A", "two"), ("B", "three"), ("A", "four")]
    ids = {}
    for n, (node, text) in enumerate(sent, 1):
        r = via[node].message(APP, text, call_id="order-%d" % n)
        assert r["status"] == 202, r["first"]
        push = sim.wait_push(pn[1], count=n, kind="message")[-1]
        ids[text] = int(push["payload"]["message_id"])
    # The ids are not in the order sent (blocks per node).
    assert sorted(ids, key=ids.get) != [t for _, t in sent], ids
    wait_for("both nodes index all four", lambda: stored(a) == {APP: 4} and
             stored(b) == {APP: 4}, timeout=5)
    app = phones(b, APP)
    assert app.register(pn=pn)["status"] == 200
    got = app.wait_messages(4)
    assert [x["body"] for x in got] == [t for _, t in sent]
    assert [hget(x, "call-id") for x in got] == \
        ["order-%d" % n for n in range(1, 5)]
    wait_for("A's index empty", lambda: stored(a) == {}, timeout=5)
    wait_for("B's index empty", lambda: stored(b) == {}, timeout=5)
