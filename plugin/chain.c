/*
 * chain.c - run the filters of the matching scope and turn symbols into a
 * verdict
 *
 * A chain owns its config and one state per enabled filter per scope.
 * Fast filters run on the caller's thread (the event loop); SLOW ones run
 * in xm_chain_run_stage(..., true), which the daemon calls on a worker.
 * A filter may wait for shared-state operations (xm_task_state_wait): the
 * chain remembers where it stopped (t->pos); xm_chain_run_stage runs them
 * inline, while the daemon's xm_chain_start/xm_chain_resume hand them to
 * the caller when the state is in Redis, so the loop never blocks.
 * Scoring follows rspamd: symbols add up, shadowed ones are shown but not
 * counted, the highest threshold reached picks the action, and a final
 * result set by a filter ends the chain and wins whatever the score.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chain.h"
#include "state.h"

struct chain_filter {
	const struct xm_filter_ops *ops;
	void *state;
	bool shadow;
	bool slow;     /* runs in the slow stage (XM_FILTER_SLOW) */
};

struct chain_scope {
	const struct xm_scope *scope;
	struct chain_filter *f;
	size_t n;
};

struct xm_chain {
	atomic_int refs;
	struct xm_config *conf;
	struct chain_scope *scopes;   /* [0] global, [i + 1] conf->scopes[i] */
	size_t nscopes;
	bool slow;
	struct xm_event_limits limits;
};

/* free_scope - free the filter states of one scope */
static void
free_scope(struct chain_scope *cs)
{
	size_t i;

	for (i = 0; i < cs->n; i++)
		if (cs->f[i].ops->free)
			cs->f[i].ops->free(cs->f[i].state);
	free(cs->f);
}

/* build_scope - instantiate the enabled filters of SC */
static int
build_scope(struct xm_chain *c, struct chain_scope *cs,
    const struct xm_scope *sc, char *err, size_t errlen)
{
	size_t i;
	char ferr[512];

	cs->scope = sc;
	cs->f = xm_calloc(sc->nfilters, sizeof(*cs->f));
	for (i = 0; i < sc->nfilters; i++) {
		const struct xm_filter_conf *fc = &sc->filters[i];
		struct chain_filter *f = &cs->f[cs->n];

		if (!fc->enabled)
			continue;
		if (fc->ops->abi != XM_FILTER_ABI) {
			snprintf(err, errlen, "filter %s: ABI %d, want %d",
			    fc->ops->name, fc->ops->abi, XM_FILTER_ABI);
			return -1;
		}
		ferr[0] = '\0';
		f->ops = fc->ops;
		f->shadow = fc->shadow;
		if (fc->ops->init && fc->ops->init(&f->state, fc->conf, ferr,
		    sizeof(ferr)) < 0) {
			snprintf(err, errlen, "%s (filter %s, scope %s)", ferr,
			    fc->ops->name, sc->name);
			return -1;
		}
		f->slow = (fc->ops->flags & XM_FILTER_SLOW) != 0;
		if (f->slow)
			c->slow = true;
		cs->n++;
	}
	return 0;
}

/* xm_chain_new - filters for the global scope and every other scope */
struct xm_chain *
xm_chain_new(struct xm_config *conf, char *err, size_t errlen)
{
	struct xm_chain *c = xm_calloc(1, sizeof(*c));
	size_t i;

	atomic_init(&c->refs, 1);
	c->conf = conf;
	c->limits.max_stanza = (size_t)conf->limits.max_stanza;
	c->limits.max_depth = (unsigned)conf->limits.max_depth;
	c->limits.max_attrs = (unsigned)conf->limits.max_attrs;
	c->limits.max_elements = (unsigned)conf->limits.max_elements;
	c->limits.max_fields = (unsigned)conf->limits.max_fields;
	c->limits.max_field_len = (size_t)conf->limits.max_field_len;
	c->nscopes = conf->nscopes + 1;
	c->scopes = xm_calloc(c->nscopes, sizeof(*c->scopes));
	for (i = 0; i < c->nscopes; i++)
		if (build_scope(c, &c->scopes[i], i == 0 ? &conf->global :
		    &conf->scopes[i - 1], err, errlen) < 0) {
			xm_chain_unref(c);
			return NULL;
		}
	return c;
}

/* xm_chain_ref - one more user of C */
void
xm_chain_ref(struct xm_chain *c)
{
	atomic_fetch_add(&c->refs, 1);
}

