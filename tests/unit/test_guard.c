/*
 * test_guard.c - unit tests of the guard filter (filters/guard.c)
 *
 * Table-driven: each case is an event built from text pieces (a piece may
 * be repeated, so floods stay short to write), optional setting overrides,
 * and the exact set of GUARD_* symbols it must get; clean everyday chat
 * must get none. Separate tests cover what the event parser cannot
 * produce (invalid UTF-8), symbol details and scores, severe measures,
 * the example events in tests/fixtures/guard (found through $top_srcdir,
 * else the current directory), and init errors.
 *
 * Each case owns an arena and a config, both freed at its end.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "config.h"
#include "event.h"
#include "xm.h"

extern const struct xm_filter_ops guard_filter;

#define C2S "origin=c2s\nauth=alice@example.org\nip=198.51.100.7\n"
#define S2S "origin=s2s\npeer=remote.example\nip=203.0.113.5\n"
#define COMP "origin=component\npeer=icq.example.org\n"

#define MSG "<message from='alice@example.org/pc' to='bob@example.org' " \
	"type='chat' id='a1'>"
#define HEAD MSG "<body>"
#define TAIL "</body></message>"
#define XHTML "<html xmlns='http://jabber.org/protocol/xhtml-im'>" \
	"<body xmlns='http://www.w3.org/1999/xhtml'>"
#define XTAIL "</body></html></message>"

struct piece {
	const char *s;
	int n;          /* times to repeat s; 0 counts as 1 */
};

struct gcase {
	const char *name;
	const char *env;       /* envelope lines; NULL: C2S */
	const char *set;       /* "name=value;name=value" overrides, or NULL */
	struct piece p[6];     /* the stanza */
	const char *want;      /* exactly these symbols, space-separated */
	const char *final;     /* expected final condition, NULL: no final */
};

/* a chat message with body text S (repeated N times) */
#define BODY(s) { { HEAD, 1 }, { s, 1 }, { TAIL, 1 } }
#define BODYN(s, n) { { HEAD, 1 }, { s, n }, { TAIL, 1 } }
/* a chat message with plain body B and rich body X */
#define RICH(b, x) { { HEAD b "</body>" XHTML, 1 }, { x, 1 }, { XTAIL, 1 } }
/* a whole stanza */
#define STANZA(s) { { s, 1 } }
/* a message from F */
#define FROM(f) STANZA("<message from='" f "' to='bob@example.org'>" \
	"<body>hi</body></message>")
#define SPOOF "GUARD_SPOOFED_FROM"
#define NA "not-authorized"

