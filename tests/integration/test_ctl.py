"""pushpbxctl against a running daemon: tables, --json, exit codes, and
the connectivity check against local servers (no internet in tests)."""
import json
import os
import shutil
import socket
import subprocess
import threading

import pytest

from test_admin import TOKEN, admin_pbx, sipp_register

BUILD = os.environ.get("PUSHPBX_BUILD_DIR", "")
CTL = os.path.join(BUILD, "src", "ctl", "pushpbxctl")


def ctl(pbx, *args, token=TOKEN, env=None):
    if not os.path.exists(CTL):
        pytest.fail("pushpbxctl not built: %s" % CTL)
    cmd = [CTL]
    if pbx is not None:
        cmd += ["--url", pbx.admin.base]
    if token:
        cmd += ["--token", token]
    e = dict(os.environ)
    e.pop("PUSHPBX_TOKEN", None)
    e.update(env or {})
    r = subprocess.run(cmd + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, env=e,
                       cwd=str(pbx.dir) if pbx is not None else None)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def test_ext_commands(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    rc, out, err = ctl(pbx, "ext", "list")
    assert rc == 0, err
    assert out.splitlines()[0].split() == ["NUMBER", "NAME", "ENABLED",
                                           "BINDINGS"]
    assert out.splitlines()[1].split() == ["100", "Alice", "yes", "0"]

    rc, out, err = ctl(pbx, "--json", "ext", "add", "300", "--name", "Carl")
    assert rc == 0, err
    j = json.loads(out)
    assert j["number"] == "300" and len(j["password"]) >= 16
    rc, out, err = ctl(pbx, "ext", "add", "300")
    assert rc == 6 and "409" in err          # conflict
    rc, out, err = ctl(pbx, "ext", "add", "bad number")
    assert rc == 7 and "number" in err       # bad request, field named
    rc, out, err = ctl(pbx, "ext", "passwd", "300")
    assert rc == 0 and "password" in out
    newpw = out.split("password")[1].split()[0]
    r, o = sipp_register(pbx, "300", newpw)
    assert r == 0, o
    rc, out, err = ctl(pbx, "ext", "del", "300")
    assert rc == 0
    rc, out, err = ctl(pbx, "ext", "del", "300")
    assert rc == 5                           # not found


def test_reg_push_prov(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    r, o = sipp_register(pbx, "100", "pw100-secret")
    assert r == 0, o
    rc, out, err = ctl(pbx, "reg", "list")
    assert rc == 0, err
    row = [l for l in out.splitlines() if l.startswith("100")][0]
    assert "udp" in row and "127.0.0.1:" in row and "dev=adm" in row
    # push devices are available (none here: no pn-* parameters)
    assert "not available" not in out and " push " not in out
    rc, out, _ = ctl(pbx, "--json", "reg", "list")
    j = json.loads(out)
    assert j["items"][0]["bindings"][0]["transport"] == "udp"
    assert j["push_available"] is True and j["items"][0]["push"] == []

    rc, out, _ = ctl(pbx, "push", "list")
    assert rc == 0 and out.split()[:3] == ["TIME", "EXT", "PROV"], out
    assert len(out.splitlines()) == 1        # header only: no push yet
    rc, out, err = ctl(pbx, "push", "test", "100")
    assert rc == 5 and "no push device" in err
    rc, out, err = ctl(pbx, "push", "forget", "100")
    assert rc == 5
    rc, out, err = ctl(pbx, "calls")
    assert rc == 0 and out.split()[:4] == ["TIME", "FROM", "TO", "RESULT"]
    assert len(out.splitlines()) == 1        # no call yet

    rc, out, err = ctl(pbx, "prov", "show", "100")
    assert rc == 0, err
    link = out.split("link")[1].split()[0]
    assert "/prov/" in link
    rc, out, _ = ctl(pbx, "prov", "show", "100")
    assert link in out                       # same link when shown again
    rc, out, _ = ctl(pbx, "prov", "show", "100", "--new")
    assert rc == 0 and link not in out
    rc, out, _ = ctl(pbx, "prov", "revoke", "100")
    assert rc == 0
    rc, out, _ = ctl(pbx, "prov", "revoke", "100")
    assert rc == 5


def test_token_sources_and_errors(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    rc, _, err = ctl(pbx, "ext", "list", token="wrong-token-value")
    assert rc == 4 and "401" in err
    rc, _, _ = ctl(pbx, "ext", "list", token=None,
                   env={"PUSHPBX_TOKEN": TOKEN})
    assert rc == 0
    f = tmp_path / "tok"
    f.write_text(TOKEN + "\n")
    rc, _, _ = ctl(pbx, "--token-file", str(f), "ext", "list", token=None)
    assert rc == 0
    rc, _, _ = ctl(pbx, "frobnicate")
    assert rc == 2
    # daemon not there
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = subprocess.run([CTL, "--url", "http://127.0.0.1:%d" % port,
                        "--token", TOKEN, "ext", "list"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert r.returncode == 3


def test_check_failure_prints_firewall_rules():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                # nothing listens there
    r = subprocess.run([CTL, "--timeout", "5", "check", "--apns-url",
                        "https://127.0.0.1:%d" % port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 8, out
    assert "ok    dns" in out and "FAIL  tcp" in out
    assert "443" in out and "2197" in out and "5223" in out
    assert "5228-5230" in out


def test_check_success_against_local_tls(tmp_path):
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.fail("openssl not installed (scripts/install-deps)")
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = subprocess.Popen([openssl, "s_server", "-accept",
                            "127.0.0.1:%d" % port, "-cert", str(crt), "-key",
                            str(key), "-www", "-quiet"],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                threading.Event().wait(0.05)
        r = subprocess.run([CTL, "--timeout", "5", "check", "--apns-url",
                            "https://127.0.0.1:%d" % port, "--cacert",
                            str(crt)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        out = r.stdout.decode()
        assert r.returncode == 0, out
        assert "ok    tls" in out and "ok    http" in out
        assert "all push services reachable" in out
    finally:
        srv.terminate()
        srv.wait(timeout=10)
