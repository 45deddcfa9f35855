#!/bin/bash
# run-load.sh - step-load one SIP registrar/proxy on loopback with SIPp and
# find the highest rate that stays under the failure threshold.
#
# Server-agnostic: it does not start or stop the server under test.
# run-kamailio.sh wraps it for Kamailio; for another server, start that server
# yourself (loaded with users.csv), then e.g.
#     ./run-load.sh --target 127.0.0.1:5080 --server-pid 12345
#
# Options (each also settable as the environment variable in brackets):
#   --target HOST:PORT   server under test [TARGET, default 127.0.0.1:5070];
#                        must be a loopback address (127.x.x.x, localhost)
#   --domain D           SIP domain in R-URI/From/To [DOMAIN, default TARGET]
#   --server-pid PID     server process whose CPU use (it + its children) is
#                        reported; repeat for several [SERVER_PIDS="p1 p2"]
#   --out DIR            results folder [OUT, default results/load-<time>]
#   --scenarios LIST     "register call", "register" or "call" [SCENARIOS]
# Load shape [environment only]:
#   STEP_SECS=10         seconds of load per step (SIPp -m = rate*STEP_SECS)
#   MAX_STEPS=6          steps per scenario (so <= 60 s of load each)
#   REG_START_RATE=2000  first REGISTER rate (registrations/s)
#   CALL_START_RATE=500  first call rate (calls/s)
#   MAX_RATE=20000       never step above this rate
#   FAIL_PPM=1000        a step passes if failed calls AND retransmissions are
#                        each below FAIL_PPM per million calls (1000 = 0.1 %)
#   HOLD_MS=1000         call hold time between ACK and BYE (SIPp -d)
#   PREREG_RATE=200      rate of the registration pass that precedes calls
#   LOCAL_IP=127.0.0.1   SIPp address; UAC_REG_PORT=5061 UAC_CALL_PORT=5062
#                        UAS_PORT=5090 (the Contact of every registered user)
#   KEEP_RAW=0           1 keeps SIPp's per-call response-time files
#   SIPP_BUFF=4194304    SIPp socket buffers (-buff_size; SIPp's default is
#                        64 KB; the kernel caps it at net.core.rmem_max)
#   COOLDOWN_FAIL_CALL=35, COOLDOWN_FAIL_REG=5  pause after a failed step
#                        (2 s after a passing one)
#   BISECT_PCT=10        stop bisecting once lowest fail - best pass is at
#                        most this % of the lowest fail
#   NG_PORT=             (media-bench) UDP port of rtpengine's ng socket: each
#                        step also reports the datagrams the kernel dropped
#                        there, and at the server's other UDP sockets (its ng
#                        client sockets: rtpengine's answers), "ng drops R/C"
#   STEP_HOOK=           a command run after each step as
#                        `$STEP_HOOK SCENARIO INDEX RATE STEP_DIR` (with
#                        STEP_SERVER_PIDS in its environment); its output
#                        goes to the summary (media-bench: in-daemon figures)
#
# Search: start rate, doubled after every passing step until a step fails,
# then bisection between best pass and lowest fail until they are within
# BISECT_PCT, at most MAX_STEPS steps.
# Every SIPp run is bounded by -m (count), its -timeout (time) and a hard
# deadline here; every process started here is stopped by its PID.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SCEN=$HERE/sipp

TARGET=${TARGET:-127.0.0.1:5070}
DOMAIN=${DOMAIN:-}
SERVER_PIDS=${SERVER_PIDS:-}
OUT=${OUT:-}
SCENARIOS=${SCENARIOS:-register call}
while [ $# -gt 0 ]; do
	case "$1" in
	--target) TARGET=$2; shift 2 ;;
	--domain) DOMAIN=$2; shift 2 ;;
	--server-pid) SERVER_PIDS="$SERVER_PIDS $2"; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--scenarios) SCENARIOS=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-load.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
