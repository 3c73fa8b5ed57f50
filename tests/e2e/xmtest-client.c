/*
 * xmtest-client.c - a scripted XMPP client pair for xmilter's end-to-end tests
 *
 * Logs in a receiver and a sender (a c2s account, or an XEP-0114 component
 * standing in for a legacy-network transport), makes sure the server has
 * the receiver's presence (a ping round-trip after presence), runs one
 * scenario and prints one machine-checkable line per outcome on stdout:
 *
 *   message    delivered ID BODY | error ID CONDITION TEXT | missing ID
 *   iq         iq-delivered ID | iq-result ID | iq-error ID COND TEXT | iq-missing ID
 *   subscribe  subscribe-delivered ID | subscribe-error ID COND TEXT | subscribe-missing ID
 *   upload     upload-slot ID PUT-URL | upload-error ID COND TEXT | upload-missing ID
 *              (after a slot, "upload-header ID NAME: VALUE" per PUT header)
 *
 * and a closing "summary sent=.. delivered=.. errors=.. missing=.. ..." line.
 * TEXT is "-" when the error has none; newlines in BODY and TEXT print as
 * "\n". Diagnostics go to stderr. An outcome is "missing" when nothing came
 * back within the quiet time after the last send or outcome.
 *
 * Run time is always bounded by --timeout. Exit status: 0 when the
 * scenario ran (whatever its outcomes), 1 on usage or set-up errors (no
 * login, no component handshake), 2 when the global timeout struck.
 *
 * Memory: libstrophe owns its stanzas (released after xmpp_send); bodies
 * and ids live in one table allocated at start and freed at exit.
 *
 * libstrophe 0.12.2 crashes on the first stanza a component connection
 * receives because xmpp_connect_component() never creates the stream
 * management state; component_sm_state() works around it with the public
 * API (see TESTBED).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

enum mode { MODE_MESSAGE, MODE_IQ, MODE_SUBSCRIBE, MODE_UPLOAD };
enum outcome { OUT_NONE = 0, OUT_DELIVERED, OUT_ERROR };

struct item {
	char id[32];
	char *body;          /* message body as sent (messages only) */
	double sent_at;      /* monotonic seconds, 0 = not sent yet */
	enum outcome out;
	double latency;      /* seconds from send to delivery */
};

struct peer {
	const char *name;    /* "sender" / "receiver", for diagnostics */
	xmpp_conn_t *conn;
	bool component;
	bool ready;          /* logged in (and presence known to the server) */
	bool failed;
	char ping_id[16];
};

static struct {
	enum mode mode;
	const char *server, *rcpt_server, *comp_server;
	const char *from, *from_pass, *to, *to_pass;
	const char *component, *secret;
	const char *offer, *file, *upload_service, *msg_type, *prefix;
	long long size;
	double timeout, quiet, rate;
	long count, window;
	bool verbose, no_presence;
	char **bodies;
	size_t nbodies;
	const char *hash;    /* --hash ALGO:VALUE for SI and Jingle offers */
	const char *url;     /* --url: the OOB offer's whole URL */
} opt = {
	.server = "127.0.0.1:5222",
	.offer = "si",
	.file = "report.pdf",
	.size = 1024,
	.msg_type = "chat",
	.prefix = "m",
	.timeout = 30,
	.quiet = 2,
	.count = 1,
};

static xmpp_ctx_t *ctx;
static struct peer sender = { .name = "sender" }, receiver = { .name = "receiver" };
static struct item *items;
static size_t nitems, nsent, nresolved, ndelivered, nerrors;
static double t_start, t_first_send, t_last_activity;
static char rcpt_full[512];  /* receiver's bound JID */
static bool shutting_down;

/* now - monotonic seconds */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* die - print a set-up error and exit 1 */
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "xmtest-client: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* xstrdup - strdup that never returns NULL */
static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		die("out of memory");
	return p;
}

/* print_escaped - S on one line: newlines as \n, other controls as spaces */
static void print_escaped(const char *s)
{
	if (!s || !*s) {
		fputs("-", stdout);
		return;
	}
	for (; *s; s++) {
		if (*s == '\n')
			fputs("\\n", stdout);
		else if ((unsigned char)*s < 0x20)
			fputc(' ', stdout);
		else
			fputc(*s, stdout);
	}
}

/* split_addr - "HOST:PORT" into HOST (static copy) and PORT */
static void split_addr(const char *addr, char *host, size_t hostlen, unsigned short *port)
{
	const char *colon = strrchr(addr, ':');
	char *end;
	long p;

	if (!colon || (size_t)(colon - addr) >= hostlen)
		die("bad address '%s' (want HOST:PORT)", addr);
	memcpy(host, addr, colon - addr);
	host[colon - addr] = '\0';
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || *end || p < 1024 || p > 65535)
		die("bad port in '%s' (1024-65535)", addr);
	*port = (unsigned short)p;
}

