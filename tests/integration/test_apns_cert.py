"""APNs certificate-based trust end to end: pushpbx with [apns] cert_file /
cert_key_file against pushsim --apns-client-ca, which asks for the client
certificate in the TLS handshake, verifies it against the test CA and takes
the topics from its subject UID (as APNs does).

Certificates are made here with `openssl`: a CA, a good client certificate
(UID = the bundle id), one signed by another CA (wrong), an expired one
(`openssl ca -startdate/-enddate`, since `x509 -days` cannot go back in
time) and one for another app (UID com.other.app).

Covers: a good certificate delivers a call push (phone registered with
pn-provider=apns, in background, woken and answering); the expired one stops
pushpbx at start and fails `pushpbx --check-push`, and an expired file
swapped in under a running daemon fails `pushpbxctl check`; the wrong CA is
a failed push with reason "certificate refused: unknown ca" in the admin's
recent pushes and metrics, and a failed `pushpbxctl check`; another app's
certificate gets 400 TopicDisallowed, and with [apns] topic set the daemon
refuses to start; `pushpbxctl check` shows the certificate's subject,
topics, expiry and days left.
"""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import Pbx, sanitizer_report
from wakeharness import (BUNDLE, CONF, PUSHSIM, RING_S, TEAM, VOIP, Sim,
                         admin_get, apns_token, background, metric,
                         wait_until)
# Fixtures: pytest finds them in this module's namespace.
from wakeharness import phones  # noqa: F401

BUILD = os.environ.get("PUSHPBX_BUILD_DIR", "")
BIN = os.environ.get("PUSHPBX_BIN", "")
CTL = os.path.join(BUILD, "src", "ctl", "pushpbxctl")
TOKEN = "wake-test-token-0123456789"  # wakeharness.CONF [admin] token
OTHER = "com.other.app"

CA_CONF = """\
[ca]
default_ca = tca
[tca]
dir = {d}
database = {d}/index.txt
serial = {d}/serial
new_certs_dir = {d}
default_md = sha256
policy = pol
unique_subject = no
x509_extensions = ext
[pol]
userId = optional
commonName = supplied
[ext]
extendedKeyUsage = clientAuth
"""


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=str(cwd),
                       capture_output=True)
    assert r.returncode == 0, r.stderr.decode()


def make_ca(d, name, cn):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", name + ".key",
            "-out", name + ".pem", "-days", "30", "-subj", "/CN=" + cn,
            cwd=d)


