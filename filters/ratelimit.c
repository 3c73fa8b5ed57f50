/*
 * ratelimit.c - the ratelimit filter: budgets, fan-out, blocks, outbreaks
 *
 * Purpose: stop what one message cannot show but a stream of them does:
 * throw-away accounts sending to thousands of strangers, rotating
 * accounts, addresses and domains, worms sending one lure to a whole
 * roster, and the same spam body from many senders.
 *
 * What it counts, per event of kind message, subscription, transfer or
 * upload (the clock is the task's: the event's time in replay):
 *   - token buckets (rate per minute, burst) keyed by the sender (the
 *     c2s account, else the bare from), the client address, its prefix
 *     (/ipv4_prefix, /ipv6_prefix), the remote domain (s2s), and the
 *     transport network (component); stricter buckets for messages to
 *     strangers (roster=none) and for young accounts (account-age under
 *     young_age); buckets for subscription requests, invitations (one
 *     token per invitation) and file offers (one per file);
 *   - fan-out: distinct recipients per sender per fanout_window, and
 *     distinct strangers apart;
 *   - escalation: every event over a sender's (or address's) budget is a
 *     strike; block_after strikes within block_window block that sender
 *     (or address) for block_time: RATE_BLOCKED on everything it sends;
 *   - outbreaks: fingerprints of the folded text and of the link set
 *     (fingerprint.h); a fingerprint seen from outbreak_senders distinct
 *     senders and by outbreak_recipients distinct recipients (or by
 *     outbreak_fanout recipients, from however few senders) within
 *     outbreak_window is a campaign for outbreak_ttl, and every copy of it
 *     scores OUTBREAK_TEXT / OUTBREAK_URL (scaled by the roster factors
 *     when the recipient has the sender in its roster).
 * Senders on the trusted list are neither counted nor scored. Every limit
 * is a setting and so can differ per scope (origin, peer, domain).
 *
 * All of one event's counting is one batch of state operations (state.h):
 * one lock in memory, one round trip to Redis; a second, small batch runs
 * only when a budget was exceeded or a campaign was just detected.
 *
 * Where it runs: on the event loop, always. With the memory backend a
 * batch runs at once; with Redis the filter waits for each batch's
 * results (xm_task_state_wait) and the daemon sends it on its pipelined
 * connection (state_pipe.c), so the loop never blocks on Redis.
 *
 * Ownership: the filter state points at the config, which outlives it;
 * the counters are the process-global state's. Failure: init fails on a
 * malformed redis URL; check cannot fail (Redis trouble falls back to
 * memory inside the state).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "config.h"
#include "fingerprint.h"
#include "state.h"
#include "xm.h"

/* budgets: tag, setting name, rate per minute, burst, score, what */
#define RL_LIMITS(X) \
	X(ACCOUNT, "account", "60", "30", "15", \
	    "stanzas from one sender (the c2s account, else the bare from)") \
	X(IP, "ip", "300", "150", "5", \
	    "stanzas from one client address (offices share one behind NAT)") \
	X(PREFIX, "prefix", "600", "200", "5", \
	    "stanzas from one address prefix (ipv4_prefix, ipv6_prefix)") \
	X(DOMAIN, "domain", "600", "300", "5", \
	    "stanzas from one remote domain (origin s2s)") \
	X(NETWORK, "network", "1200", "600", "5", \
	    "stanzas from one transport network (origin component, by peer)") \
	X(STRANGER, "stranger", "6", "10", "15", \
	    "messages from one sender to recipients who do not have it in " \
	    "their roster (roster=none)") \
	X(YOUNG, "young", "10", "10", "10", \
	    "stanzas from one account younger than young_age") \
	X(SUBSCRIPTION, "subscription", "2", "10", "15", \
	    "subscription requests from one sender") \
	X(INVITE, "invite", "2", "5", "15", \
	    "invitations (one token each) from one sender") \
	X(FILE, "file", "2", "5", "15", \
	    "file offers (one token per file) from one sender")

/* the other symbols: tag, score default, what */
#define RL_OTHER(X) \
	X(FANOUT, "10", "more distinct recipients than fanout_max in " \
	    "fanout_window") \
	X(FANOUT_STRANGER, "15", "more distinct strangers than " \
	    "fanout_stranger_max in fanout_window") \
	X(BLOCKED, "20", "a sender or address blocked after repeated excess") \
	X(OUTBREAK_TEXT, "12", "a copy of a text campaign") \
	X(OUTBREAK_URL, "6", "a copy of a link campaign")

enum rl_limit {
#define RL_E(tag, name, rate, burst, score, doc) RL_##tag,
	RL_LIMITS(RL_E)
#undef RL_E
	RL_NLIMITS
};

enum rl_sym {
#define RL_S(tag, name, rate, burst, score, doc) RS_##tag,
	RL_LIMITS(RL_S)
#undef RL_S
#define RL_S2(tag, score, doc) RS_##tag,
	RL_OTHER(RL_S2)
#undef RL_S2
	RS_COUNT
};

static const char *const rl_symname[RS_COUNT] = {
#define RL_N(tag, name, rate, burst, score, doc) "RATE_" #tag,
	RL_LIMITS(RL_N)
#undef RL_N
	"RATE_FANOUT", "RATE_FANOUT_STRANGER", "RATE_BLOCKED",
	"OUTBREAK_TEXT", "OUTBREAK_URL",
};

static const char *const rl_limitname[RL_NLIMITS] = {
#define RL_L(tag, name, rate, burst, score, doc) name,
	RL_LIMITS(RL_L)
#undef RL_L
};

enum rl_block_action { BA_SCORE = 0, BA_REJECT, BA_DISCARD };

