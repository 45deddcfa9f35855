"""REGISTER through the real daemon: SIPp scenarios with digest auth and an
injection CSV (tests/integration/sipp/reg_*.xml, reg_users.csv), plus raw
UDP exchanges for what SIPp cannot do (SHA-256 digest, malformed input).

SIPp 3.6 only computes MD5 digests and reads the first challenge, so the
SIPp daemons run with digest_algorithms = md5,sha256; the default order
(SHA-256 first) is checked with hashlib below.
"""
import hashlib
import os
import re
import shutil
import socket
import subprocess
import uuid

import pytest

from conftest import SIPP_DIR, free_port, header, status_of

REG_CONFIG = """
[registrar]
digest_algorithms = {algs}
min_expires = 60
auth_fail_threshold = {threshold}

[store]
path = {db}
flush_ms = 50

[extension.100]
name = Alice
password = pw100

[extension.101]
name = Bob
password = pw101
"""


def reg_pbx(start_pbx, tmp_path, algs="md5,sha256", threshold=10,
            db=None):
    db = db or str(tmp_path / "reg.db")
    return start_pbx(workers=2, extra=REG_CONFIG.format(
        algs=algs, threshold=threshold, db=db))


def sipp(pbx, scenario, device="a", transport="u1", timeout=10, port=None,
         local_ip="127.0.0.1"):
    """Run one SIPp call from local_ip (any 127/8 address is local on
    Linux); returns (rc, output, last message received)."""
    exe = shutil.which("sipp")
    if not exe:
        pytest.fail("sipp not installed (scripts/install-deps)")
    tcp = transport != "u1"
    dest = pbx.ports["tcp" if tcp else "udp"]
    tag = uuid.uuid4().hex[:8]
    msglog = os.path.join(str(pbx.dir), "msgs-%s.log" % tag)
    errlog = os.path.join(str(pbx.dir), "errs-%s.log" % tag)
    cmd = [exe, "%s:%d" % (pbx.host, dest),
           "-sf", os.path.join(SIPP_DIR, scenario),
           "-inf", os.path.join(SIPP_DIR, "reg_users.csv"),
           "-key", "device", device,
           "-t", transport, "-i", local_ip, "-mi", "127.0.0.1",
           "-p", str(port or free_port(socket.SOCK_STREAM if tcp
                                       else socket.SOCK_DGRAM)),
           "-cp", str(free_port()), "-mp", str(free_port(pair=True)),
           "-m", "1", "-timeout", "%ds" % timeout, "-timeout_error",
           "-trace_err", "-error_file", errlog,
           "-trace_msg", "-message_file", msglog, "-nostdin"]
    r = subprocess.run(cmd, cwd=str(pbx.dir), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout + 10)
    out = " ".join(cmd) + "\n" + r.stdout.decode(errors="replace")
    if os.path.exists(errlog):
        out += "\n--- errors ---\n" + open(errlog, errors="replace").read()
    last = ""
    if os.path.exists(msglog):
        text = open(msglog, errors="replace").read()
        # Received messages are logged after a "received" banner line.
        parts = re.split(r"-+ \S+ \S+\s+UDP message received|"
                         r"-+ \S+ \S+\s+TCP message received", text)
        if len(parts) > 1:
            last = parts[-1]
            start = last.find("SIP/2.0 ")
            last = last[start:] if start >= 0 else last
    return r.returncode, out, last


def contacts(msg):
    return re.findall(r"^Contact:\s*(.*)$", msg, re.M | re.I)


def test_register_and_fetch(start_pbx, tmp_path):
    pbx = reg_pbx(start_pbx, tmp_path)
    rc, out, last = sipp(pbx, "reg_register.xml")
    assert rc == 0, out
    assert "expires=600" in last
    rc, out, last = sipp(pbx, "reg_fetch.xml")
    assert rc == 0, out
    c = contacts(last)
    assert len(c) == 1 and "dev=a" in c[0], last


def test_register_over_tcp(start_pbx, tmp_path):
    pbx = reg_pbx(start_pbx, tmp_path)
    rc, out, _ = sipp(pbx, "reg_register.xml", transport="t1")
    assert rc == 0, out


