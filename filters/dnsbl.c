/*
 * dnsbl.c - the dnsbl filter: link hosts against DNS block lists
 *
 * Purpose: the URI block lists in the SURBL/URIBL style. For every link
 * of a stanza (found and normalised as the links filter does, with
 * plugin/url.c) the registrable domain - or, for an IP host, its octets
 * reversed - is looked up as NAME.ZONE (type A) in each configured zone;
 * an answer in 127.0.0.0/8 other than 127.0.0.1 lists it. 127.0.0.1 is
 * what URIBL answers to a refused query (public resolver, over quota):
 * it is logged, never scored.
 *
 * Threads: a SLOW filter. It runs on the daemon's worker pool, never on
 * the event loop, and its wants() is false for a stanza without links,
 * so plain chat is answered on the loop whatever DNS does. On a worker,
 * the look-ups of one stanza go out at once through c-ares and are
 * waited for together with poll(), bounded by `timeout` for the whole
 * stanza. Channels come from a per-state pool (mutex), so workers never
 * share one. At most max_waiting stanzas wait for DNS at once (default:
 * half the worker pool), and after a time-out only one at a time does
 * for `backoff` seconds: the others skip their uncached look-ups with
 * DNSBL_FAIL, so a dead DNS server cannot tie up every worker (which
 * quarantine writes and other SLOW filters need too).
 *
 * Cache: process-global (survives reloads), a bounded hash table of
 * query name -> listed address or "not listed", guarded by a mutex, kept
 * for the answer's TTL clamped to [min_ttl, max_ttl], negative answers
 * for negative_ttl. Time-outs and server failures are not cached.
 *
 * Interface: dnsbl_filter; settings filters.dnsbl.* (docs/CONFIGURATION.md,
 * docs/LINKS.md). Symbols: DNSBL (a listed link; detail "NAME in ZONE
 * (ADDRESS)", one per zone and stanza) and DNSBL_FAIL (score 0 by
 * default: some look-up timed out or failed).
 *
 * Ownership: the state owns its channels; per-check memory is the task's
 * arena. Failure: init fails on a bad zone entry or server list; at
 * check time DNS failures only give DNSBL_FAIL.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>

#include "config.h"
#include "url.h"
#include "xm.h"

struct dnsbl_conf {
	struct xm_strlist zones;
	struct xm_strlist servers;
	double timeout;
	long long tries;
	long long max_lookups;
	bool check_ips;
	struct xm_strlist skip;
	long long cache_size;
	double min_ttl, max_ttl, negative_ttl;
	double score;
	double score_fail;
	long long max_waiting;
	double backoff;
};

#define DNSBL_OFF(f) offsetof(struct dnsbl_conf, f)

static const struct xm_setting dnsbl_settings[] = {
	{ "zones", XM_ST_LIST, DNSBL_OFF(zones), "", 0, 0, NULL, true,
	    "DNS block list zones, each ZONE or ZONE=SCORE (e.g. "
	    "multi.surbl.org); empty: the filter does nothing" },
	{ "servers", XM_ST_LIST, DNSBL_OFF(servers), "", 0, 0, NULL, true,
	    "DNS servers to ask, IP or IP:PORT ([IPv6]:PORT); empty: those "
	    "of /etc/resolv.conf. Use a local resolver: public ones are "
	    "refused by most lists" },
	{ "timeout", XM_ST_DURATION, DNSBL_OFF(timeout), "2s", 0.01, 60,
	    NULL, true, "Longest wait for all look-ups of one stanza (on a "
	    "worker thread; the event loop never waits)" },
	{ "tries", XM_ST_INT, DNSBL_OFF(tries), "2", 1, 10, NULL, true,
	    "Tries per query within the timeout" },
	{ "max_lookups", XM_ST_INT, DNSBL_OFF(max_lookups), "20", 1, 1000,
	    NULL, true, "Most distinct names looked up per stanza and zone" },
	{ "check_ips", XM_ST_BOOL, DNSBL_OFF(check_ips), "true", 0, 0, NULL,
	    true, "Look up IP-address hosts too (octets reversed)" },
	{ "skip", XM_ST_LIST, DNSBL_OFF(skip), "localhost", 0, 0, NULL, true,
	    "Domains (with subdomains) never looked up: your own, your "
	    "partners'" },
	{ "cache_size", XM_ST_INT, DNSBL_OFF(cache_size), "65536", 16,
	    1 << 24, NULL, false, "Entries in the process-wide answer cache "
	    "(fixed by the first configuration)" },
	{ "min_ttl", XM_ST_DURATION, DNSBL_OFF(min_ttl), "60s", 0, 86400,
	    NULL, true, "Shortest time a listed answer is cached" },
	{ "max_ttl", XM_ST_DURATION, DNSBL_OFF(max_ttl), "1h", 0, 86400 * 7,
	    NULL, true, "Longest time a listed answer is cached" },
	{ "negative_ttl", XM_ST_DURATION, DNSBL_OFF(negative_ttl), "5m", 0,
	    86400, NULL, true, "Time a not-listed answer is cached" },
	{ "score", XM_ST_DOUBLE, DNSBL_OFF(score), "10", 0, 1000, NULL, true,
	    "Score of DNSBL: a link listed in a zone (unless the zone "
	    "has its own =SCORE)" },
	{ "score_fail", XM_ST_DOUBLE, DNSBL_OFF(score_fail), "0", 0, 1000,
	    NULL, true, "Score of DNSBL_FAIL: a look-up timed out, failed or "
	    "was skipped" },
	{ "max_waiting", XM_ST_INT, DNSBL_OFF(max_waiting), "0", 0, 1024,
	    NULL, true, "Most stanzas waiting for DNS answers at once (each "
	    "holds a worker thread); others skip their uncached look-ups "
	    "(DNSBL_FAIL). 0: half the daemon's workers, at least 1" },
	{ "backoff", XM_ST_DURATION, DNSBL_OFF(backoff), "10s", 0, 3600, NULL,
	    true, "After a look-up timed out, for this long only one stanza "
	    "at a time waits for DNS (the others skip): a dead server does "
	    "not tie up the worker pool" },
	XM_SETTINGS_END
};

struct dnsbl_zone {
	char *zone;
	double score;
};

struct dnsbl_state {
	const struct dnsbl_conf *c;
	struct dnsbl_zone *zones;
	size_t nzones;
	char *servers_csv;            /* NULL: resolv.conf */
	struct xm_strset skip;
	pthread_mutex_t pool_lock;
	ares_channel *pool;
	size_t npool, poolcap;
	long limit;                   /* max_waiting resolved */
	atomic_long waiting;          /* stanzas waiting for DNS now */
	_Atomic double down_until;    /* monotonic: backing off until */
};

