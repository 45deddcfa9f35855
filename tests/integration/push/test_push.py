"""Integration tests of the push clients (src/push) against pushsim.

Each test starts its own pushsim on 127.0.0.1 ephemeral ports with keys made
at test time by `openssl`, drives the C client through the `push-send` tool
(stdin commands, JSON lines out) and checks both what the client reported
and what pushsim received (GET /pushes, /stats).

Needs env PUSHSIM and PUSH_SEND (paths of the binaries); ctest sets them.
"""
import json
import os
import select
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

PUSHSIM = os.environ.get("PUSHSIM")
PUSH_SEND = os.environ.get("PUSH_SEND")
TEAM = "TEAM123456"
KID = "KEYID12345"
BUNDLE = "com.example.phone"
TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

@pytest.fixture(autouse=True)
def _tools_built():
    """A missing pushsim or push-send fails each test (never a skip)."""
    if not (PUSHSIM and PUSH_SEND and os.path.exists(PUSHSIM)
            and os.path.exists(PUSH_SEND)):
        pytest.fail("PUSHSIM / PUSH_SEND not built: %r %r"
                    % (PUSHSIM, PUSH_SEND))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(d / "apns.p8")],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", str(d / "rsa.pem")],
                   check=True, capture_output=True)
    return d


class Sim:
    def __init__(self, keys, tmp, token_ttl=None, port=None, cert=None):
        """port: listen there (a restart); cert: (cert, key) files to serve
        instead of a certificate made at start."""
        self.tmp = tmp
        # The service account must name the token URL, so the HTTPS port is
        # chosen first; retry if someone takes it meanwhile.
        for _ in range(5):
            self.https_port = port or free_port()
            sa = {"type": "service_account", "project_id": "demo-proj",
                  "private_key_id": "k1",
                  "private_key": (keys / "rsa.pem").read_text(),
                  "client_email": "svc@demo-proj.iam.gserviceaccount.com",
                  "token_uri": f"https://127.0.0.1:{self.https_port}/token"}
            self.sa = tmp / "sa.json"
            self.sa.write_text(json.dumps(sa))
            ready = tmp / "ready.json"
            if ready.exists():
                ready.unlink()
            args = [PUSHSIM, "--listen", f"127.0.0.1:{self.https_port}",
                    "--control", "127.0.0.1:0",
                    "--cert-out", str(tmp / "cert.pem"),
                    "--ready-file", str(ready),
                    "--apns-key", f"{KID}:{TEAM}:{keys / 'apns.p8'}",
                    "--apns-topic", BUNDLE, "--fcm-account", str(self.sa)]
            if token_ttl:
                args += ["--fcm-token-ttl", str(token_ttl)]
            if cert:
                args += ["--cert", str(cert[0]), "--key", str(cert[1])]
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                         stderr=open(tmp / "sim.err", "w"))
            deadline = time.time() + 10
            while time.time() < deadline and self.proc.poll() is None:
                if ready.exists() and ready.stat().st_size > 0:
                    try:
                        info = json.loads(ready.read_text())
                        break
                    except ValueError:
                        pass
                time.sleep(0.02)
            else:
                self.proc.kill()
                self.proc.wait()
                continue
            self.control = info["control_port"]
            self.url = f"https://127.0.0.1:{self.https_port}"
            self.ca = tmp / "cert.pem"
            return
        raise RuntimeError("pushsim did not start")

    def get(self, path):
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.control}{path}", timeout=5) as r:
            return json.loads(r.read())

    def post(self, path, body):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.control}{path}",
            data=json.dumps(body).encode(), method="POST",
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def pushes(self):
        return self.get("/pushes")["pushes"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def sim(keys, tmp_path):
    s = Sim(keys, tmp_path)
    yield s
    s.stop()


class Tool:
    """push-send as a child: write commands, read JSON lines."""

    def __init__(self, sim, keys, *extra):
        args = [PUSH_SEND, "--apns-url", sim.url,
                "--apns-key", str(keys / "apns.p8"), "--apns-key-id", KID,
                "--apns-team", TEAM, "--apns-topic", BUNDLE,
                "--fcm-account", str(sim.sa), "--fcm-url", sim.url,
                "--ca", str(sim.ca), "--log-level", "warn", *extra]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.fd = self.proc.stdout.fileno()
        self.pending = b""

    def readline(self, timeout):
        # Own buffer: select() cannot see lines already sitting in a
        # TextIOWrapper's buffer.
        end = time.time() + timeout
        while b"\n" not in self.pending:
            left = end - time.time()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return ""
                self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def until_idle(self, timeout=30):
        """Send "wait" and collect result lines until "idle"."""
        self.cmd("wait")
        out, end = [], time.time() + timeout
        while True:
            line = self.readline(end - time.time())
            assert line is not None, f"push-send timed out; got {out}"
            assert line, f"push-send exited; got {out}"
            ev = json.loads(line)
            if ev["event"] == "idle":
                return out
            out.append(ev)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.returncode == 0


@pytest.fixture
def tool(sim, keys):
    tools = []

    def make(*extra):
        t = Tool(sim, keys, *extra)
        tools.append(t)
        return t
    yield make
    for t in tools:
        t.close()


def one(results):
    assert len(results) == 1, results
    return results[0]


def test_apns_voip_call_then_missed_alert(sim, tool):
    t = tool()
    t.cmd(f"send apns {TOKEN} {TEAM}.{BUNDLE}.voip call 1 30 Alice cid-1")
    call = one(t.until_idle())
    t.cmd(f"send apns {TOKEN} {TEAM}.{BUNDLE}.voip missed 1 0 Alice cid-1")
    missed = one(t.until_idle())
    assert call["status"] == "delivered" and call["http"] == 200
    assert call["attempts"] == 1
    assert missed["status"] == "delivered"
    p = sim.pushes()
    assert len(p) == 2
    h0, h1 = p[0]["headers"], p[1]["headers"]
    assert p[0]["token"] == TOKEN
    assert h0["apns-topic"] == BUNDLE + ".voip"
    assert h0["apns-push-type"] == "voip"
    assert h0["apns-priority"] == "10"
    assert h0["apns-id"] == call["id"]
    exp = int(h0["apns-expiration"])
    assert abs(exp - (time.time() + 30)) < 5
    # The missed-call push is an alert to the bundle (never a second VoIP
    # push) and replaces the call notification: same collapse id.
    assert h1["apns-topic"] == BUNDLE
    assert h1["apns-push-type"] == "alert"
    assert h1["apns-collapse-id"] == h0["apns-collapse-id"]
    assert "apns-expiration" not in h1
    pl = p[0]["payload"]
    assert pl["v"] == 1 and pl["type"] == "call"
    assert pl["call_id"] == "cid-1" and pl["from"] == "101"
    assert pl["from_name"] == "Alice" and pl["to"] == "100"
    assert pl["expires_at"] == exp
    alert = p[1]["payload"]["aps"]["alert"]
    assert alert["loc-key"] == "CALL_MISSED"
    assert alert["loc-args"] == ["Alice"]


def test_fcm_data_message(sim, tool):
    t = tool()
    t.cmd("send fcm fcm-token-1 - call 1 30 Bob cid-2")
    r = one(t.until_idle())
    assert r["status"] == "delivered", r
    assert r["id"].startswith("projects/demo-proj/messages/")
    p = one(sim.pushes())
    assert p["provider"] == "fcm" and p["project"] == "demo-proj"
    m = p["payload"]["message"]
    assert m["token"] == "fcm-token-1"
    assert m["data"]["type"] == "call" and m["data"]["v"] == "1"
    assert m["data"]["caller"] == "101" and m["data"]["from_name"] == "Bob"
    assert all(isinstance(v, str) for v in m["data"].values())
    assert m["android"]["priority"] == "HIGH"
    ttl = int(m["android"]["ttl"].rstrip("s"))
    assert 25 <= ttl <= 30
    assert m["android"]["collapse_key"].startswith("c-")
    assert sim.get("/stats")["tokens_issued"] == 1


def test_apns_message_is_an_alert_per_conversation(sim, tool):
    """[messages]: a message push to a device registered with a VoIP
    pn-param goes as an alert to the bundle topic (never a VoIP push),
    with mutable-content, the text as preview, and one collapse id per
    conversation (same sender and extension), accepted by pushsim."""
    t = tool()
    t.cmd(f"send apns {TOKEN} {TEAM}.{BUNDLE}.voip message 1 604800 Bob "
          "m-1 running late 😀")
    r1 = one(t.until_idle())
    t.cmd(f"send apns {TOKEN} {TEAM}.{BUNDLE}.voip message 1 604800 Bob "
          "m-2 -")
    r2 = one(t.until_idle())
    assert r1["status"] == "delivered" and r1["http"] == 200, r1
    assert r2["status"] == "delivered", r2
    p = sim.pushes()
    assert len(p) == 2
    h0, h1 = p[0]["headers"], p[1]["headers"]
    for h in (h0, h1):
        assert h["apns-push-type"] == "alert"
        assert h["apns-topic"] == BUNDLE
        assert h["apns-priority"] == "10"
        assert h["apns-collapse-id"].startswith("m-")
    assert h0["apns-collapse-id"] == h1["apns-collapse-id"]
    assert abs(int(h0["apns-expiration"]) - (time.time() + 604800)) < 5
    pl = p[0]["payload"]
    assert pl["v"] == 1 and pl["type"] == "message"
    assert pl["message_id"] == "m-1" and pl["from"] == "101"
    assert pl["from_name"] == "Bob" and pl["to"] == "100"
    assert pl["preview"] == "running late 😀"
    assert pl["aps"]["mutable-content"] == 1
    assert pl["aps"]["alert"] == {"title": "Bob",
                                  "body": "running late 😀"}
    # Preview off: no text of the message leaves the PBX.
    pl = p[1]["payload"]
    assert pl["preview"] == "" and pl["aps"]["alert"]["body"] == "New message"


def test_fcm_message_is_a_high_priority_data_message(sim, tool):
    t = tool()
    t.cmd("send fcm fcm-token-1 - message 1 3600 Bob m-7 hello")
    r = one(t.until_idle())
    assert r["status"] == "delivered", r
    m = one(sim.pushes())["payload"]["message"]
    assert "notification" not in m
    assert m["data"]["type"] == "message" and m["data"]["preview"] == "hello"
    assert m["data"]["message_id"] == "m-7" and m["data"]["caller"] == "101"
    assert m["android"]["priority"] == "HIGH"
    assert m["android"]["collapse_key"].startswith("m-")
    assert 3595 <= int(m["android"]["ttl"].rstrip("s")) <= 3600


@pytest.mark.parametrize("kind", ["message 1 3600 Bob m-1 hi",
                                  "missed 1 0 Alice cid-9"])
def test_alert_to_voip_device_not_for_topic_keeps_device(sim, tool, kind):
    """An alert to the bundle topic of a device that registered a VoIP
    pn-param carries the device's VoIP token, which Apple may refuse for
    the bundle (400 DeviceTokenNotForTopic): that says nothing about the
    token's VoIP use, so the push fails and the device is kept (a dead
    token would delete it and end its call pushes)."""
    sim.post("/faults", {"provider": "apns", "action": "status",
                         "status": 400, "reason": "DeviceTokenNotForTopic",
                         "count": 1})
    t = tool()
    t.cmd(f"send apns {TOKEN} {TEAM}.{BUNDLE}.voip {kind}")
    r = one(t.until_idle())
    assert r["status"] == "failed", r
    assert r["http"] == 400 and r["reason"] == "DeviceTokenNotForTopic"
    assert r["attempts"] == 1


def test_dead_token_still_reported_for_own_topic(sim, tool):
    """The same answer to a push on the device's own topic is a dead
    token, as before."""
    sim.post("/faults", {"provider": "apns", "action": "status",
                         "status": 400, "reason": "DeviceTokenNotForTopic",
                         "count": 1})
    t = tool()
    t.cmd(f"send apns {TOKEN} {TEAM}.{BUNDLE} message 1 3600 Bob m-1 hi")
    r = one(t.until_idle())
    assert r["status"] == "dead_token", r


@pytest.mark.parametrize("provider,token,http,reason", [
    ("apns", TOKEN, 410, "Unregistered"),
    ("fcm", "fcm-dead-token", 404, "UNREGISTERED"),
])
def test_dead_token(sim, tool, provider, token, http, reason):
    sim.post("/dead", {"token": token})
    t = tool()
    t.cmd(f"send {provider} {token} - call 1 30")
    r = one(t.until_idle())
    assert r["status"] == "dead_token", r
    assert r["http"] == http and r["reason"] == reason
    assert r["attempts"] == 1


def gaps_ms(pushes):
    return [b["time_ms"] - a["time_ms"] for a, b in zip(pushes, pushes[1:])]


def test_429_retry_after_is_honoured(sim, tool):
    sim.post("/faults", {"provider": "apns", "action": "status",
                         "status": 429, "reason": "TooManyRequests",
                         "retry_after": 1, "count": 1})
    t = tool("--backoff-ms", "50")
    t.cmd(f"send apns {TOKEN} - call 1 30")
    r = one(t.until_idle())
    assert r["status"] == "delivered" and r["attempts"] == 2, r
    p = sim.pushes()
    assert [x["status"] for x in p] == [429, 200]
    gap = gaps_ms(p)[0]
    print(f"429 Retry-After: 1 -> retried after {gap} ms")
    assert 1000 <= gap < 1500


def test_503_backoff_grows(sim, tool):
    sim.post("/faults", {"provider": "fcm", "action": "status",
                         "status": 503, "count": 3})
    t = tool("--backoff-ms", "200", "--backoff-max-ms", "2000")
    t.cmd("send fcm fcm-token-2 - call 1 30")
    r = one(t.until_idle())
    assert r["status"] == "delivered" and r["attempts"] == 4, r
    p = sim.pushes()
    assert [x["status"] for x in p] == [503, 503, 503, 200]
    g = gaps_ms(p)
    print(f"503 backoff gaps: {g} ms")
    # equal jitter: delay n lies in [d/2, d] with d = 200, 400, 800
    assert 100 <= g[0] <= 260
    assert 200 <= g[1] <= 460
    assert 400 <= g[2] <= 860


def test_retry_stops_at_deadline(sim, tool):
    sim.post("/faults", {"provider": "apns", "action": "status",
                         "status": 503, "count": 1000})
    t = tool("--backoff-ms", "300", "--max-attempts", "100")
    start = time.time()
    t.cmd(f"send apns {TOKEN} - call 1 2")
    r = one(t.until_idle())
    took = time.time() - start
    assert r["status"] == "retry_exhausted" and r["http"] == 503, r
    assert 1 < r["attempts"] < 15
    assert took < 3.5


def test_apns_jwt_refreshed_after_expired_provider_token(sim, tool):
    t = tool()
    t.cmd(f"send apns {TOKEN} - call 1 30")
    assert one(t.until_idle())["status"] == "delivered"
    sim.post("/faults", {"provider": "apns",
                         "action": "expire_provider_tokens"})
    t.cmd(f"send apns {TOKEN} - call 1 30")
    r = one(t.until_idle())
    assert r["status"] == "delivered" and r["attempts"] == 2, r
    p = sim.pushes()
    assert [x["status"] for x in p] == [200, 403, 200]
    assert p[1]["reason"] == "ExpiredProviderToken"
    # The new token keeps working without another refresh.
    t.cmd(f"send apns {TOKEN} - call 3 30")
    assert [x["attempts"] for x in t.until_idle()] == [1, 1, 1]


def test_fcm_oauth_token_refreshed_after_401(sim, tool):
    t = tool()
    t.cmd("send fcm fcm-token-3 - call 1 30")
    assert one(t.until_idle())["status"] == "delivered"
    sim.post("/faults", {"provider": "fcm", "action": "expire_access_tokens"})
    t.cmd("send fcm fcm-token-3 - call 5 30")
    res = t.until_idle()
    assert [x["status"] for x in res] == ["delivered"] * 5, res
    assert sim.get("/stats")["tokens_issued"] == 2


def test_stream_reset_is_retried(sim, tool):
    sim.post("/faults", {"provider": "apns", "action": "reset", "count": 1})
    t = tool("--backoff-ms", "50")
    t.cmd(f"send apns {TOKEN} - call 1 30")
    r = one(t.until_idle())
    assert r["status"] == "delivered" and r["attempts"] == 2, r


def test_goaway_reconnects(sim, tool):
    t = tool("--backoff-ms", "50")
    t.cmd(f"send apns {TOKEN} - call 1 30")
    assert one(t.until_idle())["status"] == "delivered"
    sim.post("/faults", {"provider": "apns", "action": "goaway", "count": 1})
    t.cmd(f"send apns {TOKEN} - call 1 30")
    r = one(t.until_idle())
    assert r["status"] == "delivered", r
    assert sim.get("/stats")["connections"] == 2


def test_hung_stream_times_out_and_retries(sim, tool):
    sim.post("/faults", {"provider": "apns", "action": "hang", "count": 1})
    t = tool("--timeout-ms", "500", "--backoff-ms", "50")
    t.cmd(f"send apns {TOKEN} - call 1 30")
    r = one(t.until_idle())
    assert r["status"] == "delivered" and r["attempts"] == 2, r
    assert r["latency_ms"] >= 500


def cpu_s(pid):
    """User + system CPU seconds of process pid so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_connection_closed_by_provider(keys, tmp_path):
    """The client keeps watching a connection no push uses (client.c keeps
    its uv_poll between pushes). When the provider closes it meanwhile, the
    client must stop watching it rather than spin on the readable socket,
    and the next push must go out on a new connection."""
    cert, key = tmp_path / "srv.pem", tmp_path / "srv.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    (tmp_path / "a").mkdir()
    first = Sim(keys, tmp_path / "a", cert=(cert, key))
    t = Tool(first, keys)
    try:
        t.cmd(f"send apns {TOKEN} - call 1 30")
        assert one(t.until_idle())["status"] == "delivered"
        first.stop()  # closes the idle connection under the client
        # A spinning loop burns a core (at least 0.1 s a second even on a
        # loaded machine); an idle one next to nothing.
        before = cpu_s(t.proc.pid)
        time.sleep(1.0)
        used = cpu_s(t.proc.pid) - before
        assert used < 0.05, f"push-send used {used:.2f} s CPU while idle"
        (tmp_path / "b").mkdir()
        second = Sim(keys, tmp_path / "b", port=first.https_port,
                     cert=(cert, key))
        try:
            t.cmd(f"send apns {TOKEN} - call 1 30")
            r = one(t.until_idle())
            assert r["status"] == "delivered" and r["attempts"] == 1, r
            assert second.get("/stats")["connections"] == 1
        finally:
            second.stop()
    finally:
        t.close()
        first.stop()


def test_100_concurrent_pushes_share_one_connection(sim, tool):
    t = tool()
    t.cmd(f"send apns {TOKEN} - call 100 30")
    res = t.until_idle()
    assert len(res) == 100
    assert all(r["status"] == "delivered" for r in res)
    st = sim.get("/stats")
    assert st["connections"] == 1, st
    assert st["pushes"]["apns"]["total"] == 100
    ids = {r["id"] for r in res}
    assert len(ids) == 100


def test_bad_topic_fails_with_reason(sim, tool):
    t = tool()
    t.cmd(f"send apns {TOKEN} {TEAM}.org.other.app call 1 30")
    r = one(t.until_idle())
    assert r["status"] == "failed" and r["http"] == 400, r
    assert r["reason"] == "TopicDisallowed"
    assert r["attempts"] == 1


def test_queue_full_is_immediate(sim, tool):
    t = tool("--queue", "3")
    t.cmd(f"send apns {TOKEN} - call 5 30")
    res = t.until_idle()
    errors = [r for r in res if r["event"] == "error"]
    done = [r for r in res if r["event"] == "result"]
    assert len(errors) == 2 and errors[0]["error"] == "queue full"
    assert len(done) == 3
