/*
 * fuzz_fingerprint.c - libFuzzer target for the text folding and the
 * fingerprints (plugin/fingerprint.c), which see every chat message the
 * ratelimit filter counts
 *
 * Build and run: tests/fuzz/README. The input is the text (in a block of
 * exactly its size, so ASan sees any read past it); besides memory errors
 * and undefined behaviour it checks, aborting when one breaks:
 *   - leading separators and trailing spaces change nothing: the input
 *     after 1-40 spaces or dots, and before as many spaces, folds the
 *     same (each byte through every position of the 32-byte blocks);
 *   - xm_fp_compute agrees with xm_fp_normalise: the same real words, the
 *     folded text's length, and its hash as the text fingerprint;
 *   - the input cut at its NUL bytes into several texts gives the
 *     fingerprint of those texts' folded forms joined by spaces;
 *   - link keys are NULL or "scheme://host/..." with a lower-case host
 *     (for inputs without a NUL: links are C strings).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "state.h"
#include "util.h"

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "fuzz_fingerprint: check failed: %s (%s:%d)\n", \
	    #cond, __FILE__, __LINE__); abort(); } } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xm_arena *a = xm_arena_new();
	char *text = malloc(size ? size : 1), *buf, *fold, *joined, *key;
	const char *texts[4];
	size_t k, nt = 0, pos = 0, jl = 0;
	unsigned words, w;
	struct xm_fp fp;

	memcpy(text, data, size);
	fold = xm_fp_normalise(a, text, size, &words);
	CHECK(strlen(fold) <= 2 * size + 1);

	/* the same wherever the blocks fall */
	buf = malloc(size + 80);
	for (k = 1; k <= 40; k++) {
		memset(buf, k % 2 ? ' ' : '.', k);
		memcpy(buf + k, data, size);
		memset(buf + k + size, ' ', k);
		CHECK(strcmp(xm_fp_normalise(a, buf, size + 2 * k, &w), fold) == 0);
		CHECK(w == words);
	}
	free(buf);

	/* the texts between NUL bytes, each in a block of its own size */
	while (pos <= size && nt < 4) {
		size_t n = strnlen(text + pos, size - pos);
		char *t = xm_arena_alloc(a, n + 1);

		memcpy(t, text + pos, n);
		texts[nt++] = t;
		pos += n + 1;
	}
	joined = xm_arena_alloc(a, 2 * size + 8);
	for (k = 0; k < nt; k++) {
		char *f = xm_fp_normalise(a, texts[k], strlen(texts[k]), &w);

		if (*f != '\0') {
			if (jl > 0)
				joined[jl++] = ' ';
			memcpy(joined + jl, f, strlen(f));
			jl += strlen(f);
		}
	}
	xm_fp_compute(a, texts, nt, NULL, 0, 1, 0, &fp);
	CHECK(fp.chars == jl);
	CHECK(fp.has_text == (fp.words > 0 && jl > 0));
	if (fp.has_text)
		CHECK(fp.text == xm_hash64(joined, jl, 0x7465787400ULL));
	if (nt == 1)
		CHECK(fp.words == words && strcmp(joined, fold) == 0);
	CHECK(fp.nurls <= XM_FP_MAX_URLS && fp.has_urls == (fp.nurls > 0));

	/* the input as a link (a C string: links never hold a NUL) */
	key = memchr(text, '\0', size) == NULL ?
	    xm_fp_url_key(a, text, size) : NULL;
	if (key != NULL) {
		const char *h = strstr(key, "://");

		CHECK(h != NULL && h > key && strchr(h + 3, '/') != NULL);
		for (h += 3; *h != '/'; h++)
			CHECK(!(*h >= 'A' && *h <= 'Z'));
	}
	free(text);
	xm_arena_free(a);
	return 0;
}
