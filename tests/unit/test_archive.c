/*
 * test_archive.c - the compliance archive: record encoding, selection,
 * holds, the hash chain (edits, deletions, re-ordering, removed files,
 * rotation, purge), the SQLite sink, the command sink with slow and
 * crashing consumers, must-archive waiting and failing.
 *
 * Every case writes real files in a temporary directory and reads them
 * back through the same code `xmilter archive` uses.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "archive.h"
#include "testlib.h"

TestSuite(record, .init = mk_tmpdir, .fini = rm_tmpdir);
TestSuite(chain, .init = mk_tmpdir, .fini = rm_tmpdir);
TestSuite(sinks, .init = mk_tmpdir, .fini = rm_tmpdir);

static const char chat_event[] =
    "origin=c2s\nip=198.51.100.7\nauth=alice@example.org\n"
    "time=2026-11-22T10:00:00.250Z\n\n"
    "<message from='Alice@Example.org/pc' to='bob@example.org' type='chat' "
    "id='a1'><subject>plans</subject><body>hello \xc3\xa9t\xc3\xa9</body>"
    "</message>";

/* verdict - a reject with two symbols */
static void
verdict(struct xm_verdict *v, enum xm_action a, struct xm_symbol *syms)
{
	memset(v, 0, sizeof(*v));
	syms[0] = (struct xm_symbol){ "RULE_A", 12.5, "matched \"x\"", "rules", 0 };
	syms[1] = (struct xm_symbol){ "GUARD_B", 0.5, "", "guard", XM_SYM_SHADOW };
	v->action = a;
	v->score = 13;
	v->symbols = syms;
	v->nsymbols = 2;
	v->reason = "RULE_A";
	v->scope = "global";
	if (a == XM_REJECT) {
		v->condition = "policy-violation";
		v->text = "blocked";
	}
}

/* encode - the JSON record of TEXT with action A, parsed back */
static json_t *
encode(const char *text, size_t len, enum xm_action a, bool parse)
{
	struct xm_arena *ar = xm_arena_new();
	struct xm_event *ev = parse ? event(ar, text) : NULL;
	struct xm_symbol syms[2];
	struct xm_verdict v;
	struct xm_archive_item *it;
	char *js;
	json_t *o;
	json_error_t je;

	verdict(&v, a, syms);
	it = xm_archive_item_new(ev, text, len, &v, 42, "node-1", 1795337000.5);
	xm_arena_free(ar);  /* the item must not point into the arena */
	js = xm_archive_encode(it);
	xm_archive_item_unref(it);
	o = json_loads(js, JSON_ALLOW_NUL, &je);
	cr_assert_not_null(o, "not JSON: %s: %s", je.text, js);
	cr_assert_null(strchr(js, '\n'), "a record is one line");
	free(js);
	return o;
}

#define S(o, k) json_string_value(json_object_get((o), (k)))

Test(record, fields)
{
	static const struct { const char *key, *want; } tab[] = {
		{ "time", "2026-11-22T10:00:00.250Z" },
		{ "node", "node-1" },
		{ "kind", "message" },
		{ "stanza", "message" },
		{ "type", "chat" },
		{ "origin", "c2s" },
		{ "ip", "198.51.100.7" },
		{ "auth", "alice@example.org" },
		{ "from", "Alice@Example.org/pc" },
		{ "to", "bob@example.org" },
		{ "stanza_id", "a1" },
		{ "sender", "alice@example.org" },   /* bare, lower case */
		{ "recipient", "bob@example.org" },
		{ "subject", "plans" },
		{ "body", "hello \xc3\xa9t\xc3\xa9" },
		{ "action", "reject" },
		{ "condition", "policy-violation" },
		{ "reason", "RULE_A" },
		{ "scope", "global" },
		{ "event", chat_event },             /* the text as received */
	};
	json_t *o = encode(chat_event, strlen(chat_event), XM_REJECT, true);
	json_t *syms = json_object_get(o, "symbols");
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(tab); i++)
		cr_expect_str_eq(S(o, tab[i].key) ? S(o, tab[i].key) : "(none)",
		    tab[i].want, "%s", tab[i].key);
	cr_expect_eq(json_integer_value(json_object_get(o, "v")), 1);
	cr_expect_eq(json_integer_value(json_object_get(o, "id")), 42);
	cr_expect_float_eq(json_number_value(json_object_get(o, "score")), 13,
	    1e-9);
	cr_expect_float_eq(json_number_value(json_object_get(o, "t")),
	    1795341600.25, 1e-3);
	cr_assert_eq(json_array_size(syms), 2);
	cr_expect_str_eq(S(json_array_get(syms, 0), "name"), "RULE_A");
	cr_expect_str_eq(S(json_array_get(syms, 0), "detail"), "matched \"x\"");
	cr_expect_str_eq(S(json_array_get(syms, 1), "filter"), "guard");
	cr_expect(json_is_true(json_object_get(json_array_get(syms, 1),
	    "shadow")));
	cr_expect_null(json_object_get(o, "event_base64"));
	json_decref(o);
}

