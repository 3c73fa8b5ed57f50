/*
 * fingerprint.c - folded text and link-set fingerprints (fingerprint.h)
 *
 * Folding, word by word (a word is a run of letters and digits; any other
 * character separates words and is dropped):
 *   - letters to lower case (ASCII, Latin-1, Latin Extended-A pairs,
 *     Greek and Cyrillic capitals),
 *   - a word of digits only becomes "#", other digit runs "#" inside the
 *     word ("mp3" -> "mp#"),
 *   - a random-looking token becomes "*": letters and digits mixed in four
 *     or more characters ("x7k9p", "a1b2c3"), six or more letters with
 *     hardly any vowel ("xkqzvbt"), or 25 or more letters,
 *   - a link (http://, https://, www.) becomes "<url>" and goes to the
 *     link set.
 * Only real words (not "#", "*" or "<url>") count towards min_words.
 *
 * Cost: this runs over every chat message the ratelimit filter counts.
 * Runs of plain ASCII words are folded 32 bytes at a time (fast_words:
 * bit masks of letters and stops, one copy per stretch of words with
 * single separators); words with digits or non-ASCII letters go through
 * the word loop, which decodes UTF-8 inline and folds two-byte
 * characters by table (fold2). The folded text is built with a space
 * before every word (the first one dropped at the end), so no word asks
 * whether it is the first. The results are those of the plain
 * character-by-character folding, byte for byte (tests/unit/
 * test_fingerprint.c pins them): fingerprints are shared between nodes
 * and replayed, so any change of them is a regression.
 *
 * Ownership: results live in the caller's arena. Failure: none; invalid
 * UTF-8 bytes are separators.
 */
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "fingerprint.h"
#include "state.h"

/* BIASED - byte C + 128 as the signed char the SSE2 compares take (an
 * unsigned range test as a signed one) */
#define BIASED(c) ((char)((c) - 128))

/* lower - a lower-case form of code point C (the common scripts) */
static inline long
lower(long c)
{
	if (c >= 'A' && c <= 'Z')
		return c + 32;
	if (c < 0x80)
		return c;
	if ((c >= 0xc0 && c <= 0xde && c != 0xd7))
		return c + 0x20;
	if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x131 &&
	    c != 0x138 && c != 0x149)
		return (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e) ?
		    ((c & 1) ? c + 1 : c) : (c | 1);
	if (c >= 0x391 && c <= 0x3ab && c != 0x3a2)
		return c + 0x20;
	if (c >= 0x410 && c <= 0x42f)
		return c + 0x20;
	if (c >= 0x400 && c <= 0x40f)
		return c + 0x50;
	return c;
}

/* word_char - does code point C belong to a word */
static inline bool
word_char(long c)
{
	if (c < 0)
		return false;
	if (c < 0x80)
		return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9');
	if (c < 0xc0)                      /* Latin-1 punctuation, symbols */
		return c == 0xaa || c == 0xb5 || c == 0xba;
	if (c == 0xd7 || c == 0xf7)
		return false;
	if (c >= 0x2000 && c <= 0x2bff)    /* punctuation, symbols, arrows */
		return false;
	if (c >= 0x3000 && c <= 0x303f)    /* CJK punctuation */
		return false;
	if (c >= 0xfe00 && c <= 0xfe0f)    /* variation selectors */
		return false;
	if (c >= 0xff00 && c <= 0xff0f)
		return false;
	if (c >= 0x1f000)                  /* emoji and friends */
		return false;
	return true;
}