DOMAIN=${DOMAIN:-$TARGET}
OUT=${OUT:-$HERE/results/load-$(date +%Y%m%d-%H%M%S)}
STEP_SECS=${STEP_SECS:-10}
MAX_STEPS=${MAX_STEPS:-6}
REG_START_RATE=${REG_START_RATE:-2000}
CALL_START_RATE=${CALL_START_RATE:-500}
MAX_RATE=${MAX_RATE:-20000}
FAIL_PPM=${FAIL_PPM:-1000}
HOLD_MS=${HOLD_MS:-1000}
PREREG_RATE=${PREREG_RATE:-200}
LOCAL_IP=${LOCAL_IP:-127.0.0.1}
UAC_REG_PORT=${UAC_REG_PORT:-5061}
UAC_CALL_PORT=${UAC_CALL_PORT:-5062}
UAS_PORT=${UAS_PORT:-5090}
KEEP_RAW=${KEEP_RAW:-0}
SIPP_BUFF=${SIPP_BUFF:-4194304}
COOLDOWN_FAIL_CALL=${COOLDOWN_FAIL_CALL:-35}
COOLDOWN_FAIL_REG=${COOLDOWN_FAIL_REG:-5}
BISECT_PCT=${BISECT_PCT:-10}
NG_PORT=${NG_PORT:-}
STEP_HOOK=${STEP_HOOK:-}
CLK_TCK=$(getconf CLK_TCK)
# resolution of CLOCK_MONOTONIC_COARSE (SIPp 3.6 times responses with it)
CLOCK_RES_MS=$(python3 -c 'import time; print(round(time.clock_getres(6) * 1000, 3))' 2>/dev/null || echo "?")
NCPU=$(nproc)

die() { echo "run-load.sh: $*" >&2; exit 1; }

