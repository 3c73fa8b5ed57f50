#!/bin/sh
# run.sh - tests of the `xmilter` command: check over the event fixtures
# (tests/fixtures/events), lint on good and bad configurations, and
# config-doc against the committed docs/CONFIGURATION.md.
#
# usage: run.sh [--update] [NAME...]
#
# A case is cases/NAME.cmd: one line of arguments to xmilter, where @SRC@
# is the source tree, @CASES@ tests/cli/cases and @FIX@
# tests/fixtures/events (no spaces in paths). cases/NAME.from, when
# present, names the file given on standard input (same placeholders).
# The golden cases/NAME.out holds standard output, then "--- stderr" and
# standard error, then "--- exit N"; the source tree's path is written
# @SRC@ in it. The extra case config-doc compares `xmilter config-doc`
# with docs/CONFIGURATION.md. --update rewrites the goldens (and that
# document): read the diff before committing it.
# Prints "ok NAME" / "not ok NAME" (with a diff) per case and a closing
# "N passed, M failed" line; exits 1 when a case failed.

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "${top_srcdir:-$here/../..}" && pwd)
builddir=$(cd "${top_builddir:-$srcdir}" && pwd)
xmilter=$builddir/xmilter
cases=$srcdir/tests/cli/cases
fix=$srcdir/tests/fixtures/events
doc=$srcdir/docs/CONFIGURATION.md

update=0
if [ "$1" = "--update" ]; then
	update=1
	shift
fi

if [ ! -x "$xmilter" ]; then
	echo "run.sh: $xmilter is not built (make xmilter)" >&2
	exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xm-cli.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM

# expand - the placeholders of a case line
expand() {
	printf '%s\n' "$1" | sed -e "s|@CASES@|$cases|g" -e "s|@FIX@|$fix|g" \
	    -e "s|@SRC@|$srcdir|g"
}

# normalise - the source tree's path written @SRC@ (stdin to stdout)
src_re=$(printf '%s\n' "$srcdir" | sed 's/[][\.*^$|]/\\&/g')
normalise() {
	# log lines carry a time and a pid: written TIME and PID
	sed -e "s|$src_re|@SRC@|g" \
	    -e 's/^[0-9]\{4\}-[0-9T:.-]*Z xmilter\[[0-9]*\]/TIME xmilter[PID]/'
}

if [ $# -gt 0 ]; then
	names=$*
else
	names="$(cd "$cases" && for f in *.cmd; do echo "${f%.cmd}"; done)
config-doc"
fi

pass=0
fail=0
for name in $names; do
	if [ "$name" = config-doc ]; then
		"$xmilter" config-doc > "$tmp/doc" 2>&1
		if [ $update = 1 ]; then
			cp "$tmp/doc" "$doc"
			echo "updated docs/CONFIGURATION.md"
			pass=$((pass + 1))
		elif [ ! -f "$doc" ]; then
			echo "not ok config-doc (no docs/CONFIGURATION.md: make config-doc)"
			fail=$((fail + 1))
		elif ! cmp -s "$doc" "$tmp/doc"; then
			echo "not ok config-doc (docs/CONFIGURATION.md is stale: make config-doc)"
			diff -u "$doc" "$tmp/doc" | sed 's/^/# /'
			fail=$((fail + 1))
		else
			echo "ok config-doc"
			pass=$((pass + 1))
		fi
		continue
	fi
	if [ ! -f "$cases/$name.cmd" ]; then
		echo "not ok $name (no $cases/$name.cmd)"
		fail=$((fail + 1))
		continue
	fi
	args=$(expand "$(cat "$cases/$name.cmd")")
	stdin=/dev/null
	[ -f "$cases/$name.from" ] && stdin=$(expand "$(cat "$cases/$name.from")")
	# shellcheck disable=SC2086
	"$xmilter" $args < "$stdin" > "$tmp/stdout" 2> "$tmp/stderr"
	status=$?
	{
		cat "$tmp/stdout"
		echo "--- stderr"
		cat "$tmp/stderr"
		echo "--- exit $status"
	} | normalise > "$tmp/actual"
	golden=$cases/$name.out
	if [ $update = 1 ]; then
		cp "$tmp/actual" "$golden"
		echo "updated $name"
		pass=$((pass + 1))
	elif [ ! -f "$golden" ]; then
		echo "not ok $name (no golden: run.sh --update $name)"
		fail=$((fail + 1))
	elif ! cmp -s "$golden" "$tmp/actual"; then
		echo "not ok $name"
		diff -u "$golden" "$tmp/actual" | sed 's/^/# /'
		fail=$((fail + 1))
	else
		echo "ok $name"
		pass=$((pass + 1))
	fi
done

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
