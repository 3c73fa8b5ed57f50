/*
 * transfer-bench.c - cost of the transfer filter per file offer
 *
 * Builds a mix of offers (SI, Jingle with a hash, OOB links in iqs and
 * messages, upload requests; clean names and programs, double extensions,
 * RLO names), then measures in one process, same events, same run:
 *   baseline  parse each event (xm_event_parse), nothing else;
 *   transfer  parse + the transfer filter's check (a task per event, the
 *             event's time as the clock, a bad-hash list of N entries).
 * Senders rotate over --senders accounts and recipients over 50, so the
 * repeat/fan-out table fills up and evicts (--max-entries).
 * Prints events/s of both, the ratio, check-only latency percentiles
 * (p50/p99/max, per event), table entries at the end and peak RSS.
 *
 * Usage: transfer-bench [-n EVENTS] [-s SENDERS] [-e MAX_ENTRIES]
 *                       [-H BAD_HASHES]
 * Figures, not pass/fail: exit status 0 whenever it ran.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "benchutil.h"
#include "config.h"
#include "event.h"
#include "xm.h"

extern const struct xm_filter_ops transfer_filter;
size_t transfer_state_count(void);

/* usage - how to call it */
static void
usage(void)
{
	fprintf(stderr, "usage: transfer-bench [-n EVENTS] [-s SENDERS] "
	    "[-e MAX_ENTRIES] [-H BAD_HASHES]\n");
	exit(2);
}

static const char *const names[] = {
	"report.pdf", "holiday photos 2026.jpg", "notes.txt", "setup.exe",
	"photo.jpg.exe", "invoice.pdf\xe2\x80\xae" "exe.scr", "budget.xlsm",
	"src.tar.gz", "slides.pptx", "song.mp3",
};

/* offer - event text number I (malloc'd) */
static char *
offer(size_t i, size_t senders)
{
	const char *name = names[i % XM_ARRAY_LEN(names)];
	size_t s = (i * 7919) % senders, r = i % 50;
	int sec = (int)(i % 60), min = (int)((i / 60) % 60);
	char env[256];

	snprintf(env, sizeof(env), "origin=c2s\nauth=u%zu@example.org\n"
	    "time=2026-11-22T10:%02d:%02d.000Z\n\n", s, min, sec);
	switch (i % 5) {
	case 0:
		return xm_printf("%s<iq from='u%zu@example.org/pc' "
		    "to='r%zu@example.org/x' type='set' id='i%zu'><si "
		    "xmlns='http://jabber.org/protocol/si' id='s' mime-type="
		    "'application/octet-stream' profile='http://jabber.org/"
		    "protocol/si/profile/file-transfer'><file xmlns='http://"
		    "jabber.org/protocol/si/profile/file-transfer' name='%s' "
		    "size='48128' hash='552da749930852c69ae5d2141d37%04zx'/>"
		    "</si></iq>", env, s, r, i, name, i % 65536);
	case 1:
		return xm_printf("%s<iq from='u%zu@example.org/pc' "
		    "to='r%zu@example.org/x' type='set' id='i%zu'><jingle "
		    "xmlns='urn:xmpp:jingle:1' action='session-initiate' "
		    "sid='j'><content creator='initiator' name='f'>"
		    "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'>"
		    "<file><name>%s</name><size>6144</size><media-type>"
		    "text/plain</media-type><hash xmlns='urn:xmpp:hashes:2' "
		    "algo='sha-256'>2ZtNGsIPc3/WnAPtuQPl7VgHKPsXsWJINKLIIxPBk"
		    "KY=</hash></file></description></content></jingle></iq>",
		    env, s, r, i, name);
	case 2:
		return xm_printf("%s<iq from='u%zu@example.org/pc' "
		    "to='r%zu@example.org/x' type='set' id='i%zu'><query "
		    "xmlns='jabber:iq:oob'><url>https://files.example.net/a/"
		    "%zu/%s</url></query></iq>", env, s, r, i, i % 100, name);
	case 3:
		return xm_printf("%s<message from='u%zu@example.org/pc' "
		    "to='r%zu@example.org' type='chat' id='i%zu'><body>look"
		    "</body><x xmlns='jabber:x:oob'><url>http://198.51.100.7:"
		    "8080/d.php?file=%s</url></x></message>", env, s, r, i,
		    name);
	default:
		return xm_printf("%s<iq from='u%zu@example.org/pc' "
		    "to='upload.example.org' type='get' id='i%zu'><request "
		    "xmlns='urn:xmpp:http:upload:0' filename='%s' size='23456' "
		    "content-type='image/jpeg'/></iq>", env, s, i, name);
	}
}

