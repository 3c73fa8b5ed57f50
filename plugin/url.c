/*
 * url.c - finding links in text and normalising them (see url.h)
 *
 * Finding: a text is cut into words at white space; inside a word a link
 * starts at "scheme://", at a known opaque scheme ("aim:", "tel:"...) that
 * begins a word, at "www.", or as a bare host.tld whose last label is an
 * ICANN public suffix (so "file.txt" is not a link but "evil.ru/x" is).
 * A link ends at white space, quotes, angle brackets or Unicode sentence
 * punctuation; trailing punctuation and unbalanced closing brackets are
 * left out, as rules.c and most clients do.
 *
 * Normalising: libcurl's URL API (curl_url) parses hierarchical links; a
 * link it refuses (a port over 65535, odd characters in the host) is
 * taken apart by hand so that refusing it cannot hide it. The host is
 * percent-decoded, its ideographic and full-width dots made dots, case
 * folded, trailing dots dropped, IPv4 in any numeric form rewritten as a
 * dotted quad, IPv6 in canonical text, and a Unicode name converted to
 * an A-label with libidn2 (UTS #46, non-transitional, then transitional).
 * libpsl (psl_latest: the system's list, else the built-in one) names the
 * registrable domain.
 *
 * Ownership: results in the caller's arena; the libpsl context is loaded
 * once per process and never freed (read-only, shared by all threads).
 * Sets own copies of their strings (heap).
 *
 * Failure: a link that cannot be made sense of gives -1; nothing here
 * crashes on peer input (every reader is bounded by its length).
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <curl/curl.h>
#include <idn2.h>
#include <libpsl.h>

#include "url.h"

/* ---- the public suffix list ---- */

static const psl_ctx_t *url_psl;
static pthread_once_t url_psl_once = PTHREAD_ONCE_INIT;

/* url_psl_load - the system's list, or libpsl's built-in one */
static void
url_psl_load(void)
{
	url_psl = psl_latest(NULL);
	if (url_psl == NULL)
		url_psl = psl_builtin();
	if (url_psl == NULL)
		log_warn("url: no public suffix list (libpsl): registrable "
		    "domains unknown");
}

/* url_psl_ctx - the process's libpsl context (may be NULL) */
static const psl_ctx_t *
url_psl_ctx(void)
{
	pthread_once(&url_psl_once, url_psl_load);
	return url_psl;
}

/* ---- characters ---- */

/* url_alpha - ASCII letter */
static bool
url_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* url_alnum - ASCII letter or digit */
static bool
url_alnum(int c)
{
	return url_alpha(c) || (c >= '0' && c <= '9');
}

/* url_scheme_char - may appear in a scheme after its first letter */
static bool
url_scheme_char(int c)
{
	return url_alnum(c) || c == '+' || c == '-' || c == '.';
}

/* url_lower - ASCII lower case */
static int
url_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* url_hex - value of a hex digit, -1 if none */
static int
url_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = url_lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* url_cp_at - the code point at S[i] (end E) and its length in *W; a bad
 * sequence reads as one byte U+FFFD */
static long
url_cp_at(const char *s, size_t i, size_t e, size_t *w)
{
	const char *p = s + i;
	long cp;

	if ((unsigned char)*p < 0x80) {
		*w = 1;
		return (unsigned char)*p;
	}
	cp = xm_utf8_next(&p, s + e);
	if (cp < 0) {
		*w = 1;
		return 0xfffd;
	}
	*w = (size_t)(p - (s + i));
	return cp;
}

