/*
 * qstore-bench.c - what a quarantined stanza costs: the quarantine store's
 * durable insert (SQLite, optionally PostgreSQL) against the spool file
 * it replaced (temporary file, write, fsync, rename), and a release's two
 * state changes (claim, finish)
 *
 * Usage: qstore-bench [-n N] [-d DIR] [-p CONNINFO]
 *
 *   -n N         items per measurement (default 2000)
 *   -d DIR       where the spool and the SQLite file go (default $TMPDIR or
 *                /tmp; the disk under it decides the fsync cost)
 *   -p CONNINFO  also measure a PostgreSQL store (libpq connection string)
 *
 * Prints per measurement: items/s, latency p50/p99/max in ms, and the
 * ratio of its throughput to the spool baseline measured in the same run;
 * then the process's peak RSS. Figures, not pass/fail.
 */
#include <sys/resource.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "quarantine.h"
#include "benchutil.h"

#define EVENT "origin=c2s\nip=198.51.100.7\nauth=alice@example.org\ntls=yes\n" \
    "roster=none\ntime=2026-11-22T10:00:00.250Z\n\n<message " \
    "from='alice@example.org/pc' to='bob@example.org' type='chat' id='a1'>" \
    "<body>XMILTER-TEST-QUARANTINE see http://198.51.100.7:8080/x.scr " \
    "now</body></message>"

static void
usage(void)
{
	fprintf(stderr, "usage: qstore-bench [-n N] [-d DIR] [-p CONNINFO]\n");
	exit(1);
}

/* cmp - for qsort of doubles */
static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* report - one line of figures; returns items/s */
static double
report(const char *name, double *lat, size_t n, double secs, double base)
{
	double rate = (double)n / secs;

	qsort(lat, n, sizeof(*lat), cmp);
	printf("%-26s %9.0f items/s  p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms",
	    name, rate, lat[n / 2] * 1e3, lat[n * 99 / 100] * 1e3,
	    lat[n - 1] * 1e3);
	if (base > 0)
		printf("  x%.2f vs spool", rate / base);
	putchar('\n');
	return rate;
}

/* spool_one - the replaced spool write of one item */
static void
spool_one(const char *dir, size_t i)
{
	char tmp[4400], final[4300];
	const char *text = "# xmilter quarantine\n# action=quarantine\n" EVENT;
	int fd;

	snprintf(final, sizeof(final), "%s/%zu.event", dir, i);
	snprintf(tmp, sizeof(tmp), "%s.tmp", final);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0640)) < 0 ||
	    write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
	    fsync(fd) < 0 || close(fd) < 0 || rename(tmp, final) < 0) {
		perror(final);
		exit(1);
	}
}

/* store_run - N inserts, then N claims+finishes, into the store CF names */
static void
store_run(const char *name, const struct xm_config *cf, size_t n, double base,
    double *lat)
{
	struct xm_qitem it = { .time = 1795341600, .expires = 1795341600 + 86400,
	    .score = 12, .reason = "XM_TEST_QUARANTINE",
	    .symbols = "XM_TEST_QUARANTINE 12.00", .sender = "alice@example.org/pc",
	    .recipient = "bob@example.org", .event = EVENT };
	struct xm_qstore *q;
	long long *ids = calloc(n, sizeof(*ids));
	char err[512], label[64];
	double t0, t;
	size_t i;

	if ((q = xm_qstore_open(cf, err, sizeof(err))) == NULL || ids == NULL) {
		fprintf(stderr, "%s: %s\n", name, err);
		exit(1);
	}
	t0 = now();
	for (i = 0; i < n; i++) {
		t = now();
		if (xm_qstore_add(q, &it, &ids[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "%s: %s\n", name, err);
			exit(1);
		}
		lat[i] = now() - t;
	}
	snprintf(label, sizeof(label), "%s add", name);
	report(label, lat, n, now() - t0, base);
	t0 = now();
	for (i = 0; i < n; i++) {
		t = now();
		if (xm_qstore_claim(q, ids[i], 1795341700, err, sizeof(err)) != 0 ||
		    xm_qstore_finish(q, ids[i], 1795341701, err, sizeof(err)) != 0) {
			fprintf(stderr, "%s: %s\n", name, err);
			exit(1);
		}
		lat[i] = now() - t;
	}
	snprintf(label, sizeof(label), "%s release", name);
	report(label, lat, n, now() - t0, base);
	xm_qstore_close(q);
	free(ids);
}

int
main(int argc, char **argv)
{
	const char *base_dir = getenv("TMPDIR"), *pg = NULL;
	char dir[4096], spool[4200], set[4300], err[512], cmd[4200];
	struct xm_config *cf;
	struct rusage ru;
	size_t n = 2000, i;
	double *lat, t0, t, base;
	int c;

	while ((c = getopt(argc, argv, "n:d:p:")) != -1) {
		if (c == 'n')
			n = (size_t)num(optarg, 100, 1e7);
		else if (c == 'd')
			base_dir = optarg;
		else if (c == 'p')
			pg = optarg;
		else
			usage();
	}
	snprintf(dir, sizeof(dir), "%s/qstore-bench.XXXXXX",
	    base_dir && *base_dir ? base_dir : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror(dir);
		return 1;
	}
	xm_log_level = XM_LOG_ERR;
	lat = calloc(n, sizeof(*lat));
	printf("qstore-bench: %zu items of %zu bytes in %s\n", n, strlen(EVENT),
	    dir);

	snprintf(spool, sizeof(spool), "%s/spool", dir);
	mkdir(spool, 0750);
	t0 = now();
	for (i = 0; i < n; i++) {
		t = now();
		spool_one(spool, i);
		lat[i] = now() - t;
	}
	base = report("spool file (baseline)", lat, n, now() - t0, 0);

	cf = xm_config_load(NULL, err, sizeof(err));
	snprintf(set, sizeof(set), "daemon.quarantine_dir=%s/q", dir);
	xm_config_override(cf, set, err, sizeof(err));
	store_run("sqlite", cf, n, base, lat);
	xm_config_free(cf);

	if (pg != NULL) {
		cf = xm_config_load(NULL, err, sizeof(err));
		xm_config_override(cf, "quarantine.backend=postgresql", err,
		    sizeof(err));
		snprintf(set, sizeof(set), "quarantine.pg_conninfo=%s", pg);
		xm_config_override(cf, set, err, sizeof(err));
		store_run("postgresql", cf, n, base, lat);
		xm_config_free(cf);
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("peak RSS %ld kB\n", ru.ru_maxrss);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(lat);
	return 0;
}
