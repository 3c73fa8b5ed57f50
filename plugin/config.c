/*
 * config.c - load the YAML main configuration through the settings tables
 *
 * Interface: xm_config_load / xm_config_free, xm_config_scope,
 * xm_config_doc, xm_config_reload_ok, and the table helpers
 * xm_settings_defaults / xm_settings_set / xm_settings_free.
 *
 * libyaml builds a document tree (with line numbers); this file walks it
 * and sets each value through the one table row that declares it, so the
 * type, bounds and default checks are the same for the file, the defaults
 * and tests. Every error names the file and line. A scope starts as a
 * deep copy of the global actions and filter settings, then applies its
 * own overrides.
 */
#include <errno.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "config.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#ifndef RUNSTATEDIR
#define RUNSTATEDIR "/run"
#endif
#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif

#define D(f) offsetof(struct xm_daemon_conf, f)
static const struct xm_setting daemon_settings[] = {
	{ "socket", XM_ST_PATH, D(socket), RUNSTATEDIR "/xmilter/xmilterd.sock",
	  0, 0, NULL, false,
	  "Unix socket the glue connects to. Empty: no Unix socket." },
	{ "socket_mode", XM_ST_MODE, D(socket_mode), "0660", 0, 07777, NULL, false,
	  "Permissions of the Unix socket (octal)." },
	{ "socket_owner", XM_ST_STRING, D(socket_owner), "", 0, 0, NULL, false,
	  "User that owns the socket; empty: the daemon's user." },
	{ "socket_group", XM_ST_STRING, D(socket_group), "", 0, 0, NULL, false,
	  "Group that owns the socket (e.g. prosody); empty: unchanged." },
	{ "listen_tcp", XM_ST_STRING, D(listen_tcp), "", 0, 0, NULL, false,
	  "Also listen on TCP, HOST:PORT; only loopback addresses are accepted." },
	{ "max_frame", XM_ST_SIZE, D(max_frame), "1M", 4096, 64 * 1024 * 1024,
	  NULL, false,
	  "Largest protocol frame accepted (the HELLO offer; the smaller of "
	  "this and the glue's wins)." },
	{ "max_inflight", XM_ST_INT, D(max_inflight), "1024", 1, 65536, NULL,
	  false, "Requests one connection may have waiting at once." },
	{ "workers", XM_ST_INT, D(workers), "2", 1, 128, NULL, false,
	  "Worker threads for slow filters (scans, look-ups)." },
	{ "quarantine_dir", XM_ST_PATH, D(quarantine_dir),
	  LOCALSTATEDIR "/spool/xmilter/quarantine", 0, 0, NULL, false,
	  "Directory of the quarantine's SQLite file (quarantine.db), unless "
	  "quarantine.sqlite_path names the file." },
	{ "log_level", XM_ST_ENUM, D(log_level), "info", 0, 0,
	  "error|warning|info|debug", true, "Log verbosity." },
	{ "log_file", XM_ST_PATH, D(log_file), "", 0, 0, NULL, false,
	  "Log to this file instead of standard error." },
	{ "pidfile", XM_ST_PATH, D(pidfile), "", 0, 0, NULL, false,
	  "Write the daemon's process id here." },
	{ "kinds", XM_ST_LIST, D(kinds), "message,subscription,transfer,upload",
	  0, 0, "message|subscription|transfer|upload|presence|iq", true,
	  "Kinds of stanza the glue is asked to send (HELLO)." },
	{ "log_verdicts", XM_ST_BOOL, D(log_verdicts), "true", 0, 0, NULL, true,
	  "One key=value log line per verdict." },
	XM_SETTINGS_END
};
#undef D

#define A(f) offsetof(struct xm_actions_conf, f)
static const struct xm_setting actions_settings[] = {
	{ "modify", XM_ST_DOUBLE, A(modify), "5", -1, 1e9, NULL, true,
	  "Score from which a stanza is modified (links defanged, a warning "
	  "added). none: never." },
	{ "quarantine", XM_ST_DOUBLE, A(quarantine), "10", -1, 1e9, NULL, true,
	  "Score from which a stanza is held in quarantine. none: never." },
	{ "reject", XM_ST_DOUBLE, A(reject), "15", -1, 1e9, NULL, true,
	  "Score from which a stanza is refused with an error to the sender. "
	  "none: never." },
	{ "discard", XM_ST_DOUBLE, A(discard), "none", -1, 1e9, NULL, true,
	  "Score from which a stanza is dropped silently (an iq request still "
	  "gets an error). none: never." },
	{ "reject_condition", XM_ST_STRING, A(reject_condition), "policy-violation",
	  0, 0, "policy-violation|not-acceptable|forbidden|not-allowed|"
	  "service-unavailable|bad-request", true,
	  "XMPP error condition of a rejection." },
	{ "reject_text", XM_ST_STRING, A(reject_text),
	  "Your message was blocked by this server's content filter.", 0, 0,
	  NULL, true, "Error text the sender sees on a rejection." },
	{ "modify_warning", XM_ST_STRING, A(modify_warning),
	  "[Warning from this server's content filter: this message looks "
	  "suspicious. Do not open its links or files unless you expected them.]",
	  0, 0, NULL, true,
	  "Line put before the body of a modified message when no filter "
	  "rewrote it itself. Empty: none." },
	{ "on_malformed", XM_ST_ENUM, A(on_malformed), "reject", 0, 0,
	  "accept|modify|quarantine|reject|discard", true,
	  "Action for an event the daemon cannot parse (limits exceeded, bad "
	  "XML)." },
	XM_SETTINGS_END
};
#undef A

#define L(f) offsetof(struct xm_limits_conf, f)
static const struct xm_setting limits_settings[] = {
	{ "max_stanza", XM_ST_SIZE, L(max_stanza), "256k", 1024, 64 * 1024 * 1024,
	  NULL, true, "Largest stanza the parser reads." },
	{ "max_depth", XM_ST_INT, L(max_depth), "32", 2, 1024, NULL, true,
	  "Deepest element nesting." },
	{ "max_attrs", XM_ST_INT, L(max_attrs), "32", 1, 1024, NULL, true,
	  "Most attributes on one element." },
	{ "max_elements", XM_ST_INT, L(max_elements), "4096", 1, 1000000, NULL,
	  true, "Most elements in one stanza." },
	{ "max_fields", XM_ST_INT, L(max_fields), "64", 1, 4096, NULL, true,
	  "Most envelope lines in one event." },
	{ "max_field_len", XM_ST_SIZE, L(max_field_len), "4k", 64, 1024 * 1024,
	  NULL, true, "Longest envelope line." },
	XM_SETTINGS_END
};
#undef L

