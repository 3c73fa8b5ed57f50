#!/bin/bash
# links.sh - link reputation end to end: Prosody + mod_xmilter + xmilterd
# with the links and dnsbl filters, a real DNS server (dnsmasq) serving a
# block-list zone on loopback, and Prosody's own publish-subscribe service
# carrying a real-time block list.
#
# Cases: a link listed in the DNS block list is rejected, an unlisted one
# passes; a link on the local block list is rejected; a worm-style link
# (raw IP, odd port) arrives defanged; a normal link arrives unchanged; an
# RTBL item present at start-up is enforced; an item published live makes
# the next message with that domain score (rejected), its retraction makes
# it pass again; the verdict log names the DNSBL answer.
#
# Prints "ok N - name" / "not ok N - name" and a closing "N passed, M
# failed"; a missing program is a failure (xm_suite_start).
# Environment as run.sh (XM_SUITE_TIMEOUT default 170, XM_VERBOSE=1).
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

: "${DNSMASQ:=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)}"
XMTEST_PUBSUB=${XMTEST_PUBSUB:-$top_builddir/tests/e2e/xmtest-pubsub}

xm_suite_start links "${XM_SUITE_TIMEOUT:-170}" "$PROSODY" "$PROSODYCTL" "$XMILTERD" "$XMTEST_CLIENT" "$XMTEST_PUBSUB" "$DNSMASQ"

DOM=a.example
PUBSUB=pubsub.$DOM
NODE=spam_source_domains
ZONE=multi.test.bl
SOCK=$XM_TMP/xmilterd.sock
DLOG=$XM_TMP/xmilterd.log
P_C2S=$(xm_free_port)
P_BL=$(xm_free_port $((P_C2S + 1)))

# ---- the DNS block list: dnsmasq answering for one zone ---------------------
# listed.example and 198.51.100.99 are listed (127.0.0.2); every other name
# in the zone is NXDOMAIN (--local), as a real list answers
"$DNSMASQ" --no-daemon --conf-file=/dev/null --pid-file= --port "$P_BL" \
	--listen-address 127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
	--local=/$ZONE/ \
	--address=/listed.example.$ZONE/127.0.0.2 \
	--address=/99.100.51.198.$ZONE/127.0.0.4 \
	--log-queries --log-facility="$XM_TMP/dnsmasq.log" \
	>"$XM_TMP/dnsmasq.out" 2>&1 &
XM_PIDS+=($!)
n=100
until grep -q "listed.example" "$XM_TMP/dnsmasq.log" 2>/dev/null || [ $n -le 0 ]; do
	# probe until it answers (dnsmasq logs the query)
	lua5.4 -e "local s=require'socket'.udp(); s:settimeout(0.2)
		s:setpeername('127.0.0.1', $P_BL)
		s:send('\\0\\1\\1\\0\\0\\1\\0\\0\\0\\0\\0\\0\\6listed\\7example\\5multi\\4test\\2bl\\0\\0\\1\\0\\1')
		s:receive()" 2>/dev/null
	n=$((n - 1))
done
if ! grep -q "listed.example" "$XM_TMP/dnsmasq.log" 2>/dev/null; then
	echo "not ok 1 - dnsmasq answers on 127.0.0.1:$P_BL"
	cat "$XM_TMP/dnsmasq.out" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

# ---- Prosody with a publish-subscribe service --------------------------------
xm_hosts_add 127.0.0.1 $DOM
# the publisher is an admin: Prosody 0.12 lets only admins create nodes
xm_prosody_config a 127.0.0.1 $DOM "$P_C2S" "socket=$SOCK" \
	"extra=admins = { \"publisher@$DOM\" }" \
	"extra=Component \"$PUBSUB\" \"pubsub\"" \
	"extra=	autocreate_on_publish = true"
if ! xm_prosody_start a; then
	echo "not ok 1 - prosody starts"
	echo "0 passed, 1 failed"
	exit 1
fi
for u in alice bob carol dave erin frank mallory publisher rtbl; do
	xm_register a "$u" $DOM pw || xm_log "could not register $u"
done

pub() { # pub [-n NODE] publish|retract ITEM... - output in $OUT
	local node=$NODE
	if [ "$1" = -n ]; then node=$2; shift 2; fi
	"$XMTEST_PUBSUB" -s "127.0.0.1:$P_C2S" -j "publisher@$DOM" -p pw \
		-S "$PUBSUB" -n "$node" -T 15 "$@" >"$OUT" 2>&1
}
JNODE=spam_source_jids_sha256
MALLORY_SHA=$(printf '%s' "mallory@$DOM" | sha256sum | cut -d' ' -f1)

