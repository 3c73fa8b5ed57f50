/*
 * event.c - parse the event text format into the typed view of xm.h
 *
 * Interface: xm_event_parse (one event from a buffer), xm_event_format.
 *
 * The envelope is `key=value` lines up to an empty line (lines starting
 * with '#' are comments, for hand-written fixtures). The stanza is parsed
 * by expat with namespace processing; the parse stops at the end tag of
 * the root element so several events can follow one another in a file.
 * Refused: DOCTYPE (hence every entity declaration), comments, processing
 * instructions and XML declarations; limits on depth, attributes, elements
 * and bytes. Everything is allocated in the caller's arena; on error the
 * arena keeps some garbage until it is freed, nothing else leaks.
 */
#include <stdio.h>
#include <string.h>

#include <expat.h>

#include "autoconf.h"

#include "config.h"
#include "event.h"

#define NS_SEP '\x01'

#define NS_XHTML_IM "http://jabber.org/protocol/xhtml-im"
#define NS_XHTML "http://www.w3.org/1999/xhtml"
#define NS_X_OOB "jabber:x:oob"
#define NS_IQ_OOB "jabber:iq:oob"
#define NS_SI "http://jabber.org/protocol/si"
#define NS_SI_FT "http://jabber.org/protocol/si/profile/file-transfer"
#define NS_JINGLE "urn:xmpp:jingle:1"
#define NS_JINGLE_FT_PREFIX "urn:xmpp:jingle:apps:file-transfer:"
#define NS_HASHES_PREFIX "urn:xmpp:hashes:"
#define NS_IBB "http://jabber.org/protocol/ibb"
#define NS_UPLOAD "urn:xmpp:http:upload:0"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_CONFERENCE "jabber:x:conference"
#define NS_XML "http://www.w3.org/XML/1998/namespace"

/* xm_event_limits_default - limits generous for XMPP, small for abuse */
void
xm_event_limits_default(struct xm_event_limits *l)
{
	l->max_stanza = 262144;
	l->max_depth = 32;
	l->max_attrs = 32;
	l->max_elements = 4096;
	l->max_fields = 64;
	l->max_field_len = 4096;
}

struct parse_state {
	XML_Parser p;
	struct xm_arena *a;
	const struct xm_event_limits *lim;
	struct xm_event *ev;
	struct xm_node *cur;
	unsigned depth;
	bool done;
	const char *error;      /* our own reason to stop */
	size_t end;             /* byte offset just after the root's end tag */
	XML_Index last_start;   /* offset and length of the last start tag */
	int last_start_len;
	struct xm_node *tn;     /* the text node being extended, and its room */
	size_t tn_cap;
};

/* stop - abort the parse with REASON */
static void
stop(struct parse_state *st, const char *reason)
{
	if (st->error == NULL)
		st->error = reason;
	XML_StopParser(st->p, XML_FALSE);
}

/* split_name - "uri\1local" into namespace and local name (arena copies;
 * a namespace equal to SAME, usually the parent's, is shared, not copied) */
static void
split_name(struct xm_arena *a, const char *name, const char *same,
    const char **ns, const char **local)
{
	size_t len = strlen(name), nl;
	const char *sep = memchr(name, NS_SEP, len);

	if (sep == NULL) {
		*ns = "";
		*local = xm_arena_strndup(a, name, len);
		return;
	}
	nl = (size_t)(sep - name);
	if (same != NULL && strncmp(same, name, nl) == 0 && same[nl] == '\0')
		*ns = same;
	else
		*ns = xm_arena_strndup(a, name, nl);
	*local = xm_arena_strndup(a, sep + 1, len - nl - 1);
}

/* append_child - link C as the last child of P */
static void
append_child(struct xm_node *p, struct xm_node *c)
{
	c->parent = p;
	if (p->last)
		p->last->next = c;
	else
		p->children = c;
	p->last = c;
}

