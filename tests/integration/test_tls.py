"""[tls] SIP over TLS, and the TCP defects a real client showed.

Python `ssl` user agents against the real daemon (2 workers) with a
throw-away CA and server certificate made by openssl here. What a real
liblinphone 5.1 does over TLS is played on the wire: TLS 1.2, the SNI an
IP literal, a first REGISTER with Contact port -2, Via without port with
";alias;rport", the same Contact URI after every reconnect, no reg-id.

Covered: register over TLS (401, 200, rport filled), calls TLS<->TLS and
TLS<->UDP both ways with double record-routing, the callee's BYE, the
CRLF keep-alive pong, TLS 1.1 and plain text refused with one log line,
certificate reload by SIGHUP while a call is up (and a bad file kept
out), the wake flow over TLS (a push for an app whose connection closed,
the INVITE over its new connection), and over TCP: a dead flow is
unreachable (pushed, not connected to), rport in responses, and the
cross-transport BYE.
"""
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from test_calls import EXTS, UA, Call, Callee
import wakeharness
from wakeharness import (Phone, Sim, apns_token, keys,  # noqa: F401
                         wait_until)


# --- certificates ------------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=str(cwd), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(d):
    """A CA (ca.pem, ca.key) in d."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA", cwd=d)


def make_cert(d, name, cn="127.0.0.1", ip="127.0.0.1"):
    """name.pem / name.key signed by d's CA, for IP ip."""
    (d / "ext.cnf").write_text("subjectAltName=IP:%s\n" % ip)
    _openssl("req", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn,
             cwd=d)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem",
             "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", "ext.cnf", "-out", name + ".pem", cwd=d)
    return d / (name + ".pem"), d / (name + ".key")


@pytest.fixture
def certs(tmp_path):
    d = tmp_path / "certs"
    d.mkdir()
    make_ca(d)
    cert, key = make_cert(d, "server")
    return d, cert, key


def tls_extra(cert, key):
    return "\n[tls]\ncert_file = %s\nkey_file = %s\n" % (cert, key)


def tls_sets():
    return ("sip.listen=udp:127.0.0.1:0 tcp:127.0.0.1:0 tls:127.0.0.1:0",)