static struct gcase cases[] = {
	/* ---- everyday chat: nothing ---- */
	{ "hello", NULL, NULL, BODY("hello"), "", NULL },
	{ "one link and a smiley", NULL, NULL,
	    BODY("see https://example.org/page?id=3&amp;x=y :)"), "", NULL },
	{ "smileys and emoji", NULL, NULL,
	    BODY("ok :D \xf0\x9f\x91\x8d see you ;-) &lt;3 (y)"), "", NULL },
	{ "laughter", NULL, NULL, BODY("hahahahahaha lol!!! :'("), "", NULL },
	{ "times, labels, words with colons", NULL, NULL,
	    BODY("Meeting at 10:30, Note:Port 8080, re: your mail, C:\\temp"),
	    "", NULL },
	{ "arabic with marks", NULL, NULL,
	    BODY("\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \u200f "
	    "\xd9\x83\xd9\x8a\xd9\x81"), "", NULL },
	{ "hebrew in an embedding", NULL, NULL,
	    BODY("he said \u202b\u05e9\u05dc\u05d5\u05dd\u202c today"), "",
	    NULL },
	{ "persian with ZWNJ", NULL, NULL,
	    BODY("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"), "",
	    NULL },
	{ "percent-encoded UTF-8 link", NULL, NULL,
	    BODY("https://ru.wikipedia.org/wiki/"
	    "%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0_"
	    "%D0%9A%D1%80%D0%B5%D0%BC%D0%BB%D1%8C"
	    "%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0"), "", NULL },
	{ "emoji sequences", NULL, NULL,
	    BODY("\U0001F468\u200d\U0001F469\u200d\U0001F467 and "
	    "\U0001F3F3\ufe0f\u200d\U0001F308 and \U0001F1EB\U0001F1F7"
	    "\U0001F1E9\U0001F1EA \U0001F44D\U0001F3FD 1\ufe0f\u20e3"), "",
	    NULL },
	{ "forty different emoji", NULL, NULL,
	    BODYN("\U0001F600\U0001F601\U0001F602\U0001F923\U0001F603"
	    "\U0001F604\U0001F605\U0001F606", 5), "", NULL },
	{ "a short paste", NULL, NULL,
	    BODY("if (x) {\n    y();\n}\nelse {\n    z();\n}\n"), "", NULL },
	{ "long but ordinary", NULL, NULL, BODYN("abcdefghij", 900), "", NULL },
	{ "nine links", NULL, NULL,
	    BODYN("https://example.org/a and www.example.net ", 5), "", NULL },
	{ "one handler link", NULL, NULL,
	    BODY("call me: skype:alice?call or sip:alice@example.org"), "",
	    NULL },
	{ "xmpp and mailto", NULL, NULL,
	    BODY("xmpp:room@conference.example.org?join mailto:a@example.org"),
	    "", NULL },
	{ "a JID and an address", NULL, NULL,
	    BODY("write to alice@example.org/pc or bob@example.net"), "",
	    NULL },
	{ "rich text with a link and colour", NULL, NULL,
	    RICH("look https://example.org/",
	    "<p style='color: red; font-weight: bold'>look "
	    "<a href='https://example.org/'>here</a> "
	    "<img src='https://example.org/a.png' alt='pic'/></p>"), "", NULL },
	{ "rich text links are not counted twice", NULL, NULL,
	    { { HEAD, 1 }, { "https://example.org/x ", 9 },
	    { "</body>" XHTML, 1 },
	    { "<a href='https://example.org/x'>https://example.org/x</a> ", 9 },
	    { XTAIL, 1 } }, "", NULL },
	{ "presence with status", NULL, NULL,
	    STANZA("<presence from='alice@example.org/pc'><show>away</show>"
	    "<status>at lunch, back at 13:00 :)</status></presence>"), "",
	    NULL },
	{ "mediated invite", NULL, NULL,
	    STANZA("<message from='alice@example.org/pc' to='bob@example.org'>"
	    "<x xmlns='http://jabber.org/protocol/muc#user'>"
	    "<invite to='bob@example.org'><reason>join us</reason></invite>"
	    "<password>secret</password></x></message>"), "", NULL },
	{ "direct invite", NULL, NULL,
	    STANZA(MSG "<x xmlns='jabber:x:conference' "
	    "jid='room@conference.example.org' reason='come' password='pw'/>"
	    "</message>"), "", NULL },
	{ "file offer", NULL, NULL,
	    STANZA("<iq type='set' from='alice@example.org/pc' "
	    "to='bob@example.org/pc' id='s1'><si "
	    "xmlns='http://jabber.org/protocol/si' id='a0' "
	    "profile='http://jabber.org/protocol/si/profile/file-transfer'>"
	    "<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' "
	    "name='holiday.jpg' size='1022'/></si></iq>"), "", NULL },
	{ "body chars, not bytes", NULL, "max_body_chars=10",
	    BODY("\u00e9\u00e0\u00fc\u00f6\u00df"
	    "\u00e9\u00e0\u00fc\u00f6\u00df"), "", NULL },

	/* ---- sizes ---- */
	{ "stanza size", NULL, "max_stanza_bytes=100", BODY("hello there"),
	    "GUARD_STANZA_SIZE", NULL },
	{ "stanza size off", NULL, "max_stanza_bytes=-1", BODY("hello"), "",
	    NULL },
	{ "body long", NULL, NULL, BODYN("abcdefghij", 1200), "GUARD_BODY_LONG",
	    NULL },
	{ "body long in chars", NULL, "max_body_chars=10",
	    BODY("\u00e9\u00e0\u00fc\u00f6\u00df"
	    "\u00e9\u00e0\u00fc\u00f6\u00df!"),
	    "GUARD_BODY_LONG", NULL },
	{ "subject long", NULL, NULL,
	    { { MSG "<subject>", 1 }, { "abcdefghij", 60 },
	    { "</subject><body>hi</body></message>", 1 } },
	    "GUARD_SUBJECT_LONG", NULL },
	{ "text size", NULL, "max_text_bytes=50", BODYN("abcdefghij", 6),
	    "GUARD_TEXT_SIZE", NULL },
	{ "elements", NULL, "max_elements=5",
	    RICH("a", "<p><span>a</span><span>b</span></p>"),
	    "GUARD_ELEMENTS", NULL },
	{ "depth", NULL, NULL,
	    { { MSG "<x xmlns='urn:example:x'>", 1 }, { "<y>", 25 },
	    { "</y>", 25 }, { "</x></message>", 1 } }, "GUARD_DEPTH", NULL },
	{ "attributes", NULL, "max_attrs=3", BODY("hi"), "GUARD_ATTRS", NULL },

