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
# Two phases, both in bench/results/media-<stamp>/ and media-fixed-<stamp>/:
#   1. set-up time at a fixed rate (MEDIA_FIXED_RATE, default 200 calls/s,
#      one step): p50/p99 of the INVITE's response time with relay off and
#      on, so the difference is what the relay adds;
#   2. the highest passing call rate of each (run-load.sh's step search).
#
#   bench/media-bench.sh [BUILD_DIR]       (default: build, from `make build`)
#
# rtpengine: Debian's rtpengine-daemon in userspace (--table=-1), ng on
# 127.0.0.1:$RTPE_NG_PORT (default 22290), RTP ports 10000-19999 (2500
# calls at once), --config-file=none, stopped by its PID at the end.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
RTPE_NG_PORT=${RTPE_NG_PORT:-22290}
export RTPE_NG="udp:127.0.0.1:$RTPE_NG_PORT"
export KAM_DIR="$HERE/kamailio-media"
export SCENARIO=call UNIT=calls/s
export PBX_VARIANT_SECTION=media
export PBX_VARIANTS="relay-off:relay=off relay-on:relay=always"
: "${STEP_SECS:=5}" "${MAX_STEPS:=5}"
export STEP_SECS MAX_STEPS

RTPE=$(command -v rtpengine || echo /usr/bin/rtpengine)
[ -x "$RTPE" ] || { echo "media-bench: rtpengine missing (scripts/install-deps)" >&2; exit 1; }
WORK=$(mktemp -d)
RPID=
cleanup() {
    stop_rtpengine
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

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
        --listen-ng="127.0.0.1:$RTPE_NG_PORT" --port-min=10000 --port-max=19999 \
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
start_rtpengine
(
    BENCH=media
    . "$HERE/lib.sh"
    bench_compare "$@"
)
