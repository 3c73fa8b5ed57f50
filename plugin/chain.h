/*
 * chain.h - the filter chain, scoring and actions
 *
 * A chain is built from a config: for each scope, one instance of every
 * enabled filter. It is reference-counted: a task holds the chain it
 * started on, so a SIGHUP that swaps in a new chain never frees one that
 * work is still using. The daemon and `xmilter check` both run events
 * through the same stages and xm_chain_finish; the differences are that
 * the daemon runs the slow stage on a worker thread, and lets a filter's
 * wait for state held in Redis happen without blocking (xm_chain_start,
 * xm_chain_resume), where `xmilter check` runs it inline.
 */
#ifndef XM_CHAIN_H
#define XM_CHAIN_H

#include "config.h"
#include "event.h"
#include "xm.h"

struct xm_chain;

struct xm_verdict {
	enum xm_action action;
	double score;
	const struct xm_symbol *symbols;  /* the task's */
	size_t nsymbols;
	const char *condition;   /* XMPP error condition (reject/discard) */
	const char *text;        /* error text for the sender */
	const char *reason;      /* operator-facing: the deciding symbol */
	const char *stanza;      /* modify: the replacement stanza */
	const char *scope;       /* name of the scope that applied */
};

/* xm_chain_new - instantiate the filters of CONF; NULL with ERR on error.
 * The chain keeps CONF (and frees it when the last reference goes). */
struct xm_chain *xm_chain_new(struct xm_config *conf, char *err, size_t errlen);
void xm_chain_ref(struct xm_chain *c);
void xm_chain_unref(struct xm_chain *c);
const struct xm_config *xm_chain_config(const struct xm_chain *c);
/* xm_chain_has_slow - true when a filter in any scope must run off-loop */
bool xm_chain_has_slow(const struct xm_chain *c);

/* xm_chain_task_slow - true when a SLOW filter of T's scope wants T (see
 * xm_filter_ops.wants): only then must the slow stage run */
bool xm_chain_task_slow(const struct xm_chain *c, const struct xm_task *t);

/* xm_chain_limits - the event parser limits of the chain's config */
const struct xm_event_limits *xm_chain_limits(const struct xm_chain *c);
/* xm_chain_event - parse one request's event: the whole of BUF must be one
 * event. 0, or -1 with the reason in ERR (the event is then malformed) */
int xm_chain_event(const struct xm_chain *c, struct xm_arena *a,
    const char *buf, size_t len, struct xm_event **ev, char *err,
    size_t errlen);

/* xm_chain_hello - the daemon's own HELLO lines for this chain: wanted
 * kinds, daemon=xmilterd/VERSION, active filters, status */
void xm_chain_hello(const struct xm_chain *c, struct xm_buf *reply,
    const char *version);

/* xm_task_init - prepare T for EV in arena A, clock NOW; picks the scope */
void xm_task_init(struct xm_task *t, const struct xm_chain *c,
    struct xm_arena *a, const struct xm_event *ev, double now);
/* xm_chain_run_stage - run the fast (slow=false) or slow filters on T;
 * returns true when the chain ended early (a final result) */
bool xm_chain_run_stage(const struct xm_chain *c, struct xm_task *t, bool slow);
/* The fast stage on the event loop, where a filter may wait for shared
 * state (xm_task_state_wait) held in Redis: xm_chain_start runs it until
 * a filter waits (XM_RUN_WAIT: the caller runs t->wait_ops, e.g. with
 * xm_state_submit, then calls xm_chain_resume, which may wait again) or
 * the stage is over (XM_RUN_DONE, or XM_RUN_FINAL when a filter ended
 * the chain). With the state in memory nothing waits. */
enum { XM_RUN_DONE = 0, XM_RUN_FINAL, XM_RUN_WAIT };
int xm_chain_start(const struct xm_chain *c, struct xm_task *t);
int xm_chain_resume(const struct xm_chain *c, struct xm_task *t);
/* xm_chain_finish - turn T's symbols and final result into a verdict */
void xm_chain_finish(const struct xm_chain *c, struct xm_task *t,
    struct xm_verdict *v);
/* xm_chain_check - both stages and the verdict, synchronously */
void xm_chain_check(const struct xm_chain *c, struct xm_task *t,
    struct xm_verdict *v);
/* xm_verdict_malformed - the verdict for an event that does not parse */
void xm_verdict_malformed(const struct xm_chain *c, struct xm_arena *a,
    const char *why, struct xm_verdict *v);

/* xm_verdict_json - one JSON object (xmilter check output), in arena;
 * EV (may be NULL) adds the stanza's kind, id, from and to */
char *xm_verdict_json(struct xm_arena *a, const struct xm_event *ev,
    const struct xm_verdict *v);
/* xm_verdict_logline - the key=value log line of one verdict */
char *xm_verdict_logline(struct xm_arena *a, const struct xm_event *ev,
    const struct xm_verdict *v, unsigned long long id, double ms);

#endif
