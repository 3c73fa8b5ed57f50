/*
 * avscan.c - antivirus benchmark: xmilterd's scanning against a bare
 * libclamav loop over the same files
 *
 * Purpose
 *	Four measurements for bench/av.sh:
 *
 *	  baseline  a bare libclamav loop: T threads take the files in turn,
 *	            cl_scandesc each (the engine built from the same database
 *	            with the same limits as the daemon's) - what the daemon's
 *	            scanning must come close to
 *	  daemon    the same files as upload events (file-path=) to xmilterd,
 *	            pipelined on one connection: reading, hashing, the chain,
 *	            the protocol and libclamav together
 *	  fanout    one file sent to N recipients as N in-band streams
 *	            (XEP-0047 open, data chunks, close), one after the other:
 *	            with the result cache only the first is scanned
 *	  streams   N in-band streams at once, their chunks interleaved: the
 *	            daemon's memory (VmHWM) while all are open
 *
 *	Each prints one machine-readable line "avscan MODE key=value ...".
 *
 * Usage
 *	avscan baseline -d DBDIR [-t THREADS] [-r ROUNDS] FILE...
 *	avscan daemon -s SOCKET [-w WINDOW] [-r ROUNDS] [-p PID] FILE...
 *	avscan fanout -s SOCKET [-n STREAMS] [-c CHUNK] FILE
 *	avscan streams -s SOCKET [-n STREAMS] [-z BYTES] [-c CHUNK] [-p PID]
 *
 * Failure
 *	Exit 1 on a broken connection or protocol error, 2 on usage errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <clamav.h>

#include "benchutil.h"
#include "proto.h"
#include "util.h"

static struct {
	const char *db, *sock;
	long threads, window, rounds, n, chunk, pid;
	long long size;
} opt = { .threads = 2, .window = 32, .rounds = 1, .n = 50, .chunk = 4096,
	.size = 1 << 20 };

static char **files;
static size_t nfiles;

static void
usage(void)
{
	fputs("usage: avscan baseline -d DBDIR [-t THREADS] [-r ROUNDS] FILE...\n"
	    "       avscan daemon -s SOCKET [-w WINDOW] [-r ROUNDS] FILE...\n"
	    "       avscan fanout -s SOCKET [-n STREAMS] [-c CHUNK] FILE\n"
	    "       avscan streams -s SOCKET [-n STREAMS] [-z BYTES] [-c CHUNK] "
	    "[-p PID]\n", stderr);
	exit(2);
}

/* total_bytes - the sizes of all files */
static long long
total_bytes(void)
{
	long long t = 0;
	struct stat sb;
	size_t i;

	for (i = 0; i < nfiles; i++)
		if (stat(files[i], &sb) == 0)
			t += sb.st_size;
	return t;
}

