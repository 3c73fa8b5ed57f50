/*
 * event.h - the event text format: envelope fields, an empty line, a stanza
 *
 *     origin=c2s
 *     auth=alice@example.org
 *
 *     <message from='...' to='...'><body>hi</body></message>
 *
 * xm_event_parse reads one event from a buffer with expat (namespaces on;
 * DOCTYPE, entity declarations, comments and processing instructions
 * refused; depth, attribute, element and size limits; reparse deferral off)
 * and builds the typed view of xm.h. Everything it returns lives in the
 * arena it is given. It does no I/O, so it can be fuzzed.
 */
#ifndef XM_EVENT_H
#define XM_EVENT_H

#include <stddef.h>

#include "xm.h"

struct xm_event_limits {
	size_t max_stanza;     /* bytes of the stanza text */
	unsigned max_depth;
	unsigned max_attrs;    /* per element */
	unsigned max_elements;
	unsigned max_fields;   /* envelope lines */
	size_t max_field_len;  /* one envelope line */
};

/* xm_event_limits_default - the built-in limits (also the config defaults) */
void xm_event_limits_default(struct xm_event_limits *l);

/* xm_event_parse - parse one event at BUF[0..len).
 * On success return 0, set *OUT, and *CONSUMED to the bytes used (the
 * stanza's end; trailing whitespace is consumed too). Return 1 when BUF
 * holds only whitespace (no more events). On error return -1 with a
 * message in ERR; *CONSUMED is unchanged. */
int xm_event_parse(struct xm_arena *a, const char *buf, size_t len,
    const struct xm_event_limits *lim, struct xm_event **out,
    size_t *consumed, char *err, size_t errlen);

/* xm_event_format - the event as text again (fields, blank line, stanza;
 * STANZA replaces the original when not NULL) */
char *xm_event_format(struct xm_arena *a, const struct xm_event *ev,
    const char *stanza);

#endif
