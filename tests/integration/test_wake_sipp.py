"""[wake] the main push wake-up flows with SIPp phones (APNs and FCM).

pushpbx + pushsim as in test_wake.py, but every SIP peer is SIPp: the
mobile app registers with its RFC 8599 push parameters and goes to
background (wake_background.xml), a caller calls it (wake_call.xml or
wake_call_cancel.xml), and the harness plays the phone's OS: when
pushsim's control API (GET /pushes) reports the push for the app's token,
it starts the woken phone. The woken phone is two SIPp runs: first its
answering scenario (wake_answer_once.xml, wake_cancelled.xml or
wake_no_invite.xml) listening on a port, then wake_woken.xml, whose
REGISTER (401, then credentials) names that port in its Contact; so the
held INVITE never falls between two SIPp processes.

  (a) push, wake, answer: the caller hears 180 then 200, ACK, BYE;
  (b) the caller cancels before the wake: a missed-call push with the
      call push's collapse id; an FCM phone then gets no INVITE, an APNs
      VoIP phone gets the INVITE and a CANCEL with Reason SIP;cause=487;
  (c) the woken REGISTER is challenged then repeated, and refreshed while
      ringing: exactly one INVITE reaches the phone, none on the 401.

The Python phones of test_wake.py stay for what SIPp cannot check (exact
INVITE counts in races, headers of every request). SIPp 3.6 does MD5
digest only: wakeharness.CONF has digest_algorithms = md5,sha256.
"""
import re
from datetime import datetime

import pytest

from wakeharness import (PROJECT, SIPP_RC_TIMEOUT, VOIP, admin_get,
                         apns_token, fcm_token, pcall_id, pcollapse, pn_keys,
                         ptype, wait_until)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import env, keys, sipps  # noqa: F401


DEV, CALLER = "100", "101"


def pn_for(provider):
    if provider == "apns":
        return ("apns", apns_token(), VOIP)
    return ("fcm", fcm_token(), PROJECT)


def creds(ext):
    return (ext, "pw" + ext)


def background(sipps, pbx, pn):
    """The app registers with push params, then Expires: 0."""
    sipps(pbx, "wake_background.xml", keys=pn_keys(DEV, pn),
          auth=creds(DEV)).expect(0)
    devs = admin_get(pbx, "/api/devices")["items"]
    assert [(d["ext"], d["provider"], d["token_prefix"]) for d in devs] == \
        [(DEV, pn[0], pn[1][:8])]


def call(sipps, pbx, scenario):
    """The caller's SIPp, running in the background."""
    return sipps(pbx, scenario, keys={"caller": CALLER, "callee": DEV},
                 auth=creds(CALLER), timeout=20)


def wake(sipps, pbx, pn, answer, timeout=20, timeout_error=True):
    """The harness plays the woken phone: its answering scenario listens
    first, then the REGISTER naming that port runs to its end."""
    uas = sipps(pbx, answer, keys={"ext": DEV}, timeout=timeout,
                timeout_error=timeout_error)
    reg = woken_register(sipps, pbx, pn, uas)
    return uas, reg


def woken_register(sipps, pbx, pn, uas):
    k = dict(pn_keys(DEV, pn), cport=str(uas.port))
    reg = sipps(pbx, "wake_woken.xml", keys=k, auth=creds(DEV))
    reg.expect(0)
    return reg


# SIPp's -trace_msg log: a dashed line with the time, then what happened.
TRACE_RE = re.compile(
    r"^-{10,} (\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+)\s*\n"
    r"(UDP message (?:received|sent)[^\n]*)\n\s*\n([^\n]*)", re.M)


def trace(sipp):
    """[(time, 'received'|'sent', first line)] from a SIPp message log."""
    out = []
    for ts, what, first in TRACE_RE.findall(sipp.messages()):
        t = datetime.strptime(" ".join(ts.split()), "%Y-%m-%d %H:%M:%S.%f")
        out.append((t, "received" if "received" in what else "sent",
                    first.strip()))
    return out


def received(sipp, start):
    return [(t, line) for t, d, line in trace(sipp)
            if d == "received" and line.startswith(start)]


def held_call_id(pbx, sim, pn):
    """The call push for pn's token; the call is held, no phone has it."""
    push = sim.wait_push(pn[1])[0]
    assert ptype(push) == "call", push
    cid = pcall_id(push)
    wk = admin_get(pbx, "/api/wakeups")["items"]
    assert [(w["ext"], w["call_id"]) for w in wk] == [(DEV, cid)]
    return push, cid


