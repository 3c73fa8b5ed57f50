/*
 * transfer.c - the transfer filter: policy for file offers of every method
 *
 * Purpose: decide on the declared metadata of a file offer, before a byte
 * moves: SI (XEP-0096), Jingle file transfer (XEP-0234), in-band
 * bytestreams (XEP-0047), out-of-band URLs (XEP-0066, in messages and
 * iqs) and HTTP upload slot requests (XEP-0363). Checks, each one symbol:
 *   - switched off here (allow), method or direction not allowed;
 *   - name: executable and script extensions, double extensions
 *     (photo.jpg.exe), bidi controls (the right-to-left-override trick),
 *     padding, invisible characters and trailing dots, paths; risky
 *     extensions (archives, macro documents, disk images); an optional
 *     allow-list of extensions;
 *   - declared media type: an executable type, or a type that does not
 *     fit the name's extension;
 *   - declared size over max_size; declared hash on the bad-hash list;
 *   - state across events: the same file (hash, else name and size) from
 *     the same sender offered again after this filter blocked it, and the
 *     same file offered by one sender to many recipients;
 *   - OOB links: the name is the URL path's last segment, percent-decoded
 *     (and query values and a one-word desc that look like file names);
 *     schemes other than oob_schemes.
 * The filter is fast (not SLOW): no I/O on the event path.
 *
 * Interface: transfer_filter (struct xm_filter_ops); settings in
 * transfer_settings (docs/CONFIGURATION.md; explained in docs/TRANSFER.md).
 * Scopes give per-origin, per-domain and per-transport policy: each scope
 * has its own instance with its own settings. transfer_state_reset() empties
 * the shared table (for tests).
 *
 * Ownership: a state holds the sorted bad-hash list (read at init, so a
 * SIGHUP re-reads it) and points at its config, which outlives it. The
 * repeat/fan-out table is process-global, shared by every scope and every
 * chain (it survives reloads), guarded by one mutex, bounded by
 * state_max_entries (least recently used entries evicted first) with
 * per-entry expiry; its clock is t->now, the event time in replay.
 *
 * Failure: check cannot fail. init fails on an unreadable or malformed
 * bad-hash file (the message names file:line) or on an unknown symbol in
 * final_symbols; the old configuration then stays.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "config.h"
#include "transfer.h"
#include "xm.h"

/* The symbols: tag, score setting name, default score, meaning. */
#define TRANSFER_SYMBOLS(X) \
	X(DISABLED, "disabled", "20", "file transfer, this method or this " \
	    "direction is switched off here") \
	X(EXECUTABLE, "executable", "10", "a program or script: a name " \
	    "with a block_extensions extension or an executable_types type") \
	X(DOUBLE_EXT, "double_ext", "6", "a decoy extension before a risky " \
	    "one (photo.jpg.exe, report.pdf      .scr)") \
	X(RLO, "rlo", "10", "bidi controls in the name (the " \
	    "right-to-left-override trick)") \
	X(NAME_TRICK, "name_trick", "4", "invisible characters, trailing " \
	    "dots or spaces, a path, or a NUL in a decoded name") \
	X(RISKY_EXT, "risky_ext", "2", "an archive, macro document, disk " \
	    "image or other risky_extensions extension") \
	X(EXT_NOT_ALLOWED, "ext_not_allowed", "10", "an extension not in " \
	    "allow_extensions (when that list is set)") \
	X(TYPE_MISMATCH, "type_mismatch", "4", "a declared media type that " \
	    "does not fit the name's extension") \
	X(TOO_BIG, "too_big", "10", "a declared size over max_size") \
	X(BAD_HASH, "bad_hash", "20", "a declared hash on the bad_hashes " \
	    "list") \
	X(REPEAT, "repeat", "5", "the same file offered again by the same " \
	    "sender after this filter blocked it (within repeat_window)") \
	X(FANOUT, "fanout", "6", "the same file offered by one sender to " \
	    "more than fanout_max recipients within fanout_window") \
	X(OOB_SCHEME, "oob_scheme", "4", "an out-of-band link whose scheme " \
	    "is not in oob_schemes (file:, smb: ...)")

enum transfer_sym {
#define TS_ENUM(tag, name, def, doc) TS_##tag,
	TRANSFER_SYMBOLS(TS_ENUM)
#undef TS_ENUM
	TS_COUNT
};

static const char *const transfer_symname[TS_COUNT] = {
#define TS_NAME(tag, name, def, doc) "TRANSFER_" #tag,
	TRANSFER_SYMBOLS(TS_NAME)
#undef TS_NAME
};

static const char *const transfer_conditions[] = {
	"policy-violation", "not-acceptable", "forbidden", "not-allowed"
};

enum transfer_dir { DIR_INBOUND = 0, DIR_OUTBOUND, DIR_LOCAL };
static const char *const transfer_dirname[] = {
	"inbound", "outbound", "local"
};

struct transfer_conf {
	bool allow;
	struct xm_strlist methods;
	struct xm_strlist directions;
	struct xm_strlist local_domains;
	struct xm_strlist block_extensions;
	struct xm_strlist risky_extensions;
	struct xm_strlist decoy_extensions;
	struct xm_strlist allow_extensions;
	struct xm_strlist executable_types;
	bool check_type;
	long long max_size;
	struct xm_strlist bad_hashes;
	long long max_bad_hashes;
	struct xm_strlist oob_schemes;
	double repeat_window;
	double repeat_min_score;
	long long fanout_max;
	double fanout_window;
	long long state_max_entries;
	struct xm_strlist final_symbols;
	int reject_condition;
	char *disabled_text;
	char *blocked_text;
	bool explain;
	double score[TS_COUNT];
};

