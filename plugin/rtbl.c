/*
 * rtbl.c - shared real-time block lists: a libstrophe subscriber thread
 *
 * Interface: rtbl.h. One struct xm_rtbl per distinct settings, kept in a
 * process-global registry (mutex) with a reference count, so filter
 * instances of every scope and of the next configuration share it and a
 * SIGHUP does not log in again.
 *
 * The thread: connect (xmpp_connect_client), and once logged in, for each
 * node: subscribe (with the bound full JID, a fixed resource so that a
 * reconnect reuses the subscription) and fetch its items; the fetched
 * items replace the node's set. Notifications (<event/> messages from the
 * service) add published item ids, remove retracted ones, and empty the
 * set on purge or delete. On disconnect: wait `reconnect` seconds and
 * start over; the sets keep their contents meanwhile (a stale list beats
 * none). A node that cannot be fetched or subscribed to (not created
 * yet) is asked for again every `reconnect` seconds (at least 1 s). Items of a node are not paged: a service returns what it keeps
 * (Prosody: up to pubsub_max_items).
 *
 * Ownership: the registry owns every subscriber; the thread owns its
 * libstrophe context and connection; sets are heap strings freed with
 * the subscriber. Item ids are lower-cased, bounded to 255 bytes and
 * must be printable ASCII or UTF-8 without spaces; others are ignored.
 *
 * Failure: never fatal. Log-in and network errors are logged (rate: one
 * per attempt) and retried; look-ups answer from whatever the sets hold.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

#include "config.h"
#include "rtbl.h"
#include "url.h"
#include "util.h"

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_EVENT "http://jabber.org/protocol/pubsub#event"
#define RTBL_RESOURCE "xmilter-rtbl"
#define RTBL_ITEM_MAX 255

struct xm_rtbl {
	char *key;
	int refs;                  /* under rtbl_reg_lock */
	struct xm_rtbl *next;

	char *jid, *password, *host, *service;
	unsigned short port;
	bool tls;
	double reconnect;

	size_t nnodes;
	char **node;
	bool *is_jid;              /* item ids are JID hashes */
	struct xm_strset *set;     /* one per node, under lock */
	bool ready;
	pthread_rwlock_t lock;

	pthread_t thr;
	atomic_bool stop;
	/* thread-only */
	xmpp_ctx_t *ctx;
	xmpp_conn_t *conn;
	bool down;
	unsigned fetched;
	bool *have;                /* node i fetched on this connection */
	bool retrying;             /* a retry timer is set */
};

static pthread_mutex_t rtbl_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct xm_rtbl *rtbl_reg;
static pthread_once_t rtbl_strophe_once = PTHREAD_ONCE_INIT;

/* rtbl_strophe_init - libstrophe's global set-up, once per process */
static void
rtbl_strophe_init(void)
{
	xmpp_initialize();
}

/* rtbl_item_ok - an item id we take: bounded, no spaces or controls */
static bool
rtbl_item_ok(const char *id)
{
	size_t n;

	if (id == NULL || (n = strlen(id)) == 0 || n > RTBL_ITEM_MAX)
		return false;
	for (; *id != '\0'; id++)
		if ((unsigned char)*id <= ' ' || *id == 0x7f)
			return false;
	return true;
}

/* rtbl_norm - the id lower-cased and without a trailing dot, in BUF */
static const char *
rtbl_norm(const char *id, char *buf, size_t n)
{
	size_t i, l = strlen(id);

	if (l >= n)
		l = n - 1;
	for (i = 0; i < l; i++)
		buf[i] = (char)(id[i] >= 'A' && id[i] <= 'Z' ? id[i] + 32 :
		    id[i]);
	while (l > 0 && buf[l - 1] == '.')
		l--;
	buf[l] = '\0';
	return buf;
}

/* rtbl_node_index - index of node NAME, or -1 */
static long
rtbl_node_index(const struct xm_rtbl *r, const char *name)
{
	size_t i;

	if (name == NULL)
		return -1;
	for (i = 0; i < r->nnodes; i++)
		if (strcmp(r->node[i], name) == 0)
			return (long)i;
	return -1;
}

/* rtbl_apply_items - an <items/> or <event><items/> child: publish and
 * retract; REPLACE empties the node's set first (a fetch result) */
