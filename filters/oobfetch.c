/*
 * oobfetch.c - the oobfetch filter: look behind out-of-band links
 *
 * Purpose: an OOB link (XEP-0066) names a file on another server; its
 * name can lie. When the operator turns it on (fetch: true; off by
 * default), this filter downloads what the link points to — at most
 * max_bytes, within timeout, over http or https only, never from a
 * loopback, private, link-local or multicast address unless
 * allow_private — and judges the bytes:
 *   TRANSFER_FETCHED_PROGRAM   the content is a program or a shortcut (PE,
 *                              ELF, Mach-O, Windows .lnk, a #! script),
 *                              whatever the link is called;
 *   TRANSFER_FETCHED_MISMATCH  the content is not what the name says (a
 *                              ".jpg" that is an HTML page or an archive);
 *   TRANSFER_FETCHED_BAD_HASH  its md5, sha-1 or sha-256 is on bad_hashes;
 *   TRANSFER_FETCH_TOO_BIG     larger than max_bytes: not judged;
 *   TRANSFER_FETCH_FAILED      no answer, an HTTP error, a timeout, or a
 *                              refused address (score 0 by default).
 * Link reputation is the links filter's business, not this one's.
 *
 * Interface: oobfetch_filter (struct xm_filter_ops), SLOW: check blocks
 * on the network and runs on the worker pool; wants() keeps every event
 * without an http(s) OOB link (and every event while fetch is off) on the
 * event loop. Settings: oobfetch_settings (docs/CONFIGURATION.md,
 * docs/TRANSFER.md).
 *
 * Ownership: the state holds the bad-hash list (read at init, so SIGHUP
 * re-reads it) and points at its config. Each check owns one curl easy
 * handle and one buffer (grown up to max_bytes), freed before it returns.
 *
 * Failure: a fetch that fails adds TRANSFER_FETCH_FAILED and nothing
 * else; the filter never ends the chain for a network error. init fails
 * on a bad-hash file error (file:line) or when libcurl cannot start.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "config.h"
#include "transfer.h"
#include "xm.h"

#define FETCH_SYMBOLS(X) \
	X(FETCHED_PROGRAM, "fetched_program", "10", "the linked content is " \
	    "a program, a shortcut or a script") \
	X(FETCHED_MISMATCH, "fetched_mismatch", "4", "the linked content " \
	    "is not what its name says") \
	X(FETCHED_BAD_HASH, "fetched_bad_hash", "20", "the linked content's " \
	    "hash is on bad_hashes") \
	X(FETCH_TOO_BIG, "fetch_too_big", "1", "the linked content is " \
	    "larger than max_bytes (not judged)") \
	X(FETCH_FAILED, "fetch_failed", "0", "the link could not be " \
	    "fetched (error, timeout, refused address)")

enum fetch_sym {
#define FS_ENUM(tag, name, def, doc) FS_##tag,
	FETCH_SYMBOLS(FS_ENUM)
#undef FS_ENUM
	FS_COUNT
};

static const char *const fetch_symname[FS_COUNT] = {
#define FS_NAME(tag, name, def, doc) "TRANSFER_" #tag,
	FETCH_SYMBOLS(FS_NAME)
#undef FS_NAME
};

struct oobfetch_conf {
	bool fetch;
	long long max_bytes;
	double timeout;
	double connect_timeout;
	long long max_redirects;
	long long max_urls;
	bool allow_private;
	char *user_agent;
	struct xm_strlist bad_hashes;
	bool final_program;
	bool final_bad_hash;
	char *blocked_text;
	double score[FS_COUNT];
};

#define FOFF(f) offsetof(struct oobfetch_conf, f)
#define FETCH_SCORE(tag, name, def, doc) \
	{ "score_" name, XM_ST_DOUBLE, FOFF(score[FS_##tag]), def, \
	    0, 1000, NULL, true, "Score of TRANSFER_" #tag ": " doc "." },

static const struct xm_setting oobfetch_settings[] = {
	{ "fetch", XM_ST_BOOL, FOFF(fetch), "false", 0, 0, NULL, true,
	    "Download what out-of-band links point to and judge the bytes; "
	    "off: no remote file is ever fetched" },
	{ "max_bytes", XM_ST_SIZE, FOFF(max_bytes), "10M", 1, 1024.0 * 1024 *
	    1024, NULL, true,
	    "Most bytes read from one link; a larger file is not judged "
	    "(TRANSFER_FETCH_TOO_BIG)" },
	{ "timeout", XM_ST_DURATION, FOFF(timeout), "10s", 0.01, 600, NULL,
	    true, "Longest one fetch may take, redirects included" },
	{ "connect_timeout", XM_ST_DURATION, FOFF(connect_timeout), "3s",
	    0.01, 600, NULL, true, "Longest wait for a connection" },
	{ "max_redirects", XM_ST_INT, FOFF(max_redirects), "3", 0, 20, NULL,
	    true, "Redirects followed (to http or https only)" },
	{ "max_urls", XM_ST_INT, FOFF(max_urls), "2", 1, 16, NULL, true,
	    "Most links fetched for one stanza" },
	{ "allow_private", XM_ST_BOOL, FOFF(allow_private), "false", 0, 0,
	    NULL, true,
	    "Also connect to loopback, private, link-local, shared and "
	    "unique-local addresses (off: a link cannot make the daemon "
	    "reach into the local network)" },
	{ "user_agent", XM_ST_STRING, FOFF(user_agent), "xmilter-oobfetch",
	    0, 0, NULL, true, "User-Agent of the requests" },
	{ "bad_hashes", XM_ST_PATHS, FOFF(bad_hashes), "", 0, 0, NULL, true,
	    "Files of known-bad file hashes (the transfer filter's format; "
	    "point both at the same files), read at start and on SIGHUP" },
	{ "final_program", XM_ST_BOOL, FOFF(final_program), "true", 0, 0,
	    NULL, true, "TRANSFER_FETCHED_PROGRAM ends the chain with a "
	    "reject" },
	{ "final_bad_hash", XM_ST_BOOL, FOFF(final_bad_hash), "true", 0, 0,
	    NULL, true, "TRANSFER_FETCHED_BAD_HASH ends the chain with a "
	    "reject" },
	{ "blocked_text", XM_ST_STRING, FOFF(blocked_text),
	    "The linked file was refused by the server's file-transfer "
	    "policy.", 0, 0, NULL, true, "Error text of the rejections" },
	FETCH_SYMBOLS(FETCH_SCORE)
	XM_SETTINGS_END
};

#undef FETCH_SCORE

struct oobfetch_state {
	const struct oobfetch_conf *c;
	struct transfer_hashlist bad;
};

/* one fetch in progress */
struct fetch {
	const struct oobfetch_conf *c;
	unsigned char *buf;   /* grows up to max_bytes */
	size_t len, cap;
	bool too_big;
	bool refused;         /* a private address was refused */
	char refused_addr[INET6_ADDRSTRLEN];
};

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static CURLcode fetch_global_rc;

