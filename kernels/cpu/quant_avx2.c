/*
 * quant_avx2.c — AVX2 + FMA + F16C kernels.
 *
 * Compiled without -march: every function carries a target attribute and is
 * only reached through pf_qtype_ops() after pf_cpu_isa_detect() said so.
 *
 * Quantized dot products work on whole blocks with 256-bit integer ops: the
 * 4-bit weights stay unsigned nibbles (0..15) so _mm256_maddubs_epi16 can
 * take them as its unsigned operand with the signed 8-bit activations; the
 * Q4_0 offset of 8 and the Q6_K offset of 32 are taken off afterwards as
 * 8·Σa (another maddubs) or 32·Σ(scale·bsum).  Each block's int32 lanes are
 * converted to float and accumulated with one FMA by the block's scale; the
 * single horizontal sum is at the end of the row.  Q4_1 and Q8_0 (the
 * formats of SmolLM2's golden model) use one accumulator in block order, as
 * llama.cpp's AVX2 kernels do, so their float sums round identically.
 */
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"

#if PF_QUANT_X86

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define PF_AVX2 __attribute__((target("avx2,fma,f16c")))

#define F16(h) _cvtsh_ss(h)

PF_AVX2 static inline float pf_hsum_ps(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

PF_AVX2 static inline float pf_hsum_ps128(__m128 s)
{
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

PF_AVX2 static inline float pf_hmax_ps(__m256 v)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* 16 bytes of nibbles -> 32 bytes 0..15: low nibbles first, then high. */
PF_AVX2 static inline __m256i pf_nibbles32(const uint8_t *p)
{
	const __m128i q = _mm_loadu_si128((const __m128i *)p);
	const __m256i t = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
	return _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
}

/* ---- activation quantizers ----------------------------------------------- */

/* 32 floats -> 32 int8 = rint(x·id); returns the int32 lanes' sum in *sum. */
PF_AVX2 static inline __m256i pf_round32(const float *x, float id, int *sum)
{
	const __m256 mul = _mm256_set1_ps(id);
#define PF_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
	__m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 0), mul), PF_RNE));
	__m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), mul), PF_RNE));
	__m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 16), mul), PF_RNE));
	__m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 24), mul), PF_RNE));

	if (sum) {
		__m256i t = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
		__m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
		u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4e));
		u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xb1));
		*sum = _mm_cvtsi128_si32(u);
	}
	/* packs work per 128-bit lane: 0-3 8-11 16-19 24-27 | 4-7 12-15 20-23 28-31 */
	i0 = _mm256_packs_epi32(i0, i1);
	i2 = _mm256_packs_epi32(i2, i3);
	i0 = _mm256_packs_epi16(i0, i2);
	return _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
#undef PF_RNE
}

PF_AVX2 static inline float pf_amax32(const float *x)
{
	const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256 m = _mm256_and_ps(_mm256_loadu_ps(x), abs);

	m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + 8), abs));
	m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + 16), abs));
	m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + 24), abs));
	return pf_hmax_ps(m);
}

PF_AVX2 void pf_quantize_row_q8_0_avx2(const float *x, void *dst, int64_t n)
{
	struct pf_block_q8_0 *y = dst;

	for (int64_t i = 0; i < n / PF_QK; i++, x += PF_QK) {
		const float amax = pf_amax32(x);
		const float d = amax / 127.0f;
		const float id = amax != 0.0f ? 127.0f / amax : 0.0f;

		y[i].d = pf_f32_to_f16(d);
		_mm256_storeu_si256((__m256i *)y[i].qs, pf_round32(x, id, NULL));
	}
}

PF_AVX2 void pf_quantize_row_q8_1_avx2(const float *x, void *dst, int64_t n)
{
	struct pf_block_q8_1 *y = dst;

	for (int64_t i = 0; i < n / PF_QK; i++, x += PF_QK) {
		const float amax = pf_amax32(x);
		const float d = amax / 127.0f;
		const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
		int sum;

		_mm256_storeu_si256((__m256i *)y[i].qs, pf_round32(x, id, &sum));
		y[i].d = pf_f32_to_f16(d);
		y[i].s = pf_f32_to_f16(d * (float)sum);
	}
}

