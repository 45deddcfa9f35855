#!/usr/bin/env python3
"""media-bench's step hook (run-load.sh STEP_HOOK): after each load step,
read pushpbx's in-daemon figure of the time media relay added to call
set-up (GET /api/media/latency, docs/media.md "Set-up time") and print it.

    media-lat-hook.py SCENARIO INDEX RATE STEP_DIR

Environment: MB_ADMIN_PORT, MB_ADMIN_TOKEN (the daemon's admin API),
MB_STATE (a file kept between steps: the counts before this step, and
whose: STEP_SERVER_PIDS, set by run-load.sh).
Nothing is printed when no pushpbx admin answers (the Kamailio run) or no
call was relayed (relay = off). Writes STEP_DIR/media-latency.json (the
whole answer) and STEP_DIR/media-latency.txt (one line, for the summary).

Per step: the mean over this step's relayed calls (exact: count and sum
since start, minus the step before), and the exact p50/p99 over the kept
samples (the last 8192 of each interval) when they are all from this step
(a fresh daemon's first step, e.g. media-bench's fixed rate); otherwise
p50/p99 from this step's histogram buckets (upper bounds).
"""
import json
import os
import sys
import urllib.request


def get(port, token):
    req = urllib.request.Request(
        "http://127.0.0.1:%s/api/media/latency" % port,
        headers={"authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return json.loads(r.read())
    except OSError:
        return None


def bucket_pct(now, before, q):
    """Upper bound (us) of the bucket holding the q-quantile of the
    samples added between before and now (cumulative le counts)."""
    les = sorted(now["buckets_le"], key=float)
    n = now["count"] - (before["count"] if before else 0)
    if n <= 0:
        return None
    want = q * n
    for le in les:
        got = now["buckets_le"][le] - (before["buckets_le"][le]
                                       if before else 0)
        if got >= want:
            return int(round(float(le) * 1e6))
    return None  # above the last bucket (> 1 s)


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: media-lat-hook.py SCENARIO INDEX RATE STEP_DIR")
    _, scen, idx, rate, d = sys.argv
    port = os.environ.get("MB_ADMIN_PORT")
    token = os.environ.get("MB_ADMIN_TOKEN", "")
    state = os.environ.get("MB_STATE")
    if scen != "call" or not port:
        return
    lat = get(port, token)
    if not lat or not lat.get("available"):
        return
    before = None
    pids = os.environ.get("STEP_SERVER_PIDS", "").strip()
    if state and os.path.exists(state):
        with open(state) as f:
            before = json.load(f)
        # another daemon (the next variant): its counts started at 0
        if before.get("pids") != pids:
            before = None
    if state:
        with open(state, "w") as f:
            json.dump(dict(lat, pids=pids), f)
    with open(os.path.join(d, "media-latency.json"), "w") as f:
        json.dump(lat, f, indent=1)
    c = lat["call"]
    n = c["count"] - (before["call"]["count"] if before else 0)
    if n <= 0:
        print("in-daemon: no relayed call in this step")
        return
    mean = (c["sum_s"] - (before["call"]["sum_s"] if before else 0)) / n
    parts = []
    if c["samples"] == n:  # every kept sample is from this step
        how = "exact"
        for k in ("call", "offer", "answer"):
            s = lat[k]
            parts.append("%s p50 %d p99 %d" % (k, s["p50_us"], s["p99_us"]))
    else:
        how = "bucket bounds"
        for k in ("call", "offer", "answer"):
            b = before[k] if before else None
            p50, p99 = bucket_pct(lat[k], b, 0.5), bucket_pct(lat[k], b, 0.99)
            parts.append("%s p50 <=%s p99 <=%s" % (
                k, p50 if p50 is not None else ">1s",
                p99 if p99 is not None else ">1s"))
    line = ("in-daemon set-up time added by relay, %d relayed calls: mean "
            "%.0f us; %s (us, %s)" % (n, mean * 1e6, ", ".join(parts), how))
    print(line)
    with open(os.path.join(d, "media-latency.txt"), "w") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