/* ---- the process-wide cache ---- */

#define DNSBL_NAME_MAX 256
#define DNSBL_PROBE 4

struct dnsbl_entry {
	char name[DNSBL_NAME_MAX];
	double expires;               /* monotonic seconds; 0 empty */
	uint32_t addr;                /* 0: not listed */
};

static pthread_mutex_t dnsbl_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dnsbl_entry *dnsbl_cache;
static size_t dnsbl_cache_cap;
static pthread_once_t dnsbl_ares_once = PTHREAD_ONCE_INIT;

/* dnsbl_ares_init - c-ares's global set-up, once */
static void
dnsbl_ares_init(void)
{
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
		fatalx("dnsbl: ares_library_init failed");
}

/* dnsbl_hash - FNV-1a of a name */
static size_t
dnsbl_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return (size_t)h;
}

/* dnsbl_cache_init - size the cache (first configuration wins) */
static void
dnsbl_cache_init(size_t want)
{
	size_t cap = 16;

	pthread_mutex_lock(&dnsbl_cache_lock);
	if (dnsbl_cache == NULL) {
		while (cap < want)
			cap *= 2;
		dnsbl_cache = xm_calloc(cap, sizeof(*dnsbl_cache));
		dnsbl_cache_cap = cap;
	}
	pthread_mutex_unlock(&dnsbl_cache_lock);
}

