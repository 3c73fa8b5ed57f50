/*
 * test_pipe.c - unit tests of the pipelined Redis client on the event loop
 * (plugin/state_pipe.c), against a redis-server of the test's own
 *
 * Many batches submitted in one turn of a libuv loop all come back, in
 * order, with the results the memory table gives for the same sequence;
 * a script cache flushed under it (SCRIPT FLUSH) is loaded again; a
 * connection the server closed while idle (CLIENT KILL) is replaced
 * without Redis being called down; a server that never answers (stopped)
 * costs a timeout: every batch in flight is answered from memory, Redis is
 * not marked down, and batches go back to Redis once it answers; a Redis
 * nobody listens for: batches run in memory, Redis is marked down, health
 * degraded; a reload that names another Redis while batches are in flight
 * lets them finish on the old one and sends the next ones to the new one;
 * nothing is ever lost (every batch is answered exactly once).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "state.h"
#include "state_pipe.h"
#include "testlib.h"
#include "redislib.h"

#define T0 1795000000.0
#define NB 300

/* one submitted batch and whether (and in what order) it was answered */
struct sub {
	struct xm_state_op ops[3];
	int answered;           /* times called back (or ran at once) */
	int order;              /* position among the answers */
};

static int answers;

/* on_done - a batch's results are in */
static void
on_done(void *arg)
{
	struct sub *s = arg;

	s->answered++;
	s->order = answers++;
}

/* fill - batch I: a bucket, a distinct set and a counter, keys chosen so
 * that some buckets run dry and some sets grow */
static void
fill(struct sub *s, size_t i)
{
	memset(s, 0, sizeof(*s));
	s->ops[0].op = XM_SOP_BUCKET;
	s->ops[0].key = 1000 + i % 7;
	s->ops[0].rate = 0.5;
	s->ops[0].burst = 20;
	s->ops[0].cost = 1;
	s->ops[1].op = XM_SOP_DISTINCT;
	s->ops[1].key = 2000 + i % 5;
	s->ops[1].member = 50 + i % 11;
	s->ops[1].ttl = 600;
	s->ops[1].cap = 8;
	s->ops[1].key2 = 3000 + i % 5;
	s->ops[2].op = XM_SOP_INCR;
	s->ops[2].key = 4000 + i % 3;
	s->ops[2].ttl = 600;
	s->order = -1;
}

/* configure - the global state on Redis at PORT (or memory when 0) */
static void
configure(int port, const char *prefix, double timeout)
{
	char url[64], err[256];
	struct xm_state_conf c = { .memory = 1 << 20, .redis_timeout = timeout,
	    .redis_retry = 3600, .redis_prefix = prefix };

	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	c.redis = url;
	xm_state_reset();
	cr_assert_eq(xm_state_configure(&c, err, sizeof(err)), 0, "%s", err);
}

/* submit_all - submit SUBS[0..n) at times T0 + i/100 in one loop turn,
 * then run LOOP until every one is answered; how many ran at once */
static size_t
submit_all(uv_loop_t *loop, struct sub *subs, size_t n)
{
	size_t i, now = 0, left;

	answers = 0;
	for (i = 0; i < n; i++)
		if (xm_state_submit(subs[i].ops, 3, T0 + (double)i / 100, on_done,
		    &subs[i])) {
			on_done(&subs[i]);
			now++;
		}
	for (i = 0; i < 2000; i++) {
		size_t k;

		for (k = 0, left = 0; k < n; k++)
			left += subs[k].answered == 0;
		if (left == 0)
			break;
		uv_run(loop, UV_RUN_ONCE);
	}
	return now;
}

/* expect_memory_results - SUBS hold what a memory table gives for the
 * same batches in the same order */