/* url_space - white space ends a word (ASCII and Unicode spaces) */
static bool
url_space(long cp)
{
	return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' ||
	    cp == '\f' || cp == '\v' || cp == 0xa0 || cp == 0x1680 ||
	    (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
	    cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* url_dot_cp - the dots UTS #46 maps to "." (ideographic, full-width) */
static bool
url_dot_cp(long cp)
{
	return cp == 0x3002 || cp == 0xff0e || cp == 0xff61;
}

/* url_stop_cp - non-ASCII punctuation that ends a link written in text */
static bool
url_stop_cp(long cp)
{
	return (cp >= 0x2010 && cp <= 0x205e) || (cp >= 0x3000 &&
	    cp <= 0x303f && !url_dot_cp(cp)) || (cp >= 0xff01 &&
	    cp <= 0xff0f && !url_dot_cp(cp)) || (cp >= 0xff1a &&
	    cp <= 0xff20) || cp == 0xab || cp == 0xbb || cp == 0xfffd ||
	    (cp >= 0xfe10 && cp <= 0xfe6f) || (cp >= 0x1f000);
}

/* url_uri_byte - an ASCII byte that may be part of a link in text */
static bool
url_uri_byte(int c)
{
	return c > 0x20 && c != 0x7f && c != '<' && c != '>' && c != '"' &&
	    c != '`';
}

/* ---- finding links in text ---- */

/* the opaque schemes recognised in plain text ("scheme:" with no "//") */
static const char *const url_opaque_schemes[] = {
	"aim", "ymsgr", "msnim", "skype", "callto", "sip", "sips", "tel",
	"irc", "ircs", "icq", "gtalk", "xfire", "steam", "facetime", "sms",
	"xmpp", "mailto", "magnet", "javascript", "vbscript", "data", "file",
	"market", "itms", "itms-services", "intent", "tg", "whatsapp",
	"viber", "slack", "discord", "zoommtg", "ms-msdt", "search-ms",
	"ms-officecmd", "ms-settings", "bitcoin", "geo",
};

/* url_is_opaque_scheme - S[0..N) is one of url_opaque_schemes */
static bool
url_is_opaque_scheme(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(url_opaque_schemes); i++)
		if (strlen(url_opaque_schemes[i]) == n &&
		    strncasecmp(s, url_opaque_schemes[i], n) == 0)
			return true;
	return false;
}

/* url_end - where a link starting at S[start] ends (before E): the last
 * link character, trailing punctuation and unbalanced brackets left out */
static size_t
url_end(const char *s, size_t start, size_t e)
{
	size_t p = start, i, w;
	int paren = 0, bracket = 0;
	long cp;
	char ch;

	while (p < e) {
		if ((unsigned char)s[p] < 0x80) {
			if (!url_uri_byte((unsigned char)s[p]))
				break;
			p++;
			continue;
		}
		cp = url_cp_at(s, p, e, &w);
		if (url_space(cp) || url_stop_cp(cp))
			break;
		p += w;
	}
	for (i = start; i < p; i++) {
		if (s[i] == '(')
			paren++;
		else if (s[i] == ')')
			paren--;
		else if (s[i] == '[')
			bracket++;
		else if (s[i] == ']')
			bracket--;
	}
	while (p > start) {
		ch = s[p - 1];
		if (p - start >= 3 && (memcmp(s + p - 3, "\xe3\x80\x82", 3) == 0 ||
		    memcmp(s + p - 3, "\xef\xbc\x8e", 3) == 0 ||
		    memcmp(s + p - 3, "\xef\xbd\xa1", 3) == 0))
			p -= 3;     /* a sentence's ideographic full stop */
		else if (strchr(".,;:!?'*", ch) != NULL)
			p--;
		else if (ch == ')' && paren < 0) {
			paren++;
			p--;
		} else if (ch == ']' && bracket < 0) {
			bracket++;
			p--;
		} else
			break;
	}
	return p;
}

/* url_host_run - end of a host-looking run at S[p] (letters, digits, '-',
 * '.', non-ASCII letters, ideographic dots); *DOTS counts the dots */
static size_t
url_host_run(const char *s, size_t p, size_t e, size_t *dots)
{
	size_t w;
	long cp;

	*dots = 0;
	while (p < e) {
		if ((unsigned char)s[p] < 0x80) {
			if (s[p] == '.')
				(*dots)++;
			else if (!url_alnum((unsigned char)s[p]) && s[p] != '-' &&
			    s[p] != '_')
				break;
			p++;
			continue;
		}
		cp = url_cp_at(s, p, e, &w);
		if (url_dot_cp(cp))
			(*dots)++;
		else if (url_space(cp) || url_stop_cp(cp) || cp < 0xc0)
			break;
		p += w;
	}
	return p;
}

/* url_bare_at - a bare link (www. or host.tld) starting at S[q]: its end,
 * or 0 */
static size_t
url_bare_at(const char *s, size_t q, size_t e)
{
	size_t h, hend, dots, p;
	bool www;

	if (q >= e || !(url_alnum((unsigned char)s[q]) ||
	    (unsigned char)s[q] >= 0x80))
		return 0;
	www = e - q > 4 && strncasecmp(s + q, "www.", 4) == 0;
	hend = url_host_run(s, q, e, &dots);
	h = hend;
	while (h > q && s[h - 1] == '.')
		h--;            /* "see example.com." */
	if (dots == 0 || h <= q || (www && h <= q + 4) ||
	    (memchr(s + q, '.', h - q) == NULL && !www &&
	    memchr(s + q, 0xe3, h - q) == NULL &&
	    memchr(s + q, 0xef, h - q) == NULL))
		return 0;       /* "place." is a word and a full stop */
	if (!www && !xm_url_has_public_suffix(s + q, h - q))
		return 0;
	/* an e-mail address is not a link to its domain */
	if (hend < e && s[hend] == '@')
		return 0;
	p = hend;
	if (p < e && (s[p] == '/' || s[p] == ':' || s[p] == '?' ||
	    s[p] == '#')) {
		if (s[p] == ':' && !(p + 1 < e && s[p + 1] >= '0' &&
		    s[p + 1] <= '9'))
			return h;
		return url_end(s, q, e);
	}
	return h;
}

/* url_in_word - the first link in S[p..e) (inside one word): 1 with its
 * bounds, or 0 */
static int
url_in_word(const char *s, size_t p, size_t e, size_t *ts, size_t *te,
    bool *bare)
{
	size_t q = p, c, st, end;

	/* leading punctuation: "(example.com)", "<http://...>" */
	while (q < e && strchr("([{<'\"", s[q]) != NULL)
		q++;
	if ((end = url_bare_at(s, q, e)) > q) {
		*ts = q;
		*te = end;
		*bare = true;
		return 1;
	}
	for (c = q; c < e; c++) {
		if (s[c] != ':')
			continue;
		st = c;
		while (st > q && url_scheme_char((unsigned char)s[st - 1]))
			st--;
		while (st < c && !url_alpha((unsigned char)s[st]))
			st++;
		if (st == c)
			continue;
		if (c + 2 < e && s[c + 1] == '/' && s[c + 2] == '/') {
			end = url_end(s, st, e);
			if (end > c + 3) {
				*ts = st;
				*te = end;
				*bare = false;
				return 1;
			}
			continue;
		}
		/* opaque: a known scheme at a word boundary, something after */
		if ((st == q || !url_alnum((unsigned char)s[st - 1])) &&
		    url_is_opaque_scheme(s + st, c - st) && c + 1 < e &&
		    url_uri_byte((unsigned char)s[c + 1])) {
			end = url_end(s, st, e);
			if (end > c + 1) {
				*ts = st;
				*te = end;
				*bare = false;
				return 1;
			}
		}
	}
	return 0;
}

/* url_ascii_space - ASCII white space */
static inline bool
url_ascii_space(int c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* ASCII bytes in a word: 0 plain, 1 white space, 2 dot or colon */
static const unsigned char url_word_class[128] = {
	['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1,
	['.'] = 2, [':'] = 2,
};

/* url_next_mark - the first '.', ':' or non-ASCII byte of S[i..len), or
 * LEN: only a word with one of them can hold a link (16 bytes at a time) */
static size_t
url_next_mark(const char *s, size_t i, size_t len)
{
	int c;
#ifdef __SSE2__
	const __m128i dot = _mm_set1_epi8('.'), colon = _mm_set1_epi8(':');
	__m128i v;
	int m;

	for (; i + 16 <= len; i += 16) {
		v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		m = _mm_movemask_epi8(_mm_or_si128(v, _mm_or_si128(
		    _mm_cmpeq_epi8(v, dot), _mm_cmpeq_epi8(v, colon))));
		if (m != 0)
			return i + (size_t)__builtin_ctz((unsigned)m);
	}
#endif
	for (; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '.' || c == ':' || c >= 0x80)
			return i;
	}
	return len;
}

/* xm_url_find - the links of a text, in order */
size_t
xm_url_find(const char *text, size_t len, struct xm_url_span *out, size_t max)
{
	size_t i = 0, n = 0, we, w, p, ts, te, j;
	bool bare, maybe;
	long cp;
	int c;

	while (i < len && n < max) {
		/* skip the words that cannot hold a link: on to the word of the
		 * next mark (a non-ASCII space is a mark itself, so the way
		 * back is over ASCII only) */
		if ((j = url_next_mark(text, i, len)) >= len)
			break;
		while (j > i && !url_ascii_space((unsigned char)text[j - 1]))
			j--;
		i = j;
		c = (unsigned char)text[i];
		if (c < 0x80) {
			if (url_ascii_space(c)) {
				i++;
				continue;
			}
		} else {
			cp = url_cp_at(text, i, len, &w);
			if (url_space(cp)) {
				i += w;
				continue;
			}
		}
		/* the word; only a dot, a colon or a non-ASCII character
		 * (an ideographic dot) can make a link of it */
		maybe = false;
		for (we = i; we < len; ) {
			c = (unsigned char)text[we];
			if (c < 0x80) {
				if (url_word_class[c] == 0) {
					we++;
					continue;
				}
				if (url_word_class[c] == 1)
					break;
				maybe = true;
				we++;
				continue;
			}
			cp = url_cp_at(text, we, len, &w);
			if (url_space(cp))
				break;
			maybe = true;
			we += w;
		}
		for (p = i; maybe && p < we && n < max; p = te) {
			if (!url_in_word(text, p, we, &ts, &te, &bare))
				break;
			if (te - ts > XM_URL_MAX_LEN)
				te = ts + XM_URL_MAX_LEN;
			out[n].off = ts;
			out[n].len = te - ts;
			out[n].bare = bare;
			n++;
		}
		i = we;
	}
	return n;
}

/* ---- hosts ---- */

/* xm_url_has_public_suffix - HOST ends in an ICANN suffix after a label */
bool
xm_url_has_public_suffix(const char *host, size_t len)
{
	const psl_ctx_t *psl = url_psl_ctx();
	char buf[256], *ascii = NULL;
	const char *last;
	size_t i, k = 0;
	bool nonascii = false, r;

	if (psl == NULL || len == 0 || len >= sizeof(buf))
		return false;
	for (i = 0; i < len; i++) {
		if ((unsigned char)host[i] >= 0x80)
			nonascii = true;
		buf[k++] = (char)url_lower((unsigned char)host[i]);
	}
	buf[k] = '\0';
	if (nonascii) {
		if (idn2_to_ascii_8z(buf, &ascii, IDN2_NONTRANSITIONAL |
		    IDN2_NFC_INPUT) != IDN2_OK &&
		    idn2_to_ascii_8z(buf, &ascii, IDN2_TRANSITIONAL |
		    IDN2_NFC_INPUT) != IDN2_OK)
			return false;
		if (strlen(ascii) >= sizeof(buf)) {
			idn2_free(ascii);
			return false;
		}
		strcpy(buf, ascii);
		idn2_free(ascii);
	}
	if ((last = strrchr(buf, '.')) == NULL || last == buf ||
	    last[1] == '\0')
		return false;
	r = psl_is_public_suffix2(psl, last + 1, PSL_TYPE_ICANN |
	    PSL_TYPE_NO_STAR_RULE) != 0;
	return r;
}

/* xm_url_registrable - the registrable domain of HOST */
const char *
xm_url_registrable(struct xm_arena *a, const char *host)
{
	const psl_ctx_t *psl = url_psl_ctx();
	const char *d;

	if (psl == NULL || host == NULL || *host == '\0')
		return NULL;
	d = psl_registrable_domain(psl, host);
	return d != NULL ? xm_arena_strdup(a, d) : NULL;
}

/* url_ipv4_part - one part of an IPv4 form: decimal, 0x hex, 0 octal */
static int
url_ipv4_part(const char *s, size_t n, unsigned long long *v, bool *odd)
{
	unsigned long long x = 0;
	unsigned base = 10;
	size_t i = 0;
	int d;

	if (n == 0)
		return -1;
	if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
		*odd = true;
	} else if (n >= 2 && s[0] == '0') {
		base = 8;
		i = 1;
		*odd = true;
	}
	for (; i < n; i++) {
		d = url_hex((unsigned char)s[i]);
		if (d < 0 || (unsigned)d >= base)
			return -1;
		x = x * base + (unsigned)d;
		if (x > 0xffffffffULL)
			return -1;
	}
	*v = x;
	return 0;
}

/* xm_url_ipv4 - every IPv4 form a browser accepts (WHATWG URL) */
int
xm_url_ipv4(const char *s, size_t len, uint32_t *out, bool *odd)
{
	unsigned long long part[4], lim;
	size_t np = 0, i, st = 0;
	uint32_t v = 0;

	*odd = false;
	if (len == 0 || len > 64)
		return -1;
	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (np == 4 || url_ipv4_part(s + st, i - st, &part[np], odd) < 0)
			return -1;
		np++;
		st = i + 1;
	}
	if (np != 4)
		*odd = true;
	for (i = 0; i + 1 < np; i++) {
		if (part[i] > 255)
			return -1;
		v |= (uint32_t)part[i] << (24 - 8 * i);
	}
	lim = np == 1 ? 0xffffffffULL : (1ULL << (8 * (5 - np))) - 1;
	if (part[np - 1] > lim)
		return -1;
	v |= (uint32_t)part[np - 1];
	*out = v;
	return 0;
}

