/*
 * test_url.c - unit tests of the link library (plugin/url.c)
 *
 * Tables: extraction (which tokens a text yields), normalisation (host,
 * registrable domain, port, flags, canonical URL for IDN, percent-escapes,
 * case, trailing dots, default ports and every IPv4 spelling), IPv4
 * parsing, public-address classes, confusable skeletons, mixed scripts,
 * defanging and the string set (with deletions that move entries back).
 * Each case uses its own arena, freed at its end.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "url.h"

/* ---- extraction ---- */

struct find_case {
	const char *text;
	const char *want;   /* tokens joined by " | ", "" for none */
};

static const struct find_case find_cases[] = {
	{ "hello there, no links here", "" },
	{ "see http://example.com/x.", "http://example.com/x" },
	{ "(https://example.com/a_(b))", "https://example.com/a_(b)" },
	{ "go to www.example.org now", "www.example.org" },
	{ "evil.ru/path?x=1 and more", "evil.ru/path?x=1" },
	{ "visit example.com.", "example.com" },
	{ "file.txt and notes.doc are not links", "" },
	{ "mail me at bob@example.com", "" },
	{ "mailto:bob@example.com", "mailto:bob@example.com" },
	{ "add me aim:goim?screenname=worm", "aim:goim?screenname=worm" },
	{ "time: 10:30 ratio 3:1", "" },
	{ "two http://a.example,http://b.example",
	    "http://a.example,http://b.example" },
	{ "a http://a.example b http://b.example",
	    "http://a.example | http://b.example" },
	{ "<http://example.com/>", "http://example.com/" },
	{ "見てhttp://example.jp/x。", "http://example.jp/x" },
	{ "сайт пример.рф/путь", "пример.рф/путь" },
	{ "host:8080 is not, example.com:8080/x is",
	    "example.com:8080/x" },
	{ "lol is this you? http://203.0.113.66:8081/photo.php?id=bob",
	    "http://203.0.113.66:8081/photo.php?id=bob" },
	{ "ms-msdt:/id PCWDiagnostic", "ms-msdt:/id" },
	{ "tel:+15551234 call", "tel:+15551234" },
	{ "http:// nothing", "" },
	{ "e.g. i.e. etc.", "" },
};

Test(url, find_table)
{
	struct xm_url_span sp[16];
	char got[1024];
	size_t i, n, j, k;

	for (i = 0; i < sizeof(find_cases) / sizeof(find_cases[0]); i++) {
		const struct find_case *c = &find_cases[i];

		n = xm_url_find(c->text, strlen(c->text), sp, 16);
		got[0] = '\0';
		for (j = 0, k = 0; j < n; j++)
			k += (size_t)snprintf(got + k, sizeof(got) - k, "%s%.*s",
			    j ? " | " : "", (int)sp[j].len, c->text + sp[j].off);
		cr_expect_str_eq(got, c->want, "find(\"%s\")", c->text);
	}
}

Test(url, find_is_bounded)
{
	struct xm_url_span sp[3];
	const char *t = "http://a.example http://b.example http://c.example "
	    "http://d.example";

	cr_expect_eq(xm_url_find(t, strlen(t), sp, 3), 3);
	cr_expect_eq(xm_url_find(t, strlen(t), sp, 0), 0);
}

/* ---- normalisation ---- */

struct norm_case {
	const char *raw;
	bool bare;
	int rc;
	const char *host, *host_u, *domain, *norm;
	long port;
	unsigned flags;     /* NF_* expected true (others false) */
};

#define NF_IP 0x1
#define NF_PUB 0x2
#define NF_ODDIP 0x4
#define NF_ODDPORT 0x8
#define NF_IDN 0x10
#define NF_OPAQUE 0x20
#define NF_USER 0x40

