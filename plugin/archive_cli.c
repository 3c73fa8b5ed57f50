/*
 * archive_cli.c - `xmilter archive`: search, export, verify, purge
 *
 *   xmilter archive search [SINK] [FILTERS] [--json]
 *   xmilter archive export [SINK] [FILTERS] [--format jsonl|eml] [-o DIR]
 *   xmilter archive verify [SINK] [--anchor SEQ:HASH]
 *   xmilter archive purge  [SINK] [--dry-run] [--now TIME]
 *
 * SINK: -c CONF -s NAME (a sink of the configuration; default: its first
 * searchable sink, for verify its first jsonl sink), or --sqlite FILE,
 * --jsonl DIR, --pg CONNINFO.
 * FILTERS: --from TIME --until TIME (RFC 3339 or YYYY-MM-DD), --jid JID
 * (sender or recipient; *@domain), --text WORDS (all must appear in body
 * or subject), --match EXPR (a raw FTS5 / tsquery expression), --verdict
 * ACTION, --limit N.
 *
 * Export as .eml writes one RFC 5322 message per record into DIR: From,
 * To, Date, Subject, Message-ID, X-XMPP-* (envelope) and X-Xmilter-*
 * (verdict) headers, and a multipart/mixed body: the message text
 * (text/plain, UTF-8, base64) and the archived event as received.
 *
 * Exit status: 0 fine, 1 usage or configuration error, 2 the archive
 * cannot be read or a purge failed, 4 verify found the chain broken.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "archive.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define CLI_DEFAULT_CONF SYSCONFDIR "/xmilter/xmilter.yml"

struct cli {
	const char *conf, *sink, *sqlite, *jsonl, *pg, *outdir, *format;
	const char *anchor;
	struct xm_archive_query q;
	bool json, dry;
	bool want_jsonl;        /* verify: the default sink is the first jsonl */
	double now;
	unsigned long long n;
	FILE *out;
};

/* cli_usage - how to call, exit 1 */
static int
cli_usage(void)
{
	fprintf(stderr,
	    "usage: xmilter archive search [SINK] [FILTERS] [--json]\n"
	    "       xmilter archive export [SINK] [FILTERS] [--format jsonl|eml] "
	    "[-o DIR]\n"
	    "       xmilter archive verify [SINK] [--anchor SEQ:HASH]\n"
	    "       xmilter archive purge  [SINK] [--dry-run] [--now TIME]\n"
	    "SINK:    [-c CONF] [-s NAME] | --sqlite FILE | --jsonl DIR | "
	    "--pg CONNINFO\n"
	    "FILTERS: --from TIME --until TIME --jid JID --text WORDS "
	    "--match EXPR\n"
	    "         --verdict ACTION --limit N\n");
	return 1;
}

/* cli_time - RFC 3339 or a date (midnight UTC); 0 or -1 */
static int
cli_time(const char *s, double *out)
{
	char buf[64];

	if (xm_parse_time(s, out) == 0)
		return 0;
	if (strlen(s) == 10) {
		snprintf(buf, sizeof(buf), "%sT00:00:00Z", s);
		return xm_parse_time(buf, out);
	}
	return -1;
}

