#!/bin/bash
# calls-mem-bench: memory per ringing and per established call, and the
# idle CPU of their timers, at N concurrent calls (default 100,000) through
# pushpbx, driven by SIPp with long calls.
#
#   bench/calls-mem-bench.sh [BUILD_DIR] [N] [RATE]   (default build-rel 100000 1000)
#   PHASES=established bench/calls-mem-bench.sh ...    (one phase only)
#
# Two daemons, one after the other (so memory freed by one phase cannot be
# reused by the next): 2 workers, the 1000 users of
# ../shared/bench/kamailio/users.csv all registered with a Contact on the
# callee SIPp. Phase "ringing": bench/sipp/uac-ring.xml / uas-ring.xml, each
# call rings until every call is up, then is cancelled. Phase
# "established": the shared uac-call.xml / uas-call.xml, answered, held,
# then BYE. For each phase:
#   rss0      RSS (/proc/PID/status VmRSS) after the registrations
#   rss_peak  RSS once the N-th call is up (the last 32 s of calls still
#             hold their INVITE transactions: Timer L / C)
#   rss_hold  RSS 40 s later, when only what a call keeps for its whole
#             life is left
#   idle_cpu  pushpbx CPU (utime+stime from /proc/PID/stat) over 30 s of
#             that plateau, when no SIP message moves: the cost of the
#             timers of N calls
# per call = (rss - rss0) / N. Bounded: SIPp -m N, -timeout, and every
# process started here is stopped by its PID. Results: stdout and
# bench/results/calls-mem-<stamp>/.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build-rel}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
N=${2:-100000}
RATE=${3:-1000}
BIN="$BUILD/src/app/pushpbx"
KAM=${KAM_DIR:-$ROOT/../shared/bench/kamailio}
SC="$KAM/sipp"
PORT=${PBX_PORT:-5080}
UAS_PORT=${UAS_PORT:-5090}
UAC_PORT=${UAC_PORT:-5062}
REG_PORT=${REG_PORT:-5061}
OUTDIR="$ROOT/bench/results/calls-mem-$(date -u +%Y%m%d-%H%M%S)"
RAMP=$(( (N + RATE - 1) / RATE ))
WAIT_L=${WAIT_L:-40} # > Timer L (32 s): only what a call keeps is left
IDLE_S=${IDLE_S:-30} # CPU sampled over this many seconds
HOLD_S=$((RAMP + 5 + WAIT_L + IDLE_S + 15))
[ -x "$BIN" ] || { echo "$BIN missing" >&2; exit 1; }
mkdir -p "$OUTDIR"
TMP=$(mktemp -d)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
HZ=$(getconf CLK_TCK)

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
active() {
    curl -s -H "authorization: Bearer bench-token-0123456789" \
        "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk '/^pushpbx_calls_active / { print $2 }'
}

start_pbx() { # phase
    cat >"$TMP/$1.conf" <<CONF
[sip]
listen = udp:127.0.0.1:$PORT
domain = 127.0.0.1
workers = 2
[log]
level = warn
[admin]
listen = 127.0.0.1:0
token = bench-token-0123456789
[registrar]
digest_algorithms = md5
[proxy]
ring_timeout_s = $((HOLD_S + 60))
[store]
path = $TMP/$1.db
CONF
    tail -n +2 "$KAM/users.csv" | while IFS=';' read -r user pw; do
        printf '[extension.%s]\npassword = %s\n' "$user" "$pw"
    done >>"$TMP/$1.conf"
    rm -f "$TMP/ready"
    "$BIN" --config "$TMP/$1.conf" --ready-file "$TMP/ready" \
        2>"$OUTDIR/$1-pushpbx.log" &
    PBX=$!
    PIDS="$PIDS $PBX"
    for _ in $(seq 100); do [ -s "$TMP/ready" ] && break; sleep 0.1; done
    ADMIN_PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_port"])' "$TMP/ready")
    (cd "$OUTDIR" && sipp "127.0.0.1:$PORT" -sf "$SC/register.xml" \
        -inf "$SC/register-users.csv" -i 127.0.0.1 -p "$REG_PORT" \
        -key domain "127.0.0.1:$PORT" -key contact_host "127.0.0.1:$UAS_PORT" \
        -key expires 3600 -r 500 -m 1000 -timeout 60s -nostdin \
        >/dev/null 2>"$OUTDIR/$1-reg.err") || true
}

run_phase() { # phase uac.xml uas.xml
    local phase=$1 uac=$2 uas=$3 rss0 rss_peak rss_hold c0 c1 up
    start_pbx "$phase"
    rss0=$(rss_kib "$PBX")
    (cd "$OUTDIR" && exec sipp -sf "$uas" -i 127.0.0.1 -p "$UAS_PORT" \
        -m "$N" -l "$N" -timeout $((HOLD_S * 2 + RAMP + 60))s -nostdin \
        -buff_size 8388608 >/dev/null 2>"$OUTDIR/$phase-uas.err") &
    UAS=$!
    PIDS="$PIDS $UAS"
    sleep 0.5
    (cd "$OUTDIR" && exec sipp "127.0.0.1:$PORT" -sf "$uac" \
        -inf "$SC/call-users.csv" -i 127.0.0.1 -p "$UAC_PORT" \
        -key domain "127.0.0.1:$PORT" -d $((HOLD_S * 1000)) -r "$RATE" \
        -m "$N" -l "$N" -timeout $((HOLD_S * 2 + RAMP + 60))s -nostdin \
        -buff_size 8388608 -trace_stat -stf "$phase-uac.csv" -fd 5 \
        >/dev/null 2>"$OUTDIR/$phase-uac.err") &
    UAC=$!
    PIDS="$PIDS $UAC"
    sleep $((RAMP + 5))
    up=$(active)
    rss_peak=$(rss_kib "$PBX")
    sleep "$WAIT_L"
    rss_hold=$(rss_kib "$PBX")
    c0=$(cpu_ticks "$PBX")
    sleep "$IDLE_S"
    c1=$(cpu_ticks "$PBX")
    local line
    line=$(awk -v p="$phase" -v n="$N" -v up="$up" -v r0="$rss0" -v rp="$rss_peak" \
        -v rh="$rss_hold" -v c="$((c1 - c0))" -v hz="$HZ" -v is="$IDLE_S" 'BEGIN {
        printf "%s: N %d, calls_active %s, RSS %d -> %d (peak) -> %d KiB (hold); " \
               "per call %.2f KiB at peak, %.2f KiB held; idle CPU %.2f %% of one core\n",
               p, n, up, r0, rp, rh, (rp - r0) / n, (rh - r0) / n, 100 * c / hz / is }')
    echo "$line" | tee -a "$OUTDIR/summary.txt"
    wait "$UAC" || true
    wait "$UAS" || true
    kill -TERM "$PBX"
    wait "$PBX" || true
}

echo "calls-mem-bench $(date -u +%FT%TZ): N $N, $RATE calls/s, hold ${HOLD_S} s, $BIN" |
    tee "$OUTDIR/summary.txt"
# PHASES="established" runs one phase only (e.g. for an older binary).
for phase in ${PHASES:-ringing established}; do
    case $phase in
    ringing) run_phase ringing "$ROOT/bench/sipp/uac-ring.xml" \
        "$ROOT/bench/sipp/uas-ring.xml" ;;
    established) run_phase established "$SC/uac-call.xml" "$SC/uas-call.xml" ;;
    esac
done
