"""Admin API hardening ([hardening] items 1, 3 and 6), against the daemon.

1. Extensions of the configuration file are read-only through the API: 409
   naming the file and the line of [extension.N], and a restart leaves them
   as the file says. API extensions live in the database and survive. The
   file wins over a database extension of the same number, logged.
3. Create, password reset and delete are on disk when they are answered:
   kill -9 right after the answer (with [store] flush_ms at its maximum,
   1000 ms, so write-behind would certainly lose them), restart, and the
   change is there; a created extension's returned password registers
   (SIPp REGISTER with digest auth).
6. Provisioning links expire, serve a limited number of documents (410
   Gone after either) and are revoked by a password reset.
"""
import json
import shutil
import signal
import time

import pytest

from conftest import BASE_CONFIG, Pbx
from test_admin import Admin, TOKEN, sipp_register
from test_ctl import ctl

CONFIG = """
[registrar]
digest_algorithms = md5,sha256
min_expires = 60

[store]
path = {db}
flush_ms = {flush_ms}

[admin]
listen = 127.0.0.1:0
token = {token}
prov_db = {prov}
{admin_extra}

[extension.100]
name = Alice
password = pw100-secret
{ext_extra}
"""


def config(tmp_path, name, flush_ms=50, admin_extra="", ext_extra=""):
    return CONFIG.format(db=tmp_path / ("%s-reg.db" % name),
                         prov=tmp_path / ("%s-prov.db" % name),
                         token=TOKEN, flush_ms=flush_ms,
                         admin_extra=admin_extra, ext_extra=ext_extra)


def start(start_pbx, tmp_path, name, sets=(), **kw):
    pbx = start_pbx(workers=2, extra=config(tmp_path, name, **kw), sets=sets)
    pbx.admin = Admin(pbx.info["admin_port"], TOKEN)
    return pbx


def header_line(pbx, section):
    """Line number of [section] in the daemon's config file."""
    lines = pbx.conf.read_text().splitlines()
    return lines.index("[%s]" % section) + 1


def need_sipp():
    assert shutil.which("sipp"), "sipp is required (Debian package sip-tester)"


def registers(pbx, ext, password):
    rc, out = sipp_register(pbx, ext, password)
    return rc == 0


# --- 1. configuration-file extensions -------------------------------------

def test_config_extension_is_read_only(start_pbx, tmp_path):
    need_sipp()
    pbx = start(start_pbx, tmp_path, "ro")
    a = pbx.admin
    line = header_line(pbx, "extension.100")

    st, j = a.call("GET", "/api/extensions/100")
    assert st == 200
    assert j["source"] == "config"
    assert j["config_file"] == str(pbx.conf) and j["config_line"] == line

    for method, path, body in (
            ("PATCH", "/api/extensions/100", {"enabled": False}),
            ("PATCH", "/api/extensions/100", {"password": "other-pw-1"}),
            ("POST", "/api/extensions/100/password", None),
            ("DELETE", "/api/extensions/100", None),
            ("POST", "/api/extensions", {"number": "100",
                                         "password": "other-pw-1"})):
        st, j = a.call(method, path, body)
        assert st == 409, (method, path, st, j)
        assert j["source"] == "config" and j["field"] == "number"
        assert j["config_file"] == str(pbx.conf)
        assert j["config_line"] == line
        assert "%s line %d" % (pbx.conf, line) in j["error"], j

    # pushpbxctl passes the refusal on: exit code 6 (conflict), the reason
    for args in (("ext", "del", "100"), ("ext", "passwd", "100")):
        rc, out, err = ctl(pbx, *args)
        assert rc == 6, (args, rc, out, err)
        assert "%s line %d" % (pbx.conf, line) in err, err

    # API extensions are the API's
    st, j = a.call("POST", "/api/extensions",
                   {"number": "300", "name": "Api", "password": "pw300-api"})
    assert st == 201 and j["source"] == "api" and "config_file" not in j
    st, j = a.call("GET", "/api/extensions")
    src = {e["number"]: e["source"] for e in j["items"]}
    assert src == {"100": "config", "300": "api"}
    st, j = a.call("PATCH", "/api/extensions/300", {"enabled": False})
    assert st == 200 and j["enabled"] is False
    pbx.check_clean_exit()

    # After a restart: the file's extension as the file says, the API's as
    # the API left it.
    pbx = start(start_pbx, tmp_path, "ro")
    a = pbx.admin
    st, j = a.call("GET", "/api/extensions/100")
    assert st == 200 and j["enabled"] is True and j["source"] == "config"
    assert registers(pbx, "100", "pw100-secret")
    st, j = a.call("GET", "/api/extensions/300")
    assert st == 200 and j["enabled"] is False and j["source"] == "api"
    assert a.call("PATCH", "/api/extensions/300", {"enabled": True})[0] == 200
    assert registers(pbx, "300", "pw300-api")


