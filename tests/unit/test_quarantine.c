/*
 * test_quarantine.c - unit tests of the quarantine store (plugin/quarantine.c)
 *
 * One table of steps (add, get, list, claim, finish, unclaim, delete,
 * purge) with the result and state each must give, run against SQLite in
 * a fresh temporary directory, and against a real PostgreSQL that the pg
 * suite starts itself: initdb into a temporary directory and postgres on
 * 127.0.0.1 at a free port, as the `postgres` user when we are root (the
 * server refuses root). Also: concurrent claims of one item from several
 * threads, each with its own connection, of which exactly one wins; ids
 * never reused after a purge; the notice template; the time format.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "config.h"
#include "quarantine.h"
#include "testlib.h"

#define EVENT "origin=c2s\nauth=alice@example.org\n\n" \
    "<message from='alice@example.org/pc' to='bob@example.org' type='chat' " \
    "id='q1'><body>XMILTER-TEST-QUARANTINE</body></message>"
#define NOW 1795341600.0   /* 2026-11-22T10:00:00Z */
#define DAY 86400.0

enum op { ADD, GET, CLAIM, FINISH, UNCLAIM, DELETE, PURGE, COUNT };

struct step {
	enum op op;
	long long id;        /* item (ADD: the id it must get, 0: any) */
	double t;            /* ADD: expiry offset; PURGE/CLAIM: the time */
	int rc;              /* XM_Q_OK / XM_Q_REFUSED; PURGE, COUNT: number */
	const char *state;   /* GET: state; COUNT: state to count (NULL: all) */
	const char *err;     /* substring of the refusal */
};

static const struct step steps[] = {
	{ ADD, 1, 30 * DAY, XM_Q_OK, NULL, NULL },
	{ ADD, 2, 30 * DAY, XM_Q_OK, NULL, NULL },
	{ GET, 1, 0, XM_Q_OK, "held", NULL },
	{ COUNT, 0, 0, 2, "held", NULL },
	{ GET, 99, 0, XM_Q_REFUSED, NULL, "no quarantined item 99" },
	/* the release of item 1: once, and only once */
	{ CLAIM, 1, NOW + 60, XM_Q_OK, NULL, NULL },
	{ GET, 1, 0, XM_Q_OK, "releasing", NULL },
	{ CLAIM, 1, NOW + 61, XM_Q_REFUSED, NULL, "item 1 is releasing" },
	{ FINISH, 1, NOW + 62, XM_Q_OK, NULL, NULL },
	{ GET, 1, 0, XM_Q_OK, "released", NULL },
	{ CLAIM, 1, NOW + 63, XM_Q_REFUSED, NULL, "item 1 is released (since "
	    "2026-11-22T10:01:02.000Z), not held" },
	{ FINISH, 1, NOW + 64, XM_Q_REFUSED, NULL, "not releasing" },
	{ UNCLAIM, 1, 0, XM_Q_REFUSED, NULL, "not releasing" },
	{ CLAIM, 99, NOW, XM_Q_REFUSED, NULL, "no quarantined item 99" },
	/* a release that found no glue goes back to held */
	{ UNCLAIM, 2, 0, XM_Q_REFUSED, NULL, "item 2 is held" },
	{ CLAIM, 2, NOW + 70, XM_Q_OK, NULL, NULL },
	{ UNCLAIM, 2, 0, XM_Q_OK, NULL, NULL },
	{ GET, 2, 0, XM_Q_OK, "held", NULL },
	{ COUNT, 0, 0, 1, "released", NULL },
	/* delete erases the content, once */
	{ DELETE, 2, 0, XM_Q_OK, NULL, NULL },
	{ GET, 2, 0, XM_Q_OK, "deleted", NULL },
	{ DELETE, 2, 0, XM_Q_REFUSED, NULL, "item 2 is deleted" },
	{ CLAIM, 2, NOW, XM_Q_REFUSED, NULL, "item 2 is deleted" },
	{ DELETE, 99, 0, XM_Q_REFUSED, NULL, "no quarantined item 99" },
	/* expiry: a releasing item outlives it, the rest goes */
	{ ADD, 3, 1 * DAY, XM_Q_OK, NULL, NULL },
	{ ADD, 4, 90 * DAY, XM_Q_OK, NULL, NULL },
	{ CLAIM, 3, NOW, XM_Q_OK, NULL, NULL },
	{ PURGE, 0, NOW + 2 * DAY, 0, NULL, NULL },
	{ COUNT, 0, 0, 4, NULL, NULL },
	{ PURGE, 0, NOW + 31 * DAY, 2, NULL, NULL },
	{ GET, 1, 0, XM_Q_REFUSED, NULL, "no quarantined item 1" },
	{ GET, 3, 0, XM_Q_OK, "releasing", NULL },
	{ GET, 4, 0, XM_Q_OK, "held", NULL },
	{ COUNT, 0, 0, 2, NULL, NULL },
	/* ids are never reused, even after the newest was purged */
	{ DELETE, 4, 0, XM_Q_OK, NULL, NULL },
	{ PURGE, 0, NOW + 91 * DAY, 1, NULL, NULL },
	{ ADD, 5, 30 * DAY, XM_Q_OK, NULL, NULL },
};

