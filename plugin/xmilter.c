/*
 * xmilter.c - the operator's command: check, lint, health, config-doc
 *
 *   xmilter check [-c CONF] FILE...   run the daemon's chain over event
 *                                     files, one JSON verdict per line
 *   xmilter lint [-c CONF]            load and compile a configuration
 *   xmilter health [-s SOCKET] [-t S] ask a running xmilterd (HELLO
 *                                     healthcheck=1)
 *   xmilter config-doc                the configuration reference
 *   xmilter quarantine ...            list, show, release, delete, purge
 *                                     quarantined items (quarantine_cli.c)
 *   xmilter archive ...               search, export, verify, purge the
 *                                     compliance archive (archive_cli.c)
 *
 * check uses the same chain code as the daemon (chain.c), carries state
 * from event to event and takes the clock from each event's time, so a
 * replay gives the same verdicts every run. Exit status: 0 fine, 1 usage
 * or configuration error, 2 unreadable or malformed input, 3 daemon
 * unhealthy or unreachable.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "chain.h"
#include "config.h"
#include "event.h"
#include "state.h"
#include "proto.h"
#include "archive.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONF SYSCONFDIR "/xmilter/xmilter.yml"
#define MAX_INPUT (1024L * 1024 * 1024)

int xm_quarantine_cli(int argc, char **argv);  /* quarantine_cli.c */

/* usage - print how to call and exit 1 */
static void XM_NORETURN
usage(void)
{
	fprintf(stderr,
	    "usage: xmilter check [-c CONF] FILE...   (FILE - is stdin)\n"
	    "       xmilter lint [-c CONF]\n"
	    "       xmilter health [-c CONF | -s SOCKET] [-t SECONDS]\n"
	    "       xmilter config-doc\n"
	    "       xmilter quarantine list|show|release|delete|purge ...\n");
	exit(1);
}

/* default_conf - the installed config if it exists, else built-ins */
static const char *
default_conf(void)
{
	return access(DEFAULT_CONF, R_OK) == 0 ? DEFAULT_CONF : NULL;
}