/* xm_url_ip_public - not private, loopback, link-local, shared, multicast,
 * reserved or unspecified (documentation ranges count as public: they
 * stand in for public addresses) */
bool
xm_url_ip_public(const uint8_t *ad, int family)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };
	static const uint8_t zero[16];

	if (family == 6) {
		if (memcmp(ad, v4mapped, 12) == 0)
			return xm_url_ip_public(ad + 12, 4);
		if (memcmp(ad, zero, 15) == 0)
			return false;           /* :: and ::1 */
		if (ad[0] == 0xfe && (ad[1] & 0xc0) == 0x80)
			return false;           /* fe80::/10 */
		if ((ad[0] & 0xfe) == 0xfc || ad[0] == 0xff)
			return false;           /* fc00::/7, ff00::/8 */
		return true;
	}
	if (ad[0] == 0 || ad[0] == 10 || ad[0] == 127 || ad[0] >= 224)
		return false;
	if (ad[0] == 100 && (ad[1] & 0xc0) == 64)
		return false;                   /* 100.64/10 */
	if (ad[0] == 169 && ad[1] == 254)
		return false;
	if (ad[0] == 172 && (ad[1] & 0xf0) == 16)
		return false;
	if (ad[0] == 192 && ad[1] == 168)
		return false;
	if (ad[0] == 192 && ad[1] == 0 && ad[2] == 0)
		return false;
	return true;
}

