"""[calls] RFC 3261 Timer C and the end of an INVITE branch nobody answers.

A callee that rang (180) and then vanished (call_uas_ring_vanish.xml:
it takes the CANCEL and is gone, answering neither the CANCEL nor the
INVITE; later CANCEL retransmissions reach a closed UDP port) must not
hold the call:

- Timer C (§16.6 step 11, §16.8; [proxy] timer_c_s, 1 s here, 181 by
  default): with a ring timeout longer than the test, the caller still
  gets its final answer, 408, once Timer C fires after the last
  provisional, and the branch is CANCELled.
- Timer C is what ends a relayed re-INVITE whose callee answered 100
  Trying and vanished (call_uas_reinvite_vanish.xml): no ring timeout
  there; a 100 does not reset Timer C, so the re-INVITE gets 408 1 s
  after it was forwarded.
- §9.1: an INVITE branch whose CANCEL gets no answer (the ring timeout's
  CANCEL here, or Timer C's) is given up 64*T1 after the CANCEL
  (T1 = 100 ms in these tests: 6.4 s), so the call is freed: the
  metric pushpbx_calls_open (calls whose state is held) falls back to 0,
  and with [sip] shutdown_ms = 8000 the daemon then exits at once on
  SIGTERM (proxy_busy() is 0) instead of waiting for the open branch
  until the end of the grace time.

The peers are SIPp processes, with test_calls_sipp.py's harness (Env,
Phone).
"""
import time
import urllib.request

import pytest

from test_calls_sipp import EXTS, Env, caller, received_once

TOKEN = "timer-c-test-token-0123456789"
SHUTDOWN_MS = 8000
GIVEN_UP = "INVITE given up: no final response 64*T1 after its CANCEL"
# 64*T1 = 6.4 s after the CANCEL, plus a loaded machine's slack.
GIVEN_UP_WAIT_S = 15.0
# A daemon with nothing open exits in well under this after SIGTERM; one
# still holding the branch waits SHUTDOWN_MS.
PROMPT_EXIT_S = 3.0


@pytest.fixture
def env(start_pbx):
    e = Env(start_pbx)
    yield e
    for p in e.procs:  # callees still running: a failed test
        if p.poll() is None:
            p.kill()
        p.wait()


def start(env, ring, timer_c=None):
    sets = ["sip.shutdown_ms=%d" % SHUTDOWN_MS, "admin.token=" + TOKEN]
    if timer_c is not None:
        sets.append("proxy.timer_c_s=%d" % timer_c)
    env.pbx = env.start_pbx(workers=2, extra=EXTS.format(ring=ring),
                            sets=sets)
    return env


def metric(pbx, name):
    req = urllib.request.Request(
        "http://127.0.0.1:%d/metrics" % pbx.info["admin_port"],
        headers={"authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError("no metric %s in:\n%s" % (name, text))


def call_freed(pbx):
    """The caller was answered (calls_active 0 at once); the call's
    state goes once the unanswered branch is given up (calls_open 0,
    polled: 64*T1 after the CANCEL), and the daemon logs why."""
    assert metric(pbx, "pushpbx_calls_active") == 0
    deadline = time.monotonic() + GIVEN_UP_WAIT_S
    while metric(pbx, "pushpbx_calls_open") != 0:
        assert time.monotonic() < deadline, \
            "call still held after %.0f s%s" % (GIVEN_UP_WAIT_S, pbx.stderr())
        time.sleep(0.1)
    assert GIVEN_UP in pbx.stderr()


def exits_promptly(pbx):
    """SIGTERM; the daemon exits cleanly well before shutdown_ms."""
    t0 = time.monotonic()
    code = pbx.stop()
    took = time.monotonic() - t0
    assert code == 0, pbx.stderr()
    assert took < PROMPT_EXIT_S, \
        "exit took %.1f s: a call still held open%s" % (took, pbx.stderr())


def test_timer_c_answers_caller_408(env):
    """Ring timeout 60 s (longer than the SIPp caller waits): the caller
    gets 408 from Timer C 1 s after the 180, the callee gets a CANCEL,
    and the unanswered INVITE branch ends 64*T1 later."""
    start(env, ring=60, timer_c=1)
    callee = env.callee("call_uas_ring_vanish.xml")
    c = caller(env)
    t0 = time.monotonic()
    c.run("call_uac_408.xml", callee="200", domain="test.local")
    took = time.monotonic() - t0
    callee.wait()  # it got the CANCEL
    received_once(c, 408)
    assert took < 10, "408 after %.1f s" % took
    assert env.logged("Timer C: no final response to the INVITE")
    assert env.logged("call ended no-answer status=408")
    call_freed(env.pbx)
    exits_promptly(env.pbx)


def test_unanswered_cancel_frees_branch(env):
    """Ring timeout 1 s, Timer C at its default: the caller gets 480 and
    the callee the ring timeout's CANCEL, which it never answers; the
    INVITE branch is given up 64*T1 after the CANCEL, not kept for
    ever, and the daemon has nothing left open."""
    start(env, ring=1)
    callee = env.callee("call_uas_ring_vanish.xml")
    c = caller(env)
    c.run("call_uac_480.xml", callee="200", domain="test.local")
    callee.wait()
    received_once(c, 480)
    assert env.logged("call ended no-answer status=480")
    call_freed(env.pbx)
    assert "Timer C" not in env.pbx.stderr()  # default 181 s: not yet
    exits_promptly(env.pbx)


def test_timer_c_ends_reinvite_after_100(env):
    """A re-INVITE in an answered call: the callee sends 100 only and is
    gone. Timer C (not reset by the 100) CANCELs it and the caller's
    re-INVITE gets 408; the call's state is then freed."""
    start(env, ring=60, timer_c=1)
    callee = env.callee("call_uas_reinvite_vanish.xml")
    c = caller(env)
    c.run("call_uac_reinvite_408.xml", callee="200", domain="test.local")
    callee.wait()  # it got the CANCEL of its re-INVITE
    received_once(c, 408)
    assert env.logged("Timer C: no final response to the INVITE")
    call_freed(env.pbx)
    exits_promptly(env.pbx)
