"""A private rtpengine for a test (the media relay, issue [media]).

    from rtpengine import rtpengine, start_rtpengine   # fixtures

`rtpengine` is one running daemon; `start_rtpengine()` starts more (two
relays for failover). Each one is Debian's rtpengine (scripts/install-deps
installs rtpengine-daemon) run in the foreground with:
  --config-file=none  never /etc/rtpengine/rtpengine.conf (the packaged
                      service's config, which takes ng port 2223)
  --table=-1          userspace forwarding: no kernel module, no iptables
  --interface=127.0.0.1, ng on an ephemeral 127.0.0.1 port, and a small
                      RTP port range of its own (below the ephemeral range,
                      picked at random and checked free, so parallel tests
                      do not share ports)
Its log goes to a file in the test's tmp_path. Teardown stops it (SIGTERM,
then SIGKILL) and fails the test if it had died. A missing rtpengine fails
the test: no skip.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest

RTP_PORTS = 40           # ports per daemon (20 two-port streams)
RTP_LOW, RTP_HIGH = 20000, 30000


def _free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _free_block(count):
    """A run of count UDP ports on 127.0.0.1 that are free now."""
    for _ in range(50):
        base = random.randrange(RTP_LOW, RTP_HIGH - count, 2)
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail("no free block of %d UDP ports for rtpengine" % count)


def ng_request(addr, body, cookie=b"probe", timeout=0.5):
    """One raw ng request (bytes, already bencoded); the answer body or
    None on timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(cookie + b" " + body, addr)
        data, _ = s.recvfrom(65536)
    except socket.timeout:
        return None
    finally:
        s.close()
    if not data.startswith(cookie + b" "):
        return None
    return data[len(cookie) + 1:]


class Rtpengine:
    """One private rtpengine daemon."""

    def __init__(self, tmp_path, name="rtpengine"):
        exe = shutil.which("rtpengine") or "/usr/bin/rtpengine"
        if not os.access(exe, os.X_OK):
            pytest.fail("rtpengine not installed (scripts/install-deps "
                        "installs Debian's rtpengine-daemon)")
        self.log_path = tmp_path / (name + ".log")
        self.stopped = self.died = False
        last = ""
        for _ in range(3):  # the ng port may be taken between probe and bind
            self.ng_port = _free_udp_port()
            self.port_min = _free_block(RTP_PORTS)
            self.port_max = self.port_min + RTP_PORTS - 1
            self._log = open(self.log_path, "wb")
            self.proc = subprocess.Popen(
                [exe, "--config-file=none", "--table=-1",
                 "--interface=127.0.0.1",
                 "--listen-ng=127.0.0.1:%d" % self.ng_port,
                 "--port-min=%d" % self.port_min,
                 "--port-max=%d" % self.port_max,
                 "--foreground", "--log-stderr", "--log-level=6",
                 "--delete-delay=0"],
                stdin=subprocess.DEVNULL, stdout=self._log,
                stderr=subprocess.STDOUT)
            if self._wait_ready(10.0):
                return
            last = self.log()
            self.stop()
            self.stopped = self.died = False
        pytest.fail("rtpengine did not start: " + last[-2000:])

    @property
    def ng(self):
        return ("127.0.0.1", self.ng_port)

    @property
    def address(self):
        """The [media] rtpengine item for it."""
        return "udp:127.0.0.1:%d" % self.ng_port

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if ng_request(self.ng, b"d7:command4:pinge",
                          timeout=0.2) == b"d6:result4:ponge":
                return True
        return False

    def log(self):
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Stop it (once). died records whether it had ended before."""
        if self.stopped:
            return
        self.stopped = True
        self.died = self.proc.poll() is not None
        if not self.died:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def start_rtpengine(tmp_path):
    """Factory: start_rtpengine() -> Rtpengine; all stopped at teardown.
    One that ended by itself (not by its stop()) fails the test."""
    started = []

    def start():
        r = Rtpengine(tmp_path, "rtpengine%d" % len(started))
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()
    dead = [r for r in started if r.died]
    if dead:
        pytest.fail("rtpengine died during the test: " +
                    dead[0].log()[-2000:])


@pytest.fixture
def rtpengine(start_rtpengine):
    """One private rtpengine."""
    return start_rtpengine()
