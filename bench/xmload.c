/*
 * xmload.c - load generator for xmilterd: protocol v1 at full speed or at
 * a fixed rate, with latency percentiles and the daemon's memory
 *
 * Purpose
 *	Plays the glue of a busy XMPP server: N connections to xmilterd,
 *	HELLO first, then FILTER requests carrying the events of
 *	bench/stanzamix.h (envelope with a time= stamped at send, then the
 *	stanza), pipelined up to a window per connection, and VERDICTs read
 *	back in any order. Two modes:
 *
 *	  max    (-r 0) closed loop: every window stays full for D seconds;
 *	         gives the throughput. Latency is from the moment a request
 *	         was written, so it mostly measures the window's queue.
 *	  rate   (-r R) open loop: request k is due at start + k/R whether or
 *	         not earlier ones were answered (a full window holds it in a
 *	         backlog), and its latency runs from that due time, so a
 *	         stalled daemon is charged for every request it delayed (no
 *	         coordinated omission).
 *
 *	It prints stanzas/s, latency p50/p90/p99/p99.9/max in microseconds,
 *	the daemon's RSS (VmRSS, VmHWM from /proc/PID/status) and CPU time
 *	at the start and the end when given its pid, and how many verdicts
 *	had each action and each symbol: proof that the rules ran. With -i
 *	a line every interval (throughput, p99, RSS) shows drift over time.
 *
 * Usage
 *	xmload (-s SOCKET | -T HOST:PORT) [-c CONNS] [-w WINDOW] [-d SECONDS]
 *	       [-r RATE] [-W WARMUP] [-p PID] [-i INTERVAL] [-n ITEMS]
 *	       [-S SEED] [-D DRAIN] [-q] [-L plain|links]
 *
 *	-L keeps only the items without links (plain) or with links (links):
 *	two runs side by side measure link-less latency while link
 *	look-ups are slow (docs/PERFORMANCE.md, link reputation).
 *
 *	The final line is machine-readable: "xmload mode=... key=value...".
 *	Run time is bounded: WARMUP + SECONDS + DRAIN, and an alarm ends the
 *	process 30 s after that whatever happens.
 *
 * Interface
 *	Ids are (sequence << 16 | slot): they rise strictly on a connection,
 *	as the protocol asks, and a verdict's id names the slot that holds
 *	its timing without any look-up. The codec is libxm's proto.c.
 *
 * Failure
 *	Exit 0 when every request got its verdict; 1 when the daemon sent
 *	BYE, closed a connection, broke the protocol or left requests
 *	unanswered after the drain; 2 on usage errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "autoconf.h"
#include "proto.h"
#include "util.h"
#include "stanzamix.h"
#include "url.h"
#include "benchutil.h"

#define SLOT_BITS 16
#define MAX_WINDOW ((1u << SLOT_BITS) - 1)
#define READ_SIZE (256 * 1024)
#define MAX_SYMBOLS 256
#define MAX_FRAME (1024 * 1024)

/* ---- latency histogram: log-linear, ~1.5% resolution, ns ---- */

#define H_SUB_BITS 7
#define H_SUB (1u << H_SUB_BITS)
#define H_HALF (H_SUB / 2)
#define H_BUCKETS (64 * H_HALF + H_SUB)

struct hist {
	uint64_t b[H_BUCKETS];
	uint64_t n, max;
	double sum;
};

/* h_index - bucket of V nanoseconds */
static unsigned
h_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < H_SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - (H_SUB_BITS - 1);
	return shift * H_HALF + (unsigned)(v >> shift);
}

/* h_value - the middle of bucket I, in ns */
static double
h_value(unsigned i)
{
	unsigned shift, mant;

	if (i < H_SUB)
		return (double)i;
	shift = (i - H_HALF) / H_HALF;
	mant = i - shift * H_HALF;
	return ldexp((double)mant + 0.5, (int)shift);
}

