#!/bin/bash
# links-bench.sh - the link reputation benchmarks (docs/PERFORMANCE.md,
# section "Link reputation")
#
# Usage: bench/links-bench.sh [--reps N] [--seconds S] [--domains N]
#                             [--rate R] [--link-rate R] [--keep]
#                             [--only 1|2]
#
# 1. Throughput: xmilterd with guard + rules (bench/rules-50.cf) and the
#    links filter off, then on with a local block list of --domains
#    (100000) domains, protected names and every heuristic; rounds
#    alternate off/on (--reps, default 3, --seconds each, default 5) and
#    the medians and their ratio (on / off) are printed.
# 2. DNS look-ups never block the event loop: link-less messages at a
#    fixed --rate (default 3000/s) with, beside them, messages with links
#    at --link-rate (default 4/s); once with the dnsbl filter off, once
#    with it on and its DNS server a black hole (a UDP socket that never
#    answers: every look-up waits the whole 2 s timeout on a worker).
#    A third run lets every worker wait (backoff 0, max_waiting 4).
#    The link-less p50/p99 of the runs and their ratios are printed.
#
# Environment: DAEMON_CPU (0), LOAD_CPU (1) as in bench/run.sh; CONNS (4),
# WINDOW (64). Figures, not pass/fail: exit 0 when the runs completed.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
. "$top_srcdir/bench/lib.sh"

REPS=3 SECS=5 NDOM=100000 RATE=3000 LRATE=4 KEEP=0 PARTS=12
while [ $# -gt 0 ]; do
	case $1 in
	--reps) REPS=$2; shift ;;
	--seconds) SECS=$2; shift ;;
	--domains) NDOM=$2; shift ;;
	--rate) RATE=$2; shift ;;
	--link-rate) LRATE=$2; shift ;;
	--keep) KEEP=1 ;;
	--only) PARTS=$2; shift ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "links-bench.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
bench_setup links-bench.sh

make -C "$top_builddir" -s xmilterd xmilter bench/xmload >/dev/null 2>&1 ||
	die "build failed (make xmilterd xmilter bench/xmload)"

TMP=$(bench_tmp xmilter-links-bench) || die "mktemp failed"
DPID= BHPID=
cleanup() { bench_stop "$DPID"; bench_stop "$BHPID"; bench_done; }
bench_traps cleanup
SOCK=$TMP/xmilterd.sock

# the block list: NDOM made-up domains plus the mix's scam hosts
awk -v n="$NDOM" 'BEGIN { for (i = 0; i < n - 2; i++)
	printf "spam%06d-%x.example\n", i, i * 2654435761 % 4294967296;
	print "example-cdn.top"; print "verify-account.example" }' >"$TMP/block.list"

# write_config FILE LINKS DNSBL - guard + rules, links and dnsbl as asked
write_config() {
	cat >"$1" <<EOF
daemon:
  socket: $SOCK
  quarantine_dir: $TMP/quarantine
  log_level: warning
  log_file: $TMP/xmilterd.log
  log_verdicts: false
  workers: 4
filters:
  guard:
    enabled: true
  rules:
    enabled: true
    files: [$RULES]
  links:
    enabled: $2
    block_files: [$TMP/block.list]
    protected_domains: [paypal.com, example.org, example.com]
  dnsbl:
    enabled: $3
    zones: [multi.test.bl]
    servers: [127.0.0.1:${BHPORT:-53}]
    timeout: 2s
${4:-}
EOF
}

daemon_start() {
	rm -f "$SOCK"
	$PIN_D "$XMILTERD" -c "$1" 2>>"$TMP/xmilterd.stderr" &
	DPID=$!
	for _ in $(seq 600); do
		"$XMILTER" health -s "$SOCK" -t 1 >/dev/null 2>&1 && return 0
		kill -0 "$DPID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$TMP/xmilterd.stderr" >&2
	die "xmilterd did not start"
}
daemon_stop() {
	[ -n "$DPID" ] || return 0
	kill -TERM "$DPID" 2>/dev/null
	wait "$DPID" 2>/dev/null
	DPID=
}

# ---- 1. throughput, links off and on, alternating ----
if [[ $PARTS == *1* ]]; then
say "== links throughput: guard + rules-50, links off vs on ($NDOM-domain block list)"
write_config "$TMP/off.yml" false false
write_config "$TMP/on.yml" true false
OFF=() ON=() OFFC=() ONC=()
for i in $(seq "$REPS"); do
	for mode in off on; do
		daemon_start "$TMP/$mode.yml"
		rss0=$(awk '/VmRSS/ {print $2}' "/proc/$DPID/status")
		$PIN_L "$XMLOAD" -s "$SOCK" -p "$DPID" -c "$CONNS" -w "$WINDOW" \
			-d "$SECS" -W 1 >"$TMP/x.out" 2>"$TMP/x.err"
		x=$(grep '^xmload ' "$TMP/x.out" | tail -n1)
		[ -n "$x" ] || { cat "$TMP/x.err" >&2; die "xmload failed"; }
		daemon_stop
		if [ $mode = off ]; then OFF+=("$(field "$x" stanzas_per_s)")
			OFFC+=("$(field "$x" daemon_us_per_stanza)"); else
			ON+=("$(field "$x" stanzas_per_s)")
			ONC+=("$(field "$x" daemon_us_per_stanza)")
			blk=$(grep -c . "$TMP/x.out")
			LSYM=$(grep -Eo 'LINKS_[A-Z_]+[ =:]+[0-9]+' "$TMP/x.out" | tr '\n' ' ')
		fi
		say "  round $i links $mode: $(field "$x" stanzas_per_s)/s," \
		    "p99 $(field "$x" p99_us) us (closed loop)," \
		    "RSS at start ${rss0} kB, high-water $(field "$x" hwm_kb) kB," \
		    "$(field "$x" daemon_us_per_stanza) us CPU/stanza"
	done
