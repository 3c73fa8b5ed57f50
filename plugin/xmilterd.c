/*
 * xmilterd.c - the filter daemon: sockets, sessions, the chain, reload
 *
 * One libuv loop thread owns the listening sockets, every connection and
 * its protocol session (session.c), and the current chain. A FILTER
 * request becomes a task: its event is parsed and the fast filters run on
 * the loop; slow filters (and the quarantine store's write) run on libuv's
 * worker pool and come back as an after-work callback. An admin
 * connection may release quarantined items: the stored stanza goes to a
 * glue in a RELEASE frame (docs/QUARANTINE.md). Each task owns an
 * arena and a reference to the chain it started on, so SIGHUP can swap in
 * a new chain while old tasks finish on the old one. A connection that
 * breaks the protocol gets BYE and is closed; nothing it sends can stop
 * the daemon.
 *
 * Usage: xmilterd [-c CONF] [-o daemon.NAME=VALUE]... [-t]
 * (-o overrides a daemon or limits setting; -t checks the configuration
 * and exits)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "autoconf.h"
#include "archive.h"
#include "chain.h"
#include "config.h"
#include "event.h"
#include "proto.h"
#include "session.h"
#include "quarantine.h"
#include "state_pipe.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONF SYSCONFDIR "/xmilter/xmilter.yml"
#define READ_CHUNK 65536
#define MAX_PENDING_WRITE (4u * 1024 * 1024)

struct conn;

struct task {
	struct task *next, *prev;     /* the connection's async tasks */
	struct conn *conn;            /* NULL once the connection is gone */
	uint64_t id;
	struct xm_arena *arena;
	struct xm_chain *chain;
	struct xm_event *ev;
	struct xm_task t;
	struct xm_verdict v;
	bool slow_done;
	bool quarantine_failed;
	long long qid;                /* the quarantine item, once stored */
	double start;
	uv_work_t work;
	/* the compliance archive (issue 6) */
	const char *evtext;           /* the request's event, in the arena */
	size_t evlen;
	bool archive_done;            /* submitted (answer without again) */
	bool archive_failed;          /* must-archive failed: on_failure */
	bool archive_ok;              /* set by the writer's callback */
	bool archive_keep;            /* answered on timeout: freed later */
	double archive_deadline;
	struct task *anext, *aprev;   /* archive_waiting list */
	struct task *adone;           /* archive_done_list */
};

struct conn {
	struct conn *next, *prev;
	union {
		uv_stream_t stream;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} h;
	struct session *s;
	struct task *tasks;           /* waiting on the worker pool */
	size_t wpending;              /* bytes handed to uv_write */
	bool reading, closing;
	char *rbuf;
	unsigned long long n;         /* connection number, for logs */
};

struct write_req {
	uv_write_t req;
	struct conn *c;
	size_t len;
	char data[];
};

static uv_loop_t *loop;
static struct xm_chain *chain;          /* the current one */
static const char *conf_path;
static char **overrides;          /* -o daemon.NAME=VALUE, re-applied on reload */
static size_t noverrides;
static uv_pipe_t unix_listener;
static uv_tcp_t tcp_listener;
static bool have_unix, have_tcp, stopping;
static uv_signal_t sig_hup, sig_term, sig_int;
static uv_check_t flush_check;
static struct conn *conns;
static unsigned long long nconns;

static void conn_flush(struct conn *c);
static void task_answer(struct task *k);
static void task_queue(struct task *k);
static void task_wait(struct task *k);
static void state_done(void *arg);
static void task_fast_done(struct task *k, int rc);

/* ---- the quarantine store (docs/QUARANTINE.md) ---- */

static struct xm_qstore *qstore;        /* opened lazily, kept */
static pthread_mutex_t qstore_mu = PTHREAD_MUTEX_INITIALIZER;

/* qstore_get - the store CF names, opened on first use (any thread; the
 * caller holds a reference to CF's chain); NULL when it cannot be opened
 * (logged; the next call tries again) */
static struct xm_qstore *
qstore_get(const struct xm_config *cf)
{
	struct xm_qstore *q;
	char err[512];

	pthread_mutex_lock(&qstore_mu);
	if (qstore == NULL) {
		qstore = xm_qstore_open(cf, err, sizeof(err));
		if (qstore == NULL)
			log_warn("%s", err);
		else
			log_info("quarantine store: %s", xm_qstore_describe(qstore));
	}
	q = qstore;
	pthread_mutex_unlock(&qstore_mu);
	return q;
}

/* ---- the compliance archive (issue 6; archive.c does the work) ----
 *
 * After the verdict, task_answer hands the record to the archive. For
 * best-effort sinks that is all. When a must-archive sink selected it, the
 * verdict is held: the task waits on archive_waiting until a writer thread
 * calls archive_done_cb (record durable, or failed), which queues it on
 * archive_done_list and wakes the loop through archive_async; only then is
 * the verdict sent, so "delivered" implies "archived". archive_timer
 * enforces archive.timeout: a task still waiting gets archive.on_failure
 * at once and is freed when the writer is done with it.
 */
static struct xm_archive *archive;
static uv_async_t archive_async;
static uv_timer_t archive_timer;
static pthread_mutex_t archive_mu = PTHREAD_MUTEX_INITIALIZER;
static struct task *archive_done_list;  /* under archive_mu */
static bool archive_closing;             /* under archive_mu */
static struct task *archive_waiting;     /* loop thread only */
static unsigned long long archive_held_verdicts;
static void task_unlink(struct task *k);
static void task_free(struct task *k);

/* archive_done_cb - on a writer thread: the record is durable (or not) */
static void
archive_done_cb(void *arg, bool ok)
{
	struct task *k = arg;

	pthread_mutex_lock(&archive_mu);
	k->archive_ok = ok;
	k->adone = archive_done_list;
	archive_done_list = k;
	/* under the lock: the handle cannot be closed meanwhile */
	if (!archive_closing)
		uv_async_send(&archive_async);
	pthread_mutex_unlock(&archive_mu);
}

