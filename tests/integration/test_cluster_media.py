"""[cluster] media relay on a call that passes two nodes (docs/cluster.md,
"Media relay across nodes").

Two nodes (A on 127.0.0.2, B on 127.0.0.3) on a private PostgreSQL
(pgfixture.py, the fixtures of test_cluster.py), both with the same
[media] section (relay = always) pointing at one private rtpengine
(rtpengine.py), as a cluster's nodes share one configuration. Phones are
test_media_calls.MediaPhone (SDP and an RTP socket on 127.0.0.1).

100 at A calls 200 at B. The call is relayed once, by A (the node that
received it): the callee's INVITE and the caller's 200 carry rtpengine's
ports, rtpengine has one call with the caller's and the callee's tags, B
makes no offer, RTP flows both ways through the relay (first from the
caller: the relay sends to the callee's SDP address, not to B's, which
only carries the callee's signalling), a re-INVITE from the callee
(B -> A) is relayed by A too, and after BYE rtpengine has no call and A's
call record has the media figures.

A late offer (100 at A calls 200 at B without SDP, 200 offers in its 200,
100 answers in the ACK) with an ACK over 1300 bytes: A sends the answer
to rtpengine first (proxy_media_ack), then the ACK to B over TCP (RFC 3261
§18.1.1, B's advertise URI names no transport), as any other in-dialog
request to a node; RTP flows through the relay.
"""
import pytest

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from rtpengine import rtpengine, start_rtpengine  # noqa: F401
from test_cluster import cluster, held_by, wait_for  # noqa: F401
from test_media_calls import (MediaPhone, in_range, media_of, ng_calls,
                              query, sdp, wait_no_calls)
from wakeharness import hget

MEDIA = ("\n[media]\nrtpengine = %s\nrelay = always\ntimeout_ms = 500\n"
         "retries = 1\non_failure = reject\n")


def metric(p, name):
    """One line of node p's /metrics (name with its labels)."""
    st, _, data = p.admin.raw("GET", "/metrics")
    assert st == 200
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError("no metric " + name)


def offers(p):
    """Offers node p held a request for (an offer sent to rtpengine)."""
    return metric(p, 'pushpbx_media_setup_seconds_count{interval="offer"}')


def callee_reinvite(callee, inv, final_to, port):
    """The callee (UAS) sends a re-INVITE with a new offer through its
    route set (the INVITE's Record-Route, in order); returns the call
    dict for MediaPhone's helpers."""
    body = sdp(port, 3)
    route = "".join("Route: %s\r\n" % v
                    for v in hget(inv, "record-route", True))
    target = hget(inv, "contact").split("<")[1].split(">")[0]
    callee.send("INVITE %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                "%sFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"
                "Contact: <sip:200@127.0.0.1:%d>\r\n"
                "Content-Type: application/sdp\r\nContent-Length: %d\r\n"
                "\r\n%s" % (target, callee.via(), route, final_to,
                            hget(inv, "from"), hget(inv, "call-id"),
                            callee.port, len(body), body))
    cid = hget(inv, "call-id")
    r = callee.wait_response(
        timeout=8, pred=lambda m: hget(m, "call-id") == cid and
        hget(m, "cseq") == "1 INVITE" and m["status"] >= 200)
    assert r is not None, "no answer to the callee's re-INVITE"
    return r


