"""UDP spreading ([sip] udp_spread): requests from one source address and
port, which the kernel's SO_REUSEPORT hash gives to one worker, are
handed to the worker their Call-ID hashes to, so one busy source (a
trunk, an SBC, a load generator) uses every worker.

Checked through /metrics: pushpbx_worker_sip_requests_total (requests
each worker handled) and pushpbx_worker_udp_steered_total (requests a
worker read and handed on). Retransmissions from that one source must
reach the worker that holds the transaction: each is answered with the
stored response (same To tag), never as a new request.

The default, udp_spread = auto, spreads only when the daemon may use 3 CPUs
or more (on 2, spreading was measured to raise the response time and
lower the highest rate: BENCHMARKS.md, "One UDP source over every
worker").
"""
import os
import re
import urllib.request

from conftest import Udp, header, request, run_sipp, status_of

TOKEN = "spread-test-token-0123456789"
ADMIN = """
[admin]
listen = 127.0.0.1:0
token = %s
""" % TOKEN


def metrics(pbx):
    req = urllib.request.Request(
        "http://127.0.0.1:%d/metrics" % pbx.info["admin_port"],
        headers={"authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for name in ("pushpbx_worker_sip_requests_total",
                 "pushpbx_worker_udp_steered_total"):
        out[name] = {int(w): float(v) for w, v in re.findall(
            r'^%s\{worker="(\d+)"\} (\S+)$' % name, text, re.M)}
    return out


def test_one_sipp_source_uses_every_worker(start_pbx):
    pbx = start_pbx(workers=2, extra=ADMIN, sets=["sip.udp_spread=yes"])
    # 200 OPTIONS, each its own Call-ID, all from SIPp's one UDP socket.
    rc, out = run_sipp(pbx, "options.xml",
                       extra_args=("-m", "200", "-r", "200"), timeout=20)
    assert rc == 0, out
    m = metrics(pbx)
    handled = m["pushpbx_worker_sip_requests_total"]
    steered = m["pushpbx_worker_udp_steered_total"]
    assert sorted(handled) == [0, 1], m
    assert sum(handled.values()) == 200, m
    # Both workers did a real share (the Call-ID hash splits them).
    assert min(handled.values()) >= 40, m
    # One worker read them all and handed about half on.
    assert 40 <= sum(steered.values()) <= 160, m


def test_retransmissions_reach_the_owner(start_pbx):
    pbx = start_pbx(workers=2, extra=ADMIN, sets=["sip.udp_spread=yes"])
    u = Udp()
    try:
        for i in range(40):
            req = request("OPTIONS", u.port, call_id="spread-%d@test" % i)
            first = u.exchange(req, pbx.udp)
            assert status_of(first)[0] == 200
            again = u.exchange(req, pbx.udp)  # the same bytes: a resend
            assert status_of(again)[0] == 200
            # The stored response: a new transaction would carry a new
            # To tag.
            assert header(again, "To") == header(first, "To"), (first, again)
    finally:
        u.close()
    m = metrics(pbx)
    handled = m["pushpbx_worker_sip_requests_total"]
    assert sum(handled.values()) == 80, m
    assert min(handled.values()) > 0, m


def test_spread_off_keeps_the_reading_worker(start_pbx):
    pbx = start_pbx(workers=2, extra=ADMIN, sets=["sip.udp_spread=no"])
    u = Udp()
    try:
        for i in range(40):
            r = u.exchange(request("OPTIONS", u.port,
                                   call_id="nospread-%d@test" % i), pbx.udp)
            assert status_of(r)[0] == 200
    finally:
        u.close()
    m = metrics(pbx)
    assert sorted(m["pushpbx_worker_sip_requests_total"].values()) == [0, 40]
    assert sum(m["pushpbx_worker_udp_steered_total"].values()) == 0, m


def test_auto_spreads_only_with_three_cpus(start_pbx):
    # The default (auto), on whatever machine runs the test: the daemon
    # counts the CPUs it may use as we do (its affinity mask).
    pbx = start_pbx(workers=2, extra=ADMIN)
    u = Udp()
    try:
        for i in range(40):
            r = u.exchange(request("OPTIONS", u.port,
                                   call_id="auto-%d@test" % i), pbx.udp)
            assert status_of(r)[0] == 200
    finally:
        u.close()
    m = metrics(pbx)
    handled = m["pushpbx_worker_sip_requests_total"]
    steered = sum(m["pushpbx_worker_udp_steered_total"].values())
    assert sum(handled.values()) == 40, m
    if len(os.sched_getaffinity(0)) >= 3:
        assert min(handled.values()) > 0 and steered > 0, m
    else:
        assert sorted(handled.values()) == [0, 40], m
        assert steered == 0, m


def test_answer_latency_split_logged_per_worker(start_pbx):
    # Each worker logs at exit how long its UDP answers took, split at the
    # socket (transport/tp.c): read -> answer sent for every answer, and
    # for one datagram in four read, the kernel's receive stamp -> read.
    # Counts only: no timing is asserted.
    pbx = start_pbx(workers=2, sets=["sip.udp_spread=yes"])
    u = Udp()
    try:
        for i in range(40):
            r = u.exchange(request("OPTIONS", u.port,
                                   call_id="lat-%d@test" % i), pbx.udp)
            assert status_of(r)[0] == 200
    finally:
        u.close()
    assert pbx.stop() == 0
    log = pbx.stderr()
    pat = (r"worker (\d) udp latency %s: n=(\d+) p50=\d+us p90=\d+us "
           r"p99=\d+us p99\.9=\d+us max=\d+us")
    handled = dict(re.findall(pat % r"handle \(read -> answer sent\)", log))
    queued = dict(re.findall(
        pat % r"queue \(kernel receive -> read, sampled\)", log))
    total = dict(re.findall(
        pat % r"total \(kernel receive -> answer sent, sampled\)", log))
    # Every answer counted once, on the worker that sent it (both did).
    assert sorted(handled) == ["0", "1"], log
    assert sum(int(n) for n in handled.values()) == 40, log
    # One socket (one source): one worker read all 40 and stamped 10.
    assert [int(n) for n in queued.values()] == [10], log
    # Each stamped request's answer got its total, wherever it was handled.
    assert sum(int(n) for n in total.values()) == 10, log
