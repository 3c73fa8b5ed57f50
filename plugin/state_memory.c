/*
 * state_memory.c - the in-memory backend of state.h: one compact hash table
 *
 * Purpose: keep the counters of state.h in this process, in bounded
 * memory, whatever a flood of random senders does.
 *
 * Layout: open addressing with linear probing over 16-byte slots: the
 * 64-bit key (its top two bits say what kind of record it is, 0 marks an
 * empty slot) and one 64-bit value:
 *   bucket  the GCRA "theoretical arrival time", 32.32 fixed-point seconds
 *           (the bucket is full again, and the record useless, after it)
 *   count   expiry (high 32 bits, unix seconds) and the count (31 bits);
 *           with bit 31 set, a DISTINCT set of one member: the low 31
 *           bits are that member's tag (see below)
 *   mark    expiry (a member of a DISTINCT set of two or more)
 *   value   expiry and a float
 * Deletion shifts the following slots back (no tombstones). The table
 * doubles while it is under the memory bound and fills to 3/4; at the
 * bound, an insert first evicts: among the next 32 records from a moving
 * hand, every expired one, or else the one that expires soonest (for
 * records of one kind, the one least recently renewed). Each insert also
 * sweeps two slots at the hand, so dead records do not pile up. Nothing
 * here is random: the same operations at the same times give the same
 * table, which keeps replays deterministic. Inside a set a member is its
 * 31-bit tag (from its 64-bit hash): a set of one member is one record,
 * the count record holding the tag (nearly every text is sent once, and
 * its two campaign sets never get a second member: one insert each
 * instead of two); at the second member the set becomes a count and one
 * mark per member, keyed by the set's key and the tag mixed (memory
 * only). Two members of one set share a tag with probability 2^-31 (the
 * second then counts as the first): a set of a thousand members is
 * miscounted once in four thousand sets' lives. A
 * bit filter of the keys ever SET (8 KB, never cleared) lets a GET of a
 * key that was never set (no block, no campaign: nearly every GET) answer
 * without touching the table.
 *
 * Interface: xm_memstore_* in state.h. Thread safety: one mutex per table
 * around every call. Ownership: the table owns its slots; callers own the
 * op arrays. Failure: none (allocation aborts on out-of-memory; at the
 * bound old records go instead).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "state.h"

#define KIND_SHIFT 62
#define KEY_MASK ((UINT64_C(1) << KIND_SHIFT) - 1)
#define MIN_SLOTS 1024u
#define EVICT_SCAN 32u
#define SWEEP_STEP 2u

#define VBITS_WORDS 1024u   /* 65536 bits, 8 KB */
#define PREFETCH_MIN ((size_t)2 << 20)   /* see xm_memstore_exec */

struct slot {
	uint64_t key;   /* kind << 62 | hash; 0: empty */
	uint64_t v;
};

struct xm_memstore {
	pthread_mutex_t lock;
	struct slot *s;
	size_t cap, mask, n;       /* slots, cap - 1, live records */
	size_t max_slots;          /* the memory bound, in slots (power of 2) */
	size_t hand;
	unsigned long long evictions, expired;
	/* one bit per VALUE key hash, set by every SET and never cleared: a
	 * GET whose bit is clear has no record to find (blocks and campaign
	 * flags are rare, so most GETs end here instead of probing the
	 * table, a cache miss or two each) */
	uint64_t vbits[VBITS_WORDS];
};

/*
 * Tables of 1 MB and more are mapped straight from the kernel, so that
 * growing one can hand the old table's pages back while their records
 * move (see rehash): the process never holds both tables in full, and a
 * freed table really leaves (malloc may keep big blocks on its heap).
 * Tables of 2 MB and more are aligned to 2 MB and asked to be backed by
 * huge pages (MADV_HUGEPAGE; the kernel's transparent_hugepage setting
 * decides): every operation touches a random slot, and with 4 KB pages
 * each is a TLB miss once the table outgrows what the TLB maps (8 MB
 * here), and each first touch a page fault.
 */
