/*
 * expat-baseline.c - the ceiling: bare expat over the benchmark's stanza mix
 *
 * Purpose
 *	xmilterd parses every stanza with expat before any filter runs, so
 *	expat alone, on the same stanzas, is the most the daemon could ever
 *	do on one core. This program parses the mix of bench/stanzamix.h
 *	(the same seed gives the same bytes as bench/xmload) with handlers
 *	that do the least useful work (count elements, attributes and text
 *	bytes) and prints stanzas per second.
 *
 * Usage
 *	expat-baseline [-m reset|stream|create] [-d SECONDS] [-n ITEMS]
 *	               [-s SEED] [-q]
 *
 *	reset   one namespace-aware parser, XML_ParserReset between stanzas
 *	        (handlers set again: reset clears them) - the default
 *	stream  one parser fed one endless <stream:stream> of stanzas, as a
 *	        server's connection reader does
 *	create  a new parser per stanza (what a naive daemon does)
 *
 *	Reparse deferral is off in every mode, as in the daemon. The last
 *	line is machine-readable: "expat_baseline stanzas_per_s=N ...".
 *
 * Failure
 *	A stanza that does not parse is a bug in the mix: exit 1.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <expat.h>

#include "autoconf.h"
#include "stanzamix.h"
#include "benchutil.h"

enum mode { M_RESET, M_STREAM, M_CREATE };

struct counts {
	unsigned long long elements, attrs, text_bytes, stanzas;
	int depth;
};

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct counts *c = ud;

	c->elements++;
	c->depth++;
	for (; atts[0] != NULL; atts += 2)
		c->attrs++;
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
	struct counts *c = ud;

	if (--c->depth == 0 || (c->depth == 1 && name[0] != '\0'))
		c->stanzas++;
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
	struct counts *c = ud;

	c->text_bytes += (unsigned long long)len;
}

/* setup - handlers and options (again after every reset) */
static void
setup(XML_Parser p, struct counts *c)
{
	XML_SetUserData(p, c);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_text);
	XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
#ifdef HAVE_XML_SETREPARSEDEFERRALENABLED
	XML_SetReparseDeferralEnabled(p, XML_FALSE);
#endif
}

/* fail - a stanza of the mix did not parse */
static void
fail(XML_Parser p, const struct mix_item *it)
{
	fprintf(stderr, "expat-baseline: parse error: %s in: %.200s\n",
	    XML_ErrorString(XML_GetErrorCode(p)), it->stanza);
	exit(1);
}

static void
usage(void)
{
	fprintf(stderr, "usage: expat-baseline [-m reset|stream|create] "
	    "[-d SECONDS] [-n ITEMS] [-s SEED] [-q]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const char stream_open[] = "<stream:stream xmlns='jabber:client' "
	    "xmlns:stream='http://etherx.jabber.org/streams' to='example.org' "
	    "version='1.0'>";
	enum mode mode = M_RESET;
	double secs = 5, t0, t1;
	size_t nitems = 10000, i = 0;
	uint64_t seed = 1;
	unsigned long long done = 0, bytes = 0;
	struct counts c = { 0 };
	XML_Parser p = NULL;
	struct rusage ru;
	struct mix *m;
	bool quiet = false;
	int opt;

	while ((opt = getopt(argc, argv, "m:d:n:s:qh")) != -1) {
		switch (opt) {
		case 'm':
			if (strcmp(optarg, "reset") == 0)
				mode = M_RESET;
			else if (strcmp(optarg, "stream") == 0)
				mode = M_STREAM;
			else if (strcmp(optarg, "create") == 0)
				mode = M_CREATE;
			else
				usage();
			break;
		case 'd':
			secs = num(optarg, 0.1, 3600);
			break;
		case 'n':
			nitems = (size_t)num(optarg, 1, 10000000);
			break;
		case 's':
			seed = (uint64_t)num(optarg, 0, 1e18);
			break;
		case 'q':
			quiet = true;
			break;
		default:
			usage();
		}
	}
	m = mix_generate(nitems, seed);
	if (!quiet)
		mix_describe(m, stderr);

	if (mode != M_CREATE) {
		if ((p = XML_ParserCreateNS("UTF-8", '\x01')) == NULL)
			abort();
		setup(p, &c);
	}
	if (mode == M_STREAM && XML_Parse(p, stream_open,
	    (int)strlen(stream_open), XML_FALSE) != XML_STATUS_OK)
		fail(p, &m->items[0]);

	t0 = now();
	for (;;) {
		const struct mix_item *it = &m->items[i];

		switch (mode) {
		case M_RESET:
			if (XML_Parse(p, it->stanza, (int)it->stanza_len,
			    XML_TRUE) != XML_STATUS_OK)
				fail(p, it);
			XML_ParserReset(p, "UTF-8");
			setup(p, &c);
			break;
		case M_STREAM:
			if (XML_Parse(p, it->stanza, (int)it->stanza_len,
			    XML_FALSE) != XML_STATUS_OK)
				fail(p, it);
			break;
		case M_CREATE:
			if ((p = XML_ParserCreateNS("UTF-8", '\x01')) == NULL)
				abort();
			setup(p, &c);
			if (XML_Parse(p, it->stanza, (int)it->stanza_len,
			    XML_TRUE) != XML_STATUS_OK)
				fail(p, it);
			XML_ParserFree(p);
			p = NULL;
			break;
		}
		done++;
		bytes += it->stanza_len;
		if (++i == m->n)
			i = 0;
		if ((done & 1023) == 0 && now() - t0 >= secs)
			break;
	}
	t1 = now();
	if (p)
		XML_ParserFree(p);

	/* the stream mode counts stanzas at depth 1: a check on the parse */
	if (mode == M_STREAM && c.stanzas != done) {
		fprintf(stderr, "expat-baseline: counted %llu stanzas, fed %llu\n",
		    c.stanzas, done);
		return 1;
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("expat_baseline mode=%s seconds=%.2f stanzas=%llu "
	    "stanzas_per_s=%.0f mb_per_s=%.1f avg_stanza_bytes=%.0f "
	    "elements=%llu text_bytes=%llu self_cpu_s=%.2f\n",
	    mode == M_RESET ? "reset" : mode == M_STREAM ? "stream" : "create",
	    t1 - t0, done, (double)done / (t1 - t0),
	    (double)bytes / (t1 - t0) / 1e6, (double)bytes / (double)done,
	    c.elements, c.text_bytes,
	    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	mix_free(m);
	return 0;
}
