#!/bin/bash
# redis-script-bench.sh - what the ratelimit state script costs redis-server
#
# Usage: bench/redis-script-bench.sh [--rounds N] [--seconds S]
#                                    [--workers N] [XMILTERD...]
#
#   --rounds N    rounds (3); in each round every XMILTERD binary runs once,
#                 in turn (alternating, so a busy neighbour hurts all alike)
#   --seconds S   measured seconds of each run (4)
#   --workers N   daemon.workers (8)
#   XMILTERD...   daemons to compare (default: this build's xmilterd); an
#                 older build's binary copied aside gives a before/after
#                 in the same run
#   CONFIG=counting in the environment: every budget so high that nothing
#   is exceeded (as bench/ratelimit-bench.sh's counting run) instead of the default budgets (a flood: most events score,
#   strike and get blocked)
#
# Each run: a redis-server of its own on a free loopback port (no
# persistence), xmilterd with guard + rules (bench/rules-50.cf) +
# ratelimit on that Redis, pinned to CPU 0, bench/xmload on CPU 1 at full
# speed (4 connections, 64 requests in flight each). After the load:
# INFO commandstats (reset just before the load) and INFO cpu. Prints per
# run: stanzas/s, EVALSHA calls per stanza and its usec_per_call, each
# command inside the script in calls per stanza, and redis-server's CPU
# (user+sys) per stanza, and with perf(1) its user-space instructions
# per stanza (counted, so a busy machine does not disturb it); then the
# medians per binary. Figures, not
# pass/fail.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
. "$top_srcdir/bench/lib.sh"

ROUNDS=3 SECS=4 WORKERS=8
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift ;;
	--seconds) SECS=$2; shift ;;
	--workers) WORKERS=$2; shift ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	-*) echo "redis-script-bench.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
bench_setup redis-script-bench.sh
DAEMONS=("$@")
[ ${#DAEMONS[@]} -gt 0 ] || DAEMONS=("$XMILTERD")
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server)}
REDIS_CLI=${REDIS_CLI:-$(command -v redis-cli)}
# perf stat counts redis-server's user-space instructions per stanza (a
# figure a busy machine does not disturb); PERF= turns it off
PERF=${PERF-$(command -v perf)}
if [ -n "$PERF" ] && ! "$PERF" stat -e instructions:u true >/dev/null 2>&1; then
	PERF=
fi

make -C "$top_builddir" -s xmilterd xmilter bench/xmload >/dev/null 2>&1 ||
	die "build failed (make xmilterd xmilter bench/xmload)"
[ -x "$REDIS_SERVER" ] && [ -x "$REDIS_CLI" ] ||
	die "redis-server / redis-cli not found"
for d in "${DAEMONS[@]}"; do [ -x "$d" ] || die "$d: not executable"; done

TMP=$(bench_tmp xmilter-rsbench) || die "mktemp"
DPID= RPID=
cleanup() { bench_stop "$DPID"; bench_stop "$RPID"; bench_done; }
bench_traps cleanup

