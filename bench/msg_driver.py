#!/usr/bin/env python3
"""msg_driver: the load side of bench/msg-bench.sh (MESSAGE -> push).

Against a running pushpbx + pushsim on 127.0.0.1 (wake_driver's device
setup is reused):

  setup   every device i (extension FIRST+i) registers with APNs push
          params and goes to background (Expires: 0): no binding, so a
          MESSAGE to it is stored and pushed.
  load    the sender sends MESSAGEs at RATE/s for DURATION s,
          round-robin over the devices: MESSAGE, 407, MESSAGE with
          Proxy-Authorization (the clock starts when this one is sent),
          202 once stored. A thread polls pushsim's GET /pushes?since=SEQ
          every POLL_MS; each `message` push is matched by its preview
          (a unique text per message).
  report  MESSAGE sent -> push received by pushsim (pushsim's time_ms,
          wall clock, 1 ms resolution; both on this host), and MESSAGE
          sent -> 202 received, p50/p99/max; counts.

Bounded: the run ends DURATION + DRAIN s after the load starts. Exit 0
when every MESSAGE got 202 and its push, 1 otherwise.
"""
import argparse
import json
import os
import sys
import threading
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wake_driver  # noqa: E402
from wake_driver import digest, pct  # noqa: E402


class MsgDriver(wake_driver.Driver):
    def __init__(self, a):
        super().__init__(a)
        self.msgs = {}     # call-id -> state
        self.by_text = {}  # preview text -> call-id
        self.push_ms = {}  # preview text -> pushsim time_ms
        self.plock = threading.Lock()
        self.ack_ms, self.e2e_ms = [], []

    def message(self, mm, authz=""):
        mm["cseq"] += 1
        body = mm["text"]
        if authz:
            mm["t_send"] = time.time() * 1000.0
        self.csend("MESSAGE sip:%s@%s SIP/2.0\r\nVia: %s\r\n"
                   "Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=%s\r\n"
                   "To: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: %d MESSAGE\r\n"
                   "Content-Type: text/plain\r\n%sContent-Length: %d\r\n\r\n%s"
                   % (mm["to"], self.domain, self.via(self.cport),
                      self.a.caller, self.domain, mm["tag"], mm["to"],
                      self.domain, mm["call_id"], mm["cseq"], authz,
                      len(body), body))

    def new_msg(self, d, i):
        mm = {"to": d["ext"], "call_id": "msg-%d-%s" % (i, uuid.uuid4().hex),
              "tag": uuid.uuid4().hex[:8], "cseq": 0, "status": 0,
              "text": "bench message %d %s" % (i, uuid.uuid4().hex[:8])}
        self.msgs[mm["call_id"]] = mm
        self.by_text[mm["text"]] = mm["call_id"]
        self.st["attempted"] += 1
        self.message(mm)

    def on_caller_msg(self, m):
        mm = self.msgs.get(m["h"].get("call-id"))
        if mm is None or "status" not in m or m["status"] < 200:
            return
        if m["status"] == 407 and mm["cseq"] == 1:
            z = digest(m["h"]["proxy-authenticate"], self.a.caller,
                       self.a.caller_password, "MESSAGE",
                       "sip:%s@%s" % (mm["to"], self.domain))
            self.message(mm, "Proxy-Authorization: %s\r\n" % z)
            return
        if mm["status"]:
            return
        mm["status"] = m["status"]
        self.finals[str(m["status"])] = self.finals.get(
            str(m["status"]), 0) + 1
        if m["status"] == 202:
            self.st["answered"] += 1
            self.ack_ms.append(time.time() * 1000.0 - mm["t_send"])
        else:
            self.st["failed"] += 1

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
                if pl.get("type") == "message":
                    with self.plock:
                        self.push_ms[pl.get("preview")] = p["time_ms"]
            self.stop_poll.wait(self.a.poll_ms / 1000.0)

    def load(self):
        t = threading.Thread(target=self.poll, daemon=True)
        t.start()
        n = int(self.a.rate * self.a.duration)
        t0 = time.monotonic()
        for i in range(n):
            self.pump(t0 + i / self.a.rate)
            self.new_msg(self.devs[i % len(self.devs)], i)
        self.st["send_s"] = round(time.monotonic() - t0, 2)
        end = time.monotonic() + self.a.drain
        while time.monotonic() < end:
            self.pump(time.monotonic() + 0.05)
            with self.plock:
                if (len(self.push_ms) >= n and
                        all(mm["status"] for mm in self.msgs.values())):
                    break
        self.pump(time.monotonic() + 0.3)
        self.stop_poll.set()
        t.join(timeout=6)
        for text, cid in self.by_text.items():
            mm = self.msgs[cid]
            if text in self.push_ms and "t_send" in mm:
                self.e2e_ms.append(self.push_ms[text] - mm["t_send"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sip-port", type=int, required=True)
    ap.add_argument("--admin-port", type=int, required=True)
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--pushsim-control", type=int, required=True)
    ap.add_argument("--push-since", type=int, default=0)
    ap.add_argument("--domain", default="bench.local")
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--first", type=int, default=1000)
    ap.add_argument("--password-prefix", default="pw")
    ap.add_argument("--caller", default="999999")
    ap.add_argument("--caller-password", default="pw999999")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--drain", type=float, default=10.0)
    ap.add_argument("--poll-ms", type=float, default=5.0)
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args()

    drv = MsgDriver(a)
    if not drv.setup():
        print("msg_driver: setup incomplete")
        return 2
    print("msg_driver: %d devices registered and in background" %
          len(drv.devs))
    drv.load()
    st = drv.st
    print("messages: attempted=%d 202=%d failed=%d (finals %s) pushes=%d "
          "sent_in=%.1fs" % (st["attempted"], st["answered"], st["failed"],
                             json.dumps(drv.finals, sort_keys=True),
                             len(drv.e2e_ms), st["send_s"]))
    for label, v in (("MESSAGE sent -> push at pushsim", drv.e2e_ms),
                     ("MESSAGE sent -> 202 received", drv.ack_ms)):
        print("%-32s n=%-5d p50=%7.2f ms  p99=%7.2f ms  max=%7.2f ms" %
              (label, len(v), pct(v, 0.5), pct(v, 0.99),
               max(v) if v else 0.0))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"messages": st, "finals": drv.finals,
                       "push_ms": {"n": len(drv.e2e_ms),
                                   "p50": pct(drv.e2e_ms, 0.5),
                                   "p99": pct(drv.e2e_ms, 0.99)},
                       "accepted_ms": {"n": len(drv.ack_ms),
                                       "p50": pct(drv.ack_ms, 0.5),
                                       "p99": pct(drv.ack_ms, 0.99)}},
                      f, indent=1)
    ok = st["answered"] == st["attempted"] == len(drv.e2e_ms)
    return 0 if ok else 1


if __name__ == "__main__":
    os._exit(main())
