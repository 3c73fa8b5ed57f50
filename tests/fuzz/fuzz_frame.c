/*
 * fuzz_frame.c - libFuzzer target for the protocol: proto_parse_frame,
 * proto_parse_kv and a whole session (session_feed) on arbitrary bytes
 *
 * Build and run: tests/fuzz/README. Seeds: the .in files of
 * tests/transcripts/cases.
 *
 * Besides memory errors (ASan) and undefined behaviour (UBSan) it checks
 * the codec's and the session's promises, aborting when one breaks:
 *   - a parsed frame lies inside the input, and writing it back with
 *     proto_write_frame gives exactly the bytes consumed (one spelling);
 *   - key=value fields have keys of [a-z0-9-] and no CR, LF or NUL;
 *   - what the session sends is a sequence of whole frames, each HELLO,
 *     VERDICT, PONG or BYE, and nothing follows a BYE;
 *   - requests in flight never exceed the daemon's limit;
 *   - session_feed returns -1 exactly when the session is closing.
 * The first input byte picks how the bytes are cut into reads and whether
 * answers are given at once or held until the end (then last first).
 *
 * -DFUZZ_MASK_KNOWN skips inputs that reach bugs already reported (so a
 * campaign can look for new ones): "CANCEL 0" (id 0 is the in-flight
 * set's empty-slot marker, session.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "session.h"
#include "xm.h"

#define MAX_FRAME 4096
#define MAX_INFLIGHT 8

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "fuzz_frame: check failed: %s (%s:%d)\n", #cond, \
	    __FILE__, __LINE__); abort(); } } while (0)

struct ctx {
	bool hold;
	uint64_t held[64];
	size_t nheld;
};

static void
on_filter(void *ud, struct session *s, uint64_t id, const char *event,
    size_t len)
{
	struct ctx *c = ud;

	if (!c->hold || c->nheld == 64) {
		session_verdict(s, id, "action=accept\nscore=0.00\n", 25);
		return;
	}
	c->held[c->nheld++] = id;
}

static void
on_cancel(void *ud, struct session *s, uint64_t id)
{
}

static void
on_hello(void *ud, struct session *s, struct xm_buf *reply, bool health)
{
	xm_buf_puts(reply, "kind=message\ndaemon=xmilterd/fuzz\nstatus=ok\n");
}

static const struct session_ops ops = { on_filter, on_cancel, on_hello };

/* check_kv - the fields' keys and values are as promised */
static void
check_kv(const struct xm_field *f, size_t n)
{
	size_t i;
	const char *p;

	for (i = 0; i < n; i++) {
		CHECK(f[i].key[0] != '\0');
		for (p = f[i].key; *p; p++)
			CHECK((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			    *p == '-');
		CHECK(strpbrk(f[i].value, "\r\n") == NULL);
	}
}

/* codec - frames and bodies straight from the input */
static void
codec(const char *buf, size_t len)
{
	struct xm_arena *a = xm_arena_new();
	size_t off = 0;

	for (;;) {
		struct proto_frame f;
		struct xm_buf again = { 0 };
		struct xm_field *kv;
		size_t used = 0, n, restlen;
		const char *rest;
		char err[128];
		int code = 0, rc;

		rc = proto_parse_frame(buf + off, len - off, MAX_FRAME, &f, &used,
		    &code, err, sizeof(err));
		if (rc <= 0) {
			CHECK(rc == 0 || code == 400 || code == 413);
			break;
		}
		CHECK(used > 0 && used <= len - off);
		CHECK(f.body >= buf + off && f.body + f.len == buf + off + used);
		CHECK(f.len <= MAX_FRAME);
		proto_write_frame(&again, f.verb, f.id, f.body, f.len);
		CHECK(again.len == used && memcmp(again.data, buf + off, used) == 0);
		xm_buf_free(&again);
		if (proto_parse_kv(a, f.body, f.len, 64, &kv, &n, &rest, &restlen,
		    err, sizeof(err)) == 0) {
			CHECK(n <= 64);
			check_kv(kv, n);
			CHECK(rest == NULL || (rest >= f.body &&
			    rest + restlen == f.body + f.len));
		}
		off += used;
	}
	xm_arena_free(a);
}

/* check_output - what the session sent is whole, legal frames */
static void
check_output(const struct xm_buf *out)
{
	size_t off = 0;
	bool bye = false;

	while (off < out->len) {
		struct proto_frame f;
		size_t used;
		char err[128];
		int code;

		CHECK(!bye);
		CHECK(proto_parse_frame(out->data + off, out->len - off,
		    PROTO_MAX_FRAME_LIMIT, &f, &used, &code, err, sizeof(err)) == 1);
		CHECK(f.verb == PROTO_HELLO || f.verb == PROTO_VERDICT ||
		    f.verb == PROTO_PONG || f.verb == PROTO_BYE);
		bye = f.verb == PROTO_BYE;
		off += used;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session_limits lim = { MAX_FRAME, MAX_INFLIGHT, 1 << 20 };
	struct xm_buf all = { 0 };
	struct ctx c = { 0 };
	struct session *s;
	const char *buf = (const char *)data;
	size_t off, chunk, i;
	int rc = 0;

	xm_log_level = XM_LOG_ERR;
#ifdef FUZZ_MASK_KNOWN
	if (memmem(data, size, "CANCEL 0 ", 9) != NULL)
		return 0;
#endif
	codec(buf, size);
	if (size == 0)
		return 0;
	/* first byte: low bits pick the read size, bit 7 holding answers */
	chunk = (size_t)(data[0] & 0x7f);
	c.hold = (data[0] & 0x80) != 0;
	buf++;
	size--;
	if (chunk == 0)
		chunk = size ? size : 1;

	s = session_new(&ops, &c, &lim);
	for (off = 0; off < size && rc == 0; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		rc = session_feed(s, buf + off, n);
		CHECK((rc < 0) == session_closing(s));
		CHECK(session_inflight(s) <= MAX_INFLIGHT);
		xm_buf_append(&all, session_output(s)->data ?
		    session_output(s)->data : "", session_output(s)->len);
		xm_buf_consume(session_output(s), session_output(s)->len);
	}
	for (i = c.nheld; i > 0; i--) {
		session_verdict(s, c.held[i - 1], "action=accept\n", 14);
		CHECK(session_inflight(s) <= MAX_INFLIGHT);
	}
	xm_buf_append(&all, session_output(s)->data ? session_output(s)->data :
	    "", session_output(s)->len);
	check_output(&all);
	xm_buf_free(&all);
	session_free(s);
	return 0;
}
