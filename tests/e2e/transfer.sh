#!/bin/bash
# transfer.sh - end to end: the transfer filter with Prosody + mod_xmilter +
# xmilterd + libstrophe clients
#
# One Prosody with two local domains (a.example, and c.example whose
# file transfer is switched off), a transport component (icq.a.example,
# which may only use Jingle) and an HTTP upload component. libstrophe
# clients offer files over SI, Jingle, OOB and HTTP upload: programs,
# scripts, double extensions and right-to-left-override names are refused
# with a policy-violation error while report.pdf passes; an out-of-band
# link named holiday.jpg to a program uploaded to Prosody is fetched
# (oobfetch) and refused; a re-offer is counted as a repeat; a hash added
# to the bad-hash list is refused after a SIGHUP. Prints "ok N - name" / "not ok N - name" per case and a
# closing "N passed, M failed"; a missing program is a failure
# (xm_suite_start).
#
# Environment: as run.sh (top_srcdir, top_builddir, XMILTERD,
# XMTEST_CLIENT, PROSODY, PROSODYCTL, XM_SUITE_TIMEOUT, XM_VERBOSE).
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

xm_suite_start transfer "${XM_SUITE_TIMEOUT:-170}" "$PROSODY" "$PROSODYCTL" "$XMILTERD" "$XMTEST_CLIENT"

# ---- set-up ---------------------------------------------------------------

DOM=a.example
CLOSED=c.example
COMP=icq.$DOM
UPLOAD=upload.$DOM
SECRET=xm-component-secret
SOCK=$XM_TMP/xmilterd.sock
DLOG=$XM_TMP/xmilterd.log
HASHES=$XM_TMP/bad-hashes.txt
P_C2S=$(xm_free_port)
P_COMP=$(xm_free_port $((P_C2S + 1)))
P_HTTP=$(xm_free_port $((P_COMP + 1)))

# an MD5 (SI) and a SHA-256 (Jingle) that become "known bad" later
MD5=0123456789abcdef0123456789abcdef
SHA=3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=

echo "# known-bad file hashes (reloaded on SIGHUP)" >"$HASHES"
mkdir -p "$XM_TMP/quarantine"
cat >"$XM_TMP/xmilterd.yml" <<EOF
daemon:
  socket: $SOCK
  quarantine_dir: $XM_TMP/quarantine
  log_level: debug
actions:
  modify: 5
  quarantine: 10
  reject: 15
filters:
  rules:
    enabled: false
  transfer:
    bad_hashes: [$HASHES]
    local_domains: [$DOM, "*.$DOM", $CLOSED]
  oobfetch:
    fetch: true
    allow_private: true     # the files are on this loopback Prosody
    connect_timeout: 500ms  # under the glue's 2 s: links to TEST-NET
    timeout: 1500ms         # addresses fail before the glue gives up
  ratelimit:               # bursts from one account: tested in ratelimit.sh
    enabled: false
scopes:
  - name: closed-domain
    match:
      domain: [$CLOSED]
    filters:
      transfer:
        allow: false
        disabled_text: "file transfer is switched off for this domain"
  - name: icq-transport
    match:
      domain: [$COMP]
    filters:
      transfer:
        methods: [jingle, ibb]
        disabled_text: "this transport only takes Jingle file transfers"
EOF

xm_prosody_config a 127.0.0.1 $DOM "$P_C2S" "component=$COMP:$P_COMP:$SECRET" \
	"upload=$UPLOAD:$P_HTTP" "socket=$SOCK" \
	"extra=http_default_host = \"$UPLOAD\"" "extra=VirtualHost \"$CLOSED\""

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
for u in alice bob; do
	xm_register a "$u" $DOM pw || xm_log "could not register $u"
done
xm_register a erin $CLOSED pw || xm_log "could not register erin@$CLOSED"
wait_glue_connected 0
result "glue connects to xmilterd" $?

A=(-s "127.0.0.1:$P_C2S" -p pw -P pw -T 20 -q 2)
AB=("${A[@]}" -f "alice@$DOM" -t "bob@$DOM")
POLICY='policy-violation'

