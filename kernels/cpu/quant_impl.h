/*
 * quant_impl.h — internals shared by the quant_*.c files (not a public API).
 *
 * quant.c owns the public entry points and the dispatch; each ISA file
 * exports one lookup, pf_quant_ops_<isa>(wtype), returning a complete ops
 * table for the weight types it accelerates (NULL for the others, so the
 * dispatcher falls back to the next lower ISA).  Kernels of every ISA read
 * and write the same block layouts; the activation quantizers of every ISA
 * produce bit-identical blocks (same float operations, round-to-nearest-even),
 * and every dot product sums in the canonical order of quant.h, so a row's
 * result is the same bits on every ISA.
 */
#ifndef PF_CPU_QUANT_IMPL_H
#define PF_CPU_QUANT_IMPL_H

#include <stdint.h>
#include <string.h>

#include "kernels/cpu/quant.h"

/* The x86-64 SIMD kernels are built unless PF_NO_X86_SIMD is defined (a
 * portable build; also how the scalar-only path is tested on x86). */
#if defined(__x86_64__) && !defined(PF_NO_X86_SIMD)
#define PF_QUANT_X86 1
#else
#define PF_QUANT_X86 0
#endif

/* ---- shared scalar helpers ------------------------------------------------- */

/* Q4_K: the 12 packed bytes of 6-bit scales and mins -> 8 scales, 8 mins. */
static inline void pf_q4k_unpack_scales(const uint8_t *p, uint8_t sc[8], uint8_t m[8])
{
	uint32_t w0, w1, w2, t[4];

	memcpy(&w0, p, 4);
	memcpy(&w1, p + 4, 4);
	memcpy(&w2, p + 8, 4);
	t[0] = w0 & 0x3f3f3f3fu;
	t[1] = (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4);
	t[2] = w1 & 0x3f3f3f3fu;
	t[3] = ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4);
	memcpy(sc, &t[0], 8);
	memcpy(m, &t[2], 8);
}

/* vec_dot_4x as four vec_dot calls, for the formats without a fused kernel. */
#define PF_DEFINE_DOT4(name, dot)                                                              \
	static void name(int64_t n, float *s, const void *w, size_t w_stride, const void *a)  \
	{                                                                                      \
		for (int r_ = 0; r_ < 4; r_++)                                                 \
			dot(n, s + r_, (const char *)w + (size_t)r_ * w_stride, a);            \
	}

/* ---- the scalar reference kernels (quant_ref.c) ---------------------------- */

void pf_quantize_row_q8_0_ref(const float *x, void *dst, int64_t n);
void pf_quantize_row_q8_1_ref(const float *x, void *dst, int64_t n);
void pf_quantize_row_q8_K_ref(const float *x, void *dst, int64_t n);
void pf_quantize_row_f16_ref(const float *x, void *dst, int64_t n);
void pf_quantize_row_f32_ref(const float *x, void *dst, int64_t n);

void pf_dequant_row_q4_0_ref(const void *w, float *y, int64_t n);
void pf_dequant_row_q4_1_ref(const void *w, float *y, int64_t n);
void pf_dequant_row_q8_0_ref(const void *w, float *y, int64_t n);
void pf_dequant_row_q4_K_ref(const void *w, float *y, int64_t n);
void pf_dequant_row_q6_K_ref(const void *w, float *y, int64_t n);
void pf_dequant_row_f16_ref(const void *w, float *y, int64_t n);
void pf_dequant_row_bf16_ref(const void *w, float *y, int64_t n);
void pf_dequant_row_f32_ref(const void *w, float *y, int64_t n);

const struct pf_qtype_ops *pf_quant_ops_ref(uint32_t wtype);

/* Test seam (quant.c): what pf_qtype_ops() returns passes through this last;
 * the library's weak definition returns `ops` unchanged. */
const struct pf_qtype_ops *pf_qtype_ops_fault(const struct pf_qtype_ops *ops, uint32_t wtype, enum pf_isa isa);

/* ---- x86 SIMD (quant_avx2.c, quant_avx512.c) ------------------------------- */

#if PF_QUANT_X86
/* Activation quantizers, AVX2; the AVX-512 tables reuse them (the work is a
 * small fraction of a matmul and the output must be bit-identical anyway). */
void pf_quantize_row_q8_0_avx2(const float *x, void *dst, int64_t n);
void pf_quantize_row_q8_1_avx2(const float *x, void *dst, int64_t n);
void pf_quantize_row_q8_K_avx2(const float *x, void *dst, int64_t n);
void pf_quantize_row_f16_avx2(const float *x, void *dst, int64_t n);

const struct pf_qtype_ops *pf_quant_ops_avx2(uint32_t wtype);
const struct pf_qtype_ops *pf_quant_ops_avx512(uint32_t wtype);
const struct pf_qtype_ops *pf_quant_ops_avx512_emu(uint32_t wtype);
#endif

#endif
