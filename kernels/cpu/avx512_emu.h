/*
 * avx512_emu.h — the AVX-512 intrinsics quant_avx512.c uses, re-implemented
 * in plain C (on AVX2) from their documented semantics.
 *
 * Included only by quant_avx512_emu.c, right before it includes
 * quant_avx512.c a second time: the macros below replace the __m512 types
 * and the _mm512 intrinsics with these functions, so the AVX-512 kernels'
 * lane logic (which bytes meet which, which scale lands on which lane, the
 * order of the float sums) runs on any x86-64 CPU with AVX2.  Real AVX-512
 * hardware matched this emulation bit for bit (issue 13); it is how the
 * AVX-512 path is tested bit-exact on machines that lack it (PF_ISA=avx512emu).
 * Slow: a test tool, never chosen by detection.
 */
#ifndef PF_CPU_AVX512_EMU_H
#define PF_CPU_AVX512_EMU_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <immintrin.h>

#include "kernels/cpu/quant.h"

#define PF_EMU __attribute__((target("avx2,fma,f16c")))

typedef union {
	int8_t b[64];
	uint8_t ub[64];
	int16_t w[32];
	uint16_t uw[32];
	int32_t d[16];
	int64_t q[8];
	uint64_t uq[8];
	float f[16];
} emu512;

static inline emu512 emu_zero(void)
{
	emu512 r;
	memset(&r, 0, sizeof(r));
	return r;
}

static inline emu512 emu_set1_ps(float v)
{
	emu512 r;
	for (int i = 0; i < 16; i++)
		r.f[i] = v;
	return r;
}

static inline emu512 emu_set1_epi8(char v)
{
	emu512 r;
	memset(r.b, v, 64);
	return r;
}

static inline emu512 emu_set1_epi16(short v)
{
	emu512 r;
	for (int i = 0; i < 32; i++)
		r.w[i] = v;
	return r;
}

static inline emu512 emu_setr_epi64(int64_t a0, int64_t a1, int64_t a2, int64_t a3, int64_t a4, int64_t a5,
				    int64_t a6, int64_t a7)
{
	emu512 r;
	r.q[0] = a0; r.q[1] = a1; r.q[2] = a2; r.q[3] = a3;
	r.q[4] = a4; r.q[5] = a5; r.q[6] = a6; r.q[7] = a7;
	return r;
}

static inline emu512 emu_set_epi64(int64_t a7, int64_t a6, int64_t a5, int64_t a4, int64_t a3, int64_t a2,
				   int64_t a1, int64_t a0)
{
	return emu_setr_epi64(a0, a1, a2, a3, a4, a5, a6, a7);
}

static inline emu512 emu_mask_blend32(uint16_t k, emu512 a, emu512 b)
{
	emu512 r;
	for (int i = 0; i < 16; i++)
		r.d[i] = (k >> i) & 1 ? b.d[i] : a.d[i];
	return r;
}

PF_EMU static inline emu512 emu_castsi256_si512(__m256i v)
{
	emu512 r = emu_zero(); /* undefined upper half in hardware */
	memcpy(r.b, &v, 32);
	return r;
}

PF_EMU static inline emu512 emu_insert256(emu512 a, __m256i v, int imm)
{
	memcpy(a.b + 32 * (imm & 1), &v, 32);
	return a;
}

PF_EMU static inline emu512 emu_insertf256(emu512 a, __m256d v, int imm)
{
	memcpy(a.b + 32 * (imm & 1), &v, 32);
	return a;
}

PF_EMU static inline emu512 emu_broadcast_i32x4(__m128i v)
{
	emu512 r;
	for (int i = 0; i < 4; i++)
		memcpy(r.b + 16 * i, &v, 16);
	return r;
}

static inline emu512 emu_permutexvar_epi64(emu512 idx, emu512 a)
{
	emu512 r;
	for (int i = 0; i < 8; i++)
		r.q[i] = a.q[idx.q[i] & 7];
	return r;
}

