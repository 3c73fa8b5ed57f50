/*
 * state.h - counters shared by events: one interface, two backends
 *
 * What the rate and outbreak filters remember between events lives here,
 * behind one batch interface: a filter fills an array of operations for
 * one event and runs it with xm_state_exec, which applies all of them
 * atomically (under one lock in memory, in one server-side script on
 * Redis: one round trip per event). Operations:
 *
 *   BUCKET    token bucket (rate per second, burst): take COST tokens;
 *             ok=false when there are not enough (nothing is taken then).
 *             Kept as GCRA (one "theoretical arrival time" per key).
 *   DISTINCT  add MEMBER to the set KEY (exact, until it holds CAP
 *             members); result = members now. Expires TTL after creation
 *             (callers put the window's number in the key). With KEY2
 *             set, a member new to KEY is also counted in the counter
 *             KEY2 (a subset kept as a count only: strangers among all
 *             recipients); result2 = that count.
 *   INCR      counter KEY += 1; result = new value; expires TTL after
 *             creation.
 *   GET       result = the value SET stored (0: none or expired).
 *   SET       store VALUE (> 0) under KEY for TTL seconds.
 *
 * Keys are 64-bit hashes (xm_state_key) of a kind tag and text: the memory
 * table stores nothing else, Redis keys are PREFIX + tag + hex. The clock
 * is the caller's NOW (the event's time in replay), never the wall clock,
 * so the same events give the same results.
 *
 * The state is process-global (xm_state_configure): it outlives a filter
 * chain, so a SIGHUP that rebuilds the filters keeps every counter. With
 * Redis configured, operations go to Redis; when it does not answer they
 * go to the local memory table instead (logged, counted, shown in
 * health), and Redis is tried again every redis_retry seconds.
 *
 * Thread safety: xm_state_exec may be called from any thread (the memory
 * table has a lock; each thread has its own Redis connection).
 * xm_state_configure is called while building a chain (one at a time).
 */
#ifndef XM_STATE_H
#define XM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <string.h>

#include "util.h"

enum xm_sop {
	XM_SOP_BUCKET = 1,
	XM_SOP_DISTINCT,
	XM_SOP_INCR,
	XM_SOP_GET,
	XM_SOP_SET,
};

/* kinds of record in the memory table (2 bits of the key) */
enum xm_skind { XM_SK_BUCKET = 0, XM_SK_COUNT, XM_SK_MARK, XM_SK_VALUE };

/* one operation: 64 bytes, one cache line (a batch has a dozen; the
 * fields of one kind share their room with the others') */
struct xm_state_op {
	enum xm_sop op;
	bool ok;               /* result, BUCKET: the tokens were there */
	uint64_t key;          /* xm_state_key() */
	double ttl;            /* DISTINCT, INCR, SET: seconds */
	union {
		struct {               /* BUCKET */
			double rate, burst;    /* tokens per second, bucket size */
			double cost;           /* tokens to take */
		};
		struct {               /* DISTINCT */
			uint64_t member;       /* the member's hash */
			uint64_t key2;         /* also count new members here (0:
			                          none) */
			long long cap;         /* stop adding at this many members */
		};
		double value;          /* SET */
	};
	/* results */
	double result;         /* BUCKET: tokens left; DISTINCT/INCR: count;
	                          GET: value */
	double result2;        /* DISTINCT with key2: its count */
};
_Static_assert(sizeof(struct xm_state_op) == 64, "one cache line");

/* xm_hash64 - 64-bit hash of N bytes at P continuing from SEED */
uint64_t xm_hash64(const void *p, size_t n, uint64_t seed);
/* xm_hash64_u64 - xm_hash64(&V, 8, SEED), inline: the keys hash window
 * numbers and fingerprints into a tag's state on every event, and the
 * general function's loop and tail switch cost more than the mixing */
