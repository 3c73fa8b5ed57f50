# bench/lib.sh - helpers the benchmark scripts share (sourced, not run;
# top_srcdir and top_builddir must be set first)
#
#   bench_setup NAME  after option parsing: say/die (die names NAME), the
#                    defaults DAEMON_CPU (0), LOAD_CPU (1), CONNS (4) and
#                    WINDOW (64) unless the environment sets them, the
#                    programs XMILTERD, XMILTER, XMLOAD and the 50 rules
#                    RULES, and PIN_D/PIN_L: taskset prefixes pinning the
#                    daemon and the load (empty on one CPU or without
#                    taskset; BENCH_PINNED=0 then)
#   bench_tmp PREFIX a new directory PREFIX.XXXXXX under $BENCH_TMP, else
#                    /dev/shm, else $TMPDIR or /tmp
#   median N...      the median of the numbers (the mean of the middle two
#                    for an even count, not rounded)
#   field LINE NAME  the value of NAME=value in a line of key=value words
#   cpu_ticks PID    user + system clock ticks the process has used so far
#   bench_stop PID [SIG]  signal PID (TERM) and reap it; nothing if PID
#                    is empty
#   bench_done       keep $TMP (KEEP=1: say where) or remove it
#   bench_traps FN   run FN on exit, and exit 130 on INT and TERM

bench_setup() {
	BENCH_NAME=$1
	DAEMON_CPU=${DAEMON_CPU:-0}
	LOAD_CPU=${LOAD_CPU:-1}
	CONNS=${CONNS:-4}
	WINDOW=${WINDOW:-64}
	XMILTERD=$top_builddir/xmilterd
	XMILTER=$top_builddir/xmilter
	XMLOAD=$top_builddir/bench/xmload
	RULES=$top_srcdir/bench/rules-50.cf
	PIN_D="" PIN_L="" BENCH_PINNED=0
	if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
		PIN_D="taskset -c $DAEMON_CPU" PIN_L="taskset -c $LOAD_CPU"
		BENCH_PINNED=1
	fi
}
say() { printf '%s\n' "$*"; }
die() { printf '%s: %s\n' "${BENCH_NAME:-bench}" "$*" >&2; exit 1; }

bench_tmp() {
	local base=${BENCH_TMP:-/dev/shm}
	[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
	mktemp -d "$base/$1.XXXXXX"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
		if (NR % 2) print a[(NR+1)/2]
		else printf "%.10g\n", (a[NR/2] + a[NR/2+1]) / 2 }'
}
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
bench_stop() {
	[ -n "$1" ] || return 0
	kill -"${2:-TERM}" "$1" 2>/dev/null && wait "$1" 2>/dev/null
	return 0
}
bench_done() {
	if [ "${KEEP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
bench_traps() {
	# shellcheck disable=SC2064
	trap "$1" EXIT
	trap 'exit 130' INT TERM
}
