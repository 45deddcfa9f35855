"""[cluster] PostgreSQL restarted under load (issue 17): the nodes
reconnect and nothing acknowledged is lost.

Two nodes (127.0.0.2 = A, 127.0.0.3 = B, test_cluster.py's helpers) over
one private PostgreSQL (pgfixture.py). While a load thread keeps both nodes
busy with

  - REGISTERs with pn-* parameters (a push device: committed before the
    200), one fresh extension and token each,
  - plain REGISTERs (a binding only), one fresh extension each,
  - admin API creations of extensions (committed before the 201),

PostgreSQL is stopped (pg_ctl -m fast, then -m immediate in the second
case) and started again a few seconds later. Afterwards: both daemons
still run, both nodes beat again (their rows in `nodes` move, /api/nodes
on each shows both up), every write answered 200/201 is in PostgreSQL
(psql), every other answer is an error (500/503, never a timeout or a
false success), and a change made on one node after the restart reaches
the other (the listener reconnected and resynchronised).
"""
import threading
import time

import pytest

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from test_cluster import cluster, wake_cluster  # noqa: F401
from wakeharness import keys, phones  # noqa: F401

from test_cluster import held_by, nodes, wait_for
from wakeharness import VOIP, Phone, apns_token

# Extensions in the configuration of both nodes for the REGISTER load: each
# REGISTER uses a fresh one (so no push device limit evicts an earlier one).
REG_FIRST, REG_COUNT = 3000, 200
OUTAGE_S = 3.0


