"""Integration test harness: runs the real pushpbx binary.

Environment (set by tests/integration/CMakeLists.txt):
  PUSHPBX_BIN         the daemon
  PUSHPBX_SOURCE_DIR  the source tree (RFC 4475 vectors, docs)
  PUSHPBX_BUILD_DIR   the build tree

Every daemon listens on 127.0.0.1 port 0 (ephemeral); the real ports come
from its --ready-file. Tests are independent and safe to run in parallel.
Teardown sends SIGTERM and requires exit code 0 within 10 s and a stderr
free of sanitizer reports, so every test also checks clean shutdown.

No test is ever skipped: a missing prerequisite (pushsim not built, sipp,
chromium or playwright-core not installed) fails the test with its reason.
ctest counts a pytest run whose tests all skipped as Passed, so a skip
would let `make test` pass without testing push at all. The hooks below
turn any skip left (a skipif mark, pytest.skip, importorskip) into a
failure; tests write pytest.fail("... missing") themselves.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest

BIN = os.environ.get("PUSHPBX_BIN", "")
SOURCE_DIR = os.environ.get(
    "PUSHPBX_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
SIPP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sipp")

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer", "ThreadSanitizer")

BASE_CONFIG = """\
[sip]
listen = udp:127.0.0.1:0 tcp:127.0.0.1:0
domain = test.local
workers = {workers}
t1_ms = 100

[log]
level = info
"""


def vector(name):
    """Path of an RFC 4475 torture message (repo copy, else shared data)."""
    for d in (os.path.join(SOURCE_DIR, "tests", "unit", "sip", "vectors"),
              os.path.join(SOURCE_DIR, "..", "shared", "data", "rfc4475")):
        p = os.path.join(d, name + ".dat")
        if os.path.exists(p):
            return p
    pytest.fail("RFC 4475 vector %s not found" % name)


# --- no skips ---------------------------------------------------------------

NOSKIP = "a missing prerequisite fails the test, never skips it"


def _skip_as_failure(rep):
    """Rewrite a skipped report as failed, keeping the skip's reason."""
    where, reason = "", str(rep.longrepr)
    if isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3:
        where = "%s:%s: " % (rep.longrepr[0], rep.longrepr[1])
        reason = rep.longrepr[2]
    if reason.startswith("Skipped: "):
        reason = reason[len("Skipped: "):]
    rep.outcome = "failed"
    rep.longrepr = "%snot run: %s (%s)" % (where, reason, NOSKIP)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    # xfail also reports "skipped" (with wasxfail); none is used here, and
    # it is an expectation, not a missing prerequisite.
    if rep.skipped and not hasattr(rep, "wasxfail"):
        _skip_as_failure(rep)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    rep = (yield).get_result()
    if rep.skipped:  # module-level pytest.skip or importorskip
        _skip_as_failure(rep)


def sanitizer_report(text):
    return [m for m in SANITIZER_MARKS if m in text]


class Pbx:
    """One running daemon."""

    def __init__(self, tmp_path, config_text, sets=(), args=()):
        if not BIN or not os.path.exists(BIN):
            pytest.fail("PUSHPBX_BIN not set or missing: %r" % BIN)
        self.dir = tmp_path
        self.conf = tmp_path / "pushpbx.conf"
        self.conf.write_text(config_text)
        self.ready = tmp_path / "ready.json"
        self.stderr_path = tmp_path / "stderr.log"
        cmd = [BIN, "--config", str(self.conf), "--ready-file",
               str(self.ready)]
        for s in sets:
            cmd += ["--set", s]
        cmd += list(args)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=self._err, cwd=str(tmp_path),
                                     env=env)
        self.info = self._wait_ready(10.0)
        self.ports = {}
        for l in self.info["listen"]:
            self.ports.setdefault(l["transport"], l["port"])
        self.host = "127.0.0.1"
        self.exit_code = None

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("pushpbx exited early (%d): %s" %
                            (self.proc.returncode, self.stderr()))
            if self.ready.exists():
                return json.loads(self.ready.read_text())
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        pytest.fail("pushpbx not ready in %.0f s: %s" % (timeout,
                                                         self.stderr()))

    def stderr(self):
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def wait_log(self, text, timeout=10.0):
        """True once the daemon's log holds text (an event awaited, not a
        fixed sleep: call records are written when the transaction ends,
        a moment after the peers saw the last message)."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if time.monotonic() > deadline or not self.alive():
                return text in self.stderr()
            time.sleep(0.02)
        return True

    @property
    def udp(self):
        return (self.host, self.ports["udp"])

    @property
    def tcp(self):
        return (self.host, self.ports["tcp"])

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the daemon and return its exit code (fails on timeout)."""
        if self.exit_code is not None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._err.close()
            pytest.fail("pushpbx did not exit within %.0f s after %s: %s" %
                        (timeout, sig.name, self.stderr()))
        self._err.close()
        return self.exit_code

    def check_clean_exit(self):
        code = self.stop()
        text = self.stderr_path.read_text(errors="replace")
        marks = sanitizer_report(text)
        assert not marks, "sanitizer report in stderr:\n" + text
        assert code == 0, "exit code %d, stderr:\n%s" % (code, text)


