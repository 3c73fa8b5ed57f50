/*
 * test_event.c - unit tests of the event parser and the stanza tree
 * (plugin/event.c, plugin/node.c)
 *
 * Every part of the typed view (bodies, subjects, rich text and its
 * links, OOB, SI, Jingle, IBB, upload, invitations, presence kinds), the
 * envelope (known and unknown keys, repeats, account-age, time), several
 * events in one buffer, hostile input (each with the message it must
 * give), the shape counters, and xm_node_serialize round trips. Each test
 * owns one arena and frees it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "event.h"
#include "xm.h"

/* ---- helpers ---- */

#define MSG_HEAD "<message from='alice@example.org/pc' to='bob@example.org' " \
	"type='chat' id='m1'>"
#define IQ_HEAD "<iq from='alice@example.org/pc' to='bob@example.org/phone' " \
	"type='set' id='i1'>"

static struct xm_arena *arena;

static void
setup(void)
{
	arena = xm_arena_new();
}

static void
teardown(void)
{
	xm_arena_free(arena);
	arena = NULL;
}

TestSuite(event, .init = setup, .fini = teardown);
TestSuite(view, .init = setup, .fini = teardown);
TestSuite(envelope, .init = setup, .fini = teardown);
TestSuite(hostile, .init = setup, .fini = teardown);
TestSuite(serialize, .init = setup, .fini = teardown);

/* parse_lim - parse TEXT with limits LIM; must succeed */
static struct xm_event *
parse_lim(const char *text, const struct xm_event_limits *lim)
{
	struct xm_event *ev = NULL;
	size_t used = 0;
	char err[512] = "";
	int rc = xm_event_parse(arena, text, strlen(text), lim, &ev, &used, err,
	    sizeof(err));

	cr_assert_eq(rc, 0, "parse failed (%d): %s\n%s", rc, err, text);
	cr_assert_not_null(ev);
	return ev;
}

/* parse - TEXT with the default limits; must succeed */
static struct xm_event *
parse(const char *text)
{
	struct xm_event_limits lim;

	xm_event_limits_default(&lim);
	return parse_lim(text, &lim);
}

/* parse_err_lim - parse TEXT[0..len), must fail; the message (static) */
static const char *
parse_err_lim(const char *text, size_t len, const struct xm_event_limits *lim)
{
	static char err[512];
	struct xm_event *ev = NULL;
	size_t used = 4242;
	int rc;

	err[0] = '\0';
	rc = xm_event_parse(arena, text, len, lim, &ev, &used, err, sizeof(err));
	cr_expect_eq(rc, -1, "accepted: %.200s", text);
	cr_expect_eq(used, 4242, "consumed set on error");
	cr_expect_neq(err[0], '\0', "no message");
	return err;
}

/* ---- the typed view ---- */

Test(view, bodies_and_subjects_with_lang)
{
	struct xm_event *ev = parse("origin=c2s\n\n" MSG_HEAD
	    "<subject>Re: plans</subject>"
	    "<subject xml:lang='fr'>Re: projets</subject>"
	    "<body>hello &amp; welcome</body>"
	    "<body xml:lang='de'>hallo</body>"
	    "<body xml:lang='ja'></body>"
	    "<body xmlns='urn:example:not-a-body'>no</body>"
	    "<thread>t1</thread></message>");

	cr_expect_eq(ev->kind, XM_KIND_MESSAGE);
	cr_expect_str_eq(ev->name, "message");
	cr_expect_str_eq(ev->type, "chat");
	cr_expect_str_eq(ev->from, "alice@example.org/pc");
	cr_expect_str_eq(ev->to, "bob@example.org");
	cr_expect_str_eq(ev->id, "m1");
	cr_assert_eq(ev->nbodies, 3);
	cr_expect_null(ev->bodies[0].lang);
	cr_expect_str_eq(ev->bodies[0].text, "hello & welcome");
	cr_expect_str_eq(ev->bodies[1].lang, "de");
	cr_expect_str_eq(ev->bodies[1].text, "hallo");
	cr_expect_str_eq(ev->bodies[2].lang, "ja");
	cr_expect_str_eq(ev->bodies[2].text, "");
	cr_assert_eq(ev->nsubjects, 2);
	cr_expect_str_eq(ev->subjects[0].text, "Re: plans");
	cr_expect_null(ev->subjects[0].lang);
	cr_expect_str_eq(ev->subjects[1].lang, "fr");
	cr_expect_null(ev->xhtml);
	cr_expect_eq(ev->nurls, 0);
	cr_expect_eq(ev->nfiles, 0);
	cr_expect_eq(ev->ninvites, 0);
}

Test(view, bodies_in_the_client_namespace)
{
	struct xm_event *ev = parse("<message xmlns='jabber:client' to='b@x'>"
	    "<body>one</body><body xmlns='jabber:server'>other ns</body>"
	    "</message>");

	cr_expect_str_eq(ev->root->ns, "jabber:client");
	cr_assert_eq(ev->nbodies, 1);
	cr_expect_str_eq(ev->bodies[0].text, "one");
	cr_expect_eq(ev->nfields, 0);
	cr_expect_null(ev->origin);
}

Test(view, body_text_with_cdata_and_entities)
{
	struct xm_event *ev = parse(MSG_HEAD "<body>a<![CDATA[<b>&c]]>d&#x263A;"
	    "&lt;&gt;&quot;&apos;\n2nd line</body></message>");

	cr_assert_eq(ev->nbodies, 1);
	cr_expect_str_eq(ev->bodies[0].text, "a<b>&cd\xe2\x98\xba<>\"'\n2nd line");
}

Test(view, xhtml_im_text_and_links)
{
	struct xm_event *ev = parse(MSG_HEAD "<body>Hi link</body>"
	    "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
	    "<body xmlns='http://www.w3.org/1999/xhtml'>"
	    "<p style='font-weight:bold'>Hi <a href='https://example.org/x?a=1&amp;b=2'>"
	    "the <em>link</em></a> <img src='https://img.example.net/a.png' "
	    "alt='a picture'/><img src='https://img.example.net/b.png'/>"
	    "<a>no href</a><a href=''>empty</a></p></body>"
	    "<body xml:lang='de' xmlns='http://www.w3.org/1999/xhtml'>"
	    "<a href='https://second.example/'>zwei</a></body></html>"
	    "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
	    "<body xmlns='http://www.w3.org/1999/xhtml'>"
	    "<a href='https://third.example/'>3</a></body></html></message>");

	cr_assert_not_null(ev->xhtml);
	cr_expect_str_eq(ev->xhtml->name, "body");
	cr_expect_str_eq(ev->xhtml->ns, "http://www.w3.org/1999/xhtml");
	cr_expect_str_eq(ev->xhtml_text, "Hi the link no hrefempty");
	cr_assert_eq(ev->nurls, 3, "only the first rich body: %zu urls",
	    ev->nurls);
	cr_expect_eq(ev->urls[0].source, XM_URL_XHTML_HREF);
	cr_expect_str_eq(ev->urls[0].url, "https://example.org/x?a=1&b=2");
	cr_expect_str_eq(ev->urls[0].desc, "the link");
	cr_expect_eq(ev->urls[1].source, XM_URL_XHTML_SRC);
	cr_expect_str_eq(ev->urls[1].url, "https://img.example.net/a.png");
	cr_expect_str_eq(ev->urls[1].desc, "a picture");
	cr_expect_eq(ev->urls[2].source, XM_URL_XHTML_SRC);
	cr_expect_null(ev->urls[2].desc);
	cr_expect_eq(ev->nbodies, 1, "rich bodies are not plain bodies");
}