/* find_item - the item with this id, or NULL */
static struct item *find_item(const char *id)
{
	size_t i, plen = strlen(opt.prefix);
	char *end;
	unsigned long n;

	if (!id || strncmp(id, opt.prefix, plen) != 0)
		return NULL;
	errno = 0;
	n = strtoul(id + plen, &end, 10);
	if (errno || *end || n < 1 || n > nitems)
		return NULL;
	i = n - 1;
	return strcmp(items[i].id, id) == 0 ? &items[i] : NULL;
}

/* stanza_error - condition and text of an error stanza (NULL when absent);
 * the text is allocated by libstrophe (xmpp_free it) */
static const char *stanza_error(xmpp_stanza_t *st, char **text)
{
	xmpp_stanza_t *err = xmpp_stanza_get_child_by_name(st, "error"), *c;
	const char *cond = NULL;

	*text = NULL;
	if (!err)
		return "undefined-condition";
	for (c = xmpp_stanza_get_children(err); c; c = xmpp_stanza_get_next(c)) {
		const char *name;
		if (!xmpp_stanza_is_tag(c))
			continue;
		name = xmpp_stanza_get_name(c);
		if (strcmp(name, "text") == 0)
			*text = xmpp_stanza_get_text(c);
		else if (!cond)
			cond = name;
	}
	return cond ? cond : "undefined-condition";
}

/* resolve - record an outcome for IT (first one counts) */
static void resolve(struct item *it, enum outcome out)
{
	t_last_activity = now();
	if (it->out != OUT_NONE)
		return;
	it->out = out;
	nresolved++;
	if (out == OUT_DELIVERED) {
		ndelivered++;
		it->latency = t_last_activity - it->sent_at;
	} else {
		nerrors++;
	}
}

/* report_error - print "<prefix>error ID COND TEXT" for an error stanza */
static void report_error(const char *prefix, xmpp_stanza_t *st)
{
	char *text;
	const char *cond = stanza_error(st, &text);
	const char *id = xmpp_stanza_get_id(st);
	struct item *it = find_item(id);

	printf("%serror %s %s ", prefix, id ? id : "-", cond);
	print_escaped(text);
	putchar('\n');
	if (text)
		xmpp_free(ctx, text);
	if (it)
		resolve(it, OUT_ERROR);
}

/* on_message - messages to either peer: deliveries and bounces */
static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct peer *p = ud;
	const char *type = xmpp_stanza_get_type(st);
	const char *id = xmpp_stanza_get_id(st);
	struct item *it;
	char *body;

	if (type && strcmp(type, "error") == 0) {
		if (p == &sender)
			report_error("", st);
		else
			fprintf(stderr, "xmtest-client: receiver got an error message id=%s\n", id ? id : "-");
		return 1;
	}
	if (p != &receiver)
		return 1;
	body = xmpp_message_get_body(st);
	if (!body)
		return 1; /* chat states and the like */
	it = find_item(id);
	printf("%s %s ", it ? "delivered" : "unexpected", id ? id : "-");
	print_escaped(body);
	putchar('\n');
	xmpp_free(ctx, body);
	if (it)
		resolve(it, OUT_DELIVERED);
	return 1;
}

/* on_presence - subscription requests (receiver) and their bounces (sender) */
static int on_presence(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct peer *p = ud;
	const char *type = xmpp_stanza_get_type(st);
	const char *id = xmpp_stanza_get_id(st);
	struct item *it = find_item(id);

	if (opt.mode != MODE_SUBSCRIBE || !type)
		return 1;
	if (p == &sender && strcmp(type, "error") == 0) {
		report_error("subscribe-", st);
	} else if (p == &receiver && strcmp(type, "subscribe") == 0) {
		printf("subscribe-delivered %s %s\n", id ? id : "-",
		    xmpp_stanza_get_from(st) ? xmpp_stanza_get_from(st) : "-");
		if (it)
			resolve(it, OUT_DELIVERED);
	}
	return 1;
}

