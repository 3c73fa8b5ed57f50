/*
 * test_config.c - unit tests of the configuration loader (plugin/config.c)
 *
 * YAML files are written to a fresh temporary directory per test (removed
 * at its end). Covered: the built-in defaults, a full good file, every
 * kind of error with its "file:LINE:" (the line checked exactly), sizes
 * and durations with suffixes (through a table of our own), relative
 * paths, scope matching, reload rules, and the shipped etc/xmilter.yml
 * (found through $top_srcdir, "." when unset) with and without local.d.
 */
#include <sys/stat.h>

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "chain.h"
#include "config.h"
#include "event.h"
#include "xm.h"

/* ---- helpers ---- */

#include "testlib.h"

TestSuite(config, .init = mk_tmpdir, .fini = rm_tmpdir);

/* srcdir - the source tree's top directory */
static const char *
srcdir(void)
{
	const char *s = getenv("top_srcdir");

	return s != NULL && *s != '\0' ? s : ".";
}

/* write_file - TEXT into NAME under the temporary directory; the path
 * (static ring) */
static const char *
write_file(const char *name, const char *text)
{
	static char ring[4][PATH_MAX + 64];
	static unsigned next;
	char *path = ring[next++ % 4];
	FILE *fp;

	snprintf(path, sizeof(ring[0]), "%s/%.60s", tmpdir, name);
	cr_assert_not_null(fp = fopen(path, "w"), "%s", path);
	fputs(text, fp);
	cr_assert_eq(fclose(fp), 0);
	return path;
}

/* load_ok - write TEXT as xmilter.yml and load it; must succeed */
static struct xm_config *
load_ok(const char *text)
{
	char err[1024] = "";
	struct xm_config *c = xm_config_load(write_file("xmilter.yml", text), err,
	    sizeof(err));

	cr_assert_not_null(c, "load failed: %s\n%s", err, text);
	return c;
}

/* load_err - write TEXT and load it; must fail; the message (static) */
static const char *
load_err(const char *text)
{
	static char err[1024];
	struct xm_config *c;

	err[0] = '\0';
	c = xm_config_load(write_file("xmilter.yml", text), err, sizeof(err));
	cr_expect_null(c, "accepted:\n%s", text);
	xm_config_free(c);
	return err;
}

/* filter_conf - the scope's settings of filter NAME */
static const struct xm_filter_conf *
filter_conf(const struct xm_scope *sc, const char *name)
{
	size_t i;

	for (i = 0; i < sc->nfilters; i++)
		if (strcmp(sc->filters[i].ops->name, name) == 0)
			return &sc->filters[i];
	cr_assert_fail("no filter %s", name);
	return NULL;
}

/* ---- defaults ---- */

Test(config, built_in_defaults)
{
	char err[256];
	struct xm_config *c = xm_config_load(NULL, err, sizeof(err));
	size_t i;

	cr_assert_not_null(c);
	cr_expect_null(c->path);
	cr_expect(strstr(c->daemon.socket, "/xmilter/xmilterd.sock") != NULL);
	cr_expect_eq(c->daemon.socket_mode, 0660);
	cr_expect_str_eq(c->daemon.socket_group, "");
	cr_expect_str_eq(c->daemon.listen_tcp, "");
	cr_expect_eq(c->daemon.max_frame, 1024 * 1024);
	cr_expect_eq(c->daemon.max_inflight, 1024);
	cr_expect_eq(c->daemon.workers, 2);
	cr_expect_eq(c->daemon.log_level, XM_LOG_INFO);
	cr_expect_str_eq(c->daemon.log_file, "");
	cr_expect(c->daemon.log_verdicts);
	cr_assert_eq(c->daemon.kinds.n, 4);
	cr_expect_str_eq(c->daemon.kinds.v[0], "message");
	cr_expect_str_eq(c->daemon.kinds.v[3], "upload");
	cr_expect(xm_strlist_has(&c->daemon.kinds, "transfer"));
	cr_expect_not(xm_strlist_has(&c->daemon.kinds, "iq"));
	cr_expect_not(xm_strlist_has(&c->daemon.kinds, NULL));

	cr_expect_str_eq(c->global.name, "global");
	cr_expect_eq(c->global.actions.modify, 5);
	cr_expect_eq(c->global.actions.quarantine, 10);
	cr_expect_eq(c->global.actions.reject, 15);
	cr_expect_eq(c->global.actions.discard, -1);
	cr_expect_str_eq(c->global.actions.reject_condition, "policy-violation");
	cr_expect_eq(c->global.actions.on_malformed, XM_REJECT);
	cr_expect_neq(c->global.actions.modify_warning[0], '\0');

	cr_expect_eq(c->limits.max_stanza, 262144);
	cr_expect_eq(c->limits.max_depth, 32);
	cr_expect_eq(c->limits.max_attrs, 32);
	cr_expect_eq(c->limits.max_elements, 4096);
	cr_expect_eq(c->limits.max_fields, 64);
	cr_expect_eq(c->limits.max_field_len, 4096);
	{
		/* the config defaults are the parser's built-in limits */
		struct xm_event_limits l;

		xm_event_limits_default(&l);
		cr_expect_eq((size_t)c->limits.max_stanza, l.max_stanza);
		cr_expect_eq((unsigned)c->limits.max_depth, l.max_depth);
		cr_expect_eq((unsigned)c->limits.max_attrs, l.max_attrs);
		cr_expect_eq((unsigned)c->limits.max_elements, l.max_elements);
		cr_expect_eq((unsigned)c->limits.max_fields, l.max_fields);
		cr_expect_eq((size_t)c->limits.max_field_len, l.max_field_len);
	}

	cr_expect_eq(c->nscopes, 0);
	cr_assert_eq(c->global.nfilters, xm_nfilters);
	for (i = 0; i < c->global.nfilters; i++) {
		/* on by default, but for opt-in filters (XM_FILTER_OPTIN) */
		cr_expect_eq(c->global.filters[i].enabled,
		    (xm_filters[i]->flags & XM_FILTER_OPTIN) == 0, "%s",
		    xm_filters[i]->name);
		cr_expect_not(c->global.filters[i].shadow);
		cr_expect_eq(c->global.filters[i].ops, xm_filters[i]);
		cr_expect_not_null(c->global.filters[i].conf);
	}
	xm_config_free(c);
}

