"""[media] calls between two phones behind NAT, through a real NAT.

Network namespaces made per test (their names carry the pid):

    phone A 10.201.1.2 -- R1 (masquerade) 10.201.10.2 --+
                                                        | pub: pushpbx and
    phone B 10.201.2.2 -- R2 (masquerade) 10.201.20.2 --+ rtpengine on
                                                          10.201.10.1 /
                                                          10.201.20.1

pub does not forward: a packet for a phone's private address dies there,
as on the Internet. Each phone (nat_phone.py, run in its namespace)
registers from its SIP socket, puts its private address in Contact and
SDP, sends G.711 RTP from its media port to the address the other side's
SDP names, and counts the RTP packets it receives. No address outside
these namespaces is used; everything is torn down at teardown, even on
failure. A missing `ip` or `iptables` fails the test.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import conftest
from conftest import sanitizer_report

HERE = os.path.dirname(os.path.abspath(__file__))
PHONE = os.path.join(HERE, "nat_phone.py")
PUB_A, PUB_B = "10.201.10.1", "10.201.20.1"
PBX_IP = PUB_A

TOKEN = "media-test-token-0123456789"
EXTS = """
[admin]
listen = 127.0.0.1:0
token = media-test-token-0123456789

[proxy]
ring_timeout_s = 3

[registrar]
digest_algorithms = md5,sha256

