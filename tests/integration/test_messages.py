"""[messages] the SIP side: MESSAGE store and forward (docs/messages.md).

pushpbx + pushsim as in test_wake.py. The sender is extension 101 (a
Python phone answering the 407 with digest credentials; test_messages_sipp
in test_messages_sipp.py sends with SIPp), the phone is extension 100, a
Python phone registering with pn-* params (wakeharness.Phone answers every
MESSAGE it gets with on_message, 200 by default):

  - a live binding gets the MESSAGE (no push, nothing stored);
  - a sleeping app (background: no binding): 202 once stored, a `message`
    push with the preview, and after the woken REGISTER the MESSAGE with
    the Call-ID, CSeq, From and body it was sent with; removed after 200;
  - three messages then the wake: delivered in order, one at a time;
  - a failed delivery keeps the message for the next REGISTER;
  - [push] message_preview = no: no text in the push;
  - kill -9 after the 202, restart: the woken app still gets it;
  - TTL: a message expired while the daemon was down is not delivered;
  - limits: 413, 415, max_per_extension (oldest dropped, sender still 202);
  - isComposing: relayed to a live binding, else 480, never stored/pushed;
  - 407 without / with wrong credentials, 404 for an unknown extension;
  - a live UDP binding that answers 480 (the app is not taking it): stored.
"""
import json
import signal
import sqlite3
import time

import pytest

from conftest import Pbx
from wakeharness import (CONF, KID, PROJECT, RING_S, TEAM, BUNDLE, VOIP,
                         Sim, admin_get, apns_token, background, fcm_token,
                         hget, metric, ptype, require_pushsim, wait_until)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import keys, phones  # noqa: F401

DEV, SENDER = "100", "101"


@pytest.fixture
def menv(keys, tmp_path):
    """menv(sets=()) -> (pbx, sim, restart); restart(kill=False) stops the
    daemon (SIGKILL when kill) and starts it again on the same store."""
    require_pushsim()
    made = []

    def make(sets=(), extra=""):
        d = tmp_path / ("run%d" % len(made))
        d.mkdir()
        sim = Sim(keys, d)
        text = CONF.format(workers=2, ring=RING_S, apns="yes", fcm="yes",
                           url=sim.url, key=keys / "apns.p8", kid=KID,
                           team=TEAM, bundle=BUNDLE, ca=sim.ca, sa=sim.sa,
                           max100=1) + extra
        pbx = Pbx(d, text, sets=sets)
        entry = {"pbx": pbx, "sim": sim, "killed": []}
        made.append(entry)

        def restart(kill=False):
            old = entry["pbx"]
            if kill:
                old.stop(sig=signal.SIGKILL)
                entry["killed"].append(old)
            else:
                old.check_clean_exit()
            (d / "ready.json").unlink()  # else the old run's is read
            entry["pbx"] = Pbx(d, text, sets=sets)
            return entry["pbx"]
        return pbx, sim, restart

    yield make
    for e in made:
        try:
            e["pbx"].check_clean_exit()
        finally:
            e["sim"].stop()


def pn_apns():
    return ("apns", apns_token(), VOIP)


def payload(push):
    """The message object (APNs body, or FCM data)."""
    pl = push["payload"]
    if push["provider"] == "apns":
        return pl
    return pl["message"]["data"]


def stored(pbx):
    return admin_get(pbx, "/api/messages")["items"]


def sender_of(phones, pbx, **kw):
    return phones(pbx, SENDER, **kw)


def test_live_binding_gets_it_no_push(menv, phones):
    pbx, sim, _ = menv()
    dev = phones(pbx, DEV)
    assert dev.register()["status"] == 200
    r = sender_of(phones, pbx).message(DEV, "hello live")
    assert r["status"] == 200, r["first"]
    m = dev.wait_messages(1)[0]
    assert m["body"] == "hello live"
    assert stored(pbx) == []
    assert metric(pbx, "pushpbx_messages_stored_total") == 0
    assert sim.pushes() == []