done
moff=$(median "${OFF[@]}") mon=$(median "${ON[@]}")
say "  median: off $moff/s, on $mon/s, on/off = $(awk -v a="$mon" -v b="$moff" 'BEGIN {printf "%.1f %%", 100 * a / b}')"
coff=$(printf '%s\n' "${OFFC[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
con=$(printf '%s\n' "${ONC[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
say "  median daemon CPU per stanza: off $coff us, on $con us: off/on = $(awk -v a="$coff" -v b="$con" 'BEGIN {printf "%.1f %%", 100 * a / b}') (the throughput ratio on an otherwise idle core)"
say "  link symbols in the last 'on' round: ${LSYM:-none}"

fi

# ---- 2. link-less latency while DNS look-ups hang ----
[[ $PARTS == *2* ]] || exit 0
say "== link-less latency at $RATE/s, links at $LRATE/s beside them: dnsbl off vs on with a DNS black hole"
BHPORT=$(( 40000 + $$ % 20000 ))
lua5.4 -e "local s = require'socket'.udp(); assert(s:setsockname('127.0.0.1', $BHPORT))
	while true do s:receivefrom() end" &
BHPID=$!
write_config "$TMP/dns-off.yml" true false
write_config "$TMP/dns-hole.yml" true true
# the worst case: no back-off, every worker may wait for DNS
write_config "$TMP/dns-hole-all.yml" true true "    backoff: 0s
    max_waiting: 4"
P99_dns_off=() P99_dns_hole=() P50_dns_off=() P50_dns_hole=()
P99_dns_hole_all=() P50_dns_hole_all=()
for i in $(seq "$REPS"); do
for mode in dns-off dns-hole dns-hole-all; do
	daemon_start "$TMP/$mode.yml"
	$PIN_L "$XMLOAD" -s "$SOCK" -c 1 -w 64 -r "$LRATE" -d "$SECS" -W 1 -D 5 \
		-L links >"$TMP/l.out" 2>"$TMP/l.err" &
	lpid=$!
	$PIN_L "$XMLOAD" -s "$SOCK" -p "$DPID" -c 2 -w 64 -r "$RATE" -d "$SECS" \
		-W 1 -L plain >"$TMP/p.out" 2>"$TMP/p.err"
	wait $lpid
	p=$(grep '^xmload ' "$TMP/p.out" | tail -n1)
	l=$(grep '^xmload ' "$TMP/l.out" | tail -n1)
	[ -n "$p" ] && [ -n "$l" ] || { cat "$TMP/p.err" "$TMP/l.err" >&2; die "xmload failed"; }
	daemon_stop
	fails=$(grep -Eo 'DNSBL_FAIL[ =:]+[0-9]+' "$TMP/l.out" | grep -Eo '[0-9]+$' | head -1)
	say "  round $i $mode: link-less p50 $(field "$p" p50_us) us, p99 $(field "$p" p99_us) us," \
	    "max $(field "$p" max_us) us ($(field "$p" measured) measured at" \
	    "$(field "$p" stanzas_per_s)/s); with links p50 $(field "$l" p50_us) us," \
	    "$(field "$l" measured) measured, DNSBL_FAIL ${fails:-0}"
	eval "P99_${mode//-/_}+=($(field "$p" p99_us))"
	eval "P50_${mode//-/_}+=($(field "$p" p50_us))"
done
done
a99=$(median "${P99_dns_hole[@]}") b99=$(median "${P99_dns_off[@]}")
a50=$(median "${P50_dns_hole[@]}") b50=$(median "${P50_dns_off[@]}")
c99=$(median "${P99_dns_hole_all[@]}") c50=$(median "${P50_dns_hole_all[@]}")
say "  median link-less p50: dns-off $b50 us, dns-hole $a50 us, dns-hole-all $c50 us;" \
    "p99: dns-off $b99 us, dns-hole $a99 us, dns-hole-all $c99 us"
say "  link-less p99 with every worker waiting for DNS / without DNS lists = $(awk -v a="$c99" -v b="$b99" 'BEGIN {printf "%.2f", a / b}')"
say "  link-less p99 with DNS hanging / without DNS lists = $(awk -v a="$a99" -v b="$b99" 'BEGIN {printf "%.2f", a / b}')"
