/*
 * archive_sqlite.c - the SQLite archive sink (the default)
 *
 * One table `records` (a row per record: the columns searches use, and the
 * whole JSON record), indexed by time, sender, recipient and action, and
 * an FTS5 table over subject and body kept in step by triggers. WAL
 * journal, so `xmilter archive search` reads while the daemon writes; a
 * batch is one transaction, committed with synchronous=FULL when it must
 * be durable (must-archive, or fsync: true).
 *
 * Interface: xm_archive_sqlite_ops (archive.h). The database handle is
 * used by one thread at a time (the writer, or the command).
 * Failure: every SQLite error is returned with its message; a failed
 * batch is rolled back whole, so a record is in or out, never half.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "archive.h"

struct sq {
	sqlite3 *db;
	sqlite3_stmt *ins;
	int sync;   /* 0 unknown, 1 NORMAL, 2 FULL */
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS records ("
    " id INTEGER PRIMARY KEY,"
    " t REAL NOT NULL,"
    " node TEXT, req INTEGER, kind TEXT, origin TEXT, peer TEXT,"
    " sender TEXT, recipient TEXT, sender_domain TEXT, recipient_domain TEXT,"
    " action TEXT, score REAL, scope TEXT, subject TEXT, body TEXT,"
    " record TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS records_t ON records(t);"
    "CREATE INDEX IF NOT EXISTS records_sender ON records(sender, t);"
    "CREATE INDEX IF NOT EXISTS records_recipient ON records(recipient, t);"
    "CREATE INDEX IF NOT EXISTS records_action ON records(action, t);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5("
    " subject, body, content='records', content_rowid='id');"
    "CREATE TRIGGER IF NOT EXISTS records_ai AFTER INSERT ON records BEGIN"
    " INSERT INTO records_fts(rowid, subject, body)"
    " VALUES (new.id, new.subject, new.body); END;"
    "CREATE TRIGGER IF NOT EXISTS records_ad AFTER DELETE ON records BEGIN"
    " INSERT INTO records_fts(records_fts, rowid, subject, body)"
    " VALUES ('delete', old.id, old.subject, old.body); END;";

/* sq_err - "what: sqlite's message" into ERR; -1 */
static int
sq_err(struct sq *q, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: %s", what, q->db ? sqlite3_errmsg(q->db) :
	    "no database");
	return -1;
}

/* sq_global - before SQLite's first use in the process: no memory
 * statistics, so that its every malloc and free takes no global mutex
 * (a no-op, SQLITE_MISUSE, when SQLite is initialised already) */
