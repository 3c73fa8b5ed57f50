/*
 * xmfeed.c - send the events of a file to xmilterd, print the verdicts
 *
 * Usage: xmfeed (-s SOCKET | -T HOST:PORT) [-n] [-p] FILE
 *
 * Plays the glue on one connection: HELLO, then one FILTER per event of
 * FILE (the same text `xmilter check` reads), one at a time, each
 * answered before the next is sent, so the output follows the file's
 * order. Prints one line per verdict: the stanza's id, the action and
 * the symbols ("-" when none), e.g. "s012 reject RATE_STRANGER,RATE_BLOCKED".
 * With -n, only the count line. The last line is "sent N answered M".
 * With -p (pipelined, at most 256 events), every FILTER is sent at once
 * and the verdicts are printed in the order they come (so a test can
 * see that one request did not wait for another), each line flushed.
 *
 * Exit status: 0 when every request got its verdict; 1 when the daemon
 * closed, sent BYE or broke the protocol; 2 on usage or I/O errors.
 * Used by tests/e2e/ratelimit.sh (two daemons sharing Redis).
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "event.h"
#include "proto.h"
#include "xm.h"

/* dial - connect to the Unix socket or HOST:PORT */
static int
dial(const char *sock, const char *tcp)
{
	int fd;

	if (sock != NULL) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(sock) >= sizeof(sun.sun_path))
			return -1;
		strcpy(sun.sun_path, sock);
		if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			close(fd);
			return -1;
		}
		return fd;
	} else {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		const char *colon = strrchr(tcp, ':');
		long long port;
		char host[64];

		if (colon == NULL || (size_t)(colon - tcp) >= sizeof(host) ||
		    xm_parse_ll(colon + 1, 1, 65535, &port) < 0)
			return -1;
		memcpy(host, tcp, (size_t)(colon - tcp));
		host[colon - tcp] = '\0';
		sin.sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
			return -1;
		if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
			close(fd);
			return -1;
		}
		return fd;
	}
}

/* next_frame - read until one frame is in IN; 1, or 0 on close/error */
static int
next_frame(int fd, struct xm_buf *in, struct proto_frame *f, size_t *used)
{
	char err[256], tmp[65536];
	int code;

	for (;;) {
		int rc = proto_parse_frame(in->data ? in->data : "", in->len,
		    PROTO_MAX_FRAME_LIMIT, f, used, &code, err, sizeof(err));
		ssize_t n;

		if (rc > 0)
			return 1;
		if (rc < 0) {
			fprintf(stderr, "xmfeed: bad frame: %s\n", err);
			return 0;
		}
		if ((n = read(fd, tmp, sizeof(tmp))) <= 0)
			return 0;
		xm_buf_append(in, tmp, (size_t)n);
	}
}

/* print_verdict - one line for the verdict F of the stanza ID */
static void
print_verdict(struct xm_arena *a, const char *id, const struct proto_frame *f)
{
	struct xm_field *kv;
	const char *rest, *act;
	size_t nf, restlen, i;
	char err[256];
	bool any = false;

	if (proto_parse_kv(a, f->body, f->len, 1000, &kv, &nf, &rest,
	    &restlen, err, sizeof(err)) != 0)
		return;
	act = proto_kv_get(kv, nf, "action");
	printf("%s %s ", id, act ? act : "?");
	for (i = 0; i < nf; i++) {
		if (strcmp(kv[i].key, "symbol") != 0)
			continue;
		printf("%s%.*s", any ? "," : "",
		    (int)strcspn(kv[i].value, " "), kv[i].value);
		any = true;
	}
	printf("%s\n", any ? "" : "-");
	fflush(stdout);
}

/* slurp - the whole file */
static char *
slurp(const char *path, size_t *len)
{
	struct xm_buf b = { 0 };
	char tmp[65536];
	size_t n;
	FILE *fp = fopen(path, "r");

	if (fp == NULL)
		return NULL;
	while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0)
		xm_buf_append(&b, tmp, n);
	fclose(fp);
	*len = b.len;
	return b.data ? b.data : xm_strdup("");
}