/* fetch_global_init - libcurl's process-wide set-up, once */
static void
fetch_global_init(void)
{
	fetch_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* addr_private - V4 or V6 address (network order) is not a public one */
static bool
addr_private(int family, const void *a)
{
	if (family == AF_INET) {
		const unsigned char *b = a;

		return b[0] == 0 || b[0] == 10 || b[0] == 127 ||
		    (b[0] == 100 && (b[1] & 0xc0) == 64) ||      /* CGN */
		    (b[0] == 169 && b[1] == 254) ||
		    (b[0] == 172 && (b[1] & 0xf0) == 16) ||
		    (b[0] == 192 && b[1] == 168) ||
		    (b[0] == 192 && b[1] == 0 && b[2] == 0) ||
		    (b[0] == 198 && (b[1] & 0xfe) == 18) ||      /* bench */
		    b[0] >= 224;                                 /* mcast */
	}
	if (family == AF_INET6) {
		const unsigned char *b = a;
		static const unsigned char zero[10];

		if (memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff)
			return addr_private(AF_INET, b + 12);     /* mapped */
		if (memcmp(b, zero, 10) == 0 && b[10] == 0 && b[11] == 0 &&
		    b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1)
			return true;                              /* :: ::1 */
		return (b[0] & 0xfe) == 0xfc ||                   /* ULA */
		    (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||    /* link */
		    b[0] == 0xff ||                               /* mcast */
		    (b[0] == 0x20 && b[1] == 0x02) ||             /* 6to4 */
		    (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff &&
		    b[3] == 0x9b);                                /* NAT64 */
	}
	return true;
}

/* oobfetch_addr_private - for tests: TEXT is a non-public address */
bool oobfetch_addr_private(const char *text);
bool
oobfetch_addr_private(const char *text)
{
	unsigned char b[16];

	if (inet_pton(AF_INET, text, b) == 1)
		return addr_private(AF_INET, b);
	if (inet_pton(AF_INET6, text, b) == 1)
		return addr_private(AF_INET6, b);
	return true;
}

/* fetch_opensocket - refuse non-public addresses (every connect, so
 * redirects and DNS answers that change cannot get around it) */
static curl_socket_t
fetch_opensocket(void *ud, curlsocktype purpose, struct curl_sockaddr *sa)
{
	struct fetch *f = ud;
	const void *a = NULL;

	if (sa->family == AF_INET)
		a = &((struct sockaddr_in *)(void *)&sa->addr)->sin_addr;
	else if (sa->family == AF_INET6)
		a = &((struct sockaddr_in6 *)(void *)&sa->addr)->sin6_addr;
	if (!f->c->allow_private && (a == NULL || addr_private(sa->family,
	    a))) {
		f->refused = true;
		if (a != NULL)
			inet_ntop(sa->family, a, f->refused_addr,
			    sizeof(f->refused_addr));
		return CURL_SOCKET_BAD;
	}
	return socket(sa->family, sa->socktype, sa->protocol);
}

/* fetch_write - keep the body, at most max_bytes */
static size_t
fetch_write(char *p, size_t size, size_t n, void *ud)
{
	struct fetch *f = ud;
	size_t len = size * n;

	if (len > (size_t)f->c->max_bytes - f->len) {
		f->too_big = true;
		return 0;   /* abort the transfer */
	}
	if (f->len + len > f->cap) {
		size_t cap = f->cap ? f->cap : 16384;

		while (cap < f->len + len)
			cap *= 2;
		if (cap > (size_t)f->c->max_bytes)
			cap = (size_t)f->c->max_bytes;
		f->buf = xm_realloc(f->buf, cap);
		f->cap = cap;
	}
	memcpy(f->buf + f->len, p, len);
	f->len += len;
	return len;
}

/* what the first bytes say */
enum sniff {
	SN_UNKNOWN = 0, SN_PROGRAM, SN_ARCHIVE, SN_OLE, SN_PDF, SN_IMAGE,
	SN_HTML, SN_AUDIO, SN_VIDEO
};
static const char *const sniff_name[] = {
	"unknown", "program", "archive", "OLE document", "PDF", "image",
	"HTML", "audio", "video"
};

/* sniff - the family of B (N bytes); *what names the format */
static enum sniff
sniff(const unsigned char *b, size_t n, const char **what)
{
	static const struct {
		const char *magic;
		size_t len, off;
		enum sniff s;
		const char *what;
	} m[] = {
		{ "MZ", 2, 0, SN_PROGRAM, "a Windows program (MZ)" },
		{ "\x7f" "ELF", 4, 0, SN_PROGRAM, "an ELF program" },
		{ "\xcf\xfa\xed\xfe", 4, 0, SN_PROGRAM, "a Mach-O program" },
		{ "\xce\xfa\xed\xfe", 4, 0, SN_PROGRAM, "a Mach-O program" },
		{ "\xca\xfe\xba\xbe", 4, 0, SN_PROGRAM, "a Mach-O or Java "
		    "program" },
		{ "L\0\0\0\x01\x14\x02\0", 8, 0, SN_PROGRAM, "a Windows "
		    "shortcut (.lnk)" },
		{ "#!", 2, 0, SN_PROGRAM, "a script (#!)" },
		{ "PK\x03\x04", 4, 0, SN_ARCHIVE, "a ZIP archive" },
		{ "Rar!", 4, 0, SN_ARCHIVE, "a RAR archive" },
		{ "7z\xbc\xaf\x27\x1c", 6, 0, SN_ARCHIVE, "a 7-Zip archive" },
		{ "\x1f\x8b", 2, 0, SN_ARCHIVE, "gzip data" },
		{ "MSCF", 4, 0, SN_ARCHIVE, "a CAB archive" },
		{ "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8, 0, SN_OLE, "an OLE "
		    "document (doc, xls, msi)" },
		{ "%PDF-", 5, 0, SN_PDF, "a PDF" },
		{ "\xff\xd8\xff", 3, 0, SN_IMAGE, "a JPEG image" },
		{ "\x89PNG\r\n\x1a\n", 8, 0, SN_IMAGE, "a PNG image" },
		{ "GIF8", 4, 0, SN_IMAGE, "a GIF image" },
		{ "BM", 2, 0, SN_IMAGE, "a BMP image" },
		{ "WEBP", 4, 8, SN_IMAGE, "a WebP image" },
		{ "ID3", 3, 0, SN_AUDIO, "MP3 audio" },
		{ "fLaC", 4, 0, SN_AUDIO, "FLAC audio" },
		{ "ftyp", 4, 4, SN_VIDEO, "MP4/QuickTime media" },
	};
	size_t i, k;

	*what = "unknown data";
	for (i = 0; i < XM_ARRAY_LEN(m); i++) {
		if (n >= m[i].off + m[i].len &&
		    memcmp(b + m[i].off, m[i].magic, m[i].len) == 0) {
			*what = m[i].what;
			return m[i].s;
		}
	}
	/* HTML: after blanks and a BOM, "<!doctype html" or "<html" */
	k = 0;
	if (n >= 3 && memcmp(b, "\xef\xbb\xbf", 3) == 0)
		k = 3;
	while (k < n && (b[k] == ' ' || b[k] == '\t' || b[k] == '\r' ||
	    b[k] == '\n'))
		k++;
	if ((n - k >= 14 && strncasecmp((const char *)b + k,
	    "<!doctype html", 14) == 0) || (n - k >= 5 &&
	    strncasecmp((const char *)b + k, "<html", 5) == 0)) {
		*what = "an HTML page";
		return SN_HTML;
	}
	return SN_UNKNOWN;
}

/* ext_family - what a name with extension EXT should contain */
static enum sniff
ext_family(const char *ext)
{
	static const struct {
		const char *ext;
		enum sniff s;
	} t[] = {
		{ "jpg", SN_IMAGE }, { "jpeg", SN_IMAGE }, { "png", SN_IMAGE },
		{ "gif", SN_IMAGE }, { "bmp", SN_IMAGE }, { "webp", SN_IMAGE },
		{ "pdf", SN_PDF }, { "zip", SN_ARCHIVE }, { "rar", SN_ARCHIVE },
		{ "7z", SN_ARCHIVE }, { "gz", SN_ARCHIVE },
		{ "docx", SN_ARCHIVE }, { "xlsx", SN_ARCHIVE },
		{ "pptx", SN_ARCHIVE }, { "odt", SN_ARCHIVE },
		{ "ods", SN_ARCHIVE }, { "doc", SN_OLE }, { "xls", SN_OLE },
		{ "ppt", SN_OLE }, { "html", SN_HTML }, { "htm", SN_HTML },
		{ "mp3", SN_AUDIO }, { "flac", SN_AUDIO }, { "mp4", SN_VIDEO },
		{ "m4a", SN_VIDEO }, { "mov", SN_VIDEO },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++)
		if (strcmp(t[i].ext, ext) == 0)
			return t[i].s;
	return SN_UNKNOWN;
}

/* url_ext - lower-case extension of the URL path's last segment, in A */
static const char *
url_ext(struct xm_arena *a, const char *url)
{
	const char *p = strstr(url, "://"), *end, *dot;
	char *e;
	size_t i, n;

	p = p ? p + 3 : url;
	p += strcspn(p, "/?#");
	end = p + strcspn(p, "?#");
	for (dot = end; dot > p && dot[-1] != '.' && dot[-1] != '/'; dot--)
		;
	if (dot == p || dot[-1] != '.')
		return "";
	n = (size_t)(end - dot);
	if (n == 0 || n > 8)
		return "";
	e = xm_arena_strndup(a, dot, n);
	for (i = 0; i < n; i++) {
		if (e[i] >= 'A' && e[i] <= 'Z')
			e[i] = (char)(e[i] + 32);
		else if (!((e[i] >= 'a' && e[i] <= 'z') || (e[i] >= '0' &&
		    e[i] <= '9')))
			return "";
	}
	return e;
}

/* fsym - add symbol S (once per event) */
static void XM_PRINTF(4, 5)
fsym(struct xm_task *t, const struct oobfetch_conf *c, enum fetch_sym s,
    const char *fmt, ...)
{
	va_list ap;
	char *d;

	if (xm_task_has_symbol(t, fetch_symname[s]))
		return;
	va_start(ap, fmt);
	d = xm_arena_vprintf(t->arena, fmt, ap);
	va_end(ap);
	xm_task_symbol(t, fetch_symname[s], c->score[s], 0, "%s", d);
}

/* digest_listed - one digest of B on the bad list */
static bool
digest_listed(const struct oobfetch_state *st, const EVP_MD *md,
    const char *algo, const unsigned char *b, size_t n)
{
	unsigned char out[EVP_MAX_MD_SIZE];
	unsigned int olen = 0;

	if (EVP_Digest(b, n, out, &olen, md, NULL) != 1)
		return false;
	return transfer_hashes_has(&st->bad, algo, out, olen);
}

/* fetch_one - fetch URL and judge it; true when it ended the chain */
static bool
fetch_one(struct oobfetch_state *st, struct xm_task *t, const char *url)
{
	const struct oobfetch_conf *c = st->c;
	struct fetch f = { .c = c };
	char errbuf[CURL_ERROR_SIZE] = "";
	const char *shown = log_escape(t->arena, url, 120), *what;
	CURL *h;
	CURLcode rc;
	long code = 0;
	enum sniff got, want;
	bool ended = false;

	h = curl_easy_init();
	if (h == NULL) {
		fsym(t, c, FS_FETCH_FAILED, "%s: curl_easy_init failed", shown);
		return false;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, c->max_redirects > 0 ?
	    1L : 0L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, (long)c->max_redirects);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(c->timeout * 1000));
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(c->connect_timeout * 1000));
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)c->max_bytes);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fetch_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &f);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, fetch_opensocket);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &f);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "identity");
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(h);

	if (f.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		fsym(t, c, FS_FETCH_TOO_BIG, "%s: more than %lld bytes", shown,
		    c->max_bytes);
		goto out;
	}
	if (f.refused) {
		fsym(t, c, FS_FETCH_FAILED, "%s: address %s refused (not "
		    "public)", shown, f.refused_addr[0] ? f.refused_addr :
		    "?");
		goto out;
	}
	if (rc != CURLE_OK) {
		fsym(t, c, FS_FETCH_FAILED, "%s: %s", shown,
		    log_escape(t->arena, errbuf[0] ? errbuf :
		    curl_easy_strerror(rc), 120));
		goto out;
	}
	if (code < 200 || code >= 300) {   /* an unfollowed redirect too */
		fsym(t, c, FS_FETCH_FAILED, "%s: HTTP %ld", shown, code);
		goto out;
	}
	got = sniff(f.buf, f.len, &what);
	if (got == SN_PROGRAM) {
		fsym(t, c, FS_FETCHED_PROGRAM, "%s is %s", shown, what);
		if (c->final_program) {
			xm_task_final(t, XM_REJECT, "policy-violation",
			    xm_arena_printf(t->arena, "%s (%s)", c->blocked_text,
			    "a program behind the link"));
			ended = true;
		}
	}
	want = ext_family(url_ext(t->arena, url));
	if (want != SN_UNKNOWN && got != SN_UNKNOWN && got != want)
		fsym(t, c, FS_FETCHED_MISMATCH, "%s is %s, not %s", shown,
		    what, sniff_name[want]);
	if (st->bad.n > 0 && (digest_listed(st, EVP_sha256(), "sha-256",
	    f.buf, f.len) || digest_listed(st, EVP_sha1(), "sha-1", f.buf,
	    f.len) || digest_listed(st, EVP_md5(), "md5", f.buf, f.len))) {
		fsym(t, c, FS_FETCHED_BAD_HASH, "%s: %zu bytes, a known-bad "
		    "file", shown, f.len);
		if (c->final_bad_hash && !ended) {
			xm_task_final(t, XM_REJECT, "policy-violation",
			    xm_arena_printf(t->arena, "%s (%s)", c->blocked_text,
			    "a known-bad file behind the link"));
			ended = true;
		}
	}