/* on_iq - the receiver answers file offers; the sender sees results */
static int on_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct peer *p = ud;
	const char *type = xmpp_stanza_get_type(st);
	const char *id = xmpp_stanza_get_id(st);
	struct item *it = find_item(id);

	if (!type)
		return 1;
	if (p == &receiver && strcmp(type, "set") == 0) {
		xmpp_stanza_t *reply = xmpp_stanza_reply(st);
		xmpp_stanza_set_type(reply, "result");
		xmpp_send(conn, reply);
		xmpp_stanza_release(reply);
		if (it)
			printf("iq-delivered %s\n", id);
		return 1;
	}
	if (p != &sender || !it)
		return 1;
	if (strcmp(type, "result") == 0) {
		if (opt.mode == MODE_UPLOAD) {
			xmpp_stanza_t *slot = xmpp_stanza_get_child_by_name(st, "slot");
			xmpp_stanza_t *put = slot ? xmpp_stanza_get_child_by_name(slot, "put") : NULL;
			const char *url = put ? xmpp_stanza_get_attribute(put, "url") : NULL;
			printf("upload-slot %s %s\n", id, url ? url : "-");
			/* the PUT's headers (Authorization...), one line each */
			for (xmpp_stanza_t *h = put ? xmpp_stanza_get_children(put) : NULL; h;
			    h = xmpp_stanza_get_next(h)) {
				const char *hn = xmpp_stanza_get_name(h) ? xmpp_stanza_get_attribute(h, "name") : NULL;
				char *hv = hn ? xmpp_stanza_get_text(h) : NULL;
				if (hn && hv && !strpbrk(hn, " \r\n") && !strpbrk(hv, "\r\n"))
					printf("upload-header %s %s: %s\n", id, hn, hv);
				if (hv)
					xmpp_free(ctx, hv);
			}
		} else {
			printf("iq-result %s\n", id);
		}
		resolve(it, OUT_DELIVERED);
	} else if (strcmp(type, "error") == 0) {
		report_error(opt.mode == MODE_UPLOAD ? "upload-" : "iq-", st);
	}
	return 1;
}

/* on_ping - a peer's ping round-trip is back: it is ready */
static int on_ping(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct peer *p = ud;
	const char *type = xmpp_stanza_get_type(st);

	if (type && strcmp(type, "error") == 0) {
		char *text;
		fprintf(stderr, "xmtest-client: %s: ping failed: %s\n", p->name, stanza_error(st, &text));
		if (text)
			xmpp_free(ctx, text);
	}
	p->ready = true;
	if (p == &receiver) {
		const char *jid = xmpp_conn_get_bound_jid(conn);
		snprintf(rcpt_full, sizeof rcpt_full, "%s", jid ? jid : opt.to);
	}
	return 0;
}

/* send_ping - an XEP-0199 ping to our server, answered once the server has
 * processed everything we sent before it (our presence in particular) */
static void send_ping(struct peer *p)
{
	xmpp_stanza_t *iq = xmpp_iq_new(ctx, "get", NULL), *ping = xmpp_stanza_new(ctx);
	char *domain;

	snprintf(p->ping_id, sizeof p->ping_id, "ping-%s", p->name);
	xmpp_stanza_set_id(iq, p->ping_id);
	if (p->component) {
		/* a component pings the server domain it is attached to */
		domain = xmpp_jid_domain(ctx, opt.to);
		xmpp_stanza_set_from(iq, opt.component);
	} else {
		domain = xmpp_jid_domain(ctx, xmpp_conn_get_bound_jid(p->conn));
	}
	xmpp_stanza_set_to(iq, domain);
	xmpp_free(ctx, domain);
	xmpp_stanza_set_name(ping, "ping");
	xmpp_stanza_set_ns(ping, "urn:xmpp:ping");
	xmpp_stanza_add_child(iq, ping);
	xmpp_stanza_release(ping);
	xmpp_id_handler_add(p->conn, on_ping, p->ping_id, p);
	xmpp_send(p->conn, iq);
	xmpp_stanza_release(iq);
}

/* on_conn - connection events of either peer */
static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *serr, void *ud)
{
	struct peer *p = ud;

	if (ev == XMPP_CONN_CONNECT) {
		xmpp_handler_add(conn, on_message, NULL, "message", NULL, p);
		xmpp_handler_add(conn, on_presence, NULL, "presence", NULL, p);
		xmpp_handler_add(conn, on_iq, NULL, "iq", NULL, p);
		if (!p->component && !opt.no_presence) {
			xmpp_stanza_t *pres = xmpp_presence_new(ctx);
			xmpp_send(conn, pres);
			xmpp_stanza_release(pres);
		}
		send_ping(p);
		return;
	}
	if (!p->failed && !shutting_down)
		fprintf(stderr, "xmtest-client: %s: %s (error %d%s%s)\n", p->name,
		    p->ready ? "disconnected" : "could not log in", error,
		    serr && serr->text ? ": " : "", serr && serr->text ? serr->text : "");
	p->failed = true;
}

