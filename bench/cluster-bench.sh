#!/bin/bash
# cluster-bench: the cluster on PostgreSQL against one node on SQLite
# (issue 17), same box, same run. Two parts:
#
# 1. REGISTER/s with the SIPp harness of register-bench.sh
#    (../shared/bench/kamailio/run-load.sh: step load, highest rate with
#    < 0.1 % failed registrations and retransmissions; 1000 users, digest
#    MD5) against, back to back, ROUNDS times each:
#      sqlite   one node, [store] backend = sqlite
#      pg1      one node of a cluster ([cluster] node = a) on PostgreSQL
#      pg2      two nodes (a, b) on PostgreSQL; the load is split: users
#               1000-1499 drive node a, 1500-1999 node b, two run-load.sh
#               side by side (each its own copy with half the users);
#               the rate is the sum of the two highest passing rates
#    For each: CPU per completed registration (pushpbx, and PostgreSQL's
#    server processes; /proc ticks over the whole search), and on
#    PostgreSQL the statements per registration and per second
#    (pg_stat_statements: every statement the server ran, the heartbeat
#    and the listener's reads included) and WAL bytes per registration
#    (pg_current_wal_lsn before and after); the statements run most are in
#    each run's statements.txt.
# 2. Wake across nodes: bench/wake_driver.py with the calls on node a and
#    the woken phones registering at node a (local) or at node b (cross);
#    the interval is measured on the phone's side, on this one machine:
#    the authenticated wake REGISTER sent -> the INVITE received (for the
#    cross case: B reads the REGISTER, commits the binding, PostgreSQL
#    notifies A, A reads the extension and sends the INVITE via B). The
#    cross-node cost is the difference of the two.
# 3. calls/s with the SIPp call harness of call-bench.sh (run-load.sh
#    --scenarios call: the 1000 users registered first, then step load of
#    complete calls, INVITE with 407 digest auth, 180, 200, ACK, BYE after
#    HOLD_MS) against, back to back:
#      sqlite   one node, callers and callees on it
#      pg2      two nodes on PostgreSQL: the callees register at node b,
#               the callers call node a, so every call crosses nodes
#               (A authenticates, forks via B's advertise with a pp-ext
#               Route, B sends it to the phone; both Record-Route). The
#               driver is a copy of run-load.sh whose registration pass
#               goes to PREREG_TARGET (node b), cross_driver.
#    The same figures as part 1, per completed call, counted from the end
#    of the registration pass (the calls only).
#
#   bench/cluster-bench.sh [BUILD_DIR]     (default: build-rel, Release:
#                                           cmake -S . -B build-rel
#                                           -DCMAKE_BUILD_TYPE=Release)
#   env: ROUNDS=2  STEP_SECS=5 MAX_STEPS=5 (run-load.sh, per search)
#        WAKE_DEVICES=200 WAKE_RATE=50 WAKE_DURATION=10
#        PARTS="reg wake call" (default all three)
#        HOLD_MS (run-load.sh's call hold time, default 1000)
#        SYNC_COMMIT=on (PostgreSQL's synchronous_commit; off: a commit
#        does not wait for its WAL flush)
#
# PostgreSQL: a private server (tests/pg/pg-run: unix socket only, in a
# temp folder) with fsync = on (pg-run turns it off for tests) and
# pg_stat_statements loaded; the database is emptied between runs.
# Everything is bounded (run-load.sh's own bounds; the wake driver by
# timeout); every process started here is stopped by its PID.
# Results: bench/results/cluster-<stamp>/ (summary.txt and each run).
set -eu -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${PUSHPBX_TEST_PG:-}" ]; then
    exec "$ROOT/tests/pg/pg-run" "$0" "$@"
fi

BUILD=${1:-build-rel}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BIN="$BUILD/src/app/pushpbx"
SIM="$BUILD/src/pushsim/pushsim"
KAM=${KAM_DIR:-$ROOT/../shared/bench/kamailio}
ROUNDS=${ROUNDS:-2}
PARTS=${PARTS:-reg wake call}
export STEP_SECS=${STEP_SECS:-5} MAX_STEPS=${MAX_STEPS:-5}
WAKE_DEVICES=${WAKE_DEVICES:-200}
WAKE_RATE=${WAKE_RATE:-50}
WAKE_DURATION=${WAKE_DURATION:-10}
WORKERS=${PBX_WORKERS:-2}
DSN=$PUSHPBX_TEST_PG
PGB=$PUSHPBX_PG_BIN
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUTDIR="$ROOT/bench/results/cluster-$STAMP"
HZ=$(getconf CLK_TCK)
TOKEN=cluster-bench-token-0123456789abcdef

