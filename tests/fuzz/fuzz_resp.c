/*
 * fuzz_resp.c - libFuzzer target for the Redis reply parser
 * (plugin/resp.c), which reads what a Redis server sends the pipelined
 * connection
 *
 * Build and run: tests/fuzz/README. Besides memory errors (ASan) and
 * undefined behaviour (UBSan) it checks the parser's promises, aborting
 * when one breaks:
 *   - a whole reply lies inside the input (0 < used <= len), its strings
 *     inside the bytes consumed and NUL-terminated, arrays within the
 *     element limit;
 *   - "more needed" leaves the buffer exactly as it was;
 *   - every prefix of a whole reply is "more needed" or the same reply
 *     (never "bad": a reply arriving in pieces must not close the
 *     connection).
 * The input is parsed as a stream: reply after reply, as the connection
 * does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "fuzz_resp: check failed: %s (%s:%d)\n", #cond, \
	    __FILE__, __LINE__); abort(); } } while (0)

static struct xm_resp R;

/* inside - S[0..n] (with its NUL) lies within BUF[0..used) */
static void
inside(const char *buf, size_t used, const redisReply *r)
{
	if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
	    r->type == REDIS_REPLY_ERROR) {
		CHECK(r->str >= buf && r->str + r->len < buf + used);
		CHECK(r->str[r->len] == '\0');
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *copy = malloc(size + 1);
	size_t pos = 0, used, i, cut;
	int rc;

	memcpy(buf, data, size);
	for (;;) {
		memcpy(copy, buf + pos, size - pos);
		rc = xm_resp_parse(buf + pos, size - pos, &used, &R);
		if (rc == 0) {
			CHECK(memcmp(copy, buf + pos, size - pos) == 0);
			break;
		}
		if (rc < 0)
			break;
		CHECK(used > 0 && used <= size - pos);
		if (R.top.type == REDIS_REPLY_ARRAY) {
			CHECK(R.top.elements <= XM_RESP_MAXELEM);
			for (i = 0; i < R.top.elements; i++)
				inside(buf + pos, used, R.top.element[i]);
		} else
			inside(buf + pos, used, &R.top);
		/* its prefixes, from the untouched copy */
		for (cut = 0; cut < used; cut += 1 + cut / 8) {
			char *p = malloc(cut + 1);
			size_t u;

			memcpy(p, copy, cut);
			CHECK(xm_resp_parse(p, cut, &u, &R) == 0);
			free(p);
		}
		pos += used;
	}
	free(buf);
	free(copy);
	return 0;
}