def test_refresh(start_pbx, tmp_path):
    pbx = reg_pbx(start_pbx, tmp_path)
    rc, out, last = sipp(pbx, "reg_refresh.xml")
    assert rc == 0, out
    c = contacts(last)
    assert len(c) == 1 and "expires=900" in c[0], last


def test_two_devices_then_unregister_one_then_all(start_pbx, tmp_path):
    pbx = reg_pbx(start_pbx, tmp_path)
    # Each device keeps its local port across SIPp runs, as a phone does,
    # so its Contact URI is the same when it unregisters.
    ports = {"a": free_port(), "b": free_port()}
    for dev in ("a", "b"):
        rc, out, _ = sipp(pbx, "reg_register.xml", device=dev,
                          port=ports[dev])
        assert rc == 0, out
    rc, out, last = sipp(pbx, "reg_fetch.xml")
    assert rc == 0, out
    c = contacts(last)
    assert len(c) == 2, last
    assert any("dev=a" in x for x in c) and any("dev=b" in x for x in c)

    rc, out, last = sipp(pbx, "reg_unregister.xml", device="a",
                         port=ports["a"])
    assert rc == 0, out
    c = contacts(last)
    assert len(c) == 1 and "dev=b" in c[0], last

    rc, out, last = sipp(pbx, "reg_unregister_all.xml")
    assert rc == 0, out
    rc, out, last = sipp(pbx, "reg_fetch.xml")
    assert rc == 0, out
    assert contacts(last) == [], last


def test_423_interval_too_brief(start_pbx, tmp_path):
    pbx = reg_pbx(start_pbx, tmp_path)
    rc, out, last = sipp(pbx, "reg_423.xml")
    assert rc == 0, out
    assert re.search(r"^Min-Expires: 60\s*$", last, re.M), last


def test_wrong_password(start_pbx, tmp_path):
    pbx = reg_pbx(start_pbx, tmp_path)
    rc, out, _ = sipp(pbx, "reg_wrong_password.xml")
    assert rc == 0, out


def test_throttling(start_pbx, tmp_path):
    pbx = reg_pbx(start_pbx, tmp_path, threshold=3)
    rc, out, _ = sipp(pbx, "reg_throttle.xml")
    assert rc == 0, out
    assert "source blocked" in pbx.stderr()


def test_throttle_block_survives_colliding_address(start_pbx, tmp_path):
    """127.0.0.10 and 127.0.21.85 shared a slot of the old throttle table:
    one failure from .21.85 erased .10's block. The block must stay."""
    pbx = reg_pbx(start_pbx, tmp_path, threshold=3)
    rc, out, _ = sipp(pbx, "reg_throttle.xml", local_ip="127.0.0.10")
    assert rc == 0, out
    rc, out, _ = sipp(pbx, "reg_wrong_password.xml", device="b",
                      local_ip="127.0.21.85")
    assert rc == 0, out
    rc, out, last = sipp(pbx, "reg_blocked.xml", local_ip="127.0.0.10")
    assert rc == 0, out
    assert "WWW-Authenticate" not in last, last


def test_restart_restores_bindings(start_pbx, tmp_path):
    db = str(tmp_path / "shared.db")
    pbx = reg_pbx(start_pbx, tmp_path, db=db)
    for dev in ("a", "b"):
        rc, out, _ = sipp(pbx, "reg_register.xml", device=dev)
        assert rc == 0, out
    pbx.check_clean_exit()
    pbx2 = reg_pbx(start_pbx, tmp_path, db=db)
    rc, out, last = sipp(pbx2, "reg_fetch.xml")
    assert rc == 0, out
    c = contacts(last)
    assert len(c) == 2, last
    assert any("dev=a" in x for x in c) and any("dev=b" in x for x in c)


# --- raw UDP: SHA-256 and bad input ----------------------------------------