class Load:
    """One thread sending one write after another, alternating the nodes,
    and recording (kind, node, key, status, t) for each; status None =
    no answer."""

    KINDS = ("pn", "plain", "admin")

    def __init__(self, a, b):
        self.nodes = (a, b)
        self.ops = []
        self.stop = threading.Event()
        self.next_reg = REG_FIRST
        self.next_admin = 6000
        self.err = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def one(self, kind, node):
        t = time.monotonic()
        if kind == "admin":
            key = str(self.next_admin)
            self.next_admin += 1
            st, _ = node.admin.call("POST", "/api/extensions",
                                    {"number": key, "password": "pw" + key})
            return (kind, node.name, key, st, t)
        ext = str(self.next_reg)
        self.next_reg += 1
        assert self.next_reg < REG_FIRST + REG_COUNT, "load ran too long"
        ph = Phone(node, ext)
        try:
            pn = ("apns", apns_token(), VOIP) if kind == "pn" else None
            try:
                r = ph.register(pn=pn)
                st = r["status"]
            except AssertionError:  # "no answer to REGISTER"
                st = None
            key = (ext, pn[1] if pn else "sip:%s@127.0.0.1:%d" % (ext, ph.port))
            return (kind, node.name, key, st, t)
        finally:
            ph.close()

    def run(self):
        try:
            i = 0
            while not self.stop.is_set():
                node = self.nodes[i % 2]
                kind = self.KINDS[(i // 2) % 3]
                self.ops.append(self.one(kind, node))
                i += 1
                self.stop.wait(0.04)
        except Exception as e:  # shown by the test
            self.err = e

    def ok_since(self, t, node):
        return [o for o in self.ops if o[4] >= t and o[1] == node and
                o[3] in (200, 201)]


def heartbeats(pg):
    rows = pg.psql("SELECT name, last_seen FROM nodes ORDER BY name")
    return {l.split("|")[0]: int(l.split("|")[1]) for l in rows.splitlines()}


def pg_stop(pg, mode):
    pg._run(["pg_ctl", "-D", pg.data, "-m", mode, "-w", "stop"])


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_pg_restart_under_load(wake_cluster, pg_server, mode):  # noqa: F811
    start, sim, cl = wake_cluster
    a, b = start("A", "127.0.0.2"), start("B", "127.0.0.3")
    # The REGISTER load's extensions: created through A's admin API
    # (committed) before the load.
    for p in (a, b):
        wait_for("%s sees both nodes up" % p.name,
                 lambda: len(nodes(p)) == 2 and
                 all(n["alive"] for n in nodes(p).values()))
    for n in range(REG_FIRST, REG_FIRST + REG_COUNT):
        st, j = a.admin.call("POST", "/api/extensions",
                             {"number": str(n), "password": "pw%d" % n})
        assert st == 201, j
    wait_for("B knows the load's extensions",
             lambda: b.admin.call("GET", "/api/extensions/%d" %
                                  (REG_FIRST + REG_COUNT - 1))[0] == 200)

    load = Load(a, b)
    load.thread.start()
    try:
        wait_for("writes acknowledged on both nodes before the outage",
                 lambda: load.ok_since(0, "A") and load.ok_since(0, "B"))
        time.sleep(0.5)  # load before the outage (a rate, not an event)
        t_down = time.monotonic()
        pg_stop(pg_server, mode)
        time.sleep(OUTAGE_S)  # the outage itself lasts this long
        pg_server.start()
        t_up = time.monotonic()
        # Both nodes write again: a push device committed on each.
        wait_for("a write acknowledged on A and B after the restart",
                 lambda: any(o[0] == "pn" for o in load.ok_since(t_up, "A"))
                 and any(o[0] == "pn" for o in load.ok_since(t_up, "B")),
                 timeout=15)
    finally:
        load.stop.set()
        load.thread.join(timeout=20)
    assert load.err is None, repr(load.err)
    assert not load.thread.is_alive()

    # No crash.
    for p in (a, b):
        assert p.proc.poll() is None, p.name + " died: " + p.stderr()[-3000:]

    # Heartbeats move again and each node sees both up.
    beats_before = heartbeats(pg_server)
    assert set(beats_before) == {"A", "B"}, beats_before
    wait_for("both heartbeat rows move",
             lambda: all(v > beats_before[k]
                         for k, v in heartbeats(pg_server).items()),
             timeout=5)
    for p in (a, b):
        wait_for("%s sees both nodes up after the restart" % p.name,
                 lambda: all(n["alive"] for n in nodes(p).values()),
                 timeout=5)

    # Every answer is a success or an error answer; the outage refused.
    statuses = [o[3] for o in load.ops]
    assert None not in statuses, [o for o in load.ops if o[3] is None]
    bad = [o for o in load.ops if o[3] not in (200, 201, 500, 503)]
    assert not bad, bad
    refused = [o for o in load.ops if o[3] in (500, 503)]
    assert refused, "no write was refused during the outage"
    during = [o for o in load.ops if t_down + 0.5 <= o[4] <= t_up - 0.2 and
              o[0] in ("pn", "admin")]
    assert during, "no committed write tried during the outage"
    assert all(o[3] in (500, 503) for o in during), \
        "a committed write answered success while PostgreSQL was down: %s" \
        % [o for o in during if o[3] not in (500, 503)]

    # Everything acknowledged is in PostgreSQL. Push devices and admin
    # writes were committed before their answer; the binding rows of plain
    # REGISTERs are write-behind: a node writes its bindings again when its
    # store's writer commits again after failed batches, so they are
    # awaited (bounded).
    def lost():
        devs = set(pg_server.psql("SELECT prid FROM push_devices").split())
        exts = set(pg_server.psql("SELECT number FROM extensions").split())
        binds = set(pg_server.psql("SELECT ext || ' ' || uri || ' ' || node"
                                   " FROM bindings").splitlines())
        out = []
        for kind, node, key, st, t in load.ops:
            if st not in (200, 201):
                continue
            if kind == "admin" and key not in exts:
                out.append((kind, node, key))
            elif kind == "pn" and key[1] not in devs:
                out.append((kind, node, key))
            elif kind == "plain" and \
                    "%s %s %s" % (key[0], key[1], node) not in binds:
                out.append((kind, node, key))
        return out
    n_ok = sum(1 for o in load.ops if o[3] in (200, 201))
    print("%s: %d writes, %d acknowledged, %d refused (%.1f s outage)" %
          (mode, len(load.ops), n_ok, len(refused), t_up - t_down))
    deadline = time.monotonic() + 5
    while lost() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lost(), "acknowledged but not in PostgreSQL: %s" % lost()

    # The listener resynchronised: a change on one node reaches the other.
    st, j = a.admin.call("POST", "/api/extensions",
                         {"number": "7000", "password": "pw7000"})
    assert st == 201, j
    wait_for("B knows 7000 (created on A after the restart)",
             lambda: b.admin.call("GET", "/api/extensions/7000")[0] == 200,
             timeout=3)
    ph = Phone(b, "7000")
    try:
        assert ph.register()["status"] == 200
        wait_for("A sees 7000's binding held by B", held_by(a, "B"),
                 timeout=3)
    finally:
        ph.close()
