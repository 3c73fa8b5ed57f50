/*
 * antivirus.c - the antivirus filter: libclamav in process, on the workers
 *
 * Purpose: scan every file's bytes that reach the daemon - in-band
 * bytestream data (XEP-0047, reassembled by ibb.c), and uploads whose
 * event names a stored file (`file-path=`, docs/EVENTS.md) - and block
 * messages that share the URL of an upload found infected. Chat bodies
 * are never scanned: wants() declines every event without file bytes, so
 * plain chat is answered on the event loop and never queued for a worker.
 *
 * Engine: built in init (at start-up, and at each reload on the reload
 * worker) from a database directory (default /var/lib/clamav, where
 * freshclam puts its files); a missing or empty database is a start-up
 * error unless on_missing_database is "degraded", in which case every
 * verdict of an event with file bytes carries AV_DEGRADED and HELLO (the
 * health check) says status=degraded. The engine sits in a
 * reference-counted holder: a scan takes a reference to the engine it
 * starts on (cl_engine_addref), so a swap never frees an engine a scan
 * still uses. When db_check_interval has passed, the worker that scans
 * next stats the database files; if they changed, a thread of its own
 * builds a new engine aside and swaps it in, and scans go on meanwhile.
 *
 * Results: cached process-wide (avstate.c) by SHA-256 of the bytes plus
 * the engine's tag (database files and scan settings), so the same file
 * sent to 50 contacts is scanned once. A virus ends the chain
 * (virus_action); exceeded limits and scan errors follow on_limits and
 * on_error (reject, score, accept), never a silent pass.
 *
 * Interface: antivirus_filter (struct xm_filter_ops), XM_FILTER_SLOW and
 * XM_FILTER_OPTIN (off unless enabled: it needs a signature database).
 * Settings: antivirus_settings; operator docs in docs/ANTIVIRUS.md.
 *
 * Ownership: the state points at its config; the holder owns the engine,
 * copies of the settings it needs and a private temporary directory, and
 * is freed by its last user (the state or a builder thread).
 *
 * Failure: init fails on a missing database (unless degraded) or an
 * unusable temporary directory; at run time every problem is a symbol.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <clamav.h>

#include "avstate.h"
#include "config.h"
#include "ibb.h"
#include "xm.h"

enum { POL_REJECT = 0, POL_SCORE, POL_ACCEPT };

struct av_conf {
	char *database_dir;
	int on_missing_database;     /* 0 fail, 1 degraded */
	char *tmpdir;
	long long max_file_size, max_scan_size, max_recursion, max_files;
	double max_scan_time;
	bool scan_archives, heuristics;
	int virus_action;            /* 0 reject, 1 discard, 2 quarantine */
	char *virus_text;
	double score_virus;
	int on_limits;
	double score_limits;
	int on_error;
	double score_error;
	double db_check_interval;
	long long cache_entries;
	double cache_ttl;
	long long ibb_max_stream, ibb_max_total, ibb_max_streams, ibb_scan_step;
	double ibb_idle_timeout;
	struct xm_strlist upload_dirs;
	bool block_infected_urls;
	long long infected_urls;
	double infected_url_ttl;
};