static void
h_add(struct hist *h, double seconds)
{
	uint64_t v = seconds <= 0 ? 0 : (uint64_t)(seconds * 1e9);

	h->b[h_index(v)]++;
	h->n++;
	h->sum += (double)v;
	if (v > h->max)
		h->max = v;
}

/* h_pct - the P-th percentile (0..100) in microseconds */
static double
h_pct(const struct hist *h, double p)
{
	uint64_t want, seen = 0;
	unsigned i;

	if (h->n == 0)
		return 0;
	want = (uint64_t)ceil(p / 100.0 * (double)h->n);
	if (want == 0)
		want = 1;
	for (i = 0; i < H_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			double v = h_value(i);
			return (v > (double)h->max ? (double)h->max : v) / 1e3;
		}
	}
	return (double)h->max / 1e3;
}

/* ---- state ---- */

struct slot {
	double due;        /* scheduled (rate) or written (max) */
	bool used;
};

struct conn {
	int fd;
	unsigned idx;
	bool ready, dead, want_out;
	struct xm_buf out;
	size_t out_off;
	char *in;
	size_t inlen;
	uint64_t seq;
	struct slot *slots;
	unsigned *free_slots, nfree;
	unsigned inflight;
};

struct backlog {
	double *due;
	size_t head, len, cap;
};

enum { A_ACCEPT, A_MODIFY, A_QUARANTINE, A_REJECT, A_DISCARD, A_OTHER, A_N };
static const char *const action_names[A_N] = {
	"accept", "modify", "quarantine", "reject", "discard", "other",
};

struct symcount {
	char name[64];
	unsigned long long n;
};

static struct {
	/* options */
	const char *sock_path, *tcp;
	unsigned nconns, window;
	double duration, rate, warmup, interval, drain;
	int pid;
	size_t nitems;
	uint64_t seed;
	bool quiet;
	int links_only;         /* -L: 0 all, 1 plain only, 2 links only */

	/* run */
	struct mix *mix;
	size_t *order;          /* items the daemon wants, in mix order */
	size_t norder, next_item;
	struct conn *conns;
	int ep;
	double t_start, t_measure, t_stop, t_end;
	double next_due;
	struct backlog bl;
	size_t bl_max;
	unsigned rr;
	bool errors;

	/* counts */
	unsigned long long sent, answered, measured, late_answers;
	unsigned long long actions[A_N];
	struct symcount syms[MAX_SYMBOLS];
	unsigned nsyms;
	unsigned long long sym_other;
	struct hist h, hi;      /* whole run, current interval */
	unsigned long long interval_done;
} G;

static void XM_NORETURN
usage(void)
{
	fprintf(stderr,
	    "usage: xmload (-s SOCKET | -T HOST:PORT) [-c CONNS] [-w WINDOW]\n"
	    "              [-d SECONDS] [-r RATE] [-W WARMUP] [-p PID]\n"
	    "              [-i INTERVAL] [-n ITEMS] [-S SEED] [-D DRAIN] [-q]\n"
	    "              [-L plain|links]\n"
	    "  -r 0 (default): as fast as the windows allow (closed loop)\n"
	    "  -r R: R requests/s on schedule, latency from the due time\n");
	exit(2);
}

/* mix_links_ok - the item passes -L: does it carry a link (in its text,
 * an XHTML-IM href/src or an out-of-band URL) as -L asks */
static bool
mix_links_ok(const struct mix_item *it)
{
	struct xm_url_span sp;
	bool links;

	if (G.links_only == 0)
		return true;
	links = strstr(it->stanza, " href=") != NULL ||
	    strstr(it->stanza, " src=") != NULL ||
	    strstr(it->stanza, "<url>") != NULL ||
	    (it->body != NULL && xm_url_find(it->body, strlen(it->body), &sp,
	    1) > 0);
	return links == (G.links_only == 2);
}

/* ---- /proc ---- */

struct procinfo {
	long rss_kb, hwm_kb;
	double cpu_s;
	int threads;
	bool ok;
};

