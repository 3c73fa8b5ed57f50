/*
 * test_links.c - unit tests of the links filter (filters/links.c)
 *
 * Table-driven: each case is a stanza, setting overrides, and the exact
 * set of LINKS_* symbols it must get (everyday chat and links must get
 * none). Other tests: list files (domains, =hosts, URL prefixes, patterns,
 * comments), their errors named FILE:LINE, a re-read after the file
 * changed (what SIGHUP does), allow lists winning, and the defanged body
 * the filter asks for. Each case owns its arena and config.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "config.h"
#include "testlib.h"
#include "xm.h"

extern const struct xm_filter_ops links_filter;

#define C2S "origin=c2s\nauth=alice@example.org\n\n"
#define MSG "<message from='alice@example.org/pc' to='bob@example.org' " \
	"type='chat' id='a1'>"
#define B(s) C2S MSG "<body>" s "</body></message>"
#define XHTML(b, x) C2S MSG "<body>" b "</body><html " \
	"xmlns='http://jabber.org/protocol/xhtml-im'><body " \
	"xmlns='http://www.w3.org/1999/xhtml'>" x "</body></html></message>"

struct lrun {
	struct xm_arena *a;
	struct xm_event *ev;
	void *conf, *state;
	struct xm_task t;
};

/* apply - "name=value;..." overrides */
static void
apply(void *conf, const char *set)
{
	char err[256], *copy, *item, *save, *eq;

	if (set == NULL)
		return;
	copy = xm_strdup(set);
	for (item = strtok_r(copy, ";", &save); item != NULL;
	    item = strtok_r(NULL, ";", &save)) {
		eq = strchr(item, '=');
		cr_assert_not_null(eq, "bad setting %s", item);
		*eq = '\0';
		cr_assert_eq(xm_settings_set(links_filter.settings, conf, item,
		    eq + 1, NULL, err, sizeof(err)), 0, "set %s: %s", item, err);
	}
	free(copy);
}

/* conf_new - defaults plus overrides */
static void *
conf_new(const char *set)
{
	char err[256];
	void *conf = xm_calloc(1, links_filter.conf_size);

	cr_assert_eq(xm_settings_defaults(links_filter.settings, conf, NULL,
	    err, sizeof(err)), 0, "defaults: %s", err);
	apply(conf, set);
	return conf;
}

/* setup - parse, configure, init, check */
static void
run(struct lrun *r, const char *text, const char *set)
{
	char err[256];

	memset(r, 0, sizeof(*r));
	r->a = xm_arena_new();
	r->ev = event(r->a, text);
	r->conf = conf_new(set);
	cr_assert_eq(links_filter.init(&r->state, r->conf, err, sizeof(err)),
	    0, "init: %s", err);
	r->t.arena = r->a;
	r->t.ev = r->ev;
	r->t.cur_filter = "links";
	links_filter.check(r->state, &r->t);
}

/* done - free what run made */
static void
done(struct lrun *r)
{
	links_filter.free(r->state);
	xm_settings_free(links_filter.settings, r->conf);
	free(r->conf);
	xm_arena_free(r->a);
}

/* names - the symbols as a sorted, space-separated line */
static char *
names(const struct lrun *r)
{
	const char *v[64];
	size_t n = r->t.nsymbols < 64 ? r->t.nsymbols : 64, i, j;
	struct xm_buf b = { 0 };
	char *s;

	for (i = 0; i < n; i++)
		v[i] = r->t.symbols[i].name;
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
			const char *x = v[j];
			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	for (i = 0; i < n; i++)
		xm_buf_printf(&b, "%s%s", i ? " " : "", v[i]);
	s = xm_arena_strdup(r->a, b.data ? b.data : "");
	xm_buf_free(&b);
	return s;
}

/* detail - the detail of symbol NAME, or NULL */
static const char *
detail(const struct lrun *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->t.nsymbols; i++)
		if (strcmp(r->t.symbols[i].name, name) == 0)
			return r->t.symbols[i].detail;
	return NULL;
}

struct lcase {
	const char *name;
	const char *text;
	const char *set;
	const char *want;   /* sorted symbol names */
};

