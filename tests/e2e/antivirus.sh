#!/bin/bash
# antivirus.sh - end to end: files through a real Prosody, scanned by
# xmilterd's antivirus filter (libclamav) with a signature database built
# here, at test time
#
# Cases: in-band bytestreams (XEP-0047) carrying EICAR are stopped (the
# sender gets an error, the receiver a close, no byte of it delivered),
# the rest of an infected stream is refused, a clean stream arrives whole;
# an HTTP upload (XEP-0363, mod_http_file_share) of EICAR is refused with
# 403 and its file deleted before anyone can download it, while a clean
# upload works; a message sharing an infected upload's URL is refused;
# SIGHUP and database changes during a run of scans lose no scan; a
# missing database is a start-up error, and degraded mode says so in the
# health check.
#
# EICAR is never in the tree: it is put together from two halves here.
# Environment as run.sh (XM_SUITE_TIMEOUT default 170).
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
: "${XMTEST_AV:=$top_builddir/tests/e2e/xmtest-av}"
: "${XMILTER:=$top_builddir/xmilter}"

xm_suite_start antivirus "${XM_SUITE_TIMEOUT:-170}" "$PROSODY" "$PROSODYCTL" "$XMILTERD" "$XMTEST_AV" "$XMILTER" "$(command -v sigtool)"

# ---- set-up ---------------------------------------------------------------

DOM=a.example
UPLOAD=upload.$DOM
SOCK=$XM_TMP/xmilterd.sock
DLOG=$XM_TMP/xmilterd.log
DB=$XM_TMP/clamdb
FILES=$XM_TMP/files
P_C2S=$(xm_free_port)
P_HTTP=$(xm_free_port $((P_C2S + 1)))

mkdir -p "$DB" "$FILES"
# EICAR from its halves; a clean file; EICAR at the start of a bigger one
printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$' 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' \
	>"$FILES/eicar.com"
head -c 20000 /dev/urandom >"$FILES/clean.bin"
# the same bytes under a name the transfer policy lets through, for uploads
# (the antivirus, not the name policy, must be what stops them)
cp "$FILES/eicar.com" "$FILES/eicar-notes.txt"
{ cat "$FILES/eicar.com"; head -c 12000 /dev/zero | tr '\0' 'z'; } >"$FILES/eicar-big.txt"
# a "worm" that only a signature added later knows
printf 'MZ xmilter e2e worm %s\n' "$$" >"$FILES/worm.exe"
# a bigger one known only by its hash: caught only when the whole stream
# is there (at close)
{ head -c 10000 /dev/urandom; printf 'MZ xmilter e2e big worm\n'; } >"$FILES/bigworm.exe"

# the database: EICAR by SHA-256 and by body pattern (sigtool makes the
# lines, as an operator would)
(cd "$FILES" && sigtool --sha256 eicar.com) | sed 's/:eicar.com$/:Xm.E2E.Eicar.Hash/' >"$DB/eicar.hsb"
echo "Xm.E2E.Eicar.Body:0:*:$(printf 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE' | od -An -tx1 | tr -d ' \n')" \
	>"$DB/eicar.ndb"
(cd "$FILES" && sigtool --md5 bigworm.exe) | sed 's/:bigworm.exe$/:Xm.E2E.BigWorm/' >"$DB/bigworm.hdb"

cat >"$XM_TMP/xmilterd.yml" <<EOF
daemon:
  socket: $SOCK
  quarantine_dir: $XM_TMP/quarantine
  log_level: debug
filters:
  antivirus:
    enabled: true
    database_dir: $DB
    tmpdir: $XM_TMP
    db_check_interval: 100ms
  ratelimit:               # bursts from one account: tested in ratelimit.sh
    enabled: false
EOF
mkdir -p "$XM_TMP/quarantine"

xm_prosody_config a 127.0.0.1 $DOM "$P_C2S" "upload=$UPLOAD:$P_HTTP" "socket=$SOCK"

if ! "$XMILTERD" -t -c "$XM_TMP/xmilterd.yml" >"$OUT" 2>&1; then
	echo "not ok 1 - xmilterd accepts the configuration"; sed 's/^/#   /' "$OUT"
	echo "0 passed, 1 failed"
	exit 1
fi
if ! xm_daemon_start "$XM_TMP/xmilterd.yml" "$DLOG" || ! xm_prosody_start a; then
	echo "not ok 1 - xmilterd and prosody start"
	echo "0 passed, 1 failed"
	exit 1
fi
for u in alice bob; do
	xm_register a "$u" $DOM pw || xm_log "could not register $u"
done
wait_glue_connected 0
grep -q 'antivirus: engine ready: 3 signatures' "$DLOG"
result "xmilterd loads the test database; the glue connects" $?

AV=(-s "127.0.0.1:$P_C2S" -f "alice@$DOM" -p pw -t "bob@$DOM" -P pw -T 20)

