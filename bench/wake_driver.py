#!/usr/bin/env python3
"""wake_driver: the load side of bench/wake-bench.sh.

Plays, over two UDP sockets on 127.0.0.1, one caller extension and N
sleeping phones against a running pushpbx + pushsim:

  setup   every device i (extension FIRST+i) registers a Contact with
          pn-provider=apns;pn-prid=<token>;pn-param=<voip topic>, then
          goes to background (Expires: 0): pushpbx keeps the push device.
  load    the caller sends calls at RATE/s for DURATION s (INVITE, 407,
          ACK, INVITE with Proxy-Authorization), round-robin over the
          devices; a thread polls pushsim's GET /pushes?since=SEQ every
          POLL_MS and hands each call push to the device, which registers
          (401, REGISTER with auth, 200), answers the INVITE that follows
          with 200, and goes back to background (Expires: 0 with auth).
  report  waits for the last calls (bounded), reads GET /api/wake/latency
          (exact p50/p99 computed by the daemon over its samples) and
          prints them with calls attempted / answered / failed.

No ACK/BYE after the 200: the proxy is transaction-stateful and the
bench is about the wake path, not dialogs. Everything is bounded: the
run ends DURATION + DRAIN seconds after it starts whatever happens.
Exit status 0 when every call was answered, 1 otherwise.
"""
import argparse
import hashlib
import json
import os
import queue
import re
import select
import socket
import threading
import time
import urllib.request
import uuid

TEAM, BUNDLE = "DEMOTEAM01", "com.example.pushpbx"
VOIP = TEAM + "." + BUNDLE + ".voip"


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def digest(chal, user, pw, method, uri):
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', chal.split(" ", 1)[1]))
    cnonce = uuid.uuid4().hex[:8]
    ha1 = md5("%s:%s:%s" % (user, params["realm"], pw))
    ha2 = md5("%s:%s" % (method, uri))
    resp = md5("%s:%s:00000001:%s:auth:%s" % (ha1, params["nonce"], cnonce,
                                               ha2))
    return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", '
            'response="%s", algorithm=MD5, cnonce="%s", qop=auth, '
            'nc=00000001' % (user, params["realm"], params["nonce"], uri,
                             resp, cnonce))


def parse(data):
    head = data.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    h = {}
    vias = []
    for line in lines[1:]:
        n, _, v = line.partition(":")
        n = n.strip().lower()
        v = v.strip()
        if n in ("v", "via"):
            vias.append(v)
        h.setdefault({"i": "call-id", "f": "from", "t": "to",
                      "m": "contact"}.get(n, n), v)
    m = {"first": lines[0], "h": h, "vias": vias}
    if lines[0].startswith("SIP/2.0 "):
        m["status"] = int(lines[0].split(" ")[1])
    else:
        m["method"] = lines[0].split(" ", 1)[0]
        m["ruri"] = lines[0].split(" ")[1]
    return m


