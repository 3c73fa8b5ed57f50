/*
 * test_antivirus.c - the antivirus filter, the IBB reassembly and the
 * result cache, against a real libclamav
 *
 * Every test builds its own signature database in a temporary directory:
 * EICAR by SHA-256 (.hsb) and by body pattern (.ndb), a custom "worm" by
 * MD5 (.hdb), a file name inside a zip (.cdb), and clam.exe of the
 * clamav-testfiles package by MD5. EICAR itself is never in the source:
 * it is put together from two halves at run time. Zip files are written
 * here (stored members, CRC-32 computed here), so no archiver is needed.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <clamav.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "avstate.h"
#include "config.h"
#include "ibb.h"
#include "testlib.h"
#include "xm.h"

extern const struct xm_filter_ops antivirus_filter;

#define TESTFILES "/usr/share/clamav-testfiles"

static char eicar[80];
static const char worm[] = "MZ\x90\x00 xmilter test worm: send me to all "
    "your contacts as lovely-photo.jpg.exe 0123456789";
static char dbdir[PATH_MAX + 64];

/* make_eicar - the EICAR test string from its two halves */
static void
make_eicar(void)
{
	snprintf(eicar, sizeof(eicar), "%s%s", "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
	    "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
}

/* hex - lower-case hex of N bytes */
static void
hex(char *out, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* write_file - DIR/NAME with N bytes of P */
static void
write_file(const char *dir, const char *name, const void *p, size_t n)
{
	char path[PATH_MAX + 64];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_not_null(fp = fopen(path, "wb"), "%s", path);
	cr_assert_eq(fwrite(p, 1, n, fp), n);
	fclose(fp);
}

/* crc32 - the zip checksum */
static unsigned
crc32(const unsigned char *p, size_t n)
{
	unsigned c = 0xffffffffu;
	int k;

	while (n-- > 0) {
		c ^= *p++;
		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
	}
	return ~c;
}

struct zmember {
	const char *name;
	const unsigned char *data;
	size_t len;
};

/* le - little-endian integers into a buffer */
static size_t
le(unsigned char *b, unsigned v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	return (size_t)n;
}

/* make_zip - a zip of stored members into OUT (heap), length returned */
static size_t
make_zip(const struct zmember *m, size_t nm, unsigned char **out)
{
	unsigned char *b = xm_malloc(65536), *cd = xm_malloc(16384);
	size_t o = 0, co = 0, i, cdstart;
	unsigned offs[16];

	for (i = 0; i < nm; i++) {
		unsigned crc = crc32(m[i].data, m[i].len);
		size_t nl = strlen(m[i].name);

		offs[i] = (unsigned)o;
		o += le(b + o, 0x04034b50, 4);
		o += le(b + o, 10, 2);
		o += le(b + o, 0, 2);
		o += le(b + o, 0, 2);            /* stored */
		o += le(b + o, 0, 4);            /* time, date */
		o += le(b + o, crc, 4);
		o += le(b + o, (unsigned)m[i].len, 4);
		o += le(b + o, (unsigned)m[i].len, 4);
		o += le(b + o, (unsigned)nl, 2);
		o += le(b + o, 0, 2);
		memcpy(b + o, m[i].name, nl);
		o += nl;
		memcpy(b + o, m[i].data, m[i].len);
		o += m[i].len;
		co += le(cd + co, 0x02014b50, 4);
		co += le(cd + co, 20, 2);
		co += le(cd + co, 10, 2);
		co += le(cd + co, 0, 2);
		co += le(cd + co, 0, 2);
		co += le(cd + co, 0, 4);
		co += le(cd + co, crc, 4);
		co += le(cd + co, (unsigned)m[i].len, 4);
		co += le(cd + co, (unsigned)m[i].len, 4);
		co += le(cd + co, (unsigned)nl, 2);
		co += le(cd + co, 0, 2);
		co += le(cd + co, 0, 2);
		co += le(cd + co, 0, 2);
		co += le(cd + co, 0, 2);
		co += le(cd + co, 0, 4);
		co += le(cd + co, offs[i], 4);
		memcpy(cd + co, m[i].name, nl);
		co += nl;
	}
	cdstart = o;
	memcpy(b + o, cd, co);
	o += co;
	o += le(b + o, 0x06054b50, 4);
	o += le(b + o, 0, 2);
	o += le(b + o, 0, 2);
	o += le(b + o, (unsigned)nm, 2);
	o += le(b + o, (unsigned)nm, 2);
	o += le(b + o, (unsigned)co, 4);
	o += le(b + o, (unsigned)cdstart, 4);
	o += le(b + o, 0, 2);
	free(cd);
	*out = b;
	return o;
}

/* md5_of - hex MD5 of a file's bytes */
static bool
file_md5(const char *path, char out[33], size_t *size)
{
	FILE *fp = fopen(path, "rb");
	unsigned char buf[1 << 16], md[16];
	unsigned int mdlen = sizeof(md);
	size_t n;

	if (fp == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	cl_hash_data("md5", buf, n, md, &mdlen);
	hex(out, md, 16);
	*size = n;
	return true;
}

/* make_db - the test signature database in tmpdir/db */
static void
make_db(void)
{
	unsigned char sha[32], md[16];
	unsigned int len = 32, mlen = 16;
	char h[65], line[512], body[200];
	size_t size;

	make_eicar();
	snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir);
	cr_assert_eq(mkdir(dbdir, 0700), 0);
	cl_sha256(eicar, strlen(eicar), sha, &len);
	hex(h, sha, 32);
	snprintf(line, sizeof(line), "%s:%zu:Xm.Test.Eicar.Hash\n", h,
	    strlen(eicar));
	write_file(dbdir, "eicar.hsb", line, strlen(line));
	hex(body, (const unsigned char *)"EICAR-STANDARD-ANTIVIRUS-TEST-FILE",
	    34);
	snprintf(line, sizeof(line), "Xm.Test.Eicar.Body:0:*:%s\n", body);
	write_file(dbdir, "eicar.ndb", line, strlen(line));
	snprintf(line, sizeof(line), "Xm.Test.ZipName:CL_TYPE_ZIP:*:"
	    "lovely-photo\\.jpg\\.exe:*:*:*:*:*:*\n");
	write_file(dbdir, "names.cdb", line, strlen(line));
	if (file_md5(TESTFILES "/clam.exe", h, &size)) {
		snprintf(line, sizeof(line), "%s:%zu:Xm.Test.ClamExe\n", h, size);
		write_file(dbdir, "testfiles.hdb", line, strlen(line));
	}
	(void)md;
	(void)mlen;
}

/* add_worm_sig - the worm's MD5 signature, a database change */
static void
add_worm_sig(void)
{
	unsigned char md[16];
	unsigned int mlen = 16;
	char h[33], line[128];

	cl_hash_data("md5", worm, sizeof(worm) - 1, md, &mlen);
	hex(h, md, 16);
	snprintf(line, sizeof(line), "%s:%zu:Xm.Test.Worm\n", h,
	    sizeof(worm) - 1);
	write_file(dbdir, "worm.hdb", line, strlen(line));
}

static void
setup(void)
{
	mk_tmpdir();
	make_db();
	add_worm_sig();
	avstate_reset();
	ibb_reset();
}

static void
teardown(void)
{
	rm_tmpdir();
}

struct av {
	void *conf, *state;
	int rc;
	char err[512];
};

/* av_new - the filter with the test database and SETTINGS ("a=b;c=d") */
static void
av_new(struct av *a, const char *db, const char *settings)
{
	char buf[1024], *p, *save = NULL, err[256];

	memset(a, 0, sizeof(*a));
	a->conf = xm_calloc(1, antivirus_filter.conf_size);
	cr_assert_eq(xm_settings_defaults(antivirus_filter.settings, a->conf,
	    NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(xm_settings_set(antivirus_filter.settings, a->conf,
	    "database_dir", db ? db : dbdir, NULL, err, sizeof(err)), 0);
	cr_assert_eq(xm_settings_set(antivirus_filter.settings, a->conf,
	    "tmpdir", tmpdir, NULL, err, sizeof(err)), 0);
	snprintf(buf, sizeof(buf), "%s", settings ? settings : "");
	for (p = strtok_r(buf, ";", &save); p; p = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(p, '=');

		cr_assert_not_null(eq);
		*eq = '\0';
		cr_assert_eq(xm_settings_set(antivirus_filter.settings, a->conf, p,
		    eq + 1, NULL, err, sizeof(err)), 0, "%s: %s", p, err);
	}
	a->rc = antivirus_filter.init(&a->state, a->conf, a->err,
	    sizeof(a->err));
}

static void
av_free(struct av *a)
{
	if (a->rc == 0)
		antivirus_filter.free(a->state);
	xm_settings_free(antivirus_filter.settings, a->conf);
	free(a->conf);
}

struct run {
	struct xm_arena *arena;
	struct xm_task t;
	bool wanted;
};

/* run - wants() then (if wanted) check() on the event TEXT */
static void
run(struct av *a, struct run *r, const char *text)
{
	struct xm_event *ev;

	r->arena = xm_arena_new();
	ev = event(r->arena, text);
	memset(&r->t, 0, sizeof(r->t));
	r->t.arena = r->arena;
	r->t.ev = ev;
	r->t.now = 1000;
	r->wanted = antivirus_filter.wants(a->state, &r->t);
	if (r->wanted) {
		r->t.cur_filter = "antivirus";
		antivirus_filter.check(a->state, &r->t);
	}
}

/* symbol - the symbol NAME of R, or NULL */
static const struct xm_symbol *
symbol(const struct run *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->t.nsymbols; i++)
		if (strcmp(r->t.symbols[i].name, name) == 0)
			return &r->t.symbols[i];
	return NULL;
}

/* b64 - base64 of N bytes, heap */
static char *
b64(const void *p, size_t n)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *s = p;
	char *o = xm_malloc(n / 3 * 4 + 5), *q = o;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		*q++ = al[s[i] >> 2];
		*q++ = al[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
		*q++ = al[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
		*q++ = al[s[i + 2] & 63];
	}
	if (n - i == 1) {
		*q++ = al[s[i] >> 2];
		*q++ = al[(s[i] & 3) << 4];
		*q++ = '=';
		*q++ = '=';
	} else if (n - i == 2) {
		*q++ = al[s[i] >> 2];
		*q++ = al[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
		*q++ = al[(s[i + 1] & 15) << 2];
		*q++ = '=';
	}
	*q = '\0';
	return o;
}

#define ENV "origin=c2s\nauth=alice@example.org\n\n"
#define IQ(x) ENV "<iq type='set' from='alice@example.org/pc' " \
	"to='bob@example.org/phone' id='i1'>" x "</iq>"
#define IBB_NS "xmlns='http://jabber.org/protocol/ibb'"

/* ibb_open_ev, ibb_data_ev, ibb_close_ev - IBB events for stream SID */
static char *
ibb_data_ev(const char *sid, int seq, const void *p, size_t n)
{
	char *d = b64(p, n), *e;

	e = xm_printf(IQ("<data %s sid='%s' seq='%d'>%s</data>"), IBB_NS, sid,
	    seq, d);
	free(d);
	return e;
}

static char *
ibb_open_ev(const char *sid)
{
	return xm_printf(IQ("<open %s sid='%s' block-size='4096'/>"), IBB_NS, sid);
}

static char *
ibb_close_ev(const char *sid)
{
	return xm_printf(IQ("<close %s sid='%s'/>"), IBB_NS, sid);
}

/* upload_ev - an upload event naming PATH (and URL) */
static char *
upload_ev(const char *path, const char *url)
{
	return xm_printf("origin=c2s\nauth=alice@example.org\nfile-path=%s\n"
	    "file-url=%s\nfile-name=x.bin\n\n<iq type='set' "
	    "from='alice@example.org/pc' to='upload.example.org' id='u1'>"
	    "<request xmlns='urn:xmpp:http:upload:0' filename='x.bin' "
	    "size='1'/></iq>", path, url ? url : "");
}

/* upload_bytes - write P..N as tmpdir/NAME and run an upload event */
static void
upload_bytes(struct av *a, struct run *r, const char *name, const void *p,
    size_t n, const char *url)
{
	char path[PATH_MAX + 64], *ev;

	write_file(tmpdir, name, p, n);
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	ev = upload_ev(path, url);
	run(a, r, ev);
	free(ev);
}

TestSuite(antivirus, .init = setup, .fini = teardown, .timeout = 60);

/* ---- wants(): events without file bytes stay on the loop ---- */

struct wcase {
	const char *name;
	const char *event;
	bool want;
};

static struct wcase wcases[] = {
	{ "chat", ENV "<message from='alice@example.org/pc' to='bob@example.org' "
	  "type='chat'><body>hello, here is my file</body></message>", false },
	{ "chat with a link", ENV "<message to='bob@example.org'><body>see "
	  "http://upload.example.org/share/abc/x.exe</body></message>", false },
	{ "OOB url", ENV "<message to='bob@example.org'><x xmlns='jabber:x:oob'>"
	  "<url>http://upload.example.org/share/abc/x.exe</url></x></message>",
	  false },
	{ "SI offer (no bytes)", IQ("<si xmlns='http://jabber.org/protocol/si' "
	  "id='s1' profile='http://jabber.org/protocol/si/profile/file-transfer'>"
	  "<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' "
	  "name='a.exe' size='10'/></si>"), false },
	{ "subscription", ENV "<presence to='bob@example.org' type='subscribe'/>",
	  false },
	{ "upload slot request (no bytes)", ENV "<iq type='get' "
	  "to='upload.example.org' id='s'><request xmlns='urn:xmpp:http:upload:0' "
	  "filename='a.exe' size='10'/></iq>", false },
	{ "IBB open", IQ("<open " IBB_NS " sid='s' block-size='4096'/>"), true },
	{ "IBB data", IQ("<data " IBB_NS " sid='s' seq='0'>aGVsbG8=</data>"), true },
	{ "IBB close", IQ("<close " IBB_NS " sid='s'/>"), true },
	{ "upload with file-path", "origin=c2s\nfile-path=/nonexistent\n\n"
	  "<iq type='set' to='upload.example.org'><request "
	  "xmlns='urn:xmpp:http:upload:0' filename='a' size='1'/></iq>", true },
};

ParameterizedTestParameters(antivirus, wants)
{
	static size_t idx[XM_ARRAY_LEN(wcases)];
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(wcases); i++)
		idx[i] = i;
	return cr_make_param_array(size_t, idx, XM_ARRAY_LEN(wcases));
}

ParameterizedTest(size_t *i, antivirus, wants)
{
	struct wcase *c = &wcases[*i];
	struct xm_arena *arena = xm_arena_new();
	struct xm_task t;
	struct av a;

	av_new(&a, NULL, NULL);
	cr_assert_eq(a.rc, 0, "%s", a.err);
	memset(&t, 0, sizeof(t));
	t.arena = arena;
	t.ev = event(arena, c->event);
	t.now = 1000;
	cr_expect_eq(antivirus_filter.wants(a.state, &t), c->want, "%s",
	    c->name);
	xm_arena_free(arena);
	av_free(&a);
}

/* ---- uploads: what is caught, by which signature ---- */

enum payload { P_EICAR, P_EICAR_INSIDE, P_WORM, P_CLEAN, P_ZIP_EICAR,
	P_ZIP_NESTED, P_ZIP_NAME, P_ZIP_NESTED_NAME, P_EMPTY };

struct ucase {
	const char *name;
	enum payload p;
	const char *settings;
	const char *want;      /* symbol expected, or NULL: none */
	const char *detail;    /* prefix of its detail */
	bool final;
	const char *only;      /* use only this file of the database */
};

static struct ucase ucases[] = {
	{ "EICAR by hash", P_EICAR, NULL, "AV_VIRUS", "Xm.Test.Eicar.Hash", true,
	  "eicar.hsb" },
	{ "EICAR by body pattern", P_EICAR_INSIDE, NULL, "AV_VIRUS",
	  "Xm.Test.Eicar.Body", true, NULL },
	{ "EICAR inside other bytes: not by hash", P_EICAR_INSIDE, NULL, NULL,
	  NULL, false, "eicar.hsb" },
	{ "worm by MD5", P_WORM, NULL, "AV_VIRUS", "Xm.Test.Worm", true, NULL },
	{ "clean file", P_CLEAN, NULL, NULL, NULL, false, NULL },
	{ "empty file", P_EMPTY, NULL, NULL, NULL, false, NULL },
	{ "EICAR inside a zip", P_ZIP_EICAR, NULL, "AV_VIRUS", "Xm.Test.Eicar",
	  true, NULL },
	{ "EICAR in a zip in a zip", P_ZIP_NESTED, NULL, "AV_VIRUS",
	  "Xm.Test.Eicar", true, NULL },
	{ "a name inside an archive", P_ZIP_NAME, NULL, "AV_VIRUS",
	  "Xm.Test.ZipName", true, NULL },
	{ "a name in a zip in a zip", P_ZIP_NESTED_NAME, NULL, "AV_VIRUS",
	  "Xm.Test.ZipName", true, NULL },
	{ "archives not unpacked", P_ZIP_NAME, "scan_archives=false", NULL,
	  NULL, false, NULL },
	{ "too large: reject", P_CLEAN, "max_file_size=1k", "AV_LIMITS",
	  "upload of", true, NULL },
	{ "too large: score", P_CLEAN, "max_file_size=1k;on_limits=score",
	  "AV_LIMITS", "upload of", false, NULL },
	{ "nesting past max_recursion", P_ZIP_NESTED_NAME, "max_recursion=1",
	  "AV_LIMITS", "upload", true, NULL },
	{ "virus discarded", P_EICAR, "virus_action=discard", "AV_VIRUS",
	  "Xm.Test.Eicar", true, NULL },
};

/* payload - the bytes of P (heap) */
static size_t
payload(enum payload p, unsigned char **out)
{
	unsigned char *inner;
	size_t n, i;
	struct zmember m[2];

	switch (p) {
	case P_EICAR:
		*out = (unsigned char *)xm_strdup(eicar);
		return strlen(eicar);
	case P_EICAR_INSIDE:
		*out = (unsigned char *)xm_printf("some text before\n%s\nand after",
		    eicar);
		return strlen((char *)*out);
	case P_WORM:
		*out = xm_malloc(sizeof(worm));
		memcpy(*out, worm, sizeof(worm));
		return sizeof(worm) - 1;
	case P_CLEAN:
		*out = xm_malloc(5000);
		for (i = 0; i < 5000; i++)
			(*out)[i] = (unsigned char)("holiday photos "[i % 15]);
		return 5000;
	case P_EMPTY:
		*out = xm_malloc(1);
		return 0;
	case P_ZIP_EICAR:
		m[0] = (struct zmember){ "readme.txt", (const unsigned char *)"hi", 2 };
		m[1] = (struct zmember){ "eicar.com", (const unsigned char *)eicar,
			strlen(eicar) };
		return make_zip(m, 2, out);
	case P_ZIP_NESTED:
		m[0] = (struct zmember){ "eicar.com", (const unsigned char *)eicar,
			strlen(eicar) };
		n = make_zip(m, 1, &inner);
		m[0] = (struct zmember){ "inner.zip", inner, n };
		n = make_zip(m, 1, out);
		free(inner);
		return n;
	case P_ZIP_NAME:
		m[0] = (struct zmember){ "lovely-photo.jpg.exe",
			(const unsigned char *)"not really a photo", 18 };
		return make_zip(m, 1, out);
	case P_ZIP_NESTED_NAME:
		m[0] = (struct zmember){ "lovely-photo.jpg.exe",
			(const unsigned char *)"not really a photo", 18 };
		n = make_zip(m, 1, &inner);
		m[0] = (struct zmember){ "photos.zip", inner, n };
		n = make_zip(m, 1, out);
		free(inner);
		return n;
	}
	return 0;
}

ParameterizedTestParameters(antivirus, uploads)
{
	static size_t idx[XM_ARRAY_LEN(ucases)];
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(ucases); i++)
		idx[i] = i;
	return cr_make_param_array(size_t, idx, XM_ARRAY_LEN(ucases));
}

ParameterizedTest(size_t *i, antivirus, uploads)
{
	struct ucase *c = &ucases[*i];
	const struct xm_symbol *sy;
	unsigned char *p;
	size_t n = payload(c->p, &p);
	struct run r;
	struct av a;
	char only[PATH_MAX + 64], src[sizeof(dbdir) + 64], line[512];
	FILE *fp;

	if (c->only) {
		snprintf(only, sizeof(only), "%s/only", tmpdir);
		snprintf(src, sizeof(src), "%s/%s", dbdir, c->only);
		cr_assert_eq(mkdir(only, 0700), 0);
		cr_assert_not_null(fp = fopen(src, "r"));
		cr_assert_not_null(fgets(line, sizeof(line), fp));
		fclose(fp);
		write_file(only, c->only, line, strlen(line));
	}
	av_new(&a, c->only ? only : NULL, c->settings);
	cr_assert_eq(a.rc, 0, "%s", a.err);
	upload_bytes(&a, &r, "up.bin", p, n, NULL);
	cr_assert(r.wanted);
	if (c->want == NULL) {
		cr_expect_eq(r.t.nsymbols, 0, "%s: %zu symbols, first %s %s",
		    c->name, r.t.nsymbols, r.t.nsymbols ? r.t.symbols[0].name : "",
		    r.t.nsymbols ? r.t.symbols[0].detail : "");
	} else {
		sy = symbol(&r, c->want);
		cr_assert_not_null(sy, "%s: no %s (%zu symbols, first %s %s)",
		    c->name, c->want, r.t.nsymbols, r.t.nsymbols ?
		    r.t.symbols[0].name : "", r.t.nsymbols ? r.t.symbols[0].detail :
		    "");
		cr_expect_eq(strncmp(sy->detail, c->detail, strlen(c->detail)), 0,
		    "%s: detail %s", c->name, sy->detail);
	}
	cr_expect_eq(r.t.final, c->final, "%s", c->name);
	xm_arena_free(r.arena);
	free(p);
	av_free(&a);
}

/* every file of clamav-testfiles is caught by one hash of clam.exe */
Test(antivirus, clamav_testfiles)
{
	static const char *names[] = { "clam.exe", "clam.zip", "clam.7z",
		"clam.tar.gz", "clam.exe.bz2", "clam.cab", "clam.arj",
		"clam-upx.exe", "clam.ole.doc", "clam.pdf", "clam.exe.rtf",
		"clam.mail", "clam.exe.mbox.base64", "clam.bz2.zip" };
	char path[PATH_MAX + 64], *ev;
	struct run r;
	struct av a;
	size_t i;

	cr_assert_eq(access(TESTFILES "/clam.exe", R_OK), 0,
	    "clamav-testfiles is not installed");
	av_new(&a, NULL, NULL);
	cr_assert_eq(a.rc, 0, "%s", a.err);
	for (i = 0; i < XM_ARRAY_LEN(names); i++) {
		const struct xm_symbol *sy;

		snprintf(path, sizeof(path), TESTFILES "/%s", names[i]);
		ev = upload_ev(path, NULL);
		run(&a, &r, ev);
		sy = symbol(&r, "AV_VIRUS");
		cr_expect_not_null(sy, "%s not caught", names[i]);
		if (sy)
			cr_expect(strstr(sy->detail, "Xm.Test.ClamExe") != NULL,
			    "%s: %s", names[i], sy->detail);
		xm_arena_free(r.arena);
		free(ev);
	}
	av_free(&a);
}

/* ---- the database: missing, empty, degraded, changed ---- */

Test(antivirus, missing_database_is_a_startup_error)
{
	char empty[PATH_MAX + 64];
	struct av a;

	av_new(&a, "/nonexistent/clamav", NULL);
	cr_expect_eq(a.rc, -1);
	cr_expect(strstr(a.err, "/nonexistent/clamav") != NULL, "%s", a.err);
	cr_expect(strstr(a.err, "degraded") != NULL, "%s", a.err);
	av_free(&a);
	snprintf(empty, sizeof(empty), "%s/empty", tmpdir);
	cr_assert_eq(mkdir(empty, 0700), 0);
	av_new(&a, empty, NULL);
	cr_expect_eq(a.rc, -1, "an empty database must not load");
	cr_expect(strstr(a.err, empty) != NULL, "%s", a.err);
	av_free(&a);
}

Test(antivirus, degraded_mode_says_so)
{
	char why[512], *ev;
	struct run r;
	struct av a;

	av_new(&a, "/nonexistent/clamav", "on_missing_database=degraded");
	cr_assert_eq(a.rc, 0, "%s", a.err);
	cr_expect(antivirus_filter.status(a.state, why, sizeof(why)));
	cr_expect(strstr(why, "degraded") != NULL, "%s", why);
	ev = ibb_data_ev("d1", 0, eicar, strlen(eicar));
	run(&a, &r, ev);
	cr_expect_not_null(symbol(&r, "AV_DEGRADED"));
	cr_expect(!r.t.final);
	xm_arena_free(r.arena);
	free(ev);
	upload_bytes(&a, &r, "e.bin", eicar, strlen(eicar), NULL);
	cr_expect_not_null(symbol(&r, "AV_DEGRADED"));
	xm_arena_free(r.arena);
	av_free(&a);
	/* with a database: not degraded */
	av_new(&a, NULL, "on_missing_database=degraded");
	cr_assert_eq(a.rc, 0, "%s", a.err);
	cr_expect(!antivirus_filter.status(a.state, why, sizeof(why)));
	av_free(&a);
}

Test(antivirus, database_change_builds_a_new_engine)
{
	char path[sizeof(dbdir) + 16];
	struct run r;
	struct av a;
	int tries;
	bool caught = false;

	snprintf(path, sizeof(path), "%s/worm.hdb", dbdir);
	cr_assert_eq(unlink(path), 0);
	av_new(&a, NULL, "db_check_interval=1ms;cache_entries=0");
	cr_assert_eq(a.rc, 0, "%s", a.err);
	upload_bytes(&a, &r, "w.bin", worm, sizeof(worm) - 1, NULL);
	cr_expect_null(symbol(&r, "AV_VIRUS"), "no worm signature yet");
	xm_arena_free(r.arena);
	add_worm_sig();
	/* the rebuild runs aside: scans go on meanwhile, and one of the next
	 * ones sees the new engine (bounded number of tries, no timing) */
	for (tries = 0; tries < 500 && !caught; tries++) {
		usleep(10000);
		upload_bytes(&a, &r, "w.bin", worm, sizeof(worm) - 1, NULL);
		caught = symbol(&r, "AV_VIRUS") != NULL;
		cr_assert(r.t.final == caught);
		xm_arena_free(r.arena);
	}
	cr_expect(caught, "the new signature never took effect");
	av_free(&a);
}

/* ---- the cache ---- */

Test(antivirus, same_file_scanned_once)
{
	struct avstate_stats st;
	struct run r;
	struct av a;
	int k;

	av_new(&a, NULL, NULL);
	cr_assert_eq(a.rc, 0, "%s", a.err);
	for (k = 0; k < 50; k++) {
		upload_bytes(&a, &r, "w.bin", worm, sizeof(worm) - 1, NULL);
		cr_assert_not_null(symbol(&r, "AV_VIRUS"));
		cr_expect_eq(strstr(symbol(&r, "AV_VIRUS")->detail, "cached") !=
		    NULL, k > 0);
		xm_arena_free(r.arena);
	}
	avstate_get_stats(&st);
	cr_expect_eq(st.scans, 1, "50 uploads of one file: %llu scans", st.scans);
	cr_expect_eq(st.cache_hits, 49);
	av_free(&a);
	/* a reload with the same database keeps the cache */
	av_new(&a, NULL, NULL);
	upload_bytes(&a, &r, "w.bin", worm, sizeof(worm) - 1, NULL);
	avstate_get_stats(&st);
	cr_expect_eq(st.scans, 1);
	xm_arena_free(r.arena);
	av_free(&a);
	/* other limits: another engine tag, scanned again */
	av_new(&a, NULL, "max_files=50");
	upload_bytes(&a, &r, "w.bin", worm, sizeof(worm) - 1, NULL);
	avstate_get_stats(&st);
	cr_expect_eq(st.scans, 2);
	xm_arena_free(r.arena);
	av_free(&a);
}

/* ---- in-band bytestreams ---- */

Test(antivirus, ibb_small_file_caught_in_its_first_chunk)
{
	char *ev;
	struct run r;
	struct av a;

	av_new(&a, NULL, NULL);
	cr_assert_eq(a.rc, 0, "%s", a.err);
	ev = ibb_open_ev("s1");
	run(&a, &r, ev);
	cr_expect(r.wanted);
	cr_expect_eq(r.t.nsymbols, 0);
	xm_arena_free(r.arena);
	free(ev);
	ev = ibb_data_ev("s1", 0, eicar, strlen(eicar));
	run(&a, &r, ev);
	cr_assert_not_null(symbol(&r, "AV_VIRUS"));
	cr_expect(r.t.final);
	cr_expect_eq(r.t.final_action, XM_REJECT);
	xm_arena_free(r.arena);
	free(ev);
	/* the rest of the stream is refused */
	ev = ibb_data_ev("s1", 1, "more", 4);
	run(&a, &r, ev);
	cr_assert_not_null(symbol(&r, "AV_VIRUS"));
	cr_expect(strstr(symbol(&r, "AV_VIRUS")->detail, "rest") != NULL);
	cr_expect(r.t.final);
	xm_arena_free(r.arena);
	free(ev);
	/* the close passes so both ends hang up */
	ev = ibb_close_ev("s1");
	run(&a, &r, ev);
	cr_expect(!r.t.final);
	xm_arena_free(r.arena);
	free(ev);
	av_free(&a);
}

/* EICAR split over chunks at odd places: only the whole stream has it */
Test(antivirus, ibb_split_file_caught_at_close)
{
	static const size_t cuts[] = { 1, 7, 30, 50 };
	char *ev;
	struct run r;
	struct av a;
	size_t i, off = 0;
	struct ibb_stats st;

	av_new(&a, NULL, "ibb_scan_step=1M");
	cr_assert_eq(a.rc, 0, "%s", a.err);
	for (i = 0; i <= XM_ARRAY_LEN(cuts); i++) {
		size_t end = i < XM_ARRAY_LEN(cuts) ? cuts[i] : strlen(eicar);

		ev = ibb_data_ev("s2", (int)i, eicar + off, end - off);
		run(&a, &r, ev);
		cr_expect_null(symbol(&r, "AV_VIRUS"), "chunk %zu", i);
		xm_arena_free(r.arena);
		free(ev);
		off = end;
	}
	ibb_get_stats(&st);
	cr_expect_eq(st.streams, 1);
	ev = ibb_close_ev("s2");
	run(&a, &r, ev);
	cr_assert_not_null(symbol(&r, "AV_VIRUS"));
	cr_expect(strstr(symbol(&r, "AV_VIRUS")->detail, "whole") != NULL);
	cr_expect(r.t.final);
	xm_arena_free(r.arena);
	free(ev);
	ibb_get_stats(&st);
	cr_expect_eq(st.streams, 0);
	cr_expect_eq(st.bytes, 0);
	av_free(&a);
}

struct icase {
	const char *name;
	const char *settings;
	int seqs[4];       /* -2 ends */
	size_t chunk;      /* bytes per data chunk */
	const char *want;  /* symbol on the last data chunk */
	bool final;
};

static struct icase icases[] = {
	{ "in order", NULL, { 0, 1, 2, -2 }, 100, NULL, false },
	{ "resent chunk ignored", NULL, { 0, 1, 1, -2 }, 100, NULL, false },
	{ "out of order", NULL, { 0, 2, -2 }, 100, "AV_ERROR", true },
	{ "out of order, score", "on_error=score", { 0, 2, -2 }, 100,
	  "AV_ERROR", false },
	{ "past ibb_max_stream", "ibb_max_stream=2k", { 0, 1, 2, -2 }, 1000,
	  "AV_LIMITS", true },
	{ "past ibb_max_total", "ibb_max_total=4k;ibb_max_stream=1M",
	  { 0, 1, 2, -2 }, 2000, "AV_LIMITS", true },
	{ "past ibb_max_stream, accept", "ibb_max_stream=2k;on_limits=accept",
	  { 0, 1, 2, -2 }, 1000, "AV_LIMITS", false },
};

ParameterizedTestParameters(antivirus, ibb_limits)
{
	static size_t idx[XM_ARRAY_LEN(icases)];
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(icases); i++)
		idx[i] = i;
	return cr_make_param_array(size_t, idx, XM_ARRAY_LEN(icases));
}

ParameterizedTest(size_t *i, antivirus, ibb_limits)
{
	struct icase *c = &icases[*i];
	unsigned char buf[4096];
	struct run r;
	struct av a;
	char *ev;
	int k;

	memset(buf, 'a', sizeof(buf));
	av_new(&a, NULL, c->settings);
	cr_assert_eq(a.rc, 0, "%s", a.err);
	for (k = 0; c->seqs[k] != -2; k++) {
		ev = ibb_data_ev("s3", c->seqs[k], buf, c->chunk);
		run(&a, &r, ev);
		free(ev);
		if (c->seqs[k + 1] != -2) {
			cr_assert_eq(r.t.nsymbols, 0, "%s: chunk %d: %s", c->name, k,
			    r.t.nsymbols ? r.t.symbols[0].detail : "");
			xm_arena_free(r.arena);
		}
	}
	if (c->want)
		cr_expect_not_null(symbol(&r, c->want), "%s", c->name);
	else
		cr_expect_eq(r.t.nsymbols, 0, "%s", c->name);
	cr_expect_eq(r.t.final, c->final, "%s", c->name);
	xm_arena_free(r.arena);
	av_free(&a);
}

/* a big stream is scanned at growing checkpoints: a virus early in it is
 * stopped long before the end */
Test(antivirus, ibb_scans_as_data_arrives)
{
	unsigned char chunk[4096];
	struct run r;
	struct av a;
	char *ev;
	int k, caught_at = -1;

	memset(chunk, 'z', sizeof(chunk));
	av_new(&a, NULL, "ibb_scan_step=16k");
	cr_assert_eq(a.rc, 0, "%s", a.err);
	for (k = 0; k < 64 && caught_at < 0; k++) {
		if (k == 2)  /* EICAR in the third chunk, inside other bytes */
			memcpy(chunk + 100, eicar, strlen(eicar));
		ev = ibb_data_ev("s4", k, chunk, sizeof(chunk));
		run(&a, &r, ev);
		if (symbol(&r, "AV_VIRUS"))
			caught_at = k;
		xm_arena_free(r.arena);
		free(ev);
		memset(chunk, 'z', sizeof(chunk));
	}
	cr_expect_eq(caught_at, 3, "caught at chunk %d (16k checkpoint)",
	    caught_at);
	av_free(&a);
}

Test(antivirus, ibb_streams_expire)
{
	struct ibb_limits l = { 1 << 20, 1 << 24, 100, 60, 0 };
	struct ibb_snap snap;
	struct ibb_stats st;

	cr_assert_eq(ibb_data("a|b|x", 0, "aGVsbG8=", 100, &l, &snap), IBB_OK);
	cr_assert_eq(ibb_data("a|b|y", 0, "aGVsbG8=", 130, &l, &snap), IBB_OK);
	ibb_get_stats(&st);
	cr_expect_eq(st.streams, 2);
	cr_assert_eq(ibb_data("a|b|y", 1, "aGVsbG8=", 170, &l, &snap), IBB_OK);
	ibb_get_stats(&st);
	cr_expect_eq(st.streams, 1, "x idle for 70 s must be gone");
	cr_expect_eq(st.expired, 1);
	cr_expect_eq(ibb_close("a|b|x", 171, &snap), IBB_UNKNOWN);
	cr_expect_eq(ibb_close("a|b|y", 171, &snap), IBB_SCAN);
	cr_expect_eq(snap.len, 10);
	cr_expect_eq(memcmp(snap.data, "hellohello", 10), 0);
	free(snap.data);
	cr_expect_eq(ibb_data("a|b|z", 0, "not base64!", 172, &l, &snap),
	    IBB_BAD_DATA);
}

/* ---- infected uploads' URLs ---- */

Test(antivirus, message_sharing_an_infected_upload_is_blocked)
{
	static const char *url = "http://Upload.Example.org:5280/share/slot1/"
	    "x.exe";
	struct run r;
	struct av a;
	char *ev;

	av_new(&a, NULL, NULL);
	cr_assert_eq(a.rc, 0, "%s", a.err);
	upload_bytes(&a, &r, "e.bin", eicar, strlen(eicar), url);
	cr_assert_not_null(symbol(&r, "AV_VIRUS"));
	xm_arena_free(r.arena);
	run(&a, &r, ENV "<message to='bob@example.org'><body>look: "
	    "http://upload.example.org:5280/share/slot1/x.exe?x=1 !</body>"
	    "</message>");
	cr_expect(r.wanted);
	cr_expect_not_null(symbol(&r, "AV_INFECTED_URL"));
	cr_expect(r.t.final);
	xm_arena_free(r.arena);
	run(&a, &r, ENV "<message to='bob@example.org'><x xmlns='jabber:x:oob'>"
	    "<url>http://upload.example.org:5280/share/slot1/x.exe</url></x>"
	    "</message>");
	cr_expect_not_null(symbol(&r, "AV_INFECTED_URL"));
	xm_arena_free(r.arena);
	/* another upload's URL and plain chat are not wanted */
	run(&a, &r, ENV "<message to='bob@example.org'><body>"
	    "http://upload.example.org:5280/share/slot2/x.exe</body></message>");
	cr_expect(!r.wanted);
	xm_arena_free(r.arena);
	run(&a, &r, ENV "<message to='bob@example.org'><body>hi</body>"
	    "</message>");
	cr_expect(!r.wanted);
	xm_arena_free(r.arena);
	/* a clean upload is not remembered */
	ev = upload_ev("/nonexistent/file", "http://upload.example.org/s/3/a");
	run(&a, &r, ev);
	cr_expect_not_null(symbol(&r, "AV_ERROR"));
	cr_expect(r.t.final, "an unreadable upload is an error, on_error reject");
	xm_arena_free(r.arena);
	free(ev);
	av_free(&a);
}

Test(antivirus, upload_dirs_and_symlinks)
{
	char path[PATH_MAX + 64], link[PATH_MAX + 64], set[PATH_MAX + 128], *ev;
	struct run r;
	struct av a;

	snprintf(set, sizeof(set), "upload_dirs=%s/db", tmpdir);
	av_new(&a, NULL, set);
	cr_assert_eq(a.rc, 0, "%s", a.err);
	upload_bytes(&a, &r, "e.bin", eicar, strlen(eicar), NULL);
	cr_expect_not_null(symbol(&r, "AV_ERROR"), "outside upload_dirs");
	cr_expect_null(symbol(&r, "AV_VIRUS"));
	xm_arena_free(r.arena);
	av_free(&a);
	av_new(&a, NULL, NULL);
	snprintf(path, sizeof(path), "%s/e.bin", tmpdir);
	snprintf(link, sizeof(link), "%s/link.bin", tmpdir);
	cr_assert_eq(symlink(path, link), 0);
	ev = upload_ev(link, NULL);
	run(&a, &r, ev);
	cr_expect_not_null(symbol(&r, "AV_ERROR"), "a symlink is not followed");
	xm_arena_free(r.arena);
	free(ev);
	av_free(&a);
}

Test(antivirus, settings_are_documented)
{
	const struct xm_setting *s;

	for (s = antivirus_filter.settings; s->name; s++)
		cr_expect(s->doc && strlen(s->doc) > 10, "%s", s->name);
	cr_expect(antivirus_filter.flags & XM_FILTER_SLOW);
	cr_expect(antivirus_filter.flags & XM_FILTER_OPTIN);
	cr_expect_not_null(antivirus_filter.wants);
}

/* scopes and reloads with the same settings share one engine while the
 * database is unchanged; a changed database gets a new one */
Test(antivirus, engines_shared_while_the_database_is_unchanged)
{
	char path[sizeof(dbdir) + 16];
	struct run r;
	struct av a, b, c;

	snprintf(path, sizeof(path), "%s/worm.hdb", dbdir);
	cr_assert_eq(unlink(path), 0);
	av_new(&a, NULL, "cache_entries=0");
	cr_assert_eq(a.rc, 0, "%s", a.err);
	av_new(&b, NULL, "cache_entries=0");
	cr_assert_eq(b.rc, 0, "%s", b.err);
	av_free(&a);  /* b keeps the shared engine alive */
	upload_bytes(&b, &r, "e.bin", eicar, strlen(eicar), NULL);
	cr_expect_not_null(symbol(&r, "AV_VIRUS"));
	xm_arena_free(r.arena);
	upload_bytes(&b, &r, "w.bin", worm, sizeof(worm) - 1, NULL);
	cr_expect_null(symbol(&r, "AV_VIRUS"));
	xm_arena_free(r.arena);
	add_worm_sig();
	av_new(&c, NULL, "cache_entries=0;db_check_interval=0");
	cr_assert_eq(c.rc, 0, "%s", c.err);
	upload_bytes(&c, &r, "w.bin", worm, sizeof(worm) - 1, NULL);
	cr_expect_not_null(symbol(&r, "AV_VIRUS"), "a changed database is "
	    "loaded anew, not shared");
	xm_arena_free(r.arena);
	av_free(&b);
	av_free(&c);
}

/* a stream past a limit or out of sequence is not started again by its
 * next chunk: the rest is refused until it expires */
Test(antivirus, ibb_tombstones)
{
	struct ibb_limits l = { 1 << 20, 8192, 100, 60, 0 };
	unsigned char big[6000];
	struct ibb_snap snap;
	struct ibb_stats st;
	char *d4 = NULL, *d6;

	memset(big, 'q', sizeof(big));
	d4 = b64(big, 4000);
	d6 = b64(big, 6000);
	cr_expect_eq(ibb_data("a|b|1", 0, d4, 10, &l, &snap), IBB_OK);
	cr_expect_eq(ibb_data("a|b|1", 1, d6, 11, &l, &snap), IBB_NO_MEMORY);
	cr_expect_eq(ibb_data("a|b|1", 2, "aGVsbG8=", 12, &l, &snap),
	    IBB_TOO_BIG);
	cr_expect_eq(ibb_close("a|b|1", 13, &snap), IBB_TOO_BIG);
	cr_expect_eq(ibb_data("a|b|2", 0, "aGVsbG8=", 14, &l, &snap), IBB_OK);
	cr_expect_eq(ibb_data("a|b|2", 5, "aGVsbG8=", 15, &l, &snap),
	    IBB_BAD_SEQ);
	cr_expect_eq(ibb_data("a|b|2", 6, "aGVsbG8=", 16, &l, &snap),
	    IBB_BAD_SEQ);
	ibb_get_stats(&st);
	cr_expect_eq(st.bytes, 0, "tombstones hold no buffer: %zu", st.bytes);
	cr_expect_eq(st.streams, 1);
	cr_expect_eq(ibb_close("a|b|2", 17, &snap), IBB_BAD_SEQ);
	ibb_get_stats(&st);
	cr_expect_eq(st.streams, 0);
	free(d4);
	free(d6);
}

/* through the chain, as the daemon runs it: plain chat and offers never
 * need the worker pool, file bytes do; HELLO says when it is degraded */
#include "chain.h"

/* chain_from - a chain from YAML TEXT written to tmpdir */
static struct xm_chain *
chain_from(const char *text)
{
	char path[PATH_MAX + 64], err[512];
	struct xm_config *cf;
	struct xm_chain *c;

	snprintf(path, sizeof(path), "%s/xm.yml", tmpdir);
	write_file(tmpdir, "xm.yml", text, strlen(text));
	cr_assert_not_null(cf = xm_config_load(path, err, sizeof(err)), "%s", err);
	cr_assert_not_null(c = xm_chain_new(cf, err, sizeof(err)), "%s", err);
	return c;
}

Test(antivirus, chain_sends_only_file_bytes_to_the_workers)
{
	static const struct { const char *ev; bool slow; } cases[] = {
		{ ENV "<message to='bob@example.org' type='chat'><body>hello"
		  "</body></message>", false },
		{ ENV "<presence to='bob@example.org' type='subscribe'/>", false },
		{ IQ("<si xmlns='http://jabber.org/protocol/si' id='s1' "
		  "profile='http://jabber.org/protocol/si/profile/file-transfer'>"
		  "<file xmlns='http://jabber.org/protocol/si/profile/file-transfer'"
		  " name='a.exe' size='10'/></si>"), false },
		{ IQ("<data " IBB_NS " sid='c' seq='0'>aGVsbG8=</data>"), true },
	};
	char *yml = xm_printf("filters:\n  antivirus:\n    enabled: true\n"
	    "    database_dir: %s\n    tmpdir: %s\n", dbdir, tmpdir);
	struct xm_chain *c = chain_from(yml);
	struct xm_buf hello = { 0 };
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(cases); i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_event *ev;
		struct xm_task t;
		char err[256];

		cr_assert_eq(xm_chain_event(c, a, cases[i].ev, strlen(cases[i].ev),
		    &ev, err, sizeof(err)), 0, "%s", err);
		xm_task_init(&t, c, a, ev, 1000);
		xm_chain_run_stage(c, &t, false);
		cr_expect_eq(xm_chain_task_slow(c, &t), cases[i].slow, "case %zu", i);
		xm_arena_free(a);
	}
	xm_chain_hello(c, &hello, "test");
	cr_expect(memmem(hello.data, hello.len, "filter=antivirus\n", 17) != NULL);
	cr_expect(memmem(hello.data, hello.len, "status=ok\n", 10) != NULL);
	xm_buf_free(&hello);
	xm_chain_unref(c);
	free(yml);
}

