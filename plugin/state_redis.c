/*
 * state_redis.c - the Redis backend of state.h (hiredis, one script per
 * event)
 *
 * Purpose: let several xmilterd instances (one per XMPP server node) share
 * their counters. Every batch of operations for one event becomes one
 * EVALSHA of the script below: the operations run atomically inside Redis
 * and cost one round trip. Every key the script writes gets an expiry
 * (PX on the SET that creates it; PEXPIRE in the same script call that
 * creates a Redis set or a counter; APPEND, INCR, INCRBY and SET KEEPTTL
 * keep the one it has), so no key exists without one and Redis never
 * fills with dead counters. The clock is the caller's (the event's time),
 * passed in, so every node agrees on the arithmetic whatever Redis's own
 * clock says.
 *
 * Keys: PREFIX + kind + ':' + 16 hex digits of the state key (a hash: no
 * JID or address is stored in Redis). Kinds: t bucket (a string: the GCRA
 * arrival time in whole microseconds), m set of at most
 * XM_REDIS_STRSET_MAX members (a string of 8-byte member hashes, read
 * with the batch's one MGET), d larger or uncapped set (a Redis set of
 * member hashes in hex), i counter (INCR), v value. A set never holds more
 * than CAP members.
 *
 * Cost: redis-server's time for the script is what limits a Redis
 * deployment (the inner commands are cheap; converting every argument,
 * reply and number between Redis and Lua is not). So: one MGET reads
 * every key the batch reads; the arguments are packed into one string;
 * the reply is one string of packed doubles; a bucket write keeps its
 * key's expiry (INCRBY, SET KEEPTTL) while the arrival time stays in its
 * 4-second cell and sets PX to the end of the next cell when it leaves
 * it (a key lives at most 8 s longer than the bucket needs); small sets
 * are strings searched in Lua, not SCARD + SADD. See bench/
 * redis-script-bench.sh.
 *
 * Connections: blocking hiredis with connect and command timeouts, one
 * connection per calling thread (workers run the filter, never the event
 * loop). A lost connection is dropped and an epoch bumped so every
 * thread reconnects before its next use. A connection that sat idle and
 * turns out closed by the server (Redis restarted before the node
 * noticed, its idle `timeout`, CLIENT KILL) is replaced and the command
 * sent once more: that is not Redis being down (the server closed it
 * before the command came; a reply lost on the way instead would count
 * the event twice, never lose it). A command that gets no
 * answer within the timeout is told apart (XM_REDIS_TIMEOUT) and never
 * resent (it may have run); only that connection is dropped. The caller
 * (state.c) decides about fallback. The script is loaded with SCRIPT LOAD
 * on each new connection, and again when Redis answers NOSCRIPT (its
 * script cache flushed).
 *
 * Ownership: struct xm_redis owns its URL parts and every connection
 * (tracked so xm_redis_free can close them). Failure: -1 with a message;
 * nothing here logs.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <netdb.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "state.h"

/*
 * The script. Its arguments are packed (struct.unpack reads them all in
 * one call, where every argument of its own costs Redis an object and
 * Lua a string, and every tonumber two strtod): ARGV[1] is the format of
 * ARGV[2], ARGV[2] the packed values, ARGV[3] the format of the reply.
 * The values: now (whole microseconds); NR, how many of KEYS are read
 * first (one MGET); NA and NA pairs J, I: KEYS[J] is the same key as
 * KEYS[I] (I < J: a key met twice in a batch shares one value); then per
 * op its code and arguments:
 *   1 bucket   increment, limit (whole microseconds), the increment
 *              as a string (for INCRBY)
 *   2 GET
 *   3 set kept as a string of 8-byte members: member, PX, cap
 *   4 the same, also counting a new member in a second counter
 *   5 Redis set: member, PX, cap (0: none)
 *   6 the same with a second counter
 *   7 INCR     PX
 *   8 SET      value, PX
 * (PX and values are strings, handed to redis.call as they are). A
 * bucket's arrival time t moves to t2 = max(t, now) + increment when the
 * delay fits the limit; its key then expires at the end of the 4 s cell
 * after t2's (in the event clock): while t2 stays in the cell of the
 * stored t, the key's expiry is left alone. Ops
 * take their keys in order from two runs of KEYS: the first NR (read:
 * buckets, sets kept as strings, the second counters, values to GET),
 * then the keys only written (Redis sets, counters, values to SET). v
 * holds each key's value as the batch goes (what MGET read, then what
 * the ops wrote).
 *
 * The results are written into V itself, behind the op being read (no
 * op gives more numbers than it takes), so no table is made for them.
 * The reply is one string, doubles packed by ARGV[3], per op in order:
 * bucket the delay d (whole microseconds) before the op, or -1 - d when
 * refused; a set its count (and with a second counter, that counter);
 * INCR the count; GET the value (0: none); SET nothing. Numbers handed
 * to redis.call are formatted with %d (Redis formats a Lua number with
 * %.17g, far slower); all are whole, so there is no rounding.
 */
