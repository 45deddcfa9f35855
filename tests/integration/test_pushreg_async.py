"""A push REGISTER's 200 waits for its device's commit, but the SIP worker
does not ([wake-room] item 2, asynchronous commit).

Another process holds the database's write lock (BEGIN IMMEDIATE from
python3's sqlite3, as an operator's sqlite3 shell would), so the store's
writer cannot commit. The daemon runs ONE worker:

- a push REGISTER that adds a device stays unanswered (parked), while an
  OPTIONS sent after it on the same socket, to the same worker, is
  answered at once; a retransmission of the REGISTER is absorbed by its
  server transaction (no answer, no second commit); once the lock is
  released the 200 comes, exactly once, and the device row is on disk.
  (Before: the worker blocked in store_commit for the commit timeout,
  answered the REGISTER 500 and only then the OPTIONS.)
- a commit that does not come within the commit timeout (2 s) is answered
  500, and the next REGISTER of the same device writes it again (the
  unsynced rule) and gets its 200.
- SIGTERM while a REGISTER is parked: the graceful drain waits for it (the
  200 comes once the lock goes); a second SIGTERM (stop now) answers it
  503 with Retry-After. The daemon exits cleanly either way (ASan: the
  commit that reports after the worker stopped frees what it holds).
"""
import re
import signal
import socket
import sqlite3
import time
import uuid

from wakeharness import VOIP, apns_token, digest
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import env, keys  # noqa: F401

COMMIT_TIMEOUT_S = 2.0  # PUSHDEV_COMMIT_TIMEOUT_MS


