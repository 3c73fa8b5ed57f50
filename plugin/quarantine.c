/*
 * quarantine.c - the quarantine store on SQLite or PostgreSQL; see
 * quarantine.h for the interface and docs/QUARANTINE.md for the table
 *
 * Both backends run the same statements through one small executor,
 * store_exec: SQL written with ? placeholders (rewritten to $1.. for
 * libpq), every parameter passed as text (NULL for SQL NULL), every
 * result row handed to a callback as text. SQLite runs in WAL mode with
 * synchronous=FULL, so a commit is on disk when the call returns: the
 * daemon sends a quarantine verdict only after that. State changes are
 * single conditional UPDATEs (WHERE state = ...), atomic on both
 * backends; the affected-row count says whether this caller won.
 *
 * Failure: every call returns -1 with a message; a lost PostgreSQL
 * connection is reset once before the statement is retried. A store is
 * used by several threads under its mutex.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "quarantine.h"

enum backend { B_SQLITE = 0, B_PG = 1 };

struct xm_qstore {
	enum backend b;
	pthread_mutex_t mu;
	sqlite3 *db;
	PGconn *pg;
	char *desc;
};

typedef void (*row_cb)(void *ctx, int ncols, const char *const *vals);

static const char *sqlite_schema =
    "CREATE TABLE IF NOT EXISTS quarantine ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time REAL NOT NULL, expires REAL NOT NULL, released REAL,"
    " score REAL NOT NULL, reason TEXT NOT NULL, symbols TEXT NOT NULL,"
    " sender TEXT NOT NULL, recipient TEXT NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'held' CHECK (state IN"
    "  ('held', 'releasing', 'released', 'deleted')),"
    " event TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS quarantine_expires ON quarantine (expires);";

static const char *pg_schema =
    "CREATE TABLE IF NOT EXISTS quarantine ("
    " id BIGSERIAL PRIMARY KEY,"
    " time DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL,"
    " released DOUBLE PRECISION,"
    " score DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL,"
    " symbols TEXT NOT NULL, sender TEXT NOT NULL, recipient TEXT NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'held' CHECK (state IN"
    "  ('held', 'releasing', 'released', 'deleted')),"
    " event TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS quarantine_expires ON quarantine (expires);";

#define COLS "id, time, expires, released, score, reason, symbols, sender, " \
    "recipient, state"

/* pg_sql - SQL with each ? turned into $N (heap) */
static char *
pg_sql(const char *sql)
{
	struct xm_buf b = { 0 };
	int n = 0;

	for (; *sql; sql++) {
		if (*sql == '?')
			xm_buf_printf(&b, "$%d", ++n);
		else
			xm_buf_append(&b, sql, 1);
	}
	xm_buf_append(&b, "", 1);
	return b.data;
}

/* pg_ready - the connection is up, or was reset successfully */
static int
pg_ready(struct xm_qstore *q, char *err, size_t errlen)
{
	if (PQstatus(q->pg) == CONNECTION_OK)
		return 0;
	PQreset(q->pg);
	if (PQstatus(q->pg) == CONNECTION_OK)
		return 0;
	snprintf(err, errlen, "postgresql: %s", PQerrorMessage(q->pg));
	return -1;
}

/* store_exec - run SQL with NP text parameters; rows to CB; the number of
 * rows changed (or returned), or -1 with ERR. Caller holds the mutex. */
