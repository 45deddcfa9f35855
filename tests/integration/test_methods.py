"""What the core answers itself (methods no room serves, CANCEL, ACK)."""
from conftest import header, request, run_sipp, status_of


def test_unknown_method_501_sipp(pbx):
    rc, out = run_sipp(pbx, "unknown_method.xml", "u1")
    assert rc == 0, out


# REGISTER is served by the registrar room now (test_register.py has the
# full flows): without credentials it is challenged.
def test_register_challenged_sipp(pbx):
    rc, out = run_sipp(pbx, "register.xml", "u1")
    assert rc == 0, out


def test_register_challenged_tcp_sipp(pbx):
    rc, out = run_sipp(pbx, "register.xml", "t1")
    assert rc == 0, out


def test_known_unserved_method_405(pbx, udp):
    # SUBSCRIBE to the server itself: a method we know but do not serve.
    rsp = udp.exchange(request("SUBSCRIBE", udp.port,
                               extra="Event: presence\r\n"), pbx.udp)
    code, _ = status_of(rsp)
    assert code == 405
    allow = header(rsp, "Allow")
    assert "OPTIONS" in allow and "INVITE" in allow
    assert "SUBSCRIBE" not in allow


def test_unknown_method_501_has_allow(pbx, udp):
    rsp = udp.exchange(request("FOOBAR", udp.port), pbx.udp)
    assert status_of(rsp)[0] == 501
    assert header(rsp, "Allow") is not None


def test_cancel_without_invite_481(pbx, udp):
    rsp = udp.exchange(request("CANCEL", udp.port), pbx.udp)
    assert status_of(rsp)[0] == 481


def test_ack_is_absorbed(pbx, udp):
    assert udp.exchange(request("ACK", udp.port), pbx.udp, timeout=0.5) \
        is None
    # and the daemon still answers
    assert status_of(udp.exchange(request("OPTIONS", udp.port),
                                  pbx.udp))[0] == 200


def test_require_unknown_420(pbx, udp):
    rsp = udp.exchange(request("OPTIONS", udp.port,
                               extra="Require: foo, bar\r\n"), pbx.udp)
    assert status_of(rsp)[0] == 420
    assert header(rsp, "Unsupported") == "foo, bar"
