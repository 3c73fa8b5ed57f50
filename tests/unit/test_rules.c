/*
 * test_rules.c - unit tests of the rules filter (filters/rules.c)
 *
 * Rule files come from tests/fixtures/rules/ (found through $top_srcdir,
 * "." when unset) or are written to a temporary directory per test.
 * Events are parsed with xm_event_parse and checked with a task built by
 * hand, so only the filter and the event parser are exercised.
 */
#include <sys/stat.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "xm.h"
#include "config.h"
#include "event.h"

extern const struct xm_filter_ops rules_filter;

/* ---- helpers ---- */

struct loaded {
	void *conf;
	void *state;
	char err[1024];
	int rc;
};

struct run {
	struct xm_arena *arena;
	struct xm_event *ev;
	struct xm_task t;
};

static char tmpdir[PATH_MAX];

/* srcdir - the source tree's top directory */
static const char *
srcdir(void)
{
	const char *s = getenv("top_srcdir");

	return s != NULL && *s != '\0' ? s : ".";
}

/* fixture - path of a file under tests/fixtures/rules (one of four
 * static buffers, so two may appear in one call) */
static const char *
fixture(const char *name)
{
	static char buf[4][PATH_MAX];
	static unsigned n;
	char *b = buf[n++ % 4];

	snprintf(b, PATH_MAX, "%s/tests/fixtures/rules/%s", srcdir(), name);
	return b;
}

/* make_tmpdir - a fresh temporary directory for this test */
static const char *
make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/xm-rules-XXXXXX",
	    base != NULL && *base != '\0' ? base : "/tmp");
	cr_assert_not_null(mkdtemp(tmpdir));
	return tmpdir;
}