static const struct norm_case norm_cases[] = {
	{ "HTTP://WWW.Example.COM./a/../b?Q=1#frag", false, 0,
	    "www.example.com", "www.example.com", "example.com",
	    "http://www.example.com/b?Q=1", -1, 0 },
	{ "http://example.com:80/", false, 0, "example.com", "example.com",
	    "example.com", "http://example.com/", 80, 0 },
	{ "https://example.com:8443/x", false, 0, "example.com", NULL,
	    "example.com", "https://example.com:8443/x", 8443, NF_ODDPORT },
	{ "www.example.co.uk/x", true, 0, "www.example.co.uk", NULL,
	    "example.co.uk", "http://www.example.co.uk/x", -1, 0 },
	{ "http://b\xc3\xbc" "cher.example/", false, 0,
	    "xn--bcher-kva.example", "b\xc3\xbc" "cher.example",
	    "xn--bcher-kva.example", "http://xn--bcher-kva.example/", -1,
	    NF_IDN },
	{ "http://xn--bcher-kva.example/", false, 0,
	    "xn--bcher-kva.example", "b\xc3\xbc" "cher.example",
	    "xn--bcher-kva.example", NULL, -1, NF_IDN },
	{ "http://\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80."
	    "\xd1\x80\xd1\x84/", false, 0, "xn--e1afmkfd.xn--p1ai", NULL,
	    "xn--e1afmkfd.xn--p1ai", NULL, -1, NF_IDN },
	{ "http://example\xe3\x80\x82" "com/", false, 0, "example.com", NULL,
	    "example.com", NULL, -1, 0 },
	{ "http://%65xample.com/%7Euser", false, 0, "example.com", NULL,
	    "example.com", NULL, -1, 0 },
	{ "http://198.51.100.7:8080/x.exe", false, 0, "198.51.100.7", NULL,
	    NULL, "http://198.51.100.7:8080/x.exe", 8080,
	    NF_IP | NF_PUB | NF_ODDPORT },
	{ "http://3325256711/", false, 0, "198.51.100.7", NULL, NULL,
	    "http://198.51.100.7/", -1, NF_IP | NF_PUB | NF_ODDIP },
	{ "http://0xC6.0x33.0x64.0x07/", false, 0, "198.51.100.7", NULL,
	    NULL, NULL, -1, NF_IP | NF_PUB | NF_ODDIP },
	{ "http://0306.063.0144.07/", false, 0, "198.51.100.7", NULL, NULL,
	    NULL, -1, NF_IP | NF_PUB | NF_ODDIP },
	{ "http://198.51.25607/", false, 0, "198.51.100.7", NULL, NULL, NULL,
	    -1, NF_IP | NF_PUB | NF_ODDIP },
	{ "http://127.1/", false, 0, "127.0.0.1", NULL, NULL, NULL, -1,
	    NF_IP | NF_ODDIP },
	{ "http://192.168.1.10/", false, 0, "192.168.1.10", NULL, NULL, NULL,
	    -1, NF_IP },
	{ "http://[2001:DB8::0001]:81/", false, 0, "2001:db8::1", NULL, NULL,
	    "http://[2001:db8::1]:81/", 81, NF_IP | NF_PUB | NF_ODDPORT },
	{ "http://[::1]/", false, 0, "::1", NULL, NULL, NULL, -1, NF_IP },
	{ "http://bank.example@evil.example/login", false, 0, "evil.example",
	    NULL, "evil.example", "http://evil.example/login", -1, NF_USER },
	{ "http://evil.example:99999/", false, 0, "evil.example", NULL,
	    "evil.example", NULL, 99999, NF_ODDPORT },
	{ "aim:goim?screenname=worm", false, 0, "", NULL, NULL,
	    "aim:goim?screenname=worm", -1, NF_OPAQUE },
	{ "mailto:Bob@Example.COM", false, 0, "example.com", NULL,
	    "example.com", NULL, -1, NF_OPAQUE },
	{ "http://999.1.1.1/", false, -1, NULL, NULL, NULL, NULL, -1, 0 },
	{ "not a url", false, -1, NULL, NULL, NULL, NULL, -1, 0 },
	{ "", false, -1, NULL, NULL, NULL, NULL, -1, 0 },
};

