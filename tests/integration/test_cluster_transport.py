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
    (RFC 3261 §18.1.1) goes over TCP, and so does a re-INVITE over 1300
    bytes in a call that crossed on UDP, from the caller (A -> B) and from
    the callee (B -> A);
  - a node that A has not heard a heartbeat of yet (its row and its
    phone's binding written in one transaction, before A's next read of
    the nodes) is reached over the transport its advertise URI names;
  - advertise ;transport=tls (each node with a tls: listener and a
    certificate for its address from a test CA, test_tls.make_cert): A
    opens a TLS connection to B, verifies B's certificate against [tls]
    ca_file (or server_ca_file) and its IP, and the call crosses over TLS
    both ways; a node whose certificate another CA signed is not reached:
    the caller gets 500 (the branch's 503, RFC 3261 §16.7) and A's log
    says why;
  - a bad advertise URI (sips: with another transport, an unknown
    transport, a user part, another parameter) stops the node at start
    with a clear error.
"""
import re
import subprocess

import pytest

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from test_cluster import (answered_via_b, call_via_b, cluster,  # noqa: F401
                          held_by, ua_at, wait_for)

from conftest import BASE_CONFIG, BIN
from test_calls import SDP, Call
from test_cluster import nodes
from test_cluster_admin import binding_nodes
from test_tls import make_ca, make_cert


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
    call.hang_up(cl)
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
    big.hang_up(cl2)
    caller.close()
    callee.close()


# An offer over 1300 bytes on its own: many codecs.
BIG_SDP = SDP + "".join("a=rtpmap:%d x-test-codec-%02d/8000\r\n" % (96 + i, i)
                        for i in range(30))


def callee_reinvite(cl, body):
    """The callee (cl, a Callee) sends a re-INVITE with body through the
    route set of the INVITE it got (CSeq 2: its BYE would be 1)."""
    ua, inv = cl.ua, cl.inv
    ua.send("INVITE %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
            "From: %s;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 2 INVITE\r\n"
            "Contact: %s\r\nRoute: %s\r\nContent-Type: application/sdp\r\n"
            "Content-Length: %d\r\n\r\n%s" %
            (cl.remote, ua.via(), inv.get("To"), cl.tag, inv.get("From"),
             inv.get("Call-ID"), ua.contact, cl.route, len(body), body))


def callee_ack(cl):
    ua, inv = cl.ua, cl.inv
    ua.send("ACK %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
            "From: %s;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 2 ACK\r\n"
            "Route: %s\r\nContent-Length: 0\r\n\r\n" %
            (cl.remote, ua.via(), inv.get("To"), cl.tag, inv.get("From"),
             inv.get("Call-ID"), cl.route))


def test_large_reinvite_between_nodes_over_tcp(cluster):
    # A small INVITE: the call crosses on UDP, one Record-Route per node.
    a, b, caller, callee, call, cl = call_via_b(cluster)
    assert vias(cl.inv)[1].startswith("SIP/2.0/UDP 127.0.0.2:"), cl.inv.raw
    assert len(routes(cl.inv)) == 2, cl.inv.raw
    # The caller's re-INVITE over 1300 bytes: A -> B over TCP (§18.1.1),
    # to B's listener on the port of its Record-Route (its advertise).
    call.in_dialog("INVITE", body=BIG_SDP)
    reinv = callee.request("INVITE")
    assert len(reinv.raw) > 1300
    assert reinv.body == BIG_SDP
    v = vias(reinv)
    assert len(v) == 3, v
    assert v[0].startswith("SIP/2.0/UDP 127.0.0.3:%d;" % b.ports["udp"]), v
    assert v[1].startswith("SIP/2.0/TCP 127.0.0.2:%d;" % a.ports["tcp"]), v
    callee.answer(reinv, 200, cl.tag, SDP)
    assert caller.response("INVITE").status == 200
    call.in_dialog("ACK", cseq=caller.cseq)
    callee.request("ACK")
    # The callee's re-INVITE over 1300 bytes: B -> A over TCP.
    callee_reinvite(cl, BIG_SDP)
    reinv = caller.request("INVITE")
    assert reinv.body == BIG_SDP
    v = vias(reinv)
    assert len(v) == 3, v
    assert v[0].startswith("SIP/2.0/UDP 127.0.0.2:%d;" % a.ports["udp"]), v
    assert v[1].startswith("SIP/2.0/TCP 127.0.0.3:%d;" % b.ports["tcp"]), v
    caller.answer(reinv, 200, call.tag, SDP)
    ok = callee.response("INVITE")
    assert ok.status == 200 and ok.body == SDP, ok.raw
    callee_ack(cl)
    ack = caller.request("ACK")
    assert ack.get("CSeq") == "2 ACK"
    # A small request still crosses on UDP.
    call.hang_up(cl)
    assert a.wait_log("call ended answered")
    assert b.wait_log("call ended answered")
    caller.close()
    callee.close()


def test_node_not_yet_heard_of_reached_over_its_transport(cluster, pg_server):
    """A node whose heartbeat A has not read yet (its row and its phone's
    binding in one transaction, as a node that just started and at once
    registered a phone) is reached over its advertise URI's transport
    (TCP), not over UDP. The node is B under a second name (C0, C1...:
    its row names B's address with ;transport=tcp), so B takes the call.
    An attempt where A's 1 s read of the nodes came between the commit and
    the call is not conclusive (A knew the node by then) and is repeated
    with a new name."""
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    callee = ua_at(b, "200")
    caller = ua_at(a, "100")
    wait_for("A sees 200's binding held by B", held_by(a, "B"))
    for i in range(8):
        name = "C%d" % i
        pg_server.psql(
            "BEGIN; INSERT INTO nodes(name, advertise, started_at, last_seen)"
            " VALUES ('%s', 'sip:127.0.0.3:%d;transport=tcp',"
            " extract(epoch from now())::bigint,"
            " extract(epoch from now())::bigint);"
            " UPDATE bindings SET node = '%s' WHERE ext = '200'; COMMIT;"
            % (name, b.ports["udp"], name))
        wait_for("A sees 200's binding held by " + name,
                 lambda: binding_nodes(a, "200") == [name], timeout=5)
        call, cl = answered_via_b(a, b, caller, callee)
        known = name in nodes(a)
        call.hang_up(cl)
        pg_server.psql("DELETE FROM nodes WHERE name = '%s'" % name)
        if known:
            continue  # A read the nodes meanwhile: try again
        # A's Via: TCP from A's TCP listener (B knows A by its host).
        v = vias(cl.inv)
        assert len(v) == 3, v
        assert v[1].startswith("SIP/2.0/TCP 127.0.0.2:%d;" % a.ports["tcp"]), v
        rr = routes(cl.inv)
        assert ";transport=tcp;lr;" in rr[1] and ";transport=tcp;lr;" in rr[2]
        break
    else:
        pytest.fail("A read the nodes between the commit and the call in "
                    "every attempt")
    pg_server.psql("UPDATE bindings SET node = 'B' WHERE ext = '200'")
    caller.close()
    callee.close()


def tls_conf(ca_dir, host, ca_opt="ca_file", ca=None):
    """[tls] of the node on host: a certificate for its address signed by
    ca_dir's CA; ca_opt names the CA file that verifies the other nodes
    (ca: another directory's CA)."""
    cert, key = make_cert(ca_dir, "node-" + host, cn=host, ip=host)
    return ("\n[tls]\ncert_file = %s\nkey_file = %s\n%s = %s\n"
            % (cert, key, ca_opt, (ca or ca_dir) / "ca.pem"))


@pytest.fixture
def ca_dir(tmp_path):
    d = tmp_path / "ca"
    d.mkdir()
    make_ca(d)
    return d


def start_tls_nodes(cluster, ca_dir, ca_opt="ca_file", b_dir=None,
                    scheme="sip"):
    """A and B advertising sip:HOST:PORT;transport=tls (scheme "sips":
    sips:HOST:PORT); B's certificate from b_dir's CA when given (one A does
    not trust)."""
    adv, tls = (";transport=tls", True) if scheme == "sip" else ("", "sips")
    a = cluster.start("A", "127.0.0.2", advertise=adv, tls=tls,
                      extra=tls_conf(ca_dir, "127.0.0.2", ca_opt))
    b = cluster.start("B", "127.0.0.3", advertise=adv, tls=tls,
                      extra=tls_conf(b_dir or ca_dir, "127.0.0.3", ca_opt,
                                     ca=ca_dir))
    return a, b


@pytest.mark.parametrize("ca_opt,scheme", [("ca_file", "sip"),
                                           ("server_ca_file", "sips")])
def test_tls_advertise_node_to_node_over_tls(cluster, ca_dir, ca_opt, scheme):
    a, b = start_tls_nodes(cluster, ca_dir, ca_opt, scheme=scheme)
    assert b.ports["tls"] != b.ports["udp"]
    callee = ua_at(b, "200")
    caller = ua_at(a, "100")
    wait_for("A sees 200's binding held by B", held_by(a, "B"))
    call, cl = answered_via_b(a, b, caller, callee)
    inv = cl.inv
    # B's Via (to the phone), A's (to B, over TLS from A's tls: listener),
    # the caller's.
    v = vias(inv)
    assert len(v) == 3, v
    assert v[0].startswith("SIP/2.0/UDP 127.0.0.3:%d;" % b.ports["udp"]), v
    assert v[1].startswith("SIP/2.0/TLS 127.0.0.2:%d;" % a.ports["tls"]), v
    # Both nodes record-route twice: UDP on the phones' sides, TLS between.
    rr = routes(inv)
    assert len(rr) == 4, rr
    assert "transport" not in rr[0] and "127.0.0.3:" in rr[0], rr
    assert "<sip:127.0.0.3:%d;transport=tls;lr;" % b.ports["tls"] in rr[1], rr
    assert "<sip:127.0.0.2:%d;transport=tls;lr;" % a.ports["tls"] in rr[2], rr
    assert "transport" not in rr[3] and "127.0.0.2:" in rr[3], rr
    # The caller's BYE: A -> B over TLS.
    call.in_dialog("BYE")
    bye = callee.request("BYE")
    bv = vias(bye)
    assert len(bv) == 3, bv
    assert bv[1].startswith("SIP/2.0/TLS 127.0.0.2:%d;" % a.ports["tls"]), bv
    callee.answer(bye, 200, cl.tag, contact=False)
    assert caller.response("BYE").status == 200
    # A second call, ended by the callee: B -> A over TLS.
    call2, cl2 = answered_via_b(a, b, caller, callee)
    assert vias(cl2.inv)[1].startswith("SIP/2.0/TLS 127.0.0.2:"), cl2.inv.raw
    cl2.bye()
    bye = caller.request("BYE")
    bv = vias(bye)
    assert len(bv) == 3, bv
    assert bv[1].startswith("SIP/2.0/TLS 127.0.0.3:%d;" % b.ports["tls"]), bv
    caller.answer(bye, 200, call2.tag, contact=False)
    assert callee.response("BYE").status == 200
    assert a.wait_log("call ended answered")
    assert b.wait_log("call ended answered")
    caller.close()
    callee.close()


def test_tls_node_with_untrusted_certificate_is_not_reached(cluster, ca_dir,
                                                            tmp_path):
    # B's certificate is signed by a CA that A's ca_file does not hold.
    other = tmp_path / "other-ca"
    other.mkdir()
    make_ca(other)
    a, b = start_tls_nodes(cluster, ca_dir, b_dir=other)
    callee = ua_at(b, "200")
    caller = ua_at(a, "100")
    wait_for("A sees 200's binding held by B", held_by(a, "B"))
    call = Call(caller, "200")
    assert call.invite(expect_100=True) is None
    r = call.response()
    # The branch's transport error is a 503, which a proxy passes upstream
    # as 500 (RFC 3261 §16.7 step 6), as for a node unreachable over TCP.
    assert r.status == 500, r.raw
    call.ack_failure(r)
    assert a.wait_log("tls: connection to 127.0.0.3:%d failed: certificate "
                      "verify failed" % b.ports["tls"])
    assert not callee.queue, callee.queue
    caller.close()
    callee.close()


@pytest.mark.parametrize("uri,why", [
    ("sips:127.0.0.2:5999;transport=tcp", "sips: is TLS only"),
    ("sip:127.0.0.2:5999;transport=sctp",
     'transport "sctp" is not udp, tcp or tls'),
    ("sip:pbx@127.0.0.2:5999",
     "want sip:IP[:PORT] or sips:IP[:PORT] with a numeric host"),
    ("sip:127.0.0.2:5999;maddr=10.0.0.9",
     'parameter "maddr" is not understood'),
])
def test_bad_advertise_refused_at_start(tmp_path, uri, why):
    assert_refused(tmp_path, uri, why)


def test_tls_advertise_without_tls_listener_refused(tmp_path):
    assert_refused(tmp_path, "sip:127.0.0.2:5999;transport=tls",
                   "[cluster] advertise asks for TLS: [sip] listen needs a "
                   "tls: item", quote=False)


def assert_refused(tmp_path, uri, why, quote=True):
    conf = BASE_CONFIG.format(workers=1) + (
        "\n[store]\nbackend = postgresql\npostgresql = host=/nonexistent\n"
        "\n[cluster]\nnode = A\nadvertise = %s\n" % uri)
    (tmp_path / "c.conf").write_text(conf)
    r = subprocess.run([BIN, "--config", str(tmp_path / "c.conf")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20, cwd=str(tmp_path))
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0
    if quote:
        assert re.search(r'advertise "%s": ' % re.escape(uri), err), err
    assert why in err, err
