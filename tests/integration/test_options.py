"""OPTIONS over UDP and TCP (SIPp and raw sockets)."""
import socket

from conftest import header, request, run_sipp, status_of


def test_options_udp_sipp(pbx):
    rc, out = run_sipp(pbx, "options.xml", "u1")
    assert rc == 0, out


def test_options_tcp_sipp(pbx):
    rc, out = run_sipp(pbx, "options.xml", "t1")
    assert rc == 0, out


def test_options_headers(pbx, udp):
    rsp = udp.exchange(request("OPTIONS", udp.port), pbx.udp)
    assert status_of(rsp)[0] == 200
    allow = [m.strip() for m in header(rsp, "Allow").split(",")]
    assert "OPTIONS" in allow and "ACK" in allow
    assert header(rsp, "Accept") == "application/sdp"
    assert header(rsp, "Supported") is not None
    assert ";tag=" in header(rsp, "To")
    assert header(rsp, "Server").startswith("pushpbx/")
    assert header(rsp, "Content-Length") == "0"


def test_options_max_forwards_zero_answered(pbx, udp):
    # RFC 4475 zeromf: we are the endpoint, so no 483.
    rsp = udp.exchange(request("OPTIONS", udp.port, max_forwards=0), pbx.udp)
    assert status_of(rsp)[0] == 200


def test_retransmission_gets_stored_response(pbx, udp):
    # Same branch twice: the server transaction absorbs the copy and sends
    # the stored response again (same To tag), not a new one.
    msg = request("OPTIONS", udp.port)
    first = udp.exchange(msg, pbx.udp)
    second = udp.exchange(msg, pbx.udp)
    assert status_of(first)[0] == 200 and status_of(second)[0] == 200
    assert header(first, "To") == header(second, "To")
    # A new transaction (new branch) gets a new tag.
    third = udp.exchange(request("OPTIONS", udp.port), pbx.udp)
    assert header(third, "To") != header(first, "To")


def test_options_tcp_raw_two_in_one_write(pbx):
    s = socket.create_connection(pbx.tcp, timeout=5)
    try:
        port = s.getsockname()[1]
        s.sendall(request("OPTIONS", port, "TCP") +
                  request("OPTIONS", port, "TCP"))
        data = b""
        while data.count(b"SIP/2.0 200") < 2:
            chunk = s.recv(65536)
            assert chunk, "connection closed early: %r" % data
            data += chunk
    finally:
        s.close()
