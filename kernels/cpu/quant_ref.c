/*
 * quant_ref.c — portable scalar kernels: the reference every SIMD kernel is
 * tested against, and the path of non-x86 builds.
 *
 * The dot products here define the canonical reduction order (quant.h):
 * every SIMD kernel must give exactly their bits.  Built with
 * -ffp-contract=off (Makefile), so the compiler fuses nothing on its own.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"

#define F16(h) pf_f16_to_f32(h)

/* ---- activation quantizers ----------------------------------------------- */
/*
 * Round to nearest even everywhere (rintf in the default rounding mode, what
 * _mm256_round_ps(_MM_FROUND_TO_NEAREST_INT) does), with the scale and its
 * inverse computed in the same float operations as the SIMD versions, so that
 * all ISAs produce identical blocks.
 */

static float pf_amax(const float *x, int n)
{
	float amax = 0.0f;

	for (int j = 0; j < n; j++)
		amax = fmaxf(amax, fabsf(x[j]));
	return amax;
}

void pf_quantize_row_q8_0_ref(const float *x, void *dst, int64_t n)
{
	struct pf_block_q8_0 *y = dst;

	for (int64_t i = 0; i < n / PF_QK; i++, x += PF_QK) {
		const float amax = pf_amax(x, PF_QK);
		const float d = amax / 127.0f;
		const float id = amax != 0.0f ? 127.0f / amax : 0.0f;

		y[i].d = pf_f32_to_f16(d);
		for (int j = 0; j < PF_QK; j++)
			y[i].qs[j] = (int8_t)rintf(x[j] * id);
	}
}

void pf_quantize_row_q8_1_ref(const float *x, void *dst, int64_t n)
{
	struct pf_block_q8_1 *y = dst;

	for (int64_t i = 0; i < n / PF_QK; i++, x += PF_QK) {
		const float amax = pf_amax(x, PF_QK);
		const float d = amax / 127.0f;
		const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
		int sum = 0;

		for (int j = 0; j < PF_QK; j++) {
			y[i].qs[j] = (int8_t)rintf(x[j] * id);
			sum += y[i].qs[j];
		}
		/* as llama.cpp: the float d (not its f16 rounding) times Σq */
		y[i].d = pf_f32_to_f16(d);
		y[i].s = pf_f32_to_f16(d * (float)sum);
	}
}

void pf_quantize_row_q8_K_ref(const float *x, void *dst, int64_t n)
{
	struct pf_block_q8_K *y = dst;

	for (int64_t i = 0; i < n / PF_QK_K; i++, x += PF_QK_K) {
		/* llama.cpp's convention: the element of largest magnitude maps to
		 * -127, so d = 1/iscale is negative when that element is positive */
		float amax = 0.0f, max = 0.0f;

		for (int j = 0; j < PF_QK_K; j++) {
			float ax = fabsf(x[j]);
			if (ax > amax) {
				amax = ax;
				max = x[j];
			}
		}
		if (amax == 0.0f) {
			memset(&y[i], 0, sizeof(y[i]));
			continue;
		}
		const float iscale = -127.0f / max;
		for (int j = 0; j < PF_QK_K; j++) {
			float v = rintf(iscale * x[j]);
			y[i].qs[j] = (int8_t)(v > 127.0f ? 127.0f : v);
		}
		for (int g = 0; g < PF_QK_K / 16; g++) {
			int sum = 0;
			for (int l = 0; l < 16; l++)
				sum += y[i].qs[16 * g + l];
			y[i].bsums[g] = (int16_t)sum;
		}
		y[i].d = 1.0f / iscale;
	}
}

void pf_quantize_row_f16_ref(const float *x, void *dst, int64_t n)
{
	uint16_t *y = dst;

	for (int64_t j = 0; j < n; j++)
		y[j] = pf_f32_to_f16(x[j]);
}

void pf_quantize_row_f32_ref(const float *x, void *dst, int64_t n)
{
	memmove(dst, x, (size_t)n * sizeof(float));
}