static void
rtbl_apply_items(struct xm_rtbl *r, xmpp_stanza_t *items, bool replace)
{
	xmpp_stanza_t *c;
	struct xm_strset fresh = { 0 };
	const char *name, *id;
	char buf[RTBL_ITEM_MAX + 1];
	long ni = rtbl_node_index(r, xmpp_stanza_get_attribute(items, "node"));
	size_t added = 0, removed = 0;

	if (ni < 0)
		return;
	if (replace) {
		for (c = xmpp_stanza_get_children(items); c != NULL;
		    c = xmpp_stanza_get_next(c)) {
			name = xmpp_stanza_get_name(c);
			id = xmpp_stanza_get_attribute(c, "id");
			if (name != NULL && strcmp(name, "item") == 0 &&
			    rtbl_item_ok(id)) {
				rtbl_norm(id, buf, sizeof(buf));
				added += xm_strset_add(&fresh, buf, strlen(buf));
			}
		}
		pthread_rwlock_wrlock(&r->lock);
		xm_strset_free(&r->set[ni]);
		r->set[ni] = fresh;
		if (!r->have[ni] && ++r->fetched >= r->nnodes)
			r->ready = true;
		r->have[ni] = true;
		pthread_rwlock_unlock(&r->lock);
		log_info("rtbl: %s/%s: %zu items", r->service, r->node[ni],
		    added);
		return;
	}
	pthread_rwlock_wrlock(&r->lock);
	for (c = xmpp_stanza_get_children(items); c != NULL;
	    c = xmpp_stanza_get_next(c)) {
		name = xmpp_stanza_get_name(c);
		id = xmpp_stanza_get_attribute(c, "id");
		if (name == NULL || !rtbl_item_ok(id))
			continue;
		rtbl_norm(id, buf, sizeof(buf));
		if (strcmp(name, "item") == 0)
			added += xm_strset_add(&r->set[ni], buf, strlen(buf));
		else if (strcmp(name, "retract") == 0)
			removed += xm_strset_del(&r->set[ni], buf, strlen(buf));
	}
	pthread_rwlock_unlock(&r->lock);
	log_info("rtbl: %s/%s: %zu listed, %zu unlisted", r->service,
	    r->node[ni], added, removed);
}

/* rtbl_clear - purge or delete of a node: empty its set */
static void
rtbl_clear(struct xm_rtbl *r, xmpp_stanza_t *el)
{
	long ni = rtbl_node_index(r, xmpp_stanza_get_attribute(el, "node"));

	if (ni < 0)
		return;
	pthread_rwlock_wrlock(&r->lock);
	xm_strset_free(&r->set[ni]);
	pthread_rwlock_unlock(&r->lock);
	log_info("rtbl: %s/%s: emptied (%s)", r->service, r->node[ni],
	    xmpp_stanza_get_name(el));
}

/* rtbl_on_message - pubsub event notifications from the service */
static int
rtbl_on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct xm_rtbl *r = ud;
	xmpp_stanza_t *ev, *c;
	const char *from = xmpp_stanza_get_from(st), *name;
	char *bare;

	(void)conn;
	if (from == NULL)
		return 1;
	bare = xmpp_jid_bare(r->ctx, from);
	if (bare == NULL || strcmp(bare, r->service) != 0) {
		xmpp_free(r->ctx, bare);
		return 1;           /* only the service may change the lists */
	}
	xmpp_free(r->ctx, bare);
	if ((ev = xmpp_stanza_get_child_by_name_and_ns(st, "event",
	    NS_PUBSUB_EVENT)) == NULL)
		return 1;
	for (c = xmpp_stanza_get_children(ev); c != NULL;
	    c = xmpp_stanza_get_next(c)) {
		if ((name = xmpp_stanza_get_name(c)) == NULL)
			continue;
		if (strcmp(name, "items") == 0)
			rtbl_apply_items(r, c, false);
		else if (strcmp(name, "purge") == 0 || strcmp(name, "delete") == 0)
			rtbl_clear(r, c);
	}
	return 1;
}

static void rtbl_ask(struct xm_rtbl *r, size_t i);

/* rtbl_retry - timer: ask again for the nodes not fetched yet (a node
 * may be created after we logged in); stops when all are there */