/* put_cp - code point C as UTF-8 at U (room for 4); its length */
static inline size_t
put_cp(char *u, long c)
{
	if (c < 0x80) {
		u[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		u[0] = (char)(0xc0 | (c >> 6));
		u[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		u[0] = (char)(0xe0 | (c >> 12));
		u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		u[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	u[0] = (char)(0xf0 | (c >> 18));
	u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	u[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	u[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* fold2 - the folded UTF-8 bytes (first << 8 | second) of each two-byte
 * code point U+0080..U+07FF, 0 for those that are no word characters:
 * lower() keeps them two bytes long. Filled once at start-up from
 * lower() and word_char(), so the table cannot disagree with them. */
static unsigned short fold2[0x800 - 0x80];

/* fold2_init - fill fold2 (before main: no lock, no check per call) */
__attribute__((constructor)) static void
fold2_init(void)
{
	long c;

	for (c = 0x80; c < 0x800; c++) {
		char u[4];

		if (!word_char(c) || put_cp(u, lower(c)) != 2)
			continue;        /* (never two-byte turned longer) */
		fold2[c - 0x80] = (unsigned short)((unsigned char)u[0] << 8 |
		    (unsigned char)u[1]);
	}
}

/* high_cp - the character at P (not ASCII; P < END), decoded as
 * xm_utf8_next would: *LEN gets its length (1 for an invalid byte, which
 * is no word character); true when it belongs to a word, its folded
 * UTF-8 form then at W (up to 4 bytes written, *WN of them). lower() is
 * the identity beyond U+07FF, so longer forms are copied as they are. */
static inline __attribute__((always_inline)) bool
high_cp(const unsigned char *p, const unsigned char *end, size_t *len,
    char *w, size_t *wn)
{
	size_t room = (size_t)(end - p);
	unsigned b0 = p[0];
	long c;

	if (b0 >= 0xc2 && b0 <= 0xdf) {
		if (room >= 2 && (p[1] & 0xc0) == 0x80) {
			unsigned t = fold2[((b0 & 0x1f) << 6 | (p[1] & 0x3fu)) -
			    0x80];

			*len = 2;
			w[0] = (char)(t >> 8);
			w[1] = (char)(t & 0xff);
			*wn = 2;
			return t != 0;
		}
	} else if (b0 >= 0xe0 && b0 <= 0xef) {
		if (room >= 3 && (p[1] & 0xc0) == 0x80 &&
		    (p[2] & 0xc0) == 0x80) {
			c = (long)(b0 & 0x0f) << 12 | (long)(p[1] & 0x3f) << 6 |
			    (long)(p[2] & 0x3f);
			if (c >= 0x800 && (c < 0xd800 || c > 0xdfff)) {
				*len = 3;
				w[0] = (char)p[0];
				w[1] = (char)p[1];
				w[2] = (char)p[2];
				*wn = 3;
				return word_char(c);
			}
		}
	} else if (b0 >= 0xf0 && b0 <= 0xf4) {
		if (room >= 4 && (p[1] & 0xc0) == 0x80 &&
		    (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80) {
			c = (long)(b0 & 0x07) << 18 | (long)(p[1] & 0x3f) << 12 |
			    (long)(p[2] & 0x3f) << 6 | (long)(p[3] & 0x3f);
			if (c >= 0x10000 && c <= 0x10ffff) {
				*len = 4;
				memcpy(w, p, 4);
				*wn = 4;
				return word_char(c);
			}
		}
	}
	*len = 1;
	return false;
}

/* url_trail - punctuation that ends a sentence rather than a link */
static inline bool
url_trail(char c)
{
	switch (c) {
	case '.': case ',': case ';': case ':': case '!': case '?':
	case ')': case ']': case '}':
		return true;
	default:
		return false;
	}
}

/* url_start - length of the link that starts at P (0: none) */
static size_t
url_start(const char *p, const char *end)
{
	size_t n = (size_t)(end - p), len = 0;

	/* most words starting with h or w are no link: compare by hand,
	 * cheapest test first */
	if (!((n >= 7 && (p[0] | 0x20) == 'h' && (p[1] | 0x20) == 't' &&
	    (p[2] | 0x20) == 't' && (p[3] | 0x20) == 'p' &&
	    ((p[4] == ':' && p[5] == '/' && p[6] == '/') ||
	    (n >= 8 && (p[4] | 0x20) == 's' && p[5] == ':' && p[6] == '/' &&
	    p[7] == '/'))) ||
	    (n > 4 && (p[0] | 0x20) == 'w' && (p[1] | 0x20) == 'w' &&
	    (p[2] | 0x20) == 'w' && p[3] == '.' && p[4] != ' ')))
		return 0;
	/* up to a space, control byte or < > " ' */
#ifdef __SSE2__
	while (n - len >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(p + len));
		__m128i sp = _mm_set1_epi8(' ');
		__m128i stop = _mm_or_si128(_mm_or_si128(
		    _mm_cmpeq_epi8(_mm_max_epu8(v, sp), sp),
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('<'))), _mm_or_si128(
		    _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('>')),
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('"'))),
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('\''))));
		unsigned m = (unsigned)_mm_movemask_epi8(stop);

		if (m != 0) {
			len += (unsigned)__builtin_ctz(m);
			goto trail;
		}
		len += 16;
	}
#endif
	while (len < n && (unsigned char)p[len] > ' ' && p[len] != '<' &&
	    p[len] != '>' && p[len] != '"' && p[len] != '\'')
		len++;
#ifdef __SSE2__
trail:
#endif
	while (len > 0 && url_trail(p[len - 1]))
		len--;
	return len;
}

#ifdef __SSE2__
/* any_of - 0xff where a byte of V is A, B, C or D */
static inline __m128i
any_of(__m128i v, char a, char b, char c, char d)
{
	return _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(a)),
	    _mm_cmpeq_epi8(v, _mm_set1_epi8(b))), _mm_or_si128(
	    _mm_cmpeq_epi8(v, _mm_set1_epi8(c)),
	    _mm_cmpeq_epi8(v, _mm_set1_epi8(d))));
}
#endif