/* ---- dot products: the canonical order ------------------------------------ */
/*
 * These are the definition of every ISA's result (quant.h, "the canonical
 * order"): integer products summed exactly into the 8 int32 lanes an AVX2
 * register holds (lane l of a 32-element block = elements 4l..4l+3), each
 * lane then accumulated in float across blocks with one fused multiply-add
 * per block, and the 8 lanes folded as ((0+4)+(2+6)) + ((1+5)+(3+7)).  This
 * file is built with -ffp-contract=off: every fusion is an explicit fmaf.
 */

/* ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)): what _mm256 lo+hi, movehl, movehdup
 * do, and what pf_hsum_ps in the SIMD files does */
static float pf_hsum8(const float l[8])
{
	return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* lane l of acc += d · p[l], fused */
static void pf_fma8(float acc[8], float d, const int32_t p[8])
{
	for (int l = 0; l < 8; l++)
		acc[l] = fmaf(d, (float)p[l], acc[l]);
}

/* Q4_0 weight nibble e of a 32-element block, 0..15 (e < 16: low nibble of
 * qs[e], else the high nibble of qs[e-16]) */
static inline int pf_nib(const uint8_t *qs, int e)
{
	return e < 16 ? qs[e] & 0xf : qs[e - 16] >> 4;
}

static void pf_vec_dot_q4_0_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_0 *x = w;
	const struct pf_block_q8_0 *y = a;
	float acc[2][8] = { { 0 } };
	float v[8];

	/* two accumulators: block i into acc[i % 2] */
	for (int64_t i = 0; i < n / PF_QK; i++) {
		int32_t p[8] = { 0 };
		for (int e = 0; e < PF_QK; e++)
			p[e / 4] += (pf_nib(x[i].qs, e) - 8) * y[i].qs[e];
		pf_fma8(acc[i & 1], F16(x[i].d) * F16(y[i].d), p);
	}
	for (int l = 0; l < 8; l++)
		v[l] = acc[0][l] + acc[1][l];
	*s = pf_hsum8(v);
}

static void pf_vec_dot_q4_1_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_1 *x = w;
	const struct pf_block_q8_1 *y = a;
	float acc[8] = { 0 };
	float summ = 0.0f;

	/* Σ(d_w q + m)(d_a q_a) = d_w d_a Σq q_a + m s: one accumulator, the
	 * m·s terms fused into a scalar block by block (llama.cpp's AVX2 order) */
	for (int64_t i = 0; i < n / PF_QK; i++) {
		int32_t p[8] = { 0 };
		for (int e = 0; e < PF_QK; e++)
			p[e / 4] += pf_nib(x[i].qs, e) * y[i].qs[e];
		summ = fmaf(F16(x[i].m), F16(y[i].s), summ);
		pf_fma8(acc, F16(x[i].d) * F16(y[i].d), p);
	}
	*s = pf_hsum8(acc) + summ;
}

static void pf_vec_dot_q8_0_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q8_0 *x = w;
	const struct pf_block_q8_0 *y = a;
	float acc[8] = { 0 };

	for (int64_t i = 0; i < n / PF_QK; i++) {
		int32_t p[8] = { 0 };
		for (int e = 0; e < PF_QK; e++)
			p[e / 4] += x[i].qs[e] * y[i].qs[e];
		pf_fma8(acc, F16(x[i].d) * F16(y[i].d), p);
	}
	*s = pf_hsum8(acc);
}