/* xm_chain_unref - the last user frees the chain and its config */
void
xm_chain_unref(struct xm_chain *c)
{
	size_t i;

	if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	for (i = 0; i < c->nscopes; i++)
		free_scope(&c->scopes[i]);
	free(c->scopes);
	xm_config_free(c->conf);
	free(c);
}

/* xm_chain_config - the config the chain was built from */
const struct xm_config *
xm_chain_config(const struct xm_chain *c)
{
	return c->conf;
}

/* xm_chain_limits - parser limits from the config's limits section */
const struct xm_event_limits *
xm_chain_limits(const struct xm_chain *c)
{
	return &c->limits;
}

/* xm_chain_event - exactly one event in BUF, parsed with the limits */
int
xm_chain_event(const struct xm_chain *c, struct xm_arena *a, const char *buf,
    size_t len, struct xm_event **ev, char *err, size_t errlen)
{
	size_t used = 0;
	int rc;

	rc = xm_event_parse(a, buf, len, &c->limits, ev, &used, err, errlen);
	if (rc == 1) {
		snprintf(err, errlen, "empty event");
		return -1;
	}
	if (rc == 0 && used != len) {
		snprintf(err, errlen, "trailing data after the stanza");
		return -1;
	}
	return rc;
}

/* xm_chain_hello - what the daemon says about itself in HELLO */
void
xm_chain_hello(const struct xm_chain *c, struct xm_buf *reply,
    const char *version)
{
	const struct xm_config *cf = c->conf;
	size_t i;

	for (i = 0; i < cf->daemon.kinds.n; i++)
		xm_buf_printf(reply, "kind=%s\n", cf->daemon.kinds.v[i]);
	xm_buf_printf(reply, "daemon=xmilterd/%s\n", version);
	for (i = 0; i < cf->global.nfilters; i++)
		if (cf->global.filters[i].enabled)
			xm_buf_printf(reply, "filter=%s%s\n",
			    cf->global.filters[i].ops->name,
			    cf->global.filters[i].shadow ? " shadow" : "");
	/* filters that run degraded say why (reason= lines); the shared
	 * state (ratelimit) adds its lines and may degrade too */
	{
		const struct chain_scope *cs = &c->scopes[0];
		bool degraded = false;
		char why[512];

		for (i = 0; i < cs->n; i++)
			if (cs->f[i].ops->status != NULL &&
			    cs->f[i].ops->status(cs->f[i].state, why, sizeof(why))) {
				xm_buf_printf(reply, "reason=%s\n", why);
				degraded = true;
			}
		if (!xm_state_status(reply))
			degraded = true;
		xm_buf_puts(reply, degraded ? "status=degraded\n" : "status=ok\n");
	}
}

/* xm_chain_has_slow - any SLOW filter enabled */
bool
xm_chain_has_slow(const struct xm_chain *c)
{
	return c->slow;
}

/* chain_scope_of - the chain's instance of scope SC */
static const struct chain_scope *
chain_scope_of(const struct xm_chain *c, const struct xm_scope *sc)
{
	if (sc == &c->conf->global || c->conf->nscopes == 0)
		return &c->scopes[0];
	return &c->scopes[(size_t)(sc - c->conf->scopes) + 1];
}

/* xm_task_init - a fresh task for EV */
void
xm_task_init(struct xm_task *t, const struct xm_chain *c, struct xm_arena *a,
    const struct xm_event *ev, double now)
{
	memset(t, 0, sizeof(*t));
	t->arena = a;
	t->ev = ev;
	t->now = now;
	t->scope = xm_config_scope(c->conf, a, ev);
}

/* xm_chain_task_slow - does a SLOW filter of T's scope want T */
bool
xm_chain_task_slow(const struct xm_chain *c, const struct xm_task *t)
{
	const struct chain_scope *cs = chain_scope_of(c, t->scope);
	size_t i;

	for (i = 0; i < cs->n; i++) {
		const struct chain_filter *f = &cs->f[i];

		if (!f->slow)
			continue;
		if (f->ops->wants == NULL || f->ops->wants(f->state, t))
			return true;
	}
	return false;
}

/* resume_wait - hand T's waiting filter F the results it asked for */
static void
resume_wait(const struct chain_filter *f, struct xm_task *t)
{
	void (*fn)(void *, struct xm_task *, void *) = t->wait_fn;
	void *arg = t->wait_arg;

	t->wait_fn = NULL;
	t->wait_arg = NULL;
	t->wait_ops = NULL;
	t->wait_n = 0;
	t->cur_filter = f->ops->name;
	t->cur_shadow = f->shadow;
	fn(f->state, t, arg);
}