/* on_start - a start tag: check limits, build the node */
static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct parse_state *st = ud;
	struct xm_node *n;
	size_t i, na = 0;

	if (st->error)
		return;
	st->last_start = XML_GetCurrentByteIndex(st->p);
	st->last_start_len = XML_GetCurrentByteCount(st->p);
	if (++st->depth > st->lim->max_depth)
		return stop(st, "nesting too deep");
	if (st->depth > st->ev->depth)
		st->ev->depth = st->depth;
	if (++st->ev->nelements > st->lim->max_elements)
		return stop(st, "too many elements");
	while (atts[na] != NULL)
		na += 2;
	na /= 2;
	if (na > st->lim->max_attrs)
		return stop(st, "too many attributes");
	if (na > st->ev->max_attrs)
		st->ev->max_attrs = (unsigned)na;

	n = xm_arena_alloc(st->a, sizeof(*n));
	split_name(st->a, name, st->cur ? st->cur->ns : NULL, &n->ns, &n->name);
	n->nattrs = na;
	n->attrs = na ? xm_arena_array(st->a, na, sizeof(*n->attrs)) : NULL;
	for (i = 0; i < na; i++) {
		split_name(st->a, atts[2 * i], NULL, &n->attrs[i].ns,
		    &n->attrs[i].name);
		n->attrs[i].value = xm_arena_strdup(st->a, atts[2 * i + 1]);
	}
	if (st->cur)
		append_child(st->cur, n);
	else
		st->ev->root = n;
	st->cur = n;
}

/* on_end - an end tag; the root's ends the parse */
static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
	struct parse_state *st = ud;
	XML_Index idx;

	if (st->error)
		return;
	st->depth--;
	st->cur = st->cur->parent;
	if (st->depth > 0)
		return;
	idx = XML_GetCurrentByteIndex(st->p);
	if (idx == st->last_start)  /* <empty/>: the end is the start tag's */
		st->end = (size_t)idx + (size_t)st->last_start_len;
	else
		st->end = (size_t)idx + (size_t)XML_GetCurrentByteCount(st->p);
	st->done = true;
	XML_StopParser(st->p, XML_FALSE);
}

/* on_text - character data: merged into the current text node */
static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
	struct parse_state *st = ud;
	struct xm_node *last;
	char *t;

	if (st->error || st->cur == NULL || len <= 0)
		return;
	st->ev->text_bytes += (size_t)len;
	last = st->cur->last;
	if (last != NULL && last->name == NULL && last == st->tn) {
		/* expat splits text at every newline and entity: grow by
		 * doubling so a long text costs linear time and memory */
		size_t need = last->text_len + (size_t)len + 1;

		if (need > st->tn_cap) {
			size_t cap = st->tn_cap * 2;

			while (cap < need)
				cap *= 2;
			t = xm_arena_alloc(st->a, cap);
			memcpy(t, last->text, last->text_len);
			last->text = t;
			st->tn_cap = cap;
		}
		t = (char *)last->text;
		memcpy(t + last->text_len, s, (size_t)len);
		last->text_len += (size_t)len;
		t[last->text_len] = '\0';
		return;
	}
	last = xm_arena_alloc(st->a, sizeof(*last));
	st->tn_cap = (size_t)len + 1 < 64 ? 64 : (size_t)len + 1;
	t = xm_arena_alloc(st->a, st->tn_cap);
	memcpy(t, s, (size_t)len);
	t[len] = '\0';
	last->text = t;
	last->text_len = (size_t)len;
	st->tn = last;
	append_child(st->cur, last);
}

static void XMLCALL
on_doctype(void *ud, const XML_Char *n, const XML_Char *s, const XML_Char *p,
    int i)
{
	stop(ud, "DOCTYPE not allowed");
}

static void XMLCALL
on_comment(void *ud, const XML_Char *c)
{
	stop(ud, "comments not allowed");
}

static void XMLCALL
on_pi(void *ud, const XML_Char *t, const XML_Char *d)
{
	stop(ud, "processing instructions not allowed");
}

static void XMLCALL
on_xmldecl(void *ud, const XML_Char *v, const XML_Char *e, int s)
{
	stop(ud, "XML declaration not allowed");
}

static void XMLCALL
on_entity(void *ud, const XML_Char *n, int pe, const XML_Char *v, int vl,
    const XML_Char *b, const XML_Char *s, const XML_Char *p, const XML_Char *nn)
{
	stop(ud, "entity declarations not allowed");
}

