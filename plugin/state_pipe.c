/*
 * state_pipe.c - the shared state's batches sent to Redis from the event
 * loop, pipelined
 *
 * Purpose: with Redis configured, a filter waiting for its state batch
 * (xm_task_state_wait) must neither block the loop nor cost the daemon a
 * trip through the worker pool. The daemon hands the batch to
 * xm_state_submit, which writes its EVALSHA (state_redis.c makes it) on
 * one non-blocking hiredis connection attached to the loop, and returns;
 * the reply calls the daemon back on the loop. Every batch submitted in
 * one turn of the loop goes out in one write, and every reply in one read
 * is handled in one go: that is the pipelining (one system call for many
 * events, on both sides), and Redis answers in order, so the requests in
 * flight are a queue.
 *
 * Nothing is lost: a batch whose connection fails, or that gets no answer
 * within redis_timeout, runs in the memory table instead and its caller is
 * called back just the same (a batch that timed out may have run in Redis
 * too: counted twice, never lost). Failures are reported to state.c,
 * which decides between "Redis down" (logged, health degraded, the
 * monitor thread brings it back) and "one slow answer" (a timeout: only
 * counted). While state.c says Redis is down, batches run in memory at
 * once. A connection closed by the server while idle (its `timeout`
 * setting, CLIENT KILL) is only replaced, not an outage. When the
 * configured Redis changes (SIGHUP), the old connection finishes what it
 * has in flight and closes; new batches go to a new one.
 *
 * Interface: state_pipe.h. Loop thread only. Ownership: the requests and
 * connections are this file's; OPS belong to the caller and must live
 * until DONE is called.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "state.h"
#include "state_pipe.h"

struct pconn;

/* req - one batch in flight */
struct req {
	struct req *next, *prev;       /* the connection's queue, in order */
	struct pconn *pc;
	struct xm_state_op *ops;
	size_t n;
	double now;
	void (*done)(void *arg);
	void *arg;
	uint64_t sent;                 /* uv_now() when written */
	bool reloaded;                 /* NOSCRIPT answered once already */
};

/* pconn - one connection; freed once hiredis let go of it and nothing is
 * in flight on it */
struct pconn {
	redisAsyncContext *ac;         /* NULL once hiredis freed it */
	struct xm_redis *backend;      /* the configuration it serves */
	struct req *head, *tail;
	size_t npending;
	bool closing;                  /* we close it: not an outage */
	bool up;                       /* connected */
	bool reported;                 /* its loss was reported */
	bool forcing;                  /* inside pc_close: it frees PC */
	struct pconn *anext, *aprev;   /* P.all */
};

static struct {
	uv_loop_t *loop;
	uv_timer_t timer;              /* timeouts */
	bool timer_on;
	struct pconn *cur;             /* where new batches go */
	struct pconn *all;             /* every connection not yet freed */
	struct xm_buf cmd;
	double timeout;                /* seconds */
	bool stopping;                 /* xm_state_pipe_stop: no new batch */
	struct xm_state_pipe_stats stats;
	uv_prepare_t flusher;          /* writes before the loop waits */
	struct watch *flushq;
	bool in_flush;
} P;

/*
 * The hiredis connection on the loop: a uv_poll on its socket. (hiredis's
 * own libuv adapter ignores a poll error, and libuv reports a failed
 * connect as one and stops watching: the batches queued behind the
 * connect would wait for the timeout. Here an error makes hiredis try
 * the socket, find the failure and call every batch back.)
 *
 * Writes: hiredis asks to be told when the socket is writable after every
 * command it queues. On a connected socket that is answered without
 * asking the kernel: what one loop turn queued is written just before the
 * loop next waits (its prepare phase), in one write; only when the
 * socket's buffer is full does the poll watch for writability. That
 * spares two epoll_ctl calls per turn, and nothing queued is left
 * unwritten while the loop sleeps.
 */
struct watch {
	redisAsyncContext *ac;         /* NULL once hiredis let go */
	uv_poll_t h;
	int events;
	bool flush;                    /* output waits for the check phase */
	struct watch *fnext;           /* P.flushq */
};

/* w_poll - the socket is ready, or in error */
static void
w_poll(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;

	if (status < 0)
		events = w->events;
	if (w->ac != NULL && (events & UV_READABLE)) {
		P.stats.reads++;
		redisAsyncHandleRead(w->ac);
	}
	if (w->ac != NULL && (events & UV_WRITABLE)) {
		P.stats.writes++;
		redisAsyncHandleWrite(w->ac);
	}
	/* libuv stopped watching on the error; hiredis may still want to */
	if (status < 0 && w->ac != NULL && w->events != 0)
		uv_poll_start(&w->h, w->events, w_poll);
}

