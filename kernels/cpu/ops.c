/* ops.c — element-wise and attention kernels; see ops.h. */
#include "kernels/cpu/ops.h"

#include <math.h>
#include <string.h>

#include "kernels/dtype.h"
#include "kernels/cpu/quant.h"

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
			/* fused as llama.cpp's compiled rotation is: one product
			 * rounded, the other fused into the add */
			v[a] = fmaf(x0, c, -(x1 * s));
			v[b] = fmaf(x0, s, x1 * c);
		}
	}
}

/* ---- the canonical order in scalar C ---------------------------------------
 * The AVX2 code below is the definition of these ops' arithmetic (it equals
 * llama.cpp's AVX2 build); these scalar versions do the same float
 * operations lane by lane, so the scalar path gives the same bits on any
 * CPU.  The file is built with -ffp-contract=off: every fusion is written. */

static inline uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static inline float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* one lane of expf8_avx2 (see there) */
static float expf_canon(float x)
{
	const float shift = 0x1.8p23f;
	const float z = fmaf(x, 0x1.715476p+0f, shift);
	const float n = z - shift;
	const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
	const uint32_t e = f2u(z) << 23;
	const float k = u2f(e + f2u(1.0f));
	const float an = fabsf(n);
	const float u = b * b;
	const float p = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
			     u, 0x1.ffffecp-1f * b);
	if (!(an > 126.0f))
		return fmaf(p, k, k);
	const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
	const float s1 = u2f(g + 0x7f000000u), s2 = u2f(e - g);
	if (an > 192.0f)
		return s1 * s1;
	return fmaf(s2, p, s2) * s1;
}

/* lanes summed as (0+4 + 2+6) + (1+5 + 3+7) */
static inline float hsum8_canon(const float v[8])
{
	return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

/* lanes summed as (0+4 + 1+5) + (2+6 + 3+7) */
static inline float hsum8_fold_canon(const float v[8])
{
	return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static inline float round_half(float x)
{
	return pf_f16_to_f32(pf_f32_to_f16(x));
}

#ifdef PF_X86
/* ---- AVX2 helpers: llama.cpp's AVX2 build does these in this order ------- */

/* e^x for 8 floats: x = n·ln2 + b with n = round(x/ln2) (ln2 split in two),
 * e^b by a degree-5 polynomial, 2^n put into the exponent; |n| > 126 scaled
 * in two steps so results run smoothly into denormals and 0 / inf.  The
 * same reduction and coefficients as llama.cpp's AVX2 softmax. */
__attribute__((target("avx2,fma")))
static inline __m256 expf8_avx2(__m256 x)
{
	const __m256 shift = _mm256_set1_ps(0x1.8p23f);
	const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
	const __m256 n = _mm256_sub_ps(z, shift);
	const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
					  _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
	const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
	const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0f))));
	const __m256 an = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
	const __m256 big = _mm256_cmp_ps(an, _mm256_set1_ps(126.0f), _CMP_GT_OQ);
	const __m256 u = _mm256_mul_ps(b, b);
	const __m256 p = _mm256_fmadd_ps(
		_mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
				_mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
		u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
	if (!_mm256_movemask_ps(big))
		return _mm256_fmadd_ps(p, k, k);
	/* 2^n = s1·s2 with both representable */
	const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
					   _mm256_set1_epi32((int)0x82000000u));
	const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
	const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
	const __m256 huge = _mm256_cmp_ps(an, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
	const __m256 scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, p, s2), s1);
	const __m256 plain = _mm256_fmadd_ps(k, p, k);
	return _mm256_or_ps(_mm256_and_ps(huge, _mm256_mul_ps(s1, s1)),
			    _mm256_andnot_ps(huge, _mm256_or_ps(_mm256_and_ps(big, scaled), _mm256_andnot_ps(big, plain))));
}

/* lanes summed as (0+4 + 2+6) + (1+5 + 3+7) */
__attribute__((target("avx2,fma")))
static inline float hsum8_avx2(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* lanes summed as (0+4 + 1+5) + (2+6 + 3+7) */
__attribute__((target("avx2,fma")))
static inline float hsum8_fold_avx2(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_hadd_ps(s, s);
	return _mm_cvtss_f32(_mm_hadd_ps(s, s));
}

__attribute__((target("avx2,fma,f16c")))
static inline __m256 load8_kv(const void *p, bool f16)
{
	return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)) : _mm256_loadu_ps(p);
}

