# bench/lib.sh - helpers the benchmark scripts share (sourced, not run)
#
#   median N...      the median of the numbers (the mean of the middle two
#                    for an even count, not rounded)
#   field LINE NAME  the value of NAME=value in a line of key=value words
#   cpu_ticks PID    user + system clock ticks the process has used so far

median() {
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
		if (NR % 2) print a[(NR+1)/2]
		else printf "%.10g\n", (a[NR/2] + a[NR/2+1]) / 2 }'
}
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
