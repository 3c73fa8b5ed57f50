#!/bin/bash
# run.sh - xmilter end to end: Prosody + mod_xmilter + xmilterd + libstrophe
#
# Starts everything itself on loopback inside a temporary directory (removed
# on exit; XM_KEEP=1 keeps it), prints "ok N - name" / "not ok N - name" per
# case and a closing "N passed, M failed" line; exits non-zero on failure
# (a missing program too: xm_suite_start never skips).
#
# Environment: top_srcdir, top_builddir (set by make check; default: this
# script's ../..), XMILTERD, XMTEST_CLIENT, PROSODY, PROSODYCTL,
# XM_SUITE_TIMEOUT (seconds for the whole suite, default 280), XM_VERBOSE=1
# (show every client's output).
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

xm_suite_start end-to-end "${XM_SUITE_TIMEOUT:-280}" "$PROSODY" "$PROSODYCTL" "$XMILTERD" "$XMTEST_CLIENT"

# ---- set-up ---------------------------------------------------------------

DOM=a.example
RDOM=b.example
COMP=icq.$DOM
UPLOAD=upload.$DOM
SECRET=xm-component-secret
SOCK=$XM_TMP/xmilterd.sock
QDIR=$XM_TMP/quarantine
DLOG=$XM_TMP/xmilterd.log
P_C2S=$(xm_free_port)
P_COMP=$(xm_free_port $((P_C2S + 1)))
P_HTTP=$(xm_free_port $((P_COMP + 1)))

s2s=yes
if xm_port_busy 127.0.0.1 5269 || xm_port_busy 127.0.0.2 5269; then
	s2s=no
fi
if ! (exec 3<>/dev/tcp/127.0.0.2/"$P_C2S") 2>&1 | grep -q refused; then
	s2s=no # no 127.0.0.2 here
fi

cat >"$XM_TMP/rules.cf" <<'EOF'
# end-to-end test rules (thresholds: modify 5, quarantine 10, reject 15, discard 40)
body     XM_E2E_MODIFY      /XMILTER-TEST-MODIFY/
score    XM_E2E_MODIFY      6
body     XM_E2E_QUARANTINE  /XMILTER-TEST-QUARANTINE/
score    XM_E2E_QUARANTINE  12
body     XM_E2E_REJECT      /XMILTER-TEST-REJECT/
score    XM_E2E_REJECT      20
body     XM_E2E_DISCARD     /XMILTER-TEST-DISCARD/
score    XM_E2E_DISCARD     50
EOF
xm_daemon_config "$XM_TMP/xmilterd.yml" "$SOCK" "$QDIR" "$XM_TMP/rules.cf"

xm_hosts_add 127.0.0.1 $DOM
xm_hosts_add 127.0.0.2 $RDOM
xm_prosody_config a 127.0.0.1 $DOM "$P_C2S" "component=$COMP:$P_COMP:$SECRET" \
	"upload=$UPLOAD:$P_HTTP" "s2s=$s2s" "socket=$SOCK"

if ! xm_daemon_start "$XM_TMP/xmilterd.yml" "$DLOG"; then
	echo "not ok 1 - xmilterd starts"
	echo "0 passed, 1 failed"
	exit 1
fi
if ! xm_prosody_start a; then
	echo "not ok 1 - prosody starts"
	echo "0 passed, 1 failed"
	exit 1
fi
for u in alice bob carol dave erin frank; do
	xm_register a "$u" $DOM pw || xm_log "could not register $u"
done
# the glue connects at start-up; wait for its HELLO
wait_glue_connected 0
result "glue connects to xmilterd and negotiates HELLO" $?

A=(-s "127.0.0.1:$P_C2S" -p pw -P pw -T 20)
AB=("${A[@]}" -f "alice@$DOM" -t "bob@$DOM")

# ---- verdicts ---------------------------------------------------------------

client "${AB[@]}" -q 2 -b "hello, a clean message" message
has '^delivered m1 hello, a clean message$' && has 'missing=0'
result "clean message is delivered" $?

client "${AB[@]}" -q 2 -b "XMILTER-TEST-REJECT buy now" message
has '^error m1 [a-z-]+ ' && hasnt '^delivered m1'
result "rule hit is rejected with an error to the sender" $?

client "${AB[@]}" -q 1 -b "XMILTER-TEST-DISCARD silently" -b "after the discard" message
has '^missing m1$' && has '^delivered m2 after the discard$' && hasnt '^error m1'
result "discard: nothing delivered, no error" $?

client "${AB[@]}" -q 2 -b "XMILTER-TEST-MODIFY see http://198.51.100.7:8080/x" message
has '^delivered m1 .*XMILTER-TEST-MODIFY see http://198.51.100.7' &&
	hasnt '^delivered m1 XMILTER-TEST-MODIFY see http://198.51.100.7:8080/x$'
