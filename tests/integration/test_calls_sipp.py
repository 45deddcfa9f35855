"""[calls] calls through the proxy with SIPp as every peer.

The issue for calls names SIPp as the test peer: a caller and one or two
callees, each a SIPp process, all registered through pushpbx with MD5
digest credentials (SIPp 3.6 computes MD5 only, hence digest_algorithms =
md5,sha256). Scenarios: tests/integration/sipp/call_*.xml, users in
call_user100.csv / call_user200.csv. test_calls.py keeps its scripted
Python UAs for the races SIPp cannot script.

A "phone" here is a 127.0.0.1 port. A callee's answering scenario
listens there first (start() returns once that SIPp holds its sockets);
then call_register.xml, another SIPp run from its own port, registers a
Contact naming the phone's port ([cport]), so the registered Contact is
where the proxy sends the INVITE, and no INVITE can come before the phone
listens. Over TCP the proxy connects out to the Contact (a real TCP phone
would keep its registering connection; SIPp cannot register and then
answer an INVITE of another Call-ID in one process). A caller registers
the same way and runs its call scenario on its port. Callees run in the
background and are waited for (exit code 0 = every scenario step passed)
or killed by PID at teardown. Every SIPp run has -m 1, -timeout,
-trace_err and ephemeral ports only.

Ephemeral ports are picked free (conftest.free_port) and bound by SIPp a
moment later: under a parallel `ctest -j` another process may take one in
between, and SIPp exits 254 ("Unable to bind"). Every SIPp start is
retried with fresh ports then (a port that a registration names is
registered again).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import SIPP_DIR, free_port, sipp_bind_failed, sipp_bound

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
BIND_TRIES = 5  # SIPp starts, each with fresh ports, before giving up


class Phone:
    """One SIPp device: a local port, an extension's credentials."""

    def __init__(self, env, ext, tcp=False, name=None):
        self.env, self.pbx, self.ext, self.tcp = env, env.pbx, ext, tcp
        self.name = name or "ext%s" % ext
        self.port = self._free()
        self.proc = None
        self.runs = 0
        self.registered = False
        self.bg = None  # files of the background run (start())

    def _free(self):
        return free_port(socket.SOCK_STREAM if self.tcp else socket.SOCK_DGRAM)

    def _cmd(self, scenario, keys, port):
        """The command line of one run on local port; keeps the media
        ports it chose in self.media."""
        self.runs += 1
        base = os.path.join(str(self.pbx.dir), "%s-%d-%s" % (
            self.name, self.runs, scenario[:-4]))
        self.out = base + ".out"
        self.err = base + "-errors.log"
        self.msgs = base + "-messages.log"
        self.media = free_port(pair=True)
        dest = self.pbx.ports["tcp" if self.tcp else "udp"]
        cmd = [self.env.sipp, "%s:%d" % (self.pbx.host, dest),
               "-sf", os.path.join(SIPP_DIR, scenario),
               "-inf", os.path.join(SIPP_DIR, "call_user%s.csv" % self.ext),
               "-t", "t1" if self.tcp else "u1",
               "-i", "127.0.0.1", "-mi", "127.0.0.1",
               "-p", str(port), "-cp", str(free_port()),
               "-mp", str(self.media),
               "-m", "1", "-timeout", "%ds" % SIPP_TIMEOUT, "-timeout_error",
               "-trace_err", "-error_file", self.err,
               "-trace_msg", "-message_file", self.msgs, "-nostdin"]
        for k, v in keys.items():
            cmd += ["-key", k, v]
        return cmd

    def _output(self):
        if not os.path.exists(self.out):
            return ""
        return open(self.out, errors="replace").read()

    def _bind_failed(self, rc, own_port=False):
        """The run ended because a port was taken (retry it); a lost
        phone port is replaced, and registered again if it was."""
        if not sipp_bind_failed(rc, self._output()):
            return False
        if "main socket" in self._output() and not own_port:
            self.port = self._free()
            if self.registered:
                self.register()
        return True

    def report(self):
        """Command output, errors and messages of the last run and of the
        background one."""
        text = ""
        runs = [(self.out, self.err, self.msgs)]
        if self.bg and self.bg != runs[0]:
            runs.append(self.bg)
        for p in [p for run in runs for p in run]:
            if os.path.exists(p):
                text += "\n--- %s ---\n%s" % (os.path.basename(p), open(
                    p, errors="replace").read()[-6000:])
        return text

    def run(self, scenario, own_port=False, **keys):
        """Run scenario in the foreground from the phone's port (own_port:
        from a fresh port of its own); asserts it passed."""
        for _ in range(BIND_TRIES):
            port = self._free() if own_port else self.port
            cmd = self._cmd(scenario, keys, port)
            with open(self.out, "wb") as o:
                r = subprocess.run(cmd, cwd=str(self.pbx.dir), stdout=o,
                                   stderr=subprocess.STDOUT,
                                   timeout=SIPP_TIMEOUT + 10)
            if not self._bind_failed(r.returncode, own_port):
                break
        assert r.returncode == 0, "%s %s rc=%d%s" % (
            self.name, scenario, r.returncode, self.report())

    def register(self):
        """REGISTER (401, credentials, 200) a Contact naming the phone's
        port, sent by SIPp from a port of its own: a callee's answering
        scenario may already listen on the phone's port."""
        self.run("call_register.xml", own_port=True, cport=str(self.port))
        self.registered = True
        return self

    def start(self, scenario, **keys):
        """Run scenario in the background (a callee answering on the
        phone's port); returns once that SIPp holds its sockets (the
        phone's port and its media pair), so it is there for the INVITE."""
        assert self.proc is None
        for _ in range(BIND_TRIES):
            cmd = self._cmd(scenario, keys, self.port)
            with open(self.out, "wb") as o:
                proc = subprocess.Popen(cmd, cwd=str(self.pbx.dir), stdout=o,
                                        stderr=subprocess.STDOUT)
            self.env.procs.append(proc)
            socks = [(self.port, self.tcp), (self.media, False),
                     (self.media + 2, False)]
            deadline = time.monotonic() + SIPP_TIMEOUT
            while not sipp_bound(proc.pid, socks) and proc.poll() is None:
                assert time.monotonic() < deadline, \
                    "%s not listening%s" % (self.name, self.report())
                time.sleep(0.01)
            if proc.poll() is None or not self._bind_failed(proc.returncode):
                break
        self.proc = proc
        self.bg = (self.out, self.err, self.msgs)
        assert not (proc.poll() is not None and sipp_bind_failed(
            proc.returncode, self._output())), "%s: no free ports%s" % (
                self.name, self.report())
        return self

    def wait(self, timeout=SIPP_TIMEOUT):
        """Wait for the background scenario; asserts it passed."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        assert rc == 0, "%s rc=%r%s" % (self.name, rc, self.report())

    def received(self):
        """The message log of the background run if there is one, else of
        the last run."""
        msgs = self.bg[2] if self.bg else self.msgs
        if not os.path.exists(msgs):
            return ""
        return open(msgs, errors="replace").read()


class Env:
    def __init__(self, start_pbx):
        self.start_pbx = start_pbx
        self.sipp = shutil.which("sipp")
        if not self.sipp:
            pytest.fail("sipp not installed (scripts/install-deps)")
        self.procs = []
        self.pbx = None

    def start(self, workers=2, ring=20):
        self.pbx = self.start_pbx(workers=workers,
                                  extra=EXTS.format(ring=ring))
        return self

    def phone(self, ext, tcp=False, name=None):
        return Phone(self, ext, tcp, name)

    def callee(self, scenario, name="callee", tcp=False):
        """A device of 200 answering with scenario: it listens, then
        registers."""
        return self.phone("200", tcp, name).start(scenario).register()

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
    callee = env.callee("call_uas_answer.xml")
    caller(env).run("call_uac_bye.xml", callee="200", domain="test.local")
    callee.wait()
    assert env.logged("call ended answered status=200")


@pytest.mark.parametrize("workers", [1, 2])
def test_answered_bye_from_callee(env, workers):
    env.start(workers=workers)
    callee = env.callee("call_uas_answer_bye.xml")
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
    callee = env.callee("call_uas_answer_bye.xml", tcp=callee_tcp)
    caller(env, tcp=caller_tcp).run("call_uac_wait_bye.xml", callee="200",
                                    domain="test.local")
    callee.wait()
    assert env.logged("call ended answered status=200")


def test_reinvite_in_dialog(env):
    env.start()
    callee = env.callee("call_uas_reinvite.xml")
    caller(env).run("call_uac_reinvite.xml", callee="200",
                    domain="test.local")
    callee.wait()


# --- calls that fail --------------------------------------------------------

def test_busy_486(env):
    env.start()
    callee = env.callee("call_uas_busy.xml")
    c = caller(env)
    c.run("call_uac_486.xml", callee="200", domain="test.local")
    callee.wait()
    received_once(c, 486)
    assert env.logged("call ended busy status=486")


def test_no_answer_timeout_480(env):
    """Ring timeout 2 s: the callee rang, so the caller gets 480 and the
    callee a CANCEL."""
    env.start(ring=2)
    callee = env.callee("call_uas_ring_cancel.xml")
    c = caller(env)
    c.run("call_uac_480.xml", callee="200", domain="test.local")
    callee.wait()
    received_once(c, 480)
    assert env.logged("call ended no-answer status=480")


def test_caller_cancels_mid_ring(env):
    env.start()
    callee = env.callee("call_uas_ring_cancel.xml")
    c = caller(env)
    c.run("call_uac_cancel.xml", callee="200", domain="test.local")
    callee.wait()
    received_once(c, 487)
    assert env.logged("call ended cancelled")


# --- forking ----------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_fork_one_answers_other_cancelled(env, workers):
    env.start(workers=workers)
    desk = env.callee("call_uas_ring_elsewhere.xml", name="desk")
    app = env.callee("call_uas_answer.xml", name="app")
    caller(env).run("call_uac_bye.xml", callee="200", domain="test.local")
    app.wait()
    desk.wait()
    assert env.logged("branches=2 by=sip:200@127.0.0.1:%d" % app.port)


def test_device_registers_mid_ring(env):
    """desk rings; a second device of 200 registers while the call rings
    (its SIPp listening before it registers), gets its own branch and
    answers; desk gets the CANCEL."""
    env.start()
    desk = env.callee("call_uas_ring_elsewhere.xml", name="desk")
    call = caller(env)
    call.start("call_uac_bye.xml", callee="200", domain="test.local")
    # desk's 180 is in its message log: the call rings (desk answers the
    # INVITE with 180 at once; the bound is for a loaded machine).
    deadline = time.monotonic() + SIPP_TIMEOUT
    while "180 Ringing" not in desk.received():
        assert desk.proc.poll() is None and call.proc.poll() is None, \
            "call ended before desk rang" + desk.report() + call.report()
        assert time.monotonic() < deadline, "desk never rang" + desk.report()
        time.sleep(0.05)
    late = env.callee("call_uas_answer.xml", name="late")
    call.wait()
    late.wait()
    desk.wait()
    assert env.logged("branches=2 by=sip:200@127.0.0.1:%d" % late.port)


# --- refused ----------------------------------------------------------------

def _idle_callee(env):
    """A registered 200 that must not be called by the refused call: it
    answers one call, and _assert_idle checks which one that was."""
    callee = env.callee("call_uas_answer.xml")
    return callee


def _assert_idle(callee, c):
    """The refused call reached no phone. Not a sleep but a barrier: the
    same caller then calls 200 for real through the daemon's one worker,
    which handles the caller's requests in order, so an INVITE forked for
    the refused call would have reached the callee first. The callee
    answers its first INVITE: it must be the second call's."""
    c.run("call_uac_bye.xml", callee="200", domain="test.local")
    callee.wait()
    cids = re.findall(r"^INVITE sip:.*?^Call-ID: *(\S+)", callee.received(),
                      re.M | re.S)
    assert len(cids) == 1, callee.report()
    assert "Call-ID: %s" % cids[0] in c.received(), c.report()