def test_config_file_wins_and_says_so(start_pbx, tmp_path):
    pbx = start(start_pbx, tmp_path, "win")
    st, _ = pbx.admin.call("POST", "/api/extensions",
                           {"number": "300", "password": "pw300-api"})
    assert st == 201
    pbx.check_clean_exit()

    # The file now defines 300 too: it wins, logged at start.
    pbx = start(start_pbx, tmp_path, "win",
                ext_extra="[extension.300]\npassword = pw300-file\n")
    line = header_line(pbx, "extension.300")
    log = pbx.stderr()
    assert ("extension 300: created through the admin API, and now defined "
            "in %s line %d: the configuration file wins" % (pbx.conf, line)
            ) in log, log
    st, j = pbx.admin.call("GET", "/api/extensions/300")
    assert j["source"] == "config" and j["config_line"] == line
    assert pbx.admin.call("DELETE", "/api/extensions/300")[0] == 409
    pbx.check_clean_exit()

    # The section is gone from the file: so is the extension, logged.
    pbx = start(start_pbx, tmp_path, "win")
    assert ("extension 300: no longer in the configuration file: removed"
            in pbx.stderr())
    assert pbx.admin.call("GET", "/api/extensions/300")[0] == 404
    assert pbx.admin.call("GET", "/api/extensions/100")[0] == 200


# --- 3. durable before the answer -----------------------------------------

def kill9(p):
    p.proc.send_signal(signal.SIGKILL)
    p.proc.wait()
    p._err.close()
    p.exit_code = 0  # killed on purpose; not a shutdown to check


def test_writes_survive_kill9_right_after_the_answer(start_pbx, tmp_path):
    """flush_ms = 1000 (the maximum): with write-behind every change below
    would be lost, because the daemon dies within microseconds of the
    answer. Three rounds of create + kill -9, then password reset, PATCH
    and delete + kill -9."""
    need_sipp()
    conf = BASE_CONFIG.format(workers=2) + config(tmp_path, "k9",
                                                  flush_ms=1000)
    created = {}
    for rnd in range(3):
        d = tmp_path / ("k%d" % rnd)
        d.mkdir()
        p = Pbx(d, conf)
        a = Admin(p.info["admin_port"], TOKEN)
        st, j = a.call("POST", "/api/extensions", {"number": "40%d" % rnd})
        kill9(p)  # no wait at all after the 201
        assert st == 201, j
        created[j["number"]] = j["password"]

    d = tmp_path / "k-mod"
    d.mkdir()
    p = Pbx(d, conf)
    a = Admin(p.info["admin_port"], TOKEN)
    for number in created:
        st, j = a.call("GET", "/api/extensions/" + number)
        assert st == 200, "extension %s lost by kill -9" % number
    st, j = a.call("POST", "/api/extensions/400/password")
    assert st == 200
    created["400"] = j["password"]
    assert a.call("PATCH", "/api/extensions/401",
                  {"enabled": False})[0] == 200
    st, _ = a.call("DELETE", "/api/extensions/402")
    kill9(p)
    assert st == 204

    pbx = start(start_pbx, tmp_path, "k9", flush_ms=1000)
    a = pbx.admin
    assert a.call("GET", "/api/extensions/402")[0] == 404
    assert a.call("GET", "/api/extensions/401")[1]["enabled"] is False
    # the password returned once (the reset one for 400) registers
    assert registers(pbx, "400", created["400"])
    assert not registers(pbx, "400", created["400"][::-1])


