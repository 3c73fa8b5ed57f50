/*
 * test_state.c - unit tests of the shared state (plugin/state*.c)
 *
 * The memory table: token buckets (burst, refill, cost, no refill into
 * the past), DISTINCT sets (exact, capped, per window key, expiring),
 * counters and values with expiry, the memory bound under a flood of
 * random keys (never grows past it, evicts, keeps the keys that are still
 * in use), determinism (two tables fed the same ops end the same), and the
 * process-global state: counters survive a reconfiguration (a reload),
 * a malformed Redis URL is refused, and an unreachable Redis falls back
 * to memory with the fallback counted and health degraded. Against a
 * redis-server of the test's own: the same results as the memory table,
 * op by op and batch by batch (every path of the script: a key met twice
 * in a batch, sets kept as strings and as Redis sets on both sides of
 * the string limit, with and without a second counter, caps, unlimited
 * and high-rate buckets, a bucket drained across the cells of its
 * expiry), and every key the script wrote has an expiry; the script's
 * reply is read strictly (a wrong type, length or number is an error);
 * a connection the server closed (CLIENT KILL) is replaced without
 * falling back or marking Redis down; a stopped server is a timeout
 * (one batch in memory, Redis not marked down), a killed one an error.
 * Table-driven where the cases are alike. Each test owns its tables.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "state.h"
#include "testlib.h"

#define T0 1795000000.0

/* bucket - one BUCKET op on KEY at NOW; ok or not */
static bool
bucket(struct xm_memstore *m, uint64_t key, double rate, double burst,
    double cost, double now, double *left)
{
	struct xm_state_op op = { .op = XM_SOP_BUCKET, .key = key, .rate = rate,
	    .burst = burst, .cost = cost };

	xm_memstore_exec(m, &op, 1, now);
	if (left)
		*left = op.result;
	return op.ok;
}

/* distinct - add MEMBER to set KEY; the count */
static double
distinct(struct xm_memstore *m, uint64_t key, const char *member, double ttl,
    long long cap, double now)
{
	struct xm_state_op op = { .op = XM_SOP_DISTINCT, .key = key,
	    .member = xm_state_key("m", member, strlen(member)), .ttl = ttl,
	    .cap = cap };

	xm_memstore_exec(m, &op, 1, now);
	return op.result;
}

/* distinct2 - add MEMBER to set KEY (capped at CAP, 0: none) counting
 * it in KEY2 too when not 0 (*R2: that count); the set's count */
static double
distinct2(struct xm_memstore *m, uint64_t key, const char *member,
    long long cap, uint64_t key2, double now, double *r2)
{
	struct xm_state_op op = { .op = XM_SOP_DISTINCT, .key = key,
	    .member = xm_state_key("m", member, strlen(member)), .ttl = 60,
	    .cap = cap, .key2 = key2 };

	xm_memstore_exec(m, &op, 1, now);
	*r2 = op.result2;
	return op.result;
}

struct bcase {
	const char *name;
	double rate, burst, cost;
	double times[12];      /* event times after T0, ended by -1 */
	const char *want;      /* 1 = allowed, 0 = refused, per time */
};

static const struct bcase bcases[] = {
	{ "burst then refused", 1, 3, 1, { 0, 0, 0, 0, 0, -1 }, "11100" },
	{ "refill one per second", 1, 2, 1, { 0, 0, 0, 1, 1, 2.5, -1 },
	    "110101" },
	{ "slow rate", 1.0 / 60, 2, 1, { 0, 1, 2, 59, 61, 125, -1 },
	    "110011" },
	{ "cost two", 1, 4, 2, { 0, 0, 0, 2, -1 }, "1101" },
	{ "cost over burst never fits", 1, 2, 3, { 0, 100, -1 }, "00" },
	{ "full after idle, not more", 10, 5, 1,
	    { 0, 0, 0, 0, 0, 1000, 1000, 1000, 1000, 1000, 1000, -1 },
	    "11111111110" },
	{ "time going back is no refill", 1, 1, 1, { 10, 5, 9, 11, -1 },
	    "1001" },
};

Test(state, buckets)
{
	size_t i, k;

	for (i = 0; i < sizeof(bcases) / sizeof(bcases[0]); i++) {
		const struct bcase *c = &bcases[i];
		struct xm_memstore *m = xm_memstore_new(1 << 20);
		uint64_t key = xm_state_key("b", c->name, strlen(c->name));

		for (k = 0; c->times[k] >= 0; k++) {
			bool ok = bucket(m, key, c->rate, c->burst, c->cost,
			    T0 + c->times[k], NULL);

			cr_expect_eq(ok, c->want[k] == '1', "%s: event %zu at +%g: "
			    "got %d", c->name, k, c->times[k], ok);
		}
		cr_expect_eq(k, strlen(c->want), "%s: table", c->name);
		xm_memstore_free(m);
	}
}

Test(state, bucket_tokens_left)
{
	struct xm_memstore *m = xm_memstore_new(1 << 20);
	double left;

	cr_assert(bucket(m, 7, 1, 10, 1, T0, &left));
	cr_expect(fabs(left - 9) < 1e-6, "left %g", left);
	cr_assert(bucket(m, 7, 1, 10, 4, T0, &left));
	cr_expect(fabs(left - 5) < 1e-6, "left %g", left);
	cr_assert(bucket(m, 7, 1, 10, 1, T0 + 2, &left));
	cr_expect(fabs(left - 6) < 1e-6, "left %g", left);
	/* a bucket left alone refills completely and its record goes */
	cr_assert(bucket(m, 7, 1, 10, 1, T0 + 100, &left));
	cr_expect(fabs(left - 9) < 1e-6, "left %g", left);
	/* keys do not share buckets */
	cr_expect(bucket(m, 8, 1, 1, 1, T0 + 100, NULL));
	cr_expect(!bucket(m, 8, 1, 1, 1, T0 + 100, NULL));
	cr_expect(bucket(m, 9, 1, 1, 1, T0 + 100, NULL));
	xm_memstore_free(m);
}

Test(state, distinct_sets)
{
	struct xm_memstore *m = xm_memstore_new(1 << 20);
	uint64_t k1 = xm_state_key("fo", "alice", 5);
	uint64_t k2 = xm_state_key("fo", "bob", 3);

	cr_expect_eq(distinct(m, k1, "r1", 60, 0, T0), 1);
	cr_expect_eq(distinct(m, k1, "r1", 60, 0, T0 + 1), 1);  /* again */
	cr_expect_eq(distinct(m, k1, "r2", 60, 0, T0 + 2), 2);
	cr_expect_eq(distinct(m, k1, "r3", 60, 0, T0 + 3), 3);
	cr_expect_eq(distinct(m, k2, "r1", 60, 0, T0 + 3), 1);   /* own set */
	/* expired with the window: a fresh set */
	cr_expect_eq(distinct(m, k1, "r1", 60, 0, T0 + 70), 1);
	xm_memstore_free(m);
}

