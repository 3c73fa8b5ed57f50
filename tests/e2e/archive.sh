#!/bin/bash
# archive.sh - the compliance archive end to end: Prosody + mod_xmilter +
# xmilterd archiving to SQLite, hash-chained JSON lines and a real
# PostgreSQL started here on loopback; search, .eml export read by Python's
# email package, verify; must-archive with PostgreSQL stopped; two daemons
# sharing one PostgreSQL archive; kill -9 of xmilterd under load, then
# verify and a check that every acknowledged verdict's record is there.
#
# Prints "ok N - name" / "not ok N - name" and "N passed, M failed"; a
# missing program is a failure (xm_suite_start). Environment as tests/e2e/run.sh,
# plus XMILTER (the command) and PG_BINDIR (PostgreSQL's programs).
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
: "${XMILTER:=$top_builddir/xmilter}"
: "${PG_BINDIR:=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
LOAD=$here/archive-load.py
EMLCHECK=$here/eml-check.py

xm_suite_start archive "${XM_SUITE_TIMEOUT:-200}" "$PROSODY" "$PROSODYCTL" "$XMILTERD" "$XMTEST_CLIENT" "$XMILTER"  "$PG_BINDIR/postgres" "$PG_BINDIR/initdb" "$(command -v python3)"

DOM=a.example
SOCK=$XM_TMP/xmilterd.sock
CFG=$XM_TMP/xmilterd.yml
DLOG=$XM_TMP/xmilterd.log
P_C2S=$(xm_free_port)

# ---- PostgreSQL, our own, on loopback ----------------------------------------

PGDIR=$XM_TMP/pg
P_PG=$(xm_free_port $((P_C2S + 1)))
mkdir -p "$PGDIR"
AS_PG=()
if [ "$(id -u)" = 0 ]; then
	# postgres refuses to run as root: its directory must be the postgres
	# user's, and setpriv execs in place so $! is the server itself
	chown postgres: "$PGDIR"
	AS_PG=(setpriv --reuid=postgres --regid=postgres --clear-groups)
fi
PG_PID=
pg_start() {
	"${AS_PG[@]}" "$PG_BINDIR/postgres" -D "$PGDIR/data" -k "$PGDIR" \
		-c listen_addresses=127.0.0.1 -p "$P_PG" -c fsync=on \
		>>"$PGDIR/server.log" 2>&1 &
	PG_PID=$!
	XM_PIDS+=($PG_PID)
	xm_wait_port 127.0.0.1 "$P_PG" 20
}
pg_stop() {
	kill -INT "$PG_PID" 2>/dev/null # fast shutdown
	xm_wait_pid "$PG_PID" 10
	xm_forget_pid "$PG_PID"
}
PGINFO="host=127.0.0.1 port=$P_PG user=xm dbname=postgres connect_timeout=2"
if ! "${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$PGDIR/data" -A trust -U xm \
	--no-sync >"$PGDIR/initdb.log" 2>&1 || ! pg_start; then
	OUT=$PGDIR/initdb.log
	result "PostgreSQL starts on loopback" 1
	xm_suite_end
	exit 1
fi

# ---- xmilterd and Prosody ----------------------------------------------------

cat >"$XM_TMP/rules.cf" <<'EOF'
body     XM_E2E_REJECT      /XMILTER-TEST-REJECT/
score    XM_E2E_REJECT      20
EOF
xm_daemon_config "$CFG" "$SOCK" "$XM_TMP/quarantine" "$XM_TMP/rules.cf"
cat >>"$CFG" <<EOF
archive:
  node: e2e-a
  on_failure: reject
  timeout: 3s
  sinks:
    - name: db
      type: sqlite
      path: $XM_TMP/archive.db
    - name: chain
      type: jsonl
      path: $XM_TMP/chain
      guarantee: must-archive
    - name: blocked
      type: sqlite
      path: $XM_TMP/blocked.db
      actions: [quarantine, reject, discard]
    - name: pg
      type: postgresql
      conninfo: $PGINFO
      guarantee: must-archive
      restart_delay: 200ms
EOF
xm_prosody_config a 127.0.0.1 $DOM "$P_C2S" "socket=$SOCK"
if ! xm_daemon_start "$CFG" "$DLOG" || ! xm_prosody_start a; then
	echo "not ok 1 - xmilterd and prosody start"
	echo "0 passed, 1 failed"
	exit 1
fi
for u in alice bob; do xm_register a "$u" $DOM pw || xm_log "could not register $u"; done
wait_glue_connected 0
result "glue connects to an archiving xmilterd" $?

A=(-s "127.0.0.1:$P_C2S" -p pw -P pw -T 20 -f "alice@$DOM" -t "bob@$DOM")
X=("$XMILTER" archive)