Test(config, empty_and_comment_only_files_give_defaults)
{
	static const char *const t[] = { "", "# nothing here\n\n" };
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_config *c = load_ok(t[i]);

		cr_expect_eq(c->daemon.max_inflight, 1024, "row %zu", i);
		cr_expect_eq(c->global.actions.reject, 15, "row %zu", i);
		cr_expect_not_null(c->path);
		xm_config_free(c);
	}
}

/* A document marker and nothing else (every setting commented out) is
 * an empty document, just like an empty file: the defaults. */
Test(config, document_marker_only_gives_defaults)
{
	struct xm_config *c = load_ok("---\n# daemon:\n#   workers: 2\n");

	cr_expect_eq(c->daemon.workers, 2);
	xm_config_free(c);
}

/* ---- a good file ---- */

Test(config, every_section)
{
	struct xm_config *c = load_ok(
	    "daemon:\n"
	    "  socket: run/xmilterd.sock\n"
	    "  socket_mode: \"0600\"\n"
	    "  socket_group: prosody\n"
	    "  listen_tcp: 127.0.0.1:7357\n"
	    "  max_frame: 2M\n"
	    "  max_inflight: 64\n"
	    "  workers: 4\n"
	    "  quarantine_dir: /var/tmp/q\n"
	    "  log_level: debug\n"
	    "  log_file: log/xmilterd.log\n"
	    "  pidfile: \"\"\n"
	    "  kinds: [message, iq, presence]\n"
	    "  log_verdicts: no\n"
	    "actions:\n"
	    "  modify: 3.5\n"
	    "  quarantine: none\n"
	    "  reject: 20\n"
	    "  discard: 50\n"
	    "  reject_condition: not-acceptable\n"
	    "  reject_text: \"Nope: said the filter\"\n"
	    "  modify_warning: \"\"\n"
	    "  on_malformed: discard\n"
	    "limits:\n"
	    "  max_stanza: 512k\n"
	    "  max_depth: 16\n"
	    "  max_attrs: 8\n"
	    "  max_elements: 1000\n"
	    "  max_fields: 10\n"
	    "  max_field_len: 1K\n"
	    "filters:\n"
	    "  guard:\n"
	    "    enabled: off\n"
	    "    shadow: yes\n"
	    "  rules:\n"
	    "    shadow: true\n"
	    "    files: [rules.d, /etc/abs.cf]\n");

	{
		char want[PATH_MAX + 64];

		snprintf(want, sizeof(want), "%s/run/xmilterd.sock", tmpdir);
		cr_expect_str_eq(c->daemon.socket, want);
		snprintf(want, sizeof(want), "%s/log/xmilterd.log", tmpdir);
		cr_expect_str_eq(c->daemon.log_file, want);
	}
	cr_expect_eq(c->daemon.socket_mode, 0600);
	cr_expect_str_eq(c->daemon.socket_group, "prosody");
	cr_expect_str_eq(c->daemon.listen_tcp, "127.0.0.1:7357");
	cr_expect_eq(c->daemon.max_frame, 2 * 1024 * 1024);
	cr_expect_eq(c->daemon.max_inflight, 64);
	cr_expect_eq(c->daemon.workers, 4);
	cr_expect_str_eq(c->daemon.quarantine_dir, "/var/tmp/q");
	cr_expect_eq(c->daemon.log_level, XM_LOG_DEBUG);
	cr_expect_str_eq(c->daemon.pidfile, "");
	cr_assert_eq(c->daemon.kinds.n, 3);
	cr_expect_str_eq(c->daemon.kinds.v[1], "iq");
	cr_expect_not(c->daemon.log_verdicts);

	cr_expect_eq(c->global.actions.modify, 3.5);
	cr_expect_eq(c->global.actions.quarantine, -1);
	cr_expect_eq(c->global.actions.reject, 20);
	cr_expect_eq(c->global.actions.discard, 50);
	cr_expect_str_eq(c->global.actions.reject_condition, "not-acceptable");
	cr_expect_str_eq(c->global.actions.reject_text, "Nope: said the filter");
	cr_expect_str_eq(c->global.actions.modify_warning, "");
	cr_expect_eq(c->global.actions.on_malformed, XM_DISCARD);

	cr_expect_eq(c->limits.max_stanza, 512 * 1024);
	cr_expect_eq(c->limits.max_depth, 16);
	cr_expect_eq(c->limits.max_attrs, 8);
	cr_expect_eq(c->limits.max_elements, 1000);
	cr_expect_eq(c->limits.max_fields, 10);
	cr_expect_eq(c->limits.max_field_len, 1024);

	cr_expect_not(filter_conf(&c->global, "guard")->enabled);
	cr_expect(filter_conf(&c->global, "guard")->shadow);
	cr_expect(filter_conf(&c->global, "rules")->enabled);
	cr_expect(filter_conf(&c->global, "rules")->shadow);
	{
		/* filters' own path lists are resolved too */
		const struct xm_strlist *files =
		    filter_conf(&c->global, "rules")->conf;
		char want[PATH_MAX + 64];

		cr_assert_eq(files->n, 2);
		snprintf(want, sizeof(want), "%s/rules.d", tmpdir);
		cr_expect_str_eq(files->v[0], want);
		cr_expect_str_eq(files->v[1], "/etc/abs.cf");
	}
	xm_config_free(c);
}

