"""The service's run-time interfaces ([ops]): GET /healthz, backup and
restore, and SIGHUP reload.

- /healthz answers without a token: 200 while every worker, the push
  thread and the store's writer answer; 503 naming "store" while the
  writer is stalled on a database that another process holds locked (a
  real SQLite lock, no test hook), and 200 again once it is released.
- pushpbxctl backup takes a copy during a registration load; after the
  push devices are deleted, pushpbx --restore (refused while the daemon
  runs) brings every push device back.
- SIGHUP re-reads [extension.N] and [log] level: a new extension is
  there, a changed password works, a removed one is gone; a broken file
  changes nothing.
"""
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN, Pbx
from wakeharness import (Phone, admin_get, apns_token, env, fcm_token,  # noqa: F401
                         keys, wait_until)

CTL = os.path.join(os.path.dirname(BIN), "..", "ctl", "pushpbxctl") if BIN else ""
TOKEN = "wake-test-token-0123456789"


def get(port, path, token=None):
    hdr = {"Authorization": "Bearer " + token} if token else {}
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 headers=hdr)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_for(pred, timeout, what):
    v = wait_until(pred, timeout)
    if not v:
        pytest.fail("timed out waiting for " + what)
    return v


def test_healthz(env):
    pbx, sim = env(apns=True, fcm=False)
    port = pbx.info["admin_port"]
    st, j = get(port, "/healthz")  # no token
    assert st == 200, j
    assert j["status"] == "ok" and j["failing"] == []
    for part in ("workers", "push", "store"):
        assert j["parts"][part]["ok"], j
    assert "2 workers answered" in j["parts"]["workers"]["detail"]

    # Stall the store's writer: another process holds the database's write
    # lock, and a registration queues a binding write behind it.
    db = sqlite3.connect(str(pbx.dir / "pbx.db"), timeout=5,
                         isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        phone = Phone(pbx, "101")
        assert phone.register()["status"] == 200
        t0 = time.monotonic()
        st, j = get(port, "/healthz")
        took = time.monotonic() - t0
        assert st == 503, j
        assert j["status"] == "unhealthy" and j["failing"] == ["store"], j
        assert "did not answer" in j["parts"]["store"]["detail"]
        assert j["parts"]["workers"]["ok"] and j["parts"]["push"]["ok"]
        assert took < 3, took  # bounded: about a second
    finally:
        db.execute("ROLLBACK")
        db.close()
    wait_for(lambda: get(port, "/healthz")[0] == 200, 10, "healthy again")
    phone.register(expires=0)


def ctl(pbx, *args):
    return subprocess.run(
        [CTL, "--url", "http://127.0.0.1:%d" % pbx.info["admin_port"],
         "--token", TOKEN] + list(args),
        capture_output=True, text=True, timeout=60)


def devices(pbx):
    """(ext, token prefix) of every push device (the API shows 8 chars)."""
    return sorted((d["ext"], d["token_prefix"])
                  for d in admin_get(pbx, "/api/devices")["items"])


def test_backup_under_load_and_restore(env, tmp_path):
    if not os.path.exists(CTL):
        pytest.fail("pushpbxctl missing: %s" % CTL)
    pbx, sim = env(apns=True, fcm=True)
    phones, tokens = [], []
    for ext, pn in (("100", ("apns", apns_token(), "com.example.phone.voip")),
                    ("101", ("fcm", fcm_token(), "pushpbx-test")),
                    ("102", ("apns", apns_token(), "com.example.phone"))):
        p = Phone(pbx, ext)
        assert p.register(pn=pn)["status"] == 200
        assert p.register(pn=pn, expires=0)["status"] == 200  # background
        phones.append(p)
        tokens.append((ext, pn[1][:8]))
    assert devices(pbx) == sorted(tokens)

    # A registration load while the backup is taken.
    stop = threading.Event()
    loader = Phone(pbx, "109")
    count = [0]

    def load():
        while not stop.is_set() and count[0] < 2000:
            assert loader.register(expires=60)["status"] == 200
            count[0] += 1

    t = threading.Thread(target=load, daemon=True)
    t.start()
    wait_for(lambda: count[0] >= 20, 20, "registration load")
    backup = tmp_path / "backup.db"
    r = ctl(pbx, "backup", str(backup))
    n_during = count[0]
    stop.set()
    t.join(timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert backup.read_bytes()[:16] == b"SQLite format 3\x00"
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert count[0] > n_during - 1 and n_during >= 20

    # Lose the devices, then restore the backup: refused while running.
    for d in admin_get(pbx, "/api/devices")["items"]:
        r = ctl(pbx, "push", "forget", d["ext"])
        assert r.returncode == 0, r.stderr
    assert devices(pbx) == []
    r = subprocess.run([BIN, "--config", str(pbx.conf), "--restore",
                        str(backup)], cwd=str(pbx.dir), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "in use by a running pushpbx" in r.stderr, \
        r.stderr
    conf_text = pbx.conf.read_text()
    assert pbx.stop() == 0
    r = subprocess.run([BIN, "--config", str(pbx.conf), "--restore",
                        str(backup)], cwd=str(pbx.dir), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "restored from" in r.stdout
    # A file that is not a pushpbx database is refused.
    bad = tmp_path / "bad.db"
    bad.write_text("not a database" * 100)
    r = subprocess.run([BIN, "--config", str(pbx.conf), "--restore",
                        str(bad)], cwd=str(pbx.dir), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "restore:" in r.stderr, r.stderr

    (pbx.dir / "ready.json").unlink()
    again = Pbx(pbx.dir, conf_text)
    try:
        assert devices(again) == sorted(tokens)
    finally:
        assert again.stop() == 0
        again.check_clean_exit()


def test_sighup_reload(start_pbx):
    extra = ("[admin]\nlisten = 127.0.0.1:0\ntoken = %s\n"
             "token_file = admin.token\nprov_db = prov.db\n"
             "[store]\npath = pbx.db\n"
             "[registrar]\ndigest_algorithms = md5\n"
             "[extension.100]\npassword = pw100\n"
             "[extension.101]\npassword = pw101\n" % TOKEN)
    pbx = start_pbx(workers=2, extra=extra)
    port = pbx.info["admin_port"]

    def exts():
        st, j = get(port, "/api/extensions", TOKEN)
        assert st == 200
        return {e["number"]: e.get("source") for e in j["items"]}

    assert exts() == {"100": "config", "101": "config"}
    assert Phone(pbx, "100").register()["status"] == 200
    # 100 gets a new password, 101 goes, 102 comes, the log level rises.
    text = pbx.conf.read_text()
    text = text.replace("[extension.101]\npassword = pw101\n", "")
    text = text.replace("password = pw100", "password = new-pw-100")
    text = text.replace("level = info", "level = debug")
    text += "[extension.102]\npassword = pw102\n"
    pbx.conf.write_text(text)
    pbx.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in pbx.stderr(), 10, "reload log line")
    assert exts() == {"100": "config", "102": "config"}
    assert Phone(pbx, "100").register()["status"] == 401  # old password
    assert Phone(pbx, "100", password="new-pw-100").register()["status"] == 200
    assert Phone(pbx, "102").register()["status"] == 200
    assert "log level DEBUG" in pbx.stderr()
    # A file with an error changes nothing and says so.
    pbx.conf.write_text(text + "[bogus]\nx = 1\n")
    pbx.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "nothing changed" in pbx.stderr(), 10, "refused reload")
    assert exts() == {"100": "config", "102": "config"}
    assert pbx.alive()
