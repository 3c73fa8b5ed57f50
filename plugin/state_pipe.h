/*
 * state_pipe.h - the shared state's batches on the event loop, pipelined
 * to Redis (state_pipe.c)
 *
 * The daemon runs the fast stage on its libuv loop; a filter there that
 * waits for state operations (xm_task_state_wait) has them submitted
 * here. Loop thread only.
 */
#ifndef XM_STATE_PIPE_H
#define XM_STATE_PIPE_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "state.h"

/* xm_state_pipe_init - batches may be sent from LOOP from now on */
void xm_state_pipe_init(uv_loop_t *loop);
/* xm_state_submit - run OPS[0..N) at NOW. True when they ran at once
 * (memory only, Redis down or unreachable): DONE is not called. False when
 * they went to Redis: DONE(ARG) is called later on the loop, once the
 * results are in OPS (from Redis, or from the memory table when Redis
 * failed or did not answer in time). OPS must live until then. */
bool xm_state_submit(struct xm_state_op *ops, size_t n, double now,
    void (*done)(void *arg), void *arg);
/* xm_state_pipe_stats - batches written to Redis, and the socket's
 * write and read turns they took (batches per write: the pipelining) */
struct xm_state_pipe_stats {
	unsigned long long batches, writes, reads;
};
void xm_state_pipe_stats(struct xm_state_pipe_stats *s);
/* xm_state_pipe_stop - shutting down: new batches run in memory, each
 * connection closes once what is in flight on it is answered (or has
 * timed out) */
void xm_state_pipe_stop(void);

#endif
