/*
 * test_transfer.c - unit tests of the transfer filter (filters/transfer.c)
 *
 * Table-driven: each case is an event (envelope + one stanza built with
 * the SI/JINGLE/OOB/UPLOAD/IBB macros), optional setting overrides, the
 * exact set of TRANSFER_* symbols it must get, and whether the filter ends
 * the chain. Sequences (repeat offers, fan-out) run several events through
 * one state with event times as the clock. Separate tests cover the
 * bad-hash files (hex, base64, sha256sum format, errors with file:line),
 * the texts the sender sees, init errors and the table's eviction bound.
 *
 * Each case owns an arena, a config and a state, all freed at its end;
 * the process-global repeat/fan-out table is emptied before each test.
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
#include "testlib.h"

extern const struct xm_filter_ops transfer_filter;
void transfer_state_reset(void);
size_t transfer_state_count(void);

#define C2S "origin=c2s\nauth=alice@example.org\n"
#define S2S "origin=s2s\npeer=remote.example\n"
#define COMP "origin=component\npeer=icq.example.org\n"

#define IQ(from, to) "<iq from='" from "' to='" to "' type='set' id='i1'>"
#define AB IQ("alice@example.org/pc", "bob@example.org/phone")

/* an SI offer of NAME, media type TYPE ("" none), SIZE */
#define SI_(hdr, name, type, size) hdr \
	"<si xmlns='http://jabber.org/protocol/si' id='s1' " type \
	" profile='http://jabber.org/protocol/si/profile/file-transfer'>" \
	"<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' " \
	"name='" name "' size='" size "'/></si></iq>"
#define SI(name) SI_(AB, name, "", "1000")
#define SIT(name, type) SI_(AB, name, "mime-type='" type "'", "1000")
/* a Jingle offer */
#define JINGLE_(hdr, name, extra) hdr \
	"<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' " \
	"sid='j1'><content creator='initiator' name='f'><description " \
	"xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>" name \
	"</name>" extra "</file></description></content></jingle></iq>"
#define JINGLE(name) JINGLE_(AB, name, "<size>1000</size>")
#define HASH(algo, v) "<hash xmlns='urn:xmpp:hashes:2' algo='" algo "'>" \
	v "</hash>"
/* an OOB iq and an OOB message */
#define OOB(url) AB "<query xmlns='jabber:iq:oob'><url>" url \
	"</url></query></iq>"
#define OOBD(url, desc) AB "<query xmlns='jabber:iq:oob'><url>" url \
	"</url><desc>" desc "</desc></query></iq>"
#define OOBMSG(url) "<message from='carol@remote.example/x' " \
	"to='bob@example.org' type='chat'><body>x</body><x " \
	"xmlns='jabber:x:oob'><url>" url "</url></x></message>"
/* an upload slot request */
#define UPLOAD(name, size, type) "<iq from='alice@example.org/pc' " \
	"to='upload.example.org' type='get' id='u1'><request " \
	"xmlns='urn:xmpp:http:upload:0' filename='" name "' size='" size \
	"' content-type='" type "'/></iq>"
#define IBB_OPEN AB "<open xmlns='http://jabber.org/protocol/ibb' " \
	"block-size='4096' sid='b1' stanza='iq'/></iq>"
#define IBB_DATA AB "<data xmlns='http://jabber.org/protocol/ibb' " \
	"seq='0' sid='b1'>SGVsbG8=</data></iq>"

#define EXE "TRANSFER_EXECUTABLE"
#define DBL "TRANSFER_DOUBLE_EXT"
#define RLO "TRANSFER_RLO"
#define TRICK "TRANSFER_NAME_TRICK"
#define RISKY "TRANSFER_RISKY_EXT"
#define MISM "TRANSFER_TYPE_MISMATCH"
#define BIG "TRANSFER_TOO_BIG"
#define OFF "TRANSFER_DISABLED"
#define NOTALLOWED "TRANSFER_EXT_NOT_ALLOWED"
#define SCHEME "TRANSFER_OOB_SCHEME"

struct tcase {
	const char *name;
	const char *env;       /* envelope lines; NULL: C2S */
	const char *set;       /* "name=value;name=value" overrides, or NULL */
	const char *stanza;
	const char *want;      /* exactly these symbols, space-separated */
	bool final;            /* the filter ends the chain with a reject */
};