class Ua:
    """A raw UDP UA: every message it sends is kept, so a retransmission
    is the same bytes (same branch)."""

    def __init__(self, pbx, ext="100"):
        self.pbx, self.ext = pbx, ext
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:8]
        self.inst = str(uuid.uuid4())
        self.cseq = 0

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendto(data, self.pbx.udp)

    def recv(self, timeout):
        """The next message, or None after timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(70000)
        except socket.timeout:
            return None
        return data.decode(errors="replace")

    def register(self, token, authz=""):
        self.cseq += 1
        return ("REGISTER sip:test.local SIP/2.0\r\n"
                "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:%s@test.local>;tag=%s\r\n"
                "To: <sip:%s@test.local>\r\nCall-ID: %s\r\n"
                "CSeq: %d REGISTER\r\n"
                "Contact: <sip:%s@127.0.0.1:%d;pn-provider=apns;pn-prid=%s;"
                "pn-param=%s>;+sip.instance=\"<urn:uuid:%s>\"\r\n"
                "Expires: 300\r\n%sContent-Length: 0\r\n\r\n" %
                (self.port, uuid.uuid4().hex[:16], self.ext, self.tag,
                 self.ext, self.call_id, self.cseq, self.ext, self.port,
                 token, VOIP, self.inst, authz)).encode()

    def authed_register(self, token):
        """The REGISTER with credentials (after its 401), not yet sent."""
        self.send(self.register(token))
        r = self.recv(5)
        assert r and r.startswith("SIP/2.0 401"), r
        chal = re.search(r"(?im)^WWW-Authenticate:\s*(.*)$", r).group(1)
        authz = "Authorization: %s\r\n" % digest(
            chal.strip(), self.ext, "pw" + self.ext, "REGISTER",
            "sip:test.local")
        return self.register(token, authz)

    def options(self):
        branch = uuid.uuid4().hex[:16]
        self.send(("OPTIONS sip:test.local SIP/2.0\r\n"
                   "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n"
                   "Max-Forwards: 70\r\nFrom: <sip:%s@test.local>;tag=%s\r\n"
                   "To: <sip:test.local>\r\nCall-ID: %s\r\n"
                   "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" %
                   (self.port, branch, self.ext, self.tag,
                    uuid.uuid4().hex)).encode())
        return branch

    def until(self, pred, timeout):
        """Messages received until one satisfies pred (included), in
        order; fails if none does within timeout."""
        got, end = [], time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            m = self.recv(left) if left > 0 else None
            assert m is not None, "nothing matching within %.1f s; got %r" % (
                timeout, [x.split("\r\n", 1)[0] for x in got])
            got.append(m)
            if pred(m):
                return got


def is_options_answer(branch):
    return lambda m: m.startswith("SIP/2.0") and branch in m


def is_register_answer(m):
    return m.startswith("SIP/2.0") and re.search(r"(?im)^CSeq:.*REGISTER", m)


def status(m):
    return int(m.split(" ", 2)[1])


class Lock:
    """Another process's write lock on the daemon's database."""

    def __init__(self, path):
        self.db = sqlite3.connect(str(path), isolation_level=None,
                                  timeout=10)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self):
        if self.db:
            self.db.execute("ROLLBACK")
            self.db.close()
            self.db = None


def rows(pbx, token):
    db = sqlite3.connect(str(pbx.dir / "pbx.db"), timeout=10)
    try:
        return db.execute("SELECT ext FROM push_devices WHERE prid=?",
                          (token,)).fetchall()
    finally:
        db.close()


def park(pbx, ua, token):
    """Lock the database, send the authenticated push REGISTER and prove
    that the worker still answers an OPTIONS sent after it, with no
    answer to the REGISTER. Returns (lock, register bytes, sent time)."""
    reg = ua.authed_register(token)
    lock = Lock(pbx.dir / "pbx.db")
    t0 = time.monotonic()
    ua.send(reg)
    b = ua.options()
    got = ua.until(is_options_answer(b), 1.5)
    assert not [m for m in got if is_register_answer(m)], (
        "the REGISTER was answered before the OPTIONS sent after it: the "
        "worker waited for the store", [m.split("\r\n", 1)[0] for m in got])
    assert status(got[-1]) == 200
    return lock, reg, t0


def test_worker_answers_while_push_register_waits(env):
    pbx, _ = env(workers=1)
    ua = Ua(pbx)
    token = apns_token()
    lock, reg, t0 = park(pbx, ua, token)
    try:
        # A retransmission is absorbed by the parked server transaction.
        ua.send(reg)
        b = ua.options()
        got = ua.until(is_options_answer(b), 1.5)
        assert [m.split("\r\n", 1)[0] for m in got] == [
            "SIP/2.0 200 OK"], "the retransmission got an answer"
        assert rows(pbx, token) == []  # not on disk: the lock holds
    finally:
        lock.release()
    # The commit goes through now: the 200, and the row is on disk.
    got = ua.until(is_register_answer, COMMIT_TIMEOUT_S + 3)
    assert [m for m in got if is_register_answer(m)] == got[-1:]
    assert status(got[-1]) == 200, got[-1]
    assert time.monotonic() - t0 < COMMIT_TIMEOUT_S, "answered late"
    assert 'Feature-Caps: *;+sip.pns="apns"' in got[-1]
    assert rows(pbx, token) == [("100",)]
    # Exactly one answer to the REGISTER (the retransmission added none).
    b = ua.options()
    got = ua.until(is_options_answer(b), 3)
    assert [m for m in got if is_register_answer(m)] == []
    ua.close()


def test_commit_timeout_500_then_rewritten(env):
    pbx, _ = env(workers=1)
    ua = Ua(pbx)
    token = apns_token()
    lock, _, t0 = park(pbx, ua, token)
    try:
        got = ua.until(is_register_answer, COMMIT_TIMEOUT_S + 5)
        took = time.monotonic() - t0
        assert got[-1].startswith("SIP/2.0 500 Push Device Not Stored"), (
            got[-1])
        assert took >= COMMIT_TIMEOUT_S - 0.1, took
    finally:
        lock.release()
    # The device stayed unsynced: the same REGISTER again writes it.
    ua.send(ua.authed_register(token))
    got = ua.until(is_register_answer, 5)
    assert status(got[-1]) == 200, got[-1]
    assert rows(pbx, token) == [("100",)]
    ua.close()


def test_sigterm_drain_waits_for_the_commit(env):
    pbx, _ = env(workers=1)
    ua = Ua(pbx)
    token = apns_token()
    lock, _, _ = park(pbx, ua, token)
    try:
        pbx.proc.send_signal(signal.SIGTERM)
        assert pbx.wait_log("stopping: ending calls")
        assert pbx.alive()  # draining: the parked REGISTER holds it
    finally:
        lock.release()
    got = ua.until(is_register_answer, COMMIT_TIMEOUT_S + 3)
    assert status(got[-1]) == 200, got[-1]
    assert pbx.stop() == 0
    assert rows(pbx, token) == [("100",)]
    ua.close()


def test_stop_now_answers_parked_503(env):
    pbx, _ = env(workers=1)
    ua = Ua(pbx)
    lock, _, _ = park(pbx, ua, apns_token())
    try:
        pbx.proc.send_signal(signal.SIGTERM)
        assert pbx.wait_log("stopping: ending calls")
        pbx.proc.send_signal(signal.SIGTERM)  # second: stop now
        got = ua.until(is_register_answer, COMMIT_TIMEOUT_S - 0.5)
        assert status(got[-1]) == 503, got[-1]
        assert re.search(r"(?im)^Retry-After:\s*\d+", got[-1])
    finally:
        lock.release()
    # It is exiting already: wait (another SIGTERM would find the default
    # action once the daemon closed its signal handles).
    assert pbx.proc.wait(timeout=10) == 0
    assert pbx.stop() == 0
    ua.close()