[extension.100]
password = pw100
[extension.200]
password = pw200
"""


def sh(*cmd, ns=None, check=True, timeout=10):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        pytest.fail("%s: %s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return r


class Net:
    """The namespaces, veths, routes and NAT rules of one test."""

    def __init__(self):
        for tool in ("ip", "iptables"):
            if not shutil.which(tool):
                pytest.fail("%s not installed (scripts/install-deps)" % tool)
        tag = "%d" % (os.getpid() % 100000)
        self.ns = {k: "pp%s%s" % (k, tag) for k in ("pub", "r1", "r2", "a",
                                                    "b")}
        self.made = []
        self.procs = []
        for ns in self.ns.values():
            sh("ip", "netns", "del", ns, check=False)
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        n = self.ns
        self._link(n["pub"], "eA" + tag, PUB_A + "/24", n["r1"], "wA" + tag,
                   "10.201.10.2/24")
        self._link(n["pub"], "eB" + tag, PUB_B + "/24", n["r2"], "wB" + tag,
                   "10.201.20.2/24")
        self._link(n["r1"], "lA" + tag, "10.201.1.1/24", n["a"], "pA" + tag,
                   "10.201.1.2/24")
        self._link(n["r2"], "lB" + tag, "10.201.2.1/24", n["b"], "pB" + tag,
                   "10.201.2.2/24")
        sh("sysctl", "-qw", "net.ipv4.ip_forward=0", ns=n["pub"])
        for r, wan, gw in ((n["r1"], "wA" + tag, PUB_A),
                           (n["r2"], "wB" + tag, PUB_B)):
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=r)
            sh("ip", "route", "add", "default", "via", gw, ns=r)
            sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j",
               "MASQUERADE", ns=r)
        sh("ip", "route", "add", "default", "via", "10.201.1.1", ns=n["a"])
        sh("ip", "route", "add", "default", "via", "10.201.2.1", ns=n["b"])

    def _link(self, ns1, if1, addr1, ns2, if2, addr2):
        sh("ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer",
           "name", if2, "netns", ns2)
        sh("ip", "addr", "add", addr1, "dev", if1, ns=ns1)
        sh("ip", "addr", "add", addr2, "dev", if2, ns=ns2)
        sh("ip", "link", "set", if1, "up", ns=ns1)
        sh("ip", "link", "set", if2, "up", ns=ns2)

    def popen(self, ns, cmd, **kw):
        p = subprocess.Popen(("ip", "netns", "exec", ns) + tuple(cmd), **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in reversed(self.made):  # deleting a namespace drops its veths
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def net():
    n = Net()
    try:
        yield n
    finally:
        n.close()


def ng_in(net, port, body, timeout=1.0):
    """One ng request to the rtpengine in pub (its loopback); the answer
    body (bytes) or None."""
    code = ("import socket,sys;s=socket.socket(socket.AF_INET,"
            "socket.SOCK_DGRAM);s.settimeout(%r);"
            "s.sendto(b'c1 '+sys.stdin.buffer.read(),('127.0.0.1',%d))\n"
            "try:\n d=s.recv(65536);sys.stdout.buffer.write(d[3:])\n"
            "except socket.timeout: sys.exit(3)" % (timeout, port))
    r = subprocess.run(("ip", "netns", "exec", net.ns["pub"], sys.executable,
                        "-c", code), input=body, capture_output=True,
                       timeout=timeout + 10)
    return r.stdout if r.returncode == 0 else None


def admin_in(net, pbx, path):
    """GET path on the admin API of the pushpbx in pub (JSON, or the text
    of /metrics)."""
    code = ("import urllib.request,sys;r=urllib.request.Request("
            "'http://127.0.0.1:%d%s',headers={'authorization':"
            "'Bearer %s'});sys.stdout.write(urllib.request.urlopen(r,"
            "timeout=5).read().decode())" % (pbx.info["admin_port"], path,
                                            TOKEN))
    r = subprocess.run(("ip", "netns", "exec", net.ns["pub"], sys.executable,
                        "-c", code), capture_output=True, text=True,
                       timeout=15)
    assert r.returncode == 0, r.stderr
    return r.stdout if path == "/metrics" else json.loads(r.stdout)


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    raise AssertionError("no metric " + name)


class NsRtpengine:
    def __init__(self, net, tmp_path):
        exe = shutil.which("rtpengine") or "/usr/bin/rtpengine"
        if not os.access(exe, os.X_OK):
            pytest.fail("rtpengine not installed (scripts/install-deps)")
        self.net = net
        self.port = 22223  # the namespace's own loopback: nothing else there
        self.log_path = tmp_path / "rtpengine.log"
        self._log = open(self.log_path, "wb")
        self.proc = net.popen(net.ns["pub"], [
            exe, "--config-file=none", "--table=-1",
            "--interface=%s" % PBX_IP,
            "--listen-ng=127.0.0.1:%d" % self.port, "--port-min=30000",
            "--port-max=30099", "--foreground", "--log-stderr",
            "--log-level=6", "--delete-delay=0"],
            stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while ng_in(net, self.port, b"d7:command4:pinge", 0.3) != \
                b"d6:result4:ponge":
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail("rtpengine did not start: " +
                            self.log_path.read_text(errors="replace"))

    def calls(self):
        """Call-IDs rtpengine still has (ng list)."""
        body = ng_in(self.net, self.port, b"d7:command4:list5:limiti100ee")
        assert body is not None, "rtpengine did not answer list"
        return body.count(b"@")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def pub_pbx(net, tmp_path, monkeypatch, start_pbx):
    """start(media) -> (pbx, rtpengine or None): pushpbx in pub, listening
    on PBX_IP, with rtpengine when media names a [media] section."""
    wrapper = tmp_path / "pushpbx-in-pub"
    wrapper.write_text("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n" % (
        net.ns["pub"], conftest.BIN))
    wrapper.chmod(0o755)
    monkeypatch.setattr(conftest, "BIN", str(wrapper))
    started = []

    def start(relay=None, on_failure="pass"):
        rtp = None
        extra = EXTS
        if relay:
            rtp = NsRtpengine(net, tmp_path)
            started.append(rtp)
            extra += ("\n[media]\nrtpengine = udp:127.0.0.1:%d\nrelay = %s\n"
                      "timeout_ms = 200\non_failure = %s\n" % (
                          rtp.port, relay, on_failure))
        p = start_pbx(workers=2, extra=extra,
                      sets=["sip.listen=udp:%s:0" % PBX_IP])
        return p, rtp

    yield start
    for r in started:
        r.stop()


def phone(net, tmp_path, who, role, pbx, **opt):
    ext, pw = ("100", "pw100") if who == "a" else ("200", "pw200")
    ip = "10.201.1.2" if who == "a" else "10.201.2.2"
    cmd = [sys.executable, PHONE, "--role", role, "--ip", ip, "--proxy",
           PBX_IP, "--proxy-port", str(pbx.ports["udp"]), "--user", ext,
           "--password", pw, "--timeout", "25"]
    ready = tmp_path / ("ready-" + who)
    cmd += ["--ready", str(ready)]
    for k, v in opt.items():
        if v is True:
            cmd.append("--" + k.replace("_", "-"))
        else:
            cmd += ["--" + k.replace("_", "-"), str(v)]
    p = net.popen(net.ns[who], cmd, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True)
    p.ready = ready
    return p


def result(p):
    try:
        out, err = p.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pytest.fail("phone printed no result: %s %s" % (out, err))


def call(net, tmp_path, pbx, caller_opt=None, callee_opt=None):
    """B registers and waits; A registers and calls B. Returns (a, b)."""
    b = phone(net, tmp_path, "b", "callee", pbx, **(callee_opt or {}))
    deadline = time.monotonic() + 10
    while not b.ready.exists():
        assert b.poll() is None, "callee ended: %s" % (result(b),)
        assert time.monotonic() < deadline, "callee did not register"
        time.sleep(0.02)
    a = phone(net, tmp_path, "a", "caller", pbx, callee="200",
              **(caller_opt or {}))
    return result(a), result(b)


def test_nat_without_relay_no_audio(net, tmp_path, pub_pbx):
    """Without relay each side is told to send to the other's private
    address: the call connects, and not one RTP packet crosses."""
    pbx, _ = pub_pbx(relay=None)
    a, b = call(net, tmp_path, pbx)
    assert a["ok"] and b["ok"], (a, b)
    assert a["rtp_sent"] > 40 and b["rtp_sent"] > 40, (a, b)
    assert a["rtp_received"] == 0 and b["rtp_received"] == 0, (a, b)
    assert "c=IN IP4 10.201.2.2" in a["answer_sdp"]


def test_nat_relay_audio_both_ways(net, tmp_path, pub_pbx):
    """relay = always: both phones get rtpengine's address and port, the
    RTP flows both ways (endpoint learning through the NATs), the caller's
    BYE reaches the callee at its NAT address (pp-nb), and the delete
    leaves rtpengine with no call."""
    pbx, rtp = pub_pbx(relay="always")
    a, b = call(net, tmp_path, pbx)
    assert a["ok"] and b["ok"], (a, b, rtp.log_path.read_text()[-3000:])
    assert "c=IN IP4 %s" % PBX_IP in a["answer_sdp"], a["answer_sdp"]
    assert "c=IN IP4 %s" % PBX_IP in b["offer_sdp"], b["offer_sdp"]
    assert a["answer_cl"] == str(len(a["answer_sdp"].encode())), a
    assert a["rtp_received"] >= 20 and b["rtp_received"] >= 20, (
        "RTP did not flow both ways: A got %d, B got %d" %
        (a["rtp_received"], b["rtp_received"]))
    assert a["bye_status"] == 200, a
    assert wait_no_calls(rtp) == 0, "rtpengine still has the call after BYE"


def test_nat_callee_hangs_up(net, tmp_path, pub_pbx):
    """Signalling NAT: the callee's BYE names the caller's private Contact
    (10.201.1.2) as its Request-URI; the proxy sends it to where the
    caller's requests came from (pp-na), so the caller gets it."""
    pbx, rtp = pub_pbx(relay="nat")
    a, b = call(net, tmp_path, pbx, caller_opt={"wait_bye": True},
                callee_opt={"hangup": True, "seconds": 1.0})
    assert a["ok"] and b["ok"], (a, b)
    assert a.get("bye_from_peer") and b["bye_status"] == 200, (a, b)
    assert a["rtp_received"] >= 10 and b["rtp_received"] >= 10, (a, b)


