/*
 * util.c - allocation, arenas, buffers, number and time parsing, UTF-8,
 * logging
 *
 * Allocation failures abort: a daemon that cannot allocate a few bytes
 * cannot do anything useful, and checking every call hides real errors.
 * Arenas are chains of blocks; big requests get their own block.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <openssl/evp.h>

#include "util.h"

enum xm_log_level xm_log_level = XM_LOG_INFO;
const char *xm_log_prog = "xmilter";
static FILE *log_fp;

/* oom - the one reaction to running out of memory */
static void XM_NORETURN
oom(size_t n)
{
	fprintf(stderr, "%s: out of memory allocating %zu bytes\n", xm_log_prog, n);
	abort();
}

/* xm_malloc - malloc that never returns NULL */
void *
xm_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom(n);
	return p;
}

/* xm_calloc - calloc that never returns NULL */
void *
xm_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		oom(n * size);
	return p;
}

/* xm_realloc - realloc that never returns NULL */
void *
xm_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom(n);
	return q;
}

/* xm_reallocarray - realloc of n * size bytes, checking the product */
void *
xm_reallocarray(void *p, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		panic("allocation size overflow: %zu * %zu", n, size);
	return xm_realloc(p, n * size);
}

/* xm_strdup - strdup that never returns NULL */
char *
xm_strdup(const char *s)
{
	return xm_strndup(s, strlen(s));
}

/* xm_strndup - copy at most n bytes of s, NUL-terminated */
char *
xm_strndup(const char *s, size_t n)
{
	char *p;
	size_t len = strnlen(s, n);

	p = xm_malloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* xm_printf - formatted string on the heap */
char *
xm_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		oom(strlen(fmt));
	va_end(ap);
	return s;
}

/* ---- arenas ---- */

#define ARENA_BLOCK 8192

struct arena_block {
	struct arena_block *next;
	size_t used, size;
	max_align_t data[];
};

struct xm_arena {
	struct arena_block *head;
	size_t total;
};

/* up to SPARE_MAX spare standard blocks per thread: a task's arena
 * usually needs one block (two or three when its verdict carries a
 * modified stanza), so most tasks allocate and free nothing from malloc */
#define SPARE_MAX 4
static __thread struct arena_block *spare_block;   /* a list by next */
static __thread unsigned spare_n;

/* xm_arena_new - an empty arena */
struct xm_arena *
xm_arena_new(void)
{
	return xm_calloc(1, sizeof(struct xm_arena));
}