@pytest.fixture
def start_pbx(tmp_path):
    """Factory: start_pbx(workers=1, extra="", sets=()) -> Pbx. Every daemon
    started is stopped at teardown and must exit cleanly."""
    started = []

    def start(workers=1, extra="", sets=(), args=()):
        d = tmp_path / ("pbx%d" % len(started))
        d.mkdir()
        if "[admin]" not in extra:
            # Never compete for the default admin port 8080 (parallel
            # tests, or `make run` beside them).
            sets = ["admin.listen=127.0.0.1:0"] + list(sets)
        p = Pbx(d, BASE_CONFIG.format(workers=workers) + extra, sets, args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.check_clean_exit()


@pytest.fixture
def pbx(start_pbx):
    """A daemon with 2 workers (the machine has 2 cores)."""
    return start_pbx(workers=2)


# --- raw SIP helpers --------------------------------------------------------

def request(method, port, transport="UDP", extra="", call_id=None,
            cseq_method=None, max_forwards=70, ruri="sip:test.local",
            branch=None):
    """A well-formed request; Via names 127.0.0.1:port (our socket)."""
    call_id = call_id or uuid.uuid4().hex
    branch = branch or "z9hG4bK" + uuid.uuid4().hex[:16]
    return ("%s %s SIP/2.0\r\n"
            "Via: SIP/2.0/%s 127.0.0.1:%d;branch=%s;rport\r\n"
            "Max-Forwards: %d\r\n"
            "From: <sip:tester@test.local>;tag=%s\r\n"
            "To: <sip:test.local>\r\n"
            "Call-ID: %s\r\n"
            "CSeq: 1 %s\r\n"
            "%s"
            "Content-Length: 0\r\n\r\n" %
            (method, ruri, transport, port, branch, max_forwards,
             uuid.uuid4().hex[:8], call_id, cseq_method or method, extra,
             )).encode()


class Udp:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def send(self, data, dest):
        self.sock.sendto(data, dest)

    def recv(self, timeout=3.0):
        """One datagram as text, or None on timeout."""
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(70000)
        except socket.timeout:
            return None
        return data.decode(errors="replace")

    def exchange(self, data, dest, timeout=3.0):
        self.send(data, dest)
        return self.recv(timeout)

    def close(self):
        self.sock.close()


@pytest.fixture
def udp():
    u = Udp()
    yield u
    u.close()


def status_of(response):
    assert response is not None, "no response"
    first = response.split("\r\n", 1)[0]
    parts = first.split(" ", 2)
    assert parts[0] == "SIP/2.0", first
    return int(parts[1]), (parts[2] if len(parts) > 2 else "")


def header(response, name):
    """Value of the first header called name (case-insensitive) or None."""
    head = response.split("\r\n\r\n", 1)[0]
    for line in head.split("\r\n")[1:]:
        if ":" in line:
            n, v = line.split(":", 1)
            if n.strip().lower() == name.lower():
                return v.strip()
    return None


# --- SIPp -------------------------------------------------------------------

def free_port(kind=socket.SOCK_DGRAM, pair=False):
    """An ephemeral port on 127.0.0.1 that is free now (with pair: port+2
    too, for SIPp's media sockets). SIPp would otherwise take its fixed
    defaults (5060, 6000, 6002, 8888), which parallel runs would share."""
    for _ in range(50):
        a = socket.socket(socket.AF_INET, kind)
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        if not pair:
            a.close()
            return port
        b = socket.socket(socket.AF_INET, kind)
        try:
            b.bind(("127.0.0.1", port + 2))
            return port
        except OSError:
            continue
        finally:
            a.close()
            b.close()
    pytest.fail("no free port pair")


# SIPp's exit code when a bind() failed (EXIT_BIND_ERROR), e.g. a port
# that free_port() found free was taken by another process before SIPp
# bound it (parallel tests): the run is retried with fresh ports.
SIPP_BIND_ERROR = 254


def sipp_bind_failed(rc, output):
    """True when a SIPp run ended on a bind() failure (its output names
    which: "main socket", "audio RTP socket" or "video RTP socket")."""
    return rc == SIPP_BIND_ERROR and "Unable to bind" in output


def _socket_inodes(port, tcp):
    """Inodes of the sockets bound to port (TCP: listening), from /proc,
    so the check itself never holds the port."""
    want = ":%04X" % port
    found = set()
    with open("/proc/net/tcp" if tcp else "/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[1].endswith(want) and (not tcp or cols[3] == "0A"):
                found.add(cols[9])
    return found


def sipp_bound(pid, socks):
    """True when process pid holds a socket on every (port, tcp) of socks:
    SIPp has bound all it needs (another process holding one of the ports
    does not count)."""
    mine = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    return all(_socket_inodes(port, tcp) & mine for port, tcp in socks)


def run_sipp(pbx, scenario, transport="u1", extra_args=(), timeout=10):
    """Run one SIPp call of scenario against pbx; returns (rc, output).
    rc 0 = the scenario passed. Every SIPp socket is on an ephemeral
    port of 127.0.0.1."""
    sipp = shutil.which("sipp")
    if not sipp:
        pytest.fail("sipp not installed (scripts/install-deps)")
    tcp = transport != "u1"
    port = pbx.ports["tcp" if tcp else "udp"]
    for _ in range(5):  # fresh ports after a bind failure
        cmd = [sipp, "%s:%d" % (pbx.host, port),
               "-sf", os.path.join(SIPP_DIR, scenario),
               "-t", transport, "-i", "127.0.0.1", "-mi", "127.0.0.1",
               "-p", str(free_port(socket.SOCK_STREAM if tcp
                                   else socket.SOCK_DGRAM)),
               "-cp", str(free_port()), "-mp", str(free_port(pair=True)),
               "-m", "1", "-timeout", "%ds" % timeout, "-timeout_error",
               "-trace_err", "-nostdin"] + list(extra_args)
        r = subprocess.run(cmd, cwd=str(pbx.dir), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout + 10)
        out = r.stdout.decode(errors="replace")
        if not sipp_bind_failed(r.returncode, out):
            break
    for f in os.listdir(str(pbx.dir)):
        if f.endswith("_errors.log"):
            out += "\n--- %s ---\n" % f + open(os.path.join(
                str(pbx.dir), f), errors="replace").read()
    return r.returncode, out
