"""[hardening] item 11: SIGTERM does not abandon ringing callers.

Before, SIGTERM freed every transaction at once: a caller whose call was
ringing got no final response (its phone rang on until its own timer B),
the callee's phone was never CANCELled. Now every worker answers each
ringing call 503 with Retry-After, CANCELs its branches, refuses new
calls, waits (at most [sip] shutdown_ms) for the branches' 487s, the
callers' ACKs and the missed-call pushes, and the daemon exits 0.

Set-up (pushpbx + pushsim from wakeharness; every SIP peer is SIPp):
  - a held call: 101 calls 100, whose app is in background (a push device,
    no binding): pushed, the caller hears pushpbx's 180, no branch;
  - a ringing call: 101 calls 102, a SIPp phone that rings without
    answering (call_uas_ring_cancel.xml: 180, then expects CANCEL, 487).
Then SIGTERM: both callers must get 503 + Retry-After and ACK it
(shutdown_uac.xml), the callee must get its CANCEL (its scenario passes
only then), the held call's device its missed-call push, and the daemon
must exit 0 within the bound. A second test keeps the drain open (a
callee that never answers, so its branch cannot be CANCELled) to check
that a new INVITE meanwhile gets 503 and that the bound holds.
"""
import os
import re
import signal
import time
from datetime import datetime

import pytest

from wakeharness import (PUSHSIM, VOIP, admin_get, apns_token, metric,
                         pn_keys, ptype, wait_until)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import env, keys, phones, sipps  # noqa: F401
import conftest
from conftest import Udp, header, status_of

@pytest.fixture(autouse=True)
def _pushsim_built():
    """A missing pushsim fails each test (never a skip)."""
    if not os.path.exists(PUSHSIM):
        pytest.fail("pushsim not built: %s" % PUSHSIM)

SHUTDOWN_BOUND_S = 3.0  # [sip] shutdown_ms defaults to 2000

TRACE_RE = re.compile(
    r"^-{10,} (\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+)\s*\n"
    r"(UDP message (?:received|sent)[^\n]*)\n\s*\n([^\n]*)", re.M)


def first_received(sipp, start):
    """Wall-clock time SIPp logged the first received message whose first
    line starts with start, or None."""
    for ts, what, line in TRACE_RE.findall(sipp.messages()):
        if "received" in what and line.startswith(start):
            return datetime.strptime(" ".join(ts.split()),
                                     "%Y-%m-%d %H:%M:%S.%f")
    return None


def user_csv(tmp_path, ext):
    p = tmp_path / ("user%s.csv" % ext)
    p.write_text("SEQUENTIAL\n%s;pw%s;[authentication username=%s "
                 "password=pw%s]\n" % (ext, ext, ext, ext))
    return str(p)


def test_sigterm_answers_ringing_calls(env, sipps, tmp_path):
    pbx, sim = env()
    # The app of 100 registers with push and goes to background.
    pn = ("apns", apns_token(), VOIP)
    sipps(pbx, "wake_background.xml", keys=pn_keys("100", pn),
          auth=("100", "pw100")).expect(0)
    # 102 is a phone that rings and never answers: its answering SIPp
    # listens first (sipps returns once it holds its port), then another
    # SIPp run registers a Contact naming that port ([cport]).
    csv = user_csv(tmp_path, "102")
    callee = sipps(pbx, "call_uas_ring_cancel.xml", timeout=20,
                   extra=["-inf", csv])
    sipps(pbx, "call_register.xml", keys={"cport": str(callee.port)},
          extra=["-inf", csv]).expect(0)

    held = sipps(pbx, "shutdown_uac.xml", keys={"caller": "101",
                                                "callee": "100"},
                 auth=("101", "pw101"), timeout=20)
    push = sim.wait_push(pn[1])[0]  # the call is held: pushed, no branch
    assert ptype(push) == "call", push
    ringing = sipps(pbx, "shutdown_uac.xml", keys={"caller": "101",
                                                   "callee": "102"},
                    auth=("101", "pw101"), timeout=20)
    assert wait_until(
        lambda: metric(pbx, "pushpbx_calls_active") == 2, 5), \
        "both calls should be up\n" + ringing.report()

    sent = datetime.now()
    t0 = time.monotonic()
    code = pbx.stop(signal.SIGTERM, timeout=SHUTDOWN_BOUND_S + 5)
    took = time.monotonic() - t0
    print("daemon exited %.0f ms after SIGTERM" % (took * 1000))

    # Callers: 503 + Retry-After, ACKed; callee: CANCEL, 200, 487, ACK.
    held.expect(0)
    ringing.expect(0)
    callee.expect(0)
    assert code == 0, pbx.stderr()[-3000:]
    assert took < SHUTDOWN_BOUND_S, "exit took %.2f s" % took
    for c in (held, ringing):
        at = first_received(c, "SIP/2.0 503")
        assert at is not None, c.report()
        ms = (at - sent).total_seconds() * 1000
        print("final response %.0f ms after SIGTERM" % ms)
        assert ms < SHUTDOWN_BOUND_S * 1000, c.report()
    assert first_received(callee, "CANCEL ") is not None, callee.report()
    # The held call ended unanswered: its device got the missed-call push
    # before the daemon exited.
    kinds = [ptype(p) for p in sim.pushes(pn[1])]
    assert kinds == ["call", "missed"], kinds
    log = pbx.stderr()
    assert "drained after" in log, log[-3000:]



def test_drain_bounded_and_refuses_new_calls(env, sipps, phones):
    """102 never answers its INVITE (no provisional, so its branch cannot
    be CANCELled, RFC 3261 §9.1): the drain lasts its whole bound
    (shutdown_ms = 2000), the caller still gets 503 at once, a new INVITE
    meanwhile gets 503 + Retry-After (not a challenge), and the daemon
    exits 0 once the bound is reached."""
    pbx, sim = env()
    silent = phones(pbx, "102", on_invite="silent")
    assert silent.register()["status"] == 200
    caller = sipps(pbx, "shutdown_uac.xml", keys={"caller": "101",
                                                  "callee": "102"},
                   auth=("101", "pw101"), timeout=20)
    assert wait_until(lambda: silent.invites, 5), caller.report()

    t0 = time.monotonic()
    pbx.proc.send_signal(signal.SIGTERM)
    caller.expect(0)  # 503 + Retry-After, ACKed
    assert wait_until(lambda: "draining" in pbx.stderr(), 2)
    u = Udp()
    try:
        rsp = u.exchange(conftest.request(
            "INVITE", u.port, ruri="sip:102@test.local"), pbx.udp)
    finally:
        u.close()
    assert pbx.alive(), "exited before the bound: " + pbx.stderr()[-2000:]
    assert status_of(rsp)[0] == 503, rsp
    assert header(rsp, "Retry-After") == "5", rsp
    # Wait for the exit this SIGTERM started (pbx.stop() would signal
    # again, which means "stop now").
    code = pbx.proc.wait(timeout=SHUTDOWN_BOUND_S + 5)
    took = time.monotonic() - t0
    pbx.exit_code = code
    assert code == 0, pbx.stderr()[-3000:]
    assert 1.9 < took < SHUTDOWN_BOUND_S, "exit took %.2f s" % took
    assert "drain cut short after" in pbx.stderr()