Test(config, lists_may_be_written_as_one_comma_separated_value)
{
	struct xm_config *c = load_ok("daemon:\n  kinds: message,upload\n");

	cr_assert_eq(c->daemon.kinds.n, 2);
	cr_expect_str_eq(c->daemon.kinds.v[1], "upload");
	xm_config_free(c);
	c = load_ok("daemon:\n  kinds: []\n");
	cr_expect_eq(c->daemon.kinds.n, 0);
	xm_config_free(c);
}

Test(config, relative_paths_with_a_bare_file_name)
{
	char cwd[PATH_MAX], err[512];
	struct xm_config *c;

	write_file("xmilter.yml", "daemon:\n  socket: x.sock\n");
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_eq(chdir(tmpdir), 0);
	c = xm_config_load("xmilter.yml", err, sizeof(err));
	cr_assert_eq(chdir(cwd), 0);
	cr_assert_not_null(c, "%s", err);
	cr_expect_str_eq(c->daemon.socket, "./x.sock");
	xm_config_free(c);
}

/* ---- errors name the file and the line ---- */

Test(config, errors_name_file_and_line)
{
	static const struct {
		const char *what;
		const char *yaml;
		int line;
		const char *msg;
	} t[] = {
		{ "unknown section", "daemon:\n  workers: 2\nfilterz:\n  a: 1\n", 3,
		    "unknown section \"filterz\"" },
		{ "unknown setting", "daemon:\n  workers: 2\n\n  wokrers: 3\n", 4,
		    "daemon: unknown setting \"wokrers\"" },
		{ "unknown setting in actions", "actions:\n  modfy: 3\n", 2,
		    "actions: unknown setting \"modfy\"" },
		{ "bad bool", "filters:\n  guard:\n    enabled: maybe\n", 3,
		    "enabled: bad value \"maybe\"" },
		{ "bad bool (YAML 1.1 spelling)", "daemon:\n  log_verdicts: True\n",
		    2, "log_verdicts: bad value" },
		{ "int below range", "daemon:\n  max_inflight: 0\n", 2,
		    "max_inflight: \"0\" is not in 1..65536" },
		{ "int above range", "# c\ndaemon:\n  workers: 500\n", 3,
		    "workers: \"500\" is not in 1..128" },
		{ "int junk", "daemon:\n  workers: two\n", 2, "workers:" },
		{ "size below range", "daemon:\n  max_frame: 1k\n", 2,
		    "max_frame: \"1k\" is not in 4096..6.71089e+07" },
		{ "size above range", "limits:\n  max_stanza: 1G\n", 2,
		    "max_stanza: \"1G\" is not in" },
		{ "size bad suffix", "limits:\n  max_stanza: 10MB\n", 2,
		    "max_stanza: bad value \"10MB\"" },
		{ "size not a number", "limits:\n  max_stanza: big\n", 2,
		    "max_stanza: bad value \"big\"" },
		{ "double junk", "actions:\n  modify: five\n", 2,
		    "modify: bad value \"five\"" },
		{ "double below range", "actions:\n  modify: -0.5\n", 2,
		    "modify: \"-0.5\" is not a number in 0..1e+09 or none" },
		{ "double not finite", "actions:\n  reject: inf\n", 2,
		    "reject: bad value \"inf\"" },
		{ "bad enum", "daemon:\n  log_level: loud\n", 2,
		    "log_level: \"loud\" is not one of error|warning|info|debug" },
		{ "bad enum on_malformed", "actions:\n  on_malformed: explode\n", 2,
		    "on_malformed: \"explode\" is not one of" },
		{ "string with choices", "actions:\n  reject_condition: teapot\n",
		    2, "reject_condition: \"teapot\" is not one of" },
		{ "bad mode", "daemon:\n  socket_mode: \"0999\"\n", 2,
		    "socket_mode: bad value \"0999\"" },
		{ "mode too big", "daemon:\n  socket_mode: \"17777\"\n", 2,
		    "socket_mode: bad value" },
		{ "list expected", "daemon:\n  kinds:\n    a: 1\n", 3,
		    "kinds: expected a list" },
		{ "bad list item", "daemon:\n  kinds:\n    - message\n    - mail\n",
		    4, "kinds: \"mail\" is not one of" },
		{ "bad list item (scalar form)", "daemon:\n  kinds: message,mail\n",
		    2, "kinds: \"mail\" is not one of" },
		{ "nested list item", "daemon:\n  kinds: [[message]]\n", 2,
		    "kinds: list items must be plain values" },
		{ "single value expected", "daemon:\n  socket: [a, b]\n", 2,
		    "socket: expected a single value" },
		{ "section not a mapping", "daemon: 5\n", 1,
		    "daemon: expected a mapping of settings" },
		{ "top level not a mapping", "- a\n- b\n", 1,
		    "the configuration must be a mapping" },
		{ "unknown filter", "filters:\n  guard: {}\n  no_such_filter:\n"
		    "    enabled: true\n", 3, "filters: unknown filter \"no_such_filter\"" },
		{ "unknown filter setting", "filters:\n  rules:\n    filez: [a]\n",
		    3, "filters.rules: unknown setting \"filez\"" },
		{ "filter block not a mapping", "filters:\n  rules: yes\n", 2,
		    "filters.rules: expected a mapping of settings" },
		{ "filters not a mapping", "filters: [guard]\n", 1,
		    "filters: expected a mapping of filter names" },
		{ "scope without match", "scopes:\n  - name: a\n    match:\n"
		    "      origin: [s2s]\n  - name: b\n    actions:\n      reject: 3\n",
		    5, "scope \"b\" has no match: criteria" },
		{ "scope with an empty match", "scopes:\n  - name: a\n"
		    "    match: {}\n", 2, "scope \"a\" has no match: criteria" },
		{ "scope without a name", "scopes:\n  - match:\n"
		    "      origin: [s2s]\n", 2, "scope without a name" },
		{ "scope unknown key", "scopes:\n  - name: a\n    macth:\n"
		    "      origin: [s2s]\n", 3, "scope: unknown key \"macth\"" },
		{ "scope bad origin", "scopes:\n  - name: a\n    match:\n"
		    "      origin: [c2s, xmpp]\n", 4,
		    "origin: \"xmpp\" is not one of c2s|s2s|component|server" },
		{ "scope bad action", "scopes:\n  - name: a\n    match:\n"
		    "      origin: [c2s]\n    actions:\n      reject: lots\n", 6,
		    "reject: bad value \"lots\"" },
		{ "scope unknown filter", "scopes:\n  - name: a\n    match:\n"
		    "      origin: [c2s]\n    filters:\n      av: {}\n", 6,
		    "unknown filter \"av\"" },
		{ "scope not a mapping", "scopes:\n  - just-a-name\n", 2,
		    "each scope is a mapping" },
		{ "scopes not a list", "scopes:\n  name: a\n", 2,
		    "scopes: expected a list of scopes" },
		{ "YAML syntax", "daemon:\n  socket: [unclosed\nactions: {}\n", 3,
		    "" },
		{ "YAML tab indentation", "daemon:\n\tworkers: 2\n", 2, "" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		const char *err = load_err(t[i].yaml);
		char want[PATH_MAX + 32];

		snprintf(want, sizeof(want), "%s/xmilter.yml:%d: ", tmpdir,
		    t[i].line);
		cr_expect(strncmp(err, want, strlen(want)) == 0,
		    "%s: \"%s\", want the prefix \"%s\"", t[i].what, err, want);
		cr_expect(strstr(err, t[i].msg) != NULL, "%s: \"%s\", want \"%s\"",
		    t[i].what, err, t[i].msg);
	}
}

Test(config, missing_file)
{
	char err[512] = "", path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/nope.yml", tmpdir);
	cr_expect_null(xm_config_load(path, err, sizeof(err)));
	cr_expect(strstr(err, "nope.yml: No such file") != NULL, "%s", err);
}

/* A size or a duration that is not a number must be refused: NaN passes
 * both range comparisons, and (long long)NaN is undefined (on x86 it is
 * LLONG_MIN, which as a size_t limit means "no limit"). */
Test(config, nan_is_not_a_size)
{
	static const char *const t[] = {
		"limits:\n  max_stanza: nan\n",
		"limits:\n  max_stanza: NaN\n",
		"limits:\n  max_field_len: nank\n",
		"daemon:\n  max_frame: -nan\n",
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		char err[512] = "";
		struct xm_config *c = xm_config_load(write_file("xmilter.yml", t[i]),
		    err, sizeof(err));

		cr_expect_null(c, "accepted: %s(max_stanza %lld, max_field_len %lld, "
		    "max_frame %lld)", t[i], c ? c->limits.max_stanza : 0,
		    c ? c->limits.max_field_len : 0, c ? c->daemon.max_frame : 0);
		xm_config_free(c);
	}
}

/* ---- sizes and durations, through a table of our own ---- */

struct numconf {
	long long size;
	double dur;
	long long count;
	double score;
	long long opt_count;   /* INT, min -1 */
	long long opt_size;    /* SIZE, min -1 */
	double opt_dur;        /* DURATION, min -1 */
};

static const struct xm_setting num_settings[] = {
	{ "size", XM_ST_SIZE, offsetof(struct numconf, size), "1k", 0,
	    1024.0 * 1024 * 1024 * 4, NULL, true, "a size" },
	{ "dur", XM_ST_DURATION, offsetof(struct numconf, dur), "1s", 0, 86400 * 7,
	    NULL, true, "a duration" },
	{ "count", XM_ST_INT, offsetof(struct numconf, count), "3", 0, 100, NULL,
	    true, "a count" },
	{ "score", XM_ST_DOUBLE, offsetof(struct numconf, score), "none", -1, 100,
	    NULL, true, "a threshold" },
	{ "opt_count", XM_ST_INT, offsetof(struct numconf, opt_count), "5", -1, 100,
	    NULL, true, "a limit (-1: no limit)" },
	{ "opt_size", XM_ST_SIZE, offsetof(struct numconf, opt_size), "1k", -1,
	    1e9, NULL, true, "a size limit (-1: no limit)" },
	{ "opt_dur", XM_ST_DURATION, offsetof(struct numconf, opt_dur), "1s", -1,
	    1e6, NULL, true, "a time limit (-1: no limit)" },
	XM_SETTINGS_END
};

Test(config, sizes_and_durations_with_suffixes)
{
	static const struct { const char *name, *value; int rc; double want; } t[] = {
		{ "size", "0", 0, 0 },
		{ "size", "1000", 0, 1000 },
		{ "size", "1k", 0, 1024 },
		{ "size", "1K", 0, 1024 },
		{ "size", "1.5k", 0, 1536 },
		{ "size", "2M", 0, 2097152 },
		{ "size", "1G", 0, 1073741824 },
		{ "size", "4G", 0, 4294967296.0 },
		{ "size", "5G", -1, 0 },
		{ "size", "-1", -1, 0 },
		{ "size", "1m", -1, 0 },
		{ "size", "1MB", -1, 0 },
		{ "size", "1 k", -1, 0 },
		{ "size", "k", -1, 0 },
		{ "size", "", -1, 0 },
		{ "size", "lots", -1, 0 },
		{ "dur", "0", 0, 0 },
		{ "dur", "30", 0, 30 },
		{ "dur", "30s", 0, 30 },
		{ "dur", "250ms", 0, 0.25 },
		{ "dur", "1.5s", 0, 1.5 },
		{ "dur", "2m", 0, 120 },
		{ "dur", "1h", 0, 3600 },
		{ "dur", "1d", 0, 86400 },
		{ "dur", "7d", 0, 604800 },
		{ "dur", "8d", -1, 0 },
		{ "dur", "1w", -1, 0 },
		{ "dur", "1M", -1, 0 },
		{ "dur", "ms", -1, 0 },
		{ "dur", "-1s", -1, 0 },
		{ "count", "100", 0, 100 },
		{ "count", "101", -1, 0 },
		{ "count", "1k", -1, 0 },
		{ "score", "none", 0, -1 },
		{ "score", "0", 0, 0 },
		{ "score", "7.25", 0, 7.25 },
		{ "score", "-0.5", -1, 0 },
		{ "score", "100.5", -1, 0 },
		{ "score", "nan", -1, 0 },
		{ "opt_count", "-1", 0, -1 },
		{ "opt_count", "-2", -1, 0 },
		{ "score", "-1", 0, -1 },  /* -1 is none, like "none" */
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct numconf nc;
		char err[256] = "";
		int rc;
		double got;

		cr_assert_eq(xm_settings_defaults(num_settings, &nc, NULL, err,
		    sizeof(err)), 0);
		rc = xm_settings_set(num_settings, &nc, t[i].name, t[i].value, NULL,
		    err, sizeof(err));
		cr_expect_eq(rc, t[i].rc, "%s=\"%s\": rc %d (%s)", t[i].name,
		    t[i].value, rc, err);
		if (rc != 0 || t[i].rc != 0)
			continue;
		if (strcmp(t[i].name, "size") == 0)
			got = (double)nc.size;
		else if (strcmp(t[i].name, "dur") == 0)
			got = nc.dur;
		else if (strcmp(t[i].name, "score") == 0)
			got = nc.score;
		else if (strcmp(t[i].name, "count") == 0)
			got = (double)nc.count;
		else
			got = (double)nc.opt_count;
		cr_expect(fabs(got - t[i].want) < 1e-9, "%s=\"%s\": %g, want %g",
		    t[i].name, t[i].value, got, t[i].want);
	}
	{
		struct numconf nc;
		char err[256];

		xm_settings_defaults(num_settings, &nc, NULL, err, sizeof(err));
		cr_expect_eq(nc.size, 1024);
		cr_expect_eq(nc.dur, 1);
		cr_expect_eq(nc.count, 3);
		cr_expect_eq(nc.score, -1);
		cr_expect_eq(xm_settings_set(num_settings, &nc, "nope", "1", NULL,
		    err, sizeof(err)), -1);
		cr_expect_str_eq(err, "unknown setting \"nope\"");
	}
}

Test(config, nan_is_not_a_size_or_duration_in_a_table)
{
	static const char *const names[] = { "size", "dur", "opt_size", "opt_dur" };
	static const char *const values[] = { "nan", "NAN", "nank", "-nan" };
	size_t i, j;

	for (i = 0; i < XM_ARRAY_LEN(names); i++)
		for (j = 0; j < XM_ARRAY_LEN(values); j++) {
			struct numconf nc;
			char err[256];

			xm_settings_defaults(num_settings, &nc, NULL, err, sizeof(err));
			cr_expect_eq(xm_settings_set(num_settings, &nc, names[i],
			    values[j], NULL, err, sizeof(err)), -1, "%s=%s accepted",
			    names[i], values[j]);
		}
}

/* min -1 on a number means "-1 or none: no limit": the generated
 * reference says "none, 0 .. MAX" for every such row and the range error
 * says "or none", so the loader must take "none" for every numeric type
 * (it does only for XM_ST_DOUBLE), and -1 for a size as for an integer. */
Test(config, minus_one_means_no_limit_for_every_number_type)
{
	static const struct { const char *name, *value; } t[] = {
		{ "opt_count", "none" },
		{ "opt_size", "none" },
		{ "opt_size", "-1" },
		{ "opt_dur", "none" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct numconf nc;
		char err[256] = "";

		xm_settings_defaults(num_settings, &nc, NULL, err, sizeof(err));
		cr_expect_eq(xm_settings_set(num_settings, &nc, t[i].name, t[i].value,
		    NULL, err, sizeof(err)), 0, "%s=%s refused: %s", t[i].name,
		    t[i].value, err);
	}
}

/* ---- scopes ---- */

static const char scopes_yaml[] =
    "scopes:\n"
    "  - name: transports\n"
    "    match:\n"
    "      origin: [component]\n"
    "    actions:\n"
    "      quarantine: none\n"
    "      reject: 12\n"
    "    filters:\n"
    "      guard:\n"
    "        shadow: true\n"
    "  - name: partner\n"
    "    match:\n"
    "      from_domain: [partner.example]\n"
    "  - name: subdomains\n"
    "    match:\n"
    "      domain: ['*.example.org']\n"
    "  - name: inbound\n"
    "    match:\n"
    "      to_domain: [inbound.example, other.example]\n"
    "  - name: remote-peer\n"
    "    match:\n"
    "      origin: [s2s]\n"
    "      peer: [remote.example, '*.remote.example']\n"
    "  - name: never\n"
    "    match:\n"
    "      origin: [component]\n"
    "actions:\n"
    "  modify: 3\n"       /* after the scopes in the file: still inherited */
    "  reject_text: global text\n";

Test(config, scopes_first_match_wins)
{
	static const struct { const char *event, *scope; } t[] = {
		{ "origin=component\npeer=icq.example.org\n\n"
		    "<message from='1234@icq.example.org' to='a@partner.example'/>",
		    "transports" },
		{ "origin=c2s\n\n<message from='a@partner.example/x' to='b@y'/>",
		    "partner" },
		{ "origin=c2s\n\n<message from='A@PARTNER.Example/x' to='b@y'/>",
		    "partner" },
		{ "origin=c2s\nauth=a@partner.example\n\n<message to='b@y'/>",
		    "partner" },
		{ "origin=c2s\n\n<message from='b@y' to='a@partner.example'/>",
		    "global" },
		{ "origin=c2s\n\n<message from='a@example.org' to='b@y'/>",
		    "subdomains" },
		{ "origin=c2s\n\n<message from='a@x.example.org' to='b@y'/>",
		    "subdomains" },
		{ "origin=c2s\n\n<message from='a@y' to='b@a.b.example.org/r'/>",
		    "subdomains" },
		{ "origin=c2s\n\n<message from='a@badexample.org' to='b@y'/>",
		    "global" },
		{ "origin=c2s\n\n<message from='a@example.org.evil' to='b@y'/>",
		    "global" },
		{ "origin=c2s\n\n<message from='a@y' to='b@other.example'/>",
		    "inbound" },
		{ "origin=c2s\n\n<message from='inbound.example' to='b@y'/>",
		    "global" },
		{ "origin=s2s\npeer=remote.example\n\n<message from='a@z' to='b@y'/>",
		    "remote-peer" },
		{ "origin=s2s\npeer=eu.remote.example\n\n<message/>", "remote-peer" },
		{ "origin=c2s\npeer=remote.example\n\n<message/>", "global" },
		{ "origin=s2s\n\n<message/>", "global" },
		{ "<message/>", "global" },
	};
	struct xm_config *c = load_ok(scopes_yaml);
	size_t i;

	cr_assert_eq(c->nscopes, 6);
	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_arena *a = xm_arena_new();
		const struct xm_scope *sc = xm_config_scope(c, a, event(a, t[i].event));

		cr_expect_str_eq(sc->name, t[i].scope, "row %zu: %s", i, t[i].event);
		xm_arena_free(a);
	}
	xm_config_free(c);
}

Test(config, scopes_inherit_and_override)
{
	struct xm_config *c = load_ok(scopes_yaml);
	const struct xm_scope *tr = &c->scopes[0], *pa = &c->scopes[1];

	cr_expect_str_eq(tr->name, "transports");
	cr_expect_eq(tr->actions.quarantine, -1);
	cr_expect_eq(tr->actions.reject, 12);
	cr_expect_eq(tr->actions.modify, 3, "global actions set after the "
	    "scopes are inherited");
	cr_expect_str_eq(tr->actions.reject_text, "global text");
	cr_expect(filter_conf(tr, "guard")->shadow);
	cr_expect_not(filter_conf(&c->global, "guard")->shadow);
	cr_expect_not(filter_conf(pa, "guard")->shadow);
	cr_expect_eq(pa->actions.reject, 15);
	cr_expect_eq(pa->actions.quarantine, 10);
	cr_expect_eq(c->global.actions.reject, 15);
	cr_expect_eq(c->global.actions.modify, 3);
	/* deep copies: the strings are not shared */
	cr_expect_neq(tr->actions.reject_text, c->global.actions.reject_text);
	cr_assert_eq(tr->origins.n, 1);
	cr_expect_str_eq(tr->origins.v[0], "component");
	xm_config_free(c);
}

Test(config, scope_criteria_all_must_hold)
{
	struct xm_config *c = load_ok(
	    "scopes:\n"
	    "  - name: both\n"
	    "    match:\n"
	    "      origin: [s2s, component]\n"
	    "      from_domain: [a.example]\n"
	    "      to_domain: [b.example]\n");
	static const struct { const char *event, *scope; } t[] = {
		{ "origin=s2s\n\n<message from='x@a.example' to='y@b.example'/>",
		    "both" },
		{ "origin=component\n\n<message from='a.example' to='b.example'/>",
		    "both" },
		{ "origin=c2s\n\n<message from='x@a.example' to='y@b.example'/>",
		    "global" },
		{ "origin=s2s\n\n<message from='x@a.example' to='y@c.example'/>",
		    "global" },
		{ "origin=s2s\n\n<message from='x@c.example' to='y@b.example'/>",
		    "global" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_arena *a = xm_arena_new();

		cr_expect_str_eq(xm_config_scope(c, a, event(a, t[i].event))->name,
		    t[i].scope, "row %zu", i);
		xm_arena_free(a);
	}
	xm_config_free(c);
}

/* ---- reload ---- */

Test(config, reload_ok_only_for_reloadable_settings)
{
	static const struct { const char *yaml; int rc; const char *msg; } t[] = {
		{ "daemon:\n  socket: /run/x/y.sock\n", 0, NULL },
		{ "daemon:\n  socket: /run/x/other.sock\n", -1,
		    "daemon.socket changed; it takes effect only on restart" },
		{ "daemon:\n  socket: /run/x/y.sock\n  max_frame: 2M\n", -1,
		    "daemon.max_frame changed" },
		{ "daemon:\n  socket: /run/x/y.sock\n  workers: 3\n", -1,
		    "daemon.workers changed" },
		{ "daemon:\n  socket: /run/x/y.sock\n  socket_mode: \"0600\"\n", -1,
		    "daemon.socket_mode changed" },
		{ "daemon:\n  socket: /run/x/y.sock\n  log_level: debug\n"
		    "  kinds: [message]\n  log_verdicts: false\n", 0, NULL },
		/* the quarantine store is opened once: where it is needs a
		 * restart, how it is used does not */
		{ "daemon:\n  socket: /run/x/y.sock\n  quarantine_dir: /tmp/q2\n",
		    -1, "daemon.quarantine_dir changed" },
		{ "daemon:\n  socket: /run/x/y.sock\nquarantine:\n"
		    "  backend: postgresql\n", -1, "quarantine.backend changed" },
		{ "daemon:\n  socket: /run/x/y.sock\nquarantine:\n  expiry: 2d\n"
		    "  notice: both\n  notice_jid: admin@example.org\n", 0, NULL },
		{ "daemon:\n  socket: /run/x/y.sock\nactions:\n  reject: 3\n"
		    "limits:\n  max_depth: 4\nfilters:\n  guard:\n    enabled: no\n"
		    "scopes:\n  - name: s\n    match: {origin: [s2s]}\n", 0, NULL },
	};
	struct xm_config *old = load_ok("daemon:\n  socket: /run/x/y.sock\n");
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		struct xm_config *nw = load_ok(t[i].yaml);
		char err[256] = "";

		cr_expect_eq(xm_config_reload_ok(old, nw, err, sizeof(err)), t[i].rc,
		    "row %zu: %s", i, err);
		if (t[i].msg)
			cr_expect(strstr(err, t[i].msg) != NULL, "row %zu: %s", i, err);
		xm_config_free(nw);
	}
	xm_config_free(old);
}

/* ---- the shipped configuration ---- */

Test(config, shipped_configuration_loads_and_builds_a_chain)
{
	char path[PATH_MAX + 64], want[PATH_MAX + 64], err[1024] = "";
	struct xm_config *c;
	struct xm_chain *ch;
	const struct xm_strlist *files;

	snprintf(path, sizeof(path), "%s/etc/xmilter.yml", srcdir());
	c = xm_config_load(path, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	files = filter_conf(&c->global, "rules")->conf;
	cr_assert_eq(files->n, 2);
	snprintf(want, sizeof(want), "%s/etc/rules.d", srcdir());
	cr_expect_str_eq(files->v[0], want);
	snprintf(want, sizeof(want), "%s/etc/local.d", srcdir());
	cr_expect_str_eq(files->v[1], want);
	cr_expect_geq(c->nscopes, 1);
	cr_expect_str_eq(c->scopes[0].name, "legacy-transports");
	ch = xm_chain_new(c, err, sizeof(err));
	cr_expect_not_null(ch, "chain: %s", err);
	xm_chain_unref(ch);
}

Test(config, shipped_configuration_without_local_d)
{
	char cmd[3 * PATH_MAX], path[PATH_MAX + 64], err[1024] = "";
	struct xm_config *c;
	struct xm_chain *ch;
	struct stat st;

	/* a copy of etc/ with the rules but no local.d at all */
	snprintf(cmd, sizeof(cmd), "cp '%s/etc/xmilter.yml' '%s/' && "
	    "cp -r '%s/etc/rules.d' '%s/'", srcdir(), tmpdir, srcdir(), tmpdir);
	cr_assert_eq(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/local.d", tmpdir);
	cr_assert_neq(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/xmilter.yml", tmpdir);
	c = xm_config_load(path, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	ch = xm_chain_new(c, err, sizeof(err));
	cr_expect_not_null(ch, "chain without local.d: %s", err);
	xm_chain_unref(ch);
}

/* ---- the generated reference ---- */

Test(config, doc_names_every_section_and_setting)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	static const char *const want[] = {
		"# Configuration reference", "## daemon", "## actions", "## limits",
		"## filters", "## scopes", "`daemon.socket`", "`daemon.kinds`",
		"`actions.on_malformed`", "`limits.max_field_len`",
		"`filters.NAME.shadow`", "`match.to_domain`", "### filters.guard",
		"### filters.rules", "`filters.rules.files`",
	};
	size_t i;

	cr_assert_not_null(fp);
	xm_config_doc(fp);
	fclose(fp);
	for (i = 0; i < XM_ARRAY_LEN(want); i++)
		cr_expect_not_null(strstr(text, want[i]), "no %s", want[i]);
	free(text);
}
