#!/bin/sh
# run-smoke.sh BINARY SEED_DIR WORK_DIR SECONDS [-dict=FILE]
# Runs one libFuzzer target for SECONDS on a copy of its seed corpus.
# Fails (non-zero) on any crash, leak, or sanitizer report.
set -eu
bin=$1; seed=$2; work=$3; secs=$4; shift 4
mkdir -p "$work"
[ -d "$seed" ] && cp -r "$seed"/. "$work"/ 2>/dev/null || true
exec "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/" "$@" "$work"
