"""End-to-end tests of pushsim over real HTTP/2 + TLS (curl --http2) and its
control API (urllib). Keys are made with the openssl CLI; JWTs come from
pushsim-jwt, and one ES256 token is made independently with `openssl dgst`
to check the wire format. Everything binds 127.0.0.1 ephemeral ports, every
subprocess has a timeout, and the pushsim processes are stopped with
SIGTERM and must exit 0 without ASan/LSan reports.

Environment: PUSHSIM and PUSHSIM_JWT = paths of the two programs.
"""
import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

PUSHSIM = os.environ.get("PUSHSIM", "pushsim")
PUSHSIM_JWT = os.environ.get("PUSHSIM_JWT", "pushsim-jwt")
KID, TEAM, BUNDLE = "ABC123DEFG", "TEAM123456", "com.example.phone"
TOKEN = "0123456789abcdef" * 4
FORM = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
FCM_BODY = {"message": {"token": "fcm-dev-1:APA91b_x", "data": {"call_id": "c1"},
                        "android": {"priority": "HIGH", "ttl": "30s"}}}


def run(cmd, timeout=20, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


class Sim:
    def __init__(self, tmp):
        self.tmp = tmp
        self.key = tmp / "apns.p8"
        self.rsa = tmp / "rsa.pem"
        self.acct = tmp / "acct.json"
        self.cert = tmp / "cert.pem"
        self.ready = tmp / "ready.json"
        self.log = tmp / "pushes.jsonl"
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-out", str(self.key)]).check_returncode()
        # pushsim gets only the public half (the push team's tests give it
        # the .p8 itself); a failed private-key parse must not poison TLS.
        self.pub = tmp / "apns.pub.pem"
        run(["openssl", "pkey", "-in", str(self.key), "-pubout", "-out",
             str(self.pub)]).check_returncode()
        run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
             "rsa_keygen_bits:2048", "-out", str(self.rsa)]).check_returncode()
        self.acct.write_text(json.dumps({
            "type": "service_account", "project_id": "demo-proj",
            "private_key_id": "k1", "private_key": self.rsa.read_text(),
            "client_email": "sa@demo-proj.iam.gserviceaccount.com",
            "token_uri": "https://127.0.0.1:0/token"}))
        self.stderr = open(tmp / "stderr.txt", "w+")
        self.proc = subprocess.Popen(
            [PUSHSIM, "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
             "--cert-out", str(self.cert), "--ready-file", str(self.ready),
             "--apns-key", f"{KID}:{TEAM}:{self.pub}", "--apns-topic", BUNDLE,
             "--fcm-account", str(self.acct), "--log", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.time() + 15
        while not self.ready.exists():
            assert self.proc.poll() is None, "pushsim died at start"
            assert time.time() < deadline, "pushsim not ready"
            time.sleep(0.05)
        info = json.loads(self.ready.read_text())
        assert info["pid"] == self.proc.pid
        self.https = info["https_port"]
        self.ctl = info["control_port"]
        self.base = f"https://127.0.0.1:{self.https}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=20)
        self.stderr.seek(0)
        err = self.stderr.read()
        self.stderr.close()
        return rc, err

    # --- control API ---
    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.ctl}{path}",
                                     data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def pushes(self, since=None):
        q = f"?since={since}" if since is not None else ""
        return self.control("GET", "/pushes" + q)[1]["pushes"]

    # --- HTTPS side ---
    def h2(self, path, headers=(), body=None, extra=(), timeout=20):
        """One request with curl --http2; returns (curl rc, status, headers,
        body, http_version)."""
        hfile, bfile = self.tmp / "h.txt", self.tmp / "b.txt"
        for f in (hfile, bfile):
            if f.exists():
                f.unlink()
        cmd = ["curl", "-sS", "--http2", "--cacert", str(self.cert),
               "-D", str(hfile), "-o", str(bfile),
               "-w", "%{http_code} %{http_version}", *extra]
        for h in headers:
            cmd += ["-H", h]
        if body is not None:
            cmd += ["--data-binary", body]
        cmd.append(self.base + path)
        p = run(cmd, timeout=timeout)
        code, ver = (p.stdout.split() + ["0", "0"])[:2]
        hdrs = {}
        if hfile.exists():
            for line in hfile.read_text().splitlines()[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
        text = bfile.read_text() if bfile.exists() else ""
        return p.returncode, int(code), hdrs, text, ver

    def apns_jwt(self, iat=None):
        cmd = [PUSHSIM_JWT, "apns", KID, TEAM, str(self.key)]
        if iat is not None:
            cmd.append(str(iat))
        p = run(cmd)
        p.check_returncode()
        return p.stdout.strip()

    def apns(self, jwt, token=TOKEN, topic=BUNDLE + ".voip", push_type="voip",
             body='{"aps":{},"call_id":"c1"}', extra_headers=(), **kw):
        headers = [f"authorization: bearer {jwt}", f"apns-topic: {topic}",
                   f"apns-push-type: {push_type}", "apns-priority: 10",
                   "apns-expiration: 0", *extra_headers]
        return self.h2(f"/3/device/{token}", headers, body, **kw)

    def access_token(self, aud=None):
        cmd = [PUSHSIM_JWT, "fcm", str(self.acct)]
        if aud:
            cmd.append(aud)
        p = run(cmd)
        p.check_returncode()
        rc, st, _, body, _ = self.h2(
            "/token", ["content-type: application/x-www-form-urlencoded"],
            f"{FORM}&assertion={p.stdout.strip()}")
        assert (rc, st) == (0, 200), body
        doc = json.loads(body)
        assert doc["token_type"] == "Bearer" and doc["expires_in"] == 3600
        return doc["access_token"]

    def fcm(self, access, body=FCM_BODY, project="demo-proj"):
        return self.h2(f"/v1/projects/{project}/messages:send",
                       [f"authorization: Bearer {access}",
                        "content-type: application/json"], json.dumps(body))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Sim(tmp_path_factory.mktemp("pushsim"))
    yield s
    rc, err = s.stop()
    assert rc == 0, err
    assert "Sanitizer" not in err, err


@pytest.fixture(autouse=True)
def clean(sim):
    sim.control("POST", "/reset", {})
    yield


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def der_to_raw(der):
    """ECDSA-Sig-Value DER -> 64-byte R||S (what ES256 puts on the wire)."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


def test_apns_push_accepted_and_recorded(sim):
    apns_id = "eabeae54-14a8-11e5-b60b-1697f925ec7b"
    rc, st, hdrs, body, ver = sim.apns(
        sim.apns_jwt(), extra_headers=[f"apns-id: {apns_id}",
                                       "apns-collapse-id: call-1"])
    assert (rc, st, ver, body) == (0, 200, "2", "")
    assert hdrs["apns-id"] == apns_id
    [p] = sim.pushes()
    assert p["provider"] == "apns" and p["token"] == TOKEN
    assert p["status"] == 200 and p["reason"] is None
    assert p["headers"] == {"apns-topic": BUNDLE + ".voip",
                            "apns-push-type": "voip", "apns-priority": "10",
                            "apns-expiration": "0",
                            "apns-collapse-id": "call-1", "apns-id": apns_id}
    assert p["payload"] == {"aps": {}, "call_id": "c1"}
    assert abs(p["time_ms"] - time.time() * 1000) < 60000
    # The JSONL log gets the same record (flushed within ~200 ms).
    time.sleep(0.5)
    last = json.loads(sim.log.read_text().splitlines()[-1])
    assert last == p


def test_apns_rejections(sim):
    jwt = sim.apns_jwt()
    rc, st, hdrs, body, _ = sim.apns(jwt, topic=BUNDLE)  # voip needs .voip
    assert (st, json.loads(body)) == (400, {"reason": "BadTopic"})
    assert len(hdrs["apns-id"]) == 36
    _, st, _, body, _ = sim.apns(jwt, token="xyz")
    assert (st, json.loads(body)["reason"]) == (400, "BadDeviceToken")
    _, st, _, body, _ = sim.apns(jwt, body="{" + '"a":"' + "x" * 5200 + '"}')
    assert (st, json.loads(body)["reason"]) == (413, "PayloadTooLarge")
    _, st, _, body, _ = sim.apns("not.a.jwt")
    assert (st, json.loads(body)["reason"]) == (403, "InvalidProviderToken")
    _, st, _, body, _ = sim.apns(sim.apns_jwt(int(time.time()) - 4000))
    assert (st, json.loads(body)["reason"]) == (403, "ExpiredProviderToken")
    _, st, _, body, _ = sim.h2("/3/device/" + TOKEN,
                               [f"authorization: bearer {jwt}"],
                               extra=["-X", "GET"])
    assert (st, json.loads(body)["reason"]) == (405, "MethodNotAllowed")
    assert [p["status"] for p in sim.pushes()] == [400, 400, 413, 403, 403, 405]


def test_es256_made_by_openssl_cli(sim):
    """A token signed by `openssl dgst` (DER converted to raw R||S here)
    is accepted: pushsim agrees with OpenSSL on the wire format."""
    head = b64url(json.dumps({"alg": "ES256", "kid": KID}).encode())
    claims = b64url(json.dumps({"iss": TEAM, "iat": int(time.time())}).encode())
    signing = f"{head}.{claims}".encode()
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(sim.key)],
                         input=signing, capture_output=True, timeout=20,
                         check=True).stdout
    sig = der_to_raw(der)
    assert len(sig) == 64
    _, st, _, body, _ = sim.apns(f"{head}.{claims}.{b64url(sig)}")
    assert (st, body) == (200, "")
    forged = bytes([sig[0] ^ 1]) + sig[1:]
    _, st, _, body, _ = sim.apns(f"{head}.{claims}.{b64url(forged)}")
    assert (st, json.loads(body)["reason"]) == (403, "InvalidProviderToken")


def test_fcm_token_and_send(sim):
    access = sim.access_token()  # aud = the account file's token_uri
    sim.access_token(aud=f"{sim.base}/token")  # or our own URL
    rc, st, _, body, ver = sim.fcm(access)
    assert (rc, st, ver) == (0, 200, "2")
    assert json.loads(body)["name"].startswith("projects/demo-proj/messages/")
    [p] = sim.pushes()
    assert (p["provider"], p["project"], p["token"], p["status"]) == (
        "fcm", "demo-proj", "fcm-dev-1:APA91b_x", 200)
    assert p["payload"] == FCM_BODY
    # A bad assertion and a bad access token.
    _, st, _, body, _ = sim.h2("/token", [], f"{FORM}&assertion=a.b.c")
    assert (st, json.loads(body)["error"]) == (400, "invalid_grant")
    _, st, _, body, _ = sim.fcm("ya29.bogus")
    err = json.loads(body)["error"]
    assert (st, err["code"], err["status"]) == (401, 401, "UNAUTHENTICATED")
    # Reserved data key.
    bad = {"message": {"token": "t1", "data": {"gcm.x": "1"}}}
    _, st, _, body, _ = sim.fcm(access, bad)
    err = json.loads(body)["error"]
    assert (st, err["status"], err["details"][0]["errorCode"]) == (
        400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
    assert err["details"][0]["@type"] == \
        "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def test_dead_tokens(sim):
    assert sim.control("POST", "/dead", {"token": TOKEN}) == (200, {"ok": True})
    assert sim.control("POST", "/dead", {"token": "fcm-dev-1:APA91b_x"})[0] == 200
    before = int(time.time() * 1000)
    _, st, _, body, _ = sim.apns(sim.apns_jwt())
    doc = json.loads(body)
    assert (st, doc["reason"]) == (410, "Unregistered")
    assert before - 60000 < doc["timestamp"] <= before + 1000
    _, st, _, body, _ = sim.fcm(sim.access_token())
    err = json.loads(body)["error"]
    assert (st, err["details"][0]["errorCode"]) == (404, "UNREGISTERED")
    sim.control("POST", "/reset", {})
    _, st, _, _, _ = sim.apns(sim.apns_jwt())
    assert st == 200


def test_faults(sim):
    jwt = sim.apns_jwt()
    ok = sim.control("POST", "/faults", {"provider": "apns", "action": "status",
                                         "status": 503, "retry_after": 7,
                                         "count": 2})
    assert ok == (200, {"ok": True})
    for _ in range(2):
        _, st, hdrs, body, _ = sim.apns(jwt)
        assert (st, hdrs.get("retry-after")) == (503, "7")
        assert json.loads(body)["reason"] == "ServiceUnavailable"
    assert sim.apns(jwt)[1] == 200

    sim.control("POST", "/faults", {"provider": "fcm", "action": "status",
                                    "status": 429})
    access = sim.access_token()  # /token is not affected by fcm faults
    _, st, _, body, _ = sim.fcm(access)
    assert (st, json.loads(body)["error"]["details"][0]["errorCode"]) == (
        429, "QUOTA_EXCEEDED")

    sim.control("POST", "/faults", {"action": "delay", "ms": 400})
    t0 = time.time()
    assert sim.apns(jwt)[1] == 200
    assert time.time() - t0 >= 0.4

    sim.control("POST", "/faults", {"action": "reset"})
    rc, st, _, _, _ = sim.apns(jwt)
    assert rc != 0 and st == 0  # RST_STREAM: no response

    sim.control("POST", "/faults", {"action": "goaway"})
    rc, st, _, _, _ = sim.apns(jwt)
    assert rc != 0 and st == 0

    sim.control("POST", "/faults", {"action": "hang"})
    rc, st, _, _, _ = sim.apns(jwt, extra=["-m", "1"])
    assert rc == 28 and st == 0  # curl: operation timed out

    reasons = [(p["status"], p["reason"]) for p in sim.pushes()]
    assert reasons == [(503, "ServiceUnavailable")] * 2 + [
        (200, None), (429, "QUOTA_EXCEEDED"), (200, None),
        (0, "fault:reset"), (0, "fault:goaway"), (0, "fault:hang")]
    assert sim.apns(jwt)[1] == 200  # the server is fine afterwards

    assert sim.control("POST", "/faults", {"action": "explode"})[0] == 400
    assert sim.control("POST", "/faults", {"action": "status"})[0] == 400


def test_expire_tokens(sim):
    jwt = sim.apns_jwt(int(time.time()) - 10)
    access = sim.access_token()
    assert sim.apns(jwt)[1] == 200
    sim.control("POST", "/faults", {"action": "expire_provider_tokens"})
    _, st, _, body, _ = sim.apns(jwt)
    assert (st, json.loads(body)["reason"]) == (403, "ExpiredProviderToken")
    assert sim.apns(sim.apns_jwt())[1] == 200  # a fresh JWT works
    assert sim.fcm(access)[1] == 200
    sim.control("POST", "/faults", {"action": "expire_access_tokens"})
    assert sim.fcm(access)[1] == 401
    assert sim.fcm(sim.access_token())[1] == 200


def test_http1_refused(sim):
    p = run(["curl", "-sS", "--http1.1", "--cacert", str(sim.cert),
             "-o", "/dev/null", "-w", "%{http_code}", sim.base + "/3/device/x"])
    assert p.returncode != 0 and p.stdout == "000"


def test_many_streams_one_connection(sim):
    """200 pushes multiplexed by curl --parallel over one connection."""
    jwt = sim.apns_jwt()
    before = sim.control("GET", "/stats")[1]
    cfg = sim.tmp / "many.cfg"
    lines = []
    for i in range(200):
        tok = f"{i:064x}"
        # "next" resets per-transfer options, so each block repeats them.
        lines += [f'url = "{sim.base}/3/device/{tok}"', 'output = "/dev/null"',
                  f'cacert = "{sim.cert}"', "http2",
                  'write-out = "%{http_code}\\n"',
                  f'header = "authorization: bearer {jwt}"',
                  f'header = "apns-topic: {BUNDLE}.voip"',
                  'header = "apns-push-type: voip"',
                  'data = "{\\"aps\\":{}}"', "next"]
    cfg.write_text("\n".join(lines[:-1]) + "\n")
    p = run(["curl", "-sS", "--parallel", "--parallel-max", "100",
             "-K", str(cfg)], timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["200"] * 200
    after = sim.control("GET", "/stats")[1]
    assert after["streams"] - before["streams"] == 200
    assert after["connections"] - before["connections"] <= 2
    assert after["pushes"]["apns"]["by_status"]["200"] - \
        before["pushes"]["apns"]["by_status"].get("200", 0) == 200
    got = sim.pushes()
    assert len(got) == 200 and len({p["token"] for p in got}) == 200
    seqs = [p["seq"] for p in got]
    assert seqs == sorted(seqs)
    assert len(sim.pushes(since=seqs[149])) == 50


def test_control_api(sim):
    assert sim.control("GET", "/health") == (200, {"ok": True})
    assert sim.control("GET", "/nope")[0] == 404
    assert sim.control("POST", "/dead", {"tok": 1})[0] == 400
    stats = sim.control("GET", "/stats")[1]
    assert {"connections", "streams", "pushes"} <= stats.keys()


def test_sigterm_exits_clean(tmp_path):
    s = Sim(tmp_path)
    assert s.apns(s.apns_jwt())[1] == 200
    s.control("POST", "/faults", {"action": "hang"})
    # A hanging stream and an open connection must not block shutdown.
    hang = subprocess.Popen(
        ["curl", "-sS", "--http2", "--cacert", str(s.cert), "-m", "30",
         "-H", f"authorization: bearer {s.apns_jwt()}",
         "-H", f"apns-topic: {BUNDLE}.voip", "-H", "apns-push-type: voip",
         "--data-binary", "{}", f"{s.base}/3/device/{TOKEN}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while not s.pushes() or s.pushes()[-1]["reason"] != "fault:hang":
            assert time.time() < deadline
            time.sleep(0.05)
        rc, err = s.stop()
        assert rc == 0, err
        assert "Sanitizer" not in err, err
    finally:
        hang.kill()
        hang.wait(timeout=10)


def test_resets_of_answered_streams_keep_one_connection(sim):
    """Regression: libcurl 7.88 ends every transfer with
    RST_STREAM(STREAM_CLOSED) on a stream pushsim already answered;
    nghttp2's rapid-reset guard counted those and sent
    GOAWAY(INTERNAL_ERROR) after ~1000 pushes, so clients reconnected and
    resent. pushsim-bench --rst-closed does what libcurl does, over ONE
    connection with 200 streams in flight; it exits 1 if the connection
    is lost or any push is not answered 200."""
    bench = os.environ.get("PUSHSIM_BENCH") or os.path.join(
        os.path.dirname(PUSHSIM), "pushsim-bench")
    n = 3000
    before = sim.control("GET", "/stats")[1]
    p = run([bench, str(sim.https), str(sim.cert), sim.apns_jwt(),
             BUNDLE + ".voip", str(n), "200", "--rst-closed"], timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"ok={n} other=0" in p.stdout, p.stdout
    after = sim.control("GET", "/stats")[1]
    assert after["connections"] - before["connections"] == 1
    assert after["streams"] - before["streams"] == n
    assert after["pushes"]["apns"]["by_status"]["200"] - \
        before["pushes"]["apns"]["by_status"].get("200", 0) == n
    got = sim.pushes()
    # Each push has its own token: exactly one record (= one answer) each.
    assert len(got) == n
    assert sorted(p["token"] for p in got) == [f"{i:064x}" for i in range(n)]
    assert all(p["status"] == 200 for p in got)