/* w_set - watch for EVENTS now */
static void
w_set(struct watch *w, int events)
{
	if (events == w->events)
		return;
	w->events = events;
	if (events != 0)
		uv_poll_start(&w->h, events, w_poll);
	else
		uv_poll_stop(&w->h);
}

/* on_flush - before the loop waits: write what was queued */
static void
on_flush(uv_prepare_t *h)
{
	struct watch *w;

	while ((w = P.flushq) != NULL) {
		P.flushq = w->fnext;
		w->fnext = NULL;
		if (!w->flush)
			continue;
		w->flush = false;
		if (w->ac != NULL) {
			P.stats.writes++;
			P.in_flush = true;
			redisAsyncHandleWrite(w->ac);
			P.in_flush = false;
		}
	}
	uv_prepare_stop(&P.flusher);
}

/* w_add_read, w_del_read - hiredis wants to read, or no longer */
static void
w_add_read(void *p)
{
	struct watch *w = p;

	w_set(w, w->events | UV_READABLE);
}

static void
w_del_read(void *p)
{
	struct watch *w = p;

	w_set(w, w->events & ~UV_READABLE);
}

/* w_add_write - output queued: if connected, written before the loop
 * waits (the socket is assumed writable); else watch for writability (a
 * connect in progress, or a buffer a flush found full) */
static void
w_add_write(void *p)
{
	struct watch *w = p;

	if (P.in_flush || w->ac == NULL ||
	    !(w->ac->c.flags & REDIS_CONNECTED)) {
		w_set(w, w->events | UV_WRITABLE);
		return;
	}
	if (w->flush || (w->events & UV_WRITABLE))
		return;
	w->flush = true;
	w->fnext = P.flushq;
	P.flushq = w;
	uv_prepare_start(&P.flusher, on_flush);
}

/* w_del_write - all written */
static void
w_del_write(void *p)
{
	struct watch *w = p;

	w->flush = false;
	w_set(w, w->events & ~UV_WRITABLE);
}

/* w_closed, w_cleanup - hiredis is done with the socket */
static void
w_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
w_cleanup(void *p)
{
	struct watch *w = p, **pp;

	w->ac = NULL;
	for (pp = &P.flushq; *pp != NULL; pp = &(*pp)->fnext)
		if (*pp == w) {
			*pp = w->fnext;
			break;
		}
	uv_close((uv_handle_t *)&w->h, w_closed);
}

/* w_attach - watch AC's socket on LOOP; -1 on failure */
static int
w_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
	struct watch *w;

	if (ac->ev.data != NULL)
		return -1;
	w = xm_calloc(1, sizeof(*w));
	if (uv_poll_init(loop, &w->h, ac->c.fd) != 0) {
		free(w);
		return -1;
	}
	w->ac = ac;
	w->h.data = w;
	ac->ev.addRead = w_add_read;
	ac->ev.delRead = w_del_read;
	ac->ev.addWrite = w_add_write;
	ac->ev.delWrite = w_del_write;
	ac->ev.cleanup = w_cleanup;
	ac->ev.data = w;
	return 0;
}

/* pc_maybe_free - free PC once hiredis is done with it and nothing waits */
static void
pc_maybe_free(struct pconn *pc)
{
	if (pc->ac == NULL && pc->npending == 0 && !pc->forcing) {
		if (P.cur == pc)
			P.cur = NULL;
		if (pc->aprev)
			pc->aprev->anext = pc->anext;
		else
			P.all = pc->anext;
		if (pc->anext)
			pc->anext->aprev = pc->aprev;
		free(pc);
	}
}

/* pc_gone - hiredis let go of PC's context: no new batch goes there */
static void
pc_gone(struct pconn *pc)
{
	pc->ac = NULL;
	if (P.cur == pc)
		P.cur = NULL;
	pc_maybe_free(pc);
}

/* unqueue - take RQ off its connection's queue */
static void
unqueue(struct req *rq)
{
	struct pconn *pc = rq->pc;

	if (rq->prev)
		rq->prev->next = rq->next;
	else
		pc->head = rq->next;
	if (rq->next)
		rq->next->prev = rq->prev;
	else
		pc->tail = rq->prev;
	pc->npending--;
	rq->next = rq->prev = NULL;
}

/* enqueue - RQ goes to the end of PC's queue */
static void
enqueue(struct pconn *pc, struct req *rq)
{
	rq->pc = pc;
	rq->next = NULL;
	rq->prev = pc->tail;
	if (pc->tail)
		pc->tail->next = rq;
	else
		pc->head = rq;
	pc->tail = rq;
	pc->npending++;
	rq->sent = uv_now(P.loop);
}