static const char script[] =
    "local K, call, fmt, find = KEYS, redis.call, string.format, "
    "string.find\n"
    "local ceil = math.ceil\n"
    "local V = {struct.unpack(ARGV[1], ARGV[2])}\n"
    "local now, nr = V[1], V[2]\n"
    "local v = {}\n"
    "if nr > 0 then v = call('MGET', unpack(K, 1, nr)) end\n"
    "local al, a = {}, 4\n"
    "local dup = V[3] > 0\n"
    "for i = 1, V[3] do\n"
    "  al[V[a]] = V[a+1]\n"
    "  a = a + 2\n"
    "end\n"
    "local res = V\n"
    "local r, kr, kw, na = 0, 1, nr + 1, #V - 1\n"
    "while a <= na do\n"
    "  local op = V[a]\n"
    "  if op == 1 then\n"
    "    local j = al[kr] or kr\n"
    "    local t, d = v[j], 0\n"
    "    if t then\n"
    "      t = t + 0\n"
    "      d = t - now\n"
    "      if d < 0 then d = 0 end\n"
    "    end\n"
    "    local nd = d + V[a+1]\n"
    "    r = r + 1\n"
    "    if nd > V[a+2] then\n"
    "      res[r] = -1 - d\n"
    "    else\n"
    "      local t2 = now + nd\n"
    "      local c2 = t2 - t2 % 4000000\n"
    "      if t and t - t % 4000000 == c2 then\n"
    "        if d > 0 then\n"
    "          call('INCRBY', K[kr], V[a+3])\n"
    "        else\n"
    "          call('SET', K[kr], fmt('%d', t2), 'KEEPTTL')\n"
    "        end\n"
    "      else\n"
    "        call('SET', K[kr], fmt('%d', t2), 'PX', "
    "fmt('%d', ceil((c2 + 8000000 - now) / 1000)))\n"
    "      end\n"
    "      v[j] = t2\n"
    "      res[r] = d\n"
    "    end\n"
    "    kr = kr + 1\n"
    "    a = a + 4\n"
    "  elseif op == 2 then\n"
    "    local x = v[al[kr] or kr]\n"
    "    r = r + 1\n"
    "    res[r] = x and x + 0 or 0\n"
    "    kr = kr + 1\n"
    "    a = a + 1\n"
    "  else\n"
    "    local k, j, m, ms, k2, j2, n2, added\n"
    "    if op == 3 or op == 4 then\n"
    "      k, j, m, ms = K[kr], al[kr] or kr, V[a+1], V[a+2]\n"
    "      kr = kr + 1\n"
    "      if op == 4 then\n"
    "        k2, j2 = K[kr], al[kr] or kr\n"
    "        kr = kr + 1\n"
    "        n2 = v[j2]\n"
    "      end\n"
    "      local s, c = v[j], 0\n"
    "      if s then c = (#s - #s % 8) / 8 end\n"
    "      if c < V[a+3] then\n"
    "        local p = s and find(s, m, 1, true)\n"
    "        while p and p % 8 ~= 1 do p = find(s, m, p + 1, true) end\n"
    "        if not p then\n"
    "          if s then\n"
    "            call('APPEND', k, m)\n"
    "            if dup then v[j] = s .. m end\n"
    "          else\n"
    "            call('SET', k, m, 'PX', ms)\n"
    "            v[j] = m\n"
    "          end\n"
    "          c = c + 1\n"
    "          added = true\n"
    "        end\n"
    "      end\n"
    "      r = r + 1\n"
    "      res[r] = c\n"
    "      a = a + 4\n"
    "    elseif op == 5 or op == 6 then\n"
    "      k, m, ms = K[kw], V[a+1], V[a+2]\n"
    "      kw = kw + 1\n"
    "      if op == 6 then\n"
    "        k2, j2 = K[kr], al[kr] or kr\n"
    "        kr = kr + 1\n"
    "        n2 = v[j2]\n"
    "      end\n"
    "      local c, cap = call('SCARD', k), V[a+3]\n"
    "      if (cap <= 0 or c < cap) and call('SADD', k, m) == 1 then\n"
    "        c = c + 1\n"
    "        if c == 1 then call('PEXPIRE', k, ms) end\n"
    "        added = true\n"
    "      end\n"
    "      r = r + 1\n"
    "      res[r] = c\n"
    "      a = a + 4\n"
    "    elseif op == 7 then\n"
    "      k = K[kw]\n"
    "      local c = call('INCR', k)\n"
    "      if c == 1 then call('PEXPIRE', k, V[a+1]) end\n"
    "      v[al[kw] or kw] = c\n"
    "      kw = kw + 1\n"
    "      r = r + 1\n"
    "      res[r] = c\n"
    "      a = a + 2\n"
    "    elseif op == 8 then\n"
    "      m = V[a+1]\n"
    "      call('SET', K[kw], m, 'PX', V[a+2])\n"
    "      v[al[kw] or kw] = m\n"
    "      kw = kw + 1\n"
    "      a = a + 3\n"
    "    else\n"
    "      return redis.error_reply('xmilter: bad op')\n"
    "    end\n"
    "    if k2 then\n"
    "      if added then\n"
    "        if n2 then\n"
    "          n2 = call('INCR', k2)\n"
    "        else\n"
    "          call('SET', k2, '1', 'PX', ms)\n"
    "          n2 = 1\n"
    "        end\n"
    "        v[j2] = n2\n"
    "      end\n"
    "      r = r + 1\n"
    "      res[r] = n2 and n2 + 0 or 0\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return struct.pack(ARGV[3], unpack(res, 1, r))\n";