Test(state, distinct_cap)
{
	struct xm_memstore *m = xm_memstore_new(1 << 20);
	struct xm_memstore_stats st;
	uint64_t k = xm_state_key("fo", "spammer", 7);
	char name[32];
	int i;

	for (i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		cr_expect_eq(distinct(m, k, name, 600, 11, T0 + i * 0.1),
		    i < 11 ? i + 1 : 11);
	}
	xm_memstore_stats(m, &st);
	/* a count and 11 marks: the set stops growing at its cap */
	cr_expect_eq(st.keys, 12, "keys %zu", st.keys);
	xm_memstore_free(m);
}

Test(state, counters_and_values)
{
	struct xm_memstore *m = xm_memstore_new(1 << 20);
	struct xm_state_op ops[3] = {
		{ .op = XM_SOP_INCR, .key = 1, .ttl = 10 },
		{ .op = XM_SOP_GET, .key = 2 },
		{ .op = XM_SOP_SET, .key = 2, .value = 1, .ttl = 30 },
	};
	struct xm_state_op get = { .op = XM_SOP_GET, .key = 2 };
	struct xm_state_op inc = { .op = XM_SOP_INCR, .key = 1, .ttl = 10 };

	xm_memstore_exec(m, ops, 3, T0);
	cr_expect_eq(ops[0].result, 1);
	cr_expect_eq(ops[1].result, 0);       /* before the SET in the batch */
	xm_memstore_exec(m, &inc, 1, T0 + 5);
	cr_expect_eq(inc.result, 2);
	xm_memstore_exec(m, &get, 1, T0 + 29);
	cr_expect_eq(get.result, 1);
	xm_memstore_exec(m, &get, 1, T0 + 31);
	cr_expect_eq(get.result, 0, "value past its ttl");
	xm_memstore_exec(m, &inc, 1, T0 + 11);
	cr_expect_eq(inc.result, 1, "counter past its ttl starts again");
	/* INCR and DISTINCT keys do not collide with a bucket of the same key */
	cr_expect(bucket(m, 1, 1, 1, 1, T0 + 12, NULL));
	xm_memstore_free(m);
}

/* lcg - a fixed pseudo-random sequence (no libc state) */
static uint64_t
lcg(uint64_t *s)
{
	*s = *s * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
	return *s >> 11;
}

Test(state, eviction_bounded_under_flood)
{
	size_t bound = 1 << 20;   /* 1 MB: 65536 slots */
	struct xm_memstore *m = xm_memstore_new(bound);
	struct xm_memstore_stats st;
	uint64_t seed = 42, i;
	int still = 0;

	/* a steady sender keeps using its bucket while 2 million random
	 * senders come and go, one each per millisecond */
	for (i = 0; i < 2000000; i++) {
		double now = T0 + (double)i / 1000;

		bucket(m, lcg(&seed) | 1, 1.0 / 60, 5, 1, now, NULL);
		if (i % 1000 == 0 && !bucket(m, 12345, 1.0 / 600, 1000000,
		    1, now, NULL))
			still++;
		if (i % 100000 == 0) {
			xm_memstore_stats(m, &st);
			cr_assert_leq(st.bytes, bound, "table %zu bytes > %zu",
			    st.bytes, bound);
		}
	}
	xm_memstore_stats(m, &st);
	cr_expect_leq(st.bytes, bound);
	cr_expect_leq(st.keys, st.slots * 3 / 4);
	cr_expect_gt(st.evictions, 1000000, "evictions %llu", st.evictions);
	cr_expect_eq(still, 0, "the steady sender's bucket was lost");
	/* its bucket still holds what it spent: 2000 tokens taken */
	{
		double left;

		cr_expect(bucket(m, 12345, 1.0 / 600, 1000000, 1, T0 + 2000,
		    &left));
		cr_expect_lt(left, 1000000 - 1990, "left %g", left);
	}
	xm_memstore_free(m);
}

Test(state, expired_records_swept)
{
	struct xm_memstore *m = xm_memstore_new(64 << 20);
	struct xm_memstore_stats st;
	uint64_t i;

	for (i = 1; i <= 100000; i++) {
		struct xm_state_op op = { .op = XM_SOP_INCR, .key = i * 7919,
		    .ttl = 10 };

		xm_memstore_exec(m, &op, 1, T0 + (double)i / 100);
	}
	xm_memstore_stats(m, &st);
	/* counters live 10 s: about 1000 at a time are live, the sweep
	 * keeps the rest from piling up */
	cr_expect_lt(st.keys, 60000, "keys %zu", st.keys);
	cr_expect_gt(st.expired, 40000, "expired %llu", st.expired);
	xm_memstore_free(m);
}

Test(state, shrink_keeps_bound)
{
	struct xm_memstore *m = xm_memstore_new(8 << 20);
	struct xm_memstore_stats st;
	uint64_t i;

	for (i = 1; i <= 200000; i++)
		bucket(m, i, 1, 5, 1, T0, NULL);
	xm_memstore_stats(m, &st);
	cr_expect_eq(st.keys, 200000);
	xm_memstore_set_max(m, 1 << 20);
	xm_memstore_stats(m, &st);
	cr_expect_leq(st.bytes, 1 << 20);
	cr_expect_leq(st.keys, st.slots * 3 / 4);
	cr_expect_gt(st.keys, 40000);
	xm_memstore_free(m);
}

Test(state, deterministic)
{
	struct xm_memstore *a = xm_memstore_new(256 << 10);
	struct xm_memstore *b = xm_memstore_new(256 << 10);
	uint64_t s1 = 7, s2 = 7, i;
	int diff = 0;

	for (i = 0; i < 300000; i++) {
		uint64_t k1 = lcg(&s1) % 50000 + 1, k2 = lcg(&s2) % 50000 + 1;
		double now = T0 + (double)i / 500;
		bool x = bucket(a, k1, 0.1, 3, 1, now, NULL);
		bool y = bucket(b, k2, 0.1, 3, 1, now, NULL);

		diff += x != y;
	}
	cr_expect_eq(diff, 0);
	xm_memstore_free(a);
	xm_memstore_free(b);
}