/* finish_local - RQ runs in memory; its caller is told */
static void
finish_local(struct req *rq)
{
	void (*done)(void *) = rq->done;
	void *arg = rq->arg;

	xm_state_local(rq->ops, rq->n, rq->now);
	free(rq);
	done(arg);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* send_req - write RQ's EVALSHA on PC; false when hiredis refused it */
static bool
send_req(struct pconn *pc, struct req *rq)
{
	xm_redis_command(pc->backend, rq->ops, rq->n, rq->now, &P.cmd);
	if (redisAsyncFormattedCommand(pc->ac, on_reply, rq, P.cmd.data,
	    P.cmd.len) != REDIS_OK)
		return false;
	enqueue(pc, rq);
	P.stats.batches++;
	return true;
}

/* on_script - the answer to SCRIPT LOAD or SELECT (errors are logged:
 * the batches behind it then fail one by one and fall back) */
static void
on_setup(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply *rep = reply;

	if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
		log_warn("state: Redis refused %s: %s", (const char *)privdata,
		    rep->str);
}

/* on_reply - a batch's answer (NULL: the connection went away first) */
static void
on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct req *rq = privdata;
	struct pconn *pc = rq->pc;
	char err[256];
	int rc;

	unqueue(rq);
	if (reply == NULL) {
		/* lost with batches in flight: an outage (the monitor tells
		 * when Redis is back) */
		if (!pc->closing && !pc->reported) {
			char why[200];

			pc->reported = true;
			snprintf(why, sizeof(why), "connection lost: %s",
			    ac->errstr[0] ? ac->errstr : "closed");
			xm_state_failed(why, false);
		}
		finish_local(rq);
		pc_maybe_free(pc);
		return;
	}
	rc = xm_redis_results(reply, rq->ops, rq->n, err, sizeof(err));
	if (rc == XM_REDIS_NOSCRIPT && !rq->reloaded && pc->ac != NULL &&
	    !pc->closing) {
		/* the script cache was flushed: load it, send again */
		rq->reloaded = true;
		redisAsyncCommand(pc->ac, on_setup, "SCRIPT LOAD",
		    "SCRIPT LOAD %s", xm_redis_script());
		if (send_req(pc, rq))
			return;
		rc = -1;
		snprintf(err, sizeof(err), "cannot send on the connection");
	}
	if (rc == 0) {
		void (*done)(void *) = rq->done;
		void *arg = rq->arg;

		xm_state_redis_ok();
		free(rq);
		done(arg);
		return;
	}
	xm_state_failed(err, false);
	finish_local(rq);
}

/* on_connect - connected, or not (hiredis frees the context after) */
static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct pconn *pc = ac->data;

	if (status == REDIS_OK) {
		pc->up = true;
		return;
	}
	if (!pc->closing) {
		char why[200];

		snprintf(why, sizeof(why), "connect: %s", ac->errstr);
		xm_state_failed(why, false);
	}
	pc_gone(pc);
}

/* on_disconnect - a connection that was up is gone (hiredis has already
 * called back every batch in flight on it with no reply: see on_reply);
 * lost while idle, it only means the server closed it: the next batch
 * connects again */
static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	pc_gone(ac->data);
}

/* pc_close - stop using PC: GRACEFUL lets what is in flight finish, else
 * every batch in flight falls back now (and PC may be freed). Never from
 * inside one of PC's own callbacks. */
static void
pc_close(struct pconn *pc, bool graceful)
{
	if (P.cur == pc)
		P.cur = NULL;
	if (pc->ac == NULL)
		return;
	if (graceful) {
		if (!pc->closing) {
			pc->closing = true;
			redisAsyncDisconnect(pc->ac);
		}
		return;
	}
	pc->closing = true;
	pc->forcing = true;
	redisAsyncFree(pc->ac);   /* calls every batch back, no reply */
	pc->ac = NULL;
	pc->forcing = false;
	pc_maybe_free(pc);
}

