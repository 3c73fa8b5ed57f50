/*
 * quarantine.h - the quarantine store: held stanzas, their release, expiry
 *
 * One table of items (docs/QUARANTINE.md) behind two backends: SQLite (the
 * default, a local file in WAL mode, every change a durable commit) and
 * PostgreSQL through libpq (shared by the daemons of a cluster). An item
 * moves held -> releasing -> released, or to deleted; the claim
 * (held -> releasing) is one conditional UPDATE, so of two concurrent
 * releases exactly one wins, on either backend, and a stanza is handed to
 * the glue at most once. An item left `releasing` (a crash between the
 * claim and the glue's confirmation) stays so for an administrator to
 * judge; nothing re-sends it by itself.
 *
 * Every call is blocking I/O: the daemon makes them on worker threads,
 * never on its event loop. A store may be shared by threads (a mutex
 * serialises the calls). Strings in a struct xm_qitem filled by the store
 * are heap copies the caller frees with xm_qitem_clear.
 */
#ifndef XM_QUARANTINE_H
#define XM_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct xm_qitem {
	long long id;
	double time;          /* unix seconds when it was quarantined */
	double expires;       /* unix seconds after which it is purged */
	double released;      /* when released (or claimed); 0: never */
	double score;
	char *reason;         /* the deciding symbol */
	char *symbols;        /* "NAME SCORE; NAME SCORE" */
	char *sender;         /* the stanza's from */
	char *recipient;      /* the stanza's to */
	char *state;          /* held, releasing, released, deleted */
	char *event;          /* the event text (envelope and stanza); "" once
	                         deleted; NULL when not asked for */
};

/* result of the state-changing calls */
#define XM_Q_OK 0
#define XM_Q_REFUSED 1    /* no such item, or not in the required state:
                             the reason is in ERR */

struct xm_qstore;

/* xm_qstore_open - open (and create if needed) the store CF's quarantine
 * section names; NULL with ERR on failure. The caller closes it. */
struct xm_qstore *xm_qstore_open(const struct xm_config *cf, char *err,
    size_t errlen);
void xm_qstore_close(struct xm_qstore *q);
/* xm_qstore_describe - "sqlite PATH" or "postgresql", for logs */
const char *xm_qstore_describe(const struct xm_qstore *q);

/* xm_qstore_add - store IT (state held; IT->id ignored) durably before it
 * returns; *ID gets the new item's id. 0 or -1 with ERR. */
int xm_qstore_add(struct xm_qstore *q, const struct xm_qitem *it,
    long long *id, char *err, size_t errlen);
/* xm_qstore_get - item ID into OUT (the event too when WITH_EVENT);
 * XM_Q_OK, XM_Q_REFUSED when there is none, -1 with ERR */
int xm_qstore_get(struct xm_qstore *q, long long id, bool with_event,
    struct xm_qitem *out, char *err, size_t errlen);
/* xm_qstore_list - call CB for each item (without its event), oldest
 * first, only those in STATE unless STATE is NULL, at most LIMIT (0: all);
 * the item is valid during the call. 0 or -1 with ERR. */
int xm_qstore_list(struct xm_qstore *q, const char *state, size_t limit,
    void (*cb)(void *ctx, const struct xm_qitem *it), void *ctx, char *err,
    size_t errlen);
/* xm_qstore_claim - held -> releasing at NOW, atomically; XM_Q_REFUSED
 * (with the reason, e.g. "item 7 is released (at ...)") otherwise */
int xm_qstore_claim(struct xm_qstore *q, long long id, double now, char *err,
    size_t errlen);
/* xm_qstore_finish - releasing -> released at NOW (the glue confirmed) */
int xm_qstore_finish(struct xm_qstore *q, long long id, double now, char *err,
    size_t errlen);
/* xm_qstore_unclaim - releasing -> held (nothing was handed to a glue) */
int xm_qstore_unclaim(struct xm_qstore *q, long long id, char *err,
    size_t errlen);
/* xm_qstore_delete - any state but deleted -> deleted; the event text is
 * erased, the metadata kept until the item expires */
int xm_qstore_delete(struct xm_qstore *q, long long id, char *err,
    size_t errlen);
/* xm_qstore_purge - remove the items whose expiry is before NOW (except
 * those left releasing); the number removed, or -1 with ERR */
long long xm_qstore_purge(struct xm_qstore *q, double now, char *err,
    size_t errlen);

/* xm_qitem_clear - free what the store put into IT */
void xm_qitem_clear(struct xm_qitem *it);

/* xm_quarantine_time - T (unix seconds) as RFC 3339 in BUF; returns BUF */
const char *xm_quarantine_time(double t, char *buf, size_t len);

/* xm_quarantine_notice - TEMPLATE with {id} {from} {to} {reason} replaced
 * (heap; the caller frees); CR and LF become spaces */
char *xm_quarantine_notice(const char *template, long long id,
    const char *from, const char *to, const char *reason);

#endif
