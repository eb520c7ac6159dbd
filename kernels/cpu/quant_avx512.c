/*
 * quant_avx512.c — AVX-512 (F, BW, VL) + VNNI kernels.
 *
 * Same contract as quant_avx2.c, and the same bits: every kernel sums in the
 * canonical order of quant.h.  The integer work is wider — the 32-element
 * formats put two blocks in one 512-bit register and use vpdpbusd (u8 x s8
 * -> int32, four products a lane) in place of maddubs + madd; the K formats
 * fold the int16 -> int32 widening and the sub-block scale into one
 * vpdpwssd — but integer sums are exact, so only the float steps are pinned:
 * each block's eight int32 lanes (elements 4l..4l+3, as in an AVX2
 * register) meet the block's scale in one 256-bit FMA on the accumulator
 * AVX2 would use, block after block.  In the K formats the 16 int32 lanes of
 * a super-block are first added in pairs (lane l + lane l+8: exactly AVX2's
 * lane l).  There is no vpsignb at 512 bits, so signed x signed (Q8_0) moves
 * x's sign onto the activation with a masked subtract.  The float formats
 * and the activation quantizers are the AVX2 ones.
 */
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"

#if PF_QUANT_X86

#include <immintrin.h>
#include <math.h>

/* quant_avx512_emu.c compiles this file a second time over an emulation of
 * the AVX-512 intrinsics, with its own PF_AVX512, to run it on CPUs without
 * them */
#ifndef PF_AVX512
#define PF_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#endif

#define F16(h) _cvtsh_ss(h)

/* The canonical lane fold ((0+4)+(2+6)) + ((1+5)+(3+7)), as quant_avx2.c. */
PF_AVX512 static inline float pf_hsum8_512(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
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

/* The int32 lanes of the first and the second block of a pair, as floats. */
PF_AVX512 static inline __m256 pf_lo_ps(__m512i v)
{
	return _mm256_cvtepi32_ps(_mm512_castsi512_si256(v));
}
PF_AVX512 static inline __m256 pf_hi_ps(__m512i v)
{
	return _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(v, 1));
}

/* ---- 32-element formats -------------------------------------------------- */

/* Σ(q-8)·a = Σq·a - Σ8·a, each with one vpdpbusd (exact in int32) */
PF_AVX512 static inline __m512i pf_q4_0_pair(const struct pf_block_q4_0 *x, const struct pf_block_q8_0 *y)
{
	const __m512i q = pf_nibbles64(x[0].qs, x[1].qs);
	const __m512i a = pf_load2x32(y[0].qs, y[1].qs);
	const __m512i z = _mm512_setzero_si512();
	return _mm512_sub_epi32(_mm512_dpbusd_epi32(z, q, a), _mm512_dpbusd_epi32(z, _mm512_set1_epi8(8), a));
}

PF_AVX512 static void pf_vec_dot_q4_0_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_0 *x = w;
	const struct pf_block_q8_0 *y = a;
	const int64_t nb = n / PF_QK;
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	int64_t i = 0;

	/* the canonical order: block i into acc[i % 2] */
	for (; i + 2 <= nb; i += 2) {
		const __m512i p = pf_q4_0_pair(x + i, y + i);
		acc0 = _mm256_fmadd_ps(_mm256_set1_ps(F16(x[i].d) * F16(y[i].d)), pf_lo_ps(p), acc0);
		acc1 = _mm256_fmadd_ps(_mm256_set1_ps(F16(x[i + 1].d) * F16(y[i + 1].d)), pf_hi_ps(p), acc1);
	}
	if (i < nb) {
		const __m256i q0 = pf_nibbles32_512(x[i].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i z = _mm256_setzero_si256();
		const __m256i s0 = _mm256_sub_epi32(_mm256_dpbusd_epi32(z, q0, a0),
						    _mm256_dpbusd_epi32(z, _mm256_set1_epi8(8), a0));
		acc0 = _mm256_fmadd_ps(_mm256_set1_ps(F16(x[i].d) * F16(y[i].d)), _mm256_cvtepi32_ps(s0), acc0);
	}
	*s = pf_hsum8_512(_mm256_add_ps(acc0, acc1));
}

