"""[wake] end to end: pushpbx + pushsim + phones played by this harness.

Each test starts pushsim (APNs + FCM emulator, keys made with openssl) and
a pushpbx whose [apns]/[fcm] point at it, on 127.0.0.1 ephemeral ports.
Phones are small SIP user agents (wakeharness.Phone: UDP or TCP sockets,
digest auth, a thread that answers INVITE/CANCEL/BYE by policy): when
pushsim's control API reports a push for a token, the test "wakes" the
matching phone, which registers with that token and answers. These Python
phones check what SIPp cannot (exact INVITE counts in races, headers of
every request); test_wake_sipp.py runs the main flows with SIPp devices.
Ring time is short (8 s) and the grace time 500 ms so every test is
bounded. The harness (Sim, Phone, fixtures, constants) is wakeharness.py.

Needs pushsim built next to pushpbx (PUSHPBX_BUILD_DIR/src/pushsim).
"""
import re
import signal
import subprocess
import time

import pytest

from conftest import Pbx
from wakeharness import (ALERT, BUNDLE, PROJECT, RING_S, VOIP,
                         admin_get, apns_token, background, fcm_token,
                         free_port, hget, metric, pcall_id, pcollapse, ptype,
                         push_barrier, sipp_cmd, wait_until)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import env, keys, phones  # noqa: F401


# --- the twelve cases --------------------------------------------------------

def test_01_register_push_and_555(env, phones):
    pbx, sim = env(fcm=False)
    tok = apns_token()
    p = phones(pbx, "100")
    r = p.register(pn=("apns", tok, VOIP), instance="aaaa-1")
    assert r["status"] == 200, r["first"]
    assert 'Feature-Caps: *;+sip.pns="apns"' in r["raw"]
    regs = admin_get(pbx, "/api/registrations")
    item = [i for i in regs["items"] if i["number"] == "100"][0]
    assert len(item["bindings"]) == 1
    assert len(item["push"]) == 1
    assert item["push"][0]["provider"] == "apns"
    devs = admin_get(pbx, "/api/devices")["items"]
    assert [d["token_prefix"] for d in devs] == [tok[:8]]
    # fcm is not configured here: 555 and nothing stored.
    q = phones(pbx, "101")
    r = q.register(pn=("fcm", fcm_token(), PROJECT))
    assert r["status"] == 555, r["first"]
    assert len(admin_get(pbx, "/api/devices")["items"]) == 1
    regs = admin_get(pbx, "/api/registrations")
    item = [i for i in regs["items"] if i["number"] == "101"][0]
    assert item["bindings"] == []
    # Bad input: 400 with a reason; push disabled: plain binding.
    r = q.register(pn=("apns", "nothex", VOIP))
    assert r["status"] == 400 and "pn-prid" in r["first"], r["first"]
    r = q.register(pn=("apns", apns_token(), None))
    assert r["status"] == 400 and "pn-param" in r["first"], r["first"]
    d = phones(pbx, "109")
    r = d.register(pn=("apns", apns_token(), VOIP))
    assert r["status"] == 200 and "Feature-Caps" not in r["raw"]
    assert len(admin_get(pbx, "/api/devices")["items"]) == 1