#define MAP_MIN (1u << 20)
#define HUGE_PAGE ((size_t)2 << 20)

/* table_alloc - N zeroed slots */
static struct slot *
table_alloc(size_t n)
{
	size_t bytes = n * sizeof(struct slot), lead;
	char *p;

	if (bytes < MAP_MIN)
		return xm_calloc(n, sizeof(struct slot));
	if (bytes < HUGE_PAGE) {
		p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			panic("state: cannot map %zu bytes", bytes);
		return (struct slot *)p;
	}
	/* map a huge page more, keep the aligned part (bytes is a power of
	 * two of at least 2 MB: a whole number of huge pages) */
	p = mmap(NULL, bytes + HUGE_PAGE, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		panic("state: cannot map %zu bytes", bytes + HUGE_PAGE);
	lead = (HUGE_PAGE - (uintptr_t)p % HUGE_PAGE) % HUGE_PAGE;
	if (lead > 0)
		munmap(p, lead);
	munmap(p + lead + bytes, HUGE_PAGE - lead);
	p += lead;
#ifdef MADV_HUGEPAGE
	(void)madvise(p, bytes, MADV_HUGEPAGE);   /* a hint: fine if refused */
#endif
	return (struct slot *)p;
}

/* table_free - give N slots at S back */
static void
table_free(struct slot *s, size_t n)
{
	if (s == NULL)
		return;
	if (n * sizeof(struct slot) < MAP_MIN)
		free(s);
	else
		munmap(s, n * sizeof(struct slot));
}

/* xm_memstore_slot_bytes - the size of one slot */
size_t
xm_memstore_slot_bytes(void)
{
	return sizeof(struct slot);
}

/* bound_slots - the largest power of two of slots within MAX_BYTES */
static size_t
bound_slots(size_t max_bytes)
{
	size_t n = MIN_SLOTS;

	while (n <= SIZE_MAX / 2 / sizeof(struct slot) &&
	    n * 2 * sizeof(struct slot) <= max_bytes)
		n *= 2;
	return n;
}

/* home - the slot where K would be without collisions */
static size_t
home(const struct xm_memstore *m, uint64_t k)
{
	k ^= k >> 29;
	k *= UINT64_C(0xbf58476d1ce4e5b9);
	k ^= k >> 32;
	return (size_t)k & m->mask;
}

/* mkkey - the stored form of KEY as a record of KIND (never 0) */
static uint64_t
mkkey(uint64_t key, enum xm_skind kind)
{
	key &= KEY_MASK;
	if (key == 0)
		key = 1;
	return key | ((uint64_t)kind << KIND_SHIFT);
}

/* vbit - the bit of VALUE key K (stored form) in the SET filter: bits
 * the table's home() does not lean on most */
static inline void
vbit(uint64_t k, size_t *word, uint64_t *bit)
{
	k *= UINT64_C(0x9e3779b97f4a7c15);
	*word = (size_t)(k >> 54) & (VBITS_WORDS - 1);
	*bit = UINT64_C(1) << ((k >> 48) & 63);
}

/* a count record's low 32 bits: the count, or a set's only member */
#define SINGLE UINT64_C(0x80000000)
#define COUNT_MAX 0x7fffffffu

/* member_tag - the 31 bits that stand for MEMBER (a hash) in a set */
static inline uint32_t
member_tag(uint64_t member)
{
	return (uint32_t)((member * UINT64_C(0xd6e8feb86659fd93)) >> 33);
}

/* count_of - the count a count record's value V holds */
static inline uint32_t
count_of(uint64_t v)
{
	return (v & SINGLE) ? 1 : (uint32_t)v;
}

/* mark_key - the stored key of the mark of the member tagged TAG in the
 * set KEY: a multiply to combine them and a 64-bit finaliser (a
 * bijection); memory-only (Redis keeps its own sets), so it need not
 * match anything outside this process */
static inline uint64_t
mark_key(uint64_t key, uint32_t tag)
{
	uint64_t x = tag ^ (key * UINT64_C(0x9e3779b97f4a7c15));

	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return mkkey(x, XM_SK_MARK);
}

/* expiry - when the record in S stops mattering (unix seconds) */
static uint64_t
expiry(const struct slot *s)
{
	if ((s->key >> KIND_SHIFT) == XM_SK_BUCKET)
		return (s->v >> 32) + 1;
	return s->v >> 32;
}

/* clamp_time - T as unix seconds in the table's 32-bit range */
static double
clamp_time(double t)
{
	if (!(t >= 0))
		return 0;
	if (t > 4294967000.0)
		return 4294967000.0;
	return t;
}

/* find - index of KEY, or (size_t)-1 */
static inline size_t
find(const struct xm_memstore *m, uint64_t key)
{
	size_t i = home(m, key);

	for (;;) {
		if (m->s[i].key == key)
			return i;
		if (m->s[i].key == 0)
			return (size_t)-1;
		i = (i + 1) & m->mask;
	}
}

/* del - empty slot I, shifting the records after it back */
static void
del(struct xm_memstore *m, size_t i)
{
	size_t j = i, k;

	for (;;) {
		j = (j + 1) & m->mask;
		if (m->s[j].key == 0)
			break;
		k = home(m, m->s[j].key);
		/* move j into the hole at i unless its home lies in (i, j] */
		if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
			m->s[i] = m->s[j];
			i = j;
		}
	}
	m->s[i].key = 0;
	m->s[i].v = 0;
	m->n--;
}

