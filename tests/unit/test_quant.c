/*
 * test_quant.c — quantized formats and dot-product kernels (kernels/cpu/quant.h).
 *
 * For every weight type and every ISA this CPU runs: random weight rows are
 * quantized with pf_quantize_weights_ref and dequantized; vec_dot against a
 * quantized activation row is compared with a float64 dot of the dequantized
 * weights and the float activations (normalised error |got-ref| / Σ|w_i x_i|,
 * which is what activation quantization costs), and each SIMD kernel with the
 * scalar kernel on the same activation bytes (a much tighter bound: only the
 * float summation order differs).  Shapes cover one block, odd block counts
 * (every unroll tail) and model widths.  Also: dequant round trips, the half
 * conversions (exhaustively against F16C where the CPU has it), the Q8_1 and
 * Q8_K activation layouts, the ISA cap (PF_ISA) and the dispatch table.
 * Everything is seeded and deterministic; PF_ASAN=1 shortens the loops.
 *
 * Not a test: `test_quant --bench` (or PF_QUANT_BENCH=1) prints GB/s of
 * weights streamed by each kernel on each ISA, rows of n = 576 and 1536.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kernels/dtype.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"
#include "tests/unit/testutil.h"

#if PF_QUANT_X86
#include <immintrin.h>
#endif

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
	rng_state = s;
}

static uint64_t rng_next(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static double rng_unif(void)
{
	return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

/* roughly normal (Irwin–Hall of 4) */
static float rng_gauss(void)
{
	double s = rng_unif() + rng_unif() + rng_unif() + rng_unif() - 2.0;
	return (float)(s * 1.7320508);
}

static int asan_mode(void)
{
	const char *e = getenv("PF_ASAN");
	return e && *e && strcmp(e, "0");
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	assert_non_null(p);
	return p;
}

static const uint32_t wtypes[] = {
	PF_DT_Q4_0, PF_DT_Q4_1, PF_DT_Q8_0, PF_DT_Q4_K, PF_DT_Q6_K, PF_DT_F16, PF_DT_BF16, PF_DT_F32,
};
#define N_WTYPES (sizeof(wtypes) / sizeof(wtypes[0]))

static int64_t block_of(uint32_t t)
{
	return pf_dtype_info(t)->block_elems;
}

static size_t wrow_bytes(uint32_t t, int64_t n)
{
	return pf_dtype_row_bytes(t, (uint64_t)n);
}

/* Fill one row in one of several shapes of data. */
static void fill_row(float *x, int64_t n, int kind)
{
	const float scale = (float)(0.01 + 3.0 * rng_unif());

	for (int64_t j = 0; j < n; j++) {
		float v = rng_gauss() * scale;
		switch (kind % 5) {
		case 1: /* offset: exercises the min terms of Q4_1 / Q4_K */
			v += 0.7f * scale;
			break;
		case 2: /* outliers */
			if (rng_next() % 61 == 0)
				v *= 12.0f;
			break;
		case 3: /* whole zero blocks between data */
			if ((j / 32) % 3 == 1)
				v = 0.0f;
			break;
		case 4: /* all positive, wide range */
			v = fabsf(v) * (float)(1 + j % 7);
			break;
		}
		x[j] = v;
	}
}

/* ---- tolerances ------------------------------------------------------------ */

/* vec_dot vs float64 dequant(w)·x, normalised by Σ|w x|: the error is the
 * activation's quantization (8-bit: ~1/254 per element, relative) */
static double tol_vs_exact(uint32_t t)
{
	switch (t) {
	case PF_DT_F32: case PF_DT_BF16: return 1e-5;
	case PF_DT_F16: return 2e-3;
	default: return 1e-2;
	}
}

/* RMS(dequant(quant(x)) - x) / RMS(x) on gaussian data */
static double tol_roundtrip(uint32_t t)
{
	switch (t) {
	case PF_DT_Q4_0: return 0.13;
	case PF_DT_Q4_1: return 0.13;
	case PF_DT_Q4_K: return 0.15;
	case PF_DT_Q6_K: return 0.035;
	case PF_DT_Q8_0: return 0.01;
	case PF_DT_F16: return 5e-4;
	case PF_DT_BF16: return 4e-3;
	default: return 0.0;
	}
}


/* ---- ISA ----------------------------------------------------------------- */

static enum pf_isa max_isa(void)
{
	return pf_cpu_isa_detect();
}