@pytest.mark.parametrize("provider", ["apns", "fcm"])
def test_sleeping_app_202_push_and_delivery(menv, phones, provider):
    pbx, sim, _ = menv()
    pn = pn_apns() if provider == "apns" else ("fcm", fcm_token(), PROJECT)
    dev = phones(pbx, DEV)
    background(dev, pn)
    snd = sender_of(phones, pbx)
    r = snd.message(DEV, "running late", display="Bob", call_id="cid-1")
    assert r["status"] == 202, r["first"]
    push = sim.wait_push(pn[1], kind="message")[0]
    pl = payload(push)
    assert pl["preview"] == "running late"
    assert pl.get("from", pl.get("caller")) == SENDER and pl["to"] == DEV
    assert pl["content_type"] == "text/plain"
    if provider == "apns":
        # An alert on the bundle topic, never a VoIP push.
        assert push["headers"]["apns-push-type"] == "alert"
        assert push["headers"]["apns-topic"] == BUNDLE
        assert pl["aps"]["alert"]["title"] == "Bob"
        assert pl["aps"]["mutable-content"] == 1
    assert [x["count"] for x in stored(pbx)] == [1]
    assert metric(pbx, "pushpbx_messages_pushed_total") == 1
    # The woken app registers: the MESSAGE as sent (Call-ID, CSeq, From).
    assert dev.register(pn=pn)["status"] == 200
    m = dev.wait_messages(1)[0]
    assert m["body"] == "running late"
    assert hget(m, "call-id") == "cid-1"
    assert hget(m, "cseq") == hget(r, "cseq")
    assert "sip:%s@test.local" % SENDER in hget(m, "from")
    assert '"Bob"' in hget(m, "from")
    assert hget(m, "content-type") == "text/plain"
    assert int(pl["message_id"]) > 0
    assert wait_until(
        lambda: metric(pbx, "pushpbx_messages_delivered_total") == 1, 5)
    assert wait_until(lambda: stored(pbx) == [], 5)


def test_three_messages_delivered_in_order(menv, phones):
    pbx, sim, _ = menv()
    pn = pn_apns()
    dev = phones(pbx, DEV)
    background(dev, pn)
    snd = sender_of(phones, pbx)
    for i in range(3):
        r = snd.message(DEV, "msg %d" % i, call_id="order-%d" % i)
        assert r["status"] == 202, r["first"]
    pushes = sim.wait_push(pn[1], count=3, kind="message")
    # One conversation: one collapse id for the three.
    assert len({p["headers"]["apns-collapse-id"] for p in pushes}) == 1
    assert dev.register(pn=pn)["status"] == 200
    got = dev.wait_messages(3)
    assert [m["body"] for m in got] == ["msg 0", "msg 1", "msg 2"]
    assert [hget(m, "call-id") for m in got] == ["order-0", "order-1",
                                                 "order-2"]
    assert wait_until(lambda: stored(pbx) == [], 5)
    assert metric(pbx, "pushpbx_messages_delivered_total") == 3


def test_failed_delivery_keeps_it_for_next_register(menv, phones):
    pbx, sim, _ = menv()
    pn = pn_apns()
    dev = phones(pbx, DEV, on_message=500)
    background(dev, pn)
    assert sender_of(phones, pbx).message(DEV, "keep me")["status"] == 202
    sim.wait_push(pn[1], kind="message")
    assert dev.register(pn=pn)["status"] == 200
    dev.wait_messages(1)
    assert pbx.wait_log("not delivered, kept")
    assert [x["count"] for x in stored(pbx)] == [1]
    dev.on_message = 200
    assert dev.register(pn=pn)["status"] == 200
    got = dev.wait_messages(2)
    assert got[1]["body"] == "keep me"
    assert wait_until(lambda: stored(pbx) == [], 5)


def test_preview_off(menv, phones):
    pbx, sim, _ = menv(sets=["push.message_preview=no"])
    pn = pn_apns()
    dev = phones(pbx, DEV)
    background(dev, pn)
    assert sender_of(phones, pbx).message(DEV, "top secret")["status"] == 202
    push = sim.wait_push(pn[1], kind="message")[0]
    assert "top secret" not in json.dumps(push)
    assert payload(push)["preview"] == ""
    assert payload(push)["aps"]["alert"]["body"] == "New message"


def test_restart_between_store_and_wake(menv, phones):
    pbx, sim, restart = menv()
    pn = pn_apns()
    dev = phones(pbx, DEV)
    background(dev, pn)
    r = sender_of(phones, pbx).message(DEV, "survives", call_id="crash-1")
    assert r["status"] == 202
    pbx = restart(kill=True)  # committed before the 202: not lost
    assert [x["count"] for x in stored(pbx)] == [1]
    dev.pbx = pbx
    assert dev.register(pn=pn)["status"] == 200
    m = dev.wait_messages(1)[0]
    assert m["body"] == "survives" and hget(m, "call-id") == "crash-1"