static struct tcase cases[] = {
	/* ---- ordinary files pass ---- */
	{ "report.pdf", NULL, NULL, SI("report.pdf"), "", false },
	{ "report.pdf jingle", NULL, NULL, JINGLE("report.pdf"), "", false },
	{ "photo with type", NULL, NULL, SIT("photo.jpg", "image/jpeg"), "",
	    false },
	{ "type with parameters and case", NULL, NULL,
	    SIT("notes.txt", "Text/Plain; charset=utf-8"), "", false },
	{ "tarball", NULL, "risky_extensions=zip", SI("src.tar.gz"), "",
	    false },
	{ "dots in a name", NULL, NULL, SI("v1.2.3 release notes.pdf"), "",
	    false },
	{ "no extension", NULL, NULL, SI("README"), "", false },
	{ "hebrew name", NULL, NULL,
	    SI("\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d.docx"), "", false },
	{ "octet-stream is no mismatch", NULL, NULL,
	    SIT("a.pdf", "application/octet-stream"), "", false },
	{ "unknown extension is not compared", NULL, NULL,
	    SIT("model.stl", "model/stl"), "", false },
	{ "oob pdf link", S2S, NULL,
	    OOB("https://files.remote.example/share/report.pdf"), "", false },
	{ "oob message link", S2S, NULL,
	    OOBMSG("https://files.remote.example/x/photo.jpg"), "", false },
	{ "upload of a picture", NULL, NULL,
	    UPLOAD("photo.jpg", "23456", "image/jpeg"), "", false },
	{ "ibb open", NULL, NULL, IBB_OPEN, "", false },
	{ "ibb data", NULL, NULL, IBB_DATA, "", false },

	/* ---- executables and scripts ---- */
	{ ".exe", NULL, NULL, SI("setup.exe"), EXE, true },
	{ ".EXE in capitals", NULL, NULL, SI("SETUP.EXE"), EXE, true },
	{ ".scr", NULL, NULL, SI("screensaver.scr"), EXE, true },
	{ ".bat", NULL, NULL, JINGLE("run.bat"), EXE, true },
	{ ".cmd", NULL, NULL, SI("x.cmd"), EXE, true },
	{ ".js", NULL, NULL, SI("invoice.js"), EXE, true },
	{ ".vbs", NULL, NULL, SI("love-letter.vbs"), EXE, true },
	{ ".jar", NULL, NULL, SI("game.jar"), EXE, true },
	{ ".ps1", NULL, NULL, SI("fix.ps1"), EXE, true },
	{ ".lnk", NULL, NULL, SI("Documents.lnk"), EXE, true },
	{ ".msi", NULL, NULL, SI("update.msi"), EXE, true },
	{ ".hta", NULL, NULL, SI("page.hta"), EXE, true },
	{ ".pif", NULL, NULL, SI("old.pif"), EXE, true },
	{ ".com", NULL, NULL, SI("command.com"), EXE, true },
	{ "executable type, harmless name", NULL, NULL,
	    SIT("holiday.jpg", "application/x-msdownload"), EXE " " MISM,
	    true },
	{ "executable in jingle", NULL, NULL,
	    JINGLE_(AB, "tool.exe", "<media-type>application/x-dosexec"
	    "</media-type>"), EXE, true },
	{ "exe upload", NULL, NULL,
	    UPLOAD("setup.exe", "1000", "application/octet-stream"), EXE,
	    true },
	{ "exe with executable type", NULL, NULL,
	    SIT("setup.exe", "application/x-msdownload"), EXE, true },
	{ "exe declared as a picture", NULL, NULL,
	    SIT("setup.exe", "image/jpeg"), EXE " " MISM, true },
	{ "block list emptied", NULL, "block_extensions=", SI("setup.exe"),
	    "", false },
	{ "executable scores only", NULL,
	    "final_symbols=TRANSFER_DISABLED", SI("setup.exe"), EXE, false },

	/* ---- double extensions ---- */
	{ "photo.jpg.exe", NULL, NULL, SI("photo.jpg.exe"), EXE " " DBL,
	    true },
	{ "report.pdf.scr", NULL, NULL, JINGLE("report.pdf.scr"),
	    EXE " " DBL, true },
	{ "padded double extension", NULL, NULL,
	    SI("report.pdf                 .exe"), EXE " " DBL, true },
	{ "padding alone", NULL, NULL, SI("invoice_____________.exe"),
	    EXE " " DBL, true },
	{ "decoy before an archive", NULL, NULL, SI("scan.pdf.zip"),
	    RISKY " " DBL, true },
	{ "archive alone scores", NULL, NULL, SI("photos.zip"), RISKY,
	    false },
	{ "macro document", NULL, NULL, SI("budget.xlsm"), RISKY, false },
	{ "double extension, harmless end", NULL, NULL,
	    SI("archive.jpg.pdf"), "", false },
	{ "double extension with trailing dot", NULL, NULL,
	    SI("photo.jpg.exe."), EXE " " DBL " " TRICK, true },