Test(record, malformed_bytes_kept_exactly)
{
	static const char bad[] = "origin=c2s\n\n<message><body>\xff\xfe\0x"
	    "</body></message>";
	json_t *o = encode(bad, sizeof(bad) - 1, XM_REJECT, false);
	const char *b64 = S(o, "event_base64");
	char cmd[512], out[256];
	FILE *fp;
	size_t n;

	cr_assert(json_is_true(json_object_get(o, "malformed")));
	cr_assert_not_null(b64);
	cr_assert_not_null(S(o, "event"));  /* readable, with U+FFFD */
	snprintf(cmd, sizeof(cmd), "printf '%%s' '%s' | base64 -d", b64);
	cr_assert_not_null(fp = popen(cmd, "r"));
	n = fread(out, 1, sizeof(out), fp);
	pclose(fp);
	cr_assert_eq(n, sizeof(bad) - 1);
	cr_assert(memcmp(out, bad, n) == 0, "event_base64 is the exact bytes");
	json_decref(o);
}

/* conf_file - write YAML TEXT to tmpdir/x.yml and load it */
static struct xm_config *
conf_file(const char *text)
{
	char path[PATH_MAX + 16], err[512];
	struct xm_config *cf;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/x.yml", tmpdir);
	cr_assert_not_null(fp = fopen(path, "w"));
	fputs(text, fp);
	fclose(fp);
	cf = xm_config_load(path, err, sizeof(err));
	cr_assert_not_null(cf, "%s", err);
	return cf;
}

Test(record, selection_rules)
{
	static const struct { const char *rules; bool want; } tab[] = {
		{ "", true },
		{ "actions: [reject, discard, quarantine]", true },
		{ "actions: [accept]", false },
		{ "origins: [s2s, component]", false },
		{ "origins: [c2s]", true },
		{ "domains: [example.org]", true },
		{ "domains: ['*.example.org']", true },
		{ "domains: [other.example]", false },
		{ "peers: [icq.example.org]", false },   /* no peer: not selected */
		{ "kinds: [message]", true },
		{ "kinds: [transfer, upload]", false },
		{ "scopes: [global]", true },
		{ "scopes: [partners]", false },
	};
	struct xm_arena *ar = xm_arena_new();
	struct xm_event *ev = event(ar, chat_event);
	struct xm_symbol syms[2];
	struct xm_verdict v;
	struct xm_archive_item *it;
	size_t i;

	verdict(&v, XM_REJECT, syms);
	it = xm_archive_item_new(ev, chat_event, strlen(chat_event), &v, 1, "n",
	    1);
	for (i = 0; i < XM_ARRAY_LEN(tab); i++) {
		char *y = xm_printf("archive:\n  sinks:\n    - name: s\n      "
		    "path: a.db\n      %s\n", tab[i].rules);
		struct xm_config *cf = conf_file(y);

		cr_expect_eq(xm_archive_selects(&cf->archive.sinks[0], it),
		    tab[i].want, "%s", tab[i].rules);
		xm_config_free(cf);
		free(y);
	}
	xm_archive_item_unref(it);
	xm_arena_free(ar);
}

/* the view xm_archive_submit selects on (before packing a record: a full
 * best-effort queue then costs no copy) answers as the record does, for
 * every rule and sender/recipient shape (resources, auth only, case, none,
 * malformed) */
Test(record, selection_view_matches_record)
{
	static const char *rules[] = {
		"", "actions: [reject]", "actions: [accept]",
		"origins: [c2s]", "origins: [s2s]", "kinds: [message]",
		"kinds: [presence]", "scopes: [global]", "scopes: [partners]",
		"domains: [example.org]", "domains: ['*.example.org']",
		"domains: [EXAMPLE.ORG]", "domains: [other.example]",
		"domains: [sub.example.org]", "domains: [pc]",
		"peers: [icq.example.org]", "peers: ['*.example.org']",
	};
	static const char *events[] = {
		chat_event,
		"origin=c2s\nauth=carol@Sub.Example.org/phone\n\n"
		"<message to='x@other.example/a/b' type='chat'><body>b</body>"
		"</message>",
		"origin=s2s\npeer=icq.example.org\n\n"
		"<message from='icq.example.org/pc' to='bob@example.org'>"
		"<body>b</body></message>",
		"origin=s2s\npeer=gw.example.org\n\n"
		"<presence from='a@b@example.org/r@s' to='/x'/>",
		"origin=s2s\npeer=example.org\n\n"
		"<message from='example.org/x@other.example' to='sub.example.org'>"
		"<body>b</body></message>",
		"origin=c2s\n\n<iq type='get' id='q'/>",
		NULL,  /* malformed */
	};
	struct xm_config *cf[XM_ARRAY_LEN(rules)];
	size_t i, j;

	for (i = 0; i < XM_ARRAY_LEN(rules); i++) {
		char *y = xm_printf("archive:\n  sinks:\n    - name: s\n      "
		    "path: a.db\n      %s\n", rules[i]);

		cf[i] = conf_file(y);
		free(y);
	}
	for (j = 0; j < XM_ARRAY_LEN(events); j++) {
		struct xm_arena *ar = xm_arena_new();
		struct xm_event *ev = events[j] ? event(ar, events[j]) : NULL;
		struct xm_symbol syms[2];
		struct xm_verdict v;
		struct xm_archive_item *it;

		if (events[j] != NULL)
			cr_assert_not_null(ev, "event %zu parses", j);
		verdict(&v, j % 2 ? XM_ACCEPT : XM_REJECT, syms);
		it = xm_archive_item_new(ev, "x", 1, &v, 1, "n", 1);
		for (i = 0; i < XM_ARRAY_LEN(rules); i++)
			cr_expect_eq(xm_archive_selects_view(&cf[i]->archive.sinks[0],
			    ev, &v), xm_archive_selects(&cf[i]->archive.sinks[0], it)
			    ? 1 : 0, "event %zu, rules \"%s\"", j, rules[i]);
		xm_archive_item_unref(it);
		xm_arena_free(ar);
	}
	for (i = 0; i < XM_ARRAY_LEN(rules); i++)
		xm_config_free(cf[i]);
}

