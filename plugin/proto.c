/*
 * proto.c - frame and key=value codec of protocol v1; see proto.h
 *
 * A header is `VERB SP id SP length LF`, at most PROTO_MAX_HEADER bytes.
 * Numbers are plain decimal (no sign, no leading zeros) so that one frame
 * has one spelling; the body length is checked against the negotiated
 * maximum before anything waits for the body.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chain.h"
#include "proto.h"

static const char *verb_names[] = {
	"HELLO", "FILTER", "VERDICT", "CANCEL", "PING", "PONG", "BYE",
	"RELEASE", "RELEASED",
};

/* proto_verb_name - the verb as sent on the wire */
const char *
proto_verb_name(enum proto_verb v)
{
	return (size_t)v < XM_ARRAY_LEN(verb_names) ? verb_names[v] : "?";
}

/* parse_number - decimal at S[0..n): no sign, no leading zero; 0 or -1 */
static int
parse_number(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (max - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* proto_parse_frame - one frame, or need-more, or a protocol error */
int
proto_parse_frame(const char *buf, size_t len, size_t max_frame,
    struct proto_frame *f, size_t *consumed, int *code, char *err,
    size_t errlen)
{
	const char *nl, *sp1, *sp2;
	size_t hl, i;
	uint64_t id, blen;
	int verb = -1;

	nl = memchr(buf, '\n', len < PROTO_MAX_HEADER ? len : PROTO_MAX_HEADER);
	if (nl == NULL) {
		if (len < PROTO_MAX_HEADER)
			return 0;
		*code = PROTO_BYE_MALFORMED;
		snprintf(err, errlen, "header line longer than %d bytes",
		    PROTO_MAX_HEADER);
		return -1;
	}
	hl = (size_t)(nl - buf);
	sp1 = memchr(buf, ' ', hl);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(nl - sp1 - 1)) : NULL;
	if (sp1 == NULL || sp2 == NULL) {
		*code = PROTO_BYE_MALFORMED;
		snprintf(err, errlen, "malformed header (want VERB id length)");
		return -1;
	}
	for (i = 0; i < XM_ARRAY_LEN(verb_names); i++)
		if (strlen(verb_names[i]) == (size_t)(sp1 - buf) &&
		    memcmp(buf, verb_names[i], (size_t)(sp1 - buf)) == 0)
			verb = (int)i;
	if (verb < 0) {
		*code = PROTO_BYE_MALFORMED;
		snprintf(err, errlen, "unknown verb");
		return -1;
	}
	if (parse_number(sp1 + 1, (size_t)(sp2 - sp1 - 1), PROTO_MAX_ID, &id) < 0) {
		*code = PROTO_BYE_MALFORMED;
		snprintf(err, errlen, "bad id");
		return -1;
	}
	if (parse_number(sp2 + 1, (size_t)(nl - sp2 - 1), UINT64_MAX, &blen) < 0) {
		*code = PROTO_BYE_MALFORMED;
		snprintf(err, errlen, "bad length");
		return -1;
	}
	if (blen > max_frame) {
		*code = PROTO_BYE_TOO_LARGE;
		snprintf(err, errlen, "frame body of %llu bytes exceeds %zu",
		    (unsigned long long)blen, max_frame);
		return -1;
	}
	if (len - hl - 1 < blen)
		return 0;
	f->verb = (enum proto_verb)verb;
	f->id = id;
	f->body = nl + 1;
	f->len = (size_t)blen;
	*consumed = hl + 1 + (size_t)blen;
	return 1;
}

/* put_u64 - append N in decimal (every frame and verdict needs a few:
 * printf costs more than the rest of a frame) */
static void
put_u64(struct xm_buf *out, uint64_t n)
{
	char tmp[24], *p = tmp + sizeof(tmp);

	do {
		*--p = (char)('0' + n % 10);
		n /= 10;
	} while (n != 0);
	xm_buf_append(out, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* put_key - append "KEY=VALUE\n" with VALUE cleaned for one line */
static void
put_key(struct xm_buf *out, struct xm_arena *a, const char *key,
    const char *value)
{
	xm_buf_puts(out, key);
	xm_buf_puts(out, proto_kv_clean(a, value));
	xm_buf_append(out, "\n", 1);
}

/* put_score - append a score with two decimals, as "%.2f" would */
static void
put_score(struct xm_buf *out, double score)
{
	double r = score * 100;
	long long c;

	if (!(r > -9e15 && r < 9e15)) {  /* NaN or huge: let printf say it */
		xm_buf_printf(out, "%.2f", score);
		return;
	}
	c = llround(r);
	{
		/* formatted backwards into one piece: "-", digits, ".", two */
		char tmp[32], *p = tmp + sizeof(tmp);
		uint64_t u = (uint64_t)(c < 0 ? -c : c), w = u / 100;

		*--p = (char)('0' + u % 10);
		*--p = (char)('0' + u % 100 / 10);
		*--p = '.';
		do {
			*--p = (char)('0' + w % 10);
			w /= 10;
		} while (w != 0);
		if (c < 0)
			*--p = '-';
		xm_buf_append(out, p, (size_t)(tmp + sizeof(tmp) - p));
	}
}

/* proto_write_frame - header and body appended to OUT */
void
proto_write_frame(struct xm_buf *out, enum proto_verb v, uint64_t id,
    const char *body, size_t len)
{
	xm_buf_puts(out, verb_names[v]);
	xm_buf_append(out, " ", 1);
	put_u64(out, id);
	xm_buf_append(out, " ", 1);
	put_u64(out, len);
	xm_buf_append(out, "\n", 1);
	xm_buf_append(out, body, len);
}

/* proto_parse_kv - key=value lines up to an empty line or the end */
int
proto_parse_kv(struct xm_arena *a, const char *body, size_t len, size_t max,
    struct xm_field **out, size_t *n, const char **rest, size_t *restlen,
    char *err, size_t errlen)
{
	size_t pos = 0, cap = 0, cnt = 0;
	struct xm_field *f = NULL;

	*rest = NULL;
	*restlen = 0;
	while (pos < len) {
		const char *l = body + pos, *nl, *eq;
		size_t ll, kl, i;

		nl = memchr(l, '\n', len - pos);
		ll = nl ? (size_t)(nl - l) : len - pos;
		pos += ll + (nl ? 1 : 0);
		if (ll == 0) {
			*rest = body + pos;
			*restlen = len - pos;
			break;
		}
		eq = memchr(l, '=', ll);
		if (eq == NULL || eq == l) {
			snprintf(err, errlen, "body line %zu is not key=value", cnt + 1);
			return -1;
		}
		kl = (size_t)(eq - l);
		for (i = 0; i < kl; i++)
			if (!((l[i] >= 'a' && l[i] <= 'z') ||
			    (l[i] >= '0' && l[i] <= '9') || l[i] == '-')) {
				snprintf(err, errlen, "bad key in body line %zu",
				    cnt + 1);
				return -1;
			}
		if (memchr(l, '\0', ll) != NULL || memchr(l, '\r', ll) != NULL) {
			snprintf(err, errlen, "NUL or CR in body line %zu", cnt + 1);
			return -1;
		}
		if (cnt >= max) {
			snprintf(err, errlen, "more than %zu lines in body", max);
			return -1;
		}
		f = xm_arena_grow(a, f, &cap, cnt, 1, sizeof(*f));
		f[cnt].key = xm_arena_strndup(a, l, kl);
		f[cnt].value = xm_arena_strndup(a, eq + 1, ll - kl - 1);
		cnt++;
	}
	*out = f;
	*n = cnt;
	return 0;
}

/* proto_kv_get - first value of KEY */
const char *
proto_kv_get(const struct xm_field *f, size_t n, const char *key)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(f[i].key, key) == 0)
			return f[i].value;
	return NULL;
}

/* proto_kv_clean - a value safe for one key=value line */
const char *
proto_kv_clean(struct xm_arena *a, const char *s)
{
	char *c;
	size_t i;

	if (s == NULL || strpbrk(s, "\r\n") == NULL)
		return s;
	c = xm_arena_strdup(a, s);
	for (i = 0; c[i] != '\0'; i++)
		if (c[i] == '\r' || c[i] == '\n')
			c[i] = ' ';
	return c;
}

/* proto_format_verdict - VERDICT body: keys, then the stanza for modify */
void
proto_format_verdict(struct xm_buf *out, struct xm_arena *a,
    const struct xm_verdict *v)
{
	size_t i;

	xm_buf_puts(out, "action=");
	xm_buf_puts(out, xm_action_name(v->action));
	xm_buf_puts(out, "\nscore=");
	put_score(out, v->score);
	xm_buf_append(out, "\n", 1);
	for (i = 0; i < v->nsymbols; i++) {
		const struct xm_symbol *sy = &v->symbols[i];

		xm_buf_puts(out, (sy->flags & XM_SYM_SHADOW) ? "shadow=" : "symbol=");
		xm_buf_puts(out, sy->name);
		xm_buf_append(out, " ", 1);
		put_score(out, sy->score);
		put_key(out, a, " ", sy->detail ? sy->detail : "");
	}
	if (v->condition)
		put_key(out, a, "condition=", v->condition);
	if (v->text)
		put_key(out, a, "text=", v->text);
	if (v->reason)
		put_key(out, a, "reason=", v->reason);
	if (v->scope)
		put_key(out, a, "scope=", v->scope);
	if (v->action == XM_MODIFY && v->stanza) {
		xm_buf_puts(out, "\n");
		xm_buf_puts(out, v->stanza);
	}
}
