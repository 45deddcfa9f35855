"""Shared harness for the push wake-up tests: pushpbx + pushsim + phones.

Used by test_wake.py (Python phones), test_wake_sipp.py (SIPp phones),
test_admin_push.py and scripts/demo. It holds:
  - constants of the test push setup (APNs team/key/bundle, FCM project,
    ring time) and token makers;
  - Sim: a running pushsim (APNs + FCM emulator, keys made with openssl)
    with its control API (GET /pushes, dead tokens, faults), and helpers
    reading a logged push (ptype, pcall_id, pcollapse);
  - the fixtures keys (module scope), env (a pushpbx whose [apns]/[fcm]
    point at a fresh pushsim) and phones (Phone factory). Test modules
    import them by name (`from wakeharness import env, keys, phones`):
    pytest finds fixtures in a test module's namespace, so no conftest.py
    change is needed;
  - Phone: a small SIP UA written here (UDP or TCP, digest auth, a thread
    that answers INVITE/CANCEL/BYE by policy);
  - SIPp helpers: Sipp (one SIPp process on ephemeral 127.0.0.1 ports, its
    output and traces in its own directory) and the sipps fixture that
    kills any still running at teardown.

Every socket is on 127.0.0.1 ephemeral ports. Ring time is short (8 s) and
the grace time 500 ms so every test is bounded.

Needs pushsim built next to pushpbx (PUSHPBX_BUILD_DIR/src/pushsim) or
PUSHSIM pointing at it.
"""
import hashlib
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

import conftest
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


def require_pushsim():
    """Fail (never skip) when the pushsim binary is missing."""
    if not os.path.exists(PUSHSIM):
        pytest.fail("pushsim not built: %r (build the pushsim target, or "
                    "set PUSHSIM)" % PUSHSIM)