/*
 * One parser per thread, reset between stanzas: creating a parser costs
 * allocations and a getrandom() call for its hash salt every time. The
 * salt is drawn once per thread instead (it only has to be unpredictable
 * to peers). XML_ParserReset keeps namespace processing but clears the
 * handlers, so parse_stanza sets them again each time.
 */
static __thread XML_Parser thread_parser;
static __thread unsigned long thread_salt;

/* parser_get - this thread's parser, reset and salted */
static XML_Parser
parser_get(void)
{
	if (thread_parser == NULL) {
		FILE *fp;

		thread_parser = XML_ParserCreateNS("UTF-8", NS_SEP);
		if (thread_parser == NULL)
			panic("XML_ParserCreateNS failed");
		if ((fp = fopen("/dev/urandom", "r")) == NULL ||
		    fread(&thread_salt, sizeof(thread_salt), 1, fp) != 1)
			thread_salt = (unsigned long)(xm_monotonic() * 1e9) ^
			    (unsigned long)&thread_salt;
		if (fp != NULL)
			fclose(fp);
	} else if (!XML_ParserReset(thread_parser, "UTF-8"))
		panic("XML_ParserReset failed");
	XML_SetHashSalt(thread_parser, thread_salt);
	return thread_parser;
}

/* parse_stanza - parse one element at S[0..n) into EV; 0 or -1 */
static int
parse_stanza(struct xm_arena *a, const char *s, size_t n,
    const struct xm_event_limits *lim, struct xm_event *ev, size_t *used,
    char *err, size_t errlen)
{
	struct parse_state st = { 0 };
	size_t feed = n < lim->max_stanza ? n : lim->max_stanza;
	enum XML_Status rc;

	st.p = parser_get();
	st.a = a;
	st.lim = lim;
	st.ev = ev;
	XML_SetUserData(st.p, &st);
	XML_SetElementHandler(st.p, on_start, on_end);
	XML_SetCharacterDataHandler(st.p, on_text);
	XML_SetStartDoctypeDeclHandler(st.p, on_doctype);
	XML_SetCommentHandler(st.p, on_comment);
	XML_SetProcessingInstructionHandler(st.p, on_pi);
	XML_SetXmlDeclHandler(st.p, on_xmldecl);
	XML_SetEntityDeclHandler(st.p, on_entity);
	XML_SetParamEntityParsing(st.p, XML_PARAM_ENTITY_PARSING_NEVER);
#ifdef HAVE_XML_SETREPARSEDEFERRALENABLED
	XML_SetReparseDeferralEnabled(st.p, XML_FALSE);
#endif
	/* feed in chunks: expat copies what it has not parsed yet, and in a
	 * file of many events everything after this stanza is such a rest */
	{
		size_t off = 0, chunk, step = 1024;

		do {
			chunk = feed - off < step ? feed - off : step;
			rc = XML_Parse(st.p, s + off, (int)chunk, XML_FALSE);
			off += chunk;
			if (step < 65536)
				step *= 2;
		} while (rc == XML_STATUS_OK && !st.done && off < feed);
	}
	if (st.error != NULL) {
		snprintf(err, errlen, "stanza: %s", st.error);
	} else if (st.done) {
		*used = st.end;
	} else if (rc == XML_STATUS_ERROR) {
		snprintf(err, errlen, "stanza: line %lu: %s",
		    (unsigned long)XML_GetCurrentLineNumber(st.p),
		    XML_ErrorString(XML_GetErrorCode(st.p)));
	} else if (feed < n) {
		snprintf(err, errlen, "stanza: larger than %zu bytes",
		    lim->max_stanza);
	} else {
		snprintf(err, errlen, "stanza: truncated (no end tag)");
	}
	return st.done && st.error == NULL ? 0 : -1;
}

/* ---- the typed view ---- */

struct view {
	struct xm_arena *a;
	struct xm_event *ev;
	size_t cbodies, csubjects, curls, cfiles, cinvites;
};