def test_01b_device_survives_restart(env, phones):
    """The push device is committed before the 200: a restart right after
    the background REGISTER keeps it, and a call still pushes it."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    background(phones(pbx, "100"), pn)
    assert pbx.stop(sig=signal.SIGKILL) == -signal.SIGKILL
    pbx.exit_code = 0  # killed on purpose; the restarted one is checked
    (pbx.dir / "ready.json").unlink()
    again = Pbx(pbx.dir, pbx.conf.read_text())
    try:
        devs = admin_get(again, "/api/devices")["items"]
        assert [d["token_prefix"] for d in devs] == [pn[1][:8]]
        caller = phones(again, "101")
        call = caller.invite("100")
        sim.wait_push(pn[1])
        caller.cancel(call)
        assert caller.wait_final(call, 5)["status"] == 487
    finally:
        again.check_clean_exit()


def test_02_replace_and_max_two(env, phones):
    pbx, sim = env()
    t1, t2 = apns_token(), apns_token()
    a, b, caller = phones(pbx, "100"), phones(pbx, "100"), phones(pbx, "101")
    background(a, ("apns", t1, VOIP), instance="dev-a")
    background(b, ("apns", t2, VOIP), instance="dev-b")
    devs = admin_get(pbx, "/api/devices")["items"]
    assert [d["token_prefix"] for d in devs] == [t2[:8]]
    call = caller.invite("100")
    sim.wait_push(t2)
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    # The missed-call push left the push thread after any call push did.
    sim.wait_push(t2, kind="missed")
    assert sim.pushes(t1) == []


def test_02b_max_two_both_pushed(env, phones):
    pbx, sim = env(max100=2)
    t1, t2 = apns_token(), fcm_token()
    a, b, caller = phones(pbx, "100"), phones(pbx, "100"), phones(pbx, "101")
    background(a, ("apns", t1, VOIP), instance="dev-a")
    background(b, ("fcm", t2, PROJECT), instance="dev-b")
    call = caller.invite("100")
    sim.wait_push(t1)
    sim.wait_push(t2)
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487


def test_03_live_tcp_no_push(env, phones):
    pbx, sim = env()
    tok = fcm_token()
    dev = phones(pbx, "100", transport="tcp")
    assert dev.register(pn=("fcm", tok, PROJECT))["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    assert len(dev.invites_for(call)) == 1
    barrier = push_barrier(pbx, sim, phones, "fcm")
    assert [p for p in sim.pushes() if p["token"] != barrier] == []


@pytest.mark.parametrize("provider", ["apns", "fcm"])
def test_04_10_push_wake_answer(env, phones, provider):
    pbx, sim = env()
    pn = (("apns", apns_token(), VOIP) if provider == "apns"
          else ("fcm", fcm_token(), PROJECT))
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    t0 = time.time()
    call = caller.invite("100")
    push = sim.wait_push(pn[1])[0]
    assert ptype(push) == "call" and pcall_id(push) == call["call_id"]
    if provider == "apns":
        h = push["headers"]
        assert h["apns-push-type"] == "voip"
        assert h["apns-topic"] == BUNDLE + ".voip"
        assert h["apns-priority"] == "10"
        exp = int(h["apns-expiration"])
        assert t0 + RING_S - 2 <= exp <= time.time() + RING_S + 2
        assert push["payload"]["expires_at"] == exp
        assert push["payload"]["from"] == "101"
        assert push["payload"]["to"] == "100"
    else:
        msg = push["payload"]["message"]
        assert msg["android"]["priority"] == "HIGH"
        assert msg["android"]["ttl"].endswith("s")
        assert msg["data"]["caller"] == "101"
        assert msg["data"]["to"] == "100"
    assert pcollapse(push)
    assert dev.invites_for(call) == []
    wk = admin_get(pbx, "/api/wakeups")["items"]
    assert [(w["ext"], w["call_id"], w["devices"]) for w in wk] == \
        [("100", call["call_id"], 1)]
    assert metric(pbx, "pushpbx_pending_wakeups") == 1
    dev.register(pn=pn)
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    assert len(dev.invites_for(call)) == 1
    # The caller heard ringing (180) before the answer.
    assert caller.wait_call_status(call, lambda s: s == 180, 1)


@pytest.mark.parametrize("from_workers", [True, False])
def test_04d_push_sender(env, phones, from_workers):
    """[push] from_workers: the call's worker sends the push on its own
    client (yes), or the push thread does (no). Either way three calls
    push, wake and answer, and with the push thread every push shares one
    provider connection."""
    pbx, sim = env(fcm=False, from_workers=from_workers)
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    for i in range(3):
        call = caller.invite("100")
        push = sim.wait_push(pn[1], count=i + 1, kind="call")[i]
        assert ptype(push) == "call" and pcall_id(push) == call["call_id"]
        dev.register(pn=pn)
        final = caller.wait_final(call, 5)
        assert final is not None and final["status"] == 200, final
        background(dev, pn)
    conns = sim._req("/stats")["connections"]
    if from_workers:
        assert 1 <= conns <= 2, conns  # one per worker that pushed
    else:
        assert conns == 1, conns


def test_04c_sipp_device_woken(env, phones, tmp_path):
    """The same flow with SIPp as the woken phone: on the push it registers
    (401, credentials, Feature-Caps), then answers the held INVITE."""
    if not __import__("shutil").which("sipp"):
        pytest.fail("sipp not installed (scripts/install-deps)")
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    app, caller = phones(pbx, "100"), phones(pbx, "101")
    background(app, pn)
    call = caller.invite("100")
    sim.wait_push(pn[1])
    port = free_port()
    keys = {"ext": "100", "provider": pn[0], "prid": pn[1], "param": pn[2]}
    r = subprocess.run(sipp_cmd(pbx, "wake_register.xml", port, keys, 8) +
                       ["-au", "100", "-ap", "pw100"], cwd=str(tmp_path),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    uas = subprocess.Popen(sipp_cmd(pbx, "wake_answer.xml", port, keys, 8),
                           cwd=str(tmp_path), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    try:
        final = caller.wait_final(call, 6)
        assert final is not None and final["status"] == 200, final
        caller.ack2xx(call, final)
        out = uas.communicate(timeout=15)[0].decode(errors="replace")
        assert uas.returncode == 0, out
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()


def test_04b_180_when_push_sent(env, phones):
    """[push] ringing: the proxy answers 180 itself when the push goes out
    (no phone has the INVITE yet); its To tag is the proxy's one tag for
    this call, also on the final it generates (487 here)."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    sim.wait_push(pn[1])
    ring = caller.wait_call_status(call, lambda s: s == 180, 2)
    assert ring is not None
    assert dev.invites_for(call) == []
    tag = re.search(r";tag=([^;>\s]+)", hget(ring, "to"))
    assert tag, hget(ring, "to")
    caller.cancel(call)
    final = caller.wait_final(call, 5)
    assert final["status"] == 487
    # One 180 in all: the call's responses come in order, and the 487 is
    # the last one.
    assert len([m for m in caller.call_responses(call)
                if m["status"] == 180]) == 1
    assert ";tag=%s" % tag.group(1) in hget(final, "to")