/* url_key - xm_fp_url_key, its length in *KLEN. The host is lower-cased
 * and the path copied 16 bytes at a time while 16 are left: the key has
 * room for the rest of the URL plus 9 bytes, and O never runs ahead of
 * P by more than the 7 of "http://", so such a store stays inside it */
static char *
url_key(struct xm_arena *a, const char *url, size_t n, size_t *klen)
{
	const char *p = url, *end = url + n, *host;
	char *r, *o, *h;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	o = r = xm_arena_alloc(a, (size_t)(end - p) + 9);
	if ((size_t)(end - p) >= 4 && (p[0] | 0x20) == 'w' &&
	    (p[1] | 0x20) == 'w' && (p[2] | 0x20) == 'w' && p[3] == '.') {
		memcpy(o, "http://", 7);
		o += 7;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));

		if (colon == NULL || colon == p || (size_t)(end - colon) < 3 ||
		    colon[1] != '/' || colon[2] != '/')
			return NULL;
		for (; p < colon; p++)
			*o++ = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		memcpy(o, "://", 3);
		o += 3;
		p = colon + 3;
	}
	host = p;
	h = o;
	for (;;) {
#ifdef __SSE2__
		while (end - p >= 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)p);
			__m128i up = _mm_cmplt_epi8(_mm_sub_epi8(v,
			    _mm_set1_epi8(BIASED('A'))), _mm_set1_epi8(-128 + 26));
			unsigned stop = (unsigned)_mm_movemask_epi8(any_of(v,
			    '/', '?', '#', '@'));

			_mm_storeu_si128((__m128i *)o, _mm_add_epi8(v,
			    _mm_and_si128(up, _mm_set1_epi8(0x20))));
			if (stop != 0) {
				o += __builtin_ctz(stop);
				p += __builtin_ctz(stop);
				break;
			}
			o += 16;
			p += 16;
		}
#endif
		while (p < end && *p != '/' && *p != '?' && *p != '#' &&
		    *p != '@') {
			char c = *p++;

			*o++ = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		if (p == end || *p != '@')
			break;
		o = h;                     /* userinfo: drop it */
		host = ++p;
	}
	if (p == host)
		return NULL;
	if (p < end && *p == '/') {
#ifdef __SSE2__
		while (end - p >= 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)p);
			unsigned stop = (unsigned)_mm_movemask_epi8(any_of(v,
			    '?', '#', '?', '#'));

			_mm_storeu_si128((__m128i *)o, v);
			if (stop != 0) {
				o += __builtin_ctz(stop);
				p += __builtin_ctz(stop);
				goto done;
			}
			o += 16;
			p += 16;
		}
#endif
		while (p < end && *p != '?' && *p != '#')
			*o++ = *p++;
	} else
		*o++ = '/';
#ifdef __SSE2__
done:
#endif
	*o = '\0';
	*klen = (size_t)(o - r);
	return r;
}

/* xm_fp_url_key - scheme://host[:port]/path, lower-case scheme and host,
 * written straight into the arena (never longer than "http://" + URL +
 * "/") */
char *
xm_fp_url_key(struct xm_arena *a, const char *url, size_t n)
{
	size_t klen;

	return url_key(a, url, n, &klen);
}

#define WORD_MAX 128   /* longer words are cut (and hashed as cut) */

/* the folded text being built, in the caller's arena: every word with a
 * space before it (" one two"), the first space dropped at the end */
struct fbuf {
	struct xm_arena *a;
	char *p;
	size_t len, cap;
};

/* a link found in the text: where it is */
struct span {
	const char *p;
	size_t n;
};

/* ASCII classes for normalise: one table look-up per byte */
#define C_LETTER 1
#define C_DIGIT 2
#define C_VOWEL 4
#define C_URL 8        /* h, w: a link may start here */
#define C_HIGH 16      /* not ASCII: decode */