@pytest.fixture
def env(keys, tmp_path):
    """env(apns=True, fcm=True, max100=1, workers=2, from_workers=True)
    -> (pbx, sim)."""
    require_pushsim()
    made = []

    def make(apns=True, fcm=True, max100=1, workers=2, from_workers=True):
        d = tmp_path / ("run%d" % len(made))
        d.mkdir()
        sim = Sim(keys, d)
        made.append((None, sim))
        text = CONF.format(workers=workers, ring=RING_S,
                           apns="yes" if apns else "no",
                           fcm="yes" if fcm else "no", url=sim.url,
                           key=keys / "apns.p8", kid=KID, team=TEAM,
                           bundle=BUNDLE, ca=sim.ca, sa=sim.sa, max100=max100)
        if not from_workers:
            text = text.replace("[push]\n", "[push]\nfrom_workers = no\n", 1)
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
    without a provisional) or "silent"; a MESSAGE is kept in
    self.messages and answered on_message (a status, e.g. 200 or 480; None:
    not answered)."""

    def __init__(self, pbx, ext, transport="udp", on_invite="answer",
                 domain="test.local", password=None, on_message=200):
        self.pbx, self.ext = pbx, ext
        self.on_message = on_message
        self.messages = []
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
        elif meth == "MESSAGE":
            with self.lock:
                self.messages.append(m)
            if self.on_message:
                self.reply(m, self.on_message,
                           "OK" if self.on_message < 300 else "Refused",
                           self.tag)
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

    def message(self, to, body, ctype="text/plain", display=None,
                auth=True, password=None, call_id=None, cseq=1):
        """Send a MESSAGE to extension to (answering one 407 with digest
        credentials when auth); returns the final response."""
        name = '"%s" ' % display if display is not None else ""
        call_id = call_id or uuid.uuid4().hex
        ruri = "sip:%s@test.local" % to
        data = body.encode() if isinstance(body, str) else body
        authz = ""
        r = None
        for _ in range(2):
            head = ("MESSAGE %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                    "From: %s<sip:%s@test.local>;tag=%s\r\n"
                    "To: <sip:%s@test.local>\r\nCall-ID: %s\r\n"
                    "CSeq: %d MESSAGE\r\nContent-Type: %s\r\n"
                    "%sContent-Length: %d\r\n\r\n" %
                    (ruri, self.via(), name, self.ext, self.tag, to, call_id,
                     cseq, ctype, authz, len(data)))
            wire = head.replace("test.local", self.domain).encode() + data
            if self.tcp:
                self.sock.sendall(wire)
            else:
                self.sock.sendto(wire, self.pbx.udp)
            r = self.wait_response(
                timeout=10,
                pred=lambda m: hget(m, "call-id") == call_id and
                hget(m, "cseq") == "%d MESSAGE" % cseq and m["status"] >= 200)
            assert r is not None, "no final to MESSAGE"
            if r["status"] != 407 or not auth or authz:
                return r
            authz = "Proxy-Authorization: %s\r\n" % digest(
                hget(r, "proxy-authenticate"), self.ext,
                password or self.pw, "MESSAGE", ruri.replace(
                    "test.local", self.domain))
            cseq += 1
        return r

    def wait_messages(self, count, timeout=8.0):
        """The first count MESSAGEs received (fails after timeout)."""
        def got():
            with self.lock:
                return list(self.messages) if len(
                    self.messages) >= count else None
        m = wait_until(got, timeout)
        assert m, "%d MESSAGE(s) wanted, got %r" % (
            count, [x["first"] for x in self.messages])
        return m[:count]

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
        """The INVITE transactions of call this phone received: one entry
        per top-Via branch. A retransmission of one (the proxy's timer A
        on a loaded machine) is the same INVITE, not a second one."""
        seen, out = set(), []
        with self.lock:
            for i in self.invites:
                if hget(i, "call-id") != call["call_id"]:
                    continue
                via = hget(i, "via") or ""
                branch = via.split("branch=", 1)[-1].split(";")[0].strip()
                if branch in seen:
                    continue
                seen.add(branch)
                out.append(i)
        return out

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


def push_barrier(pbx, sim, phones, provider):
    """A barrier for "no push was sent" (instead of a sleep): pushes go out
    from the daemon's one push thread in the order they were queued, so
    once a push queued now has reached pushsim, any push queued before it
    has too. Backgrounds a device of extension 102 with a fresh token of
    provider, calls it from 101, waits for its call push, cancels and waits
    for its missed-call push; returns that token."""
    pn = (("apns", apns_token(), VOIP) if provider == "apns"
          else ("fcm", fcm_token(), PROJECT))
    dev, caller = phones(pbx, "102"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("102")
    sim.wait_push(pn[1])
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    sim.wait_push(pn[1], kind="missed")
    return pn[1]


def wake_and_answer(sim, dev, pn, kind="call", instance=None):
    """The harness plays the phone: on the push, register and answer."""
    sim.wait_push(pn[1], kind=kind)
    r = dev.register(pn=pn, instance=instance)
    assert r["status"] == 200, r["first"]


# --- SIPp --------------------------------------------------------------------

SIPP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sipp")

# SIPp's exit code when its global -timeout ended it (no -timeout_error)
# before any call finished: "exit on internal command".
SIPP_RC_TIMEOUT = 97


def sipp_cmd(pbx, scenario, port, keys, timeout):
    """The command line of one SIPp call of scenario over UDP from local
    port (test_04c runs its two phases on one port)."""
    cmd = ["sipp", "%s:%d" % pbx.udp, "-sf", os.path.join(SIPP_DIR, scenario),
           "-t", "u1", "-i", "127.0.0.1", "-mi", "127.0.0.1",
           "-p", str(port), "-cp", str(free_port()), "-m", "1",
           "-timeout", "%ds" % timeout, "-timeout_error", "-nostdin",
           "-trace_err"]
    for k, v in keys.items():
        cmd += ["-key", k, v]
    return cmd


def pn_keys(ext, pn):
    """SIPp -key values for extension ext with push params pn =
    (provider, prid, param), as the wake_*.xml scenarios name them."""
    return {"ext": ext, "provider": pn[0], "prid": pn[1], "param": pn[2]}


class Sipp:
    """One SIPp process running one call (-m 1) of scenario (a file in
    sipp/) against pbx over UDP. Every socket is on 127.0.0.1: the SIP
    port (port, or a free one), the control port and the media pair. Its
    screen goes to a file and its traces (-trace_err, -trace_msg) to its
    own directory d, so report() can show what it saw. timeout is SIPp's
    global -timeout; with timeout_error (default) reaching it is a
    failure, without it SIPp exits with SIPP_RC_TIMEOUT."""

    def __init__(self, pbx, scenario, d, port=None, keys=None, auth=None,
                 timeout=10, timeout_error=True, extra=()):
        exe = shutil.which("sipp")
        if not exe:
            pytest.fail("sipp not installed (scripts/install-deps)")
        self.dir = d
        d.mkdir()
        self.scenario = scenario
        self.timeout = timeout
        # A port found free may be taken by another process before SIPp
        # binds it (parallel tests): SIPp exits 254 at once, and starts
        # again with fresh ports (a given port is kept). Returns once SIPp
        # holds its sockets (an answering scenario is then listening) or
        # has ended.
        for _ in range(5):
            self.port = port or conftest.free_port()
            media = conftest.free_port(pair=True)
            cmd = [exe, "%s:%d" % pbx.udp,
                   "-sf", os.path.join(SIPP_DIR, scenario),
                   "-t", "u1", "-i", "127.0.0.1", "-mi", "127.0.0.1",
                   "-p", str(self.port), "-cp", str(conftest.free_port()),
                   "-mp", str(media),
                   "-m", "1", "-timeout", "%ds" % timeout, "-nostdin",
                   "-trace_err", "-trace_msg"]
            if timeout_error:
                cmd.append("-timeout_error")
            for k, v in (keys or {}).items():
                cmd += ["-key", k, v]
            if auth:
                cmd += ["-au", auth[0], "-ap", auth[1]]
            cmd += list(extra)
            self.screen = open(d / "screen.txt", "wb")
            self.proc = subprocess.Popen(cmd, cwd=str(d),
                                         stdin=subprocess.DEVNULL,
                                         stdout=self.screen,
                                         stderr=subprocess.STDOUT)
            socks = [(self.port, False), (media, False), (media + 2, False)]
            deadline = time.monotonic() + 10
            while (self.proc.poll() is None and
                   not conftest.sipp_bound(self.proc.pid, socks)):
                assert time.monotonic() < deadline, self.report()
                time.sleep(0.01)
            if self.proc.poll() is None or not conftest.sipp_bind_failed(
                    self.proc.returncode,
                    (d / "screen.txt").read_text(errors="replace")):
                break
            self.screen.close()

    def wait(self, timeout=None):
        """SIPp's exit code (0: the scenario passed); kills it and fails
        the test if it outlives its own -timeout by timeout (default 10 s)."""
        try:
            return self.proc.wait(timeout=self.timeout +
                                  (10 if timeout is None else timeout))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail("sipp %s hung:\n%s" % (self.scenario, self.report()))

    def running(self):
        return self.proc.poll() is None

    def messages(self):
        """The -trace_msg log: every message SIPp sent and received."""
        return "".join(open(os.path.join(str(self.dir), f),
                            errors="replace").read()
                       for f in sorted(os.listdir(str(self.dir)))
                       if f.endswith("_messages.log"))

    def report(self):
        """Screen tail, error log and message trace, for assertion text."""
        if not self.screen.closed:
            self.screen.flush()
        out = "--- sipp %s (port %d) ---\n" % (self.scenario, self.port)
        out += (self.dir / "screen.txt").read_text(errors="replace")[-3000:]
        for f in sorted(os.listdir(str(self.dir))):
            if f.endswith("_errors.log"):
                out += "\n--- %s ---\n" % f + open(os.path.join(
                    str(self.dir), f), errors="replace").read()[-4000:]
        return out + "\n--- messages ---\n" + self.messages()[-6000:]

    def expect(self, rc=0, timeout=None):
        """Wait for the end and assert the exit code."""
        got = self.wait(timeout)
        assert got == rc, "sipp %s exit %d, wanted %d\n%s" % (
            self.scenario, got, rc, self.report())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.screen.closed:
            self.screen.close()


@pytest.fixture
def sipps(tmp_path):
    """Factory: sipps(pbx, scenario, **Sipp kwargs) -> Sipp, started now.
    Every SIPp still running at teardown is killed."""
    made = []

    def start(pbx, scenario, **kw):
        s = Sipp(pbx, scenario, tmp_path / ("sipp%d-%s" % (
            len(made), scenario.rsplit(".", 1)[0])), **kw)
        made.append(s)
        return s

    yield start
    for s in made:
        s.stop()
