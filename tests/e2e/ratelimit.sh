#!/bin/bash
# ratelimit.sh - end to end: two xmilterd sharing counters through a real
# redis-server, Redis killed and restarted under them, then a flood
# through Prosody
#
# Starts everything itself on loopback (redis-server with no persistence,
# two xmilterd with ratelimit on and redis: set, one Prosody with the
# glue) inside a temporary directory, and checks:
#   - both daemons report state=redis in their health answer,
#   - budgets spent through node A apply on node B (and a sender that
#     only used B is not limited), requests alternating between the two
#     nodes share one budget, every key in Redis carries an expiry,
#   - Redis stalled (SIGSTOP): an event ratelimit does not count is
#     answered while a counted one waits for its batch, which Redis then
#     answers (the event loop never waits for Redis),
#   - Redis killed during a run of requests: every request is answered,
#     the daemon says so in its log and health (degraded,
#     state=memory-fallback), and keeps limiting from local memory,
#   - Redis restarted: both nodes go back to it (log, health) and share
#     counters again; a node that missed the outage (its probe interval
#     longer than it) finds its connection closed, takes a new one and
#     counts in Redis, without falling back,
#   - a third daemon counting in memory keeps its counters over SIGHUP,
#   - through Prosody: a flood from one account to a stranger is cut off
#     near its budget and the account is blocked, while a chat between
#     two roster contacts is delivered in full.
# Prints "ok N - name" / "not ok N - name" and "N passed, M failed".
#
# Environment: as run.sh, plus REDIS_SERVER, REDIS_CLI, XMFEED.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

: "${REDIS_SERVER:=$(command -v redis-server || echo /usr/bin/redis-server)}"
: "${REDIS_CLI:=$(command -v redis-cli || echo /usr/bin/redis-cli)}"
: "${XMFEED:=$top_builddir/tests/e2e/xmfeed}"
XMILTER=$top_builddir/xmilter

xm_suite_start ratelimit "${XM_SUITE_TIMEOUT:-200}" "$PROSODY" "$PROSODYCTL" "$XMILTERD" "$XMTEST_CLIENT"  "$REDIS_SERVER" "$REDIS_CLI" "$XMFEED" "$XMILTER"

DOM=a.example
P_REDIS=$(xm_free_port $(( 40000 + $$ % 10000 )))
SOCK_A=$XM_TMP/xmilterd-a.sock
SOCK_B=$XM_TMP/xmilterd-b.sock
LOG_A=$XM_TMP/xmilterd-a.log
LOG_B=$XM_TMP/xmilterd-b.log
REDIS_PID=

# ---- helpers --------------------------------------------------------------

start_redis() {
	# not under timeout(1): killing it must kill Redis itself
	"$REDIS_SERVER" --port "$P_REDIS" --bind 127.0.0.1 --save '' \
		--appendonly no >>"$XM_TMP/redis.log" 2>&1 &
	REDIS_PID=$!
	XM_PIDS+=($!)
	xm_wait_port 127.0.0.1 "$P_REDIS" 10
}

kill_redis() {
	kill -KILL "$REDIS_PID" 2>/dev/null
	xm_wait_pid "$REDIS_PID" 5
	xm_forget_pid "$REDIS_PID"
	REDIS_PID=
}

rcli() { "$REDIS_CLI" -p "$P_REDIS" "$@"; }

# daemon_conf FILE SOCKET - xmilterd with ratelimit on Redis
daemon_conf() {
	mkdir -p "$XM_TMP/q"
	cat >"$1" <<EOF
daemon:
  socket: $2
  quarantine_dir: $XM_TMP/q
  log_level: info
  workers: 4
actions:
  modify: 5
  quarantine: 10
  reject: 15
filters:
  guard:
    enabled: true
  rules:
    enabled: false
  ratelimit:
    enabled: true
    redis: redis://127.0.0.1:$P_REDIS
    # generous: Redis is killed (connections refused at once), never
    # slowed, here; a command that times out on a busy machine would
    # count its event in local memory
    redis_timeout: 10s
    redis_retry: 300ms
EOF
}

