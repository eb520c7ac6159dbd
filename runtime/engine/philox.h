/*
 * philox.h — Philox4x32-10, the counter-based random number generator of
 * Salmon, Moraes, Dror and Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3"
 * (SC '11), bit-exact with the Random123 library's philox4x32_R(10, ...).
 *
 * Why counter-based: the output is a pure function of (key, counter), with no
 * state to carry from one draw to the next.  The sampler keys it with a
 * request's seed and uses (token index, sub-stream) as the counter, so a
 * seeded request draws the same numbers whatever other sequences share its
 * batch, in whatever order the engine visits them, and a sequence resumed
 * after preemption or a restart at token index i draws exactly what it would
 * have drawn there the first time.
 *
 * Layout used by pinfer (the sampler is the only user so far):
 *   key = { seed & 0xffffffff, seed >> 32 }
 *   ctr = { index & 0xffffffff, index >> 32, substream, 0 }
 * ctr[3] is left zero for future use (e.g. more than four words per index).
 *
 * Uniform variates: pf_philox_u01f() maps the top 24 bits of one word to a
 * float k * 2^-24, k in [0, 2^24): every value is exactly representable, so
 * the result is in [0, 1) and can never round up to 1.0 (which 32 bits
 * scaled to float could).  pf_philox_u01d() builds a double from 53 bits of
 * two words the same way, for callers that accumulate probabilities in
 * double and want resolution finer than 2^-24 (a 150k-token vocabulary has
 * many tokens below that probability).
 *
 * The KATs in tests/unit/test_sampler.c come from Random123's
 * tests/kat_vectors.  Everything here is pure and thread-safe.
 */
#ifndef PF_PHILOX_H
#define PF_PHILOX_H

#include <stdint.h>

#define PF_PHILOX_M0 0xD2511F53u /* round multipliers (Random123 PHILOX_M4x32_0/1) */
#define PF_PHILOX_M1 0xCD9E8D57u
#define PF_PHILOX_W0 0x9E3779B9u /* Weyl key increments (golden ratio, sqrt(3)-1) */
#define PF_PHILOX_W1 0xBB67AE85u

/*
 * Philox4x32 with 10 rounds: out = philox4x32_10(ctr, key).  out may alias
 * ctr.  Cannot fail.
 */
void pf_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/*
 * The pinfer layout above: out = philox4x32_10({index lo, index hi,
 * substream, 0}, {seed lo, seed hi}).  Cannot fail.
 */
void pf_philox_draw(uint64_t seed, uint64_t index, uint32_t substream, uint32_t out[4]);

/* Uniform float in [0, 1) from the top 24 bits of x (multiples of 2^-24). */
static inline float pf_philox_u01f(uint32_t x)
{
	return (float)(x >> 8) * 0x1p-24f;
}

/* Uniform double in [0, 1) from 53 bits: all 32 of hi, the top 21 of lo. */
static inline double pf_philox_u01d(uint32_t hi, uint32_t lo)
{
	uint64_t k = ((uint64_t)hi << 21) | (lo >> 11);
	return (double)k * 0x1p-53;
}

#endif /* PF_PHILOX_H */