# the node exists before the daemon subscribes: seed it with one entry
pub publish seeded.example
rc=1
if has '^published seeded.example$'; then
	pub -n $JNODE publish "$MALLORY_SHA"
	has "^published $MALLORY_SHA\$" && rc=0
fi
result "publisher creates the domain and JID block-list nodes on Prosody's pubsub" $rc

# ---- xmilterd with links + dnsbl ---------------------------------------------
cat >"$XM_TMP/block.list" <<'EOF'
# local block list (links.block_files)
blocked.example
EOF
mkdir -p "$XM_TMP/quarantine"
cat >"$XM_TMP/xmilterd.yml" <<EOF
daemon:
  socket: $SOCK
  quarantine_dir: $XM_TMP/quarantine
  log_level: debug
actions:
  modify: 5
  quarantine: none
  reject: 15
  modify_warning: "[links defanged]"
filters:
  rules:
    enabled: false
  links:
    block_files: [ $XM_TMP/block.list ]
    rtbl_jid: rtbl@$DOM
    rtbl_password: pw
    rtbl_server: 127.0.0.1:$P_C2S
    rtbl_service: $PUBSUB
    rtbl_domain_nodes: [ $NODE, late_domains ]
    rtbl_jid_nodes: [ $JNODE ]
    score_rtbl_jid: 20
    rtbl_tls: false
    rtbl_reconnect: 0.5s
  dnsbl:
    zones: [ $ZONE=20 ]
    servers: [ 127.0.0.1:$P_BL ]
    timeout: 3s
EOF
if ! xm_daemon_start "$XM_TMP/xmilterd.yml" "$DLOG"; then
	echo "not ok 2 - xmilterd starts"
	echo "1 passed, 1 failed"
	exit 1
fi
wait_glue_connected 0
result "glue connects to xmilterd" $?

xm_wait_log "$DLOG" "rtbl: $PUBSUB/$NODE: 1 items" 15 &&
	xm_wait_log "$DLOG" "rtbl: $PUBSUB/$JNODE: 1 items" 5
result "RTBL subscriber logs in, subscribes and fetches both nodes (1 item each)" $?

A=(-s "127.0.0.1:$P_C2S" -p pw -P pw -T 20 -f "alice@$DOM" -t "bob@$DOM" -q 2)

# ---- DNS block list ----------------------------------------------------------
client "${A[@]}" -b "cheap meds http://www.listed.example/buy" message
has '^error m1 [a-z-]+ ' && hasnt '^delivered m1'
result "dnsbl: a link whose domain the DNS list names is rejected" $?

grep -Eq "verdict .*action=reject .*DNSBL\(20" "$DLOG"
rc=$?
grep -q "listed.example.$ZONE" "$XM_TMP/dnsmasq.log" || rc=1
result "dnsbl: the query reached dnsmasq and the verdict names DNSBL" $rc

client "${A[@]}" -b "see http://198.51.100.99/x" message
has '^error m1 [a-z-]+ ' && hasnt '^delivered m1'
result "dnsbl: a listed IP address (reversed octets) is rejected" $?

client "${A[@]}" -b "docs at https://docs.unlisted.example/guide" message
has '^delivered m1 docs at https://docs.unlisted.example/guide$'
result "dnsbl: an unlisted link passes unchanged (NXDOMAIN)" $?

# ---- local lists and heuristics ------------------------------------------------
client "${A[@]}" -b "free stuff at https://blocked.example/win" message
has '^error m1 [a-z-]+ ' && hasnt '^delivered m1'
result "local block list: a listed domain is rejected" $?

client "${A[@]}" -b "lol is this you? http://198.51.100.7:8080/photo.php" message
has '^delivered m1 \[links defanged\]\\nlol is this you\? hxxp://198\[\.\]51\[\.\]100\[\.\]7:8080/photo\.php$'
result "heuristics: a raw-IP link on an odd port arrives defanged" $?

client "${A[@]}" -b "release notes: https://www.debian.org/News/" message
has '^delivered m1 release notes: https://www.debian.org/News/$'
result "a normal link passes unchanged" $?