# state_lines WHY - WHY, the daemons' state: log lines and the end of
# redis-server's log (appended to $OUT when a case fails)
state_lines() {
	echo "$1"
	grep -h 'state:' "$LOG_A" | sed 's/^/A: /'
	grep -h 'state:' "$LOG_B" | sed 's/^/B: /'
	tail -n 4 "$XM_TMP/redis.log" | sed 's/^/redis: /'
}

# iso SECONDS - RFC 3339 time
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S.000Z; }

# spam FILE ACCOUNT FROM TO T0 - messages from a 2-hour-old ACCOUNT (its
# own address, its own text) to strangers userFROM..userTO, one a second
# from T0 (appended to FILE)
spam() {
	local file=$1 acct=$2 i t ip word
	ip=192.0.2.$(( $(printf '%s' "$acct" | cksum | cut -d' ' -f1) % 250 + 1 ))
	# a text of its own: the account's name spelt in letters (digits fold)
	word=$(printf '%s' "$acct" | tr '0-9' 'abcdefghij')
	for i in $(seq "$3" "$4"); do
		t=$(( $5 + i ))
		printf 'origin=c2s\nip=%s\nauth=%s@%s\nroster=none\naccount-age=7200\ntime=%s\n\n<message from='"'"'%s@%s/bot'"'"' to='"'"'user%03d@%s'"'"' type='"'"'chat'"'"' id='"'"'%s-%03d'"'"'><body>hi there, %s here, add me back</body></message>\n\n' \
			"$ip" "$acct" "$DOM" "$(iso "$t")" "$acct" "$DOM" "$i" "$DOM" "$acct" "$i" "$word" >>"$file"
	done
}

# feed SOCKET FILE - send FILE's events, verdict lines in $OUT
feed() {
	"$XMFEED" -s "$1" "$2" >"$OUT" 2>&1
}

# count_action ACTION - verdict lines in $OUT with that action
count_action() { grep -c "^[^ ]* $1 " "$OUT" || true; }
count_not_accept() { grep -Ec '^[^ ]+ (modify|quarantine|reject|discard) ' "$OUT" || true; }

# health SOCKET - the daemon's health answer in $OUT; its exit status
health() {
	"$XMILTER" health -s "$1" -t 5 >"$OUT" 2>&1
}

# wait_health SOCKET REGEX - poll health until it matches (the daemon's
# monitor PINGs Redis every redis_retry)
wait_health() {
	local n=100
	while :; do
		health "$1"
		grep -Eq -- "$2" "$OUT" && return 0
		n=$((n - 1))
		[ "$n" -le 0 ] && return 1
		sleep 0.1
	done
}

# ---- set-up ---------------------------------------------------------------

if ! start_redis; then
	echo "not ok 1 - redis-server starts"
	echo "0 passed, 1 failed"
	exit 1
fi
daemon_conf "$XM_TMP/a.yml" "$SOCK_A"
daemon_conf "$XM_TMP/b.yml" "$SOCK_B"
if ! xm_daemon_start "$XM_TMP/a.yml" "$LOG_A"; then
	echo "not ok 1 - xmilterd A starts"
	echo "0 passed, 1 failed"
	exit 1
fi
PID_A=$XM_DAEMON_PID
if ! xm_daemon_start "$XM_TMP/b.yml" "$LOG_B"; then
	echo "not ok 1 - xmilterd B starts"
	echo "0 passed, 1 failed"
	exit 1
