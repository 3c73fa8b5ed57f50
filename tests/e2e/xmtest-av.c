/*
 * xmtest-av.c - file bytes through a real server, for the antivirus tests
 *
 * Two scripted flows with libstrophe clients, each printing one
 * machine-checkable line per outcome on stdout:
 *
 *   ibb     the sender opens an in-band bytestream (XEP-0047, iq stanzas)
 *           to the receiver's full JID and sends FILE in block-size
 *           chunks, each after the previous one was acknowledged, then
 *           closes it:
 *             open result | open error COND
 *             data SEQ result | data SEQ error COND
 *             close result | close error COND
 *           the receiver acknowledges what arrives and prints
 *             recv-open SID | recv-data SEQ BYTES | recv-close SID
 *           After a refused chunk the sender sends one more (to show the
 *           rest is refused) and stops, as a real client would.
 *   upload  the sender asks the upload service for a slot (XEP-0363),
 *           PUTs FILE to it over HTTP, then GETs it back:
 *             slot PUT-URL | slot-error COND
 *             put STATUS
 *             get STATUS BYTES
 *           and with -m shares the URL in a message to the receiver:
 *             shared delivered | shared error COND | shared missing
 *
 * A closing "summary ..." line counts what happened. Everything is
 * bounded by --timeout (exit 2 when it strikes); 1 on set-up errors.
 * HTTP is a few lines over a socket to --http-addr (the URL's host names
 * the virtual host in the Host header), so no HTTP library is needed.
 *
 * Why its own program: these flows are sequential conversations (wait for
 * each ack, then HTTP), unlike the fire-and-count scenarios of
 * xmtest-client; keeping them apart leaves that client's loop simple.
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

#define NS_IBB "http://jabber.org/protocol/ibb"
#define NS_UPLOAD "urn:xmpp:http:upload:0"

struct peer {
	const char *name;
	xmpp_conn_t *conn;
	bool ready, failed;
};

static struct {
	const char *server, *from, *from_pass, *to, *to_pass, *file, *service;
	const char *http_addr, *mode, *sid;
	long block;
	double timeout;
	bool share;
} opt = { .server = "127.0.0.1:5222", .block = 4096, .timeout = 30,
	.sid = "avs1", .http_addr = "127.0.0.1:5280" };

static xmpp_ctx_t *ctx;
static struct peer sender = { "sender" }, receiver = { "receiver" };
static char rcpt_full[512];
static unsigned char *fdata;
static size_t flen;

/* ibb state */
static size_t off;            /* bytes sent so far */
static long seq;
static int stage;             /* 0 open, 1 data, 2 close, 3 done */
static bool waiting, refused_once;
static unsigned nsent, nacked, nerrors, nrecv_chunks;
static size_t nrecv_bytes;
static bool recv_close;

/* upload state */
static char put_url[1024], get_url[1024], authz[2048];
static bool slot_done, shared_done;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("xmtest-av: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* read_file - the whole of PATH */
static void read_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	size_t cap = 65536, n;

	if (!fp)
		die("%s: %s", path, strerror(errno));
	fdata = malloc(cap);
	while (fdata && (n = fread(fdata + flen, 1, cap - flen, fp)) > 0) {
		flen += n;
		if (flen == cap)
			fdata = realloc(fdata, cap *= 2);
	}
	fclose(fp);
	if (!fdata)
		die("out of memory");
}

/* error_cond - the defined condition of an error stanza */
static const char *error_cond(xmpp_stanza_t *st)
{
	xmpp_stanza_t *e = xmpp_stanza_get_child_by_name(st, "error"), *c;

	for (c = e ? xmpp_stanza_get_children(e) : NULL; c; c = xmpp_stanza_get_next(c))
		if (xmpp_stanza_get_name(c) && strcmp(xmpp_stanza_get_name(c), "text"))
			return xmpp_stanza_get_name(c);
	return "-";
}