/* x rounded to half and back, 8 at a time (round to nearest even) */
__attribute__((target("avx2,fma,f16c")))
static inline __m256 round_half8(__m256 x)
{
	return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

__attribute__((target("avx2,fma")))
static int64_t swiglu_avx2(float *out, const float *gate, const float *up, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		const __m256 g = _mm256_loadu_ps(gate + i);
		const __m256 e = expf8_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
		const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
		_mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
	}
	return i;
}
#endif

void pf_cpu_swiglu(float *out, const float *gate, const float *up, int64_t n, int isa)
{
	int64_t i = 0;
#ifdef PF_X86
	/* e^-g by the polynomial, 8 at a time from the start of the row (as
	 * llama.cpp's AVX2 build), libm's expf for the rest */
	if (isa >= PF_ISA_AVX2)
		i = swiglu_avx2(out, gate, up, n);
#else
	(void)isa;
#endif
	/* the scalar path in the same order: the polynomial for whole groups
	 * of 8 from the start of the row */
	for (const int64_t n8 = n & ~(int64_t)7; i < n8; i++) {
		const float g = gate[i];
		out[i] = g / (1.0f + expf_canon(0.0f - g)) * up[i];
	}
	for (; i < n; i++) {
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

/*
 * llama.cpp (flash attention off) computes KQ and KQV as matrix products
 * with half operands when the cache is half: Q and the softmax
 * probabilities are rounded to half before they meet K and V.  How the
 * products are summed depends on how llama.cpp was fed the row:
 *   - a prompt (a batch of >= 2 tokens) goes through its tiled GEMM: each
 *     result is one 8-lane FMA accumulator along the reduction, the lanes
 *     summed at the end;
 *   - a generated token (decoded alone) goes through its row dot product:
 *     four 8-lane accumulators over strides of 32, folded differently.
 * A float cache reads Q·K with the dot product in both cases.  The softmax
 * takes exponentials 8 at a time with a polynomial (not libm's expf) and adds
 * each group's float sum into a double.  The AVX2 path below follows all of
 * that, `single` choosing the generated-token order, so its output is
 * bit-identical to llama.cpp's AVX2 build.  Activation quantization
 * downstream turns any last-bit difference into a visible one (this model:
 * ~0.1-0.4 mean |dlogit| from one flipped Q8 rounding), so the order matters.
 * attention_canon does the same arithmetic in scalar C, so every ISA gives
 * the same bits; only head_dim % 8 != 0 (no such model) takes the plain
 * formula, on every ISA.
 */
size_t pf_cpu_attention_scratch(int32_t n_q, int32_t n_ctx, int32_t head_dim)
{
	size_t n8 = ((size_t)n_ctx + 7) & ~(size_t)7;
	return (size_t)n_q * (n8 + (size_t)head_dim + 32 * (size_t)head_dim);
}

#ifdef PF_X86
/* llama.cpp's single-row dot product (ggml_vec_dot_f16/_f32, AVX2): four
 * 8-lane accumulators over strides of 32, folded (0+2) + (1+3), the lanes
 * then as (0+4 + 1+5) + (2+6 + 3+7).  n % 32 == 0. */
__attribute__((target("avx2,fma,f16c")))
static inline float dot32_avx2(const void *x, bool f16, const float *y, int32_t n)
{
	const size_t es = f16 ? 2 : 4;
	const char *xb = x;
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	for (int32_t i = 0; i < n; i += 32) {
		s0 = _mm256_fmadd_ps(load8_kv(xb + (size_t)i * es, f16), _mm256_loadu_ps(y + i), s0);
		s1 = _mm256_fmadd_ps(load8_kv(xb + (size_t)(i + 8) * es, f16), _mm256_loadu_ps(y + i + 8), s1);
		s2 = _mm256_fmadd_ps(load8_kv(xb + (size_t)(i + 16) * es, f16), _mm256_loadu_ps(y + i + 16), s2);
		s3 = _mm256_fmadd_ps(load8_kv(xb + (size_t)(i + 24) * es, f16), _mm256_loadu_ps(y + i + 24), s3);
	}
	return hsum8_fold_avx2(_mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3)));
}