static long long
store_exec(struct xm_qstore *q, const char *sql, int np,
    const char *const *params, row_cb cb, void *ctx, char *err, size_t errlen)
{
	long long rows = 0;
	int i, rc;

	if (q->b == B_SQLITE) {
		sqlite3_stmt *stmt;
		const char *vals[16];
		int nc;

		if (sqlite3_prepare_v2(q->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
			snprintf(err, errlen, "sqlite: %s", sqlite3_errmsg(q->db));
			return -1;
		}
		for (i = 0; i < np; i++)
			if (params[i] == NULL)
				sqlite3_bind_null(stmt, i + 1);
			else
				sqlite3_bind_text(stmt, i + 1, params[i], -1,
				    SQLITE_STATIC);
		nc = sqlite3_column_count(stmt);
		if (nc > (int)XM_ARRAY_LEN(vals))
			nc = (int)XM_ARRAY_LEN(vals);
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
			for (i = 0; i < nc; i++)
				vals[i] = (const char *)sqlite3_column_text(stmt, i);
			if (cb)
				cb(ctx, nc, vals);
			rows++;
		}
		if (rc != SQLITE_DONE) {
			snprintf(err, errlen, "sqlite: %s", sqlite3_errmsg(q->db));
			sqlite3_finalize(stmt);
			return -1;
		}
		sqlite3_finalize(stmt);
		if (nc == 0)
			rows = sqlite3_changes(q->db);
		return rows;
	} else {
		PGresult *res;
		char *psql;
		int r, nr, nc;

		if (pg_ready(q, err, errlen) < 0)
			return -1;
		psql = pg_sql(sql);
		res = PQexecParams(q->pg, psql, np, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_FATAL_ERROR &&
		    PQstatus(q->pg) != CONNECTION_OK) {  /* lost: once more */
			PQclear(res);
			if (pg_ready(q, err, errlen) < 0) {
				free(psql);
				return -1;
			}
			res = PQexecParams(q->pg, psql, np, NULL, params, NULL, NULL,
			    0);
		}
		free(psql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			const char *vals[16];

			nr = PQntuples(res);
			nc = PQnfields(res);
			if (nc > (int)XM_ARRAY_LEN(vals))
				nc = (int)XM_ARRAY_LEN(vals);
			for (r = 0; r < nr; r++) {
				for (i = 0; i < nc; i++)
					vals[i] = PQgetisnull(res, r, i) ? NULL :
					    PQgetvalue(res, r, i);
				if (cb)
					cb(ctx, nc, vals);
			}
			rows = nr;
		} else if (PQresultStatus(res) == PGRES_COMMAND_OK) {
			long long n;

			rows = xm_parse_ll(PQcmdTuples(res), 0, LLONG_MAX, &n) == 0 ?
			    n : 0;
		} else {
			snprintf(err, errlen, "postgresql: %s",
			    PQresultErrorMessage(res));
			rows = -1;
		}
		PQclear(res);
		return rows;
	}
}

/* xm_qstore_open - connect or open, create the table */
struct xm_qstore *
xm_qstore_open(const struct xm_config *cf, char *err, size_t errlen)
{
	const struct xm_quarantine_conf *qc = &cf->quarantine;
	struct xm_qstore *q = xm_calloc(1, sizeof(*q));

	pthread_mutex_init(&q->mu, NULL);
	q->b = qc->backend == 1 ? B_PG : B_SQLITE;
	if (q->b == B_SQLITE) {
		char *path, *emsg = NULL;

		if (qc->sqlite_path && *qc->sqlite_path)
			path = xm_strdup(qc->sqlite_path);
		else {
			const char *dir = cf->daemon.quarantine_dir;

			if (dir == NULL || *dir == '\0') {
				snprintf(err, errlen, "quarantine: neither "
				    "quarantine.sqlite_path nor daemon.quarantine_dir "
				    "is set");
				goto bad;
			}
			if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
				snprintf(err, errlen, "quarantine: mkdir %s: %s", dir,
				    strerror(errno));
				goto bad;
			}
			path = xm_printf("%s/quarantine.db", dir);
		}
		q->desc = xm_printf("sqlite %s", path);
		if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE |
		    SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
			snprintf(err, errlen, "quarantine: %s: %s", path,
			    q->db ? sqlite3_errmsg(q->db) : "cannot open");
			free(path);
			goto bad;
		}
		free(path);
		sqlite3_busy_timeout(q->db, 10000);
		if (sqlite3_exec(q->db, "PRAGMA journal_mode=WAL;"
		    "PRAGMA synchronous=FULL;", NULL, NULL, &emsg) != SQLITE_OK ||
		    sqlite3_exec(q->db, sqlite_schema, NULL, NULL, &emsg) !=
		    SQLITE_OK) {
			snprintf(err, errlen, "quarantine: %s: %s", q->desc,
			    emsg ? emsg : sqlite3_errmsg(q->db));
			sqlite3_free(emsg);
			goto bad;
		}
	} else {
		PGresult *res;

		if (qc->pg_conninfo == NULL || *qc->pg_conninfo == '\0') {
			snprintf(err, errlen, "quarantine: backend postgresql needs "
			    "quarantine.pg_conninfo");
			goto bad;
		}
		q->desc = xm_strdup("postgresql");
		q->pg = PQconnectdb(qc->pg_conninfo);
		if (PQstatus(q->pg) != CONNECTION_OK) {
			snprintf(err, errlen, "quarantine: postgresql: %s",
			    PQerrorMessage(q->pg));
			goto bad;
		}
		/* quiet the NOTICE "relation already exists, skipping" */
		res = PQexec(q->pg, "SET client_min_messages = warning");
		PQclear(res);
		res = PQexec(q->pg, pg_schema);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			snprintf(err, errlen, "quarantine: postgresql: %s",
			    PQresultErrorMessage(res));
			PQclear(res);
			goto bad;
		}
		PQclear(res);
	}
	return q;