/* the record's JSON text is exactly what jansson writes for the same
 * members (xm_archive_encode writes it without jansson): parsed back and
 * dumped again with the same flags it is unchanged, for strings that need
 * escaping, invalid UTF-8, NUL, reals jansson formats specially, NaN */
Test(record, encoding_is_canonical_json)
{
	static const char *events[] = {
		chat_event,
		"origin=c2s\ntime=1999-01-01T00:00:00Z\n\n<message from='x@y' "
		"to='z@w'><body>\"q\" back\\slash\ttab\nnl &#x7f;&#xd; "
		"\xe2\x80\xa8 \xf0\x9f\x98\x80 /s</body><body>2</body></message>",
		"origin=s2s\npeer=icq.example.org\n\n<presence from='a@b/c'/>",
		NULL,
	};
	static const struct { const char *s; size_t n; } raws[] = {
		{ "x", 1 }, { "bad \xff\xfe utf8 \xc3", 16 },
		{ "nul\0inside", 10 }, { "\x01\x02\x1f\x7f", 4 },
	};
	static const double scores[] = { 13, 0, -0.0, 1e20, 1e-5,
	    123456789.123456789, 1.0 / 3, -7.25, 1e300, 5e-324, NAN,
	    INFINITY, 2.5e15, 1e16 };
	size_t e, r, k;

	for (e = 0; e < XM_ARRAY_LEN(events); e++)
		for (r = 0; r < XM_ARRAY_LEN(raws); r++)
			for (k = 0; k < XM_ARRAY_LEN(scores); k++) {
		struct xm_arena *ar = xm_arena_new();
		struct xm_event *ev = events[e] ? event(ar, events[e]) : NULL;
		struct xm_symbol syms[3] = {
			{ "RULE_A", scores[k], "matched \"x\"\n", "rules", 0 },
			{ NULL, 2, "", "f", XM_SYM_SHADOW },
			{ "S", scores[(k + 3) % XM_ARRAY_LEN(scores)], NULL, NULL, 0 },
		};
		struct xm_verdict v = { 0 };
		struct xm_archive_item *it;
		json_error_t je;
		json_t *o;
		char *js, *again;

		v.action = (enum xm_action)(k % 3);
		v.score = scores[k];
		v.symbols = syms;
		v.nsymbols = 3 - r % 2;
		v.reason = r == 2 ? NULL : "RULE_A";
		v.condition = "policy-violation";
		v.text = "bl\x01ocked \xc3";
		v.scope = "global";
		it = xm_archive_item_new(ev, events[e] && r == 0 ? events[e] :
		    raws[r].s, events[e] && r == 0 ? strlen(events[e]) : raws[r].n,
		    &v, 42 + k, r == 3 ? "n\"ode" : "node-1",
		    1795337000.5 + (double)k * 0.0011);
		js = xm_archive_encode(it);
		o = json_loads(js, 0, &je);
		cr_assert_not_null(o, "%zu/%zu/%zu: %s: %s", e, r, k, je.text, js);
		again = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
		cr_expect_str_eq(js, again, "%zu/%zu/%zu", e, r, k);
		cr_expect_eq(json_is_real(json_object_get(o, "score")),
		    !isnan(scores[k]) && !isinf(scores[k]),
		    "%zu/%zu/%zu: a real, or nothing for NaN and infinities", e, r, k);
		free(again);
		json_decref(o);
		free(js);
		xm_archive_item_unref(it);
		xm_arena_free(ar);
	}
}