/* dnsbl_cache_get - 1 with the cached answer in *ADDR, or 0 */
static int
dnsbl_cache_get(const char *name, double now, uint32_t *addr)
{
	size_t i, h;
	int r = 0;

	if (strlen(name) >= DNSBL_NAME_MAX)
		return 0;
	pthread_mutex_lock(&dnsbl_cache_lock);
	h = dnsbl_hash(name);
	for (i = 0; i < DNSBL_PROBE; i++) {
		struct dnsbl_entry *e =
		    &dnsbl_cache[(h + i) & (dnsbl_cache_cap - 1)];

		if (e->expires > now && strcmp(e->name, name) == 0) {
			*addr = e->addr;
			r = 1;
			break;
		}
	}
	pthread_mutex_unlock(&dnsbl_cache_lock);
	return r;
}

/* dnsbl_cache_put - remember an answer until EXPIRES (replacing the
 * entry that expires first among the probed slots) */
static void
dnsbl_cache_put(const char *name, uint32_t addr, double expires)
{
	struct dnsbl_entry *e, *victim = NULL;
	size_t i, h;

	if (strlen(name) >= DNSBL_NAME_MAX || expires <= 0)
		return;
	pthread_mutex_lock(&dnsbl_cache_lock);
	h = dnsbl_hash(name);
	for (i = 0; i < DNSBL_PROBE; i++) {
		e = &dnsbl_cache[(h + i) & (dnsbl_cache_cap - 1)];
		if (strcmp(e->name, name) == 0) {
			victim = e;
			break;
		}
		if (victim == NULL || e->expires < victim->expires)
			victim = e;
	}
	snprintf(victim->name, sizeof(victim->name), "%s", name);
	victim->addr = addr;
	victim->expires = expires;
	pthread_mutex_unlock(&dnsbl_cache_lock);
}

/* ---- look-ups ---- */

enum dnsbl_status { Q_PENDING = 0, Q_LISTED, Q_CLEAN, Q_REFUSED, Q_FAIL };

struct dnsbl_query {
	const char *name;       /* what was asked (NAME.ZONE) */
	const char *subject;    /* the link's domain or IP */
	size_t zone;
	enum dnsbl_status st;
	uint32_t addr;
	int ttl;
	int ares_status;
	bool cached;            /* answered from the cache */
};

/* dnsbl_answer - c-ares callback: classify the answer */
static void
dnsbl_answer(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dnsbl_query *q = arg;
	struct ares_addrttl at[8];
	int n = XM_ARRAY_LEN(at), i;
	uint32_t a;

	(void)timeouts;
	q->ares_status = status;
	if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
		q->st = Q_CLEAN;
		return;
	}
	if (status != ARES_SUCCESS ||
	    ares_parse_a_reply(abuf, alen, NULL, at, &n) != ARES_SUCCESS) {
		q->st = Q_FAIL;
		return;
	}
	q->st = Q_CLEAN;
	for (i = 0; i < n; i++) {
		a = ntohl(at[i].ipaddr.s_addr);
		if ((a >> 24) != 127)
			continue;       /* a wildcarding resolver, not a list */
		if (a == 0x7f000001) {
			q->st = Q_REFUSED;
			continue;
		}
		q->st = Q_LISTED;
		q->addr = a;
		q->ttl = at[i].ttl;
		break;
	}
}

/* dnsbl_channel - a channel from the pool, or a new one (NULL on error) */
static ares_channel
dnsbl_channel(struct dnsbl_state *st)
{
	struct ares_options o;
	ares_channel ch = NULL;
	int rc;

	pthread_mutex_lock(&st->pool_lock);
	if (st->npool > 0)
		ch = st->pool[--st->npool];
	pthread_mutex_unlock(&st->pool_lock);
	if (ch != NULL)
		return ch;
	memset(&o, 0, sizeof(o));
	o.timeout = (int)(st->c->timeout * 1000 / (double)st->c->tries);
	if (o.timeout < 10)
		o.timeout = 10;
	o.tries = (int)st->c->tries;
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	rc = ares_init_options(&ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
	    ARES_OPT_FLAGS);
	if (rc != ARES_SUCCESS) {
		log_warn("dnsbl: ares_init_options: %s", ares_strerror(rc));
		return NULL;
	}
	if (st->servers_csv != NULL &&
	    (rc = ares_set_servers_ports_csv(ch, st->servers_csv)) !=
	    ARES_SUCCESS) {
		log_warn("dnsbl: servers: %s", ares_strerror(rc));
		ares_destroy(ch);
		return NULL;
	}
	return ch;
}

