#!/usr/bin/env bash
# demo.sh - the main job on its embedded defaults (./quickstart run):
# xmilterd with the shipped configuration (etc/xmilter.yml, socket and
# quarantine store moved into a temp dir), a throw-away Prosody on 127.0.0.1 with the
# glue, two accounts, and three messages: a clean one (delivered), a worm
# lure (delivered with a warning), and one carrying the GTUBE-style test
# token (bounced with the filter's error). Prints what each side saw and
# the daemon's verdict lines; stops and removes everything at the end.
set -u
. "$(dirname "$0")/lib.sh"
xm_init || exit 1
trap xm_cleanup EXIT

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

bold "1. xmilterd with the shipped configuration"
echo "   $XMILTERD -c $top_srcdir/etc/xmilter.yml -o daemon.socket=\$TMP/xmilterd.sock ..."
"$XMILTERD" -c "$top_srcdir/etc/xmilter.yml" \
	-o "daemon.socket=$XM_TMP/xmilterd.sock" \
	-o "daemon.quarantine_dir=$XM_TMP/quarantine" >"$XM_TMP/xmilterd.log" 2>&1 &
XM_PIDS+=($!)
if ! xm_wait_socket "$XM_TMP/xmilterd.sock" 10; then
	echo "xmilterd did not start:"; cat "$XM_TMP/xmilterd.log"; exit 1
fi
"$top_builddir/xmilter" health -s "$XM_TMP/xmilterd.sock" | sed 's/^/   /'

bold "2. a throw-away Prosody on 127.0.0.1 with mod_xmilter, users alice and bob"
port=$(xm_free_port 15222)
xm_prosody_config demo 127.0.0.1 localhost "$port" "socket=$XM_TMP/xmilterd.sock" || exit 1
xm_prosody_start demo || { echo "Prosody did not start"; exit 1; }
xm_register demo alice localhost alicepw && xm_register demo bob localhost bobpw || exit 1
echo "   Prosody listens on 127.0.0.1:$port (log: prosody.log in the temp dir)"

send() {
	"$XMTEST_CLIENT" -s "127.0.0.1:$port" -f alice@localhost -p alicepw \
		-t bob@localhost -P bobpw -i "$1" -b "$2" -q 2 -T 20 message 2>>"$XM_TMP/client.log"
}

show() {
	local line
	while IFS= read -r line; do
		case $line in
		delivered*) echo "   bob received: ${line#delivered * }" ;;
		error*) echo "   alice got an error back: ${line#error * }" ;;
		missing*) echo "   nothing arrived and no error came back (${line})" ;;
		summary*) ;;
		*) echo "   $line" ;;
		esac
	done
}

bold "3. alice -> bob: a clean message"
send clean "Hi Bob, lunch at noon tomorrow?" | show

bold "4. alice -> bob: a worm lure (raw-IP link to a .scr file)"
send lure "hey is this you in this photo?? http://203.0.113.7:8080/photo.scr" | show

bold "5. alice -> bob: a message with the test token XMILTER-TEST-REJECT (like GTUBE for mail)"
send bad "please scan this XMILTER-TEST-REJECT" | show

sleep 0.3
bold "6. the daemon's verdict log lines"
grep -o 'verdict .*' "$XM_TMP/xmilterd.log" | sed 's/^/   /'
echo
echo "Everything above ran on loopback and is being stopped and removed now."