/* archive_unwait - take K off the waiting list */
static void
archive_unwait(struct task *k)
{
	if (k->aprev)
		k->aprev->anext = k->anext;
	else if (archive_waiting == k)
		archive_waiting = k->anext;
	if (k->anext)
		k->anext->aprev = k->aprev;
	k->anext = k->aprev = NULL;
}

/* archive_async_cb - on the loop: answer the tasks whose records are done */
static void
archive_async_cb(uv_async_t *h)
{
	struct task *k, *next;

	pthread_mutex_lock(&archive_mu);
	k = archive_done_list;
	archive_done_list = NULL;
	pthread_mutex_unlock(&archive_mu);
	for (; k != NULL; k = next) {
		next = k->adone;
		archive_unwait(k);
		if (k->archive_keep) {  /* answered already, on timeout */
			if (k->archive_ok)
				log_warn("archive: id=%llu written after its "
				    "timeout (the stanza got on_failure)",
				    (unsigned long long)k->id);
			task_unlink(k);
			task_free(k);
			continue;
		}
		k->archive_failed = !k->archive_ok;
		task_unlink(k);
		task_answer(k);
	}
}

/* archive_timer_cb - apply on_failure to verdicts held past the timeout */
static void
archive_timer_cb(uv_timer_t *h)
{
	double now = xm_monotonic();
	struct task *k;

	for (k = archive_waiting; k != NULL; k = k->anext)
		if (!k->archive_keep && now >= k->archive_deadline) {
			k->archive_failed = true;
			k->archive_keep = true;
			log_warn("archive: id=%llu not written within %.3gs",
			    (unsigned long long)k->id,
			    xm_archive_config(archive)->timeout);
			task_answer(k);  /* sends, keeps the task */
		}
}

/* archive_hold - submit K's record; true when its verdict must wait */
static bool
archive_hold(struct task *k)
{
	int rc;

	k->archive_done = true;
	rc = xm_archive_submit(archive, k->ev, k->evtext ? k->evtext : "",
	    k->evtext ? k->evlen : 0, &k->v, (unsigned long long)k->id,
	    k->t.now, archive_done_cb, k);
	if (rc < 0) {
		k->archive_failed = true;
		return false;
	}
	if (rc == 0)
		return false;
	archive_held_verdicts++;
	k->archive_deadline = xm_monotonic() +
	    xm_archive_config(archive)->timeout;
	k->anext = archive_waiting;
	if (archive_waiting)
		archive_waiting->aprev = k;
	archive_waiting = k;
	if (k->conn != NULL) {  /* so a closing connection orphans it */
		k->next = k->conn->tasks;
		if (k->conn->tasks)
			k->conn->tasks->prev = k;
		k->conn->tasks = k;
	}
	return true;
}

/* archive_failure - the verdict becomes archive.on_failure */
static void
archive_failure(struct task *k)
{
	const struct xm_archive_conf *ac = xm_archive_config(archive);

	log_warn("archive: id=%llu could not be archived: %s", (unsigned long
	    long)k->id, ac->on_failure == XM_ACCEPT ? "delivered anyway "
	    "(on_failure: accept)" : ac->on_failure == XM_DISCARD ?
	    "discarded" : "rejected");
	if (ac->on_failure == XM_ACCEPT)
		return;
	k->v.action = (enum xm_action)ac->on_failure;
	k->v.condition = "internal-server-error";
	k->v.text = ac->failure_text;
	k->v.reason = "XM_ARCHIVE_FAILED";
	k->v.stanza = NULL;
}

/* the chain whose configuration the archive runs with: a reload swaps the
 * filters, never the sinks (archive settings take effect on restart) */
static struct xm_chain *archive_chain;

/* archive_start - open the sinks and the loop's handles (start-up) */
static void
archive_start(const struct xm_config *cf)
{
	char err[1024];

	archive = xm_archive_open(cf, err, sizeof(err));
	if (archive == NULL) {
		if (err[0] != '\0')
			fatalx("%s", err);
		return;
	}
	archive_chain = chain;  /* CF is its config: keep it alive */
	xm_chain_ref(archive_chain);
	uv_async_init(loop, &archive_async, archive_async_cb);
	uv_timer_init(loop, &archive_timer);
	uv_timer_start(&archive_timer, archive_timer_cb, 50, 50);
	uv_unref((uv_handle_t *)&archive_timer);
	log_info("archive: %zu sink%s, node %s", cf->archive.nsinks,
	    cf->archive.nsinks == 1 ? "" : "s", xm_archive_node(archive));
}

/* archive_stop_handles - on SIGTERM: the loop may end */
static void
archive_stop_handles(void)
{
	if (archive == NULL)
		return;
	pthread_mutex_lock(&archive_mu);
	archive_closing = true;
	pthread_mutex_unlock(&archive_mu);
	uv_close((uv_handle_t *)&archive_async, NULL);
	uv_close((uv_handle_t *)&archive_timer, NULL);
}

/* archive_finish - after the loop: drain the sinks, free held tasks */
static void
archive_finish(void)
{
	struct task *k, *next;

	if (archive == NULL)
		return;
	pthread_mutex_lock(&archive_mu);
	archive_closing = true;
	pthread_mutex_unlock(&archive_mu);
	xm_archive_close(archive);
	archive = NULL;
	for (k = archive_waiting; k != NULL; k = next) {
		next = k->anext;
		task_free(k);
	}
	archive_waiting = NULL;
	xm_chain_unref(archive_chain);
	archive_chain = NULL;
}

/* ---- tasks ---- */

/* task_unlink - take K off its connection's list */
static void
task_unlink(struct task *k)
{
	if (k->conn == NULL)
		return;
	if (k->prev)
		k->prev->next = k->next;
	else
		k->conn->tasks = k->next;
	if (k->next)
		k->next->prev = k->prev;
	k->next = k->prev = NULL;
}

/* task_free - release the arena and the chain reference */
static void
task_free(struct task *k)
{
	xm_arena_free(k->arena);
	xm_chain_unref(k->chain);
	free(k);
}

