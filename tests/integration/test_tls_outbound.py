"""RFC 5626 outbound in the registrar's 200 OK: Require: outbound and
Flow-Timer.

A REGISTER whose Contact carries +sip.instance and reg-id, with the
"outbound" option tag in Supported (or Require), gets "Require: outbound"
and "Flow-Timer: N" in its 200: N is [registrar] flow_timer_s over TCP and
TLS, flow_timer_udp_s over UDP (the STUN keep-alive interval). A REGISTER
without outbound (liblinphone 5.1's: no reg-id) gets neither, and neither
does one that asks for outbound without reg-id. Python user agents over
TLS, TCP and UDP against the real daemon.
"""
import uuid

import pytest

from test_calls import EXTS, UA
from test_tls import TlsUA, certs, start_tls  # noqa: F401

INSTANCE = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-0011aabbccdd>"'


def make_ua(pbx, kind, ca):
    if kind == "tls":
        return TlsUA(pbx, "100", ca)
    return UA(pbx, "100", tcp=(kind == "tcp"))


def register(ua, contact_params="", extra=""):
    """REGISTER with digest; returns the 200."""
    call_id, tag = uuid.uuid4().hex, uuid.uuid4().hex[:8]
    to, ruri = "<sip:100@test.local>", "sip:test.local"
    base = ua.contact
    ua.contact = base + contact_params
    try:
        ua.send(ua.build("REGISTER", ruri, to, call_id, tag,
                         extra=extra + "Expires: 300\r\n"))
        r = ua.response("REGISTER")
        assert r.status == 401, r.raw
        auth = ua.digest(r.get("WWW-Authenticate"), "REGISTER", ruri)
        ua.send(ua.build("REGISTER", ruri, to, call_id, tag,
                         extra=extra + "Authorization: %s\r\nExpires: 300\r\n"
                         % auth))
        r = ua.response("REGISTER")
    finally:
        ua.contact = base
    assert r.status == 200, r.raw
    return r


@pytest.fixture
def pbx(start_pbx, certs):  # noqa: F811
    return start_tls(start_pbx, certs, extra=EXTS + "\n[registrar]\n"
                     "flow_timer_s = 95\nflow_timer_udp_s = 25\n")


@pytest.mark.parametrize("kind,timer", [("tls", 95), ("tcp", 95),
                                        ("udp", 25)])
def test_outbound_register_gets_flow_timer(pbx, certs, kind, timer):  # noqa: F811
    ua = make_ua(pbx, kind, certs[0] / "ca.pem")
    try:
        r = register(ua, ";reg-id=1;" + INSTANCE,
                     "Supported: path, outbound\r\n")
        assert r.get("Require") == "outbound", r.raw
        assert r.get("Flow-Timer") == str(timer), r.raw
        assert "reg-id=1" in r.get("Contact"), r.raw
    finally:
        ua.close()


def test_require_outbound_is_accepted(pbx, certs):  # noqa: F811
    """Require: outbound is an extension we implement: a 200 with the
    Flow-Timer, not 420 Bad Extension."""
    ua = make_ua(pbx, "tls", certs[0] / "ca.pem")
    try:
        r = register(ua, ";reg-id=1;" + INSTANCE, "Require: outbound\r\n")
        assert r.get("Require") == "outbound", r.raw
        assert r.get("Flow-Timer") == "95", r.raw
    finally:
        ua.close()


@pytest.mark.parametrize("params,extra", [
    ("", ""),                                    # liblinphone 5.1
    (";reg-id=1;" + INSTANCE, ""),               # no option tag
    (";" + INSTANCE, "Supported: outbound\r\n"),  # no reg-id
])
def test_register_without_outbound_has_no_flow_timer(pbx, certs, params,  # noqa: F811
                                                     extra):
    ua = make_ua(pbx, "tls", certs[0] / "ca.pem")
    try:
        r = register(ua, params, extra)
        assert r.get("Flow-Timer") is None, r.raw
        assert r.get("Require") is None, r.raw
    finally:
        ua.close()


def test_default_flow_timer_is_120(start_pbx, certs):  # noqa: F811
    pbx = start_tls(start_pbx, certs)
    ua = make_ua(pbx, "tls", certs[0] / "ca.pem")
    try:
        r = register(ua, ";reg-id=1;" + INSTANCE, "Supported: outbound\r\n")
        assert r.get("Flow-Timer") == "120", r.raw
    finally:
        ua.close()