#define O(f) offsetof(struct av_conf, f)
static const struct xm_setting antivirus_settings[] = {
	{ "database_dir", XM_ST_PATH, O(database_dir), "/var/lib/clamav", 0, 0,
	  NULL, true, "ClamAV signature database directory (freshclam's, or "
	  "plain .hdb/.hsb/.ndb/.cdb/.ldb files). Off by default: set "
	  "`enabled: true` to scan." },
	{ "on_missing_database", XM_ST_ENUM, O(on_missing_database), "fail", 0,
	  0, "fail|degraded", true, "A missing or empty database: `fail` "
	  "refuses to start (or to reload), `degraded` runs without scanning "
	  "and says so (AV_DEGRADED in every verdict of a file, "
	  "status=degraded in HELLO)." },
	{ "tmpdir", XM_ST_STRING, O(tmpdir), "", 0, 0, NULL, true,
	  "Where the private temporary directory (mode 0700, removed at exit) "
	  "is made; empty: $TMPDIR or /tmp. A tmpfs (e.g. /dev/shm) keeps "
	  "archive unpacking off the disk." },
	{ "max_file_size", XM_ST_SIZE, O(max_file_size), "25M", 1024,
	  4294967295.0, NULL, true, "Largest file read and scanned (and "
	  "libclamav's max file size); a larger one is a limits verdict." },
	{ "max_scan_size", XM_ST_SIZE, O(max_scan_size), "100M", 1024,
	  4294967295.0, NULL, true, "Most bytes libclamav reads from one file "
	  "including unpacked archive members." },
	{ "max_recursion", XM_ST_INT, O(max_recursion), "16", 1, 64, NULL, true,
	  "Deepest archive nesting scanned." },
	{ "max_files", XM_ST_INT, O(max_files), "10000", 1, 1000000, NULL, true,
	  "Most archive members scanned in one file." },
	{ "max_scan_time", XM_ST_DURATION, O(max_scan_time), "30s", 0.001, 3600,
	  NULL, true, "Longest one scan may take." },
	{ "scan_archives", XM_ST_BOOL, O(scan_archives), "true", 0, 0, NULL, true,
	  "Unpack archives (zip, tar, 7z, cab...) and scan their members." },
	{ "heuristics", XM_ST_BOOL, O(heuristics), "false", 0, 0, NULL, true,
	  "libclamav's heuristic alerts (broken executables, phishing...)." },
	{ "virus_action", XM_ST_ENUM, O(virus_action), "reject", 0, 0,
	  "reject|discard|quarantine", true, "What a virus does: it ends the "
	  "chain with this action whatever the score." },
	{ "virus_text", XM_ST_STRING, O(virus_text),
	  "A file in this transfer carries a virus and was blocked", 0, 0, NULL,
	  true, "Error text for the sender (the signature name is added)." },
	{ "score_virus", XM_ST_DOUBLE, O(score_virus), "100", 0, 1000, NULL, true,
	  "Score of AV_VIRUS (shown; the action is final anyway)." },
	{ "on_limits", XM_ST_ENUM, O(on_limits), "reject", 0, 0,
	  "reject|score|accept", true, "A file past a scan limit (size, "
	  "recursion, files, time, IBB buffer): `reject` ends the chain, "
	  "`score` adds AV_LIMITS with score_limits, `accept` adds it with 0." },
	{ "score_limits", XM_ST_DOUBLE, O(score_limits), "5", 0, 1000, NULL, true,
	  "Score of AV_LIMITS with on_limits: score." },
	{ "on_error", XM_ST_ENUM, O(on_error), "reject", 0, 0,
	  "reject|score|accept", true, "A scan that fails (unreadable upload, "
	  "broken IBB stream, libclamav error): as on_limits, symbol AV_ERROR." },
	{ "score_error", XM_ST_DOUBLE, O(score_error), "5", 0, 1000, NULL, true,
	  "Score of AV_ERROR with on_error: score." },
	{ "db_check_interval", XM_ST_DURATION, O(db_check_interval), "60s", 0,
	  86400, NULL, true, "How often (at most) the database files are "
	  "checked for changes; a change builds a new engine aside and swaps "
	  "it in. 0: only on SIGHUP." },
	{ "cache_entries", XM_ST_INT, O(cache_entries), "10000", 0, 10000000,
	  NULL, true, "Results remembered by SHA-256 of the bytes (process-wide, "
	  "kept across reloads); 0 turns the cache off." },
	{ "cache_ttl", XM_ST_DURATION, O(cache_ttl), "1h", 1, 30 * 86400.0, NULL,
	  true, "How long a cached result is used." },
	{ "ibb_max_stream", XM_ST_SIZE, O(ibb_max_stream), "25M", 1024,
	  4294967295.0, NULL, true, "Bytes buffered per in-band stream; more "
	  "is a limits verdict (the stream cannot be scanned whole)." },
	{ "ibb_max_total", XM_ST_SIZE, O(ibb_max_total), "256M", 4096,
	  1099511627776.0, NULL, true, "Bytes buffered in all in-band streams "
	  "together." },
	{ "ibb_max_streams", XM_ST_INT, O(ibb_max_streams), "4096", 1, 1000000,
	  NULL, true, "Open in-band streams tracked at once." },
	{ "ibb_idle_timeout", XM_ST_DURATION, O(ibb_idle_timeout), "2m", 1,
	  86400, NULL, true, "A stream with no data for this long is dropped." },
	{ "ibb_scan_step", XM_ST_SIZE, O(ibb_scan_step), "64k", 0, 1073741824,
	  NULL, true, "In-band streams are scanned as data arrives: the first "
	  "chunk at once, then the first N bytes, 2N, 4N... and the whole at "
	  "close; 0: scan only at close." },
	{ "upload_dirs", XM_ST_PATHS, O(upload_dirs), "", 0, 0, NULL, true,
	  "Directories an upload's file-path may be in (empty: any absolute "
	  "path). Symbolic links are never followed." },
	{ "block_infected_urls", XM_ST_BOOL, O(block_infected_urls), "true", 0,
	  0, NULL, true, "Reject messages that share the URL of an upload "
	  "found infected (AV_INFECTED_URL)." },
	{ "infected_urls", XM_ST_INT, O(infected_urls), "10000", 0, 10000000,
	  NULL, true, "Infected upload URLs remembered (process-wide)." },
	{ "infected_url_ttl", XM_ST_DURATION, O(infected_url_ttl), "7d", 60,
	  365 * 86400.0, NULL, true, "How long an infected URL is remembered "
	  "(match mod_http_file_share's expiry)." },
	XM_SETTINGS_END
};
#undef O

/* the engine holder: shared by the filter state and builder threads */
struct holder {
	atomic_int refs;
	pthread_mutex_t mu;
	struct cl_engine *eng;       /* NULL: degraded */
	uint64_t tag;                /* cache key part of this engine */
	uint64_t dirsig;             /* database files when it was built */
	unsigned sigs;
	char status[400];            /* why degraded, "" when fine */
	double next_check;           /* monotonic */
	bool building;
	struct holder *reg_next;     /* the registry of live holders */
	/* copies of what a build needs (the config may go first) */
	char *dbdir, *tmp;
	uint64_t setsig;
	unsigned long long max_file, max_scan;
	unsigned max_rec, max_files, max_time_ms;
};

