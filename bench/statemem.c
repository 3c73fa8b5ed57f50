/*
 * statemem.c - memory per tracked sender and per key of the ratelimit
 * state, measured through the real filter
 *
 * Usage: statemem [-n SENDERS] [-p chat|stranger|both] [-m BYTES] [-r URL]
 *
 * Builds a chain with only the ratelimit filter (memory backend, bound
 * -m, default 1 GB so that nothing is evicted) and sends one message from
 * each of N distinct senders (default 1,000,000), all within one second
 * of event time, so every record is still live at the end:
 *
 *   chat      each sender has its own account and address (own /24 every
 *             256 senders) and writes "hi, see you at 5?" to a contact
 *             in its roster: account, address and prefix buckets plus
 *             the fan-out set
 *   stranger  the same, to a stranger (roster=none) with a longer text:
 *             adds the stranger bucket, the stranger fan-out set and the
 *             outbreak sets of the text (the worst case per sender)
 *
 * With -r URL the counters go to that Redis instead (one thread, one
 * round trip per event): the table figures are then 0, the events per
 * second and the CPU time per event are the Redis path's.
 *
 * Prints, per pattern: live keys, keys per sender, the table's bytes,
 * bytes per key (table bytes / keys), bytes per sender, the process's
 * RSS growth, and events per second through the filter (parse included).
 * The final line per pattern is machine-readable ("statemem pattern=...").
 * Figures, not a test: the exit status is 0 when it ran.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "chain.h"
#include "config.h"
#include "event.h"
#include "state.h"

/* rss_kb - this process's resident set, from /proc */
static long
rss_kb(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (fp == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(fp);
	return kb;
}

/* run - N senders of PATTERN; print the figures */
static const char *redis_url;

static void
run(const char *pattern, long n, long long bound)
{
	char path[] = "/tmp/xm-statemem-XXXXXX", err[1024];
	struct xm_event_limits lim;
	struct xm_state_stats st;
	struct xm_config *cf;
	struct xm_chain *ch;
	bool stranger = strcmp(pattern, "stranger") == 0;
	long i, rss0, rss1;
	double t0, t1, cpu;
	struct rusage ru0, ru1;
	int fd;
	FILE *fp;

	xm_state_reset();
	if ((fd = mkstemp(path)) < 0 || (fp = fdopen(fd, "w")) == NULL) {
		perror("statemem: temporary config");
		exit(1);
	}
	fprintf(fp, "filters:\n  guard: {enabled: false}\n"
	    "  rules: {enabled: false}\n  ratelimit:\n    enabled: true\n"
	    "    memory: %lld\n", bound);
	if (redis_url != NULL)
		fprintf(fp, "    redis: \"%s\"\n", redis_url);
	fclose(fp);
	if ((cf = xm_config_load(path, err, sizeof(err))) == NULL ||
	    (ch = xm_chain_new(cf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "statemem: %s\n", err);
		exit(1);
	}
	unlink(path);
	xm_event_limits_default(&lim);
	rss0 = rss_kb();
	getrusage(RUSAGE_SELF, &ru0);
	t0 = xm_monotonic();
	for (i = 0; i < n; i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_event *ev;
		struct xm_verdict v;
		struct xm_task t;
		size_t used;
		char text[1024];
		int len;

		len = snprintf(text, sizeof(text), "origin=c2s\n"
		    "ip=10.%ld.%ld.%ld\nauth=u%ld@example.org\nroster=%s\n\n"
		    "<message from='u%ld@example.org/r' to='c%ld@example.org' "
		    "type='chat'><body>%s</body></message>",
		    (i >> 16) & 255, (i >> 8) & 255, i & 255, i,
		    stranger ? "none" : "both", i, i, stranger ?
		    "hello, I found your profile and would love to chat with "
		    "you, add me" : "hi, see you at 5?");
		if (xm_event_parse(a, text, (size_t)len, &lim, &ev, &used, err,
		    sizeof(err)) != 0) {
			fprintf(stderr, "statemem: %s\n", err);
			exit(1);
		}
		/* all within one second: nothing expires before the end */
		xm_task_init(&t, ch, a, ev, 1795000000.0 + (double)i / (double)n);
		xm_chain_check(ch, &t, &v);
		xm_arena_free(a);
	}
	t1 = xm_monotonic();
	getrusage(RUSAGE_SELF, &ru1);
	rss1 = rss_kb();
	cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
	    ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
	    (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
	    ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	xm_state_stats(&st);
	printf("%s: %ld senders, %zu keys (%.2f per sender), table %.1f MB "
	    "(%zu slots of %zu bytes, load %.2f), %.1f bytes per key, "
	    "%.1f bytes per sender, RSS +%.1f MB, %.0f events/s, "
	    "%.2f us CPU per event, %llu evictions\n", pattern, n, st.mem.keys,
	    (double)st.mem.keys / (double)n, st.mem.bytes / 1048576.0,
	    st.mem.slots, xm_memstore_slot_bytes(),
	    (double)st.mem.keys / (double)st.mem.slots,
	    st.mem.keys ? (double)st.mem.bytes / (double)st.mem.keys : 0,
	    (double)st.mem.bytes / (double)n, (rss1 - rss0) / 1024.0,
	    (double)n / (t1 - t0), cpu * 1e6 / (double)n, st.mem.evictions);
	printf("statemem pattern=%s senders=%ld keys=%zu table_bytes=%zu "
	    "bytes_per_key=%.1f bytes_per_sender=%.1f rss_growth_kb=%ld "
	    "events_per_s=%.0f evictions=%llu\n", pattern, n, st.mem.keys,
	    st.mem.bytes, st.mem.keys ? (double)st.mem.bytes /
	    (double)st.mem.keys : 0,
	    (double)st.mem.bytes / (double)n, rss1 - rss0, (double)n / (t1 - t0),
	    st.mem.evictions);
	xm_chain_unref(ch);
	xm_state_reset();
}

/* main - options, then the run */
int
main(int argc, char **argv)
{
	const char *pattern = "both";
	long long n = 1000000, bound = 1LL << 30;
	int c;

	xm_log_level = XM_LOG_WARN;
	while ((c = getopt(argc, argv, "n:p:m:r:")) != -1) {
		if (c == 'r') {
			redis_url = optarg;
			continue;
		}
		if (c == 'n' && xm_parse_ll(optarg, 1, 100000000, &n) == 0)
			continue;
		if (c == 'm' && xm_parse_ll(optarg, 65536, 1LL << 40, &bound) == 0)
			continue;
		if (c == 'p') {
			pattern = optarg;
			continue;
		}
		fprintf(stderr, "usage: statemem [-n SENDERS] "
		    "[-p chat|stranger|both] [-m BYTES] [-r URL]\n");
		return 2;
	}
	if (strcmp(pattern, "both") == 0 || strcmp(pattern, "chat") == 0)
		run("chat", (long)n, bound);
	if (strcmp(pattern, "both") == 0 || strcmp(pattern, "stranger") == 0)
		run("stranger", (long)n, bound);
	return 0;
}