#define Q(f) offsetof(struct xm_quarantine_conf, f)
static const struct xm_setting quarantine_settings[] = {
	{ "backend", XM_ST_ENUM, Q(backend), "sqlite", 0, 0, "sqlite|postgresql",
	  false, "Where quarantined items are stored: a local SQLite file, or "
	  "PostgreSQL (shared by the daemons of a cluster)." },
	{ "sqlite_path", XM_ST_PATH, Q(sqlite_path), "", 0, 0, NULL, false,
	  "The SQLite database file. Empty: quarantine.db in "
	  "daemon.quarantine_dir." },
	{ "pg_conninfo", XM_ST_STRING, Q(pg_conninfo), "", 0, 0, NULL, false,
	  "libpq connection string for backend postgresql, e.g. "
	  "\"host=127.0.0.1 port=5432 dbname=xmilter user=xmilter\"." },
	{ "expiry", XM_ST_DURATION, Q(expiry), "30d", 60, 10 * 365 * 86400.0,
	  NULL, true, "How long an item is kept; expired items are purged, "
	  "whatever their state (except one left `releasing`)." },
	{ "purge_interval", XM_ST_DURATION, Q(purge_interval), "1h", 1, 86400,
	  NULL, true, "How often the daemon purges expired items." },
	{ "notice", XM_ST_ENUM, Q(notice), "none", 0, 0,
	  "none|recipient|admin|both", true,
	  "Who the glue tells when a stanza is quarantined: the recipient, "
	  "quarantine.notice_jid, both, or nobody." },
	{ "notice_jid", XM_ST_STRING, Q(notice_jid), "", 0, 0, NULL, true,
	  "The administrator's JID for notice admin/both." },
	{ "notice_text", XM_ST_STRING, Q(notice_text),
	  "A message to you from {from} was held by this server's content "
	  "filter (quarantine item {id}). An administrator can release it.",
	  0, 0, NULL, true, "The recipient's notice; {id}, {from}, {to} and "
	  "{reason} are replaced." },
	{ "admin_notice_text", XM_ST_STRING, Q(admin_notice_text),
	  "xmilter quarantined item {id}: {from} -> {to}, reason {reason}. "
	  "Review it with: xmilter quarantine show {id}", 0, 0, NULL, true,
	  "The administrator's notice; placeholders as in notice_text." },
	XM_SETTINGS_END
};
#undef Q

#define F(f) offsetof(struct xm_filter_conf, f)
static const struct xm_setting filter_common[] = {
	{ "enabled", XM_ST_BOOL, F(enabled), "true", 0, 0, NULL, true,
	  "Run this filter." },
	{ "shadow", XM_ST_BOOL, F(shadow), "false", 0, 0, NULL, true,
	  "Shadow mode: the filter's symbols are shown and counted in logs, "
	  "but never change the action." },
	XM_SETTINGS_END
};
#undef F

/* ---- one setting from text ---- */

/* resolve - PATH made absolute against BASE (a directory), heap copy */
static char *
resolve(const char *path, const char *base)
{
	if (path[0] == '\0' || path[0] == '/' || base == NULL || *base == '\0')
		return xm_strdup(path);
	return xm_printf("%s/%s", base, path);
}

/* scaled - a number with a unit suffix from UNITS ("k=1024,..." style) */
static int
scaled(const char *s, bool duration, double *out)
{
	char *end;
	double v, mul = 1;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !isfinite(v) || isspace((unsigned char)*s))
		return -1;
	if (duration) {
		if (strcmp(end, "ms") == 0) mul = 0.001;
		else if (strcmp(end, "s") == 0 || *end == '\0') mul = 1;
		else if (strcmp(end, "m") == 0) mul = 60;
		else if (strcmp(end, "h") == 0) mul = 3600;
		else if (strcmp(end, "d") == 0) mul = 86400;
		else return -1;
	} else {
		if (*end == '\0') mul = 1;
		else if (strcmp(end, "k") == 0 || strcmp(end, "K") == 0) mul = 1024;
		else if (strcmp(end, "M") == 0) mul = 1024 * 1024;
		else if (strcmp(end, "G") == 0) mul = 1024.0 * 1024 * 1024;
		else return -1;
	}
	*out = v * mul;
	return 0;
}

/* choice_index - position of S in "a|b|c", or -1 */
static int
choice_index(const char *choices, const char *s)
{
	const char *p = choices, *bar;
	size_t n = strlen(s);
	int i = 0;

	for (;;) {
		bar = strchr(p, '|');
		if ((bar ? (size_t)(bar - p) : strlen(p)) == n &&
		    strncmp(p, s, n) == 0)
			return i;
		if (bar == NULL)
			return -1;
		p = bar + 1;
		i++;
	}
}