fi
PID_B=$XM_DAEMON_PID
# node D: one worker, and a probe an hour apart: it will not notice the
# outage below, so after Redis's restart its worker's connection is one
# the old server had (a restart between two probes)
SOCK_D=$XM_TMP/xmilterd-d.sock
LOG_D=$XM_TMP/xmilterd-d.log
daemon_conf "$XM_TMP/d.yml" "$SOCK_D"
sed -i -e 's/^  workers: 4$/  workers: 1/' -e 's/^    redis_retry: .*/    redis_retry: 1h/' "$XM_TMP/d.yml"
D_UP=1
xm_daemon_start "$XM_TMP/d.yml" "$LOG_D" && D_UP=0
# event times move forward from phase to phase, as a server's clock does
T0=1795000000

# ---- two nodes, one view --------------------------------------------------

health "$SOCK_A"; a=$?
has '^state=redis$' && has '^status=ok$' && [ $a = 0 ]
r1=$?
health "$SOCK_B"; b=$?
has '^state=redis$' && has '^status=ok$' && [ $b = 0 ] && [ $r1 = 0 ]
result "both nodes report state=redis, status=ok" $?

f=$XM_TMP/fresh1-a.events; : >"$f"; spam "$f" fresh1 1 10 $T0
feed "$SOCK_A" "$f"
ok1=$(count_action accept)
f=$XM_TMP/fresh1-b.events; : >"$f"; spam "$f" fresh1 11 20 $T0
feed "$SOCK_B" "$f"
rej=$(count_not_accept)
xm_log "fresh1: $ok1 accepted on A, then $rej of 10 stopped on B"
[ "$ok1" = 10 ] && [ "$rej" = 10 ] && has '^sent 10 answered 10$'
result "a budget spent through node A applies on node B" $?

# node D's worker connects (its connection is the one the restart below
# leaves stale)
f=$XM_TMP/fresh0.events; : >"$f"; spam "$f" fresh0 1 1 $((T0 + 500))
[ $D_UP = 0 ] && feed "$SOCK_D" "$f"

f=$XM_TMP/fresh2.events; : >"$f"; spam "$f" fresh2 1 10 $((T0 + 1000))
feed "$SOCK_B" "$f"
[ "$(count_action accept)" = 10 ]
result "a sender that only used node B is not limited there" $?

# alternate nodes one request at a time: one budget of 10 strangers
acc=0
for i in $(seq 1 20); do
	f=$XM_TMP/alt.events; : >"$f"; spam "$f" fresh3 "$i" "$i" $((T0 + 2000))
	if [ $((i % 2)) = 1 ]; then feed "$SOCK_A" "$f"; else feed "$SOCK_B" "$f"; fi
	acc=$((acc + $(count_action accept)))
	head -1 "$OUT" >>"$XM_TMP/alt.out"
done
xm_log "alternating A/B: $acc of 20 accepted"
cp "$XM_TMP/alt.out" "$OUT"
[ "$acc" = 10 ]
result "requests alternating between nodes share one budget (10 of 20 pass)" $?

nkeys=0 nottl=0
for k in $(rcli --scan --pattern 'xm:*'); do
	nkeys=$((nkeys + 1))
	# -1: no expiry; -2: it expired between SCAN and PTTL (buckets of a
	# fast budget live a fraction of a second); 0: it expires within the
	# millisecond (Redis deletes a key only once its time is past)
	ttl=$(rcli PTTL "$k")
	{ [ "$ttl" -ge 0 ] || [ "$ttl" = -2 ]; } 2>/dev/null || nottl=$((nottl + 1))
	{ [ "$ttl" -gt 0 ] || [ "$ttl" = -2 ]; } 2>/dev/null ||
		xm_log "key $k: PTTL '$ttl'"
done
xm_log "redis: $nkeys keys, $nottl without expiry"
[ "$nkeys" -gt 10 ] && [ "$nottl" = 0 ]
result "every key in Redis has an expiry" $?

# ---- a stalled Redis does not stall the daemon -----------------------------
# Redis stopped (SIGSTOP): a counted message waits for its batch (up to
# redis_timeout, 10 s here) while a presence sent right after it, which
# ratelimit does not count, is answered at once; once Redis runs again the
# message is answered too, from Redis. Ordering only, no clock.

