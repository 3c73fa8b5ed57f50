/*
 * test_chain.c - unit tests of the filter chain, scoring and verdicts
 * (plugin/chain.c)
 *
 * Two layers. Scoring tables drive xm_chain_finish directly: a task is
 * initialised on a chain whose filters are off, symbols and final results
 * are added by hand (as a filter would, shadowed or not), and the verdict
 * is compared. Integration tests run the real guard and rules filters
 * through xm_chain_check with rule files written to a temporary directory.
 * Also: the replacement stanza of modify, the malformed-event verdict,
 * the JSON output (parsed back with jansson) and the log line.
 */
#include <sys/stat.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "chain.h"
#include "config.h"
#include "event.h"
#include "xm.h"

/* ---- helpers ---- */

#include "testlib.h"

TestSuite(score, .init = mk_tmpdir, .fini = rm_tmpdir);
TestSuite(chain, .init = mk_tmpdir, .fini = rm_tmpdir);
TestSuite(modify, .init = mk_tmpdir, .fini = rm_tmpdir);
TestSuite(output, .init = mk_tmpdir, .fini = rm_tmpdir);

/* write_file - TEXT into NAME under the temporary directory */
static void
write_file(const char *name, const char *text)
{
	char path[PATH_MAX + 64];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%.60s", tmpdir, name);
	cr_assert_not_null(fp = fopen(path, "w"), "%s", path);
	fputs(text, fp);
	cr_assert_eq(fclose(fp), 0);
}

/* chain_of - a chain built from YAML text; must succeed */
static struct xm_chain *
chain_of(const char *yaml)
{
	char path[PATH_MAX + 64], err[1024] = "";
	struct xm_config *c;
	struct xm_chain *ch;

	write_file("xmilter.yml", yaml);
	snprintf(path, sizeof(path), "%s/xmilter.yml", tmpdir);
	c = xm_config_load(path, err, sizeof(err));
	cr_assert_not_null(c, "config: %s\n%s", err, yaml);
	ch = xm_chain_new(c, err, sizeof(err));
	cr_assert_not_null(ch, "chain: %s\n%s", err, yaml);
	return ch;
}

#define NO_FILTERS "filters:\n  guard: {enabled: false}\n" \
	"  rules: {enabled: false}\n" \
	"  transfer: {enabled: false}\n" \
	"  oobfetch: {enabled: false}\n" NO_LINKS
/* link reputation has suites of its own (test_links, test_url) */
#define NO_LINKS "  links: {enabled: false}\n  dnsbl: {enabled: false}\n"
#define MSG "origin=c2s\nauth=alice@example.org\n\n<message " \
	"from='alice@example.org/pc' to='bob@example.org' type='chat' " \
	"id='m1'><body>hi</body></message>"

/* ---- scoring tables ---- */

struct sym {
	const char *name;
	double score;
	bool shadow;        /* added while a shadowed filter runs */
};

struct final {
	bool set;
	enum xm_action action;
	const char *condition, *text;
	bool shadow;        /* set by a shadowed filter: ignored */
};

struct score_case {
	const char *what;
	struct sym syms[4];
	struct final fin;
	enum xm_action action;
	double score;
	const char *reason, *condition, *text;
};

#define DEF_TEXT "Your message was blocked by this server's content filter."

/* run_case - the verdict of one row on chain CH for event text EV */
static void
run_case(const struct xm_chain *ch, const char *evtext,
    const struct score_case *k, const char *scope)
{
	struct xm_arena *a = xm_arena_new();
	struct xm_task t;
	struct xm_verdict v;
	size_t i, nshadow = 0, n = 0;

	xm_task_init(&t, ch, a, event(a, evtext), 1e9);
	for (i = 0; i < XM_ARRAY_LEN(k->syms) && k->syms[i].name; i++) {
		t.cur_filter = "probe";
		t.cur_shadow = k->syms[i].shadow;
		xm_task_symbol(&t, k->syms[i].name, k->syms[i].score, 0, "row %zu", i);
		nshadow += k->syms[i].shadow;
		n++;
	}
	if (k->fin.set) {
		t.cur_filter = "final";
		t.cur_shadow = k->fin.shadow;
		xm_task_final(&t, k->fin.action, k->fin.condition, k->fin.text);
	}
	t.cur_filter = NULL;
	t.cur_shadow = false;
	xm_chain_finish(ch, &t, &v);

	cr_expect_eq(v.action, k->action, "%s: action %s, want %s", k->what,
	    xm_action_name(v.action), xm_action_name(k->action));
	cr_expect(fabs(v.score - k->score) < 1e-9, "%s: score %g, want %g",
	    k->what, v.score, k->score);
	cr_expect_eq(v.nsymbols, n, "%s: symbols", k->what);
	for (i = 0; i < v.nsymbols; i++)
		cr_expect_eq((v.symbols[i].flags & XM_SYM_SHADOW) != 0,
		    k->syms[i].shadow, "%s: shadow flag of %s", k->what,
		    v.symbols[i].name);
	if (k->reason)
		cr_expect(v.reason && strcmp(v.reason, k->reason) == 0,
		    "%s: reason %s, want %s", k->what, v.reason, k->reason);
	else
		cr_expect_null(v.reason, "%s: reason %s", k->what, v.reason);
	if (k->condition)
		cr_expect(v.condition && strcmp(v.condition, k->condition) == 0,
		    "%s: condition %s", k->what, v.condition);
	else
		cr_expect_null(v.condition, "%s: condition %s", k->what, v.condition);
	if (k->text)
		cr_expect(v.text && strcmp(v.text, k->text) == 0, "%s: text %s",
		    k->what, v.text);
	else
		cr_expect_null(v.text, "%s: text %s", k->what, v.text);
	cr_expect_str_eq(v.scope, scope, "%s", k->what);
	if (v.action == XM_MODIFY)
		cr_expect_not_null(v.stanza, "%s: modify without a stanza", k->what);
	else
		cr_expect_null(v.stanza, "%s: stanza without modify", k->what);
	xm_arena_free(a);
}