Test(antivirus, hello_says_degraded)
{
	char *yml = xm_printf("filters:\n  antivirus:\n    enabled: true\n"
	    "    database_dir: /nonexistent/db\n    on_missing_database: degraded\n"
	    "    tmpdir: %s\n", tmpdir);
	struct xm_chain *c = chain_from(yml);
	struct xm_buf hello = { 0 };

	xm_chain_hello(c, &hello, "test");
	xm_buf_puts(&hello, "");
	cr_expect(memmem(hello.data, hello.len, "status=degraded\n", 16) != NULL,
	    "%.*s", (int)hello.len, hello.data);
	cr_expect(memmem(hello.data, hello.len, "reason=antivirus degraded: ",
	    27) != NULL, "%.*s", (int)hello.len, hello.data);
	cr_expect(memmem(hello.data, hello.len, "status=ok", 9) == NULL);
	xm_buf_free(&hello);
	xm_chain_unref(c);
	free(yml);
}

/* ---- the process-wide tables ---- */

Test(antivirus, cache_is_bounded_lru_with_ttl)
{
	unsigned char sha[32];
	struct av_result r = { .kind = AV_VIRUS }, out;
	struct avstate_stats st;
	int i;

	avstate_configure(3, 100, 10, 100);
	for (i = 0; i < 5; i++) {
		memset(sha, i, sizeof(sha));
		snprintf(r.name, sizeof(r.name), "v%d", i);
		avstate_cache_put(sha, 7, 1000, &r);
	}
	avstate_get_stats(&st);
	cr_expect_eq(st.cache_entries, 3);
	memset(sha, 0, sizeof(sha));
	cr_expect(!avstate_cache_get(sha, 7, 1000, &out), "oldest evicted");
	memset(sha, 4, sizeof(sha));
	cr_expect(avstate_cache_get(sha, 7, 1000, &out));
	cr_expect_str_eq(out.name, "v4");
	cr_expect(!avstate_cache_get(sha, 8, 1000, &out), "another engine tag");
	cr_expect(!avstate_cache_get(sha, 7, 1101, &out), "past the TTL");
	avstate_configure(0, 100, 10, 100);
	avstate_cache_put(sha, 7, 1000, &r);
	cr_expect(!avstate_cache_get(sha, 7, 1000, &out), "cache off");
}