#define TOFF(f) offsetof(struct transfer_conf, f)
#define TRANSFER_SCORE(tag, name, def, doc) \
	{ "score_" name, XM_ST_DOUBLE, TOFF(score[TS_##tag]), def, \
	    0, 1000, NULL, true, "Score of TRANSFER_" #tag ": " doc "." },

static const struct xm_setting transfer_settings[] = {
	{ "allow", XM_ST_BOOL, TOFF(allow), "true", 0, 0, NULL, true,
	    "File transfer allowed at all (false, in a scope: switched off "
	    "for that domain, origin or transport; TRANSFER_DISABLED)" },
	{ "methods", XM_ST_LIST, TOFF(methods), "si,jingle,ibb,oob,upload",
	    0, 0, NULL, true,
	    "Methods allowed: si (XEP-0096), jingle (XEP-0234), ibb "
	    "(XEP-0047), oob (XEP-0066), upload (XEP-0363); others get "
	    "TRANSFER_DISABLED" },
	{ "directions", XM_ST_LIST, TOFF(directions), "inbound,outbound,local",
	    0, 0, NULL, true,
	    "Directions allowed for offers between users (not uploads): "
	    "inbound (from another server or a transport), outbound (a local "
	    "user to another domain), local (between local users)" },
	{ "local_domains", XM_ST_LIST, TOFF(local_domains), "", 0, 0, NULL,
	    true,
	    "Domains this server serves (*.example.org: and subdomains), to "
	    "tell the direction; empty: c2s senders are local, s2s and "
	    "component senders are not, and a c2s recipient is local when "
	    "in the sender's domain or a subdomain of it" },
	{ "block_extensions", XM_ST_LIST, TOFF(block_extensions),
	    "exe,scr,com,pif,bat,cmd,btm,js,jse,vbs,vbe,wsf,wsh,ws,wsc,hta,"
	    "jar,ps1,ps1xml,ps2,psc1,psm1,msh,lnk,msi,msp,mst,reg,cpl,scf,inf,"
	    "dll,sys,ocx,gadget,msc,application,appref-ms,url,shb,shs,sct,"
	    "vb,chm,hlp,xbap,xll,ade,adp,ins,isp,its,mde,mdb,pcd,crt,der,"
	    "settingcontent-ms,diagcab,appx,appxbundle,msix,msixbundle",
	    0, 0, NULL, true,
	    "Extensions of programs and scripts (TRANSFER_EXECUTABLE), "
	    "without the dot, matched without regard to case" },
	{ "risky_extensions", XM_ST_LIST, TOFF(risky_extensions),
	    "zip,rar,7z,ace,arj,cab,gz,tgz,bz2,xz,z,iso,img,vhd,vhdx,docm,"
	    "dotm,xlsm,xltm,xlam,pptm,potm,ppam,ppsm,sldm,html,htm,svg,one,apk,"
	    "dmg,pkg,deb,rpm,sh,command,py,pl,rb", 0, 0, NULL, true,
	    "Extensions that may carry a program (TRANSFER_RISKY_EXT; after a "
	    "decoy extension also TRANSFER_DOUBLE_EXT)" },
	{ "decoy_extensions", XM_ST_LIST, TOFF(decoy_extensions),
	    "pdf,doc,docx,xls,xlsx,ppt,pptx,odt,ods,odp,rtf,txt,csv,jpg,jpeg,"
	    "png,gif,bmp,tif,tiff,webp,heic,mp3,mp4,m4a,wav,avi,mov,mkv,wmv,"
	    "mpg,mpeg,flac,ogg", 0, 0, NULL, true,
	    "Harmless-looking extensions that, put before a block or risky "
	    "extension, make a double extension (TRANSFER_DOUBLE_EXT)" },
	{ "allow_extensions", XM_ST_LIST, TOFF(allow_extensions), "", 0, 0,
	    NULL, true,
	    "When set, only these extensions pass; any other extension, or "
	    "none, gets TRANSFER_EXT_NOT_ALLOWED" },
	{ "executable_types", XM_ST_LIST, TOFF(executable_types),
	    "application/x-msdownload,application/x-dosexec,"
	    "application/x-ms-dos-executable,application/x-msdos-program,"
	    "application/vnd.microsoft.portable-executable,"
	    "application/x-executable,application/exe,application/x-exe,"
	    "application/x-winexe,application/x-bat,application/x-msi,"
	    "application/x-ms-installer,application/x-ms-shortcut,"
	    "application/hta,application/java-archive,"
	    "application/x-java-archive,application/x-sh,"
	    "application/x-shellscript,text/vbscript,application/x-vbscript,"
	    "text/x-vbscript,application/x-powershell", 0, 0, NULL, true,
	    "Declared media types of programs and scripts "
	    "(TRANSFER_EXECUTABLE), matched without parameters or case" },
	{ "check_type", XM_ST_BOOL, TOFF(check_type), "true", 0, 0, NULL,
	    true, "Compare the declared media type with the name's "
	    "extension (TRANSFER_TYPE_MISMATCH)" },
	{ "max_size", XM_ST_SIZE, TOFF(max_size), "-1", -1, 1e18, NULL, true,
	    "Largest declared size (TRANSFER_TOO_BIG); none (or -1): no "
	    "limit" },
	{ "bad_hashes", XM_ST_PATHS, TOFF(bad_hashes), "", 0, 0, NULL, true,
	    "Files of known-bad file hashes, read at start and on SIGHUP: one "
	    "a line, \"[ALGO] VALUE\" or \"ALGO:VALUE\" (hex or base64; "
	    "md5, sha-1, sha-256, sha-512 ...; sha256sum output works), "
	    "# comments (TRANSFER_BAD_HASH)" },
	{ "max_bad_hashes", XM_ST_INT, TOFF(max_bad_hashes), "1000000", 1,
	    1e8, NULL, true, "Most hashes the bad_hashes files may hold" },
	{ "oob_schemes", XM_ST_LIST, TOFF(oob_schemes), "http,https", 0, 0,
	    NULL, true, "Schemes out-of-band links may use; others get "
	    "TRANSFER_OOB_SCHEME (empty: any)" },
	{ "repeat_window", XM_ST_DURATION, TOFF(repeat_window), "1h", 0,
	    86400 * 30, NULL, true,
	    "How long a file this filter blocked is remembered per sender "
	    "(TRANSFER_REPEAT); 0: off" },
	{ "repeat_min_score", XM_ST_DOUBLE, TOFF(repeat_min_score), "10", 0,
	    1e6, NULL, true,
	    "This filter's own score on an offer from which it counts as "
	    "blocked (a final reject always counts)" },
	{ "fanout_max", XM_ST_INT, TOFF(fanout_max), "5", -1, 60, NULL, true,
	    "Distinct recipients one sender may offer the same file to "
	    "within fanout_window before TRANSFER_FANOUT; -1: off" },
	{ "fanout_window", XM_ST_DURATION, TOFF(fanout_window), "10m", 1,
	    86400 * 30, NULL, true,
	    "Window of fanout_max, from the first offer of the file" },
	{ "state_max_entries", XM_ST_INT, TOFF(state_max_entries), "100000",
	    16, 1e8, NULL, true,
	    "Most (sender, file) entries remembered for repeat and fan-out "
	    "(one table for the whole daemon, the least recently used go "
	    "first; about 350 bytes each)" },
	{ "final_symbols", XM_ST_LIST, TOFF(final_symbols),
	    "TRANSFER_DISABLED,TRANSFER_EXECUTABLE,TRANSFER_DOUBLE_EXT,"
	    "TRANSFER_RLO,TRANSFER_EXT_NOT_ALLOWED,TRANSFER_TOO_BIG,"
	    "TRANSFER_BAD_HASH", 0, 0, NULL, true,
	    "Symbols that end the chain with a reject whatever the score; the "
	    "others only score" },
	{ "reject_condition", XM_ST_ENUM, TOFF(reject_condition),
	    "policy-violation", 0, 0,
	    "policy-violation|not-acceptable|forbidden|not-allowed", true,
	    "XMPP error condition of this filter's rejections" },
	{ "disabled_text", XM_ST_STRING, TOFF(disabled_text),
	    "File transfer is switched off here.", 0, 0, NULL, true,
	    "Error text when TRANSFER_DISABLED rejects (say, \"file transfer "
	    "is switched off for this domain\")" },
	{ "blocked_text", XM_ST_STRING, TOFF(blocked_text),
	    "This file was refused by the server's file-transfer policy.", 0,
	    0, NULL, true, "Error text of the other rejections" },
	{ "explain", XM_ST_BOOL, TOFF(explain), "true", 0, 0, NULL, true,
	    "Add the reason to blocked_text (\"(.exe files are not "
	    "allowed)\")" },
	TRANSFER_SYMBOLS(TRANSFER_SCORE)
	XM_SETTINGS_END
};

#undef TRANSFER_SCORE

/* ---- the bad-hash list ---- */

#define HASH_MAX TRANSFER_HASH_MAX

struct transfer_state {
	const struct transfer_conf *c;
	struct transfer_hashlist bad;  /* the bad_hashes files */
	bool final[TS_COUNT];
};

/* the algorithms we know, with their digest sizes */
static const struct {
	const char *name;
	const char *alias;
	unsigned len;
} transfer_algos[] = {
	{ "md5", "md5", 16 },
	{ "sha-1", "sha1", 20 },
	{ "sha-224", "sha224", 28 },
	{ "sha-256", "sha256", 32 },
	{ "sha-384", "sha384", 48 },
	{ "sha-512", "sha512", 64 },
	{ "sha3-256", "sha3_256", 32 },
	{ "sha3-512", "sha3_512", 64 },
	{ "blake2b-256", "blake2b256", 32 },
	{ "blake2b-512", "blake2b512", 64 },
};

/* algo_find - index of algorithm NAME (either spelling, any case), or -1 */
static int
algo_find(const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < XM_ARRAY_LEN(transfer_algos); i++) {
		if ((strlen(transfer_algos[i].name) == n &&
		    strncasecmp(transfer_algos[i].name, name, n) == 0) ||
		    (strlen(transfer_algos[i].alias) == n &&
		    strncasecmp(transfer_algos[i].alias, name, n) == 0))
			return (int)i;
	}
	return -1;
}

/* hexval - value of a hex digit, or -1 */
static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* b64val - value of a base64 (or base64url) character, or -1 */
static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/*
 * hash_decode - VALUE (N bytes, hex or base64) into OUT; WANT is the
 * expected digest size (0: unknown). Hex is tried first when the length
 * fits. Returns the byte count, or 0 when VALUE is neither.
 */
static size_t
hash_decode(const char *v, size_t n, unsigned want, unsigned char *out)
{
	size_t i, k = 0, hexlen = n;
	unsigned acc = 0;
	int bits = 0, d;
	bool hex = n > 0 && n % 2 == 0 && n / 2 <= HASH_MAX;

	for (i = 0; hex && i < n; i++)
		if (hexval((unsigned char)v[i]) < 0)
			hex = false;
	if (hex && (want == 0 || hexlen / 2 == want)) {
		for (i = 0; i < n; i += 2)
			out[k++] = (unsigned char)(hexval((unsigned char)v[i]) *
			    16 + hexval((unsigned char)v[i + 1]));
		return k;
	}
	while (n > 0 && v[n - 1] == '=')
		n--;
	for (i = 0; i < n; i++) {
		if ((d = b64val((unsigned char)v[i])) < 0)
			return 0;
		acc = (acc << 6) | (unsigned)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (k == HASH_MAX)
				return 0;
			out[k++] = (unsigned char)(acc >> bits);
		}
	}
	if (k == 0 || (want != 0 && k != want))
		return 0;
	return k;
}

/* algo_by_len - the usual algorithm of a digest of LEN bytes */
static const char *
algo_by_len(size_t len)
{
	switch (len) {
	case 16: return "md5";
	case 20: return "sha-1";
	case 28: return "sha-224";
	case 32: return "sha-256";
	case 48: return "sha-384";
	case 64: return "sha-512";
	}
	return NULL;
}

/*
 * hash_make - H from algorithm ALGO (may be NULL: guess from the length)
 * and VALUE; false when it is no hash we can compare
 */
static bool
hash_make(struct transfer_hash *h, const char *algo, size_t alen,
    const char *v, size_t vlen)
{
	int ai = algo ? algo_find(algo, alen) : -1;
	const char *name;

	memset(h, 0, sizeof(*h));
	if (algo != NULL && ai < 0)
		return false;
	h->len = (unsigned char)hash_decode(v, vlen,
	    ai >= 0 ? transfer_algos[ai].len : 0, h->b);
	if (h->len == 0)
		return false;
	name = ai >= 0 ? transfer_algos[ai].name : algo_by_len(h->len);
	if (name == NULL)
		return false;
	snprintf(h->algo, sizeof(h->algo), "%s", name);
	return true;
}

/* hash_cmp - order of the bad-hash list (qsort/bsearch) */
static int
hash_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct transfer_hash));
}