struct conn {
	struct conn *next;
	redisContext *ctx;
	unsigned epoch;
};

struct xm_redis {
	char *host;            /* NULL for a Unix socket */
	char *path;
	int port;
	long long db;
	double timeout;
	char *prefix;
	pthread_key_t tkey;
	pthread_mutex_t lock;  /* the list of connections; ADDR */
	struct conn *conns;
	atomic_uint epoch;
	struct sockaddr_storage addr;  /* HOST resolved (xm_redis_resolve) */
	socklen_t addrlen;             /* 0: not yet */
};

/* xm_redis_new - parse URL; no connection yet */
struct xm_redis *
xm_redis_new(const char *url, double timeout, const char *prefix, char *err,
    size_t errlen)
{
	struct xm_redis *r = xm_calloc(1, sizeof(*r));
	const char *p, *colon, *slash, *q;
	long long port = 6379;

	if (strncmp(url, "redis://", 8) == 0) {
		p = url + 8;
		if ((q = strchr(p, '@')) != NULL)  /* no auth support: refuse */
			goto bad;
		slash = strchr(p, '/');
		colon = strrchr(p, ':');
		if (colon != NULL && slash != NULL && colon > slash)
			colon = NULL;
		if (colon != NULL) {
			char num[16];
			size_t n = (size_t)((slash ? slash : p + strlen(p)) -
			    (colon + 1));

			if (n == 0 || n >= sizeof(num))
				goto bad;
			memcpy(num, colon + 1, n);
			num[n] = '\0';
			if (xm_parse_ll(num, 1, 65535, &port) < 0)
				goto bad;
		}
		r->host = xm_strndup(p, (size_t)((colon ? colon : slash ? slash :
		    p + strlen(p)) - p));
		if (*r->host == '\0')
			goto bad;
		if (slash != NULL && slash[1] != '\0' &&
		    xm_parse_ll(slash + 1, 0, 1000000, &r->db) < 0)
			goto bad;
	} else if (strncmp(url, "unix:", 5) == 0 && url[5] == '/') {
		q = strstr(url, "?db=");
		r->path = xm_strndup(url + 5, q ? (size_t)(q - url - 5) :
		    strlen(url + 5));
		if (q != NULL && xm_parse_ll(q + 4, 0, 1000000, &r->db) < 0)
			goto bad;
	} else
		goto bad;
	if (strlen(prefix) > 40) {
		snprintf(err, errlen, "redis: key prefix longer than 40 bytes");
		free(r->host);
		free(r->path);
		free(r);
		return NULL;
	}
	r->port = (int)port;
	r->timeout = timeout > 0 ? timeout : 0.2;
	r->prefix = xm_strdup(prefix);
	pthread_key_create(&r->tkey, NULL);
	pthread_mutex_init(&r->lock, NULL);
	atomic_init(&r->epoch, 1);
	return r;
bad:
	snprintf(err, errlen, "redis: \"%s\" is not redis://HOST[:PORT][/DB] "
	    "or unix:/PATH[?db=N]", url);
	free(r->host);
	free(r->path);
	free(r);
	return NULL;
}

/* xm_redis_free - close every connection (no thread may be using R) */
void
xm_redis_free(struct xm_redis *r)
{
	struct conn *c, *next;

	if (r == NULL)
		return;
	for (c = r->conns; c != NULL; c = next) {
		next = c->next;
		if (c->ctx)
			redisFree(c->ctx);
		free(c);
	}
	pthread_key_delete(r->tkey);
	pthread_mutex_destroy(&r->lock);
	free(r->host);
	free(r->path);
	free(r->prefix);
	free(r);
}

static char script_sha[41];
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

/* sha_init - the script's SHA-1 in hex, the name EVALSHA uses */
static void
sha_init(void)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(script, sizeof(script) - 1, md, &mdlen, EVP_sha1(),
	    NULL) != 1 || mdlen != 20)
		fatalx("state: SHA-1 of the Redis script failed");
	xm_hex(md, 20, script_sha);
}

/* xm_redis_sha - the script's name for EVALSHA */
const char *
xm_redis_sha(void)
{
	pthread_once(&sha_once, sha_init);
	return script_sha;
}

/* xm_redis_script - the script's text (for SCRIPT LOAD) */
const char *
xm_redis_script(void)
{
	return script;
}

/* xm_redis_resolve - look HOST up (may block: never on the event loop)
 * and keep its first address for xm_redis_address; 0, or -1 with ERR
 * (the address found before is kept) */
