#!/bin/bash
# ratelimit-bench.sh - what the ratelimit filter costs: throughput with it
# off, on (memory), and on with Redis, in the same run; plus memory per
# tracked sender (bench/statemem)
#
# Usage: bench/ratelimit-bench.sh [--reps N] [--seconds S] [--workers N]
#                                 [--senders N] [--keep]
#
#   --reps N      rounds of (off, counting, memory, redis), medians
#                 reported (3)
#   --seconds S   measured seconds of each max-throughput run (5)
#   --workers N   daemon.workers in every configuration (4): with Redis
#                 the filter runs on the worker pool, one connection and
#                 one round trip per event per worker
#   --senders N   senders for bench/statemem (1000000; 0 skips it)
#   --keep        keep the temporary directory
#   MODES="memory redis" in the environment runs only those configurations
#   (the ratio lines then need the ones they divide)
#
# Each run: xmilterd with guard + rules (bench/rules-50.cf) and ratelimit
#   off       not in the chain
#   counting  on (memory), every budget so high that nothing is exceeded:
#             the cost of counting normal traffic
#   memory    on (memory), default budgets: the load's few thousand
#             senders at full speed exceed them, so most events score,
#             strike and get blocked (the cost under a flood)
#   redis     the same on Redis (a redis-server started here on
#             loopback, no persistence)
#   rcounting counting, on Redis: every event runs its whole batch there
# driven by bench/xmload at
# full speed (CONNS connections, WINDOW requests in flight each) with the
# stanza mix of bench/stanzamix.h. Pinned like bench/run.sh: the daemon on
# DAEMON_CPU (0), xmload on LOAD_CPU (1), and redis-server on REDIS_CPU
# (the load's CPU by default: Redis stands for another machine, so it must
# not take the daemon's CPU; REDIS_CPU= leaves it unpinned).
# Every other round runs the modes in reverse order (a drift of the
# machine's speed favours no mode). Prints one line per run, each
# round's own ratios (counting/off, memory/off, redis/memory,
# rcounting/counting) with their median, min and max, then medians and
# the ratios of the medians. Figures, not pass/fail.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
. "$top_srcdir/bench/lib.sh"

REPS=3 SECS=5 WORKERS=4 SENDERS=1000000 KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	--reps) REPS=$2; shift ;;
	--seconds) SECS=$2; shift ;;
	--workers) WORKERS=$2; shift ;;
	--senders) SENDERS=$2; shift ;;
	--keep) KEEP=1 ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "ratelimit-bench.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
bench_setup ratelimit-bench.sh
REDIS_CPU=${REDIS_CPU-$LOAD_CPU}
STATEMEM=$top_builddir/bench/statemem
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server)}

make -C "$top_builddir" -s xmilterd xmilter bench/xmload bench/statemem \
	>/dev/null 2>&1 || die "build failed (make xmilterd bench/xmload bench/statemem)"
[ -x "$REDIS_SERVER" ] || die "redis-server not found"

PIN_R=""
[ "$BENCH_PINNED" = 1 ] && PIN_R=${REDIS_CPU:+taskset -c $REDIS_CPU}

TMP=$(bench_tmp xmilter-rlbench) || die "mktemp failed"
SOCK=$TMP/xmilterd.sock
DPID= RPID=
cleanup() { bench_stop "$DPID"; bench_stop "$RPID"; bench_done; }
bench_traps cleanup

# a free loopback port for Redis
port=$(( 41000 + $$ % 9000 ))
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
$PIN_R "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
	>"$TMP/redis.log" 2>&1 &
RPID=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.05
done