/* lang_of - xml:lang of N, or NULL */
static const char *
lang_of(const struct xm_node *n)
{
	size_t i;

	for (i = 0; i < n->nattrs; i++)
		if (strcmp(n->attrs[i].ns, NS_XML) == 0 &&
		    strcmp(n->attrs[i].name, "lang") == 0)
			return n->attrs[i].value;
	return NULL;
}

/* add_url - record a URL found in the stanza */
static void
add_url(struct view *v, enum xm_url_source src, const char *url,
    const char *desc)
{
	struct xm_event *ev = v->ev;

	if (url == NULL || *url == '\0')
		return;
	ev->urls = xm_arena_grow(v->a, ev->urls, &v->curls, ev->nurls, 1,
	    sizeof(*ev->urls));
	ev->urls[ev->nurls].source = src;
	ev->urls[ev->nurls].url = url;
	ev->urls[ev->nurls].desc = desc;
	ev->nurls++;
}

/* add_file - a new file-transfer record */
static struct xm_file *
add_file(struct view *v, enum xm_file_method m)
{
	struct xm_event *ev = v->ev;
	struct xm_file *f;

	ev->files = xm_arena_grow(v->a, ev->files, &v->cfiles, ev->nfiles, 1,
	    sizeof(*ev->files));
	f = &ev->files[ev->nfiles++];
	memset(f, 0, sizeof(*f));
	f->method = m;
	f->size = f->seq = f->block_size = -1;
	return f;
}

/* number_attr - non-negative integer attribute, -1 when absent or bad */
static long long
number_attr(const struct xm_node *n, const char *name)
{
	long long v;

	if (xm_parse_ll(xm_node_attr(n, name), 0, (1LL << 62), &v) < 0)
		return -1;
	return v;
}

/* child_text - text of child NAME (any namespace) or NULL */
static const char *
child_text(struct view *v, const struct xm_node *n, const char *name)
{
	struct xm_node *c = xm_node_child(n, name, NULL);

	return c ? xm_node_text(v->a, c) : NULL;
}

/* xhtml_links - walk XHTML-IM for <a href> and <img src> */
static void
xhtml_links(struct view *v, const struct xm_node *n)
{
	const struct xm_node *c;

	if (n->name == NULL)
		return;
	if (strcmp(n->name, "a") == 0)
		add_url(v, XM_URL_XHTML_HREF, xm_node_attr(n, "href"),
		    xm_node_text(v->a, n));
	else if (strcmp(n->name, "img") == 0)
		add_url(v, XM_URL_XHTML_SRC, xm_node_attr(n, "src"),
		    xm_node_attr(n, "alt"));
	for (c = n->children; c != NULL; c = c->next)
		xhtml_links(v, c);
}

/* file_hashes - hash children of a Jingle <file> (XEP-0300) */
static void
file_hashes(struct view *v, struct xm_file *f, const struct xm_node *file)
{
	const struct xm_node *c;
	size_t n = 0, cap = 0;

	for (c = file->children; c != NULL; c = c->next) {
		if (c->name == NULL || strcmp(c->name, "hash") != 0 ||
		    strncmp(c->ns, NS_HASHES_PREFIX, strlen(NS_HASHES_PREFIX)) != 0)
			continue;
		f->hashes = xm_arena_grow(v->a, f->hashes, &cap, n, 1,
		    sizeof(*f->hashes));
		f->hashes[n].algo = xm_node_attr(c, "algo");
		f->hashes[n].value = xm_node_text(v->a, c);
		n++;
	}
	f->nhashes = n;
}

/* find_desc - depth-first search for element NAME whose ns starts with P */
static const struct xm_node *
find_el(const struct xm_node *n, const char *name, const char *nsprefix)
{
	const struct xm_node *c, *r;

	for (c = n->children; c != NULL; c = c->next) {
		if (c->name == NULL)
			continue;
		if (strcmp(c->name, name) == 0 &&
		    strncmp(c->ns, nsprefix, strlen(nsprefix)) == 0)
			return c;
		if ((r = find_el(c, name, nsprefix)) != NULL)
			return r;
	}
	return NULL;
}