@pytest.mark.parametrize("provider", ["apns", "fcm"])
def test_05_10_cancel_before_wake(env, phones, provider):
    pbx, sim = env()
    pn = (("apns", apns_token(), VOIP) if provider == "apns"
          else ("fcm", fcm_token(), PROJECT))
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    first = sim.wait_push(pn[1])[0]
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    missed = sim.wait_push(pn[1], kind="missed")[0]
    assert pcollapse(missed) == pcollapse(first)
    assert pcall_id(missed) == call["call_id"]
    if provider == "apns":
        # Not a second VoIP push: the missed call is an alert.
        assert missed["headers"]["apns-push-type"] == "alert"
        assert missed["headers"]["apns-topic"] == BUNDLE
    assert dev.register(pn=pn)["status"] == 200
    if provider == "fcm":
        # Rule 7 is for iOS VoIP pushes only: an FCM device gets nothing.
        # No sleep to see that: the daemon holds no wake-up for the call
        # (its state, read after the REGISTER's 200), so nothing can send
        # one, and the missed push was the last thing it did for it.
        assert admin_get(pbx, "/api/wakeups")["items"] == []
        assert dev.invites_for(call) == []
    else:
        # Rule 7: the INVITE, then the call is ended at once (CANCEL, or
        # BYE when this phone's 200 crossed our CANCEL).
        assert wait_until(lambda: dev.invites_for(call), 3)
        assert wait_until(lambda: dev.cancels_for(call) or
                          dev.requests_for(call, "BYE"), 3)
        # The wake-up is used up: no second INVITE can follow.
        assert wait_until(lambda: admin_get(pbx, "/api/wakeups")["items"]
                          == [], 3)
        assert len(dev.invites_for(call)) == 1


def test_05b_voip_woken_after_cancel_gets_invite_and_cancel(env, phones):
    """Rule 7: the VoIP-pushed phone registers after the caller cancelled:
    it gets the call's INVITE (same Call-ID, From the caller) and at once a
    CANCEL with Reason cause=487; one VoIP push only."""
    pbx, sim = env()
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100", on_invite="ring"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100", display="Alice")
    sim.wait_push(pn[1])
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    sim.wait_push(pn[1], kind="missed")
    assert dev.register(pn=pn)["status"] == 200
    inv = wait_until(lambda: dev.invites_for(call), 3)
    assert inv
    assert re.match(r'"Alice" <sip:101@', hget(inv[0], "from")), \
        hget(inv[0], "from")
    assert hget(inv[0], "to").startswith("<sip:100@")
    c = wait_until(lambda: dev.cancels_for(call), 3)
    assert c and hget(c[0], "reason") == 'SIP;cause=487;text="Call cancelled"'
    # The CANCEL matches the INVITE (same branch and CSeq number, §9.1).
    assert hget(c[0], "via") == hget(inv[0], "via")
    assert hget(c[0], "cseq").split()[0] == hget(inv[0], "cseq").split()[0]
    # Our side ACKs the phone's 487; the wake-up is used up, so no second
    # INVITE can follow.
    assert wait_until(lambda: dev.requests_for(call, "ACK"), 3)
    assert wait_until(lambda: admin_get(pbx, "/api/wakeups")["items"] == [],
                      3)
    assert len(dev.invites_for(call)) == 1
    assert [p["headers"]["apns-push-type"] for p in sim.pushes(pn[1])] == \
        ["voip", "alert"]