/* xm_url_default_port - default ports of the schemes that have one */
long
xm_url_default_port(const char *scheme)
{
	static const struct { const char *s; long p; } tab[] = {
		{ "http", 80 }, { "https", 443 }, { "ftp", 21 }, { "ws", 80 },
		{ "wss", 443 }, { "gopher", 70 }, { "ftps", 990 },
		{ "sftp", 22 }, { "ssh", 22 }, { "telnet", 23 },
		{ "irc", 6667 }, { "ircs", 6697 }, { "rtsp", 554 },
		{ "smb", 445 }, { "ldap", 389 }, { "nntp", 119 },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(tab); i++)
		if (strcmp(scheme, tab[i].s) == 0)
			return tab[i].p;
	return -1;
}

/* url_pct_decode - S[0..n) with %XX decoded, in A */
static char *
url_pct_decode(struct xm_arena *a, const char *s, size_t n)
{
	char *r = xm_arena_alloc(a, n + 1), *q = r;
	size_t i;
	int h, l;

	for (i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n &&
		    (h = url_hex((unsigned char)s[i + 1])) >= 0 &&
		    (l = url_hex((unsigned char)s[i + 2])) >= 0) {
			*q++ = (char)(h * 16 + l);
			i += 2;
		} else
			*q++ = s[i];
	}
	*q = '\0';
	return r;
}

/* url_norm_host - fill OUT's host fields from HOST[0..n) as written */
static int
url_norm_host(struct xm_arena *a, const char *host, size_t n,
    struct xm_url_info *out)
{
	char *h, *q, *ascii = NULL, *uni = NULL, buf[INET6_ADDRSTRLEN];
	const char *p, *e;
	uint8_t ad[16];
	uint32_t v4;
	size_t k;
	long cp;
	bool nonascii = false, odd;

	out->host = out->host_u = "";
	if (n == 0)
		return 0;
	h = url_pct_decode(a, host, n);
	/* IPv6 literal */
	k = strlen(h);
	if (h[0] == '[' && k >= 2 && h[k - 1] == ']') {
		h[k - 1] = '\0';
		if ((q = strchr(h, '%')) != NULL)
			*q = '\0';          /* zone id */
		if (inet_pton(AF_INET6, h + 1, ad) != 1 ||
		    inet_ntop(AF_INET6, ad, buf, sizeof(buf)) == NULL)
			return -1;
		out->host = out->host_u = xm_arena_strdup(a, buf);
		out->ip = true;
		out->ip_public = xm_url_ip_public(ad, 6);
		return 0;
	}
	/* dots of other scripts, case, trailing dots */
	q = h;
	for (p = h, e = h + k; p < e; ) {
		if ((unsigned char)*p < 0x80) {
			*q++ = (char)url_lower((unsigned char)*p++);
			continue;
		}
		const char *s0 = p;
		if ((cp = xm_utf8_next(&p, e)) < 0)
			return -1;
		if (url_dot_cp(cp)) {
			*q++ = '.';
			continue;
		}
		nonascii = true;
		memmove(q, s0, (size_t)(p - s0));
		q += p - s0;
	}
	*q = '\0';
	while (q > h && q[-1] == '.')
		*--q = '\0';
	if (*h == '\0')
		return -1;
	/* IPv4 in any form: when the last label is numeric (WHATWG) */
	p = strrchr(h, '.');
	p = p ? p + 1 : h;
	if (!nonascii && (*p >= '0' && *p <= '9')) {
		if (xm_url_ipv4(h, strlen(h), &v4, &odd) < 0)
			return -1;
		ad[0] = (uint8_t)(v4 >> 24);
		ad[1] = (uint8_t)(v4 >> 16);
		ad[2] = (uint8_t)(v4 >> 8);
		ad[3] = (uint8_t)v4;
		snprintf(buf, sizeof(buf), "%u.%u.%u.%u", ad[0], ad[1], ad[2],
		    ad[3]);
		out->host = out->host_u = xm_arena_strdup(a, buf);
		out->ip = true;
		out->ip_odd_form = odd;
		out->ip_public = xm_url_ip_public(ad, 4);
		return 0;
	}
	if (nonascii) {
		out->idn = true;
		if (idn2_to_ascii_8z(h, &ascii, IDN2_NONTRANSITIONAL |
		    IDN2_NFC_INPUT) != IDN2_OK &&
		    idn2_to_ascii_8z(h, &ascii, IDN2_TRANSITIONAL |
		    IDN2_NFC_INPUT) != IDN2_OK) {
			/* not a valid IDN: keep it as written, lower-cased */
			out->host = out->host_u = h;
			return 0;
		}
		out->host = xm_arena_strdup(a, ascii);
		idn2_free(ascii);
		out->host_u = h;
	} else {
		out->host = out->host_u = h;
		if (strncmp(h, "xn--", 4) == 0 || strstr(h, ".xn--") != NULL) {
			out->idn = true;
			if (idn2_to_unicode_8z8z(h, &uni, 0) == IDN2_OK) {
				out->host_u = xm_arena_strdup(a, uni);
				idn2_free(uni);
			}
		}
	}
	out->domain = xm_url_registrable(a, out->host);
	return 0;
}

