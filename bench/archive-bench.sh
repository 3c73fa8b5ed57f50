#!/bin/bash
# archive-bench.sh - the compliance archive's cost and throughput: xmilterd
# with archiving off, then each sink in best-effort and must-archive modes,
# all in the same run, interleaved round by round; medians reported
#
# Usage: bench/archive-bench.sh [--reps N] [--seconds S] [--rate R] [--keep]
#                               [--only "off sqlite-be ..."]
#
#   --reps N      rounds (default 3); each round measures every mode once
#   --seconds S   measured seconds per measurement (default 5; 1 s warm-up)
#   --rate R      open loop at R stanzas/s instead of closed-loop maximum:
#                 then compare latency and the daemon's CPU per stanza
#   --only LIST   modes to run (default: all of off sqlite-be sqlite-must
#                 jsonl-be jsonl-must command-be pg-be pg-must; also
#                 sqlite-be-nice0: best-effort with the writer at the
#                 daemon's priority instead of nice 10; sqlite-be-nofsync,
#                 jsonl-be-nofsync: best-effort with fsync: false)
#   --keep        keep the temporary directory
#
# Every mode runs the same daemon configuration (guard + the 50 bench
# rules) under bench/xmload in closed loop (CONNS connections x WINDOW
# requests, default 4 x 64), the daemon pinned to DAEMON_CPU (0), the load
# to LOAD_CPU (1); the archive's writer threads share the daemon's core.
# Archive files go to BENCH_ARCHIVE_DIR (default /var/tmp: a real disk, so
# fsync costs what it costs; /dev/shm makes it free). PostgreSQL modes
# start a private server (initdb into the temporary directory, loopback).
#
# Printed per mode: filtered stanzas/s (median), p99 latency, the ratio to
# "off" measured in the same run, the daemon's CPU time per stanza (all
# its threads, writers included; from xmload -p), records the archive
# wrote per second (from the health counters), and best-effort overflow. Figures, not
# pass/fail: exit 0 when the runs completed.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
. "$top_srcdir/bench/lib.sh"
REPS=3 SECS=5 KEEP=0 RATE=0
MODES="off sqlite-be sqlite-must jsonl-be jsonl-must command-be pg-be pg-must"
while [ $# -gt 0 ]; do
	case $1 in
	--reps) REPS=$2; shift ;;
	--seconds) SECS=$2; shift ;;
	--rate) RATE=$2; shift ;;
	--only) MODES=$2; shift ;;
	--keep) KEEP=1 ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "archive-bench.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
bench_setup archive-bench.sh
PG_BINDIR=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}

make -C "$top_builddir" -s xmilterd xmilter bench/xmload >/dev/null 2>&1 || die "build failed"

base=${BENCH_ARCHIVE_DIR:-/var/tmp}
TMP=$(mktemp -d "$base/xmilter-abench.XXXXXX") || die "mktemp failed"
chmod 755 "$TMP"
SOCK=$TMP/xmilterd.sock
DPID= PGPID=
cleanup() { bench_stop "$DPID"; bench_stop "$PGPID" INT; bench_done; }
bench_traps cleanup

# ---- PostgreSQL, when a pg mode is asked for ----
PGINFO=
case " $MODES " in *" pg-"*)
	[ -x "$PG_BINDIR/postgres" ] || die "no PostgreSQL in $PG_BINDIR"
	mkdir -p "$TMP/pg"
	AS_PG=()
	if [ "$(id -u)" = 0 ]; then
		chown postgres: "$TMP/pg"
		AS_PG=(setpriv --reuid=postgres --regid=postgres --clear-groups)
	fi
	PGPORT=$(( 30000 + $$ % 20000 ))
	"${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$TMP/pg/data" -A trust -U xm --no-sync \
		>"$TMP/pg/initdb.log" 2>&1 || die "initdb failed"
	"${AS_PG[@]}" "$PG_BINDIR/postgres" -D "$TMP/pg/data" -k "$TMP/pg" \
		-c listen_addresses=127.0.0.1 -p "$PGPORT" >"$TMP/pg/log" 2>&1 &
	PGPID=$!
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PGPORT") 2>/dev/null && break; sleep 0.1; done
	PGINFO="host=127.0.0.1 port=$PGPORT user=xm dbname=postgres"
	;;
esac

# write_config MODE FILE - the daemon's configuration for one mode
write_config() {
	local mode=$1 type guarantee extra=""
	cat >"$2" <<EOF
daemon:
  socket: $SOCK
  quarantine_dir: $TMP/quarantine
  log_level: warning
  log_file: $TMP/xmilterd.log
  log_verdicts: false
filters:
  rules:
    files: [$RULES]
EOF
	[ "$mode" = off ] && return
	case $mode in
	sqlite-*) type=sqlite extra="      path: $TMP/archive-$mode-$ROUND.db" ;;
	jsonl-*) type=jsonl extra="      path: $TMP/chain-$mode-$ROUND" ;;
	command-*) type=command extra="      command: cat > /dev/null" ;;
	pg-*) type=postgresql extra="      conninfo: $PGINFO" ;;
	esac
	case $mode in *-must) guarantee=must-archive ;; *) guarantee=best-effort ;; esac
	case $mode in *-nice0) extra="$extra
      nice: 0" ;; esac
	case $mode in *-nofsync) extra="$extra
      fsync: false" ;; esac
	cat >>"$2" <<EOF
