/*
 * test_oobfetch.c - unit tests of the oobfetch filter (filters/oobfetch.c)
 *
 * Each test that fetches starts a small HTTP server of its own on
 * 127.0.0.1 (a thread per connection, canned answers by path: programs
 * named like pictures, PDFs, HTML, a redirect, a 404, a large body, a
 * slow answer) and runs OOB events through the filter with
 * allow_private on; the default (allow_private off) must refuse that
 * same loopback server without a single request reaching it. A table
 * checks which addresses count as not public. The server stops with the
 * test (its process ends; Criterion runs each test in its own process).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "config.h"
#include "event.h"
#include "xm.h"
#include "testlib.h"

extern const struct xm_filter_ops oobfetch_filter;
bool oobfetch_addr_private(const char *text);

static int srv_port;
static atomic_int srv_requests;

#define PDF "%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"
#define EVIL_PDF "%PDF-1.4\n% this one is on the bad list\n%%EOF\n"

/* answer - the canned response for PATH into FD */
static void
answer(int fd, const char *path)
{
	static const char mz[] = "MZ\x90\0\3\0\0\0\4\0\0\0\xff\xff\0\0"
	    "This program cannot be run in DOS mode.";
	static const char elf[] = "\x7f" "ELF\2\1\1\0\0\0\0\0\0\0\0\0";
	char head[512];
	const char *body = NULL;
	size_t len = 0;
	int status = 200;
	const char *extra = "";
	char *big = NULL;

	if (strcmp(path, "/photo.jpg") == 0 || strcmp(path,
	    "/holiday%20photo.jpg") == 0) {
		body = mz;
		len = sizeof(mz) - 1;
	} else if (strcmp(path, "/tool") == 0) {
		body = elf;
		len = sizeof(elf) - 1;
	} else if (strcmp(path, "/report.pdf") == 0) {
		body = PDF;
		len = strlen(PDF);
	} else if (strcmp(path, "/evil.pdf") == 0) {
		body = EVIL_PDF;
		len = strlen(EVIL_PDF);
	} else if (strcmp(path, "/pic.jpg") == 0) {
		body = "<!DOCTYPE html><html><body>log in</body></html>";
		len = strlen(body);
	} else if (strcmp(path, "/big.bin") == 0) {
		len = 2 * 1024 * 1024;
		big = calloc(1, len);
		body = big;
	} else if (strcmp(path, "/redirect.pdf") == 0) {
		status = 302;
		extra = "Location: /tool\r\n";
		body = "";
	} else if (strcmp(path, "/slow.pdf") == 0) {
		sleep(3);
		body = PDF;
		len = strlen(PDF);
	} else {
		status = 404;
		body = "no";
		len = 2;
	}
	snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
	    "%sConnection: close\r\n\r\n", status, len, extra);
	/* MSG_NOSIGNAL: curl hangs up on purpose (max_bytes, timeout) */
	if (send(fd, head, strlen(head), MSG_NOSIGNAL) < 0) {
		free(big);
		return;
	}
	while (len > 0) {
		ssize_t w = send(fd, body, len, MSG_NOSIGNAL);

		if (w <= 0)
			break;
		body += w;
		len -= (size_t)w;
	}
	free(big);
}

