/*
 * test_fingerprint.c - unit tests that pin the exact folded texts and
 * fingerprints of plugin/fingerprint.c
 *
 * Fingerprints are shared between nodes through Redis and replayed from
 * logs, so any change of the folded bytes or of the hashes is a
 * regression, however harmless it looks. The expected values below were
 * printed by the folding as it was before it was rewritten to fold 32
 * bytes at a time (commit 2c9d6a1, one word at a time), over:
 *   - fold_cases: texts around the 16- and 32-byte blocks (lengths 15-17,
 *     31-33, 47-49, 63-65; words ending at a block end; links starting at,
 *     or spanning, a block end; non-ASCII letters, digits and invalid
 *     UTF-8 at every offset near a block end; tokens of every length with
 *     every vowel count that matters; words past WORD_MAX; the empty
 *     text): the folded text, its real words and the fingerprint with
 *     the filter's default minimums (4 words, 16 bytes);
 *   - fp_cases: several texts joined, extra links, duplicate and invalid
 *     links, more than XM_FP_MAX_URLS links, the minimums;
 *   - sweeps: every code point U+0001..U+10FFFF (surrogates as bytes)
 *     inside a word and alone, and every pair of bytes from 0x80, folded
 *     and hashed in a chain: one constant each.
 * Besides, over the table and generated texts: every text folds the
 * same with 0-40 separators before and spaces after it (each byte
 * through every block position), and each of its prefixes folds as a
 * copy of it would (nothing past the given length is read).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "fingerprint.h"
#include "state.h"
#include "util.h"

TestSuite(fold);

struct fp_want {
	bool has_text;
	uint64_t text;
	unsigned words;
	size_t chars;
	bool has_urls;
	uint64_t urls;
	unsigned nurls;
};

/* a text, its folded form and real words, its fingerprint (4, 16) */
struct fold_case {
	const char *in, *out;
	unsigned words;
	struct fp_want fp;
};

/* texts, extra links, minimum words and bytes, the fingerprint */
struct fp_case {
	const char *t[4];
	size_t nt;
	const char *u[4];
	size_t nu;
	unsigned min_words;
	size_t min_chars;
	struct fp_want fp;
};

/* the sweeps' constants (see sweep, sweep_bytes) */
#define SWEEP_ASCII 0xc7cf2936f4e0f1daULL
#define SWEEP_2 0x85d867346a19fe7eULL
#define SWEEP_3 0x31d9bf46832e2fe0ULL
#define SWEEP_4 0xb350a52fb1b8471dULL
#define SWEEP_BYTES 0xec39a40d47c950a0ULL

