# bench/lib.sh: shared by the SIPp comparisons with Kamailio
# (register-bench.sh, call-bench.sh, media-bench.sh; tls-bench.sh uses
# bench_pbx_conf). Sourced, not run. The caller sets
#   BENCH     the bench's name (results go to bench/results/$BENCH-<stamp>/)
#   SCENARIO  the run-load.sh scenario (register | call)
#   UNIT      the label of the printed rate (REGISTER/s, calls/s)
# and then calls `bench_compare [BUILD_DIR]`.
#
# Method (../shared/bench/kamailio/run-load.sh and its README): step load,
# highest rate with < 0.1 % failed calls and retransmissions, the same
# driver for both servers in the same run. pushpbx runs on UDP
# 127.0.0.1:$PBX_PORT (5080) with the 1000 users of the shared users.csv
# (1000..1999 / pw<user>), digest_algorithms = md5 (SIPp 3.6 computes only
# MD5, and Kamailio offers only MD5), log level warn, and its SQLite store
# in a temporary directory. Kamailio runs through its own run-kamailio.sh
# (UDP 127.0.0.1:5070). Every process started here is stopped by its PID.

bench_compare() {
    ROOT=$(cd "$(dirname "$0")/.." && pwd)
    BUILD=${1:-build}
    case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
    BIN="$BUILD/src/app/pushpbx"
    KAM=${KAM_DIR:-$ROOT/../shared/bench/kamailio}
    PORT=${PBX_PORT:-5080}
    WORKERS=${PBX_WORKERS:-2}
    OUTDIR="$ROOT/bench/results/$BENCH-$(date -u +%Y%m%d-%H%M%S)"

    [ -x "$BIN" ] || { echo "$BENCH: $BIN missing (make build)" >&2; exit 1; }
    [ -x "$KAM/run-load.sh" ] || { echo "$BENCH: $KAM missing" >&2; exit 1; }
    mkdir -p "$OUTDIR"
    TMP=$(mktemp -d)
    PBX_PID=
    trap bench_cleanup EXIT INT TERM

    CONF="$TMP/pushpbx.conf"
    bench_pbx_conf "$CONF" "udp:127.0.0.1:$PORT" "$KAM/users.csv"
    # PBX_CONF_EXTRA: a file appended to every variant's configuration
    # (e.g. a [media] section); PBX_VARIANT_SECTION: the section the
    # variants' option goes to (default sip).
    if [ -n "${PBX_CONF_EXTRA:-}" ]; then cat "$PBX_CONF_EXTRA" >>"$CONF"; fi

    # Each variant is one pushpbx run in this same run, e.g. the same
    # binary before and after a change behind an option:
    #   PBX_VARIANTS="before:udp_spread=no after:udp_spread=yes"
    # (name:[sip] option; no option after the colon: the defaults).
    k=0
    for v in ${PBX_VARIANTS:-pushpbx:}; do
        name=${v%%:*} opt=${v#*:}
        if [ -n "$opt" ]; then
            sed "/^\[${PBX_VARIANT_SECTION:-sip}\]/a $opt" "$CONF" >"$TMP/$name.conf"
        else
            cp "$CONF" "$TMP/$name.conf"
        fi
        rm -f "$TMP/ready"
        # PBX_ARGS: more daemon arguments, split on spaces (e.g. --set
        # admin.enabled=yes for media-bench's in-daemon figures).
        # shellcheck disable=SC2086
        "$BIN" --config "$TMP/$name.conf" --ready-file "$TMP/ready" \
            ${PBX_ARGS:-} 2>"$OUTDIR/$name.log" &
        PBX_PID=$!
        i=0
        while [ ! -s "$TMP/ready" ]; do
            i=$((i + 1))
            [ $i -gt 100 ] && { echo "pushpbx did not start" >&2; exit 1; }
            sleep 0.1
        done
        echo "== pushpbx $name ($WORKERS workers${opt:+, $opt}) =="
        OUT="$OUTDIR/$name" "$KAM/run-load.sh" --target "127.0.0.1:$PORT" \
            --server-pid "$PBX_PID" --scenarios "$SCENARIO" |
            tee "$OUTDIR/$name.txt"
        kill -TERM "$PBX_PID"
        wait "$PBX_PID" || true
        PBX_PID=
    done

    echo "== Kamailio =="
    (cd "$KAM" && OUT="$OUTDIR/kamailio" ./run-kamailio.sh --scenarios "$SCENARIO") |
        tee "$OUTDIR/kamailio.txt"

    k=$(bench_rate "$OUTDIR/kamailio.txt")
    for v in ${PBX_VARIANTS:-pushpbx:}; do
        name=${v%%:*}
        p=$(bench_rate "$OUTDIR/$name.txt")
        echo "$UNIT $name=$p kamailio=$k ratio=$(awk -v p="$p" -v k="$k" \
            'BEGIN { if (k > 0) printf "%.2f", p / k; else print "n/a" }')" |
            tee -a "$OUTDIR/ratio.txt"
    done
}

# bench_pbx_conf FILE LISTEN USERS_CSV: the pushpbx side of a comparison
# with Kamailio (also bench/tls-bench.sh): $WORKERS workers, log level
# warn, no admin, digest MD5, the store in $TMP, one extension per line of
# the shared users.csv. A caller appends sections for its own options (a
# section may appear again with other keys).
bench_pbx_conf() {
    cat >"$1" <<CONF
[sip]
listen = $2
domain = 127.0.0.1
workers = $WORKERS
[log]
level = warn
[admin]
enabled = no
[registrar]
digest_algorithms = md5
[store]
path = $TMP/bench.db
CONF
    tail -n +2 "$3" | while IFS=';' read -r user pw; do
        printf '[extension.%s]\npassword = %s\n' "$user" "$pw"
    done >>"$1"
}

bench_rate() { # the highest passing rate run-load.sh reported in FILE
    grep -o "RESULT $SCENARIO: highest passing rate [0-9]*" "$1" |
        grep -o '[0-9]*$' || echo 0
}

bench_cleanup() {
    [ -n "$PBX_PID" ] && kill -TERM "$PBX_PID" 2>/dev/null && wait "$PBX_PID" || true
    rm -rf "$TMP"
}
