/*
 * quant_avx512.c — AVX-512 (F, BW, VL) + VNNI kernels.
 *
 * Same contract as quant_avx2.c.  The 32-element formats put two blocks in
 * one 512-bit register and use vpdpbusd (u8 x s8 -> int32, four products a
 * lane) in place of maddubs + madd; each block's 8 int32 lanes are scaled by
 * that block's d in one FMA.  The K formats keep maddubs (the scale groups
 * are 16 or 32 elements) and fold the int16 -> int32 widening and the
 * sub-block scale into one vpdpwssd.  There is no vpsignb at 512 bits, so
 * signed x signed (Q8_0) moves x's sign onto the activation with a masked
 * subtract.  Activation quantizers are the AVX2 ones (bit-identical output).
 */
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"

#if PF_QUANT_X86

#include <immintrin.h>

/* test_quant.c compiles this file a second time over an emulation of the
 * AVX-512 intrinsics, with its own PF_AVX512, to run it on CPUs without them */
#ifndef PF_AVX512
#define PF_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#endif

#define F16(h) _cvtsh_ss(h)

/* zmm float [d0 x8 | d1 x8] */
PF_AVX512 static inline __m512 pf_scale2(float d0, float d1)
{
	return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

/* Two blocks' 16 nibble bytes -> [b0 lo | b0 hi | b1 lo | b1 hi], 0..15 each. */
PF_AVX512 static inline __m512i pf_nibbles64(const uint8_t *p0, const uint8_t *p1)
{
	const __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p0)),
						  _mm_loadu_si128((const __m128i *)p1), 1);
	__m512i z = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(t));
	z = _mm512_srlv_epi64(z, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
	return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

/* Two blocks' 32 activation bytes side by side. */
PF_AVX512 static inline __m512i pf_load2x32(const int8_t *p0, const int8_t *p1)
{
	return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
				  _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* One block with 256-bit VNNI, for odd block counts. */
PF_AVX512 static inline __m256i pf_nibbles32_512(const uint8_t *p)
{
	const __m128i q = _mm_loadu_si128((const __m128i *)p);
	return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f));
}

/* ---- 32-element formats -------------------------------------------------- */

PF_AVX512 static void pf_vec_dot_q4_0_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_0 *x = w;
	const struct pf_block_q8_0 *y = a;
	const int64_t nb = n / PF_QK;
	const __m512i eights = _mm512_set1_epi8(8);
	__m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
	int64_t i = 0;

	/* Σ(q-8)·a = Σq·a - Σ8·a, each with one vpdpbusd */
	for (; i + 4 <= nb; i += 4) {
		const __m512i q0 = pf_nibbles64(x[i].qs, x[i + 1].qs);
		const __m512i q1 = pf_nibbles64(x[i + 2].qs, x[i + 3].qs);
		const __m512i a0 = pf_load2x32(y[i].qs, y[i + 1].qs);
		const __m512i a1 = pf_load2x32(y[i + 2].qs, y[i + 3].qs);
		const __m512i z = _mm512_setzero_si512();
		const __m512i s0 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, q0, a0), _mm512_dpbusd_epi32(z, eights, a0));
		const __m512i s1 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, q1, a1), _mm512_dpbusd_epi32(z, eights, a1));
		const __m512 d0 = pf_scale2(F16(x[i].d) * F16(y[i].d), F16(x[i + 1].d) * F16(y[i + 1].d));
		const __m512 d1 = pf_scale2(F16(x[i + 2].d) * F16(y[i + 2].d), F16(x[i + 3].d) * F16(y[i + 3].d));
		acc0 = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(s0), acc0);
		acc1 = _mm512_fmadd_ps(d1, _mm512_cvtepi32_ps(s1), acc1);
	}
	if (i + 2 <= nb) {
		const __m512i q0 = pf_nibbles64(x[i].qs, x[i + 1].qs);
		const __m512i a0 = pf_load2x32(y[i].qs, y[i + 1].qs);
		const __m512i z = _mm512_setzero_si512();
		const __m512i s0 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, q0, a0), _mm512_dpbusd_epi32(z, eights, a0));
		const __m512 d0 = pf_scale2(F16(x[i].d) * F16(y[i].d), F16(x[i + 1].d) * F16(y[i + 1].d));
		acc0 = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(s0), acc0);
		i += 2;
	}
	acc0 = _mm512_add_ps(acc0, acc1);
	if (i < nb) {
		const __m256i q0 = pf_nibbles32_512(x[i].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i z = _mm256_setzero_si256();
		const __m256i s0 = _mm256_sub_epi32(_mm256_dpbusd_epi32(z, q0, a0),
						    _mm256_dpbusd_epi32(z, _mm256_set1_epi8(8), a0));
		const __m256 d0 = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		const __m256 t = _mm256_mul_ps(d0, _mm256_cvtepi32_ps(s0));
		acc0 = _mm512_add_ps(acc0, _mm512_castpd_ps(_mm512_insertf64x4(_mm512_setzero_pd(), _mm256_castps_pd(t), 0)));
	}
	*s = _mm512_reduce_add_ps(acc0);
}