# free_port - a loopback TCP port nobody listens on
free_port() {
	local p
	while :; do
		p=$((30000 + RANDOM % 30000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# cpu_s - redis-server's used CPU (user + sys) in seconds
cpu_s() {
	"$REDIS_CLI" -p "$1" INFO cpu | tr -d '\r' | awk -F: \
		'/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.6f", s }'
}

# one_run DAEMON INDEX - one measured run; appends "INDEX sps usec eps cpu"
# to $TMP/results and prints the run's line
one_run() {
	local d=$1 idx=$2 port out stanzas sps c0 c1 stats
	# a port free when probed may be taken before redis-server binds it:
	# then another one
	for try in 1 2 3 4 5; do
		port=$(free_port)
		"$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' \
			--appendonly no >"$TMP/redis.log" 2>&1 &
		RPID=$!
		for _ in $(seq 100); do
			"$REDIS_CLI" -p "$port" PING >/dev/null 2>&1 && break 2
			kill -0 "$RPID" 2>/dev/null || break
			sleep 0.05
		done
		kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; RPID=
		[ "$try" = 5 ] && die "redis-server did not start: $(tail -3 "$TMP/redis.log")"
	done
	{
		say "daemon:"
		say "  socket: $TMP/sock"
		say "  quarantine_dir: $TMP/q"
		say "  log_level: warning"
		say "  log_file: $TMP/d.log"
		say "  log_verdicts: false"
		say "  workers: $WORKERS"
		say "actions:"
		say "  quarantine: none"
		say "filters:"
		say "  guard:"
		say "    enabled: true"
		say "  rules:"
		say "    enabled: true"
		say "    files: [$RULES]"
		say "  ratelimit:"
		say "    enabled: true"
		say "    redis: redis://127.0.0.1:$port"
		if [ "${CONFIG:-}" = counting ]; then
			for l in account ip prefix domain network stranger young \
			    subscription invite file; do
				say "    ${l}_rate: 1e8"
				say "    ${l}_burst: 100000000"
			done
			say "    fanout_max: 1000"
			say "    fanout_stranger_max: 1000"
			say "    outbreak_senders: 1000"
			say "    outbreak_recipients: 1000"
			say "    outbreak_fanout: 1000"
		fi
	} >"$TMP/r.yml"
	rm -f "$TMP/sock"
	$PIN_D "$d" -c "$TMP/r.yml" 2>"$TMP/d.err" &
	DPID=$!
	for _ in $(seq 200); do
		"$XMILTER" health -s "$TMP/sock" -t 1 >/dev/null 2>&1 && break
		sleep 0.05
	done
	"$XMILTER" health -s "$TMP/sock" -t 1 2>/dev/null | grep -q 'state=redis' ||
		die "$d: not counting in Redis ($("$XMILTER" health -s "$TMP/sock" -t 1 2>&1 | tr '\n' ' '))"
	"$REDIS_CLI" -p "$port" CONFIG RESETSTAT >/dev/null
	c0=$(cpu_s "$port")
	if [ -n "$PERF" ]; then
		"$PERF" stat -x, -e instructions:u -o "$TMP/perf" -p "$RPID" &
		PPID_=$!
	fi
	out=$($PIN_L "$XMLOAD" -s "$TMP/sock" -c "$CONNS" -w "$WINDOW" -d "$SECS" -W 1 \
		-p "$DPID" -q | grep '^xmload')
	c1=$(cpu_s "$port")
	ins=0
	if [ -n "$PERF" ]; then
		kill -INT "$PPID_"; wait "$PPID_" 2>/dev/null
		ins=$(awk -F, '/instructions/ { print $1 }' "$TMP/perf")
		case $ins in ''|*[!0-9]*) ins=0 ;; esac
	fi
	stats=$("$REDIS_CLI" -p "$port" INFO commandstats | tr -d '\r')
	kill "$DPID"; wait "$DPID" 2>/dev/null; DPID=
	kill "$RPID"; wait "$RPID" 2>/dev/null; RPID=
	stanzas=$(printf '%s\n' "$out" | tr ' ' '\n' | sed -n 's/^answered=//p')
	sps=$(printf '%s\n' "$out" | tr ' ' '\n' | sed -n 's/^stanzas_per_s=//p')
	[ -n "$stanzas" ] && [ "$stanzas" -gt 0 ] 2>/dev/null ||
		die "no stanzas measured ($d): $out"
	printf '%s\n' "$stats" | awk -F'[:,=]' -v n="$stanzas" -v sps="$sps" \
	    -v c0="$c0" -v c1="$c1" -v ins="$ins" -v i="$idx" -v d="$(basename "$d")" \
	    -v res="$TMP/results" '
		/^cmdstat_/ {
			name = substr($1, 9); calls = $3; usec = $7
			if (name == "evalsha") { ev = calls; evu = usec; next }
			if (name ~ /[|]/ || name ~ /^(config|info|ping|script|select|client|hello|command)$/)
				next
			inner = inner sprintf(" %s=%.2f", name, calls / n)
			tot += calls
		}
		END {
			cpu = (c1 - c0) * 1e6 / n
			printf "%-16s %8.0f stanzas/s  evalsha %.2f/stanza %.2f us/call  inner %.2f/stanza:%s  redis-server %.1f us CPU/stanza",
			    d, sps, ev / n, evu, tot / n, inner, cpu
			if (ins > 0)
				printf ", %.0f instructions/stanza", ins / n
			printf "\n"
			printf "%d %s %s %s %s %.0f\n", i, sps, evu, tot / n, cpu, ins / n >> res
		}'
}

# median - of the numbers on stdin
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-";
		else if (NR % 2) print v[(NR + 1) / 2];
		else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

say "# $(date -u '+%Y-%m-%d %H:%M:%S UTC')  $(uptime | sed 's/.*load/load/')"
say "# ${ROUNDS} rounds x ${SECS}s, workers ${WORKERS}, config ${CONFIG:-flood}"
: >"$TMP/results"
for r in $(seq "$ROUNDS"); do
	for i in "${!DAEMONS[@]}"; do
		one_run "${DAEMONS[$i]}" "$i"
	done
done
say "# medians"
for i in "${!DAEMONS[@]}"; do
	printf '%-40s %8s stanzas/s  evalsha %s us/call  inner %s/stanza  redis-server %s us CPU/stanza  %s instructions/stanza\n' \
	    "${DAEMONS[$i]}" \
	    "$(awk -v i="$i" '$1 == i { print $2 }' "$TMP/results" | median)" \
	    "$(awk -v i="$i" '$1 == i { print $3 }' "$TMP/results" | median)" \
	    "$(awk -v i="$i" '$1 == i { print $4 }' "$TMP/results" | median)" \
	    "$(awk -v i="$i" '$1 == i { print $5 }' "$TMP/results" | median)" \
	    "$(awk -v i="$i" '$1 == i { print $6 }' "$TMP/results" | median)"
done
say "# $(uptime | sed 's/.*load/load/')"
