/*
 * proto.h - the codec of protocol v1 (docs/PROTOCOL.md), free of I/O
 *
 * proto_parse_frame finds one frame in a buffer without copying; the
 * writers append to an xm_buf. Bodies of key=value lines are split by
 * proto_parse_kv into arena strings. Every length is checked against its
 * limit before it is trusted; nothing is allocated from a peer's count.
 */
#ifndef XM_PROTO_H
#define XM_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "xm.h"

#define PROTO_VERSION 1
#define PROTO_MAX_HEADER 64          /* header line, LF included */
#define PROTO_MAX_FRAME_LIMIT (64u * 1024 * 1024)
#define PROTO_MAX_ID INT64_MAX

enum proto_verb {
	PROTO_HELLO = 0,
	PROTO_FILTER,
	PROTO_VERDICT,
	PROTO_CANCEL,
	PROTO_PING,
	PROTO_PONG,
	PROTO_BYE,
	PROTO_RELEASE,    /* admin -> daemon, daemon -> glue (capability) */
	PROTO_RELEASED,   /* glue -> daemon, daemon -> admin */
};

/* BYE codes */
#define PROTO_BYE_OK 200
#define PROTO_BYE_MALFORMED 400
#define PROTO_BYE_TOO_LARGE 413
#define PROTO_BYE_TOO_MANY 429
#define PROTO_BYE_INTERNAL 500
#define PROTO_BYE_SHUTDOWN 503
#define PROTO_BYE_VERSION 505

struct proto_frame {
	enum proto_verb verb;
	uint64_t id;
	const char *body;   /* points into the parsed buffer */
	size_t len;
};

const char *proto_verb_name(enum proto_verb v);

/* proto_parse_frame - look for one frame at BUF[0..len).
 * Returns 1 and fills F and *CONSUMED when a whole frame is there; 0 when
 * more bytes are needed; -1 on a malformed header or a body longer than
 * MAX_FRAME, with *CODE a BYE code and a message in ERR. */
int proto_parse_frame(const char *buf, size_t len, size_t max_frame,
    struct proto_frame *f, size_t *consumed, int *code, char *err,
    size_t errlen);

/* proto_write_frame - append a frame with BODY[0..len) to OUT */
void proto_write_frame(struct xm_buf *out, enum proto_verb v, uint64_t id,
    const char *body, size_t len);

/* proto_parse_kv - split BODY into key=value fields (arena copies); stops
 * at an empty line and sets *REST to what follows it (or NULL). At most
 * MAX fields. 0 or -1 with ERR. */
int proto_parse_kv(struct xm_arena *a, const char *body, size_t len,
    size_t max, struct xm_field **out, size_t *n, const char **rest,
    size_t *restlen, char *err, size_t errlen);

/* proto_kv_get - first value of KEY in F[0..n), or NULL */
const char *proto_kv_get(const struct xm_field *f, size_t n, const char *key);

/* proto_kv_clean - S with CR/LF/NUL replaced by spaces (for values) */
const char *proto_kv_clean(struct xm_arena *a, const char *s);

struct xm_verdict;
/* proto_format_verdict - the body of a VERDICT frame for V */
void proto_format_verdict(struct xm_buf *out, struct xm_arena *a,
    const struct xm_verdict *v);

#endif