PF_AVX2 void pf_quantize_row_q8_K_avx2(const float *x, void *dst, int64_t n)
{
	struct pf_block_q8_K *y = dst;

	for (int64_t i = 0; i < n / PF_QK_K; i++, x += PF_QK_K) {
		float amax = 0.0f, max;
		int j;

		for (j = 0; j < PF_QK_K; j += 32)
			amax = fmaxf(amax, pf_amax32(x + j));
		if (amax == 0.0f) {
			memset(&y[i], 0, sizeof(y[i]));
			continue;
		}
		/* the first element of that magnitude gives the sign (as the
		 * reference: the largest magnitude maps to -127) */
		for (j = 0; j < PF_QK_K && fabsf(x[j]) != amax; j++)
			;
		max = j < PF_QK_K ? x[j] : amax; /* always found: amax is one |x[j]| */
		const float iscale = -127.0f / max;
		/* |iscale·x| <= 127 up to rounding; the packs saturate at 127 as the
		 * reference clamps */
		for (j = 0; j < PF_QK_K; j += 32) {
			const __m256i q = pf_round32(x + j, iscale, NULL);
			_mm256_storeu_si256((__m256i *)(y[i].qs + j), q);
			/* Σ of each 16: maddubs(1, q) pairs, madd pairs -> 4 int32 per 16 */
			__m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q),
						      _mm256_set1_epi16(1));
			s = _mm256_hadd_epi32(s, s);
			s = _mm256_hadd_epi32(s, s);
			y[i].bsums[j / 16] = (int16_t)_mm256_cvtsi256_si32(s);
			y[i].bsums[j / 16 + 1] = (int16_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(s, 1));
		}
		y[i].d = 1.0f / iscale;
	}
}

PF_AVX2 void pf_quantize_row_f16_avx2(const float *x, void *dst, int64_t n)
{
	uint16_t *y = dst;
	int64_t j = 0;

	for (; j + 8 <= n; j += 8)
		_mm_storeu_si128((__m128i *)(y + j),
				 _mm256_cvtps_ph(_mm256_loadu_ps(x + j), _MM_FROUND_TO_NEAREST_INT));
	for (; j < n; j++)
		y[j] = pf_f32_to_f16(x[j]);
}

/* ---- dot products -------------------------------------------------------- */

PF_AVX2 static void pf_vec_dot_q4_0_avx2(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_0 *x = w;
	const struct pf_block_q8_0 *y = a;
	const int64_t nb = n / PF_QK;
	const __m256i ones = _mm256_set1_epi16(1), eights = _mm256_set1_epi8(8);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	int64_t i = 0;

	/* Σ(q-8)·a = Σq·a - 8·Σa, both pairwise in int16 (|.| <= 2·15·127) */
	for (; i + 2 <= nb; i += 2) {
		const __m256i q0 = pf_nibbles32(x[i].qs), q1 = pf_nibbles32(x[i + 1].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i a1 = _mm256_loadu_si256((const __m256i *)y[i + 1].qs);
		const __m256i p0 = _mm256_sub_epi16(_mm256_maddubs_epi16(q0, a0), _mm256_maddubs_epi16(eights, a0));
		const __m256i p1 = _mm256_sub_epi16(_mm256_maddubs_epi16(q1, a1), _mm256_maddubs_epi16(eights, a1));
		const __m256 d0 = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		const __m256 d1 = _mm256_set1_ps(F16(x[i + 1].d) * F16(y[i + 1].d));
		acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(_mm256_madd_epi16(p0, ones)), acc0);
		acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(_mm256_madd_epi16(p1, ones)), acc1);
	}
	for (; i < nb; i++) {
		const __m256i q0 = pf_nibbles32(x[i].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i p0 = _mm256_sub_epi16(_mm256_maddubs_epi16(q0, a0), _mm256_maddubs_epi16(eights, a0));
		const __m256 d0 = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(_mm256_madd_epi16(p0, ones)), acc0);
	}
	*s = pf_hsum_ps(_mm256_add_ps(acc0, acc1));
}

