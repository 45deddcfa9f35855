#!/bin/sh
# wake-bench: the wake path under load. pushpbx + pushsim (APNs emulator)
# on 127.0.0.1, N sleeping phones (push devices in background), calls at
# RATE/s for DURATION s from one caller; each call's push wakes its phone,
# which registers and answers (bench/wake_driver.py plays caller and
# phones, and watches pushsim's /pushes?since=). Prints pushpbx's own time
# for the two wake-path intervals, measured inside the daemon
# (GET /api/wake/latency: exact nearest-rank p50/p99 over its samples):
#   INVITE read -> push request written to the HTTP/2 connection
#   woken phone's REGISTER read -> INVITE to it handed to the socket
# Goal ([wake] issue): p99 <= 1 ms each at 100 calls/s.
#
#   bench/wake-bench.sh [BUILD_DIR]    (default: build-rel, a Release
#                                       build: cmake -S . -B build-rel
#                                       -DCMAKE_BUILD_TYPE=Release)
#   env: DEVICES=500 RATE=100 DURATION=30 WORKERS=2 POLL_MS=5
#        FROM_WORKERS=yes|no ([push] from_workers; unset: the daemon's
#        default, and the line is left out so older builds accept the
#        configuration)
#        (the caller is extension 999999, the devices 1000...: DEVICES
#        may go well past 8,000)
#
# Bounded: the driver stops DURATION + 10 s after the calls start (plus
# device setup, at most 60 s); every process started here is stopped by
# its PID. Results: bench/results/wake-<stamp>/ (summary.txt, result.json,
# logs).
set -eu

# msg-bench.sh runs this same harness with its own driver (BENCH_NAME,
# DRIVER, METRICS_RE): one set-up of pushpbx and pushsim for both.
BENCH_NAME=${BENCH_NAME:-wake-bench}
DRIVER=${DRIVER:-wake_driver.py}
METRICS_RE=${METRICS_RE:-^pushpbx_wake_}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build-rel}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BIN="$BUILD/src/app/pushpbx"
SIM="$BUILD/src/pushsim/pushsim"
DEVICES=${DEVICES:-500}
RATE=${RATE:-100}
DURATION=${DURATION:-30}
WORKERS=${WORKERS:-2}
POLL_MS=${POLL_MS:-5}
FROM_WORKERS=${FROM_WORKERS:-}
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUTDIR="$ROOT/bench/results/${BENCH_NAME%-bench}-$STAMP"
TOKEN=wake-bench-token-0123456789abcdef

for b in "$BIN" "$SIM"; do
    [ -x "$b" ] || { echo "$BENCH_NAME: $b missing (build pushpbx and pushsim)" >&2; exit 1; }
done
if grep -q 'CMAKE_BUILD_TYPE:STRING=Release' "$BUILD/CMakeCache.txt" 2>/dev/null; then :; else
    echo "$BENCH_NAME: warning: $BUILD is not a Release build" >&2
fi
mkdir -p "$OUTDIR"
TMP=$(mktemp -d)
PBX_PID=
SIM_PID=
stop() { # stop PID by TERM, then KILL after 5 s
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null || return 0
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    stop "$PBX_PID"
    stop "$SIM_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_file() { # FILE PID WHAT
    i=0
    while [ ! -s "$1" ]; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$2" 2>/dev/null; then
            echo "$BENCH_NAME: $3 did not start" >&2
            exit 1
        fi
        sleep 0.1
    done
}
json_get() { # FILE KEY
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# --- pushsim (APNs only, demo key made here) -------------------------------
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$TMP/apns.p8" 2>/dev/null
"$SIM" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
    --cert-out "$TMP/sim-cert.pem" --ready-file "$TMP/sim.ready" \
    --apns-key "DEMOKEY001:DEMOTEAM01:$TMP/apns.p8" \
    --apns-topic com.example.pushpbx >/dev/null 2>"$OUTDIR/pushsim.log" &
SIM_PID=$!
wait_file "$TMP/sim.ready" "$SIM_PID" pushsim
SIM_HTTPS=$(json_get "$TMP/sim.ready" https_port)
SIM_CONTROL=$(json_get "$TMP/sim.ready" control_port)

# --- pushpbx ------------------------------------------------------------------
CONF="$TMP/pushpbx.conf"
cat >"$CONF" <<CONF
[sip]
listen = udp:127.0.0.1:0
domain = bench.local
workers = $WORKERS
[log]
level = warn
[registrar]
digest_algorithms = md5
[store]
path = $TMP/bench.db
[admin]
listen = 127.0.0.1:0
token = $TOKEN
token_file = $TMP/admin.token
prov_db = $TMP/prov.db
[proxy]
ring_timeout_s = 20
[apns]
enabled = yes
base_url = https://127.0.0.1:$SIM_HTTPS
key_file = $TMP/apns.p8
key_id = DEMOKEY001
team_id = DEMOTEAM01
topic = com.example.pushpbx
ca_file = $TMP/sim-cert.pem
[fcm]
enabled = no
[push]
recent = 5000
${FROM_WORKERS:+from_workers = $FROM_WORKERS}
[extension.999999]
password = pw999999
CONF
i=0
while [ $i -lt "$DEVICES" ]; do
    printf '[extension.%d]\npassword = pw%d\n' $((1000 + i)) $((1000 + i))
    i=$((i + 1))
done >>"$CONF"
"$BIN" --config "$CONF" --check-config >/dev/null
"$BIN" --config "$CONF" --ready-file "$TMP/pbx.ready" >/dev/null 2>"$OUTDIR/pushpbx.log" &
PBX_PID=$!
wait_file "$TMP/pbx.ready" "$PBX_PID" pushpbx
SIP_PORT=$(python3 -c 'import json,sys; print([l["port"] for l in json.load(open(sys.argv[1]))["listen"] if l["transport"]=="udp"][0])' "$TMP/pbx.ready")
ADMIN_PORT=$(json_get "$TMP/pbx.ready" admin_port)

{
    echo "$BENCH_NAME $STAMP: devices=$DEVICES rate=$RATE/s duration=${DURATION}s workers=$WORKERS poll=${POLL_MS}ms from_workers=${FROM_WORKERS:-default}"
    echo "build: $BUILD ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null))"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (plus working tree)"
    echo "load before: $(uptime)"
} | tee "$OUTDIR/summary.txt"

rc=0
timeout $((DURATION + 120)) python3 "$ROOT/bench/$DRIVER" \
    --sip-port "$SIP_PORT" --admin-port "$ADMIN_PORT" --admin-token "$TOKEN" \
    --pushsim-control "$SIM_CONTROL" --devices "$DEVICES" --rate "$RATE" \
    --duration "$DURATION" --poll-ms "$POLL_MS" --json "$OUTDIR/result.json" \
    --caller 999999 --caller-password pw999999 \
    >"$TMP/driver.txt" 2>&1 || rc=$?
tee -a "$OUTDIR/summary.txt" <"$TMP/driver.txt"
echo "load after: $(uptime)" | tee -a "$OUTDIR/summary.txt"
curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/metrics" \
    | grep -E "$METRICS_RE" >"$OUTDIR/metrics.txt" || true
echo "results: $OUTDIR"
exit $rc
