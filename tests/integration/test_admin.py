"""Admin HTTP API, provisioning and metrics against the real daemon.

The admin listens on 127.0.0.1 port 0; the ready file reports admin_port.
Registrations are made by SIPp (tests/integration/sipp/reg_register.xml)
with users from a CSV written per test. QR codes are decoded with zbarimg
(Debian zbar-tools) back to the provisioning link.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET

import pytest

from conftest import SIPP_DIR, free_port

TOKEN = "t0k3n-for-tests-0123456789"

ADMIN_CONFIG = """
[registrar]
digest_algorithms = md5,sha256
min_expires = 60

[store]
path = {db}
flush_ms = 50

[admin]
listen = 127.0.0.1:0
token = {token}
prov_db = {prov}
{admin_extra}

[extension.100]
name = Alice
password = pw100-secret
"""


def admin_pbx(start_pbx, tmp_path, token=TOKEN, admin_extra="", name="a"):
    """Start a daemon with the admin on an ephemeral port. The store and
    provisioning databases are per name, so a restart keeps them."""
    extra = ADMIN_CONFIG.format(
        db=tmp_path / ("%s-reg.db" % name), token=token,
        prov=tmp_path / ("%s-prov.db" % name), admin_extra=admin_extra)
    pbx = start_pbx(workers=2, extra=extra)
    pbx.admin = Admin(pbx.info["admin_port"], token)
    return pbx


class Admin:
    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.base = "http://127.0.0.1:%d" % port

    def raw(self, method, path, body=None, token=None, headers=None,
            data=None):
        """(status, headers, bytes) of one request."""
        hdr = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            hdr["Authorization"] = "Bearer " + tok
        if body is not None:
            data = json.dumps(body).encode()
            hdr["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data,
                                     method=method, headers=hdr)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def call(self, method, path, body=None, **kw):
        """(status, parsed JSON or None)."""
        st, _, data = self.raw(method, path, body, **kw)
        return st, (json.loads(data) if data else None)


def sipp_register(pbx, ext, password, transport="u1", timeout=10):
    """REGISTER ext with digest auth via SIPp; returns (rc, output)."""
    exe = shutil.which("sipp")
    if not exe:
        pytest.fail("sipp not installed (scripts/install-deps)")
    csv = pbx.dir / ("users-%s.csv" % uuid.uuid4().hex[:6])
    csv.write_text("SEQUENTIAL\n%s;%s;[authentication username=%s "
                   "password=%s];[authentication username=%s "
                   "password=wrong]\n" % (ext, password, ext, password, ext))
    tcp = transport != "u1"
    cmd = [exe, "%s:%d" % (pbx.host, pbx.ports["tcp" if tcp else "udp"]),
           "-sf", os.path.join(SIPP_DIR, "reg_register.xml"),
           "-inf", str(csv), "-key", "device", "adm",
           "-t", transport, "-i", "127.0.0.1", "-mi", "127.0.0.1",
           "-p", str(free_port(socket.SOCK_STREAM if tcp
                               else socket.SOCK_DGRAM)),
           "-cp", str(free_port()), "-mp", str(free_port(pair=True)),
           "-m", "1", "-timeout", "%ds" % timeout, "-timeout_error",
           "-nostdin"]
    r = subprocess.run(cmd, cwd=str(pbx.dir), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout + 10)
    return r.returncode, r.stdout.decode(errors="replace")


def parse_metrics(text):
    """Prometheus text format -> {(name, labels): value}; checks that every
    sample belongs to a family declared by # TYPE."""
    types, samples = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
        assert m, "bad sample line: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or family in types, "undeclared: " + line
        samples[(name, labels)] = float(value)
    return types, samples


# --- authentication ---------------------------------------------------------