# search_until SINK ARGS... - search until a record shows (best-effort sinks
# write in the background); output in $OUT
search_until() {
	local n=50
	while :; do
		"${X[@]}" search -c "$CFG" -s "$@" >"$OUT" 2>&1
		grep -q ' -> ' "$OUT" && return 0
		n=$((n - 1))
		[ "$n" -le 0 ] && return 1
		sleep 0.1
	done
}

# health_line SINK - the daemon's health line for one sink
health_line() { "$XMILTER" health -s "$SOCK" 2>&1 | grep "^archive=$1 "; }

# ---- archived and found --------------------------------------------------------

client "${A[@]}" -q 2 -b "quarterly figures ARCHTOKENONE attached" \
	-b "XMILTER-TEST-REJECT buy now ARCHTOKENTWO" message
has '^delivered m1 ' && has '^error m2 '
result "through Prosody: one delivered, one rejected" $?

search_until db --text ARCHTOKENONE && grep -q "accept 0 alice@$DOM -> bob@$DOM: quarterly figures" "$OUT"
result "sqlite: the delivered message is found by full-text search" $?

search_until db --jid "bob@$DOM" --verdict reject && grep -q 'ARCHTOKENTWO' "$OUT" &&
	! grep -q ARCHTOKENONE "$OUT"
result "sqlite: search by JID and verdict" $?

search_until blocked --jid "alice@$DOM" && grep -q ARCHTOKENTWO "$OUT" && ! grep -q ARCHTOKENONE "$OUT"
result "selection rule: the 'only blocked' sink has the rejection only" $?

search_until chain --text ARCHTOKENONE && search_until pg --text ARCHTOKENONE
result "jsonl and postgresql sinks (must-archive) have it too" $?

"${X[@]}" verify -c "$CFG" -s chain >"$OUT" 2>&1 && grep -q 'intact: [0-9]* records' "$OUT"
result "archive verify: the chain is intact" $?

rm -rf "$XM_TMP/eml"
"${X[@]}" export -c "$CFG" -s db --jid "alice@$DOM" --format eml -o "$XM_TMP/eml" >"$OUT" 2>&1 &&
	python3 "$EMLCHECK" "$XM_TMP/eml" ARCHTOKENONE "alice@$DOM" "bob@$DOM" >>"$OUT" 2>&1
rc=$?
tail -1 "$OUT" | sed 's/^/#   /' >&2
result "export to .eml: Python's email package reads From/To/Date/body/event" $rc

"${X[@]}" export -c "$CFG" -s pg --text ARCHTOKENONE >"$OUT" 2>&1 &&
	python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert len(r)==1 and r[0]["node"]=="e2e-a" and "ARCHTOKENONE" in r[0]["event"], r' "$OUT" >>"$OUT" 2>&1
result "export as JSON lines: one record with the event text as received" $?

health_line pg >"$OUT" && grep -q 'state=ok' "$OUT" && grep -q 'written=[1-9]' "$OUT"
result "health shows each sink's counters" $?

kill -HUP "$XM_DAEMON_PID"
xm_wait_log "$DLOG" 'reloaded' 10
client "${A[@]}" -q 2 -b "after a reload ARCHTOKENRELOAD" message
has '^delivered m1 ' && search_until db --text ARCHTOKENRELOAD && search_until chain --text ARCHTOKENRELOAD
result "after SIGHUP the sinks go on (they keep the configuration they started with)" $?

# ---- must-archive with the archive unavailable ----------------------------------

pg_stop
client "${A[@]}" -q 2 -b "while the archive is down ARCHTOKENTHREE" message
rc=1
if has '^error m1 ' && hasnt '^delivered m1'; then
	health_line pg >>"$OUT" && grep -q 'must-failed=[1-9]' "$OUT" && rc=0
fi
result "must-archive, PostgreSQL stopped: the stanza is refused, counted" $rc

grep -q 'archive: id=[0-9]* could not be archived: rejected' "$DLOG"
result "the failure is logged" $?

pg_start
n=100
until health_line pg | grep -q 'state=ok'; do
	n=$((n - 1)); [ "$n" -le 0 ] && break; sleep 0.1
done
client "${A[@]}" -q 2 -b "the archive is back ARCHTOKENFOUR" message
has '^delivered m1 ' && search_until pg --text ARCHTOKENFOUR
result "PostgreSQL back: reconnected, delivered and archived again" $?

# ---- two daemons, one PostgreSQL archive -------------------------------------------

SOCK2=$XM_TMP/xmilterd2.sock
cat >"$XM_TMP/second.yml" <<EOF
daemon:
  socket: $SOCK2
  quarantine_dir: $XM_TMP/quarantine
  log_verdicts: false