#define SYMS(...) { __VA_ARGS__ }
#define NOFINAL { false, XM_ACCEPT, NULL, NULL, false }

static const struct score_case default_thresholds[] = {
	{ "no symbols", SYMS({ NULL, 0, false }), NOFINAL, XM_ACCEPT, 0, NULL, NULL, NULL },
	{ "just below modify", SYMS({ "A", 4.99, false }), NOFINAL, XM_ACCEPT, 4.99,
	    NULL, NULL, NULL },
	{ "modify reached", SYMS({ "A", 5, false }), NOFINAL, XM_MODIFY, 5, "A", NULL,
	    NULL },
	{ "sum reaches modify, tie keeps the first", SYMS({ "A", 3, false }, { "B", 3, false }),
	    NOFINAL, XM_MODIFY, 6, "A", NULL, NULL },
	{ "highest symbol is the reason", SYMS({ "A", 1, false }, { "B", 5, false }, { "C", 4, false }),
	    NOFINAL, XM_QUARANTINE, 10, "B", NULL, NULL },
	{ "quarantine", SYMS({ "A", 12, false }), NOFINAL, XM_QUARANTINE, 12, "A", NULL,
	    NULL },
	{ "reject", SYMS({ "A", 15, false }), NOFINAL, XM_REJECT, 15, "A",
	    "policy-violation", DEF_TEXT },
	{ "discard is off by default", SYMS({ "A", 1000, false }), NOFINAL, XM_REJECT,
	    1000, "A", "policy-violation", DEF_TEXT },
	{ "negative scores count", SYMS({ "A", 16, false }, { "N", -3, false }), NOFINAL,
	    XM_QUARANTINE, 13, "A", NULL, NULL },
	{ "shadow symbols are not counted", SYMS({ "A", 6, false }, { "S", 100, true }),
	    NOFINAL, XM_MODIFY, 6, "A", NULL, NULL },
	{ "shadow only", SYMS({ "S", 100, true }, { "T", 50, true }), NOFINAL,
	    XM_ACCEPT, 0, NULL, NULL, NULL },
	{ "shadow is never the reason", SYMS({ "S", 100, true }, { "A", 5, false }),
	    NOFINAL, XM_MODIFY, 5, "A", NULL, NULL },
	{ "final reject wins over a low score", SYMS({ "V", 0.5, false }),
	    { true, XM_REJECT, "not-acceptable", "virus found", false },
	    XM_REJECT, 0.5, "V", "not-acceptable", "virus found" },
	{ "final reject takes default condition and text", SYMS({ "V", 1, false }),
	    { true, XM_REJECT, NULL, NULL, false }, XM_REJECT, 1, "V",
	    "policy-violation", DEF_TEXT },
	{ "final accept wins over a high score", SYMS({ "A", 100, false }),
	    { true, XM_ACCEPT, NULL, NULL, false }, XM_ACCEPT, 100, NULL, NULL,
	    NULL },
	{ "final quarantine wins over reject score", SYMS({ "A", 100, false }),
	    { true, XM_QUARANTINE, NULL, NULL, false }, XM_QUARANTINE, 100, "A",
	    NULL, NULL },
	{ "final discard", SYMS({ NULL, 0, false }),
	    { true, XM_DISCARD, NULL, NULL, false }, XM_DISCARD, 0, NULL,
	    "policy-violation", DEF_TEXT },
	{ "final from a shadowed filter is ignored", SYMS({ "A", 1, false }),
	    { true, XM_REJECT, "forbidden", "no", true }, XM_ACCEPT, 1, NULL,
	    NULL, NULL },
	{ "final modify builds a stanza", SYMS({ NULL, 0, false }),
	    { true, XM_MODIFY, NULL, NULL, false }, XM_MODIFY, 0, NULL, NULL,
	    NULL },
};

Test(score, default_thresholds)
{
	struct xm_chain *ch = chain_of(NO_FILTERS);
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(default_thresholds); i++)
		run_case(ch, MSG, &default_thresholds[i], "global");
	xm_chain_unref(ch);
}

