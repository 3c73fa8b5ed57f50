/*
 * avstate.c - the antivirus result cache and infected-URL set
 *
 * Purpose: state of the antivirus filter that must survive a reload (see
 * avstate.h). One generic LRU (struct lru: a doubly-linked recency list
 * plus a chained hash index over byte-string keys) serves both tables;
 * each is guarded by its own mutex because slow filters run on several
 * worker threads at once.
 *
 * Bounds: each table holds at most its cap of entries (the least recently
 * used goes first); keys are at most LRU_MAX_KEY bytes (longer URLs are
 * not remembered, which only means they are not blocked by this set).
 *
 * Failure: none; allocation failure aborts (xm_malloc).
 */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "avstate.h"
#include "util.h"

#define LRU_MAX_KEY 2048

struct lru_ent {
	struct lru_ent *prev, *next;   /* recency: head is the newest */
	struct lru_ent *hnext;         /* hash chain */
	uint64_t hash;
	double at;
	struct av_result r;
	size_t klen;
	unsigned char key[];
};

struct lru {
	pthread_mutex_t mu;
	struct lru_ent *head, *tail;
	struct lru_ent **buckets;
	size_t nbuckets, n, max;
	double ttl;
};

static struct lru cache = { .mu = PTHREAD_MUTEX_INITIALIZER, .max = 10000,
	.ttl = 3600 };
static struct lru urls = { .mu = PTHREAD_MUTEX_INITIALIZER, .max = 10000,
	.ttl = 7 * 86400 };
static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long nscans, nhits, nmisses;

/* fnv - FNV-1a of a byte string */
static uint64_t
fnv(const unsigned char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	while (n-- > 0) {
		h ^= *p++;
		h *= 1099511628211ULL;
	}
	return h;
}

