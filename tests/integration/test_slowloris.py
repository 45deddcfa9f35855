"""TCP slowloris (issue [hardening] item 8).

Hundreds of connections from one address (127.0.0.2) that drip one byte at
a time used to take every slot of max_connections, so a new TCP client got
its connection closed at once for as long as the drip lasted, and every
refusal wrote a log line. Now one source holds at most tcp_max_per_source
connections (all workers together), an accepted connection must deliver a
whole message within tcp_first_message_ms of the accept (a byte now and
then does not extend it), and refusals are logged at most once a second.

The daemon runs with the defaults of the new limits (tcp_max_per_source
64, tcp_first_message_ms 5000) and a small max_connections (100 per
worker, 2 workers), so the attack is bounded: 300 connections at once,
then up to 25 more every half second, for 8 s.
"""
import select
import socket
import time

from conftest import request, status_of

ATTACKER = "127.0.0.2"
FIRST_WAVE = 300
MORE_PER_STEP = 25
STEP_S = 0.5
DRIP_EVERY_S = 1.0
DURATION_S = 8.0
PER_SOURCE = 64          # default tcp_max_per_source
FIRST_MESSAGE_S = 5.0    # default tcp_first_message_ms
WORKERS = 2


class Slow:
    """One attacker connection: when it was opened and when we saw it
    closed by the daemon."""

    def __init__(self, dest):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((ATTACKER, 0))
        self.sock.settimeout(2.0)
        self.sock.connect(dest)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.closed = None
        self.drip()

    def drip(self):
        try:
            self.sock.send(b"O")
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.mark_closed()

    def poll(self):
        try:
            if not self.sock.recv(4096):
                self.mark_closed()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.mark_closed()

    def mark_closed(self):
        if self.closed is None:
            self.closed = time.monotonic()
            self.sock.close()

    @property
    def lifetime(self):
        return (self.closed or time.monotonic()) - self.opened


def options_over_tcp(pbx, timeout=3.0):
    """A new TCP client from 127.0.0.1: (status or None, seconds)."""
    t0 = time.monotonic()
    s = socket.create_connection(pbx.tcp, timeout=timeout)
    try:
        s.sendall(request("OPTIONS", s.getsockname()[1], "TCP"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                return None, time.monotonic() - t0
            if not chunk:
                return None, time.monotonic() - t0
            buf += chunk
        return status_of(buf.decode())[0], time.monotonic() - t0
    finally:
        s.close()


def refusal_lines(text):
    return [l for l in text.splitlines() if "connection refused" in l]


def test_slowloris_from_one_address(start_pbx):
    pbx = start_pbx(workers=WORKERS, sets=["sip.max_connections=100"])
    conns = [Slow(pbx.tcp) for _ in range(FIRST_WAVE)]
    t0 = time.monotonic()
    victim = []
    next_step = t0 + STEP_S
    next_drip = t0 + DRIP_EVERY_S
    while time.monotonic() - t0 < DURATION_S:
        open_ = [c for c in conns if c.closed is None]
        r, _, _ = select.select([c.sock for c in open_], [], [], 0.05)
        ready = set(r)
        for c in open_:
            if c.sock in ready:
                c.poll()
        now = time.monotonic()
        if now >= next_drip:
            for c in conns:
                if c.closed is None:
                    c.drip()
            next_drip += DRIP_EVERY_S
        if now >= next_step:
            # The attacker keeps knocking (bounded).
            for _ in range(MORE_PER_STEP):
                conns.append(Slow(pbx.tcp))
            next_step += STEP_S
        if not victim and now - t0 >= 1.5:
            # The attack is in place: a phone from another address.
            victim.append(options_over_tcp(pbx))
        if len(victim) == 1 and now - t0 >= FIRST_MESSAGE_S + 1.5:
            victim.append(options_over_tcp(pbx))
    for c in conns:
        c.poll()

    # A new TCP client is answered at once while the attack runs.
    for status, took in victim:
        assert status == 200, \
            "new TCP client refused during the attack (%s after %.2f s)" % (
                status, took)
        assert took < 1.0, took
    print("new TCP client answered in %s ms while slow connections were "
          "open" % ", ".join("%.1f" % (t * 1000) for _, t in victim))

    # One source never held more than tcp_max_per_source connections: the
    # others were closed at once.
    lived = [c for c in conns[:FIRST_WAVE] if c.lifetime > 1.0]
    assert len(lived) <= PER_SOURCE, len(lived)
    assert len(lived) >= PER_SOURCE // 2, len(lived)
    # The first wave's survivors, although they dripped a byte every
    # second, were closed by the first-message deadline (5 s after their
    # accept, plus the time to notice).
    for c in lived:
        assert c.closed is not None, "slow connection still open after " \
            "%.1f s" % c.lifetime
        assert FIRST_MESSAGE_S - 0.5 <= c.lifetime <= FIRST_MESSAGE_S + 2.0, \
            c.lifetime
    for c in conns:
        if c.closed is None:
            c.sock.close()

    # Refusals are logged at most once a second per worker and reason
    # (max_connections, per source), with a count of the rest.
    pbx.stop()
    lines = refusal_lines(pbx.stderr())
    bound = WORKERS * 2 * (int(DURATION_S) + 2)
    assert 0 < len(lines) <= bound, "%d refusal lines:\n%s" % (
        len(lines), "\n".join(lines[:20]))
    print("connection-refused log lines in %.0f s: %d" % (DURATION_S,
                                                           len(lines)))
