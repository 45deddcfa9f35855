#!/bin/bash
# tls-bench: SIP over TLS, pushpbx against Kamailio 5.6 (tls module), the
# same driver (bench/tls_driver.c) for both, in one run:
#   1. REGISTER/s on long-lived TLS connections: each connection registers
#      its own user (shared users.csv, 1000..1999 / pw<user>) with digest
#      MD5 qop=auth, over and over, for $DURATION s at each concurrency in
#      $CONNS (fixed concurrency: one registration in flight per connection)
#   2. full TLS 1.2 handshakes/s ($HS_INFLIGHT in flight, no resumption)
#   3. memory per idle TLS connection at $IDLE_CONNS registered connections
# Servers run back to back, pushpbx first, then Kamailio; REPEAT=n
# interleaves n rounds. Both get $WORKERS workers. Loopback only; every
# process started here is stopped by its PID.
#
#   bench/tls-bench.sh [BUILD_DIR]          (default: build, RelWithDebInfo)
# environment: CONNS="50 500" DURATION=10 REPEAT=1 HS_INFLIGHT=32 HS_SECS=10
#   IDLE_CONNS=19000 (0: skip) IDLE_PROCS=2 WORKERS=2 PBX_PORT=5091
#   KAM_PORT=5071 KAM_SHM_MB=2048 KAM_MALLOC=qm (-x: qm, fm, tlsf)
#   SERVERS="pushpbx kamailio" (the order of each round)
#   PIN="0:1": the server (every process and thread of it) on CPU list 0,
#   the driver on CPU list 1 (taskset), so that the load generator does
#   not take the server's CPU; the rate is then the server's on its CPUs
#   (unset: both float over every CPU, as before)
#   IDLE_SERVERS (default $SERVERS; Kamailio 5.6.3 with OpenSSL 3 crashed
#   in the idle test at about 3,900 connections here)
# Needs: kamailio and kamailio-tls-modules (apt-get install -y kamailio
# kamailio-tls-modules; installed here if missing), openssl.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BIN="$BUILD/src/app/pushpbx"
DRV="$BUILD/bench/tls_driver"
SHARED=${KAM_DIR:-$ROOT/../shared/bench/kamailio}
KDIR="$ROOT/bench/kamailio-tls"
CONNS=${CONNS:-"50 500"}
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-1}
HS_INFLIGHT=${HS_INFLIGHT:-32}
HS_SECS=${HS_SECS:-10}
IDLE_CONNS=${IDLE_CONNS:-19000}
IDLE_PROCS=${IDLE_PROCS:-2}
WORKERS=${WORKERS:-2}
PBX_PORT=${PBX_PORT:-5091}
KAM_PORT=${KAM_PORT:-5071}
KAM_SHM_MB=${KAM_SHM_MB:-2048}
KAM_MALLOC=${KAM_MALLOC:-qm}
OUTDIR="$ROOT/bench/results/tls-$(date -u +%Y%m%d-%H%M%S)"
SRV_PIN= DRV_PIN=
if [ -n "${PIN:-}" ]; then
	SRV_PIN="taskset -c ${PIN%%:*}" DRV_PIN="taskset -c ${PIN#*:}"
fi
. "$ROOT/bench/lib.sh" # bench_pbx_conf

