#!/bin/bash
# spread-bench: REGISTER load from ONE SIPp socket at fixed rates, pushpbx
# with [sip] udp_spread off and on (same binary, same run), and where the
# CPU goes: per worker thread (/proc/PID/task/*/stat, utime+stime over the
# step) besides the driver's p50/p99 and pass/fail. Optional perf profile
# of the spread-on run (PERF=1: perf record -g on the daemon for 8 s of
# the last rate; the report goes to the results folder).
#
#   bench/spread-bench.sh [BUILD_DIR] [RATE...]     (default build-rel 4000 8000)
#
# Where the time goes besides the CPU: each thread's wait for a CPU (run
# queue, /proc/PID/task/*/schedstat) and SIPp's, and the daemon's own
# latency split at its socket (logged by each worker at exit: kernel
# receive -> read, read -> answer sent; transport/tp.c "UDP answer
# latency"), so pushpbx's share of SIPp's p99 is known.
#
# SPREADS="no yes" picks the modes (default both). OTHERS_NICE=N renices
# the daemon's threads other than the workers (the store's writer, main,
# push) to N once it is ready: does the writer's batch delay the worker
# and SIPp on a machine with few CPUs?
#
# One step per rate (../shared/bench/kamailio/run-load.sh, MAX_STEPS=1,
# 10 s): same users, scenario and pass rule as register-bench.sh. Results:
# bench/results/spread-<stamp>/.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build-rel}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
shift || true
RATES=${*:-4000 8000}
BIN="$BUILD/src/app/pushpbx"
KAM=${KAM_DIR:-$ROOT/../shared/bench/kamailio}
PORT=${PBX_PORT:-5080}
OUTDIR="$ROOT/bench/results/spread-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUTDIR"
TMP=$(mktemp -d)
PBX=
cleanup() { [ -n "$PBX" ] && kill "$PBX" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM
HZ=$(getconf CLK_TCK)

# "name ticks runq_wait_ns" per thread of pid
threads() {
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "$(cat "$t/comm")-$(basename "$t")" \
            "$(awk '{ print $14 + $15 }' "$t/stat")" \
            "$(awk '{ print $2 }' "$t/schedstat")"
    done
}
# SIPp's CPU and run-queue wait over the step: sampled each 0.5 s while
# it runs (it exits before the step's numbers are read); "ticks wait_ns"
# of the first and last sample go to $1.
sipp_watch() {
    local pid= first= last=
    for _ in $(seq 200); do
        # ours: the SIPp aimed at our port (other SIPps may run)
        pid=$(for p in /proc/[0-9]*; do
            [ "$(cat "$p/comm" 2>/dev/null)" = sipp ] &&
                tr '\0' ' ' <"$p/cmdline" | grep -q " 127.0.0.1:$PORT " &&
                basename "$p"; done | head -1)
        [ -n "$pid" ] && break
        sleep 0.1
    done
    [ -n "$pid" ] || return 0
    while s=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) &&
        w=$(awk '{ print $2 }' "/proc/$pid/schedstat" 2>/dev/null); do
        [ -n "$first" ] || first="$s $w $(date +%s%N)"
        last="$s $w $(date +%s%N)"
        sleep 0.5
    done
    echo "$first $last" >"$1"
}

for spread in ${SPREADS:-no yes}; do
    for rate in $RATES; do
        {
            printf '[sip]\nlisten = udp:127.0.0.1:%s\ndomain = 127.0.0.1\n' "$PORT"
            printf 'workers = 2\nudp_spread = %s\n' "$spread"
            printf '[log]\nlevel = notice\n[admin]\nenabled = no\n'
            printf '[registrar]\ndigest_algorithms = md5\n[store]\npath = %s/db\n' "$TMP"
            tail -n +2 "$KAM/users.csv" | while IFS=';' read -r u p; do
                printf '[extension.%s]\npassword = %s\n' "$u" "$p"
            done
        } >"$TMP/conf"
        rm -f "$TMP/ready" "$TMP/db"*
        "$BIN" --config "$TMP/conf" --ready-file "$TMP/ready" 2>"$TMP/log" &
        PBX=$!
        for _ in $(seq 100); do [ -s "$TMP/ready" ] && break; sleep 0.1; done
        if [ -n "${OTHERS_NICE:-}" ]; then
            for t in /proc/"$PBX"/task/*; do
                case "$(cat "$t/comm")" in pbx-worker*) continue ;; esac
                renice -n "$OTHERS_NICE" -p "$(basename "$t")" >/dev/null
            done
        fi
        threads "$PBX" | sort >"$TMP/t0"
        prof=
        if [ "${PERF:-0}" = 1 ] && [ "$spread" = "${PERF_SPREAD:-yes}" ] &&
            [ "$rate" = "${RATES##* }" ]; then
            (sleep 2; perf record ${PERF_ARGS:--g} -o "$OUTDIR/perf-$rate.data" -p "$PBX" \
                -- sleep 8 >/dev/null 2>&1) &
            prof=$!
        fi
        rm -f "$TMP/sipp"
        sipp_watch "$TMP/sipp" &
        watch=$!
        OUT="$OUTDIR/spread-$spread-$rate" MAX_STEPS=1 REG_START_RATE=$rate \
            "$KAM/run-load.sh" --target "127.0.0.1:$PORT" --server-pid "$PBX" \
            --scenarios register >"$OUTDIR/spread-$spread-$rate.txt" 2>&1 || true
        threads "$PBX" | sort >"$TMP/t1"
        [ -n "$prof" ] && wait "$prof"
        wait "$watch" || true
        kill -TERM "$PBX"; wait "$PBX" || true; PBX=
        cat "$TMP/log" >>"$OUTDIR/pushpbx.log"
        step=$(grep -o 'step 1 .*' "$OUTDIR/spread-$spread-$rate.txt" | head -1)
        secs=$(awk -F';' 'NR == 2 { print $10 }' "$OUTDIR/spread-$spread-$rate/steps.csv" 2>/dev/null || echo 10)
        cpu=$(join "$TMP/t0" "$TMP/t1" | awk -v hz="$HZ" -v s="${secs:-10}" \
            '$4 - $2 > 0 { printf "%s %.0f%% (runq %.0f ms) ", $1, 100 * ($4 - $2) / hz / s, ($5 - $3) / 1e6 }')
        sipp=$(awk -v hz="$HZ" '{ s = ($6 - $3) / 1e9; if (s > 0)
            printf "sipp %.0f%% (runq %.0f ms over %.1f s)", 100 * ($4 - $1) / hz / s, ($5 - $2) / 1e6, s }' \
            "$TMP/sipp" 2>/dev/null)
        echo "udp_spread=$spread $step | threads: $cpu| $sipp" | tee -a "$OUTDIR/summary.txt"
        grep -o 'worker [0-9]* udp latency.*' "$TMP/log" | sed 's/^/    /' |
            tee -a "$OUTDIR/summary.txt"
    done
done
if ls "$OUTDIR"/perf-*.data >/dev/null 2>&1; then
    for f in "$OUTDIR"/perf-*.data; do
        perf report -i "$f" --no-children --sort ${PERF_SORT:-symbol} --stdio 2>/dev/null |
            grep -v '^#' | grep '%' | head -40 >"${f%.data}.txt"
    done
fi