/* pc_open - a connection to BACKEND; NULL with ERR */
static struct pconn *
pc_open(struct xm_redis *backend, char *err, size_t errlen)
{
	struct pconn *pc;
	const char *host, *path;
	int port;
	long long db;
	double timeout;
	redisAsyncContext *ac;

	xm_redis_target(backend, &host, &port, &path, &db, &timeout);
	ac = path ? redisAsyncConnectUnix(path) : redisAsyncConnect(host, port);
	if (ac == NULL || ac->err) {
		snprintf(err, errlen, "connect: %s", ac ? ac->errstr :
		    "out of memory");
		if (ac)
			redisAsyncFree(ac);
		return NULL;
	}
	pc = xm_calloc(1, sizeof(*pc));
	pc->ac = ac;
	pc->backend = backend;
	ac->data = pc;
	pc->anext = P.all;
	if (P.all)
		P.all->aprev = pc;
	P.all = pc;
	if (w_attach(ac, P.loop) < 0) {
		snprintf(err, errlen, "cannot watch the connection");
		pc->closing = true;
		redisAsyncFree(ac);   /* not connected: no callback */
		pc->ac = NULL;
		pc_maybe_free(pc);
		return NULL;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	P.timeout = timeout;
	/* queued before any batch: Redis runs them first */
	if (db != 0)
		redisAsyncCommand(ac, on_setup, "SELECT", "SELECT %lld", db);
	redisAsyncCommand(ac, on_setup, "SCRIPT LOAD", "SCRIPT LOAD %s",
	    xm_redis_script());
	return pc;
}

/* on_timer - a connection whose oldest batch has waited longer than the
 * timeout goes (everything in flight on it falls back) */
static void
on_timer(uv_timer_t *h)
{
	uint64_t limit = (uint64_t)ceil(P.timeout * 1000), now = uv_now(P.loop);
	struct pconn *pc, *next;
	bool busy = false;

	for (pc = P.all; pc != NULL; pc = next) {
		next = pc->anext;
		if (pc->head == NULL)
			continue;
		if (now - pc->head->sent <= limit || pc->ac == NULL) {
			busy = true;
			continue;
		}
		{
			char why[200];

			snprintf(why, sizeof(why), "no answer within %gs (%zu "
			    "batches in flight run in local memory)", P.timeout,
			    pc->npending);
			xm_state_failed(why, true);
		}
		/* may call back into xm_state_submit; PC may be freed */
		pc_close(pc, false);
		next = P.all;   /* the list may have changed: start over */
	}
	if (!busy) {
		uv_timer_stop(&P.timer);
		P.timer_on = false;
	}
}

/* timer_on - watch for timeouts while batches are in flight */
static void
timer_on(void)
{
	uint64_t every;

	if (P.timer_on)
		return;
	every = (uint64_t)ceil(P.timeout * 1000 / 4);
	if (every < 5)
		every = 5;
	uv_timer_start(&P.timer, on_timer, every, every);
	P.timer_on = true;
}

/* xm_state_pipe_init - batches may now wait on LOOP */
void
xm_state_pipe_init(uv_loop_t *loop)
{
	P.loop = loop;
	P.stopping = false;
	P.timer_on = false;
	P.timeout = 0.2;
	uv_timer_init(loop, &P.timer);
	uv_unref((uv_handle_t *)&P.timer);
	uv_prepare_init(loop, &P.flusher);
	uv_unref((uv_handle_t *)&P.flusher);
	P.flushq = NULL;
	P.in_flush = false;
}

/* xm_state_submit - see state_pipe.h */
bool
xm_state_submit(struct xm_state_op *ops, size_t n, double now,
    void (*done)(void *arg), void *arg)
{
	struct xm_redis *backend = xm_state_backend();
	struct req *rq;
	char err[256];

	if (backend == NULL || P.loop == NULL || P.stopping || n == 0) {
		xm_state_local(ops, n, now);
		return true;
	}
	if (P.cur != NULL && (P.cur->backend != backend || P.cur->closing))
		pc_close(P.cur, true);
	if (P.cur == NULL && (P.cur = pc_open(backend, err, sizeof(err))) ==
	    NULL) {
		xm_state_failed(err, false);
		xm_state_local(ops, n, now);
		return true;
	}
	rq = xm_calloc(1, sizeof(*rq));
	rq->ops = ops;
	rq->n = n;
	rq->now = now;
	rq->done = done;
	rq->arg = arg;
	if (!send_req(P.cur, rq)) {
		free(rq);
		pc_close(P.cur, false);
		xm_state_local(ops, n, now);
		return true;
	}
	timer_on();
	return false;
}

/* xm_state_pipe_stats - what has been sent so far */
void
xm_state_pipe_stats(struct xm_state_pipe_stats *s)
{
	*s = P.stats;
}

/* xm_state_pipe_stop - shutting down: each connection closes once its
 * batches in flight are answered (or time out: the timer still runs, but
 * keeps no loop alive) */
void
xm_state_pipe_stop(void)
{
	struct pconn *pc;

	if (P.loop == NULL)
		return;
	P.cur = NULL;
	for (pc = P.all; pc != NULL; pc = pc->anext)
		pc_close(pc, true);
	P.stopping = true;
}
