"""The daemon on the PostgreSQL store ([store] backend = postgresql,
docs/store.md), on a private server (pgfixture.py):

- REGISTERs (SIPp, digest) land in PostgreSQL's bindings table, and a
  restarted daemon serves them again from there;
- a server that cannot be reached, a missing connection string and an
  unknown backend each stop the start with exit 1 and their reason, with
  no sanitizer report.
"""
import subprocess

from conftest import BASE_CONFIG, BIN, sanitizer_report
from pgfixture import pg_server  # noqa: F401  (the fixture)
from test_register import contacts, sipp

PG_CONFIG = """
[registrar]
digest_algorithms = md5,sha256
min_expires = 60

[store]
backend = postgresql
postgresql = {conninfo}
flush_ms = 50

[extension.100]
name = Alice
password = pw100

[extension.101]
name = Bob
password = pw101
"""


def test_bindings_in_postgresql_survive_restart(start_pbx, pg_server):
    pg_server.reset()
    extra = PG_CONFIG.format(conninfo=pg_server.conninfo)
    pbx = start_pbx(workers=2, extra=extra)
    for dev in ("a", "b"):
        rc, out, _ = sipp(pbx, "reg_register.xml", device=dev)
        assert rc == 0, out
    pbx.check_clean_exit()
    rows = pg_server.psql("SELECT count(*) FROM bindings WHERE ext='100'")
    assert rows.strip() == "2", rows
    assert pg_server.psql("SELECT max(version) FROM schema_version").strip() \
        == "7"
    pbx2 = start_pbx(workers=2, extra=extra)
    rc, out, last = sipp(pbx2, "reg_fetch.xml")
    assert rc == 0, out
    c = contacts(last)
    assert len(c) == 2, last
    assert any("dev=a" in x for x in c) and any("dev=b" in x for x in c)


def run(conf_path):
    r = subprocess.run([BIN, "--config", str(conf_path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    return r.returncode, r.stderr.decode()


def test_start_fails_with_a_reason(tmp_path):
    conf = tmp_path / "c.conf"
    base = BASE_CONFIG.format(workers=1) + "\n[admin]\nlisten = 127.0.0.1:0\n"
    # Nobody listens there: libpq's message, exit 1.
    conf.write_text(base + "[store]\nbackend = postgresql\n"
                    "postgresql = host=%s dbname=x connect_timeout=2\n"
                    % (tmp_path / "nosock"))
    rc, err = run(conf)
    assert rc == 1, err
    assert "store: postgresql: connect:" in err, err
    assert str(tmp_path / "nosock") in err, err
    assert not sanitizer_report(err), err
    # No connection string.
    conf.write_text(base + "[store]\nbackend = postgresql\n")
    rc, err = run(conf)
    assert rc != 0, err
    assert "needs postgresql" in err, err
    # A backend that does not exist.
    conf.write_text(base + "[store]\nbackend = mysql\n")
    rc, err = run(conf)
    assert rc != 0, err
    assert "mysql" in err and "sqlite or postgresql" in err, err
