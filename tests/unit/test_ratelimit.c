/*
 * test_ratelimit.c - unit tests of filters/ratelimit.c and the outbreak
 * fingerprints (plugin/fingerprint.c)
 *
 * Fingerprints: a table of texts that must fold to the same fingerprint
 * (case, spacing, punctuation, numbers, random tokens, links varied) and
 * of texts that must differ or carry none (short everyday replies); link
 * keys. The filter, through a real chain built from YAML with only it
 * enabled, fed timed events (the clock is each event's time): every
 * budget (account, address, prefix, domain, network, strangers, young
 * accounts, subscriptions, invitations, files), fan-out, escalation to a
 * block and its expiry, trusted senders, scopes with their own limits,
 * campaigns (many senders, one worm, never "ok"), roster weighting, and
 * the same sequence giving the same verdicts twice.
 *
 * Criterion runs each test in its own process, so the process-global
 * state starts empty in each.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "chain.h"
#include "config.h"
#include "event.h"
#include "fingerprint.h"
#include "state.h"
#include "xm.h"

#include "testlib.h"

TestSuite(fingerprint);
TestSuite(ratelimit, .init = mk_tmpdir, .fini = rm_tmpdir);

/* ---- fingerprints ---- */

/* fp_of - the fingerprint of TEXT with the default minimums (4 words) */
static struct xm_fp
fp_of(struct xm_arena *a, const char *text)
{
	struct xm_fp fp;
	const char *t[1] = { text };

	xm_fp_compute(a, t, 1, NULL, 0, 4, 16, &fp);
	return fp;
}

static const char *const same_groups[][5] = {
	{ "Congratulations! You WON a free iPhone 12, claim it now: code x7k9p2",
	  "congratulations you won a FREE iphone 15 - claim it now, code q3z8w1!!",
	  "CONGRATULATIONS!!!  you   won a free iPhone 99... claim it now. "
	      "code: zz91kq",
	  "Congratulations, you won a free iPhone 7 claim it now code a1b2c3d4",
	  NULL },
	{ "cheap meds at http://a.example/x?id=1 order today please friend",
	  "Cheap meds at https://b.example/y order today, please friend!",
	  "cheap meds at www.c.example order today please friend",
	  NULL },
	{ "\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2 \xd0\xb4\xd1\x80"
	      "\xd1\x83\xd0\xb3, \xd0\xb2\xd0\xbe\xd1\x82 \xd1\x82\xd1\x83\xd1\x82 "
	      "\xd1\x84\xd0\xbe\xd1\x82\xd0\xbe",
	  "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\x94\xd0\xa0"
	      "\xd0\xa3\xd0\x93 \xd0\xb2\xd0\xbe\xd1\x82 \xd1\x82\xd1\x83\xd1\x82 "
	      "\xd1\x84\xd0\xbe\xd1\x82\xd0\xbe!!",
	  NULL },
};

Test(fingerprint, variants_fold_together)
{
	struct xm_arena *a = xm_arena_new();
	size_t g, i;

	for (g = 0; g < sizeof(same_groups) / sizeof(same_groups[0]); g++) {
		struct xm_fp first = fp_of(a, same_groups[g][0]);

		cr_assert(first.has_text, "group %zu: no fingerprint: %s", g,
		    xm_fp_normalise(a, same_groups[g][0],
		    strlen(same_groups[g][0]), NULL));
		for (i = 1; same_groups[g][i] != NULL; i++) {
			struct xm_fp o = fp_of(a, same_groups[g][i]);

			cr_expect(o.has_text && o.text == first.text,
			    "group %zu: \"%s\" -> \"%s\" vs \"%s\"", g,
			    same_groups[g][i], xm_fp_normalise(a,
			    same_groups[g][i], strlen(same_groups[g][i]), NULL),
			    xm_fp_normalise(a, same_groups[g][0],
			    strlen(same_groups[g][0]), NULL));
		}
	}
	xm_arena_free(a);
}

static const char *const short_texts[] = {
	"ok", "OK!", "+1", "thanks", "thanks!!", "Thank you :)", "lol",
	"see you soon", "yes 100%", "k", "\xf0\x9f\x91\x8d\xf0\x9f\x91\x8d",
	"ok ok ok", "12345 678 910 1112", "x7k9p2 q3z8w1 a1b2c3 zz91kq",
};

Test(fingerprint, short_texts_carry_none)
{
	struct xm_arena *a = xm_arena_new();
	size_t i;

	for (i = 0; i < sizeof(short_texts) / sizeof(short_texts[0]); i++) {
		struct xm_fp fp = fp_of(a, short_texts[i]);

		cr_expect(!fp.has_text, "\"%s\" has a fingerprint (%u words: %s)",
		    short_texts[i], fp.words, xm_fp_normalise(a, short_texts[i],
		    strlen(short_texts[i]), NULL));
	}
	xm_arena_free(a);
}

Test(fingerprint, different_texts_differ)
{
	struct xm_arena *a = xm_arena_new();
	struct xm_fp x = fp_of(a, "are we still meeting at the cafe tonight");
	struct xm_fp y = fp_of(a, "are we still meeting at the office tonight");

	cr_assert(x.has_text && y.has_text);
	cr_expect_neq(x.text, y.text);
	xm_arena_free(a);
}