	/* ---- right-to-left override and hidden characters ---- */
	{ "RLO: invoice.pdf<RLO>exe.scr", NULL, NULL,
	    SI("invoice.pdf\u202Eexe.scr"), RLO " " EXE, true },
	{ "RLO: looks like .jpg, is .exe", NULL, NULL,
	    SI("photo_\u202Egpj.exe"), RLO " " EXE, true },
	{ "RLO in jingle", NULL, NULL, JINGLE("report\u202Efdp.scr"),
	    RLO " " EXE, true },
	{ "RLO on a harmless name", NULL, NULL, SI("notes\u202Etxt.pdf"),
	    RLO, true },
	{ "isolate", NULL, NULL, SI("a\u2067b.pdf"), RLO, true },
	{ "zero-width space before the extension", NULL, NULL,
	    SI("photo.jpg\u200b.exe"), EXE " " DBL " " TRICK, true },
	{ "trailing spaces", NULL, NULL, SI("setup.exe   "), EXE " " TRICK,
	    true },
	{ "a path", NULL, NULL, SI("../../autostart/x.pdf"), TRICK, false },
	{ "a windows path", NULL, NULL, SI("C:\\Users\\x\\run.bat"),
	    EXE " " TRICK, true },

	/* ---- declared type vs name ---- */
	{ "pdf declared as text", NULL, NULL, SIT("a.pdf", "text/plain"),
	    MISM, false },
	{ "picture declared as audio", NULL, NULL,
	    SIT("a.png", "audio/mpeg"), MISM, false },
	{ "zip declared as a picture", NULL, NULL,
	    SIT("a.zip", "image/png"), RISKY " " MISM, false },
	{ "type check off", NULL, "check_type=false",
	    SIT("a.pdf", "text/plain"), "", false },
	{ "upload declared wrong", NULL, NULL,
	    UPLOAD("a.mp3", "100", "video/mp4"), MISM, false },

	/* ---- sizes ---- */
	{ "under the size limit", NULL, "max_size=10k", SI("a.pdf"), "",
	    false },
	{ "over the size limit", NULL, "max_size=512",
	    SI("a.pdf"), BIG, true },
	{ "jingle over the size limit", NULL, "max_size=999",
	    JINGLE("a.pdf"), BIG, true },
	{ "upload over the size limit", NULL, "max_size=1M",
	    UPLOAD("film.mp4", "5000000000", "video/mp4"), BIG, true },
	{ "size unknown passes", NULL, "max_size=1",
	    JINGLE_(AB, "a.pdf", ""), "", false },

	/* ---- switched off ---- */
	{ "transfer off", NULL, "allow=false", SI("report.pdf"), OFF, true },
	{ "transfer off, upload", NULL, "allow=false",
	    UPLOAD("a.jpg", "1", "image/jpeg"), OFF, true },
	{ "transfer off, ibb data", NULL, "allow=false", IBB_DATA, OFF,
	    true },
	{ "method si off", NULL, "methods=jingle,ibb,oob,upload",
	    SI("report.pdf"), OFF, true },
	{ "method si off, jingle passes", NULL,
	    "methods=jingle,ibb,oob,upload", JINGLE("report.pdf"), "",
	    false },
	{ "ibb off", NULL, "methods=si,jingle", IBB_OPEN, OFF, true },
	{ "oob off in a message", S2S, "methods=si,jingle",
	    OOBMSG("https://x.example/a.pdf"), OFF, true },
	{ "inbound off: s2s", S2S, "directions=outbound,local",
	    SI_(IQ("carol@remote.example/x", "bob@example.org/y"),
	    "a.pdf", "", "10"), OFF, true },
	{ "inbound off: a transport", COMP, "directions=outbound,local",
	    SI_(IQ("4711@icq.example.org", "bob@example.org/y"),
	    "a.pdf", "", "10"), OFF, true },
	{ "inbound off: local passes", NULL, "directions=outbound,local",
	    SI("a.pdf"), "", false },
	{ "outbound off", NULL, "directions=inbound,local",
	    SI_(IQ("alice@example.org/pc", "zoe@elsewhere.example/y"),
	    "a.pdf", "", "10"), OFF, true },
	{ "outbound off: subdomain is local", NULL,
	    "directions=inbound,local",
	    SI_(IQ("alice@example.org/pc", "4711@icq.example.org"),
	    "a.pdf", "", "10"), "", false },
	{ "local_domains: second domain is local", NULL,
	    "directions=inbound,local;local_domains=example.org,example.net",
	    SI_(IQ("alice@example.org/pc", "zoe@example.net/y"),
	    "a.pdf", "", "10"), "", false },
	{ "local_domains: the rest is outbound", NULL,
	    "directions=inbound,local;local_domains=example.org,*.example.net",
	    SI_(IQ("alice@example.org/pc", "zoe@example.com/y"),
	    "a.pdf", "", "10"), OFF, true },
	{ "local off", NULL, "directions=inbound,outbound", SI("a.pdf"), OFF,
	    true },
	{ "directions do not apply to uploads", NULL, "directions=inbound",
	    UPLOAD("a.jpg", "1", "image/jpeg"), "", false },
	{ "off and executable: only disabled", NULL, "allow=false",
	    SI("setup.exe"), OFF, true },

