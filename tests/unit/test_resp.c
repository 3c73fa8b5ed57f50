/*
 * test_resp.c - unit tests of the Redis reply parser (plugin/resp.c)
 *
 * A table of whole replies of every kind read here (status, error,
 * integer, bulk with binary bytes, nil, arrays of those, the empty array)
 * with what they must give; every proper prefix of each must ask for more
 * bytes and leave the buffer untouched; a table of bytes that are not a
 * reply read here (bad syntax, sizes past the limits, nested arrays) must
 * be refused; and several replies in one buffer come out one by one, as
 * from one read of a pipelined connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "resp.h"

static struct xm_resp R;

struct good {
	const char *name;
	const char *bytes;
	size_t len;            /* 0: strlen */
	int type;
	long long integer;     /* INTEGER */
	const char *str;       /* STRING/STATUS/ERROR (compared by len) */
	size_t slen;
	size_t elements;       /* ARRAY */
	const char *desc;      /* ARRAY: per element "i:N", "s:TEXT", "n" */
};

static const struct good goods[] = {
	{ "status", "+OK\r\n", 0, REDIS_REPLY_STATUS, 0, "OK", 2, 0, NULL },
	{ "error", "-NOSCRIPT No matching script\r\n", 0, REDIS_REPLY_ERROR,
	    0, "NOSCRIPT No matching script", 27, 0, NULL },
	{ "integer", ":-42\r\n", 0, REDIS_REPLY_INTEGER, -42, NULL, 0, 0,
	    NULL },
	{ "big integer", ":123456789012345678\r\n", 0, REDIS_REPLY_INTEGER,
	    123456789012345678LL, NULL, 0, 0, NULL },
	{ "bulk", "$5\r\nhello\r\n", 0, REDIS_REPLY_STRING, 0, "hello", 5,
	    0, NULL },
	{ "binary bulk", "$6\r\na\r\n\0\rb\r\n", 12, REDIS_REPLY_STRING, 0,
	    "a\r\n\0\rb", 6, 0, NULL },
	{ "empty bulk", "$0\r\n\r\n", 0, REDIS_REPLY_STRING, 0, "", 0, 0,
	    NULL },
	{ "nil bulk", "$-1\r\n", 0, REDIS_REPLY_NIL, 0, NULL, 0, 0, NULL },
	{ "nil array", "*-1\r\n", 0, REDIS_REPLY_NIL, 0, NULL, 0, 0, NULL },
	{ "empty array", "*0\r\n", 0, REDIS_REPLY_ARRAY, 0, NULL, 0, 0, "" },
	{ "array", "*4\r\n:1\r\n$3\r\nabc\r\n$-1\r\n+x\r\n", 0,
	    REDIS_REPLY_ARRAY, 0, NULL, 0, 4, "i:1 s:abc n s:x" },
};

/* check_good - G parsed from a fresh copy */
static void
check_good(const struct good *g)
{
	size_t len = g->len ? g->len : strlen(g->bytes), used = 0, i;
	char *buf = malloc(len + 1);

	memcpy(buf, g->bytes, len);
	cr_assert_eq(xm_resp_parse(buf, len, &used, &R), 1, "%s", g->name);
	cr_expect_eq(used, len, "%s: used %zu of %zu", g->name, used, len);
	cr_expect_eq(R.top.type, g->type, "%s: type %d", g->name, R.top.type);
	if (g->type == REDIS_REPLY_INTEGER)
		cr_expect_eq(R.top.integer, g->integer, "%s", g->name);
	if (g->str != NULL) {
		cr_expect_eq(R.top.len, g->slen, "%s: len %zu", g->name,
		    R.top.len);
		cr_expect(memcmp(R.top.str, g->str, g->slen) == 0, "%s",
		    g->name);
		cr_expect_eq(R.top.str[g->slen], '\0', "%s: not ended",
		    g->name);
	}
	if (g->type == REDIS_REPLY_ARRAY) {
		char got[256] = "";

		cr_expect_eq(R.top.elements, g->elements, "%s", g->name);
		for (i = 0; i < R.top.elements; i++) {
			const redisReply *e = R.top.element[i];
			size_t n = strlen(got);

			if (e->type == REDIS_REPLY_INTEGER)
				snprintf(got + n, sizeof(got) - n, "%si:%lld",
				    i ? " " : "", e->integer);
			else if (e->type == REDIS_REPLY_NIL)
				snprintf(got + n, sizeof(got) - n, "%sn",
				    i ? " " : "");
			else
				snprintf(got + n, sizeof(got) - n, "%ss:%s",
				    i ? " " : "", e->str);
		}
		cr_expect_str_eq(got, g->desc, "%s", g->name);
	}
	free(buf);
}

