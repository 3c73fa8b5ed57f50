/*
 * state_pipe.c - the shared state's batches sent to Redis from the event
 * loop, pipelined
 *
 * Purpose: with Redis configured, a filter waiting for its state batch
 * (xm_task_state_wait) must neither block the loop nor cost the daemon a
 * trip through the worker pool. The daemon hands the batch to
 * xm_state_submit, which appends its EVALSHA (state_redis.c writes it) to
 * the output of one non-blocking connection watched by the loop, and
 * returns; the answer calls the daemon back on the loop. What one turn of
 * the loop queued is written in one system call just before the loop
 * next waits (its prepare phase), and every answer that came in one read
 * is handled in one go: that is the pipelining, on both sides. Redis
 * answers in order, so the requests in flight are a queue.
 *
 * The connection is a plain socket (TCP with TCP_NODELAY, or a Unix
 * socket) with a uv_poll, and the answers are parsed in place by resp.c:
 * no allocation per answer or per element (hiredis's async client made
 * several, and moved its read buffer down every kilobyte: together the
 * largest cost of a batch on the daemon's side). It connects to the
 * address state_redis.c found for the host name, looked up at
 * configuration and by the monitor thread before each probe: never on
 * the loop.
 *
 * Nothing is lost: a batch whose connection fails, or that gets no answer
 * within redis_timeout, runs in the memory table instead and its caller is
 * called back just the same (a batch that timed out may have run in Redis
 * too: counted twice, never lost). Failures are reported to state.c,
 * which decides between "Redis down" (logged, health degraded, the
 * monitor thread brings it back) and "one slow answer" (a timeout: only
 * counted). While state.c says Redis is down, batches run in memory at
 * once. A connection the server closed while idle (its `timeout`
 * setting, CLIENT KILL) is only replaced, not an outage. When the
 * configured Redis changes (SIGHUP), the old connection finishes what it
 * has in flight and closes; new batches go to a new one. SCRIPT LOAD
 * (and SELECT) go first on every connection; an answer NOSCRIPT (the
 * script cache flushed) loads it again and resends that batch once.
 *
 * Interface: state_pipe.h. Loop thread only. Ownership: the requests and
 * connections are this file's; OPS belong to the caller and must live
 * until DONE is called. A connection is freed in its poll handle's close
 * callback, after it left every list.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "resp.h"
#include "state.h"
#include "state_pipe.h"

#define IN_START (64 * 1024)
#define IN_MAX (XM_RESP_MAXBULK + 64 * 1024)   /* one whole answer fits */

/* req - one command in flight: a batch, or SETUP (SELECT, SCRIPT LOAD) */
struct req {
	struct req *next;
	const char *setup;             /* non-NULL: the command's name */
	struct xm_state_op *ops;
	size_t n;
	double now;
	void (*done)(void *arg);
	void *arg;
	uint64_t sent;                 /* uv_now() when queued */
	bool reloaded;                 /* NOSCRIPT answered once already */
};

/* pconn - one connection */
struct pconn {
	int fd;
	uv_poll_t poll;
	int events;                    /* what the poll watches */
	struct xm_redis *backend;      /* the configuration it serves */
	struct req *head, *tail;       /* in flight, in order */
	size_t nbatches;               /* batches among them */
	struct xm_buf out;             /* to write; OFF bytes of it written */
	size_t off;
	char *in;                      /* read, not yet parsed */
	size_t inlen, incap;
	bool connecting;               /* connect() in progress */
	bool closing;                  /* closes once nothing is in flight */
	bool dead;                     /* closed: waits for its close cb */
	bool flushq;                   /* on P.flushq */
	struct pconn *anext, *aprev;   /* P.all */
	struct pconn *fnext;           /* P.flushq */
};

static struct {
	uv_loop_t *loop;
	uv_timer_t timer;              /* timeouts */
	bool timer_on;
	uv_prepare_t flusher;          /* writes before the loop waits */
	struct pconn *flushq;
	struct pconn *cur;             /* where new batches go */
	struct pconn *all;             /* every live connection */
	struct xm_buf cmd;
	struct xm_resp resp;           /* the answer being handled */
	double timeout;                /* seconds */
	bool stopping;                 /* xm_state_pipe_stop: no new batch */
	struct xm_state_pipe_stats stats;
} P;

static void pc_fail(struct pconn *pc, const char *why);
static void pc_write(struct pconn *pc);

/* watch - have the poll watch EVENTS (READABLE always while alive) */
static void on_poll(uv_poll_t *h, int status, int events);
static void
watch(struct pconn *pc, int events)
{
	if (pc->dead || events == pc->events)
		return;
	pc->events = events;
	uv_poll_start(&pc->poll, events, on_poll);
}