/* proc_read - memory and CPU of PID */
static struct procinfo
proc_read(int pid)
{
	struct procinfo pi = { -1, -1, -1, -1, false };
	char path[64], line[512];
	FILE *fp;

	if (pid <= 0)
		return pi;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if ((fp = fopen(path, "r")) == NULL)
		return pi;
	while (fgets(line, sizeof(line), fp)) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			pi.rss_kb = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "VmHWM:", 6) == 0)
			pi.hwm_kb = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "Threads:", 8) == 0)
			pi.threads = (int)strtol(line + 8, NULL, 10);
	}
	fclose(fp);
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((fp = fopen(path, "r")) != NULL) {
		if (fgets(line, sizeof(line), fp)) {
			/* fields after the ")" of comm: state is 3, utime 14 */
			char *p = strrchr(line, ')');
			unsigned long long ut = 0, stt = 0;
			int f;

			for (f = 2; p && f < 14; f++)
				p = strchr(p + 1, ' ');
			if (p && sscanf(p + 1, "%llu %llu", &ut, &stt) == 2)
				pi.cpu_s = (double)(ut + stt) /
				    (double)sysconf(_SC_CLK_TCK);
		}
		fclose(fp);
	}
	pi.ok = pi.rss_kb >= 0;
	return pi;
}

/* ---- connections ---- */

/* conn_open - connect, non-blocking, registered with epoll */
static void
conn_open(struct conn *c, unsigned idx)
{
	struct epoll_event ee = { 0 };
	unsigned i;
	int fd;

	if (G.sock_path) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(G.sock_path) >= sizeof(sun.sun_path))
			fatalx("socket path too long: %s", G.sock_path);
		strcpy(sun.sun_path, G.sock_path);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			fatalx("connect %s: %s", G.sock_path, strerror(errno));
	} else {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		char host[64];
		const char *colon = strrchr(G.tcp, ':');
		long long port;
		int one = 1;

		if (colon == NULL || (size_t)(colon - G.tcp) >= sizeof(host) ||
		    xm_parse_ll(colon + 1, 1, 65535, &port) < 0)
			fatalx("-T wants HOST:PORT");
		memcpy(host, G.tcp, (size_t)(colon - G.tcp));
		host[colon - G.tcp] = '\0';
		if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
			fatalx("-T: %s is not an IPv4 address", host);
		sin.sin_port = htons((uint16_t)port);
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			fatalx("connect %s: %s", G.tcp, strerror(errno));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->fd = fd;
	c->idx = idx;
	c->in = xm_malloc(READ_SIZE * 2);
	c->slots = xm_calloc(G.window + 1, sizeof(*c->slots));
	c->free_slots = xm_calloc(G.window, sizeof(*c->free_slots));
	for (i = 0; i < G.window; i++)
		c->free_slots[i] = G.window - i;    /* slot 0 unused: id >= 1 */
	c->nfree = G.window;
	ee.events = EPOLLIN;
	ee.data.ptr = c;
	if (epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ee) < 0)
		fatalx("epoll_ctl: %s", strerror(errno));
}

/* conn_dead - the daemon closed or broke the protocol */
static void
conn_dead(struct conn *c, const char *why)
{
	if (c->dead)
		return;
	log_err("connection %u: %s (%u requests in flight)", c->idx, why,
	    c->inflight);
	c->dead = true;
	G.errors = true;
	epoll_ctl(G.ep, EPOLL_CTL_DEL, c->fd, NULL);
}

/* conn_flush - write what is queued; EPOLLOUT when the socket is full */
static void
conn_flush(struct conn *c)
{
	while (!c->dead && c->out_off < c->out.len) {
		ssize_t n = write(c->fd, c->out.data + c->out_off,
		    c->out.len - c->out_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_dead(c, strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out.len) {
		xm_buf_reset(&c->out);
		c->out_off = 0;
	}
	if ((c->out_off < c->out.len) != c->want_out && !c->dead) {
		struct epoll_event ee = { 0 };

		c->want_out = c->out_off < c->out.len;
		ee.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
		ee.data.ptr = c;
		epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ee);
	}
}

/* time_line - "time=RFC3339\n" for now, cached per second */
static size_t
time_line(char *buf, size_t len)
{
	static time_t cached = -1;
	static char prefix[40];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached) {
		cached = ts.tv_sec;
		gmtime_r(&ts.tv_sec, &tm);
		strftime(prefix, sizeof(prefix), "time=%Y-%m-%dT%H:%M:%S", &tm);
	}
	return (size_t)snprintf(buf, len, "%s.%03ldZ\n", prefix,
	    ts.tv_nsec / 1000000);
}

