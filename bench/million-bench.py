#!/usr/bin/env python3
"""million-bench: a million phones (issue [perf] item 2).

For each SIZE in --sizes (default 1000 and 1000000) it writes a SQLite
database straight away (no REGISTERs: extensions 1000000.., password
pw<ext>, realm bench.local; one unexpired APNs push binding per extension
and its push device, the rows the daemon itself writes), starts pushpbx on
it (with pushsim so that [apns] is configured; admin on), and measures:

  restart   spawn -> the --ready-file written (every extension, binding and
            push device restored, listeners open), seconds
  rss       VmRSS of the daemon once ready; per extension+binding+device =
            (RSS at SIZE - RSS at the smallest size) / (SIZE - smallest)
  reg/s     bench/reg_load (C, UDP, closed loop, 64 in flight): the first
            1000 extensions refresh their push binding (401 + 200) for
            --reg-secs; the same users and driver at every size
  api       GET /api/registrations latency: first page, a page in the
            middle (after=<ext>), the last page, and the unpaginated
            request when --full (at 1M the code before pagination never
            answered: bounded by --api-timeout)

    bench/million-bench.py [--build build-rel] [--sizes 1000,1000000]
        [--reg-secs 10] [--rounds 1] [--full] [--api-timeout 20]
        [--restart-only] [--log-level info] [--wrap 'perf record -g --']

--restart-only skips the REGISTERs and admin requests; --wrap starts the
daemon under a profiler (restart and CPU times then include the
profiler's cost: for where the time goes, not for the figures).

Databases are cached in --cache (default /tmp/pushpbx-million) and copied
for each start. Loopback only; every process started here is stopped by
its PID.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

TEAM, BUNDLE = "DEMOTEAM01", "com.example.pushpbx"
VOIP = TEAM + "." + BUNDLE + ".voip"
DOMAIN = "bench.local"
FIRST = 1000000


SCHEMA = """
CREATE TABLE extensions(number TEXT PRIMARY KEY, display TEXT NOT NULL,
 realm TEXT NOT NULL, ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL,
 enabled INTEGER NOT NULL, max_push_devices INTEGER NOT NULL,
 source TEXT NOT NULL DEFAULT 'api');
CREATE TABLE bindings(ext TEXT NOT NULL, bkey TEXT NOT NULL, uri TEXT NOT NULL,
 params TEXT NOT NULL, instance TEXT NOT NULL, reg_id INTEGER NOT NULL,
 call_id TEXT NOT NULL, cseq INTEGER NOT NULL, expires_at INTEGER NOT NULL,
 updated_at INTEGER NOT NULL, path TEXT NOT NULL, source TEXT NOT NULL,
 transport INTEGER NOT NULL, flow_id INTEGER NOT NULL,
 user_agent TEXT NOT NULL, PRIMARY KEY(ext, bkey));
CREATE TABLE push_devices(provider TEXT NOT NULL, prid TEXT NOT NULL,
 ext TEXT NOT NULL, param TEXT NOT NULL, instance TEXT NOT NULL,
 created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL,
 PRIMARY KEY(provider, prid));
