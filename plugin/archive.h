/*
 * archive.h - the compliance archive: records, sinks, writer threads
 *
 * After each verdict the daemon hands the event (the text as received)
 * and its verdict to xm_archive_submit. The record is copied into one heap
 * item (the task's arena is freed right after), offered to every sink
 * whose selection rules match, and queued there; each sink has a bounded
 * queue and a writer thread of its own, so nothing slow ever runs on the
 * event loop. A sink writes a batch in one transaction / one fsync.
 *
 * Guarantees (per sink): best-effort never holds the verdict; a full queue
 * or a failing sink is counted, logged and shown in health. must-archive:
 * xm_archive_submit returns 1 and DONE is called (from a writer thread)
 * once every must-archive sink that selected the record has made it
 * durable, or has failed; the caller answers only then.
 *
 * Sinks: archive_sqlite.c (FTS5), archive_jsonl.c (SHA-256 hash chain,
 * rotation), archive_cmd.c (a long-running consumer), archive_pg.c (libpq).
 * The `xmilter archive` command (archive_cli.c) reads them back.
 *
 * Ownership: items are reference-counted (one reference per queue that
 * holds one); the archive owns its sinks and threads; the config it was
 * opened with must outlive it.
 */
#ifndef XM_ARCHIVE_H
#define XM_ARCHIVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "chain.h"
#include "config.h"
#include "xm.h"

#define XM_ARCHIVE_FORMAT 1   /* "v" of every record */
#define XM_ARCHIVE_HASHLEN 64 /* hex SHA-256 */
#define XM_ARCHIVE_MAX_SINKS 32

struct xm_archive;

/* a symbol as archived */
struct xm_archive_sym {
	const char *name, *detail, *filter;
	double score;
	bool shadow;
};

/* one record: every string points into the item's own block */
struct xm_archive_item {
	int refs;                 /* atomic */
	struct xm_archive_item *gc_next;  /* on a sink's garbage list */
	struct archive_waiter *waiter;  /* must-archive, or NULL */
	double time;              /* the event's time (unix seconds) */
	double archived;          /* when it was submitted */
	unsigned long long id;    /* the request id */
	const char *node;
	const char *kind, *name, *type, *origin, *peer, *ip, *auth, *tls;
	const char *roster, *from, *to, *stanza_id;
	const char *sender, *recipient;          /* bare JIDs */
	const char *sender_domain, *recipient_domain;
	const char *body, *subject;              /* bodies joined by newlines */
	const char *action, *condition, *text, *reason, *scope;
	double score;
	struct xm_archive_sym *syms;
	size_t nsyms;
	const char *event;        /* the event text as received */
	size_t event_len;
	bool malformed;
};

/* xm_archive_item_new - a record of EV (NULL when malformed) with verdict V
 * and the request's event text; heap, one reference. */
struct xm_archive_item *xm_archive_item_new(const struct xm_event *ev,
    const char *event_text, size_t event_len, const struct xm_verdict *v,
    unsigned long long id, const char *node, double now);
void xm_archive_item_unref(struct xm_archive_item *it);
/* xm_archive_encode - the record as one compact JSON object (heap, no
 * newline); its keys are docs/ARCHIVE.md's record format */
char *xm_archive_encode(const struct xm_archive_item *it);

/* xm_archive_selects - true when sink K's selection rules take IT */
bool xm_archive_selects(const struct xm_archive_sink_conf *k,
    const struct xm_archive_item *it);
/* xm_archive_selects_view - the same question on the view of EV/V that
 * xm_archive_submit selects on before packing a record: 1 yes, 0 no, -1
 * when it falls back to the record (a domain longer than 1023 bytes) */
int xm_archive_selects_view(const struct xm_archive_sink_conf *k,
    const struct xm_event *ev, const struct xm_verdict *v);
/* xm_archive_held - true when a record (sender, recipient, time) is under
 * legal hold in A */
bool xm_archive_held(const struct xm_archive_conf *a, const char *sender,
    const char *recipient, double t);
