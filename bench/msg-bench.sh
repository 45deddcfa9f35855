#!/bin/sh
# msg-bench: MESSAGE -> push under load ([messages], docs/messages.md).
# pushpbx + pushsim (APNs emulator) on 127.0.0.1, N apps in background
# (push devices, no binding); one sender sends MESSAGEs at RATE/s for
# DURATION s, round-robin (MESSAGE, 407, MESSAGE with credentials, 202
# once stored); every MESSAGE is stored and its app pushed
# (bench/msg_driver.py). Prints MESSAGE sent -> push received by pushsim
# (pushsim's wall clock, 1 ms resolution) and MESSAGE sent -> 202,
# p50/p99/max. Goal ([messages] issue): report the p99 at 100 messages/s.
#
#   bench/msg-bench.sh [BUILD_DIR]     (default: build-rel, a Release
#                                       build: cmake -S . -B build-rel
#                                       -DCMAKE_BUILD_TYPE=Release)
#   env: DEVICES=50 RATE=100 DURATION=30 WORKERS=2 POLL_MS=2
#
# Bounded: the driver stops DURATION + 10 s after the load starts (plus
# device setup, at most 60 s); every process started here is stopped by
# its PID. Results: bench/results/msg-<stamp>/ (summary.txt, result.json,
# logs). The set-up (pushsim, pushpbx, the background apps' extensions)
# is wake-bench.sh's; only the driver differs.
set -eu
BENCH_NAME=msg-bench DRIVER=msg_driver.py
METRICS_RE='^pushpbx_(messages|wake_push)'
DEVICES=${DEVICES:-50} POLL_MS=${POLL_MS:-2}
export BENCH_NAME DRIVER METRICS_RE DEVICES POLL_MS
exec "$(dirname "$0")/wake-bench.sh" "$@"