def client_ctx(ca, version=ssl.TLSVersion.TLSv1_2):
    """Like liblinphone 5.1 (mbedtls): TLS 1.2 only, verifies the server
    against the CA for the IP literal it was configured with."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def tls_connect(pbx, ca, version=ssl.TLSVersion.TLSv1_2):
    raw = socket.create_connection(pbx.tls_addr, timeout=5)
    return client_ctx(ca, version).wrap_socket(
        raw, server_hostname="127.0.0.1")


def peer_cert_serial(pbx, ca):
    s = tls_connect(pbx, ca)
    der = s.getpeercert(binary_form=True)
    s.close()
    return der


class TlsUA(UA):
    """test_calls' UA over TLS: Via "TLS 127.0.0.1" without a port and with
    ;alias;rport, Contact ;transport=tls, as liblinphone writes them."""

    def __init__(self, pbx, ext, ca):
        self.pbx, self.ext, self.tcp = pbx, ext, True
        self.pw = "pw%s" % ext
        self.dest = pbx.tls_addr
        self.sock = tls_connect(pbx, ca)
        self.rbuf = b""
        self.port = self.sock.getsockname()[1]
        self.tp = "TLS"
        self.contact = "<sip:%s@127.0.0.1:%d;transport=tls>" % (ext,
                                                               self.port)
        self.cseq = 0
        self.queue = []

    def via(self):
        return "SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK%s;alias;rport" % (
            uuid.uuid4().hex[:16])


def start_tls(start_pbx, certs, workers=2, extra=EXTS, sets=(), tls=True):
    """A daemon with a tls: listener; tls=False for the TCP/UDP-only cases
    (so that they also run against a build without TLS, to show the TCP
    defects they cover)."""
    if not tls:
        return start_pbx(workers=workers, extra=extra, sets=sets)
    _, cert, key = certs
    pbx = start_pbx(workers=workers, extra=extra + tls_extra(cert, key),
                    sets=tls_sets() + tuple(sets))
    pbx.tls_addr = (pbx.host, pbx.ports["tls"])
    return pbx


@pytest.fixture
def made():
    uas = []
    yield uas
    for ua in uas:
        ua.close()


def ua_of(pbx, ext, kind, certs, made, register=True):
    ua = TlsUA(pbx, ext, certs[0] / "ca.pem") if kind == "tls" else \
        UA(pbx, ext, tcp=(kind == "tcp"))
    made.append(ua)
    if register:
        ua.register()
    return ua


def rr_transport(value):
    m = re.search(r";transport=(\w+)", value)
    return m.group(1).lower() if m else "udp"


def rr_port(value):
    return int(re.search(r"<sip:[^:;>]+:(\d+)", value).group(1))


# --- register ----------------------------------------------------------------

def test_tls_register_401_200_and_rport(start_pbx, certs, made):
    """liblinphone's first REGISTER on a new TLS connection carries Contact
    port -2: answered with the challenge, not 400. The Via of every
    response carries received and the connection's source port in rport,
    from which the phone learns its own port for the next REGISTER."""
    pbx = start_tls(start_pbx, certs)
    ua = ua_of(pbx, "100", "tls", certs, made, register=False)
    assert ua.sock.version() == "TLSv1.2"
    call_id, tag = uuid.uuid4().hex, uuid.uuid4().hex[:8]
    to = "<sip:100@test.local>"
    ua.contact = "<sip:100@127.0.0.1:-2;transport=tls>"
    ua.send(ua.build("REGISTER", "sip:test.local", to, call_id, tag,
                     extra="Expires: 300\r\n"))
    r = ua.response("REGISTER")
    assert r.status == 401, r.raw
    via = r.get("Via")
    assert ";rport=%d" % ua.port in via, via
    assert ";received=127.0.0.1" in via, via
    assert ";alias" in via
    port = int(re.search(r";rport=(\d+)", via).group(1))
    ua.contact = "<sip:100@127.0.0.1:%d;transport=tls>" % port
    auth = ua.digest(r.get("WWW-Authenticate"), "REGISTER", "sip:test.local")
    ua.send(ua.build("REGISTER", "sip:test.local", to, call_id, tag,
                     extra="Authorization: %s\r\nExpires: 300\r\n" % auth))
    r = ua.response("REGISTER")
    assert r.status == 200, r.raw
    assert "transport=tls" in r.get("Contact")


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_rport_filled_over_stream(start_pbx, certs, made, kind):
    """RFC 3581 over TCP (a defect seen with liblinphone) and TLS: a bare
    rport in the top Via comes back filled with the source port."""
    pbx = start_tls(start_pbx, certs, tls=kind == "tls")
    ua = ua_of(pbx, "100", kind, certs, made, register=False)
    ua.send(ua.build("OPTIONS", "sip:test.local", "<sip:test.local>",
                     uuid.uuid4().hex, "o1"))
    r = ua.response("OPTIONS")
    assert r.status == 200
    assert ";rport=%d" % ua.port in r.get("Via"), r.get("Via")


# --- calls -------------------------------------------------------------------

def answered(pbx, made, certs, a, b):
    caller = ua_of(pbx, "100", a, certs, made)
    callee = ua_of(pbx, "200", b, certs, made)
    call = Call(caller, "200")
    assert call.invite() is None
    inv = callee.request("INVITE")
    cl = Callee(callee, inv)
    cl.reply(180)
    assert caller.response("INVITE").status == 180
    call.answered(cl)
    return caller, callee, call, cl, inv


PORT_OF = {"udp": "udp", "tcp": "tcp", "tls": "tls"}


@pytest.mark.parametrize("a,b", [("tls", "tls"), ("tls", "udp"),
                                 ("udp", "tls"), ("udp", "tcp"),
                                 ("tcp", "udp")])
def test_call_across_transports(start_pbx, certs, made, a, b):
    """Each side's route set names our listener of its own transport
    (host:port and transport param): one Record-Route when both use the
    same transport, two when the proxy converts (r2). The callee's BYE
    and the caller's BYE both arrive."""
    pbx = start_tls(start_pbx, certs, tls="tls" in (a, b))
    caller, callee, call, cl, inv = answered(pbx, made, certs, a, b)
    rr = ", ".join(inv.all("Record-Route"))
    vals = re.findall(r"<[^>]+>", rr)
    assert len(vals) == (1 if a == b else 2), rr
    # callee: its first Route (top Record-Route) is on its own transport
    assert rr_transport(vals[0]) == b, rr
    assert rr_port(vals[0]) == pbx.ports[PORT_OF[b]], rr
    # caller: its first Route (last Record-Route) is on its transport
    assert rr_transport(vals[-1]) == a, rr
    assert rr_port(vals[-1]) == pbx.ports[PORT_OF[a]], rr
    cl.bye()
    bye = caller.request("BYE")
    assert bye.get("Route") is None, bye.raw  # both of ours popped
    caller.answer(bye, 200, call.tag, contact=False)
    assert callee.response("BYE").status == 200
    # and the other way, re-INVITE-free: caller's BYE on a new dialog
    call.in_dialog("INFO")
    info = callee.request("INFO")
    assert info.get("Route") is None, info.raw
    callee.answer(info, 200, cl.tag, contact=False)
    assert caller.response("INFO").status == 200