	/* ---- allow-list ---- */
	{ "allow-list passes pdf", NULL, "allow_extensions=pdf,jpg",
	    SI("a.pdf"), "", false },
	{ "allow-list refuses docx", NULL, "allow_extensions=pdf,jpg",
	    SI("a.docx"), NOTALLOWED, true },
	{ "allow-list refuses no extension", NULL, "allow_extensions=pdf",
	    SI("README"), NOTALLOWED, true },

	/* ---- out-of-band links (part 5) ---- */
	{ "oob exe link", S2S, NULL,
	    OOB("http://198.51.100.20:8081/setup.exe"), EXE, true },
	{ "oob percent-encoded exe", S2S, NULL,
	    OOB("http://x.example/setup%2Eexe"), EXE, true },
	{ "oob double-encoded dot", S2S, NULL,
	    OOB("http://x.example/photo.jpg%252eexe"), EXE " " DBL, true },
	{ "oob encoded RLO", S2S, NULL,
	    OOB("http://x.example/invoice%E2%80%AEfdp.scr"), RLO " " EXE,
	    true },
	{ "oob NUL trick", S2S, NULL,
	    OOB("http://x.example/run.exe%00.jpg"), EXE " " TRICK, true },
	{ "oob exe in a query", S2S, NULL,
	    OOB("http://x.example/download.php?id=3&amp;file=setup.exe"),
	    EXE, true },
	{ "oob query and fragment ignored for the path", S2S, NULL,
	    OOB("https://x.example/report.pdf?v=2#page=3"), "", false },
	{ "oob desc names a program", S2S, NULL,
	    OOBD("https://x.example/get", "photo.jpg.exe"), EXE " " DBL,
	    true },
	{ "oob desc sentence is no name", S2S, NULL,
	    OOBD("https://x.example/get", "the new setup.exe is here"), "",
	    false },
	{ "oob file: scheme", S2S, NULL,
	    OOB("file://///198.51.100.7/share/a.pdf"), SCHEME, false },
	{ "oob smb scheme", S2S, NULL, OOB("smb://198.51.100.7/x/y.pdf"),
	    SCHEME, false },
	{ "oob schemes open", S2S, "oob_schemes=",
	    OOB("ftp://x.example/a.pdf"), "", false },
	{ "oob message with a script", S2S, NULL,
	    OOBMSG("https://x.example/a/b/love.vbs"), EXE, true },
	{ "oob link type is not compared", S2S, NULL,
	    OOB("https://x.example/page.html"), RISKY, false },
};

struct trun {
	struct xm_arena *a;
	struct xm_event *ev;
	void *conf;
	void *state;
	struct xm_task t;
};

/* apply - the case's "name=value;..." overrides */
static void
apply(void *conf, const char *set, const char *name)
{
	char *copy, *item, *save, *eq;
	char err[256];

	if (set == NULL)
		return;
	copy = xm_strdup(set);
	for (item = strtok_r(copy, ";", &save); item != NULL;
	    item = strtok_r(NULL, ";", &save)) {
		eq = strchr(item, '=');
		cr_assert_not_null(eq, "%s: bad setting %s", name, item);
		*eq = '\0';
		cr_assert_eq(xm_settings_set(transfer_filter.settings, conf,
		    item, eq + 1, NULL, err, sizeof(err)), 0, "%s: set %s: %s",
		    name, item, err);
	}
	free(copy);
}

/* conf_new - defaults plus overrides SET */
static void *
conf_new(const char *set, const char *name)
{
	void *conf = xm_calloc(1, transfer_filter.conf_size);
	char err[256];

	cr_assert_eq(xm_settings_defaults(transfer_filter.settings, conf, NULL,
	    err, sizeof(err)), 0, "%s: defaults: %s", name, err);
	apply(conf, set, name);
	return conf;
}

/* setup - configure and init (no event yet) */
static void
setup(struct trun *r, const char *set, const char *name)
{
	char err[256];

	memset(r, 0, sizeof(*r));
	r->conf = conf_new(set, name);
	cr_assert_eq(transfer_filter.init(&r->state, r->conf, err,
	    sizeof(err)), 0, "%s: init: %s", name, err);
}

/* check - run TEXT (envelope ENV) through R's state at time NOW */
static void
check(struct trun *r, const char *env, const char *stanza, double now)
{
	char *text = xm_printf("%s\n%s", env != NULL ? env : C2S, stanza);

	if (r->a != NULL)
		xm_arena_free(r->a);
	r->a = xm_arena_new();
	r->ev = event(r->a, text);
	free(text);
	memset(&r->t, 0, sizeof(r->t));
	r->t.arena = r->a;
	r->t.ev = r->ev;
	r->t.now = now;
	r->t.cur_filter = "transfer";
	transfer_filter.check(r->state, &r->t);
}

