/*
 * guard.c - the guard filter: malformed and hostile input
 *
 * Purpose: score stanzas built to hurt a client or a server rather than
 * to say something: oversized or deeply nested stanzas; control, bidi,
 * invisible and private-use characters; emoticon, repetition and line
 * floods; too many, too long or obfuscated links and protocol-handler
 * links in bulk; script, event handlers and dangerous schemes in XHTML-IM;
 * oversized invitations; and a `from` that does not match the session
 * the stanza came in on (the one check that may end the chain).
 *
 * Interface: guard_filter (struct xm_filter_ops). Its settings are
 * guard_settings (printed into docs/CONFIGURATION.md; explained in
 * docs/GUARD.md). Each check adds at most one symbol per event, named
 * GUARD_*, scored by its own score_* setting, with a detail that says
 * what was measured against which limit ("body 12000 chars > 10000").
 * Every limit is a setting; -1 turns that check off. A measure far past
 * its limit (severe_factor times) scores score_severe more.
 *
 * Cost: each text is read once, with no allocation: 16 bytes at a time
 * where they are plain ASCII, one character at a time elsewhere (letters
 * of most scripts decoded inline, the rest with xm_utf8_next). About a
 * tenth of the parse time for chat-sized stanzas, half of it for 60 KB
 * of English, three quarters for 60 KB of Russian or Chinese. Counts are
 * kept per text and the worst text is reported, so a body and its
 * XHTML-IM twin do not add up. The rich-text walk allocates only to
 * normalise a style attribute that has parentheses, escapes or comments,
 * in the task's arena.
 *
 * Ownership: the state is a small heap struct pointing at the config,
 * which outlives it. Symbol details live in the task's arena.
 *
 * Failure: check cannot fail (bad input is what it measures); init fails
 * only on a list entry that cannot be a scheme or element name.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "xm.h"

/*
 * The symbols: enum tag, score setting name, default score, what it means.
 * One list so that the names, the score settings and their documentation
 * cannot drift apart.
 */
#define GUARD_SYMBOLS(X) \
	X(STANZA_SIZE, "stanza_size", "2", \
	    "stanza larger than max_stanza_bytes") \
	X(BODY_LONG, "body_long", "2", "a body longer than max_body_chars") \
	X(SUBJECT_LONG, "subject_long", "1", \
	    "a subject longer than max_subject_chars") \
	X(TEXT_SIZE, "text_size", "2", \
	    "more character data than max_text_bytes") \
	X(ELEMENTS, "elements", "2", "more elements than max_elements") \
	X(DEPTH, "depth", "3", "elements nested deeper than max_depth") \
	X(ATTRS, "attrs", "2", \
	    "an element with more attributes than max_attrs") \
	X(BAD_UTF8, "bad_utf8", "8", "invalid UTF-8 in a text, JID or URL") \
	X(CONTROL_CHARS, "control_chars", "4", \
	    "control characters (C0, DEL, C1) or noncharacters in a text") \
	X(BIDI_OVERRIDE, "bidi_override", "4", \
	    "bidi overrides (U+202D, U+202E) in a text") \
	X(BIDI_CONTROLS, "bidi_controls", "2", \
	    "bidi embeddings, overrides and isolates in bulk") \
	X(BIDI_FILENAME, "bidi_filename", "8", \
	    "a bidi control in an offered file's name") \
	X(ZERO_WIDTH, "zero_width", "2", \
	    "invisible (zero-width, filler, tag) characters in bulk") \
	X(REPLACEMENT_CHAR, "replacement_char", "0.5", \
	    "U+FFFD, the mark of a broken conversion") \
	X(PRIVATE_USE, "private_use", "1", "private-use characters in bulk") \
	X(EMOTICON_FLOOD, "emoticon_flood", "4", \
	    "more emoticons and emoji than max_emoticons") \
	X(REPEATED, "repeated", "3", \
	    "one character or short sequence repeated past max_repeat") \
	X(MANY_LINES, "many_lines", "2", "more lines than max_lines") \
	X(URL_COUNT, "url_count", "3", "more links than max_urls") \
	X(URL_LONG, "url_long", "3", "a link longer than max_url_length") \
	X(URL_OBFUSCATED, "url_obfuscated", "3", \
	    "a link with more escapes and odd characters than " \
	    "max_url_special") \
	X(HANDLER_URLS, "handler_urls", "5", \
	    "more protocol-handler links than max_handler_urls") \
	X(XHTML_ELEMENT, "xhtml_element", "6", \
	    "a forbidden element (script, object...) in rich text") \
	X(XHTML_EVENT_ATTR, "xhtml_event_attr", "6", \
	    "an on* event-handler attribute in rich text") \
	X(XHTML_SCHEME, "xhtml_scheme", "8", \
	    "a link or source with a dangerous scheme in rich text") \
	X(XHTML_CSS, "xhtml_css", "6", \
	    "script in a style attribute (expression(), url(javascript:)...)") \
	X(INVITE_COUNT, "invite_count", "3", \
	    "more invitations in one stanza than max_invites") \
	X(INVITE_REASON, "invite_reason", "2", \
	    "an invitation reason longer than max_invite_reason") \
	X(INVITE_PASSWORD, "invite_password", "2", \
	    "an invitation password longer than max_invite_password") \
	X(SPOOFED_FROM, "spoofed_from", "10", \
	    "a from that does not match the session (see spoof_action)")

enum guard_sym {
#define GUARD_ENUM(tag, name, def, doc) GS_##tag,
	GUARD_SYMBOLS(GUARD_ENUM)
#undef GUARD_ENUM
	GS_COUNT
};

static const char *const guard_symname[GS_COUNT] = {
#define GUARD_NAME(tag, name, def, doc) "GUARD_" #tag,
	GUARD_SYMBOLS(GUARD_NAME)
#undef GUARD_NAME
};

enum guard_spoof_action { SPOOF_REJECT = 0, SPOOF_SCORE, SPOOF_OFF };
static const char *const guard_spoof_conditions[] = {
	"not-authorized", "invalid-from", "forbidden"
};

struct guard_conf {
	/* sizes */
	long long max_stanza_bytes;
	long long max_body_chars;
	long long max_subject_chars;
	long long max_text_bytes;
	long long max_elements;
	long long max_depth;
	long long max_attrs;
	/* characters */
	long long max_controls;
	long long max_bidi_overrides;
	long long max_bidi_controls;
	long long max_zero_width;
	long long max_replacement;
	long long max_private_use;
	/* floods */
	long long max_emoticons;
	long long max_repeat;
	long long max_lines;
	/* links */
	long long max_urls;
	long long max_url_length;
	long long max_url_special;
	long long max_handler_urls;
	struct xm_strlist handler_schemes;
	/* rich text */
	bool check_xhtml;
	struct xm_strlist xhtml_elements;
	struct xm_strlist dangerous_schemes;
	/* invitations */
	long long max_invites;
	long long max_invite_reason;
	long long max_invite_password;
	/* far over a limit */
	long long severe_factor;
	double score_severe;
	/* spoofed from */
	int spoof_action;      /* enum guard_spoof_action */
	int spoof_condition;   /* index into guard_spoof_conditions */
	char *spoof_text;
	/* one score per symbol */
	double score[GS_COUNT];
};

#define GUARD_OFF(f) offsetof(struct guard_conf, f)
#define GUARD_LIM(name, field, def, doc) \
	{ name, XM_ST_INT, GUARD_OFF(field), def, -1, 1e9, NULL, true, \
	    doc " (-1: no limit)" }
