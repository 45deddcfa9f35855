"""[calls] calls through the proxy with SIPp as every peer.

The issue for calls names SIPp as the test peer: a caller and one or two
callees, each a SIPp process, all registered through pushpbx with MD5
digest credentials (SIPp 3.6 computes MD5 only, hence digest_algorithms =
md5,sha256). Scenarios: tests/integration/sipp/call_*.xml, users in
call_user100.csv / call_user200.csv. test_calls.py keeps its scripted
Python UAs for the races SIPp cannot script.

A "phone" here is a fixed 127.0.0.1 port: call_register.xml registers it
(SIPp exits), then the call scenario runs on the same port (-p), so the
registered Contact is where the proxy sends the INVITE. Over TCP the
registering connection is gone by then, so the proxy connects out to the
Contact (a real TCP phone would keep its connection; SIPp cannot register
and then answer an INVITE of another Call-ID in one process). Callees run
in the background and are waited for (exit code 0 = every scenario step
passed) or killed by PID at teardown. Every SIPp run has -m 1, -timeout,
-trace_err and ephemeral ports only.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import SIPP_DIR, free_port

EXTS = """
[registrar]
digest_algorithms = md5,sha256

[proxy]
ring_timeout_s = {ring}

[extension.100]
password = pw100
[extension.200]
password = pw200
"""

SIPP_TIMEOUT = 15  # seconds; any single SIPp run ends well before


def _listening(port, tcp):
    """True when some socket is bound to 127.0.0.1:port (TCP: listening).
    Read from /proc so the check itself never holds the port."""
    want = ":%04X" % port
    for path in (["/proc/net/tcp"] if tcp else ["/proc/net/udp"]):
        with open(path) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[1].endswith(want) and (not tcp or cols[3] == "0A"):
                    return True
    return False


class Phone:
    """One SIPp device: a fixed local port, an extension's credentials."""

    def __init__(self, env, ext, tcp=False, name=None):
        self.env, self.pbx, self.ext, self.tcp = env, env.pbx, ext, tcp
        self.name = name or "ext%s" % ext
        self.port = free_port(socket.SOCK_STREAM if tcp
                              else socket.SOCK_DGRAM)
        self.proc = None
        self.runs = 0

    def _cmd(self, scenario, keys):
        self.runs += 1
        base = os.path.join(str(self.pbx.dir), "%s-%d-%s" % (
            self.name, self.runs, scenario[:-4]))
        self.out = base + ".out"
        self.err = base + "-errors.log"
        self.msgs = base + "-messages.log"
        dest = self.pbx.ports["tcp" if self.tcp else "udp"]
        cmd = [self.env.sipp, "%s:%d" % (self.pbx.host, dest),
               "-sf", os.path.join(SIPP_DIR, scenario),
               "-inf", os.path.join(SIPP_DIR, "call_user%s.csv" % self.ext),
               "-t", "t1" if self.tcp else "u1",
               "-i", "127.0.0.1", "-mi", "127.0.0.1",
               "-p", str(self.port), "-cp", str(free_port()),
               "-mp", str(free_port(pair=True)),
               "-m", "1", "-timeout", "%ds" % SIPP_TIMEOUT, "-timeout_error",
               "-trace_err", "-error_file", self.err,
               "-trace_msg", "-message_file", self.msgs, "-nostdin"]
        for k, v in keys.items():
            cmd += ["-key", k, v]
        return cmd

    def report(self):
        """Command output, errors and messages of the last run."""
        text = ""
        for p in (self.out, self.err, self.msgs):
            if os.path.exists(p):
                text += "\n--- %s ---\n%s" % (os.path.basename(p), open(
                    p, errors="replace").read()[-6000:])
        return text

    def run(self, scenario, **keys):
        """Run scenario in the foreground; asserts it passed."""
        cmd = self._cmd(scenario, keys)
        with open(self.out, "wb") as o:
            r = subprocess.run(cmd, cwd=str(self.pbx.dir), stdout=o,
                               stderr=subprocess.STDOUT,
                               timeout=SIPP_TIMEOUT + 10)
        assert r.returncode == 0, "%s %s rc=%d%s" % (
            self.name, scenario, r.returncode, self.report())

    def register(self):
        self.run("call_register.xml")
        return self

    def start(self, scenario, **keys):
        """Run scenario in the background (a callee); returns once SIPp
        listens on the phone's port."""
        assert self.proc is None
        cmd = self._cmd(scenario, keys)
        with open(self.out, "wb") as o:
            self.proc = subprocess.Popen(cmd, cwd=str(self.pbx.dir),
                                         stdout=o, stderr=subprocess.STDOUT)
        self.env.procs.append(self.proc)
        deadline = time.monotonic() + 5
        while not _listening(self.port, self.tcp):
            assert self.proc.poll() is None, "%s exited early%s" % (
                self.name, self.report())
            assert time.monotonic() < deadline, "%s not listening" % self.name
            time.sleep(0.02)
        return self

    def wait(self, timeout=SIPP_TIMEOUT):
        """Wait for the background scenario; asserts it passed."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        assert rc == 0, "%s rc=%r%s" % (self.name, rc, self.report())

    def received(self):
        if not os.path.exists(self.msgs):
            return ""
        return open(self.msgs, errors="replace").read()

    def stop(self):
        """Stop a background scenario that should have had nothing to do."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Env:
    def __init__(self, start_pbx):
        self.start_pbx = start_pbx
        self.sipp = shutil.which("sipp")
        if not self.sipp:
            pytest.skip("sipp not installed")
        self.procs = []
        self.pbx = None

    def start(self, workers=2, ring=20):
        self.pbx = self.start_pbx(workers=workers,
                                  extra=EXTS.format(ring=ring))
        return self

    def phone(self, ext, tcp=False, name=None):
        return Phone(self, ext, tcp, name)

    def logged(self, text, timeout=2.0):
        """True once the daemon's log holds text (call records are written
        when the transaction ends, just after the SIPp peers finish)."""
        deadline = time.monotonic() + timeout
        while text not in self.pbx.stderr():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