__attribute__((target("avx2,fma,f16c")))
static void attention_avx2(const struct pf_attn_args *a)
{
	const int32_t hd = a->head_dim, bs = a->block_size, nq = a->n_q, n = a->n_ctx;
	const int32_t n8 = (n + 7) & ~7;
	const bool f16 = a->kv_dtype == PF_DT_F16;
	const size_t es = f16 ? 2 : 4;
	/* the single-row order needs head_dim % 32 for Q·K */
	const bool single = a->single && hd % 32 == 0;
	const int32_t nlanes = single ? 32 : 8;
	float *scores = a->scratch;                   /* (n_q, n8) */
	float *qh = scores + (int64_t)nq * n8;        /* (n_q, head_dim) */
	float *acc = qh + (int64_t)nq * hd;           /* (n_q, nlanes, head_dim): partial P·V sums */

	for (int32_t i = 0; i < nq * hd; i += 8) {
		__m256 q = _mm256_loadu_ps(a->q + i);
		_mm256_storeu_ps(qh + i, f16 ? round_half8(q) : q);
	}
	/* Q·K.  The GEMM: one 8-lane accumulator along head_dim.  llama.cpp
	 * reads float K with the (permuted) float queries through its
	 * single-row dot product even for a batch, so float K always does. */
	const bool kq32 = (single || !f16) && hd % 32 == 0;
	for (int32_t j = 0; j < n; j++) {
		int64_t row = ((int64_t)a->table[j / bs] * a->n_head_kv + a->kvh) * bs + j % bs;
		const char *k = (const char *)a->k_base + (size_t)row * (size_t)hd * es;
		for (int32_t h = 0; h < nq; h++) {
			const float *qr = qh + h * hd;
			float s;
			if (kq32) {
				s = dot32_avx2(k, f16, qr, hd);
			} else {
				__m256 acc8 = _mm256_setzero_ps();
				for (int32_t i = 0; i < hd; i += 8)
					acc8 = _mm256_fmadd_ps(load8_kv(k + (size_t)i * es, f16), _mm256_loadu_ps(qr + i), acc8);
				s = hsum8_avx2(acc8);
			}
			scores[(int64_t)h * n8 + j] = s * a->scale;
		}
	}
	for (int32_t h = 0; h < nq; h++) {
		float *sc = scores + (int64_t)h * n8;
		float mx = -INFINITY;
		for (int32_t j = 0; j < n; j++)
			mx = sc[j] > mx ? sc[j] : mx;
		for (int32_t j = n; j < n8; j++)
			sc[j] = -INFINITY; /* as masked positions: e^-inf = 0 */
		double sum = 0.0;
		for (int32_t j = 0; j < n8; j += 8) {
			__m256 e = expf8_avx2(_mm256_sub_ps(_mm256_loadu_ps(sc + j), _mm256_set1_ps(mx)));
			_mm256_storeu_ps(sc + j, e);
			sum += (double)hsum8_avx2(e);
		}
		const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
		for (int32_t j = 0; j < n8; j += 8) {
			__m256 p = _mm256_mul_ps(_mm256_loadu_ps(sc + j), inv);
			_mm256_storeu_ps(sc + j, f16 ? round_half8(p) : p);
		}
	}

	/* P·V: each output element keeps `nlanes` partial sums, position j
	 * going to sum j % nlanes (the GEMM: 8 lanes; the single-row dot
	 * product: 4 accumulators of 8 lanes over strides of 32) */
	memset(acc, 0, (size_t)nq * (size_t)nlanes * (size_t)hd * sizeof(float));
	for (int32_t j = 0; j < n; j++) {
		int64_t row = ((int64_t)a->table[j / bs] * a->n_head_kv + a->kvh) * bs + j % bs;
		const char *v = (const char *)a->v_base + (size_t)row * (size_t)hd * es;
		for (int32_t h = 0; h < nq; h++) {
			const __m256 pj = _mm256_set1_ps(scores[(int64_t)h * n8 + j]);
			float *al = acc + ((int64_t)h * nlanes + j % nlanes) * hd;
			for (int32_t i = 0; i < hd; i += 8)
				_mm256_storeu_ps(al + i, _mm256_fmadd_ps(load8_kv(v + (size_t)i * es, f16), pj,
									 _mm256_loadu_ps(al + i)));
		}
	}
	for (int32_t h = 0; h < nq; h++) {
		const float *ah = acc + (int64_t)h * nlanes * hd;
		float *o = a->out + (int64_t)h * hd;
		for (int32_t i = 0; i < hd; i += 8) {
#define L(x) _mm256_loadu_ps(ah + (x) * hd + i)
			__m256 l[8];
			for (int32_t m = 0; m < 8; m++) /* single: fold the 4 accumulators (0+2) + (1+3) */
				l[m] = single ? _mm256_add_ps(_mm256_add_ps(L(m), L(16 + m)), _mm256_add_ps(L(8 + m), L(24 + m)))
					      : L(m);
#undef L
			const __m256 t0 = _mm256_add_ps(l[0], l[4]), t1 = _mm256_add_ps(l[1], l[5]);
			const __m256 t2 = _mm256_add_ps(l[2], l[6]), t3 = _mm256_add_ps(l[3], l[7]);
			/* the lanes: (0+4 + 1+5) + (2+6 + 3+7) single, else (0+4 + 2+6) + (1+5 + 3+7) */
			const __m256 r = single ? _mm256_add_ps(_mm256_add_ps(t0, t1), _mm256_add_ps(t2, t3))
						: _mm256_add_ps(_mm256_add_ps(t0, t2), _mm256_add_ps(t1, t3));
			_mm256_storeu_ps(o + i, r);
		}
	}
}
#endif

