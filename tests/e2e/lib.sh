# lib.sh - shell helpers for xmilter's end-to-end tests and the quickstart
#
# Source it from bash. Everything runs on loopback inside one temporary
# directory ($XM_TMP) that xm_cleanup removes; every process started here is
# recorded and stopped by xm_cleanup (install it with `trap xm_cleanup EXIT`).
#
#   xm_init                        take the e2e lock, make $XM_TMP
#   xm_free_port [START]           print a free TCP port on 127.0.0.1 (>= 1024)
#   xm_prosody_config NAME IP DOMAIN C2S_PORT [OPTIONS...]
#                                  write $XM_TMP/NAME/prosody.cfg.lua
#   xm_prosody_start NAME          start it (under timeout), wait for c2s
#                                  and its other listeners (HTTP, ...)
#   xm_prosody_stop NAME           SIGTERM it and wait
#   xm_register NAME USER DOMAIN PASS   create an account
#   xm_daemon_config FILE SOCKET QUARANTINE_DIR RULES_FILE...
#   xm_daemon_start CONFIG [LOG]   start xmilterd, wait for its socket
#   xm_daemon_stop                 SIGTERM xmilterd and wait
#   xm_wait_socket PATH [SECONDS]  wait until a Unix socket accepts
#   xm_wait_log FILE REGEX [SECONDS]  wait until a log file has a line
#   xm_hosts_add IP NAME           a name for Prosody's resolver (s2s tests)
#   xm_dns_start                   a loopback DNS stub answering "no data" to
#                                  everything, so SRV look-ups fail at once
#                                  and Prosody falls back to the hosts file
#
# Settings (environment): top_srcdir, top_builddir (default: the tree this
# file is in), XMILTERD, XMTEST_CLIENT, PROSODY, PROSODYCTL,
# XM_PROSODY_LIFETIME (seconds a Prosody may live, default 600).