# write_config FILE MODE - MODE off | memory | redis
write_config() {
	{
		cat <<EOF
# written by bench/ratelimit-bench.sh ($2)
daemon:
  socket: $SOCK
  quarantine_dir: $TMP/quarantine
  log_level: warning
  log_file: $TMP/xmilterd.log
  log_verdicts: false
  workers: $WORKERS
# no quarantine: its spool writes (fsync) would be what is measured once
# budgets are exceeded
actions:
  quarantine: none
filters:
  guard:
    enabled: true
  rules:
    enabled: true
    files: [$RULES]
  ratelimit:
EOF
		case $2 in
		off) echo "    enabled: false" ;;
		memory) echo "    enabled: true" ;;
		counting|rcounting)
			# every operation runs, no budget is ever exceeded: the
			# cost of counting normal traffic
			echo "    enabled: true"
			for b in account ip prefix domain network stranger young \
			    subscription invite file; do
				printf '    %s_rate: 1e8\n    %s_burst: 100000000\n' "$b" "$b"
			done
			# fan-out and campaign thresholds high, but sets still
			# capped (a set stops growing at its threshold + 1)
			printf '    fanout_max: 1000\n    fanout_stranger_max: 1000\n'
			printf '    outbreak_senders: 1000\n    outbreak_recipients: 1000\n'
			printf '    outbreak_fanout: 1000\n'
			[ "$2" = rcounting ] &&
				printf '    redis: redis://127.0.0.1:%s\n' "$port" ;;
		redis) printf '    enabled: true\n    redis: redis://127.0.0.1:%s\n' "$port" ;;
		esac
	} >"$1"
}

daemon_start() {
	$PIN_D "$XMILTERD" -c "$1" 2>>"$TMP/xmilterd.stderr" &
	DPID=$!
	# rule compilation takes seconds on a busy machine
	for _ in $(seq 600); do
		"$XMILTER" health -s "$SOCK" -t 1 >/dev/null 2>&1 && return 0
		kill -0 "$DPID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$TMP/xmilterd.stderr" "$TMP/xmilterd.log" >&2
	die "xmilterd did not start"
}
# redis_flush - empty the benchmark's redis-server (a run must not find
# the blocks and counters of the one before it)
redis_flush() {
	local line
	exec 3<>"/dev/tcp/127.0.0.1/$port" || die "cannot reach redis-server"
	printf '*1\r\n$8\r\nFLUSHALL\r\n' >&3
	IFS= read -r line <&3
	exec 3>&-
	case $line in +OK*) ;; *) die "FLUSHALL: $line" ;; esac
}
daemon_stop() {
	[ -n "$DPID" ] || return 0
	kill -TERM "$DPID" 2>/dev/null
	wait "$DPID" 2>/dev/null
	DPID=
}

declare -A THR P99 CPU
say "ratelimit throughput: $REPS rounds of ${MODES:-off counting memory redis rcounting}, ${SECS}s each," \
    "$CONNS connections x $WINDOW in flight, workers=$WORKERS, $(nproc) CPUs," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
ALL_MODES=${MODES:-off counting memory redis rcounting}
REV_MODES=$(printf '%s\n' $ALL_MODES | tac | tr '\n' ' ')
declare -A RT
for r in $(seq "$REPS"); do
	# every other round runs the modes in reverse order, so that a drift
	# of the machine's speed within a round favours no mode
	order=$ALL_MODES
	[ $((r % 2)) = 0 ] && order=$REV_MODES
	for mode in $order; do
		write_config "$TMP/$mode.yml" "$mode"
		redis_flush   # every run starts from empty counters, as in memory
		daemon_start "$TMP/$mode.yml"
		r0=$(cpu_ticks "$RPID")
		line=$($PIN_L "$XMLOAD" -s "$SOCK" -c "$CONNS" -w "$WINDOW" \
		    -d "$SECS" -W 1 -p "$DPID" -q 2>/dev/null | grep '^xmload ')
		r1=$(cpu_ticks "$RPID")
		daemon_stop
		t=$(field "$line" stanzas_per_s)
		# redis-server's CPU per stanza over the measured run and its
		# warm-up (what the scripts cost the server; 0 off Redis)
		rcpu=$(awk -v a="$r0" -v b="$r1" -v hz="$(getconf CLK_TCK)" \
		    -v n="$(field "$line" stanzas)" -v s="$SECS" -v t="$t" 'BEGIN {
			n = t * (s + 1); if (n <= 0) { print 0; exit }
			printf "%.1f", (b - a) / hz * 1e6 / n }')
		THR[$mode]="${THR[$mode]:-} $t"
		P99[$mode]="${P99[$mode]:-} $(field "$line" p99_us)"
		CPU[$mode]="${CPU[$mode]:-} $(field "$line" daemon_us_per_stanza)"
		RT[$r,$mode]=$t
		say "  round $r $mode: $t stanzas/s, p99 $(field "$line" p99_us) us," \
		    "daemon $(field "$line" daemon_us_per_stanza) us CPU/stanza," \
		    "redis-server ~$rcpu us CPU/stanza," \
		    "lost $(field "$line" lost), reject $(field "$line" reject)"
	done
