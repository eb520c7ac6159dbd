/*
 * test_ops.c — the CPU backend's element-wise and attention kernels
 * (kernels/cpu/ops.c): every ISA level gives the scalar path's bits.
 *
 * SwiGLU and attention have an AVX2 path (llama.cpp's AVX2 arithmetic) and
 * a scalar path that must do the same float operations lane by lane (the
 * canonical order, quant.h).  Both are run on odd shapes, with values that
 * reach the exponential's overflow and underflow branches, and compared bit
 * for bit; each is also held to a double-precision formula, so two paths
 * that agree on a wrong answer fail too.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/dtype.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "tests/unit/testutil.h"

static uint64_t rng = 88172645463325252ull;

static float frand(float lo, float hi)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return lo + (hi - lo) * (float)((rng >> 40) * 0x1p-24);
}

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* The ISA levels with a path of their own here, beyond scalar. */
static int simd_isa(void)
{
	enum pf_isa isa = pf_cpu_isa_detect();
	return isa >= PF_ISA_AVX2 ? PF_ISA_AVX2 : -1;
}

static void test_swiglu_bits(void **state)
{
	(void)state;
	static const int64_t ns[] = { 1, 7, 8, 9, 15, 16, 63, 576, 1536, 1541 };
	int checked = 0;

	for (size_t c = 0; c < sizeof(ns) / sizeof(ns[0]); c++) {
		const int64_t n = ns[c];
		float *g = malloc(n * 4), *u = malloc(n * 4), *o0 = malloc(n * 4), *o1 = malloc(n * 4);
		for (int64_t i = 0; i < n; i++) {
			/* mostly ordinary gates, some far past e^±88 */
			g[i] = i % 11 == 3 ? frand(-200.0f, 200.0f) : frand(-12.0f, 12.0f);
			u[i] = frand(-3.0f, 3.0f);
		}
		g[0] = n > 1 ? -0.0f : g[0];
		pf_cpu_swiglu(o0, g, u, n, PF_ISA_SCALAR);
		for (int64_t i = 0; i < n; i++) {
			const double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
			if (!(fabs(o0[i] - want) <= 1e-5 * fabs(want) + 1e-30))
				fail_msg("swiglu scalar n=%ld i=%ld: g=%g got %.9g want %.9g", (long)n, (long)i,
					 (double)g[i], (double)o0[i], want);
		}
		if (simd_isa() >= 0) {
			pf_cpu_swiglu(o1, g, u, n, simd_isa());
			for (int64_t i = 0; i < n; i++)
				if (bits(o0[i]) != bits(o1[i]))
					fail_msg("swiglu avx2 n=%ld i=%ld: g=%g got %.9g, scalar %.9g", (long)n, (long)i,
						 (double)g[i], (double)o1[i], (double)o0[i]);
			checked += (int)n;
		}
		free(g), free(u), free(o0), free(o1);
	}
	printf("# swiglu: %d avx2 results bit-identical to scalar%s\n", checked,
	       simd_isa() < 0 ? " (no AVX2 on this CPU: scalar only)" : "");
}

/* softmax(q·K·scale)·V in double, from the floats the kernel reads */
static void attn_ref(const float *q, const float *K, const float *V, int32_t n, int32_t hd, float scale, bool f16,
		     double *out)
{
	double *p = malloc(sizeof(double) * (size_t)n), mx = -INFINITY, sum = 0;
	for (int32_t j = 0; j < n; j++) {
		double s = 0;
		for (int32_t i = 0; i < hd; i++) {
			float qi = f16 ? pf_f16_to_f32(pf_f32_to_f16(q[i])) : q[i];
			s += (double)qi * K[(int64_t)j * hd + i];
		}
		p[j] = s * scale;
		mx = fmax(mx, p[j]);
	}
	for (int32_t j = 0; j < n; j++)
		sum += (p[j] = exp(p[j] - mx));
	for (int32_t i = 0; i < hd; i++) {
		double o = 0;
		for (int32_t j = 0; j < n; j++)
			o += p[j] / sum * V[(int64_t)j * hd + i];
		out[i] = o;
	}
	free(p);
}