struct rl_conf {
	/* state (process-wide: set in the global block) */
	long long memory;
	char *redis;
	double redis_timeout;
	double redis_retry;
	char *redis_prefix;
	/* budgets */
	double rate[RL_NLIMITS];       /* per minute; -1: off */
	long long burst[RL_NLIMITS];
	long long ipv4_prefix, ipv6_prefix;
	double young_age;
	/* fan-out */
	double fanout_window;
	long long fanout_max, fanout_stranger_max;
	/* escalation */
	long long block_after;
	bool block_addresses;
	double block_window, block_time;
	int block_action;
	/* who is never counted */
	struct xm_strlist trusted;
	/* outbreaks */
	bool outbreak;
	bool outbreak_urls;
	double outbreak_window, outbreak_ttl;
	long long outbreak_senders, outbreak_recipients, outbreak_fanout;
	long long outbreak_min_words, outbreak_min_chars;
	double outbreak_roster_factor, outbreak_url_roster_factor;
	double score[RS_COUNT];
};

#define RL_OFF(f) offsetof(struct rl_conf, f)
#define RL_BUDGET(tag, nm, dr, db, ds, doc) \
	{ nm "_rate", XM_ST_DOUBLE, RL_OFF(rate[RL_##tag]), dr, -1, 1e9, \
	    NULL, true, "Budget of RATE_" #tag ", per minute: " doc \
	    " (none: no limit)" }, \
	{ nm "_burst", XM_ST_INT, RL_OFF(burst[RL_##tag]), db, 1, 1e9, \
	    NULL, true, "Burst of RATE_" #tag ": how many may come at once " \
	    "before " nm "_rate applies" },
#define RL_SCORE1(tag, nm, dr, db, ds, doc) \
	{ "score_" nm, XM_ST_DOUBLE, RL_OFF(score[RS_##tag]), ds, 0, \
	    1000, NULL, true, "Score of RATE_" #tag "." },

static const struct xm_setting rl_settings[] = {
	{ "memory", XM_ST_SIZE, RL_OFF(memory), "64M", 65536, 64e9, NULL,
	    true, "Memory for the counters kept in this process (the table "
	    "is bounded: at the bound the records that expire soonest are "
	    "evicted). Process-wide: set it in the global block" },
	{ "redis", XM_ST_STRING, RL_OFF(redis), "", 0, 0, NULL, true,
	    "Share the counters through Redis: redis://HOST[:PORT][/DB] or "
	    "unix:/PATH[?db=N]; empty: memory only. Events wait for Redis "
	    "without blocking the event loop (one pipelined connection). "
	    "Process-wide: set it in the global block" },
	{ "redis_timeout", XM_ST_DURATION, RL_OFF(redis_timeout), "200ms",
	    0.001, 60, NULL, true, "Connect timeout for Redis, and the "
	    "longest an event waits for its answer; past it the events in "
	    "flight are counted in memory instead" },
	{ "redis_retry", XM_ST_DURATION, RL_OFF(redis_retry), "5s", 0.05,
	    3600, NULL, true, "While Redis is down, how often to try it again" },
	{ "redis_prefix", XM_ST_STRING, RL_OFF(redis_prefix), "xm:", 0, 0,
	    NULL, true, "Prefix of every Redis key (up to 40 bytes)" },
	RL_LIMITS(RL_BUDGET)
	{ "ipv4_prefix", XM_ST_INT, RL_OFF(ipv4_prefix), "24", 8, 32, NULL,
	    true, "IPv4 prefix length of the prefix budget" },
	{ "ipv6_prefix", XM_ST_INT, RL_OFF(ipv6_prefix), "48", 16, 128, NULL,
	    true, "IPv6 prefix length of the prefix budget" },
	{ "young_age", XM_ST_DURATION, RL_OFF(young_age), "168h", 0, 3.2e8,
	    NULL, true, "Accounts younger than this (envelope account-age) "
	    "get the young budget as well" },
	{ "fanout_window", XM_ST_DURATION, RL_OFF(fanout_window), "10m", 1,
	    604800, NULL, true, "Window of the fan-out counts" },
	{ "fanout_max", XM_ST_INT, RL_OFF(fanout_max), "30", -1, 1e6, NULL,
	    true, "Distinct recipients of messages per sender per window "
	    "before RATE_FANOUT (-1: no limit)" },
	{ "fanout_stranger_max", XM_ST_INT, RL_OFF(fanout_stranger_max),
	    "10", -1, 1e6, NULL, true, "Distinct strangers (roster=none) per "
	    "sender per window before RATE_FANOUT_STRANGER (-1: no limit)" },
	{ "block_after", XM_ST_INT, RL_OFF(block_after), "3", -1, 1e6, NULL,
	    true, "Events over budget within block_window that block the "
	    "sender (or the address) for block_time (-1: never block)" },
	{ "block_addresses", XM_ST_BOOL, RL_OFF(block_addresses), "false", 0,
	    0, NULL, true, "Also block a client address after block_after "
	    "events over the ip budget (off by default: one address may be "
	    "a whole office behind NAT)" },
	{ "block_window", XM_ST_DURATION, RL_OFF(block_window), "10m", 1,
	    604800, NULL, true, "Window in which excess events are counted" },
	{ "block_time", XM_ST_DURATION, RL_OFF(block_time), "1h", 1, 3e7,
	    NULL, true, "How long a block lasts" },
	{ "block_action", XM_ST_ENUM, RL_OFF(block_action), "score", 0, 0,
	    "score|reject|discard", true, "What a block does: add "
	    "RATE_BLOCKED with score_blocked, or end the chain with reject "
	    "or discard" },
	{ "trusted", XM_ST_LIST, RL_OFF(trusted), "", 0, 0, NULL, true,
	    "Senders never counted nor scored: bare JIDs, or domains "
	    "(*.example.org for subdomains too)" },
	{ "outbreak", XM_ST_BOOL, RL_OFF(outbreak), "true", 0, 0, NULL, true,
	    "Detect campaigns of the same text (OUTBREAK_TEXT)" },
	{ "outbreak_urls", XM_ST_BOOL, RL_OFF(outbreak_urls), "true", 0, 0,
	    NULL, true, "Detect campaigns of the same set of links "
	    "(OUTBREAK_URL)" },
	{ "outbreak_window", XM_ST_DURATION, RL_OFF(outbreak_window), "1h",
	    1, 604800, NULL, true, "Window in which copies are counted" },
	{ "outbreak_ttl", XM_ST_DURATION, RL_OFF(outbreak_ttl), "24h", 1,
	    3e7, NULL, true, "How long a detected campaign keeps scoring" },
	{ "outbreak_senders", XM_ST_INT, RL_OFF(outbreak_senders), "3", 1,
	    1e6, NULL, true, "Distinct senders of one fingerprint that (with "
	    "outbreak_recipients) make a campaign" },
	{ "outbreak_recipients", XM_ST_INT, RL_OFF(outbreak_recipients), "8",
	    1, 1e6, NULL, true, "Distinct recipients of one fingerprint that "
	    "(with outbreak_senders) make a campaign" },
	{ "outbreak_fanout", XM_ST_INT, RL_OFF(outbreak_fanout), "20", -1,
	    1e6, NULL, true, "Distinct recipients that make a campaign "
	    "whatever the number of senders (one worm; -1: off)" },
	{ "outbreak_min_words", XM_ST_INT, RL_OFF(outbreak_min_words), "4", 1,
	    1000, NULL, true, "Texts with fewer real words (after folding) "
	    "get no text fingerprint: \"ok\", \"+1\", \"thanks\" never count" },
	{ "outbreak_min_chars", XM_ST_INT, RL_OFF(outbreak_min_chars), "16",
	    0, 100000, NULL, true, "Texts whose folded form is shorter get no "
	    "text fingerprint" },
	{ "outbreak_roster_factor", XM_ST_DOUBLE,
	    RL_OFF(outbreak_roster_factor), "0.3", 0, 1, NULL, true,
	    "OUTBREAK_TEXT's score is multiplied by this when the recipient "
	    "has the sender in its roster (roster=both/from/to)" },
	{ "outbreak_url_roster_factor", XM_ST_DOUBLE,
	    RL_OFF(outbreak_url_roster_factor), "0.5", 0, 1, NULL, true,
	    "OUTBREAK_URL's score is multiplied by this in roster traffic "
	    "(worms travel through rosters: keep it high)" },
	RL_LIMITS(RL_SCORE1)
	{ "score_fanout", XM_ST_DOUBLE, RL_OFF(score[RS_FANOUT]), "10", 0, 1000,
	    NULL, true, "Score of RATE_FANOUT." },
	{ "score_fanout_stranger", XM_ST_DOUBLE,
	    RL_OFF(score[RS_FANOUT_STRANGER]), "15", 0, 1000, NULL, true,
	    "Score of RATE_FANOUT_STRANGER." },
	{ "score_blocked", XM_ST_DOUBLE, RL_OFF(score[RS_BLOCKED]), "20", 0,
	    1000, NULL, true, "Score of RATE_BLOCKED." },
	{ "score_outbreak_text", XM_ST_DOUBLE, RL_OFF(score[RS_OUTBREAK_TEXT]),
	    "12", 0, 1000, NULL, true, "Score of OUTBREAK_TEXT." },
	{ "score_outbreak_url", XM_ST_DOUBLE, RL_OFF(score[RS_OUTBREAK_URL]),
	    "6", 0, 1000, NULL, true, "Score of OUTBREAK_URL." },
	XM_SETTINGS_END
};

struct rl_state {
	const struct rl_conf *c;
	char *detail[RS_COUNT];  /* fixed details, made once at init */
};

/* ---- the event's identities ---- */

struct rl_who {
	const char *sender;     /* account or bare from */
	const char *ip;
	const char *domain;     /* remote domain (s2s) */
	const char *network;    /* transport (component) */
	const char *rcpt;       /* bare to */
	bool prefix;            /* the address has a prefix (hpre) */
	bool stranger, in_roster, young, message;
	double subs, invites, files;
	/* each identity hashed once (idhash); the keys derive from these */
	uint64_t hs, hip, hpre, hdom, hnet, hrcpt;
};

/* ipv4_parse - IP as dotted-quad into B (4 bytes), accepting exactly
 * what glibc's inet_pton(AF_INET) accepts (four decimal parts of 0-255,
 * no leading zeros, nothing else); a function call and a loop less than
 * inet_pton on every event */
static bool
ipv4_parse(const char *ip, unsigned char *b)
{
	unsigned octets = 0, cur = 0;
	bool digit = false;
	char ch;

	while ((ch = *ip++) != '\0') {
		if (ch >= '0' && ch <= '9') {
			if (digit && cur == 0)
				return false;
			cur = cur * 10 + (unsigned)(ch - '0');
			if (cur > 255)
				return false;
			if (!digit) {
				if (++octets > 4)
					return false;
				digit = true;
			}
		} else if (ch == '.' && digit) {
			if (octets == 4)
				return false;
			b[octets - 1] = (unsigned char)cur;
			cur = 0;
			digit = false;
		} else
			return false;
	}
	if (octets < 4 || !digit)
		return false;
	b[3] = (unsigned char)cur;
	return true;
}

/* ip_prefix - hash of IP's network (the masked address bytes, hashed
 * from the prefix length) into *H; false if IP is no address */
static bool
ip_prefix(const char *ip, int v4len, int v6len, uint64_t *h)
{
	unsigned char b[16];
	int i, n, len;

	if (ip == NULL)
		return false;
	if (ipv4_parse(ip, b)) {
		n = 4;
		len = v4len;
	} else if (inet_pton(AF_INET6, ip, b) == 1) {
		n = 16;
		len = v6len;
	} else
		return false;
	for (i = 0; i < n; i++) {
		int keep = len - i * 8;

		b[i] = keep <= 0 ? 0 : keep < 8 ?
		    (unsigned char)(b[i] & (0xff << (8 - keep))) : b[i];
	}
	*h = xm_hash64(b, (size_t)n, (uint64_t)len);
	return true;
}

/* idhash - the hash every key of identity S derives from */
static inline uint64_t
idhash(const char *s)
{
	return xm_hash64(s, strlen(s), 0);
}

/* rl_counted - is T of a kind the filter counts */
static bool
rl_counted(const struct xm_task *t)
{
	switch (t->ev->kind) {
	case XM_KIND_MESSAGE:
	case XM_KIND_TRANSFER:
	case XM_KIND_UPLOAD:
		return true;
	case XM_KIND_SUBSCRIPTION:
		return t->ev->type != NULL && strcmp(t->ev->type, "subscribe") == 0;
	default:
		return false;
	}
}

/* rl_who - the identities of T's event; false when it is not counted */
static bool
rl_who(const struct rl_conf *c, struct xm_task *t, struct rl_who *w)
{
	const struct xm_event *ev = t->ev;
	const char *origin = ev->origin ? ev->origin : "";
	size_t i;

	memset(w, 0, sizeof(*w));
	if (!rl_counted(t))
		return false;
	w->sender = ev->auth && *ev->auth ? ev->auth :
	    ev->from ? xm_jid_bare(t->arena, ev->from) : NULL;
	if (c->trusted.n > 0 && w->sender != NULL &&
	    (xm_strlist_has(&c->trusted, w->sender) ||
	    xm_domain_listed(&c->trusted, xm_jid_domain(t->arena, w->sender))))
		return false;
	w->ip = ev->ip && *ev->ip ? ev->ip : NULL;
	w->prefix = ip_prefix(w->ip, (int)c->ipv4_prefix, (int)c->ipv6_prefix,
	    &w->hpre);
	if (origin[0] == 's' && strcmp(origin, "s2s") == 0)
		w->domain = ev->peer && *ev->peer ? ev->peer :
		    ev->from ? xm_jid_domain(t->arena, ev->from) : NULL;
	if (origin[0] == 'c' && origin[1] == 'o' &&
	    strcmp(origin, "component") == 0)
		w->network = ev->peer && *ev->peer ? ev->peer :
		    ev->from ? xm_jid_domain(t->arena, ev->from) : NULL;
	w->rcpt = ev->to ? xm_jid_bare(t->arena, ev->to) : NULL;
	if (w->sender)
		w->hs = idhash(w->sender);
	if (w->ip)
		w->hip = idhash(w->ip);
	if (w->domain)
		w->hdom = idhash(w->domain);
	if (w->network)
		w->hnet = idhash(w->network);
	if (w->rcpt)
		w->hrcpt = idhash(w->rcpt);
	w->message = ev->kind == XM_KIND_MESSAGE;
	if (ev->roster != NULL) {
		w->stranger = ev->roster[0] == 'n' &&
		    strcmp(ev->roster, "none") == 0;
		w->in_roster = !w->stranger;
	}
	w->young = ev->account_age >= 0 && (double)ev->account_age <
	    c->young_age;
	if (ev->kind == XM_KIND_SUBSCRIPTION)
		w->subs = 1;
	w->invites = (double)ev->ninvites;
	for (i = 0; i < ev->nfiles; i++)
		if (ev->files[i].method != XM_FT_IBB_DATA &&
		    ev->files[i].method != XM_FT_IBB_CLOSE)
			w->files++;
	return true;
}

/* ---- keys ----
 * Every key is a tag's seed (a hash of the tag's name) mixed with the
 * identity's hash (idhash, once per event) and, for windows and
 * fingerprints, the window's number: one string hash per identity
 * however many keys it has. */

enum rl_tag { T_BLK, T_BLKIP, T_FO, T_FOS, T_S, T_R, T_STRIKE, T_STRIKEIP,
	T_OBT, T_OBU, T_OBTS, T_OBUS, T_OBTR, T_OBUR, T_NTAGS };
static const char *const rl_tagname[T_NTAGS] = { "blk", "blkip", "fo",
	"fos", "s", "r", "strike", "strikeip", "obt", "obu", "obts", "obus",
	"obtr", "obur" };
static uint64_t seed_tag[T_NTAGS];       /* hash of "TAG\0" */
static uint64_t seed_limit[RL_NLIMITS];  /* hash of "rl\0NAME\0" */
static pthread_once_t seeds_once = PTHREAD_ONCE_INIT;

/* seeds_init - the hash states after each tag */
static void
seeds_init(void)
{
	size_t i;

	for (i = 0; i < T_NTAGS; i++)
		seed_tag[i] = xm_hash64(rl_tagname[i], strlen(rl_tagname[i]) + 1,
		    0);
	for (i = 0; i < RL_NLIMITS; i++)
		seed_limit[i] = xm_hash64(rl_limitname[i],
		    strlen(rl_limitname[i]) + 1, xm_hash64("rl", 3, 0));
}

/* mixkey - the key of SEED (a tag's or budget's) and V (an identity's
 * hash, a fingerprint), never 0 */
static inline uint64_t
mixkey(uint64_t seed, uint64_t v)
{
	uint64_t h = xm_hash64_u64(v, seed);

	return h ? h : 1;
}

/* tkey - the key of TAG for the identity hashed H */
static inline uint64_t
tkey(enum rl_tag tag, uint64_t h)
{
	return mixkey(seed_tag[tag], h);
}

/* ---- the batch ---- */

#define RL_MAXOPS 24

struct rl_batch {
	struct xm_state_op op[RL_MAXOPS];
	size_t n;
	/* where each thing's op is, -1 when absent */
	int blk_sender, blk_ip;
	int bucket[RL_NLIMITS];
	int fanout, fanout_stranger;
	int fp_flag[2], fp_senders[2], fp_rcpts[2];
};

/* op_zero - every byte of O zero: vector stores (memset of the struct
 * compiles to a rep stos, slow to start, and a batch clears a dozen) */
static inline void
op_zero(struct xm_state_op *o)
{
#ifdef __SSE2__
	char *p = (char *)o;
	size_t i;

	for (i = 0; i + 16 <= sizeof(*o); i += 16)
		_mm_storeu_si128((__m128i *)(p + i), _mm_setzero_si128());
	for (; i + 8 <= sizeof(*o); i += 8) {
		uint64_t z = 0;

		memcpy(p + i, &z, 8);
	}
	for (; i < sizeof(*o); i++)
		p[i] = 0;
#else
	memset(o, 0, sizeof(*o));
#endif
}

/* add - a new op of kind OP on KEY; its index */
static int
add(struct rl_batch *b, enum xm_sop op, uint64_t key)
{
	struct xm_state_op *o;

	if (b->n >= RL_MAXOPS)
		panic("ratelimit: batch overflow");
	o = &b->op[b->n];
	op_zero(o);
	o->op = op;
	o->key = key;
	return (int)b->n++;
}

/* add_bucket_op - budget L keyed by the identity hashed H, taking COST
 * tokens */
static void
add_bucket_op(const struct rl_conf *c, struct rl_batch *b, enum rl_limit l,
    uint64_t h, double cost)
{
	int i = add(b, XM_SOP_BUCKET, mixkey(seed_limit[l], h));

	b->op[i].rate = c->rate[l] / 60.0;
	b->op[i].burst = (double)c->burst[l];
	b->op[i].cost = cost;
	b->bucket[l] = i;
}

/* add_bucket - budget L keyed by the identity hashed H when it is
 * PRESENT, taking COST tokens (inline: most budgets do not apply to most
 * events, and the test is all they cost) */
static inline void
add_bucket(const struct rl_conf *c, struct rl_batch *b, enum rl_limit l,
    bool present, uint64_t h, double cost)
{
	if (!present || c->rate[l] < 0 || cost <= 0)
		return;
	add_bucket_op(c, b, l, h, cost);
}

/* win_index - floor(NOW / WIN) as an integer: one event asks it three
 * or four times with the same two numbers, so the last answer is kept
 * (per thread: it is a function of its arguments alone) */
static inline int64_t
win_index(double now, double win)
{
	static __thread bool c_ok;
	static __thread double c_now, c_win;
	static __thread int64_t c_idx;
	double x;
	int64_t i;

	if (c_ok && now == c_now && win == c_win)
		return c_idx;
	x = now / win;
	i = (int64_t)x;                 /* toward zero: floor for x >= 0 */
	if ((double)i > x)
		i--;
	c_ok = true;
	c_now = now;
	c_win = win;
	c_idx = i;
	return i;
}

/* win_key - key of TAG for the identity or fingerprint H in the window
 * of length WIN around NOW (WIN 0: no window) */
static uint64_t
win_key(enum rl_tag tag, uint64_t h, double now, double win)
{
	int64_t idx = win > 0 ? win_index(now, win) : -1;

	return mixkey(xm_hash64_u64(h, seed_tag[tag]), (uint64_t)idx);
}

/* add_distinct - add the member MEMBER (a key of its own) to the set
 * KEY */
static int
add_distinct(struct rl_batch *b, uint64_t key, uint64_t member, double win,
    long long cap)
{
	int i = add(b, XM_SOP_DISTINCT, key);

	b->op[i].member = member;
	b->op[i].ttl = win + 1;
	b->op[i].cap = cap;
	return i;
}

/* add_outbreak - flag, senders and recipients of fingerprint FP (slot K) */
static void
add_outbreak(const struct rl_conf *c, struct rl_batch *b, struct xm_task *t,
    const struct rl_who *w, int k, uint64_t fp)
{
	long long rcap = c->outbreak_recipients > c->outbreak_fanout ?
	    c->outbreak_recipients : c->outbreak_fanout;

	b->fp_flag[k] = add(b, XM_SOP_GET, win_key(k == 0 ? T_OBT : T_OBU, fp,
	    t->now, 0));
	b->fp_senders[k] = add_distinct(b, win_key(k == 0 ? T_OBTS : T_OBUS, fp,
	    t->now, c->outbreak_window), tkey(T_S, w->hs), c->outbreak_window,
	    c->outbreak_senders);
	b->fp_rcpts[k] = add_distinct(b, win_key(k == 0 ? T_OBTR : T_OBUR, fp,
	    t->now, c->outbreak_window), tkey(T_R, w->hrcpt), c->outbreak_window,
	    rcap);
}

/* texts - the bodies (and subjects) of EV, for fingerprints */
static size_t
texts(const struct xm_event *ev, const char **v, size_t max)
{
	size_t n = 0, i;

	for (i = 0; i < ev->nsubjects && n < max; i++)
		v[n++] = ev->subjects[i].text;
	for (i = 0; i < ev->nbodies && n < max; i++)
		v[n++] = ev->bodies[i].text;
	return n;
}

/* ---- the check ---- */

static void rl_sym(const struct rl_conf *c, struct xm_task *t,
    enum rl_sym s, double factor, const char *fmt, ...) XM_PRINTF(5, 6);

/* rl_vfmt - FMT with AP (at most 255 bytes, like vsnprintf into 256) in
 * arena A, formatted by hand for the conversions the details use (%s,
 * %016llx, %.0f of a whole number: exactly printf's output), by
 * vsnprintf for anything else; a flood's every campaign copy gets one */
static char *
rl_vfmt(struct xm_arena *a, const char *fmt, va_list ap)
{
	static const char hex[] = "0123456789abcdef";
	char buf[256], *o = buf, *end = buf + sizeof(buf) - 1;
	const char *f;
	va_list ap2;

	va_copy(ap2, ap);
	for (f = fmt; *f != '\0'; f++) {
		if (*f != '%') {
			if (o == end)
				goto slow;
			*o++ = *f;
		} else if (f[1] == 's') {
			const char *str = va_arg(ap2, const char *);
			size_t n;

			if (str == NULL || (n = strlen(str)) > (size_t)(end - o))
				goto slow;
			memcpy(o, str, n);
			o += n;
			f++;
		} else if (strncmp(f + 1, "016llx", 6) == 0) {
			unsigned long long v = va_arg(ap2, unsigned long long);
			int i;

			if (end - o < 16)
				goto slow;
			for (i = 15; i >= 0; i--) {
				o[i] = hex[v & 15];
				v >>= 4;
			}
			o += 16;
			f += 6;
		} else if (strncmp(f + 1, ".0f", 3) == 0) {
			double d = va_arg(ap2, double);
			unsigned long long v;
			char dig[20];
			int n = 0;

			if (!(d >= 0 && d < 1e15) || signbit(d) || d != floor(d))
				goto slow;       /* rounding and signs: printf's */
			v = (unsigned long long)d;
			do {
				dig[n++] = (char)('0' + v % 10);
				v /= 10;
			} while (v != 0);
			if (end - o < n)
				goto slow;
			while (n > 0)
				*o++ = dig[--n];
			f += 3;
		} else
			goto slow;
	}
	va_end(ap2);
	return xm_arena_strndup(a, buf, (size_t)(o - buf));
slow:
	va_end(ap2);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	return xm_arena_strdup(a, buf);
}

/* rl_sym - add symbol S, its score times FACTOR, a printf-style detail */
static void
rl_sym(const struct rl_conf *c, struct xm_task *t, enum rl_sym s,
    double factor, const char *fmt, ...)
{
	char *detail;
	va_list ap;

	va_start(ap, fmt);
	detail = rl_vfmt(t->arena, fmt, ap);
	va_end(ap);
	xm_task_symbol(t, rl_symname[s], c->score[s] * factor, 0, NULL);
	t->symbols[t->nsymbols - 1].detail = detail;
}

/* rl_sym_cat - add symbol S with the detail A B C joined (no printf: a
 * blocked sender's every event gets it) */
static void
rl_sym_cat(const struct rl_conf *c, struct xm_task *t, enum rl_sym s,
    const char *a, const char *b, const char *d)
{
	size_t la = strlen(a), lb = strlen(b), ld = strlen(d);
	char *o = xm_arena_alloc(t->arena, la + lb + ld + 1);

	memcpy(o, a, la);
	memcpy(o + la, b, lb);
	memcpy(o + la + lb, d, ld + 1);
	xm_task_symbol(t, rl_symname[s], c->score[s], 0, NULL);
	t->symbols[t->nsymbols - 1].detail = o;
}

/* rl_sym_fixed - add symbol S with the detail made at init (no
 * formatting per event: under a flood every event gets several) */
static void
rl_sym_fixed(const struct rl_state *st, struct xm_task *t, enum rl_sym s)
{
	xm_task_symbol(t, rl_symname[s], st->c->score[s], 0, NULL);
	t->symbols[t->nsymbols - 1].detail = st->detail[s];
}

/*
 * One event's counting in steps. Each step ends by having a batch of
 * state operations run (rl_exec), and the next step reads their results:
 *   rl_check      the identities, the batch (buckets, sets, blocks,
 *                 fingerprints)
 *   rl_counted_cb the budgets, fan-out and campaigns scored; strikes and
 *                 campaign marks as a second batch, when there are any
 *   rl_struck_cb  enough strikes: the block, as a third batch
 *   rl_done       a block ends the chain
 * With the state in memory the steps call each other at once, the run on
 * the stack; with Redis the run lives in the task's arena and the task
 * waits for each batch (xm_task_state_wait) while the event loop goes on.
 */
struct rl_run {
	const struct rl_state *st;
	bool local;                 /* memory: no waiting */
	struct rl_batch b;
	struct rl_who w;
	struct xm_fp fp;
	struct xm_state_op post[4]; /* two campaign marks, two strikes */
	size_t npost;
	int strike_sender, strike_ip;
	struct xm_state_op blk[2];  /* blocks */
	bool blocked;
};

typedef void rl_step(void *state, struct xm_task *t, void *arg);

/* put - OPS[*N] becomes operation OP on KEY (VALUE for a SET, TTL); *N
 * grows; its index */
static int
put(struct xm_state_op *ops, size_t *n, enum xm_sop op, uint64_t key,
    double value, double ttl)
{
	struct xm_state_op *o = &ops[*n];

	memset(o, 0, sizeof(*o));
	o->op = op;
	o->key = key;
	o->value = value;
	o->ttl = ttl;
	return (int)(*n)++;
}
static rl_step rl_counted_cb, rl_struck_cb, rl_blocked_cb;
static void rl_done(struct xm_task *t, struct rl_run *r);

/* rl_exec - have OPS[0..N) run, then NEXT: at once in memory, else by
 * waiting */
static void
rl_exec(struct xm_task *t, struct rl_run *r, struct xm_state_op *ops,
    size_t n, rl_step *next)
{
	if (!r->local) {
		xm_task_state_wait(t, ops, n, next, r);
		return;
	}
	xm_state_exec(ops, n, t->now);
	next((void *)r->st, t, r);
}

/* rl_check - count T: build the batch and have it run */
static void
rl_check(void *state, struct xm_task *t)
{
	const struct rl_conf *c = ((struct rl_state *)state)->c;
	struct rl_run stack_run, *r;
	struct rl_batch *b;
	struct rl_who w;
	size_t i;
	int k;

	if (!rl_who(c, t, &w))
		return;
	if (xm_state_remote()) {
		r = xm_arena_array(t->arena, 1, sizeof(*r));
		r->local = false;
	} else {
		r = &stack_run;
		r->local = true;
	}
	r->st = state;
	r->w = w;
	r->npost = 0;
	r->strike_sender = r->strike_ip = -1;
	r->blocked = false;
	b = &r->b;
	b->n = 0;
	b->blk_sender = b->blk_ip = b->fanout = b->fanout_stranger = -1;
	for (i = 0; i < RL_NLIMITS; i++)
		b->bucket[i] = -1;
	for (k = 0; k < 2; k++)
		b->fp_flag[k] = b->fp_senders[k] = b->fp_rcpts[k] = -1;

	if (c->block_after >= 0) {
		if (w.sender)
			b->blk_sender = add(b, XM_SOP_GET, tkey(T_BLK, w.hs));
		if (w.ip && c->block_addresses)
			b->blk_ip = add(b, XM_SOP_GET, tkey(T_BLKIP, w.hip));
	}
	add_bucket(c, b, RL_ACCOUNT, w.sender, w.hs, 1);
	add_bucket(c, b, RL_IP, w.ip, w.hip, 1);
	add_bucket(c, b, RL_PREFIX, w.prefix, w.hpre, 1);
	add_bucket(c, b, RL_DOMAIN, w.domain, w.hdom, 1);
	add_bucket(c, b, RL_NETWORK, w.network, w.hnet, 1);
	if (w.message && w.stranger)
		add_bucket(c, b, RL_STRANGER, w.sender, w.hs, 1);
	if (w.young)
		add_bucket(c, b, RL_YOUNG, w.sender, w.hs, 1);
	add_bucket(c, b, RL_SUBSCRIPTION, w.sender, w.hs, w.subs);
	add_bucket(c, b, RL_INVITE, w.sender, w.hs, w.invites);
	add_bucket(c, b, RL_FILE, w.sender, w.hs, w.files);
	if (w.message && w.sender && w.rcpt) {
		/* one set of recipients; strangers among them are a count
		 * kept beside it (one record per recipient, not two). Once
		 * the set is full the sender is over fanout_max anyway. */
		if (c->fanout_max >= 0) {
			long long cap = c->fanout_max > c->fanout_stranger_max ?
			    c->fanout_max : c->fanout_stranger_max;

			b->fanout = add_distinct(b, win_key(T_FO, w.hs, t->now,
			    c->fanout_window), tkey(T_R, w.hrcpt), c->fanout_window,
			    cap + 1);
			if (c->fanout_stranger_max >= 0 && w.stranger)
				b->op[b->fanout].key2 = win_key(T_FOS, w.hs,
				    t->now, c->fanout_window);
		} else if (c->fanout_stranger_max >= 0 && w.stranger)
			b->fanout_stranger = add_distinct(b, win_key(T_FOS,
			    w.hs, t->now, c->fanout_window), tkey(T_R, w.hrcpt),
			    c->fanout_window, c->fanout_stranger_max + 1);
	}
	memset(&r->fp, 0, sizeof(r->fp));
	if (w.message && w.sender && w.rcpt && (c->outbreak ||
	    c->outbreak_urls)) {
		const char *tv[8], *uv[8];
		size_t nt = texts(t->ev, tv, XM_ARRAY_LEN(tv)), nu = 0;

		for (i = 0; i < t->ev->nurls && nu < XM_ARRAY_LEN(uv); i++)
			uv[nu++] = t->ev->urls[i].url;
		for (i = 0; i < t->ev->nfiles && nu < XM_ARRAY_LEN(uv); i++)
			if (t->ev->files[i].url)
				uv[nu++] = t->ev->files[i].url;
		xm_fp_compute(t->arena, tv, nt, uv, nu,
		    (unsigned)c->outbreak_min_words,
		    (size_t)c->outbreak_min_chars, &r->fp);
		if (c->outbreak && r->fp.has_text)
			add_outbreak(c, b, t, &w, 0, r->fp.text);
		if (c->outbreak_urls && r->fp.has_urls)
			add_outbreak(c, b, t, &w, 1, r->fp.urls);
	}
	rl_exec(t, r, b->op, b->n, rl_counted_cb);
}

/* rl_counted_cb - the batch's results: blocks, budgets, fan-out,
 * campaigns; then strikes and campaign marks */
static void
rl_counted_cb(void *state, struct xm_task *t, void *arg)
{
	struct rl_run *r = arg;
	const struct rl_conf *c = r->st->c;
	const struct rl_batch *b = &r->b;
	const struct rl_who *w = &r->w;
	struct xm_state_op *post = r->post;
	bool over_sender = false, over_ip = false;
	size_t i;
	int k;

	/* blocks */
	if ((b->blk_sender >= 0 && b->op[b->blk_sender].result > 0) ||
	    (b->blk_ip >= 0 && b->op[b->blk_ip].result > 0)) {
		bool by_ip = !(b->blk_sender >= 0 &&
		    b->op[b->blk_sender].result > 0);

		r->blocked = true;
		rl_sym_cat(c, t, RS_BLOCKED, by_ip ? "address " : "sender ",
		    by_ip ? w->ip : w->sender, " is blocked");
	}
	/* budgets */
	for (i = 0; i < RL_NLIMITS; i++) {
		int j = b->bucket[i];

		if (j < 0 || b->op[j].ok)
			continue;
		rl_sym_fixed(r->st, t, (enum rl_sym)i);
		if (i == RL_IP || i == RL_PREFIX)
			over_ip = over_ip || i == RL_IP;
		else if (i != RL_DOMAIN && i != RL_NETWORK)
			over_sender = true;
	}
	if (b->fanout >= 0 && c->fanout_max >= 0 &&
	    b->op[b->fanout].result > (double)c->fanout_max) {
		rl_sym_fixed(r->st, t, RS_FANOUT);
		over_sender = true;
	}
	if ((b->fanout >= 0 && b->op[b->fanout].key2 != 0 &&
	    b->op[b->fanout].result2 > (double)c->fanout_stranger_max) ||
	    (b->fanout_stranger >= 0 && b->op[b->fanout_stranger].result >
	    (double)c->fanout_stranger_max)) {
		rl_sym_fixed(r->st, t, RS_FANOUT_STRANGER);
		over_sender = true;
	}
	/* outbreaks */
	for (k = 0; k < 2; k++) {
		double senders, rcpts, factor;
		bool flagged, crossed;

		if (b->fp_flag[k] < 0)
			continue;
		senders = b->op[b->fp_senders[k]].result;
		rcpts = b->op[b->fp_rcpts[k]].result;
		flagged = b->op[b->fp_flag[k]].result > 0;
		crossed = (senders >= (double)c->outbreak_senders &&
		    rcpts >= (double)c->outbreak_recipients) ||
		    (c->outbreak_fanout > 0 && rcpts >=
		    (double)c->outbreak_fanout);
		if (!flagged && !crossed)
			continue;
		factor = w->in_roster ? (k == 0 ? c->outbreak_roster_factor :
		    c->outbreak_url_roster_factor) : 1;
		rl_sym(c, t, k == 0 ? RS_OUTBREAK_TEXT : RS_OUTBREAK_URL,
		    factor, "%s campaign %016llx%s", k == 0 ? "text" : "link",
		    (unsigned long long)(k == 0 ? r->fp.text : r->fp.urls),
		    flagged ? "" : " (detected now)");
		if (!flagged)
			put(post, &r->npost, XM_SOP_SET, b->op[b->fp_flag[k]].key,
			    1, c->outbreak_ttl);
	}
	/* escalation: strikes now, a block when there are enough */
	if (c->block_after >= 0 && !r->blocked) {
		if (over_sender && w->sender)
			r->strike_sender = put(post, &r->npost, XM_SOP_INCR,
			    tkey(T_STRIKE, w->hs), 0,
			    c->block_window);
		if (over_ip && w->ip && c->block_addresses)
			r->strike_ip = put(post, &r->npost, XM_SOP_INCR,
			    tkey(T_STRIKEIP, w->hip), 0,
			    c->block_window);
	}
	if (r->npost == 0) {
		rl_done(t, r);
		return;
	}
	rl_exec(t, r, post, r->npost, rl_struck_cb);
}

/* rl_struck_cb - strikes counted: block a sender or address that has
 * enough */
static void
rl_struck_cb(void *state, struct xm_task *t, void *arg)
{
	struct rl_run *r = arg;
	const struct rl_conf *c = r->st->c;
	const struct rl_who *w = &r->w;
	const struct xm_state_op *post = r->post;
	struct xm_state_op *blk = r->blk;
	size_t nb = 0;

	if (r->strike_sender >= 0 && post[r->strike_sender].result >=
	    (double)c->block_after) {
		put(blk, &nb, XM_SOP_SET, tkey(T_BLK, w->hs), 1, c->block_time);
		rl_sym(c, t, RS_BLOCKED, 1, "sender %s blocked for %.0fs "
		    "after %.0f events over budget", w->sender, c->block_time,
		    post[r->strike_sender].result);
		r->blocked = true;
	}
	if (r->strike_ip >= 0 && post[r->strike_ip].result >=
	    (double)c->block_after) {
		put(blk, &nb, XM_SOP_SET, tkey(T_BLKIP, w->hip), 1,
		    c->block_time);
		if (!r->blocked)
			rl_sym(c, t, RS_BLOCKED, 1, "address %s blocked "
			    "for %.0fs after %.0f events over budget",
			    w->ip, c->block_time, post[r->strike_ip].result);
		r->blocked = true;
	}
	if (nb == 0) {
		rl_done(t, r);
		return;
	}
	rl_exec(t, r, blk, nb, rl_blocked_cb);
}

/* rl_blocked_cb - the block is stored */
static void
rl_blocked_cb(void *state, struct xm_task *t, void *arg)
{
	rl_done(t, arg);
}

/* rl_done - a blocked sender's event ends the chain (block_action) */
static void
rl_done(struct xm_task *t, struct rl_run *r)
{
	const struct rl_conf *c = r->st->c;

	if (r->blocked && c->block_action != BA_SCORE)
		xm_task_final(t, c->block_action == BA_DISCARD ? XM_DISCARD :
		    XM_REJECT, "policy-violation", "Too many messages: "
		    "sending is blocked for a while.");
}

/* rl_wants - counted kinds only (the slow stage is skipped otherwise) */
static bool
rl_wants(void *state, const struct xm_task *t)
{
	return rl_counted(t);
}

/* rl_init - configure the process-wide state, keep the config */
static int
rl_init(void **state, const void *conf, char *err, size_t errlen)
{
	const struct rl_conf *c = conf;
	struct xm_state_conf sc;
	struct rl_state *st;
	size_t i;

	if (c->redis_prefix != NULL && strlen(c->redis_prefix) > 40) {
		snprintf(err, errlen, "ratelimit: redis_prefix longer than 40 "
		    "bytes");
		return -1;
	}
	sc.memory = c->memory;
	sc.redis = c->redis;
	sc.redis_timeout = c->redis_timeout;
	sc.redis_retry = c->redis_retry;
	sc.redis_prefix = c->redis_prefix;
	if (xm_state_configure(&sc, err, errlen) < 0)
		return -1;
	pthread_once(&seeds_once, seeds_init);
	st = xm_calloc(1, sizeof(*st));
	st->c = c;
	for (i = 0; i < RL_NLIMITS; i++)
		st->detail[i] = xm_printf("%s over %g/min (burst %lld)",
		    rl_limitname[i], c->rate[i], c->burst[i]);
	st->detail[RS_FANOUT] = xm_printf("more than %lld recipients in %.0fs",
	    c->fanout_max, c->fanout_window);
	st->detail[RS_FANOUT_STRANGER] = xm_printf("more than %lld strangers "
	    "in %.0fs", c->fanout_stranger_max, c->fanout_window);
	*state = st;
	return 0;
}

/* rl_free - the filter state (the counters stay) */
static void
rl_free(void *state)
{
	struct rl_state *st = state;
	size_t i;

	for (i = 0; i < RS_COUNT; i++)
		free(st->detail[i]);
	free(st);
}

const struct xm_filter_ops ratelimit_filter = {
	.name = "ratelimit",
	.abi = XM_FILTER_ABI,
	.flags = 0,
	.conf_size = sizeof(struct rl_conf),
	.settings = rl_settings,
	.init = rl_init,
	.check = rl_check,
	.free = rl_free,
	.wants = rl_wants,
};