Test(url, normalize_table)
{
	struct xm_url_info u;
	size_t i;

	for (i = 0; i < sizeof(norm_cases) / sizeof(norm_cases[0]); i++) {
		const struct norm_case *c = &norm_cases[i];
		struct xm_arena *a = xm_arena_new();
		int rc = xm_url_normalize(a, c->raw, strlen(c->raw), c->bare, &u);

		cr_expect_eq(rc, c->rc, "rc of %s: %d", c->raw, rc);
		if (rc == 0 && c->rc == 0) {
			cr_expect_str_eq(u.host, c->host, "host of %s", c->raw);
			if (c->host_u)
				cr_expect_str_eq(u.host_u, c->host_u,
				    "host_u of %s", c->raw);
			if (c->domain)
				cr_expect(u.domain && strcmp(u.domain,
				    c->domain) == 0, "domain of %s: %s", c->raw,
				    u.domain ? u.domain : "(null)");
			else
				cr_expect_null(u.domain, "domain of %s: %s",
				    c->raw, u.domain);
			if (c->norm)
				cr_expect_str_eq(u.norm, c->norm, "norm of %s",
				    c->raw);
			cr_expect_eq(u.port, c->port, "port of %s: %ld", c->raw,
			    u.port);
			cr_expect_eq(u.ip, !!(c->flags & NF_IP), "ip %s", c->raw);
			cr_expect_eq(u.ip_public, !!(c->flags & NF_PUB),
			    "public %s", c->raw);
			cr_expect_eq(u.ip_odd_form, !!(c->flags & NF_ODDIP),
			    "odd ip %s", c->raw);
			cr_expect_eq(u.odd_port, !!(c->flags & NF_ODDPORT),
			    "odd port %s", c->raw);
			cr_expect_eq(u.idn, !!(c->flags & NF_IDN), "idn %s",
			    c->raw);
			cr_expect_eq(u.opaque, !!(c->flags & NF_OPAQUE),
			    "opaque %s", c->raw);
			cr_expect_eq(u.userinfo, !!(c->flags & NF_USER),
			    "userinfo %s", c->raw);
		}
		xm_arena_free(a);
	}
}

/* ---- IPv4 spellings and address classes ---- */

struct ip_case {
	const char *s;
	int rc;
	uint32_t v;
	bool odd;
};

static const struct ip_case ip_cases[] = {
	{ "1.2.3.4", 0, 0x01020304, false },
	{ "0x7f.1", 0, 0x7f000001, true },
	{ "017700000001", 0, 0x7f000001, true },
	{ "4294967295", 0, 0xffffffff, true },
	{ "4294967296", -1, 0, false },
	{ "1.2.65535", 0, 0x0102ffff, true },
	{ "1.2.65536", -1, 0, false },
	{ "1.2.3.4.5", -1, 0, false },
	{ "1..2.3", -1, 0, false },
	{ "08.1.1.1", -1, 0, false },
	{ "0xg.1.1.1", -1, 0, false },
	{ "256.1.1.1", -1, 0, false },
};

Test(url, ipv4_table)
{
	size_t i;
	uint32_t v;
	bool odd;

	for (i = 0; i < sizeof(ip_cases) / sizeof(ip_cases[0]); i++) {
		const struct ip_case *c = &ip_cases[i];
		int rc = xm_url_ipv4(c->s, strlen(c->s), &v, &odd);

		cr_expect_eq(rc, c->rc, "rc of %s", c->s);
		if (rc == 0 && c->rc == 0) {
			cr_expect_eq(v, c->v, "value of %s: %08x", c->s, v);
			cr_expect_eq(odd, c->odd, "odd of %s", c->s);
		}
	}
}