def test_05c_late_invite_answered_is_acked_and_byed(env, phones):
    """Rule 7, a phone that answers the late INVITE with 200 (no
    provisional, so no CANCEL can go): we ACK it and BYE it with the
    Reason."""
    pbx, sim = env()
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100", on_invite="pickup"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    sim.wait_push(pn[1])
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    assert dev.register(pn=pn)["status"] == 200
    assert wait_until(lambda: dev.invites_for(call), 3)
    ack = wait_until(lambda: dev.requests_for(call, "ACK"), 3)
    bye = wait_until(lambda: dev.requests_for(call, "BYE"), 3)
    assert ack and bye
    assert ack[0]["first"].startswith("ACK sip:100@127.0.0.1:%d" % dev.port)
    assert hget(ack[0], "cseq") == "1 ACK"
    assert hget(bye[0], "cseq") == "2 BYE"
    assert ";tag=%s" % dev.tag in hget(bye[0], "to")
    assert hget(bye[0], "reason") == 'SIP;cause=487;text="Call cancelled"'
    assert dev.cancels_for(call) == []
    # The BYE was answered (our phone says 200): no retransmissions. A
    # rule about timers (E would fire at 100, 300, 700 ms): no event says
    # it will not, so this waits past them.
    time.sleep(1.0)
    assert len(dev.requests_for(call, "BYE")) == 1