static const unsigned char ascii_class[256] = {
#define L C_LETTER
#define V (C_LETTER | C_VOWEL)
#define U (C_LETTER | C_URL)
#define D C_DIGIT
	['0'] = D, ['1'] = D, ['2'] = D, ['3'] = D, ['4'] = D,
	['5'] = D, ['6'] = D, ['7'] = D, ['8'] = D, ['9'] = D,
	['a'] = V, ['b'] = L, ['c'] = L, ['d'] = L, ['e'] = V, ['f'] = L,
	['g'] = L, ['h'] = U, ['i'] = V, ['j'] = L, ['k'] = L, ['l'] = L,
	['m'] = L, ['n'] = L, ['o'] = V, ['p'] = L, ['q'] = L, ['r'] = L,
	['s'] = L, ['t'] = L, ['u'] = V, ['v'] = L, ['w'] = U, ['x'] = L,
	['y'] = V, ['z'] = L,
	['A'] = V, ['B'] = L, ['C'] = L, ['D'] = L, ['E'] = V, ['F'] = L,
	['G'] = L, ['H'] = U, ['I'] = V, ['J'] = L, ['K'] = L, ['L'] = L,
	['M'] = L, ['N'] = L, ['O'] = V, ['P'] = L, ['Q'] = L, ['R'] = L,
	['S'] = L, ['T'] = L, ['U'] = V, ['V'] = L, ['W'] = U, ['X'] = L,
	['Y'] = V, ['Z'] = L,
#undef L
#undef V
#undef U
#undef D
#define H16 C_HIGH, C_HIGH, C_HIGH, C_HIGH, C_HIGH, C_HIGH, C_HIGH, C_HIGH, \
	C_HIGH, C_HIGH, C_HIGH, C_HIGH, C_HIGH, C_HIGH, C_HIGH, C_HIGH
	[0x80] = H16, H16, H16, H16, H16, H16, H16, H16
#undef H16
};

/* reserve - room for N more bytes in OUT (grown in the arena) */
static inline void
reserve(struct fbuf *o, size_t n)
{
	if (o->len + n > o->cap) {
		size_t ncap = (o->cap + n) * 2 + 64;
		char *np = xm_arena_alloc(o->a, ncap);

		if (o->len)
			memcpy(np, o->p, o->len);
		o->p = np;
		o->cap = ncap;
	}
}

#ifdef __SSE2__
/* vowel_bytes - 0xff where a byte of LO is a lower-case vowel (a e i o u
 * y), 0 elsewhere */
static inline __m128i
vowel_bytes(__m128i lo)
{
	return _mm_or_si128(_mm_or_si128(
	    _mm_cmpeq_epi8(lo, _mm_set1_epi8('a')),
	    _mm_cmpeq_epi8(lo, _mm_set1_epi8('e'))),
	    _mm_or_si128(_mm_or_si128(
	    _mm_cmpeq_epi8(lo, _mm_set1_epi8('i')),
	    _mm_cmpeq_epi8(lo, _mm_set1_epi8('o'))),
	    _mm_or_si128(
	    _mm_cmpeq_epi8(lo, _mm_set1_epi8('u')),
	    _mm_cmpeq_epi8(lo, _mm_set1_epi8('y')))));
}
#endif

/* vowels_lc - vowels (a e i o u y) among the N < 25 lower-case ASCII
 * letters at W; asked only of the words of six letters or more without
 * digits (the "hardly any vowel" token test), so not of most words. W
 * has 32 readable bytes (the word buffer's room). */
static inline unsigned
vowels_lc(const char *w, unsigned n)
{
	unsigned v = 0, i;

#ifdef __SSE2__
	for (i = 0; i < n; i += 16) {
		__m128i lo = _mm_loadu_si128((const __m128i *)(w + i));
		__m128i vw = vowel_bytes(lo);
		unsigned x = (unsigned)_mm_movemask_epi8(vw);

		if (n - i < 16)
			x &= (1u << (n - i)) - 1;
		/* popcount without the libgcc call */
		x = x - ((x >> 1) & 0x5555u);
		x = (x & 0x3333u) + ((x >> 2) & 0x3333u);
		x = (x + (x >> 4)) & 0x0f0fu;
		v += (x + (x >> 8)) & 0x1fu;
	}
#else
	for (i = 0; i < n; i++)
		v += (ascii_class[(unsigned char)w[i]] & C_VOWEL) != 0;
#endif
	return v;
}

/* add_link - the link of UL bytes at P: " <url>" into OUT, the link to
 * URLS (when kept, at most XM_FP_MAX_URLS) */
