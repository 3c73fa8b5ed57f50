/*
 * ibb.c - in-band bytestream reassembly with memory caps and expiry
 *
 * Purpose and interface: see ibb.h. The table is a fixed array of hash
 * buckets of streams; every call sweeps idle streams at most once a
 * second. Memory is counted by buffer capacity (what malloc holds), so
 * max_total bounds what the streams really take.
 *
 * Ownership: the table owns every stream and buffer; ibb_close hands the
 * finished stream's buffer to the caller, ibb_data hands out copies.
 *
 * Failure: every limit is a status (the caller's policy decides); bad
 * base64 is IBB_BAD_DATA; allocation failure aborts (xm_malloc).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ibb.h"
#include "util.h"

#define NBUCKETS 1024

struct stream {
	struct stream *next;
	char *key;
	unsigned long hash;
	unsigned char *buf;
	size_t len, cap;
	size_t scanned;      /* the largest checkpoint scanned */
	long long next_seq;  /* -1: not known yet */
	double last;
	bool infected, too_big, broken;  /* tombstones: the rest is refused */
	char virus[128];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct stream *buckets[NBUCKETS];
static size_t nstreams, total, peak;
static unsigned long long nexpired;
static double last_sweep;

/* khash - string hash for the buckets */
static unsigned long
khash(const char *s)
{
	unsigned long h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

/* ibb_key - FROM|TO|SID */
bool
ibb_key(char *buf, size_t len, const char *from, const char *to,
    const char *sid)
{
	int n = snprintf(buf, len, "%s|%s|%s", from ? from : "", to ? to : "",
	    sid ? sid : "");

	return n > 0 && (size_t)n < len;
}

/* find - the stream with KEY, and the link that points at it */
static struct stream *
find(const char *key, struct stream ***linkp)
{
	unsigned long h = khash(key);
	struct stream **pp = &buckets[h % NBUCKETS];

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
			break;
	if (linkp)
		*linkp = pp;
	return *pp;
}

/* drop_buf - free a stream's buffer, uncount it */
static void
drop_buf(struct stream *s)
{
	total -= s->cap;
	free(s->buf);
	s->buf = NULL;
	s->len = s->cap = 0;
}

/* drop - unlink (via PP) and free S */
static void
drop(struct stream **pp, struct stream *s)
{
	*pp = s->next;
	drop_buf(s);
	free(s->key);
	free(s);
	nstreams--;
}

/* sweep - expire idle streams (at most once a second) */
static void
sweep(double now, double idle)
{
	size_t i;

	if (now - last_sweep < 1 && now >= last_sweep)
		return;
	last_sweep = now;
	for (i = 0; i < NBUCKETS; i++) {
		struct stream **pp = &buckets[i];

		while (*pp != NULL) {
			if (now - (*pp)->last > idle) {
				drop(pp, *pp);
				nexpired++;
			} else
				pp = &(*pp)->next;
		}
	}
}

/* add - a new empty stream (caller checked max_streams) */
static struct stream *
add(const char *key, double now)
{
	struct stream *s = xm_calloc(1, sizeof(*s));

	s->key = xm_strdup(key);
	s->hash = khash(key);
	s->next = buckets[s->hash % NBUCKETS];
	s->next_seq = -1;
	s->last = now;
	buckets[s->hash % NBUCKETS] = s;
	nstreams++;
	return s;
}

/* ibb_open - start (or restart) a stream */
enum ibb_status
ibb_open(const char *key, double now, const struct ibb_limits *l)
{
	struct stream **pp, *s;
	enum ibb_status rc = IBB_OK;

	pthread_mutex_lock(&mu);
	sweep(now, l->idle);
	if ((s = find(key, &pp)) != NULL) {
		if (s->infected)
			rc = IBB_INFECTED;
		else {
			drop_buf(s);
			s->scanned = 0;
			s->next_seq = 0;
			s->too_big = s->broken = false;
			s->last = now;
		}
	} else if (nstreams >= l->max_streams)
		rc = IBB_NO_MEMORY;
	else
		add(key, now)->next_seq = 0;
	pthread_mutex_unlock(&mu);
	return rc;
}

/* ibb_b64_decode - standard alphabet, padding optional, whitespace skipped */
long
ibb_b64_decode(const char *s, unsigned char *out)
{
	unsigned v = 0;
	int bits = 0, pad = 0;
	long n = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		int d;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		if (pad)
			return -1;  /* data after padding */
		if (c >= 'A' && c <= 'Z')
			d = c - 'A';
		else if (c >= 'a' && c <= 'z')
			d = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			d = c - '0' + 52;
		else if (c == '+')
			d = 62;
		else if (c == '/')
			d = 63;
		else
			return -1;
		v = (v << 6) | (unsigned)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(v >> bits);
			v &= (1u << bits) - 1;
		}
	}
	if (pad > 2 || bits >= 6)
		return -1;
	return n;
}

/* reserve - room for N more bytes in S within the limits; false if none */
static bool
reserve(struct stream *s, size_t n, const struct ibb_limits *l)
{
	size_t need = s->len + n, ncap;

	if (need <= s->cap)
		return true;
	ncap = s->cap ? s->cap : 4096;
	while (ncap < need)
		ncap *= 2;
	if (ncap > l->max_stream)
		ncap = need;
	if (total - s->cap + ncap > l->max_total) {
		ncap = need;
		if (total - s->cap + ncap > l->max_total)
			return false;
	}
	s->buf = xm_realloc(s->buf, ncap);
	total = total - s->cap + ncap;
	s->cap = ncap;
	if (total > peak)
		peak = total;
	return true;
}