f=$XM_TMP/stall.events; : >"$f"
spam "$f" stall 1 1 $((T0 + 50000))
printf 'origin=c2s\nip=192.0.2.9\nauth=pres@%s\ntime=%s\n\n<presence from='"'"'pres@%s/pc'"'"' id='"'"'p-stall'"'"'/>\n\n' \
	"$DOM" "$(iso $((T0 + 50001)))" "$DOM" >>"$f"
health "$SOCK_A"
fb0=$(sed -n 's/^state-fallback-ops=//p' "$OUT")
kill -STOP "$REDIS_PID"
"$XMFEED" -p -s "$SOCK_A" "$f" >"$XM_TMP/stall.out" 2>&1 &
feedpid=$!
for _ in $(seq 100); do   # a bound on the wait, not a test of speed
	grep -q '^p-stall ' "$XM_TMP/stall.out" && break
	sleep 0.1
done
kill -CONT "$REDIS_PID"
wait "$feedpid"; feed_rc=$?
health "$SOCK_A"
fb1=$(sed -n 's/^state-fallback-ops=//p' "$OUT")
xm_log "stalled Redis: $(tr '\n' '|' <"$XM_TMP/stall.out") fallback $fb0 -> $fb1"
[ "$feed_rc" = 0 ] &&
	[ "$(sed -n 1p "$XM_TMP/stall.out" | cut -d' ' -f1)" = p-stall ] &&
	[ "$(sed -n 2p "$XM_TMP/stall.out" | cut -d' ' -f1)" = stall-001 ] &&
	grep -q '^sent 2 answered 2$' "$XM_TMP/stall.out" && [ "$fb0" = "$fb1" ]
result "Redis stalled: a presence is answered while a counted message waits for Redis, which then answers it" $?

# ---- Redis killed mid-run -------------------------------------------------

