/*
 * node.c - the stanza tree: look-ups, text, serialisation; JIDs; names
 *
 * Trees are built by event.c in a task's arena; nothing here frees. The
 * serialiser declares a namespace wherever an element's differs from its
 * parent's, so a modified stanza keeps its meaning when re-parsed.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "xm.h"

static const char *const action_names[] = {
	"accept", "modify", "quarantine", "reject", "discard",
};
static const char *const kind_names[] = {
	"message", "subscription", "transfer", "upload", "presence", "iq", "other",
};
static const char *const method_names[] = {
	"si", "jingle", "ibb-open", "ibb-data", "ibb-close", "oob", "upload",
};

/* name_of - NAMES[i], or "?" out of range */
static const char *
name_of(const char *const *names, size_t n, size_t i)
{
	return i < n ? names[i] : "?";
}

/* index_of - position of S in NAMES, or -1 */
static int
index_of(const char *const *names, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

/* xm_action_name - the action's protocol name */
const char *
xm_action_name(enum xm_action a)
{
	return name_of(action_names, XM_ARRAY_LEN(action_names), (size_t)a);
}

/* xm_action_parse - protocol name to action; 0 or -1 */
int
xm_action_parse(const char *s, enum xm_action *out)
{
	int i = index_of(action_names, XM_ARRAY_LEN(action_names), s);

	if (i < 0)
		return -1;
	*out = (enum xm_action)i;
	return 0;
}

/* xm_kind_name - the kind's protocol name */
const char *
xm_kind_name(enum xm_kind k)
{
	return name_of(kind_names, XM_ARRAY_LEN(kind_names), (size_t)k);
}

/* xm_kind_parse - protocol name to kind; 0 or -1 */
int
xm_kind_parse(const char *s, enum xm_kind *out)
{
	int i = index_of(kind_names, XM_ARRAY_LEN(kind_names), s);

	if (i < 0)
		return -1;
	*out = (enum xm_kind)i;
	return 0;
}

/* xm_file_method_name - short name of a transfer method */
const char *
xm_file_method_name(enum xm_file_method m)
{
	return name_of(method_names, XM_ARRAY_LEN(method_names), (size_t)m);
}

/* xm_node_attr - value of the un-namespaced attribute NAME */
const char *
xm_node_attr(const struct xm_node *n, const char *name)
{
	size_t i;

	if (n == NULL)
		return NULL;
	for (i = 0; i < n->nattrs; i++)
		if (n->attrs[i].ns[0] == '\0' && strcmp(n->attrs[i].name, name) == 0)
			return n->attrs[i].value;
	return NULL;
}

/* xm_node_child - first child element NAME in namespace NS (NULL: any) */
struct xm_node *
xm_node_child(const struct xm_node *n, const char *name, const char *ns)
{
	struct xm_node *c;

	if (n == NULL)
		return NULL;
	for (c = n->children; c != NULL; c = c->next)
		if (c->name != NULL && strcmp(c->name, name) == 0 &&
		    (ns == NULL || strcmp(c->ns, ns) == 0))
			return c;
	return NULL;
}

/* collect_text - append the text below N to B */
static void
collect_text(struct xm_buf *b, const struct xm_node *n)
{
	const struct xm_node *c;

	if (n->name == NULL) {
		xm_buf_append(b, n->text, n->text_len);
		return;
	}
	for (c = n->children; c != NULL; c = c->next)
		collect_text(b, c);
}

/* xm_node_text - all text of N and its descendants, in the arena */
char *
xm_node_text(struct xm_arena *a, const struct xm_node *n)
{
	struct xm_buf b = { 0 };
	char *r;

	if (n == NULL)
		return NULL;
	if (n->name == NULL)
		return (char *)n->text;
	if (n->children != NULL && n->children->next == NULL &&
	    n->children->name == NULL)
		return (char *)n->children->text;  /* the common case: one text */
	collect_text(&b, n);
	r = xm_arena_strndup(a, b.data ? b.data : "", b.len);
	xm_buf_free(&b);
	return r;
}

#define XML_NS "http://www.w3.org/XML/1998/namespace"

/* serialize - append N as XML to B */
static void
serialize(struct xm_buf *b, const struct xm_node *n, const char *parent_ns)
{
	const struct xm_node *c;
	size_t i;

	if (n->name == NULL) {
		xm_buf_xml_escape(b, n->text, n->text_len);
		return;
	}
	xm_buf_puts(b, "<");
	xm_buf_puts(b, n->name);
	if (parent_ns == NULL || strcmp(parent_ns, n->ns) != 0) {
		xm_buf_puts(b, " xmlns='");
		xm_buf_xml_escape_attr(b, n->ns, strlen(n->ns));
		xm_buf_puts(b, "'");
	}
	for (i = 0; i < n->nattrs; i++) {
		const struct xm_attr *at = &n->attrs[i];

		if (at->ns[0] == '\0' || strcmp(at->ns, XML_NS) == 0) {
			/* no printf: a modified stanza is serialised whole */
			xm_buf_puts(b, at->ns[0] == '\0' ? " " : " xml:");
			xm_buf_puts(b, at->name);
			xm_buf_puts(b, "='");
		} else {
			xm_buf_printf(b, " xmlns:a%zu='", i);
			xm_buf_xml_escape_attr(b, at->ns, strlen(at->ns));
			xm_buf_printf(b, "' a%zu:%s='", i, at->name);
		}
		xm_buf_xml_escape_attr(b, at->value, strlen(at->value));
		xm_buf_puts(b, "'");
	}
	if (n->children == NULL) {
		xm_buf_puts(b, "/>");
		return;
	}
	xm_buf_puts(b, ">");
	for (c = n->children; c != NULL; c = c->next)
		serialize(b, c, n->ns);
	xm_buf_puts(b, "</");
	xm_buf_puts(b, n->name);
	xm_buf_puts(b, ">");
}

/* the buffer serialisations are built in, one per thread and kept (a
 * flood's every modified stanza is serialised: a fresh buffer costs a
 * malloc and regrowth each time); freed with its thread */
static pthread_key_t ser_key;
static pthread_once_t ser_once = PTHREAD_ONCE_INIT;

/* ser_buf_free - a thread's buffer, at its exit */
static void
ser_buf_free(void *p)
{
	xm_buf_free(p);
	free(p);
}

/* ser_key_init - the key of the per-thread buffers */
static void
ser_key_init(void)
{
	if (pthread_key_create(&ser_key, ser_buf_free) != 0)
		panic("node: pthread_key_create failed");
}

/* xm_node_serialize - N as XML in the arena; PARENT_NS NULL declares it */
char *
xm_node_serialize(struct xm_arena *a, const struct xm_node *n,
    const char *parent_ns)
{
	struct xm_buf *b;
	char *r;

	pthread_once(&ser_once, ser_key_init);
	if ((b = pthread_getspecific(ser_key)) == NULL) {
		b = xm_calloc(1, sizeof(*b));
		if (pthread_setspecific(ser_key, b) != 0)
			panic("node: pthread_setspecific failed");
	}
	xm_buf_reset(b);
	serialize(b, n, parent_ns);
	r = xm_arena_strndup(a, b->data ? b->data : "", b->len);
	if (b->cap > 65536)
		xm_buf_free(b);     /* a big stanza's: not kept */
	return r;
}

/* xm_jid_domain - the domain part of JID (localpart@domain/resource) */
const char *
xm_jid_domain(struct xm_arena *a, const char *jid)
{
	const char *at, *slash, *start;

	if (jid == NULL)
		return NULL;
	slash = strchr(jid, '/');
	at = memchr(jid, '@', slash ? (size_t)(slash - jid) : strlen(jid));
	start = at ? at + 1 : jid;
	return slash ? xm_arena_strndup(a, start, (size_t)(slash - start))
	    : start;
}

/* xm_jid_bare - JID without its resource */
const char *
xm_jid_bare(struct xm_arena *a, const char *jid)
{
	const char *slash;

	if (jid == NULL)
		return NULL;
	slash = strchr(jid, '/');
	return slash ? xm_arena_strndup(a, jid, (size_t)(slash - jid)) : jid;
}

/* xm_event_field - first value of envelope field KEY */
const char *
xm_event_field(const struct xm_event *ev, const char *key)
{
	size_t i;

	for (i = 0; i < ev->nfields; i++)
		if (strcmp(ev->fields[i].key, key) == 0)
			return ev->fields[i].value;
	return NULL;
}