static inline void
add_link(struct fbuf *out, const unsigned char *p, size_t ul,
    struct span *urls, unsigned *nurls)
{
	if (urls != NULL && *nurls < XM_FP_MAX_URLS) {
		urls[*nurls].p = (const char *)p;
		urls[(*nurls)++].n = ul;
	}
	reserve(out, 6);
	memcpy(out->p + out->len, " <url>", 6);
	out->len += 6;
}

#ifdef __SSE2__
/* scan16 - the masks of 16 bytes at S, shifted by SHIFT into M: ASCII
 * letters (their lower-case form in *LO, as bytes in *LETV), digits and
 * non-ASCII bytes (stop), h or w and t or w (lower-case: where a link
 * may start, "ht" or "ww") */
struct scan {
	uint64_t let, stop, hw, tw;
};

static inline __attribute__((always_inline)) void
scan16(const unsigned char *s, unsigned shift, struct scan *m, __m128i *lo,
    __m128i *letv)
{
	__m128i v = _mm_loadu_si128((const __m128i *)s);
	__m128i l = _mm_or_si128(v, _mm_set1_epi8(0x20));
	/* unsigned l - 'a' <= 25 (v - '0' <= 9) via signed compares after
	 * the bias */
	__m128i let = _mm_cmplt_epi8(_mm_sub_epi8(l, _mm_set1_epi8(BIASED('a'))),
	    _mm_set1_epi8(-128 + 26));
	__m128i dig = _mm_cmplt_epi8(_mm_sub_epi8(v, _mm_set1_epi8(BIASED('0'))),
	    _mm_set1_epi8(-128 + 10));
	__m128i w = _mm_cmpeq_epi8(l, _mm_set1_epi8('w'));

	m->let |= (uint64_t)(unsigned)_mm_movemask_epi8(let) << shift;
	m->stop |= (uint64_t)(unsigned)_mm_movemask_epi8(
	    _mm_or_si128(dig, v)) << shift;     /* digits, high bit set */
	m->hw |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_or_si128(w,
	    _mm_cmpeq_epi8(l, _mm_set1_epi8('h')))) << shift;
	m->tw |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_or_si128(w,
	    _mm_cmpeq_epi8(l, _mm_set1_epi8('t')))) << shift;
	*lo = l;
	*letv = let;
}

/* popcount64 - the set bits of X (no popcnt instruction in plain
 * x86-64, and libgcc's is a call) */
static inline unsigned
popcount64(uint64_t x)
{
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (unsigned)((x * 0x0101010101010101ULL) >> 56);
}

/* fast_words - the words of the 32 bytes at SRC (P's bytes, or the
 * fewer than 32 before END followed by NULs, which fold like the end of
 * the text: a separator) that are plain
 * ASCII letter runs ending inside them, the separators around them, and
 * a link starting at one of them, folded into OUT exactly as normalise's
 * word loop would (a run of fewer than 32 letters is never cut, and is a
 * token only by the vowel test or when 25 letters long); WORDS counts
 * the real words. Stops at the first digit or non-ASCII byte and at a
 * run that reaches it or the end of the bytes (it may go on: *WORD_NEXT
 * is set when the word loop must take it). Returns the bytes consumed
 * (0: none).
 *
 * Words with single separators between them are one stretch of the
 * lower-cased bytes (separators as spaces): each stretch is one copy, so
 * a block costs about as much as one word did. */
static inline __attribute__((always_inline)) size_t
fast_words(const unsigned char *src, const unsigned char *p,
    const unsigned char *end, struct fbuf *out, unsigned *words,
    struct span *urls, unsigned *nurls, bool *word_next)
{
	struct scan m = { 0, 0, 0, 0 };
	__m128i lo0, lo1, let0, let1;
	size_t avail = (size_t)(end - p), ul = 0;
	unsigned limit, cut;
	uint64_t lm, starts, cand, lng, tok = 0;
	char tmp[80], *o;