f=$XM_TMP/long.events; : >"$f"
spam "$f" steady 1 4000 $((T0 + 100000))
before=$(rcli INFO stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p' | tr -d '\r')
"$XMFEED" -n -s "$SOCK_A" "$f" >"$XM_TMP/long.out" 2>&1 &
FEED_PID=$!
XM_PIDS+=($FEED_PID)
# wait until the run is under way (Redis has seen its scripts), then kill
n=200
while :; do
	now=$(rcli INFO stats 2>/dev/null | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p' | tr -d '\r')
	[ -n "$now" ] && [ "$now" -gt $((before + 50)) ] && break
	n=$((n - 1)); [ $n -le 0 ] && break
	sleep 0.02
done
kill_redis
xm_wait_pid $FEED_PID 60
wait $FEED_PID
feed_rc=$?
xm_forget_pid $FEED_PID
cp "$XM_TMP/long.out" "$OUT"
xm_log "feed during the kill: $(tail -1 "$OUT") (exit $feed_rc)"
[ $feed_rc = 0 ] && has '^sent 4000 answered 4000$'
result "Redis killed during a run: every request answered" $?

grep -Eq 'state: Redis .* failed .*local memory' "$LOG_A"
result "the fall-back is in node A's log" $?

health "$SOCK_A"; h=$?
[ $h = 3 ] && has '^status=degraded$' && has '^state=memory-fallback$' &&
	has '^reason=redis' && has '^state-fallback-ops=[1-9]' &&
	has '^state-redis-ops=[1-9]' && has '^state-redis-batches=[1-9]' &&
	has '^state-redis-writes=[1-9]'
result "health: degraded, state=memory-fallback; the run went to Redis (pipelined connection), then to memory" $?

f=$XM_TMP/fresh4.events; : >"$f"; spam "$f" fresh4 1 15 $((T0 + 200000))
feed "$SOCK_A" "$f"
[ "$(count_action accept)" = 10 ] && [ "$(count_not_accept)" = 5 ]
result "while Redis is down, node A still limits from memory" $?

# ---- Redis back -----------------------------------------------------------

if start_redis; then
	wait_health "$SOCK_A" '^status=ok$' && grep -q '^state=redis$' "$OUT"
	ra=$?
	wait_health "$SOCK_B" '^status=ok$' && grep -q '^state=redis$' "$OUT"
	rb=$?
	[ $ra = 0 ] && [ $rb = 0 ] && grep -Eq 'state: Redis .* is back' "$LOG_A"
	rc=$?
	[ $rc = 0 ] || state_lines "health A: $ra, B: $rb (0: status=ok, state=redis)" >>"$OUT"
	result "Redis restarted: both nodes return to it (health, log)" $rc

	f=$XM_TMP/fresh5-a.events; : >"$f"; spam "$f" fresh5 1 10 $((T0 + 300000))
	feed "$SOCK_A" "$f"
	ok5=$(count_action accept)
	f=$XM_TMP/fresh5-b.events; : >"$f"; spam "$f" fresh5 11 15 $((T0 + 300000))
	feed "$SOCK_B" "$f"
	rej5=$(count_not_accept)
	[ "$ok5" = 10 ] && [ "$rej5" = 5 ]
	rc=$?
	[ $rc = 0 ] || state_lines "A accepted $ok5 of 10, then B stopped $rej5 of 5" >>"$OUT"
	result "after recovery, budgets are shared again" $rc

	# node D never probed during the outage (health says redis all
	# along) and its one worker holds a connection to the old server:
	# the first event finds it closed, takes a new one, and counts in
	# Redis; nothing falls back to memory
	f=$XM_TMP/fresh7-a.events; : >"$f"; spam "$f" fresh7 1 10 $((T0 + 310000))
	feed "$SOCK_A" "$f"
	ok7=$(count_action accept)
	f=$XM_TMP/fresh7-d.events; : >"$f"; spam "$f" fresh7 11 15 $((T0 + 310000))
	rej7=
	[ $D_UP = 0 ] && feed "$SOCK_D" "$f" && rej7=$(count_not_accept)
	[ $D_UP = 0 ] && health "$SOCK_D"
	[ "$ok7" = 10 ] && [ "$rej7" = 5 ] && has '^state=redis$' &&
		has '^state-fallback-ops=0$' && ! grep -q 'state: Redis .* failed' "$LOG_D"
	rc=$?
	[ $rc = 0 ] || { echo "A accepted $ok7 of 10, then D stopped ${rej7:-none} of 5"
		grep -h 'state:' "$LOG_D" | sed 's/^/D: /'; } >>"$OUT"
	result "a node that missed the outage (no probe during it) counts in Redis after the restart" $rc
else
	skip "Redis restarted: both nodes return to it (health, log)" "redis-server did not restart"
	skip "after recovery, budgets are shared again" "redis-server did not restart"
	skip "a node that missed the outage (no probe during it) counts in Redis after the restart" "redis-server did not restart"
fi

# ---- counters survive a reload (memory backend) ---------------------------

SOCK_C=$XM_TMP/xmilterd-c.sock
LOG_C=$XM_TMP/xmilterd-c.log
daemon_conf "$XM_TMP/c.yml" "$SOCK_C"
sed -i '/redis/d' "$XM_TMP/c.yml"
if xm_daemon_start "$XM_TMP/c.yml" "$LOG_C"; then
	PID_C=$XM_DAEMON_PID
	f=$XM_TMP/fresh6-1.events; : >"$f"; spam "$f" fresh6 1 10 $((T0 + 400000))
	feed "$SOCK_C" "$f"
	ok6=$(count_action accept)
	# change a setting, reload, and go on with the same sender
	echo "    score_blocked: 21" >>"$XM_TMP/c.yml"   # ratelimit is last
	kill -HUP "$PID_C"
	xm_wait_log "$LOG_C" 'reloaded' 10
	rl=$?
	f=$XM_TMP/fresh6-2.events; : >"$f"; spam "$f" fresh6 11 15 $((T0 + 400000))
	feed "$SOCK_C" "$f"
	xm_log "memory node: $ok6 accepted, reload ($rl), then $(count_not_accept) of 5 stopped"
	"$XMILTER" health -s "$SOCK_C" >"$XM_TMP/health6" 2>&1
	[ "$ok6" = 10 ] && [ $rl = 0 ] && [ "$(count_not_accept)" = 5 ] &&
		grep -q '^state=memory$' "$XM_TMP/health6" &&
		grep -Eq '^state-keys=[1-9][0-9]*$' "$XM_TMP/health6" &&
		grep -Eq '^state-max-bytes=[1-9][0-9]*$' "$XM_TMP/health6" &&
		grep -q '^state-evictions=0$' "$XM_TMP/health6" &&
		! grep -q '^state-redis' "$XM_TMP/health6" &&
		grep -q '^status=ok$' "$XM_TMP/health6"
	result "memory backend: counters survive SIGHUP; health shows state=memory with the table's keys, bound and evictions" $?
	kill -TERM "$PID_C"; xm_wait_pid "$PID_C" 5; xm_forget_pid "$PID_C"
else
	skip "memory backend: counters survive SIGHUP" "xmilterd C did not start"
fi

# ---- through Prosody ------------------------------------------------------

P_C2S=$(xm_free_port $(( P_REDIS + 1 )))
xm_hosts_add 127.0.0.1 $DOM
xm_prosody_config a 127.0.0.1 $DOM "$P_C2S" "socket=$SOCK_A"
for u in mallory bob alice carol; do
	xm_register a "$u" $DOM pw || xm_log "could not register $u"
done
# alice and carol have each other in their rosters (written before start)
rdir=$XM_TMP/a/data/$(echo "$DOM" | sed 's/\./%2e/g')/roster
mkdir -p "$rdir"
for pair in alice:carol carol:alice; do
	cat >"$rdir/${pair%%:*}.dat" <<EOF
return {
	[false] = { ["version"] = 1; };
	["${pair##*:}@$DOM"] = { ["subscription"] = "both"; ["groups"] = {}; };
};
EOF
done
if xm_prosody_start a && wait_glue_connected 0; then
	A=(-s "127.0.0.1:$P_C2S" -p pw -P pw -T 30)
	client "${A[@]}" -f "mallory@$DOM" -t "bob@$DOM" -n 40 -b "flood %n" -q 3 message
	dl=$(sed -n 's/.*summary sent=[0-9]* delivered=\([0-9]*\).*/\1/p' "$OUT")
	er=$(sed -n 's/.*summary.* errors=\([0-9]*\).*/\1/p' "$OUT")
	xm_log "flood: delivered=$dl errors=$er of 40"
	[ -n "$dl" ] && [ "$dl" -ge 8 ] && [ "$dl" -le 12 ] && [ "$er" -ge 28 ] &&
		has 'error .* policy-violation'
	result "a flood from one account to a stranger is cut off at its budget" $?

	client "${A[@]}" -f "alice@$DOM" -t "carol@$DOM" -n 20 -r 5 -b "chat %n" -q 2 message
	has 'summary sent=20 delivered=20 errors=0'
	result "meanwhile a chat between roster contacts flows in full" $?

	client "${A[@]}" -f "mallory@$DOM" -t "alice@$DOM" -b "one more" -q 2 message
	has 'error .* policy-violation'
	result "the flooding account is blocked for a while (another recipient too)" $?
	grep -Eq 'verdict .*from=.?mallory@a.example.* symbols=.*RATE_BLOCKED' "$LOG_A"
	result "node A's log shows RATE_BLOCKED for the flooder" $?
else
	for c in "flood cut off" "chat flows" "flooder blocked" "log shows block"; do
		skip "through Prosody: $c" "Prosody or the glue did not start"
	done
fi

xm_suite_end
