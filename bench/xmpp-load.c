/*
 * xmpp-load.c - messages per second through two XMPP servers, in
 * alternating slices, with libstrophe clients
 *
 * Purpose
 *	Measures what the glue and xmilterd cost a real server: the same
 *	server software runs twice side by side, once without and once with
 *	the filter, and this program drives PAIRS senders and PAIRS
 *	receivers on each. It sends in short slices that alternate between
 *	the two (A B, then B A, ... so that drift on a noisy machine falls
 *	on both equally), counts the messages delivered in each slice, and
 *	prints every slice's rate and the median of the per-round ratios
 *	B / A.
 *
 *	Each sender sN talks to its receiver rN (full JID, so no presence
 *	routing is involved) and keeps at most WINDOW messages undelivered
 *	(closed loop: the server's speed sets the rate; nothing piles up in
 *	socket buffers). Bodies are the chat texts of bench/stanzamix.h
 *	(the ordinary chat and chat+link classes): what the filter sees is
 *	realistic, and nothing is meant to be rejected. A message that
 *	comes back as an error is counted apart and still frees its window
 *	place.
 *
 * Usage
 *	xmpp-load -A LABEL:HOST:PORT:DOMAIN -B LABEL:HOST:PORT:DOMAIN
 *	          [-n PAIRS] [-w WINDOW] [-s SLICE] [-r ROUNDS] [-W WARM]
 *	          [-p PASSWORD] [-S SEED] [-P LABEL=PID]... [-q]
 *
 *	Accounts sN and rN (N = 1..PAIRS) with PASSWORD must exist on both
 *	servers. Plain-text c2s (XMPP_CONN_FLAG_DISABLE_TLS). WARM seconds
 *	at the start of each slice are not counted. Each -P names a server
 *	process (Prosody, xmilterd) whose CPU time is read from /proc over
 *	the counted part of every slice and reported as microseconds per
 *	delivered message: where the time goes. Output: one "slice ..."
 *	line per slice and a last "xmpp_load ..." line with the medians.
 *
 * Failure
 *	Exit 1 when a connection fails or the set-up does not finish within
 *	60 s, 2 on usage errors. Run time is bounded: ROUNDS * 2 * (SLICE +
 *	drain) plus set-up, and an alarm ends it whatever happens.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

#include "stanzamix.h"
#include "benchutil.h"

#define MAX_PAIRS 1000
#define MAX_ROUNDS 1000
#define DRAIN_SECONDS 5.0
#define SETUP_SECONDS 60.0
#define MAX_PROCS 8

struct server;

struct client {
	struct server *srv;
	struct pair *pair;
	xmpp_conn_t *conn;
	bool sender, connected, ready, failed;
	char jid[128];
};

struct pair {
	struct server *srv;
	struct client s, r;
	unsigned long long sent, delivered, errors;
	unsigned inflight;
};

struct server {
	char label[32], host[64], domain[100];
	unsigned short port;
	struct pair *pairs;
	double rates[MAX_ROUNDS];
	unsigned nrates;
	unsigned long long errors;
};

/* a server process whose CPU time is watched */
struct proc {
	char label[32];
	int pid;
	double us_per_msg[2][MAX_ROUNDS];  /* per server, per round */
	unsigned n[2];
};

static struct {
	xmpp_ctx_t *ctx;
	struct proc procs[MAX_PROCS];
	unsigned nprocs;
	struct server srv[2];
	unsigned npairs, window, rounds;
	double slice, warm;
	const char *pass;
	uint64_t seed;
	bool quiet, closing;

	char **bodies;          /* XML-escaped chat texts */
	size_t nbodies, next_body;

	struct server *active;  /* whose senders send; NULL: nobody */
	double count_from, count_until;
	unsigned long long counted;
	unsigned connected, ready, failed;
	unsigned long long msgid;
} G;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: xmpp-load -A LABEL:HOST:PORT:DOMAIN -B LABEL:HOST:PORT:DOMAIN\n"
	    "                 [-n PAIRS] [-w WINDOW] [-s SLICE] [-r ROUNDS]\n"
	    "                 [-W WARM] [-p PASSWORD] [-S SEED] [-P LABEL=PID]...\n"
	    "                 [-q]\n");
	exit(2);
}

/* parse_server - LABEL:HOST:PORT:DOMAIN */
static void
parse_server(struct server *s, const char *spec)
{
	char buf[512], *f[4], *p;
	int i;

	if (strlen(spec) >= sizeof(buf))
		usage();
	strcpy(buf, spec);
	p = buf;
	for (i = 0; i < 4; i++) {
		f[i] = p;
		if (i < 3) {
			if ((p = strchr(p, ':')) == NULL)
				usage();
			*p++ = '\0';
		}
	}
	if (strlen(f[0]) >= sizeof(s->label) || strlen(f[1]) >= sizeof(s->host)
	    || strlen(f[3]) >= sizeof(s->domain) || !*f[0] || !*f[1] || !*f[3])
		usage();
	strcpy(s->label, f[0]);
	strcpy(s->host, f[1]);
	s->port = (unsigned short)num(f[2], 1, 65535);
	strcpy(s->domain, f[3]);
}