/* load_hashes - read one bad-hash file into L; 0 or -1 with file:line */
static int
load_hashes(struct transfer_hashlist *l, const char *path, long long max,
    size_t *cap, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "r");
	char line[1024];
	unsigned long lineno = 0;

	if (fp == NULL) {
		snprintf(err, errlen, "transfer: %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *p = line, *tok, *tok2, *colon;
		size_t n, n2;
		struct transfer_hash h;
		bool ok;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			snprintf(err, errlen, "%s:%lu: line too long", path,
			    lineno);
			goto fail;
		}
		p += strspn(p, " \t\r\n");
		if (*p == '\0' || *p == '#')
			continue;
		tok = p;
		n = strcspn(tok, " \t\r\n");
		tok2 = tok + n + strspn(tok + n, " \t\r\n");
		n2 = strcspn(tok2, " \t\r\n");
		colon = memchr(tok, ':', n);
		if (algo_find(tok, n) >= 0 && n2 > 0)
			ok = hash_make(&h, tok, n, tok2, n2);
		else if (colon != NULL)
			ok = hash_make(&h, tok, (size_t)(colon - tok),
			    colon + 1, n - (size_t)(colon - tok) - 1);
		else
			ok = hash_make(&h, NULL, 0, tok, n);
		if (!ok) {
			snprintf(err, errlen, "%s:%lu: not a file hash (hex or "
			    "base64 of a known algorithm)", path, lineno);
			goto fail;
		}
		if (l->n >= (size_t)max) {
			snprintf(err, errlen, "%s:%lu: more than max_bad_hashes "
			    "(%lld) hashes", path, lineno, max);
			goto fail;
		}
		if (l->n == *cap) {
			*cap = *cap ? *cap * 2 : 64;
			l->v = xm_reallocarray(l->v, *cap, sizeof(*l->v));
		}
		l->v[l->n++] = h;
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "transfer: %s: read error", path);
		goto fail;
	}
	fclose(fp);
	return 0;
fail:
	fclose(fp);
	return -1;
}

/* transfer_hashes_load - every file of PATHS, sorted, duplicates dropped */
int
transfer_hashes_load(const struct xm_strlist *paths, long long max,
    struct transfer_hashlist *l, char *err, size_t errlen)
{
	size_t i, j, cap = 0;

