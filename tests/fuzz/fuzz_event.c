/*
 * fuzz_event.c - libFuzzer target for the event parser (xm_event_parse),
 * the typed view, the serialiser and the filter chain
 *
 * Build and run: tests/fuzz/README. Seeds: the .events files of
 * tests/fixtures/events and the .event files of tests/fixtures/guard.
 *
 * Every event in the input is parsed (as `xmilter check` walks a file),
 * then run through a chain (guard and rules) and its verdict formatted as
 * a VERDICT body and as JSON, so the filters are fuzzed too. The chain's
 * configuration is $XM_FUZZ_CONF when set (e.g. etc/xmilter.yml, for the
 * shipped rules), else the built-in defaults. Checks, aborting when one
 * breaks:
 *   - xm_event_parse returns -1, 0 or 1; on 0 it consumed something, no
 *     more than it was given, and the raw stanza is a prefix of the rest;
 *   - the serialised stanza parses again (always), and gives the same
 *     tree (only when built with -DFUZZ_ROUNDTRIP: a stricter property).
 * The first input byte, when it is '!', asks for tight parser limits (so
 * the limit paths are reached with short inputs).
 *
 * -DFUZZ_MASK_KNOWN skips the serialiser checks for trees that reach bugs
 * already reported (so a campaign can look for new ones): a tab, newline
 * or CR in an attribute value (written raw, normalised to a space when
 * parsed again), and a namespaced attribute whose namespace URI holds a
 * character that needs escaping (written unescaped), both in node.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "config.h"
#include "event.h"
#include "proto.h"
#include "xm.h"

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "fuzz_event: check failed: %s (%s:%d)\n", #cond, \
	    __FILE__, __LINE__); abort(); } } while (0)

static struct xm_chain *chain;

/* init - the chain, once */
static void
init(void)
{
	const char *path = getenv("XM_FUZZ_CONF");
	struct xm_config *c;
	char err[1024];

	xm_log_level = XM_LOG_ERR;
	if ((c = xm_config_load(path, err, sizeof(err))) == NULL ||
	    (chain = xm_chain_new(c, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_event: %s\n", err);
		abort();
	}
}

#ifdef FUZZ_ROUNDTRIP
/* same_tree - A and B have the same elements, attributes and text */
static bool
same_tree(const struct xm_node *a, const struct xm_node *b)
{
	size_t i;

	if ((a->name == NULL) != (b->name == NULL))
		return false;
	if (a->name == NULL)
		return a->text_len == b->text_len &&
		    memcmp(a->text, b->text, a->text_len) == 0;
	if (strcmp(a->name, b->name) != 0 || strcmp(a->ns, b->ns) != 0 ||
	    a->nattrs != b->nattrs)
		return false;
	for (i = 0; i < a->nattrs; i++)
		if (strcmp(a->attrs[i].ns, b->attrs[i].ns) != 0 ||
		    strcmp(a->attrs[i].name, b->attrs[i].name) != 0 ||
		    strcmp(a->attrs[i].value, b->attrs[i].value) != 0)
			return false;
	for (a = a->children, b = b->children; a && b; a = a->next, b = b->next)
		if (!same_tree(a, b))
			return false;
	return a == NULL && b == NULL;
}
#endif

#ifdef FUZZ_MASK_KNOWN
/* known_bug - the tree reaches a serialiser bug already reported */
static bool
known_bug(const struct xm_node *n)
{
	size_t i;

	if (n->name == NULL)
		return false;
	for (i = 0; i < n->nattrs; i++)
		if (strpbrk(n->attrs[i].value, "\t\n\r") != NULL ||
		    strpbrk(n->attrs[i].ns, "&<>'\"\r") != NULL)
			return true;
	for (n = n->children; n != NULL; n = n->next)
		if (known_bug(n))
			return true;
	return false;
}
#endif

/* one - everything about one parsed event */
static void
one(struct xm_arena *a, const struct xm_event *ev,
    const struct xm_event_limits *lim)
{
	struct xm_event *again;
	struct xm_task t;
	struct xm_verdict v;
	struct xm_buf body = { 0 };
	struct xm_event_limits big = *lim;
	char *s, err[512];
	size_t used;
	int rc;

	/* the serialised stanza must be XML again (checked before the chain,
	 * which may rewrite the tree for modify); escapes and namespace
	 * declarations may make it longer than the original */
	big.max_stanza = PROTO_MAX_FRAME_LIMIT;
#ifdef FUZZ_MASK_KNOWN
	if (known_bug(ev->root))
		goto chain;
#endif
	s = xm_node_serialize(a, ev->root, NULL);
	rc = xm_event_parse(a, s, strlen(s), &big, &again, &used, err,
	    sizeof(err));
	if (rc != 0)
		fprintf(stderr, "fuzz_event: serialisation does not parse: %s\n"
		    "  raw: %s\n  out: %s\n", err, ev->raw, s);
	CHECK(rc == 0);
#ifdef FUZZ_ROUNDTRIP
	if (!same_tree(ev->root, again->root))
		fprintf(stderr, "fuzz_event: round trip changed the tree\n"
		    "  raw: %s\n  out: %s\n", ev->raw, s);
	CHECK(same_tree(ev->root, again->root));
#endif
#ifdef FUZZ_MASK_KNOWN
chain:
#endif
	xm_task_init(&t, chain, a, ev, ev->time >= 0 ? ev->time : 1e9);
	xm_chain_check(chain, &t, &v);
	proto_format_verdict(&body, a, &v);
	CHECK(body.len > 0);
	xm_buf_free(&body);
	CHECK(xm_verdict_json(a, ev, &v) != NULL);
	CHECK(xm_verdict_logline(a, ev, &v, 1, 0) != NULL);
	CHECK(xm_event_format(a, ev, v.stanza) != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct xm_event_limits lim;
	size_t pos = 0;
	int n;

	if (chain == NULL)
		init();
	xm_event_limits_default(&lim);
	if (size > 0 && data[0] == '!') {
		lim.max_stanza = 2048;
		lim.max_depth = 6;
		lim.max_attrs = 4;
		lim.max_elements = 40;
		lim.max_fields = 4;
		lim.max_field_len = 64;
		pos = 1;
	}
	for (n = 0; n < 64 && pos <= size; n++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_event *ev = NULL;
		size_t used = 0;
		char err[512];
		int rc;

		rc = xm_event_parse(a, buf + pos, size - pos, &lim, &ev, &used, err,
		    sizeof(err));
		CHECK(rc >= -1 && rc <= 1);
		if (rc != 0) {
			xm_arena_free(a);
			break;
		}
		CHECK(used > 0 && used <= size - pos);
		CHECK(ev != NULL && ev->root != NULL && ev->raw != NULL);
		CHECK(ev->raw_len <= used);
		one(a, ev, &lim);
		pos += used;
		xm_arena_free(a);
	}
	return 0;
}
