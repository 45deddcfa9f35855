#!/usr/bin/env python3
"""tls-mem: RSS per idle TLS connection of a running pushpbx.

Opens N TLS 1.2 connections to its tls: listener (from the --ready-file),
sends one OPTIONS on each and reads the answer, then compares the daemon's
VmRSS before and after. One Python client: the connection rate it prints
is the client's, not the server's limit. Needs max_connections and
tcp_max_per_source raised for N, and `ulimit -n` above N.

    bench/tls-mem.py READY_FILE N
"""
import json
import resource
import socket
import ssl
import sys
import time


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def main():
    ready, n = sys.argv[1], int(sys.argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
    r = json.load(open(ready))
    pid = r["pid"]
    port = [x["port"] for x in r["listen"] if x["transport"] == "tls"][0]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # like liblinphone 5.1
    base, socks = rss_kib(pid), []
    t0 = time.monotonic()
    for i in range(n):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
        s.sendall(("OPTIONS sip:test.local SIP/2.0\r\n"
                   "Via: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK%d;rport\r\n"
                   "Max-Forwards: 70\r\nFrom: <sip:a@test.local>;tag=1\r\n"
                   "To: <sip:test.local>\r\nCall-ID: m%d\r\n"
                   "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" %
                   (i, i)).encode())
        s.recv(2000)
        socks.append(s)
    dt = time.monotonic() - t0
    time.sleep(1)
    after = rss_kib(pid)
    print("connections %d, %.0f handshakes+OPTIONS/s (one client), RSS "
          "%d -> %d KiB, %.1f KiB per connection" %
          (n, n / dt, base, after, (after - base) / n))


if __name__ == "__main__":
    main()