/* quarantine_store - keep the event in the quarantine store (worker):
 * durable before the verdict goes out; -1 makes the verdict a reject */
static int
quarantine_store(struct task *k)
{
	const struct xm_config *cf = xm_chain_config(k->chain);
	struct xm_qstore *q = qstore_get(cf);
	struct xm_qitem it = { 0 };
	struct xm_buf syms = { 0 };
	char err[512];
	size_t i;
	int rc;

	if (q == NULL)
		return -1;
	for (i = 0; i < k->v.nsymbols; i++)
		xm_buf_printf(&syms, "%s%s %.2f", i ? "; " : "",
		    k->v.symbols[i].name, k->v.symbols[i].score);
	xm_buf_append(&syms, "", 1);
	it.time = k->t.now;
	it.expires = k->t.now + cf->quarantine.expiry;
	it.score = k->v.score;
	it.reason = (char *)(k->v.reason ? k->v.reason : "");
	it.symbols = syms.data;
	it.sender = (char *)(k->ev->from ? k->ev->from : "");
	it.recipient = (char *)(k->ev->to ? k->ev->to : "");
	it.event = (char *)xm_event_format(k->arena, k->ev, NULL);
	rc = xm_qstore_add(q, &it, &k->qid, err, sizeof(err));
	xm_buf_free(&syms);
	if (rc < 0) {
		log_warn("quarantine: request %llu: %s", (unsigned long long)k->id,
		    err);
		return -1;
	}
	log_info("quarantined id=%llu as item %lld", (unsigned long long)k->id,
	    k->qid);
	return 0;
}

/* work_cb - on a worker: slow filters, then the verdict, then the store */
static void
work_cb(uv_work_t *w)
{
	struct task *k = w->data;

	if (!k->slow_done) {
		xm_chain_run_stage(k->chain, &k->t, true);
		xm_chain_finish(k->chain, &k->t, &k->v);
		k->slow_done = true;
	}
	if (k->v.action == XM_QUARANTINE && quarantine_store(k) < 0)
		k->quarantine_failed = true;
}

/* after_work_cb - back on the loop: answer, unless nobody waits */
static void
after_work_cb(uv_work_t *w, int status)
{
	struct task *k = w->data;

	if (k->conn == NULL || status == UV_ECANCELED) {
		task_unlink(k);
		task_free(k);
		return;
	}
	task_unlink(k);
	task_answer(k);
}

/* quarantine_verdict_lines - the item id and the notices the glue sends
 * (quarantine.notice) appended to a quarantine verdict */
static void
quarantine_verdict_lines(struct task *k, struct xm_buf *body)
{
	const struct xm_quarantine_conf *qc =
	    &xm_chain_config(k->chain)->quarantine;
	const char *from = k->ev->from ? k->ev->from : "";
	const char *to = k->ev->to ? k->ev->to : "";
	char *text;

	xm_buf_printf(body, "quarantine-id=%lld\n", k->qid);
	if ((qc->notice == 1 || qc->notice == 3) && *to) {
		text = xm_quarantine_notice(qc->notice_text, k->qid, from, to,
		    k->v.reason);
		xm_buf_printf(body, "notice=%s %s\n", proto_kv_clean(k->arena,
		    xm_jid_bare(k->arena, to)), text);
		free(text);
	}
	if ((qc->notice == 2 || qc->notice == 3) && qc->notice_jid &&
	    *qc->notice_jid) {
		text = xm_quarantine_notice(qc->admin_notice_text, k->qid, from,
		    to, k->v.reason);
		xm_buf_printf(body, "notice=%s %s\n", proto_kv_clean(k->arena,
		    qc->notice_jid), text);
		free(text);
	}
}

/* task_answer - send the verdict, log it, free the task */
static void
task_answer(struct task *k)
{
	const struct xm_config *cf = xm_chain_config(k->chain);
	/* the loop's one verdict buffer, kept (task_answer runs on the loop
	 * only): a fresh one regrew from 256 bytes for every modified
	 * stanza, a realloc and a copy each time */
	static struct xm_buf body;
	double ms = (xm_monotonic() - k->start) * 1000;

	if (k->quarantine_failed) {
		/* never drop what could not be kept: refuse it instead */
		k->v.action = XM_REJECT;
		k->v.condition = "internal-server-error";
		k->v.text = "The server's content filter could not hold this "
		    "message; please try again later.";
		k->v.reason = "XM_QUARANTINE_FAILED";
	}
	/* issue 6: archive the verdict; must-archive answers when durable */
	if (archive != NULL && !k->archive_done && archive_hold(k))
		return;
	if (k->archive_failed)
		archive_failure(k);
	proto_format_verdict(&body, k->arena, &k->v);
	if (k->v.action == XM_QUARANTINE && k->qid > 0)
		quarantine_verdict_lines(k, &body);
	/* queued only: on_read and flush_cb write once per loop turn */
	if (body.len > 0 && k->conn != NULL)
		session_verdict(k->conn->s, k->id, body.data, body.len);
	if (cf->daemon.log_verdicts && log_enabled(XM_LOG_INFO))
		log_info("%s", xm_verdict_logline(k->arena, k->ev, &k->v,
		    (unsigned long long)k->id, ms));
	if (body.cap > 65536)
		xm_buf_free(&body);   /* a big stanza's: not kept */
	else
		xm_buf_reset(&body);
	if (!k->archive_keep)  /* issue 6: a timed-out archive write */
		task_free(k);
}