Test(view, xhtml_wrapper_without_xhtml_body)
{
	struct xm_event *ev = parse(MSG_HEAD "<html xmlns='http://jabber.org/"
	    "protocol/xhtml-im'><body><a href='http://x/'>x</a></body></html>"
	    "</message>");

	cr_expect_null(ev->xhtml);
	cr_expect_null(ev->xhtml_text);
	cr_expect_eq(ev->nurls, 0);
}

Test(view, oob_in_a_message)
{
	struct xm_event *ev = parse(MSG_HEAD "<body>look</body>"
	    "<x xmlns='jabber:x:oob'><url>http://198.51.100.7:8081/photos/"
	    "IMG_0042.jpg.exe?dl=1#top</url><desc>my photo</desc></x>"
	    "<x xmlns='jabber:x:oob'><desc>no url</desc></x></message>");

	cr_expect_eq(ev->kind, XM_KIND_MESSAGE);
	cr_assert_eq(ev->nurls, 1);
	cr_expect_eq(ev->urls[0].source, XM_URL_OOB);
	cr_expect_str_eq(ev->urls[0].url, "http://198.51.100.7:8081/photos/"
	    "IMG_0042.jpg.exe?dl=1#top");
	cr_expect_str_eq(ev->urls[0].desc, "my photo");
	cr_assert_eq(ev->nfiles, 1);
	cr_expect_eq(ev->files[0].method, XM_FT_OOB);
	cr_expect_str_eq(ev->files[0].name, "IMG_0042.jpg.exe");
	cr_expect_str_eq(ev->files[0].url, ev->urls[0].url);
	cr_expect_str_eq(ev->files[0].desc, "my photo");
	cr_expect_eq(ev->files[0].size, -1);
	cr_expect_str_eq(xm_file_method_name(ev->files[0].method), "oob");
}

Test(view, oob_in_an_iq)
{
	struct xm_event *ev = parse(IQ_HEAD "<query xmlns='jabber:iq:oob' "
	    "sid='oob1'><url>https://files.example.org/dl/report.pdf</url>"
	    "</query></iq>");

	cr_expect_eq(ev->kind, XM_KIND_TRANSFER);
	cr_assert_eq(ev->nfiles, 1);
	cr_expect_eq(ev->files[0].method, XM_FT_OOB);
	cr_expect_str_eq(ev->files[0].name, "report.pdf");
	cr_expect_str_eq(ev->files[0].sid, "oob1");
	cr_expect_null(ev->files[0].desc);
	cr_assert_eq(ev->nurls, 1);
	cr_expect_eq(ev->urls[0].source, XM_URL_OOB);
	/* an OOB query without a URL is not a transfer */
	ev = parse(IQ_HEAD "<query xmlns='jabber:iq:oob'/></iq>");
	cr_expect_eq(ev->kind, XM_KIND_IQ);
	cr_expect_eq(ev->nfiles, 0);
}

/* A URL without a path names no file: the host is not a file name (an
 * OOB link to https://example.com must not look like a .com program). */
Test(view, oob_url_without_a_path_has_no_file_name)
{
	static const char *const urls[] = {
		"https://example.com",
		"https://example.com/",
		"http://www.example.com?x=1",
		"http://user@files.example.com#frag",
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(urls); i++) {
		char *text = xm_arena_printf(arena, MSG_HEAD "<x xmlns='jabber:x:oob'>"
		    "<url>%s</url></x></message>", urls[i]);
		struct xm_event *ev = parse(text);

		cr_assert_eq(ev->nfiles, 1);
		cr_expect_null(ev->files[0].name, "%s: file name \"%s\"", urls[i],
		    ev->files[0].name);
	}
}

Test(view, si_file_offer)
{
	struct xm_event *ev = parse(IQ_HEAD
	    "<si xmlns='http://jabber.org/protocol/si' id='a0' "
	    "mime-type='application/x-msdownload' "
	    "profile='http://jabber.org/protocol/si/profile/file-transfer'>"
	    "<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' "
	    "name='holiday.jpg.scr' size='1022' date='1969-07-21T02:56:15Z' "
	    "hash='552da749930852c69ae5d2141d3766b1'><desc>look at this</desc>"
	    "<range/></file>"
	    "<feature xmlns='http://jabber.org/protocol/feature-neg'/></si></iq>");
	const struct xm_file *f;

	cr_expect_eq(ev->kind, XM_KIND_TRANSFER);
	cr_assert_eq(ev->nfiles, 1);
	f = &ev->files[0];
	cr_expect_eq(f->method, XM_FT_SI);
	cr_expect_str_eq(f->name, "holiday.jpg.scr");
	cr_expect_str_eq(f->type, "application/x-msdownload");
	cr_expect_str_eq(f->sid, "a0");
	cr_expect_str_eq(f->desc, "look at this");
	cr_expect_eq(f->size, 1022);
	cr_assert_eq(f->nhashes, 1);
	cr_expect_str_eq(f->hashes[0].algo, "md5");
	cr_expect_str_eq(f->hashes[0].value, "552da749930852c69ae5d2141d3766b1");
	/* without a file element it is not an offer; a bad size is unknown */
	ev = parse(IQ_HEAD "<si xmlns='http://jabber.org/protocol/si' id='a1'/>"
	    "</iq>");
	cr_expect_eq(ev->kind, XM_KIND_IQ);
	ev = parse(IQ_HEAD "<si xmlns='http://jabber.org/protocol/si' id='a2'>"
	    "<file xmlns='http://jabber.org/protocol/si/profile/file-transfer' "
	    "name='x' size='-5'/></si></iq>");
	cr_assert_eq(ev->nfiles, 1);
	cr_expect_eq(ev->files[0].size, -1);
	cr_expect_eq(ev->files[0].nhashes, 0);
}