/* settle - run F's waits inline until it has none; with ASYNC and the
 * state in Redis leave the next one to the caller (true) */
static bool
settle(const struct chain_filter *f, struct xm_task *t, bool async)
{
	while (t->wait_fn != NULL) {
		if (async && xm_state_remote())
			return true;
		xm_state_exec(t->wait_ops, t->wait_n, t->now);
		resume_wait(f, t);
	}
	return false;
}

/* run_from - stage SLOW's filters from position I on; XM_RUN_WAIT (with
 * t->pos at the waiting filter) only with ASYNC */
static int
run_from(const struct xm_chain *c, struct xm_task *t, bool slow, size_t i,
    bool async)
{
	const struct chain_scope *cs = chain_scope_of(c, t->scope);

	for (; i < cs->n && !t->final; i++) {
		const struct chain_filter *f = &cs->f[i];

		if (f->slow != slow)
			continue;
		if (slow && f->ops->wants != NULL && !f->ops->wants(f->state, t))
			continue;
		t->cur_filter = f->ops->name;
		t->cur_shadow = f->shadow;
		f->ops->check(f->state, t);
		if (settle(f, t, async)) {
			t->pos = i;
			return XM_RUN_WAIT;
		}
	}
	t->cur_filter = NULL;
	t->cur_shadow = false;
	return t->final ? XM_RUN_FINAL : XM_RUN_DONE;
}

/* xm_chain_run_stage - the fast or the slow filters of the task's scope,
 * waits run inline */
bool
xm_chain_run_stage(const struct xm_chain *c, struct xm_task *t, bool slow)
{
	return run_from(c, t, slow, 0, false) == XM_RUN_FINAL;
}

/* xm_chain_start - the fast stage, stopping where a filter waits */
int
xm_chain_start(const struct xm_chain *c, struct xm_task *t)
{
	return run_from(c, t, false, 0, true);
}

/* xm_chain_resume - the waiting filter gets its results; go on */
int
xm_chain_resume(const struct xm_chain *c, struct xm_task *t)
{
	const struct chain_filter *f = &chain_scope_of(c, t->scope)->f[t->pos];

	resume_wait(f, t);
	if (settle(f, t, true))
		return XM_RUN_WAIT;
	return run_from(c, t, false, t->pos + 1, true);
}

/* xm_task_state_wait - remember what the filter waits for */
void
xm_task_state_wait(struct xm_task *t, struct xm_state_op *ops, size_t n,
    void (*fn)(void *state, struct xm_task *t, void *arg), void *arg)
{
	t->wait_ops = ops;
	t->wait_n = n;
	t->wait_fn = fn;
	t->wait_arg = arg;
}

/* xm_task_symbol - record a symbol (shadowed when its filter is) */
void
xm_task_symbol(struct xm_task *t, const char *name, double score,
    unsigned flags, const char *fmt, ...)
{
	struct xm_symbol *s;
	va_list ap;

	t->symbols = xm_arena_grow(t->arena, t->symbols, &t->symcap,
	    t->nsymbols, 1, sizeof(*t->symbols));
	s = &t->symbols[t->nsymbols++];
	s->name = xm_arena_strdup(t->arena, name);
	s->score = score;
	s->flags = flags | (t->cur_shadow ? XM_SYM_SHADOW : 0);
	s->filter = t->cur_filter ? t->cur_filter : "";
	if (fmt != NULL) {
		va_start(ap, fmt);
		s->detail = xm_arena_vprintf(t->arena, fmt, ap);
		va_end(ap);
	} else
		s->detail = "";
}

/* xm_task_final - end the chain with ACTION, unless the filter is shadowed */
void
xm_task_final(struct xm_task *t, enum xm_action action, const char *condition,
    const char *text)
{
	if (t->cur_shadow || t->final)
		return;
	t->final = true;
	t->final_action = action;
	t->final_condition = condition ? xm_arena_strdup(t->arena, condition) :
	    NULL;
	t->final_text = text ? xm_arena_strdup(t->arena, text) : NULL;
}

