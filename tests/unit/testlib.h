/*
 * testlib.h - helpers the Criterion suites share
 *
 * Include once per test file. mk_tmpdir/rm_tmpdir are a suite's .init and
 * .fini: one temporary directory per test under $TMPDIR (or /tmp), removed
 * with everything in it. event() parses an event that must be valid.
 * free_port() names a loopback port nothing listens on at the moment (for
 * servers a suite starts: it may be taken before they bind, so retry).
 */
#ifndef XM_TESTLIB_H
#define XM_TESTLIB_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string.h>

#include <criterion/criterion.h>

#include "event.h"

static char tmpdir[PATH_MAX];

/* mk_tmpdir - a fresh directory in tmpdir */
static inline void
mk_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/xm-test-XXXXXX",
	    base != NULL && *base != '\0' ? base : "/tmp");
	cr_assert_not_null(mkdtemp(tmpdir));
}

/* rm_tmpdir - remove it and what it holds */
static inline void
rm_tmpdir(void)
{
	char cmd[PATH_MAX + 16];

	if (tmpdir[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	tmpdir[0] = '\0';
}

/* event - parse TEXT in A; the test fails if it does not parse */
static inline struct xm_event *
event(struct xm_arena *a, const char *text)
{
	struct xm_event_limits lim;
	struct xm_event *ev;
	size_t used;
	char err[256];

	xm_event_limits_default(&lim);
	cr_assert_eq(xm_event_parse(a, text, strlen(text), &lim, &ev, &used, err,
	    sizeof(err)), 0, "%s", err);
	return ev;
}

/* free_port - a loopback port nothing listens on at the moment */
static inline int
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

#endif