def test_ttl_expired_not_delivered(menv, phones):
    pbx, sim, restart = menv()
    pn = pn_apns()
    dev = phones(pbx, DEV)
    background(dev, pn)
    assert sender_of(phones, pbx).message(DEV, "too old")["status"] == 202
    pbx.check_clean_exit()
    con = sqlite3.connect(str(pbx.dir / "pbx.db"))
    with con:
        con.execute("UPDATE messages SET expires_at = ?",
                    (int(time.time()) - 1,))
    con.close()
    pbx = restart()
    dev.pbx = pbx
    assert stored(pbx) == []
    assert dev.register(pn=pn)["status"] == 200
    # Barrier: a new message to the live binding arrives, and it is the
    # first MESSAGE the phone gets.
    snd = sender_of(phones, pbx)
    assert snd.message(DEV, "fresh")["status"] == 200
    assert [m["body"] for m in dev.wait_messages(1)] == ["fresh"]
    assert len(dev.messages) == 1


def test_limits(menv, phones):
    pbx, sim, _ = menv(sets=["messages.max_bytes=100",
                             "messages.max_per_extension=2"])
    pn = pn_apns()
    dev = phones(pbx, DEV)
    background(dev, pn)
    snd = sender_of(phones, pbx)
    assert snd.message(DEV, "x" * 101)["status"] == 413
    assert snd.message(DEV, "hi", ctype="application/x-foo")["status"] == 415
    for i in range(3):
        assert snd.message(DEV, "cap %d" % i)["status"] == 202
    assert [x["count"] for x in stored(pbx)] == [2]
    assert metric(pbx, "pushpbx_messages_dropped_total") == 1
    assert dev.register(pn=pn)["status"] == 200
    assert [m["body"] for m in dev.wait_messages(2)] == ["cap 1", "cap 2"]


COMPOSING = ('<?xml version="1.0"?><isComposing xmlns="urn:ietf:params:xml:'
             'ns:im-iscomposing"><state>active</state></isComposing>')


def test_is_composing_never_stored_nor_pushed(menv, phones):
    pbx, sim, _ = menv()
    pn = pn_apns()
    dev = phones(pbx, DEV)
    background(dev, pn)
    snd = sender_of(phones, pbx)
    r = snd.message(DEV, COMPOSING, ctype="application/im-iscomposing+xml")
    assert r["status"] == 480, r["first"]
    assert stored(pbx) == []
    # Barrier: the next real message's push is the first message push.
    assert snd.message(DEV, "real")["status"] == 202
    pushes = sim.wait_push(pn[1], kind="message")
    assert [payload(p)["preview"] for p in pushes] == ["real"]
    assert len(sim.pushes(pn[1])) == 1
    # To a live binding it is relayed (and still not stored).
    assert dev.register(pn=pn)["status"] == 200
    dev.wait_messages(1)
    r = snd.message(DEV, COMPOSING, ctype="application/im-iscomposing+xml")
    assert r["status"] == 200
    got = dev.wait_messages(2)
    assert hget(got[1], "content-type") == "application/im-iscomposing+xml"
    assert wait_until(lambda: stored(pbx) == [], 5)


def test_auth_and_unknown_extension(menv, phones):
    pbx, sim, _ = menv()
    snd = sender_of(phones, pbx)
    r = snd.message(DEV, "no creds", auth=False)
    assert r["status"] == 407
    r = snd.message(DEV, "bad creds", password="wrong")
    assert r["status"] in (403, 407), r["first"]
    r = snd.message("555", "nobody")
    assert r["status"] == 404
    assert stored(pbx) == []
    assert metric(pbx, "pushpbx_messages_stored_total") == 0


def test_live_udp_binding_refusing_480_stores(menv, phones):
    pbx, sim, _ = menv()
    pn = pn_apns()
    dev = phones(pbx, DEV, on_message=480)
    assert dev.register(pn=pn)["status"] == 200
    r = sender_of(phones, pbx).message(DEV, "are you there")
    assert r["status"] == 202, r["first"]
    sim.wait_push(pn[1], kind="message")
    assert [x["count"] for x in stored(pbx)] == [1]


def test_live_udp_binding_silent_stored_after_grace(menv, phones):
    """A suspended app's UDP binding never answers: after the grace (3 s,
    well before Timer F) the message is stored, 202, pushed."""
    pbx, sim, _ = menv()
    pn = pn_apns()
    dev = phones(pbx, DEV, on_message=None)
    assert dev.register(pn=pn)["status"] == 200
    t0 = time.monotonic()
    r = sender_of(phones, pbx).message(DEV, "wake up")
    waited = time.monotonic() - t0
    assert r["status"] == 202, r["first"]
    assert 2.5 <= waited < 6.0, waited
    assert dev.messages, "the live binding was tried first"
    sim.wait_push(pn[1], kind="message")
    assert [x["count"] for x in stored(pbx)] == [1]