int
xm_redis_resolve(struct xm_redis *r, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_NUMERICSERV }, *ai = NULL;
	char ps[16];
	int g;

	if (r->host == NULL)
		return 0;
	snprintf(ps, sizeof(ps), "%d", r->port);
	if ((g = getaddrinfo(r->host, ps, &hints, &ai)) != 0) {
		snprintf(err, errlen, "%s: %s", r->host, gai_strerror(g));
		return -1;
	}
	pthread_mutex_lock(&r->lock);
	if (ai->ai_addrlen <= sizeof(r->addr)) {
		memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
		r->addrlen = ai->ai_addrlen;
	}
	pthread_mutex_unlock(&r->lock);
	freeaddrinfo(ai);
	return 0;
}

/* xm_redis_address - the address xm_redis_resolve found, into SS; its
 * length, or 0 when none was found yet */
socklen_t
xm_redis_address(struct xm_redis *r, struct sockaddr_storage *ss)
{
	socklen_t n;

	pthread_mutex_lock(&r->lock);
	n = r->addrlen;
	if (n > 0)
		memcpy(ss, &r->addr, n);
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* xm_redis_target - where R connects, and its timeout */
void
xm_redis_target(const struct xm_redis *r, const char **host, int *port,
    const char **path, long long *db, double *timeout)
{
	*host = r->host;
	*port = r->port;
	*path = r->path;
	*db = r->db;
	*timeout = r->timeout;
}

/* tv - seconds as a timeval */
static struct timeval
tv(double s)
{
	struct timeval t;

	t.tv_sec = (time_t)s;
	t.tv_usec = (suseconds_t)((s - (double)t.tv_sec) * 1e6);
	return t;
}

/* timed_out - the last failure on CTX (errno E right after it) was the
 * command timeout, not a lost connection */
static bool
timed_out(const redisContext *ctx, int e)
{
#ifdef REDIS_ERR_TIMEOUT
	if (ctx->err == REDIS_ERR_TIMEOUT)     /* hiredis >= 1.0 */
		return true;
#endif
	static const int slow[] = { EAGAIN, EWOULDBLOCK, ETIMEDOUT,
	    EINPROGRESS };
	size_t i;

	if (ctx->err != REDIS_ERR_IO)
		return false;
	/* errno, or the message hiredis made of it (errno may be gone) */
	for (i = 0; i < sizeof(slow) / sizeof(slow[0]); i++)
		if (e == slow[i] || strcmp(ctx->errstr, strerror(slow[i])) == 0)
			return true;
	return false;
}

/* conn_fail - drop C's connection after a failed call (errno E); -1 when
 * the connection was lost (every thread reconnects: the server may have
 * restarted), XM_REDIS_TIMEOUT when it did not answer in time (only this
 * connection goes: a late reply would answer the next command) */
static int
conn_fail(struct xm_redis *r, struct conn *c, int e, char *err,
    size_t errlen, const char *what)
{
	int rc = -1;

	if (c->ctx != NULL && timed_out(c->ctx, e)) {
		snprintf(err, errlen, "no answer within %gs (%s)", r->timeout,
		    what);
		rc = XM_REDIS_TIMEOUT;
	} else
		snprintf(err, errlen, "%s", what);
	if (c->ctx) {
		redisFree(c->ctx);
		c->ctx = NULL;
	}
	if (rc == -1)
		atomic_fetch_add(&r->epoch, 1);
	return rc;
}

/* load_script - SCRIPT LOAD on C (Redis must name it by our sha); 0, -1, or
 * XM_REDIS_TIMEOUT (C's connection dropped on -1 and on a timeout) */
static int
load_script(struct xm_redis *r, struct conn *c, char *err, size_t errlen)
{
	redisReply *rep = redisCommand(c->ctx, "SCRIPT LOAD %s", script);
	int rc = 0;

	if (rep == NULL)
		return conn_fail(r, c, errno, err, errlen, c->ctx->errstr);
	if (rep->type != REDIS_REPLY_STRING ||
	    strcmp(rep->str, xm_redis_sha()) != 0) {
		snprintf(err, errlen, "SCRIPT LOAD: %s", rep->type ==
		    REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		rc = -1;
	}
	freeReplyObject(rep);
	return rc;
}

/* drop - close C's connection (no epoch change) */
static void
drop(struct conn *c)
{
	if (c->ctx != NULL) {
		redisFree(c->ctx);
		c->ctx = NULL;
	}
}

/*
 * get_conn - this thread's connection, connected and current: 0 with *CP
 * set (*FRESH: made by this call, so a failure on it is no stale
 * connection), or -1 / XM_REDIS_TIMEOUT with ERR (nothing kept)
 */
static int
get_conn(struct xm_redis *r, struct conn **cp, bool *fresh, char *err,
    size_t errlen)
{
	struct conn *c = pthread_getspecific(r->tkey);
	unsigned ep = atomic_load(&r->epoch);
	int rc, e;

	*fresh = false;
	if (c == NULL) {
		c = xm_calloc(1, sizeof(*c));
		pthread_mutex_lock(&r->lock);
		c->next = r->conns;
		r->conns = c;
		pthread_mutex_unlock(&r->lock);
		pthread_setspecific(r->tkey, c);
	}
	*cp = c;
	if (c->ctx != NULL && c->epoch == ep)
		return 0;
	drop(c);
	*fresh = true;
	c->ctx = r->path ? redisConnectUnixWithTimeout(r->path, tv(r->timeout)) :
	    redisConnectWithTimeout(r->host, r->port, tv(r->timeout));
	e = errno;
	if (c->ctx == NULL) {
		snprintf(err, errlen, "cannot allocate a Redis context");
		return -1;
	}
	if (c->ctx->err) {
		char what[160];

		snprintf(what, sizeof(what), "connect: %s", c->ctx->errstr);
		return conn_fail(r, c, e, err, errlen, what);
	}
	redisSetTimeout(c->ctx, tv(r->timeout));
	c->epoch = ep;
	if (r->db != 0) {
		redisReply *rep = redisCommand(c->ctx, "SELECT %lld", r->db);

		if (rep == NULL) {
			char what[160];

			snprintf(what, sizeof(what), "SELECT %lld: %s", r->db,
			    c->ctx->errstr);
			return conn_fail(r, c, errno, err, errlen, what);
		}
		if (rep->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "SELECT %lld failed: %s", r->db,
			    rep->str);
			freeReplyObject(rep);
			drop(c);
			return -1;
		}
		freeReplyObject(rep);
	}
	if ((rc = load_script(r, c, err, errlen)) < 0) {
		drop(c);
		return rc;
	}
	return 0;
}

/* ping_once - PING on this thread's connection (see xm_redis_ping) */
static int
ping_once(struct xm_redis *r, bool *stale, char *err, size_t errlen)
{
	struct conn *c;
	redisReply *rep;
	bool fresh;
	int rc;

	*stale = false;
	if ((rc = get_conn(r, &c, &fresh, err, errlen)) < 0)
		return rc;
	if ((rep = redisCommand(c->ctx, "PING")) == NULL) {
		rc = conn_fail(r, c, errno, err, errlen, c->ctx->errstr);
		*stale = rc == -1 && !fresh;
		return rc;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "PING: %s", rep->str);
		rc = -1;
	}
	freeReplyObject(rep);
	return rc;
}