/* conn_send - one FILTER with the next item; DUE is its scheduled time */
static void
conn_send(struct conn *c, double due)
{
	const struct mix_item *it = &G.mix->items[G.order[G.next_item]];
	char hdr[PROTO_MAX_HEADER], tl[48];
	unsigned slot = c->free_slots[--c->nfree];
	uint64_t id = (++c->seq << SLOT_BITS) | slot;
	size_t tlen = time_line(tl, sizeof(tl));
	int hlen;

	if (++G.next_item == G.norder)
		G.next_item = 0;
	hlen = snprintf(hdr, sizeof(hdr), "FILTER %llu %zu\n",
	    (unsigned long long)id, tlen + it->event_len);
	xm_buf_append(&c->out, hdr, (size_t)hlen);
	xm_buf_append(&c->out, tl, tlen);
	xm_buf_append(&c->out, it->event, it->event_len);
	c->slots[slot].due = due;
	c->slots[slot].used = true;
	c->inflight++;
	G.sent++;
}

/* conn_hello - send our HELLO */
static void
conn_hello(struct conn *c)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "version=1\nmax-frame=%d\n"
	    "max-inflight=%u\nserver=xmload/%s\n", MAX_FRAME, G.window,
	    PACKAGE_VERSION);

	proto_write_frame(&c->out, PROTO_HELLO, 0, body, (size_t)n);
	conn_flush(c);
}

/* ---- verdicts ---- */

/* count_symbol - one more of symbol NAME[0..len) */
static void
count_symbol(const char *name, size_t len)
{
	unsigned i;

	if (len >= sizeof(G.syms[0].name))
		len = sizeof(G.syms[0].name) - 1;
	for (i = 0; i < G.nsyms; i++)
		if (strncmp(G.syms[i].name, name, len) == 0 &&
		    G.syms[i].name[len] == '\0') {
			G.syms[i].n++;
			return;
		}
	if (G.nsyms == MAX_SYMBOLS) {
		G.sym_other++;
		return;
	}
	memcpy(G.syms[G.nsyms].name, name, len);
	G.syms[G.nsyms].name[len] = '\0';
	G.syms[G.nsyms++].n = 1;
}

/* on_verdict - action and symbols of one VERDICT body */
static void
on_verdict(const char *b, size_t len)
{
	const char *p = b, *end = b + len, *nl;
	int a = A_OTHER, i;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if (nl == p)
			break;          /* the replacement stanza follows */
		if ((size_t)(nl - p) > 7 && memcmp(p, "action=", 7) == 0) {
			for (i = 0; i < A_OTHER; i++)
				if ((size_t)(nl - p - 7) == strlen(action_names[i])
				    && memcmp(p + 7, action_names[i],
				    (size_t)(nl - p - 7)) == 0)
					a = i;
		} else if ((size_t)(nl - p) > 7 && memcmp(p, "symbol=", 7) == 0) {
			const char *sp = memchr(p + 7, ' ', (size_t)(nl - p - 7));

			count_symbol(p + 7, (size_t)((sp ? sp : nl) - p - 7));
		}
		p = nl + 1;
	}
	G.actions[a]++;
}