/* on_probe - the throw-away connection used for the sm-state workaround */
static void on_probe(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *serr, void *ud)
{
	*(bool *)ud = true;
}

/* component_sm_state - a stream management state to give a component
 * connection (libstrophe 0.12.2 never creates one for components): let a
 * client connection fail against a bound but unlistened loopback port and
 * take its state */
static xmpp_sm_state_t *component_sm_state(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	xmpp_conn_t *c;
	xmpp_sm_state_t *sm;
	bool done = false;
	double until = now() + 5;

	if (fd < 0)
		die("socket: %s", strerror(errno));
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		die("bind: %s", strerror(errno));
	c = xmpp_conn_new(ctx);
	xmpp_conn_set_flags(c, XMPP_CONN_FLAG_DISABLE_TLS);
	xmpp_conn_set_jid(c, "probe@localhost");
	xmpp_conn_set_pass(c, "x");
	if (xmpp_connect_client(c, "127.0.0.1", ntohs(sa.sin_port), on_probe, &done) != XMPP_EOK)
		done = true;
	while (!done && now() < until)
		xmpp_run_once(ctx, 10);
	sm = xmpp_conn_get_sm_state(c);
	xmpp_conn_release(c);
	close(fd);
	if (!sm)
		die("could not obtain a stream management state for the component");
	return sm;
}

/* start_peer - connect P as a client (JID/PASS at ADDR) or a component */
static void start_peer(struct peer *p, const char *jid, const char *pass, const char *addr)
{
	char host[256];
	unsigned short port;
	int rc;

	split_addr(addr, host, sizeof host, &port);
	p->conn = xmpp_conn_new(ctx);
	xmpp_conn_set_flags(p->conn, XMPP_CONN_FLAG_DISABLE_TLS);
	xmpp_conn_set_jid(p->conn, jid);
	xmpp_conn_set_pass(p->conn, pass);
	if (p->component) {
		if (xmpp_conn_set_sm_state(p->conn, component_sm_state()) != XMPP_EOK)
			die("xmpp_conn_set_sm_state failed");
		rc = xmpp_connect_component(p->conn, host, port, on_conn, p);
	} else {
		rc = xmpp_connect_client(p->conn, host, port, on_conn, p);
	}
	if (rc != XMPP_EOK)
		die("%s: cannot connect to %s", p->name, addr);
}

/* add_child - a new child element NAME (namespace NS, may be NULL) of PARENT */
static xmpp_stanza_t *add_child(xmpp_stanza_t *parent, const char *name, const char *ns)
{
	xmpp_stanza_t *c = xmpp_stanza_new(ctx);
	xmpp_stanza_set_name(c, name);
	if (ns)
		xmpp_stanza_set_ns(c, ns);
	xmpp_stanza_add_child(parent, c);
	xmpp_stanza_release(c); /* the parent holds a reference */
	return c;
}

/* sender_jid - the from of what the sender sends (components set it) */
static const char *sender_jid(void)
{
	return sender.component ? opt.from : NULL;
}

/* send_message - message IT from the sender to the receiver */
static void send_message(struct item *it)
{
	xmpp_stanza_t *m = xmpp_message_new(ctx, opt.msg_type, opt.to, it->id);
	if (sender_jid())
		xmpp_stanza_set_from(m, sender_jid());
	xmpp_message_set_body(m, it->body);
	xmpp_send(sender.conn, m);
	xmpp_stanza_release(m);
}

/* send_offer - a file-transfer iq (SI, Jingle, IBB open, OOB) to the
 * receiver's full JID */
