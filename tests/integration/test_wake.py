"""[wake] end to end: pushpbx + pushsim + phones played by this harness.

Each test starts pushsim (APNs + FCM emulator, keys made with openssl) and
a pushpbx whose [apns]/[fcm] point at it, on 127.0.0.1 ephemeral ports.
Phones are small SIP user agents written here (UDP or TCP sockets, digest
auth, a thread that answers INVITE/CANCEL/BYE by policy): when pushsim's
control API reports a push for a token, the test "wakes" the matching
phone, which registers with that token and answers. Ring time is short
(8 s) and the grace time 500 ms so every test is bounded.

Needs pushsim built next to pushpbx (PUSHPBX_BUILD_DIR/src/pushsim).
"""
import hashlib
import json
import os
import queue
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

from conftest import Pbx, sanitizer_report  # noqa: F401

BUILD = os.environ.get("PUSHPBX_BUILD_DIR", "")
PUSHSIM = os.environ.get("PUSHSIM") or os.path.join(BUILD, "src", "pushsim",
                                                    "pushsim")
TEAM = "TEAM123456"
KID = "KEYID12345"
BUNDLE = "com.example.phone"
VOIP = TEAM + "." + BUNDLE + ".voip"
ALERT = TEAM + "." + BUNDLE
PROJECT = "demo-proj"
RING_S = 8

pytestmark = pytest.mark.skipif(not os.path.exists(PUSHSIM),
                                reason="pushsim not built")


def apns_token():
    return uuid.uuid4().hex + uuid.uuid4().hex


def fcm_token():
    return "fcm-" + uuid.uuid4().hex[:12] + ":APA91b" + uuid.uuid4().hex


# --- pushsim -------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
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
    def __init__(self, keys, tmp):
        for _ in range(5):
            self.https_port = free_port()
            sa = {"type": "service_account", "project_id": PROJECT,
                  "private_key_id": "k1",
                  "private_key": (keys / "rsa.pem").read_text(),
                  "client_email": "svc@demo-proj.iam.gserviceaccount.com",
                  "token_uri": "https://127.0.0.1:%d/token" % self.https_port}
            self.sa = tmp / "sa.json"
            self.sa.write_text(json.dumps(sa))
            ready = tmp / "sim-ready.json"
            if ready.exists():
                ready.unlink()
            self.err = open(tmp / "sim.err", "w")
            self.proc = subprocess.Popen(
                [PUSHSIM, "--listen", "127.0.0.1:%d" % self.https_port,
                 "--control", "127.0.0.1:0",
                 "--cert-out", str(tmp / "sim-cert.pem"),
                 "--ready-file", str(ready),
                 "--apns-key", "%s:%s:%s" % (KID, TEAM, keys / "apns.p8"),
                 "--apns-topic", BUNDLE, "--fcm-account", str(self.sa)],
                stdout=subprocess.DEVNULL, stderr=self.err)
            deadline = time.time() + 10
            info = None
            while time.time() < deadline and self.proc.poll() is None:
                if ready.exists() and ready.stat().st_size > 0:
                    try:
                        info = json.loads(ready.read_text())
                        break
                    except ValueError:
                        pass
                time.sleep(0.02)
            if info is None:
                self.stop()
                continue
            self.control = info["control_port"]
            self.url = "https://127.0.0.1:%d" % self.https_port
            self.ca = tmp / "sim-cert.pem"
            return
        raise RuntimeError("pushsim did not start")

    def _req(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.control, path), data=data,
            method="POST" if data else "GET",
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def pushes(self, token=None):
        p = self._req("/pushes")["pushes"]
        return [x for x in p if token is None or x["token"] == token]

    def wait_push(self, token, count=1, timeout=8.0, kind=None):
        """The first count pushes for token (of payload type kind)."""
        end = time.time() + timeout
        while time.time() < end:
            got = [p for p in self.pushes(token)
                   if kind is None or ptype(p) == kind]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError("no %s push for %s in %.0fs: %r" %
                             (kind or "", token[:12], timeout, self.pushes()))

    def dead(self, token):
        return self._req("/dead", {"token": token})

    def fault(self, **kw):
        return self._req("/faults", kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def ptype(push):
    """Payload type of a push as pushsim logged it (APNs or FCM form)."""
    pl = push.get("payload") or {}
    if "type" in pl:
        return pl["type"]
    data = (pl.get("message") or {}).get("data") or {}
    return data.get("type")


def pcall_id(push):
    pl = push.get("payload") or {}
    if "call_id" in pl:
        return pl["call_id"]
    return ((pl.get("message") or {}).get("data") or {}).get("call_id")


def pcollapse(push):
    if push["provider"] == "apns":
        return push["headers"].get("apns-collapse-id")
    return (((push.get("payload") or {}).get("message") or {})
            .get("android") or {}).get("collapse_key")


# --- the daemon --------------------------------------------------------------

CONF = """\
[sip]
listen = udp:127.0.0.1:0 tcp:127.0.0.1:0
domain = test.local
workers = {workers}
t1_ms = 100

[log]
level = info

[registrar]
min_expires = 1
; SIPp 3.6 answers only the first challenge, and only MD5.
digest_algorithms = md5,sha256

[store]
path = pbx.db

[admin]
listen = 127.0.0.1:0
token = wake-test-token-0123456789
token_file = admin.token
prov_db = prov.db

[proxy]
ring_timeout_s = {ring}

[apns]
enabled = {apns}
base_url = {url}
key_file = {key}
key_id = {kid}
team_id = {team}
topic = {bundle}
ca_file = {ca}

[fcm]
enabled = {fcm}
service_account_file = {sa}
base_url = {url}
ca_file = {ca}

[push]
grace_ms = 500
backoff_initial_ms = 100
disabled_extensions = 109

[extension.100]
password = pw100
max_push_devices = {max100}

[extension.101]
password = pw101

[extension.102]
password = pw102

[extension.109]
password = pw109
"""


@pytest.fixture
def env(keys, tmp_path):
    """env(apns=True, fcm=True, max100=1) -> (pbx, sim)."""
    made = []

    def make(apns=True, fcm=True, max100=1, workers=2):
        d = tmp_path / ("run%d" % len(made))
        d.mkdir()
        sim = Sim(keys, d)
        made.append((None, sim))
        text = CONF.format(workers=workers, ring=RING_S,
                           apns="yes" if apns else "no",
                           fcm="yes" if fcm else "no", url=sim.url,
                           key=keys / "apns.p8", kid=KID, team=TEAM,
                           bundle=BUNDLE, ca=sim.ca, sa=sim.sa, max100=max100)
        pbx = Pbx(d, text)
        made[-1] = (pbx, sim)
        return pbx, sim

    yield make
    for pbx, sim in made:
        try:
            if pbx:
                pbx.check_clean_exit()
        finally:
            sim.stop()


def admin_get(pbx, path, raw=False):
    req = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (pbx.info["admin_port"], path),
        headers={"authorization": "Bearer wake-test-token-0123456789"})
    with urllib.request.urlopen(req, timeout=5) as r:
        data = r.read()
    return data.decode() if raw else json.loads(data)