/* on_hello_reply - the daemon's HELLO: window and kinds */
static void
on_hello_reply(struct conn *c, const char *b, size_t len)
{
	struct xm_arena *a = xm_arena_new();
	struct xm_field *f;
	const char *mi, *rest;
	size_t n, restlen, i;
	char err[256];

	if (proto_parse_kv(a, b, len, 256, &f, &n, &rest, &restlen, err,
	    sizeof(err)) < 0) {
		conn_dead(c, err);
		xm_arena_free(a);
		return;
	}
	if ((mi = proto_kv_get(f, n, "max-inflight")) != NULL) {
		long long v;

		if (xm_parse_ll(mi, 1, MAX_WINDOW, &v) == 0 &&
		    (unsigned)v < G.window) {
			/* shrink: drop the slots above the daemon's limit */
			unsigned keep = 0, j;

			for (j = 0; j < c->nfree; j++)
				if (c->free_slots[j] <= (unsigned)v)
					c->free_slots[keep++] = c->free_slots[j];
			c->nfree = keep;
			if (c->idx == 0)
				log_warn("daemon limits the window to %lld", v);
		}
	}
	if (c->idx == 0 && G.order == NULL) {
		/* the kinds the daemon wants, as the glue would honour them */
		bool want[MIX_NCLASSES] = { false };
		bool msg = false, sub = false, xfer = false;

		for (i = 0; i < n; i++) {
			if (strcmp(f[i].key, "kind") != 0)
				continue;
			msg |= strcmp(f[i].value, "message") == 0;
			sub |= strcmp(f[i].value, "subscription") == 0;
			xfer |= strcmp(f[i].value, "transfer") == 0;
		}
		for (i = 0; i < MIX_NCLASSES; i++)
			want[i] = msg;
		want[MIX_SUBSCRIPTION] = sub;
		want[MIX_FILE] = xfer;
		G.order = xm_calloc(G.mix->n, sizeof(*G.order));
		for (i = 0; i < G.mix->n; i++)
			if (want[G.mix->items[i].cls] &&
			    mix_links_ok(&G.mix->items[i]))
				G.order[G.norder++] = i;
		if (G.norder == 0)
			fatalx("the daemon wants none of the kinds in the mix");
		if (G.norder < G.mix->n)
			log_warn("daemon wants %zu of %zu items (kinds)",
			    G.norder, G.mix->n);
	}
	c->ready = true;
	xm_arena_free(a);
}