static inline const void *kv_row(const void *base, uint32_t dt, int64_t idx, int32_t hd)
{
	size_t es = dt == PF_DT_F32 ? 4 : 2;
	return (const char *)base + (size_t)idx * (size_t)hd * es;
}

static float kv_at(const void *row, uint32_t dt, int32_t i)
{
	return dt == PF_DT_F32 ? ((const float *)row)[i] : pf_f16_to_f32(((const uint16_t *)row)[i]);
}

/* attention_avx2's arithmetic, lane by lane (head_dim % 8 == 0); the
 * comments there say why each order is what it is */
static float dot32_canon(const void *x, uint32_t dt, const float *y, int32_t n)
{
	float s[4][8] = { { 0 } }, v[8];
	for (int32_t i = 0; i < n; i += 32)
		for (int c = 0; c < 4; c++)
			for (int l = 0; l < 8; l++)
				s[c][l] = fmaf(kv_at(x, dt, i + 8 * c + l), y[i + 8 * c + l], s[c][l]);
	for (int l = 0; l < 8; l++)
		v[l] = (s[0][l] + s[2][l]) + (s[1][l] + s[3][l]);
	return hsum8_fold_canon(v);
}

static void attention_canon(const struct pf_attn_args *a)
{
	const int32_t hd = a->head_dim, bs = a->block_size, nq = a->n_q, n = a->n_ctx;
	const int32_t n8 = (n + 7) & ~7;
	const bool f16 = a->kv_dtype == PF_DT_F16;
	const bool single = a->single && hd % 32 == 0;
	const int32_t nlanes = single ? 32 : 8;
	float *scores = a->scratch;                   /* (n_q, n8) */
	float *qh = scores + (int64_t)nq * n8;        /* (n_q, head_dim) */
	float *acc = qh + (int64_t)nq * hd;           /* (n_q, nlanes, head_dim) */

	for (int32_t i = 0; i < nq * hd; i++)
		qh[i] = f16 ? round_half(a->q[i]) : a->q[i];
	const bool kq32 = (single || !f16) && hd % 32 == 0;
	for (int32_t j = 0; j < n; j++) {
		int64_t row = ((int64_t)a->table[j / bs] * a->n_head_kv + a->kvh) * bs + j % bs;
		const void *k = kv_row(a->k_base, a->kv_dtype, row, hd);
		for (int32_t h = 0; h < nq; h++) {
			const float *qr = qh + h * hd;
			float s;
			if (kq32) {
				s = dot32_canon(k, a->kv_dtype, qr, hd);
			} else {
				float acc8[8] = { 0 };
				for (int32_t i = 0; i < hd; i += 8)
					for (int l = 0; l < 8; l++)
						acc8[l] = fmaf(kv_at(k, a->kv_dtype, i + l), qr[i + l], acc8[l]);
				s = hsum8_canon(acc8);
			}
			scores[(int64_t)h * n8 + j] = s * a->scale;
		}
	}
	for (int32_t h = 0; h < nq; h++) {
		float *sc = scores + (int64_t)h * n8;
		float mx = -INFINITY;
		for (int32_t j = 0; j < n; j++)
			mx = sc[j] > mx ? sc[j] : mx;
		for (int32_t j = n; j < n8; j++)
			sc[j] = -INFINITY;
		double sum = 0.0;
		for (int32_t j = 0; j < n8; j += 8) {
			for (int l = 0; l < 8; l++)
				sc[j + l] = expf_canon(sc[j + l] - mx);
			sum += (double)hsum8_canon(sc + j);
		}
		const float inv = (float)(1.0 / sum);
		for (int32_t j = 0; j < n8; j++)
			sc[j] = f16 ? round_half(sc[j] * inv) : sc[j] * inv;
	}
	memset(acc, 0, (size_t)nq * (size_t)nlanes * (size_t)hd * sizeof(float));
	for (int32_t j = 0; j < n; j++) {
		int64_t row = ((int64_t)a->table[j / bs] * a->n_head_kv + a->kvh) * bs + j % bs;
		const void *v = kv_row(a->v_base, a->kv_dtype, row, hd);
		for (int32_t h = 0; h < nq; h++) {
			const float pj = scores[(int64_t)h * n8 + j];
			float *al = acc + ((int64_t)h * nlanes + j % nlanes) * hd;
			for (int32_t i = 0; i < hd; i++)
				al[i] = fmaf(kv_at(v, a->kv_dtype, i), pj, al[i]);
		}
	}
	for (int32_t h = 0; h < nq; h++) {
		const float *ah = acc + (int64_t)h * nlanes * hd;
		float *o = a->out + (int64_t)h * hd;
		for (int32_t i = 0; i < hd; i++) {
#define L(x) ah[(x) * hd + i]
			float l[8];
			for (int32_t m = 0; m < 8; m++)
				l[m] = single ? (L(m) + L(16 + m)) + (L(8 + m) + L(24 + m)) : L(m);
#undef L
			const float t0 = l[0] + l[4], t1 = l[1] + l[5], t2 = l[2] + l[6], t3 = l[3] + l[7];
			o[i] = single ? (t0 + t1) + (t2 + t3) : (t0 + t2) + (t1 + t3);
		}
	}
}