	memset(l, 0, sizeof(*l));
	for (i = 0; i < paths->n; i++) {
		if (load_hashes(l, paths->v[i], max, &cap, err, errlen) < 0) {
			transfer_hashes_free(l);
			return -1;
		}
	}
	if (l->n > 1) {
		qsort(l->v, l->n, sizeof(*l->v), hash_cmp);
		for (i = 1, j = 1; i < l->n; i++)
			if (hash_cmp(&l->v[i], &l->v[j - 1]) != 0)
				l->v[j++] = l->v[i];
		l->n = j;
	}
	return 0;
}

/* transfer_hashes_has - a binary search for (ALGO, B) */
bool
transfer_hashes_has(const struct transfer_hashlist *l, const char *algo,
    const unsigned char *b, size_t len)
{
	struct transfer_hash h;
	int ai = algo_find(algo, strlen(algo));

	if (l->n == 0 || ai < 0 || len == 0 || len > HASH_MAX)
		return false;
	memset(&h, 0, sizeof(h));
	snprintf(h.algo, sizeof(h.algo), "%s", transfer_algos[ai].name);
	h.len = (unsigned char)len;
	memcpy(h.b, b, len);
	return bsearch(&h, l->v, l->n, sizeof(h), hash_cmp) != NULL;
}