def wait_no_calls(rtp, timeout=5):
    deadline = time.monotonic() + timeout
    while rtp.calls() and time.monotonic() < deadline:
        time.sleep(0.1)
    return rtp.calls()


def test_nat_relay_figures(net, tmp_path, pub_pbx):
    """The delete's figures land in the call record (/api/calls), and
    /metrics shows the relay up and the relayed call."""
    pbx, rtp = pub_pbx(relay="always")
    a, b = call(net, tmp_path, pbx)
    assert a["ok"] and b["ok"], (a, b)
    deadline = time.monotonic() + 5
    while True:
        calls = admin_in(net, pbx, "/api/calls")["items"]
        m = calls[0]["media"] if calls else None
        if (m and m["stats"]) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert m and m["stats"], calls
    assert m["caller_packets"] >= 20 and m["callee_packets"] >= 20, m
    assert m["flag"] == "", m
    text = admin_in(net, pbx, "/metrics")
    assert metric(text, "pushpbx_media_relay_up") == 1
    assert metric(text, "pushpbx_media_calls_total") == 1
    relays = admin_in(net, pbx, "/api/media")["items"]
    assert relays[0]["state"] == "up", relays


def test_nat_cancel_deletes(net, tmp_path, pub_pbx):
    """CANCEL while the callee rings: 487, and the offer's session is
    deleted (rtpengine lists no call)."""
    pbx, rtp = pub_pbx(relay="always")
    a, b = call(net, tmp_path, pbx, caller_opt={"cancel": True,
                                                "expect_fail": True},
                callee_opt={"no_answer": True})
    assert a["ok"] and a["status"] == 487, a
    assert b["ok"] and b.get("cancelled"), b
    assert wait_no_calls(rtp) == 0, "session left after CANCEL"


