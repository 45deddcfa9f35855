"""[wake] wake-path latency metrics (bench/wake-bench.sh reads them).

One call wakes one backgrounded push device: afterwards each histogram,
pushpbx_wake_invite_to_push_seconds and
pushpbx_wake_register_to_invite_seconds, has counted exactly one sample,
and GET /api/wake/latency shows that sample exactly (p50 = p99 = max).
Registrations and calls that wake nothing add no sample. Reuses the
pushsim + daemon + phone harness of wakeharness.py.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wakeharness import (PUSHSIM, VOIP, admin_get,  # noqa: E402
                         apns_token, background)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import env, keys, phones  # noqa: E402,F401

@pytest.fixture(autouse=True)
def _pushsim_built():
    """A missing pushsim fails each test (never a skip)."""
    if not os.path.exists(PUSHSIM):
        pytest.fail("pushsim not built: %s" % PUSHSIM)

NAMES = {
    "invite_to_push": "pushpbx_wake_invite_to_push_seconds",
    "register_to_invite": "pushpbx_wake_register_to_invite_seconds",
}


def histogram(pbx, name):
    """{le: count} plus "count" and "sum" of one histogram in /metrics."""
    out = {}
    for line in admin_get(pbx, "/metrics", raw=True).splitlines():
        if line.startswith(name + "_bucket{le=\""):
            le = line[len(name) + 12:].split("\"")[0]
            out[le] = int(line.split()[-1])
        elif line.startswith(name + "_count "):
            out["count"] = int(line.split()[-1])
        elif line.startswith(name + "_sum "):
            out["sum"] = float(line.split()[-1])
    assert "count" in out and "+Inf" in out, "no histogram " + name
    return out


def check_one_sample(pbx, key):
    h = histogram(pbx, NAMES[key])
    assert h["count"] == 1 and h["+Inf"] == 1, h
    bounds = sorted((float(k), v) for k, v in h.items()
                    if k not in ("count", "sum", "+Inf"))
    # Fine buckets from 50 us to 1 s, cumulative.
    assert bounds[0][0] == 0.00005 and bounds[-1][0] == 1.0
    assert len(bounds) == 14
    assert [v for _, v in bounds] == sorted(v for _, v in bounds)
    assert 0 < h["sum"] < 1.0, h
    lat = admin_get(pbx, "/api/wake/latency")[key]
    assert lat["count"] == 1 and lat["samples"] == 1, lat
    us = lat["p50_us"]
    assert us > 0 and lat["p99_us"] == us and lat["max_us"] == us
    assert lat["min_us"] == us
    assert abs(h["sum"] - us / 1e6) < 2e-6, (h["sum"], us)
    # The sample sits in the first bucket whose bound covers it.
    first = min(b for b, v in bounds if v == 1)
    assert us / 1e6 <= first
    below = [b for b, v in bounds if v == 0]
    assert all(us / 1e6 > b for b in below)


def zero(pbx, key):
    assert histogram(pbx, NAMES[key])["count"] == 0
    assert admin_get(pbx, "/api/wake/latency")[key]["samples"] == 0


def test_one_wake_one_sample_each(env, phones):
    pbx, sim = env(fcm=False)
    lat = admin_get(pbx, "/api/wake/latency")
    assert lat["available"] is True
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    # A plain registration and the background ones wake nothing.
    assert caller.register()["status"] == 200
    for key in NAMES:
        zero(pbx, key)
    call = caller.invite("100")
    sim.wait_push(pn[1])
    assert dev.register(pn=pn)["status"] == 200
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    assert len(dev.invites_for(call)) == 1
    caller.ack2xx(call, final)
    for key in NAMES:
        check_one_sample(pbx, key)


def test_call_to_registered_phone_adds_nothing(env, phones):
    """No push device: no wake, no sample (the proxy's branch_sent
    observer ignores INVITEs no woken device waits for)."""
    pbx, sim = env(fcm=False)
    callee, caller = phones(pbx, "102"), phones(pbx, "101")
    assert callee.register()["status"] == 200
    call = caller.invite("102")
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    caller.ack2xx(call, final)
    for key in NAMES:
        zero(pbx, key)