static int
rtbl_retry(xmpp_conn_t *conn, void *ud)
{
	struct xm_rtbl *r = ud;
	size_t i;
	bool missing = false;

	(void)conn;
	for (i = 0; i < r->nnodes; i++)
		if (!r->have[i]) {
			missing = true;
			rtbl_ask(r, i);
		}
	r->retrying = missing;
	return missing ? 1 : 0;
}

/* rtbl_schedule_retry - set the retry timer unless it is set */
static void
rtbl_schedule_retry(struct xm_rtbl *r)
{
	double s = r->reconnect < 1 ? 1 : r->reconnect;

	if (r->retrying || r->conn == NULL)
		return;
	r->retrying = true;
	xmpp_timed_handler_add(r->conn, rtbl_retry, (unsigned long)(s * 1000),
	    r);
}

/* rtbl_on_items - the answer to an items fetch */
static int
rtbl_on_items(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct xm_rtbl *r = ud;
	xmpp_stanza_t *ps, *items;
	const char *type = xmpp_stanza_get_type(st);

	(void)conn;
	if (type != NULL && strcmp(type, "result") == 0 &&
	    (ps = xmpp_stanza_get_child_by_name_and_ns(st, "pubsub",
	    NS_PUBSUB)) != NULL &&
	    (items = xmpp_stanza_get_child_by_name(ps, "items")) != NULL)
		rtbl_apply_items(r, items, true);
	else {
		log_warn("rtbl: %s: fetching items failed (%s); will ask again",
		    r->service, xmpp_stanza_get_id(st) ?
		    xmpp_stanza_get_id(st) : "?");
		rtbl_schedule_retry(r);
	}
	return 0;
}

/* rtbl_on_subscribe - the answer to a subscription: log failures */
static int
rtbl_on_subscribe(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct xm_rtbl *r = ud;
	const char *type = xmpp_stanza_get_type(st);

	(void)conn;
	if (type == NULL || strcmp(type, "result") != 0) {
		log_warn("rtbl: %s: subscription refused (%s); will ask again",
		    r->service, xmpp_stanza_get_id(st) ?
		    xmpp_stanza_get_id(st) : "?");
		rtbl_schedule_retry(r);
	}
	return 0;
}

/* rtbl_iq - send <iq type=TYPE to=service><pubsub><CHILD node=N .../> */
static void
rtbl_iq(struct xm_rtbl *r, const char *type, const char *child, size_t ni,
    const char *id, xmpp_handler h)
{
	xmpp_stanza_t *iq, *ps, *el;

	iq = xmpp_iq_new(r->ctx, type, id);
	xmpp_stanza_set_to(iq, r->service);
	ps = xmpp_stanza_new(r->ctx);
	xmpp_stanza_set_name(ps, "pubsub");
	xmpp_stanza_set_ns(ps, NS_PUBSUB);
	el = xmpp_stanza_new(r->ctx);
	xmpp_stanza_set_name(el, child);
	xmpp_stanza_set_attribute(el, "node", r->node[ni]);
	if (strcmp(child, "subscribe") == 0)
		xmpp_stanza_set_attribute(el, "jid",
		    xmpp_conn_get_bound_jid(r->conn));
	xmpp_stanza_add_child(ps, el);
	xmpp_stanza_release(el);
	xmpp_stanza_add_child(iq, ps);
	xmpp_stanza_release(ps);
	xmpp_id_handler_add(r->conn, h, id, r);
	xmpp_send(r->conn, iq);
	xmpp_stanza_release(iq);
}

/* rtbl_on_conn - logged in: subscribe and fetch; or note the drop */
static void
rtbl_on_conn(xmpp_conn_t *conn, xmpp_conn_event_t status, int error,
    xmpp_stream_error_t *se, void *ud)
{
	struct xm_rtbl *r = ud;
	size_t i;

	(void)se;
	if (status != XMPP_CONN_CONNECT) {
		if (!r->down)
			log_warn("rtbl: %s: disconnected (error %d)", r->jid,
			    error);
		r->down = true;
		return;
	}
	log_info("rtbl: %s logged in, subscribing to %zu nodes of %s",
	    r->jid, r->nnodes, r->service);
	xmpp_handler_add(conn, rtbl_on_message, NULL, "message", NULL, r);
	for (i = 0; i < r->nnodes; i++)
		rtbl_ask(r, i);
}