/* GET of a key never SET answers without the table (a filter of SET
 * keys): with far more SETs than the filter has bits, every value set is
 * still found, every other key still reads 0, and a value still expires
 * and can be set again */
Test(state, values_among_many)
{
	struct xm_memstore *m = xm_memstore_new(64 << 20);
	struct xm_state_op op;
	uint64_t i;
	size_t wrong_set = 0, wrong_unset = 0;

	for (i = 1; i <= 200000; i++) {
		op = (struct xm_state_op){ .op = XM_SOP_SET,
		    .key = i * 0x9e3779b97f4a7c15ULL, .value = (double)(i % 7 + 1),
		    .ttl = 100 };
		xm_memstore_exec(m, &op, 1, T0);
	}
	for (i = 1; i <= 200000; i++) {
		op = (struct xm_state_op){ .op = XM_SOP_GET,
		    .key = i * 0x9e3779b97f4a7c15ULL };
		xm_memstore_exec(m, &op, 1, T0 + 50);
		wrong_set += op.result != (double)(i % 7 + 1);
		op = (struct xm_state_op){ .op = XM_SOP_GET,
		    .key = (i + 300000) * 0x9e3779b97f4a7c15ULL };
		xm_memstore_exec(m, &op, 1, T0 + 50);
		wrong_unset += op.result != 0;
	}
	cr_expect_eq(wrong_set, 0, "%zu values set not found", wrong_set);
	cr_expect_eq(wrong_unset, 0, "%zu keys never set found", wrong_unset);
	op = (struct xm_state_op){ .op = XM_SOP_GET, .key = 0x9e3779b97f4a7c15ULL };
	xm_memstore_exec(m, &op, 1, T0 + 101);
	cr_expect_eq(op.result, 0, "value past its ttl");
	op = (struct xm_state_op){ .op = XM_SOP_SET, .key = 0x9e3779b97f4a7c15ULL,
	    .value = 3, .ttl = 10 };
	xm_memstore_exec(m, &op, 1, T0 + 102);
	op = (struct xm_state_op){ .op = XM_SOP_GET, .key = 0x9e3779b97f4a7c15ULL };
	xm_memstore_exec(m, &op, 1, T0 + 103);
	cr_expect_eq(op.result, 3, "set again");
	xm_memstore_free(m);
}

Test(state, global_survives_reconfigure)
{
	struct xm_state_conf c = { .memory = 1 << 20, .redis = "",
	    .redis_timeout = 0.2, .redis_retry = 5, .redis_prefix = "xm:" };
	struct xm_state_op op = { .op = XM_SOP_INCR, .key = 99, .ttl = 600 };
	char err[256];

	xm_state_reset();
	cr_assert_eq(xm_state_configure(&c, err, sizeof(err)), 0, "%s", err);
	xm_state_exec(&op, 1, T0);
	xm_state_exec(&op, 1, T0 + 1);
	cr_expect_eq(op.result, 2);
	/* a reload: same settings, then a larger bound */
	cr_assert_eq(xm_state_configure(&c, err, sizeof(err)), 0);
	c.memory = 4 << 20;
	cr_assert_eq(xm_state_configure(&c, err, sizeof(err)), 0);
	xm_state_exec(&op, 1, T0 + 2);
	cr_expect_eq(op.result, 3, "counter lost on reconfigure");
	cr_expect(!xm_state_remote());
	xm_state_reset();
}

/* health in memory only: nothing before any filter configured the
 * state, then the table's keys, bytes, bound and evictions, and never
 * degraded */
Test(state, memory_only_health_lines)
{
	struct xm_state_conf c = { .memory = 1 << 20, .redis = "",
	    .redis_timeout = 0.2, .redis_retry = 5, .redis_prefix = "xm:" };
	struct xm_state_op op = { .op = XM_SOP_INCR, .key = 7, .ttl = 600 };
	struct xm_buf b = { 0 };
	char err[256];

	xm_state_reset();
	cr_expect(xm_state_status(&b));
	cr_expect_eq(b.len, 0, "lines without a state: %s", b.data);
	cr_assert_eq(xm_state_configure(&c, err, sizeof(err)), 0, "%s", err);
	xm_state_exec(&op, 1, T0);
	cr_expect(xm_state_status(&b), "memory only is never degraded");
	cr_expect_str_eq(b.data, "state=memory\nstate-keys=1\n"
	    "state-bytes=16384\nstate-max-bytes=1048576\n"
	    "state-evictions=0\n");
	xm_buf_free(&b);
	xm_state_reset();
}

/* the host name is looked up off the event loop; a failed look-up keeps
 * the address found before */
Test(state, redis_address_lookup)
{
	struct sockaddr_storage ss;
	struct xm_redis *r;
	char err[256];

	r = xm_redis_new("redis://127.0.0.1:6390", 1, "xm:", err, sizeof(err));
	cr_assert_not_null(r, "%s", err);
	cr_expect_eq(xm_redis_address(r, &ss), 0, "an address before looking");
	cr_assert_eq(xm_redis_resolve(r, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(xm_redis_address(r, &ss), sizeof(struct sockaddr_in));
	cr_expect_eq(ss.ss_family, AF_INET);
	cr_expect_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 6390);
	xm_redis_free(r);
	r = xm_redis_new("redis://no-such-host.invalid:6390", 1, "xm:", err,
	    sizeof(err));
	cr_assert_not_null(r, "%s", err);
	cr_expect_eq(xm_redis_resolve(r, err, sizeof(err)), -1);
	cr_expect(strstr(err, "no-such-host.invalid") != NULL, "%s", err);
	cr_expect_eq(xm_redis_address(r, &ss), 0);
	xm_redis_free(r);
}

Test(state, bad_redis_url)
{
	static const char *bad[] = {
		"localhost:6379", "redis://", "redis://h:0", "redis://h:99999",
		"redis://h:x", "redis://u:p@h", "unix:relative", "redis://h/x",
	};
	struct xm_state_conf c = { .memory = 1 << 20, .redis_timeout = 0.2,
	    .redis_retry = 5, .redis_prefix = "xm:" };
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		xm_state_reset();
		c.redis = bad[i];
		cr_expect_eq(xm_state_configure(&c, err, sizeof(err)), -1, "%s",
		    bad[i]);
		cr_expect(strstr(err, "redis") != NULL, "%s: %s", bad[i], err);
	}
	xm_state_reset();
}