@pytest.fixture
def env(start_pbx):
    e = Env(start_pbx)
    yield e
    for p in e.procs:  # callees still running: a failed test
        if p.poll() is None:
            p.kill()
        p.wait()


def caller(env, tcp=False):
    return env.phone("100", tcp=tcp, name="caller").register()


def received_once(phone, status):
    """The final response reached the caller exactly once: its ACK matched
    the proxy's INVITE transaction, which therefore did not retransmit
    (the call_uac_4xx scenarios wait 400 ms after the ACK; T1 = 100 ms)."""
    n = phone.received().count("\nSIP/2.0 %d " % status)
    assert n == 1, "%d x %d%s" % (n, status, phone.report())


# --- answered calls ---------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_answered_bye_from_caller(env, workers):
    env.start(workers=workers)
    callee = env.phone("200", name="callee").register()
    callee.start("call_uas_answer.xml")
    caller(env).run("call_uac_bye.xml", callee="200", domain="test.local")
    callee.wait()
    assert env.logged("call ended answered status=200")


@pytest.mark.parametrize("workers", [1, 2])
def test_answered_bye_from_callee(env, workers):
    env.start(workers=workers)
    callee = env.phone("200", name="callee").register()
    callee.start("call_uas_answer_bye.xml")
    caller(env).run("call_uac_wait_bye.xml", callee="200",
                    domain="test.local")
    callee.wait()


@pytest.mark.parametrize("caller_tcp,callee_tcp", [(True, False)])
def test_udp_tcp_call(env, caller_tcp, callee_tcp):
    """Caller and callee on different transports; the callee hangs up, so
    requests cross the proxy in both directions. Only a TCP caller here: a
    TCP callee is reached over the connection it registered on (a TCP/TLS
    binding whose connection is gone is unreachable, docs/transport.md),
    and SIPp cannot register and then answer on one connection (two
    scenarios, two runs). UDP caller -> TCP/TLS callee is played by the
    Python UAs of test_calls.py and test_tls.py."""
    env.start()
    callee = env.phone("200", tcp=callee_tcp, name="callee").register()
    callee.start("call_uas_answer_bye.xml")
    caller(env, tcp=caller_tcp).run("call_uac_wait_bye.xml", callee="200",
                                    domain="test.local")
    callee.wait()
    assert env.logged("call ended answered status=200")


