"""Transport hardening, issue [hardening] items 12 and 13:

- a request whose method starts with a token symbol (RFC 4475 intmeth) is
  answered over UDP as over TCP (UDP used to drop anything that did not
  start with a letter, taking it for STUN);
- a STUN Binding Request on the SIP UDP port (RFC 5626 keep-alive) gets a
  Binding Success Response with the sender's XOR-MAPPED-ADDRESS;
- a request missing From, To and Call-ID (RFC 4475 insuf) gets a 400 back
  along its Via over UDP and over TCP.
"""
import os
import socket
import struct
import time

import pytest

from conftest import header, request, status_of, vector

STUN_COOKIE = 0x2112A442


def torture(name):
    with open(vector(name), "rb") as f:
        return f.read()


def intmeth_pair():
    """intmeth as is (for UDP) and with its branch made unique (for TCP):
    the same branch and sent-by sent twice to one daemon is one transaction
    (RFC 3261 §17.2.3), and its retransmission would be answered on the
    first transport."""
    data = torture("intmeth")
    branch = b"branch=z9hG4bK-.!%66*_+`'~"
    assert branch in data
    return data, data.replace(branch, branch + b"tcp")


def tcp_exchange(pbx, data, timeout=3.0):
    """Send data on a new TCP connection; the first whole response (up to
    its blank line; these carry no body) as text, or None."""
    s = socket.create_connection(pbx.tcp, timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf.lstrip(b"\r\n"):
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf.lstrip(b"\r\n").decode(errors="replace")
    finally:
        s.close()


# --- item 12: methods that start with a token symbol ---------------------

def test_intmeth_answered_over_udp_and_tcp(pbx, udp):
    """intmeth's Request-URI is in example.com, not our domain: the proxy
    refuses to relay it, the same way over both transports."""
    data, data_tcp = intmeth_pair()
    rsp_udp = udp.exchange(data, pbx.udp)
    rsp_tcp = tcp_exchange(pbx, data_tcp)
    assert status_of(rsp_udp) == (403, "Relaying Denied"), rsp_udp
    assert status_of(rsp_tcp) == (403, "Relaying Denied"), rsp_tcp
    for rsp in (rsp_udp, rsp_tcp):
        assert header(rsp, "Call-ID") == \
            "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
        assert header(rsp, "CSeq") == \
            "139122385 !interesting-Method0123456789_*+`.%indeed'~"


def test_intmeth_for_our_domain_is_routed(start_pbx, udp):
    """Served domain example.com: the unknown method goes to the proxy like
    any request for a user, whose odd user is not registered: 404 (RFC 4475
    §3.1.1.2: a proxy forwards it, or says the target is unknown)."""
    pbx = start_pbx(workers=2, sets=["sip.domain=example.com"])
    data, data_tcp = intmeth_pair()
    assert status_of(udp.exchange(data, pbx.udp))[0] == 404
    assert status_of(tcp_exchange(pbx, data_tcp))[0] == 404


@pytest.mark.parametrize("method", [
    "!interesting-Method0123456789_*+`.%indeed'~", "0DIGIT", "~TILDE",
    "%PERCENT", "'QUOTE"])
def test_unknown_token_method_to_server_501(pbx, udp, method):
    """Addressed to the server itself, an unknown method is answered 501
    with Allow (RFC 3261 §8.2.1), whatever token character it starts
    with."""
    rsp = udp.exchange(request(method, udp.port), pbx.udp)
    assert status_of(rsp)[0] == 501, rsp
    assert header(rsp, "Allow")
    assert header(rsp, "CSeq") == "1 " + method


# --- item 12: STUN keep-alives --------------------------------------------

def stun_binding_request(attrs=b""):
    tid = os.urandom(12)
    return struct.pack("!HHI", 0x0001, len(attrs), STUN_COOKIE) + tid + \
        attrs, tid


def stun_attrs(body):
    """{type: value} of a STUN message body."""
    out, off = {}, 0
    while off + 4 <= len(body):
        t, n = struct.unpack_from("!HH", body, off)
        out[t] = body[off + 4:off + 4 + n]
        off += 4 + ((n + 3) & ~3)
    assert off == len(body), body.hex()
    return out


def test_stun_binding_request_answered(pbx, udp):
    # A SOFTWARE attribute (comprehension-optional), as phones send.
    software = b"phone 1.0"
    pad = b"\0" * (-len(software) % 4)
    req, tid = stun_binding_request(
        struct.pack("!HH", 0x8022, len(software)) + software + pad)
    udp.sock.sendto(req, pbx.udp)
    udp.sock.settimeout(3.0)
    data, frm = udp.sock.recvfrom(2048)
    assert frm == pbx.udp
    mtype, mlen, cookie = struct.unpack_from("!HHI", data)
    assert mtype == 0x0101, data.hex()         # Binding Success Response
    assert cookie == STUN_COOKIE
    assert data[8:20] == tid
    assert mlen == len(data) - 20
    attrs = stun_attrs(data[20:])
    xma = attrs[0x0020]                         # XOR-MAPPED-ADDRESS
    family, xport = struct.unpack_from("!xBH", xma)
    assert family == 0x01
    port = xport ^ (STUN_COOKIE >> 16)
    ip = struct.unpack("!I", xma[4:8])[0] ^ STUN_COOKIE
    assert (socket.inet_ntoa(struct.pack("!I", ip)), port) == \
        ("127.0.0.1", udp.port)
    # SIP on the same socket still works.
    assert status_of(udp.exchange(request("OPTIONS", udp.port),
                                  pbx.udp))[0] == 200


# --- item 13: missing From, To, Call-ID ----------------------------------

def check_insuf_400(rsp):
    code, reason = status_of(rsp)
    assert code == 400, rsp
    for name in ("From", "To", "Call-ID"):
        assert name in reason, reason
    assert header(rsp, "Via") == \
        "SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf"
    assert header(rsp, "CSeq") == "193942 INVITE"
    assert header(rsp, "Content-Length") == "0"


def test_insuf_400_over_udp(pbx, udp):
    check_insuf_400(udp.exchange(torture("insuf"), pbx.udp))


def test_insuf_400_over_tcp(pbx):
    check_insuf_400(tcp_exchange(pbx, torture("insuf")))


def test_missing_call_id_only(pbx, udp):
    data = request("OPTIONS", udp.port).replace(b"Call-ID:", b"X-Call-ID:")
    rsp = udp.exchange(data, pbx.udp)
    assert status_of(rsp) == (400, "Missing Call-ID"), rsp
    assert header(rsp, "From") and header(rsp, "To")
    assert ";tag=" in header(rsp, "To")