/* jget - a string member or NULL */
static const char *
jget(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* ---- search output ---- */

/* print_summary - one line per record */
static int
print_summary(void *arg, const char *rec)
{
	struct cli *c = arg;
	json_t *o = json_loads(rec, 0, NULL);
	const char *body;
	char line[121];
	size_t i;

	c->n++;
	if (c->json || o == NULL) {
		fprintf(c->out, "%s\n", rec);
		json_decref(o);
		return 0;
	}
	body = jget(o, "body") ? jget(o, "body") : "";
	snprintf(line, sizeof(line), "%s", body);
	for (i = 0; line[i]; i++)
		if ((unsigned char)line[i] < 0x20)
			line[i] = ' ';
	fprintf(c->out, "%s %s %s %g %s -> %s: %s\n", jget(o, "time") ?
	    jget(o, "time") : "?", jget(o, "kind") ? jget(o, "kind") : "-",
	    jget(o, "action") ? jget(o, "action") : "?",
	    json_number_value(json_object_get(o, "score")),
	    jget(o, "sender") ? jget(o, "sender") : "-",
	    jget(o, "recipient") ? jget(o, "recipient") : "-", line);
	json_decref(o);
	return 0;
}

/* ---- .eml ---- */

/* b64 - base64 of P[0..n) appended to B, lines of 76 when WRAP */
static void
b64(struct xm_buf *b, const unsigned char *p, size_t n, bool wrap)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, col = 0;

	for (i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		char q[4];

		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		q[0] = tab[(v >> 18) & 63];
		q[1] = tab[(v >> 12) & 63];
		q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? tab[v & 63] : '=';
		xm_buf_append(b, q, 4);
		col += 4;
		if (wrap && col >= 76 && i + 3 < n) {
			xm_buf_puts(b, "\r\n");
			col = 0;
		}
	}
}

/* hdr_value - append S as a header value: printable ASCII as is (controls
 * become spaces), anything else as an RFC 2047 encoded word */
static void
hdr_value(struct xm_buf *b, const char *s)
{
	const unsigned char *p;
	bool plain = true;
	size_t n = strlen(s);

	for (p = (const unsigned char *)s; *p; p++)
		if (*p >= 0x80)
			plain = false;
	if (plain) {
		for (p = (const unsigned char *)s; *p; p++)
			xm_buf_append(b, *p < 0x20 || *p == 0x7f ? " " :
			    (const char *)p, 1);
		return;
	}
	/* encoded words of at most 45 input bytes, cut on UTF-8 boundaries */
	while (n > 0) {
		size_t take = n > 45 ? 45 : n;

		while (take < n && take > 1 &&
		    ((unsigned char)s[take] & 0xc0) == 0x80)
			take--;
		xm_buf_puts(b, "=?UTF-8?B?");
		b64(b, (const unsigned char *)s, take, false);
		xm_buf_puts(b, "?=");
		s += take;
		n -= take;
		if (n > 0)
			xm_buf_puts(b, "\r\n ");
	}
}

/* addr_ok - J is a plain ASCII addr-spec mail tools accept */
static bool
addr_ok(const char *j)
{
	const char *p, *at = strchr(j, '@');

	if (at == NULL || at == j || at[1] == '\0' || strchr(at + 1, '@'))
		return false;
	for (p = j; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr(".-_+@", *p)))
			return false;
	return true;
}

/* hdr_addr - an address header for a JID */
static void
hdr_addr(struct xm_buf *b, const char *name, const char *jid)
{
	xm_buf_printf(b, "%s: ", name);
	if (jid == NULL || *jid == '\0')
		xm_buf_puts(b, "undisclosed-recipients:;");
	else if (addr_ok(jid))
		xm_buf_printf(b, "<%s>", jid);
	else {
		hdr_value(b, jid);
		xm_buf_puts(b, " <invalid-address@xmpp.invalid>");
	}
	xm_buf_puts(b, "\r\n");
}

/* hdr - NAME: VALUE unless VALUE is NULL */
static void
hdr(struct xm_buf *b, const char *name, const char *v)
{
	if (v == NULL)
		return;
	xm_buf_printf(b, "%s: ", name);
	hdr_value(b, v);
	xm_buf_puts(b, "\r\n");
}