def test_call_across_nodes_relayed_once(cluster, rtpengine):
    media = MEDIA % rtpengine.address
    a = cluster.start("A", "127.0.0.2", media)
    b = cluster.start("B", "127.0.0.3", media)
    callee = MediaPhone(b, "200", on_invite="answer")
    caller = MediaPhone(a, "100")
    try:
        assert callee.register()["status"] == 200
        wait_for("A sees 200's binding held by B", held_by(a, "B"))
        call = caller.invite_sdp("200")
        final = caller.wait_final(call, 8)
        assert final is not None and final["status"] == 200, final
        caller.ack2xx(call, final)
        # The callee was offered rtpengine's port, the caller answered
        # with rtpengine's port: neither sees the other's.
        inv = callee.invites_for(call)[0]
        _, callee_port = media_of(inv["body"])
        assert in_range(rtpengine, callee_port), inv["body"]
        _, caller_port = media_of(final["body"])
        assert in_range(rtpengine, caller_port), final["body"]
        assert callee_port != caller_port
        # One rtpengine call, with exactly the two phones' tags: relayed
        # once (a second offer by B would add its own leg or replace A's).
        assert ng_calls(rtpengine) == [call["call_id"].encode()]
        q = query(rtpengine, call["call_id"])
        assert b"6:result2:ok" in q, q
        assert caller.tag.encode() in q and callee.tag.encode() in q, q
        # A made the one offer; B none.
        assert offers(a) == 1 and offers(b) == 0, (offers(a), offers(b))
        # RTP through the relay, both ways. The caller speaks first: the
        # relay sends to the callee's SDP address, not to B's (B only
        # carries the callee's signalling).
        caller.send_rtp(caller_port, 5, 0xca11)
        assert callee.recv_rtp(5) == [0xca11] * 5
        callee.send_rtp(callee_port, 5, 0xb0b)
        assert caller.recv_rtp(5) == [0xb0b] * 5
        # The callee re-offers (B -> A): relayed by A (rtpengine's port
        # in the caller's re-INVITE), answered, RTP still flows.
        r = callee_reinvite(callee, inv, hget(final, "to"), callee.rtp_port)
        assert r["status"] == 200, r["first"]
        reinv = [m for m in caller.requests_for(call, "INVITE")]
        assert reinv, "the caller got no re-INVITE"
        _, port2 = media_of(reinv[-1]["body"])
        assert in_range(rtpengine, port2), reinv[-1]["body"]
        _, callee_port2 = media_of(r["body"])
        assert in_range(rtpengine, callee_port2), r["body"]
        caller.send_rtp(port2, 3, 0xca12)
        assert callee.recv_rtp(3) == [0xca12] * 3
        callee.send_rtp(callee_port2, 3, 0xb0c)
        assert caller.recv_rtp(3) == [0xb0c] * 3
        # BYE: A deletes the call on rtpengine; its record has the media.
        bye = caller.in_dialog(call, final, "BYE")
        assert bye["status"] == 200, bye["first"]
        assert wait_no_calls(rtpengine) == [], \
            "rtpengine still has the call after BYE"
        rec = wait_for("A's call record with media figures", lambda: [
            c for c in a.admin.call("GET", "/api/calls")[1]["items"]
            if c.get("node") == "A" and c.get("media") and
            c["media"].get("stats")])
        m = rec[0]["media"]
        assert m["caller_packets"] >= 5 and m["callee_packets"] >= 5, m
        assert metric(a, "pushpbx_media_calls_total") == 1
        assert metric(b, "pushpbx_media_calls_total") == 0
        assert offers(b) == 0
    finally:
        caller.close()
        callee.close()


def ack_answer(phone, call, resp, body):
    """phone's ACK for the 2xx resp with an SDP answer body, through the
    route set of resp."""
    target = hget(resp, "contact").split("<")[1].split(">")[0]
    route = "".join("Route: %s\r\n" % v for v in
                    reversed(hget(resp, "record-route", True)))
    phone.send("ACK %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
               "%sFrom: <sip:%s@test.local>;tag=%s\r\nTo: %s\r\n"
               "Call-ID: %s\r\nCSeq: %d ACK\r\n"
               "Content-Type: application/sdp\r\nContent-Length: %d\r\n"
               "\r\n%s" % (target, phone.via(), route, phone.ext, phone.tag,
                            hget(resp, "to"), call["call_id"], call["cseq"],
                            len(body), body))


def test_late_offer_large_ack_to_node_over_tcp(cluster, rtpengine):
    media = MEDIA % rtpengine.address
    a = cluster.start("A", "127.0.0.2", media)
    b = cluster.start("B", "127.0.0.3", media)
    callee = MediaPhone(b, "200", on_invite="answer")
    caller = MediaPhone(a, "100")
    try:
        assert callee.register()["status"] == 200
        wait_for("A sees 200's binding held by B", held_by(a, "B"))
        call = caller.invite("200")  # no SDP: the callee offers in its 200
        final = caller.wait_final(call, 8)
        assert final is not None and final["status"] == 200, final
        _, caller_port = media_of(final["body"])
        assert in_range(rtpengine, caller_port), final["body"]
        # The answer, over 1300 bytes with rtpengine's changes (attributes
        # rtpengine passes through).
        pad = "".join("a=x-pad%d:%s\r\n" % (i, "p" * 70) for i in range(20))
        ack_answer(caller, call, final, sdp(caller.rtp_port, 1) + pad)
        acks = wait_for("the callee's ACK",
                        lambda: callee.requests_for(call, "ACK"))
        ack = acks[0]
        assert len(ack["body"]) > 1300, len(ack["body"])
        assert "x-pad19:" in ack["body"], ack["body"]
        _, callee_port = media_of(ack["body"])
        assert in_range(rtpengine, callee_port), ack["body"]
        # B's Via, A's, the caller's: A sent it to B over TCP.
        v = hget(ack, "via", True)
        assert len(v) == 3, v
        assert v[1].startswith("SIP/2.0/TCP 127.0.0.2:%d;" % a.ports["tcp"]), v
        assert offers(a) == 1 and offers(b) == 0, (offers(a), offers(b))
        caller.send_rtp(caller_port, 5, 0xca11)
        assert callee.recv_rtp(5) == [0xca11] * 5
        callee.send_rtp(callee_port, 5, 0xb0b)
        assert caller.recv_rtp(5) == [0xb0b] * 5
        bye = caller.in_dialog(call, final, "BYE")
        assert bye["status"] == 200, bye["first"]
        assert wait_no_calls(rtpengine) == [], \
            "rtpengine still has the call after BYE"
    finally:
        caller.close()
        callee.close()
