/*
 * session.h - one protocol connection's state machine, free of I/O
 *
 * The daemon feeds received bytes in and writes out what session_output
 * holds; FILTER requests come out through the ops callbacks, verdicts go
 * back in through session_verdict. Ids in flight are tracked here, so a
 * verdict for a request that was cancelled is dropped, and a client that
 * breaks the rules gets a BYE and the connection is marked closing. The
 * transcript tests drive it directly with bytes and compare the output.
 */
#ifndef XM_SESSION_H
#define XM_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct session;

struct session_ops {
	/* filter - a FILTER request: the owner answers later with
	 * session_verdict (EVENT is only valid during the call) */
	void (*filter)(void *ctx, struct session *s, uint64_t id,
	    const char *event, size_t len);
	/* cancel - the client gave up on ID: drop its work */
	void (*cancel)(void *ctx, struct session *s, uint64_t id);
	/* hello - append the daemon's own HELLO lines (kind=, status=, ...) */
	void (*hello)(void *ctx, struct session *s, struct xm_buf *reply,
	    bool healthcheck);
	/* release - an admin client asks to release quarantined item ID; the
	 * owner answers later with session_release_answer. NULL: the daemon
	 * does not offer release (no admin role, no capability). */
	void (*release)(void *ctx, struct session *s, uint64_t id);
	/* released - a glue confirmed RELEASE ID with BODY (key=value lines,
	 * result=ok|failed, reason=); valid only during the call */
	void (*released)(void *ctx, struct session *s, uint64_t id,
	    const char *body, size_t len);
};

struct session_limits {
	size_t max_frame;        /* the daemon's limit */
	unsigned max_inflight;   /* the daemon's limit */
	size_t max_buffered;     /* output bytes before the reader pauses */
};

struct session *session_new(const struct session_ops *ops, void *ctx,
    const struct session_limits *lim);
void session_free(struct session *s);

/* session_feed - bytes received; returns -1 once the session is closing
 * (a BYE was queued or received): flush the output, then close */
int session_feed(struct session *s, const char *data, size_t len);
/* session_output - bytes to send; the caller consumes what it sent */
struct xm_buf *session_output(struct session *s);
bool session_closing(const struct session *s);
/* session_verdict - answer request ID with BODY; false (nothing sent)
 * when ID is no longer in flight */
bool session_verdict(struct session *s, uint64_t id, const char *body,
    size_t len);
/* session_bye - queue BYE with CODE and REASON and mark closing */
void session_bye(struct session *s, int code, const char *reason);
/* session_bye_code - code of the BYE this side sent, 0 if none */
int session_bye_code(const struct session *s);
/* session_inflight - requests waiting for a verdict */
unsigned session_inflight(const struct session *s);
/* session_server - the client's HELLO server= text, or "" */
const char *session_server(const struct session *s);

/* session_is_admin - the client said role=admin in HELLO */
bool session_is_admin(const struct session *s);
/* session_can_release - a glue that negotiated capability=release and
 * is ready for a RELEASE frame */
bool session_can_release(const struct session *s);
/* session_release - send RELEASE ID with the stored EVENT to this glue;
 * false (nothing sent) unless it can release and ID is not already
 * waiting for its RELEASED */
bool session_release(struct session *s, uint64_t id, const char *event,
    size_t len);
/* session_release_answer - answer an admin's RELEASE ID with RELEASED and
 * BODY; false when ID is not waiting */
bool session_release_answer(struct session *s, uint64_t id, const char *body,
    size_t len);

#endif