Test(score, discard_threshold_and_highest_reached)
{
	static const struct score_case above[] = {
		{ "reject below discard", SYMS({ "A", 18, false }), NOFINAL, XM_REJECT, 18,
		    "A", "not-acceptable", "go away" },
		{ "discard", SYMS({ "A", 25, false }), NOFINAL, XM_DISCARD, 25, "A",
		    "not-acceptable", "go away" },
	};
	static const struct score_case below[] = {
		/* discard 12 is below reject 15: the highest threshold reached
		 * wins, whatever the action's order */
		{ "discard (12) reached, reject (15) not", SYMS({ "A", 13, false }), NOFINAL,
		    XM_DISCARD, 13, "A", "policy-violation", DEF_TEXT },
		{ "reject (15) is the highest reached", SYMS({ "A", 16, false }), NOFINAL,
		    XM_REJECT, 16, "A", "policy-violation", DEF_TEXT },
	};
	static const struct score_case ties[] = {
		{ "equal thresholds: the severer action", SYMS({ "A", 5, false }), NOFINAL,
		    XM_QUARANTINE, 5, "A", NULL, NULL },
	};
	static const struct score_case none[] = {
		{ "every threshold none", SYMS({ "A", 1e6, false }), NOFINAL, XM_ACCEPT,
		    1e6, NULL, NULL, NULL },
		{ "a final result still applies", SYMS({ NULL, 0, false }),
		    { true, XM_REJECT, NULL, NULL, false }, XM_REJECT, 0, NULL,
		    "policy-violation", DEF_TEXT },
	};
	struct xm_chain *ch;
	size_t i;

	ch = chain_of(NO_FILTERS "actions:\n  discard: 20\n"
	    "  reject_condition: not-acceptable\n  reject_text: go away\n");
	for (i = 0; i < XM_ARRAY_LEN(above); i++)
		run_case(ch, MSG, &above[i], "global");
	xm_chain_unref(ch);
	ch = chain_of(NO_FILTERS "actions:\n  discard: 12\n");
	for (i = 0; i < XM_ARRAY_LEN(below); i++)
		run_case(ch, MSG, &below[i], "global");
	xm_chain_unref(ch);
	ch = chain_of(NO_FILTERS "actions:\n  modify: 5\n  quarantine: 5\n");
	for (i = 0; i < XM_ARRAY_LEN(ties); i++)
		run_case(ch, MSG, &ties[i], "global");
	xm_chain_unref(ch);
	ch = chain_of(NO_FILTERS "actions:\n  modify: none\n  quarantine: none\n"
	    "  reject: none\n  discard: none\n");
	for (i = 0; i < XM_ARRAY_LEN(none); i++)
		run_case(ch, MSG, &none[i], "global");
	xm_chain_unref(ch);
}

Test(score, per_scope_thresholds)
{
	static const struct score_case in_scope[] = {
		{ "12 rejects in the transports scope", SYMS({ "A", 12, false }), NOFINAL,
		    XM_REJECT, 12, "A", "service-unavailable", "transport says no" },
		{ "10 is not quarantined there", SYMS({ "A", 10, false }), NOFINAL,
		    XM_MODIFY, 10, "A", NULL, NULL },
	};
	static const struct score_case global[] = {
		{ "12 is quarantine in global", SYMS({ "A", 12, false }), NOFINAL,
		    XM_QUARANTINE, 12, "A", NULL, NULL },
	};
	struct xm_chain *ch = chain_of(NO_FILTERS
	    "scopes:\n"
	    "  - name: transports\n"
	    "    match: {origin: [component]}\n"
	    "    actions:\n"
	    "      quarantine: none\n"
	    "      reject: 12\n"
	    "      reject_condition: service-unavailable\n"
	    "      reject_text: transport says no\n");
	static const char comp[] = "origin=component\npeer=icq.example.org\n\n"
	    "<message from='123@icq.example.org' to='bob@example.org'>"
	    "<body>hi</body></message>";
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(in_scope); i++)
		run_case(ch, comp, &in_scope[i], "transports");
	for (i = 0; i < XM_ARRAY_LEN(global); i++)
		run_case(ch, MSG, &global[i], "global");
	xm_chain_unref(ch);
}

/* ---- the task helpers ---- */