/* on_filter - a FILTER request: parse, fast stage, maybe the pool */
static void
on_filter(void *ctx, struct session *s, uint64_t id, const char *event,
    size_t len)
{
	struct conn *c = ctx;
	struct task *k = xm_calloc(1, sizeof(*k));
	char err[512];
	int rc;

	k->id = id;
	k->conn = c;
	k->start = xm_monotonic();
	k->arena = xm_arena_new();
	k->chain = chain;
	xm_chain_ref(chain);
	if (archive != NULL) {  /* issue 6: the event text as received */
		k->evtext = event;  /* borrowed while the verdict is synchronous */
		k->evlen = len;
	}
	if (xm_chain_event(chain, k->arena, event, len, &k->ev, err,
	    sizeof(err)) < 0) {
		log_warn("conn %llu: request %llu: malformed event: %s", c->n,
		    (unsigned long long)id, log_escape(k->arena, err, 300));
		k->ev = NULL;
		xm_verdict_malformed(chain, k->arena, err, &k->v);
		task_answer(k);
		return;
	}
	xm_task_init(&k->t, chain, k->arena, k->ev,
	    k->ev->time >= 0 ? k->ev->time : xm_now());
	rc = xm_chain_start(chain, &k->t);
	if (rc != XM_RUN_WAIT && (rc == XM_RUN_FINAL ||
	    !xm_chain_task_slow(chain, &k->t))) {
		xm_chain_finish(chain, &k->t, &k->v);
		k->slow_done = true;
		if (k->v.action != XM_QUARANTINE) {
			task_answer(k);
			return;
		}
	}
	if (archive != NULL)  /* issue 6: it outlives the request's buffer */
		k->evtext = xm_arena_strndup(k->arena, event, len);
	k->next = c->tasks;
	if (c->tasks)
		c->tasks->prev = k;
	c->tasks = k;
	if (rc == XM_RUN_WAIT)
		task_wait(k);
	else
		task_queue(k);
}

/* task_queue - K goes to the worker pool (slow filters, or the
 * quarantine store) */
static void
task_queue(struct task *k)
{
	k->work.data = k;
	uv_queue_work(loop, &k->work, work_cb, after_work_cb);
}

/* task_wait - K's filter waits for state operations: submit them (Redis,
 * pipelined: state_done follows); those that run at once (memory) let the
 * chain go on here */
static void
task_wait(struct task *k)
{
	int rc;

	while (xm_state_submit(k->t.wait_ops, k->t.wait_n, k->t.now,
	    state_done, k))
		if ((rc = xm_chain_resume(k->chain, &k->t)) != XM_RUN_WAIT) {
			task_fast_done(k, rc);
			return;
		}
}

/* state_done - K's state operations have their results: go on */
static void
state_done(void *arg)
{
	struct task *k = arg;
	int rc = xm_chain_resume(k->chain, &k->t);

	if (rc == XM_RUN_WAIT)
		task_wait(k);
	else
		task_fast_done(k, rc);
}

/* task_fast_done - a task that waited has finished its fast stage (RC):
 * answer it, or queue its slow stage */
static void
task_fast_done(struct task *k, int rc)
{
	if (k->conn == NULL) {  /* nobody waits for the verdict */
		task_free(k);
		return;
	}
	if (rc == XM_RUN_FINAL || !xm_chain_task_slow(k->chain, &k->t)) {
		xm_chain_finish(k->chain, &k->t, &k->v);
		k->slow_done = true;
		if (k->v.action != XM_QUARANTINE) {
			task_unlink(k);
			task_answer(k);
			return;
		}
	}
	task_queue(k);
}

/* on_cancel - the glue stopped waiting: its verdict will be dropped */
static void
on_cancel(void *ctx, struct session *s, uint64_t id)
{
	struct conn *c = ctx;
	struct task *k;

	for (k = c->tasks; k != NULL; k = k->next)
		if (k->id == id) {
			log_debug("conn %llu: request %llu cancelled", c->n,
			    (unsigned long long)id);
			uv_cancel((uv_req_t *)&k->work);  /* may be too late: fine */
			return;
		}
}

/* on_hello - the daemon's side of HELLO */
static void
on_hello(void *ctx, struct session *s, struct xm_buf *reply, bool health)
{
	struct conn *c = ctx;

	xm_chain_hello(chain, reply, PACKAGE_VERSION);
	if (archive != NULL)  /* issue 6: the sinks' counters */
		xm_archive_health(archive, reply);
	if (xm_state_remote()) {  /* the pipelined connection to Redis */
		struct xm_state_pipe_stats ps;

		xm_state_pipe_stats(&ps);
		xm_buf_printf(reply, "state-redis-batches=%llu\n"
		    "state-redis-writes=%llu\nstate-redis-reads=%llu\n",
		    ps.batches, ps.writes, ps.reads);
	}
	if (!health && log_enabled(XM_LOG_INFO)) {
		struct xm_arena *a = xm_arena_new();

		log_info("conn %llu: HELLO from %s", c->n,
		    log_escape(a, session_server(s), 100));
		xm_arena_free(a);
	}
}

/* ---- release of quarantined items (docs/QUARANTINE.md) ----
 *
 * An admin connection (HELLO role=admin) sends RELEASE ID. On a worker
 * the item is claimed (held -> releasing) and read; back on the loop its
 * event goes to a glue that negotiated capability=release as RELEASE ID.
 * The glue's RELEASED ID result=ok marks it released (worker); the admin
 * gets RELEASED ID with the outcome. A glue that cannot deliver (result
 * failed) or no glue at all puts the item back to held; a glue that goes
 * away before it answered leaves it releasing, for the admin to judge.
 */
enum release_step { R_CLAIM, R_WAIT, R_FINISH, R_UNCLAIM };

struct release {
	struct release *next;
	uint64_t id;
	struct conn *admin;           /* NULL once gone */
	struct conn *glue;            /* set while waiting for RELEASED */
	enum release_step step;
	int rc;
	char *event;
	char glue_name[128];
	char err[512];
	char why[300];                /* the glue's reason on result=failed */
	struct xm_chain *chain;       /* a reference: the store's settings */
	uv_work_t work;
};

static struct release *releases;

static void release_queue(struct release *r, enum release_step step);

