/*
 * url.h - finding links in text and normalising them
 *
 * A reusable library for every filter that looks at links (links, dnsbl,
 * and later ratelimit's outbreak fingerprints or transfer's OOB policy):
 *
 *   xm_url_find       the link tokens of a text: scheme://..., www....,
 *                     known opaque schemes (aim:, tel:, mailto:...) and bare
 *                     host.tld[/path] forms whose suffix is a public one
 *   xm_url_normalize  one link taken apart and put back in canonical form:
 *                     libcurl's URL API parses, libidn2 converts the host
 *                     to and from punycode, libpsl names the registrable
 *                     domain; case, percent-escapes, trailing dots,
 *                     default ports and the numeric/hex/octal IPv4 forms
 *                     are folded
 *   xm_url_skeleton   a host reduced to its confusable skeleton (UTS #39
 *                     style, for the Latin/Cyrillic/Greek look-alikes and
 *                     the ASCII tricks 0/o, 1/l, rn/m, vv/w)
 *   xm_url_mixed_script  a label mixing scripts that do not mix
 *   xm_url_defang     a text with chosen links made unclickable
 *   struct xm_strset  an open-addressing set of strings (block lists)
 *
 * Memory: results live in the caller's arena. The public suffix list is
 * loaded once per process (libpsl's psl_latest: the system's file) and
 * is read-only afterwards, so every function here may run on any thread.
 *
 * Failure: peer input never fails these functions hard: a link that does
 * not parse gives -1 from xm_url_normalize and is skipped by callers.
 */
#ifndef XM_URL_H
#define XM_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define XM_URL_MAX_LEN 2048   /* longer links are cut here (guard scores them) */

/* one link found in a text */
struct xm_url_span {
	size_t off, len;   /* bytes into the text */
	bool bare;         /* no scheme written (www. or host.tld form) */
};

/* xm_url_find - up to MAX link tokens of TEXT[0..LEN) into OUT; returns how
 * many. Tokens are in text order and never overlap. */
size_t xm_url_find(const char *text, size_t len, struct xm_url_span *out,
    size_t max);

/* a normalised link (strings in the arena given to xm_url_normalize) */
struct xm_url_info {
	const char *raw;     /* as found */
	const char *norm;    /* scheme://host[:port]/path[?query], no user or
	                        fragment; opaque: scheme:rest */
	const char *scheme;  /* lower case */
	const char *host;    /* lower-case A-label, no trailing dot; IPv4 in
	                        dotted quad, IPv6 without brackets; "" when none */
	const char *host_u;  /* the host in Unicode (U-labels), or host */
	const char *domain;  /* registrable domain (A-label), or NULL (IPs,
	                        bare suffixes, unknown) */
	const char *path;    /* percent-decoded path, "" when none */
	long port;           /* the port written, -1 when none */
	bool bare;           /* written without a scheme */
	bool opaque;         /* no authority: aim:, tel:, mailto:... */
	bool ip;             /* host is an IP literal */
	bool ip_public;      /* ... and globally routable */
	bool ip_odd_form;    /* written as decimal, hex, octal or short form */
	bool odd_port;       /* a port other than the scheme's default */
	bool idn;            /* host has non-ASCII or xn-- labels */
	bool userinfo;       /* had user[:password]@ before the host */
};

/* xm_url_normalize - parse RAW[0..LEN) (BARE: found without a scheme) into
 * OUT, strings in A; 0, or -1 when it is not a usable link */
int xm_url_normalize(struct xm_arena *a, const char *raw, size_t len,
    bool bare, struct xm_url_info *out);

/* xm_url_registrable - registrable domain of lower-case A-label HOST (in A),
 * or NULL */
const char *xm_url_registrable(struct xm_arena *a, const char *host);

/* xm_url_public_suffix - true when the last label(s) of HOST[0..LEN) form a
 * known ICANN public suffix and something stands before it */
bool xm_url_has_public_suffix(const char *host, size_t len);

/* xm_url_ipv4 - parse every IPv4 form (a.b.c.d, a.b.c, a.b, a; decimal,
 * 0x hex, 0 octal) of S[0..LEN); 0 with the address (host order) in OUT,
 * ODD set when not plain dotted decimal; -1 when not an address */
int xm_url_ipv4(const char *s, size_t len, uint32_t *out, bool *odd);

/* xm_url_ip_public - true for a globally routable address (v4: 4 bytes,
 * v6: 16 bytes) */
bool xm_url_ip_public(const uint8_t *addr, int family);

/* xm_url_default_port - the scheme's default port, or -1 */
long xm_url_default_port(const char *scheme);

/* xm_url_skeleton - confusable skeleton of UTF-8 HOST (in A): look-alike
 * letters of other scripts mapped to Latin, case folded, 0->o, 1/I/|->l,
 * rn->m, vv->w, cl->d, dashes and dots kept */
char *xm_url_skeleton(struct xm_arena *a, const char *host);

/* xm_url_mixed_script - true when one label of UTF-8 HOST mixes letters of
 * scripts that do not go together (Latin with Cyrillic or Greek, ...) */
bool xm_url_mixed_script(const char *host);

/* xm_url_defang - TEXT with the links at SPANS[i] where PICK[i] is true
 * made unclickable (http -> hxxp, "." -> "[.]" in the host, ":" -> "[:]" for
 * opaque schemes), in A. PICK NULL: every span. */
char *xm_url_defang(struct xm_arena *a, const char *text, size_t len,
    const struct xm_url_span *spans, size_t nspans, const bool *pick);

/* ---- a set of strings ---- */

struct xm_strset {
	char **slot;     /* open addressing, NULL = empty */
	size_t cap;      /* power of two */
	size_t n;
};

/* xm_strset_add - add a copy of S[0..LEN) (heap); false if it was there */
bool xm_strset_add(struct xm_strset *s, const char *str, size_t len);
/* xm_strset_del - remove S[0..LEN); false if it was not there */
bool xm_strset_del(struct xm_strset *s, const char *str, size_t len);
bool xm_strset_has(const struct xm_strset *s, const char *str, size_t len);
void xm_strset_free(struct xm_strset *s);

/* xm_strset_has_domain - HOST or one of its parent domains is in S; the
 * match (a suffix of HOST) in *MATCH when not NULL */
bool xm_strset_has_domain(const struct xm_strset *s, const char *host,
    const char **match);

#endif
