/*
 * quarantine_cli.c - `xmilter quarantine`: look at, release, delete and
 * purge what the filter held back (docs/QUARANTINE.md)
 *
 *   xmilter quarantine list    [-c CONF] [STATE]   one line per item
 *   xmilter quarantine show    [-c CONF] [-e] ID   the item (-e: only its
 *                                                  event, for xmilter check)
 *   xmilter quarantine release [-c CONF] [-s SOCKET] [-t SECONDS] ID
 *   xmilter quarantine delete  [-c CONF] ID
 *   xmilter quarantine purge   [-c CONF]
 *
 * list, show, delete and purge open the store named in the configuration
 * directly. release asks the running daemon over its socket (HELLO
 * role=admin, RELEASE ID): only the daemon talks to the glue, and it
 * claims the item in the store before it hands it over, so a second
 * release of the same item is refused whoever asks.
 *
 * Exit status: 0 done; 1 usage or configuration error; 2 no such item or
 * refused (wrong state), or the store failed; 3 the daemon is unreachable,
 * did not answer in time, or could not confirm delivery.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "proto.h"
#include "quarantine.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONF SYSCONFDIR "/xmilter/xmilter.yml"

int xm_quarantine_cli(int argc, char **argv);

/* qusage - how to call, exit 1 */
static void XM_NORETURN
qusage(void)
{
	fprintf(stderr,
	    "usage: xmilter quarantine list [-c CONF] [held|releasing|released|"
	    "deleted]\n"
	    "       xmilter quarantine show [-c CONF] [-e] ID\n"
	    "       xmilter quarantine release [-c CONF] [-s SOCKET] "
	    "[-t SECONDS] ID\n"
	    "       xmilter quarantine delete [-c CONF] ID\n"
	    "       xmilter quarantine purge [-c CONF]\n");
	exit(1);
}