/* url_manual - take a hierarchical link apart by hand (curl refused it):
 * S is "scheme://rest" */
static int
url_manual(struct xm_arena *a, const char *s, size_t slen, size_t hstart,
    const char **host, size_t *hlen, const char **port, size_t *plen,
    const char **rest)
{
	size_t e = hstart, at, c;

	while (e < slen && strchr("/?#\\", s[e]) == NULL)
		e++;
	at = hstart;
	for (c = hstart; c < e; c++)
		if (s[c] == '@')
			at = c + 1;
	*host = s + at;
	*hlen = e - at;
	*port = NULL;
	*plen = 0;
	if (*hlen > 0 && (*host)[0] != '[') {
		for (c = 0; c < *hlen; c++)
			if ((*host)[c] == ':') {
				*port = *host + c + 1;
				*plen = *hlen - c - 1;
				*hlen = c;
				break;
			}
	}
	*rest = xm_arena_strndup(a, s + e, slen - e);
	return at > hstart ? 1 : 0;
}

/* url_opaque_host - the host of an opaque link's part after the colon:
 * after '@' (mailto, sip, xmpp) up to ?;>/, else none */
static void
url_opaque_host(const char *rest, const char **h, size_t *n)
{
	const char *at, *e;

	e = rest + strcspn(rest, "?;>/,");
	for (at = rest; at < e && *at != '@'; at++)
		;
	if (at == e) {
		*h = NULL;
		*n = 0;
		return;
	}
	*h = at + 1;
	*n = (size_t)(e - at - 1);
}

/* xm_url_normalize - take a link apart and put it back canonically */
int
xm_url_normalize(struct xm_arena *a, const char *raw, size_t len, bool bare,
    struct xm_url_info *out)
{
	CURLU *u;
	char *s, *cs = NULL, *ch = NULL, *cp = NULL, *cpath = NULL,
	    *cq = NULL, *cu = NULL;
	const char *host = NULL, *port = NULL, *rest = "", *path = "",
	    *query = NULL, *oh;
	size_t i, slen, hlen = 0, plen = 0, sl, ohl;
	struct xm_buf b = { 0 };
	long pn = -1;
	long long ll;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	out->port = -1;
	out->path = "";
	out->host = out->host_u = "";
	if (len > XM_URL_MAX_LEN)
		len = XM_URL_MAX_LEN;
	while (len > 0 && (unsigned char)raw[0] <= 0x20) {
		raw++;
		len--;
	}
	while (len > 0 && (unsigned char)raw[len - 1] <= 0x20)
		len--;
	if (len == 0 || memchr(raw, '\0', len) != NULL)
		return -1;
	out->raw = xm_arena_strndup(a, raw, len);
	out->bare = bare;
	s = bare ? xm_arena_printf(a, "http://%s", out->raw) :
	    xm_arena_strdup(a, out->raw);
	slen = strlen(s);

	/* the scheme */
	for (sl = 0; sl < slen && url_scheme_char((unsigned char)s[sl]); sl++)
		;
	if (sl == 0 || sl >= slen || s[sl] != ':' ||
	    !url_alpha((unsigned char)s[0]) || sl > 32)
		return -1;
	for (i = 0; i < sl; i++)
		s[i] = (char)url_lower((unsigned char)s[i]);
	out->scheme = xm_arena_strndup(a, s, sl);

	if (!(sl + 2 < slen && s[sl + 1] == '/' && s[sl + 2] == '/')) {
		/* opaque: aim:goim?screenname=x, mailto:a@b, tel:+1... */
		out->opaque = true;
		rest = s + sl + 1;
		out->norm = xm_arena_printf(a, "%s:%s", out->scheme, rest);
		url_opaque_host(rest, &oh, &ohl);
		if (oh != NULL && ohl > 0 && url_norm_host(a, oh, ohl, out) < 0)
			out->host = out->host_u = "";
		return 0;
	}