# ---------- safety: loopback only ----------
is_loopback() {
	case "$1" in
	127.*.*.*|localhost|::1|\[::1\]) return 0 ;;
	*) return 1 ;;
	esac
}
TARGET_HOST=${TARGET%:*}
TARGET_PORT=${TARGET##*:}
[ "$TARGET_HOST" != "$TARGET" ] && [ -n "$TARGET_PORT" ] || die "--target must be HOST:PORT"
is_loopback "$TARGET_HOST" || die "target $TARGET is not a loopback address; refusing"
is_loopback "$LOCAL_IP" || die "LOCAL_IP $LOCAL_IP is not a loopback address; refusing"
for v in STEP_SECS MAX_STEPS REG_START_RATE CALL_START_RATE MAX_RATE FAIL_PPM HOLD_MS PREREG_RATE BISECT_PCT; do
	[[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -ge 0 ] || die "$v must be a non-negative integer"
done
[ "$STEP_SECS" -ge 1 ] && [ "$STEP_SECS" -le 60 ] || die "STEP_SECS must be 1..60"
[ "$MAX_STEPS" -ge 1 ] && [ "$MAX_STEPS" -le 12 ] || die "MAX_STEPS must be 1..12"
[ "$BISECT_PCT" -ge 1 ] && [ "$BISECT_PCT" -le 50 ] || die "BISECT_PCT must be 1..50"
[ -z "$NG_PORT" ] || [[ $NG_PORT =~ ^[0-9]+$ ]] || die "NG_PORT must be a port number"
for v in REG_START_RATE CALL_START_RATE MAX_RATE PREREG_RATE; do
	[ "${!v}" -ge 1 ] || die "$v must be at least 1"
done
command -v sipp >/dev/null || die "sipp not found (apt-get install sip-tester)"
[ -f "$SCEN/register-users.csv" ] || die "missing $SCEN/register-users.csv (run gen-users.sh)"
NUSERS=$(($(wc -l < "$SCEN/register-users.csv") - 1))

# a UDP port bound by anyone on this machine (shared machines: never collide)
udp_port_busy() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v h=":$hex" 'NR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
		/proc/net/udp /proc/net/udp6 2>/dev/null
}

# kernel UDP receive-buffer drops: on the sockets bound to port $1 (the
# "drops" column of /proc/net/udp*), and machine-wide (Udp RcvbufErrors)
udp_sock_drops() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v h=":$hex" 'NR > 1 && substr($2, length($2) - 4) == h { d += $NF } END { print d + 0 }' \
		/proc/net/udp /proc/net/udp6 2>/dev/null
}
# drops at the UDP sockets of the server (SERVER_PIDS and their children)
# that are not bound to port $1: a proxy's ng client sockets
server_other_udp_drops() {
	local hex p f inodes=""
	hex=$(printf '%04X' "$1")
	for p in $SERVER_PIDS $(awk -v s=" $SERVER_PIDS " 'index(s, " " $4 " ") { print $1 }' /proc/[0-9]*/stat 2>/dev/null); do
		for f in /proc/"$p"/fd/*; do
			f=$(readlink "$f" 2>/dev/null) || continue
			case "$f" in socket:\[*\]) f=${f#socket:[}; inodes="$inodes ${f%]}" ;; esac
		done
	done
	awk -v h=":$hex" -v ino=" $inodes " 'FNR > 1 && substr($2, length($2) - 4) != h && index(ino, " " $10 " ") { d += $NF } END { print d + 0 }' \
		/proc/net/udp /proc/net/udp6 2>/dev/null
}
udp_rcvbuf_errors() {
	awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c + 0 }' /proc/net/snmp
}

# ---------- CPU accounting ----------
# Per-process counters (utime+stime from /proc/PID/stat) are used: on this VM
# the machine-wide tick counters in /proc/stat miss most of the short bursts
# of a SIP load and read far too low.
# proc_snapshot FILE: one "pid ppid ticks" line per process
proc_snapshot() {
	local f line pid rest ppid ut st
	for f in /proc/[0-9]*/stat; do
		{ read -r line < "$f"; } 2>/dev/null || continue
		pid=${line%% *}
		rest=${line##*) }
		# rest: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
		read -r _ ppid _ _ _ _ _ _ _ _ _ ut st _ <<< "$rest"
		echo "$pid $ppid $((ut + st))"
	done > "$1"
}
# cpu_split SNAP0 SNAP1: prints "server_ticks other_ticks" between the two
# snapshots: server = SERVER_PIDS and their direct children; other = every
# other process alive in both snapshots (other programs sharing the machine),
# this script itself excluded
cpu_split() {
	awk -v srv=" $SERVER_PIDS " -v self="$$" '
		NR == FNR { t0[$1] = $3; next }
		{
			d = ($1 in t0) ? $3 - t0[$1] : 0
			if (index(srv, " " $1 " ") || index(srv, " " $2 " ")) s += ($1 in t0) ? d : $3
			else if ($1 != self && ($1 in t0)) o += d
		}
		END { printf "%d %d\n", s, o }' "$1" "$2"
}
# ticks of this shell's reaped children: the SIPp processes
child_ticks() {
	local line rest
	read -r line < /proc/$$/stat
	rest=${line##*) }
	# fields after comm: ... utime(12) stime(13) cutime(14) cstime(15)
	read -r _ _ _ _ _ _ _ _ _ _ _ _ _ cut cst _ <<< "$rest"
	echo $((cut + cst))
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---------- SIPp result parsing ----------
# value of a column (by header name) in the last line of a SIPp stat file
stat_col() {
	awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
		{ last = $0 } END { if (!c || last == "") { print 0; exit } n = split(last, a, ";"); print a[c] + 0 }' "$1"
}
# seconds SIPp took to create its first $2 calls, from the per-second rows
# of its stat file (interpolated between the two rows around the n-th call)
creation_secs() {
	awk -F';' -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "CurrentTime") t = i; if ($i == "TotalCallCreated") c = i } next }
		{ k = split($t, a, "\t"); now = a[k] + 0; cr = $c + 0
		  if (t0 == "") t0 = now
		  if (cr >= n && !done) { done = 1; x = (cr > pc) ? pt + (n - pc) / (cr - pc) * (now - pt) : now; printf "%.2f\n", x - t0; exit }
		  pt = now; pc = cr }
		END { if (!done) print -1 }' "$1"
}
# p50 p90 p99 max (ms) of response time number $2 in the SIPp rtt file(s)
rtt_pct() {
	local rtd=$1
	shift
	cat "$@" 2>/dev/null | awk -F';' -v r="$rtd" '$3 + 0 == r && $2 ~ /^[0-9.]+$/ { print $2 }' |
		sort -g | awk '{ v[NR] = $1 } END {
			if (NR == 0) { print "- - - -"; exit }
			i50 = int(NR * 0.50 + 0.999999); i90 = int(NR * 0.90 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
			printf "%.2f %.2f %.2f %.2f\n", v[i50], v[i90], v[i99], v[NR] }'
}

# a SIPp time for humans: "0.00" -> "<4" (under one clock tick)
fmt_ms() {
	case "$1" in
	0|0.00) echo "<${CLOCK_RES_MS%.0}" ;;
	*) echo "${1%.00}" ;;
	esac
}