/* teardown - free what setup made */
static void
teardown(struct trun *r)
{
	transfer_filter.free(r->state);
	xm_settings_free(transfer_filter.settings, r->conf);
	free(r->conf);
	if (r->a != NULL)
		xm_arena_free(r->a);
}

/* symbols - the task's symbols as one line, for failure messages */
static const char *
symbols(const struct trun *r)
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

/* detail - detail of symbol NAME, or NULL */
static const char *
detail(const struct trun *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->t.nsymbols; i++)
		if (strcmp(r->t.symbols[i].name, name) == 0)
			return r->t.symbols[i].detail;
	return NULL;
}

/* expect_symbols - exactly the symbols of WANT (space-separated) */
static void
expect_symbols(const struct trun *r, const char *want, const char *name)
{
	char *w = xm_strdup(want), *tok, *save;
	size_t n = 0;

	for (tok = strtok_r(w, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		n++;
		cr_expect(xm_task_has_symbol(&r->t, tok), "%s: want %s, got "
		    "[%s]", name, tok, symbols(r));
	}
	cr_expect_eq(r->t.nsymbols, n, "%s: want [%s], got [%s]", name, want,
	    symbols(r));
	free(w);
}

static void
reset(void)
{
	transfer_state_reset();
}

ParameterizedTestParameters(transfer, cases)
{
	static size_t idx[XM_ARRAY_LEN(cases)];
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(cases); i++)
		idx[i] = i;
	return cr_make_param_array(size_t, idx, XM_ARRAY_LEN(idx));
}

ParameterizedTest(size_t *i, transfer, cases, .init = reset)
{
	const struct tcase *c = &cases[*i];
	struct trun r;

	setup(&r, c->set, c->name);
	check(&r, c->env, c->stanza, 1000);
	expect_symbols(&r, c->want, c->name);
	cr_expect_eq(r.t.final, c->final, "%s: final %d, want %d [%s]",
	    c->name, r.t.final, c->final, symbols(&r));
	if (c->final) {
		cr_expect_eq(r.t.final_action, XM_REJECT, "%s", c->name);
		cr_expect_str_eq(r.t.final_condition, "policy-violation", "%s",
		    c->name);
	}
	teardown(&r);
}

/* ---- texts and details ---- */

Test(transfer, texts_and_details, .init = reset)
{
	struct trun r;

	setup(&r, NULL, "text");
	check(&r, NULL, SI("photo.jpg.exe"), 0);
	cr_expect_str_eq(r.t.final_text, "This file was refused by the "
	    "server's file-transfer policy (.exe files are not allowed).");
	cr_expect_str_eq(detail(&r, EXE), "file name \"photo.jpg.exe\" (.exe)");
	cr_expect_str_eq(detail(&r, DBL),
	    "file name \"photo.jpg.exe\" (.jpg .exe)");
	teardown(&r);

	setup(&r, "allow=false;disabled_text=file transfer is switched off "
	    "for this domain;reject_condition=not-allowed", "off");
	check(&r, NULL, SI("report.pdf"), 0);
	cr_expect_str_eq(r.t.final_text, "file transfer is switched off for "
	    "this domain");
	cr_expect_str_eq(r.t.final_condition, "not-allowed");
	cr_expect_str_eq(detail(&r, OFF), "file transfer is off (si)");
	teardown(&r);

	setup(&r, "explain=false;max_size=10", "noexplain");
	check(&r, NULL, SI("report.pdf"), 0);
	cr_expect_str_eq(r.t.final_text, "This file was refused by the "
	    "server's file-transfer policy.");
	cr_expect_str_eq(detail(&r, BIG), "declared size 1000 > 10");
	teardown(&r);

	setup(&r, "score_executable=3.5", "score");
	check(&r, NULL, SI("a.exe"), 0);
	cr_expect_float_eq(r.t.symbols[0].score, 3.5, 1e-9);
	teardown(&r);

	setup(&r, NULL, "rlo detail");
	check(&r, NULL, SI("invoice.pdf\u202Eexe.scr"), 0);
	cr_expect_str_eq(detail(&r, RLO),
	    "U+202E in file name \"invoice.pdfexe.scr\" (.scr)");
	teardown(&r);
}

/* ---- the bad-hash list ---- */

#define MD5_HEX "552da749930852c69ae5d2141d3766b1"
#define SHA256_B64 "2ZtNGsIPc3/WnAPtuQPl7VgHKPsXsWJINKLIIxPBkKY="
#define SHA256_HEX \
	"d99b4d1ac20f737fd69c03edb903e5ed580728fb17b1624834a2c82313c190a6"
#define SHA1_HEX "da39a3ee5e6b4b0d3255bfef95601890afd80709"

/* write_file - a file NAME in tmpdir with TEXT; its path (static) */
static const char *
write_file(const char *name, const char *text)
{
	static char path[PATH_MAX + 64];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
	return path;
}