/* place - put a record in the first free slot from its home (no checks) */
static size_t
place(struct xm_memstore *m, uint64_t key, uint64_t v)
{
	size_t i = home(m, key);

	while (m->s[i].key != 0)
		i = (i + 1) & m->mask;
	m->s[i].key = key;
	m->s[i].v = v;
	m->n++;
	return i;
}

static void evict(struct xm_memstore *m, uint32_t now);

/* rehash - move every record into a table of NCAP slots; when it does
 * not fit, evict() makes room as records come in */
static void
rehash(struct xm_memstore *m, size_t ncap, uint32_t now)
{
	struct slot *old = m->s;
	size_t ocap = m->cap, i, released = 0;
	bool mapped = ocap * sizeof(struct slot) >= MAP_MIN;
	const size_t step = 131072;  /* slots (2 MB, a huge page) handed back
	                                at a time */

	m->s = table_alloc(ncap);
	m->cap = ncap;
	m->mask = ncap - 1;
	m->n = 0;
	m->hand = 0;
	for (i = 0; i < ocap; i++) {
		if (mapped && i - released >= step) {
			/* these old slots are moved: their pages can go */
			madvise((char *)old + released * sizeof(struct slot),
			    step * sizeof(struct slot), MADV_DONTNEED);
			released += step;
		}
		if (old[i].key == 0 || expiry(&old[i]) <= now)
			continue;
		if (m->n + 1 > m->cap / 4 * 3)
			evict(m, now);
		place(m, old[i].key, old[i].v);
	}
	table_free(old, ocap);
}

/* evict - make room: every dead record among the next EVICT_SCAN, else
 * the one of them that expires soonest */
static void
evict(struct xm_memstore *m, uint32_t now)
{
	size_t seen = 0, steps = 0, best = (size_t)-1, i;
	uint64_t best_exp = UINT64_MAX, e;
	bool freed = false;

	while (seen < EVICT_SCAN && steps < m->cap) {
		i = m->hand;
		if (m->s[i].key == 0) {
			m->hand = (m->hand + 1) & m->mask;
			steps++;
			continue;
		}
		e = expiry(&m->s[i]);
		if (e <= now) {
			del(m, i);      /* a later record may now sit at i */
			m->expired++;
			freed = true;
			seen++;
			continue;
		}
		if (e < best_exp) {
			best_exp = e;
			best = i;
		}
		m->hand = (m->hand + 1) & m->mask;
		seen++;
		steps++;
	}
	if (!freed && best != (size_t)-1) {
		del(m, best);
		m->evictions++;
	}
}