	scan16(src, 0, &m, &lo0, &let0);
	scan16(src + 16, 16, &m, &lo1, &let1);
	limit = (unsigned)__builtin_ctzll(m.stop | 1ULL << 32);
	lm = m.let & ((1ULL << limit) - 1);
	if (lm == 0)                 /* separators up to the stop */
		return limit < avail ? limit : avail;
	starts = lm & ~(lm << 1);
	cut = limit;
	if ((lm >> (limit - 1)) & 1) {
		/* the last run reaches the stop: it may go on */
		cut = 63 - (unsigned)__builtin_clzll(starts);
		starts &= ~(1ULL << cut);
		lm &= (1ULL << cut) - 1;
		*word_next = limit < 32;
	}
	/* a link may start at a word beginning "ht" or "ww" (any case):
	 * the only words url_start must look at ("how", "we": not; "hw"
	 * and "wt" are asked too, and are none) */
	for (cand = starts & m.hw & (m.tw >> 1);
	    cand != 0; cand &= cand - 1) {
		unsigned i = (unsigned)__builtin_ctzll(cand);

		if ((ul = url_start((const char *)p + i, (const char *)end)) > 0) {
			cut = i;             /* the words before it, then it */
			starts &= (1ULL << i) - 1;
			lm &= (1ULL << i) - 1;
			*word_next = false;
			break;
		}
	}
	reserve(out, 112);
	/* tokens: runs of six letters or more with hardly any vowel, and
	 * of 25 or more */
	lng = lm & (lm >> 1);
	lng &= lng >> 2;
	lng &= starts & (lm >> 4) & (lm >> 5);
	if (lng != 0) {
		uint64_t vm = (unsigned)_mm_movemask_epi8(vowel_bytes(lo0)) |
		    (uint64_t)(unsigned)_mm_movemask_epi8(vowel_bytes(lo1)) << 16;
		for (; lng != 0; lng &= lng - 1) {
			unsigned i = (unsigned)__builtin_ctzll(lng);
			unsigned len = (unsigned)__builtin_ctzll(~(lm >> i));
			uint64_t x = (vm >> i) & ((1ULL << len) - 1);

			/* vowels * 6 < len: at most (len - 1) / 6 vowels,
			 * so none left after dropping that many */
			if (len >= 7)
				x &= x - 1;
			if (len >= 13)
				x &= x - 1;
			if (len >= 19)
				x &= x - 1;
			if (x == 0 || len >= 25)
				tok |= 1ULL << i;
		}
	}
	/* tmp[0] the space before a word at 0, then the bytes lower-cased,
	 * separators as spaces */
	tmp[0] = ' ';
	_mm_storeu_si128((__m128i *)(tmp + 1), _mm_or_si128(
	    _mm_and_si128(let0, lo0),
	    _mm_andnot_si128(let0, _mm_set1_epi8(' '))));
	_mm_storeu_si128((__m128i *)(tmp + 17), _mm_or_si128(
	    _mm_and_si128(let1, lo1),
	    _mm_andnot_si128(let1, _mm_set1_epi8(' '))));
	_mm_storeu_si128((__m128i *)(tmp + 33), _mm_set1_epi8(' '));
	_mm_storeu_si128((__m128i *)(tmp + 49), _mm_set1_epi8(' '));
	o = out->p + out->len;
	if (tok == 0) {
		/* the words and the one separator before each, in tmp's
		 * positions: each stretch of them copied at once */
		uint64_t k = ((lm | (starts >> 1)) << 1) | (starts & 1);

		while (k != 0) {
			unsigned at = (unsigned)__builtin_ctzll(k);
			unsigned run = (unsigned)__builtin_ctzll((k >> at) + 1);

			memcpy(o, tmp + at, 32);
			o += run;
			k &= k + (1ULL << at);   /* that stretch done */
		}
		*words += popcount64(starts);
	} else
		for (; starts != 0; starts &= starts - 1) {
			unsigned i = (unsigned)__builtin_ctzll(starts);

			*o++ = ' ';
			if ((tok >> i) & 1)
				*o++ = '*';
			else {
				memcpy(o, tmp + 1 + i, 32);
				o += __builtin_ctzll(~(lm >> i));
				(*words)++;
			}
		}
	out->len = (size_t)(o - out->p);
	if (ul > 0) {
		add_link(out, p + cut, ul, urls, nurls);
		return cut + ul;
	}
	return cut < avail ? cut : avail;
}
#endif

/* normalise - fold TEXT into OUT (" word" by word); links to URLS.
 * Words are written straight into OUT, then replaced by "#" or "*" when
 * they turn out to be numbers or tokens; ASCII bytes are classified by
 * one table look-up (this runs over every byte of every message). */