/* rm_tmpdir - remove the temporary directory and what is in it */
static void
rm_tmpdir(void)
{
	char cmd[PATH_MAX + 16];

	if (tmpdir[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	tmpdir[0] = '\0';
}

/* write_tmp - write TEXT to NAME in the temporary directory; its path */
static char *
write_tmp(const char *name, const char *text)
{
	char *path;
	FILE *fp;

	if (tmpdir[0] == '\0')
		make_tmpdir();
	path = xm_printf("%s/%s", tmpdir, name);
	cr_assert_not_null(fp = fopen(path, "w"), "%s", path);
	fputs(text, fp);
	cr_assert_eq(fclose(fp), 0);
	return path;
}

/* load_opts - init the filter with FILES and extra "name=value" settings */
static void
load_opts(struct loaded *l, const char *files, const char *const *opts)
{
	const struct xm_setting *tab = rules_filter.settings;
	const char *eq;
	char name[64];

	memset(l, 0, sizeof(*l));
	l->conf = xm_calloc(1, rules_filter.conf_size);
	cr_assert_eq(xm_settings_defaults(tab, l->conf, NULL, l->err,
	    sizeof(l->err)), 0, "defaults: %s", l->err);
	cr_assert_eq(xm_settings_set(tab, l->conf, "files", files, NULL,
	    l->err, sizeof(l->err)), 0, "files: %s", l->err);
	for (; opts != NULL && *opts != NULL; opts++) {
		cr_assert_not_null(eq = strchr(*opts, '='));
		snprintf(name, sizeof(name), "%.*s", (int)(eq - *opts), *opts);
		cr_assert_eq(xm_settings_set(tab, l->conf, name, eq + 1, NULL,
		    l->err, sizeof(l->err)), 0, "%s: %s", name, l->err);
	}
	l->rc = rules_filter.init(&l->state, l->conf, l->err, sizeof(l->err));
}

/* load - init the filter with FILES; must succeed */
static void
load(struct loaded *l, const char *files)
{
	load_opts(l, files, NULL);
	cr_assert_eq(l->rc, 0, "init failed: %s", l->err);
}

/* unload - free the filter state and its settings */
static void
unload(struct loaded *l)
{
	if (l->rc == 0 && l->state != NULL)
		rules_filter.free(l->state);
	xm_settings_free(rules_filter.settings, l->conf);
	free(l->conf);
	l->state = NULL;
	l->conf = NULL;
}

/* run - parse EVENT text and check it with L's rules */
static void
run(struct run *r, const struct loaded *l, const char *event)
{
	struct xm_event_limits lim;
	char err[256];
	size_t used = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	xm_event_limits_default(&lim);
	r->arena = xm_arena_new();
	rc = xm_event_parse(r->arena, event, strlen(event), &lim, &r->ev, &used,
	    err, sizeof(err));
	cr_assert_eq(rc, 0, "event does not parse: %s\n%s", err, event);
	r->t.arena = r->arena;
	r->t.ev = r->ev;
	r->t.cur_filter = "rules";
	rules_filter.check(l->state, &r->t);
}

/* done - free what run allocated */
static void
done(struct run *r)
{
	xm_arena_free(r->arena);
	r->arena = NULL;
}

/* sym - the symbol NAME of a run, or NULL */
static const struct xm_symbol *
sym(const struct run *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->t.nsymbols; i++)
		if (strcmp(r->t.symbols[i].name, name) == 0)
			return &r->t.symbols[i];
	return NULL;
}

/* total - the sum of the scores of a run's unshadowed symbols */
static double
total(const struct run *r)
{
	double s = 0;
	size_t i;

	for (i = 0; i < r->t.nsymbols; i++)
		if (!(r->t.symbols[i].flags & XM_SYM_SHADOW))
			s += r->t.symbols[i].score;
	return s;
}

/* symlist - a run's symbols as "A B C" (for failure messages) */
static const char *
symlist(const struct run *r)
{
	struct xm_buf b = { 0 };
	const char *s;
	size_t i;

	for (i = 0; i < r->t.nsymbols; i++) {
		if (i > 0)
			xm_buf_puts(&b, " ");
		xm_buf_printf(&b, "%s(%g)", r->t.symbols[i].name,
		    r->t.symbols[i].score);
	}
	s = xm_arena_strdup(r->arena, b.data != NULL ? b.data : "");
	xm_buf_free(&b);
	return s;
}

/* expect_symbols - every name in WANT (blank-separated) is there, none
 * of NOWANT; CASE names the table row in messages */
static void
expect_symbols(const struct run *r, const char *want, const char *nowant,
    const char *what)
{
	char buf[2048], *p, *w;

	snprintf(buf, sizeof(buf), "%s", want != NULL ? want : "");
	for (p = buf; (w = strsep(&p, " ")) != NULL; )
		if (*w != '\0')
			cr_expect(xm_task_has_symbol(&r->t, w),
			    "%s: %s missing; got: %s", what, w, symlist(r));
	snprintf(buf, sizeof(buf), "%s", nowant != NULL ? nowant : "");
	for (p = buf; (w = strsep(&p, " ")) != NULL; )
		if (*w != '\0')
			cr_expect(!xm_task_has_symbol(&r->t, w),
			    "%s: %s unexpected; got: %s", what, w, symlist(r));
}

#define MSG(body) \
	"origin=c2s\nauth=alice@example.org\ntls=yes\n\n" \
	"<message from='alice@example.org/pc' to='bob@example.org' " \
	"type='chat' id='a1'><body>" body "</body></message>"

/* ---- every rule type ---- */

struct type_case {
	const char *what;
	const char *event;
	const char *want;
	const char *nowant;
};

static const struct type_case type_cases[] = {
	{ "plain chat", MSG("hello bob"),
	  "", "T_BODY T_NODESC T_MULTI T_DOTALL T_RAW T_ORIGIN T_NOT_TLS "
	  "T_HAS_IP T_TYPE T_FROM T_TO_OUTSIDE T_ANY T_URI_OOB" },
	{ "body, caseless", MSG("get FREE   Money now"), "T_BODY", "" },
	{ "body, no describe", MSG("the secret word"), "T_NODESC", "" },
	{ "m flag", MSG("first line\nsecond line\nthird"), "T_MULTI",
	  "T_NOMULTI" },
	{ "no m flag, one line", MSG("second line"), "T_MULTI T_NOMULTI", "" },
	{ "s flag", MSG("alpha\nbeta"), "T_DOTALL", "T_NODOTALL" },
	{ "no s flag", MSG("alpha-beta"), "T_DOTALL T_NODOTALL", "" },
	{ "x flag", MSG("one two three"), "T_EXTENDED", "" },
	{ "x flag, no match", MSG("one  two three"), "", "T_EXTENDED" },
	{ "m{} delimiters", MSG("see a/b/c"), "T_BRACES", "" },
	{ "m!! delimiters, i", MSG("XXY"), "T_BANG", "" },
	{ "UTF-8 caseless", MSG("GRÜSSE und GRÜßE"), "T_UTF8", "" },
	{ "subject",
	  "origin=c2s\n\n<message from='a@example.org/x' to='bob@example.org'>"
	  "<subject>Urgent matter</subject><body>hi</body></message>",
	  "T_SUBJECT", "" },
	{ "XHTML-IM text",
	  "origin=c2s\n\n<message from='a@example.org/x' to='bob@example.org'>"
	  "<body>plain</body><html xmlns='http://jabber.org/protocol/xhtml-im'>"
	  "<body xmlns='http://www.w3.org/1999/xhtml'><p>a <b>boldword</b> "
	  "<a href='https://link.example/x'>here</a></p></body></html>"
	  "</message>",
	  "T_XHTML T_URI_HREF", "" },
	{ "presence status",
	  "origin=c2s\n\n<presence from='a@example.org/x'><status>away mining"
	  "</status></presence>",
	  "T_STATUS T_NAME", "T_KIND" },
	{ "subscription kind",
	  "origin=c2s\n\n<presence from='a@example.org/x' to='b@example.org' "
	  "type='subscribe'/>",
	  "T_NAME T_KIND", "" },
	{ "direct invite reason",
	  "origin=c2s\n\n<message from='a@example.org/x' to='b@example.org'>"
	  "<x xmlns='jabber:x:conference' jid='room@muc.example.org' "
	  "reason='join my room now'/></message>",
	  "T_INVITE", "" },
	{ "rawbody",
	  MSG("hi</body><thread>t-42</thread><body xml:lang='de'>x"),
	  "T_RAW", "" },
	{ "uri from OOB",
	  "origin=c2s\n\n<message from='a@example.org/x' to='b@example.org'>"
	  "<body>file</body><x xmlns='jabber:x:oob'>"
	  "<url>https://files.example.net/f.zip</url></x></message>",
	  "T_URI_OOB", "T_URI_TEXT" },
	{ "uri in text", MSG("look (http://203.0.113.9:8081/x)."),
	  "T_URI_TEXT", "" },
	{ "www in text", MSG("see www.example.com/page, ok"),
	  "T_URI_WWW", "" },
	{ "www glued to a word is not a URL", MSG("xwww.example.com/page"),
	  "", "T_URI_WWW" },
	{ "header =~ on origin",
	  "origin=s2s\npeer=evil.example\ntls=yes\n\n<message "
	  "from='x@evil.example/r' to='bob@example.org'><body>hi</body>"
	  "</message>",
	  "T_ORIGIN", "T_NOT_TLS T_HAS_IP" },
	{ "header !~ and exists",
	  "origin=c2s\nip=198.51.100.7\ntls=no\n\n<message "
	  "from='a@example.org/r' to='bob@example.org'><body>hi</body>"
	  "</message>",
	  "T_NOT_TLS T_HAS_IP", "T_ORIGIN" },
	{ "header !~ on an absent field (the empty string)",
	  "origin=c2s\n\n<message from='a@example.org/r' "
	  "to='bob@example.org'><body>hi</body></message>",
	  "T_NOT_TLS", "T_HAS_IP T_HAS_ID" },
	{ "repeated field: any value",
	  "origin=c2s\nx-tag=first\nx-tag=second\n\n<message "
	  "from='a@example.org/r' to='bob@example.org'><body>hi</body>"
	  "</message>",
	  "T_TAG", "" },
	{ "stanza attributes",
	  "origin=c2s\naccount-age=120\n\n<message from='a@example.org/r' "
	  "to='room@muc.example.org' type='groupchat' id='z'><body>hi</body>"
	  "</message>",
	  "T_TYPE T_HAS_ID T_AGE", "T_NAME" },
	{ "account-age too old",
	  "origin=c2s\naccount-age=86400\n\n<message from='a@example.org/r' "
	  "to='bob@example.org'><body>hi</body></message>",
	  "", "T_AGE" },
	{ "jid from and to",
	  "origin=s2s\ntls=yes\n\n<message from='mallory@evil.example/bot' "
	  "to='bob@elsewhere.example'><body>hi</body></message>",
	  "T_FROM T_TO_OUTSIDE", "T_AUTH T_ANY" },
	{ "jid auth and any",
	  "origin=c2s\nauth=alice@example.org\n\n<message "
	  "from='alice@example.org/pc' to='carol@example.org'><body>hi"
	  "</body></message>",
	  "T_AUTH T_ANY", "T_FROM T_TO_OUTSIDE" },
	{ "jid !~ on an absent JID never hits",
	  "origin=c2s\n\n<presence from='a@example.org/r'/>",
	  "", "T_TO_OUTSIDE" },
};

Test(rules, every_rule_type)
{
	struct loaded l;
	struct run r;
	size_t i;

	load(&l, fixture("basic.cf"));
	for (i = 0; i < XM_ARRAY_LEN(type_cases); i++) {
		run(&r, &l, type_cases[i].event);
		expect_symbols(&r, type_cases[i].want, type_cases[i].nowant,
		    type_cases[i].what);
		done(&r);
	}
	unload(&l);
}

Test(rules, score_describe_detail)
{
	const struct xm_symbol *s;
	struct loaded l;
	struct run r;

	load(&l, fixture("basic.cf"));

	/* first of several scores; describe text as the detail */
	run(&r, &l, MSG("free money"));
	cr_assert_not_null(s = sym(&r, "T_BODY"));
	cr_expect_float_eq(s->score, 2.5, 1e-9);
	cr_expect_str_eq(s->detail, "Free money offer");
	cr_expect_eq(s->flags & XM_SYM_SHADOW, 0);
	done(&r);

	/* no describe: the matched text */
	run(&r, &l, MSG("the secret handshake is"));
	cr_assert_not_null(s = sym(&r, "T_NODESC"));
	cr_expect_float_eq(s->score, 1.25, 1e-9);
	cr_expect_str_eq(s->detail, "secret handshake");
	done(&r);

	/* no score: default_score */
	run(&r, &l, MSG("see a/b/c"));
	cr_assert_not_null(s = sym(&r, "T_BRACES"));
	cr_expect_float_eq(s->score, 1.0, 1e-9);
	done(&r);
	unload(&l);
}

Test(rules, detail_is_one_short_line)
{
	static const char *const opts[] = { "default_score=2", NULL };
	const struct xm_symbol *s;
	struct loaded l;
	struct run r;
	char *path;

	path = write_tmp("d.cf", "body LONG /start[\\s\\S]*end/\n");
	load_opts(&l, path, opts);
	cr_assert_eq(l.rc, 0, "%s", l.err);
	/* 2-byte characters straddle the 60-byte cut */
	run(&r, &l, MSG("start\nééééééééééééééééééééééééééééééééééé\tend"));
	cr_assert_not_null(s = sym(&r, "LONG"));
	cr_expect_float_eq(s->score, 2.0, 1e-9);
	cr_expect_leq(strlen(s->detail), 60);
	cr_expect_null(strchr(s->detail, '\n'));
	cr_expect_null(strchr(s->detail, '\t'));
	cr_expect(xm_utf8_valid(s->detail, strlen(s->detail)));
	cr_expect_eq(strncmp(s->detail, "start é", 8), 0, "%s", s->detail);
	done(&r);
	unload(&l);
	free(path);
	rm_tmpdir();
}

/* ---- meta, sub-rules, shadow ---- */

struct meta_case {
	const char *body;
	const char *want;
	const char *nowant;
};

static const struct meta_case meta_cases[] = {
	{ "nothing here", "",
	  "M_TWO M_AND_NOT M_OR M_NESTED M_PREC M_ALL3 M_NE M_LE M_MINUS "
	  "M_USES_SUB M_LATER __A __B __C __M_SUB S_SHADOW Z_ZERO M_ZERO_DEP" },
	{ "alpha", "M_AND_NOT M_NE M_MINUS",
	  "M_TWO M_OR M_PREC __A" },
	{ "alpha bravo", "M_TWO M_OR M_PREC",
	  "M_AND_NOT M_NE M_ALL3 M_NESTED M_MINUS" },
	{ "alpha charlie", "M_TWO M_OR M_AND_NOT M_USES_SUB",
	  "M_PREC M_ALL3 __M_SUB" },
	{ "alpha bravo charlie delta", "M_TWO M_ALL3 M_NESTED D_VISIBLE",
	  "M_USES_SUB M_LE" },
	{ "bravo", "M_OR M_NE", "M_TWO M_AND_NOT M_MINUS" },
	{ "delta", "D_VISIBLE M_LE", "M_NESTED" },
	{ "later alpha", "M_LATER L_LATER", "" },
	{ "later", "L_LATER", "M_LATER" },
	{ "zero", "M_ZERO_DEP", "Z_ZERO" },
	{ "shadowy", "S_SHADOW", "" },
};

Test(rules, meta_expressions)
{
	struct loaded l;
	struct run r;
	char ev[512];
	size_t i;

	load(&l, fixture("meta.cf"));
	for (i = 0; i < XM_ARRAY_LEN(meta_cases); i++) {
		snprintf(ev, sizeof(ev), MSG("%s"), meta_cases[i].body);
		run(&r, &l, ev);
		expect_symbols(&r, meta_cases[i].want, meta_cases[i].nowant,
		    meta_cases[i].body);
		done(&r);
	}
	unload(&l);
}

Test(rules, meta_scores_shadow_zero)
{
	const struct xm_symbol *s;
	struct loaded l;
	struct run r;

	load(&l, fixture("meta.cf"));

	run(&r, &l, MSG("alpha bravo"));
	cr_assert_not_null(s = sym(&r, "M_TWO"));
	cr_expect_float_eq(s->score, 3.0, 1e-9);
	cr_expect_str_eq(s->detail, "Two of alpha, bravo, charlie");
	done(&r);

	run(&r, &l, MSG("shadowy"));
	cr_assert_not_null(s = sym(&r, "S_SHADOW"));
	cr_expect_float_eq(s->score, 4.0, 1e-9);
	cr_expect_neq(s->flags & XM_SYM_SHADOW, 0);
	cr_expect_float_eq(total(&r), 0.0, 1e-9);
	done(&r);

	run(&r, &l, MSG("zero"));
	cr_expect_eq(r.t.nsymbols, 1, "got: %s", symlist(&r));
	cr_assert_not_null(s = sym(&r, "M_ZERO_DEP"));
	cr_expect_float_eq(s->score, 0.25, 1e-9);
	done(&r);
	unload(&l);
}

/* ---- files and directories ---- */

Test(rules, include_directory_in_name_order)
{
	const struct xm_symbol *s;
	struct loaded l;
	struct run r;

	load(&l, fixture("incdir/main.cf"));
	run(&r, &l, MSG("inc-a and inc-b"));
	cr_assert_not_null(s = sym(&r, "INC_A"));
	cr_expect_float_eq(s->score, 7.0, 1e-9);
	cr_expect(xm_task_has_symbol(&r.t, "INC_B"));
	done(&r);
	unload(&l);

	/* the files setting takes directories too */
	load(&l, fixture("incdir/sub"));
	run(&r, &l, MSG("inc-b"));
	cr_expect(xm_task_has_symbol(&r.t, "INC_B"));
	done(&r);
	unload(&l);
}

Test(rules, several_paths_and_missing_directories)
{
	struct loaded l;
	struct run r;
	char *files;

	make_tmpdir();
	files = xm_printf("%s,%s,%s/nothing.d,%s/local/", fixture("basic.cf"),
	    fixture("meta.cf"), tmpdir, tmpdir);
	load(&l, files);
	run(&r, &l, MSG("free money alpha bravo"));
	expect_symbols(&r, "T_BODY M_TWO", "", "two files");
	done(&r);
	unload(&l);
	free(files);

	/* an empty directory: no rules, no symbols, no error */
	load(&l, tmpdir);
	run(&r, &l, MSG("free money"));
	cr_expect_eq(r.t.nsymbols, 0);
	done(&r);
	unload(&l);

	/* a missing file is an error */
	files = xm_printf("%s/missing.cf", tmpdir);
	load_opts(&l, files, NULL);
	cr_expect_eq(l.rc, -1);
	cr_expect_not_null(strstr(l.err, "missing.cf: No such file"), "%s",
	    l.err);
	unload(&l);
	free(files);
	rm_tmpdir();
}

/* ---- errors: FILE:LINE: message ---- */

struct err_case {
	const char *text;      /* bad.cf */
	const char *expect;    /* substring of the error */
};

static const struct err_case err_cases[] = {
	{ "# comment\n\nbogus X /x/\n", "bad.cf:3: unknown directive \"bogus\"" },
	{ "body X /(/\n", "bad.cf:1: rule X: bad regex at offset 1: missing "
	  "closing parenthesis" },
	{ "body X /a)/\n", "bad.cf:1: rule X: bad regex at offset 1:" },
	{ "body X /x/q\n", "bad.cf:1: rule X: unknown regex flag 'q'" },
	{ "body X /x\n", "bad.cf:1: rule X: unterminated regex" },
	{ "body X x\n", "bad.cf:1: rule X: expected /regex/flags" },
	{ "body\n", "bad.cf:1: body: missing rule name" },
	{ "body X\n", "bad.cf:1: rule X: missing /regex/" },
	{ "body X //\n", "bad.cf:1: rule X: empty regex" },
	{ "body 9X /x/\n", "bad.cf:1: bad rule name" },
	{ "body X /x/\nscore X abc\n", "bad.cf:2: score X: \"abc\" is not a "
	  "number" },
	{ "body X /x/\nscore X\n", "bad.cf:2: score X: missing number" },
	{ "body X /x/\n\nscore NOPE 1\n", "bad.cf:3: score for unknown rule NOPE" },
	{ "describe NOPE text\n", "bad.cf:1: describe for unknown rule NOPE" },
	{ "tflags NOPE shadow\n", "bad.cf:1: tflags for unknown rule NOPE" },
	{ "body A /a/\nmeta M A && B\n", "bad.cf:2: meta M: unknown rule B" },
	{ "meta M1 M2\nmeta M2 M1 || M3\nmeta M3 !M1\n",
	  "bad.cf:1: meta M1: dependency cycle: M1 -> M2 -> M1" },
	{ "body A /a/\nmeta M1 A && M3\nmeta M2 M1\nmeta M3 M2\n",
	  "dependency cycle: M1 -> M3 -> M2 -> M1" },
	{ "meta M M\n", "bad.cf:1: meta M: refers to itself" },
	{ "body A /a/\nmeta M (A\n", "bad.cf:2: meta M: missing ')'" },
	{ "body A /a/\nmeta M A &&\n", "bad.cf:2: meta M: unexpected end" },
	{ "body A /a/\nmeta M A & A\n", "bad.cf:2: meta M: unexpected '&'" },
	{ "body A /a/\nmeta M A A\n", "bad.cf:2: meta M: unexpected \"A\"" },
	{ "meta M\n", "bad.cf:1: meta M: empty expression" },
	{ "body X /a/\nbody Y /b/\nrawbody X /c/\n",
	  "bad.cf:3: rule X already defined at " },
	{ "header H origin\n", "bad.cf:1: header H: missing =~ or !~" },
	{ "header H origin ~~ /x/\n", "bad.cf:1: header H: expected =~ or !~" },
	{ "header H exists:ip /x/\n", "bad.cf:1: header H: nothing may follow" },
	{ "header H stanza: =~ /x/\n", "bad.cf:1: header H: missing attribute" },
	{ "jid J sender =~ /x/\n", "bad.cf:1: jid J: \"sender\" is not from" },
	{ "include nothere.cf\n", "bad.cf:1: include " },
	{ "include loop-a.cf\n", "loop-b.cf:2: include loop" },
};

Test(rules, errors_name_file_and_line)
{
	struct loaded l;
	char *path, *a, *b;
	size_t i;

	make_tmpdir();
	a = write_tmp("loop-a.cf", "body LA /a/\ninclude loop-b.cf\n");
	b = write_tmp("loop-b.cf", "body LB /b/\ninclude loop-a.cf\n");
	for (i = 0; i < XM_ARRAY_LEN(err_cases); i++) {
		path = write_tmp("bad.cf", err_cases[i].text);
		load_opts(&l, path, NULL);
		cr_expect_eq(l.rc, -1, "case %zu loaded: %s", i,
		    err_cases[i].text);
		cr_expect_not_null(strstr(l.err, err_cases[i].expect),
		    "case %zu: want \"%s\", got \"%s\"", i, err_cases[i].expect,
		    l.err);
		/* the message starts with the file's path */
		cr_expect_eq(strncmp(l.err, tmpdir, strlen(tmpdir)), 0,
		    "case %zu: %s", i, l.err);
		unload(&l);
		free(path);
	}
	free(a);
	free(b);
	rm_tmpdir();
}

Test(rules, error_in_included_file)
{
	struct loaded l;
	char *path, *sub;

	make_tmpdir();
	sub = xm_printf("%s/inc", tmpdir);
	cr_assert_eq(mkdir(sub, 0700), 0);
	free(write_tmp("inc/10-ok.cf", "body OK /ok/\n"));
	free(write_tmp("inc/20-bad.cf", "body OK2 /ok/\n\nscore OK 1 2 3 4 5\n"));
	path = write_tmp("main.cf", "# main\ninclude inc\n");
	load_opts(&l, path, NULL);
	cr_expect_eq(l.rc, -1);
	cr_expect_not_null(strstr(l.err, "inc/20-bad.cf:3: score OK: at most "
	    "4 numbers"), "%s", l.err);
	unload(&l);
	free(path);
	free(sub);
	rm_tmpdir();
}

Test(rules, max_rules)
{
	static const char *const opts[] = { "max_rules=2", NULL };
	struct loaded l;
	char *path;

	path = write_tmp("many.cf", "body A /a/\nbody B /b/\nbody C /c/\n");
	load_opts(&l, path, opts);
	cr_expect_eq(l.rc, -1);
	cr_expect_not_null(strstr(l.err, "many.cf:3: more than 2 rules"), "%s",
	    l.err);
	unload(&l);
	free(path);
	rm_tmpdir();
}

Test(rules, max_uris)
{
	static const char *const opts[] = { "max_uris=1", NULL };
	struct loaded l;
	struct run r;
	char *path;

	path = write_tmp("u.cf", "uri FIRST m{first}\nuri SECOND m{second}\n");
	load_opts(&l, path, opts);
	cr_assert_eq(l.rc, 0, "%s", l.err);
	run(&r, &l, MSG("http://a.example/first http://b.example/second"));
	expect_symbols(&r, "FIRST", "SECOND", "max_uris=1");
	done(&r);
	unload(&l);

	load(&l, path);
	run(&r, &l, MSG("http://a.example/first http://b.example/second"));
	expect_symbols(&r, "FIRST SECOND", "", "default max_uris");
	done(&r);
	unload(&l);
	free(path);
	rm_tmpdir();
}

/* ---- limits: a catastrophic pattern must not hang ---- */

static void
catastrophic(const char *jit)
{
	const char *opts[] = { "match_limit=10000", jit, NULL };
	struct loaded l;
	struct run r;
	char *path, ev[512], as[64];
	double t0;

	memset(as, 'a', 40);
	as[40] = '\0';
	path = write_tmp("evil.cf",
	    "body EVIL /^(a+)+$/\nbody AFTER /b$/\n"
	    "header EVIL2 x-data =~ /^(\\w+\\s?)*$/\n");
	load_opts(&l, path, opts);
	cr_assert_eq(l.rc, 0, "%s", l.err);
	snprintf(ev, sizeof(ev), "origin=c2s\nx-data=%s!\n\n"
	    "<message from='a@example.org/r' to='b@example.org'><body>%sb"
	    "</body></message>", as, as);
	t0 = xm_monotonic();
	run(&r, &l, ev);
	cr_expect_lt(xm_monotonic() - t0, 2.0, "took too long");
	expect_symbols(&r, "RULES_LIMIT AFTER", "EVIL EVIL2", jit);
	cr_expect_float_eq(sym(&r, "RULES_LIMIT")->score, 0.0, 1e-9);
	done(&r);
	unload(&l);
	free(path);
	rm_tmpdir();
}

Test(rules, match_limit_jit)
{
	catastrophic("jit=true");
}

Test(rules, match_limit_interpreter)
{
	catastrophic("jit=false");
}

/* ---- concurrency: one state, several threads ---- */

struct thr {
	const struct loaded *l;
	int bad;
};

static void *
thr_main(void *arg)
{
	struct thr *th = arg;
	struct xm_event_limits lim;
	struct xm_event *ev;
	struct xm_arena *a;
	struct xm_task t;
	char err[128];
	size_t used;
	int i;
	static const char ev_text[] = MSG("alpha bravo http://203.0.113.9:8081/x "
	    "free money");

	xm_event_limits_default(&lim);
	for (i = 0; i < 2000; i++) {
		a = xm_arena_new();
		if (xm_event_parse(a, ev_text, sizeof(ev_text) - 1, &lim, &ev,
		    &used, err, sizeof(err)) != 0) {
			th->bad++;
			xm_arena_free(a);
			continue;
		}
		memset(&t, 0, sizeof(t));
		t.arena = a;
		t.ev = ev;
		rules_filter.check(th->l->state, &t);
		if (!xm_task_has_symbol(&t, "M_TWO") ||
		    !xm_task_has_symbol(&t, "T_BODY") ||
		    !xm_task_has_symbol(&t, "T_URI_TEXT"))
			th->bad++;
		xm_arena_free(a);
	}
	return NULL;
}

Test(rules, threads_share_state)
{
	struct thr th[4];
	pthread_t tid[4];
	struct loaded l;
	char *files;
	int i;

	files = xm_printf("%s,%s", fixture("basic.cf"), fixture("meta.cf"));
	load(&l, files);
	for (i = 0; i < 4; i++) {
		th[i].l = &l;
		th[i].bad = 0;
		cr_assert_eq(pthread_create(&tid[i], NULL, thr_main, &th[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		cr_expect_eq(th[i].bad, 0, "thread %d: %d bad checks", i,
		    th[i].bad);
	}
	unload(&l);
	free(files);
}

/* ---- the shipped rule set ---- */

static const char *const everyday[] = {
	"hi",
	"hello bob, how are you?",
	"lol",
	"see you at 5 at the station",
	"did you get the photos I sent yesterday?",
	"here are the holiday photos: https://photos.example.com/album/123",
	"is this you calling? my phone shows a number I don't know",
	"check out this article https://news.example.org/2026/11/story.html",
	"can you send me the report? thanks",
	"my password manager finally synced, yay",
	"I forgot my password again, I'll reset it",
	"the router is at http://192.168.1.1:8081/ if you need it",
	"ssh to 10.0.0.5 port 22, the usual",
	"meeting link: https://meet.example.com:8443/room-42",
	"let me check my calendar and get back to you",
	"https://www.youtube.com/watch?v=dQw4w9WgXcQ",
	"skype me later",
	"the admin said the server will be down tonight",
	"Are you free for lunch? Let's try the new place www.example.net",
	"I'll send the money for the tickets tomorrow",
	"Grüße aus Berlin! 😀",
	"call me at +1 555 0100",
	"pics or it didn't happen",
	"my new phone takes great pictures",
	"the build passed, see https://ci.example.org/job/42/console",
	"download it from https://example.org/releases/tool-1.2.tar.gz",
};

struct lure_case {
	const char *body;
	const char *want;
	double min_total;
};

static const struct lure_case lures[] = {
	{ "lol is this you in this photo? http://203.0.113.77:8180/photo.php",
	  "XM_LURE_LINK XM_LURE_BAD_LINK XM_URI_RAW_IP XM_URI_RAW_IP_PORT", 5 },
	{ "hey check out my pics www.example.net/pics/DSC0042.jpg.scr",
	  "XM_LURE_LINK XM_LURE_BAD_LINK XM_URI_DOUBLE_EXT XM_URI_EXECUTABLE", 5 },
	{ "haha u look funny in this picture http://grabify.link/ABC123",
	  "XM_LURE_LINK XM_LURE_BAD_LINK XM_URI_IP_LOGGER", 5 },
	{ "omg is that really you?? http://pics.example.biz/photo.php?u=bob",
	  "XM_LURE_LINK XM_LURE_BAD_LINK", 5 },
	{ "look at this http://198.51.100.23:3389/x", "XM_URI_RAW_IP_PORT", 1 },
	{ "your xmpp account has been suspended, verify your account here "
	  "https://xmpp-verify.example/login", "XM_PHISH_ACCOUNT", 3 },
	{ "Hello, this is the server admin. Please send me your password to "
	  "keep your account", "XM_PHISH_PASSWORD XM_PHISH_FAKE_STAFF", 4 },
	{ "open ms-msdt:/id PCWDiagnostic", "XM_WIN_HANDLER", 2 },
	{ "ip: 203.0.113.50 os: win10 open ports: 135,445", "XM_TROJAN_REPORT",
	  1 },
	{ "claim your free discord nitro now", "XM_GIFT_SCAM", 1 },
	{ "send 0.1 BTC to this wallet and get it back doubled",
	  "XM_CRYPTO_DOUBLE", 2 },
	{ "http://3232235777/x", "XM_URI_NUMERIC_HOST", 2 },
};

static const struct { const char *body, *sym; double score; } tokens[] = {
	{ "XMILTER-TEST-REJECT", "XM_TEST_REJECT", 100 },
	{ "please XMILTER-TEST-MODIFY this", "XM_TEST_MODIFY", 6 },
	{ "XMILTER-TEST-QUARANTINE", "XM_TEST_QUARANTINE", 12 },
	{ "XMILTER-TEST-DISCARD", "XM_TEST_DISCARD", 50 },
};

Test(rules, shipped_rules)
{
	const struct xm_symbol *s;
	struct xm_arena *a;
	struct loaded l;
	struct run r;
	char path[PATH_MAX], *ev;
	size_t i;

	snprintf(path, sizeof(path), "%s/etc/rules.d/10-shipped.cf", srcdir());
	load(&l, path);
	a = xm_arena_new();

	for (i = 0; i < XM_ARRAY_LEN(everyday); i++) {
		ev = xm_arena_printf(a, MSG("%s"), everyday[i]);
		run(&r, &l, ev);
		cr_expect_eq(r.t.nsymbols, 0, "everyday \"%s\" scored: %s",
		    everyday[i], symlist(&r));
		done(&r);
	}
	for (i = 0; i < XM_ARRAY_LEN(lures); i++) {
		ev = xm_arena_printf(a, MSG("%s"), lures[i].body);
		run(&r, &l, ev);
		expect_symbols(&r, lures[i].want, "", lures[i].body);
		cr_expect_geq(total(&r), lures[i].min_total, "\"%s\": %g < %g: %s",
		    lures[i].body, total(&r), lures[i].min_total, symlist(&r));
		cr_expect_lt(total(&r), 15, "\"%s\" would be rejected: %s",
		    lures[i].body, symlist(&r));
		done(&r);
	}
	for (i = 0; i < XM_ARRAY_LEN(tokens); i++) {
		ev = xm_arena_printf(a, MSG("%s"), tokens[i].body);
		run(&r, &l, ev);
		cr_assert_not_null(s = sym(&r, tokens[i].sym), "%s: %s",
		    tokens[i].body, symlist(&r));
		cr_expect_float_eq(s->score, tokens[i].score, 1e-9);
		cr_expect_eq(r.t.nsymbols, 1, "%s", symlist(&r));
		done(&r);
	}
	/* the lure line alone, without a link, is just chat */
	run(&r, &l, MSG("lol is this you in this photo?"));
	cr_expect_eq(r.t.nsymbols, 0, "%s", symlist(&r));
	done(&r);

	xm_arena_free(a);
	unload(&l);
}

/* the default files setting names the installed directories */
Test(rules, default_files_setting)
{
	const struct xm_setting *row;
	const struct xm_strlist *files;
	char err[256];
	void *conf;

	conf = xm_calloc(1, rules_filter.conf_size);
	cr_assert_eq(xm_settings_defaults(rules_filter.settings, conf, NULL,
	    err, sizeof(err)), 0, "%s", err);
	for (row = rules_filter.settings; row->name != NULL; row++)
		if (strcmp(row->name, "files") == 0)
			break;
	cr_assert_not_null(row->name);
	cr_assert_eq(row->type, XM_ST_PATHS);
	files = (const struct xm_strlist *)((char *)conf + row->offset);
	cr_assert_eq(files->n, 2);
	cr_expect_not_null(strstr(files->v[0], "/xmilter/rules.d"));
	cr_expect_not_null(strstr(files->v[1], "/xmilter/local.d"));
	xm_settings_free(rules_filter.settings, conf);
	free(conf);
}