/* safe - S with control characters shown as '?', static buffer */
static const char *
safe(const char *s)
{
	static char buf[1024];
	size_t i;

	for (i = 0; s[i] && i < sizeof(buf) - 1; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

/* load_conf - the configuration, or exit 1 */
static struct xm_config *
load_conf(const char *path)
{
	struct xm_config *cf;
	char err[1024];

	if ((cf = xm_config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "xmilter: %s\n", err);
		exit(1);
	}
	return cf;
}

/* open_store - the configured store, or exit 2 */
static struct xm_qstore *
open_store(const struct xm_config *cf)
{
	struct xm_qstore *q;
	char err[1024];

	if ((q = xm_qstore_open(cf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "xmilter: %s\n", err);
		exit(2);
	}
	return q;
}

/* parse_id - an item id argument, or exit 1 */
static long long
parse_id(const char *s)
{
	long long id;

	if (xm_parse_ll(s, 1, PROTO_MAX_ID, &id) < 0) {
		fprintf(stderr, "xmilter: %s: not an item id\n", s);
		exit(1);
	}
	return id;
}

/* print_row - one line of `list` */
static void
print_row(void *ctx, const struct xm_qitem *it)
{
	char t[40], e[40];
	size_t *n = ctx;

	if ((*n)++ == 0)
		printf("%-6s %-9s %-24s %-24s %6s %-20s %s\n", "ID", "STATE",
		    "QUARANTINED", "EXPIRES", "SCORE", "REASON", "FROM -> TO");
	printf("%-6lld %-9s %-24s %-24s %6.2f %-20s ", it->id, it->state,
	    xm_quarantine_time(it->time, t, sizeof(t)),
	    xm_quarantine_time(it->expires, e, sizeof(e)), it->score,
	    safe(it->reason));
	printf("%s -> ", safe(it->sender));
	printf("%s\n", safe(it->recipient));
}

/* cmd_list - the items, oldest first */
static int
cmd_list(struct xm_qstore *q, const char *state)
{
	size_t n = 0;
	char err[1024];

	if (xm_qstore_list(q, state, 0, print_row, &n, err, sizeof(err)) < 0) {
		fprintf(stderr, "xmilter: %s\n", err);
		return 2;
	}
	if (n == 0)
		printf("no items%s%s\n", state ? " in state " : "",
		    state ? state : "");
	return 0;
}

/* cmd_show - one item in full */
static int
cmd_show(struct xm_qstore *q, long long id, bool event_only)
{
	struct xm_qitem it;
	char err[1024], t[40];
	int rc = xm_qstore_get(q, id, true, &it, err, sizeof(err));

	if (rc != XM_Q_OK) {
		fprintf(stderr, "xmilter: %s\n", err);
		return 2;
	}
	if (!event_only) {
		printf("id: %lld\nstate: %s\n", it.id, it.state);
		printf("quarantined: %s\n", xm_quarantine_time(it.time, t,
		    sizeof(t)));
		printf("expires: %s\n", xm_quarantine_time(it.expires, t,
		    sizeof(t)));
		printf("released: %s\n", it.released > 0 ?
		    xm_quarantine_time(it.released, t, sizeof(t)) : "-");
		printf("score: %.2f\n", it.score);
		printf("reason: %s\n", safe(it.reason));
		printf("symbols: %s\n", safe(it.symbols));
		printf("from: %s\n", safe(it.sender));
		printf("to: %s\n\n", safe(it.recipient));
	}
	if (*it.event)
		printf("%s\n", it.event);
	else if (!event_only)
		printf("(content deleted)\n");
	xm_qitem_clear(&it);
	return 0;
}

/* read_frame - the next frame from FD into IN before DEADLINE; 1, or 0 on
 * timeout/close, -1 on a malformed frame */
static int
read_frame(int fd, struct xm_buf *in, double deadline, struct proto_frame *f,
    size_t *used)
{
	char err[256], tmp[4096];
	int code, prc;
	ssize_t n;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		double left;

		prc = proto_parse_frame(in->data ? in->data : "", in->len,
		    PROTO_MAX_FRAME_LIMIT, f, used, &code, err, sizeof(err));
		if (prc != 0)
			return prc;
		left = deadline - xm_monotonic();
		if (left <= 0 || poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			return 0;
		if ((n = read(fd, tmp, sizeof(tmp))) <= 0)
			return 0;
		xm_buf_append(in, tmp, (size_t)n);
	}
}

/* cmd_release - ask the daemon to release ID, report what it says */
static int
cmd_release(const char *sock, long long id, double timeout)
{
	static const char hello[] = "version=1\nrole=admin\nserver=xmilter-cli\n";
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct xm_buf in = { 0 }, out = { 0 };
	struct proto_frame f;
	struct xm_arena *a = xm_arena_new();
	double deadline = xm_monotonic() + timeout;
	size_t used;
	int fd, rc = 3;

	if (strlen(sock) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "xmilter: socket path too long: %s\n", sock);
		return 1;
	}
	strcpy(sun.sun_path, sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		printf("unreachable: %s: %s\n", sock, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 3;
	}
	proto_write_frame(&out, PROTO_HELLO, 0, hello, sizeof(hello) - 1);
	proto_write_frame(&out, PROTO_RELEASE, (uint64_t)id, "", 0);
	if (write(fd, out.data, out.len) != (ssize_t)out.len) {
		printf("unreachable: %s: write failed\n", sock);
		goto out;
	}
	for (;;) {
		struct xm_field *kv;
		const char *rest, *result, *reason, *glue;
		size_t n, restlen;
		char err[256];
		int r = read_frame(fd, &in, deadline, &f, &used);

		if (r == 0) {
			printf("unknown: no answer from the daemon within %.0fs; "
			    "see `xmilter quarantine show %lld`\n", timeout, id);
			goto out;
		}
		if (r < 0) {
			printf("unknown: malformed answer from the daemon\n");
			goto out;
		}
		if (f.verb == PROTO_BYE) {
			printf("failed: the daemon closed: %.*s\n", (int)f.len,
			    f.body);
			goto out;
		}
		if (f.verb == PROTO_RELEASED && f.id == (uint64_t)id) {
			if (proto_parse_kv(a, f.body, f.len, 16, &kv, &n, &rest,
			    &restlen, err, sizeof(err)) < 0) {
				printf("unknown: malformed answer: %s\n", err);
				goto out;
			}
			result = proto_kv_get(kv, n, "result");
			reason = proto_kv_get(kv, n, "reason");
			glue = proto_kv_get(kv, n, "glue");
			if (result && strcmp(result, "ok") == 0) {
				printf("released %lld%s%s\n", id, glue ? " via " : "",
				    glue ? safe(glue) : "");
				rc = 0;
			} else {
				printf("%s: ", result ? safe(result) : "unknown");
				printf("%s\n", reason ? safe(reason) : "no reason given");
				rc = result && (strcmp(result, "refused") == 0 ||
				    strcmp(result, "failed") == 0) ? 2 : 3;
			}
			goto out;
		}
		xm_buf_consume(&in, used);  /* HELLO and anything else */
	}
out:
	close(fd);
	xm_buf_free(&in);
	xm_buf_free(&out);
	xm_arena_free(a);
	return rc;
}

/* xm_quarantine_cli - `xmilter quarantine ...` (ARGV[0] is "quarantine") */
int
xm_quarantine_cli(int argc, char **argv)
{
	const char *conf = access(DEFAULT_CONF, R_OK) == 0 ? DEFAULT_CONF : NULL;
	const char *sock = NULL, *cmd;
	struct xm_config *cf;
	struct xm_qstore *q = NULL;
	double timeout = 30;
	bool event_only = false;
	char err[1024];
	int c, rc;

	if (argc < 2)
		qusage();
	cmd = argv[1];
	argc--;
	argv++;
	optind = 1;
	while ((c = getopt(argc, argv, "c:es:t:")) != -1) {
		if (c == 'c')
			conf = optarg;
		else if (c == 'e' && strcmp(cmd, "show") == 0)
			event_only = true;
		else if (c == 's' && strcmp(cmd, "release") == 0)
			sock = optarg;
		else if (c == 't' && strcmp(cmd, "release") == 0 &&
		    xm_parse_double(optarg, &timeout) == 0 && timeout > 0)
			;
		else
			qusage();
	}
	cf = load_conf(conf);
	if (strcmp(cmd, "list") == 0 && argc - optind <= 1) {
		const char *st = optind < argc ? argv[optind] : NULL;

		if (st && strcmp(st, "held") && strcmp(st, "releasing") &&
		    strcmp(st, "released") && strcmp(st, "deleted"))
			qusage();
		q = open_store(cf);
		rc = cmd_list(q, optind < argc ? argv[optind] : NULL);
	} else if (strcmp(cmd, "show") == 0 && argc - optind == 1) {
		long long id = parse_id(argv[optind]);

		q = open_store(cf);
		rc = cmd_show(q, id, event_only);
	} else if (strcmp(cmd, "release") == 0 && argc - optind == 1) {
		rc = cmd_release(sock ? sock : cf->daemon.socket,
		    parse_id(argv[optind]), timeout);
	} else if (strcmp(cmd, "delete") == 0 && argc - optind == 1) {
		long long id = parse_id(argv[optind]);

		q = open_store(cf);
		rc = xm_qstore_delete(q, id, err, sizeof(err));
		if (rc == XM_Q_OK)
			printf("deleted %lld\n", id);
		else
			fprintf(stderr, "xmilter: %s\n", err);
		rc = rc == XM_Q_OK ? 0 : 2;
	} else if (strcmp(cmd, "purge") == 0 && argc == optind) {
		long long n;

		q = open_store(cf);
		if ((n = xm_qstore_purge(q, xm_now(), err, sizeof(err))) < 0) {
			fprintf(stderr, "xmilter: %s\n", err);
			rc = 2;
		} else {
			printf("purged %lld expired item%s\n", n, n == 1 ? "" : "s");
			rc = 0;
		}
	} else
		qusage();
	fflush(stdout);
	xm_qstore_close(q);
	xm_config_free(cf);
	return rc;
}