class Driver:
    def __init__(self, a):
        self.a = a
        self.pbx = (a.sip_host, a.sip_port)
        # Where the phones register (another cluster node: cluster-bench).
        self.dpbx = (a.device_sip_host or a.sip_host,
                     a.device_sip_port or a.sip_port)
        self.domain = a.domain
        self.csock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (self.csock, self.dsock):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        self.cport = self.csock.getsockname()[1]
        self.dport = self.dsock.getsockname()[1]
        self.devs = []
        for i in range(a.devices):
            ext = str(a.first + i)
            self.devs.append({
                "ext": ext, "pw": a.password_prefix + ext,
                "token": uuid.uuid4().hex + uuid.uuid4().hex,
                "call_id": "reg-%s-%s" % (ext, uuid.uuid4().hex[:12]),
                "cseq": 0, "tag": uuid.uuid4().hex[:8], "action": None,
                "expires": 0, "busy": False})
        self.by_ext = {d["ext"]: d for d in self.devs}
        self.by_token = {d["token"]: d for d in self.devs}
        self.by_regcid = {d["call_id"]: d for d in self.devs}
        self.calls = {}
        self.pushq = queue.Queue()
        self.stop_poll = threading.Event()
        self.st = {"attempted": 0, "answered": 0, "failed": 0,
                   "pushes_seen": 0, "wake_registers": 0, "invites_rx": 0, "backgrounded": 0, "errors": 0}
        self.finals = {}
        self.e2e_ms = []
        self.wake_ms = []  # phone view: wake REGISTER sent -> INVITE rx

    # ---- sending
    def via(self, port):
        return "SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport" % (
            port, uuid.uuid4().hex[:16])

    def csend(self, text):
        self.csock.sendto(text.encode(), self.pbx)

    def dsend(self, text):
        self.dsock.sendto(text.encode(), self.dpbx)

    # ---- devices
    def contact(self, d):
        return ("<sip:%s@127.0.0.1:%d;pn-provider=apns;pn-prid=%s;"
                "pn-param=%s>" % (d["ext"], self.dport, d["token"], VOIP))

    def register(self, d, expires, action, authz=""):
        d["cseq"] += 1
        d["action"], d["expires"] = action, expires
        if action == "wake" and authz:
            d["t_wreg"] = time.monotonic()
        self.dsend("REGISTER sip:%s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                   "From: <sip:%s@%s>;tag=%s\r\nTo: <sip:%s@%s>\r\n"
                   "Call-ID: %s\r\nCSeq: %d REGISTER\r\nContact: %s\r\n"
                   "Expires: %d\r\n%sContent-Length: 0\r\n\r\n" %
                   (self.domain, self.via(self.dport), d["ext"], self.domain,
                    d["tag"], d["ext"], self.domain, d["call_id"], d["cseq"],
                    self.contact(d), expires, authz))

    def on_device_msg(self, m):
        if "status" in m:
            d = self.by_regcid.get(m["h"].get("call-id"))
            if d is None or not m["h"].get("cseq", "").endswith("REGISTER"):
                return
            if m["status"] == 401:
                z = digest(m["h"]["www-authenticate"], d["ext"], d["pw"],
                           "REGISTER", "sip:" + self.domain)
                self.register(d, d["expires"], d["action"],
                              "Authorization: %s\r\n" % z)
            elif m["status"] == 200:
                act, d["action"] = d["action"], None
                if act == "setup":
                    self.register(d, 0, "background")
                elif act in ("background", "rebackground"):
                    d["ready"] = True
                    d["busy"] = False
                    self.st["backgrounded"] += 1
                elif act == "wake":
                    self.st["wake_registers"] += 1
                    if d.pop("invited", False):  # INVITE overtook the 200
                        self.register(d, 0, "rebackground")
            else:
                self.st["errors"] += 1
                d["action"] = None
            return
        meth = m["method"]
        if meth == "INVITE":
            user = m["ruri"][4:].split("@", 1)[0]
            d = self.by_ext.get(user)
            self.st["invites_rx"] += 1
            if d is not None and "t_wreg" in d:
                self.wake_ms.append((time.monotonic() - d.pop("t_wreg")) *
                                    1000)
            self.dreply(m, 200, "OK", d["tag"] if d else "x",
                        "Contact: <sip:%s@127.0.0.1:%d>\r\n" %
                        (user, self.dport))
            # Back to sleep once the call is answered (next call to this
            # device will push it again).
            if d is not None and d["action"] is None:
                self.register(d, 0, "rebackground")
            elif d is not None and d["action"] == "wake":
                d["invited"] = True
        elif meth in ("BYE", "OPTIONS", "CANCEL"):
            self.dreply(m, 200, "OK", "x")

    def dreply(self, req, status, reason, tag, extra=""):
        h = req["h"]
        to = h["to"] if ";tag=" in h["to"] else h["to"] + ";tag=" + tag
        vias = "".join("Via: %s\r\n" % v for v in req["vias"])
        rr = req["h"].get("record-route")
        self.dsend("SIP/2.0 %d %s\r\n%s%sFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\n"
                   "CSeq: %s\r\n%sContent-Length: 0\r\n\r\n" %
                   (status, reason, vias,
                    "Record-Route: %s\r\n" % rr if rr else "", h["from"], to,
                    h["call-id"], h["cseq"], extra))

    # ---- the caller
    def invite(self, c, authz=""):
        c["cseq"] += 1
        c["via"] = self.via(self.cport)
        self.csend("INVITE %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                   "From: <sip:%s@%s>;tag=%s\r\nTo: <sip:%s@%s>\r\n"
                   "Call-ID: %s\r\nCSeq: %d INVITE\r\n"
                   "Contact: <sip:%s@127.0.0.1:%d>\r\n%sContent-Length: 0"
                   "\r\n\r\n" %
                   (c["ruri"], c["via"], self.a.caller, self.domain, c["tag"],
                    c["to"], self.domain, c["call_id"], c["cseq"],
                    self.a.caller, self.cport, authz))

    def new_call(self, d):
        c = {"call_id": "call-%s" % uuid.uuid4().hex, "to": d["ext"],
             "ruri": "sip:%s@%s" % (d["ext"], self.domain), "cseq": 0,
             "tag": uuid.uuid4().hex[:8], "t0": time.monotonic(),
             "done": False}
        self.calls[c["call_id"]] = c
        d["busy"] = True
        self.st["attempted"] += 1
        self.invite(c)

    def on_caller_msg(self, m):
        c = self.calls.get(m["h"].get("call-id"))
        if c is None or "status" not in m or c["done"]:
            return
        s = m["status"]
        if s < 200:
            return
        if s == 407 and c["cseq"] == 1:
            self.csend("ACK %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                       "From: <sip:%s@%s>;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\n"
                       "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n" %
                       (c["ruri"], c["via"], self.a.caller, self.domain,
                        c["tag"], m["h"]["to"], c["call_id"]))
            z = digest(m["h"]["proxy-authenticate"], self.a.caller,
                       self.a.caller_password, "INVITE", c["ruri"])
            self.invite(c, "Proxy-Authorization: %s\r\n" % z)
            return
        c["done"] = True
        self.finals[s] = self.finals.get(s, 0) + 1
        if 200 <= s < 300:
            self.st["answered"] += 1
            self.e2e_ms.append((time.monotonic() - c["t0"]) * 1000)
        else:
            self.st["failed"] += 1
            self.csend("ACK %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n"
                       "From: <sip:%s@%s>;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\n"
                       "CSeq: %d ACK\r\nContent-Length: 0\r\n\r\n" %
                       (c["ruri"], c["via"], self.a.caller, self.domain,
                        c["tag"], m["h"]["to"], c["call_id"], c["cseq"]))
            d = self.by_ext.get(c["to"])
            if d is not None and d["action"] is None:
                d["busy"] = False

    # ---- pushsim poller (own thread: HTTP would stall the SIP loop)
    def poll(self):
        since = self.a.push_since
        url = "http://127.0.0.1:%d/pushes?since=" % self.a.pushsim_control
        while not self.stop_poll.is_set():
            try:
                with urllib.request.urlopen(url + str(since), timeout=5) as r:
                    got = json.loads(r.read())["pushes"]
            except OSError:
                got = []
            for p in got:
                since = max(since, p["seq"])
                pl = p.get("payload") or {}
                if pl.get("type") == "call":
                    self.pushq.put(p["token"])
            self.stop_poll.wait(self.a.poll_ms / 1000.0)

    # ---- loop
    def pump(self, until):
        """Handle SIP and pushes until monotonic time until."""
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            try:
                while True:
                    tok = self.pushq.get_nowait()
                    d = self.by_token.get(tok)
                    self.st["pushes_seen"] += 1
                    if d is not None and d["action"] is None:
                        self.register(d, 300, "wake")
            except queue.Empty:
                pass
            r, _, _ = select.select([self.csock, self.dsock], [], [],
                                    min(left, 0.002))
            for s in r:
                for _ in range(64):
                    try:
                        data = s.recv(65535)
                    except BlockingIOError:
                        break
                    try:
                        m = parse(data.decode(errors="replace"))
                    except (IndexError, ValueError, KeyError):
                        self.st["errors"] += 1
                        continue
                    if s is self.csock:
                        self.on_caller_msg(m)
                    else:
                        self.on_device_msg(m)

    def setup(self):
        t_end = time.monotonic() + self.a.setup_timeout
        todo = list(self.devs)
        while time.monotonic() < t_end:
            inflight = sum(1 for d in self.devs
                           if d["action"] in ("setup", "background"))
            while todo and inflight < 50:
                self.register(todo.pop(), 300, "setup")
                inflight += 1
            self.pump(time.monotonic() + 0.01)
            if not todo and all(d.get("ready") for d in self.devs):
                return True
        return False

    def load(self):
        self.st["backgrounded"] = 0
        t = threading.Thread(target=self.poll, daemon=True)
        t.start()
        n = int(self.a.rate * self.a.duration)
        t0 = time.monotonic()
        k = 0
        skipped = 0
        for i in range(n):
            due = t0 + i / self.a.rate
            self.pump(due)
            # Round-robin; a device still busy with its previous call is
            # skipped (counted), never called twice at once.
            for _ in range(len(self.devs)):
                d = self.devs[k % len(self.devs)]
                k += 1
                if not d["busy"]:
                    break
            else:
                skipped += 1
                continue
            self.new_call(d)
        self.st["skipped"] = skipped
        self.st["send_s"] = round(time.monotonic() - t0, 2)
        end = time.monotonic() + self.a.drain
        while time.monotonic() < end and any(not c["done"] for c in
                                             self.calls.values()):
            self.pump(time.monotonic() + 0.05)
        # Let the last re-backgrounds finish so the daemon is quiet.
        self.pump(time.monotonic() + 0.3)
        self.stop_poll.set()
        t.join(timeout=6)