mkdir -p "$OUT" || die "cannot create $OUT"
SUMMARY=$OUT/summary.txt
STEPS_CSV=$OUT/steps.csv
[ -f "$STEPS_CSV" ] || echo "scenario;step;target_rate;calls;created;ok;failed_uac;failed_uas;retrans;wall_s;achieved_rate;p50_ms;p90_ms;p99_ms;max_ms;server_cpu_pct;sipp_cpu_pct;other_cpu_pct;total_cpu_pct;udp_drops_server;udp_drops_other;verdict" > "$STEPS_CSV"

log() { echo "$*" | tee -a "$SUMMARY"; }

# stop a process we started: by PID only, gently first
stop_pid() {
	local pid=$1 sig i
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	for sig in USR1 TERM KILL; do
		kill -"$sig" "$pid" 2>/dev/null
		for i in $(seq 1 30); do
			kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
			sleep 0.1
		done
	done
	wait "$pid" 2>/dev/null
}
STARTED_PIDS=""
cleanup() {
	local p
	for p in $STARTED_PIDS; do stop_pid "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------- one SIPp run ----------
# run_sipp DIR NAME ARGS... : starts SIPp in DIR in the background, sets
# SIPP_PID.  SIPp's own -timeout bounds it; wait_sipp adds a hard deadline.
run_sipp() {
	local dir=$1 name=$2
	shift 2
	(cd "$dir" && exec sipp "$@" -nostdin -buff_size "$SIPP_BUFF" \
		-trace_stat -stf "$name-stat.csv" -fd 1 \
		-trace_screen -screen_file "$name-screen.log" \
		-trace_err -error_file "$name-errors.log" -max_log_size 2000000 \
		-trace_rtt -rtt_freq 100 \
		> "$dir/$name-stdout.log" 2>&1) &
	SIPP_PID=$!
	STARTED_PIDS="$STARTED_PIDS $SIPP_PID"
}
forget_pid() { STARTED_PIDS=$(echo " $STARTED_PIDS " | sed "s/ $1 / /"); }
# wait_sipp PID SECONDS : wait for it; past the deadline stop it (USR1 =
# SIPp's soft exit, then TERM, KILL).  Returns SIPp's exit code, 124 if stopped.
wait_sipp() {
	local pid=$1 deadline=$(($(date +%s) + $2)) rc
	while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		stop_pid "$pid"
		rc=124
	else
		wait "$pid"
		rc=$?
	fi
	forget_pid "$pid"
	return $rc
}

# ---------- registration pass (contacts -> UAS address) ----------
preregister() {
	local dir=$OUT/call/preregister n ok
	mkdir -p "$dir"
	udp_port_busy "$UAC_REG_PORT" && die "UDP port $UAC_REG_PORT busy"
	run_sipp "$dir" uac "$TARGET" -sf "$SCEN/register.xml" -inf "$SCEN/register-users.csv" \
		-i "$LOCAL_IP" -p "$UAC_REG_PORT" -key domain "$DOMAIN" \
		-key contact_host "$LOCAL_IP:$UAS_PORT" -key expires 3600 \
		-r "$PREREG_RATE" -m "$NUSERS" -timeout $((NUSERS / (PREREG_RATE > 0 ? PREREG_RATE : 1) + 30))s \
		-default_behaviors all,-bye
	wait_sipp "$SIPP_PID" $((NUSERS / (PREREG_RATE > 0 ? PREREG_RATE : 1) + 40))
	ok=$(stat_col "$dir/uac-stat.csv" "SuccessfulCall(C)")
	log "  pre-registration: $ok/$NUSERS users registered with Contact $LOCAL_IP:$UAS_PORT"
	[ "$ok" -eq "$NUSERS" ]
}

# ---------- one load step ----------
# step SCENARIO INDEX RATE -> sets STEP_PASS=1/0
step() {
	local scen=$1 idx=$2 rate=$3
	local n=$((rate * STEP_SECS))
	local dir=$OUT/$scen/step$idx-r$rate
	local limit=$((rate * (5 + HOLD_MS / 1000) + 100))
	local uas_pid="" t0 t1 ct0 ct1 c0 c1 rc
	mkdir -p "$dir"

	local sd0 sd1 md0 md1 ng0=0 ng1=0 nc0=0 nc1=0
	sd0=$(udp_sock_drops "$TARGET_PORT"); md0=$(udp_rcvbuf_errors)
	if [ -n "$NG_PORT" ]; then ng0=$(udp_sock_drops "$NG_PORT"); nc0=$(server_other_udp_drops "$TARGET_PORT"); fi
	proc_snapshot "$dir/.cpu0"; t0=$(now_ms); ct0=$t0; c0=$(child_ticks)
	if [ "$scen" = register ]; then
		udp_port_busy "$UAC_REG_PORT" && die "UDP port $UAC_REG_PORT busy"
		run_sipp "$dir" uac "$TARGET" -sf "$SCEN/register.xml" -inf "$SCEN/register-users.csv" \
			-i "$LOCAL_IP" -p "$UAC_REG_PORT" -key domain "$DOMAIN" \
			-key contact_host "$LOCAL_IP:$UAS_PORT" -key expires 3600 \
			-r "$rate" -rp 1000 -m "$n" -l "$limit" -recv_timeout 15000 \
			-timeout $((STEP_SECS * 2 + 30))s -default_behaviors all,-bye
	else
		udp_port_busy "$UAS_PORT" && die "UDP port $UAS_PORT busy"
		udp_port_busy "$UAC_CALL_PORT" && die "UDP port $UAC_CALL_PORT busy"
		run_sipp "$dir" uas -sf "$SCEN/uas-call.xml" -i "$LOCAL_IP" -p "$UAS_PORT" \
			-m "$n" -recv_timeout 15000 -timeout $((STEP_SECS * 2 + HOLD_MS / 1000 + 40))s
		uas_pid=$SIPP_PID
		sleep 0.5
		t0=$(now_ms)
		run_sipp "$dir" uac "$TARGET" -sf "$SCEN/uac-call.xml" -inf "$SCEN/call-users.csv" \
			-i "$LOCAL_IP" -p "$UAC_CALL_PORT" -key domain "$DOMAIN" -d "$HOLD_MS" \
			-r "$rate" -rp 1000 -m "$n" -l "$limit" -recv_timeout 15000 \
			-timeout $((STEP_SECS * 2 + HOLD_MS / 1000 + 30))s
	fi
	wait_sipp "$SIPP_PID" $((STEP_SECS * 2 + HOLD_MS / 1000 + 45)); rc=$?
	t1=$(now_ms)
	if [ -n "$uas_pid" ]; then
		# the UAS ends by itself after n calls (+2 s time-wait); else stop it
		wait_sipp "$uas_pid" 5
	fi
	c1=$(child_ticks); proc_snapshot "$dir/.cpu1"; ct1=$(now_ms)
	sd1=$(udp_sock_drops "$TARGET_PORT"); md1=$(udp_rcvbuf_errors)
	if [ -n "$NG_PORT" ]; then ng1=$(udp_sock_drops "$NG_PORT"); nc1=$(server_other_udp_drops "$TARGET_PORT"); fi
	# UDP datagrams dropped by the kernel: at the server socket / elsewhere
	# (SIPp's sockets, or other programs)
	local srv_drops=$((sd1 - sd0)) other_drops
	[ "$srv_drops" -ge 0 ] || srv_drops=0
	other_drops=$((md1 - md0 - srv_drops)); [ "$other_drops" -ge 0 ] || other_drops=0

	# ---- numbers ----
	local st=$dir/uac-stat.csv
	local created ok uac_failed failed retr uas_failed=0 uas_retr=0
	created=$(stat_col "$st" "TotalCallCreated")
	ok=$(stat_col "$st" "SuccessfulCall(C)")
	uac_failed=$(stat_col "$st" "FailedCall(C)")
	retr=$(stat_col "$st" "Retransmissions(C)")
	# calls that never completed (SIPp stopped by a timeout) count as failed
	local missing=$((n - ok - uac_failed))
	[ "$missing" -gt 0 ] && uac_failed=$((uac_failed + missing))
	if [ -n "$uas_pid" ]; then
		# the callee side counts too: its failures and 200 OK retransmissions
		uas_failed=$(stat_col "$dir/uas-stat.csv" "FailedCall(C)")
		uas_retr=$(stat_col "$dir/uas-stat.csv" "Retransmissions(C)")
		retr=$((retr + uas_retr))
	fi
	failed=$((uac_failed + uas_failed))

	local wall_ms=$((t1 - t0))
	local wall_s achieved csecs
	wall_s=$(awk -v w="$wall_ms" 'BEGIN { printf "%.2f", w / 1000 }')
	# the rate SIPp really kept: calls created / time taken to create them
	csecs=$(creation_secs "$st" "$n")
	achieved=$(awk -v n="$n" -v c="$csecs" 'BEGIN { if (c <= 0) print 0; else printf "%.0f", (n - 1) / c }')
	local pct p50 p90 p99 pmax
	pct=$(rtt_pct 1 "$dir"/*_rtt.csv)
	read -r p50 p90 p99 pmax <<< "$pct"
	local srv_pct sipp_pct other_pct total_pct srv_t oth_t
	read -r srv_t oth_t <<< "$(cpu_split "$dir/.cpu0" "$dir/.cpu1")"
	rm -f "$dir/.cpu0" "$dir/.cpu1"
	read -r srv_pct sipp_pct other_pct total_pct <<< "$(awk -v s="$srv_t" -v c="$((c1 - c0))" -v o="$oth_t" \
		-v w="$((ct1 - ct0))" -v hz="$CLK_TCK" 'BEGIN {
		sec = w / 1000; if (sec <= 0) sec = 1
		f = 100 / hz / sec
		printf "%.0f %.0f %.0f %.0f\n", s * f, c * f, o * f, (s + c + o) * f }')"

	# ---- verdict ----
	STEP_PASS=1
	local why=""
	[ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && { STEP_PASS=0; why="$why timeout"; }
	[ $((failed * 1000000)) -lt $((FAIL_PPM * n)) ] || { STEP_PASS=0; why="$why failed"; }
	[ $((retr * 1000000)) -lt $((FAIL_PPM * n)) ] || { STEP_PASS=0; why="$why retrans"; }
	# SIPp must have kept the asked rate: all n calls created within 105 %
	# of the step time (+ 0.5 s); stragglers are judged as failed calls
	awk -v c="$csecs" -v s="$STEP_SECS" 'BEGIN { exit !(c >= 0 && c <= s * 1.05 + 0.5) }' || { STEP_PASS=0; why="$why slow"; }
	local verdict=PASS
	[ "$STEP_PASS" -eq 1 ] || verdict="FAIL(${why# })"

	local ngtxt=""
	# rtpengine's ng socket / the server's ng client sockets (its answers)
	[ -n "$NG_PORT" ] && ngtxt="  ng drops $((ng1 - ng0))/$((nc1 - nc0))"
	printf '  step %d %6d/s  calls %6d ok %6d failed %5s retrans %5s  wall %5ss  p50 %4s p99 %5s ms  cpu%%: server %3s sipp %3s other %3s  udp drops %s/%s%s  %s\n' \
		"$idx" "$rate" "$n" "$ok" "$uac_failed+$uas_failed" "$retr" "$wall_s" "$(fmt_ms "$p50")" "$(fmt_ms "$p99")" "$srv_pct" "$sipp_pct" "$other_pct" "$srv_drops" "$other_drops" "$ngtxt" "$verdict" | tee -a "$SUMMARY"
	echo "$scen;$idx;$rate;$n;$created;$ok;$uac_failed;$uas_failed;$retr;$wall_s;$achieved;$p50;$p90;$p99;$pmax;$srv_pct;$sipp_pct;$other_pct;$total_pct;$srv_drops;$other_drops;$verdict" >> "$STEPS_CSV"
	[ "$KEEP_RAW" = 1 ] || rm -f "$dir"/*_rtt.csv
	if [ -n "$STEP_HOOK" ]; then
		STEP_SERVER_PIDS="$SERVER_PIDS" $STEP_HOOK "$scen" "$idx" "$rate" "$dir" 2>&1 | sed 's/^/    /' | tee -a "$SUMMARY"
	fi
}

# round to a "nice" rate
nice_rate() {
	local r=$1
	if [ "$r" -ge 2000 ]; then r=$(((r + 50) / 100 * 100))
	elif [ "$r" -ge 200 ]; then r=$(((r + 5) / 10 * 10))
	fi
	[ "$r" -ge 1 ] || r=1
	echo "$r"
}

# ---------- search ----------
search() {
	local scen=$1 rate=$2 lo=0 hi=0 i=1
	local best_line=""
	log ""
	log "== $scen: start $rate/s, $STEP_SECS s per step, at most $MAX_STEPS steps, pass = failed and retransmissions < $FAIL_PPM ppm =="
	while [ "$i" -le "$MAX_STEPS" ]; do
		step "$scen" "$i" "$rate"
		if [ "$STEP_PASS" -eq 1 ]; then
			lo=$rate
			best_line=$(tail -n 1 "$STEPS_CSV")
		else
			hi=$rate
		fi
		local next
		if [ "$hi" -eq 0 ]; then
			[ "$lo" -ge "$MAX_RATE" ] && break
			next=$((lo * 2)); [ "$next" -gt "$MAX_RATE" ] && next=$MAX_RATE
		elif [ "$lo" -eq 0 ]; then
			next=$(nice_rate $((hi / 4)))
		else
			# stop when the bracket is within BISECT_PCT %
			[ $(((hi - lo) * 100)) -le $((hi * BISECT_PCT)) ] && break
			next=$(nice_rate $(((lo + hi) / 2)))
			{ [ "$next" -le "$lo" ] || [ "$next" -ge "$hi" ]; } && break
		fi
		rate=$next
		i=$((i + 1))
		[ "$i" -le "$MAX_STEPS" ] || break
		# let the server drain between steps; after a failed step, wait until
		# its transactions have timed out (SIP timer F = 32 s for calls) so
		# that none of its late retransmissions reach the next step's SIPp
		if [ "$STEP_PASS" -eq 1 ]; then
			sleep 2
		elif [ "$scen" = call ]; then
			log "  (cool-down ${COOLDOWN_FAIL_CALL}s after a failed step)"
			sleep "$COOLDOWN_FAIL_CALL"
		else
			sleep "$COOLDOWN_FAIL_REG"
		fi
	done
	if [ -n "$best_line" ]; then
		local r p50 p99 srv sp oth
		r=$(cut -d';' -f3 <<< "$best_line"); p50=$(cut -d';' -f12 <<< "$best_line"); p99=$(cut -d';' -f14 <<< "$best_line")
		srv=$(cut -d';' -f16 <<< "$best_line"); sp=$(cut -d';' -f17 <<< "$best_line"); oth=$(cut -d';' -f18 <<< "$best_line")
		local unit="REGISTER/s (complete 401+200 registrations)"
		[ "$scen" = call ] && unit="calls/s (INVITE/407/ACK/INVITE/180/200/ACK/BYE/200)"
		local failtxt=""
		[ "$hi" -gt 0 ] && failtxt="; lowest failing rate $hi/s"
		log "RESULT $scen: highest passing rate $r $unit; p50 $(fmt_ms "$p50") ms, p99 $(fmt_ms "$p99") ms; CPU (% of one core, $NCPU cores): server ${srv}, SIPp ${sp}, other processes ${oth}$failtxt"
		[ "$hi" -eq 0 ] && log "  (no failing step found: the limit is above $lo/s, or MAX_STEPS/MAX_RATE stopped the search)"
	else
		log "RESULT $scen: no passing step (lowest tried rate failed)"
	fi
}

log "run-load.sh $(date -u +%Y-%m-%dT%H:%M:%SZ): target $TARGET domain $DOMAIN users $NUSERS, $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1), ${NCPU} CPUs, server pids:${SERVER_PIDS:- none}"
log "  failed = caller+callee side; retrans = SIPp retransmissions; p50/p99 = SIPp response time 1 (ms, SIPp's"
log "  coarse clock: multiples of ${CLOCK_RES_MS} ms, 0 = under one tick); cpu% = % of one core;"
log "  udp drops = datagrams the kernel dropped at the server socket / at other sockets"
[ -n "$NG_PORT" ] && log "  ng drops = dropped at rtpengine's ng socket (port $NG_PORT) / at the server's other UDP sockets (its ng client)"
for s in $SCENARIOS; do
	case "$s" in
	register) search register "$REG_START_RATE" ;;
	call)
		log ""
		log "== call: registering every user at $LOCAL_IP:$UAS_PORT first =="
		if preregister; then
			search call "$CALL_START_RATE"
		else
			log "RESULT call: skipped, the registration pass failed (see $OUT/call/preregister)"
		fi
		;;
	*) die "unknown scenario $s" ;;
	esac
done
log ""
log "steps: $STEPS_CSV"