	/* ---- characters ---- */
	{ "C1 control", NULL, NULL, BODY("a\xc2\x85" "b"),
	    "GUARD_CONTROL_CHARS", NULL },
	{ "DEL", NULL, NULL, BODY("a\x7f" "b"), "GUARD_CONTROL_CHARS", NULL },
	{ "noncharacter", NULL, NULL, BODY("a\ufdd0b"), "GUARD_CONTROL_CHARS",
	    NULL },
	{ "controls allowed", NULL, "max_controls=2", BODY("a\xc2\x85" "b\x7f"),
	    "", NULL },
	{ "C1 in status", NULL, NULL,
	    STANZA("<presence><status>x\xc2\x9b" "31m</status></presence>"),
	    "GUARD_CONTROL_CHARS", NULL },
	{ "RLO file name trick in a body", NULL, NULL,
	    BODY("see invoice\u202efdp.exe"), "GUARD_BIDI_OVERRIDE", NULL },
	{ "bidi isolates in bulk", NULL, NULL,
	    BODYN("\u2067x\u2069 ", 6), "GUARD_BIDI_CONTROLS", NULL },
	{ "RLO in an offered file name", NULL, NULL,
	    STANZA("<iq type='set' from='alice@example.org/pc' "
	    "to='bob@example.org/pc' id='s1'><si "
	    "xmlns='http://jabber.org/protocol/si' id='a0' "
	    "profile='http://jabber.org/protocol/si/profile/file-transfer'>"
	    "<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' "
	    "name='invoice\u202efdp.exe' size='1022'/></si></iq>"),
	    "GUARD_BIDI_FILENAME", NULL },
	{ "zero-width in bulk", NULL, NULL, BODYN("a\u200b", 11),
	    "GUARD_ZERO_WIDTH", NULL },
	{ "zero-width few", NULL, NULL, BODYN("a\u200b", 3), "", NULL },
	{ "stray joiners", NULL, NULL, BODYN("a\u200d", 11), "GUARD_ZERO_WIDTH",
	    NULL },
	{ "tag characters smuggling text", NULL, NULL,
	    BODY("hi \U000E0069\U000E0067\U000E006E\U000E006F\U000E0072"
	    "\U000E0065"
	    "\U000E0020\U000E0061\U000E006C\U000E006C\U000E0021"),
	    "GUARD_ZERO_WIDTH", NULL },
	{ "subdivision flag", NULL, NULL,
	    BODY("\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067"
	    "\U000E007F go!"), "", NULL },
	{ "replacement character", NULL, NULL, BODY("caf\ufffd au lait"),
	    "GUARD_REPLACEMENT_CHAR", NULL },
	{ "private use in bulk", NULL, NULL, BODYN("\ue000\ue001", 9),
	    "GUARD_PRIVATE_USE", NULL },
	{ "private use few", NULL, NULL, BODY("logo \uf8ff"), "", NULL },

	/* ---- floods ---- */
	{ "emoticon flood", NULL, NULL,
	    BODYN(":) :D ;) &lt;3 (y) :-( ^^ :P \U0001F600 \U0001F389 ", 6),
	    "GUARD_EMOTICON_FLOOD", NULL },
	{ "emoji flood", NULL, NULL,
	    BODYN("\U0001F600\U0001F601\U0001F602\U0001F923\U0001F603"
	    "\U0001F604\U0001F605\U0001F606\U0001F609\U0001F60A", 6),
	    "GUARD_EMOTICON_FLOOD", NULL },
	{ "emoticon flood in rich text only", NULL, NULL,
	    { { HEAD "hi</body>" XHTML, 1 },
	    { ":) :D ;) &lt;3 (y) :-( ^^ :P \U0001F600 \U0001F389 ", 6 },
	    { XTAIL, 1 } }, "GUARD_EMOTICON_FLOOD", NULL },
	{ "one emoticon repeated", NULL, NULL, BODYN(":) ", 60),
	    "GUARD_EMOTICON_FLOOD GUARD_REPEATED", NULL },
	{ "one character repeated", NULL, NULL, BODYN("a", 150),
	    "GUARD_REPEATED", NULL },
	{ "short sequence repeated", NULL, NULL, BODYN("spam", 40),
	    "GUARD_REPEATED", NULL },
	{ "repeat limit", NULL, "max_repeat=200", BODYN("spam", 40), "", NULL },
	{ "many lines", NULL, NULL, BODYN("a\nb\nc\nd\ne\nf\ng\nh\ni\n", 25),
	    "GUARD_MANY_LINES", NULL },