PF_AVX2 static void pf_vec_dot_q4_1_avx2(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_1 *x = w;
	const struct pf_block_q8_1 *y = a;
	const int64_t nb = n / PF_QK;
	const __m256i ones = _mm256_set1_epi16(1);
	__m256 acc = _mm256_setzero_ps();
	float summ = 0.0f;

	/* Σ(d q + m)(d_a q_a) = d d_a Σq·q_a + m·s.  One accumulator and the
	 * m·s terms summed block by block, in llama.cpp's order, so the sums
	 * round the same way (activation quantization amplifies any last-bit
	 * difference) */
	for (int64_t i = 0; i < nb; i++) {
		const __m256i q0 = pf_nibbles32(x[i].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256 d0 = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		summ = fmaf(F16(x[i].m), F16(y[i].s), summ);
		acc = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(q0, a0), ones)), acc);
	}
	*s = pf_hsum_ps(acc) + summ;
}

/* Σ x·y of 32 signed bytes in 8 int32 lanes: maddubs needs one unsigned
 * operand, so move x's sign onto y.  x = -128 still works (|x| = 128 as u8);
 * y is never -128 (the activation quantizers give -127..127). */
PF_AVX2 static inline __m256i pf_dot_i8(__m256i x, __m256i y)
{
	const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
	return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

PF_AVX2 static void pf_vec_dot_q8_0_avx2(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q8_0 *x = w;
	const struct pf_block_q8_0 *y = a;
	const int64_t nb = n / PF_QK;
	__m256 acc = _mm256_setzero_ps();

	/* one accumulator, block by block: llama.cpp's order */
	for (int64_t i = 0; i < nb; i++) {
		const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[i].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256 d0 = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		acc = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(pf_dot_i8(x0, a0)), acc);
	}
	*s = pf_hsum_ps(acc);
}

/* int16 lanes all = the 16-bit word j of each 128-bit lane of v */
#define PF_BCAST_W(v, j) _mm256_shuffle_epi8((v), _mm256_set1_epi16((short)(0x0100 * (2 * (j) + 1) + 2 * (j))))

PF_AVX2 static void pf_vec_dot_q4_K_avx2(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_K *x = w;
	const struct pf_block_q8_K *y = a;
	const int64_t nb = n / PF_QK_K;
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	__m256 acc = _mm256_setzero_ps();
	__m128 acc_m = _mm_setzero_ps();

	for (int64_t i = 0; i < nb; i++) {
		uint8_t scm[16]; /* 8 scales, 8 mins */
		pf_q4k_unpack_scales(x[i].scales, scm, scm + 8);
		const __m256i sm16 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)scm));
		const __m128i sc16 = _mm256_castsi256_si128(sm16);
		const __m256i scales = _mm256_set_m128i(sc16, sc16);
		const float d = y[i].d * F16(x[i].d);
		const float dmin = y[i].d * F16(x[i].dmin);

		/* mins: Σ_j m_j·(Σa over sub-block j) from the activation's bsums */
		const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
		const __m128i bs2 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
		const __m128i pm = _mm_madd_epi16(_mm256_extracti128_si256(sm16, 1), bs2);
		acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(pm), acc_m);

		const uint8_t *q4 = x[i].qs;
		const int8_t *q8 = y[i].qs;
		__m256i sumi = _mm256_setzero_si256();