PF_AVX512 static void pf_vec_dot_q4_1_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_1 *x = w;
	const struct pf_block_q8_1 *y = a;
	const int64_t nb = n / PF_QK;
	__m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
	float summ = 0.0f;
	int64_t i = 0;

	for (; i + 4 <= nb; i += 4) {
		const __m512i q0 = pf_nibbles64(x[i].qs, x[i + 1].qs);
		const __m512i q1 = pf_nibbles64(x[i + 2].qs, x[i + 3].qs);
		const __m512i a0 = pf_load2x32(y[i].qs, y[i + 1].qs);
		const __m512i a1 = pf_load2x32(y[i + 2].qs, y[i + 3].qs);
		const __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q0, a0);
		const __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q1, a1);
		const __m512 d0 = pf_scale2(F16(x[i].d) * F16(y[i].d), F16(x[i + 1].d) * F16(y[i + 1].d));
		const __m512 d1 = pf_scale2(F16(x[i + 2].d) * F16(y[i + 2].d), F16(x[i + 3].d) * F16(y[i + 3].d));
		summ += F16(x[i].m) * F16(y[i].s) + F16(x[i + 1].m) * F16(y[i + 1].s);
		summ += F16(x[i + 2].m) * F16(y[i + 2].s) + F16(x[i + 3].m) * F16(y[i + 3].s);
		acc0 = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(s0), acc0);
		acc1 = _mm512_fmadd_ps(d1, _mm512_cvtepi32_ps(s1), acc1);
	}
	if (i + 2 <= nb) {
		const __m512i q0 = pf_nibbles64(x[i].qs, x[i + 1].qs);
		const __m512i a0 = pf_load2x32(y[i].qs, y[i + 1].qs);
		const __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q0, a0);
		const __m512 d0 = pf_scale2(F16(x[i].d) * F16(y[i].d), F16(x[i + 1].d) * F16(y[i + 1].d));
		summ += F16(x[i].m) * F16(y[i].s) + F16(x[i + 1].m) * F16(y[i + 1].s);
		acc0 = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(s0), acc0);
		i += 2;
	}
	acc0 = _mm512_add_ps(acc0, acc1);
	if (i < nb) {
		const __m256i q0 = pf_nibbles32_512(x[i].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i s0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q0, a0);
		const __m256 t = _mm256_mul_ps(_mm256_set1_ps(F16(x[i].d) * F16(y[i].d)), _mm256_cvtepi32_ps(s0));
		summ += F16(x[i].m) * F16(y[i].s);
		acc0 = _mm512_add_ps(acc0, _mm512_castpd_ps(_mm512_insertf64x4(_mm512_setzero_pd(), _mm256_castps_pd(t), 0)));
	}
	*s = _mm512_reduce_add_ps(acc0) + summ;
}

/* Σ x·y of signed bytes per 4-byte group: vpdpbusd wants x unsigned, so use
 * |x| and give y the sign of x (y is never -128; x = -128 gives |x| = 128 as
 * u8, still right). */
PF_AVX512 static inline __m512i pf_dot_i8_512(__m512i x, __m512i y)
{
	const __m512i sy = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x), _mm512_setzero_si512(), y);
	return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x), sy);
}