	if ((u = curl_url()) == NULL)
		panic("curl_url: out of memory");
	if (curl_url_set(u, CURLUPART_URL, s, CURLU_NON_SUPPORT_SCHEME) ==
	    CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &ch, 0) == CURLUE_OK) {
		curl_url_get(u, CURLUPART_PORT, &cp, 0);
		curl_url_get(u, CURLUPART_PATH, &cpath, 0);
		curl_url_get(u, CURLUPART_QUERY, &cq, 0);
		curl_url_get(u, CURLUPART_USER, &cu, 0);
		host = ch;
		hlen = strlen(ch);
		port = cp;
		plen = cp ? strlen(cp) : 0;
		path = cpath ? xm_arena_strdup(a, cpath) : "";
		query = cq ? xm_arena_strdup(a, cq) : NULL;
		out->userinfo = cu != NULL;
	} else {
		out->userinfo = url_manual(a, s, slen, sl + 3, &host, &hlen,
		    &port, &plen, &rest) == 1;
		path = rest;
	}
	if (url_norm_host(a, host, hlen, out) < 0)
		goto done;
	if (out->ip && ch != NULL) {
		/* curl rewrites 0xC0A80101 as 192.168.1.1: look at it as written */
		const char *rh, *rp, *rr;
		size_t rhl, rpl;
		uint32_t v4;
		bool odd = false;
		char *hw;

		url_manual(a, s, slen, sl + 3, &rh, &rhl, &rp, &rpl, &rr);
		hw = url_pct_decode(a, rh, rhl);
		for (rhl = strlen(hw); rhl > 0 && hw[rhl - 1] == '.'; rhl--)
			;
		if (xm_url_ipv4(hw, rhl, &v4, &odd) == 0 && odd)
			out->ip_odd_form = true;
	}
	if (port != NULL && plen > 0) {
		char *pt = xm_arena_strndup(a, port, plen);

		if (xm_parse_ll(pt, 0, 0xffffffffLL, &ll) < 0)
			goto done;
		pn = (long)ll;
	}
	out->port = pn;
	out->odd_port = pn >= 0 && pn != xm_url_default_port(out->scheme);
	out->path = url_pct_decode(a, path, strlen(path));

	xm_buf_printf(&b, "%s://%s%s%s", out->scheme,
	    strchr(out->host, ':') ? "[" : "", out->host,
	    strchr(out->host, ':') ? "]" : "");
	if (out->odd_port)
		xm_buf_printf(&b, ":%ld", pn);
	xm_buf_puts(&b, *path != '\0' ? path : "/");
	if (query != NULL)
		xm_buf_printf(&b, "?%s", query);
	out->norm = xm_arena_strndup(a, b.data, b.len);
	xm_buf_free(&b);
	rc = 0;
done:
	curl_free(cs);
	curl_free(ch);
	curl_free(cp);
	curl_free(cpath);
	curl_free(cq);
	curl_free(cu);
	curl_url_cleanup(u);
	return rc;
}

/* ---- look-alikes ---- */

/* url_confusable - the Latin letter a look-alike code point stands for,
 * or 0 */
static int
url_confusable(long cp)
{
	static const struct { unsigned short cp; char to; } tab[] = {
		/* Cyrillic */
		{ 0x0430, 'a' }, { 0x0410, 'a' }, { 0x0412, 'b' },
		{ 0x0432, 'b' }, { 0x0435, 'e' }, { 0x0415, 'e' },
		{ 0x0450, 'e' }, { 0x0451, 'e' }, { 0x0401, 'e' },
		{ 0x0456, 'i' }, { 0x0406, 'l' }, { 0x0457, 'i' },
		{ 0x0458, 'j' }, { 0x0408, 'j' }, { 0x041a, 'k' },
		{ 0x043a, 'k' }, { 0x041c, 'm' }, { 0x043c, 'm' },
		{ 0x041d, 'h' }, { 0x043d, 'h' }, { 0x043e, 'o' },
		{ 0x041e, 'o' }, { 0x0440, 'p' }, { 0x0420, 'p' },
		{ 0x0441, 'c' }, { 0x0421, 'c' }, { 0x0442, 't' },
		{ 0x0422, 't' }, { 0x0443, 'y' }, { 0x0423, 'y' },
		{ 0x0445, 'x' }, { 0x0425, 'x' }, { 0x0455, 's' },
		{ 0x0405, 's' }, { 0x04bb, 'h' }, { 0x0501, 'd' },
		{ 0x051b, 'q' }, { 0x051d, 'w' }, { 0x04cf, 'l' },
		{ 0x04c0, 'l' }, { 0x0475, 'v' }, { 0x0474, 'v' },
		{ 0x0433, 'r' }, { 0x044c, 'b' }, { 0x0461, 'w' },
		/* Greek */
		{ 0x03b1, 'a' }, { 0x0391, 'a' }, { 0x0392, 'b' },
		{ 0x03b2, 'b' }, { 0x03b3, 'y' }, { 0x0395, 'e' },
		{ 0x03b5, 'e' }, { 0x0396, 'z' }, { 0x0397, 'h' },
		{ 0x03b7, 'n' }, { 0x0399, 'l' }, { 0x03b9, 'i' },
		{ 0x039a, 'k' }, { 0x03ba, 'k' }, { 0x039c, 'm' },
		{ 0x039d, 'n' }, { 0x03bd, 'v' }, { 0x039f, 'o' },
		{ 0x03bf, 'o' }, { 0x03a1, 'p' }, { 0x03c1, 'p' },
		{ 0x03a4, 't' }, { 0x03c4, 't' }, { 0x03a5, 'y' },
		{ 0x03c5, 'u' }, { 0x03a7, 'x' }, { 0x03c7, 'x' },
		{ 0x03c9, 'w' }, { 0x03f2, 'c' }, { 0x03f3, 'j' },
		/* Armenian */
		{ 0x0585, 'o' }, { 0x057d, 'u' }, { 0x0570, 'h' },
		{ 0x0581, 'g' }, { 0x0578, 'n' }, { 0x057c, 'n' },
		{ 0x0561, 'w' }, { 0x0584, 'p' },
		/* Latin look-alikes and accented letters */
		{ 0x0131, 'i' }, { 0x0269, 'i' }, { 0x0261, 'g' },
		{ 0x0251, 'a' }, { 0x01c0, 'l' }, { 0x0292, 'z' },
		{ 0x00e0, 'a' }, { 0x00e1, 'a' }, { 0x00e2, 'a' },
		{ 0x00e3, 'a' }, { 0x00e4, 'a' }, { 0x00e5, 'a' },
		{ 0x00e7, 'c' }, { 0x00e8, 'e' }, { 0x00e9, 'e' },
		{ 0x00ea, 'e' }, { 0x00eb, 'e' }, { 0x00ec, 'i' },
		{ 0x00ed, 'i' }, { 0x00ee, 'i' }, { 0x00ef, 'i' },
		{ 0x00f1, 'n' }, { 0x00f2, 'o' }, { 0x00f3, 'o' },
		{ 0x00f4, 'o' }, { 0x00f5, 'o' }, { 0x00f6, 'o' },
		{ 0x00f8, 'o' }, { 0x00f9, 'u' }, { 0x00fa, 'u' },
		{ 0x00fb, 'u' }, { 0x00fc, 'u' }, { 0x00fd, 'y' },
		{ 0x00ff, 'y' }, { 0x0101, 'a' }, { 0x0113, 'e' },
		{ 0x012b, 'i' }, { 0x014d, 'o' }, { 0x016b, 'u' },
		{ 0x1ea1, 'a' }, { 0x1ecd, 'o' }, { 0x1ec7, 'e' },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(tab); i++)
		if (tab[i].cp == cp)
			return tab[i].to;
	if (cp >= 0xff01 && cp <= 0xff5e)       /* full-width ASCII */
		return url_lower((int)(cp - 0xff01 + 0x21));
	return 0;
}

