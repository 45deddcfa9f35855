"""The store owns every SQLite connection ([wake-room] item 2): what the
daemon acknowledges is on disk, whichever room asked.

- A push REGISTER's device is committed by the store's writer before the
  200 OK. The daemons here run with [store] flush_ms = 1000, the longest
  write-behind window, so a device that were only written behind would be
  lost by a kill -9 right after the 200; it must be there after restart.
  The same holds for a sign-out (Contact: *): the device stays gone.
- A provisioning link and a counted fetch are committed before the admin
  answers (the links moved from the admin's own file into the store).
- The links of an older version's [admin] prov_db file are imported once
  into the store; the file is then renamed PATH.imported.

Pushes need pushsim (the daemon serves a push contact only for a provider
it has configured): built next to pushpbx, as for test_wake.py.
"""
import os
import signal
import sqlite3
import time

import pytest

from conftest import Pbx
from wakeharness import (BUNDLE, KID, PROJECT, RING_S, TEAM, VOIP, CONF, Sim,
                         admin_get, apns_token, fcm_token)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import keys, phones  # noqa: F401

SLOW_FLUSH = ["store.flush_ms=1000"]


@pytest.fixture
def slow_env(keys, tmp_path):
    """slow_env() -> (pbx, sim, restart); restart() kills pbx with SIGKILL
    and starts it again on the same files, returning the new one."""
    made = []

    def make():
        d = tmp_path / "run"
        d.mkdir()
        sim = Sim(keys, d)
        made.append(sim)
        text = CONF.format(workers=2, ring=RING_S, apns="yes", fcm="yes",
                           url=sim.url, key=keys / "apns.p8", kid=KID,
                           team=TEAM, bundle=BUNDLE, ca=sim.ca, sa=sim.sa,
                           max100=1)
        pbx = Pbx(d, text, sets=SLOW_FLUSH)
        made.append(pbx)

        def restart(old):
            assert old.stop(sig=signal.SIGKILL) == -signal.SIGKILL
            old.exit_code = 0  # killed on purpose
            (d / "ready.json").unlink()
            new = Pbx(d, text, sets=SLOW_FLUSH)
            made.append(new)
            return new
        return pbx, sim, restart

    yield make
    for x in made:
        if isinstance(x, Pbx):
            x.check_clean_exit()
        else:
            x.stop()


def prefixes(pbx):
    return sorted(d["token_prefix"] for d in
                  admin_get(pbx, "/api/devices")["items"])


def test_push_register_durable_at_200(slow_env, phones):
    pbx, sim, restart = slow_env()
    p = phones(pbx, "100")
    t1, t2 = apns_token(), apns_token()
    r = p.register(pn=("apns", t1, VOIP), instance="durable-1")
    assert r["status"] == 200, r["first"]
    # A new token for the same app installation replaces the device; kill
    # the daemon the moment the 200 is in.
    r = p.register(pn=("apns", t2, VOIP), instance="durable-1")
    assert r["status"] == 200, r["first"]
    pbx = restart(pbx)
    assert prefixes(pbx) == [t2[:8]]

    # Sign-out: committed before its 200 too.
    q = phones(pbx, "101")
    tf = fcm_token()
    r = q.register(pn=("fcm", tf, PROJECT))
    assert r["status"] == 200, r["first"]
    pbx = restart(pbx)
    assert prefixes(pbx) == sorted([t2[:8], tf[:8]])
    q = phones(pbx, "101")
    r = q.register(contact="*", expires=0)
    assert r["status"] == 200, r["first"]
    pbx = restart(pbx)
    assert prefixes(pbx) == [t2[:8]]


ADMIN = """
[store]
path = {db}
flush_ms = 1000

[admin]
listen = 127.0.0.1:0
token = {token}
prov_db = {prov}
prov_link_max_fetches = 2

[extension.100]
password = pw100-secret
"""
TOKEN = "store-durability-token-0123"