#define PF_Q4K_STEP(k)                                                                           \
	do {                                                                                     \
		const __m256i qb = _mm256_loadu_si256((const __m256i *)(q4 + 32 * (k)));         \
		const __m256i lo = _mm256_and_si256(qb, m4);                                     \
		const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);               \
		const __m256i al = _mm256_loadu_si256((const __m256i *)(q8 + 64 * (k)));         \
		const __m256i ah = _mm256_loadu_si256((const __m256i *)(q8 + 64 * (k) + 32));    \
		const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, al), PF_BCAST_W(scales, 2 * (k))); \
		const __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, ah), PF_BCAST_W(scales, 2 * (k) + 1)); \
		sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));                         \
	} while (0)
		PF_Q4K_STEP(0);
		PF_Q4K_STEP(1);
		PF_Q4K_STEP(2);
		PF_Q4K_STEP(3);
#undef PF_Q4K_STEP
		acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = pf_hsum_ps(acc) - pf_hsum_ps128(acc_m);
}

PF_AVX2 static void pf_vec_dot_q6_K_avx2(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q6_K *x = w;
	const struct pf_block_q8_K *y = a;
	const int64_t nb = n / PF_QK_K;
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i m03 = _mm256_set1_epi8(0x03), m0c = _mm256_set1_epi8(0x0c);
	const __m256i m30 = _mm256_set1_epi8(0x30), mc0 = _mm256_set1_epi8((char)0xc0);
	__m256 acc = _mm256_setzero_ps();

	for (int64_t i = 0; i < nb; i++) {
		const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);
		const float d = y[i].d * F16(x[i].d);

		/* the offset: Σ_g sc_g·Σ(q6-32)·a = Σ_g sc_g·Σq6·a - 32·Σ_g sc_g·bsum_g */
		const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
		__m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(bs, _mm256_cvtepi8_epi16(sc8)), 5);
		sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);

		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
			const int8_t *q8 = y[i].qs + 128 * h;
			const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
			const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
			const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
			/* q6 = low nibble | 2 high bits << 4, unsigned 0..63 */
			const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m03), 4));
			const __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m0c), 2));
			const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
			const __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_srli_epi16(_mm256_and_si256(hb, mc0), 2));
			/* each 32 elements span two groups of 16: scales [g x8 | g+1 x8] */
#define PF_Q6K_SC(g) _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, _mm_set_epi64x(0x0101010101010101LL * ((g) + 1), 0x0101010101010101LL * (g))))
			const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(q8 + 0))), PF_Q6K_SC(8 * h + 0));
			const __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(q2, _mm256_loadu_si256((const __m256i *)(q8 + 32))), PF_Q6K_SC(8 * h + 2));
			const __m256i p3 = _mm256_madd_epi16(_mm256_maddubs_epi16(q3, _mm256_loadu_si256((const __m256i *)(q8 + 64))), PF_Q6K_SC(8 * h + 4));
			const __m256i p4 = _mm256_madd_epi16(_mm256_maddubs_epi16(q4, _mm256_loadu_si256((const __m256i *)(q8 + 96))), PF_Q6K_SC(8 * h + 6));
#undef PF_Q6K_SC
			sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_add_epi32(p1, p2), _mm256_add_epi32(p3, p4)));
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = pf_hsum_ps(acc);
}

PF_AVX2 static void pf_vec_dot_f16_avx2(int64_t n, float *s, const void *w, const void *a)
{
	const uint16_t *x = w, *y = a;
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	__m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
	int64_t j = 0;
	float tail = 0.0f;

#define PF_LD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
	for (; j + 32 <= n; j += 32) {
		acc0 = _mm256_fmadd_ps(PF_LD(x + j), PF_LD(y + j), acc0);
		acc1 = _mm256_fmadd_ps(PF_LD(x + j + 8), PF_LD(y + j + 8), acc1);
		acc2 = _mm256_fmadd_ps(PF_LD(x + j + 16), PF_LD(y + j + 16), acc2);
		acc3 = _mm256_fmadd_ps(PF_LD(x + j + 24), PF_LD(y + j + 24), acc3);
	}
	for (; j + 8 <= n; j += 8)
		acc0 = _mm256_fmadd_ps(PF_LD(x + j), PF_LD(y + j), acc0);
#undef PF_LD
	for (; j < n; j++)
		tail = fmaf(F16(x[j]), F16(y[j]), tail);
	*s = pf_hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))) + tail;
}