static inline emu512 emu_srlv_epi64(emu512 a, emu512 c)
{
	emu512 r;
	for (int i = 0; i < 8; i++)
		r.uq[i] = c.uq[i] > 63 ? 0 : a.uq[i] >> c.uq[i];
	return r;
}

static inline emu512 emu_and(emu512 a, emu512 b)
{
	for (int i = 0; i < 8; i++)
		a.uq[i] &= b.uq[i];
	return a;
}

static inline emu512 emu_or(emu512 a, emu512 b)
{
	for (int i = 0; i < 8; i++)
		a.uq[i] |= b.uq[i];
	return a;
}

static inline emu512 emu_sub_epi32(emu512 a, emu512 b)
{
	for (int i = 0; i < 16; i++)
		a.d[i] = (int32_t)((uint32_t)a.d[i] - (uint32_t)b.d[i]);
	return a;
}

static inline emu512 emu_mask_sub_epi8(emu512 src, uint64_t k, emu512 a, emu512 b)
{
	for (int i = 0; i < 64; i++)
		if ((k >> i) & 1)
			src.ub[i] = (uint8_t)(a.ub[i] - b.ub[i]);
	return src;
}

static inline uint64_t emu_movepi8_mask(emu512 a)
{
	uint64_t k = 0;
	for (int i = 0; i < 64; i++)
		k |= (uint64_t)(a.ub[i] >> 7) << i;
	return k;
}

static inline emu512 emu_abs_epi8(emu512 a)
{
	for (int i = 0; i < 64; i++)
		a.ub[i] = (uint8_t)(a.b[i] < 0 ? -a.b[i] : a.b[i]);
	return a;
}

static inline emu512 emu_dpbusd(emu512 src, emu512 a, emu512 b)
{
	for (int i = 0; i < 16; i++) {
		int64_t s = src.d[i];
		for (int k = 0; k < 4; k++)
			s += (int32_t)a.ub[4 * i + k] * b.b[4 * i + k];
		src.d[i] = (int32_t)(uint32_t)s;
	}
	return src;
}

static inline emu512 emu_dpwssd(emu512 src, emu512 a, emu512 b)
{
	for (int i = 0; i < 16; i++) {
		int64_t s = src.d[i] + (int64_t)a.w[2 * i] * b.w[2 * i] + (int64_t)a.w[2 * i + 1] * b.w[2 * i + 1];
		src.d[i] = (int32_t)(uint32_t)s;
	}
	return src;
}

static inline emu512 emu_maddubs(emu512 a, emu512 b)
{
	emu512 r;
	for (int i = 0; i < 32; i++) {
		int s = a.ub[2 * i] * b.b[2 * i] + a.ub[2 * i + 1] * b.b[2 * i + 1];
		r.w[i] = (int16_t)(s > 32767 ? 32767 : s < -32768 ? -32768 : s);
	}
	return r;
}

static inline emu512 emu_shuffle_epi8(emu512 a, emu512 b)
{
	emu512 r;
	for (int i = 0; i < 64; i++)
		r.ub[i] = (b.ub[i] & 0x80) ? 0 : a.ub[(i & ~15) + (b.ub[i] & 15)];
	return r;
}

static inline emu512 emu_srai_epi16(emu512 a, int n)
{
	for (int i = 0; i < 32; i++)
		a.w[i] = (int16_t)(a.w[i] >> (n > 15 ? 15 : n));
	return a;
}

static inline emu512 emu_slli_epi16(emu512 a, int n)
{
	for (int i = 0; i < 32; i++)
		a.uw[i] = n > 15 ? 0 : (uint16_t)(a.uw[i] << n);
	return a;
}

static inline emu512 emu_srli_epi16(emu512 a, int n)
{
	for (int i = 0; i < 32; i++)
		a.uw[i] = n > 15 ? 0 : (uint16_t)(a.uw[i] >> n);
	return a;
}