def make_client(d, name, uid, ca, start=None, end=None):
    """Client certificate name.pem/name.key with subject UID uid, signed
    by ca; start/end (YYYYMMDDHHMMSSZ) set its validity, else 400 days."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", name + ".key",
            "-out", name + ".csr",
            "-subj", "/UID=%s/CN=Apple Push Services: %s" % (uid, uid),
            cwd=d)
    db = d / ("db-" + name)
    db.mkdir()
    (db / "index.txt").write_text("")
    (db / "serial").write_text("%02X\n" % (len(list(d.iterdir())) + 1))
    (db / "ca.cnf").write_text(CA_CONF.format(d=db))
    validity = (["-startdate", start, "-enddate", end] if start
                else ["-days", "400"])
    openssl("ca", "-batch", "-notext", "-config", str(db / "ca.cnf"),
            "-cert", ca + ".pem", "-keyfile", ca + ".key", "-in",
            name + ".csr", "-out", name + ".pem", *validity, cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca", "Test Apple Worldwide Developer Relations CA")
    make_ca(d, "otherca", "Some Other CA")
    make_client(d, "good", BUNDLE, "ca")
    make_client(d, "wrong", BUNDLE, "otherca")
    make_client(d, "expired", BUNDLE, "ca", "20200101000000Z",
                "20200102000000Z")
    make_client(d, "other", OTHER, "ca")
    return d


class CertSim(Sim):
    """pushsim with certificate trust only: --apns-client-ca, no APNs key
    (a request without a certificate gets 403 MissingProviderToken)."""

    def __init__(self, certs, tmp):
        ready = tmp / "sim-ready.json"
        self.err = open(tmp / "sim.err", "w")
        self.proc = subprocess.Popen(
            [PUSHSIM, "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
             "--cert-out", str(tmp / "sim-cert.pem"),
             "--ready-file", str(ready),
             "--apns-client-ca", str(certs / "ca.pem")],
            stdout=subprocess.DEVNULL, stderr=self.err)
        info = wait_until(lambda: ready.exists() and ready.stat().st_size
                          and json.loads(ready.read_text()), 10)
        assert info, "pushsim did not start: " + (tmp / "sim.err").read_text()
        self.https_port = info["https_port"]
        self.control = info["control_port"]
        self.url = "https://127.0.0.1:%d" % self.https_port
        self.ca = tmp / "sim-cert.pem"
        self.sa = tmp / "no-fcm.json"


def conf_text(sim, cert, key, topic=True):
    """wakeharness.CONF with certificate auth instead of the .p8 key."""
    text = CONF.format(workers=2, ring=RING_S, apns="yes", fcm="no",
                       url=sim.url, key="@KEY@", kid="@KID@", team=TEAM,
                       bundle=BUNDLE, ca=sim.ca, sa=sim.sa, max100=1)
    text = text.replace("key_file = @KEY@\nkey_id = @KID@\nteam_id = %s\n"
                        % TEAM, "cert_file = %s\ncert_key_file = %s\n"
                        % (cert, key))
    assert "cert_file" in text and "@KEY@" not in text
    if not topic:
        text = text.replace("topic = %s\n" % BUNDLE, "")
    return text


@pytest.fixture
def cenv(certs, tmp_path):
    """cenv(name, topic=True) -> (pbx, sim): pushpbx using certificate
    <name>.pem of the certs fixture against a fresh CertSim."""
    made = []

    def make(name, topic=True):
        d = tmp_path / ("run%d" % len(made))
        d.mkdir()
        sim = CertSim(certs, d)
        made.append((None, sim))
        pbx = Pbx(d, conf_text(sim, certs / (name + ".pem"),
                               certs / (name + ".key"), topic))
        made[-1] = (pbx, sim)
        return pbx, sim

    yield make
    for pbx, sim in made:
        try:
            if pbx:
                pbx.check_clean_exit()
        finally:
            sim.stop()


def ctl(pbx, *args):
    r = subprocess.run([CTL, "--url", "http://127.0.0.1:%d" %
                        pbx.info["admin_port"], "--token", TOKEN] +
                       list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    return r.returncode, r.stdout.decode() + r.stderr.decode()


def start_fails(d, text):
    """Run pushpbx with config text; it must exit with an error at start.
    Returns its stderr."""
    conf = d / "pushpbx.conf"
    conf.write_text(text)
    r = subprocess.run([BIN, "--config", str(conf), "--ready-file",
                        str(d / "ready.json")], cwd=str(d),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=30)
    err = r.stderr.decode()
    assert not sanitizer_report(err), err
    assert r.returncode != 0, "pushpbx started: " + err
    assert not (d / "ready.json").exists()
    return err


def recent_pushes(pbx, n):
    """The admin's recent pushes once there are n of them."""
    def enough():
        items = admin_get(pbx, "/api/pushes")["items"]
        return items if len(items) >= n else None
    got = wait_until(enough, 10)
    assert got, "fewer than %d pushes in the admin's recent pushes: %r" % (
        n, admin_get(pbx, "/api/pushes")["items"])
    return got


def test_good_certificate_delivers_call_push(cenv, phones):
    pbx, sim = cenv("good")
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    push = sim.wait_push(pn[1])[0]
    assert push["status"] == 200, push
    assert push["auth"] == "certificate" and push["cert_uid"] == BUNDLE
    assert push["headers"]["apns-topic"] == BUNDLE + ".voip"
    assert push["headers"]["apns-push-type"] == "voip"
    assert push["payload"]["call_id"] == call["call_id"]
    dev.register(pn=pn)
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] == 200, final
    assert len(dev.invites_for(call)) == 1
    p = recent_pushes(pbx, 1)[0]
    assert (p["type"], p["status"], p["http_status"]) == \
        ("call", "delivered", 200), p
    # pushpbxctl check: TLS and the authenticated step pass, and the
    # certificate's facts are shown
    rc, out = ctl(pbx, "check", "--cacert", str(sim.ca))
    assert rc == 0, out
    assert "ok    apns certificate: credentials accepted" in out, out
    assert "UID=%s" % BUNDLE in out, out
    assert "topics %s, %s.voip, %s.complication" % ((BUNDLE,) * 3) in out
    assert "days left)" in out and "expires 20" in out, out