/* conn_thread - one request, one answer */
static void *
conn_thread(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char req[4096], path[1024] = "/";
	size_t n = 0;
	ssize_t r;

	while (n < sizeof(req) - 1 && (r = read(fd, req + n,
	    sizeof(req) - 1 - n)) > 0) {
		n += (size_t)r;
		req[n] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	req[n] = '\0';
	atomic_fetch_add(&srv_requests, 1);
	sscanf(req, "GET %1023s", path);
	answer(fd, path);
	close(fd);
	return NULL;
}

/* accept_thread - a thread per connection, forever */
static void *
accept_thread(void *arg)
{
	int lfd = (int)(intptr_t)arg, fd;
	pthread_t t;

	while ((fd = accept(lfd, NULL, NULL)) >= 0) {
		pthread_create(&t, NULL, conn_thread, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
	return NULL;
}

/* server_start - listen on 127.0.0.1, a free port (srv_port) */
static void
server_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	pthread_t t;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 16), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	srv_port = ntohs(sa.sin_port);
	atomic_store(&srv_requests, 0);
	pthread_create(&t, NULL, accept_thread, (void *)(intptr_t)fd);
	pthread_detach(t);
}

static void
suite_init(void)
{
	mk_tmpdir();
	server_start();
}

struct frun {
	struct xm_arena *a;
	void *conf, *state;
	struct xm_task t;
};

/* fsetup - defaults + "k=v;k=v" SET, init */
static void
fsetup(struct frun *r, const char *set)
{
	char err[512], *copy, *item, *save, *eq;

	memset(r, 0, sizeof(*r));
	r->conf = xm_calloc(1, oobfetch_filter.conf_size);
	cr_assert_eq(xm_settings_defaults(oobfetch_filter.settings, r->conf,
	    NULL, err, sizeof(err)), 0, "%s", err);
	if (set != NULL) {
		copy = xm_strdup(set);
		for (item = strtok_r(copy, ";", &save); item != NULL;
		    item = strtok_r(NULL, ";", &save)) {
			eq = strchr(item, '=');
			cr_assert_not_null(eq);
			*eq = '\0';
			cr_assert_eq(xm_settings_set(oobfetch_filter.settings,
			    r->conf, item, eq + 1, NULL, err, sizeof(err)), 0,
			    "%s: %s", item, err);
		}
		free(copy);
	}
	cr_assert_eq(oobfetch_filter.init(&r->state, r->conf, err,
	    sizeof(err)), 0, "%s", err);
}

/* fcheck - an OOB iq offering URL (PATH on our server unless it has a
 * scheme); returns whether the filter wanted the event */
static bool
fcheck(struct frun *r, const char *path)
{
	char *url = strstr(path, "://") ? xm_strdup(path) :
	    xm_printf("http://127.0.0.1:%d%s", srv_port, path);
	char *text = xm_printf("origin=s2s\npeer=remote.example\n\n<iq "
	    "from='carol@remote.example/x' to='bob@example.org/y' type='set' "
	    "id='o1'><query xmlns='jabber:iq:oob'><url>%s</url></query></iq>",
	    url);
	bool w;

	if (r->a)
		xm_arena_free(r->a);
	r->a = xm_arena_new();
	memset(&r->t, 0, sizeof(r->t));
	r->t.arena = r->a;
	r->t.ev = event(r->a, text);
	r->t.cur_filter = "oobfetch";
	w = oobfetch_filter.wants(r->state, &r->t);
	oobfetch_filter.check(r->state, &r->t);
	free(text);
	free(url);
	return w;
}

static void
fteardown(struct frun *r)
{
	oobfetch_filter.free(r->state);
	xm_settings_free(oobfetch_filter.settings, r->conf);
	free(r->conf);
	if (r->a)
		xm_arena_free(r->a);
}

/* syms - the symbols, for messages */
static const char *
syms(const struct frun *r)
{
	struct xm_buf b = { 0 };
	const char *s;
	size_t i;

	for (i = 0; i < r->t.nsymbols; i++)
		xm_buf_printf(&b, "%s(%s) ", r->t.symbols[i].name,
		    r->t.symbols[i].detail);
	s = xm_arena_strdup(r->a, b.data ? b.data : "");
	xm_buf_free(&b);
	return s;
}

/* want - exactly the symbols of W (space-separated) */
static void
want(const struct frun *r, const char *w, const char *what)
{
	char *c = xm_strdup(w), *tok, *save;
	size_t n = 0;

	for (tok = strtok_r(c, " ", &save); tok; tok = strtok_r(NULL, " ",
	    &save)) {
		n++;
		cr_expect(xm_task_has_symbol(&r->t, tok), "%s: want %s, got %s",
		    what, tok, syms(r));
	}
	cr_expect_eq(r->t.nsymbols, n, "%s: want [%s], got [%s]", what, w,
	    syms(r));
	free(c);
}

struct fcase {
	const char *name, *set, *path, *want;
	bool final;
};

#define OPEN "fetch=true;allow_private=true"
static const struct fcase fcases[] = {
	{ "program named photo.jpg", OPEN, "/photo.jpg",
	    "TRANSFER_FETCHED_PROGRAM TRANSFER_FETCHED_MISMATCH", true },
	{ "program, encoded name", OPEN, "/holiday%20photo.jpg",
	    "TRANSFER_FETCHED_PROGRAM TRANSFER_FETCHED_MISMATCH", true },
	{ "program, no name", OPEN, "/tool", "TRANSFER_FETCHED_PROGRAM",
	    true },
	{ "program, scored only", OPEN ";final_program=false", "/tool",
	    "TRANSFER_FETCHED_PROGRAM", false },
	{ "a real PDF", OPEN, "/report.pdf", "", false },
	{ "a page named like a picture", OPEN, "/pic.jpg",
	    "TRANSFER_FETCHED_MISMATCH", false },
	{ "a redirect to a program", OPEN, "/redirect.pdf",
	    "TRANSFER_FETCHED_PROGRAM TRANSFER_FETCHED_MISMATCH", true },
	{ "redirects off", OPEN ";max_redirects=0", "/redirect.pdf",
	    "TRANSFER_FETCH_FAILED", false },
	{ "404", OPEN, "/nothing.pdf", "TRANSFER_FETCH_FAILED", false },
	{ "over max_bytes", OPEN ";max_bytes=1M", "/big.bin",
	    "TRANSFER_FETCH_TOO_BIG", false },
	{ "timeout", OPEN ";timeout=300ms", "/slow.pdf",
	    "TRANSFER_FETCH_FAILED", false },
	{ "loopback refused by default", "fetch=true", "/photo.jpg",
	    "TRANSFER_FETCH_FAILED", false },
};

ParameterizedTestParameters(oobfetch, cases)
{
	static size_t idx[XM_ARRAY_LEN(fcases)];
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(fcases); i++)
		idx[i] = i;
	return cr_make_param_array(size_t, idx, XM_ARRAY_LEN(idx));
}

