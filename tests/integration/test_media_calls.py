"""[media] relay through whole calls on loopback (issue [media]).

Two cases test_media_nat.py does not cover:
  - a forked call answered by the late branch: extension 100 has a desk
    phone (rings, never answers) and a push device in background; the call
    pushes (pushsim), the woken app registers, gets its own INVITE with its
    own rtpengine offer (via-branch of that branch) and answers;
  - rtpengine killed while a relayed call is up, with on_failure = pass and
    reject: the call up keeps going (in-dialog requests pass, a re-offer
    is refused 503, BYE ends it), and the next call follows on_failure.

Phones are wakeharness.Phone with SDP (MediaPhone): their RTP socket is on
127.0.0.1, so rtpengine (also on 127.0.0.1) is told apart from a phone by
its port range, never by the c= address. pushpbx, pushsim and rtpengine are
private to each test, on ephemeral ports.
"""
import re
import signal
import struct
import socket
import time
import uuid

import pytest

from conftest import Pbx
from rtpengine import ng_request, rtpengine, start_rtpengine  # noqa: F401
from wakeharness import (CONF, KID, TEAM, BUNDLE, RING_S, VOIP, Phone, Sim,
                         admin_get, apns_token, background, hget, keys,  # noqa
                         phones, require_pushsim, wait_until)  # noqa: F401


def sdp(port, sess):
    return ("v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=-\r\n"
            "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n"
            "a=rtpmap:0 PCMU/8000\r\n" % (sess, port))


def media_of(body):
    """(c= address, m= port) of an SDP body."""
    c = re.search(r"(?m)^c=IN IP4 (\S+)", body).group(1)
    return c, int(re.search(r"(?m)^m=audio (\d+)", body).group(1))


