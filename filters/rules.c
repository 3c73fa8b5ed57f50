/*
 * rules.c - operator rules in a SpamAssassin-like syntax, PCRE2 with JIT
 *
 * Purpose
 *	Lets operators score stanzas with line-oriented rule files:
 *
 *	    body     NAME /re/flags        bodies, subjects, rich text, status,
 *	                                   invite reasons
 *	    rawbody  NAME /re/flags        the stanza XML as received
 *	    uri      NAME /re/flags        URLs of the stanza and of its text
 *	    header   NAME FIELD =~ /re/    envelope fields, stanza:ATTR
 *	    header   NAME exists:FIELD
 *	    jid      NAME from|to|auth|any =~ /re/
 *	    meta     NAME expr             &&, ||, !, +, -, *, comparisons
 *	    score, describe, tflags, include
 *
 *	docs/RULES.md is the operator's reference; keep the two in step.
 *
 * Interface
 *	rules_filter, a struct xm_filter_ops. Settings (filters.rules.*):
 *	files, match_limit, depth_limit, jit, prefilter, default_score,
 *	max_rules, max_uris.
 *
 * Prefilter
 *	Running every pattern over every text costs rules x texts PCRE2
 *	calls. With prefilter (the default) the patterns of each text
 *	source (body texts, URLs, the raw stanza, each header field, each
 *	JID) are also compiled together into one Vectorscan database in
 *	prefilter mode, where a match means "may match" and no match means
 *	"cannot match". Each text is scanned once per database, and PCRE2,
 *	which stays the authority for hits and details, runs only for the
 *	rules the scan named. Patterns Vectorscan cannot take even in
 *	prefilter mode, and patterns that can match the empty string, are
 *	left out of the databases and always run PCRE2 (logged at debug),
 *	as do the patterns of a source with fewer than RULES_PF_MIN.
 *	Vectorscan gets the patterns without word boundaries (put_no_wb:
 *	5.4.9 misses matches after some), which only makes it name more.
 *
 * Ownership
 *	rules_init reads every file and compiles every pattern once per
 *	config load; the state it returns is read-only afterwards, so
 *	rules_check may run on any thread at once. The only shared writes
 *	are statistics counters, updated atomically. Per-check memory comes
 *	from the task's arena. Each thread keeps, until it ends, one PCRE2
 *	match block, one JIT stack and Vectorscan scratch space for the
 *	last few states it checked with (cloned from the state's own, which
 *	is never scanned with); a state's rules_free leaves those clones to
 *	be replaced or freed at thread exit (they point at nothing of it).
 *
 * Failure
 *	Any error in a rule file fails init with "FILE:LINE: message", so a
 *	reload keeps the old rules; a Vectorscan database that cannot be
 *	built at all only costs speed (its rules always run PCRE2, with a
 *	warning). A pattern that runs into the match, depth, heap or JIT
 *	stack limit at check time does not hit: it is counted, logged
 *	(rate-limited) and shown as the symbol RULES_LIMIT with score 0.
 *	A text the prefilter rules out never reaches PCRE2, so it cannot
 *	run into a limit either.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hs.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "xm.h"
#include "config.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define RULES_MAX_LINE     65536  /* bytes in one rule file line */
#define RULES_MAX_NAME     128    /* bytes in a rule name */
#define RULES_MAX_INCLUDE  16     /* include nesting */
#define RULES_MAX_META     512    /* instructions in one meta expression */
#define RULES_MAX_PAREN    64     /* parenthesis nesting in a meta */
#define RULES_DETAIL_MAX   60     /* bytes of matched text in a detail */
#define RULES_JIT_STACK    (512 * 1024)
#define RULES_TLS_STATES   8      /* states a thread keeps scratch for */
#define RULES_PF_MIN       3      /* patterns a prefilter database needs */

struct rules_conf {
	struct xm_strlist files;
	long long match_limit;
	long long depth_limit;
	bool jit;
	bool prefilter;
	double default_score;
	long long max_rules;
	long long max_uris;
};

static const struct xm_setting rules_settings[] = {
	{ "files", XM_ST_PATHS, offsetof(struct rules_conf, files),
	    SYSCONFDIR "/xmilter/rules.d," SYSCONFDIR "/xmilter/local.d",
	    0, 0, NULL, true,
	    "Rule files and directories, read in order; a directory means "
	    "every *.cf file in it, in name order. A missing directory whose "
	    "name ends in .d is skipped; any other missing path is an error." },
	{ "match_limit", XM_ST_INT, offsetof(struct rules_conf, match_limit),
	    "100000", 100, 100000000, NULL, true,
	    "PCRE2 match limit per pattern and text: a pattern that needs more "
	    "steps does not hit (symbol RULES_LIMIT)." },
	{ "depth_limit", XM_ST_INT, offsetof(struct rules_conf, depth_limit),
	    "10000", 10, 10000000, NULL, true,
	    "PCRE2 backtracking depth limit (interpreter only; JIT ignores it)." },
	{ "jit", XM_ST_BOOL, offsetof(struct rules_conf, jit),
	    "true", 0, 0, NULL, true,
	    "Compile patterns with the PCRE2 JIT when it is available." },
	{ "prefilter", XM_ST_BOOL, offsetof(struct rules_conf, prefilter),
	    "true", 0, 0, NULL, true,
	    "Scan each text once with Vectorscan, all patterns together, and "
	    "run PCRE2 only for the rules that may match it. Patterns "
	    "Vectorscan cannot take always run PCRE2." },
	{ "default_score", XM_ST_DOUBLE, offsetof(struct rules_conf, default_score),
	    "1.0", -1000, 1000, NULL, true,
	    "Score of a rule that has no score line." },
	{ "max_rules", XM_ST_INT, offsetof(struct rules_conf, max_rules),
	    "10000", 1, 1000000, NULL, true,
	    "Most rules the files may define (sub-rules and metas included)." },
	{ "max_uris", XM_ST_INT, offsetof(struct rules_conf, max_uris),
	    "64", 0, 10000, NULL, true,
	    "Most URLs per event that uri rules look at (the stanza's own URLs "
	    "first, then those found in its text)." },
	XM_SETTINGS_END
};

enum rule_type { RT_BODY, RT_RAWBODY, RT_URI, RT_HEADER, RT_JID, RT_META };

/* what a header rule looks at */
enum hdr_kind {
	HDR_ENV,     /* an envelope field (any key) */
	HDR_ATTR,    /* stanza:ATTR, an attribute of the stanza element */
	HDR_NAME,    /* stanza:name, the element name */
	HDR_KIND,    /* stanza:kind, the xm_kind name */
};

#define JID_FROM 0x1
#define JID_TO   0x2
#define JID_AUTH 0x4

enum meta_op {
	MO_RULE, MO_INT, MO_NOT, MO_NEG, MO_ADD, MO_SUB, MO_MUL,
	MO_LT, MO_LE, MO_GT, MO_GE, MO_EQ, MO_NE, MO_AND, MO_OR,
};

struct meta_ins {
	enum meta_op op;
	long long v;        /* MO_INT: the number; MO_RULE: the rule index */
	char *name;         /* MO_RULE: the name until resolved */
};

struct rule {
	char *name;
	enum rule_type type;
	const char *file;   /* where defined (owned by the state) */
	unsigned line;
	pcre2_code *re;
	bool jitted;        /* RE has JIT code: pcre2_jit_match on valid text */
	char *hsexpr;       /* RE for Vectorscan; NULL: always PCRE2 (why) */
	const char *nohs;   /* why there is no HSEXPR */
	unsigned hsflags;   /* HS_FLAG_* for HSEXPR */
	bool pf;            /* in prefilter databases: PCRE2 only when named */
	bool negate;        /* !~ */
	bool exists;        /* header exists:FIELD */
	enum hdr_kind hdr;
	char *field;        /* header: key or attribute name */
	unsigned jids;      /* JID_* */
	struct meta_ins *prog;
	size_t nprog;
	double score;
	bool has_score;
	char *describe;
	bool shadow;
	bool sub;           /* __NAME: evaluated, never a symbol */
	bool needed;        /* evaluated at all */
	int mark;           /* meta ordering */
};

/* one Vectorscan database: the prefiltered patterns of one text source */
struct pfdb {
	hs_database_t *db;
	enum rule_type type;  /* RT_BODY, RT_URI, RT_RAWBODY, RT_HEADER, RT_JID */
	enum hdr_kind hdr;    /* header: what FIELD names */
	const char *field;    /* header: a rule's field (owned by the rule) */
	unsigned jid;         /* jid: one of JID_* */
	size_t npat;
};

struct rules_state {
	const struct rules_conf *conf;
	unsigned long long id;  /* names the state in thread caches */
	struct rule *rules;
	size_t nrules;
	size_t *order;      /* evaluation order of needed rules */
	size_t norder;
	size_t *byname;     /* rule indices sorted by name */
	char **files;       /* every file read, for rule->file */
	size_t nfiles;
	pcre2_match_context *mctx;
	bool want_texts, want_uris;
	unsigned long limits;  /* patterns stopped by a limit (atomic) */
	unsigned long pf_errors;  /* failed scans (atomic) */

	/* prefilter */
	struct pfdb *pf;
	size_t npf;
	const struct pfdb *pf_body, *pf_uri, *pf_raw;  /* in PF, or NULL */
	hs_scratch_t *scratch;  /* fits every database; only ever cloned */
	size_t nwords;          /* 64-bit words in a set of rule indices */
	size_t ndb;             /* entries of PF with a database */
	size_t npfrules;        /* rules in databases */
	size_t nalways;         /* rules with a pattern that always run PCRE2 */
};

/* pending score, describe and tflags lines, applied once all are read */
enum pend_kind { PEND_SCORE, PEND_DESCRIBE, PEND_TFLAGS };

struct pending {
	enum pend_kind kind;
	char *name;
	const char *file;
	unsigned line;
	double score;
	char *text;
	bool shadow;
};

struct loader {
	struct rules_state *st;
	const struct rules_conf *conf;
	pcre2_compile_context *cctx;
	size_t rulecap, filecap;
	struct pending *pend;
	size_t npend, pendcap;
	char *stack[RULES_MAX_INCLUDE];  /* real paths being read */
	int depth;
	char **done;                     /* real paths read completely */
	size_t ndone, donecap;
	char *err;
	size_t errlen;
};

static void rules_free(void *state);

/* ---- per-thread cache ---- */

/*
 * What a thread keeps between checks, freed when it ends: a match block
 * (creating one per check costs two allocations), a JIT stack, and
 * Vectorscan scratch space for the last RULES_TLS_STATES states it
 * checked with (scopes and reloads each have a state of their own), each
 * clone named by its state's id. Ids are never reused, so a clone made
 * for a freed state is never picked for a new one.
 */