/* xm_archive_retention - retention of sink K for records of SCOPE, seconds
 * (-1: keep) */
double xm_archive_retention(const struct xm_archive_sink_conf *k,
    const char *scope);

/* xm_archive_time - T as RFC 3339 UTC with milliseconds into BUF (>= 32) */
char *xm_archive_time(double t, char *buf, size_t len);

/* ---- the hash chain (JSON-lines files) ---- */

/* xm_archive_sha256_hex - hex SHA-256 of P[0..n) into OUT (65 bytes) */
void xm_archive_sha256_hex(const void *p, size_t n, char out[65]);
/* xm_archive_chain_line - the chained line for RECORD (a JSON object):
 * {"seq":SEQ,"prev":"PREV",<record's members>,"hash":"H"} where H is the
 * SHA-256 of everything before ,"hash". Heap, no newline; H into HASH. */
char *xm_archive_chain_line(const char *record, unsigned long long seq,
    const char *prev, char hash[65]);
/* xm_archive_chain_check - check one line's own hash and read its seq and
 * prev; 0, or -1 with ERR */
int xm_archive_chain_check(const char *line, size_t len,
    unsigned long long *seq, char prev[65], char hash[65], char *err,
    size_t errlen);

struct xm_archive_verify {
	unsigned long long anchor_seq;  /* in: 0, or a seq whose hash ... */
	char anchor_hash[65];           /* in: ... must be this */
	bool anchor_found;              /* out */
	bool partial_tail;              /* out: a cut-short last line */
	unsigned long long records;   /* lines checked */
	unsigned long long first_seq, last_seq;
	char last_hash[65];
	unsigned files;
	unsigned long long purged;    /* seqs accounted for by purge records */
	unsigned errors;
};
/* xm_archive_jsonl_verify - check the chain of every file in DIR, in
 * order; problems are printed to REPORT; 0 when intact, -1 otherwise */
int xm_archive_jsonl_verify(const char *dir, FILE *report,
    struct xm_archive_verify *res);

/* ---- the running archive ---- */

/* done callback of a must-archive record: OK when every must-archive sink
 * made it durable. Called once, from a writer thread. */
typedef void (*xm_archive_done_fn)(void *arg, bool ok);

/* xm_archive_open - sinks of CF's archive section with their writer
 * threads; NULL when there are no sinks (archiving off) or, with ERR set,
 * when a sink cannot open (ERR[0] is '\0' in the first case). */
struct xm_archive *xm_archive_open(const struct xm_config *cf, char *err,
    size_t errlen);
/* xm_archive_close - write what is queued (a failing sink gets a few
 * seconds), stop the threads, free. Pending must-archive records that
 * could not be written get DONE(false). */
void xm_archive_close(struct xm_archive *a);
/* xm_archive_submit - archive EV/V (see xm_archive_item_new). Returns 0
 * when nothing waits (no sink selected it, or best-effort only), 1 when
 * DONE(ARG, ok) will be called, -1 when a must-archive sink refused it at
 * once (queue full, sink down): the caller applies the failure action. */
int xm_archive_submit(struct xm_archive *a, const struct xm_event *ev,
    const char *event_text, size_t event_len, const struct xm_verdict *v,
    unsigned long long id, double now, xm_archive_done_fn done, void *arg);
/* xm_archive_submit_wait - the same, waiting for must-archive sinks;
 * 0 written (or not selected / best-effort), -1 failed */
int xm_archive_submit_wait(struct xm_archive *a, const struct xm_event *ev,
    const char *event_text, size_t event_len, const struct xm_verdict *v,
    unsigned long long id, double now);
/* xm_archive_health - one "archive=NAME key=value..." line per sink */
void xm_archive_health(struct xm_archive *a, struct xm_buf *out);
/* xm_archive_conf - the archive section it runs with */
const struct xm_archive_conf *xm_archive_config(const struct xm_archive *a);
/* xm_archive_node - the node name used in records */
const char *xm_archive_node(const struct xm_archive *a);