#define GUARD_SCORE(tag, name, def, doc) \
	{ "score_" name, XM_ST_DOUBLE, GUARD_OFF(score[GS_##tag]), def, \
	    0, 1000, NULL, true, "Score of GUARD_" #tag ": " doc "." },

static const struct xm_setting guard_settings[] = {
	GUARD_LIM("max_stanza_bytes", max_stanza_bytes, "65536",
	    "Largest stanza, in bytes, before GUARD_STANZA_SIZE"),
	GUARD_LIM("max_body_chars", max_body_chars, "10000",
	    "Longest body, in characters, before GUARD_BODY_LONG"),
	GUARD_LIM("max_subject_chars", max_subject_chars, "500",
	    "Longest subject, in characters, before GUARD_SUBJECT_LONG"),
	GUARD_LIM("max_text_bytes", max_text_bytes, "65536",
	    "Most character data in one stanza, in bytes, before "
	    "GUARD_TEXT_SIZE"),
	GUARD_LIM("max_elements", max_elements, "500",
	    "Most elements in one stanza before GUARD_ELEMENTS"),
	GUARD_LIM("max_depth", max_depth, "24",
	    "Deepest element nesting (the stanza is 1) before GUARD_DEPTH"),
	GUARD_LIM("max_attrs", max_attrs, "20",
	    "Most attributes on one element before GUARD_ATTRS"),
	GUARD_LIM("max_controls", max_controls, "0",
	    "Control characters (C0 but tab/LF/CR, DEL, C1 U+0080-U+009F) and "
	    "noncharacters allowed in one text before GUARD_CONTROL_CHARS"),
	GUARD_LIM("max_bidi_overrides", max_bidi_overrides, "0",
	    "Bidi overrides (U+202D, U+202E: the right-to-left-override file "
	    "name trick) allowed in one text before GUARD_BIDI_OVERRIDE"),
	GUARD_LIM("max_bidi_controls", max_bidi_controls, "10",
	    "Bidi embeddings, overrides and isolates (U+202A-U+202E, "
	    "U+2066-U+2069) allowed in one text before GUARD_BIDI_CONTROLS"),
	GUARD_LIM("max_zero_width", max_zero_width, "10",
	    "Invisible characters (zero-width space/joiners outside emoji, "
	    "word joiner, BOM, soft hyphen, Hangul fillers, tag characters) "
	    "allowed in one text before GUARD_ZERO_WIDTH"),
	GUARD_LIM("max_replacement", max_replacement, "0",
	    "U+FFFD replacement characters allowed in one text before "
	    "GUARD_REPLACEMENT_CHAR"),
	GUARD_LIM("max_private_use", max_private_use, "16",
	    "Private-use characters allowed in one text before "
	    "GUARD_PRIVATE_USE"),
	GUARD_LIM("max_emoticons", max_emoticons, "50",
	    "Text emoticons (:-) ;) :D <3 (y) ^^ ...) plus emoji allowed in "
	    "one text before GUARD_EMOTICON_FLOOD"),
	GUARD_LIM("max_repeat", max_repeat, "100",
	    "Longest stretch, in characters, of one character or a short "
	    "sequence (up to 8 bytes: 8 ASCII characters, 2 emoji) repeated, "
	    "before GUARD_REPEATED; stretches under about 24 bytes are not "
	    "measured"),
	GUARD_LIM("max_lines", max_lines, "200",
	    "Most lines in one text before GUARD_MANY_LINES"),
	GUARD_LIM("max_urls", max_urls, "10",
	    "Most links in one stanza before GUARD_URL_COUNT"),
	GUARD_LIM("max_url_length", max_url_length, "1024",
	    "Longest link, in bytes, before GUARD_URL_LONG"),
	GUARD_LIM("max_url_special", max_url_special, "30",
	    "Most percent-escapes of ASCII characters, malformed escapes and "
	    "odd characters (backslash, caret, backquote, braces, vertical "
	    "bar) in one link before GUARD_URL_OBFUSCATED"),
	GUARD_LIM("max_handler_urls", max_handler_urls, "2",
	    "Most links with a protocol-handler scheme (handler_schemes) in "
	    "one stanza before GUARD_HANDLER_URLS"),
	{ "handler_schemes", XM_ST_LIST, GUARD_OFF(handler_schemes),
	    "aim,ymsgr,msnim,skype,callto,sip,sips,tel,irc,ircs,icq,gtalk,"
	    "xfire,steam,facetime,sms", 0, 0, NULL, true,
	    "Schemes counted as protocol-handler links (names without the "
	    "colon, matched without regard to case)" },
	{ "check_xhtml", XM_ST_BOOL, GUARD_OFF(check_xhtml), "true", 0, 0,
	    NULL, true, "Look for script, event handlers and dangerous schemes "
	    "in XHTML-IM rich text" },
	{ "xhtml_elements", XM_ST_LIST, GUARD_OFF(xhtml_elements),
	    "script,object,embed,applet,iframe,frame,frameset,style,link,meta,"
	    "base,form", 0, 0, NULL, true,
	    "Elements that must not appear in rich text (GUARD_XHTML_ELEMENT), "
	    "matched without regard to case or namespace" },
	{ "dangerous_schemes", XM_ST_LIST, GUARD_OFF(dangerous_schemes),
	    "javascript,vbscript,data,file", 0, 0, NULL, true,
	    "Schemes that must not start a link, source or CSS url() in rich "
	    "text (GUARD_XHTML_SCHEME, GUARD_XHTML_CSS); compared without "
	    "regard to case after removing whitespace and control "
	    "characters" },
	GUARD_LIM("max_invites", max_invites, "5",
	    "Most invitations in one stanza before GUARD_INVITE_COUNT"),
	GUARD_LIM("max_invite_reason", max_invite_reason, "500",
	    "Longest invitation reason, in characters, before "
	    "GUARD_INVITE_REASON"),
	GUARD_LIM("max_invite_password", max_invite_password, "128",
	    "Longest room password in an invitation, in characters, before "
	    "GUARD_INVITE_PASSWORD"),
	GUARD_LIM("severe_factor", severe_factor, "10",
	    "A measure more than this many times its limit (or than this "
	    "number where the limit is 0) is severe: its symbol gets "
	    "score_severe on top, and its detail says so"),
	{ "score_severe", XM_ST_DOUBLE, GUARD_OFF(score_severe), "10", 0, 1000,
	    NULL, true, "Score added to a symbol whose measure is severe "
	    "(see severe_factor): a thousand emoticons are not ten" },
	{ "spoof_action", XM_ST_ENUM, GUARD_OFF(spoof_action), "reject", 0, 0,
	    "reject|score|off", true,
	    "What a spoofed from does: reject the stanza (and score it), only "
	    "score GUARD_SPOOFED_FROM, or skip the check" },
	{ "spoof_condition", XM_ST_ENUM, GUARD_OFF(spoof_condition),
	    "not-authorized", 0, 0, "not-authorized|invalid-from|forbidden",
	    true,
	    "XMPP error condition of the rejection of a spoofed from" },
	{ "spoof_text", XM_ST_STRING, GUARD_OFF(spoof_text),
	    "sender address does not match the session", 0, 0, NULL, true,
	    "Error text sent back with the rejection of a spoofed from" },
	GUARD_SYMBOLS(GUARD_SCORE)
	XM_SETTINGS_END
};

#undef GUARD_LIM
#undef GUARD_SCORE

struct guard_state {
	const struct guard_conf *c;
};

/* What one text is measured for; the worst text of an event is kept. */
enum guard_metric {
	GM_CONTROLS = 0,
	GM_BIDI_OVERRIDE,
	GM_BIDI,
	GM_ZERO_WIDTH,
	GM_REPLACEMENT,
	GM_PRIVATE_USE,
	GM_EMOTICONS,
	GM_REPEAT,
	GM_LINES,
	GM_URLS,
	GM_HANDLERS,
	GM_URL_LEN,
	GM_URL_SPECIAL,
	GM_COUNT
};

/* one text while it is read */
struct guard_text {
	unsigned long c[GM_COUNT];
	long first[GM_COUNT];     /* first offending code point, -1 none */
	const char *scheme;       /* first handler scheme seen */
	size_t scheme_len;
	size_t chars;
	bool bad_utf8;
};

/* the worst text of the event, per metric */
struct guard_worst {
	unsigned long n;
	long first;
	const char *where;
	const char *scheme;
	size_t scheme_len;
};

struct guard_scan {
	struct guard_worst m[GM_COUNT];
	const char *bad_utf8;     /* where invalid UTF-8 was seen first */
};

/* character classes that matter here (all else is GC_OTHER) */
enum guard_class {
	GC_OTHER = 0,
	GC_SPACE,
	GC_LINE,
	GC_CONTROL,
	GC_BIDI_OVERRIDE,
	GC_BIDI,
	GC_ZW,
	GC_ZWJ,
	GC_REPLACEMENT,
	GC_PRIVATE,
	GC_EMOJI,
	GC_EMOJI_MOD,
	GC_RI,
	GC_TAG,
};

/* where an emoji sequence stands, so that one pictogram counts once */
enum guard_emoji { EMO_NONE = 0, EMO_IN, EMO_ZWJ, EMO_RI };

#define GUARD_SCHEME_MAX 32

/* guard_sym - add symbol S with its configured score */
#define guard_sym(t, c, s, ...) \
	xm_task_symbol((t), guard_symname[(s)], (c)->score[(s)], 0, __VA_ARGS__)

/* guard_over - true when limit LIM is on and N exceeds it */
static inline bool
guard_over(unsigned long long n, long long lim)
{
	return lim >= 0 && n > (unsigned long long)lim;
}

/*
 * guard_limit - add symbol S when measure N is over limit LIM. The detail
 * is FMT and its arguments, then "> LIM"; a measure past severe_factor
 * times its limit adds score_severe and says ", severe".
 */
static void XM_PRINTF(6, 7)
guard_limit(struct xm_task *t, const struct guard_conf *c, enum guard_sym s,
    unsigned long long n, long long lim, const char *fmt, ...)
{
	va_list ap;
	const char *what;
	double score = c->score[s];
	bool severe;

	if (!guard_over(n, lim))
		return;
	va_start(ap, fmt);
	what = xm_arena_vprintf(t->arena, fmt, ap);
	va_end(ap);
	severe = c->severe_factor >= 0 && n > (unsigned long long)
	    c->severe_factor * (unsigned long long)(lim > 0 ? lim : 1);
	if (severe)
		score += c->score_severe;
	xm_task_symbol(t, guard_symname[s], score, 0, "%s > %lld%s", what, lim,
	    severe ? ", severe" : "");
}

/* guard_alpha - ASCII letter */
static inline bool
guard_alpha(int c)
{
	return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

/* guard_alnum - ASCII letter or digit */
static inline bool
guard_alnum(int c)
{
	return guard_alpha(c) || (c >= '0' && c <= '9');
}

/* guard_hex - value of an ASCII hex digit, or -1 */
static inline int
guard_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* guard_lower - ASCII lower case */
static inline int
guard_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* guard_scheme_char - may appear in a URI scheme after its first letter */
static inline bool
guard_scheme_char(int c)
{
	return guard_alnum(c) || c == '+' || c == '-' || c == '.';
}

/* guard_list_has - case-insensitive membership of S[0..n) in L (an entry
 * may end in a colon) */
static bool
guard_list_has(const struct xm_strlist *l, const char *s, size_t n)
{
	size_t i;
	const char *e;

	if (n == 0)
		return false;
	for (i = 0; i < l->n; i++) {
		e = l->v[i];
		/* the first letter rules out most without a call */
		if (guard_lower((unsigned char)e[0]) !=
		    guard_lower((unsigned char)s[0]))
			continue;
		if (strncasecmp(e, s, n) == 0 &&
		    (e[n] == '\0' || (e[n] == ':' && e[n + 1] == '\0')))
			return true;
	}
	return false;
}

/* guard_class - the class of non-ASCII code point CP */
static enum guard_class
guard_class(long cp)
{
	if (cp < 0x2000) {
		if (cp <= 0x9f)
			return GC_CONTROL;
		if (cp == 0xa0 || cp == 0x1680)
			return GC_SPACE;
		if (cp == 0xad || cp == 0x180e || cp == 0x115f || cp == 0x1160)
			return GC_ZW;
		return GC_OTHER;
	}
	if (cp < 0x2100) {
		if (cp <= 0x200a || cp == 0x202f || cp == 0x205f)
			return GC_SPACE;
		if (cp == 0x200b || cp == 0x200c ||
		    (cp >= 0x2060 && cp <= 0x2064))
			return GC_ZW;
		if (cp == 0x200d)
			return GC_ZWJ;
		if (cp == 0x2028 || cp == 0x2029)
			return GC_LINE;
		if (cp == 0x202d || cp == 0x202e)
			return GC_BIDI_OVERRIDE;
		if ((cp >= 0x202a && cp <= 0x202c) ||
		    (cp >= 0x2066 && cp <= 0x2069))
			return GC_BIDI;
		if (cp == 0x20e3)
			return GC_EMOJI_MOD;  /* combining keycap */
		return GC_OTHER;
	}
	if (cp < 0xe000) {
		if ((cp >= 0x2600 && cp <= 0x27bf) ||
		    (cp >= 0x2b00 && cp <= 0x2bff))
			return GC_EMOJI;
		if (cp == 0x3000)
			return GC_SPACE;
		if (cp == 0x3164)
			return GC_ZW;
		if (cp >= 0xd800)
			return GC_CONTROL;  /* a surrogate: never valid */
		return GC_OTHER;
	}
	if (cp < 0x10000) {
		if (cp <= 0xf8ff)
			return GC_PRIVATE;
		if (cp >= 0xfdd0 && cp <= 0xfdef)
			return GC_CONTROL;  /* noncharacters */
		if (cp == 0xfe0e || cp == 0xfe0f)
			return GC_EMOJI_MOD;
		if (cp == 0xfeff || cp == 0xffa0 ||
		    (cp >= 0xfff9 && cp <= 0xfffb))
			return GC_ZW;
		if (cp == 0xfffd)
			return GC_REPLACEMENT;
		if (cp >= 0xfffe)
			return GC_CONTROL;
		return GC_OTHER;
	}
	if ((cp & 0xfffe) == 0xfffe)
		return GC_CONTROL;          /* noncharacters of every plane */
	if (cp >= 0x1f000 && cp <= 0x1faff) {
		if (cp >= 0x1f1e6 && cp <= 0x1f1ff)
			return GC_RI;
		if (cp >= 0x1f3fb && cp <= 0x1f3ff)
			return GC_EMOJI_MOD;  /* skin tones */
		return GC_EMOJI;
	}
	if (cp >= 0xe0000 && cp <= 0xe007f)
		return GC_TAG;
	if (cp >= 0xf0000)
		return GC_PRIVATE;
	return GC_OTHER;
}

/* guard_emoticon - true when a text emoticon starts with ASCII CP, the
 * bytes after it being P..END */
static bool
guard_emoticon(long cp, const char *p, const char *end)
{
	switch (cp) {
	case ':':
	case ';':
	case '=':
		if (cp != '=' && p < end && (*p == '-' || *p == '\''))
			p++;
		if (p >= end)
			return false;
		switch (*p) {
		case ')': case '(': case '*': case '|': case '[': case ']':
			return true;
		case 'D': case 'P': case 'p': case 'O': case 'o':
			/* ":Done" and "Note:Port" are words, ":D" is not */
			return p + 1 >= end ||
			    !guard_alnum((unsigned char)p[1]);
		}
		return false;
	case '<':
		if (p < end && *p == '/')
			p++;
		return p < end && *p == '3' &&
		    (p + 1 >= end || !(p[1] >= '0' && p[1] <= '9'));
	case '(':
		/* MSN-style codes: (y) (n) (h) */
		return end - p >= 2 && guard_alnum((unsigned char)p[0]) &&
		    p[1] == ')';
	case '^':
		if (p < end && *p == '_')
			p++;
		return p < end && *p == '^';
	}
	return false;
}

/* guard_url_special - count escapes of ASCII characters, malformed
 * escapes and odd characters in a URL */
static unsigned long
guard_url_special(const char *u, size_t n)
{
	const char *p, *end = u + n;
	unsigned long k = 0;
	int h1;

	for (p = u; p < end; p++) {
		switch (*p) {
		case '%':
			h1 = end - p > 2 ? guard_hex((unsigned char)p[1]) : -1;
			if (h1 < 0 || guard_hex((unsigned char)p[2]) < 0)
				k++;        /* malformed */
			else if (h1 < 8) {
				k++;        /* an ASCII character, hidden */
				p += 2;
			} else
				p += 2;     /* UTF-8 of a non-ASCII character */
			break;
		case '\\': case '^': case '`': case '{': case '|': case '}':
			k++;
			break;
		}
	}
	return k;
}

/* guard_url_end - a URL token U..STOP ended: record its length and oddity */
static void
guard_url_end(struct guard_text *gt, const char *u, const char *stop)
{
	unsigned long k;

	/* trailing punctuation belongs to the sentence, not the link */
	while (stop > u && strchr(".,;:!?)]}'\"", stop[-1]) != NULL)
		stop--;
	if ((unsigned long)(stop - u) > gt->c[GM_URL_LEN])
		gt->c[GM_URL_LEN] = (unsigned long)(stop - u);
	k = guard_url_special(u, (size_t)(stop - u));
	if (k > gt->c[GM_URL_SPECIAL])
		gt->c[GM_URL_SPECIAL] = k;
}

/* guard_count - count one offending character of metric M */
static inline void
guard_count(struct guard_text *gt, enum guard_metric m, long cp)
{
	if (gt->c[m]++ == 0)
		gt->first[m] = cp;
}

/* guard_www - true when the '.' at D ends a word "www" (a link) */
static inline bool
guard_www(const char *s, const char *d)
{
	return d - s >= 3 && (d[-3] | 0x20) == 'w' && (d[-2] | 0x20) == 'w' &&
	    (d[-1] | 0x20) == 'w' && (d - s == 3 || !guard_scheme_char(d[-4]));
}

/*
 * guard_char - count code point CP of class CL, at START..P of text S..END;
 * EMO is the emoji-sequence state, URL the link being read (or NULL)
 */
static inline void
guard_char(const struct guard_conf *c, struct guard_text *gt, const char *s,
    const char *start, const char *p, const char *end, long cp,
    enum guard_class cl, bool urls, enum guard_emoji *emo, const char **url)
{
	const char *q;
	bool handler;
	size_t m;

	switch (cl) {
	case GC_OTHER:
	case GC_SPACE:
		break;
	case GC_LINE:
		gt->c[GM_LINES]++;
		break;
	case GC_CONTROL:
		guard_count(gt, GM_CONTROLS, cp);
		break;
	case GC_BIDI_OVERRIDE:
		guard_count(gt, GM_BIDI_OVERRIDE, cp);
		/* FALLTHROUGH */
	case GC_BIDI:
		guard_count(gt, GM_BIDI, cp);
		break;
	case GC_ZW:
		guard_count(gt, GM_ZERO_WIDTH, cp);
		break;
	case GC_REPLACEMENT:
		guard_count(gt, GM_REPLACEMENT, cp);
		break;
	case GC_PRIVATE:
		guard_count(gt, GM_PRIVATE_USE, cp);
		break;
	case GC_EMOJI:
		/* a ZWJ sequence (family, rainbow flag) is one pictogram */
		if (*emo != EMO_ZWJ && *url == NULL)
			gt->c[GM_EMOTICONS]++;
		*emo = EMO_IN;
		break;
	case GC_RI:
		/* regional indicators pair up into one flag */
		if (*emo == EMO_RI)
			*emo = EMO_IN;
		else {
			if (*url == NULL)
				gt->c[GM_EMOTICONS]++;
			*emo = EMO_RI;
		}
		break;
	case GC_ZWJ:
		if (*emo == EMO_IN)
			*emo = EMO_ZWJ;
		else
			guard_count(gt, GM_ZERO_WIDTH, cp);
		break;
	case GC_EMOJI_MOD:
		break;
	case GC_TAG:
		/* tags only belong in a subdivision flag; elsewhere they
		 * smuggle invisible ASCII */
		if (*emo != EMO_IN)
			guard_count(gt, GM_ZERO_WIDTH, cp);
		break;
	}
	if (cl != GC_EMOJI && cl != GC_EMOJI_MOD && cl != GC_ZWJ &&
	    cl != GC_RI && cl != GC_TAG) {
		if (*emo == EMO_ZWJ)     /* a joiner that joined nothing */
			guard_count(gt, GM_ZERO_WIDTH, 0x200d);
		*emo = EMO_NONE;
	}

	if (*url != NULL) {
		if (cl == GC_SPACE || cl == GC_LINE || cl == GC_CONTROL ||
		    cp == '<' || cp == '>' || cp == '"') {
			guard_url_end(gt, *url, start);
			*url = NULL;
		}
		return;
	}
	if (cp >= 0x80)
		return;
	if (guard_emoticon(cp, p, end))
		gt->c[GM_EMOTICONS]++;
	if (!urls)
		return;

	if (cp == '.') {
		/* "www." that starts a word */
		if (guard_www(s, start)) {
			gt->c[GM_URLS]++;
			*url = start - 3;
		}
	} else if (cp == ':') {
		/* the scheme is the word before, from its first letter */
		for (q = start; q > s && start - q < GUARD_SCHEME_MAX - 1 &&
		    guard_scheme_char(q[-1]); q--)
			;
		while (q < start && !guard_alpha(*q))
			q++;
		if (q == start)
			return;
		m = (size_t)(start - q);
		handler = guard_list_has(&c->handler_schemes, q, m);
		if ((end - p >= 2 && p[0] == '/' && p[1] == '/') ||
		    (handler && p < end && (unsigned char)*p > 0x20)) {
			*url = q;
			gt->c[GM_URLS]++;
			if (handler && gt->c[GM_HANDLERS]++ == 0) {
				gt->scheme = q;
				gt->scheme_len = m;
			}
		}
	}
}

/*
 * The fast path takes 16 bytes at a time when none needs a closer look:
 * all ASCII, no control character (tab and CR included, they are rare),
 * no DEL, and none of the bytes that may start something: the emoticon
 * leads : ; < = ( ^, and a '.' after "www". GCC/Clang vector extensions:
 * SSE2 or NEON where there is one, plain code elsewhere.
 */
typedef unsigned char guard_v16 __attribute__((vector_size(16)));

#define GUARD_HIGHS 0x8080808080808080ULL
/* the byte offset of the flagged lane at the lowest bit of a loaded word */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define GUARD_LANE(m) (7 - ((unsigned)__builtin_ctzll(m) >> 3))
#else
#define GUARD_LANE(m) ((unsigned)__builtin_ctzll(m) >> 3)
#endif

/* guard_clean16 - true when the 16 bytes V at P (in text S) need no closer
 * look */
static inline bool
guard_clean16(const char *s, const char *p, guard_v16 v)
{
	guard_v16 bad, dot;
	uint64_t h[2], x;
	int i;

	bad = (guard_v16)((v < 0x20) | (v >= 0x7f) | (v - 0x3a < 4) |
	    (v == '(') | (v == '^'));
	memcpy(h, &bad, 16);
	if ((h[0] | h[1]) != 0)
		return false;
	dot = (guard_v16)(v == '.');
	memcpy(h, &dot, 16);
	for (i = 0; i < 2; i++)
		for (x = h[i] & GUARD_HIGHS; x != 0; x &= x - 1)
			if (guard_www(s, p + 8 * i + GUARD_LANE(x)))
				return false;
	return true;
}

/*
 * The repeat detector looks at the text in windows of 16 bytes (each
 * starting on a character). A window equal to the 16 bytes k places
 * before it continues a repeat of period k, up to 8 bytes: 8 ASCII
 * characters, 4 Cyrillic, 2 CJK characters or 2 emoji. ALIVE has bit
 * k - 1 set for each period that held in every window since byte START;
 * when none is left, the stretch is widened byte by byte at its two ends
 * (windows are coarse), measured in characters, and the longest kept.
 * A stretch must hold a whole window to be seen: about 24 bytes.
 */
struct guard_rep {
	const char *s, *end;   /* the text */
	unsigned alive;
	const char *start;     /* first byte of the first matching window */
	size_t start_chars;    /* characters before it */
	size_t best;
};

/* guard_nchars - characters in P..E */
static inline size_t
guard_nchars(const char *p, const char *e)
{
	size_t n = 0;

	for (; p < e; p++)
		if (((unsigned char)*p & 0xc0) != 0x80)
			n++;
	return n;
}

/* guard_rep_end - the stretch ends before byte AT (CHARS characters in) */
static void
guard_rep_end(struct guard_rep *r, const char *at, size_t chars)
{
	const char *a = r->start, *e = at;
	size_t k = (size_t)__builtin_ctz(r->alive) + 1, len;

	while (e < r->end && e[0] == e[-(ptrdiff_t)k])
		e++;
	while (a - k > r->s && a[-1] == a[-1 - (ptrdiff_t)k])
		a--;
	len = guard_nchars(a - k, r->start) + (chars - r->start_chars) +
	    guard_nchars(at, e);
	if (len > r->best)
		r->best = len;
}

/* guard_rep_window - the window at P (CHARS characters in) matched the
 * periods in SURV */
static inline void
guard_rep_window(struct guard_rep *r, unsigned surv, const char *p,
    size_t chars)
{
	if ((r->alive & surv) != 0) {
		r->alive &= surv;
		return;
	}
	if (r->alive != 0)
		guard_rep_end(r, p, chars);
	r->alive = surv;
	r->start = p;
	r->start_chars = chars;
}

/*
 * guard_rep_match - the periods k in 5..8 (bit k - 1) for which the 16
 * bytes V at P equal those k before. Shorter periods need no test of their
 * own: a text with period 1, 2, 3 or 4 also has period 5, 6, 6 or 8.
 */
static inline unsigned
guard_rep_match(const char *p, const uint64_t v[2])
{
	uint64_t u[8];

	memcpy(&u[0], p - 5, 16);
	memcpy(&u[2], p - 6, 16);
	memcpy(&u[4], p - 7, 16);
	memcpy(&u[6], p - 8, 16);
	return (unsigned)(u[0] == v[0] && u[1] == v[1]) << 4 |
	    (unsigned)(u[2] == v[0] && u[3] == v[1]) << 5 |
	    (unsigned)(u[4] == v[0] && u[5] == v[1]) << 6 |
	    (unsigned)(u[6] == v[0] && u[7] == v[1]) << 7;
}

/*
 * guard_plain_mb - length of the multi-byte character at P if it is
 * well-formed and has nothing to count (the letters of most scripts:
 * U+00C0-U+1FFF and U+3000-U+D7FF but for a few spaces and fillers),
 * else 0. The rest goes through xm_utf8_next and guard_class.
 */
static inline size_t
guard_plain_mb(const unsigned char *p, const unsigned char *end)
{
	if (p[0] >= 0xc3 && p[0] <= 0xdf)
		return end - p >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (end - p < 3 || (p[2] & 0xc0) != 0x80)
		return 0;
	switch (p[0]) {
	case 0xe0:
		return p[1] >= 0xa0 && p[1] <= 0xbf ? 3 : 0;
	case 0xe1:
		/* U+115F, U+1160 fillers; U+1680 space; U+180E */
		if ((p[1] == 0x85 && (p[2] == 0x9f || p[2] == 0xa0)) ||
		    (p[1] == 0x9a && p[2] == 0x80) ||
		    (p[1] == 0xa0 && p[2] == 0x8e))
			return 0;
		return (p[1] & 0xc0) == 0x80 ? 3 : 0;
	case 0xe3:
		/* U+3000 space, U+3164 filler */
		if ((p[1] == 0x80 && p[2] == 0x80) ||
		    (p[1] == 0x85 && p[2] == 0xa4))
			return 0;
		return (p[1] & 0xc0) == 0x80 ? 3 : 0;
	case 0xe4: case 0xe5: case 0xe6: case 0xe7: case 0xe8: case 0xe9:
	case 0xea: case 0xeb: case 0xec:
		return (p[1] & 0xc0) == 0x80 ? 3 : 0;
	case 0xed:
		return p[1] >= 0x80 && p[1] <= 0x9f ? 3 : 0;
	}
	return 0;
}

/*
 * guard_scan_text - read S[0..n) once and measure it into GT. With URLS,
 * also find links: tokens that start with www. or scheme://, and
 * handler-scheme:anything.
 */
static void
guard_scan_text(const struct guard_conf *c, const char *s, size_t n,
    bool urls, struct guard_text *gt)
{
	const char *p = s, *end = s + n, *start, *wend;
	const char *url = NULL;       /* the link being read */
	struct guard_rep rep;
	enum guard_emoji emo = EMO_NONE;
	enum guard_class cl;
	uint64_t w[2];
	guard_v16 v;
	unsigned k;
	long cp;
	size_t m;

	memset(gt, 0, sizeof(*gt));
	memset(&rep, 0, sizeof(rep));
	rep.s = s;
	rep.end = end;
	for (k = 0; k < GM_COUNT; k++)
		gt->first[k] = -1;
	if (n > 0)
		gt->c[GM_LINES] = 1;

	while (p < end) {
		if (end - p >= 16) {
			memcpy(w, p, 16);
			memcpy(&v, p, 16);
			guard_rep_window(&rep, p - s >= 8 ?
			    guard_rep_match(p, w) : 0, p, gt->chars);
			/* the fast path: most of most texts */
			if (url == NULL && emo == EMO_NONE &&
			    guard_clean16(s, p, v)) {
				p += 16;
				gt->chars += 16;
				continue;
			}
			wend = p + 16;
		} else {
			guard_rep_window(&rep, 0, p, gt->chars);
			wend = end;
		}

		/* one character at a time to the end of the window */
		while (p < wend) {
			if ((unsigned char)*p >= 0x80 && emo == EMO_NONE &&
			    (m = guard_plain_mb((const unsigned char *)p,
			    (const unsigned char *)end)) > 0) {
				p += m;
				gt->chars++;
				continue;
			}
			start = p;
			if ((unsigned char)*p < 0x80) {
				cp = (unsigned char)*p++;
				if (cp > 0x20 && cp != 0x7f)
					cl = GC_OTHER;
				else if (cp == '\n')
					cl = GC_LINE;
				else if (cp == ' ' || cp == '\t' || cp == '\r')
					cl = GC_SPACE;
				else
					cl = GC_CONTROL;
			} else if ((cp = xm_utf8_next(&p, end)) >= 0)
				cl = guard_class(cp);
			else {
				gt->bad_utf8 = true;
				p = start + 1;
				cp = 0xfffd;
				cl = GC_CONTROL;
			}
			gt->chars++;
			guard_char(c, gt, s, start, p, end, cp, cl, urls, &emo,
			    &url);
		}
	}
	if (url != NULL)
		guard_url_end(gt, url, end);
	if (rep.alive != 0)
		guard_rep_end(&rep, end, gt->chars);
	gt->c[GM_REPEAT] = rep.best;
}

/* guard_merge - keep GT's counts where they are the worst so far */
static void
guard_merge(struct guard_scan *sc, const struct guard_text *gt,
    const char *where)
{
	unsigned k;

	for (k = 0; k < GM_COUNT; k++) {
		if (gt->c[k] > sc->m[k].n) {
			sc->m[k].n = gt->c[k];
			sc->m[k].first = gt->first[k];
			sc->m[k].where = where;
			if (k == GM_HANDLERS) {
				sc->m[k].scheme = gt->scheme;
				sc->m[k].scheme_len = gt->scheme_len;
			}
		}
	}
	if (gt->bad_utf8 && sc->bad_utf8 == NULL)
		sc->bad_utf8 = where;
}

/* guard_chars - characters (not bytes) in UTF-8 string S */
static size_t
guard_chars(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* guard_utf8 - note invalid UTF-8 in S (may be NULL) */
static void
guard_utf8(struct guard_scan *sc, const char *s, const char *where)
{
	if (s != NULL && sc->bad_utf8 == NULL && !xm_utf8_valid(s, strlen(s)))
		sc->bad_utf8 = where;
}

/* guard_sizes - the stanza's shape against the size limits */
static void
guard_sizes(const struct guard_conf *c, struct xm_task *t)
{
	const struct xm_event *ev = t->ev;

	guard_limit(t, c, GS_STANZA_SIZE, ev->raw_len, c->max_stanza_bytes,
	    "stanza %zu bytes", ev->raw_len);
	guard_limit(t, c, GS_TEXT_SIZE, ev->text_bytes, c->max_text_bytes,
	    "text %zu bytes", ev->text_bytes);
	guard_limit(t, c, GS_ELEMENTS, ev->nelements, c->max_elements,
	    "%u elements", ev->nelements);
	guard_limit(t, c, GS_DEPTH, ev->depth, c->max_depth, "depth %u",
	    ev->depth);
	guard_limit(t, c, GS_ATTRS, ev->max_attrs, c->max_attrs,
	    "%u attributes on one element", ev->max_attrs);
}

/* guard_texts - read every text once; length and character checks */
static void
guard_texts(const struct guard_conf *c, struct xm_task *t,
    struct guard_scan *sc)
{
	const struct xm_event *ev = t->ev;
	struct guard_text gt;
	size_t i, body = 0, subject = 0, reason = 0, password = 0, k;
	const char *s;

	for (i = 0; i < ev->nbodies; i++) {
		if ((s = ev->bodies[i].text) == NULL)
			continue;
		guard_scan_text(c, s, strlen(s), true, &gt);
		guard_merge(sc, &gt, "body");
		if (gt.chars > body)
			body = gt.chars;
	}
	for (i = 0; i < ev->nsubjects; i++) {
		if ((s = ev->subjects[i].text) == NULL)
			continue;
		guard_scan_text(c, s, strlen(s), true, &gt);
		guard_merge(sc, &gt, "subject");
		if (gt.chars > subject)
			subject = gt.chars;
	}
	if (ev->status != NULL) {
		guard_scan_text(c, ev->status, strlen(ev->status), true, &gt);
		guard_merge(sc, &gt, "status");
	}
	if (ev->xhtml_text != NULL) {
		/* its links come as ev->urls; its text mirrors the body */
		guard_scan_text(c, ev->xhtml_text, strlen(ev->xhtml_text),
		    false, &gt);
		guard_merge(sc, &gt, "rich text");
	}
	for (i = 0; i < ev->ninvites; i++) {
		if ((s = ev->invites[i].reason) != NULL) {
			guard_scan_text(c, s, strlen(s), true, &gt);
			guard_merge(sc, &gt, "invite reason");
			if (gt.chars > reason)
				reason = gt.chars;
		}
		if ((s = ev->invites[i].password) != NULL) {
			guard_utf8(sc, s, "invite password");
			if ((k = guard_chars(s)) > password)
				password = k;
		}
	}

	guard_limit(t, c, GS_BODY_LONG, body, c->max_body_chars,
	    "body %zu chars", body);
	guard_limit(t, c, GS_SUBJECT_LONG, subject, c->max_subject_chars,
	    "subject %zu chars", subject);
	guard_limit(t, c, GS_INVITE_COUNT, ev->ninvites, c->max_invites,
	    "%zu invitations", ev->ninvites);
	guard_limit(t, c, GS_INVITE_REASON, reason, c->max_invite_reason,
	    "invite reason %zu chars", reason);
	guard_limit(t, c, GS_INVITE_PASSWORD, password,
	    c->max_invite_password, "invite password %zu chars", password);
}

/* guard_scheme - the scheme V starts with, lower-cased into BUF, ignoring
 * whitespace and control bytes as browsers do; its length, 0 if none */
static size_t
guard_scheme(const char *v, char *buf, size_t buflen)
{
	size_t n = 0;
	unsigned char ch;

	for (; (ch = (unsigned char)*v) != '\0'; v++) {
		if (ch <= 0x20 || ch == 0x7f)
			continue;
		if (ch == ':')
			return n;
		if (n == 0 ? !guard_alpha(ch) : !guard_scheme_char(ch))
			return 0;
		if (n + 1 >= buflen)
			return 0;
		buf[n++] = (char)guard_lower(ch);
	}
	return 0;
}

/* guard_links - ev->urls and the links found in texts: count, length,
 * oddity, protocol handlers */
static void
guard_links(const struct guard_conf *c, struct xm_task *t,
    struct guard_scan *sc)
{
	const struct xm_event *ev = t->ev;
	char buf[GUARD_SCHEME_MAX];
	unsigned long rich = 0, oob = 0, rich_h = 0, oob_h = 0, urls, handlers;
	unsigned long special, maxspecial = 0;
	const char *longest = NULL, *odd = NULL, *scheme = NULL, *where;
	size_t i, len, maxlen = 0, slen = 0, m;
	const struct xm_url *u;

	for (i = 0; i < ev->nurls; i++) {
		u = &ev->urls[i];
		if (u->url == NULL)
			continue;
		where = u->source == XM_URL_OOB ? "out-of-band data" :
		    "rich text";
		guard_utf8(sc, u->url, where);
		len = strlen(u->url);
		if (len > maxlen) {
			maxlen = len;
			longest = where;
		}
		if ((special = guard_url_special(u->url, len)) > maxspecial) {
			maxspecial = special;
			odd = where;
		}
		if (u->source == XM_URL_OOB)
			oob++;
		else
			rich++;
		m = guard_scheme(u->url, buf, sizeof(buf));
		if (m > 0 && guard_list_has(&c->handler_schemes, buf, m)) {
			if (u->source == XM_URL_OOB)
				oob_h++;
			else
				rich_h++;
			if (scheme == NULL) {
				scheme = xm_arena_strndup(t->arena, buf, m);
				slen = m;
			}
		}
	}

	/*
	 * XHTML-IM carries a plain body beside the rich one, and its links
	 * are usually in both: count the larger of the two, not their sum.
	 */
	urls = (sc->m[GM_URLS].n > rich ? sc->m[GM_URLS].n : rich) + oob;
	handlers = (sc->m[GM_HANDLERS].n > rich_h ? sc->m[GM_HANDLERS].n :
	    rich_h) + oob_h;
	if (sc->m[GM_HANDLERS].scheme != NULL) {
		scheme = sc->m[GM_HANDLERS].scheme;
		slen = sc->m[GM_HANDLERS].scheme_len;
	}

	/* the worst link, whether in a text or in the stanza's markup */
	if (sc->m[GM_URL_LEN].n >= maxlen) {
		maxlen = sc->m[GM_URL_LEN].n;
		longest = sc->m[GM_URL_LEN].where;
	}
	if (sc->m[GM_URL_SPECIAL].n >= maxspecial) {
		maxspecial = sc->m[GM_URL_SPECIAL].n;
		odd = sc->m[GM_URL_SPECIAL].where;
	}

	guard_limit(t, c, GS_URL_COUNT, urls, c->max_urls, "%lu links", urls);
	guard_limit(t, c, GS_URL_LONG, maxlen, c->max_url_length,
	    "link %zu bytes in %s", maxlen, longest);
	guard_limit(t, c, GS_URL_OBFUSCATED, maxspecial, c->max_url_special,
	    "link with %lu escapes/odd characters in %s", maxspecial, odd);
	guard_limit(t, c, GS_HANDLER_URLS, handlers, c->max_handler_urls,
	    "%lu protocol-handler links (first %.*s:)", handlers, (int)slen,
	    scheme != NULL ? scheme : "?");
}

/* guard_chars_report - the character and flood symbols from the scan */
static void
guard_chars_report(const struct guard_conf *c, struct xm_task *t,
    const struct guard_scan *sc)
{
	static const struct {
		enum guard_metric m;
		enum guard_sym s;
		size_t lim;     /* offset of the limit in struct guard_conf */
		const char *what;
		bool cp;        /* name the first offending code point */
	} rep[] = {
		{ GM_CONTROLS, GS_CONTROL_CHARS, GUARD_OFF(max_controls),
		    "control characters", true },
		{ GM_BIDI_OVERRIDE, GS_BIDI_OVERRIDE,
		    GUARD_OFF(max_bidi_overrides), "bidi overrides", true },
		{ GM_BIDI, GS_BIDI_CONTROLS, GUARD_OFF(max_bidi_controls),
		    "bidi controls", true },
		{ GM_ZERO_WIDTH, GS_ZERO_WIDTH, GUARD_OFF(max_zero_width),
		    "invisible characters", true },
		{ GM_REPLACEMENT, GS_REPLACEMENT_CHAR,
		    GUARD_OFF(max_replacement), "replacement characters",
		    false },
		{ GM_PRIVATE_USE, GS_PRIVATE_USE, GUARD_OFF(max_private_use),
		    "private-use characters", true },
		{ GM_EMOTICONS, GS_EMOTICON_FLOOD, GUARD_OFF(max_emoticons),
		    "emoticons", false },
		{ GM_REPEAT, GS_REPEATED, GUARD_OFF(max_repeat),
		    "repeated chars", false },
		{ GM_LINES, GS_MANY_LINES, GUARD_OFF(max_lines), "lines",
		    false },
	};
	const struct guard_worst *w;
	long long lim;
	size_t i;

	if (sc->bad_utf8 != NULL)
		guard_sym(t, c, GS_BAD_UTF8, "invalid UTF-8 in %s",
		    sc->bad_utf8);
	for (i = 0; i < XM_ARRAY_LEN(rep); i++) {
		w = &sc->m[rep[i].m];
		lim = *(const long long *)(const void *)((const char *)c +
		    rep[i].lim);
		if (rep[i].cp)
			guard_limit(t, c, rep[i].s, w->n, lim,
			    "%lu %s in %s (first U+%04lX)", w->n, rep[i].what,
			    w->where, (unsigned long)w->first);
		else
			guard_limit(t, c, rep[i].s, w->n, lim, "%lu %s in %s",
			    w->n, rep[i].what, w->where);
	}
}

/* guard_filenames - the right-to-left-override trick in offered files */
static void
guard_filenames(const struct guard_conf *c, struct xm_task *t,
    struct guard_scan *sc)
{
	const struct xm_event *ev = t->ev;
	const char *p, *end;
	enum guard_class cl;
	size_t i;
	long cp;

	for (i = 0; i < ev->nfiles; i++) {
		if ((p = ev->files[i].name) == NULL)
			continue;
		guard_utf8(sc, p, "file name");
		for (end = p + strlen(p); p < end; ) {
			if ((unsigned char)*p < 0x80) {
				p++;
				continue;
			}
			if ((cp = xm_utf8_next(&p, end)) < 0)
				break;
			cl = guard_class(cp);
			if (cl == GC_BIDI_OVERRIDE || cl == GC_BIDI)
				goto found;
		}
	}
	return;
found:
	guard_sym(t, c, GS_BIDI_FILENAME, "U+%04lX in file name %s",
	    (unsigned long)cp, ev->files[i].name);
}

/* guard_css_hex - the CSS escape "\\hex " at *PP as one lower-case ASCII
 * character ('?' for others); *PP is left on its last byte */
static char
guard_css_hex(const char **pp)
{
	const char *p = *pp + 1;
	unsigned long x = 0;
	int h, k;

	for (k = 0; k < 6 && (h = guard_hex((unsigned char)*p)) >= 0; k++, p++)
		x = x * 16 + (unsigned long)h;
	if (*p == ' ' || *p == '\t' || *p == '\n')
		p++;        /* one whitespace ends the escape */
	*pp = p - 1;
	return x > 0x20 && x < 0x7f ? (char)guard_lower((int)x) : '?';
}

/* guard_css - script hidden in a style attribute: expression(), behavior,
 * -moz-binding, url() of a dangerous scheme; CSS comments, escapes and
 * whitespace do not hide it. The reason, or NULL. */
static const char *
guard_css(const struct guard_conf *c, struct xm_arena *a, const char *v)
{
	static const char *const bad[] = {
		"expression(", "behavior:", "-moz-binding", "javascript:",
		"vbscript:",
	};
	char *buf, *q, *u, sch[GUARD_SCHEME_MAX];
	const char *p;
	size_t i, m;

	/* without parentheses, escapes or comments only a bare keyword can
	 * do harm: no need to normalise */
	if (strpbrk(v, "(\\/") == NULL) {
		for (i = 1; i < XM_ARRAY_LEN(bad); i++)
			if (strcasestr(v, bad[i]) != NULL)
				return bad[i];
		return NULL;
	}
	q = buf = xm_arena_alloc(a, strlen(v) + 1);
	for (p = v; *p != '\0'; p++) {
		if (p[0] == '/' && p[1] == '*') {
			if ((p = strstr(p + 2, "*/")) == NULL)
				break;
			p++;
			continue;
		}
		if (*p == '\\' && guard_hex((unsigned char)p[1]) >= 0) {
			*q++ = guard_css_hex(&p);
			continue;
		}
		if (*p == '\\' && p[1] != '\0')
			p++;        /* "\x" is x */
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			continue;
		*q++ = (char)guard_lower((unsigned char)*p);
	}
	*q = '\0';

	for (i = 0; i < XM_ARRAY_LEN(bad); i++)
		if (strstr(buf, bad[i]) != NULL)
			return bad[i];
	for (u = buf; (u = strstr(u, "url(")) != NULL; ) {
		u += 4;
		if (*u == '\'' || *u == '"')
			u++;
		m = guard_scheme(u, sch, sizeof(sch));
		if (m > 0 && guard_list_has(&c->dangerous_schemes, sch, m))
			return "url() of a dangerous scheme";
	}
	return NULL;
}

/* guard_url_attr - true for attributes whose value a browser fetches or
 * follows */
static bool
guard_url_attr(const char *name)
{
	static const char *const names[] = {
		"href", "src", "action", "formaction", "background", "lowsrc",
		"dynsrc", "cite", "data", "poster", "codebase", "longdesc",
		"usemap", "srcset",
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(names); i++)
		if (guard_lower((unsigned char)name[0]) == names[i][0] &&
		    strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

/* what the rich-text walk found: count, first finding, its element */
enum guard_rich_kind { RICH_ELEMENT = 0, RICH_EVENT, RICH_SCHEME, RICH_CSS };

struct guard_rich {
	unsigned long n[4];
	const char *what[4];
	const char *el[4];
};

/* guard_rich_note - count a finding of kind K; keep the first */
static void
guard_rich_note(struct guard_rich *r, enum guard_rich_kind k,
    const char *what, const char *el)
{
	if (r->n[k]++ == 0) {
		r->what[k] = what;
		r->el[k] = el;
	}
}

/* guard_xhtml_element - one element of rich text and its attributes */
static void
guard_xhtml_element(const struct guard_conf *c, struct xm_task *t,
    const struct xm_node *n, struct guard_rich *r)
{
	const struct xm_attr *at;
	const char *why;
	char sch[GUARD_SCHEME_MAX];
	size_t i, m;

	/* case-blind: a client that renders through an HTML parser takes
	 * <SCRIPT> for script */
	if (guard_list_has(&c->xhtml_elements, n->name, strlen(n->name)))
		guard_rich_note(r, RICH_ELEMENT, n->name, n->name);
	for (i = 0; i < n->nattrs; i++) {
		at = &n->attrs[i];
		if (at->name == NULL || at->value == NULL)
			continue;
		if (strncasecmp(at->name, "on", 2) == 0 && at->name[2] != '\0')
			guard_rich_note(r, RICH_EVENT, at->name, n->name);
		else if (strcasecmp(at->name, "style") == 0) {
			if ((why = guard_css(c, t->arena, at->value)) != NULL)
				guard_rich_note(r, RICH_CSS, why, n->name);
		} else if (guard_url_attr(at->name)) {
			m = guard_scheme(at->value, sch, sizeof(sch));
			if (m == 0 ||
			    !guard_list_has(&c->dangerous_schemes, sch, m))
				continue;
			why = r->n[RICH_SCHEME] > 0 ? NULL : xm_arena_printf(
			    t->arena, "%s=%.*s:", at->name, (int)m, sch);
			guard_rich_note(r, RICH_SCHEME, why, n->name);
		}
	}
}

/* guard_xhtml - walk the XHTML-IM body for script and dangerous links */
static void
guard_xhtml(const struct guard_conf *c, struct xm_task *t)
{
	const struct xm_node *root = t->ev->xhtml, *n;
	struct guard_rich r;

	if (root == NULL || !c->check_xhtml)
		return;
	memset(&r, 0, sizeof(r));
	/* iterative: the depth is the parser's limit, not the stack's */
	for (n = root;;) {
		if (n->name != NULL) {
			guard_xhtml_element(c, t, n, &r);
			if (n->children != NULL) {
				n = n->children;
				continue;
			}
		}
		while (n != root && n->next == NULL)
			n = n->parent;
		if (n == root)
			break;
		n = n->next;
	}

	if (r.n[RICH_ELEMENT] > 0)
		guard_sym(t, c, GS_XHTML_ELEMENT,
		    "%lu forbidden elements (first <%s>)", r.n[RICH_ELEMENT],
		    r.what[RICH_ELEMENT]);
	if (r.n[RICH_EVENT] > 0)
		guard_sym(t, c, GS_XHTML_EVENT_ATTR,
		    "%lu event attributes (first %s on <%s>)", r.n[RICH_EVENT],
		    r.what[RICH_EVENT], r.el[RICH_EVENT]);
	if (r.n[RICH_SCHEME] > 0)
		guard_sym(t, c, GS_XHTML_SCHEME,
		    "%lu dangerous links (first %s on <%s>)", r.n[RICH_SCHEME],
		    r.what[RICH_SCHEME], r.el[RICH_SCHEME]);
	if (r.n[RICH_CSS] > 0)
		guard_sym(t, c, GS_XHTML_CSS,
		    "%lu styles with script (first %s on <%s>)", r.n[RICH_CSS],
		    r.what[RICH_CSS], r.el[RICH_CSS]);
}

/* guard_domain_eq - domains equal, ignoring case and a trailing dot */
static bool
guard_domain_eq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen > 0 && a[alen - 1] == '.')
		alen--;
	if (blen > 0 && b[blen - 1] == '.')
		blen--;
	return alen == blen && alen > 0 && strncasecmp(a, b, alen) == 0;
}

/* guard_domain_ok - DOM may be sent by PEER: equal, or for a component
 * (SUB) a subdomain of it */
static bool
guard_domain_ok(const char *dom, const char *peer, bool sub)
{
	size_t dlen = strlen(dom), plen = strlen(peer);

	if (dlen > 0 && dom[dlen - 1] == '.')
		dlen--;
	if (guard_domain_eq(dom, dlen, peer))
		return true;
	if (plen > 0 && peer[plen - 1] == '.')
		plen--;
	return sub && plen > 0 && dlen > plen + 1 &&
	    dom[dlen - plen - 1] == '.' &&
	    guard_domain_eq(dom + dlen - plen, plen, peer);
}

/* guard_spoof - does the stanza's from belong to the session it came on? */
static void
guard_spoof(const struct guard_conf *c, struct xm_task *t,
    struct guard_scan *sc)
{
	const struct xm_event *ev = t->ev;
	const char *from = ev->from, *dom, *bare, *auth;
	bool ok = false, sub, any = false;
	size_t i;

	guard_utf8(sc, ev->from, "from");
	guard_utf8(sc, ev->to, "to");
	guard_utf8(sc, ev->auth, "auth");
	guard_utf8(sc, ev->peer, "peer");
	if (c->spoof_action == SPOOF_OFF || ev->origin == NULL ||
	    from == NULL || *from == '\0')
		return;

	if (strcmp(ev->origin, "c2s") == 0) {
		if (ev->auth == NULL || *ev->auth == '\0')
			return;
		bare = xm_jid_bare(t->arena, from);
		auth = xm_jid_bare(t->arena, ev->auth);
		if (bare != NULL && auth != NULL && strcasecmp(bare, auth) == 0)
			return;
		guard_sym(t, c, GS_SPOOFED_FROM,
		    "from %s on the c2s session of %s", from, ev->auth);
	} else if (strcmp(ev->origin, "s2s") == 0 ||
	    strcmp(ev->origin, "component") == 0) {
		sub = ev->origin[0] == 'c';
		dom = xm_jid_domain(t->arena, from);
		/* a repeated peer is a list: a multiplexed s2s link */
		for (i = 0; i < ev->nfields && !ok; i++) {
			if (strcmp(ev->fields[i].key, "peer") != 0 ||
			    ev->fields[i].value == NULL)
				continue;
			any = true;
			ok = dom != NULL &&
			    guard_domain_ok(dom, ev->fields[i].value, sub);
		}
		if (!any && ev->peer != NULL) {
			any = true;
			ok = dom != NULL && guard_domain_ok(dom, ev->peer, sub);
		}
		if (!any || ok)
			return;
		guard_sym(t, c, GS_SPOOFED_FROM, "from %s on the %s link of %s",
		    from, ev->origin, ev->peer != NULL ? ev->peer : "?");
	} else
		return;

	if (c->spoof_action == SPOOF_REJECT)
		xm_task_final(t, XM_REJECT,
		    guard_spoof_conditions[c->spoof_condition], c->spoof_text);
}

/* guard_init - check the lists and keep the config */
static int
guard_init(void **state, const void *conf, char *err, size_t errlen)
{
	const struct guard_conf *c = conf;
	const struct xm_strlist *lists[] = {
		&c->handler_schemes, &c->dangerous_schemes
	};
	struct guard_state *st;
	const char *s;
	size_t i, j, k;

	for (i = 0; i < XM_ARRAY_LEN(lists); i++) {
		for (j = 0; j < lists[i]->n; j++) {
			s = lists[i]->v[j];
			k = strlen(s);
			if (k > 0 && s[k - 1] == ':')
				k--;
			if (k == 0 || k >= GUARD_SCHEME_MAX ||
			    !guard_alpha((unsigned char)s[0]))
				goto bad;
			while (k-- > 1)
				if (!guard_scheme_char((unsigned char)s[k]))
					goto bad;
			continue;
bad:
			snprintf(err, errlen, "guard: \"%s\" is not a URI "
			    "scheme", s);
			return -1;
		}
	}
	for (j = 0; j < c->xhtml_elements.n; j++) {
		if (c->xhtml_elements.v[j][0] == '\0') {
			snprintf(err, errlen, "guard: empty element name in "
			    "xhtml_elements");
			return -1;
		}
	}
	if (c->spoof_condition < 0 || (size_t)c->spoof_condition >=
	    XM_ARRAY_LEN(guard_spoof_conditions)) {
		snprintf(err, errlen, "guard: bad spoof_condition");
		return -1;
	}
	st = xm_calloc(1, sizeof(*st));
	st->c = c;
	*state = st;
	return 0;
}

/* guard_check - run every check on t->ev */
static void
guard_check(void *state, struct xm_task *t)
{
	const struct guard_conf *c = ((struct guard_state *)state)->c;
	struct guard_scan sc;

	memset(&sc, 0, sizeof(sc));
	guard_spoof(c, t, &sc);
	guard_sizes(c, t);
	guard_texts(c, t, &sc);
	guard_links(c, t, &sc);
	guard_filenames(c, t, &sc);
	guard_chars_report(c, t, &sc);
	guard_xhtml(c, t);
}

/* guard_free - drop the state (the config is not ours) */
static void
guard_free(void *state)
{
	free(state);
}

const struct xm_filter_ops guard_filter = {
	.name = "guard",
	.abi = XM_FILTER_ABI,
	.flags = 0,
	.conf_size = sizeof(struct guard_conf),
	.settings = guard_settings,
	.init = guard_init,
	.check = guard_check,
	.free = guard_free,
};