PF_AVX2 static void pf_vec_dot_bf16_avx2(int64_t n, float *s, const void *w, const void *a)
{
	const uint16_t *x = w;
	const float *y = a;
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	__m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
	int64_t j = 0;
	float tail = 0.0f;

#define PF_LD(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
	for (; j + 32 <= n; j += 32) {
		acc0 = _mm256_fmadd_ps(PF_LD(x + j), _mm256_loadu_ps(y + j), acc0);
		acc1 = _mm256_fmadd_ps(PF_LD(x + j + 8), _mm256_loadu_ps(y + j + 8), acc1);
		acc2 = _mm256_fmadd_ps(PF_LD(x + j + 16), _mm256_loadu_ps(y + j + 16), acc2);
		acc3 = _mm256_fmadd_ps(PF_LD(x + j + 24), _mm256_loadu_ps(y + j + 24), acc3);
	}
	for (; j + 8 <= n; j += 8)
		acc0 = _mm256_fmadd_ps(PF_LD(x + j), _mm256_loadu_ps(y + j), acc0);
#undef PF_LD
	for (; j < n; j++)
		tail = fmaf(pf_bf16_to_f32(x[j]), y[j], tail);
	*s = pf_hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))) + tail;
}

PF_AVX2 static void pf_vec_dot_f32_avx2(int64_t n, float *s, const void *w, const void *a)
{
	const float *x = w, *y = a;
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	__m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
	int64_t j = 0;
	float tail = 0.0f;

	for (; j + 32 <= n; j += 32) {
		acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j), acc0);
		acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8), _mm256_loadu_ps(y + j + 8), acc1);
		acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 16), _mm256_loadu_ps(y + j + 16), acc2);
		acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 24), _mm256_loadu_ps(y + j + 24), acc3);
	}
	for (; j + 8 <= n; j += 8)
		acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j), acc0);
	for (; j < n; j++)
		tail = fmaf(x[j], y[j], tail);
	*s = pf_hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))) + tail;
}

/* ---- four weight rows at a time ---------------------------------------- */
/*
 * The activation block is loaded, its scale converted (and for Q4_0 its 8·Σa
 * formed) once for four weight rows.  Each row keeps the accumulators and
 * the order of operations of the one-row kernel above (Q4_0: block i into
 * acc[i&1], an odd last block into acc0, hsum(acc0 + acc1) at the end; Q4_1
 * and Q8_0: one accumulator, as llama.cpp), so the results are bit-identical
 * to it.
 */

#define PF_ROWS4(T, w, ws)                                                                  \
	const T *x0 = (const T *)(w), *x1 = (const T *)((const char *)(w) + (ws));           \
	const T *x2 = (const T *)((const char *)(w) + 2 * (ws));                             \
	const T *x3 = (const T *)((const char *)(w) + 3 * (ws))