Test(view, jingle_file_transfer_with_hashes)
{
	struct xm_event *ev = parse(IQ_HEAD
	    "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' "
	    "initiator='alice@example.org/pc' sid='851ba2'>"
	    "<content creator='initiator' name='a-file-offer' senders='initiator'>"
	    "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>"
	    "<date>2015-07-26T21:46:00+01:00</date>"
	    "<media-type>text/plain</media-type><name>test.txt</name>"
	    "<size>6144</size><desc>notes</desc>"
	    "<hash xmlns='urn:xmpp:hashes:2' algo='sha-1'>w0mcJylzCn+AfvuGdqkty2+KP48=</hash>"
	    "<hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>"
	    "2ZtNGsIPc3/WnAPtuQPl7VgHKPsXsWJINKLIIxPBkKY=</hash>"
	    "<hash xmlns='urn:example:not-a-hash' algo='x'>no</hash>"
	    "</file></description>"
	    "<transport xmlns='urn:xmpp:jingle:transports:s5b:1' mode='tcp' "
	    "sid='vj3hs98y'/></content>"
	    "<content creator='initiator' name='second'>"
	    "<description xmlns='urn:xmpp:jingle:apps:file-transfer:3'><offer>"
	    "<file><name>old.exe</name><size>12</size></file></offer>"
	    "</description></content>"
	    "<content creator='initiator' name='voice'>"
	    "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>"
	    "</content></jingle></iq>");
	const struct xm_file *f;

	cr_expect_eq(ev->kind, XM_KIND_TRANSFER);
	cr_assert_eq(ev->nfiles, 2);
	f = &ev->files[0];
	cr_expect_eq(f->method, XM_FT_JINGLE);
	cr_expect_str_eq(f->sid, "851ba2");
	cr_expect_str_eq(f->name, "test.txt");
	cr_expect_str_eq(f->type, "text/plain");
	cr_expect_str_eq(f->desc, "notes");
	cr_expect_eq(f->size, 6144);
	cr_assert_eq(f->nhashes, 2);
	cr_expect_str_eq(f->hashes[0].algo, "sha-1");
	cr_expect_str_eq(f->hashes[0].value, "w0mcJylzCn+AfvuGdqkty2+KP48=");
	cr_expect_str_eq(f->hashes[1].algo, "sha-256");
	/* XEP-0234 version 3 puts the file inside <offer> */
	cr_expect_str_eq(ev->files[1].name, "old.exe");
	cr_expect_eq(ev->files[1].size, 12);
	cr_expect_null(ev->files[1].type);
	cr_expect_eq(ev->files[1].nhashes, 0);
	cr_expect_str_eq(xm_file_method_name(XM_FT_JINGLE), "jingle");
}

Test(view, jingle_other_actions_are_not_offers)
{
	static const char *const actions[] = { "session-accept",
	    "session-terminate", "transport-info", "" };
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(actions); i++) {
		struct xm_event *ev = parse(xm_arena_printf(arena, IQ_HEAD
		    "<jingle xmlns='urn:xmpp:jingle:1' action='%s' sid='s'>"
		    "<content creator='initiator' name='f'><description "
		    "xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>a"
		    "</name></file></description></content></jingle></iq>",
		    actions[i]));

		cr_expect_eq(ev->kind, XM_KIND_IQ, "%s", actions[i]);
		cr_expect_eq(ev->nfiles, 0, "%s", actions[i]);
	}
	/* content-add offers files too */
	cr_expect_eq(parse(IQ_HEAD "<jingle xmlns='urn:xmpp:jingle:1' "
	    "action='content-add' sid='s'><content creator='initiator' "
	    "name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'>"
	    "<file><name>b</name></file></description></content></jingle></iq>")
	    ->kind, XM_KIND_TRANSFER);
}

Test(view, ibb_open_data_close)
{
	struct xm_event *ev;

	ev = parse(IQ_HEAD "<open xmlns='http://jabber.org/protocol/ibb' "
	    "block-size='4096' sid='i781hf64' stanza='iq'/></iq>");
	cr_expect_eq(ev->kind, XM_KIND_TRANSFER);
	cr_assert_eq(ev->nfiles, 1);
	cr_expect_eq(ev->files[0].method, XM_FT_IBB_OPEN);
	cr_expect_eq(ev->files[0].block_size, 4096);
	cr_expect_str_eq(ev->files[0].sid, "i781hf64");
	cr_expect_eq(ev->files[0].seq, -1);

	ev = parse(IQ_HEAD "<data xmlns='http://jabber.org/protocol/ibb' seq='7' "
	    "sid='i781hf64'>qANQR1DBwU4DX7jmYZnncm</data></iq>");
	cr_expect_eq(ev->kind, XM_KIND_TRANSFER);
	cr_assert_eq(ev->nfiles, 1);
	cr_expect_eq(ev->files[0].method, XM_FT_IBB_DATA);
	cr_expect_eq(ev->files[0].seq, 7);
	cr_expect_str_eq(ev->files[0].data, "qANQR1DBwU4DX7jmYZnncm");

	ev = parse(IQ_HEAD "<data xmlns='http://jabber.org/protocol/ibb' seq='0' "
	    "sid='s'/></iq>");
	cr_assert_eq(ev->nfiles, 1);
	cr_expect_str_eq(ev->files[0].data, "");

	ev = parse(IQ_HEAD "<close xmlns='http://jabber.org/protocol/ibb' "
	    "sid='i781hf64'/></iq>");
	cr_assert_eq(ev->nfiles, 1);
	cr_expect_eq(ev->files[0].method, XM_FT_IBB_CLOSE);
	cr_expect_str_eq(xm_file_method_name(XM_FT_IBB_CLOSE), "ibb-close");

	/* IBB data may ride in a message (stanza='message') */
	ev = parse(MSG_HEAD "<data xmlns='http://jabber.org/protocol/ibb' seq='1' "
	    "sid='m'>AAAA</data></message>");
	cr_expect_eq(ev->kind, XM_KIND_MESSAGE);
	cr_assert_eq(ev->nfiles, 1);
	cr_expect_eq(ev->files[0].method, XM_FT_IBB_DATA);
	cr_expect_str_eq(ev->files[0].data, "AAAA");

	/* an unknown IBB element is nothing */
	ev = parse(IQ_HEAD "<other xmlns='http://jabber.org/protocol/ibb'/></iq>");
	cr_expect_eq(ev->kind, XM_KIND_IQ);
	cr_expect_eq(ev->nfiles, 0);
}

Test(view, upload_slot_request)
{
	struct xm_event *ev = parse("origin=c2s\nauth=alice@example.org\n\n"
	    "<iq from='alice@example.org/pc' to='upload.example.org' type='get' "
	    "id='u1'><request xmlns='urn:xmpp:http:upload:0' "
	    "filename='tr\xc3\xa8s cool.jpg' size='23456' "
	    "content-type='image/jpeg'/></iq>");

	cr_expect_eq(ev->kind, XM_KIND_UPLOAD);
	cr_assert_eq(ev->nfiles, 1);
	cr_expect_eq(ev->files[0].method, XM_FT_UPLOAD);
	cr_expect_str_eq(ev->files[0].name, "tr\xc3\xa8s cool.jpg");
	cr_expect_eq(ev->files[0].size, 23456);
	cr_expect_str_eq(ev->files[0].type, "image/jpeg");
	cr_expect_str_eq(xm_kind_name(ev->kind), "upload");
}