archive:
  node: bench
  sinks:
    - name: bench
      type: $type
      guarantee: $guarantee
$extra
EOF
}

# counter NAME - a number from the sink's health line
counter() { "$XMILTER" health -s "$SOCK" -t 2 2>/dev/null | sed -n "s/^archive=.* $1=\([0-9]*\).*/\1/p" | head -1; }

# measure MODE - one measurement; sets THR P99 CPU ARATE OVF
measure() {
	local cfg=$TMP/$1.yml w0 w1 t0 t1 out
	write_config "$1" "$cfg"
	rm -f "$SOCK"
	$PIN_D "$XMILTERD" -c "$cfg" 2>>"$TMP/xmilterd.stderr" &
	DPID=$!
	for _ in $(seq 400); do "$XMILTER" health -s "$SOCK" -t 1 >/dev/null 2>&1 && break; sleep 0.05; done
	w0=$(counter written) t0=$(date +%s.%N)
	if [ "$RATE" = 0 ]; then
		out=$($PIN_L "$XMLOAD" -s "$SOCK" -p "$DPID" -c "$CONNS" -w "$WINDOW" \
		    -d "$SECS" -W 1 -q 2>>"$TMP/xmload.err" | grep '^xmload ' | tail -1)
	else
		out=$($PIN_L "$XMLOAD" -s "$SOCK" -p "$DPID" -c 1 -w 1024 -r "$RATE" \
		    -d "$SECS" -W 1 -q 2>>"$TMP/xmload.err" | grep '^xmload ' | tail -1)
	fi
	w1=$(counter written) t1=$(date +%s.%N)
	OVF=$(counter overflow)
	kill -TERM "$DPID"; wait "$DPID" 2>/dev/null; DPID=
	THR=$(printf '%s\n' "$out" | tr ' ' '\n' | sed -n 's/^stanzas_per_s=//p')
	P99=$(printf '%s\n' "$out" | tr ' ' '\n' | sed -n 's/^p99_us=//p')
	CPU=$(printf '%s\n' "$out" | tr ' ' '\n' | sed -n 's/^daemon_us_per_stanza=//p')
	if [ "$1" = off ]; then ARATE=0; OVF=0; else
		ARATE=$(awk -v a="${w0:-0}" -v b="${w1:-0}" -v t0="$t0" -v t1="$t1" \
		    'BEGIN {printf "%.0f", (b - a) / (t1 - t0)}')
	fi
	: "${THR:=0}" "${P99:=0}" "${OVF:=0}" "${CPU:=0}"
	[ -n "$out" ] || echo "  ($1: no xmload result: $(tail -n2 "$TMP/xmload.err" | tr '\n' ' '))"
}

# median_ok - the median of the runs that completed (non-zero)
median_ok() { median $(printf '%s\n' "$@" | grep -v '^0$'); }

declare -A T P A O C
echo "archive-bench: $REPS rounds x ($MODES), $SECS s each, archive dir $base," \
	"daemon on CPU ${DAEMON_CPU}, load on CPU ${LOAD_CPU}, $(nproc) CPUs"
for ROUND in $(seq "$REPS"); do
	for m in $MODES; do
		measure "$m"
		T[$m]="${T[$m]:-} $THR" P[$m]="${P[$m]:-} $P99" A[$m]="${A[$m]:-} $ARATE" O[$m]="${O[$m]:-} $OVF" C[$m]="${C[$m]:-} $CPU"
		printf '  round %d %-15s %8s stanzas/s  p99 %7s us  cpu %5s us/stanza  archive %7s rec/s  overflow %s\n' \
		    "$ROUND" "$m" "$THR" "$P99" "$CPU" "$ARATE" "$OVF"
	done
done
off=$(median_ok ${T[off]:-0})
printf '\n%-15s %12s %10s %8s %12s %14s %10s\n' mode stanzas/s p99_us vs_off cpu_us/stz archive_rec/s overflow
for m in $MODES; do
	t=$(median_ok ${T[$m]})
	printf '%-15s %12s %10s %7s%% %12s %14s %10s\n' "$m" "$t" "$(median_ok ${P[$m]})" \
	    "$(awk -v a="$t" -v b="$off" 'BEGIN {if (b > 0) printf "%.0f", 100 * a / b; else print "-"}')" \
	    "$(median_ok ${C[$m]})" "$(median ${A[$m]})" "$(median ${O[$m]})"
done