static unsigned
normalise(const char *text, size_t n, struct fbuf *outp, struct span *urls,
    unsigned *nurls)
{
	const unsigned char *p = (const unsigned char *)text, *end = p + n;
	unsigned words = 0;
	/* a local copy: the word bytes written through W could alias the
	 * caller's buffer state, which would then be reloaded after every
	 * store */
	struct fbuf ob = *outp, *out = &ob;

	while (p < end) {
		unsigned cl;
		size_t ul, wl, hl, hn;
		unsigned letters;
		char *w;
		unsigned digits = 0, ascii = 0, high = 0;
		bool prev_digit = false;

		cl = ascii_class[*p];
#ifdef __SSE2__
		/* plain words, several at a time (not from a digit or a
		 * non-ASCII byte: nothing to do there) */
		if (!(cl & (C_DIGIT | C_HIGH))) {
			size_t used = 0;
			bool word_next = false;

			if (end - p >= 32)
				used = fast_words(p, p, end, out, &words, urls,
				    nurls, &word_next);
			else {
				/* the last bytes, followed by NULs (the end of
				 * the text folds like a separator): the text's
				 * last 32 bytes when it has them (two moves),
				 * else a copy */
				unsigned char pad[64];
				const unsigned char *src = pad;
				size_t left = (size_t)(end - p);

				_mm_storeu_si128((__m128i *)(pad + 32),
				    _mm_setzero_si128());
				_mm_storeu_si128((__m128i *)(pad + 48),
				    _mm_setzero_si128());
				if (n >= 32) {
					memcpy(pad, end - 32, 32);
					src = pad + 32 - left;
				} else {
					memset(pad, 0, 32);
					memcpy(pad, p, left);
				}
				used = fast_words(src, p, end, out, &words, urls,
				    nurls, &word_next);
			}
			p += used;
			if (!word_next) {
				if (used > 0)
					continue;
			} else
				cl = ascii_class[*p];   /* a letter: its word */
		}
#endif
		if (cl == 0) {                  /* ASCII, not a word */
			p++;
			continue;
		}
		reserve(out, WORD_MAX + 24);
		/* the word, written after its space (both past the text's
		 * end until the word is taken) */
		w = out->p + out->len;
		*w++ = ' ';
		wl = 0;
		if (cl & C_HIGH) {
			if (!high_cp(p, end, &hl, w, &hn)) {
				p += hl;             /* no word character */
				continue;
			}
			p += hl;
			high = 1;
			wl = hn;
		} else if ((cl & C_URL) && (ul = url_start((const char *)p,
		    (const char *)end)) > 0) {
			add_link(out, p, ul, urls, nurls);
			p += ul;
			continue;
		}
		while (p < end) {
			unsigned k = ascii_class[*p];

			if (k & C_LETTER) {
#ifdef __SSE2__
				/* a run of ASCII letters, 16 bytes at a time,
				 * lower-cased (b | 0x20 is a-z exactly for the
				 * letters); W has 16 bytes of room past
				 * WORD_MAX. Vowels are counted only for the
				 * words that need them (see vowels_lc). */
				if (end - p >= 16) {
					__m128i v = _mm_loadu_si128((const __m128i *)p);
					__m128i lo = _mm_or_si128(v, _mm_set1_epi8(0x20));
					/* unsigned lo - 'a' <= 25, via signed
					 * compare after the bias */
					__m128i d = _mm_sub_epi8(lo,
					    _mm_set1_epi8(BIASED('a')));
					__m128i let = _mm_cmplt_epi8(d,
					    _mm_set1_epi8(-128 + 26));
					unsigned m = (unsigned)_mm_movemask_epi8(let);
					unsigned run = (unsigned)__builtin_ctz(~m |
					    0x10000u);

					ascii += run;
					prev_digit = false;
					_mm_storeu_si128((__m128i *)(w + wl), lo);
					wl += run;
					if (wl > WORD_MAX)
						wl = WORD_MAX;
					p += run;
					/* the common end of a word: a space or
					 * punctuation right after the run */
					if (run < 16 && ascii_class[*p] == 0)
						break;
					continue;
				}
#endif
				prev_digit = false;
				ascii++;
				if (wl < WORD_MAX)
					w[wl++] = (char)(*p | 0x20);
				p++;
				continue;
			}
			if (k & C_DIGIT) {
				digits++;
				if (!prev_digit && wl < WORD_MAX)
					w[wl++] = '#';
				prev_digit = true;
				p++;
				continue;
			}
			if (!(k & C_HIGH))
				break;
			/* non-ASCII characters, while they come */
			do {
				if (!high_cp(p, end, &hl, w + wl, &hn))
					goto word_end;
				p += hl;
				high++;
				if (wl + 4 <= WORD_MAX)
					wl += hn;
			} while (p < end && *p >= 0x80);
			prev_digit = false;
		}
word_end:
		letters = ascii + high;
		if (letters == 0) {
			w[0] = '#';
			wl = 1;
		} else if ((digits > 0 && letters + digits >= 4 && letters >= 2) ||
		    letters >= 25 || (ascii == letters && letters >= 6 &&
		    vowels_lc(w, letters) * 6 < letters)) {
			w[0] = '*';
			wl = 1;
		} else
			words++;
		out->len = (size_t)(w - out->p) + wl;
	}
	*outp = ob;
	return words;
}