	/* ---- links ---- */
	{ "too many links", NULL, NULL,
	    BODYN("see https://example.org/a and ", 11), "GUARD_URL_COUNT",
	    NULL },
	{ "links in text plus out-of-band", NULL, NULL,
	    { { HEAD, 1 }, { "http://example.org/ ", 9 },
	    { "</body><x xmlns='jabber:x:oob'><url>http://example.org/f"
	    "</url></x><x xmlns='jabber:x:oob'><url>http://example.org/g</url>"
	    "</x></message>", 1 } }, "GUARD_URL_COUNT", NULL },
	{ "long link", NULL, NULL,
	    { { HEAD "https://example.org/", 1 }, { "abcdefghij", 110 },
	    { " wow" TAIL, 1 } }, "GUARD_URL_LONG", NULL },
	{ "long link in rich text", NULL, NULL,
	    { { HEAD "hi</body>" XHTML "<a href='https://example.org/", 1 },
	    { "abcdefghij", 110 }, { "'>x</a>" XTAIL, 1 } },
	    "GUARD_URL_LONG", NULL },
	{ "obfuscated link", NULL, NULL,
	    { { HEAD "http://example.org/", 1 }, { "%2e%2f%3a%41%5c", 7 },
	    { TAIL, 1 } }, "GUARD_URL_OBFUSCATED", NULL },
	{ "odd characters in a link", NULL, NULL,
	    { { HEAD "http://example.org/", 1 }, { "a{b}c|d^e\\", 7 },
	    { TAIL, 1 } }, "GUARD_URL_OBFUSCATED", NULL },
	{ "protocol handlers in bulk", NULL, NULL,
	    BODY("aim:goim?screenname=a ymsgr:sendIM?b msnim:chat?contact=c "
	    "skype:d?call"), "GUARD_HANDLER_URLS", NULL },
	{ "protocol handlers in rich text", NULL, NULL,
	    RICH("click", "<a href='aim:goim?screenname=x'>1</a>"
	    "<a href='ymsgr:sendIM?y'>2</a><a href='callto:z'>3</a>"),
	    "GUARD_HANDLER_URLS", NULL },
	{ "handler list is configurable", NULL, "handler_schemes=foo,bar:",
	    BODY("foo:a bar:b foo:c"), "GUARD_HANDLER_URLS", NULL },
	{ "handler list replaced", NULL, "handler_schemes=foo",
	    BODY("aim:a aim:b aim:c"), "", NULL },

	/* ---- rich text ---- */
	{ "script element", NULL, NULL,
	    RICH("hi", "<p>hi<script>alert(1)</script></p>"),
	    "GUARD_XHTML_ELEMENT", NULL },
	{ "SCRIPT in capitals", NULL, NULL,
	    RICH("hi", "<SCRIPT>alert(1)</SCRIPT>"), "GUARD_XHTML_ELEMENT",
	    NULL },
	{ "iframe, object, embed, style", NULL, NULL,
	    RICH("hi", "<iframe/><object/><embed/><style>p{}</style>"),
	    "GUARD_XHTML_ELEMENT", NULL },
	{ "event attribute", NULL, NULL,
	    RICH("hi", "<img src='https://example.org/a.png' "
	    "onerror='alert(1)'/>"),
	    "GUARD_XHTML_EVENT_ATTR", NULL },
	{ "javascript href", NULL, NULL,
	    RICH("hi", "<a href='javascript:alert(1)'>x</a>"),
	    "GUARD_XHTML_SCHEME", NULL },
	{ "obscured javascript href", NULL, NULL,
	    RICH("hi", "<a href=' JaVa&#x09;Scr&#x0A;ipt:alert(1)'>x</a>"),
	    "GUARD_XHTML_SCHEME", NULL },
	{ "vbscript", NULL, NULL,
	    RICH("hi", "<a href='VBScript:msgbox(1)'>x</a>"),
	    "GUARD_XHTML_SCHEME", NULL },
	{ "data image", NULL, NULL,
	    RICH("hi", "<img src='data:image/png;base64,AAAA' alt='x'/>"),
	    "GUARD_XHTML_SCHEME", NULL },
	{ "dangerous list is configurable", NULL,
	    "dangerous_schemes=javascript",
	    RICH("hi", "<img src='data:image/png;base64,AAAA' alt='x'/>"),
	    "", NULL },
	{ "css expression", NULL, NULL,
	    RICH("hi", "<span style='width: expression(alert(1))'>x</span>"),
	    "GUARD_XHTML_CSS", NULL },
	{ "css expression escaped", NULL, NULL,
	    RICH("hi", "<span style='width: e\\78 pr/**/ession(alert(1))'>"
	    "x</span>"),
	    "GUARD_XHTML_CSS", NULL },
	{ "css url javascript", NULL, NULL,
	    RICH("hi", "<span style='background: url(\"javascript:alert(1)\")'>"
	    "x</span>"), "GUARD_XHTML_CSS", NULL },
	{ "css url data", NULL, NULL,
	    RICH("hi", "<span "
	    "style='background:url( data:image/png;base64,AA)'>"
	    "x</span>"), "GUARD_XHTML_CSS", NULL },
	{ "css url https", NULL, NULL,
	    RICH("hi", "<span "
	    "style='background:url(https://example.org/a.png)'>"
	    "x</span>"), "", NULL },
	{ "rich checks off", NULL, "check_xhtml=false",
	    RICH("hi", "<script>alert(1)</script><a href='javascript:x'>y</a>"),
	    "", NULL },

