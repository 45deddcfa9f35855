"""The media room's ng client against a real, private rtpengine.

pushpbx-ng (bench/ng_tool.c) runs the client the workers will use (same
cookies, repeats, failover, answer parsing) for one request and prints the
result as JSON; these tests drive it against rtpengine daemons started by
tests/integration/rtpengine.py, and against silent or lying UDP sockets
standing in for a dead or broken rtpengine.
"""
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest

from conftest import sanitizer_report
from rtpengine import rtpengine, start_rtpengine  # noqa: F401 (fixtures)

BUILD = os.environ.get("PUSHPBX_BUILD_DIR", "")
TOOL = os.path.join(BUILD, "bench", "pushpbx-ng")


def ng(relays, *args, timeout_ms=200, retries=1, extra_sets=()):
    """Run pushpbx-ng; returns (exit code, JSON result)."""
    if not os.access(TOOL, os.X_OK):
        pytest.fail("pushpbx-ng not built: %s" % TOOL)
    cmd = [TOOL, "--set", "media.rtpengine=" + " ".join(relays),
           "--set", "media.timeout_ms=%d" % timeout_ms,
           "--set", "media.retries=%d" % retries]
    for s in extra_sets:
        cmd += ["--set", s]
    cmd += [str(a) for a in args]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env=env)
    assert not sanitizer_report(p.stderr), p.stderr
    try:
        out = json.loads(p.stdout)
    except ValueError:
        pytest.fail("pushpbx-ng printed no JSON (exit %d): %s %s" %
                    (p.returncode, p.stdout, p.stderr))
    return p.returncode, out


def sdp(port, proto="RTP/AVP", addr="127.0.0.1", crypto=False):
    lines = ["v=0", "o=- 1 1 IN IP4 %s" % addr, "s=-",
             "c=IN IP4 %s" % addr, "t=0 0",
             "m=audio %d %s 0 8" % (port, proto),
             "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000"]
    if crypto:
        lines.append("a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
                     "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz")
    return "\r\n".join(lines) + "\r\n"


def media_of(text):
    """(c= address, m= port, m= profile) of an SDP."""
    c = re.search(r"^c=IN IP4 (\S+)", text, re.M).group(1)
    m = re.search(r"^m=audio (\d+) (\S+)", text, re.M)
    return c, int(m.group(1)), m.group(2)