/* list_free - free a string list's contents */
static void
list_free(struct xm_strlist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* list_add - append a heap string */
static void
list_add(struct xm_strlist *l, char *s)
{
	l->v = xm_reallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = s;
}

/* xm_strlist_has - exact membership */
bool
xm_strlist_has(const struct xm_strlist *l, const char *s)
{
	size_t i;

	for (i = 0; s != NULL && i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

/* set_scalar - set one non-list setting from text */
static int
set_scalar(const struct xm_setting *st, void *conf, const char *v,
    const char *base, char *err, size_t errlen)
{
	char *field = (char *)conf + st->offset;
	double d;
	long long ll;
	char *end;

	switch (st->type) {
	case XM_ST_BOOL:
		if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 ||
		    strcmp(v, "on") == 0)
			*(bool *)field = true;
		else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0 ||
		    strcmp(v, "off") == 0)
			*(bool *)field = false;
		else
			goto bad;
		return 0;
	case XM_ST_INT:
		if (st->min == -1 && strcmp(v, "none") == 0) {
			*(long long *)field = -1;
			return 0;
		}
		if (xm_parse_ll(v, (long long)st->min, (long long)st->max, &ll) < 0)
			goto range;
		*(long long *)field = ll;
		return 0;
	case XM_ST_SIZE:
	case XM_ST_DURATION:
	case XM_ST_DOUBLE:
		if (st->min == -1 && (strcmp(v, "none") == 0 ||
		    strcmp(v, "-1") == 0)) {
			if (st->type == XM_ST_SIZE)
				*(long long *)field = -1;
			else
				*(double *)field = -1;
			return 0;
		}
		if (st->type == XM_ST_DOUBLE ? xm_parse_double(v, &d) < 0 :
		    scaled(v, st->type == XM_ST_DURATION, &d) < 0)
			goto bad;
		if (d < (st->min == -1 ? 0 : st->min) || d > st->max)
			goto range;
		if (st->type == XM_ST_SIZE)
			*(long long *)field = (long long)d;
		else
			*(double *)field = d;
		return 0;
	case XM_ST_STRING:
	case XM_ST_PATH:
		free(*(char **)field);
		*(char **)field = st->type == XM_ST_PATH ? resolve(v, base) :
		    xm_strdup(v);
		if (st->type == XM_ST_STRING && st->choices != NULL &&
		    choice_index(st->choices, v) < 0)
			goto choice;
		return 0;
	case XM_ST_ENUM:
		if ((ll = choice_index(st->choices, v)) < 0)
			goto choice;
		*(int *)field = (int)ll;
		return 0;
	case XM_ST_MODE:
		errno = 0;
		ll = strtoll(v, &end, 8);
		if (*v == '\0' || *end != '\0' || errno != 0 || ll < 0 ||
		    ll > (long long)st->max)
			goto bad;
		*(int *)field = (int)ll;
		return 0;
	default:
		panic("setting %s: not a scalar type", st->name);
	}
bad:
	snprintf(err, errlen, "%s: bad value \"%.60s\"", st->name, v);
	return -1;
range:
	if (st->min == -1)
		snprintf(err, errlen, "%s: \"%.60s\" is not a number in 0..%g "
		    "or none", st->name, v, st->max);
	else
		snprintf(err, errlen, "%s: \"%.60s\" is not in %g..%g", st->name, v,
		    st->min, st->max);
	return -1;
choice:
	snprintf(err, errlen, "%s: \"%.60s\" is not one of %s", st->name, v,
	    st->choices);
	return -1;
}

/* list_item - add one item to a list setting, checking choices */
static int
list_item(const struct xm_setting *st, struct xm_strlist *l, const char *v,
    const char *base, char *err, size_t errlen)
{
	if (st->choices != NULL && choice_index(st->choices, v) < 0) {
		snprintf(err, errlen, "%s: \"%.60s\" is not one of %s", st->name,
		    v, st->choices);
		return -1;
	}
	list_add(l, st->type == XM_ST_PATHS ? resolve(v, base) : xm_strdup(v));
	return 0;
}

/* find_setting - table row NAME, or NULL */
static const struct xm_setting *
find_setting(const struct xm_setting *tab, const char *name)
{
	for (; tab != NULL && tab->name != NULL; tab++)
		if (strcmp(tab->name, name) == 0)
			return tab;
	return NULL;
}

/* is_list - a list-typed setting */
static bool
is_list(const struct xm_setting *st)
{
	return st->type == XM_ST_LIST || st->type == XM_ST_PATHS;
}

/* set_text - one setting from text (lists: comma-separated) */
static int
set_text(const struct xm_setting *st, void *conf, const char *value,
    const char *base, char *err, size_t errlen)
{
	struct xm_strlist *l;
	const char *p, *comma;

	if (!is_list(st))
		return set_scalar(st, conf, value, base, err, errlen);
	l = (struct xm_strlist *)((char *)conf + st->offset);
	list_free(l);
	for (p = value; *p != '\0'; p = comma + 1) {
		char *item;
		int rc;

		comma = strchr(p, ',');
		if (comma == NULL)
			comma = p + strlen(p);
		item = xm_strndup(p, (size_t)(comma - p));
		rc = *item ? list_item(st, l, item, base, err, errlen) : 0;
		free(item);
		if (rc < 0)
			return -1;
		if (*comma == '\0')
			break;
	}
	return 0;
}

/* xm_settings_defaults - every row's default into CONF */
int
xm_settings_defaults(const struct xm_setting *tab, void *conf,
    const char *base_dir, char *err, size_t errlen)
{
	for (; tab != NULL && tab->name != NULL; tab++)
		if (set_text(tab, conf, tab->def, base_dir, err, errlen) < 0)
			panic("bad built-in default: %s", err);
	return 0;
}

/* xm_settings_set - one named setting from text */
int
xm_settings_set(const struct xm_setting *tab, void *conf, const char *name,
    const char *value, const char *base_dir, char *err, size_t errlen)
{
	const struct xm_setting *st = find_setting(tab, name);

	if (st == NULL) {
		snprintf(err, errlen, "unknown setting \"%s\"", name);
		return -1;
	}
	return set_text(st, conf, value, base_dir, err, errlen);
}

/* xm_settings_free - free strings and lists in CONF */
void
xm_settings_free(const struct xm_setting *tab, void *conf)
{
	for (; tab != NULL && tab->name != NULL; tab++) {
		char *field = (char *)conf + tab->offset;

		if (is_list(tab))
			list_free((struct xm_strlist *)field);
		else if (tab->type == XM_ST_STRING || tab->type == XM_ST_PATH) {
			free(*(char **)field);
			*(char **)field = NULL;
		}
	}
}

/* settings_copy - deep copy of the table's fields from SRC to DST */
static void
settings_copy(const struct xm_setting *tab, void *dst, const void *src)
{
	for (; tab != NULL && tab->name != NULL; tab++) {
		char *d = (char *)dst + tab->offset;
		const char *s = (const char *)src + tab->offset;

		if (is_list(tab)) {
			const struct xm_strlist *sl = (const struct xm_strlist *)s;
			struct xm_strlist *dl = (struct xm_strlist *)d;
			size_t i;

			memset(dl, 0, sizeof(*dl));
			for (i = 0; i < sl->n; i++)
				list_add(dl, xm_strdup(sl->v[i]));
		} else if (tab->type == XM_ST_STRING || tab->type == XM_ST_PATH) {
			*(char **)d = *(char *const *)s ? xm_strdup(*(char *const *)s)
			    : NULL;
		} else if (tab->type == XM_ST_BOOL) {
			*(bool *)d = *(const bool *)s;
		} else if (tab->type == XM_ST_INT || tab->type == XM_ST_SIZE) {
			*(long long *)d = *(const long long *)s;
		} else if (tab->type == XM_ST_DOUBLE || tab->type == XM_ST_DURATION) {
			*(double *)d = *(const double *)s;
		} else {
			*(int *)d = *(const int *)s;
		}
	}
}

/* settings_equal - true when the row's value is the same in A and B */
static bool
settings_equal(const struct xm_setting *st, const void *a, const void *b)
{
	const char *fa = (const char *)a + st->offset;
	const char *fb = (const char *)b + st->offset;

	if (is_list(st)) {
		const struct xm_strlist *la = (const void *)fa, *lb = (const void *)fb;
		size_t i;

		if (la->n != lb->n)
			return false;
		for (i = 0; i < la->n; i++)
			if (strcmp(la->v[i], lb->v[i]) != 0)
				return false;
		return true;
	}
	switch (st->type) {
	case XM_ST_STRING:
	case XM_ST_PATH:
		return strcmp(*(char *const *)fa ? *(char *const *)fa : "",
		    *(char *const *)fb ? *(char *const *)fb : "") == 0;
	case XM_ST_BOOL:
		return *(const bool *)fa == *(const bool *)fb;
	case XM_ST_INT:
	case XM_ST_SIZE:
		return *(const long long *)fa == *(const long long *)fb;
	case XM_ST_DOUBLE:
	case XM_ST_DURATION:
		return *(const double *)fa == *(const double *)fb;
	default:
		return *(const int *)fa == *(const int *)fb;
	}
}

/* ---- walking the YAML document ---- */

struct loader {
	yaml_document_t doc;
	const char *file;
	char *base;            /* the config file's directory */
	char *err;
	size_t errlen;
};

/* fail - "file:line: message" into the loader's error buffer */
static int XM_PRINTF(3, 4)
fail(struct loader *ld, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ld->err, ld->errlen, "%s:%lu: %s", ld->file,
	    n ? (unsigned long)n->start_mark.line + 1 : 0UL, msg);
	return -1;
}

/* scalar - a scalar node's text, or NULL if N is not a scalar */
static const char *
scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value
	    : NULL;
}

/* node - node by index */
static yaml_node_t *
node(struct loader *ld, int i)
{
	return yaml_document_get_node(&ld->doc, i);
}