static void
expect_memory_results(const struct sub *subs, size_t n, const char *what)
{
	struct xm_memstore *m = xm_memstore_new(1 << 20);
	size_t i, k;

	for (i = 0; i < n; i++) {
		struct sub ref;

		fill(&ref, i);
		xm_memstore_exec(m, ref.ops, 3, T0 + (double)i / 100);
		for (k = 0; k < 3; k++) {
			cr_expect_eq(ref.ops[k].ok, subs[i].ops[k].ok,
			    "%s: batch %zu op %zu: ok", what, i, k);
			cr_expect(fabs(ref.ops[k].result - subs[i].ops[k].result)
			    < 1e-6, "%s: batch %zu op %zu: memory %g, here %g",
			    what, i, k, ref.ops[k].result, subs[i].ops[k].result);
			cr_expect(fabs(ref.ops[k].result2 -
			    subs[i].ops[k].result2) < 1e-6, "%s: batch %zu op %zu: "
			    "result2 memory %g, here %g", what, i, k,
			    ref.ops[k].result2, subs[i].ops[k].result2);
		}
	}
	xm_memstore_free(m);
}

/* expect_each_once - every batch answered exactly once */
static void
expect_each_once(const struct sub *subs, size_t n, const char *what)
{
	size_t i;

	for (i = 0; i < n; i++)
		cr_expect_eq(subs[i].answered, 1, "%s: batch %zu answered %d "
		    "times", what, i, subs[i].answered);
}

static uv_loop_t loop;

static void
setup(void)
{
	uv_loop_init(&loop);
	xm_state_pipe_init(&loop);
}

static void
teardown(void)
{
	xm_state_pipe_stop();
	uv_run(&loop, UV_RUN_NOWAIT);
	xm_state_reset();
}

TestSuite(pipe, .init = setup, .fini = teardown);

Test(pipe, pipelined_batches_match_memory_and_come_back_in_order)
{
	int port;
	pid_t pid = start_redis(&port);
	struct sub *subs = calloc(NB, sizeof(*subs));
	struct xm_state_pipe_stats ps;
	struct xm_state_stats st;
	size_t i;

	configure(port, "xmpipe1:", 5);
	for (i = 0; i < NB; i++)
		fill(&subs[i], i);
	cr_expect_eq(submit_all(&loop, subs, NB), 0, "batches ran at once "
	    "although Redis is up");
	expect_each_once(subs, NB, "pipelined");
	for (i = 0; i < NB; i++)
		cr_expect_eq(subs[i].order, (int)i, "batch %zu answered as %d",
		    i, subs[i].order);
	expect_memory_results(subs, NB, "pipelined");
	/* submitted in one turn of the loop: they went out together (the
	 * socket takes a few writes at most, not one per batch) */
	xm_state_pipe_stats(&ps);
	cr_expect_eq(ps.batches, NB, "batches %llu", ps.batches);
	cr_expect_leq(ps.writes, 10, "%llu writes for %d batches", ps.writes,
	    NB);
	xm_state_stats(&st);
	cr_expect_eq(st.redis_ops, NB, "redis ops %llu", st.redis_ops);
	cr_expect_eq(st.fallback_ops, 0, "fallback ops %llu", st.fallback_ops);
	stop_redis(pid);
	free(subs);
}

