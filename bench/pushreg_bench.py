#!/usr/bin/env python3
"""pushreg-bench: a push REGISTER's latency (REGISTER in -> 200 out) at a
given rate, the [wake-room] item 2 figure: since the store owns every
SQLite connection, a push device is committed by the store's writer before
the 200 OK instead of by the SIP worker on a connection of its own. First
the worker waited for that commit (store_commit); now it parks the
REGISTER and answers when the writer reports (store_commit_async), so
one slow commit no longer holds every request queued behind it.

Starts pushsim (APNs emulator, only so that [apns] is configured: no push
is sent) and pushpbx on 127.0.0.1, DEVICES extensions, and sends REGISTERs
with an APNs push contact at RATE/s for DURATION s from SOCKETS UDP
sockets (so that SO_REUSEPORT spreads them over the workers). Every
REGISTER carries a NEW token for the same +sip.instance, so every one
replaces the device and commits (the worst case: a refresh that changes
nothing never touches the disk). Each REGISTER is challenged (401) and
sent again with digest credentials; the figure is the time from sending
the authenticated REGISTER to reading its 200, measured here (loopback
and this script's own scheduling included: compare runs on one machine).

    bench/pushreg_bench.py [--build build-rel] [--rate 1000]
        [--duration 20] [--devices 500] [--workers 2] [--sockets 8]
        [--options-rate 0]

--options-rate N also sends N OPTIONS/s from one more socket during the
run and reports their latency (OPTIONS in -> 200 out): what a request that
is not a push REGISTER pays on a worker that handles them (the worker that
waited for each commit held these behind it).

Bounded: DURATION + 15 s of sending and draining; both processes are
stopped by PID. Prints p50/p90/p99/p99.9/max and the counts.
"""
import argparse
import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

TEAM, BUNDLE = "DEMOTEAM01", "com.example.pushpbx"
VOIP = TEAM + "." + BUNDLE + ".voip"
DOMAIN = "bench.local"


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def digest(chal, user, pw, uri):
    p = dict(re.findall(r'(\w+)="?([^",]*)"?', chal.split(" ", 1)[1]))
    cnonce = uuid.uuid4().hex[:8]
    ha1 = md5("%s:%s:%s" % (user, p["realm"], pw))
    ha2 = md5("REGISTER:%s" % uri)
    resp = md5("%s:%s:00000001:%s:auth:%s" % (ha1, p["nonce"], cnonce, ha2))
    return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", '
            'response="%s", algorithm=MD5, cnonce="%s", qop=auth, '
            'nc=00000001' % (user, p["realm"], p["nonce"], uri, resp, cnonce))


