"""What the daemon prints at start: the softphone help lists the configured
extensions, never their passwords (a service's stdout and stderr end up
in the journal)."""
import json
import signal
import subprocess
import time

from conftest import BASE_CONFIG, BIN, sanitizer_report

PASSWORDS = {"100": "Secret-pw-of-100", "101": "Another-pw-101x",
             "102": "third-pw-102-zz"}


def test_start_output_has_no_password(tmp_path):
    conf = BASE_CONFIG.format(workers=1) + \
        "[admin]\nlisten = 127.0.0.1:0\ntoken = %s\nprov_db = %s\n" \
        "[store]\npath = %s\n" % ("t" * 24, tmp_path / "prov.db",
                                  tmp_path / "reg.db")
    for number, pw in PASSWORDS.items():
        conf += "[extension.%s]\nname = Ext %s\npassword = %s\n" % (
            number, number, pw)
    (tmp_path / "p.conf").write_text(conf)
    ready = tmp_path / "ready.json"
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [BIN, "--config", str(tmp_path / "p.conf"), "--ready-file",
             str(ready), "--set", "log.level=debug"],
            stdout=out, stderr=err, cwd=str(tmp_path))
        try:
            deadline = time.monotonic() + 10
            while not ready.exists() and time.monotonic() < deadline:
                assert proc.poll() is None, err_path.read_text()
                time.sleep(0.02)
            assert ready.exists(), "not ready: " + err_path.read_text()
            json.loads(ready.read_text())
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    assert code == 0 and not sanitizer_report(stderr), stderr
    # the help is there, with every extension and its name ...
    assert "Register a softphone" in stdout, stdout
    for number in PASSWORDS:
        assert "user %s" % number in stdout and "Ext %s" % number in stdout
    # ... and no password anywhere, even with debug logging
    for pw in PASSWORDS.values():
        assert pw not in stdout, stdout
        assert pw not in stderr, stderr
    assert all("password" not in l for l in stdout.splitlines()
               if l.strip().startswith("user ")), stdout