static const struct lcase cases[] = {
	{ "plain chat", B("hello, lunch at 12:30?"), NULL, "" },
	{ "ordinary link", B("see https://www.debian.org/News/"), NULL, "" },
	{ "worm lure: raw IP, odd port",
	    B("lol is this you? http://203.0.113.66:8081/photo.php?id=bob"),
	    NULL, "LINKS_IP_HOST LINKS_ODD_PORT" },
	{ "private IP not scored by default",
	    B("printer at http://192.168.1.20/"), NULL, "" },
	{ "private IP scored with ip_private",
	    B("printer at http://192.168.1.20/"), "ip_private=true",
	    "LINKS_IP_HOST" },
	{ "decimal IP", B("http://3325256711/x"), NULL,
	    "LINKS_IP_HOST LINKS_IP_OBFUSCATED" },
	{ "executable download", B("update: https://files.example/Setup.EXE"),
	    NULL, "LINKS_EXECUTABLE" },
	{ "double extension", B("https://x.example/invoice.pdf.scr"), NULL,
	    "LINKS_EXECUTABLE" },
	{ "pdf is fine", B("https://x.example/invoice.pdf"), NULL, "" },
	{ "shortener", B("look bit.ly/3xYz"), NULL, "LINKS_SHORTENER" },
	{ "ip logger", B("https://grabify.link/ABC"), NULL, "LINKS_SHORTENER" },
	{ "userinfo trick", B("http://bank.example@evil.example/"), NULL,
	    "LINKS_USERINFO" },
	{ "handler scheme", B("add me: ymsgr:sendIM?worm"), NULL,
	    "LINKS_HANDLER" },
	{ "xmpp scheme allowed", B("join xmpp:room@conf.example?join"), NULL,
	    "" },
	{ "mixed-script host, protected brand",
	    B("login at https://p\xd0\xb0ypal.com/"),
	    "protected_domains=paypal.com",
	    "LINKS_LOOKALIKE LINKS_MIXED_SCRIPT" },
	{ "digit look-alike", B("http://paypa1.com/login"),
	    "protected_domains=paypal.com", "LINKS_LOOKALIKE" },
	{ "brand inside another domain",
	    B("http://paypal.com.secure-login.example/"),
	    "protected_domains=paypal.com", "LINKS_LOOKALIKE" },
	{ "the brand itself", B("https://www.paypal.com/"),
	    "protected_domains=paypal.com", "" },
	{ "same brand, other TLD", B("https://www.paypal.de/"),
	    "protected_domains=paypal.com", "" },
	{ "look-alike of the local domain",
	    B("reset your password at http://examp1e.org/reset"), NULL,
	    "LINKS_LOOKALIKE" },
	{ "all-Cyrillic IDN is not mixed",
	    B("http://\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80."
	    "\xd1\x80\xd1\x84/"), NULL, "" },
	{ "rich text: text names another host",
	    XHTML("x", "<a href='http://evil.example/'>https://bank.example/"
	    "</a>"), NULL, "LINKS_TEXT_MISMATCH" },
	{ "rich text: text names the same site",
	    XHTML("x", "<a href='https://www.bank.example/x'>bank.example</a>"),
	    NULL, "" },
	{ "block list: inline domain",
	    B("http://www.evil.example/x"), "block=evil.example",
	    "LINKS_BLOCKLIST" },
	{ "block list: not a parent's sibling",
	    B("http://notevil.example/x"), "block=evil.example", "" },
	{ "block list: =host only", B("http://www.evil.example/"),
	    "block==evil.example", "" },
	{ "block list: URL prefix", B("https://share.example/u/worm/pic"),
	    "block=https://share.example/u/worm", "LINKS_BLOCKLIST" },
	{ "block list: URL prefix at a boundary only",
	    B("https://share.example/u/wormhole"),
	    "block=https://share.example/u/worm", "" },
	{ "block list: pattern", B("http://x.example/free-iPhone"),
	    "block=/free-iphone/i", "LINKS_BLOCKLIST" },
	{ "block list: IDN entry matches punycode link",
	    B("http://xn--bcher-kva.example/"), "block=b\xc3\xbc" "cher.example",
	    "LINKS_BLOCKLIST" },
	{ "allow list wins", B("http://203.0.113.66:8081/x"),
	    "allow=203.0.113.66", "" },
	{ "status text", C2S "<presence from='alice@example.org/pc' "
	    "type='subscribe' to='bob@example.org'><status>add me "
	    "http://203.0.113.9:81/</status></presence>", NULL,
	    "LINKS_IP_HOST LINKS_ODD_PORT" },
	{ "invitation reason", C2S "<message from='room@conf.example' "
	    "to='bob@example.org'><x xmlns='http://jabber.org/protocol/muc#user'>"
	    "<invite from='alice@example.org'><reason>join "
	    "http://evil.example/x.jar</reason></invite></x></message>", NULL,
	    "LINKS_EXECUTABLE" },
	{ "out-of-band URL", C2S MSG "<body>file</body><x xmlns='jabber:x:oob'>"
	    "<url>http://198.51.100.20:8081/setup.exe</url></x></message>", NULL,
	    "LINKS_EXECUTABLE LINKS_IP_HOST LINKS_ODD_PORT" },
};

Test(links, table)
{
	struct lrun r;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		run(&r, cases[i].text, cases[i].set);
		cr_expect_str_eq(names(&r), cases[i].want, "%s", cases[i].name);
		done(&r);
	}
}

Test(links, details_and_counts)
{
	struct lrun r;

	run(&r, B("http://203.0.113.1:81/ http://203.0.113.2:82/"), NULL);
	cr_expect_str_eq(detail(&r, "LINKS_IP_HOST"), "203.0.113.1 (+1 more)");
	cr_expect_eq(r.t.nsymbols, 2);
	done(&r);
}