/* xm_task_replace_body - a filter's rewrite of body I (for modify) */
void
xm_task_replace_body(struct xm_task *t, size_t i, const char *text)
{
	if (t->cur_shadow || i >= t->ev->nbodies)
		return;
	if (t->new_bodies == NULL)
		t->new_bodies = xm_arena_array(t->arena, t->ev->nbodies,
		    sizeof(*t->new_bodies));
	t->new_bodies[i] = xm_arena_strdup(t->arena, text);
}

/* xm_task_has_symbol - NAME was added */
bool
xm_task_has_symbol(const struct xm_task *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->nsymbols; i++)
		if (strcmp(t->symbols[i].name, name) == 0)
			return true;
	return false;
}

/* set_text - make N's only child the text S */
static void
set_text(struct xm_arena *a, struct xm_node *n, const char *s)
{
	struct xm_node *tn = xm_arena_alloc(a, sizeof(*tn));

	tn->text = s;
	tn->text_len = strlen(s);
	tn->parent = n;
	n->children = n->last = tn;
}

/* modified_stanza - the stanza with bodies rewritten (or a warning put
 * before them) and rich text dropped, so plain and rich text never
 * disagree */
static const char *
modified_stanza(const struct xm_chain *c, struct xm_task *t,
    const struct xm_actions_conf *ac)
{
	struct xm_node *root = t->ev->root, *n, *prev = NULL;
	size_t bi = 0;

	for (n = root->children; n != NULL; n = n->next) {
		if (n->name != NULL && strcmp(n->name, "html") == 0 &&
		    strcmp(n->ns, "http://jabber.org/protocol/xhtml-im") == 0) {
			if (prev)
				prev->next = n->next;
			else
				root->children = n->next;
			if (root->last == n)
				root->last = prev;
			continue;
		}
		prev = n;
		if (n->name == NULL || strcmp(n->name, "body") != 0 ||
		    strcmp(n->ns, root->ns) != 0)
			continue;
		if (t->new_bodies && bi < t->ev->nbodies && t->new_bodies[bi])
			set_text(t->arena, n, t->new_bodies[bi]);
		else if (ac->modify_warning && *ac->modify_warning &&
		    bi < t->ev->nbodies)
			set_text(t->arena, n, xm_arena_strjoin(t->arena,
			    ac->modify_warning, "\n", t->ev->bodies[bi].text));
		bi++;
	}
	return xm_node_serialize(t->arena, root, root->ns);
}

/* xm_chain_finish - score, thresholds, final result: the verdict */
void
xm_chain_finish(const struct xm_chain *c, struct xm_task *t,
    struct xm_verdict *v)
{
	const struct xm_actions_conf *ac = &t->scope->actions;
	const struct xm_symbol *top = NULL;
	struct { double thr; enum xm_action a; } th[] = {
		{ ac->modify, XM_MODIFY }, { ac->quarantine, XM_QUARANTINE },
		{ ac->reject, XM_REJECT }, { ac->discard, XM_DISCARD },
	};
	double best = -1;
	size_t i;

	memset(v, 0, sizeof(*v));
	for (i = 0; i < t->nsymbols; i++) {
		if (t->symbols[i].flags & XM_SYM_SHADOW)
			continue;
		v->score += t->symbols[i].score;
		if (top == NULL || t->symbols[i].score > top->score)
			top = &t->symbols[i];
	}
	v->symbols = t->symbols;
	v->nsymbols = t->nsymbols;
	v->scope = t->scope->name;
	v->action = XM_ACCEPT;
	if (t->final) {
		v->action = t->final_action;
		v->condition = t->final_condition;
		v->text = t->final_text;
	} else {
		for (i = 0; i < XM_ARRAY_LEN(th); i++)
			if (th[i].thr >= 0 && v->score >= th[i].thr &&
			    th[i].thr >= best) {
				best = th[i].thr;
				v->action = th[i].a;
			}
	}
	if (v->action != XM_ACCEPT && top != NULL)
		v->reason = top->name;
	if (v->action == XM_REJECT || v->action == XM_DISCARD) {
		if (v->condition == NULL)
			v->condition = ac->reject_condition;
		if (v->text == NULL)
			v->text = ac->reject_text;
	}
	if (v->action == XM_MODIFY && t->ev->root != NULL)
		v->stanza = modified_stanza(c, t, ac);
}

/* xm_chain_check - both stages, then the verdict */
void
xm_chain_check(const struct xm_chain *c, struct xm_task *t,
    struct xm_verdict *v)
{
	if (!xm_chain_run_stage(c, t, false))
		xm_chain_run_stage(c, t, true);
	xm_chain_finish(c, t, v);
}