out:
	free(f.buf);
	return ended;
}

/* is_http - URL starts with http:// or https:// */
static bool
is_http(const char *url)
{
	while (url != NULL && (*url == ' ' || *url == '\t' || *url == '\n'))
		url++;
	return url != NULL && (strncasecmp(url, "http://", 7) == 0 ||
	    strncasecmp(url, "https://", 8) == 0);
}

/* oobfetch_wants - only events with an http(s) OOB link, and only when on */
static bool
oobfetch_wants(void *state, const struct xm_task *t)
{
	const struct oobfetch_state *st = state;
	size_t i;

	if (!st->c->fetch)
		return false;
	for (i = 0; i < t->ev->nfiles; i++)
		if (t->ev->files[i].method == XM_FT_OOB &&
		    is_http(t->ev->files[i].url))
			return true;
	return false;
}

/* oobfetch_check - fetch each OOB link (up to max_urls) and judge it */
static void
oobfetch_check(void *state, struct xm_task *t)
{
	struct oobfetch_state *st = state;
	size_t i, done = 0;

	if (!oobfetch_wants(state, t))
		return;
	for (i = 0; i < t->ev->nfiles && done < (size_t)st->c->max_urls;
	    i++) {
		const struct xm_file *f = &t->ev->files[i];
		const char *u = f->url;

		if (f->method != XM_FT_OOB || !is_http(u))
			continue;
		while (*u == ' ' || *u == '\t' || *u == '\n')
			u++;
		done++;
		if (fetch_one(st, t, u))
			return;
	}
}