result "modify: delivered with a changed body (same id)" $?

client "${AB[@]}" -q 1 -b "XMILTER-TEST-QUARANTINE hold me" -b "after the quarantine" message
rc=1
if has '^missing m1$' && has '^delivered m2 after the quarantine$' && hasnt '^error m1'; then
	# the quarantine store (SQLite in quarantine_dir) holds it
	"$top_builddir/xmilter" quarantine list -c "$XM_TMP/xmilterd.yml" held >>"$OUT" 2>&1 &&
		[ -f "$QDIR/quarantine.db" ] &&
		grep -Eq "^[0-9]+ +held .* XM_E2E_QUARANTINE +alice@$DOM/[^ ]* -> bob@$DOM\$" "$OUT" && rc=0
fi
result "quarantine: not delivered, no error, held in the quarantine store" $rc

client "${AB[@]}" -q 1 -b "order %n" -n 20 message
rc=1
if has 'delivered=20 errors=0 missing=0'; then
	[ "$(grep '^delivered' "$OUT" | awk '{print $2}' | tr -d m | tr '\n' ' ')" = \
		"$(seq 1 20 | tr '\n' ' ')" ] && rc=0
fi
result "a session's messages keep their order" $rc

# a client that pipelines faster than verdicts come back: Prosody 0.12
# pauses the session while the glue waits and, on resume, would forget
# input already buffered (the glue works around it); nothing may get stuck
client "${AB[@]}" -q 3 -T 40 -n 2000 -b "burst %n" message
has 'sent=2000 delivered=2000 errors=0 missing=0 '
result "a pipelined burst of 2000 messages: all delivered, none stuck" $?

# ---- origins ----------------------------------------------------------------

client "${A[@]}" -t bob@$DOM -C "$COMP" -k "$SECRET" -K "127.0.0.1:$P_COMP" -f "4711@$COMP" -q 2 \
	-b "hello from the transport" -b "XMILTER-TEST-REJECT from the transport" \
	-b "XMILTER-TEST-MODIFY via transport" -b "last from the transport" message
has '^delivered m1 hello from the transport$' && has '^error m2 [a-z-]+' &&
	has '^delivered m3 .+XMILTER-TEST-MODIFY via transport' &&
	has '^delivered m4 last from the transport$' && hasnt '^delivered m2'
result "component (transport) messages are filtered" $?

client "${A[@]}" -t bob@$DOM -C "$COMP" -k "$SECRET" -K "127.0.0.1:$P_COMP" -f "4711@$COMP" -q 3 -T 40 \
	-n 500 -b "transport burst %n" message
rc=1
if has 'sent=500 delivered=500 errors=0 missing=0 '; then
	[ "$(grep '^delivered' "$OUT" | awk '{print $2}' | tr -d m | tr '\n' ' ')" = \
		"$(seq 1 500 | tr '\n' ' ')" ] && rc=0
fi
result "component burst of 500 (held and re-injected): all delivered, in order" $rc

if [ "$s2s" = yes ]; then
	xm_prosody_config b 127.0.0.2 $RDOM "$P_C2S" "s2s=yes" "xmilter=no"
	if xm_prosody_start b && xm_register b zoe $RDOM pw; then
		client -s "127.0.0.2:$P_C2S" -S "127.0.0.1:$P_C2S" -f "zoe@$RDOM" -p pw \
			-t "bob@$DOM" -P pw -T 20 -q 5 \
			-b "hello across servers" -b "XMILTER-TEST-REJECT across servers" message
		has '^delivered m1 hello across servers$' && has '^error m2 [a-z-]+' &&
			hasnt '^delivered m2' && [ "$(glue_log_count 'kind=message origin=s2s action=reject')" -ge 1 ]
		rc=$?
		[ $rc = 0 ] || grep -E 's2s|dialback' "$(xm_prosody_log a)" | tail -5 >>"$OUT"
		result "s2s messages from another server are filtered" $rc
	else
		OUT=$XM_TMP/b/prosody.out
		result "s2s messages from another server are filtered (second Prosody starts)" 1
		OUT=$XM_TMP/out
	fi
	xm_prosody_stop b
else
	skip "s2s messages from another server are filtered" "port 5269 or 127.0.0.2 unavailable"
fi

# ---- other kinds ------------------------------------------------------------

before=$(glue_log_count 'xmilter: id=[0-9]+ kind=subscription origin=[a-z0-9]+ action=')
client "${A[@]}" -f carol@$DOM -t dave@$DOM -q 2 subscribe
has '^subscribe-(delivered|error) m1' &&
	[ "$(glue_log_count 'xmilter: id=[0-9]+ kind=subscription origin=[a-z0-9]+ action=')" -gt "$before" ]
