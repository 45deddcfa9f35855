"""Availability of the admin server under slow clients and slow pushes.

- Slow partial requests (a slowloris: a header line, then one byte now
  and then) from one source must not take the page, the API, /prov and
  /metrics away from other sources: [admin] max_connections_per_ip bounds
  what one source holds, and [admin] request_timeout_s bounds how long a
  request may take to arrive, however steadily it drips.
- A test push or push check towards a provider that never answers runs on
  an admin job thread: every other route keeps answering meanwhile, and
  the push route still gets its (failed) answer.

The slow sockets are bound to 127.0.0.2 (all of 127/8 is loopback) so the
per-source limit is what protects this test's own 127.0.0.1 requests.
Counts (70 connections) and times (a few seconds) are bounded.
"""
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import BASE_CONFIG, BIN
from test_admin import TOKEN, admin_pbx
from wakeharness import (PUSHSIM, VOIP, admin_get, apns_token, background)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import env, keys, phones  # noqa: F401

SLOW_SRC = "127.0.0.2"
SLOW_COUNT = 70
BOUND_S = 2.0          # a route must answer within this while under stress
WAKE_TOKEN = "wake-test-token-0123456789"  # wakeharness.CONF [admin] token


def timed_get(port, path, token, timeout=BOUND_S):
    """(status, seconds) of one GET from 127.0.0.1; status is None when the
    request failed (refused, reset, timed out)."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 headers={"Authorization": "Bearer " + token})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            st = r.status
    except urllib.error.HTTPError as e:
        st = e.code
    except OSError:
        st = None
    return st, time.monotonic() - t0


class Slowloris:
    """count connections from src, each sending a partial request and
    then one byte every drip_s seconds from a thread, until close()."""

    def __init__(self, port, count, src=SLOW_SRC, drip_s=1.0):
        self.socks = []
        self.stop = threading.Event()
        for _ in range(count):
            s = socket.socket()
            s.bind((src, 0))
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: pbx\r\nX-Slow: ")
            except OSError:
                s.close()          # refused by a limit: fine
                continue
            self.socks.append(s)
        self.thread = threading.Thread(target=self._drip, args=(drip_s,),
                                       daemon=True)
        self.thread.start()

    def _drip(self, drip_s):
        while not self.stop.wait(drip_s):
            for s in self.socks:
                try:
                    s.send(b"a")
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()


def test_slow_partial_requests_do_not_starve_other_sources(start_pbx,
                                                           tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    port = pbx.info["admin_port"]
    st, _ = pbx.admin.call("POST", "/api/extensions/100/prov")
    assert st == 201
    link = pbx.admin.call("GET", "/api/extensions/100/prov")[1]["url"]
    prov_path = link[link.index("/prov/"):]

    slow = Slowloris(port, SLOW_COUNT)
    try:
        # Three rounds over about three seconds: the slow connections keep
        # dripping (each drip would reset an idle timer) the whole time.
        worst = 0.0
        for _ in range(3):
            for path in ("/metrics", "/", "/api/status", prov_path):
                st, secs = timed_get(port, path, TOKEN)
                assert st == 200, "%s: %r after %.2f s with %d slow " \
                    "connections open" % (path, st, secs, len(slow.socks))
                worst = max(worst, secs)
            time.sleep(1.0)
        print("worst answer with %d slow connections open: %.0f ms" %
              (len(slow.socks), worst * 1000))
        assert worst < BOUND_S
    finally:
        slow.close()


def test_request_must_arrive_within_request_timeout(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path,
                    admin_extra="request_timeout_s = 2")
    port = pbx.info["admin_port"]
    s = socket.socket()
    s.bind((SLOW_SRC, 0))
    s.connect(("127.0.0.1", port))
    t0 = time.monotonic()
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: pbx\r\nX-Slow: ")
    # One byte every 0.3 s: never idle, never finished. The server must
    # close it about 2 s after it opened (the event awaited: EOF/reset).
    s.settimeout(0.3)
    closed_after = None
    while time.monotonic() - t0 < 8:
        try:
            if s.recv(4096) == b"":
                closed_after = time.monotonic() - t0
                break
        except socket.timeout:
            pass
        except OSError:
            closed_after = time.monotonic() - t0
            break
        try:
            s.send(b"a")
        except OSError:
            closed_after = time.monotonic() - t0
            break
    s.close()
    assert closed_after is not None, "slow request still open after 8 s"
    print("dripping request closed after %.2f s" % closed_after)
    assert 1.5 <= closed_after <= 5.0
    # A whole request in time is served as usual.
    assert timed_get(port, "/api/status", TOKEN)[0] == 200


def check_config(tmp_path, admin_lines):
    conf = tmp_path / "check.conf"
    conf.write_text(BASE_CONFIG.format(workers=1) +
                    "[admin]\nlisten = 127.0.0.1:0\n%s\n" % admin_lines)
    r = subprocess.run([BIN, "--config", str(conf), "--check-config"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    return r.returncode, r.stderr.decode()


def test_limit_options(tmp_path):
    rc, err = check_config(tmp_path, "max_connections = 32\n"
                           "max_connections_per_ip = 0\n"
                           "request_timeout_s = 30")
    assert rc == 0, err
    for bad in ("request_timeout_s = 0", "max_connections = 0",
                "max_connections_per_ip = 100000",
                "max_connections = 8\nmax_connections_per_ip = 9"):
        rc, err = check_config(tmp_path, bad)
        assert rc != 0, bad
        assert bad.split("\n")[-1].split()[0] in err, err


# --- slow pushes ---------------------------------------------------------

def post(port, path, timeout=40):
    req = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (port, path), data=b"", method="POST",
        headers={"Authorization": "Bearer " + WAKE_TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def in_thread(fn, *args):
    box = {}

    def run():
        box["t0"] = time.monotonic()
        box["result"] = fn(*args)
        box["secs"] = time.monotonic() - box["t0"]

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def assert_routes_answer(port, rounds=3):
    """Every route answers within BOUND_S; returns the worst time."""
    worst = 0.0
    for _ in range(rounds):
        for path in ("/metrics", "/", "/api/status", "/api/extensions",
                     "/api/registrations"):
            st, secs = timed_get(port, path, WAKE_TOKEN)
            assert st == 200, "%s: %r after %.2f s" % (path, st, secs)
            worst = max(worst, secs)
    return worst


def test_test_push_to_hanging_provider_blocks_nothing(env, phones):
    if not os.path.exists(PUSHSIM):
        pytest.fail("pushsim not built: %s" % PUSHSIM)
    pbx, sim = env()
    port = pbx.info["admin_port"]
    tok = apns_token()
    background(phones(pbx, "100"), ("apns", tok, VOIP))
    sim.fault(provider="any", action="hang", count=20)

    t, box = in_thread(post, port, "/api/extensions/100/push/test")
    sim.wait_push(tok)                  # the request reached the provider
    worst = assert_routes_answer(port)
    # The check towards the same hanging providers runs beside the test
    # push, not after it.
    t2, box2 = in_thread(post, port, "/api/push/check")
    worst = max(worst, assert_routes_answer(port))
    assert t.is_alive(), "the test push should still be waiting"
    print("other routes during a test push and a check to a hanging "
          "provider: worst %.0f ms" % (worst * 1000))
    assert worst < BOUND_S

    t.join(30)
    t2.join(30)
    assert not t.is_alive() and not t2.is_alive()
    st, j = box["result"]
    assert st == 200, j
    assert j["status"] != "delivered" and j["devices"][0]["status"] != \
        "delivered", j
    st, j = box2["result"]
    assert st == 200 and j["ok"] is False, j
    assert box2["secs"] < 15, "check queued behind the test push"
    # the device is still there (a hang is not a dead token)
    assert admin_get(pbx, "/api/devices")["items"][0]["ext"] == "100"
