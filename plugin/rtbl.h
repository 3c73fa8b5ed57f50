/*
 * rtbl.h - shared real-time block lists over XMPP publish-subscribe
 *
 * XMPP operators share block lists as pubsub nodes (the xmppbl.org
 * convention): one item per listed entry, the item id being the entry (a
 * domain on spam_source_domains, the hex SHA-256 of a bare JID on
 * spam_source_jids_sha256); retracting the item unlists it. A subscriber
 * is one libstrophe client on its own thread that logs in, fetches every
 * node's items, subscribes, and applies publish/retract/purge
 * notifications to in-memory sets as they arrive; it reconnects (and
 * fetches again) when the link drops.
 *
 * Subscribers are process-global and keyed by their settings: every
 * filter instance (each scope, each configuration generation across a
 * SIGHUP) asking for the same settings shares one subscriber, so a reload
 * neither drops the sets nor logs in again. The last xm_rtbl_put stops it.
 *
 * Thread safety: look-ups take a read lock and may run on any thread;
 * only the subscriber's thread writes.
 */
#ifndef XM_RTBL_H
#define XM_RTBL_H

#include <stdbool.h>
#include <stddef.h>

struct xm_strlist;
struct xm_rtbl;

struct xm_rtbl_conf {
	const char *jid;       /* account to log in with */
	const char *password;
	const char *server;    /* host[:port] to connect to; NULL: from jid */
	const char *service;   /* the pubsub service's JID */
	const struct xm_strlist *domain_nodes;  /* items are domains */
	const struct xm_strlist *jid_nodes;     /* items are sha256(bare JID) */
	bool tls;              /* require TLS (else plain text allowed) */
	double reconnect;      /* seconds between attempts */
};

/* xm_rtbl_get - the subscriber for C (started on first use); never NULL */
struct xm_rtbl *xm_rtbl_get(const struct xm_rtbl_conf *c);
/* xm_rtbl_put - drop one reference; the last stops the thread */
void xm_rtbl_put(struct xm_rtbl *r);

/* xm_rtbl_domain - HOST or a parent domain is listed on a domain node;
 * the match and its node copied to MATCH/NODE (may be NULL) */
bool xm_rtbl_domain(struct xm_rtbl *r, const char *host, char *match,
    size_t mlen, char *node, size_t nlen);
/* xm_rtbl_jid - hex SHA-256 HASH is listed on a JID node */
bool xm_rtbl_jid(struct xm_rtbl *r, const char *hash, char *node,
    size_t nlen);
/* xm_rtbl_size - entries over all nodes; *READY: the first fetch done */
size_t xm_rtbl_size(struct xm_rtbl *r, bool *ready);

#endif
