/*
 * state.c - the process-global state: memory table, Redis, fallback
 *
 * Purpose: one state for the whole daemon, whichever chain is running.
 * Filters call xm_state_configure from their init (with the same settings
 * every time unless the operator changed them) and xm_state_exec from
 * check. The memory table is created once and kept across reloads (its
 * bound follows the configuration); a Redis backend is created when a URL
 * is configured and replaced when the URL changes.
 *
 * Fallback: when a Redis call fails, the backend is marked down (logged
 * once, counted) and the batch runs in the memory table, like every batch
 * after it while Redis is down. A call that only timed out (Redis slow,
 * or this machine too busy to read the answer in time) costs that one
 * batch, counted in memory, and does not mark Redis down; a connection
 * the server had closed is replaced by state_redis.c before anything
 * counts as failed. A monitor thread PINGs Redis every redis_retry
 * seconds on its own connection: it marks Redis down when it stops
 * answering (two failed probes in a row, each on a new connection:
 * refused, lost or timed out) so health is right
 * even without traffic, and up again when it answers (logged), and
 * events go back to Redis. Health (xm_state_status) shows the backend,
 * its counters, and "degraded" while Redis is down.
 *
 * Thread safety: configuration happens under a mutex and swaps pointers
 * that stay valid until process exit or xm_state_reset (an old Redis
 * backend is kept, not freed, because a worker may still be using it);
 * counters are atomics.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "state.h"

#define DEFAULT_MEMORY (64LL * 1024 * 1024)

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static struct xm_memstore *mem;
static long long mem_bytes;
static _Atomic(struct xm_redis *) redis;
static char *redis_url, *redis_prefix_s;
static double redis_timeout_s, redis_retry_s;
static struct xm_redis **retired;     /* replaced backends, freed at reset */
static size_t nretired;

static atomic_bool redis_down;
static bool local_only;                 /* xm_state_local_only */
static pthread_t monitor_thread;        /* see monitor() */
static bool monitor_running;
static atomic_bool monitor_stop;
static void *monitor(void *arg);
static atomic_ullong n_redis_ops, n_redis_errors, n_fallback_ops;
static _Atomic double slow_logged;      /* xm_monotonic() of the last log */

/* le64 - 8 bytes at S as a little-endian number (one load on x86) */
static inline uint64_t
le64(const unsigned char *s)
{
	return (uint64_t)s[0] | (uint64_t)s[1] << 8 | (uint64_t)s[2] << 16 |
	    (uint64_t)s[3] << 24 | (uint64_t)s[4] << 32 | (uint64_t)s[5] << 40 |
	    (uint64_t)s[6] << 48 | (uint64_t)s[7] << 56;
}

/* xm_hash64 - MurmurHash64A over the bytes (8 at a time, read as
 * little-endian so every machine computes the same keys: nodes sharing
 * Redis must agree) */
uint64_t
xm_hash64(const void *p, size_t n, uint64_t seed)
{
	const uint64_t m = UINT64_C(0xc6a4a7935bd1e995);
	const unsigned char *s = p;
	uint64_t h = seed ^ ((uint64_t)n * m), k;

	while (n >= 8) {
		k = le64(s);
		k *= m;
		k ^= k >> 47;
		k *= m;
		h ^= k;
		h *= m;
		s += 8;
		n -= 8;
	}
	if (s - (const unsigned char *)p >= 8) {
		/* the last 1-7 bytes without a jump per length (that jump
		 * mispredicts when lengths vary): the string's last 8 bytes,
		 * shifted down to them; no tail: xor 0, times 1 */
		uint64_t t = n ? le64(s + n - 8) >> (64 - 8 * n) : 0;

		h = (h ^ t) * (n ? m : 1);
	} else
		switch (n) {
		case 7: h ^= (uint64_t)s[6] << 48; /* FALLTHROUGH */
		case 6: h ^= (uint64_t)s[5] << 40; /* FALLTHROUGH */
		case 5: h ^= (uint64_t)s[4] << 32; /* FALLTHROUGH */
		case 4: h ^= (uint64_t)s[3] << 24; /* FALLTHROUGH */
		case 3: h ^= (uint64_t)s[2] << 16; /* FALLTHROUGH */
		case 2: h ^= (uint64_t)s[1] << 8;  /* FALLTHROUGH */
		case 1: h ^= (uint64_t)s[0];
			h *= m;
		}
	h ^= h >> 47;
	h *= m;
	h ^= h >> 47;
	return h;
}