/* sweep - look at a couple of slots at the hand, drop dead records */
static void
sweep(struct xm_memstore *m, uint32_t now)
{
	unsigned k;

	for (k = 0; k < SWEEP_STEP; k++) {
		size_t i = m->hand;

		if (m->s[i].key != 0 && expiry(&m->s[i]) <= now) {
			del(m, i);
			m->expired++;
		} else
			m->hand = (m->hand + 1) & m->mask;
	}
}

/* insert - add KEY (absent) with V, growing or evicting first */
static size_t
insert(struct xm_memstore *m, uint64_t key, uint64_t v, uint32_t now)
{
	sweep(m, now);
	if (m->n + 1 > m->cap / 4 * 3) {
		if (m->cap < m->max_slots)
			rehash(m, m->cap * 2, now);
		else
			evict(m, now);
	}
	return place(m, key, v);
}

/* live - index of KEY if present and not expired at NOW, else -1 (an
 * expired record is dropped); inline: every op looks up one to four */
static inline __attribute__((always_inline)) size_t
live(struct xm_memstore *m, uint64_t key, uint32_t now)
{
	size_t i = find(m, key);

	if (i != (size_t)-1 && expiry(&m->s[i]) <= now) {
		del(m, i);
		m->expired++;
		return (size_t)-1;
	}
	return i;
}

/* exp32 - NOW + TTL as a 32-bit expiry (at least one second ahead) */
static uint64_t
exp32(double now, double ttl)
{
	double e = ceil(clamp_time(now + (ttl > 1 ? ttl : 1)));

	return (uint64_t)e;
}

/* op_bucket - GCRA: take COST tokens of a RATE/s bucket holding BURST.
 * Times are computed relative to NOW (the absolute ones are ~1.8e9 s,
 * where a double's step is 2.4e-7 s and a burst of small steps would
 * drift); a thousandth of a token (at least 10 us) of tolerance absorbs
 * what rounding is left, the same rule as the Redis script's. */
static void
op_bucket(struct xm_memstore *m, struct xm_state_op *op, double now,
    uint32_t now32)
{
	uint64_t key = mkkey(op->key, XM_SK_BUCKET);
	size_t i = live(m, key, now32);
	uint64_t now_fx = (uint64_t)(now * 4294967296.0), ntat_fx;
	double T, tau, tol, d = 0, nd;

	if (!(op->rate > 0)) {  /* no limit */
		op->ok = true;
		op->result = op->burst;
		return;
	}
	T = 1.0 / op->rate;
	tau = op->burst * T;
	tol = T * 1e-3 > 1e-5 ? T * 1e-3 : 1e-5;
	if (i != (size_t)-1 && m->s[i].v > now_fx)
		d = (double)(m->s[i].v - now_fx) / 4294967296.0;
	nd = d + op->cost * T;
	if (nd > tau + tol) {
		op->ok = false;
		op->result = (tau - d) / T;
		if (op->result < 0)
			op->result = 0;
		return;
	}
	op->ok = true;
	op->result = (tau - nd) / T;
	if (op->result < 0)
		op->result = 0;
	ntat_fx = now_fx + (uint64_t)(nd * 4294967296.0);
	if (ntat_fx > (uint64_t)4294967000 << 32)
		ntat_fx = (uint64_t)4294967000 << 32;
	if (i != (size_t)-1)
		m->s[i].v = ntat_fx;
	else
		insert(m, key, ntat_fx, now32);
}

/* counter_bump - COUNT record KEY += 1 (created with expiry EXP); the new
 * value */
static uint32_t
counter_bump(struct xm_memstore *m, uint64_t key, uint64_t exp, uint32_t now)
{
	size_t i = live(m, key, now);
	uint32_t c;

	if (i == (size_t)-1) {
		insert(m, key, exp << 32 | 1, now);
		return 1;
	}
	c = count_of(m->s[i].v);
	if (c < COUNT_MAX)
		c++;
	m->s[i].v = (m->s[i].v & ~UINT64_C(0xffffffff)) | c;
	return c;
}

