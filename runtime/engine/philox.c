/*
 * philox.c — Philox4x32-10.  See philox.h.
 */
#include "runtime/engine/philox.h"

/* One Philox S-box round: two 32x32->64 multiplies, the high halves mixed
 * with the other two words and the key (Random123 _philox4x32round). */
static inline void philox_round(uint32_t c[4], uint32_t k0, uint32_t k1)
{
	uint64_t p0 = (uint64_t)PF_PHILOX_M0 * c[0];
	uint64_t p1 = (uint64_t)PF_PHILOX_M1 * c[2];
	uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
	uint32_t n1 = (uint32_t)p1;
	uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
	uint32_t n3 = (uint32_t)p0;

	c[0] = n0;
	c[1] = n1;
	c[2] = n2;
	c[3] = n3;
}

void pf_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
	uint32_t c[4] = { ctr[0], ctr[1], ctr[2], ctr[3] };
	uint32_t k0 = key[0], k1 = key[1];

	/* Round 0 uses the key as given; the key is bumped before each later
	 * round, never after the last (so 9 bumps for 10 rounds). */
	for (int r = 0; r < 10; r++) {
		if (r > 0) {
			k0 += PF_PHILOX_W0;
			k1 += PF_PHILOX_W1;
		}
		philox_round(c, k0, k1);
	}
	out[0] = c[0];
	out[1] = c[1];
	out[2] = c[2];
	out[3] = c[3];
}

void pf_philox_draw(uint64_t seed, uint64_t index, uint32_t substream, uint32_t out[4])
{
	const uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
	const uint32_t ctr[4] = { (uint32_t)index, (uint32_t)(index >> 32), substream, 0 };

	pf_philox4x32_10(ctr, key, out);
}