/* xm_state_key - hash of TAG, a NUL, and S[0..n) */
uint64_t
xm_state_key(const char *tag, const char *s, size_t n)
{
	uint64_t h = xm_hash64(tag, strlen(tag) + 1, 0);

	h = xm_hash64(s, n, h);
	return h ? h : 1;
}

/* xm_state_key2 - hash of TAG, A, NUL, B */
uint64_t
xm_state_key2(const char *tag, const char *a, const char *b)
{
	uint64_t h = xm_hash64(tag, strlen(tag) + 1, 0);

	h = xm_hash64(a, strlen(a) + 1, h);
	h = xm_hash64(b, strlen(b), h);
	return h ? h : 1;
}

/* same_str - both empty/NULL, or equal */
static bool
same_str(const char *a, const char *b)
{
	if (a == NULL || *a == '\0')
		return b == NULL || *b == '\0';
	return b != NULL && strcmp(a, b) == 0;
}

/* xm_state_configure - the memory table (bound), and Redis if a URL is set */
int
xm_state_configure(const struct xm_state_conf *c, char *err, size_t errlen)
{
	long long bytes = c->memory > 0 ? c->memory : DEFAULT_MEMORY;
	struct xm_redis *r = NULL, *old;
	int rc = 0;

	pthread_mutex_lock(&state_lock);
	if (mem == NULL) {
		mem = xm_memstore_new((size_t)bytes);
		mem_bytes = bytes;
	} else if (bytes != mem_bytes) {
		xm_memstore_set_max(mem, (size_t)bytes);
		mem_bytes = bytes;
		log_info("state: memory bound now %lld bytes", bytes);
	}
	old = atomic_load(&redis);
	if (same_str(c->redis, redis_url) && same_str(c->redis_prefix,
	    redis_prefix_s) && c->redis_timeout == redis_timeout_s) {
		redis_retry_s = c->redis_retry;
		goto out;
	}
	if (c->redis != NULL && *c->redis != '\0') {
		r = xm_redis_new(c->redis, c->redis_timeout,
		    c->redis_prefix ? c->redis_prefix : "xm:", err, errlen);
		if (r == NULL) {
			rc = -1;
			goto out;
		}
		if (local_only) {   /* checked, not used */
			xm_redis_free(r);
			goto out;
		}
		/* the daemon's pipelined connection uses this address: it
		 * must not look a name up on the event loop (the monitor
		 * looks it up again before every probe) */
		if (xm_redis_resolve(r, err, errlen) < 0)
			log_warn("state: Redis %s: %s (looked up again every "
			    "redis_retry)", c->redis, err);
	}
	if (old != NULL) {
		retired = xm_reallocarray(retired, nretired + 1,
		    sizeof(*retired));
		retired[nretired++] = old;
	}
	free(redis_url);
	free(redis_prefix_s);
	redis_url = c->redis && *c->redis ? xm_strdup(c->redis) : NULL;
	redis_prefix_s = c->redis_prefix ? xm_strdup(c->redis_prefix) : NULL;
	redis_timeout_s = c->redis_timeout;
	redis_retry_s = c->redis_retry;
	atomic_store(&redis_down, false);
	atomic_store(&redis, r);
	if (r != NULL) {
		log_info("state: counters in Redis at %s (memory fallback "
		    "bounded by %lld bytes)", redis_url, bytes);
		if (!monitor_running) {
			atomic_store(&monitor_stop, false);
			if (pthread_create(&monitor_thread, NULL, monitor,
			    NULL) == 0)
				monitor_running = true;
			else
				log_warn("state: cannot start the Redis monitor");
		}
	}
out:
	pthread_mutex_unlock(&state_lock);
	return rc;
}