	/* ---- invitations ---- */
	{ "many invitations", NULL, NULL,
	    { { "<message from='alice@example.org/pc' to='bob@example.org'>"
	    "<x xmlns='http://jabber.org/protocol/muc#user'>", 1 },
	    { "<invite to='c@example.org'/>", 6 }, { "</x></message>", 1 } },
	    "GUARD_INVITE_COUNT", NULL },
	{ "long invitation reason", NULL, NULL,
	    { { "<message from='alice@example.org/pc' to='bob@example.org'>"
	    "<x xmlns='http://jabber.org/protocol/muc#user'>"
	    "<invite to='c@example.org'><reason>", 1 }, { "abcdefghij", 60 },
	    { "</reason></invite></x></message>", 1 } },
	    "GUARD_INVITE_REASON", NULL },
	{ "long invitation password", NULL, NULL,
	    { { MSG "<x xmlns='jabber:x:conference' "
	    "jid='room@conference.example.org' password='", 1 },
	    { "abcdefghij", 20 }, { "'/></message>", 1 } },
	    "GUARD_INVITE_PASSWORD", NULL },
	{ "invitation reason with a control", NULL, NULL,
	    STANZA(MSG "<x xmlns='jabber:x:conference' "
	    "jid='room@conference.example.org' reason='x\xc2\x80y'/>"
	    "</message>"),
	    "GUARD_CONTROL_CHARS", NULL },

	/* ---- spoofed from ---- */
	{ "c2s other account", NULL, NULL, FROM("mallory@example.org/pc"),
	    SPOOF, NA },
	{ "c2s server domain", NULL, NULL, FROM("example.org"), SPOOF, NA },
	{ "c2s own bare JID", NULL, NULL, FROM("alice@example.org"), "", NULL },
	{ "c2s case differs", NULL, NULL, FROM("Alice@Example.ORG/Phone"), "",
	    NULL },
	{ "c2s no from", NULL, NULL,
	    STANZA("<message to='bob@example.org'><body>hi</body></message>"),
	    "", NULL },
	{ "c2s spoof scored only", NULL, "spoof_action=score",
	    FROM("mallory@example.org/pc"), SPOOF, NULL },
	{ "c2s spoof check off", NULL, "spoof_action=off",
	    FROM("mallory@example.org/pc"), "", NULL },
	{ "c2s spoof condition", NULL, "spoof_condition=invalid-from",
	    FROM("mallory@example.org/pc"), SPOOF, "invalid-from" },
	{ "s2s from the peer", S2S, NULL, FROM("carol@remote.example/x"), "",
	    NULL },
	{ "s2s from the peer itself", S2S, NULL,
	    STANZA("<presence from='remote.example' to='bob@example.org' "
	    "type='probe'/>"), "", NULL },
	{ "s2s from another domain", S2S, NULL, FROM("carol@evil.example/x"),
	    SPOOF, NA },
	{ "s2s from a subdomain", S2S, NULL, FROM("carol@muc.remote.example"),
	    SPOOF, NA },
	{ "s2s multiplexed peers",
	    "origin=s2s\npeer=a.example\npeer=remote.example\n", NULL,
	    FROM("carol@remote.example/x"), "", NULL },
	{ "component own domain", COMP, NULL, FROM("12345@icq.example.org"),
	    "", NULL },
	{ "component subdomain", COMP, NULL, FROM("x@room.icq.example.org"),
	    "", NULL },
	{ "component other domain", COMP, NULL, FROM("admin@example.org"),
	    SPOOF, NA },
	{ "component look-alike suffix", COMP, NULL,
	    FROM("x@evilicq.example.org"), SPOOF, NA },
	{ "server origin not checked", "origin=server\n", NULL,
	    FROM("anyone@anywhere.example"), "", NULL },
};

struct guard_run {
	struct xm_arena *a;
	struct xm_event *ev;
	void *conf;
	void *state;
	struct xm_task t;
};

/* apply - "name=value;name=value" settings onto CONF */
static void
apply(void *conf, const char *set, const char *name)
{
	char err[256], *copy, *item, *save, *eq;

	if (set == NULL)
		return;
	copy = xm_strdup(set);
	for (item = strtok_r(copy, ";", &save); item != NULL;
	    item = strtok_r(NULL, ";", &save)) {
		eq = strchr(item, '=');
		cr_assert_not_null(eq, "%s: bad setting %s", name, item);
		*eq = '\0';
		cr_assert_eq(xm_settings_set(guard_filter.settings, conf, item,
		    eq + 1, NULL, err, sizeof(err)), 0, "%s: set %s: %s", name,
		    item, err);
	}
	free(copy);
}

