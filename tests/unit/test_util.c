/*
 * test_util.c - unit tests of plugin/util.c
 *
 * Arenas (many small allocations, big ones, alignment, grow), the heap
 * buffer, XML escaping, number parsing (bounds and junk), RFC 3339 times
 * (Z, offsets, fractions, invalid dates), UTF-8 validation (overlongs,
 * surrogates, truncated sequences) and log_escape. Table-driven: every row
 * names itself in the failure message.
 */
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "util.h"

/* ---- arenas ---- */

Test(arena, many_small_allocations_are_distinct_zeroed_and_aligned)
{
	struct xm_arena *a = xm_arena_new();
	unsigned char *p[5000];
	size_t i, j;

	for (i = 0; i < XM_ARRAY_LEN(p); i++) {
		size_t n = 1 + i % 97;

		p[i] = xm_arena_alloc(a, n);
		cr_assert_not_null(p[i]);
		cr_assert_eq((uintptr_t)p[i] % _Alignof(max_align_t), 0,
		    "allocation %zu not aligned", i);
		for (j = 0; j < n; j++)
			cr_assert_eq(p[i][j], 0, "allocation %zu not zeroed", i);
		memset(p[i], (int)(i & 0xff), n);
	}
	/* nothing overlapped: every block still holds its own byte */
	for (i = 0; i < XM_ARRAY_LEN(p); i++)
		for (j = 0; j < 1 + i % 97; j++)
			cr_assert_eq(p[i][j], (unsigned char)(i & 0xff),
			    "allocation %zu was overwritten", i);
	cr_expect_geq(xm_arena_used(a), 5000 * 16);
	xm_arena_free(a);
}

Test(arena, big_allocations_get_their_own_block)
{
	struct xm_arena *a = xm_arena_new();
	static const size_t sizes[] = { 4097, 8192, 100000, 1 << 20, 3, 5000,
	    (1 << 22) + 7, 0, 1 };
	char *p[XM_ARRAY_LEN(sizes)], *small1, *small2;
	size_t i, used;

	small1 = xm_arena_alloc(a, 16);
	for (i = 0; i < XM_ARRAY_LEN(sizes); i++) {
		p[i] = xm_arena_alloc(a, sizes[i]);
		cr_assert_not_null(p[i]);
		memset(p[i], 'a' + (int)i, sizes[i]);
	}
	/* the small block keeps filling after the big ones */
	small2 = xm_arena_alloc(a, 16);
	cr_expect(small2 > small1 && small2 - small1 < 8192,
	    "small allocations after big ones should share the first block");
	for (i = 0; i < XM_ARRAY_LEN(sizes); i++)
		if (sizes[i] > 0)
			cr_expect(p[i][0] == 'a' + (int)i &&
			    p[i][sizes[i] - 1] == 'a' + (int)i, "block %zu", i);
	used = xm_arena_used(a);
	cr_expect_geq(used, (1 << 20) + (1 << 22) + 100000);
	xm_arena_free(a);
	xm_arena_free(NULL);  /* allowed */
}

Test(arena, strings_and_printf)
{
	struct xm_arena *a = xm_arena_new();
	char big[20000];

	cr_expect_null(xm_arena_strdup(a, NULL));
	cr_expect_str_eq(xm_arena_strdup(a, ""), "");
	cr_expect_str_eq(xm_arena_strdup(a, "hello"), "hello");
	cr_expect_str_eq(xm_arena_strndup(a, "hello world", 5), "hello");
	cr_expect_str_eq(xm_arena_printf(a, "%s=%d", "x", 42), "x=42");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_expect_eq(strlen(xm_arena_printf(a, "<%s>", big)), sizeof(big) + 1);
	xm_arena_free(a);
}

/* blocks kept from freed arenas come back zeroed for xm_arena_alloc and
 * hold strings exactly */
Test(arena, reused_blocks_are_zeroed)
{
	struct xm_arena *a[6];
	size_t i, j, k;

	for (k = 0; k < 3; k++) {
		for (i = 0; i < 6; i++) {
			a[i] = xm_arena_new();
			for (j = 0; j < 5; j++) {
				unsigned char *p = xm_arena_alloc(a[i], 3000);
				size_t z;

				for (z = 0; z < 3000; z++)
					cr_assert_eq(p[z], 0, "round %zu arena %zu "
					    "byte %zu", k, i, z);
				memset(p, 0xa5, 3000);
				cr_assert_str_eq(xm_arena_strndup(a[i], "abcdef", 3),
				    "abc");
			}
		}
		for (i = 0; i < 6; i++)
			xm_arena_free(a[i]);
	}
}

