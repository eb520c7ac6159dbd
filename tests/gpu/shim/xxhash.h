/*
 * xxhash.h (shim) — the two XXH3 entry points runtime/engine/kv.c calls, for the
 * standalone GPU build only (Makefile: bench_serve's runtime objects get
 * -Itests/gpu/shim).  The GPU machine has the CUDA toolkit and a C
 * compiler but no Debian packages, so no libxxhash.
 *
 * Not xxHash: a simple 64-bit multiply-xorshift hash of our own, with
 * different values.  That is safe here because the block manager verifies
 * every prefix-cache hit against the stored parent hash and token ids
 * (kv.h): the hash only decides how fast a lookup finds its candidate,
 * never what it returns.  Nothing hashed by this build is stored or
 * compared with hashes from the real library.
 *
 * Used always for that build, not only when the system lacks xxhash.h:
 * the same code then runs on every machine (no link against libxxhash to
 * find, no timing that differs by which header was picked up).
 */
#ifndef PF_SHIM_XXHASH_H
#define PF_SHIM_XXHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint64_t XXH64_hash_t;

/* SplitMix64's finaliser: every input bit reaches every output bit. */
static inline uint64_t pf_shim_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static inline XXH64_hash_t XXH3_64bits_withSeed(const void *data, size_t len, XXH64_hash_t seed)
{
	const unsigned char *p = data;
	uint64_t h = pf_shim_mix64(seed ^ 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)len * 0xC2B2AE3D27D4EB4FULL);
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v;
		memcpy(&v, p + i, 8);
		h = pf_shim_mix64(h ^ v) + 0x9E3779B97F4A7C15ULL;
	}
	if (i < len) {
		uint64_t v = 0;
		memcpy(&v, p + i, len - i);
		h = pf_shim_mix64(h ^ v ^ 0xFF51AFD7ED558CCDULL);
	}
	return pf_shim_mix64(h);
}

static inline XXH64_hash_t XXH3_64bits(const void *data, size_t len)
{
	return XXH3_64bits_withSeed(data, len, 0);
}

#endif