static xmpp_stanza_t *add_child(xmpp_stanza_t *parent, const char *name, const char *ns)
{
	xmpp_stanza_t *c = xmpp_stanza_new(ctx);

	xmpp_stanza_set_name(c, name);
	if (ns)
		xmpp_stanza_set_ns(c, ns);
	xmpp_stanza_add_child(parent, c);
	xmpp_stanza_release(c);
	return c;
}

/* ibb_next - send what comes next in the stream */
static void ibb_next(void)
{
	char id[32];
	xmpp_stanza_t *iq, *c;

	snprintf(id, sizeof id, "ibb-%d-%ld", stage, seq);
	iq = xmpp_iq_new(ctx, "set", id);
	xmpp_stanza_set_to(iq, rcpt_full);
	if (stage == 0) {
		char bs[32];

		snprintf(bs, sizeof bs, "%ld", opt.block);
		c = add_child(iq, "open", NS_IBB);
		xmpp_stanza_set_attribute(c, "block-size", bs);
		xmpp_stanza_set_attribute(c, "stanza", "iq");
	} else if (stage == 1) {
		size_t n = flen - off < (size_t)opt.block ? flen - off : (size_t)opt.block;
		char *b64 = xmpp_base64_encode(ctx, fdata + off, n), sq[32];
		xmpp_stanza_t *t = xmpp_stanza_new(ctx);

		snprintf(sq, sizeof sq, "%ld", seq);
		c = add_child(iq, "data", NS_IBB);
		xmpp_stanza_set_attribute(c, "seq", sq);
		xmpp_stanza_set_text(t, b64 ? b64 : "");
		xmpp_stanza_add_child(c, t);
		xmpp_stanza_release(t);
		xmpp_free(ctx, b64);
		off += n;
		nsent++;
	} else {
		c = add_child(iq, "close", NS_IBB);
	}
	xmpp_stanza_set_attribute(c, "sid", opt.sid);
	xmpp_send(sender.conn, iq);
	xmpp_stanza_release(iq);
	waiting = true;
}

/* on_sender_iq - results and errors of what the sender sent */
static int on_sender_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	const char *type = xmpp_stanza_get_type(st), *id = xmpp_stanza_get_id(st);
	bool ok = type && strcmp(type, "result") == 0;

	if (!type || (strcmp(type, "result") && strcmp(type, "error")) || !id)
		return 1;
	if (strcmp(opt.mode, "upload") == 0) {
		if (strcmp(id, "slot1"))
			return 1;
		if (ok) {
			xmpp_stanza_t *slot = xmpp_stanza_get_child_by_name(st, "slot");
			xmpp_stanza_t *put = slot ? xmpp_stanza_get_child_by_name(slot, "put") : NULL;
			xmpp_stanza_t *get = slot ? xmpp_stanza_get_child_by_name(slot, "get") : NULL;
			xmpp_stanza_t *h = put ? xmpp_stanza_get_child_by_name(put, "header") : NULL;
			char *txt = h ? xmpp_stanza_get_text(h) : NULL;

			snprintf(put_url, sizeof put_url, "%s", put ? xmpp_stanza_get_attribute(put, "url") : "");
			snprintf(get_url, sizeof get_url, "%s", get ? xmpp_stanza_get_attribute(get, "url") : "");
			snprintf(authz, sizeof authz, "%s", txt ? txt : "");
			if (txt)
				xmpp_free(ctx, txt);
			printf("slot %s\n", put_url);
		} else
			printf("slot-error %s\n", error_cond(st));
		slot_done = true;
		return 1;
	}
	if (strncmp(id, "ibb-", 4) || !waiting)
		return 1;
	waiting = false;
	if (stage == 0) {
		printf(ok ? "open result\n" : "open error %s\n", error_cond(st));
		stage = ok ? 1 : 3;
		if (ok && flen == 0)
			stage = 2;
	} else if (stage == 1) {
		printf(ok ? "data %ld result\n" : "data %ld error %s\n", seq, error_cond(st));
		seq = (seq + 1) & 0xffff;
		if (ok)
			nacked++;
		else
			nerrors++;
		if (!ok && refused_once)
			stage = 3;          /* refused twice: give up */
		else if (!ok)
			refused_once = true;
		else if (off >= flen)
			stage = 2;
		if (stage == 1 && off >= flen)
			stage = 3;
	} else if (stage == 2) {
		printf(ok ? "close result\n" : "close error %s\n", error_cond(st));
		stage = 3;
	}
	return 1;
}

