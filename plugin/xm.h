/*
 * xm.h - the one header filters and the daemon share
 *
 * Declares what a filter sees and may do:
 *   - struct xm_event: the parsed event (envelope fields + one stanza) with
 *     a typed view (bodies, subjects, rich text, URLs, file offers, invites),
 *   - struct xm_task: one check of one event; filters add symbols to it or
 *     set a final result,
 *   - struct xm_filter_ops: the interface every file in filters/ exports.
 *
 * Memory: everything hanging off an event or a task lives in the task's
 * arena (struct xm_arena) and is freed in one go when the verdict is sent
 * or the request is cancelled. Filters never free what they got from here.
 */
#ifndef XM_H
#define XM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define XM_FILTER_ABI 1

/* Actions, in order of severity (thresholds map a score to one of them). */
enum xm_action {
	XM_ACCEPT = 0,
	XM_MODIFY,
	XM_QUARANTINE,
	XM_REJECT,
	XM_DISCARD,
};
const char *xm_action_name(enum xm_action a);
int xm_action_parse(const char *s, enum xm_action *out);

/* Kinds of stanza the glue can be asked to send (HELLO "kinds"). */
enum xm_kind {
	XM_KIND_MESSAGE = 0,
	XM_KIND_SUBSCRIPTION, /* presence type=subscribe (and friends) */
	XM_KIND_TRANSFER,     /* file-transfer iqs: SI, Jingle, IBB, OOB */
	XM_KIND_UPLOAD,       /* XEP-0363 slot request (and later bytes) */
	XM_KIND_PRESENCE,     /* any other presence */
	XM_KIND_IQ,           /* any other iq */
	XM_KIND_OTHER,
	XM_KIND_COUNT
};
const char *xm_kind_name(enum xm_kind k);
int xm_kind_parse(const char *s, enum xm_kind *out);

/* ---- the parsed stanza tree ---- */

struct xm_attr {
	const char *ns;    /* namespace URI, "" when none */
	const char *name;  /* local name */
	const char *value;
};

struct xm_node {
	const char *name;  /* local name; NULL for a text node */
	const char *ns;    /* namespace URI ("" when none) */
	struct xm_attr *attrs;
	size_t nattrs;
	const char *text;  /* text nodes only (NUL-terminated, UTF-8) */
	size_t text_len;
	struct xm_node *parent, *children, *last, *next;
};

/* xm_node_attr - value of attribute NAME (no namespace), or NULL */
const char *xm_node_attr(const struct xm_node *n, const char *name);
/* xm_node_child - first child element with this name and namespace (ns NULL: any) */
struct xm_node *xm_node_child(const struct xm_node *n, const char *name, const char *ns);
/* xm_node_text - concatenated text of N and its descendants, in arena A */
char *xm_node_text(struct xm_arena *a, const struct xm_node *n);
/* xm_node_serialize - N as XML text (namespaces declared where they change) */
char *xm_node_serialize(struct xm_arena *a, const struct xm_node *n, const char *parent_ns);

/* ---- the typed view ---- */

struct xm_field {
	const char *key;
	const char *value;
};

struct xm_text {
	const char *lang;  /* xml:lang or NULL */
	const char *text;
};

enum xm_url_source {
	XM_URL_OOB = 0,     /* jabber:x:oob / jabber:iq:oob <url> */
	XM_URL_XHTML_HREF,  /* XHTML-IM <a href> */
	XM_URL_XHTML_SRC,   /* XHTML-IM <img src> */
};

struct xm_url {
	enum xm_url_source source;
	const char *url;
	const char *desc;   /* OOB <desc> or link text, may be NULL */
};

enum xm_file_method {
	XM_FT_SI = 0,     /* XEP-0096 */
	XM_FT_JINGLE,     /* XEP-0234 session-initiate */
	XM_FT_IBB_OPEN,   /* XEP-0047 */
	XM_FT_IBB_DATA,
	XM_FT_IBB_CLOSE,
	XM_FT_OOB,        /* XEP-0066 (iq or message) */
	XM_FT_UPLOAD,     /* XEP-0363 slot request */
};
const char *xm_file_method_name(enum xm_file_method m);

struct xm_hash {
	const char *algo;   /* e.g. "sha-256", "md5" */
	const char *value;  /* as sent (hex for SI, base64 for XEP-0300) */
};

struct xm_file {
	enum xm_file_method method;
	const char *name;   /* file name, may be NULL */
	const char *type;   /* declared media type, may be NULL */
	const char *desc;
	const char *sid;    /* SI / IBB stream id, Jingle sid */
	const char *url;    /* OOB */
	const char *data;   /* IBB data, base64 as sent */
	long long size;     /* declared size, -1 unknown */
	long long seq;      /* IBB seq, -1 unknown */
	long long block_size;
	struct xm_hash *hashes;
	size_t nhashes;
};

enum xm_invite_kind { XM_INVITE_MEDIATED = 0, XM_INVITE_DIRECT };

struct xm_invite {
	enum xm_invite_kind kind;
	const char *room;     /* direct: jid attr; mediated: the message's from */
	const char *invitee;  /* mediated: <invite to=...> */
	const char *reason;
	const char *password;
};

struct xm_event {
	struct xm_arena *arena;

	/* envelope */
	struct xm_field *fields;   /* every line, in order */
	size_t nfields;
	const char *origin, *peer, *ip, *auth, *tls, *roster, *time_text;
	long long account_age;     /* seconds, -1 when absent */
	double time;               /* unix seconds; < 0 when absent */

	/* the stanza */
	const char *raw;           /* as received, NUL-terminated */
	size_t raw_len;
	struct xm_node *root;
	enum xm_kind kind;
	const char *name;          /* message, presence, iq */
	const char *type, *from, *to, *id;