bad:
	xm_qstore_close(q);
	return NULL;
}

/* xm_qstore_close - disconnect and free */
void
xm_qstore_close(struct xm_qstore *q)
{
	if (q == NULL)
		return;
	if (q->db)
		sqlite3_close(q->db);
	if (q->pg)
		PQfinish(q->pg);
	pthread_mutex_destroy(&q->mu);
	free(q->desc);
	free(q);
}

/* xm_qstore_describe - which store this is */
const char *
xm_qstore_describe(const struct xm_qstore *q)
{
	return q->desc;
}

/* num - a number as text into BUF */
static const char *
num(char *buf, size_t len, double v)
{
	snprintf(buf, len, "%.3f", v);
	return buf;
}

/* id_cb - the first column of the first row as a number */
static void
id_cb(void *ctx, int nc, const char *const *vals)
{
	long long *id = ctx;

	if (nc > 0 && vals[0] != NULL)
		xm_parse_ll(vals[0], 0, LLONG_MAX, id);
}

/* xm_qstore_add - INSERT ... RETURNING id */
int
xm_qstore_add(struct xm_qstore *q, const struct xm_qitem *it, long long *id,
    char *err, size_t errlen)
{
	char t[32], e[32], s[32];
	const char *p[8] = {
		num(t, sizeof(t), it->time), num(e, sizeof(e), it->expires),
		num(s, sizeof(s), it->score), it->reason ? it->reason : "",
		it->symbols ? it->symbols : "", it->sender ? it->sender : "",
		it->recipient ? it->recipient : "", it->event ? it->event : "",
	};
	long long rows;

	*id = 0;
	pthread_mutex_lock(&q->mu);
	rows = store_exec(q, "INSERT INTO quarantine (time, expires, score, "
	    "reason, symbols, sender, recipient, event, state) VALUES "
	    "(?, ?, ?, ?, ?, ?, ?, ?, 'held') RETURNING id", 8, p, id_cb, id,
	    err, errlen);
	pthread_mutex_unlock(&q->mu);
	if (rows < 0)
		return -1;
	if (rows != 1 || *id <= 0) {
		snprintf(err, errlen, "quarantine: the insert returned no id");
		return -1;
	}
	return 0;
}

/* dbl - text to double, 0 for NULL or junk */
static double
dbl(const char *s)
{
	double v;

	return s != NULL && xm_parse_double(s, &v) == 0 ? v : 0;
}

/* qdup - heap copy, NULL stays NULL */
static char *
qdup(const char *s)
{
	return s ? xm_strdup(s) : NULL;
}

/* fill - a row of COLS (and maybe event) into IT (heap strings) */
static void
fill(struct xm_qitem *it, int nc, const char *const *v)
{
	memset(it, 0, sizeof(*it));
	if (nc < 10)
		return;
	xm_parse_ll(v[0] ? v[0] : "0", 0, LLONG_MAX, &it->id);
	it->time = dbl(v[1]);
	it->expires = dbl(v[2]);
	it->released = dbl(v[3]);
	it->score = dbl(v[4]);
	it->reason = qdup(v[5] ? v[5] : "");
	it->symbols = qdup(v[6] ? v[6] : "");
	it->sender = qdup(v[7] ? v[7] : "");
	it->recipient = qdup(v[8] ? v[8] : "");
	it->state = qdup(v[9] ? v[9] : "");
	if (nc > 10)
		it->event = qdup(v[10] ? v[10] : "");
}

/* get_cb - one row into the item */
static void
get_cb(void *ctx, int nc, const char *const *vals)
{
	fill(ctx, nc, vals);
}

/* get_locked - xm_qstore_get with the mutex held */
static int
get_locked(struct xm_qstore *q, long long id, bool with_event,
    struct xm_qitem *out, char *err, size_t errlen)
{
	char ids[32];
	const char *p[1] = { ids };
	long long rows;

