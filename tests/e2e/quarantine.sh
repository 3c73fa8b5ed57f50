#!/bin/bash
# quarantine.sh - end to end: a quarantined message held in the store,
# listed, released through the glue and delivered exactly once
#
# Prosody (with mod_xmilter) + xmilterd (quarantine store: SQLite in the
# temporary directory) + the libstrophe test client, all started here on
# loopback. The client runs in the background with a long quiet time, so
# the receiver is online while `xmilter quarantine release` runs; every
# message it receives is one "delivered ID BODY" line (a second delivery
# of the same id would be a second line). Prints "ok N - name" per case
# and a closing "N passed, M failed"; a missing program is a failure
# (xm_suite_start).
#
# Environment: as run.sh, plus XMILTER (the command; default the build's).
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
: "${XMILTER:=$top_builddir/xmilter}"

xm_suite_start quarantine "${XM_SUITE_TIMEOUT:-180}" "$PROSODY" "$PROSODYCTL" "$XMILTERD" "$XMTEST_CLIENT" "$XMILTER"

# ---- set-up ---------------------------------------------------------------

DOM=a.example
SOCK=$XM_TMP/xmilterd.sock
QDIR=$XM_TMP/quarantine
DLOG=$XM_TMP/xmilterd.log
CONF=$XM_TMP/xmilterd.yml
P_C2S=$(xm_free_port)

cat >"$XM_TMP/rules.cf" <<'EOF'
body     XM_E2E_QUARANTINE  /XMILTER-TEST-QUARANTINE/
score    XM_E2E_QUARANTINE  12
EOF
xm_daemon_config "$CONF" "$SOCK" "$QDIR" "$XM_TMP/rules.cf"
cat >>"$CONF" <<EOF
quarantine:
  expiry: 7d
  purge_interval: 1s
  notice: both
  notice_jid: bob@$DOM
  admin_notice_text: "ADMIN: item {id} {from} -> {to} ({reason})"
EOF

xm_prosody_config a 127.0.0.1 $DOM "$P_C2S" "socket=$SOCK"
if ! xm_daemon_start "$CONF" "$DLOG" || ! xm_prosody_start a; then
	echo "not ok 1 - xmilterd and prosody start"
	echo "0 passed, 1 failed"
	exit 1
fi
for u in alice bob; do
	xm_register a "$u" $DOM pw || xm_log "could not register $u"
done
wait_glue_connected 0
result "glue connects to xmilterd" $?

A=(-s "127.0.0.1:$P_C2S" -p pw -P pw -T 60 -f "alice@$DOM" -t "bob@$DOM")

# q ARGS... - xmilter quarantine with the suite's config, output in $OUT
q() {
	"$XMILTER" quarantine "$1" -c "$CONF" "${@:2}" >"$OUT" 2>&1
}

# release_once_only ID LABEL BODY - release ID (confirmed by the glue,
# exit 0), a second release refused (exit 2), and the background client
# ($bgpid, output in $BG) saw BODY delivered exactly once
release_once_only() {
	local id=$1 label=$2 body=$3 rc
	q release "$id"
	rc=$?
	[ $rc = 0 ] && has "^released $id via prosody/"
	result "${label}release: confirmed by the glue (exit 0)" $?
	q release "$id"
	rc=$?
	[ $rc = 2 ] && has "^refused: item $id is released \\(since 20[0-9-]+T[0-9:.]+Z\\), not held$"
	result "${label}a second release is refused (exit 2)" $?
	wait "$bgpid"
	xm_forget_pid "$bgpid"
	cp "$BG" "$OUT"
	[ "$(grep -c '^delivered m1 ' "$BG")" = 1 ] && has "^delivered m1 $body\$" &&
		hasnt '^missing m1' && hasnt '^error m1'
	result "${label}released message delivered to the recipient exactly once" $?
}

# wait_item STATE REGEX [AFTER] - wait until `list STATE` shows a matching
# row with an id above AFTER (default 0); the newest such id in $ID
wait_item() {
	local n=100
	ID=
	while [ $n -gt 0 ]; do
		"$XMILTER" quarantine list -c "$CONF" "$1" >"$XM_TMP/list" 2>&1
		ID=$(grep -E -- "$2" "$XM_TMP/list" | tail -1 | awk '{print $1}')
		[ -n "$ID" ] && [ "$ID" -gt "${3:-0}" ] && return 0
		n=$((n - 1))
		sleep 0.1
	done
	cp "$XM_TMP/list" "$OUT"
	return 1
}

