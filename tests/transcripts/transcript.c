/*
 * transcript.c - drive one protocol session from a byte file, print what
 * the daemon would send
 *
 * Usage: transcript -c CONF [-b CHUNK] [-d] [-r ID:FILE] [-V VERSION] INPUT
 *
 * Reads INPUT (the bytes a glue would send on one connection), feeds them
 * to session.c CHUNK bytes at a time (default: all at once), and answers
 * every FILTER with the real chain built from CONF, the way xmilterd does:
 * the event is parsed with the config's limits, a malformed one (or one
 * with trailing data, or an empty one) gets xm_verdict_malformed, and the
 * VERDICT body is proto_format_verdict's. Everything the daemon would
 * write goes to standard output, byte for byte, so run.sh can compare it
 * with a golden file.
 *
 * Answers are synchronous (the daemon with only fast filters) unless -d
 * is given: then every request is held until the whole input was read
 * and answered last first, like slow filters finishing out of order. That
 * is how CANCEL and in-flight limits become visible; in both modes the
 * output does not depend on CHUNK. Quarantine produces only the verdict
 * (nothing is stored). The clock is the event's time, else a fixed one,
 * so the output is the same on every run. HELLO names the daemon
 * "xmilterd/VERSION" (-V, default the package version) so goldens need
 * not change with each release.
 *
 * Release (docs/QUARANTINE.md): -r ID:FILE makes the daemon side send
 * RELEASE ID with FILE's bytes (an event; a relative FILE is found next to
 * INPUT) right after the input's first frame (the HELLO) was fed, in
 * every chunk size alike. What the session hands to the daemon's release
 * callbacks is written as a note line starting with "## " between the
 * frames: "## RELEASED ID: BODY" (a glue's answer, LFs as \n), "## admin
 * RELEASE ID" (an admin's request, which the runner, having no store,
 * answers with result=refused), "## RELEASE ID not sent" (the glue did
 * not negotiate the capability).
 *
 * Exit status: 0 when the input was read (whatever the session did), 1 on
 * a usage, configuration or I/O error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autoconf.h"
#include "chain.h"
#include "config.h"
#include "event.h"
#include "proto.h"
#include "session.h"

#define FIXED_CLOCK 1795341600.0   /* 2026-11-22T10:00:00Z */

struct held {
	uint64_t id;
	struct xm_buf body;
};

struct runner {
	struct xm_chain *chain;
	const char *version;
	bool defer;
	struct held *held;
	size_t nheld, capheld;
	uint64_t release_id;      /* -r: 0 for none */
	char *release_event;
	size_t release_len;
};

/* verdict_body - the VERDICT body for one event, as xmilterd builds it */
static void
verdict_body(struct runner *r, const char *event, size_t len,
    struct xm_buf *out)
{
	struct xm_arena *a = xm_arena_new();
	struct xm_event *ev = NULL;
	struct xm_verdict v;
	struct xm_task t;
	char err[512];

	if (xm_chain_event(r->chain, a, event, len, &ev, err, sizeof(err)) < 0) {
		xm_verdict_malformed(r->chain, a, err, &v);
	} else {
		xm_task_init(&t, r->chain, a, ev, ev->time >= 0 ? ev->time :
		    FIXED_CLOCK);
		xm_chain_check(r->chain, &t, &v);
	}
	proto_format_verdict(out, a, &v);
	xm_arena_free(a);
}

/* on_filter - answer now, or hold the answer for the end (-d) */
static void
on_filter(void *ctx, struct session *s, uint64_t id, const char *event,
    size_t len)
{
	struct runner *r = ctx;
	struct xm_buf body = { 0 };

	verdict_body(r, event, len, &body);
	if (!r->defer) {
		session_verdict(s, id, body.data, body.len);
		xm_buf_free(&body);
		return;
	}
	if (r->nheld == r->capheld) {
		r->capheld = r->capheld ? r->capheld * 2 : 16;
		r->held = xm_reallocarray(r->held, r->capheld, sizeof(*r->held));
	}
	r->held[r->nheld].id = id;
	r->held[r->nheld].body = body;
	r->nheld++;
}

/* on_cancel - nothing to stop: the held answer will simply be dropped */
static void
on_cancel(void *ctx, struct session *s, uint64_t id)
{
}

/* on_hello - the daemon's HELLO lines, as xmilterd writes them */
static void
on_hello(void *ctx, struct session *s, struct xm_buf *reply, bool health)
{
	struct runner *r = ctx;

	xm_chain_hello(r->chain, reply, r->version);
}

static int flush(struct session *s);

/* note - a "## " line about a callback, LFs shown as \n; what the session
 * queued before goes out first, so the order is the same in any chunking */
static void
note(struct session *s, const char *what, uint64_t id, const char *body,
    size_t len)
{
	size_t i;

	flush(s);
	printf("## %s %llu", what, (unsigned long long)id);
	if (body != NULL) {
		fputs(": ", stdout);
		for (i = 0; i < len; i++)
			fputs(body[i] == '\n' ? "\\n" : (char[]){ body[i], '\0' },
			    stdout);
	}
	putchar('\n');
}

/* on_release - an admin's RELEASE: noted, refused (no store here) */
static void
on_release(void *ctx, struct session *s, uint64_t id)
{
	static const char answer[] = "result=refused\nreason=transcript runner: "
	    "no quarantine store\n";

	note(s, "admin RELEASE", id, NULL, 0);
	session_release_answer(s, id, answer, sizeof(answer) - 1);
}