# ---- real-time block list over pubsub -------------------------------------------
client "${A[@]}" -b "hi http://www.seeded.example/" message
has '^error m1 [a-z-]+ ' && hasnt '^delivered m1'
result "rtbl: an entry fetched at start-up is enforced" $?

client "${A[@]}" -b "try http://spam-live.example/offer" message
has '^delivered m1 try http://spam-live.example/offer$'
result "rtbl: a domain not (yet) listed passes" $?

pub publish spam-live.example
rc=1
if has '^published spam-live.example$' &&
	xm_wait_log "$DLOG" "rtbl: $PUBSUB/$NODE: 1 listed" 10; then
	client "${A[@]}" -b "try http://spam-live.example/offer" message
	has '^error m1 [a-z-]+ ' && hasnt '^delivered m1' && rc=0
fi
result "rtbl: an item published live makes the next message score (rejected)" $rc

pub retract spam-live.example
rc=1
if has '^retracted spam-live.example$' &&
	xm_wait_log "$DLOG" "rtbl: $PUBSUB/$NODE: 0 listed, 1 unlisted" 10; then
	client "${A[@]}" -b "try http://spam-live.example/offer" message
	has '^delivered m1 try http://spam-live.example/offer$' && rc=0
fi
result "rtbl: its retraction makes the same message pass" $rc

client -s "127.0.0.1:$P_C2S" -p pw -P pw -T 20 -f "mallory@$DOM" -t "bob@$DOM" \
	-q 2 -b "hi bob, no links at all" message
rc=1
if has '^error m1 [a-z-]+ ' && hasnt '^delivered m1'; then
	grep -Eq "verdict .*from=\"?mallory@$DOM.*LINKS_RTBL_JID\(20" "$DLOG" && rc=0
fi
result "rtbl: a sender whose bare JID's SHA-256 is listed is rejected" $rc

# ---- the dnsbl cache and time-outs, through xmilter check ---------------------
cat >"$XM_TMP/cache.events" <<'EOF'
origin=c2s
auth=alice@a.example

<message from='alice@a.example/pc' to='bob@a.example' id='c1'><body>see http://cachetest.example/</body></message>

origin=c2s
auth=alice@a.example

<message from='alice@a.example/pc' to='bob@a.example' id='c2'><body>again https://www.cachetest.example/x</body></message>

origin=c2s
auth=alice@a.example

<message from='alice@a.example/pc' to='bob@a.example' id='c3'><body>and http://listed.example/ twice http://listed.example/y</body></message>
EOF
cat >"$XM_TMP/check-dns.yml" <<EOF
filters:
  rules: {enabled: false}
  dnsbl:
    zones: [ $ZONE ]
    servers: [ 127.0.0.1:$P_BL ]
EOF
"$top_builddir/xmilter" check -c "$XM_TMP/check-dns.yml" "$XM_TMP/cache.events" >"$OUT" 2>&1
rc=1
q=$(grep -c "query\[A\] cachetest.example.$ZONE" "$XM_TMP/dnsmasq.log")
if [ "$q" = 1 ] && [ "$(grep -c '"DNSBL"' "$OUT")" = 1 ] && grep -q '"id":"c3".*listed.example in' "$OUT"; then
	rc=0
else
	echo "cachetest queries: $q" >>"$OUT"
fi
result "dnsbl: one query per name and process (cache), one symbol per zone" $rc

P_HOLE=$(xm_free_port $((P_BL + 1)))
# a DNS server that never answers; it notes every query it swallows
lua5.4 -e "local s = require'socket'.udp(); assert(s:setsockname('127.0.0.1', $P_HOLE))
	while true do s:receivefrom(); local f = io.open('$XM_TMP/hole.log', 'a')
	f:write('query\\n'); f:close() end" &
XM_PIDS+=($!)
cat >"$XM_TMP/check-hole.yml" <<EOF
filters:
  rules: {enabled: false}
  dnsbl:
    zones: [ $ZONE ]
    servers: [ 127.0.0.1:$P_HOLE ]
    timeout: 0.5s
EOF
"$top_builddir/xmilter" check -c "$XM_TMP/check-hole.yml" "$XM_TMP/cache.events" >"$OUT" 2>&1
[ "$(grep -c '"DNSBL_FAIL".*timed out' "$OUT")" = 3 ] && ! grep -q '"DNSBL"' "$OUT"
result "dnsbl: a server that never answers gives DNSBL_FAIL (timed out), no listing" $?