/* cpu_seconds - user + system time of PID (all threads), or -1 */
static double
cpu_seconds(int pid)
{
	char path[64], line[1024], *p;
	unsigned long long ut, st;
	FILE *fp;
	int f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	p = fgets(line, sizeof(line), fp);
	fclose(fp);
	if (p == NULL || (p = strrchr(line, ')')) == NULL)
		return -1;
	/* after "comm)": state is field 3, utime 14 and stime 15 */
	for (f = 2; p != NULL && f < 14; f++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p + 1, "%llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* parse_proc - LABEL=PID */
static void
parse_proc(const char *spec)
{
	const char *eq = strchr(spec, '=');
	struct proc *pr;

	if (G.nprocs == MAX_PROCS || eq == NULL || eq == spec ||
	    (size_t)(eq - spec) >= sizeof(pr->label))
		usage();
	pr = &G.procs[G.nprocs++];
	memcpy(pr->label, spec, (size_t)(eq - spec));
	pr->label[eq - spec] = '\0';
	pr->pid = (int)num(eq + 1, 1, 1e9);
}

/* ---- sending ---- */

/* pair_fill - top the pair's window up while its server is the active one */
static void
pair_fill(struct pair *p)
{
	char buf[16384];

	while (G.active == p->srv && p->s.ready && p->r.ready &&
	    p->inflight < G.window) {
		const char *body = G.bodies[G.next_body];
		int n;

		if (++G.next_body == G.nbodies)
			G.next_body = 0;
		n = snprintf(buf, sizeof(buf), "<message to='%s/bench' "
		    "type='chat' id='m%llx'><body>%s</body></message>",
		    p->r.jid, ++G.msgid, body);
		if (n < 0 || (size_t)n >= sizeof(buf))
			continue;       /* too long for the buffer: skip it */
		xmpp_send_raw(p->s.conn, buf, (size_t)n);
		p->sent++;
		p->inflight++;
	}
}

/* ---- handlers ---- */

/* on_message - a receiver got one, or a sender got an error back */
static int
on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct client *c = ud;
	struct pair *p = c->pair;
	const char *type = xmpp_stanza_get_type(st);

	if (c->sender) {
		if (type != NULL && strcmp(type, "error") == 0) {
			p->errors++;
			p->srv->errors++;
			if (p->inflight > 0)
				p->inflight--;
			pair_fill(p);
		}
		return 1;
	}
	if (xmpp_stanza_get_child_by_name(st, "body") == NULL)
		return 1;
	p->delivered++;
	if (p->inflight > 0)
		p->inflight--;
	if (G.active == p->srv) {
		double t = now();

		if (t >= G.count_from && t < G.count_until)
			G.counted++;
	}
	pair_fill(p);
	return 1;
}

/* on_pong - the server answered our ping: our presence is in place */
static int
on_pong(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct client *c = ud;

	if (!c->ready) {
		c->ready = true;
		G.ready++;
	}
	return 0;
}

/* on_conn - connected (presence, then a ping) or failed */
static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *se, void *ud)
{
	struct client *c = ud;
	char id[160];

	if (ev == XMPP_CONN_CONNECT) {
		c->connected = true;
		G.connected++;
		xmpp_handler_add(conn, on_message, NULL, "message", NULL, c);
		snprintf(id, sizeof(id), "ping-%s", c->jid);
		xmpp_id_handler_add(conn, on_pong, id, c);
		xmpp_send_raw_string(conn, "<presence><priority>1</priority>"
		    "</presence><iq type='get' id='%s' to='%s'><ping "
		    "xmlns='urn:xmpp:ping'/></iq>", id, c->srv->domain);
		return;
	}
	if (!c->failed && !G.closing) {
		c->failed = true;
		G.failed++;
		fprintf(stderr, "xmpp-load: %s on %s: %s (error %d)\n", c->jid,
		    c->srv->label, c->connected ? "disconnected" :
		    "connection failed", error);
	}
}