Test(view, muc_mediated_invites)
{
	struct xm_event *ev = parse("<message from='darkcave@chat.example.org' "
	    "to='hecate@example.org'>"
	    "<x xmlns='http://jabber.org/protocol/muc#user'>"
	    "<invite from='crone1@example.org/desktop' to='hecate@example.org'>"
	    "<reason>Hey Hecate, this is the place for all good witches!</reason>"
	    "</invite><invite to='second@example.org'/>"
	    "<password>cauldronburn</password></x></message>");

	cr_expect_eq(ev->kind, XM_KIND_MESSAGE);
	cr_assert_eq(ev->ninvites, 2);
	cr_expect_eq(ev->invites[0].kind, XM_INVITE_MEDIATED);
	cr_expect_str_eq(ev->invites[0].room, "darkcave@chat.example.org");
	cr_expect_str_eq(ev->invites[0].invitee, "hecate@example.org");
	cr_expect_str_eq(ev->invites[0].reason,
	    "Hey Hecate, this is the place for all good witches!");
	cr_expect_str_eq(ev->invites[0].password, "cauldronburn");
	cr_expect_str_eq(ev->invites[1].invitee, "second@example.org");
	cr_expect_null(ev->invites[1].reason);
	cr_expect_str_eq(ev->invites[1].password, "cauldronburn");
	/* muc#user without invite (a status presence-like x) is none */
	ev = parse("<message from='r@chat.example.org' to='a@example.org'>"
	    "<x xmlns='http://jabber.org/protocol/muc#user'><status code='104'/>"
	    "</x></message>");
	cr_expect_eq(ev->ninvites, 0);
}

Test(view, direct_invite)
{
	struct xm_event *ev = parse(MSG_HEAD "<x xmlns='jabber:x:conference' "
	    "jid='darkcave@macbeth.example.org' password='cauldronburn' "
	    "reason='Hey Hecate'/></message>");

	cr_assert_eq(ev->ninvites, 1);
	cr_expect_eq(ev->invites[0].kind, XM_INVITE_DIRECT);
	cr_expect_str_eq(ev->invites[0].room, "darkcave@macbeth.example.org");
	cr_expect_str_eq(ev->invites[0].reason, "Hey Hecate");
	cr_expect_str_eq(ev->invites[0].password, "cauldronburn");
	cr_expect_null(ev->invites[0].invitee);
}

Test(view, presence_kinds_and_status)
{
	static const struct { const char *type; enum xm_kind kind; } t[] = {
		{ "subscribe", XM_KIND_SUBSCRIPTION },
		{ "subscribed", XM_KIND_SUBSCRIPTION },
		{ "unsubscribe", XM_KIND_SUBSCRIPTION },
		{ "unsubscribed", XM_KIND_SUBSCRIPTION },
		{ "probe", XM_KIND_PRESENCE },
		{ "unavailable", XM_KIND_PRESENCE },
		{ "error", XM_KIND_PRESENCE },
		{ "Subscribe", XM_KIND_PRESENCE },
		{ NULL, XM_KIND_PRESENCE },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		char *text = t[i].type ?
		    xm_arena_printf(arena, "<presence from='a@x' to='b@y' "
		    "type='%s'><status>please add me</status></presence>", t[i].type) :
		    xm_arena_strdup(arena, "<presence from='a@x'><show>away</show>"
		    "<status>please add me</status></presence>");
		struct xm_event *ev = parse(text);

		cr_expect_eq(ev->kind, t[i].kind, "type %s: kind %s", t[i].type,
		    xm_kind_name(ev->kind));
		cr_expect_str_eq(ev->status, "please add me");
	}
	cr_expect_null(parse("<presence/>")->status);
	cr_expect_str_eq(xm_kind_name(XM_KIND_SUBSCRIPTION), "subscription");
}

Test(view, other_kinds)
{
	struct xm_event *ev = parse("<iq type='get' id='p'><ping "
	    "xmlns='urn:xmpp:ping'/></iq>");

	cr_expect_eq(ev->kind, XM_KIND_IQ);
	cr_expect_eq(ev->nfiles, 0);
	ev = parse("<stream:features xmlns:stream='http://etherx.jabber.org/"
	    "streams'/>");
	cr_expect_eq(ev->kind, XM_KIND_OTHER);
	cr_expect_str_eq(ev->name, "features");
	cr_expect_str_eq(ev->root->ns, "http://etherx.jabber.org/streams");
	cr_expect_str_eq(xm_kind_name(XM_KIND_OTHER), "other");
	cr_expect_str_eq(xm_kind_name((enum xm_kind)99), "?");
}

Test(view, names_parse_back)
{
	enum xm_kind k;
	enum xm_action a;
	size_t i;

	for (i = 0; i < XM_KIND_COUNT; i++) {
		cr_expect_eq(xm_kind_parse(xm_kind_name((enum xm_kind)i), &k), 0);
		cr_expect_eq(k, (enum xm_kind)i);
	}
	for (i = XM_ACCEPT; i <= XM_DISCARD; i++) {
		cr_expect_eq(xm_action_parse(xm_action_name((enum xm_action)i), &a),
		    0);
		cr_expect_eq(a, (enum xm_action)i);
	}
	cr_expect_eq(xm_kind_parse("Message", &k), -1);
	cr_expect_eq(xm_action_parse("drop", &a), -1);
}

/* ---- the envelope ---- */

Test(envelope, known_and_unknown_fields)
{
	struct xm_event *ev = parse(
	    "origin=s2s\npeer=remote.example\nip=203.0.113.5\n"
	    "auth=alice@example.org\ntls=yes\nroster=both\naccount-age=86400\n"
	    "time=2026-11-22T10:00:00.250Z\nx-future=whatever=it=is\n"
	    "# a comment line, for hand-written fixtures\n"
	    "kind=ignored\n\n<message/>");

	cr_expect_str_eq(ev->origin, "s2s");
	cr_expect_str_eq(ev->peer, "remote.example");
	cr_expect_str_eq(ev->ip, "203.0.113.5");
	cr_expect_str_eq(ev->auth, "alice@example.org");
	cr_expect_str_eq(ev->tls, "yes");
	cr_expect_str_eq(ev->roster, "both");
	cr_expect_eq(ev->account_age, 86400);
	cr_expect_str_eq(ev->time_text, "2026-11-22T10:00:00.250Z");
	cr_expect_float_eq(ev->time, 1795341600.25, 1e-6);
	cr_assert_eq(ev->nfields, 10);
	cr_expect_str_eq(ev->fields[8].key, "x-future");
	cr_expect_str_eq(ev->fields[8].value, "whatever=it=is");
	cr_expect_str_eq(xm_event_field(ev, "x-future"), "whatever=it=is");
	cr_expect_str_eq(xm_event_field(ev, "kind"), "ignored");
	cr_expect_null(xm_event_field(ev, "nope"));
	cr_expect_eq(ev->kind, XM_KIND_MESSAGE);
}

Test(envelope, absent_fields)
{
	struct xm_event *ev = parse("origin=c2s\n\n<message/>");

	cr_expect_null(ev->peer);
	cr_expect_null(ev->time_text);
	cr_expect_lt(ev->time, 0);
	cr_expect_eq(ev->account_age, -1);
	cr_expect_eq(ev->nfields, 1);
	ev = parse("<message/>");
	cr_expect_eq(ev->nfields, 0);
	cr_expect_null(ev->origin);
}