static const struct fold_case fold_cases[] = {
	{ "",
	    "", 0,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "b",
	    "b", 1,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbb",
	    "bbbbb", 1,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	    "*", 0,
	    { false, 0x0000000000000000ULL, 0, 1,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three f",
	    "one two three f", 4,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three fo",
	    "one two three fo", 4,
	    { true, 0x5aa5279945a686f6ULL, 4, 16,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three fou",
	    "one two three fou", 4,
	    { true, 0x3fa6e126112434c4ULL, 4, 17,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three four five six sev",
	    "one two three four five six sev", 7,
	    { true, 0x3e5e95423af83b57ULL, 7, 31,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three four five six seve",
	    "one two three four five six seve", 7,
	    { true, 0x1af83cfa520a7010ULL, 7, 32,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three four five six seven",
	    "one two three four five six seven", 7,
	    { true, 0xc0a9bef4837b1bc6ULL, 7, 33,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three four five six seven eight nine te",
	    "one two three four five six seven eight nine te", 10,
	    { true, 0x879b2133f5f04f1fULL, 10, 47,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three four five six seven eight nine ten",
	    "one two three four five six seven eight nine ten", 10,
	    { true, 0x32bfb0cef10301cfULL, 10, 48,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three four five six seven eight nine ten ",
	    "one two three four five six seven eight nine ten", 10,
	    { true, 0x32bfb0cef10301cfULL, 10, 48,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three four five six seven eight nine ten eleven twelve o",
	    "one two three four five six seven eight nine ten eleven twelve "
	    "o", 13,
	    { true, 0x7feb3d9e47f97446ULL, 13, 64,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three four five six seven eight nine ten eleven twelve on",
	    "one two three four five six seven eight nine ten eleven twelve "
	    "on", 13,
	    { true, 0xa2d32c92f0f16fdaULL, 13, 65,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three xy more words",
	    "one two three xy more words", 6,
	    { true, 0x86a5b698175c6217ULL, 6, 27,
	    false, 0x0000000000000000ULL, 0 } },
	{ "one two three four five six seve more",
	    "one two three four five six seve more", 8,
	    { true, 0x1fc4dd44757bf5cdULL, 8, 37,
	    false, 0x0000000000000000ULL, 0 } },
	{ "aaaa bbbb cccc  http://a.example/x y",
	    "aaaa bbbb cccc <url> y", 4,
	    { true, 0x696257acd66be195ULL, 4, 22,
	    true, 0x53ee696c2088e950ULL, 1 } },
	{ "aaaa bbbb cccc www.b.example z",
	    "aaaa bbbb cccc <url> z", 4,
	    { true, 0xe3b1bfe3499a16c0ULL, 4, 22,
	    true, 0xc2c71a942d8679aeULL, 1 } },
	{ "word word word word word word https://c.example/p?q=1#f end",
	    "word word word word word word <url> end", 7,
	    { true, 0x3dcb1815a192f44dULL, 7, 39,
	    true, 0x42b1947d80d19310ULL, 1 } },
	{ "word word word word word words http://d.example/ end",
	    "word word word word word words <url> end", 7,
	    { true, 0x37fc86d62bc2faf5ULL, 7, 40,
	    true, 0x52df00ddae7ab94aULL, 1 } },
	{ "word word word word word word   www.e.example/ end",
	    "word word word word word word <url> end", 7,
	    { true, 0x3dcb1815a192f44dULL, 7, 39,
	    true, 0x9d998593e92c5583ULL, 1 } },
	{ "Visit HTTP://F.Example/A, now! www.g.example. (http://h.example/x"
	  ")",
	    "visit <url> now <url> <url>", 2,
	    { false, 0x0000000000000000ULL, 2, 27,
	    true, 0x1f4b973f237ee232ULL, 3 } },
	{ "http://",
	    "<url>", 0,
	    { false, 0x0000000000000000ULL, 0, 5,
	    false, 0x0000000000000000ULL, 0 } },
	{ "www. x",
	    "www x", 2,
	    { false, 0x0000000000000000ULL, 2, 5,
	    false, 0x0000000000000000ULL, 0 } },
	{ "wwwx.example hthe http:/x ht://y",
	    "wwwx example hthe http x ht y", 7,
	    { true, 0x913a5a639d7d98a0ULL, 7, 29,
	    false, 0x0000000000000000ULL, 0 } },
	{ "abc defg abc \xc3\xa9t\xc3\xa9 M\xc3\x9cSSEN \xd0\x97\xd0\x90\xd0"
	  "\x92\xd0\xa2\xd0\xa0\xd0\x90 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f"
	  "\x98\x82 end",
	    "abc defg abc \xc3\xa9t\xc3\xa9 m\xc3\xbcssen \xd0\xb7\xd0\xb0"
	    "\xd0\xb2\xd1\x82\xd1\x80\xd0\xb0 \xe4\xb8\xad\xe6\x96\x87 end", 8,
	    { true, 0x33849c6aeee944f2ULL, 8, 50,
	    false, 0x0000000000000000ULL, 0 } },
	{ "abc defg abc d\xc3\xa9t\xc3\xa9 M\xc3\x9cSSEN \xd0\x97\xd0\x90"
	  "\xd0\x92\xd0\xa2\xd0\xa0\xd0\x90 \xe4\xb8\xad\xe6\x96\x87 \xf0"
	  "\x9f\x98\x82 end",
	    "abc defg abc d\xc3\xa9t\xc3\xa9 m\xc3\xbcssen \xd0\xb7\xd0\xb0"
	    "\xd0\xb2\xd1\x82\xd1\x80\xd0\xb0 \xe4\xb8\xad\xe6\x96\x87 end", 8,
	    { true, 0xaa265094342410c5ULL, 8, 51,
	    false, 0x0000000000000000ULL, 0 } },
	{ "abc defg abc de\xc3\xa9t\xc3\xa9 M\xc3\x9cSSEN \xd0\x97\xd0\x90"
	  "\xd0\x92\xd0\xa2\xd0\xa0\xd0\x90 \xe4\xb8\xad\xe6\x96\x87 \xf0"
	  "\x9f\x98\x82 end",
	    "abc defg abc de\xc3\xa9t\xc3\xa9 m\xc3\xbcssen \xd0\xb7\xd0\xb0"
	    "\xd0\xb2\xd1\x82\xd1\x80\xd0\xb0 \xe4\xb8\xad\xe6\x96\x87 end", 8,
	    { true, 0xb356e8a8a6ab5690ULL, 8, 52,
	    false, 0x0000000000000000ULL, 0 } },
	{ "abc defg abc def\xc3\xa9t\xc3\xa9 M\xc3\x9cSSEN \xd0\x97\xd0\x90"
	  "\xd0\x92\xd0\xa2\xd0\xa0\xd0\x90 \xe4\xb8\xad\xe6\x96\x87 \xf0"
	  "\x9f\x98\x82 end",
	    "abc defg abc def\xc3\xa9t\xc3\xa9 m\xc3\xbcssen \xd0\xb7\xd0"
	    "\xb0\xd0\xb2\xd1\x82\xd1\x80\xd0\xb0 \xe4\xb8\xad\xe6\x96\x87 e"
	    "nd", 8,
	    { true, 0x7064a1af86c33da2ULL, 8, 53,
	    false, 0x0000000000000000ULL, 0 } },
	{ "abc defg abc defg abc defg ab\xc3\xa9t\xc3\xa9 M\xc3\x9cSSEN \xd0"
	  "\x97\xd0\x90\xd0\x92\xd0\xa2\xd0\xa0\xd0\x90 \xe4\xb8\xad\xe6\x96"
	  "\x87 \xf0\x9f\x98\x82 end",
	    "abc defg abc defg abc defg ab\xc3\xa9t\xc3\xa9 m\xc3\xbcssen "
	    "\xd0\xb7\xd0\xb0\xd0\xb2\xd1\x82\xd1\x80\xd0\xb0 \xe4\xb8\xad"
	    "\xe6\x96\x87 end", 11,
	    { true, 0x510b632a4f52bc54ULL, 11, 66,
	    false, 0x0000000000000000ULL, 0 } },
	{ "abc defg abc defg abc defg abc\xc3\xa9t\xc3\xa9 M\xc3\x9cSSEN "
	  "\xd0\x97\xd0\x90\xd0\x92\xd0\xa2\xd0\xa0\xd0\x90 \xe4\xb8\xad\xe6"
	  "\x96\x87 \xf0\x9f\x98\x82 end",
	    "abc defg abc defg abc defg abc\xc3\xa9t\xc3\xa9 m\xc3\xbcssen "
	    "\xd0\xb7\xd0\xb0\xd0\xb2\xd1\x82\xd1\x80\xd0\xb0 \xe4\xb8\xad"
	    "\xe6\x96\x87 end", 11,
	    { true, 0x3eeef373e16bb4c3ULL, 11, 67,
	    false, 0x0000000000000000ULL, 0 } },
	{ "abc defg abc defg abc defg abc \xc3\xa9t\xc3\xa9 M\xc3\x9cSSEN "
	  "\xd0\x97\xd0\x90\xd0\x92\xd0\xa2\xd0\xa0\xd0\x90 \xe4\xb8\xad\xe6"
	  "\x96\x87 \xf0\x9f\x98\x82 end",
	    "abc defg abc defg abc defg abc \xc3\xa9t\xc3\xa9 m\xc3\xbcssen "
	    "\xd0\xb7\xd0\xb0\xd0\xb2\xd1\x82\xd1\x80\xd0\xb0 \xe4\xb8\xad"
	    "\xe6\x96\x87 end", 12,
	    { true, 0xfc5fd4b5dae8f42cULL, 12, 68,
	    false, 0x0000000000000000ULL, 0 } },
	{ "abc defg abc defg abc defg abc d\xc3\xa9t\xc3\xa9 M\xc3\x9cSSEN "
	  "\xd0\x97\xd0\x90\xd0\x92\xd0\xa2\xd0\xa0\xd0\x90 \xe4\xb8\xad\xe6"
	  "\x96\x87 \xf0\x9f\x98\x82 end",
	    "abc defg abc defg abc defg abc d\xc3\xa9t\xc3\xa9 m\xc3\xbcssen"
	    " \xd0\xb7\xd0\xb0\xd0\xb2\xd1\x82\xd1\x80\xd0\xb0 \xe4\xb8\xad"
	    "\xe6\x96\x87 end", 12,
	    { true, 0x13d151b9d7563c13ULL, 12, 69,
	    false, 0x0000000000000000ULL, 0 } },
	{ "\xc3\x80\xc3\x89\xc3\x97\xc3\xb7\xc3\x9e\xc3\x9f\xc3\xbf \xc4\x80"
	  "\xc4\x81\xc4\xb0\xc4\xb1\xc4\xb8\xc4\xb9\xc4\xba\xc5\x89\xc5\xb9"
	  "\xc5\xba\xc5\xbe\xc5\xbf",
	    "\xc3\xa0\xc3\xa9 \xc3\xbe\xc3\x9f\xc3\xbf \xc4\x81\xc4\x81\xc4"
	    "\xb0\xc4\xb1\xc4\xb8\xc4\xba\xc4\xba\xc5\x89\xc5\xba\xc5\xba"
	    "\xc5\xbe\xc5\xbf", 3,
	    { false, 0x0000000000000000ULL, 3, 36,
	    false, 0x0000000000000000ULL, 0 } },
	{ "\xce\x91\xce\xa2\xce\xab\xce\xac \xd0\x80\xd0\x8f\xd0\x90\xd0\xaf"
	  "\xd0\xb0\xd1\x8f \xc2\xaa\xc2\xb5\xc2\xba\xc2\xa0\xc2\xb7 \xe2"
	  "\x80\x94\xe3\x80\x82\xef\xbc\x81\xef\xb8\x8f\xe2\x80\x8b\xef\xbb"
	  "\xbf",
	    "\xce\xb1\xce\xa2\xcf\x8b\xce\xac \xd1\x90\xd1\x9f\xd0\xb0\xd1"
	    "\x8f\xd0\xb0\xd1\x8f \xc2\xaa\xc2\xb5\xc2\xba \xef\xbb\xbf", 4,
	    { true, 0xd53b40f41944bab0ULL, 4, 32,
	    false, 0x0000000000000000ULL, 0 } },
	{ "\xf0\x90\x80\x80\xf0\x9e\xbf\xbf\xf0\x9f\x80\x80\xf4\x8f\xbf\xbf "
	  "caf\xc3\xa9 na\xc3\xafve Z\xc3\xbcrich \xc5\x81\xc3\xb3\x64\xc5"
	  "\xba",
	    "\xf0\x90\x80\x80\xf0\x9e\xbf\xbf caf\xc3\xa9 na\xc3\xafve z\xc3"
	    "\xbcrich \xc5\x82\xc3\xb3\x64\xc5\xba", 5,
	    { true, 0xad75d9d47cd52c25ULL, 5, 37,
	    false, 0x0000000000000000ULL, 0 } },
	{ "ab\xff\x63\x64 \xc3 \xc3( \xe4\xb8 \xe4\xb8\xad\xe6 \xc0\xaf \xc1"
	  "\xbf \xed\xa0\x80 \xf4\x90\x80\x80 \xf0\x9f\x98 \x80\xbf end\xe4"
	  "\xb8",
	    "ab cd \xe4\xb8\xad end", 4,
	    { false, 0x0000000000000000ULL, 4, 13,
	    false, 0x0000000000000000ULL, 0 } },
	{ "\xf0\x9f\x98\x82:-) \xf0\x9f\x98\x82:-) \xf0\x9f\x98\x82:-) \xf0"
	  "\x9f\x98\x82:-) \xf0\x9f\x98\x82:-) ok",
	    "ok", 1,
	    { false, 0x0000000000000000ULL, 1, 2,
	    false, 0x0000000000000000ULL, 0 } },
	{ "call 555-1234 now, mp3 win10 x7k9p a1b2c3 1a ab12cd 2026-11-22 v2"
	  " x1 12ab 4",
	    "call # # now mp# * * * #a * # # # v# x# * #", 6,
	    { true, 0x511664bded117666ULL, 6, 43,
	    false, 0x0000000000000000ULL, 0 } },
	{ "aaaa bbbb cccc d5 e abcdefghijklmno7 word word word word word wor"
	  "d 9",
	    "aaaa bbbb cccc d# e * word word word word word word #", 11,
	    { true, 0xaaed1b81ee7a5176ULL, 11, 53,
	    false, 0x0000000000000000ULL, 0 } },
	{ "0123456789012345678901234567890123456789 a1 1111a",
	    "# a# #a", 2,
	    { false, 0x0000000000000000ULL, 2, 7,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go xkqzvbt go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word xkqzvbt \xc3\xa9 xkqzvbt5 xkqzvbt",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go rhythms go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word rhythms \xc3\xa9 rhythms5 rhythms",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go strengths go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word strengths \xc3\xa9 strengths5 stren"
	  "gths",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go abcdef go",
	    "go abcdef go", 3,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word abcdef \xc3\xa9 abcdef5 abcdef",
	    "word word word word word word abcdef \xc3\xa9 * abcdef", 9,
	    { true, 0x5f2da35b8de1cf05ULL, 9, 48,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfgh go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfgh \xc3\xa9 bcdfgh5 bcdfgh",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfgha go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfgha \xc3\xa9 bcdfgha5 bcdfgha",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfghjklmna go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 2, 7,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfghjklmna \xc3\xa9 bcdfghjklmna5"
	  " bcdfghjklmna",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfghjklmae go",
	    "go bcdfghjklmae go", 3,
	    { false, 0x0000000000000000ULL, 3, 18,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfghjklmae \xc3\xa9 bcdfghjklmae5"
	  " bcdfghjklmae",
	    "word word word word word word bcdfghjklmae \xc3\xa9 * bcdfghjkl"
	    "mae", 9,
	    { true, 0xfe6d54cd64b81028ULL, 9, 60,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfghjklmnpa go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 2, 7,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfghjklmnpa \xc3\xa9 bcdfghjklmnp"
	  "a5 bcdfghjklmnpa",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfghjklmnpae go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 2, 7,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfghjklmnpae \xc3\xa9 bcdfghjklmn"
	  "pae5 bcdfghjklmnpae",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfghjklmnpqrsae go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 2, 7,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfghjklmnpqrsae \xc3\xa9 bcdfghjk"
	  "lmnpqrsae5 bcdfghjklmnpqrsae",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfghjklmnpqrsaei go",
	    "go bcdfghjklmnpqrsaei go", 3,
	    { false, 0x0000000000000000ULL, 3, 24,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfghjklmnpqrsaei \xc3\xa9 bcdfghj"
	  "klmnpqrsaei5 bcdfghjklmnpqrsaei",
	    "word word word word word word bcdfghjklmnpqrsaei \xc3\xa9 * bcd"
	    "fghjklmnpqrsaei", 9,
	    { true, 0xc2a85edbedb0a395ULL, 9, 72,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfghjklmnpqrstaei go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 2, 7,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfghjklmnpqrstaei \xc3\xa9 bcdfgh"
	  "jklmnpqrstaei5 bcdfghjklmnpqrstaei",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfghjklmnpqrstvaei go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 2, 7,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfghjklmnpqrstvaei \xc3\xa9 bcdfg"
	  "hjklmnpqrstvaei5 bcdfghjklmnpqrstvaei",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go bcdfghjklmnpqrstvwxaeio go",
	    "go bcdfghjklmnpqrstvwxaeio go", 3,
	    { false, 0x0000000000000000ULL, 3, 29,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word bcdfghjklmnpqrstvwxaeio \xc3\xa9 bc"
	  "dfghjklmnpqrstvwxaeio5 bcdfghjklmnpqrstvwxaeio",
	    "word word word word word word bcdfghjklmnpqrstvwxaeio \xc3\xa9 "
	    "* bcdfghjklmnpqrstvwxaeio", 9,
	    { true, 0x6c6946e56b7dd369ULL, 9, 82,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go aaaaaaaaaaaaaaaaaaaaaaaa go",
	    "go aaaaaaaaaaaaaaaaaaaaaaaa go", 3,
	    { false, 0x0000000000000000ULL, 3, 30,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word aaaaaaaaaaaaaaaaaaaaaaaa \xc3\xa9 a"
	  "aaaaaaaaaaaaaaaaaaaaaaa5 aaaaaaaaaaaaaaaaaaaaaaaa",
	    "word word word word word word aaaaaaaaaaaaaaaaaaaaaaaa \xc3\xa9"
	    " * aaaaaaaaaaaaaaaaaaaaaaaa", 9,
	    { true, 0xd751d9caae4c6ac6ULL, 9, 84,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go aaaaaaaaaaaaaaaaaaaaaaaaa go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 2, 7,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word aaaaaaaaaaaaaaaaaaaaaaaaa \xc3\xa9 "
	  "aaaaaaaaaaaaaaaaaaaaaaaaa5 aaaaaaaaaaaaaaaaaaaaaaaaa",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "go supercalifragilisticexpialidocious go",
	    "go * go", 2,
	    { false, 0x0000000000000000ULL, 2, 7,
	    false, 0x0000000000000000ULL, 0 } },
	{ "word word word word word word supercalifragilisticexpialidocious "
	  "\xc3\xa9 supercalifragilisticexpialidocious5 supercalifragilistic"
	  "expialidocious",
	    "word word word word word word * \xc3\xa9 * *", 7,
	    { true, 0xff7b36df73ae710cULL, 7, 38,
	    false, 0x0000000000000000ULL, 0 } },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bb"
	  "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	  "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb ccc"
	  "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	  "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc "
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6\xd0\xb6"
	  "\xd0\xb6\xd0\xb6 end",
	    "* * * * end", 1,
	    { false, 0x0000000000000000ULL, 1, 11,
	    false, 0x0000000000000000ULL, 0 } },
	{ "a1111111111111111111111111111111111111111111111111111111111111111"
	  "11111111111111111111111111111111111111111111111111111111111111111"
	  "11111111111111111111111111111111111111111111111111111111111111111"
	  "11111111111111111111111111111111111111111111111111111111111111111"
	  "11111111111111111111111111111111111111111 \xc3\xa9\xc3\xa9\xc3"
	  "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
	  "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
	  "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
	  "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
	  "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
	  "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
	  "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
	  "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
	  "\xa9\xc3\xa9\xc3\xa9\xc3\xa9x",
	    "a# *", 1,
	    { false, 0x0000000000000000ULL, 1, 4,
	    false, 0x0000000000000000ULL, 0 } },
	{ " \t\r\n.,;:!?()[]{}<>\"'`~@#$%^&*-_=+/\\| end",
	    "end", 1,
	    { false, 0x0000000000000000ULL, 1, 3,
	    false, 0x0000000000000000ULL, 0 } },
	{ "hello,  world!!  foo...bar ,, baz",
	    "hello world foo bar baz", 5,
	    { true, 0x1ff03c195f9c7af3ULL, 5, 23,
	    false, 0x0000000000000000ULL, 0 } },
};

static const struct fp_case fp_cases[] = {
	{ { "ok" }, 1,
	    { NULL }, 0, 4, 16,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ { "see www.x.example" }, 1,
	    { NULL }, 0, 4, 16,
	    { false, 0x0000000000000000ULL, 1, 9,
	    true, 0xd4c9a4c55092ae93ULL, 1 } },
	{ { "a://b" }, 1,
	    { NULL }, 0, 1, 16,
	    { false, 0x0000000000000000ULL, 2, 3,
	    false, 0x0000000000000000ULL, 0 } },
	{ { "hi there you all", "and more words here" }, 2,
	    { NULL }, 0, 4, 16,
	    { true, 0x8fc2de4ce182bb29ULL, 8, 36,
	    false, 0x0000000000000000ULL, 0 } },
	{ { "Subject line", NULL, "body text with words" }, 3,
	    { NULL }, 0, 4, 16,
	    { true, 0x32720ebfae5965e1ULL, 6, 33,
	    false, 0x0000000000000000ULL, 0 } },
	{ { "links http://b.example/2 and http://a.example/1 and HTTP://A.ex"
	    "ample/1#x" }, 1,
	    { "https://c.example/3", NULL, "not a url", "  www.a.example" }, 4,
	    1, 0,
	    { true, 0xbb76ed2f56cac9b8ULL, 3, 31,
	    true, 0x0a917f5e825dac39ULL, 4 } },
	{ { "http://h0.example/p http://h1.example/p http://h2.example/p htt"
	    "p://h3.example/p http://h4.example/p http://h5.example/p http:/"
	    "/h6.example/p http://h7.example/p http://h8.example/p http://h9"
	    ".example/p http://h10.example/p http://h11.example/p http://h12"
	    ".example/p http://h13.example/p http://h14.example/p http://h15"
	    ".example/p http://h16.example/p http://h17.example/p http://h18"
	    ".example/p http://h19.example/p" }, 1,
	    { "http://x.example/" }, 1, 1, 0,
	    { false, 0x0000000000000000ULL, 0, 119,
	    true, 0x04ccfaa00e2b65b5ULL, 16 } },
	{ { "words words words words" }, 1,
	    { "http://u:p@H.Example:8080/Path?q#f", "http://@/", "ftp://x" }, 3,
	    4, 16,
	    { true, 0x9359913835f4bcd5ULL, 4, 23,
	    true, 0xe76e9d70527141c0ULL, 2 } },
	{ { "one two three four" }, 1,
	    { NULL }, 0, 5, 0,
	    { false, 0x0000000000000000ULL, 4, 18,
	    false, 0x0000000000000000ULL, 0 } },
	{ { "one two three four" }, 1,
	    { NULL }, 0, 4, 19,
	    { false, 0x0000000000000000ULL, 0, 0,
	    false, 0x0000000000000000ULL, 0 } },
	{ { "one two three four" }, 1,
	    { NULL }, 0, 4, 18,
	    { true, 0x189b2ed687a33190ULL, 4, 18,
	    false, 0x0000000000000000ULL, 0 } },
};

/* fp_check - FP is W (the case named by WHAT, I) */
static void
fp_check(const struct xm_fp *fp, const struct fp_want *w, const char *what,
    size_t i)
{
	cr_expect(fp->has_text == w->has_text && fp->text == w->text &&
	    fp->words == w->words && fp->chars == w->chars &&
	    fp->has_urls == w->has_urls && fp->urls == w->urls &&
	    fp->nurls == w->nurls, "%s %zu: got %d %016llx %u %zu %d %016llx "
	    "%u, want %d %016llx %u %zu %d %016llx %u", what, i,
	    fp->has_text, (unsigned long long)fp->text, fp->words, fp->chars,
	    fp->has_urls, (unsigned long long)fp->urls, fp->nurls,
	    w->has_text, (unsigned long long)w->text, w->words, w->chars,
	    w->has_urls, (unsigned long long)w->urls, w->nurls);
}

Test(fold, fixed_texts)
{
	struct xm_arena *a = xm_arena_new();
	size_t i;

	for (i = 0; i < sizeof(fold_cases) / sizeof(fold_cases[0]); i++) {
		const struct fold_case *c = &fold_cases[i];
		const char *t[1] = { c->in };
		unsigned words = 12345;
		char *r = xm_fp_normalise(a, c->in, strlen(c->in), &words);
		struct xm_fp fp;

		cr_expect_str_eq(r, c->out, "case %zu: \"%s\" -> \"%s\", want "
		    "\"%s\"", i, c->in, r, c->out);
		cr_expect_eq(words, c->words, "case %zu: %u words, want %u", i,
		    words, c->words);
		memset(&fp, 0x5a, sizeof(fp));
		xm_fp_compute(a, t, 1, NULL, 0, 4, 16, &fp);
		fp_check(&fp, &c->fp, "fold case", i);
	}
	xm_arena_free(a);
}

Test(fold, fingerprints)
{
	struct xm_arena *a = xm_arena_new();
	size_t i;

	for (i = 0; i < sizeof(fp_cases) / sizeof(fp_cases[0]); i++) {
		const struct fp_case *c = &fp_cases[i];
		struct xm_fp fp;

		memset(&fp, 0x5a, sizeof(fp));
		xm_fp_compute(a, c->t, c->nt, c->u, c->nu, c->min_words,
		    c->min_chars, &fp);
		fp_check(&fp, &c->fp, "fp case", i);
	}
	xm_arena_free(a);
}

/* sweep - the chained hash of the folded forms of every character of
 * [LO, HI) written as UTF-8 (surrogates too: invalid), inside a word and
 * alone, with the word counts */
static uint64_t
sweep(long lo, long hi)
{
	uint64_t h = 0;
	long c;

	for (c = lo; c < hi; c++) {
		struct xm_arena *a = xm_arena_new();
		char t[16], *o = t, *r;
		unsigned words;
		int k;

		*o++ = 'x';
		for (k = 0; k < 2; k++) {
			if (c < 0x80)
				*o++ = (char)c;
			else if (c < 0x800) {
				*o++ = (char)(0xc0 | (c >> 6));
				*o++ = (char)(0x80 | (c & 0x3f));
			} else if (c < 0x10000) {
				*o++ = (char)(0xe0 | (c >> 12));
				*o++ = (char)(0x80 | ((c >> 6) & 0x3f));
				*o++ = (char)(0x80 | (c & 0x3f));
			} else {
				*o++ = (char)(0xf0 | (c >> 18));
				*o++ = (char)(0x80 | ((c >> 12) & 0x3f));
				*o++ = (char)(0x80 | ((c >> 6) & 0x3f));
				*o++ = (char)(0x80 | (c & 0x3f));
			}
			*o++ = k == 0 ? 'y' : ' ';
			*o++ = ' ';
		}
		r = xm_fp_normalise(a, t, (size_t)(o - t), &words);
		h = xm_hash64(r, strlen(r) + 1, h);
		h = xm_hash64(&words, sizeof(words), h);
		xm_arena_free(a);
	}
	return h;
}

/* sweep_bytes - the same over every pair of bytes B0 B1 (B0 >= 0x80),
 * after a letter, before "ab", before a lone continuation byte */
static uint64_t
sweep_bytes(void)
{
	uint64_t h = 0;
	unsigned b0, b1;

	for (b0 = 0x80; b0 < 0x100; b0++)
		for (b1 = 1; b1 < 0x100; b1++) {
			struct xm_arena *a = xm_arena_new();
			char t[8] = { 'q', (char)b0, (char)b1, 'a', 'b',
			    (char)0x80, (char)b0, (char)b1 };
			unsigned words;
			char *r = xm_fp_normalise(a, t, sizeof(t), &words);

			h = xm_hash64(r, strlen(r) + 1, h);
			h = xm_hash64(&words, sizeof(words), h);
			xm_arena_free(a);
		}
	return h;
}

Test(fold, every_character)
{
	cr_expect_eq(sweep(1, 0x80), SWEEP_ASCII, "ASCII: %016llx",
	    (unsigned long long)sweep(1, 0x80));
	cr_expect_eq(sweep(0x80, 0x800), SWEEP_2, "U+0080..U+07FF: %016llx",
	    (unsigned long long)sweep(0x80, 0x800));
	cr_expect_eq(sweep(0x800, 0x10000), SWEEP_3, "U+0800..U+FFFF: %016llx",
	    (unsigned long long)sweep(0x800, 0x10000));
	cr_expect_eq(sweep(0x10000, 0x110000), SWEEP_4,
	    "U+10000..U+10FFFF: %016llx",
	    (unsigned long long)sweep(0x10000, 0x110000));
	cr_expect_eq(sweep_bytes(), SWEEP_BYTES, "byte pairs: %016llx",
	    (unsigned long long)sweep_bytes());
}

/* ---- the same folding wherever the blocks fall ---- */

static uint64_t rs = 0x9e3779b97f4a7c15ULL;

/* rnd - xorshift64: the same texts on every run */
static unsigned
rnd(unsigned n)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (unsigned)(rs % n);
}

static const char *const pieces[] = {
	"hello", "World", "FREE", "x7k9p", "a1b2c3", "xkqzvbt", "strengths",
	"rhythms", "supercalifragilisticexpialidocious", "aeiouy", "bcdfghjklm",
	"http://a.example/x?id=1", "HTTPS://B.Example:8080/p#f", "www.c.example",
	"www.", "http://", "ht", "ww", "2026-11-22", "mp3", "123", "4",
	"\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2", "caf\xc3\xa9",
	"\xce\x91\xce\xbb\xcf\x86\xce\xb1", "\xe4\xb8\xad\xe6\x96\x87",
	"\xf0\x9f\x98\x82", "\xe2\x80\x94", "\xc3\x97", "\xc2\xa0", "\xff",
	"\xc3", "\xe4\xb8", "\xed\xa0\x80", " ", "  ", ".", ", ", "!", "\n",
	":-)", "'", "\"", "<", ">",
};

/* gen - a text of pieces in BUF (room for 600 bytes) */
static void
gen(char *buf)
{
	size_t n = 0, want = rnd(4) == 0 ? rnd(500) : rnd(120);

	while (n < want) {
		const char *p = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
		size_t k = strlen(p);

		memcpy(buf + n, p, k);
		n += k;
		if (rnd(3) != 0)
			buf[n++] = rnd(4) != 0 ? ' ' : ",.-/:"[rnd(5)];
	}
	buf[n] = '\0';
}

/* same_anywhere - TEXT folds the same after 0-40 separators before and
 * spaces after it (other punctuation after "www." would make it a link) */
static void
same_anywhere(const char *text, const char *what, size_t i)
{
	struct xm_arena *a = xm_arena_new();
	size_t n = strlen(text), k;
	unsigned words, w;
	char *want = xm_fp_normalise(a, text, n, &words);
	char *buf = xm_arena_alloc(a, n + 2 * 41);

	for (k = 0; k <= 40; k++) {
		char *r;

		memset(buf, k % 3 == 0 ? ' ' : '.', k);
		memcpy(buf + k, text, n);
		memset(buf + k + n, ' ', k);
		r = xm_fp_normalise(a, buf, n + 2 * k, &w);
		cr_expect(strcmp(r, want) == 0 && w == words, "%s %zu, %zu "
		    "separators around: \"%s\" (%u words), alone \"%s\" (%u)",
		    what, i, k, r, w, want, words);
		if (strcmp(r, want) != 0)
			break;
	}
	xm_arena_free(a);
}

/* prefixes_alone - every prefix of TEXT (length K) folds as a copy of
 * it would: nothing past K is read */
static void
prefixes_alone(const char *text, const char *what, size_t i)
{
	size_t n = strlen(text), k;

	for (k = 0; k <= n; k++) {
		struct xm_arena *a = xm_arena_new();
		char *copy = xm_arena_strndup(a, text, k);
		unsigned w1, w2;
		char *r1 = xm_fp_normalise(a, text, k, &w1);
		char *r2 = xm_fp_normalise(a, copy, k, &w2);

		cr_expect(strcmp(r1, r2) == 0 && w1 == w2, "%s %zu, first %zu "
		    "bytes: \"%s\" (%u words), copied \"%s\" (%u)", what, i, k,
		    r1, w1, r2, w2);
		xm_arena_free(a);
		if (strcmp(r1, r2) != 0)
			break;
	}
}

Test(fold, nothing_read_past_the_end)
{
	char buf[700];
	size_t i;

	for (i = 0; i < sizeof(fold_cases) / sizeof(fold_cases[0]); i++)
		prefixes_alone(fold_cases[i].in, "case", i);
	for (i = 0; i < 300; i++) {
		gen(buf);
		prefixes_alone(buf, "generated text", i);
	}
}

Test(fold, same_wherever_the_blocks_fall)
{
	char buf[700];
	size_t i;

	for (i = 0; i < sizeof(fold_cases) / sizeof(fold_cases[0]); i++)
		same_anywhere(fold_cases[i].in, "case", i);
	for (i = 0; i < 3000; i++) {
		gen(buf);
		same_anywhere(buf, "generated text", i);
	}
}
