#!/bin/bash
# av.sh - the antivirus benchmark: xmilterd's scan throughput against a
# bare libclamav loop over the same files in the same run, the
# 50-recipient case with the result cache, and memory under 100 parallel
# in-band streams. Prints figures, not pass/fail (see docs/PERFORMANCE.md,
# "Antivirus").
#
# Usage: bench/av.sh [--reps N] [--files N] [--keep]   (or bench/run.sh --av)
#
#   --reps N    rounds of (baseline, daemon), medians reported (default 3)
#   --files N   files in the mixed set (default 120)
#   --keep      keep the temporary directory
#
# The mixed set, made here: random binaries from 1 KB to 2 MB, text,
# tar.gz archives of both, and the 44 files of clamav-testfiles (infected
# samples packed every way libclamav unpacks). The database: EICAR by
# SHA-256 and body pattern, clam.exe by MD5 (catches all 44 testfiles),
# plus every ClamAV database in /var/lib/clamav when there is one (then
# the figures are those of a real signature set). Both sides use the same
# engine settings and the same number of threads (the daemon's workers).
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
REPS=3 NFILES=120 KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	--reps) REPS=$2; shift ;;
	--files) NFILES=$2; shift ;;
	--keep) KEEP=1 ;;
	-h|--help) sed -n '2,/^set -u/s/^# \{0,1\}//p' "$0" | sed '$d'; exit 0 ;;
	*) echo "av.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
WORKERS=${WORKERS:-2}
XMILTERD=$top_builddir/xmilterd
AVSCAN=$top_builddir/bench/avscan