PF_AVX2 static void pf_vec_dot_4x_q4_0_avx2(int64_t n, float *s, const void *w, size_t ws, const void *a)
{
	PF_ROWS4(struct pf_block_q4_0, w, ws);
	const struct pf_block_q8_0 *y = a;
	const int64_t nb = n / PF_QK;
	const __m256i ones = _mm256_set1_epi16(1), eights = _mm256_set1_epi8(8);
	__m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();
	__m256 a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps(), a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();

#define PF_STEP(x, acc, i, av, a8, da)                                                                     \
	do {                                                                                               \
		const __m256i p_ = _mm256_sub_epi16(_mm256_maddubs_epi16(pf_nibbles32((x)[i].qs), (av)), (a8)); \
		acc = _mm256_fmadd_ps(_mm256_set1_ps(F16((x)[i].d) * (da)),                                \
				      _mm256_cvtepi32_ps(_mm256_madd_epi16(p_, ones)), acc);                 \
	} while (0)
	int64_t i = 0;
	for (; i + 2 <= nb; i += 2) {
		const __m256i av0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i av1 = _mm256_loadu_si256((const __m256i *)y[i + 1].qs);
		const __m256i a80 = _mm256_maddubs_epi16(eights, av0), a81 = _mm256_maddubs_epi16(eights, av1);
		const float da0 = F16(y[i].d), da1 = F16(y[i + 1].d);
		PF_STEP(x0, a00, i, av0, a80, da0);
		PF_STEP(x1, a10, i, av0, a80, da0);
		PF_STEP(x2, a20, i, av0, a80, da0);
		PF_STEP(x3, a30, i, av0, a80, da0);
		PF_STEP(x0, a01, i + 1, av1, a81, da1);
		PF_STEP(x1, a11, i + 1, av1, a81, da1);
		PF_STEP(x2, a21, i + 1, av1, a81, da1);
		PF_STEP(x3, a31, i + 1, av1, a81, da1);
	}
	if (i < nb) {
		const __m256i av0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i a80 = _mm256_maddubs_epi16(eights, av0);
		const float da0 = F16(y[i].d);
		PF_STEP(x0, a00, i, av0, a80, da0);
		PF_STEP(x1, a10, i, av0, a80, da0);
		PF_STEP(x2, a20, i, av0, a80, da0);
		PF_STEP(x3, a30, i, av0, a80, da0);
	}
#undef PF_STEP
	s[0] = pf_hsum_ps(_mm256_add_ps(a00, a01));
	s[1] = pf_hsum_ps(_mm256_add_ps(a10, a11));
	s[2] = pf_hsum_ps(_mm256_add_ps(a20, a21));
	s[3] = pf_hsum_ps(_mm256_add_ps(a30, a31));
}

PF_AVX2 static void pf_vec_dot_4x_q4_1_avx2(int64_t n, float *s, const void *w, size_t ws, const void *a)
{
	PF_ROWS4(struct pf_block_q4_1, w, ws);
	const struct pf_block_q8_1 *y = a;
	const int64_t nb = n / PF_QK;
	const __m256i ones = _mm256_set1_epi16(1);
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
	float m0 = 0.0f, m1 = 0.0f, m2 = 0.0f, m3 = 0.0f;

	/* the one-row kernel's order (one accumulator, m·s block by block) */
#define PF_STEP(x, acc, sm)                                                                             \
	do {                                                                                            \
		sm = fmaf(F16((x)[i].m), s0, sm);                                                           \
		acc = _mm256_fmadd_ps(_mm256_set1_ps(F16((x)[i].d) * da0),                              \
				      _mm256_cvtepi32_ps(_mm256_madd_epi16(                             \
					      _mm256_maddubs_epi16(pf_nibbles32((x)[i].qs), av0), ones)), acc); \
	} while (0)
	for (int64_t i = 0; i < nb; i++) {
		const __m256i av0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const float da0 = F16(y[i].d), s0 = F16(y[i].s);
		PF_STEP(x0, a0, m0);
		PF_STEP(x1, a1, m1);
		PF_STEP(x2, a2, m2);
		PF_STEP(x3, a3, m3);
	}
#undef PF_STEP
	s[0] = pf_hsum_ps(a0) + m0;
	s[1] = pf_hsum_ps(a1) + m1;
	s[2] = pf_hsum_ps(a2) + m2;
	s[3] = pf_hsum_ps(a3) + m3;
}