struct rules_thread {
	pcre2_match_data *md;   /* one ovector pair: fits any pattern */
	pcre2_jit_stack *jit;   /* NULL until a JIT match needs one */
	struct {
		unsigned long long id;  /* 0: empty */
		hs_scratch_t *scratch;
	} sc[RULES_TLS_STATES];
	unsigned next;          /* slot to reuse next */
};

static pthread_key_t thr_key;
static pthread_once_t thr_once = PTHREAD_ONCE_INIT;
static bool thr_key_ok;
static __thread struct rules_thread *thr;
static unsigned long long state_ids;   /* the last id given (atomic) */

/* thread_free - thread exit: free this thread's cache */
static void
thread_free(void *p)
{
	struct rules_thread *t = p;
	size_t i;

	pcre2_match_data_free(t->md);
	pcre2_jit_stack_free(t->jit);
	for (i = 0; i < RULES_TLS_STATES; i++)
		hs_free_scratch(t->sc[i].scratch);
	free(t);
	thr = NULL;
}

/* thread_key_init - create the thread-specific key, once */
static void
thread_key_init(void)
{
	thr_key_ok = pthread_key_create(&thr_key, thread_free) == 0;
}

/* thread_get - this thread's cache, made on first use */
static struct rules_thread *
thread_get(void)
{
	struct rules_thread *t = thr;

	if (t != NULL)
		return t;
	t = xm_calloc(1, sizeof(*t));
	if ((t->md = pcre2_match_data_create(1, NULL)) == NULL)
		panic("rules: out of memory");
	if (pthread_setspecific(thr_key, t) != 0)
		panic("rules: pthread_setspecific failed");
	thr = t;
	return t;
}

/* jit_stack_get - PCRE2 callback: this thread's JIT stack (NULL: 32K) */
static pcre2_jit_stack *
jit_stack_get(void *unused)
{
	struct rules_thread *t = thread_get();

	if (t->jit == NULL)
		t->jit = pcre2_jit_stack_create(32 * 1024, RULES_JIT_STACK, NULL);
	return t->jit;
}

/* thread_scratch - T's scratch space for ST's databases */
static hs_scratch_t *
thread_scratch(struct rules_thread *t, const struct rules_state *st)
{
	unsigned i;

	for (i = 0; i < RULES_TLS_STATES; i++)
		if (t->sc[i].id == st->id)
			return t->sc[i].scratch;
	i = t->next++ % RULES_TLS_STATES;
	hs_free_scratch(t->sc[i].scratch);
	t->sc[i].scratch = NULL;
	t->sc[i].id = 0;
	if (hs_clone_scratch(st->scratch, &t->sc[i].scratch) != HS_SUCCESS)
		panic("rules: cannot clone Vectorscan scratch (out of memory?)");
	t->sc[i].id = st->id;
	return t->sc[i].scratch;
}

/* ---- loading: helpers ---- */

/* lerr - write "FILE:LINE: message" (or "FILE: message") to the error buffer */
static int XM_PRINTF(4, 5)
lerr(struct loader *L, const char *file, unsigned line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(L->err, L->errlen, "%s:%u: %s", file, line, msg);
	else
		snprintf(L->err, L->errlen, "%s: %s", file, msg);
	return -1;
}

/* next_word - cut the next blank-separated word out of *P (NULL at end) */
static char *
next_word(char **p)
{
	char *s = *p, *w;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0') {
		*p = s;
		return NULL;
	}
	w = s;
	while (*s != '\0' && *s != ' ' && *s != '\t')
		s++;
	if (*s != '\0')
		*s++ = '\0';
	while (*s == ' ' || *s == '\t')
		s++;
	*p = s;
	return w;
}

/* trim - strip blanks at both ends of S, in place */
static char *
trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' ||
	    s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