# a node that did not exist when the subscriber logged in
pub -n late_domains publish late-spam.example
rc=1
if has '^published late-spam.example$' &&
	xm_wait_log "$DLOG" "rtbl: $PUBSUB/late_domains: 1 items" 10; then
	client "${A[@]}" -b "see http://late-spam.example/" message
	has '^error m1 [a-z-]+ ' && hasnt '^delivered m1' && rc=0
fi
result "rtbl: a node created after start-up is fetched when it appears" $rc

# ---- reload keeps the subscriber ---------------------------------------------------
before=$(grep -c "rtbl: subscriber .* started" "$DLOG")
echo "also-blocked.example" >>"$XM_TMP/block.list"
kill -HUP "$XM_DAEMON_PID"
xm_wait_log "$DLOG" "reloaded" 10
client "${A[@]}" -b "see https://also-blocked.example/" message
rc=1
if has '^error m1 [a-z-]+ '; then
	[ "$(grep -c "rtbl: subscriber .* started" "$DLOG")" = "$before" ] && rc=0 ||
		echo "the RTBL subscriber was started again" >>"$OUT"
fi
result "SIGHUP re-reads the block list and keeps the RTBL subscriber" $rc

# ---- a DNS server that never answers: only link look-ups wait ---------------------
# A's link waits the whole timeout on a worker; B's link, arriving
# meanwhile, finds the one DNS slot taken and skips its look-up; C, no
# link, is answered on the event loop before A's verdict
conns=$(glue_log_count 'xmilter: connected to')
xm_daemon_stop
sed -i -e "s/^    servers: .*/    servers: [ 127.0.0.1:$P_HOLE ]/" \
	-e "s/^    timeout: .*/    timeout: 1.5s\n    max_waiting: 1/" "$XM_TMP/xmilterd.yml"
rc=1
if xm_daemon_start "$XM_TMP/xmilterd.yml" "$DLOG" && wait_glue_connected "$conns"; then
	xm_client -s "127.0.0.1:$P_C2S" -p pw -P pw -T 20 -f "alice@$DOM" -t "bob@$DOM" \
		-q 4 -b "slow http://never-answers.example/a" message >"$XM_TMP/a.out" 2>&1 &
	apid=$!
	# A's look-up is in flight once the black hole has one more query
	before=$(grep -c . "$XM_TMP/hole.log" 2>/dev/null || echo 0)
	n=200
	until [ "$(grep -c . "$XM_TMP/hole.log" 2>/dev/null || echo 0)" -gt "$before" ] ||
		[ $n -le 0 ]; do
		sleep 0.05; n=$((n - 1))
	done
	client -s "127.0.0.1:$P_C2S" -p pw -P pw -T 20 -f "erin@$DOM" -t "frank@$DOM" \
		-q 1 -b "plain words while DNS hangs" message
	has '^delivered m1 plain words while DNS hangs$' && cok=1 || cok=0
	client -s "127.0.0.1:$P_C2S" -p pw -P pw -T 20 -f "carol@$DOM" -t "dave@$DOM" \
		-q 1 -b "meanwhile http://also-slow.example/b" message
	has '^delivered m1 meanwhile http://also-slow.example/b$' && bok=1 || bok=0
	wait $apid
	cp "$XM_TMP/a.out" "$OUT"
	la=$(grep -n 'verdict .*from="\?alice@.*DNSBL_FAIL' "$DLOG" | tail -1 | cut -d: -f1)
	lc=$(grep -n 'verdict .*from="\?erin@' "$DLOG" | tail -1 | cut -d: -f1)
	if [ "$cok" = 1 ] && [ "$bok" = 1 ] && has '^delivered m1 slow' &&
		[ -n "$la" ] && [ -n "$lc" ] && [ "$lc" -lt "$la" ] &&
		grep -q 'dnsbl: DNS servers not answering' "$DLOG" &&
		grep -q 'dnsbl: 1 look-ups skipped' "$DLOG" &&
		grep -Eq 'verdict .*from="?carol@.*DNSBL_FAIL' "$DLOG"; then
		rc=0
	else
		echo "plain=$cok second-link=$bok verdict lines: alice $la erin $lc" >>"$OUT"
		grep -E 'verdict|DNSBL' "$DLOG" | tail -5 >>"$OUT"
	fi
fi
result "dnsbl: a dead DNS server holds only its link's verdict; plain chat answered first, a second link skips" $rc

xm_suite_final_checks
xm_suite_end
