#!/bin/sh
# run.sh - protocol transcript tests: each cases/NAME.in (the bytes a glue
# sends on one connection) through tests/transcripts/transcript, compared
# byte for byte with the golden cases/NAME.out (what the daemon sends).
#
# usage: run.sh [--update] [NAME...]
#
# cases/NAME.args, when present, holds extra options for the runner (e.g.
# -d: answer at the end of the input, last first). Every case runs twice,
# fed all at once and one byte at a time: both must give the golden.
# --update rewrites the goldens from the current output: read the diff
# (git diff tests/transcripts/cases) before committing it.
# Prints "ok NAME" / "not ok NAME" (with a diff) per case and a closing
# "N passed, M failed" line; exits 1 when a case failed.
#
# top_srcdir / top_builddir (set by make check) locate the cases and the
# runner; by default both are the directory two levels up.

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "${top_srcdir:-$here/../..}" && pwd)
builddir=$(cd "${top_builddir:-$srcdir}" && pwd)
runner=$builddir/tests/transcripts/transcript
cases=$srcdir/tests/transcripts/cases
conf=$cases/xmilter.yml

update=0
if [ "$1" = "--update" ]; then
	update=1
	shift
fi

if [ ! -x "$runner" ]; then
	echo "run.sh: $runner is not built (make tests/transcripts/transcript)" >&2
	exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xm-transcripts.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ $# -gt 0 ]; then
	names=$*
else
	names=$(cd "$cases" && for f in *.in; do echo "${f%.in}"; done)
fi

pass=0
fail=0
for name in $names; do
	in=$cases/$name.in
	golden=$cases/$name.out
	args=
	[ -f "$cases/$name.args" ] && args=$(cat "$cases/$name.args")
	if [ ! -f "$in" ]; then
		echo "not ok $name (no $in)"
		fail=$((fail + 1))
		continue
	fi
	# shellcheck disable=SC2086
	if ! "$runner" -V TEST -c "$conf" $args "$in" > "$tmp/all" \
	    2> "$tmp/err"; then
		echo "not ok $name (runner failed)"
		sed 's/^/# /' "$tmp/err"
		fail=$((fail + 1))
		continue
	fi
	if [ $update = 1 ]; then
		cp "$tmp/all" "$golden"
		echo "updated $name"
		pass=$((pass + 1))
		continue
	fi
	# shellcheck disable=SC2086
	"$runner" -V TEST -c "$conf" -b 1 $args "$in" > "$tmp/bytes" 2>> "$tmp/err"
	if [ ! -f "$golden" ]; then
		echo "not ok $name (no golden $golden: run.sh --update $name)"
		fail=$((fail + 1))
	elif ! cmp -s "$golden" "$tmp/all"; then
		echo "not ok $name"
		diff -u "$golden" "$tmp/all" | sed 's/^/# /'
		fail=$((fail + 1))
	elif ! cmp -s "$golden" "$tmp/bytes"; then
		echo "not ok $name (fed one byte at a time)"
		diff -u "$golden" "$tmp/bytes" | sed 's/^/# /'
		fail=$((fail + 1))
	else
		echo "ok $name"
		pass=$((pass + 1))
	fi
done

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
