#!/bin/sh
# media-bench: complete calls (INVITE with SDP and 407 digest auth, 180, 200
# with SDP, ACK, BYE) with media relay through one rtpengine, pushpbx
# ([media] relay = off and = always) against Kamailio 5.6 with its rtpengine
# module (bench/kamailio-media/kamailio.cfg: rtpengine_offer/answer/delete)
# and the same rtpengine, measured by the same driver in the same run
# (method and set-up: bench/lib.sh). Each relayed call costs an offer, an
# answer and a delete on the ng socket; SIPp sends no RTP (signalling and ng
# round trips only).
#
# Two phases, both in bench/results/media-fixed-<stamp>/ and media-<stamp>/:
#   1. set-up time at a fixed rate (MEDIA_FIXED_RATE, default 200 calls/s,
#      one step): SIPp's p50/p99 of the INVITE's response time (4 ms ticks)
#      for each server, and pushpbx's own exact figure of what relay added
#      (GET /api/media/latency: per relayed call, the time the INVITE
#      waited for rtpengine's offer answer plus the time the 200 waited for
#      the answer's answer, microseconds);
#   2. the highest passing call rate of each: run-load.sh's step search,
#      doubling from 500/s, then bisecting after the first failure until
#      the best pass and the lowest fail are within BISECT_PCT (10 %) of
#      each other, at most MAX_STEPS (9) steps, a 35 s cool-down after a
#      failed step. Each step also prints the datagrams dropped at
#      rtpengine's ng socket and at the server's ng client sockets ("ng
#      drops R/C"), and for pushpbx relay-on the in-daemon set-up time.
# rtpengine is started afresh before each phase (no call left over).
# The last lines are one summary of both phases (also in summary.txt of
# the second phase's folder).
#
#   bench/media-bench.sh [BUILD_DIR]       (default: build, from `make build`)
#
# rtpengine: Debian's rtpengine-daemon in userspace (--table=-1), ng on
# 127.0.0.1:$RTPE_NG_PORT (default 22290), RTP ports $RTPE_PORT_MIN-
# $RTPE_PORT_MAX (default 10000-29999: 4 ports a call, 5000 calls at once;
# with 10000-19999 rtpengine ran out of ports at 2000 calls/s once calls
# piled up, and each refused offer scans the whole range), --config-file=
# none, stopped by its PID at the end; its log is kept with each phase's
# results ("Ran out of ports" is counted in the summary).
#
# MEDIA_VARIANTS replaces the pushpbx runs, e.g. an A/B of the ng window:
#   MEDIA_VARIANTS='relay-on:relay=always relay-on-w0:relay=always\nwindow=0'
# (name:[media] lines, \n between lines, no spaces; the summary reads
# relay-off and relay-on).
# pushpbx's admin API listens on 127.0.0.1:$MB_ADMIN_PORT (default: a free
# port) for the in-daemon figures.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RTPE_NG_PORT=${RTPE_NG_PORT:-22290}
export RTPE_NG="udp:127.0.0.1:$RTPE_NG_PORT"
export KAM_DIR="$HERE/kamailio-media"
export SCENARIO=call UNIT=calls/s
export PBX_VARIANT_SECTION=media
export PBX_VARIANTS="${MEDIA_VARIANTS:-relay-off:relay=off relay-on:relay=always}"
: "${RTPE_PORT_MIN:=10000}" "${RTPE_PORT_MAX:=29999}"
: "${STEP_SECS:=5}" "${MAX_STEPS:=9}" "${BISECT_PCT:=10}"
export STEP_SECS MAX_STEPS BISECT_PCT
export NG_PORT="$RTPE_NG_PORT"

