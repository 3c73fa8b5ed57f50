#!/bin/bash
# prosody-bench.sh - messages/s through Prosody with and without the
# xmilter glue, side by side, in alternating slices
#
# Usage: bench/prosody-bench.sh [--pairs N] [--window W] [--slice S]
#                               [--rounds R] [--aa] [--keep]
#                               [--glue-dir DIR] [--glue-option LINE]...
#                               [--quiet-wait S]
#
#   --pairs N    senders and receivers per server (20)
#   --window W   undelivered messages each sender may have (8)
#   --slice S    seconds per slice, the first second not counted (5)
#   --rounds R   rounds; each runs one slice on each server (6)
#   --aa         A/A calibration: the second Prosody runs without the glue
#                too, so the ratio shows the method's own noise
#   --keep       keep the temporary directory (configs, logs)
#   --glue-dir DIR      load mod_xmilter.lua from DIR instead of
#                server-glue/prosody (to measure a changed copy)
#   --glue-option LINE  a line for the glue server's global section, e.g.
#                'xmilter_roster = false' (repeatable)
#   --quiet-wait S      wait up to S seconds (60) for other processes to
#                leave the CPUs alone before measuring; the CPU they used
#                during the run is reported as "background"
#
# Two Prosody instances (same version, same modules) listen on 127.0.0.1,
# one with mod_xmilter (server-glue/prosody) talking to an xmilterd that
# runs the benchmark rules (bench/rules-50.cf + guard), one without.
# Prosody A, Prosody B and xmilterd are pinned together to SERVER_CPU (0);
# bench/xmpp-load runs on LOAD_CPU (1). xmpp-load alternates 5 s slices
# between the two and prints each slice's delivered messages/s and the
# median ratio with/without (target >= 90 %).
#
# Environment: SERVER_CPU, LOAD_CPU, BENCH_TMP (parent of the temporary
# directory, default /dev/shm), PROSODY, PROSODYCTL, LOG_VERDICTS (1:
# the daemon logs one line per verdict, its default; 0: off).
# Everything started here is stopped on exit (trap).

set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}

PAIRS=20 WINDOW=8 SLICE=5 ROUNDS=6 AA=0 KEEP=0 GLUE_DIR='' GLUE_OPTS=() QUIET_WAIT=60
while [ $# -gt 0 ]; do
	case $1 in
	--pairs) PAIRS=$2; shift ;;
	--window) WINDOW=$2; shift ;;
	--slice) SLICE=$2; shift ;;
	--rounds) ROUNDS=$2; shift ;;
	--aa) AA=1 ;;
	--keep) KEEP=1 ;;
	--glue-dir) GLUE_DIR=$(cd "$2" && pwd) || exit 2; shift ;;
	--glue-option) GLUE_OPTS+=("$2"); shift ;;
	--quiet-wait) QUIET_WAIT=$2; shift ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "prosody-bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LOG_VERDICTS=${LOG_VERDICTS:-1}
PROSODY=${PROSODY:-$(command -v prosody || echo /usr/bin/prosody)}
PROSODYCTL=${PROSODYCTL:-$(command -v prosodyctl || echo /usr/bin/prosodyctl)}
XMILTERD=$top_builddir/xmilterd
XMILTER=$top_builddir/xmilter
XMPPLOAD=$top_builddir/bench/xmpp-load
RULES=$top_srcdir/bench/rules-50.cf
GLUE_DIR=${GLUE_DIR:-$top_srcdir/server-glue/prosody}
PASS=bench

say() { printf '%s\n' "$*"; }
die() { printf 'prosody-bench.sh: %s\n' "$*" >&2; exit 1; }

[ -x "$PROSODY" ] || die "prosody not found (apt-get install prosody)"
[ -f "$GLUE_DIR/mod_xmilter.lua" ] || die "no $GLUE_DIR/mod_xmilter.lua"

