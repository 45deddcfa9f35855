"""Command line and configuration: --check-config, --set, --help-config and
the generated docs, signals."""
import os
import re
import signal
import subprocess

from conftest import (BASE_CONFIG, BIN, SOURCE_DIR, header, request,
                      sanitizer_report, status_of)


def run(args, timeout=20):
    r = subprocess.run([BIN] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def test_check_config_good(tmp_path):
    conf = tmp_path / "good.conf"
    conf.write_text(BASE_CONFIG.format(workers=1))
    rc, out, err = run(["--config", str(conf), "--check-config"])
    assert rc == 0, err
    assert "OK" in out
    assert not sanitizer_report(err)


def test_check_config_reference_file(tmp_path):
    """The reference file of make run. Its [tls] names the demo certificate
    that scripts/run makes in var/; a certificate made here stands in for
    it (--check-config loads the TLS files)."""
    conf = os.path.join(SOURCE_DIR, "etc", "pushpbx.conf")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    rc, out, err = run(["--config", conf, "--check-config",
                        "--set", "tls.cert_file=%s" % cert,
                        "--set", "tls.key_file=%s" % key])
    assert rc == 0, err
    # Without those files the check names the missing demo certificate.
    rc, out, err = run(["--config", conf, "--check-config",
                        "--set", "tls.cert_file=%s" % (tmp_path / "no.pem")])
    assert rc == 2 and "no.pem" in err, err


def test_check_config_bad_key(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[sip]\ndomain = x\n\n[log]\nlevel = info\nnosuch = 1\n")
    rc, out, err = run(["--config", str(conf), "--check-config"])
    assert rc == 2
    assert "%s:6:" % conf in err, err
    assert "nosuch" in err


def test_check_config_bad_values(tmp_path):
    cases = [
        ("[sip]\nworkers = 65\n", ":2:", "out of range"),
        ("[sip]\nt1_ms = abc\n", ":2:", "not an unsigned number"),
        ("[log]\nlevel = loud\n", ":2:", "not one of"),
        ("\n\n[nosuch]\nx = 1\n", ":3:", "unknown section"),
        ("[sip]\nlisten = udp:1.2.3.4\n", "[sip]", "listen"),
        ("[sip]\nt1_ms = 5000\nt2_ms = 4000\n", "[sip]", "t2_ms"),
    ]
    for text, where, what in cases:
        conf = tmp_path / "c.conf"
        conf.write_text(text)
        rc, out, err = run(["--config", str(conf), "--check-config"])
        assert rc == 2, (text, err)
        assert where in err and what in err, (text, err)


def test_missing_config_file(tmp_path):
    rc, out, err = run(["--config", str(tmp_path / "none.conf"),
                        "--check-config"])
    assert rc == 2
    assert "cannot open" in err


def test_usage_errors():
    assert run([])[0] == 2
    assert run(["--bogus"])[0] == 2
    rc, out, _ = run(["--help"])
    assert rc == 0 and "--config" in out
    rc, out, _ = run(["--version"])
    assert rc == 0 and out.startswith("pushpbx ")


def test_set_errors_name_set(tmp_path):
    conf = tmp_path / "good.conf"
    conf.write_text(BASE_CONFIG.format(workers=1))
    rc, _, err = run(["--config", str(conf), "--check-config",
                      "--set", "sip.workers=100"])
    assert rc == 2
    assert "--set sip.workers=100" in err
    rc, _, err = run(["--config", str(conf), "--check-config",
                      "--set", "sip.nokey=1"])
    assert rc == 2 and "--set" in err


def test_set_overrides_file(start_pbx, udp):
    # The file says workers = 1 and no user agent; --set changes the log
    # level (visible in stderr) and the worker count (in the start line).
    p = start_pbx(workers=1, sets=("sip.workers=2", "log.level=debug",
                                   "sip.domain=override.test"))
    text = p.stderr()
    assert "2 workers" in text, text
    assert "domain override.test" in text, text
    assert status_of(udp.exchange(request("OPTIONS", udp.port),
                                  p.udp))[0] == 200


def test_listening_lines_and_ready_file(start_pbx):
    p = start_pbx(workers=1)
    text = p.stderr()
    assert p.info["pid"] == p.proc.pid
    kinds = sorted(l["transport"] for l in p.info["listen"])
    assert kinds == ["tcp", "udp"]
    for l in p.info["listen"]:
        assert l["host"] == "127.0.0.1" and l["port"] > 0
        assert "listening %s:127.0.0.1:%d" % (l["transport"], l["port"]) \
            in text, text


def test_sigterm_and_sigint_clean_exit(start_pbx, udp):
    for sig in (signal.SIGTERM, signal.SIGINT):
        p = start_pbx(workers=2)
        assert status_of(udp.exchange(request("OPTIONS", udp.port),
                                      p.udp))[0] == 200
        assert p.stop(sig) == 0, p.stderr()
        assert "stopped" in p.stderr()
        assert not sanitizer_report(p.stderr()), p.stderr()


def test_help_config_matches_docs():
    rc, out, _ = run(["--help-config"])
    assert rc == 0
    for key in ("listen", "domain", "realm", "workers", "user_agent",
                "t1_ms", "t2_ms", "t4_ms", "max_connections",
                "tcp_idle_timeout_s", "level"):
        assert re.search(r"^  %s = " % key, out, re.M), key
    rc, md, _ = run(["--help-config-md"])
    assert rc == 0
    doc = open(os.path.join(SOURCE_DIR, "docs", "configuration.md")).read()
    begin = "<!-- BEGIN GENERATED: pushpbx --help-config-md -->\n"
    end = "<!-- END GENERATED -->"
    assert begin in doc and end in doc
    generated = doc.split(begin, 1)[1].split(end, 1)[0]
    assert generated.strip() == md.strip(), \
        "docs/configuration.md is stale: run scripts/gen-config-doc"


def test_startup_failures_exit_1_cleanly(tmp_path):
    # A TCP port held by another socket (without SO_REUSEPORT) cannot be
    # bound: exit 1, everything released (no sanitizer report).
    import socket
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        conf = tmp_path / "c.conf"
        conf.write_text("[sip]\nlisten = udp:127.0.0.1:0 tcp:127.0.0.1:%d\n"
                        "workers = 2\n" % held.getsockname()[1])
        rc, _, err = run(["--config", str(conf)])
        assert rc == 1, err
        assert "tcp:127.0.0.1:%d" % held.getsockname()[1] in err, err
        assert not sanitizer_report(err), err
    finally:
        held.close()
    # An unwritable ready file: exit 1 after starting the workers.
    conf.write_text(BASE_CONFIG.format(workers=2))
    rc, _, err = run(["--config", str(conf), "--ready-file",
                      str(tmp_path / "no" / "such" / "dir" / "r.json")])
    assert rc == 1, err
    assert "cannot write ready file" in err
    assert not sanitizer_report(err), err