Test(state, unreachable_redis_falls_back)
{
	/* port 1 on loopback: nothing listens there, connect is refused */
	struct xm_state_conf c = { .memory = 1 << 20,
	    .redis = "redis://127.0.0.1:1", .redis_timeout = 0.2,
	    .redis_retry = 3600, .redis_prefix = "xm:" };
	struct xm_state_op op = { .op = XM_SOP_INCR, .key = 5, .ttl = 600 };
	struct xm_state_stats st;
	struct xm_buf b = { 0 };
	char err[256];

	xm_state_reset();
	cr_assert_eq(xm_state_configure(&c, err, sizeof(err)), 0, "%s", err);
	cr_expect(xm_state_remote());
	xm_state_exec(&op, 1, T0);
	xm_state_exec(&op, 1, T0 + 1);
	cr_expect_eq(op.result, 2, "fallback counted in memory");
	xm_state_stats(&st);
	cr_expect(st.redis_configured);
	cr_expect(!st.redis_up);
	cr_expect_geq(st.redis_errors, 1, "errors %llu", st.redis_errors);
	cr_expect_eq(st.fallback_ops, 2);
	cr_expect(!xm_state_status(&b));
	cr_expect(strstr(b.data, "state=memory-fallback\n") != NULL, "%s",
	    b.data);
	cr_expect(strstr(b.data, "reason=redis") != NULL, "%s", b.data);
	xm_buf_free(&b);
	xm_state_reset();
}

Test(state, keys)
{
	cr_expect_neq(xm_state_key("a", "x", 1), xm_state_key("b", "x", 1));
	cr_expect_neq(xm_state_key2("a", "x", "y"), xm_state_key2("a", "xy",
	    ""));
	cr_expect_eq(xm_state_key2("a", "x", "y"), xm_state_key2("a", "x",
	    "y"));
	cr_expect_neq(xm_state_key("a", "", 0), 0);
}

/* ref_hash64 - MurmurHash64A, little-endian, byte by byte (the
 * definition the keys follow; xm_hash64 reads faster) */
static uint64_t
ref_hash64(const unsigned char *s, size_t n, uint64_t seed)
{
	const uint64_t m = UINT64_C(0xc6a4a7935bd1e995);
	uint64_t h = seed ^ ((uint64_t)n * m), k;
	size_t i;

	for (; n >= 8; s += 8, n -= 8) {
		for (k = 0, i = 0; i < 8; i++)
			k |= (uint64_t)s[i] << (8 * i);
		k *= m;
		k ^= k >> 47;
		k *= m;
		h ^= k;
		h *= m;
	}
	if (n > 0) {
		for (i = 0; i < n; i++)
			h ^= (uint64_t)s[i] << (8 * i);
		h *= m;
	}
	h ^= h >> 47;
	h *= m;
	h ^= h >> 47;
	return h;
}

/* every length 0-70 at every alignment: the same as the definition */
Test(state, hash64_all_lengths)
{
	unsigned char buf[96];
	size_t off, n, i;
	uint64_t seed = 0x0123456789abcdefULL;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 37 + 11);
	for (off = 0; off < 8; off++)
		for (n = 0; n + off <= 78; n++) {
			cr_expect_eq(xm_hash64(buf + off, n, seed),
			    ref_hash64(buf + off, n, seed), "off %zu len %zu",
			    off, n);
			cr_expect_eq(xm_hash64(buf + off, n, 0),
			    ref_hash64(buf + off, n, 0), "off %zu len %zu", off, n);
		}
}

/* xm_hash64_u64 is xm_hash64 of the value's 8 bytes: the ratelimit keys
 * (and so the Redis key names) did not change when it replaced it */