/* release_free - unlink and free R */
static void
release_free(struct release *r)
{
	struct release **pp;

	for (pp = &releases; *pp != NULL; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	xm_chain_unref(r->chain);
	free(r->event);
	free(r);
}

/* release_answer - RELEASED to the admin, if it is still there */
static void
release_answer(struct release *r, const char *result, const char *reason)
{
	struct xm_buf b = { 0 };
	struct xm_arena *a = xm_arena_new();

	xm_buf_printf(&b, "result=%s\n", result);
	if (reason && *reason)
		xm_buf_printf(&b, "reason=%s\n", proto_kv_clean(a, reason));
	if (r->glue_name[0])
		xm_buf_printf(&b, "glue=%s\n", proto_kv_clean(a, r->glue_name));
	if (r->admin != NULL)
		session_release_answer(r->admin->s, r->id, b.data, b.len);
	log_info("release item=%llu result=%s%s%s", (unsigned long long)r->id,
	    result, reason && *reason ? " reason=" : "",
	    reason && *reason ? log_escape(a, reason, 300) : "");
	xm_buf_free(&b);
	xm_arena_free(a);
}

/* release_glue - a connected glue that can take a RELEASE, or NULL */
static struct conn *
release_glue(void)
{
	struct conn *c;

	for (c = conns; c != NULL; c = c->next)
		if (!c->closing && session_can_release(c->s))
			return c;
	return NULL;
}

/* release_work - the store's part of the current step (worker) */
static void
release_work(uv_work_t *w)
{
	struct release *r = w->data;
	struct xm_qstore *q = qstore_get(xm_chain_config(r->chain));
	struct xm_qitem it;

	if (q == NULL) {
		r->rc = -1;
		snprintf(r->err, sizeof(r->err), "the quarantine store cannot "
		    "be opened (see the daemon's log)");
		return;
	}
	switch (r->step) {
	case R_CLAIM:
		r->rc = xm_qstore_claim(q, (long long)r->id, xm_now(), r->err,
		    sizeof(r->err));
		if (r->rc != XM_Q_OK)
			return;
		r->rc = xm_qstore_get(q, (long long)r->id, true, &it, r->err,
		    sizeof(r->err));
		if (r->rc == XM_Q_OK) {
			r->event = it.event;
			it.event = NULL;
			xm_qitem_clear(&it);
		} else  /* claimed but unreadable: give it back */
			xm_qstore_unclaim(q, (long long)r->id, r->err,
			    sizeof(r->err));
		return;
	case R_FINISH:
		r->rc = xm_qstore_finish(q, (long long)r->id, xm_now(), r->err,
		    sizeof(r->err));
		return;
	case R_UNCLAIM:
		r->rc = xm_qstore_unclaim(q, (long long)r->id, r->err,
		    sizeof(r->err));
		return;
	case R_WAIT:
		return;
	}
}

/* release_done - the next step, back on the loop */
static void
release_done(uv_work_t *w, int status)
{
	struct release *r = w->data;
	struct conn *g;

	switch (r->step) {
	case R_CLAIM:
		if (r->rc != XM_Q_OK) {
			release_answer(r, r->rc == XM_Q_REFUSED ? "refused" :
			    "failed", r->err);
			release_free(r);
			return;
		}
		if ((g = release_glue()) == NULL) {
			snprintf(r->why, sizeof(r->why), "no glue with the release "
			    "capability is connected");
			release_queue(r, R_UNCLAIM);
			return;
		}
		if (!session_release(g->s, r->id, r->event, strlen(r->event))) {
			snprintf(r->why, sizeof(r->why), "the glue cannot take it "
			    "(%zu bytes, over the connection's max-frame)",
			    strlen(r->event));
			release_queue(r, R_UNCLAIM);
			return;
		}
		snprintf(r->glue_name, sizeof(r->glue_name), "%s",
		    session_server(g->s));
		r->glue = g;
		r->step = R_WAIT;
		conn_flush(g);
		log_info("release item=%llu sent to conn %llu", (unsigned long
		    long)r->id, g->n);
		return;
	case R_FINISH:
		if (r->rc != XM_Q_OK)
			release_answer(r, "unknown", r->err);
		else
			release_answer(r, "ok", NULL);
		release_free(r);
		return;
	case R_UNCLAIM:
		release_answer(r, "failed", r->why);
		release_free(r);
		return;
	case R_WAIT:
		return;
	}
}

/* release_queue - run STEP of R on the worker pool */
static void
release_queue(struct release *r, enum release_step step)
{
	r->step = step;
	r->glue = NULL;
	r->work.data = r;
	uv_queue_work(loop, &r->work, release_work, release_done);
}

/* on_release - an admin asks for item ID */
static void
on_release(void *ctx, struct session *s, uint64_t id)
{
	struct release *r = xm_calloc(1, sizeof(*r));

	r->id = id;
	r->admin = ctx;
	r->chain = chain;
	xm_chain_ref(chain);
	r->next = releases;
	releases = r;
	/* claimed first even when no glue is there (it is put back then), so
	 * the answer about an item that cannot be released is always the
	 * store's */
	release_queue(r, R_CLAIM);
}

/* on_released - a glue's answer to RELEASE ID */
static void
on_released(void *ctx, struct session *s, uint64_t id, const char *body,
    size_t len)
{
	struct conn *c = ctx;
	struct release *r;
	struct xm_arena *a;
	struct xm_field *kv;
	const char *rest, *result, *reason;
	size_t n, restlen;
	char err[128];

	for (r = releases; r != NULL; r = r->next)
		if (r->glue == c && r->id == id && r->step == R_WAIT)
			break;
	if (r == NULL)
		return;  /* the session checked it was sent: cannot happen */
	a = xm_arena_new();
	if (proto_parse_kv(a, body, len, 16, &kv, &n, &rest, &restlen, err,
	    sizeof(err)) < 0) {
		kv = NULL;
		n = 0;
	}
	result = proto_kv_get(kv, n, "result");
	reason = proto_kv_get(kv, n, "reason");
	if (result != NULL && strcmp(result, "ok") == 0)
		release_queue(r, R_FINISH);
	else if (result != NULL && strcmp(result, "failed") == 0) {
		/* the glue says it delivered nothing: the item may go back */
		snprintf(r->why, sizeof(r->why), "glue: %s",
		    reason ? reason : "delivery failed");
		release_queue(r, R_UNCLAIM);
	} else {
		r->glue = NULL;
		snprintf(r->why, sizeof(r->why), "the glue answered without a "
		    "known result; item %llu stays releasing",
		    (unsigned long long)id);
		release_answer(r, "unknown", r->why);
		release_free(r);
	}
	xm_arena_free(a);
}

/* release_conn_gone - C closed: forget it as admin; as glue, answer */
static void
release_conn_gone(struct conn *c)
{
	struct release *r, *next;
	char why[160];

	for (r = releases; r != NULL; r = next) {
		next = r->next;
		if (r->admin == c)
			r->admin = NULL;
		if (r->glue == c && r->step == R_WAIT) {
			r->glue = NULL;
			snprintf(why, sizeof(why), "the glue's connection closed "
			    "before it confirmed; item %llu stays releasing",
			    (unsigned long long)r->id);
			release_answer(r, "unknown", why);
			release_free(r);
		}
	}
}

/* ---- purge of expired items ---- */

static uv_timer_t purge_timer;
static uv_work_t purge_req;
static struct xm_chain *purge_chain;    /* referenced while a purge runs */
static bool purge_running;
static long long purged;

static void purge_arm(void);

/* purge_work - delete what expired (worker) */
static void
purge_work(uv_work_t *w)
{
	struct xm_qstore *q = qstore_get(xm_chain_config(purge_chain));
	char err[512];

	purged = 0;
	if (q != NULL && (purged = xm_qstore_purge(q, xm_now(), err,
	    sizeof(err))) < 0)
		log_warn("quarantine purge: %s", err);
}

/* purge_done - log, and wait for the next interval */
static void
purge_done(uv_work_t *w, int status)
{
	purge_running = false;
	xm_chain_unref(purge_chain);
	purge_chain = NULL;
	if (purged > 0)
		log_info("quarantine: purged %lld expired item%s", purged,
		    purged == 1 ? "" : "s");
	if (!stopping)
		purge_arm();
}

/* on_purge_timer - start a purge on the worker pool */
static void
on_purge_timer(uv_timer_t *t)
{
	if (purge_running || stopping)
		return;
	purge_running = true;
	purge_chain = chain;
	xm_chain_ref(chain);
	uv_queue_work(loop, &purge_req, purge_work, purge_done);
}

/* purge_arm - next purge after the configured interval */
static void
purge_arm(void)
{
	double iv = xm_chain_config(chain)->quarantine.purge_interval;

	uv_timer_start(&purge_timer, on_purge_timer, (uint64_t)(iv * 1000),
	    0);
}

static const struct session_ops daemon_session_ops = {
	on_filter, on_cancel, on_hello, on_release, on_released,
};

/* ---- connections ---- */

/* conn_closed - the handle is closed: orphan tasks, free */
static void
conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct task *k, *next;

	for (k = c->tasks; k != NULL; k = next) {
		next = k->next;
		k->conn = NULL;
		k->next = k->prev = NULL;
	}
	release_conn_gone(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	session_free(c->s);
	free(c->rbuf);
	free(c);
}

/* conn_close - close once */
static void
conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	log_debug("conn %llu: closed", c->n);
	uv_close((uv_handle_t *)&c->h.stream, conn_closed);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* alloc_cb - the connection's read buffer */
static void
alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	buf->base = c->rbuf;
	buf->len = READ_CHUNK;
}