# wait_out FILE REGEX - wait until a background client printed a line
wait_out() {
	local n=100
	while [ $n -gt 0 ]; do
		grep -Eq -- "$2" "$1" && return 0
		n=$((n - 1))
		sleep 0.1
	done
	return 1
}

# ---- release negotiated -----------------------------------------------------

# with a glue connected the daemon looks the item up (and finds none)
q release 999
rc=$?
[ $rc = 2 ] && has '^refused: no quarantined item 999$'
result "release of an unknown item: refused (exit 2)" $?

q list
has '^no items$'
result "list: an empty store" $?

# ---- quarantine, notices, release exactly once --------------------------------

BG=$XM_TMP/bg.out
xm_client "${A[@]}" -q 6 -b "XMILTER-TEST-QUARANTINE hold me" message >"$BG" 2>&1 &
bgpid=$!
XM_PIDS+=($bgpid)

wait_item held "XM_E2E_QUARANTINE +alice@$DOM/[^ ]* -> bob@$DOM"
rc=$?
Q1=$ID
cp "$XM_TMP/list" "$OUT"
[ $rc = 0 ] && has "^$Q1 +held +20[0-9-]+T"
result "quarantined message is listed as held (item ${Q1:-?})" $?

wait_out "$BG" "ADMIN: item $Q1 alice@$DOM/[^ ]+ -> bob@$DOM \\(XM_E2E_QUARANTINE\\)" &&
	wait_out "$BG" "A message to you from alice@$DOM/[^ ]+ was held .*quarantine item $Q1\\)"
rc=$?
cp "$BG" "$OUT"
[ $rc = 0 ] && hasnt '^delivered m1'
result "notices reach the recipient and the admin JID; message not delivered" $?

q show "$Q1"
has '^state: held$' && has '^reason: XM_E2E_QUARANTINE$' && has '^symbols: XM_E2E_QUARANTINE 12.00$' &&
	has "^to: bob@$DOM\$" && has "^<message .*XMILTER-TEST-QUARANTINE hold me"
result "show: the item and its event" $?

"$XMILTER" quarantine show -c "$CONF" -e "$Q1" | "$XMILTER" check -c "$CONF" - >"$OUT" 2>&1
has '"action":"quarantine"' && has '"reason":"XM_E2E_QUARANTINE"'
result "show -e: the stored event replays through xmilter check" $?

release_once_only "$Q1" "" "XMILTER-TEST-QUARANTINE hold me"

q show "$Q1"
has '^state: released$' && has '^released: 20[0-9-]+T'
result "the store says released" $?

# ---- delete ----------------------------------------------------------------

client "${A[@]}" -q 1 -b "XMILTER-TEST-QUARANTINE to be deleted" message
wait_item held "bob@$DOM" "$Q1"
Q2=$ID
q delete "$Q2"
rc=$?
[ $rc = 0 ] && has "^deleted $Q2\$"
result "delete a held item" $?

q release "$Q2"
rc=$?
[ $rc = 2 ] && has "^refused: item $Q2 is deleted"
result "a deleted item cannot be released" $?

q show "$Q2"
has '^state: deleted$' && has '^\(content deleted\)$' && hasnt 'to be deleted'
result "delete erases the content" $?

q list released
[ "$(grep -c '^[0-9]' "$OUT")" = 1 ] && has "^$Q1 +released "
result "list STATE filters" $?

q purge
has '^purged 0 expired items$'
result "purge: nothing has expired yet" $?

# the daemon's own purge (every second here): item 2 made to expire by
# hand, through SQLite itself
sqlite3 "$QDIR/quarantine.db" "UPDATE quarantine SET expires = 0 WHERE id = $Q2" &&
	xm_wait_log "$DLOG" "quarantine: purged 1 expired item\$" 10 &&
	q show "$Q2"
[ $? = 2 ] && has "no quarantined item $Q2\$"
result "the daemon purges an expired item" $?
q show "$Q1"
has '^state: released$'
result "... and keeps the others" $?

# ---- the glue goes away before it confirms ------------------------------------

client "${A[@]}" -q 1 -b "XMILTER-TEST-QUARANTINE lost glue" message
wait_item held "bob@$DOM" "$Q2"
Q3=$ID
client "${A[@]}" -q 1 -b "XMILTER-TEST-QUARANTINE no glue" message
wait_item held "bob@$DOM" "$Q3"
Q4=$ID
# a stopped Prosody takes the RELEASE frame but never answers; killed, it
# never delivers: the item must stay "releasing", never go back to held
ppid=$(cat "$XM_TMP/a/prosody.pid")
kill -STOP "$ppid"
q release -t 2 "$Q3"
rc=$?
[ $rc = 3 ] && has "^unknown: no answer from the daemon within 2s"
result "release with a hung glue: no confirmation (exit 3)" $?
kill -KILL "$ppid"
xm_wait_pid "$ppid" 5
xm_wait_log "$DLOG" "release item=$Q3 result=unknown reason=.*connection closed" 5
q show "$Q3"
has '^state: releasing$'
result "glue gone before confirming: the item stays releasing" $?