@pytest.mark.parametrize("provider", ["apns", "fcm"])
def test_a_push_wake_answer(env, sipps, provider):
    pbx, sim = env()
    pn = pn_for(provider)
    background(sipps, pbx, pn)
    caller = call(sipps, pbx, "wake_call.xml")
    push, cid = held_call_id(pbx, sim, pn)
    if provider == "apns":
        assert push["headers"]["apns-push-type"] == "voip"
    else:
        assert push["payload"]["message"]["android"]["priority"] == "HIGH"
    uas, reg = wake(sipps, pbx, pn, "wake_answer_once.xml")
    # The phone rang and answered, the caller heard 180 then 200, ACKed
    # and hung up (each scenario fails otherwise).
    uas.expect(0)
    caller.expect(0)
    inv = received(uas, "INVITE ")
    assert len(inv) == 1, uas.report()
    assert "Call-ID: %s" % cid in uas.messages()
    assert [t for t in received(caller, "SIP/2.0 1") if "180" in t[1]]
    # One call push; the call is recorded as answered by the woken phone.
    assert [ptype(p) for p in sim.pushes(pn[1])].count("call") == 1
    rec = wait_until(lambda: [c for c in admin_get(pbx, "/api/calls")
                              ["items"] if c["call_id"] == cid and
                              c["state"] == "ended"], 5)
    assert rec and rec[0]["outcome"] == "answered", rec
    assert rec[0]["answered_by"].startswith(
        "sip:%s@127.0.0.1:%d" % (DEV, uas.port)), rec
    assert admin_get(pbx, "/api/wakeups")["items"] == []


@pytest.mark.parametrize("provider", ["apns", "fcm"])
def test_b_cancel_before_wake(env, sipps, provider):
    pbx, sim = env()
    pn = pn_for(provider)
    background(sipps, pbx, pn)
    caller = call(sipps, pbx, "wake_call_cancel.xml")
    first, cid = held_call_id(pbx, sim, pn)
    # 180 (the push went out), CANCEL, 200, 487, ACK.
    caller.expect(0)
    missed = sim.wait_push(pn[1], kind="missed")[0]
    assert pcollapse(first) and pcollapse(missed) == pcollapse(first)
    assert pcall_id(missed) == cid
    if provider == "fcm":
        assert "collapse_key" in first["payload"]["message"]["android"]
        # No INVITE within SIPp's 4 s: it ends on its timeout (97); an
        # INVITE would fail its regexp check (1).
        uas, reg = wake(sipps, pbx, pn, "wake_no_invite.xml", timeout=4,
                        timeout_error=False)
        uas.expect(SIPP_RC_TIMEOUT)
        assert received(uas, "INVITE ") == []
    else:
        assert first["headers"]["apns-push-type"] == "voip"
        assert missed["headers"]["apns-push-type"] == "alert"
        assert "apns-collapse-id" in first["headers"]
        # The VoIP-woken phone gets the INVITE, then the CANCEL with
        # Reason SIP;cause=487 (the scenario checks it by regexp).
        uas, reg = wake(sipps, pbx, pn, "wake_cancelled.xml", timeout=10)
        uas.expect(0)
        got = [line for t, line in received(uas, "")
               if not line.startswith("SIP/2.0")]
        assert [g.split()[0] for g in got] == ["INVITE", "CANCEL", "ACK"], \
            uas.report()
        assert "Call-ID: %s" % cid in uas.messages()
    assert [ptype(p) for p in sim.pushes(pn[1])] == ["call", "missed"]


def test_c_challenged_woken_register_one_invite(env, sipps):
    """The woken REGISTER is challenged (401) and repeated 1 s later, and
    a second woken REGISTER (challenged too) refreshes the binding while
    the phone rings: the phone gets exactly one INVITE, and only once the
    authenticated REGISTER was sent."""
    pbx, sim = env()
    pn = pn_for("apns")
    background(sipps, pbx, pn)
    caller = call(sipps, pbx, "wake_call.xml")
    push, cid = held_call_id(pbx, sim, pn)
    uas, reg = wake(sipps, pbx, pn, "wake_answer_once.xml")
    refresh = woken_register(sipps, pbx, pn, uas)
    uas.expect(0)
    caller.expect(0)
    inv = received(uas, "INVITE ")
    assert len(inv) == 1, uas.report()
    # Not on the 401: the INVITE's Request-URI is the Contact of the
    # authenticated REGISTER (;try=2), the binding its 200 created; a
    # forward on the 401 could only have used the challenged one's
    # (;try=1). A causal fact: the SIPp processes' own timestamps have
    # no order between them (SIPp logs "sent" after the send returns, and
    # the INVITE can reach the other process first).
    challenged = received(reg, "SIP/2.0 401")
    sent = [line for t, d, line in trace(reg)
            if d == "sent" and line.startswith("REGISTER ")]
    assert len(challenged) == 1 and len(sent) == 2, reg.report()
    assert received(reg, "SIP/2.0 200"), reg.report()
    ruri = inv[0][1].split()[1]
    assert ruri.endswith(";try=2"), (inv, uas.report())
    # The refresh REGISTER went through while the phone was ringing: its
    # 200 came about 1 s after the INVITE (its own 401 and 1 s pause),
    # the phone answers 2 s after it, so the ACK follows by about 1 s, a
    # margin no scheduling delay on one machine comes near.
    assert received(refresh, "SIP/2.0 200"), refresh.report()
    assert received(refresh, "SIP/2.0 200")[0][0] < \
        received(uas, "ACK ")[0][0]
    assert [ptype(p) for p in sim.pushes(pn[1])].count("call") == 1