Test(state, hash64_u64_is_hash64)
{
	static const struct { uint64_t v, seed; } cases[] = {
		{ 0, 0 }, { 1, 0 }, { UINT64_MAX, 0 }, { 0, UINT64_MAX },
		{ 0x0123456789abcdefULL, 0x7465787400ULL },
		{ (uint64_t)-1LL, 0x75726c7300ULL },        /* idx -1 */
		{ 29916666ULL, 0xc6a4a7935bd1e995ULL },      /* a window */
		{ 0x8000000000000000ULL, 42 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(xm_hash64_u64(cases[i].v, cases[i].seed),
		    xm_hash64(&cases[i].v, sizeof(cases[i].v), cases[i].seed),
		    "case %zu", i);
	/* and known values (little-endian reading on every machine), so
	 * that neither drifts: nodes sharing Redis must agree */
	cr_expect_eq(xm_hash64_u64(0x0123456789abcdefULL, 0x7465787400ULL),
	    0xd1fd2ce3f0c0ac90ULL);
	cr_expect_eq(xm_hash64("abc", 3, 0), 0x9cc9c33498a95efbULL);
}

Test(state, distinct_with_subset_count)
{
	struct xm_memstore *m = xm_memstore_new(1 << 20);
	struct xm_memstore_stats st;
	static const struct { const char *member; bool stranger; double all,
	    strangers; } seq[] = {
		{ "friend", false, 1, 0 }, { "s1", true, 2, 1 },
		{ "s1", true, 2, 1 }, { "friend", false, 2, 1 },
		{ "s2", true, 3, 2 }, { "f2", false, 4, 2 },
	};
	size_t i;

	for (i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		double all, strangers;

		all = distinct2(m, 11, seq[i].member, 100, seq[i].stranger ? 12 :
		    0, T0 + (double)i, &strangers);
		cr_expect_eq(all, seq[i].all, "step %zu: all %g", i, all);
		if (seq[i].stranger)
			cr_expect_eq(strangers, seq[i].strangers, "step %zu: "
			    "strangers %g", i, strangers);
	}
	xm_memstore_stats(m, &st);
	/* two counts and four marks: no marks of their own for strangers */
	cr_expect_eq(st.keys, 6, "keys %zu", st.keys);
	xm_memstore_free(m);
}

/* a set of one member is one record; its second member makes it a count
 * and a mark per member, the first member included */
Test(state, distinct_single_member_record)
{
	struct xm_memstore *m = xm_memstore_new(1 << 20);
	struct xm_memstore_stats st;
	static const struct { const char *member; long long cap; bool key2;
	    double all, strangers; size_t keys; } seq[] = {
		/* set 21: one member, again and again */
		{ "a", 0, false, 1, 0, 1 }, { "a", 0, false, 1, 0, 1 },
		/* a second: a count and two marks */
		{ "b", 0, false, 2, 0, 3 },
		/* the first again: found by its mark */
		{ "a", 0, false, 2, 0, 3 }, { "b", 0, false, 2, 0, 3 },
		{ "c", 0, false, 3, 0, 4 },
		/* set 22, capped at one member: never a second */
		{ "x", 1, false, 1, 0, 5 }, { "y", 1, false, 1, 0, 5 },
		{ "x", 1, false, 1, 0, 5 },
		/* set 23 with a count of strangers (key 24) beside it */
		{ "s1", 10, true, 1, 1, 7 }, { "s1", 10, true, 1, 1, 7 },
		{ "s2", 10, true, 2, 2, 9 }, { "s1", 10, true, 2, 2, 9 },
	};
	size_t i;

	for (i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		double all, strangers;

		all = distinct2(m, i < 6 ? 21 : i < 9 ? 22 : 23, seq[i].member,
		    seq[i].cap, seq[i].key2 ? 24 : 0, T0 + (double)i, &strangers);
		cr_expect_eq(all, seq[i].all, "step %zu: count %g", i, all);
		if (seq[i].key2)
			cr_expect_eq(strangers, seq[i].strangers, "step %zu: "
			    "strangers %g", i, strangers);
		xm_memstore_stats(m, &st);
		cr_expect_eq(st.keys, seq[i].keys, "step %zu: keys %zu", i,
		    st.keys);
	}
	/* a set of one member expires with its window like any */
	cr_expect_eq(distinct(m, 25, "a", 10, 0, T0), 1);
	cr_expect_eq(distinct(m, 25, "b", 10, 0, T0 + 30), 1);
	/* an INCR that meets a one-member set counts it as one */
	{
		struct xm_state_op op = { .op = XM_SOP_INCR, .key = 21 + 100,
		    .ttl = 60 };

		cr_expect_eq(distinct(m, 121, "z", 60, 0, T0 + 40), 1);
		xm_memstore_exec(m, &op, 1, T0 + 41);
		cr_expect_eq(op.result, 2);
	}
	xm_memstore_free(m);
}

/* ---- the Redis backend against the memory table ---- */

#include "redislib.h"

/* backend - a Redis backend (no connection yet) for the server at PORT,
 * keys under PREFIX, TIMEOUT seconds */
static struct xm_redis *
backend(int port, const char *prefix, double timeout)
{
	struct xm_redis *r;
	char url[64], err[256];

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	r = xm_redis_new(url, timeout, prefix, err, sizeof(err));
	cr_assert_not_null(r, "%s", err);
	return r;
}

/* a mixed sequence of ops, each run alone at its time on both backends */
struct rop {
	double t;
	struct xm_state_op op;
};

Test(state, redis_gives_the_same_results_as_memory)
{
	int port;
	pid_t pid = start_redis(&port);
	struct xm_memstore *m = xm_memstore_new(1 << 20);
	struct xm_redis *r;
	char err[256];
	struct rop seq[200];
	size_t n = 0, i;

	r = backend(port, "xmtest:", 2);
	/* buckets at several rates, with time going back once */
	for (i = 0; i < 40; i++) {
		seq[n].t = (double)i * 0.3 - (i == 20 ? 5 : 0);
		seq[n].op = (struct xm_state_op){ .op = XM_SOP_BUCKET,
		    .key = 100 + i % 3, .rate = 1.0 + (double)(i % 3),
		    .burst = 4, .cost = 1 + (double)(i % 2) };
		n++;
	}
	/* (expiry is not compared: Redis expires keys on its own clock, the
	 * memory table on the events' clock; in production the two agree,
	 * here the events move faster than the wall clock. TTLs are long.) */
	/* sets with a cap, with and without a second counter */
	for (i = 0; i < 40; i++) {
		seq[n].t = 20 + (double)i;
		seq[n].op = (struct xm_state_op){ .op = XM_SOP_DISTINCT,
		    .key = 200, .member = 1000 + i % 13, .ttl = 1000, .cap = 9,
		    .key2 = i % 2 ? 201 : 0 };
		n++;
	}
	/* counters and values */
	for (i = 0; i < 20; i++) {
		seq[n].t = 100 + (double)i * 2;
		seq[n].op = (struct xm_state_op){ .op = i % 4 == 0 ? XM_SOP_SET :
		    i % 4 == 1 ? XM_SOP_GET : XM_SOP_INCR, .key = 300 + i % 2,
		    .ttl = 1000, .value = 7 };
		n++;
	}
	for (i = 0; i < n; i++) {
		struct xm_state_op a = seq[i].op, b = seq[i].op;

		xm_memstore_exec(m, &a, 1, T0 + seq[i].t);
		cr_assert_eq(xm_redis_exec(r, &b, 1, T0 + seq[i].t, err,
		    sizeof(err)), 0, "op %zu: %s", i, err);
		cr_expect_eq(a.ok, b.ok, "op %zu (kind %d): ok %d vs %d", i,
		    a.op, a.ok, b.ok);
		cr_expect(fabs(a.result - b.result) < 1e-3, "op %zu (kind %d): "
		    "memory %g, redis %g", i, a.op, a.result, b.result);
		cr_expect(fabs(a.result2 - b.result2) < 1e-3, "op %zu: result2 "
		    "memory %g, redis %g", i, a.result2, b.result2);
	}
	/* a whole batch in one call gives what the single calls gave */
	{
		struct xm_state_op batch[3] = {
			{ .op = XM_SOP_INCR, .key = 400, .ttl = 10 },
			{ .op = XM_SOP_INCR, .key = 400, .ttl = 10 },
			{ .op = XM_SOP_BUCKET, .key = 401, .rate = 1, .burst = 1,
			    .cost = 1 },
		};

		cr_assert_eq(xm_redis_exec(r, batch, 3, T0 + 500, err,
		    sizeof(err)), 0, "%s", err);
		cr_expect_eq(batch[1].result, 2);
		cr_expect(batch[2].ok);
	}
	cr_expect_eq(xm_redis_ping(r, err, sizeof(err)), 0, "%s", err);
	/* Redis gone: an error, not a hang or a crash */
	stop_redis(pid);
	{
		struct xm_state_op op = { .op = XM_SOP_INCR, .key = 9, .ttl = 5 };

		cr_expect_eq(xm_redis_exec(r, &op, 1, T0, err, sizeof(err)), -1);
	}
	xm_redis_free(r);
	xm_memstore_free(m);
}

/* ---- the script's paths, batch by batch, against the memory table ---- */

#include <hiredis/hiredis.h>

#define MAXB 8

/* one batch at time T (seconds after T0) */
struct bcmp {
	const char *name;
	double t;
	size_t n;
	struct xm_state_op op[MAXB];
	bool loose;           /* tokens left compared relatively (a bucket
	                         whose T is not a whole microsecond) */
};

#define OP_B(K, R, B, C) { .op = XM_SOP_BUCKET, .key = (K), .rate = (R), \
	.burst = (B), .cost = (C) }
#define OP_D(K, M, CAP, K2) { .op = XM_SOP_DISTINCT, .key = (K), \
	.member = (M), .ttl = 600, .cap = (CAP), .key2 = (K2) }
