"""The admin page in headless Chromium (Debian chromium + npm
playwright-core in tests/integration/browser/node_modules, installed by
scripts/install-deps). Log in with the token, watch a SIPp REGISTER appear
on the dashboard, add an extension and show its QR code; screenshots are
kept in the test's tmp dir (and copied to $PUSHPBX_SCREENSHOT_DIR if set).
"""
import os
import shutil
import subprocess
import time

import pytest

from test_admin import TOKEN, admin_pbx, sipp_register

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "browser")


def test_dashboard_in_chromium(start_pbx, tmp_path):
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not node or not os.path.exists(chromium):
        pytest.fail("node or chromium missing (scripts/install-deps)")
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules",
                                      "playwright-core")):
        pytest.fail("playwright-core missing in %s (scripts/install-deps: "
                    "npm ci)" % BROWSER_DIR)
    pbx = admin_pbx(start_pbx, tmp_path)
    shots = tmp_path / "shots"
    shots.mkdir()
    proc = subprocess.Popen(
        [node, os.path.join(BROWSER_DIR, "dashboard.js"),
         pbx.admin.base + "/", TOKEN, "100", str(shots)],
        cwd=BROWSER_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    lines = []
    try:
        deadline = time.monotonic() + 90
        registered = False
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("STEP logged-in") and not registered:
                rc, out = sipp_register(pbx, "100", "pw100-secret")
                assert rc == 0, out
                registered = True
            if time.monotonic() > deadline:
                break
        rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = "\n".join(lines)
    assert rc == 0, log
    for s in ("bad-token-refused", "logged-in", "registered-visible",
              "qr-shown", "pushes-table", "calls-table", "backup-downloaded"):
        assert "STEP " + s in log, log
    prov = [l for l in lines if l.startswith("PROV ")][0][5:]
    assert prov.startswith(pbx.admin.base + "/prov/")
    for name in ("registrations.png", "extensions.png"):
        png = (shots / name).read_bytes()
        assert png[:4] == b"\x89PNG" and len(png) > 10000
    keep = os.environ.get("PUSHPBX_SCREENSHOT_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        for name in ("registrations.png", "extensions.png"):
            shutil.copy(shots / name, os.path.join(keep, name))