PF_AVX512 static void pf_vec_dot_q8_0_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q8_0 *x = w;
	const struct pf_block_q8_0 *y = a;
	const int64_t nb = n / PF_QK;
	__m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
	int64_t i = 0;

	for (; i + 4 <= nb; i += 4) {
		const __m512i x0 = pf_load2x32(x[i].qs, x[i + 1].qs);
		const __m512i x1 = pf_load2x32(x[i + 2].qs, x[i + 3].qs);
		const __m512i a0 = pf_load2x32(y[i].qs, y[i + 1].qs);
		const __m512i a1 = pf_load2x32(y[i + 2].qs, y[i + 3].qs);
		const __m512 d0 = pf_scale2(F16(x[i].d) * F16(y[i].d), F16(x[i + 1].d) * F16(y[i + 1].d));
		const __m512 d1 = pf_scale2(F16(x[i + 2].d) * F16(y[i + 2].d), F16(x[i + 3].d) * F16(y[i + 3].d));
		acc0 = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(pf_dot_i8_512(x0, a0)), acc0);
		acc1 = _mm512_fmadd_ps(d1, _mm512_cvtepi32_ps(pf_dot_i8_512(x1, a1)), acc1);
	}
	if (i + 2 <= nb) {
		const __m512i x0 = pf_load2x32(x[i].qs, x[i + 1].qs);
		const __m512i a0 = pf_load2x32(y[i].qs, y[i + 1].qs);
		const __m512 d0 = pf_scale2(F16(x[i].d) * F16(y[i].d), F16(x[i + 1].d) * F16(y[i + 1].d));
		acc0 = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(pf_dot_i8_512(x0, a0)), acc0);
		i += 2;
	}
	acc0 = _mm512_add_ps(acc0, acc1);
	if (i < nb) {
		const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[i].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i s0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x0, x0),
						       _mm256_sign_epi8(a0, x0));
		const __m256 t = _mm256_mul_ps(_mm256_set1_ps(F16(x[i].d) * F16(y[i].d)), _mm256_cvtepi32_ps(s0));
		acc0 = _mm512_add_ps(acc0, _mm512_castpd_ps(_mm512_insertf64x4(_mm512_setzero_pd(), _mm256_castps_pd(t), 0)));
	}
	*s = _mm512_reduce_add_ps(acc0);
}

/* ---- K formats ----------------------------------------------------------- */

PF_AVX512 static void pf_vec_dot_q4_K_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_K *x = w;
	const struct pf_block_q8_K *y = a;
	const int64_t nb = n / PF_QK_K;
	const __m512i m4 = _mm512_set1_epi8(0x0f);
	/* pshufb masks: int16 lanes of the low 256 bits = word 2k of each
	 * 128-bit lane, of the high 256 bits = word 2k+1 */
#define PF_W(j) _mm512_set1_epi16((short)(0x0100 * (2 * (j) + 1) + 2 * (j)))
#define PF_MASK(k) _mm512_mask_blend_epi32(0xff00, PF_W(2 * (k)), PF_W(2 * (k) + 1))
	const __m512i sh0 = PF_MASK(0), sh1 = PF_MASK(1), sh2 = PF_MASK(2), sh3 = PF_MASK(3);
#undef PF_MASK
#undef PF_W
	__m512 acc = _mm512_setzero_ps();
	__m128 acc_m = _mm_setzero_ps();

	for (int64_t i = 0; i < nb; i++) {
		uint8_t scm[16]; /* 8 scales, 8 mins */
		pf_q4k_unpack_scales(x[i].scales, scm, scm + 8);
		const __m256i sm16 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)scm));
		const __m512i scales = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm16));
		const float d = y[i].d * F16(x[i].d);
		const float dmin = y[i].d * F16(x[i].dmin);

		const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
		const __m128i bs2 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
		const __m128i pm = _mm_madd_epi16(_mm256_extracti128_si256(sm16, 1), bs2);
		acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(pm), acc_m);

		const uint8_t *q4 = x[i].qs;
		const int8_t *q8 = y[i].qs;
		__m512i sumi = _mm512_setzero_si512();
		/* 32 bytes of nibbles = sub-blocks 2k (low) and 2k+1 (high), which
		 * meet 64 contiguous activation bytes */
#define PF_Q4K_STEP(k, sh)                                                                         \
	do {                                                                                       \
		const __m256i qb = _mm256_loadu_si256((const __m256i *)(q4 + 32 * (k)));           \
		const __m512i qz = _mm512_and_si512(                                               \
			_mm512_inserti64x4(_mm512_castsi256_si512(qb), _mm256_srli_epi16(qb, 4), 1), m4); \
		const __m512i az = _mm512_loadu_si512((const void *)(q8 + 64 * (k)));              \
		sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(qz, az),                     \
					   _mm512_shuffle_epi8(scales, (sh)));                    \
	} while (0)
		PF_Q4K_STEP(0, sh0);
		PF_Q4K_STEP(1, sh1);
		PF_Q4K_STEP(2, sh2);
		PF_Q4K_STEP(3, sh3);
#undef PF_Q4K_STEP
		acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
	}
	acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
	acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
	*s = _mm512_reduce_add_ps(acc) - _mm_cvtss_f32(acc_m);
}

