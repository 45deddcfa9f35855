"""[calls] calls between extensions through the proxy (src/proxy).

Each test runs the real daemon (2 workers unless said otherwise) and small
scripted user agents written here on raw sockets: they REGISTER with digest
credentials, place and answer calls, and check what the proxy relays. The
UAs are strict about what they expect (status codes, CANCEL arriving,
Record-Route present) and every wait is bounded.
"""
import hashlib
import re
import socket
import time
import uuid

import pytest

EXTS = """
[extension.100]
password = pw100
[extension.200]
password = pw200
[extension.300]
password = pw300
"""

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
       "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")


def H(alg, s):
    f = hashlib.sha256 if alg.upper().startswith("SHA-256") else hashlib.md5
    return f(s.encode()).hexdigest()


class Msg:
    def __init__(self, raw):
        self.raw = raw
        head, _, self.body = raw.partition("\r\n\r\n")
        lines = head.split("\r\n")
        self.first = lines[0]
        self.headers = []
        for l in lines[1:]:
            if ":" in l:
                n, v = l.split(":", 1)
                self.headers.append((n.strip(), v.strip()))
        p = self.first.split(" ", 2)
        if p[0] == "SIP/2.0":
            self.status, self.method = int(p[1]), None
        else:
            self.status, self.method, self.ruri = None, p[0], p[1]

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def get(self, name):
        v = self.all(name)
        return v[0] if v else None

    @property
    def cseq_method(self):
        return self.get("CSeq").split()[1]

    def __repr__(self):
        return self.first


