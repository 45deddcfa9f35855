"""[cluster] several pushpbx nodes on one PostgreSQL (docs/cluster.md).

Each test starts a private PostgreSQL (pgfixture.py, one server per module;
PostgreSQL missing = FAIL) and two or three real daemons on loopback
addresses of their own (127.0.0.2 = A, 127.0.0.3 = B), each with its
[cluster] node, advertise and node_timeout_s. Phones are the scripted UAs
of test_calls.py on 127.0.0.1. Every wait polls for an event with a bound
(a node seen up or down, a binding seen at the other node, a message).
"""
import json
import signal
import socket
import subprocess
import time

import pytest

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from wakeharness import keys, phones  # noqa: F401

from conftest import BASE_CONFIG, Pbx
from test_admin import Admin
from test_calls import SDP, Call, Callee, UA
from test_ctl import ctl

TOKEN = "cluster-test-token-0123456789"
TIMEOUT_S = 3

EXTS = """
[extension.100]
password = pw100
[extension.200]
password = pw200
"""


def free_port_on(host):
    """A port free for UDP and TCP on host now."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind((host, 0))
            port = u.getsockname()[1]
            t.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    pytest.fail("no free port on %s" % host)


class Cluster:
    """Nodes of one cluster; each node is a Pbx on its own address."""

    def __init__(self, tmp_path, dsn):
        self.tmp, self.dsn, self.nodes = tmp_path, dsn, []

    def start(self, name, host, extra="", advertise="", tls=False):
        """Start node name on host; advertise is appended to its
        advertise URI (e.g. ";transport=tcp"). tls: also a tls: listener
        on a port of its own, which the advertise URI names (extra then
        carries the [tls] section); tls="sips": a sips: advertise URI."""
        port = listen_port = free_port_on(host)
        listen = "udp:%s:%d tcp:%s:%d" % (host, port, host, port)
        if tls:
            while port == listen_port:
                port = free_port_on(host)
            listen += " tls:%s:%d" % (host, port)
        d = self.tmp / name
        d.mkdir(exist_ok=True)
        conf = (BASE_CONFIG.format(workers=2).replace(
            "udp:127.0.0.1:0 tcp:127.0.0.1:0", listen) +
            "\n[store]\nbackend = postgresql\npostgresql = %s\n"
            "flush_ms = 50\n"
            "\n[cluster]\nnode = %s\nadvertise = %s:%s:%d%s\n"
            "node_timeout_s = %d\n"
            "\n[admin]\nlisten = 127.0.0.1:0\ntoken = %s\n%s%s" %
            (self.dsn, name, "sips" if tls == "sips" else "sip", host, port,
             advertise, TIMEOUT_S, TOKEN, EXTS, extra))
        p = Pbx(d, conf)
        p.host = host
        p.name = name
        p.admin = Admin(p.info["admin_port"], TOKEN)
        self.nodes.append(p)
        return p

    def kill9(self, p):
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait(timeout=10)
        p._err.close()
        p.exit_code = "killed"

    def stop_all(self):
        for p in self.nodes:
            if p.exit_code != "killed":
                p.check_clean_exit()


@pytest.fixture
def cluster(tmp_path, pg_server):
    """The nodes of one test, on an empty database (one PostgreSQL server
    per module, pgfixture.py)."""
    pg_server.reset()
    c = Cluster(tmp_path, pg_server.conninfo)
    yield c
    c.stop_all()


def nodes(p):
    st, j = p.admin.call("GET", "/api/nodes")
    assert st == 200, j
    return {n["name"]: n for n in j["items"]}


def wait_for(what, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.05)


def ua_at(p, ext, tcp=False):
    """A scripted UA (test_calls.UA) talking to node p."""
    ua = UA(p, ext, tcp)
    ua.register()
    return ua


def held_by(p, node, count=1):
    """Node p sees at least count bindings held by node."""
    return lambda: nodes(p).get(node, {}).get("bindings", 0) >= count


# --- (1) heartbeat, the nodes cache, /api/nodes, pushpbxctl nodes ----------

def test_nodes_up_then_down_after_kill9(cluster):
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    for p in (a, b):
        wait_for("%s sees both nodes up" % p.name,
                 lambda: all(n["alive"] for n in nodes(p).values()) and
                 len(nodes(p)) == 2)
    na = nodes(a)
    assert na["A"]["self"] and not na["B"]["self"]
    assert na["B"]["advertise"] == "sip:127.0.0.3:%d" % b.ports["udp"]
    assert na["A"]["calls"] == 0 and na["B"]["calls"] == 0
    st, j = a.admin.call("GET", "/api/nodes")
    assert j["cluster"] is True and j["available"] is True
    rc, out, err = ctl(a, "nodes", token=TOKEN)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NODE", "STATE", "ADVERTISE"]
    assert any(l.split()[:2] == ["A", "up"] and "(this node)" in l
               for l in lines)
    assert any(l.split()[:2] == ["B", "up"] for l in lines)

    t0 = time.monotonic()
    cluster.kill9(b)
    wait_for("A sees B down", lambda: not nodes(a)["B"]["alive"],
             timeout=TIMEOUT_S + 5)
    waited = time.monotonic() - t0
    # Not before node_timeout_s (minus one tick of the 1 s heartbeat).
    assert waited >= TIMEOUT_S - 1.5, waited
    assert a.wait_log("node B is down")
    assert nodes(a)["B"]["calls"] is None  # a node down has none
    rc, out, err = ctl(a, "nodes", token=TOKEN)
    assert any(l.split()[:2] == ["B", "down"] for l in out.splitlines()), out


def test_single_node_lists_itself(start_pbx):
    p = start_pbx(workers=1, extra="[admin]\nlisten = 127.0.0.1:0\n"
                  "token = %s\n" % TOKEN)
    p.admin = Admin(p.info["admin_port"], TOKEN)
    st, j = p.admin.call("GET", "/api/nodes")
    assert st == 200
    assert j["cluster"] is False and len(j["items"]) == 1
    assert j["items"][0]["self"] and j["items"][0]["alive"]


def test_node_needs_postgresql(tmp_path):
    conf = BASE_CONFIG.format(workers=1) + (
        "\n[store]\npath = %s\n\n[cluster]\nnode = A\n"
        "advertise = sip:127.0.0.2:5999\n" % (tmp_path / "x.db"))
    (tmp_path / "c.conf").write_text(conf)
    from conftest import BIN
    r = subprocess.run([BIN, "--config", str(tmp_path / "c.conf")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20, cwd=str(tmp_path))
    assert r.returncode != 0
    assert b"needs [store] backend = postgresql" in r.stderr, r.stderr


def test_advertise_required(tmp_path):
    conf = BASE_CONFIG.format(workers=1) + "\n[cluster]\nnode = A\n"
    (tmp_path / "c.conf").write_text(conf)
    from conftest import BIN
    r = subprocess.run([BIN, "--config", str(tmp_path / "c.conf")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20, cwd=str(tmp_path))
    assert r.returncode != 0
    assert b"advertise is required" in r.stderr, r.stderr


# --- (2) remote bindings + routing via the holding node --------------------

def call_via_b(cluster, advertise="", caller_tcp=False, caller_contact=None):
    """100 registered at A calls 200 registered at B, answered. advertise:
    appended to both nodes' advertise URI; caller_contact: the caller's
    Contact (e.g. a NATed phone's private address)."""
    a = cluster.start("A", "127.0.0.2", advertise=advertise)
    b = cluster.start("B", "127.0.0.3", advertise=advertise)
    callee = ua_at(b, "200")
    caller = UA(a, "100", caller_tcp)
    if caller_contact:
        caller.contact = caller_contact
    caller.register()
    wait_for("A sees 200's binding held by B", held_by(a, "B"))
    call, cl = answered_via_b(a, b, caller, callee)
    return a, b, caller, callee, call, cl


def answered_via_b(a, b, caller, callee, extra=""):
    """caller (at node a) calls callee (at node b), answered and ACKed:
    (Call, Callee); extra: header lines added to the INVITE."""
    call = Call(caller, "200")
    assert call.invite(expect_100=True, extra=extra) is None
    inv = callee.request("INVITE")
    assert inv.ruri.startswith("sip:200@127.0.0.1:%d" % callee.port)
    rr = inv.all("Record-Route")
    rr = [x for v in rr for x in v.split(",")]
    # B (nearest the callee) on top, then A: both record-route.
    assert "127.0.0.3:%d" % b.ports["udp"] in rr[0], rr
    assert "127.0.0.2:%d" % a.ports["udp"] in rr[-1], rr
    assert not inv.get("Route"), inv.raw  # B popped its pp-ext Route
    cl = Callee(callee, inv)
    cl.reply(180)
    assert caller.response("INVITE").status == 180
    call.answered(cl)
    return call, cl


def test_register_at_b_call_from_a_bye_from_caller(cluster):
    a, b, caller, callee, call, cl = call_via_b(cluster)
    call.hang_up(cl)
    assert a.wait_log("call ended answered")
    assert b.wait_log("call ended answered")
    caller.close()
    callee.close()


def test_register_at_b_call_from_a_bye_from_callee(cluster):
    a, b, caller, callee, call, cl = call_via_b(cluster)
    cl.bye()
    bye = caller.request("BYE")
    assert bye.ruri.startswith("sip:100@127.0.0.1:%d" % caller.port)
    caller.answer(bye, 200, call.tag, contact=False)
    assert callee.response("BYE").status == 200
    caller.close()
    callee.close()


def test_pp_ext_from_a_stranger_is_refused(cluster):
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    callee = ua_at(b, "200")
    stranger = UA(b, "100")  # 127.0.0.1: not a node
    route = "<sip:127.0.0.3:%d;lr;pp-ext=200>" % b.ports["udp"]
    stranger.send(stranger.build(
        "INVITE", "sip:200@127.0.0.1:%d" % callee.port,
        "<sip:200@test.local>", "stranger-1", "t1", body=SDP,
        extra="Route: %s\r\n" % route))
    r = stranger.response("INVITE")
    assert r.status == 403, r.raw
    assert "Not A Cluster Node" in r.first
    stranger.close()
    callee.close()


def test_dead_node_bindings_ignored(cluster):
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    callee = ua_at(b, "200")
    caller = ua_at(a, "100")
    wait_for("A sees 200's binding held by B", held_by(a, "B"))
    cluster.kill9(b)
    wait_for("A drops B's bindings",
             lambda: not nodes(a)["B"]["alive"] and
             nodes(a)["B"]["bindings"] == 0, timeout=TIMEOUT_S + 5)
    call = Call(caller, "200")
    assert call.invite() is None
    r = caller.response("INVITE")
    assert r.status == 480, r.raw
    caller.close()
    callee.close()


# --- (3) wake across nodes, (4) admin on A / kill -9 of A -----------------

PUSH_CONF = """
[registrar]
min_expires = 1
digest_algorithms = md5,sha256

[proxy]
ring_timeout_s = {ring}

[apns]
enabled = yes
base_url = {url}
key_file = {key}
key_id = {kid}
team_id = {team}
topic = {bundle}
ca_file = {ca}

[fcm]
enabled = yes
service_account_file = {sa}
base_url = {url}
ca_file = {ca}

[push]
grace_ms = 500
backoff_initial_ms = 100
"""


@pytest.fixture
def wake_cluster(cluster, keys, tmp_path):
    """(start(name, host) -> node with push to one pushsim, sim, cluster)."""
    from wakeharness import (BUNDLE, KID, RING_S, TEAM, Sim,
                             require_pushsim)
    require_pushsim()
    sim = Sim(keys, tmp_path)
    conf = PUSH_CONF.format(ring=RING_S, url=sim.url, key=keys / "apns.p8",
                            kid=KID, team=TEAM, bundle=BUNDLE, ca=sim.ca,
                            sa=sim.sa)
    yield (lambda name, host: cluster.start(name, host, conf)), sim, cluster
    sim.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_wake_call_on_a_register_at_b(wake_cluster, phones, transport):
    from wakeharness import VOIP, apns_token, background
    start, sim, cluster = wake_cluster
    a, b = start("A", "127.0.0.2"), start("B", "127.0.0.3")
    tok = apns_token()
    pn = ("apns", tok, VOIP)
    dev = phones(a, "100", transport=transport)
    background(dev, pn)  # its push device is committed to PostgreSQL
    caller = phones(a, "200")
    call = caller.invite("100")
    push = sim.wait_push(tok)[0]  # A holds the call and pushes
    assert push["payload"]["to"] == "100"
    # The app wakes and registers at the other node (its second proxy).
    dev2 = phones(b, "100", transport=transport)
    t0 = time.monotonic()
    assert dev2.register(pn=pn)["status"] == 200
    from wakeharness import wait_until
    assert wait_until(lambda: dev2.invites_for(call), 5), \
        "no INVITE through B: " + a.stderr()[-3000:]
    took_ms = (time.monotonic() - t0) * 1000
    # The phone polls every 50 ms: the log shows B's 200 -> branch at A.
    print("woken REGISTER at B -> INVITE via B: %.1f ms" % took_ms)
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    assert len(dev2.invites_for(call)) == 1
    assert len(sim.pushes(tok)) == 1


def test_admin_create_on_a_registers_at_b(cluster):
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    t0 = time.monotonic()
    st, j = a.admin.call("POST", "/api/extensions",
                         {"number": "300", "password": "secret300"})
    assert st == 201, j
    wait_for("B knows 300",
             lambda: b.admin.call("GET", "/api/extensions/300")[0] == 200,
             timeout=2.0)
    print("admin create on A -> known at B: %.1f ms" %
          ((time.monotonic() - t0) * 1000))
    ua = UA(b, "300")
    ua.pw = "secret300"
    ua.register()  # asserts the 200
    ua.close()


def test_kill9_a_phones_reregister_at_b_and_are_woken(wake_cluster, phones):
    from wakeharness import PROJECT, fcm_token, background, wait_until
    start, sim, cluster = wake_cluster
    a, b = start("A", "127.0.0.2"), start("B", "127.0.0.3")
    tok = fcm_token()
    pn = ("fcm", tok, PROJECT)
    dev = phones(a, "100")
    background(dev, pn)
    wait_for("B has 100's push device",
             lambda: any(d["ext"] == "100" for d in
                         b.admin.call("GET", "/api/devices")[1]["items"]))
    desk = phones(a, "200")  # a phone registered at A, not in background
    assert desk.register()["status"] == 200
    wait_for("B sees 200 held by A", held_by(b, "A"))
    cluster.kill9(a)
    wait_for("B sees A down", lambda: not nodes(b)["A"]["alive"],
             timeout=TIMEOUT_S + 5)
    # The desk phone re-registers at B (its second proxy / DNS SRV).
    desk2 = phones(b, "200")
    assert desk2.register()["status"] == 200
    # No push device lost: B wakes the app.
    call = desk2.invite("100")
    push = sim.wait_push(tok)[0]
    assert push["payload"]["message"]["data"]["to"] == "100"
    dev2 = phones(b, "100")
    assert dev2.register(pn=pn)["status"] == 200
    assert wait_until(lambda: dev2.invites_for(call), 5)
    final = desk2.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final


# --- (4) a node dies while a call held elsewhere rings a phone via it ------

def ring_via_b(cluster, phones):
    """A and B; 200's desk phone at A and its mobile at B, both ringing a
    call from 100 at A (held on A, the mobile's branch via B)."""
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    desk = phones(a, "200", on_invite="ring")
    mobile = phones(b, "200", on_invite="ring")
    assert desk.register()["status"] == 200
    assert mobile.register()["status"] == 200
    caller = phones(a, "100")
    wait_for("A sees 200's mobile held by B", held_by(a, "B"))
    call = caller.invite("200")
    wait_for("the desk and the mobile (via B) ring",
             lambda: desk.invites_for(call) and mobile.invites_for(call))
    assert caller.wait_call_status(call, lambda s: s == 180, 5)
    return a, b, desk, mobile, caller, call


@pytest.mark.parametrize("moved", ["before", "after"])
def test_node_down_stops_its_branches_phone_rung_at_new_node(cluster, phones,
                                                              moved):
    """The mobile registers at A (its second proxy; the same Contact)
    before or after A declares B down: either way its branch via B stops
    when B is declared down and it rings again via A, while the desk
    keeps the call ringing."""
    a, b, desk, mobile, caller, call = ring_via_b(cluster, phones)

    def move_to_a():
        mobile.on_invite = "answer"
        mobile.pbx = a
        assert mobile.register()["status"] == 200

    t0 = time.monotonic()
    cluster.kill9(b)
    if moved == "before":
        move_to_a()
    wait_for("A sees B down", lambda: not nodes(a)["B"]["alive"],
             timeout=TIMEOUT_S + 5)
    down_s = time.monotonic() - t0
    assert down_s >= TIMEOUT_S - 1.5, down_s
    if moved == "after":
        # The desk still rings: the call goes on.
        assert caller.wait_call_status(call, lambda s: s >= 200, 0.2) is None
        move_to_a()
    wait_for("the mobile rung again, via A",
             lambda: len(mobile.invites_for(call)) == 2, timeout=5)
    assert a.wait_log("branch via a node that is down stopped")
    print("kill -9 of B -> B down at A, its branch stopped: %.1f s "
          "(node_timeout_s = %d)" % (down_s, TIMEOUT_S))
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    wait_for("the desk's branch cancelled", lambda: desk.cancels_for(call),
             timeout=5)


def test_node_down_ends_a_call_ringing_only_via_it(cluster, phones):
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    mobile = phones(b, "200", on_invite="ring")
    assert mobile.register()["status"] == 200
    caller = phones(a, "100")
    wait_for("A sees 200 held by B", held_by(a, "B"))
    call = caller.invite("200")
    assert caller.wait_call_status(call, lambda s: s == 180, 5)
    t0 = time.monotonic()
    cluster.kill9(b)
    # Nothing else rings it: the caller gets 480 once B is declared down
    # (after node_timeout_s), not at the ring timeout (45 s).
    final = caller.wait_final(call, TIMEOUT_S + 5)
    took = time.monotonic() - t0
    print("kill -9 of B -> the caller's final: %.1f s" % took)
    assert final is not None and final["status"] == 480, final
    assert took >= TIMEOUT_S - 1.5, took