class MediaPhone(Phone):
    """wakeharness.Phone with an RTP socket and SDP: its INVITEs carry an
    offer, on_invite = "answer" answers 200 with an SDP answer (and a
    re-INVITE too); INFO is answered 200."""

    def __init__(self, *a, **kw):
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self.seq = 0
        super().__init__(*a, **kw)

    def _sdp_reply(self, m, status, reason):
        body = sdp(self.rtp_port, 2)
        to = hget(m, "to")
        if ";tag=" not in to:
            to += ";tag=" + self.tag
        vias = "".join("Via: %s\r\n" % v for v in hget(m, "via", True))
        rr = "".join("Record-Route: %s\r\n" % v
                     for v in hget(m, "record-route", True))
        self.send("SIP/2.0 %d %s\r\n%s%sFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\n"
                  "CSeq: %s\r\nContact: <sip:%s@127.0.0.1:%d>\r\n"
                  "Content-Type: application/sdp\r\nContent-Length: %d\r\n"
                  "\r\n%s" % (status, reason, vias, rr, hget(m, "from"), to,
                              hget(m, "call-id"), hget(m, "cseq"), self.ext,
                              self.port, len(body), body))

    def _on_request(self, m):
        if m["method"] == "INVITE" and self.on_invite == "answer":
            with self.lock:
                self.invites.append(m)
            if ";tag=" not in hget(m, "to"):
                self.reply(m, 180, "Ringing", self.tag)
            self._sdp_reply(m, 200, "OK")
        elif m["method"] == "INFO":
            self.reply(m, 200, "OK", self.tag)
        else:
            super()._on_request(m)

    def invite_sdp(self, to, body=None):
        """An authenticated INVITE with an SDP offer (the 407 round first;
        body: the offer, this phone's own by default); returns call."""
        if body is None:
            body = sdp(self.rtp_port, 1)
        call = {"call_id": uuid.uuid4().hex, "to": to, "cseq": 0,
                "ruri": "sip:%s@test.local" % to}
        authz = ""
        for _ in range(2):
            call["cseq"] += 1
            call["via"] = self.via()
            self.send("INVITE %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                      "From: <sip:%s@test.local>;tag=%s\r\n"
                      "To: <sip:%s@test.local>\r\nCall-ID: %s\r\n"
                      "CSeq: %d INVITE\r\nContact: <sip:%s@127.0.0.1:%d>\r\n"
                      "%sContent-Type: application/sdp\r\n"
                      "Content-Length: %d\r\n\r\n%s" %
                      (call["ruri"], call["via"], self.ext, self.tag, to,
                       call["call_id"], call["cseq"], self.ext, self.port,
                       authz, len(body), body))
            if authz:
                return call
            r = self.wait_response(
                pred=lambda m: hget(m, "call-id") == call["call_id"] and
                m["status"] >= 200)
            assert r is not None and r["status"] == 407, r and r["first"]
            self.ack(call, r)
            authz = "Proxy-Authorization: %s\r\n" % digest_for(
                self, r, call["ruri"])
        return call

    def in_dialog(self, call, resp, method, body=""):
        """An in-dialog request after the 2xx resp (through the proxy's
        Record-Route to the callee's Contact); returns its final."""
        call["cseq"] += 1
        target = re.search(r"<([^>]+)>", hget(resp, "contact")).group(1)
        route = "".join("Route: %s\r\n" % v for v in
                        reversed(hget(resp, "record-route", True)))
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        self.send("%s %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                  "%sFrom: <sip:%s@test.local>;tag=%s\r\nTo: %s\r\n"
                  "Call-ID: %s\r\nCSeq: %d %s\r\n"
                  "Contact: <sip:%s@127.0.0.1:%d>\r\n%s"
                  "Content-Length: %d\r\n\r\n%s"
                  % (method, target, self.via(), route, self.ext, self.tag,
                     hget(resp, "to"), call["call_id"], call["cseq"], method,
                     self.ext, self.port, ctype, len(body), body))
        cseq = "%d %s" % (call["cseq"], method)
        r = self.wait_response(
            timeout=8, pred=lambda m: hget(m, "call-id") == call["call_id"]
            and hget(m, "cseq") == cseq and m["status"] >= 200)
        assert r is not None, "no final answer to " + method
        if method == "INVITE" and r["status"] < 300:
            self.ack2xx(call, r)
        return r

    def send_rtp(self, port, count, ssrc):
        for _ in range(count):
            self.rtp.sendto(struct.pack("!BBHII", 0x80, 0, self.seq,
                                        self.seq * 160, ssrc) + b"\xff" * 160,
                            ("127.0.0.1", port))
            self.seq += 1

    def recv_rtp(self, count, timeout=3.0):
        """SSRCs of the first count RTP packets received."""
        self.rtp.settimeout(timeout)
        got = []
        try:
            for _ in range(count):
                data, _ = self.rtp.recvfrom(2048)
                got.append(struct.unpack("!I", data[8:12])[0])
        except socket.timeout:
            pass
        return got

    def close(self):
        super().close()
        self.rtp.close()


def digest_for(phone, chal_resp, uri):
    from wakeharness import digest
    return digest(hget(chal_resp, "proxy-authenticate"), phone.ext, phone.pw,
                  "INVITE", uri)


def ng(rtp, body):
    """One ng request (bencoded body) to rtpengine; the answer."""
    # A fresh cookie each time: rtpengine answers a known cookie from its
    # cache (the fixture's readiness ping used "probe").
    ans = ng_request(rtp.ng, body, cookie=uuid.uuid4().hex[:12].encode(),
                     timeout=1.0)
    assert ans is not None, "rtpengine did not answer " + body.decode()
    return ans


def bdecode(data, i=0):
    """(value, next index) of the bencoded value at data[i:]."""
    c = data[i:i + 1]
    if c == b"i":
        e = data.index(b"e", i)
        return int(data[i + 1:e]), e + 1
    if c in (b"l", b"d"):
        items, i = [], i + 1
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            items.append(v)
        if c == b"l":
            return items, i + 1
        return dict(zip(items[::2], items[1::2])), i + 1
    colon = data.index(b":", i)
    n = int(data[i:colon])
    return data[colon + 1:colon + 1 + n], colon + 1 + n


def ng_calls(rtp):
    """Call-IDs rtpengine has (ng list)."""
    ans = bdecode(ng(rtp, b"d7:command4:list5:limiti100ee"))[0]
    assert ans.get(b"result") == b"ok", ans
    return ans.get(b"calls", [])