/* on_receiver_iq - the receiver acknowledges IBB stanzas */
static int on_receiver_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	const char *type = xmpp_stanza_get_type(st);
	xmpp_stanza_t *c, *reply;

	if (!type || strcmp(type, "set"))
		return 1;
	if ((c = xmpp_stanza_get_child_by_ns(st, NS_IBB)) != NULL) {
		const char *name = xmpp_stanza_get_name(c);

		if (strcmp(name, "open") == 0)
			printf("recv-open %s\n", xmpp_stanza_get_attribute(c, "sid"));
		else if (strcmp(name, "close") == 0) {
			printf("recv-close %s\n", xmpp_stanza_get_attribute(c, "sid"));
			recv_close = true;
		} else if (strcmp(name, "data") == 0) {
			char *t = xmpp_stanza_get_text(c);
			unsigned char *dec = NULL;
			size_t n = 0;

			if (t)
				xmpp_base64_decode_bin(ctx, t, strlen(t), &dec, &n);
			printf("recv-data %s %zu\n", xmpp_stanza_get_attribute(c, "seq"), n);
			nrecv_bytes += n;
			nrecv_chunks++;
			if (dec)
				xmpp_free(ctx, dec);
			if (t)
				xmpp_free(ctx, t);
		}
	}
	reply = xmpp_stanza_reply(st);
	xmpp_stanza_set_type(reply, "result");
	xmpp_send(conn, reply);
	xmpp_stanza_release(reply);
	return 1;
}

/* on_message - the shared URL at the receiver, or its bounce */
static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct peer *p = ud;
	const char *type = xmpp_stanza_get_type(st), *id = xmpp_stanza_get_id(st);

	if (!id || strcmp(id, "share1"))
		return 1;
	if (p == &sender && type && strcmp(type, "error") == 0) {
		printf("shared error %s\n", error_cond(st));
		shared_done = true;
	} else if (p == &receiver) {
		printf("shared delivered\n");
		shared_done = true;
	}
	return 1;
}

static int on_ping(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	struct peer *p = ud;

	p->ready = true;
	if (p == &receiver) {
		const char *jid = xmpp_conn_get_bound_jid(conn);
		snprintf(rcpt_full, sizeof rcpt_full, "%s", jid ? jid : opt.to);
	}
	return 0;
}

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
    xmpp_stream_error_t *serr, void *ud)
{
	struct peer *p = ud;
	xmpp_stanza_t *pres, *iq, *ping;
	char *dom, id[32];

	if (ev != XMPP_CONN_CONNECT) {
		p->failed = true;
		return;
	}
	xmpp_handler_add(conn, p == &sender ? on_sender_iq : on_receiver_iq, NULL,
	    "iq", NULL, p);
	xmpp_handler_add(conn, on_message, NULL, "message", NULL, p);
	pres = xmpp_presence_new(ctx);
	xmpp_send(conn, pres);
	xmpp_stanza_release(pres);
	snprintf(id, sizeof id, "ping-%s", p->name);
	iq = xmpp_iq_new(ctx, "get", id);
	dom = xmpp_jid_domain(ctx, xmpp_conn_get_bound_jid(conn));
	xmpp_stanza_set_to(iq, dom);
	xmpp_free(ctx, dom);
	ping = add_child(iq, "ping", "urn:xmpp:ping");
	(void)ping;
	xmpp_id_handler_add(conn, on_ping, id, p);
	xmpp_send(conn, iq);
	xmpp_stanza_release(iq);
}