/* cmp_double - qsort order */
static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	size_t n = 200000, senders = 20000, i, nh = 10000;
	long long maxent = 100000;
	char **ev, err[512], path[] = "/tmp/transfer-bench-XXXXXX", *set;
	size_t *len;
	struct xm_event_limits lim;
	void *conf, *state;
	double t0, base, full, *lat;
	struct rusage ru;
	int c, fd;
	FILE *fp;

	while ((c = getopt(argc, argv, "n:s:e:H:")) != -1) {
		switch (c) {
		case 'n': n = (size_t)num(optarg, 100, 1e8); break;
		case 's': senders = (size_t)num(optarg, 1, 1e8); break;
		case 'e': maxent = (long long)num(optarg, 16, 1e8); break;
		case 'H': nh = (size_t)num(optarg, 0, 1e7); break;
		default: usage();
		}
	}
	xm_event_limits_default(&lim);
	ev = xm_calloc(n, sizeof(*ev));
	len = xm_calloc(n, sizeof(*len));
	for (i = 0; i < n; i++) {
		ev[i] = offer(i, senders);
		len[i] = strlen(ev[i]);
	}
	/* a bad-hash list of NH random sha-256 values */
	if ((fd = mkstemp(path)) < 0 || (fp = fdopen(fd, "w")) == NULL) {
		perror("mkstemp");
		return 1;
	}
	srandom(1);
	for (i = 0; i < nh; i++) {
		int k;

		fputs("sha-256 ", fp);
		for (k = 0; k < 32; k++)
			fprintf(fp, "%02lx", random() & 0xff);
		fputc('\n', fp);
	}
	fclose(fp);
	conf = xm_calloc(1, transfer_filter.conf_size);
	set = xm_printf("%lld", maxent);
	if (xm_settings_defaults(transfer_filter.settings, conf, NULL, err,
	    sizeof(err)) < 0 || xm_settings_set(transfer_filter.settings, conf,
	    "state_max_entries", set, NULL, err, sizeof(err)) < 0 ||
	    (nh > 0 && xm_settings_set(transfer_filter.settings, conf,
	    "bad_hashes", path, NULL, err, sizeof(err)) < 0) ||
	    transfer_filter.init(&state, conf, err, sizeof(err)) < 0) {
		fprintf(stderr, "transfer-bench: %s\n", err);
		return 1;
	}
	unlink(path);

	/* baseline: parse only */
	t0 = now();
	for (i = 0; i < n; i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_event *e;
		size_t used;

		if (xm_event_parse(a, ev[i], len[i], &lim, &e, &used, err,
		    sizeof(err)) < 0) {
			fprintf(stderr, "event %zu: %s\n", i, err);
			return 1;
		}
		xm_arena_free(a);
	}
	base = now() - t0;

	/* parse + transfer check */
	lat = xm_calloc(n, sizeof(*lat));
	t0 = now();
	for (i = 0; i < n; i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_event *e;
		struct xm_task t;
		size_t used;
		double t1;

		xm_event_parse(a, ev[i], len[i], &lim, &e, &used, err,
		    sizeof(err));
		memset(&t, 0, sizeof(t));
		t.arena = a;
		t.ev = e;
		t.now = e->time;
		t.cur_filter = "transfer";
		t1 = now();
		transfer_filter.check(state, &t);
		lat[i] = now() - t1;
		xm_arena_free(a);
	}
	full = now() - t0;
	qsort(lat, n, sizeof(*lat), cmp_double);
	getrusage(RUSAGE_SELF, &ru);
	printf("transfer-bench: %zu offers, %zu senders, %zu bad hashes, "
	    "state_max_entries %lld\n", n, senders, nh, maxent);
	printf("baseline (parse only):   %.0f events/s\n", (double)n / base);
	printf("parse + transfer check:  %.0f events/s (ratio %.3f of "
	    "baseline)\n", (double)n / full, base / full);
	printf("check alone: mean %.2f us, p50 %.2f us, p99 %.2f us, max "
	    "%.2f us\n", (full - base) / (double)n * 1e6,
	    lat[n / 2] * 1e6, lat[(size_t)((double)n * 0.99)] * 1e6,
	    lat[n - 1] * 1e6);
	printf("table entries at the end: %zu; peak RSS %ld KiB\n",
	    transfer_state_count(), ru.ru_maxrss);
	transfer_filter.free(state);
	xm_settings_free(transfer_filter.settings, conf);
	free(conf);
	free(set);
	for (i = 0; i < n; i++)
		free(ev[i]);
	free(ev);
	free(len);
	free(lat);
	return 0;
}