def test_tls_keepalive_pong(start_pbx, certs, made):
    """RFC 5626 §4.4.1: a CRLFCRLF ping on a TLS flow gets one CRLF."""
    pbx = start_tls(start_pbx, certs)
    ua = ua_of(pbx, "100", "tls", certs, made)
    ua.sock.sendall(b"\r\n\r\n")
    ua.sock.settimeout(3)
    assert ua.sock.recv(10) == b"\r\n"


# --- bad input ---------------------------------------------------------------

def test_tls11_and_plain_text_refused(start_pbx, certs, made):
    """TLS 1.1 and plain SIP on the TLS port: the connection is closed
    with a log line, and a good client is served right after."""
    pbx = start_tls(start_pbx, certs)
    ca = certs[0] / "ca.pem"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    raw = socket.create_connection(pbx.tls_addr, timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    raw.close()

    s = socket.create_connection(pbx.tls_addr, timeout=5)
    s.sendall(b"OPTIONS sip:test.local SIP/2.0\r\nVia: SIP/2.0/TCP "
              b"127.0.0.1:9;branch=z9hG4bKplain\r\nContent-Length: 0\r\n\r\n")
    s.settimeout(5)
    data = b""
    while True:  # the server may send an alert first: read to EOF
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert b"SIP/2.0" not in data
    s.close()
    assert wait_until(lambda: "tls: connection from 127.0.0.1" in
                      pbx.stderr(), 3), pbx.stderr()
    ua = ua_of(pbx, "100", "tls", certs, made)  # still served
    assert ua.sock.version() == "TLSv1.2"


def test_handshake_deadline(start_pbx, certs):
    """A client that connects and never sends its ClientHello is closed by
    the first-message deadline ([sip] tcp_first_message_ms)."""
    pbx = start_tls(start_pbx, certs, sets=("sip.tcp_first_message_ms=300",))
    s = socket.create_connection(pbx.tls_addr, timeout=5)
    t0 = time.monotonic()
    s.settimeout(5)
    assert s.recv(10) == b""
    assert time.monotonic() - t0 < 3
    s.close()


# --- reload ------------------------------------------------------------------

def test_sighup_reload_while_call_is_up(start_pbx, certs, made):
    """SIGHUP loads the renewed certificate for new connections; a call up
    over an old connection goes on (its BYE arrives). A bad file on
    reload is logged and the current certificate stays."""
    d, cert, key = certs
    pbx = start_tls(start_pbx, certs)
    ca = d / "ca.pem"
    before = peer_cert_serial(pbx, ca)
    caller, callee, call, cl, _ = answered(pbx, made, certs, "tls", "tls")

    new_cert, new_key = make_cert(d, "renewed")
    os.replace(str(new_cert), str(cert))
    os.replace(str(new_key), str(key))
    pbx.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "TLS certificate reloaded" in pbx.stderr(),
                      5), pbx.stderr()
    after = peer_cert_serial(pbx, ca)
    assert after != before

    cl.bye()  # over the connections made before the reload
    bye = caller.request("BYE")
    caller.answer(bye, 200, call.tag, contact=False)
    assert callee.response("BYE").status == 200

    key.write_text("not a key\n")
    pbx.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "TLS certificate not reloaded" in
                      pbx.stderr(), 5), pbx.stderr()
    assert peer_cert_serial(pbx, ca) == after
    assert pbx.alive()


# --- dead flows (TCP defect, same over TLS) -----------------------------------

@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_closed_flow_is_unreachable(start_pbx, certs, made, kind):
    """A phone that dropped its connection without unregistering: the
    binding is unreachable, so the call gets 480 at once (no push device)
    instead of a connect to its Contact (the defect: the call hung). Its
    REGISTER on a new connection with the same Contact URI is rung over
    that connection."""
    pbx = start_tls(start_pbx, certs, tls=kind == "tls")
    caller = ua_of(pbx, "100", "udp", certs, made)
    callee = ua_of(pbx, "200", kind, certs, made)
    contact = callee.contact
    callee.sock.close()
    time.sleep(0.2)  # the server sees the FIN
    call = Call(caller, "200")
    assert call.invite() is None
    r = call.response(timeout=3)
    assert r.status == 480, r.raw
    call.ack_failure(r)  # else the 480 is retransmitted into the next call
    assert "connection is gone" in pbx.stderr()

    again = ua_of(pbx, "200", kind, certs, made, register=False)
    again.contact = contact  # same Contact URI on a new connection
    again.register()
    call = Call(caller, "200")
    assert call.invite() is None
    inv = again.request("INVITE", timeout=3)
    again.answer(inv, 486, "x1")
    assert call.response().status == 486


