"""The admin API, page data and pushpbxctl with push, calls and the push
check wired in: pushpbx + pushsim (APNs and FCM emulator), phones played
by wakeharness.Phone (UDP SIP user agents with digest auth).

Covers: push devices with provider, token prefix and state; recent calls
with their outcome (a real call); the test push through the daemon
(pushpbxctl push test); the provisioning document's push settings; call
counters on /metrics; the authenticated push check (pushpbx --check-push,
POST /api/push/check, pushpbxctl check) against pushsim, good and bad
credentials.
"""
import json
import os
import subprocess
import time

import pytest

from conftest import sanitizer_report
from wakeharness import (BUNDLE, PROJECT, PUSHSIM, VOIP, admin_get,
                         apns_token, background, fcm_token, wait_until)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import env, keys, phones  # noqa: F401

BUILD = os.environ.get("PUSHPBX_BUILD_DIR", "")
CTL = os.path.join(BUILD, "src", "ctl", "pushpbxctl")
BIN = os.environ.get("PUSHPBX_BIN", "")
TOKEN = "wake-test-token-0123456789"  # wakeharness.CONF [admin] token

@pytest.fixture(autouse=True)
def _pushsim_built():
    """A missing pushsim fails each test (never a skip)."""
    if not os.path.exists(PUSHSIM):
        pytest.fail("pushsim not built: %s" % PUSHSIM)