/* xm_state_local_only - never use Redis in this process */
void
xm_state_local_only(void)
{
	pthread_mutex_lock(&state_lock);
	local_only = true;
	pthread_mutex_unlock(&state_lock);
}

/* xm_state_remote - Redis configured */
bool
xm_state_remote(void)
{
	return atomic_load(&redis) != NULL;
}

/* ensure_mem - the memory table exists even if nobody configured it */
static struct xm_memstore *
ensure_mem(void)
{
	struct xm_memstore *m;

	pthread_mutex_lock(&state_lock);
	if (mem == NULL) {
		mem = xm_memstore_new((size_t)DEFAULT_MEMORY);
		mem_bytes = DEFAULT_MEMORY;
	}
	m = mem;
	pthread_mutex_unlock(&state_lock);
	return m;
}

/* mark_down - Redis failed: say so once, count it */
static void
mark_down(const char *why)
{
	atomic_fetch_add(&n_redis_errors, 1);
	if (!atomic_exchange(&redis_down, true))
		log_warn("state: Redis %s failed (%s): counting in local memory "
		    "until it answers again", redis_url ? redis_url : "", why);
}

/* slow_call - a Redis call timed out: count it, log at most every 10 s */
static void
slow_call(const char *why)
{
	double now = xm_monotonic(), last = atomic_load(&slow_logged);

	atomic_fetch_add(&n_redis_errors, 1);
	if ((last == 0 || now - last >= 10) &&
	    atomic_compare_exchange_strong(&slow_logged, &last, now))
		log_warn("state: Redis %s: %s; that event counted in local "
		    "memory (Redis not marked down)", redis_url ? redis_url :
		    "", why);
}

/*
 * The monitor: one thread that PINGs Redis every redis_retry seconds, so
 * that health tells the truth without traffic and the daemon goes back
 * to Redis when it returns (events never wait for a probe).
 */

/* monitor - PING loop (its own connection) */
static void *
monitor(void *arg)
{
	char err[256];

	while (!atomic_load(&monitor_stop)) {
		struct xm_redis *r = atomic_load(&redis);
		double wait = redis_retry_s > 0 ? redis_retry_s : 1, slept = 0;

		if (r != NULL) {
			int rc;

			/* follow the name's address for the pipelined
			 * connection (it connects to what is found here) */
			if (xm_redis_resolve(r, err, sizeof(err)) < 0)
				log_debug("state: Redis: %s", err);
			rc = xm_redis_ping(r, err, sizeof(err));

			/* one slow or lost answer is not an outage: ask again,
			 * on a new connection (a probe whose fresh connection
			 * the server closed under it, CLIENT KILL say, would
			 * otherwise mark a Redis that answers down) */
			if (rc != 0)
				rc = xm_redis_ping(r, err, sizeof(err));
			if (rc == 0) {
				if (atomic_exchange(&redis_down, false))
					log_warn("state: Redis %s is back; counters "
					    "shared again", redis_url ? redis_url :
					    "");
			} else
				mark_down(err);
		}
		while (slept < wait && !atomic_load(&monitor_stop)) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };

			nanosleep(&ts, NULL);
			slept += 0.05;
		}
	}
	return NULL;
}

/* xm_state_exec - Redis when configured and up, else memory */
void
xm_state_exec(struct xm_state_op *ops, size_t n, double now)
{
	struct xm_redis *r = atomic_load(&redis);
	char err[256];
	int rc;

	if (n == 0)
		return;
	if (r != NULL) {
		if (!atomic_load(&redis_down)) {
			rc = xm_redis_exec(r, ops, n, now, err, sizeof(err));
			if (rc == 0) {
				atomic_fetch_add(&n_redis_ops, 1);
				return;
			}
			if (rc == XM_REDIS_TIMEOUT)
				slow_call(err);
			else
				mark_down(err);
		}
		atomic_fetch_add(&n_fallback_ops, 1);
	}
	xm_memstore_exec(mem ? mem : ensure_mem(), ops, n, now);
}

