"""pushpbx --check-config checks the [tls] files when a tls: listener is
configured (the systemd unit's ExecStartPre runs it): a good certificate
passes; a missing file, a key of another certificate and an expired or
not yet valid certificate fail with exit 2 and the file named."""
import subprocess

import pytest

from conftest import BIN
from test_apns_cert import make_ca, make_client


def check(tmp_path, cert, key, listen="tls:127.0.0.1:0"):
    conf = tmp_path / "check.conf"
    conf.write_text("[sip]\nlisten = udp:127.0.0.1:0 %s\n"
                    "[tls]\ncert_file = %s\nkey_file = %s\n"
                    % (listen, cert, key))
    r = subprocess.run([BIN, "--config", str(conf), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("tlspki")
    make_ca(d, "ca", "pushpbx test CA")
    make_client(d, "good", "server", "ca")
    make_client(d, "other", "server", "ca")
    make_client(d, "expired", "server", "ca", start="20200101000000Z",
                end="20200102000000Z")
    make_client(d, "future", "server", "ca", start="20991231000000Z",
                end="21000101000000Z")
    return d


def test_good_certificate_passes(pki, tmp_path):
    rc, out = check(tmp_path, pki / "good.pem", pki / "good.key")
    assert rc == 0 and "OK" in out, out


@pytest.mark.parametrize("cert,key,reason", [
    ("missing.pem", "good.key", "missing.pem"),
    ("good.pem", "other.key", "key values mismatch"),
    ("expired.pem", "expired.key", "has expired"),
    ("future.pem", "future.key", "not valid yet"),
])
def test_bad_tls_files_fail_the_check(pki, tmp_path, cert, key, reason):
    rc, out = check(tmp_path, pki / cert, pki / key)
    assert rc == 2, out
    assert "[tls]" in out and reason in out, out


def test_no_tls_listener_no_tls_check(pki, tmp_path):
    """Without a tls: listener the [tls] files are not used, so they are
    not checked."""
    rc, out = check(tmp_path, pki / "expired.pem", pki / "expired.key",
                    listen="tcp:127.0.0.1:0")
    assert rc == 0, out