#define OP_I(K) { .op = XM_SOP_INCR, .key = (K), .ttl = 600 }
#define OP_G(K) { .op = XM_SOP_GET, .key = (K) }
#define OP_S(K, V) { .op = XM_SOP_SET, .key = (K), .ttl = 600, .value = (V) }

static const struct bcmp bcmps[] = {
	/* a key met twice in a batch sees the first op's write */
	{ "bucket twice", 0, 3, { OP_B(1, 1, 2, 1), OP_B(1, 1, 2, 1),
	    OP_B(1, 1, 2, 1) }, false },
	{ "set then get", 0, 3, { OP_G(2), OP_S(2, 7.5), OP_G(2) }, false },
	{ "incr twice", 0, 2, { OP_I(3), OP_I(3) }, false },
	{ "string set twice", 0, 4, { OP_D(4, 10, 3, 0), OP_D(4, 11, 3, 0),
	    OP_D(4, 11, 3, 0), OP_D(4, 12, 3, 0) }, false },
	{ "string set full", 1, 2, { OP_D(4, 13, 3, 0), OP_D(4, 10, 3, 0) },
	    false },
	{ "second counter is an INCR key", 0, 4, { OP_D(5, 20, 9, 6),
	    OP_I(6), OP_D(5, 21, 9, 6), OP_D(5, 21, 9, 6) }, false },
	{ "redis set twice", 0, 3, { OP_D(7, 30, 5000, 8),
	    OP_D(7, 31, 5000, 8), OP_D(7, 30, 5000, 8) }, false },
	{ "redis set uncapped", 0, 3, { OP_D(9, 40, 0, 0), OP_D(9, 41, 0, 0),
	    OP_D(9, 41, -1, 10) }, false },
	{ "redis set uncapped again", 2, 2, { OP_D(9, 42, 0, 10),
	    OP_D(9, 40, 0, 10) }, false },
	/* an unlimited bucket never reaches Redis: ok, the whole burst */
	{ "unlimited bucket", 0, 2, { OP_B(11, 0, 5, 1), OP_B(12, -1, 7, 3) },
	    false },
	/* mixed, every kind in one batch */
	{ "every kind", 3, 7, { OP_G(2), OP_B(1, 1, 2, 1), OP_D(4, 14, 3, 0),
	    OP_D(5, 22, 9, 6), OP_I(3), OP_S(13, 1), OP_G(13) }, false },
	/* the counting benchmark's rate (1e8 per minute: T = 0.6 us) */
	{ "high rate", 4, 4, { OP_B(14, 1e8 / 60, 1e8, 1),
	    OP_B(14, 1e8 / 60, 1e8, 1), OP_B(14, 1e8 / 60, 1e8, 1),
	    OP_B(15, 1e8 / 60, 3, 2) }, true },
	{ "high rate, small burst", 4, 3, { OP_B(16, 1e6, 2, 1),
	    OP_B(16, 1e6, 2, 1), OP_B(16, 1e6, 2, 1) }, false },
	/* a bucket drained over cells of its expiry, then refilled */
	{ "drain 1", 10, 2, { OP_B(17, 0.25, 3, 1), OP_B(17, 0.25, 3, 1) },
	    false },
	{ "drain 2", 11, 2, { OP_B(17, 0.25, 3, 1), OP_B(17, 0.25, 3, 1) },
	    false },
	{ "drain 3", 16, 1, { OP_B(17, 0.25, 3, 1) }, false },
	{ "drain 4", 30, 2, { OP_B(17, 0.25, 3, 1), OP_B(17, 0.25, 3, 1) },
	    false },
	{ "refilled", 100, 2, { OP_B(17, 0.25, 3, 1), OP_B(17, 0.25, 3, 3) },
	    false },
};

/* expiring_keys - how many keys there are under PREFIX on Redis at
 * PORT, expecting every one of them to expire (PTTL not -1) */
static size_t
expiring_keys(int port, const char *prefix)
{
	redisContext *c = redisConnect("127.0.0.1", port);
	redisReply *k;
	size_t i, keys, no_ttl = 0;

	cr_assert(c != NULL && c->err == 0);
	k = redisCommand(c, "KEYS %s*", prefix);
	cr_assert(k != NULL && k->type == REDIS_REPLY_ARRAY);
	keys = k->elements;
	for (i = 0; i < k->elements; i++) {
		redisReply *t = redisCommand(c, "PTTL %b", k->element[i]->str,
		    k->element[i]->len);

		cr_assert(t != NULL && t->type == REDIS_REPLY_INTEGER);
		if (t->integer < 0)
			no_ttl++;
		freeReplyObject(t);
	}
	freeReplyObject(k);
	redisFree(c);
	cr_expect_eq(no_ttl, 0, "%zu of %zu keys under %s without an expiry",
	    no_ttl, keys, prefix);
	return keys;
}

Test(state, redis_batches_give_the_same_results_as_memory)
{
	int port;
	pid_t pid = start_redis(&port);
	struct xm_memstore *m = xm_memstore_new(1 << 20);
	struct xm_redis *r;
	char err[256];
	size_t i, k, keys;

	r = backend(port, "xmb:", 2);
	for (i = 0; i < sizeof(bcmps) / sizeof(bcmps[0]); i++) {
		const struct bcmp *c = &bcmps[i];
		struct xm_state_op a[MAXB], b[MAXB];

		memcpy(a, c->op, sizeof(a));
		memcpy(b, c->op, sizeof(b));
		xm_memstore_exec(m, a, c->n, T0 + c->t);
		cr_assert_eq(xm_redis_exec(r, b, c->n, T0 + c->t, err,
		    sizeof(err)), 0, "%s: %s", c->name, err);
		for (k = 0; k < c->n; k++) {
			double tol = c->loose ? 1e-6 * fabs(a[k].result) + 1e-3 :
			    1e-3;

			cr_expect_eq(a[k].ok, b[k].ok, "%s, op %zu: ok %d vs %d",
			    c->name, k, a[k].ok, b[k].ok);
			cr_expect(fabs(a[k].result - b[k].result) < tol, "%s, op "
			    "%zu: memory %g, redis %g", c->name, k, a[k].result,
			    b[k].result);
			cr_expect(fabs(a[k].result2 - b[k].result2) < 1e-3, "%s, "
			    "op %zu: result2 memory %g, redis %g", c->name, k,
			    a[k].result2, b[k].result2);
		}
	}
	/* every key the script wrote expires */
	keys = expiring_keys(port, "xmb:");
	cr_expect_geq(keys, 12, "keys %zu", keys);
	xm_redis_free(r);
	xm_memstore_free(m);
	stop_redis(pid);
}

