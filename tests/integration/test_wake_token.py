"""[wake] endings after a token rotation: they go to the device's current
token (docs/wake.md, "Endings").

An app woken for a call may register with a new pn-prid (same
+sip.instance, new Call-ID: liblinphone after a token rotation). pushpbx
replaces the push device; the missed / answered_elsewhere push of the call
must then go to the new token (the old one is dead at the provider after a
real rotation), and a device removed while the call rang gets none.

pushpbx + pushsim + phones played by wakeharness.Phone, on 127.0.0.1
ephemeral ports; pushsim's control API says which pushes arrived.
"""
import pytest

from wakeharness import (BUNDLE, PROJECT, VOIP, admin_get, apns_token,
                         background, fcm_token, hget, pcall_id, pcollapse,
                         ptype, wait_until)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import env, keys, phones  # noqa: F401

INSTANCE = "5f0c3e52-8a7b-4c1d-9e2f-0a1b2c3d4e5f"


def tokens(provider):
    """Two tokens of one app installation (before / after rotation)."""
    if provider == "apns":
        return ("apns", apns_token(), VOIP), ("apns", apns_token(), VOIP)
    return ("fcm", fcm_token(), PROJECT), ("fcm", fcm_token(), PROJECT)


def rotate_while_ringing(pbx, sim, phones, provider, desk_policy=None):
    """App in background with token A; a call pushes A; the woken app
    registers with token B (same instance, new Call-ID) and its branch
    rings. Returns (app, desk, caller, call, A, B, call push)."""
    a, b = tokens(provider)
    app = phones(pbx, "100", on_invite="ring")
    background(app, a, instance=INSTANCE)
    desk = None
    if desk_policy:
        desk = phones(pbx, "100", on_invite=desk_policy)
        assert desk.register()["status"] == 200
    caller = phones(pbx, "101")
    call = caller.invite("100")
    push = sim.wait_push(a[1], kind="call")[0]
    assert pcall_id(push) == call["call_id"]
    r = app.register(pn=b, instance=INSTANCE, new_call_id=True)
    assert r["status"] == 200, r["first"]
    devs = admin_get(pbx, "/api/devices")["items"]
    assert [d["token_prefix"] for d in devs] == [b[1][:8]]  # replaced
    assert wait_until(lambda: app.invites_for(call), 3)
    assert caller.wait_call_status(call, lambda s: s == 180, 3)
    return app, desk, caller, call, a, b, push


@pytest.mark.parametrize("provider", ["apns", "fcm"])
def test_missed_goes_to_rotated_token(env, phones, provider):
    pbx, sim = env()
    app, _, caller, call, a, b, push = rotate_while_ringing(
        pbx, sim, phones, provider)
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    missed = sim.wait_push(b[1], kind="missed")[0]
    assert pcall_id(missed) == call["call_id"]
    assert pcollapse(missed) == pcollapse(push)
    if provider == "apns":
        # An alert, not a second VoIP push for the call.
        assert missed["headers"]["apns-push-type"] == "alert"
        assert missed["headers"]["apns-topic"] == BUNDLE
    # One ending push per device, and it went to B: A has only the call
    # push, B only the missed one (no "call" push because it looks new).
    assert [ptype(p) for p in sim.pushes(a[1])] == ["call"]
    assert [ptype(p) for p in sim.pushes(b[1])] == ["missed"]
    # The woken app got the INVITE once and its CANCEL.
    assert len(app.invites_for(call)) == 1
    assert wait_until(lambda: app.cancels_for(call), 3)


def test_answered_elsewhere_goes_to_rotated_token(env, phones):
    pbx, sim = env()
    app, desk, caller, call, a, b, push = rotate_while_ringing(
        pbx, sim, phones, "apns", desk_policy="silent")
    inv = wait_until(lambda: desk.invites_for(call), 3)
    assert inv
    desk.reply(inv[0], 200, "OK", desk.tag,
               "Contact: <sip:100@127.0.0.1:%d>\r\n" % desk.port)
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    caller.ack2xx(call, final)
    ae = sim.wait_push(b[1], kind="answered_elsewhere")[0]
    assert pcall_id(ae) == call["call_id"]
    assert pcollapse(ae) == pcollapse(push)
    assert [ptype(p) for p in sim.pushes(a[1])] == ["call"]
    assert [ptype(p) for p in sim.pushes(b[1])] == ["answered_elsewhere"]
    # The app's ringing branch was cancelled as completed elsewhere.
    c = wait_until(lambda: app.cancels_for(call), 3)
    assert c and "cause=200" in (hget(c[0], "reason") or "")


def test_signed_out_while_ringing_gets_no_missed_push(env, phones):
    """The device is removed while the call rings (Contact: *, Expires:
    0): the caller's cancel sends no missed push to its old token, and
    pushpbx says so in its log."""
    pbx, sim = env()
    a, _ = tokens("fcm")
    app = phones(pbx, "100")
    background(app, a, instance=INSTANCE)
    caller = phones(pbx, "101")
    call = caller.invite("100")
    sim.wait_push(a[1], kind="call")
    r = app.register(contact="*", expires=0)
    assert r["status"] == 200, r["first"]
    assert admin_get(pbx, "/api/devices")["items"] == []
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    line = "no missed push, device gone call_id=%s" % call["call_id"]
    assert wait_until(lambda: line in pbx.stderr(), 5), pbx.stderr()[-2000:]
    assert [ptype(p) for p in sim.pushes(a[1])] == ["call"]


def test_rule7_woken_with_rotated_token(env, phones):
    """Rule 7 still matches by +sip.instance: the VoIP-pushed app wakes
    after the cancel with a new token; it gets the INVITE and the CANCEL,
    and the new token gets no push at all."""
    pbx, sim = env()
    a, b = tokens("apns")
    app = phones(pbx, "100", on_invite="ring")
    background(app, a, instance=INSTANCE)
    caller = phones(pbx, "101")
    call = caller.invite("100")
    sim.wait_push(a[1], kind="call")
    caller.cancel(call)
    assert caller.wait_final(call, 5)["status"] == 487
    # The device had not changed yet: the missed push goes to A.
    sim.wait_push(a[1], kind="missed")
    r = app.register(pn=b, instance=INSTANCE, new_call_id=True)
    assert r["status"] == 200, r["first"]
    assert wait_until(lambda: app.invites_for(call), 3)
    c = wait_until(lambda: app.cancels_for(call), 3)
    assert c and hget(c[0], "reason") == 'SIP;cause=487;text="Call cancelled"'
    assert wait_until(lambda: app.requests_for(call, "ACK"), 3)
    assert len(app.invites_for(call)) == 1
    assert sim.pushes(b[1]) == []
    assert [p["headers"]["apns-push-type"] for p in sim.pushes(a[1])] == \
        ["voip", "alert"]