/* op_distinct - a set: one record while it has one member, then a count
 * and one mark per member (the header says how) */
static void
op_distinct(struct xm_memstore *m, struct xm_state_op *op, double now,
    uint32_t now32)
{
	uint64_t ckey = mkkey(op->key, XM_SK_COUNT);
	uint32_t tag = member_tag(op->member), first, count;
	size_t ci = live(m, ckey, now32);
	uint64_t exp;

	if (op->key2 != 0) {
		size_t k2 = live(m, mkkey(op->key2, XM_SK_COUNT), now32);

		op->result2 = k2 != (size_t)-1 ? count_of(m->s[k2].v) : 0;
	}
	if (ci == (size_t)-1) {
		/* a new set: its one member in its count record */
		exp = exp32(now, op->ttl);
		insert(m, ckey, exp << 32 | SINGLE | tag, now32);
		op->result = 1;
		goto added;
	}
	exp = m->s[ci].v >> 32;
	count = count_of(m->s[ci].v);
	if (op->cap > 0 && count >= (unsigned long long)op->cap) {
		op->result = count;
		return;
	}
	if (m->s[ci].v & SINGLE) {
		first = (uint32_t)m->s[ci].v & COUNT_MAX;
		if (first == tag) {
			op->result = 1;
			return;
		}
		/* a second member: a count and a mark for each (the slot is
		 * written before the inserts, which may move records) */
		m->s[ci].v = exp << 32 | 2;
		insert(m, mark_key(op->key, first), exp << 32, now32);
		insert(m, mark_key(op->key, tag), exp << 32, now32);
		op->result = 2;
		goto added;
	}
	if (live(m, mark_key(op->key, tag), now32) != (size_t)-1) {
		op->result = count;
		return;
	}
	insert(m, mark_key(op->key, tag), exp << 32, now32);
	op->result = counter_bump(m, ckey, exp, now32);
added:
	if (op->key2 != 0)
		op->result2 = counter_bump(m, mkkey(op->key2, XM_SK_COUNT), exp,
		    now32);
}

/* op_get - the VALUE record, 0 when none */
static void
op_get(struct xm_memstore *m, struct xm_state_op *op, uint32_t now32)
{
	uint64_t key = mkkey(op->key, XM_SK_VALUE), bit;
	size_t i, wd;
	float f;
	uint32_t u;

	op->result = 0;
	vbit(key, &wd, &bit);
	if (!(m->vbits[wd] & bit))
		return;                 /* never SET: no record */
	i = live(m, key, now32);
	if (i == (size_t)-1)
		return;
	u = (uint32_t)m->s[i].v;
	memcpy(&f, &u, sizeof(f));
	op->result = f;
}

/* op_set - store a VALUE record until NOW + TTL */
static void
op_set(struct xm_memstore *m, struct xm_state_op *op, double now,
    uint32_t now32)
{
	uint64_t key = mkkey(op->key, XM_SK_VALUE), bit;
	size_t i = live(m, key, now32), wd;
	float f = (float)op->value;
	uint32_t u;
	uint64_t v;

	vbit(key, &wd, &bit);
	m->vbits[wd] |= bit;

	memcpy(&u, &f, sizeof(u));
	v = exp32(now, op->ttl) << 32 | u;
	if (i != (size_t)-1)
		m->s[i].v = v;
	else
		insert(m, key, v, now32);
	op->result = op->value;
}