Test(pipe, flushed_script_is_loaded_again_and_killed_idle_connection_replaced)
{
	int port;
	pid_t pid = start_redis(&port);
	struct sub subs[40];
	struct xm_state_stats st;
	char reply[256];
	size_t i;

	configure(port, "xmpipe2:", 5);
	for (i = 0; i < 40; i++)
		fill(&subs[i], i);
	cr_expect_eq(submit_all(&loop, subs, 10), 0);
	/* Redis forgets the script under the open connection */
	cr_assert_gt(raw_cmd(port, "*2\r\n$6\r\nSCRIPT\r\n$5\r\nFLUSH\r\n",
	    reply, sizeof(reply)), 0);
	cr_expect(strncmp(reply, "+OK", 3) == 0, "%s", reply);
	cr_expect_eq(submit_all(&loop, subs + 10, 10), 0);
	/* the server closes the idle connection; the loop sees it go */
	cr_expect_geq(client_kill(port), 1);
	for (i = 0; i < 20; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	cr_expect_eq(submit_all(&loop, subs + 20, 20), 0);
	expect_each_once(subs, 40, "flush and kill");
	/* the batches keep their times (T0 + i/100 within each call): compare
	 * against memory fed the same way */
	{
		struct xm_memstore *m = xm_memstore_new(1 << 20);
		static const size_t start[] = { 0, 10, 20, 40 };
		size_t g, k;

		for (g = 0; g < 3; g++)
			for (i = start[g]; i < start[g + 1]; i++) {
				struct sub ref;

				fill(&ref, i);
				xm_memstore_exec(m, ref.ops, 3, T0 +
				    (double)(i - start[g]) / 100);
				for (k = 0; k < 3; k++)
					cr_expect(fabs(ref.ops[k].result -
					    subs[i].ops[k].result) < 1e-6,
					    "batch %zu op %zu: memory %g, redis %g",
					    i, k, ref.ops[k].result,
					    subs[i].ops[k].result);
			}
		xm_memstore_free(m);
	}
	xm_state_stats(&st);
	cr_expect(st.redis_up, "marked down by a flush or an idle close");
	cr_expect_eq(st.redis_ops, 40, "redis ops %llu", st.redis_ops);
	cr_expect_eq(st.fallback_ops, 0, "fallback ops %llu", st.fallback_ops);
	cr_expect_eq(st.redis_errors, 0, "errors %llu", st.redis_errors);
	stop_redis(pid);
}

Test(pipe, no_answer_in_time_falls_back_for_those_batches_only)
{
	int port;
	pid_t pid = start_redis(&port);
	struct sub subs[30];
	struct xm_state_stats st;
	struct xm_buf b = { 0 };
	char pong[64];
	size_t i;

	configure(port, "xmpipe3:", 0.3);
	for (i = 0; i < 30; i++)
		fill(&subs[i], i);
	cr_expect_eq(submit_all(&loop, subs, 5), 0);    /* connected */
	kill(pid, SIGSTOP);
	cr_expect_eq(submit_all(&loop, subs + 5, 10), 0, "the stopped server "
	    "was noticed before anything timed out");
	expect_each_once(subs, 15, "timeout");
	expect_timed_out(&b, 10, 1);
	xm_buf_free(&b);
	/* the batches that timed out were counted in memory: the first of
	 * them found an empty counter there */
	cr_expect_eq(subs[5].ops[2].result, 1, "first fallback counter %g",
	    subs[5].ops[2].result);
	kill(pid, SIGCONT);
	cr_expect_gt(raw_cmd(port, "*1\r\n$4\r\nPING\r\n", pong, sizeof(pong)),
	    0);
	/* back in Redis on a new connection: the counters there go on from
	 * the 5 batches before the stop (plus the 10 if the resumed server
	 * ran them after all) */
	cr_expect_eq(submit_all(&loop, subs + 15, 15), 0);
	expect_each_once(subs + 15, 15, "after the timeout");
	xm_state_stats(&st);
	cr_expect_eq(st.redis_ops, 20, "redis ops %llu", st.redis_ops);
	cr_expect_eq(st.fallback_ops, 10, "fallback ops %llu", st.fallback_ops);
	{
		double c = subs[29].ops[2].result;   /* key 4000 + 29 % 3 */

		/* that counter in Redis: batches 2 (before the stop), 17, 20,
		 * 23, 26 and 29 make 6; up to 10 if the resumed server also ran
		 * 5, 8, 11 and 14, which timed out (never fewer: none lost) */
		cr_expect(c >= 6 && c <= 10, "counter in Redis %g", c);
	}
	stop_redis(pid);
}

Test(pipe, unreachable_redis_runs_in_memory_and_is_marked_down)
{
	int port = free_port();   /* nobody listens there */
	struct sub subs[50];
	struct xm_state_stats st;
	struct xm_buf b = { 0 };
	size_t i;

	configure(port, "xmpipe4:", 1);
	for (i = 0; i < 50; i++)
		fill(&subs[i], i);
	submit_all(&loop, subs, 50);
	expect_each_once(subs, 50, "unreachable");
	/* all counted in memory, none lost (the order may differ: a batch
	 * sent before the refusal was seen runs after those that ran at once
	 * because the monitor had already called Redis down) */
	for (i = 0; i < 3; i++) {
		struct xm_state_op op = { .op = XM_SOP_INCR, .key = 4000 + i,
		    .ttl = 600 };

		xm_state_local(&op, 1, T0 + 1);
		cr_expect_eq(op.result, (50 - i + 2) / 3 + 1, "counter %zu: %g",
		    i, op.result);
	}
	xm_state_stats(&st);
	cr_expect(!st.redis_up, "Redis not marked down");
	cr_expect_eq(st.fallback_ops, 53, "fallback ops %llu", st.fallback_ops);
	cr_expect_eq(st.redis_ops, 0, "redis ops %llu", st.redis_ops);
	cr_expect_geq(st.redis_errors, 1, "errors %llu", st.redis_errors);
	cr_expect(!xm_state_status(&b), "health not degraded: %s", b.data);
	cr_expect(strstr(b.data, "state=memory-fallback\n") != NULL, "%s",
	    b.data);
	xm_buf_free(&b);
}

Test(pipe, memory_only_runs_at_once)
{
	struct sub subs[20];
	struct xm_state_conf c = { .memory = 1 << 20, .redis = "" };
	char err[256];
	size_t i;

	xm_state_reset();
	cr_assert_eq(xm_state_configure(&c, err, sizeof(err)), 0, "%s", err);
	for (i = 0; i < 20; i++)
		fill(&subs[i], i);
	cr_expect_eq(submit_all(&loop, subs, 20), 20);
	expect_each_once(subs, 20, "memory");
	expect_memory_results(subs, 20, "memory");
}

Test(pipe, another_redis_after_a_reload_takes_the_next_batches)
{
	int port_a, port_b;
	pid_t a = start_redis(&port_a), b = start_redis(&port_b);
	struct sub subs[40];
	struct xm_state_stats st;
	char url[64], err[256], reply[4096];
	size_t i, left;
	struct xm_state_conf c = { .memory = 1 << 20, .redis_timeout = 5,
	    .redis_retry = 3600, .redis_prefix = "xmpipe5:" };

	configure(port_a, "xmpipe5:", 5);
	for (i = 0; i < 40; i++)
		fill(&subs[i], i);
	/* 20 batches written to A, not answered yet, when the reload comes */
	answers = 0;
	for (i = 0; i < 20; i++)
		cr_assert(!xm_state_submit(subs[i].ops, 3, T0 + (double)i / 100,
		    on_done, &subs[i]));
	uv_run(&loop, UV_RUN_NOWAIT);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port_b);
	c.redis = url;
	cr_assert_eq(xm_state_configure(&c, err, sizeof(err)), 0, "%s", err);
	for (i = 20; i < 40; i++)
		cr_assert(!xm_state_submit(subs[i].ops, 3, T0 + (double)i / 100,
		    on_done, &subs[i]));
	for (i = 0; i < 2000; i++) {
		size_t k;

		for (k = 0, left = 0; k < 40; k++)
			left += subs[k].answered == 0;
		if (left == 0)
			break;
		uv_run(&loop, UV_RUN_ONCE);
	}
	expect_each_once(subs, 40, "reload");
	xm_state_stats(&st);
	cr_expect_eq(st.fallback_ops, 0, "fallback ops %llu", st.fallback_ops);
	/* each Redis counted its own batches: INCR of key 4000 + 0 */
	cr_expect_eq(subs[18].ops[2].result, 7, "A: %g", subs[18].ops[2].result);
	cr_expect_eq(subs[21].ops[2].result, 1, "B: %g", subs[21].ops[2].result);
	cr_expect_eq(subs[39].ops[2].result, 7, "B: %g", subs[39].ops[2].result);
	/* A's connection closed once its batches were answered: A has only
	 * the client asking now */
	for (i = 0; i < 50; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	cr_assert_gt(raw_cmd(port_a, "*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n",
	    reply, sizeof(reply)), 0);
	cr_expect(strstr(reply, "cmd=client") != NULL, "%s", reply);
	cr_expect(strstr(reply, "cmd=evalsha") == NULL, "the pipelined "
	    "connection to A is still open: %s", reply);
	kill(a, SIGKILL);
	kill(b, SIGKILL);
	waitpid(a, NULL, 0);
	waitpid(b, NULL, 0);
}