Test(record, holds_and_retention)
{
	static const struct {
		const char *sender, *recipient, *time;
		bool held;
	} tab[] = {
		{ "ceo@example.org", "x@y.example", "2020-01-01T00:00:00Z", true },
		{ "x@y.example", "CEO@example.org", "2020-01-01T00:00:00Z", true },
		{ "a@legal.example", NULL, "2020-01-01T00:00:00Z", true },
		{ "a@example.org", "b@example.org", "2025-03-01T00:00:00Z", true },
		{ "a@example.org", "b@example.org", "2025-05-01T00:00:00Z", false },
		{ NULL, NULL, "2019-01-01T00:00:00Z", false },
	};
	struct xm_config *cf = conf_file("archive:\n"
	    "  hold_accounts: [ceo@example.org, '*@legal.example']\n"
	    "  hold_periods: ['2025-02-01T00:00:00Z/2025-04-01T00:00:00Z']\n"
	    "  sinks:\n    - name: s\n      path: a.db\n      retention: 30d\n"
	    "      retention_scopes: [partners=7d, audit=365d]\n");
	size_t i;
	double t;

	for (i = 0; i < XM_ARRAY_LEN(tab); i++) {
		cr_assert_eq(xm_parse_time(tab[i].time, &t), 0);
		cr_expect_eq(xm_archive_held(&cf->archive, tab[i].sender,
		    tab[i].recipient, t), tab[i].held, "case %zu", i);
	}
	cr_expect_float_eq(xm_archive_retention(&cf->archive.sinks[0],
	    "partners"), 7 * 86400, 1e-6);
	cr_expect_float_eq(xm_archive_retention(&cf->archive.sinks[0], "audit"),
	    365 * 86400, 1e-6);
	cr_expect_float_eq(xm_archive_retention(&cf->archive.sinks[0], "global"),
	    30 * 86400, 1e-6);
	xm_config_free(cf);
}