Test(score, task_helpers)
{
	struct xm_chain *ch = chain_of(NO_FILTERS);
	struct xm_arena *a = xm_arena_new();
	struct xm_event *ev = event(a, "<message><body>a</body><body>b</body>"
	    "</message>");
	struct xm_task t;
	int i;

	xm_task_init(&t, ch, a, ev, 42);
	cr_expect_eq(t.now, 42);
	cr_expect_eq(t.ev, ev);
	cr_expect_str_eq(t.scope->name, "global");
	for (i = 0; i < 100; i++)
		xm_task_symbol(&t, "MANY", 0.01, 0, "%d", i);
	xm_task_symbol(&t, "NOFMT", 1, 0, NULL);
	cr_expect_eq(t.nsymbols, 101);
	cr_expect_str_eq(t.symbols[99].detail, "99");
	cr_expect_str_eq(t.symbols[100].detail, "");
	cr_expect_str_eq(t.symbols[100].filter, "");
	cr_expect(xm_task_has_symbol(&t, "NOFMT"));
	cr_expect_not(xm_task_has_symbol(&t, "NOPE"));
	/* the first final result stands */
	xm_task_final(&t, XM_DISCARD, "c1", "t1");
	xm_task_final(&t, XM_ACCEPT, "c2", "t2");
	cr_expect(t.final);
	cr_expect_eq(t.final_action, XM_DISCARD);
	cr_expect_str_eq(t.final_condition, "c1");
	/* body rewrites: out of range and shadowed ones are ignored */
	xm_task_replace_body(&t, 5, "nope");
	cr_expect_null(t.new_bodies);
	t.cur_shadow = true;
	xm_task_replace_body(&t, 0, "shadowed");
	cr_expect_null(t.new_bodies);
	t.cur_shadow = false;
	xm_task_replace_body(&t, 1, "B");
	cr_assert_not_null(t.new_bodies);
	cr_expect_null(t.new_bodies[0]);
	cr_expect_str_eq(t.new_bodies[1], "B");
	xm_arena_free(a);
	xm_chain_unref(ch);
}

/* ---- the real filters through the chain ---- */

static const char chain_rules[] =
    "body     CH_ONE     /\\bONE\\b/\n"
    "score    CH_ONE     1\n"
    "body     CH_FIVE    /\\bFIVE\\b/\n"
    "score    CH_FIVE    5\n"
    "body     CH_TEN     /\\bTEN\\b/\n"
    "score    CH_TEN     10\n"
    "body     CH_SHADOW  /\\bSHADOW\\b/\n"
    "score    CH_SHADOW  100\n"
    "tflags   CH_SHADOW  shadow\n"
    "body     CH_NEG     /\\bNEG\\b/\n"
    "score    CH_NEG     -3\n";

#define RULES_CONF "filters:\n  transfer: {enabled: false}\n" \
	"  oobfetch: {enabled: false}\n" NO_LINKS \
	"  rules:\n    files: [chain.cf]\n"

/* check - run TEXT through CH; fills V, keeps the arena in *A */
static void
check(const struct xm_chain *ch, struct xm_arena *a, const char *text,
    struct xm_task *t, struct xm_verdict *v)
{
	xm_task_init(t, ch, a, event(a, text), 1e9);
	xm_chain_check(ch, t, v);
}

/* names - the verdict's symbol names, "NAME[!]" with ! for shadow */
static const char *
names(struct xm_arena *a, const struct xm_verdict *v)
{
	struct xm_buf b = { 0 };
	const char *r;
	size_t i;

	for (i = 0; i < v->nsymbols; i++)
		xm_buf_printf(&b, "%s%s%s", i ? " " : "", v->symbols[i].name,
		    (v->symbols[i].flags & XM_SYM_SHADOW) ? "!" : "");
	r = xm_arena_strdup(a, b.data ? b.data : "");
	xm_buf_free(&b);
	return r;
}

#define C2S_MSG(body) "origin=c2s\nauth=alice@example.org\n\n<message " \
	"from='alice@example.org/pc' to='bob@example.org' type='chat' " \
	"id='m1'><body>" body "</body></message>"
#define SPOOF_MSG(body) "origin=c2s\nauth=alice@example.org\n\n<message " \
	"from='mallory@example.org/pc' to='bob@example.org' type='chat' " \
	"id='m2'><body>" body "</body></message>"

Test(chain, real_filters)
{
	static const struct {
		const char *what, *yaml, *event;
		enum xm_action action;
		double score;
		const char *symbols, *condition;
	} t[] = {
		{ "clean", RULES_CONF, C2S_MSG("hello"), XM_ACCEPT, 0, "", NULL },
		{ "one", RULES_CONF, C2S_MSG("ONE"), XM_ACCEPT, 1, "CH_ONE", NULL },
		{ "five", RULES_CONF, C2S_MSG("FIVE"), XM_MODIFY, 5, "CH_FIVE",
		    NULL },
		{ "ten five", RULES_CONF, C2S_MSG("TEN FIVE"), XM_REJECT, 15,
		    "CH_FIVE CH_TEN", "policy-violation" },
		{ "ten five neg", RULES_CONF, C2S_MSG("TEN FIVE NEG"),
		    XM_QUARANTINE, 12, "CH_FIVE CH_TEN CH_NEG", NULL },
		{ "shadow rule", RULES_CONF, C2S_MSG("SHADOW ONE"), XM_ACCEPT, 1,
		    "CH_ONE CH_SHADOW!", NULL },
		{ "shadow filter", RULES_CONF "    shadow: true\n",
		    C2S_MSG("TEN FIVE"), XM_ACCEPT, 0, "CH_FIVE! CH_TEN!", NULL },
		{ "disabled filter", RULES_CONF "    enabled: false\n",
		    C2S_MSG("TEN FIVE"), XM_ACCEPT, 0, "", NULL },
		{ "spoofed from: final reject ends the chain", RULES_CONF,
		    SPOOF_MSG("ONE"), XM_REJECT, 10, "GUARD_SPOOFED_FROM", "not-authorized" },
		{ "spoofed from, guard shadowed", RULES_CONF
		    "  guard:\n    shadow: true\n", SPOOF_MSG("ONE"), XM_ACCEPT, 1,
		    "GUARD_SPOOFED_FROM! CH_ONE", NULL },
		{ "spoofed from, scored only", RULES_CONF
		    "  guard:\n    spoof_action: score\n", SPOOF_MSG("FIVE"),
		    XM_REJECT, 15, "GUARD_SPOOFED_FROM CH_FIVE", "policy-violation" },
	};
	size_t i;

	write_file("chain.cf", chain_rules);
	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_chain *ch = chain_of(t[i].yaml);
		struct xm_arena *a = xm_arena_new();
		struct xm_task tk;
		struct xm_verdict v;

		check(ch, a, t[i].event, &tk, &v);
		cr_expect_eq(v.action, t[i].action, "%s: %s", t[i].what,
		    xm_action_name(v.action));
		cr_expect(fabs(v.score - t[i].score) < 1e-9, "%s: score %g",
		    t[i].what, v.score);
		cr_expect_str_eq(names(a, &v), t[i].symbols, "%s", t[i].what);
		if (t[i].condition)
			cr_expect(v.condition && strcmp(v.condition,
			    t[i].condition) == 0, "%s: condition %s", t[i].what,
			    v.condition);
		xm_arena_free(a);
		xm_chain_unref(ch);
	}
}

