/*
 * tmpdir.h - one temporary directory per test, for the Criterion suites
 *
 * Include once per test file; use mk_tmpdir/rm_tmpdir as a suite's .init
 * and .fini. The directory lives under $TMPDIR (or /tmp) and is removed
 * with everything in it.
 */
#ifndef XM_TEST_TMPDIR_H
#define XM_TEST_TMPDIR_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <criterion/criterion.h>

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

#endif