make -C "$top_builddir" -s xmilterd bench/avscan >/dev/null || exit 1
T=$(mktemp -d "${BENCH_TMP:-/tmp}/xm-avbench.XXXXXX") || exit 1
DPID=
cleanup() {
	[ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
	[ "$KEEP" = 1 ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT

# ---- the files and the database ----
mkdir -p "$T/files" "$T/db" "$T/pack"
sizes=(1024 4096 16384 65536 262144 1048576 2097152)
i=0
while [ $i -lt $((NFILES * 2 / 3)) ]; do
	s=${sizes[$((i % ${#sizes[@]}))]}
	if [ $((i % 3)) = 0 ]; then
		base64 -w 76 /dev/urandom | head -c "$s" >"$T/files/text$i.txt"
	else
		head -c "$s" /dev/urandom >"$T/files/bin$i.bin"
	fi
	i=$((i + 1))
done
while [ $i -lt "$NFILES" ]; do
	(cd "$T/files" && tar czf "$T/pack/arch$i.tar.gz" $(ls | shuf -n 4 --random-source=<(yes)))
	i=$((i + 1))
done
mv "$T"/pack/* "$T/files/"
cp /usr/share/clamav-testfiles/* "$T/files/" 2>/dev/null
printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$' 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' >"$T/eicar.com"
(cd "$T" && sigtool --sha256 eicar.com) >"$T/db/bench.hsb"
echo "Bench.Eicar.Body:0:*:$(printf 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE' | od -An -tx1 | tr -d ' \n')" >"$T/db/bench.ndb"
(cd /usr/share/clamav-testfiles && sigtool --md5 clam.exe) >"$T/db/bench.hdb" 2>/dev/null
sysdb=$(ls /var/lib/clamav/*.c[vl]d 2>/dev/null | wc -l)
[ "$sysdb" -gt 0 ] && cp /var/lib/clamav/*.c[vl]d "$T/db/"
nf=$(ls "$T/files" | wc -l)
mb=$(du -sm "$T/files" | cut -f1)
echo "files: $nf ($mb MB: random binaries, text, tar.gz archives, clamav-testfiles)"
echo "database: test signatures$( [ "$sysdb" -gt 0 ] && echo " + $sysdb system ClamAV files" || echo " only (no ClamAV databases in /var/lib/clamav)")"

# ---- the daemon ----
start_daemon() {  # $1: cache_entries
	cat >"$T/xmilterd.yml" <<EOF
daemon:
  socket: $T/xmilterd.sock
  quarantine_dir: $T/q
  workers: $WORKERS
  log_level: ${LOG_LEVEL:-warning}
  max_inflight: 4096
filters:
  guard:
    enabled: false
  rules:
    enabled: false
  antivirus:
    enabled: true
    database_dir: $T/db
    tmpdir: $T
    cache_entries: $1
    ibb_max_total: ${IBB_MAX_TOTAL:-256M}
EOF
	mkdir -p "$T/q"
	rm -f "$T/xmilterd.sock"
	"$XMILTERD" -c "$T/xmilterd.yml" >>"$T/xmilterd.log" 2>&1 &
	DPID=$!
	for _ in $(seq 200); do [ -S "$T/xmilterd.sock" ] && return 0; sleep 0.05; done
	echo "xmilterd did not start"; cat "$T/xmilterd.log"; exit 1
}
stop_daemon() { kill "$DPID"; wait "$DPID" 2>/dev/null; DPID=; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

echo
echo "== scan throughput: xmilterd (upload events, cache off) vs a bare libclamav loop, $WORKERS threads each"
# a fresh daemon per round: libclamav keeps its own cache of clean files
# per engine, which the bare loop (a new engine each run) never benefits
# from; a daemon scanning the same files again would
: >"$T/base" ; : >"$T/daem"
for r in $(seq "$REPS"); do
	"$AVSCAN" baseline -d "$T/db" -t "$WORKERS" "$T"/files/* | tee -a "$T/base"
	start_daemon 0
	"$AVSCAN" daemon -s "$T/xmilterd.sock" -w 32 -p "$DPID" "$T"/files/* | tee -a "$T/daem"
	stop_daemon
done
b=$(field mb_per_s <"$T/base" | median)
d=$(field mb_per_s <"$T/daem" | median)
bf=$(field files_per_s <"$T/base" | median)
df=$(field files_per_s <"$T/daem" | median)
bc=$(field mb_per_cpu_s <"$T/base" | median)
dc=$(field mb_per_cpu_s <"$T/daem" | median)
echo "median wall clock: baseline $b MB/s ($bf files/s), xmilterd $d MB/s ($df files/s): ratio $(awk -v a="$d" -v b="$b" 'BEGIN{printf "%.1f%%", 100*a/b}') (target >= 90%)"
echo "median per CPU second: baseline $bc MB, xmilterd $dc MB: ratio $(awk -v a="$dc" -v b="$bc" 'BEGIN{printf "%.1f%%", 100*a/b}') (the daemon's CPU time covers the protocol, parsing, hashing and reading too)"

echo
echo "== 50 recipients: one file to 50 contacts as in-band streams (256 KB in 4 KB chunks)"
head -c 262144 /dev/urandom >"$T/one.bin"
{ cat "$T/eicar.com"; head -c 262000 /dev/zero; } >"$T/one-infected.bin"
scans() { grep -c 'bytes scanned in' "$T/xmilterd.log"; }
hits() { grep -c 'cache hit' "$T/xmilterd.log"; }
for cache in 10000 0; do
	: >"$T/xmilterd.log"
	LOG_LEVEL=debug start_daemon $cache
	"$AVSCAN" fanout -s "$T/xmilterd.sock" -n 1 "$T/one.bin" >"$T/fan1"
	s1=$(scans)
	"$AVSCAN" fanout -s "$T/xmilterd.sock" -n 50 -c 4096 "$T/one.bin" | sed 's/^/   /' | tee "$T/fan-$cache"
	stop_daemon
	echo "   cache_entries $cache: the first stream took $s1 libclamav scans (its first chunk and checkpoints; at close the whole stream hits the cache or is scanned again);" \
		"50 more streams of the same file took $(( $(scans) - s1 )) scans and $(hits) cache hits"
done
echo "   (libclamav also remembers clean files per engine, so without our cache repeated clean scans are cheap too;"
echo "    ours also keeps infected and limits results, and survives reloads and engine rebuilds)"
: >"$T/xmilterd.log"
LOG_LEVEL=debug start_daemon 10000
"$AVSCAN" fanout -s "$T/xmilterd.sock" -n 50 "$T/one-infected.bin" | sed 's/^/   /'
stop_daemon
echo "   infected file to 50: $(scans) libclamav scan(s), $(hits) cache hits; every stream refused at its first chunk (rejected counts every refused chunk)"

echo
echo "== memory: 100 in-band streams open at once, 1 MB each, chunks interleaved"
start_daemon 10000
sleep 0.2
"$AVSCAN" streams -s "$T/xmilterd.sock" -n 100 -z 1048576 -p "$DPID" | tee "$T/streams"
stop_daemon
echo "   (the same with ibb_max_total: 32M: streams past the cap get AV_LIMITS, memory stays bounded)"
IBB_MAX_TOTAL=32M start_daemon 10000
sleep 0.2
"$AVSCAN" streams -s "$T/xmilterd.sock" -n 100 -z 1048576 -p "$DPID" | tee "$T/streams-capped"
stop_daemon