static void test_isa_detect(void **state)
{
	(void)state;
	enum pf_isa isa = pf_cpu_isa_detect();
	char *saved = getenv("PF_ISA") ? strdup(getenv("PF_ISA")) : NULL;

	printf("# cpu isa: %s%s\n", pf_isa_name(isa),
	       saved ? " (capped by PF_ISA)" : "");
	assert_true(isa >= PF_ISA_SCALAR && isa <= PF_ISA_AVX512VNNI);
	assert_string_equal(pf_isa_name(PF_ISA_SCALAR), "scalar");
	assert_string_equal(pf_isa_name(PF_ISA_AVX2), "avx2");
	assert_string_equal(pf_isa_name(PF_ISA_AVX512VNNI), "avx512vnni");

	unsetenv("PF_ISA");
	enum pf_isa hw = pf_cpu_isa_detect();
	setenv("PF_ISA", "scalar", 1);
	assert_int_equal(pf_cpu_isa_detect(), PF_ISA_SCALAR);
	setenv("PF_ISA", "avx2", 1);
	assert_int_equal(pf_cpu_isa_detect(), hw < PF_ISA_AVX2 ? hw : PF_ISA_AVX2);
	setenv("PF_ISA", "avx512", 1);
	assert_int_equal(pf_cpu_isa_detect(), hw);
	setenv("PF_ISA", "bogus", 1);
	assert_int_equal(pf_cpu_isa_detect(), hw);
	if (saved) {
		setenv("PF_ISA", saved, 1);
		free(saved);
	} else {
		unsetenv("PF_ISA");
	}
#if PF_QUANT_X86
	/* our cpuid decoding against the compiler runtime's */
	__builtin_cpu_init();
	int rt_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	assert_int_equal(hw >= PF_ISA_AVX2, rt_avx2);
	if (hw >= PF_ISA_AVX512VNNI)
		assert_true(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
			    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"));
#endif
}

static void test_ops_table(void **state)
{
	(void)state;
	static const struct { uint32_t w, a; } pairs[] = {
		{ PF_DT_Q4_0, PF_DT_Q8_0 }, { PF_DT_Q4_1, PF_DT_Q8_1 }, { PF_DT_Q8_0, PF_DT_Q8_0 },
		{ PF_DT_Q4_K, PF_DT_Q8_K }, { PF_DT_Q6_K, PF_DT_Q8_K }, { PF_DT_F16, PF_DT_F16 },
		{ PF_DT_BF16, PF_DT_F32 }, { PF_DT_F32, PF_DT_F32 },
	};

	for (int isa = PF_ISA_SCALAR; isa <= PF_ISA_AVX512VNNI; isa++) {
		for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
			const struct pf_qtype_ops *ops = pf_qtype_ops(pairs[i].w, (enum pf_isa)isa);
			assert_non_null(ops);
			assert_int_equal(ops->wtype, pairs[i].w);
			assert_int_equal(ops->act_type, pairs[i].a);
			assert_non_null(ops->quantize_act);
			assert_non_null(ops->vec_dot);
			assert_non_null(ops->dequant_row);
			/* the activation row size is the activation type's row size */
			assert_int_equal(pf_act_row_bytes(pairs[i].w, 1536),
					 pf_dtype_row_bytes(pairs[i].a, 1536));
		}
		assert_null(pf_qtype_ops(PF_DT_Q5_0, (enum pf_isa)isa));
		assert_null(pf_qtype_ops(PF_DT_Q8_K, (enum pf_isa)isa));
		assert_null(pf_qtype_ops(999, (enum pf_isa)isa));
	}
	assert_int_equal(pf_act_row_bytes(PF_DT_Q4_0, 33), 0);
	assert_int_equal(pf_act_row_bytes(PF_DT_Q4_K, 288), 0);
	assert_int_equal(pf_act_row_bytes(PF_DT_Q5_0, 32), 0);
	assert_int_equal(pf_act_row_bytes(PF_DT_Q4_0, 64), 68);
	assert_int_equal(pf_act_row_bytes(PF_DT_Q4_1, 64), 72);
	assert_int_equal(pf_act_row_bytes(PF_DT_Q6_K, 512), 584);
	assert_int_equal(pf_act_row_bytes(PF_DT_F16, 7), 14);
	assert_int_equal(pf_act_row_bytes(PF_DT_BF16, 7), 28);

	float x[256] = { 0 };
	uint8_t buf[1024];
	assert_int_equal(pf_quantize_weights_ref(PF_DT_Q4_0, x, buf, 48), -EINVAL);
	assert_int_equal(pf_quantize_weights_ref(PF_DT_Q4_K, x, buf, 128), -EINVAL);
	assert_int_equal(pf_quantize_weights_ref(PF_DT_Q5_0, x, buf, 32), -EINVAL);
	assert_int_equal(pf_quantize_weights_ref(PF_DT_Q8_K, x, buf, 256), -EINVAL);
	assert_int_equal(pf_quantize_weights_ref(999, x, buf, 32), -EINVAL);
	assert_int_equal(pf_quantize_weights_ref(PF_DT_Q4_K, x, buf, 256), 0);
}