static void send_offer(struct item *it)
{
	xmpp_stanza_t *iq = xmpp_iq_new(ctx, "set", it->id), *c, *d;
	char size[32];

	snprintf(size, sizeof size, "%lld", opt.size);
	xmpp_stanza_set_to(iq, rcpt_full);
	if (sender_jid())
		xmpp_stanza_set_from(iq, sender_jid());
	if (strcmp(opt.offer, "si") == 0) {
		c = add_child(iq, "si", "http://jabber.org/protocol/si");
		xmpp_stanza_set_attribute(c, "id", "sid1");
		xmpp_stanza_set_attribute(c, "profile", "http://jabber.org/protocol/si/profile/file-transfer");
		d = add_child(c, "file", "http://jabber.org/protocol/si/profile/file-transfer");
		xmpp_stanza_set_attribute(d, "name", opt.file);
		xmpp_stanza_set_attribute(d, "size", size);
		if (opt.hash)  /* SI's hash attribute is an MD5 in hex */
			xmpp_stanza_set_attribute(d, "hash", strchr(opt.hash, ':') + 1);
		d = add_child(c, "feature", "http://jabber.org/protocol/feature-neg");
		d = add_child(d, "x", "jabber:x:data");
		xmpp_stanza_set_type(d, "form");
		d = add_child(d, "field", NULL);
		xmpp_stanza_set_attribute(d, "var", "stream-method");
		xmpp_stanza_set_type(d, "list-single");
		d = add_child(d, "option", NULL);
		d = add_child(d, "value", NULL);
		c = xmpp_stanza_new(ctx);
		xmpp_stanza_set_text(c, "http://jabber.org/protocol/bytestreams");
		xmpp_stanza_add_child(d, c);
		xmpp_stanza_release(c);
	} else if (strcmp(opt.offer, "jingle") == 0) {
		c = add_child(iq, "jingle", "urn:xmpp:jingle:1");
		xmpp_stanza_set_attribute(c, "action", "session-initiate");
		xmpp_stanza_set_attribute(c, "sid", "jsid1");
		c = add_child(c, "content", NULL);
		xmpp_stanza_set_attribute(c, "creator", "initiator");
		xmpp_stanza_set_attribute(c, "name", "a-file-offer");
		d = add_child(c, "description", "urn:xmpp:jingle:apps:file-transfer:5");
		d = add_child(d, "file", NULL);
		xmpp_stanza_t *n = add_child(d, "name", NULL), *t = xmpp_stanza_new(ctx);
		xmpp_stanza_set_text(t, opt.file);
		xmpp_stanza_add_child(n, t);
		xmpp_stanza_release(t);
		n = add_child(d, "size", NULL);
		t = xmpp_stanza_new(ctx);
		xmpp_stanza_set_text(t, size);
		xmpp_stanza_add_child(n, t);
		xmpp_stanza_release(t);
		if (opt.hash) { /* XEP-0300 */
			char algo[32];
			snprintf(algo, sizeof algo, "%.*s", (int)(strchr(opt.hash, ':') - opt.hash), opt.hash);
			n = add_child(d, "hash", "urn:xmpp:hashes:2");
			xmpp_stanza_set_attribute(n, "algo", algo);
			t = xmpp_stanza_new(ctx);
			xmpp_stanza_set_text(t, strchr(opt.hash, ':') + 1);
			xmpp_stanza_add_child(n, t);
			xmpp_stanza_release(t);
		}
		d = add_child(c, "transport", "urn:xmpp:jingle:transports:ibb:1");
		xmpp_stanza_set_attribute(d, "sid", "ibb1");
		xmpp_stanza_set_attribute(d, "block-size", "4096");
	} else if (strcmp(opt.offer, "ibb") == 0) {
		c = add_child(iq, "open", "http://jabber.org/protocol/ibb");
		xmpp_stanza_set_attribute(c, "sid", "ibb1");
		xmpp_stanza_set_attribute(c, "block-size", "4096");
		xmpp_stanza_set_attribute(c, "stanza", "iq");
	} else { /* oob */
		char url[600];
		c = add_child(iq, "query", "jabber:iq:oob");
		d = add_child(c, "url", NULL);
		snprintf(url, sizeof url, "http://198.51.100.7:8080/%s", opt.file);
		if (opt.url)
			snprintf(url, sizeof url, "%s", opt.url);
		xmpp_stanza_t *t = xmpp_stanza_new(ctx);
		xmpp_stanza_set_text(t, url);
		xmpp_stanza_add_child(d, t);
		xmpp_stanza_release(t);
	}
	xmpp_send(sender.conn, iq);
	xmpp_stanza_release(iq);
}

/* send_subscribe - a presence subscription request to the receiver */
static void send_subscribe(struct item *it)
{
	xmpp_stanza_t *p = xmpp_presence_new(ctx);
	char *bare = xmpp_jid_bare(ctx, opt.to);

	xmpp_stanza_set_type(p, "subscribe");
	xmpp_stanza_set_id(p, it->id);
	xmpp_stanza_set_to(p, bare);
	if (sender_jid())
		xmpp_stanza_set_from(p, sender_jid());
	xmpp_free(ctx, bare);
	xmpp_send(sender.conn, p);
	xmpp_stanza_release(p);
}