def test_06_answered_elsewhere(env, phones):
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    app = phones(pbx, "100")
    background(app, pn)
    desk = phones(pbx, "100", on_invite="silent")
    assert desk.register()["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    first = sim.wait_push(pn[1])[0]
    inv = wait_until(lambda: desk.invites_for(call), 3)
    assert inv
    desk.reply(inv[0], 200, "OK", desk.tag,
               "Contact: <sip:100@127.0.0.1:%d>\r\n" % desk.port)
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200
    ae = sim.wait_push(pn[1], kind="answered_elsewhere")[0]
    assert pcollapse(ae) == pcollapse(first)


def test_06b_voip_woken_after_answered_elsewhere(env, phones):
    """Rule 7 when a desk phone answered: the late CANCEL says
    cause=200 "Call completed elsewhere" so CallKit shows it that way."""
    pbx, sim = env()
    pn = ("apns", apns_token(), VOIP)
    app = phones(pbx, "100", on_invite="ring")
    background(app, pn)
    desk = phones(pbx, "100", on_invite="answer")
    assert desk.register()["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200
    caller.ack2xx(call, final)
    sim.wait_push(pn[1], kind="answered_elsewhere")
    assert app.register(pn=pn)["status"] == 200
    assert wait_until(lambda: app.invites_for(call), 3)
    c = wait_until(lambda: app.cancels_for(call), 3)
    assert c and hget(c[0], "reason") == \
        'SIP;cause=200;text="Call completed elsewhere"'


def test_07_no_answer_timeout_missed(env, phones):
    pbx, sim = env()
    pn = ("apns", apns_token(), ALERT)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    push = sim.wait_push(pn[1])[0]
    assert push["headers"]["apns-push-type"] == "alert"
    final = caller.wait_final(call, RING_S + 4)
    assert final is not None and final["status"] in (408, 480), final
    missed = sim.wait_push(pn[1], kind="missed", timeout=3)[0]
    assert pcollapse(missed) == pcollapse(push)


def test_08_dead_token_removes_device(env, phones):
    pbx, sim = env()
    tok = apns_token()
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, ("apns", tok, VOIP))
    sim.dead(tok)
    call = caller.invite("100")
    p = sim.wait_push(tok)[0]
    assert p["status"] == 410
    assert wait_until(lambda: admin_get(pbx, "/api/devices")["items"] == [],
                      5)
    pushes = admin_get(pbx, "/api/pushes")["items"]
    assert pushes and pushes[0]["status"] == "dead_token"
    assert pushes[0]["http_status"] == 410
    assert metric(pbx, 'pushpbx_pushes_dead_total{provider="apns"}') == 1
    caller.cancel(call)
    caller.wait_final(call, 5)


def test_09_retry_then_ring(env, phones):
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    sim.fault(provider="fcm", action="status", status=503, count=1)
    call = caller.invite("100")
    got = sim.wait_push(pn[1], count=2)
    assert [g["status"] for g in got[:2]] == [503, 200]
    dev.register(pn=pn)
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200


def test_11_challenged_register_one_invite(env, phones):
    pbx, sim = env()
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100", on_invite="ring"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    sim.wait_push(pn[1])
    # The challenged REGISTER's Contact is marked: an INVITE sent on the
    # 401 could only go to it (no sleep to see that none comes).
    c = dev.contact(pn)
    r = dev.register(contact=c[:-1] + ";try=1>", auth=False)
    assert r["status"] == 401
    assert dev.register(pn=pn)["status"] == 200
    inv = wait_until(lambda: dev.invites_for(call), 3)
    assert inv and ";try=1" not in inv[0]["first"], inv[0]["first"]
    dev.register(pn=pn)  # a refresh while ringing: no second INVITE
    # Barrier: the CANCEL comes from the call's worker after anything the
    # refresh made it send (the binding note was posted before the caller
    # sent the CANCEL), on the same socket, so in order.
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    assert wait_until(lambda: dev.cancels_for(call), 3)
    assert len(dev.invites_for(call)) == 1
    # One VoIP push for this call (then the missed-call alert).
    assert [ptype(p) for p in sim.pushes(pn[1])].count("call") == 1
    # A second call gets its own push.
    assert dev.register(pn=pn, expires=0)["status"] == 200
    call2 = caller.invite("100")
    got = sim.wait_push(pn[1], count=2, kind="call")
    assert pcall_id(got[1]) == call2["call_id"]
    caller.cancel(call2)
    caller.wait_final(call2, 5)


def test_12_udp_silent_pushed_after_grace(env, phones):
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    dev = phones(pbx, "100", on_invite="silent")
    assert dev.register(pn=pn)["status"] == 200
    caller = phones(pbx, "101")
    t0 = time.time()
    call = caller.invite("100")
    assert wait_until(lambda: dev.invites_for(call), 2)
    push = sim.wait_push(pn[1])[0]
    assert time.time() - t0 >= 0.45
    assert ptype(push) == "call"
    caller.cancel(call)
    caller.wait_final(call, 5)


def test_12b_udp_ringing_not_pushed(env, phones):
    """Rules 3 and 8: the app is awake on UDP and its branch rings within
    the grace time: no push now, and none (missed) when the call ends."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    dev = phones(pbx, "100", on_invite="ring")
    assert dev.register(pn=pn)["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    assert caller.wait_call_status(call, lambda s: s == 180, 2)
    # A rule about time: no push once the grace time (500 ms) is over,
    # so this one waits past it.
    time.sleep(1.0)
    assert len(dev.invites_for(call)) == 1
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    push_barrier(pbx, sim, phones, "fcm")
    assert sim.pushes(pn[1]) == []


def test_13_desk_busy_holds_call_for_woken_app(env, phones):
    """Holding: a desk phone answering 486 does not end the call while the
    app is being woken; the woken app answers it."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    app = phones(pbx, "100")
    background(app, pn)
    desk = phones(pbx, "100", on_invite="silent")
    assert desk.register()["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    sim.wait_push(pn[1])
    inv = wait_until(lambda: desk.invites_for(call), 3)
    assert inv
    desk.reply(inv[0], 486, "Busy Here", desk.tag)
    # The ACK shows the 486 was handled; the call is still held for the
    # app, and the caller got no final.
    assert wait_until(lambda: desk.requests_for(call, "ACK"), 3)
    wk = admin_get(pbx, "/api/wakeups")["items"]
    assert [w["call_id"] for w in wk] == [call["call_id"]]
    assert caller.wait_call_status(call, lambda s: s >= 200, 0.1) is None
    assert app.register(pn=pn)["status"] == 200
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    assert len(app.invites_for(call)) == 1
    caller.ack2xx(call, final)


def test_13b_desk_busy_then_app_declines_best_response(env, phones):
    """When every branch and every wake-up has ended the best response goes
    up (§16.7): desk 486 first, woken app 603 later -> 603."""
    pbx, sim = env()
    pn = ("fcm", fcm_token(), PROJECT)
    app = phones(pbx, "100", on_invite="silent")
    background(app, pn)
    desk = phones(pbx, "100", on_invite="silent")
    assert desk.register()["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    sim.wait_push(pn[1])
    inv = wait_until(lambda: desk.invites_for(call), 3)
    desk.reply(inv[0], 486, "Busy Here", desk.tag)
    assert wait_until(lambda: desk.requests_for(call, "ACK"), 3)
    assert caller.wait_call_status(call, lambda s: s >= 200, 0.1) is None
    assert app.register(pn=pn)["status"] == 200
    ainv = wait_until(lambda: app.invites_for(call), 3)
    assert ainv
    app.reply(ainv[0], 603, "Decline", app.tag)
    final = caller.wait_final(call, 3)
    assert final is not None and final["status"] == 603, final


def test_14_push_failed_ends_held_call_480(env, phones):
    """A push that fails for good (dead token) while nothing else rings
    ends the held call with 480 at once (RFC 8599 §5.6.2 step 5), not at
    the ring timeout; no missed push goes to the dead token."""
    pbx, sim = env()
    tok = apns_token()
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, ("apns", tok, VOIP))
    sim.dead(tok)
    t0 = time.time()
    call = caller.invite("100")
    final = caller.wait_final(call, RING_S - 3)
    assert final is not None and final["status"] == 480, final
    assert time.time() - t0 < 3
    push_barrier(pbx, sim, phones, "apns")
    assert [ptype(p) for p in sim.pushes(tok)] == ["call"]
    rec = [r for r in admin_get(pbx, "/api/pushes")["items"]
           if r.get("token_prefix") == tok[:8]]
    assert [r["status"] for r in rec] == ["dead_token"], rec


def test_14b_push_failed_waits_for_ringing_desk(env, phones):
    """A failed push does not end a call that still rings elsewhere: the
    desk's later 486 is the answer (best response, §16.7)."""
    pbx, sim = env()
    tok = apns_token()
    dev = phones(pbx, "100")
    background(dev, ("apns", tok, VOIP))
    desk = phones(pbx, "100", on_invite="silent")
    assert desk.register()["status"] == 200
    sim.dead(tok)
    caller = phones(pbx, "101")
    call = caller.invite("100")
    assert wait_until(lambda: [p for p in admin_get(pbx, "/api/pushes")
                               ["items"] if p["status"] == "dead_token"], 5)
    inv = wait_until(lambda: desk.invites_for(call), 3)
    # The failed push did not end the call. No event marks the worker's
    # handling of it (the /api/pushes record is written just before the
    # push thread tells the worker, and the wake-up stays for the ring
    # time), so this still gives it 0.5 s.
    time.sleep(0.5)
    assert caller.wait_call_status(call, lambda s: s >= 200, 0.1) is None
    desk.reply(inv[0], 486, "Busy Here", desk.tag)
    final = caller.wait_final(call, 3)
    assert final is not None and final["status"] == 486, final


def test_15_from_name_in_payload(env, phones):
    """The caller's From display name reaches the push payloads (APNs and
    FCM, call and missed), unquoted."""
    pbx, sim = env(max100=2)
    ta, tf = apns_token(), fcm_token()
    a, b = phones(pbx, "100"), phones(pbx, "100")
    background(a, ("apns", ta, ALERT), instance="dev-a")
    background(b, ("fcm", tf, PROJECT), instance="dev-b")
    caller = phones(pbx, "101")
    call = caller.invite("100", display='Alice \\"Al\\" Ex\u00e9mple')
    pa = sim.wait_push(ta)[0]
    pf = sim.wait_push(tf)[0]
    name = 'Alice "Al" Ex\u00e9mple'
    assert pa["payload"]["from_name"] == name
    assert pa["payload"]["aps"]["alert"]["body"] == name
    assert pf["payload"]["message"]["data"]["from_name"] == name
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    ma = sim.wait_push(ta, kind="missed")[0]
    assert ma["payload"]["from_name"] == name
    # No display name: the key is there, empty.
    call2 = caller.invite("100")
    p2 = sim.wait_push(tf, count=2, kind="call")[1]
    assert pcall_id(p2) == call2["call_id"]
    assert p2["payload"]["message"]["data"]["from_name"] == ""
    caller.cancel(call2)
    caller.wait_final(call2, 5)
