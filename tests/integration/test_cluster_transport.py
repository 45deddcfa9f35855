"""[cluster] node-to-node SIP over the transport of the holding node's
advertise URI (docs/cluster.md, "Calls go through the holding node").

Two nodes (A on 127.0.0.2, B on 127.0.0.3) on a private PostgreSQL
(pgfixture.py, the fixtures and helpers of test_cluster.py); phones are
test_calls.UA on 127.0.0.1 over UDP. 100 at A calls 200 at B:

  - advertise ;transport=tcp: A sends the INVITE to B over TCP (A's Via
    says TCP, from A's address: B knows A by its source host); each node
    record-routes twice (UDP on the phone's side, TCP on the other
    node's), so the ACK and the callee's BYE cross between the nodes over
    TCP too;
  - advertise without a transport: UDP, but an INVITE over 1300 bytes
    (RFC 3261 §18.1.1) goes over TCP;
  - a bad advertise URI (TLS, an unknown transport, a user part, another
    parameter) stops the node at start with a clear error.
"""
import re
import subprocess

import pytest

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from test_cluster import (answered_via_b, call_via_b, cluster,  # noqa: F401
                          held_by, ua_at, wait_for)

from conftest import BASE_CONFIG, BIN


def vias(msg):
    return [v.strip() for h in msg.all("Via") for v in h.split(",")]


def routes(msg):
    return [v.strip() for h in msg.all("Record-Route") for v in h.split(",")]


@pytest.mark.parametrize("caller_tp", ["udp", "tcp"])
def test_tcp_advertise_node_to_node_over_tcp(cluster, caller_tp):
    # A TCP caller is a NATed phone: its Contact is a private address
    # nobody can connect to; A reaches it over its connection only.
    a, b, caller, callee, call, cl = call_via_b(
        cluster, ";transport=tcp", caller_tcp=caller_tp == "tcp",
        caller_contact=("<sip:100@192.168.77.7:5062;transport=tcp>"
                        if caller_tp == "tcp" else None))
    inv = cl.inv
    # B's Via (to the phone), A's (to B), the caller's.
    v = vias(inv)
    assert len(v) == 3, v
    assert v[0].startswith("SIP/2.0/UDP 127.0.0.3:%d;" % b.ports["udp"]), v
    assert v[1].startswith("SIP/2.0/TCP 127.0.0.2:%d;" % a.ports["tcp"]), v
    # B record-routes twice (TCP from A, UDP to the phone); so does A when
    # its caller is on UDP.
    rr = routes(inv)
    assert len(rr) == (4 if caller_tp == "udp" else 3), rr
    assert "transport" not in rr[0] and "127.0.0.3:" in rr[0], rr
    assert "<sip:127.0.0.3:%d;transport=tcp;lr;" % b.ports["tcp"] in rr[1], rr
    assert "<sip:127.0.0.2:%d;transport=tcp;lr;" % a.ports["tcp"] in rr[2], rr
    if caller_tp == "udp":
        assert "transport" not in rr[3] and "127.0.0.2:" in rr[3], rr
    # The callee's BYE: B -> A over TCP (B's Via), then A -> the caller
    # (a TCP caller over its own connection: A knows B's connection is the
    # other node's, pp-nd).
    cl.bye()
    bye = caller.request("BYE")
    bv = vias(bye)
    assert len(bv) == 3, bv
    assert bv[1].startswith("SIP/2.0/TCP 127.0.0.3:%d;" % b.ports["tcp"]), bv
    caller.answer(bye, 200, call.tag, contact=False)
    assert callee.response("BYE").status == 200
    assert a.wait_log("call ended answered")
    assert b.wait_log("call ended answered")
    caller.close()
    callee.close()


def test_large_invite_between_nodes_over_tcp(cluster):
    # No transport in the advertise URI: a small INVITE goes over UDP.
    a, b, caller, callee, call, cl = call_via_b(cluster)
    assert vias(cl.inv)[1].startswith("SIP/2.0/UDP 127.0.0.2:"), cl.inv.raw
    assert len(cl.inv.raw) < 1300
    call.in_dialog("BYE")
    callee.answer(callee.request("BYE"), 200, cl.tag, contact=False)
    assert caller.response("BYE").status == 200
    # An INVITE over 1300 bytes (RFC 3261 §18.1.1) goes to B over TCP;
    # B's own listener of the advertise port takes it.
    big, cl2 = answered_via_b(a, b, caller, callee,
                              extra="X-Pad: %s\r\n" % ("p" * 1300))
    inv = cl2.inv
    assert len(inv.raw) > 1300
    assert inv.get("X-Pad") == "p" * 1300
    v = vias(inv)
    assert v[1].startswith("SIP/2.0/TCP 127.0.0.2:%d;" % a.ports["tcp"]), v
    rr = routes(inv)
    assert len(rr) == 4, rr
    assert ";transport=tcp;lr;" in rr[1] and ";transport=tcp;lr;" in rr[2]
    big.in_dialog("BYE")
    bye = callee.request("BYE")
    callee.answer(bye, 200, cl2.tag, contact=False)
    assert caller.response("BYE").status == 200
    caller.close()
    callee.close()


@pytest.mark.parametrize("uri,why", [
    ("sips:127.0.0.2:5999", "TLS between nodes is not supported"),
    ("sip:127.0.0.2:5999;transport=tls", "TLS between nodes is not supported"),
    ("sip:127.0.0.2:5999;transport=sctp", 'transport "sctp" is not udp or tcp'),
    ("sip:pbx@127.0.0.2:5999", "want sip:IP[:PORT] with a numeric host"),
    ("sip:127.0.0.2:5999;maddr=10.0.0.9",
     'parameter "maddr" is not understood'),
])
def test_bad_advertise_refused_at_start(tmp_path, uri, why):
    conf = BASE_CONFIG.format(workers=1) + (
        "\n[store]\nbackend = postgresql\npostgresql = host=/nonexistent\n"
        "\n[cluster]\nnode = A\nadvertise = %s\n" % uri)
    (tmp_path / "c.conf").write_text(conf)
    r = subprocess.run([BIN, "--config", str(tmp_path / "c.conf")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20, cwd=str(tmp_path))
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0
    assert re.search(r'advertise "%s": ' % re.escape(uri), err), err
    assert why in err, err