class UA:
    """A minimal SIP user agent on 127.0.0.1 (UDP or TCP)."""

    def __init__(self, pbx, ext, tcp=False):
        self.pbx, self.ext, self.tcp = pbx, ext, tcp
        self.pw = "pw%s" % ext
        self.dest = pbx.tcp if tcp else pbx.udp
        if tcp:
            self.sock = socket.create_connection(self.dest, timeout=5)
            self.rbuf = b""
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.tp = "TCP" if tcp else "UDP"
        self.contact = "<sip:%s@127.0.0.1:%d%s>" % (
            ext, self.port, ";transport=tcp" if tcp else "")
        self.cseq = 0
        self.queue = []

    def close(self):
        self.sock.close()

    def send(self, text):
        self.last_sent = text
        data = text.encode()
        if self.tcp:
            self.sock.sendall(data)
        else:
            self.sock.sendto(data, self.dest)

    def _read_one(self, timeout):
        if not self.tcp:
            self.sock.settimeout(timeout)
            try:
                data, _ = self.sock.recvfrom(70000)
            except socket.timeout:
                return None
            return Msg(data.decode(errors="replace"))
        deadline = time.monotonic() + timeout
        while True:
            while self.rbuf.startswith(b"\r\n"):
                self.rbuf = self.rbuf[2:]
            end = self.rbuf.find(b"\r\n\r\n")
            if end >= 0:
                m = re.search(rb"(?im)^(content-length|l)\s*:\s*(\d+)",
                              self.rbuf[:end])
                clen = int(m.group(2)) if m else 0
                if len(self.rbuf) >= end + 4 + clen:
                    one = self.rbuf[:end + 4 + clen]
                    self.rbuf = self.rbuf[end + 4 + clen:]
                    return Msg(one.decode(errors="replace"))
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                return None
            self.rbuf += chunk

    def expect(self, pred, timeout=5.0, what="message"):
        """Next message matching pred (others are kept for later)."""
        for i, m in enumerate(self.queue):
            if pred(m):
                return self.queue.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self._read_one(deadline - time.monotonic())
            if m is None:
                break
            if pred(m):
                return m
            self.queue.append(m)
        raise AssertionError("%s %s: no %s within %.1fs (got %r)" %
                             (self.tp, self.ext, what, timeout, self.queue))

    def response(self, method, timeout=5.0, skip_100=True):
        return self.expect(
            lambda m: m.status is not None and m.cseq_method == method and
            not (skip_100 and m.status == 100), timeout,
            "response to %s" % method)

    def request(self, method, timeout=5.0):
        return self.expect(lambda m: m.method == method, timeout, method)

    def nothing(self, pred, timeout):
        try:
            m = self.expect(pred, timeout)
        except AssertionError:
            return True
        raise AssertionError("unexpected %r" % m)

    # --- building ------------------------------------------------------

    def via(self):
        return "SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK%s;rport" % (
            self.tp, self.port, uuid.uuid4().hex[:16])

    def build(self, method, ruri, to, call_id, from_tag, to_tag=None,
              cseq=None, extra="", body="", via=None):
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        return ("%s %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                "From: <sip:%s@test.local>;tag=%s\r\nTo: %s%s\r\n"
                "Call-ID: %s\r\nCSeq: %d %s\r\nContact: %s\r\n%s%s"
                "Content-Length: %d\r\n\r\n%s" %
                (method, ruri, via or self.via(), self.ext, from_tag, to,
                 ";tag=%s" % to_tag if to_tag else "", call_id, cseq,
                 method, self.contact, extra, ctype, len(body), body))

    def digest(self, challenge, method, uri, user=None):
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        alg = params.get("algorithm", "MD5")
        cnonce, nc = uuid.uuid4().hex[:8], "00000001"
        ha1 = H(alg, "%s:%s:%s" % (user or self.ext, params["realm"],
                                   self.pw))
        ha2 = H(alg, "%s:%s" % (method, uri))
        resp = H(alg, "%s:%s:%s:%s:auth:%s" % (ha1, params["nonce"], nc,
                                               cnonce, ha2))
        return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", '
                'response="%s", algorithm=%s, qop=auth, nc=%s, '
                'cnonce="%s"' % (user or self.ext, params["realm"],
                                 params["nonce"], uri, resp, alg, nc,
                                 cnonce))

    def register(self, expires=300):
        call_id = uuid.uuid4().hex
        tag = uuid.uuid4().hex[:8]
        to = "<sip:%s@test.local>" % self.ext
        ruri = "sip:test.local"
        self.send(self.build("REGISTER", ruri, to, call_id, tag,
                             extra="Expires: %d\r\n" % expires))
        r = self.response("REGISTER")
        if r.status == 401:
            auth = self.digest(r.get("WWW-Authenticate"), "REGISTER", ruri)
            self.send(self.build("REGISTER", ruri, to, call_id, tag,
                                 extra="Authorization: %s\r\nExpires: %d\r\n"
                                 % (auth, expires)))
            r = self.response("REGISTER")
        assert r.status == 200, r.raw

    def answer(self, req, status, to_tag, body="", contact=True, extra=()):
        """Response to a received request (copies Via, Record-Route...);
        extra: more header lines."""
        lines = ["SIP/2.0 %d %s" % (status, {180: "Ringing", 200: "OK",
                                              486: "Busy Here",
                                              487: "Request Terminated"}
                                     .get(status, "Whatever"))]
        for n, v in req.headers:
            ln = n.lower()
            if ln in ("via", "v", "record-route", "from", "f", "call-id",
                      "i", "cseq"):
                lines.append("%s: %s" % (n, v))
            elif ln in ("to", "t"):
                lines.append("To: %s%s" % (v, "" if "tag=" in v or
                                           status == 100 else
                                           ";tag=%s" % to_tag))
        if contact:
            lines.append("Contact: %s" % self.contact)
        lines += list(extra)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append("Content-Length: %d" % len(body))
        self.send("\r\n".join(lines) + "\r\n\r\n" + body)