# --- wake over TLS -------------------------------------------------------------

class StreamPhone(Phone):
    """wakeharness' Phone over TLS or TCP with liblinphone's Contact, the
    same URI on every reconnect. One lock around the socket: the reader
    thread and the sender never use the SSL object at once."""

    def __init__(self, pbx, ext, ca, contact_port, kind="tls",
                 on_invite="answer"):
        self.pbx, self.ext = pbx, ext
        self.pw = "pw" + ext
        self.domain = "test.local"
        self.transport = kind
        self.on_invite = on_invite
        self.tcp = True
        self.io = threading.Lock()
        self.sock = tls_connect(pbx, ca) if kind == "tls" else \
            socket.create_connection(pbx.tcp, timeout=5)
        self.sock.settimeout(0.2)
        self.port = contact_port
        import queue
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

    def send(self, text):
        with self.io:
            self.sock.settimeout(5)
            self.sock.sendall(text.encode())
            self.sock.settimeout(0.2)

    def _read(self):
        if not (self.transport == "tls" and self.sock.pending()):
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                return []
        with self.io:
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                return []
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

    def via(self):
        return "SIP/2.0/%s 127.0.0.1;branch=z9hG4bK%s;alias;rport" % (
            self.transport.upper(), uuid.uuid4().hex[:16])

    def contact(self, pn=None, instance=None):
        uri = "sip:%s@127.0.0.1:%d;transport=%s" % (self.ext, self.port,
                                                    self.transport)
        if pn:
            prov, prid, param = pn
            uri += ";pn-provider=%s;pn-prid=%s" % (prov, prid)
            if param:
                uri += ";pn-param=" + param
        return "<%s>" % uri


@pytest.fixture
def tls_env(keys, tmp_path, certs):  # noqa: F811
    made = []

    def make(workers=2, tls=True):
        d = tmp_path / ("run%d" % len(made))
        d.mkdir()
        sim = Sim(keys, d)
        made.append((None, sim))
        text = wakeharness.CONF.format(
            workers=workers, ring=wakeharness.RING_S, apns="yes", fcm="no",
            url=sim.url, key=keys / "apns.p8", kid=wakeharness.KID,
            team=wakeharness.TEAM, bundle=wakeharness.BUNDLE, ca=sim.ca,
            sa=sim.sa, max100=1)
        if tls:
            text = text.replace(
                "listen = udp:127.0.0.1:0 tcp:127.0.0.1:0",
                "listen = udp:127.0.0.1:0 tcp:127.0.0.1:0 tls:127.0.0.1:0")
            text += tls_extra(certs[1], certs[2])
        pbx = wakeharness.Pbx(d, text)
        if tls:
            pbx.tls_addr = (pbx.host, pbx.ports["tls"])
        made[-1] = (pbx, sim)
        return pbx, sim

    yield make
    for pbx, sim in made:
        try:
            if pbx:
                pbx.check_clean_exit()
        finally:
            sim.stop()


@pytest.mark.parametrize("kind", ["tls", "tcp"])
def test_wake_over_stream(tls_env, certs, kind):
    """The app registers over TLS (or TCP) with pn-* params and its
    connection closes (iOS suspended it) without an unregister. A call
    pushes it (product rule 3: the binding is unreachable, not "live"; the
    defect: no push and a call hanging, or a push and the INVITE never
    reaching the woken app), the woken app registers over a new
    connection with the same Contact URI and gets the INVITE over that
    connection; the caller gets the 200."""
    pbx, sim = tls_env(tls=kind == "tls")
    ca = certs[0] / "ca.pem"
    tok = apns_token()
    pn = ("apns", tok, wakeharness.VOIP)
    app = StreamPhone(pbx, "101", ca, 40000, kind)
    try:
        r = app.register(pn=pn)
        assert r["status"] == 200, r["first"]
    finally:
        app.close()  # the connection goes, the binding stays
    caller = Phone(pbx, "102")
    woken = None
    try:
        r = caller.register()
        assert r["status"] == 200
        call = caller.invite("101")
        sim.wait_push(tok, kind=None)
        woken = StreamPhone(pbx, "101", ca, 40000, kind)  # same Contact URI
        r = woken.register(pn=pn)
        assert r["status"] == 200, r["first"]
        final = caller.wait_final(call, 8)
        assert final is not None and final["status"] == 200, final
        assert len(woken.invites) == 1
    finally:
        caller.close()
        if woken:
            woken.close()
