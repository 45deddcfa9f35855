"""Malformed input: RFC 4475 torture requests get the right status, garbage
never crashes the daemon."""
import os
import socket

import pytest

from conftest import header, request, status_of, vector


@pytest.mark.parametrize("name,code", [
    ("badvers", 505),    # SIP/7.0
    ("unkscm", 416),     # unknown Request-URI scheme
    ("novelsc", 416),    # soap.beep: Request-URI
    ("bext01", 420),     # unknown Require / Proxy-Require
    ("mismatch01", 400), # request line vs CSeq method
    ("insuf", 400),      # no Call-ID/From/To: 400 back along the Via
])
def test_torture_status(pbx, udp, name, code):
    with open(vector(name), "rb") as f:
        data = f.read()
    rsp = udp.exchange(data, pbx.udp, timeout=1.0 if code is None else 3.0)
    if code is None:
        assert rsp is None, rsp
    else:
        got, reason = status_of(rsp)
        assert got == code, rsp
        assert reason.strip(), "empty reason phrase"
        if code == 420:
            unsup = header(rsp, "Unsupported")
            assert unsup and "nothingsupportsthis" in unsup.lower(), rsp
        if code == 400:
            # The parser's reason is the phrase, not a generic one.
            assert reason != "Bad Request", rsp
    assert status_of(udp.exchange(request("OPTIONS", udp.port),
                                  pbx.udp))[0] == 200


def test_garbage_and_oversized_datagrams(pbx, udp):
    junk = [b"", b"\x00\xff\xfe garbage", b"\r\n\r\n", b"INVITE",
            b"SIP/2.0 200 OK\r\n\r\n", os.urandom(1400),
            b"OPTIONS sip:x SIP/2.0\r\nVia: \r\n\r\n",
            b"A" * 65000,
            request("OPTIONS", udp.port)[:-4] + b"X" * 65000 + b"\r\n\r\n"]
    for j in junk:
        udp.send(j, pbx.udp)
    # Whatever came back for the junk, the daemon still answers.
    for _ in range(10):
        rsp = udp.exchange(request("OPTIONS", udp.port), pbx.udp)
        if rsp is not None and " 200 " in rsp.split("\r\n", 1)[0]:
            break
    else:
        pytest.fail("no 200 after garbage")
    assert pbx.alive()


def test_tcp_garbage_closes_connection(pbx, udp):
    s = socket.create_connection(pbx.tcp, timeout=5)
    try:
        s.sendall(b"\x16\x03\x01 this is not SIP\r\nno framing here\r\n\r\n"
                  + os.urandom(512))
        closed = False
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    closed = True
                    break
        except ConnectionResetError:
            closed = True
        assert closed
    finally:
        s.close()
    assert pbx.alive()
    assert status_of(udp.exchange(request("OPTIONS", udp.port),
                                  pbx.udp))[0] == 200
    # A new TCP connection works too.
    s = socket.create_connection(pbx.tcp, timeout=5)
    try:
        s.sendall(request("OPTIONS", s.getsockname()[1], "TCP"))
        assert s.recv(65536).startswith(b"SIP/2.0 200 ")
    finally:
        s.close()