class Phone:
    """An RTP endpoint: a UDP socket on 127.0.0.1."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seq = 0

    def send_rtp(self, dest_port, count, ssrc):
        for _ in range(count):
            pkt = struct.pack("!BBHII", 0x80, 0, self.seq, self.seq * 160,
                              ssrc) + b"\xff" * 160
            self.sock.sendto(pkt, ("127.0.0.1", dest_port))
            self.seq += 1

    def recv_rtp(self, count, timeout=3.0):
        """SSRCs of count packets received (fails on timeout)."""
        self.sock.settimeout(timeout)
        got = []
        for _ in range(count):
            data, _ = self.sock.recvfrom(2048)
            got.append(struct.unpack("!I", data[8:12])[0])
        return got

    def close(self):
        self.sock.close()


class FakeRelay:
    """A UDP socket standing in for an rtpengine: silent (records what it
    got) or answering each request with the datagrams reply(cookie)."""

    def __init__(self, reply=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = "udp:127.0.0.1:%d" % self.sock.getsockname()[1]
        self.reply = reply
        self.received = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.received.append(data)
            if self.reply:
                cookie = data.split(b" ", 1)[0]
                for d in self.reply(cookie):
                    self.sock.sendto(d, peer)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def new_call():
    return uuid.uuid4().hex, "ft" + uuid.uuid4().hex[:6], \
        "tt" + uuid.uuid4().hex[:6]


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_ping(rtpengine):
    code, out = ng([rtpengine.address], "ping")
    assert code == 0, out
    assert out["status"] == "ok" and out["result"] == "pong"
    assert out["relay"] == 0 and out["tries"] == 1
    assert out["relays"][0]["up"] and out["relays"][0]["answers"] == 1


def call_setup(tmp_path, rtpengine, a, b, call_id, ft, tt):
    """offer (A) + answer (B) through the relay with the NAT flags; returns
    (port rtpengine gave B for A's media, port rtpengine gave A)."""
    code, offer = ng([rtpengine.address], "offer", "--call-id", call_id,
                     "--from-tag", ft, "--via-branch", "z9hG4bKa1",
                     "--sdp-file", write(tmp_path, "a.sdp", sdp(a.port)),
                     "--received-from", "127.0.0.1", "--sip-source",
                     "--replace", "--ice", "remove")
    assert code == 0, offer
    c, port_for_b, proto = media_of(offer["sdp"])
    assert c == "127.0.0.1" and proto == "RTP/AVP"
    assert rtpengine.port_min <= port_for_b <= rtpengine.port_max
    assert port_for_b != a.port
    assert "o=- 1 1 IN IP4 127.0.0.1" in offer["sdp"]
    code, answer = ng([rtpengine.address], "answer", "--relay", 0,
                      "--call-id", call_id, "--from-tag", ft, "--to-tag", tt,
                      "--sdp-file", write(tmp_path, "b.sdp", sdp(b.port)),
                      "--received-from", "127.0.0.1", "--sip-source",
                      "--replace", "--ice", "remove")
    assert code == 0, answer
    c, port_for_a, _ = media_of(answer["sdp"])
    assert rtpengine.port_min <= port_for_a <= rtpengine.port_max
    return port_for_b, port_for_a


def test_offer_answer_delete_one_way(tmp_path, rtpengine):
    """A private c= address is replaced by rtpengine's; media from A
    reaches B through the relay; B never sends: the delete answer counts
    A's packets and flags the call one-way."""
    a, b = Phone(), Phone()
    call_id, ft, tt = new_call()
    port_for_b, port_for_a = call_setup(tmp_path, rtpengine, a, b, call_id,
                                        ft, tt)
    a.send_rtp(port_for_a, 5, ssrc=0x1234)
    assert b.recv_rtp(5) == [0x1234] * 5
    code, out = ng([rtpengine.address], "delete", "--relay", 0,
                   "--call-id", call_id, "--from-tag", ft)
    assert code == 0, out
    legs = {l["tag"]: l for l in out["legs"]}
    assert set(legs) == {ft, tt}
    assert legs[ft]["rtp_packets"] == 5
    assert legs[ft]["rtp_bytes"] == 5 * 172
    assert legs[tt]["rtp_packets"] == 0
    assert out["one_way"] is True and out["no_media"] is False
    a.close()
    b.close()


def test_two_way_media_counted_per_leg(tmp_path, rtpengine):
    a, b = Phone(), Phone()
    call_id, ft, tt = new_call()
    port_for_b, port_for_a = call_setup(tmp_path, rtpengine, a, b, call_id,
                                        ft, tt)
    a.send_rtp(port_for_a, 4, ssrc=0xa)
    b.send_rtp(port_for_b, 3, ssrc=0xb)
    assert b.recv_rtp(4) == [0xa] * 4
    assert a.recv_rtp(3) == [0xb] * 3
    code, out = ng([rtpengine.address], "delete", "--relay", 0,
                   "--call-id", call_id, "--from-tag", ft, "--to-tag", tt)
    assert code == 0, out
    legs = {l["tag"]: l for l in out["legs"]}
    assert legs[ft]["rtp_packets"] == 4 and legs[tt]["rtp_packets"] == 3
    assert out["one_way"] is False and out["no_media"] is False
    # The call is gone: a second delete finds nothing (rtpengine says so in
    # a warning or an error, never a crash of either side).
    code, out = ng([rtpengine.address], "query", "--relay", 0,
                   "--call-id", call_id)
    assert out["status"] == "refused" and code == 1
    assert out["error_reason"]
    a.close()
    b.close()


def test_srtp_bridging(tmp_path, rtpengine):
    """A mobile app offers RTP/SAVP (SDES); the desk phone gets plain
    RTP/AVP without crypto, and the app gets SRTP back in the answer."""
    call_id, ft, tt = new_call()
    code, offer = ng([rtpengine.address], "offer", "--call-id", call_id,
                     "--from-tag", ft,
                     "--sdp-file", write(tmp_path, "app.sdp",
                                         sdp(40000, "RTP/SAVP", crypto=True)),
                     "--replace", "--ice", "remove",
                     "--transport-protocol", "RTP/AVP")
    assert code == 0, offer
    assert media_of(offer["sdp"])[2] == "RTP/AVP"
    assert "a=crypto" not in offer["sdp"]
    code, answer = ng([rtpengine.address], "answer", "--relay", 0,
                      "--call-id", call_id, "--from-tag", ft, "--to-tag", tt,
                      "--sdp-file", write(tmp_path, "desk.sdp", sdp(40010)),
                      "--replace", "--ice", "remove",
                      "--transport-protocol", "RTP/SAVP")
    assert code == 0, answer
    assert media_of(answer["sdp"])[2] == "RTP/SAVP"
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in answer["sdp"]
    code, out = ng([rtpengine.address], "delete", "--relay", 0,
                   "--call-id", call_id, "--from-tag", ft)
    assert code == 0 and out["no_media"] is True


def test_failover_to_second_rtpengine(rtpengine):
    """The first relay never answers: the request is repeated once with the
    same cookie, the relay is marked down, and the second one answers."""
    dead = FakeRelay()
    try:
        t0 = time.monotonic()
        # A ping has no call-id: the first of a fresh client goes to the
        # first relay (round-robin counter at 0).
        code, out = ng([dead.address, rtpengine.address], "ping",
                       timeout_ms=150, retries=1)
        took = time.monotonic() - t0
    finally:
        dead.close()
    assert code == 0, out
    assert out["relay"] == 1 and out["tries"] == 3
    # Two tries of 150 ms on the dead one, then the answer (libuv's timers
    # count from the loop's cached time, so a few ms under 300 is normal).
    assert 0.25 <= out["elapsed_us"] / 1e6 < 1.0, out
    assert took < 5.0
    assert len(dead.received) == 2 and dead.received[0] == dead.received[1]
    r0, r1 = out["relays"]
    assert not r0["up"] and r0["timeouts"] == 1
    assert r0["last_error"] == "no answer (timeout)"
    assert r1["up"] and r1["answers"] == 1


def test_none_answering_times_out_bounded():
    """No relay answers: the callback reports a timeout after
    relays * (retries + 1) tries, each timeout_ms apart."""
    dead = [FakeRelay(), FakeRelay()]
    try:
        code, out = ng([d.address for d in dead], "ping", timeout_ms=100,
                       retries=2)
    finally:
        for d in dead:
            d.close()
    assert code == 2, out
    assert out["status"] == "timeout" and out["tries"] == 6
    assert 0.6 <= out["elapsed_us"] / 1e6 < 2.0, out
    assert [len(d.received) for d in dead] == [3, 3]
    assert all(not r["up"] and r["timeouts"] == 1 for r in out["relays"])


def test_garbage_answers_are_dropped():
    """Garbage, a truncated answer and a stranger's cookie before the real
    answer: all dropped and counted, the real answer wins."""
    def reply(cookie):
        return [b"\x00\xffnot ng at all", cookie + b" d6:result2:o",
                cookie + b" l6:resulte", b"someoneelse d6:result2:oke",
                cookie + b" d6:result4:ponge"]
    fake = FakeRelay(reply)
    try:
        code, out = ng([fake.address], "ping")
    finally:
        fake.close()
    assert code == 0, out
    assert out["result"] == "pong" and out["tries"] == 1
    assert out["relays"][0]["garbage"] == 3
    assert out["relays"][0]["last_error"].startswith("bad answer: ")


def test_only_garbage_is_a_timeout():
    fake = FakeRelay(lambda cookie: [cookie + b" d6:result", b"i1e"])
    try:
        code, out = ng([fake.address], "ping", timeout_ms=100, retries=1)
    finally:
        fake.close()
    assert code == 2 and out["status"] == "timeout", out
    assert out["relays"][0]["garbage"] == 4


def test_calls_spread_and_stick(tmp_path, start_rtpengine):
    """Two rtpengines: offers without a relay index spread over both by
    call-id, and each call's later requests go to the one that took it."""
    relays = [start_rtpengine(), start_rtpengine()]
    addrs = [r.address for r in relays]
    used = set()
    for i in range(12):
        call_id, ft, _ = new_call()
        code, out = ng(addrs, "offer", "--call-id", call_id,
                       "--from-tag", ft, "--sdp-file",
                       write(tmp_path, "o.sdp", sdp(41000 + 2 * i)))
        assert code == 0, out
        used.add(out["relay"])
        # Same call-id again without an index: the same relay (the hash).
        code, again = ng(addrs, "query", "--call-id", call_id)
        assert code == 0 and again["relay"] == out["relay"], again
        code, other = ng(addrs, "query", "--relay", 1 - out["relay"],
                         "--call-id", call_id)
        assert code == 1 and other["status"] == "refused"
        code, d = ng(addrs, "delete", "--relay", out["relay"],
                     "--call-id", call_id, "--from-tag", ft)
        assert code == 0, d
    assert used == {0, 1}


def test_round_trip_figures(rtpengine):
    """ng round trip on loopback over 2000 sequential pings (the figure in
    docs/media.md); bounded loosely: the machine is shared."""
    code, out = ng([rtpengine.address], "--count", 2000, "ping",
                   timeout_ms=1000)
    assert code == 0, out
    assert out["count"] == 2000
    print("ng ping rtt p50 %d us p99 %d us max %d us" %
          (out["rtt_p50_us"], out["rtt_p99_us"], out["rtt_max_us"]))
    assert out["rtt_p50_us"] < 20000