/* setup - parse TEXT, configure, init: ready to check */
static void
setup(struct guard_run *r, const char *text, const char *set,
    const char *name)
{
	struct xm_event_limits lim;
	char err[256];
	size_t used;

	memset(r, 0, sizeof(*r));
	r->a = xm_arena_new();
	xm_event_limits_default(&lim);
	cr_assert_eq(xm_event_parse(r->a, text, strlen(text), &lim, &r->ev,
	    &used, err, sizeof(err)), 0, "%s: parse: %s", name, err);
	r->conf = xm_calloc(1, guard_filter.conf_size);
	cr_assert_eq(xm_settings_defaults(guard_filter.settings, r->conf, NULL,
	    err, sizeof(err)), 0, "%s: defaults: %s", name, err);
	apply(r->conf, set, name);
	cr_assert_eq(guard_filter.init(&r->state, r->conf, err, sizeof(err)), 0,
	    "%s: init: %s", name, err);
	r->t.arena = r->a;
	r->t.ev = r->ev;
	r->t.now = 0;
	r->t.cur_filter = "guard";
}

/* teardown - free what setup made */
static void
teardown(struct guard_run *r)
{
	guard_filter.free(r->state);
	xm_settings_free(guard_filter.settings, r->conf);
	free(r->conf);
	xm_arena_free(r->a);
}

/* symbols - the task's symbols as one line, for failure messages */
static const char *
symbols(const struct guard_run *r)
{
	struct xm_buf b = { 0 };
	const char *s;
	size_t i;

	for (i = 0; i < r->t.nsymbols; i++)
		xm_buf_printf(&b, "%s%s(%g: %s)", i ? " " : "",
		    r->t.symbols[i].name, r->t.symbols[i].score,
		    r->t.symbols[i].detail ? r->t.symbols[i].detail : "");
	s = xm_arena_strdup(r->a, b.data != NULL ? b.data : "");
	xm_buf_free(&b);
	return s;
}

/* event_text - the case's envelope and stanza pieces as one event */
static char *
event_text(const struct gcase *c)
{
	struct xm_buf b = { 0 };
	size_t i;
	int k;

	xm_buf_puts(&b, c->env != NULL ? c->env : C2S);
	xm_buf_puts(&b, "\n");
	for (i = 0; i < XM_ARRAY_LEN(c->p) && c->p[i].s != NULL; i++)
		for (k = 0; k < (c->p[i].n > 0 ? c->p[i].n : 1); k++)
			xm_buf_puts(&b, c->p[i].s);
	return b.data;
}

/* run_case - check one case: exactly the wanted symbols, and the final */
static void
run_case(const struct gcase *c)
{
	struct guard_run r;
	char *text = event_text(c), *want = xm_strdup(c->want), *tok, *save;
	size_t nwant = 0;

	setup(&r, text, c->set, c->name);
	guard_filter.check(r.state, &r.t);
	for (tok = strtok_r(want, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		nwant++;
		cr_expect(xm_task_has_symbol(&r.t, tok),
		    "%s: want %s, got [%s]", c->name, tok, symbols(&r));
	}
	cr_expect_eq(r.t.nsymbols, nwant, "%s: want [%s], got [%s]", c->name,
	    c->want, symbols(&r));
	if (c->final != NULL) {
		cr_expect(r.t.final, "%s: no final result", c->name);
		cr_expect_eq(r.t.final_action, XM_REJECT, "%s: not a reject",
		    c->name);
		cr_expect_str_eq(r.t.final_condition ? r.t.final_condition : "",
		    c->final, "%s: condition", c->name);
	} else
		cr_expect(!r.t.final, "%s: unexpected final result", c->name);
	free(want);
	free(text);
	teardown(&r);
}

/*
 * Criterion may run a test in a freshly started process, where pointers
 * taken in the parent mean nothing: pass the index of a case, not the case.
 */
ParameterizedTestParameters(guard, cases)
{
	static size_t idx[XM_ARRAY_LEN(cases)];
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(cases); i++)
		idx[i] = i;
	return cr_make_param_array(size_t, idx, XM_ARRAY_LEN(idx));
}

ParameterizedTest(size_t *i, guard, cases)
{
	run_case(&cases[*i]);
}

/* detail - the detail of symbol NAME, or NULL */
static const char *
detail(const struct guard_run *r, const char *name, double *score)
{
	size_t i;

	for (i = 0; i < r->t.nsymbols; i++) {
		if (strcmp(r->t.symbols[i].name, name) == 0) {
			if (score != NULL)
				*score = r->t.symbols[i].score;
			return r->t.symbols[i].detail;
		}
	}
	return NULL;
}