struct ncase {
	const char *in, *out;
	unsigned words;
};

static const struct ncase ncases[] = {
	{ "Hello,   World!", "hello world", 2 },
	{ "call 555-1234 now", "call # # now", 2 },
	{ "mp3 and win10 and x7k9p2", "mp# and * and *", 3 },
	{ "see http://x.example/a?b=1.", "see <url>", 1 },
	{ "visit www.example.org/path, ok", "visit <url> ok", 2 },
	{ "\xc3\x89T\xc3\x89 \xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9 "
	    "\xc3\xa9t\xc3\xa9", 2 },
	{ "xkcdqwrtzp bcdfgh", "* *", 0 },
	{ "\xf0\x9f\x98\x80 hi \xe2\x80\x94 there", "hi there", 2 },
	/* texts of 16 bytes and more take the several-words-at-a-time path:
	 * words across its 16-byte steps, h/w words and links, the vowel
	 * test, runs of 16, 17 and 26 letters, words ending at a digit or a
	 * non-ASCII byte */
	{ "Hello World, how are you doing today? whatever www.example.org/x "
	    "rhythms strengths", "hello world how are you doing today "
	    "whatever <url> * *", 8 },
	{ "abcdefghijklmnop qrstuvwxyzabcdefg hi abcdefghijklmnopqrstuvwxyz",
	    "abcdefghijklmnop qrstuvwxyzabcdefg hi *", 3 },
	{ "the mp3 player costs 20 euro \xe2\x82\xac today",
	    "the mp# player costs # euro today", 6 },
	{ "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc"
	    "\xd0\xb8\xd1\x80 hello there", "\xd0\xbf\xd1\x80\xd0\xb8"
	    "\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc\xd0\xb8\xd1\x80 hello there",
	    4 },
};

Test(fingerprint, normalise)
{
	struct xm_arena *a = xm_arena_new();
	size_t i;

	for (i = 0; i < sizeof(ncases) / sizeof(ncases[0]); i++) {
		unsigned w;
		char *n = xm_fp_normalise(a, ncases[i].in, strlen(ncases[i].in),
		    &w);

		cr_expect_str_eq(n, ncases[i].out, "in: %s", ncases[i].in);
		cr_expect_eq(w, ncases[i].words, "%s: %u words", ncases[i].in, w);
	}
	xm_arena_free(a);
}

Test(fingerprint, url_keys_and_sets)
{
	struct xm_arena *a = xm_arena_new();
	const char *u1 = "HTTP://Bad.Example:8081/photo.php?id=bob#x";
	const char *t1[1] = { "lol is this you? http://203.0.113.66:8081/p.php?id=a"
	    " and https://b.example/" };
	const char *t2[1] = { "https://b.example/ wow http://203.0.113.66:8081/"
	    "p.php?id=zz" };
	const char *t3[1] = { "no links in here at all, none whatsoever" };
	struct xm_fp f1, f2, f3;

	cr_expect_str_eq(xm_fp_url_key(a, u1, strlen(u1)),
	    "http://bad.example:8081/photo.php");
	cr_expect_str_eq(xm_fp_url_key(a, "www.x.org", 9), "http://www.x.org/");
	cr_expect_str_eq(xm_fp_url_key(a, "http://u:p@h.example/a", 22),
	    "http://h.example/a");
	cr_expect_null(xm_fp_url_key(a, "mailto:x@y", 10));
	cr_expect_null(xm_fp_url_key(a, "http://", 7));
	xm_fp_compute(a, t1, 1, NULL, 0, 4, 16, &f1);
	xm_fp_compute(a, t2, 1, NULL, 0, 4, 16, &f2);
	xm_fp_compute(a, t3, 1, NULL, 0, 4, 16, &f3);
	cr_expect(f1.has_urls && f2.has_urls);
	cr_expect_eq(f1.urls, f2.urls, "same link set in another order");
	cr_expect_eq(f1.nurls, 2);
	cr_expect(!f3.has_urls);
	xm_arena_free(a);
}

Test(fingerprint, arbitrary_bytes)
{
	/* peer text is anything: random bytes (invalid UTF-8, NULs cut the
	 * C strings, lone continuation bytes, huge words, link-like starts)
	 * must fold without crashing and the same way twice */
	static const char *const seeds[] = { "http://", "https://", "www.",
	    "\xf0\x9f", "\xe2\x80", "a1", "WWW.x", "hTTp://@/" };
	uint64_t st = 12345;
	int i;

	for (i = 0; i < 20000; i++) {
		struct xm_arena *a = xm_arena_new();
		char buf[600];
		size_t n = 0, len, k;
		struct xm_fp f1, f2;
		const char *t[1] = { buf };

		st = st * UINT64_C(6364136223846793005) + 1442695040888963407ULL;
		len = (size_t)(st >> 33) % 500;
		while (n < len) {
			st = st * UINT64_C(6364136223846793005) +
			    1442695040888963407ULL;
			if ((st >> 60) == 0) {
				const char *sd = seeds[(st >> 40) % 8];

				for (k = 0; sd[k] && n < len; k++)
					buf[n++] = sd[k];
			} else
				buf[n++] = (char)((st >> 33) & 0xff ? (st >> 33) &
				    0xff : 'x');
		}
		buf[n] = '\0';
		xm_fp_compute(a, t, 1, t, 1, 1, 1, &f1);
		xm_fp_compute(a, t, 1, t, 1, 1, 1, &f2);
		cr_assert_eq(f1.has_text, f2.has_text);
		cr_assert_eq(f1.text, f2.text);
		cr_assert_eq(f1.urls, f2.urls);
		(void)xm_fp_url_key(a, buf, n);
		xm_arena_free(a);
	}
}