Test(envelope, repeated_key_is_a_list_and_the_first_wins)
{
	struct xm_event *ev = parse("ip=192.0.2.1\nip=192.0.2.2\n"
	    "account-age=5\naccount-age=junk\ntime=2026-11-22T10:00:00Z\n"
	    "time=bad\n\n<message/>");
	size_t i, n = 0;

	for (i = 0; i < ev->nfields; i++)
		if (strcmp(ev->fields[i].key, "ip") == 0)
			n++;
	cr_expect_eq(n, 2);
	cr_expect_str_eq(ev->ip, "192.0.2.1");
	cr_expect_str_eq(xm_event_field(ev, "ip"), "192.0.2.1");
	cr_expect_eq(ev->account_age, 5);
	cr_expect_str_eq(ev->time_text, "2026-11-22T10:00:00Z");
}

Test(envelope, values_may_hold_anything_but_cr_lf_nul)
{
	struct xm_event *ev = parse("note= spaces and = signs \t\xe2\x82\xac\n"
	    "empty=\n\n<message/>");

	cr_expect_str_eq(xm_event_field(ev, "note"),
	    " spaces and = signs \t\xe2\x82\xac");
	cr_expect_str_eq(xm_event_field(ev, "empty"), "");
}

Test(envelope, account_age_and_time)
{
	static const struct { const char *line; int ok; } t[] = {
		{ "account-age=0", 1 },
		{ "account-age=4611686018427387904", 1 },
		{ "account-age=4611686018427387905", 0 },
		{ "account-age=-1", 0 },
		{ "account-age=", 0 },
		{ "account-age=1d", 0 },
		{ "time=2026-11-22T11:00:00+01:00", 1 },
		{ "time=2026-11-22T10:00:00", 0 },
		{ "time=now", 0 },
		{ "time=", 0 },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		char *text = xm_arena_printf(arena, "%s\n\n<message/>", t[i].line);

		if (t[i].ok) {
			parse(text);
		} else {
			struct xm_event_limits lim;
			const char *err;

			xm_event_limits_default(&lim);
			err = parse_err_lim(text, strlen(text), &lim);
			cr_expect(strstr(err, "envelope: bad") != NULL, "%s: %s",
			    t[i].line, err);
		}
	}
}

Test(envelope, errors)
{
	static const struct {
		const char *what, *text;
		size_t len;
		const char *msg;
	} t[] = {
		{ "no equals sign", "origin\n\n<message/>", 0,
		    "envelope line 1: not key=value" },
		{ "empty key", "=c2s\n\n<message/>", 0,
		    "envelope line 1: not key=value" },
		{ "upper-case key", "origin=c2s\nIP=1\n\n<message/>", 0,
		    "envelope line 2: not key=value" },
		{ "space in key", "a b=1\n\n<message/>", 0,
		    "envelope line 1: not key=value" },
		{ "CR at line end", "origin=c2s\r\n\r\n<message/>", 0,
		    "envelope line 1: NUL or CR in line" },
		{ "CR in value", "note=a\rb\n\n<message/>", 0,
		    "envelope line 1: NUL or CR in line" },
		{ "NUL in value", "note=a\0b\n\n<message/>", 21,
		    "envelope line 1: NUL or CR in line" },
		{ "invalid UTF-8 value", "note=\xff\xfe\n\n<message/>", 0,
		    "envelope line 1: invalid UTF-8" },
		{ "overlong UTF-8 value", "note=\xc0\xaf\n\n<message/>", 0,
		    "envelope line 1: invalid UTF-8" },
		{ "no stanza (end of input)", "origin=c2s\nip=1", 0,
		    "envelope line 2: no stanza follows" },
		{ "no stanza after the blank line", "origin=c2s\n\n", 0,
		    "event: no stanza after the envelope" },
		{ "text instead of a stanza", "origin=c2s\n\nhello\n", 0,
		    "event: no stanza after the envelope" },
		{ "comment lines only", "# just a comment\n", 0,
		    "event: no stanza" },
	};
	struct xm_event_limits lim;
	size_t i;

	xm_event_limits_default(&lim);
	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		size_t len = t[i].len ? t[i].len : strlen(t[i].text);
		const char *err = parse_err_lim(t[i].text, len, &lim);

		cr_expect(strstr(err, t[i].msg) != NULL, "%s: \"%s\", want \"%s\"",
		    t[i].what, err, t[i].msg);
	}
}

Test(envelope, limits_on_fields_and_lines)
{
	struct xm_event_limits lim;
	struct xm_buf b = { 0 };
	const char *err;
	size_t i;

	xm_event_limits_default(&lim);
	lim.max_fields = 3;
	lim.max_field_len = 64;
	/* three fields and a comment: fine */
	parse_lim("a=1\nb=2\n# c\nc=3\n\n<message/>", &lim);
	err = parse_err_lim("a=1\nb=2\nc=3\nd=4\n\n<message/>", 26, &lim);
	cr_expect_str_eq(err, "envelope: more than 3 fields");
	/* a line of exactly 64 bytes is fine, 65 is not */
	xm_buf_puts(&b, "k=");
	for (i = 0; i < 62; i++)
		xm_buf_puts(&b, "v");
	xm_buf_puts(&b, "\n\n<message/>");
	parse_lim(b.data, &lim);
	xm_buf_reset(&b);
	xm_buf_puts(&b, "k=");
	for (i = 0; i < 63; i++)
		xm_buf_puts(&b, "v");
	xm_buf_puts(&b, "\n\n<message/>");
	err = parse_err_lim(b.data, b.len, &lim);
	cr_expect_str_eq(err, "envelope line 1: longer than 64 bytes");
	/* a long line without a newline is refused by its length first */
	xm_buf_reset(&b);
	for (i = 0; i < 1000; i++)
		xm_buf_puts(&b, "x");
	err = parse_err_lim(b.data, b.len, &lim);
	cr_expect_str_eq(err, "envelope line 1: longer than 64 bytes");
	xm_buf_free(&b);
}

/* ---- several events in one buffer ---- */

Test(event, several_events_in_one_buffer)
{
	static const char text[] =
	    "\n\n# first\norigin=c2s\nauth=a@x\n\n"
	    "<message to='b@y'><body>one</body></message>\n"
	    "\norigin=s2s\npeer=y\n\n"
	    "<presence type='subscribe' to='a@x'/>"
	    "<iq type='get' id='3'/>   \n\t\n"
	    "origin=component\n\n<message><body>four</body></message>\n\n  ";
	static const struct { const char *name, *origin; } want[] = {
		{ "message", "c2s" }, { "presence", "s2s" }, { "iq", NULL },
		{ "message", "component" },
	};
	struct xm_event_limits lim;
	size_t pos = 0, used, i;
	char err[256];

	xm_event_limits_default(&lim);
	for (i = 0; i < XM_ARRAY_LEN(want); i++) {
		struct xm_event *ev;
		int rc = xm_event_parse(arena, text + pos, sizeof(text) - 1 - pos,
		    &lim, &ev, &used, err, sizeof(err));

		cr_assert_eq(rc, 0, "event %zu: %s", i, err);
		cr_expect_str_eq(ev->name, want[i].name, "event %zu", i);
		if (want[i].origin)
			cr_expect_str_eq(ev->origin, want[i].origin, "event %zu", i);
		else
			cr_expect_null(ev->origin, "event %zu", i);
		pos += used;
	}
	{
		struct xm_event *ev;

		cr_expect_eq(xm_event_parse(arena, text + pos, sizeof(text) - 1 - pos,
		    &lim, &ev, &used, err, sizeof(err)), 1);
	}
	cr_expect_eq(pos, sizeof(text) - 1, "trailing white space consumed");
}

