/*
 * resp.c - Redis protocol replies parsed from a buffer (see resp.h)
 *
 * Purpose: read the answers of a pipelined connection without one
 * allocation per reply and per element (hiredis's reader allocates both,
 * and moves its buffer down every kilobyte: with hundreds of answers per
 * read that was the largest cost of talking to Redis). Every size read is
 * bounded before use; a reply not whole yet leaves the buffer untouched,
 * so the caller can read more and try again. No I/O, so it can be fuzzed.
 */
#include <stdbool.h>
#include <string.h>

#include "resp.h"

/* line_end - the offset of the "\r\n" ending the line at P (within
 * BUF[0..LEN)), searching at most MAX bytes: the offset, -1 when more
 * bytes are needed, -2 when there is no line end within MAX */
static long
line_end(const char *buf, size_t len, size_t p, size_t max)
{
	size_t lim = len - p < max ? len - p : max;
	const char *cr = memchr(buf + p, '\r', lim);

	if (cr == NULL)
		return len - p < max ? -1 : -2;
	if ((size_t)(cr - buf) + 1 >= len)
		return -1;                       /* "\n" not read yet */
	if (cr[1] != '\n')
		return -2;
	return (long)(cr - buf);
}

/* number - the decimal in BUF[a..b) (an optional '-', 1 to 18 digits);
 * 0, or -1 */
static int
number(const char *buf, size_t a, size_t b, long long *v)
{
	bool neg = false;
	long long x = 0;

	if (a < b && buf[a] == '-') {
		neg = true;
		a++;
	}
	if (a == b || b - a > 18)
		return -1;
	for (; a < b; a++) {
		if (buf[a] < '0' || buf[a] > '9')
			return -1;
		x = x * 10 + (buf[a] - '0');
	}
	*v = neg ? -x : x;
	return 0;
}

/*
 * scalar - the non-array reply at BUF[*P..LEN) into R: 1 whole (*P moved
 * past it, the offset of its string's end, to be NUL-terminated, in
 * *TERM, or -1), 0 more needed, -1 bad
 */
static int
scalar(char *buf, size_t len, size_t *p, redisReply *r, long *term)
{
	size_t s = *p;
	long e, n;
	long long v;

	*term = -1;
	if (s >= len)
		return 0;
	memset(r, 0, sizeof(*r));
	switch (buf[s]) {
	case '+':
	case '-':
		if ((e = line_end(buf, len, s + 1, XM_RESP_MAXLINE)) < 0)
			return e == -1 ? 0 : -1;
		r->type = buf[s] == '+' ? REDIS_REPLY_STATUS : REDIS_REPLY_ERROR;
		r->str = buf + s + 1;
		r->len = (size_t)e - (s + 1);
		*term = e;
		*p = (size_t)e + 2;
		return 1;
	case ':':
		if ((e = line_end(buf, len, s + 1, 24)) < 0)
			return e == -1 ? 0 : -1;
		if (number(buf, s + 1, (size_t)e, &v) < 0)
			return -1;
		r->type = REDIS_REPLY_INTEGER;
		r->integer = v;
		*p = (size_t)e + 2;
		return 1;
	case '$':
		if ((e = line_end(buf, len, s + 1, 24)) < 0)
			return e == -1 ? 0 : -1;
		if (number(buf, s + 1, (size_t)e, &v) < 0 || v < -1 ||
		    v > XM_RESP_MAXBULK)
			return -1;
		if (v == -1) {
			r->type = REDIS_REPLY_NIL;
			*p = (size_t)e + 2;
			return 1;
		}
		n = (long)v;
		if (len - ((size_t)e + 2) < (size_t)n + 2)
			return 0;
		if (buf[e + 2 + n] != '\r' || buf[e + 3 + n] != '\n')
			return -1;
		r->type = REDIS_REPLY_STRING;
		r->str = buf + e + 2;
		r->len = (size_t)n;
		*term = e + 2 + n;
		*p = (size_t)(e + 2 + n + 2);
		return 1;
	default:
		return -1;
	}
}

/* xm_resp_parse - one whole reply, or nothing changed */
int
xm_resp_parse(char *buf, size_t len, size_t *used, struct xm_resp *out)
{
	long term[XM_RESP_MAXELEM + 1], e;
	size_t p = 0, i, nterm = 0;
	long long v;
	int rc;

	if (len == 0)
		return 0;
	if (buf[0] != '*') {
		if ((rc = scalar(buf, len, &p, &out->top, &term[0])) != 1)
			return rc;
		if (term[0] >= 0)
			buf[term[0]] = '\0';
		*used = p;
		return 1;
	}
	if ((e = line_end(buf, len, 1, 24)) < 0)
		return e == -1 ? 0 : -1;
	if (number(buf, 1, (size_t)e, &v) < 0 || v < -1 ||
	    v > XM_RESP_MAXELEM)
		return -1;
	p = (size_t)e + 2;
	memset(&out->top, 0, sizeof(out->top));
	if (v == -1) {
		out->top.type = REDIS_REPLY_NIL;
		*used = p;
		return 1;
	}
	for (i = 0; i < (size_t)v; i++) {
		if (p < len && buf[p] == '*')
			return -1;                   /* nested: not ours */
		if ((rc = scalar(buf, len, &p, &out->elem[i], &e)) != 1)
			return rc;
		if (e >= 0)
			term[nterm++] = e;
		out->ptr[i] = &out->elem[i];
	}
	/* whole: now the strings may be ended in place */
	for (i = 0; i < nterm; i++)
		buf[term[i]] = '\0';
	out->top.type = REDIS_REPLY_ARRAY;
	out->top.elements = (size_t)v;
	out->top.element = out->ptr;
	*used = p;
	return 1;
}