/* view_si - XEP-0096 file offer */
static bool
view_si(struct view *v, const struct xm_node *si)
{
	const struct xm_node *file = xm_node_child(si, "file", NS_SI_FT);
	struct xm_file *f;

	if (file == NULL)
		return false;
	f = add_file(v, XM_FT_SI);
	f->sid = xm_node_attr(si, "id");
	f->type = xm_node_attr(si, "mime-type");
	f->name = xm_node_attr(file, "name");
	f->size = number_attr(file, "size");
	f->desc = child_text(v, file, "desc");
	if (xm_node_attr(file, "hash") != NULL) {
		f->hashes = xm_arena_alloc(v->a, sizeof(*f->hashes));
		f->hashes[0].algo = "md5";
		f->hashes[0].value = xm_node_attr(file, "hash");
		f->nhashes = 1;
	}
	return true;
}

/* view_jingle - XEP-0234 session-initiate (or content-add) with files */
static bool
view_jingle(struct view *v, const struct xm_node *j)
{
	const char *action = xm_node_attr(j, "action");
	const struct xm_node *c, *desc, *file;
	bool any = false;

	if (action == NULL || (strcmp(action, "session-initiate") != 0 &&
	    strcmp(action, "content-add") != 0))
		return false;
	for (c = j->children; c != NULL; c = c->next) {
		struct xm_file *f;

		if (c->name == NULL || strcmp(c->name, "content") != 0)
			continue;
		desc = xm_node_child(c, "description", NULL);
		if (desc == NULL || strncmp(desc->ns, NS_JINGLE_FT_PREFIX,
		    strlen(NS_JINGLE_FT_PREFIX)) != 0)
			continue;
		file = find_el(desc, "file", NS_JINGLE_FT_PREFIX);
		if (file == NULL)
			continue;
		f = add_file(v, XM_FT_JINGLE);
		f->sid = xm_node_attr(j, "sid");
		f->name = child_text(v, file, "name");
		f->type = child_text(v, file, "media-type");
		f->desc = child_text(v, file, "desc");
		if (xm_parse_ll(child_text(v, file, "size"), 0, 1LL << 62,
		    &f->size) < 0)
			f->size = -1;
		file_hashes(v, f, file);
		any = true;
	}
	return any;
}

/* view_ibb - XEP-0047 open / data / close (in iq or message) */
static bool
view_ibb(struct view *v, const struct xm_node *n)
{
	struct xm_file *f;

	if (strcmp(n->name, "open") == 0) {
		f = add_file(v, XM_FT_IBB_OPEN);
		f->block_size = number_attr(n, "block-size");
	} else if (strcmp(n->name, "data") == 0) {
		f = add_file(v, XM_FT_IBB_DATA);
		f->seq = number_attr(n, "seq");
		f->data = xm_node_text(v->a, n);
		if (f->data == NULL)
			f->data = "";
	} else if (strcmp(n->name, "close") == 0) {
		f = add_file(v, XM_FT_IBB_CLOSE);
	} else
		return false;
	f->sid = xm_node_attr(n, "sid");
	return true;
}

/* url_name - last path segment of URL, as a file name guess */
static const char *
url_name(struct view *v, const char *url)
{
	const char *end, *slash, *q;

	if (url == NULL)
		return NULL;
	if ((q = strstr(url, "://")) != NULL) {
		/* the authority is no file name: the path starts after it */
		url = q + 3;
		url += strcspn(url, "/?#");
		if (*url != '/')
			return NULL;
	}
	q = strpbrk(url, "?#");
	end = q ? q : url + strlen(url);
	for (slash = end; slash > url && slash[-1] != '/'; slash--)
		;
	return slash < end ? xm_arena_strndup(v->a, slash, (size_t)(end - slash))
	    : NULL;
}

/* view_oob - XEP-0066 in a message (x) or an iq (query) */
static void
view_oob(struct view *v, const struct xm_node *n)
{
	struct xm_file *f;
	const char *url = child_text(v, n, "url");

	if (url == NULL)
		return;
	add_url(v, XM_URL_OOB, url, child_text(v, n, "desc"));
	f = add_file(v, XM_FT_OOB);
	f->url = url;
	f->desc = child_text(v, n, "desc");
	f->name = url_name(v, url);
	f->sid = xm_node_attr(n, "sid");
}

