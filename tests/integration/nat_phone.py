#!/usr/bin/env python3
"""A phone behind NAT for test_media_nat.py: SIP over UDP and G.711 RTP.

Run inside a network namespace (ip netns exec NS python3 nat_phone.py
...). SIPp cannot be this phone: it must REGISTER from the socket it then
answers an INVITE of another Call-ID on (the binding's source is the NAT
mapping of that socket), and the test counts the RTP packets each phone
receives, which SIPp does not report.

Roles:
  callee: REGISTER (digest), wait for an INVITE, 180, 200 with SDP, ACK,
          send RTP from its media port to the caller's SDP address until
          the call ends (BYE received, or it sends the BYE: --hangup).
  caller: REGISTER, INVITE (407, again with credentials), 200, ACK along
          the Record-Route set, RTP for --seconds, then BYE (or wait for
          the callee's BYE: --wait-bye).
Every in-dialog request goes along the route set (loose routing: to the
proxy), its Request-URI is the other side's Contact: a private address
this phone cannot reach, so only the proxy's NAT handling delivers it.

Prints one JSON line: {"ok", "rtp_received", "rtp_sent", "error", ...}.
Every wait is bounded (--timeout).
"""
import argparse
import hashlib
import json
import os
import random
import re
import socket
import struct
import sys
import time


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


class Sip:
    def __init__(self, a):
        self.a = a
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((a.ip, a.port))
        self.proxy = (a.proxy, a.proxy_port)
        self.tag = "%08x" % random.getrandbits(32)
        self.deadline = time.monotonic() + a.timeout
        self.log = []

    def send(self, text, dest=None):
        self.log.append(">> " + text.split("\r\n", 1)[0])
        self.s.sendto(text.encode(), dest or self.proxy)

    def recv(self, want=None, timeout=None):
        """Next message (optionally: whose first line matches want)."""
        end = min(self.deadline, time.monotonic() + (timeout or 1e9))
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("waiting for %s" % (want or "a message"))
            self.s.settimeout(left)
            try:
                data, src = self.s.recvfrom(65536)
            except socket.timeout:
                continue
            m = parse(data.decode(errors="replace"))
            m["src"] = src
            self.log.append("<< " + m["first"])
            if want is None or re.search(want, m["first"]):
                return m
            # answer stray retransmissions/requests so peers do not hang
            if m["first"].startswith("BYE ") or \
               m["first"].startswith("OPTIONS "):
                self.respond(m, 200, "OK")

    def respond(self, req, code, reason, extra="", body="", to_tag=None):
        to = req["h"]["to"][0]
        if to_tag and "tag=" not in to:
            to += ";tag=" + to_tag
        lines = ["SIP/2.0 %d %s" % (code, reason)]
        lines += ["Via: " + v for v in req["h"].get("via", [])]
        lines += ["Record-Route: " + v for v in req["h"].get("record-route",
                                                              [])]
        lines += ["From: " + req["h"]["from"][0], "To: " + to,
                  "Call-ID: " + req["h"]["call-id"][0],
                  "CSeq: " + req["h"]["cseq"][0]]
        text = "\r\n".join(lines) + "\r\n" + extra
        if body:
            text += "Content-Type: application/sdp\r\n"
        text += "Content-Length: %d\r\n\r\n%s" % (len(body), body)
        self.send(text, req["src"])


def parse(text):
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    h = {}
    for ln in lines[1:]:
        if ":" not in ln:
            continue
        k, v = ln.split(":", 1)
        k = k.strip().lower()
        k = {"v": "via", "f": "from", "t": "to", "i": "call-id",
             "m": "contact", "c": "content-type", "l": "content-length"
             }.get(k, k)
        for part in split_commas(v.strip()) if k in (
                "via", "record-route", "route") else [v.strip()]:
            h.setdefault(k, []).append(part)
    return {"first": lines[0], "h": h, "body": body}


def split_commas(v):
    out, depth, cur, q = [], 0, "", False
    for ch in v:
        if ch == '"':
            q = not q
        if not q and ch == "<":
            depth += 1
        if not q and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not q:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def uri_of(v):
    m = re.search(r"<([^>]*)>", v)
    return m.group(1) if m else v.split(";")[0]