Test(event, empty_input_means_no_more_events)
{
	struct xm_event_limits lim;
	struct xm_event *ev;
	size_t used = 7;
	char err[64];

	xm_event_limits_default(&lim);
	cr_expect_eq(xm_event_parse(arena, "", 0, &lim, &ev, &used, err,
	    sizeof(err)), 1);
	cr_expect_eq(xm_event_parse(arena, " \n\t\r\n", 5, &lim, &ev, &used, err,
	    sizeof(err)), 1);
}

Test(event, raw_text_and_consumed)
{
	static const char text[] = "origin=c2s\n\n<message to='b@y'><body>x"
	    "</body></message>\n\n<message/>";
	struct xm_event_limits lim;
	struct xm_event *ev;
	size_t used;
	char err[256];

	xm_event_limits_default(&lim);
	cr_assert_eq(xm_event_parse(arena, text, sizeof(text) - 1, &lim, &ev,
	    &used, err, sizeof(err)), 0);
	cr_expect_str_eq(ev->raw, "<message to='b@y'><body>x</body></message>");
	cr_expect_eq(ev->raw_len, strlen(ev->raw));
	cr_expect_eq(used, sizeof(text) - 1 - strlen("<message/>"));
	/* an empty root element ends at its own start tag */
	cr_assert_eq(xm_event_parse(arena, "<presence/><x/>", 15, &lim, &ev, &used,
	    err, sizeof(err)), 0);
	cr_expect_str_eq(ev->raw, "<presence/>");
	cr_expect_eq(used, 11);
	cr_assert_eq(xm_event_parse(arena, "<presence type='a'\n  to='b' />", 30,
	    &lim, &ev, &used, err, sizeof(err)), 0);
	cr_expect_eq(used, 30);
}

Test(event, shape_counters)
{
	struct xm_event *ev = parse("<message a='1' b='2'><body>12345</body>"
	    "<x xmlns='urn:x' c='1' d='2' e='3'><y><z>67</z></y></x></message>");

	cr_expect_eq(ev->depth, 4);
	cr_expect_eq(ev->nelements, 5);
	cr_expect_eq(ev->max_attrs, 3);
	cr_expect_eq(ev->text_bytes, 7);
}

Test(event, format_writes_fields_and_stanza)
{
	struct xm_event *ev = parse("origin=c2s\n# gone\nx=1\nx=2\n\n"
	    "<message><body>a</body></message>");

	cr_expect_str_eq(xm_event_format(arena, ev, NULL), "origin=c2s\nx=1\nx=2\n"
	    "\n<message><body>a</body></message>\n");
	cr_expect_str_eq(xm_event_format(arena, ev, "<message/>"),
	    "origin=c2s\nx=1\nx=2\n\n<message/>\n");
	/* and what it writes parses again to the same event */
	ev = parse(xm_event_format(arena, ev, NULL));
	cr_expect_eq(ev->nfields, 3);
	cr_expect_str_eq(ev->bodies[0].text, "a");
}

/* Text split into many pieces by expat (every line break and entity is
 * its own callback) must be joined in linear time and memory: a 20 kB
 * body of line breaks must not cost hundreds of megabytes of arena. */
Test(event, text_in_many_pieces_costs_linear_memory)
{
	static const char *const pieces[] = { "\n", "&amp;", "a&lt;" };
	size_t i, j;

	for (i = 0; i < XM_ARRAY_LEN(pieces); i++) {
		struct xm_arena *a = xm_arena_new();
		struct xm_event_limits lim;
		struct xm_buf b = { 0 };
		struct xm_event *ev;
		size_t used;
		char err[256];
		double t0;

		xm_event_limits_default(&lim);
		xm_buf_puts(&b, "<message><body>");
		for (j = 0; b.len < 20000; j++)
			xm_buf_puts(&b, pieces[i]);
		xm_buf_puts(&b, "</body></message>");
		t0 = xm_monotonic();
		cr_assert_eq(xm_event_parse(a, b.data, b.len, &lim, &ev, &used, err,
		    sizeof(err)), 0, "%s", err);
		cr_expect_leq(xm_arena_used(a), 64 * b.len + (1 << 20),
		    "piece \"%s\" x %zu: %zu bytes of input took %zu bytes of "
		    "arena (%.2f s)", pieces[i], j, b.len, xm_arena_used(a),
		    xm_monotonic() - t0);
		xm_buf_free(&b);
		xm_arena_free(a);
	}
}

/* ---- hostile input ---- */

struct hostile {
	const char *what;
	const char *text;
	const char *msg;       /* substring of the error */
};

static const struct hostile hostile_cases[] = {
	{ "billion laughs",
	    "<!DOCTYPE lolz [<!ENTITY lol 'lol'>"
	    "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
	    "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>"
	    "<message><body>&lol3;</body></message>",
	    "DOCTYPE not allowed" },
	{ "external entity",
	    "<!DOCTYPE m [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
	    "<message><body>&xxe;</body></message>", "DOCTYPE not allowed" },
	{ "external DTD", "<!DOCTYPE message SYSTEM 'http://example.org/x.dtd'>"
	    "<message/>", "DOCTYPE not allowed" },
	{ "parameter entity",
	    "<!DOCTYPE m [<!ENTITY % p SYSTEM 'http://example.org/p'> %p;]>"
	    "<message/>", "DOCTYPE not allowed" },
	{ "undefined entity", "<message><body>&xxe;</body></message>",
	    "undefined entity" },
	{ "comment", "<message><!-- hi --><body>x</body></message>",
	    "comments not allowed" },
	{ "processing instruction", "<message><?php evil(); ?></message>",
	    "processing instructions not allowed" },
	{ "XML declaration", "<?xml version='1.0'?><message/>",
	    "XML declaration not allowed" },
	{ "XML declaration with encoding",
	    "<?xml version='1.0' encoding='ISO-8859-1'?><message/>",
	    "XML declaration not allowed" },
	{ "truncated stanza", "<message><body>hi</body>", "truncated" },
	{ "truncated start tag", "<message to='b", "truncated" },
	{ "mismatched tag", "<message><body>hi</bod></message>",
	    "mismatched tag" },
	{ "duplicate attribute", "<message to='a' to='b'/>", "duplicate" },
	{ "unbound prefix", "<foo:message/>", "unbound prefix" },
	{ "bad character reference", "<message><body>&#0;</body></message>",
	    "reference to invalid character" },
	{ "invalid UTF-8 in text", "<message><body>\xff\xfe</body></message>",
	    "not well-formed" },
	{ "invalid UTF-8 in an attribute", "<message to='\xc0\xaf'/>",
	    "not well-formed" },
	{ "surrogate in UTF-8", "<message><body>\xed\xa0\x80</body></message>",
	    "not well-formed" },
	{ "control character", "<message><body>\x01</body></message>",
	    "not well-formed" },
	{ "junk after the envelope", "origin=c2s\n\n<<<>>>", "not well-formed" },
	{ "text before the root", "origin=c2s\n\n< message/>", "not well-formed" },
};