/* xm_url_skeleton - the host as the eye reads it */
char *
xm_url_skeleton(struct xm_arena *a, const char *host)
{
	size_t n = strlen(host), k = 0, i;
	char *r = xm_arena_alloc(a, n + 1), *o;
	const char *p = host, *e = host + n;
	long cp;
	int c;

	while (p < e) {
		if ((unsigned char)*p < 0x80) {
			c = (unsigned char)*p++;
			if (c == 'I' || c == '1' || c == '|')
				c = 'l';
			else if (c == '0')
				c = 'o';
			else
				c = url_lower(c);
			r[k++] = (char)c;
			continue;
		}
		if ((cp = xm_utf8_next(&p, e)) < 0)
			break;
		if (cp >= 0x300 && cp <= 0x36f)
			continue;               /* combining marks */
		if (url_dot_cp(cp))
			c = '.';
		else if ((c = url_confusable(cp)) == 0)
			c = '?';
		if (c == '1')
			c = 'l';
		r[k++] = (char)c;
	}
	r[k] = '\0';
	/* letter pairs that read as one letter */
	for (i = 0, o = r; i < k; i++) {
		if (i + 1 < k && r[i] == 'r' && r[i + 1] == 'n') {
			*o++ = 'm';
			i++;
		} else if (i + 1 < k && r[i] == 'v' && r[i + 1] == 'v') {
			*o++ = 'w';
			i++;
		} else if (i + 1 < k && r[i] == 'c' && r[i + 1] == 'l') {
			*o++ = 'd';
			i++;
		} else
			*o++ = r[i];
	}
	*o = '\0';
	return r;
}

enum url_script {
	SC_NONE = 0, SC_LATIN, SC_CYRILLIC, SC_GREEK, SC_ARMENIAN, SC_HEBREW,
	SC_ARABIC, SC_GEORGIAN, SC_HAN, SC_KANA, SC_HANGUL, SC_OTHER
};

/* url_script_of - the script of a letter (digits, marks: SC_NONE) */
static enum url_script
url_script_of(long cp)
{
	if (cp < 0x80)
		return url_alpha((int)cp) ? SC_LATIN : SC_NONE;
	if ((cp >= 0xc0 && cp <= 0x24f) || (cp >= 0x1e00 && cp <= 0x1eff))
		return cp == 0xd7 || cp == 0xf7 ? SC_NONE : SC_LATIN;
	if (cp >= 0x250 && cp <= 0x2af)
		return SC_LATIN;
	if (cp >= 0x300 && cp <= 0x36f)
		return SC_NONE;
	if ((cp >= 0x370 && cp <= 0x3ff) || (cp >= 0x1f00 && cp <= 0x1fff))
		return SC_GREEK;
	if (cp >= 0x400 && cp <= 0x52f)
		return SC_CYRILLIC;
	if (cp >= 0x530 && cp <= 0x58f)
		return SC_ARMENIAN;
	if (cp >= 0x590 && cp <= 0x5ff)
		return SC_HEBREW;
	if (cp >= 0x600 && cp <= 0x6ff)
		return SC_ARABIC;
	if (cp >= 0x10a0 && cp <= 0x10ff)
		return SC_GEORGIAN;
	if ((cp >= 0x3040 && cp <= 0x30ff) || (cp >= 0x31f0 && cp <= 0x31ff))
		return SC_KANA;
	if ((cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf))
		return SC_HAN;
	if ((cp >= 0xac00 && cp <= 0xd7af) || (cp >= 0x1100 && cp <= 0x11ff))
		return SC_HANGUL;
	if (cp >= 0xff10 && cp <= 0xff19)
		return SC_NONE;
	return SC_OTHER;
}

/* url_scripts_ok - a label's set of scripts is one a registry allows:
 * one script, or Latin with Han and Kana (Japanese), Han with Hangul
 * (Korean), Han with Latin (Chinese) - UTS #39 "highly restrictive" */
static bool
url_scripts_ok(unsigned m)
{
	const unsigned jpn = 1u << SC_LATIN | 1u << SC_HAN | 1u << SC_KANA;
	const unsigned kor = 1u << SC_LATIN | 1u << SC_HAN | 1u << SC_HANGUL;

	if ((m & (m - 1)) == 0)
		return true;
	return (m & ~jpn) == 0 || (m & ~kor) == 0;
}

/* xm_url_mixed_script - a label of HOST mixes scripts */
bool
xm_url_mixed_script(const char *host)
{
	const char *p = host, *e = host + strlen(host);
	enum url_script sc;
	unsigned m = 0;
	long cp;

	while (p <= e) {
		if (p == e || *p == '.') {
			if (!url_scripts_ok(m))
				return true;
			m = 0;
			p++;
			continue;
		}
		if ((unsigned char)*p < 0x80)
			cp = (unsigned char)*p++;
		else if ((cp = xm_utf8_next(&p, e)) < 0)
			return false;
		if ((sc = url_script_of(cp)) != SC_NONE)
			m |= 1u << sc;
	}
	return false;
}