/* apply_value - set row ST in CONF from YAML node V */
static int
apply_value(struct loader *ld, const struct xm_setting *st, void *conf,
    yaml_node_t *v)
{
	char msg[256];

	if (is_list(st)) {
		struct xm_strlist *l = (struct xm_strlist *)((char *)conf + st->offset);
		yaml_node_item_t *it;

		if (v->type == YAML_SCALAR_NODE) {
			if (set_text(st, conf, scalar(v), ld->base, msg,
			    sizeof(msg)) < 0)
				return fail(ld, v, "%s", msg);
			return 0;
		}
		if (v->type != YAML_SEQUENCE_NODE)
			return fail(ld, v, "%s: expected a list", st->name);
		list_free(l);
		for (it = v->data.sequence.items.start;
		    it < v->data.sequence.items.top; it++) {
			yaml_node_t *item = node(ld, *it);

			if (scalar(item) == NULL)
				return fail(ld, item, "%s: list items must be "
				    "plain values", st->name);
			if (list_item(st, l, scalar(item), ld->base, msg,
			    sizeof(msg)) < 0)
				return fail(ld, item, "%s", msg);
		}
		return 0;
	}
	if (scalar(v) == NULL)
		return fail(ld, v, "%s: expected a single value", st->name);
	if (set_scalar(st, conf, scalar(v), ld->base, msg, sizeof(msg)) < 0)
		return fail(ld, v, "%s", msg);
	return 0;
}

/* apply_mapping - every key of mapping M through table TAB (and TAB2) */
static int
apply_mapping(struct loader *ld, yaml_node_t *m, const char *section,
    const struct xm_setting *tab, void *conf, const struct xm_setting *tab2,
    void *conf2)
{
	yaml_node_pair_t *p;

	if (m->type != YAML_MAPPING_NODE)
		return fail(ld, m, "%s: expected a mapping of settings", section);
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(ld, p->key), *v = node(ld, p->value);
		const struct xm_setting *st;

		if (scalar(k) == NULL)
			return fail(ld, k, "%s: keys must be names", section);
		if ((st = find_setting(tab, scalar(k))) != NULL) {
			if (apply_value(ld, st, conf, v) < 0)
				return -1;
		} else if ((st = find_setting(tab2, scalar(k))) != NULL) {
			if (apply_value(ld, st, conf2, v) < 0)
				return -1;
		} else
			return fail(ld, k, "%s: unknown setting \"%s\"", section,
			    scalar(k));
	}
	return 0;
}

/* apply_filters - the filters: mapping, one block per filter */
static int
apply_filters(struct loader *ld, yaml_node_t *m, struct xm_scope *sc)
{
	yaml_node_pair_t *p;
	size_t i;

	if (m->type != YAML_MAPPING_NODE)
		return fail(ld, m, "filters: expected a mapping of filter names");
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(ld, p->key), *v = node(ld, p->value);
		char section[64];

		for (i = 0; i < sc->nfilters; i++)
			if (scalar(k) && strcmp(scalar(k), sc->filters[i].ops->name) == 0)
				break;
		if (i == sc->nfilters)
			return fail(ld, k, "filters: unknown filter \"%s\"",
			    scalar(k) ? scalar(k) : "?");
		snprintf(section, sizeof(section), "filters.%s", scalar(k));
		if (apply_mapping(ld, v, section, filter_common, &sc->filters[i],
		    sc->filters[i].ops->settings, sc->filters[i].conf) < 0)
			return -1;
	}
	return 0;
}

/* scope_init_global - the global scope with every default */
static void
scope_init_global(struct xm_scope *sc, const char *base)
{
	char err[256];
	size_t i;

	sc->name = xm_strdup("global");
	xm_settings_defaults(actions_settings, &sc->actions, base, err,
	    sizeof(err));
	sc->nfilters = xm_nfilters;
	sc->filters = xm_calloc(xm_nfilters, sizeof(*sc->filters));
	for (i = 0; i < xm_nfilters; i++) {
		sc->filters[i].ops = xm_filters[i];
		xm_settings_defaults(filter_common, &sc->filters[i], base, err,
		    sizeof(err));
		if (xm_filters[i]->flags & XM_FILTER_OPTIN)
			sc->filters[i].enabled = false;
		sc->filters[i].conf = xm_calloc(1, xm_filters[i]->conf_size ?
		    xm_filters[i]->conf_size : 1);
		xm_settings_defaults(xm_filters[i]->settings, sc->filters[i].conf,
		    base, err, sizeof(err));
	}
}

/* scope_copy - SC becomes a deep copy of GLOBAL's actions and filters */
static void
scope_copy(struct xm_scope *sc, const struct xm_scope *global)
{
	size_t i;

	settings_copy(actions_settings, &sc->actions, &global->actions);
	sc->nfilters = global->nfilters;
	sc->filters = xm_calloc(sc->nfilters, sizeof(*sc->filters));
	for (i = 0; i < sc->nfilters; i++) {
		const struct xm_filter_ops *ops = global->filters[i].ops;

		sc->filters[i].ops = ops;
		settings_copy(filter_common, &sc->filters[i], &global->filters[i]);
		sc->filters[i].conf = xm_calloc(1, ops->conf_size ? ops->conf_size : 1);
		settings_copy(ops->settings, sc->filters[i].conf,
		    global->filters[i].conf);
	}
}

/* scope_free - release a scope's contents */
static void
scope_free(struct xm_scope *sc)
{
	size_t i;

	free(sc->name);
	list_free(&sc->origins);
	list_free(&sc->peers);
	list_free(&sc->domains);
	list_free(&sc->from_domains);
	list_free(&sc->to_domains);
	xm_settings_free(actions_settings, &sc->actions);
	for (i = 0; i < sc->nfilters; i++) {
		xm_settings_free(sc->filters[i].ops->settings, sc->filters[i].conf);
		free(sc->filters[i].conf);
	}
	free(sc->filters);
}

#define M(f) offsetof(struct xm_scope, f)
static const struct xm_setting match_settings[] = {
	{ "origin", XM_ST_LIST, M(origins), "", 0, 0,
	  "c2s|s2s|component|server", true,
	  "Where the stanza entered the server." },
	{ "peer", XM_ST_LIST, M(peers), "", 0, 0, NULL, true,
	  "The remote server (s2s) or component domain (a transport network)." },
	{ "domain", XM_ST_LIST, M(domains), "", 0, 0, NULL, true,
	  "Sender's or recipient's domain; *.example.org matches subdomains." },
	{ "from_domain", XM_ST_LIST, M(from_domains), "", 0, 0, NULL, true,
	  "Sender's domain." },
	{ "to_domain", XM_ST_LIST, M(to_domains), "", 0, 0, NULL, true,
	  "Recipient's domain." },
	XM_SETTINGS_END
};
#undef M

/* load_scope - one item of the scopes: list */
static int
load_scope(struct loader *ld, yaml_node_t *m, struct xm_config *c,
    struct xm_scope *sc)
{
	yaml_node_pair_t *p;
	bool matched = false;

	scope_copy(sc, &c->global);
	if (m->type != YAML_MAPPING_NODE)
		return fail(ld, m, "scopes: each scope is a mapping");
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(ld, p->key), *v = node(ld, p->value);
		const char *key = scalar(k) ? scalar(k) : "";

		if (strcmp(key, "name") == 0) {
			if (scalar(v) == NULL)
				return fail(ld, v, "scope name must be a value");
			free(sc->name);
			sc->name = xm_strdup(scalar(v));
		} else if (strcmp(key, "match") == 0) {
			if (apply_mapping(ld, v, "match", match_settings, sc, NULL,
			    NULL) < 0)
				return -1;
			matched = true;
		} else if (strcmp(key, "actions") == 0) {
			if (apply_mapping(ld, v, "actions", actions_settings,
			    &sc->actions, NULL, NULL) < 0)
				return -1;
		} else if (strcmp(key, "filters") == 0) {
			if (apply_filters(ld, v, sc) < 0)
				return -1;
		} else
			return fail(ld, k, "scope: unknown key \"%s\" (want name, "
			    "match, actions, filters)", key);
	}
	if (sc->name == NULL)
		return fail(ld, m, "scope without a name");
	if (!matched || (sc->origins.n + sc->peers.n + sc->domains.n +
	    sc->from_domains.n + sc->to_domains.n) == 0)
		return fail(ld, m, "scope \"%s\" has no match: criteria", sc->name);
	return 0;
}