def test_unknown_extension_404(env):
    env.start()
    c = caller(env)
    c.run("call_uac_404.xml", callee="999", domain="test.local")
    received_once(c, 404)


def test_unauthenticated_invite_407(env):
    env.start(workers=1)
    callee = _idle_callee(env)
    c = caller(env)
    c.run("call_uac_407.xml", callee="200", domain="test.local")
    received_once(c, 407)
    _assert_idle(callee, c)


def test_wrong_domain_403(env):
    env.start(workers=1)
    callee = _idle_callee(env)
    c = caller(env)
    c.run("call_uac_403.xml", callee="200", domain="example.com")
    received_once(c, 403)
    _assert_idle(callee, c)


# --- the harness under parallel load ------------------------------------------

def test_port_taken_before_sipp_binds(env, monkeypatch):
    """Between free_port() and SIPp's bind() another process may take the
    port (parallel ctest runs): SIPp then exits 254, "Unable to bind".
    Here a socket of the test holds the callee's first phone port and the
    media port of its second start; the harness starts SIPp again with
    fresh ports each time and the call goes through."""
    import conftest
    env.start()
    held = []
    calls = {False: 0, True: 0}  # free_port calls, plain and pairs

    def racing_free_port(kind=socket.SOCK_DGRAM, pair=False):
        calls[pair] += 1
        if calls[pair] == (2 if pair else 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))  # "another process" took it
            held.append(s)
            return s.getsockname()[1]
        return conftest.free_port(kind, pair)

    monkeypatch.setattr(sys.modules[__name__], "free_port",
                        racing_free_port)
    try:
        callee = env.callee("call_uas_answer.xml")
        assert len(held) == 2
        caller(env).run("call_uac_bye.xml", callee="200",
                        domain="test.local")
        callee.wait()
    finally:
        for s in held:
            s.close()
    outs = "".join(open(os.path.join(str(env.pbx.dir), f),
                        errors="replace").read()
                   for f in os.listdir(str(env.pbx.dir))
                   if f.startswith("callee-") and f.endswith(".out"))
    assert "Unable to bind main socket" in outs
    assert "Unable to bind audio RTP socket" in outs
    assert env.logged("call ended answered status=200")