	struct xm_text *bodies;    size_t nbodies;
	struct xm_text *subjects;  size_t nsubjects;
	struct xm_node *xhtml;     /* XHTML-IM <body> (xmlns xhtml), first one */
	const char *xhtml_text;    /* its text content, or NULL */
	struct xm_url *urls;       size_t nurls;
	struct xm_file *files;     size_t nfiles;
	struct xm_invite *invites; size_t ninvites;
	const char *status;        /* presence <status>, or NULL */

	/* shape, measured while parsing (for guard) */
	unsigned depth;            /* deepest element, root = 1 */
	unsigned nelements;
	unsigned max_attrs;        /* most attributes on one element */
	size_t text_bytes;         /* character data in total */
};

/* xm_event_field - value of envelope field KEY (first one), or NULL */
const char *xm_event_field(const struct xm_event *ev, const char *key);
/* xm_event_from_domain - domain part of the stanza's from (or NULL), in arena */
const char *xm_jid_domain(struct xm_arena *a, const char *jid);
/* xm_jid_bare - bare JID (no resource), in arena */
const char *xm_jid_bare(struct xm_arena *a, const char *jid);

/* ---- one check ---- */

#define XM_SYM_SHADOW 0x1  /* counted and shown, never changes the action */

struct xm_symbol {
	const char *name;
	double score;
	const char *detail;   /* may be "" */
	const char *filter;   /* which filter added it */
	unsigned flags;       /* XM_SYM_* */
};

struct xm_task {
	struct xm_arena *arena;
	const struct xm_event *ev;
	double now;                   /* the clock: event time in replay */
	const struct xm_scope *scope; /* the scope that matched the event */

	struct xm_symbol *symbols;
	size_t nsymbols, symcap;

	bool final;                   /* a filter ended the chain */
	enum xm_action final_action;
	const char *final_condition;  /* XMPP error condition, may be NULL */
	const char *final_text;       /* text for the sender, may be NULL */

	/* modifications a filter asks for (applied if the action is modify) */
	const char **new_bodies;      /* replacement per body, NULL = unchanged */

	/* set by the chain while a filter runs */
	const char *cur_filter;
	bool cur_shadow;

	/* a filter waiting for shared-state operations (xm_task_state_wait);
	 * the chain's position while it waits */
	struct xm_state_op *wait_ops;
	size_t wait_n;
	void (*wait_fn)(void *state, struct xm_task *t, void *arg);
	void *wait_arg;
	size_t pos;
};

/* xm_task_symbol - add symbol NAME with SCORE; DETAIL is printf-style */
void xm_task_symbol(struct xm_task *t, const char *name, double score,
    unsigned flags, const char *fmt, ...) XM_PRINTF(5, 6);
/* xm_task_final - end the chain with ACTION (ignored when shadowed) */
void xm_task_final(struct xm_task *t, enum xm_action action,
    const char *condition, const char *text);
/* xm_task_replace_body - ask for body I to become TEXT when modifying */
void xm_task_replace_body(struct xm_task *t, size_t i, const char *text);
/* xm_task_state_wait - have the operations OPS[0..N) (state.h; they must
 * outlive the call: put them in the task's arena) run on the shared state
 * at t->now, then FN(state, t, ARG) called with their results in OPS. The
 * filter's check (or FN) returns right after this call and does nothing
 * else. Where the state is local, the chain runs OPS at once; where it is
 * in Redis the daemon sends them on its pipelined connection and the task
 * waits, so the event loop never blocks (`xmilter check` and the worker
 * pool run them inline). FN may wait again. */
struct xm_state_op;
void xm_task_state_wait(struct xm_task *t, struct xm_state_op *ops, size_t n,
    void (*fn)(void *state, struct xm_task *t, void *arg), void *arg);
/* xm_task_has_symbol - true when NAME was added (shadowed ones too) */
bool xm_task_has_symbol(const struct xm_task *t, const char *name);

/* ---- the filter interface ---- */

#define XM_FILTER_SLOW 0x1  /* runs on the worker pool, never on the loop */
#define XM_FILTER_OPTIN 0x2 /* off unless the config enables it (it needs
                               something the machine may lack, e.g. a
                               signature database) */

struct xm_setting;  /* config.h */

struct xm_filter_ops {
	const char *name;
	int abi;                         /* XM_FILTER_ABI */
	unsigned flags;                  /* XM_FILTER_* */
	size_t conf_size;                /* size of the filter's config struct */
	const struct xm_setting *settings; /* its settings, NULL-name ended */
	/* init - build state from CONF (a filled conf_size struct); on error
	 * write a message to ERR and return -1. CONF stays valid while the
	 * state lives (it belongs to the config). */
	int (*init)(void **state, const void *conf, char *err, size_t errlen);
	/* check - look at t->ev, add symbols. Must not block unless SLOW. */
	void (*check)(void *state, struct xm_task *t);
	void (*free)(void *state);
	/* wants - optional, for SLOW filters: false when check would do
	 * nothing for T (say, no file in the event), so the daemon can answer
	 * on the event loop instead of queueing the event for a worker. NULL:
	 * every event. Called on the loop after the fast stage; must not block. */
	bool (*wants)(void *state, const struct xm_task *t);
	/* status - optional: true when the filter runs degraded (say, no
	 * signature database), with a short reason in BUF; HELLO then says
	 * status=degraded with a reason= line. Called on the loop. */
	bool (*status)(void *state, char *buf, size_t len);
	/* (A filter whose state may be remote does not need the worker
	 * pool: it waits for its state operations with xm_task_state_wait.) */
};

#endif