Test(arena, grow_keeps_contents)
{
	struct xm_arena *a = xm_arena_new();
	long *v = NULL;
	size_t cap = 0, n, i;

	for (n = 0; n < 100000; n++) {
		v = xm_arena_grow(a, v, &cap, n, 1, sizeof(*v));
		cr_assert_geq(cap, n + 1);
		v[n] = (long)n * 3;
	}
	for (i = 0; i < n; i++)
		cr_assert_eq(v[i], (long)i * 3, "element %zu lost in a grow", i);
	/* asking for several at once */
	v = NULL;
	cap = 0;
	v = xm_arena_grow(a, v, &cap, 0, 1000, sizeof(*v));
	cr_expect_geq(cap, 1000);
	/* no grow when there is room */
	{
		long *w = xm_arena_grow(a, v, &cap, 10, 5, sizeof(*v));

		cr_expect_eq(w, v);
	}
	xm_arena_free(a);
}

Test(arena, array_is_zeroed)
{
	struct xm_arena *a = xm_arena_new();
	int *v = xm_arena_array(a, 1000, sizeof(int));
	size_t i;

	for (i = 0; i < 1000; i++)
		cr_assert_eq(v[i], 0);
	xm_arena_free(a);
}

Test(arena, array_overflow_panics, .signal = SIGABRT)
{
	struct xm_arena *a = xm_arena_new();

	xm_arena_array(a, SIZE_MAX / 2, 4);
}

/* ---- buffers ---- */

Test(buf, append_printf_consume_reset)
{
	struct xm_buf b = { 0 };
	size_t i;

	xm_buf_append(&b, "", 0);
	cr_expect_eq(b.len, 0);
	cr_expect_not_null(b.data);
	cr_expect_str_eq(b.data, "");
	xm_buf_puts(&b, "abc");
	xm_buf_printf(&b, "-%d-", 7);
	xm_buf_append(&b, "xyz\0q", 5);
	cr_expect_eq(b.len, 11);
	cr_expect(memcmp(b.data, "abc-7-xyz\0q", 12) == 0);
	cr_expect_eq(b.data[b.len], '\0');
	xm_buf_consume(&b, 4);
	cr_expect(memcmp(b.data, "7-xyz\0q", 8) == 0);
	cr_expect_eq(b.len, 7);
	xm_buf_consume(&b, 100);
	cr_expect_eq(b.len, 0);
	cr_expect_str_eq(b.data, "");
	for (i = 0; i < 10000; i++)
		xm_buf_printf(&b, "%05zu", i);
	cr_expect_eq(b.len, 50000);
	cr_expect(memcmp(b.data + 49995, "09999", 5) == 0);
	cr_expect_eq(b.data[b.len], '\0');
	xm_buf_reset(&b);
	cr_expect_eq(b.len, 0);
	cr_expect_str_eq(b.data, "");
	xm_buf_free(&b);
	cr_expect_null(b.data);
	cr_expect_eq(b.cap, 0);
	/* consume and reset on a never-used buffer */
	xm_buf_consume(&b, 3);
	xm_buf_reset(&b);
	xm_buf_free(&b);
}

Test(buf, xml_escape)
{
	static const struct { const char *in; size_t n; const char *out; } t[] = {
		{ "", 0, "" },
		{ "plain text", 10, "plain text" },
		{ "a<b>c", 5, "a&lt;b&gt;c" },
		{ "&amp;", 5, "&amp;amp;" },
		{ "'\"", 2, "&apos;&quot;" },
		{ "cr\rlf\n", 6, "cr&#13;lf\n" },
		{ "<<<", 3, "&lt;&lt;&lt;" },
		{ "stop<here", 4, "stop" },
		{ "\xc3\xa9t\xc3\xa9 & co", 11, "\xc3\xa9t\xc3\xa9 &amp; co" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_buf b = { 0 };

		xm_buf_xml_escape(&b, t[i].in, t[i].n);
		cr_expect_str_eq(b.data ? b.data : "", t[i].out, "row %zu (%s)", i,
		    t[i].in);
		xm_buf_free(&b);
	}
}

/* ref_escape - the escaping of S[0..n) one byte at a time (the reference
 * the 16-bytes-at-a-time scan must agree with) */
static void
ref_escape(struct xm_buf *b, const char *s, size_t n, bool attr)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const char *r = NULL;

		switch (s[i]) {
		case '&': r = "&amp;"; break;
		case '<': r = "&lt;"; break;
		case '>': r = "&gt;"; break;
		case '"': r = "&quot;"; break;
		case '\'': r = "&apos;"; break;
		case '\r': r = "&#13;"; break;
		case '\n': r = attr ? "&#10;" : NULL; break;
		case '\t': r = attr ? "&#9;" : NULL; break;
		}
		if (r)
			xm_buf_puts(b, r);
		else
			xm_buf_append(b, s + i, 1);
	}
}