/* load_scopes - the scopes: list */
static int
load_scopes(struct loader *ld, yaml_node_t *s, struct xm_config *c)
{
	yaml_node_item_t *it;

	if (s->type != YAML_SEQUENCE_NODE)
		return fail(ld, s, "scopes: expected a list of scopes");
	for (it = s->data.sequence.items.start; it < s->data.sequence.items.top;
	    it++) {
		c->scopes = xm_reallocarray(c->scopes, c->nscopes + 1,
		    sizeof(*c->scopes));
		memset(&c->scopes[c->nscopes], 0, sizeof(*c->scopes));
		c->nscopes++;
		if (load_scope(ld, node(ld, *it), c, &c->scopes[c->nscopes - 1]) < 0)
			return -1;
	}
	return 0;
}

/* ---- the archive section (issue 6) ----
 *
 * archive: { node, on_failure, ..., sinks: [ {name, type, ...}, ... ] }.
 * The top-level settings and each sink's settings are two tables; a sink
 * starts from the sink table's defaults. Type-specific requirements (a
 * path, a command, a connection string) and the syntax of holds and
 * per-scope retention are checked here so that every error names a line.
 */

#define R(f) offsetof(struct xm_archive_conf, f)
static const struct xm_setting archive_settings[] = {
	{ "node", XM_ST_STRING, R(node), "", 0, 0, NULL, false,
	  "This instance's name in every record (several daemons may share one "
	  "archive). Empty: the host name." },
	{ "on_failure", XM_ST_ENUM, R(on_failure), "reject", 0, 0,
	  "accept|modify|quarantine|reject|discard", false,
	  "must-archive: what a stanza gets when its record could not be "
	  "written durably in time (accept: delivered anyway and logged; "
	  "reject: an internal-server-error to the sender; discard: dropped "
	  "and logged)." },
	{ "failure_text", XM_ST_STRING, R(failure_text),
	  "This message could not be archived as the law requires; it was not "
	  "delivered. Please try again later.", 0, 0, NULL, false,
	  "Error text the sender sees when on_failure is reject." },
	{ "timeout", XM_ST_DURATION, R(timeout), "5s", 0.001, 3600, NULL, false,
	  "must-archive: longest wait for the durable write before on_failure "
	  "applies." },
	{ "check", XM_ST_BOOL, R(check), "false", 0, 0, NULL, false,
	  "`xmilter check` archives its verdicts too (synchronously)." },
	{ "hold_accounts", XM_ST_LIST, R(hold_accounts), "", 0, 0, NULL, false,
	  "Legal hold: records whose sender or recipient is one of these bare "
	  "JIDs (or *@domain) are never purged." },
	{ "hold_periods", XM_ST_LIST, R(hold_periods), "", 0, 0, NULL, false,
	  "Legal hold: records whose time falls in one of these periods, "
	  "written START/END in RFC 3339, are never purged." },
	XM_SETTINGS_END
};
#undef R

#define K(f) offsetof(struct xm_archive_sink_conf, f)
const struct xm_setting xm_archive_sink_settings[] = {
	{ "name", XM_ST_STRING, K(name), "", 0, 0, NULL, false,
	  "The sink's name (for `xmilter archive -s NAME`, logs and health); "
	  "required, unique." },
	{ "type", XM_ST_ENUM, K(type), "sqlite", 0, 0,
	  "sqlite|jsonl|command|postgresql", false,
	  "Where records go: an SQLite file with full-text search, hash-chained "
	  "JSON-lines files, an external command's standard input, or "
	  "PostgreSQL." },
	{ "guarantee", XM_ST_ENUM, K(guarantee), "best-effort", 0, 0,
	  "best-effort|must-archive", false,
	  "best-effort: records are queued off the event loop and the verdict "
	  "is not held (overflow and failures are counted, logged and shown in "
	  "health). must-archive: the verdict waits until the record is "
	  "durably written (fsync/COMMIT/acknowledged); if it cannot be, the "
	  "stanza gets archive.on_failure." },
	{ "path", XM_ST_PATH, K(path), "", 0, 0, NULL, false,
	  "sqlite: the database file; jsonl: the directory of chained files." },
	{ "command", XM_ST_STRING, K(command), "", 0, 0, NULL, false,
	  "command: run with /bin/sh -c, fed one JSON record per line on "
	  "standard input, restarted when it exits." },
	{ "command_ack", XM_ST_BOOL, K(command_ack), "false", 0, 0, NULL, false,
	  "command: the consumer writes one line to its standard output per "
	  "record it has kept; a record counts as written only then (required "
	  "for must-archive)." },
	{ "conninfo", XM_ST_STRING, K(conninfo), "", 0, 0, NULL, false,
	  "postgresql: the libpq connection string (host=... dbname=...)." },
	{ "queue", XM_ST_INT, K(queue), "65536", 1, 100000000, NULL, false,
	  "Records waiting for this sink, at most; beyond it a best-effort "
	  "record is dropped and counted, a must-archive one fails." },
	{ "batch", XM_ST_INT, K(batch), "512", 1, 100000, NULL, false,
	  "Records written per transaction or fsync, at most." },
	{ "rotate_size", XM_ST_SIZE, K(rotate_size), "64M", 4096,
	  1024.0 * 1024 * 1024 * 1024, NULL, false,
	  "jsonl: start a new file beyond this size (the chain continues)." },
	{ "rotate_age", XM_ST_DURATION, K(rotate_age), "1d", -1, 1e9, NULL,
	  false, "jsonl: start a new file when the current one is older. none: "
	  "never." },
	{ "fsync", XM_ST_BOOL, K(fsync), "true", 0, 0, NULL, false,
	  "best-effort: also make each batch durable (fsync, synchronous=FULL). "
	  "must-archive always does." },
	{ "actions", XM_ST_LIST, K(actions), "", 0, 0,
	  "accept|modify|quarantine|reject|discard", false,
	  "Select: only verdicts with these actions (e.g. quarantine, reject, "
	  "discard: only what was blocked). Empty: all." },
	{ "origins", XM_ST_LIST, K(origins), "", 0, 0,
	  "c2s|s2s|component|server", false,
	  "Select: only events from these origins. Empty: all." },
	{ "domains", XM_ST_LIST, K(domains), "", 0, 0, NULL, false,
	  "Select: only events whose sender's or recipient's domain is one of "
	  "these (*.example.org matches subdomains). Empty: all." },
	{ "peers", XM_ST_LIST, K(peers), "", 0, 0, NULL, false,
	  "Select: only events from these remote servers or transport "
	  "networks (component domains). Empty: all." },
	{ "kinds", XM_ST_LIST, K(kinds), "", 0, 0,
	  "message|subscription|transfer|upload|presence|iq|other", false,
	  "Select: only these kinds of stanza. Empty: all." },
	{ "scopes", XM_ST_LIST, K(scopes), "", 0, 0, NULL, false,
	  "Select: only events to which one of these scopes applied (global "
	  "included). Empty: all." },
	{ "retention", XM_ST_DURATION, K(retention), "none", -1, 1e11, NULL,
	  false, "Purge records older than this (except those under legal "
	  "hold). none: keep for ever. Not for command sinks." },
	{ "retention_scopes", XM_ST_LIST, K(retention_scopes), "", 0, 0, NULL,
	  false, "Per-scope retention, SCOPE=DURATION items (e.g. "
	  "partners=90d); other scopes use retention." },
	{ "purge_interval", XM_ST_DURATION, K(purge_interval), "1h", -1, 1e9,
	  NULL, false, "How often the daemon purges this sink by its "
	  "retention. none: only `xmilter archive purge`." },
	{ "restart_delay", XM_ST_DURATION, K(restart_delay), "1s", 0.01, 3600,
	  NULL, false, "command, postgresql: first delay before restarting the "
	  "command or reconnecting (doubles up to 30 s)." },
	{ "nice", XM_ST_INT, K(nice), "10", 0, 19, NULL, false,
	  "best-effort: the writer thread's nice value, so that on a busy CPU "
	  "filtering goes first and the archive takes what is left (records "
	  "beyond the queue are counted as overflow). must-archive writers "
	  "run at the daemon's priority: verdicts wait for them." },
	{ "linger", XM_ST_DURATION, K(linger), "50ms", 0, 10, NULL, false,
	  "best-effort: after the first record, wait up to this long for a "
	  "batch to fill, so that records share transactions and fsyncs. "
	  "must-archive writers never wait: verdicts wait for them." },
	XM_SETTINGS_END
};
#undef K