def wait_no_calls(rtp, timeout=5):
    wait_until(lambda: not ng_calls(rtp), timeout)
    return ng_calls(rtp)


def query(rtp, call_id):
    return ng(rtp, b"d7:command5:query7:call-id%d:%se" % (
        len(call_id), call_id.encode()))


def in_range(rtp, port):
    return rtp.port_min <= port <= rtp.port_max


def metric(pbx, name):
    for line in admin_get(pbx, "/metrics", raw=True).splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    raise AssertionError("no metric " + name)


@pytest.fixture
def media_env(keys, tmp_path):
    """media_env(rtp, on_failure) -> (pbx, sim): wakeharness's daemon and
    pushsim, with [media] pointing at rtp (timeout 200 ms, 1 repeat)."""
    require_pushsim()
    made = []

    def make(rtp, on_failure="pass"):
        d = tmp_path / ("run%d" % len(made))
        d.mkdir()
        sim = Sim(keys, d)
        made.append((None, sim))
        text = CONF.format(workers=2, ring=RING_S, apns="yes", fcm="yes",
                           url=sim.url, key=keys / "apns.p8", kid=KID,
                           team=TEAM, bundle=BUNDLE, ca=sim.ca, sa=sim.sa,
                           max100=1)
        text += ("\n[media]\nrtpengine = %s\nrelay = always\n"
                 "timeout_ms = 200\nretries = 1\non_failure = %s\n" %
                 (rtp.address, on_failure))
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


def test_fork_answered_by_late_woken_branch(media_env, phones, rtpengine):
    """100 has a ringing desk phone and an app in background. The call
    rings the desk (its own offer) and pushes; the woken app registers,
    its late branch gets its own offer (another rtpengine port pair) and
    answers: the caller's 200 carries rtpengine's SDP, RTP flows both ways
    through the relay, the desk is cancelled, and after BYE rtpengine has
    no call."""
    pbx, sim = media_env(rtpengine)
    pn = ("apns", apns_token(), VOIP)
    desk = phones(pbx, "100", on_invite="ring")
    r = desk.register()
    assert r["status"] == 200, r["first"]
    app = MediaPhone(pbx, "100", on_invite="answer")
    caller = MediaPhone(pbx, "101")
    try:
        background(app, pn)
        call = caller.invite_sdp("100")
        assert wait_until(lambda: desk.invites_for(call), 5), \
            "the desk was not rung"
        desk_sdp = desk.invites_for(call)[0]["body"]
        _, desk_port = media_of(desk_sdp)
        assert in_range(rtpengine, desk_port), desk_sdp
        assert sim.wait_push(pn[1])
        # The call is on rtpengine (the desk's offer) before the app wakes.
        assert call["call_id"].encode() in ng_calls(rtpengine)
        r = app.register(pn=pn)
        assert r["status"] == 200, r["first"]
        final = caller.wait_final(call, 8)
        assert final is not None and final["status"] == 200, final
        assert len(app.invites_for(call)) == 1
        app_sdp = app.invites_for(call)[0]["body"]
        _, app_port = media_of(app_sdp)
        # The late branch had its own offer: another port pair than the
        # desk's, both rtpengine's, none the caller's.
        assert in_range(rtpengine, app_port), app_sdp
        assert app_port != desk_port
        assert caller.rtp_port not in (app_port, desk_port)
        c, port_for_caller = media_of(final["body"])
        assert c == "127.0.0.1" and in_range(rtpengine, port_for_caller), \
            final["body"]
        assert port_for_caller != app.rtp_port
        assert hget(final, "content-length") == str(len(final["body"]))
        caller.ack2xx(call, final)
        # The desk branch is cancelled.
        assert wait_until(lambda: desk.cancels_for(call), 5)
        # RTP through the relay, both ways.
        caller.send_rtp(port_for_caller, 5, 0xca11)
        app.send_rtp(app_port, 5, 0xa99)
        assert app.recv_rtp(5) == [0xca11] * 5
        assert caller.recv_rtp(5) == [0xa99] * 5
        # rtpengine has the call with the caller's and the app's tags.
        q = query(rtpengine, call["call_id"])
        assert b"6:result2:ok" in q, q
        assert caller.tag.encode() in q and app.tag.encode() in q, q
        # BYE from the caller: the app gets it and rtpengine has no call.
        bye = caller.in_dialog(call, final, "BYE")
        assert bye["status"] == 200, bye["first"]
        assert app.requests_for(call, "BYE")
        assert wait_no_calls(rtpengine) == [], \
            "rtpengine still has the call after BYE"
        # The delete's figures reached the call record.
        rec = wait_until(lambda: [
            c for c in admin_get(pbx, "/api/calls")["items"]
            if c.get("media") and c["media"].get("stats")], 5)
        assert rec, admin_get(pbx, "/api/calls")
        m = rec[0]["media"]
        assert m["caller_packets"] == 5 and m["callee_packets"] == 5, m
    finally:
        app.close()
        caller.close()