struct av_state {
	const struct av_conf *cf;
	struct holder *h;
	struct ibb_limits lim;
};

/*
 * Live holders, so that scopes (and reloads) with the same database and
 * scan settings share one engine - a real ClamAV database takes seconds
 * to load and hundreds of megabytes - as long as its files are unchanged.
 */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct holder *registry;

static pthread_once_t cl_once = PTHREAD_ONCE_INIT;
static int cl_init_rc;

/* cl_msg_cb - libclamav's messages into our log */
static void
cl_msg_cb(enum cl_msg sev, const char *full, const char *msg, void *ctx)
{
	size_t n = strlen(msg);

	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		n--;
	if (sev == CL_MSG_ERROR)
		log_warn("libclamav: %.*s", (int)n, msg);
	else
		log_debug("libclamav: %.*s", (int)n, msg);
}

/* do_cl_init - once per process */
static void
do_cl_init(void)
{
	cl_set_clcb_msg(cl_msg_cb);
	cl_init_rc = cl_init(CL_INIT_DEFAULT);
}

/* mix - fold V into hash H */
static uint64_t
mix(uint64_t h, const void *v, size_t n)
{
	const unsigned char *p = v;

	while (n-- > 0) {
		h ^= *p++;
		h *= 1099511628211ULL;
	}
	return h;
}

/* dir_signature - names, sizes and mtimes of the database files (order
 * independent); 0 when the directory cannot be read */
static uint64_t
dir_signature(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t sig = 1469598103934665603ULL;
	char path[PATH_MAX];
	struct stat sb;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t h = 1469598103934665603ULL;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
			continue;
		h = mix(h, de->d_name, strlen(de->d_name));
		h = mix(h, &sb.st_size, sizeof(sb.st_size));
		h = mix(h, &sb.st_mtim, sizeof(sb.st_mtim));
		sig += h * 2 + 1;
	}
	closedir(d);
	return sig;
}