static inline uint64_t
xm_hash64_u64(uint64_t v, uint64_t seed)
{
	const uint64_t m = UINT64_C(0xc6a4a7935bd1e995);
	unsigned char b[8];
	uint64_t h = seed ^ (8 * m), k;

	memcpy(b, &v, sizeof(b));     /* the bytes as xm_hash64 reads them */
	k = (uint64_t)b[0] | (uint64_t)b[1] << 8 | (uint64_t)b[2] << 16 |
	    (uint64_t)b[3] << 24 | (uint64_t)b[4] << 32 | (uint64_t)b[5] << 40 |
	    (uint64_t)b[6] << 48 | (uint64_t)b[7] << 56;
	k *= m;
	k ^= k >> 47;
	k *= m;
	h ^= k;
	h *= m;
	h ^= h >> 47;
	h *= m;
	h ^= h >> 47;
	return h;
}
/* xm_state_key - key of kind tag TAG (a short word) and text S (its first N
 * bytes); never 0 */
uint64_t xm_state_key(const char *tag, const char *s, size_t n);
/* xm_state_key2 - the same for two texts (joined unambiguously) */
uint64_t xm_state_key2(const char *tag, const char *a, const char *b);

/* ---- the memory table (state_memory.c) ---- */

struct xm_memstore;
struct xm_memstore_stats {
	size_t keys;           /* live records */
	size_t slots;          /* table size */
	size_t bytes;          /* table memory */
	size_t max_bytes;      /* the bound */
	unsigned long long evictions, expired;
};
/* xm_memstore_new - an empty table that never uses more than MAX_BYTES
 * (at least 64 KB); free with xm_memstore_free */
struct xm_memstore *xm_memstore_new(size_t max_bytes);
void xm_memstore_free(struct xm_memstore *m);
/* xm_memstore_set_max - change the bound (shrinking evicts) */
void xm_memstore_set_max(struct xm_memstore *m, size_t max_bytes);
/* xm_memstore_exec - run OPS atomically at time NOW */
void xm_memstore_exec(struct xm_memstore *m, struct xm_state_op *ops,
    size_t n, double now);
void xm_memstore_stats(struct xm_memstore *m, struct xm_memstore_stats *s);
/* xm_memstore_slot_bytes - bytes of one table slot */
size_t xm_memstore_slot_bytes(void);

/* ---- the Redis backend (state_redis.c) ---- */

struct xm_redis;
/* xm_redis_new - a backend for URL (redis://HOST:PORT[/DB] or
 * unix:/PATH[?db=N]) with connect/command TIMEOUT seconds and key PREFIX;
 * NULL with ERR when URL is malformed (connecting happens later) */
struct xm_redis *xm_redis_new(const char *url, double timeout,
    const char *prefix, char *err, size_t errlen);
void xm_redis_free(struct xm_redis *r);
/* XM_REDIS_TIMEOUT - a call's answer did not come within the timeout:
 * Redis may be slow or this machine busy, not necessarily down; a batch
 * that timed out may or may not have run */
#define XM_REDIS_TIMEOUT (-2)
/* xm_redis_exec - run OPS in one script on this thread's connection
 * (a connection found closed by the server is replaced and the script
 * sent again, once); 0, or -1 with ERR when Redis could not be reached
 * or answered badly, or XM_REDIS_TIMEOUT with ERR (the caller then falls
 * back) */
int xm_redis_exec(struct xm_redis *r, struct xm_state_op *ops, size_t n,
    double now, char *err, size_t errlen);
/* XM_REDIS_NOSCRIPT - Redis does not know the script (its cache was
 * flushed): SCRIPT LOAD it and send the command again */
#define XM_REDIS_NOSCRIPT (-3)
/* xm_redis_sha, xm_redis_script - the script's SHA-1 (hex, what EVALSHA
 * names) and its text (what SCRIPT LOAD sends) */