Test(chain, scope_filters_and_shadow)
{
	struct xm_chain *ch;
	struct xm_arena *a = xm_arena_new();
	struct xm_task t;
	struct xm_verdict v;

	write_file("chain.cf", chain_rules);
	write_file("other.cf", "body OTHER_TEN /\\bTEN\\b/\nscore OTHER_TEN 2\n");
	ch = chain_of(RULES_CONF
	    "scopes:\n"
	    "  - name: partner\n"
	    "    match: {from_domain: [partner.example]}\n"
	    "    filters:\n"
	    "      rules: {files: [other.cf]}\n"
	    "  - name: trial\n"
	    "    match: {from_domain: [trial.example]}\n"
	    "    filters:\n"
	    "      rules: {shadow: true}\n");
	check(ch, a, "origin=s2s\npeer=partner.example\n\n<message from="
	    "'x@partner.example' to='bob@example.org'><body>TEN</body></message>",
	    &t, &v);
	cr_expect_str_eq(v.scope, "partner");
	cr_expect_str_eq(names(a, &v), "OTHER_TEN");
	cr_expect_eq(v.action, XM_ACCEPT);
	check(ch, a, "origin=s2s\npeer=trial.example\n\n<message from="
	    "'x@trial.example' to='bob@example.org'><body>TEN FIVE</body>"
	    "</message>", &t, &v);
	cr_expect_str_eq(v.scope, "trial");
	cr_expect_str_eq(names(a, &v), "CH_FIVE! CH_TEN!");
	cr_expect_eq(v.action, XM_ACCEPT);
	check(ch, a, C2S_MSG("TEN"), &t, &v);
	cr_expect_str_eq(v.scope, "global");
	cr_expect_eq(v.action, XM_QUARANTINE);
	cr_expect_not(xm_chain_has_slow(ch));
	cr_expect_not(xm_chain_task_slow(ch, &t));
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(chain, filter_init_errors_name_filter_and_scope)
{
	char path[PATH_MAX + 64], err[1024] = "";
	struct xm_config *c;

	write_file("bad.cf", "body BROKEN /(unclosed/\n");
	write_file("good.cf", "body FINE /x/\n");
	write_file("xmilter.yml", "filters:\n  rules:\n    files: [bad.cf]\n");
	snprintf(path, sizeof(path), "%s/xmilter.yml", tmpdir);
	cr_assert_not_null(c = xm_config_load(path, err, sizeof(err)), "%s", err);
	cr_expect_null(xm_chain_new(c, err, sizeof(err)));
	cr_expect(strstr(err, "bad.cf:1") != NULL, "%s", err);
	cr_expect(strstr(err, "(filter rules, scope global)") != NULL, "%s", err);
	/* the chain owned the config, failed or not: nothing to free here */
}

Test(chain, reference_counting)
{
	struct xm_chain *ch = chain_of(NO_FILTERS);
	const struct xm_config *c = xm_chain_config(ch);

	cr_expect_not_null(c);
	xm_chain_ref(ch);
	xm_chain_unref(ch);
	cr_expect_eq(xm_chain_config(ch), c, "still alive after one unref");
	xm_chain_unref(ch);
	xm_chain_unref(NULL);
}

/* ---- modify: the replacement stanza ---- */

#define RICH_MSG "origin=c2s\nauth=alice@example.org\n\n" \
	"<message from='alice@example.org/pc' to='bob@example.org' type='chat' " \
	"id='m1'><body>look FIVE</body><body xml:lang='de'>schau</body>" \
	"<html xmlns='http://jabber.org/protocol/xhtml-im'><body " \
	"xmlns='http://www.w3.org/1999/xhtml'><p>look <a href='http://x/'>" \
	"FIVE</a></p></body></html>" \
	"<x xmlns='jabber:x:oob'><url>http://198.51.100.7/a.exe</url></x>" \
	"<thread>t1</thread></message>"

/* modified - the verdict's stanza for EVENT on CH, re-parsed */
static struct xm_event *
modified(const struct xm_chain *ch, struct xm_arena *a, const char *text,
    const char **stanza)
{
	struct xm_task t;
	struct xm_verdict v;

	check(ch, a, text, &t, &v);
	cr_assert_eq(v.action, XM_MODIFY, "%s", xm_action_name(v.action));
	cr_assert_not_null(v.stanza);
	*stanza = v.stanza;
	return event(a, v.stanza);
}

Test(modify, warning_before_bodies_rich_text_dropped)
{
	struct xm_chain *ch;
	struct xm_arena *a = xm_arena_new();
	struct xm_event *m;
	const char *s;

	write_file("chain.cf", chain_rules);
	ch = chain_of(RULES_CONF "actions:\n  modify_warning: \"[WARNING]\"\n");
	m = modified(ch, a, RICH_MSG, &s);
	cr_expect_str_eq(s, "<message from='alice@example.org/pc' "
	    "to='bob@example.org' type='chat' id='m1'>"
	    "<body>[WARNING]\nlook FIVE</body>"
	    "<body xml:lang='de'>[WARNING]\nschau</body>"
	    "<x xmlns='jabber:x:oob'><url>http://198.51.100.7/a.exe</url></x>"
	    "<thread>t1</thread></message>");
	cr_expect_str_eq(m->name, "message");
	cr_expect_str_eq(m->from, "alice@example.org/pc");
	cr_expect_str_eq(m->to, "bob@example.org");
	cr_expect_str_eq(m->type, "chat");
	cr_expect_str_eq(m->id, "m1");
	cr_assert_eq(m->nbodies, 2);
	cr_expect_str_eq(m->bodies[1].lang, "de");
	cr_expect_null(m->xhtml, "rich text must be dropped");
	cr_expect_eq(m->nfiles, 1);
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(modify, no_warning_configured)
{
	struct xm_chain *ch;
	struct xm_arena *a = xm_arena_new();
	struct xm_event *m;
	const char *s;

	write_file("chain.cf", chain_rules);
	ch = chain_of(RULES_CONF "actions:\n  modify_warning: \"\"\n");
	m = modified(ch, a, RICH_MSG, &s);
	cr_assert_eq(m->nbodies, 2);
	cr_expect_str_eq(m->bodies[0].text, "look FIVE");
	cr_expect_null(m->xhtml);
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(modify, default_namespace_and_escaping_kept)
{
	struct xm_chain *ch;
	struct xm_arena *a = xm_arena_new();
	struct xm_event *m;
	const char *s;

	write_file("chain.cf", chain_rules);
	ch = chain_of(RULES_CONF "actions:\n  modify_warning: \"<b>&'\\\"\"\n");
	m = modified(ch, a, "<message xmlns='jabber:client' to='b@y' id='x'>"
	    "<body>FIVE &lt;3 &amp; more</body>"
	    "<html xmlns='http://jabber.org/protocol/xhtml-im'/></message>", &s);
	cr_assert_eq(m->nbodies, 1);
	cr_expect_str_eq(m->bodies[0].text, "<b>&'\"\nFIVE <3 & more");
	cr_expect_str_eq(m->id, "x");
	cr_expect_eq(m->root->children->next, NULL, "only the body is left");
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(modify, a_filters_own_rewrite_wins_over_the_warning)
{
	struct xm_chain *ch = chain_of(NO_FILTERS
	    "actions:\n  modify_warning: \"[W]\"\n");
	struct xm_arena *a = xm_arena_new();
	struct xm_task t;
	struct xm_verdict v;
	struct xm_event *m;

	xm_task_init(&t, ch, a, event(a, "<message><body>evil http://x/</body>"
	    "<body xml:lang='fr'>mal</body></message>"), 0);
	t.cur_filter = "links";
	xm_task_symbol(&t, "LINK", 5, 0, NULL);
	xm_task_replace_body(&t, 0, "evil hxxp://x/");
	t.cur_filter = NULL;
	xm_chain_finish(ch, &t, &v);
	cr_assert_eq(v.action, XM_MODIFY);
	m = event(a, v.stanza);
	cr_assert_eq(m->nbodies, 2);
	cr_expect_str_eq(m->bodies[0].text, "evil hxxp://x/");
	cr_expect_str_eq(m->bodies[1].text, "[W]\nmal");
	xm_arena_free(a);
	xm_chain_unref(ch);
}

/* The sender controls the namespace URIs in the stanza: one holding
 * quotes and brackets must come out escaped, not as markup. Otherwise the
 * "defanged" replacement carries a body without the warning and the rich
 * text (with its javascript: link) that modify is there to drop. */
Test(modify, attribute_namespace_cannot_inject_markup)
{
	struct xm_chain *ch;
	struct xm_arena *a = xm_arena_new();
	struct xm_event *m;
	const char *s;

	write_file("chain.cf", chain_rules);
	ch = chain_of(RULES_CONF "actions:\n  modify_warning: \"[W]\"\n");
	m = modified(ch, a, "origin=c2s\nauth=mallory@example.org\n\n"
	    "<message from='mallory@example.org/pc' to='bob@example.org' "
	    "type='chat' id='i1'><body>FIVE hi</body><x xmlns='urn:example:x' "
	    "xmlns:p=\"urn:a'/&gt;&lt;body&gt;no warning here&lt;/body&gt;"
	    "&lt;html xmlns='http://jabber.org/protocol/xhtml-im'&gt;&lt;body "
	    "xmlns='http://www.w3.org/1999/xhtml'&gt;&lt;a href='javascript:"
	    "alert(1)'&gt;click&lt;/a&gt;&lt;/body&gt;&lt;/html&gt;&lt;x "
	    "xmlns:a0='z' b='\" p:y='1'/></message>", &s);
	cr_expect_eq(m->nbodies, 1, "%zu bodies in the replacement: %s",
	    m->nbodies, s);
	cr_expect_null(m->xhtml, "rich text injected into the replacement: %s",
	    s);
	cr_expect_eq(m->nurls, 0, "a link was injected: %s", s);
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(modify, a_message_without_body)
{
	struct xm_chain *ch = chain_of(NO_FILTERS);
	struct xm_arena *a = xm_arena_new();
	struct xm_task t;
	struct xm_verdict v;

	xm_task_init(&t, ch, a, event(a, "<iq type='set' id='i'><query "
	    "xmlns='jabber:iq:oob'><url>http://x/a.exe</url></query></iq>"), 0);
	xm_task_symbol(&t, "X", 6, 0, NULL);
	xm_chain_finish(ch, &t, &v);
	cr_assert_eq(v.action, XM_MODIFY);
	cr_expect_str_eq(v.stanza, "<iq type='set' id='i'><query "
	    "xmlns='jabber:iq:oob'><url>http://x/a.exe</url></query></iq>");
	xm_arena_free(a);
	xm_chain_unref(ch);
}

/* ---- malformed events ---- */

Test(output, malformed_verdict_uses_on_malformed)
{
	static const struct {
		const char *setting;
		enum xm_action action;
		const char *condition;
	} t[] = {
		{ "", XM_REJECT, "bad-request" },
		{ "actions:\n  on_malformed: reject\n", XM_REJECT, "bad-request" },
		{ "actions:\n  on_malformed: accept\n", XM_ACCEPT, NULL },
		{ "actions:\n  on_malformed: modify\n", XM_ACCEPT, NULL },
		{ "actions:\n  on_malformed: quarantine\n", XM_QUARANTINE, NULL },
		{ "actions:\n  on_malformed: discard\n", XM_DISCARD, "bad-request" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_chain *ch = chain_of(t[i].setting);
		struct xm_arena *a = xm_arena_new();
		struct xm_verdict v;

		xm_verdict_malformed(ch, a, "stanza: truncated (no end tag)", &v);
		cr_expect_eq(v.action, t[i].action, "row %zu: %s", i,
		    xm_action_name(v.action));
		cr_assert_eq(v.nsymbols, 1);
		cr_expect_str_eq(v.symbols[0].name, "XM_MALFORMED");
		cr_expect_str_eq(v.symbols[0].detail,
		    "stanza: truncated (no end tag)");
		cr_expect_eq(v.score, 0);
		cr_expect_str_eq(v.reason, "XM_MALFORMED");
		cr_expect_str_eq(v.scope, "global");
		cr_expect_null(v.stanza);
		if (t[i].condition) {
			cr_expect_str_eq(v.condition, t[i].condition, "row %zu", i);
			cr_expect_not_null(v.text);
		} else {
			cr_expect_null(v.condition, "row %zu", i);
		}
		xm_arena_free(a);
		xm_chain_unref(ch);
	}
}

/* ---- JSON and log output ---- */

Test(output, json_shape)
{
	struct xm_chain *ch;
	struct xm_arena *a = xm_arena_new();
	struct xm_task t;
	struct xm_verdict v;
	json_error_t jerr;
	json_t *o, *syms, *s;
	const char *text, *key;
	static const char *const order[] = { "kind", "id", "from", "to", "action",
	    "score", "symbols", "reason", "condition", "text", "scope" };
	size_t i = 0;
	void *it;

	write_file("chain.cf", chain_rules);
	ch = chain_of(RULES_CONF);
	check(ch, a, C2S_MSG("TEN FIVE SHADOW"), &t, &v);
	text = xm_verdict_json(a, t.ev, &v);
	cr_expect_null(strchr(text, '\n'), "one line");
	o = json_loads(text, 0, &jerr);
	cr_assert_not_null(o, "%s: %s", jerr.text, text);
	cr_assert(json_is_object(o));
	for (it = json_object_iter(o); it; it = json_object_iter_next(o, it), i++) {
		key = json_object_iter_key(it);
		cr_expect(i < XM_ARRAY_LEN(order) && strcmp(key, order[i]) == 0,
		    "key %zu is %s", i, key);
	}
	cr_expect_eq(i, XM_ARRAY_LEN(order));
	cr_expect_str_eq(json_string_value(json_object_get(o, "kind")), "message");
	cr_expect_str_eq(json_string_value(json_object_get(o, "id")), "m1");
	cr_expect_str_eq(json_string_value(json_object_get(o, "from")),
	    "alice@example.org/pc");
	cr_expect_str_eq(json_string_value(json_object_get(o, "to")),
	    "bob@example.org");
	cr_expect_str_eq(json_string_value(json_object_get(o, "action")),
	    "reject");
	cr_expect(json_is_real(json_object_get(o, "score")));
	cr_expect_eq(json_real_value(json_object_get(o, "score")), 15);
	cr_expect_str_eq(json_string_value(json_object_get(o, "reason")),
	    "CH_TEN");
	cr_expect_str_eq(json_string_value(json_object_get(o, "condition")),
	    "policy-violation");
	cr_expect_str_eq(json_string_value(json_object_get(o, "scope")), "global");
	cr_expect_null(json_object_get(o, "stanza"));
	syms = json_object_get(o, "symbols");
	cr_assert(json_is_array(syms));
	cr_assert_eq(json_array_size(syms), 3);
	s = json_array_get(syms, 0);
	cr_expect_str_eq(json_string_value(json_object_get(s, "name")), "CH_FIVE");
	cr_expect_eq(json_real_value(json_object_get(s, "score")), 5);
	cr_expect(json_is_string(json_object_get(s, "detail")));
	cr_expect_null(json_object_get(s, "shadow"));
	s = json_array_get(syms, 2);
	cr_expect_str_eq(json_string_value(json_object_get(s, "name")),
	    "CH_SHADOW");
	cr_expect(json_is_true(json_object_get(s, "shadow")));
	json_decref(o);

	/* modify carries the stanza; without an event there are no ids */
	check(ch, a, C2S_MSG("FIVE"), &t, &v);
	o = json_loads(xm_verdict_json(a, t.ev, &v), 0, &jerr);
	cr_assert_not_null(o);
	cr_expect(json_is_string(json_object_get(o, "stanza")));
	cr_expect_null(json_object_get(o, "condition"));
	json_decref(o);
	xm_verdict_malformed(ch, a, "bad", &v);
	o = json_loads(xm_verdict_json(a, NULL, &v), 0, &jerr);
	cr_assert_not_null(o);
	cr_expect_null(json_object_get(o, "kind"));
	cr_expect_null(json_object_get(o, "id"));
	cr_expect_str_eq(json_string_value(json_object_get(o, "reason")),
	    "XM_MALFORMED");
	json_decref(o);
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(output, json_scores_are_rounded_to_hundredths)
{
	struct xm_chain *ch = chain_of(NO_FILTERS);
	struct xm_arena *a = xm_arena_new();
	struct xm_task t;
	struct xm_verdict v;
	const char *j;

	xm_task_init(&t, ch, a, event(a, "<message/>"), 0);
	xm_task_symbol(&t, "A", 0.1, 0, NULL);
	xm_task_symbol(&t, "B", 0.2, 0, NULL);
	xm_task_symbol(&t, "C", 1.0 / 3, 0, "%s", "quote \" and \\ and \n");
	xm_chain_finish(ch, &t, &v);
	j = xm_verdict_json(a, t.ev, &v);
	cr_expect_not_null(strstr(j, "\"score\":0.63"), "%s", j);
	cr_expect_not_null(strstr(j, "{\"name\":\"A\",\"score\":0.1,"), "%s", j);
	cr_expect_not_null(strstr(j, "\"score\":0.33,\"detail\":\"quote \\\" and "
	    "\\\\ and \\n\"}"), "%s", j);
	xm_arena_free(a);
	xm_chain_unref(ch);
}

Test(output, log_line)
{
	struct xm_chain *ch = chain_of(NO_FILTERS);
	struct xm_arena *a = xm_arena_new();
	struct xm_task t;
	struct xm_verdict v;

	xm_task_init(&t, ch, a, event(a, "origin=c2s\n\n<message from='a\"b@x' "
	    "to='c@y'/>"), 0);
	xm_task_symbol(&t, "A", 6, 0, NULL);
	t.cur_shadow = true;
	xm_task_symbol(&t, "S", 2, 0, NULL);
	t.cur_shadow = false;
	xm_chain_finish(ch, &t, &v);
	cr_expect_str_eq(xm_verdict_logline(a, t.ev, &v, 7, 1.5),
	    "verdict id=7 kind=message origin=\"c2s\" from=\"a\\\"b@x\" "
	    "to=\"c@y\" action=modify score=6.00 symbols=A(6.00),S(2.00,shadow) "
	    "scope=global ms=1.500");
	xm_verdict_malformed(ch, a, "x", &v);
	cr_expect_str_eq(xm_verdict_logline(a, NULL, &v, 8, 0),
	    "verdict id=8 kind=- origin=- from=- to=- action=reject score=0.00 "
	    "symbols=XM_MALFORMED(0.00) scope=global ms=0.000");
	xm_arena_free(a);
	xm_chain_unref(ch);
}