/* xm_redis_ping - connect and PING; a connection found closed by the
 * server is replaced and PINGed again once */
int
xm_redis_ping(struct xm_redis *r, char *err, size_t errlen)
{
	bool stale;
	int rc = ping_once(r, &stale, err, errlen);

	if (rc == -1 && stale)
		rc = ping_once(r, &stale, err, errlen);
	return rc;
}

/*
 * How each op travels (the same rules for the command and its reply):
 * a BUCKET without a limit (rate <= 0) is not sent at all (its result is
 * known: ok, the whole burst); a DISTINCT with a cap of 1 to
 * XM_REDIS_STRSET_MAX members is a string of 8-byte members read with
 * the batch's MGET (op 3, or 4 with a second counter), one with a larger
 * cap or none a Redis set (op 5 or 6). Key kinds: t bucket (arrival
 * time, whole microseconds), m set as a string, d Redis set, i counter,
 * v value.
 */
#define XM_REDIS_STRSET_MAX 1024

/* strset - OP is a DISTINCT kept as a string of members */
static bool
strset(const struct xm_state_op *op)
{
	return op->op == XM_SOP_DISTINCT && op->cap > 0 &&
	    op->cap <= XM_REDIS_STRSET_MAX;
}

/* sent - OP goes to Redis (an unlimited bucket does not) */
static bool
sent(const struct xm_state_op *op)
{
	switch (op->op) {
	case XM_SOP_BUCKET:
		return op->rate > 0;
	case XM_SOP_DISTINCT:
	case XM_SOP_INCR:
	case XM_SOP_GET:
	case XM_SOP_SET:
		return true;
	}
	return false;
}

/* letter - the key kind of OP */
static char
letter(const struct xm_state_op *op)
{
	switch (op->op) {
	case XM_SOP_BUCKET: return 't';
	case XM_SOP_DISTINCT: return strset(op) ? 'm' : 'd';
	case XM_SOP_INCR: return 'i';
	default: return 'v';
	}
}

/* read_key - OP's key is among the keys the script MGETs first */
static bool
read_key(const struct xm_state_op *op)
{
	return op->op == XM_SOP_BUCKET || op->op == XM_SOP_GET || strset(op);
}

/*
 * The command is written in Redis's protocol (RESP) by hand: one buffer,
 * no printf and no per-argument allocation (formatting through hiredis
 * and snprintf cost more than everything else on this path).
 */

/* put_u - decimal V at P; the length */
static size_t
put_u(char *p, unsigned long long v)
{
	char t[24];
	size_t n = 0, i;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		p[i] = t[n - 1 - i];
	return n;
}

/* put_num - V as a number Lua's tonumber reads: an integer when it is
 * one, else %.17g */
