#!/bin/sh
# ratelimit.sh - `xmilter check` over timed sequences (tests/cli/ratelimit)
#
# Generates each scenario with ratelimit/gen.py (large fixtures are made
# here rather than committed), runs `xmilter check` on it twice and
#   - requires both runs to print the same verdicts (the clock is each
#     event's time, so a replay is deterministic), and a run with Redis
#     configured to print them too (check never uses the nodes' Redis),
#   - compares a one-line-per-verdict summary with the golden
#     ratelimit/NAME.out (--update rewrites the goldens: read the diff),
#   - checks what the scenario is about with awk over the summary:
#       spammer   a 2-hour-old account writing to 100 strangers: its first
#                 10 pass, every later one is rejected (within budget);
#                 the busy user chatting with one contact all passes
#       campaign  36 rotating senders/addresses/domains: flagged by the
#                 8th copy, every later copy not accepted; the team's
#                 "ok", "thanks!", "+1" all pass
#       worm      one account, 30 contacts, same lure: copies from the
#                 20th on score OUTBREAK_TEXT and OUTBREAK_URL
# Prints "ok NAME - what" / "not ok ..." and "N passed, M failed".
here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "${top_srcdir:-$here/../..}" && pwd)
builddir=$(cd "${top_builddir:-$srcdir}" && pwd)
xmilter=$builddir/xmilter
dir=$srcdir/tests/cli/ratelimit
gen=$dir/gen.py

update=0
[ "$1" = "--update" ] && update=1

if [ ! -x "$xmilter" ]; then
	echo "ratelimit.sh: $xmilter is not built" >&2
	exit 99
fi
if ! command -v python3 >/dev/null; then
	echo "not ok python3 missing (quickstart installs it)"
	echo "0 passed, 1 failed"
	exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/xm-rl.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM

pass=0
fail=0
ok() { echo "ok $1"; pass=$((pass + 1)); }
notok() { echo "not ok $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else notok "$1"; fi; }

for name in spammer campaign worm; do
	python3 "$gen" "$name" > "$tmp/$name.events" || { notok "$name: gen"; continue; }
	"$xmilter" check -c "$dir/xmilter.yml" "$tmp/$name.events" > "$tmp/$name.1" 2>"$tmp/$name.err1"
	"$xmilter" check -c "$dir/xmilter.yml" "$tmp/$name.events" > "$tmp/$name.2" 2>"$tmp/$name.err2"
	check "$name: two runs, same verdicts" "cmp -s '$tmp/$name.1' '$tmp/$name.2' && [ -s '$tmp/$name.1' ]"
	python3 "$gen" summary < "$tmp/$name.1" > "$tmp/$name.sum"
	if [ $update = 1 ]; then
		cp "$tmp/$name.sum" "$dir/$name.out"
		ok "$name: golden updated"
	elif cmp -s "$dir/$name.out" "$tmp/$name.sum"; then
		ok "$name: golden"
	else
		notok "$name: golden"
		diff -u "$dir/$name.out" "$tmp/$name.sum" | sed 's/^/# /' | head -40
	fi
done

"$xmilter" check -c "$dir/redis.yml" "$tmp/spammer.events" > "$tmp/spammer.redis" 2>"$tmp/spammer.rerr"
check "replay with Redis configured: memory only, same verdicts, no Redis traffic" \
	"cmp -s '$tmp/spammer.1' '$tmp/spammer.redis' && ! grep -qi redis '$tmp/spammer.rerr'"

s=$tmp/spammer.sum
check "spammer: 100 messages judged" "[ \$(grep -c '^s' $s) -eq 100 ]"
check "spammer: first 10 to strangers pass" \
	"[ \$(awk '/^s0(0|1)[0-9] /{n++; if (\$3==\"accept\") a++} END{print a+0}' $s) -eq 10 ] && awk '\$1==\"s009\"{exit \$3!=\"accept\"}' $s"
check "spammer: every later one rejected" \
	"[ \$(awk '\$1 ~ /^s/ && \$1 >= \"s010\" && \$3 == \"reject\"' $s | wc -l) -eq 90 ]"
check "spammer: busy chat with one contact all accepted, no symbol" \
	"[ \$(awk '\$1 ~ /^b/ && \$3 == \"accept\" && \$4 == \"-\"' $s | wc -l) -eq 167 ]"

c=$tmp/campaign.sum
check "campaign: copies flagged by the 8th" \
	"awk '\$1 ~ /^c/ {n++; if (\$4 ~ /OUTBREAK_TEXT/) {print n; exit}}' $c | grep -qx '[1-8]'"
check "campaign: after that no copy accepted" \
	"[ \$(awk '\$1 ~ /^c/ {n++; if (n > 8 && \$3 == \"accept\") bad++} END{print bad+0}' $c) -eq 0 ]"
check "campaign: team answering ok all accepted, no symbol" \
	"[ \$(awk '\$1 ~ /^ok/ && \$3 == \"accept\" && \$4 == \"-\"' $c | wc -l) -eq 15 ]"

w=$tmp/worm.sum
check "worm: first 19 copies carry no outbreak" \
	"[ \$(head -19 $w | grep -c OUTBREAK) -eq 0 ]"
check "worm: copies 20-30 score text and link outbreak" \
	"[ \$(tail -n 11 $w | grep -c 'OUTBREAK_TEXT,OUTBREAK_URL') -eq 11 ]"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
