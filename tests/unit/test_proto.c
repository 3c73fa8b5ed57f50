/*
 * test_proto.c - unit tests of the protocol codec (plugin/proto.c) and
 * the per-connection state machine (plugin/session.c)
 *
 * The codec: good frames, need-more at every split point, every kind of
 * malformed header (each with its BYE code), the key=value body reader,
 * and the VERDICT body writer. The session: driven with byte strings and
 * a recording set of ops, comparing what it queues to send byte for byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "chain.h"
#include "proto.h"
#include "session.h"
#include "xm.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- proto_parse_frame: good frames ---- */

struct good_frame {
	const char *in;
	size_t len;
	size_t max;
	enum proto_verb verb;
	uint64_t id;
	const char *body;
	size_t blen;
};

static const struct good_frame good[] = {
	{ S("HELLO 0 10\nversion=1\n"), 1000, PROTO_HELLO, 0, S("version=1\n") },
	{ S("FILTER 1 3\nabc"), 1000, PROTO_FILTER, 1, S("abc") },
	{ S("VERDICT 42 0\n"), 1000, PROTO_VERDICT, 42, S("") },
	{ S("CANCEL 7 0\n"), 1000, PROTO_CANCEL, 7, S("") },
	{ S("PING 3 4\nab\ncTRAILING"), 1000, PROTO_PING, 3, S("ab\nc") },
	{ S("PONG 3 2\n\0\n"), 1000, PROTO_PONG, 3, "\0\n", 2 },
	{ S("BYE 0 9\ncode=200\n"), 1000, PROTO_BYE, 0, S("code=200\n") },
	{ S("FILTER 9223372036854775807 1\nx"), 1000, PROTO_FILTER,
	    INT64_MAX, S("x") },
	{ S("FILTER 10 5\nhello"), 5, PROTO_FILTER, 10, S("hello") },
	{ S("FILTER 1 0\nFILTER 2 0\n"), 1000, PROTO_FILTER, 1, S("") },
};

Test(frame, good_frames)
{
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(good); i++) {
		struct proto_frame f;
		size_t used = 0;
		int code = 0, rc;
		char err[128] = "";

		rc = proto_parse_frame(good[i].in, good[i].len, good[i].max, &f,
		    &used, &code, err, sizeof(err));
		cr_assert_eq(rc, 1, "row %zu: rc %d (%s)", i, rc, err);
		cr_expect_eq(f.verb, good[i].verb, "row %zu verb", i);
		cr_expect_eq(f.id, good[i].id, "row %zu id", i);
		cr_expect_eq(f.len, good[i].blen, "row %zu len", i);
		cr_expect(memcmp(f.body, good[i].body, good[i].blen) == 0,
		    "row %zu body", i);
		cr_expect_eq(used, (size_t)(f.body - good[i].in) + good[i].blen,
		    "row %zu consumed", i);
	}
}

Test(frame, need_more_at_every_split_point)
{
	size_t i, k;

	for (i = 0; i < XM_ARRAY_LEN(good); i++) {
		struct proto_frame f;
		size_t used, whole;
		int code, rc;
		char err[128];

		rc = proto_parse_frame(good[i].in, good[i].len, good[i].max, &f,
		    &whole, &code, err, sizeof(err));
		cr_assert_eq(rc, 1);
		for (k = 0; k < whole; k++) {
			/* a copy, so reading past K would show under ASan */
			char *cut = xm_malloc(k ? k : 1);

			memcpy(cut, good[i].in, k);
			used = 999;
			rc = proto_parse_frame(cut, k, good[i].max, &f, &used, &code,
			    err, sizeof(err));
			cr_expect_eq(rc, 0, "row %zu cut at %zu: rc %d (%s)", i, k,
			    rc, rc < 0 ? err : "");
			cr_expect_eq(used, 999, "row %zu cut at %zu: consumed set", i,
			    k);
			free(cut);
		}
	}
}

Test(frame, pipelined_frames_one_after_another)
{
	static const char in[] = "HELLO 0 10\nversion=1\nPING 1 0\nFILTER 2 3\n"
	    "abcCANCEL 2 0\nFILTER 3 1\n";
	static const enum proto_verb want[] = { PROTO_HELLO, PROTO_PING,
	    PROTO_FILTER, PROTO_CANCEL };
	size_t off = 0, used, i;
	struct proto_frame f;
	int code;
	char err[128];

	for (i = 0; i < XM_ARRAY_LEN(want); i++) {
		cr_assert_eq(proto_parse_frame(in + off, sizeof(in) - 1 - off, 100,
		    &f, &used, &code, err, sizeof(err)), 1, "frame %zu", i);
		cr_expect_eq(f.verb, want[i]);
		off += used;
	}
	/* the last one waits for its body */
	cr_expect_eq(proto_parse_frame(in + off, sizeof(in) - 1 - off, 100, &f,
	    &used, &code, err, sizeof(err)), 0);
}

/* ---- proto_parse_frame: malformed headers ---- */

struct bad_frame {
	const char *what;
	const char *in;
	size_t len;
	size_t max;
	int code;
};