/* ---- defanging ---- */

/* xm_url_defang - make the chosen links of TEXT unclickable */
char *
xm_url_defang(struct xm_arena *a, const char *text, size_t len,
    const struct xm_url_span *spans, size_t nspans, const bool *pick)
{
	struct xm_buf b = { 0 };
	size_t pos = 0, i, j, s, e, hs, he, sl;
	char *r;

	for (i = 0; i < nspans; i++) {
		if (pick != NULL && !pick[i])
			continue;
		s = spans[i].off;
		e = s + spans[i].len;
		if (s < pos || e > len)
			continue;
		xm_buf_append(&b, text + pos, s - pos);
		hs = s;
		if (!spans[i].bare) {
			for (sl = s; sl < e && text[sl] != ':'; sl++)
				;
			if (sl - s >= 4 && strncasecmp(text + s, "http", 4) == 0) {
				xm_buf_append(&b, text + s, 1);
				xm_buf_puts(&b, text[s + 1] == 'T' ? "XX" : "xx");
				xm_buf_append(&b, text + s + 3, sl - s - 3);
			} else if (sl - s == 3 && strncasecmp(text + s, "ftp",
			    3) == 0)
				xm_buf_puts(&b, "fxp");
			else
				xm_buf_append(&b, text + s, sl - s);
			if (sl + 2 < e && text[sl + 1] == '/' &&
			    text[sl + 2] == '/') {
				xm_buf_puts(&b, "://");
				hs = sl + 3;
			} else {
				xm_buf_puts(&b, "[:]");
				hs = sl + 1;
			}
		}
		for (he = hs; he < e && strchr("/?#", text[he]) == NULL; he++)
			;
		for (j = hs; j < he; j++) {
			if (text[j] == '.')
				xm_buf_puts(&b, "[.]");
			else
				xm_buf_append(&b, text + j, 1);
		}
		xm_buf_append(&b, text + he, e - he);
		pos = e;
	}
	xm_buf_append(&b, text + pos, len - pos);
	r = xm_arena_strndup(a, b.data ? b.data : "", b.len);
	xm_buf_free(&b);
	return r;
}

/* ---- string sets ---- */

/* url_hash - FNV-1a, 64 bits */
static uint64_t
url_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* strset_find - slot of S (or the empty slot where it would go) */
static size_t
strset_find(const struct xm_strset *s, const char *str, size_t len)
{
	size_t i = (size_t)url_hash(str, len) & (s->cap - 1);

	while (s->slot[i] != NULL) {
		if (strncmp(s->slot[i], str, len) == 0 &&
		    s->slot[i][len] == '\0')
			return i;
		i = (i + 1) & (s->cap - 1);
	}
	return i;
}

/* strset_grow - double the table */
static void
strset_grow(struct xm_strset *s)
{
	struct xm_strset n = { 0 };
	size_t i;

	n.cap = s->cap ? s->cap * 2 : 64;
	if (n.cap < s->cap)
		panic("strset: too large");
	n.slot = xm_calloc(n.cap, sizeof(*n.slot));
	for (i = 0; i < s->cap; i++)
		if (s->slot[i] != NULL)
			n.slot[strset_find(&n, s->slot[i],
			    strlen(s->slot[i]))] = s->slot[i];
	n.n = s->n;
	free(s->slot);
	*s = n;
}

/* xm_strset_add - add a copy */
bool
xm_strset_add(struct xm_strset *s, const char *str, size_t len)
{
	size_t i;

	if ((s->n + 1) * 2 > s->cap)
		strset_grow(s);
	i = strset_find(s, str, len);
	if (s->slot[i] != NULL)
		return false;
	s->slot[i] = xm_strndup(str, len);
	s->n++;
	return true;
}

/* xm_strset_del - remove, shifting back the entries after it */
bool
xm_strset_del(struct xm_strset *s, const char *str, size_t len)
{
	size_t i, j, k;

	if (s->cap == 0)
		return false;
	i = strset_find(s, str, len);
	if (s->slot[i] == NULL)
		return false;
	free(s->slot[i]);
	s->slot[i] = NULL;
	s->n--;
	for (j = (i + 1) & (s->cap - 1); s->slot[j] != NULL;
	    j = (j + 1) & (s->cap - 1)) {
		k = (size_t)url_hash(s->slot[j], strlen(s->slot[j])) &
		    (s->cap - 1);
		/* leave it if its home lies cyclically in (i, j] */
		if ((j > i && (k <= i || k > j)) || (j < i && k <= i && k > j)) {
			s->slot[i] = s->slot[j];
			s->slot[j] = NULL;
			i = j;
		}
	}
	return true;
}

/* xm_strset_has - membership */
bool
xm_strset_has(const struct xm_strset *s, const char *str, size_t len)
{
	if (s->n == 0)
		return false;
	return s->slot[strset_find(s, str, len)] != NULL;
}

/* xm_strset_free - free the strings and the table */
void
xm_strset_free(struct xm_strset *s)
{
	size_t i;

	for (i = 0; i < s->cap; i++)
		free(s->slot[i]);
	free(s->slot);
	memset(s, 0, sizeof(*s));
}

/* xm_strset_has_domain - HOST or a parent domain of it is in S */
bool
xm_strset_has_domain(const struct xm_strset *s, const char *host,
    const char **match)
{
	const char *p = host;

	if (s->n == 0 || host == NULL || *host == '\0')
		return false;
	for (;;) {
		if (xm_strset_has(s, p, strlen(p))) {
			if (match != NULL)
				*match = p;
			return true;
		}
		if ((p = strchr(p, '.')) == NULL)
			return false;
		p++;
	}
}