/* arena_raw - N bytes (not zeroed) that live until the arena is freed */
static inline void *
arena_raw(struct xm_arena *a, size_t n)
{
	struct arena_block *b = a->head;
	size_t align = _Alignof(max_align_t), need;
	void *p;

	if (n > SIZE_MAX - align)
		panic("arena allocation too large: %zu", n);
	need = (n + align - 1) & ~(align - 1);
	if (b == NULL || b->size - b->used < need) {
		size_t size = need > ARENA_BLOCK / 2 ? need : ARENA_BLOCK;

		if (size == ARENA_BLOCK && spare_block != NULL) {
			b = spare_block;
			spare_block = b->next;
			spare_n--;
		} else
			b = xm_malloc(sizeof(*b) + size);
		b->used = 0;
		b->size = size;
		if (need > ARENA_BLOCK / 2 && a->head != NULL) {
			/* a big block goes second so the current one keeps filling */
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
		a->total += size;
	}
	p = (char *)b->data + b->used;
	b->used += need;
	return p;
}

/* xm_arena_alloc - N zeroed bytes that live until the arena is freed */
void *
xm_arena_alloc(struct xm_arena *a, size_t n)
{
	void *p = arena_raw(a, n);

	memset(p, 0, n);
	return p;
}

/* xm_arena_array - N zeroed elements of SIZE, overflow-checked */
void *
xm_arena_array(struct xm_arena *a, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		panic("arena array overflow: %zu * %zu", n, size);
	return xm_arena_alloc(a, n * size);
}

/* xm_arena_strdup - copy of S in the arena (NULL stays NULL) */
char *
xm_arena_strdup(struct xm_arena *a, const char *s)
{
	return s == NULL ? NULL : xm_arena_strndup(a, s, strlen(s));
}

/* xm_arena_strndup - copy of the first N bytes of S, NUL-terminated */
char *
xm_arena_strndup(struct xm_arena *a, const char *s, size_t n)
{
	char *p = arena_raw(a, n + 1);     /* every byte is written */

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* xm_arena_vprintf - formatted string in the arena: formatted once into
 * a buffer on the stack, again only when it does not fit (measuring
 * with vsnprintf(NULL, 0) first costs a whole formatting every time) */
char *
xm_arena_vprintf(struct xm_arena *a, const char *fmt, va_list ap)
{
	char buf[256];
	va_list ap2;
	int n;
	char *p;

	va_copy(ap2, ap);
	n = vsnprintf(buf, sizeof(buf), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		panic("vsnprintf failed on \"%s\"", fmt);
	if ((size_t)n < sizeof(buf))
		return xm_arena_strndup(a, buf, (size_t)n);
	p = xm_arena_alloc(a, (size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

/* xm_arena_strjoin - X, Y and Z joined, in the arena */
char *
xm_arena_strjoin(struct xm_arena *a, const char *x, const char *y,
    const char *z)
{
	size_t lx = strlen(x), ly = strlen(y), lz = strlen(z);
	char *p;

	if (lx > SIZE_MAX / 4 || ly > SIZE_MAX / 4 || lz > SIZE_MAX / 4)
		panic("xm_arena_strjoin: string too long");
	p = arena_raw(a, lx + ly + lz + 1);
	memcpy(p, x, lx);
	memcpy(p + lx, y, ly);
	memcpy(p + lx + ly, z, lz + 1);
	return p;
}

/* xm_arena_printf - formatted string in the arena */
char *
xm_arena_printf(struct xm_arena *a, const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xm_arena_vprintf(a, fmt, ap);
	va_end(ap);
	return p;
}

/* xm_arena_grow - room for N more elements after USED in array P */
void *
xm_arena_grow(struct xm_arena *a, void *p, size_t *cap, size_t used,
    size_t n, size_t size)
{
	size_t ncap;
	void *q;

	if (used + n <= *cap)
		return p;
	ncap = *cap ? *cap * 2 : 4;
	while (ncap < used + n)
		ncap *= 2;
	q = xm_arena_array(a, ncap, size);
	if (used)
		memcpy(q, p, used * size);
	*cap = ncap;
	return q;
}

/* xm_arena_used - bytes the arena holds (for accounting) */
size_t
xm_arena_used(const struct xm_arena *a)
{
	return a->total;
}

/* xm_arena_free - free every block and the arena itself */
void
xm_arena_free(struct xm_arena *a)
{
	struct arena_block *b, *next;

	if (a == NULL)
		return;
	for (b = a->head; b != NULL; b = next) {
		next = b->next;
		if (b->size == ARENA_BLOCK && spare_n < SPARE_MAX) {
			b->next = spare_block;
			spare_block = b;
			spare_n++;
		} else
			free(b);
	}
	free(a);
}

/* ---- buffers ---- */

static void xml_escape(struct xm_buf *b, const char *s, size_t n, bool attr);

/* buf_reserve - room for N more bytes plus a NUL */
static void
buf_reserve(struct xm_buf *b, size_t n)
{
	if (n > SIZE_MAX - b->len - 1)
		panic("buffer overflow: %zu + %zu", b->len, n);
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = xm_realloc(b->data, cap);
		b->cap = cap;
	}
}

/* xm_buf_reserve - room for N more bytes (and a NUL) */
void
xm_buf_reserve(struct xm_buf *b, size_t n)
{
	buf_reserve(b, n);
}

/* xm_buf_printf - append formatted text */
void
xm_buf_printf(struct xm_buf *b, const char *fmt, ...)
{
	va_list ap;
	size_t room;
	int n;

	buf_reserve(b, 64);  /* most lines fit: format once, retry if not */
	room = b->cap - b->len;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		panic("vsnprintf failed on \"%s\"", fmt);
	if ((size_t)n >= room) {
		buf_reserve(b, (size_t)n);
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

/* xm_buf_consume - drop the first N bytes */
void
xm_buf_consume(struct xm_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		if (b->data)
			b->data[0] = '\0';
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

/* xm_buf_reset - empty the buffer, keeping its memory */
void
xm_buf_reset(struct xm_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

/* xm_buf_free - release the buffer's memory */
void
xm_buf_free(struct xm_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* xm_buf_xml_escape - append S[0..n) escaped for XML text */
void
xm_buf_xml_escape(struct xm_buf *b, const char *s, size_t n)
{
	xml_escape(b, s, n, false);
}

/* xm_buf_xml_escape_attr - append S[0..n) escaped for an attribute value */
void
xm_buf_xml_escape_attr(struct xm_buf *b, const char *s, size_t n)
{
	xml_escape(b, s, n, true);
}

/* what xml_escape writes for the bytes it replaces (newline and tab
 * only in attributes) */
static const char *const xml_rep[256] = {
	['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['"'] = "&quot;",
	['\''] = "&apos;", ['\r'] = "&#13;", ['\n'] = "&#10;", ['\t'] = "&#9;",
};

/* xml_special - does xml_escape replace byte C (in an attribute: ATTR) */
static inline bool
xml_special(unsigned char c, bool attr)
{
	return xml_rep[c] != NULL && (attr || (c != '\n' && c != '\t'));
}

/* xml_plain - how many bytes from S[0..n) need no escaping: 16 at a time
 * with SSE2 (a modified stanza is escaped whole, bodies and all) */
static size_t
xml_plain(const char *s, size_t n, bool attr)
{
	size_t i = 0;

#ifdef __SSE2__
	for (; i + 16 <= n; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(s + i));
		__m128i m = _mm_or_si128(_mm_or_si128(
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('&')),
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('<'))), _mm_or_si128(
		    _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('>')),
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('"'))), _mm_or_si128(
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('\'')),
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('\r')))));
		unsigned bits;

		if (attr)
			m = _mm_or_si128(m, _mm_or_si128(
			    _mm_cmpeq_epi8(v, _mm_set1_epi8('\n')),
			    _mm_cmpeq_epi8(v, _mm_set1_epi8('\t'))));
		bits = (unsigned)_mm_movemask_epi8(m);
		if (bits != 0)
			return i + (unsigned)__builtin_ctz(bits);
	}
#endif
	while (i < n && !xml_special((unsigned char)s[i], attr))
		i++;
	return i;
}

/* xml_escape - markup characters as entities; in attributes also tab and
 * newline, which attribute-value normalisation would turn into spaces */
static void
xml_escape(struct xm_buf *b, const char *s, size_t n, bool attr)
{
	size_t i = 0, run;

	for (;;) {
		run = xml_plain(s + i, n - i, attr);
		xm_buf_append(b, s + i, run);
		i += run;
		if (i >= n)
			break;
		xm_buf_puts(b, xml_rep[(unsigned char)s[i++]]);
	}
}

/* ---- numbers and time ---- */

/* xm_parse_ll - whole string as a decimal integer within [min, max] */
int
xm_parse_ll(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s) || *s == '+')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* xm_parse_double - whole string as a finite number */
int
xm_parse_double(const char *s, double *out)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

/* digits - N decimal digits at *p, advancing it; -1 if not digits */
static int
digits(const char **p, int n)
{
	int v = 0;

	while (n-- > 0) {
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	return v;
}

/* xm_parse_time - RFC 3339 date-time (Z or +hh:mm offset) to unix seconds */
int
xm_parse_time(const char *s, double *out)
{
	const char *p = s;
	struct tm tm = { 0 };
	int y, mo, d, h, mi, sec, oh, om, sign;
	double frac = 0, scale = 0.1;
	time_t t;

	if (s == NULL)
		return -1;
	if ((y = digits(&p, 4)) < 0 || *p++ != '-' ||
	    (mo = digits(&p, 2)) < 1 || mo > 12 || *p++ != '-' ||
	    (d = digits(&p, 2)) < 1 || d > 31 || (*p != 'T' && *p != 't' && *p != ' '))
		return -1;
	p++;
	if ((h = digits(&p, 2)) < 0 || h > 23 || *p++ != ':' ||
	    (mi = digits(&p, 2)) < 0 || mi > 59 || *p++ != ':' ||
	    (sec = digits(&p, 2)) < 0 || sec > 60)
		return -1;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9') {
			frac += (*p++ - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
		oh = om = 0;
		sign = 1;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if ((oh = digits(&p, 2)) < 0 || oh > 23 || *p++ != ':' ||
		    (om = digits(&p, 2)) < 0 || om > 59)
			return -1;
	} else
		return -1;
	if (*p != '\0')
		return -1;
	{
		static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
		    31, 30, 31 };
		bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

		if (d > mdays[mo - 1] + (mo == 2 && leap))
			return -1;  /* timegm would roll 02-30 over to March */
	}
	{
		/* days since 1970-01-01 (Howard Hinnant's days_from_civil):
		 * timegm() would take the time-zone lock on every event */
		long yy = y - (mo <= 2), era = (yy >= 0 ? yy : yy - 399) / 400;
		long yoe = yy - era * 400;
		long doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
		long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
		long days = era * 146097 + doe - 719468;

		t = (time_t)(days * 86400L + h * 3600L + mi * 60L + sec);
	}
	(void)tm;
	*out = (double)t + frac - sign * (oh * 3600 + om * 60);
	return 0;
}

/* xm_now - wall-clock time in unix seconds */
double
xm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xm_monotonic - monotonic seconds, for durations */
double
xm_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- UTF-8 ---- */

/* xm_utf8_next - decode one code point, rejecting overlongs and surrogates */
long
xm_utf8_next(const char **pp, const char *end)
{
	const unsigned char *p = (const unsigned char *)*pp;
	long c;
	int n, i;

	if ((const char *)p >= end)
		return -1;
	if (p[0] < 0x80) {
		*pp += 1;
		return p[0];
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 1;
		c = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 2;
		c = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 3;
		c = p[0] & 0x07;
	} else
		return -1;
	if (end - (const char *)p <= n)
		return -1;
	for (i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return -1;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((n == 2 && c < 0x800) || (n == 3 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff))
		return -1;
	*pp += n + 1;
	return c;
}

/* xm_utf8_valid - true when the whole range is well-formed UTF-8 */
bool
xm_utf8_valid(const char *s, size_t n)
{
	const char *p = s, *end = s + n;

	while (p < end) {
		if ((unsigned char)*p < 0x80) {
			p++;
			continue;
		}
		if (xm_utf8_next(&p, end) < 0)
			return false;
	}
	return true;
}

/* ---- logging ---- */

static const char *level_names[] = { "error", "warning", "info", "debug" };

/* xm_log_open - send log lines to PATH (appending), or stderr when NULL */
void
xm_log_open(const char *prog, const char *path)
{
	xm_log_prog = prog;
	if (log_fp != NULL && log_fp != stderr)
		fclose(log_fp);
	log_fp = NULL;
	if (path != NULL && *path != '\0') {
		log_fp = fopen(path, "a");
		if (log_fp == NULL)
			fatalx("cannot open log file %s: %s", path, strerror(errno));
		setvbuf(log_fp, NULL, _IOLBF, 0);
	}
}

/* xm_log_level_parse - level name to value */
int
xm_log_level_parse(const char *s, enum xm_log_level *out)
{
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(level_names); i++)
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum xm_log_level)i;
			return 0;
		}
	return -1;
}

