/*
 * archive_jsonl.c - append-only JSON-lines files with a SHA-256 hash chain
 *
 * A directory of files xmilter-<first seq, 20 digits>-<unix time>.jsonl,
 * one record per line:
 *
 *   {"seq":N,"prev":"<hash of line N-1>",<the record>,"hash":"<SHA-256>"}
 *
 * where the hash covers every byte of the line before ,"hash". The chain
 * runs across files (a new file starts when the current one passes
 * rotate_size or rotate_age), so an edited line breaks its own hash, and a
 * deleted or moved line breaks the next line's prev or the seq count.
 * Retention removes whole leading files only, after appending a "purge"
 * record ("record":"purge") to the chain that names them and their last hash: verify then
 * accepts the chain starting there, and a head removed without one is
 * reported.
 *
 * The writer holds an exclusive flock on DIR/.lock for its lifetime, so
 * two writers never interleave one chain. On open, a last line cut short
 * by a crash (never acknowledged: the ack follows the fsync of whole
 * lines) is truncated away.
 *
 * Failure: a batch whose write fails is cut off again (ftruncate) and the
 * chain state restored, so the file never holds a half batch.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "archive.h"

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define MAX_LINE (256u * 1024 * 1024)

struct jl {
	int lockfd, fd;
	char *cur;                  /* current file's path */
	unsigned long long seq;     /* last seq written */
	char hash[65];              /* its hash */
	long long size;
	double started;
};

/* file list: names sorted */
struct flist {
	char **v;
	size_t n;
};

/* name_cmp - qsort order of file names */
static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* list_files - the chain's files in DIR, in order; -1 with ERR */
static int
list_files(const char *dir, struct flist *fl, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	memset(fl, 0, sizeof(*fl));
	if (d == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);

		if (strncmp(de->d_name, "xmilter-", 8) != 0 || n < 14 ||
		    strcmp(de->d_name + n - 6, ".jsonl") != 0)
			continue;
		fl->v = xm_reallocarray(fl->v, fl->n + 1, sizeof(*fl->v));
		fl->v[fl->n++] = xm_strdup(de->d_name);
	}
	closedir(d);
	if (fl->n)
		qsort(fl->v, fl->n, sizeof(*fl->v), name_cmp);
	return 0;
}

/* flist_free - release the list */
static void
flist_free(struct flist *fl)
{
	size_t i;

	for (i = 0; i < fl->n; i++)
		free(fl->v[i]);
	free(fl->v);
	memset(fl, 0, sizeof(*fl));
}

/* read_file - the whole file (bounded), heap; NULL with ERR */
static char *
read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct xm_buf b = { 0 };
	char tmp[65536];
	ssize_t n;

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	while ((n = read(fd, tmp, sizeof(tmp))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || b.len + (size_t)n > (size_t)4 << 30) {
			snprintf(err, errlen, "%s: %s", path, n < 0 ?
			    strerror(errno) : "too large");
			close(fd);
			xm_buf_free(&b);
			return NULL;
		}
		xm_buf_append(&b, tmp, (size_t)n);
	}
	close(fd);
	*len = b.len;
	return b.data ? b.data : xm_strdup("");
}

/* fsync_dir - make a directory entry durable */
static void
fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* jl_new_file - start the file whose first record is seq+1 */
static int
jl_new_file(struct archive_sink *s, struct jl *j, char *err, size_t errlen)
{
	char *path;
	int fd;

	j->started = xm_now();
	path = xm_printf("%s/xmilter-%020llu-%010lld.jsonl", s->conf->path,
	    j->seq + 1, (long long)j->started);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (j->fd >= 0) {
		fsync(j->fd);
		close(j->fd);
	}
	fsync_dir(s->conf->path);
	free(j->cur);
	j->cur = path;
	j->fd = fd;
	j->size = 0;
	return 0;
}

