/*
 * ibb.h - reassembly of in-band bytestreams (XEP-0047) for scanning
 *
 * A process-global table of open streams, keyed by "from|to|sid" (the
 * sender's and the receiver's JIDs as the stanza names them, and the
 * stream id), that survives a configuration reload. Each data chunk is
 * appended in order; the caller (the antivirus filter, on worker threads)
 * gets a copy of a prefix to scan at once for the first chunk (a small
 * file is then scanned before any of it is delivered), then at growing
 * checkpoints (step, 2*step, 4*step, ...: a stream of N bytes costs at
 * most about 2N bytes of scanning,
 * and streams with the same content are cut at the same lengths, so the
 * result cache serves them), and the whole stream at close.
 *
 * Bounds: bytes per stream, bytes in all streams, number of streams;
 * streams idle longer than the idle time are dropped (their memory
 * freed). All are passed with every call, so a reload that changes them
 * applies at once. A stream found infected, past a limit or out of
 * sequence keeps a small tombstone (its buffer freed) until it expires,
 * so the rest of it is refused rather than scanned as a new stream.
 *
 * Thread safety: one mutex around the table; snapshots are copies the
 * caller frees, so scans run without the lock.
 */
#ifndef XM_IBB_H
#define XM_IBB_H

#include <stdbool.h>
#include <stddef.h>

struct ibb_limits {
	size_t max_stream;   /* bytes buffered per stream */
	size_t max_total;    /* bytes buffered in all streams */
	size_t max_streams;  /* open streams */
	double idle;         /* seconds without data before a stream expires */
	size_t step;         /* first scan checkpoint, bytes (0: only at close) */
};

enum ibb_status {
	IBB_OK = 0,        /* stored; nothing to scan now */
	IBB_SCAN,          /* stored; scan the snapshot */
	IBB_INFECTED,      /* the stream was found infected: refuse */
	IBB_TOO_BIG,       /* the stream passed max_stream: cannot be scanned */
	IBB_NO_MEMORY,     /* max_total or max_streams reached */
	IBB_BAD_SEQ,       /* a chunk out of order: the stream is broken */
	IBB_UNKNOWN,       /* close of a stream never seen */
	IBB_BAD_DATA,      /* data that is not base64 */
};

struct ibb_snap {
	unsigned char *data;   /* heap copy, the caller frees */
	size_t len;
	bool final;            /* the whole stream (at close) */
	char virus[128];       /* IBB_INFECTED: the signature found */
};

struct ibb_stats {
	size_t streams, bytes, peak_bytes;
	unsigned long long expired;
};

/* ibb_key - "FROM|TO|SID" in BUF; false when it does not fit */
bool ibb_key(char *buf, size_t len, const char *from, const char *to,
    const char *sid);
/* ibb_open - a stream starts (an existing one with the key restarts) */
enum ibb_status ibb_open(const char *key, double now, const struct ibb_limits *l);
/* ibb_data - append the base64 chunk B64 with sequence SEQ (-1: unknown);
 * an unknown stream is opened implicitly. IBB_SCAN fills SNAP */
enum ibb_status ibb_data(const char *key, long long seq, const char *b64,
    double now, const struct ibb_limits *l, struct ibb_snap *snap);
/* ibb_close - the stream ends: IBB_SCAN with the whole stream in SNAP
 * (removed from the table), IBB_INFECTED, IBB_TOO_BIG or IBB_UNKNOWN */
enum ibb_status ibb_close(const char *key, double now, struct ibb_snap *snap);
/* ibb_infected - mark KEY infected with VIRUS: its buffer is freed and
 * what follows is refused until it expires */
void ibb_infected(const char *key, const char *virus, double now);
/* ibb_get_stats - streams and bytes now, peak bytes, expired so far */
void ibb_get_stats(struct ibb_stats *s);
/* ibb_reset - drop every stream (tests) */
void ibb_reset(void);
/* ibb_b64_decode - decode base64 S into OUT (at least 3 * strlen / 4 + 3
 * bytes); whitespace is skipped; -1 on bad input, else the length */
long ibb_b64_decode(const char *s, unsigned char *out);

#endif