static size_t
put_num(char *p, double v)
{
	if (v == floor(v) && fabs(v) < 1e15) {
		if (v < 0) {
			*p = '-';
			return 1 + put_u(p + 1, (unsigned long long)-v);
		}
		return put_u(p, (unsigned long long)v);
	}
	return (size_t)snprintf(p, 32, "%.17g", v);
}

/* put_hex - V as 16 hex digits */
static size_t
put_hex(char *p, uint64_t v)
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 15; i >= 0; i--) {
		p[i] = hex[v & 15];
		v >>= 4;
	}
	return 16;
}

/* arg - append one bulk string of N bytes at S */
static void
arg(struct xm_buf *b, unsigned *argc, const char *s, size_t n)
{
	char h[32];
	size_t k = 0;

	h[k++] = '$';
	k += put_u(h + k, n);
	h[k++] = '\r';
	h[k++] = '\n';
	xm_buf_append(b, h, k);
	xm_buf_append(b, s, n);
	xm_buf_append(b, "\r\n", 2);
	(*argc)++;
}

/* arg_key - a key: PREFIX + kind letter + ':' + hex */
static void
arg_key(struct xm_buf *b, unsigned *argc, const char *prefix, size_t plen,
    char kind, uint64_t key)
{
	char t[80];

	memcpy(t, prefix, plen);
	t[plen] = kind;
	t[plen + 1] = ':';
	arg(b, argc, t, plen + 2 + put_hex(t + plen + 2, key));
}

/*
 * The script's arguments are packed: FMT gets struct.unpack's format,
 * BLOB the values (doubles little-endian first, strings as they are).
 */
struct pack {
	struct xm_buf fmt, blob;
};

/* pk_num - one number (a double) */
static void
pk_num(struct pack *p, double v)
{
	unsigned char b[8];
	uint64_t u;
	int i;

	memcpy(&u, &v, sizeof(u));
	for (i = 0; i < 8; i++, u >>= 8)
		b[i] = (unsigned char)(u & 0xff);
	xm_buf_append(&p->fmt, "d", 1);
	xm_buf_append(&p->blob, b, 8);
}

/* pk_uint - V as an unsigned integer of SIZE (1, 2 or 4) bytes */
static void
pk_uint(struct pack *p, unsigned long v, int size)
{
	unsigned char b[4];
	int i;

	for (i = 0; i < size; i++, v >>= 8)
		b[i] = (unsigned char)(v & 0xff);
	xm_buf_append(&p->fmt, size == 1 ? "B" : size == 2 ? "H" : "I4",
	    size == 4 ? 2 : 1);
	xm_buf_append(&p->blob, b, (size_t)size);
}

/* pk_str - N bytes at S (N >= 1) */
static void
pk_str(struct pack *p, const char *s, size_t n)
{
	char f[24];

	f[0] = 'c';
	xm_buf_append(&p->fmt, f, 1 + put_u(f + 1, n));
	xm_buf_append(&p->blob, s, n);
}

/* pk_ms - TTL seconds as whole milliseconds for PX / PEXPIRE (a string):
 * at least 1, at most 1e13 (~300 years: Redis refuses an expiry past its
 * range) */
static void
pk_ms(struct pack *p, double ttl)
{
	double ms = ceil(ttl * 1000);
	char t[24];

	if (!(ms >= 1))
		ms = 1;
	if (ms > 1e13)
		ms = 1e13;
	pk_str(p, t, put_u(t, (unsigned long long)ms));
}

/* pk_member - a member of a set kept as a string: 8 bytes, least
 * significant first */
static void
pk_member(struct pack *p, uint64_t m)
{
	char t[8];
	int i;

	for (i = 0; i < 8; i++, m >>= 8)
		t[i] = (char)(m & 0xff);
	pk_str(p, t, 8);
}

/* bucket_us - a limited bucket's increment (COST tokens) and limit (the
 * burst plus the tolerance, the same as the memory table's) in whole
 * microseconds: the arrival time is kept in whole microseconds, so an
 * increment rounded to one is what adding the exact one and rounding the
 * sum gave; a delay (a whole number) is over the limit exactly when it is
 * over the limit rounded down */
static void
bucket_us(const struct xm_state_op *op, double *inc, double *lim)
{
	double T = 1e6 / op->rate, tol = T * 1e-3 > 10 ? T * 1e-3 : 10;

	*inc = floor(op->cost * T + 0.5);
	*lim = floor(op->burst * T + tol);
	if (!(*inc >= 0))
		*inc = 0;
	if (*inc > 4e15)
		*inc = 4e15;
	if (!(*lim >= 0))
		*lim = 0;
	if (*lim > 4e15)
		*lim = 4e15;
}

/* the keys of one command, in the order of KEYS */
struct key_ent {
	char kind;
	uint64_t key;
};

/* replies - how many numbers of the reply are OP's */
static size_t
replies(const struct xm_state_op *op)
{
	if (!sent(op) || op->op == XM_SOP_SET)
		return 0;
	return op->op == XM_SOP_DISTINCT && op->key2 != 0 ? 2 : 1;
}