/* push - RQ goes to the end of PC's queue */
static void
push(struct pconn *pc, struct req *rq)
{
	rq->next = NULL;
	if (pc->tail)
		pc->tail->next = rq;
	else
		pc->head = rq;
	pc->tail = rq;
	if (rq->setup == NULL)
		pc->nbatches++;
	rq->sent = uv_now(P.loop);
}

/* pop - the oldest command in flight on PC, or NULL */
static struct req *
pop(struct pconn *pc)
{
	struct req *rq = pc->head;

	if (rq == NULL)
		return NULL;
	pc->head = rq->next;
	if (pc->head == NULL)
		pc->tail = NULL;
	if (rq->setup == NULL)
		pc->nbatches--;
	return rq;
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

/* on_flush - before the loop waits: write what was queued */
static void
on_flush(uv_prepare_t *h)
{
	struct pconn *pc;

	while ((pc = P.flushq) != NULL) {
		P.flushq = pc->fnext;
		pc->fnext = NULL;
		pc->flushq = false;
		if (!pc->dead && !pc->connecting)
			pc_write(pc);
	}
	uv_prepare_stop(&P.flusher);
}

/* flush_soon - PC has output: write it before the loop next waits */
static void
flush_soon(struct pconn *pc)
{
	if (pc->flushq || pc->connecting || (pc->events & UV_WRITABLE))
		return;
	pc->flushq = true;
	pc->fnext = P.flushq;
	P.flushq = pc;
	uv_prepare_start(&P.flusher, on_flush);
}

/* send_setup - queue the command CMD (RESP), named NAME, on PC */
static void
send_setup(struct pconn *pc, const char *name, const char *cmd, size_t len)
{
	struct req *rq = xm_calloc(1, sizeof(*rq));

	rq->setup = name;
	xm_buf_append(&pc->out, cmd, len);
	push(pc, rq);
	flush_soon(pc);
}

/* send_script - queue SCRIPT LOAD of the state script on PC */
static void
send_script(struct pconn *pc)
{
	const char *s = xm_redis_script();

	xm_buf_reset(&P.cmd);
	xm_buf_printf(&P.cmd, "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$%zu\r\n",
	    strlen(s));
	xm_buf_append(&P.cmd, s, strlen(s));
	xm_buf_append(&P.cmd, "\r\n", 2);
	send_setup(pc, "SCRIPT LOAD", P.cmd.data, P.cmd.len);
}

/* send_batch - queue RQ's EVALSHA on PC */
static void
send_batch(struct pconn *pc, struct req *rq)
{
	xm_redis_command(pc->backend, rq->ops, rq->n, rq->now, &P.cmd);
	xm_buf_append(&pc->out, P.cmd.data, P.cmd.len);
	push(pc, rq);
	P.stats.batches++;
	flush_soon(pc);
}

/* on_closed - the poll handle is closed: PC goes */
static void
on_closed(uv_handle_t *h)
{
	struct pconn *pc = h->data;

	xm_buf_free(&pc->out);
	free(pc->in);
	free(pc);
}

/* pc_fail - PC is closed; every command in flight on it is answered
 * (batches from memory). WHY (NULL: a close we chose) is reported as an
 * outage when batches were in flight and we were not closing it. */
static void
pc_fail(struct pconn *pc, const char *why)
{
	struct pconn **pp;
	struct req *rq;

	if (pc->dead)
		return;
	pc->dead = true;
	if (why != NULL && !pc->closing && pc->nbatches > 0)
		xm_state_failed(why, false);
	/* out of every list first: the callbacks below may submit again */
	if (P.cur == pc)
		P.cur = NULL;
	if (pc->aprev)
		pc->aprev->anext = pc->anext;
	else
		P.all = pc->anext;
	if (pc->anext)
		pc->anext->aprev = pc->aprev;
	for (pp = &P.flushq; *pp != NULL; pp = &(*pp)->fnext)
		if (*pp == pc) {
			*pp = pc->fnext;
			break;
		}
	uv_close((uv_handle_t *)&pc->poll, on_closed);
	close(pc->fd);
	while ((rq = pop(pc)) != NULL) {
		if (rq->setup != NULL)
			free(rq);
		else
			finish_local(rq);
	}
}

/* maybe_close - a closing connection with nothing in flight goes */
static void
maybe_close(struct pconn *pc)
{
	if (pc->closing && pc->head == NULL)
		pc_fail(pc, NULL);
}

/* pc_write - write PC's output; what the socket does not take waits for
 * it to be writable */
static void
pc_write(struct pconn *pc)
{
	while (pc->off < pc->out.len) {
		ssize_t n = write(pc->fd, pc->out.data + pc->off,
		    pc->out.len - pc->off);

		if (n > 0) {
			pc->off += (size_t)n;
			P.stats.writes++;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			watch(pc, UV_READABLE | UV_WRITABLE);
			return;
		}
		{
			char why[200];

			snprintf(why, sizeof(why), "write: %s", strerror(errno));
			pc_fail(pc, why);
		}
		return;
	}
	xm_buf_reset(&pc->out);
	pc->off = 0;
	watch(pc, UV_READABLE);
}

/* answer - REP answers PC's oldest command */
static void
answer(struct pconn *pc, const redisReply *rep)
{
	struct req *rq = pop(pc);
	char err[256];
	int rc;

	if (rq == NULL) {
		pc_fail(pc, "an answer nobody asked for");
		return;
	}
	if (rq->setup != NULL) {
		if (rep->type == REDIS_REPLY_ERROR)
			log_warn("state: Redis refused %s: %.200s", rq->setup,
			    rep->str);
		free(rq);
		return;
	}
	rc = xm_redis_results(rep, rq->ops, rq->n, err, sizeof(err));
	if (rc == XM_REDIS_NOSCRIPT && !rq->reloaded && !pc->closing) {
		/* the script cache was flushed: load it, send again */
		rq->reloaded = true;
		send_script(pc);
		send_batch(pc, rq);
		return;
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

/* pc_read - read what came and answer every whole reply in it */
static void
pc_read(struct pconn *pc)
{
	size_t pos = 0, used;
	ssize_t n;
	int rc = 0;

	if (pc->incap - pc->inlen < IN_START / 4) {
		size_t cap = pc->incap ? pc->incap * 2 : IN_START;

		if (cap > IN_MAX) {
			pc_fail(pc, "an answer larger than the read limit");
			return;
		}
		pc->in = xm_realloc(pc->in, cap);
		pc->incap = cap;
	}
	n = read(pc->fd, pc->in + pc->inlen, pc->incap - pc->inlen);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		char why[200];

		snprintf(why, sizeof(why), "connection lost: %s", n == 0 ?
		    "closed by the server" : strerror(errno));
		pc_fail(pc, why);
		return;
	}
	P.stats.reads++;
	pc->inlen += (size_t)n;
	/* answers may submit again (on PC too) or close PC: it stays
	 * allocated until its close callback, so check dead after each */
	while (!pc->dead && (rc = xm_resp_parse(pc->in + pos, pc->inlen - pos,
	    &used, &P.resp)) == 1) {
		pos += used;
		answer(pc, &P.resp.top);
	}
	if (pc->dead)
		return;
	if (rc < 0) {
		pc_fail(pc, "malformed answer from Redis");
		return;
	}
	if (pos > 0) {
		memmove(pc->in, pc->in + pos, pc->inlen - pos);
		pc->inlen -= pos;
	}
	maybe_close(pc);
}

/* connected - PC's connect() finished: fine, or not */
static void
connected(struct pconn *pc)
{
	int e = 0;
	socklen_t elen = sizeof(e);

	if (getsockopt(pc->fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
		e = errno;
	if (e == EINPROGRESS || e == EALREADY)
		return;
	pc->connecting = false;
	if (e != 0) {
		char why[200];

		snprintf(why, sizeof(why), "connect: %s", strerror(e));
		/* refused with batches waiting: Redis is down */
		pc_fail(pc, why);
		return;
	}
	pc_write(pc);
}

/* on_poll - the socket is readable or writable, or in error */
static void
on_poll(uv_poll_t *h, int status, int events)
{
	struct pconn *pc = h->data;

	if (pc->dead)
		return;
	if (status < 0) {
		/* libuv stopped watching: find out what the socket says */
		pc->events = 0;
		events = UV_READABLE | (pc->connecting ? UV_WRITABLE : 0);
	}
	if (pc->connecting) {
		if (events & (UV_WRITABLE | UV_READABLE))
			connected(pc);
		if (pc->dead || pc->connecting)
			return;
		if (status < 0)
			watch(pc, UV_READABLE);
		return;
	}
	if (events & UV_READABLE)
		pc_read(pc);
	if (!pc->dead && (events & UV_WRITABLE))
		pc_write(pc);
	if (!pc->dead && status < 0)
		watch(pc, UV_READABLE | (pc->off < pc->out.len ? UV_WRITABLE :
		    0));
}

/* open_socket - a non-blocking socket connecting to BACKEND's address;
 * its descriptor (*INPROGRESS when the connect is not done yet), or -1
 * with ERR */
static int
open_socket(struct xm_redis *backend, bool *inprogress, char *err,
    size_t errlen)
{
	const char *host, *path;
	int port, fd = -1, one = 1, rc;
	long long db;
	double timeout;

	xm_redis_target(backend, &host, &port, &path, &db, &timeout);
	*inprogress = false;
	if (path != NULL) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(path) >= sizeof(sun.sun_path)) {
			snprintf(err, errlen, "socket path too long");
			return -1;
		}
		strcpy(sun.sun_path, path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
		if (fd < 0)
			goto sysfail;
		rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	} else {
		/* resolved off the loop (configuration, monitor thread) */
		struct sockaddr_storage ss;
		socklen_t sslen = xm_redis_address(backend, &ss);

		if (sslen == 0) {
			snprintf(err, errlen, "connect: %s: no address found "
			    "(yet)", host);
			return -1;
		}
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto sysfail;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		rc = connect(fd, (struct sockaddr *)&ss, sslen);
	}
	if (rc == 0)
		return fd;
	if (errno == EINPROGRESS || errno == EAGAIN) {
		*inprogress = true;
		return fd;
	}
sysfail:
	snprintf(err, errlen, "connect: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* pc_open - a connection to BACKEND, SELECT and SCRIPT LOAD queued; NULL
 * with ERR */
static struct pconn *
pc_open(struct xm_redis *backend, char *err, size_t errlen)
{
	const char *host, *path;
	struct pconn *pc;
	bool inprogress;
	long long db;
	int port, fd;

	if ((fd = open_socket(backend, &inprogress, err, errlen)) < 0)
		return NULL;
	pc = xm_calloc(1, sizeof(*pc));
	if (uv_poll_init(P.loop, &pc->poll, fd) != 0) {
		snprintf(err, errlen, "cannot watch the connection");
		close(fd);
		free(pc);
		return NULL;
	}
	pc->fd = fd;
	pc->poll.data = pc;
	pc->backend = backend;
	pc->connecting = inprogress;
	pc->anext = P.all;
	if (P.all)
		P.all->aprev = pc;
	P.all = pc;
	xm_redis_target(backend, &host, &port, &path, &db, &P.timeout);
	watch(pc, UV_READABLE | (inprogress ? UV_WRITABLE : 0));
	/* queued before any batch: Redis runs them first */
	if (db != 0) {
		xm_buf_reset(&P.cmd);
		xm_buf_printf(&P.cmd, "*2\r\n$6\r\nSELECT\r\n$%d\r\n%lld\r\n",
		    snprintf(NULL, 0, "%lld", db), db);
		send_setup(pc, "SELECT", P.cmd.data, P.cmd.len);
	}
	send_script(pc);
	return pc;
}

/* pc_close - stop sending on PC; it closes once what is in flight on it
 * is answered */
static void
pc_close(struct pconn *pc)
{
	if (P.cur == pc)
		P.cur = NULL;
	pc->closing = true;
	maybe_close(pc);
}

/* on_timer - a connection whose oldest command has waited longer than
 * the timeout goes (every batch in flight on it falls back) */
static void
on_timer(uv_timer_t *h)
{
	uint64_t limit = (uint64_t)ceil(P.timeout * 1000), now = uv_now(P.loop);
	struct pconn *pc, *next;
	bool busy = false;

	for (pc = P.all; pc != NULL; pc = next) {
		char why[200];

		next = pc->anext;
		if (pc->head == NULL)
			continue;
		if (now - pc->head->sent <= limit) {
			busy = true;
			continue;
		}
		snprintf(why, sizeof(why), "no answer within %gs (%zu batches "
		    "in flight run in local memory)", P.timeout, pc->nbatches);
		xm_state_failed(why, true);
		pc->closing = true;       /* reported above: no outage */
		/* calls back into the daemon, which may open a connection */
		pc_fail(pc, NULL);
		next = P.all;             /* start over: the list changed */
	}
	if (!busy) {
		uv_timer_stop(&P.timer);
		P.timer_on = false;
	}
}

/* timer_on - watch for timeouts while commands are in flight */
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
	memset(&P, 0, sizeof(P));
	P.loop = loop;
	P.timeout = 0.2;
	uv_timer_init(loop, &P.timer);
	uv_unref((uv_handle_t *)&P.timer);
	uv_prepare_init(loop, &P.flusher);
	uv_unref((uv_handle_t *)&P.flusher);
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
	if (P.cur != NULL && P.cur->backend != backend)
		pc_close(P.cur);
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
	send_batch(P.cur, rq);
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
 * commands in flight are answered (or time out: the timer still runs,
 * but keeps no loop alive) */
void
xm_state_pipe_stop(void)
{
	struct pconn *pc, *next;

	if (P.loop == NULL)
		return;
	P.stopping = true;
	P.cur = NULL;
	for (pc = P.all; pc != NULL; pc = next) {
		next = pc->anext;
		pc_close(pc);
	}
}