/* every special byte at every place of texts of 0 to 40 bytes (the
 * 16-byte blocks' edges), alone and in pairs, in text and attributes */
Test(buf, xml_escape_every_position)
{
	static const char specials[] = "&<>\"'\r\n\t";
	char s[48];
	size_t len, i, j, k;
	int attr;

	for (attr = 0; attr < 2; attr++)
		for (len = 0; len <= 40; len++)
			for (k = 0; k < sizeof(specials) - 1; k++)
				for (i = 0; i <= len; i++)
					for (j = i; j <= len; j += 7) {
						struct xm_buf got = { 0 }, want = { 0 };

						memset(s, 'x', len);
						if (i < len)
							s[i] = specials[k];
						if (j < len && j != i)
							s[j] = specials[(k + 3) % 8];
						if (attr)
							xm_buf_xml_escape_attr(&got, s, len);
						else
							xm_buf_xml_escape(&got, s, len);
						ref_escape(&want, s, len, attr);
						cr_assert_eq(got.len, want.len, "len %zu at %zu,%zu "
						    "attr %d", len, i, j, attr);
						if (want.len)
							cr_assert(memcmp(got.data, want.data,
							    want.len) == 0, "len %zu at %zu,%zu", len,
							    i, j);
						xm_buf_free(&got);
						xm_buf_free(&want);
					}
}

/* the stack buffer's edge: outputs of 254 to 258 bytes */
Test(arena, printf_around_its_buffer)
{
	struct xm_arena *a = xm_arena_new();
	char s[300];
	size_t n;

	for (n = 250; n <= 260; n++) {
		memset(s, 'y', n);
		s[n] = '\0';
		cr_expect_eq(strlen(xm_arena_printf(a, "%s!", s)), n + 1);
		cr_expect_eq(xm_arena_printf(a, "%s!", s)[n], '!');
	}
	cr_expect_str_eq(xm_arena_strjoin(a, "warning", "\n", "body"),
	    "warning\nbody");
	cr_expect_str_eq(xm_arena_strjoin(a, "", "", ""), "");
	xm_arena_free(a);
}

/* ---- numbers ---- */

Test(numbers, parse_ll)
{
	static const struct {
		const char *s;
		long long min, max;
		int rc;
		long long v;
	} t[] = {
		{ "0", 0, 10, 0, 0 },
		{ "10", 0, 10, 0, 10 },
		{ "11", 0, 10, -1, 0 },
		{ "-1", 0, 10, -1, 0 },
		{ "-1", -1, 10, 0, -1 },
		{ "-5", -10, -1, 0, -5 },
		{ "007", 0, 10, 0, 7 },
		{ "9223372036854775807", 0, LLONG_MAX, 0, LLONG_MAX },
		{ "9223372036854775808", 0, LLONG_MAX, -1, 0 },
		{ "-9223372036854775808", LLONG_MIN, 0, 0, LLONG_MIN },
		{ "-9223372036854775809", LLONG_MIN, 0, -1, 0 },
		{ "99999999999999999999999", 0, LLONG_MAX, -1, 0 },
		{ "", 0, 10, -1, 0 },
		{ " 1", 0, 10, -1, 0 },
		{ "1 ", 0, 10, -1, 0 },
		{ "+1", 0, 10, -1, 0 },
		{ "1x", 0, 10, -1, 0 },
		{ "x1", 0, 10, -1, 0 },
		{ "0x10", 0, 100, -1, 0 },
		{ "1.0", 0, 10, -1, 0 },
		{ "1e3", 0, 10000, -1, 0 },
		{ "-", 0, 10, -1, 0 },
		{ "--1", -10, 10, -1, 0 },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		long long v = 12345;
		int rc = xm_parse_ll(t[i].s, t[i].min, t[i].max, &v);

		cr_expect_eq(rc, t[i].rc, "row %zu \"%s\": rc %d, want %d", i,
		    t[i].s, rc, t[i].rc);
		if (rc == 0 && t[i].rc == 0)
			cr_expect_eq(v, t[i].v, "row %zu \"%s\": %lld", i, t[i].s, v);
		if (rc < 0)
			cr_expect_eq(v, 12345, "row %zu: *out written on error", i);
	}
	cr_expect_eq(xm_parse_ll(NULL, 0, 10, &(long long){ 0 }), -1);
}

