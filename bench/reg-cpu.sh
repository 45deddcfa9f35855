#!/bin/sh
# reg-cpu.sh BIN PROTO N RATE PORT [CALLGRIND_OUT]: the daemon's cost per
# registration under a fixed SIPp REGISTER load (register-bench.sh's
# set-up: Kamailio comparison's users.csv and sipp/register.xml, MD5, one
# worker), counted, not timed against the clock, so a loaded machine
# changes little: CPU µs per registration (utime + stime of the daemon
# over the measured run, /proc/PID/stat) and, with CALLGRIND_OUT, user
# instructions per registration (the daemon under callgrind, counters
# zeroed after a warm-up and dumped after the run; use a low RATE).
#   bench/reg-cpu.sh build/src/app/pushpbx tcp 40000 4000 41300
#   bench/reg-cpu.sh build/src/app/pushpbx tcp 2000 200 41300 /tmp/cg.out
# PROTO: udp or tcp. One registration = REGISTER, 401, REGISTER, 200.
set -eu
BIN=$1 PROTO=$2 N=$3 RATE=$4 PORT=$5 CG=${6:-}
KAM=${KAM_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench/kamailio}
T=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; rm -rf "$T"' EXIT INT TERM
cat >"$T/pbx.conf" <<CONF
[sip]
listen = $PROTO:127.0.0.1:$PORT
domain = 127.0.0.1
workers = 1
[log]
level = warn
[admin]
enabled = no
[registrar]
digest_algorithms = md5
[store]
path = $T/bench.db
CONF
tail -n +2 "$KAM/users.csv" | while IFS=';' read -r u p; do
    printf '[extension.%s]\npassword = %s\n' "$u" "$p"
done >>"$T/pbx.conf"
if [ -n "$CG" ]; then
    valgrind --tool=callgrind --callgrind-out-file="$T/cg.%p" \
        "$BIN" --config "$T/pbx.conf" --ready-file "$T/ready" >/dev/null 2>"$T/pbx.log" &
else
    "$BIN" --config "$T/pbx.conf" --ready-file "$T/ready" >/dev/null 2>"$T/pbx.log" &
fi
PID=$!
i=0
while [ ! -s "$T/ready" ]; do
    i=$((i + 1))
    [ $i -gt 600 ] && { echo "pushpbx did not start" >&2; exit 1; }
    sleep 0.1
done
tr=u1
[ "$PROTO" = tcp ] && tr=t1
load() { # load COUNT LOCAL_PORT [sipp args]
    c=$1 lp=$2
    shift 2
    (cd "$T" && sipp "127.0.0.1:$PORT" -sf "$KAM/sipp/register.xml" \
        -inf "$KAM/sipp/register-users.csv" -i 127.0.0.1 -p "$lp" -t "$tr" \
        -key domain 127.0.0.1 -key contact_host 127.0.0.1:5090 \
        -key expires 3600 -r "$RATE" -m "$c" -nostdin -timeout 300 "$@" \
        >/dev/null 2>&1) || true
}
load "${WARM:-300}" $((PORT + 1)) # warm-up: caches, tables, spares
c0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
[ -n "$CG" ] && callgrind_control -z "$PID" >/dev/null
load "$N" $((PORT + 2)) -trace_stat -stf stat.csv
c1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
[ -n "$CG" ] && callgrind_control -d "$PID" >/dev/null
ok=$(python3 -c "import csv; r = list(csv.reader(open('$T/stat.csv'), delimiter=';')); print(r[-1][r[0].index('SuccessfulCall(C)')])")
echo "$PROTO N=$N ok=$ok cpu_us/reg=$(awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
    -v n="$N" 'BEGIN { printf "%.1f", c * 1e6 / hz / n }')"
if [ -n "$CG" ]; then
    f=$(ls "$T"/cg.*.1)
    ir=$(grep -h '^summary:' "$f" | awk '{print $2}')
    echo "instructions/reg=$((ir / N))"
    cp "$f" "$CG"
fi