Test(hostile, refused_with_a_reason)
{
	struct xm_event_limits lim;
	size_t i;

	xm_event_limits_default(&lim);
	for (i = 0; i < XM_ARRAY_LEN(hostile_cases); i++) {
		const char *err = parse_err_lim(hostile_cases[i].text,
		    strlen(hostile_cases[i].text), &lim);

		cr_expect(strncmp(err, "stanza: ", 8) == 0 &&
		    strstr(err, hostile_cases[i].msg) != NULL,
		    "%s: \"%s\", want \"%s\"", hostile_cases[i].what, err,
		    hostile_cases[i].msg);
	}
}

Test(hostile, nul_byte_in_the_stanza)
{
	static const char text[] = "<message><body>a\0b</body></message>";
	struct xm_event_limits lim;

	xm_event_limits_default(&lim);
	cr_expect(strstr(parse_err_lim(text, sizeof(text) - 1, &lim),
	    "not well-formed") != NULL);
}

/* nested - a message with elements nested DEPTH deep (root included) */
static char *
nested(unsigned depth)
{
	struct xm_buf b = { 0 };
	unsigned i;
	char *r;

	xm_buf_puts(&b, "<message>");
	for (i = 1; i < depth; i++)
		xm_buf_puts(&b, "<x>");
	for (i = 1; i < depth; i++)
		xm_buf_puts(&b, "</x>");
	xm_buf_puts(&b, "</message>");
	r = xm_arena_strdup(arena, b.data);
	xm_buf_free(&b);
	return r;
}

Test(hostile, depth_limit)
{
	struct xm_event_limits lim;

	xm_event_limits_default(&lim);
	cr_expect_eq(parse(nested(32))->depth, 32);
	cr_expect_str_eq(parse_err_lim(nested(33), strlen(nested(33)), &lim),
	    "stanza: nesting too deep");
	cr_expect_str_eq(parse_err_lim(nested(100000), strlen(nested(100000)),
	    &lim), "stanza: nesting too deep");
	lim.max_depth = 2;
	parse_lim(nested(2), &lim);
	parse_err_lim(nested(3), strlen(nested(3)), &lim);
}

Test(hostile, attribute_limit)
{
	struct xm_event_limits lim;
	struct xm_buf b = { 0 };
	unsigned i;

	xm_event_limits_default(&lim);
	xm_buf_puts(&b, "<message");
	for (i = 0; i < 32; i++)
		xm_buf_printf(&b, " a%u='%u'", i, i);
	xm_buf_puts(&b, "/>");
	cr_expect_eq(parse(b.data)->max_attrs, 32);
	xm_buf_reset(&b);
	xm_buf_puts(&b, "<message><body");
	for (i = 0; i < 33; i++)
		xm_buf_printf(&b, " a%u='%u'", i, i);
	xm_buf_puts(&b, "/></message>");
	cr_expect_str_eq(parse_err_lim(b.data, b.len, &lim),
	    "stanza: too many attributes");
	xm_buf_free(&b);
}

Test(hostile, element_limit)
{
	struct xm_event_limits lim;
	struct xm_buf b = { 0 };
	unsigned i;

	xm_event_limits_default(&lim);
	lim.max_elements = 100;
	xm_buf_puts(&b, "<message>");
	for (i = 0; i < 99; i++)
		xm_buf_puts(&b, "<x/>");
	xm_buf_puts(&b, "</message>");
	cr_expect_eq(parse_lim(b.data, &lim)->nelements, 100);
	xm_buf_reset(&b);
	xm_buf_puts(&b, "<message>");
	for (i = 0; i < 100; i++)
		xm_buf_puts(&b, "<x/>");
	xm_buf_puts(&b, "</message>");
	cr_expect_str_eq(parse_err_lim(b.data, b.len, &lim),
	    "stanza: too many elements");
	xm_buf_free(&b);
}

Test(hostile, size_limit)
{
	struct xm_event_limits lim;
	struct xm_buf b = { 0 };
	const char *err;

	xm_event_limits_default(&lim);
	lim.max_stanza = 1024;
	xm_buf_puts(&b, "origin=c2s\n\n<message><body>");
	while (b.len < 12 + 1024 - 17)
		xm_buf_puts(&b, "x");
	xm_buf_puts(&b, "</body></message>");
	cr_expect_eq(parse_lim(b.data, &lim)->raw_len, 1024);
	xm_buf_reset(&b);
	xm_buf_puts(&b, "origin=c2s\n\n<message><body>");
	while (b.len < 12 + 1025 - 17)
		xm_buf_puts(&b, "x");
	xm_buf_puts(&b, "</body></message>");
	err = parse_err_lim(b.data, b.len, &lim);
	cr_expect_str_eq(err, "stanza: larger than 1024 bytes");
	xm_buf_free(&b);
}

/* ---- the tree: look-ups and JIDs ---- */

Test(event, node_helpers)
{
	struct xm_event *ev = parse("<message xmlns='jabber:client' to='b@y'>"
	    "<body>a<b>b</b>c</body><x xmlns='urn:x' to='other'/></message>");
	struct xm_node *x;

	cr_expect_str_eq(xm_node_attr(ev->root, "to"), "b@y");
	cr_expect_null(xm_node_attr(ev->root, "from"));
	cr_expect_null(xm_node_attr(NULL, "to"));
	cr_expect_not_null(xm_node_child(ev->root, "body", "jabber:client"));
	cr_expect_null(xm_node_child(ev->root, "body", "urn:x"));
	cr_assert_not_null(x = xm_node_child(ev->root, "x", NULL));
	cr_expect_str_eq(x->ns, "urn:x");
	cr_expect_null(xm_node_child(NULL, "x", NULL));
	cr_expect_str_eq(xm_node_text(arena, ev->root), "abc");
	cr_expect_null(xm_node_text(arena, NULL));
	cr_expect_str_eq(xm_node_text(arena, x), "");
}

