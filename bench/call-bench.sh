#!/bin/sh
# call-bench: complete calls (INVITE with 407 digest auth, 180, 200, ACK,
# BYE) through SIPp, pushpbx and Kamailio measured by the same driver in the
# same run (method and set-up: bench/lib.sh). Results:
# bench/results/call-<stamp>/.
#
#   bench/call-bench.sh [BUILD_DIR]         (default: build, from `make build`)
set -eu
BENCH=call SCENARIO=call UNIT=calls/s
. "$(dirname "$0")/lib.sh"
bench_compare "$@"