def metric(pbx, line_prefix):
    for line in admin_get(pbx, "/metrics", raw=True).splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.split()[-1])
    raise AssertionError("no metric " + line_prefix)


# --- a SIP phone -------------------------------------------------------------

def parse(data):
    head, _, body = data.partition("\r\n\r\n")
    lines = head.split("\r\n")
    hdrs = []
    for line in lines[1:]:
        if ":" in line:
            n, v = line.split(":", 1)
            hdrs.append((n.strip().lower(), v.strip()))
    first = lines[0]
    msg = {"raw": data, "first": first, "hdrs": hdrs, "body": body}
    if first.startswith("SIP/2.0"):
        msg["status"] = int(first.split(" ")[1])
    else:
        msg["method"] = first.split(" ")[0]
    return msg


def hget(msg, name, all_=False):
    name = name.lower()
    compact = {"via": "v", "call-id": "i", "from": "f", "to": "t",
               "contact": "m", "cseq": "cseq"}.get(name)
    vals = [v for n, v in msg["hdrs"] if n == name or n == compact]
    return vals if all_ else (vals[0] if vals else None)


def digest(chal, user, pw, method, uri):
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', chal.split(" ", 1)[1]))
    alg = params.get("algorithm", "MD5")
    h = hashlib.sha256 if alg.upper() == "SHA-256" else hashlib.md5

    def H(s):
        return h(s.encode()).hexdigest()
    cnonce = uuid.uuid4().hex[:8]
    nc = "00000001"
    ha1 = H("%s:%s:%s" % (user, params["realm"], pw))
    ha2 = H("%s:%s" % (method, uri))
    resp = H("%s:%s:%s:%s:auth:%s" % (ha1, params["nonce"], nc, cnonce, ha2))
    return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", '
            'response="%s", algorithm=%s, cnonce="%s", qop=auth, nc=%s' %
            (user, params["realm"], params["nonce"], uri, resp, alg, cnonce,
             nc))