/* rm_private - empty and remove the private temporary directory */
static void
rm_private(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[PATH_MAX];

	if (d != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (unlink(path) < 0 && errno == EISDIR)
				rm_private(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

/* holder_unref - the last user frees the engine and the directory */
static void
holder_unref(struct holder *h)
{
	struct holder **pp;

	if (h == NULL || atomic_fetch_sub(&h->refs, 1) != 1)
		return;
	pthread_mutex_lock(&reg_mu);
	for (pp = &registry; *pp != NULL; pp = &(*pp)->reg_next)
		if (*pp == h) {
			*pp = h->reg_next;
			break;
		}
	pthread_mutex_unlock(&reg_mu);
	if (h->eng)
		cl_engine_free(h->eng);
	if (h->tmp) {
		rm_private(h->tmp);
		free(h->tmp);
	}
	free(h->dbdir);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

/* build - a new compiled engine from H's settings; NULL with ERR */
static struct cl_engine *
build(struct holder *h, unsigned *sigs, uint64_t *dirsig, char *err,
    size_t errlen)
{
	struct cl_engine *e;
	unsigned n = 0;
	cl_error_t rc;
	struct stat sb;

	*dirsig = dir_signature(h->dbdir);
	if (stat(h->dbdir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "signature database %s: %s", h->dbdir,
		    stat(h->dbdir, &sb) < 0 ? strerror(errno) : "not a directory");
		return NULL;
	}
	if ((e = cl_engine_new()) == NULL) {
		snprintf(err, errlen, "cl_engine_new failed");
		return NULL;
	}
	cl_engine_set_str(e, CL_ENGINE_TMPDIR, h->tmp);
	cl_engine_set_num(e, CL_ENGINE_MAX_FILESIZE, (long long)h->max_file);
	cl_engine_set_num(e, CL_ENGINE_MAX_SCANSIZE, (long long)h->max_scan);
	cl_engine_set_num(e, CL_ENGINE_MAX_RECURSION, h->max_rec);
	cl_engine_set_num(e, CL_ENGINE_MAX_FILES, h->max_files);
	cl_engine_set_num(e, CL_ENGINE_MAX_SCANTIME, h->max_time_ms);
	if ((rc = cl_load(h->dbdir, e, &n, CL_DB_STDOPT)) != CL_SUCCESS) {
		snprintf(err, errlen, "signature database %s: %s", h->dbdir,
		    cl_strerror(rc));
		cl_engine_free(e);
		return NULL;
	}
	if (n == 0) {
		snprintf(err, errlen, "signature database %s: no signatures",
		    h->dbdir);
		cl_engine_free(e);
		return NULL;
	}
	if ((rc = cl_engine_compile(e)) != CL_SUCCESS) {
		snprintf(err, errlen, "signature database %s: compile: %s",
		    h->dbdir, cl_strerror(rc));
		cl_engine_free(e);
		return NULL;
	}
	*sigs = n;
	return e;
}

/* install - make E (built from DIRSIG) the holder's engine */
static void
install(struct holder *h, struct cl_engine *e, unsigned sigs, uint64_t dirsig)
{
	struct cl_engine *old;

	pthread_mutex_lock(&h->mu);
	old = h->eng;
	h->eng = e;
	h->sigs = sigs;
	h->dirsig = dirsig;
	h->tag = mix(h->setsig, &dirsig, sizeof(dirsig));
	h->status[0] = '\0';
	pthread_mutex_unlock(&h->mu);
	if (old)
		cl_engine_free(old);  /* scans in flight hold their own reference */
}

/* builder - thread: rebuild after a database change, swap, unref */
static void *
builder(void *arg)
{
	struct holder *h = arg;
	struct cl_engine *e;
	unsigned sigs;
	uint64_t dirsig;
	char err[300];

	if ((e = build(h, &sigs, &dirsig, err, sizeof(err))) != NULL) {
		install(h, e, sigs, dirsig);
		log_info("antivirus: database %s changed: new engine with %u "
		    "signatures", h->dbdir, sigs);
	} else
		log_warn("antivirus: database changed but the new one is "
		    "unusable, keeping the running engine: %s", err);
	pthread_mutex_lock(&h->mu);
	h->building = false;
	pthread_mutex_unlock(&h->mu);
	holder_unref(h);
	return NULL;
}

/* maybe_rebuild - every db_check_interval, look at the database files;
 * on a change start a builder thread (the caller's scan goes on) */
static void
maybe_rebuild(struct av_state *s)
{
	struct holder *h = s->h;
	double now = xm_monotonic();
	uint64_t sig;
	pthread_t th;
	bool changed;

	if (s->cf->db_check_interval <= 0)
		return;
	pthread_mutex_lock(&h->mu);
	if (h->building || now < h->next_check) {
		pthread_mutex_unlock(&h->mu);
		return;
	}
	h->next_check = now + s->cf->db_check_interval;
	h->building = true;  /* claims the check */
	pthread_mutex_unlock(&h->mu);
	sig = dir_signature(h->dbdir);
	pthread_mutex_lock(&h->mu);
	changed = sig != h->dirsig;
	pthread_mutex_unlock(&h->mu);
	if (changed) {
		atomic_fetch_add(&h->refs, 1);
		if (pthread_create(&th, NULL, builder, h) == 0) {
			pthread_detach(th);
			return;
		}
		atomic_fetch_sub(&h->refs, 1);
		log_warn("antivirus: cannot start a rebuild thread");
	}
	pthread_mutex_lock(&h->mu);
	h->building = false;
	pthread_mutex_unlock(&h->mu);
}

/* shared_holder - a live holder with settings SETSIG whose engine was
 * built from the database files as they are now (a reference), or NULL */
static struct holder *
shared_holder(uint64_t setsig, const char *dbdir)
{
	uint64_t sig = dir_signature(dbdir);
	struct holder *h;

	pthread_mutex_lock(&reg_mu);
	for (h = registry; h != NULL; h = h->reg_next) {
		int r = atomic_load(&h->refs);
		bool live;

		if (h->setsig != setsig || strcmp(h->dbdir, dbdir) != 0)
			continue;
		pthread_mutex_lock(&h->mu);
		live = h->eng != NULL && h->dirsig == sig && !h->building;
		pthread_mutex_unlock(&h->mu);
		/* a holder whose count reached 0 is being freed: not that one */
		while (live && r > 0 &&
		    !atomic_compare_exchange_weak(&h->refs, &r, r + 1))
			;
		if (live && r > 0)
			break;
	}
	pthread_mutex_unlock(&reg_mu);
	return h;
}

/* settings_sig - what makes two engines the same */
static uint64_t
settings_sig(const struct av_conf *cf, const char *base)
{
	unsigned long long mf = (unsigned long long)cf->max_file_size,
	    ms = (unsigned long long)cf->max_scan_size;
	unsigned mr = (unsigned)cf->max_recursion, mx = (unsigned)cf->max_files,
	    mt = (unsigned)(cf->max_scan_time * 1000 + 0.5);
	uint64_t h = mix(1469598103934665603ULL, cf->database_dir,
	    strlen(cf->database_dir) + 1);

	h = mix(h, base, strlen(base) + 1);
	h = mix(h, &mf, sizeof(mf));
	h = mix(h, &ms, sizeof(ms));
	h = mix(h, &mr, sizeof(mr));
	h = mix(h, &mx, sizeof(mx));
	h = mix(h, &mt, sizeof(mt));
	h = mix(h, &cf->scan_archives, sizeof(cf->scan_archives));
	return mix(h, &cf->heuristics, sizeof(cf->heuristics));
}

/* new_state - the filter state around holder H */
static struct av_state *
new_state(const struct av_conf *cf, struct holder *h)
{
	struct av_state *s = xm_calloc(1, sizeof(*s));

	avstate_configure((size_t)cf->cache_entries, cf->cache_ttl,
	    (size_t)cf->infected_urls, cf->infected_url_ttl);
	s->cf = cf;
	s->h = h;
	s->lim.max_stream = (size_t)cf->ibb_max_stream;
	s->lim.max_total = (size_t)cf->ibb_max_total;
	s->lim.max_streams = (size_t)cf->ibb_max_streams;
	s->lim.idle = cf->ibb_idle_timeout;
	s->lim.step = (size_t)cf->ibb_scan_step;
	return s;
}

/* antivirus_init - the engine, or degraded mode */
static int
antivirus_init(void **state, const void *conf, char *err, size_t errlen)
{
	const struct av_conf *cf = conf;
	struct holder *h;
	struct cl_engine *e;
	unsigned sigs = 0;
	uint64_t dirsig = 0;
	char tmpl[PATH_MAX], berr[300];
	const char *base;

	pthread_once(&cl_once, do_cl_init);
	if (cl_init_rc != CL_SUCCESS) {
		snprintf(err, errlen, "cl_init: %s", cl_strerror(cl_init_rc));
		return -1;
	}
	base = cf->tmpdir && *cf->tmpdir ? cf->tmpdir : getenv("TMPDIR");
	if (base == NULL || *base == '\0')
		base = "/tmp";
	if ((h = shared_holder(settings_sig(cf, base), cf->database_dir)) != NULL) {
		log_debug("antivirus: sharing the engine of %s", h->dbdir);
		*state = new_state(cf, h);
		return 0;
	}
	if ((size_t)snprintf(tmpl, sizeof(tmpl), "%s/xmilter-av-XXXXXX", base) >=
	    sizeof(tmpl) || mkdtemp(tmpl) == NULL) {
		snprintf(err, errlen, "tmpdir %s: cannot make a private directory: "
		    "%s", base, strerror(errno));
		return -1;
	}
	h = xm_calloc(1, sizeof(*h));
	atomic_init(&h->refs, 1);
	pthread_mutex_init(&h->mu, NULL);
	h->dbdir = xm_strdup(cf->database_dir);
	h->tmp = xm_strdup(tmpl);
	h->max_file = (unsigned long long)cf->max_file_size;
	h->max_scan = (unsigned long long)cf->max_scan_size;
	h->max_rec = (unsigned)cf->max_recursion;
	h->max_files = (unsigned)cf->max_files;
	h->max_time_ms = (unsigned)(cf->max_scan_time * 1000 + 0.5);
	h->setsig = settings_sig(cf, base);
	h->next_check = xm_monotonic() + cf->db_check_interval;
	if ((e = build(h, &sigs, &dirsig, berr, sizeof(berr))) == NULL) {
		if (cf->on_missing_database == 0) {
			snprintf(err, errlen, "antivirus: %s (install ClamAV "
			    "databases, e.g. run freshclam, or set "
			    "on_missing_database: degraded)", berr);
			holder_unref(h);
			return -1;
		}
		h->dirsig = dirsig;
		snprintf(h->status, sizeof(h->status), "degraded: %s", berr);
		log_warn("antivirus: running DEGRADED, files are not scanned: %s",
		    berr);
	} else {
		install(h, e, sigs, dirsig);
		log_info("antivirus: engine ready: %u signatures from %s", sigs,
		    h->dbdir);
	}
	if (h->eng != NULL) {  /* shareable */
		pthread_mutex_lock(&reg_mu);
		h->reg_next = registry;
		registry = h;
		pthread_mutex_unlock(&reg_mu);
	}
	*state = new_state(cf, h);
	return 0;
}

/* antivirus_free - drop the state's hold on the engine */
static void
antivirus_free(void *state)
{
	struct av_state *s = state;

	if (s == NULL)
		return;
	holder_unref(s->h);
	free(s);
}

/* policy - a limits or error outcome by POL: reject, score or accept */
static void
policy(struct xm_task *t, const struct av_conf *cf, int pol, double score,
    const char *sym, const char *detail)
{
	xm_task_symbol(t, sym, pol == POL_ACCEPT ? 0 : score, 0, "%s", detail);
	if (pol == POL_REJECT)
		xm_task_final(t, XM_REJECT, "not-acceptable",
		    strcmp(sym, "AV_LIMITS") == 0 ?
		    "A file in this transfer could not be scanned for viruses "
		    "(too large or too complex) and was blocked" :
		    "A file in this transfer could not be scanned for viruses "
		    "and was blocked");
}

/* virus - the final verdict for a file carrying NAME */
static void
virus(struct xm_task *t, const struct av_conf *cf, const char *name,
    const char *where, bool cached)
{
	static const enum xm_action acts[] = { XM_REJECT, XM_DISCARD,
		XM_QUARANTINE };

	xm_task_symbol(t, "AV_VIRUS", cf->score_virus, 0, "%s (%s%s)", name,
	    where, cached ? ", cached" : "");
	xm_task_final(t, acts[cf->virus_action], "not-acceptable",
	    xm_arena_printf(t->arena, "%s (%s)", cf->virus_text, name));
}

/* scan - SHA-256, cache, libclamav. 0 with R filled; 1 degraded; -1 on
 * a scan error (ERR). *CACHED tells whether the cache answered */
static int
scan(struct av_state *s, const unsigned char *p, size_t n, double now,
    struct av_result *r, bool *cached, char *err, size_t errlen)
{
	struct holder *h = s->h;
	struct cl_engine *e;
	struct cl_scan_options opts;
	unsigned char sha[32];
	const char *vname = NULL;
	unsigned long scanned = 0;
	cl_fmap_t *map;
	uint64_t tag;
	cl_error_t rc;
	double t0;

	*cached = false;
	memset(r, 0, sizeof(*r));
	maybe_rebuild(s);
	pthread_mutex_lock(&h->mu);
	e = h->eng;
	tag = h->tag;
	if (e != NULL)
		cl_engine_addref(e);
	pthread_mutex_unlock(&h->mu);
	if (e == NULL)
		return 1;
	xm_sha256(p, n, sha);
	if (n == 0) {  /* nothing to scan: an empty file is clean */
		cl_engine_free(e);
		return 0;
	}
	if (avstate_cache_get(sha, tag, now, r)) {
		cl_engine_free(e);
		*cached = true;
		log_debug("antivirus: %zu bytes: cache hit", n);
		return 0;
	}
	if ((map = cl_fmap_open_memory(p, n)) == NULL) {
		cl_engine_free(e);
		snprintf(err, errlen, "cannot map %zu bytes", n);
		return -1;
	}
	memset(&opts, 0, sizeof(opts));
	opts.general = s->cf->heuristics ? CL_SCAN_GENERAL_HEURISTICS : 0;
	opts.parse = ~0u;
	if (!s->cf->scan_archives)
		opts.parse &= ~(unsigned)CL_SCAN_PARSE_ARCHIVE;
	opts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;
	t0 = xm_monotonic();
	rc = cl_scanmap_callback(map, NULL, &vname, &scanned, e, &opts, NULL);
	avstate_count_scan();
	log_debug("antivirus: %zu bytes scanned in %.3f ms: %s", n,
	    (xm_monotonic() - t0) * 1000, rc == CL_VIRUS && vname ? vname :
	    cl_strerror(rc));
	cl_fmap_close(map);
	switch (rc) {
	case CL_CLEAN:
		r->kind = AV_CLEAN;
		break;
	case CL_VIRUS:
		/* copy the name before the reference goes: it lives in the engine */
		snprintf(r->name, sizeof(r->name), "%s", vname ? vname : "unknown");
		r->kind = strncmp(r->name, "Heuristics.Limits.Exceeded", 26) == 0 ?
		    AV_LIMITS : AV_VIRUS;
		break;
	case CL_ETIMEOUT:
	case CL_EMAXSIZE:
	case CL_EMAXREC:
	case CL_EMAXFILES:
		r->kind = AV_LIMITS;
		snprintf(r->name, sizeof(r->name), "%s", cl_strerror(rc));
		break;
	default:
		snprintf(err, errlen, "libclamav: %s", cl_strerror(rc));
		cl_engine_free(e);
		return -1;
	}
	cl_engine_free(e);
	avstate_cache_put(sha, tag, now, r);
	return 0;
}

/* judge - scan P..N and turn the outcome into symbols; true on a virus
 * (NAME gets the signature) */
static bool
judge(struct av_state *s, struct xm_task *t, const unsigned char *p,
    size_t n, const char *where, char *name, size_t namelen)
{
	const struct av_conf *cf = s->cf;
	struct av_result r;
	bool cached;
	char err[400];
	int rc = scan(s, p, n, t->now, &r, &cached, err, sizeof(err));

	if (rc == 1) {
		pthread_mutex_lock(&s->h->mu);
		snprintf(err, sizeof(err), "%s", s->h->status);
		pthread_mutex_unlock(&s->h->mu);
		if (!xm_task_has_symbol(t, "AV_DEGRADED"))
			xm_task_symbol(t, "AV_DEGRADED", 0, 0, "%s", err);
		return false;
	}
	if (rc < 0) {
		policy(t, cf, cf->on_error, cf->score_error, "AV_ERROR",
		    xm_arena_printf(t->arena, "%s: %s", where, err));
		return false;
	}
	if (r.kind == AV_VIRUS) {
		virus(t, cf, r.name, where, cached);
		if (name)
			snprintf(name, namelen, "%s", r.name);
		return true;
	}
	if (r.kind == AV_LIMITS)
		policy(t, cf, cf->on_limits, cf->score_limits, "AV_LIMITS",
		    xm_arena_printf(t->arena, "%s: %s", where, r.name));
	return false;
}

/* is_degraded - no engine now */
static bool
is_degraded(struct av_state *s)
{
	bool d;

	pthread_mutex_lock(&s->h->mu);
	d = s->h->eng == NULL;
	pthread_mutex_unlock(&s->h->mu);
	return d;
}

/* ibb_event - one IBB open, data or close */
static void
ibb_event(struct av_state *s, struct xm_task *t, const struct xm_file *f)
{
	const struct av_conf *cf = s->cf;
	const struct xm_event *ev = t->ev;
	char key[3200], name[128];
	struct ibb_snap snap;
	enum ibb_status st = IBB_OK;
	const char *where;

	if (!ibb_key(key, sizeof(key), ev->from, ev->to, f->sid)) {
		policy(t, cf, cf->on_error, cf->score_error, "AV_ERROR",
		    "IBB stream key too long");
		return;
	}
	memset(&snap, 0, sizeof(snap));
	if (is_degraded(s)) {  /* nothing is kept: it could not be scanned */
		judge(s, t, NULL, 0, "ibb", NULL, 0);
		return;
	}
	switch (f->method) {
	case XM_FT_IBB_OPEN:
		st = ibb_open(key, t->now, &s->lim);
		break;
	case XM_FT_IBB_DATA:
		st = ibb_data(key, f->seq, f->data ? f->data : "", t->now, &s->lim,
		    &snap);
		break;
	case XM_FT_IBB_CLOSE:
		st = ibb_close(key, t->now, &snap);
		if (st == IBB_UNKNOWN) {  /* the receiver may close too */
			ibb_key(key, sizeof(key), ev->to, ev->from, f->sid);
			st = ibb_close(key, t->now, &snap);
		}
		break;
	default:
		return;
	}
	where = xm_arena_printf(t->arena, "ibb sid=%s", f->sid ? f->sid : "");
	switch (st) {
	case IBB_OK:
	case IBB_UNKNOWN:
		break;
	case IBB_SCAN:
		if (snap.len > 0 && judge(s, t, snap.data, snap.len,
		    xm_arena_printf(t->arena, "%s %s %zu bytes", where,
		    snap.final ? "whole" : "first", snap.len), name, sizeof(name)) &&
		    !snap.final)
			ibb_infected(key, name, t->now);
		break;
	case IBB_INFECTED:
		/* the close of an infected stream passes: both ends hang up */
		if (f->method != XM_FT_IBB_CLOSE)
			virus(t, cf, snap.virus, xm_arena_printf(t->arena,
			    "%s, rest of an infected stream", where), false);
		break;
	case IBB_TOO_BIG:
		policy(t, cf, cf->on_limits, cf->score_limits, "AV_LIMITS",
		    xm_arena_printf(t->arena, "%s: stream larger than "
		    "ibb_max_stream %lld", where, cf->ibb_max_stream));
		break;
	case IBB_NO_MEMORY:
		policy(t, cf, cf->on_limits, cf->score_limits, "AV_LIMITS",
		    xm_arena_printf(t->arena, "%s: in-band stream buffers full "
		    "(ibb_max_total, ibb_max_streams)", where));
		break;
	case IBB_BAD_SEQ:
		policy(t, cf, cf->on_error, cf->score_error, "AV_ERROR",
		    xm_arena_printf(t->arena, "%s: chunk %lld out of order",
		    where, f->seq));
		break;
	case IBB_BAD_DATA:
		policy(t, cf, cf->on_error, cf->score_error, "AV_ERROR",
		    xm_arena_printf(t->arena, "%s: data is not base64", where));
		break;
	}
	free(snap.data);
}

/* path_allowed - PATH (resolved) lies in one of upload_dirs, or any */
static bool
path_allowed(const struct av_conf *cf, const char *path)
{
	char real[PATH_MAX];
	size_t i, n;

	if (path[0] != '/')
		return false;
	if (cf->upload_dirs.n == 0)
		return true;
	if (realpath(path, real) == NULL)
		return false;
	for (i = 0; i < cf->upload_dirs.n; i++) {
		n = strlen(cf->upload_dirs.v[i]);
		while (n > 1 && cf->upload_dirs.v[i][n - 1] == '/')
			n--;
		if (strncmp(real, cf->upload_dirs.v[i], n) == 0 && real[n] == '/')
			return true;
	}
	return false;
}

/* read_upload - PATH's bytes (at most max_file_size) into *OUT; 0, 1 when
 * too large (SIZE set), -1 with ERR */
static int
read_upload(const struct av_conf *cf, const char *path, unsigned char **out,
    size_t *len, long long *size, char *err, size_t errlen)
{
	struct stat sb;
	unsigned char *buf;
	size_t off = 0;
	int fd;

	if (!path_allowed(cf, path)) {
		snprintf(err, errlen, "file-path %s is not allowed (upload_dirs)",
		    path);
		return -1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	*size = (long long)sb.st_size;
	if (sb.st_size > cf->max_file_size) {
		close(fd);
		return 1;
	}
	buf = xm_malloc((size_t)sb.st_size + 1);
	while (off < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + off, (size_t)sb.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;  /* shrank while we read: scan what is there */
		off += (size_t)n;
	}
	close(fd);
	*out = buf;
	*len = off;
	return 0;
}

/* upload_event - scan the stored file an upload event names */
static void
upload_event(struct av_state *s, struct xm_task *t, const char *path)
{
	const struct av_conf *cf = s->cf;
	const char *url = xm_event_field(t->ev, "file-url");
	unsigned char *buf = NULL;
	size_t len = 0;
	long long size = -1;
	char err[PATH_MAX + 100], name[128];
	int rc;

	if (is_degraded(s)) {
		judge(s, t, NULL, 0, "upload", NULL, 0);
		return;
	}
	rc = read_upload(cf, path, &buf, &len, &size, err, sizeof(err));
	if (rc < 0) {
		policy(t, cf, cf->on_error, cf->score_error, "AV_ERROR", err);
		return;
	}
	if (rc == 1) {
		policy(t, cf, cf->on_limits, cf->score_limits, "AV_LIMITS",
		    xm_arena_printf(t->arena, "upload of %lld bytes > "
		    "max_file_size %lld", size, cf->max_file_size));
		return;
	}
	if (judge(s, t, buf, len, xm_arena_printf(t->arena, "upload %zu bytes",
	    len), name, sizeof(name)) && url != NULL && *url != '\0') {
		avstate_url_add(url, name, t->now);
		log_info("antivirus: upload %s infected (%s): URL remembered",
		    url, name);
	}
	free(buf);
}

/* each_url - call FN on every http(s) URL of EV (OOB, rich text, file
 * offers, and URLs written in bodies) until it returns true */
static bool
each_url(const struct xm_event *ev, bool (*fn)(const char *, size_t, void *),
    void *arg)
{
	size_t i;

	for (i = 0; i < ev->nurls; i++)
		if (ev->urls[i].url && fn(ev->urls[i].url, strlen(ev->urls[i].url),
		    arg))
			return true;
	for (i = 0; i < ev->nfiles; i++)
		if (ev->files[i].url && fn(ev->files[i].url,
		    strlen(ev->files[i].url), arg))
			return true;
	for (i = 0; i < ev->nbodies; i++) {
		const char *p = ev->bodies[i].text;

		while (p && (p = strstr(p, "://")) != NULL) {
			const char *b = p, *e = p + 3;

			while (b > ev->bodies[i].text && ((b[-1] >= 'a' &&
			    b[-1] <= 'z') || (b[-1] >= 'A' && b[-1] <= 'Z')))
				b--;
			while (*e && *e != ' ' && *e != '\n' && *e != '\t' &&
			    *e != '<' && *e != '>' && *e != '"' && *e != '\'')
				e++;
			if (fn(b, (size_t)(e - b), arg))
				return true;
			p = e;
		}
	}
	return false;
}

struct url_hit {
	double now;
	char virus[128];
	const char *url;
	size_t len;
};

/* url_hit - FN for each_url: is this an infected upload's URL */
static bool
url_hit(const char *url, size_t len, void *arg)
{
	struct url_hit *h = arg;

	if (!avstate_url_find(url, len, h->now, h->virus, sizeof(h->virus)))
		return false;
	h->url = url;
	h->len = len;
	return true;
}

/* has_bytes - the event carries file bytes this filter scans */
static bool
has_bytes(const struct xm_event *ev)
{
	size_t i;

	for (i = 0; i < ev->nfiles; i++)
		if (ev->files[i].method == XM_FT_IBB_OPEN ||
		    ev->files[i].method == XM_FT_IBB_DATA ||
		    ev->files[i].method == XM_FT_IBB_CLOSE)
			return true;
	return xm_event_field(ev, "file-path") != NULL;
}

/* antivirus_wants - only events with file bytes, or sharing a known
 * infected URL (a look-up in a small set, no scan) */
static bool
antivirus_wants(void *state, const struct xm_task *t)
{
	struct av_state *s = state;
	struct url_hit h = { .now = t->now };

	if (has_bytes(t->ev))
		return true;
	if (!s->cf->block_infected_urls || avstate_url_count() == 0)
		return false;
	return each_url(t->ev, url_hit, &h);
}

/* antivirus_check - on a worker: scan what the event carries */
static void
antivirus_check(void *state, struct xm_task *t)
{
	struct av_state *s = state;
	const struct xm_event *ev = t->ev;
	const char *path = xm_event_field(ev, "file-path");
	struct url_hit h = { .now = t->now };
	size_t i;

	if (s->cf->block_infected_urls && avstate_url_count() > 0 &&
	    each_url(ev, url_hit, &h)) {
		xm_task_symbol(t, "AV_INFECTED_URL", s->cf->score_virus, 0,
		    "%.*s (%s)", (int)(h.len > 200 ? 200 : h.len), h.url, h.virus);
		xm_task_final(t, XM_REJECT, "not-acceptable",
		    xm_arena_printf(t->arena, "%s (%s)", s->cf->virus_text,
		    h.virus));
		return;
	}
	if (path != NULL) {
		upload_event(s, t, path);
		return;
	}
	for (i = 0; i < ev->nfiles && !t->final; i++)
		ibb_event(s, t, &ev->files[i]);
}

/* antivirus_status - HELLO/health: why degraded, or nothing */
static bool
antivirus_status(void *state, char *buf, size_t len)
{
	struct av_state *s = state;
	bool bad;

	pthread_mutex_lock(&s->h->mu);
	bad = s->h->eng == NULL;
	if (bad)
		snprintf(buf, len, "antivirus %s", s->h->status);
	pthread_mutex_unlock(&s->h->mu);
	return bad;
}

const struct xm_filter_ops antivirus_filter = {
	.name = "antivirus",
	.abi = XM_FILTER_ABI,
	.flags = XM_FILTER_SLOW | XM_FILTER_OPTIN,
	.conf_size = sizeof(struct av_conf),
	.settings = antivirus_settings,
	.init = antivirus_init,
	.check = antivirus_check,
	.free = antivirus_free,
	.wants = antivirus_wants,
	.status = antivirus_status,
};