/* ---- the filter ---- */

/* write_conf - YAML with only ratelimit enabled plus EXTRA settings */
static struct xm_chain *
chain_with(const char *extra, const char *scopes)
{
	char path[PATH_MAX + 64], err[1024] = "";
	struct xm_config *c;
	struct xm_chain *ch;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/xmilter.yml", tmpdir);
	cr_assert_not_null(fp = fopen(path, "w"));
	fprintf(fp, "actions: {modify: 5, quarantine: 10, reject: 15}\n"
	    "filters:\n  guard: {enabled: false}\n  rules: {enabled: false}\n"
	    "  links: {enabled: false}\n  dnsbl: {enabled: false}\n"
	    "  ratelimit:\n    enabled: true\n%s%s", extra ? extra : "",
	    scopes ? scopes : "");
	fclose(fp);
	c = xm_config_load(path, err, sizeof(err));
	cr_assert_not_null(c, "config: %s", err);
	ch = xm_chain_new(c, err, sizeof(err));
	cr_assert_not_null(ch, "chain: %s", err);
	return ch;
}

struct ev {
	double t;              /* seconds after T0 */
	const char *env;       /* envelope lines (no time) */
	const char *from, *to;
	const char *body;      /* NULL: a presence subscribe / STANZA */
	const char *stanza;    /* a whole stanza instead */
};

#define T0 1795000000.0

/* waiting: run() drives the chain as the daemon does when the state is
 * in Redis (xm_chain_start/xm_chain_resume), counting the waits */
static bool waiting;
static int waits;

/* run - one event through the chain; symbols as "A B C" in arena */
static const char *
run(struct xm_chain *ch, struct xm_arena *a, const struct ev *e,
    struct xm_verdict *v)
{
	struct xm_task t;
	struct xm_event *ev;
	struct xm_buf b = { 0 };
	char *text, *r;
	size_t i;

	if (e->stanza)
		text = xm_arena_printf(a, "%s\n\n%s", e->env, e->stanza);
	else if (e->body)
		text = xm_arena_printf(a, "%s\n\n<message from='%s' to='%s' "
		    "type='chat'><body>%s</body></message>", e->env, e->from,
		    e->to, e->body);
	else
		text = xm_arena_printf(a, "%s\n\n<presence from='%s' to='%s' "
		    "type='subscribe'/>", e->env, e->from, e->to);
	ev = event(a, text);
	xm_task_init(&t, ch, a, ev, T0 + e->t);
	if (waiting) {
		/* as the daemon does with Redis: the fast stage stops where
		 * the filter waits; the batch is run (here in the memory
		 * table, as on a fallback) and the chain resumed */
		int rc = xm_chain_start(ch, &t);

		while (rc == XM_RUN_WAIT) {
			cr_assert_not_null(t.wait_ops);
			cr_assert_gt(t.wait_n, 0);
			waits++;
			xm_state_local(t.wait_ops, t.wait_n, t.now);
			rc = xm_chain_resume(ch, &t);
		}
		if (rc != XM_RUN_FINAL)
			xm_chain_run_stage(ch, &t, true);
		xm_chain_finish(ch, &t, v);
	} else
		xm_chain_check(ch, &t, v);
	for (i = 0; i < v->nsymbols; i++)
		xm_buf_printf(&b, "%s%s", i ? " " : "", v->symbols[i].name);
	r = xm_arena_strdup(a, b.data ? b.data : "");
	xm_buf_free(&b);
	return r;
}

/* has - is symbol S in the space-separated LIST */
static bool
has(const char *list, const char *s)
{
	size_t n = strlen(s);
	const char *p = list;

	while ((p = strstr(p, s)) != NULL) {
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
		p += n;
	}
	return false;
}

#define C2S(acct, ip) "origin=c2s\nauth=" acct "\nip=" ip
#define ALICE C2S("alice@example.org", "198.51.100.7")

/* count_with - of N events made by MK(i), how many carry symbol S; the
 * index of the first in *FIRST (-1: none) */
typedef void (*mkfn)(struct xm_arena *a, int i, struct ev *e);

static int
count_with(struct xm_chain *ch, mkfn mk, int n, const char *sym, int *first)
{
	int i, c = 0;

	*first = -1;
	for (i = 0; i < n; i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_verdict v;
		struct ev e;
		const char *s;

		memset(&e, 0, sizeof(e));
		mk(a, i, &e);
		s = run(ch, a, &e, &v);
		if (has(s, sym)) {
			if (*first < 0)
				*first = i;
			c++;
		}
		xm_arena_free(a);
	}
	return c;
}