static inline emu512 emu_slli_epi32(emu512 a, int n)
{
	for (int i = 0; i < 16; i++)
		a.d[i] = n > 31 ? 0 : (int32_t)((uint32_t)a.d[i] << n);
	return a;
}

static inline emu512 emu_loadu(const void *p)
{
	emu512 r;
	memcpy(&r, p, 64);
	return r;
}

static inline emu512 emu_maskz_loadu_ps(uint16_t k, const float *p)
{
	emu512 r = emu_zero();
	for (int i = 0; i < 16; i++)
		if ((k >> i) & 1)
			r.f[i] = p[i];
	return r;
}

PF_EMU static inline __m256i emu_mm256_maskz_loadu_epi16(uint16_t k, const void *p)
{
	uint16_t v[16] = { 0 };
	__m256i r;
	for (int i = 0; i < 16; i++)
		if ((k >> i) & 1)
			memcpy(&v[i], (const uint8_t *)p + 2 * i, 2);
	memcpy(&r, v, 32);
	return r;
}

PF_EMU static inline __m256i emu_mm256_dpbusd(__m256i src, __m256i a, __m256i b)
{
	emu512 s = emu_castsi256_si512(src), x = emu_castsi256_si512(a), y = emu_castsi256_si512(b);
	__m256i r;
	s = emu_dpbusd(s, x, y);
	memcpy(&r, s.b, 32);
	return r;
}

PF_EMU static inline emu512 emu_cvtph_ps(__m256i v)
{
	uint16_t h[16];
	emu512 r;
	memcpy(h, &v, 32);
	for (int i = 0; i < 16; i++)
		r.f[i] = pf_f16_to_f32(h[i]);
	return r;
}

PF_EMU static inline emu512 emu_cvtepu16_epi32(__m256i v)
{
	uint16_t h[16];
	emu512 r;
	memcpy(h, &v, 32);
	for (int i = 0; i < 16; i++)
		r.d[i] = h[i];
	return r;
}

static inline emu512 emu_cvtepi32_ps(emu512 a)
{
	for (int i = 0; i < 16; i++)
		a.f[i] = (float)a.d[i];
	return a;
}

static inline emu512 emu_fmadd_ps(emu512 a, emu512 b, emu512 c)
{
	for (int i = 0; i < 16; i++)
		a.f[i] = fmaf(a.f[i], b.f[i], c.f[i]);
	return a;
}

static inline emu512 emu_add_ps(emu512 a, emu512 b)
{
	for (int i = 0; i < 16; i++)
		a.f[i] += b.f[i];
	return a;
}

static inline float emu_reduce_add_ps(emu512 a)
{
	float t[8];
	for (int i = 0; i < 8; i++)
		t[i] = a.f[i] + a.f[i + 8];
	for (int i = 0; i < 4; i++)
		t[i] += t[i + 4];
	return (t[0] + t[2]) + (t[1] + t[3]);
}

static inline emu512 emu_id(emu512 a)
{
	return a;
}


PF_EMU static inline __m256i emu_castsi512_si256(emu512 a)
{
	__m256i r;
	memcpy(&r, a.b, 32);
	return r;
}

PF_EMU static inline __m256i emu_extracti64x4(emu512 a, int hi)
{
	__m256i r;
	memcpy(&r, a.b + (hi ? 32 : 0), 32);
	return r;
}