/* view_upload - XEP-0363 slot request */
static bool
view_upload(struct view *v, const struct xm_node *n)
{
	struct xm_file *f = add_file(v, XM_FT_UPLOAD);

	f->name = xm_node_attr(n, "filename");
	f->type = xm_node_attr(n, "content-type");
	f->size = number_attr(n, "size");
	return true;
}

/* add_invite - a new invitation record */
static struct xm_invite *
add_invite(struct view *v, enum xm_invite_kind k)
{
	struct xm_event *ev = v->ev;
	struct xm_invite *inv;

	ev->invites = xm_arena_grow(v->a, ev->invites, &v->cinvites,
	    ev->ninvites, 1, sizeof(*ev->invites));
	inv = &ev->invites[ev->ninvites++];
	memset(inv, 0, sizeof(*inv));
	inv->kind = k;
	return inv;
}

/* view_message_child - one child of a <message> */
static void
view_message_child(struct view *v, const struct xm_node *c)
{
	struct xm_event *ev = v->ev;
	const struct xm_node *x;

	if (strcmp(c->ns, ev->root->ns) == 0 && strcmp(c->name, "body") == 0) {
		ev->bodies = xm_arena_grow(v->a, ev->bodies, &v->cbodies,
		    ev->nbodies, 1, sizeof(*ev->bodies));
		ev->bodies[ev->nbodies].lang = lang_of(c);
		ev->bodies[ev->nbodies].text = xm_node_text(v->a, c);
		if (ev->bodies[ev->nbodies].text == NULL)
			ev->bodies[ev->nbodies].text = "";
		ev->nbodies++;
	} else if (strcmp(c->ns, ev->root->ns) == 0 &&
	    strcmp(c->name, "subject") == 0) {
		ev->subjects = xm_arena_grow(v->a, ev->subjects, &v->csubjects,
		    ev->nsubjects, 1, sizeof(*ev->subjects));
		ev->subjects[ev->nsubjects].lang = lang_of(c);
		ev->subjects[ev->nsubjects].text = xm_node_text(v->a, c);
		if (ev->subjects[ev->nsubjects].text == NULL)
			ev->subjects[ev->nsubjects].text = "";
		ev->nsubjects++;
	} else if (strcmp(c->ns, NS_XHTML_IM) == 0 &&
	    strcmp(c->name, "html") == 0) {
		x = xm_node_child(c, "body", NS_XHTML);
		if (x != NULL && ev->xhtml == NULL) {
			ev->xhtml = (struct xm_node *)x;
			ev->xhtml_text = xm_node_text(v->a, x);
			xhtml_links(v, x);
		}
	} else if (strcmp(c->ns, NS_X_OOB) == 0 && strcmp(c->name, "x") == 0) {
		view_oob(v, c);
	} else if (strcmp(c->ns, NS_IBB) == 0) {
		view_ibb(v, c);
	} else if (strcmp(c->ns, NS_MUC_USER) == 0 && strcmp(c->name, "x") == 0) {
		for (x = c->children; x != NULL; x = x->next) {
			struct xm_invite *inv;

			if (x->name == NULL || strcmp(x->name, "invite") != 0)
				continue;
			inv = add_invite(v, XM_INVITE_MEDIATED);
			inv->room = ev->from;
			inv->invitee = xm_node_attr(x, "to");
			inv->reason = child_text(v, x, "reason");
			inv->password = child_text(v, c, "password");
		}
	} else if (strcmp(c->ns, NS_CONFERENCE) == 0 &&
	    strcmp(c->name, "x") == 0) {
		struct xm_invite *inv = add_invite(v, XM_INVITE_DIRECT);

		inv->room = xm_node_attr(c, "jid");
		inv->reason = xm_node_attr(c, "reason");
		inv->password = xm_node_attr(c, "password");
	}
}

