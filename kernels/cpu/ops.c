/* ops.c — element-wise and attention kernels; see ops.h. */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "dtype.h"
#include "quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define PF_X86 1
#endif

void pf_cpu_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps)
{
	double sum = 0.0; /* double, as llama.cpp's ggml_float, so the scale agrees bit for bit */
	for (int64_t i = 0; i < n; i++)
		sum += (double)(x[i] * x[i]);
	float mean = (float)(sum / (double)n);
	float scale = 1.0f / sqrtf(mean + eps);
	for (int64_t i = 0; i < n; i++)
		out[i] = x[i] * scale * w[i];
}

void pf_cpu_rope_cache(float *cs, int32_t pos, int32_t n_rot, float base, const float *freq_factors)
{
	/* angles by repeated multiplication in float, as ggml's rope cache
	 * does, rather than powf per pair: the last bits matter for agreement */
	float theta_scale = powf(base, -2.0f / (float)n_rot);
	float theta = (float)pos;
	for (int32_t i = 0; i < n_rot / 2; i++) {
		float t = freq_factors ? theta / freq_factors[i] : theta;
		cs[2 * i] = cosf(t);
		cs[2 * i + 1] = sinf(t);
		theta *= theta_scale;
	}
}

void pf_cpu_rope_apply(float *x, int32_t n_heads, int32_t head_dim, int32_t n_rot, const float *cs, bool neox)
{
	for (int32_t h = 0; h < n_heads; h++) {
		float *v = x + (int64_t)h * head_dim;
		for (int32_t i = 0; i < n_rot / 2; i++) {
			int32_t a = neox ? i : 2 * i;
			int32_t b = neox ? i + n_rot / 2 : 2 * i + 1;
			float c = cs[2 * i], s = cs[2 * i + 1];
			float x0 = v[a], x1 = v[b];
			v[a] = x0 * c - x1 * s;
			v[b] = x0 * s + x1 * c;
		}
	}
}

void pf_cpu_swiglu(float *out, const float *gate, const float *up, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		float g = gate[i];
		out[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

void pf_cpu_store_kv(void *dst, const float *src, int32_t n, uint32_t kv_dtype)
{
	if (kv_dtype == PF_DT_F32) {
		memcpy(dst, src, (size_t)n * sizeof(float));
		return;
	}
	uint16_t *h = dst;
	for (int32_t i = 0; i < n; i++)
		h[i] = pf_f32_to_f16(src[i]);
}

/* ---- attention ------------------------------------------------------------ */

static inline const void *kv_row(const void *base, uint32_t dt, int64_t idx, int32_t hd)
{
	size_t es = dt == PF_DT_F32 ? 4 : 2;
	return (const char *)base + (size_t)idx * (size_t)hd * es;
}

static float dot_f16_scalar(const float *q, const uint16_t *k, int32_t n)
{
	float s = 0.0f;
	for (int32_t i = 0; i < n; i++)
		s += q[i] * pf_f16_to_f32(k[i]);
	return s;
}

static void axpy_f16_scalar(float *y, float a, const uint16_t *x, int32_t n)
{
	for (int32_t i = 0; i < n; i++)
		y[i] += a * pf_f16_to_f32(x[i]);
}

#ifdef PF_X86
__attribute__((target("avx2,fma,f16c")))
static float dot_f16_avx2(const float *q, const uint16_t *k, int32_t n)
{
	__m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
	int32_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
		__m256 k1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8)));
		acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), k0, acc0);
		acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), k1, acc1);
	}
	acc0 = _mm256_add_ps(acc0, acc1);
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	h = _mm_add_ss(h, _mm_movehdup_ps(h));
	float s = _mm_cvtss_f32(h);
	for (; i < n; i++)
		s += q[i] * pf_f16_to_f32(k[i]);
	return s;
}

__attribute__((target("avx2,fma,f16c")))
static void axpy_f16_avx2(float *y, float a, const uint16_t *x, int32_t n)
{
	__m256 va = _mm256_set1_ps(a);
	int32_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(y + i)));
	}
	for (; i < n; i++)
		y[i] += a * pf_f16_to_f32(x[i]);
}
#endif

void pf_cpu_attention(const struct pf_attn_args *a)
{
	const int32_t hd = a->head_dim, bs = a->block_size, nq = a->n_q, n = a->n_ctx;
	float *scores = a->scratch;                 /* (n_q, n_ctx) */
	float *qh = a->scratch + (int64_t)nq * n;   /* (n_q, head_dim) queries rounded to half */
	const bool f16 = a->kv_dtype == PF_DT_F16;
	float (*dot16)(const float *, const uint16_t *, int32_t) = dot_f16_scalar;
	void (*axpy16)(float *, float, const uint16_t *, int32_t) = axpy_f16_scalar;
#ifdef PF_X86
	if (a->isa >= PF_ISA_AVX2) { /* the AVX2 level implies FMA and F16C */
		dot16 = dot_f16_avx2;
		axpy16 = axpy_f16_avx2;
	}
#endif

	/* llama.cpp multiplies a half K by a half-rounded Q; round Q the same way */
	for (int32_t i = 0; i < nq * hd; i++)
		qh[i] = f16 ? pf_f16_to_f32(pf_f32_to_f16(a->q[i])) : a->q[i];

	for (int32_t j = 0; j < n; j++) {
		int64_t row = ((int64_t)a->table[j / bs] * a->n_head_kv + a->kvh) * bs + j % bs;
		const void *k = kv_row(a->k_base, a->kv_dtype, row, hd);
		for (int32_t h = 0; h < nq; h++) {
			float s;
			if (f16) {
				s = dot16(qh + h * hd, k, hd);
			} else {
				s = 0.0f;
				for (int32_t i = 0; i < hd; i++)
					s += qh[h * hd + i] * ((const float *)k)[i];
			}
			scores[(int64_t)h * n + j] = s * a->scale;
		}
	}
	for (int32_t h = 0; h < nq; h++) {
		float *sc = scores + (int64_t)h * n;
		float mx = -INFINITY;
		for (int32_t j = 0; j < n; j++)
			mx = sc[j] > mx ? sc[j] : mx;
		double sum = 0.0;
		for (int32_t j = 0; j < n; j++) {
			sc[j] = expf(sc[j] - mx);
			sum += sc[j];
		}
		float inv = (float)(1.0 / sum);
		for (int32_t j = 0; j < n; j++)
			sc[j] *= inv;
		memset(a->out + (int64_t)h * hd, 0, (size_t)hd * sizeof(float));
	}
	for (int32_t j = 0; j < n; j++) {
		int64_t row = ((int64_t)a->table[j / bs] * a->n_head_kv + a->kvh) * bs + j % bs;
		const void *v = kv_row(a->v_base, a->kv_dtype, row, hd);
		for (int32_t h = 0; h < nq; h++) {
			float p = scores[(int64_t)h * n + j];
			float *o = a->out + (int64_t)h * hd;
			if (f16) {
				axpy16(o, p, v, hd);
			} else {
				for (int32_t i = 0; i < hd; i++)
					o[i] += p * ((const float *)v)[i];
			}
		}
	}
}