/* lru_unlink - take E off the recency list and its hash chain */
static void
lru_unlink(struct lru *l, struct lru_ent *e)
{
	struct lru_ent **pp = &l->buckets[e->hash & (l->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	l->n--;
}

/* lru_trim - drop the oldest entries until at most MAX remain */
static void
lru_trim(struct lru *l, size_t max)
{
	while (l->n > max && l->tail != NULL) {
		struct lru_ent *e = l->tail;

		lru_unlink(l, e);
		free(e);
	}
}

/* lru_index - make sure the hash index exists (power of two, >= 64) */
static void
lru_index(struct lru *l)
{
	size_t want = 64, i;
	struct lru_ent *e;

	while (want < l->max && want < (1u << 20))
		want <<= 1;
	if (l->buckets != NULL && l->nbuckets == want)
		return;
	free(l->buckets);
	l->buckets = xm_calloc(want, sizeof(*l->buckets));
	l->nbuckets = want;
	for (e = l->head; e != NULL; e = e->next) {
		i = e->hash & (want - 1);
		e->hnext = l->buckets[i];
		l->buckets[i] = e;
	}
}

/* lru_find - the live entry for KEY, moved to the front; NULL if none */
static struct lru_ent *
lru_find(struct lru *l, const unsigned char *key, size_t klen, double now)
{
	uint64_t h = fnv(key, klen);
	struct lru_ent *e;

	if (l->buckets == NULL)
		return NULL;
	for (e = l->buckets[h & (l->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
			break;
	if (e == NULL)
		return NULL;
	if (l->ttl > 0 && now - e->at > l->ttl) {
		lru_unlink(l, e);
		free(e);
		return NULL;
	}
	if (e != l->head) {  /* to the front */
		e->prev->next = e->next;
		if (e->next)
			e->next->prev = e->prev;
		else
			l->tail = e->prev;
		e->prev = NULL;
		e->next = l->head;
		l->head->prev = e;
		l->head = e;
	}
	return e;
}

/* lru_put - insert or refresh KEY with R */
static void
lru_put(struct lru *l, const unsigned char *key, size_t klen, double now,
    const struct av_result *r)
{
	struct lru_ent *e;
	size_t i;

	if (l->max == 0 || klen > LRU_MAX_KEY)
		return;
	lru_index(l);
	if ((e = lru_find(l, key, klen, now)) != NULL) {
		e->r = *r;
		e->at = now;
		return;
	}
	lru_trim(l, l->max - 1);
	e = xm_malloc(sizeof(*e) + klen);
	e->hash = fnv(key, klen);
	e->at = now;
	e->r = *r;
	e->klen = klen;
	memcpy(e->key, key, klen);
	i = e->hash & (l->nbuckets - 1);
	e->hnext = l->buckets[i];
	l->buckets[i] = e;
	e->prev = NULL;
	e->next = l->head;
	if (l->head)
		l->head->prev = e;
	else
		l->tail = e;
	l->head = e;
	l->n++;
}

/* lru_set_max - new cap and TTL; trims and re-indexes */
static void
lru_set_max(struct lru *l, size_t max, double ttl)
{
	pthread_mutex_lock(&l->mu);
	l->max = max;
	l->ttl = ttl;
	lru_trim(l, max);
	if (l->buckets != NULL)
		lru_index(l);
	pthread_mutex_unlock(&l->mu);
}

/* avstate_configure - caps and TTLs of both tables */
void
avstate_configure(size_t cache_max, double cache_ttl, size_t url_max,
    double url_ttl)
{
	lru_set_max(&cache, cache_max, cache_ttl);
	lru_set_max(&urls, url_max, url_ttl);
}

/* cache_key - SHA then TAG, 40 bytes */
static void
cache_key(unsigned char key[40], const unsigned char sha[32], uint64_t tag)
{
	memcpy(key, sha, 32);
	memcpy(key + 32, &tag, 8);
}

/* avstate_cache_get - look up (SHA, TAG) */
bool
avstate_cache_get(const unsigned char sha[32], uint64_t tag, double now,
    struct av_result *out)
{
	unsigned char key[40];
	struct lru_ent *e;

	cache_key(key, sha, tag);
	pthread_mutex_lock(&cache.mu);
	if ((e = lru_find(&cache, key, sizeof(key), now)) != NULL)
		*out = e->r;
	pthread_mutex_unlock(&cache.mu);
	pthread_mutex_lock(&stats_mu);
	if (e != NULL)
		nhits++;
	else
		nmisses++;
	pthread_mutex_unlock(&stats_mu);
	return e != NULL;
}

/* avstate_cache_put - store (SHA, TAG) -> R */
void
avstate_cache_put(const unsigned char sha[32], uint64_t tag, double now,
    const struct av_result *r)
{
	unsigned char key[40];

	cache_key(key, sha, tag);
	pthread_mutex_lock(&cache.mu);
	lru_put(&cache, key, sizeof(key), now, r);
	pthread_mutex_unlock(&cache.mu);
}

/* avstate_url_key - scheme-less, host lower-cased, no query or fragment */
bool
avstate_url_key(const char *url, size_t len, char *out, size_t outlen)
{
	const char *p = url, *end = url + len;
	size_t o = 0;
	bool in_host = true;

	if (len >= 7 && strncasecmp(p, "http://", 7) == 0)
		p += 7;
	else if (len >= 8 && strncasecmp(p, "https://", 8) == 0)
		p += 8;
	else
		return false;
	for (; p < end; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '?' || ch == '#' || isspace(ch))
			break;
		if (ch == '/')
			in_host = false;
		if (o + 1 >= outlen)
			return false;
		out[o++] = in_host ? (char)tolower(ch) : (char)ch;
	}
	out[o] = '\0';
	return o > 0;
}

/* avstate_url_add - remember an infected upload's URL */
void
avstate_url_add(const char *url, const char *virus, double now)
{
	char key[LRU_MAX_KEY + 1];
	struct av_result r = { .kind = AV_VIRUS };

	if (!avstate_url_key(url, strlen(url), key, sizeof(key)))
		return;
	snprintf(r.name, sizeof(r.name), "%s", virus);
	pthread_mutex_lock(&urls.mu);
	lru_put(&urls, (const unsigned char *)key, strlen(key), now, &r);
	pthread_mutex_unlock(&urls.mu);
}

/* avstate_url_find - look URL up */
bool
avstate_url_find(const char *url, size_t len, double now, char *virus,
    size_t vlen)
{
	char key[LRU_MAX_KEY + 1];
	struct lru_ent *e;

	if (!avstate_url_key(url, len, key, sizeof(key)))
		return false;
	pthread_mutex_lock(&urls.mu);
	e = lru_find(&urls, (const unsigned char *)key, strlen(key), now);
	if (e != NULL && virus != NULL)
		snprintf(virus, vlen, "%s", e->r.name);
	pthread_mutex_unlock(&urls.mu);
	return e != NULL;
}

/* avstate_url_count - how many URLs are remembered */
size_t
avstate_url_count(void)
{
	size_t n;

	pthread_mutex_lock(&urls.mu);
	n = urls.n;
	pthread_mutex_unlock(&urls.mu);
	return n;
}

/* avstate_count_scan - count one libclamav scan */
void
avstate_count_scan(void)
{
	pthread_mutex_lock(&stats_mu);
	nscans++;
	pthread_mutex_unlock(&stats_mu);
}

/* avstate_get_stats - counters and sizes */
void
avstate_get_stats(struct avstate_stats *s)
{
	pthread_mutex_lock(&stats_mu);
	s->scans = nscans;
	s->cache_hits = nhits;
	s->cache_misses = nmisses;
	pthread_mutex_unlock(&stats_mu);
	pthread_mutex_lock(&cache.mu);
	s->cache_entries = cache.n;
	pthread_mutex_unlock(&cache.mu);
	s->url_entries = avstate_url_count();
}

/* avstate_reset - forget everything */
void
avstate_reset(void)
{
	pthread_mutex_lock(&cache.mu);
	lru_trim(&cache, 0);
	pthread_mutex_unlock(&cache.mu);
	pthread_mutex_lock(&urls.mu);
	lru_trim(&urls, 0);
	pthread_mutex_unlock(&urls.mu);
	pthread_mutex_lock(&stats_mu);
	nscans = nhits = nmisses = 0;
	pthread_mutex_unlock(&stats_mu);
}
