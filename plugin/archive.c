/*
 * archive.c - archive records, selection, holds, the queue and writers
 *
 * Interface: archive.h. A record (struct xm_archive_item) is packed into
 * one heap block on the event loop: a few string copies, no encoding. The
 * JSON encoding (written directly, no jansson tree) happens on the sink's
 * writer thread. Each sink owns a ring of item pointers bounded by its `queue` setting and one
 * thread that takes up to `batch` items, writes them in one transaction
 * or fsync, and acknowledges them.
 *
 * Failure: a best-effort record that finds the queue full is dropped and
 * counted (overflow), logged at most every 10 s; a batch that fails is
 * retried after a growing delay (the sink is "down" meanwhile) and its
 * must-archive records fail at once, so their stanzas get the failure
 * action instead of waiting. Everything is visible in health.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>


#include "archive.h"

struct archive_waiter {
	int pending;              /* atomic: sinks still to answer */
	int failed;               /* atomic */
	xm_archive_done_fn done;
	void *arg;
};

static void gc_free(struct xm_archive_item *it);

#define VIEW_DOMAIN_MAX 1024  /* a domainpart is at most 1023 bytes */

struct xm_archive {
	const struct xm_config *cf;
	char node[256];
	struct archive_sink **sinks;
	size_t nsinks;
	bool need_domains;  /* a sink selects by domains */
};

/* ---- records ---- */

/* pack - the block being filled by item_new */
struct pack {
	char *p, *end;
};

/* pack_str - copy S (NULL stays NULL) into the block */
static const char *
pack_str(struct pack *pk, const char *s)
{
	size_t n;
	char *r;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	if ((size_t)(pk->end - pk->p) < n)
		panic("archive: record packing overflow");
	r = memcpy(pk->p, s, n);
	pk->p += n;
	return r;
}

