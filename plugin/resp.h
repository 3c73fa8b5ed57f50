/*
 * resp.h - one reply of Redis's protocol (RESP2) read from a buffer: no
 * I/O, no allocation (resp.c)
 *
 * The pipelined connection (state_pipe.c) reads many replies per system
 * call and hands each to xm_redis_results, which reads hiredis's reply
 * type; the replies parsed here are of that type, their strings pointing
 * into the caller's buffer. What is read: simple strings, errors,
 * integers, bulk strings (binary, up to XM_RESP_MAXBULK bytes), nil, and
 * at the top level one array of up to XM_RESP_MAXELEM of those (no
 * nesting: the state script never answers with one).
 */
#ifndef XM_RESP_H
#define XM_RESP_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#define XM_RESP_MAXELEM 256
#define XM_RESP_MAXBULK (4 * 1024 * 1024)
#define XM_RESP_MAXLINE (64 * 1024)     /* a status or error line */

struct xm_resp {
	redisReply top;
	redisReply elem[XM_RESP_MAXELEM];
	redisReply *ptr[XM_RESP_MAXELEM];
};

/* xm_resp_parse - the reply at BUF[0..LEN): 1 when it is whole (*USED
 * bytes, OUT->top filled; its strings point into BUF and are
 * NUL-terminated in place, over the '\r' that ends each), 0 when more
 * bytes are needed (BUF unchanged), -1 when the bytes are not a reply read
 * here (bad syntax, nested arrays, sizes past the limits) */
int xm_resp_parse(char *buf, size_t len, size_t *used, struct xm_resp *out);

#endif