q release "$Q3"
rc=$?
[ $rc = 2 ] && has "^refused: item $Q3 is releasing"
result "an item left releasing is not released again" $?

q release "$Q4"
rc=$?
[ $rc = 2 ] && has '^failed: no glue with the release capability is connected$'
result "release with no glue connected fails (exit 2)" $?
q show "$Q4"
has '^state: held$'
result "... and the item stays held" $?

xm_daemon_stop
q release "$Q4"
rc=$?
[ $rc = 3 ] && has '^unreachable: '
result "release with the daemon down: unreachable (exit 3)" $?

# ---- the same on a PostgreSQL store ---------------------------------------------
#
# A private PostgreSQL on 127.0.0.1 (initdb into the temporary directory; as
# the postgres user when we are root: the server refuses root), xmilterd
# restarted on it, Prosody started again.

pg_start() {
	local as=() n=100
	PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || { PGWHY="no PostgreSQL server (package postgresql)"; return 1; }
	PGDIR=$XM_TMP/pg
	P_PG=$(xm_free_port $((P_C2S + 10)))
	mkdir -p "$PGDIR"
	if [ "$(id -u)" = 0 ]; then
		chown postgres "$PGDIR" || { PGWHY="no postgres user"; return 1; }
		as=(runuser -u postgres --)
	fi
	"${as[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U xmtest >"$PGDIR/initdb.log" 2>&1 ||
		{ PGWHY="initdb failed"; return 1; }
	"${as[@]}" "$PGBIN/postgres" -D "$PGDIR/data" -k "$PGDIR" -c listen_addresses=127.0.0.1 \
		-p "$P_PG" >"$PGDIR/server.log" 2>&1 &
	XM_PIDS+=($!)
	while ! "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$P_PG"; do
		n=$((n - 1))
		[ $n -le 0 ] && { PGWHY="postgres did not start"; return 1; }
		sleep 0.1
	done
	XM_PIDS+=("$(head -1 "$PGDIR/data/postmaster.pid")")
}

if pg_start; then
	CONF_PG=$XM_TMP/xmilterd-pg.yml
	cp "$CONF" "$CONF_PG"
	cat >>"$CONF_PG" <<EOF
  backend: postgresql
  pg_conninfo: "host=127.0.0.1 port=$P_PG dbname=postgres user=xmtest"
EOF
	CONF=$CONF_PG
	connects=$(glue_log_count 'xmilter: connected to')
	if xm_daemon_start "$CONF" "$DLOG" && xm_prosody_start a && wait_glue_connected "$connects"; then
		xm_client "${A[@]}" -q 6 -b "XMILTER-TEST-QUARANTINE on postgresql" message >"$BG" 2>&1 &
		bgpid=$!
		XM_PIDS+=($bgpid)
		wait_item held "XM_E2E_QUARANTINE +alice@$DOM/[^ ]* -> bob@$DOM"
		rc=$?
		P1=$ID
		cp "$XM_TMP/list" "$OUT"
		[ $rc = 0 ] && [ "$P1" = 1 ] && grep -q "quarantine store: postgresql" "$DLOG"
		result "postgresql store: the quarantined message is listed (item ${P1:-?})" $?
		release_once_only "$P1" "postgresql store: " \
			"XMILTER-TEST-QUARANTINE on postgresql"

		# the store goes away: a quarantine verdict becomes a reject,
		# never a silent drop (SIGINT: PostgreSQL's fast shutdown)
		kill -INT "$(head -1 "$PGDIR/data/postmaster.pid")"
		n=100
		while "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$P_PG" && [ $n -gt 0 ]; do
			n=$((n - 1))
			sleep 0.1
		done
		client "${A[@]}" -q 2 -b "XMILTER-TEST-QUARANTINE store down" message
		has '^error m1 internal-server-error ' && hasnt '^delivered m1' &&
			grep -q "quarantine: request [0-9]*: postgresql: " "$DLOG"
		result "store down: the quarantine becomes a reject (internal-server-error)" $?
	else
		skip "postgresql store" "xmilterd or prosody did not start again"
	fi
else
	skip "postgresql store" "$PGWHY"
fi

xm_suite_end
