"""bench/tls_driver, the TLS load driver of bench/tls-bench.sh, against a
real pushpbx: with -P 4 the parent gets each process's results whole.

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


def test_processes_report_every_connection(start_pbx, certs):  # noqa: F811
    drv = os.path.join(BUILD, "bench", "tls_driver")
    if not os.access(drv, os.X_OK):
        pytest.fail("%s missing (PUSHPBX_BUILD_DIR, target tls_driver)" % drv)
    pbx = start_tls(start_pbx, certs, extra=USERS)
    r = subprocess.run(
        [drv, "-t", "%s:%d" % pbx.tls_addr, "-m", "idle", "-c", "40",
         "-d", "1", "-P", "4", "-u", "1000", "-n", "40", "-w", "pw",
         "-i", "20"],
        capture_output=True, text=True, timeout=120,
        # a bench tool: what it holds at exit is not a leak to report
        env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, r.stdout + r.stderr
    m = re.search(r"connections (\d+) registered and idle, errors (\d+)",
                  line[0])
    assert m, line[0]
    assert (int(m.group(1)), int(m.group(2))) == (40, 0), line[0]
    assert r.returncode == 0, r.stderr