# --- 6. provisioning link lifetime ------------------------------------------

def link_path(link):
    return "/prov/" + link["url"].rsplit("/", 1)[1]


def test_prov_link_fetch_limit_and_password_reset(start_pbx, tmp_path):
    pbx = start(start_pbx, tmp_path, "lim",
                sets=["admin.prov_link_max_fetches=2"])
    a = pbx.admin
    assert a.call("POST", "/api/extensions",
                  {"number": "300", "password": "pw300-api"})[0] == 201
    before = int(time.time())
    st, link = a.call("POST", "/api/extensions/300/prov")
    assert st == 201, link
    # default lifetime: 7 days
    assert before <= link["created_at"] <= before + 2
    assert link["expires_at"] == link["created_at"] + 7 * 86400
    assert link["max_fetches"] == 2 and link["fetches_left"] == 2
    assert link["state"] == "active"
    path = link_path(link)

    for i in range(2):
        st, doc = a.call("GET", path, token="")
        assert st == 200 and doc["extension"] == "300"
    st, shown = a.call("GET", "/api/extensions/300/prov")
    assert shown["fetches"] == 2 and shown["fetches_left"] == 0
    assert shown["state"] == "used up"
    st, j = a.call("GET", path, token="")
    assert st == 410 and "used as many times" in j["error"], j

    # A password reset revokes the link, and says so.
    st, link = a.call("POST", "/api/extensions/300/prov")
    assert st == 201
    path = link_path(link)
    assert a.call("GET", path, token="")[0] == 200
    st, j = a.call("POST", "/api/extensions/300/password")
    assert st == 200 and j["prov_link_revoked"] is True
    assert a.call("GET", path, token="")[0] == 404
    assert a.call("GET", "/api/extensions/300/prov")[0] == 404
    st, j = a.call("POST", "/api/extensions/300/password")
    assert st == 200 and j["prov_link_revoked"] is False
    # PATCH with a password too
    st, link = a.call("POST", "/api/extensions/300/prov")
    st, j = a.call("PATCH", "/api/extensions/300", {"password": "pw300-new"})
    assert st == 200 and j["prov_link_revoked"] is True
    assert a.call("GET", link_path(link), token="")[0] == 404


def test_prov_link_expires(start_pbx, tmp_path):
    pbx = start(start_pbx, tmp_path, "ttl", sets=["admin.prov_link_ttl_s=1"])
    a = pbx.admin
    st, link = a.call("POST", "/api/extensions/100/prov")
    assert st == 201 and link["expires_at"] == link["created_at"] + 1
    path = link_path(link)
    # wait for the clock to pass the expiry (not for an event: time is it)
    while time.time() < link["expires_at"] + 0.05:
        time.sleep(0.05)
    st, j = a.call("GET", path, token="")
    assert st == 410 and "expired" in j["error"], j
    st, shown = a.call("GET", "/api/extensions/100/prov")
    assert shown["state"] == "expired" and shown["expires_in"] == 0


def test_config_extension_link_hands_out_the_file_password(start_pbx,
                                                           tmp_path):
    need_sipp()
    pbx = start(start_pbx, tmp_path, "cfgprov")
    a = pbx.admin
    st, link = a.call("POST", "/api/extensions/100/prov")
    assert st == 201
    st, doc = a.call("GET", link_path(link), token="")
    assert st == 200
    # The link does not change the file's extension: its password is the
    # file's, and it still registers after a restart.
    assert doc["credentials"]["password"] == "pw100-secret"
    pbx.check_clean_exit()
    pbx = start(start_pbx, tmp_path, "cfgprov")
    st, doc = pbx.admin.call("GET", link_path(link), token="")
    assert st == 200 and doc["credentials"]["password"] == "pw100-secret"
    assert registers(pbx, "100", "pw100-secret")