static void pf_vec_dot_q4_K_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_K *x = w;
	const struct pf_block_q8_K *y = a;
	float acc[8] = { 0 }, acc_m[4] = { 0 };

	for (int64_t i = 0; i < n / PF_QK_K; i++) {
		uint8_t sc[8], m[8];
		int32_t p[8] = { 0 };

		pf_q4k_unpack_scales(x[i].scales, sc, m);
		/* 64 elements per step k: sub-block 2k from the low nibbles of
		 * qs[32k..32k+31], 2k+1 from the high ones; lane l gets elements
		 * 4l..4l+3 of both, each times its sub-block scale */
		for (int k = 0; k < 4; k++) {
			const uint8_t *q = x[i].qs + 32 * k;
			const int8_t *q8 = y[i].qs + 64 * k;
			for (int e = 0; e < 32; e++)
				p[e / 4] += sc[2 * k] * ((q[e] & 0xf) * q8[e]) + sc[2 * k + 1] * ((q[e] >> 4) * q8[e + 32]);
		}
		/* the mins: 4 lanes, lane j = sub-blocks 2j and 2j+1 */
		for (int j = 0; j < 4; j++) {
			const int32_t pm = m[2 * j] * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) +
					   m[2 * j + 1] * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
			acc_m[j] = fmaf(y[i].d * F16(x[i].dmin), (float)pm, acc_m[j]);
		}
		pf_fma8(acc, y[i].d * F16(x[i].d), p);
	}
	*s = pf_hsum8(acc) - ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
}

static void pf_vec_dot_q6_K_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q6_K *x = w;
	const struct pf_block_q8_K *y = a;
	float acc[8] = { 0 };

	for (int64_t i = 0; i < n / PF_QK_K; i++) {
		int32_t p[8];

		/* the -32 offset first: lane l = -32·(sc[2l]·bsum[2l] + sc[2l+1]·bsum[2l+1]) */
		for (int l = 0; l < 8; l++)
			p[l] = -32 * (x[i].scales[2 * l] * y[i].bsums[2 * l] + x[i].scales[2 * l + 1] * y[i].bsums[2 * l + 1]);
		/* per half h, four runs of 32 elements (q1..q4 at activation
		 * offsets 0, 32, 64, 96); lane l = elements 4l..4l+3 of each run,
		 * times the scale of its group of 16 */
		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
			const int8_t *q8 = y[i].qs + 128 * h;
			const int8_t *sc = x[i].scales + 8 * h;
			for (int e = 0; e < 32; e++) {
				const int g = e / 16;
				const int q1 = (ql[e] & 0xf) | ((qh[e] & 3) << 4);
				const int q2 = (ql[e + 32] & 0xf) | (((qh[e] >> 2) & 3) << 4);
				const int q3 = (ql[e] >> 4) | (((qh[e] >> 4) & 3) << 4);
				const int q4 = (ql[e + 32] >> 4) | (((qh[e] >> 6) & 3) << 4);
				p[e / 4] += sc[g] * (q1 * q8[e]) + sc[2 + g] * (q2 * q8[e + 32]) +
					    sc[4 + g] * (q3 * q8[e + 64]) + sc[6 + g] * (q4 * q8[e + 96]);
			}
		}
		pf_fma8(acc, y[i].d * F16(x[i].d), p);
	}
	*s = pf_hsum8(acc);
}

/* The float formats: four 8-lane accumulators over runs of 32 elements,
 * then runs of 8 into the first, the lanes folded (0+1)+(2+3) and summed as
 * above, plus the rest of the row fused into a scalar (ggml's AVX2 order). */
#define PF_DEFINE_FLOAT_DOT(name, WT, AT, CVW, CVA)                                             \
	static void name(int64_t n, float *s, const void *w, const void *a)                     \
	{                                                                                       \
		const WT *x = w;                                                                \
		const AT *y = a;                                                                \
		float acc[4][8] = { { 0 } }, v[8], tail = 0.0f;                                 \
		int64_t j = 0;                                                                  \
		for (; j + 32 <= n; j += 32)                                                    \
			for (int c = 0; c < 4; c++)                                             \
				for (int l = 0; l < 8; l++)                                     \
					acc[c][l] = fmaf(CVW(x[j + 8 * c + l]), CVA(y[j + 8 * c + l]), acc[c][l]); \
		for (; j + 8 <= n; j += 8)                                                      \
			for (int l = 0; l < 8; l++)                                             \
				acc[0][l] = fmaf(CVW(x[j + l]), CVA(y[j + l]), acc[0][l]);      \
		for (; j < n; j++)                                                              \
			tail = fmaf(CVW(x[j]), CVA(y[j]), tail);                                \
		for (int l = 0; l < 8; l++)                                                     \
			v[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);               \
		*s = pf_hsum8(v) + tail;                                                        \
	}