/* write_cb - a write finished: maybe resume reading, maybe close */
static void
write_cb(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct conn *c = w->c;

	c->wpending -= w->len;
	free(w);
	if (c->closing)
		return;
	if (status < 0) {
		log_info("conn %llu: write failed: %s", c->n, uv_strerror(status));
		conn_close(c);
		return;
	}
	if (session_closing(c->s) && c->wpending == 0) {
		conn_close(c);
		return;
	}
	if (!c->reading && c->wpending < MAX_PENDING_WRITE / 2) {
		c->reading = true;
		uv_read_start(&c->h.stream, alloc_cb, on_read);
	}
}

/* conn_flush - hand the session's output to libuv */
static void
conn_flush(struct conn *c)
{
	struct xm_buf *out = session_output(c->s);
	struct write_req *w;
	uv_buf_t b;
	int rc;

	if (c->closing)
		return;
	if (out->len == 0) {
		if (session_closing(c->s) && c->wpending == 0)
			conn_close(c);
		return;
	}
	w = xm_malloc(sizeof(*w) + out->len);
	w->c = c;
	w->len = out->len;
	memcpy(w->data, out->data, out->len);
	xm_buf_reset(out);
	b = uv_buf_init(w->data, (unsigned)w->len);
	c->wpending += w->len;
	if ((rc = uv_write(&w->req, &c->h.stream, &b, 1, write_cb)) < 0) {
		c->wpending -= w->len;
		free(w);
		log_info("conn %llu: write: %s", c->n, uv_strerror(rc));
		conn_close(c);
		return;
	}
	if (c->reading && c->wpending >= MAX_PENDING_WRITE) {
		c->reading = false;  /* the peer does not read: stop reading too */
		uv_read_stop(&c->h.stream);
	}
}

/* on_read - bytes in: through the session, output out */
static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = st->data;

	if (n < 0) {
		if (n != UV_EOF)
			log_info("conn %llu: read: %s", c->n, uv_strerror((int)n));
		conn_close(c);
		return;
	}
	if (n == 0)
		return;
	if (session_feed(c->s, buf->base, (size_t)n) < 0) {
		c->reading = false;
		uv_read_stop(st);
		if (session_bye_code(c->s) >= 400)
			log_info("conn %llu: protocol error (BYE %d), closing", c->n,
			    session_bye_code(c->s));
	}
	conn_flush(c);
}