/* send_upload - a XEP-0363 slot request to the upload service */
static void send_upload(struct item *it)
{
	xmpp_stanza_t *iq = xmpp_iq_new(ctx, "get", it->id), *r;
	char size[32];

	snprintf(size, sizeof size, "%lld", opt.size);
	xmpp_stanza_set_to(iq, opt.upload_service);
	r = add_child(iq, "request", "urn:xmpp:http:upload:0");
	xmpp_stanza_set_attribute(r, "filename", opt.file);
	xmpp_stanza_set_attribute(r, "size", size);
	xmpp_stanza_set_attribute(r, "content-type", "application/octet-stream");
	xmpp_send(sender.conn, iq);
	xmpp_stanza_release(iq);
}

/* send_item - send IT the way the mode says */
static void send_item(struct item *it)
{
	it->sent_at = now();
	if (nsent == 0)
		t_first_send = it->sent_at;
	nsent++;
	t_last_activity = it->sent_at;
	switch (opt.mode) {
	case MODE_MESSAGE: send_message(it); break;
	case MODE_IQ: send_offer(it); break;
	case MODE_SUBSCRIBE: send_subscribe(it); break;
	case MODE_UPLOAD: send_upload(it); break;
	}
}

/* expand_body - BODY with each "%n" replaced by N */
static char *expand_body(const char *body, size_t n)
{
	char num[24], *out, *o;
	size_t len = strlen(body), nlen, count = 0;
	const char *s;

	nlen = (size_t)snprintf(num, sizeof num, "%zu", n);
	for (s = body; (s = strstr(s, "%n")); s += 2)
		count++;
	out = o = malloc(len + count * nlen + 1);
	if (!out)
		die("out of memory");
	for (s = body; *s;) {
		if (s[0] == '%' && s[1] == 'n') {
			memcpy(o, num, nlen);
			o += nlen;
			s += 2;
		} else {
			*o++ = *s++;
		}
	}
	*o = '\0';
	return out;
}

/* plan_items - the list of things to send: every -b body in order, each
 * -n times (or -n items for the other modes) */
static void plan_items(void)
{
	size_t i, k = 0, nb = opt.nbodies ? opt.nbodies : 1;

	nitems = nb * (size_t)opt.count;
	items = calloc(nitems, sizeof *items);
	if (!items)
		die("out of memory");
	for (i = 0; i < nitems; i++) {
		struct item *it = &items[i];
		snprintf(it->id, sizeof it->id, "%s%zu", opt.prefix, i + 1);
		if (opt.mode == MODE_MESSAGE)
			it->body = expand_body(opt.nbodies ? opt.bodies[k] : "hello %n", i + 1);
		if ((i + 1) % (size_t)opt.count == 0)
			k++;
	}
}

/* cmp_double - qsort order of doubles */
static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* finish - print what never came back and the summary; return the exit status */
static int finish(int status)
{
	const char *missing_prefix[] = { "", "iq-", "subscribe-", "upload-" };
	size_t i, nmissing = 0, nl = 0;
	double *lat = calloc(nitems ? nitems : 1, sizeof *lat), elapsed;

	for (i = 0; i < nitems; i++) {
		if (items[i].out == OUT_NONE && items[i].sent_at > 0) {
			printf("%smissing %s\n", missing_prefix[opt.mode], items[i].id);
			nmissing++;
		}
		if (items[i].out == OUT_DELIVERED && lat)
			lat[nl++] = items[i].latency * 1000;
	}
	elapsed = nsent ? now() - t_first_send : 0;
	if (lat && nl)
		qsort(lat, nl, sizeof *lat, cmp_double);
	printf("summary sent=%zu delivered=%zu errors=%zu missing=%zu unsent=%zu seconds=%.3f"
	    " p50_ms=%.2f p99_ms=%.2f max_ms=%.2f%s\n",
	    nsent, ndelivered, nerrors, nmissing, nitems - nsent, elapsed,
	    nl ? lat[nl / 2] : 0.0, nl ? lat[(nl * 99) / 100 < nl ? (nl * 99) / 100 : nl - 1] : 0.0,
	    nl ? lat[nl - 1] : 0.0, status == 2 ? " timeout=yes" : "");
	free(lat);
	return status;
}

