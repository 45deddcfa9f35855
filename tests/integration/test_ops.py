"""Running pushpbx as a service ([ops]): the installed tree, the systemd
unit, Type=notify, the journal and the state directory.

- The install tree is made by `cmake --install` of this build into a
  DESTDIR (what `make install DESTDIR=...` does) and checked file by file.
- The unit is checked by systemd's own tools: `systemd-analyze verify`, and
  `systemd-analyze security --offline` for the exposure score.
- Type=notify: the daemon runs with NOTIFY_SOCKET pointing at a datagram
  socket of the test (as systemd sets it) and must send READY=1 once it
  listens, WATCHDOG=1 pings when WATCHDOG_USEC is set, STOPPING=1 on stop.
- The journal: the daemon runs in a private mount namespace (unshare -m)
  where /run/systemd/journal/socket is the test's own socket, so the
  datagrams sd_journal_send writes are read and their fields checked.
"""
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
import types

import pytest

from conftest import BIN, BASE_CONFIG, SIPP_DIR, run_sipp

BUILD_DIR = os.environ.get("PUSHPBX_BUILD_DIR", "")


def need(tool):
    path = shutil.which(tool)
    if not path:
        pytest.fail("%s is required (scripts/install-deps installs it)" % tool)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """DESTDIR tree of this build; returns (destdir, prefix)."""
    if not BUILD_DIR or not os.path.isdir(BUILD_DIR):
        pytest.fail("PUSHPBX_BUILD_DIR not set")
    dest = tmp_path_factory.mktemp("destdir")
    env = dict(os.environ, DESTDIR=str(dest))
    r = subprocess.run([need("cmake"), "--install", BUILD_DIR], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    cache = open(os.path.join(BUILD_DIR, "CMakeCache.txt")).read()
    prefix = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", cache,
                       re.M).group(1)
    return str(dest), prefix


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_install_tree(installed):
    dest, prefix = installed
    root = dest + prefix
    etc = dest + ("/etc" if prefix == "/usr" else prefix + "/etc")
    want = {
        root + "/sbin/pushpbx": 0o755,
        root + "/bin/pushpbxctl": 0o755,
        etc + "/pushpbx/pushpbx.conf": 0o644,
        root + "/lib/systemd/system/pushpbx.service": 0o644,
        root + "/share/man/man8/pushpbx.8": 0o644,
        root + "/share/man/man1/pushpbxctl.1": 0o644,
        root + "/share/man/man5/pushpbx.conf.5": 0o644,
    }
    for path, m in want.items():
        assert os.path.isfile(path), "missing " + path
        assert mode(path) == m, "%s: mode %o, want %o" % (path, mode(path), m)
    # Nothing of the test build leaks into the install (no tests, no
    # pushsim, no demo configuration with its known passwords).
    files = [os.path.relpath(os.path.join(d, f), dest)
             for d, _, fs in os.walk(dest) for f in fs]
    assert not [f for f in files if "test" in os.path.basename(f)], files
    conf = open(etc + "/pushpbx/pushpbx.conf").read()
    assert "demo100" not in conf and not re.search(r"^\[extension\.", conf,
                                                   re.M)
    # The installed configuration is valid for the installed daemon.
    r = subprocess.run([root + "/sbin/pushpbx", "--config",
                        etc + "/pushpbx/pushpbx.conf", "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    # Man pages carry the option tables: every section of the config.
    page = open(root + "/share/man/man5/pushpbx.conf.5").read()
    for section in ("[sip]", "[registrar]", "[store]", "[admin]", "[apns]",
                    "[fcm]", "[push]"):
        assert section in page, section
    page = open(root + "/share/man/man8/pushpbx.8").read()
    assert "state" in page and "\\-\\-config" in page


def staged_unit(installed, tmp_path):
    """The installed unit with its paths moved into the DESTDIR, so that
    systemd-analyze finds the binary and the configuration."""
    dest, prefix = installed
    unit = open(dest + prefix + "/lib/systemd/system/pushpbx.service").read()
    assert "ExecStart=%s/sbin/pushpbx" % prefix in unit, unit
    unit = unit.replace(prefix + "/sbin/", dest + prefix + "/sbin/")
    etc = "/etc" if prefix == "/usr" else prefix + "/etc"
    unit = unit.replace(etc + "/pushpbx/", dest + etc + "/pushpbx/")
    path = tmp_path / "pushpbx.service"
    path.write_text(unit)
    return path, unit


def test_unit_verifies(installed, tmp_path):
    path, unit = staged_unit(installed, tmp_path)
    for line in ("Type=notify", "StateDirectory=pushpbx",
                 "ConfigurationDirectory=pushpbx", "User=pushpbx",
                 "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=",
                 "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                 "PrivateTmp=yes", "RestrictAddressFamilies=",
                 "SystemCallFilter=@system-service"):
        assert line in unit, line
    r = subprocess.run([need("systemd-analyze"), "verify", "--man=no",
                        str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    r = subprocess.run([need("systemd-analyze"), "security", "--offline=yes",
                        "--no-pager", str(path)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for pushpbx.service: ([0-9.]+)",
                  r.stdout)
    assert m, r.stdout + r.stderr
    # docs/install.md reports the score; keep it in the "OK" band.
    assert float(m.group(1)) <= 2.0, r.stdout


def notify_socket(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    s.bind(path)
    s.settimeout(0.2)
    return s, path


def read_until(sock, want, timeout):
    """Collect notify datagrams until one has the line want."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            continue
        got.append(msg)
        if want in msg.split("\n"):
            return got
    pytest.fail("no %s in %r" % (want, got))


def test_notify_ready_watchdog_stopping(start_pbx, tmp_path, monkeypatch):
    sock, path = notify_socket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    pbx = start_pbx(workers=2)
    got = read_until(sock, "READY=1", 10)
    ready = [m for m in got if "READY=1" in m.split("\n")][0]
    assert "MAINPID=%d" % pbx.proc.pid in ready, ready
    # The ready file and READY=1 both mean "listening".
    assert pbx.ready.exists()
    read_until(sock, "WATCHDOG=1", 5)
    got = read_until(sock, "WATCHDOG=1", 5)
    assert pbx.alive()
    pbx.proc.send_signal(signal.SIGTERM)
    read_until(sock, "STOPPING=1", 10)
    assert pbx.stop() == 0
    sock.close()


def test_no_notify_socket_is_fine(start_pbx, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    pbx = start_pbx(workers=1)
    assert pbx.alive()


def parse_journal(datagram):
    """systemd's native journal protocol: KEY=value lines, or KEY, a
    64-bit little-endian length and the binary value."""
    fields, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            k = line
            n = int.from_bytes(datagram[nl + 1:nl + 9], "little")
            v = datagram[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        fields[k.decode()] = v.decode(errors="replace")
    return fields


def test_journal_fields(tmp_path):
    if not BIN:
        pytest.fail("PUSHPBX_BIN not set")
    need("unshare")
    jdir = tmp_path / "journal"
    jdir.mkdir()
    jsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    jsock.bind(str(jdir / "socket"))
    jsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    jsock.settimeout(0.2)
    conf = tmp_path / "pushpbx.conf"
    conf.write_text(BASE_CONFIG.format(workers=1) +
                    "[admin]\nlisten = 127.0.0.1:0\n"
                    "[registrar]\ndigest_algorithms = md5\n"
                    "[store]\npath = pbx.db\n"
                    "[extension.100]\npassword = pw100\n")
    ready = tmp_path / "ready.json"
    # A private /run/systemd in which the journal socket is ours.
    script = ("set -e; mount -t tmpfs tmpfs /run/systemd; "
              "mkdir -p /run/systemd/journal; "
              "touch /run/systemd/journal/socket; "
              "mount --bind '%s' /run/systemd/journal/socket; "
              "exec \"$@\"" % (jdir / "socket"))
    err = open(tmp_path / "stderr.log", "wb")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         script, "sh", BIN, "--config", str(conf), "--ready-file",
         str(ready), "--set", "log.journal=yes"],
        cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert proc.poll() is None, open(tmp_path / "stderr.log").read()
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.02)
        import json
        info = json.loads(ready.read_text())
        ports = {l["transport"]: l["port"] for l in info["listen"]}
        pbx = types.SimpleNamespace(host="127.0.0.1", ports=ports,
                                    dir=str(tmp_path))
        rc, out = run_sipp(pbx, "reg_wrong_password.xml", extra_args=[
            "-inf", os.path.join(SIPP_DIR, "reg_users.csv"),
            "-key", "device", "d1"])
        assert rc == 0, out
        records, deadline = [], time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                records.append(parse_journal(jsock.recv(65536)))
            except socket.timeout:
                if any(r.get("PUSHPBX_EXT") == "100" for r in records):
                    break
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
        err.close()
        jsock.close()
    stderr = open(tmp_path / "stderr.log").read()
    assert rc == 0, stderr
    listening = [r for r in records if "app: listening" in r.get("MESSAGE", "")]
    assert listening, records
    assert listening[0]["PRIORITY"] == "5"  # notice
    assert listening[0]["PUSHPBX_ROOM"] == "app"
    assert listening[0]["SYSLOG_IDENTIFIER"] == "pushpbx"
    failed = [r for r in records if r.get("PUSHPBX_EXT") == "100"]
    assert failed, records
    assert failed[0]["PUSHPBX_CALL_ID"], failed[0]
    assert failed[0]["PRIORITY"] in ("4", "6"), failed[0]
    # Lines went to the journal, not to stderr.
    assert "app: listening" not in stderr, stderr


def test_state_directory(start_pbx, tmp_path, monkeypatch):
    """Relative paths resolve against $STATE_DIRECTORY (systemd), and
    --state-dir wins over it."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    pbx = start_pbx(workers=1, extra="[store]\npath = rel.db\n")
    assert pbx.stop() == 0
    assert (state / "rel.db").exists()
    assert not (pbx.dir / "rel.db").exists()
    other = tmp_path / "other"
    other.mkdir()
    pbx = start_pbx(workers=1, extra="[store]\npath = rel2.db\n",
                    args=["--state-dir", str(other)])
    assert pbx.stop() == 0
    assert (other / "rel2.db").exists()
    assert not (state / "rel2.db").exists()