/* slen - strlen + 1, 0 for NULL */
static size_t
slen(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

/* texts_len - the length of N texts joined by newlines, with the NUL;
 * 0 when there are none */
static size_t
texts_len(const struct xm_text *t, size_t n)
{
	size_t i, len = 0;

	for (i = 0; i < n; i++)
		len += (t[i].text ? strlen(t[i].text) : 0) + 1;
	return len;
}

/* pack_texts - N texts joined by newlines into the block (NULL when none) */
static const char *
pack_texts(struct pack *pk, const struct xm_text *t, size_t n)
{
	char *r = pk->p;
	size_t i, len;

	if (n == 0)
		return NULL;
	if ((size_t)(pk->end - pk->p) < texts_len(t, n))
		panic("archive: record packing overflow");
	for (i = 0; i < n; i++) {
		if (i > 0)
			*pk->p++ = '\n';
		len = t[i].text ? strlen(t[i].text) : 0;
		memcpy(pk->p, t[i].text ? t[i].text : "", len);
		pk->p += len;
	}
	*pk->p++ = '\0';
	return r;
}

/* bare_len - the length of J's bare JID (before '/'), with the NUL; 0 when
 * J is NULL or empty (no sender / recipient) */
static size_t
bare_len(const char *j)
{
	if (j == NULL || *j == '\0')
		return 0;
	return strcspn(j, "/") + 1;
}

/* pack_bare - J's bare JID in lower case (ASCII) into the block */
static const char *
pack_bare(struct pack *pk, const char *j)
{
	size_t i, n = bare_len(j);
	char *r = pk->p;

	if (n == 0)
		return NULL;
	if ((size_t)(pk->end - pk->p) < n)
		panic("archive: record packing overflow");
	for (i = 0; i + 1 < n; i++)
		r[i] = (char)(j[i] >= 'A' && j[i] <= 'Z' ? j[i] - 'A' + 'a' : j[i]);
	r[n - 1] = '\0';
	pk->p += n;
	return r;
}

/* domain_of - the part after @ of a bare JID (or the JID itself) */
static const char *
domain_of(const char *bare)
{
	const char *at;

	if (bare == NULL)
		return NULL;
	at = strchr(bare, '@');
	return at ? at + 1 : bare;
}

/* xm_archive_item_new - pack one record into one block (no other
 * allocation: the bare JIDs and joined texts are written in place) */
struct xm_archive_item *
xm_archive_item_new(const struct xm_event *ev, const char *event_text,
    size_t event_len, const struct xm_verdict *v, unsigned long long id,
    const char *node, double now)
{
	const char *sjid = NULL, *rjid = NULL, *kind = NULL,
	    *action = xm_action_name(v->action);
	struct xm_archive_item *it;
	struct pack pk;
	size_t need, head, i;
	char *block;

	if (ev != NULL) {
		sjid = ev->from ? ev->from : ev->auth;
		rjid = ev->to;
		kind = xm_kind_name(ev->kind);
	}
	head = sizeof(*it) + v->nsymbols * sizeof(struct xm_archive_sym);
	need = head + event_len + 1 + slen(node) + slen(kind) +
	    bare_len(sjid) + bare_len(rjid) + slen(action) +
	    slen(v->condition) + slen(v->text) + slen(v->reason) +
	    slen(v->scope);
	if (ev != NULL)
		need += texts_len(ev->bodies, ev->nbodies) +
		    texts_len(ev->subjects, ev->nsubjects) +
		    slen(ev->name) + slen(ev->type) + slen(ev->origin) +
		    slen(ev->peer) + slen(ev->ip) + slen(ev->auth) +
		    slen(ev->tls) + slen(ev->roster) + slen(ev->from) +
		    slen(ev->to) + slen(ev->id);
	for (i = 0; i < v->nsymbols; i++)
		need += slen(v->symbols[i].name) + slen(v->symbols[i].detail) +
		    slen(v->symbols[i].filter);
	block = xm_malloc(need);
	memset(block, 0, head);  /* the strings are all written below */
	it = (struct xm_archive_item *)block;
	it->syms = (struct xm_archive_sym *)(block + sizeof(*it));
	pk.p = (char *)(it->syms + v->nsymbols);
	pk.end = block + need;
	it->refs = 1;
	it->id = id;
	it->archived = now;
	it->time = ev != NULL && ev->time >= 0 ? ev->time : now;
	it->node = pack_str(&pk, node);
	it->kind = pack_str(&pk, kind);
	it->sender = pack_bare(&pk, sjid);
	it->recipient = pack_bare(&pk, rjid);
	it->sender_domain = domain_of(it->sender);
	it->recipient_domain = domain_of(it->recipient);
	if (ev != NULL) {
		it->body = pack_texts(&pk, ev->bodies, ev->nbodies);
		it->subject = pack_texts(&pk, ev->subjects, ev->nsubjects);
	}
	it->action = pack_str(&pk, action);
	it->condition = pack_str(&pk, v->condition);
	it->text = pack_str(&pk, v->text);
	it->reason = pack_str(&pk, v->reason);
	it->scope = pack_str(&pk, v->scope);
	it->score = v->score;
	it->malformed = ev == NULL;
	if (ev != NULL) {
		it->name = pack_str(&pk, ev->name);
		it->type = pack_str(&pk, ev->type);
		it->origin = pack_str(&pk, ev->origin);
		it->peer = pack_str(&pk, ev->peer);
		it->ip = pack_str(&pk, ev->ip);
		it->auth = pack_str(&pk, ev->auth);
		it->tls = pack_str(&pk, ev->tls);
		it->roster = pack_str(&pk, ev->roster);
		it->from = pack_str(&pk, ev->from);
		it->to = pack_str(&pk, ev->to);
		it->stanza_id = pack_str(&pk, ev->id);
	}
	it->nsyms = v->nsymbols;
	for (i = 0; i < v->nsymbols; i++) {
		it->syms[i].name = pack_str(&pk, v->symbols[i].name);
		it->syms[i].detail = pack_str(&pk, v->symbols[i].detail);
		it->syms[i].filter = pack_str(&pk, v->symbols[i].filter);
		it->syms[i].score = v->symbols[i].score;
		it->syms[i].shadow = (v->symbols[i].flags & XM_SYM_SHADOW) != 0;
	}
	if ((size_t)(pk.end - pk.p) < event_len + 1)
		panic("archive: record packing overflow");
	if (event_len > 0)
		memcpy(pk.p, event_text, event_len);
	pk.p[event_len] = '\0';
	it->event = pk.p;
	it->event_len = event_len;
	return it;
}

/* xm_archive_item_unref - drop one reference */
void
xm_archive_item_unref(struct xm_archive_item *it)
{
	if (it != NULL && __atomic_sub_fetch(&it->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(it);
}

/* xm_archive_time - RFC 3339, UTC, milliseconds */
char *
xm_archive_time(double t, char *buf, size_t len)
{
	time_t s = (time_t)floor(t);
	int ms = (int)((t - (double)s) * 1000);
	struct tm tm;

	if (ms > 999)
		ms = 999;
	if (ms < 0)
		ms = 0;
	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, ms);
	return buf;
}

/* js_str - S[0..n) as a JSON string, written as jansson writes it
 * (compact, UTF-8 kept, "\\ \" and the control characters escaped);
 * invalid UTF-8 and NUL become U+FFFD */
static void
js_str(struct xm_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *p = s, *end = s + n, *run = s;

	xm_buf_append(b, "\"", 1);
	while (p < end) {
		unsigned char c = (unsigned char)*p;
		const char *q = p;
		char esc[6];
		size_t elen = 2;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			p++;
			continue;
		}
		if (c >= 0x80) {
			if (xm_utf8_next(&p, end) >= 0)
				continue;  /* a valid multi-byte character */
			p = q + 1;
		} else
			p++;
		xm_buf_append(b, run, (size_t)(q - run));
		run = p;
		if (c >= 0x80 || c == 0) {
			xm_buf_append(b, "\xef\xbf\xbd", 3);
			continue;
		}
		esc[0] = '\\';
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			elen = 6;
		}
		xm_buf_append(b, esc, elen);
	}
	xm_buf_append(b, run, (size_t)(p - run));
	xm_buf_append(b, "\"", 1);
}

/* js_key - ,"KEY": */
static void
js_key(struct xm_buf *b, const char *key)
{
	xm_buf_append(b, ",\"", 2);
	xm_buf_puts(b, key);
	xm_buf_append(b, "\":", 2);
}

/* js_set_str - ,"KEY":"S" unless S is NULL */
static void
js_set_str(struct xm_buf *b, const char *key, const char *s)
{
	if (s == NULL)
		return;
	js_key(b, key);
	js_str(b, s, strlen(s));
}

/* js_set_real - ,"KEY":D as jansson writes a real with precision 15
 * ("%.15g", ".0" when it would read as an integer, no '+' or leading
 * zeros in the exponent); nothing for NaN and infinities (jansson has no
 * such reals either) */
static void
js_set_real(struct xm_buf *b, const char *key, double d)
{
	char num[64], *e, *from, *to;

	if (!isfinite(d))
		return;
	snprintf(num, sizeof(num), "%.15g", d);
	if (strchr(num, '.') == NULL && strchr(num, 'e') == NULL)
		strcat(num, ".0");
	if ((e = strchr(num, 'e')) != NULL) {
		to = e + 1;
		from = to + 1;
		if (*to == '-')
			to++;
		while (*from == '0')
			from++;
		if (from != to)
			memmove(to, from, strlen(from) + 1);
	}
	js_key(b, key);
	xm_buf_puts(b, num);
}

