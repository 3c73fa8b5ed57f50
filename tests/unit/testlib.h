/*
 * testlib.h - helpers the Criterion suites share
 *
 * Include once per test file. mk_tmpdir/rm_tmpdir are a suite's .init and
 * .fini: one temporary directory per test under $TMPDIR (or /tmp), removed
 * with everything in it. event() parses an event that must be valid.
 */
#ifndef XM_TESTLIB_H
#define XM_TESTLIB_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include <criterion/criterion.h>

#include "event.h"

static char tmpdir[PATH_MAX];

/* mk_tmpdir - a fresh directory in tmpdir */
static void
mk_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/xm-test-XXXXXX",
	    base != NULL && *base != '\0' ? base : "/tmp");
	cr_assert_not_null(mkdtemp(tmpdir));
}

/* rm_tmpdir - remove it and what it holds */
static void
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
static struct xm_event *
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

#endif