def ctl(pbx, *args, timeout=60):
    r = subprocess.run([CTL, "--url", "http://127.0.0.1:%d" %
                        pbx.info["admin_port"], "--token", TOKEN] +
                       list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def admin_post(pbx, path):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (pbx.info["admin_port"], path), data=b"",
        method="POST", headers={"authorization": "Bearer " + TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=40) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def ext_devices(pbx, ext):
    regs = admin_get(pbx, "/api/registrations")
    assert regs["push_available"] is True
    return [i for i in regs["items"] if i["number"] == ext][0]["push"]


def test_devices_listed_with_provider_prefix_state(env, phones):
    pbx, sim = env()
    tok, ftok = apns_token(), fcm_token()
    p = phones(pbx, "100")
    r = p.register(pn=("apns", tok, VOIP), instance="adm-1")
    assert r["status"] == 200, r["first"]
    # registered and reachable: no push would be sent
    devs = ext_devices(pbx, "100")
    assert [(d["provider"], d["token_prefix"], d["state"]) for d in devs] == \
        [("apns", tok[:8], "suppressed: registration live")]
    assert devs[0]["param"] == VOIP and "token" not in devs[0]
    # the app goes to background (Expires: 0): push active
    r = p.register(pn=("apns", tok, VOIP), instance="adm-1", expires=0)
    assert r["status"] == 200, r["first"]
    devs = ext_devices(pbx, "100")
    assert [(d["provider"], d["state"]) for d in devs] == \
        [("apns", "push active")]
    background(phones(pbx, "101"), ("fcm", ftok, PROJECT))
    all_ = admin_get(pbx, "/api/devices")
    assert all_["available"] is True
    assert sorted((d["ext"], d["provider"], d["token_prefix"])
                  for d in all_["items"]) == \
        [("100", "apns", tok[:8]), ("101", "fcm", ftok[:8])]
    # whole tokens never leave the admin
    text = json.dumps(admin_get(pbx, "/api/registrations")) + \
        json.dumps(all_)
    assert tok not in text and ftok not in text
    rc, out, err = ctl(pbx, "reg", "list")
    assert rc == 0, err
    assert "push apns %s... push active" % tok[:8] in out, out
    assert "push fcm %s... push active" % ftok[:8] in out, out
    assert "not available" not in out


def test_push_test_through_daemon(env, phones):
    pbx, sim = env()
    tok = apns_token()
    background(phones(pbx, "100"), ("apns", tok, VOIP))
    rc, out, err = ctl(pbx, "push", "test", "100")
    assert rc == 0, err
    assert out.startswith("test push: delivered"), out
    assert "apns  %s... delivered" % tok[:8] in out and "HTTP 200" in out
    push = sim.wait_push(tok)[0]
    assert push["payload"]["type"] == "missed"
    assert push["payload"]["from"] == "pushpbx"
    # a "missed" push is an alert (no VoIP push without a call to report)
    assert push["headers"]["apns-topic"] == BUNDLE
    # --json carries the per-device result
    rc, out, _ = ctl(pbx, "--json", "push", "test", "100")
    j = json.loads(out)
    assert j["status"] == "delivered" and j["ext"] == "100"
    assert j["devices"][0]["http_status"] == 200
    # the app was uninstalled: the provider says so, the device goes
    sim.dead(tok)
    rc, out, err = ctl(pbx, "push", "test", "100")
    assert rc == 0, err
    assert "dead_token" in out and "HTTP 410" in out, out
    assert ext_devices(pbx, "100") == []
    rc, out, err = ctl(pbx, "push", "test", "100")
    assert rc == 5 and "no push device" in err


def test_recent_calls_listed_with_outcome(env, phones):
    pbx, sim = env()
    callee = phones(pbx, "101")             # answers
    assert callee.register()["status"] == 200
    caller = phones(pbx, "100")
    call = caller.invite("101")
    ok = caller.wait_final(call, 5)
    assert ok is not None and ok["status"] == 200, ok
    caller.ack2xx(call, ok)
    # 102 has no binding and no push device: 480
    missed = caller.invite("102")
    fin = caller.wait_final(missed, 5)
    assert fin is not None and fin["status"] == 480, fin

    calls = wait_until(lambda: len(admin_get(pbx, "/api/calls")["items"])
                       == 2 and admin_get(pbx, "/api/calls"), 5)
    assert calls and calls["available"] is True
    newest, first = calls["items"]
    assert (first["call_id"], first["from"], first["to"]) == \
        (call["call_id"], "100", "101")
    assert first["outcome"] == "answered" and first["status"] == 200
    assert first["result"] == "answered 200" and first["state"] == "ended"
    assert first["answered_by"].startswith("sip:101@127.0.0.1:")
    assert first["started_at"] <= first["ended_at"] <= time.time() + 1
    assert (newest["call_id"], newest["to"], newest["result"]) == \
        (missed["call_id"], "102", "unavailable 480")
    assert newest["id"] > first["id"]

    rc, out, err = ctl(pbx, "calls")
    assert rc == 0, err
    rows = out.splitlines()
    assert rows[0].split()[:4] == ["TIME", "FROM", "TO", "RESULT"]
    assert "100" in rows[2] and "101" in rows[2] and "answered 200" in rows[2]
    assert call["call_id"] in rows[2]
    assert "unavailable 480" in rows[1] and missed["call_id"] in rows[1]

    m = admin_get(pbx, "/metrics", raw=True)
    vals = dict(l.rsplit(" ", 1) for l in m.splitlines()
                if l and not l.startswith("#"))
    assert float(vals["pushpbx_calls_total"]) == 2
    assert float(vals["pushpbx_calls_answered_total"]) == 1
    assert float(vals["pushpbx_calls_active"]) == 0
    # two INVITEs, each sent twice (407 challenge), one ACK for the 407s
    # each, and the 2xx ACK
    assert float(vals['pushpbx_sip_messages_total{method="INVITE"}']) == 4
    assert float(vals['pushpbx_sip_messages_total{method="ACK"}']) >= 3


def test_provisioning_carries_push_settings(env, phones):
    pbx, sim = env()
    st, link = admin_post(pbx, "/api/extensions/100/prov")
    assert st == 201
    doc = admin_get(pbx, "/prov/" + link["url"].rsplit("/", 1)[1])
    push = doc["push"]
    assert push["providers"] == ["apns", "fcm"]
    assert push["apns"] == {"configured": True, "environment": "production",
                            "topic": BUNDLE}
    # a service account has no project number: no sender id then
    assert push["fcm"] == {"configured": True, "project_id": PROJECT}


def test_provisioning_apns_only(env, phones):
    pbx, sim = env(fcm=False)
    st, link = admin_post(pbx, "/api/extensions/100/prov")
    doc = admin_get(pbx, "/prov/" + link["url"].rsplit("/", 1)[1])
    assert doc["push"]["providers"] == ["apns"]
    assert doc["push"]["apns"]["configured"] is True
    assert doc["push"]["fcm"]["configured"] is False
    assert "FCM is not configured" in doc["push"]["fcm"]["reason"]


def test_provisioning_sandbox_and_sender_id(env, phones):
    """[apns] sandbox = yes with an emulator base_url: sandbox; an FCM
    file carrying project_number gives the sender id."""
    pbx, sim = env()
    conf = pbx.conf.read_text()
    pbx.check_clean_exit()
    sa = json.loads(sim.sa.read_text())
    sa["project_number"] = "123456789012"
    f = pbx.dir / "sa2.json"
    f.write_text(json.dumps(sa))
    from conftest import Pbx
    (pbx.dir / "ready.json").unlink()
    again = Pbx(pbx.dir, conf.replace("[apns]\n", "[apns]\nsandbox = yes\n")
                .replace(str(sim.sa), str(f)))
    try:
        st, link = admin_post(again, "/api/extensions/100/prov")
        doc = admin_get(again, "/prov/" + link["url"].rsplit("/", 1)[1])
        assert doc["push"]["apns"]["environment"] == "sandbox"
        assert doc["push"]["fcm"] == {"configured": True,
                                      "project_id": PROJECT,
                                      "sender_id": "123456789012"}
    finally:
        again.check_clean_exit()


def check_push(conf_path, cwd):
    r = subprocess.run([BIN, "--config", str(conf_path), "--check-push"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60, cwd=str(cwd))
    err = r.stderr.decode()
    assert not sanitizer_report(err), err
    return r.returncode, r.stdout.decode()


def test_check_push_good_and_bad_credentials(env, keys, tmp_path):
    pbx, sim = env()
    conf = pbx.conf.read_text()
    rc, out = check_push(pbx.conf, pbx.dir)
    assert rc == 0, out
    assert "ok    jwt: credentials accepted" in out, out
    assert "ok    push: OAuth access token obtained" in out, out
    assert "push credentials accepted" in out

    # the same through the daemon: POST /api/push/check, pushpbxctl check
    st, j = admin_post(pbx, "/api/push/check")
    assert st == 200 and j["ok"] is True, j
    assert [(i["provider"], i["ok"]) for i in j["items"]] == \
        [("apns", True), ("fcm", True)]
    rc, out, err = ctl(pbx, "check", "--cacert", str(sim.ca))
    assert rc == 0, out + err
    assert "ok    tls" in out and "ok    apns jwt" in out
    assert "ok    fcm push" in out
    assert "credentials accepted" in out

    # a key pushsim does not know, an account whose key is not the one
    # pushsim has: both refused, firewall rules printed, exit 8
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out",
                    str(tmp_path / "other.p8")], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out",
                    str(tmp_path / "other-rsa.pem")], check=True,
                   capture_output=True)
    sa = json.loads(sim.sa.read_text())
    sa["private_key"] = (tmp_path / "other-rsa.pem").read_text()
    (tmp_path / "bad-sa.json").write_text(json.dumps(sa))
    bad = tmp_path / "bad.conf"
    bad.write_text(conf.replace(str(keys / "apns.p8"),
                                str(tmp_path / "other.p8"))
                   .replace(str(sim.sa), str(tmp_path / "bad-sa.json")))
    rc, out = check_push(bad, pbx.dir)
    assert rc == 8, out
    assert "FAIL  jwt: APNs refused the credentials (HTTP 403" in out, out
    assert "FAIL  oauth: no OAuth access token" in out, out
    assert "443" in out and "5223" in out and "5228-5230" in out

    # nothing enabled: nothing to check
    none = tmp_path / "none.conf"
    none.write_text(conf.replace("enabled = yes", "enabled = no"))
    rc, out = check_push(none, pbx.dir)
    assert rc == 2 and "no provider enabled" in out