static void usage(FILE *f)
{
	fputs(
"usage: xmtest-client [options] message|iq|subscribe|upload\n"
"  -s, --server HOST:PORT      sender's c2s address (default 127.0.0.1:5222)\n"
"  -S, --rcpt-server HOST:PORT receiver's c2s address (default: --server)\n"
"  -f, --from JID  -p, --from-pass PASS   the sending account\n"
"  -t, --to JID    -P, --to-pass PASS     the receiving account\n"
"  -C, --component DOMAIN      send as this XEP-0114 component (from = --from)\n"
"  -k, --secret SECRET         the component's secret\n"
"  -K, --component-server HOST:PORT  the component port\n"
"  -b, --body TEXT             a message body (repeatable; %n = sequence number)\n"
"  -n, --count N               send each body N times (default 1)\n"
"  -r, --rate R                messages per second (default: all at once)\n"
"  -w, --window N              at most N outstanding at once (default: no limit)\n"
"  -y, --type TYPE             message type (default chat)\n"
"  -i, --id-prefix P           ids are P1, P2, ... (default m)\n"
"  -o, --offer si|jingle|ibb|oob   iq mode: the kind of file offer\n"
"  -F, --file NAME  -Z, --size N    the offered or uploaded file\n"
"  -H, --hash ALGO:VALUE       the offered file's hash (SI: md5 hex; Jingle: XEP-0300)\n"
"  -L, --url URL               oob: the whole URL (default http://198.51.100.7:8080/FILE)\n"
"  -U, --upload-service JID    upload mode: the http_file_share component\n"
"  -q, --quiet SEC             wait this long for outcomes (default 2)\n"
"  -T, --timeout SEC           global time limit (default 30)\n"
"  -N, --no-presence           the peers send no initial presence\n"
"  -v, --verbose               libstrophe debug log on stderr\n", f);
}

/* parse_num - a number option in [lo, hi] */
static double parse_num(const char *s, double lo, double hi, const char *what)
{
	char *end;
	double v;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || end == s || v < lo || v > hi)
		die("bad %s '%s'", what, s);
	return v;
}

/* parse_args - fill opt from ARGV */
static void parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "server", 1, NULL, 's' }, { "rcpt-server", 1, NULL, 'S' },
		{ "from", 1, NULL, 'f' }, { "from-pass", 1, NULL, 'p' },
		{ "to", 1, NULL, 't' }, { "to-pass", 1, NULL, 'P' },
		{ "component", 1, NULL, 'C' }, { "secret", 1, NULL, 'k' },
		{ "component-server", 1, NULL, 'K' }, { "body", 1, NULL, 'b' },
		{ "count", 1, NULL, 'n' }, { "rate", 1, NULL, 'r' },
		{ "window", 1, NULL, 'w' }, { "type", 1, NULL, 'y' },
		{ "id-prefix", 1, NULL, 'i' }, { "offer", 1, NULL, 'o' },
		{ "file", 1, NULL, 'F' }, { "size", 1, NULL, 'Z' },
		{ "upload-service", 1, NULL, 'U' }, { "quiet", 1, NULL, 'q' },
		{ "timeout", 1, NULL, 'T' }, { "no-presence", 0, NULL, 'N' },
		{ "verbose", 0, NULL, 'v' }, { "help", 0, NULL, 'h' },
		{ "hash", 1, NULL, 'H' }, { "url", 1, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "s:S:f:p:t:P:C:k:K:b:n:r:w:y:i:o:F:Z:U:q:T:NvhH:L:", lo, NULL)) != -1) {
		switch (c) {
		case 's': opt.server = optarg; break;
		case 'S': opt.rcpt_server = optarg; break;
		case 'f': opt.from = optarg; break;
		case 'p': opt.from_pass = optarg; break;
		case 't': opt.to = optarg; break;
		case 'P': opt.to_pass = optarg; break;
		case 'C': opt.component = optarg; break;
		case 'k': opt.secret = optarg; break;
		case 'K': opt.comp_server = optarg; break;
		case 'b':
			opt.bodies = realloc(opt.bodies, (opt.nbodies + 1) * sizeof *opt.bodies);
			if (!opt.bodies)
				die("out of memory");
			opt.bodies[opt.nbodies++] = xstrdup(optarg);
			break;
		case 'n': opt.count = (long)parse_num(optarg, 1, 10000000, "count"); break;
		case 'r': opt.rate = parse_num(optarg, 0, 1e6, "rate"); break;
		case 'w': opt.window = (long)parse_num(optarg, 0, 1e7, "window"); break;
		case 'y': opt.msg_type = optarg; break;
		case 'i': opt.prefix = optarg; break;
		case 'o': opt.offer = optarg; break;
		case 'F': opt.file = optarg; break;
		case 'Z': opt.size = (long long)parse_num(optarg, 0, 1e15, "size"); break;
		case 'U': opt.upload_service = optarg; break;
		case 'q': opt.quiet = parse_num(optarg, 0, 3600, "quiet time"); break;
		case 'T': opt.timeout = parse_num(optarg, 0.1, 86400, "timeout"); break;
		case 'N': opt.no_presence = true; break;
		case 'v': opt.verbose = true; break;
		case 'h': usage(stdout); exit(0);
		case 'H':
			if (!strchr(optarg, ':'))
				die("--hash wants ALGO:VALUE");
			opt.hash = optarg;
			break;
		case 'L': opt.url = optarg; break;
		default: usage(stderr); exit(1);
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		exit(1);
	}
	if (strcmp(argv[optind], "message") == 0)
		opt.mode = MODE_MESSAGE;
	else if (strcmp(argv[optind], "iq") == 0)
		opt.mode = MODE_IQ;
	else if (strcmp(argv[optind], "subscribe") == 0)
		opt.mode = MODE_SUBSCRIBE;
	else if (strcmp(argv[optind], "upload") == 0)
		opt.mode = MODE_UPLOAD;
	else
		die("unknown mode '%s'", argv[optind]);
	if (!opt.from || !opt.to || !opt.to_pass)
		die("--from, --to and --to-pass are required");
	if (opt.component && (!opt.secret || !opt.comp_server))
		die("--component needs --secret and --component-server");
	if (!opt.component && !opt.from_pass)
		die("--from-pass is required (or --component)");
	if (opt.mode == MODE_UPLOAD && (!opt.upload_service || opt.component))
		die("upload needs --upload-service and a c2s sender");
	if (strcmp(opt.offer, "si") && strcmp(opt.offer, "jingle") && strcmp(opt.offer, "ibb") &&
	    strcmp(opt.offer, "oob"))
		die("--offer must be si, jingle, ibb or oob");
	if (strlen(opt.prefix) > 16)
		die("--id-prefix is too long");
	if (!opt.rcpt_server)
		opt.rcpt_server = opt.server;
}