def pct(v, q):
    v = sorted(v)
    if not v:
        return 0.0
    k = max(1, min(len(v), int(q * len(v) + 0.999999)))
    return v[k - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sip-port", type=int, required=True)
    ap.add_argument("--sip-host", default="127.0.0.1")
    ap.add_argument("--device-sip-host", help="phones register here "
                    "(default: --sip-host)")
    ap.add_argument("--device-sip-port", type=int)
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds between the set-up and the calls")
    ap.add_argument("--admin-port", type=int, required=True)
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--pushsim-control", type=int, required=True)
    ap.add_argument("--push-since", type=int, default=0)
    ap.add_argument("--domain", default="bench.local")
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--first", type=int, default=1000)
    ap.add_argument("--password-prefix", default="pw")
    ap.add_argument("--caller", default="9000")
    ap.add_argument("--caller-password", default="pw9000")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--drain", type=float, default=10.0)
    ap.add_argument("--poll-ms", type=float, default=5.0)
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args()

    drv = Driver(a)
    if not drv.setup():
        print("wake_driver: setup incomplete: %d/%d devices in background" %
              (sum(1 for d in drv.devs if d.get("ready")), len(drv.devs)))
        return 2
    print("wake_driver: %d devices registered and in background" %
          len(drv.devs))
    time.sleep(a.settle)
    drv.load()
    req = urllib.request.Request(
        "http://127.0.0.1:%d/api/wake/latency" % a.admin_port,
        headers={"authorization": "Bearer " + a.admin_token})
    with urllib.request.urlopen(req, timeout=10) as r:
        lat = json.loads(r.read())
    req = urllib.request.Request(
        "http://127.0.0.1:%d/api/pushes" % a.admin_port,
        headers={"authorization": "Bearer " + a.admin_token})
    with urllib.request.urlopen(req, timeout=10) as r:
        pushes = json.loads(r.read()).get("items", [])
    # push_send -> request about to be written (curl PRETRANSFER), per
    # call push kept in the daemon's recent list: the push client's part
    # of INVITE_TO_PUSH (the rest is the worker and the hop to the push
    # thread).
    wr = [p["write_us"] for p in pushes
          if p.get("type") == "call" and p.get("write_us")]
    st = drv.st
    print("calls: attempted=%d answered=%d failed=%d (finals %s) "
          "skipped=%d sent_in=%.1fs" %
          (st["attempted"], st["answered"], st["failed"],
           json.dumps(drv.finals, sort_keys=True), st["skipped"],
           st["send_s"]))
    print("devices: pushes_seen=%d wake_registers=%d invites=%d "
          "rebackgrounded=%d errors=%d" %
          (st["pushes_seen"], st["wake_registers"], st["invites_rx"],
           st["backgrounded"], st["errors"]))
    for key, label in (("invite_to_push", "INVITE rx -> push written"),
                       ("register_to_invite", "REGISTER rx -> INVITE sent")):
        x = lat[key]
        print("%-28s n=%-5d p50=%6d us  p90=%6d us  p99=%6d us  "
              "p99.9=%6d us  max=%6d us  mean=%.0f us" %
              (label, x["samples"], x["p50_us"], x["p90_us"], x["p99_us"],
               x["p999_us"], x["max_us"], x["mean_us"]))
    print("  of which push_send -> written (last %d call pushes): "
          "p50=%d us p99=%d us max=%d us" %
          (len(wr), pct(wr, 0.5), pct(wr, 0.99), max(wr) if wr else 0))
    print("caller view (INVITE sent -> 200, incl. driver + poll %.0f ms): "
          "p50=%.1f ms p99=%.1f ms" %
          (a.poll_ms, pct(drv.e2e_ms, 0.5), pct(drv.e2e_ms, 0.99)))
    print("phone view (authenticated wake REGISTER sent -> INVITE "
          "received): n=%d p50=%.2f ms p99=%.2f ms max=%.2f ms" %
          (len(drv.wake_ms), pct(drv.wake_ms, 0.5), pct(drv.wake_ms, 0.99),
           max(drv.wake_ms) if drv.wake_ms else 0))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"calls": st, "finals": drv.finals, "latency": lat,
                       "write_us": {"n": len(wr), "p50": pct(wr, 0.5),
                                    "p99": pct(wr, 0.99)},
                       "phone_wake_ms": {"n": len(drv.wake_ms),
                                         "p50": pct(drv.wake_ms, 0.5),
                                         "p99": pct(drv.wake_ms, 0.99)},
                       "caller_e2e_ms": {"p50": pct(drv.e2e_ms, 0.5),
                                         "p99": pct(drv.e2e_ms, 0.99)}},
                      f, indent=1)
    return 0 if st["answered"] == st["attempted"] else 1


if __name__ == "__main__":
    os._exit(main())