class Client:
    """A tiny UAC that answers digest challenges with hashlib."""

    def __init__(self, pbx, user="100", password="pw100"):
        self.pbx = pbx
        self.user = user
        self.password = password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]
        self.call_id = uuid.uuid4().hex
        self.cseq = 0

    def close(self):
        self.sock.close()

    def register(self, extra="", contact=True, to_user=None):
        self.cseq += 1
        to_user = to_user or self.user
        c = ("Contact: <sip:%s@127.0.0.1:%d>\r\n" % (self.user, self.port)
             if contact else "")
        msg = ("REGISTER sip:test.local SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n"
               "Max-Forwards: 70\r\n"
               "From: <sip:%s@test.local>;tag=%s\r\n"
               "To: <sip:%s@test.local>\r\n"
               "Call-ID: %s\r\nCSeq: %d REGISTER\r\n%s%s"
               "Content-Length: 0\r\n\r\n" %
               (self.port, uuid.uuid4().hex[:12], to_user,
                uuid.uuid4().hex[:6], to_user, self.call_id, self.cseq, c,
                extra))
        self.sock.sendto(msg.encode(), self.pbx.udp)
        data, _ = self.sock.recvfrom(65535)
        return data.decode(errors="replace")

    def authorization(self, challenge, alg, password=None, nc=1):
        m = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
        h = hashlib.sha256 if alg == "SHA-256" else hashlib.md5

        def H(s):
            return h(s.encode()).hexdigest()
        ha1 = H("%s:%s:%s" % (self.user, m["realm"],
                              password or self.password))
        ha2 = H("REGISTER:sip:test.local")
        ncs = "%08x" % nc
        resp = H("%s:%s:%s:abcdef:auth:%s" % (ha1, m["nonce"], ncs, ha2))
        return ('Authorization: Digest username="%s", realm="%s", '
                'nonce="%s", uri="sip:test.local", response="%s", '
                'algorithm=%s, cnonce="abcdef", qop=auth, nc=%s\r\n' %
                (self.user, m["realm"], m["nonce"], resp, alg, ncs))


def challenges(rsp):
    return re.findall(r"^WWW-Authenticate:\s*(.*)$", rsp, re.M | re.I)


def test_sha256_default_order_and_stale(start_pbx, tmp_path):
    pbx = reg_pbx(start_pbx, tmp_path, algs="sha256,md5")
    cl = Client(pbx)
    try:
        rsp = cl.register()
        assert status_of(rsp)[0] == 401
        ch = challenges(rsp)
        assert len(ch) == 2
        assert "algorithm=SHA-256" in ch[0] and "algorithm=MD5" in ch[1]
        rsp = cl.register(cl.authorization(ch[0], "SHA-256"))
        assert status_of(rsp)[0] == 200, rsp
        assert header(rsp, "Date") is not None
        # Replaying nc=1 on that nonce: stale challenge, not a failure.
        rsp = cl.register(cl.authorization(ch[0], "SHA-256", nc=1))
        assert status_of(rsp)[0] == 401
        assert "stale=true" in rsp
        # MD5 credentials on the MD5 challenge work too.
        rsp = cl.register(cl.authorization(challenges(rsp)[1], "MD5"))
        assert status_of(rsp)[0] == 200, rsp
    finally:
        cl.close()


def test_bad_input_is_answered(start_pbx, tmp_path):
    pbx = reg_pbx(start_pbx, tmp_path)
    cl = Client(pbx)
    try:
        rsp = cl.register("Authorization: Digest username=\"100, x\r\n")
        assert status_of(rsp)[0] == 400
        ch = challenges(cl.register())
        rsp = cl.register(cl.authorization(ch[0], "MD5") +
                          "Expires: tomorrow\r\n")
        assert status_of(rsp)[0] == 400
        # Unknown extension: challenged like any other (no enumeration).
        other = Client(pbx, user="777", password="x")
        try:
            rsp = other.register()
            assert status_of(rsp)[0] == 401
            rsp = other.register(other.authorization(challenges(rsp)[0],
                                                     "MD5"))
            assert status_of(rsp)[0] == 401
        finally:
            other.close()
        # The daemon is fine and the good client still registers.
        ch = challenges(cl.register())
        rsp = cl.register(cl.authorization(ch[0], "MD5"))
        assert status_of(rsp)[0] == 200, rsp
    finally:
        cl.close()