/* xm_verdict_malformed - the configured verdict for an unparsable event */
void
xm_verdict_malformed(const struct xm_chain *c, struct xm_arena *a,
    const char *why, struct xm_verdict *v)
{
	const struct xm_actions_conf *ac = &c->conf->global.actions;
	struct xm_symbol *s = xm_arena_alloc(a, sizeof(*s));

	memset(v, 0, sizeof(*v));
	s->name = "XM_MALFORMED";
	s->detail = xm_arena_strdup(a, why);
	s->filter = "core";
	v->symbols = s;
	v->nsymbols = 1;
	v->action = (enum xm_action)ac->on_malformed;
	v->reason = "XM_MALFORMED";
	v->scope = "global";
	if (v->action == XM_REJECT || v->action == XM_DISCARD) {
		v->condition = "bad-request";
		v->text = "The server's content filter could not read this stanza.";
	}
	if (v->action == XM_MODIFY)  /* nothing to modify: deliver as is */
		v->action = XM_ACCEPT;
}

/* xm_verdict_json - the verdict as one JSON object */
char *
xm_verdict_json(struct xm_arena *a, const struct xm_event *ev,
    const struct xm_verdict *v)
{
	json_t *o = json_object(), *syms = json_array();
	char *s, *r;
	size_t i;

	if (ev != NULL) {
		json_object_set_new(o, "kind", json_string(xm_kind_name(ev->kind)));
		if (ev->id)
			json_object_set_new(o, "id", json_string(ev->id));
		if (ev->from)
			json_object_set_new(o, "from", json_string(ev->from));
		if (ev->to)
			json_object_set_new(o, "to", json_string(ev->to));
	}
	json_object_set_new(o, "action", json_string(xm_action_name(v->action)));
	json_object_set_new(o, "score", json_real(round(v->score * 100) / 100));
	for (i = 0; i < v->nsymbols; i++) {
		json_t *sy = json_object();

		json_object_set_new(sy, "name", json_string(v->symbols[i].name));
		json_object_set_new(sy, "score",
		    json_real(round(v->symbols[i].score * 100) / 100));
		json_object_set_new(sy, "detail", json_string(v->symbols[i].detail ?
		    v->symbols[i].detail : ""));
		if (v->symbols[i].flags & XM_SYM_SHADOW)
			json_object_set_new(sy, "shadow", json_true());
		json_array_append_new(syms, sy);
	}
	json_object_set_new(o, "symbols", syms);
	if (v->reason)
		json_object_set_new(o, "reason", json_string(v->reason));
	if (v->condition)
		json_object_set_new(o, "condition", json_string(v->condition));
	if (v->text)
		json_object_set_new(o, "text", json_string(v->text));
	if (v->scope)
		json_object_set_new(o, "scope", json_string(v->scope));
	if (v->stanza)
		json_object_set_new(o, "stanza", json_string(v->stanza));
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
	json_decref(o);
	if (s == NULL)
		panic("json_dumps failed");
	r = xm_arena_strdup(a, s);
	free(s);
	return r;
}

/* xm_verdict_logline - key=value summary of one verdict */
char *
xm_verdict_logline(struct xm_arena *a, const struct xm_event *ev,
    const struct xm_verdict *v, unsigned long long id, double ms)
{
	struct xm_buf b = { 0 };
	size_t i;
	char *r;

	xm_buf_printf(&b, "verdict id=%llu kind=%s origin=%s from=%s to=%s "
	    "action=%s score=%.2f symbols=", id,
	    ev ? xm_kind_name(ev->kind) : "-",
	    ev && ev->origin ? log_escape(a, ev->origin, 16) : "-",
	    ev ? log_escape(a, ev->from, 80) : "-",
	    ev ? log_escape(a, ev->to, 80) : "-",
	    xm_action_name(v->action), v->score);
	for (i = 0; i < v->nsymbols; i++)
		xm_buf_printf(&b, "%s%s(%.2f%s)", i ? "," : "", v->symbols[i].name,
		    v->symbols[i].score,
		    (v->symbols[i].flags & XM_SYM_SHADOW) ? ",shadow" : "");
	if (v->nsymbols == 0)
		xm_buf_puts(&b, "-");
	xm_buf_printf(&b, " scope=%s ms=%.3f", v->scope ? v->scope : "-", ms);
	r = xm_arena_strndup(a, b.data, b.len);
	xm_buf_free(&b);
	return r;
}