Test(resp, whole_replies)
{
	size_t i;

	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++)
		check_good(&goods[i]);
}

Test(resp, every_prefix_asks_for_more_and_changes_nothing)
{
	size_t i, cut;

	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		size_t len = g->len ? g->len : strlen(g->bytes);

		for (cut = 0; cut < len; cut++) {
			char buf[128];
			size_t used = 12345;

			memcpy(buf, g->bytes, cut);
			cr_expect_eq(xm_resp_parse(buf, cut, &used, &R), 0,
			    "%s cut at %zu", g->name, cut);
			cr_expect(memcmp(buf, g->bytes, cut) == 0, "%s cut at "
			    "%zu: buffer changed", g->name, cut);
			cr_expect_eq(used, 12345, "%s cut at %zu", g->name, cut);
		}
	}
}

Test(resp, not_replies_read_here)
{
	static const char *const bad[] = {
		"?\r\n",                    /* unknown type */
		":12a\r\n",                 /* not a number */
		":\r\n",                    /* empty number */
		":1234567890123456789\r\n", /* too many digits */
		"$-2\r\n",                  /* bulk length */
		"$5\r\nhelloXY",            /* no CRLF after the data */
		"$99999999\r\n",            /* past XM_RESP_MAXBULK */
		"*2\r\n*1\r\n:1\r\n:2\r\n", /* nested */
		"*300\r\n",                 /* past XM_RESP_MAXELEM */
		"*1\r\n?x\r\n",             /* bad element */
		"+OK\rX",                   /* CR without LF */
		":1\r",                     /* complete? no: but see below */
	};
	size_t i;

	/* the last one asks for more (its LF may still come) */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char buf[64];
		size_t used, len = strlen(bad[i]);
		int want = i + 1 == sizeof(bad) / sizeof(bad[0]) ? 0 : -1;

		memcpy(buf, bad[i], len);
		cr_expect_eq(xm_resp_parse(buf, len, &used, &R), want,
		    "case %zu", i);
	}
	/* a header line that never ends within its limit */
	{
		char *buf = malloc(XM_RESP_MAXLINE + 10);
		size_t used;

		buf[0] = '-';
		memset(buf + 1, 'x', XM_RESP_MAXLINE + 9);
		cr_expect_eq(xm_resp_parse(buf, XM_RESP_MAXLINE + 10, &used, &R),
		    -1);
		free(buf);
	}
}

Test(resp, pipelined_replies_one_by_one)
{
	static const char stream[] = "+OK\r\n$40\r\n"
	    "0123456789012345678901234567890123456789\r\n"
	    "*2\r\n$8\r\n\x01\x02\x03\x04\x05\x06\x07\x08\r\n:7\r\n"
	    "-ERR oops\r\n:1";
	char buf[sizeof(stream)];
	size_t pos = 0, used, len = sizeof(stream) - 1;
	int kinds[4], n = 0;

	memcpy(buf, stream, len);
	while (xm_resp_parse(buf + pos, len - pos, &used, &R) == 1) {
		cr_assert_lt(n, 4);
		kinds[n++] = R.top.type;
		if (R.top.type == REDIS_REPLY_ARRAY) {
			cr_expect_eq(R.top.element[0]->len, 8);
			cr_expect_eq(R.top.element[0]->str[7], 8);
			cr_expect_eq(R.top.element[1]->integer, 7);
		}
		pos += used;
	}
	cr_expect_eq(n, 4);
	cr_expect_eq(kinds[0], REDIS_REPLY_STATUS);
	cr_expect_eq(kinds[1], REDIS_REPLY_STRING);
	cr_expect_eq(kinds[2], REDIS_REPLY_ARRAY);
	cr_expect_eq(kinds[3], REDIS_REPLY_ERROR);
	cr_expect_eq(len - pos, 2, "the unfinished \":1\" is left");
}