# av ARGS... - run xmtest-av, output in $OUT
av() {
	"$XMTEST_AV" "$@" >"$OUT" 2>&1
	local rc=$?
	if [ "${XM_VERBOSE:-0}" = 1 ]; then sed 's/^/#   | /' "$OUT"; fi
	return $rc
}

# ---- in-band bytestreams ----------------------------------------------------

av "${AV[@]}" -i s-eicar -D "$FILES/eicar.com" ibb
has '^open result$' && has '^data 0 error not-acceptable$' && hasnt '^recv-data' &&
	has '^recv-close s-eicar$'
result "IBB carrying EICAR: refused, nothing delivered, the stream closed at both ends" $?

av "${AV[@]}" -i s-big -D "$FILES/eicar-big.txt" ibb
has '^data 0 error not-acceptable$' && has '^data 1 error not-acceptable$' &&
	hasnt '^recv-data'
result "IBB: the rest of an infected stream is refused" $?

av "${AV[@]}" -i s-clean -D "$FILES/clean.bin" ibb
has '^open result$' && has '^close result$' && has 'errors=0 recv_chunks=5 recv_bytes=20000 recv_close=yes'
result "IBB carrying a clean file: all 20000 bytes delivered" $?

av "${AV[@]}" -i s-bigworm -D "$FILES/bigworm.exe" ibb
has '^recv-data 0 4096$' && has '^close error not-acceptable$' && has '^recv-close s-bigworm$'
result "IBB: a file known only by its hash is refused at close (chunks already delivered)" $?

# store and forward: the glue holds the stream until the daemon has seen
# all of it
sed -i 's/^xmilter_socket = .*/&\nxmilter_ibb_store_and_forward = true/' "${XM_PROSODY_CFG[a]}"
prosody_reload a
av "${AV[@]}" -i s-sf-worm -D "$FILES/bigworm.exe" ibb
has '^data 2 result$' && has '^close error not-acceptable$' && hasnt '^recv-data' &&
	has '^recv-close s-sf-worm$'
result "IBB store and forward: a file caught at close never reaches the receiver" $?

av "${AV[@]}" -i s-sf-clean -D "$FILES/clean.bin" ibb
has '^close result$' && has 'errors=0 recv_chunks=5 recv_bytes=20000 recv_close=yes'
result "IBB store and forward: a clean stream arrives whole, after its close was scanned" $?
sed -i '/^xmilter_ibb_store_and_forward/d' "${XM_PROSODY_CFG[a]}"
prosody_reload a

# ---- HTTP upload --------------------------------------------------------------

UP=("${AV[@]}" -U "$UPLOAD" -H "127.0.0.1:$P_HTTP")
av "${UP[@]}" -D "$FILES/clean.bin" upload
has '^slot http' && has '^put 201 ' && has '^get 200 20000$'
result "a clean upload is stored and downloads" $?

av "${UP[@]}" -D "$FILES/eicar-notes.txt" -m upload
rc=1
if has '^slot http' && has '^put 403 ' && has '^get (403|404|410) ' && has '^shared error not-acceptable$'; then
	# the stored file is gone from mod_http_file_share's store
	if [ -z "$(grep -rl 'EICAR-STANDARD' "$XM_TMP/a/data" 2>/dev/null)" ]; then rc=0; else
		echo "EICAR still stored under $XM_TMP/a/data" >>"$OUT"; fi
fi
result "an upload of EICAR is refused and deleted before download; sharing its URL is refused" $rc

# quarantine: the daemon's verdict for viruses becomes quarantine; the glue
# moves the file into its quarantine directory instead of deleting it
# the upload quarantine on another filesystem when there is one (tmpfs):
# the glue must then copy the file across instead of renaming it
UPQ=$XM_TMP/upq
if [ -d /dev/shm ] && [ "$(stat -c %d /dev/shm)" != "$(stat -c %d "$XM_TMP")" ]; then
	UPQ=$(mktemp -d /dev/shm/xmilter-upq.XXXXXX) && chmod 755 "$UPQ"
	trap 'rm -rf "$UPQ"; xm_cleanup' EXIT