Test(links, defang_replaces_flagged_links_only)
{
	struct lrun r;

	run(&r, B("ok https://www.debian.org/ bad http://203.0.113.66:8081/p"),
	    NULL);
	cr_assert_not_null(r.t.new_bodies);
	cr_expect_str_eq(r.t.new_bodies[0],
	    "ok https://www.debian.org/ bad hxxp://203[.]0[.]113[.]66:8081/p");
	done(&r);
	run(&r, B("ok https://www.debian.org/ bad http://203.0.113.66:8081/p"),
	    "defang=all");
	cr_expect_str_eq(r.t.new_bodies[0],
	    "ok hxxps://www[.]debian[.]org/ bad hxxp://203[.]0[.]113[.]66:8081/p");
	done(&r);
	run(&r, B("bad http://203.0.113.66:8081/p"), "defang=off");
	cr_expect_null(r.t.new_bodies);
	done(&r);
	run(&r, B("nothing to see"), NULL);
	cr_expect_null(r.t.new_bodies);
	done(&r);
}

TestSuite(links_files, .init = mk_tmpdir, .fini = rm_tmpdir);

/* write_file - PATH gets TEXT */
static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

Test(links_files, block_file_and_reread)
{
	char path[PATH_MAX + 64], set[PATH_MAX + 128];
	struct lrun r;

	snprintf(path, sizeof(path), "%s/block.list", tmpdir);
	write_file(path, "# spam domains\n\nspam.example\n  *.worm.example  \n"
	    "=one.host.example\nhttp://share.example/bad/\n/casino[0-9]+/\n");
	snprintf(set, sizeof(set), "block_files=%s", path);

	run(&r, B("http://a.spam.example/"), set);
	cr_expect_str_eq(names(&r), "LINKS_BLOCKLIST");
	done(&r);
	run(&r, B("http://x.worm.example/"), set);
	cr_expect_str_eq(names(&r), "LINKS_BLOCKLIST");
	done(&r);
	run(&r, B("http://one.host.example/ http://two.host.example/"), set);
	cr_expect_str_eq(detail(&r, "LINKS_BLOCKLIST"),
	    "http://one.host.example/ (one.host.example)");
	done(&r);
	run(&r, B("http://share.example/bad/x.png"), set);
	cr_expect_str_eq(names(&r), "LINKS_BLOCKLIST");
	done(&r);
	run(&r, B("http://casino77.example/"), set);
	cr_expect(strstr(detail(&r, "LINKS_BLOCKLIST"), "block.list:7") != NULL);
	done(&r);

	/* what SIGHUP does: a new instance reads the changed file */
	write_file(path, "other.example\n");
	run(&r, B("http://a.spam.example/"), set);
	cr_expect_str_eq(names(&r), "");
	done(&r);
	run(&r, B("http://other.example/"), set);
	cr_expect_str_eq(names(&r), "LINKS_BLOCKLIST");
	done(&r);
}

Test(links_files, errors_name_file_and_line)
{
	char path[PATH_MAX + 64], set[PATH_MAX + 128], err[512];
	void *conf, *state = NULL;

	snprintf(path, sizeof(path), "%s/bad.list", tmpdir);
	write_file(path, "good.example\n# fine\nnot a domain\n");
	snprintf(set, sizeof(set), "block_files=%s", path);
	conf = conf_new(set);
	cr_expect_eq(links_filter.init(&state, conf, err, sizeof(err)), -1);
	cr_expect(strstr(err, "bad.list:3") != NULL, "%s", err);
	xm_settings_free(links_filter.settings, conf);
	free(conf);

	write_file(path, "/unclosed(/\n");
	conf = conf_new(set);
	cr_expect_eq(links_filter.init(&state, conf, err, sizeof(err)), -1);
	cr_expect(strstr(err, "bad.list:1: bad pattern") != NULL, "%s", err);
	xm_settings_free(links_filter.settings, conf);
	free(conf);

	snprintf(set, sizeof(set), "block_files=%s/missing.list", tmpdir);
	conf = conf_new(set);
	cr_expect_eq(links_filter.init(&state, conf, err, sizeof(err)), -1);
	cr_expect(strstr(err, "missing.list") != NULL, "%s", err);
	xm_settings_free(links_filter.settings, conf);
	free(conf);
}

Test(links_files, large_list)
{
	char path[PATH_MAX + 64], set[PATH_MAX + 128];
	struct lrun r;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "%s/big.list", tmpdir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	for (i = 0; i < 100000; i++)
		fprintf(f, "spam%d.example\n", i);
	fclose(f);
	snprintf(set, sizeof(set), "block_files=%s", path);
	run(&r, B("http://www.spam99999.example/ http://spam100000.example/"),
	    set);
	cr_expect_str_eq(detail(&r, "LINKS_BLOCKLIST"),
	    "http://www.spam99999.example/ (spam99999.example)");
	done(&r);
}