archive:
  node: e2e-b
  sinks:
    - name: pg
      type: postgresql
      conninfo: $PGINFO
      guarantee: must-archive
EOF
"$XMILTERD" -c "$XM_TMP/second.yml" >>"$XM_TMP/second.log" 2>&1 &
XM_PIDS+=($!)
xm_wait_socket "$SOCK2" 10
python3 "$LOAD" send "$SOCK" 150 "$XM_TMP/acks-a" CLUSTERA >"$OUT" 2>&1 &
la=$!
python3 "$LOAD" send "$SOCK2" 150 "$XM_TMP/acks-b" CLUSTERB >>"$OUT" 2>&1
wait $la
"${X[@]}" search --pg "$PGINFO" --jid "load@a.example" --json >"$XM_TMP/cluster.jsonl" 2>>"$OUT"
python3 -c 'import json,sys,collections
c=collections.Counter(json.loads(l)["node"] for l in open(sys.argv[1]))
print(dict(c)); assert c["e2e-a"]==150 and c["e2e-b"]==150' "$XM_TMP/cluster.jsonl" >>"$OUT" 2>&1
result "two xmilterd instances write one PostgreSQL archive (150 + 150)" $?

# ---- kill -9 under load -------------------------------------------------------------

SOCK3=$XM_TMP/xmilterd3.sock
cat >"$XM_TMP/kill.yml" <<EOF
daemon:
  socket: $SOCK3
  quarantine_dir: $XM_TMP/quarantine
  log_verdicts: false
archive:
  node: e2e-k
  sinks:
    - name: chain
      type: jsonl
      path: $XM_TMP/kchain
      guarantee: must-archive
      rotate_size: 64k
    - name: db
      type: sqlite
      path: $XM_TMP/kill.db
      guarantee: must-archive
EOF
"$XMILTERD" -c "$XM_TMP/kill.yml" >>"$XM_TMP/kill.log" 2>&1 &
kpid=$!
XM_PIDS+=($kpid)
xm_wait_socket "$SOCK3" 10
: >"$XM_TMP/acks-k"
python3 "$LOAD" send "$SOCK3" 200000 "$XM_TMP/acks-k" KILLTOKEN 128 >"$OUT" 2>&1 &
lk=$!
n=400
while [ "$(wc -l <"$XM_TMP/acks-k")" -lt 2000 ] && [ "$n" -gt 0 ]; do
	n=$((n - 1)); sleep 0.05
done
kill -KILL "$kpid"
wait "$kpid" 2>/dev/null
wait "$lk"
xm_forget_pid "$kpid"
acked=$(wc -l <"$XM_TMP/acks-k")
echo "# kill -9 after $acked acknowledged verdicts" >&2
"${X[@]}" verify --jsonl "$XM_TMP/kchain" >>"$OUT" 2>&1 &&
	python3 "$LOAD" check "$XM_TMP/acks-k" --jsonl "$XM_TMP/kchain" \
		--sqlite "$XM_TMP/kill.db" >>"$OUT" 2>&1 && [ "$acked" -ge 2000 ]
rc=$?
grep -E 'intact|BROKEN|acked=|warning' "$OUT" | sed 's/^/#   /' >&2
result "kill -9 under load: chain intact, every acknowledged record present" $rc

# the restarted daemon cuts a partial tail and continues the chain
"$XMILTERD" -c "$XM_TMP/kill.yml" >>"$XM_TMP/kill.log" 2>&1 &
XM_PIDS+=($!)
xm_wait_socket "$SOCK3" 10
python3 "$LOAD" send "$SOCK3" 100 "$XM_TMP/acks-k2" AFTERKILL >"$OUT" 2>&1 &&
	"${X[@]}" verify --jsonl "$XM_TMP/kchain" >>"$OUT" 2>&1 &&
	python3 "$LOAD" check "$XM_TMP/acks-k2" --jsonl "$XM_TMP/kchain" >>"$OUT" 2>&1
result "after a restart the chain continues intact" $?

# ---- retention ------------------------------------------------------------------------

"${X[@]}" purge --sqlite "$XM_TMP/archive.db" --now 2100-01-01 >"$OUT" 2>&1 &&
	grep -q ': 0 records purged' "$OUT"
result "purge without a retention keeps everything" $?

sed -i "s|^      path: $XM_TMP/archive.db|&\n      retention: 30d|" "$CFG"
"${X[@]}" purge -c "$CFG" -s db --dry-run --now 2100-01-01 >"$OUT" 2>&1 &&
	grep -Eq ': [1-9][0-9]* records would be purged' "$OUT" &&
	search_until db --text ARCHTOKENONE
result "purge --dry-run counts records past retention, removes none" $?

xm_suite_final_checks
xm_suite_end