def test_expired_certificate_refused_at_start(certs, tmp_path):
    sim = CertSim(certs, tmp_path)
    try:
        text = conf_text(sim, certs / "expired.pem", certs / "expired.key")
        err = start_fails(tmp_path, text)
        assert "certificate expired on 2020-01-02 00:00:00 UTC" in err, err
        assert "expired.pem" in err and "UID=%s" % BUNDLE in err, err
        # pushpbx --check-push says the same, exit 8
        r = subprocess.run([BIN, "--config", str(tmp_path / "pushpbx.conf"),
                            "--check-push"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60,
                           cwd=str(tmp_path))
        out = r.stdout.decode()
        assert r.returncode == 8, out + r.stderr.decode()
        assert "FAIL  config: " in out and "certificate expired on" in out
        # other broken set-ups: key of another certificate, a topic the
        # certificate does not cover
        text = conf_text(sim, certs / "good.pem", certs / "other.key")
        err = start_fails(tmp_path, text)
        assert "private key does not match the certificate" in err, err
        text = conf_text(sim, certs / "other.pem", certs / "other.key")
        err = start_fails(tmp_path, text)
        assert ("[apns] topic %s is not a topic of this certificate"
                % BUNDLE) in err, err
    finally:
        sim.stop()


def test_certificate_expired_under_running_daemon(cenv, certs, tmp_path):
    """The files are replaced by an expired certificate while pushpbx
    runs: pushpbxctl check (a fresh client) reports it."""
    d = tmp_path / "swap"
    d.mkdir()
    for f in ("good.pem", "good.key"):
        shutil.copy(certs / f, d / f)
    pbx, sim = cenv("good")
    text = pbx.conf.read_text()
    pbx.check_clean_exit()
    (pbx.dir / "ready.json").unlink()
    again = Pbx(pbx.dir, text.replace(str(certs / "good."), str(d / "good.")))
    try:
        shutil.copy(certs / "expired.pem", d / "good.pem")
        shutil.copy(certs / "expired.key", d / "good.key")
        rc, out = ctl(again, "check", "--cacert", str(sim.ca))
        assert rc == 8, out
        assert "FAIL  apns config: " in out, out
        assert "certificate expired on 2020-01-02 00:00:00 UTC" in out, out
    finally:
        again.check_clean_exit()


def test_wrong_ca_is_a_failed_push_with_reason(cenv, phones):
    pbx, sim = cenv("wrong")
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    # The only device cannot be pushed: the call ends at once, and the
    # missed-call push fails the same way.
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] >= 400, final
    got = recent_pushes(pbx, 2)
    assert sorted(p["type"] for p in got) == ["call", "missed"], got
    for p in got:
        assert (p["status"], p["http_status"]) == ("failed", 0), p
        assert p["reason"] == "certificate refused: unknown ca", p
        assert p["attempts"] == 1, p  # not retried: only a new cert helps
    assert metric(pbx, 'pushpbx_pushes_failed_total{provider="apns"}') == 2
    assert sim.pushes() == []  # refused in the handshake
    assert "client certificate: unable to get local issuer" in \
        (pbx.dir / "sim.err").read_text()
    rc, out = ctl(pbx, "check", "--cacert", str(sim.ca))
    assert rc == 8, out
    assert "ok    tls" in out, out  # no certificate: the handshake passes
    assert ("FAIL  apns certificate: APNs refused the client certificate "
            "in the TLS handshake (certificate refused: unknown ca)") in out
    assert "UID=%s" % BUNDLE in out, out


def test_other_apps_certificate_topic_disallowed(cenv, phones):
    """A certificate for com.other.app (no [apns] topic: its UID is the
    default) cannot push to com.example.phone: 400 TopicDisallowed."""
    pbx, sim = cenv("other", topic=False)
    pn = ("apns", apns_token(), VOIP)
    dev, caller = phones(pbx, "100"), phones(pbx, "101")
    background(dev, pn)
    call = caller.invite("100")
    push = sim.wait_push(pn[1])[0]
    assert (push["status"], push["reason"]) == (400, "TopicDisallowed")
    assert push["cert_uid"] == OTHER
    assert push["headers"]["apns-topic"] == BUNDLE + ".voip"
    final = caller.wait_final(call, 5)
    assert final is not None and final["status"] >= 400, final
    for p in recent_pushes(pbx, 2):  # the call and the missed-call push
        assert (p["status"], p["http_status"], p["reason"]) == \
            ("failed", 400, "TopicDisallowed"), p