def test_nat_ring_timeout_deletes(net, tmp_path, pub_pbx):
    """The ring time passes (3 s): the caller gets 480 and the session is
    deleted."""
    pbx, rtp = pub_pbx(relay="always")
    a, b = call(net, tmp_path, pbx, caller_opt={"expect_fail": True},
                callee_opt={"no_answer": True})
    assert a["ok"] and a["status"] == 480, a
    assert b.get("cancelled"), b
    assert wait_no_calls(rtp) == 0, "session left after the ring timeout"


def test_nat_srtp_bridging(net, tmp_path, pub_pbx):
    """A mobile app offering RTP/SAVP (SDES) calls a UDP desk phone: the
    desk gets plain RTP/AVP, the app gets RTP/SAVP with rtpengine's key,
    and the desk's RTP reaches the app encrypted (10 bytes of
    HMAC-SHA1-80 tag on each packet)."""
    pbx, rtp = pub_pbx(relay="always")
    a, b = call(net, tmp_path, pbx, caller_opt={"srtp": True})
    assert a["ok"] and b["ok"], (a, b)
    assert b["offer_proto"] == "RTP/AVP", b["offer_sdp"]
    assert "a=crypto" not in b["offer_sdp"], b["offer_sdp"]
    assert a["answer_proto"] == "RTP/SAVP", a["answer_sdp"]
    assert "a=crypto:" in a["answer_sdp"], a["answer_sdp"]
    assert a["rtp_received"] >= 20, a
    assert a["rtp_sizes"] == [182], a  # 12 + 160 + 10


@pytest.mark.parametrize("mode", ["pass", "reject"])
def test_nat_rtpengine_down(net, tmp_path, pub_pbx, mode):
    """rtpengine stopped: with pass the call goes on without relay (the
    SDP untouched, counted); with reject the caller gets 503. /metrics
    shows the relay down."""
    pbx, rtp = pub_pbx(relay="always", on_failure=mode)
    rtp.stop()
    a, b = call(net, tmp_path, pbx,
                caller_opt={"expect_fail": True} if mode == "reject" else {},
                callee_opt={"timeout": 6} if mode == "reject" else {})
    text = admin_in(net, pbx, "/metrics")
    assert metric(text, "pushpbx_media_relay_up") == 0, text
    assert metric(text, "pushpbx_media_failures_total") >= 1
    if mode == "pass":
        assert a["ok"] and b["ok"], (a, b)
        assert "c=IN IP4 10.201.2.2" in a["answer_sdp"], a
        assert metric(text, "pushpbx_media_passed_total") == 1
    else:
        assert a["ok"] and a["status"] == 503, a
        assert metric(text, "pushpbx_media_rejected_total") == 1
        b_proc_result = b
        assert not b_proc_result["ok"], b  # never rung