/* xm_redis_command - the EVALSHA of OPS at NOW, in RESP, into CMD */
void
xm_redis_command(const struct xm_redis *r, const struct xm_state_op *ops,
    size_t n, double now, struct xm_buf *cmd)
{
	/* scratch buffers kept per thread: no allocation per batch */
	static __thread struct xm_buf args;
	static __thread struct pack pk;
	struct key_ent kv[64], *ke = kv;
	size_t i, j, hk = 0, plen = strlen(r->prefix), nkeys = 0, nread = 0,
	    nalias = 0, nres = 0;
	unsigned argc = 0, hargc = 0;
	char t[64], h[32];
	int pass;

	/* the keys read first, then the others (each op's in op order) */
	for (i = 0; i < n; i++)
		if (sent(&ops[i]))
			nkeys += ops[i].op == XM_SOP_DISTINCT && ops[i].key2 != 0 ?
			    2 : 1;
	if (nkeys > XM_ARRAY_LEN(kv))
		ke = xm_calloc(nkeys, sizeof(*ke));
	nkeys = 0;
	xm_buf_reset(&args);
	xm_buf_reset(&pk.fmt);
	xm_buf_reset(&pk.blob);
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < n; i++) {
			const struct xm_state_op *op = &ops[i];

			if (!sent(op))
				continue;
			if (read_key(op) == (pass == 0))
				ke[nkeys++] = (struct key_ent){ letter(op),
				    op->key };
			if (pass == 0 && op->op == XM_SOP_DISTINCT &&
			    op->key2 != 0)
				ke[nkeys++] = (struct key_ent){ 'i', op->key2 };
			if (pass == 0)
				nread = nkeys;
		}
	arg(&args, &argc, t, put_u(t, nkeys));
	for (i = 0; i < nkeys; i++)
		arg_key(&args, &argc, r->prefix, plen, ke[i].kind, ke[i].key);
	xm_buf_append(&pk.fmt, "<", 1);
	pk_num(&pk, floor(now * 1e6));
	pk_uint(&pk, nread, 4);
	/* a key met twice: its later places name the first (a batch is a
	 * few dozen keys: the quadratic search is cheaper than a table) */
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1)
			pk_uint(&pk, nalias, 4);
		for (j = 1; j < nkeys; j++)
			for (i = 0; i < j; i++)
				if (ke[i].key == ke[j].key &&
				    ke[i].kind == ke[j].kind) {
					if (pass == 0)
						nalias++;
					else {
						pk_uint(&pk, j + 1, 4);
						pk_uint(&pk, i + 1, 4);
					}
					break;
				}
	}
	if (ke != kv)
		free(ke);
	for (i = 0; i < n; i++) {
		const struct xm_state_op *op = &ops[i];
		double inc, lim;

		if (!sent(op))
			continue;
		nres += replies(op);
		switch (op->op) {
		case XM_SOP_BUCKET:
			bucket_us(op, &inc, &lim);
			pk_uint(&pk, 1, 1);
			pk_num(&pk, inc);
			pk_num(&pk, lim);
			pk_str(&pk, t, put_u(t, (unsigned long long)inc));
			break;
		case XM_SOP_DISTINCT:
			if (strset(op)) {
				pk_uint(&pk, op->key2 != 0 ? 4 : 3, 1);
				pk_member(&pk, op->member);
				pk_ms(&pk, op->ttl);
				pk_uint(&pk, (unsigned long)op->cap, 2);
			} else {
				pk_uint(&pk, op->key2 != 0 ? 6 : 5, 1);
				pk_str(&pk, t, put_hex(t, op->member));
				pk_ms(&pk, op->ttl);
				pk_num(&pk, op->cap > 0 ? (double)op->cap : 0);
			}
			break;
		case XM_SOP_INCR:
			pk_uint(&pk, 7, 1);
			pk_ms(&pk, op->ttl);
			break;
		case XM_SOP_GET:
			pk_uint(&pk, 2, 1);
			break;
		case XM_SOP_SET:
			pk_uint(&pk, 8, 1);
			pk_str(&pk, t, put_num(t, op->value));
			pk_ms(&pk, op->ttl);
			break;
		}
	}
	arg(&args, &argc, pk.fmt.data, pk.fmt.len);
	arg(&args, &argc, pk.blob.data, pk.blob.len);
	xm_buf_reset(&pk.fmt);
	xm_buf_append(&pk.fmt, "<", 1);
	for (i = 0; i < nres; i++)
		xm_buf_append(&pk.fmt, "d", 1);
	arg(&args, &argc, pk.fmt.data, pk.fmt.len);
	/* "*ARGC" "EVALSHA" "SHA", then the arguments built above */
	xm_buf_reset(cmd);
	h[hk++] = '*';
	hk += put_u(h + hk, argc + 2);
	h[hk++] = '\r';
	h[hk++] = '\n';
	xm_buf_append(cmd, h, hk);
	xm_buf_append(cmd, "$7\r\nEVALSHA\r\n", 13);
	arg(cmd, &hargc, xm_redis_sha(), 40);
	xm_buf_append(cmd, args.data, args.len);
}

/* rep_double - the K-th number of the reply string S (little-endian
 * doubles); false when it is not finite */
