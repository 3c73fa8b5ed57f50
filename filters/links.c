/*
 * links.c - the links filter: link reputation from lists and heuristics
 *
 * Purpose: every link of a stanza - out-of-band URLs, XHTML-IM href/src
 * (from the event view), and links written in bodies, subjects, rich-text
 * text, presence status and invitation reasons (found with xm_url_find) -
 * is normalised (plugin/url.c) and judged:
 *   - local allow and block lists (domains with their subdomains, exact
 *     hosts, URL prefixes, PCRE2 patterns) from files, re-read on SIGHUP;
 *     an allow-listed link is not judged further;
 *   - shared real-time block lists (plugin/rtbl.c): link hosts against
 *     the domain nodes, and the sender's domain and hashed bare JID
 *     against the domain and JID nodes;
 *   - heuristics, each its own symbol and score: raw IP host, numeric IP
 *     obfuscation, non-default port, executable path, shortener, user
 *     name before the host, mixed scripts, look-alike of a protected
 *     domain, protocol-handler scheme outside the allow-list, link text
 *     that names another host than its target.
 * DNS block lists are the dnsbl filter's (SLOW, on the worker pool).
 * The guard filter already scores link floods, long and escaped links,
 * handler links in bulk and dangerous schemes in rich text; this filter
 * judges each link on its own and does not count those again.
 *
 * Modify: the links that scored are defanged in every plain body
 * (hxxp://evil[.]example/...), after the scope's modify_warning line; the
 * chain drops the rich-text twin on modify, so the client never shows a
 * live link beside the defanged one (docs/LINKS.md says why).
 *
 * Interface: links_filter; settings filters.links.* (docs/CONFIGURATION.md,
 * explained in docs/LINKS.md). Symbols LINKS_*, at most one per kind per
 * event, the detail naming the first link and how many more.
 *
 * Ownership: the state owns its lists (heap) and one reference to an RTBL
 * subscriber; per-event memory is the task's arena. check only reads the
 * state, so it may run on any thread.
 *
 * Failure: init fails on an unreadable list file or a bad entry
 * ("FILE:LINE: message"), so a reload keeps the old lists.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "config.h"
#include "rtbl.h"
#include "url.h"
#include "xm.h"

#define LINKS_SYMBOLS(X) \
	X(BLOCKLIST, "blocklist", "20", "a link on a local block list") \
	X(RTBL, "rtbl", "20", \
	    "a link host on a shared real-time block list") \
	X(RTBL_SENDER, "rtbl_sender", "10", \
	    "the sender's domain on a real-time block list") \
	X(RTBL_JID, "rtbl_jid", "10", \
	    "the sender's bare JID (hashed) on a real-time block list") \
	X(IP_HOST, "ip_host", "3", "a link to a raw IP address") \
	X(IP_OBFUSCATED, "ip_obfuscated", "4", \
	    "an IP address written in decimal, hex, octal or short form") \
	X(ODD_PORT, "odd_port", "2", \
	    "a link with a port other than its scheme's default") \
	X(EXECUTABLE, "executable", "4", \
	    "a link to an executable or script (exec_extensions)") \
	X(SHORTENER, "shortener", "1", "a link through a URL shortener") \
	X(USERINFO, "userinfo", "3", \
	    "a user name before the host (http://bank.example@evil/)") \
	X(MIXED_SCRIPT, "mixed_script", "4", \
	    "a host label mixing scripts (Latin with Cyrillic...)") \
	X(LOOKALIKE, "lookalike", "6", \
	    "a host that looks like a protected or local domain") \
	X(HANDLER, "handler", "2", \
	    "a scheme outside allowed_schemes (aim:, ms-msdt:...)") \
	X(TEXT_MISMATCH, "text_mismatch", "4", \
	    "rich-text link text naming another host than the target")

enum links_sym {
#define LINKS_ENUM(tag, name, def, doc) LS_##tag,
	LINKS_SYMBOLS(LINKS_ENUM)
#undef LINKS_ENUM
	LS_COUNT
};

static const char *const links_symname[LS_COUNT] = {
#define LINKS_NAME(tag, name, def, doc) "LINKS_" #tag,
	LINKS_SYMBOLS(LINKS_NAME)
#undef LINKS_NAME
};

enum links_defang { DEFANG_FLAGGED = 0, DEFANG_ALL, DEFANG_OFF };

struct links_conf {
	long long max_urls;
	struct xm_strlist block_files, allow_files;
	struct xm_strlist block, allow;
	struct xm_strlist shorteners;
	struct xm_strlist exec_extensions;
	struct xm_strlist allowed_schemes;
	struct xm_strlist protected_domains;
	struct xm_strlist local_domains;
	bool ip_private;
	int defang;
	long long pattern_match_limit;
	/* real-time block lists */
	char *rtbl_jid, *rtbl_password, *rtbl_server, *rtbl_service;
	struct xm_strlist rtbl_domain_nodes, rtbl_jid_nodes;
	bool rtbl_tls;
	double rtbl_reconnect;
	double score[LS_COUNT];
};