/* oobfetch_init - start libcurl once, read the bad-hash files */
static int
oobfetch_init(void **state, const void *conf, char *err, size_t errlen)
{
	const struct oobfetch_conf *c = conf;
	struct oobfetch_state *st;

	pthread_once(&fetch_once, fetch_global_init);
	if (fetch_global_rc != CURLE_OK) {
		snprintf(err, errlen, "oobfetch: curl_global_init: %s",
		    curl_easy_strerror(fetch_global_rc));
		return -1;
	}
	st = xm_calloc(1, sizeof(*st));
	st->c = c;
	if (transfer_hashes_load(&c->bad_hashes, 100000000, &st->bad, err,
	    errlen) < 0) {
		free(st);
		return -1;
	}
	*state = st;
	return 0;
}

/* oobfetch_free - free the state */
static void
oobfetch_free(void *state)
{
	struct oobfetch_state *st = state;

	if (st == NULL)
		return;
	transfer_hashes_free(&st->bad);
	free(st);
}

const struct xm_filter_ops oobfetch_filter = {
	.name = "oobfetch",
	.abi = XM_FILTER_ABI,
	.flags = XM_FILTER_SLOW,
	.conf_size = sizeof(struct oobfetch_conf),
	.settings = oobfetch_settings,
	.init = oobfetch_init,
	.check = oobfetch_check,
	.free = oobfetch_free,
	.wants = oobfetch_wants,
};
