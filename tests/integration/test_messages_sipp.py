"""[messages] MESSAGE store and forward with SIPp peers.

The app (extension 100) registers with RFC 8599 push parameters and goes
to background (wake_background.xml); SIPp sends a MESSAGE from 101
(msg_uac.xml: 407, credentials, 202 Accepted); pushsim gets the `message`
push; the harness plays the phone's OS: the woken phone is msg_uas.xml
listening on a port, and wake_woken.xml registers naming that port, so the
stored MESSAGE reaches msg_uas.xml, which checks the body and answers 200.
The Python-phone cases (order, restart, TTL, limits, isComposing) are in
test_messages.py.
"""
import pytest

from wakeharness import (PROJECT, VOIP, admin_get, apns_token, fcm_token,
                         metric, pn_keys, wait_until)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import env, keys, sipps  # noqa: F401

DEV, SENDER = "100", "101"


@pytest.mark.parametrize("provider", ["apns", "fcm"])
def test_sipp_message_to_sleeping_app(env, sipps, provider):
    pbx, sim = env()
    pn = (("apns", apns_token(), VOIP) if provider == "apns"
          else ("fcm", fcm_token(), PROJECT))
    sipps(pbx, "wake_background.xml", keys=pn_keys(DEV, pn),
          auth=(DEV, "pw" + DEV)).expect(0)
    sipps(pbx, "msg_uac.xml", keys={"caller": SENDER, "callee": DEV},
          auth=(SENDER, "pw" + SENDER)).expect(0)
    push = sim.wait_push(pn[1], kind="message")[0]
    assert "hello from SIPp" in str(push["payload"])
    assert [x["count"] for x in
            admin_get(pbx, "/api/messages")["items"]] == [1]
    uas = sipps(pbx, "msg_uas.xml", keys={"ext": DEV}, timeout=15)
    sipps(pbx, "wake_woken.xml", keys=dict(pn_keys(DEV, pn),
                                           cport=str(uas.port)),
          auth=(DEV, "pw" + DEV)).expect(0)
    uas.expect(0)
    assert wait_until(
        lambda: metric(pbx, "pushpbx_messages_delivered_total") == 1, 5)
    assert admin_get(pbx, "/api/messages")["items"] == []