/* ---- half precision -------------------------------------------------------- */

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static void test_f16_edges(void **state)
{
	(void)state;
	static const struct { float f; uint16_t h; } cases[] = {
		{ 0.0f, 0x0000 }, { -0.0f, 0x8000 }, { 1.0f, 0x3c00 }, { -2.0f, 0xc000 },
		{ 65504.0f, 0x7bff }, { -65504.0f, 0xfbff },
		{ 65519.996f, 0x7bff },        /* just below the tie to inf */
		{ 65520.0f, 0x7c00 },          /* tie: 0x7bff is odd -> rounds up to inf */
		{ 1e10f, 0x7c00 }, { -1e10f, 0xfc00 },
		{ 0x1p-14f, 0x0400 },          /* smallest normal */
		{ 0x1p-24f, 0x0001 },          /* smallest subnormal */
		{ 0x1p-25f, 0x0000 },          /* tie between 0 and 2^-24: even -> 0 */
		{ 0x1.000002p-25f, 0x0001 },   /* just above the tie */
		{ 0x1.8p-24f, 0x0002 },        /* 1.5 units: tie -> even 2 */
		{ 0x1.4p-23f, 0x0002 },        /* 2.5 units: tie -> even 2 */
		{ -0x1p-24f, 0x8001 },
		{ 0x1.ffcp-15f, 0x0400 },      /* largest subnormal + half unit: tie -> even (normal) */
		{ 0x1.ff8p-15f, 0x03ff },      /* largest subnormal */
		{ 0x1.ff0p-15f, 0x03fe },
		{ 0x1.002p+0f, 0x3c00 },       /* 1 + 2^-11: tie -> even 1.0 */
		{ 0x1.006p+0f, 0x3c02 },       /* 1 + 3·2^-11: tie -> even 0x3c02 */
		{ 0x1.0020000p+0f + 0x1p-23f, 0x3c01 }, /* above the tie */
		{ 0x1.ffdp+15f, 0x7bff },        /* 65512: below the tie */
		{ 1e-10f, 0x0000 }, { -1e-10f, 0x8000 },
		{ 0.333333343f, 0x3555 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint16_t h = pf_f32_to_f16(cases[i].f);
		if (h != cases[i].h)
			fail_msg("f32_to_f16(%a) = 0x%04x, want 0x%04x", (double)cases[i].f, h, cases[i].h);
	}
	assert_int_equal(pf_f32_to_f16(INFINITY), 0x7c00);
	assert_int_equal(pf_f32_to_f16(-INFINITY), 0xfc00);
	uint16_t hn = pf_f32_to_f16(NAN);
	assert_true((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
	/* a NaN whose payload sits only in the low bits must stay a NaN */
	hn = pf_f32_to_f16(bits_f32(0x7f800001u));
	assert_true((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
	assert_true(isnan(pf_f16_to_f32(0x7e00)) && isnan(pf_f16_to_f32(0xfc01)));
	assert_true(isinf(pf_f16_to_f32(0x7c00)) && pf_f16_to_f32(0xfc00) < 0);
	assert_true(pf_f16_to_f32(0x0001) == 0x1p-24f);
	assert_true(pf_f16_to_f32(0x03ff) == 0x1.ff8p-15f);
	assert_true(pf_f16_to_f32(0x7bff) == 65504.0f);
	assert_true(f32_bits(pf_f16_to_f32(0x8000)) == 0x80000000u);

	/* every half: f16 -> f32 is exact (checked against ldexp) and goes back */
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = pf_f16_to_f32((uint16_t)h);
		uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
		if (e == 0x1f) {
			assert_true(m ? isnan(f) : isinf(f));
			if (m)
				assert_int_equal(pf_f32_to_f16(f), h | 0x200); /* made quiet */
			else
				assert_int_equal(pf_f32_to_f16(f), h);
			continue;
		}
		double want = e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
		if (h & 0x8000)
			want = -want;
		assert_true((double)f == want);
		assert_int_equal(pf_f32_to_f16(f), h);
	}

	/* bf16 */
	assert_true(pf_bf16_to_f32(0x3f80) == 1.0f);
	assert_true(pf_bf16_to_f32(0xc000) == -2.0f);
	assert_true(isinf(pf_bf16_to_f32(0x7f80)));
	assert_true(isnan(pf_bf16_to_f32(0x7fc0)));
	assert_true(f32_bits(pf_bf16_to_f32(0x8000)) == 0x80000000u);
	assert_true(pf_bf16_to_f32(0x0001) == 0x1p-133f);
	{
		/* the BF16 weight quantizer rounds to nearest even */
		float in[4] = { bits_f32(0x3f808000u), bits_f32(0x3f818000u), bits_f32(0x3f808001u), NAN };
		uint16_t out[4];
		assert_int_equal(pf_quantize_weights_ref(PF_DT_BF16, in, out, 4), 0);
		assert_int_equal(out[0], 0x3f80);
		assert_int_equal(out[1], 0x3f82);
		assert_int_equal(out[2], 0x3f81);
		assert_true(isnan(pf_bf16_to_f32(out[3])));
	}
}

#if PF_QUANT_X86
__attribute__((target("avx2,fma,f16c"))) static float hw_f16_to_f32(uint16_t h)
{
	return _cvtsh_ss(h);
}

__attribute__((target("avx2,fma,f16c"))) static uint16_t hw_f32_to_f16(float f)
{
	return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
#endif

/* Against the F16C instructions: every half, and random and boundary floats. */
static void test_f16_vs_f16c(void **state)
{
	(void)state;
#if PF_QUANT_X86
	if (max_isa() < PF_ISA_AVX2) {
		printf("# f16 vs F16C: skipped (no F16C here)\n");
		return;
	}
	for (uint32_t h = 0; h < 0x10000; h++) {
		float a = pf_f16_to_f32((uint16_t)h), b = hw_f16_to_f32((uint16_t)h);
		if (f32_bits(a) != f32_bits(b))
			fail_msg("f16 0x%04x: 0x%08x vs F16C 0x%08x", h, f32_bits(a), f32_bits(b));
	}
	rng_seed(7);
	const long n = asan_mode() ? 1L << 18 : 1L << 23;
	for (long i = 0; i < n; i++) {
		uint32_t u = (uint32_t)rng_next();
		/* half the samples in the half range, around rounding boundaries */
		if (i & 1) /* inside the half range; every other one an exact tie */
			u = (u & 0x80000000u) | ((0x33000000u + (uint32_t)(rng_next() % 0x14c00000u)) & 0x7fffe000u) |
			    ((i & 2) ? 0x1000u : (u & 0x1fffu));
		float f = bits_f32(u);
		uint16_t a = pf_f32_to_f16(f), b = hw_f32_to_f16(f);
		if (a != b)
			fail_msg("f32 0x%08x: 0x%04x vs F16C 0x%04x", u, a, b);
	}
	/* a strided sweep over every magnitude that can round to a half */
	long swept = 0;
	const uint32_t stride = asan_mode() ? 4093 : 61;
	for (uint32_t u = 0x33000000u; u < 0x47800000u; u += stride, swept += 2) {
		uint16_t a = pf_f32_to_f16(bits_f32(u)), b2 = hw_f32_to_f16(bits_f32(u));
		if (a != b2)
			fail_msg("f32 0x%08x: 0x%04x vs F16C 0x%04x", u, a, b2);
		a = pf_f32_to_f16(bits_f32(u | 0x80000000u));
		b2 = hw_f32_to_f16(bits_f32(u | 0x80000000u));
		if (a != b2)
			fail_msg("f32 0x%08x: 0x%04x vs F16C 0x%04x", u | 0x80000000u, a, b2);
	}
	printf("# f16 conversions agree with F16C (65536 halves, %ld random + %ld swept floats)\n", n, swept);
#else
	printf("# f16 vs F16C: skipped (not x86)\n");
#endif
}

/* ---- activation layouts ----------------------------------------------------- */

static void test_q4k_scales_unpack(void **state)
{
	(void)state;
	rng_seed(11);
	for (int it = 0; it < 1000; it++) {
		uint8_t q[12], sc[8], m[8];
		for (int j = 0; j < 12; j++)
			q[j] = (uint8_t)rng_next();
		pf_q4k_unpack_scales(q, sc, m);
		/* the format, byte by byte */
		for (int j = 0; j < 8; j++) {
			uint8_t d, mm;
			if (j < 4) {
				d = q[j] & 63;
				mm = q[j + 4] & 63;
			} else {
				d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
				mm = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
			}
			assert_int_equal(sc[j], d);
			assert_int_equal(m[j], mm);
		}
	}
}

static void test_q8_1_layout(void **state)
{
	(void)state;
	assert_int_equal(offsetof(struct pf_block_q8_1, d), 0);
	assert_int_equal(offsetof(struct pf_block_q8_1, s), 2);
	assert_int_equal(offsetof(struct pf_block_q8_1, qs), 4);

	const int64_t n = 1536;
	float *x = xmalloc(n * sizeof(float));
	struct pf_block_q8_1 *y = xmalloc(pf_act_row_bytes(PF_DT_Q4_1, n));
	rng_seed(3);
	fill_row(x, n, 1);
	x[5] = 0.0f;
	for (int j = 32; j < 64; j++)
		x[j] = 0.0f; /* an all-zero block */

	for (int isa = PF_ISA_SCALAR; isa <= (int)max_isa(); isa++) {
		const struct pf_qtype_ops *ops = pf_qtype_ops(PF_DT_Q4_1, (enum pf_isa)isa);
		ops->quantize_act(x, y, n);
		for (int64_t b = 0; b < n / 32; b++) {
			float amax = 0.0f;
			int sum = 0;
			for (int j = 0; j < 32; j++)
				amax = fmaxf(amax, fabsf(x[32 * b + j]));
			const float d = amax / 127.0f;
			const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
			for (int j = 0; j < 32; j++) {
				int q = (int)rintf(x[32 * b + j] * id);
				assert_int_equal(y[b].qs[j], q);
				sum += q;
			}
			/* d is f16(amax/127); s is f16 of the float d (unrounded) · Σq */
			assert_int_equal(y[b].d, pf_f32_to_f16(d));
			assert_int_equal(y[b].s, pf_f32_to_f16(d * (float)sum));
			if (b == 1)
				assert_int_equal(y[b].s, 0);
		}
	}
	free(x);
	free(y);
}

static void test_q8_K_layout(void **state)
{
	(void)state;
	const int64_t n = 768;
	float *x = xmalloc(n * sizeof(float));
	struct pf_block_q8_K *y = xmalloc(pf_act_row_bytes(PF_DT_Q4_K, n));

	rng_seed(5);
	fill_row(x, n, 0);
	/* the element of largest magnitude always maps to -127; d carries the sign */
	x[17] = 50.0f;        /* block 0: positive extreme -> d < 0 */
	x[256 + 3] = -50.0f;  /* block 1: negative extreme -> d > 0 */
	x[256 + 40] = 50.0f;  /* the same magnitude later: the first one decides */
	for (int j = 512; j < 768; j++)
		x[j] = 0.0f; /* block 2: all zero */
	for (int isa = PF_ISA_SCALAR; isa <= (int)max_isa(); isa++) {
		const struct pf_qtype_ops *ops = pf_qtype_ops(PF_DT_Q4_K, (enum pf_isa)isa);
		memset(y, 0x55, pf_act_row_bytes(PF_DT_Q4_K, n));
		ops->quantize_act(x, y, n);
		assert_true(y[0].d < 0.0f);
		assert_int_equal(y[0].qs[17], -127);
		assert_true(fabsf(y[0].d + 50.0f / 127.0f) < 1e-5f);
		assert_true(y[1].d > 0.0f);
		assert_int_equal(y[1].qs[3], -127);
		assert_int_equal(y[1].qs[40], 127);
		assert_true(y[2].d == 0.0f);
		for (int b = 0; b < 3; b++) {
			for (int g = 0; g < 16; g++) {
				int sum = 0;
				for (int l = 0; l < 16; l++)
					sum += y[b].qs[16 * g + l];
				assert_int_equal(y[b].bsums[g], sum);
			}
			for (int j = 0; j < 256; j++) {
				float back = y[b].d * (float)y[b].qs[j];
				assert_true(fabsf(back - x[256 * b + j]) <= fabsf(y[b].d) * 0.5001f + 1e-30f);
			}
		}
	}
	free(x);
	free(y);
}

/* Every ISA's activation quantizer gives the same bytes as the scalar one. */
static void test_act_identical(void **state)
{
	(void)state;
	const int64_t n = 4352;
	float *x = xmalloc(n * sizeof(float));
	size_t cap = pf_act_row_bytes(PF_DT_F32, n);
	uint8_t *a0 = xmalloc(cap), *a1 = xmalloc(cap);

	rng_seed(13);
	for (int kind = 0; kind < 5; kind++) {
		fill_row(x, n, kind);
		for (size_t t = 0; t < N_WTYPES; t++) {
			const size_t bytes = pf_act_row_bytes(wtypes[t], n);
			pf_qtype_ops(wtypes[t], PF_ISA_SCALAR)->quantize_act(x, a0, n);
			for (int isa = PF_ISA_AVX2; isa <= (int)max_isa(); isa++) {
				memset(a1, 0xa5, cap);
				pf_qtype_ops(wtypes[t], (enum pf_isa)isa)->quantize_act(x, a1, n);
				if (memcmp(a0, a1, bytes))
					fail_msg("%s activations differ on %s (kind %d)", pf_dtype_name(wtypes[t]),
						 pf_isa_name((enum pf_isa)isa), kind);
			}
		}
	}
	free(x);
	free(a0);
	free(a1);
}

/* ---- weights: round trips and dot products ----------------------------------- */

static void test_dequant_roundtrip(void **state)
{
	(void)state;
	const int64_t n = 4352;
	float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float)), *z = xmalloc(n * sizeof(float));
	uint8_t *w = xmalloc(wrow_bytes(PF_DT_F32, n));

	rng_seed(17);
	for (size_t t = 0; t < N_WTYPES; t++) {
		fill_row(x, n, 0);
		assert_int_equal(pf_quantize_weights_ref(wtypes[t], x, w, n), 0);
		double e2 = 0, x2 = 0;
		for (int isa = PF_ISA_SCALAR; isa <= (int)max_isa(); isa++) {
			memset(y, 0, n * sizeof(float));
			pf_qtype_ops(wtypes[t], (enum pf_isa)isa)->dequant_row(w, y, n);
			if (isa == PF_ISA_SCALAR) {
				memcpy(z, y, n * sizeof(float));
				for (int64_t j = 0; j < n; j++) {
					e2 += ((double)y[j] - x[j]) * ((double)y[j] - x[j]);
					x2 += (double)x[j] * x[j];
				}
			} else {
				assert_memory_equal(y, z, n * sizeof(float));
			}
		}
		double rel = sqrt(e2 / x2);
		printf("# %-5s round trip rms rel error %.5f\n", pf_dtype_name(wtypes[t]), rel);
		if (rel > tol_roundtrip(wtypes[t]))
			fail_msg("%s round trip error %g > %g", pf_dtype_name(wtypes[t]), rel, tol_roundtrip(wtypes[t]));
		/* dequantized values requantize to the same bytes for the exact formats */
		if (wtypes[t] == PF_DT_F16 || wtypes[t] == PF_DT_BF16 || wtypes[t] == PF_DT_F32) {
			uint8_t *w2 = xmalloc(wrow_bytes(wtypes[t], n));
			assert_int_equal(pf_quantize_weights_ref(wtypes[t], z, w2, n), 0);
			assert_memory_equal(w, w2, wrow_bytes(wtypes[t], n));
			free(w2);
		}
	}

	/* a Q4_K block built by hand: the decode is d·sc·q - dmin·m */
	{
		struct pf_block_q4_K b;
		uint8_t sc[8] = { 1, 63, 17, 32, 5, 48, 0, 33 }, m[8] = { 0, 2, 63, 31, 40, 7, 63, 16 };
		memset(&b, 0, sizeof(b));
		for (int j = 0; j < 4; j++) {
			b.scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
			b.scales[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
			b.scales[j + 8] = (uint8_t)((sc[j + 4] & 0xf) | ((m[j + 4] & 0xf) << 4));
		}
		b.d = pf_f32_to_f16(0.5f);
		b.dmin = pf_f32_to_f16(0.25f);
		for (int j = 0; j < 128; j++)
			b.qs[j] = (uint8_t)(j * 37 + 11);
		pf_qtype_ops(PF_DT_Q4_K, PF_ISA_SCALAR)->dequant_row(&b, y, 256);
		for (int e = 0; e < 256; e++) {
			int sub = e / 32, k = e / 64, l = e % 32;
			int q = (sub & 1) ? b.qs[32 * k + l] >> 4 : b.qs[32 * k + l] & 0xf;
			assert_true(y[e] == 0.5f * sc[sub] * q - 0.25f * m[sub]);
		}
	}
	/* a Q6_K block built by hand: element e of half h at l = e%32, quarter r = e/32 */
	{
		struct pf_block_q6_K b;
		memset(&b, 0, sizeof(b));
		for (int j = 0; j < 128; j++)
			b.ql[j] = (uint8_t)(j * 91 + 7);
		for (int j = 0; j < 64; j++)
			b.qh[j] = (uint8_t)(j * 53 + 3);
		for (int j = 0; j < 16; j++)
			b.scales[j] = (int8_t)(j * 23 - 128);
		b.d = pf_f32_to_f16(0.125f);
		pf_qtype_ops(PF_DT_Q6_K, PF_ISA_SCALAR)->dequant_row(&b, y, 256);
		for (int e = 0; e < 256; e++) {
			int h = e / 128, r = (e % 128) / 32, l = e % 32;
			uint8_t lb = b.ql[64 * h + l + 32 * (r & 1)];
			int lo = (r < 2) ? (lb & 0xf) : (lb >> 4);
			int hi = (b.qh[32 * h + l] >> (2 * r)) & 3;
			int q = (lo | (hi << 4)) - 32;
			assert_true(y[e] == 0.125f * (float)b.scales[e / 16] * (float)q);
		}
	}
	free(x);
	free(y);
	free(z);
	free(w);
}

struct shape_case {
	uint32_t wtype;
	const int64_t *ns;
	int count;
};

static const int64_t ns_32[] = { 32, 64, 96, 160, 224, 576, 1184, 1536, 4352 };
static const int64_t ns_256[] = { 256, 512, 768, 1536, 1792, 4352 };
static const int64_t ns_1[] = { 1, 7, 8, 31, 33, 100, 576, 1000, 1536, 4097, 4352 };

static void shapes_for(uint32_t t, const int64_t **ns, int *count)
{
	if (block_of(t) == 32) {
		*ns = ns_32;
		*count = (int)(sizeof(ns_32) / sizeof(ns_32[0]));
	} else if (block_of(t) == 256) {
		*ns = ns_256;
		*count = (int)(sizeof(ns_256) / sizeof(ns_256[0]));
	} else {
		*ns = ns_1;
		*count = (int)(sizeof(ns_1) / sizeof(ns_1[0]));
	}
}

/* ---- AVX-512 emulation ------------------------------------------------------ */
/*
 * The AVX-512 kernels cannot run on a CPU without AVX-512, but their lane
 * logic and the order of their float sums can: kernels/cpu/avx512_emu.h
 * re-implements the intrinsics in plain C and quant_avx512_emu.c builds the
 * kernels over it (PF_ISA_AVX512EMU).  Those are checked like the others,
 * bit for bit; on an AVX-512 CPU the real ones are checked too.
 */
static const struct pf_qtype_ops *emu512_ops(uint32_t t)
{
	if (pf_cpu_isa_detect() < PF_ISA_AVX2 && getenv("PF_ISA") == NULL)
		return NULL;
	const struct pf_qtype_ops *o = pf_qtype_ops(t, PF_ISA_AVX512EMU);
	return o == pf_qtype_ops(t, PF_ISA_SCALAR) ? NULL : o;
}

/* A worst-case bound on |vec_dot - dequant(w)·x| from quantizing x: an 8-bit
 * activation element is off by at most amax/254 of its block (rounding) plus
 * the f16 rounding of its scale (2^-11 relative, so amax·2^-11 at most); a
 * half by |x|·2^-11; plus float summation (1e-5 of Σ|w x|).  For Q4_1 the
 * weight magnitude is taken as |d q| + |m| (the kernel splits the two). */
static double act_err_bound(uint32_t t, const uint8_t *w, const float *wd, const float *x, int64_t n,
			    double norm)
{
	double bound = 1e-5 * norm + 1e-30;
	int64_t blk = 0;

	switch (t) {
	case PF_DT_Q4_0: case PF_DT_Q4_1: case PF_DT_Q8_0: blk = 32; break;
	case PF_DT_Q4_K: case PF_DT_Q6_K: blk = 256; break;
	case PF_DT_F16: return bound + norm * 0x1p-11;
	default: return bound;
	}
	for (int64_t b = 0; b < n / blk; b++) {
		double amax = 0, wabs = 0;
		float m = 0.0f;
		if (t == PF_DT_Q4_1)
			m = fabsf(pf_f16_to_f32(((const struct pf_block_q4_1 *)w)[b].m));
		for (int64_t j = b * blk; j < (b + 1) * blk; j++) {
			amax = fmax(amax, fabs(x[j]));
			wabs += t == PF_DT_Q4_1 ? fabs((double)wd[j] - m) + 2.0 * m : fabs(wd[j]);
		}
		bound += wabs * amax * (1.0 / 254 + 1.0 / 1024 + 1e-6);
	}
	return bound;
}

static void check_vec_dot(uint32_t t)
{
	const int64_t *ns;
	int count;
	const int rows = asan_mode() ? 3 : 10;
	const enum pf_isa top = max_isa();
	double worst_exact = 0;
	long compared = 0;

	shapes_for(t, &ns, &count);
	rng_seed(1000 + t);
	for (int c = 0; c < count; c++) {
		const int64_t n = ns[c];
		float *wf = xmalloc(n * sizeof(float)), *x = xmalloc(n * sizeof(float));
		float *wd = xmalloc(n * sizeof(float));
		/* exact sizes on the heap: ASan sees any read past a row */
		uint8_t *w = xmalloc(wrow_bytes(t, n));
		uint8_t *act = xmalloc(pf_act_row_bytes(t, n));
		uint8_t *act2 = xmalloc(pf_act_row_bytes(t, n));

		for (int r = 0; r < rows; r++) {
			fill_row(wf, n, r);
			fill_row(x, n, r / 2 + 1);
			assert_int_equal(pf_quantize_weights_ref(t, wf, w, n), 0);
			pf_qtype_ops(t, PF_ISA_SCALAR)->dequant_row(w, wd, n);
			double ref = 0, norm = 0;
			for (int64_t j = 0; j < n; j++) {
				ref += (double)wd[j] * x[j];
				norm += fabs((double)wd[j] * x[j]);
			}
			norm += 1e-30;

			/* well-conditioned rows (no outliers, no zero blocks) meet the
			 * normalised bound; every row meets the worst-case bound */
			const int plain = (r % 5 == 0 || r % 5 == 1 || r % 5 == 4) &&
					  ((r / 2 + 1) % 5 == 1 || (r / 2 + 1) % 5 == 4);
			const double bound = act_err_bound(t, w, wd, x, n, norm);

			const struct pf_qtype_ops *sops = pf_qtype_ops(t, PF_ISA_SCALAR);
			sops->quantize_act(x, act, n);
			float s_ref = NAN;
			sops->vec_dot(n, &s_ref, w, act);
			double e = fabs((double)s_ref - ref) / norm;
			if (plain && e > worst_exact)
				worst_exact = e;
			if (!(fabs((double)s_ref - ref) <= bound) || (plain && !(e <= tol_vs_exact(t))))
				fail_msg("%s scalar n=%ld row %d: got %g want %g (norm err %g, bound %g)",
					 pf_dtype_name(t), (long)n, r, (double)s_ref, ref, e, bound);

			for (int isa = PF_ISA_AVX2; isa <= (int)top; isa++) {
				const struct pf_qtype_ops *ops = pf_qtype_ops(t, (enum pf_isa)isa);
				float got = NAN;
				/* the same activation bytes as the scalar kernel saw */
				ops->vec_dot(n, &got, w, act);
				/* the canonical order: the scalar reference's bits exactly */
				if (f32_bits(got) != f32_bits(s_ref))
					fail_msg("%s %s n=%ld row %d: got %.9g (0x%08x), scalar %.9g (0x%08x)",
						 pf_dtype_name(t), pf_isa_name((enum pf_isa)isa), (long)n, r,
						 (double)got, f32_bits(got), (double)s_ref, f32_bits(s_ref));
				compared++;
				/* and its own quantizer, end to end: the same bytes */
				ops->quantize_act(x, act2, n);
				assert_memory_equal(act2, act, pf_act_row_bytes(t, n));
				ops->vec_dot(n, &got, w, act2);
				e = fabs((double)got - ref) / norm;
				if (!(fabs((double)got - ref) <= bound) || (plain && !(e <= tol_vs_exact(t))))
					fail_msg("%s %s n=%ld row %d: got %g want %g (norm err %g, bound %g)",
						 pf_dtype_name(t), pf_isa_name((enum pf_isa)isa), (long)n, r, (double)got,
						 ref, e, bound);
				/* deterministic: same inputs, same bits */
				float again = NAN;
				ops->vec_dot(n, &again, w, act2);
				assert_true(f32_bits(again) == f32_bits(got));
			}
			const struct pf_qtype_ops *eops = emu512_ops(t);
			if (eops) {
				float got = NAN;
				eops->vec_dot(n, &got, w, act);
				if (f32_bits(got) != f32_bits(s_ref))
					fail_msg("%s avx512vnni (emulated) n=%ld row %d: got %.9g (0x%08x), scalar %.9g (0x%08x)",
						 pf_dtype_name(t), (long)n, r, (double)got, f32_bits(got), (double)s_ref,
						 f32_bits(s_ref));
				compared++;
			}
		}
		free(wf);
		free(x);
		free(wd);
		free(w);
		free(act);
		free(act2);
	}
	printf("# %-5s vec_dot: scalar vs exact %.2e", pf_dtype_name(t), worst_exact);
	printf("; %ld SIMD results bit-identical to scalar (avx2%s, avx512vnni%s, avx512 emulated%s)\n", compared,
	       top >= PF_ISA_AVX2 ? "" : " not on this CPU", top >= PF_ISA_AVX512VNNI ? "" : " not on this CPU",
	       emu512_ops(t) ? "" : ": needs AVX2");
}

static void test_vec_dot_q4_0(void **s) { (void)s; check_vec_dot(PF_DT_Q4_0); }
static void test_vec_dot_q4_1(void **s) { (void)s; check_vec_dot(PF_DT_Q4_1); }
static void test_vec_dot_q8_0(void **s) { (void)s; check_vec_dot(PF_DT_Q8_0); }
static void test_vec_dot_q4_K(void **s) { (void)s; check_vec_dot(PF_DT_Q4_K); }
static void test_vec_dot_q6_K(void **s) { (void)s; check_vec_dot(PF_DT_Q6_K); }
static void test_vec_dot_f16(void **s) { (void)s; check_vec_dot(PF_DT_F16); }
static void test_vec_dot_bf16(void **s) { (void)s; check_vec_dot(PF_DT_BF16); }
static void test_vec_dot_f32(void **s) { (void)s; check_vec_dot(PF_DT_F32); }

/* vec_dot_4x gives, bit for bit, what vec_dot gives for each of its rows. */
static void test_vec_dot_4x(void **state)
{
	(void)state;
	const enum pf_isa top = max_isa();

	rng_seed(4242);
	for (size_t t = 0; t < N_WTYPES; t++) {
		const int64_t *ns;
		int count;
		shapes_for(wtypes[t], &ns, &count);
		for (int c = 0; c < count; c++) {
			const int64_t n = ns[c];
			/* rows off 32-byte alignment, still naturally aligned */
			const size_t rb = wrow_bytes(wtypes[t], n), stride = rb + 8;
			uint8_t *w = xmalloc(3 * stride + rb);
			uint8_t *act = xmalloc(pf_act_row_bytes(wtypes[t], n));
			float *x = xmalloc(n * sizeof(float));
			for (int r = 0; r < 4; r++) {
				fill_row(x, n, r);
				assert_int_equal(pf_quantize_weights_ref(wtypes[t], x, w + r * stride, n), 0);
			}
			fill_row(x, n, 2);
			for (int isa = PF_ISA_SCALAR; isa <= (int)top + 1; isa++) {
				const struct pf_qtype_ops *ops = isa <= (int)top ? pf_qtype_ops(wtypes[t], (enum pf_isa)isa)
									  : emu512_ops(wtypes[t]);
				if (!ops)
					continue;
				float s4[4] = { NAN, NAN, NAN, NAN }, s1;
				ops->quantize_act(x, act, n);
				ops->vec_dot_4x(n, s4, w, stride, act);
				for (int r = 0; r < 4; r++) {
					ops->vec_dot(n, &s1, w + r * stride, act);
					if (f32_bits(s1) != f32_bits(s4[r]))
						fail_msg("%s %s n=%ld row %d: vec_dot_4x %.9g, vec_dot %.9g",
							 pf_dtype_name(wtypes[t]),
							 isa <= (int)top ? pf_isa_name((enum pf_isa)isa) : "avx512 (emulated)",
							 (long)n, r, (double)s4[r], (double)s1);
				}
			}
			free(w);
			free(act);
			free(x);
		}
	}
}

/* Extreme codes: every weight nibble/byte at its ends, activations at ±127;
 * integer sums must not saturate anywhere (maddubs pairs, int32 lanes). */
static void test_vec_dot_extremes(void **state)
{
	(void)state;
	const int64_t n = 1536;
	const enum pf_isa top = max_isa();
	uint8_t *w = xmalloc(wrow_bytes(PF_DT_F32, n));
	uint8_t *act = xmalloc(pf_act_row_bytes(PF_DT_F32, n));
	float *x = xmalloc(n * sizeof(float)), *wd = xmalloc(n * sizeof(float));
	static const uint32_t qt[] = { PF_DT_Q4_0, PF_DT_Q4_1, PF_DT_Q8_0, PF_DT_Q4_K, PF_DT_Q6_K };

	for (size_t t = 0; t < sizeof(qt) / sizeof(qt[0]); t++) {
		for (int pat = 0; pat < 4; pat++) {
			const size_t wb = wrow_bytes(qt[t], n);
			/* raw bytes: 0x00 / 0xff / 0x80 / 0x88 patterns everywhere, then
			 * sane scales written over the scale fields */
			static const uint8_t fill[4] = { 0x00, 0xff, 0x80, 0x77 };
			memset(w, fill[pat], wb);
			const uint16_t one = pf_f32_to_f16(0.01f);
			if (qt[t] == PF_DT_Q4_0 || qt[t] == PF_DT_Q8_0) {
				const size_t bs = qt[t] == PF_DT_Q4_0 ? 18 : 34;
				for (size_t b = 0; b < wb / bs; b++)
					memcpy(w + b * bs, &one, 2);
			} else if (qt[t] == PF_DT_Q4_1) {
				for (size_t b = 0; b < wb / 20; b++) {
					memcpy(w + b * 20, &one, 2);
					memcpy(w + b * 20 + 2, &one, 2);
				}
			} else if (qt[t] == PF_DT_Q4_K) {
				for (size_t b = 0; b < wb / 144; b++) {
					memcpy(w + b * 144, &one, 2);
					memcpy(w + b * 144 + 2, &one, 2);
				}
			} else {
				for (size_t b = 0; b < wb / 210; b++)
					memcpy(w + b * 210 + 208, &one, 2);
			}
			for (int64_t j = 0; j < n; j++)
				x[j] = (pat & 1) ? ((j & 1) ? -1.0f : 1.0f) : (j % 3 ? -1.0f : 1.0f);
			pf_qtype_ops(qt[t], PF_ISA_SCALAR)->dequant_row(w, wd, n);
			pf_qtype_ops(qt[t], PF_ISA_SCALAR)->quantize_act(x, act, n);
			double ref = 0, norm = 1e-30;
			for (int64_t j = 0; j < n; j++) {
				ref += (double)wd[j] * x[j];
				norm += fabs((double)wd[j] * x[j]);
			}
			float s_scalar = NAN;
			pf_qtype_ops(qt[t], PF_ISA_SCALAR)->vec_dot(n, &s_scalar, w, act);
			for (int isa = PF_ISA_SCALAR; isa <= (int)top; isa++) {
				float got = NAN;
				pf_qtype_ops(qt[t], (enum pf_isa)isa)->vec_dot(n, &got, w, act);
				if (f32_bits(got) != f32_bits(s_scalar))
					fail_msg("%s %s pattern %d: got %.9g, scalar %.9g", pf_dtype_name(qt[t]),
						 pf_isa_name((enum pf_isa)isa), pat, (double)got, (double)s_scalar);
				/* ±1 activations quantize exactly (to ±127, d = 1/127 in f16) */
				double e = fabs((double)got - ref) / norm;
				if (!(e <= 2e-3))
					fail_msg("%s %s pattern %d: got %g want %g (norm err %g)", pf_dtype_name(qt[t]),
						 pf_isa_name((enum pf_isa)isa), pat, (double)got, ref, e);
			}
			if (emu512_ops(qt[t])) {
				float got = NAN;
				emu512_ops(qt[t])->vec_dot(n, &got, w, act);
				if (f32_bits(got) != f32_bits(s_scalar))
					fail_msg("%s avx512 (emulated) pattern %d: got %.9g, scalar %.9g", pf_dtype_name(qt[t]),
						 pat, (double)got, (double)s_scalar);
				double e = fabs((double)got - ref) / norm;
				if (!(e <= 2e-3))
					fail_msg("%s avx512vnni (emulated) pattern %d: got %g want %g (norm err %g)",
						 pf_dtype_name(qt[t]), pat, (double)got, ref, e);
			}
		}
	}
	free(w);
	free(act);
	free(x);
	free(wd);
}

/* ---- micro benchmark ------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void bench_one(uint32_t t, enum pf_isa isa, int64_t n, size_t target_bytes, const char *label)
{
	const struct pf_qtype_ops *ops = pf_qtype_ops(t, isa);
	const size_t rb = wrow_bytes(t, n);
	if (!rb || !ops) {
		printf("  %-5s %-10s n=%-5ld %-4s n/a (n is not a whole number of blocks)\n", pf_dtype_name(t),
		       pf_isa_name(isa), (long)n, label);
		return;
	}
	const int64_t rows = (int64_t)(target_bytes / rb) + 1;
	uint8_t *w = xmalloc(rb * rows);
	float *x = xmalloc(n * sizeof(float));
	uint8_t *act = xmalloc(pf_act_row_bytes(t, n));
	float sink = 0, s;

	rng_seed(99);
	for (int64_t r = 0; r < rows; r++) {
		fill_row(x, n, (int)r);
		pf_quantize_weights_ref(t, x, w + r * rb, n);
	}
	fill_row(x, n, 0);
	ops->quantize_act(x, act, n);
	for (int64_t r = 0; r < rows; r++) { /* warm */
		ops->vec_dot(n, &s, w + r * rb, act);
		sink += s;
	}
	double t0 = now_s(), el;
	long reps = 0;
	do {
		for (int64_t r = 0; r < rows; r++) {
			ops->vec_dot(n, &s, w + r * rb, act);
			sink += s;
		}
		reps++;
		el = now_s() - t0;
	} while (el < 0.25);
	const double bytes = (double)rb * rows * reps;
	/* the same rows four at a time */
	const int64_t rows4 = rows & ~(int64_t)3;
	float s4[4];
	double t1 = now_s(), el4;
	long reps4 = 0;
	do {
		for (int64_t r = 0; r < rows4; r += 4) {
			ops->vec_dot_4x(n, s4, w + r * rb, rb, act);
			sink += s4[0] + s4[3];
		}
		reps4++;
		el4 = now_s() - t1;
	} while (el4 < 0.25);
	printf("  %-5s %-10s n=%-5ld %-4s %7.2f GB/s %7.1f ns/row | 4x: %7.2f GB/s%s\n", pf_dtype_name(t),
	       pf_isa_name(isa), (long)n, label, bytes / el * 1e-9, el / ((double)rows * reps) * 1e9,
	       (double)rb * rows4 * reps4 / el4 * 1e-9, isnan(sink) ? " (nan)" : "");
	free(w);
	free(x);
	free(act);
}

static void run_bench(void)
{
	static const int64_t ns[] = { 576, 1536 };
	const enum pf_isa top = max_isa();

	printf("quant micro benchmark: one thread, weight bytes streamed per second\n");
	printf("  L2: ~256 KiB of weight rows reused; mem: ~256 MiB of rows (DRAM-bound)\n");
	for (size_t t = 0; t < N_WTYPES; t++)
		for (size_t k = 0; k < 2; k++)
			for (int isa = PF_ISA_SCALAR; isa <= (int)top; isa++)
				bench_one(wtypes[t], (enum pf_isa)isa, ns[k], 256u << 10, "L2");
	for (size_t t = 0; t < N_WTYPES; t++)
		for (int isa = PF_ISA_AVX2; isa <= (int)top; isa++)
			bench_one(wtypes[t], (enum pf_isa)isa, 1536, 256u << 20, "mem");
	if (top < PF_ISA_AVX512VNNI)
		printf("  avx512vnni: skipped (not on this CPU)\n");
}

int main(int argc, char **argv)
{
	const char *b = getenv("PF_QUANT_BENCH");
	if ((argc > 1 && !strcmp(argv[1], "--bench")) || (b && *b && strcmp(b, "0"))) {
		run_bench();
		return 0;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_isa_detect),
		cmocka_unit_test(test_ops_table),
		cmocka_unit_test(test_f16_edges),
		cmocka_unit_test(test_f16_vs_f16c),
		cmocka_unit_test(test_q4k_scales_unpack),
		cmocka_unit_test(test_q8_1_layout),
		cmocka_unit_test(test_q8_K_layout),
		cmocka_unit_test(test_act_identical),
		cmocka_unit_test(test_dequant_roundtrip),
		cmocka_unit_test(test_vec_dot_q4_0),
		cmocka_unit_test(test_vec_dot_q4_1),
		cmocka_unit_test(test_vec_dot_q8_0),
		cmocka_unit_test(test_vec_dot_q4_K),
		cmocka_unit_test(test_vec_dot_q6_K),
		cmocka_unit_test(test_vec_dot_f16),
		cmocka_unit_test(test_vec_dot_bf16),
		cmocka_unit_test(test_vec_dot_f32),
		cmocka_unit_test(test_vec_dot_4x),
		cmocka_unit_test(test_vec_dot_extremes),
	};
	return tu_run_group_tests("test_quant", tests, NULL, NULL);
}