/* count_cb - count listed items */
static void
count_cb(void *ctx, const struct xm_qitem *it)
{
	(*(long long *)ctx)++;
	cr_assert_null(it->event, "list does not carry the event");
}

/* run_steps - the table against the store CF names */
static void
run_steps(const struct xm_config *cf)
{
	struct xm_qstore *q;
	struct xm_qitem it;
	char err[512];
	size_t i;

	q = xm_qstore_open(cf, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	for (i = 0; i < XM_ARRAY_LEN(steps); i++) {
		const struct step *s = &steps[i];
		long long id = 0, n = 0;
		int rc = -2;

		err[0] = '\0';
		switch (s->op) {
		case ADD:
			it = (struct xm_qitem){ .time = NOW, .expires = NOW + s->t,
			    .score = 12, .reason = "XM_TEST_QUARANTINE",
			    .symbols = "XM_TEST_QUARANTINE 12.00",
			    .sender = "alice@example.org/pc",
			    .recipient = "bob@example.org", .event = EVENT };
			rc = xm_qstore_add(q, &it, &id, err, sizeof(err));
			if (s->id)
				cr_assert_eq(id, s->id, "step %zu: id %lld", i, id);
			break;
		case GET:
			rc = xm_qstore_get(q, s->id, true, &it, err, sizeof(err));
			if (rc == XM_Q_OK) {
				cr_assert_str_eq(it.state, s->state, "step %zu", i);
				cr_assert_str_eq(it.event, strcmp(s->state, "deleted") ?
				    EVENT : "", "step %zu", i);
				cr_assert_str_eq(it.reason, "XM_TEST_QUARANTINE");
				cr_assert_str_eq(it.recipient, "bob@example.org");
				cr_assert_float_eq(it.score, 12, 1e-9);
				cr_assert_float_eq(it.time, NOW, 1e-3);
				if (*it.event) {  /* what is stored is a valid event */
					struct xm_arena *a = xm_arena_new();

					cr_assert_str_eq(event(a, it.event)->to,
					    "bob@example.org");
					xm_arena_free(a);
				}
				xm_qitem_clear(&it);
			}
			break;
		case CLAIM:
			rc = xm_qstore_claim(q, s->id, s->t, err, sizeof(err));
			break;
		case FINISH:
			rc = xm_qstore_finish(q, s->id, s->t, err, sizeof(err));
			break;
		case UNCLAIM:
			rc = xm_qstore_unclaim(q, s->id, err, sizeof(err));
			break;
		case DELETE:
			rc = xm_qstore_delete(q, s->id, err, sizeof(err));
			break;
		case PURGE:
			n = xm_qstore_purge(q, s->t, err, sizeof(err));
			cr_assert_eq(n, s->rc, "step %zu: purged %lld (%s)", i, n,
			    err);
			continue;
		case COUNT:
			cr_assert_eq(xm_qstore_list(q, s->state, 0, count_cb, &n,
			    err, sizeof(err)), 0, "%s", err);
			cr_assert_eq(n, s->rc, "step %zu: %lld listed", i, n);
			continue;
		}
		cr_assert_eq(rc, s->rc, "step %zu: rc %d (%s)", i, rc, err);
		if (s->err)
			cr_assert(strstr(err, s->err) != NULL, "step %zu: \"%s\" "
			    "lacks \"%s\"", i, err, s->err);
	}
	xm_qstore_close(q);
}

struct racer {
	const struct xm_config *cf;
	long long id;
	int rc;
};

/* race - open an own connection, claim the item */
static void *
race(void *arg)
{
	struct racer *r = arg;
	struct xm_qstore *q;
	char err[512];

	q = xm_qstore_open(r->cf, err, sizeof(err));
	if (q == NULL) {
		r->rc = -1;
		return NULL;
	}
	r->rc = xm_qstore_claim(q, r->id, NOW, err, sizeof(err));
	xm_qstore_close(q);
	return NULL;
}

/* run_race - eight threads claim one item: exactly one wins */
static void
run_race(const struct xm_config *cf)
{
	struct racer r[8];
	pthread_t th[8];
	struct xm_qstore *q;
	struct xm_qitem it = { .time = NOW, .expires = NOW + DAY, .score = 12,
	    .reason = "R", .symbols = "R 12.00", .sender = "a@example.org",
	    .recipient = "b@example.org", .event = EVENT };
	char err[512];
	long long id;
	int i, won = 0, lost = 0;

	q = xm_qstore_open(cf, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(xm_qstore_add(q, &it, &id, err, sizeof(err)), 0, "%s", err);
	for (i = 0; i < 8; i++) {
		r[i] = (struct racer){ cf, id, -2 };
		cr_assert_eq(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		won += r[i].rc == XM_Q_OK;
		lost += r[i].rc == XM_Q_REFUSED;
	}
	cr_assert_eq(won, 1, "%d claims won", won);
	cr_assert_eq(lost, 7, "%d claims refused", lost);
	xm_qstore_close(q);
}

/* sqlite_conf - defaults, the store in the test's directory */
static struct xm_config *
sqlite_conf(void)
{
	struct xm_config *cf = xm_config_load(NULL, NULL, 0);
	char err[256], set[2 * PATH_MAX];

	snprintf(set, sizeof(set), "daemon.quarantine_dir=%s/q", tmpdir);
	cr_assert_eq(xm_config_override(cf, set, err, sizeof(err)), 0, "%s", err);
	return cf;
}

TestSuite(quarantine, .init = mk_tmpdir, .fini = rm_tmpdir);

Test(quarantine, sqlite_steps)
{
	struct xm_config *cf = sqlite_conf();
	struct stat sb;
	char path[PATH_MAX + 32];

	run_steps(cf);
	snprintf(path, sizeof(path), "%s/q/quarantine.db", tmpdir);
	cr_assert_eq(stat(path, &sb), 0, "the store lives in quarantine_dir");
	xm_config_free(cf);
}

Test(quarantine, sqlite_race)
{
	struct xm_config *cf = sqlite_conf();

	run_race(cf);
	xm_config_free(cf);
}

Test(quarantine, sqlite_path_setting)
{
	struct xm_config *cf = xm_config_load(NULL, NULL, 0);
	struct xm_qstore *q;
	char err[256], set[2 * PATH_MAX], path[PATH_MAX + 16];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/other.db", tmpdir);
	snprintf(set, sizeof(set), "quarantine.sqlite_path=%s", path);
	cr_assert_eq(xm_config_override(cf, set, err, sizeof(err)), 0, "%s", err);
	q = xm_qstore_open(cf, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert(strstr(xm_qstore_describe(q), "other.db") != NULL);
	xm_qstore_close(q);
	xm_config_free(cf);
}

Test(quarantine, open_errors)
{
	static const struct { const char *set, *err; } cases[] = {
		{ "quarantine.sqlite_path=/nonexistent/dir/q.db", "/nonexistent" },
		{ "quarantine.backend=postgresql", "needs quarantine.pg_conninfo" },
		{ "daemon.quarantine_dir=", "neither" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(cases); i++) {
		struct xm_config *cf = xm_config_load(NULL, NULL, 0);
		char err[512];

		cr_assert_eq(xm_config_override(cf, cases[i].set, err,
		    sizeof(err)), 0, "%s", err);
		cr_assert_null(xm_qstore_open(cf, err, sizeof(err)), "%s",
		    cases[i].set);
		cr_assert(strstr(err, cases[i].err) != NULL, "%s: %s",
		    cases[i].set, err);
		xm_config_free(cf);
	}
}

Test(quarantine, config_section)
{
	static const struct {
		const char *yaml;
		int backend, notice;
		double expiry, purge;
		const char *sqlite_path, *err;
	} cases[] = {
		{ "", 0, 0, 30 * DAY, 3600, "", NULL },
		{ "quarantine:\n  backend: postgresql\n  pg_conninfo: \"host=x\"\n"
		  "  expiry: 7d\n  purge_interval: 10m\n  notice: both\n"
		  "  notice_jid: admin@example.org\n", 1, 3, 7 * DAY, 600, "",
		  NULL },
		{ "quarantine:\n  sqlite_path: q/store.db\n  notice: admin\n", 0, 2,
		  30 * DAY, 3600, "/q/store.db", NULL },
		{ "quarantine:\n  expiry: 10s\n", 0, 0, 0, 0, NULL, ":2: expiry" },
		{ "quarantine:\n  notice: everyone\n", 0, 0, 0, 0, NULL,
		  ":2: notice" },
		{ "quarantine:\n  colour: red\n", 0, 0, 0, 0, NULL,
		  ":2: quarantine: unknown setting \"colour\"" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(cases); i++) {
		char path[PATH_MAX + 16], err[512] = "";
		struct xm_config *cf;
		FILE *fp;

		snprintf(path, sizeof(path), "%s/x.yml", tmpdir);
		cr_assert_not_null(fp = fopen(path, "w"));
		fputs(cases[i].yaml, fp);
		fclose(fp);
		cf = xm_config_load(path, err, sizeof(err));
		if (cases[i].err) {
			cr_assert_null(cf, "case %zu loads", i);
			cr_assert(strstr(err, cases[i].err) != NULL, "case %zu: %s",
			    i, err);
			continue;
		}
		cr_assert_not_null(cf, "case %zu: %s", i, err);
		cr_expect_eq(cf->quarantine.backend, cases[i].backend, "case %zu", i);
		cr_expect_eq(cf->quarantine.notice, cases[i].notice, "case %zu", i);
		cr_expect_float_eq(cf->quarantine.expiry, cases[i].expiry, 1e-6);
		cr_expect_float_eq(cf->quarantine.purge_interval, cases[i].purge,
		    1e-6);
		if (*cases[i].sqlite_path)  /* relative to the file's directory */
			cr_expect(strstr(cf->quarantine.sqlite_path, tmpdir) &&
			    strstr(cf->quarantine.sqlite_path,
			    cases[i].sqlite_path), "%s", cf->quarantine.sqlite_path);
		else
			cr_expect_str_eq(cf->quarantine.sqlite_path, "");
		xm_config_free(cf);
	}
}

Test(quarantine, notice_template)
{
	static const struct { const char *tpl, *want; } cases[] = {
		{ "item {id} from {from} to {to}: {reason}",
		  "item 42 from a@x/pc to b@y: RULE" },
		{ "{id}{id}", "4242" },
		{ "no placeholders", "no placeholders" },
		{ "{unknown} {id", "{unknown} {id" },
		{ "line\nbreak {from}", "line break a@x/pc" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(cases); i++) {
		char *s = xm_quarantine_notice(cases[i].tpl, 42, "a@x/pc", "b@y",
		    "RULE");

		cr_assert_str_eq(s, cases[i].want);
		free(s);
	}
}

Test(quarantine, time_format)
{
	char buf[40];

	cr_assert_str_eq(xm_quarantine_time(NOW + 0.25, buf, sizeof(buf)),
	    "2026-11-22T10:00:00.250Z");
}

/* ---- PostgreSQL ---- */

static char pgdir[2 * PATH_MAX], pgbin[PATH_MAX];
static int pgport;

/* sh - run CMD through the shell; its exit status */
static int
sh(const char *cmd)
{
	int rc = system(cmd);

	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* pg_start - initdb and a postgres of our own on 127.0.0.1:pgport */
static void
pg_start(void)
{
	static const char *dirs[] = {
		"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
		"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/14/bin",
		"/usr/lib/postgresql/13/bin",
	};
	char cmd[8 * PATH_MAX], as[64] = "";
	size_t i;

	mk_tmpdir();
	for (i = 0; i < XM_ARRAY_LEN(dirs) && pgbin[0] == '\0'; i++) {
		snprintf(cmd, sizeof(cmd), "%s/initdb", dirs[i]);
		if (access(cmd, X_OK) == 0)
			snprintf(pgbin, sizeof(pgbin), "%s", dirs[i]);
	}
	cr_assert(pgbin[0] != '\0', "no PostgreSQL server binaries (Debian "
	    "package postgresql)");
	snprintf(pgdir, sizeof(pgdir), "%s/pg", tmpdir);
	cr_assert_eq(mkdir(pgdir, 0700), 0);
	if (geteuid() == 0) {  /* the server refuses root */
		struct passwd *pw = getpwnam("postgres");

		cr_assert_not_null(pw, "no postgres user to run the server as");
		cr_assert_eq(chmod(tmpdir, 0755), 0);
		cr_assert_eq(chown(pgdir, pw->pw_uid, pw->pw_gid), 0);
		snprintf(as, sizeof(as), "runuser -u postgres -- ");
	}
	snprintf(cmd, sizeof(cmd), "%s%s/initdb -D %s/data -A trust -U xmtest "
	    "> %s/initdb.log 2>&1", as, pgbin, pgdir, pgdir);
	cr_assert_eq(sh(cmd), 0, "initdb failed (see %s/initdb.log)", pgdir);
	/* a port free when probed may be taken before the server binds it
	 * (any process's connect or bind to port 0): then another one */
	for (i = 0; i < 5; i++) {
		pgport = free_port();
		snprintf(cmd, sizeof(cmd), "%s%s/pg_ctl -D %s/data -l "
		    "%s/server.log -w -t 60 -o \"-k %s -c "
		    "listen_addresses=127.0.0.1 -p %d -c fsync=on\" start "
		    "> /dev/null 2>&1", as, pgbin, pgdir, pgdir, pgdir, pgport);
		if (sh(cmd) == 0)
			return;
		snprintf(cmd, sizeof(cmd), "grep -q 'already in use' "
		    "%s/server.log", pgdir);
		if (sh(cmd) != 0)
			break;           /* another reason: see the log */
	}
	cr_assert_fail("postgres did not start (see %s/server.log)", pgdir);
}

/* pg_stop - stop our postgres, remove its directory */
static void
pg_stop(void)
{
	char cmd[8 * PATH_MAX];

	snprintf(cmd, sizeof(cmd), "%s%s/pg_ctl -D %s/data -m immediate -w stop "
	    "> /dev/null 2>&1", geteuid() == 0 ? "runuser -u postgres -- " : "",
	    pgbin, pgdir);
	if (sh(cmd) != 0)
		fprintf(stderr, "pg_ctl stop failed\n");
	rm_tmpdir();
}

/* pg_conf - backend postgresql on our server */
static struct xm_config *
pg_conf(void)
{
	struct xm_config *cf = xm_config_load(NULL, NULL, 0);
	char err[256], set[256];

	cr_assert_eq(xm_config_override(cf, "quarantine.backend=postgresql",
	    err, sizeof(err)), 0, "%s", err);
	snprintf(set, sizeof(set), "quarantine.pg_conninfo=host=127.0.0.1 "
	    "port=%d dbname=postgres user=xmtest connect_timeout=10", pgport);
	cr_assert_eq(xm_config_override(cf, set, err, sizeof(err)), 0, "%s", err);
	return cf;
}

TestSuite(pg, .init = pg_start, .fini = pg_stop, .timeout = 120);

Test(pg, steps_and_race)
{
	struct xm_config *cf = pg_conf();

	run_steps(cf);
	run_race(cf);
	xm_config_free(cf);
}

Test(quarantine, pg_unreachable)
{
	struct xm_config *cf = xm_config_load(NULL, NULL, 0);
	char err[512], set[256];

	cr_assert_eq(xm_config_override(cf, "quarantine.backend=postgresql",
	    err, sizeof(err)), 0, "%s", err);
	snprintf(set, sizeof(set), "quarantine.pg_conninfo=host=127.0.0.1 "
	    "port=%d dbname=postgres user=xmtest connect_timeout=5",
	    free_port());
	cr_assert_eq(xm_config_override(cf, set, err, sizeof(err)), 0, "%s", err);
	cr_assert_null(xm_qstore_open(cf, err, sizeof(err)));
	cr_assert(strstr(err, "postgresql:") != NULL, "%s", err);
	xm_config_free(cf);
}