static void test_attention_bits(void **state)
{
	(void)state;
	static const int32_t hds[] = { 8, 16, 40, 64, 96, 128 };
	static const int32_t ctxs[] = { 1, 5, 17, 64, 100 };
	const int32_t bs = 16, n_head_kv = 2, nq = 3;
	int checked = 0, cases = 0;

	for (size_t a = 0; a < sizeof(hds) / sizeof(hds[0]); a++)
	for (size_t b = 0; b < sizeof(ctxs) / sizeof(ctxs[0]); b++)
	for (int dt = 0; dt < 2; dt++)
	for (int single = 0; single < 2; single++) {
		const int32_t hd = hds[a], n = ctxs[b];
		const uint32_t kv_dt = dt ? PF_DT_F16 : PF_DT_F32;
		const size_t es = dt ? 2 : 4;
		const int32_t nblk = (n + bs - 1) / bs + 1;
		/* the pool holds blocks in reverse order of the table, both KV heads */
		const size_t pool_elems = (size_t)nblk * n_head_kv * bs * hd;
		uint8_t *kp = calloc(pool_elems, es), *vp = calloc(pool_elems, es);
		int32_t *table = malloc(sizeof(int32_t) * nblk);
		float *q = malloc(sizeof(float) * nq * hd), *K = malloc(sizeof(float) * n * hd), *V = malloc(sizeof(float) * n * hd);
		const size_t scratch_n = pf_cpu_attention_scratch(nq, n, hd);
		float *scr = malloc(scratch_n * 4), *o0 = malloc(sizeof(float) * nq * hd), *o1 = malloc(sizeof(float) * nq * hd);
		const int32_t kvh = 1;

		for (int32_t t = 0; t < nblk; t++)
			table[t] = nblk - 1 - t;
		for (int32_t i = 0; i < nq * hd; i++)
			q[i] = frand(-2.0f, 2.0f);
		for (int32_t j = 0; j < n; j++) {
			const int64_t row = ((int64_t)table[j / bs] * n_head_kv + kvh) * bs + j % bs;
			for (int32_t i = 0; i < hd; i++) {
				float kf = frand(-2.0f, 2.0f), vf = frand(-1.0f, 1.0f);
				if (dt) {
					uint16_t kh = pf_f32_to_f16(kf), vh = pf_f32_to_f16(vf);
					memcpy(kp + ((size_t)row * hd + i) * 2, &kh, 2);
					memcpy(vp + ((size_t)row * hd + i) * 2, &vh, 2);
					kf = pf_f16_to_f32(kh), vf = pf_f16_to_f32(vh);
				} else {
					memcpy(kp + ((size_t)row * hd + i) * 4, &kf, 4);
					memcpy(vp + ((size_t)row * hd + i) * 4, &vf, 4);
				}
				K[(int64_t)j * hd + i] = kf;
				V[(int64_t)j * hd + i] = vf;
			}
		}
		struct pf_attn_args args = {
			.q = q, .out = o0, .k_base = kp, .v_base = vp, .kv_dtype = kv_dt, .kvh = kvh,
			.n_head_kv = n_head_kv, .head_dim = hd, .block_size = bs, .n_q = nq, .table = table,
			.n_ctx = n, .scale = 1.0f / sqrtf((float)hd), .scratch = scr, .isa = PF_ISA_SCALAR,
			.single = single,
		};
		pf_cpu_attention(&args);
		double *ref = malloc(sizeof(double) * hd);
		for (int32_t h = 0; h < nq; h++) {
			attn_ref(q + h * hd, K, V, n, hd, args.scale, dt, ref);
			for (int32_t i = 0; i < hd; i++)
				/* half probabilities (f16 cache) cost ~2^-11 relative */
				if (!(fabs(o0[h * hd + i] - ref[i]) <= (dt ? 2e-3 : 2e-5)))
					fail_msg("attention scalar hd=%d n=%d %s single=%d head %d [%d]: got %.9g want %.9g",
						 hd, n, dt ? "f16" : "f32", single, h, i, (double)o0[h * hd + i], ref[i]);
		}
		if (simd_isa() >= 0) {
			args.out = o1;
			args.isa = simd_isa();
			pf_cpu_attention(&args);
			for (int32_t i = 0; i < nq * hd; i++)
				if (bits(o0[i]) != bits(o1[i]))
					fail_msg("attention avx2 hd=%d n=%d %s single=%d [%d]: got %.9g, scalar %.9g", hd, n,
						 dt ? "f16" : "f32", single, i, (double)o1[i], (double)o0[i]);
			checked += nq * hd;
		}
		cases++;
		free(ref), free(kp), free(vp), free(table), free(q), free(K), free(V), free(scr), free(o0), free(o1);
	}
	printf("# attention: %d shapes, %d avx2 outputs bit-identical to scalar%s\n", cases, checked,
	       simd_isa() < 0 ? " (no AVX2 on this CPU: scalar only)" : "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_swiglu_bits),
		cmocka_unit_test(test_attention_bits),
	};
	return tu_run_group_tests("test_ops", tests, NULL, NULL);
}