/* eml_message - the record O as an RFC 5322 message */
static void
eml_message(struct xm_buf *b, json_t *o)
{
	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	    "Fri", "Sat" };
	static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	double t = json_number_value(json_object_get(o, "t"));
	time_t secs = (time_t)floor(t);
	const char *body = jget(o, "body"), *event = jget(o, "event"),
	    *subject = jget(o, "subject"), *node = jget(o, "node");
	struct xm_buf syms = { 0 };
	json_t *sa = json_object_get(o, "symbols");
	struct tm tm;
	char boundary[80];
	size_t i;

	gmtime_r(&secs, &tm);
	hdr_addr(b, "From", jget(o, "sender"));
	hdr_addr(b, "To", jget(o, "recipient"));
	xm_buf_printf(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
	    wd[tm.tm_wday], tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (subject == NULL) {
		char *s = xm_printf("XMPP %s from %s", jget(o, "kind") ?
		    jget(o, "kind") : "event", jget(o, "sender") ?
		    jget(o, "sender") : "unknown");

		hdr(b, "Subject", s);
		free(s);
	} else
		hdr(b, "Subject", subject);
	{
		char *mid = xm_printf("%.3f.%lld.%s", t, (long long)
		    json_integer_value(json_object_get(o, "id")), node ? node : "x");
		char *p;

		for (p = mid; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
				*p = '-';
		xm_buf_printf(b, "Message-ID: <%s@xmilter.archive>\r\n", mid);
		free(mid);
	}
	hdr(b, "X-XMPP-Kind", jget(o, "kind"));
	hdr(b, "X-XMPP-Stanza", jget(o, "stanza"));
	hdr(b, "X-XMPP-Type", jget(o, "type"));
	hdr(b, "X-XMPP-From", jget(o, "from"));
	hdr(b, "X-XMPP-To", jget(o, "to"));
	hdr(b, "X-XMPP-Stanza-ID", jget(o, "stanza_id"));
	hdr(b, "X-XMPP-Origin", jget(o, "origin"));
	hdr(b, "X-XMPP-Peer", jget(o, "peer"));
	hdr(b, "X-XMPP-IP", jget(o, "ip"));
	hdr(b, "X-XMPP-Auth", jget(o, "auth"));
	hdr(b, "X-XMPP-TLS", jget(o, "tls"));
	hdr(b, "X-XMPP-Roster", jget(o, "roster"));
	hdr(b, "X-XMPP-Time", jget(o, "time"));
	hdr(b, "X-Xmilter-Node", node);
	hdr(b, "X-Xmilter-Action", jget(o, "action"));
	xm_buf_printf(b, "X-Xmilter-Score: %g\r\n",
	    json_number_value(json_object_get(o, "score")));
	for (i = 0; i < json_array_size(sa); i++) {
		json_t *s = json_array_get(sa, i);

		xm_buf_printf(&syms, "%s%s(%g)", i ? " " : "",
		    jget(s, "name") ? jget(s, "name") : "?",
		    json_number_value(json_object_get(s, "score")));
	}
	if (syms.len)
		hdr(b, "X-Xmilter-Symbols", syms.data);
	xm_buf_free(&syms);
	hdr(b, "X-Xmilter-Reason", jget(o, "reason"));
	hdr(b, "X-Xmilter-Scope", jget(o, "scope"));
	hdr(b, "X-Xmilter-Archived", jget(o, "archived"));
	if (json_object_get(o, "seq"))
		xm_buf_printf(b, "X-Xmilter-Chain: seq=%lld hash=%s\r\n",
		    (long long)json_integer_value(json_object_get(o, "seq")),
		    jget(o, "hash") ? jget(o, "hash") : "?");
	snprintf(boundary, sizeof(boundary), "=_xmilter_%lld_%.0f",
	    (long long)json_integer_value(json_object_get(o, "id")), t * 1000);
	xm_buf_printf(b, "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
	    "boundary=\"%s\"\r\n\r\nAn XMPP %s archived by xmilter.\r\n\r\n"
	    "--%s\r\nContent-Type: text/plain; charset=UTF-8\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n", boundary,
	    jget(o, "stanza") ? jget(o, "stanza") : "event", boundary);
	if (body == NULL)
		body = "";
	b64(b, (const unsigned char *)body, strlen(body), true);
	xm_buf_printf(b, "\r\n--%s\r\nContent-Type: text/plain; charset=UTF-8; "
	    "name=\"event.txt\"\r\nContent-Disposition: attachment; "
	    "filename=\"event.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
	    boundary);
	if (event == NULL)
		event = "";
	b64(b, (const unsigned char *)event, strlen(event), true);
	xm_buf_printf(b, "\r\n--%s--\r\n", boundary);
}

/* export_eml - one file per record in the output directory */
static int
export_eml(void *arg, const char *rec)
{
	struct cli *c = arg;
	json_t *o = json_loads(rec, 0, NULL);
	struct xm_buf b = { 0 };
	char *path;
	FILE *fp;

	if (o == NULL) {
		fprintf(stderr, "xmilter: a record is not JSON; skipped\n");
		return 0;
	}
	c->n++;
	eml_message(&b, o);
	path = xm_printf("%s/%06llu-%lld.eml", c->outdir, c->n,
	    (long long)json_integer_value(json_object_get(o, "id")));
	json_decref(o);
	if ((fp = fopen(path, "w")) == NULL ||
	    fwrite(b.data, 1, b.len, fp) != b.len || fclose(fp) != 0) {
		fprintf(stderr, "xmilter: %s: %s\n", path, strerror(errno));
		free(path);
		xm_buf_free(&b);
		return -1;
	}
	free(path);
	xm_buf_free(&b);
	return 0;
}

/* ---- choosing the sink ---- */

/* open_sink - the sink the options name; NULL (message printed) */
static struct archive_sink *
open_sink(struct cli *c, struct xm_config **cfp,
    struct xm_archive_sink_conf *adhoc, bool readonly)
{
	const struct xm_archive_sink_conf *k = NULL;
	struct xm_config *cf;
	struct archive_sink *s;
	char err[1024];
	size_t i;

	if (c->conf == NULL && access(CLI_DEFAULT_CONF, R_OK) == 0)
		c->conf = CLI_DEFAULT_CONF;
	if ((cf = *cfp = xm_config_load(c->conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "xmilter: %s\n", err);
		return NULL;
	}
	if (c->sqlite || c->jsonl || c->pg) {
		xm_settings_defaults(xm_archive_sink_settings, adhoc, NULL, err,
		    sizeof(err));
		free(adhoc->name);
		adhoc->name = xm_strdup("command-line");
		adhoc->type = c->sqlite ? XM_ARCHIVE_SQLITE : c->jsonl ?
		    XM_ARCHIVE_JSONL : XM_ARCHIVE_PG;
		free(adhoc->path);
		adhoc->path = xm_strdup(c->sqlite ? c->sqlite : c->jsonl ? c->jsonl :
		    "");
		free(adhoc->conninfo);
		adhoc->conninfo = xm_strdup(c->pg ? c->pg : "");
		k = adhoc;
	} else {
		for (i = 0; i < cf->archive.nsinks && k == NULL; i++)
			if (c->sink ? strcmp(cf->archive.sinks[i].name, c->sink) == 0
			    : c->want_jsonl ? cf->archive.sinks[i].type ==
			    XM_ARCHIVE_JSONL : cf->archive.sinks[i].type !=
			    XM_ARCHIVE_COMMAND)
				k = &cf->archive.sinks[i];
		if (k == NULL) {
			fprintf(stderr, "xmilter: %s%s%s\n", c->sink ?
			    "no archive sink named " : "no searchable archive sink "
			    "in ", c->sink ? c->sink : c->conf ? c->conf :
			    "the built-in defaults", "");
			return NULL;
		}
	}
	if (k->type == XM_ARCHIVE_COMMAND) {
		fprintf(stderr, "xmilter: sink %s is a command: the archive is "
		    "wherever the command keeps it\n", k->name);
		return NULL;
	}
	if ((s = xm_archive_sink_open(&cf->archive, k, readonly, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "xmilter: archive %s: %s\n", k->name, err);
		return NULL;
	}
	if (!readonly && k->type == XM_ARCHIVE_PG &&
	    s->ops->connect(s, err, sizeof(err)) < 0) {
		fprintf(stderr, "xmilter: archive %s: %s\n", k->name, err);
		xm_archive_sink_close(s);
		return NULL;
	}
	s->node = cf->archive.node && *cf->archive.node ? cf->archive.node :
	    "xmilter";
	return s;
}

/* ---- the subcommands ---- */

enum { O_FROM = 256, O_UNTIL, O_JID, O_TEXT, O_MATCH, O_VERDICT, O_LIMIT,
	O_JSON, O_FORMAT, O_SQLITE, O_JSONL, O_PG, O_ANCHOR, O_DRY, O_NOW };

static const struct option cli_opts[] = {
	{ "from", required_argument, NULL, O_FROM },
	{ "until", required_argument, NULL, O_UNTIL },
	{ "jid", required_argument, NULL, O_JID },
	{ "text", required_argument, NULL, O_TEXT },
	{ "match", required_argument, NULL, O_MATCH },
	{ "verdict", required_argument, NULL, O_VERDICT },
	{ "limit", required_argument, NULL, O_LIMIT },
	{ "json", no_argument, NULL, O_JSON },
	{ "format", required_argument, NULL, O_FORMAT },
	{ "sqlite", required_argument, NULL, O_SQLITE },
	{ "jsonl", required_argument, NULL, O_JSONL },
	{ "pg", required_argument, NULL, O_PG },
	{ "anchor", required_argument, NULL, O_ANCHOR },
	{ "dry-run", no_argument, NULL, O_DRY },
	{ "now", required_argument, NULL, O_NOW },
	{ NULL, 0, NULL, 0 },
};

/* xm_archive_cli - parse the options, run one subcommand */
int
xm_archive_cli(int argc, char **argv)
{
	struct cli c = { .q = { .from = -1, .until = -1 }, .now = -1,
	    .out = stdout };
	struct xm_archive_sink_conf adhoc;
	struct xm_config *cf = NULL;
	struct archive_sink *s;
	enum xm_action act;
	const char *cmd;
	char err[1024];
	int o, rc = 0;
	long long n;

	memset(&adhoc, 0, sizeof(adhoc));
	if (argc < 2)
		return cli_usage();
	cmd = argv[1];
	argc--;
	argv++;
	optind = 1;
	while ((o = getopt_long(argc, argv, "c:s:o:", cli_opts, NULL)) != -1) {
		switch (o) {
		case 'c': c.conf = optarg; break;
		case 's': c.sink = optarg; break;
		case 'o': c.outdir = optarg; break;
		case O_FROM:
		case O_UNTIL:
			if (cli_time(optarg, o == O_FROM ? &c.q.from : &c.q.until) < 0) {
				fprintf(stderr, "xmilter: %s: not an RFC 3339 time or "
				    "a date\n", optarg);
				return 1;
			}
			break;
		case O_NOW:
			if (cli_time(optarg, &c.now) < 0) {
				fprintf(stderr, "xmilter: %s: not a time\n", optarg);
				return 1;
			}
			break;
		case O_JID: c.q.jid = optarg; break;
		case O_TEXT: c.q.text = optarg; break;
		case O_MATCH: c.q.match = optarg; break;
		case O_VERDICT:
			if (xm_action_parse(optarg, &act) < 0) {
				fprintf(stderr, "xmilter: %s: not an action\n", optarg);
				return 1;
			}
			c.q.action = optarg;
			break;
		case O_LIMIT:
			if (xm_parse_ll(optarg, 1, 1LL << 40, &n) < 0)
				return cli_usage();
			c.q.limit = n;
			break;
		case O_JSON: c.json = true; break;
		case O_FORMAT: c.format = optarg; break;
		case O_SQLITE: c.sqlite = optarg; break;
		case O_JSONL: c.jsonl = optarg; break;
		case O_PG: c.pg = optarg; break;
		case O_ANCHOR: c.anchor = optarg; break;
		case O_DRY: c.dry = true; break;
		default: return cli_usage();
		}
	}
	if (optind < argc)
		return cli_usage();

	if (strcmp(cmd, "search") == 0 || strcmp(cmd, "export") == 0) {
		bool eml = c.format && strcmp(c.format, "eml") == 0;

		if (c.format && !eml && strcmp(c.format, "jsonl") != 0)
			return cli_usage();
		if (strcmp(cmd, "export") == 0 && !eml)
			c.json = true;
		if (eml && c.outdir == NULL) {
			fprintf(stderr, "xmilter: --format eml needs -o DIR\n");
			return 1;
		}
		if (eml && mkdir(c.outdir, 0750) < 0 && errno != EEXIST) {
			fprintf(stderr, "xmilter: %s: %s\n", c.outdir, strerror(errno));
			return 2;
		}
		if ((s = open_sink(&c, &cf, &adhoc, true)) == NULL) {
			rc = cf ? 2 : 1;
			goto out;
		}
		if (s->ops->search(s, &c.q, eml ? export_eml : print_summary, &c,
		    err, sizeof(err)) < 0) {
			fprintf(stderr, "xmilter: %s\n", err);
			rc = 2;
		}
		if (strcmp(cmd, "search") == 0 || eml)
			fprintf(stderr, "%llu record%s%s%s\n", c.n, c.n == 1 ? "" : "s",
			    eml ? " written to " : "", eml ? c.outdir : "");
		xm_archive_sink_close(s);
	} else if (strcmp(cmd, "verify") == 0) {
		struct xm_archive_verify res;
		const char *dir = c.jsonl;

		memset(&res, 0, sizeof(res));
		c.want_jsonl = true;
		if (c.anchor) {
			const char *colon = strchr(c.anchor, ':');
			char num[24];

			if (colon == NULL || (size_t)(colon - c.anchor) >= sizeof(num) ||
			    strlen(colon + 1) != 64)
				return cli_usage();
			memcpy(num, c.anchor, (size_t)(colon - c.anchor));
			num[colon - c.anchor] = '\0';
			if (xm_parse_ll(num, 1, 1LL << 62, &n) < 0)
				return cli_usage();
			res.anchor_seq = (unsigned long long)n;
			memcpy(res.anchor_hash, colon + 1, 65);
		}
		if (dir != NULL && access(dir, R_OK | X_OK) < 0) {
			fprintf(stderr, "xmilter: %s: %s\n", dir, strerror(errno));
			rc = 2;
			goto out;
		}
		if (dir == NULL) {
			if ((s = open_sink(&c, &cf, &adhoc, true)) == NULL) {
				rc = cf ? 2 : 1;
				goto out;
			}
			if (s->conf->type != XM_ARCHIVE_JSONL) {
				fprintf(stderr, "xmilter: sink %s is not a jsonl sink: "
				    "only hash-chained files can be verified\n",
				    s->conf->name);
				xm_archive_sink_close(s);
				rc = 1;
				goto out;
			}
			dir = s->conf->path;
			rc = xm_archive_jsonl_verify(dir, stdout, &res) < 0 ? 4 : 0;
			xm_archive_sink_close(s);
		} else
			rc = xm_archive_jsonl_verify(dir, stdout, &res) < 0 ? 4 : 0;
		printf("%s: %s: %llu record%s in %u file%s, seq %llu..%llu, "
		    "head %s%s\n", dir, rc ? "BROKEN" : "intact", res.records,
		    res.records == 1 ? "" : "s", res.files, res.files == 1 ? "" : "s",
		    res.first_seq, res.last_seq, res.last_hash,
		    res.anchor_found ? ", anchor found" : "");
	} else if (strcmp(cmd, "purge") == 0) {
		long long count = 0;

		if ((s = open_sink(&c, &cf, &adhoc, false)) == NULL) {
			rc = cf ? 2 : 1;
			goto out;
		}
		if (s->ops->purge == NULL) {
			fprintf(stderr, "xmilter: sink %s cannot be purged\n",
			    s->conf->name);
			rc = 1;
		} else if (s->ops->purge(s, c.now >= 0 ? c.now : xm_now(), c.dry,
		    &count, err, sizeof(err)) < 0) {
			fprintf(stderr, "xmilter: purge: %s\n", err);
			rc = 2;
		} else
			printf("%s: %lld record%s %s\n", s->conf->name, count,
			    count == 1 ? "" : "s", c.dry ? "would be purged" :
			    "purged");
		xm_archive_sink_close(s);
	} else
		rc = cli_usage();
out:
	xm_settings_free(xm_archive_sink_settings, &adhoc);
	xm_config_free(cf);
	return rc;
}