/* xm_state_backend - where batches go now: Redis, or NULL for memory */
struct xm_redis *
xm_state_backend(void)
{
	struct xm_redis *r = atomic_load(&redis);

	return r != NULL && !atomic_load(&redis_down) ? r : NULL;
}

/* xm_state_local - OPS in the memory table (a fallback if Redis is set) */
void
xm_state_local(struct xm_state_op *ops, size_t n, double now)
{
	if (n == 0)
		return;
	if (atomic_load(&redis) != NULL)
		atomic_fetch_add(&n_fallback_ops, 1);
	xm_memstore_exec(mem ? mem : ensure_mem(), ops, n, now);
}

/* xm_state_redis_ok - one batch done in Redis */
void
xm_state_redis_ok(void)
{
	atomic_fetch_add(&n_redis_ops, 1);
}

/* xm_state_failed - a failed Redis call: down, or one slow answer */
void
xm_state_failed(const char *why, bool timeout)
{
	if (timeout)
		slow_call(why);
	else
		mark_down(why);
}

/* xm_state_stats - counters for health and benchmarks */
void
xm_state_stats(struct xm_state_stats *s)
{
	struct xm_memstore *m = mem ? mem : ensure_mem();

	memset(s, 0, sizeof(*s));
	s->redis_configured = atomic_load(&redis) != NULL;
	s->redis_up = s->redis_configured && !atomic_load(&redis_down);
	s->redis_ops = atomic_load(&n_redis_ops);
	s->redis_errors = atomic_load(&n_redis_errors);
	s->fallback_ops = atomic_load(&n_fallback_ops);
	xm_memstore_stats(m, &s->mem);
}

/* xm_state_status - health lines; false when degraded */
bool
xm_state_status(struct xm_buf *out)
{
	struct xm_state_stats s;

	/* nothing when no filter uses the state (no table yet) */
	if (atomic_load(&redis) == NULL && mem == NULL)
		return true;
	xm_state_stats(&s);
	xm_buf_printf(out, "state=%s\n", !s.redis_configured ? "memory" :
	    s.redis_up ? "redis" : "memory-fallback");
	/* the table: at its bound, evictions say the bound is too small */
	xm_buf_printf(out, "state-keys=%zu\nstate-bytes=%zu\n"
	    "state-max-bytes=%zu\nstate-evictions=%llu\n", s.mem.keys,
	    s.mem.bytes, s.mem.max_bytes, s.mem.evictions);
	if (!s.redis_configured)
		return true;
	xm_buf_printf(out, "state-redis-ops=%llu\n"
	    "state-redis-errors=%llu\nstate-fallback-ops=%llu\n",
	    s.redis_ops, s.redis_errors, s.fallback_ops);
	if (!s.redis_up) {
		xm_buf_printf(out, "reason=redis %s unreachable: counting in "
		    "local memory\n", redis_url ? redis_url : "");
		return false;
	}
	return true;
}

/* xm_state_reset - back to nothing (tests) */
void
xm_state_reset(void)
{
	struct xm_redis *r;
	size_t i;

	if (monitor_running) {
		atomic_store(&monitor_stop, true);
		pthread_join(monitor_thread, NULL);
		monitor_running = false;
	}
	pthread_mutex_lock(&state_lock);
	xm_memstore_free(mem);
	mem = NULL;
	mem_bytes = 0;
	r = atomic_exchange(&redis, NULL);
	xm_redis_free(r);
	for (i = 0; i < nretired; i++)
		xm_redis_free(retired[i]);
	free(retired);
	retired = NULL;
	nretired = 0;
	free(redis_url);
	free(redis_prefix_s);
	redis_url = redis_prefix_s = NULL;
	redis_timeout_s = redis_retry_s = 0;
	atomic_store(&redis_down, false);
	atomic_store(&n_redis_ops, 0);
	atomic_store(&n_redis_errors, 0);
	atomic_store(&n_fallback_ops, 0);
	atomic_store(&slow_logged, 0);
	pthread_mutex_unlock(&state_lock);
}