/* on_connection - accept a client */
static void
on_connection(uv_stream_t *server, int status)
{
	const struct xm_config *cf = xm_chain_config(chain);
	struct session_limits lim;
	struct conn *c;
	int rc;

	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		return;
	}
	c = xm_calloc(1, sizeof(*c));
	if (server == (uv_stream_t *)&unix_listener)
		uv_pipe_init(loop, &c->h.pipe, 0);
	else
		uv_tcp_init(loop, &c->h.tcp);
	c->h.stream.data = c;
	if ((rc = uv_accept(server, &c->h.stream)) < 0) {
		log_warn("accept: %s", uv_strerror(rc));
		c->closing = true;
		uv_close((uv_handle_t *)&c->h.stream, (uv_close_cb)free);
		return;
	}
	lim.max_frame = (size_t)cf->daemon.max_frame;
	lim.max_inflight = (unsigned)cf->daemon.max_inflight;
	lim.max_buffered = MAX_PENDING_WRITE;
	c->s = session_new(&daemon_session_ops, c, &lim);
	c->rbuf = xm_malloc(READ_CHUNK);
	c->n = ++nconns;
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	if (stopping) {
		session_bye(c->s, PROTO_BYE_SHUTDOWN, "shutting down");
		conn_flush(c);
		return;
	}
	c->reading = true;
	uv_read_start(&c->h.stream, alloc_cb, on_read);
	log_debug("conn %llu: accepted", c->n);
}

/* flush_cb - after each loop turn's I/O: send what worker results queued,
 * one write per connection however many verdicts it holds */
static void
flush_cb(uv_check_t *h)
{
	struct conn *c, *next;

	for (c = conns; c != NULL; c = next) {
		next = c->next;
		if (session_output(c->s)->len > 0)
			conn_flush(c);
	}
}

/* ---- listening ---- */

/* listen_unix - bind the Unix socket, replacing a stale one */
static void
listen_unix(const struct xm_config *cf)
{
	const char *path = cf->daemon.socket;
	struct stat sb;
	int rc, fd;

	if (path == NULL || *path == '\0')
		return;
	if (lstat(path, &sb) == 0) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (!S_ISSOCK(sb.st_mode))
			fatalx("%s exists and is not a socket", path);
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			fatalx("%s: another xmilterd is listening there", path);
		if (fd >= 0)
			close(fd);
		unlink(path);
	}
	uv_pipe_init(loop, &unix_listener, 0);
	if ((rc = uv_pipe_bind(&unix_listener, path)) < 0)
		fatalx("cannot bind %s: %s", path, uv_strerror(rc));
	if (chmod(path, (mode_t)cf->daemon.socket_mode) < 0)
		fatalx("chmod %s: %s", path, strerror(errno));
	if ((cf->daemon.socket_group && *cf->daemon.socket_group) ||
	    (cf->daemon.socket_owner && *cf->daemon.socket_owner)) {
		uid_t uid = (uid_t)-1;
		gid_t gid = (gid_t)-1;

		if (*cf->daemon.socket_owner) {
			struct passwd *pw = getpwnam(cf->daemon.socket_owner);

			if (pw == NULL)
				fatalx("socket_owner %s: no such user",
				    cf->daemon.socket_owner);
			uid = pw->pw_uid;
		}
		if (*cf->daemon.socket_group) {
			struct group *g = getgrnam(cf->daemon.socket_group);

			if (g == NULL)
				fatalx("socket_group %s: no such group",
				    cf->daemon.socket_group);
			gid = g->gr_gid;
		}
		if (chown(path, uid, gid) < 0)
			fatalx("chown %s: %s", path, strerror(errno));
	}
	if ((rc = uv_listen((uv_stream_t *)&unix_listener, 128, on_connection)) < 0)
		fatalx("listen %s: %s", path, uv_strerror(rc));
	have_unix = true;
	log_info("listening on %s", path);
}

/* listen_tcp - the optional loopback TCP listener */
static void
listen_tcp(const struct xm_config *cf)
{
	const char *spec = cf->daemon.listen_tcp;
	struct sockaddr_in sin;
	long long port;
	char host[64];
	const char *colon;
	int rc;

	if (spec == NULL || *spec == '\0')
		return;
	colon = strrchr(spec, ':');
	if (colon == NULL || (size_t)(colon - spec) >= sizeof(host) ||
	    xm_parse_ll(colon + 1, 1, 65535, &port) < 0)
		fatalx("listen_tcp: want HOST:PORT, got %s", spec);
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (uv_ip4_addr(host, (int)port, &sin) < 0 ||
	    (ntohl(sin.sin_addr.s_addr) >> 24) != 127)
		fatalx("listen_tcp: %s is not a loopback IPv4 address", host);
	uv_tcp_init(loop, &tcp_listener);
	if ((rc = uv_tcp_bind(&tcp_listener, (struct sockaddr *)&sin, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&tcp_listener, 128, on_connection)) < 0)
		fatalx("listen_tcp %s: %s", spec, uv_strerror(rc));
	have_tcp = true;
	log_info("listening on tcp %s", spec);
}

/* ---- signals ---- */

/* load - config and chain from PATH, or NULL with ERR */
static struct xm_chain *
load(const char *path, char *err, size_t errlen)
{
	struct xm_config *cf = xm_config_load(path, err, errlen);
	size_t i;

	if (cf == NULL)
		return NULL;
	for (i = 0; i < noverrides; i++)
		if (xm_config_override(cf, overrides[i], err, errlen) < 0) {
			xm_config_free(cf);
			return NULL;
		}
	return xm_chain_new(cf, err, errlen);
}

/*
 * Reload: the new configuration is read and its filters built (rules
 * compiled) on a worker thread, so the loop keeps answering meanwhile;
 * the swap happens back on the loop. A SIGHUP during a reload is
 * remembered and starts another one when this one ends.
 */
static struct {
	uv_work_t work;
	bool running, again;
	struct xm_chain *chain;
	char err[1024];
} reload;

/* reload_work - on a worker: load and build */
static void
reload_work(uv_work_t *w)
{
	reload.chain = load(conf_path, reload.err, sizeof(reload.err));
}

static void on_hup(uv_signal_t *h, int sig);