/* xm_memstore_exec - every op, in order, under the lock */
void
xm_memstore_exec(struct xm_memstore *m, struct xm_state_op *ops, size_t n,
    double now)
{
	uint32_t now32;
	size_t k;

	now = clamp_time(now);
	now32 = (uint32_t)floor(now);
	pthread_mutex_lock(&m->lock);
	/* a batch touches a dozen random slots of a table that may be far
	 * larger than the cache: ask for all of them first, so the misses
	 * overlap instead of queueing one after the other (not for a table
	 * of PREFETCH_MIN or less, which stays in the cache: the keys' slots
	 * cost more to compute twice than they would wait) */
	for (k = 0; m->cap * sizeof(struct slot) > PREFETCH_MIN && k < n; k++) {
		static const enum xm_skind kind[] = {
			[XM_SOP_BUCKET] = XM_SK_BUCKET,
			[XM_SOP_DISTINCT] = XM_SK_COUNT,
			[XM_SOP_INCR] = XM_SK_COUNT,
			[XM_SOP_GET] = XM_SK_VALUE,
			[XM_SOP_SET] = XM_SK_VALUE,
		};

		if ((unsigned)ops[k].op < XM_ARRAY_LEN(kind)) {
			uint64_t key = mkkey(ops[k].key, kind[ops[k].op]), bit;
			size_t wd;

			if (ops[k].op == XM_SOP_GET) {
				vbit(key, &wd, &bit);
				if (!(m->vbits[wd] & bit))
					continue;    /* op_get will not look */
			}
			__builtin_prefetch(&m->s[home(m, key)]);
		}
		/* a set's member mark and second counter are misses too */
		if (ops[k].op == XM_SOP_DISTINCT) {
			__builtin_prefetch(&m->s[home(m, mark_key(ops[k].key,
			    member_tag(ops[k].member)))]);
			if (ops[k].key2 != 0)
				__builtin_prefetch(&m->s[home(m, mkkey(ops[k].key2,
				    XM_SK_COUNT))]);
		}
	}
	for (k = 0; k < n; k++) {
		struct xm_state_op *op = &ops[k];

		op->ok = true;
		op->result = op->result2 = 0;
		switch (op->op) {
		case XM_SOP_BUCKET:
			op_bucket(m, op, now, now32);
			break;
		case XM_SOP_DISTINCT:
			op_distinct(m, op, now, now32);
			break;
		case XM_SOP_INCR:
			op->result = counter_bump(m, mkkey(op->key, XM_SK_COUNT),
			    exp32(now, op->ttl), now32);
			break;
		case XM_SOP_GET:
			op_get(m, op, now32);
			break;
		case XM_SOP_SET:
			op_set(m, op, now, now32);
			break;
		}
	}
	pthread_mutex_unlock(&m->lock);
}

/* xm_memstore_new - an empty table bounded by MAX_BYTES */
struct xm_memstore *
xm_memstore_new(size_t max_bytes)
{
	struct xm_memstore *m = xm_calloc(1, sizeof(*m));

	pthread_mutex_init(&m->lock, NULL);
	m->max_slots = bound_slots(max_bytes);
	m->cap = MIN_SLOTS;
	m->mask = m->cap - 1;
	m->s = table_alloc(m->cap);
	return m;
}

/* xm_memstore_set_max - a new bound; a smaller table keeps what fits */
void
xm_memstore_set_max(struct xm_memstore *m, size_t max_bytes)
{
	size_t ns = bound_slots(max_bytes);

	pthread_mutex_lock(&m->lock);
	m->max_slots = ns;
	if (m->cap > ns)
		rehash(m, ns, 0);
	pthread_mutex_unlock(&m->lock);
}

/* xm_memstore_free - the table and its slots */
void
xm_memstore_free(struct xm_memstore *m)
{
	if (m == NULL)
		return;
	pthread_mutex_destroy(&m->lock);
	table_free(m->s, m->cap);
	free(m);
}

/* xm_memstore_stats - sizes and counters */
void
xm_memstore_stats(struct xm_memstore *m, struct xm_memstore_stats *s)
{
	pthread_mutex_lock(&m->lock);
	s->keys = m->n;
	s->slots = m->cap;
	s->bytes = m->cap * sizeof(struct slot);
	s->max_bytes = m->max_slots * sizeof(struct slot);
	s->evictions = m->evictions;
	s->expired = m->expired;
	pthread_mutex_unlock(&m->lock);
}
