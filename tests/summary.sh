#!/bin/sh
# summary.sh - add up what every test runner reported in its log and print
# one closing line. Criterion binaries end with "[====] Synthesis: Tested:
# N | Passing: N | Failing: N | Crashing: N"; the script suites end with
# "N passed, M failed". A suite whose log has neither counts as failed.
cd "$(dirname "$0")/.." || exit 1
passed=0; failed=0; suites=0; bad=""
for log in tests/unit/test_*.log tests/*/*.sh.log; do
	[ -f "$log" ] || continue
	suites=$((suites + 1))
	line=$(grep -a 'Synthesis: Tested' "$log" | tail -n 1)
	if [ -n "$line" ]; then
		p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
		f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
		c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
		passed=$((passed + p)); failed=$((failed + f + c))
		[ $((f + c)) -gt 0 ] && bad="$bad $log"
		continue
	fi
	line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -n "$line" ]; then
		p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
		passed=$((passed + p)); failed=$((failed + f))
		[ "$f" -gt 0 ] && bad="$bad $log"
		continue
	fi
	failed=$((failed + 1)); bad="$bad $log(no-summary)"
done
if [ "$suites" -eq 0 ]; then
	echo "no test logs found: the suite did not run"
	failed=1
fi
[ -n "$bad" ] && echo "failing suites:$bad"
echo "$suites suites: $passed passed, $failed failed"