/* xm_config_duration - a duration setting's text to seconds */
int
xm_config_duration(const char *s, double *out)
{
	return scaled(s, true, out) < 0 || *out < 0 ? -1 : 0;
}

/* archive_period_ok - "START/END" in RFC 3339, START before END */
static bool
archive_period_ok(const char *p)
{
	const char *slash = strchr(p, '/');
	char *a;
	double t0, t1;
	bool ok;

	if (slash == NULL)
		return false;
	a = xm_strndup(p, (size_t)(slash - p));
	ok = xm_parse_time(a, &t0) == 0 && xm_parse_time(slash + 1, &t1) == 0 &&
	    t0 < t1;
	free(a);
	return ok;
}

/* load_archive_sink - one item of archive.sinks */
static int
load_archive_sink(struct loader *ld, yaml_node_t *m, struct xm_config *c,
    struct xm_archive_sink_conf *k)
{
	size_t i;

	k->line = m ? (long long)m->start_mark.line + 1 : 0;
	if (apply_mapping(ld, m, "archive.sinks", xm_archive_sink_settings, k,
	    NULL, NULL) < 0)
		return -1;
	if (*k->name == '\0')
		return fail(ld, m, "archive sink without a name");
	for (i = 0; &c->archive.sinks[i] != k; i++)
		if (strcmp(c->archive.sinks[i].name, k->name) == 0)
			return fail(ld, m, "archive sink \"%s\" declared twice",
			    k->name);
	if ((k->type == XM_ARCHIVE_SQLITE || k->type == XM_ARCHIVE_JSONL) &&
	    *k->path == '\0')
		return fail(ld, m, "archive sink \"%s\": path is required",
		    k->name);
	if (k->type == XM_ARCHIVE_COMMAND && *k->command == '\0')
		return fail(ld, m, "archive sink \"%s\": command is required",
		    k->name);
	if (k->type == XM_ARCHIVE_PG && *k->conninfo == '\0')
		return fail(ld, m, "archive sink \"%s\": conninfo is required",
		    k->name);
	if (k->type == XM_ARCHIVE_COMMAND && k->guarantee == XM_ARCHIVE_MUST &&
	    !k->command_ack)
		return fail(ld, m, "archive sink \"%s\": must-archive to a "
		    "command needs command_ack: true (a pipe is not durable)",
		    k->name);
	for (i = 0; i < k->retention_scopes.n; i++) {
		const char *it = k->retention_scopes.v[i], *eq = strchr(it, '=');
		double d;

		if (eq == NULL || eq == it || xm_config_duration(eq + 1, &d) < 0)
			return fail(ld, m, "archive sink \"%s\": retention_scopes: "
			    "\"%.60s\" is not SCOPE=DURATION", k->name, it);
	}
	return 0;
}

/* load_archive - the archive: section */
static int
load_archive(struct loader *ld, yaml_node_t *m, struct xm_config *c)
{
	yaml_node_pair_t *p;
	yaml_node_t *sinks = NULL;
	yaml_node_item_t *it;
	size_t i;

	if (m->type != YAML_MAPPING_NODE)
		return fail(ld, m, "archive: expected a mapping of settings");
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(ld, p->key), *v = node(ld, p->value);
		const struct xm_setting *st;

		if (scalar(k) && strcmp(scalar(k), "sinks") == 0) {
			sinks = v;
			continue;
		}
		if (scalar(k) == NULL ||
		    (st = find_setting(archive_settings, scalar(k))) == NULL)
			return fail(ld, k, "archive: unknown setting \"%s\"",
			    scalar(k) ? scalar(k) : "?");
		if (apply_value(ld, st, &c->archive, v) < 0)
			return -1;
	}
	for (i = 0; i < c->archive.hold_periods.n; i++)
		if (!archive_period_ok(c->archive.hold_periods.v[i]))
			return fail(ld, m, "archive: hold_periods: \"%.80s\" is not "
			    "START/END (RFC 3339, START first)",
			    c->archive.hold_periods.v[i]);
	if (c->archive.on_failure != XM_ACCEPT &&
	    c->archive.on_failure != XM_REJECT &&
	    c->archive.on_failure != XM_DISCARD)
		return fail(ld, m, "archive: on_failure must be accept, reject "
		    "or discard");
	if (sinks == NULL)
		return 0;
	if (sinks->type != YAML_SEQUENCE_NODE)
		return fail(ld, sinks, "archive.sinks: expected a list of sinks");
	for (it = sinks->data.sequence.items.start;
	    it < sinks->data.sequence.items.top; it++) {
		struct xm_archive_sink_conf *k;
		char err[256];

		if (c->archive.nsinks == 32)  /* XM_ARCHIVE_MAX_SINKS */
			return fail(ld, node(ld, *it), "archive.sinks: at most 32 "
			    "sinks");
		c->archive.sinks = xm_reallocarray(c->archive.sinks,
		    c->archive.nsinks + 1, sizeof(*c->archive.sinks));
		k = &c->archive.sinks[c->archive.nsinks++];
		memset(k, 0, sizeof(*k));
		xm_settings_defaults(xm_archive_sink_settings, k, ld->base, err,
		    sizeof(err));
		if (load_archive_sink(ld, node(ld, *it), c, k) < 0)
			return -1;
	}
	return 0;
}

/* archive_conf_free - release the archive section */
static void
archive_conf_free(struct xm_archive_conf *a)
{
	size_t i;

	for (i = 0; i < a->nsinks; i++)
		xm_settings_free(xm_archive_sink_settings, &a->sinks[i]);
	free(a->sinks);
	xm_settings_free(archive_settings, a);
}