def admin_call(pbx, method, path, auth=True):
    import json
    import urllib.error
    import urllib.request
    hdr = {"Authorization": "Bearer " + TOKEN} if auth else {}
    req = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (pbx.info["admin_port"], path),
        method=method, headers=hdr, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return r.status, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        return e.code, None


def test_provisioning_link_and_fetch_durable(start_pbx, tmp_path):
    extra = ADMIN.format(db=tmp_path / "pbx.db", token=TOKEN,
                         prov=tmp_path / "none.db")
    pbx = start_pbx(workers=2, extra=extra)
    st, link = admin_call(pbx, "POST", "/api/extensions/100/prov")
    assert st == 201
    path = "/prov/" + link["url"].rsplit("/", 1)[1]
    assert admin_call(pbx, "GET", path, auth=False)[0] == 200  # fetch 1/2
    assert pbx.stop(sig=signal.SIGKILL) == -signal.SIGKILL
    pbx.exit_code = 0
    pbx = start_pbx(workers=2, extra=extra)
    st, doc = admin_call(pbx, "GET", path, auth=False)  # fetch 2/2
    assert st == 200 and doc["extension"] == "100"
    # The first fetch was counted on disk: this is the third.
    assert admin_call(pbx, "GET", path, auth=False)[0] == 410
    assert not (tmp_path / "none.db").exists()


def make_old_prov_db(path, token, expires_at):
    """The table an older pushpbx's admin kept in [admin] prov_db."""
    db = sqlite3.connect(str(path))
    db.executescript("""
        CREATE TABLE admin_prov (
         ext TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE,
         password TEXT NOT NULL, created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL DEFAULT 0,
         fetches INTEGER NOT NULL DEFAULT 0,
         max_fetches INTEGER NOT NULL DEFAULT 0);""")
    db.execute("INSERT INTO admin_prov VALUES (?,?,?,?,?,?,?)",
               ("100", token, "", int(time.time()), expires_at, 1, 2))
    db.commit()
    db.close()


def test_old_prov_db_imported_once(start_pbx, tmp_path):
    old = tmp_path / "admin.db"
    token = "ab" * 16
    make_old_prov_db(old, token, int(time.time()) + 3600)
    extra = ADMIN.format(db=tmp_path / "pbx.db", token=TOKEN, prov=old)
    pbx = start_pbx(workers=2, extra=extra)
    assert not old.exists()
    assert (tmp_path / "admin.db.imported").exists()
    assert "imported 1 provisioning links" in pbx.stderr()
    st, got = admin_call(pbx, "GET", "/api/extensions/100/prov")
    assert st == 200 and got["url"].endswith("/prov/" + token)
    # Its fetch count came along: one fetch left of two.
    assert admin_call(pbx, "GET", "/prov/" + token, auth=False)[0] == 200
    assert pbx.stop() == 0
    # The next start reads the store only (the old file is gone).
    pbx = start_pbx(workers=2, extra=extra)
    assert admin_call(pbx, "GET", "/prov/" + token, auth=False)[0] == 410


def threads(pid):
    """{thread name: nice value} of a process (Linux /proc)."""
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
            name = f.read().strip()
        with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
            # Fields after the parenthesised name: nice is field 19.
            nice = int(f.read().rsplit(")", 1)[1].split()[16])
        out[name] = nice
    return out


@pytest.mark.parametrize("nice", [0, 7])
def test_writer_nice(start_pbx, nice):
    """[store] writer_nice lowers the writer's and checkpoint thread's
    priority, and only theirs: the SIP workers keep nice 0."""
    pbx = start_pbx(workers=2, sets=["store.writer_nice=%d" % nice])
    t = threads(pbx.proc.pid)
    assert t["pbx-store"] == nice, t
    assert t["pbx-checkpoint"] == nice, t
    assert t["pbx-worker0"] == 0 and t["pbx-worker1"] == 0, t
    assert t["pushpbx"] == 0, t