/* ibb_data - append one chunk; maybe a checkpoint snapshot */
enum ibb_status
ibb_data(const char *key, long long seq, const char *b64, double now,
    const struct ibb_limits *l, struct ibb_snap *snap)
{
	size_t blen = strlen(b64);
	unsigned char *dec = xm_malloc(blen / 4 * 3 + 4);
	long n = ibb_b64_decode(b64, dec);
	struct stream **pp, *s;
	enum ibb_status rc = IBB_OK;
	size_t c;

	memset(snap, 0, sizeof(*snap));
	if (n < 0) {
		free(dec);
		return IBB_BAD_DATA;
	}
	pthread_mutex_lock(&mu);
	sweep(now, l->idle);
	if ((s = find(key, &pp)) == NULL) {
		if (nstreams >= l->max_streams) {
			rc = IBB_NO_MEMORY;
			goto out;
		}
		s = add(key, now);
		pp = NULL;
	}
	s->last = now;
	if (s->infected) {
		snprintf(snap->virus, sizeof(snap->virus), "%s", s->virus);
		rc = IBB_INFECTED;
		goto out;
	}
	if (s->too_big) {
		rc = IBB_TOO_BIG;
		goto out;
	}
	if (s->broken) {
		rc = IBB_BAD_SEQ;
		goto out;
	}
	if (seq >= 0 && s->next_seq >= 0 && seq != s->next_seq) {
		if (seq == ((s->next_seq + 65535) & 0xffff))
			goto out;  /* a resent chunk: already have it */
		drop_buf(s);  /* a tombstone: no later chunk starts it again */
		s->broken = true;
		rc = IBB_BAD_SEQ;
		goto out;
	}
	if (seq >= 0)
		s->next_seq = (seq + 1) & 0xffff;
	if (s->len + (size_t)n > l->max_stream) {
		drop_buf(s);
		s->too_big = true;
		rc = IBB_TOO_BIG;
		goto out;
	}
	if (!reserve(s, (size_t)n, l)) {
		drop_buf(s);  /* cannot be scanned whole: the rest is refused */
		s->too_big = true;
		rc = IBB_NO_MEMORY;
		goto out;
	}
	memcpy(s->buf + s->len, dec, (size_t)n);
	s->len += (size_t)n;
	if (l->step == 0)
		goto out;
	if (s->scanned == 0)  /* the first chunk at once: small files */
		c = s->len < l->step ? s->len : l->step;
	else {
		for (c = l->step; c <= s->scanned; c *= 2)
			;
		if (c > s->len)
			goto out;
	}
	while (c >= l->step && c <= s->len / 2)
		c *= 2;
	if (c == 0)
		goto out;
	s->scanned = c;
	snap->data = xm_malloc(c);
	memcpy(snap->data, s->buf, c);
	snap->len = c;
	rc = IBB_SCAN;
out:
	pthread_mutex_unlock(&mu);
	free(dec);
	return rc;
}

/* ibb_close - end of stream: hand over the whole of it */
enum ibb_status
ibb_close(const char *key, double now, struct ibb_snap *snap)
{
	struct stream **pp, *s;
	enum ibb_status rc;

	memset(snap, 0, sizeof(*snap));
	pthread_mutex_lock(&mu);
	if ((s = find(key, &pp)) == NULL) {
		pthread_mutex_unlock(&mu);
		return IBB_UNKNOWN;
	}
	if (s->infected) {
		snprintf(snap->virus, sizeof(snap->virus), "%s", s->virus);
		rc = IBB_INFECTED;
	} else if (s->too_big)
		rc = IBB_TOO_BIG;
	else if (s->broken)
		rc = IBB_BAD_SEQ;
	else {
		snap->data = s->buf;
		snap->len = s->len;
		snap->final = true;
		total -= s->cap;
		s->buf = NULL;
		s->len = s->cap = 0;
		rc = IBB_SCAN;
	}
	drop(pp, s);
	pthread_mutex_unlock(&mu);
	return rc;
}

/* ibb_infected - a tombstone: no buffer, the rest refused */
void
ibb_infected(const char *key, const char *virus, double now)
{
	struct stream *s;

	pthread_mutex_lock(&mu);
	if ((s = find(key, NULL)) != NULL) {
		drop_buf(s);
		s->infected = true;
		s->last = now;
		snprintf(s->virus, sizeof(s->virus), "%s", virus);
	}
	pthread_mutex_unlock(&mu);
}

/* ibb_get_stats - a snapshot of the counters */
void
ibb_get_stats(struct ibb_stats *st)
{
	pthread_mutex_lock(&mu);
	st->streams = nstreams;
	st->bytes = total;
	st->peak_bytes = peak;
	st->expired = nexpired;
	pthread_mutex_unlock(&mu);
}

/* ibb_reset - forget every stream */
void
ibb_reset(void)
{
	size_t i;

	pthread_mutex_lock(&mu);
	for (i = 0; i < NBUCKETS; i++)
		while (buckets[i] != NULL)
			drop(&buckets[i], buckets[i]);
	peak = total;
	nexpired = 0;
	last_sweep = 0;
	pthread_mutex_unlock(&mu);
}