/* start_peer - log P in */
static void start_peer(struct peer *p, const char *jid, const char *pass)
{
	char host[256];
	const char *colon = strrchr(opt.server, ':');

	if (!colon || (size_t)(colon - opt.server) >= sizeof host)
		die("bad --server");
	memcpy(host, opt.server, (size_t)(colon - opt.server));
	host[colon - opt.server] = '\0';
	p->conn = xmpp_conn_new(ctx);
	xmpp_conn_set_flags(p->conn, XMPP_CONN_FLAG_DISABLE_TLS);
	xmpp_conn_set_jid(p->conn, jid);
	xmpp_conn_set_pass(p->conn, pass);
	if (xmpp_connect_client(p->conn, host, (unsigned short)atoi(colon + 1),
	    on_conn, p) != XMPP_EOK)
		die("%s: cannot connect", p->name);
}

/* http - one request to --http-addr; prints "WHAT STATUS BYTES" */
static int http(const char *what, const char *method, const char *url,
    const unsigned char *body, size_t blen, double deadline)
{
	char host[256], req[4096], buf[65536];
	const char *h = strstr(url, "://"), *path;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *colon = strrchr(opt.http_addr, ':');
	size_t total = 0, hdr_end = 0;
	int fd, status = 0, n;
	struct timeval tv = { 2, 0 };

	if (!h || !colon)
		return -1;
	h += 3;
	path = strchr(h, '/');
	if (!path || (size_t)(path - h) >= sizeof host)
		return -1;
	memcpy(host, h, (size_t)(path - h));
	host[path - h] = '\0';
	snprintf(buf, sizeof buf, "%.*s", (int)(colon - opt.http_addr), opt.http_addr);
	inet_pton(AF_INET, buf, &sa.sin_addr);
	sa.sin_port = htons((unsigned short)atoi(colon + 1));
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("http connect %s: %s", opt.http_addr, strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	/* the Host header names the upload service: the test server's URLs
	 * carry its loopback address, which Prosody maps to no host */
	if (opt.service)
		snprintf(host, sizeof host, "%s", opt.service);
	n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: %s\r\n"
	    "Connection: close\r\n%s%s%sContent-Length: %zu\r\n"
	    "Content-Type: application/octet-stream\r\n\r\n", method, path, host,
	    authz[0] && body ? "Authorization: " : "", authz[0] && body ? authz : "",
	    authz[0] && body ? "\r\n" : "", blen);
	if (write(fd, req, (size_t)n) != n || (blen && write(fd, body, blen) != (ssize_t)blen))
		die("http write: %s", strerror(errno));
	while (now() < deadline && total < sizeof buf - 1) {
		ssize_t r = read(fd, buf + total, sizeof buf - 1 - total);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		total += (size_t)r;
	}
	close(fd);
	buf[total] = '\0';
	sscanf(buf, "HTTP/%*s %d", &status);
	if (strstr(buf, "\r\n\r\n"))
		hdr_end = (size_t)(strstr(buf, "\r\n\r\n") - buf) + 4;
	printf("%s %d %zu\n", what, status, hdr_end ? total - hdr_end : 0);
	return status;
}

static void usage(void)
{
	fputs("usage: xmtest-av [options] ibb|upload\n"
	    "  -s HOST:PORT  c2s address (127.0.0.1:5222)\n"
	    "  -f JID -p PASS   sender     -t JID -P PASS   receiver\n"
	    "  -D FILE       the bytes to send or upload\n"
	    "  -b N          IBB block size (4096)      -i SID  stream id\n"
	    "  -U JID        upload service             -H HOST:PORT  its HTTP address\n"
	    "  -m            upload: share the URL in a message to the receiver\n"
	    "  -T SECONDS    overall time limit (30)\n", stderr);
	exit(1);
}