PF_AVX512 static void pf_vec_dot_q6_K_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q6_K *x = w;
	const struct pf_block_q8_K *y = a;
	const int64_t nb = n / PF_QK_K;
	const __m512i m4 = _mm512_set1_epi8(0x0f);
	const __m512i m03 = _mm512_set1_epi8(0x03), m30 = _mm512_set1_epi8(0x30);
	/* pshufb masks: every byte of 128-bit lane i = scale index base+i */
#define PF_MASK(b) _mm512_set_epi64(0x0101010101010101LL * ((b) + 3), 0x0101010101010101LL * ((b) + 3), \
				    0x0101010101010101LL * ((b) + 2), 0x0101010101010101LL * ((b) + 2), \
				    0x0101010101010101LL * ((b) + 1), 0x0101010101010101LL * ((b) + 1), \
				    0x0101010101010101LL * (b), 0x0101010101010101LL * (b))
	const __m512i sh0 = PF_MASK(0), sh4 = PF_MASK(4), sh8 = PF_MASK(8), sh12 = PF_MASK(12);
#undef PF_MASK
	__m512 acc = _mm512_setzero_ps();

	for (int64_t i = 0; i < nb; i++) {
		const __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);
		const __m512i scb = _mm512_broadcast_i32x4(sc8);
		const float d = y[i].d * F16(x[i].d);

		/* -32·Σ_g sc_g·bsum_g starts the int32 sum */
		const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
		const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, _mm256_cvtepi8_epi16(sc8)), 5);
		__m512i sumi = _mm512_inserti64x4(_mm512_setzero_si512(),
						  _mm256_sub_epi32(_mm256_setzero_si256(), off), 0);

		/* int16 lanes of 128-bit lane i = sc[base+i]: the byte in both
		 * halves of the word, then an arithmetic shift sign-extends it */
#define PF_SC(sh) _mm512_srai_epi16(_mm512_shuffle_epi8(scb, (sh)), 8)
		for (int h = 0; h < 2; h++) {
			const __m512i l = _mm512_loadu_si512((const void *)(x[i].ql + 64 * h));
			const __m256i hb = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
			const __m512i hh = _mm512_inserti64x4(_mm512_castsi256_si512(hb), _mm256_srli_epi16(hb, 2), 1);
			/* elements 0..63 of the half: low nibbles + bits (0,1) | (2,3)
			 * elements 64..127: high nibbles + bits (4,5) | (6,7) */
			const __m512i qa = _mm512_or_si512(_mm512_and_si512(l, m4),
							   _mm512_slli_epi16(_mm512_and_si512(hh, m03), 4));
			const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
							   _mm512_and_si512(hh, m30));
			const __m512i aa = _mm512_loadu_si512((const void *)(y[i].qs + 128 * h));
			const __m512i ab = _mm512_loadu_si512((const void *)(y[i].qs + 128 * h + 64));
			sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(qa, aa), PF_SC(h ? sh8 : sh0));
			sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(qb, ab), PF_SC(h ? sh12 : sh4));
		}
#undef PF_SC
		acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
	}
	*s = _mm512_reduce_add_ps(acc);
}

/* ---- float formats ------------------------------------------------------- */

PF_AVX512 static void pf_vec_dot_f32_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const float *x = w, *y = a;
	__m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
	__m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
	int64_t j = 0;

	for (; j + 64 <= n; j += 64) {
		acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(y + j), acc0);
		acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j + 16), _mm512_loadu_ps(y + j + 16), acc1);
		acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j + 32), _mm512_loadu_ps(y + j + 32), acc2);
		acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j + 48), _mm512_loadu_ps(y + j + 48), acc3);
	}
	for (; j + 16 <= n; j += 16)
		acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(y + j), acc0);
	if (j < n) {
		const __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
		acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + j), _mm512_maskz_loadu_ps(k, y + j), acc1);
	}
	*s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

PF_AVX512 static void pf_vec_dot_f16_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const uint16_t *x = w, *y = a;
	__m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
	__m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
	int64_t j = 0;

#define PF_LD(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
	for (; j + 64 <= n; j += 64) {
		acc0 = _mm512_fmadd_ps(PF_LD(x + j), PF_LD(y + j), acc0);
		acc1 = _mm512_fmadd_ps(PF_LD(x + j + 16), PF_LD(y + j + 16), acc1);
		acc2 = _mm512_fmadd_ps(PF_LD(x + j + 32), PF_LD(y + j + 32), acc2);
		acc3 = _mm512_fmadd_ps(PF_LD(x + j + 48), PF_LD(y + j + 48), acc3);
	}
	for (; j + 16 <= n; j += 16)
		acc0 = _mm512_fmadd_ps(PF_LD(x + j), PF_LD(y + j), acc0);