Test(guard, details_say_measure_and_limit)
{
	struct guard_run r;
	struct xm_buf b = { 0 };
	const char *d;
	double score = 0;
	int i;

	xm_buf_puts(&b, C2S "\n" HEAD);
	for (i = 0; i < 1200; i++)
		xm_buf_puts(&b, "abcdefghij");
	xm_buf_puts(&b, TAIL);
	setup(&r, b.data, "score_body_long=1.5", "details");
	guard_filter.check(r.state, &r.t);
	d = detail(&r, "GUARD_BODY_LONG", &score);
	cr_assert_not_null(d);
	cr_expect_str_eq(d, "body 12000 chars > 10000");
	cr_expect_float_eq(score, 1.5, 1e-9);
	teardown(&r);
	xm_buf_free(&b);

	setup(&r, C2S "\n" HEAD "see invoice\u202efdp.exe" TAIL, NULL, "bidi");
	guard_filter.check(r.state, &r.t);
	d = detail(&r, "GUARD_BIDI_OVERRIDE", &score);
	cr_assert_not_null(d);
	cr_expect_str_eq(d, "1 bidi overrides in body (first U+202E) > 0");
	cr_expect_float_eq(score, 4, 1e-9);
	teardown(&r);

	setup(&r, C2S "\n<message from='mallory@example.org/pc'><body>x</body>"
	    "</message>", NULL, "spoof");
	guard_filter.check(r.state, &r.t);
	d = detail(&r, "GUARD_SPOOFED_FROM", &score);
	cr_assert_not_null(d);
	cr_expect_str_eq(d, "from mallory@example.org/pc on the c2s session of "
	    "alice@example.org");
	cr_expect_float_eq(score, 10, 1e-9);
	cr_expect_str_eq(r.t.final_text, "sender address does not match the "
	    "session");
	teardown(&r);
}

Test(guard, severe_measures_score_more)
{
	struct guard_run r;
	struct xm_buf b = { 0 };
	const char *d;
	double score = 0;
	int i;

	xm_buf_puts(&b, C2S "\n" HEAD);
	for (i = 0; i < 60; i++)
		xm_buf_puts(&b, "\U0001F600\U0001F601\U0001F602\U0001F923"
		    "\U0001F603\U0001F604\U0001F605\U0001F606\U0001F609"
		    "\U0001F60A");
	xm_buf_puts(&b, TAIL);

	setup(&r, b.data, "max_emoticons=50", "severe");
	guard_filter.check(r.state, &r.t);
	d = detail(&r, "GUARD_EMOTICON_FLOOD", &score);
	cr_assert_not_null(d, "got [%s]", symbols(&r));
	cr_expect_str_eq(d, "600 emoticons in body > 50, severe");
	cr_expect_float_eq(score, 4 + 10, 1e-9);
	teardown(&r);

	setup(&r, b.data, "severe_factor=-1", "severe off");
	guard_filter.check(r.state, &r.t);
	d = detail(&r, "GUARD_EMOTICON_FLOOD", &score);
	cr_assert_not_null(d, "got [%s]", symbols(&r));
	cr_expect_str_eq(d, "600 emoticons in body > 50");
	cr_expect_float_eq(score, 4, 1e-9);
	teardown(&r);

	/* a limit of 0: severe past severe_factor itself */
	setup(&r, C2S "\n" HEAD "\u202e\u202e\u202e\u202e\u202e\u202e"
	    "\u202e\u202e\u202e\u202e\u202e" TAIL, "score_severe=1",
	    "severe zero");
	guard_filter.check(r.state, &r.t);
	d = detail(&r, "GUARD_BIDI_OVERRIDE", &score);
	cr_assert_not_null(d, "got [%s]", symbols(&r));
	cr_expect_str_eq(d, "11 bidi overrides in body (first U+202E) > 0, "
	    "severe");
	cr_expect_float_eq(score, 4 + 1, 1e-9);
	teardown(&r);
	xm_buf_free(&b);
}

/*
 * The fixtures in tests/fixtures/guard are examples for operators and
 * for `xmilter check`: keep them saying what docs/GUARD.md says they do.
 */