# ---- build ----
if [ ! -f "$top_builddir/Makefile" ]; then
	(cd "$top_srcdir" && { [ -x configure ] || autoreconf -fi; } &&
	    ./configure) >/dev/null || die "configure failed"
fi
buildlog=$(mktemp)
make -C "$top_builddir" -s xmilterd xmilter bench/xmpp-load >"$buildlog" 2>&1 ||
	{ cat "$buildlog" >&2; rm -f "$buildlog"; die "build failed"; }
rm -f "$buildlog"

if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	PIN_S="taskset -c $SERVER_CPU" PIN_L="taskset -c $LOAD_CPU"
else
	PIN_S="" PIN_L=""
	say "warning: fewer than 2 CPUs or no taskset: nothing pinned" >&2
fi

# ---- temporary directory, processes, cleanup ----
base=${BENCH_TMP:-/dev/shm}
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
TMP=$(mktemp -d "$base/xmilter-pbench.XXXXXX") || die "mktemp failed"
chmod 755 "$TMP"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	PIDS=()
	if [ "$KEEP" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p=$1
	while port_busy "$p"; do p=$((p + 1)); done
	echo "$p"
}
wait_port() {
	for _ in $(seq 200); do port_busy "$1" && return 0; sleep 0.05; done
	return 1
}
cpu_seconds() {   # utime+stime of PID and its threads, in seconds
	awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); print ($12 + $13) / hz}' \
	    "/proc/$1/stat" 2>/dev/null || echo 0
}

# ---- xmilterd ----
SOCK=$TMP/xmilterd.sock
cat >"$TMP/xmilterd.yml" <<EOF
# written by bench/prosody-bench.sh
daemon:
  socket: $SOCK
  socket_mode: "0666"
  quarantine_dir: $TMP/quarantine
  log_level: info
  log_file: $TMP/xmilterd.log
  log_verdicts: $([ "$LOG_VERDICTS" = 1 ] && echo true || echo false)
filters:
  guard:
    enabled: true
  rules:
    enabled: true
    files: [$RULES]
  # measured on its own by bench/ratelimit-bench.sh
  ratelimit:
    enabled: false
EOF
$PIN_S "$XMILTERD" -c "$TMP/xmilterd.yml" 2>"$TMP/xmilterd.stderr" &
DPID=$!
PIDS+=("$DPID")
for _ in $(seq 100); do
	"$XMILTER" health -s "$SOCK" -t 1 >/dev/null 2>&1 && break
	sleep 0.05
done
"$XMILTER" health -s "$SOCK" -t 1 >/dev/null 2>&1 || die "xmilterd did not start"