/* a set kept as a string holds at most 1024 members; from 1025 on it is
 * a Redis set: both stop at their cap, as the memory table does */
Test(state, redis_set_caps_on_both_sides_of_the_string_limit)
{
	static const long long caps[] = { 1, 1024, 1025 };
	int port;
	pid_t pid = start_redis(&port);
	struct xm_memstore *m = xm_memstore_new(4 << 20);
	struct xm_redis *r;
	char err[256];
	size_t i, j, keys;

	r = backend(port, "xmcap:", 2);
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		for (j = 0; j < 1250; j++) {
			/* every member new but every 7th (one seen before) */
			struct xm_state_op a = { .op = XM_SOP_DISTINCT,
			    .key = 50 + i, .member = j % 7 == 6 ? j - 3 : j,
			    .ttl = 600, .cap = caps[i], .key2 = 60 + i }, b = a;

			xm_memstore_exec(m, &a, 1, T0 + (double)j * 0.01);
			cr_assert_eq(xm_redis_exec(r, &b, 1, T0 + (double)j * 0.01,
			    err, sizeof(err)), 0, "%s", err);
			cr_assert_eq(a.result, b.result, "cap %lld, member %zu: "
			    "memory %g, redis %g", caps[i], j, a.result,
			    b.result);
			cr_assert_eq(a.result2, b.result2, "cap %lld, member %zu: "
			    "second counter memory %g, redis %g", caps[i], j,
			    a.result2, b.result2);
			if (j == 1249)
				cr_expect_eq(b.result, (double)caps[i]);
		}
	keys = expiring_keys(port, "xmcap:");
	cr_expect_eq(keys, 6, "keys %zu", keys);
	xm_redis_free(r);
	xm_memstore_free(m);
	stop_redis(pid);
}

/* pack_doubles - N doubles little-endian into OUT */
static void
pack_doubles(const double *v, size_t n, char *out)
{
	size_t i;
	int b;

	for (i = 0; i < n; i++) {
		uint64_t u;

		memcpy(&u, &v[i], sizeof(u));
		for (b = 0; b < 8; b++, u >>= 8)
			out[8 * i + (size_t)b] = (char)(u & 0xff);
	}
}

/* the reply is read strictly: a wrong type or length, or a number that
 * cannot be what the op gives, is an error with a message, never a
 * crash or a result. The ops: a bucket, a set with a second counter, an
 * unlimited bucket and a SET (no number of their own), a GET: four
 * numbers. */
struct rcase {
	const char *name;
	int type;              /* REDIS_REPLY_* */
	size_t ndoubles;       /* a string: how many doubles are packed */
	size_t extra;          /* a string: bytes more */
	double d[4];
	int want;              /* 0, -1, XM_REDIS_NOSCRIPT */
	bool ok;               /* want 0: the bucket's ok and tokens left */
	double left;
};

static const struct rcase rcases[] = {
	/* 0.5 s of delay before the op: 10 - 0.5 - 1 tokens left */
	{ "taken", REDIS_REPLY_STRING, 4, 0, { 5e5, 3, 2, 7 }, 0, true, 8.5 },
	{ "refused", REDIS_REPLY_STRING, 4, 0, { -5e5 - 1, 3, 2, 7 }, 0,
	    false, 9.5 },
	{ "short", REDIS_REPLY_STRING, 3, 0, { 5e5, 3, 2 }, -1, 0, 0 },
	{ "long", REDIS_REPLY_STRING, 4, 8, { 5e5, 3, 2, 7 }, -1, 0, 0 },
	{ "odd length", REDIS_REPLY_STRING, 4, 3, { 5e5, 3, 2, 7 }, -1, 0, 0 },
	{ "not a number", REDIS_REPLY_STRING, 4, 0, { NAN, 3, 2, 7 }, -1, 0, 0 },
	{ "fractional delay", REDIS_REPLY_STRING, 4, 0, { 0.5, 3, 2, 7 }, -1,
	    0, 0 },
	{ "huge delay", REDIS_REPLY_STRING, 4, 0, { 1e300, 3, 2, 7 }, -1, 0,
	    0 },
	{ "negative count", REDIS_REPLY_STRING, 4, 0, { 5, -2, 2, 7 }, -1, 0,
	    0 },
	{ "fractional count", REDIS_REPLY_STRING, 4, 0, { 5, 1.5, 2, 7 }, -1,
	    0, 0 },
	{ "infinite value", REDIS_REPLY_STRING, 4, 0, { 5, 3, 2, INFINITY },
	    -1, 0, 0 },
	{ "an array", REDIS_REPLY_ARRAY, 0, 0, { 0 }, -1, 0, 0 },
	{ "an integer", REDIS_REPLY_INTEGER, 0, 0, { 0 }, -1, 0, 0 },
	{ "nil", REDIS_REPLY_NIL, 0, 0, { 0 }, -1, 0, 0 },
	{ "an error", REDIS_REPLY_ERROR, 0, 0, { 0 }, -1, 0, 0 },
	{ "no script", REDIS_REPLY_ERROR, 1, 0, { 0 }, XM_REDIS_NOSCRIPT, 0,
	    0 },
};

