#!/bin/sh
# call-bench: complete calls (INVITE with 407 digest auth, 180, 200, ACK,
# BYE) through SIPp, pushpbx and Kamailio measured by the same driver in the
# same run (method and set-up: bench/lib.sh). Results:
# bench/results/call-<stamp>/.
#
#   bench/call-bench.sh [BUILD_DIR]         (default: build, from `make build`)
set -eu
# Before/after of UDP spreading in the same run ([sip] udp_spread; SIPp
# sends everything from one port, so "off" is one worker's worth).
: "${PBX_VARIANTS:=spread-off:udp_spread=no spread-on:udp_spread=yes}"
BENCH=call SCENARIO=call UNIT=calls/s
. "$(dirname "$0")/lib.sh"
bench_compare "$@"