const char *xm_redis_sha(void);
const char *xm_redis_script(void);
/* xm_redis_command - the whole EVALSHA command for OPS at NOW, in Redis's
 * protocol, into CMD (emptied first): for a caller with its own
 * connection (state_pipe.c pipelines these on the event loop) */
void xm_redis_command(const struct xm_redis *r, const struct xm_state_op *ops,
    size_t n, double now, struct xm_buf *cmd);
/* xm_redis_results - fill OPS' results from REPLY (a hiredis redisReply
 * to that command): 0, XM_REDIS_NOSCRIPT, or -1 with ERR */
int xm_redis_results(const void *reply, struct xm_state_op *ops, size_t n,
    char *err, size_t errlen);
/* xm_redis_resolve - look R's host name up (blocking: at configuration
 * and in the monitor thread, never on the event loop) and keep its first
 * address; 0, or -1 with ERR (a former address is kept). A Unix socket
 * needs none. */
int xm_redis_resolve(struct xm_redis *r, char *err, size_t errlen);
/* xm_redis_address - that address into SS: its length, 0 when none yet */
socklen_t xm_redis_address(struct xm_redis *r, struct sockaddr_storage *ss);
/* xm_redis_target - where R connects: HOST and PORT, or PATH (the other
 * NULL); DB; the connect/command TIMEOUT in seconds */
void xm_redis_target(const struct xm_redis *r, const char **host, int *port,
    const char **path, long long *db, double *timeout);
/* xm_redis_ping - connect (if needed) and PING; 0, or -1 or
 * XM_REDIS_TIMEOUT with ERR */
int xm_redis_ping(struct xm_redis *r, char *err, size_t errlen);

/* ---- the process-global state (state.c) ---- */

struct xm_state_conf {
	long long memory;      /* bytes for the memory table */
	const char *redis;     /* "" or NULL: memory only */
	double redis_timeout;  /* seconds */
	double redis_retry;    /* seconds between probes while Redis is down */
	const char *redis_prefix;
};

/* xm_state_configure - set up (or keep, when unchanged) the global state;
 * 0 or -1 with ERR (a malformed redis URL) */
int xm_state_configure(const struct xm_state_conf *c, char *err,
    size_t errlen);
/* xm_state_local_only - from now on ignore a configured Redis (its URL is
 * still checked): `xmilter check` replays must neither read nor change
 * the counters of the running nodes, and stay deterministic */
void xm_state_local_only(void);
/* xm_state_remote - true when a Redis backend is configured (operations
 * may block: run them off the event loop) */
bool xm_state_remote(void);
/* xm_state_exec - run OPS at NOW on Redis, or in memory */
void xm_state_exec(struct xm_state_op *ops, size_t n, double now);
/* xm_state_status - health lines (state=..., counters) into OUT; returns
 * false when degraded (Redis configured but down), with a reason line */
bool xm_state_status(struct xm_buf *out);

/* For state_pipe.c (batches sent from the event loop):
 * xm_state_backend - the Redis backend when configured and not marked
 *   down (batches go there), else NULL;
 * xm_state_local - run OPS in the memory table (a fallback when Redis is
 *   configured: counted as one);
 * xm_state_redis_ok - one batch done in Redis (counted);
 * xm_state_failed - a Redis call failed with WHY: Redis is marked down
 *   (logged once), or when TIMEOUT it only counts and logs (at most every
 *   10 s) */
struct xm_redis *xm_state_backend(void);
void xm_state_local(struct xm_state_op *ops, size_t n, double now);
void xm_state_redis_ok(void);
void xm_state_failed(const char *why, bool timeout);

struct xm_state_stats {
	bool redis_configured, redis_up;
	unsigned long long redis_ops, redis_errors, fallback_ops;
	struct xm_memstore_stats mem;
};
void xm_state_stats(struct xm_state_stats *s);
/* xm_state_reset - drop every counter and the backend (tests) */
void xm_state_reset(void);

#endif
