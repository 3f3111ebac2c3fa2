/* Hashing: SHA-256 (cache keys, content digests) and FNV-1a 64 (hash tables,
 * feature hashing). */
#ifndef FEEDLINE_HASH_H
#define FEEDLINE_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
    uint32_t state[8];
    uint64_t bitlen;
    uint8_t block[64];
    size_t blocklen;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, uint8_t out[32]);
/* sha256_final, as a lower-case hex digest (65 bytes incl. NUL). */
void sha256_final_hex(sha256_ctx *c, char out[65]);
/* Hex digest of data into out (65 bytes incl. NUL). */
void sha256_hex(const void *data, size_t len, char out[65]);

uint64_t fnv1a64(const void *data, size_t len);
uint64_t fnv1a64_str(const char *s);
/* FNV-1a continued from state h over more bytes: fnv1a64(a+b) ==
 * fnv1a64_more(fnv1a64(a), b), so the hashes of every prefix of a text cost one pass. */
#define FNV1A64_BASIS 1469598103934665603ULL
uint64_t fnv1a64_more(uint64_t h, const void *data, size_t len);
/* A strong 64-bit finalizer (splitmix64's), to spread FNV output or combine hashes. */
uint64_t hash_mix64(uint64_t x);

#endif
