/*
 * archive_pg.c - the PostgreSQL archive sink (libpq), for clusters
 *
 * Several xmilterd instances (each with its own `archive.node`) write to
 * one table, xmilter_archive: the columns searches use, the JSON record as
 * text, indexes on time, sender, recipient and action, and a GIN index over
 * to_tsvector('simple', subject || body) for full-text search. The schema
 * is created on first connect under an advisory lock, so instances
 * starting together do not race. A batch is one transaction; a
 * best-effort batch without fsync commits with synchronous_commit off.
 * Records go in multi-row INSERTs: one round trip per batch.
 *
 * Interface: xm_archive_pg_ops (archive.h); the connection belongs to the
 * sink's writer thread (or to the command reading back).
 * Failure: a lost connection fails the batch and marks the sink down; the
 * writer reconnects after restart_delay (doubling to 30 s).
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "archive.h"

#define PG_LOCK_KEY "727001"  /* advisory lock for schema creation */

struct pg {
	PGconn *conn;
	bool prepared;
};

static const char pg_schema[] =
    "CREATE TABLE IF NOT EXISTS xmilter_archive ("
    " id BIGSERIAL PRIMARY KEY,"
    " t DOUBLE PRECISION NOT NULL,"
    " node TEXT, req BIGINT, kind TEXT, origin TEXT, peer TEXT,"
    " sender TEXT, recipient TEXT, sender_domain TEXT, recipient_domain TEXT,"
    " action TEXT, score DOUBLE PRECISION, scope TEXT, subject TEXT, body TEXT,"
    " record TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS xmilter_archive_t ON xmilter_archive(t);"
    "CREATE INDEX IF NOT EXISTS xmilter_archive_sender ON "
    " xmilter_archive(sender, t);"
    "CREATE INDEX IF NOT EXISTS xmilter_archive_recipient ON "
    " xmilter_archive(recipient, t);"
    "CREATE INDEX IF NOT EXISTS xmilter_archive_action ON "
    " xmilter_archive(action, t);"
    "CREATE INDEX IF NOT EXISTS xmilter_archive_fts ON xmilter_archive USING "
    " GIN (to_tsvector('simple', coalesce(subject, '') || ' ' || "
    " coalesce(body, '')));";

/* pg_err - the server's or libpq's message into ERR; -1 */
static int
pg_err(struct pg *p, PGresult *r, const char *what, char *err, size_t errlen)
{
	const char *m = r ? PQresultErrorMessage(r) : "";

	if (m == NULL || *m == '\0')
		m = p->conn ? PQerrorMessage(p->conn) : "not connected";
	snprintf(err, errlen, "%s: %.*s", what, (int)strcspn(m, "\n"), m);
	if (r)
		PQclear(r);
	return -1;
}