/* budget cases: one sender, events STEP s apart (0 in the budget test:
 * the burst is what passes) */
static double step = 0.1;

static void mk_account(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = ALICE "\nroster=both";
	e->from = "alice@example.org/pc";
	e->to = "bob@example.org";
	e->body = "hi";
}
static void mk_ip(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = xm_arena_printf(a, "origin=c2s\nauth=u%d@example.org\n"
	    "ip=198.51.100.7\nroster=both", i);
	e->from = xm_arena_printf(a, "u%d@example.org/pc", i);
	e->to = "bob@example.org";
	e->body = "hi";
}
static void mk_prefix(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = xm_arena_printf(a, "origin=c2s\nauth=u%d@example.org\n"
	    "ip=198.51.100.%d\nroster=both", i, i % 250);
	e->from = xm_arena_printf(a, "u%d@example.org/pc", i);
	e->to = "bob@example.org";
	e->body = "hi";
}
static void mk_domain(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = xm_arena_printf(a, "origin=s2s\npeer=rotate.example\n"
	    "ip=203.0.%d.%d\nroster=both", i / 250, i % 250);
	e->from = xm_arena_printf(a, "u%d@rotate.example/x", i);
	e->to = "bob@example.org";
	e->body = "hi";
}
static void mk_network(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = "origin=component\npeer=icq.example.org\nroster=both";
	e->from = xm_arena_printf(a, "%d@icq.example.org", 100000 + i);
	e->to = "bob@example.org";
	e->body = "hi";
}
static void mk_stranger(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = ALICE "\nroster=none";
	e->from = "alice@example.org/pc";
	e->to = "bob@example.org";   /* one recipient: no fan-out */
	e->body = "hi";
}
static void mk_young(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = ALICE "\nroster=both\naccount-age=3600";
	e->from = "alice@example.org/pc";
	e->to = "bob@example.org";
	e->body = "hi";
}
static void mk_sub(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = ALICE;
	e->from = "alice@example.org/pc";
	e->to = xm_arena_printf(a, "u%d@example.org", i);
}
static void mk_invite(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = ALICE "\nroster=both";
	e->stanza = xm_arena_printf(a, "<message from='alice@example.org/pc' "
	    "to='bob@example.org'><x xmlns='jabber:x:conference' "
	    "jid='room%d@conf.example.org'/></message>", i);
}
static void mk_file(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * step;
	e->env = ALICE;
	e->stanza = xm_arena_printf(a, "<iq from='alice@example.org/pc' "
	    "to='bob@example.org/pc' type='set' id='f%d'><si "
	    "xmlns='http://jabber.org/protocol/si' id='s%d' "
	    "profile='http://jabber.org/protocol/si/profile/file-transfer'>"
	    "<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' "
	    "name='a%d.txt' size='10'/></si></iq>", i, i, i);
}

struct bcase {
	const char *name;
	mkfn mk;
	const char *sym;
	int first;     /* index of the first event over budget (= burst) */
};

static const struct bcase budget_cases[] = {
	{ "account", mk_account, "RATE_ACCOUNT", 30 },
	{ "ip", mk_ip, "RATE_IP", 150 },
	{ "prefix", mk_prefix, "RATE_PREFIX", 200 },
	{ "domain", mk_domain, "RATE_DOMAIN", 300 },
	{ "network", mk_network, "RATE_NETWORK", 600 },
	{ "stranger", mk_stranger, "RATE_STRANGER", 10 },
	{ "young", mk_young, "RATE_YOUNG", 10 },
	{ "subscription", mk_sub, "RATE_SUBSCRIPTION", 10 },
	{ "invite", mk_invite, "RATE_INVITE", 5 },
	{ "file", mk_file, "RATE_FILE", 5 },
};

Test(ratelimit, budgets)
{
	size_t i;

	for (i = 0; i < sizeof(budget_cases) / sizeof(budget_cases[0]); i++) {
		const struct bcase *c = &budget_cases[i];
		struct xm_chain *ch;
		int first, n;

		xm_state_reset();
		step = 0;
		/* no blocks here: each budget on its own */
		ch = chain_with("    block_after: -1\n    fanout_max: -1\n"
		    "    fanout_stranger_max: -1\n    outbreak: false\n", NULL);
		n = count_with(ch, c->mk, c->first + 5, c->sym, &first);
		cr_expect_eq(first, c->first, "%s: first over budget at %d",
		    c->name, first);
		cr_expect_geq(n, 4, "%s: %d over", c->name, n);
		xm_chain_unref(ch);
	}
}

/* events - run N events made by MK; symbols and action of each */
static char **
events(struct xm_chain *ch, mkfn mk, int n, enum xm_action *act)
{
	char **out = xm_calloc((size_t)n, sizeof(*out));
	int i;

	for (i = 0; i < n; i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_verdict v;
		struct ev e;

		memset(&e, 0, sizeof(e));
		mk(a, i, &e);
		out[i] = xm_strdup(run(ch, a, &e, &v));
		if (act)
			act[i] = v.action;
		xm_arena_free(a);
	}
	return out;
}

