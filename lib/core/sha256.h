/* sha256.h — SHA-256 (FIPS 180-4), for content-addressed keys and integrity checks.
 *
 * Owns: the digest only.  Used where a 64-bit hash is too weak: LLM cache keys (millions of
 * entries shared by processes) and checksums that detect torn or corrupt files. */
#ifndef CL_SHA256_H
#define CL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct cl_sha256 {
    uint32_t h[8];
    uint64_t len;          /* bytes hashed so far */
    unsigned char buf[64];
    size_t nbuf;
} cl_sha256;

void cl_sha256_init(cl_sha256 *s);
void cl_sha256_update(cl_sha256 *s, const void *data, size_t len);
void cl_sha256_final(cl_sha256 *s, unsigned char out[32]);

/* One-shot digest of data as 64 lowercase hex digits plus NUL. */
void cl_sha256_hex(const void *data, size_t len, char out[65]);

#endif