static void doc_table(FILE *out, const char *section,
    const struct xm_setting *tab);

/* archive_doc - the archive part of the reference */
static void
archive_doc(FILE *out)
{
	fprintf(out, "## archive\n\nThe compliance archive (docs/ARCHIVE.md): "
	    "after each verdict, the event and its verdict go to every sink "
	    "whose selection matches. No sinks: archiving is off. Archive "
	    "settings take effect on restart.\n\n");
	doc_table(out, "archive", archive_settings);
	fprintf(out, "### archive.sinks\n\nA list; each item is one sink:\n\n");
	doc_table(out, "archive.sinks[]", xm_archive_sink_settings);
}

/* load_document - walk the top-level mapping */
static int
load_document(struct loader *ld, struct xm_config *c)
{
	yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
	yaml_node_t *scopes = NULL;
	yaml_node_pair_t *p;

	if (root == NULL || (root->type == YAML_SCALAR_NODE &&
	    (root->data.scalar.length == 0 || strcmp(scalar(root), "~") == 0 ||
	    strcmp(scalar(root), "null") == 0)))
		return 0;  /* an empty document: defaults */
	if (root->type != YAML_MAPPING_NODE)
		return fail(ld, root, "the configuration must be a mapping of "
		    "sections");
	for (p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	    p++) {
		yaml_node_t *k = node(ld, p->key), *v = node(ld, p->value);
		const char *key = scalar(k) ? scalar(k) : "";
		int rc;

		if (strcmp(key, "daemon") == 0)
			rc = apply_mapping(ld, v, "daemon", daemon_settings,
			    &c->daemon, NULL, NULL);
		else if (strcmp(key, "actions") == 0)
			rc = apply_mapping(ld, v, "actions", actions_settings,
			    &c->global.actions, NULL, NULL);
		else if (strcmp(key, "limits") == 0)
			rc = apply_mapping(ld, v, "limits", limits_settings,
			    &c->limits, NULL, NULL);
		else if (strcmp(key, "filters") == 0)
			rc = apply_filters(ld, v, &c->global);
		else if (strcmp(key, "quarantine") == 0)
			rc = apply_mapping(ld, v, "quarantine", quarantine_settings,
			    &c->quarantine, NULL, NULL);
		else if (strcmp(key, "archive") == 0)
			rc = load_archive(ld, v, c);  /* issue 6 */
		else if (strcmp(key, "scopes") == 0) {
			scopes = v;  /* after the global settings, wherever it is */
			rc = 0;
		} else
			rc = fail(ld, k, "unknown section \"%s\" (want daemon, "
			    "actions, limits, filters, scopes, quarantine)", key);
		if (rc < 0)
			return -1;
	}
	return scopes ? load_scopes(ld, scopes, c) : 0;
}

/* xm_config_load - defaults, then the file's settings on top */
struct xm_config *
xm_config_load(const char *path, char *err, size_t errlen)
{
	struct xm_config *c = xm_calloc(1, sizeof(*c));
	struct loader ld = { .file = path, .err = err, .errlen = errlen };
	yaml_parser_t parser;
	FILE *fp;
	const char *slash;
	int rc;

	if (path != NULL) {
		slash = strrchr(path, '/');
		ld.base = slash ? xm_strndup(path, (size_t)(slash - path + 1)) :
		    xm_strdup(".");
		if (slash && ld.base[strlen(ld.base) - 1] == '/' &&
		    strlen(ld.base) > 1)
			ld.base[strlen(ld.base) - 1] = '\0';
		c->path = xm_strdup(path);
	}
	xm_settings_defaults(daemon_settings, &c->daemon, ld.base, err, errlen);
	xm_settings_defaults(limits_settings, &c->limits, ld.base, err, errlen);
	xm_settings_defaults(quarantine_settings, &c->quarantine, ld.base, err,
	    errlen);
	scope_init_global(&c->global, ld.base);
	xm_settings_defaults(archive_settings, &c->archive, ld.base, err, errlen);
	if (path == NULL)
		return c;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto bad;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, &ld.doc)) {
		snprintf(err, errlen, "%s:%lu: %s %s", path,
		    (unsigned long)parser.problem_mark.line + 1,
		    parser.problem ? parser.problem : "YAML error",
		    parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		fclose(fp);
		goto bad;
	}
	yaml_parser_delete(&parser);
	fclose(fp);
	rc = load_document(&ld, c);
	yaml_document_delete(&ld.doc);
	if (rc < 0)
		goto bad;
	free(ld.base);
	return c;
bad:
	free(ld.base);
	xm_config_free(c);
	return NULL;
}

/* xm_config_free - release everything the config owns */
void
xm_config_free(struct xm_config *c)
{
	size_t i;

	if (c == NULL)
		return;
	xm_settings_free(daemon_settings, &c->daemon);
	xm_settings_free(limits_settings, &c->limits);
	xm_settings_free(quarantine_settings, &c->quarantine);
	scope_free(&c->global);
	for (i = 0; i < c->nscopes; i++)
		scope_free(&c->scopes[i]);
	free(c->scopes);
	archive_conf_free(&c->archive);
	free(c->path);
	free(c);
}

/* xm_config_override - one SECTION.NAME=VALUE from the command line */
int
xm_config_override(struct xm_config *c, const char *assignment, char *err,
    size_t errlen)
{
	const char *eq = strchr(assignment, '='), *dot = strchr(assignment, '.');
	char *name;
	int rc;

	if (eq == NULL || dot == NULL || dot > eq) {
		snprintf(err, errlen, "-o %s: want daemon.NAME=VALUE or "
		    "limits.NAME=VALUE", assignment);
		return -1;
	}
	name = xm_strndup(dot + 1, (size_t)(eq - dot - 1));
	if (strncmp(assignment, "daemon.", 7) == 0)
		rc = xm_settings_set(daemon_settings, &c->daemon, name, eq + 1,
		    NULL, err, errlen);
	else if (strncmp(assignment, "limits.", 7) == 0)
		rc = xm_settings_set(limits_settings, &c->limits, name, eq + 1,
		    NULL, err, errlen);
	else if (strncmp(assignment, "quarantine.", 11) == 0) {
		free(name);
		name = xm_strndup(assignment + 11, (size_t)(eq - assignment - 11));
		rc = xm_settings_set(quarantine_settings, &c->quarantine, name,
		    eq + 1, NULL, err, errlen);
	}
	else {
		snprintf(err, errlen, "-o %s: only daemon.*, limits.* and "
		    "quarantine.* can be set on the command line", assignment);
		rc = -1;
	}
	free(name);
	return rc;
}

/* domain_match - D equals PATTERN, or PATTERN is *.suffix of D */
static bool
domain_match(const char *pattern, const char *d)
{
	size_t pl, dl;

	if (d == NULL)
		return false;
	if (strncmp(pattern, "*.", 2) != 0)
		return strcasecmp(pattern, d) == 0;
	pl = strlen(pattern + 1);  /* ".suffix" */
	dl = strlen(d);
	return (dl > pl && strcasecmp(d + dl - pl, pattern + 1) == 0) ||
	    strcasecmp(d, pattern + 2) == 0;
}

/* xm_domain_listed - one entry of L matches domain D (exactly, or an entry
 * "*.x" naming x or one of its subdomains); case-insensitive */