/* xm_vlog - write one log line with time, program and level */
void
xm_vlog(enum xm_log_level l, const char *fmt, va_list ap)
{
	FILE *fp = log_fp ? log_fp : stderr;
	char ts[32];
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	flockfile(fp);
	fprintf(fp, "%s.%03ldZ %s[%d] %s: ", ts, now.tv_nsec / 1000000,
	    xm_log_prog, (int)getpid(), level_names[l]);
	vfprintf(fp, fmt, ap);
	fputc('\n', fp);
	funlockfile(fp);
}

/* xm_log - one log line at level L */
void
xm_log(enum xm_log_level l, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(l))
		return;
	va_start(ap, fmt);
	xm_vlog(l, fmt, ap);
	va_end(ap);
}

/* log_err - an error line, whatever the level */
void
log_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	xm_vlog(XM_LOG_ERR, fmt, ap);
	va_end(ap);
}

/* fatalx - log and exit: start-up, configuration and environment errors */
void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	xm_vlog(XM_LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}

/* panic - log and abort: an invariant is broken */
void
panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	xm_vlog(XM_LOG_ERR, fmt, ap);
	va_end(ap);
	abort();
}

/* log_escape - quote S for a log line: escapes, no newlines, valid UTF-8,
 * at most MAX bytes of S (cut on a character boundary) */