#undef PF_LD
	if (j < n) {
		const __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
		const __m512 xt = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, x + j));
		const __m512 yt = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, y + j));
		acc1 = _mm512_fmadd_ps(xt, yt, acc1);
	}
	*s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

PF_AVX512 static void pf_vec_dot_bf16_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const uint16_t *x = w;
	const float *y = a;
	__m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
	int64_t j = 0;

#define PF_CV(v) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16))
	for (; j + 32 <= n; j += 32) {
		acc0 = _mm512_fmadd_ps(PF_CV(_mm256_loadu_si256((const __m256i *)(x + j))), _mm512_loadu_ps(y + j), acc0);
		acc1 = _mm512_fmadd_ps(PF_CV(_mm256_loadu_si256((const __m256i *)(x + j + 16))), _mm512_loadu_ps(y + j + 16), acc1);
	}
	for (; j < n; j += 16) {
		const int64_t r = n - j < 16 ? n - j : 16;
		const __mmask16 k = (__mmask16)((1u << r) - 1);
		acc0 = _mm512_fmadd_ps(PF_CV(_mm256_maskz_loadu_epi16(k, x + j)), _mm512_maskz_loadu_ps(k, y + j), acc0);
	}
#undef PF_CV
	*s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* ---- table --------------------------------------------------------------- */

PF_DEFINE_DOT4(pf_vec_dot_4x_q4_0_avx512, pf_vec_dot_q4_0_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_q4_1_avx512, pf_vec_dot_q4_1_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_q8_0_avx512, pf_vec_dot_q8_0_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_q4_K_avx512, pf_vec_dot_q4_K_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_q6_K_avx512, pf_vec_dot_q6_K_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_f16_avx512, pf_vec_dot_f16_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_bf16_avx512, pf_vec_dot_bf16_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_f32_avx512, pf_vec_dot_f32_avx512)


static const struct pf_qtype_ops pf_ops_avx512[] = {
	{ PF_DT_Q4_0, PF_DT_Q8_0, pf_quantize_row_q8_0_avx2, pf_vec_dot_q4_0_avx512, pf_dequant_row_q4_0_ref, pf_vec_dot_4x_q4_0_avx512 },
	{ PF_DT_Q4_1, PF_DT_Q8_1, pf_quantize_row_q8_1_avx2, pf_vec_dot_q4_1_avx512, pf_dequant_row_q4_1_ref, pf_vec_dot_4x_q4_1_avx512 },
	{ PF_DT_Q8_0, PF_DT_Q8_0, pf_quantize_row_q8_0_avx2, pf_vec_dot_q8_0_avx512, pf_dequant_row_q8_0_ref, pf_vec_dot_4x_q8_0_avx512 },
	{ PF_DT_Q4_K, PF_DT_Q8_K, pf_quantize_row_q8_K_avx2, pf_vec_dot_q4_K_avx512, pf_dequant_row_q4_K_ref, pf_vec_dot_4x_q4_K_avx512 },
	{ PF_DT_Q6_K, PF_DT_Q8_K, pf_quantize_row_q8_K_avx2, pf_vec_dot_q6_K_avx512, pf_dequant_row_q6_K_ref, pf_vec_dot_4x_q6_K_avx512 },
	{ PF_DT_F16, PF_DT_F16, pf_quantize_row_f16_avx2, pf_vec_dot_f16_avx512, pf_dequant_row_f16_ref, pf_vec_dot_4x_f16_avx512 },
	{ PF_DT_BF16, PF_DT_F32, pf_quantize_row_f32_ref, pf_vec_dot_bf16_avx512, pf_dequant_row_bf16_ref, pf_vec_dot_4x_bf16_avx512 },
	{ PF_DT_F32, PF_DT_F32, pf_quantize_row_f32_ref, pf_vec_dot_f32_avx512, pf_dequant_row_f32_ref, pf_vec_dot_4x_f32_avx512 },
};

const struct pf_qtype_ops *pf_quant_ops_avx512(uint32_t wtype)
{
	for (size_t i = 0; i < sizeof(pf_ops_avx512) / sizeof(pf_ops_avx512[0]); i++)
		if (pf_ops_avx512[i].wtype == wtype)
			return &pf_ops_avx512[i];
	return NULL;
}

#else
typedef int pf_quant_avx512_empty; /* keeps the translation unit non-empty */
#endif