static void
sq_global(void)
{
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* sq_open - open (creating) the file and the schema */
static int
sq_open(struct archive_sink *s, char *err, size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct sq *q = xm_calloc(1, sizeof(*q));
	char *msg = NULL;

	pthread_once(&once, sq_global);
	s->priv = q;
	if (sqlite3_open_v2(s->conf->path, &q->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		return sq_err(q, s->conf->path, err, errlen);
	sqlite3_busy_timeout(q->db, 10000);
	/* a page cache that holds the indexes' hot pages (16 MiB): fewer
	 * read() calls per insert */
	(void)sqlite3_exec(q->db, "PRAGMA cache_size=-16384", NULL, NULL, NULL);
	if (sqlite3_exec(q->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "%s: schema: %s", s->conf->path,
		    msg ? msg : "?");
		sqlite3_free(msg);
		return -1;
	}
	if (sqlite3_prepare_v2(q->db, "INSERT INTO records (t, node, req, kind, "
	    "origin, peer, sender, recipient, sender_domain, recipient_domain, "
	    "action, score, scope, subject, body, record) VALUES (?,?,?,?,?,?,?,"
	    "?,?,?,?,?,?,?,?,?)", -1, &q->ins, NULL) != SQLITE_OK)
		return sq_err(q, "prepare", err, errlen);
	return 0;
}

/* sq_connect - nothing to connect: the file is open */
static int
sq_connect(struct archive_sink *s, char *err, size_t errlen)
{
	struct sq *q = s->priv;

	return q->db != NULL && q->ins != NULL ? 0 : sq_err(q, "closed", err,
	    errlen);
}

/* bind_text - bind S (NULL as NULL) */
static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* sq_exec - one statement without results */
static int
sq_exec(struct sq *q, const char *sql, char *err, size_t errlen)
{
	if (sqlite3_exec(q->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sq_err(q, sql, err, errlen);
	return 0;
}

/* sq_write - one transaction for the batch */
static int
sq_write(struct archive_sink *s, struct xm_archive_item **items, size_t n,
    bool durable, size_t *done, char *err, size_t errlen)
{
	struct sq *q = s->priv;
	size_t i;

	*done = 0;
	if (q->sync != (durable ? 2 : 1)) {
		if (sq_exec(q, durable ? "PRAGMA synchronous=FULL" :
		    "PRAGMA synchronous=NORMAL", err, errlen) < 0)
			return -1;
		q->sync = durable ? 2 : 1;
	}
	if (sq_exec(q, "BEGIN IMMEDIATE", err, errlen) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		const struct xm_archive_item *it = items[i];
		char *json = xm_archive_encode(it);
		int rc;

		sqlite3_bind_double(q->ins, 1, it->time);
		bind_text(q->ins, 2, it->node);
		sqlite3_bind_int64(q->ins, 3, (sqlite3_int64)it->id);
		bind_text(q->ins, 4, it->kind);
		bind_text(q->ins, 5, it->origin);
		bind_text(q->ins, 6, it->peer);
		bind_text(q->ins, 7, it->sender);
		bind_text(q->ins, 8, it->recipient);
		bind_text(q->ins, 9, it->sender_domain);
		bind_text(q->ins, 10, it->recipient_domain);
		bind_text(q->ins, 11, it->action);
		sqlite3_bind_double(q->ins, 12, it->score);
		bind_text(q->ins, 13, it->scope);
		bind_text(q->ins, 14, it->subject);
		bind_text(q->ins, 15, it->body);
		bind_text(q->ins, 16, json);
		rc = sqlite3_step(q->ins);
		sqlite3_reset(q->ins);
		sqlite3_clear_bindings(q->ins);
		free(json);
		if (rc != SQLITE_DONE) {
			sq_err(q, "insert", err, errlen);
			sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
	}
	if (sq_exec(q, "COMMIT", err, errlen) < 0) {
		sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	*done = n;
	return 0;
}

/* min_retention - the shortest retention of K, -1 when none */
static double
min_retention(const struct xm_archive_sink_conf *k)
{
	double m = k->retention, d;
	size_t i;

	for (i = 0; i < k->retention_scopes.n; i++) {
		const char *eq = strchr(k->retention_scopes.v[i], '=');

		if (eq && xm_config_duration(eq + 1, &d) == 0 && (m < 0 || d < m))
			m = d;
	}
	return m;
}

/* sq_purge - delete what is past its scope's retention and not held */
static int
sq_purge(struct archive_sink *s, double now, bool dry, long long *count,
    char *err, size_t errlen)
{
	struct sq *q = s->priv;
	double m = min_retention(s->conf);
	sqlite3_stmt *sel = NULL, *del = NULL;
	int rc;

	*count = 0;
	if (m < 0)
		return 0;
	if (sqlite3_prepare_v2(q->db, "SELECT id, t, sender, recipient, scope "
	    "FROM records WHERE t < ? ORDER BY t", -1, &sel, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(q->db, "DELETE FROM records WHERE id = ?", -1,
	    &del, NULL) != SQLITE_OK) {
		sqlite3_finalize(sel);
		return sq_err(q, "purge", err, errlen);
	}
	if (!dry && sq_exec(q, "BEGIN IMMEDIATE", err, errlen) < 0)
		goto fail;
	sqlite3_bind_double(sel, 1, now - m);
	while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
		double t = sqlite3_column_double(sel, 1);
		const char *scope = (const char *)sqlite3_column_text(sel, 4);
		double r = xm_archive_retention(s->conf, scope);

		if (r < 0 || t >= now - r || xm_archive_held(s->aconf,
		    (const char *)sqlite3_column_text(sel, 2),
		    (const char *)sqlite3_column_text(sel, 3), t))
			continue;
		(*count)++;
		if (dry)
			continue;
		sqlite3_bind_int64(del, 1, sqlite3_column_int64(sel, 0));
		if (sqlite3_step(del) != SQLITE_DONE) {
			sq_err(q, "purge delete", err, errlen);
			sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
			goto fail;
		}
		sqlite3_reset(del);
	}
	if (rc != SQLITE_DONE) {
		sq_err(q, "purge select", err, errlen);
		if (!dry)
			sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
		goto fail;
	}
	sqlite3_finalize(sel);
	sqlite3_finalize(del);
	if (!dry && sq_exec(q, "COMMIT", err, errlen) < 0) {
		sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
fail:
	sqlite3_finalize(sel);
	sqlite3_finalize(del);
	return -1;
}

/* fts_words - WORDS as an FTS5 query: each word a quoted string (AND) */
static char *
fts_words(const char *words)
{
	struct xm_buf b = { 0 };
	const char *p = words;

	while (*p) {
		size_t n;

		p += strspn(p, " \t\n");
		n = strcspn(p, " \t\n");
		if (n == 0)
			break;
		if (b.len)
			xm_buf_puts(&b, " ");
		xm_buf_puts(&b, "\"");
		for (; n > 0; n--, p++)
			xm_buf_puts(&b, *p == '"' ? "\"\"" : (char[]){ *p, 0 });
		xm_buf_puts(&b, "\"");
	}
	return b.data ? b.data : xm_strdup("\"\"");
}

/* bind_named - bind text to the named parameter NAME if present */
static void
bind_named(sqlite3_stmt *st, const char *name, const char *v)
{
	int i = sqlite3_bind_parameter_index(st, name);

	if (i > 0)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

/* sq_search - SQL from the query, oldest first */
static int
sq_search(struct archive_sink *s, const struct xm_archive_query *qy,
    xm_archive_row_fn fn, void *arg, char *err, size_t errlen)
{
	struct sq *q = s->priv;
	struct xm_buf sql = { 0 };
	sqlite3_stmt *st = NULL;
	char *fts = NULL, *words = NULL;
	int rc;

	xm_buf_puts(&sql, "SELECT record FROM records WHERE 1");
	if (qy->from >= 0)
		xm_buf_puts(&sql, " AND t >= :from");
	if (qy->until >= 0)
		xm_buf_puts(&sql, " AND t < :until");
	if (qy->jid && strncmp(qy->jid, "*@", 2) == 0)
		xm_buf_puts(&sql, " AND (sender_domain = lower(:jid) OR "
		    "recipient_domain = lower(:jid))");
	else if (qy->jid)
		xm_buf_puts(&sql, " AND (sender = lower(:jid) OR recipient = "
		    "lower(:jid))");
	if (qy->action)
		xm_buf_puts(&sql, " AND action = :action");
	if (qy->text || qy->match)
		xm_buf_puts(&sql, " AND id IN (SELECT rowid FROM records_fts "
		    "WHERE records_fts MATCH :fts)");
	xm_buf_puts(&sql, " ORDER BY t, id");
	if (qy->limit > 0)
		xm_buf_printf(&sql, " LIMIT %lld", qy->limit);
	if (sqlite3_prepare_v2(q->db, sql.data, -1, &st, NULL) != SQLITE_OK) {
		xm_buf_free(&sql);
		return sq_err(q, "search", err, errlen);
	}
	xm_buf_free(&sql);
	if (qy->from >= 0)
		sqlite3_bind_double(st, sqlite3_bind_parameter_index(st, ":from"),
		    qy->from);
	if (qy->until >= 0)
		sqlite3_bind_double(st, sqlite3_bind_parameter_index(st, ":until"),
		    qy->until);
	if (qy->jid)
		bind_named(st, ":jid", strncmp(qy->jid, "*@", 2) == 0 ?
		    qy->jid + 2 : qy->jid);
	if (qy->action)
		bind_named(st, ":action", qy->action);
	if (qy->text)
		words = fts_words(qy->text);
	if (qy->match && words)
		fts = xm_printf("(%s) AND (%s)", qy->match, words);
	else if (qy->match || words)
		fts = xm_strdup(qy->match ? qy->match : words);
	if (fts)
		bind_named(st, ":fts", fts);
	free(words);
	free(fts);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (fn(arg, (const char *)sqlite3_column_text(st, 0)) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	if (rc != SQLITE_DONE) {
		sq_err(q, "search", err, errlen);
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}

/* sq_close - finalize and close */
static void
sq_close(struct archive_sink *s)
{
	struct sq *q = s->priv;

	if (q == NULL)
		return;
	sqlite3_finalize(q->ins);
	if (q->db)
		sqlite3_close(q->db);
	free(q);
	s->priv = NULL;
}

const struct archive_sink_ops xm_archive_sqlite_ops = {
	sq_open, sq_connect, sq_write, sq_purge, sq_search, sq_close,
};