Test(event, jids)
{
	static const struct { const char *jid, *domain, *bare; } t[] = {
		{ "alice@example.org/pc", "example.org", "alice@example.org" },
		{ "alice@example.org", "example.org", "alice@example.org" },
		{ "example.org", "example.org", "example.org" },
		{ "example.org/res", "example.org", "example.org" },
		{ "room@conf.example.org/nick@with/slash", "conf.example.org",
		    "room@conf.example.org" },
		{ "example.org/res@odd", "example.org", "example.org" },
		{ "", "", "" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++) {
		cr_expect_str_eq(xm_jid_domain(arena, t[i].jid), t[i].domain,
		    "%s", t[i].jid);
		cr_expect_str_eq(xm_jid_bare(arena, t[i].jid), t[i].bare, "%s",
		    t[i].jid);
	}
	cr_expect_null(xm_jid_domain(arena, NULL));
	cr_expect_null(xm_jid_bare(arena, NULL));
}

/* ---- serialisation round trips ---- */

/* same_tree - A and B have the same elements, namespaces, attributes
 * and (merged) text; reports the first difference */
static bool
same_tree(const struct xm_node *a, const struct xm_node *b, char *why,
    size_t whylen)
{
	const struct xm_node *ca, *cb;
	size_t i;

	if ((a->name == NULL) != (b->name == NULL)) {
		snprintf(why, whylen, "text vs element");
		return false;
	}
	if (a->name == NULL) {
		if (a->text_len != b->text_len ||
		    memcmp(a->text, b->text, a->text_len) != 0) {
			snprintf(why, whylen, "text \"%s\" vs \"%s\"", a->text, b->text);
			return false;
		}
		return true;
	}
	if (strcmp(a->name, b->name) != 0 || strcmp(a->ns, b->ns) != 0) {
		snprintf(why, whylen, "element {%s}%s vs {%s}%s", a->ns, a->name,
		    b->ns, b->name);
		return false;
	}
	if (a->nattrs != b->nattrs) {
		snprintf(why, whylen, "%s: %zu vs %zu attributes", a->name,
		    a->nattrs, b->nattrs);
		return false;
	}
	for (i = 0; i < a->nattrs; i++)
		if (strcmp(a->attrs[i].ns, b->attrs[i].ns) != 0 ||
		    strcmp(a->attrs[i].name, b->attrs[i].name) != 0 ||
		    strcmp(a->attrs[i].value, b->attrs[i].value) != 0) {
			snprintf(why, whylen, "%s: attribute {%s}%s='%s' vs {%s}%s='%s'",
			    a->name, a->attrs[i].ns, a->attrs[i].name,
			    a->attrs[i].value, b->attrs[i].ns, b->attrs[i].name,
			    b->attrs[i].value);
			return false;
		}
	for (ca = a->children, cb = b->children; ca && cb;
	    ca = ca->next, cb = cb->next)
		if (!same_tree(ca, cb, why, whylen))
			return false;
	if (ca || cb) {
		snprintf(why, whylen, "%s: different number of children", a->name);
		return false;
	}
	return true;
}

/* round_trip - parse TEXT, serialise, parse again: same tree, and a
 * second serialisation gives the same text */
static void
round_trip(const char *what, const char *text)
{
	struct xm_event *a = parse(text), *b;
	char *s1, *s2, why[512] = "";
	struct xm_event_limits lim;
	size_t used;
	char err[512];

	s1 = xm_node_serialize(arena, a->root, NULL);
	xm_event_limits_default(&lim);
	if (xm_event_parse(arena, s1, strlen(s1), &lim, &b, &used, err,
	    sizeof(err)) != 0) {
		cr_expect_fail("%s: the serialisation does not parse: %s\n%s", what,
		    err, s1);
		return;
	}
	cr_expect(same_tree(a->root, b->root, why, sizeof(why)),
	    "%s: %s\n  in:  %s\n  out: %s", what, why, text, s1);
	s2 = xm_node_serialize(arena, b->root, NULL);
	cr_expect_str_eq(s1, s2, "%s: not stable", what);
}

Test(serialize, round_trips)
{
	static const struct { const char *what, *text; } t[] = {
		{ "plain", MSG_HEAD "<body>hello</body></message>" },
		{ "default namespace", "<message xmlns='jabber:client' to='b@y'>"
		    "<body>x</body><thread>t</thread></message>" },
		{ "xml:lang", "<message xml:lang='en'><body xml:lang='de'>hallo"
		    "</body></message>" },
		{ "xhtml-im", MSG_HEAD "<body>hi</body><html xmlns='http://jabber."
		    "org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/"
		    "xhtml'><p style='a:b'>hi <a href='http://x/?a=1&amp;b=2'>x</a>"
		    "</p></body></html></message>" },
		{ "jingle", IQ_HEAD "<jingle xmlns='urn:xmpp:jingle:1' "
		    "action='session-initiate' sid='s'><content name='c'>"
		    "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'>"
		    "<file><name>a</name><hash xmlns='urn:xmpp:hashes:2' "
		    "algo='sha-1'>abc=</hash></file></description></content>"
		    "</jingle></iq>" },
		{ "prefixed elements", "<stream:error xmlns:stream='http://"
		    "etherx.jabber.org/streams'><x:y xmlns:x='urn:x'/></stream:error>" },
		{ "back to no namespace", "<message xmlns='jabber:client'>"
		    "<a xmlns=''><b/></a></message>" },
		{ "namespaced attribute", "<message xmlns:p='urn:p' p:a='1' "
		    "b='2'><x xmlns:q='urn:q' q:c='3' xmlns:p='urn:p' p:d='4'/>"
		    "</message>" },
		{ "escapes", "<message to='&lt;&amp;&gt;&quot;&apos;'><body>"
		    "&lt;script&gt; &amp; \"'</body></message>" },
		{ "carriage return in text", "<message><body>a&#13;b&#13;\n"
		    "</body></message>" },
		{ "unicode", "<message><body>\xe2\x82\xac \xf0\x9f\x91\x8d "
		    "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7</body></message>" },
		{ "empty and mixed", "<message><a/><b></b><c>t<d/>u</c></message>" },
		{ "quote in a namespace", "<message><x xmlns=\"urn:a'b\"/>"
		    "</message>" },
		{ "CDATA", "<message><body><![CDATA[<b>&]]></body></message>" },
	};
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(t); i++)
		round_trip(t[i].what, t[i].text);
}

/* Attribute values are normalised by XML parsers: a raw tab, newline or
 * CR in an attribute comes back as a space, so the serialiser must write
 * them as character references. */
Test(serialize, white_space_in_attributes_survives)
{
	round_trip("newline in an attribute",
	    "<message id='a&#10;b'><body>x</body></message>");
	round_trip("tab in an attribute",
	    "<message id='a&#9;b'><body>x</body></message>");
}

/* A namespace URI is attribute text too: it must be escaped wherever it
 * is written, also in the xmlns:aN declaration of a namespaced attribute. */
Test(serialize, namespace_uri_of_an_attribute_is_escaped)
{
	round_trip("ampersand in an attribute's namespace",
	    "<message xmlns:p='urn:x&amp;y' p:a='1'/>");
	round_trip("quote in an attribute's namespace",
	    "<message xmlns:p=\"urn:x'y\" p:a='1'/>");
}

Test(serialize, declares_namespace_only_where_it_changes)
{
	struct xm_event *ev = parse("<message xmlns='jabber:client' to='b@y'>"
	    "<body>x</body><x xmlns='urn:x'><y/></x></message>");

	cr_expect_str_eq(xm_node_serialize(arena, ev->root, NULL),
	    "<message xmlns='jabber:client' to='b@y'><body>x</body>"
	    "<x xmlns='urn:x'><y/></x></message>");
	cr_expect_str_eq(xm_node_serialize(arena, ev->root, "jabber:client"),
	    "<message to='b@y'><body>x</body><x xmlns='urn:x'><y/></x></message>");
}