PF_AVX512 static void pf_vec_dot_q4_1_avx512(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_1 *x = w;
	const struct pf_block_q8_1 *y = a;
	const int64_t nb = n / PF_QK;
	__m256 acc = _mm256_setzero_ps();
	float summ = 0.0f;
	int64_t i = 0;

	/* the canonical order: one accumulator, m·s fused block by block */
	for (; i + 2 <= nb; i += 2) {
		const __m512i q = pf_nibbles64(x[i].qs, x[i + 1].qs);
		const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, pf_load2x32(y[i].qs, y[i + 1].qs));
		summ = fmaf(F16(x[i].m), F16(y[i].s), summ);
		acc = _mm256_fmadd_ps(_mm256_set1_ps(F16(x[i].d) * F16(y[i].d)), pf_lo_ps(p), acc);
		summ = fmaf(F16(x[i + 1].m), F16(y[i + 1].s), summ);
		acc = _mm256_fmadd_ps(_mm256_set1_ps(F16(x[i + 1].d) * F16(y[i + 1].d)), pf_hi_ps(p), acc);
	}
	if (i < nb) {
		const __m256i q0 = pf_nibbles32_512(x[i].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i s0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q0, a0);
		summ = fmaf(F16(x[i].m), F16(y[i].s), summ);
		acc = _mm256_fmadd_ps(_mm256_set1_ps(F16(x[i].d) * F16(y[i].d)), _mm256_cvtepi32_ps(s0), acc);
	}
	*s = pf_hsum8_512(acc) + summ;
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
	__m256 acc = _mm256_setzero_ps();
	int64_t i = 0;

	/* the canonical order: one accumulator, block by block */
	for (; i + 2 <= nb; i += 2) {
		const __m512i p = pf_dot_i8_512(pf_load2x32(x[i].qs, x[i + 1].qs), pf_load2x32(y[i].qs, y[i + 1].qs));
		acc = _mm256_fmadd_ps(_mm256_set1_ps(F16(x[i].d) * F16(y[i].d)), pf_lo_ps(p), acc);
		acc = _mm256_fmadd_ps(_mm256_set1_ps(F16(x[i + 1].d) * F16(y[i + 1].d)), pf_hi_ps(p), acc);
	}
	if (i < nb) {
		const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[i].qs);
		const __m256i a0 = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256i s0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x0, x0),
						       _mm256_sign_epi8(a0, x0));
		acc = _mm256_fmadd_ps(_mm256_set1_ps(F16(x[i].d) * F16(y[i].d)), _mm256_cvtepi32_ps(s0), acc);
	}
	*s = pf_hsum8_512(acc);
}

/* 16 int32 lanes -> AVX2's 8: lane l + lane l+8 (exact), as floats */
PF_AVX512 static inline __m256 pf_fold16_ps(__m512i v)
{
	return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)));
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
	__m256 acc = _mm256_setzero_ps();
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
		acc = _mm256_fmadd_ps(_mm256_set1_ps(d), pf_fold16_ps(sumi), acc);
	}
	acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
	acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
	*s = pf_hsum8_512(acc) - _mm_cvtss_f32(acc_m);
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
	__m256 acc = _mm256_setzero_ps();

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
		acc = _mm256_fmadd_ps(_mm256_set1_ps(d), pf_fold16_ps(sumi), acc);
	}
	*s = pf_hsum8_512(acc);
}

/* ---- table --------------------------------------------------------------- */

PF_DEFINE_DOT4(pf_vec_dot_4x_q4_0_avx512, pf_vec_dot_q4_0_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_q4_1_avx512, pf_vec_dot_q4_1_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_q8_0_avx512, pf_vec_dot_q8_0_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_q4_K_avx512, pf_vec_dot_q4_K_avx512)
PF_DEFINE_DOT4(pf_vec_dot_4x_q6_K_avx512, pf_vec_dot_q6_K_avx512)

/* no float formats: the dispatcher falls back to AVX2's (memory-bound, and
 * wider registers would change their canonical order) */
static const struct pf_qtype_ops pf_ops_avx512[] = {
	{ PF_DT_Q4_0, PF_DT_Q8_0, pf_quantize_row_q8_0_avx2, pf_vec_dot_q4_0_avx512, pf_dequant_row_q4_0_ref, pf_vec_dot_4x_q4_0_avx512 },
	{ PF_DT_Q4_1, PF_DT_Q8_1, pf_quantize_row_q8_1_avx2, pf_vec_dot_q4_1_avx512, pf_dequant_row_q4_1_ref, pf_vec_dot_4x_q4_1_avx512 },
	{ PF_DT_Q8_0, PF_DT_Q8_0, pf_quantize_row_q8_0_avx2, pf_vec_dot_q8_0_avx512, pf_dequant_row_q8_0_ref, pf_vec_dot_4x_q8_0_avx512 },
	{ PF_DT_Q4_K, PF_DT_Q8_K, pf_quantize_row_q8_K_avx2, pf_vec_dot_q4_K_avx512, pf_dequant_row_q4_K_ref, pf_vec_dot_4x_q4_K_avx512 },
	{ PF_DT_Q6_K, PF_DT_Q8_K, pf_quantize_row_q8_K_avx2, pf_vec_dot_q6_K_avx512, pf_dequant_row_q6_K_ref, pf_vec_dot_4x_q6_K_avx512 },
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