Test(record, config_errors_name_the_line)
{
	static const struct { const char *yaml, *want; } tab[] = {
		{ "archive:\n  sinks:\n    - name: a\n      type: sqlite\n",
		  "x.yml:3: archive sink \"a\": path is required" },
		{ "archive:\n  sinks:\n    - name: a\n      type: nosuch\n",
		  "x.yml:4: type: \"nosuch\" is not one of" },
		{ "archive:\n  sinks:\n    - name: a\n      path: x\n"
		  "    - name: a\n      path: y\n",
		  "x.yml:5: archive sink \"a\" declared twice" },
		{ "archive:\n  sinks:\n    - name: c\n      type: command\n"
		  "      command: cat\n      guarantee: must-archive\n",
		  "needs command_ack: true" },
		{ "archive:\n  hold_periods: [yesterday]\n",
		  "x.yml:2: archive: hold_periods" },
		{ "archive:\n  on_failure: modify\n",
		  "on_failure must be accept, reject or discard" },
		{ "archive:\n  sinks:\n    - name: a\n      path: x\n"
		  "      retention_scopes: [nodays]\n",
		  "is not SCOPE=DURATION" },
		{ "archive:\n  bogus: 1\n", "x.yml:2: archive: unknown setting" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(tab); i++) {
		char path[PATH_MAX + 16], err[512];
		FILE *fp;

		snprintf(path, sizeof(path), "%s/x.yml", tmpdir);
		cr_assert_not_null(fp = fopen(path, "w"));
		fputs(tab[i].yaml, fp);
		fclose(fp);
		cr_expect_null(xm_config_load(path, err, sizeof(err)), "case %zu",
		    i);
		cr_expect_not_null(strstr(err, tab[i].want), "case %zu: %s", i,
		    err);
	}
}

/* ---- the chain ---- */

Test(chain, line_hash_covers_everything_before_it)
{
	char h1[65], h2[65], prev[65], hash[65], err[128];
	char *l1 = xm_archive_chain_line("{\"a\":1}", 1,
	    "0000000000000000000000000000000000000000000000000000000000000000",
	    h1);
	char *l2 = xm_archive_chain_line("{\"a\":2}", 2, h1, h2);
	unsigned long long seq;

	cr_assert_eq(xm_archive_chain_check(l2, strlen(l2), &seq, prev, hash,
	    err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(seq, 2);
	cr_expect_str_eq(prev, h1);
	cr_expect_str_eq(hash, h2);
	l2[strlen("{\"seq\":2,\"prev\":\"") + 70] ^= 1;  /* one bit, one byte */
	cr_expect_eq(xm_archive_chain_check(l2, strlen(l2), &seq, prev, hash,
	    err, sizeof(err)), -1);
	free(l1);
	free(l2);
}

/* open_jsonl - a writable jsonl sink in tmpdir/chain with extra YAML */
static struct archive_sink *
open_jsonl(struct xm_config **cfp, const char *extra)
{
	char *y = xm_printf("archive:\n  sinks:\n    - name: chain\n      "
	    "type: jsonl\n      path: chain\n%s", extra);
	struct archive_sink *s;
	char err[512];

	*cfp = conf_file(y);
	free(y);
	s = xm_archive_sink_open(&(*cfp)->archive, &(*cfp)->archive.sinks[0],
	    false, err, sizeof(err));
	cr_assert_not_null(s, "%s", err);
	s->node = "t";
	return s;
}

/* write_records - N records with bodies "record I" (times T0 + i) */
static void
write_records(struct archive_sink *s, int from, int n, double t0,
    const char *sender)
{
	struct xm_symbol syms[2];
	struct xm_verdict v;
	int i;

	verdict(&v, XM_ACCEPT, syms);
	for (i = from; i < from + n; i++) {
		struct xm_arena *ar = xm_arena_new();
		char *text = xm_printf("origin=c2s\ntime=%s\n\n<message from='%s' "
		    "to='bob@example.org'><body>record %d</body></message>",
		    "2026-01-01T00:00:00Z", sender, i);
		struct xm_event *ev = event(ar, text);
		struct xm_archive_item *it;
		size_t done;
		char err[256];

		ev->time = t0 + i;
		it = xm_archive_item_new(ev, text, strlen(text), &v, (unsigned)i,
		    "t", t0 + i);
		cr_assert_eq(s->ops->write(s, &it, 1, true, &done, err,
		    sizeof(err)), 0, "%s", err);
		cr_assert_eq(done, 1);
		xm_archive_item_unref(it);
		free(text);
		xm_arena_free(ar);
	}
}

/* chain_files - the chain's file names in order, in tmpdir/chain */
static size_t
chain_files(char names[][PATH_MAX], size_t max)
{
	char cmd[PATH_MAX + 64];
	FILE *fp;
	size_t n = 0;

	snprintf(cmd, sizeof(cmd), "ls %s/chain/*.jsonl | sort", tmpdir);
	cr_assert_not_null(fp = popen(cmd, "r"));
	while (n < max && fgets(names[n], PATH_MAX, fp)) {
		names[n][strcspn(names[n], "\n")] = '\0';
		n++;
	}
	pclose(fp);
	return n;
}

/* verify - run the verifier, report into a string; error count */
static unsigned
verify(char *report, size_t len, struct xm_archive_verify *res)
{
	char dir[PATH_MAX + 16];
	FILE *fp = fmemopen(report, len, "w");

	memset(res, 0, sizeof(*res));
	snprintf(dir, sizeof(dir), "%s/chain", tmpdir);
	xm_archive_jsonl_verify(dir, fp, res);
	fclose(fp);
	return res->errors;
}

/* tamper kinds */
enum tamper { T_NONE, T_EDIT, T_DELETE, T_SWAP, T_DUP, T_DROP_HEAD_FILE,
	T_DROP_MIDDLE_FILE, T_DROP_TAIL_FILE_LINES, T_REHASH_ONE };

/* tamper - change the files the way T says (sed/awk on real files) */
static void
tamper(enum tamper t)
{
	char names[16][PATH_MAX], cmd[4 * PATH_MAX];
	size_t n = chain_files(names, 16);

	cr_assert_geq(n, 3, "the test needs rotation into 3+ files");
	switch (t) {
	case T_NONE:
		return;
	case T_EDIT:  /* one character of a body in the middle file */
		snprintf(cmd, sizeof(cmd), "sed -i '2s/record /rec0rd /' '%s'",
		    names[1]);
		break;
	case T_DELETE:
		snprintf(cmd, sizeof(cmd), "sed -i '2d' '%s'", names[1]);
		break;
	case T_SWAP:
		snprintf(cmd, sizeof(cmd), "sed -i '1{h;d};2{G}' '%s'", names[1]);
		break;
	case T_DUP:
		snprintf(cmd, sizeof(cmd), "sed -i '2p' '%s'", names[1]);
		break;
	case T_DROP_HEAD_FILE:
		snprintf(cmd, sizeof(cmd), "rm '%s'", names[0]);
		break;
	case T_DROP_MIDDLE_FILE:
		snprintf(cmd, sizeof(cmd), "rm '%s'", names[1]);
		break;
	case T_DROP_TAIL_FILE_LINES:  /* lines at the start of a later file */
		snprintf(cmd, sizeof(cmd), "sed -i '1d' '%s'", names[n - 1]);
		break;
	case T_REHASH_ONE:  /* an edit whose own hash is recomputed */
		snprintf(cmd, sizeof(cmd), "python3 -c \"import hashlib,sys\n"
		    "p='%s'\nL=open(p).read().split(chr(10))\n"
		    "l=L[1].replace('record ','rec0rd ')\ni=l.rindex(',\\\"hash\\\":')\n"
		    "h=hashlib.sha256(l[:i].encode()).hexdigest()\n"
		    "L[1]=l[:i]+',\\\"hash\\\":\\\"'+h+'\\\"}'\n"
		    "open(p,'w').write(chr(10).join(L))\"", names[1]);
		break;
	}
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

Test(chain, tampering_is_detected)
{
	static const struct { enum tamper t; const char *name, *want; } tab[] = {
		{ T_NONE, "untouched", NULL },
		{ T_EDIT, "an edited body", "hash mismatch" },
		{ T_DELETE, "a deleted record", "missing" },
		{ T_SWAP, "two records swapped", "re-ordered" },
		{ T_DUP, "a repeated record", "re-ordered or repeated" },
		{ T_DROP_HEAD_FILE, "the oldest file removed", "no purge record" },
		{ T_DROP_MIDDLE_FILE, "a middle file removed", "missing" },
		{ T_DROP_TAIL_FILE_LINES, "the first line of the newest file",
		  "missing" },
		{ T_REHASH_ONE, "an edit with its own hash recomputed",
		  "was replaced" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(tab); i++) {
		struct xm_config *cf;
		struct archive_sink *s;
		struct xm_archive_verify res;
		char report[8192], cmd[PATH_MAX + 32];

		snprintf(cmd, sizeof(cmd), "rm -rf %s/chain", tmpdir);
		cr_assert_eq(system(cmd), 0);
		s = open_jsonl(&cf, "      rotate_size: 4k\n");
		write_records(s, 1, 40, 1795337000, "alice@example.org");
		xm_archive_sink_close(s);
		tamper(tab[i].t);
		verify(report, sizeof(report), &res);
		if (tab[i].want == NULL) {
			cr_expect_eq(res.errors, 0, "%s: %s", tab[i].name, report);
			cr_expect_eq(res.records, 40);
			cr_expect_eq(res.last_seq, 40);
			cr_expect_geq(res.files, 3, "rotation by size");
		} else {
			cr_expect_gt(res.errors, 0, "%s went unnoticed", tab[i].name);
			cr_expect_not_null(strstr(report, tab[i].want), "%s: %s",
			    tab[i].name, report);
		}
		xm_config_free(cf);
	}
}

Test(chain, continues_after_reopen_and_cut_tail)
{
	struct xm_config *cf;
	struct archive_sink *s = open_jsonl(&cf, "");
	struct xm_archive_verify res;
	char report[4096], names[4][PATH_MAX], cmd[PATH_MAX + 64];

	write_records(s, 1, 5, 1795337000, "alice@example.org");
	xm_archive_sink_close(s);
	/* a crash in the middle of a write: half a line at the end */
	cr_assert_eq(chain_files(names, 4), 1);
	snprintf(cmd, sizeof(cmd), "printf '{\"seq\":6,\"pr' >> '%s'", names[0]);
	cr_assert_eq(system(cmd), 0);
	verify(report, sizeof(report), &res);
	cr_expect_eq(res.errors, 0, "%s", report);
	cr_expect(res.partial_tail);
	/* reopening cuts it off and the chain goes on */
	s = xm_archive_sink_open(&cf->archive, &cf->archive.sinks[0], false,
	    report, sizeof(report));
	cr_assert_not_null(s, "%s", report);
	write_records(s, 6, 5, 1795337010, "alice@example.org");
	xm_archive_sink_close(s);
	verify(report, sizeof(report), &res);
	cr_expect_eq(res.errors, 0, "%s", report);
	cr_expect(!res.partial_tail);
	cr_expect_eq(res.last_seq, 10);
	xm_config_free(cf);
}

Test(chain, second_writer_is_refused)
{
	struct xm_config *cf;
	struct archive_sink *s = open_jsonl(&cf, ""), *s2;
	char err[256];

	s2 = xm_archive_sink_open(&cf->archive, &cf->archive.sinks[0], false,
	    err, sizeof(err));
	cr_expect_null(s2);
	cr_expect_not_null(strstr(err, "in use"), "%s", err);
	xm_archive_sink_close(s);
	xm_config_free(cf);
}

Test(chain, purge_removes_old_files_and_says_so_in_the_chain)
{
	struct xm_config *cf;
	struct archive_sink *s = open_jsonl(&cf, "      rotate_size: 4k\n"
	    "      retention: 1d\n");
	struct xm_archive_verify res;
	char report[8192], err[256], names[16][PATH_MAX];
	long long n;
	double t0 = 1700000000;   /* old */

	write_records(s, 1, 30, t0, "alice@example.org");
	write_records(s, 31, 30, t0 + 10 * 86400, "alice@example.org");
	cr_assert_geq(chain_files(names, 16), 4);
	/* a dry run counts, removes nothing */
	cr_assert_eq(s->ops->purge(s, t0 + 10 * 86400, true, &n, err,
	    sizeof(err)), 0, "%s", err);
	cr_expect_gt(n, 0);
	cr_assert_eq(s->ops->purge(s, t0 + 10 * 86400, false, &n, err,
	    sizeof(err)), 0, "%s", err);
	cr_expect_gt(n, 0);
	cr_expect_leq(n, 30, "only records past retention");
	xm_archive_sink_close(s);
	verify(report, sizeof(report), &res);
	cr_expect_eq(res.errors, 0, "%s", report);
	cr_expect_eq(res.purged, (unsigned long long)n);
	cr_expect_gt(res.first_seq, 1);
	cr_expect_eq(res.last_seq, 61, "60 records + the purge record");
	xm_config_free(cf);
}

Test(chain, legal_hold_blocks_purge)
{
	struct xm_config *cf;
	struct archive_sink *s = open_jsonl(&cf, "      rotate_size: 4k\n"
	    "      retention: 1d\n");
	char err[256];
	long long n;

	xm_config_free(cf);
	xm_archive_sink_close(s);
	cf = conf_file("archive:\n  hold_accounts: [ceo@example.org]\n"
	    "  sinks:\n    - name: chain\n      type: jsonl\n      path: chain\n"
	    "      rotate_size: 4k\n      retention: 1d\n");
	s = xm_archive_sink_open(&cf->archive, &cf->archive.sinks[0], false, err,
	    sizeof(err));
	cr_assert_not_null(s, "%s", err);
	write_records(s, 1, 30, 1700000000, "ceo@example.org");
	cr_assert_eq(s->ops->purge(s, 1700000000 + 100 * 86400, false, &n, err,
	    sizeof(err)), 0, "%s", err);
	cr_expect_eq(n, 0, "held records stay");
	xm_archive_sink_close(s);
	xm_config_free(cf);
}

/* ---- sinks ---- */

/* collect - a search callback counting rows and keeping the last */
struct rows {
	int n;
	char last[4096];
};

static int
collect(void *arg, const char *rec)
{
	struct rows *r = arg;

	r->n++;
	snprintf(r->last, sizeof(r->last), "%s", rec);
	return 0;
}

Test(sinks, sqlite_search_and_purge)
{
	struct xm_config *cf = conf_file("archive:\n"
	    "  hold_accounts: [ceo@example.org]\n"
	    "  sinks:\n    - name: db\n      path: a.db\n      retention: 1d\n");
	struct archive_sink *s;
	struct xm_archive_query q = { .from = -1, .until = -1 };
	struct rows r = { 0 };
	char err[256];
	long long n;
	static const struct {
		struct xm_archive_query q;
		int want;
	} tab[] = {
		{ { -1, -1, NULL, NULL, NULL, NULL, 0 }, 30 },
		{ { -1, -1, "alice@example.org", NULL, NULL, NULL, 0 }, 20 },
		{ { -1, -1, "CEO@example.org", NULL, NULL, NULL, 0 }, 10 },
		{ { -1, -1, "*@example.org", NULL, NULL, NULL, 0 }, 30 },
		{ { -1, -1, NULL, "record 7", NULL, NULL, 0 }, 1 },
		{ { -1, -1, NULL, "record", NULL, NULL, 5 }, 5 },
		{ { -1, -1, NULL, NULL, "record AND (\"7\" OR \"8\")", NULL, 0 }, 2 },
		{ { 1700000000 + 5, 1700000000 + 10, NULL, NULL, NULL, NULL, 0 }, 5 },
		{ { -1, -1, NULL, NULL, NULL, "accept", 0 }, 30 },
		{ { -1, -1, NULL, NULL, NULL, "reject", 0 }, 0 },
	};
	size_t i;

	s = xm_archive_sink_open(&cf->archive, &cf->archive.sinks[0], false, err,
	    sizeof(err));
	cr_assert_not_null(s, "%s", err);
	s->node = "t";
	write_records(s, 1, 20, 1700000000, "alice@example.org");
	write_records(s, 21, 10, 1700000000, "ceo@example.org");
	for (i = 0; i < XM_ARRAY_LEN(tab); i++) {
		memset(&r, 0, sizeof(r));
		cr_assert_eq(s->ops->search(s, &tab[i].q, collect, &r, err,
		    sizeof(err)), 0, "%s", err);
		cr_expect_eq(r.n, tab[i].want, "query %zu: %d rows", i, r.n);
	}
	cr_assert_eq(s->ops->purge(s, 1700000000 + 2 * 86400, false, &n, err,
	    sizeof(err)), 0, "%s", err);
	cr_expect_eq(n, 20, "alice's are purged, the CEO's are on hold");
	memset(&r, 0, sizeof(r));
	cr_assert_eq(s->ops->search(s, &q, collect, &r, err, sizeof(err)), 0);
	cr_expect_eq(r.n, 10);
	q.text = "record";
	memset(&r, 0, sizeof(r));
	cr_assert_eq(s->ops->search(s, &q, collect, &r, err, sizeof(err)), 0);
	cr_expect_eq(r.n, 10, "the full-text index follows deletions");
	xm_archive_sink_close(s);
	xm_config_free(cf);
}

/* submit_n - N records through a running archive; returns must failures */
static int
submit_n(struct xm_archive *a, int n, bool wait)
{
	struct xm_symbol syms[2];
	struct xm_verdict v;
	int i, failed = 0;

	verdict(&v, XM_ACCEPT, syms);
	for (i = 0; i < n; i++) {
		struct xm_arena *ar = xm_arena_new();
		char *text = xm_printf("origin=c2s\n\n<message from='a@example.org' "
		    "to='b@example.org'><body>line %d</body></message>", i);
		struct xm_event *ev = event(ar, text);

		if (wait)
			failed += xm_archive_submit_wait(a, ev, text, strlen(text), &v,
			    (unsigned)i, 0) < 0;
		else
			xm_archive_submit(a, ev, text, strlen(text), &v, (unsigned)i,
			    0, NULL, NULL);
		free(text);
		xm_arena_free(ar);
	}
	return failed;
}

/* count_lines - lines in tmpdir/NAME, and which "line I" bodies occur */
static int
count_lines(const char *name, int n, int *distinct)
{
	char path[2 * PATH_MAX], line[8192];
	char *seen = xm_calloc((size_t)n, 1);
	FILE *fp;
	int lines = 0, i;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	*distinct = 0;
	if ((fp = fopen(path, "r")) == NULL) {
		free(seen);
		return 0;
	}
	while (fgets(line, sizeof(line), fp)) {
		json_t *o = json_loads(line, 0, NULL);
		const char *b = o ? S(o, "body") : NULL;

		cr_expect_not_null(o, "each line is one JSON record");
		lines++;
		if (b && sscanf(b, "line %d", &i) == 1 && i >= 0 && i < n)
			seen[i] = 1;
		json_decref(o);
	}
	fclose(fp);
	for (i = 0; i < n; i++)
		*distinct += seen[i];
	free(seen);
	return lines;
}

/* health_value - KEY's number in the archive's health line */
static unsigned long long
health_value(struct xm_archive *a, const char *key)
{
	struct xm_buf b = { 0 };
	char *p, pat[64];
	unsigned long long v = 0;

	xm_archive_health(a, &b);
	snprintf(pat, sizeof(pat), " %s=", key);
	if (b.data && (p = strstr(b.data, pat)) != NULL)
		v = strtoull(p + strlen(pat), NULL, 10);
	xm_buf_free(&b);
	return v;
}

Test(sinks, command_slow_consumer_back_pressure, .timeout = 60)
{
	/* reads a line every 20 ms; the queue holds 8 */
	struct xm_config *cf = conf_file("archive:\n  sinks:\n    - name: hook\n"
	    "      type: command\n      queue: 8\n      batch: 4\n"
	    "      command: while read -r l; do sleep 0.02; "
	    "printf '%s\\n' \"$l\" >> out.jsonl; done\n");
	struct xm_archive *a;
	unsigned long long overflow, written;
	int lines, distinct;
	char err[256];

	cr_assert_eq(chdir(tmpdir), 0);
	a = xm_archive_open(cf, err, sizeof(err));
	cr_assert_not_null(a, "%s", err);
	submit_n(a, 400, false);   /* far faster than 50 a second */
	overflow = health_value(a, "overflow");
	cr_expect_gt(overflow, 0, "a full queue is counted, not hidden");
	xm_archive_close(a);       /* the consumer gets EOF and ends */
	lines = count_lines("out.jsonl", 400, &distinct);
	cr_expect_eq((unsigned long long)lines + overflow, 400,
	    "every record was either delivered or counted as overflow "
	    "(%d + %llu)", lines, overflow);
	cr_expect_eq(distinct, lines, "no duplicates");
	(void)written;
	xm_config_free(cf);
}

Test(sinks, command_crashing_consumer_is_restarted, .timeout = 60)
{
	/* each incarnation keeps (and acknowledges) 7 records, then dies */
	struct xm_config *cf = conf_file("archive:\n  sinks:\n    - name: hook\n"
	    "      type: command\n      batch: 3\n      restart_delay: 10ms\n"
	    "      command_ack: true\n"
	    "      command: echo x >> starts; n=0; while read -r l; do "
	    "printf '%s\\n' \"$l\" >> out.jsonl; echo ok; n=$((n+1)); "
	    "[ $n -ge 7 ] && exit 1; done\n");
	struct xm_archive *a;
	int lines, distinct, starts, dummy = 0;
	char err[256];

	cr_assert_eq(chdir(tmpdir), 0);
	a = xm_archive_open(cf, err, sizeof(err));
	cr_assert_not_null(a, "%s", err);
	submit_n(a, 60, false);
	xm_archive_close(a);
	lines = count_lines("out.jsonl", 60, &distinct);
	{
		FILE *fp = fopen("starts", "r");
		char l[16];

		starts = 0;
		while (fp && fgets(l, sizeof(l), fp))
			starts++;
		if (fp)
			fclose(fp);
		(void)dummy;
	}
	cr_expect_eq(distinct, 60, "every record reached a consumer (%d)",
	    distinct);
	cr_expect_geq(lines, 60);
	cr_expect_geq(starts, 60 / 7, "the command was restarted (%d runs)",
	    starts);
	xm_config_free(cf);
}

Test(sinks, must_archive_waits_for_acknowledgements, .timeout = 60)
{
	struct xm_config *cf = conf_file("archive:\n  sinks:\n    - name: hook\n"
	    "      type: command\n      guarantee: must-archive\n"
	    "      command_ack: true\n"
	    "      command: while read -r l; do printf '%s\\n' \"$l\" >> "
	    "out.jsonl; echo ok; done\n");
	struct xm_archive *a;
	int failed, lines, distinct;
	char err[256];

	cr_assert_eq(chdir(tmpdir), 0);
	a = xm_archive_open(cf, err, sizeof(err));
	cr_assert_not_null(a, "%s", err);
	failed = submit_n(a, 20, true);
	/* every submit returned after its ack: all 20 are there now */
	lines = count_lines("out.jsonl", 20, &distinct);
	cr_expect_eq(failed, 0);
	cr_expect_eq(lines, 20);
	cr_expect_eq(distinct, 20);
	xm_archive_close(a);
	xm_config_free(cf);
}

Test(sinks, must_archive_fails_when_the_sink_is_unavailable, .timeout = 60)
{
	struct xm_config *cf;
	struct xm_archive *a;
	char err[256];
	int failed;

	cr_assert_eq(chdir(tmpdir), 0);
	/* a command sink whose consumer dies without acknowledging */
	cf = conf_file("archive:\n  sinks:\n    - name: hook\n"
	    "      type: command\n      guarantee: must-archive\n"
	    "      command_ack: true\n      restart_delay: 10ms\n"
	    "      command: exit 1\n");
	a = xm_archive_open(cf, err, sizeof(err));
	cr_assert_not_null(a, "%s", err);
	failed = submit_n(a, 5, true);
	cr_expect_eq(failed, 5, "no ack: each record fails (%d)", failed);
	cr_expect_eq(health_value(a, "must-failed"), 5);
	xm_archive_close(a);
	xm_config_free(cf);
}