/* "the whole string as a decimal": the code refuses a leading space, but
 * strtoll/strtod skip every kind of white space themselves */
Test(numbers, leading_whitespace_is_junk)
{
	static const char *const t[] = { "\t5", "\n5", "\v5", "\f5", "\r5" };
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		long long v;
		double d;

		cr_expect_eq(xm_parse_ll(t[i], 0, 10, &v), -1,
		    "xm_parse_ll accepts \\x%02x5", t[i][0]);
		cr_expect_eq(xm_parse_double(t[i], &d), -1,
		    "xm_parse_double accepts \\x%02x5", t[i][0]);
	}
}

Test(numbers, parse_double)
{
	static const struct { const char *s; int rc; double v; } t[] = {
		{ "0", 0, 0 },
		{ "7.5", 0, 7.5 },
		{ "-2.25", 0, -2.25 },
		{ "1e3", 0, 1000 },
		{ ".5", 0, 0.5 },
		{ "1e308", 0, 1e308 },
		{ "1e309", -1, 0 },
		{ "inf", -1, 0 },
		{ "-inf", -1, 0 },
		{ "nan", -1, 0 },
		{ "NaN", -1, 0 },
		{ "", -1, 0 },
		{ " 1", -1, 0 },
		{ "1 ", -1, 0 },
		{ "1.5x", -1, 0 },
		{ "abc", -1, 0 },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		double v = 12345;
		int rc = xm_parse_double(t[i].s, &v);

		cr_expect_eq(rc, t[i].rc, "row %zu \"%s\": rc %d, want %d", i,
		    t[i].s, rc, t[i].rc);
		if (rc == 0 && t[i].rc == 0)
			cr_expect_eq(v, t[i].v, "row %zu \"%s\": %g", i, t[i].s, v);
	}
	cr_expect_eq(xm_parse_double(NULL, &(double){ 0 }), -1);
}

/* ---- times ---- */

Test(time, rfc3339_valid)
{
	static const struct { const char *s; double v; } t[] = {
		{ "1970-01-01T00:00:00Z", 0 },
		{ "2026-11-22T10:00:00Z", 1795341600 },
		{ "2026-11-22T10:00:00.250Z", 1795341600.25 },
		{ "2026-11-22T10:00:00.5z", 1795341600.5 },
		{ "2026-11-22t10:00:00Z", 1795341600 },
		{ "2026-11-22 10:00:00Z", 1795341600 },
		{ "2026-11-22T11:00:00+01:00", 1795341600 },
		{ "2026-11-22T05:30:00-04:30", 1795341600 },
		{ "2026-11-22T10:00:00+00:00", 1795341600 },
		{ "2026-11-22T10:00:00-00:00", 1795341600 },
		{ "2026-11-22T10:00:00.123456789Z", 1795341600.123456789 },
		{ "2024-02-29T00:00:00Z", 1709164800 },
		{ "2000-02-29T12:00:00Z", 951825600 },
		{ "2026-12-31T23:59:59Z", 1798761599 },
		{ "2016-12-31T23:59:60Z", 1483228800 },  /* leap second */
		{ "2026-11-23T00:30:00+14:30", 1795341600 },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		double v = -5;

		cr_expect_eq(xm_parse_time(t[i].s, &v), 0, "row %zu \"%s\"", i,
		    t[i].s);
		cr_expect(fabs(v - t[i].v) < 1e-6, "row %zu \"%s\": %.6f, want "
		    "%.6f", i, t[i].s, v, t[i].v);
	}
}

