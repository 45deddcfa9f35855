"""bench/tls_driver, the TLS load driver of bench/tls-bench.sh, against a
real pushpbx: with -P 4 the parent gets each process's results whole, and
-m reg's digest answers (built from prebuilt parts, HA1 cached per user)
are accepted registration after registration.

The defect: the driver's processes wrote their result structs (400 KB
each, more than PIPE_BUF) into one shared pipe; processes that finished
at the same moment had their writes interleaved, and the parent summed
garbage (-m idle -c 4000 -P 2 reported 2,000 connections and twice the
memory per connection; the handshake mode printed absurd CPU figures).
"""
import os
import re
import subprocess

import pytest

from test_tls import certs, start_tls  # noqa: F401 (certs: fixture)

BUILD = os.environ.get("PUSHPBX_BUILD_DIR", "")
USERS = "".join("[extension.%d]\npassword = pw%d\n" % (u, u)
                for u in range(1000, 1040))


def run_driver(pbx, *args):
    """The driver's RESULT line and its exit status."""
    drv = os.path.join(BUILD, "bench", "tls_driver")
    if not os.access(drv, os.X_OK):
        pytest.fail("%s missing (PUSHPBX_BUILD_DIR, target tls_driver)" % drv)
    r = subprocess.run(
        [drv, "-t", "%s:%d" % pbx.tls_addr, "-u", "1000", "-n", "40",
         "-w", "pw"] + list(args),
        capture_output=True, text=True, timeout=120,
        # a bench tool: what it holds at exit is not a leak to report
        env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, r.stdout + r.stderr
    return line[0], r


def test_processes_report_every_connection(start_pbx, certs):  # noqa: F811
    pbx = start_tls(start_pbx, certs, extra=USERS)
    line, r = run_driver(pbx, "-m", "idle", "-c", "40", "-d", "1", "-P", "4",
                         "-i", "20")
    m = re.search(r"connections (\d+) registered and idle, errors (\d+)",
                  line)
    assert m, line
    assert (int(m.group(1)), int(m.group(2))) == (40, 0), line
    assert r.returncode == 0, r.stderr


def test_reg_mode_registers_over_and_over(start_pbx, certs):  # noqa: F811
    """Every REGISTER/401/REGISTER/200 of the window completes: a wrong
    digest (403), a wrong CSeq or a lost response counts as an error."""
    pbx = start_tls(start_pbx, certs, extra=USERS)
    line, r = run_driver(pbx, "-m", "reg", "-c", "8", "-d", "1", "-P", "2")
    m = re.search(r"connections 8, (\d+) registrations/s \((\d+) REGISTER/s"
                  r"\).* errors (\d+)", line)
    assert m, line
    regs, reqs, errors = (int(g) for g in m.groups())
    assert errors == 0 and regs > 0, line
    # two answered REGISTERs a registration, plus at most one 401 per
    # connection left mid-registration when the window closes (rates are
    # rounded to whole numbers each)
    assert 2 * regs - 1 <= reqs <= 2 * regs + 8 + 1, line
    assert r.returncode == 0, r.stderr