Test(url, public_addresses)
{
	static const struct { uint8_t a[4]; bool pub; } v4[] = {
		{ { 8, 8, 8, 8 }, true }, { { 10, 1, 2, 3 }, false },
		{ { 172, 16, 0, 1 }, false }, { { 172, 32, 0, 1 }, true },
		{ { 192, 168, 0, 1 }, false }, { { 100, 64, 0, 1 }, false },
		{ { 169, 254, 1, 1 }, false }, { { 127, 0, 0, 1 }, false },
		{ { 224, 0, 0, 1 }, false }, { { 0, 1, 2, 3 }, false },
		{ { 203, 0, 113, 9 }, true },
	};
	uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8 };
	uint8_t ula[16] = { 0xfd };
	uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, [12] = 10 };
	size_t i;

	for (i = 0; i < sizeof(v4) / sizeof(v4[0]); i++)
		cr_expect_eq(xm_url_ip_public(v4[i].a, 4), v4[i].pub,
		    "%u.%u.%u.%u", v4[i].a[0], v4[i].a[1], v4[i].a[2], v4[i].a[3]);
	cr_expect(xm_url_ip_public(v6, 6));
	cr_expect_not(xm_url_ip_public(ula, 6));
	cr_expect_not(xm_url_ip_public(mapped, 6));
}

/* ---- look-alikes ---- */

struct skel_case {
	const char *host;
	const char *skel;
};

static const struct skel_case skel_cases[] = {
	{ "paypal.com", "paypal.com" },
	{ "p\xd0\xb0ypal.com", "paypal.com" },              /* Cyrillic a */
	{ "\xd1\x80\xd0\xb0\xd1\x83\xd1\x80\xd0\xb0l.com", "paypal.com" },
	{ "paypa1.com", "paypal.com" },
	{ "paypaI.com", "paypal.com" },                     /* capital I */
	{ "g00gle.com", "google.com" },
	{ "rnicrosoft.com", "microsoft.com" },
	{ "\xce\xbf\xce\xbf.com", "oo.com" },               /* Greek omicron */
	{ "b\xc3\xbc" "cher.example", "bucher.example" },
	{ "\xef\xbd\x90\xef\xbd\x81ypal.com", "paypal.com" },  /* full-width */
	{ "vvikipedia.org", "wikipedia.org" },
	{ "\xe4\xbe\x8b.com", "?.com" },                    /* no Latin twin */
};

Test(url, skeleton_table)
{
	size_t i;

	for (i = 0; i < sizeof(skel_cases) / sizeof(skel_cases[0]); i++) {
		struct xm_arena *a = xm_arena_new();

		cr_expect_str_eq(xm_url_skeleton(a, skel_cases[i].host),
		    skel_cases[i].skel, "skeleton of %s", skel_cases[i].host);
		xm_arena_free(a);
	}
}

struct mix_case {
	const char *host;
	bool mixed;
};

static const struct mix_case mix_cases[] = {
	{ "paypal.com", false },
	{ "p\xd0\xb0ypal.com", true },                       /* Latin+Cyrillic */
	{ "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.\xd1\x80\xd1\x84",
	    false },                                         /* all Cyrillic */
	{ "\xce\xb1lpha.gr", true },                         /* Greek+Latin */
	{ "\xe6\x9d\xb1\xe4\xba\xac" "abc.jp", false },      /* Han+Latin */
	{ "\xe3\x81\x82\xe6\x9d\xb1.jp", false },            /* Kana+Han */
	{ "b\xc3\xbc" "cher.de", false },                    /* Latin only */
	{ "\xd0\xb0.b.com", false },                         /* one per label */
	{ "123-\xd0\xb0\xd0\xb1.ru", false },                /* digits neutral */
};

Test(url, mixed_script_table)
{
	size_t i;

	for (i = 0; i < sizeof(mix_cases) / sizeof(mix_cases[0]); i++)
		cr_expect_eq(xm_url_mixed_script(mix_cases[i].host),
		    mix_cases[i].mixed, "mixed(%s)", mix_cases[i].host);
}