bool
xm_domain_listed(const struct xm_strlist *l, const char *d)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (domain_match(l->v[i], d))
			return true;
	return false;
}

/* xm_config_scope - first scope whose criteria all match */
const struct xm_scope *
xm_config_scope(const struct xm_config *c, struct xm_arena *a,
    const struct xm_event *ev)
{
	const char *fd = NULL, *td = NULL;
	size_t i;

	for (i = 0; i < c->nscopes; i++) {
		const struct xm_scope *sc = &c->scopes[i];

		if (fd == NULL) {
			fd = xm_jid_domain(a, ev->from ? ev->from : ev->auth);
			td = xm_jid_domain(a, ev->to);
		}
		if (sc->origins.n && !xm_strlist_has(&sc->origins, ev->origin))
			continue;
		if (sc->peers.n && !xm_domain_listed(&sc->peers, ev->peer))
			continue;
		if (sc->domains.n && !xm_domain_listed(&sc->domains, fd) &&
		    !xm_domain_listed(&sc->domains, td))
			continue;
		if (sc->from_domains.n && !xm_domain_listed(&sc->from_domains, fd))
			continue;
		if (sc->to_domains.n && !xm_domain_listed(&sc->to_domains, td))
			continue;
		return sc;
	}
	return &c->global;
}

/* ---- reload and documentation ---- */

/* xm_config_reload_ok - only reloadable daemon settings may change */
int
xm_config_reload_ok(const struct xm_config *old, const struct xm_config *new,
    char *err, size_t errlen)
{
	const struct xm_setting *st;

	for (st = daemon_settings; st->name != NULL; st++)
		if (!st->reload && !settings_equal(st, &old->daemon, &new->daemon)) {
			snprintf(err, errlen, "daemon.%s changed; it takes effect "
			    "only on restart", st->name);
			return -1;
		}
	for (st = quarantine_settings; st->name != NULL; st++)
		if (!st->reload && !settings_equal(st, &old->quarantine,
		    &new->quarantine)) {
			snprintf(err, errlen, "quarantine.%s changed; it takes "
			    "effect only on restart", st->name);
			return -1;
		}
	return 0;
}

static const char *type_names[] = {
	"?", "boolean", "integer", "size", "number", "duration", "string",
	"list", "choice", "mode", "path", "list of paths",
};

/* doc_default - DEF with the build's directories written symbolically, so
 * the reference reads the same whatever ./configure was told */
static void
doc_default(FILE *out, const char *def)
{
	static const struct { const char *dir, *name; } dirs[] = {
		{ RUNSTATEDIR, "$runstatedir" },
		{ LOCALSTATEDIR, "$localstatedir" },
		{ SYSCONFDIR, "$sysconfdir" },
	};
	size_t i, n, len;

	for (;;) {  /* each item of a comma-separated list */
		len = strcspn(def, ",");
		for (i = 0; i < XM_ARRAY_LEN(dirs); i++) {
			n = strlen(dirs[i].dir);
			if (n < len && strncmp(def, dirs[i].dir, n) == 0 &&
			    def[n] == '/') {
				fputs(dirs[i].name, out);
				def += n;
				len -= n;
				break;
			}
		}
		fwrite(def, 1, len, out);
		if (def[len] == '\0')
			return;
		fputc(',', out);
		def += len + 1;
	}
}

/* doc_table - one Markdown table for a settings table */
static void
doc_table(FILE *out, const char *section, const struct xm_setting *tab)
{
	fprintf(out, "| setting | type | default | allowed | reload | "
	    "meaning |\n| --- | --- | --- | --- | --- | --- |\n");
	for (; tab->name != NULL; tab++) {
		char allowed[128] = "";
		const char *d;

		if (tab->choices) {
			const char *p;
			size_t o = 0;

			for (p = tab->choices; *p && o + 3 < sizeof(allowed); p++) {
				if (*p == '|') {
					allowed[o++] = ',';
					allowed[o++] = ' ';
				} else
					allowed[o++] = *p;
			}
			allowed[o] = '\0';
		} else if (tab->type == XM_ST_INT || tab->type == XM_ST_SIZE ||
		    tab->type == XM_ST_DURATION || tab->type == XM_ST_DOUBLE)
			snprintf(allowed, sizeof(allowed), "%s%.15g .. %.15g",
			    tab->min == -1 ? "none, " : "",
			    tab->min == -1 ? 0 : tab->min, tab->max);
		fprintf(out, "| `%s.%s` | %s | `", section, tab->name,
		    type_names[tab->type]);
		doc_default(out, tab->def);
		fprintf(out, "` | %s | %s | ", allowed, tab->reload ? "yes" : "restart");
		for (d = tab->doc; *d != '\0'; d++)  /* a | would end the cell */
			fputs(*d == '|' ? "\\|" : (char[]){ *d, '\0' }, out);
		fputs(" |\n", out);
	}
	fprintf(out, "\n");
}

/* xm_config_doc - the whole reference, generated from the tables */
void
xm_config_doc(FILE *out)
{
	size_t i;
	char sect[80];

	fprintf(out, "# Configuration reference\n\n"
	    "<!-- generated by `xmilter config-doc` from the settings tables; "
	    "do not edit -->\n\n"
	    "The main file is YAML (default `$sysconfdir/xmilter/xmilter.yml`,"
	    " usually /etc)."
	    " Sections: `daemon`, `actions`, `limits`, `filters`, `scopes` and"
	    " `quarantine`."
	    " Sizes take k/M/G suffixes, durations ms/s/m/h/d. Relative paths"
	    " are relative to the file's directory. Unknown settings are errors"
	    " (with file and line), so typos never pass silently. `reload: yes`"
	    " settings change on SIGHUP; the others need a restart.\n\n");
	fprintf(out, "## daemon\n\n");
	doc_table(out, "daemon", daemon_settings);
	fprintf(out, "## actions (also per scope)\n\nA stanza's total score is "
	    "compared with the thresholds; the highest threshold reached "
	    "decides the action. A filter may also end the chain with a final "
	    "action (a virus is a reject whatever the score).\n\n");
	doc_table(out, "actions", actions_settings);
	fprintf(out, "## limits\n\nHard limits of the event parser: an event "
	    "beyond them is not filtered but gets `actions.on_malformed`.\n\n");
	doc_table(out, "limits", limits_settings);
	fprintf(out, "## filters (also per scope)\n\nEvery filter has `enabled` "
	    "and `shadow`:\n\n");
	doc_table(out, "filters.NAME", filter_common);
	for (i = 0; i < xm_nfilters; i++) {
		snprintf(sect, sizeof(sect), "filters.%s", xm_filters[i]->name);
		fprintf(out, "### %s\n\n", sect);
		doc_table(out, sect, xm_filters[i]->settings);
	}
	fprintf(out, "## quarantine\n\nThe store of quarantined stanzas and "
	    "their release (docs/QUARANTINE.md).\n\n");
	doc_table(out, "quarantine", quarantine_settings);
	fprintf(out, "## scopes\n\nA list of blocks, tried in order; the first "
	    "whose `match` criteria all hold applies to the event (criteria "
	    "in one list are alternatives). A scope starts from the global "
	    "`actions` and `filters` and overrides what it names. Keys: `name`, "
	    "`match`, `actions`, `filters`.\n\n");
	doc_table(out, "match", match_settings);
	archive_doc(out);
}