/* base64 - standard base64 of P[0..n), heap */
static char *
base64(const unsigned char *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = xm_malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		*o++ = tab[p[i] >> 2];
		*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*o++ = tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*o++ = tab[p[i + 2] & 63];
	}
	if (i < n) {
		*o++ = tab[p[i] >> 2];
		if (i + 1 < n) {
			*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			*o++ = tab[(p[i + 1] & 15) << 2];
		} else {
			*o++ = tab[(p[i] & 3) << 4];
			*o++ = '=';
		}
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/* xm_archive_encode - one compact JSON object, written directly (no
 * jansson tree: on the writer thread this was most of a record's
 * encoding cost); byte for byte what json_dumps(JSON_COMPACT |
 * JSON_REAL_PRECISION(15)) writes for the same members in this order */
char *
xm_archive_encode(const struct xm_archive_item *it)
{
	struct xm_buf b = { 0 };
	char tbuf[40];
	size_t i, mark;

	xm_buf_printf(&b, "{\"v\":%d", XM_ARCHIVE_FORMAT);
	js_set_str(&b, "time", xm_archive_time(it->time, tbuf, sizeof(tbuf)));
	js_set_real(&b, "t", floor(it->time * 1000) / 1000);
	js_set_str(&b, "archived", xm_archive_time(it->archived, tbuf,
	    sizeof(tbuf)));
	js_set_str(&b, "node", it->node);
	js_key(&b, "id");
	xm_buf_printf(&b, "%lld", (long long)it->id);
	js_set_str(&b, "kind", it->kind);
	js_set_str(&b, "stanza", it->name);
	js_set_str(&b, "type", it->type);
	js_set_str(&b, "origin", it->origin);
	js_set_str(&b, "peer", it->peer);
	js_set_str(&b, "ip", it->ip);
	js_set_str(&b, "auth", it->auth);
	js_set_str(&b, "tls", it->tls);
	js_set_str(&b, "roster", it->roster);
	js_set_str(&b, "from", it->from);
	js_set_str(&b, "to", it->to);
	js_set_str(&b, "stanza_id", it->stanza_id);
	js_set_str(&b, "sender", it->sender);
	js_set_str(&b, "recipient", it->recipient);
	js_set_str(&b, "subject", it->subject);
	js_set_str(&b, "body", it->body);
	js_set_str(&b, "action", it->action);
	js_set_real(&b, "score", it->score);
	js_set_str(&b, "condition", it->condition);
	js_set_str(&b, "text", it->text);
	js_set_str(&b, "reason", it->reason);
	js_set_str(&b, "scope", it->scope);
	if (it->malformed)
		xm_buf_puts(&b, ",\"malformed\":true");
	xm_buf_puts(&b, ",\"symbols\":[");
	for (i = 0; i < it->nsyms; i++) {
		if (i > 0)
			xm_buf_append(&b, ",", 1);
		xm_buf_append(&b, "{", 1);
		/* a member jansson would drop (NULL) leaves no comma */
		mark = b.len;
		js_set_str(&b, "name", it->syms[i].name);
		js_set_real(&b, "score", it->syms[i].score);
		if (it->syms[i].detail && *it->syms[i].detail)
			js_set_str(&b, "detail", it->syms[i].detail);
		js_set_str(&b, "filter", it->syms[i].filter);
		if (it->syms[i].shadow)
			xm_buf_puts(&b, ",\"shadow\":true");
		if (b.len > mark) {  /* the first member's comma goes */
			memmove(b.data + mark, b.data + mark + 1, b.len - mark);
			b.len--;
		}
		xm_buf_append(&b, "}", 1);
	}
	xm_buf_append(&b, "]", 1);
	js_key(&b, "event");
	js_str(&b, it->event, it->event_len);
	if (!xm_utf8_valid(it->event, it->event_len) ||
	    memchr(it->event, '\0', it->event_len) != NULL) {
		char *b64 = base64((const unsigned char *)it->event,
		    it->event_len);

		js_key(&b, "event_base64");
		xm_buf_puts(&b, "\"");
		xm_buf_puts(&b, b64);
		xm_buf_puts(&b, "\"");
		free(b64);
	}
	xm_buf_append(&b, "}", 1);
	return b.data;
}

/* ---- selection and holds ---- */

/* xm_archive_selects - every non-empty criterion holds */
bool
xm_archive_selects(const struct xm_archive_sink_conf *k,
    const struct xm_archive_item *it)
{
	if (k->actions.n && !xm_strlist_has(&k->actions, it->action))
		return false;
	if (k->origins.n && !xm_strlist_has(&k->origins, it->origin))
		return false;
	if (k->kinds.n && !xm_strlist_has(&k->kinds, it->kind))
		return false;
	if (k->scopes.n && !xm_strlist_has(&k->scopes, it->scope))
		return false;
	if (k->peers.n && !xm_domain_listed(&k->peers, it->peer))
		return false;
	if (k->domains.n && !xm_domain_listed(&k->domains, it->sender_domain) &&
	    !xm_domain_listed(&k->domains, it->recipient_domain))
		return false;
	return true;
}

/* account_held - JID matches one hold pattern (bare JID or *@domain) */
static bool
account_held(const struct xm_strlist *l, const char *jid)
{
	size_t i;

	if (jid == NULL)
		return false;
	for (i = 0; i < l->n; i++) {
		const char *p = l->v[i];

		if (strncmp(p, "*@", 2) == 0) {
			if (strcasecmp(domain_of(jid), p + 2) == 0)
				return true;
		} else if (strcasecmp(p, jid) == 0)
			return true;
	}
	return false;
}

/* xm_archive_held - legal hold by account or period */
bool
xm_archive_held(const struct xm_archive_conf *a, const char *sender,
    const char *recipient, double t)
{
	size_t i;

	if (account_held(&a->hold_accounts, sender) ||
	    account_held(&a->hold_accounts, recipient))
		return true;
	for (i = 0; i < a->hold_periods.n; i++) {
		const char *p = a->hold_periods.v[i], *slash = strchr(p, '/');
		char start[64];
		double t0, t1;

		if (slash == NULL || (size_t)(slash - p) >= sizeof(start))
			continue;
		memcpy(start, p, (size_t)(slash - p));
		start[slash - p] = '\0';
		if (xm_parse_time(start, &t0) == 0 &&
		    xm_parse_time(slash + 1, &t1) == 0 && t >= t0 && t <= t1)
			return true;
	}
	return false;
}

/* xm_archive_retention - per-scope retention, else the sink's */
double
xm_archive_retention(const struct xm_archive_sink_conf *k, const char *scope)
{
	size_t i, n;
	double d;

	for (i = 0; scope != NULL && i < k->retention_scopes.n; i++) {
		const char *it = k->retention_scopes.v[i];

		n = strcspn(it, "=");
		if (strlen(scope) == n && strncmp(it, scope, n) == 0 &&
		    it[n] == '=' && xm_config_duration(it + n + 1, &d) == 0)
			return d;
	}
	return k->retention;
}

/* xm_archive_words_match - each word in A or B, ASCII case folded */
bool
xm_archive_words_match(const char *words, const char *a, const char *b)
{
	const char *p = words;

	while (*p) {
		size_t n;
		char w[256];

		p += strspn(p, " \t\n");
		n = strcspn(p, " \t\n");
		if (n == 0)
			break;
		if (n >= sizeof(w))
			n = sizeof(w) - 1;
		memcpy(w, p, n);
		w[n] = '\0';
		p += strcspn(p, " \t\n");
		if (!(a && strcasestr(a, w)) && !(b && strcasestr(b, w)))
			return false;
	}
	return true;
}

/* ---- the hash chain ---- */

/* xm_archive_sha256_hex - hex digest */
void
xm_archive_sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char d[32];

	xm_sha256(p, n, d);
	xm_hex(d, sizeof(d), out);
}