/* client_start - create and connect one client */
static void
client_start(struct client *c, struct server *s, struct pair *p,
    bool sender, unsigned n)
{
	char full[192];

	c->srv = s;
	c->pair = p;
	c->sender = sender;
	snprintf(c->jid, sizeof(c->jid), "%c%u@%s", sender ? 's' : 'r', n,
	    s->domain);
	snprintf(full, sizeof(full), "%s/bench", c->jid);
	c->conn = xmpp_conn_new(G.ctx);
	xmpp_conn_set_flags(c->conn, XMPP_CONN_FLAG_DISABLE_TLS |
	    XMPP_CONN_FLAG_DISABLE_SM);
	xmpp_conn_set_jid(c->conn, full);
	xmpp_conn_set_pass(c->conn, G.pass);
	if (xmpp_connect_client(c->conn, s->host, s->port, on_conn, c) !=
	    XMPP_EOK) {
		fprintf(stderr, "xmpp-load: cannot connect %s\n", full);
		exit(1);
	}
}

/* run_until - run the event loop until T or DONE() */
static void
run_until(double t, bool (*done)(void))
{
	while (now() < t && !(done && done()) && G.failed == 0)
		xmpp_run_once(G.ctx, 1);
}

static bool
all_ready(void)
{
	return G.ready == 4 * G.npairs;
}

static bool
all_drained(void)
{
	unsigned i, j;

	for (j = 0; j < 2; j++)
		for (i = 0; i < G.npairs; i++)
			if (G.srv[j].pairs[i].inflight > 0)
				return false;
	return true;
}