PF_AVX2 static void pf_vec_dot_4x_q8_0_avx2(int64_t n, float *s, const void *w, size_t ws, const void *a)
{
	PF_ROWS4(struct pf_block_q8_0, w, ws);
	const struct pf_block_q8_0 *y = a;
	const int64_t nb = n / PF_QK;
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();

#define PF_STEP(x, acc)                                                                                     \
	acc = _mm256_fmadd_ps(_mm256_set1_ps(F16((x)[i].d) * da0),                                          \
			      _mm256_cvtepi32_ps(pf_dot_i8(_mm256_loadu_si256((const __m256i *)(x)[i].qs), av0)), acc)
	for (int64_t i = 0; i < nb; i++) {
		const __m256i av0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const float da0 = F16(y[i].d);
		PF_STEP(x0, a0);
		PF_STEP(x1, a1);
		PF_STEP(x2, a2);
		PF_STEP(x3, a3);
	}
#undef PF_STEP
	s[0] = pf_hsum_ps(a0);
	s[1] = pf_hsum_ps(a1);
	s[2] = pf_hsum_ps(a2);
	s[3] = pf_hsum_ps(a3);
}
#undef PF_ROWS4

/* ---- table --------------------------------------------------------------- */

PF_DEFINE_DOT4(pf_vec_dot_4x_q4_K_avx2, pf_vec_dot_q4_K_avx2)
PF_DEFINE_DOT4(pf_vec_dot_4x_q6_K_avx2, pf_vec_dot_q6_K_avx2)
PF_DEFINE_DOT4(pf_vec_dot_4x_f16_avx2, pf_vec_dot_f16_avx2)
PF_DEFINE_DOT4(pf_vec_dot_4x_bf16_avx2, pf_vec_dot_bf16_avx2)
PF_DEFINE_DOT4(pf_vec_dot_4x_f32_avx2, pf_vec_dot_f32_avx2)


static const struct pf_qtype_ops pf_ops_avx2[] = {
	{ PF_DT_Q4_0, PF_DT_Q8_0, pf_quantize_row_q8_0_avx2, pf_vec_dot_q4_0_avx2, pf_dequant_row_q4_0_ref, pf_vec_dot_4x_q4_0_avx2 },
	{ PF_DT_Q4_1, PF_DT_Q8_1, pf_quantize_row_q8_1_avx2, pf_vec_dot_q4_1_avx2, pf_dequant_row_q4_1_ref, pf_vec_dot_4x_q4_1_avx2 },
	{ PF_DT_Q8_0, PF_DT_Q8_0, pf_quantize_row_q8_0_avx2, pf_vec_dot_q8_0_avx2, pf_dequant_row_q8_0_ref, pf_vec_dot_4x_q8_0_avx2 },
	{ PF_DT_Q4_K, PF_DT_Q8_K, pf_quantize_row_q8_K_avx2, pf_vec_dot_q4_K_avx2, pf_dequant_row_q4_K_ref, pf_vec_dot_4x_q4_K_avx2 },
	{ PF_DT_Q6_K, PF_DT_Q8_K, pf_quantize_row_q8_K_avx2, pf_vec_dot_q6_K_avx2, pf_dequant_row_q6_K_ref, pf_vec_dot_4x_q6_K_avx2 },
	{ PF_DT_F16, PF_DT_F16, pf_quantize_row_f16_avx2, pf_vec_dot_f16_avx2, pf_dequant_row_f16_ref, pf_vec_dot_4x_f16_avx2 },
	{ PF_DT_BF16, PF_DT_F32, pf_quantize_row_f32_ref, pf_vec_dot_bf16_avx2, pf_dequant_row_bf16_ref, pf_vec_dot_4x_bf16_avx2 },
	{ PF_DT_F32, PF_DT_F32, pf_quantize_row_f32_ref, pf_vec_dot_f32_avx2, pf_dequant_row_f32_ref, pf_vec_dot_4x_f32_avx2 },
};

const struct pf_qtype_ops *pf_quant_ops_avx2(uint32_t wtype)
{
	for (size_t i = 0; i < sizeof(pf_ops_avx2) / sizeof(pf_ops_avx2[0]); i++)
		if (pf_ops_avx2[i].wtype == wtype)
			return &pf_ops_avx2[i];
	return NULL;
}

#else
typedef int pf_quant_avx2_empty; /* keeps the translation unit non-empty */
#endif