/* xm_archive_chain_line - {"seq":..,"prev":"..",<record>,"hash":".."} */
char *
xm_archive_chain_line(const char *record, unsigned long long seq,
    const char *prev, char hash[65])
{
	struct xm_buf b = { 0 };
	size_t rl = strlen(record);

	if (rl < 2 || record[0] != '{' || record[rl - 1] != '}')
		panic("archive: a record is not a JSON object");
	xm_buf_printf(&b, "{\"seq\":%llu,\"prev\":\"%s\"", seq, prev);
	if (rl > 2) {
		xm_buf_puts(&b, ",");
		xm_buf_append(&b, record + 1, rl - 2);
	}
	xm_archive_sha256_hex(b.data, b.len, hash);
	xm_buf_printf(&b, ",\"hash\":\"%s\"}", hash);
	return b.data;
}

/* is_hex64 - 64 lower-case hex digits */
static bool
is_hex64(const char *s)
{
	size_t i;

	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* xm_archive_chain_check - one line's own hash, seq and prev */
int
xm_archive_chain_check(const char *line, size_t len, unsigned long long *seq,
    char prev[65], char hash[65], char *err, size_t errlen)
{
	static const char tail[] = ",\"hash\":\"";
	const size_t tl = sizeof(tail) - 1;
	char want[65], *end;
	const char *p;
	unsigned long long s;

	if (len < tl + 64 + 2 || line[len - 1] != '}' || line[len - 2] != '"' ||
	    memcmp(line + len - 2 - 64 - tl, tail, tl) != 0 ||
	    !is_hex64(line + len - 66)) {
		snprintf(err, errlen, "no hash at the end of the line");
		return -1;
	}
	memcpy(hash, line + len - 66, 64);
	hash[64] = '\0';
	xm_archive_sha256_hex(line, len - 2 - 64 - tl, want);
	if (strcmp(want, hash) != 0) {
		snprintf(err, errlen, "hash mismatch: the line was altered");
		return -1;
	}
	if (strncmp(line, "{\"seq\":", 7) != 0) {
		snprintf(err, errlen, "no seq at the start of the line");
		return -1;
	}
	errno = 0;
	s = strtoull(line + 7, &end, 10);
	if (errno != 0 || end == line + 7 || strncmp(end, ",\"prev\":\"", 9) != 0 ||
	    (size_t)(end + 9 + 65 - line) > len || !is_hex64(end + 9) ||
	    end[9 + 64] != '"') {
		snprintf(err, errlen, "malformed seq or prev");
		return -1;
	}
	p = end + 9;
	memcpy(prev, p, 64);
	prev[64] = '\0';
	*seq = s;
	return 0;
}

/* ---- the running archive ---- */

/* sink_ops_of - the implementation of a sink type */
static const struct archive_sink_ops *
sink_ops_of(int type)
{
	switch (type) {
	case XM_ARCHIVE_SQLITE: return &xm_archive_sqlite_ops;
	case XM_ARCHIVE_JSONL: return &xm_archive_jsonl_ops;
	case XM_ARCHIVE_COMMAND: return &xm_archive_cmd_ops;
	default: return &xm_archive_pg_ops;
	}
}

/* xm_archive_sink_open - opened sink, no thread */
struct archive_sink *
xm_archive_sink_open(const struct xm_archive_conf *a,
    const struct xm_archive_sink_conf *k, bool readonly, char *err,
    size_t errlen)
{
	struct archive_sink *s = xm_calloc(1, sizeof(*s));

	s->readonly = readonly;
	s->conf = k;
	s->aconf = a;
	s->ops = sink_ops_of(k->type);
	s->node = "";
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_cond_init(&s->idle, NULL);
	s->cap = (size_t)k->queue;
	s->ring = xm_calloc(s->cap, sizeof(*s->ring));
	if (s->ops->open(s, err, errlen) < 0) {
		xm_archive_sink_close(s);
		return NULL;
	}
	return s;
}

/* xm_archive_sink_close - close and free a sink without a thread */
void
xm_archive_sink_close(struct archive_sink *s)
{
	if (s == NULL)
		return;
	if (s->ops->close)
		s->ops->close(s);
	gc_free(s->garbage);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	pthread_cond_destroy(&s->idle);
	free(s->ring);
	free(s);
}

/* waiter_answer - one must-archive sink is done with IT */
static void
waiter_answer(struct xm_archive_item *it, bool ok)
{
	struct archive_waiter *w = it->waiter;

	if (w == NULL)
		return;
	if (!ok)
		__atomic_store_n(&w->failed, 1, __ATOMIC_RELEASE);
	if (__atomic_sub_fetch(&w->pending, 1, __ATOMIC_ACQ_REL) == 0) {
		if (w->done != NULL)
			w->done(w->arg, __atomic_load_n(&w->failed,
			    __ATOMIC_ACQUIRE) == 0);
		free(w);
	}
}

/* sink_note_error - remember and log (at most every 10 s) a failure */
static void
sink_note_error(struct archive_sink *s, const char *what, const char *err)
{
	double now = xm_monotonic();

	pthread_mutex_lock(&s->mu);
	snprintf(s->last_error, sizeof(s->last_error), "%s", err);
	s->last_error_at = xm_now();
	s->failures++;
	pthread_mutex_unlock(&s->mu);
	if (now - s->last_log >= 10 || s->last_log == 0) {
		s->last_log = now;
		log_warn("archive %s: %s: %s", s->conf->name, what, err);
	}
}

/* gc_free - free a garbage list */
static void
gc_free(struct xm_archive_item *it)
{
	struct xm_archive_item *next;

	for (; it != NULL; it = next) {
		next = it->gc_next;
		free(it);
	}
}

/* set_ready - the connected state, under the lock (health reads it) */
static void
set_ready(struct archive_sink *s, bool ready)
{
	pthread_mutex_lock(&s->mu);
	s->ready = ready;
	pthread_mutex_unlock(&s->mu);
}

/* sink_wait - sleep SECS unless the sink is stopping; true when stopping */
static bool
sink_wait(struct archive_sink *s, double secs)
{
	struct timespec ts;
	double t;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	t = (double)ts.tv_sec + ts.tv_nsec / 1e9 + secs;
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	pthread_mutex_lock(&s->mu);
	if (!s->stop)
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/* sink_purge_maybe - the periodic retention purge, on the writer thread */
static void
sink_purge_maybe(struct archive_sink *s)
{
	double now = xm_now();
	long long n = 0;
	char err[256];

	if (s->ops->purge == NULL || s->conf->purge_interval < 0 || !s->ready ||
	    now - s->last_purge < s->conf->purge_interval)
		return;
	s->last_purge = now;
	if (s->ops->purge(s, now, false, &n, err, sizeof(err)) < 0)
		sink_note_error(s, "purge", err);
	else if (n > 0)
		log_info("archive %s: purged %lld record%s past retention",
		    s->conf->name, n, n == 1 ? "" : "s");
}

/* sink_thread - take batches, write, acknowledge; retry when down */
static void *
sink_thread(void *arg)
{
	struct archive_sink *s = arg;
	const struct xm_archive_sink_conf *k = s->conf;
	size_t max = (size_t)k->batch, n, done, i;
	struct xm_archive_item **batch = xm_calloc(max, sizeof(*batch));
	double delay = k->restart_delay;
	bool must = k->guarantee == XM_ARCHIVE_MUST;
	char err[256];
	int stopping_tries = 0;
	double next_try = 0;
	sigset_t pipe_set;
	struct xm_archive_item *gc;

	/* best-effort: filtering first when the CPU is short (Linux: the nice
	 * value of one thread) */
	if (!must && k->nice > 0 && setpriority(PRIO_PROCESS,
	    (id_t)syscall(SYS_gettid), (int)k->nice) < 0)
		log_warn("archive %s: nice %lld: %s", k->name, k->nice,
		    strerror(errno));
	/* a consumer that went away is an EPIPE here, never a dead process */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);

	if (s->ops->connect(s, err, sizeof(err)) == 0)
		set_ready(s, true);
	else {
		sink_note_error(s, "unavailable", err);
		next_try = xm_monotonic() + delay;
	}
	for (;;) {
		pthread_mutex_lock(&s->mu);
		while (s->len == 0 && !s->stop) {
			struct timespec ts;

			s->busy = false;
			pthread_cond_broadcast(&s->idle);
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&s->cv, &s->mu, &ts);
			if (s->len == 0 && !s->stop) {
				pthread_mutex_unlock(&s->mu);
				if (!s->ready && xm_monotonic() >= next_try) {
					/* down and idle: reconnect in the background so
					 * must-archive records are taken again */
					if (s->ops->connect(s, err, sizeof(err)) == 0) {
						set_ready(s, true);
						delay = k->restart_delay;
						log_info("archive %s: available again",
						    k->name);
					} else {
						next_try = xm_monotonic() + delay;
						delay = delay * 2 > 30 ? 30 : delay * 2;
					}
				}
				sink_purge_maybe(s);
				pthread_mutex_lock(&s->mu);
			}
		}
		if (s->len == 0 && s->stop) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		if (!must && k->linger > 0 && s->len < max && !s->stop) {
			/* best-effort: let a batch gather (fewer commits, fsyncs
			 * and wake-ups); a full batch signals at once */
			struct timespec ts;
			double t;

			clock_gettime(CLOCK_REALTIME, &ts);
			t = (double)ts.tv_sec + ts.tv_nsec / 1e9 + k->linger;
			ts.tv_sec = (time_t)t;
			ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
			while (s->len < max && !s->stop &&
			    pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
				;
		}
		s->busy = true;
		for (n = 0; n < max && s->len > 0; n++) {
			batch[n] = s->ring[s->head];
			s->head = (s->head + 1) % s->cap;
			__atomic_fetch_sub(&s->len, 1, __ATOMIC_RELAXED);
		}
		pthread_mutex_unlock(&s->mu);

		done = 0;
		if (!s->ready && s->ops->connect(s, err, sizeof(err)) < 0) {
			sink_note_error(s, "unavailable", err);
		} else {
			if (!s->ready)
				set_ready(s, true);
			if (s->ops->write(s, batch, n, must || k->fsync, &done, err,
			    sizeof(err)) < 0) {
				sink_note_error(s, "write failed", err);
				set_ready(s, false);  /* connect() again first */
			}
		}
		gc = NULL;
		for (i = 0; i < done; i++) {
			if (must)  /* the waiter counts must-archive sinks only */
				waiter_answer(batch[i], true);
			if (__atomic_sub_fetch(&batch[i]->refs, 1,
			    __ATOMIC_ACQ_REL) == 0) {
				batch[i]->gc_next = gc;
				gc = batch[i];
			}
		}
		/* one short hold of the lock per batch: a writer at nice 10
		 * preempted while holding it would stall the event loop */
		pthread_mutex_lock(&s->mu);
		s->written += done;
		while (gc != NULL) {
			struct xm_archive_item *next = gc->gc_next;

			gc->gc_next = s->garbage;
			s->garbage = gc;
			gc = next;
		}
		pthread_mutex_unlock(&s->mu);
		if (done == n) {
			delay = k->restart_delay;
			stopping_tries = 0;
			continue;
		}
		/* the rest failed: must-archive records fail now (their stanzas
		 * get the failure action); best-effort ones go back in front */
		pthread_mutex_lock(&s->mu);
		for (i = n; i > done; i--) {
			struct xm_archive_item *it = batch[i - 1];

			if (must || s->len == s->cap ||
			    (s->stop && stopping_tries >= 2)) {
				if (must)
					s->must_failed++;
				else
					s->lost++;
				pthread_mutex_unlock(&s->mu);
				if (must)
					waiter_answer(it, false);
				pthread_mutex_lock(&s->mu);
				if (__atomic_sub_fetch(&it->refs, 1, __ATOMIC_ACQ_REL) == 0) {
					it->gc_next = s->garbage;
					s->garbage = it;
				}
				continue;
			}
			s->head = (s->head + s->cap - 1) % s->cap;
			s->ring[s->head] = it;
			__atomic_fetch_add(&s->len, 1, __ATOMIC_RELAXED);
		}
		pthread_mutex_unlock(&s->mu);
		if (s->stop) {
			/* stopping: a few more tries half a second apart */
			stopping_tries++;
			usleep(500000);
			continue;
		}
		sink_wait(s, delay);
		delay = delay * 2 > 30 ? 30 : delay * 2;
	}
	free(batch);
	return NULL;
}

/* xm_archive_open - every sink of CF, opened, with its thread */
struct xm_archive *
xm_archive_open(const struct xm_config *cf, char *err, size_t errlen)
{
	const struct xm_archive_conf *ac = &cf->archive;
	struct xm_archive *a;
	size_t i;

	err[0] = '\0';
	if (ac->nsinks == 0)
		return NULL;
	a = xm_calloc(1, sizeof(*a));
	a->cf = cf;
	if (ac->node && *ac->node)
		snprintf(a->node, sizeof(a->node), "%s", ac->node);
	else if (gethostname(a->node, sizeof(a->node) - 1) < 0)
		snprintf(a->node, sizeof(a->node), "xmilterd");
	a->sinks = xm_calloc(ac->nsinks, sizeof(*a->sinks));
	for (i = 0; i < ac->nsinks; i++) {
		char e[512];
		struct archive_sink *s = xm_archive_sink_open(ac, &ac->sinks[i],
		    false, e, sizeof(e));

		if (s == NULL) {
			snprintf(err, errlen, "archive sink %s: %s",
			    ac->sinks[i].name, e);
			xm_archive_close(a);
			return NULL;
		}
		s->node = a->node;
		if (ac->sinks[i].domains.n > 0)
			a->need_domains = true;
		s->ready = false;  /* the thread connects (or re-checks) first */
		a->sinks[a->nsinks++] = s;
		if (pthread_create(&s->thread, NULL, sink_thread, s) != 0)
			fatalx("archive: cannot start a writer thread");
		s->started = true;
	}
	return a;
}

/* xm_archive_close - drain, stop, free */
void
xm_archive_close(struct xm_archive *a)
{
	size_t i;

	if (a == NULL)
		return;
	for (i = 0; i < a->nsinks; i++) {
		struct archive_sink *s = a->sinks[i];

		pthread_mutex_lock(&s->mu);
		s->stop = true;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
	}
	for (i = 0; i < a->nsinks; i++) {
		struct archive_sink *s = a->sinks[i];

		if (s->started)
			pthread_join(s->thread, NULL);
		while (s->len > 0) {  /* only when the thread gave up */
			struct xm_archive_item *it = s->ring[s->head];

			s->head = (s->head + 1) % s->cap;
			__atomic_fetch_sub(&s->len, 1, __ATOMIC_RELAXED);
			s->lost++;
			if (s->conf->guarantee == XM_ARCHIVE_MUST)
				waiter_answer(it, false);
			xm_archive_item_unref(it);
		}
		if (s->lost + s->must_failed > 0)
			log_warn("archive %s: %llu record(s) could not be written "
			    "before the end", s->conf->name, s->lost + s->must_failed);
		xm_archive_sink_close(s);
	}
	free(a->sinks);
	free(a);
}

/* note_overflow - a best-effort record S selected found its queue full:
 * count it (atomic: health reads it) and log at most every 10 s */
static void
note_overflow(struct archive_sink *s)
{
	unsigned long long n = __atomic_add_fetch(&s->overflow, 1,
	    __ATOMIC_RELAXED);
	double t = xm_monotonic();

	if (t - s->last_overflow_log >= 10 || s->last_overflow_log == 0) {
		s->last_overflow_log = t;
		log_warn("archive %s: queue full (%lld records): record "
		    "dropped, %llu so far", s->conf->name, s->conf->queue, n);
	}
}

/* view_domain - the domain of JID's bare part (after the first '@',
 * before '/'; the whole bare JID without '@'), pointing into JID or
 * copied into BUF; false when it does not fit BUF */
static bool
view_domain(const char *jid, char *buf, const char **out)
{
	const char *slash, *at, *d;
	size_t n;

	*out = NULL;
	if (jid == NULL || *jid == '\0')
		return true;
	slash = strchr(jid, '/');
	if (slash == NULL) {
		at = strchr(jid, '@');
		*out = at ? at + 1 : jid;
		return true;
	}
	at = memchr(jid, '@', (size_t)(slash - jid));
	d = at ? at + 1 : jid;
	n = (size_t)(slash - d);
	if (n >= VIEW_DOMAIN_MAX)
		return false;
	memcpy(buf, d, n);
	buf[n] = '\0';
	*out = buf;
	return true;
}

/* record_view - the fields selection reads, of EV/V, into VIEW without
 * copying the record (domains only when a sink selects by them, copied
 * into SDOM/RDOM when a resource follows); false when a domain is too
 * long for the buffers (then select on the packed record) */
static bool
record_view(const struct xm_archive *a, const struct xm_event *ev,
    const struct xm_verdict *v, struct xm_archive_item *view,
    char sdom[VIEW_DOMAIN_MAX], char rdom[VIEW_DOMAIN_MAX])
{
	memset(view, 0, sizeof(*view));
	view->action = xm_action_name(v->action);
	view->scope = v->scope;
	view->malformed = ev == NULL;
	if (ev == NULL)
		return true;
	view->kind = xm_kind_name(ev->kind);
	view->origin = ev->origin;
	view->peer = ev->peer;
	if (!a->need_domains)
		return true;
	return view_domain(ev->from ? ev->from : ev->auth, sdom,
	    &view->sender_domain) && view_domain(ev->to, rdom,
	    &view->recipient_domain);
}

/* xm_archive_selects_view - xm_archive_selects on the view of EV/V that
 * xm_archive_submit uses (for tests: the same answer as on the record) */
int
xm_archive_selects_view(const struct xm_archive_sink_conf *k,
    const struct xm_event *ev, const struct xm_verdict *v)
{
	struct xm_archive a = { .need_domains = true };
	struct xm_archive_item view;
	char sdom[VIEW_DOMAIN_MAX], rdom[VIEW_DOMAIN_MAX];

	if (!record_view(&a, ev, v, &view, sdom, rdom))
		return -1;
	return xm_archive_selects(k, &view) ? 1 : 0;
}

/* xm_archive_submit - queue the record in every sink that selects it */
int
xm_archive_submit(struct xm_archive *a, const struct xm_event *ev,
    const char *event_text, size_t event_len, const struct xm_verdict *v,
    unsigned long long id, double now, xm_archive_done_fn done, void *arg)
{
	struct xm_archive_item *it;
	struct archive_waiter *w = NULL;
	struct archive_sink *take[XM_ARCHIVE_MAX_SINKS];
	struct xm_archive_item view;
	char sdom[VIEW_DOMAIN_MAX], rdom[VIEW_DOMAIN_MAX];
	size_t i, ntake = 0, nmust = 0;
	int refused = 0;

	if (a == NULL)
		return 0;
	/* free what the writers are done with (here, in the allocating
	 * thread's malloc arena); a busy lock is left for the next time, and
	 * an empty list costs no lock */
	for (i = 0; i < a->nsinks; i++) {
		struct xm_archive_item *g;

		if (__atomic_load_n(&a->sinks[i]->garbage, __ATOMIC_RELAXED) ==
		    NULL || pthread_mutex_trylock(&a->sinks[i]->mu) != 0)
			continue;
		g = a->sinks[i]->garbage;
		a->sinks[i]->garbage = NULL;
		pthread_mutex_unlock(&a->sinks[i]->mu);
		gc_free(g);
	}
	(void)now;
	/* select on a view of the event (no copy), and count a best-effort
	 * sink whose queue is full as overflow before anything is packed:
	 * at saturation most best-effort records end there, and they cost
	 * the loop no allocation, copy or lock */
	if (record_view(a, ev, v, &view, sdom, rdom)) {
		for (i = 0; i < a->nsinks && ntake < XM_ARRAY_LEN(take); i++) {
			struct archive_sink *s = a->sinks[i];

			if (!xm_archive_selects(s->conf, &view))
				continue;
			if (s->conf->guarantee != XM_ARCHIVE_MUST &&
			    __atomic_load_n(&s->len, __ATOMIC_RELAXED) >= s->cap) {
				note_overflow(s);
				continue;
			}
			take[ntake++] = s;
			if (s->conf->guarantee == XM_ARCHIVE_MUST)
				nmust++;
		}
		if (ntake == 0)
			return 0;
		it = xm_archive_item_new(ev, event_text, event_len, v, id,
		    a->node, xm_now());
	} else {
		/* a domain too long for the view: select on the record */
		it = xm_archive_item_new(ev, event_text, event_len, v, id,
		    a->node, xm_now());
		for (i = 0; i < a->nsinks && ntake < XM_ARRAY_LEN(take); i++)
			if (xm_archive_selects(a->sinks[i]->conf, it)) {
				take[ntake++] = a->sinks[i];
				if (a->sinks[i]->conf->guarantee == XM_ARCHIVE_MUST)
					nmust++;
			}
	}
	if (nmust > 0) {
		w = xm_calloc(1, sizeof(*w));
		w->pending = (int)nmust + 1;  /* +1: ours until the end here */
		w->done = done;
		w->arg = arg;
		it->waiter = w;
	}
	it->refs = (int)ntake + 1;
	for (i = 0; i < ntake; i++) {
		struct archive_sink *s = take[i];
		bool is_must = s->conf->guarantee == XM_ARCHIVE_MUST, queued = false;

		pthread_mutex_lock(&s->mu);
		/* a must-archive sink known to be down refuses at once */
		if (s->len < s->cap && !(is_must && !s->ready &&
		    s->failures > 0)) {
			s->ring[(s->head + s->len) % s->cap] = it;
			__atomic_fetch_add(&s->len, 1, __ATOMIC_RELAXED);
			queued = true;
			/* wake the writer when it may be waiting: the queue was
			 * empty, or a lingering batch is full */
			if (s->len == 1 || s->len == (size_t)s->conf->batch)
				pthread_cond_signal(&s->cv);
		} else if (is_must)
			s->must_failed++;
		pthread_mutex_unlock(&s->mu);
		if (!queued) {
			if (!is_must)
				note_overflow(s);
			if (is_must) {
				refused = 1;
				if (w != NULL)
					__atomic_store_n(&w->failed, 1, __ATOMIC_RELEASE);
				__atomic_sub_fetch(&w->pending, 1, __ATOMIC_ACQ_REL);
			}
			xm_archive_item_unref(it);
		}
	}
	if (w != NULL) {
		if (refused) {
			/* the caller fails the stanza now: the callback must not
			 * run later; sinks still holding the item answer nobody */
			w->done = NULL;
		}
		if (__atomic_sub_fetch(&w->pending, 1, __ATOMIC_ACQ_REL) == 0) {
			if (w->done)
				w->done(w->arg, __atomic_load_n(&w->failed,
				    __ATOMIC_ACQUIRE) == 0);
			free(w);
		}
	}
	xm_archive_item_unref(it);
	if (refused)
		return -1;
	return nmust > 0 ? 1 : 0;
}

/* sync_wait - the state xm_archive_submit_wait waits on */
struct sync_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done, ok;
};