/* dnsbl_release - back to the pool */
static void
dnsbl_release(struct dnsbl_state *st, ares_channel ch)
{
	pthread_mutex_lock(&st->pool_lock);
	if (st->npool == st->poolcap) {
		st->poolcap = st->poolcap ? st->poolcap * 2 : 4;
		st->pool = xm_reallocarray(st->pool, st->poolcap,
		    sizeof(*st->pool));
	}
	st->pool[st->npool++] = ch;
	pthread_mutex_unlock(&st->pool_lock);
}

/* dnsbl_wait - run CH until no query is pending or DEADLINE passes */
static bool
dnsbl_wait(ares_channel ch, double deadline)
{
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	struct pollfd pfd[ARES_GETSOCK_MAXNUM];
	struct timeval tv, *tvp, maxtv;
	double left;
	int bits, i, n, ms, k;

	for (;;) {
		bits = ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
		for (i = 0, n = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			if (!ARES_GETSOCK_READABLE(bits, i) &&
			    !ARES_GETSOCK_WRITABLE(bits, i))
				continue;
			pfd[n].fd = socks[i];
			pfd[n].events = (short)((ARES_GETSOCK_READABLE(bits, i) ?
			    POLLIN : 0) | (ARES_GETSOCK_WRITABLE(bits, i) ?
			    POLLOUT : 0));
			pfd[n].revents = 0;
			n++;
		}
		if (n == 0)
			return true;    /* nothing in flight */
		left = deadline - xm_monotonic();
		if (left <= 0)
			return false;
		maxtv.tv_sec = (time_t)left;
		maxtv.tv_usec = (suseconds_t)((left - (double)maxtv.tv_sec) *
		    1e6);
		tvp = ares_timeout(ch, &maxtv, &tv);
		ms = (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000) + 1;
		k = poll(pfd, (nfds_t)n, ms);
		if (k < 0)
			continue;
		if (k == 0) {
			ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
			continue;
		}
		for (i = 0; i < n; i++)
			ares_process_fd(ch, (pfd[i].revents & (POLLIN | POLLERR |
			    POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD,
			    (pfd[i].revents & POLLOUT) ? pfd[i].fd :
			    ARES_SOCKET_BAD);
	}
}

/* ---- what to look up ---- */

/* dnsbl_subject - the name a link is listed under: its registrable
 * domain, or its IPv4 address reversed; NULL to skip */
static const char *
dnsbl_subject(const struct dnsbl_state *st, struct xm_arena *a,
    const struct xm_url_info *u)
{
	unsigned b[4];

	if (u->opaque || *u->host == '\0')
		return NULL;
	if (u->ip) {
		if (!st->c->check_ips || !u->ip_public ||
		    sscanf(u->host, "%u.%u.%u.%u", &b[0], &b[1], &b[2],
		    &b[3]) != 4)
			return NULL;    /* IPv6 lists are not queried */
		return xm_arena_printf(a, "%u.%u.%u.%u", b[3], b[2], b[1], b[0]);
	}
	if (u->domain == NULL)
		return NULL;
	if (xm_strset_has_domain(&st->skip, u->domain, NULL))
		return NULL;
	return u->domain;
}

/* a stanza's distinct names to look up */
struct dnsbl_names {
	const char **v;
	size_t n, cap, max;
};

/* dnsbl_add - normalise one link and add its name, unless seen */
static void
dnsbl_add(const struct dnsbl_state *st, struct xm_task *t,
    struct dnsbl_names *nm, const char *raw, size_t len, bool bare)
{
	struct xm_url_info u;
	const char *s;
	size_t i;

	if (nm->n >= nm->max || xm_url_normalize(t->arena, raw, len, bare,
	    &u) < 0 || (s = dnsbl_subject(st, t->arena, &u)) == NULL)
		return;
	for (i = 0; i < nm->n; i++)
		if (strcmp(nm->v[i], s) == 0)
			return;
	nm->v = xm_arena_grow(t->arena, nm->v, &nm->cap, nm->n, 1,
	    sizeof(*nm->v));
	nm->v[nm->n++] = s;
}

/* dnsbl_text - the names of the links written in TEXT */
static void
dnsbl_text(const struct dnsbl_state *st, struct xm_task *t,
    struct dnsbl_names *nm, const char *text)
{
	struct xm_url_span sp[64];
	size_t m, k;

	if (text == NULL)
		return;
	m = xm_url_find(text, strlen(text), sp, XM_ARRAY_LEN(sp));
	for (k = 0; k < m; k++)
		dnsbl_add(st, t, nm, text + sp[k].off, sp[k].len, sp[k].bare);
}

/* dnsbl_subjects - the distinct names of the stanza's links */
static size_t
dnsbl_subjects(const struct dnsbl_state *st, struct xm_task *t,
    const char ***out)
{
	const struct xm_event *ev = t->ev;
	struct dnsbl_names nm = { NULL, 0, 0, (size_t)st->c->max_lookups };
	size_t i;

	for (i = 0; i < ev->nurls; i++)
		if (ev->urls[i].url != NULL)
			dnsbl_add(st, t, &nm, ev->urls[i].url,
			    strlen(ev->urls[i].url), false);
	for (i = 0; i < ev->nfiles; i++)
		if (ev->files[i].url != NULL)
			dnsbl_add(st, t, &nm, ev->files[i].url,
			    strlen(ev->files[i].url), false);
	for (i = 0; i < ev->nbodies; i++)
		dnsbl_text(st, t, &nm, ev->bodies[i].text);
	for (i = 0; i < ev->nsubjects; i++)
		dnsbl_text(st, t, &nm, ev->subjects[i].text);
	dnsbl_text(st, t, &nm, ev->xhtml_text);
	dnsbl_text(st, t, &nm, ev->status);
	for (i = 0; i < ev->ninvites; i++)
		dnsbl_text(st, t, &nm, ev->invites[i].reason);
	*out = nm.v;
	return nm.n;
}

/* dnsbl_has_link - quick: does any text or URL of the event hold a link */
static bool
dnsbl_has_link(const struct xm_event *ev)
{
	struct xm_url_span sp;
	const char *texts[3];
	size_t i;

	if (ev->nurls > 0)
		return true;
	for (i = 0; i < ev->nfiles; i++)
		if (ev->files[i].url != NULL)
			return true;
	for (i = 0; i < ev->nbodies; i++)
		if (ev->bodies[i].text != NULL && xm_url_find(ev->bodies[i].text,
		    strlen(ev->bodies[i].text), &sp, 1) > 0)
			return true;
	texts[0] = ev->nsubjects ? ev->subjects[0].text : NULL;
	texts[1] = ev->status;
	texts[2] = NULL;
	for (i = 0; i < 2; i++)
		if (texts[i] != NULL && xm_url_find(texts[i], strlen(texts[i]),
		    &sp, 1) > 0)
			return true;
	for (i = 0; i < ev->ninvites; i++)
		if (ev->invites[i].reason != NULL && xm_url_find(
		    ev->invites[i].reason, strlen(ev->invites[i].reason), &sp,
		    1) > 0)
			return true;
	return false;
}

/* dnsbl_wants - only stanzas with links go to a worker */
static bool
dnsbl_wants(void *state, const struct xm_task *t)
{
	struct dnsbl_state *st = state;

	return st->nzones > 0 && dnsbl_has_link(t->ev);
}

/* dnsbl_check - look every link up in every zone */
static void
dnsbl_check(void *state, struct xm_task *t)
{
	struct dnsbl_state *st = state;
	const struct dnsbl_conf *c = st->c;
	const char **subj;
	struct dnsbl_query *q;
	size_t ns, nq = 0, i, z, fails = 0;
	double now = xm_monotonic(), ttl;
	bool *zone_hit, waited = true;
	ares_channel ch = NULL;
	uint32_t addr;
	const char *firstfail = NULL;

	bool slot = false, skipped = false;
	long lim;

	if (st->nzones == 0 || (ns = dnsbl_subjects(st, t, &subj)) == 0)
		return;
	q = xm_arena_array(t->arena, ns * st->nzones, sizeof(*q));
	zone_hit = xm_arena_array(t->arena, st->nzones, sizeof(*zone_hit));
	for (z = 0; z < st->nzones; z++)
		for (i = 0; i < ns; i++) {
			q[nq].name = xm_arena_printf(t->arena, "%s.%s", subj[i],
			    st->zones[z].zone);
			q[nq].subject = subj[i];
			q[nq].zone = z;
			if (dnsbl_cache_get(q[nq].name, now, &addr)) {
				q[nq].st = addr ? Q_LISTED : Q_CLEAN;
				q[nq].addr = addr;
				q[nq].cached = true;
			} else {
				if (!slot && !skipped) {
					/* a slot to wait in, or skip the look-ups */
					lim = now < atomic_load(&st->down_until) ?
					    1 : st->limit;
					if (atomic_fetch_add(&st->waiting, 1) < lim)
						slot = true;
					else {
						atomic_fetch_sub(&st->waiting, 1);
						skipped = true;
					}
				}
				if (skipped || (ch == NULL &&
				    (ch = dnsbl_channel(st)) == NULL)) {
					q[nq].st = Q_FAIL;
					nq++;
					continue;
				}
				ares_query(ch, q[nq].name, ns_c_in, ns_t_a,
				    dnsbl_answer, &q[nq]);
			}
			nq++;
		}
	if (ch != NULL) {
		waited = dnsbl_wait(ch, now + c->timeout);
		if (!waited)
			ares_cancel(ch);    /* callbacks: ARES_ECANCELLED */
		dnsbl_release(st, ch);
		if (!waited && atomic_load(&st->down_until) == 0.0)
			log_warn("dnsbl: DNS servers not answering within %gs; "
			    "for %gs only one stanza at a time waits for them",
			    c->timeout, c->backoff);
		else if (waited && atomic_load(&st->down_until) != 0.0)
			log_info("dnsbl: DNS servers answer again");
		atomic_store(&st->down_until, waited ? 0.0 :
		    xm_monotonic() + c->backoff);
	}
	if (slot)
		atomic_fetch_sub(&st->waiting, 1);
	now = xm_monotonic();
	for (i = 0; i < nq; i++) {
		switch (q[i].st) {
		case Q_LISTED:
			if (!q[i].cached) {
				ttl = q[i].ttl < c->min_ttl ? c->min_ttl :
				    q[i].ttl > c->max_ttl ? c->max_ttl : q[i].ttl;
				dnsbl_cache_put(q[i].name, q[i].addr, now + ttl);
			}
			if (zone_hit[q[i].zone])
				break;
			zone_hit[q[i].zone] = true;
			xm_task_symbol(t, "DNSBL", st->zones[q[i].zone].score, 0,
			    "%s in %s (%u.%u.%u.%u)", q[i].subject,
			    st->zones[q[i].zone].zone, q[i].addr >> 24,
			    (q[i].addr >> 16) & 255, (q[i].addr >> 8) & 255,
			    q[i].addr & 255);
			break;
		case Q_CLEAN:
			if (!q[i].cached && q[i].ares_status != ARES_SUCCESS)
				dnsbl_cache_put(q[i].name, 0,
				    now + c->negative_ttl);
			break;
		case Q_REFUSED:
			log_warn("dnsbl: %s answered 127.0.0.1 for %s: the list "
			    "refuses this resolver", st->zones[q[i].zone].zone,
			    q[i].name);
			break;
		case Q_PENDING:
		case Q_FAIL:
			if (fails++ == 0)
				firstfail = q[i].name;
			break;
		}
	}
	if (skipped)
		log_debug("dnsbl: %zu look-ups skipped: DNS busy or not "
		    "answering", fails);
	if (fails > 0)
		xm_task_symbol(t, "DNSBL_FAIL", c->score_fail, 0,
		    "%zu of %zu look-ups %s (first %s)", fails, nq,
		    skipped ? "skipped (DNS busy or not answering)" :
		    waited ? "failed" : "timed out", firstfail);
}

/* dnsbl_free - destroy the channels */
static void
dnsbl_free(void *state)
{
	struct dnsbl_state *st = state;
	size_t i;

	if (st == NULL)
		return;
	for (i = 0; i < st->npool; i++)
		ares_destroy(st->pool[i]);
	free(st->pool);
	for (i = 0; i < st->nzones; i++)
		free(st->zones[i].zone);
	free(st->zones);
	free(st->servers_csv);
	xm_strset_free(&st->skip);
	pthread_mutex_destroy(&st->pool_lock);
	free(st);
}

/* dnsbl_init - parse the zones and servers, size the cache */
static int
dnsbl_init(void **state, const void *conf, char *err, size_t errlen)
{
	const struct dnsbl_conf *c = conf;
	struct dnsbl_state *st = xm_calloc(1, sizeof(*st));
	struct xm_buf b = { 0 };
	char *z, *eq;
	size_t i, n;
	double sc;

	pthread_once(&dnsbl_ares_once, dnsbl_ares_init);
	st->c = c;
	pthread_mutex_init(&st->pool_lock, NULL);
	st->zones = xm_calloc(c->zones.n ? c->zones.n : 1, sizeof(*st->zones));
	for (i = 0; i < c->zones.n; i++) {
		z = xm_strdup(c->zones.v[i]);
		sc = c->score;
		if ((eq = strchr(z, '=')) != NULL) {
			*eq = '\0';
			if (xm_parse_double(eq + 1, &sc) < 0 || sc < 0 ||
			    sc > 1000) {
				snprintf(err, errlen, "dnsbl: zone %s: bad score "
				    "%s", z, eq + 1);
				free(z);
				goto fail;
			}
		}
		n = strlen(z);
		while (n > 0 && z[n - 1] == '.')
			z[--n] = '\0';
		if (n == 0 || n > 200 || strspn(z, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != n) {
			snprintf(err, errlen, "dnsbl: bad zone \"%s\"",
			    c->zones.v[i]);
			free(z);
			goto fail;
		}
		st->zones[st->nzones].zone = z;
		st->zones[st->nzones].score = sc;
		st->nzones++;
	}
	for (i = 0; i < c->servers.n; i++)
		xm_buf_printf(&b, "%s%s", i ? "," : "", c->servers.v[i]);
	if (b.len > 0) {
		ares_channel ch;
		int rc;

		st->servers_csv = xm_strndup(b.data, b.len);
		/* refuse a bad list now rather than at every check */
		if ((rc = ares_init(&ch)) == ARES_SUCCESS) {
			rc = ares_set_servers_ports_csv(ch, st->servers_csv);
			ares_destroy(ch);
		}
		if (rc != ARES_SUCCESS) {
			snprintf(err, errlen, "dnsbl: servers \"%s\": %s",
			    st->servers_csv, ares_strerror(rc));
			xm_buf_free(&b);
			goto fail;
		}
	}
	xm_buf_free(&b);
	for (i = 0; i < c->skip.n; i++)
		xm_strset_add(&st->skip, c->skip.v[i], strlen(c->skip.v[i]));
	dnsbl_cache_init((size_t)c->cache_size);
	st->limit = (long)c->max_waiting;
	if (st->limit == 0) {
		/* the daemon sizes libuv's pool through this variable */
		const char *w = getenv("UV_THREADPOOL_SIZE");
		long long nw = 2;

		if (w != NULL && xm_parse_ll(w, 1, 1024, &nw) < 0)
			nw = 2;
		st->limit = nw / 2 > 0 ? (long)(nw / 2) : 1;
	}
	atomic_init(&st->waiting, 0);
	atomic_init(&st->down_until, 0.0);
	*state = st;
	return 0;
fail:
	dnsbl_free(st);
	return -1;
}

const struct xm_filter_ops dnsbl_filter = {
	.name = "dnsbl",
	.abi = XM_FILTER_ABI,
	.flags = XM_FILTER_SLOW,
	.conf_size = sizeof(struct dnsbl_conf),
	.settings = dnsbl_settings,
	.init = dnsbl_init,
	.check = dnsbl_check,
	.free = dnsbl_free,
	.wants = dnsbl_wants,
};