/* ---- defanging ---- */

struct defang_case {
	const char *text;
	const char *want;
};

static const struct defang_case defang_cases[] = {
	{ "see http://evil.example/x.exe now",
	    "see hxxp://evil[.]example/x.exe now" },
	{ "HTTPS://a.b.example:81/p?q=a.b",
	    "HXXPS://a[.]b[.]example:81/p?q=a.b" },
	{ "go www.evil.example/a.b", "go www[.]evil[.]example/a.b" },
	{ "aim:goim?screenname=x", "aim[:]goim?screenname=x" },
	{ "ftp://files.example/", "fxp://files[.]example/" },
	{ "two http://a.example http://b.example",
	    "two hxxp://a[.]example hxxp://b[.]example" },
	{ "no links at all", "no links at all" },
};

Test(url, defang_table)
{
	struct xm_url_span sp[8];
	size_t i, n;

	for (i = 0; i < sizeof(defang_cases) / sizeof(defang_cases[0]); i++) {
		const char *t = defang_cases[i].text;
		struct xm_arena *a = xm_arena_new();

		n = xm_url_find(t, strlen(t), sp, 8);
		cr_expect_str_eq(xm_url_defang(a, t, strlen(t), sp, n, NULL),
		    defang_cases[i].want, "defang(%s)", t);
		xm_arena_free(a);
	}
}

Test(url, defang_picks)
{
	const char *t = "a http://a.example b http://b.example";
	struct xm_url_span sp[4];
	bool pick[2] = { false, true };
	struct xm_arena *a = xm_arena_new();
	size_t n = xm_url_find(t, strlen(t), sp, 4);

	cr_assert_eq(n, 2);
	cr_expect_str_eq(xm_url_defang(a, t, strlen(t), sp, n, pick),
	    "a http://a.example b hxxp://b[.]example");
	xm_arena_free(a);
}

/* ---- sets ---- */

Test(url, strset_add_del_domain)
{
	struct xm_strset s = { 0 };
	char buf[32];
	const char *m;
	int i;

	for (i = 0; i < 5000; i++) {
		snprintf(buf, sizeof(buf), "d%d.example", i);
		cr_assert(xm_strset_add(&s, buf, strlen(buf)));
	}
	cr_expect_not(xm_strset_add(&s, "d7.example", 10));
	/* delete every third: the rest must stay reachable */
	for (i = 0; i < 5000; i += 3) {
		snprintf(buf, sizeof(buf), "d%d.example", i);
		cr_assert(xm_strset_del(&s, buf, strlen(buf)));
	}
	for (i = 0; i < 5000; i++) {
		snprintf(buf, sizeof(buf), "d%d.example", i);
		cr_expect_eq(xm_strset_has(&s, buf, strlen(buf)), i % 3 != 0,
		    "%s", buf);
	}
	cr_expect(xm_strset_has_domain(&s, "www.d5.example", &m));
	cr_expect_str_eq(m, "d5.example");
	cr_expect_not(xm_strset_has_domain(&s, "d6.example", &m));
	cr_expect_not(xm_strset_has_domain(&s, "xd5.example", &m));
	xm_strset_free(&s);
}

Test(url, registrable_and_suffix)
{
	struct xm_arena *a = xm_arena_new();
	const char *d;

	d = xm_url_registrable(a, "a.b.example.co.uk");
	cr_expect(d && strcmp(d, "example.co.uk") == 0);
	cr_expect_null(xm_url_registrable(a, "co.uk"));
	cr_expect(xm_url_has_public_suffix("evil.ru", 7));
	cr_expect_not(xm_url_has_public_suffix("file.txt", 8));
	cr_expect_not(xm_url_has_public_suffix("com", 3));
	xm_arena_free(a);
}