int main(int argc, char **argv)
{
	size_t next = 0;
	double deadline, t;
	int status = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);
	plan_items();
	t_start = now();
	deadline = t_start + opt.timeout;

	xmpp_initialize();
	ctx = xmpp_ctx_new(NULL, opt.verbose ? xmpp_get_default_logger(XMPP_LEVEL_DEBUG) : NULL);
	if (!ctx)
		die("xmpp_ctx_new failed");

	/* the receiver first: its presence must be known before anything is sent */
	start_peer(&receiver, opt.to, opt.to_pass, opt.rcpt_server);
	sender.component = opt.component != NULL;
	if (sender.component)
		start_peer(&sender, opt.component, opt.secret, opt.comp_server);
	else
		start_peer(&sender, opt.from, opt.from_pass, opt.server);

	while (!(sender.ready && receiver.ready)) {
		if (sender.failed || receiver.failed)
			die("set-up failed");
		if (now() > deadline)
			die("set-up timed out");
		xmpp_run_once(ctx, 10);
	}
	fprintf(stderr, "xmtest-client: ready (receiver %s)\n", rcpt_full);

	for (;;) {
		t = now();
		if (t > deadline) {
			status = 2;
			break;
		}
		/* send what the rate and window allow */
		while (next < nitems) {
			if (opt.window > 0 && nsent - nresolved >= (size_t)opt.window)
				break;
			if (opt.rate > 0 && nsent > 0 && (double)nsent > (t - t_first_send) * opt.rate)
				break;
			send_item(&items[next++]);
		}
		if (next == nitems && nresolved == nitems)
			break;
		/* quiet: nothing sent or received for a while, and nothing left
		 * to send (or the window is stuck on lost items) */
		if (nsent > 0 && t - t_last_activity > opt.quiet &&
		    (next == nitems || (opt.window > 0 && nsent - nresolved >= (size_t)opt.window)))
			break;
		if (sender.failed || receiver.failed) {
			fprintf(stderr, "xmtest-client: connection lost\n");
			break;
		}
		xmpp_run_once(ctx, opt.rate > 0 ? 1 : 10);
	}
	status = finish(status);
	shutting_down = true;

	if (sender.conn && xmpp_conn_is_connected(sender.conn))
		xmpp_disconnect(sender.conn);
	if (receiver.conn && xmpp_conn_is_connected(receiver.conn))
		xmpp_disconnect(receiver.conn);
	t = now() + 1;
	while (now() < t && ((sender.conn && !xmpp_conn_is_disconnected(sender.conn)) ||
	    (receiver.conn && !xmpp_conn_is_disconnected(receiver.conn))))
		xmpp_run_once(ctx, 10);
	xmpp_conn_release(sender.conn);
	xmpp_conn_release(receiver.conn);
	xmpp_ctx_free(ctx);
	xmpp_shutdown();
	for (size_t i = 0; i < nitems; i++)
		free(items[i].body);
	free(items);
	for (size_t i = 0; i < opt.nbodies; i++)
		free(opt.bodies[i]);
	free(opt.bodies);
	return status;
}