#define SI_HASH(name, hash) AB "<si xmlns='http://jabber.org/protocol/si' " \
	"id='s1' profile='http://jabber.org/protocol/si/profile/" \
	"file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/" \
	"file-transfer' name='" name "' size='10' hash='" hash "'/></si></iq>"

static void
hinit(void)
{
	reset();
	mk_tmpdir();
}

Test(transfer, bad_hashes, .init = hinit, .fini = rm_tmpdir)
{
	struct trun r;
	char *set;
	const char *p = write_file("bad.txt",
	    "# known bad\n"
	    "\n"
	    MD5_HEX "\n"
	    "sha-256 " SHA256_B64 "\n"
	    "sha1:" SHA1_HEX "\n");

	/* repeat_window=0: each offer is judged on its own */
	set = xm_printf("bad_hashes=%s;repeat_window=0", p);
	setup(&r, set, "hashes");
	/* SI md5, hex */
	check(&r, NULL, SI_HASH("nice.pdf", MD5_HEX), 0);
	expect_symbols(&r, "TRANSFER_BAD_HASH", "si md5");
	cr_expect(r.t.final);
	cr_expect_str_eq(r.t.final_text, "This file was refused by the "
	    "server's file-transfer policy (a known-bad file).");
	/* upper-case hex is the same hash */
	check(&r, NULL, SI_HASH("nice2.pdf", "552DA749930852C69AE5D2141D3766B1"),
	    0);
	expect_symbols(&r, "TRANSFER_BAD_HASH", "si md5 upper");
	/* Jingle sha-256 base64 */
	check(&r, NULL, JINGLE_(AB, "notes.txt", HASH("sha-256", SHA256_B64)),
	    0);
	expect_symbols(&r, "TRANSFER_BAD_HASH", "jingle sha-256");
	/* a hex sha-1 listed, offered in base64 */
	check(&r, NULL, JINGLE_(AB, "x.txt",
	    HASH("sha-1", "2jmj7l5rSw0yVb/vlWAYkK/YBwk=")), 0);
	expect_symbols(&r, "TRANSFER_BAD_HASH", "jingle sha-1");
	/* other hashes pass */
	check(&r, NULL, SI_HASH("ok.pdf", "00000000000000000000000000000000"),
	    0);
	expect_symbols(&r, "", "clean md5");
	check(&r, NULL, JINGLE_(AB, "x.txt", HASH("sha-256", "garbage!")), 0);
	expect_symbols(&r, "", "garbage hash");
	/* the same digest under another algorithm is another hash */
	check(&r, NULL, JINGLE_(AB, "x.txt", HASH("sha3-256", SHA256_B64)), 0);
	expect_symbols(&r, "", "other algorithm");
	teardown(&r);
	free(set);

	/* sha256sum output */
	reset();
	p = write_file("sums.txt", SHA256_HEX "  evil.exe\n");
	set = xm_printf("bad_hashes=%s", p);
	setup(&r, set, "sha256sum");
	check(&r, NULL, JINGLE_(AB, "notes.txt", HASH("sha-256", SHA256_B64)),
	    0);
	expect_symbols(&r, "TRANSFER_BAD_HASH", "sha256sum format");
	teardown(&r);
	free(set);
}

Test(transfer, bad_hash_file_errors, .init = hinit, .fini = rm_tmpdir)
{
	char err[512] = "", *set;
	void *conf, *state = NULL;
	const char *p = write_file("broken.txt", MD5_HEX "\nnot-a-hash\n");

	set = xm_printf("bad_hashes=%s", p);
	conf = conf_new(set, "broken");
	cr_expect_eq(transfer_filter.init(&state, conf, err, sizeof(err)), -1);
	cr_expect(strstr(err, "broken.txt:2: not a file hash") != NULL, "%s",
	    err);
	xm_settings_free(transfer_filter.settings, conf);
	free(conf);
	free(set);

	set = xm_printf("bad_hashes=%s/missing.txt", tmpdir);
	conf = conf_new(set, "missing");
	cr_expect_eq(transfer_filter.init(&state, conf, err, sizeof(err)), -1);
	cr_expect(strstr(err, "missing.txt: No such file") != NULL, "%s", err);
	xm_settings_free(transfer_filter.settings, conf);
	free(conf);
	free(set);

	p = write_file("many.txt", MD5_HEX "\n" SHA1_HEX "\n" SHA256_HEX "\n");
	set = xm_printf("bad_hashes=%s;max_bad_hashes=2", p);
	conf = conf_new(set, "many");
	cr_expect_eq(transfer_filter.init(&state, conf, err, sizeof(err)), -1);
	cr_expect(strstr(err, "many.txt:3: more than max_bad_hashes") != NULL,
	    "%s", err);
	xm_settings_free(transfer_filter.settings, conf);
	free(conf);
	free(set);
}