die() { echo "tls-bench: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN missing (make build)"
[ -x "$DRV" ] || die "$DRV missing (cmake --build $BUILD --target tls_driver)"
[ -f "$SHARED/users.csv" ] || die "$SHARED/users.csv missing"
if [ "${SERVERS:-kamailio}" != pushpbx ] && [ ! -f /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so ]; then
	apt-get install -y kamailio kamailio-tls-modules >/dev/null || die "cannot install kamailio"
fi
mkdir -p "$OUTDIR"
TMP=$(mktemp -d)
SPID=
cleanup() {
	if [ -n "$SPID" ]; then
		kill -TERM "$SPID" 2>/dev/null
		wait "$SPID" 2>/dev/null
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# one certificate for both: ECDSA P-256, like a Let's Encrypt ECDSA cert
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null || die "openssl req failed"

tcp_listening() { # port
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v h="$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' /proc/net/tcp
}

start_pushpbx() {
	local conf="$TMP/pushpbx.conf" i
	bench_pbx_conf "$conf" "tls:127.0.0.1:$PBX_PORT" "$SHARED/users.csv"
	cat >>"$conf" <<CONF
[sip]
max_connections = 20000
tcp_max_per_source = 0
tcp_idle_timeout_s = 3600
[tls]
cert_file = $TMP/cert.pem
key_file = $TMP/key.pem
[registrar]
max_contacts = 64
auth_fail_threshold = 0
CONF
	rm -f "$TMP/bench.db" "$TMP/ready"
	$SRV_PIN "$BIN" --config "$conf" --ready-file "$TMP/ready" >>"$OUTDIR/pushpbx.log" 2>&1 &
	SPID=$!
	for i in $(seq 1 100); do [ -s "$TMP/ready" ] && break; sleep 0.1; done
	[ -s "$TMP/ready" ] || die "pushpbx did not start (see $OUTDIR/pushpbx.log)"
	PORT=$PBX_PORT
}

start_kamailio() {
	local run="$TMP/kam" i
	rm -rf "$run"
	mkdir -p "$run/db"
	# db_text tables from users.csv, as ../shared/bench/kamailio/run-kamailio.sh
	printf 'id(int,auto) table_name(string) table_version(int) \n0:version:1\n0:subscriber:7\n' >"$run/db/version"
	{
		echo 'id(int,auto) username(string) domain(string) password(string) '
		awk -F';' 'NR > 1 && NF >= 2 { printf "%d:%s:127.0.0.1:%s\n", NR - 1, $1, $2 }' "$SHARED/users.csv"
	} >"$run/db/subscriber"
	sed -e "s|@CERT@|$TMP/cert.pem|" -e "s|@KEY@|$TMP/key.pem|" "$KDIR/tls.cfg" >"$run/tls.cfg"
	# Kamailio's processes: main + attendant + TCP/TLS workers + timers + ctl
	# all share the descriptor limit of the session
	$SRV_PIN kamailio -f "$KDIR/kamailio-tls.cfg" -DD -E -x "$KAM_MALLOC" -m "$KAM_SHM_MB" -M 16 -Y "$run" -w "$run" \
		-A "KAM_LISTEN=tls:127.0.0.1:$KAM_PORT" -A "KAM_CHILDREN=$WORKERS" \
		-A "KAM_DBURL=\"text://$run/db\"" -A "KAM_CTL=\"unix:$run/ctl.sock\"" \
		-A "KAM_TLSCFG=\"$run/tls.cfg\"" >>"$OUTDIR/kamailio.log" 2>&1 &
	SPID=$!
	for i in $(seq 1 100); do
		tcp_listening "$KAM_PORT" && break
		kill -0 "$SPID" 2>/dev/null || die "kamailio exited at start (see $OUTDIR/kamailio.log)"
		sleep 0.1
	done
	tcp_listening "$KAM_PORT" || die "kamailio did not listen on $KAM_PORT"
	sleep 1 # workers up
	PORT=$KAM_PORT
}

stop_server() {
	local i
	kill -TERM "$SPID" 2>/dev/null
	for i in $(seq 1 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$SPID" 2>/dev/null && kill -KILL "$SPID"
	wait "$SPID" 2>/dev/null
	SPID=
}

drive() { # name args...: runs the driver, appends its RESULT line to results
	local name=$1
	shift
	local line
	line=$($DRV_PIN "$DRV" -t "127.0.0.1:$PORT" -p "$SPID" -u 1000 -n 1000 -w pw "$@" 2>>"$OUTDIR/driver.log" |
		tee -a "$OUTDIR/driver.log" | grep '^RESULT')
	echo "$name $line" | tee -a "$OUTDIR/results.txt"
}

run_server() { # pushpbx|kamailio
	local s=$1 c
	"start_$s"
	for c in $CONNS; do
		drive "$s" -m reg -c "$c" -d "$DURATION" -i 100
	done
	drive "$s" -m hs -c "$HS_INFLIGHT" -d "$HS_SECS" -s 8 -P 2
	stop_server
}

run_idle() {
	local s=$1
	"start_$s"
	drive "$s" -m idle -c "$IDLE_CONNS" -d 3 -P "$IDLE_PROCS" -s 8 -i 200
	stop_server
}

echo "tls-bench $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $WORKERS workers each${PIN:+, server on CPU ${PIN%%:*}, driver on CPU ${PIN#*:}}; load: $(cut -d' ' -f1-3 /proc/loadavg)" |
	tee "$OUTDIR/results.txt"
servers=${SERVERS:-"pushpbx kamailio"}
for r in $(seq 1 "$REPEAT"); do
	for s in $servers; do run_server "$s"; done
done
if [ "$IDLE_CONNS" -gt 0 ]; then
	for s in ${IDLE_SERVERS:-$servers}; do run_idle "$s"; done
fi

# ratios: mean of the rounds per row
echo "== summary ($OUTDIR) ==" | tee -a "$OUTDIR/results.txt"
summ() { # server pattern field
	grep "^$1 RESULT $2" "$OUTDIR/results.txt" | awk -v f="$3" '{ for (i = 1; i <= NF; i++) if ($i == f) { s += $(i - 1); n++ } } END { if (n) printf "%.0f", s / n; else print 0 }'
}
for c in $CONNS; do
	p=$(summ pushpbx "reg: connections $c," "registrations/s")
	k=$(summ kamailio "reg: connections $c," "registrations/s")
	echo "registrations/s at $c connections: pushpbx $p kamailio $k ratio $(awk -v p="$p" -v k="$k" 'BEGIN { if (k > 0) printf "%.2f", p / k; else print "n/a" }')" |
		tee -a "$OUTDIR/results.txt"
done
p=$(summ pushpbx "hs:" "full")
k=$(summ kamailio "hs:" "full")
echo "full TLS 1.2 handshakes/s: pushpbx $p kamailio $k ratio $(awk -v p="$p" -v k="$k" 'BEGIN { if (k > 0) printf "%.2f", p / k; else print "n/a" }')" |
	tee -a "$OUTDIR/results.txt"