result "a subscription request reaches the daemon" $?

before=$(glue_log_count 'xmilter: id=[0-9]+ kind=transfer origin=[a-z0-9]+ action=')
client "${AB[@]}" -q 2 -o si -F "holiday-photos.jpg.exe" iq
has '^iq-(result|error) m1' &&
	[ "$(glue_log_count 'xmilter: id=[0-9]+ kind=transfer origin=[a-z0-9]+ action=')" -gt "$before" ]
result "a file-transfer offer (SI) reaches the daemon" $?

before=$(glue_log_count 'xmilter: id=[0-9]+ kind=transfer origin=[a-z0-9]+ action=')
client "${AB[@]}" -q 2 -o jingle -F "report.pdf" iq
has '^iq-(result|error) m1' &&
	[ "$(glue_log_count 'xmilter: id=[0-9]+ kind=transfer origin=[a-z0-9]+ action=')" -gt "$before" ]
result "a Jingle file offer reaches the daemon" $?

before=$(glue_log_count 'xmilter: id=[0-9]+ kind=upload origin=[a-z0-9]+ action=')
client "${AB[@]}" -q 2 -U "$UPLOAD" -F "XMILTER-TEST-REJECT.bin" -Z 2048 upload
has '^upload-(slot|error) m1' &&
	[ "$(glue_log_count 'xmilter: id=[0-9]+ kind=upload origin=[a-z0-9]+ action=')" -gt "$before" ]
result "an HTTP upload slot request reaches the daemon" $?

# ---- health -----------------------------------------------------------------

xm_prosody_shell a 'xmilter:health()' >"$OUT"
grep -Eq 'ok|degraded' "$OUT" && ! grep -q 'down' "$OUT"
result "health check (HELLO healthcheck=1) via the admin shell" $?

# ---- failures ---------------------------------------------------------------

xm_daemon_stop
sleep 0.3
client "${AB[@]}" -q 2 -b "daemon is down" -b "XMILTER-TEST-REJECT while down" message
has '^delivered m1 daemon is down$' && has '^delivered m2 XMILTER-TEST-REJECT while down$'
result "daemon down: fail-open delivers" $?

set_failure_policy reject
client "${AB[@]}" -q 2 -b "daemon is still down" message
has '^error m1 resource-constraint' && hasnt '^delivered m1'
result "daemon down, fail-closed: bounced" $?
set_failure_policy accept

connects=$(glue_log_count 'xmilter: connected to')
xm_daemon_start "$XM_TMP/xmilterd.yml" "$DLOG"
wait_glue_connected "$connects"
rc=$?
client "${AB[@]}" -q 2 -b "XMILTER-TEST-REJECT after restart" -b "clean after restart" message
[ $rc = 0 ] && has '^error m1 [a-z-]+' && has '^delivered m2 clean after restart$'
result "daemon restarted: glue reconnects, filtering resumes" $?

kill -STOP "$XM_DAEMON_PID"
client "${AB[@]}" -q 4 -T 20 -b "daemon hung" -b "XMILTER-TEST-REJECT daemon hung" message
has '^delivered m1 daemon hung$' && has '^delivered m2 XMILTER-TEST-REJECT daemon hung$' &&
	[ "$(glue_log_count 'failure=timeout policy=accept')" -ge 1 ]
result "daemon hung (SIGSTOP): timeout, fail-open" $?
kill -CONT "$XM_DAEMON_PID"
sleep 1
client "${AB[@]}" -q 2 -b "XMILTER-TEST-REJECT after the hang" -b "clean after the hang" message
has '^error m1 [a-z-]+' && has '^delivered m2 clean after the hang$'
result "daemon resumed: filtering resumes" $?

# a reload of xmilterd (SIGHUP) in the middle of traffic loses nothing
client "${AB[@]}" -q 3 -T 40 -n 300 -r 150 -b "traffic %n" -b "XMILTER-TEST-REJECT traffic %n" message &
cpid=$!
for _ in 1 2 3 4; do
	sleep 0.4
	kill -HUP "$XM_DAEMON_PID"
done
wait $cpid
has 'sent=600 ' && has ' missing=0 ' && [ "$(grep -c '^delivered' "$OUT")" = 300 ] &&
	[ "$(grep -c '^error' "$OUT")" = 300 ]
result "xmilterd reload (SIGHUP) under traffic: every message delivered or bounced" $?
[ "${XM_VERBOSE:-0}" = 1 ] || grep '^summary' "$OUT" | sed 's/^/# /'

xm_suite_final_checks

xm_suite_end