RTPE=$(command -v rtpengine || echo /usr/bin/rtpengine)
[ -x "$RTPE" ] || { echo "media-bench: rtpengine missing (scripts/install-deps)" >&2; exit 1; }
WORK=$(mktemp -d)
RPID=
cleanup() {
    stop_rtpengine
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# pushpbx's admin API, for the hook after each step
MB_ADMIN_PORT=${MB_ADMIN_PORT:-$(python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')}
MB_ADMIN_TOKEN=media-bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
MB_STATE="$WORK/latency-state.json"
export MB_ADMIN_PORT MB_ADMIN_TOKEN MB_STATE
export PBX_ARGS="--set admin.enabled=yes --set admin.listen=127.0.0.1:$MB_ADMIN_PORT --set admin.token=$MB_ADMIN_TOKEN --set admin.token_file=$WORK/admin.token"
export STEP_HOOK="python3 $KAM_DIR/media-lat-hook.py"

PING='
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
s.sendto(b"mb1 d7:command4:pinge", ("127.0.0.1", int(sys.argv[1])))
try:
    sys.exit(0 if s.recv(100) == b"mb1 d6:result4:ponge" else 1)
except socket.timeout:
    sys.exit(1)
'
start_rtpengine() { # a fresh rtpengine (no calls left from a phase before)
    stop_rtpengine
    "$RTPE" --config-file=none --table=-1 --interface=127.0.0.1 \
        --listen-ng="127.0.0.1:$RTPE_NG_PORT" --port-min="$RTPE_PORT_MIN" --port-max="$RTPE_PORT_MAX" \
        --foreground --log-stderr --log-level=4 --delete-delay=0 \
        >"$WORK/rtpengine.log" 2>&1 &
    RPID=$!
    i=0
    until python3 -c "$PING" "$RTPE_NG_PORT"; do
        i=$((i + 1))
        [ $i -gt 50 ] && { cat "$WORK/rtpengine.log"; echo "media-bench: rtpengine did not start" >&2; exit 1; }
        kill -0 "$RPID" 2>/dev/null || { cat "$WORK/rtpengine.log"; exit 1; }
    done
}
stop_rtpengine() {
    if [ -n "$RPID" ]; then kill -TERM "$RPID" 2>/dev/null && wait "$RPID" || true; fi
    RPID=
}
# keep rtpengine's log of a phase with its results (errors such as running
# out of ports show there)
keep_rtpengine_log() {
    [ -n "$1" ] && cp "$WORK/rtpengine.log" "$1/rtpengine.log" 2>/dev/null || true
}
newest() { ls -dt "$ROOT/bench/results/$1"-2* 2>/dev/null | head -1; }
printf '[media]\nrtpengine = %s\ntimeout_ms = 500\nretries = 1\n' "$RTPE_NG" \
    >"$WORK/media.conf"
export PBX_CONF_EXTRA="$WORK/media.conf"
echo "rtpengine $("$RTPE" --version 2>&1 | head -1) ng $RTPE_NG"

# Each phase runs in a subshell: bench_compare sets its own EXIT trap.
start_rtpengine
(
    BENCH=media-fixed
    CALL_START_RATE=${MEDIA_FIXED_RATE:-200} MAX_STEPS=1
    export CALL_START_RATE MAX_STEPS
    . "$HERE/lib.sh"
    bench_compare "$@"
)
FIX=$(newest media-fixed)
keep_rtpengine_log "$FIX"
start_rtpengine
rm -f "$MB_STATE"
(
    BENCH=media
    . "$HERE/lib.sh"
    bench_compare "$@"
)
LIM=$(newest media)
keep_rtpengine_log "$LIM"

# ---- one summary of both phases ----
col() { # col STEPS_CSV FIELD: FIELD of the first step
    awk -F';' -v f="$2" 'NR == 2 { print $f }' "$1" 2>/dev/null
}
ms() { # SIPp's ms, "0.00" = under one 4 ms tick
    case "$1" in "") echo "?" ;; 0|0.00) echo "<4" ;; *) echo "${1%.00}" ;; esac
}
limit() { # limit RESULT_TXT: "best (fails lowest)" from run-load.sh's RESULT
    b=$(grep -o 'RESULT call: highest passing rate [0-9]*' "$1" 2>/dev/null | grep -o '[0-9]*$' || true)
    f=$(grep -o 'lowest failing rate [0-9]*' "$1" 2>/dev/null | grep -o '[0-9]*$' || true)
    echo "${b:-0} ${f:-0}"
}
{
    echo ""
    echo "== media-bench summary $(date -u +%Y-%m-%dT%H:%M:%SZ) ($(nproc) CPUs; results $FIX, $LIM) =="
    rate=${MEDIA_FIXED_RATE:-200}
    printf 'set-up at %s calls/s, SIPp INVITE response time p50/p99 (ms, 4 ms ticks):' "$rate"
    for s in relay-off relay-on kamailio; do
        printf ' %s %s/%s' "$s" "$(ms "$(col "$FIX/$s/steps.csv" 12)")" "$(ms "$(col "$FIX/$s/steps.csv" 14)")"
    done
    echo ""
    lat=$(cat "$FIX"/relay-on/call/step1-*/media-latency.txt 2>/dev/null || true)
    echo "time relay adds to set-up at $rate calls/s (pushpbx, in-daemon): ${lat:-not measured (see $FIX/relay-on.txt)}"
    set -- $(limit "$LIM/relay-off.txt"); off=$1 offf=$2
    set -- $(limit "$LIM/relay-on.txt"); on=$1 onf=$2
    set -- $(limit "$LIM/kamailio.txt"); kam=$1 kamf=$2
    echo "highest passing calls/s (lowest failing): relay-off $off ($offf), relay-on $on ($onf), kamailio+rtpengine $kam ($kamf)"
    for s in relay-on kamailio; do
        # datagrams the kernel dropped at rtpengine's ng socket / the
        # server's ng client sockets, summed over the steps
        grep -o 'ng drops [0-9]*/[0-9]*' "$LIM/$s.txt" 2>/dev/null |
            awk -v s="$s" '{ split($3, d, "/"); r += d[1]; c += d[2]; n++ }
                END { if (n) printf "ng drops over %d steps, %s: %d at rtpengine, %d at the proxy\n", n, s, r, c }'
    done
    oop() { n=$(grep -c 'Ran out of ports' "$1/rtpengine.log" 2>/dev/null || true); echo "${n:-0}"; }
    echo "rtpengine 'Ran out of ports' answers: $(oop "$FIX") (fixed rate), $(oop "$LIM") (search)"
    awk -v on="$on" -v onf="$onf" -v k="$kam" -v kf="$kamf" 'BEGIN {
        if (k <= 0) { print "ratio relay-on / kamailio: n/a (no Kamailio pass)"; exit }
        printf "ratio relay-on / kamailio: %.2f (goal >= 1.5)", on / k
        # the true limits lie in [best pass, lowest fail): the ratio between
        if (onf > 0 && kf > 0) printf "; with the step brackets between %.2f and %.2f", on / kf, onf / k
        printf "\n" }'
} | tee -a "$LIM/summary.txt"