	snprintf(ids, sizeof(ids), "%lld", id);
	memset(out, 0, sizeof(*out));
	rows = store_exec(q, with_event ?
	    "SELECT " COLS ", event FROM quarantine WHERE id = ?" :
	    "SELECT " COLS " FROM quarantine WHERE id = ?", 1, p, get_cb, out,
	    err, errlen);
	if (rows < 0)
		return -1;
	if (rows == 0) {
		snprintf(err, errlen, "no quarantined item %lld", id);
		return XM_Q_REFUSED;
	}
	return XM_Q_OK;
}

/* xm_qstore_get - one item */
int
xm_qstore_get(struct xm_qstore *q, long long id, bool with_event,
    struct xm_qitem *out, char *err, size_t errlen)
{
	int rc;

	pthread_mutex_lock(&q->mu);
	rc = get_locked(q, id, with_event, out, err, errlen);
	pthread_mutex_unlock(&q->mu);
	return rc;
}

struct list_ctx {
	void (*cb)(void *ctx, const struct xm_qitem *it);
	void *ctx;
};

/* list_cb - each row to the caller's callback */
static void
list_cb(void *ctx, int nc, const char *const *vals)
{
	struct list_ctx *lc = ctx;
	struct xm_qitem it;

	fill(&it, nc, vals);
	lc->cb(lc->ctx, &it);
	xm_qitem_clear(&it);
}

/* xm_qstore_list - items oldest first */
int
xm_qstore_list(struct xm_qstore *q, const char *state, size_t limit,
    void (*cb)(void *ctx, const struct xm_qitem *it), void *ctx, char *err,
    size_t errlen)
{
	struct list_ctx lc = { cb, ctx };
	char lim[32];
	const char *p[2];
	long long rows;

	snprintf(lim, sizeof(lim), "%lld", limit ? (long long)limit : -1LL);
	if (q->b == B_PG && limit == 0)
		snprintf(lim, sizeof(lim), "ALL");
	pthread_mutex_lock(&q->mu);
	if (state != NULL) {
		p[0] = state;
		p[1] = lim;
		rows = store_exec(q, q->b == B_PG && limit == 0 ?
		    "SELECT " COLS " FROM quarantine WHERE state = ? ORDER BY id" :
		    "SELECT " COLS " FROM quarantine WHERE state = ? ORDER BY id "
		    "LIMIT ?", q->b == B_PG && limit == 0 ? 1 : 2, p, list_cb, &lc,
		    err, errlen);
	} else {
		p[0] = lim;
		rows = store_exec(q, q->b == B_PG && limit == 0 ?
		    "SELECT " COLS " FROM quarantine ORDER BY id" :
		    "SELECT " COLS " FROM quarantine ORDER BY id LIMIT ?",
		    q->b == B_PG && limit == 0 ? 0 : 1, p, list_cb, &lc, err,
		    errlen);
	}
	pthread_mutex_unlock(&q->mu);
	return rows < 0 ? -1 : 0;
}

/* refusal - why item ID did not change: it is missing or in another state */
static int
refusal(struct xm_qstore *q, long long id, const char *want, char *err,
    size_t errlen)
{
	struct xm_qitem it;
	char when[40] = "";
	int rc = get_locked(q, id, false, &it, err, errlen);

	if (rc != XM_Q_OK)
		return rc;
	if (it.released > 0) {
		char tb[40];

		snprintf(when, sizeof(when), " (since %s)",
		    xm_quarantine_time(it.released, tb, sizeof(tb)));
	}
	snprintf(err, errlen, "item %lld is %s%s, not %s", id, it.state, when,
	    want);
	xm_qitem_clear(&it);
	return XM_Q_REFUSED;
}

/* transition - UPDATE one item from state FROM (SQL condition) */
static int
transition(struct xm_qstore *q, long long id, const char *sql, int np,
    const char **p, const char *want, char *err, size_t errlen)
{
	long long rows;
	int rc;

	pthread_mutex_lock(&q->mu);
	rows = store_exec(q, sql, np, p, NULL, NULL, err, errlen);
	if (rows < 0)
		rc = -1;
	else if (rows == 0)
		rc = refusal(q, id, want, err, errlen);
	else
		rc = XM_Q_OK;
	pthread_mutex_unlock(&q->mu);
	return rc;
}