def tag_of(v):
    m = re.search(r";\s*tag=([^;>\s]+)", v)
    return m.group(1) if m else ""


def digest(a, method, uri, chal):
    realm = re.search(r'realm="([^"]*)"', chal).group(1)
    nonce = re.search(r'nonce="([^"]*)"', chal).group(1)
    qop = "qop=" in chal
    ha1 = md5("%s:%s:%s" % (a.user, realm, a.password))
    ha2 = md5("%s:%s" % (method, uri))
    v = 'Digest username="%s", realm="%s", nonce="%s", uri="%s", ' \
        'algorithm=MD5' % (a.user, realm, nonce, uri)
    if qop:
        nc, cn = "00000001", "%08x" % random.getrandbits(32)
        resp = md5("%s:%s:%s:%s:auth:%s" % (ha1, nonce, nc, cn, ha2))
        v += ', qop=auth, nc=%s, cnonce="%s"' % (nc, cn)
    else:
        resp = md5("%s:%s:%s" % (ha1, nonce, ha2))
    op = re.search(r'opaque="([^"]*)"', chal)
    if op:
        v += ', opaque="%s"' % op.group(1)
    return v + ', response="%s"' % resp


def sdp(a):
    proto = "RTP/SAVP" if a.srtp else "RTP/AVP"
    body = ("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            "m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=sendrecv\r\n").format(ip=a.ip, port=a.media, proto=proto)
    if a.srtp:
        body += ("a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
                 "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n")
    return body


def sdp_dest(body):
    c = re.search(r"^c=IN IP4 (\S+)", body, re.M)
    m = re.search(r"^m=audio (\d+) (\S+)", body, re.M)
    if not c or not m:
        return None, None
    return (c.group(1), int(m.group(1))), m.group(2)


class Rtp:
    """Symmetric RTP on the media port: send PCMU, count what arrives."""

    def __init__(self, a):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((a.ip, a.media))
        self.s.setblocking(False)
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.sent = self.received = self.received_bytes = 0
        self.sizes = set()

    def send(self, dest):
        hdr = struct.pack("!BBHII", 0x80, 0, self.seq & 0xffff,
                          self.ts & 0xffffffff, self.ssrc)
        self.seq += 1
        self.ts += 160
        try:
            self.s.sendto(hdr + b"\xff" * 160, dest)
            self.sent += 1
        except OSError:
            pass

    def drain(self):
        while True:
            try:
                data, _ = self.s.recvfrom(4096)
            except (BlockingIOError, OSError):
                return
            self.received += 1
            self.received_bytes += len(data)
            self.sizes.add(len(data))


def register(sip, a):
    cid = "reg-%08x@%s" % (random.getrandbits(32), a.ip)
    auth = ""
    for cseq in (1, 2, 3):
        sip.send(
            "REGISTER sip:{d} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP {ip}:{p};branch=z9hG4bK{b};rport\r\n"
            "From: <sip:{u}@{d}>;tag={t}\r\nTo: <sip:{u}@{d}>\r\n"
            "Call-ID: {cid}\r\nCSeq: {c} REGISTER\r\n"
            "Contact: <sip:{u}@{ip}:{p}>\r\nExpires: 300\r\n"
            "Max-Forwards: 70\r\n{auth}Content-Length: 0\r\n\r\n".format(
                d=a.domain, ip=a.ip, p=a.port, b=random.getrandbits(40),
                u=a.user, t=sip.tag, cid=cid, c=cseq, auth=auth))
        r = sip.recv(r"^SIP/2.0 [2-6]\d\d")
        code = int(r["first"].split()[1])
        if code == 200:
            return
        if code != 401:
            raise RuntimeError("REGISTER: " + r["first"])
        auth = "Authorization: %s\r\n" % digest(
            a, "REGISTER", "sip:" + a.domain, r["h"]["www-authenticate"][0])
    raise RuntimeError("REGISTER not accepted")


def in_dialog(sip, a, method, target, routes, frm, to, cid, cseq, body=""):
    text = ("{m} {t} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP {ip}:{p};branch=z9hG4bK{b};rport\r\n"
            "{routes}From: {f}\r\nTo: {to}\r\nCall-ID: {cid}\r\n"
            "CSeq: {c} {m}\r\nMax-Forwards: 70\r\n"
            "Contact: <sip:{u}@{ip}:{p}>\r\n").format(
                m=method, t=target, ip=a.ip, p=a.port,
                b=random.getrandbits(40),
                routes="".join("Route: %s\r\n" % r for r in routes), f=frm,
                to=to, cid=cid, c=cseq, u=a.user)
    if body:
        text += "Content-Type: application/sdp\r\n"
    text += "Content-Length: %d\r\n\r\n%s" % (len(body), body)
    # loose routing: to the first Route (the proxy), whatever the target
    sip.send(text)


def media_loop(sip, rtp, dest, seconds, stop_on_bye):
    """Send RTP every 20 ms for seconds (or until a BYE), counting what
    arrives. Returns the BYE if one came."""
    end = time.monotonic() + seconds
    nxt = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if dest and now >= nxt:
            rtp.send(dest)
            nxt += 0.02
        rtp.drain()
        if stop_on_bye:
            sip.s.settimeout(0.005)
            try:
                data, src = sip.s.recvfrom(65536)
            except socket.timeout:
                continue
            m = parse(data.decode(errors="replace"))
            m["src"] = src
            sip.log.append("<< " + m["first"])
            if m["first"].startswith("BYE "):
                return m
            if m["first"].startswith("ACK "):
                continue
        else:
            time.sleep(0.004)
    rtp.drain()
    return None


def caller(sip, a, rtp, out):
    cid = "call-%08x@%s" % (random.getrandbits(32), a.ip)
    frm = "<sip:%s@%s>;tag=%s" % (a.user, a.domain, sip.tag)
    ruri = "sip:%s@%s" % (a.callee, a.domain)
    body = sdp(a)
    auth = ""
    r = None
    for cseq in (1, 2):
        branch = "z9hG4bK%d" % random.getrandbits(40)
        sip.send(
            "INVITE {r} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP {ip}:{p};branch={b};rport\r\n"
            "From: {f}\r\nTo: <{r}>\r\nCall-ID: {cid}\r\n"
            "CSeq: {c} INVITE\r\nContact: <sip:{u}@{ip}:{p}>\r\n"
            "Max-Forwards: 70\r\n{auth}Content-Type: application/sdp\r\n"
            "Content-Length: {n}\r\n\r\n{body}".format(
                r=ruri, ip=a.ip, p=a.port, b=branch, f=frm, cid=cid, c=cseq,
                u=a.user, auth=auth, n=len(body), body=body))
        cancelled = False
        while True:
            r = sip.recv(r"^SIP/2.0 ")
            code = int(r["first"].split()[1])
            if code >= 200 and "CANCEL" in r["h"]["cseq"][0]:
                continue
            if code >= 200:
                break
            if code >= 180 and r["body"]:
                out["early_sdp"] = r["body"]
            if code >= 180 and a.cancel and not cancelled:
                cancelled = True
                sip.send(
                    "CANCEL {r} SIP/2.0\r\n"
                    "Via: SIP/2.0/UDP {ip}:{p};branch={b};rport\r\n"
                    "From: {f}\r\nTo: <{r}>\r\nCall-ID: {cid}\r\n"
                    "CSeq: {c} CANCEL\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n".format(
                        r=ruri, ip=a.ip, p=a.port, b=branch, f=frm, cid=cid,
                        c=cseq))
        if code != 407:
            break
        sip.send(
            "ACK {r} SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{p};branch={b};rport\r\n"
            "From: {f}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {c} ACK\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n".format(
                r=ruri, ip=a.ip, p=a.port, b=branch, f=frm,
                to=r["h"]["to"][0], cid=cid, c=cseq))
        auth = "Proxy-Authorization: %s\r\n" % digest(
            a, "INVITE", ruri, r["h"]["proxy-authenticate"][0])
    code = int(r["first"].split()[1])
    out["status"] = code
    if a.expect_fail:
        sip.send(
            "ACK {r} SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{p};branch={b};rport\r\n"
            "From: {f}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 2 ACK\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n".format(
                r=ruri, ip=a.ip, p=a.port, b=branch, f=frm,
                to=r["h"]["to"][0], cid=cid))
        return
    if code != 200:
        raise RuntimeError("INVITE answered " + r["first"])
    out["answer_sdp"] = r["body"]
    out["answer_cl"] = r["h"].get("content-length", ["?"])[0]
    to = r["h"]["to"][0]
    target = uri_of(r["h"]["contact"][0])
    routes = list(reversed(r["h"].get("record-route", [])))
    out["routes"] = routes
    in_dialog(sip, a, "ACK", target, routes, frm, to, cid, 2)
    dest, proto = sdp_dest(r["body"])
    out["answer_proto"] = proto
    if a.wait_bye:
        bye = media_loop(sip, rtp, dest, a.seconds + 5, True)
        if not bye:
            raise RuntimeError("no BYE from the callee")
        sip.respond(bye, 200, "OK")
        out["bye_from_peer"] = True
        return
    media_loop(sip, rtp, dest, a.seconds, False)
    in_dialog(sip, a, "BYE", target, routes, frm, to, cid, 3)
    r = sip.recv(r"^SIP/2.0 [2-6]\d\d .*|^SIP/2.0 [2-6]\d\d$", timeout=5)
    out["bye_status"] = int(r["first"].split()[1])


def callee(sip, a, rtp, out):
    inv = sip.recv(r"^INVITE ")
    out["offer_sdp"] = inv["body"]
    totag = "%08x" % random.getrandbits(32)
    contact = "Contact: <sip:%s@%s:%d>\r\n" % (a.user, a.ip, a.port)
    sip.respond(inv, 180, "Ringing", contact, to_tag=totag)
    if a.no_answer:
        # ring until the caller cancels or the proxy's ring time ends
        m = sip.recv(r"^CANCEL ", timeout=a.seconds + 10)
        sip.respond(m, 200, "OK")
        sip.respond(inv, 487, "Request Terminated", to_tag=totag)
        sip.recv(r"^ACK ", timeout=5)
        out["cancelled"] = True
        return
    body = sdp(a)
    sip.respond(inv, 200, "OK", contact, body, to_tag=totag)
    # wait for the ACK (answer the INVITE's retransmissions)
    while True:
        m = sip.recv(r"^(ACK|INVITE) ", timeout=5)
        if m["first"].startswith("ACK "):
            break
        sip.respond(inv, 200, "OK", contact, body, to_tag=totag)
    dest, proto = sdp_dest(inv["body"])
    out["offer_proto"] = proto
    if not a.hangup:
        bye = media_loop(sip, rtp, dest, a.seconds + 5, True)
        if not bye:
            raise RuntimeError("no BYE")
        sip.respond(bye, 200, "OK")
        return
    media_loop(sip, rtp, dest, a.seconds, False)
    routes = inv["h"].get("record-route", [])
    frm = inv["h"]["to"][0] + ";tag=" + totag
    in_dialog(sip, a, "BYE", uri_of(inv["h"]["contact"][0]), routes, frm,
              inv["h"]["from"][0], inv["h"]["call-id"][0], 1)
    r = sip.recv(r"^SIP/2.0 [2-6]\d\d", timeout=5)
    out["bye_status"] = int(r["first"].split()[1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--role", choices=["caller", "callee"], required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--port", type=int, default=5062)
    p.add_argument("--media", type=int, default=6000)
    p.add_argument("--proxy", required=True)
    p.add_argument("--proxy-port", type=int, required=True)
    p.add_argument("--domain", default="test.local")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--callee", default="")
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--hangup", action="store_true")
    p.add_argument("--wait-bye", action="store_true")
    p.add_argument("--srtp", action="store_true")
    p.add_argument("--cancel", action="store_true")
    p.add_argument("--no-answer", action="store_true")
    p.add_argument("--expect-fail", action="store_true")
    p.add_argument("--ready", default="")
    a = p.parse_args()
    out = {"ok": False}
    sip = Sip(a)
    rtp = Rtp(a)
    try:
        register(sip, a)
        if a.ready:
            open(a.ready, "w").write("registered")
        (caller if a.role == "caller" else callee)(sip, a, rtp, out)
        out["ok"] = True
    except Exception as e:  # reported to the test, which asserts on it
        out["error"] = "%s: %s" % (type(e).__name__, e)
    out.update(rtp_received=rtp.received, rtp_sent=rtp.sent,
               rtp_bytes=rtp.received_bytes, rtp_sizes=sorted(rtp.sizes),
               log=sip.log[-40:])
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