/* rtbl_ask - subscribe to node I and fetch its items */
static void
rtbl_ask(struct xm_rtbl *r, size_t i)
{
	char id[64];

	snprintf(id, sizeof(id), "rtbl-sub-%zu", i);
	rtbl_iq(r, "set", "subscribe", i, id, rtbl_on_subscribe);
	snprintf(id, sizeof(id), "rtbl-items-%zu", i);
	rtbl_iq(r, "get", "items", i, id, rtbl_on_items);
}

/* rtbl_sleep - wait SECONDS unless asked to stop */
static void
rtbl_sleep(struct xm_rtbl *r, double seconds)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	double t;

	for (t = 0; t < seconds && !atomic_load(&r->stop); t += 0.05)
		nanosleep(&ts, NULL);
}

/* rtbl_main - the subscriber thread: connect, run, reconnect */
static void *
rtbl_main(void *arg)
{
	struct xm_rtbl *r = arg;
	char *full;

	r->ctx = xmpp_ctx_new(NULL, NULL);
	full = xm_printf("%s/%s", r->jid, RTBL_RESOURCE);
	while (!atomic_load(&r->stop)) {
		r->conn = xmpp_conn_new(r->ctx);
		xmpp_conn_set_flags(r->conn, r->tls ?
		    XMPP_CONN_FLAG_MANDATORY_TLS : XMPP_CONN_FLAG_DISABLE_TLS);
		xmpp_conn_set_jid(r->conn, full);
		xmpp_conn_set_pass(r->conn, r->password);
		r->down = false;
		r->fetched = 0;
		r->retrying = false;
		memset(r->have, 0, r->nnodes * sizeof(*r->have));
		if (xmpp_connect_client(r->conn, r->host, r->port, rtbl_on_conn,
		    r) != XMPP_EOK) {
			log_warn("rtbl: %s: cannot connect", r->jid);
			r->down = true;
		}
		while (!r->down && !atomic_load(&r->stop))
			xmpp_run_once(r->ctx, 100);
		if (!xmpp_conn_is_disconnected(r->conn)) {
			xmpp_disconnect(r->conn);
			for (int i = 0; i < 20 &&
			    !xmpp_conn_is_disconnected(r->conn); i++)
				xmpp_run_once(r->ctx, 50);
		}
		xmpp_conn_release(r->conn);
		r->conn = NULL;
		rtbl_sleep(r, r->reconnect);
	}
	free(full);
	xmpp_ctx_free(r->ctx);
	return NULL;
}

/* rtbl_key - one string naming every setting */
static char *
rtbl_key(const struct xm_rtbl_conf *c)
{
	struct xm_buf b = { 0 };
	size_t i;
	char *k;

	xm_buf_printf(&b, "%s\n%s\n%s\n%s\n%d\n%g\n", c->jid, c->password,
	    c->server ? c->server : "", c->service, c->tls, c->reconnect);
	for (i = 0; i < c->domain_nodes->n; i++)
		xm_buf_printf(&b, "d:%s\n", c->domain_nodes->v[i]);
	for (i = 0; i < c->jid_nodes->n; i++)
		xm_buf_printf(&b, "j:%s\n", c->jid_nodes->v[i]);
	k = xm_strndup(b.data, b.len);
	xm_buf_free(&b);
	return k;
}