class Call:
    """Caller side of one dialog."""

    def __init__(self, caller, callee_ext, domain="test.local"):
        self.ua = caller
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:8]
        self.ruri = "sip:%s@%s" % (callee_ext, domain)
        self.to = "<sip:%s@%s>" % (callee_ext, domain)
        self.via = None

    def invite(self, auth=True, expect_100=False, extra=""):
        self.via = self.ua.via()
        self.ua.send(self.ua.build("INVITE", self.ruri, self.to,
                                   self.call_id, self.tag, body=SDP,
                                   via=self.via, extra=extra))
        r = self.response()
        if r.status != 407 or not auth:
            return r
        self.ack_failure(r)
        cred = self.ua.digest(r.get("Proxy-Authenticate"), "INVITE",
                              self.ruri)
        self.via = self.ua.via()
        self.ua.send(self.ua.build("INVITE", self.ruri, self.to,
                                   self.call_id, self.tag, body=SDP,
                                   via=self.via,
                                   extra="Proxy-Authorization: %s\r\n%s" %
                                   (cred, extra)))
        self.invite_cseq = self.ua.cseq
        if expect_100:
            t = self.ua.expect(lambda m: m.status == 100, 2, "100 Trying")
            assert t.cseq_method == "INVITE"
        return None

    def ack_failure(self, r):
        """ACK a non-2xx final response to our INVITE (RFC 3261 §17.1.1.3):
        without it the proxy retransmits the response over UDP, and a
        later read could take the retransmission for another call's."""
        self.ua.send(self.ua.build("ACK", self.ruri, self.to, self.call_id,
                                   self.tag, to_tag=_tag(r.get("To")),
                                   cseq=self.ua.cseq, via=self.via))

    def response(self, timeout=5.0):
        """The next final-or-provisional response (not 100) to THIS call's
        INVITE (by Call-ID: another call's retransmission is kept)."""
        return self.ua.expect(
            lambda m: m.status is not None and m.cseq_method == "INVITE" and
            m.status != 100 and m.get("Call-ID") == self.call_id, timeout,
            "response to INVITE of %s" % self.call_id)

    def cancel(self):
        self.ua.send(self.ua.build("CANCEL", self.ruri, self.to,
                                   self.call_id, self.tag,
                                   cseq=self.invite_cseq, via=self.via))

    def established(self, ok):
        """Dialog state from the 2xx."""
        self.to_tag = _tag(ok.get("To"))
        rr = ok.all("Record-Route")
        assert rr, "no Record-Route in 200: " + ok.raw
        # The route set is every entry in reverse (RFC 3261 §12.1.2), not
        # every header line: a proxy that record-routes twice puts both
        # entries in one line.
        rr = [x.strip() for v in rr for x in v.split(",")]
        self.route = ", ".join(reversed(rr))
        self.remote = re.search(r"<([^>]+)>", ok.get("Contact")).group(1)

    def in_dialog(self, method, cseq=None, body=""):
        self.ua.send(self.ua.build(method, self.remote, self.to,
                                   self.call_id, self.tag, self.to_tag,
                                   cseq=cseq, body=body,
                                   extra="Route: %s\r\n" % self.route))

    def ack(self):
        self.in_dialog("ACK", cseq=self.invite_cseq)

    def answered(self, cl):
        """The callee (cl, a Callee) answers 200 with SDP; the caller takes
        the 200, ACKs it, and the callee must get the ACK in the dialog
        the 200 made (its To tag): returned."""
        cl.reply(200, SDP)
        ok = self.response()
        assert ok.status == 200, ok.raw
        self.established(ok)
        self.ack()
        ack = cl.ua.request("ACK")
        assert _tag(ack.get("To")) == cl.tag, ack.raw
        return ack

    def hang_up(self, cl):
        """BYE from the caller, answered 200 by the callee (cl); the BYE
        the callee got is returned."""
        self.in_dialog("BYE")
        bye = cl.ua.request("BYE")
        cl.ua.answer(bye, 200, cl.tag, contact=False)
        assert self.ua.response("BYE").status == 200
        return bye


class Callee:
    """Callee side of one dialog (sends in-dialog requests back)."""

    def __init__(self, ua, invite):
        self.ua, self.inv = ua, invite
        self.tag = uuid.uuid4().hex[:8]
        self.route = ", ".join(invite.all("Record-Route"))
        self.remote = re.search(r"<([^>]+)>", invite.get("Contact")).group(1)

    def reply(self, status, body=""):
        self.ua.answer(self.inv, status, self.tag, body)

    def bye(self):
        frm = self.inv.get("To")  # we are the To of the INVITE
        caller = self.inv.get("From")
        msg = ("BYE %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
               "From: %s;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 BYE\r\n"
               "Route: %s\r\nContent-Length: 0\r\n\r\n" %
               (self.remote, self.ua.via(), frm, self.tag, caller,
                self.inv.get("Call-ID"), self.route))
        self.ua.send(msg)


def _tag(v):
    m = re.search(r";tag=([^;>\s]+)", v or "")
    return m.group(1) if m else None


@pytest.fixture
def call_pbx(start_pbx):
    return lambda workers=2, sets=(): start_pbx(workers=workers, extra=EXTS,
                                                 sets=sets)


@pytest.fixture
def uas():
    made = []

    def make(pbx, ext, tcp=False, register=True):
        ua = UA(pbx, ext, tcp)
        made.append(ua)
        if register:
            ua.register()
        return ua

    yield make
    for ua in made:
        ua.close()