CREATE INDEX push_devices_ext ON push_devices(ext);
"""


M64 = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9e3779b97f4a7c15) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def token(u):  # reg_load.c bench_token: random-looking, as APNs tokens
    return "".join("%016x" % splitmix64(u * 4 + k) for k in range(4))


def instance(u):  # reg_load.c bench_instance
    return "urn:uuid:00000000-0000-4000-8000-%012u" % u


def gen_db(path, n):
    if os.path.exists(path):
        return
    t0 = time.time()
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    db = sqlite3.connect(tmp)
    db.executescript(SCHEMA)
    now = int(time.time())
    # Expiry far enough ahead that the cached database stays valid for a
    # day of runs (the daemon drops expired bindings at load).
    exp = now + 86400 * 2

    def exts():
        for i in range(n):
            u = FIRST + i
            e, pw = str(u), "pw%d" % u
            a = "%s:%s:%s" % (e, DOMAIN, pw)
            yield (e, "Phone %d" % u, DOMAIN,
                   hashlib.md5(a.encode()).hexdigest(),
                   hashlib.sha256(a.encode()).hexdigest(), 1, 1, "api")

    def binds():
        for i in range(n):
            u = FIRST + i
            inst = instance(u)
            port = 10000 + i % 50000
            ip = "10.%d.%d.%d" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)
            uri = ("sip:%d@%s:%d;pn-provider=apns;pn-prid=%s;pn-param=%s"
                   % (u, ip, port, token(u), VOIP))
            yield (str(u), inst + "#0", uri,
                   ';+sip.instance="<%s>"' % inst, inst, 0,
                   "rl-%d@bench" % u, 1, exp, now, "",
                   "%s:%d" % (ip, port), 0, 0,
                   "LinphoneiOS/5.2.0 (iPhone) LinphoneSDK/5.2.0")

    def devs():
        for i in range(n):
            u = FIRST + i
            yield ("apns", token(u), str(u), VOIP, instance(u), now, now)

    db.executemany("INSERT INTO extensions VALUES(?,?,?,?,?,?,?,?)", exts())
    db.executemany("INSERT INTO bindings VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
                   "?)", binds())
    db.executemany("INSERT INTO push_devices VALUES(?,?,?,?,?,?,?)", devs())
    db.commit()
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    os.rename(tmp, path)
    print("generated %s (%d extensions) in %.1f s" % (path, n,
                                                       time.time() - t0))


def wait_file(path, proc, what, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return json.load(open(path))
        if proc.poll() is not None:
            sys.exit("million-bench: %s exited early (%s)" % (what, os.path.dirname(path)))
        time.sleep(0.005)
    sys.exit("million-bench: %s did not start in %d s" % (what, timeout))


def stop(proc, timeout=20):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_s(pid):
    """user + system CPU seconds of pid so far (the machine may be shared:
    the restart's CPU time does not depend on other processes' load)."""
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def get(port, path, timeout):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 headers={"Authorization": "Bearer benchtoken-0123456789"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        body, code = e.read(), e.code
    except Exception:  # timeout
        return None, None, None
    return (time.perf_counter() - t0) * 1000.0, code, body


def run_size(a, n, tmp, sim_port):
    src = os.path.join(a.cache, "million-v2-%d.db" % n)
    gen_db(src, n)
    run = tempfile.mkdtemp(prefix="run-", dir=tmp)
    shutil.copy(src, run + "/bench.db")
    conf = ("[sip]\nlisten = udp:127.0.0.1:0\ndomain = %s\nworkers = %d\n"
            "[log]\nlevel = %s\n[registrar]\ndigest_algorithms = md5\n"
            "[store]\npath = %s/bench.db\n[admin]\nenabled = yes\n"
            "listen = 127.0.0.1:0\ntoken = benchtoken-0123456789\nprov_db = \n"
            "[apns]\nenabled = yes\nbase_url = https://127.0.0.1:%d\n"
            "key_file = %s/apns.p8\nkey_id = DEMOKEY001\nteam_id = %s\n"
            "topic = %s\nca_file = %s/sim-cert.pem\n[fcm]\nenabled = no\n"
            % (DOMAIN, a.workers, a.log_level, run, sim_port, tmp, TEAM,
               BUNDLE, tmp))
    open(run + "/pushpbx.conf", "w").write(conf)
    res = {"size": n}
    pbx = pid = None
    try:
        subprocess.run(["sync"])
        t0 = time.perf_counter()
        pbx = subprocess.Popen(
            a.wrap.split() + [a.pbx, "--config", run + "/pushpbx.conf",
                              "--ready-file", run + "/ready"],
            cwd=run, stdout=subprocess.DEVNULL,
            stderr=open(run + "/pushpbx.log", "wb"))
        ready = wait_file(run + "/ready", pbx, "pushpbx", 300)
        res["restart_s"] = time.perf_counter() - t0
        pid = ready["pid"]  # the daemon's, also under --wrap
        res["restart_cpu_s"] = cpu_s(pid)
        res["rss_kib"] = rss_kib(pid)
        if a.restart_only:
            res.update(reg_line="", reg_per_s=0.0, rss_after_kib=0)
            return res
        sip = [l["port"] for l in ready["listen"] if l["transport"] == "udp"][0]
        admin = ready.get("admin_port")
        # REGISTER/s: the first 1000 extensions.
        users = min(1000, n)
        cpu0 = cpu_s(pid)
        out = subprocess.run(
            [a.driver, "-t", "127.0.0.1:%d" % sip, "-u", str(FIRST), "-n",
             str(users), "-c", "64", "-d", str(a.reg_secs), "-w", "2", "-s",
             "4", "-D", DOMAIN], capture_output=True, text=True,
            timeout=a.reg_secs + 30)
        res["reg_line"] = out.stdout.strip()
        try:
            res["reg_per_s"] = float(out.stdout.split()[1])
        except (IndexError, ValueError):
            res["reg_per_s"] = 0.0
        res["rss_after_kib"] = rss_kib(pid)
        # The daemon's CPU per registration (401 + 200; warm-up included):
        # steadier than the rate on a shared machine.
        try:
            ok = int(out.stdout.split("ok")[1].split()[0])
        except (IndexError, ValueError):
            ok = 0
        res["reg_cpu_us"] = ((cpu_s(pid) - cpu0) * 1e6 / ok) if ok else 0.0
        # Admin latency: best of 3 for each page.
        mid = str(FIRST + n // 2)
        last = str(FIRST + max(0, n - 100))
        pages = [("first", "/api/registrations?limit=100"),
                 ("middle", "/api/registrations?limit=100&after=" + mid),
                 ("last", "/api/registrations?limit=100&after=" + last)]
        if a.full:
            pages.append(("full", "/api/registrations"))
        for name, path in pages:
            best, code, size = None, None, 0
            for _ in range(1 if name == "full" else 3):
                ms, code, body = get(admin, path, a.api_timeout)
                if ms is None:
                    best = None
                    break
                size = len(body)
                best = ms if best is None else min(best, ms)
            res["api_" + name] = (best, code, size)
    finally:
        if pbx and a.wrap and pid and pbx.poll() is None:
            try:  # the daemon itself: the wrapper then writes its output
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        stop(pbx, timeout=120 if a.wrap else 20)
        log = open(run + "/pushpbx.log").read() if pbx else ""
        res["restored"] = [l for l in log.splitlines()
                           if "restored" in l or "push devices" in l][:3]
        if not a.keep:
            shutil.rmtree(run, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--build", default=os.path.join(root, "build-rel"))
    ap.add_argument("--sizes", default="1000,1000000")
    ap.add_argument("--reg-secs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--api-timeout", type=float, default=20.0)
    ap.add_argument("--cache", default="/tmp/pushpbx-million")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--restart-only", action="store_true",
                    help="measure the restart and RSS only (no REGISTERs, "
                    "no admin requests)")
    ap.add_argument("--wrap", default="",
                    help="command line to start the daemon under, e.g. "
                    "'perf record -g -o /tmp/p.data --' or 'strace -f -c "
                    "-o /tmp/s.txt'")
    ap.add_argument("--log-level", default="notice",
                    help="the daemon's [log] level (info shows the restore's "
                    "own timings)")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    a.pbx = os.path.join(a.build, "src", "app", "pushpbx")
    a.driver = os.path.join(a.build, "bench", "reg_load")
    sim_bin = os.path.join(a.build, "src", "pushsim", "pushsim")
    os.makedirs(a.cache, exist_ok=True)
    sizes = [int(s) for s in a.sizes.split(",")]
    tmp = tempfile.mkdtemp(prefix="million-bench-")
    sim = None
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
        sr = wait_file(tmp + "/sim.ready", sim, "pushsim", 15)
        print("million-bench: build=%s workers=%d sizes=%s load=%.2f" %
              (a.build, a.workers, sizes, os.getloadavg()[0]))
        results = {}
        for rnd in range(a.rounds):
            for n in sizes:
                r = run_size(a, n, tmp, sr["https_port"])
                results.setdefault(n, []).append(r)
                print("size %d round %d: restart %.2f s (CPU %.2f s), RSS "
                      "%.1f MiB (after REGISTERs %.1f MiB), %s, daemon CPU "
                      "%.0f us a registration" %
                      (n, rnd + 1, r["restart_s"], r["restart_cpu_s"],
                       r["rss_kib"] / 1024.0,
                       r["rss_after_kib"] / 1024.0, r["reg_line"],
                       r.get("reg_cpu_us", 0.0)))
                for k in ("first", "middle", "last", "full"):
                    v = r.get("api_" + k)
                    if v:
                        print("  GET /api/registrations %-6s %s" %
                              (k, "no answer in %g s" % a.api_timeout
                               if v[0] is None else
                               "%.1f ms (HTTP %s, %d bytes)" % v))
                for l in r["restored"]:
                    print("  log: " + l.strip())
        small = min(sizes)
        base = sorted(x["rss_kib"] for x in results[small])
        base = base[len(base) // 2]
        for n in sizes:
            rs = results[n]
            rss = sorted(x["rss_kib"] for x in rs)[len(rs) // 2]
            reg = sorted(x["reg_per_s"] for x in rs)[len(rs) // 2]
            rst = sorted(x["restart_s"] for x in rs)[len(rs) // 2]
            cpu = sorted(x["restart_cpu_s"] for x in rs)[len(rs) // 2]
            per = ((rss - base) * 1024.0 / (n - small)) if n > small else 0
            print("SUMMARY size %d: restart %.2f s (CPU %.2f s), RSS %.1f "
                  "MiB, per ext+binding+device %.0f B, REGISTER/s %.0f "
                  "(median of %d)" % (n, rst, cpu, rss / 1024.0, per, reg,
                                      len(rs)))
    finally:
        stop(sim)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
