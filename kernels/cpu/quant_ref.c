/*
 * quant_ref.c — portable scalar kernels: the reference every SIMD kernel is
 * tested against, and the path of non-x86 builds.
 *
 * Quantized dot products sum integers exactly within a block and accumulate
 * the per-block products d_w·d_a·Σq_w·q_a in float, in block order (as the
 * SIMD kernels do, up to their lane order).  The float formats accumulate in
 * double.
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

/* ---- dot products -------------------------------------------------------- */

static void pf_vec_dot_q4_0_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_0 *x = w;
	const struct pf_block_q8_0 *y = a;
	float sumf = 0.0f;

	for (int64_t i = 0; i < n / PF_QK; i++) {
		int sumi = 0;
		for (int j = 0; j < PF_QK / 2; j++) {
			sumi += ((x[i].qs[j] & 0xf) - 8) * y[i].qs[j];
			sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + PF_QK / 2];
		}
		sumf += F16(x[i].d) * F16(y[i].d) * (float)sumi;
	}
	*s = sumf;
}

static void pf_vec_dot_q4_1_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_1 *x = w;
	const struct pf_block_q8_1 *y = a;
	float sumf = 0.0f;

	for (int64_t i = 0; i < n / PF_QK; i++) {
		int sumi = 0;
		for (int j = 0; j < PF_QK / 2; j++) {
			sumi += (x[i].qs[j] & 0xf) * y[i].qs[j];
			sumi += (x[i].qs[j] >> 4) * y[i].qs[j + PF_QK / 2];
		}
		/* Σ(d_w q + m)(d_a q_a) = d_w d_a Σq q_a + m s */
		sumf += F16(x[i].d) * F16(y[i].d) * (float)sumi + F16(x[i].m) * F16(y[i].s);
	}
	*s = sumf;
}

static void pf_vec_dot_q8_0_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q8_0 *x = w;
	const struct pf_block_q8_0 *y = a;
	float sumf = 0.0f;

	for (int64_t i = 0; i < n / PF_QK; i++) {
		int sumi = 0;
		for (int j = 0; j < PF_QK; j++)
			sumi += x[i].qs[j] * y[i].qs[j];
		sumf += F16(x[i].d) * F16(y[i].d) * (float)sumi;
	}
	*s = sumf;
}

static void pf_vec_dot_q4_K_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q4_K *x = w;
	const struct pf_block_q8_K *y = a;
	float sumf = 0.0f;

	for (int64_t i = 0; i < n / PF_QK_K; i++) {
		uint8_t sc[8], m[8];
		int sumi = 0, summ = 0;

		pf_q4k_unpack_scales(x[i].scales, sc, m);
		for (int k = 0; k < 4; k++) {
			const uint8_t *q = x[i].qs + 32 * k;
			const int8_t *q8 = y[i].qs + 64 * k;
			int lo = 0, hi = 0;
			for (int l = 0; l < 32; l++) {
				lo += (q[l] & 0xf) * q8[l];
				hi += (q[l] >> 4) * q8[l + 32];
			}
			sumi += sc[2 * k] * lo + sc[2 * k + 1] * hi;
		}
		for (int j = 0; j < 8; j++)
			summ += m[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
		sumf += y[i].d * F16(x[i].d) * (float)sumi - y[i].d * F16(x[i].dmin) * (float)summ;
	}
	*s = sumf;
}

static void pf_vec_dot_q6_K_ref(int64_t n, float *s, const void *w, const void *a)
{
	const struct pf_block_q6_K *x = w;
	const struct pf_block_q8_K *y = a;
	float sumf = 0.0f;

	for (int64_t i = 0; i < n / PF_QK_K; i++) {
		int sumi = 0;

		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
			const int8_t *q8 = y[i].qs + 128 * h;
			const int8_t *sc = x[i].scales + 8 * h;
			int g[8] = { 0 };
			for (int l = 0; l < 32; l++) {
				int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
				int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				g[l / 16 + 0] += q1 * q8[l];
				g[l / 16 + 2] += q2 * q8[l + 32];
				g[l / 16 + 4] += q3 * q8[l + 64];
				g[l / 16 + 6] += q4 * q8[l + 96];
			}
			for (int j = 0; j < 8; j++)
				sumi += sc[j] * g[j];
		}
		sumf += y[i].d * F16(x[i].d) * (float)sumi;
	}
	*s = sumf;
}

static void pf_vec_dot_f16_ref(int64_t n, float *s, const void *w, const void *a)
{
	const uint16_t *x = w, *y = a;
	double sum = 0.0;

	for (int64_t j = 0; j < n; j++)
		sum += (double)(F16(x[j]) * F16(y[j]));
	*s = (float)sum;
}

static void pf_vec_dot_bf16_ref(int64_t n, float *s, const void *w, const void *a)
{
	const uint16_t *x = w;
	const float *y = a;
	double sum = 0.0;

	for (int64_t j = 0; j < n; j++)
		sum += (double)(pf_bf16_to_f32(x[j]) * y[j]);
	*s = (float)sum;
}

static void pf_vec_dot_f32_ref(int64_t n, float *s, const void *w, const void *a)
{
	const float *x = w, *y = a;
	double sum = 0.0;

	for (int64_t j = 0; j < n; j++)
		sum += (double)(x[j] * y[j]);
	*s = (float)sum;
}

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