def setup_answered(pbx, uas, caller_tcp=False, callee_tcp=False):
    caller = uas(pbx, "100", tcp=caller_tcp)
    callee = uas(pbx, "200", tcp=callee_tcp)
    call = Call(caller, "200")
    assert call.invite(expect_100=True) is None
    inv = callee.request("INVITE")
    assert inv.ruri.startswith("sip:200@127.0.0.1:%d" % callee.port)
    assert inv.get("Record-Route") and ";lr" in inv.get("Record-Route")
    cl = Callee(callee, inv)
    cl.reply(180)
    r = caller.response("INVITE")
    assert r.status == 180
    call.answered(cl)
    return caller, callee, call, cl


def test_answered_bye_from_caller(call_pbx, uas):
    pbx = call_pbx()
    caller, callee, call, cl = setup_answered(pbx, uas)
    call.hang_up(cl)
    assert pbx.wait_log("call ended answered")


def test_answered_bye_from_callee(call_pbx, uas):
    pbx = call_pbx()
    caller, callee, call, cl = setup_answered(pbx, uas)
    cl.bye()
    bye = caller.request("BYE")
    assert bye.ruri.startswith("sip:100@127.0.0.1:%d" % caller.port)
    caller.answer(bye, 200, call.tag, contact=False)
    assert callee.response("BYE").status == 200


def test_reinvite_in_dialog(call_pbx, uas):
    pbx = call_pbx()
    caller, callee, call, cl = setup_answered(pbx, uas)
    call.in_dialog("INVITE", body=SDP)
    reinv = callee.request("INVITE")
    assert _tag(reinv.get("To")) == cl.tag
    callee.answer(reinv, 200, cl.tag, SDP)
    ok = caller.response("INVITE")
    assert ok.status == 200
    call.in_dialog("ACK", cseq=caller.cseq)
    callee.request("ACK")