# refused - the last offer got a policy error naming WHY and never arrived
refused() {
	has "^iq-error m1 $POLICY .*$1" && hasnt '^iq-delivered m1'
}
# passed - the last offer reached the receiver and came back as a result
passed() {
	has '^iq-delivered m1' && has '^iq-result m1'
}

# ---- names, per method ------------------------------------------------------

client "${AB[@]}" -o si -F report.pdf iq
passed
result "SI: report.pdf passes" $?

client "${AB[@]}" -o si -F setup.exe iq
refused '\.exe files are not allowed'
result "SI: setup.exe is refused with a policy error" $?

client "${AB[@]}" -o si -F screensaver.scr iq
refused '\.scr files are not allowed'
result "SI: screensaver.scr is refused" $?

client "${AB[@]}" -o si -F holiday-photos.jpg.exe iq
refused '\.exe files are not allowed'
result "SI: a double extension (holiday-photos.jpg.exe) is refused" $?

client "${AB[@]}" -o jingle -F report.pdf iq
passed
result "Jingle: report.pdf passes" $?

client "${AB[@]}" -o jingle -F game.exe iq
refused '\.exe files are not allowed'
result "Jingle: game.exe is refused" $?

client "${AB[@]}" -o jingle -F invoice.pdf.scr iq
refused '\.scr files are not allowed'
result "Jingle: a double extension (invoice.pdf.scr) is refused" $?

client "${AB[@]}" -o jingle -F $'invoice\xe2\x80\xaefdp.scr' iq
refused 'hidden characters in the file name'
result "Jingle: a right-to-left-override name (shows as invoicercs.pdf) is refused" $?

client "${AB[@]}" -o jingle -F 'love-letter.txt.vbs' iq
refused '\.vbs files are not allowed'
result "Jingle: a script with a double extension is refused" $?

client "${AB[@]}" -o oob -F 'free%20game.exe' iq
refused '\.exe files are not allowed'
result "OOB: a link to free%20game.exe is refused" $?

client "${AB[@]}" -o oob -F report.pdf iq
passed
result "OOB: a link to report.pdf passes" $?

client "${AB[@]}" -o ibb iq
passed
result "IBB: an open (no metadata) passes" $?

client "${A[@]}" -f "alice@$DOM" -t "bob@$DOM" -U "$UPLOAD" -F setup.exe -Z 2048 upload
has "^upload-error m1 $POLICY .*\\.exe files are not allowed" && hasnt '^upload-slot m1'
result "HTTP upload: a slot for setup.exe is refused" $?

client "${A[@]}" -f "alice@$DOM" -t "bob@$DOM" -U "$UPLOAD" -F photo.jpg -Z 2048 upload
has '^upload-slot m1 http'
result "HTTP upload: a slot for photo.jpg is granted" $?

# ---- behind an out-of-band link (oobfetch) ----------------------------------

# put_file NAME FILE - upload FILE as NAME through a slot; prints the URL
put_file() {
	local size url
	size=$(stat -c %s "$2")
	# not client(): with XM_VERBOSE it prints, and our stdout is the URL
	xm_client "${A[@]}" -f "alice@$DOM" -t "bob@$DOM" -U "$UPLOAD" -F "$1" -Z "$size" \
		upload >"$OUT" 2>&1
	url=$(sed -n 's/^upload-slot m1 //p' "$OUT")
	[ -n "$url" ] || return 1
	command -v curl >/dev/null || { echo "curl is missing" >>"$OUT"; return 1; }
	local hdr=()
	while IFS= read -r h; do hdr+=(-H "$h"); done < <(sed -n 's/^upload-header m1 //p' "$OUT")
	curl -sS -f -X PUT -H 'Content-Type: application/octet-stream' "${hdr[@]}" \
		--data-binary @"$2" "$url" >>"$OUT" 2>&1 || return 1
	echo "$url"
}