/* reload_done - on the loop: swap if the new chain is good */
static void
reload_done(uv_work_t *w, int status)
{
	char err[1024];

	reload.running = false;
	if (reload.chain == NULL) {
		log_err("reload failed, keeping the running configuration: %s",
		    reload.err);
	} else if (stopping) {
		xm_chain_unref(reload.chain);
	} else {
		if (xm_config_reload_ok(xm_chain_config(chain),
		    xm_chain_config(reload.chain), err, sizeof(err)) < 0)
			log_warn("reload: %s (the rest of the new configuration "
			    "is in effect)", err);
		xm_chain_unref(chain);  /* tasks still running hold their own */
		chain = reload.chain;
		xm_log_level = (enum xm_log_level)
		    xm_chain_config(chain)->daemon.log_level;
		log_info("reloaded");
	}
	reload.chain = NULL;
	if (reload.again && !stopping) {
		reload.again = false;
		on_hup(NULL, SIGHUP);
	}
}

/* on_hup - start a reload (or queue one behind the running one) */
static void
on_hup(uv_signal_t *h, int sig)
{
	if (reload.running) {
		reload.again = true;
		return;
	}
	log_info("SIGHUP: reloading %s", conf_path ? conf_path : "defaults");
	reload.running = true;
	uv_queue_work(loop, &reload.work, reload_work, reload_done);
}

/* on_term - stop: no new connections, BYE 503 to everyone, let writes end */
static void
on_term(uv_signal_t *h, int sig)
{
	struct conn *c;

	if (stopping)
		return;
	stopping = true;
	log_info("signal %d: shutting down", sig);
	if (have_unix) {
		unlink(xm_chain_config(chain)->daemon.socket);
		uv_close((uv_handle_t *)&unix_listener, NULL);
	}
	if (have_tcp)
		uv_close((uv_handle_t *)&tcp_listener, NULL);
	for (c = conns; c != NULL; c = c->next) {
		session_bye(c->s, PROTO_BYE_SHUTDOWN, "shutting down");
		conn_flush(c);
	}
	uv_close((uv_handle_t *)&flush_check, NULL);
	uv_close((uv_handle_t *)&purge_timer, NULL);
	uv_close((uv_handle_t *)&sig_hup, NULL);
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_int, NULL);
	archive_stop_handles();  /* issue 6 */
	xm_state_pipe_stop();    /* Redis: what is in flight finishes */
}

/* write_pidfile - our pid for init scripts */
static void
write_pidfile(const char *path)
{
	FILE *fp;

	if (path == NULL || *path == '\0')
		return;
	if ((fp = fopen(path, "w")) == NULL)
		fatalx("pidfile %s: %s", path, strerror(errno));
	fprintf(fp, "%d\n", (int)getpid());
	fclose(fp);
}

int
main(int argc, char **argv)
{
	const struct xm_config *cf;
	char err[1024], workers[16];
	bool test_only = false;
	int c;

	xm_log_prog = "xmilterd";
	conf_path = access(DEFAULT_CONF, R_OK) == 0 ? DEFAULT_CONF : NULL;
	while ((c = getopt(argc, argv, "c:o:th")) != -1) {
		switch (c) {
		case 'c':
			conf_path = optarg;
			break;
		case 'o':
			overrides = xm_reallocarray(overrides, noverrides + 1,
			    sizeof(*overrides));
			overrides[noverrides++] = optarg;
			break;
		case 't':
			test_only = true;
			break;
		default:
			fprintf(stderr, "usage: xmilterd [-c CONF] [-o daemon.NAME=VALUE]"
			    "... [-t]\n");
			return 1;
		}
	}
	if ((chain = load(conf_path, err, sizeof(err))) == NULL)
		fatalx("%s", err);
	if (test_only) {
		printf("%s: ok\n", conf_path ? conf_path : "built-in defaults");
		xm_chain_unref(chain);
		return 0;
	}
	cf = xm_chain_config(chain);
	xm_log_open("xmilterd", cf->daemon.log_file);
	xm_log_level = (enum xm_log_level)cf->daemon.log_level;
	snprintf(workers, sizeof(workers), "%lld", cf->daemon.workers);
	setenv("UV_THREADPOOL_SIZE", workers, 1);
	signal(SIGPIPE, SIG_IGN);
	qstore_get(cf);  /* opened now if it can be; else on first use */

	loop = uv_default_loop();
	/* signals first: a SIGHUP right after the socket appears must reload,
	 * not kill */
	uv_check_init(loop, &flush_check);
	uv_check_start(&flush_check, flush_cb);
	uv_unref((uv_handle_t *)&flush_check);  /* never keeps the loop alive */
	uv_signal_init(loop, &sig_hup);
	uv_signal_start(&sig_hup, on_hup, SIGHUP);
	uv_signal_init(loop, &sig_term);
	uv_signal_start(&sig_term, on_term, SIGTERM);
	uv_signal_init(loop, &sig_int);
	uv_signal_start(&sig_int, on_term, SIGINT);
	uv_timer_init(loop, &purge_timer);
	uv_unref((uv_handle_t *)&purge_timer);
	purge_arm();
	xm_state_pipe_init(loop);  /* ratelimit's batches to Redis */
	archive_start(cf);  /* issue 6: before the sockets, so no verdict misses it */
	listen_unix(cf);
	listen_tcp(cf);
	if (!have_unix && !have_tcp)
		fatalx("nothing to listen on: set daemon.socket or "
		    "daemon.listen_tcp");
	write_pidfile(cf->daemon.pidfile);
	log_info("xmilterd %s started (config %s)", PACKAGE_VERSION,
	    conf_path ? conf_path : "built-in defaults");
	uv_run(loop, UV_RUN_DEFAULT);
	archive_finish();  /* issue 6 */
	cf = xm_chain_config(chain);  /* a reload may have replaced it */
	if (cf->daemon.pidfile && *cf->daemon.pidfile)
		unlink(cf->daemon.pidfile);
	xm_qstore_close(qstore);
	xm_chain_unref(chain);
	uv_loop_close(loop);
	log_info("stopped");
	return 0;
}