/* view_iq_child - one child of an <iq>; true when it is a transfer */
static bool
view_iq_child(struct view *v, const struct xm_node *c)
{
	if (strcmp(c->ns, NS_SI) == 0 && strcmp(c->name, "si") == 0)
		return view_si(v, c);
	if (strcmp(c->ns, NS_JINGLE) == 0 && strcmp(c->name, "jingle") == 0)
		return view_jingle(v, c);
	if (strcmp(c->ns, NS_IBB) == 0)
		return view_ibb(v, c);
	if (strcmp(c->ns, NS_IQ_OOB) == 0 && strcmp(c->name, "query") == 0) {
		size_t before = v->ev->nfiles;

		view_oob(v, c);
		return v->ev->nfiles > before;
	}
	return false;
}

/* build_view - fill the typed view from the tree */
static void
build_view(struct xm_arena *a, struct xm_event *ev)
{
	struct view v = { .a = a, .ev = ev };
	const struct xm_node *root = ev->root, *c;

	ev->name = root->name;
	ev->type = xm_node_attr(root, "type");
	ev->from = xm_node_attr(root, "from");
	ev->to = xm_node_attr(root, "to");
	ev->id = xm_node_attr(root, "id");

	if (strcmp(root->name, "message") == 0) {
		ev->kind = XM_KIND_MESSAGE;
		for (c = root->children; c != NULL; c = c->next)
			if (c->name != NULL)
				view_message_child(&v, c);
	} else if (strcmp(root->name, "presence") == 0) {
		const char *t = ev->type ? ev->type : "";

		ev->kind = (strcmp(t, "subscribe") == 0 ||
		    strcmp(t, "subscribed") == 0 ||
		    strcmp(t, "unsubscribe") == 0 ||
		    strcmp(t, "unsubscribed") == 0) ?
		    XM_KIND_SUBSCRIPTION : XM_KIND_PRESENCE;
		ev->status = child_text(&v, root, "status");
	} else if (strcmp(root->name, "iq") == 0) {
		ev->kind = XM_KIND_IQ;
		for (c = root->children; c != NULL; c = c->next) {
			if (c->name == NULL)
				continue;
			if (strcmp(c->ns, NS_UPLOAD) == 0 &&
			    strcmp(c->name, "request") == 0) {
				view_upload(&v, c);
				ev->kind = XM_KIND_UPLOAD;
			} else if (view_iq_child(&v, c))
				ev->kind = XM_KIND_TRANSFER;
		}
	} else
		ev->kind = XM_KIND_OTHER;
}

/* ---- the envelope ---- */

/* key_ok - envelope keys are [a-z0-9_-]+ */
static bool
key_ok(const char *k, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') ||
		    k[i] == '-' || k[i] == '_'))
			return false;
	return true;
}

/* set_known - copy well-known fields into the event's named members */
static int
set_known(struct xm_event *ev, const char *k, const char *val, char *err,
    size_t errlen)
{
	/* every event has several fields: test the first letter before
	 * comparing whole names */
	if (strchr("opiatr", k[0]) == NULL)
		return 0;
	if (strcmp(k, "origin") == 0 && ev->origin == NULL)
		ev->origin = val;
	else if (strcmp(k, "peer") == 0 && ev->peer == NULL)
		ev->peer = val;
	else if (strcmp(k, "ip") == 0 && ev->ip == NULL)
		ev->ip = val;
	else if (strcmp(k, "auth") == 0 && ev->auth == NULL)
		ev->auth = val;
	else if (strcmp(k, "tls") == 0 && ev->tls == NULL)
		ev->tls = val;
	else if (strcmp(k, "roster") == 0 && ev->roster == NULL)
		ev->roster = val;
	else if (strcmp(k, "account-age") == 0 && ev->account_age < 0) {
		if (xm_parse_ll(val, 0, 1LL << 62, &ev->account_age) < 0) {
			snprintf(err, errlen, "envelope: bad account-age \"%.40s\"",
			    val);
			return -1;
		}
	} else if (strcmp(k, "time") == 0 && ev->time_text == NULL) {
		if (xm_parse_time(val, &ev->time) < 0) {
			snprintf(err, errlen, "envelope: bad time \"%.40s\" "
			    "(want RFC 3339, e.g. 2026-11-22T10:00:00.250Z)", val);
			return -1;
		}
		ev->time_text = val;
	}
	return 0;
}