/* name_ok - true for a valid rule name: [A-Za-z_][A-Za-z0-9_]* */
static bool
name_ok(const char *s)
{
	size_t n;

	if (!(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') ||
	    (s[0] >= 'a' && s[0] <= 'z')))
		return false;
	for (n = 0; s[n] != '\0'; n++)
		if (!(s[n] == '_' || (s[n] >= 'A' && s[n] <= 'Z') ||
		    (s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9')))
			return false;
	return n <= RULES_MAX_NAME;
}

/* closing_delim - the delimiter that ends a pattern opened with C */
static char
closing_delim(char c)
{
	switch (c) {
	case '{': return '}';
	case '(': return ')';
	case '[': return ']';
	case '<': return '>';
	default: return c;
	}
}

/* verb_is - true when the verb V[0..n) is WORD, or starts with WORD
 * when WORD ends in '=' */
static bool
verb_is(const char *v, size_t n, const char *word)
{
	size_t wl = strlen(word);

	if (wl > 0 && word[wl - 1] == '=')
		return n > wl && memcmp(v, word, wl) == 0;
	return n == wl && memcmp(v, word, wl) == 0;
}

/* x_kept - true when no inline option item in P[0..len) can turn the x
 * (extended) option off: no "(?" followed by an option letter, - or ^ */
static bool
x_kept(const char *p, size_t len)
{
	const char *q = p, *end = p + len;
	char ch;

	while ((q = memmem(q, (size_t)(end - q), "(?", 2)) != NULL) {
		q += 2;
		if (q == end)
			break;
		ch = *q;
		if ((ch >= 'a' && ch <= 'z') || ch == '-' || ch == '^' ||
		    (ch >= 'A' && ch <= 'Z' && ch != 'P' && ch != 'R'))
			return false;
	}
	return true;
}

/*
 * put_no_wb - append P[0..len) to B without its word-boundary assertions
 * (\b, \B). Vectorscan 5.4.9 misses matches of some patterns with a
 * leading \b (the shipped __XM_LURE_YOU does not match "xxxxxxx-
 * xxxxxxxxxxx you in this pic", whatever the flags), and a pattern
 * without an assertion only matches more, which a prefilter may. Kept
 * as they are: a class (where \b is a backspace), \Q...\E, comments,
 * and negative lookarounds, conditions and (*...) groups, where dropping
 * one could make the pattern match less. EXT: the x option is on.
 */
static void
put_no_wb(struct xm_buf *b, const char *p, size_t len, bool ext)
{
	unsigned char *keep;   /* per open group: no dropping inside */
	const char *e;
	size_t i = 0, n, depth = 0, nkeep = 0;
	bool cls = false, k;

	keep = xm_calloc(len + 1, 1);
	while (i < len) {
		n = 1;
		if (p[i] == '\\' && i + 1 < len && p[i + 1] == 'Q') {
			e = memmem(p + i + 2, len - i - 2, "\\E", 2);
			n = e != NULL ? (size_t)(e - p) + 2 - i : len - i;
		} else if (p[i] == '\\' && i + 1 < len) {
			if (!cls && nkeep == 0 && (p[i + 1] == 'b' || p[i + 1] == 'B')) {
				i += 2;
				continue;
			}
			n = 2;
		} else if (cls) {
			if (p[i] == '[' && i + 1 < len && p[i + 1] == ':' &&
			    (e = memmem(p + i + 2, len - i - 2, ":]", 2)) != NULL)
				n = (size_t)(e - p) + 2 - i;    /* [:alpha:] */
			else if (p[i] == ']')
				cls = false;
		} else if (p[i] == '[') {
			cls = true;
			if (i + 1 < len && p[i + 1] == '^')
				n++;
			if (i + n < len && p[i + n] == ']')
				n++;                            /* a literal ] */
		} else if (p[i] == '(' && i + 2 < len && p[i + 1] == '?' &&
		    p[i + 2] == '#') {
			e = memchr(p + i, ')', len - i);
			n = e != NULL ? (size_t)(e - p) + 1 - i : len - i;
		} else if (p[i] == '(') {
			k = i + 1 < len && (p[i + 1] == '*' || (p[i + 1] == '?' &&
			    i + 2 < len && (p[i + 2] == '!' || p[i + 2] == '(' ||
			    (p[i + 2] == '<' && i + 3 < len && p[i + 3] == '!'))));
			keep[depth++] = k;
			nkeep += k;
		} else if (p[i] == ')') {
			if (depth > 0 && keep[--depth])
				nkeep--;
		} else if (p[i] == '#' && ext) {
			n = len - i;                        /* a comment to the end */
		}
		xm_buf_append(b, p + i, n);
		i += n;
	}
	free(keep);
}

/*
 * hs_pattern - R's pattern P[0..len) as Vectorscan gets it, with PCRE2
 * options OPTS; NULL (and R->nohs says why) for a pattern that must
 * always run PCRE2. Vectorscan knows the same syntax for what it
 * supports, but its options are flags, not PCRE2's start-of-pattern
 * verbs, and its # comments need a newline to end.
 */
static char *
hs_pattern(struct rule *r, const char *p, size_t len, uint32_t opts)
{
	struct xm_buf b = { 0 };
	const char *e;
	size_t n;

	r->hsflags = HS_FLAG_UTF8 | HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH;
	if (opts & PCRE2_CASELESS)
		r->hsflags |= HS_FLAG_CASELESS;
	if (opts & PCRE2_MULTILINE)
		r->hsflags |= HS_FLAG_MULTILINE;
	if (opts & PCRE2_DOTALL)
		r->hsflags |= HS_FLAG_DOTALL;

	/* (*UCP), (*UTF) and verbs that only tune PCRE2 become flags or go;
	 * any other verb (newline conventions, NOTEMPTY, ...) changes what
	 * matches */
	while (len > 2 && p[0] == '(' && p[1] == '*' &&
	    (e = memchr(p, ')', len)) != NULL) {
		n = (size_t)(e - p) - 2;
		if (verb_is(p + 2, n, "UCP"))
			r->hsflags |= HS_FLAG_UCP;
		else if (!verb_is(p + 2, n, "UTF") &&
		    !verb_is(p + 2, n, "NO_AUTO_POSSESS") &&
		    !verb_is(p + 2, n, "NO_START_OPT") &&
		    !verb_is(p + 2, n, "NO_DOTSTAR_ANCHOR") &&
		    !verb_is(p + 2, n, "NO_JIT") &&
		    !verb_is(p + 2, n, "LIMIT_MATCH=") &&
		    !verb_is(p + 2, n, "LIMIT_DEPTH=") &&
		    !verb_is(p + 2, n, "LIMIT_HEAP=") &&
		    !verb_is(p + 2, n, "LIMIT_RECURSION=")) {
			r->nohs = "a (*VERB) Vectorscan does not know";
			return NULL;
		}
		p = e + 1;
		len -= n + 3;
	}
	if (opts & PCRE2_EXTENDED)
		xm_buf_puts(&b, "(?x)");
	put_no_wb(&b, p, len, (opts & PCRE2_EXTENDED) != 0);
	/* a # comment ends at the end of a PCRE2 pattern, at a newline for
	 * Vectorscan; unless an inline option may have turned x off, where
	 * the newline would be a character to match (Vectorscan refuses
	 * the unterminated comment instead) */
	if ((opts & PCRE2_EXTENDED) && memchr(p, '#', len) != NULL &&
	    x_kept(p, len))
		xm_buf_puts(&b, "\n");
	return b.data;
}

/* compile_re - parse "/re/flags" or "m{re}flags" at S into R's pattern */
static int
compile_re(struct loader *L, const char *file, unsigned line, struct rule *r,
    const char *s)
{
	uint32_t opts = PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C;
	const char *start, *end, *f, *name = r->name;
	char open, close, emsg[256];
	PCRE2_SIZE eoff;
	int ecode;

	if (s == NULL || *s == '\0')
		return lerr(L, file, line, "rule %s: missing /regex/", name);
	if (s[0] == '/') {
		open = '/';
		start = s + 1;
	} else if (s[0] == 'm' && s[1] != '\0' && s[1] != '\\' &&
	    s[1] != ' ' && s[1] != '\t' &&
	    !(s[1] >= 'A' && s[1] <= 'Z') && !(s[1] >= 'a' && s[1] <= 'z') &&
	    !(s[1] >= '0' && s[1] <= '9') && (unsigned char)s[1] < 0x80) {
		open = s[1];
		start = s + 2;
	} else
		return lerr(L, file, line,
		    "rule %s: expected /regex/flags or m{regex}flags", name);
	close = closing_delim(open);

	/* the pattern ends at the last closing delimiter; flags follow */
	end = strrchr(start, close);
	if (end == NULL)
		return lerr(L, file, line, "rule %s: unterminated regex", name);
	for (f = end + 1; *f != '\0'; f++) {
		switch (*f) {
		case 'i': opts |= PCRE2_CASELESS; break;
		case 'm': opts |= PCRE2_MULTILINE; break;
		case 's': opts |= PCRE2_DOTALL; break;
		case 'x': opts |= PCRE2_EXTENDED; break;
		case ' ': case '\t': break;
		default:
			return lerr(L, file, line,
			    "rule %s: unknown regex flag '%c' (i, m, s, x)",
			    name, *f);
		}
	}
	if (end == start)
		return lerr(L, file, line, "rule %s: empty regex", name);

	r->re = pcre2_compile((PCRE2_SPTR)start, (PCRE2_SIZE)(end - start),
	    opts, &ecode, &eoff, L->cctx);
	if (r->re == NULL) {
		if (pcre2_get_error_message(ecode, (PCRE2_UCHAR *)emsg,
		    sizeof(emsg)) < 0)
			snprintf(emsg, sizeof(emsg), "error %d", ecode);
		return lerr(L, file, line, "rule %s: bad regex at offset %zu: %s",
		    name, (size_t)eoff, emsg);
	}
	if (L->conf->jit) {
		ecode = pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE);
		if (ecode != 0 && ecode != PCRE2_ERROR_JIT_BADOPTION)
			log_debug("rules: %s:%u: %s: JIT compile failed (%d), "
			    "interpreting", file, line, name, ecode);
	}
	if (L->conf->prefilter)
		r->hsexpr = hs_pattern(r, start, (size_t)(end - start), opts);
	return 0;
}

/* new_rule - append a rule named NAME defined at FILE:LINE */
static struct rule *
new_rule(struct loader *L, const char *file, unsigned line, const char *name,
    enum rule_type type)
{
	struct rules_state *st = L->st;
	struct rule *r;

	if (!name_ok(name)) {
		lerr(L, file, line, "bad rule name \"%.*s\" (letters, digits "
		    "and _, at most %d)", 40, name, RULES_MAX_NAME);
		return NULL;
	}
	if ((long long)st->nrules >= L->conf->max_rules) {
		lerr(L, file, line, "more than %lld rules (max_rules)",
		    L->conf->max_rules);
		return NULL;
	}
	if (st->nrules == L->rulecap) {
		L->rulecap = L->rulecap ? L->rulecap * 2 : 64;
		st->rules = xm_reallocarray(st->rules, L->rulecap,
		    sizeof(*st->rules));
	}
	r = &st->rules[st->nrules++];
	memset(r, 0, sizeof(*r));
	r->name = xm_strdup(name);
	r->type = type;
	r->file = file;
	r->line = line;
	r->sub = strncmp(name, "__", 2) == 0;
	return r;
}

/* add_pending - remember a score/describe/tflags line for later */
static struct pending *
add_pending(struct loader *L, enum pend_kind kind, const char *name,
    const char *file, unsigned line)
{
	struct pending *p;

	if (L->npend == L->pendcap) {
		L->pendcap = L->pendcap ? L->pendcap * 2 : 64;
		L->pend = xm_reallocarray(L->pend, L->pendcap, sizeof(*L->pend));
	}
	p = &L->pend[L->npend++];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->name = xm_strdup(name);
	p->file = file;
	p->line = line;
	return p;
}

/* ---- meta expressions ---- */

enum mtok {
	MT_END, MT_NAME, MT_INT, MT_LP, MT_RP, MT_NOT, MT_AND, MT_OR,
	MT_ADD, MT_SUB, MT_MUL, MT_LT, MT_LE, MT_GT, MT_GE, MT_EQ, MT_NE,
};

struct mparse {
	struct loader *L;
	const char *file;
	unsigned line;
	const char *rule;
	const char *p;        /* cursor */
	enum mtok tok;
	const char *tstart;   /* current token's text */
	size_t tlen;
	long long tval;
	struct meta_ins *prog;
	size_t nprog;
	int paren;
	bool failed;
};

/* mp_fail - record the first meta syntax error */
static void XM_PRINTF(2, 3)
mp_fail(struct mparse *m, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (m->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	lerr(m->L, m->file, m->line, "meta %s: %s", m->rule, msg);
	m->failed = true;
}

/* mp_next - read the next token */
static void
mp_next(struct mparse *m)
{
	const char *p = m->p;
	char *end;

	while (*p == ' ' || *p == '\t')
		p++;
	m->tstart = p;
	m->tlen = 1;
	if (*p == '\0') {
		m->tok = MT_END;
		m->tlen = 0;
	} else if (*p == '_' || (*p >= 'A' && *p <= 'Z') ||
	    (*p >= 'a' && *p <= 'z')) {
		while (*p == '_' || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
			p++;
		m->tok = MT_NAME;
		m->tlen = (size_t)(p - m->tstart);
		m->p = p;
		return;
	} else if (*p >= '0' && *p <= '9') {
		errno = 0;
		m->tval = strtoll(p, &end, 10);
		if (errno != 0 || m->tval > 1000000000) {
			mp_fail(m, "number out of range");
			m->tval = 0;
		}
		m->tok = MT_INT;
		m->tlen = (size_t)(end - p);
		m->p = end;
		return;
	} else if (p[0] == '&' && p[1] == '&') {
		m->tok = MT_AND;
		m->tlen = 2;
	} else if (p[0] == '|' && p[1] == '|') {
		m->tok = MT_OR;
		m->tlen = 2;
	} else if (p[0] == '=' && p[1] == '=') {
		m->tok = MT_EQ;
		m->tlen = 2;
	} else if (p[0] == '!' && p[1] == '=') {
		m->tok = MT_NE;
		m->tlen = 2;
	} else if (p[0] == '<' && p[1] == '=') {
		m->tok = MT_LE;
		m->tlen = 2;
	} else if (p[0] == '>' && p[1] == '=') {
		m->tok = MT_GE;
		m->tlen = 2;
	} else {
		switch (*p) {
		case '(': m->tok = MT_LP; break;
		case ')': m->tok = MT_RP; break;
		case '!': m->tok = MT_NOT; break;
		case '+': m->tok = MT_ADD; break;
		case '-': m->tok = MT_SUB; break;
		case '*': m->tok = MT_MUL; break;
		case '<': m->tok = MT_LT; break;
		case '>': m->tok = MT_GT; break;
		default:
			mp_fail(m, "unexpected '%c'", *p);
			m->tok = MT_END;
			m->tlen = 0;
			m->p = p;
			return;
		}
	}
	m->p = p + m->tlen;
}

/* mp_emit - append one instruction to the program */
static void
mp_emit(struct mparse *m, enum meta_op op, long long v, char *name)
{
	if (m->nprog >= RULES_MAX_META) {
		mp_fail(m, "expression too long (at most %d terms)",
		    RULES_MAX_META);
		free(name);
		return;
	}
	m->prog[m->nprog].op = op;
	m->prog[m->nprog].v = v;
	m->prog[m->nprog].name = name;
	m->nprog++;
}

static void mp_or(struct mparse *m);

/* mp_unary - ! unary | - unary | NAME | INT | ( expr ) */
static void
mp_unary(struct mparse *m)
{
	if (m->failed)
		return;
	switch (m->tok) {
	case MT_NOT:
		mp_next(m);
		mp_unary(m);
		mp_emit(m, MO_NOT, 0, NULL);
		break;
	case MT_SUB:
		mp_next(m);
		mp_unary(m);
		mp_emit(m, MO_NEG, 0, NULL);
		break;
	case MT_NAME:
		if (m->tlen > RULES_MAX_NAME) {
			mp_fail(m, "rule name too long");
			return;
		}
		mp_emit(m, MO_RULE, 0, xm_strndup(m->tstart, m->tlen));
		mp_next(m);
		break;
	case MT_INT:
		mp_emit(m, MO_INT, m->tval, NULL);
		mp_next(m);
		break;
	case MT_LP:
		if (++m->paren > RULES_MAX_PAREN) {
			mp_fail(m, "parentheses nested too deeply");
			return;
		}
		mp_next(m);
		mp_or(m);
		if (m->tok != MT_RP) {
			mp_fail(m, "missing ')'");
			return;
		}
		m->paren--;
		mp_next(m);
		break;
	case MT_END:
		mp_fail(m, "unexpected end of expression");
		break;
	default:
		mp_fail(m, "unexpected \"%.*s\"", (int)m->tlen, m->tstart);
		break;
	}
}

/* mp_mul - unary ( * unary )* */
static void
mp_mul(struct mparse *m)
{
	mp_unary(m);
	while (!m->failed && m->tok == MT_MUL) {
		mp_next(m);
		mp_unary(m);
		mp_emit(m, MO_MUL, 0, NULL);
	}
}

/* mp_add - mul ( (+|-) mul )* */
static void
mp_add(struct mparse *m)
{
	enum mtok t;

	mp_mul(m);
	while (!m->failed && (m->tok == MT_ADD || m->tok == MT_SUB)) {
		t = m->tok;
		mp_next(m);
		mp_mul(m);
		mp_emit(m, t == MT_ADD ? MO_ADD : MO_SUB, 0, NULL);
	}
}

/* mp_rel - add ( (<|<=|>|>=) add )* */
static void
mp_rel(struct mparse *m)
{
	enum mtok t;
	enum meta_op op;

	mp_add(m);
	while (!m->failed && (m->tok == MT_LT || m->tok == MT_LE ||
	    m->tok == MT_GT || m->tok == MT_GE)) {
		t = m->tok;
		mp_next(m);
		mp_add(m);
		op = t == MT_LT ? MO_LT : t == MT_LE ? MO_LE :
		    t == MT_GT ? MO_GT : MO_GE;
		mp_emit(m, op, 0, NULL);
	}
}

/* mp_eq - rel ( (==|!=) rel )* */
static void
mp_eq(struct mparse *m)
{
	enum mtok t;

	mp_rel(m);
	while (!m->failed && (m->tok == MT_EQ || m->tok == MT_NE)) {
		t = m->tok;
		mp_next(m);
		mp_rel(m);
		mp_emit(m, t == MT_EQ ? MO_EQ : MO_NE, 0, NULL);
	}
}

/* mp_and - eq ( && eq )* */
static void
mp_and(struct mparse *m)
{
	mp_eq(m);
	while (!m->failed && m->tok == MT_AND) {
		mp_next(m);
		mp_eq(m);
		mp_emit(m, MO_AND, 0, NULL);
	}
}

/* mp_or - and ( || and )* */
static void
mp_or(struct mparse *m)
{
	mp_and(m);
	while (!m->failed && m->tok == MT_OR) {
		mp_next(m);
		mp_and(m);
		mp_emit(m, MO_OR, 0, NULL);
	}
}

/* compile_meta - parse EXPR into R's postfix program */
static int
compile_meta(struct loader *L, const char *file, unsigned line,
    struct rule *r, const char *expr)
{
	struct mparse m;
	size_t i;

	memset(&m, 0, sizeof(m));
	m.L = L;
	m.file = file;
	m.line = line;
	m.rule = r->name;
	m.p = expr;
	m.prog = xm_calloc(RULES_MAX_META, sizeof(*m.prog));
	mp_next(&m);
	if (m.tok == MT_END && !m.failed)
		mp_fail(&m, "empty expression");
	mp_or(&m);
	if (!m.failed && m.tok != MT_END)
		mp_fail(&m, "unexpected \"%.*s\"", (int)m.tlen, m.tstart);
	r->prog = xm_reallocarray(m.prog, m.nprog ? m.nprog : 1,
	    sizeof(*m.prog));
	r->nprog = m.nprog;
	if (m.failed)
		return -1;
	for (i = 0; i < r->nprog; i++)
		if (r->prog[i].op == MO_RULE && strcmp(r->prog[i].name, r->name) == 0)
			return lerr(L, file, line, "meta %s: refers to itself",
			    r->name);
	return 0;
}

/* ---- loading: files ---- */

static int load_path(struct loader *L, const char *path, const char *file,
    unsigned line, bool optional);

/* parse_line - one directive from FILE:LINE (LINE_BUF is modified) */
static int
parse_line(struct loader *L, const char *file, unsigned line, char *buf)
{
	char *p = buf, *dir, *name, *w, *rest, *end, *inc;
	struct pending *pd;
	struct rule *r;
	enum rule_type type;
	double d;
	int n;

	dir = next_word(&p);
	if (dir == NULL || dir[0] == '#')
		return 0;

	if (strcmp(dir, "include") == 0) {
		rest = trim(p);
		if (*rest == '\0')
			return lerr(L, file, line, "include: missing path");
		if (rest[0] == '/') {
			inc = xm_strdup(rest);
		} else {
			const char *slash = strrchr(file, '/');
			if (slash == NULL)
				inc = xm_strdup(rest);
			else
				inc = xm_printf("%.*s/%s",
				    (int)(slash - file), file, rest);
		}
		n = load_path(L, inc, file, line, false);
		free(inc);
		return n;
	}

	if (strcmp(dir, "body") == 0)
		type = RT_BODY;
	else if (strcmp(dir, "rawbody") == 0 || strcmp(dir, "full") == 0)
		type = RT_RAWBODY;
	else if (strcmp(dir, "uri") == 0)
		type = RT_URI;
	else if (strcmp(dir, "header") == 0)
		type = RT_HEADER;
	else if (strcmp(dir, "jid") == 0)
		type = RT_JID;
	else if (strcmp(dir, "meta") == 0)
		type = RT_META;
	else if (strcmp(dir, "score") == 0 || strcmp(dir, "describe") == 0 ||
	    strcmp(dir, "tflags") == 0) {
		if ((name = next_word(&p)) == NULL)
			return lerr(L, file, line, "%s: missing rule name", dir);
		if (!name_ok(name))
			return lerr(L, file, line, "%s: bad rule name \"%.*s\"",
			    dir, 40, name);
		if (dir[0] == 's') {
			/* SA allows four scores (per mode): use the first */
			for (n = 0; (w = next_word(&p)) != NULL; n++) {
				if (xm_parse_double(w, &d) != 0)
					return lerr(L, file, line,
					    "score %s: \"%.*s\" is not a number",
					    name, 40, w);
				if (n == 0) {
					pd = add_pending(L, PEND_SCORE, name,
					    file, line);
					pd->score = d;
				}
			}
			if (n == 0)
				return lerr(L, file, line,
				    "score %s: missing number", name);
			if (n > 4)
				return lerr(L, file, line,
				    "score %s: at most 4 numbers", name);
		} else if (dir[0] == 'd') {
			rest = trim(p);
			pd = add_pending(L, PEND_DESCRIBE, name, file, line);
			pd->text = xm_strdup(rest);
			for (end = pd->text; *end != '\0'; end++)
				if ((unsigned char)*end < 0x20 || *end == 0x7f)
					*end = ' ';
		} else {
			pd = add_pending(L, PEND_TFLAGS, name, file, line);
			while ((w = next_word(&p)) != NULL)
				if (strcmp(w, "shadow") == 0)
					pd->shadow = true;
			/* other SpamAssassin tflags mean nothing here */
		}
		return 0;
	} else
		return lerr(L, file, line, "unknown directive \"%.*s\"", 40, dir);

	if ((name = next_word(&p)) == NULL)
		return lerr(L, file, line, "%s: missing rule name", dir);
	if ((r = new_rule(L, file, line, name, type)) == NULL)
		return -1;

	switch (type) {
	case RT_BODY:
	case RT_RAWBODY:
	case RT_URI:
		return compile_re(L, file, line, r, trim(p));
	case RT_HEADER:
		if ((w = next_word(&p)) == NULL)
			return lerr(L, file, line, "header %s: missing field",
			    r->name);
		if (strncmp(w, "exists:", 7) == 0) {
			r->exists = true;
			w += 7;
		}
		if (*w == '\0')
			return lerr(L, file, line, "header %s: missing field",
			    r->name);
		if (strncmp(w, "stanza:", 7) == 0) {
			w += 7;
			if (*w == '\0')
				return lerr(L, file, line,
				    "header %s: missing attribute after stanza:",
				    r->name);
			if (strcmp(w, "name") == 0)
				r->hdr = HDR_NAME;
			else if (strcmp(w, "kind") == 0)
				r->hdr = HDR_KIND;
			else
				r->hdr = HDR_ATTR;
		} else
			r->hdr = HDR_ENV;
		r->field = xm_strdup(w);
		if (r->exists) {
			if (*trim(p) != '\0')
				return lerr(L, file, line, "header %s: "
				    "nothing may follow exists:FIELD", r->name);
			return 0;
		}
		break;   /* on to the operator and the pattern */
	case RT_JID:
		if ((w = next_word(&p)) == NULL)
			return lerr(L, file, line, "jid %s: missing from, to, "
			    "auth or any", r->name);
		if (strcmp(w, "from") == 0)
			r->jids = JID_FROM;
		else if (strcmp(w, "to") == 0)
			r->jids = JID_TO;
		else if (strcmp(w, "auth") == 0)
			r->jids = JID_AUTH;
		else if (strcmp(w, "any") == 0)
			r->jids = JID_FROM | JID_TO | JID_AUTH;
		else
			return lerr(L, file, line, "jid %s: \"%.*s\" is not "
			    "from, to, auth or any", r->name, 40, w);
		break;
	case RT_META:
		return compile_meta(L, file, line, r, trim(p));
	}

	/* header and jid: "=~ /re/" or "!~ /re/" */
	if ((w = next_word(&p)) == NULL)
		return lerr(L, file, line, "%s %s: missing =~ or !~", dir,
		    r->name);
	if (strcmp(w, "=~") == 0)
		r->negate = false;
	else if (strcmp(w, "!~") == 0)
		r->negate = true;
	else
		return lerr(L, file, line, "%s %s: expected =~ or !~, not "
		    "\"%.*s\"", dir, r->name, 40, w);
	return compile_re(L, file, line, r, trim(p));
}

/* load_file - read one rule file; REAL is its real path (taken over) */
static int
load_file(struct loader *L, const char *path, char *real)
{
	struct rules_state *st = L->st;
	char *buf = NULL, *name;
	size_t cap = 0;
	unsigned line = 0;
	ssize_t n;
	FILE *fp;
	int rc = 0;

	if ((fp = fopen(path, "r")) == NULL) {
		free(real);
		snprintf(L->err, L->errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	/* rule->file points at this copy for as long as the state lives */
	if (st->nfiles == L->filecap) {
		L->filecap = L->filecap ? L->filecap * 2 : 16;
		st->files = xm_reallocarray(st->files, L->filecap,
		    sizeof(*st->files));
	}
	name = st->files[st->nfiles++] = xm_strdup(path);
	L->stack[L->depth++] = real;

	while ((n = getline(&buf, &cap, fp)) != -1) {
		line++;
		if ((size_t)n > RULES_MAX_LINE) {
			rc = lerr(L, name, line, "line longer than %d bytes",
			    RULES_MAX_LINE);
			break;
		}
		if (strlen(buf) != (size_t)n) {
			rc = lerr(L, name, line, "NUL byte in line");
			break;
		}
		if (!xm_utf8_valid(buf, (size_t)n)) {
			rc = lerr(L, name, line, "not valid UTF-8");
			break;
		}
		trim(buf);
		if ((rc = parse_line(L, name, line, buf)) != 0)
			break;
	}
	if (rc == 0 && ferror(fp))
		rc = lerr(L, name, 0, "read error: %s", strerror(errno));
	free(buf);
	fclose(fp);

	L->depth--;
	if (L->ndone == L->donecap) {
		L->donecap = L->donecap ? L->donecap * 2 : 16;
		L->done = xm_reallocarray(L->done, L->donecap, sizeof(*L->done));
	}
	L->done[L->ndone++] = real;
	return rc;
}

/* cmp_str - qsort comparator for an array of strings */
static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* load_dir - read every *.cf file in DIR, in name order */
static int
load_dir(struct loader *L, const char *dir, const char *file, unsigned line)
{
	struct dirent *de;
	char **names = NULL, *p;
	size_t n = 0, cap = 0, len, i;
	DIR *d;
	int rc = 0;

	if ((d = opendir(dir)) == NULL) {
		if (file != NULL)
			return lerr(L, file, line, "include %s: %s", dir,
			    strerror(errno));
		snprintf(L->err, L->errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len < 4 ||
		    strcmp(de->d_name + len - 3, ".cf") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			names = xm_reallocarray(names, cap, sizeof(*names));
		}
		names[n++] = xm_strdup(de->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_str);
	for (i = 0; i < n; i++) {
		if (rc == 0) {
			len = strlen(dir);
			p = xm_printf("%s%s%s", dir,
			    len > 0 && dir[len - 1] == '/' ? "" : "/", names[i]);
			rc = load_path(L, p, file, line, false);
			free(p);
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

/* load_path - read PATH (a file or a directory of *.cf); FILE:LINE is
 * the include directive, NULL for the files setting */
static int
load_path(struct loader *L, const char *path, const char *file,
    unsigned line, bool optional)
{
	struct stat sb;
	char *real;
	size_t i;
	int e;

	if (stat(path, &sb) != 0) {
		e = errno;
		if (optional && e == ENOENT) {
			log_debug("rules: %s: missing, skipped", path);
			return 0;
		}
		if (file != NULL)
			return lerr(L, file, line, "include %s: %s", path,
			    strerror(e));
		snprintf(L->err, L->errlen, "%s: %s", path, strerror(e));
		return -1;
	}
	if (S_ISDIR(sb.st_mode))
		return load_dir(L, path, file, line);

	if ((real = realpath(path, NULL)) == NULL) {
		snprintf(L->err, L->errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	for (i = 0; i < (size_t)L->depth; i++) {
		if (strcmp(L->stack[i], real) == 0) {
			free(real);
			if (file != NULL)
				return lerr(L, file, line, "include loop: %s "
				    "is already being read", path);
			snprintf(L->err, L->errlen, "%s: include loop", path);
			return -1;
		}
	}
	for (i = 0; i < L->ndone; i++) {
		if (strcmp(L->done[i], real) == 0) {
			/* read before through another path: once is enough */
			log_debug("rules: %s: already read, skipped", path);
			free(real);
			return 0;
		}
	}
	if (L->depth >= RULES_MAX_INCLUDE) {
		free(real);
		return lerr(L, file, line, "includes nested more than %d deep",
		    RULES_MAX_INCLUDE);
	}
	return load_file(L, path, real);
}

/* ---- loading: after every file is read ---- */

/* cmp_byname - order rule indices by name, then by definition */
static int
cmp_byname(const void *a, const void *b, void *arg)
{
	const struct rules_state *st = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = strcmp(st->rules[i].name, st->rules[j].name);

	if (c != 0)
		return c;
	return i < j ? -1 : i > j;
}

/* find_rule - index of the rule named NAME, or -1 */
static long
find_rule(const struct rules_state *st, const char *name)
{
	size_t lo = 0, hi = st->nrules, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strcmp(name, st->rules[st->byname[mid]].name);
		if (c == 0)
			return (long)st->byname[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

/* order_meta - depth-first: append R's meta dependencies, then R;
 * PATH holds the metas being visited, to name a cycle */
static int
order_meta(struct loader *L, size_t ri, size_t *out, size_t *nout,
    size_t *path, size_t npath)
{
	struct rules_state *st = L->st;
	struct rule *r = &st->rules[ri];
	struct xm_buf b = { 0 };
	size_t i, d;

	if (r->mark == 2)
		return 0;
	if (r->mark == 1) {
		for (i = 0; i < npath && path[i] != ri; i++)
			continue;
		for (; i < npath; i++) {
			xm_buf_puts(&b, st->rules[path[i]].name);
			xm_buf_puts(&b, " -> ");
		}
		xm_buf_puts(&b, r->name);
		lerr(L, r->file, r->line, "meta %s: dependency cycle: %s",
		    r->name, b.data);
		xm_buf_free(&b);
		return -1;
	}
	r->mark = 1;
	path[npath] = ri;
	for (i = 0; i < r->nprog; i++) {
		if (r->prog[i].op != MO_RULE)
			continue;
		d = (size_t)r->prog[i].v;
		if (st->rules[d].type == RT_META &&
		    order_meta(L, d, out, nout, path, npath + 1) != 0)
			return -1;
	}
	r->mark = 2;
	out[(*nout)++] = ri;
	return 0;
}

/* finish - resolve names, apply scores, order metas, decide what runs */
static int
finish(struct loader *L)
{
	struct rules_state *st = L->st;
	struct pending *pd;
	struct rule *r;
	size_t i, j, k, *metas, *path, nmetas = 0;
	long idx;

	st->byname = xm_calloc(st->nrules ? st->nrules : 1, sizeof(size_t));
	for (i = 0; i < st->nrules; i++)
		st->byname[i] = i;
	if (st->nrules > 1)
		qsort_r(st->byname, st->nrules, sizeof(size_t), cmp_byname, st);
	for (i = 1; i < st->nrules; i++) {
		r = &st->rules[st->byname[i]];
		if (strcmp(r->name, st->rules[st->byname[i - 1]].name) == 0)
			return lerr(L, r->file, r->line, "rule %s already "
			    "defined at %s:%u", r->name,
			    st->rules[st->byname[i - 1]].file,
			    st->rules[st->byname[i - 1]].line);
	}

	/* score, describe and tflags lines, in the order read: last wins */
	for (i = 0; i < L->npend; i++) {
		pd = &L->pend[i];
		if ((idx = find_rule(st, pd->name)) < 0)
			return lerr(L, pd->file, pd->line, "%s for unknown "
			    "rule %s", pd->kind == PEND_SCORE ? "score" :
			    pd->kind == PEND_DESCRIBE ? "describe" : "tflags",
			    pd->name);
		r = &st->rules[idx];
		switch (pd->kind) {
		case PEND_SCORE:
			r->score = pd->score;
			r->has_score = true;
			break;
		case PEND_DESCRIBE:
			free(r->describe);
			r->describe = pd->text;
			pd->text = NULL;
			break;
		case PEND_TFLAGS:
			r->shadow = pd->shadow;
			break;
		}
	}
	for (i = 0; i < st->nrules; i++) {
		size_t jitsize = 0;

		r = &st->rules[i];
		if (!r->has_score)
			r->score = r->sub ? 0 : L->conf->default_score;
		if (r->re != NULL && pcre2_pattern_info(r->re, PCRE2_INFO_JITSIZE,
		    &jitsize) == 0 && jitsize > 0)
			r->jitted = true;
	}

	/* meta references */
	for (i = 0; i < st->nrules; i++) {
		r = &st->rules[i];
		if (r->type != RT_META)
			continue;
		nmetas++;
		for (j = 0; j < r->nprog; j++) {
			if (r->prog[j].op != MO_RULE)
				continue;
			if ((idx = find_rule(st, r->prog[j].name)) < 0)
				return lerr(L, r->file, r->line, "meta %s: "
				    "unknown rule %s", r->name, r->prog[j].name);
			r->prog[j].v = idx;
		}
	}

	/* metas in dependency order */
	metas = xm_calloc(nmetas ? nmetas : 1, sizeof(size_t));
	path = xm_calloc(nmetas ? nmetas : 1, sizeof(size_t));
	k = 0;
	for (i = 0; i < st->nrules; i++) {
		if (st->rules[i].type == RT_META &&
		    order_meta(L, i, metas, &k, path, 0) != 0) {
			free(metas);
			free(path);
			return -1;
		}
	}
	free(path);

	/*
	 * What runs: rules that can add a symbol (not sub-rules, score not
	 * 0), and whatever a running meta needs. Walking the metas from the
	 * last evaluated to the first sees every dependant before its
	 * dependencies.
	 */
	for (i = 0; i < st->nrules; i++) {
		r = &st->rules[i];
		r->needed = !r->sub && r->score != 0;
	}
	for (i = nmetas; i-- > 0; ) {
		r = &st->rules[metas[i]];
		if (!r->needed)
			continue;
		for (j = 0; j < r->nprog; j++)
			if (r->prog[j].op == MO_RULE)
				st->rules[r->prog[j].v].needed = true;
	}
	st->order = xm_calloc(st->nrules ? st->nrules : 1, sizeof(size_t));
	for (i = 0; i < st->nrules; i++) {
		r = &st->rules[i];
		if (!r->needed || r->type == RT_META)
			continue;
		st->order[st->norder++] = i;
		if (r->type == RT_BODY)
			st->want_texts = true;
		else if (r->type == RT_URI)
			st->want_uris = true;
	}
	for (i = 0; i < nmetas; i++)
		if (st->rules[metas[i]].needed)
			st->order[st->norder++] = metas[i];
	free(metas);
	return 0;
}

/* ---- loading: the prefilter databases ---- */

/* pf_name - what a database's texts are, for messages */
static const char *
pf_name(const struct pfdb *d, char *buf, size_t len)
{
	switch (d->type) {
	case RT_BODY: return "body";
	case RT_URI: return "uri";
	case RT_RAWBODY: return "rawbody";
	case RT_HEADER:
		snprintf(buf, len, "header %s%s",
		    d->hdr == HDR_ENV ? "" : "stanza:", d->field);
		return buf;
	case RT_JID:
		return d->jid == JID_FROM ? "jid from" :
		    d->jid == JID_TO ? "jid to" : "jid auth";
	default:
		return "?";
	}
}

/* pf_group - index in ST->pf of the database for R's texts (JID: one of
 * JID_* for jid rules), added when new */
static size_t
pf_group(struct rules_state *st, size_t *cap, const struct rule *r,
    unsigned jid)
{
	struct pfdb *d;
	size_t i;

	for (i = 0; i < st->npf; i++) {
		d = &st->pf[i];
		if (d->type != r->type)
			continue;
		if (r->type == RT_HEADER && (d->hdr != r->hdr ||
		    strcmp(d->field, r->field) != 0))
			continue;
		if (r->type == RT_JID && d->jid != jid)
			continue;
		return i;
	}
	if (st->npf == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		st->pf = xm_reallocarray(st->pf, *cap, sizeof(*st->pf));
	}
	d = &st->pf[st->npf];
	memset(d, 0, sizeof(*d));
	d->type = r->type;
	d->hdr = r->hdr;
	d->field = r->field;
	d->jid = jid;
	return st->npf++;
}

/* pf_in_group - true when rule R's texts are those of database D */
static bool
pf_in_group(const struct rule *r, const struct pfdb *d)
{
	if (r->type != d->type)
		return false;
	if (r->type == RT_HEADER)
		return r->hdr == d->hdr && strcmp(r->field, d->field) == 0;
	if (r->type == RT_JID)
		return (r->jids & d->jid) != 0;
	return true;
}

/* pf_screen - true when Vectorscan takes R's pattern in prefilter mode
 * and no match can be empty (the scan never looks at empty texts);
 * else WHY says why not */
static bool
pf_screen(const struct rule *r, char *why, size_t whylen)
{
	hs_expr_info_t *info = NULL;
	hs_compile_error_t *ce = NULL;
	bool ok;

	if (hs_expression_info(r->hsexpr, r->hsflags, &info, &ce) !=
	    HS_SUCCESS) {
		snprintf(why, whylen, "Vectorscan: %s",
		    ce != NULL ? ce->message : "rejected");
		hs_free_compile_error(ce);
		return false;
	}
	ok = info->min_width > 0;
	free(info);
	if (!ok)
		snprintf(why, whylen, "it can match the empty string");
	return ok;
}

/* pf_always - R's pattern stays out of the prefilter: say why */
static void
pf_always(struct rule *r, const char *why)
{
	r->pf = false;
	log_debug("rules: %s:%u: %s: not prefiltered (%s): always run",
	    r->file, r->line, r->name, why);
}

/* pf_count - prefiltered rules whose texts are those of D */
static size_t
pf_count(const struct rules_state *st, const struct pfdb *d)
{
	const struct rule *r;
	size_t i, n = 0;

	for (i = 0; i < st->norder; i++) {
		r = &st->rules[st->order[i]];
		if (r->pf && pf_in_group(r, d))
			n++;
	}
	return n;
}

/*
 * prefilter_build - one Vectorscan database per text source, of the
 * patterns of the rules that run. A source with fewer than
 * RULES_PF_MIN patterns gets none: one scan costs about what two or
 * three PCRE2 calls on a short text do. A pattern Vectorscan refuses
 * (it names it by index) is taken out and the rest compiled again; an
 * error that names no pattern leaves the whole source to PCRE2.
 */
static int
prefilter_build(struct loader *L)
{
	struct rules_state *st = L->st;
	hs_compile_error_t *ce;
	const char **exprs;
	unsigned *flags, *ids, jid;
	struct rule *r;
	struct pfdb *d;
	size_t cap = 0, i, g, n, ri;
	char why[256], name[RULES_MAX_NAME + 32];
	bool again;
	double t0;

	st->nwords = (st->nrules + 63) / 64;
	if (hs_valid_platform() != HS_SUCCESS) {
		log_warn("rules: this CPU lacks what Vectorscan needs: every "
		    "pattern runs PCRE2 (prefilter off)");
		return 0;
	}

	/* which patterns Vectorscan takes; which database each goes to */
	for (i = 0; i < st->norder; i++) {
		r = &st->rules[st->order[i]];
		if (r->re == NULL)
			continue;   /* a meta or exists: */
		if (r->hsexpr == NULL) {
			pf_always(r, r->nohs != NULL ? r->nohs : "?");
			continue;
		}
		if (!pf_screen(r, why, sizeof(why))) {
			pf_always(r, why);
			continue;
		}
		r->pf = true;
		if (r->type != RT_JID)
			pf_group(st, &cap, r, 0);
		else
			for (jid = JID_FROM; jid <= JID_AUTH; jid <<= 1)
				if (r->jids & jid)
					pf_group(st, &cap, r, jid);
	}

	/* small sources run PCRE2 directly (a jid rule leaving one source
	 * leaves them all, which may make another one small) */
	do {
		again = false;
		for (g = 0; g < st->npf; g++) {
			d = &st->pf[g];
			n = pf_count(st, d);
			if (n == 0 || n >= RULES_PF_MIN)
				continue;
			log_debug("rules: prefilter: %s: %zu pattern%s, fewer "
			    "than %d: no database", pf_name(d, name,
			    sizeof(name)), n, n == 1 ? "" : "s", RULES_PF_MIN);
			for (i = 0; i < st->norder; i++) {
				r = &st->rules[st->order[i]];
				if (r->pf && pf_in_group(r, d))
					r->pf = false;
			}
			again = true;
		}
	} while (again);

	exprs = xm_calloc(st->norder ? st->norder : 1, sizeof(*exprs));
	flags = xm_calloc(st->norder ? st->norder : 1, sizeof(*flags));
	ids = xm_calloc(st->norder ? st->norder : 1, sizeof(*ids));
	for (g = 0; g < st->npf; g++) {
		d = &st->pf[g];
		n = 0;
		for (i = 0; i < st->norder; i++) {
			r = &st->rules[st->order[i]];
			if (!r->pf || !pf_in_group(r, d))
				continue;
			exprs[n] = r->hsexpr;
			flags[n] = r->hsflags;
			ids[n++] = (unsigned)st->order[i];
		}
		t0 = xm_monotonic();
		while (n > 0) {
			ce = NULL;
			if (hs_compile_multi(exprs, flags, ids, (unsigned)n,
			    HS_MODE_BLOCK, NULL, &d->db, &ce) == HS_SUCCESS)
				break;
			d->db = NULL;
			if (ce != NULL && ce->expression >= 0 &&
			    (size_t)ce->expression < n) {
				i = (size_t)ce->expression;
				snprintf(why, sizeof(why), "Vectorscan: %s",
				    ce->message);
				pf_always(&st->rules[ids[i]], why);
				memmove(exprs + i, exprs + i + 1,
				    (n - i - 1) * sizeof(*exprs));
				memmove(flags + i, flags + i + 1,
				    (n - i - 1) * sizeof(*flags));
				memmove(ids + i, ids + i + 1,
				    (n - i - 1) * sizeof(*ids));
				n--;
			} else {
				log_warn("rules: no prefilter for %s rules "
				    "(Vectorscan: %s): their %zu patterns always "
				    "run", pf_name(d, name, sizeof(name)),
				    ce != NULL ? ce->message : "error", n);
				for (i = 0; i < n; i++)
					st->rules[ids[i]].pf = false;
				n = 0;
			}
			hs_free_compile_error(ce);
		}
		d->npat = n;
		if (d->db == NULL)
			continue;
		st->ndb++;
		log_debug("rules: prefilter: %s: %zu patterns, compiled in "
		    "%.0f ms", pf_name(d, name, sizeof(name)), n,
		    (xm_monotonic() - t0) * 1000);
		if (hs_alloc_scratch(d->db, &st->scratch) != HS_SUCCESS) {
			free(exprs);
			free(flags);
			free(ids);
			snprintf(L->err, L->errlen, "rules: cannot allocate "
			    "Vectorscan scratch space");
			return -1;
		}
		if (d->type == RT_BODY)
			st->pf_body = d;
		else if (d->type == RT_URI)
			st->pf_uri = d;
		else if (d->type == RT_RAWBODY)
			st->pf_raw = d;
	}
	free(exprs);
	free(flags);
	free(ids);
#ifdef __GLIBC__
	/* the compiler's working memory (some 20 MB for 50 rules) is free
	 * again but still in the heap: give it back */
	if (st->npf > 0)
		malloc_trim(0);
#endif

	for (i = 0; i < st->norder; i++) {
		ri = st->order[i];
		r = &st->rules[ri];
		if (r->re == NULL)
			continue;
		if (r->pf)
			st->npfrules++;
		else
			st->nalways++;
	}
	return 0;
}

/* rules_init - read and compile every rule file named in CONF */
static int
rules_init(void **state, const void *vconf, char *err, size_t errlen)
{
	const struct rules_conf *conf = vconf;
	struct rules_state *st;
	struct loader L;
	const char *path;
	size_t i, len;
	bool optional;
	int rc = 0;

	pthread_once(&thr_once, thread_key_init);
	if (!thr_key_ok) {
		snprintf(err, errlen, "rules: pthread_key_create failed");
		return -1;
	}
	st = xm_calloc(1, sizeof(*st));
	st->conf = conf;
	st->id = __atomic_add_fetch(&state_ids, 1, __ATOMIC_RELAXED);
	memset(&L, 0, sizeof(L));
	L.st = st;
	L.conf = conf;
	L.err = err;
	L.errlen = errlen;
	if (errlen > 0)
		err[0] = '\0';
	if ((L.cctx = pcre2_compile_context_create(NULL)) == NULL)
		panic("rules: out of memory");
	pcre2_set_max_pattern_length(L.cctx, RULES_MAX_LINE);

	for (i = 0; rc == 0 && i < conf->files.n; i++) {
		path = conf->files.v[i];
		len = strlen(path);
		/* a missing rules.d-style directory just has no rules yet */
		optional = (len > 0 && path[len - 1] == '/') ||
		    (len > 2 && strcmp(path + len - 2, ".d") == 0);
		rc = load_path(&L, path, NULL, 0, optional);
	}
	if (rc == 0)
		rc = finish(&L);
	if (rc == 0 && conf->prefilter)
		rc = prefilter_build(&L);

	if (rc == 0) {
		if ((st->mctx = pcre2_match_context_create(NULL)) == NULL)
			panic("rules: out of memory");
		pcre2_set_match_limit(st->mctx, (uint32_t)conf->match_limit);
		pcre2_set_depth_limit(st->mctx, (uint32_t)conf->depth_limit);
		if (conf->jit)
			pcre2_jit_stack_assign(st->mctx, jit_stack_get, NULL);
	}

	pcre2_compile_context_free(L.cctx);
	for (i = 0; i < L.npend; i++) {
		free(L.pend[i].name);
		free(L.pend[i].text);
	}
	free(L.pend);
	for (i = 0; i < (size_t)L.depth; i++)
		free(L.stack[i]);
	for (i = 0; i < L.ndone; i++)
		free(L.done[i]);
	free(L.done);

	if (rc != 0) {
		rules_free(st);
		return -1;
	}
	log_debug("rules: %zu rules from %zu files, %zu evaluated",
	    st->nrules, st->nfiles, st->norder);
	if (conf->prefilter)
		log_debug("rules: prefilter: %zu patterns in %zu databases, "
		    "%zu not prefiltered (always run)", st->npfrules,
		    st->ndb, st->nalways);
	*state = st;
	return 0;
}

/* rules_free - free the compiled rules */
static void
rules_free(void *state)
{
	struct rules_state *st = state;
	struct rule *r;
	size_t i, j;

	if (st == NULL)
		return;
	for (i = 0; i < st->nrules; i++) {
		r = &st->rules[i];
		free(r->name);
		pcre2_code_free(r->re);
		free(r->hsexpr);
		free(r->field);
		for (j = 0; j < r->nprog; j++)
			free(r->prog[j].name);
		free(r->prog);
		free(r->describe);
	}
	free(st->rules);
	free(st->order);
	free(st->byname);
	for (i = 0; i < st->nfiles; i++)
		free(st->files[i]);
	free(st->files);
	pcre2_match_context_free(st->mctx);
	for (i = 0; i < st->npf; i++)
		hs_free_database(st->pf[i].db);
	free(st->pf);
	hs_free_scratch(st->scratch);
	free(st);
}

/* ---- checking ---- */

struct span {
	const char *s;
	size_t len;
};

struct check {
	const struct rules_state *st;
	struct xm_task *t;
	pcre2_match_data *md;
	unsigned char *hit;
	const char **det;
	bool limited;          /* RULES_LIMIT already added */
	struct span *texts;
	size_t ntexts;
	struct span *uris;
	size_t nuris;
	/* prefilter: sets of rule indices (st->nwords words each) a
	 * database named; a prefiltered rule not in them cannot match */
	hs_scratch_t *scratch;
	uint64_t *tcand;       /* one set per text (body) */
	uint64_t *ucand;       /* one set per URL */
	uint64_t *cand;        /* all: any text, any URL, the raw stanza,
	                        * header fields, JIDs */
};

/* named - true when rule RI is in the set BITS */
static inline bool
named(const uint64_t *bits, size_t ri)
{
	return (bits[ri / 64] >> (ri % 64)) & 1;
}

/* snippet - up to RULES_DETAIL_MAX bytes of S, cut on a character
 * boundary, control characters blanked (a detail is one protocol line) */
static const char *
snippet(struct xm_arena *a, const char *s, size_t len)
{
	size_t n = len > RULES_DETAIL_MAX ? RULES_DETAIL_MAX : len;
	char *d, *p;

	while (n > 0 && n < len && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	d = xm_arena_strndup(a, s, n);
	for (p = d; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return d;
}

/* limit_hit - a pattern ran into a PCRE2 limit: count, log, mark */
static void
limit_hit(struct check *c, const struct rule *r, int rc)
{
	struct rules_state *st = (struct rules_state *)c->st;
	unsigned long n;
	char msg[128];

	n = __atomic_add_fetch(&st->limits, 1, __ATOMIC_RELAXED);
	if (pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof(msg)) < 0)
		snprintf(msg, sizeof(msg), "error %d", rc);
	/* 1st, 2nd, 4th, 8th, ...: a hostile flood cannot flood the log */
	if ((n & (n - 1)) == 0)
		log_warn("rules: rule %s (%s:%u): %s (%lu so far)", r->name,
		    r->file, r->line, msg, n);
	if (!c->limited) {
		c->limited = true;
		xm_task_symbol(c->t, "RULES_LIMIT", 0, 0, "%s: %s", r->name, msg);
	}
}

/* match - run R's pattern on S: 1 match (detail in *DET), 0 no, -1 error */
static int
match(struct check *c, const struct rule *r, const char *s, size_t len,
    bool valid, const char **det)
{
	PCRE2_SIZE *ov;
	int rc;

	/* the JIT fast path skips every check: only for text known valid */
	if (valid && r->jitted)
		rc = pcre2_jit_match(r->re, (PCRE2_SPTR)s, len, 0, 0, c->md,
		    c->st->mctx);
	else
		rc = pcre2_match(r->re, (PCRE2_SPTR)s, len, 0,
		    valid ? PCRE2_NO_UTF_CHECK : 0, c->md, c->st->mctx);
	if (rc >= 0) {
		if (det != NULL && r->describe == NULL && !r->sub) {
			ov = pcre2_get_ovector_pointer(c->md);
			if (ov[0] <= ov[1] && ov[1] <= len)
				*det = snippet(c->t->arena, s + ov[0],
				    ov[1] - ov[0]);
		}
		return 1;
	}
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
	    rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
		limit_hit(c, r, rc);
	else
		log_debug("rules: rule %s: match error %d", r->name, rc);
	return -1;
}

/* add_text - one more text for body rules (NULL ignored) */
static void
add_text(struct check *c, size_t *cap, const char *s)
{
	if (s == NULL)
		return;
	c->texts = xm_arena_grow(c->t->arena, c->texts, cap, c->ntexts, 1,
	    sizeof(*c->texts));
	c->texts[c->ntexts].s = s;
	c->texts[c->ntexts].len = strlen(s);
	c->ntexts++;
}

/* collect_texts - bodies, subjects, rich text, status, invite reasons */
static void
collect_texts(struct check *c)
{
	const struct xm_event *ev = c->t->ev;
	size_t cap = 0, i;

	for (i = 0; i < ev->nbodies; i++)
		add_text(c, &cap, ev->bodies[i].text);
	for (i = 0; i < ev->nsubjects; i++)
		add_text(c, &cap, ev->subjects[i].text);
	add_text(c, &cap, ev->xhtml_text);
	add_text(c, &cap, ev->status);
	for (i = 0; i < ev->ninvites; i++)
		add_text(c, &cap, ev->invites[i].reason);
}

/* add_uri - one more URL for uri rules, unless seen or over the limit */
static void
add_uri(struct check *c, size_t *cap, const char *s, size_t len)
{
	size_t i;

	if (len == 0 || (long long)c->nuris >= c->st->conf->max_uris)
		return;
	for (i = 0; i < c->nuris; i++)
		if (c->uris[i].len == len && memcmp(c->uris[i].s, s, len) == 0)
			return;
	c->uris = xm_arena_grow(c->t->arena, c->uris, cap, c->nuris, 1,
	    sizeof(*c->uris));
	c->uris[c->nuris].s = s;
	c->uris[c->nuris].len = len;
	c->nuris++;
}

/* uri_char - true for a byte that may be part of a URL found in text */
static bool
uri_char(unsigned char ch)
{
	return ch > 0x20 && ch != 0x7f && ch != '<' && ch != '>' &&
	    ch != '"' && ch != '`';
}

/* scheme_char - true for a byte of a URL scheme */
static bool
scheme_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || ch == '+' || ch == '-' || ch == '.';
}

/* url_end - where a URL starting at S[start] ends, trailing
 * punctuation and unbalanced closing brackets left out */
static size_t
url_end(const char *s, size_t len, size_t start)
{
	size_t e = start, i;
	int paren = 0, bracket = 0;
	char ch;

	while (e < len && uri_char((unsigned char)s[e]))
		e++;
	for (i = start; i < e; i++) {
		if (s[i] == '(')
			paren++;
		else if (s[i] == ')')
			paren--;
		else if (s[i] == '[')
			bracket++;
		else if (s[i] == ']')
			bracket--;
	}
	while (e > start) {
		ch = s[e - 1];
		if (strchr(".,;:!?'*", ch) != NULL)
			e--;
		else if (ch == ')' && paren < 0) {
			paren++;
			e--;
		} else if (ch == ']' && bracket < 0) {
			bracket++;
			e--;
		} else
			break;
	}
	return e;
}

/* extract_uris - scheme://... and www.... tokens of S (NUL-terminated) */
static void
extract_uris(struct check *c, size_t *cap, const char *s, size_t len)
{
	size_t i = 0, start, end;
	unsigned char prev;

	while (i < len && (long long)c->nuris < c->st->conf->max_uris) {
		/* only "://" and "www." can start one */
		i += strcspn(s + i, ":wW");
		if (i >= len)
			break;
		start = len;
		if (s[i] == ':' && i + 2 < len && s[i + 1] == '/' &&
		    s[i + 2] == '/') {
			start = i;
			while (start > 0 && scheme_char((unsigned char)s[start - 1]))
				start--;
			/* a scheme starts with a letter */
			while (start < i && !((s[start] >= 'a' && s[start] <= 'z') ||
			    (s[start] >= 'A' && s[start] <= 'Z')))
				start++;
			if (start == i)
				start = len;
		} else if ((s[i] == 'w' || s[i] == 'W') && i + 4 < len &&
		    strncasecmp(s + i, "www.", 4) == 0) {
			prev = i > 0 ? (unsigned char)s[i - 1] : ' ';
			if (!scheme_char(prev) && prev != '/' && prev != '@' &&
			    prev != '_')
				start = i;
		}
		if (start == len) {
			i++;
			continue;
		}
		end = url_end(s, len, start);
		/* something must follow "://" or "www." */
		if (end > (s[i] == ':' ? i + 3 : i + 4))
			add_uri(c, cap, s + start, end - start);
		i = end > i ? end : i + 1;
	}
}

/* collect_uris - the stanza's URLs, then those found in its texts */
static void
collect_uris(struct check *c)
{
	const struct xm_event *ev = c->t->ev;
	size_t cap = 0, i;

	for (i = 0; i < ev->nurls; i++)
		if (ev->urls[i].url != NULL)
			add_uri(c, &cap, ev->urls[i].url, strlen(ev->urls[i].url));
	for (i = 0; i < ev->nfiles; i++)
		if (ev->files[i].url != NULL)
			add_uri(c, &cap, ev->files[i].url, strlen(ev->files[i].url));
	for (i = 0; i < c->ntexts; i++)
		extract_uris(c, &cap, c->texts[i].s, c->texts[i].len);
}

/* check_spans - =~ over several texts: true when any matches; CAND,
 * when not NULL, holds one set per text, and texts whose set lacks RI
 * are skipped */
static bool
check_spans(struct check *c, const struct rule *r, const struct span *v,
    size_t n, size_t ri, const uint64_t *cand)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (cand != NULL && !named(cand + i * c->st->nwords, ri))
			continue;
		if (match(c, r, v[i].s, v[i].len, true, &c->det[ri]) == 1)
			return true;
	}
	return false;
}

/* check_values - =~ / !~ over NVALS values of one field or JID set;
 * VALID says they are known to be UTF-8, RULED_OUT that the prefilter
 * found none can match */
static bool
check_values(struct check *c, const struct rule *r, size_t ri,
    const char *const *vals, size_t nvals, bool valid, bool ruled_out)
{
	const char *det = NULL;
	bool any = false;
	size_t i;
	size_t len;
	int m;

	for (i = 0; !ruled_out && i < nvals; i++) {
		/* an envelope value checked here takes the JIT fast path; PCRE2
		 * turns down one that is not UTF-8 */
		len = strlen(vals[i]);
		m = match(c, r, vals[i], len, valid || xm_utf8_valid(vals[i], len),
		    &det);
		if (m < 0)
			return false;   /* unknown: neither =~ nor !~ hits */
		if (m == 1) {
			any = true;
			break;
		}
	}
	if (!r->negate) {
		if (any)
			c->det[ri] = det;
		return any;
	}
	if (!any && r->describe == NULL && nvals > 0)
		c->det[ri] = snippet(c->t->arena, vals[0], strlen(vals[0]));
	return !any;
}

/* header_values - the values of a header rule's field (HDR, FIELD):
 * their number, the array in *VALS (ONE when a single value) */
static size_t
header_values(struct check *c, enum hdr_kind hdr, const char *field,
    const char **one, const char ***vals)
{
	const struct xm_event *ev = c->t->ev;
	size_t n = 0, i, first = 0;

	*one = NULL;
	*vals = one;
	switch (hdr) {
	case HDR_ENV:
		for (i = 0; i < ev->nfields; i++)
			if (strcmp(ev->fields[i].key, field) == 0 && n++ == 0) {
				*one = ev->fields[i].value;
				first = i;
			}
		if (n <= 1)
			return n;
		/* a list: a second pass from the first value */
		*vals = xm_arena_array(c->t->arena, n, sizeof(**vals));
		n = 0;
		for (i = first; i < ev->nfields; i++)
			if (strcmp(ev->fields[i].key, field) == 0)
				(*vals)[n++] = ev->fields[i].value;
		return n;
	case HDR_ATTR:
		*one = ev->root != NULL ? xm_node_attr(ev->root, field) : NULL;
		break;
	case HDR_NAME:
		*one = ev->name;
		break;
	case HDR_KIND:
		*one = ev->root != NULL ? xm_kind_name(ev->kind) : NULL;
		break;
	}
	return *one != NULL ? 1 : 0;
}

/* check_header - header rules on envelope fields and stanza attributes */
static bool
check_header(struct check *c, const struct rule *r, size_t ri)
{
	const char *one, **vals;
	size_t n;

	n = header_values(c, r->hdr, r->field, &one, &vals);
	if (r->exists)
		return n > 0;
	if (n == 0) {
		/* as in SpamAssassin: an absent field is the empty string */
		one = "";
		vals = &one;
		n = 1;
	}
	/* envelope lines are not checked by expat */
	return check_values(c, r, ri, vals, n, r->hdr != HDR_ENV,
	    r->pf && !named(c->cand, ri));
}

/* check_jid - jid rules: the JIDs that are present */
static bool
check_jid(struct check *c, const struct rule *r, size_t ri)
{
	const struct xm_event *ev = c->t->ev;
	const char *vals[3];
	size_t n = 0;
	bool valid = true;

	if ((r->jids & JID_FROM) && ev->from != NULL)
		vals[n++] = ev->from;
	if ((r->jids & JID_TO) && ev->to != NULL)
		vals[n++] = ev->to;
	if ((r->jids & JID_AUTH) && ev->auth != NULL) {
		vals[n++] = ev->auth;
		valid = false;   /* an envelope field */
	}
	if (n == 0)
		return false;
	return check_values(c, r, ri, vals, n, valid,
	    r->pf && !named(c->cand, ri));
}

/* pf_on_match - Vectorscan callback: rule ID may match */
static int
pf_on_match(unsigned int id, unsigned long long from, unsigned long long to,
    unsigned int flags, void *ctx)
{
	uint64_t *bits = ctx;

	bits[id / 64] |= (uint64_t)1 << (id % 64);
	return 0;
}

/* pf_scan - add the rules of D that may match S[0..len) to BITS; VALID
 * says S is known to be UTF-8 */
static void
pf_scan(struct check *c, const struct pfdb *d, const char *s, size_t len,
    bool valid, uint64_t *bits)
{
	struct rules_state *st = (struct rules_state *)c->st;
	unsigned long n;
	hs_error_t e;

	if (len == 0)
		return;   /* no prefiltered pattern matches the empty string */
	/* Vectorscan wants UTF-8; PCRE2 will turn down what is not */
	if (!valid && !xm_utf8_valid(s, len))
		e = HS_INVALID;
	else if (len > UINT_MAX)
		e = HS_INVALID;
	else
		e = hs_scan(d->db, s, (unsigned)len, 0, c->scratch, pf_on_match,
		    bits);
	if (e == HS_SUCCESS)
		return;
	/* cannot tell: every rule may match */
	memset(bits, 0xff, st->nwords * sizeof(*bits));
	if (valid || len > UINT_MAX) {
		n = __atomic_add_fetch(&st->pf_errors, 1, __ATOMIC_RELAXED);
		if ((n & (n - 1)) == 0)
			log_warn("rules: Vectorscan scan failed (%d): rules "
			    "run without prefilter (%lu so far)", (int)e, n);
	}
}

/* set_or - add the N sets of NWORDS words at SETS to DST */
static void
set_or(uint64_t *dst, const uint64_t *sets, size_t n, size_t nwords)
{
	size_t i, w;

	for (i = 0; i < n; i++)
		for (w = 0; w < nwords; w++)
			dst[w] |= sets[i * nwords + w];
}

/* prefilter - scan each text once with its database: the sets of rules
 * that may match */
static void
prefilter(struct check *c)
{
	const struct rules_state *st = c->st;
	const struct xm_event *ev = c->t->ev;
	struct xm_arena *a = c->t->arena;
	const struct pfdb *d;
	const char *one, **vals, *v;
	size_t i, k, n;

	c->scratch = thread_scratch(thread_get(), st);
	c->cand = xm_arena_array(a, st->nwords, sizeof(*c->cand));
	if (st->pf_body != NULL && c->ntexts > 0) {
		c->tcand = xm_arena_array(a, c->ntexts * st->nwords,
		    sizeof(*c->tcand));
		for (i = 0; i < c->ntexts; i++)
			pf_scan(c, st->pf_body, c->texts[i].s, c->texts[i].len,
			    true, c->tcand + i * st->nwords);
		set_or(c->cand, c->tcand, c->ntexts, st->nwords);
	}
	if (st->pf_uri != NULL && c->nuris > 0) {
		c->ucand = xm_arena_array(a, c->nuris * st->nwords,
		    sizeof(*c->ucand));
		for (i = 0; i < c->nuris; i++)
			pf_scan(c, st->pf_uri, c->uris[i].s, c->uris[i].len,
			    true, c->ucand + i * st->nwords);
		set_or(c->cand, c->ucand, c->nuris, st->nwords);
	}
	/* the raw stanza is what expat accepted: valid UTF-8 */
	if (st->pf_raw != NULL && ev->raw != NULL)
		pf_scan(c, st->pf_raw, ev->raw, ev->raw_len, true, c->cand);
	for (k = 0; k < st->npf; k++) {
		d = &st->pf[k];
		if (d->db == NULL)
			continue;
		if (d->type == RT_HEADER) {
			n = header_values(c, d->hdr, d->field, &one, &vals);
			for (i = 0; i < n; i++)
				pf_scan(c, d, vals[i], strlen(vals[i]),
				    d->hdr != HDR_ENV, c->cand);
		} else if (d->type == RT_JID) {
			v = d->jid == JID_FROM ? ev->from :
			    d->jid == JID_TO ? ev->to : ev->auth;
			if (v != NULL)
				pf_scan(c, d, v, strlen(v), d->jid != JID_AUTH,
				    c->cand);
		}
	}
}

/* sat_add - a + b, saturated */
static long long
sat_add(long long a, long long b)
{
	long long r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? LLONG_MAX : LLONG_MIN;
	return r;
}

/* eval_meta - run R's postfix program over the hits so far */
static bool
eval_meta(const struct check *c, const struct rule *r)
{
	long long stk[RULES_MAX_META], a, b, v;
	size_t sp = 0, i;

	for (i = 0; i < r->nprog; i++) {
		const struct meta_ins *in = &r->prog[i];

		switch (in->op) {
		case MO_RULE:
			stk[sp++] = c->hit[in->v];
			continue;
		case MO_INT:
			stk[sp++] = in->v;
			continue;
		case MO_NOT:
			stk[sp - 1] = !stk[sp - 1];
			continue;
		case MO_NEG:
			stk[sp - 1] = stk[sp - 1] == LLONG_MIN ? LLONG_MAX :
			    -stk[sp - 1];
			continue;
		default:
			break;
		}
		b = stk[--sp];
		a = stk[sp - 1];
		switch (in->op) {
		case MO_ADD: v = sat_add(a, b); break;
		case MO_SUB: v = sat_add(a, b == LLONG_MIN ? LLONG_MAX : -b); break;
		case MO_MUL:
			if (__builtin_mul_overflow(a, b, &v))
				v = (a < 0) != (b < 0) ? LLONG_MIN : LLONG_MAX;
			break;
		case MO_LT: v = a < b; break;
		case MO_LE: v = a <= b; break;
		case MO_GT: v = a > b; break;
		case MO_GE: v = a >= b; break;
		case MO_EQ: v = a == b; break;
		case MO_NE: v = a != b; break;
		case MO_AND: v = a && b; break;
		case MO_OR: v = a || b; break;
		default: panic("rules: bad meta op %d", (int)in->op);
		}
		stk[sp - 1] = v;
	}
	if (sp != 1)
		panic("rules: meta %s: stack depth %zu", r->name, sp);
	return stk[0] != 0;
}

/* rules_check - run every needed rule over T's event, add symbols */
static void
rules_check(void *state, struct xm_task *t)
{
	const struct rules_state *st = state;
	const struct xm_event *ev = t->ev;
	const struct rule *r;
	struct check c;
	size_t i, ri;
	bool h;

	if (st->norder == 0)
		return;
	memset(&c, 0, sizeof(c));
	c.st = st;
	c.t = t;
	c.md = thread_get()->md;
	c.hit = xm_arena_alloc(t->arena, st->nrules);
	c.det = xm_arena_array(t->arena, st->nrules, sizeof(*c.det));
	if (st->want_texts || st->want_uris)
		collect_texts(&c);
	if (st->want_uris)
		collect_uris(&c);
	if (st->scratch != NULL)
		prefilter(&c);

	for (i = 0; i < st->norder; i++) {
		ri = st->order[i];
		r = &st->rules[ri];
		h = false;
		switch (r->type) {
		case RT_BODY:
			if (r->pf && !named(c.cand, ri))
				break;
			h = check_spans(&c, r, c.texts, c.ntexts, ri,
			    r->pf ? c.tcand : NULL);
			break;
		case RT_URI:
			if (r->pf && !named(c.cand, ri))
				break;
			h = check_spans(&c, r, c.uris, c.nuris, ri,
			    r->pf ? c.ucand : NULL);
			break;
		case RT_RAWBODY:
			if (ev->raw == NULL || (r->pf && !named(c.cand, ri)))
				break;
			/* expat accepted it: valid UTF-8, no second check */
			h = match(&c, r, ev->raw, ev->raw_len, true,
			    &c.det[ri]) == 1;
			break;
		case RT_HEADER:
			h = check_header(&c, r, ri);
			break;
		case RT_JID:
			h = check_jid(&c, r, ri);
			break;
		case RT_META:
			h = eval_meta(&c, r);
			break;
		}
		c.hit[ri] = h;
	}

	for (ri = 0; ri < st->nrules; ri++) {
		r = &st->rules[ri];
		if (!c.hit[ri] || r->sub || r->score == 0)
			continue;
		xm_task_symbol(t, r->name, r->score,
		    r->shadow ? XM_SYM_SHADOW : 0, "%s",
		    r->describe != NULL ? r->describe :
		    c.det[ri] != NULL ? c.det[ri] : "");
	}
}

const struct xm_filter_ops rules_filter = {
	.name = "rules",
	.abi = XM_FILTER_ABI,
	.flags = 0,
	.conf_size = sizeof(struct rules_conf),
	.settings = rules_settings,
	.init = rules_init,
	.check = rules_check,
	.free = rules_free,
};
