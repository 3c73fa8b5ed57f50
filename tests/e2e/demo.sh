#!/usr/bin/env bash
# demo.sh - the main job on its embedded defaults (./quickstart run):
# xmilterd with the shipped configuration (etc/xmilter.yml, socket and
# quarantine store moved into a temp dir), a throw-away Prosody on 127.0.0.1 with the
# glue, two accounts, and three messages: a clean one (delivered), a worm
# lure (delivered with a warning), and one carrying the GTUBE-style test
# token (bounced with the filter's error). Prints what each side saw and
# the daemon's verdict lines. Then the antivirus: says whether this machine
# has ClamAV databases, generates a test signature, restarts xmilterd with
# the antivirus on and shows a file carrying it stopped in transit while a
# clean one arrives. Stops and removes everything at the end.
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

# ---- the antivirus (filters.antivirus, docs/ANTIVIRUS.md) ----
bold "7. antivirus: ClamAV signature databases"
sysdb=$(ls /var/lib/clamav/*.cvd /var/lib/clamav/*.cld 2>/dev/null | wc -l)
if [ "$sysdb" -gt 0 ]; then
	echo "   this machine has $sysdb ClamAV database file(s) in /var/lib/clamav (freshclam's):"
	echo "   the shipped configuration can scan with them (filters.antivirus.enabled: true)"
else
	echo "   this machine has NO ClamAV databases in /var/lib/clamav (freshclam never ran):"
	echo "   enabled as shipped, the antivirus would refuse to start (or run degraded if told to)."
fi
echo "   For this demo: a test signature generated now (the EICAR test file, put together"
echo "   from two halves, its SHA-256 made into a signature with ClamAV's sigtool)."
mkdir -p "$XM_TMP/clamdb" "$XM_TMP/files"
printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$' 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' >"$XM_TMP/files/invoice.pdf.exe"
(cd "$XM_TMP/files" && sigtool --sha256 invoice.pdf.exe) | sed 's/:invoice.pdf.exe$/:Demo.Test.Signature/' >"$XM_TMP/clamdb/demo.hsb"
sed 's/^/   demo.hsb: /' "$XM_TMP/clamdb/demo.hsb"
head -c 10000 /dev/urandom >"$XM_TMP/files/holiday.jpg"
cp -r "$top_srcdir/etc" "$XM_TMP/etc"
sed -i "s|^filters:|filters:\n  antivirus:\n    enabled: true\n    database_dir: $XM_TMP/clamdb\n    tmpdir: $XM_TMP|" "$XM_TMP/etc/xmilter.yml"

bold "8. xmilterd restarted with the antivirus on (the glue reconnects by itself)"
kill -TERM "${XM_PIDS[0]}" 2>/dev/null
xm_wait_pid "${XM_PIDS[0]}" 5
before=$(grep -c 'xmilter: connected to' "$(xm_prosody_log demo)")
"$XMILTERD" -c "$XM_TMP/etc/xmilter.yml" \
	-o "daemon.socket=$XM_TMP/xmilterd.sock" \
	-o "daemon.quarantine_dir=$XM_TMP/quarantine" >"$XM_TMP/xmilterd-av.log" 2>&1 &
XM_PIDS+=($!)
if ! xm_wait_socket "$XM_TMP/xmilterd.sock" 10; then
	echo "xmilterd did not start:"; cat "$XM_TMP/xmilterd-av.log"; exit 1
fi
grep -o 'antivirus: .*' "$XM_TMP/xmilterd-av.log" | sed 's/^/   /'
for _ in $(seq 100); do
	[ "$(grep -c 'xmilter: connected to' "$(xm_prosody_log demo)")" -gt "$before" ] && break
	sleep 0.05
done

ibb() {
	"$top_builddir/tests/e2e/xmtest-av" -s "127.0.0.1:$port" -f alice@localhost -p alicepw \
		-t bob@localhost -P bobpw -i "$1" -D "$2" -T 20 ibb 2>>"$XM_TMP/client.log" |
	while IFS= read -r line; do
		case $line in
		"open result") echo "   alice opened an in-band stream to bob" ;;
		"data "*" result") ;;
		"data "*" error "*) echo "   alice's chunk ${line#data } (refused: bob never gets it)" ;;
		recv-close*) echo "   bob's side of the stream was closed" ;;
		"close result") echo "   the transfer completed" ;;
		summary*) echo "   bob received ${line##*recv_bytes=} bytes" | sed 's/ recv_close=.*//' ;;
		esac
	done
}

bold "9. alice -> bob: holiday.jpg (10000 random bytes) by in-band bytestream"
ibb demo-clean "$XM_TMP/files/holiday.jpg"

bold "10. alice -> bob: invoice.pdf.exe (the test file) by in-band bytestream"
ibb demo-virus "$XM_TMP/files/invoice.pdf.exe"
sleep 0.3
grep -o 'verdict .*AV_VIRUS.*' "$XM_TMP/xmilterd-av.log" | sed 's/^/   /'
echo
echo "Everything above ran on loopback and is being stopped and removed now."