printf 'MZ\x90\x00\x03\x00\x00\x00\x04\x00This program cannot be run in DOS mode.' >"$XM_TMP/fake.exe"
printf '%%PDF-1.4\n1 0 obj << >> endobj\n%%%%EOF\n' >"$XM_TMP/real.pdf"
if url=$(put_file holiday.jpg "$XM_TMP/fake.exe"); then
	client "${AB[@]}" -o oob -L "$url" iq
	refused 'a program behind the link' && grep -q 'TRANSFER_FETCHED_PROGRAM' "$DLOG"
	result "OOB: a link named holiday.jpg to a program on a server is refused after fetching" $?
else
	result "OOB: a link named holiday.jpg to a program on a server is refused after fetching (upload)" 1
fi
if url=$(put_file minutes.pdf "$XM_TMP/real.pdf"); then
	client "${AB[@]}" -o oob -L "$url" iq
	passed
	result "OOB: a link to a real PDF passes after fetching" $?
else
	result "OOB: a link to a real PDF passes after fetching (upload)" 1
fi

# ---- state: a re-offer of what was refused ------------------------------------

before=$(grep -c 'TRANSFER_REPEAT' "$DLOG" || true)
client "${AB[@]}" -o si -F setup.exe iq
refused '\.exe files are not allowed' &&
	[ "$(grep -c 'TRANSFER_REPEAT' "$DLOG" || true)" -gt "$before" ]
result "SI: setup.exe offered again is scored as a repeat" $?

# ---- scopes: a domain and a transport -----------------------------------------

client "${A[@]}" -f "alice@$DOM" -t "erin@$CLOSED" -o si -F report.pdf iq
refused 'file transfer is switched off for this domain'
result "domain with transfer off: report.pdf to c.example is refused" $?

client "${A[@]}" -f "erin@$CLOSED" -t "bob@$DOM" -o jingle -F report.pdf iq
refused 'file transfer is switched off for this domain'
result "domain with transfer off: report.pdf from c.example is refused" $?

client "${A[@]}" -f "erin@$CLOSED" -t "bob@$DOM" -b "a message still passes" message
has '^delivered m1 a message still passes$'
result "domain with transfer off: messages still pass" $?

TR=("${A[@]}" -t "bob@$DOM" -C "$COMP" -k "$SECRET" -K "127.0.0.1:$P_COMP" -f "4711@$COMP")
client "${TR[@]}" -o si -F report.pdf iq
refused 'this transport only takes Jingle file transfers'
result "transport: an SI offer through icq.a.example is refused" $?

client "${TR[@]}" -o jingle -F report.pdf iq
passed
result "transport: a Jingle offer of report.pdf passes" $?

client "${TR[@]}" -o jingle -F setup.exe iq
refused '\.exe files are not allowed'
result "transport: a Jingle offer of setup.exe is refused" $?

# ---- the bad-hash list, reloaded on SIGHUP -----------------------------------

client "${AB[@]}" -o si -F minutes.pdf -H "md5:$MD5" iq
passed
rc=$?
client "${AB[@]}" -o jingle -F minutes.pdf -H "sha-256:$SHA" iq
passed && [ $rc = 0 ]
result "hashes not (yet) on the list pass" $?

reloads=$(grep -c 'reloaded' "$DLOG" || true)
{ echo "md5 $MD5"; echo "sha-256:$SHA"; } >>"$HASHES"
kill -HUP "$XM_DAEMON_PID"
n=100
while [ "$(grep -c 'reloaded' "$DLOG" || true)" -le "$reloads" ] && [ $n -gt 0 ]; do
	sleep 0.05
	n=$((n - 1))
done
client "${AB[@]}" -o si -F minutes.pdf -H "md5:$MD5" iq
refused 'a known-bad file'
rc=$?
client "${AB[@]}" -o jingle -F renamed.pdf -H "sha-256:$SHA" iq
refused 'a known-bad file' && [ $rc = 0 ]
result "after SIGHUP the listed hashes are refused (SI md5, Jingle sha-256)" $?

xm_suite_final_checks

xm_suite_end