Test(antivirus, url_keys)
{
	static const struct { const char *url, *key; } cases[] = {
		{ "http://Upload.Example.ORG:5280/share/AbC/x.exe",
		  "upload.example.org:5280/share/AbC/x.exe" },
		{ "https://h.example/a/b?token=1#frag", "h.example/a/b" },
		{ "HTTP://H.example/A", "h.example/A" },
		{ "aesgcm://h.example/a/b#key", NULL },
		{ "ftp://h.example/a", NULL },
		{ "http://", NULL },
	};
	char key[256];
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(cases); i++) {
		bool ok = avstate_url_key(cases[i].url, strlen(cases[i].url), key,
		    sizeof(key));

		cr_expect_eq(ok, cases[i].key != NULL, "%s", cases[i].url);
		if (ok && cases[i].key)
			cr_expect_str_eq(key, cases[i].key);
	}
	avstate_url_add("http://h.example/s/1/x.exe", "V", 10);
	cr_expect(avstate_url_find("HTTP://H.EXAMPLE/s/1/x.exe?a", 28, 11, key,
	    sizeof(key)));
	cr_expect_str_eq(key, "V");
	cr_expect(!avstate_url_find("http://h.example/s/1/X.exe", 26, 11, NULL, 0),
	    "paths are case-sensitive");
}