for b in "$BIN" "$SIM" "$KAM/run-load.sh"; do
    [ -x "$b" ] || { echo "cluster-bench: $b missing" >&2; exit 1; }
done
mkdir -p "$OUTDIR"
TMP=$(mktemp -d)
PIDS=""
stop() { # PID: TERM, KILL after 5 s
    kill -TERM "$1" 2>/dev/null || return 0
    local i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    for p in $PIDS; do stop "$p"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "$*" | tee -a "$OUTDIR/summary.txt"; }

psql_() { "$PGB/psql" "$DSN" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
# fsync on (a real server), pg_stat_statements: restart once.
psql_ "ALTER SYSTEM SET fsync = on" >/dev/null
psql_ "ALTER SYSTEM SET synchronous_commit = '${SYNC_COMMIT:-on}'" >/dev/null
psql_ "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null
$PUSHPBX_TEST_PG_CTL -w restart >/dev/null
PG_PID=$(head -1 "$PUSHPBX_TEST_PG_DIR/data/postmaster.pid")
reset_db() {
    "$PGB/psql" "${DSN/dbname=pushpbx/dbname=postgres}" -XAtq -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS pushpbx WITH (FORCE)" \
        -c "CREATE DATABASE pushpbx" >/dev/null
    psql_ "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
    psql_ "SELECT pg_stat_statements_reset()" >/dev/null
}
top_statements() { # the statements PostgreSQL ran most since reset_db
    psql_ "SELECT calls, left(regexp_replace(query, '\s+', ' ', 'g'), 100)
           FROM pg_stat_statements ORDER BY calls DESC LIMIT 15" | tr '|' '\t'
}
pg_counters() { # "statements wal_lsn_bytes"
    psql_ "SELECT (SELECT coalesce(sum(calls),0) FROM pg_stat_statements),
                  pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')" | tr '|' ' '
}
ticks_of() { # PIDS...: utime+stime of each and of its direct children
    local sum=0 f line rest ppid ut st pid
    for f in /proc/[0-9]*/stat; do
        { read -r line < "$f"; } 2>/dev/null || continue
        pid=${line%% *}
        rest=${line##*) }
        read -r _ ppid _ _ _ _ _ _ _ _ _ ut st _ <<< "$rest"
        for p in "$@"; do
            if [ "$pid" = "$p" ] || [ "$ppid" = "$p" ]; then
                sum=$((sum + ut + st)); break
            fi
        done
    done
    echo $sum
}
free_port() { # HOST: a port free for UDP and TCP
    python3 - "$1" <<'PY'
import socket, sys
for _ in range(50):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t = socket.socket()
    try:
        u.bind((sys.argv[1], 0)); p = u.getsockname()[1]; t.bind((sys.argv[1], p))
        print(p); break
    except OSError:
        pass
    finally:
        u.close(); t.close()
PY
}

# --- configuration -----------------------------------------------------------
USERS="$TMP/users.conf"
tail -n +2 "$KAM/users.csv" | while IFS=';' read -r user pw; do
    printf '[extension.%s]\npassword = %s\n' "$user" "$pw"
done >"$USERS"

# conf NAME HOST PORT BACKEND NODE [EXTRA]: writes $TMP/NAME.conf
conf() {
    local name=$1 host=$2 port=$3 backend=$4 node=$5 extra=${6:-}
    {
        printf '[sip]\nlisten = udp:%s:%s\ndomain = bench.local\nworkers = %s\n' \
            "$host" "$port" "$WORKERS"
        printf '[log]\nlevel = warn\n[registrar]\ndigest_algorithms = md5\n'
        if [ "$backend" = sqlite ]; then
            printf '[store]\npath = %s/%s.db\n' "$TMP" "$name"
        else
            printf '[store]\nbackend = postgresql\npostgresql = %s\n' "$DSN"
        fi
        if [ -n "$node" ]; then
            printf '[cluster]\nnode = %s\nadvertise = sip:%s:%s\n' "$node" "$host" "$port"
        fi
        printf '%s\n' "$extra"
        cat "$USERS"
    } >"$TMP/$name.conf"
}
# start NAME: starts pushpbx on $TMP/NAME.conf, sets PID
start() {
    rm -f "$TMP/$1.ready"
    "$BIN" --config "$TMP/$1.conf" --ready-file "$TMP/$1.ready" \
        >/dev/null 2>"$OUTDIR/$1-$RUN.log" &
    PID=$!
    PIDS="$PIDS $PID"
    local i=0
    while [ ! -s "$TMP/$1.ready" ]; do
        i=$((i + 1))
        if [ $i -gt 150 ] || ! kill -0 "$PID" 2>/dev/null; then
            echo "cluster-bench: pushpbx $1 did not start:" >&2
            cat "$OUTDIR/$1-$RUN.log" >&2
            exit 1
        fi
        sleep 0.1
    done
}
forget() { PIDS=$(echo " $PIDS " | sed "s/ $1 / /"); }

# half LO HI: a copy of the driver with users LO..HI only
half() {
    local d="$TMP/load-$1"
    mkdir -p "$d/sipp"
    cp "$KAM/run-load.sh" "$d/"
    cp "$KAM/sipp/register.xml" "$d/sipp/"
    {
        echo SEQUENTIAL
        awk -F';' -v lo="$1" -v hi="$2" 'NR > 1 && $1 >= lo && $1 <= hi' \
            "$KAM/sipp/register-users.csv"
    } >"$d/sipp/register-users.csv"
    echo "$d"
}

# run-load.sh results; SCEN: register (default) or call
rate_of() { # FILE [SCEN]: the highest passing rate
    grep -o "RESULT ${2:-register}: highest passing rate [0-9]*" "$1" | grep -o '[0-9]*$' || echo 0
}
regs_of() { # OUT [SCEN]: completed registrations (calls) over every step
    awk -F';' -v sc="${2:-register}" 'NR > 1 && $1 == sc { s += $6 } END { print s + 0 }' "$1/steps.csv"
}
secs_of() { # OUT [SCEN]: seconds of load (sum of the steps' wall time)
    awk -F';' -v sc="${2:-register}" 'NR > 1 && $1 == sc { s += $10 } END { print s + 0 }' "$1/steps.csv"
}

# acct_line LABEL UNIT RATE N SECS PBX_TICKS PG_TICKS [STATEMENTS WAL_BYTES]:
# the summary line of one search: the rate, CPU per completed UNIT and, on
# PostgreSQL (STATEMENTS given), statements and WAL bytes per UNIT
acct_line() {
    awk -v label="$1" -v unit="$2" -v r="$3" -v n="$4" -v sec="$5" \
        -v t="$6" -v p="$7" -v s="${8:-}" -v w="${9:-}" -v hz="$HZ" 'BEGIN {
        if (n < 1) n = 1; if (sec <= 0) sec = 1
        u = unit == "registration" ? "REGISTER/s" : "calls/s"
        printf "%s: %6d %s  (%d %ss)  CPU/%s: pushpbx %.0f us, postgres %.0f us",
            label, r, u, n, unit, unit, t / hz * 1e6 / n, p / hz * 1e6 / n
        if (s != "")
            printf "  statements: %.2f/%s, %.0f/s; WAL %.0f bytes/%s",
                s / n, unit, s / sec, w / n, unit
        printf "\n" }'
}

# one_reg CONFIG: one REGISTER search of CONFIG (sqlite | pg1 | pg2)
one_reg() {
    local cfg=$1 out="$OUTDIR/$cfg-$RUN" t0 t1 s0 s1 rate regs secs pg=0
    local pa pb porta portb ua ub
    mkdir -p "$out"
    [ "$cfg" = sqlite ] || { reset_db; pg=1; }
    porta=$(free_port 127.0.0.2)
    case $cfg in
    sqlite) conf a 127.0.0.2 "$porta" sqlite "" ;;
    pg1) conf a 127.0.0.2 "$porta" postgresql a ;;
    pg2) portb=$(free_port 127.0.0.3)
         conf a 127.0.0.2 "$porta" postgresql a
         conf b 127.0.0.3 "$portb" postgresql b ;;
    esac
    start a; pa=$PID
    pb=
    if [ "$cfg" = pg2 ]; then start b; pb=$PID; fi
    sleep 1
    ua=$(free_port 127.0.0.1)
    [ $pg = 1 ] && read -r s0 w0 <<< "$(pg_counters)"
    t0=$(ticks_of $pa $pb); p0=$(ticks_of "$PG_PID")
    if [ "$cfg" = pg2 ]; then
        ub=$(free_port 127.0.0.1)
        REG_START_RATE=1000 UAC_REG_PORT=$ua OUT="$out/a" "$(half 1000 1499)/run-load.sh" \
            --target "127.0.0.2:$porta" --domain bench.local --server-pid "$pa" \
            --scenarios register >"$out/a.txt" 2>&1 &
        la=$!
        REG_START_RATE=1000 UAC_REG_PORT=$ub OUT="$out/b" "$(half 1500 1999)/run-load.sh" \
            --target "127.0.0.3:$portb" --domain bench.local --server-pid "$pb" \
            --scenarios register >"$out/b.txt" 2>&1 &
        lb=$!
        wait $la || true
        wait $lb || true
        rate=$(( $(rate_of "$out/a.txt") + $(rate_of "$out/b.txt") ))
        regs=$(( $(regs_of "$out/a") + $(regs_of "$out/b") ))
        secs=$(awk -v a="$(secs_of "$out/a")" -v b="$(secs_of "$out/b")" \
            'BEGIN { print (a > b ? a : b) }')
    else
        UAC_REG_PORT=$ua OUT="$out/a" "$KAM/run-load.sh" \
            --target "127.0.0.2:$porta" --domain bench.local --server-pid "$pa" \
            --scenarios register >"$out/a.txt" 2>&1 || true
        rate=$(rate_of "$out/a.txt")
        regs=$(regs_of "$out/a")
        secs=$(secs_of "$out/a")
    fi
    t1=$(ticks_of $pa $pb); p1=$(ticks_of "$PG_PID")
    local s1 w1 ds="" dw=""
    if [ $pg = 1 ]; then
        read -r s1 w1 <<< "$(pg_counters)"
        ds=$((s1 - s0)); dw=$(awk -v a="$w1" -v b="$w0" 'BEGIN { printf "%.0f", a - b }')
    fi
    [ $pg = 0 ] || top_statements >"$out/statements.txt"
    say "$(acct_line "$(printf '%-6s run %d' "$cfg" "$RUN")" registration "$rate" \
        "$regs" "$secs" "$((t1 - t0))" "$((p1 - p0))" $ds $dw)"
    grep -h RESULT "$out"/*.txt | sed 's/^/    /' | tee -a "$OUTDIR/summary.txt"
    stop "$pa"; forget "$pa"
    if [ -n "$pb" ]; then stop "$pb"; forget "$pb"; fi
}

# --- part 3: calls/s ----------------------------------------------------------

# cross_driver: a copy of run-load.sh whose registration pass (every user
# at the UAS address, before the calls) goes to $PREREG_TARGET instead of
# --target; the load steps are unchanged. Prints its folder.
cross_driver() {
    local d="$TMP/load-cross"
    mkdir -p "$d"
    ln -sfn "$KAM/sipp" "$d/sipp"
    # shellcheck disable=SC2016
    sed '/^preregister() {/,/^}/ s/uac "\$TARGET"/uac "${PREREG_TARGET:?}"/' \
        "$KAM/run-load.sh" >"$d/run-load.sh"
    chmod +x "$d/run-load.sh"
    grep -q 'uac "${PREREG_TARGET:?}"' "$d/run-load.sh" || {
        echo "cluster-bench: run-load.sh's registration pass not found" >&2
        exit 1
    }
    echo "$d"
}

# ports N: N distinct free ports on 127.0.0.1
ports() {
    local v="" p
    while [ "$(echo $v | wc -w)" -lt "$1" ]; do
        p=$(free_port 127.0.0.1)
        case " $v " in *" $p "*) ;; *) v="$v $p" ;; esac
    done
    echo $v
}

# alive_at ADMIN_PORT NODE: wait (at most 15 s) until the node answering
# at ADMIN_PORT sees NODE up (it drops rows of nodes it does not know)
alive_at() {
    local i=0
    until curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/api/nodes" |
        python3 -c 'import json,sys; n={x["name"]: x for x in json.load(sys.stdin)["items"]}; sys.exit(0 if n.get(sys.argv[1], {}).get("alive") else 1)' "$2" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 150 ] && { echo "cluster-bench: node $2 not seen up" >&2; exit 1; }
        sleep 0.1
    done
}

# one_call CONFIG: one call search of CONFIG (sqlite | pg2)
one_call() {
    local cfg=$1 out="$OUTDIR/call-$cfg-$RUN" pa pb="" porta portb pre drv=$KAM
    local pg=0 ua uc us poll
    mkdir -p "$out"
    porta=$(free_port 127.0.0.2)
    if [ "$cfg" = sqlite ]; then
        conf a 127.0.0.2 "$porta" sqlite ""
        pre=127.0.0.2:$porta
    else
        reset_db; pg=1
        portb=$(free_port 127.0.0.3)
        local adm
        adm=$(printf '[admin]\nlisten = 127.0.0.1:0\ntoken = %s\n' "$TOKEN")
        conf a 127.0.0.2 "$porta" postgresql a "$adm"
        conf b 127.0.0.3 "$portb" postgresql b "$adm"
        drv=$(cross_driver)
        pre=127.0.0.3:$portb
    fi
    start a; pa=$PID
    if [ $pg = 1 ]; then
        start b; pb=$PID
        alive_at "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_port"])' "$TMP/a.ready")" b
    fi
    read -r ua uc us <<< "$(ports 3)"
    # The counters from the end of the registration pass: the calls only.
    (
        until grep -qs 'pre-registration:' "$out/a/summary.txt"; do sleep 0.1; done
        echo "$(ticks_of $pa $pb) $(ticks_of "$PG_PID") $([ $pg = 1 ] && pg_counters || echo '- -')" >"$out/acct0"
    ) &
    poll=$!
    PREREG_TARGET=$pre UAC_REG_PORT=$ua UAC_CALL_PORT=$uc UAS_PORT=$us OUT="$out/a" \
        "$drv/run-load.sh" --target "127.0.0.2:$porta" --domain bench.local \
        --server-pid "$pa" ${pb:+--server-pid "$pb"} --scenarios call \
        >"$out/a.txt" 2>&1 || true
    kill "$poll" 2>/dev/null || true
    wait "$poll" 2>/dev/null || true
    local t0 p0 s0 w0 t1 p1 s1 w1 ds="" dw=""
    t1=$(ticks_of $pa $pb); p1=$(ticks_of "$PG_PID")
    if [ -s "$out/acct0" ]; then
        read -r t0 p0 s0 w0 <"$out/acct0"
    else
        t0=$t1; p0=$p1; s0=-; w0=-
    fi
    if [ $pg = 1 ] && [ "$s0" != - ]; then
        read -r s1 w1 <<< "$(pg_counters)"
        ds=$((s1 - s0)); dw=$(awk -v a="$w1" -v b="$w0" 'BEGIN { printf "%.0f", a - b }')
    fi
    local label="$cfg"
    if [ $pg = 1 ]; then
        label="pg2 (a->b)"
        top_statements >"$out/statements.txt"
    fi
    say "$(acct_line "$(printf 'call %-10s run %d' "$label" "$RUN")" call \
        "$(rate_of "$out/a.txt" call)" "$(regs_of "$out/a" call)" \
        "$(secs_of "$out/a" call)" "$((t1 - t0))" "$((p1 - p0))" $ds $dw)"
    grep -h 'RESULT\|pre-registration' "$out/a.txt" | sed 's/^/    /' | tee -a "$OUTDIR/summary.txt"
    stop "$pa"; forget "$pa"
    if [ -n "$pb" ]; then stop "$pb"; forget "$pb"; fi
}

# --- part 2: wake across nodes -----------------------------------------------
wake() {
    local out="$OUTDIR/wake-$RUN" porta portb pa pb
    mkdir -p "$out"
    reset_db
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$TMP/apns.p8" 2>/dev/null
    rm -f "$TMP/sim.ready"
    "$SIM" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
        --cert-out "$TMP/sim-cert.pem" --ready-file "$TMP/sim.ready" \
        --apns-key "DEMOKEY001:DEMOTEAM01:$TMP/apns.p8" \
        --apns-topic com.example.pushpbx >/dev/null 2>"$out/pushsim.log" &
    local sim=$!
    PIDS="$PIDS $sim"
    local i=0
    while [ ! -s "$TMP/sim.ready" ]; do
        i=$((i + 1)); [ $i -gt 100 ] && { echo "pushsim did not start" >&2; exit 1; }
        sleep 0.1
    done
    local https control
    https=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["https_port"])' "$TMP/sim.ready")
    control=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["control_port"])' "$TMP/sim.ready")
    local extra
    extra=$(printf '[admin]\nlisten = 127.0.0.1:0\ntoken = %s\n[proxy]\nring_timeout_s = 20\n[apns]\nenabled = yes\nbase_url = https://127.0.0.1:%s\nkey_file = %s/apns.p8\nkey_id = DEMOKEY001\nteam_id = DEMOTEAM01\ntopic = com.example.pushpbx\nca_file = %s/sim-cert.pem\n[fcm]\nenabled = no\n[push]\nrecent = 5000\n[extension.999999]\npassword = pw999999\n' \
        "$TOKEN" "$https" "$TMP" "$TMP")
    porta=$(free_port 127.0.0.2); portb=$(free_port 127.0.0.3)
    conf a 127.0.0.2 "$porta" postgresql a "$extra"
    conf b 127.0.0.3 "$portb" postgresql b "$extra"
    start a; pa=$PID; start b; pb=$PID
    local admin
    admin=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_port"])' "$TMP/a.ready")
    local since=0
    for where in local cross; do
        # other phones for the cross case (their push devices are new)
        local dport=$porta dhost=127.0.0.2 first=1000
        [ $where = cross ] && { dport=$portb; dhost=127.0.0.3; first=$((1000 + WAKE_DEVICES)); }
        since=$(curl -s "http://127.0.0.1:$control/pushes?since=0" |
            python3 -c 'import json,sys; p=json.load(sys.stdin)["pushes"]; print(max([x["seq"] for x in p], default=0))')
        timeout $((WAKE_DURATION + 120)) python3 "$ROOT/bench/wake_driver.py" \
            --sip-host 127.0.0.2 --sip-port "$porta" \
            --device-sip-host "$dhost" --device-sip-port "$dport" \
            --admin-port "$admin" --admin-token "$TOKEN" \
            --pushsim-control "$control" --push-since "$since" \
            --devices "$WAKE_DEVICES" --first "$first" --rate "$WAKE_RATE" \
            --duration "$WAKE_DURATION" --settle 1 \
            --caller 999999 --caller-password pw999999 \
            --json "$out/$where.json" >"$out/$where.txt" 2>&1 || true
        say "wake $where run $RUN (calls on a, phones register at $dhost): $(grep -h 'phone view' "$out/$where.txt" | sed 's/^phone view //')"
        say "    $(grep -h '^calls:' "$out/$where.txt")"
    done
    stop "$pa"; forget "$pa"; stop "$pb"; forget "$pb"; stop "$sim"; forget "$sim"
}

{
    echo "cluster-bench $STAMP: $(nproc) CPUs, workers=$WORKERS, STEP_SECS=$STEP_SECS MAX_STEPS=$MAX_STEPS, rounds=$ROUNDS"
    echo "build: $BUILD ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null))"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "postgresql: $("$PGB/postgres" --version), fsync=$(psql_ 'SHOW fsync'), synchronous_commit=$(psql_ 'SHOW synchronous_commit')"
    echo "load before: $(uptime)"
} | tee "$OUTDIR/summary.txt"
for RUN in $(seq 1 "$ROUNDS"); do
    case " $PARTS " in *" reg "*)
        for cfg in sqlite pg1 pg2; do one_reg $cfg; done ;;
    esac
    case " $PARTS " in *" wake "*) wake ;; esac
    case " $PARTS " in *" call "*)
        for cfg in sqlite pg2; do one_call $cfg; done ;;
    esac
done
say "load after: $(uptime)"
echo "results: $OUTDIR"