/* slice - one measured slice on S; its rate in messages/s */
static double
slice(struct server *s)
{
	double t0 = now(), rate, cpu0[MAX_PROCS], cpu1[MAX_PROCS];
	unsigned i;

	G.counted = 0;
	G.count_from = t0 + G.warm;
	G.count_until = t0 + G.slice;
	G.active = s;
	for (i = 0; i < G.npairs; i++)
		pair_fill(&s->pairs[i]);
	run_until(G.count_from, NULL);
	for (i = 0; i < G.nprocs; i++)
		cpu0[i] = cpu_seconds(G.procs[i].pid);
	run_until(G.count_until, NULL);
	for (i = 0; i < G.nprocs; i++)
		cpu1[i] = cpu_seconds(G.procs[i].pid);
	G.active = NULL;
	rate = (double)G.counted / (G.slice - G.warm);
	for (i = 0; i < G.nprocs; i++) {
		struct proc *pr = &G.procs[i];
		unsigned k = (unsigned)(s - G.srv);

		if (cpu0[i] >= 0 && cpu1[i] >= 0 && G.counted > 0)
			pr->us_per_msg[k][pr->n[k]++] = 1e6 * (cpu1[i] - cpu0[i]) /
			    (double)G.counted;
	}
	/* let what is in flight arrive before the other server's turn */
	run_until(now() + DRAIN_SECONDS, all_drained);
	return rate;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* median - of N values (sorted copy) */
static double
median(const double *v, unsigned n)
{
	double *c = malloc(n * sizeof(*c));
	double m;

	if (c == NULL || n == 0) {
		free(c);
		return 0;
	}
	memcpy(c, v, n * sizeof(*c));
	qsort(c, n, sizeof(*c), cmp_double);
	m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
	free(c);
	return m;
}

/* load_bodies - the chat texts of the mix, escaped once */
static void
load_bodies(void)
{
	struct mix *m = mix_generate(10000, G.seed);
	size_t i;

	G.bodies = calloc(m->n, sizeof(*G.bodies));
	if (G.bodies == NULL)
		abort();
	for (i = 0; i < m->n; i++) {
		struct mix_str e = { 0 };

		if ((m->items[i].cls != MIX_CHAT &&
		    m->items[i].cls != MIX_CHAT_LINK) || m->items[i].body == NULL)
			continue;
		mix_cat_escaped(&e, m->items[i].body);
		G.bodies[G.nbodies++] = e.p;
	}
	mix_free(m);
}

int
main(int argc, char **argv)
{
	double ratios[MAX_ROUNDS], t, avg_len = 0;
	struct rusage ru;
	unsigned i, j, r;
	int opt;
	bool have[2] = { false, false };

	G.npairs = 20;
	G.window = 8;
	G.slice = 5;
	G.rounds = 6;
	G.warm = 1;
	G.pass = "bench";
	G.seed = 1;
	while ((opt = getopt(argc, argv, "A:B:n:w:s:r:W:p:S:P:qh")) != -1) {
		switch (opt) {
		case 'A': parse_server(&G.srv[0], optarg); have[0] = true; break;
		case 'B': parse_server(&G.srv[1], optarg); have[1] = true; break;
		case 'n': G.npairs = (unsigned)num(optarg, 1, MAX_PAIRS); break;
		case 'w': G.window = (unsigned)num(optarg, 1, 10000); break;
		case 's': G.slice = num(optarg, 0.5, 3600); break;
		case 'r': G.rounds = (unsigned)num(optarg, 1, MAX_ROUNDS); break;
		case 'W': G.warm = num(optarg, 0, 3600); break;
		case 'p': G.pass = optarg; break;
		case 'S': G.seed = (uint64_t)num(optarg, 0, 1e18); break;
		case 'P': parse_proc(optarg); break;
		case 'q': G.quiet = true; break;
		default: usage();
		}
	}
	if (!have[0] || !have[1] || G.warm >= G.slice)
		usage();
	signal(SIGPIPE, SIG_IGN);
	alarm((unsigned)(SETUP_SECONDS + G.rounds * 2 * (G.slice +
	    DRAIN_SECONDS) + 30));

	load_bodies();
	for (i = 0; i < G.nbodies; i++)
		avg_len += (double)strlen(G.bodies[i]);
	xmpp_initialize();
	G.ctx = xmpp_ctx_new(NULL, NULL);
	for (j = 0; j < 2; j++) {
		struct server *s = &G.srv[j];

		s->pairs = calloc(G.npairs, sizeof(*s->pairs));
		if (s->pairs == NULL)
			abort();
		for (i = 0; i < G.npairs; i++) {
			struct pair *p = &s->pairs[i];

			p->srv = s;
			client_start(&p->s, s, p, true, i + 1);
			client_start(&p->r, s, p, false, i + 1);
		}
	}
	t = now();
	run_until(t + SETUP_SECONDS, all_ready);
	if (!all_ready()) {
		fprintf(stderr, "xmpp-load: only %u of %u clients ready after "
		    "%.0f s (%u failed)\n", G.ready, 4 * G.npairs,
		    now() - t, G.failed);
		return 1;
	}
	if (!G.quiet)
		fprintf(stderr, "xmpp-load: %u clients ready in %.1f s; %u pairs "
		    "per server, window %u, %u rounds of %.1f s slices (%.1f s "
		    "not counted), bodies %zu, avg %.0f bytes\n", 4 * G.npairs,
		    now() - t, G.npairs, G.window, G.rounds, G.slice, G.warm,
		    G.nbodies, avg_len / (double)G.nbodies);

	for (r = 0; r < G.rounds && G.failed == 0; r++) {
		/* A B, B A, A B, ...: each server goes first half the time */
		for (j = 0; j < 2 && G.failed == 0; j++) {
			struct server *s = &G.srv[(r % 2) ? 1 - j : j];
			double rate = slice(s);

			s->rates[s->nrates++] = rate;
			printf("slice round=%u server=%s per_s=%.0f errors=%llu",
			    r + 1, s->label, rate, s->errors);
			for (i = 0; i < G.nprocs; i++) {
				struct proc *pr = &G.procs[i];
				unsigned k = (unsigned)(s - G.srv);

				if (pr->n[k] == G.srv[k].nrates)
					printf(" cpu_us_per_msg_%s=%.1f", pr->label,
					    pr->us_per_msg[k][pr->n[k] - 1]);
			}
			printf("\n");
			fflush(stdout);
		}
		if (G.srv[0].nrates == r + 1 && G.srv[1].nrates == r + 1)
			ratios[r] = G.srv[0].rates[r] > 0 ?
			    G.srv[1].rates[r] / G.srv[0].rates[r] : 0;
	}
	if (G.failed) {
		fprintf(stderr, "xmpp-load: %u connection(s) failed\n", G.failed);
		return 1;
	}
	printf("xmpp_load pairs=%u window=%u rounds=%u slice_s=%.1f "
	    "%s_median_per_s=%.0f %s_median_per_s=%.0f ratio_median_pct=%.1f "
	    "%s_errors=%llu %s_errors=%llu ratios=",
	    G.npairs, G.window, G.rounds, G.slice,
	    G.srv[0].label, median(G.srv[0].rates, G.srv[0].nrates),
	    G.srv[1].label, median(G.srv[1].rates, G.srv[1].nrates),
	    100 * median(ratios, G.rounds), G.srv[0].label, G.srv[0].errors,
	    G.srv[1].label, G.srv[1].errors);
	for (r = 0; r < G.rounds; r++)
		printf("%s%.3f", r ? "," : "", ratios[r]);
	for (i = 0; i < G.nprocs; i++)
		for (j = 0; j < 2; j++)
			printf(" %s_cpu_us_per_msg_%s=%.1f", G.srv[j].label,
			    G.procs[i].label, median(G.procs[i].us_per_msg[j],
			    G.procs[i].n[j]));
	getrusage(RUSAGE_SELF, &ru);
	printf(" self_cpu_s=%.2f\n", (double)ru.ru_utime.tv_sec +
	    (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	    (double)ru.ru_stime.tv_usec / 1e6);

	G.closing = true;
	for (j = 0; j < 2; j++)
		for (i = 0; i < G.npairs; i++) {
			xmpp_disconnect(G.srv[j].pairs[i].s.conn);
			xmpp_disconnect(G.srv[j].pairs[i].r.conn);
		}
	t = now();
	while (now() - t < 1)
		xmpp_run_once(G.ctx, 10);
	return 0;
}