fi
mkdir -p "$UPQ"
sed -i 's/^    enabled: true$/&\n    virus_action: quarantine/' "$XM_TMP/xmilterd.yml"
before=$(grep -c 'reloaded$' "$DLOG")
kill -HUP "$XM_DAEMON_PID"
for _ in $(seq 100); do [ "$(grep -c 'reloaded$' "$DLOG")" -gt "$before" ] && break; sleep 0.05; done
sed -i "s|^xmilter_socket = .*|&\nxmilter_upload_quarantine_dir = \"$UPQ\"|" "${XM_PROSODY_CFG[a]}"
prosody_reload a
av "${UP[@]}" -D "$FILES/eicar-notes.txt" upload
rc=1
if has '^put 403 ' && has '^get (403|404|410) '; then
	n=$(grep -l 'EICAR-STANDARD' "$UPQ"/* 2>/dev/null | wc -l)
	[ "$n" = 1 ] && [ -z "$(grep -rl 'EICAR-STANDARD' "$XM_TMP/a/data" 2>/dev/null)" ] &&
		"$top_builddir/xmilter" quarantine list -c "$XM_TMP/xmilterd.yml" held 2>&1 |
		grep -q 'AV_' && rc=0
	echo "files in the upload quarantine: $n" >>"$OUT"
fi
result "a quarantine verdict moves an infected upload into the quarantine directory" $rc
sed -i '/virus_action: quarantine/d' "$XM_TMP/xmilterd.yml"
kill -HUP "$XM_DAEMON_PID"

# ---- reload: engines swapped while scans run ----------------------------------

av "${AV[@]}" -i s-worm0 -D "$FILES/worm.exe" ibb
has '^close result$' && has 'errors=0 recv_chunks=1 '
result "the worm passes while no signature knows it" $?

# a background loop of SIGHUPs and database changes while transfers run;
# every transfer must get the right verdict
(
	for i in $(seq 1 40); do
		kill -HUP "$XM_DAEMON_PID" 2>/dev/null
		# a changed file makes a new engine (an unchanged database is shared)
		[ $((i % 5)) = 0 ] && touch -d "@$((1700000000 + i))" "$DB/eicar.ndb"
		if [ "$i" = 10 ]; then
			(cd "$FILES" && sigtool --md5 worm.exe) | sed 's/:worm.exe$/:Xm.E2E.Worm/' >"$DB/worm.hdb.tmp"
			mv "$DB/worm.hdb.tmp" "$DB/worm.hdb"
		fi
		sleep 0.1
	done
) &
HUPPER=$!
XM_PIDS+=($HUPPER)
bad=0 n=0
for k in $(seq 1 6); do
	av "${AV[@]}" -i "r-clean-$k" -D "$FILES/clean.bin" ibb
	has 'errors=0 recv_chunks=5 recv_bytes=20000 recv_close=yes' || { bad=$((bad + 1)); sed 's/^/#   clean: /' "$OUT"; }
	av "${AV[@]}" -i "r-eicar-$k" -D "$FILES/eicar.com" ibb
	has '^data 0 error not-acceptable$' && hasnt '^recv-data' || { bad=$((bad + 1)); sed 's/^/#   eicar: /' "$OUT"; }
	n=$((n + 2))
done
wait "$HUPPER"
xm_forget_pid "$HUPPER"
reloads=$(grep -c 'reloaded$' "$DLOG")
engines=$(grep -cE 'antivirus: (engine ready|database .* changed: new engine)' "$DLOG")
[ "$bad" = 0 ] && [ "$reloads" -ge 10 ] && [ "$engines" -ge 5 ] && kill -0 "$XM_DAEMON_PID"
rc=$?
echo "# $bad of $n transfers wrong; $reloads reloads, $engines engines built in all"
result "SIGHUP x40 and database changes (new engines) during $n transfers: every verdict right" $rc

# the signature added during the run is in force (through the database
# watch or the reloads), without a restart
av "${AV[@]}" -i s-worm -D "$FILES/worm.exe" ibb
has '^data 0 error not-acceptable$' && hasnt '^recv-data'
result "a signature added to the database directory takes effect without a restart" $?

# ---- start-up without a database ----------------------------------------------

sed "s|database_dir: .*|database_dir: $XM_TMP/no-such-db|" "$XM_TMP/xmilterd.yml" >"$XM_TMP/nodb.yml"
"$XMILTERD" -t -c "$XM_TMP/nodb.yml" >"$OUT" 2>&1
[ $? != 0 ] && has 'no-such-db' && has 'on_missing_database: degraded'
result "a missing database is a clear start-up error" $?

sed -e "s|database_dir: .*|database_dir: $XM_TMP/no-such-db\n    on_missing_database: degraded|" \
	-e "s|socket: .*|socket: $XM_TMP/degraded.sock|" "$XM_TMP/xmilterd.yml" >"$XM_TMP/degraded.yml"
"$XMILTERD" -c "$XM_TMP/degraded.yml" >>"$XM_TMP/degraded.log" 2>&1 &
DPID=$!
XM_PIDS+=($DPID)
rc=1
if xm_wait_socket "$XM_TMP/degraded.sock" 10; then
	"$XMILTER" health -s "$XM_TMP/degraded.sock" >"$OUT" 2>&1
	hrc=$?
	[ $hrc != 0 ] && grep -qi 'degraded' "$OUT" && grep -q 'antivirus' "$OUT" && rc=0
	echo "# health exit $hrc" >>"$OUT"
fi
kill -TERM "$DPID" 2>/dev/null
xm_wait_pid "$DPID" 5
xm_forget_pid "$DPID"
result "degraded mode runs and the health check says why" $rc

xm_suite_final_checks
xm_suite_end