Test(time, rfc3339_invalid)
{
	static const char *const t[] = {
		"",
		"2026",
		"2026-11-22",
		"2026-11-22T10:00",
		"2026-11-22T10:00:00",         /* no zone */
		"2026-11-22T10:00:00+0100",    /* offset without colon */
		"2026-11-22T10:00:00+01",
		"2026-11-22T10:00:00+24:00",
		"2026-11-22T10:00:00+01:60",
		"2026-11-22T10:00:00.Z",       /* empty fraction */
		"2026-11-22T10:00:00ZZ",
		"2026-11-22T10:00:00Z ",
		" 2026-11-22T10:00:00Z",
		"2026-13-01T00:00:00Z",
		"2026-00-01T00:00:00Z",
		"2026-01-00T00:00:00Z",
		"2026-01-32T00:00:00Z",
		"2026-01-01T24:00:00Z",
		"2026-01-01T23:60:00Z",
		"2026-01-01T23:59:61Z",
		"26-11-22T10:00:00Z",
		"2026-1-22T10:00:00Z",
		"2026/11/22T10:00:00Z",
		"2026-11-22X10:00:00Z",
		"+2026-11-22T10:00:00Z",
		"2026-11-22T10:00:00.5.5Z",
		"yesterday",
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		double v = -5;

		cr_expect_eq(xm_parse_time(t[i], &v), -1, "\"%s\" accepted as %.3f",
		    t[i], v);
	}
	cr_expect_eq(xm_parse_time(NULL, &(double){ 0 }), -1);
}

/* days that do not exist in their month: timegm() silently rolls them
 * over into the next month, so they must be refused before it */
Test(time, rfc3339_day_must_exist_in_month)
{
	static const char *const t[] = {
		"2026-02-29T00:00:00Z",
		"2026-02-30T00:00:00Z",
		"2026-02-31T00:00:00Z",
		"2026-04-31T00:00:00Z",
		"2026-06-31T00:00:00Z",
		"2026-09-31T00:00:00Z",
		"2026-11-31T00:00:00Z",
		"1900-02-29T00:00:00Z",
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		double v = -5;

		cr_expect_eq(xm_parse_time(t[i], &v), -1, "\"%s\" accepted as %.3f",
		    t[i], v);
	}
	cr_expect_eq(xm_parse_time(NULL, &(double){ 0 }), -1);
}

Test(time, clocks_move)
{
	double a = xm_now(), b = xm_monotonic();

	cr_expect_gt(a, 1.7e9);
	cr_expect_gt(b, 0);
	cr_expect_geq(xm_monotonic(), b);
}

/* ---- UTF-8 ---- */

Test(utf8, validation)
{
	static const struct { const char *s; size_t n; bool ok; } t[] = {
		{ "", 0, true },
		{ "ascii", 5, true },
		{ "\xc3\xa9", 2, true },                  /* U+00E9 */
		{ "\xc2\x80", 2, true },                  /* U+0080 */
		{ "\xdf\xbf", 2, true },                  /* U+07FF */
		{ "\xe0\xa0\x80", 3, true },              /* U+0800 */
		{ "\xef\xbf\xbf", 3, true },              /* U+FFFF */
		{ "\xed\x9f\xbf", 3, true },              /* U+D7FF */
		{ "\xee\x80\x80", 3, true },              /* U+E000 */
		{ "\xf0\x90\x80\x80", 4, true },          /* U+10000 */
		{ "\xf4\x8f\xbf\xbf", 4, true },          /* U+10FFFF */
		{ "\xf0\x9f\x91\x8d", 4, true },          /* thumbs up */
		{ "a\0b", 3, true },                      /* NUL is UTF-8 */
		/* overlongs */
		{ "\xc0\x80", 2, false },
		{ "\xc1\xbf", 2, false },
		{ "\xe0\x80\x80", 3, false },
		{ "\xe0\x9f\xbf", 3, false },
		{ "\xf0\x80\x80\x80", 4, false },
		{ "\xf0\x8f\xbf\xbf", 4, false },
		/* surrogates */
		{ "\xed\xa0\x80", 3, false },             /* U+D800 */
		{ "\xed\xbf\xbf", 3, false },             /* U+DFFF */
		{ "\xed\xa0\xbd\xed\xb8\x80", 6, false }, /* CESU pair */
		/* beyond U+10FFFF and bytes that never occur */
		{ "\xf4\x90\x80\x80", 4, false },
		{ "\xf5\x80\x80\x80", 4, false },
		{ "\xf8\x88\x80\x80\x80", 5, false },
		{ "\xfe", 1, false },
		{ "\xff", 1, false },
		/* stray and missing continuation bytes */
		{ "\x80", 1, false },
		{ "a\xbf", 2, false },
		{ "\xc3", 1, false },
		{ "\xc3\x28", 2, false },
		{ "\xe2\x82", 2, false },
		{ "\xe2\x28\xa1", 3, false },
		{ "\xf0\x9f\x91", 3, false },
		{ "x\xf0\x9f\x91\x8d\xf0\x9f", 7, false },
		{ "\xf0\x9f\x91\x8d", 3, false },         /* cut by N */
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++)
		cr_expect_eq(xm_utf8_valid(t[i].s, t[i].n), t[i].ok,
		    "row %zu: want %s", i, t[i].ok ? "valid" : "invalid");
}

