/*
 * session.c - protocol v1 per connection: HELLO, FILTER/VERDICT, CANCEL,
 * PING/PONG, BYE (docs/PROTOCOL.md)
 *
 * Ids in flight live in an open-addressing set sized for max_inflight;
 * nothing here grows with what a peer claims. Any rule broken by the
 * client queues BYE with a code and ends the session; other sessions and
 * the daemon are untouched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "session.h"

enum state { S_HELLO = 0, S_READY, S_CLOSING };

struct session {
	const struct session_ops *ops;
	void *ctx;
	enum state state;
	struct xm_buf in, out;
	size_t max_frame;
	unsigned max_inflight;
	uint64_t last_id;
	uint64_t *set;        /* ids in flight; 0 = empty, UINT64_MAX = gone */
	size_t setcap;
	size_t ntomb;         /* TOMB slots in the set */
	unsigned inflight;
	int bye_code;
	char server[128];
	bool admin;           /* HELLO role=admin: RELEASE requests only */
	bool cap_release;     /* capability=release negotiated (a glue) */
	uint64_t *rel;        /* RELEASE ids sent to this glue, unanswered */
	size_t nrel, caprel;
};

#define TOMB UINT64_MAX

/* slot - home slot of ID */
static size_t
slot(const struct session *s, uint64_t id)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdULL;
	id ^= id >> 33;
	return (size_t)id & (s->setcap - 1);
}

/* set_find - index of ID in the set, or -1 */
static long
set_find(const struct session *s, uint64_t id)
{
	size_t i = slot(s, id), n;

	if (id == 0 || id == TOMB)  /* the set's markers are never ids */
		return -1;
	for (n = 0; n < s->setcap; n++, i = (i + 1) & (s->setcap - 1)) {
		if (s->set[i] == id)
			return (long)i;
		if (s->set[i] == 0)
			return -1;
	}
	return -1;
}

/* set_add - insert ID (the caller checked the count) */
static void
set_add(struct session *s, uint64_t id)
{
	size_t i = slot(s, id);

	while (s->set[i] != 0 && s->set[i] != TOMB)
		i = (i + 1) & (s->setcap - 1);
	if (s->set[i] == TOMB)
		s->ntomb--;
	s->set[i] = id;
	s->inflight++;
}

/* set_del - remove ID; true if it was there */
static bool
set_del(struct session *s, uint64_t id)
{
	long i = set_find(s, id);

	if (i < 0)
		return false;
	s->set[i] = TOMB;
	s->ntomb++;
	/* empty: clear the tombstones, once there are enough of them to
	 * lengthen searches (not at every answer when requests come one at
	 * a time: the set is 16 KB) */
	if (--s->inflight == 0 && s->ntomb >= s->setcap / 4) {
		memset(s->set, 0, s->setcap * sizeof(*s->set));
		s->ntomb = 0;
	}
	return true;
}

/* session_new - a session waiting for HELLO */
struct session *
session_new(const struct session_ops *ops, void *ctx,
    const struct session_limits *lim)
{
	struct session *s = xm_calloc(1, sizeof(*s));

	s->ops = ops;
	s->ctx = ctx;
	s->max_frame = lim->max_frame;
	s->max_inflight = lim->max_inflight ? lim->max_inflight : 1;
	s->setcap = 8;
	while (s->setcap < (size_t)s->max_inflight * 2)
		s->setcap *= 2;
	s->set = xm_calloc(s->setcap, sizeof(*s->set));
	return s;
}

/* session_free - release the session (requests in flight are forgotten) */
void
session_free(struct session *s)
{
	if (s == NULL)
		return;
	xm_buf_free(&s->in);
	xm_buf_free(&s->out);
	free(s->set);
	free(s->rel);
	free(s);
}

/* session_bye - queue BYE and stop reading */
void
session_bye(struct session *s, int code, const char *reason)
{
	struct xm_buf b = { 0 };

	if (s->state == S_CLOSING)
		return;
	xm_buf_printf(&b, "code=%d\nreason=%s\n", code, reason);
	proto_write_frame(&s->out, PROTO_BYE, 0, b.data, b.len);
	xm_buf_free(&b);
	s->bye_code = code;
	s->state = S_CLOSING;
}

/* kv_number - a numeric HELLO value within [1, max], else DEF */
static unsigned long long
kv_number(const struct xm_field *f, size_t n, const char *key,
    unsigned long long max, unsigned long long def)
{
	long long v;

	if (xm_parse_ll(proto_kv_get(f, n, key), 1, (long long)max, &v) < 0)
		return def;
	return (unsigned long long)v;
}

