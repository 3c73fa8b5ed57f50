/*
 * benchutil.h - the clock and the option parser the bench programs share
 *
 * Each program that includes this defines `static void usage(void)` (it
 * prints the program's own usage and exits); num() calls it on a bad
 * number.
 */
#ifndef XM_BENCHUTIL_H
#define XM_BENCHUTIL_H

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

static void usage(void);

/* now - monotonic seconds */
static inline double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* num - option S as a finite number in [min, max], or usage() */
static inline double
num(const char *s, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
		usage();
	return v;
}

#endif