def wait_file(path, proc, what, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return json.load(open(path))
        if proc.poll() is not None:
            sys.exit("pushreg-bench: %s exited early" % what)
        time.sleep(0.05)
    sys.exit("pushreg-bench: %s did not start" % what)


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pct(v, q):
    if not v:
        return float("nan")
    return v[min(len(v) - 1, int(q * len(v)))]


def drive(a, sip_port):
    pbx = ("127.0.0.1", sip_port)
    socks = []
    for _ in range(a.sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    devs = []
    for i in range(a.devices):
        ext = str(1000 + i)
        devs.append({"ext": ext, "pw": "pw" + ext, "sock": socks[i % len(socks)],
                     "call_id": "pr-%s-%s" % (ext, uuid.uuid4().hex[:10]),
                     "cseq": 0, "tag": uuid.uuid4().hex[:8], "busy": False,
                     "inst": "urn:uuid:" + str(uuid.uuid4()), "token": None,
                     "sent_at": 0.0})
    by_cid = {d["call_id"]: d for d in devs}
    lat, st = [], {"sent": 0, "ok": 0, "other": 0, "lost": 0}
    olat, opend = [], {}
    osock = None
    if a.options_rate > 0:
        osock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        osock.bind(("127.0.0.1", 0))
        osock.setblocking(False)
        socks.append(osock)

    def send_options():
        cid = "po-" + uuid.uuid4().hex[:16]
        port = osock.getsockname()[1]
        msg = ("OPTIONS sip:%s SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n"
               "Max-Forwards: 70\r\nFrom: <sip:bench@%s>;tag=%s\r\n"
               "To: <sip:%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"
               "Content-Length: 0\r\n\r\n" %
               (DOMAIN, port, uuid.uuid4().hex[:16], DOMAIN,
                uuid.uuid4().hex[:8], DOMAIN, cid))
        opend[cid] = time.perf_counter()
        osock.sendto(msg.encode(), pbx)

    def send(d, authz):
        d["cseq"] += 1
        port = d["sock"].getsockname()[1]
        msg = ("REGISTER sip:%s SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport\r\n"
               "Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=%s\r\n"
               "To: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n"
               "Contact: <sip:%s@127.0.0.1:%d;pn-provider=apns;pn-prid=%s;"
               "pn-param=%s>;+sip.instance=\"<%s>\"\r\nExpires: 600\r\n"
               "%sContent-Length: 0\r\n\r\n" %
               (DOMAIN, port, uuid.uuid4().hex[:16], d["ext"], DOMAIN,
                d["tag"], d["ext"], DOMAIN, d["call_id"], d["cseq"],
                d["ext"], port, d["token"], VOIP, d["inst"], authz))
        d["sock"].sendto(msg.encode(), pbx)

    def on_msg(data):
        head = data.split("\r\n\r\n", 1)[0].split("\r\n")
        if not head[0].startswith("SIP/2.0 "):
            return
        status = int(head[0].split(" ")[1])
        h = {}
        for line in head[1:]:
            n, _, v = line.partition(":")
            h.setdefault(n.strip().lower(), v.strip())
        cid = h.get("call-id") or h.get("i")
        if cid in opend:
            olat.append((time.perf_counter() - opend.pop(cid)) * 1000.0)
            return
        d = by_cid.get(cid)
        if not d or not d["busy"]:
            return
        if status == 401:
            d["sent_at"] = time.perf_counter()
            send(d, "Authorization: %s\r\n" % digest(
                h["www-authenticate"], d["ext"], d["pw"], "sip:" + DOMAIN))
            return
        if status == 200:
            lat.append((time.perf_counter() - d["sent_at"]) * 1000.0)
            st["ok"] += 1
        else:
            st["other"] += 1
        d["busy"] = False

    start = time.perf_counter()
    end = start + a.duration
    interval = 1.0 / a.rate
    nxt, k = start, 0
    ointerval = 1.0 / a.options_rate if a.options_rate > 0 else None
    onxt = start
    while True:
        now = time.perf_counter()
        if now >= end and not any(d["busy"] for d in devs):
            break
        if now >= end + 10:
            st["lost"] = sum(1 for d in devs if d["busy"])
            break
        while now < end and nxt <= now:
            nxt += interval
            for _ in range(len(devs)):
                d = devs[k % len(devs)]
                k += 1
                if not d["busy"]:
                    break
            else:
                st["lost"] += 1  # every device busy: overload
                continue
            d["busy"] = True
            d["token"] = uuid.uuid4().hex + uuid.uuid4().hex
            send(d, "")
            st["sent"] += 1
        while ointerval and now < end and onxt <= now:
            onxt += ointerval
            send_options()
        wait = max(0.0, min(nxt - now, 0.01)) if now < end else 0.01
        if ointerval and now < end:
            wait = max(0.0, min(wait, onxt - now))
        r, _, _ = select.select(socks, [], [], wait)
        for s in r:
            for _ in range(64):
                try:
                    data, _ = s.recvfrom(65535)
                except BlockingIOError:
                    break
                on_msg(data.decode(errors="replace"))
    for s in socks:
        s.close()
    lat.sort()
    olat.sort()
    st["options_lost"] = len(opend)
    st["olat"] = olat
    return lat, st, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--build", default=os.path.join(root, "build-rel"))
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sockets", type=int, default=8)
    ap.add_argument("--options-rate", type=float, default=0.0)
    ap.add_argument("--set", action="append", default=[], metavar="S.K=V",
                    help="a daemon option, as pushpbx --set (repeatable)")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    pbx_bin = os.path.join(a.build, "src", "app", "pushpbx")
    sim_bin = os.path.join(a.build, "src", "pushsim", "pushsim")
    tmp = tempfile.mkdtemp(prefix="pushreg-bench-")
    sim = pbx = None
    try:
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", tmp + "/apns.p8"],
                       check=True, capture_output=True)
        sim = subprocess.Popen(
            [sim_bin, "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
             "--cert-out", tmp + "/sim-cert.pem", "--ready-file",
             tmp + "/sim.ready", "--apns-key",
             "DEMOKEY001:%s:%s/apns.p8" % (TEAM, tmp), "--apns-topic", BUNDLE],
            stdout=subprocess.DEVNULL, stderr=open(tmp + "/sim.log", "wb"))
        sr = wait_file(tmp + "/sim.ready", sim, "pushsim")
        conf = ("[sip]\nlisten = udp:127.0.0.1:0\ndomain = %s\nworkers = %d\n"
                "[log]\nlevel = warn\n[registrar]\ndigest_algorithms = md5\n"
                "[store]\npath = %s/bench.db\n[admin]\nenabled = no\n"
                "prov_db = \n"
                "[apns]\nenabled = yes\nbase_url = https://127.0.0.1:%d\n"
                "key_file = %s/apns.p8\nkey_id = DEMOKEY001\nteam_id = %s\n"
                "topic = %s\nca_file = %s/sim-cert.pem\n[fcm]\nenabled = no\n"
                % (DOMAIN, a.workers, tmp, sr["https_port"], tmp, TEAM,
                   BUNDLE, tmp))
        conf += "".join("[extension.%d]\npassword = pw%d\nmax_push_devices "
                        "= 1\n" % (1000 + i, 1000 + i)
                        for i in range(a.devices))
        open(tmp + "/pushpbx.conf", "w").write(conf)
        pbx = subprocess.Popen(
            [pbx_bin, "--config", tmp + "/pushpbx.conf", "--ready-file",
             tmp + "/pbx.ready"] +
            [x for kv in a.set for x in ("--set", kv)], cwd=tmp, stdout=subprocess.DEVNULL,
            stderr=open(tmp + "/pushpbx.log", "wb"))
        pr = wait_file(tmp + "/pbx.ready", pbx, "pushpbx")
        port = [l["port"] for l in pr["listen"] if l["transport"] == "udp"][0]
        load0 = os.getloadavg()
        lat, st, took = drive(a, port)
        load1 = os.getloadavg()
        print("pushreg-bench: rate=%g/s duration=%gs devices=%d workers=%d "
              "sockets=%d build=%s" % (a.rate, a.duration, a.devices,
                                       a.workers, a.sockets, a.build))
        print("load avg before %.2f after %.2f (1 min)" % (load0[0],
                                                             load1[0]))
        print("REGISTERs sent %d, 200 %d, other %d, not sent/lost %d, "
              "achieved %.0f/s" % (st["sent"], st["ok"], st["other"],
                                   st["lost"], st["ok"] / took))
        print("authenticated REGISTER -> 200 (ms): p50 %.3f p90 %.3f "
              "p99 %.3f p99.9 %.3f max %.3f" %
              (pct(lat, .5), pct(lat, .9), pct(lat, .99), pct(lat, .999),
               lat[-1] if lat else float("nan")))
        if a.options_rate > 0:
            ol = st["olat"]
            print("OPTIONS -> 200 (ms), %d answered, %d lost: p50 %.3f "
                  "p90 %.3f p99 %.3f p99.9 %.3f max %.3f" %
                  (len(ol), st["options_lost"], pct(ol, .5), pct(ol, .9),
                   pct(ol, .99), pct(ol, .999),
                   ol[-1] if ol else float("nan")))
    finally:
        stop(pbx)
        stop(sim)
        if pbx:
            log = open(tmp + "/pushpbx.log").read()
            errs = [l for l in log.splitlines() if "ERROR" in l or "WARN" in l]
            if errs:
                print("pushpbx warnings/errors (%d), first: %s" %
                      (len(errs), errs[0]))


if __name__ == "__main__":
    main()