Test(state, redis_reply_is_checked)
{
	size_t i;

	for (i = 0; i < sizeof(rcases) / sizeof(rcases[0]); i++) {
		const struct rcase *c = &rcases[i];
		struct xm_state_op ops[5] = {
			OP_B(1, 1, 10, 1), OP_D(2, 3, 9, 4), OP_B(5, 0, 3, 1),
			OP_S(6, 1), OP_G(7),
		};
		char buf[64], err[128] = "";
		redisReply rep;
		int rc;

		memset(&rep, 0, sizeof(rep));
		memset(buf, 0, sizeof(buf));
		rep.type = c->type;
		if (c->type == REDIS_REPLY_STRING) {
			pack_doubles(c->d, c->ndoubles, buf);
			rep.str = buf;
			rep.len = 8 * c->ndoubles + c->extra;
		} else if (c->type == REDIS_REPLY_ERROR) {
			snprintf(buf, sizeof(buf), "%s", c->ndoubles ?
			    "NOSCRIPT No matching script" : "ERR boom");
			rep.str = buf;
			rep.len = strlen(buf);
		}
		rc = xm_redis_results(&rep, ops, 5, err, sizeof(err));
		cr_expect_eq(rc, c->want, "%s: %d (%s)", c->name, rc, err);
		if (rc != 0) {
			cr_expect(err[0] != '\0', "%s: no message", c->name);
			continue;
		}
		cr_expect_eq(ops[0].ok, c->ok, "%s", c->name);
		cr_expect(fabs(ops[0].result - c->left) < 1e-9, "%s: left %g",
		    c->name, ops[0].result);
		cr_expect_eq(ops[1].result, 3, "%s", c->name);
		cr_expect_eq(ops[1].result2, 2, "%s", c->name);
		cr_expect(ops[2].ok, "%s", c->name);
		cr_expect_eq(ops[2].result, 3, "%s: unlimited bucket", c->name);
		cr_expect_eq(ops[3].result, 1, "%s", c->name);
		cr_expect_eq(ops[4].result, 7, "%s", c->name);
	}
}


/*
 * A connection the server closed while it was idle (a Redis restart the
 * node did not notice in time, Redis's idle `timeout`, CLIENT KILL) is
 * not Redis being down: the next command goes out again on a new
 * connection, nothing falls back to memory, health stays "redis". A
 * server that does not answer in time (stopped here) costs that one
 * batch, counted in memory, without marking Redis down; once it answers,
 * batches go back to it.
 */
Test(state, stale_connection_and_timeout_do_not_mark_redis_down)
{
	int port;
	pid_t pid = start_redis(&port);
	char url[64], err[256];
	struct xm_state_conf c = { .memory = 1 << 20, .redis_timeout = 1.0,
	    .redis_retry = 3600, .redis_prefix = "xmstale:" };
	struct xm_state_op op = { .op = XM_SOP_INCR, .key = 77, .ttl = 600 };
	struct xm_state_stats st;
	struct xm_buf b = { 0 };
	long long killed;

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	c.redis = url;
	xm_state_reset();
	cr_assert_eq(xm_state_configure(&c, err, sizeof(err)), 0, "%s", err);
	xm_state_exec(&op, 1, T0);          /* this thread's connection */
	cr_expect_eq(op.result, 1);
	/* the monitor's first probe must be over (its PING answered), or
	 * the kill below would close a connection it just opened and it
	 * would rightly call Redis down: wait for its PING in CLIENT LIST */
	{
		char list[4096];
		int i;

		for (i = 0; i < 500; i++) {
			if (raw_cmd(port, "*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n",
			    list, sizeof(list)) > 0 && strstr(list, "cmd=ping") != NULL)
				break;
			usleep(10000);
		}
		cr_assert_lt(i, 500, "the monitor never PINGed Redis");
	}
	/* the server drops every client but the one asking: ours and the
	 * monitor's are stale now */
	killed = client_kill(port);
	cr_expect_geq(killed, 1, "CLIENT KILL closed %lld", killed);
	xm_state_exec(&op, 1, T0 + 1);
	cr_expect_eq(op.result, 2, "counted in Redis after a reconnect: %g",
	    op.result);
	xm_state_stats(&st);
	cr_expect(st.redis_up, "a stale connection marked Redis down");
	cr_expect_eq(st.fallback_ops, 0, "fallback ops %llu", st.fallback_ops);
	cr_expect_eq(st.redis_errors, 0, "errors %llu", st.redis_errors);

	/* stopped: no answer within the timeout */
	kill(pid, SIGSTOP);
	xm_state_exec(&op, 1, T0 + 2);
	expect_timed_out(&b, 1, 1);
	cr_expect(strstr(b.data, "state=redis\n") != NULL, "%s", b.data);
	kill(pid, SIGCONT);
	{	/* the resumed server answers (so the next call is not a race
		 * against its wake-up on a loaded machine) */
		char pong[64];

		cr_expect_gt(raw_cmd(port, "*1\r\n$4\r\nPING\r\n", pong,
		    sizeof(pong)), 0);
	}
	/* back in Redis (memory would say 2): 4, or 3 if the resumed server
	 * dropped the command that timed out instead of running it */
	xm_state_exec(&op, 1, T0 + 3);
	cr_expect(op.result == 4 || op.result == 3, "back in Redis: %g",
	    op.result);
	xm_state_stats(&st);
	cr_expect_eq(st.fallback_ops, 1, "fallback ops %llu", st.fallback_ops);
	xm_buf_free(&b);
	xm_state_reset();
	stop_redis(pid);
}

/* the same at the backend: a stale connection is retried once, a dead
 * server is an error, a stopped one a timeout (told apart) */
Test(state, redis_backend_retries_a_stale_connection_once)
{
	int port;
	pid_t pid = start_redis(&port);
	struct xm_redis *r;
	char err[256];
	struct xm_state_op op = { .op = XM_SOP_INCR, .key = 78, .ttl = 600 };

	r = backend(port, "xmstale2:", 1.0);
	cr_assert_eq(xm_redis_exec(r, &op, 1, T0, err, sizeof(err)), 0, "%s",
	    err);
	cr_expect_eq(xm_redis_ping(r, err, sizeof(err)), 0, "%s", err);
	cr_expect_geq(client_kill(port), 1);
	cr_expect_eq(xm_redis_ping(r, err, sizeof(err)), 0, "ping: %s", err);
	cr_expect_geq(client_kill(port), 1);
	cr_expect_eq(xm_redis_exec(r, &op, 1, T0 + 1, err, sizeof(err)), 0,
	    "exec: %s", err);
	cr_expect_eq(op.result, 2);
	kill(pid, SIGSTOP);
	cr_expect_eq(xm_redis_exec(r, &op, 1, T0 + 2, err, sizeof(err)),
	    XM_REDIS_TIMEOUT, "stopped: %s", err);
	cr_expect_eq(xm_redis_ping(r, err, sizeof(err)), XM_REDIS_TIMEOUT,
	    "stopped: %s", err);
	stop_redis(pid);
	cr_expect_eq(xm_redis_exec(r, &op, 1, T0 + 3, err, sizeof(err)), -1,
	    "killed: %s", err);
	cr_expect_eq(xm_redis_ping(r, err, sizeof(err)), -1, "killed: %s", err);
	xm_redis_free(r);
}