/* conn_frames - handle every whole frame in the input buffer */
static void
conn_frames(struct conn *c, double t)
{
	size_t off = 0, used;
	struct proto_frame f;
	char err[256];
	int code, rc;

	while (!c->dead && (rc = proto_parse_frame(c->in + off, c->inlen - off,
	    MAX_FRAME, &f, &used, &code, err, sizeof(err))) == 1) {
		off += used;
		switch (f.verb) {
		case PROTO_HELLO:
			on_hello_reply(c, f.body, f.len);
			break;
		case PROTO_VERDICT: {
			unsigned slot = (unsigned)(f.id & MAX_WINDOW);
			struct slot *s = &c->slots[slot];

			if (slot == 0 || slot > G.window || !s->used) {
				conn_dead(c, "VERDICT for an id not in flight");
				break;
			}
			s->used = false;
			c->free_slots[c->nfree++] = slot;
			c->inflight--;
			G.answered++;
			if (s->due >= G.t_measure && s->due < G.t_stop) {
				h_add(&G.h, t - s->due);
				h_add(&G.hi, t - s->due);
				G.measured++;
				on_verdict(f.body, f.len);
			} else if (s->due >= G.t_stop) {
				G.late_answers++;
			}
			G.interval_done++;
			break;
		}
		case PROTO_BYE:
			fprintf(stderr, "xmload: BYE from the daemon: %.*s\n",
			    (int)f.len, f.body);
			conn_dead(c, "BYE");
			break;
		case PROTO_PING: {
			struct xm_buf *o = &c->out;

			proto_write_frame(o, PROTO_PONG, f.id, f.body, f.len);
			break;
		}
		default:
			conn_dead(c, "unexpected frame from the daemon");
		}
	}
	if (!c->dead && rc < 0)
		conn_dead(c, err);
	if (off > 0) {
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
}

/* conn_read - drain the socket */
static void
conn_read(struct conn *c, double t)
{
	for (;;) {
		ssize_t n;

		if (c->inlen == READ_SIZE * 2) {
			/* one frame bigger than the buffer: never from xmilterd
			 * with our max-frame, so a protocol error */
			conn_dead(c, "frame larger than the read buffer");
			return;
		}
		n = read(c->fd, c->in + c->inlen, READ_SIZE * 2 - c->inlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_dead(c, n == 0 ? "closed by the daemon" :
			    strerror(errno));
			return;
		}
		c->inlen += (size_t)n;
		conn_frames(c, t);
		if (c->dead || (size_t)n < READ_SIZE)
			return;
	}
}

/* ---- scheduling ---- */

static void
bl_push(double due)
{
	struct backlog *b = &G.bl;

	if (b->len == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 4096, i;
		double *nd = xm_reallocarray(NULL, ncap, sizeof(*nd));

		for (i = 0; i < b->len; i++)
			nd[i] = b->due[(b->head + i) % b->cap];
		free(b->due);
		b->due = nd;
		b->head = 0;
		b->cap = ncap;
	}
	b->due[(b->head + b->len++) % b->cap] = due;
	if (b->len > G.bl_max)
		G.bl_max = b->len;
}

/* next_conn - a live, ready connection with a free slot (round robin) */
static struct conn *
next_conn(void)
{
	unsigned i;

	for (i = 0; i < G.nconns; i++) {
		struct conn *c = &G.conns[(G.rr + i) % G.nconns];

		if (c->ready && !c->dead && c->nfree > 0) {
			G.rr = (G.rr + i + 1) % G.nconns;
			return c;
		}
	}
	return NULL;
}

/* pump - queue what is due (rate) or what fits (max), then write */
static void
pump(double t)
{
	struct conn *c;
	unsigned i;

	if (G.rate > 0) {
		while (G.next_due <= t && G.next_due < G.t_stop) {
			bl_push(G.next_due);
			G.next_due = G.t_start + (double)(G.sent + G.bl.len) /
			    G.rate;
		}
		while (G.bl.len > 0 && (c = next_conn()) != NULL) {
			conn_send(c, G.bl.due[G.bl.head]);
			G.bl.head = (G.bl.head + 1) % G.bl.cap;
			G.bl.len--;
		}
	} else if (t < G.t_stop) {
		while ((c = next_conn()) != NULL)
			conn_send(c, t);
	}
	for (i = 0; i < G.nconns; i++)
		if (G.conns[i].out.len > G.conns[i].out_off)
			conn_flush(&G.conns[i]);
}

/* ---- reports ---- */

static struct procinfo P0, P1;
static unsigned long long answered_p1;   /* verdicts when P1 was read */

/* report_interval - one line of progress */
static void
report_interval(double t, double *last)
{
	struct procinfo pi = proc_read(G.pid);

	printf("interval t=%.0f stanzas_per_s=%.0f p50_us=%.0f p99_us=%.0f "
	    "max_us=%.0f backlog=%zu rss_kb=%ld\n", t - G.t_start,
	    (double)G.interval_done / (t - *last), h_pct(&G.hi, 50),
	    h_pct(&G.hi, 99), (double)G.hi.max / 1e3, G.bl.len, pi.rss_kb);
	fflush(stdout);
	memset(&G.hi, 0, sizeof(G.hi));
	G.interval_done = 0;
	*last = t;
}

static int
cmp_sym(const void *a, const void *b)
{
	const struct symcount *x = a, *y = b;

	return x->n < y->n ? 1 : x->n > y->n ? -1 : strcmp(x->name, y->name);
}

/* self_cpu - this process's user + system seconds */
static double
self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* report - the summary */
static void
report(double t_sent_end)
{
	double secs = G.t_stop - G.t_measure;
	double thr = (double)G.measured / secs;
	unsigned long long lost = G.sent - G.answered;
	unsigned i;

	if (!G.quiet) {
		mix_describe(G.mix, stdout);
		printf("actions:");
		for (i = 0; i < A_N; i++)
			printf(" %s=%llu", action_names[i], G.actions[i]);
		printf("\nsymbols (%u distinct):", G.nsyms);
		qsort(G.syms, G.nsyms, sizeof(G.syms[0]), cmp_sym);
		for (i = 0; i < G.nsyms; i++)
			printf(" %s=%llu", G.syms[i].name, G.syms[i].n);
		printf("\n");
		if (P0.ok)
			printf("daemon pid=%d threads=%d rss_kb start=%ld end=%ld "
			    "hwm_kb=%ld cpu_s=%.2f\n", G.pid, P1.threads,
			    P0.rss_kb, P1.rss_kb, P1.hwm_kb,
			    P1.cpu_s - P0.cpu_s);
	}
	printf("xmload mode=%s conns=%u window=%u seconds=%.1f rate=%.0f "
	    "sent=%llu answered=%llu measured=%llu lost=%llu "
	    "stanzas_per_s=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f "
	    "p999_us=%.0f max_us=%.0f mean_us=%.0f backlog_max=%zu "
	    "rss_start_kb=%ld rss_end_kb=%ld hwm_kb=%ld daemon_cpu_pct=%.0f "
	    "daemon_us_per_stanza=%.1f "
	    "accept=%llu modify=%llu quarantine=%llu reject=%llu "
	    "discard=%llu self_cpu_s=%.2f\n",
	    G.rate > 0 ? "rate" : "max", G.nconns, G.window, secs, G.rate,
	    G.sent, G.answered, G.measured, lost, thr, h_pct(&G.h, 50),
	    h_pct(&G.h, 90), h_pct(&G.h, 99), h_pct(&G.h, 99.9),
	    (double)G.h.max / 1e3, G.h.n ? G.h.sum / (double)G.h.n / 1e3 : 0,
	    G.bl_max, P0.rss_kb, P1.rss_kb, P1.hwm_kb,
	    P0.ok ? 100 * (P1.cpu_s - P0.cpu_s) / (t_sent_end - G.t_start) : -1,
	    P0.ok && answered_p1 ? 1e6 * (P1.cpu_s - P0.cpu_s) /
	    (double)answered_p1 : -1,
	    G.actions[A_ACCEPT], G.actions[A_MODIFY], G.actions[A_QUARANTINE],
	    G.actions[A_REJECT], G.actions[A_DISCARD], self_cpu());
	if (lost > 0)
		log_err("%llu requests got no verdict", lost);
}

int
main(int argc, char **argv)
{
	struct epoll_event evs[64];
	double t, last_interval, t_sent_end = 0;
	unsigned i;
	int opt;

	xm_log_prog = "xmload";
	G.nconns = 2;
	G.window = 64;
	G.duration = 10;
	G.warmup = 1;
	G.drain = 10;
	G.nitems = 10000;
	G.seed = 1;
	while ((opt = getopt(argc, argv, "s:T:c:w:d:r:W:p:i:n:S:D:qL:h")) != -1) {
		switch (opt) {
		case 's': G.sock_path = optarg; break;
		case 'T': G.tcp = optarg; break;
		case 'c': G.nconns = (unsigned)num(optarg, 1, 1024); break;
		case 'w': G.window = (unsigned)num(optarg, 1, MAX_WINDOW); break;
		case 'd': G.duration = num(optarg, 0.1, 86400); break;
		case 'r': G.rate = num(optarg, 0, 1e8); break;
		case 'W': G.warmup = num(optarg, 0, 3600); break;
		case 'p': G.pid = (int)num(optarg, 1, 1e9); break;
		case 'i': G.interval = num(optarg, 0, 86400); break;
		case 'n': G.nitems = (size_t)num(optarg, 1, 1e7); break;
		case 'S': G.seed = (uint64_t)num(optarg, 0, 1e18); break;
		case 'D': G.drain = num(optarg, 0, 600); break;
		case 'q': G.quiet = true; break;
		case 'L':
			if (strcmp(optarg, "plain") == 0)
				G.links_only = 1;
			else if (strcmp(optarg, "links") == 0)
				G.links_only = 2;
			else
				usage();
			break;
		default: usage();
		}
	}
	if ((G.sock_path == NULL) == (G.tcp == NULL))
		usage();
	signal(SIGPIPE, SIG_IGN);
	/* bounded whatever happens */
	alarm((unsigned)(G.warmup + G.duration + G.drain + 30));

	G.mix = mix_generate(G.nitems, G.seed);
	if ((G.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		fatalx("epoll_create1: %s", strerror(errno));
	G.conns = xm_calloc(G.nconns, sizeof(*G.conns));
	for (i = 0; i < G.nconns; i++) {
		conn_open(&G.conns[i], i);
		conn_hello(&G.conns[i]);
	}
	/* wait for every HELLO answer (at most 5 s) */
	t = now();
	for (;;) {
		unsigned ready = 0;
		int n, j;

		for (i = 0; i < G.nconns; i++)
			ready += G.conns[i].ready || G.conns[i].dead;
		if (ready == G.nconns)
			break;
		if (now() - t > 5)
			fatalx("no HELLO answer within 5 s");
		n = epoll_wait(G.ep, evs, 64, 100);
		for (j = 0; j < n; j++)
			conn_read(evs[j].data.ptr, now());
	}
	if (G.errors)
		fatalx("HELLO failed");

	P0 = proc_read(G.pid);
	G.t_start = now();
	G.t_measure = G.t_start + G.warmup;
	G.t_stop = G.t_measure + G.duration;
	G.t_end = G.t_stop + G.drain;
	G.next_due = G.t_start;
	last_interval = G.t_measure;
	if (!G.quiet)
		fprintf(stderr, "xmload: %s, %u connections x window %u, "
		    "%.0f s warm-up + %.0f s measured\n", G.rate > 0 ?
		    "fixed rate" : "max throughput", G.nconns, G.window,
		    G.warmup, G.duration);

	for (;;) {
		int n, j, timeout_ms;
		bool busy = false;

		t = now();
		pump(t);
		if (t_sent_end == 0 && t >= G.t_stop) {
			t_sent_end = t;
			P1 = proc_read(G.pid);
			answered_p1 = G.answered;
		}
		for (i = 0; i < G.nconns; i++)
			busy |= !G.conns[i].dead && G.conns[i].inflight > 0;
		if (t >= G.t_stop && ((!busy && G.bl.len == 0) || t >= G.t_end))
			break;
		if (G.interval > 0 && t >= G.t_measure &&
		    t - last_interval >= G.interval)
			report_interval(t, &last_interval);
		else if (G.interval > 0 && t < G.t_measure) {
			last_interval = G.t_measure;   /* warm-up: not counted */
			G.interval_done = 0;
			memset(&G.hi, 0, sizeof(G.hi));
		}
		if (G.rate > 0 && G.next_due < G.t_stop) {
			/* sleep until the next due time (to the microsecond) */
			struct timespec ts;
			double d = G.next_due - t;

			if (d < 0)
				d = 0;
			ts.tv_sec = (time_t)d;
			ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
			n = epoll_pwait2(G.ep, evs, 64, &ts, NULL);
		} else {
			timeout_ms = 50;
			n = epoll_wait(G.ep, evs, 64, timeout_ms);
		}
		if (n < 0 && errno != EINTR)
			fatalx("epoll_wait: %s", strerror(errno));
		t = now();
		for (j = 0; j < n; j++) {
			struct conn *c = evs[j].data.ptr;

			if (evs[j].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				conn_read(c, t);
			if (evs[j].events & EPOLLOUT)
				conn_flush(c);
		}
		if (G.errors) {
			bool alive = false;

			for (i = 0; i < G.nconns; i++)
				alive |= !G.conns[i].dead;
			if (!alive)
				break;
		}
	}
	if (t_sent_end == 0) {
		t_sent_end = now();
		P1 = proc_read(G.pid);
		answered_p1 = G.answered;
	}
	report(t_sent_end);
	return G.errors || G.sent != G.answered ? 1 : 0;
}
