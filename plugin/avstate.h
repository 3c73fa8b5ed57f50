/*
 * avstate.h - antivirus state that outlives a configuration reload
 *
 * Two process-global, bounded, thread-safe tables the antivirus filter
 * keeps across SIGHUP (a reload builds new filter instances; these stay):
 *
 *   - the result cache: SHA-256 of the scanned bytes plus the engine's tag
 *     (a digest of the database files and the scan settings) -> the
 *     result, so the same file offered to 50 contacts is scanned once and
 *     a database change invalidates every entry without a flush;
 *   - the infected-URL set: the download URLs of uploads found infected,
 *     so that a message sharing one is blocked.
 *
 * Both are LRU lists with a hash index, capped at a number of entries the
 * filter sets (avstate_configure); an entry older than the TTL counts as
 * absent. Counters (scans, cache hits) are for benchmarks and tests.
 *
 * Ownership: the tables copy what they are given; results are copied out.
 */
#ifndef XM_AVSTATE_H
#define XM_AVSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum av_kind {
	AV_CLEAN = 0,
	AV_VIRUS,      /* name: the signature */
	AV_LIMITS,     /* name: which limit */
};

struct av_result {
	enum av_kind kind;
	char name[128];
};

struct avstate_stats {
	unsigned long long scans;       /* bytes handed to libclamav */
	unsigned long long cache_hits;
	unsigned long long cache_misses;
	size_t cache_entries, url_entries;
};

/* avstate_configure - set the caps (0 turns a table off) and TTLs */
void avstate_configure(size_t cache_max, double cache_ttl, size_t url_max,
    double url_ttl);
/* avstate_cache_get - the cached result for (SHA, TAG), true when found */
bool avstate_cache_get(const unsigned char sha[32], uint64_t tag, double now,
    struct av_result *out);
/* avstate_cache_put - remember R for (SHA, TAG) */
void avstate_cache_put(const unsigned char sha[32], uint64_t tag, double now,
    const struct av_result *r);
/* avstate_url_key - the form of URL the set compares (scheme dropped,
 * host lower-cased, query and fragment dropped) into OUT; false when URL
 * is not an http(s) URL */
bool avstate_url_key(const char *url, size_t len, char *out, size_t outlen);
/* avstate_url_add - remember URL as infected with VIRUS */
void avstate_url_add(const char *url, const char *virus, double now);
/* avstate_url_find - is URL (any form) in the set; VIRUS gets the name */
bool avstate_url_find(const char *url, size_t len, double now, char *virus,
    size_t vlen);
/* avstate_url_count - entries in the set (a cheap test before a search) */
size_t avstate_url_count(void);
/* avstate_count_scan - one more scan done */
void avstate_count_scan(void);
/* avstate_get_stats - the counters */
void avstate_get_stats(struct avstate_stats *s);
/* avstate_reset - empty both tables and the counters (tests) */
void avstate_reset(void);

#endif
