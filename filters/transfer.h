/*
 * transfer.h - what the transfer filter shares with the fetch filter
 *
 * The known-bad file hash list (files of "[ALGO] VALUE" lines, see
 * docs/TRANSFER.md): loaded from paths into a sorted array, looked up by
 * algorithm and digest bytes. The list owns its array; free it with
 * transfer_hashes_free. Loading fails with "file:line: why" in ERR.
 */
#ifndef XM_TRANSFER_H
#define XM_TRANSFER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define TRANSFER_HASH_MAX 64   /* bytes: sha-512 */

struct transfer_hash {
	char algo[16];        /* normalised: "md5", "sha-1", "sha-256" ... */
	unsigned char len;
	unsigned char b[TRANSFER_HASH_MAX];
};

struct transfer_hashlist {
	struct transfer_hash *v;  /* sorted, no duplicates */
	size_t n;
};

/* transfer_hashes_load - read every file of PATHS (at most MAX hashes)
 * into L (zeroed first); 0, or -1 with ERR and L empty */
int transfer_hashes_load(const struct xm_strlist *paths, long long max,
    struct transfer_hashlist *l, char *err, size_t errlen);
/* transfer_hashes_has - digest B (LEN bytes) of algorithm ALGO is listed */
bool transfer_hashes_has(const struct transfer_hashlist *l, const char *algo,
    const unsigned char *b, size_t len);
/* transfer_hashes_free - free the array; L is empty afterwards */
void transfer_hashes_free(struct transfer_hashlist *l);

#endif