def test_reinvite_in_dialog(env):
    env.start()
    callee = env.phone("200", name="callee").register()
    callee.start("call_uas_reinvite.xml")
    caller(env).run("call_uac_reinvite.xml", callee="200",
                    domain="test.local")
    callee.wait()


# --- calls that fail --------------------------------------------------------

def test_busy_486(env):
    env.start()
    callee = env.phone("200", name="callee").register()
    callee.start("call_uas_busy.xml")
    c = caller(env)
    c.run("call_uac_486.xml", callee="200", domain="test.local")
    callee.wait()
    received_once(c, 486)
    assert env.logged("call ended busy status=486")


def test_no_answer_timeout_480(env):
    """Ring timeout 2 s: the callee rang, so the caller gets 480 and the
    callee a CANCEL."""
    env.start(ring=2)
    callee = env.phone("200", name="callee").register()
    callee.start("call_uas_ring_cancel.xml")
    c = caller(env)
    c.run("call_uac_480.xml", callee="200", domain="test.local")
    callee.wait()
    received_once(c, 480)
    assert env.logged("call ended no-answer status=480")


def test_caller_cancels_mid_ring(env):
    env.start()
    callee = env.phone("200", name="callee").register()
    callee.start("call_uas_ring_cancel.xml")
    c = caller(env)
    c.run("call_uac_cancel.xml", callee="200", domain="test.local")
    callee.wait()
    received_once(c, 487)
    assert env.logged("call ended cancelled")


# --- forking ----------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_fork_one_answers_other_cancelled(env, workers):
    env.start(workers=workers)
    desk = env.phone("200", name="desk").register()
    app = env.phone("200", name="app").register()
    desk.start("call_uas_ring_elsewhere.xml")
    app.start("call_uas_answer.xml")
    caller(env).run("call_uac_bye.xml", callee="200", domain="test.local")
    app.wait()
    desk.wait()
    assert env.logged("branches=2 by=sip:200@127.0.0.1:%d" % app.port)


def test_device_registers_mid_ring(env):
    """desk rings; a second device of 200 registers while the call rings,
    gets its own branch (the proxy retransmits the INVITE over UDP until
    the SIPp answering on the new binding is up) and answers; desk gets
    the CANCEL."""
    env.start()
    desk = env.phone("200", name="desk").register()
    desk.start("call_uas_ring_elsewhere.xml")
    call = caller(env)
    call.start("call_uac_bye.xml", callee="200", domain="test.local")
    deadline = time.monotonic() + 5
    while "180 Ringing" not in desk.received():
        assert time.monotonic() < deadline, "desk never rang" + desk.report()
        time.sleep(0.05)
    late = env.phone("200", name="late").register()
    late.start("call_uas_answer.xml")
    call.wait()
    late.wait()
    desk.wait()
    assert env.logged("branches=2 by=sip:200@127.0.0.1:%d" % late.port)


# --- refused ----------------------------------------------------------------

def _idle_callee(env):
    """A registered 200 that must not be called: it would answer, and the
    refusing test then checks it received nothing."""
    callee = env.phone("200", name="callee").register()
    callee.start("call_uas_answer.xml")
    return callee


def _assert_idle(callee):
    time.sleep(0.3)
    callee.stop()
    assert "INVITE sip:" not in callee.received(), callee.report()


def test_unknown_extension_404(env):
    env.start()
    c = caller(env)
    c.run("call_uac_404.xml", callee="999", domain="test.local")
    received_once(c, 404)


def test_unauthenticated_invite_407(env):
    env.start()
    callee = _idle_callee(env)
    c = caller(env)
    c.run("call_uac_407.xml", callee="200", domain="test.local")
    received_once(c, 407)
    _assert_idle(callee)


def test_wrong_domain_403(env):
    env.start()
    callee = _idle_callee(env)
    c = caller(env)
    c.run("call_uac_403.xml", callee="200", domain="example.com")
    received_once(c, 403)
    _assert_idle(callee)