/* transfer_hashes_free - free L's array */
void
transfer_hashes_free(struct transfer_hashlist *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* ---- the shared state: repeats and fan-out ---- */

#define FANOUT_SLOTS 64

struct tr_entry {
	uint64_t key;
	double last;           /* last offer */
	double expires;
	double blocked;        /* last time this filter blocked it, <0 never */
	unsigned long repeats; /* offers since the first block */
	double fan_start;      /* start of the fan-out window */
	unsigned nrcpt;
	uint32_t rcpt[FANOUT_SLOTS];  /* recipients' key hashes, truncated */
	struct tr_entry *hnext;              /* bucket chain */
	struct tr_entry *lru_prev, *lru_next; /* head: most recent */
};

static struct {
	pthread_mutex_t mu;
	struct tr_entry **buckets;
	size_t nbuckets;       /* a power of two */
	size_t count;
	size_t max;
	struct tr_entry *head, *tail;
	uint64_t seed;
	bool seeded;
} tr = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* tr_hash - keyed 64-bit hash of N bytes (FNV-1a, seeded, then mixed) */
static uint64_t
tr_hash(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* tr_mix - final avalanche (splitmix64) */
static uint64_t
tr_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* tr_key - the key of (A, B): a hash of both with the process's seed */
static uint64_t
tr_key(const char *a, const char *b)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ tr.seed;

	h = tr_hash(h, a, strlen(a) + 1);
	h = tr_hash(h, b, strlen(b) + 1);
	return tr_mix(h);
}

/* lru_unlink - take E out of the recency list (mutex held) */
static void
lru_unlink(struct tr_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		tr.head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		tr.tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

/* lru_front - put E first in the recency list (mutex held) */
static void
lru_front(struct tr_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = tr.head;
	if (tr.head)
		tr.head->lru_prev = e;
	tr.head = e;
	if (tr.tail == NULL)
		tr.tail = e;
}

/* tr_remove - unlink E from its bucket and the list, free it (mutex held) */
static void
tr_remove(struct tr_entry *e)
{
	struct tr_entry **pp = &tr.buckets[e->key & (tr.nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(e);
	free(e);
	tr.count--;
}

/* tr_setup - size the table for MAX entries (mutex held) */
static void
tr_setup(size_t max)
{
	size_t nb = 64;
	struct tr_entry *e;

	if (!tr.seeded) {
		if (getrandom(&tr.seed, sizeof(tr.seed), 0) !=
		    (ssize_t)sizeof(tr.seed))
			tr.seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&tr;
		tr.seeded = true;
	}
	tr.max = max;
	while (nb < max / 2 && nb < (1u << 22))
		nb *= 2;
	if (nb > tr.nbuckets) {
		struct tr_entry **nbk = xm_calloc(nb, sizeof(*nbk));

		for (e = tr.head; e != NULL; e = e->lru_next) {
			e->hnext = nbk[e->key & (nb - 1)];
			nbk[e->key & (nb - 1)] = e;
		}
		free(tr.buckets);
		tr.buckets = nbk;
		tr.nbuckets = nb;
	}
	while (tr.count > tr.max && tr.tail != NULL)
		tr_remove(tr.tail);
}

/* tr_get - the entry of KEY at NOW, made when absent (mutex held) */
static struct tr_entry *
tr_get(uint64_t key, double now)
{
	struct tr_entry **pp = &tr.buckets[key & (tr.nbuckets - 1)], *e;

	while ((e = *pp) != NULL) {
		if (e->key == key)
			break;
		if (now > e->expires) {   /* an expired neighbour: drop it */
			tr_remove(e);
			continue;
		}
		pp = &e->hnext;
	}
	if (e != NULL && now > e->expires) {
		tr_remove(e);
		e = NULL;
	}
	if (e != NULL) {
		lru_unlink(e);
		lru_front(e);
		return e;
	}
	/* the least recently used entries: expired ones, then over the bound */
	while (tr.tail != NULL && (tr.count >= tr.max ||
	    now > tr.tail->expires))
		tr_remove(tr.tail);
	e = xm_calloc(1, sizeof(*e));
	e->key = key;
	e->blocked = -1;
	e->fan_start = now;
	e->last = now;
	e->hnext = tr.buckets[key & (tr.nbuckets - 1)];
	tr.buckets[key & (tr.nbuckets - 1)] = e;
	lru_front(e);
	tr.count++;
	return e;
}

/* transfer_state_reset - forget every entry (tests) */
void transfer_state_reset(void);
void
transfer_state_reset(void)
{
	pthread_mutex_lock(&tr.mu);
	while (tr.tail != NULL)
		tr_remove(tr.tail);
	pthread_mutex_unlock(&tr.mu);
}

/* transfer_state_count - entries in the table (tests) */
size_t transfer_state_count(void);
size_t
transfer_state_count(void)
{
	size_t n;

	pthread_mutex_lock(&tr.mu);
	n = tr.count;
	pthread_mutex_unlock(&tr.mu);
	return n;
}

/* ---- names ---- */

/* what was found in one name */
struct name_info {
	char ext[24];       /* last extension, lower case ASCII; "" none */
	char prev[24];      /* the one before it (trimmed), "" none */
	bool bidi;          /* U+202A-202E, U+2066-2069 */
	long bidi_cp;
	bool invisible;     /* zero-width, BOM, soft hyphen ... */
	bool trailing;      /* trailing dots or spaces (dropped by Windows) */
	bool padding;       /* a long run of spaces/underscores before the ext */
	bool path;          /* a / or \ in it */
	bool nul;           /* a NUL (after percent-decoding) */
	const char *clean;  /* without bidi and invisible characters */
};

/* is_bidi - a bidi embedding, override or isolate */
static bool
is_bidi(long cp)
{
	return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 &&
	    cp <= 0x2069);
}

/* is_invisible - characters that hide what a name looks like */
static bool
is_invisible(long cp)
{
	return (cp >= 0x200b && cp <= 0x200d) || cp == 0x2060 ||
	    cp == 0xfeff || cp == 0x00ad || cp == 0x180e ||
	    (cp >= 0x2061 && cp <= 0x2064) || (cp >= 0xe0000 &&
	    cp <= 0xe007f) || cp == 0x3164 || cp == 0x115f || cp == 0x1160;
}

/* ext_of - the lower-case extension of S[0..n) after its last dot */
static void
ext_copy(char *out, size_t outlen, const char *s, size_t n)
{
	size_t i, k = 0;

	/* trim spaces and underscores around it: "pdf   " is still pdf */
	while (n > 0 && (s[0] == ' ' || s[0] == '_' || s[0] == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '_' ||
	    s[n - 1] == '\t'))
		n--;
	out[0] = '\0';
	if (n == 0 || n >= outlen)
		return;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return;
		out[k++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	out[k] = '\0';
}

/*
 * name_analyse - the facts about NAME (N bytes; may hold a NUL when it
 * came from percent-decoding, then the part before it is the name an
 * unwary program uses and NAME_TRICK is set)
 */
static void
name_analyse(struct xm_arena *a, const char *name, size_t n,
    struct name_info *ni)
{
	const char *p = name, *end = name + n, *base, *dot, *pdot, *q;
	char *clean = xm_arena_alloc(a, n + 1), *w = clean;
	size_t len, run;

	memset(ni, 0, sizeof(*ni));
	while (p < end) {
		const char *start = p;
		long cp;

		if (*p == '\0') {
			ni->nul = true;
			break;
		}
		cp = xm_utf8_next(&p, end);
		if (cp < 0) {
			p = start + 1;
			*w++ = '?';
			continue;
		}
		if (is_bidi(cp)) {
			if (!ni->bidi)
				ni->bidi_cp = cp;
			ni->bidi = true;
			continue;
		}
		if (is_invisible(cp)) {
			ni->invisible = true;
			continue;
		}
		if (cp == '/' || cp == '\\')
			ni->path = true;
		memcpy(w, start, (size_t)(p - start));
		w += p - start;
	}
	*w = '\0';
	ni->clean = clean;
	len = (size_t)(w - clean);
	/* the base name: what follows the last separator */
	base = clean;
	for (q = clean; q < clean + len; q++)
		if (*q == '/' || *q == '\\')
			base = q + 1;
	len -= (size_t)(base - clean);
	/* trailing dots and spaces vanish on Windows: "a.exe." is a.exe */
	while (len > 0 && (base[len - 1] == '.' || base[len - 1] == ' ')) {
		ni->trailing = true;
		len--;
	}
	dot = NULL;
	for (q = base + len; q > base; q--)
		if (q[-1] == '.') {
			dot = q - 1;
			break;
		}
	if (dot == NULL || dot == base)
		return;
	ext_copy(ni->ext, sizeof(ni->ext), dot + 1,
	    (size_t)(base + len - dot - 1));
	/* padding: many blanks or underscores just before the last dot */
	for (run = 0, q = dot; q > base && (q[-1] == ' ' || q[-1] == '_' ||
	    q[-1] == '\t'); q--)
		run++;
	if (run >= 5)
		ni->padding = true;
	pdot = NULL;
	for (q = dot; q > base; q--)
		if (q[-1] == '.') {
			pdot = q - 1;
			break;
		}
	if (pdot != NULL)
		ext_copy(ni->prev, sizeof(ni->prev), pdot + 1,
		    (size_t)(dot - pdot - 1));
}

/* pct_decode - percent-decode S[0..n) once into arena; *len gets its size */
static char *
pct_decode(struct xm_arena *a, const char *s, size_t n, size_t *len,
    bool *changed)
{
	char *out = xm_arena_alloc(a, n + 1);
	size_t i, k = 0;

	*changed = false;
	for (i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n &&
		    hexval((unsigned char)s[i + 1]) >= 0 &&
		    hexval((unsigned char)s[i + 2]) >= 0) {
			out[k++] = (char)(hexval((unsigned char)s[i + 1]) * 16 +
			    hexval((unsigned char)s[i + 2]));
			i += 2;
			*changed = true;
		} else if (s[i] == '+') {
			out[k++] = ' ';
		} else
			out[k++] = s[i];
	}
	out[k] = '\0';
	*len = k;
	return out;
}

/* pct_decode2 - decode up to twice (%252e is a dot, too) */
static char *
pct_decode2(struct xm_arena *a, const char *s, size_t n, size_t *len)
{
	bool changed;
	char *d = pct_decode(a, s, n, len, &changed);

	if (changed && memchr(d, '%', *len) != NULL)
		d = pct_decode(a, d, *len, len, &changed);
	return d;
}

/* ---- policy ---- */

/* the evidence of one check, kept to decide and to explain */
struct transfer_run {
	const struct transfer_conf *c;
	struct transfer_state *st;
	struct xm_task *t;
	double own;                 /* this filter's score so far */
	int first_final;            /* the first final symbol added, -1 */
	const char *why;            /* short reason for the sender */
};

/* tsym - add symbol S once per event (the first detail wins) */
static void XM_PRINTF(4, 5)
tsym(struct transfer_run *r, enum transfer_sym s, const char *why,
    const char *fmt, ...)
{
	va_list ap;
	char *detail;

	if (xm_task_has_symbol(r->t, transfer_symname[s]))
		return;
	va_start(ap, fmt);
	detail = xm_arena_vprintf(r->t->arena, fmt, ap);
	va_end(ap);
	xm_task_symbol(r->t, transfer_symname[s], r->c->score[s], 0, "%s",
	    detail);
	r->own += r->c->score[s];
	if (r->st->final[s] && r->first_final < 0) {
		r->first_final = (int)s;
		r->why = why;
	}
}

/* method_key - the methods-setting name of a file-transfer method */
static const char *
method_key(enum xm_file_method m)
{
	switch (m) {
	case XM_FT_SI: return "si";
	case XM_FT_JINGLE: return "jingle";
	case XM_FT_IBB_OPEN:
	case XM_FT_IBB_DATA:
	case XM_FT_IBB_CLOSE: return "ibb";
	case XM_FT_OOB: return "oob";
	case XM_FT_UPLOAD: return "upload";
	}
	return "?";
}

/* same_or_sub - D is BASE or a subdomain of it */
static bool
same_or_sub(const char *d, const char *base)
{
	size_t dl, bl;

	if (d == NULL || base == NULL)
		return false;
	dl = strlen(d);
	bl = strlen(base);
	if (dl == bl)
		return strcasecmp(d, base) == 0;
	return dl > bl && d[dl - bl - 1] == '.' &&
	    strcasecmp(d + dl - bl, base) == 0;
}

/* direction - inbound, outbound or local, from origin and domains */
static enum transfer_dir
direction(const struct transfer_conf *c, struct xm_arena *a,
    const struct xm_event *ev)
{
	const char *origin = ev->origin ? ev->origin : "";
	const char *fd = xm_jid_domain(a, ev->from ? ev->from : ev->auth);
	const char *td = xm_jid_domain(a, ev->to);
	bool from_local, to_local;

	if (strcmp(origin, "s2s") == 0 || strcmp(origin, "component") == 0)
		return DIR_INBOUND;
	if (c->local_domains.n > 0) {
		from_local = strcmp(origin, "c2s") == 0 ||
		    xm_domain_listed(&c->local_domains, fd);
		to_local = td == NULL || xm_domain_listed(&c->local_domains, td);
	} else {
		from_local = true;   /* c2s or the server itself */
		to_local = td == NULL || same_or_sub(td, fd);
	}
	if (!from_local)
		return DIR_INBOUND;
	return to_local ? DIR_LOCAL : DIR_OUTBOUND;
}

/* type_base - media type T without parameters, lower case, in arena */
static char *
type_base(struct xm_arena *a, const char *t)
{
	size_t n = strcspn(t, ";"), i;
	char *s;

	while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
		n--;
	while (n > 0 && (*t == ' ' || *t == '\t')) {
		t++;
		n--;
	}
	s = xm_arena_strndup(a, t, n);
	for (i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] + 32);
	return s;
}

/*
 * What a declared type must look like for an extension: comma-separated
 * prefixes ("image/" fits any image type). Extensions not listed are not
 * compared; generic types (octet-stream, empty) never mismatch.
 */
static const struct {
	const char *ext;
	const char *types;
} transfer_ext_types[] = {
	{ "pdf", "application/pdf,application/x-pdf,application/acrobat" },
	{ "jpg", "image/" }, { "jpeg", "image/" }, { "png", "image/" },
	{ "gif", "image/" }, { "bmp", "image/" }, { "webp", "image/" },
	{ "tif", "image/" }, { "tiff", "image/" }, { "heic", "image/" },
	{ "svg", "image/svg" },
	{ "mp3", "audio/" }, { "wav", "audio/" }, { "flac", "audio/" },
	{ "m4a", "audio/" }, { "ogg", "audio/,video/,application/ogg" },
	{ "mp4", "video/,audio/mp4" }, { "avi", "video/" },
	{ "mov", "video/" }, { "mkv", "video/" }, { "wmv", "video/" },
	{ "mpg", "video/" }, { "mpeg", "video/" },
	{ "txt", "text/" }, { "csv", "text/,application/csv,"
	    "application/vnd.ms-excel" },
	{ "doc", "application/msword,application/vnd.ms-word" },
	{ "docx", "application/vnd.openxmlformats-officedocument."
	    "wordprocessingml" },
	{ "xls", "application/vnd.ms-excel,application/excel" },
	{ "xlsx", "application/vnd.openxmlformats-officedocument."
	    "spreadsheetml" },
	{ "ppt", "application/vnd.ms-powerpoint" },
	{ "pptx", "application/vnd.openxmlformats-officedocument."
	    "presentationml" },
	{ "odt", "application/vnd.oasis.opendocument.text" },
	{ "ods", "application/vnd.oasis.opendocument.spreadsheet" },
	{ "rtf", "application/rtf,text/rtf" },
	{ "zip", "application/zip,application/x-zip,"
	    "application/x-zip-compressed" },
	{ "exe", "application/x-msdownload,application/x-dosexec,"
	    "application/x-ms-dos-executable,application/x-msdos-program,"
	    "application/vnd.microsoft.portable-executable,"
	    "application/x-executable,application/exe,application/x-exe,"
	    "application/x-winexe" },
};

/* generic_type - a type that says nothing (octet-stream, empty) */
static bool
generic_type(const char *tb)
{
	return *tb == '\0' || strcmp(tb, "application/octet-stream") == 0 ||
	    strcmp(tb, "binary/octet-stream") == 0 ||
	    strcmp(tb, "application/binary") == 0 ||
	    strcmp(tb, "application/unknown") == 0;
}

/* type_fits - declared type TB fits extension EXT (or is not compared) */
static bool
type_fits(const char *ext, const char *tb)
{
	size_t i;
	const char *p;

	for (i = 0; i < XM_ARRAY_LEN(transfer_ext_types); i++) {
		if (strcmp(transfer_ext_types[i].ext, ext) != 0)
			continue;
		for (p = transfer_ext_types[i].types; *p != '\0';) {
			size_t n = strcspn(p, ",");

			if (strncmp(tb, p, n) == 0)
				return true;
			p += n;
			if (*p == ',')
				p++;
		}
		return false;
	}
	return true;
}

/* check_name - the name policy on one candidate name (N bytes) */
static void
check_name(struct transfer_run *r, const struct xm_file *f,
    const char *name, size_t n, const char *what)
{
	const struct transfer_conf *c = r->c;
	struct xm_arena *a = r->t->arena;
	struct name_info ni;
	const char *shown;
	bool exec, risky;

	name_analyse(a, name, n, &ni);
	shown = log_escape(a, ni.clean, 120);
	if (ni.bidi)
		tsym(r, TS_RLO, "hidden characters in the file name",
		    "U+%04lX in %s name %s (.%s)", ni.bidi_cp, what, shown,
		    ni.ext[0] ? ni.ext : "no extension");
	if (ni.invisible || ni.trailing || ni.path || ni.nul)
		tsym(r, TS_NAME_TRICK, "a disguised file name",
		    "%s name %s: %s%s%s%s", what, shown,
		    ni.invisible ? "invisible characters " : "",
		    ni.trailing ? "trailing dots or spaces " : "",
		    ni.path ? "a path " : "", ni.nul ? "a NUL " : "");
	if (ni.nul) {
		/* the part before the NUL is what a C program would open */
		size_t k = strnlen(name, n);

		if (k < n)
			check_name(r, f, name, k, what);
	}
	exec = ni.ext[0] && xm_strlist_has(&c->block_extensions, ni.ext);
	risky = ni.ext[0] && xm_strlist_has(&c->risky_extensions, ni.ext);
	if (exec)
		tsym(r, TS_EXECUTABLE, xm_arena_printf(a, ".%s files are not "
		    "allowed", ni.ext), "%s name %s (.%s)", what, shown,
		    ni.ext);
	else if (risky)
		tsym(r, TS_RISKY_EXT, NULL, "%s name %s (.%s)", what, shown,
		    ni.ext);
	if ((exec || risky) && ((ni.prev[0] && xm_strlist_has(
	    &c->decoy_extensions, ni.prev)) || ni.padding))
		tsym(r, TS_DOUBLE_EXT, xm_arena_printf(a, "a .%s file "
		    "disguised as .%s", ni.ext, ni.prev[0] ? ni.prev : "?"),
		    "%s name %s (.%s%s .%s)", what, shown,
		    ni.prev[0] ? ni.prev : "", ni.padding ? " + padding" : "",
		    ni.ext);
	if (c->allow_extensions.n > 0 && (ni.ext[0] == '\0' ||
	    !xm_strlist_has(&c->allow_extensions, ni.ext)))
		tsym(r, TS_EXT_NOT_ALLOWED, ni.ext[0] ? xm_arena_printf(a,
		    ".%s files are not allowed", ni.ext) : "files without an "
		    "extension are not allowed", "%s name %s (%s%s)", what,
		    shown, ni.ext[0] ? "." : "", ni.ext[0] ? ni.ext :
		    "no extension");
	if (c->check_type && f->type != NULL && ni.ext[0] &&
	    f->method != XM_FT_OOB) {
		const char *tb = type_base(a, f->type);

		if (generic_type(tb))
			;
		else if (exec ? !xm_strlist_has(&c->executable_types, tb) :
		    !type_fits(ni.ext, tb))
			tsym(r, TS_TYPE_MISMATCH, NULL,
			    "%s declared as %s", shown, log_escape(a, tb, 80));
	}
}

/* oob_names - the names an OOB link offers: the path's last segment,
 * query values that look like file names, a one-word desc */
static void
oob_names(struct transfer_run *r, const struct xm_file *f)
{
	struct xm_arena *a = r->t->arena;
	const char *u = f->url, *p, *path, *q, *end, *seg, *scheme_end;
	char *d;
	size_t n;

	if (u == NULL)
		return;
	while (*u == ' ' || *u == '\t' || *u == '\n' || *u == '\r')
		u++;
	scheme_end = strchr(u, ':');
	if (scheme_end != NULL && r->c->oob_schemes.n > 0) {
		char *scheme = xm_arena_strndup(a, u, (size_t)(scheme_end - u));
		size_t i;
		bool ok = true;

		for (i = 0; scheme[i] != '\0'; i++) {
			char ch = scheme[i];

			if (ch >= 'A' && ch <= 'Z')
				scheme[i] = (char)(ch + 32);
			else if (!((ch >= 'a' && ch <= 'z') ||
			    (ch >= '0' && ch <= '9') || ch == '+' ||
			    ch == '-' || ch == '.'))
				ok = false;
		}
		if (ok && !xm_strlist_has(&r->c->oob_schemes, scheme))
			tsym(r, TS_OOB_SCHEME, NULL, "link with scheme %s:",
			    log_escape(a, scheme, 20));
	}
	/* the path: after scheme://authority */
	path = u;
	if ((p = strstr(u, "://")) != NULL) {
		path = p + 3;
		path += strcspn(path, "/?#");
	} else if (scheme_end != NULL)
		path = scheme_end + 1;
	end = path + strcspn(path, "?#");
	for (seg = end; seg > path && seg[-1] != '/'; seg--)
		;
	if (seg < end) {
		d = pct_decode2(a, seg, (size_t)(end - seg), &n);
		check_name(r, f, d, n, "linked");
	}
	/* query values that look like names: ?file=setup.exe */
	if (*end == '?') {
		q = end + 1;
		while (*q != '\0' && *q != '#') {
			const char *amp = q + strcspn(q, "&#"), *eq;

			eq = memchr(q, '=', (size_t)(amp - q));
			if (eq != NULL && amp - eq > 1) {
				d = pct_decode2(a, eq + 1, (size_t)(amp - eq - 1),
				    &n);
				if (memchr(d, '.', n) != NULL)
					check_name(r, f, d, n, "linked");
			}
			q = *amp == '&' ? amp + 1 : amp;
		}
	}
	if (f->desc != NULL && f->desc[0] != '\0' &&
	    strpbrk(f->desc, " \t\r\n") == NULL && strchr(f->desc, '.'))
		check_name(r, f, f->desc, strlen(f->desc), "described");
}

/* file_identity - hash (preferred) else name and size, in arena */
static const char *
file_identity(struct xm_arena *a, const struct xm_file *f)
{
	size_t i;
	struct transfer_hash h;

	for (i = 0; i < f->nhashes; i++) {
		const char *v = f->hashes[i].value, *al = f->hashes[i].algo;
		struct xm_buf b = { 0 };
		const char *s;
		unsigned k;

		if (v == NULL || !hash_make(&h, al, al ? strlen(al) : 0, v,
		    strlen(v)))
			continue;
		xm_buf_printf(&b, "h:%s:", h.algo);
		for (k = 0; k < h.len; k++)
			xm_buf_printf(&b, "%02x", h.b[k]);
		s = xm_arena_strdup(a, b.data);
		xm_buf_free(&b);
		return s;
	}
	if (f->method == XM_FT_OOB && f->url != NULL)
		return xm_arena_printf(a, "u:%s", f->url);
	if (f->name != NULL)
		return xm_arena_printf(a, "n:%s/%lld", f->name, f->size);
	return NULL;
}

/* check_hashes - declared hashes against the bad list */
static void
check_hashes(struct transfer_run *r, const struct xm_file *f)
{
	size_t i;
	struct transfer_hash h;

	if (r->st->bad.n == 0)
		return;
	for (i = 0; i < f->nhashes; i++) {
		const char *v = f->hashes[i].value, *al = f->hashes[i].algo;

		if (v == NULL || !hash_make(&h, al, al ? strlen(al) : 0, v,
		    strlen(v)))
			continue;
		if (bsearch(&h, r->st->bad.v, r->st->bad.n, sizeof(h),
		    hash_cmp) != NULL) {
			tsym(r, TS_BAD_HASH, "a known-bad file",
			    "%s %s of %s", h.algo, log_escape(r->t->arena, v,
			    100), f->name ? log_escape(r->t->arena, f->name,
			    80) : "the file");
			return;
		}
	}
}

/* blocked_now - did this check block the file (final, or enough score) */
static bool
blocked_now(const struct transfer_run *r)
{
	return r->first_final >= 0 || r->own >= r->c->repeat_min_score;
}

/* check_state - repeat offers and fan-out for each identified file */
static void
check_state(struct transfer_run *r, const char *sender, const char **ids,
    size_t nids, const char *rcpt, bool fan)
{
	const struct transfer_conf *c = r->c;
	double now = r->t->now, keep;
	uint32_t rk = 0;
	size_t i, j;
	unsigned long rep = 0;
	double since = 0;
	unsigned fan_n = 0;

	keep = c->repeat_window > c->fanout_window ? c->repeat_window :
	    c->fanout_window;
	if (rcpt != NULL)
		rk = (uint32_t)tr_key("r", rcpt);
	pthread_mutex_lock(&tr.mu);
	for (i = 0; i < nids; i++) {
		struct tr_entry *e = tr_get(tr_key(sender, ids[i]), now);

		if (now > e->last)
			e->last = now;
		if (e->last + keep > e->expires)
			e->expires = e->last + keep;
		if (c->repeat_window > 0 && e->blocked >= 0 &&
		    now - e->blocked <= c->repeat_window) {
			e->repeats++;
			if (e->repeats > rep) {
				rep = e->repeats;
				since = now - e->blocked;
			}
		}
		if (fan && c->fanout_max >= 0 && rcpt != NULL) {
			if (now - e->fan_start > c->fanout_window || now <
			    e->fan_start) {
				e->fan_start = now;
				e->nrcpt = 0;
			}
			for (j = 0; j < e->nrcpt; j++)
				if (e->rcpt[j] == rk)
					break;
			if (j == e->nrcpt && e->nrcpt < FANOUT_SLOTS)
				e->rcpt[e->nrcpt++] = rk;
			if (e->nrcpt > fan_n)
				fan_n = e->nrcpt;
		}
	}
	pthread_mutex_unlock(&tr.mu);
	if (rep > 0)
		tsym(r, TS_REPEAT, "offered again after it was refused",
		    "offered %lu time%s since it was blocked %.0fs ago", rep,
		    rep == 1 ? "" : "s", since);
	if (c->fanout_max >= 0 && fan_n > (unsigned)c->fanout_max)
		tsym(r, TS_FANOUT, "offered to too many recipients",
		    "%u recipients within %.0fs > %lld", fan_n,
		    c->fanout_window, c->fanout_max);
	if (blocked_now(r)) {
		pthread_mutex_lock(&tr.mu);
		for (i = 0; i < nids; i++) {
			struct tr_entry *e = tr_get(tr_key(sender, ids[i]),
			    now);

			if (e->blocked < 0)
				e->repeats = 0;
			e->blocked = now;
			if (now + c->repeat_window > e->expires)
				e->expires = now + c->repeat_window;
		}
		pthread_mutex_unlock(&tr.mu);
	}
}

/* transfer_check - the policy on every file of the event */
static void
transfer_check(void *state, struct xm_task *t)
{
	struct transfer_state *st = state;
	const struct transfer_conf *c = st->c;
	const struct xm_event *ev = t->ev;
	struct transfer_run r = { c, st, t, 0, -1, NULL };
	enum transfer_dir dir;
	const char **ids, *sender, *rcpt;
	size_t i, nids = 0;
	bool fan = false;

	if (ev->nfiles == 0)
		return;
	dir = direction(c, t->arena, ev);
	ids = xm_arena_array(t->arena, ev->nfiles, sizeof(*ids));
	for (i = 0; i < ev->nfiles; i++) {
		const struct xm_file *f = &ev->files[i];
		const char *m = method_key(f->method), *id;

		if (!c->allow) {
			tsym(&r, TS_DISABLED, NULL, "file transfer is off "
			    "(%s)", m);
			continue;
		}
		if (!xm_strlist_has(&c->methods, m)) {
			tsym(&r, TS_DISABLED, NULL, "method %s is off", m);
			continue;
		}
		if (f->method != XM_FT_UPLOAD && !xm_strlist_has(
		    &c->directions, transfer_dirname[dir])) {
			tsym(&r, TS_DISABLED, NULL, "%s transfers are off "
			    "(%s)", transfer_dirname[dir], m);
			continue;
		}
		if (f->method == XM_FT_IBB_OPEN || f->method ==
		    XM_FT_IBB_DATA || f->method == XM_FT_IBB_CLOSE)
			continue;   /* no metadata: the offer had it */
		if (f->method == XM_FT_OOB)
			oob_names(&r, f);
		else if (f->name != NULL)
			check_name(&r, f, f->name, strlen(f->name), "file");
		if (f->type != NULL) {
			const char *tb = type_base(t->arena, f->type);

			if (xm_strlist_has(&c->executable_types, tb))
				tsym(&r, TS_EXECUTABLE, "programs are not "
				    "allowed", "declared type %s",
				    log_escape(t->arena, tb, 80));
		}
		if (c->max_size >= 0 && f->size > c->max_size)
			tsym(&r, TS_TOO_BIG, xm_arena_printf(t->arena,
			    "larger than %lld bytes", c->max_size),
			    "declared size %lld > %lld", f->size, c->max_size);
		check_hashes(&r, f);
		if ((id = file_identity(t->arena, f)) != NULL)
			ids[nids++] = id;
		if (f->method != XM_FT_UPLOAD)
			fan = true;
	}
	sender = xm_jid_bare(t->arena, ev->from ? ev->from : ev->auth);
	rcpt = ev->to ? xm_jid_bare(t->arena, ev->to) : NULL;
	if (nids > 0 && sender != NULL && !xm_task_has_symbol(t,
	    transfer_symname[TS_DISABLED]))
		check_state(&r, sender, ids, nids, rcpt, fan);
	if (r.first_final >= 0) {
		const char *text;

		if (r.first_final == TS_DISABLED)
			text = c->disabled_text;
		else if (c->explain && r.why != NULL) {
			size_t n = strlen(c->blocked_text);

			while (n > 0 && c->blocked_text[n - 1] == '.')
				n--;
			text = xm_arena_printf(t->arena, "%.*s (%s).", (int)n,
			    c->blocked_text, r.why);
		}
		else
			text = c->blocked_text;
		xm_task_final(t, XM_REJECT,
		    transfer_conditions[c->reject_condition], text);
	}
}

/* transfer_init - check the settings, read the bad-hash files */
static int
transfer_init(void **state, const void *conf, char *err, size_t errlen)
{
	const struct transfer_conf *c = conf;
	struct transfer_state *st = xm_calloc(1, sizeof(*st));
	size_t i, k;

	st->c = c;
	for (i = 0; i < c->final_symbols.n; i++) {
		for (k = 0; k < TS_COUNT; k++)
			if (strcasecmp(c->final_symbols.v[i],
			    transfer_symname[k]) == 0)
				break;
		if (k == TS_COUNT) {
			snprintf(err, errlen, "transfer: final_symbols: no "
			    "symbol %s", c->final_symbols.v[i]);
			goto fail;
		}
		st->final[k] = true;
	}
	for (i = 0; i < c->methods.n; i++) {
		const char *m = c->methods.v[i];

		if (strcmp(m, "si") && strcmp(m, "jingle") && strcmp(m, "ibb")
		    && strcmp(m, "oob") && strcmp(m, "upload")) {
			snprintf(err, errlen, "transfer: methods: \"%s\" is not "
			    "si, jingle, ibb, oob or upload", m);
			goto fail;
		}
	}
	for (i = 0; i < c->directions.n; i++) {
		const char *d = c->directions.v[i];

		if (strcmp(d, "inbound") && strcmp(d, "outbound") &&
		    strcmp(d, "local")) {
			snprintf(err, errlen, "transfer: directions: \"%s\" is "
			    "not inbound, outbound or local", d);
			goto fail;
		}
	}
	if (transfer_hashes_load(&c->bad_hashes, c->max_bad_hashes, &st->bad,
	    err, errlen) < 0)
		goto fail;
	if (c->bad_hashes.n > 0)
		log_debug("transfer: %zu bad hashes", st->bad.n);
	pthread_mutex_lock(&tr.mu);
	tr_setup((size_t)c->state_max_entries);
	pthread_mutex_unlock(&tr.mu);
	*state = st;
	return 0;
fail:
	free(st);
	return -1;
}

/* transfer_free - free the state (the config is not ours) */
static void
transfer_free(void *state)
{
	struct transfer_state *st = state;

	if (st == NULL)
		return;
	transfer_hashes_free(&st->bad);
	free(st);
}

const struct xm_filter_ops transfer_filter = {
	.name = "transfer",
	.abi = XM_FILTER_ABI,
	.flags = 0,
	.conf_size = sizeof(struct transfer_conf),
	.settings = transfer_settings,
	.init = transfer_init,
	.check = transfer_check,
	.free = transfer_free,
};
