#!/bin/sh
# frame.sh - print one protocol frame, its length counted for you
#
# usage: frame.sh VERB ID [FILE]     (the body is FILE, or standard input)
#
# For writing transcript inputs by hand, e.g.
#   { printf 'version=1\n' | tests/transcripts/frame.sh HELLO 0
#     tests/transcripts/frame.sh FILTER 1 event.txt
#   } > tests/transcripts/cases/NAME.in
# Malformed frames are written with printf directly.
set -e
[ $# -ge 2 ] || { echo "usage: frame.sh VERB ID [FILE]" >&2; exit 1; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
if [ $# -ge 3 ]; then cat "$3" > "$tmp"; else cat > "$tmp"; fi
printf '%s %s %s\n' "$1" "$2" "$(wc -c < "$tmp" | tr -d ' ')"
cat "$tmp"