/* xm_rtbl_get - the shared subscriber for these settings */
struct xm_rtbl *
xm_rtbl_get(const struct xm_rtbl_conf *c)
{
	struct xm_rtbl *r;
	char *key = rtbl_key(c), *colon;
	long long port = 0;
	size_t i, n;

	pthread_once(&rtbl_strophe_once, rtbl_strophe_init);
	pthread_mutex_lock(&rtbl_reg_lock);
	for (r = rtbl_reg; r != NULL; r = r->next)
		if (strcmp(r->key, key) == 0) {
			r->refs++;
			pthread_mutex_unlock(&rtbl_reg_lock);
			free(key);
			return r;
		}
	r = xm_calloc(1, sizeof(*r));
	r->key = key;
	r->refs = 1;
	r->jid = xm_strdup(c->jid);
	r->password = xm_strdup(c->password ? c->password : "");
	r->service = xm_strdup(c->service);
	r->tls = c->tls;
	r->reconnect = c->reconnect;
	if (c->server != NULL) {
		r->host = xm_strdup(c->server);
		if ((colon = strrchr(r->host, ':')) != NULL &&
		    strchr(r->host, ':') == colon &&
		    xm_parse_ll(colon + 1, 1, 65535, &port) == 0) {
			*colon = '\0';
			r->port = (unsigned short)port;
		}
	}
	n = c->domain_nodes->n + c->jid_nodes->n;
	r->node = xm_calloc(n ? n : 1, sizeof(*r->node));
	r->is_jid = xm_calloc(n ? n : 1, sizeof(*r->is_jid));
	r->set = xm_calloc(n ? n : 1, sizeof(*r->set));
	r->have = xm_calloc(n ? n : 1, sizeof(*r->have));
	for (i = 0; i < c->domain_nodes->n; i++)
		r->node[r->nnodes++] = xm_strdup(c->domain_nodes->v[i]);
	for (i = 0; i < c->jid_nodes->n; i++) {
		r->is_jid[r->nnodes] = true;
		r->node[r->nnodes++] = xm_strdup(c->jid_nodes->v[i]);
	}
	pthread_rwlock_init(&r->lock, NULL);
	atomic_init(&r->stop, false);
	if (pthread_create(&r->thr, NULL, rtbl_main, r) != 0)
		fatalx("rtbl: cannot start the subscriber thread");
	r->next = rtbl_reg;
	rtbl_reg = r;
	pthread_mutex_unlock(&rtbl_reg_lock);
	log_info("rtbl: subscriber %s for %s started", r->jid, r->service);
	return r;
}

/* xm_rtbl_put - the last reference stops the thread and frees it all */
void
xm_rtbl_put(struct xm_rtbl *r)
{
	struct xm_rtbl **pp;
	size_t i;

	if (r == NULL)
		return;
	pthread_mutex_lock(&rtbl_reg_lock);
	if (--r->refs > 0) {
		pthread_mutex_unlock(&rtbl_reg_lock);
		return;
	}
	for (pp = &rtbl_reg; *pp != NULL; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	pthread_mutex_unlock(&rtbl_reg_lock);
	atomic_store(&r->stop, true);
	pthread_join(r->thr, NULL);
	for (i = 0; i < r->nnodes; i++) {
		free(r->node[i]);
		xm_strset_free(&r->set[i]);
	}
	free(r->node);
	free(r->is_jid);
	free(r->set);
	free(r->have);
	pthread_rwlock_destroy(&r->lock);
	free(r->key);
	free(r->jid);
	free(r->password);
	free(r->host);
	free(r->service);
	free(r);
}

/* xm_rtbl_domain - HOST or a parent on a domain node */
bool
xm_rtbl_domain(struct xm_rtbl *r, const char *host, char *match, size_t mlen,
    char *node, size_t nlen)
{
	const char *m;
	bool hit = false;
	size_t i;

	pthread_rwlock_rdlock(&r->lock);
	for (i = 0; i < r->nnodes && !hit; i++) {
		if (r->is_jid[i] || !xm_strset_has_domain(&r->set[i], host, &m))
			continue;
		hit = true;
		if (match != NULL)
			snprintf(match, mlen, "%s", m);
		if (node != NULL)
			snprintf(node, nlen, "%s", r->node[i]);
	}
	pthread_rwlock_unlock(&r->lock);
	return hit;
}

/* xm_rtbl_jid - HASH on a JID node */
bool
xm_rtbl_jid(struct xm_rtbl *r, const char *hash, char *node, size_t nlen)
{
	bool hit = false;
	size_t i;

	pthread_rwlock_rdlock(&r->lock);
	for (i = 0; i < r->nnodes && !hit; i++) {
		if (!r->is_jid[i] ||
		    !xm_strset_has(&r->set[i], hash, strlen(hash)))
			continue;
		hit = true;
		if (node != NULL)
			snprintf(node, nlen, "%s", r->node[i]);
	}
	pthread_rwlock_unlock(&r->lock);
	return hit;
}

/* xm_rtbl_size - entries over all nodes */
size_t
xm_rtbl_size(struct xm_rtbl *r, bool *ready)
{
	size_t i, n = 0;

	pthread_rwlock_rdlock(&r->lock);
	for (i = 0; i < r->nnodes; i++)
		n += r->set[i].n;
	if (ready != NULL)
		*ready = r->ready;
	pthread_rwlock_unlock(&r->lock);
	return n;
}
