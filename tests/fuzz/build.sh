#!/bin/sh
# build.sh - build the libFuzzer targets (see README)
#
# usage: tests/fuzz/build.sh [OUTDIR] [extra clang flags...]
#
# Run from the top of a configured tree (autoconf.h must exist). The
# targets are compiled from the sources directly, with the sanitizers on
# every file, not linked to libxm.a. OUTDIR defaults to tests/fuzz/bin.
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$top/tests/fuzz/bin}
[ $# -gt 0 ] && shift
CC=${CC:-clang}
mkdir -p "$out"
[ -f "$top/autoconf.h" ] || { echo "build.sh: run ./configure first" >&2; exit 1; }
pc() { pkg-config "$@" expat libpcre2-8 libhs yaml-0.1 jansson sqlite3 libpq libcurl \
	libcrypto libclamav hiredis libidn2 libpsl libcares libstrophe libuv; }
cd "$top"
# every source of libxm (the daemon's core and all filters), not the mains
core=$(ls plugin/*.c filters/*.c | grep -v -e 'plugin/xmilterd\.c' \
    -e 'plugin/xmilter\.c' -e 'plugin/quarantine_cli\.c')
flags="-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined -I$top -I$top/plugin"
for t in fuzz_frame fuzz_event fuzz_resp fuzz_fingerprint; do
	# shellcheck disable=SC2086
	$CC $flags $(pc --cflags) "$@" -o "$out/$t" tests/fuzz/$t.c $core \
	    $(pc --libs) -lm -lpthread
	echo "built $out/$t"
done