/* xm_fp_normalise - the folded text, in arena */
char *
xm_fp_normalise(struct xm_arena *a, const char *text, size_t n,
    unsigned *words)
{
	struct fbuf b = { a, NULL, 0, 0 };
	unsigned wc;

	wc = normalise(text, n, &b, NULL, NULL);
	if (words)
		*words = wc;
	reserve(&b, 1);
	b.p[b.len] = '\0';
	return b.len > 0 ? b.p + 1 : b.p;   /* without the first space */
}

/* link_hint - might TEXT hold a link ("://" or "www." in any case) */
static bool
link_hint(const char *s)
{
	for (; *s != '\0'; s++)
		if ((s[0] == ':' && s[1] == '/' && s[2] == '/') ||
		    ((s[0] | 0x20) == 'w' && (s[1] | 0x20) == 'w' &&
		    (s[2] | 0x20) == 'w' && s[3] == '.'))
			return true;
	return false;
}

/* xm_fp_compute - text and link-set fingerprints */
void
xm_fp_compute(struct xm_arena *a, const char *const *texts, size_t ntexts,
    const char *const *extra_urls, size_t n_extra, unsigned min_words,
    size_t min_chars, struct xm_fp *out)
{
	struct span urls[XM_FP_MAX_URLS];
	struct span keys[XM_FP_MAX_URLS];
	unsigned nurls = 0, nkeys = 0, i, j;
	size_t len[XM_FP_MAX_TEXTS], total = 0, chars;
	/* the folded text is only hashed: on the stack while it fits (no
	 * arena block, zeroed, per event), in the arena beyond */
	char fold[4096];
	struct fbuf b = { a, fold, 0, sizeof(fold) };
	uint64_t h;

	memset(out, 0, sizeof(*out));
	if (ntexts > XM_FP_MAX_TEXTS)
		ntexts = XM_FP_MAX_TEXTS;
	for (i = 0; i < ntexts; i++)
		total += len[i] = texts[i] != NULL ? strlen(texts[i]) : 0;
	if (total < min_chars) {
		/* short texts without a link ("ok", "hi"): nothing to fold */
		bool link = false;

		for (i = 0; i < ntexts && !link; i++)
			link = texts[i] != NULL && link_hint(texts[i]);
		if (!link)
			ntexts = 0;
	}
	for (i = 0; i < ntexts; i++)
		if (texts[i] != NULL)
			out->words += normalise(texts[i], len[i], &b, urls,
			    &nurls);
	/* b holds " word word ...": the text is what follows the first
	 * space */
	out->chars = chars = b.len > 0 ? b.len - 1 : 0;
	if (out->words >= min_words && out->words > 0 && chars >= min_chars) {
		out->has_text = true;
		out->text = xm_hash64(b.p + 1, chars, 0x7465787400ULL);
	}
	for (i = 0; i < n_extra && nurls < XM_FP_MAX_URLS; i++)
		if (extra_urls[i] != NULL) {
			urls[nurls].p = extra_urls[i];
			urls[nurls++].n = strlen(extra_urls[i]);
		}
	for (i = 0; i < nurls; i++) {
		size_t kl;
		char *k = url_key(a, urls[i].p, urls[i].n, &kl);

		if (k == NULL)
			continue;
		/* in order (strcmp, as qsort had them): mostly 1-2 keys */
		for (j = nkeys++; j > 0 && strcmp(keys[j - 1].p, k) > 0; j--)
			keys[j] = keys[j - 1];
		keys[j].p = k;
		keys[j].n = kl;
	}
	if (nkeys == 0)
		return;
	h = 0x75726c7300ULL;
	for (i = 0; i < nkeys; i++) {
		if (i > 0 && strcmp(keys[i].p, keys[i - 1].p) == 0)
			continue;
		h = xm_hash64(keys[i].p, keys[i].n + 1, h);   /* with the NUL */
		out->nurls++;
	}
	out->has_urls = true;
	out->urls = h;
}