/* self_cpu - user + system seconds of this process */
static double
self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* pid_cpu - user + system seconds of process PID (-1 unknown) */
static double
pid_cpu(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	    &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- baseline: a bare libclamav loop ---- */

static struct cl_engine *engine;
static atomic_size_t next_file;
static atomic_long nvirus, nclean, nerr;

static void *
scan_thread(void *arg)
{
	struct cl_scan_options o = { 0 };
	size_t i;

	o.parse = ~0u;
	o.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;
	while ((i = atomic_fetch_add(&next_file, 1)) < nfiles * (size_t)opt.rounds) {
		const char *vn = NULL;
		unsigned long sc = 0;
		int fd = open(files[i % nfiles], O_RDONLY);
		cl_error_t rc;

		if (fd < 0) {
			atomic_fetch_add(&nerr, 1);
			continue;
		}
		if (getenv("AVSCAN_MEMORY")) {
			struct stat sb;
			unsigned char *b;
			cl_fmap_t *m;

			fstat(fd, &sb);
			b = xm_malloc((size_t)sb.st_size + 1);
			if (read(fd, b, (size_t)sb.st_size) != sb.st_size)
				atomic_fetch_add(&nerr, 1);
			m = cl_fmap_open_memory(b, (size_t)sb.st_size);
			rc = cl_scanmap_callback(m, NULL, &vn, &sc, engine, &o, NULL);
			cl_fmap_close(m);
			free(b);
		} else
			rc = cl_scandesc(fd, NULL, &vn, &sc, engine, &o);
		close(fd);
		if (rc == CL_VIRUS)
			atomic_fetch_add(&nvirus, 1);
		else if (rc == CL_CLEAN)
			atomic_fetch_add(&nclean, 1);
		else
			atomic_fetch_add(&nerr, 1);
	}
	return NULL;
}

static int
baseline(void)
{
	char tmpl[] = "/tmp/avscan-XXXXXX";
	pthread_t th[64];
	unsigned sigs = 0;
	double t0, t, cpu;
	long i;
	int rc;

	if (!opt.db || opt.threads < 1 || opt.threads > 64)
		usage();
	if ((rc = cl_init(CL_INIT_DEFAULT)) != CL_SUCCESS)
		fatalx("cl_init: %s", cl_strerror(rc));
	engine = cl_engine_new();
	if (mkdtemp(tmpl) == NULL)
		fatalx("mkdtemp: %s", strerror(errno));
	/* the daemon's defaults (filters.antivirus) */
	cl_engine_set_str(engine, CL_ENGINE_TMPDIR, tmpl);
	cl_engine_set_num(engine, CL_ENGINE_MAX_FILESIZE, 25LL << 20);
	cl_engine_set_num(engine, CL_ENGINE_MAX_SCANSIZE, 100LL << 20);
	cl_engine_set_num(engine, CL_ENGINE_MAX_RECURSION, 16);
	cl_engine_set_num(engine, CL_ENGINE_MAX_FILES, 10000);
	cl_engine_set_num(engine, CL_ENGINE_MAX_SCANTIME, 30000);
	if ((rc = cl_load(opt.db, engine, &sigs, CL_DB_STDOPT)) != CL_SUCCESS ||
	    (rc = cl_engine_compile(engine)) != CL_SUCCESS)
		fatalx("%s: %s", opt.db, cl_strerror(rc));
	t0 = now();
	cpu = self_cpu();
	for (i = 0; i < opt.threads; i++)
		pthread_create(&th[i], NULL, scan_thread, NULL);
	for (i = 0; i < opt.threads; i++)
		pthread_join(th[i], NULL);
	t = now() - t0;
	cpu = self_cpu() - cpu;
	printf("avscan baseline threads=%ld files=%zu bytes=%lld seconds=%.3f "
	    "files_per_s=%.1f mb_per_s=%.2f cpu_s=%.3f mb_per_cpu_s=%.2f "
	    "virus=%ld clean=%ld errors=%ld signatures=%u\n", opt.threads,
	    nfiles * (size_t)opt.rounds, total_bytes() * opt.rounds, t,
	    (double)nfiles * opt.rounds / t,
	    (double)total_bytes() * opt.rounds / t / 1e6, cpu,
	    (double)total_bytes() * opt.rounds / cpu / 1e6, (long)nvirus,
	    (long)nclean, (long)nerr, sigs);
	cl_engine_free(engine);
	rmdir(tmpl);
	return 0;
}

/* ---- a protocol connection ---- */

static int fd = -1;
static struct xm_buf in, out;
static uint64_t next_id = 1;

static void
conn_open(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", opt.sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		fatalx("connect %s: %s", opt.sock, strerror(errno));
}

/* flush - write all of OUT */
static void
flush(void)
{
	size_t off = 0;

	while (off < out.len) {
		ssize_t n = write(fd, out.data + off, out.len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fatalx("write: %s", strerror(errno));
		off += (size_t)n;
	}
	xm_buf_reset(&out);
}

struct verdict_count {
	long n, accept, reject, cached, limits, virus;
};

/* read_frame - the next frame (blocking); FN sees each verdict body */
static void
read_frame(struct proto_frame *f, struct xm_buf *keep)
{
	for (;;) {
		size_t used = 0;
		int code, prc;
		char err[256], tmp[65536];
		ssize_t n;

		prc = proto_parse_frame(in.data ? in.data : "", in.len,
		    PROTO_MAX_FRAME_LIMIT, f, &used, &code, err, sizeof(err));
		if (prc < 0)
			fatalx("protocol: %s", err);
		if (prc > 0) {
			xm_buf_reset(keep);
			xm_buf_append(keep, f->body, f->len);
			f->body = keep->data ? keep->data : "";
			xm_buf_consume(&in, used);
			return;
		}
		if ((n = read(fd, tmp, sizeof(tmp))) <= 0)
			fatalx("daemon closed the connection");
		xm_buf_append(&in, tmp, (size_t)n);
	}
}

/* hello - HELLO both ways */
static void
hello(void)
{
	static const char b[] = "version=1\nserver=avscan\nmax-frame=16777216\n";
	struct proto_frame f;
	struct xm_buf keep = { 0 };

	proto_write_frame(&out, PROTO_HELLO, 0, b, sizeof(b) - 1);
	flush();
	read_frame(&f, &keep);
	if (f.verb != PROTO_HELLO)
		fatalx("no HELLO from the daemon");
	xm_buf_free(&keep);
}

/* count - tally one verdict body */
static void
count(struct verdict_count *c, const struct proto_frame *f)
{
	const char *b = f->body;

	c->n++;
	if (memmem(b, f->len, "action=accept", 13))
		c->accept++;
	if (memmem(b, f->len, "action=reject", 13))
		c->reject++;
	if (memmem(b, f->len, "cached)", 7))
		c->cached++;
	if (memmem(b, f->len, "symbol=AV_LIMITS", 16))
		c->limits++;
	if (memmem(b, f->len, "symbol=AV_VIRUS", 15))
		c->virus++;
}

/* send_event - one FILTER with body TEXT */
static void
send_event(const char *text)
{
	proto_write_frame(&out, PROTO_FILTER, next_id++, text, strlen(text));
}

/* ---- daemon: upload events ---- */

/* cmp_double - qsort order */
static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int
daemon_mode(void)
{
	struct verdict_count c = { 0 };
	struct xm_buf keep = { 0 };
	struct proto_frame f;
	long total = (long)nfiles * opt.rounds, sent = 0, got = 0;
	double t0, t, cpu, *lat = xm_calloc((size_t)total, sizeof(*lat));
	double *start = xm_calloc((size_t)total + 1, sizeof(*start));
	char path[PATH_MAX], ev[PATH_MAX + 512];

	conn_open();
	hello();
	t0 = now();
	cpu = opt.pid > 0 ? pid_cpu(opt.pid) : -1;
	while (got < total) {
		while (sent < total && sent - got < opt.window) {
			if (realpath(files[sent % (long)nfiles], path) == NULL)
				fatalx("%s: %s", files[sent % (long)nfiles], strerror(errno));
			snprintf(ev, sizeof(ev), "origin=c2s\nauth=bench@example.org\n"
			    "upload=stored\nfile-path=%s\n\n<iq type='set' "
			    "from='bench@example.org/b' to='upload.example.org' "
			    "id='u%ld'><request xmlns='urn:xmpp:http:upload:0' "
			    "filename='f%ld'/></iq>", path, sent, sent);
			start[next_id] = now();
			send_event(ev);
			sent++;
		}
		flush();
		read_frame(&f, &keep);
		if (f.verb != PROTO_VERDICT)
			fatalx("unexpected %s", proto_verb_name(f.verb));
		lat[got++] = now() - start[f.id];
		count(&c, &f);
	}
	t = now() - t0;
	if (cpu >= 0)
		cpu = pid_cpu(opt.pid) - cpu;
	qsort(lat, (size_t)total, sizeof(*lat), cmp_double);
	printf("avscan daemon window=%ld files=%ld bytes=%lld seconds=%.3f "
	    "files_per_s=%.1f mb_per_s=%.2f cpu_s=%.3f mb_per_cpu_s=%.2f "
	    "p50_ms=%.2f p99_ms=%.2f virus=%ld "
	    "limits=%ld accept=%ld cached=%ld\n", opt.window, total,
	    total_bytes() * opt.rounds, t, total / t,
	    (double)total_bytes() * opt.rounds / t / 1e6, cpu,
	    cpu > 0 ? (double)total_bytes() * opt.rounds / cpu / 1e6 : -1,
	    lat[total / 2] * 1000, lat[(total * 99) / 100] * 1000, c.virus,
	    c.limits, c.accept, c.cached);
	free(lat);
	free(start);
	xm_buf_free(&keep);
	return 0;
}

/* ---- in-band streams ---- */

static char *b64buf;

/* b64 - base64 of N bytes into the shared buffer */
static const char *
b64(const unsigned char *s, size_t n)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *q;
	size_t i;

	b64buf = xm_realloc(b64buf, n / 3 * 4 + 8);
	q = b64buf;
	for (i = 0; i + 2 < n; i += 3) {
		*q++ = al[s[i] >> 2];
		*q++ = al[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
		*q++ = al[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
		*q++ = al[s[i + 2] & 63];
	}
	if (n - i == 1) {
		*q++ = al[s[i] >> 2];
		*q++ = al[(s[i] & 3) << 4];
		*q++ = '=';
		*q++ = '=';
	} else if (n - i == 2) {
		*q++ = al[s[i] >> 2];
		*q++ = al[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
		*q++ = al[(s[i + 1] & 15) << 2];
		*q++ = '=';
	}
	*q = '\0';
	return b64buf;
}

/* ibb_event - the event text of an IBB element for stream K */
static char *
ibb_event(long k, const char *what, long seq, const char *data)
{
	if (strcmp(what, "data") == 0)
		return xm_printf("origin=c2s\nauth=bench@example.org\n\n<iq "
		    "type='set' from='bench@example.org/b' to='r%ld@example.org/x' "
		    "id='i%ld-%ld'><data xmlns='http://jabber.org/protocol/ibb' "
		    "sid='bs%ld' seq='%ld'>%s</data></iq>", k, k, seq, k, seq, data);
	return xm_printf("origin=c2s\nauth=bench@example.org\n\n<iq type='set' "
	    "from='bench@example.org/b' to='r%ld@example.org/x' id='i%ld-%s'>"
	    "<%s xmlns='http://jabber.org/protocol/ibb' sid='bs%ld'%s/></iq>", k,
	    k, what, what, k, strcmp(what, "open") == 0 ? " block-size='4096'" :
	    "");
}

/* rpc - send TEXT, wait for its verdict */
static void
rpc(char *text, struct verdict_count *c, struct xm_buf *keep)
{
	struct proto_frame f;

	send_event(text);
	free(text);
	flush();
	read_frame(&f, keep);
	count(c, &f);
}

/* read_file - the whole of PATH, heap */
static unsigned char *
read_all(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *b;
	struct stat sb;

	if (fp == NULL || fstat(fileno(fp), &sb) < 0)
		fatalx("%s: %s", path, strerror(errno));
	b = xm_malloc((size_t)sb.st_size + 1);
	*len = fread(b, 1, (size_t)sb.st_size, fp);
	fclose(fp);
	return b;
}

static int
fanout(void)
{
	struct verdict_count c = { 0 }, close_c = { 0 };
	struct xm_buf keep = { 0 };
	unsigned char *data;
	size_t len, off;
	long k, seq;
	double t0, t;

	if (nfiles != 1)
		usage();
	data = read_all(files[0], &len);
	conn_open();
	hello();
	t0 = now();
	for (k = 0; k < opt.n; k++) {
		rpc(ibb_event(k, "open", 0, NULL), &c, &keep);
		for (off = 0, seq = 0; off < len; off += (size_t)opt.chunk, seq++) {
			size_t n = len - off < (size_t)opt.chunk ? len - off :
			    (size_t)opt.chunk;

			rpc(ibb_event(k, "data", seq, b64(data + off, n)), &c, &keep);
		}
		rpc(ibb_event(k, "close", 0, NULL), &close_c, &keep);
	}
	t = now() - t0;
	printf("avscan fanout streams=%ld bytes_each=%zu seconds=%.3f "
	    "ms_per_stream=%.2f verdicts=%ld rejected=%ld cached=%ld\n", opt.n,
	    len, t, t * 1000 / opt.n, c.n + close_c.n, c.reject + close_c.reject,
	    c.cached + close_c.cached);
	free(data);
	xm_buf_free(&keep);
	return 0;
}

/* rss - VmRSS and VmHWM of PID in kB */
static void
rss(long pid, long *cur, long *hwm)
{
	char path[64], line[256];
	FILE *fp;

	*cur = *hwm = -1;
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	if ((fp = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), fp)) {
		sscanf(line, "VmRSS: %ld", cur);
		sscanf(line, "VmHWM: %ld", hwm);
	}
	fclose(fp);
}

static int
streams(void)
{
	struct verdict_count c = { 0 };
	struct xm_buf keep = { 0 };
	struct proto_frame f;
	unsigned char *chunk = xm_malloc((size_t)opt.chunk);
	long k, seq, nseq = (long)((opt.size + opt.chunk - 1) / opt.chunk);
	long r0 = -1, h0 = -1, r1 = -1, h1 = -1, r2, h2, inflight = 0;
	double t0, t;

	for (k = 0; k < opt.chunk; k++)
		chunk[k] = (unsigned char)(k * 7 + 3);
	conn_open();
	hello();
	if (opt.pid > 0)
		rss(opt.pid, &r0, &h0);
	t0 = now();
	for (k = 0; k < opt.n; k++)
		rpc(ibb_event(k, "open", 0, NULL), &c, &keep);
	/* round-robin: every stream gets its chunk SEQ before any gets SEQ+1 */
	for (seq = 0; seq < nseq; seq++) {
		for (k = 0; k < opt.n; k++) {
			chunk[0] = (unsigned char)k;  /* streams differ: no sharing */
			chunk[1] = (unsigned char)seq;
			chunk[2] = (unsigned char)(seq >> 8);
			char *e = ibb_event(k, "data", seq & 0xffff,
			    b64(chunk, (size_t)opt.chunk));

			send_event(e);
			free(e);
			inflight++;
			if (inflight >= opt.window) {
				flush();
				read_frame(&f, &keep);
				count(&c, &f);
				inflight--;
			}
		}
	}
	flush();
	while (inflight > 0) {
		read_frame(&f, &keep);
		count(&c, &f);
		inflight--;
	}
	if (opt.pid > 0)
		rss(opt.pid, &r1, &h1);
	for (k = 0; k < opt.n; k++)
		rpc(ibb_event(k, "close", 0, NULL), &c, &keep);
	t = now() - t0;
	if (opt.pid > 0)
		rss(opt.pid, &r2, &h2);
	printf("avscan streams=%ld bytes_each=%lld buffered_mb=%.1f seconds=%.3f "
	    "mb_per_s=%.2f verdicts=%ld limits=%ld rss_start_kb=%ld "
	    "rss_open_kb=%ld rss_end_kb=%ld hwm_kb=%ld\n", opt.n,
	    (long long)nseq * opt.chunk, (double)opt.n * nseq * opt.chunk / 1e6,
	    t, (double)opt.n * nseq * opt.chunk / t / 1e6, c.n, c.limits, r0, r1,
	    opt.pid > 0 ? r2 : -1, opt.pid > 0 ? h2 : -1);
	free(chunk);
	xm_buf_free(&keep);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *mode;
	int c;

	if (argc < 2)
		usage();
	mode = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "d:s:t:w:r:n:c:z:p:")) != -1) {
		switch (c) {
		case 'd': opt.db = optarg; break;
		case 's': opt.sock = optarg; break;
		case 't': opt.threads = (long)num(optarg, 1, 64); break;
		case 'w': opt.window = (long)num(optarg, 1, 100000); break;
		case 'r': opt.rounds = (long)num(optarg, 1, 10000); break;
		case 'n': opt.n = (long)num(optarg, 1, 100000); break;
		case 'c': opt.chunk = (long)num(optarg, 16, 65535); break;
		case 'z': opt.size = (long long)num(optarg, 1, 1e12); break;
		case 'p': opt.pid = (long)num(optarg, 1, 1e9); break;
		default: usage();
		}
	}
	files = argv + optind;
	nfiles = (size_t)(argc - optind);
	xm_log_prog = "avscan";
	if (strcmp(mode, "baseline") == 0 && nfiles > 0)
		return baseline();
	if (!opt.sock)
		usage();
	if (strcmp(mode, "daemon") == 0 && nfiles > 0)
		return daemon_mode();
	if (strcmp(mode, "fanout") == 0)
		return fanout();
	if (strcmp(mode, "streams") == 0)
		return streams();
	usage();
	return 2;
}