Test(utf8, next_decodes_and_advances)
{
	const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x91\x8d", *p = s,
	    *end = s + strlen(s);
	static const long want[] = { 'a', 0xe9, 0x20ac, 0x1f44d };
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(want); i++)
		cr_expect_eq(xm_utf8_next(&p, end), want[i], "code point %zu", i);
	cr_expect_eq(p, end);
	cr_expect_eq(xm_utf8_next(&p, end), -1);  /* at the end */
	p = "\xc3";
	cr_expect_eq(xm_utf8_next(&p, p + 1), -1);
	cr_expect_str_eq(p, "\xc3", "an invalid sequence must not advance");
}

/* ---- log_escape ---- */

Test(log, escape)
{
	static const struct { const char *in; size_t max; const char *out; } t[] = {
		{ NULL, 10, "-" },
		{ "", 10, "\"\"" },
		{ "alice@example.org", 80, "\"alice@example.org\"" },
		{ "a\"b\\c", 80, "\"a\\\"b\\\\c\"" },
		{ "line\nbreak\r\t", 80, "\"line\\x0abreak\\x0d\\x09\"" },
		{ "\x1b[31mred", 80, "\"\\x1b[31mred\"" },
		{ "del\x7f", 80, "\"del\\x7f\"" },
		{ "abcdef", 3, "\"abc...\"" },
		{ "abc", 3, "\"abc\"" },
		{ "ab\ncd", 2, "\"ab...\"" },
		{ "key=value spaces", 80, "\"key=value spaces\"" },
		{ "\xc3\xa9t\xc3\xa9", 80, "\"\xc3\xa9t\xc3\xa9\"" },
	};
	struct xm_arena *a = xm_arena_new();
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++)
		cr_expect_str_eq(log_escape(a, t[i].in, t[i].max), t[i].out,
		    "row %zu", i);
	xm_arena_free(a);
}

Test(log, escape_output_is_one_valid_utf8_line)
{
	static const struct { const char *in; size_t max; } t[] = {
		/* truncation must not cut a character in two */
		{ "\xc3\xa9\xc3\xa9\xc3\xa9", 3 },
		{ "ab\xf0\x9f\x91\x8d", 4 },
		/* a peer's invalid UTF-8 must not reach the log raw */
		{ "bad\xff\xfe", 80 },
		{ "cut\xe2\x82", 80 },
	};
	struct xm_arena *a = xm_arena_new();
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		const char *r = log_escape(a, t[i].in, t[i].max);

		cr_expect_null(strchr(r, '\n'), "row %zu has a newline", i);
		cr_expect(xm_utf8_valid(r, strlen(r)), "row %zu: log_escape "
		    "output is not valid UTF-8: %s", i, r);
	}
	xm_arena_free(a);
}

Test(log, level_names)
{
	enum xm_log_level l;

	cr_expect_eq(xm_log_level_parse("debug", &l), 0);
	cr_expect_eq(l, XM_LOG_DEBUG);
	cr_expect_eq(xm_log_level_parse("error", &l), 0);
	cr_expect_eq(l, XM_LOG_ERR);
	cr_expect_eq(xm_log_level_parse("warning", &l), 0);
	cr_expect_eq(l, XM_LOG_WARN);
	cr_expect_eq(xm_log_level_parse("DEBUG", &l), -1);
	cr_expect_eq(xm_log_level_parse("", &l), -1);
}

/* ---- allocation wrappers ---- */

Test(alloc, wrappers)
{
	char *s = xm_strndup("abcdef", 3), *t = xm_printf("%d-%s", 5, "x");
	void *z = xm_malloc(0), *r;

	cr_expect_str_eq(s, "abc");
	cr_expect_str_eq(t, "5-x");
	cr_expect_not_null(z);
	r = xm_reallocarray(NULL, 10, sizeof(long));
	cr_expect_not_null(r);
	free(s);
	free(t);
	free(z);
	free(r);
	s = xm_strndup("ab", 10);  /* shorter than n */
	cr_expect_str_eq(s, "ab");
	free(s);
}

Test(alloc, reallocarray_overflow_panics, .signal = SIGABRT)
{
	xm_reallocarray(NULL, SIZE_MAX / 4, 8);
}