/* ---- reading back (xmilter archive) ---- */

struct xm_archive_query {
	double from, until;    /* unix seconds; < 0: open */
	const char *jid;       /* sender or recipient: bare JID or *@domain */
	const char *text;      /* words that must all appear (body, subject) */
	const char *match;     /* a raw FTS5 MATCH / tsquery expression */
	const char *action;    /* the verdict's action */
	long long limit;       /* most records; <= 0: all */
};
/* a record found: RECORD is its JSON text; return non-zero to stop */
typedef int (*xm_archive_row_fn)(void *arg, const char *record);
/* xm_archive_words_match - every word of WORDS occurs (ASCII case
 * folded) in A or B */
bool xm_archive_words_match(const char *words, const char *a, const char *b);

/* ---- for the sink implementations ---- */

struct archive_sink;

struct archive_sink_ops {
	/* open - on the opening thread: files, schema; may leave the
	 * connection for connect; 0 or -1 with ERR */
	int (*open)(struct archive_sink *s, char *err, size_t errlen);
	/* connect - on the writer thread, before a batch when !s->ready */
	int (*connect)(struct archive_sink *s, char *err, size_t errlen);
	/* write - the first N items of ITEMS; *DONE = how many are written
	 * (durably when DURABLE); 0 when all, -1 with ERR otherwise */
	int (*write)(struct archive_sink *s, struct xm_archive_item **items,
	    size_t n, bool durable, size_t *done, char *err, size_t errlen);
	/* purge - drop records past retention and not held; count in *N;
	 * DRY: only count. 0 or -1 with ERR. NULL: not supported */
	int (*purge)(struct archive_sink *s, double now, bool dry,
	    long long *n, char *err, size_t errlen);
	/* search - records matching Q, oldest first, to FN; 0 or -1 with
	 * ERR. NULL: not searchable (command) */
	int (*search)(struct archive_sink *s, const struct xm_archive_query *q,
	    xm_archive_row_fn fn, void *arg, char *err, size_t errlen);
	void (*close)(struct archive_sink *s);
};

struct archive_sink {
	const struct xm_archive_sink_conf *conf;
	const struct xm_archive_conf *aconf;
	const struct archive_sink_ops *ops;
	const char *node;
	void *priv;             /* the implementation's state */
	bool readonly;          /* opened to search or verify: write nothing */
	bool ready;             /* connected / consumer running */

	/* queue: a ring of item pointers */
	pthread_mutex_t mu;
	pthread_cond_t cv, idle;
	struct xm_archive_item **ring;
	size_t cap, head;
	size_t len;             /* changed under mu with __atomic ops, so the
	                         * loop may read it unlocked (overflow check) */
	bool stop, busy;
	pthread_t thread;
	bool started;

	/* counters (under mu) */
	unsigned long long written, overflow, failures, lost, must_failed;
	char last_error[256];
	double last_error_at, last_purge, last_log;  /* writer thread */
	double last_overflow_log;                    /* submitting thread */
	unsigned long long logged_overflow;
	/* items written here and no longer referenced: freed by the thread
	 * that allocated them (xm_archive_submit), so the writer never frees
	 * into the event loop's malloc arena (under mu) */
	struct xm_archive_item *garbage;
};

extern const struct archive_sink_ops xm_archive_sqlite_ops;
extern const struct archive_sink_ops xm_archive_jsonl_ops;
extern const struct archive_sink_ops xm_archive_cmd_ops;
extern const struct archive_sink_ops xm_archive_pg_ops;

/* xm_archive_sink_open - a sink for K outside the daemon (the CLI):
 * opened, not connected, no thread; NULL with ERR */
struct archive_sink *xm_archive_sink_open(const struct xm_archive_conf *a,
    const struct xm_archive_sink_conf *k, bool readonly, char *err,
    size_t errlen);
void xm_archive_sink_close(struct archive_sink *s);

/* xm_archive_cli - `xmilter archive ...` (archive_cli.c); exit status */
int xm_archive_cli(int argc, char **argv);

#endif
