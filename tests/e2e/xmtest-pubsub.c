/*
 * xmtest-pubsub.c - publish or retract block-list items for the e2e tests
 *
 * A libstrophe client that logs in, sends one XEP-0060 request per item
 * to a publish-subscribe service and prints one line per answer:
 *
 *   published ITEM | retracted ITEM | error ITEM CONDITION
 *
 * Usage: xmtest-pubsub -s HOST:PORT -j JID -p PASS -S SERVICE -n NODE
 *        [-T SECONDS] publish|retract ITEM...
 *
 * Items are <item id='ITEM'><report xmlns='urn:xmpp:reporting:1'
 * reason='urn:xmpp:reporting:spam'/></item> (the xmppbl.org convention:
 * the id is the entry; Prosody wants exactly one payload); retractions ask for notify='1' so subscribers hear of them.
 * Exit status: 0 when every request got a result, 1 on any error or
 * set-up failure, 2 when the timeout struck.
 *
 * Memory: libstrophe's stanzas are released after sending; nothing else
 * is allocated beyond argv.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

static const char *service, *node, *verb;
static char **items;
static int nitems, nanswered, nerrors;
static xmpp_ctx_t *ctx;
static int failed;

/* on_answer - result or error of one request (id = "i<index>") */
static int
on_answer(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	const char *type = xmpp_stanza_get_type(st);
	const char *item = ud;
	xmpp_stanza_t *err, *c;
	const char *cond = "undefined-condition";

	(void)conn;
	if (type != NULL && strcmp(type, "result") == 0) {
		printf("%s %s\n", verb[0] == 'p' ? "published" : "retracted", item);
	} else {
		if ((err = xmpp_stanza_get_child_by_name(st, "error")) != NULL)
			for (c = xmpp_stanza_get_children(err); c != NULL;
			    c = xmpp_stanza_get_next(c))
				if (xmpp_stanza_is_tag(c) &&
				    strcmp(xmpp_stanza_get_name(c), "text") != 0) {
					cond = xmpp_stanza_get_name(c);
					break;
				}
		printf("error %s %s\n", item, cond);
		nerrors++;
	}
	fflush(stdout);
	if (++nanswered == nitems)
		xmpp_stop(ctx);
	return 0;
}

/* el - a new element NAME (namespace NS may be NULL) */
static xmpp_stanza_t *
el(const char *name, const char *ns)
{
	xmpp_stanza_t *s = xmpp_stanza_new(ctx);

	xmpp_stanza_set_name(s, name);
	if (ns != NULL)
		xmpp_stanza_set_ns(s, ns);
	return s;
}

/* on_conn - logged in: send every request */
static void
on_conn(xmpp_conn_t *conn, xmpp_conn_event_t status, int error,
    xmpp_stream_error_t *se, void *ud)
{
	xmpp_stanza_t *iq, *ps, *op, *it;
	char id[32];
	int i;

	(void)error;
	(void)se;
	(void)ud;
	if (status != XMPP_CONN_CONNECT) {
		if (nanswered < nitems) {
			fprintf(stderr, "xmtest-pubsub: connection failed or "
			    "closed\n");
			failed = 1;
		}
		xmpp_stop(ctx);
		return;
	}
	for (i = 0; i < nitems; i++) {
		snprintf(id, sizeof(id), "i%d", i);
		iq = xmpp_iq_new(ctx, "set", id);
		xmpp_stanza_set_to(iq, service);
		ps = el("pubsub", "http://jabber.org/protocol/pubsub");
		op = el(verb[0] == 'p' ? "publish" : "retract", NULL);
		xmpp_stanza_set_attribute(op, "node", node);
		if (verb[0] == 'r')
			xmpp_stanza_set_attribute(op, "notify", "1");
		it = el("item", NULL);
		xmpp_stanza_set_id(it, items[i]);
		if (verb[0] == 'p') {
			/* one payload, as services require: a XEP-0377 report */
			xmpp_stanza_t *rep = el("report", "urn:xmpp:reporting:1");

			xmpp_stanza_set_attribute(rep, "reason",
			    "urn:xmpp:reporting:spam");
			xmpp_stanza_add_child(it, rep);
			xmpp_stanza_release(rep);
		}
		xmpp_stanza_add_child(op, it);
		xmpp_stanza_release(it);
		xmpp_stanza_add_child(ps, op);
		xmpp_stanza_release(op);
		xmpp_stanza_add_child(iq, ps);
		xmpp_stanza_release(ps);
		xmpp_id_handler_add(conn, on_answer, id, items[i]);
		xmpp_send(conn, iq);
		xmpp_stanza_release(iq);
	}
}

/* usage - print how to call and exit 1 */
static void
usage(void)
{
	fprintf(stderr, "usage: xmtest-pubsub -s HOST:PORT -j JID -p PASS "
	    "-S SERVICE -n NODE [-T SECONDS] publish|retract ITEM...\n");
	exit(1);
}

int
main(int argc, char **argv)
{
	const char *server = NULL, *jid = NULL, *pass = NULL;
	char host[256], *colon, *end;
	xmpp_conn_t *conn;
	double timeout = 20, t0;
	struct timespec ts;
	long port;
	int ch;

	while ((ch = getopt(argc, argv, "s:j:p:S:n:T:")) != -1) {
		switch (ch) {
		case 's': server = optarg; break;
		case 'j': jid = optarg; break;
		case 'p': pass = optarg; break;
		case 'S': service = optarg; break;
		case 'n': node = optarg; break;
		case 'T':
			timeout = strtod(optarg, &end);
			if (*end != '\0' || timeout <= 0 || timeout > 3600)
				usage();
			break;
		default: usage();
		}
	}
	if (!server || !jid || !pass || !service || !node || argc - optind < 2)
		usage();
	verb = argv[optind];
	if (strcmp(verb, "publish") != 0 && strcmp(verb, "retract") != 0)
		usage();
	items = argv + optind + 1;
	nitems = argc - optind - 1;
	if ((colon = strrchr(server, ':')) == NULL ||
	    (size_t)(colon - server) >= sizeof(host))
		usage();
	memcpy(host, server, (size_t)(colon - server));
	host[colon - server] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535)
		usage();

	xmpp_initialize();
	ctx = xmpp_ctx_new(NULL, NULL);
	conn = xmpp_conn_new(ctx);
	xmpp_conn_set_flags(conn, XMPP_CONN_FLAG_DISABLE_TLS);
	xmpp_conn_set_jid(conn, jid);
	xmpp_conn_set_pass(conn, pass);
	if (xmpp_connect_client(conn, host, (unsigned short)port, on_conn,
	    NULL) != XMPP_EOK) {
		fprintf(stderr, "xmtest-pubsub: cannot connect to %s\n", server);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	while (nanswered < nitems && !failed) {
		xmpp_run_once(ctx, 100);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if ((double)ts.tv_sec + ts.tv_nsec / 1e9 - t0 > timeout) {
			fprintf(stderr, "xmtest-pubsub: timed out\n");
			return 2;
		}
	}
	xmpp_disconnect(conn);
	for (ch = 0; ch < 10 && !xmpp_conn_is_disconnected(conn); ch++)
		xmpp_run_once(ctx, 50);
	xmpp_conn_release(conn);
	xmpp_ctx_free(ctx);
	xmpp_shutdown();
	return failed || nerrors ? 1 : 0;
}