Test(transfer, init_errors, .init = reset)
{
	static const struct {
		const char *set, *msg;
	} bad[] = {
		{ "final_symbols=TRANSFER_NOPE", "no symbol TRANSFER_NOPE" },
		{ "methods=si,ftp", "\"ftp\" is not si, jingle" },
		{ "directions=inbound,sideways", "\"sideways\" is not inbound" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(bad); i++) {
		char err[256] = "";
		void *state = NULL, *conf = conf_new(bad[i].set, bad[i].set);

		cr_expect_eq(transfer_filter.init(&state, conf, err,
		    sizeof(err)), -1, "%s", bad[i].set);
		cr_expect(strstr(err, bad[i].msg) != NULL, "%s: %s",
		    bad[i].set, err);
		xm_settings_free(transfer_filter.settings, conf);
		free(conf);
	}
}

/* ---- state across events: repeats and fan-out ---- */

/* an SI offer of NAME from alice to TO (a bare JID) */
static char *
offer_to(const char *name, const char *to)
{
	return xm_printf("<iq from='alice@example.org/pc' to='%s/r' "
	    "type='set' id='i'><si xmlns='http://jabber.org/protocol/si' "
	    "id='s' profile='http://jabber.org/protocol/si/profile/"
	    "file-transfer'><file xmlns='http://jabber.org/protocol/si/"
	    "profile/file-transfer' name='%s' size='4242'/></si></iq>", to,
	    name);
}

/* offer - check NAME from alice to TO at NOW */
static void
offer(struct trun *r, const char *name, const char *to, double now)
{
	char *s = offer_to(name, to);

	check(r, NULL, s, now);
	free(s);
}

Test(transfer, repeat_after_a_block, .init = reset)
{
	static const struct {
		double at;
		const char *name;
		const char *want;
	} seq[] = {
		{ 1000, "game.exe", EXE },                 /* blocked */
		{ 1010, "game.exe", EXE " TRANSFER_REPEAT" },
		{ 1020, "game.exe", EXE " TRANSFER_REPEAT" },
		{ 1030, "other.pdf", "" },                 /* another file */
		{ 1000 + 3600 + 1030, "game.exe", EXE },   /* window passed */
	};
	struct trun r;
	size_t i;

	setup(&r, NULL, "repeat");
	for (i = 0; i < XM_ARRAY_LEN(seq); i++) {
		char *nm = xm_printf("step %zu", i);

		offer(&r, seq[i].name, "bob@example.org", seq[i].at);
		expect_symbols(&r, seq[i].want, nm);
		free(nm);
	}
	teardown(&r);

	/* the detail counts the offers since the block */
	reset();
	setup(&r, NULL, "repeat detail");
	offer(&r, "game.exe", "bob@example.org", 0);
	offer(&r, "game.exe", "bob@example.org", 5);
	offer(&r, "game.exe", "bob@example.org", 7);
	cr_expect_str_eq(detail(&r, "TRANSFER_REPEAT"),
	    "offered 2 times since it was blocked 2s ago");
	teardown(&r);
}

Test(transfer, repeat_of_a_scored_block, .init = reset)
{
	struct trun r;

	/* executables only score; a score >= repeat_min_score still counts */
	setup(&r, "final_symbols=;repeat_min_score=10", "scored");
	offer(&r, "game.exe", "bob@example.org", 0);
	expect_symbols(&r, EXE, "first");
	cr_expect(!r.t.final);
	offer(&r, "game.exe", "bob@example.org", 60);
	expect_symbols(&r, EXE " TRANSFER_REPEAT", "second");
	teardown(&r);

	/* below repeat_min_score nothing is remembered as blocked */
	reset();
	setup(&r, "final_symbols=;repeat_min_score=11", "below");
	offer(&r, "game.exe", "bob@example.org", 0);
	offer(&r, "game.exe", "bob@example.org", 60);
	expect_symbols(&r, EXE, "second, below");
	teardown(&r);

	/* another sender of the same file is no repeat */
	reset();
	setup(&r, NULL, "sender");
	offer(&r, "game.exe", "bob@example.org", 0);
	check(&r, "origin=c2s\nauth=carol@example.org\n",
	    SI_(IQ("carol@example.org/x", "bob@example.org/y"), "game.exe",
	    "", "4242"), 10);
	expect_symbols(&r, EXE, "other sender");
	teardown(&r);

	/* repeat_window 0: off */
	reset();
	setup(&r, "repeat_window=0", "off");
	offer(&r, "game.exe", "bob@example.org", 0);
	offer(&r, "game.exe", "bob@example.org", 1);
	expect_symbols(&r, EXE, "repeat off");
	teardown(&r);
}

Test(transfer, repeat_by_hash_across_names, .init = reset)
{
	struct trun r;

	setup(&r, NULL, "hash identity");
	check(&r, NULL, JINGLE_(AB, "a.exe", HASH("sha-256", SHA256_B64)), 0);
	expect_symbols(&r, EXE, "first");
	/* renamed, same content: still the same file */
	check(&r, NULL, JINGLE_(AB, "b.scr", HASH("sha-256", SHA256_B64)), 10);
	expect_symbols(&r, EXE " TRANSFER_REPEAT", "renamed");
	teardown(&r);
}

Test(transfer, fanout_with_times, .init = reset)
{
	static const struct {
		double at;
		const char *to;
		const char *want;
	} seq[] = {
		{ 0, "b1@example.org", "" },
		{ 10, "b2@example.org", "" },
		{ 20, "b2@example.org", "" },   /* same recipient: not counted */
		{ 30, "b3@example.org", "" },
		{ 40, "b4@example.org", "TRANSFER_FANOUT" },  /* 4 > 3 */
		{ 50, "b5@example.org", "TRANSFER_FANOUT" },
		{ 700, "b6@example.org", "" },  /* a new window */
	};
	struct trun r;
	size_t i;

	setup(&r, "fanout_max=3;fanout_window=10m", "fanout");
	for (i = 0; i < XM_ARRAY_LEN(seq); i++) {
		char *nm = xm_printf("step %zu", i);

		offer(&r, "party.pdf", seq[i].to, seq[i].at);
		expect_symbols(&r, seq[i].want, nm);
		free(nm);
	}
	teardown(&r);

	reset();
	setup(&r, "fanout_max=1", "detail");
	offer(&r, "party.pdf", "b1@example.org", 0);
	offer(&r, "party.pdf", "b2@example.org", 1);
	cr_expect_str_eq(detail(&r, "TRANSFER_FANOUT"),
	    "2 recipients within 600s > 1");
	/* a different file from the same sender starts its own count */
	offer(&r, "other.pdf", "b3@example.org", 2);
	expect_symbols(&r, "", "other file");
	teardown(&r);

	reset();
	setup(&r, "fanout_max=-1", "off");
	for (i = 0; i < 10; i++) {
		char *to = xm_printf("b%zu@example.org", i);

		offer(&r, "party.pdf", to, (double)i);
		free(to);
	}
	expect_symbols(&r, "", "fan-out off");
	teardown(&r);
}

Test(transfer, fanout_of_oob_links, .init = reset)
{
	struct trun r;
	int i;

	setup(&r, "fanout_max=2", "oob fanout");
	for (i = 0; i < 4; i++) {
		char *s = xm_printf("<message from='mallory@example.org/x' "
		    "to='v%d@example.org'><body>lol is this you</body><x "
		    "xmlns='jabber:x:oob'><url>http://198.51.100.7:81/pic.php"
		    "</url></x></message>", i);

		check(&r, "origin=c2s\nauth=mallory@example.org\n", s, i);
		free(s);
	}
	expect_symbols(&r, "TRANSFER_FANOUT", "4th recipient");
	teardown(&r);
}

Test(transfer, state_is_bounded_and_shared, .init = reset)
{
	struct trun r, r2;
	int i;

	setup(&r, "state_max_entries=16", "bounded");
	for (i = 0; i < 100; i++) {
		char *nm = xm_printf("f%d.pdf", i);

		offer(&r, nm, "bob@example.org", i);
		free(nm);
	}
	cr_expect_leq(transfer_state_count(), 16);
	cr_expect_geq(transfer_state_count(), 1);
	teardown(&r);

	/* a new instance (a reload, another scope) sees the same table */
	reset();
	setup(&r, NULL, "first instance");
	offer(&r, "game.exe", "bob@example.org", 0);
	teardown(&r);
	setup(&r2, NULL, "second instance");
	offer(&r2, "game.exe", "bob@example.org", 5);
	expect_symbols(&r2, EXE " TRANSFER_REPEAT", "after reload");
	teardown(&r2);

	/* entries expire: far later the table forgets */
	reset();
	setup(&r, "repeat_window=10s;fanout_window=10s", "expiry");
	offer(&r, "game.exe", "bob@example.org", 0);
	offer(&r, "x.pdf", "bob@example.org", 100);
	cr_expect_eq(transfer_state_count(), 1, "expired entry kept: %zu",
	    transfer_state_count());
	teardown(&r);
}

Test(transfer, shadow_never_ends_the_chain, .init = reset)
{
	struct trun r;

	setup(&r, NULL, "shadow");
	r.a = xm_arena_new();
	r.ev = event(r.a, C2S "\n" SI("setup.exe"));
	r.t.arena = r.a;
	r.t.ev = r.ev;
	r.t.cur_filter = "transfer";
	r.t.cur_shadow = true;
	transfer_filter.check(r.state, &r.t);
	cr_expect(xm_task_has_symbol(&r.t, EXE));
	cr_expect(!r.t.final);
	cr_expect(r.t.symbols[0].flags & XM_SYM_SHADOW);
	teardown(&r);
}