done
# per_round A B - the ratio A/B (%) of each round that ran both, one
# line: the rounds' ratios, their median, min and max
per_round() {
	local r v=""
	for r in $(seq "$REPS"); do
		[ -n "${RT[$r,$1]:-}" ] && [ -n "${RT[$r,$2]:-}" ] || continue
		v="$v $(awk -v a="${RT[$r,$1]}" -v b="${RT[$r,$2]}" \
		    'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print 0 }')"
	done
	[ -n "$v" ] || return 0
	# shellcheck disable=SC2086
	say "per round $1/$2 (%):$v; median $(median $v)," \
	    "min $(printf '%s\n' $v | sort -g | head -n1)," \
	    "max $(printf '%s\n' $v | sort -g | tail -n1)"
}
per_round counting off
per_round memory off
per_round redis memory
per_round rcounting counting
# shellcheck disable=SC2086
{
	rcnt=$(median ${THR[rcounting]:-0}) crcnt=$(median ${CPU[rcounting]:-0})
	off=$(median ${THR[off]:-0}) cnt=$(median ${THR[counting]:-0})
	mem=$(median ${THR[memory]:-0}) red=$(median ${THR[redis]:-0})
	coff=$(median ${CPU[off]:-0}) ccnt=$(median ${CPU[counting]:-0})
	cmem=$(median ${CPU[memory]:-0}) cred=$(median ${CPU[redis]:-0})
	say "median stanzas/s: off $off, counting $cnt, memory $mem, redis $red," \
	    "rcounting $rcnt"
	say "median daemon CPU us/stanza: off $coff, counting $ccnt, memory $cmem," \
	    "redis $cred, rcounting $crcnt"
	say "median p99 us: off $(median ${P99[off]:-0}), counting" \
	    "$(median ${P99[counting]:-0}), memory $(median ${P99[memory]:-0})," \
	    "redis $(median ${P99[redis]:-0}), rcounting $(median ${P99[rcounting]:-0})"
	awk -v o="$off" -v c="$cnt" -v m="$mem" -v r="$red" -v co="$coff" \
	    -v cc="$ccnt" -v cm="$cmem" -v cr="$cred" -v rc="$rcnt" \
	    -v crc="$crcnt" 'BEGIN {
		# a ratio only where both sides ran (MODES may leave some out)
		if (o > 0 && c > 0) printf "throughput counting/off: %.1f %% (target >= 90 %%)\n", 100 * c / o
		if (o > 0 && m > 0) printf "throughput memory/off: %.1f %% (the flood)\n", 100 * m / o
		if (m > 0 && r > 0) printf "throughput redis/memory: %.1f %% (target >= 50 %%)\n", 100 * r / m
		if (c > 0 && rc > 0) printf "throughput rcounting/counting: %.1f %% (the same, nothing over budget)\n", 100 * rc / c
		if (cc > 0 && cm > 0 && cr > 0) printf "by CPU per stanza (less sensitive to a busy machine): counting/off %.1f %%, memory/off %.1f %%, redis/memory %.1f %%\n", 100 * co / cc, 100 * co / cm, 100 * cm / cr
		if (crc > 0 && cc > 0) printf "by CPU per stanza: rcounting/counting %.1f %%\n", 100 * cc / crc }'
}
if [ "$SENDERS" -gt 0 ]; then
	say "memory per tracked sender ($SENDERS senders, bench/statemem):"
	"$STATEMEM" -n "$SENDERS" | grep -v '^statemem '
fi