#define PF_ID(v) (v)
PF_DEFINE_FLOAT_DOT(pf_vec_dot_f16_ref, uint16_t, uint16_t, F16, F16)
PF_DEFINE_FLOAT_DOT(pf_vec_dot_bf16_ref, uint16_t, float, pf_bf16_to_f32, PF_ID)
PF_DEFINE_FLOAT_DOT(pf_vec_dot_f32_ref, float, float, PF_ID, PF_ID)
#undef PF_ID
#undef PF_DEFINE_FLOAT_DOT

/* ---- dequantization ------------------------------------------------------ */

void pf_dequant_row_q4_0_ref(const void *w, float *y, int64_t n)
{
	const struct pf_block_q4_0 *x = w;

	for (int64_t i = 0; i < n / PF_QK; i++, y += PF_QK) {
		const float d = F16(x[i].d);
		for (int j = 0; j < PF_QK / 2; j++) {
			y[j] = (float)((x[i].qs[j] & 0xf) - 8) * d;
			y[j + PF_QK / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
		}
	}
}

void pf_dequant_row_q4_1_ref(const void *w, float *y, int64_t n)
{
	const struct pf_block_q4_1 *x = w;

	for (int64_t i = 0; i < n / PF_QK; i++, y += PF_QK) {
		const float d = F16(x[i].d), m = F16(x[i].m);
		for (int j = 0; j < PF_QK / 2; j++) {
			y[j] = (float)(x[i].qs[j] & 0xf) * d + m;
			y[j + PF_QK / 2] = (float)(x[i].qs[j] >> 4) * d + m;
		}
	}
}

void pf_dequant_row_q8_0_ref(const void *w, float *y, int64_t n)
{
	const struct pf_block_q8_0 *x = w;

	for (int64_t i = 0; i < n / PF_QK; i++, y += PF_QK) {
		const float d = F16(x[i].d);
		for (int j = 0; j < PF_QK; j++)
			y[j] = (float)x[i].qs[j] * d;
	}
}

void pf_dequant_row_q4_K_ref(const void *w, float *y, int64_t n)
{
	const struct pf_block_q4_K *x = w;

	for (int64_t i = 0; i < n / PF_QK_K; i++) {
		const float d = F16(x[i].d), dmin = F16(x[i].dmin);
		uint8_t sc[8], m[8];

		pf_q4k_unpack_scales(x[i].scales, sc, m);
		for (int k = 0; k < 4; k++, y += 64) {
			const uint8_t *q = x[i].qs + 32 * k;
			const float d1 = d * sc[2 * k], m1 = dmin * m[2 * k];
			const float d2 = d * sc[2 * k + 1], m2 = dmin * m[2 * k + 1];
			for (int l = 0; l < 32; l++) {
				y[l] = d1 * (float)(q[l] & 0xf) - m1;
				y[l + 32] = d2 * (float)(q[l] >> 4) - m2;
			}
		}
	}
}

void pf_dequant_row_q6_K_ref(const void *w, float *y, int64_t n)
{
	const struct pf_block_q6_K *x = w;

	for (int64_t i = 0; i < n / PF_QK_K; i++) {
		const float d = F16(x[i].d);

		for (int h = 0; h < 2; h++, y += 128) {
			const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
			const int8_t *sc = x[i].scales + 8 * h;
			for (int l = 0; l < 32; l++) {
				int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
				int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				y[l] = d * (float)sc[l / 16 + 0] * (float)q1;
				y[l + 32] = d * (float)sc[l / 16 + 2] * (float)q2;
				y[l + 64] = d * (float)sc[l / 16 + 4] * (float)q3;
				y[l + 96] = d * (float)sc[l / 16 + 6] * (float)q4;
			}
		}
	}
}

void pf_dequant_row_f16_ref(const void *w, float *y, int64_t n)
{
	const uint16_t *x = w;

	for (int64_t j = 0; j < n; j++)
		y[j] = F16(x[j]);
}

void pf_dequant_row_bf16_ref(const void *w, float *y, int64_t n)
{
	const uint16_t *x = w;

	for (int64_t j = 0; j < n; j++)
		y[j] = pf_bf16_to_f32(x[j]);
}

void pf_dequant_row_f32_ref(const void *w, float *y, int64_t n)
{
	memmove(y, w, (size_t)n * sizeof(float));
}

/* ---- table --------------------------------------------------------------- */

PF_DEFINE_DOT4(pf_vec_dot_4x_q4_0_ref, pf_vec_dot_q4_0_ref)
PF_DEFINE_DOT4(pf_vec_dot_4x_q4_1_ref, pf_vec_dot_q4_1_ref)
PF_DEFINE_DOT4(pf_vec_dot_4x_q8_0_ref, pf_vec_dot_q8_0_ref)
PF_DEFINE_DOT4(pf_vec_dot_4x_q4_K_ref, pf_vec_dot_q4_K_ref)
PF_DEFINE_DOT4(pf_vec_dot_4x_q6_K_ref, pf_vec_dot_q6_K_ref)
PF_DEFINE_DOT4(pf_vec_dot_4x_f16_ref, pf_vec_dot_f16_ref)
PF_DEFINE_DOT4(pf_vec_dot_4x_bf16_ref, pf_vec_dot_bf16_ref)
PF_DEFINE_DOT4(pf_vec_dot_4x_f32_ref, pf_vec_dot_f32_ref)


static const struct pf_qtype_ops pf_ops_ref[] = {
	{ PF_DT_Q4_0, PF_DT_Q8_0, pf_quantize_row_q8_0_ref, pf_vec_dot_q4_0_ref, pf_dequant_row_q4_0_ref, pf_vec_dot_4x_q4_0_ref },
	{ PF_DT_Q4_1, PF_DT_Q8_1, pf_quantize_row_q8_1_ref, pf_vec_dot_q4_1_ref, pf_dequant_row_q4_1_ref, pf_vec_dot_4x_q4_1_ref },
	{ PF_DT_Q8_0, PF_DT_Q8_0, pf_quantize_row_q8_0_ref, pf_vec_dot_q8_0_ref, pf_dequant_row_q8_0_ref, pf_vec_dot_4x_q8_0_ref },
	{ PF_DT_Q4_K, PF_DT_Q8_K, pf_quantize_row_q8_K_ref, pf_vec_dot_q4_K_ref, pf_dequant_row_q4_K_ref, pf_vec_dot_4x_q4_K_ref },
	{ PF_DT_Q6_K, PF_DT_Q8_K, pf_quantize_row_q8_K_ref, pf_vec_dot_q6_K_ref, pf_dequant_row_q6_K_ref, pf_vec_dot_4x_q6_K_ref },
	{ PF_DT_F16, PF_DT_F16, pf_quantize_row_f16_ref, pf_vec_dot_f16_ref, pf_dequant_row_f16_ref, pf_vec_dot_4x_f16_ref },
	{ PF_DT_BF16, PF_DT_F32, pf_quantize_row_f32_ref, pf_vec_dot_bf16_ref, pf_dequant_row_bf16_ref, pf_vec_dot_4x_bf16_ref },
	{ PF_DT_F32, PF_DT_F32, pf_quantize_row_f32_ref, pf_vec_dot_f32_ref, pf_dequant_row_f32_ref, pf_vec_dot_4x_f32_ref },
};

const struct pf_qtype_ops *pf_quant_ops_ref(uint32_t wtype)
{
	for (size_t i = 0; i < sizeof(pf_ops_ref) / sizeof(pf_ops_ref[0]); i++)
		if (pf_ops_ref[i].wtype == wtype)
			return &pf_ops_ref[i];
	return NULL;
}