/* xm_event_parse - one event: envelope, empty line, stanza */
int
xm_event_parse(struct xm_arena *a, const char *buf, size_t len,
    const struct xm_event_limits *lim, struct xm_event **out,
    size_t *consumed, char *err, size_t errlen)
{
	struct xm_event *ev;
	size_t pos = 0, cap = 0, used = 0, line = 0;

	/* skip leading blank space between events */
	while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t' ||
	    buf[pos] == '\n' || buf[pos] == '\r'))
		pos++;
	if (pos == len)
		return 1;

	ev = xm_arena_alloc(a, sizeof(*ev));
	ev->arena = a;
	ev->account_age = -1;
	ev->time = -1;

	/* envelope lines, unless the event starts with the stanza itself */
	while (pos < len && buf[pos] != '<') {
		const char *l = buf + pos, *nl, *eq;
		size_t ll;

		nl = memchr(l, '\n', len - pos);
		ll = nl ? (size_t)(nl - l) : len - pos;
		line++;
		if (ll > lim->max_field_len) {
			snprintf(err, errlen, "envelope line %zu: longer than %zu "
			    "bytes", line, lim->max_field_len);
			return -1;
		}
		if (nl == NULL) {
			snprintf(err, errlen, "envelope line %zu: no stanza follows",
			    line);
			return -1;
		}
		pos += ll + 1;
		if (ll == 0)
			break;  /* the empty line: the stanza follows */
		if (l[0] == '#')
			continue;
		if (memchr(l, '\0', ll) != NULL || memchr(l, '\r', ll) != NULL) {
			snprintf(err, errlen, "envelope line %zu: NUL or CR in line",
			    line);
			return -1;
		}
		eq = memchr(l, '=', ll);
		if (eq == NULL || !key_ok(l, (size_t)(eq - l))) {
			snprintf(err, errlen, "envelope line %zu: not key=value",
			    line);
			return -1;
		}
		if (ev->nfields >= lim->max_fields) {
			snprintf(err, errlen, "envelope: more than %u fields",
			    lim->max_fields);
			return -1;
		}
		if (!xm_utf8_valid(eq + 1, ll - (size_t)(eq - l) - 1)) {
			snprintf(err, errlen, "envelope line %zu: invalid UTF-8",
			    line);
			return -1;
		}
		ev->fields = xm_arena_grow(a, ev->fields, &cap, ev->nfields, 1,
		    sizeof(*ev->fields));
		ev->fields[ev->nfields].key = xm_arena_strndup(a, l,
		    (size_t)(eq - l));
		ev->fields[ev->nfields].value = xm_arena_strndup(a, eq + 1,
		    ll - (size_t)(eq - l) - 1);
		if (set_known(ev, ev->fields[ev->nfields].key,
		    ev->fields[ev->nfields].value, err, errlen) < 0)
			return -1;
		ev->nfields++;
	}
	while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t' ||
	    buf[pos] == '\n' || buf[pos] == '\r'))
		pos++;
	if (pos == len || buf[pos] != '<') {
		snprintf(err, errlen, "event: no stanza after the envelope");
		return -1;
	}
	if (parse_stanza(a, buf + pos, len - pos, lim, ev, &used, err,
	    errlen) < 0)
		return -1;
	ev->raw = xm_arena_strndup(a, buf + pos, used);
	ev->raw_len = used;
	pos += used;
	while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t' ||
	    buf[pos] == '\n' || buf[pos] == '\r'))
		pos++;
	build_view(a, ev);
	*out = ev;
	*consumed = pos;
	return 0;
}

/* xm_event_format - the event as text (STANZA replaces the original) */
char *
xm_event_format(struct xm_arena *a, const struct xm_event *ev,
    const char *stanza)
{
	struct xm_buf b = { 0 };
	size_t i;
	char *r;

	for (i = 0; i < ev->nfields; i++)
		xm_buf_printf(&b, "%s=%s\n", ev->fields[i].key,
		    ev->fields[i].value);
	xm_buf_puts(&b, "\n");
	xm_buf_puts(&b, stanza ? stanza : ev->raw);
	xm_buf_puts(&b, "\n");
	r = xm_arena_strndup(a, b.data, b.len);
	xm_buf_free(&b);
	return r;
}