ParameterizedTest(size_t *i, oobfetch, cases, .init = suite_init,
    .fini = rm_tmpdir)
{
	const struct fcase *c = &fcases[*i];
	struct frun r;

	fsetup(&r, c->set);
	cr_expect(fcheck(&r, c->path), "%s: not wanted", c->name);
	want(&r, c->want, c->name);
	cr_expect_eq(r.t.final, c->final, "%s: final %d", c->name, r.t.final);
	if (c->final)
		cr_expect(strstr(r.t.final_text, "The linked file was refused") !=
		    NULL, "%s", r.t.final_text);
	fteardown(&r);
}

Test(oobfetch, off_by_default_fetches_nothing, .init = suite_init,
    .fini = rm_tmpdir)
{
	struct frun r;

	fsetup(&r, NULL);
	cr_expect(!fcheck(&r, "/photo.jpg"));
	want(&r, "", "off");
	cr_expect_eq(atomic_load(&srv_requests), 0);
	fteardown(&r);
}

Test(oobfetch, private_address_never_contacted, .init = suite_init,
    .fini = rm_tmpdir)
{
	struct frun r;
	const char *d;

	fsetup(&r, "fetch=true");
	fcheck(&r, "/photo.jpg");
	cr_expect_eq(atomic_load(&srv_requests), 0, "a request reached us");
	d = r.t.nsymbols ? r.t.symbols[0].detail : "";
	cr_expect(strstr(d, "address 127.0.0.1 refused (not public)") != NULL,
	    "%s", d);
	fteardown(&r);
}

Test(oobfetch, not_http_not_wanted, .init = suite_init, .fini = rm_tmpdir)
{
	struct frun r;

	fsetup(&r, OPEN);
	cr_expect(!fcheck(&r, "ftp://127.0.0.1/photo.jpg"));
	cr_expect(!fcheck(&r, "file:///etc/passwd"));
	want(&r, "", "not http");
	fteardown(&r);
}

Test(oobfetch, bad_hash_of_the_content, .init = suite_init,
    .fini = rm_tmpdir)
{
	struct frun r;
	char path[PATH_MAX + 32], *set, cmd[PATH_MAX + 256];
	FILE *fp;

	/* the list holds the sha-256 of EVIL_PDF, computed here */
	snprintf(path, sizeof(path), "%s/bad.txt", tmpdir);
	snprintf(cmd, sizeof(cmd), "printf '%%s' '%s' | sha256sum > %s",
	    EVIL_PDF, path);
	cr_assert_eq(system(cmd), 0);
	fp = fopen(path, "r");
	cr_assert_not_null(fp);
	fclose(fp);
	set = xm_printf(OPEN ";bad_hashes=%s", path);
	fsetup(&r, set);
	fcheck(&r, "/evil.pdf");
	want(&r, "TRANSFER_FETCHED_BAD_HASH", "evil");
	cr_expect(r.t.final);
	cr_expect(strstr(r.t.final_text, "a known-bad file behind the link"));
	fcheck(&r, "/report.pdf");
	want(&r, "", "clean pdf");
	fteardown(&r);
	free(set);
}

Test(oobfetch, max_urls_per_stanza, .init = suite_init, .fini = rm_tmpdir)
{
	struct frun r;
	char *text;

	fsetup(&r, OPEN ";max_urls=2");
	text = xm_printf("origin=s2s\n\n<message from='c@r.example/x' "
	    "to='b@example.org'><x xmlns='jabber:x:oob'><url>http://"
	    "127.0.0.1:%d/report.pdf</url></x><x xmlns='jabber:x:oob'><url>"
	    "http://127.0.0.1:%d/report.pdf</url></x><x xmlns='jabber:x:oob'>"
	    "<url>http://127.0.0.1:%d/report.pdf</url></x></message>",
	    srv_port, srv_port, srv_port);
	r.a = xm_arena_new();
	r.t.arena = r.a;
	r.t.ev = event(r.a, text);
	oobfetch_filter.check(r.state, &r.t);
	cr_expect_eq(atomic_load(&srv_requests), 2);
	free(text);
	fteardown(&r);
}

Test(oobfetch, which_addresses_are_not_public)
{
	static const struct {
		const char *a;
		bool priv;
	} t[] = {
		{ "127.0.0.1", true }, { "127.9.9.9", true },
		{ "10.1.2.3", true }, { "172.16.0.1", true },
		{ "172.31.255.255", true }, { "172.32.0.1", false },
		{ "192.168.1.1", true }, { "169.254.169.254", true },
		{ "100.64.0.1", true }, { "100.128.0.1", false },
		{ "0.0.0.0", true }, { "224.0.0.1", true },
		{ "198.18.0.1", true }, { "8.8.8.8", false },
		{ "198.51.100.7", false }, { "::1", true }, { "::", true },
		{ "fe80::1", true }, { "fc00::1", true }, { "fd12::1", true },
		{ "::ffff:127.0.0.1", true }, { "::ffff:8.8.8.8", false },
		{ "ff02::1", true }, { "2001:4860:4860::8888", false },
		{ "not an address", true },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++)
		cr_expect_eq(oobfetch_addr_private(t[i].a), t[i].priv, "%s",
		    t[i].a);
}