/* on_released - a glue's answer to our RELEASE: noted */
static void
on_released(void *ctx, struct session *s, uint64_t id, const char *body,
    size_t len)
{
	note(s, "RELEASED", id, body, len);
}

static const struct session_ops runner_ops = { on_filter, on_cancel, on_hello,
    on_release, on_released };

/* flush - write the session's output to stdout */
static int
flush(struct session *s)
{
	struct xm_buf *out = session_output(s);

	if (out->len > 0 && fwrite(out->data, 1, out->len, stdout) != out->len)
		return -1;
	xm_buf_consume(out, out->len);
	return 0;
}

/* read_file - the whole file, heap */
static char *
read_file(const char *path, size_t *len)
{
	struct xm_buf b = { 0 };
	char tmp[65536];
	FILE *fp = fopen(path, "rb");
	size_t n;

	if (fp == NULL) {
		fprintf(stderr, "transcript: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0)
		xm_buf_append(&b, tmp, n);
	if (ferror(fp)) {
		fprintf(stderr, "transcript: %s: read error\n", path);
		fclose(fp);
		xm_buf_free(&b);
		return NULL;
	}
	fclose(fp);
	*len = b.len;
	return b.data ? b.data : xm_strdup("");
}

static void
usage(void)
{
	fprintf(stderr, "usage: transcript -c CONF [-b CHUNK] [-d] [-r ID:FILE] "
	    "[-V VERSION] INPUT\n");
	exit(1);
}

int
main(int argc, char **argv)
{
	struct runner r = { .version = PACKAGE_VERSION };
	const char *conf = NULL;
	struct xm_config *cf;
	const struct xm_config *ccf;
	struct session *s;
	struct session_limits lim;
	long long chunk = 0;
	size_t len, off, i;
	char err[1024], *in;
	const char *release_arg = NULL;
	size_t split = 0;
	bool injected = true;
	int c, rc = 0;

	while ((c = getopt(argc, argv, "b:c:dr:V:")) != -1) {
		switch (c) {
		case 'r':
			release_arg = optarg;
			break;
		case 'b':
			if (xm_parse_ll(optarg, 1, 1 << 30, &chunk) < 0)
				usage();
			break;
		case 'c':
			conf = optarg;
			break;
		case 'd':
			r.defer = true;
			break;
		case 'V':
			r.version = optarg;
			break;
		default:
			usage();
		}
	}
	if (conf == NULL || optind != argc - 1)
		usage();
	xm_log_level = XM_LOG_ERR;
	if ((cf = xm_config_load(conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "transcript: %s\n", err);
		return 1;
	}
	if ((r.chain = xm_chain_new(cf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "transcript: %s\n", err);
		return 1;
	}
	if ((in = read_file(argv[optind], &len)) == NULL) {
		xm_chain_unref(r.chain);
		return 1;
	}
	if (release_arg != NULL) {
		const char *colon = strchr(release_arg, ':'), *slash;
		struct proto_frame f;
		long long id;
		char *path, *ids;
		int code;

		ids = colon ? xm_strndup(release_arg, (size_t)(colon - release_arg)) :
		    NULL;
		if (ids == NULL || xm_parse_ll(ids, 1, PROTO_MAX_ID, &id) < 0)
			usage();
		free(ids);
		r.release_id = (uint64_t)id;
		slash = strrchr(argv[optind], '/');
		path = colon[1] == '/' || slash == NULL ? xm_strdup(colon + 1) :
		    xm_printf("%.*s/%s", (int)(slash - argv[optind]), argv[optind],
		    colon + 1);
		r.release_event = read_file(path, &r.release_len);
		free(path);
		if (r.release_event == NULL)
			return 1;
		/* the RELEASE goes out once the first frame was fed */
		if (proto_parse_frame(in, len, PROTO_MAX_FRAME_LIMIT, &f, &split,
		    &code, err, sizeof(err)) != 1)
			split = len;
		injected = false;
	}
	ccf = xm_chain_config(r.chain);
	lim.max_frame = (size_t)ccf->daemon.max_frame;
	lim.max_inflight = (unsigned)ccf->daemon.max_inflight;
	lim.max_buffered = 4u * 1024 * 1024;
	s = session_new(&runner_ops, &r, &lim);

	for (off = 0; off < len; ) {
		size_t end = !injected && off < split ? split : len;
		size_t n = chunk > 0 && (size_t)chunk < end - off ? (size_t)chunk :
		    end - off;
		int frc = session_feed(s, in + off, n);

		off += n;
		if (flush(s) < 0)
			rc = 1;
		if (frc < 0)
			break;
		if (!injected && off >= split) {
			injected = true;
			if (!session_release(s, r.release_id, r.release_event,
			    r.release_len))
				printf("## RELEASE %llu not sent\n",
				    (unsigned long long)r.release_id);
			if (flush(s) < 0)
				rc = 1;
		}
	}
	/* held answers go out last first; those for requests that were
	 * cancelled, or for a closed session, are dropped by the session */
	for (i = r.nheld; i > 0; i--) {
		struct held *h = &r.held[i - 1];

		session_verdict(s, h->id, h->body.data, h->body.len);
		xm_buf_free(&h->body);
	}
	if (flush(s) < 0 || fflush(stdout) != 0)
		rc = 1;
	free(r.held);
	free(r.release_event);
	session_free(s);
	xm_chain_unref(r.chain);
	free(in);
	return rc;
}
