"""The time media relay adds to call set-up (issue [media], performance).

pushpbx measures, per relayed call, how long the INVITE waited for
rtpengine's offer answer and how long the 18x/2xx waited for the answer's
answer (monotonic clock, microseconds): GET /api/media/latency (exact
percentiles over recent samples) and the pushpbx_media_setup_seconds
histogram in /metrics. A real private rtpengine (rtpengine.py), real
phones (test_media_calls.MediaPhone), [media] relay = nat: a call between
two phones on 127.0.0.1 is not relayed and leaves no sample; a call whose
caller offers a private c= address (behind NAT) is relayed and leaves one
offer, one answer and one call sample, the call's being the sum of the
other two.
"""

import pytest

from conftest import Pbx
from rtpengine import rtpengine, start_rtpengine  # noqa: F401
from test_media_calls import MediaPhone, in_range, media_of
from wakeharness import (CONF, KID, TEAM, BUNDLE, RING_S, Sim, admin_get,
                         keys, require_pushsim)  # noqa: F401


def sdp_at(host, port):
    return ("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            % (host, host, port))


class NatPhone(MediaPhone):
    """A MediaPhone whose INVITE offers `host` as its media address (a
    private one: what a phone behind NAT puts in its SDP)."""

    def invite_at(self, to, host):
        return self.invite_sdp(to, sdp_at(host, self.rtp_port))


def run_pbx(keys, tmp_path, media):
    """wakeharness's daemon (pushsim for its push settings) with the
    [media] text media appended; yields it, checks its clean exit."""
    require_pushsim()
    sim = Sim(keys, tmp_path)
    try:
        text = CONF.format(workers=2, ring=RING_S, apns="yes", fcm="yes",
                           url=sim.url, key=keys / "apns.p8", kid=KID,
                           team=TEAM, bundle=BUNDLE, ca=sim.ca, sa=sim.sa,
                           max100=1)
        pbx = Pbx(tmp_path, text + media)
        yield pbx
        pbx.check_clean_exit()
    finally:
        sim.stop()


@pytest.fixture
def nat_pbx(keys, tmp_path, rtpengine):
    """pushpbx with [media] relay = nat on the private rtpengine."""
    yield from run_pbx(keys, tmp_path,
                       "\n[media]\nrtpengine = %s\nrelay = nat\n"
                       "timeout_ms = 200\nretries = 1\n" % rtpengine.address)


@pytest.fixture
def plain_pbx(keys, tmp_path):
    """pushpbx without [media]."""
    yield from run_pbx(keys, tmp_path, "")


def latency(pbx):
    lat = admin_get(pbx, "/api/media/latency")
    assert lat["available"] is True, lat
    return lat


def hist_count(pbx, interval):
    """pushpbx_media_setup_seconds_count{interval=...} from /metrics."""
    want = 'pushpbx_media_setup_seconds_count{interval="%s"} ' % interval
    for line in admin_get(pbx, "/metrics", raw=True).splitlines():
        if line.startswith(want):
            return int(line.split()[-1])
    raise AssertionError("no metric " + want)


def answered(caller, callee, call):
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    caller.ack2xx(call, final)
    return final


def test_setup_latency_only_for_relayed_calls(nat_pbx, rtpengine):
    pbx = nat_pbx
    callee = MediaPhone(pbx, "102", on_invite="answer")
    caller = NatPhone(pbx, "101")
    try:
        assert callee.register()["status"] == 200
        empty = latency(pbx)
        for k in ("offer", "answer", "call"):
            assert empty[k]["count"] == 0 and empty[k]["samples"] == 0, empty

        # Both phones on 127.0.0.1, as their signalling: not relayed (the
        # SDP reaches each side untouched), and no sample.
        call = caller.invite_at("102", "127.0.0.1")
        final = answered(caller, callee, call)
        assert media_of(final["body"]) == ("127.0.0.1", callee.rtp_port)
        assert caller.in_dialog(call, final, "BYE")["status"] == 200
        lat = latency(pbx)
        for k in ("offer", "answer", "call"):
            assert lat[k]["count"] == 0 and lat[k]["samples"] == 0, lat
            assert hist_count(pbx, k) == 0

        # The caller offers a private address: relayed through rtpengine,
        # one sample of each; the call's is its offer's plus its answer's.
        call = caller.invite_at("102", "10.20.30.40")
        final = answered(caller, callee, call)
        c, port = media_of(final["body"])
        assert c == "127.0.0.1" and in_range(rtpengine, port), final["body"]
        _, callee_port = media_of(callee.invites_for(call)[0]["body"])
        assert in_range(rtpengine, callee_port)
        lat = latency(pbx)
        for k in ("offer", "answer", "call"):
            s = lat[k]
            assert s["count"] == 1 and s["samples"] == 1, lat
            assert 0 < s["min_us"] == s["p50_us"] == s["p99_us"] == \
                s["max_us"] < 1000000, lat
            assert hist_count(pbx, k) == 1
            # one sample under a second: in the 1 s bucket, cumulative
            assert s["buckets_le"]["1"] == 1, lat
        assert lat["call"]["p50_us"] == (lat["offer"]["p50_us"] +
                                         lat["answer"]["p50_us"]), lat
        assert caller.in_dialog(call, final, "BYE")["status"] == 200

        # Another unrelayed call adds nothing.
        call = caller.invite_at("102", "127.0.0.1")
        final = answered(caller, callee, call)
        assert media_of(final["body"]) == ("127.0.0.1", callee.rtp_port)
        assert caller.in_dialog(call, final, "BYE")["status"] == 200
        after = latency(pbx)
        for k in ("offer", "answer", "call"):
            assert after[k]["count"] == 1, after
    finally:
        caller.close()
        callee.close()


def test_latency_route_without_media(plain_pbx):
    """No rtpengine configured: the route answers, nothing available, and
    /metrics has no media set-up histogram."""
    assert admin_get(plain_pbx, "/api/media/latency") == {"available": False}
    assert "pushpbx_media_setup_seconds" not in admin_get(
        plain_pbx, "/metrics", raw=True)