/* xm_qstore_claim - held -> releasing */
int
xm_qstore_claim(struct xm_qstore *q, long long id, double now, char *err,
    size_t errlen)
{
	char ids[32], t[32];
	const char *p[2] = { num(t, sizeof(t), now), ids };

	snprintf(ids, sizeof(ids), "%lld", id);
	return transition(q, id, "UPDATE quarantine SET state = 'releasing', "
	    "released = ? WHERE id = ? AND state = 'held'", 2, p, "held", err,
	    errlen);
}

/* xm_qstore_finish - releasing -> released */
int
xm_qstore_finish(struct xm_qstore *q, long long id, double now, char *err,
    size_t errlen)
{
	char ids[32], t[32];
	const char *p[2] = { num(t, sizeof(t), now), ids };

	snprintf(ids, sizeof(ids), "%lld", id);
	return transition(q, id, "UPDATE quarantine SET state = 'released', "
	    "released = ? WHERE id = ? AND state = 'releasing'", 2, p,
	    "releasing", err, errlen);
}

/* xm_qstore_unclaim - releasing -> held */
int
xm_qstore_unclaim(struct xm_qstore *q, long long id, char *err, size_t errlen)
{
	char ids[32];
	const char *p[1] = { ids };

	snprintf(ids, sizeof(ids), "%lld", id);
	return transition(q, id, "UPDATE quarantine SET state = 'held', "
	    "released = NULL WHERE id = ? AND state = 'releasing'", 1, p,
	    "releasing", err, errlen);
}

/* xm_qstore_delete - -> deleted, content erased */
int
xm_qstore_delete(struct xm_qstore *q, long long id, char *err, size_t errlen)
{
	char ids[32];
	const char *p[1] = { ids };

	snprintf(ids, sizeof(ids), "%lld", id);
	return transition(q, id, "UPDATE quarantine SET state = 'deleted', "
	    "event = '' WHERE id = ? AND state <> 'deleted'", 1, p,
	    "held, releasing or released", err, errlen);
}

/* xm_qstore_purge - DELETE the expired */
long long
xm_qstore_purge(struct xm_qstore *q, double now, char *err, size_t errlen)
{
	char t[32];
	const char *p[1] = { num(t, sizeof(t), now) };
	long long rows;

	pthread_mutex_lock(&q->mu);
	rows = store_exec(q, "DELETE FROM quarantine WHERE expires < ? AND "
	    "state <> 'releasing'", 1, p, NULL, NULL, err, errlen);
	pthread_mutex_unlock(&q->mu);
	return rows;
}

/* xm_quarantine_time - T as RFC 3339 UTC with milliseconds in BUF */
const char *
xm_quarantine_time(double t, char *buf, size_t len)
{
	time_t secs = (time_t)t;
	struct tm tm;
	char tmp[32];

	gmtime_r(&secs, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", tmp, (int)((t - (double)secs) * 1000) %
	    1000);
	return buf;
}

/* xm_qitem_clear - free the item's strings */
void
xm_qitem_clear(struct xm_qitem *it)
{
	free(it->reason);
	free(it->symbols);
	free(it->sender);
	free(it->recipient);
	free(it->state);
	free(it->event);
	memset(it, 0, sizeof(*it));
}

/* xm_quarantine_notice - fill the placeholders of a notice template */
char *
xm_quarantine_notice(const char *template, long long id, const char *from,
    const char *to, const char *reason)
{
	struct xm_buf b = { 0 };
	const char *p;
	char ids[32];

	snprintf(ids, sizeof(ids), "%lld", id);
	for (p = template; *p; p++) {
		const char *v = NULL;
		size_t skip = 0;

		if (strncmp(p, "{id}", 4) == 0)
			v = ids, skip = 4;
		else if (strncmp(p, "{from}", 6) == 0)
			v = from, skip = 6;
		else if (strncmp(p, "{to}", 4) == 0)
			v = to, skip = 4;
		else if (strncmp(p, "{reason}", 8) == 0)
			v = reason, skip = 8;
		if (skip) {
			xm_buf_puts(&b, v ? v : "");
			p += skip - 1;
		} else
			xm_buf_append(&b, p, 1);
	}
	xm_buf_append(&b, "", 1);
	for (p = b.data; *p; p++)
		if (*p == '\r' || *p == '\n')
			b.data[p - b.data] = ' ';
	return b.data;
}