def test_token_required(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    a = pbx.admin
    st, hdr, body = a.raw("GET", "/api/extensions", token="")
    assert st == 401
    assert hdr["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(body)["error"]
    st, _ = a.call("GET", "/api/extensions", token="wrong-" + TOKEN)
    assert st == 401
    st, _ = a.call("GET", "/metrics", token="x")
    assert st == 401
    st, j = a.call("GET", "/api/extensions")
    assert st == 200
    assert [e["number"] for e in j["items"]] == ["100"]


def test_generated_token_written_to_file(start_pbx, tmp_path):
    tokfile = tmp_path / "gen" / "admin.token"
    pbx = start_pbx(workers=1, extra="[admin]\nlisten = 127.0.0.1:0\n"
                    "token_file = %s\nprov_db = %s\n" %
                    (tokfile, tmp_path / "prov.db"))
    token = tokfile.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert oct(tokfile.stat().st_mode & 0o777) == "0o600"
    a = Admin(pbx.info["admin_port"], token)
    assert a.call("GET", "/api/extensions")[0] == 200
    assert a.call("GET", "/api/extensions", token="0" * 32)[0] == 401
    # Shown only on a terminal (make run); here stderr is a file, as the
    # journal is under systemd: the path is logged, never the secret.
    assert token not in pbx.stderr()
    assert "generated an API token, saved to %s" % tokfile in pbx.stderr()
    # A restart keeps the token (pushpbxctl and scripts go on working).
    assert pbx.stop() == 0
    pbx2 = start_pbx(workers=1, extra="[admin]\nlisten = 127.0.0.1:0\n"
                     "token_file = %s\nprov_db = %s\n" %
                     (tokfile, tmp_path / "prov.db"))
    assert tokfile.read_text().strip() == token
    a = Admin(pbx2.info["admin_port"], token)
    assert a.call("GET", "/api/extensions")[0] == 200
    assert "API token read from %s" % tokfile in pbx2.stderr()


def test_token_file_from_the_package(start_pbx, tmp_path):
    """postinst writes the token file before the first start; the daemon
    uses it, leaves it as it is, and never prints it."""
    tokfile = tmp_path / "admin.token"
    token = "0123456789abcdef" * 4
    tokfile.write_text(token + "\n")
    pbx = start_pbx(workers=1, extra="[admin]\nlisten = 127.0.0.1:0\n"
                    "token_file = %s\nprov_db = %s\n" %
                    (tokfile, tmp_path / "prov.db"))
    a = Admin(pbx.info["admin_port"], token)
    assert a.call("GET", "/api/extensions")[0] == 200
    assert tokfile.read_text() == token + "\n"
    assert token not in pbx.stderr()


# --- extensions -------------------------------------------------------------

def test_extension_lifecycle(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    a = pbx.admin
    st, j = a.call("POST", "/api/extensions",
                   {"number": "200", "name": "Bob"})
    assert st == 201, j
    assert j["number"] == "200" and j["name"] == "Bob" and j["enabled"]
    generated = j["password"]
    assert len(generated) >= 16
    st, j = a.call("POST", "/api/extensions",
                   {"number": "200", "password": "another1"})
    assert st == 409 and j["field"] == "number"

    st, j = a.call("GET", "/api/extensions/200")
    assert st == 200 and j["name"] == "Bob" and "password" not in j
    st, j = a.call("GET", "/api/extensions")
    assert [e["number"] for e in j["items"]] == ["100", "200"]
    assert all("password" not in e for e in j["items"])

    # the generated password registers
    rc, out = sipp_register(pbx, "200", generated)
    assert rc == 0, out

    st, j = a.call("PATCH", "/api/extensions/200",
                   {"name": "Bobby", "password": "newpass-200"})
    assert st == 200 and j["name"] == "Bobby", j
    # without a password the name changes and the credentials stay
    st, j = a.call("PATCH", "/api/extensions/200",
                   {"name": "B", "max_push_devices": 3})
    assert st == 200 and j["name"] == "B", j
    assert a.call("GET", "/api/extensions/200")[1]["name"] == "B"
    rc, out = sipp_register(pbx, "200", "newpass-200")
    assert rc == 0, out

    st, j = a.call("POST", "/api/extensions/200/password")
    assert st == 200 and j["password"] not in (generated, "newpass-200")
    rc, out = sipp_register(pbx, "200", j["password"])
    assert rc == 0, out

    st, _ = a.call("DELETE", "/api/extensions/200")
    assert st == 204
    assert a.call("GET", "/api/extensions/200")[0] == 404
    assert a.call("DELETE", "/api/extensions/200")[0] == 404
    # secrets never reach the log
    assert generated not in pbx.stderr()
    assert "newpass-200" not in pbx.stderr()


@pytest.mark.parametrize("body,field", [
    ({"number": "bad number"}, "number"),
    ({"number": ""}, "number"),
    ({"number": "x" * 33}, "number"),
    ({"name": "no number"}, "number"),
    ({"number": "300", "password": "short"}, "password"),
    ({"number": "300", "password": 12345678}, "password"),
    ({"number": "300", "enabled": "yes"}, "enabled"),
    ({"number": "300", "name": "<script>"}, "name"),
    ({"number": "300", "max_push_devices": 99}, "max_push_devices"),
    ({"number": "300", "colour": "red"}, "colour"),
])
def test_extension_bad_fields(start_pbx, tmp_path, body, field):
    pbx = admin_pbx(start_pbx, tmp_path)
    st, j = pbx.admin.call("POST", "/api/extensions", body)
    assert st == 400, j
    assert j["field"] == field
    assert pbx.admin.call("GET", "/api/extensions/300")[0] == 404


def test_bad_json_unknown_routes_and_oversize(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    a = pbx.admin
    st, _, body = a.raw("POST", "/api/extensions", data=b"{not json",
                        headers={"Content-Type": "application/json"})
    assert st == 400 and "JSON" in json.loads(body)["error"]
    st, _, body = a.raw("POST", "/api/extensions", data=b"[1,2]")
    assert st == 400
    assert a.call("GET", "/api/extensions/999")[0] == 404
    assert a.call("GET", "/api/extensions/999/prov")[0] == 404
    assert a.call("GET", "/api/nothing")[0] == 404
    assert a.call("PUT", "/api/registrations")[0] == 405
    big = json.dumps({"number": "400", "name": "x" * 40000}).encode()
    st, _, body = a.raw("POST", "/api/extensions", data=big)
    assert st == 413
    assert a.call("GET", "/api/extensions/400")[0] == 404
    # still serving after all that
    assert a.call("GET", "/api/extensions")[0] == 200


def test_extensions_survive_restart(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path, name="keep")
    st, j = pbx.admin.call("POST", "/api/extensions",
                           {"number": "201", "name": "Dora",
                            "password": "dora-pw-201"})
    assert st == 201
    st, link = pbx.admin.call("POST", "/api/extensions/201/prov")
    assert st == 201
    pbx.check_clean_exit()

    pbx2 = admin_pbx(start_pbx, tmp_path, name="keep")
    st, j = pbx2.admin.call("GET", "/api/extensions/201")
    assert st == 200 and j["name"] == "Dora"
    # the link survives too (same token, new port: fetch by path)
    path = "/prov/" + link["url"].rsplit("/", 1)[1]
    st, doc = pbx2.admin.call("GET", path, token="")
    assert st == 200 and doc["extension"] == "201"
    rc, out = sipp_register(pbx2, "201", doc["credentials"]["password"])
    assert rc == 0, out


# --- registrations, provider lists -------------------------------------------

def test_registrations_show_sipp_binding(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    st, j = pbx.admin.call("GET", "/api/registrations")
    assert st == 200
    assert j["items"][0]["bindings"] == []
    rc, out = sipp_register(pbx, "100", "pw100-secret")
    assert rc == 0, out
    st, j = pbx.admin.call("GET", "/api/registrations")
    e = j["items"][0]
    assert e["number"] == "100" and e["name"] == "Alice"
    assert len(e["bindings"]) == 1
    b = e["bindings"][0]
    assert b["transport"] == "udp"
    assert b["source"].startswith("127.0.0.1:")
    assert b["user_agent"] == "SIPp pushpbx-test"
    assert 0 < b["expires_in"] <= 600
    assert "dev=adm" in b["contact"]
    # push devices are kept even with no provider enabled: none here
    assert j["push_available"] is True and e["push"] == []


def test_provider_lists_empty(start_pbx, tmp_path):
    """Every room is wired: the lists are available and empty on a fresh
    daemon; push actions on an extension without a device are 404."""
    pbx = admin_pbx(start_pbx, tmp_path)
    for path in ("/api/calls", "/api/pushes", "/api/wakeups",
                 "/api/devices"):
        st, j = pbx.admin.call("GET", path)
        assert st == 200 and j == {"available": True, "items": []}, path
    st, j = pbx.admin.call("GET", "/api/status")
    assert all(j["available"].values()), j
    st, j = pbx.admin.call("POST", "/api/extensions/100/push/test")
    assert st == 404 and "no push device" in j["error"]
    st, j = pbx.admin.call("DELETE", "/api/extensions/100/push")
    assert st == 404
    st, j = pbx.admin.call("POST", "/api/extensions/999/push/test")
    assert st == 404
    # the push check with no provider enabled: nothing to check
    st, j = pbx.admin.call("POST", "/api/push/check")
    assert st == 200 and j == {"ok": False, "items": []}
    assert pbx.admin.call("GET", "/api/push/check")[0] == 405


# --- provisioning -------------------------------------------------------------

def test_provisioning_document_and_qr(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    a = pbx.admin
    assert a.call("GET", "/api/extensions/100/prov")[0] == 404
    st, link = a.call("POST", "/api/extensions/100/prov")
    assert st == 201
    url = link["url"]
    m = re.fullmatch(r"http://127\.0\.0\.1:%d/prov/([0-9a-f]{32})" % a.port,
                     url)
    assert m, url
    assert a.call("GET", "/api/extensions/100/prov")[1]["url"] == url

    # the link is public (its token is the credential)
    st, doc = a.call("GET", "/prov/" + m.group(1), token="")
    assert st == 200
    assert doc["version"] == 1 and doc["extension"] == "100"
    assert doc["domain"] == "test.local"
    assert doc["server"]["ports"] == {"udp": pbx.ports["udp"],
                                      "tcp": pbx.ports["tcp"]}
    assert doc["server"]["transports"] == ["udp", "tcp"]
    assert doc["credentials"]["username"] == "100"
    assert doc["credentials"]["realm"] == "test.local"
    # no [apns]/[fcm] enabled: the document says so for both
    assert doc["push"]["fcm"]["configured"] is False
    assert "FCM is not configured" in doc["push"]["fcm"]["reason"]
    assert doc["push"]["apns"]["configured"] is False
    assert "APNs is not configured" in doc["push"]["apns"]["reason"]
    assert doc["push"]["providers"] == []
    # its password is the extension's now
    rc, out = sipp_register(pbx, "100", doc["credentials"]["password"])
    assert rc == 0, out
    assert doc["credentials"]["password"] not in pbx.stderr()

    # QR as SVG (well-formed) and PNG decoded back to the link
    st, hdr, svg = a.raw("GET", "/api/extensions/100/prov/qr.svg")
    assert st == 200 and hdr["Content-Type"] == "image/svg+xml"
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    st, hdr, png = a.raw("GET", "/api/extensions/100/prov/qr.png")
    assert st == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    zbar = shutil.which("zbarimg")
    if not zbar:
        pytest.fail("zbarimg (zbar-tools) not installed (scripts/install-deps)")
    f = tmp_path / "qr.png"
    f.write_bytes(png)
    r = subprocess.run([zbar, "-q", "--raw", str(f)], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=20)
    assert r.stdout.decode().strip() == url
    # images need the bearer token
    assert a.raw("GET", "/api/extensions/100/prov/qr.png", token="")[0] == 401


def test_provisioning_revoke_and_regenerate(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    a = pbx.admin
    st, first = a.call("POST", "/api/extensions/100/prov")
    t1 = "/prov/" + first["url"].rsplit("/", 1)[1]
    st, second = a.call("POST", "/api/extensions/100/prov")
    assert st == 201 and second["url"] != first["url"]
    t2 = "/prov/" + second["url"].rsplit("/", 1)[1]
    assert a.call("GET", t1, token="")[0] == 404
    st, doc = a.call("GET", t2, token="")
    assert st == 200
    assert a.call("DELETE", "/api/extensions/100/prov")[0] == 204
    assert a.call("GET", t2, token="")[0] == 404
    assert a.call("DELETE", "/api/extensions/100/prov")[0] == 404
    assert a.call("GET", "/prov/" + "0" * 32, token="")[0] == 404
    assert a.call("GET", "/prov/not-a-token", token="")[0] == 404
    # anything that is not a public route needs the token
    assert a.call("GET", "/prov/../etc/passwd", token="")[0] == 401


def test_provisioning_push_settings(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path, admin_extra=(
        "sip_host = pbx.example.com\npublic_url = https://pbx.example.com/"))
    st, link = pbx.admin.call("POST", "/api/extensions/100/prov")
    assert link["url"].startswith("https://pbx.example.com/prov/")
    path = "/prov/" + link["url"].rsplit("/", 1)[1]
    st, doc = pbx.admin.call("GET", path, token="")
    assert doc["server"]["host"] == "pbx.example.com"


# --- metrics and page ----------------------------------------------------------

def test_metrics(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    st, hdr, body = pbx.admin.raw("GET", "/metrics")
    assert st == 200 and hdr["Content-Type"].startswith("text/plain")
    types, s = parse_metrics(body.decode())
    for fam in ("pushpbx_extensions", "pushpbx_registrations",
                "pushpbx_push_devices", "pushpbx_calls_total",
                "pushpbx_pushes_sent_total", "pushpbx_pushes_failed_total",
                "pushpbx_pushes_dead_total", "pushpbx_push_latency_seconds",
                "pushpbx_auth_failures_total", "pushpbx_throttled_total",
                "pushpbx_sip_messages_total"):
        assert fam in types, fam
    assert types["pushpbx_push_latency_seconds"] == "histogram"
    assert s[("pushpbx_extensions", "")] == 1
    assert s[("pushpbx_registrations", "")] == 0
    assert s[("pushpbx_pushes_sent_total", '{provider="apns"}')] == 0
    assert ("pushpbx_push_latency_seconds_bucket", '{le="+Inf"}') in s

    rc, out = sipp_register(pbx, "100", "pw100-secret")
    assert rc == 0, out
    rc, out = sipp_register(pbx, "100", "wrong-password")
    assert rc != 0
    _, s = parse_metrics(pbx.admin.raw("GET", "/metrics")[2].decode())
    assert s[("pushpbx_registrations", "")] == 1
    assert s[("pushpbx_auth_failures_total", "")] >= 1
    # each SIPp run: REGISTER, 401, REGISTER with credentials
    assert s[("pushpbx_sip_messages_total", '{method="REGISTER"}')] >= 4


def test_metrics_count_sip_methods(start_pbx, tmp_path, udp):
    """pushpbx_sip_messages_total counts what the workers received, by
    method: one OPTIONS and one REGISTER (answered 401) sent raw."""
    from conftest import request, status_of
    pbx = admin_pbx(start_pbx, tmp_path)

    def sample():
        _, s = parse_metrics(pbx.admin.raw("GET", "/metrics")[2].decode())
        return {m: s[("pushpbx_sip_messages_total", '{method="%s"}' % m)]
                for m in ("INVITE", "ACK", "BYE", "CANCEL", "REGISTER",
                          "OPTIONS", "other")}
    before = sample()
    assert before == dict.fromkeys(before, 0)
    st, _ = status_of(udp.exchange(request("OPTIONS", udp.port), pbx.udp))
    assert st == 200
    reg = request("REGISTER", udp.port, ruri="sip:test.local",
                  extra="Contact: <sip:100@127.0.0.1:%d>\r\n" % udp.port)
    reg = reg.replace(b"To: <sip:test.local>", b"To: <sip:100@test.local>")
    st, _ = status_of(udp.exchange(reg, pbx.udp))
    assert st == 401
    st, _ = status_of(udp.exchange(request("SUBSCRIBE", udp.port),
                                   pbx.udp))
    assert st == 405
    after = sample()
    assert after["OPTIONS"] == 1 and after["REGISTER"] == 1, after
    assert after["other"] == 1 and after["INVITE"] == 0, after
    _, s = parse_metrics(pbx.admin.raw("GET", "/metrics")[2].decode())
    assert s[("pushpbx_calls_total", "")] == 0
    assert s[("pushpbx_calls_answered_total", "")] == 0


def test_page_served_from_memory(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    st, hdr, body = pbx.admin.raw("GET", "/", token="")
    assert st == 200 and hdr["Content-Type"].startswith("text/html")
    assert b"pushpbx admin" in body
    for path, kind in (("/app.js", "text/javascript"),
                       ("/style.css", "text/css")):
        st, hdr, body = pbx.admin.raw("GET", path, token="")
        assert st == 200 and hdr["Content-Type"].startswith(kind), path
        assert len(body) > 500