#define LINKS_OFF(f) offsetof(struct links_conf, f)
#define LINKS_SCORE(tag, name, def, doc) \
	{ "score_" name, XM_ST_DOUBLE, LINKS_OFF(score[LS_##tag]), def, \
	    0, 1000, NULL, true, "Score of LINKS_" #tag ": " doc "." },

static const struct xm_setting links_settings[] = {
	{ "max_urls", XM_ST_INT, LINKS_OFF(max_urls), "50", 1, 10000, NULL,
	    true, "Most distinct links judged per stanza (the rest are not "
	    "looked at; guard's max_urls scores floods)" },
	{ "block_files", XM_ST_PATHS, LINKS_OFF(block_files), "", 0, 0, NULL,
	    true, "Block list files, one entry a line: a domain (with its "
	    "subdomains), =host (that host only), a URL prefix "
	    "(scheme://...), or /regex/ (PCRE2, i for caseless) on the "
	    "normalised URL; # comments. Re-read on SIGHUP" },
	{ "allow_files", XM_ST_PATHS, LINKS_OFF(allow_files), "", 0, 0, NULL,
	    true, "Allow list files, same format: a listed link is not "
	    "judged at all" },
	{ "block", XM_ST_LIST, LINKS_OFF(block), "", 0, 0, NULL, true,
	    "Block list entries written in the configuration" },
	{ "allow", XM_ST_LIST, LINKS_OFF(allow), "", 0, 0, NULL, true,
	    "Allow list entries written in the configuration" },
	{ "shorteners", XM_ST_LIST, LINKS_OFF(shorteners),
	    "bit.ly,tinyurl.com,goo.gl,t.co,ow.ly,is.gd,buff.ly,cutt.ly,"
	    "rebrand.ly,tiny.cc,rb.gy,shorturl.at,v.gd,t.ly,s.id,bl.ink,"
	    "lnkd.in,soo.gd,clck.ru,qr.ae,adf.ly,shorte.st,ouo.io,"
	    "iplogger.org,grabify.link,2no.co,yip.su", 0, 0, NULL, true,
	    "Domains of URL shorteners and IP-address loggers "
	    "(LINKS_SHORTENER)" },
	{ "exec_extensions", XM_ST_LIST, LINKS_OFF(exec_extensions),
	    "exe,scr,pif,com,bat,cmd,vbs,vbe,js,jse,wsf,wsh,hta,msi,msp,jar,"
	    "ps1,psm1,lnk,dll,cpl,reg,apk,app,dmg,pkg,deb,rpm,sh,run,bin,"
	    "iso,img,vhd,appx,msix,xll,docm,xlsm,pptm", 0, 0, NULL, true,
	    "File extensions (without the dot) of executable or script "
	    "downloads (LINKS_EXECUTABLE), matched against the last path "
	    "segment, without regard to case" },
	{ "allowed_schemes", XM_ST_LIST, LINKS_OFF(allowed_schemes),
	    "http,https,xmpp,mailto,aesgcm,geo,ftp", 0, 0, NULL, true,
	    "Schemes that are not protocol-handler links (others score "
	    "LINKS_HANDLER)" },
	{ "protected_domains", XM_ST_LIST, LINKS_OFF(protected_domains), "",
	    0, 0, NULL, true, "Brands and domains whose look-alikes score "
	    "LINKS_LOOKALIKE (e.g. paypal.com); the local_domains and the "
	    "stanza's own from/to domains are protected too" },
	{ "local_domains", XM_ST_LIST, LINKS_OFF(local_domains), "", 0, 0,
	    NULL, true, "This server's domains (protected from look-alikes)" },
	{ "ip_private", XM_ST_BOOL, LINKS_OFF(ip_private), "false", 0, 0, NULL,
	    true, "Score LINKS_IP_HOST for private, loopback and link-local "
	    "addresses too (by default only globally routable ones)" },
	{ "defang", XM_ST_ENUM, LINKS_OFF(defang), "flagged", 0, 0,
	    "flagged|all|off", true, "When the action is modify: defang the "
	    "links that scored (flagged), every link of the stanza (all), or "
	    "none (off: the scope's modify_warning alone)" },
	{ "pattern_match_limit", XM_ST_INT, LINKS_OFF(pattern_match_limit),
	    "100000", 100, 1e9, NULL, true,
	    "PCRE2 match limit for /regex/ list entries" },
	{ "rtbl_jid", XM_ST_STRING, LINKS_OFF(rtbl_jid), "", 0, 0, NULL,
	    true, "Account that subscribes to the real-time block lists "
	    "(empty: no RTBL)" },
	{ "rtbl_password", XM_ST_STRING, LINKS_OFF(rtbl_password), "", 0, 0,
	    NULL, true, "Its password" },
	{ "rtbl_server", XM_ST_STRING, LINKS_OFF(rtbl_server), "", 0, 0,
	    NULL, true, "host[:port] to connect to (empty: the JID's domain, "
	    "through SRV)" },
	{ "rtbl_service", XM_ST_STRING, LINKS_OFF(rtbl_service), "", 0, 0,
	    NULL, true, "JID of the publish-subscribe service that carries "
	    "the lists (e.g. xmppbl.org)" },
	{ "rtbl_domain_nodes", XM_ST_LIST, LINKS_OFF(rtbl_domain_nodes),
	    "spam_source_domains", 0, 0, NULL, true,
	    "Nodes whose item ids are domains (link hosts and sender domains "
	    "are looked up)" },
	{ "rtbl_jid_nodes", XM_ST_LIST, LINKS_OFF(rtbl_jid_nodes),
	    "spam_source_jids_sha256", 0, 0, NULL, true,
	    "Nodes whose item ids are the hex SHA-256 of a bare JID" },
	{ "rtbl_tls", XM_ST_BOOL, LINKS_OFF(rtbl_tls), "true", 0, 0, NULL,
	    true, "Require TLS on the subscriber's connection" },
	{ "rtbl_reconnect", XM_ST_DURATION, LINKS_OFF(rtbl_reconnect), "5s",
	    0.1, 3600, NULL, true,
	    "Wait between the subscriber's connection attempts" },
	LINKS_SYMBOLS(LINKS_SCORE)
	XM_SETTINGS_END
};

#undef LINKS_SCORE

/* one pattern entry */
struct links_pat {
	pcre2_code *re;
	char *src;          /* "FILE:LINE" or the entry, for details */
};

/* a block or allow list */
struct links_list {
	struct xm_strset domains;   /* with subdomains */
	struct xm_strset hosts;     /* exact */
	struct xm_strset prefixes;  /* normalised URL prefixes */
	struct links_pat *pats;
	size_t npats;
};

/* a name as the eye reads it: a protected domain, or a link's */
struct links_name {
	const char *domain;      /* registrable domain, A-label */
	const char *dom_u;       /* the same in Unicode */
	const char *skel;        /* skeleton of dom_u */
	const char *label;       /* its first label (the brand), Unicode */
	const char *label_skel;
};

struct links_state {
	const struct links_conf *c;
	struct links_list block, allow;
	struct xm_strset shorteners;
	struct links_name *brands;  /* in arena */
	size_t nbrands;
	struct xm_arena *arena;     /* the brands' strings */
	pcre2_match_context *mctx;
	struct xm_rtbl *rtbl;
};

/* ---- lists ---- */

/* links_domain_entry - an entry as a lower-case A-label host, or NULL */
static const char *
links_domain_entry(struct xm_arena *a, const char *s)
{
	struct xm_url_info u;

	while (*s == '*' || *s == '.')
		s++;
	if (*s == '\0' || strpbrk(s, " \t/:@?#") != NULL)
		return NULL;
	if (xm_url_normalize(a, s, strlen(s), true, &u) < 0 || *u.host == '\0')
		return NULL;
	return u.host;
}

/* links_add_entry - one list entry; 0 or -1 with ERR */
static int
links_add_entry(struct links_list *l, const struct links_conf *c,
    const char *e, const char *where, char *err, size_t errlen)
{
	struct xm_arena *a = xm_arena_new();
	struct xm_url_info u;
	const char *h, *end;
	pcre2_code *re;
	uint32_t opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK;
	size_t n = strlen(e), eoff;
	int ecode, rc = 0;
	char msg[256];

	(void)c;
	if (n > 1 && e[0] == '/') {
		end = strrchr(e, '/');
		if (end == e)
			goto bad;
		if (strcmp(end + 1, "i") == 0)
			opts |= PCRE2_CASELESS;
		else if (end[1] != '\0')
			goto bad;
		re = pcre2_compile((PCRE2_SPTR)(e + 1), (size_t)(end - e - 1),
		    opts, &ecode, &eoff, NULL);
		if (re == NULL) {
			pcre2_get_error_message(ecode, (PCRE2_UCHAR *)msg,
			    sizeof(msg));
			snprintf(err, errlen, "%s: bad pattern: %s", where, msg);
			rc = -1;
			goto out;
		}
		pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
		l->pats = xm_reallocarray(l->pats, l->npats + 1,
		    sizeof(*l->pats));
		l->pats[l->npats].re = re;
		l->pats[l->npats].src = xm_strdup(where);
		l->npats++;
	} else if (strstr(e, "://") != NULL) {
		if (xm_url_normalize(a, e, n, false, &u) < 0 || u.opaque)
			goto bad;
		xm_strset_add(&l->prefixes, u.norm, strlen(u.norm));
		/* "http://x.example" means the whole site: "http://x.example/" */
	} else if (e[0] == '=') {
		if ((h = links_domain_entry(a, e + 1)) == NULL)
			goto bad;
		xm_strset_add(&l->hosts, h, strlen(h));
	} else {
		if ((h = links_domain_entry(a, e)) == NULL)
			goto bad;
		xm_strset_add(&l->domains, h, strlen(h));
	}
	goto out;
bad:
	snprintf(err, errlen, "%s: not a domain, =host, URL prefix or "
	    "/regex/: %.80s", where, e);
	rc = -1;
out:
	xm_arena_free(a);
	return rc;
}

/* links_load_file - every entry of list file PATH */
static int
links_load_file(struct links_list *l, const struct links_conf *c,
    const char *path, char *err, size_t errlen)
{
	FILE *f;
	char line[4096], where[600], *s, *e;
	unsigned long ln = 0;
	int rc = 0;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "links: %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		ln++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%lu: line too long", path, ln);
			rc = -1;
			break;
		}
		for (s = line; *s == ' ' || *s == '\t'; s++)
			;
		e = s + strlen(s);
		while (e > s && (unsigned char)e[-1] <= ' ')
			*--e = '\0';
		if (*s == '\0' || *s == '#')
			continue;
		snprintf(where, sizeof(where), "%s:%lu", path, ln);
		if (links_add_entry(l, c, s, where, err, errlen) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		snprintf(err, errlen, "links: %s: read error", path);
		rc = -1;
	}
	fclose(f);
	return rc;
}

/* links_load - a list from its files and inline entries */
static int
links_load(struct links_list *l, const struct links_conf *c,
    const struct xm_strlist *files, const struct xm_strlist *inline_,
    const char *what, char *err, size_t errlen)
{
	char where[64];
	size_t i;

	for (i = 0; i < files->n; i++)
		if (links_load_file(l, c, files->v[i], err, errlen) < 0)
			return -1;
	for (i = 0; i < inline_->n; i++) {
		snprintf(where, sizeof(where), "links.%s[%zu]", what, i);
		if (links_add_entry(l, c, inline_->v[i], where, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* links_list_free - free a list */
static void
links_list_free(struct links_list *l)
{
	size_t i;

	xm_strset_free(&l->domains);
	xm_strset_free(&l->hosts);
	xm_strset_free(&l->prefixes);
	for (i = 0; i < l->npats; i++) {
		pcre2_code_free(l->pats[i].re);
		free(l->pats[i].src);
	}
	free(l->pats);
}

/* links_prefix_hit - the normalised URL starts with a listed prefix at a
 * path boundary ("/", "?") or is one */
static const char *
links_prefix_hit(const struct xm_strset *s, const char *norm)
{
	const char *p, *path;
	size_t n = strlen(norm);

	if (s->n == 0)
		return NULL;
	if ((path = strstr(norm, "://")) == NULL)
		return NULL;
	path = strchr(path + 3, '/');
	for (p = path; p != NULL && p < norm + n; p++) {
		if (*p != '/' && *p != '?')
			continue;
		if (xm_strset_has(s, norm, (size_t)(p - norm)) ||
		    (*p == '/' && xm_strset_has(s, norm, (size_t)(p - norm) + 1)))
			return norm;
	}
	return xm_strset_has(s, norm, n) ? norm : NULL;
}

/* links_list_hit - a link on list L: what matched, or NULL */
static const char *
links_list_hit(const struct links_state *st, const struct links_list *l,
    struct xm_arena *a, const struct xm_url_info *u)
{
	pcre2_match_data *md;
	const char *m;
	size_t i;
	int rc;

	if (*u->host != '\0') {
		if (xm_strset_has_domain(&l->domains, u->host, &m))
			return m;
		if (xm_strset_has(&l->hosts, u->host, strlen(u->host)))
			return u->host;
	}
	if (!u->opaque && links_prefix_hit(&l->prefixes, u->norm) != NULL)
		return "URL prefix";
	if (l->npats == 0)
		return NULL;
	md = pcre2_match_data_create(1, NULL);
	for (i = 0; i < l->npats; i++) {
		rc = pcre2_match(l->pats[i].re, (PCRE2_SPTR)u->norm,
		    strlen(u->norm), 0, 0, md, st->mctx);
		if (rc >= 0) {
			pcre2_match_data_free(md);
			return xm_arena_printf(a, "pattern %s", l->pats[i].src);
		}
	}
	pcre2_match_data_free(md);
	return NULL;
}

/* ---- protected names ---- */

/* links_name_of - the name a host shows: HOST_U is its Unicode form,
 * DOMAIN its registrable domain (NULL: the host itself) */
static void
links_name_of(struct xm_arena *a, const char *host, const char *host_u,
    const char *domain, struct links_name *n)
{
	const char *p, *dot;
	size_t labels = 1;

	n->domain = domain != NULL ? domain : host;
	n->dom_u = n->domain;
	if (strcmp(host_u, host) != 0) {
		/* as many trailing labels of the Unicode form */
		for (p = n->domain; (p = strchr(p, '.')) != NULL; p++)
			labels++;
		for (p = host_u + strlen(host_u); p > host_u; p--)
			if (p[-1] == '.' && --labels == 0)
				break;
		n->dom_u = p;
	}
	n->skel = xm_url_skeleton(a, n->dom_u);
	dot = strchr(n->dom_u, '.');
	n->label = dot ? xm_arena_strndup(a, n->dom_u,
	    (size_t)(dot - n->dom_u)) : n->dom_u;
	n->label_skel = xm_url_skeleton(a, n->label);
}

/* links_name_make - the name of a protected domain written NAME */
static int
links_name_make(struct xm_arena *a, const char *name, struct links_name *n)
{
	struct xm_url_info u;
	const char *p;
	char *h;

	for (p = name; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80 || *p == '%' || *p == '/' ||
		    *p == ':' || *p == '@')
			break;
	if (*p == '\0' && strstr(name, "xn--") == NULL) {
		/* plain ASCII: no need for the URL parser */
		h = xm_arena_strdup(a, name);
		for (size_t i = 0; h[i] != '\0'; i++)
			if (h[i] >= 'A' && h[i] <= 'Z')
				h[i] = (char)(h[i] + 32);
		for (size_t l = strlen(h); l > 0 && h[l - 1] == '.'; l--)
			h[l - 1] = '\0';
		if (*h == '\0' || strchr(h, '.') == NULL)
			return -1;
		links_name_of(a, h, h, xm_url_registrable(a, h), n);
		return 0;
	}
	if (xm_url_normalize(a, name, strlen(name), true, &u) < 0 ||
	    *u.host == '\0' || u.ip)
		return -1;
	links_name_of(a, u.host, u.host_u, u.domain, n);
	return 0;
}

/* links_lookalike - link name L (of host HOST) looks like protected name
 * B without being it: a reason, or NULL */
static const char *
links_lookalike(struct xm_arena *a, const char *host, const char *host_u,
    const struct links_name *l, const struct links_name *b)
{
	const char *p;
	size_t bl;

	if (strcmp(l->domain, b->domain) == 0)
		return NULL;
	/* bank.example.evil.test: the protected name as labels inside */
	bl = strlen(b->domain);
	for (p = host; (p = strstr(p, b->domain)) != NULL; p++)
		if ((p == host || p[-1] == '.') && p[bl] == '.')
			return xm_arena_printf(a, "%s inside %s", b->domain, host);
	if (strcmp(l->skel, b->skel) == 0 ||
	    (strcmp(l->label, b->label) != 0 &&
	    strcmp(l->label_skel, b->label_skel) == 0))
		return xm_arena_printf(a, "%s looks like %s", host_u, b->domain);
	return NULL;
}

/* ---- per event ---- */

/* one distinct link of the event */
struct links_item {
	struct xm_url_info u;
	const char *desc;       /* rich-text link text, or NULL */
	bool flagged;
};

/* what one symbol found: count and the first detail */
struct links_hit {
	unsigned long n;
	const char *detail;
};

struct links_check {
	struct links_state *st;
	struct xm_task *t;
	struct links_item *items;
	size_t n, cap;
	struct links_hit hit[LS_COUNT];
	/* spans of each body, and which item each span is */
	struct xm_url_span **bspans;
	size_t **bitem;
	size_t *nbspans;
};

/* links_note - count a hit of kind S on item IT */
static void
links_note(struct links_check *k, struct links_item *it, enum links_sym s,
    const char *detail)
{
	if (k->hit[s].n++ == 0)
		k->hit[s].detail = detail;
	if (it != NULL)
		it->flagged = true;
}

/* links_add - normalise and add a link (deduplicated); its index, or
 * (size_t)-1 */
static size_t
links_add(struct links_check *k, const char *raw, size_t len, bool bare,
    const char *desc)
{
	struct xm_url_info u;
	size_t i;

	for (i = 0; i < k->n; i++)
		if (strlen(k->items[i].u.raw) == len &&
		    memcmp(k->items[i].u.raw, raw, len) == 0) {
			if (desc != NULL && k->items[i].desc == NULL)
				k->items[i].desc = desc;
			return i;
		}
	if ((long long)k->n >= k->st->c->max_urls)
		return (size_t)-1;
	if (xm_url_normalize(k->t->arena, raw, len, bare, &u) < 0)
		return (size_t)-1;
	k->items = xm_arena_grow(k->t->arena, k->items, &k->cap, k->n, 1,
	    sizeof(*k->items));
	k->items[k->n].u = u;
	k->items[k->n].desc = desc;
	k->items[k->n].flagged = false;
	return k->n++;
}

/* links_text - the links written in a text */
static void
links_text(struct links_check *k, const char *s, size_t bi)
{
	struct xm_url_span sp[64];
	size_t n, i, len, idx;

	if (s == NULL || *s == '\0')
		return;
	len = strlen(s);
	n = xm_url_find(s, len, sp, XM_ARRAY_LEN(sp));
	if (bi != (size_t)-1 && n > 0) {
		k->bspans[bi] = xm_arena_array(k->t->arena, n, sizeof(*sp));
		k->bitem[bi] = xm_arena_array(k->t->arena, n, sizeof(size_t));
		memcpy(k->bspans[bi], sp, n * sizeof(*sp));
		k->nbspans[bi] = n;
	}
	for (i = 0; i < n; i++) {
		idx = links_add(k, s + sp[i].off, sp[i].len, sp[i].bare, NULL);
		if (bi != (size_t)-1)
			k->bitem[bi][i] = idx;
	}
}

/* links_collect - every link of the event */
static void
links_collect(struct links_check *k)
{
	const struct xm_event *ev = k->t->ev;
	size_t i;

	for (i = 0; i < ev->nurls; i++)
		if (ev->urls[i].url != NULL)
			links_add(k, ev->urls[i].url, strlen(ev->urls[i].url),
			    false, ev->urls[i].source == XM_URL_XHTML_HREF ?
			    ev->urls[i].desc : NULL);
	for (i = 0; i < ev->nfiles; i++)
		if (ev->files[i].url != NULL)
			links_add(k, ev->files[i].url, strlen(ev->files[i].url),
			    false, NULL);
	if (ev->nbodies > 0) {
		k->bspans = xm_arena_array(k->t->arena, ev->nbodies,
		    sizeof(*k->bspans));
		k->bitem = xm_arena_array(k->t->arena, ev->nbodies,
		    sizeof(*k->bitem));
		k->nbspans = xm_arena_array(k->t->arena, ev->nbodies,
		    sizeof(*k->nbspans));
	}
	for (i = 0; i < ev->nbodies; i++)
		links_text(k, ev->bodies[i].text, i);
	for (i = 0; i < ev->nsubjects; i++)
		links_text(k, ev->subjects[i].text, (size_t)-1);
	/* rich text usually repeats the plain body: read it once */
	for (i = 0; i < ev->nbodies && ev->xhtml_text != NULL; i++)
		if (ev->bodies[i].text != NULL &&
		    strcmp(ev->bodies[i].text, ev->xhtml_text) == 0)
			break;
	if (i == ev->nbodies)
		links_text(k, ev->xhtml_text, (size_t)-1);
	links_text(k, ev->status, (size_t)-1);
	for (i = 0; i < ev->ninvites; i++)
		links_text(k, ev->invites[i].reason, (size_t)-1);
}

/* links_ext - the extension of the last segment of PATH, lower case */
static const char *
links_ext(const char *path, char *buf, size_t n)
{
	const char *seg = strrchr(path, '/'), *dot;
	size_t i, l;

	seg = seg ? seg + 1 : path;
	if ((dot = strrchr(seg, '.')) == NULL || dot[1] == '\0')
		return NULL;
	l = strlen(dot + 1);
	if (l >= n)
		return NULL;
	for (i = 0; i < l; i++)
		buf[i] = (char)((dot[1 + i] >= 'A' && dot[1 + i] <= 'Z') ?
		    dot[1 + i] + 32 : dot[1 + i]);
	buf[l] = '\0';
	return buf;
}

/* links_mismatch - rich-text link text naming another host than its href */
static const char *
links_mismatch(struct xm_arena *a, const struct links_item *it)
{
	struct xm_url_span sp;
	struct xm_url_info d;
	const char *x, *y;

	if (it->desc == NULL || it->u.opaque || *it->u.host == '\0' ||
	    xm_url_find(it->desc, strlen(it->desc), &sp, 1) == 0)
		return NULL;
	if (xm_url_normalize(a, it->desc + sp.off, sp.len, sp.bare, &d) < 0 ||
	    d.opaque || *d.host == '\0')
		return NULL;
	x = it->u.domain ? it->u.domain : it->u.host;
	y = d.domain ? d.domain : d.host;
	if (strcmp(x, y) == 0)
		return NULL;
	return xm_arena_printf(a, "text names %s, link goes to %s", d.host,
	    it->u.host);
}

/* links_judge - lists, RTBL and heuristics for one link */
static void
links_judge(struct links_check *k, struct links_item *it,
    const struct links_name *extra, size_t nextra)
{
	const struct links_state *st = k->st;
	const struct links_conf *c = st->c;
	struct xm_arena *a = k->t->arena;
	const struct xm_url_info *u = &it->u;
	const char *m, *why, *ext;
	char buf[16], match[256], node[128];
	size_t i;

	if (links_list_hit(st, &st->allow, a, u) != NULL)
		return;
	if ((m = links_list_hit(st, &st->block, a, u)) != NULL)
		links_note(k, it, LS_BLOCKLIST, xm_arena_printf(a, "%s (%s)",
		    u->norm, m));
	if (st->rtbl != NULL && *u->host != '\0' && !u->ip &&
	    xm_rtbl_domain(st->rtbl, u->host, match, sizeof(match), node,
	    sizeof(node)))
		links_note(k, it, LS_RTBL, xm_arena_printf(a, "%s on %s",
		    match, node));
	if (!xm_strlist_has(&c->allowed_schemes, u->scheme))
		links_note(k, it, LS_HANDLER, xm_arena_printf(a, "%s:",
		    u->scheme));
	if (u->opaque)
		return;
	if (u->ip && (u->ip_public || c->ip_private))
		links_note(k, it, LS_IP_HOST, u->host);
	if (u->ip_odd_form)
		links_note(k, it, LS_IP_OBFUSCATED, xm_arena_printf(a,
		    "%s is %s", u->raw, u->host));
	if (u->odd_port)
		links_note(k, it, LS_ODD_PORT, xm_arena_printf(a, "%s port %ld",
		    u->host, u->port));
	if ((ext = links_ext(u->path, buf, sizeof(buf))) != NULL &&
	    xm_strlist_has(&c->exec_extensions, ext))
		links_note(k, it, LS_EXECUTABLE, xm_arena_printf(a, "%s .%s",
		    u->host, ext));
	if (*u->host != '\0' && xm_strset_has_domain(&st->shorteners,
	    u->host, &m))
		links_note(k, it, LS_SHORTENER, m);
	if (u->userinfo)
		links_note(k, it, LS_USERINFO, u->host);
	if (u->idn && xm_url_mixed_script(u->host_u))
		links_note(k, it, LS_MIXED_SCRIPT, u->host_u);
	if (st->nbrands + nextra > 0 && !u->ip && *u->host != '\0' &&
	    u->domain != NULL) {
		struct links_name ln;

		links_name_of(a, u->host, u->host_u, u->domain, &ln);
		for (i = 0; i < st->nbrands + nextra; i++) {
			why = links_lookalike(a, u->host, u->host_u, &ln,
			    i < st->nbrands ? &st->brands[i] :
			    &extra[i - st->nbrands]);
			if (why != NULL) {
				links_note(k, it, LS_LOOKALIKE, why);
				break;
			}
		}
	}
	if ((why = links_mismatch(a, it)) != NULL)
		links_note(k, it, LS_TEXT_MISMATCH, why);
}

/* links_sender - the sender's domain and hashed bare JID on the RTBL */
static void
links_sender(struct links_check *k)
{
	const struct xm_event *ev = k->t->ev;
	struct xm_arena *a = k->t->arena;
	const char *bare, *dom;
	unsigned char md[32];
	char hex[65], match[256], node[128], *lower;
	size_t j;

	if (k->st->rtbl == NULL || ev->from == NULL || *ev->from == '\0')
		return;
	if ((dom = xm_jid_domain(a, ev->from)) != NULL &&
	    xm_rtbl_domain(k->st->rtbl, dom, match, sizeof(match), node,
	    sizeof(node)))
		links_note(k, NULL, LS_RTBL_SENDER, xm_arena_printf(a,
		    "%s on %s", match, node));
	if ((bare = xm_jid_bare(a, ev->from)) == NULL)
		return;
	lower = xm_arena_strdup(a, bare);
	for (j = 0; lower[j] != '\0'; j++)
		if (lower[j] >= 'A' && lower[j] <= 'Z')
			lower[j] = (char)(lower[j] + 32);
	xm_sha256(lower, strlen(lower), md);
	xm_hex(md, sizeof(md), hex);
	if (xm_rtbl_jid(k->st->rtbl, hex, node, sizeof(node)))
		links_note(k, NULL, LS_RTBL_JID, xm_arena_printf(a, "%s on %s",
		    bare, node));
}

/* links_event_brands - the stanza's own domains as protected names */
static size_t
links_event_brands(struct links_check *k, struct links_name *out,
    size_t max)
{
	const struct xm_event *ev = k->t->ev;
	struct xm_arena *a = k->t->arena;
	const char *d[2];
	size_t n = 0, i, j;
	bool dup;

	d[0] = ev->to ? xm_jid_domain(a, ev->to) : NULL;
	d[1] = ev->origin && strcmp(ev->origin, "c2s") == 0 && ev->from ?
	    xm_jid_domain(a, ev->from) : NULL;
	for (i = 0; i < 2 && n < max; i++) {
		if (d[i] == NULL || (i == 1 && d[0] != NULL &&
		    strcasecmp(d[0], d[1]) == 0))
			continue;
		/* already protected (local_domains): nothing to build */
		for (j = 0; j < k->st->nbrands; j++)
			if (strcasecmp(k->st->brands[j].domain, d[i]) == 0)
				break;
		if (j < k->st->nbrands || links_name_make(a, d[i], &out[n]) < 0)
			continue;
		dup = false;
		for (j = 0; j < k->st->nbrands && !dup; j++)
			dup = strcmp(k->st->brands[j].domain, out[n].domain) == 0;
		for (j = 0; j < n && !dup; j++)
			dup = strcmp(out[j].domain, out[n].domain) == 0;
		if (!dup)
			n++;
	}
	return n;
}

/* links_defang - the bodies with their (flagged) links defanged */
static void
links_defang(struct links_check *k)
{
	const struct xm_event *ev = k->t->ev;
	const struct links_conf *c = k->st->c;
	const char *warn = k->t->scope ? k->t->scope->actions.modify_warning :
	    NULL;
	bool *pick, any;
	size_t i, j, idx;
	char *d;

	if (c->defang == DEFANG_OFF)
		return;
	for (i = 0; i < ev->nbodies; i++) {
		if (k->nbspans == NULL || k->nbspans[i] == 0)
			continue;
		pick = xm_arena_array(k->t->arena, k->nbspans[i], sizeof(*pick));
		any = false;
		for (j = 0; j < k->nbspans[i]; j++) {
			idx = k->bitem[i][j];
			pick[j] = c->defang == DEFANG_ALL ||
			    (idx != (size_t)-1 && k->items[idx].flagged);
			any |= pick[j];
		}
		if (!any)
			continue;
		d = xm_url_defang(k->t->arena, ev->bodies[i].text,
		    strlen(ev->bodies[i].text), k->bspans[i], k->nbspans[i],
		    pick);
		if (warn != NULL && *warn != '\0')
			d = xm_arena_printf(k->t->arena, "%s\n%s", warn, d);
		xm_task_replace_body(k->t, i, d);
	}
}

/* links_check - judge every link of the event */
static void
links_check(void *state, struct xm_task *t)
{
	struct links_state *st = state;
	const struct links_conf *c = st->c;
	struct links_check k;
	struct links_name extra[2];
	size_t i, nextra = 0;
	bool any;

	memset(&k, 0, sizeof(k));
	k.st = st;
	k.t = t;
	links_collect(&k);
	links_sender(&k);
	if (k.n > 0)
		nextra = links_event_brands(&k, extra, XM_ARRAY_LEN(extra));
	for (i = 0; i < k.n; i++)
		links_judge(&k, &k.items[i], extra, nextra);
	any = false;
	for (i = 0; i < LS_COUNT; i++) {
		if (k.hit[i].n == 0)
			continue;
		any = true;
		if (k.hit[i].n > 1)
			xm_task_symbol(t, links_symname[i], c->score[i], 0,
			    "%s (+%lu more)", k.hit[i].detail, k.hit[i].n - 1);
		else
			xm_task_symbol(t, links_symname[i], c->score[i], 0,
			    "%s", k.hit[i].detail);
	}
	if (any || c->defang == DEFANG_ALL)
		links_defang(&k);
}

/* links_free - free the lists and drop the RTBL reference */
static void
links_free(void *state)
{
	struct links_state *st = state;

	if (st == NULL)
		return;
	links_list_free(&st->block);
	links_list_free(&st->allow);
	xm_strset_free(&st->shorteners);
	if (st->arena != NULL)
		xm_arena_free(st->arena);
	if (st->mctx != NULL)
		pcre2_match_context_free(st->mctx);
	if (st->rtbl != NULL)
		xm_rtbl_put(st->rtbl);
	free(st);
}

/* links_init - load the lists, prepare the protected names, join the RTBL */
static int
links_init(void **state, const void *conf, char *err, size_t errlen)
{
	const struct links_conf *c = conf;
	struct links_state *st = xm_calloc(1, sizeof(*st));
	struct xm_arena *a = xm_arena_new();
	const struct xm_strlist *names[] = { &c->protected_domains,
	    &c->local_domains };
	struct xm_rtbl_conf rc;
	const char *h;
	size_t i, j;

	st->c = c;
	st->mctx = pcre2_match_context_create(NULL);
	pcre2_set_match_limit(st->mctx, (uint32_t)c->pattern_match_limit);
	if (links_load(&st->block, c, &c->block_files, &c->block, "block",
	    err, errlen) < 0 ||
	    links_load(&st->allow, c, &c->allow_files, &c->allow, "allow",
	    err, errlen) < 0)
		goto fail;
	for (i = 0; i < c->shorteners.n; i++) {
		if ((h = links_domain_entry(a, c->shorteners.v[i])) == NULL) {
			snprintf(err, errlen, "links: shorteners: not a domain: "
			    "%s", c->shorteners.v[i]);
			goto fail;
		}
		xm_strset_add(&st->shorteners, h, strlen(h));
	}
	st->arena = xm_arena_new();
	st->brands = xm_arena_array(st->arena, c->protected_domains.n +
	    c->local_domains.n + 1, sizeof(*st->brands));
	for (i = 0; i < XM_ARRAY_LEN(names); i++)
		for (j = 0; j < names[i]->n; j++) {
			if (links_name_make(st->arena, names[i]->v[j],
			    &st->brands[st->nbrands]) < 0) {
				snprintf(err, errlen, "links: not a domain: %s",
				    names[i]->v[j]);
				goto fail;
			}
			st->nbrands++;
		}
	if (c->rtbl_jid != NULL && *c->rtbl_jid != '\0') {
		if (c->rtbl_service == NULL || *c->rtbl_service == '\0') {
			snprintf(err, errlen, "links: rtbl_jid needs "
			    "rtbl_service");
			goto fail;
		}
		memset(&rc, 0, sizeof(rc));
		rc.jid = c->rtbl_jid;
		rc.password = c->rtbl_password;
		rc.server = c->rtbl_server && *c->rtbl_server ? c->rtbl_server :
		    NULL;
		rc.service = c->rtbl_service;
		rc.domain_nodes = &c->rtbl_domain_nodes;
		rc.jid_nodes = &c->rtbl_jid_nodes;
		rc.tls = c->rtbl_tls;
		rc.reconnect = c->rtbl_reconnect;
		st->rtbl = xm_rtbl_get(&rc);
	}
	xm_arena_free(a);
	*state = st;
	return 0;
fail:
	xm_arena_free(a);
	links_free(st);
	return -1;
}

const struct xm_filter_ops links_filter = {
	.name = "links",
	.abi = XM_FILTER_ABI,
	.flags = 0,
	.conf_size = sizeof(struct links_conf),
	.settings = links_settings,
	.init = links_init,
	.check = links_check,
	.free = links_free,
};