/* on_hello - negotiate version and limits, answer */
static void
on_hello(struct session *s, const struct proto_frame *f)
{
	struct xm_arena *a = xm_arena_new();
	struct xm_field *kv;
	struct xm_buf reply = { 0 };
	const char *rest, *srv;
	size_t n, restlen, i;
	char err[128];
	bool v1 = false, health, offer_release = false;

	if (s->state != S_HELLO) {
		session_bye(s, PROTO_BYE_MALFORMED, "HELLO twice");
		goto out;
	}
	if (f->id != 0) {
		session_bye(s, PROTO_BYE_MALFORMED, "HELLO id must be 0");
		goto out;
	}
	if (proto_parse_kv(a, f->body, f->len, 64, &kv, &n, &rest, &restlen,
	    err, sizeof(err)) < 0) {
		session_bye(s, PROTO_BYE_MALFORMED, err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (strcmp(kv[i].key, "version") == 0 &&
		    strcmp(kv[i].value, "1") == 0)
			v1 = true;
		if (strcmp(kv[i].key, "capability") == 0 &&
		    strcmp(kv[i].value, "release") == 0)
			offer_release = true;
	}
	if (!v1) {
		session_bye(s, PROTO_BYE_VERSION, "no common version (daemon speaks 1)");
		goto out;
	}
	s->max_frame = kv_number(kv, n, "max-frame", s->max_frame, s->max_frame);
	s->max_inflight = (unsigned)kv_number(kv, n, "max-inflight",
	    s->max_inflight, s->max_inflight);
	srv = proto_kv_get(kv, n, "server");
	snprintf(s->server, sizeof(s->server), "%s", srv ? srv : "");
	health = proto_kv_get(kv, n, "healthcheck") != NULL &&
	    strcmp(proto_kv_get(kv, n, "healthcheck"), "1") == 0;

	xm_buf_printf(&reply, "version=1\nmax-frame=%zu\nmax-inflight=%u\n",
	    s->max_frame, s->max_inflight);
	s->ops->hello(s->ctx, s, &reply, health);
	if (proto_kv_get(kv, n, "role") != NULL &&
	    strcmp(proto_kv_get(kv, n, "role"), "admin") == 0) {
		if (s->ops->release == NULL) {
			session_bye(s, PROTO_BYE_MALFORMED, "this daemon has no "
			    "admin role");
			goto out;
		}
		s->admin = true;
		xm_buf_puts(&reply, "role=admin\n");
	} else if (offer_release && s->ops->released != NULL) {
		s->cap_release = true;
		xm_buf_puts(&reply, "capability=release\n");
	}
	proto_write_frame(&s->out, PROTO_HELLO, 0, reply.data, reply.len);
	s->state = S_READY;
	if (health)
		session_bye(s, PROTO_BYE_OK, "health check done");
out:
	xm_buf_free(&reply);
	xm_arena_free(a);
}

/* on_release - an admin's RELEASE request */
static void
on_release(struct session *s, const struct proto_frame *f)
{
	char msg[96];

	if (!s->admin) {
		session_bye(s, PROTO_BYE_MALFORMED, "RELEASE is sent by admin "
		    "clients only");
		return;
	}
	if (f->id == 0 || set_find(s, f->id) >= 0) {
		snprintf(msg, sizeof(msg), "RELEASE %llu: %s",
		    (unsigned long long)f->id, f->id == 0 ? "no such item" :
		    "already requested on this connection");
		session_bye(s, PROTO_BYE_MALFORMED, msg);
		return;
	}
	if (s->inflight >= s->max_inflight) {
		snprintf(msg, sizeof(msg), "more than %u requests in flight",
		    s->max_inflight);
		session_bye(s, PROTO_BYE_TOO_MANY, msg);
		return;
	}
	set_add(s, f->id);
	s->ops->release(s->ctx, s, f->id);
}

/* on_released - a glue's answer to a RELEASE this session sent */
static void
on_released(struct session *s, const struct proto_frame *f)
{
	char msg[96];
	size_t i;

	if (!s->cap_release) {
		session_bye(s, PROTO_BYE_MALFORMED, "RELEASED without the release "
		    "capability");
		return;
	}
	for (i = 0; i < s->nrel; i++)
		if (s->rel[i] == f->id)
			break;
	if (i == s->nrel) {
		snprintf(msg, sizeof(msg), "RELEASED %llu: no such RELEASE is "
		    "waiting", (unsigned long long)f->id);
		session_bye(s, PROTO_BYE_MALFORMED, msg);
		return;
	}
	s->rel[i] = s->rel[--s->nrel];
	s->ops->released(s->ctx, s, f->id, f->body, f->len);
}

/* on_frame - dispatch one frame */
static void
on_frame(struct session *s, const struct proto_frame *f)
{
	char msg[96];

	if (f->verb == PROTO_HELLO) {
		on_hello(s, f);
		return;
	}
	if (s->state == S_HELLO) {
		session_bye(s, PROTO_BYE_MALFORMED, "HELLO must come first");
		return;
	}
	switch (f->verb) {
	case PROTO_RELEASE:
		on_release(s, f);
		return;
	case PROTO_RELEASED:
		on_released(s, f);
		return;
	case PROTO_FILTER:
		if (s->admin) {
			session_bye(s, PROTO_BYE_MALFORMED, "FILTER on an admin "
			    "connection");
			return;
		}
		if (f->id == 0 || f->id <= s->last_id) {
			snprintf(msg, sizeof(msg), "FILTER id %llu does not rise",
			    (unsigned long long)f->id);
			session_bye(s, PROTO_BYE_MALFORMED, msg);
			return;
		}
		if (s->inflight >= s->max_inflight) {
			snprintf(msg, sizeof(msg), "more than %u requests in flight",
			    s->max_inflight);
			session_bye(s, PROTO_BYE_TOO_MANY, msg);
			return;
		}
		s->last_id = f->id;
		set_add(s, f->id);
		s->ops->filter(s->ctx, s, f->id, f->body, f->len);
		return;
	case PROTO_CANCEL:
		if (set_del(s, f->id))
			s->ops->cancel(s->ctx, s, f->id);
		return;
	case PROTO_PING:
		proto_write_frame(&s->out, PROTO_PONG, f->id, f->body, f->len);
		return;
	case PROTO_PONG:
		return;
	case PROTO_BYE:
		s->state = S_CLOSING;
		return;
	default:
		snprintf(msg, sizeof(msg), "%s is not sent by clients",
		    proto_verb_name(f->verb));
		session_bye(s, PROTO_BYE_MALFORMED, msg);
		return;
	}
}

/* session_feed - take bytes, handle every complete frame */
int
session_feed(struct session *s, const char *data, size_t len)
{
	struct proto_frame f;
	size_t used, off = 0;
	char err[128];
	int code, rc;

	if (s->state == S_CLOSING)
		return -1;
	xm_buf_append(&s->in, data, len);
	while (s->state != S_CLOSING) {
		rc = proto_parse_frame(s->in.data + off, s->in.len - off,
		    s->max_frame, &f, &used, &code, err, sizeof(err));
		if (rc == 0)
			break;
		if (rc < 0) {
			session_bye(s, code, err);
			break;
		}
		off += used;
		on_frame(s, &f);
	}
	xm_buf_consume(&s->in, off);
	return s->state == S_CLOSING ? -1 : 0;
}

/* session_output - pending output */
struct xm_buf *
session_output(struct session *s)
{
	return &s->out;
}

/* session_closing - true once BYE was sent or received */
bool
session_closing(const struct session *s)
{
	return s->state == S_CLOSING;
}

/* session_verdict - send the verdict if ID is still waiting */
bool
session_verdict(struct session *s, uint64_t id, const char *body, size_t len)
{
	if (!set_del(s, id) || s->state == S_CLOSING)
		return false;
	proto_write_frame(&s->out, PROTO_VERDICT, id, body, len);
	return true;
}

/* session_bye_code - the code we sent in BYE, 0 if none */
int
session_bye_code(const struct session *s)
{
	return s->bye_code;
}

/* session_inflight - number of requests waiting */
unsigned
session_inflight(const struct session *s)
{
	return s->inflight;
}

/* session_server - what the client said it is */
const char *
session_server(const struct session *s)
{
	return s->server;
}

/* session_is_admin - HELLO said role=admin */
bool
session_is_admin(const struct session *s)
{
	return s->admin;
}

/* session_can_release - a ready glue with the release capability */
bool
session_can_release(const struct session *s)
{
	return s->state == S_READY && s->cap_release &&
	    s->nrel < s->max_inflight;
}

/* session_release - RELEASE ID to the glue, remembered until RELEASED */
bool
session_release(struct session *s, uint64_t id, const char *event,
    size_t len)
{
	size_t i;

	if (!session_can_release(s) || id == 0 || id > PROTO_MAX_ID ||
	    len > s->max_frame)
		return false;
	for (i = 0; i < s->nrel; i++)
		if (s->rel[i] == id)
			return false;
	if (s->nrel == s->caprel) {
		s->caprel = s->caprel ? s->caprel * 2 : 4;
		s->rel = xm_reallocarray(s->rel, s->caprel, sizeof(*s->rel));
	}
	s->rel[s->nrel++] = id;
	proto_write_frame(&s->out, PROTO_RELEASE, id, event, len);
	return true;
}

/* session_release_answer - RELEASED ID to the admin client */
bool
session_release_answer(struct session *s, uint64_t id, const char *body,
    size_t len)
{
	if (!s->admin || !set_del(s, id) || s->state == S_CLOSING)
		return false;
	proto_write_frame(&s->out, PROTO_RELEASED, id, body, len);
	return true;
}
