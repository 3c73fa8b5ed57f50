/*
 * fingerprint.h - fingerprints of message text and of the links it carries
 *
 * Outbreak detection counts copies of "the same message", so the
 * fingerprint must not change when a spammer varies what is cheap to vary:
 * letter case, spacing, punctuation, numbers, random tokens, the links
 * themselves. xm_fp_text folds all of that and hashes what is left;
 * xm_fp_urls hashes the set of link targets (scheme, host, port and path,
 * without query or fragment). Texts with too few words carry no
 * fingerprint at all, so "ok", "+1" and "thanks" can never be counted.
 */
#ifndef XM_FINGERPRINT_H
#define XM_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define XM_FP_MAX_URLS 16
#define XM_FP_MAX_TEXTS 16  /* texts of one stanza looked at */

struct xm_fp {
	bool has_text;          /* enough words for a text fingerprint */
	uint64_t text;
	unsigned words;         /* real words (not folded numbers/tokens) */
	size_t chars;           /* bytes of the normalised text */
	bool has_urls;
	uint64_t urls;
	unsigned nurls;
};

/* xm_fp_normalise - the folded form of TEXT[0..n) in arena A (words
 * separated by one space: lower case, no punctuation, digit runs as "#",
 * random-looking tokens as "*", links as "<url>"); *WORDS gets the number
 * of real words */
char *xm_fp_normalise(struct xm_arena *a, const char *text, size_t n,
    unsigned *words);
/* xm_fp_url_key - the part of URL that identifies its target, in arena
 * (lower-case scheme and host, port, path); NULL when it is no URL */
char *xm_fp_url_key(struct xm_arena *a, const char *url, size_t n);
/* xm_fp_compute - fingerprints of TEXTS (joined) and of the links in them
 * plus EXTRA_URLS (n_extra of them); a text fingerprint only when it has
 * at least MIN_WORDS real words and MIN_CHARS normalised bytes */
void xm_fp_compute(struct xm_arena *a, const char *const *texts,
    size_t ntexts, const char *const *extra_urls, size_t n_extra,
    unsigned min_words, size_t min_chars, struct xm_fp *out);

#endif