/* last_line - the last complete line of BUF[0..len) and the length of the
 * complete part (everything up to the last newline) */
static const char *
last_line(const char *buf, size_t len, size_t *line_len, size_t *complete)
{
	const char *end, *start;

	end = len ? memrchr(buf, '\n', len) : NULL;
	*complete = end ? (size_t)(end - buf) + 1 : 0;
	if (end == NULL)
		return NULL;
	start = end > buf ? memrchr(buf, '\n', (size_t)(end - buf)) : NULL;
	start = start ? start + 1 : buf;
	*line_len = (size_t)(end - start);
	return start;
}

/* jl_recover - seq and hash from the last file; cut a partial tail */
static int
jl_recover(struct archive_sink *s, struct jl *j, char *err, size_t errlen)
{
	struct flist fl;
	char *buf, *path, prev[65];
	size_t len, ll, complete;
	const char *line;
	struct stat sb;

	if (list_files(s->conf->path, &fl, err, errlen) < 0)
		return -1;
	while (fl.n > 0) {
		path = xm_printf("%s/%s", s->conf->path, fl.v[fl.n - 1]);
		if ((buf = read_file(path, &len, err, errlen)) == NULL) {
			free(path);
			flist_free(&fl);
			return -1;
		}
		if (complete = 0, line = last_line(buf, len, &ll, &complete),
		    complete < len) {
			log_warn("archive %s: %s: removing a last line cut short "
			    "(%zu bytes, never acknowledged)", s->conf->name, path,
			    len - complete);
			if (truncate(path, (off_t)complete) < 0) {
				snprintf(err, errlen, "%s: truncate: %s", path,
				    strerror(errno));
				goto fail;
			}
		}
		if (line == NULL) {
			/* an empty file (a crash right after rotation) */
			unlink(path);
			free(buf);
			free(path);
			free(fl.v[--fl.n]);
			continue;
		}
		if (xm_archive_chain_check(line, ll, &j->seq, prev, j->hash, err,
		    errlen) < 0) {
			char m[256];

			snprintf(m, sizeof(m), "%s: last line: %s (run xmilter "
			    "archive verify)", path, err);
			snprintf(err, errlen, "%s", m);
			goto fail;
		}
		j->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (j->fd < 0 || fstat(j->fd, &sb) < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		j->size = (long long)sb.st_size;
		{
			const char *dash = strrchr(path, '-');
			long long started;
			char *dot;

			j->started = xm_now();
			if (dash && (dot = strchr(dash, '.')) != NULL) {
				char num[24];
				size_t n = (size_t)(dot - dash - 1);

				if (n < sizeof(num)) {
					memcpy(num, dash + 1, n);
					num[n] = '\0';
					if (xm_parse_ll(num, 0, 1LL << 40, &started) == 0)
						j->started = (double)started;
				}
			}
		}
		j->cur = path;
		free(buf);
		flist_free(&fl);
		return 0;
fail:
		free(buf);
		free(path);
		flist_free(&fl);
		return -1;
	}
	flist_free(&fl);
	j->seq = 0;
	memcpy(j->hash, ZERO_HASH, 65);
	return jl_new_file(s, j, err, errlen);
}

/* jl_open - the directory, the lock, the chain's state */
static int
jl_open(struct archive_sink *s, char *err, size_t errlen)
{
	struct jl *j = xm_calloc(1, sizeof(*j));
	char *lock;

	j->fd = j->lockfd = -1;
	s->priv = j;
	if (s->readonly)
		return 0;
	if (mkdir(s->conf->path, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", s->conf->path, strerror(errno));
		return -1;
	}
	lock = xm_printf("%s/.lock", s->conf->path);
	j->lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	free(lock);
	if (j->lockfd < 0 || flock(j->lockfd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "%s: %s", s->conf->path, errno ==
		    EWOULDBLOCK ? "in use by another writer (a running xmilterd "
		    "purges it itself)" : strerror(errno));
		return -1;
	}
	return jl_recover(s, j, err, errlen);
}

/* jl_connect - the file is open: nothing to do */
static int
jl_connect(struct archive_sink *s, char *err, size_t errlen)
{
	struct jl *j = s->priv;

	if (j->fd < 0) {
		snprintf(err, errlen, "no open file");
		return -1;
	}
	return 0;
}

/* jl_append - chain and write LINES' records (already encoded) */
static int
jl_append(struct archive_sink *s, char **records, size_t n, bool durable,
    char *err, size_t errlen)
{
	struct jl *j = s->priv;
	const struct xm_archive_sink_conf *k = s->conf;
	struct xm_buf b = { 0 };
	unsigned long long seq0 = j->seq;
	char hash0[65];
	size_t i;

	if (j->size >= k->rotate_size || (k->rotate_age >= 0 && j->size > 0 &&
	    xm_now() - j->started >= k->rotate_age))
		if (jl_new_file(s, j, err, errlen) < 0)
			return -1;
	memcpy(hash0, j->hash, 65);
	for (i = 0; i < n; i++) {
		char *line = xm_archive_chain_line(records[i], j->seq + 1, j->hash,
		    j->hash);

		j->seq++;
		xm_buf_puts(&b, line);
		xm_buf_puts(&b, "\n");
		free(line);
	}
	if (xm_write_all(j->fd, b.data, b.len) < 0 ||
	    (durable && fdatasync(j->fd) < 0)) {
		snprintf(err, errlen, "%s: %s", j->cur, strerror(errno));
		if (ftruncate(j->fd, (off_t)j->size) < 0)
			log_warn("archive %s: %s: cannot cut a failed batch off: %s",
			    k->name, j->cur, strerror(errno));
		j->seq = seq0;
		memcpy(j->hash, hash0, 65);
		xm_buf_free(&b);
		return -1;
	}
	j->size += (long long)b.len;
	xm_buf_free(&b);
	return 0;
}

/* jl_write - encode the batch and append it */
static int
jl_write(struct archive_sink *s, struct xm_archive_item **items, size_t n,
    bool durable, size_t *done, char *err, size_t errlen)
{
	char **recs = xm_calloc(n, sizeof(*recs));
	size_t i;
	int rc;

	for (i = 0; i < n; i++)
		recs[i] = xm_archive_encode(items[i]);
	rc = jl_append(s, recs, n, durable, err, errlen);
	for (i = 0; i < n; i++)
		free(recs[i]);
	free(recs);
	*done = rc == 0 ? n : 0;
	return rc;
}

/* line_fields - t, scope, sender, recipient of one parsed line */
static json_t *
line_json(const char *line, size_t len)
{
	return json_loadb(line, len, JSON_DISABLE_EOF_CHECK, NULL);
}

/* jstrf - string member or NULL */
static const char *
jstrf(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* jl_purge - drop leading files whose every record is past retention */
static int
jl_purge(struct archive_sink *s, double now, bool dry, long long *count,
    char *err, size_t errlen)
{
	struct jl *j = s->priv;
	struct flist fl;
	json_t *removed = json_array();
	size_t i;
	int rc = 0;

	*count = 0;
	if (list_files(s->conf->path, &fl, err, errlen) < 0) {
		json_decref(removed);
		return -1;
	}
	for (i = 0; i + 1 < fl.n; i++) {  /* never the current file */
		char *path = xm_printf("%s/%s", s->conf->path, fl.v[i]), *buf;
		size_t len, off = 0;
		unsigned long long seq = 0, first = 0, nrec = 0;
		char prev[65], hash[65] = "", e[256];
		bool keep = false;

		if ((buf = read_file(path, &len, err, errlen)) == NULL) {
			free(path);
			rc = -1;
			break;
		}
		while (off < len && !keep) {
			const char *nl = memchr(buf + off, '\n', len - off);
			size_t ll = nl ? (size_t)(nl - buf - off) : len - off;
			json_t *o;
			double t, r;

			if (xm_archive_chain_check(buf + off, ll, &seq, prev, hash, e,
			    sizeof(e)) < 0 || (o = line_json(buf + off, ll)) == NULL) {
				keep = true;  /* a damaged file is evidence: keep it */
				break;
			}
			if (first == 0)
				first = seq;
			nrec++;
			t = json_number_value(json_object_get(o, "t"));
			r = xm_archive_retention(s->conf, jstrf(o, "scope"));
			if (r < 0 || t >= now - r || xm_archive_held(s->aconf,
			    jstrf(o, "sender"), jstrf(o, "recipient"), t))
				keep = true;
			json_decref(o);
			off += ll + 1;
		}
		free(buf);
		free(path);
		if (keep || nrec == 0)
			break;
		json_array_append_new(removed, json_pack("{s:s,s:I,s:I,s:s}",
		    "file", fl.v[i], "first_seq", (json_int_t)first, "last_seq",
		    (json_int_t)seq, "last_hash", hash));
		*count += (long long)nrec;
	}
	if (rc == 0 && !dry && json_array_size(removed) > 0) {
		json_t *o = json_object();
		char tbuf[40], *rec;

		json_object_set_new(o, "v", json_integer(XM_ARCHIVE_FORMAT));
		json_object_set_new(o, "record", json_string("purge"));
		json_object_set_new(o, "time", json_string(xm_archive_time(now,
		    tbuf, sizeof(tbuf))));
		json_object_set_new(o, "t", json_real(now));
		json_object_set_new(o, "node", json_string(s->node));
		json_object_set_new(o, "records", json_integer(*count));
		json_object_set(o, "removed", removed);
		rec = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		if (jl_append(s, &rec, 1, true, err, errlen) < 0)
			rc = -1;
		free(rec);
		for (i = 0; rc == 0 && i < json_array_size(removed); i++) {
			char *path = xm_printf("%s/%s", s->conf->path,
			    jstrf(json_array_get(removed, i), "file"));

			if (unlink(path) < 0)
				log_warn("archive %s: %s: %s", s->conf->name, path,
				    strerror(errno));
			free(path);
		}
		fsync_dir(s->conf->path);
	}
	(void)j;
	json_decref(removed);
	flist_free(&fl);
	return rc;
}

/* jl_search - every record of every file, filtered here */
static int
jl_search(struct archive_sink *s, const struct xm_archive_query *q,
    xm_archive_row_fn fn, void *arg, char *err, size_t errlen)
{
	struct flist fl;
	long long found = 0;
	size_t i;
	int rc = 0;

	if (list_files(s->conf->path, &fl, err, errlen) < 0)
		return -1;
	for (i = 0; i < fl.n && rc == 0; i++) {
		char *path = xm_printf("%s/%s", s->conf->path, fl.v[i]), *buf;
		size_t len, off = 0;

		if ((buf = read_file(path, &len, err, errlen)) == NULL) {
			free(path);
			rc = -1;
			break;
		}
		while (off < len) {
			char *nl = memchr(buf + off, '\n', len - off);
			size_t ll = nl ? (size_t)(nl - buf - off) : len - off;
			json_t *o;
			double t;
			const char *snd, *rcp, *jid = q->jid;
			bool ok = true;

			if (nl == NULL)
				break;  /* a line being written */
			o = line_json(buf + off, ll);
			if (o == NULL || jstrf(o, "record") != NULL) {
				json_decref(o);
				off += ll + 1;
				continue;
			}
			t = json_number_value(json_object_get(o, "t"));
			snd = jstrf(o, "sender");
			rcp = jstrf(o, "recipient");
			if ((q->from >= 0 && t < q->from) ||
			    (q->until >= 0 && t >= q->until))
				ok = false;
			if (ok && jid && strncmp(jid, "*@", 2) == 0) {
				const char *sd = snd ? strchr(snd, '@') : NULL,
				    *rd = rcp ? strchr(rcp, '@') : NULL;

				ok = (sd && strcasecmp(sd + 1, jid + 2) == 0) ||
				    (rd && strcasecmp(rd + 1, jid + 2) == 0);
			} else if (ok && jid)
				ok = (snd && strcasecmp(snd, jid) == 0) ||
				    (rcp && strcasecmp(rcp, jid) == 0);
			if (ok && q->action)
				ok = jstrf(o, "action") && strcmp(jstrf(o, "action"),
				    q->action) == 0;
			if (ok && q->text)
				ok = xm_archive_words_match(q->text, jstrf(o, "body"),
				    jstrf(o, "subject"));
			if (ok && q->match)
				ok = xm_archive_words_match(q->match, jstrf(o, "body"),
				    jstrf(o, "subject"));
			json_decref(o);
			if (ok) {
				*nl = '\0';
				if (fn(arg, buf + off) != 0 ||
				    (q->limit > 0 && ++found >= q->limit)) {
					rc = 1;
					break;
				}
			}
			off += ll + 1;
		}
		free(buf);
		free(path);
	}
	flist_free(&fl);
	return rc < 0 ? -1 : 0;
}

/* jl_close - release the files and the lock */
static void
jl_close(struct archive_sink *s)
{
	struct jl *j = s->priv;

	if (j == NULL)
		return;
	if (j->fd >= 0) {
		fsync(j->fd);
		close(j->fd);
	}
	if (j->lockfd >= 0)
		close(j->lockfd);
	free(j->cur);
	free(j);
	s->priv = NULL;
}

const struct archive_sink_ops xm_archive_jsonl_ops = {
	jl_open, jl_connect, jl_write, jl_purge, jl_search, jl_close,
};

/* ---- verify ---- */

/* purge_anchor - a purge record's last removed file: its last seq/hash */
static void
purge_anchor(json_t *o, unsigned long long *seq, char hash[65])
{
	json_t *rm = json_object_get(o, "removed");
	json_t *last = json_array_get(rm, json_array_size(rm) - 1);
	const char *h = jstrf(last, "last_hash");

	*seq = (unsigned long long)json_integer_value(json_object_get(last,
	    "last_seq"));
	snprintf(hash, 65, "%s", h ? h : "");
}

/* xm_archive_jsonl_verify - walk every line of every file */
int
xm_archive_jsonl_verify(const char *dir, FILE *report,
    struct xm_archive_verify *res)
{
	struct flist fl;
	unsigned long long expect = 0, head_seq = 0, aseq = 0;
	char last[65] = ZERO_HASH, head_prev[65] = "", err[256], ahash[65] = "";
	bool head_purged = false, head_explained = false;
	size_t i;

	res->records = res->first_seq = res->last_seq = res->purged = 0;
	res->files = res->errors = 0;
	res->anchor_found = res->partial_tail = false;
	memcpy(res->last_hash, ZERO_HASH, 65);
	if (list_files(dir, &fl, err, sizeof(err)) < 0) {
		fprintf(report, "%s\n", err);
		res->errors++;
		return -1;
	}
	for (i = 0; i < fl.n; i++) {
		char *path = xm_printf("%s/%s", dir, fl.v[i]), *buf;
		size_t len, off = 0, lineno = 0;
		unsigned long long name_seq = 0;

		res->files++;
		if ((buf = read_file(path, &len, err, sizeof(err))) == NULL) {
			fprintf(report, "%s\n", err);
			res->errors++;
			free(path);
			continue;
		}
		{
			char num[21];

			memcpy(num, fl.v[i] + 8, 20);
			num[20] = '\0';
			if (strlen(fl.v[i]) < 28 || xm_parse_ll(num, 1, (long long)
			    (~0ULL >> 1), (long long *)&name_seq) < 0)
				name_seq = 0;
		}
		while (off < len) {
			char *nl = memchr(buf + off, '\n', len - off);
			size_t ll = nl ? (size_t)(nl - buf - off) : len - off;
			unsigned long long seq;
			char prev[65], hash[65];

			lineno++;
			if (nl == NULL) {
				if (i + 1 == fl.n) {
					res->partial_tail = true;
					fprintf(report, "%s:%zu: warning: last line cut short "
					    "(%zu bytes; a write interrupted by a crash, never "
					    "acknowledged; xmilterd removes it when it next "
					    "opens the archive)\n", path, lineno, ll);
				} else {
					fprintf(report, "%s:%zu: line without a newline in "
					    "the middle of the chain\n", path, lineno);
					res->errors++;
				}
				break;
			}
			if (xm_archive_chain_check(buf + off, ll, &seq, prev, hash,
			    err, sizeof(err)) < 0) {
				fprintf(report, "%s:%zu: %s\n", path, lineno, err);
				res->errors++;
				/* go on from this line's own claims */
				off += ll + 1;
				expect = 0;
				continue;
			}
			if (lineno == 1 && name_seq != 0 && name_seq != seq) {
				fprintf(report, "%s: file name says seq %llu, its first "
				    "line is %llu\n", path, name_seq, seq);
				res->errors++;
			}
			if (res->records == 0 && expect == 0) {
				res->first_seq = seq;
				if (seq != 1 || strcmp(prev, ZERO_HASH) != 0) {
					head_purged = true;
					head_seq = seq;
					memcpy(head_prev, prev, 65);
				}
			} else if (expect != 0 && (seq != expect ||
			    strcmp(prev, last) != 0)) {
				if (seq > expect)
					fprintf(report, "%s:%zu: seq %llu follows %llu: %llu "
					    "record(s) missing\n", path, lineno, seq,
					    expect - 1, seq - expect);
				else if (seq != expect)
					fprintf(report, "%s:%zu: seq %llu where %llu was due: "
					    "records re-ordered or repeated\n", path, lineno,
					    seq, expect);
				else
					fprintf(report, "%s:%zu: prev does not match the "
					    "hash of record %llu: a record was replaced\n",
					    path, lineno, seq - 1);
				res->errors++;
			}
			if (res->anchor_seq && seq == res->anchor_seq) {
				res->anchor_found = strcmp(hash, res->anchor_hash) == 0;
				if (!res->anchor_found) {
					fprintf(report, "%s:%zu: record %llu's hash is not "
					    "the anchor %s\n", path, lineno, seq,
					    res->anchor_hash);
					res->errors++;
				}
			}
			if (memmem(buf + off, ll, "\"record\":\"purge\"", 16) != NULL) {
				json_t *o = line_json(buf + off, ll);

				if (o && json_is_string(json_object_get(o, "record"))) {
					purge_anchor(o, &aseq, ahash);
					if (head_purged && aseq + 1 == head_seq &&
					    strcmp(ahash, head_prev) == 0)
						head_explained = true;
					res->purged += (unsigned long long)json_integer_value(
					    json_object_get(o, "records"));
				}
				json_decref(o);
			}
			res->records++;
			res->last_seq = seq;
			memcpy(last, hash, 65);
			memcpy(res->last_hash, hash, 65);
			expect = seq + 1;
			off += ll + 1;
		}
		free(buf);
		free(path);
	}
	if (head_purged && !head_explained) {
		fprintf(report, "%s: the chain starts at seq %llu but no purge "
		    "record accounts for records before it: files were removed\n",
		    dir, head_seq);
		res->errors++;
	}
	if (res->anchor_seq && !res->anchor_found && res->errors == 0) {
		fprintf(report, "%s: anchor seq %llu not found\n", dir,
		    res->anchor_seq);
		res->errors++;
	}
	flist_free(&fl);
	return res->errors ? -1 : 0;
}