static const struct bad_frame bad[] = {
	{ "unknown verb", S("HELO 0 0\n"), 100, 400 },
	{ "lowercase verb", S("hello 0 0\n"), 100, 400 },
	{ "mixed-case verb", S("Filter 1 0\n"), 100, 400 },
	{ "verb with suffix", S("FILTERS 1 0\n"), 100, 400 },
	{ "empty verb", S(" 1 0\n"), 100, 400 },
	{ "NUL in verb", S("FIL\0TER 1 0\n"), 100, 400 },
	{ "leading zero id", S("FILTER 01 0\n"), 100, 400 },
	{ "leading zero length", S("FILTER 1 05\nhello"), 100, 400 },
	{ "plus sign id", S("FILTER +1 0\n"), 100, 400 },
	{ "minus sign id", S("FILTER -1 0\n"), 100, 400 },
	{ "minus sign length", S("FILTER 1 -0\n"), 100, 400 },
	{ "hex id", S("FILTER 0x1 0\n"), 100, 400 },
	{ "21-digit id", S("FILTER 100000000000000000000 0\n"), 100, 400 },
	{ "21-digit id with zeros", S("FILTER 000000000000000000001 0\n"), 100,
	    400 },
	{ "id INT64_MAX + 1", S("FILTER 9223372036854775808 0\n"), 100, 400 },
	{ "id UINT64_MAX", S("FILTER 18446744073709551615 0\n"), 100, 400 },
	{ "length UINT64_MAX + 1", S("FILTER 1 18446744073709551616\n"), 100,
	    400 },
	{ "21-digit length", S("FILTER 1 100000000000000000000\n"), 100, 400 },
	{ "empty id (two spaces)", S("FILTER  1 0\n"), 100, 400 },
	{ "two spaces before length", S("FILTER 1  0\n"), 100, 400 },
	{ "trailing space", S("FILTER 1 0 \n"), 100, 400 },
	{ "leading space", S(" FILTER 1 0\n"), 100, 400 },
	{ "tabs for spaces", S("FILTER\t1\t0\n"), 100, 400 },
	{ "missing length", S("FILTER 1\n"), 100, 400 },
	{ "verb only", S("FILTER\n"), 100, 400 },
	{ "empty line", S("\n"), 100, 400 },
	{ "CR LF", S("FILTER 1 0\r\n"), 100, 400 },
	{ "letters in length", S("FILTER 1 1x\n"), 100, 400 },
	{ "four fields", S("FILTER 1 2 3\n"), 100, 400 },
	{ "no LF within 64 bytes",
	    S("FILTER 1 00000000000000000000000000000000000000000000000000000000"),
	    100, 400 },
	{ "64 bytes of junk", S("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
	    100, 400 },
	{ "LF at byte 65", S("PING 1 0                                                       \n"),
	    100, 400 },
	{ "body over max_frame", S("FILTER 1 101\n"), 100, 413 },
	{ "body far over max_frame", S("FILTER 1 99999999999\n"), 100, 413 },
	{ "HELLO body over max_frame", S("HELLO 0 5000\n"), 4096, 413 },
};

Test(frame, malformed_headers)
{
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(bad); i++) {
		struct proto_frame f;
		size_t used = 999;
		int code = 0, rc;
		char err[128] = "";

		rc = proto_parse_frame(bad[i].in, bad[i].len, bad[i].max, &f, &used,
		    &code, err, sizeof(err));
		cr_expect_eq(rc, -1, "%s: rc %d", bad[i].what, rc);
		cr_expect_eq(code, bad[i].code, "%s: code %d, want %d", bad[i].what,
		    code, bad[i].code);
		cr_expect_neq(err[0], '\0', "%s: no message", bad[i].what);
		cr_expect_eq(used, 999, "%s: consumed set", bad[i].what);
	}
}

Test(frame, header_length_limit_is_exactly_64_bytes)
{
	char buf[80];
	struct proto_frame f;
	size_t used;
	int code;
	char err[128];

	/* 63 bytes without LF: could still be a header */
	memset(buf, '7', sizeof(buf));
	memcpy(buf, "PING 1 ", 7);
	cr_expect_eq(proto_parse_frame(buf, 63, 100, &f, &used, &code, err,
	    sizeof(err)), 0);
	cr_expect_eq(proto_parse_frame(buf, 64, 100, &f, &used, &code, err,
	    sizeof(err)), -1);
	cr_expect_eq(code, 400);
	/* a 64-byte header line (LF included) is the longest allowed: its
	 * length field is then far over the limit, so it is 413, not 400 */
	memcpy(buf, "PING 1 ", 7);
	memset(buf + 7, '1', 56);
	buf[63] = '\n';
	cr_expect_eq(proto_parse_frame(buf, 64, 100, &f, &used, &code, err,
	    sizeof(err)), -1);
	cr_expect_eq(code, 400, "56-digit length is a bad number");
	memset(buf, ' ', 63);
	memcpy(buf, "PING 1 0", 8);
	buf[63] = '\n';
	cr_expect_eq(proto_parse_frame(buf, 64, 100, &f, &used, &code, err,
	    sizeof(err)), -1, "spaces after the length");
}

Test(frame, body_of_exactly_max_frame_is_fine)
{
	char buf[200];
	struct proto_frame f;
	size_t used;
	int code;
	char err[128];
	int n = snprintf(buf, sizeof(buf), "FILTER 1 100\n");

	memset(buf + n, 'x', 100);
	cr_expect_eq(proto_parse_frame(buf, (size_t)n + 100, 100, &f, &used,
	    &code, err, sizeof(err)), 1);
	cr_expect_eq(used, (size_t)n + 100);
	/* 413 comes before the body: nothing waits for 101 bytes */
	cr_expect_eq(proto_parse_frame("FILTER 1 101\n", 13, 100, &f, &used,
	    &code, err, sizeof(err)), -1);
	cr_expect_eq(code, 413);
}

Test(frame, write_frame)
{
	struct xm_buf b = { 0 };

	proto_write_frame(&b, PROTO_VERDICT, 7, "abc", 3);
	proto_write_frame(&b, PROTO_BYE, 0, "", 0);
	proto_write_frame(&b, PROTO_FILTER, INT64_MAX, "x\0y", 3);
	cr_expect_eq(b.len, 15 + 8 + 32);
	cr_expect(memcmp(b.data, "VERDICT 7 3\nabcBYE 0 0\n"
	    "FILTER 9223372036854775807 3\nx\0y", b.len) == 0);
	cr_expect_str_eq(proto_verb_name(PROTO_PONG), "PONG");
	cr_expect_str_eq(proto_verb_name((enum proto_verb)99), "?");
	xm_buf_free(&b);
}

/* ---- proto_parse_kv ---- */