/* pg_ok - run SQL, true when it succeeded */
static int
pg_exec(struct pg *p, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(p->conn, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		return pg_err(p, r, "postgresql", err, errlen);
	PQclear(r);
	return 0;
}

/* pg_connect - connect, create the schema, prepare the insert */
static int
pg_connect(struct archive_sink *s, char *err, size_t errlen)
{
	struct pg *p = s->priv;

	if (p->conn && PQstatus(p->conn) == CONNECTION_OK && p->prepared)
		return 0;
	if (p->conn)
		PQfinish(p->conn);
	p->prepared = false;
	p->conn = PQconnectdb(s->conf->conninfo);
	if (PQstatus(p->conn) != CONNECTION_OK)
		return pg_err(p, NULL, "connect", err, errlen);
	if (s->readonly)
		return 0;
	if (pg_exec(p, "SET client_min_messages = warning", err, errlen) < 0 ||
	    pg_exec(p, "SELECT pg_advisory_lock(" PG_LOCK_KEY ")", err,
	    errlen) < 0)
		return -1;
	if (pg_exec(p, pg_schema, err, errlen) < 0) {
		PQclear(PQexec(p->conn, "SELECT pg_advisory_unlock(" PG_LOCK_KEY
		    ")"));
		return -1;
	}
	if (pg_exec(p, "SELECT pg_advisory_unlock(" PG_LOCK_KEY ")", err,
	    errlen) < 0)
		return -1;
	p->prepared = true;  /* the schema is there */
	return 0;
}

/* pg_open - the state; the CLI connects at once, the daemon's writer
 * thread connects itself (a database down at start is not fatal) */
static int
pg_open(struct archive_sink *s, char *err, size_t errlen)
{
	s->priv = xm_calloc(1, sizeof(struct pg));
	return s->readonly ? pg_connect(s, err, errlen) : 0;
}

/* pg_write - one transaction for the batch, one multi-row INSERT per up
 * to PG_ROWS records: a round trip per batch, not per record */
#define PG_ROWS 1024   /* 16 parameters each: far below libpq's 65535 */
static int
pg_write(struct archive_sink *s, struct xm_archive_item **items, size_t n,
    bool durable, size_t *done, char *err, size_t errlen)
{
	struct pg *p = s->priv;
	size_t i, j, base;

	*done = 0;
	if (pg_exec(p, "BEGIN", err, errlen) < 0)
		return -1;
	if (!durable && pg_exec(p, "SET LOCAL synchronous_commit = off", err,
	    errlen) < 0)
		goto fail;
	for (base = 0; base < n; base += PG_ROWS) {
		size_t rows = n - base < PG_ROWS ? n - base : PG_ROWS;
		const char **v = xm_calloc(rows * 16, sizeof(*v));
		char (*nums)[3][32] = xm_calloc(rows, sizeof(*nums));
		char **json = xm_calloc(rows, sizeof(*json));
		struct xm_buf sql = { 0 };
		PGresult *r;

		xm_buf_puts(&sql, "INSERT INTO xmilter_archive (t, node, req, kind, "
		    "origin, peer, sender, recipient, sender_domain, "
		    "recipient_domain, action, score, scope, subject, body, "
		    "record) VALUES ");
		for (i = 0; i < rows; i++) {
			const struct xm_archive_item *it = items[base + i];
			const char **row = v + i * 16;

			json[i] = xm_archive_encode(it);
			snprintf(nums[i][0], sizeof(nums[i][0]), "%.3f", it->time);
			snprintf(nums[i][1], sizeof(nums[i][1]), "%llu", it->id);
			snprintf(nums[i][2], sizeof(nums[i][2]), "%.10g", it->score);
			row[0] = nums[i][0];
			row[1] = it->node;
			row[2] = nums[i][1];
			row[3] = it->kind;
			row[4] = it->origin;
			row[5] = it->peer;
			row[6] = it->sender;
			row[7] = it->recipient;
			row[8] = it->sender_domain;
			row[9] = it->recipient_domain;
			row[10] = it->action;
			row[11] = nums[i][2];
			row[12] = it->scope;
			row[13] = it->subject;
			row[14] = it->body;
			row[15] = json[i];
			xm_buf_puts(&sql, i ? ",(" : "(");
			for (j = 0; j < 16; j++)
				xm_buf_printf(&sql, "%s$%zu%s", j ? "," : "",
				    i * 16 + j + 1, j == 0 ? "::float8" : j == 2 ?
				    "::bigint" : j == 11 ? "::float8" : "");
			xm_buf_puts(&sql, ")");
		}
		r = PQexecParams(p->conn, sql.data, (int)(rows * 16), NULL, v, NULL,
		    NULL, 0);
		for (i = 0; i < rows; i++)
			free(json[i]);
		free(json);
		free(nums);
		free(v);
		xm_buf_free(&sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			pg_err(p, r, "insert", err, errlen);
			goto fail;
		}
		PQclear(r);
	}
	if (pg_exec(p, "COMMIT", err, errlen) < 0)
		return -1;  /* COMMIT failed: the transaction is gone */
	*done = n;
	return 0;
fail:
	PQclear(PQexec(p->conn, "ROLLBACK"));
	return -1;
}

/* pg_purge - past retention and not held: deleted in one transaction */
static int
pg_purge(struct archive_sink *s, double now, bool dry, long long *count,
    char *err, size_t errlen)
{
	struct pg *p = s->priv;
	const struct xm_archive_sink_conf *k = s->conf;
	double m = k->retention, d;
	struct xm_buf ids = { 0 };
	char cut[32];
	const char *pv[1] = { cut };
	PGresult *r;
	size_t i;
	int rows, rc = 0;

	*count = 0;
	for (i = 0; i < k->retention_scopes.n; i++) {
		const char *eq = strchr(k->retention_scopes.v[i], '=');

		if (eq && xm_config_duration(eq + 1, &d) == 0 && (m < 0 || d < m))
			m = d;
	}
	if (m < 0)
		return 0;
	snprintf(cut, sizeof(cut), "%.3f", now - m);
	r = PQexecParams(p->conn, "SELECT id, t, sender, recipient, scope FROM "
	    "xmilter_archive WHERE t < $1", 1, NULL, pv, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		return pg_err(p, r, "purge", err, errlen);
	rows = PQntuples(r);
	for (i = 0; i < (size_t)rows; i++) {
		double t = strtod(PQgetvalue(r, (int)i, 1), NULL);
		const char *scope = PQgetisnull(r, (int)i, 4) ? NULL :
		    PQgetvalue(r, (int)i, 4);
		double ret = xm_archive_retention(k, scope);

		if (ret < 0 || t >= now - ret || xm_archive_held(s->aconf,
		    PQgetisnull(r, (int)i, 2) ? NULL : PQgetvalue(r, (int)i, 2),
		    PQgetisnull(r, (int)i, 3) ? NULL : PQgetvalue(r, (int)i, 3), t))
			continue;
		xm_buf_printf(&ids, "%s%s", ids.len ? "," : "",
		    PQgetvalue(r, (int)i, 0));
		(*count)++;
	}
	PQclear(r);
	if (!dry && ids.len > 0) {
		char *sql = xm_printf("DELETE FROM xmilter_archive WHERE id IN (%s)",
		    ids.data);

		rc = pg_exec(p, sql, err, errlen);
		free(sql);
	}
	xm_buf_free(&ids);
	return rc;
}

/* pg_search - SQL with parameters, oldest first */
static int
pg_search(struct archive_sink *s, const struct xm_archive_query *q,
    xm_archive_row_fn fn, void *arg, char *err, size_t errlen)
{
	struct pg *p = s->priv;
	struct xm_buf sql = { 0 };
	const char *v[8];
	char from[32], until[32];
	PGresult *r;
	int n = 0, i, rows;

	xm_buf_puts(&sql, "SELECT record FROM xmilter_archive WHERE true");
	if (q->from >= 0) {
		snprintf(from, sizeof(from), "%.3f", q->from);
		v[n++] = from;
		xm_buf_printf(&sql, " AND t >= $%d", n);
	}
	if (q->until >= 0) {
		snprintf(until, sizeof(until), "%.3f", q->until);
		v[n++] = until;
		xm_buf_printf(&sql, " AND t < $%d", n);
	}
	if (q->jid && strncmp(q->jid, "*@", 2) == 0) {
		v[n++] = q->jid + 2;
		xm_buf_printf(&sql, " AND (sender_domain = lower($%d) OR "
		    "recipient_domain = lower($%d))", n, n);
	} else if (q->jid) {
		v[n++] = q->jid;
		xm_buf_printf(&sql, " AND (sender = lower($%d) OR recipient = "
		    "lower($%d))", n, n);
	}
	if (q->action) {
		v[n++] = q->action;
		xm_buf_printf(&sql, " AND action = $%d", n);
	}
	if (q->text) {
		v[n++] = q->text;
		xm_buf_printf(&sql, " AND to_tsvector('simple', coalesce(subject, "
		    "'') || ' ' || coalesce(body, '')) @@ plainto_tsquery("
		    "'simple', $%d)", n);
	}
	if (q->match) {
		v[n++] = q->match;
		xm_buf_printf(&sql, " AND to_tsvector('simple', coalesce(subject, "
		    "'') || ' ' || coalesce(body, '')) @@ to_tsquery('simple', "
		    "$%d)", n);
	}
	xm_buf_puts(&sql, " ORDER BY t, id");
	if (q->limit > 0)
		xm_buf_printf(&sql, " LIMIT %lld", q->limit);
	r = PQexecParams(p->conn, sql.data, n, NULL, v, NULL, NULL, 0);
	xm_buf_free(&sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		return pg_err(p, r, "search", err, errlen);
	rows = PQntuples(r);
	for (i = 0; i < rows; i++)
		if (fn(arg, PQgetvalue(r, i, 0)) != 0)
			break;
	PQclear(r);
	return 0;
}

/* pg_close - disconnect */
static void
pg_close(struct archive_sink *s)
{
	struct pg *p = s->priv;

	if (p == NULL)
		return;
	if (p->conn)
		PQfinish(p->conn);
	free(p);
	s->priv = NULL;
}

const struct archive_sink_ops xm_archive_pg_ops = {
	pg_open, pg_connect, pg_write, pg_purge, pg_search, pg_close,
};
