"""[hardening] item 10: an INVITE without credentials is challenged
statelessly.

A stateful 407 is retransmitted by timer G until the ACK comes or timer H
(64*T1) fires: a spoofed INVITE (forged source, never ACKed) made us send
its victim eleven 407s and hold the transaction for 32 s. The proxy now
answers a request that brings no credentials for our realm with one
stateless response (no server transaction; RFC 3261 §16.6, as Kamailio's
sl_send_reply) and absorbs the ACK for it by its To tag. Requests with
credentials keep their transaction (test_calls_sipp: every caller's
INVITE is challenged, ACKed and sent again with credentials).
"""
import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from conftest import SIPP_DIR, free_port, header, request, status_of

EXTS = """
[registrar]
digest_algorithms = md5,sha256

[extension.100]
password = pw100
[extension.200]
password = pw200
"""

T1_MS = 20  # timer H = 64*T1 = 1.28 s, inside the scenario's 1.5 s pause


def sipp_noack(pbx, tmp_path):
    """Run call_uac_407_noack.xml once; returns (rc, output, message
    log)."""
    sipp = shutil.which("sipp")
    if not sipp:
        pytest.fail("sipp not installed")
    msgs = str(tmp_path / "noack-messages.log")
    cmd = [sipp, "%s:%d" % pbx.udp,
           "-sf", os.path.join(SIPP_DIR, "call_uac_407_noack.xml"),
           "-t", "u1", "-i", "127.0.0.1", "-mi", "127.0.0.1",
           "-p", str(free_port()), "-cp", str(free_port()),
           "-mp", str(free_port(pair=True)),
           "-key", "callee", "200", "-key", "domain", "test.local",
           "-m", "1", "-nr", "-timeout", "10s", "-timeout_error",
           "-trace_err", "-error_file", str(tmp_path / "noack-errors.log"),
           "-trace_msg", "-message_file", msgs, "-nostdin"]
    r = subprocess.run(cmd, cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    log = open(msgs, errors="replace").read() if os.path.exists(msgs) else ""
    return r.returncode, r.stdout.decode(errors="replace"), log


@pytest.mark.parametrize("workers", [1, 2])
def test_unacked_407_sent_once(start_pbx, tmp_path, workers):
    """One 407 for an INVITE without credentials that is never ACKed,
    however long we wait (the pause covers every timer G firing up to
    timer H: 20, 60, 140, 300, 620, 1260 ms with T1 = 20 ms)."""
    pbx = start_pbx(workers=workers, extra=EXTS,
                    sets=["sip.t1_ms=%d" % T1_MS])
    rc, out, log = sipp_noack(pbx, tmp_path)
    # A second 407 also makes SIPp abort the call ("unexpected message
    # while pausing"), so before the fix this counts 2, not 7.
    n = log.count("\nSIP/2.0 407 ")
    assert n == 1, "%d x 407 received\n%s" % (n, log[-4000:])
    assert rc == 0, "sipp rc=%d\n%s" % (rc, out)


def invite(port, ruri, route=None, branch=None, call_id=None, cseq=1):
    branch = branch or "z9hG4bK" + uuid.uuid4().hex[:16]
    call_id = call_id or uuid.uuid4().hex
    return ("INVITE %s SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n"
            "%s"
            "Max-Forwards: 70\r\n"
            "From: <sip:100@test.local>;tag=caller1\r\n"
            "To: <%s>\r\n"
            "Call-ID: %s\r\n"
            "CSeq: %d INVITE\r\n"
            "Contact: <sip:100@127.0.0.1:%d>\r\n"
            "Content-Length: 0\r\n\r\n" %
            (ruri, port, branch, "Route: %s\r\n" % route if route else "",
             ruri, call_id, cseq, port)).encode(), branch, call_id


def ack_for(port, ruri, rsp, route, branch, call_id):
    to = [l for l in rsp.split("\r\n") if l.lower().startswith("to:")][0]
    return ("ACK %s SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n"
            "Route: %s\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:100@test.local>;tag=caller1\r\n"
            "%s\r\n"
            "Call-ID: %s\r\n"
            "CSeq: 1 ACK\r\n"
            "Content-Length: 0\r\n\r\n" %
            (ruri, port, branch, route, to, call_id)).encode()


def test_ack_of_stateless_407_absorbed(start_pbx, udp):
    """The ACK for a stateless 407 matches no transaction. It carries the
    INVITE's Route (ours, preloaded by an outbound-proxy phone), so
    without the stateless To tag check the proxy would relay it as an
    in-dialog request to the Request-URI (here a socket of the test).
    An OPTIONS sent after the ACK from the same socket reaches the same
    worker after it: once it is answered, the ACK has been handled."""
    pbx = start_pbx(workers=1, extra=EXTS)
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target.bind(("127.0.0.1", 0))
    try:
        ruri = "sip:200@127.0.0.1:%d" % target.getsockname()[1]
        route = "<sip:127.0.0.1:%d;lr>" % pbx.udp[1]
        data, branch, call_id = invite(udp.port, ruri, route)
        rsp = udp.exchange(data, pbx.udp)
        assert rsp is not None and rsp.startswith("SIP/2.0 407 "), rsp
        udp.send(ack_for(udp.port, ruri, rsp, route, branch, call_id),
                 pbx.udp)
        opt = ("OPTIONS sip:test.local SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n"
               "Max-Forwards: 70\r\nFrom: <sip:100@test.local>;tag=o1\r\n"
               "To: <sip:test.local>\r\nCall-ID: %s\r\n"
               "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" %
               (udp.port, uuid.uuid4().hex[:16], uuid.uuid4().hex)).encode()
        rsp = udp.exchange(opt, pbx.udp)
        assert rsp is not None and rsp.startswith("SIP/2.0 200 "), rsp
        target.setblocking(False)
        try:
            got = target.recv(70000)
        except BlockingIOError:
            got = None
        assert got is None, "ACK relayed: %r" % got
    finally:
        target.close()


def test_retransmitted_invite_challenged_again(start_pbx, udp):
    """No transaction is kept: the client's retransmission of its INVITE
    (same branch) is a new request and gets a 407 of its own, which a
    client that lost the first one needs."""
    pbx = start_pbx(workers=1, extra=EXTS)
    data, _, _ = invite(udp.port, "sip:200@test.local")
    first = udp.exchange(data, pbx.udp)
    assert first is not None and first.startswith("SIP/2.0 407 "), first
    again = udp.exchange(data, pbx.udp)
    assert again is not None and again.startswith("SIP/2.0 407 "), again


def test_unacked_420_sent_once(start_pbx, udp):
    """The app core's own refusals of an INVITE without credentials
    (here 420 for a Proxy-Require we lack) are stateless too: one 420,
    never resent, over the whole of timer H (64*T1 = 1.28 s)."""
    pbx = start_pbx(workers=1, extra=EXTS, sets=["sip.t1_ms=%d" % T1_MS])
    udp.send(request("INVITE", udp.port, ruri="sip:200@test.local",
                     extra="Proxy-Require: foo\r\n"), pbx.udp)
    got = []
    deadline = time.monotonic() + 64 * T1_MS / 1000.0 + 0.3
    while time.monotonic() < deadline:
        r = udp.recv(timeout=max(0.01, deadline - time.monotonic()))
        if r is not None:
            got.append(r)
    assert [status_of(r)[0] for r in got] == [420], got
    assert header(got[0], "Unsupported") == "foo", got[0]
