/*
 * util.h - allocation that cannot fail, arenas, growing buffers, logging
 *
 * xm_malloc and friends abort on out-of-memory (there is nothing sensible
 * to do then). An arena hands out memory that is freed all at once by
 * xm_arena_free; a task owns one, so a cancelled request cannot leak.
 * Logging checks the level before formatting and escapes peer strings
 * with log_escape.
 */
#ifndef XM_UTIL_H
#define XM_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define XM_NORETURN __attribute__((noreturn))
#define XM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xm_malloc(size_t n);
void *xm_calloc(size_t n, size_t size);
void *xm_realloc(void *p, size_t n);
/* xm_reallocarray - realloc with overflow check on n * size */
void *xm_reallocarray(void *p, size_t n, size_t size);
char *xm_strdup(const char *s);
char *xm_strndup(const char *s, size_t n);
char *xm_printf(const char *fmt, ...) XM_PRINTF(1, 2);

/* ---- arenas ---- */

struct xm_arena;
struct xm_arena *xm_arena_new(void);
void *xm_arena_alloc(struct xm_arena *a, size_t n);      /* zeroed */
void *xm_arena_array(struct xm_arena *a, size_t n, size_t size);
char *xm_arena_strdup(struct xm_arena *a, const char *s);
char *xm_arena_strndup(struct xm_arena *a, const char *s, size_t n);
char *xm_arena_printf(struct xm_arena *a, const char *fmt, ...) XM_PRINTF(2, 3);
/* xm_arena_strjoin - X, Y and Z joined, in the arena */
char *xm_arena_strjoin(struct xm_arena *a, const char *x, const char *y,
    const char *z);
char *xm_arena_vprintf(struct xm_arena *a, const char *fmt, va_list ap);
/* xm_arena_grow - make room for N more elements in an arena array */
void *xm_arena_grow(struct xm_arena *a, void *p, size_t *cap, size_t used,
    size_t n, size_t size);
size_t xm_arena_used(const struct xm_arena *a);
void xm_arena_free(struct xm_arena *a);

/* ---- growing byte buffer (heap) ---- */

struct xm_buf {
	char *data;   /* always NUL-terminated when len > 0 or after append */
	size_t len, cap;
};
/* xm_buf_reserve - room for N more bytes (and a NUL) */
void xm_buf_reserve(struct xm_buf *b, size_t n);
/* xm_buf_append - append N bytes (inline: verdicts and frames are built
 * from many short pieces, and a call to the slow path per piece cost
 * more than the copying) */
static inline void
xm_buf_append(struct xm_buf *b, const void *p, size_t n)
{
	if (b->cap - b->len <= n)         /* room for N and the NUL? */
		xm_buf_reserve(b, n);
	if (n)
		__builtin_memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}
/* xm_buf_puts - append a string */
static inline void
xm_buf_puts(struct xm_buf *b, const char *s)
{
	xm_buf_append(b, s, __builtin_strlen(s));
}
void xm_buf_printf(struct xm_buf *b, const char *fmt, ...) XM_PRINTF(2, 3);
/* xm_buf_consume - drop the first N bytes */
void xm_buf_consume(struct xm_buf *b, size_t n);
void xm_buf_reset(struct xm_buf *b);
void xm_buf_free(struct xm_buf *b);
/* xm_buf_xml_escape - append S escaped for XML text and attributes */
void xm_buf_xml_escape(struct xm_buf *b, const char *s, size_t n);
/* xm_buf_xml_escape_attr - the same, also escaping tab and newline */
void xm_buf_xml_escape_attr(struct xm_buf *b, const char *s, size_t n);

/* ---- numbers ---- */

/* xm_parse_ll - whole string S as a decimal in [min, max]; 0 or -1 */
int xm_parse_ll(const char *s, long long min, long long max, long long *out);
/* xm_parse_double - whole string S as a finite number; 0 or -1 */
int xm_parse_double(const char *s, double *out);
/* xm_parse_time - RFC 3339 time to unix seconds; 0 or -1 */
int xm_parse_time(const char *s, double *out);
/* xm_now - wall clock, unix seconds */
double xm_now(void);
/* xm_monotonic - monotonic clock in seconds */
double xm_monotonic(void);

/* ---- UTF-8 ---- */

/* xm_utf8_valid - true when S[0..n) is well-formed UTF-8 */
bool xm_utf8_valid(const char *s, size_t n);
/* xm_utf8_next - decode one code point at *p (advancing it); -1 if invalid */
long xm_utf8_next(const char **p, const char *end);

/* ---- logging ---- */

enum xm_log_level { XM_LOG_ERR = 0, XM_LOG_WARN, XM_LOG_INFO, XM_LOG_DEBUG };
extern enum xm_log_level xm_log_level;
extern const char *xm_log_prog;

void xm_log_open(const char *prog, const char *path); /* path NULL: stderr */
int xm_log_level_parse(const char *s, enum xm_log_level *out);
void xm_vlog(enum xm_log_level l, const char *fmt, va_list ap);
void xm_log(enum xm_log_level l, const char *fmt, ...) XM_PRINTF(2, 3);
#define log_enabled(l) ((l) <= xm_log_level)
#define log_warn(...) do { if (log_enabled(XM_LOG_WARN)) xm_log(XM_LOG_WARN, __VA_ARGS__); } while (0)
#define log_info(...) do { if (log_enabled(XM_LOG_INFO)) xm_log(XM_LOG_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_enabled(XM_LOG_DEBUG)) xm_log(XM_LOG_DEBUG, __VA_ARGS__); } while (0)
void log_err(const char *fmt, ...) XM_PRINTF(1, 2);
/* fatalx - start-up/config/environment error: log and exit(1) */
void fatalx(const char *fmt, ...) XM_PRINTF(1, 2) XM_NORETURN;
/* panic - a broken invariant: log and abort for a core dump */
void panic(const char *fmt, ...) XM_PRINTF(1, 2) XM_NORETURN;
/* log_escape - S made safe for one log line (quoted, escaped, truncated to
 * MAX bytes) in arena A; NULL prints as - */
const char *log_escape(struct xm_arena *a, const char *s, size_t max);

/* xm_sha256 - the SHA-256 of P[0..N) into OUT (libcrypto; one place for
 * the archive chain, the antivirus cache and the block lists' hashed JIDs) */
void xm_sha256(const void *p, size_t n, unsigned char out[32]);
/* xm_hex - N bytes of P as lower-case hex into OUT (2 * N + 1 bytes) */
void xm_hex(const unsigned char *p, size_t n, char *out);

/* xm_write_all - write all N bytes of P to FD (a blocking descriptor),
 * retrying on EINTR and short writes; 0, or -1 with errno set */
int xm_write_all(int fd, const void *p, size_t n);

#endif
