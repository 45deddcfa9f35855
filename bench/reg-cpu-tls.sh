#!/bin/sh
# reg-cpu-tls.sh BUILD PORT [SECONDS]: the daemon's CPU µs per
# registration over TLS, counted (utime + stime from /proc/PID/stat over
# the run / registrations), not timed: one worker, MD5, tls-bench.sh's
# pushpbx options, bench/tls_driver -m reg with 50 connections for
# SECONDS (default 8) at the highest rate it gets. One registration =
# REGISTER, 401, REGISTER, 200. The CPU includes the 50 handshakes.
# A second line gives the driver's own CPU µs per registration (its
# processes' utime + stime, set-up included, from the shell's `times`), to
# compare drivers: DRV=path runs another tls_driver binary.
#   cmake --build build --target pushpbx tls_driver
#   bench/reg-cpu-tls.sh build 41300
set -eu
BUILD=$1 PORT=$2 SECS=${3:-8}
DRV=${DRV:-$BUILD/bench/tls_driver}
KAM=${KAM_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench/kamailio}
T=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; rm -rf "$T"' EXIT INT TERM
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
cat >"$T/pbx.conf" <<CONF
[sip]
listen = tls:127.0.0.1:$PORT
domain = 127.0.0.1
workers = 1
max_connections = 20000
tcp_max_per_source = 0
tcp_idle_timeout_s = 3600
[log]
level = warn
[admin]
enabled = no
[registrar]
digest_algorithms = md5
max_contacts = 64
auth_fail_threshold = 0
[store]
path = $T/bench.db
[tls]
cert_file = $T/cert.pem
key_file = $T/key.pem
CONF
tail -n +2 "$KAM/users.csv" | while IFS=';' read -r u p; do
    printf '[extension.%s]\npassword = %s\n' "$u" "$p"
done >>"$T/pbx.conf"
"$BUILD/src/app/pushpbx" --config "$T/pbx.conf" --ready-file "$T/ready" \
    >/dev/null 2>"$T/pbx.log" &
PID=$!
i=0
while [ ! -s "$T/ready" ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "pushpbx did not start" >&2; exit 1; }
    sleep 0.1
done
c0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
times >"$T/times0"
line=$("$DRV" -m reg -t "127.0.0.1:$PORT" -u 1000 -n 1000 \
    -w pw -c 50 -d "$SECS" 2>"$T/driver.log" | grep '^RESULT')
times >"$T/times1"
c1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
rate=$(echo "$line" | grep -o '[0-9]* registrations/s' | grep -o '^[0-9]*')
echo "$line"
awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v r="$rate" -v s="$SECS" \
    'BEGIN { printf "tls cpu_us/reg=%.1f (%d registrations)\n", c * 1e6 / hz / (r * s), r * s }'
# `times`: line 2 is the children's user and system time, as 0m1.230000s
awk -v r="$rate" -v s="$SECS" 'FNR == 2 {
        for (i = 1; i <= 2; i++) { split($i, a, "m"); t[i] += (FILENAME ~ /times1$/ ? 1 : -1) * (a[1] * 60 + a[2]) }
    } END { n = r * s; printf "driver cpu_us/reg=%.1f (user %.1f, system %.1f)\n", (t[1] + t[2]) * 1e6 / n, t[1] * 1e6 / n, t[2] * 1e6 / n }' \
    "$T/times0" "$T/times1"