#define __m512i emu512
#define __m512 emu512
#define __m512d emu512
#undef _mm512_setzero_si512
#define _mm512_setzero_si512 emu_zero
#undef _mm512_setzero_ps
#define _mm512_setzero_ps emu_zero
#undef _mm512_setzero_pd
#define _mm512_setzero_pd emu_zero
#undef _mm512_set1_ps
#define _mm512_set1_ps emu_set1_ps
#undef _mm512_set1_epi8
#define _mm512_set1_epi8 emu_set1_epi8
#undef _mm512_set1_epi16
#define _mm512_set1_epi16 emu_set1_epi16
#undef _mm512_setr_epi64
#define _mm512_setr_epi64 emu_setr_epi64
#undef _mm512_set_epi64
#define _mm512_set_epi64 emu_set_epi64
#undef _mm512_mask_blend_ps
#define _mm512_mask_blend_ps emu_mask_blend32
#undef _mm512_mask_blend_epi32
#define _mm512_mask_blend_epi32 emu_mask_blend32
#undef _mm512_castsi256_si512
#define _mm512_castsi256_si512 emu_castsi256_si512
#undef _mm512_inserti64x4
#define _mm512_inserti64x4 emu_insert256
#undef _mm512_insertf64x4
#define _mm512_insertf64x4 emu_insertf256
#undef _mm512_broadcast_i32x4
#define _mm512_broadcast_i32x4 emu_broadcast_i32x4
#undef _mm512_permutexvar_epi64
#define _mm512_permutexvar_epi64 emu_permutexvar_epi64
#undef _mm512_srlv_epi64
#define _mm512_srlv_epi64 emu_srlv_epi64
#undef _mm512_and_si512
#define _mm512_and_si512 emu_and
#undef _mm512_or_si512
#define _mm512_or_si512 emu_or
#undef _mm512_sub_epi32
#define _mm512_sub_epi32 emu_sub_epi32
#undef _mm512_mask_sub_epi8
#define _mm512_mask_sub_epi8 emu_mask_sub_epi8
#undef _mm512_movepi8_mask
#define _mm512_movepi8_mask emu_movepi8_mask
#undef _mm512_abs_epi8
#define _mm512_abs_epi8 emu_abs_epi8
#undef _mm512_dpbusd_epi32
#define _mm512_dpbusd_epi32 emu_dpbusd
#undef _mm512_dpwssd_epi32
#define _mm512_dpwssd_epi32 emu_dpwssd
#undef _mm512_maddubs_epi16
#define _mm512_maddubs_epi16 emu_maddubs
#undef _mm512_shuffle_epi8
#define _mm512_shuffle_epi8 emu_shuffle_epi8
#undef _mm512_srai_epi16
#define _mm512_srai_epi16 emu_srai_epi16
#undef _mm512_slli_epi16
#define _mm512_slli_epi16 emu_slli_epi16
#undef _mm512_srli_epi16
#define _mm512_srli_epi16 emu_srli_epi16
#undef _mm512_slli_epi32
#define _mm512_slli_epi32 emu_slli_epi32
#undef _mm512_loadu_si512
#define _mm512_loadu_si512 emu_loadu
#undef _mm512_loadu_ps
#define _mm512_loadu_ps emu_loadu
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps emu_maskz_loadu_ps
#undef _mm256_maskz_loadu_epi16
#define _mm256_maskz_loadu_epi16 emu_mm256_maskz_loadu_epi16
#undef _mm256_dpbusd_epi32
#define _mm256_dpbusd_epi32 emu_mm256_dpbusd
#undef _mm512_cvtph_ps
#define _mm512_cvtph_ps emu_cvtph_ps
#undef _mm512_cvtepu16_epi32
#define _mm512_cvtepu16_epi32 emu_cvtepu16_epi32
#undef _mm512_cvtepi32_ps
#define _mm512_cvtepi32_ps emu_cvtepi32_ps
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps emu_fmadd_ps
#undef _mm512_add_ps
#define _mm512_add_ps emu_add_ps
#undef _mm512_reduce_add_ps
#define _mm512_reduce_add_ps emu_reduce_add_ps
#undef _mm512_castpd_ps
#define _mm512_castpd_ps emu_id
#undef _mm512_castsi512_ps
#define _mm512_castsi512_ps emu_id

#undef _mm512_castsi512_si256
#define _mm512_castsi512_si256 emu_castsi512_si256
#undef _mm512_extracti64x4_epi64
#define _mm512_extracti64x4_epi64 emu_extracti64x4

#endif