def kill(rtp):
    """SIGKILL the private rtpengine (no goodbye to anyone); its fixture
    is told it was stopped on purpose."""
    rtp.proc.send_signal(signal.SIGKILL)
    rtp.proc.wait()
    rtp.stopped = True
    rtp._log.close()


@pytest.mark.parametrize("mode", ["pass", "reject"])
def test_rtpengine_killed_mid_call(media_env, rtpengine, mode):
    """A relayed call is up; rtpengine is killed. The call keeps going: an
    in-dialog INFO passes, a re-INVITE with SDP is refused 503 (the session
    stays as it was), BYE ends it (its delete times out: logged and counted
    as the relay's timeout, no crash). The next call follows on_failure:
    pass = through unrelayed (the SDP untouched, counted), reject = 503."""
    pbx, _ = media_env(rtpengine, on_failure=mode)
    callee = MediaPhone(pbx, "102", on_invite="answer")
    caller = MediaPhone(pbx, "101")
    try:
        assert callee.register()["status"] == 200
        call = caller.invite_sdp("102")
        final = caller.wait_final(call, 5)
        assert final is not None and final["status"] == 200, final
        _, port_for_caller = media_of(final["body"])
        assert in_range(rtpengine, port_for_caller), final["body"]
        caller.ack2xx(call, final)
        assert metric(pbx, "pushpbx_media_relay_up") == 1

        kill(rtpengine)

        info = caller.in_dialog(call, final, "INFO")
        assert info["status"] == 200, info["first"]
        assert callee.requests_for(call, "INFO")
        t0 = time.monotonic()
        re_inv = caller.in_dialog(call, final, "INVITE",
                                  sdp(caller.rtp_port, 1))
        assert re_inv["status"] == 503, re_inv["first"]
        assert hget(re_inv, "retry-after") == "5"
        # 2 tries of 200 ms on the one rtpengine, then the answer.
        assert time.monotonic() - t0 >= 0.35
        assert len(callee.requests_for(call, "INVITE")) == 1
        bye = caller.in_dialog(call, final, "BYE")
        assert bye["status"] == 200, bye["first"]
        assert callee.requests_for(call, "BYE")
        assert wait_until(lambda: "media: delete timeout" in
                          pbx.stderr_path.read_text(errors="replace"), 5), \
            "the failed delete was not logged"
        assert metric(pbx, "pushpbx_media_relay_up") == 0
        assert metric(pbx, "pushpbx_media_relay_timeouts_total") >= 1

        call2 = caller.invite_sdp("102")
        final2 = caller.wait_final(call2, 8)
        assert final2 is not None, "no answer to the call after the kill"
        if mode == "pass":
            assert final2["status"] == 200, final2["first"]
            assert media_of(final2["body"]) == ("127.0.0.1",
                                                callee.rtp_port)
            assert media_of(callee.invites_for(call2)[0]["body"]) == (
                "127.0.0.1", caller.rtp_port)
            caller.ack2xx(call2, final2)
            assert metric(pbx, "pushpbx_media_passed_total") == 1
            assert caller.in_dialog(call2, final2, "BYE")["status"] == 200
        else:
            assert final2["status"] == 503, final2["first"]
            assert callee.invites_for(call2) == []
            assert metric(pbx, "pushpbx_media_rejected_total") == 1
        assert metric(pbx, "pushpbx_media_failures_total") >= 2
    finally:
        caller.close()
        callee.close()