Test(guard, fixtures)
{
	static const struct {
		const char *file;
		const char *want;
		bool final;
	} fx[] = {
		{ "clean-chat.event", "", false },
		{ "component-subdomain.event", "", false },
		{ "emoticon-flood.event", "GUARD_EMOTICON_FLOOD", false },
		{ "handler-links.event", "GUARD_HANDLER_URLS", false },
		{ "invisible-text.event",
		    "GUARD_BIDI_OVERRIDE GUARD_ZERO_WIDTH", false },
		{ "rlo-filename.event", "GUARD_BIDI_FILENAME", false },
		{ "spoofed-c2s.event", "GUARD_SPOOFED_FROM", true },
		{ "spoofed-s2s.event", "GUARD_SPOOFED_FROM", true },
		{ "xhtml-script.event", "GUARD_XHTML_ELEMENT "
		    "GUARD_XHTML_EVENT_ATTR GUARD_XHTML_SCHEME GUARD_XHTML_CSS",
		    false },
	};
	const char *top = getenv("top_srcdir");
	struct guard_run r;
	char path[4096], *text, *want, *tok, *save;
	size_t i, n, len;
	FILE *fp;

	for (i = 0; i < XM_ARRAY_LEN(fx); i++) {
		snprintf(path, sizeof(path), "%s/tests/fixtures/guard/%s",
		    top != NULL ? top : ".", fx[i].file);
		fp = fopen(path, "rb");
		cr_assert_not_null(fp, "cannot open %s", path);
		text = xm_malloc(1 << 16);
		len = fread(text, 1, (1 << 16) - 1, fp);
		text[len] = '\0';
		fclose(fp);

		setup(&r, text, NULL, fx[i].file);
		guard_filter.check(r.state, &r.t);
		want = xm_strdup(fx[i].want);
		n = 0;
		for (tok = strtok_r(want, " ", &save); tok != NULL;
		    tok = strtok_r(NULL, " ", &save), n++)
			cr_expect(xm_task_has_symbol(&r.t, tok), "%s: want %s, "
			    "got [%s]", fx[i].file, tok, symbols(&r));
		cr_expect_eq(r.t.nsymbols, n, "%s: got [%s]", fx[i].file,
		    symbols(&r));
		cr_expect_eq(r.t.final, fx[i].final, "%s: final", fx[i].file);
		free(want);
		free(text);
		teardown(&r);
	}
}

Test(guard, invalid_utf8_in_a_text)
{
	struct guard_run r;

	/* expat never lets it through; a buggy producer of the view might */
	setup(&r, C2S "\n" HEAD "hello" TAIL, NULL, "utf8");
	r.ev->bodies[0].text = "bad \xff\xfe bytes \xc0\xaf";
	guard_filter.check(r.state, &r.t);
	cr_expect(xm_task_has_symbol(&r.t, "GUARD_BAD_UTF8"), "got [%s]",
	    symbols(&r));
	teardown(&r);

	setup(&r, C2S "\n" HEAD "hello" TAIL, NULL, "utf8 cut");
	r.ev->bodies[0].text = "cut \xe2\x82";
	guard_filter.check(r.state, &r.t);
	cr_expect(xm_task_has_symbol(&r.t, "GUARD_BAD_UTF8"), "got [%s]",
	    symbols(&r));
	teardown(&r);

	setup(&r, C2S "\n" HEAD "hello" TAIL, NULL, "utf8 ok");
	guard_filter.check(r.state, &r.t);
	cr_expect_eq(r.t.nsymbols, 0, "got [%s]", symbols(&r));
	teardown(&r);
}

Test(guard, init_refuses_bad_lists)
{
	static const char *const bad[] = {
		"handler_schemes=1aim", "handler_schemes=ai m",
		"dangerous_schemes=java_script", "dangerous_schemes=:",
	};
	char err[256];
	void *conf, *state;
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(bad); i++) {
		conf = xm_calloc(1, guard_filter.conf_size);
		cr_assert_eq(xm_settings_defaults(guard_filter.settings, conf,
		    NULL, err, sizeof(err)), 0, "%s", err);
		apply(conf, bad[i], bad[i]);
		err[0] = '\0';
		cr_expect_eq(guard_filter.init(&state, conf, err,
		    sizeof(err)), -1, "%s accepted", bad[i]);
		cr_expect_neq(err[0], '\0', "%s: no message", bad[i]);
		xm_settings_free(guard_filter.settings, conf);
		free(conf);
	}
}

Test(guard, settings_are_documented)
{
	const struct xm_setting *s;
	size_t n = 0;

	cr_expect_str_eq(guard_filter.name, "guard");
	cr_expect_eq(guard_filter.abi, XM_FILTER_ABI);
	cr_expect_eq(guard_filter.flags, 0);
	for (s = guard_filter.settings; s->name != NULL; s++, n++) {
		cr_expect(s->doc != NULL && strlen(s->doc) > 10, "%s: no doc",
		    s->name);
		cr_expect(s->def != NULL, "%s: no default", s->name);
		cr_expect_lt(s->offset, guard_filter.conf_size, "%s", s->name);
	}
	cr_expect_gt(n, 40);
}