static void
free_events(char **v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void mk_busy(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * 1.2;
	e->env = C2S("busy@example.org", "203.0.113.10") "\nroster=both\n"
	    "account-age=90000000";
	e->from = "busy@example.org/pc";
	e->to = "friend@example.org";
	e->body = xm_arena_printf(a, "message %d of our long chat about the "
	    "release plan", i);
}

Test(ratelimit, busy_chat_with_one_contact_never_limited)
{
	struct xm_chain *ch = chain_with(NULL, NULL);
	char **s = events(ch, mk_busy, 1000, NULL);
	int i;

	for (i = 0; i < 1000; i++)
		cr_expect_str_empty(s[i], "event %d: %s", i, s[i]);
	free_events(s, 1000);
	xm_chain_unref(ch);
}

static void mk_spammer(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * 2;
	e->env = C2S("fresh42@example.org", "198.51.100.66") "\nroster=none\n"
	    "account-age=7200";
	e->from = "fresh42@example.org/bot";
	e->to = xm_arena_printf(a, "user%03d@example.org", i);
	e->body = "hi there, add me back";
}

Test(ratelimit, young_account_to_strangers_stopped_within_budget)
{
	struct xm_chain *ch = chain_with(NULL, NULL);
	enum xm_action act[100];
	char **s = events(ch, mk_spammer, 100, act);
	int i;

	/* the budgets allow 10 strangers; from the 11th on nothing passes */
	for (i = 0; i < 10; i++)
		cr_expect_eq(act[i], XM_ACCEPT, "event %d: %s", i, s[i]);
	for (i = 10; i < 100; i++)
		cr_expect_geq(act[i], XM_REJECT, "event %d: %s", i, s[i]);
	cr_expect(has(s[10], "RATE_FANOUT_STRANGER"), "%s", s[10]);
	cr_expect(has(s[99], "RATE_BLOCKED"), "%s", s[99]);
	free_events(s, 100);
	xm_chain_unref(ch);
}

static void mk_fanout(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * 5;
	e->env = ALICE "\nroster=both";
	e->from = "alice@example.org/pc";
	e->to = xm_arena_printf(a, "c%d@example.org", i);
	e->body = xm_arena_printf(a, "note %d", i);
}

Test(ratelimit, fanout_in_window)
{
	struct xm_chain *ch = chain_with("    block_after: -1\n"
	    "    fanout_max: 20\n    fanout_window: 10m\n", NULL);
	char **s = events(ch, mk_fanout, 150, NULL);
	int i;

	/* 5 s apart, 120 per 10-minute window: the first 20 of each window
	 * pass, the rest are over */
	for (i = 0; i < 150; i++) {
		double in_win = fmod(T0 + i * 5, 600) / 5;  /* index in window */
		int first_in_win = i - (int)in_win;
		int nth = i - (first_in_win > 0 ? first_in_win : 0);

		cr_expect_eq(has(s[i], "RATE_FANOUT"), nth >= 20, "event %d (%d "
		    "in its window): %s", i, nth, s[i]);
	}
	free_events(s, 150);
	xm_chain_unref(ch);
}

Test(ratelimit, fanout_window_resets)
{
	struct xm_chain *ch = chain_with("    block_after: -1\n"
	    "    fanout_max: 3\n    fanout_window: 100s\n", NULL);
	struct ev e = { 0, ALICE "\nroster=both", "alice@example.org/pc", NULL,
	    "hey", NULL };
	struct xm_verdict v;
	struct xm_arena *a = xm_arena_new();
	double base = 100 - fmod(T0, 100);   /* the start of a window */
	int i;

	for (i = 0; i < 4; i++) {
		e.t = base + i;
		e.to = xm_arena_printf(a, "r%d@example.org", i);
		cr_expect_eq(has(run(ch, a, &e, &v), "RATE_FANOUT"), i == 3,
		    "event %d", i);
	}
	e.t = base + 100;           /* next window */
	e.to = "r9@example.org";
	cr_expect(!has(run(ch, a, &e, &v), "RATE_FANOUT"));
	xm_arena_free(a);
	xm_chain_unref(ch);
}

static void mk_strangers(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * 5;
	e->env = i % 2 ? ALICE "\nroster=none" : ALICE "\nroster=both";
	e->from = "alice@example.org/pc";
	e->to = xm_arena_printf(a, "r%d@example.org", i);
	e->body = "hey";
}

Test(ratelimit, fanout_strangers_counted_apart)
{
	static const char *const conf[] = {
		"    block_after: -1\n    stranger_rate: none\n"
		    "    fanout_stranger_max: 4\n",
		/* with the all-recipients set off, strangers still counted */
		"    block_after: -1\n    stranger_rate: none\n"
		    "    fanout_stranger_max: 4\n    fanout_max: -1\n",
	};
	size_t k;

	for (k = 0; k < 2; k++) {
		struct xm_chain *ch;
		int first, n;

		xm_state_reset();
		ch = chain_with(conf[k], NULL);
		/* odd events go to strangers: the 5th stranger is event 9 */
		n = count_with(ch, mk_strangers, 20, "RATE_FANOUT_STRANGER",
		    &first);
		cr_expect_eq(first, 9, "conf %zu: first %d", k, first);
		cr_expect_eq(n, 6, "conf %zu: %d over", k, n);
		xm_chain_unref(ch);
	}
}

Test(ratelimit, block_then_expiry)
{
	struct xm_chain *ch = chain_with("    block_after: 3\n"
	    "    block_time: 100s\n    account_rate: 6\n    account_burst: 2\n",
	    NULL);
	struct ev e = { 0, ALICE "\nroster=both", "alice@example.org/pc",
	    "bob@example.org", "hi", NULL };
	struct xm_verdict v;
	struct xm_arena *a = xm_arena_new();
	const char *s;
	int i;

	/* 2 pass, 3 over budget, the third of them blocks */
	for (i = 0; i < 5; i++) {
		e.t = i * 0.5;
		s = run(ch, a, &e, &v);
		cr_expect_eq(has(s, "RATE_ACCOUNT"), i >= 2, "event %d: %s", i, s);
		cr_expect_eq(has(s, "RATE_BLOCKED"), i == 4, "event %d: %s", i, s);
	}
	/* the detail, formatted by hand in rl_sym: printf's own text */
	for (i = 0; i < (int)v.nsymbols; i++)
		if (strcmp(v.symbols[i].name, "RATE_BLOCKED") == 0)
			break;
	cr_assert_lt(i, (int)v.nsymbols, "no RATE_BLOCKED symbol");
	cr_expect_str_eq(v.symbols[i].detail, "sender alice@example.org "
	    "blocked for 100s after 3 events over budget");
	/* blocked even once the bucket has refilled */
	e.t = 60;
	s = run(ch, a, &e, &v);
	cr_expect_str_eq(s, "RATE_BLOCKED");
	/* the block is over after block_time */
	e.t = 103;
	s = run(ch, a, &e, &v);
	cr_expect_str_empty(s);
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(ratelimit, address_blocks_only_when_asked)
{
	static const char *const conf[] = {
		"    ip_rate: 6\n    ip_burst: 2\n    block_after: 2\n",
		"    ip_rate: 6\n    ip_burst: 2\n    block_after: 2\n"
		    "    block_addresses: true\n",
	};
	size_t k;

	for (k = 0; k < 2; k++) {
		struct xm_chain *ch;
		int first, n;

		xm_state_reset();
		step = 0.1;
		ch = chain_with(conf[k], NULL);
		/* a new account per event, all from one address: 2 pass, the
		 * 3rd and 4th are over the ip budget (strikes), then blocked */
		n = count_with(ch, mk_ip, 8, "RATE_BLOCKED", &first);
		if (k == 0)
			cr_expect_eq(n, 0, "no address blocks by default: %d", n);
		else {
			cr_expect_eq(first, 3, "blocked from the 2nd strike: %d",
			    first);
			cr_expect_eq(n, 5, "%d", n);
		}
		xm_chain_unref(ch);
	}
}

Test(ratelimit, block_action_reject_is_final)
{
	struct xm_chain *ch = chain_with("    block_after: 1\n"
	    "    block_action: discard\n    account_rate: 1\n"
	    "    account_burst: 1\n", NULL);
	struct ev e = { 0, ALICE, "alice@example.org/pc", "bob@example.org",
	    "hi", NULL };
	struct xm_verdict v;
	struct xm_arena *a = xm_arena_new();

	run(ch, a, &e, &v);
	cr_expect_eq(v.action, XM_ACCEPT);
	e.t = 0.1;
	run(ch, a, &e, &v);
	cr_expect_eq(v.action, XM_DISCARD);
	e.t = 30;
	run(ch, a, &e, &v);
	cr_expect_eq(v.action, XM_DISCARD);
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(ratelimit, trusted_never_counted)
{
	struct xm_chain *ch = chain_with("    trusted: [fresh42@example.org]\n",
	    NULL);
	char **s = events(ch, mk_spammer, 60, NULL);
	int i;

	for (i = 0; i < 60; i++)
		cr_expect_str_empty(s[i], "event %d: %s", i, s[i]);
	free_events(s, 60);
	xm_chain_unref(ch);
}

/* a trusted domain, written as itself or as "*.domain" (that domain and
 * its subdomains, as everywhere else in the config); another domain's
 * entry trusts nobody here */
Test(ratelimit, trusted_domains)
{
	static const struct { const char *list; bool trusted; } t[] = {
		{ "[example.org]", true },
		{ "[\"*.example.org\"]", true },
		{ "[\"*.org\"]", true },
		{ "[\"*.ample.org\"]", false },
		{ "[other.example.org]", false },
	};
	size_t k;

	for (k = 0; k < sizeof(t) / sizeof(t[0]); k++) {
		char line[128];
		struct xm_chain *ch;
		char **s;
		int i, scored = 0;

		snprintf(line, sizeof(line), "    trusted: %s\n", t[k].list);
		ch = chain_with(line, NULL);
		s = events(ch, mk_spammer, 60, NULL);
		for (i = 0; i < 60; i++)
			scored += s[i][0] != '\0';
		if (t[k].trusted)
			cr_expect_eq(scored, 0, "%s: %d events scored", t[k].list,
			    scored);
		else
			cr_expect_gt(scored, 0, "%s: nothing scored", t[k].list);
		free_events(s, 60);
		xm_chain_unref(ch);
	}
}

Test(ratelimit, scope_has_its_own_limits)
{
	struct xm_chain *ch = chain_with(NULL,
	    "scopes:\n  - name: transports\n    match: {origin: [component]}\n"
	    "    filters:\n      ratelimit: {network_rate: 60, "
	    "network_burst: 3}\n");
	int first;

	cr_expect_eq(count_with(ch, mk_network, 10, "RATE_NETWORK", &first), 7);
	cr_expect_eq(first, 3);
	xm_chain_unref(ch);
}

/* a campaign: 36 rotating senders, 3 strangers each, varied text */
static void mk_campaign(struct xm_arena *a, int i, struct ev *e)
{
	static const char *const tok[] = { "x7k9p2", "q3z8w1", "m4n5b6v" };
	int s = i / 3, r = i % 3;

	e->t = s * 20 + r;
	if (s % 2 == 0)
		e->env = xm_arena_printf(a, "origin=c2s\nauth=promo%d@example.org"
		    "\nip=192.0.2.%d\nroster=none", s, 10 + s);
	else
		e->env = xm_arena_printf(a, "origin=s2s\npeer=spam%d.example\n"
		    "ip=203.0.113.%d\nroster=none", s % 9, 100 + s);
	e->from = s % 2 == 0 ? xm_arena_printf(a, "promo%d@example.org/x", s) :
	    xm_arena_printf(a, "deal%d@spam%d.example/x", s, s % 9);
	e->to = xm_arena_printf(a, "victim%03d@example.org", i);
	if (i % 2)
		e->body = xm_arena_printf(a, "congratulations you won a FREE "
		    "iphone %d - claim it at the link, code %s!!", 10 + s % 7,
		    tok[i % 3]);
	else
		e->body = xm_arena_printf(a, "Congratulations! You WON a free "
		    "iPhone %d, claim it at the link: code %s", 10 + s % 7,
		    tok[i % 3]);
}

Test(ratelimit, campaign_of_rotating_senders_caught_early)
{
	struct xm_chain *ch = chain_with(NULL, NULL);
	int first, n;

	n = count_with(ch, mk_campaign, 108, "OUTBREAK_TEXT", &first);
	/* 3 senders and 8 recipients: from the 8th copy on, every copy */
	cr_expect_eq(first, 7);
	cr_expect_eq(n, 108 - 7);
	xm_chain_unref(ch);
}

static void mk_team_ok(struct xm_arena *a, int i, struct ev *e)
{
	static const char *const r[] = { "ok", "OK!", "thanks!", "+1",
	    "ok \xf0\x9f\x91\x8d", "Ok." };

	e->t = i * 3;
	e->env = xm_arena_printf(a, "origin=c2s\nauth=m%d@example.org\n"
	    "ip=198.51.100.%d\nroster=none", i, i);
	e->from = xm_arena_printf(a, "m%d@example.org/pc", i);
	/* to many people too: short replies never count, whoever gets them */
	e->to = i % 2 ? "boss@example.org" : xm_arena_printf(a,
	    "p%d@example.org", i);
	e->body = r[i % 6];
}

Test(ratelimit, team_answering_ok_is_no_campaign)
{
	struct xm_chain *ch = chain_with(NULL, NULL);
	char **s = events(ch, mk_team_ok, 100, NULL);
	int i;

	for (i = 0; i < 100; i++)
		cr_expect_str_empty(s[i], "event %d: %s", i, s[i]);
	free_events(s, 100);
	xm_chain_unref(ch);
}

static void mk_worm(struct xm_arena *a, int i, struct ev *e)
{
	e->t = i * 1.5;
	e->env = ALICE "\nroster=both";
	e->from = "alice@example.org/pc";
	e->to = xm_arena_printf(a, "contact%02d@example.org", i);
	e->body = xm_arena_printf(a, "lol is this you? "
	    "http://203.0.113.66:8081/photo.php?id=contact%02d", i);
}

Test(ratelimit, worm_through_roster_scored_by_factor)
{
	struct xm_chain *ch = chain_with("    fanout_max: -1\n", NULL);
	struct xm_arena *a = xm_arena_new();
	struct xm_verdict v;
	struct ev e;
	double sum;
	int i;

	for (i = 0; i < 25; i++) {
		memset(&e, 0, sizeof(e));
		mk_worm(a, i, &e);
		run(ch, a, &e, &v);
	}
	/* one sender, 20 recipients: a campaign; roster factors 0.3, 0.5 */
	cr_assert_eq(v.nsymbols, 2);
	cr_expect_str_eq(v.symbols[0].name, "OUTBREAK_TEXT");
	cr_expect(fabs(v.symbols[0].score - 12 * 0.3) < 1e-9);
	cr_expect_str_eq(v.symbols[1].name, "OUTBREAK_URL");
	cr_expect(fabs(v.symbols[1].score - 6 * 0.5) < 1e-9);
	sum = v.score;
	cr_expect(fabs(sum - 6.6) < 1e-9, "%g", sum);
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(ratelimit, same_sequence_same_verdicts)
{
	struct xm_chain *ch = chain_with(NULL, NULL);
	char **x, **y;
	int i;

	x = events(ch, mk_campaign, 108, NULL);
	xm_chain_unref(ch);
	xm_state_reset();
	ch = chain_with(NULL, NULL);
	y = events(ch, mk_campaign, 108, NULL);
	for (i = 0; i < 108; i++)
		cr_expect_str_eq(x[i], y[i], "event %d", i);
	free_events(x, 108);
	free_events(y, 108);
	xm_chain_unref(ch);
}

/* With the state in Redis the filter waits for each batch instead of
 * running it (the daemon sends it, pipelined, and resumes the chain on
 * the answer): the same sequences must give the same verdicts as the
 * inline path, including the second and third batches (campaign marks,
 * strikes, blocks) and a block ending the chain. Redis here is a port
 * nobody listens on, so xm_state_remote() is true while every batch is
 * run in memory, as on a fallback. */
Test(ratelimit, waiting_for_the_state_gives_the_same_verdicts)
{
	static const char *const flood = "    block_after: 3\n"
	    "    block_time: 100s\n    account_rate: 6\n    account_burst: 2\n";
	struct { mkfn mk; int n; const char *extra; bool twice; } seqs[] = {
		{ mk_campaign, 108, NULL, true },
		{ mk_account, 30, NULL, false },
		{ mk_account, 30, flood, true },
	};
	char url[80];
	size_t k;

	snprintf(url, sizeof(url), "    redis: redis://127.0.0.1:%d\n"
	    "    redis_retry: 1h\n", free_port());
	for (k = 0; k < sizeof(seqs) / sizeof(seqs[0]); k++) {
		struct xm_chain *ch;
		enum xm_action ax[108], ay[108];
		char **x, **y, *conf;
		int i, finals = 0;

		xm_state_reset();
		waiting = false;
		ch = chain_with(seqs[k].extra, NULL);
		x = events(ch, seqs[k].mk, seqs[k].n, ax);
		xm_chain_unref(ch);
		xm_state_reset();
		conf = xm_printf("%s%s", seqs[k].extra ? seqs[k].extra : "",
		    url);
		ch = chain_with(conf, NULL);
		cr_assert(xm_state_remote());
		waiting = true;
		waits = 0;
		y = events(ch, seqs[k].mk, seqs[k].n, ay);
		waiting = false;
		for (i = 0; i < seqs[k].n; i++) {
			cr_expect_str_eq(x[i], y[i], "sequence %zu event %d", k, i);
			cr_expect_eq(ax[i], ay[i], "sequence %zu event %d", k, i);
			finals += has(y[i], "RATE_BLOCKED");
		}
		/* every event waited at least once; where campaigns are
		 * marked or strikes counted, some twice or more */
		cr_expect_geq(waits, seqs[k].n, "sequence %zu: %d waits for %d "
		    "events", k, waits, seqs[k].n);
		if (seqs[k].twice)
			cr_expect_gt(waits, seqs[k].n, "sequence %zu: %d waits "
			    "for %d events", k, waits, seqs[k].n);
		if (seqs[k].extra != NULL)
			cr_expect_gt(finals, 0, "sequence %zu: no block", k);
		free_events(x, seqs[k].n);
		free_events(y, seqs[k].n);
		free(conf);
		xm_chain_unref(ch);
	}
}

Test(ratelimit, counters_survive_reload)
{
	struct xm_chain *ch = chain_with("    account_rate: 1\n"
	    "    account_burst: 3\n    block_after: -1\n", NULL);
	struct ev e = { 0, ALICE, "alice@example.org/pc", "bob@example.org",
	    "hi", NULL };
	struct xm_verdict v;
	struct xm_arena *a = xm_arena_new();

	run(ch, a, &e, &v);
	run(ch, a, &e, &v);
	run(ch, a, &e, &v);
	/* a new chain from a new config, as SIGHUP builds it */
	xm_chain_unref(ch);
	ch = chain_with("    account_rate: 1\n    account_burst: 3\n"
	    "    block_after: -1\n    score_account: 7\n", NULL);
	cr_expect_str_eq(run(ch, a, &e, &v), "RATE_ACCOUNT");
	cr_expect(fabs(v.score - 7) < 1e-9);
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(ratelimit, other_kinds_not_counted)
{
	struct xm_chain *ch = chain_with("    account_rate: 1\n"
	    "    account_burst: 1\n", NULL);
	struct ev e = { 0, ALICE, NULL, NULL, NULL,
	    "<presence from='alice@example.org/pc'><status>away</status>"
	    "</presence>" };
	struct xm_verdict v;
	struct xm_arena *a = xm_arena_new();
	int i;

	for (i = 0; i < 20; i++)
		cr_expect_str_empty(run(ch, a, &e, &v));
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(ratelimit, bad_redis_url_fails_init)
{
	char path[PATH_MAX + 64], err[1024] = "";
	struct xm_config *c;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/xmilter.yml", tmpdir);
	cr_assert_not_null(fp = fopen(path, "w"));
	fputs("filters:\n  ratelimit:\n    redis: \"localhost\"\n", fp);
	fclose(fp);
	cr_assert_not_null(c = xm_config_load(path, err, sizeof(err)), "%s",
	    err);
	cr_expect_null(xm_chain_new(c, err, sizeof(err)));
	cr_expect(strstr(err, "redis") != NULL, "%s", err);
}