void pf_cpu_attention(const struct pf_attn_args *a)
{
	if (a->head_dim % 8 == 0) {
#ifdef PF_X86
		if (a->isa >= PF_ISA_AVX2) { /* the AVX2 level implies FMA and F16C */
			attention_avx2(a);
			return;
		}
#endif
		attention_canon(a);
		return;
	}
	/* head_dim % 8 != 0: the plain formula on every ISA */
	const int32_t hd = a->head_dim, bs = a->block_size, nq = a->n_q, n = a->n_ctx;
	float *scores = a->scratch;                 /* (n_q, n_ctx) */
	float *qh = a->scratch + (int64_t)nq * n;   /* (n_q, head_dim) queries, rounded to half for a half cache */
	const bool f16 = a->kv_dtype == PF_DT_F16;

	for (int32_t i = 0; i < nq * hd; i++)
		qh[i] = f16 ? pf_f16_to_f32(pf_f32_to_f16(a->q[i])) : a->q[i];
	for (int32_t j = 0; j < n; j++) {
		int64_t row = ((int64_t)a->table[j / bs] * a->n_head_kv + a->kvh) * bs + j % bs;
		const void *k = kv_row(a->k_base, a->kv_dtype, row, hd);
		for (int32_t h = 0; h < nq; h++) {
			float s = 0.0f;
			for (int32_t i = 0; i < hd; i++)
				s += qh[h * hd + i] * kv_at(k, a->kv_dtype, i);
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
		for (int32_t j = 0; j < n; j++) {
			sc[j] *= inv;
			if (f16) /* the probabilities meet a half V as halves */
				sc[j] = pf_f16_to_f32(pf_f32_to_f16(sc[j]));
		}
		memset(a->out + (int64_t)h * hd, 0, (size_t)hd * sizeof(float));
	}
	for (int32_t j = 0; j < n; j++) {
		int64_t row = ((int64_t)a->table[j / bs] * a->n_head_kv + a->kvh) * bs + j % bs;
		const void *v = kv_row(a->v_base, a->kv_dtype, row, hd);
		for (int32_t h = 0; h < nq; h++) {
			float p = scores[(int64_t)h * n + j];
			float *o = a->out + (int64_t)h * hd;
			for (int32_t i = 0; i < hd; i++)
				o[i] += p * kv_at(v, a->kv_dtype, i);
		}
	}
}