/* sync_done - DONE of xm_archive_submit_wait */
static void
sync_done(void *arg, bool ok)
{
	struct sync_wait *sw = arg;

	pthread_mutex_lock(&sw->mu);
	sw->done = true;
	sw->ok = ok;
	pthread_cond_signal(&sw->cv);
	pthread_mutex_unlock(&sw->mu);
}

/* xm_archive_submit_wait - submit and wait for must-archive sinks */
int
xm_archive_submit_wait(struct xm_archive *a, const struct xm_event *ev,
    const char *event_text, size_t event_len, const struct xm_verdict *v,
    unsigned long long id, double now)
{
	struct sync_wait sw = { PTHREAD_MUTEX_INITIALIZER,
	    PTHREAD_COND_INITIALIZER, false, false };
	int rc = xm_archive_submit(a, ev, event_text, event_len, v, id, now,
	    sync_done, &sw);

	if (rc <= 0)
		return rc;
	pthread_mutex_lock(&sw.mu);
	while (!sw.done)
		pthread_cond_wait(&sw.cv, &sw.mu);
	pthread_mutex_unlock(&sw.mu);
	return sw.ok ? 0 : -1;
}

/* xm_archive_health - a line per sink */
void
xm_archive_health(struct xm_archive *a, struct xm_buf *out)
{
	static const char *types[] = { "sqlite", "jsonl", "command",
	    "postgresql" };
	size_t i;

	for (i = 0; a != NULL && i < a->nsinks; i++) {
		struct archive_sink *s = a->sinks[i];
		bool down;

		pthread_mutex_lock(&s->mu);
		down = !s->ready || (s->last_error_at > 0 &&
		    xm_now() - s->last_error_at < 30 && s->len > 0);
		xm_buf_printf(out, "archive=%s type=%s guarantee=%s state=%s "
		    "queued=%zu written=%llu overflow=%llu failures=%llu "
		    "lost=%llu must-failed=%llu\n", s->conf->name,
		    types[s->conf->type], s->conf->guarantee == XM_ARCHIVE_MUST ?
		    "must-archive" : "best-effort", down ? "down" : "ok", s->len,
		    s->written, __atomic_load_n(&s->overflow, __ATOMIC_RELAXED),
		    s->failures, s->lost, s->must_failed);
		pthread_mutex_unlock(&s->mu);
	}
}

/* xm_archive_config - the section it runs with */
const struct xm_archive_conf *
xm_archive_config(const struct xm_archive *a)
{
	return &a->cf->archive;
}

/* xm_archive_node - the node name */
const char *
xm_archive_node(const struct xm_archive *a)
{
	return a->node;
}