/* main - options, then the run */
int
main(int argc, char **argv)
{
	const char *sock = NULL, *tcp = NULL;
	struct xm_event_limits lim;
	struct xm_buf out = { 0 }, in = { 0 };
	struct proto_frame f;
	bool quiet = false, pipelined = false;
	unsigned long long sent = 0, answered = 0;
	char *ids[256];
	size_t len, off = 0, used;
	char *text, err[512];
	int c, fd, rc = 0;

	while ((c = getopt(argc, argv, "s:T:np")) != -1) {
		if (c == 'p')
			pipelined = true;
		else if (c == 's')
			sock = optarg;
		else if (c == 'T')
			tcp = optarg;
		else if (c == 'n')
			quiet = true;
		else
			goto usage;
	}
	if ((sock == NULL) == (tcp == NULL) || optind + 1 != argc)
		goto usage;
	if ((text = slurp(argv[optind], &len)) == NULL) {
		fprintf(stderr, "xmfeed: %s: %s\n", argv[optind], strerror(errno));
		return 2;
	}
	if ((fd = dial(sock, tcp)) < 0) {
		fprintf(stderr, "xmfeed: cannot connect to %s\n", sock ? sock : tcp);
		return 2;
	}
	{
		const char *hello = pipelined ? "version=1\nserver=xmfeed\n"
		    "max-inflight=256\n" : "version=1\nserver=xmfeed\n"
		    "max-inflight=1\n";

		proto_write_frame(&out, PROTO_HELLO, 0, hello, strlen(hello));
	}
	if (xm_write_all(fd, out.data, out.len) < 0 ||
	    !next_frame(fd, &in, &f, &used) || f.verb != PROTO_HELLO) {
		fprintf(stderr, "xmfeed: no HELLO from the daemon\n");
		return 1;
	}
	xm_buf_consume(&in, used);
	xm_event_limits_default(&lim);
	lim.max_stanza = 16u << 20;
	while (off < len) {
		struct xm_arena *a = xm_arena_new();
		struct xm_event *ev;
		size_t evlen = 0;
		const char *stanza_id;
		int prc;

		prc = xm_event_parse(a, text + off, len - off, &lim, &ev, &evlen,
		    err, sizeof(err));
		if (prc == 1) {
			xm_arena_free(a);
			break;
		}
		if (prc < 0) {
			fprintf(stderr, "xmfeed: event at byte %zu: %s\n", off, err);
			return 2;
		}
		stanza_id = ev->id ? ev->id : "-";
		if (pipelined && sent == XM_ARRAY_LEN(ids)) {
			fprintf(stderr, "xmfeed: -p takes at most %zu events\n",
			    XM_ARRAY_LEN(ids));
			return 2;
		}
		xm_buf_reset(&out);
		proto_write_frame(&out, PROTO_FILTER, ++sent, text + off, evlen);
		off += evlen;
		if (xm_write_all(fd, out.data, out.len) < 0) {
			rc = 1;
			xm_arena_free(a);
			break;
		}
		if (pipelined) {  /* its verdict is read after the last one */
			ids[sent - 1] = xm_strdup(stanza_id);
			xm_arena_free(a);
			continue;
		}
		if (!next_frame(fd, &in, &f, &used) || f.verb != PROTO_VERDICT ||
		    f.id != sent) {
			fprintf(stderr, "xmfeed: no verdict for request %llu\n",
			    sent);
			rc = 1;
			xm_arena_free(a);
			break;
		}
		answered++;
		if (!quiet)
			print_verdict(a, stanza_id, &f);
		xm_buf_consume(&in, used);
		xm_arena_free(a);
	}
	/* -p: the verdicts in the order they come */
	while (pipelined && rc == 0 && answered < sent) {
		struct xm_arena *a;

		if (!next_frame(fd, &in, &f, &used) || f.verb != PROTO_VERDICT ||
		    f.id == 0 || f.id > sent || ids[f.id - 1] == NULL) {
			fprintf(stderr, "xmfeed: %llu of %llu verdicts, then none "
			    "or a bad one\n", answered, sent);
			rc = 1;
			break;
		}
		answered++;
		a = xm_arena_new();
		if (!quiet)
			print_verdict(a, ids[f.id - 1], &f);
		xm_arena_free(a);
		free(ids[f.id - 1]);
		ids[f.id - 1] = NULL;   /* a second verdict for it is bad */
		xm_buf_consume(&in, used);
	}
	printf("sent %llu answered %llu\n", sent, answered);
	close(fd);
	free(text);
	xm_buf_free(&in);
	xm_buf_free(&out);
	return rc != 0 || answered != sent ? 1 : 0;
usage:
	fprintf(stderr, "usage: xmfeed (-s SOCKET | -T HOST:PORT) [-n] [-p] "
	    "FILE\n");
	return 2;
}