Test(kv, good_bodies)
{
	static const struct {
		const char *in;
		size_t len;
		size_t n;
		const char *kv[8];     /* "key", "value", ... */
		const char *rest;      /* NULL: none */
	} t[] = {
		{ S(""), 0, { NULL }, NULL },
		{ S("version=1\n"), 1, { "version", "1" }, NULL },
		{ S("version=1"), 1, { "version", "1" }, NULL },
		{ S("a=1\nb=2\n"), 2, { "a", "1", "b", "2" }, NULL },
		{ S("kind=message\nkind=transfer\n"), 2,
		    { "kind", "message", "kind", "transfer" }, NULL },
		{ S("a=b=c\n"), 1, { "a", "b=c" }, NULL },
		{ S("a=\n"), 1, { "a", "" }, NULL },
		{ S("max-frame=1\nx9-y=\xc3\xa9 sp\t\n"), 2,
		    { "max-frame", "1", "x9-y", "\xc3\xa9 sp\t" }, NULL },
		{ S("action=modify\n\n<message/>"), 1, { "action", "modify" },
		    "<message/>" },
		{ S("action=modify\n\n<m>\n\nJUNK=\r\0</m>\n"), 1,
		    { "action", "modify" }, "<m>\n\nJUNK=\r\0</m>\n" },
		{ S("a=1\n\n"), 1, { "a", "1" }, "" },
		{ S("\nrest"), 0, { NULL }, "rest" },
	};
	size_t i, j;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_field *f = NULL;
		size_t n = 99, restlen = 99;
		const char *rest = "x";
		char err[128] = "";

		cr_assert_eq(proto_parse_kv(a, t[i].in, t[i].len, 16, &f, &n,
		    &rest, &restlen, err, sizeof(err)), 0, "row %zu: %s", i, err);
		cr_expect_eq(n, t[i].n, "row %zu: %zu fields", i, n);
		for (j = 0; j < n && j < t[i].n; j++) {
			cr_expect_str_eq(f[j].key, t[i].kv[2 * j], "row %zu", i);
			cr_expect_str_eq(f[j].value, t[i].kv[2 * j + 1], "row %zu", i);
		}
		if (t[i].rest == NULL) {
			cr_expect_null(rest, "row %zu: rest", i);
			cr_expect_eq(restlen, 0, "row %zu: restlen", i);
		} else {
			size_t want = i == 9 ? 17 : strlen(t[i].rest);

			cr_assert_not_null(rest, "row %zu: no rest", i);
			cr_expect_eq(restlen, want, "row %zu: restlen %zu", i, restlen);
			cr_expect(memcmp(rest, t[i].rest, want) == 0, "row %zu", i);
		}
		xm_arena_free(a);
	}
}

Test(kv, bad_bodies)
{
	static const struct { const char *what, *in; size_t len, max; } t[] = {
		{ "no equals sign", S("version\n"), 16 },
		{ "empty key", S("=1\n"), 16 },
		{ "upper-case key", S("Version=1\n"), 16 },
		{ "underscore in key", S("max_frame=1\n"), 16 },
		{ "space in key", S("a b=1\n"), 16 },
		{ "space before equals", S("a =1\n"), 16 },
		{ "non-ASCII key", S("\xc3\xa9=1\n"), 16 },
		{ "dot in key", S("a.b=1\n"), 16 },
		{ "CR at line end", S("a=1\r\n"), 16 },
		{ "CR in value", S("a=1\r2\n"), 16 },
		{ "NUL in value", S("a=1\0002\n"), 16 },
		{ "NUL in key", S("a\0=1\n"), 16 },
		{ "second line bad", S("a=1\nb\n"), 16 },
		{ "more lines than max", S("a=1\nb=2\nc=3\n"), 2 },
		{ "max zero", S("a=1\n"), 0 },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_field *f;
		size_t n, restlen;
		const char *rest;
		char err[128] = "";

		cr_expect_eq(proto_parse_kv(a, t[i].in, t[i].len, t[i].max, &f, &n,
		    &rest, &restlen, err, sizeof(err)), -1, "%s: accepted", t[i].what);
		cr_expect_neq(err[0], '\0', "%s: no message", t[i].what);
		xm_arena_free(a);
	}
}

Test(kv, exactly_max_lines_and_lines_after_the_empty_one_do_not_count)
{
	struct xm_arena *a = xm_arena_new();
	struct xm_field *f;
	size_t n, restlen;
	const char *rest;
	char err[128];

	cr_expect_eq(proto_parse_kv(a, S("a=1\nb=2\n"), 2, &f, &n, &rest,
	    &restlen, err, sizeof(err)), 0);
	cr_expect_eq(n, 2);
	cr_expect_eq(proto_parse_kv(a, S("a=1\nb=2\n\nc=3\nd=4\ne=5\n"), 2, &f,
	    &n, &rest, &restlen, err, sizeof(err)), 0);
	cr_expect_eq(n, 2);
	cr_expect_eq(restlen, 12);
	xm_arena_free(a);
}

Test(kv, get_and_clean)
{
	struct xm_arena *a = xm_arena_new();
	struct xm_field f[] = { { "a", "1" }, { "b", "2" }, { "a", "3" } };

	cr_expect_str_eq(proto_kv_get(f, 3, "a"), "1");
	cr_expect_str_eq(proto_kv_get(f, 3, "b"), "2");
	cr_expect_null(proto_kv_get(f, 3, "c"));
	cr_expect_null(proto_kv_get(f, 0, "a"));
	cr_expect_null(proto_kv_clean(a, NULL));
	cr_expect_str_eq(proto_kv_clean(a, "plain"), "plain");
	cr_expect_str_eq(proto_kv_clean(a, "a\nb\r\nc"), "a b  c");
	xm_arena_free(a);
}

/* ---- proto_format_verdict ---- */