# ---- two Prosody instances ----
# prosody_config NAME DOMAIN PORT GLUE(yes|no)
prosody_config() {
	local dir=$TMP/$1 mods='"roster"; "saslauth"; "disco"; "ping";'
	mkdir -p "$dir/data" "$dir/certs"
	[ "$4" = yes ] && mods="$mods \"xmilter\";"
	{
		echo "-- written by bench/prosody-bench.sh"
		[ "$(id -u)" = 0 ] && echo "run_as_root = true"
		cat <<EOF
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
plugin_paths = { "$GLUE_DIR" }
certificates = "$dir/certs"
log = { { levels = { min = "warn" }, to = "file", filename = "$dir/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_ports = { $3 }
s2s_ports = { }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
modules_enabled = { $mods }
modules_disabled = { "offline"; "tls" }
xmilter_socket = "$SOCK"
EOF
		if [ "$4" = yes ]; then
			for l in "${GLUE_OPTS[@]}"; do echo "$l"; done
		fi
		printf '\nVirtualHost "%s"\n' "$2"
	} >"$dir/prosody.cfg.lua"
}

PORT_A=$(free_port 25222)
PORT_B=$(free_port $((PORT_A + 1)))
DOM_A=plain.localhost
if [ "$AA" = 1 ]; then
	DOM_B=plain2.localhost GLUE_B=no LABEL_B=without2
else
	DOM_B=glue.localhost GLUE_B=yes LABEL_B=with
fi
prosody_config a "$DOM_A" "$PORT_A" no
prosody_config b "$DOM_B" "$PORT_B" "$GLUE_B"

say "== Prosody with/without xmilter ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
say "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)," \
    "$(uname -sr); Prosody $(dpkg-query -W -f '${Version}' prosody 2>/dev/null || echo '?')" \
    "+ xmilterd on CPU $SERVER_CPU, xmpp-load on CPU $LOAD_CPU"
say "registering $((4 * PAIRS)) accounts..."
for n in $(seq "$PAIRS"); do
	for u in s r; do
		"$PROSODYCTL" --config "$TMP/a/prosody.cfg.lua" register "$u$n" "$DOM_A" "$PASS" >/dev/null 2>&1 ||
			die "prosodyctl register failed on A"
		"$PROSODYCTL" --config "$TMP/b/prosody.cfg.lua" register "$u$n" "$DOM_B" "$PASS" >/dev/null 2>&1 ||
			die "prosodyctl register failed on B"
	done
done

# started under timeout: a Prosody that hangs must not outlive us
LIFETIME=$(( 120 + ROUNDS * 2 * (SLICE + 6) ))
# prosody_start NAME PORT - start it under timeout; sets STARTED to the pid
# of the real prosody process (timeout is its parent)
prosody_start() {
	local tpid
	$PIN_S timeout "$LIFETIME" "$PROSODY" --config "$TMP/$1/prosody.cfg.lua" -F \
	    >"$TMP/$1/prosody.out" 2>&1 &
	tpid=$!
	PIDS+=("$tpid")
	wait_port "$2" || { tail -20 "$TMP/$1/prosody.out" "$TMP/$1/prosody.log" >&2;
	    die "prosody $1 did not start"; }
	STARTED=$(pgrep -P "$tpid" | head -n1)
	[ -n "$STARTED" ] || die "prosody $1: no process under timeout"
}
prosody_start a "$PORT_A"
PROS_A=$STARTED
prosody_start b "$PORT_B"
PROS_B=$STARTED

if [ "$GLUE_B" = yes ]; then
	# the glue connects at start-up (HELLO) or on the first stanza
	for _ in $(seq 60); do
		grep -q 'HELLO from' "$TMP/xmilterd.log" 2>/dev/null && break
		sleep 0.05
	done
	if grep -q 'HELLO from' "$TMP/xmilterd.log"; then
		say "glue: $(grep -m1 'HELLO from' "$TMP/xmilterd.log" | sed 's/.*HELLO from/HELLO from/')"
	else
		say "glue: no HELLO yet (it may connect on the first stanza)"
	fi
fi

# wait (up to QUIET_WAIT s) for other processes to leave the CPUs alone
busy_seconds() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit}' /proc/stat; }
ours() { awk -v a="$(cpu_seconds "$PROS_A")" -v b="$(cpu_seconds "$PROS_B")" -v d="$(cpu_seconds "$DPID")" 'BEGIN {print a + b + d}'; }
waited=0
while :; do
	b0=$(busy_seconds) o0=$(ours); sleep 1; b1=$(busy_seconds) o1=$(ours)
	busy=$(awk -v b0="$b0" -v b1="$b1" -v o0="$o0" -v o1="$o1" 'BEGIN {printf "%d", (b1 - b0 - (o1 - o0)) * 100}')
	[ "$busy" -lt 10 ] && break
	[ "$waited" -ge "$QUIET_WAIT" ] && { say "(machine still busy: others use ${busy}% of a core; measuring anyway)"; break; }
	[ "$waited" = 0 ] && say "(others use ${busy}% of a core: waiting up to ${QUIET_WAIT} s)"
	waited=$((waited + 1))
done
T0=$(date +%s.%N) BUSY0=$(busy_seconds) OURS0=$(ours)
CPU_A0=$(cpu_seconds "$PROS_A") CPU_B0=$(cpu_seconds "$PROS_B") CPU_D0=$(cpu_seconds "$DPID")
V0=$(grep -c ' verdict id=' "$TMP/xmilterd.log" 2>/dev/null)
$PIN_L "$XMPPLOAD" -A "without:127.0.0.1:$PORT_A:$DOM_A" \
    -B "$LABEL_B:127.0.0.1:$PORT_B:$DOM_B" -n "$PAIRS" -w "$WINDOW" \
    -s "$SLICE" -r "$ROUNDS" -p "$PASS" -P "prosodyA=$PROS_A" -P "prosodyB=$PROS_B" \
    -P "xmilterd=$DPID" | tee "$TMP/xmpp-load.out"
rc=${PIPESTATUS[0]}
CPU_A1=$(cpu_seconds "$PROS_A") CPU_B1=$(cpu_seconds "$PROS_B") CPU_D1=$(cpu_seconds "$DPID")
T1=$(date +%s.%N) BUSY1=$(busy_seconds) OURS1=$(ours)
SELF=$(sed -n 's/.* self_cpu_s=\([0-9.]*\).*/\1/p' "$TMP/xmpp-load.out" | tail -n1)
BG=$(awk -v t0="$T0" -v t1="$T1" -v b0="$BUSY0" -v b1="$BUSY1" -v o0="$OURS0" \
    -v o1="$OURS1" -v s="${SELF:-0}" 'BEGIN {f = (b1 - b0 - (o1 - o0) - s) / (t1 - t0) * 100; if (f < 0) f = 0; printf "%.0f", f}')
V1=$(grep -c ' verdict id=' "$TMP/xmilterd.log" 2>/dev/null)

LAST=$(grep '^xmpp_load ' "$TMP/xmpp-load.out" | tail -n1)
say "== summary"
say "  CPU seconds during the run: prosody A $(awk -v a="$CPU_A0" -v b="$CPU_A1" 'BEGIN{printf "%.1f", b-a}')," \
    "prosody B $(awk -v a="$CPU_B0" -v b="$CPU_B1" 'BEGIN{printf "%.1f", b-a}')," \
    "xmilterd $(awk -v a="$CPU_D0" -v b="$CPU_D1" 'BEGIN{printf "%.1f", b-a}');" \
    "background (other processes) ${BG}% of a core"
if [ "$GLUE_B" = yes ]; then
	if [ "$LOG_VERDICTS" = 1 ]; then
		say "  verdicts logged by xmilterd: $((V1 - V0))" \
		    "($(grep ' verdict id=' "$TMP/xmilterd.log" | grep -o 'action=[a-z]*' | sort | uniq -c | tr -s ' ' | tr '\n' ' '))"
	fi
	grep -E 'error|warn' "$TMP/b/prosody.log" 2>/dev/null | tail -n 5 | sed 's/^/  prosody B log: /'
fi
if [ -z "$LAST" ] || [ "$rc" != 0 ]; then
	say "  xmpp-load failed (exit $rc); logs in $TMP (use --keep)"
	tail -n 5 "$TMP"/b/prosody.log "$TMP"/xmilterd.log 2>/dev/null | sed 's/^/  /'
	exit 1
fi
lf() { printf '%s\n' "$LAST" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
RATIO=$(lf ratio_median_pct)
say "  delivered/s (median of $ROUNDS slices): without $(lf without_median_per_s)," \
    "$LABEL_B $(lf "${LABEL_B}_median_per_s")"
say "  CPU per delivered message (median, us): without: Prosody" \
    "$(lf without_cpu_us_per_msg_prosodyA); $LABEL_B: Prosody" \
    "$(lf "${LABEL_B}_cpu_us_per_msg_prosodyB") + xmilterd" \
    "$(lf "${LABEL_B}_cpu_us_per_msg_xmilterd")"
if awk -v r="$RATIO" 'BEGIN {exit !(r + 0 >= 90)}'; then met=met; else met="NOT met"; fi
say "  median ratio $LABEL_B/without: $RATIO %   (target >= 90 %: $met)"
exit 0
