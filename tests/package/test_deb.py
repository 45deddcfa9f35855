"""The Debian package made by `make deb` (scripts/make-deb runs this).

Checks the package with Debian's tools: its file list and modes
(dpkg-deb -c), its control data (dpkg-deb -I: dependencies, conffiles,
maintainer scripts) and lintian (no error or warning). PUSHPBX_DEB names
the .deb.
"""
import os
import re
import subprocess

import pytest

DEB = os.environ.get("PUSHPBX_DEB", "")


@pytest.fixture(scope="module")
def deb():
    if not DEB or not os.path.isfile(DEB):
        pytest.fail("PUSHPBX_DEB not set or missing: %r (make deb)" % DEB)
    return DEB


def run(*argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_contents(deb):
    listing = run("dpkg-deb", "-c", deb)
    files = {}
    for line in listing.splitlines():
        parts = line.split()
        files[parts[-1].lstrip(".")] = parts[0]
    want = {
        "/usr/sbin/pushpbx": "-rwxr-xr-x",
        "/usr/bin/pushpbxctl": "-rwxr-xr-x",
        "/etc/pushpbx/pushpbx.conf": "-rw-r--r--",
        "/lib/systemd/system/pushpbx.service": "-rw-r--r--",
        "/usr/share/man/man8/pushpbx.8.gz": "-rw-r--r--",
        "/usr/share/man/man1/pushpbxctl.1.gz": "-rw-r--r--",
        "/usr/share/man/man5/pushpbx.conf.5.gz": "-rw-r--r--",
        "/usr/share/doc/pushpbx/copyright": "-rw-r--r--",
    }
    for path, m in want.items():
        assert files.get(path) == m, (path, files.get(path))
    # No test programs, emulator or demo state in the package.
    assert not [f for f in files if "pushsim" in f or "/var/" in f], files


def test_control(deb):
    info = run("dpkg-deb", "-I", deb)
    depends = re.search(r"^ Depends: (.*)$", info, re.M).group(1)
    for lib in ("libuv1", "libssl3", "libcurl4", "libsqlite3-0",
                "libmicrohttpd12", "libjansson4", "libsystemd0", "adduser"):
        assert lib in depends, (lib, depends)
    assert re.search(r"^ Section: net$", info, re.M), info
    assert re.search(r"^ Package: pushpbx$", info, re.M), info


def test_maintainer_scripts(deb, tmp_path):
    run("dpkg-deb", "-e", deb, str(tmp_path / "DEBIAN"))
    d = tmp_path / "DEBIAN"
    assert (d / "conffiles").read_text().split() == ["/etc/pushpbx/pushpbx.conf"]
    postinst = (d / "postinst").read_text()
    assert "adduser --system" in postinst
    assert "admin.token" in postinst
    # debhelper's systemd snippets: enable and start the unit.
    assert "deb-systemd-helper" in postinst and "pushpbx.service" in postinst
    assert "purge" in (d / "postrm").read_text()


def test_lintian(deb):
    r = subprocess.run(["lintian", "--fail-on", "error,warning", deb],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    tags = [l for l in r.stdout.splitlines() if re.match(r"^[EW]: ", l)]
    assert not tags, tags