/* load_chain - config and chain, or exit 1 with the error */
static struct xm_chain *
load_chain(const char *path)
{
	struct xm_config *conf;
	struct xm_chain *chain;
	char err[1024];

	if ((conf = xm_config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "xmilter: %s\n", err);
		exit(1);
	}
	if ((chain = xm_chain_new(conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "xmilter: %s\n", err);
		exit(1);
	}
	return chain;
}

/* read_all - the whole of FP (bounded), heap */
static char *
read_all(FILE *fp, const char *name, size_t *len)
{
	struct xm_buf b = { 0 };
	char tmp[65536];
	size_t n;

	while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0) {
		if (b.len + n > (size_t)MAX_INPUT) {
			fprintf(stderr, "xmilter: %s: larger than %ld bytes\n", name,
			    MAX_INPUT);
			xm_buf_free(&b);
			return NULL;
		}
		xm_buf_append(&b, tmp, n);
	}
	if (ferror(fp)) {
		fprintf(stderr, "xmilter: %s: %s\n", name, strerror(errno));
		xm_buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return b.data ? b.data : xm_strdup("");
}

/* the archive `xmilter check` writes to when archive.check is on (issue 6) */
static struct xm_archive *check_archive;

/* check_archive_one - archive one checked event, waiting for must-archive */
static void
check_archive_one(struct xm_arena *a, const struct xm_event *ev,
    const struct xm_verdict *v, size_t n)
{
	const char *text = xm_event_format(a, ev, NULL);

	if (xm_archive_submit_wait(check_archive, ev, text, strlen(text), v, n,
	    xm_now()) < 0)
		fprintf(stderr, "xmilter: event %zu: could not be archived\n", n);
}

/* check_file - every event of one file; 0, or 2 on bad input */
static int
check_file(const struct xm_chain *chain, const char *name)
{
	const struct xm_event_limits *lim = xm_chain_limits(chain);
	FILE *fp = strcmp(name, "-") == 0 ? stdin : fopen(name, "r");
	size_t len, pos = 0, used, n = 0;
	char *buf, err[512];
	int rc = 0;

	if (fp == NULL) {
		fprintf(stderr, "xmilter: %s: %s\n", name, strerror(errno));
		return 2;
	}
	buf = read_all(fp, name, &len);
	if (fp != stdin)
		fclose(fp);
	if (buf == NULL)
		return 2;
	for (;;) {
		struct xm_arena *a = xm_arena_new();
		struct xm_event *ev;
		struct xm_task t;
		struct xm_verdict v;
		int prc;

		prc = xm_event_parse(a, buf + pos, len - pos, lim, &ev, &used,
		    err, sizeof(err));
		if (prc == 1) {
			xm_arena_free(a);
			break;
		}
		n++;
		if (prc < 0) {
			xm_verdict_malformed(chain, a, err, &v);
			printf("%s\n", xm_verdict_json(a, NULL, &v));
			fprintf(stderr, "xmilter: %s: event %zu: %s (the rest of "
			    "the file is skipped)\n", name, n, err);
			xm_arena_free(a);
			rc = 2;
			break;
		}
		pos += used;
		xm_task_init(&t, chain, a, ev, ev->time >= 0 ? ev->time : xm_now());
		xm_chain_check(chain, &t, &v);
		if (check_archive != NULL)  /* issue 6: archive.check */
			check_archive_one(a, ev, &v, n);
		printf("%s\n", xm_verdict_json(a, ev, &v));
		xm_arena_free(a);
	}
	free(buf);
	fflush(stdout);
	return rc;
}

/* cmd_check - xmilter check */
static int
cmd_check(int argc, char **argv)
{
	const char *conf = default_conf();
	struct xm_chain *chain;
	int c, i, rc = 0;

	while ((c = getopt(argc, argv, "c:")) != -1) {
		if (c == 'c')
			conf = optarg;
		else
			usage();
	}
	if (optind >= argc)
		usage();
	/* a replay counts in its own memory, never in the nodes' Redis */
	xm_state_local_only();
	chain = load_chain(conf);
	if (xm_chain_config(chain)->archive.check) {  /* issue 6 */
		char err[1024];

		check_archive = xm_archive_open(xm_chain_config(chain), err,
		    sizeof(err));
		if (check_archive == NULL && err[0] != '\0') {
			fprintf(stderr, "xmilter: %s\n", err);
			return 1;
		}
	}
	for (i = optind; i < argc; i++)
		if (check_file(chain, argv[i]) != 0)
			rc = 2;
	xm_archive_close(check_archive);
	xm_chain_unref(chain);
	return rc;
}

/* cmd_lint - load and compile a config, report */
static int
cmd_lint(int argc, char **argv)
{
	const char *conf = default_conf();
	const struct xm_config *cf;
	struct xm_chain *chain;
	int c;

	while ((c = getopt(argc, argv, "c:")) != -1) {
		if (c == 'c')
			conf = optarg;
		else
			usage();
	}
	xm_state_local_only();   /* lint checks a Redis URL, never connects */
	chain = load_chain(conf);
	cf = xm_chain_config(chain);
	printf("%s: ok (%zu scope%s besides global)\n",
	    conf ? conf : "built-in defaults", cf->nscopes,
	    cf->nscopes == 1 ? "" : "s");
	xm_chain_unref(chain);
	return 0;
}

/* cmd_health - HELLO healthcheck=1 to a running daemon */
static int
cmd_health(int argc, char **argv)
{
	const char *conf = default_conf(), *sock = NULL;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct xm_buf in = { 0 }, out = { 0 };
	struct proto_frame f;
	double timeout = 5, deadline;
	int c, fd, code, rc = 3;
	size_t used;
	char err[256];

	while ((c = getopt(argc, argv, "c:s:t:")) != -1) {
		if (c == 'c')
			conf = optarg;
		else if (c == 's')
			sock = optarg;
		else if (c == 't' && xm_parse_double(optarg, &timeout) == 0)
			;
		else
			usage();
	}
	if (sock == NULL) {
		struct xm_config *cf = xm_config_load(conf, err, sizeof(err));

		if (cf == NULL) {
			fprintf(stderr, "xmilter: %s\n", err);
			return 1;
		}
		sock = xm_strdup(cf->daemon.socket);
		xm_config_free(cf);
	}
	if (strlen(sock) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "xmilter: socket path too long: %s\n", sock);
		return 1;
	}
	strcpy(sun.sun_path, sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		printf("unreachable: %s: %s\n", sock, strerror(errno));
		return 3;
	}
	{
		static const char hello[] =
		    "version=1\nserver=xmilter-health\nhealthcheck=1\n";

		proto_write_frame(&out, PROTO_HELLO, 0, hello, sizeof(hello) - 1);
	}
	if (write(fd, out.data, out.len) != (ssize_t)out.len) {
		printf("unreachable: %s: write failed\n", sock);
		close(fd);
		return 3;
	}
	deadline = xm_monotonic() + timeout;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char tmp[4096];
		ssize_t n;
		int prc = proto_parse_frame(in.data ? in.data : "", in.len,
		    PROTO_MAX_FRAME_LIMIT, &f, &used, &code, err, sizeof(err));

		if (prc > 0 && f.verb == PROTO_HELLO) {
			printf("%.*s", (int)f.len, f.body);
			rc = memmem(f.body, f.len, "status=ok\n", 10) ? 0 : 3;
			break;
		}
		if (prc != 0) {
			printf("unhealthy: unexpected answer\n");
			break;
		}
		if (poll(&pfd, 1, (int)((deadline - xm_monotonic()) * 1000)) <= 0) {
			printf("unhealthy: no answer within %.1fs\n", timeout);
			break;
		}
		if ((n = read(fd, tmp, sizeof(tmp))) <= 0) {
			printf("unhealthy: connection closed\n");
			break;
		}
		xm_buf_append(&in, tmp, (size_t)n);
	}
	close(fd);
	xm_buf_free(&in);
	xm_buf_free(&out);
	return rc;
}

int
main(int argc, char **argv)
{
	xm_log_prog = "xmilter";
	xm_log_level = XM_LOG_WARN;
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(argc - 1, argv + 1);
	if (strcmp(argv[1], "lint") == 0)
		return cmd_lint(argc - 1, argv + 1);
	if (strcmp(argv[1], "health") == 0)
		return cmd_health(argc - 1, argv + 1);
	if (strcmp(argv[1], "quarantine") == 0)
		return xm_quarantine_cli(argc - 1, argv + 1);
	if (strcmp(argv[1], "archive") == 0)  /* issue 6: archive_cli.c */
		return xm_archive_cli(argc - 1, argv + 1);
	if (strcmp(argv[1], "config-doc") == 0) {
		xm_config_doc(stdout);
		return 0;
	}
	usage();
}