XM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${top_srcdir:=$(cd "$XM_LIB_DIR/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${PROSODY:=$(command -v prosody || echo /usr/bin/prosody)}"
: "${PROSODYCTL:=$(command -v prosodyctl || echo /usr/bin/prosodyctl)}"
: "${XMILTERD:=$top_builddir/xmilterd}"
: "${XMTEST_CLIENT:=$top_builddir/tests/e2e/xmtest-client}"
: "${XM_PROSODY_LIFETIME:=600}"
XM_GLUE_DIR=$top_srcdir/server-glue/prosody

XM_PIDS=()        # every process we started, stopped by xm_cleanup
XM_DAEMON_PID=
declare -A XM_PROSODY_PID XM_PROSODY_CFG XM_PROSODY_ADDR

# xm_log - a diagnostic line on stderr
xm_log() { printf '# %s\n' "$*" >&2; }

# xm_init - create the temporary directory and check the tools
xm_init() {
	# one end-to-end suite at a time on this machine: they share the s2s
	# port 5269 on 127.0.0.1/127.0.0.2 (make -j check, several trees)
	if command -v flock >/dev/null; then
		exec 9>"${TMPDIR:-/tmp}/xmilter-e2e.lock"
		flock -w "${XM_LOCK_WAIT:-1800}" 9 || { xm_log "e2e lock: timed out"; return 1; }
	fi
	XM_TMP=$(mktemp -d "${TMPDIR:-/tmp}/xmilter-e2e.XXXXXX") || return 1
	chmod 755 "$XM_TMP"
	export XM_TMP
}

# xm_cleanup - stop everything we started, remove $XM_TMP (unless XM_KEEP=1)
xm_cleanup() {
	local pid
	for pid in "${XM_PIDS[@]}"; do
		kill -CONT "$pid" 2>/dev/null
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${XM_PIDS[@]}"; do
		xm_wait_pid "$pid" 3 || kill -KILL "$pid" 2>/dev/null
	done
	XM_PIDS=()
	# children share the lock's file description: unlock it explicitly
	{ flock -u 9 && exec 9>&-; } 2>/dev/null
	if [ -n "$XM_TMP" ] && [ -d "$XM_TMP" ]; then
		if [ "${XM_KEEP:-0}" = 1 ]; then
			xm_log "kept $XM_TMP"
		else
			rm -rf "$XM_TMP"
		fi
	fi
}

# xm_wait_pid PID SECONDS - wait for a process we started to exit
xm_wait_pid() {
	local pid=$1 n=$(( ${2:-5} * 20 ))
	while kill -0 "$pid" 2>/dev/null; do
		# a zombie child of ours counts as gone once reaped
		if ! [ -e "/proc/$pid" ] || grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
			wait "$pid" 2>/dev/null
			return 0
		fi
		n=$((n - 1))
		[ "$n" -le 0 ] && return 1
		sleep 0.05
	done
	wait "$pid" 2>/dev/null
	return 0
}

# xm_forget_pid PID - drop PID from the cleanup list
xm_forget_pid() {
	local p keep=()
	for p in "${XM_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	XM_PIDS=("${keep[@]}")
}

# xm_port_busy IP PORT - true when something listens there
xm_port_busy() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# xm_free_port [START] - print a free port on 127.0.0.1, counting up
# (outside the kernel's ephemeral range: see xm_port_fixed)
xm_free_port() {
	local p=${1:-$(( 20000 + ($$ * 7) % 20000 ))}
	p=$(xm_port_fixed "$p")
	while xm_port_busy 127.0.0.1 "$p" || xm_port_busy 127.0.0.2 "$p" || [ "$p" = 2024 ]; do
		p=$(xm_port_fixed $((p + 1)))
	done
	echo "$p"
}

# xm_port_fixed PORT - PORT, or a port below 65536 outside the kernel's
# ephemeral range (net.ipv4.ip_local_port_range) in its place. A port in
# that range, free when probed, may be given by the kernel to any
# process's connect() or bind to port 0 (the unit tests' redis-server,
# PostgreSQL and HTTP servers, every loopback client, running alongside
# under `make -j check`) before our server binds it; Prosody then runs
# on without that listener.
xm_port_fixed() {
	local p=$1 lo=32768 hi=60999
	read -r lo hi 2>/dev/null </proc/sys/net/ipv4/ip_local_port_range
	if [ "$p" -ge "$lo" ] && [ "$p" -le "$hi" ] && [ "$lo" -gt 11024 ]; then
		p=$(( 10000 + (p - lo) % (lo - 10000) ))
	fi
	[ "$p" -le 65535 ] || p=10000
	echo "$p"
}

# xm_wait_port IP PORT [SECONDS] - wait until a TCP port accepts
xm_wait_port() {
	local n=$(( ${3:-10} * 20 ))
	until xm_port_busy "$1" "$2"; do
		n=$((n - 1))
		[ "$n" -le 0 ] && return 1
		sleep 0.05
	done
}

# xm_wait_socket PATH [SECONDS] - wait until a Unix socket exists and accepts
xm_wait_socket() {
	local n=$(( ${2:-10} * 20 ))
	until [ -S "$1" ] && xm_unix_probe "$1"; do
		n=$((n - 1))
		[ "$n" -le 0 ] && return 1
		sleep 0.05
	done
}

# xm_unix_probe PATH - true when a Unix stream socket accepts a connection
xm_unix_probe() {
	# lua5.4 with LuaSocket is there wherever Prosody is
	XM_PROBE_PATH=$1 lua5.4 -e 'local u = require "socket.unix"
		if type(u) == "table" then u = u.stream end
		local s = u(); s:settimeout(1); local ok = s:connect(os.getenv("XM_PROBE_PATH")); s:close()
		os.exit(ok and 0 or 1)' 2>/dev/null
}

# xm_wait_log FILE REGEX [SECONDS] - wait until FILE has a line matching REGEX
xm_wait_log() {
	local n=$(( ${3:-10} * 20 ))
	until grep -Eq "$2" "$1" 2>/dev/null; do
		n=$((n - 1))
		[ "$n" -le 0 ] && return 1
		sleep 0.05
	done
}

# xm_prosody_config NAME IP DOMAIN C2S_PORT [key=value...]
# Options: component=DOMAIN:PORT:SECRET  upload=DOMAIN:HTTP_PORT
#          s2s=yes  xmilter=no  socket=PATH  extra=LUA-LINE (repeatable)
#          glue_on_components=yes
xm_prosody_config() {
	local name=$1 ip=$2 domain=$3 c2s=$4
	shift 4
	local dir=$XM_TMP/$name opt comp="" upload="" s2s=no xmilter=yes
	local socket=$XM_TMP/xmilterd.sock extra=()
	for opt in "$@"; do
		case $opt in
		component=*) comp=${opt#component=} ;;
		upload=*) upload=${opt#upload=} ;;
		s2s=*) s2s=${opt#s2s=} ;;
		xmilter=*) xmilter=${opt#xmilter=} ;;
		socket=*) socket=${opt#socket=} ;;
		extra=*) extra+=("${opt#extra=}") ;;
		*) xm_log "xm_prosody_config: unknown option $opt"; return 1 ;;
		esac
	done
	mkdir -p "$dir/data"
	[ -f "$XM_TMP/hosts" ] || : >"$XM_TMP/hosts"
	: >"$XM_TMP/resolv.conf"
	local mods='"roster"; "saslauth"; "disco"; "ping"; "dialback"; "admin_shell"; "admin_socket";'
	[ "$xmilter" = yes ] && mods="$mods \"xmilter\";"
	local dnsfwd=""
	[ -n "${XM_DNS_PORT:-}" ] && dnsfwd=" forward = \"127.0.0.1@$XM_DNS_PORT\";"
	{
		echo "-- generated by tests/e2e/lib.sh"
		[ "$(id -u)" = 0 ] && echo "run_as_root = true"
		cat <<EOF
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
plugin_paths = { "$XM_GLUE_DIR" }
admin_socket = "$dir/admin.sock"
log = { { levels = { min = "debug" }, to = "file", filename = "$dir/prosody.log" } }
interfaces = { "$ip" }
c2s_ports = { $c2s }
c2s_require_encryption = false
s2s_require_encryption = false
s2s_secure_auth = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
modules_enabled = { $mods }
modules_disabled = { "offline"; "tls" }
unbound = { hoststxt = "$XM_TMP/hosts"; resolvconf = "$XM_TMP/resolv.conf";$dnsfwd }
xmilter_socket = "$socket"
xmilter_timeout = 2
xmilter_reconnect_min = 0.1
xmilter_reconnect_max = 0.5
xmilter_hello_timeout = 1
xmilter_healthcheck_interval = 0
xmilter_log_verdicts = true
EOF
		if [ "$s2s" = yes ]; then
			echo "s2s_ports = { 5269 }"
		else
			echo "s2s_ports = { }"
		fi
		local cdom="" cport="" secret="" udom="" hport=""
		if [ -n "$comp" ]; then
			cdom=${comp%%:*}; local rest=${comp#*:}
			cport=${rest%%:*}; secret=${rest#*:}
			echo "component_ports = { $cport }"
			echo 'component_interfaces = { "127.0.0.1" }'
		fi
		if [ -n "$upload" ]; then
			udom=${upload%%:*}; hport=${upload#*:}
			echo "http_ports = { $hport }"
			echo "http_interfaces = { \"$ip\" }"
			echo "https_ports = { }"
		fi
		local l
		for l in "${extra[@]}"; do echo "$l"; done
		echo
		echo "VirtualHost \"$domain\""
		if [ -n "$comp" ]; then
			echo
			echo "Component \"$cdom\""
			echo "	component_secret = \"$secret\""
		fi
		if [ -n "$upload" ]; then
			echo
			echo "Component \"$udom\" \"http_file_share\""
			echo "	http_external_url = \"http://$ip:$hport/\""
			[ "$xmilter" = yes ] && echo '	modules_enabled = { "xmilter" }'
		fi
	} >"$dir/prosody.cfg.lua"
	XM_PROSODY_CFG[$name]=$dir/prosody.cfg.lua
	XM_PROSODY_ADDR[$name]=$ip:$c2s
}

# xm_hosts_add IP NAME - a name for Prosody's resolver
xm_hosts_add() {
	echo "$1 $2" >>"$XM_TMP/hosts"
}

# xm_dns_start - start the DNS stub on a free loopback port (XM_DNS_PORT).
# libunbound would otherwise spend ~17 s per SRV look-up trying the root
# servers before it falls back to the names in the hosts file.
xm_dns_start() {
	XM_DNS_PORT=$(xm_free_port $(( 30000 + $$ % 20000 )))
	cat >"$XM_TMP/nodata-dns.lua" <<'EOF'
-- answers every DNS query with NOERROR and no records ("no data")
local socket = require "socket"
local u = assert(socket.udp())
assert(u:setsockname("127.0.0.1", tonumber(os.getenv("XM_DNS_PORT"))))
while true do
	local q, ip, port = u:receivefrom()
	if q and #q >= 17 then
		local pos = 13
		while pos <= #q do
			local len = q:byte(pos)
			if len == 0 or len >= 64 then break end
			pos = pos + len + 1
		end
		local qend = pos + 4 -- the root label, qtype, qclass
		if pos <= #q and q:byte(pos) == 0 and qend <= #q then
			local flags = (q:byte(3) & 0x79) | 0x84 -- QR, AA; opcode and RD kept
			u:sendto(q:sub(1, 2) .. string.char(flags, 0x80) .. "\0\1\0\0\0\0\0\0"
				.. q:sub(13, qend), ip, port)
		end
	end
end
EOF
	XM_DNS_PORT=$XM_DNS_PORT timeout "$XM_PROSODY_LIFETIME" lua5.4 "$XM_TMP/nodata-dns.lua" &
	XM_PIDS+=($!)
	export XM_DNS_PORT
}

# xm_prosody_start NAME - start a configured Prosody, wait for its c2s port
xm_prosody_start() {
	local name=$1 dir=$XM_TMP/$1 addr=${XM_PROSODY_ADDR[$1]}
	timeout "$XM_PROSODY_LIFETIME" "$PROSODY" --config "${XM_PROSODY_CFG[$name]}" -F \
		>"$dir/prosody.out" 2>&1 &
	XM_PROSODY_PID[$name]=$!
	XM_PIDS+=($!)
	if ! xm_wait_port "${addr%:*}" "${addr##*:}" 10; then
		xm_log "prosody $name did not start; its output:"
		sed 's/^/#   /' "$dir/prosody.out" "$dir/prosody.log" 2>/dev/null | tail -20 >&2
		return 1
	fi
	xm_prosody_wait_listeners "$name"
}

# xm_prosody_wait_listeners NAME - wait until every other TCP port NAME's
# configuration lists (HTTP, component, s2s) accepts, and fail when
# Prosody could not bind one: it carries on without that listener and
# says so only in its log
xm_prosody_wait_listeners() {
	local cfg=${XM_PROSODY_CFG[$1]} log kind port ip
	log=$(xm_prosody_log "$1")
	while read -r kind port; do
		ip=${XM_PROSODY_ADDR[$1]%:*}
		[ "$kind" = component ] && ip=127.0.0.1
		if ! xm_wait_port "$ip" "$port" 10 ||
		    grep -q 'Failed to open server port' "$log" 2>/dev/null; then
			xm_log "prosody $1: no $kind listener of its own on $ip:$port; its log says:"
			grep -E 'Failed to open server port|Activated service' \
				"$log" 2>/dev/null | sed 's/^/#   /' >&2
			return 1
		fi
	done < <(sed -n 's/^\(http\|component\|s2s\)_ports = { \([0-9][0-9]*\) }$/\1 \2/p' "$cfg")
}

# xm_prosody_stop NAME - stop a Prosody we started
xm_prosody_stop() {
	local pid=${XM_PROSODY_PID[$1]}
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	xm_wait_pid "$pid" 5 || kill -KILL "$pid" 2>/dev/null
	xm_forget_pid "$pid"
	XM_PROSODY_PID[$1]=
}

# xm_prosody_log NAME - path of a Prosody's log
xm_prosody_log() { echo "$XM_TMP/$1/prosody.log"; }

# xm_register NAME USER DOMAIN PASS - create an account on a configured Prosody
xm_register() {
	"$PROSODYCTL" --config "${XM_PROSODY_CFG[$1]}" register "$2" "$3" "$4" >/dev/null 2>&1
}

# xm_prosody_shell NAME COMMAND - run one admin shell command, print its output
xm_prosody_shell() {
	echo "$2" | timeout 10 "$PROSODYCTL" --config "${XM_PROSODY_CFG[$1]}" shell 2>&1
}

# xm_daemon_config FILE SOCKET QUARANTINE_DIR RULES... - a test xmilterd config
xm_daemon_config() {
	local file=$1 socket=$2 qdir=$3 r list=""
	shift 3
	for r in "$@"; do list="$list${list:+, }$r"; done
	mkdir -p "$qdir"
	cat >"$file" <<EOF
daemon:
  socket: $socket
  quarantine_dir: $qdir
  log_level: debug
actions:
  modify: 5
  quarantine: 10
  reject: 15
  discard: 40
filters:
  rules:
    files: [ $list ]
  # the suites send bursts from one account; tests/e2e/ratelimit.sh
  # writes its own configuration with ratelimit on
  ratelimit:
    enabled: false
  links:
    enabled: false   # link reputation: tests/e2e/links.sh
EOF
}

# xm_daemon_start CONFIG [LOG] - start xmilterd in the foreground (background
# job), wait for its socket; sets XM_DAEMON_PID
xm_daemon_start() {
	local cfg=$1 log=${2:-$XM_TMP/xmilterd.log} socket
	socket=$(sed -n 's/^ *socket: *//p' "$cfg" | head -1)
	rm -f "$socket"
	"$XMILTERD" -c "$cfg" >>"$log" 2>&1 &
	XM_DAEMON_PID=$!
	XM_PIDS+=($!)
	if ! xm_wait_socket "$socket" 10; then
		xm_log "xmilterd did not start; its log:"
		tail -20 "$log" | sed 's/^/#   /' >&2
		return 1
	fi
}

# xm_daemon_stop - stop the xmilterd we started
xm_daemon_stop() {
	[ -n "$XM_DAEMON_PID" ] || return 0
	kill -CONT "$XM_DAEMON_PID" 2>/dev/null
	kill -TERM "$XM_DAEMON_PID" 2>/dev/null
	xm_wait_pid "$XM_DAEMON_PID" 5 || kill -KILL "$XM_DAEMON_PID" 2>/dev/null
	xm_forget_pid "$XM_DAEMON_PID"
	XM_DAEMON_PID=
}

# xm_client ARGS... - run the test client (bounded by its own --timeout)
xm_client() {
	"$XMTEST_CLIENT" "$@"
}

# ---- the suite harness (run.sh and every other e2e suite) -------------------
#
#   xm_suite_start NAME SECONDS PROGRAM...  check programs, init, traps, begin
#   xm_suite_begin SECONDS   bound the whole suite, reset the counters
#   result NAME STATUS       one "ok N - name" / "not ok N - name" line
#   skip NAME REASON         a case that could not run: counted as failed
#   client ARGS...           the test client, output in $OUT
#   has REGEX / hasnt REGEX  the last client output has (no) matching line
#   glue_log_count REGEX     matching lines in Prosody A's log
#   wait_glue_connected N    wait until the glue connected more than N times
#   prosody_reload NAME      SIGHUP a Prosody and wait for the glue's reload
#   xm_suite_final_checks [NAME]  the daemon still runs, no Lua error in the glue
#   xm_suite_end             print "N passed, M failed", status 0 if none failed

# xm_suite_start NAME SECONDS PROGRAM... - the opening of every suite: the
# programs it needs (one missing is a failure, never a skip: quickstart
# installs them all), the lock and temp dir, the DNS stub, clean-up traps,
# then xm_suite_begin. Exits the script when it cannot start.
xm_suite_start() {
	local name=$1 limit=$2 prog
	shift 2
	for prog in "$@"; do
		if ! [ -x "$prog" ]; then
			echo "not ok 1 - the $name suite needs '$prog' (not found or not executable)"
			echo "0 passed, 1 failed"
			exit 1
		fi
	done
	xm_init || exit 1
	xm_dns_start
	trap 'xm_cleanup' EXIT
	trap 'echo "# interrupted"; exit 130' INT TERM HUP
	xm_suite_begin "$limit"
}

# xm_suite_begin SECONDS - start the suite's watchdog and counters
xm_suite_begin() {
	local limit=$1
	( sleep "$limit" & s=$!
	  trap 'kill $s 2>/dev/null; wait $s; exit 0' TERM
	  wait $s && { echo "# suite timeout: aborting" >&2; kill -TERM $$; } ) 2>/dev/null &
	XM_PIDS+=($!)
	npass=0
	nfail=0
	ncase=0
	OUT=$XM_TMP/out   # the last client's output
}

# xm_suite_final_checks [NAME] - two closing cases: the xmilterd last
# started still runs, and Prosody NAME's log (default a) has no Lua error
# from the glue
xm_suite_final_checks() {
	local log
	log=$(xm_prosody_log "${1:-a}")
	if kill -0 "$XM_DAEMON_PID" 2>/dev/null; then
		: >"$OUT"
		result "xmilterd still running" 0
	else
		OUT=$DLOG
		result "xmilterd still running" 1
	fi
	if grep -q 'Traceback\|xmilter: error' "$log"; then
		grep -A3 'Traceback\|xmilter: error' "$log" | head -20 >"$OUT"
		result "no Lua errors from the glue" 1
	else
		: >"$OUT"
		result "no Lua errors from the glue" 0
	fi
}

# xm_suite_end - the closing summary line; status 0 when nothing failed
xm_suite_end() {
	echo "$npass passed, $nfail failed"
	[ "$nfail" = 0 ]
}

# result NAME STATUS - print one TAP-like line
result() {
	ncase=$((ncase + 1))
	if [ "$2" = 0 ]; then
		npass=$((npass + 1))
		echo "ok $ncase - $1"
	else
		nfail=$((nfail + 1))
		echo "not ok $ncase - $1"
		if [ -s "$OUT" ]; then sed 's/^/#   /' "$OUT"; fi
	fi
}

# skip NAME REASON - a case that cannot run here: counted as failed, so a
# suite that did not test something never reads as green
skip() {
	ncase=$((ncase + 1))
	nfail=$((nfail + 1))
	echo "not ok $ncase - $1 # could not run: $2"
}

# client ARGS... - run the test client, output in $OUT (shown with XM_VERBOSE)
client() {
	xm_client "$@" >"$OUT" 2>&1
	local rc=$?
	if [ "${XM_VERBOSE:-0}" = 1 ]; then sed 's/^/#   | /' "$OUT"; fi
	return $rc
}

# has REGEX - the last client output has a matching line
has() { grep -Eq -- "$1" "$OUT"; }
hasnt() { ! grep -Eq -- "$1" "$OUT"; }

# glue_log_count REGEX - matching lines in Prosody A's log
glue_log_count() { grep -Ec -- "$1" "$(xm_prosody_log a)" 2>/dev/null || true; }

# wait_glue_connected N - wait until the glue's connect message count exceeds N
wait_glue_connected() {
	local before=$1 n=200
	while [ "$(glue_log_count 'xmilter: connected to')" -le "$before" ]; do
		n=$((n - 1))
		[ "$n" -le 0 ] && return 1
		sleep 0.05
	done
}

# prosody_reload NAME - SIGHUP a Prosody (re-reads its config) and wait for it
prosody_reload() {
	local log before n=100
	log=$(xm_prosody_log "$1")
	before=$(grep -c 'xmilter: settings reloaded' "$log" 2>/dev/null || true)
	kill -HUP "$(cat "$XM_TMP/$1/prosody.pid")" || return 1
	while [ "$(grep -c 'xmilter: settings reloaded' "$log" 2>/dev/null || true)" -le "$before" ]; do
		n=$((n - 1))
		[ "$n" -le 0 ] && break
		sleep 0.05
	done
	sleep 0.2
}

# set_failure_policy POLICY - rewrite Prosody A's xmilter_on_failure and reload
set_failure_policy() {
	local cfg=${XM_PROSODY_CFG[a]}
	sed -i '/^xmilter_on_failure/d' "$cfg"
	sed -i "0,/^xmilter_socket/s//xmilter_on_failure = \"$1\"\n&/" "$cfg"
	prosody_reload a
}