class Phone:
    """A SIP UA for extension ext over UDP or TCP. A thread reads every
    message into self.log and answers incoming requests by policy:
    on_invite = "answer" (180 then 200), "ring" (180 only), "pickup" (200
    without a provisional) or "silent"."""

    def __init__(self, pbx, ext, transport="udp", on_invite="answer",
                 domain="test.local", password=None):
        self.pbx, self.ext = pbx, ext
        self.pw = password or "pw" + ext
        self.domain = domain
        self.transport = transport
        self.on_invite = on_invite
        self.tcp = transport == "tcp"
        if self.tcp:
            self.sock = socket.create_connection(pbx.tcp, timeout=5)
            self.sock.settimeout(None)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.responses = queue.Queue()
        self.invites, self.cancels, self.log = [], [], []
        self.lock = threading.Lock()
        self.cseq = 0
        self.reg_call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:8]
        self.running = True
        self.buf = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # transport
    def send(self, text):
        # Messages are written for test.local; another domain (the demo
        # against `make run`) is substituted here.
        data = text.replace("test.local", self.domain).encode()
        if self.tcp:
            self.sock.sendall(data)
        else:
            self.sock.sendto(data, self.pbx.udp)

    def _read(self):
        r, _, _ = select.select([self.sock], [], [], 0.1)
        if not r:
            return []
        if not self.tcp:
            data, _ = self.sock.recvfrom(70000)
            return [data.decode(errors="replace")]
        chunk = self.sock.recv(65536)
        if not chunk:
            self.running = False
            return []
        self.buf += chunk
        out = []
        while b"\r\n\r\n" in self.buf:
            head, rest = self.buf.split(b"\r\n\r\n", 1)
            m = re.search(rb"(?im)^(content-length|l)\s*:\s*(\d+)", head)
            n = int(m.group(2)) if m else 0
            if len(rest) < n:
                break
            out.append((head + b"\r\n\r\n" + rest[:n]).decode(
                errors="replace"))
            self.buf = rest[n:]
        return out

    def _run(self):
        while self.running:
            try:
                msgs = self._read()
            except OSError:
                return
            for raw in msgs:
                m = parse(raw)
                with self.lock:
                    self.log.append(m)
                if "status" in m:
                    self.responses.put(m)
                else:
                    self._on_request(m)

    def via(self):
        return "SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK%s;rport" % (
            "TCP" if self.tcp else "UDP", self.port, uuid.uuid4().hex[:16])

    def reply(self, req, status, reason, to_tag=None, extra=""):
        to = hget(req, "to")
        if to_tag and ";tag=" not in to:
            to += ";tag=" + to_tag
        vias = "".join("Via: %s\r\n" % v for v in hget(req, "via", True))
        rr = "".join("Record-Route: %s\r\n" % v
                     for v in hget(req, "record-route", True))
        self.send("SIP/2.0 %d %s\r\n%s%sFrom: %s\r\nTo: %s\r\n"
                  "Call-ID: %s\r\nCSeq: %s\r\n%sContent-Length: 0\r\n\r\n" %
                  (status, reason, vias, rr if status < 300 else "",
                   hget(req, "from"), to, hget(req, "call-id"),
                   hget(req, "cseq"), extra))

    def _on_request(self, m):
        meth = m["method"]
        if meth == "INVITE":
            with self.lock:
                self.invites.append(m)
            if self.on_invite in ("answer", "ring"):
                self.reply(m, 180, "Ringing", self.tag)
            if self.on_invite in ("answer", "pickup"):
                self.reply(m, 200, "OK", self.tag,
                           "Contact: <sip:%s@127.0.0.1:%d>\r\n" %
                           (self.ext, self.port))
        elif meth == "CANCEL":
            with self.lock:
                self.cancels.append(m)
            self.reply(m, 200, "OK", self.tag)
            inv = [i for i in self.invites
                   if hget(i, "call-id") == hget(m, "call-id")]
            if inv:
                self.reply(inv[-1], 487, "Request Terminated", self.tag)
        elif meth in ("BYE", "OPTIONS"):
            self.reply(m, 200, "OK", self.tag)
        # ACK: nothing

    def wait_response(self, timeout=5.0, pred=None):
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                return None
            try:
                m = self.responses.get(timeout=left)
            except queue.Empty:
                return None
            if pred is None or pred(m):
                return m

    # REGISTER
    def contact(self, pn=None, instance=None):
        uri = "sip:%s@127.0.0.1:%d" % (self.ext, self.port)
        if self.tcp:
            uri += ";transport=tcp"
        if pn:
            prov, prid, param = pn
            uri += ";pn-provider=%s;pn-prid=%s" % (prov, prid)
            if param:
                uri += ";pn-param=" + param
        c = "<%s>" % uri
        if instance:
            c += ';+sip.instance="<urn:uuid:%s>"' % instance
        return c

    def register(self, pn=None, expires=300, instance=None, contact=None,
                 auth=True, new_call_id=False):
        """REGISTER (answering one 401 when auth); returns the final."""
        if new_call_id:
            self.reg_call_id = uuid.uuid4().hex
        contact = contact or self.contact(pn, instance)
        authz = ""
        for _ in range(2):
            self.cseq += 1
            self.send("REGISTER sip:test.local SIP/2.0\r\nVia: %s\r\n"
                      "Max-Forwards: 70\r\n"
                      "From: <sip:%s@test.local>;tag=%s\r\n"
                      "To: <sip:%s@test.local>\r\nCall-ID: %s\r\n"
                      "CSeq: %d REGISTER\r\nContact: %s\r\nExpires: %d\r\n"
                      "%sContent-Length: 0\r\n\r\n" %
                      (self.via(), self.ext, self.tag, self.ext,
                       self.reg_call_id, self.cseq, contact, expires, authz))
            r = self.wait_response(pred=lambda m: "REGISTER" in
                                   (hget(m, "cseq") or ""))
            assert r is not None, "no answer to REGISTER"
            if r["status"] != 401 or not auth:
                return r
            authz = "Authorization: %s\r\n" % digest(
                hget(r, "www-authenticate"), self.ext, self.pw, "REGISTER",
                "sip:" + self.domain)
        return r

    # calls (as the caller)
    def invite(self, to, display=None):
        """Send an authenticated INVITE to extension to (From display name
        display: written as a quoted-string, escapes kept); returns
        call."""
        name = '"%s" ' % display if display is not None else ""
        call = {"call_id": uuid.uuid4().hex, "to": to, "cseq": 0}
        ruri = "sip:%s@test.local" % to
        wire_ruri = ruri.replace("test.local", self.domain)
        authz = ""
        for _ in range(2):
            call["cseq"] += 1
            call["via"] = self.via()
            call["ruri"] = ruri
            self.send("INVITE %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                      "From: %s<sip:%s@test.local>;tag=%s\r\n"
                      "To: <sip:%s@test.local>\r\nCall-ID: %s\r\n"
                      "CSeq: %d INVITE\r\nContact: <sip:%s@127.0.0.1:%d>\r\n"
                      "%sContent-Length: 0\r\n\r\n" %
                      (ruri, call["via"], name, self.ext, self.tag, to,
                       call["call_id"], call["cseq"], self.ext, self.port,
                       authz))
            if authz:
                return call
            r = self.wait_response(
                pred=lambda m: hget(m, "call-id") == call["call_id"] and
                m["status"] >= 200)
            assert r is not None and r["status"] == 407, r and r["first"]
            self.ack(call, r)
            authz = "Proxy-Authorization: %s\r\n" % digest(
                hget(r, "proxy-authenticate"), self.ext, self.pw, "INVITE",
                wire_ruri)
        return call

    def ack(self, call, resp):
        """ACK for a non-2xx final (same branch, hop by hop)."""
        self.send("ACK %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                  "From: <sip:%s@test.local>;tag=%s\r\nTo: %s\r\n"
                  "Call-ID: %s\r\nCSeq: %d ACK\r\nContent-Length: 0\r\n\r\n"
                  % (call["ruri"], call["via"], self.ext, self.tag,
                     hget(resp, "to"), call["call_id"], call["cseq"]))

    def ack2xx(self, call, resp):
        """End-to-end ACK for a 2xx: to its Contact, through the proxy's
        Record-Route (one proxy: the route set is that one entry)."""
        target = re.search(r"<([^>]+)>", hget(resp, "contact")).group(1)
        route = "".join("Route: %s\r\n" % v for v in
                        reversed(hget(resp, "record-route", True)))
        self.send("ACK %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                  "%sFrom: <sip:%s@test.local>;tag=%s\r\nTo: %s\r\n"
                  "Call-ID: %s\r\nCSeq: %d ACK\r\nContent-Length: 0\r\n\r\n"
                  % (target, self.via(), route, self.ext, self.tag,
                     hget(resp, "to"), call["call_id"], call["cseq"]))

    def cancel(self, call):
        self.send("CANCEL %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                  "From: <sip:%s@test.local>;tag=%s\r\n"
                  "To: <sip:%s@test.local>\r\nCall-ID: %s\r\n"
                  "CSeq: %d CANCEL\r\nContent-Length: 0\r\n\r\n" %
                  (call["ruri"], call["via"], self.ext, self.tag, call["to"],
                   call["call_id"], call["cseq"]))

    def call_responses(self, call):
        with self.lock:
            return [m for m in self.log if "status" in m and
                    hget(m, "call-id") == call["call_id"] and
                    hget(m, "cseq").split() == [str(call["cseq"]),
                                                "INVITE"]]

    def wait_call_status(self, call, pred, timeout):
        end = time.time() + timeout
        while time.time() < end:
            for m in self.call_responses(call):
                if pred(m["status"]):
                    return m
            time.sleep(0.02)
        return None

    def wait_final(self, call, timeout):
        m = self.wait_call_status(call, lambda s: s >= 200, timeout)
        if m is not None and m["status"] >= 300:
            self.ack(call, m)
        return m

    def invites_for(self, call):
        with self.lock:
            return [i for i in self.invites
                    if hget(i, "call-id") == call["call_id"]]

    def cancels_for(self, call):
        with self.lock:
            return [i for i in self.cancels
                    if hget(i, "call-id") == call["call_id"]]

    def requests_for(self, call, method):
        """Every request of method received for call, in order."""
        with self.lock:
            return [m for m in self.log if m.get("method") == method and
                    hget(m, "call-id") == call["call_id"]]

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def phones():
    made = []

    def make(*a, **kw):
        p = Phone(*a, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


def background(phone, pn, instance=None):
    """Register with push params, then go to background (Expires: 0)."""
    r = phone.register(pn=pn, instance=instance)
    assert r["status"] == 200, r["first"]
    r = phone.register(pn=pn, expires=0, instance=instance)
    assert r["status"] == 200, r["first"]


def wait_until(pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


# --- the twelve cases --------------------------------------------------------

def test_01_register_push_and_555(env, phones):
    pbx, sim = env(fcm=False)
    tok = apns_token()
    p = phones(pbx, "100")
    r = p.register(pn=("apns", tok, VOIP), instance="aaaa-1")
    assert r["status"] == 200, r["first"]
    assert 'Feature-Caps: *;+sip.pns="apns"' in r["raw"]
    regs = admin_get(pbx, "/api/registrations")
    item = [i for i in regs["items"] if i["number"] == "100"][0]
    assert len(item["bindings"]) == 1
    assert len(item["push"]) == 1
    assert item["push"][0]["provider"] == "apns"
    devs = admin_get(pbx, "/api/devices")["items"]
    assert [d["token_prefix"] for d in devs] == [tok[:8]]
    # fcm is not configured here: 555 and nothing stored.
    q = phones(pbx, "101")
    r = q.register(pn=("fcm", fcm_token(), PROJECT))
    assert r["status"] == 555, r["first"]
    assert len(admin_get(pbx, "/api/devices")["items"]) == 1
    regs = admin_get(pbx, "/api/registrations")
    item = [i for i in regs["items"] if i["number"] == "101"][0]
    assert item["bindings"] == []
    # Bad input: 400 with a reason; push disabled: plain binding.
    r = q.register(pn=("apns", "nothex", VOIP))
    assert r["status"] == 400 and "pn-prid" in r["first"], r["first"]
    r = q.register(pn=("apns", apns_token(), None))
    assert r["status"] == 400 and "pn-param" in r["first"], r["first"]
    d = phones(pbx, "109")
    r = d.register(pn=("apns", apns_token(), VOIP))
    assert r["status"] == 200 and "Feature-Caps" not in r["raw"]
    assert len(admin_get(pbx, "/api/devices")["items"]) == 1


def test_01b_device_survives_restart(env, phones):
    """The push device is committed before the 200: a restart right after
    the background REGISTER keeps it, and a call still pushes it."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    background(phones(pbx, "100"), pn)
    assert pbx.stop(sig=signal.SIGKILL) == -signal.SIGKILL
    pbx.exit_code = 0  # killed on purpose; the restarted one is checked
    (pbx.dir / "ready.json").unlink()
    again = Pbx(pbx.dir, pbx.conf.read_text())
    try:
        devs = admin_get(again, "/api/devices")["items"]
        assert [d["token_prefix"] for d in devs] == [pn[1][:8]]
        caller = phones(again, "101")
        call = caller.invite("100")
        sim.wait_push(pn[1])
        caller.cancel(call)
        assert caller.wait_final(call, 5)["status"] == 487
    finally:
        again.check_clean_exit()


def test_02_replace_and_max_two(env, phones):
    pbx, sim = env()
    t1, t2 = apns_token(), apns_token()
    a, b, caller = phones(pbx, "100"), phones(pbx, "100"), phones(pbx, "101")
    background(a, ("apns", t1, VOIP), instance="dev-a")
    background(b, ("apns", t2, VOIP), instance="dev-b")
    devs = admin_get(pbx, "/api/devices")["items"]
    assert [d["token_prefix"] for d in devs] == [t2[:8]]
    call = caller.invite("100")
    sim.wait_push(t2)
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    time.sleep(0.3)
    assert sim.pushes(t1) == []


def test_02b_max_two_both_pushed(env, phones):
    pbx, sim = env(max100=2)
    t1, t2 = apns_token(), fcm_token()
    a, b, caller = phones(pbx, "100"), phones(pbx, "100"), phones(pbx, "101")
    background(a, ("apns", t1, VOIP), instance="dev-a")
    background(b, ("fcm", t2, PROJECT), instance="dev-b")
    call = caller.invite("100")
    sim.wait_push(t1)
    sim.wait_push(t2)
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487


def test_03_live_tcp_no_push(env, phones):
    pbx, sim = env()
    tok = fcm_token()
    dev = phones(pbx, "100", transport="tcp")
    assert dev.register(pn=("fcm", tok, PROJECT))["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    assert len(dev.invites_for(call)) == 1
    time.sleep(0.7)
    assert sim.pushes() == []


def wake_and_answer(sim, dev, pn, kind="call", instance=None):
    """The harness plays the phone: on the push, register and answer."""
    sim.wait_push(pn[1], kind=kind)
    r = dev.register(pn=pn, instance=instance)
    assert r["status"] == 200, r["first"]


@pytest.mark.parametrize("provider", ["apns", "fcm"])
def test_04_10_push_wake_answer(env, phones, provider):
    pbx, sim = env()
    pn = (("apns", apns_token(), VOIP) if provider == "apns"
          else ("fcm", fcm_token(), PROJECT))
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    t0 = time.time()
    call = caller.invite("100")
    push = sim.wait_push(pn[1])[0]
    assert ptype(push) == "call" and pcall_id(push) == call["call_id"]
    if provider == "apns":
        h = push["headers"]
        assert h["apns-push-type"] == "voip"
        assert h["apns-topic"] == BUNDLE + ".voip"
        assert h["apns-priority"] == "10"
        exp = int(h["apns-expiration"])
        assert t0 + RING_S - 2 <= exp <= time.time() + RING_S + 2
        assert push["payload"]["expires_at"] == exp
        assert push["payload"]["from"] == "101"
        assert push["payload"]["to"] == "100"
    else:
        msg = push["payload"]["message"]
        assert msg["android"]["priority"] == "HIGH"
        assert msg["android"]["ttl"].endswith("s")
        assert msg["data"]["caller"] == "101"
        assert msg["data"]["to"] == "100"
    assert pcollapse(push)
    assert dev.invites_for(call) == []
    wk = admin_get(pbx, "/api/wakeups")["items"]
    assert [(w["ext"], w["call_id"], w["devices"]) for w in wk] == \
        [("100", call["call_id"], 1)]
    assert metric(pbx, "pushpbx_pending_wakeups") == 1
    dev.register(pn=pn)
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    assert len(dev.invites_for(call)) == 1
    # The caller heard ringing (180) before the answer.
    assert caller.wait_call_status(call, lambda s: s == 180, 1)


SIPP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sipp")


def sipp_cmd(pbx, scenario, port, keys, timeout):
    cmd = ["sipp", "%s:%d" % pbx.udp, "-sf", os.path.join(SIPP_DIR, scenario),
           "-t", "u1", "-i", "127.0.0.1", "-mi", "127.0.0.1",
           "-p", str(port), "-cp", str(free_port()), "-m", "1",
           "-timeout", "%ds" % timeout, "-timeout_error", "-nostdin",
           "-trace_err"]
    for k, v in keys.items():
        cmd += ["-key", k, v]
    return cmd


def test_04c_sipp_device_woken(env, phones, tmp_path):
    """The same flow with SIPp as the woken phone: on the push it registers
    (401, credentials, Feature-Caps), then answers the held INVITE."""
    if not __import__("shutil").which("sipp"):
        pytest.skip("sipp not installed")
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    app, caller = phones(pbx, "100"), phones(pbx, "101")
    background(app, pn)
    call = caller.invite("100")
    sim.wait_push(pn[1])
    port = free_port()
    keys = {"ext": "100", "provider": pn[0], "prid": pn[1], "param": pn[2]}
    r = subprocess.run(sipp_cmd(pbx, "wake_register.xml", port, keys, 8) +
                       ["-au", "100", "-ap", "pw100"], cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    uas = subprocess.Popen(sipp_cmd(pbx, "wake_answer.xml", port, keys, 8),
                           cwd=str(tmp_path), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    try:
        final = caller.wait_final(call, 6)
        assert final is not None and final["status"] == 200, final
        caller.ack2xx(call, final)
        out = uas.communicate(timeout=15)[0].decode(errors="replace")
        assert uas.returncode == 0, out
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()


def test_04b_180_when_push_sent(env, phones):
    """[push] ringing: the proxy answers 180 itself when the push goes out
    (no phone has the INVITE yet); its To tag is the proxy's one tag for
    this call, also on the final it generates (487 here)."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    sim.wait_push(pn[1])
    ring = caller.wait_call_status(call, lambda s: s == 180, 2)
    assert ring is not None
    assert dev.invites_for(call) == []
    tag = re.search(r";tag=([^;>\s]+)", hget(ring, "to"))
    assert tag, hget(ring, "to")
    time.sleep(0.3)
    assert len([m for m in caller.call_responses(call)
                if m["status"] == 180]) == 1
    caller.cancel(call)
    final = caller.wait_final(call, 5)
    assert final["status"] == 487
    assert ";tag=%s" % tag.group(1) in hget(final, "to")


@pytest.mark.parametrize("provider", ["apns", "fcm"])
def test_05_10_cancel_before_wake(env, phones, provider):
    pbx, sim = env()
    pn = (("apns", apns_token(), VOIP) if provider == "apns"
          else ("fcm", fcm_token(), PROJECT))
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    first = sim.wait_push(pn[1])[0]
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    missed = sim.wait_push(pn[1], kind="missed")[0]
    assert pcollapse(missed) == pcollapse(first)
    assert pcall_id(missed) == call["call_id"]
    if provider == "apns":
        # Not a second VoIP push: the missed call is an alert.
        assert missed["headers"]["apns-push-type"] == "alert"
        assert missed["headers"]["apns-topic"] == BUNDLE
    assert dev.register(pn=pn)["status"] == 200
    if provider == "fcm":
        # Rule 7 is for iOS VoIP pushes only: an FCM device gets nothing.
        time.sleep(1.0)
        assert dev.invites_for(call) == []
    else:
        # Rule 7: the INVITE, then the call is ended at once (CANCEL, or
        # BYE when this phone's 200 crossed our CANCEL).
        assert wait_until(lambda: dev.invites_for(call), 3)
        assert wait_until(lambda: dev.cancels_for(call) or
                          dev.requests_for(call, "BYE"), 3)
        time.sleep(0.3)
        assert len(dev.invites_for(call)) == 1


def test_05b_voip_woken_after_cancel_gets_invite_and_cancel(env, phones):
    """Rule 7: the VoIP-pushed phone registers after the caller cancelled:
    it gets the call's INVITE (same Call-ID, From the caller) and at once a
    CANCEL with Reason cause=487; one VoIP push only."""
    pbx, sim = env()
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100", on_invite="ring"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100", display="Alice")
    sim.wait_push(pn[1])
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    sim.wait_push(pn[1], kind="missed")
    assert dev.register(pn=pn)["status"] == 200
    inv = wait_until(lambda: dev.invites_for(call), 3)
    assert inv
    assert re.match(r'"Alice" <sip:101@', hget(inv[0], "from")), \
        hget(inv[0], "from")
    assert hget(inv[0], "to").startswith("<sip:100@")
    c = wait_until(lambda: dev.cancels_for(call), 3)
    assert c and hget(c[0], "reason") == 'SIP;cause=487;text="Call cancelled"'
    # The CANCEL matches the INVITE (same branch and CSeq number, §9.1).
    assert hget(c[0], "via") == hget(inv[0], "via")
    assert hget(c[0], "cseq").split()[0] == hget(inv[0], "cseq").split()[0]
    # Our side ACKs the phone's 487.
    assert wait_until(lambda: dev.requests_for(call, "ACK"), 3)
    time.sleep(0.3)
    assert len(dev.invites_for(call)) == 1
    assert [p["headers"]["apns-push-type"] for p in sim.pushes(pn[1])] == \
        ["voip", "alert"]


def test_05c_late_invite_answered_is_acked_and_byed(env, phones):
    """Rule 7, a phone that answers the late INVITE with 200 (no
    provisional, so no CANCEL can go): we ACK it and BYE it with the
    Reason."""
    pbx, sim = env()
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100", on_invite="pickup"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    sim.wait_push(pn[1])
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    assert dev.register(pn=pn)["status"] == 200
    assert wait_until(lambda: dev.invites_for(call), 3)
    ack = wait_until(lambda: dev.requests_for(call, "ACK"), 3)
    bye = wait_until(lambda: dev.requests_for(call, "BYE"), 3)
    assert ack and bye
    assert ack[0]["first"].startswith("ACK sip:100@127.0.0.1:%d" % dev.port)
    assert hget(ack[0], "cseq") == "1 ACK"
    assert hget(bye[0], "cseq") == "2 BYE"
    assert ";tag=%s" % dev.tag in hget(bye[0], "to")
    assert hget(bye[0], "reason") == 'SIP;cause=487;text="Call cancelled"'
    assert dev.cancels_for(call) == []
    # The BYE was answered (our phone says 200): no retransmissions.
    time.sleep(1.0)
    assert len(dev.requests_for(call, "BYE")) == 1


def test_06_answered_elsewhere(env, phones):
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    app = phones(pbx, "100")
    background(app, pn)
    desk = phones(pbx, "100", on_invite="silent")
    assert desk.register()["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    first = sim.wait_push(pn[1])[0]
    inv = wait_until(lambda: desk.invites_for(call), 3)
    assert inv
    desk.reply(inv[0], 200, "OK", desk.tag,
               "Contact: <sip:100@127.0.0.1:%d>\r\n" % desk.port)
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200
    ae = sim.wait_push(pn[1], kind="answered_elsewhere")[0]
    assert pcollapse(ae) == pcollapse(first)


def test_06b_voip_woken_after_answered_elsewhere(env, phones):
    """Rule 7 when a desk phone answered: the late CANCEL says
    cause=200 "Call completed elsewhere" so CallKit shows it that way."""
    pbx, sim = env()
    pn = ("apns", apns_token(), VOIP)
    app = phones(pbx, "100", on_invite="ring")
    background(app, pn)
    desk = phones(pbx, "100", on_invite="answer")
    assert desk.register()["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200
    caller.ack2xx(call, final)
    sim.wait_push(pn[1], kind="answered_elsewhere")
    assert app.register(pn=pn)["status"] == 200
    assert wait_until(lambda: app.invites_for(call), 3)
    c = wait_until(lambda: app.cancels_for(call), 3)
    assert c and hget(c[0], "reason") == \
        'SIP;cause=200;text="Call completed elsewhere"'


def test_07_no_answer_timeout_missed(env, phones):
    pbx, sim = env()
    pn = ("apns", apns_token(), ALERT)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    push = sim.wait_push(pn[1])[0]
    assert push["headers"]["apns-push-type"] == "alert"
    final = caller.wait_final(call, RING_S + 4)
    assert final is not None and final["status"] in (408, 480), final
    missed = sim.wait_push(pn[1], kind="missed", timeout=3)[0]
    assert pcollapse(missed) == pcollapse(push)


def test_08_dead_token_removes_device(env, phones):
    pbx, sim = env()
    tok = apns_token()
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, ("apns", tok, VOIP))
    sim.dead(tok)
    call = caller.invite("100")
    p = sim.wait_push(tok)[0]
    assert p["status"] == 410
    assert wait_until(lambda: admin_get(pbx, "/api/devices")["items"] == [],
                      5)
    pushes = admin_get(pbx, "/api/pushes")["items"]
    assert pushes and pushes[0]["status"] == "dead_token"
    assert pushes[0]["http_status"] == 410
    assert metric(pbx, 'pushpbx_pushes_dead_total{provider="apns"}') == 1
    caller.cancel(call)
    caller.wait_final(call, 5)


def test_09_retry_then_ring(env, phones):
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    sim.fault(provider="fcm", action="status", status=503, count=1)
    call = caller.invite("100")
    got = sim.wait_push(pn[1], count=2)
    assert [g["status"] for g in got[:2]] == [503, 200]
    dev.register(pn=pn)
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200


def test_11_challenged_register_one_invite(env, phones):
    pbx, sim = env()
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100", on_invite="ring"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    sim.wait_push(pn[1])
    r = dev.register(pn=pn, auth=False)
    assert r["status"] == 401
    time.sleep(0.3)
    assert dev.invites_for(call) == []
    assert dev.register(pn=pn)["status"] == 200
    assert wait_until(lambda: dev.invites_for(call), 3)
    dev.register(pn=pn)  # a refresh while ringing: no second INVITE
    time.sleep(0.5)
    assert len(dev.invites_for(call)) == 1
    assert len(sim.pushes(pn[1])) == 1  # one VoIP push for this call
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    # A second call gets its own push.
    assert dev.register(pn=pn, expires=0)["status"] == 200
    call2 = caller.invite("100")
    got = sim.wait_push(pn[1], count=2, kind="call")
    assert pcall_id(got[1]) == call2["call_id"]
    caller.cancel(call2)
    caller.wait_final(call2, 5)


def test_12_udp_silent_pushed_after_grace(env, phones):
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    dev = phones(pbx, "100", on_invite="silent")
    assert dev.register(pn=pn)["status"] == 200
    caller = phones(pbx, "101")
    t0 = time.time()
    call = caller.invite("100")
    assert wait_until(lambda: dev.invites_for(call), 2)
    push = sim.wait_push(pn[1])[0]
    assert time.time() - t0 >= 0.45
    assert ptype(push) == "call"
    caller.cancel(call)
    caller.wait_final(call, 5)


def test_12b_udp_ringing_not_pushed(env, phones):
    """Rules 3 and 8: the app is awake on UDP and its branch rings within
    the grace time: no push now, and none (missed) when the call ends."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    dev = phones(pbx, "100", on_invite="ring")
    assert dev.register(pn=pn)["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    assert caller.wait_call_status(call, lambda s: s == 180, 2)
    time.sleep(1.0)
    assert sim.pushes(pn[1]) == []
    assert len(dev.invites_for(call)) == 1
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    time.sleep(0.5)
    assert sim.pushes(pn[1]) == []


def test_13_desk_busy_holds_call_for_woken_app(env, phones):
    """Holding: a desk phone answering 486 does not end the call while the
    app is being woken; the woken app answers it."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    app = phones(pbx, "100")
    background(app, pn)
    desk = phones(pbx, "100", on_invite="silent")
    assert desk.register()["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    sim.wait_push(pn[1])
    inv = wait_until(lambda: desk.invites_for(call), 3)
    assert inv
    desk.reply(inv[0], 486, "Busy Here", desk.tag)
    assert wait_until(lambda: desk.requests_for(call, "ACK"), 3)
    time.sleep(1.0)
    assert caller.wait_call_status(call, lambda s: s >= 200, 0.1) is None
    wk = admin_get(pbx, "/api/wakeups")["items"]
    assert [w["call_id"] for w in wk] == [call["call_id"]]
    assert app.register(pn=pn)["status"] == 200
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    assert len(app.invites_for(call)) == 1
    caller.ack2xx(call, final)


def test_13b_desk_busy_then_app_declines_best_response(env, phones):
    """When every branch and every wake-up has ended the best response goes
    up (§16.7): desk 486 first, woken app 603 later -> 603."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    app = phones(pbx, "100", on_invite="silent")
    background(app, pn)
    desk = phones(pbx, "100", on_invite="silent")
    assert desk.register()["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    sim.wait_push(pn[1])
    inv = wait_until(lambda: desk.invites_for(call), 3)
    desk.reply(inv[0], 486, "Busy Here", desk.tag)
    time.sleep(0.5)
    assert caller.wait_call_status(call, lambda s: s >= 200, 0.1) is None
    assert app.register(pn=pn)["status"] == 200
    ainv = wait_until(lambda: app.invites_for(call), 3)
    assert ainv
    app.reply(ainv[0], 603, "Decline", app.tag)
    final = caller.wait_final(call, 3)
    assert final is not None and final["status"] == 603, final


def test_14_push_failed_ends_held_call_480(env, phones):
    """A push that fails for good (dead token) while nothing else rings
    ends the held call with 480 at once (RFC 8599 §5.6.2 step 5), not at
    the ring timeout; no missed push goes to the dead token."""
    pbx, sim = env()
    tok = apns_token()
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, ("apns", tok, VOIP))
    sim.dead(tok)
    t0 = time.time()
    call = caller.invite("100")
    final = caller.wait_final(call, RING_S - 3)
    assert final is not None and final["status"] == 480, final
    assert time.time() - t0 < 3
    time.sleep(0.5)
    assert [ptype(p) for p in sim.pushes(tok)] == ["call"]
    rec = admin_get(pbx, "/api/pushes")["items"]
    assert rec[0]["status"] == "dead_token"


def test_14b_push_failed_waits_for_ringing_desk(env, phones):
    """A failed push does not end a call that still rings elsewhere: the
    desk's later 486 is the answer (best response, §16.7)."""
    pbx, sim = env()
    tok = apns_token()
    dev = phones(pbx, "100")
    background(dev, ("apns", tok, VOIP))
    desk = phones(pbx, "100", on_invite="silent")
    assert desk.register()["status"] == 200
    sim.dead(tok)
    caller = phones(pbx, "101")
    call = caller.invite("100")
    assert wait_until(lambda: [p for p in admin_get(pbx, "/api/pushes")
                               ["items"] if p["status"] == "dead_token"], 5)
    inv = wait_until(lambda: desk.invites_for(call), 3)
    time.sleep(0.5)
    assert caller.wait_call_status(call, lambda s: s >= 200, 0.1) is None
    desk.reply(inv[0], 486, "Busy Here", desk.tag)
    final = caller.wait_final(call, 3)
    assert final is not None and final["status"] == 486, final


def test_15_from_name_in_payload(env, phones):
    """The caller's From display name reaches the push payloads (APNs and
    FCM, call and missed), unquoted."""
    pbx, sim = env(max100=2)
    ta, tf = apns_token(), fcm_token()
    a, b = phones(pbx, "100"), phones(pbx, "100")
    background(a, ("apns", ta, ALERT), instance="dev-a")
    background(b, ("fcm", tf, PROJECT), instance="dev-b")
    caller = phones(pbx, "101")
    call = caller.invite("100", display='Alice \\"Al\\" Ex\u00e9mple')
    pa = sim.wait_push(ta)[0]
    pf = sim.wait_push(tf)[0]
    name = 'Alice "Al" Ex\u00e9mple'
    assert pa["payload"]["from_name"] == name
    assert pa["payload"]["aps"]["alert"]["body"] == name
    assert pf["payload"]["message"]["data"]["from_name"] == name
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    ma = sim.wait_push(ta, kind="missed")[0]
    assert ma["payload"]["from_name"] == name
    # No display name: the key is there, empty.
    call2 = caller.invite("100")
    p2 = sim.wait_push(tf, count=2, kind="call")[1]
    assert pcall_id(p2) == call2["call_id"]
    assert p2["payload"]["message"]["data"]["from_name"] == ""
    caller.cancel(call2)
    caller.wait_final(call2, 5)