static bool
rep_double(const char *s, size_t k, double *v)
{
	const unsigned char *b = (const unsigned char *)s + 8 * k;
	uint64_t u = 0;
	int i;

	for (i = 7; i >= 0; i--)
		u = u << 8 | b[i];
	memcpy(v, &u, sizeof(*v));
	return isfinite(*v);
}

/* whole - V is a whole number in [MIN, 2^53] */
static bool
whole(double v, double min)
{
	return v >= min && v <= 9007199254740992.0 && v == floor(v);
}

/* xm_redis_results - OPS' results from the script's reply */
int
xm_redis_results(const void *reply, struct xm_state_op *ops, size_t n,
    char *err, size_t errlen)
{
	const redisReply *rep = reply;
	size_t k, want = 0, j = 0;

	if (rep->type == REDIS_REPLY_ERROR &&
	    strncmp(rep->str, "NOSCRIPT", 8) == 0) {
		snprintf(err, errlen, "script not loaded");
		return XM_REDIS_NOSCRIPT;
	}
	for (k = 0; k < n; k++)
		want += replies(&ops[k]);
	if (rep->type != REDIS_REPLY_STRING || rep->len != 8 * want ||
	    (want > 0 && rep->str == NULL)) {
		snprintf(err, errlen, "script: %s", rep->type ==
		    REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		return -1;
	}
	for (k = 0; k < n; k++) {
		struct xm_state_op *op = &ops[k];
		double x = 0, T, d;

		op->ok = true;
		op->result = op->result2 = 0;
		if (replies(op) > 0 && !rep_double(rep->str, j, &x))
			goto bad;
		switch (op->op) {
		case XM_SOP_BUCKET:
			if (!sent(op)) {         /* no limit */
				op->result = op->burst;
				break;
			}
			/* d (microseconds) before the op, or -1 - d: refused */
			if (!whole(x, -9007199254740992.0))
				goto bad;
			op->ok = x >= 0;
			d = (op->ok ? x : -1 - x) / 1e6;
			T = 1.0 / op->rate;
			op->result = (op->burst * T - d - (op->ok ? op->cost * T :
			    0)) / T;
			if (op->result < 0)
				op->result = 0;
			break;
		case XM_SOP_DISTINCT:
			if (!whole(x, 0))
				goto bad;
			op->result = x;
			if (op->key2 != 0 && !rep_double(rep->str, j + 1,
			    &op->result2))
				goto bad;
			break;
		case XM_SOP_INCR:
			if (!whole(x, 0))
				goto bad;
			op->result = x;
			break;
		case XM_SOP_GET:
			op->result = x;
			break;
		case XM_SOP_SET:
			op->result = op->value;
			break;
		default:           /* as the memory table: ok, 0 */
			break;
		}
		j += replies(op);
	}
	return 0;
bad:
	snprintf(err, errlen, "script: bad result %zu", k);
	return -1;
}

/* xm_redis_exec - one EVALSHA for the batch, results parsed back */
int
xm_redis_exec(struct xm_redis *r, struct xm_state_op *ops, size_t n,
    double now, char *err, size_t errlen)
{
	struct conn *c;
	redisReply *rep = NULL;
	struct xm_buf cmd = { 0 };
	int attempt, rc = -1;
	bool retried, noscript;

	if (n == 0)
		return 0;
	xm_redis_command(r, ops, n, now, &cmd);
	/*
	 * Up to three rounds: NOSCRIPT (the script cache was flushed) loads
	 * the script and goes again; a connection that was idle and turns
	 * out closed by the server (a restart, its idle timeout) is replaced
	 * once and the command sent again (see the top of this file). A
	 * timeout is never retried (the script may be running).
	 */
	for (attempt = 0, retried = noscript = false; attempt < 3; attempt++) {
		void *vr = NULL;
		bool fresh;

		if ((rc = get_conn(r, &c, &fresh, err, errlen)) < 0)
			goto out;
		if (redisAppendFormattedCommand(c->ctx, cmd.data, cmd.len) !=
		    REDIS_OK || redisGetReply(c->ctx, &vr) != REDIS_OK ||
		    vr == NULL) {
			int e = errno;

			if (vr)
				freeReplyObject(vr);
			rc = conn_fail(r, c, e, err, errlen, c->ctx->errstr[0] ?
			    c->ctx->errstr : "no reply");
			if (rc == -1 && !fresh && !retried) {
				retried = true;
				continue;
			}
			goto out;
		}
		rep = vr;
		rc = xm_redis_results(rep, ops, n, err, errlen);
		if (rc == XM_REDIS_NOSCRIPT && !noscript) {
			noscript = true;
			freeReplyObject(rep);
			rep = NULL;
			if ((rc = load_script(r, c, err, errlen)) < 0) {
				drop(c);
				goto out;
			}
			rc = -1;
			continue;
		}
		if (rc == XM_REDIS_NOSCRIPT)
			rc = -1;
		break;
	}
out:
	if (rep)
		freeReplyObject(rep);
	xm_buf_free(&cmd);
	return rc;
}