int main(int argc, char **argv)
{
	double deadline, quiet_until = 0;
	int c, status = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt(argc, argv, "s:f:p:t:P:D:b:i:U:H:mT:")) != -1) {
		switch (c) {
		case 's': opt.server = optarg; break;
		case 'f': opt.from = optarg; break;
		case 'p': opt.from_pass = optarg; break;
		case 't': opt.to = optarg; break;
		case 'P': opt.to_pass = optarg; break;
		case 'D': opt.file = optarg; break;
		case 'b': opt.block = strtol(optarg, NULL, 10); break;
		case 'i': opt.sid = optarg; break;
		case 'U': opt.service = optarg; break;
		case 'H': opt.http_addr = optarg; break;
		case 'm': opt.share = true; break;
		case 'T': opt.timeout = strtod(optarg, NULL); break;
		default: usage();
		}
	}
	if (optind + 1 != argc || !opt.from || !opt.from_pass || !opt.to ||
	    !opt.to_pass || !opt.file || opt.block < 1 || opt.block > 65535 ||
	    opt.timeout <= 0)
		usage();
	opt.mode = argv[optind];
	if (strcmp(opt.mode, "ibb") && strcmp(opt.mode, "upload"))
		usage();
	if (strcmp(opt.mode, "upload") == 0 && !opt.service)
		die("upload needs -U");
	read_file(opt.file);
	deadline = now() + opt.timeout;
	xmpp_initialize();
	ctx = xmpp_ctx_new(NULL, NULL);
	start_peer(&receiver, opt.to, opt.to_pass);
	start_peer(&sender, opt.from, opt.from_pass);
	while (!(sender.ready && receiver.ready)) {
		if (sender.failed || receiver.failed)
			die("log-in failed");
		if (now() > deadline)
			die("set-up timed out");
		xmpp_run_once(ctx, 10);
	}
	if (strcmp(opt.mode, "ibb") == 0) {
		while (now() < deadline && !sender.failed) {
			if (!waiting && stage < 3)
				ibb_next();
			if (stage == 3 && quiet_until == 0)
				quiet_until = now() + 1;  /* let the receiver's side settle */
			if (quiet_until > 0 && now() > quiet_until)
				break;
			xmpp_run_once(ctx, 10);
		}
		if (now() >= deadline)
			status = 2;
		printf("summary sent=%u acked=%u errors=%u recv_chunks=%u "
		    "recv_bytes=%zu recv_close=%s\n", nsent, nacked, nerrors,
		    nrecv_chunks, nrecv_bytes, recv_close ? "yes" : "no");
	} else {
		xmpp_stanza_t *iq = xmpp_iq_new(ctx, "get", "slot1"), *r;
		const char *base = strrchr(opt.file, '/');
		char size[32];

		snprintf(size, sizeof size, "%zu", flen);
		xmpp_stanza_set_to(iq, opt.service);
		r = add_child(iq, "request", NS_UPLOAD);
		xmpp_stanza_set_attribute(r, "filename", base ? base + 1 : opt.file);
		xmpp_stanza_set_attribute(r, "size", size);
		xmpp_stanza_set_attribute(r, "content-type", "application/octet-stream");
		xmpp_send(sender.conn, iq);
		xmpp_stanza_release(iq);
		while (!slot_done && now() < deadline)
			xmpp_run_once(ctx, 10);
		if (slot_done && put_url[0]) {
			http("put", "PUT", put_url, fdata, flen, deadline);
			http("get", "GET", get_url, NULL, 0, deadline);
			if (opt.share) {
				xmpp_stanza_t *m = xmpp_message_new(ctx, "chat", opt.to, "share1");
				char text[1200];

				snprintf(text, sizeof text, "look at this: %s", get_url);
				xmpp_message_set_body(m, text);
				xmpp_send(sender.conn, m);
				xmpp_stanza_release(m);
				quiet_until = now() + 3;
				while (!shared_done && now() < quiet_until && now() < deadline)
					xmpp_run_once(ctx, 10);
				if (!shared_done)
					printf("shared missing\n");
			}
		}
		if (now() >= deadline)
			status = 2;
		printf("summary slot=%s\n", put_url[0] ? "yes" : "no");
	}
	xmpp_disconnect(sender.conn);
	xmpp_disconnect(receiver.conn);
	quiet_until = now() + 1;
	while (now() < quiet_until && (!xmpp_conn_is_disconnected(sender.conn) ||
	    !xmpp_conn_is_disconnected(receiver.conn)))
		xmpp_run_once(ctx, 10);
	xmpp_conn_release(sender.conn);
	xmpp_conn_release(receiver.conn);
	xmpp_ctx_free(ctx);
	xmpp_shutdown();
	free(fdata);
	return status;
}