Test(verdict, format)
{
	static const struct xm_symbol syms[] = {
		{ "RULE_A", 2.5, "matched \"x\"", "rules", 0 },
		{ "RULE_B", 0.333, "", "rules", XM_SYM_SHADOW },
		{ "GUARD_C", -1, "two\nlines\r", "guard", 0 },
		{ "NODETAIL", 1, NULL, "guard", 0 },
	};
	static const struct {
		struct xm_verdict v;
		const char *want;
	} t[] = {
		{ { .action = XM_ACCEPT }, "action=accept\nscore=0.00\n" },
		{ { .action = XM_REJECT, .score = 16.25, .symbols = syms,
		    .nsymbols = 4, .condition = "policy-violation",
		    .text = "Blocked.\nReally.", .reason = "RULE_A",
		    .scope = "global" },
		    "action=reject\nscore=16.25\n"
		    "symbol=RULE_A 2.50 matched \"x\"\n"
		    "shadow=RULE_B 0.33 \n"
		    "symbol=GUARD_C -1.00 two lines \n"
		    "symbol=NODETAIL 1.00 \n"
		    "condition=policy-violation\ntext=Blocked. Really.\n"
		    "reason=RULE_A\nscope=global\n" },
		{ { .action = XM_MODIFY, .score = 6, .reason = "X",
		    .stanza = "<message to='b@x'><body>hi\n\nthere</body></message>" },
		    "action=modify\nscore=6.00\nreason=X\n\n"
		    "<message to='b@x'><body>hi\n\nthere</body></message>" },
		{ { .action = XM_MODIFY, .score = 6 },
		    "action=modify\nscore=6.00\n" },
		{ { .action = XM_QUARANTINE, .score = 10,
		    .stanza = "<ignored/>" },
		    "action=quarantine\nscore=10.00\n" },
		{ { .action = XM_DISCARD, .score = 99.999, .condition = "c" },
		    "action=discard\nscore=100.00\ncondition=c\n" },
		/* negative, below one, many digits */
		{ { .action = XM_ACCEPT, .score = -0.05 },
		    "action=accept\nscore=-0.05\n" },
		{ { .action = XM_ACCEPT, .score = -12.5 },
		    "action=accept\nscore=-12.50\n" },
		{ { .action = XM_ACCEPT, .score = 0.07 },
		    "action=accept\nscore=0.07\n" },
		{ { .action = XM_ACCEPT, .score = 1234567.891 },
		    "action=accept\nscore=1234567.89\n" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_buf b = { 0 };

		proto_format_verdict(&b, a, &t[i].v);
		cr_expect_str_eq(b.data ? b.data : "", t[i].want, "row %zu", i);
		xm_buf_free(&b);
		xm_arena_free(a);
	}
}

Test(verdict, format_parses_back)
{
	static const struct xm_symbol syms[] = {
		{ "A", 1, "detail with = and spaces", "f", 0 },
		{ "B", 2, "x\ny", "f", XM_SYM_SHADOW },
	};
	struct xm_verdict v = { .action = XM_MODIFY, .score = 1, .symbols = syms,
	    .nsymbols = 2, .text = "t\r\n", .reason = "A", .scope = "s",
	    .stanza = "<message><body>a\n\nb</body></message>" };
	struct xm_arena *a = xm_arena_new();
	struct xm_buf b = { 0 };
	struct xm_field *f;
	size_t n, restlen;
	const char *rest;
	char err[128];

	proto_format_verdict(&b, a, &v);
	cr_assert_eq(proto_parse_kv(a, b.data, b.len, 64, &f, &n, &rest, &restlen,
	    err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(proto_kv_get(f, n, "action"), "modify");
	cr_expect_str_eq(proto_kv_get(f, n, "symbol"), "A 1.00 detail with = and "
	    "spaces");
	cr_expect_str_eq(proto_kv_get(f, n, "shadow"), "B 2.00 x y");
	cr_expect_str_eq(proto_kv_get(f, n, "text"), "t  ");
	cr_assert_not_null(rest);
	cr_expect_eq(restlen, strlen(v.stanza));
	cr_expect(memcmp(rest, v.stanza, restlen) == 0);
	xm_buf_free(&b);
	xm_arena_free(a);
}

/* ======================================================================
 * session.c
 * ====================================================================== */

struct rec {
	uint64_t filtered[256];
	size_t nfiltered;
	char last_event[256];
	uint64_t cancelled[64];
	size_t ncancelled;
	int hellos;
	bool last_health;
	bool answer_now;     /* answer each FILTER from inside the callback */
};

static void
rec_filter(void *ctx, struct session *s, uint64_t id, const char *event,
    size_t len)
{
	struct rec *r = ctx;

	if (r->nfiltered < XM_ARRAY_LEN(r->filtered))
		r->filtered[r->nfiltered++] = id;
	snprintf(r->last_event, sizeof(r->last_event), "%.*s", (int)len, event);
	if (r->answer_now)
		cr_expect(session_verdict(s, id, "action=accept\n", 14));
}

static void
rec_cancel(void *ctx, struct session *s, uint64_t id)
{
	struct rec *r = ctx;

	if (r->ncancelled < XM_ARRAY_LEN(r->cancelled))
		r->cancelled[r->ncancelled++] = id;
}

static void
rec_hello(void *ctx, struct session *s, struct xm_buf *reply, bool health)
{
	struct rec *r = ctx;

	r->hellos++;
	r->last_health = health;
	xm_buf_puts(reply, "kind=message\nstatus=ok\n");
}

static const struct session_ops rec_ops = { rec_filter, rec_cancel, rec_hello };

struct sess {
	struct session *s;
	struct rec r;
	struct xm_buf seen;  /* all output so far */
};

/* sess_new - a session with daemon limits MAX_FRAME and MAX_INFLIGHT */
static struct sess *
sess_new(size_t max_frame, unsigned max_inflight)
{
	struct sess *t = xm_calloc(1, sizeof(*t));
	struct session_limits lim = { max_frame, max_inflight, 1 << 20 };

	t->s = session_new(&rec_ops, &t->r, &lim);
	return t;
}

static void
sess_free(struct sess *t)
{
	session_free(t->s);
	xm_buf_free(&t->seen);
	free(t);
}

/* out - what the session queued since the last call (static copy) */
static const char *
out(struct sess *t)
{
	static char buf[8192];
	struct xm_buf *o = session_output(t->s);

	snprintf(buf, sizeof(buf), "%.*s", (int)o->len, o->data ? o->data : "");
	xm_buf_append(&t->seen, o->data ? o->data : "", o->len);
	xm_buf_consume(o, o->len);
	return buf;
}

/* F - the frame VERB ID with BODY (a ring of static buffers) */
static const char *
F(const char *verb, unsigned long long id, const char *body)
{
	static char ring[16][2048];
	static unsigned next;
	char *b = ring[next++ % 16];

	snprintf(b, sizeof(ring[0]), "%s %llu %zu\n%s", verb, id, strlen(body),
	    body);
	return b;
}

/* F2 - two strings one after the other (static ring too) */
static const char *
F2(const char *a, const char *b)
{
	static char ring[8][4096];
	static unsigned next;
	char *r = ring[next++ % 8];

	snprintf(r, sizeof(ring[0]), "%s%s", a, b);
	return r;
}

/* feed - give the session a string */
static int
feed(struct sess *t, const char *s)
{
	return session_feed(t->s, s, strlen(s));
}

#define HELLO_V1 "HELLO 0 10\nversion=1\n"
#define HELLO_REPLY_BODY(mf, mi) "version=1\nmax-frame=" #mf \
	"\nmax-inflight=" #mi "\nkind=message\nstatus=ok\n"
#define HELLO_REPLY(mf, mi) F("HELLO", 0, HELLO_REPLY_BODY(mf, mi))

/* hello - a session past a plain HELLO */
static struct sess *
hello(size_t max_frame, unsigned max_inflight)
{
	struct sess *t = sess_new(max_frame, max_inflight);

	cr_assert_eq(feed(t, HELLO_V1), 0);
	out(t);
	return t;
}

/* bye - the BYE frame the session sends for CODE and REASON */
static const char *
bye(int code, const char *reason)
{
	static char buf[512];
	char body[400];
	int n = snprintf(body, sizeof(body), "code=%d\nreason=%s\n", code, reason);

	snprintf(buf, sizeof(buf), "BYE 0 %d\n%s", n, body);
	return buf;
}

Test(session, hello_must_come_first)
{
	static const char *const first[] = {
		"PING 1 0\n", "FILTER 1 0\n", "CANCEL 1 0\n", "PONG 1 0\n",
		"VERDICT 1 0\n",
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(first); i++) {
		struct sess *t = sess_new(65536, 8);

		cr_expect_eq(feed(t, first[i]), -1, "%s", first[i]);
		cr_expect_str_eq(out(t), bye(400, "HELLO must come first"), "%s",
		    first[i]);
		cr_expect(session_closing(t->s));
		cr_expect_eq(session_bye_code(t->s), 400);
		cr_expect_eq(t->r.nfiltered, 0);
		cr_expect_eq(t->r.hellos, 0);
		sess_free(t);
	}
}

Test(session, hello_reply_and_server)
{
	struct sess *t = sess_new(65536, 8);
	char reply[256];

	cr_expect_eq(feed(t, F("HELLO", 0, "version=1\nserver=prosody/0.12.3\n"
	    "capability=x\n")), 0);
	snprintf(reply, sizeof(reply), "%s", out(t));
	cr_expect_str_eq(reply, HELLO_REPLY(65536, 8));
	cr_expect_str_eq(session_server(t->s), "prosody/0.12.3");
	cr_expect_eq(t->r.hellos, 1);
	cr_expect_not(t->r.last_health);
	cr_expect_not(session_closing(t->s));
	cr_expect_eq(session_bye_code(t->s), 0);
	sess_free(t);
}

Test(session, hello_negotiates_the_smaller_limits)
{
	static const struct {
		const char *body;
		const char *want;
	} t[] = {
		{ "version=1\nmax-frame=1000\nmax-inflight=100\n",
		    "max-frame=1000\nmax-inflight=8\n" },
		{ "version=1\nmax-frame=1000000000\nmax-inflight=2\n",
		    "max-frame=65536\nmax-inflight=2\n" },
		{ "version=1\nmax-frame=65536\nmax-inflight=8\n",
		    "max-frame=65536\nmax-inflight=8\n" },
		{ "version=1\nmax-frame=junk\nmax-inflight=-3\n",
		    "max-frame=65536\nmax-inflight=8\n" },
		{ "version=1\nmax-frame=0\nmax-inflight=0\n",
		    "max-frame=65536\nmax-inflight=8\n" },
		{ "version=1\n", "max-frame=65536\nmax-inflight=8\n" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct sess *s = sess_new(65536, 8);
		char in[256];

		snprintf(in, sizeof(in), "HELLO 0 %zu\n%s", strlen(t[i].body),
		    t[i].body);
		cr_expect_eq(feed(s, in), 0);
		cr_expect_not_null(strstr(out(s), t[i].want), "row %zu", i);
		sess_free(s);
	}
}

Test(session, negotiated_max_frame_is_enforced)
{
	struct sess *t = sess_new(65536, 8);
	char big[200];

	feed(t, F("HELLO", 0, "version=1\nmax-frame=100\n"));
	out(t);
	memset(big, 'x', sizeof(big));
	cr_expect_eq(feed(t, "FILTER 1 100\n"), 0);
	cr_expect_eq(session_feed(t->s, big, 100), 0);
	cr_expect_eq(t->r.nfiltered, 1);
	cr_expect_eq(feed(t, "FILTER 2 101\n"), -1);
	cr_expect_str_eq(out(t), bye(413, "frame body of 101 bytes exceeds 100"));
	sess_free(t);
}

Test(session, version_negotiation)
{
	static const struct { const char *body; int code; } t[] = {
		{ "version=1\n", 0 },
		{ "version=2\nversion=1\n", 0 },
		{ "version=1\nversion=2\n", 0 },
		{ "version=2\n", 505 },
		{ "version=0\n", 505 },
		{ "version=01\n", 505 },
		{ "version=1.0\n", 505 },
		{ "server=x\n", 505 },
		{ "", 505 },
		{ "version 1\n", 400 },
		{ "VERSION=1\n", 400 },
		{ "version=1\r\n", 400 },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct sess *s = sess_new(65536, 8);
		char in[128];
		const char *o;

		snprintf(in, sizeof(in), "HELLO 0 %zu\n%s", strlen(t[i].body),
		    t[i].body);
		cr_expect_eq(feed(s, in), t[i].code ? -1 : 0, "row %zu", i);
		o = out(s);
		if (t[i].code == 0) {
			cr_expect(strncmp(o, "HELLO 0 ", 8) == 0, "row %zu: %s", i, o);
		} else {
			char want[16];

			snprintf(want, sizeof(want), "code=%d\n", t[i].code);
			cr_expect(strncmp(o, "BYE 0 ", 6) == 0 && strstr(o, want),
			    "row %zu: %s", i, o);
			cr_expect_eq(s->r.hellos, 0, "row %zu: hello op called", i);
			cr_expect_eq(session_bye_code(s->s), t[i].code);
		}
		sess_free(s);
	}
	{
		struct sess *s = sess_new(65536, 8);

		feed(s, "HELLO 0 10\nversion=2\n");
		cr_expect_str_eq(out(s), bye(505,
		    "no common version (daemon speaks 1)"));
		sess_free(s);
	}
}

Test(session, healthcheck_answers_and_closes)
{
	struct sess *t = sess_new(65536, 8);

	cr_expect_eq(feed(t, F2(F("HELLO", 0, "version=1\nserver=probe\n"
	    "healthcheck=1\n"), "FILTER 1 0\n")), -1);
	cr_expect_str_eq(out(t), F2(HELLO_REPLY(65536, 8),
	    bye(200, "health check done")));
	cr_expect(t->r.last_health);
	cr_expect_eq(t->r.nfiltered, 0, "nothing is read after the probe");
	cr_expect_eq(session_bye_code(t->s), 200);
	sess_free(t);

	/* healthcheck=0 is an ordinary HELLO */
	t = sess_new(65536, 8);
	cr_expect_eq(feed(t, F("HELLO", 0, "version=1\nhealthcheck=0\n")), 0);
	cr_expect_str_eq(out(t), HELLO_REPLY(65536, 8));
	cr_expect_not(t->r.last_health);
	sess_free(t);
}

Test(session, hello_twice)
{
	struct sess *t = hello(65536, 8);

	cr_expect_eq(feed(t, HELLO_V1), -1);
	cr_expect_str_eq(out(t), bye(400, "HELLO twice"));
	sess_free(t);
}

/* PROTOCOL.md: "The client's first frame must be `HELLO 0 n`" */
Test(session, hello_id_must_be_zero)
{
	struct sess *t = sess_new(65536, 8);

	cr_expect_eq(feed(t, "HELLO 5 10\nversion=1\n"), -1,
	    "HELLO with id 5 accepted");
	cr_expect_eq(session_bye_code(t->s), 400);
	sess_free(t);
}

Test(session, filter_reaches_the_owner_and_verdict_goes_out)
{
	struct sess *t = hello(65536, 8);

	cr_expect_eq(feed(t, F("FILTER", 1, "origin=c2s\n\n<a/>")), 0);
	cr_expect_eq(t->r.nfiltered, 1);
	cr_expect_eq(t->r.filtered[0], 1);
	cr_expect_str_eq(t->r.last_event, "origin=c2s\n\n<a/>");
	cr_expect_eq(session_inflight(t->s), 1);
	cr_expect_str_eq(out(t), "");
	cr_expect(session_verdict(t->s, 1, "action=accept\n", 14));
	cr_expect_str_eq(out(t), "VERDICT 1 14\naction=accept\n");
	cr_expect_eq(session_inflight(t->s), 0);
	/* a second verdict for the same id is dropped */
	cr_expect_not(session_verdict(t->s, 1, "action=accept\n", 14));
	cr_expect_str_eq(out(t), "");
	sess_free(t);
}

Test(session, verdicts_in_any_order)
{
	struct sess *t = hello(65536, 8);

	feed(t, "FILTER 3 0\nFILTER 7 0\nFILTER 8 0\n");
	cr_expect_eq(session_inflight(t->s), 3);
	cr_expect(session_verdict(t->s, 8, "a=8\n", 4));
	cr_expect(session_verdict(t->s, 3, "a=3\n", 4));
	cr_expect(session_verdict(t->s, 7, "a=7\n", 4));
	cr_expect_str_eq(out(t), "VERDICT 8 4\na=8\nVERDICT 3 4\na=3\n"
	    "VERDICT 7 4\na=7\n");
	sess_free(t);
}

Test(session, verdict_from_inside_the_filter_callback)
{
	struct sess *t = hello(65536, 2);

	t->r.answer_now = true;
	cr_expect_eq(feed(t, "FILTER 1 0\nFILTER 2 0\nFILTER 3 0\nFILTER 4 0\n"),
	    0);
	cr_expect_eq(t->r.nfiltered, 4);
	cr_expect_str_eq(out(t), "VERDICT 1 14\naction=accept\n"
	    "VERDICT 2 14\naction=accept\nVERDICT 3 14\naction=accept\n"
	    "VERDICT 4 14\naction=accept\n");
	sess_free(t);
}

Test(session, ids_must_rise)
{
	static const struct { const char *in; const char *reason; } t[] = {
		{ "FILTER 5 0\nFILTER 5 0\n", "FILTER id 5 does not rise" },
		{ "FILTER 5 0\nFILTER 4 0\n", "FILTER id 4 does not rise" },
		{ "FILTER 0 0\n", "FILTER id 0 does not rise" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct sess *s = hello(65536, 8);

		cr_expect_eq(feed(s, t[i].in), -1, "row %zu", i);
		cr_expect_str_eq(out(s), bye(400, t[i].reason), "row %zu", i);
		sess_free(s);
	}
	/* gaps are fine, and a verdict does not let an id go back */
	{
		struct sess *s = hello(65536, 8);

		cr_expect_eq(feed(s, "FILTER 1 0\nFILTER 100 0\n"
		    "FILTER 9223372036854775807 0\n"), 0);
		cr_expect_eq(s->r.nfiltered, 3);
		session_verdict(s->s, 1, "", 0);
		cr_expect_eq(feed(s, "FILTER 2 0\n"), -1);
		sess_free(s);
	}
}

Test(session, too_many_in_flight)
{
	struct sess *t = hello(65536, 2);

	cr_expect_eq(feed(t, "FILTER 1 0\nFILTER 2 0\n"), 0);
	cr_expect_eq(feed(t, "FILTER 3 0\n"), -1);
	cr_expect_str_eq(out(t), bye(429, "more than 2 requests in flight"));
	cr_expect_eq(t->r.nfiltered, 2);
	sess_free(t);

	/* a verdict frees a place; so does a CANCEL */
	t = hello(65536, 2);
	feed(t, "FILTER 1 0\nFILTER 2 0\n");
	session_verdict(t->s, 1, "", 0);
	cr_expect_eq(feed(t, "FILTER 3 0\n"), 0);
	cr_expect_eq(feed(t, "CANCEL 2 0\nFILTER 4 0\n"), 0);
	cr_expect_eq(session_inflight(t->s), 2);
	sess_free(t);

	/* the negotiated limit counts, not the daemon's */
	t = sess_new(65536, 8);
	feed(t, F("HELLO", 0, "version=1\nmax-inflight=1\n"));
	out(t);
	cr_expect_eq(feed(t, "FILTER 1 0\nFILTER 2 0\n"), -1);
	cr_expect_str_eq(out(t), bye(429, "more than 1 requests in flight"));
	sess_free(t);
}

/* requests answered one at a time, and in small overlapping groups, for
 * long: the in-flight set's tombstones are cleared now and then, never
 * losing or inventing an id */
Test(session, long_run_of_requests_keeps_the_set_right)
{
	struct sess *t = hello(65536, 8);
	unsigned long long id = 0;
	char fr[64];
	int i;

	for (i = 0; i < 3000; i++) {
		unsigned long long a = ++id, b, c;

		snprintf(fr, sizeof(fr), "FILTER %llu 0\n", a);
		cr_assert_eq(feed(t, fr), 0);
		if (i % 3 == 0) {
			cr_assert(session_verdict(t->s, a, "", 0), "id %llu", a);
			cr_assert_not(session_verdict(t->s, a, "", 0));
		} else {
			b = ++id;
			c = ++id;
			snprintf(fr, sizeof(fr), "FILTER %llu 0\nFILTER %llu 0\n", b,
			    c);
			cr_assert_eq(feed(t, fr), 0);
			cr_assert_eq(session_inflight(t->s), 3);
			cr_assert(session_verdict(t->s, c, "", 0), "id %llu", c);
			snprintf(fr, sizeof(fr), "CANCEL %llu 0\n", b);
			cr_assert_eq(feed(t, fr), 0);
			cr_assert_not(session_verdict(t->s, b, "", 0));
			cr_assert(session_verdict(t->s, a, "", 0), "id %llu", a);
			cr_assert_not(session_verdict(t->s, c, "", 0));
		}
		cr_assert_eq(session_inflight(t->s), 0);
		out(t);
	}
	sess_free(t);
}

Test(session, cancel_then_late_verdict_is_dropped)
{
	struct sess *t = hello(65536, 8);

	feed(t, "FILTER 1 0\nFILTER 2 0\n");
	cr_expect_eq(feed(t, "CANCEL 1 0\n"), 0);
	cr_expect_eq(t->r.ncancelled, 1);
	cr_expect_eq(t->r.cancelled[0], 1);
	cr_expect_eq(session_inflight(t->s), 1);
	cr_expect_not(session_verdict(t->s, 1, "action=accept\n", 14));
	cr_expect(session_verdict(t->s, 2, "action=accept\n", 14));
	cr_expect_str_eq(out(t), "VERDICT 2 14\naction=accept\n");
	/* a CANCEL for what is answered, or never was, is nothing */
	cr_expect_eq(feed(t, "CANCEL 2 0\nCANCEL 77 0\n"), 0);
	cr_expect_eq(t->r.ncancelled, 1);
	cr_expect_str_eq(out(t), "");
	cr_expect_not(session_closing(t->s));
	sess_free(t);
}

/* Id 0 is the "empty slot" marker of the in-flight set, so set_find(0)
 * "finds" an empty slot: a CANCEL for id 0 (or a verdict for it) must
 * change nothing. */
Test(session, id_zero_is_never_in_flight)
{
	struct sess *t = hello(65536, 2);

	cr_expect_eq(feed(t, "CANCEL 0 0\n"), 0);
	cr_expect_eq(t->r.ncancelled, 0, "cancel op called for id 0");
	cr_expect_eq(session_inflight(t->s), 0, "in-flight count now %u",
	    session_inflight(t->s));
	cr_expect_eq(feed(t, "FILTER 1 0\n"), 0, "FILTER refused after CANCEL 0: "
	    "%s", out(t));
	cr_expect_eq(t->r.nfiltered, 1);
	sess_free(t);

	/* with a request in flight, the count must stay right too */
	t = hello(65536, 2);
	feed(t, "FILTER 1 0\n");
	feed(t, "CANCEL 0 0\n");
	cr_expect_eq(session_inflight(t->s), 1, "in-flight count now %u",
	    session_inflight(t->s));
	cr_expect(session_verdict(t->s, 1, "", 0));
	sess_free(t);

	/* nor may a verdict for id 0 go out */
	t = hello(65536, 2);
	cr_expect_not(session_verdict(t->s, 0, "action=accept\n", 14));
	cr_expect_str_eq(out(t), "");
	cr_expect_eq(session_inflight(t->s), 0, "in-flight count now %u",
	    session_inflight(t->s));
	sess_free(t);
}

Test(session, verdict_for_unknown_id_is_dropped)
{
	struct sess *t = hello(65536, 8);

	cr_expect_not(session_verdict(t->s, 99, "action=accept\n", 14));
	cr_expect_eq(session_inflight(t->s), 0);
	cr_expect_str_eq(out(t), "");
	sess_free(t);
}

Test(session, ping_pong)
{
	struct sess *t = hello(65536, 8);

	cr_expect_eq(feed(t, "PING 9 6\nx=1\nyzPING 10 0\n"), 0);
	cr_expect_str_eq(out(t), "PONG 9 6\nx=1\nyzPONG 10 0\n");
	/* the client's PONG to a PING of ours is taken silently */
	cr_expect_eq(feed(t, "PONG 1 0\n"), 0);
	cr_expect_str_eq(out(t), "");
	/* PING ids are not request ids: they need not rise */
	cr_expect_eq(feed(t, "FILTER 5 0\nPING 1 0\n"), 0);
	cr_expect_str_eq(out(t), "PONG 1 0\n");
	sess_free(t);
}

Test(session, client_bye)
{
	struct sess *t = hello(65536, 8);

	feed(t, "FILTER 1 0\n");
	cr_expect_eq(feed(t, F2(F("BYE", 0, "code=200\nreason=shutdown\n"),
	    "FILTER 2 0\n")), -1);
	cr_expect(session_closing(t->s));
	cr_expect_eq(session_bye_code(t->s), 0, "no BYE is sent back");
	cr_expect_str_eq(out(t), "");
	cr_expect_eq(t->r.nfiltered, 1, "nothing read after BYE");
	/* nothing more is read, and verdicts are not sent */
	cr_expect_eq(feed(t, "FILTER 3 0\n"), -1);
	cr_expect_not(session_verdict(t->s, 1, "", 0));
	cr_expect_str_eq(out(t), "");
	sess_free(t);
}

Test(session, daemon_only_verbs_from_the_client)
{
	static const struct { const char *in, *reason; } t[] = {
		{ "FILTER 1 0\nVERDICT 1 14\naction=accept\n",
		    "VERDICT is not sent by clients" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct sess *s = hello(65536, 8);

		cr_expect_eq(feed(s, t[i].in), -1);
		cr_expect_str_eq(out(s), bye(400, t[i].reason));
		cr_expect_not(session_verdict(s->s, 1, "", 0),
		    "a verdict after BYE must not be sent");
		cr_expect_str_eq(out(s), "");
		sess_free(s);
	}
}

Test(session, malformed_frames_end_the_session)
{
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(bad); i++) {
		struct sess *t = hello(100, 8);
		char want[32];
		const char *o;

		cr_expect_eq(session_feed(t->s, bad[i].in, bad[i].len), -1, "%s",
		    bad[i].what);
		o = out(t);
		snprintf(want, sizeof(want), "code=%d\n", bad[i].code);
		cr_expect(strncmp(o, "BYE 0 ", 6) == 0 && strstr(o, want) != NULL,
		    "%s: %s", bad[i].what, o);
		cr_expect(session_closing(t->s));
		sess_free(t);
	}
}

Test(session, byte_by_byte_equals_all_at_once)
{
	static const char in[] = HELLO_V1 "PING 1 2\nabFILTER 1 5\nhelloFILTER 2 0"
	    "\nCANCEL 2 0\nFILTER 3 3\nxyzPING 2 0\nVERDICT 9 0\n";
	struct sess *a = sess_new(65536, 8), *b = sess_new(65536, 8);
	size_t i;
	int rc = 0;

	cr_expect_eq(session_feed(a->s, in, sizeof(in) - 1), -1);
	for (i = 0; i < sizeof(in) - 1 && rc == 0; i++)
		rc = session_feed(b->s, in + i, 1);
	cr_expect_eq(rc, -1);
	cr_expect_eq(i, sizeof(in) - 1, "closed early at byte %zu", i);
	out(a);
	out(b);
	cr_expect_eq(a->seen.len, b->seen.len);
	cr_expect(memcmp(a->seen.data, b->seen.data, a->seen.len) == 0,
	    "\n%s\n---\n%s", a->seen.data, b->seen.data);
	cr_expect_eq(a->r.nfiltered, 3);
	cr_expect_eq(b->r.nfiltered, 3);
	cr_expect_eq(b->r.ncancelled, 1);
	sess_free(a);
	sess_free(b);
}

Test(session, long_run_with_tombstones)
{
	/* keep the set busy for many ids, answering out of order, so that
	 * tombstones pile up; every verdict must still find its id */
	struct sess *t = hello(65536, 4);
	uint64_t id = 0, live[4];
	size_t nlive = 0, k;
	char hdr[64];

	for (k = 0; k < 20000; k++) {
		if (nlive < 4) {
			snprintf(hdr, sizeof(hdr), "FILTER %llu 0\n",
			    (unsigned long long)++id);
			cr_assert_eq(feed(t, hdr), 0, "at id %llu: %s",
			    (unsigned long long)id, out(t));
			live[nlive++] = id;
		} else {
			size_t j = (k * 7) % nlive;

			cr_assert(session_verdict(t->s, live[j], "", 0),
			    "verdict for %llu not found", (unsigned long long)live[j]);
			live[j] = live[--nlive];
		}
		cr_assert_eq(session_inflight(t->s), nlive);
		xm_buf_reset(session_output(t->s));
	}
	sess_free(t);
}

Test(session, long_server_name_is_cut)
{
	struct sess *t = sess_new(65536, 8);
	char in[512], name[300];
	int n;

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	n = snprintf(in, sizeof(in), "version=1\nserver=%s\n", name);
	{
		char frame[600];

		snprintf(frame, sizeof(frame), "HELLO 0 %d\n%s", n, in);
		cr_expect_eq(feed(t, frame), 0);
	}
	cr_expect_eq(strlen(session_server(t->s)), 127);
	sess_free(t);
}

Test(session, bye_from_the_daemon_side)
{
	struct sess *t = hello(65536, 8);

	feed(t, "FILTER 1 0\n");
	session_bye(t->s, 503, "shutting down");
	cr_expect_str_eq(out(t), bye(503, "shutting down"));
	session_bye(t->s, 500, "again");  /* only one BYE */
	cr_expect_str_eq(out(t), "");
	cr_expect_eq(session_bye_code(t->s), 503);
	cr_expect_eq(feed(t, "PING 1 0\n"), -1);
	cr_expect_str_eq(out(t), "");
	sess_free(t);
}