def test_busy(call_pbx, uas):
    pbx = call_pbx()
    caller, callee = uas(pbx, "100"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    inv = callee.request("INVITE")
    callee.answer(inv, 486, "b1")
    r = caller.response("INVITE")
    assert r.status == 486
    callee.request("ACK")  # hop-by-hop ACK from the proxy's client txn
    assert pbx.wait_log("call ended busy status=486")


def test_no_answer_timeout(call_pbx, uas):
    pbx = call_pbx(sets=("proxy.ring_timeout_s=2",))
    caller, callee = uas(pbx, "100"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    inv = callee.request("INVITE")
    callee.answer(inv, 180, "r1")
    assert caller.response("INVITE").status == 180
    r = caller.response("INVITE", timeout=5)
    assert r.status == 480
    c = callee.request("CANCEL", timeout=3)
    callee.answer(c, 200, "r1", contact=False)
    callee.answer(inv, 487, "r1")
    assert pbx.wait_log("call ended no-answer status=480")


def test_no_answer_nobody_rang_408(call_pbx, uas):
    pbx = call_pbx(sets=("proxy.ring_timeout_s=1",))
    caller, callee = uas(pbx, "100"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    callee.request("INVITE")  # never answered at all
    assert caller.response("INVITE", timeout=4).status == 408


def test_caller_cancels(call_pbx, uas):
    pbx = call_pbx()
    caller, callee = uas(pbx, "100"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    inv = callee.request("INVITE")
    callee.answer(inv, 180, "c1")
    assert caller.response("INVITE").status == 180
    call.cancel()
    assert caller.response("CANCEL").status == 200
    assert caller.response("INVITE").status == 487
    c = callee.request("CANCEL")
    callee.answer(c, 200, "c1", contact=False)
    callee.answer(inv, 487, "c1")
    callee.request("ACK")
    assert pbx.wait_log("call ended cancelled")


def test_fork_two_devices(call_pbx, uas):
    pbx = call_pbx()
    caller = uas(pbx, "100")
    desk, app = uas(pbx, "200"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    inv1, inv2 = desk.request("INVITE"), app.request("INVITE")
    assert inv1.get("Via") != inv2.get("Via")  # two branches
    desk.answer(inv1, 180, "d1")
    app.answer(inv2, 180, "a1")
    app.answer(inv2, 200, "a1", SDP)
    ok = caller.response("INVITE")
    while ok.status == 180:
        ok = caller.response("INVITE")
    assert ok.status == 200
    assert _tag(ok.get("To")) == "a1"
    c = desk.request("CANCEL")
    assert "completed elsewhere" in (c.get("Reason") or "")
    desk.answer(c, 200, "d1", contact=False)
    desk.answer(inv1, 487, "d1")
    call.established(ok)
    call.ack()
    app.request("ACK")
    assert pbx.wait_log("by=sip:200@127.0.0.1:%d" % app.port)


def test_device_registers_mid_ring(call_pbx, uas):
    pbx = call_pbx()
    caller, desk = uas(pbx, "100"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    inv1 = desk.request("INVITE")
    desk.answer(inv1, 180, "d1")
    assert caller.response("INVITE").status == 180
    late = uas(pbx, "200")  # registers while the call rings
    inv2 = late.request("INVITE", timeout=3)
    late.answer(inv2, 200, "l1", SDP)
    ok = caller.response("INVITE")
    assert ok.status == 200 and _tag(ok.get("To")) == "l1"
    c = desk.request("CANCEL")
    desk.answer(c, 200, "d1", contact=False)
    desk.answer(inv1, 487, "d1")


@pytest.mark.parametrize("caller_tcp,callee_tcp", [(False, True),
                                                   (True, False)])
def test_udp_tcp_conversion(call_pbx, uas, caller_tcp, callee_tcp):
    pbx = call_pbx()
    caller, callee, call, cl = setup_answered(pbx, uas, caller_tcp,
                                              callee_tcp)
    cl.bye()
    bye = caller.request("BYE")
    caller.answer(bye, 200, call.tag, contact=False)
    assert callee.response("BYE").status == 200


def test_unknown_extension_404(call_pbx, uas):
    pbx = call_pbx()
    caller = uas(pbx, "100")
    assert Call(caller, "999").invite() is None
    assert caller.response("INVITE").status == 404


def test_unregistered_extension_480(call_pbx, uas):
    pbx = call_pbx()
    caller = uas(pbx, "100")
    Call(caller, "300").invite()
    assert caller.response("INVITE").status == 480


def test_unauthenticated_invite_407(call_pbx, uas):
    pbx = call_pbx()
    caller = uas(pbx, "100")
    r = Call(caller, "200").invite(auth=False)
    assert r.status == 407
    assert 'realm="test.local"' in r.get("Proxy-Authenticate")


def test_wrong_domain_refused(call_pbx, uas):
    pbx = call_pbx()
    caller = uas(pbx, "100")
    r = Call(caller, "200", domain="example.com").invite(auth=False)
    assert r.status == 403


def test_spoofed_from_rejected(call_pbx, uas):
    pbx = call_pbx()
    caller, _ = uas(pbx, "100"), uas(pbx, "200")
    call = Call(caller, "200")
    r = call.invite(auth=False)
    assert r.status == 407
    # Credentials of 300 (right password) on a From naming 100.
    caller.pw = "pw300"
    cred = caller.digest(r.get("Proxy-Authenticate"), "INVITE", call.ruri,
                         user="300")
    caller.send(caller.build("INVITE", call.ruri, call.to, call.call_id,
                             call.tag, body=SDP,
                             extra="Proxy-Authorization: %s\r\n" % cred))
    assert caller.response("INVITE").status == 403


def test_in_dialog_wrong_route_refused(call_pbx, uas):
    pbx = call_pbx()
    caller = uas(pbx, "100")
    msg = caller.build("BYE", "sip:200@127.0.0.1:9", "<sip:200@test.local>",
                       uuid.uuid4().hex, "x1", to_tag="y1",
                       extra="Route: <sip:192.0.2.1;lr>\r\n")
    caller.send(msg)
    assert caller.response("BYE").status == 403


def test_stray_response_dropped(call_pbx, uas):
    pbx = call_pbx(workers=1)  # the barrier below needs one worker
    ua = uas(pbx, "200")
    ua.send("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch="
            "z9hG4bKw00.deadbeef\r\nFrom: <sip:a@test.local>;tag=1\r\n"
            "To: <sip:b@test.local>;tag=2\r\nCall-ID: stray\r\n"
            "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n" % pbx.udp[1])
    # Nothing comes back. Not a sleep but a barrier: an OPTIONS reaches
    # the one worker after the stray response, so whatever that made the
    # daemon send would arrive before the OPTIONS' 200.
    ua.send(ua.build("OPTIONS", "sip:test.local", "<sip:test.local>",
                     uuid.uuid4().hex, "o1"))
    assert ua.response("OPTIONS").status == 200
    assert ua.queue == [], ua.queue
    assert pbx.alive()


def test_retransmissions_and_disorder(call_pbx, uas):
    """Retransmitted INVITE, a stray early ACK, a duplicated CANCEL and a
    2xx racing the CANCEL: answered sanely, no crash, and no leak (the ASan
    build's exit check at teardown)."""
    pbx = call_pbx()
    caller, callee = uas(pbx, "100"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    inv = callee.request("INVITE")
    callee.answer(inv, 180, "z1")
    assert caller.response("INVITE").status == 180
    caller.send(caller.last_sent)  # INVITE retransmission: absorbed
    assert caller.response("INVITE").status == 180  # stored 180 resent
    caller.send(caller.build("ACK", call.ruri, call.to, call.call_id,
                             call.tag, to_tag="nope", cseq=call.invite_cseq,
                             via=call.via))  # ACK before any final
    call.cancel()
    call.cancel()
    assert caller.response("CANCEL").status == 200
    assert caller.response("INVITE").status == 487
    c = callee.request("CANCEL")
    # The retransmitted INVITE was not forwarded: the daemon sent the
    # callee nothing but this CANCEL since (request() keeps what it skips
    # in the queue; one worker's sends to the callee arrive in order).
    assert [m for m in callee.queue if m.method == "INVITE"] == [], \
        callee.queue
    callee.answer(c, 200, "z1", contact=False)
    callee.answer(inv, 200, "z1", SDP)  # answered too late: race
    callee.answer(inv, 487, "z1")
    assert pbx.wait_log("call ended cancelled")
    assert pbx.alive()


# --- review fixes: Require, late 2xx, merged challenges, TCP across workers


def test_require_100rel_is_for_the_callee(call_pbx, uas):
    """A proxy checks Proxy-Require only (RFC 3261 §16.3 item 6): an INVITE
    with Require: 100rel reaches the callee unchanged; Proxy-Require with a
    tag we lack is refused 420; a request we answer ourselves still gets
    420 for Require."""
    pbx = call_pbx()
    caller, callee = uas(pbx, "100"), uas(pbx, "200")
    call = Call(caller, "200")
    r = call.invite(extra="Require: 100rel\r\nSupported: 100rel\r\n")
    assert r is None, r and r.raw  # challenged (407) and sent again
    inv = callee.request("INVITE")
    assert inv.get("Require") == "100rel"
    callee.answer(inv, 486, "q1")
    assert caller.response("INVITE").status == 486
    callee.request("ACK")

    call = Call(caller, "200")
    r = call.invite(auth=False, extra="Proxy-Require: foo, 100rel\r\n")
    assert r.status == 420, r.raw
    assert r.get("Unsupported") == "foo, 100rel"

    caller.send(caller.build("OPTIONS", "sip:test.local", "<sip:test.local>",
                             uuid.uuid4().hex, "o1",
                             extra="Require: foo\r\n"))
    r = caller.response("OPTIONS")
    assert r.status == 420 and r.get("Unsupported") == "foo"


def _dialog(call, ok):
    d = Call(call.ua, "200")
    d.call_id, d.tag, d.invite_cseq = call.call_id, call.tag, call.invite_cseq
    d.established(ok)
    return d


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_late_2xx_relayed_to_caller(call_pbx, uas, how):
    """The callee answers after the caller got 487 (CANCEL race) or 408/480
    (ring timeout): the 2xx still goes upstream (RFC 3261 §16.7, RFC 6026),
    and the caller can ACK and BYE that dialog through us."""
    sets = ("proxy.ring_timeout_s=1",) if how == "timeout" else ()
    pbx = call_pbx(sets=sets)
    caller, callee = uas(pbx, "100"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    inv = callee.request("INVITE")
    callee.answer(inv, 180, "l1")
    assert caller.response("INVITE").status == 180
    if how == "cancel":
        call.cancel()
        assert caller.response("CANCEL").status == 200
        assert caller.response("INVITE").status == 487
    else:
        assert caller.response("INVITE", timeout=4).status == 480
    c = callee.request("CANCEL")
    callee.answer(c, 200, "l1", contact=False)
    callee.answer(inv, 200, "l1", SDP)  # answered anyway
    ok = caller.expect(lambda m: m.status == 200 and
                       m.cseq_method == "INVITE", 3, "late 200 OK")
    assert _tag(ok.get("To")) == "l1"
    d = _dialog(call, ok)
    d.ack()
    assert _tag(callee.request("ACK").get("To")) == "l1"
    d.in_dialog("BYE")
    bye = callee.request("BYE")
    callee.answer(bye, 200, "l1", contact=False)
    assert caller.response("BYE").status == 200
    assert "late 2xx relayed statelessly call_id=%s" % call.call_id \
        in pbx.stderr()


def test_two_callees_both_answer(call_pbx, uas):
    """Two devices answer before the CANCEL reaches the second: both 2xx go
    to the caller (§16.7 step 5), each with its own To tag."""
    pbx = call_pbx()
    caller = uas(pbx, "100")
    desk, app = uas(pbx, "200"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    inv1, inv2 = desk.request("INVITE"), app.request("INVITE")
    app.answer(inv2, 200, "a1", SDP)
    desk.answer(inv1, 200, "d1", SDP)
    oks = [caller.expect(lambda m: m.status == 200 and
                         m.cseq_method == "INVITE", 3, "200 OK %d" % i)
           for i in range(2)]
    assert sorted(_tag(m.get("To")) for m in oks) == ["a1", "d1"]
    # No CANCEL reaches desk: it never sent a provisional (txn defers the
    # CANCEL until one arrives) and its 200 ended the branch.
    for ok in oks:
        d = _dialog(call, ok)
        d.ack()
        ua = app if _tag(ok.get("To")) == "a1" else desk
        assert _tag(ua.request("ACK").get("To")) == _tag(ok.get("To"))
    assert pbx.wait_log("call ended answered")


def test_401_407_challenges_merged(call_pbx, uas):
    """§16.7 step 7: when the best response is a 401/407, the caller gets
    the WWW-Authenticate and Proxy-Authenticate values of every branch's
    401/407 in it."""
    pbx = call_pbx()
    caller = uas(pbx, "100")
    desk, app = uas(pbx, "200"), uas(pbx, "200")
    call = Call(caller, "200")
    call.invite()
    inv1, inv2 = desk.request("INVITE"), app.request("INVITE")
    desk.answer(inv1, 407, "d1", extra=(
        'Proxy-Authenticate: Digest realm="desk", nonce="n1"',))
    desk.request("ACK")  # the 407 was received and kept
    app.answer(inv2, 401, "a1", extra=(
        'WWW-Authenticate: Digest realm="app", nonce="n2"',
        'WWW-Authenticate: Digest realm="app", nonce="n3", '
        'algorithm=SHA-256'))
    app.request("ACK")
    r = caller.response("INVITE")
    assert r.status == 407, r.raw  # the first of the class stays
    assert r.all("Proxy-Authenticate") == ['Digest realm="desk", nonce="n1"']
    assert r.all("WWW-Authenticate") == [
        'Digest realm="app", nonce="n2"',
        'Digest realm="app", nonce="n3", algorithm=SHA-256']
    assert _tag(r.get("To")) == "d1"


def _flow_worker(rr, name):
    return int(re.search(r";%s=([0-9a-f]+)" % name, rr).group(1), 16) & 0xff


def test_tcp_caller_and_callee_on_any_workers(call_pbx, uas):
    """TCP caller and TCP callee, 2 workers: the INVITE, ACK and the
    callee's BYE reach the other side over its own registered connection,
    whether both connections are on one worker or on two (the kernel
    spreads connections; we repeat until both placements were seen). The
    callee UA does not listen, so a new connection to its Contact would be
    refused: only the registered flow works."""
    pbx = call_pbx(workers=2)
    seen = set()
    for attempt in range(40):
        if seen == {"same", "cross"}:
            break
        caller = uas(pbx, "100", tcp=True, register=False)
        callee = uas(pbx, "200", tcp=True)
        call = Call(caller, "200")
        assert call.invite() is None
        inv = callee.request("INVITE", timeout=3)
        rr = inv.get("Record-Route")
        fa, fb = _flow_worker(rr, "pp-fa"), _flow_worker(rr, "pp-fb")
        seen.add("same" if fa == fb else "cross")
        cl = Callee(callee, inv)
        call.answered(cl)
        cl.bye()
        bye = caller.request("BYE")
        caller.answer(bye, 200, call.tag, contact=False)
        assert callee.response("BYE").status == 200
        callee.register(expires=0)
        caller.close()
        callee.close()
    assert seen == {"same", "cross"}, (seen, attempt)