const char *
log_escape(struct xm_arena *a, const char *s, size_t max)
{
	struct xm_buf b = { 0 };
	const char *p, *end, *r;

	if (s == NULL)
		return "-";
	end = s + strlen(s);
	xm_buf_puts(&b, "\"");
	for (p = s; p < end;) {
		const char *q = p;
		unsigned char c = (unsigned char)*p;

		if (c >= 0x80 && xm_utf8_next(&q, end) >= 0) {
			if ((size_t)(q - s) > max)
				goto cut;
			xm_buf_append(&b, p, (size_t)(q - p));
			p = q;
			continue;
		}
		if ((size_t)(p + 1 - s) > max)
			goto cut;
		if (c == '"' || c == '\\')
			xm_buf_printf(&b, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			xm_buf_printf(&b, "\\x%02x", c);
		else
			xm_buf_append(&b, p, 1);
		p++;
	}
	goto done;
cut:
	xm_buf_puts(&b, "...");
done:
	xm_buf_puts(&b, "\"");
	r = xm_arena_strndup(a, b.data, b.len);
	xm_buf_free(&b);
	return r;
}

/* xm_sha256 - SHA-256 through libcrypto; a failure here is a broken
 * library or no memory: an invariant, not an input error */
void
xm_sha256(const void *p, size_t n, unsigned char out[32])
{
	unsigned int len = 0;

	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32)
		panic("SHA-256 failed");
}

/* xm_hex - lower-case hex of P[0..N) */
void
xm_hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* xm_write_all - the whole buffer, or -1 */
int
xm_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}
