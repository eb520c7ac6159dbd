/*
 * quant.c — public entry points of quant.h: ISA detection, dispatch, half
 * conversions, row sizes and the reference weight quantizers.
 *
 * The kernels themselves live in quant_ref.c (portable scalar), quant_avx2.c
 * and quant_avx512.c; see quant_impl.h.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"

#if PF_QUANT_X86
#include <cpuid.h>
#endif

/* ---- instruction sets ---------------------------------------------------- */

#if PF_QUANT_X86
static uint64_t pf_xgetbv0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}
#endif

/* What the CPU and the OS support, ignoring PF_ISA. */
static enum pf_isa pf_cpu_isa_hw(void)
{
#if PF_QUANT_X86
	unsigned a, b, c, d;
	uint64_t xcr0;
	int avx2, avx512;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return PF_ISA_SCALAR;
	/* OSXSAVE, AVX, FMA, F16C */
	if (!(c & (1u << 27)) || !(c & (1u << 28)) || !(c & (1u << 12)) || !(c & (1u << 29)))
		return PF_ISA_SCALAR;
	xcr0 = pf_xgetbv0();
	if ((xcr0 & 0x6) != 0x6) /* XMM and YMM state enabled by the OS */
		return PF_ISA_SCALAR;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return PF_ISA_SCALAR;
	avx2 = !!(b & (1u << 5));
	if (!avx2)
		return PF_ISA_SCALAR;
	/* AVX512F (b16), BW (b30), VL (b31), VNNI (c11), and the opmask and
	 * both halves of the ZMM state enabled by the OS. */
	avx512 = (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31)) &&
		 (c & (1u << 11)) && (xcr0 & 0xe0) == 0xe0;
	return avx512 ? PF_ISA_AVX512VNNI : PF_ISA_AVX2;
#else
	return PF_ISA_SCALAR;
#endif
}

enum pf_isa pf_cpu_isa_detect(void)
{
	enum pf_isa isa = pf_cpu_isa_hw();
	const char *cap = getenv("PF_ISA");

	if (cap) {
		enum pf_isa c = isa;

		if (!strcmp(cap, "scalar"))
			c = PF_ISA_SCALAR;
		else if (!strcmp(cap, "avx2"))
			c = PF_ISA_AVX2;
		else if (!strcmp(cap, "avx512") || !strcmp(cap, "avx512vnni"))
			c = PF_ISA_AVX512VNNI;
		else if (!strcmp(cap, "avx512emu"))
			return isa >= PF_ISA_AVX2 ? PF_ISA_AVX512EMU : isa;
		if (c < isa)
			isa = c;
	}
	return isa;
}

const char *pf_isa_name(enum pf_isa isa)
{
	switch (isa) {
	case PF_ISA_SCALAR: return "scalar";
	case PF_ISA_AVX2: return "avx2";
	case PF_ISA_AVX512VNNI: return "avx512vnni";
	case PF_ISA_AVX512EMU: return "avx512emu";
	}
	return "unknown";
}

/* ---- dispatch ------------------------------------------------------------ */

const struct pf_qtype_ops *pf_qtype_ops(uint32_t wtype, enum pf_isa isa)
{
	const struct pf_qtype_ops *ops = NULL;
	const enum pf_isa asked = isa;

	/* Never hand out kernels this CPU cannot run, whatever the caller asks. */
	if (isa == PF_ISA_AVX512EMU) {
#if PF_QUANT_X86
		if (pf_cpu_isa_hw() >= PF_ISA_AVX2)
			ops = pf_quant_ops_avx512_emu(wtype);
#endif
		isa = PF_ISA_AVX2; /* the emulation lacks a type, or AVX2 is missing */
	}
	if (!ops && isa > PF_ISA_SCALAR) {
		enum pf_isa hw = pf_cpu_isa_hw();
		if (isa > hw)
			isa = hw;
	}
#if PF_QUANT_X86
	if (!ops && isa == PF_ISA_AVX512VNNI)
		ops = pf_quant_ops_avx512(wtype);
	if (!ops && isa >= PF_ISA_AVX2)
		ops = pf_quant_ops_avx2(wtype);
#endif
	if (!ops)
		ops = pf_quant_ops_ref(wtype);
	return pf_qtype_ops_fault(ops, wtype, asked);
}

/* The seam through which a test build swaps in a faulty kernel (tests/unit/
 * test_selfcheck.c defines a strong pf_qtype_ops_fault); weak, so every
 * other program gets this identity and the kernels as they are. */
__attribute__((weak)) const struct pf_qtype_ops *pf_qtype_ops_fault(const struct pf_qtype_ops *ops, uint32_t wtype,
								   enum pf_isa isa)
{
	(void)wtype;
	(void)isa;
	return ops;
}

size_t pf_act_row_bytes(uint32_t wtype, int64_t n)
{
	if (n < 0)
		return 0;
	switch (wtype) {
	case PF_DT_Q4_0:
	case PF_DT_Q8_0:
		return n % PF_QK ? 0 : (size_t)(n / PF_QK) * sizeof(struct pf_block_q8_0);
	case PF_DT_Q4_1:
		return n % PF_QK ? 0 : (size_t)(n / PF_QK) * sizeof(struct pf_block_q8_1);
	case PF_DT_Q4_K:
	case PF_DT_Q6_K:
		return n % PF_QK_K ? 0 : (size_t)(n / PF_QK_K) * sizeof(struct pf_block_q8_K);
	case PF_DT_F16:
		return (size_t)n * sizeof(uint16_t);
	case PF_DT_BF16:
	case PF_DT_F32:
		return (size_t)n * sizeof(float);
	default:
		return 0;
	}
}

/* ---- half precision ------------------------------------------------------ */

static inline uint32_t pf_f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

static inline float pf_bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

float pf_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t mant = h & 0x3ff;

	if (exp == 0x1f) /* inf, or NaN made quiet with its payload kept (as F16C) */
		return pf_bits_f32(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
	if (exp == 0) {
		if (!mant)
			return pf_bits_f32(sign);
		/* subnormal: mant * 2^-24, exact in float */
		float v = (float)mant * (1.0f / 16777216.0f);
		return sign ? -v : v;
	}
	return pf_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t pf_f32_to_f16(float f)
{
	uint32_t x = pf_f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	uint32_t e, m, r, rem, half;
	int shift;

	x &= 0x7fffffffu;
	if (x >= 0x7f800000u) /* inf, or NaN: quiet, top of the payload kept */
		return sign | (x > 0x7f800000u ? (uint16_t)(0x7e00 | ((x >> 13) & 0x3ff)) : 0x7c00);
	if (x >= 0x477ff000u) /* >= 65520 rounds to inf */
		return sign | 0x7c00;
	e = x >> 23;
	m = x & 0x7fffff;
	if (e >= 113) { /* normal half: 2^-14 and up */
		r = ((e - 112) << 10) | (m >> 13);
		rem = m & 0x1fff;
		if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
			r++; /* a carry into the exponent is the right answer */
		return sign | (uint16_t)r;
	}
	if (x <= 0x33000000u) /* <= 2^-25: to zero (2^-25 itself ties to even 0) */
		return sign;
	/* subnormal half: units of 2^-24; value = (m | 2^23) * 2^(e-150) */
	m |= 0x800000;
	shift = 126 - (int)e; /* 14 .. 24 */
	r = m >> shift;
	rem = m & ((1u << shift) - 1);
	half = 1u << (shift - 1);
	if (rem > half || (rem == half && (r & 1)))
		r++;
	return sign | (uint16_t)r;
}

float pf_bf16_to_f32(uint16_t h)
{
	return pf_bits_f32((uint32_t)h << 16);
}

static uint16_t pf_f32_to_bf16(float f)
{
	uint32_t x = pf_f32_bits(f);

	if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a (quiet) NaN */
		return (uint16_t)((x >> 16) | 0x40);
	x += 0x7fff + ((x >> 16) & 1); /* round to nearest even */
	return (uint16_t)(x >> 16);
}

/* ---- reference weight quantizers ---------------------------------------- */
/*
 * Plain round-to-nearest choices, enough to build test weights and for tools;
 * they do not reproduce llama.cpp's importance-weighted searches.
 */

static inline int pf_nearest(float v)
{
	return (int)rintf(v);
}

static inline int pf_clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Value of largest magnitude in x[0..n) (the first one on ties). */
static float pf_absmax_signed(const float *x, int n)
{
	float amax = 0.0f, max = 0.0f;

	for (int j = 0; j < n; j++) {
		float ax = fabsf(x[j]);
		if (ax > amax) {
			amax = ax;
			max = x[j];
		}
	}
	return max;
}

static void pf_quantize_q4_0(const float *x, struct pf_block_q4_0 *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += PF_QK) {
		/* the extreme value maps onto -8, the end of [-8, 7] with room */
		const float max = pf_absmax_signed(x, PF_QK);
		const float d = max / -8.0f;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;

		y[i].d = pf_f32_to_f16(d);
		for (int j = 0; j < PF_QK / 2; j++) {
			int a = pf_clampi(pf_nearest(x[j] * id) + 8, 0, 15);
			int b = pf_clampi(pf_nearest(x[j + PF_QK / 2] * id) + 8, 0, 15);
			y[i].qs[j] = (uint8_t)(a | (b << 4));
		}
	}
}

static void pf_quantize_q4_1(const float *x, struct pf_block_q4_1 *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += PF_QK) {
		float min = x[0], max = x[0];

		for (int j = 1; j < PF_QK; j++) {
			min = fminf(min, x[j]);
			max = fmaxf(max, x[j]);
		}
		const float d = (max - min) / 15.0f;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;

		y[i].d = pf_f32_to_f16(d);
		y[i].m = pf_f32_to_f16(min);
		for (int j = 0; j < PF_QK / 2; j++) {
			int a = pf_clampi(pf_nearest((x[j] - min) * id), 0, 15);
			int b = pf_clampi(pf_nearest((x[j + PF_QK / 2] - min) * id), 0, 15);
			y[i].qs[j] = (uint8_t)(a | (b << 4));
		}
	}
}

static void pf_quantize_q4_K(const float *x, struct pf_block_q4_K *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += PF_QK_K) {
		float scale[8], mn[8], max_scale = 0.0f, max_min = 0.0f;
		uint8_t sc[8], m[8];

		/* per sub-block of 32: x ≈ scale*q - mn with q in 0..15, mn >= 0 */
		for (int j = 0; j < 8; j++) {
			const float *xs = x + 32 * j;
			float lo = xs[0], hi = xs[0];

			for (int l = 1; l < 32; l++) {
				lo = fminf(lo, xs[l]);
				hi = fmaxf(hi, xs[l]);
			}
			if (lo > 0.0f)
				lo = 0.0f;
			scale[j] = (hi - lo) / 15.0f;
			mn[j] = -lo;
			max_scale = fmaxf(max_scale, scale[j]);
			max_min = fmaxf(max_min, mn[j]);
		}
		const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		const float idmin = dmin != 0.0f ? 1.0f / dmin : 0.0f;

		for (int j = 0; j < 8; j++) {
			sc[j] = (uint8_t)pf_clampi(pf_nearest(scale[j] * id), 0, 63);
			m[j] = (uint8_t)pf_clampi(pf_nearest(mn[j] * idmin), 0, 63);
		}
		/* pack: see pf_q4k_unpack_scales */
		for (int j = 0; j < 4; j++) {
			y[i].scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
			y[i].scales[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
			y[i].scales[j + 8] = (uint8_t)((sc[j + 4] & 0xf) | ((m[j + 4] & 0xf) << 4));
		}
		y[i].d = pf_f32_to_f16(d);
		y[i].dmin = pf_f32_to_f16(dmin);

		/* requantize against the rounded scales actually stored */
		const float dd = pf_f16_to_f32(y[i].d), ddmin = pf_f16_to_f32(y[i].dmin);
		uint8_t q[PF_QK_K];
		for (int j = 0; j < 8; j++) {
			const float ds = dd * sc[j], ms = ddmin * m[j];
			const float ids = ds != 0.0f ? 1.0f / ds : 0.0f;
			for (int l = 0; l < 32; l++)
				q[32 * j + l] = (uint8_t)pf_clampi(pf_nearest((x[32 * j + l] + ms) * ids), 0, 15);
		}
		/* each 32 bytes hold sub-block 2k in the low nibbles, 2k+1 in the high */
		for (int k = 0; k < 4; k++)
			for (int l = 0; l < 32; l++)
				y[i].qs[32 * k + l] = (uint8_t)(q[64 * k + l] | (q[64 * k + 32 + l] << 4));
	}
}

static void pf_quantize_q6_K(const float *x, struct pf_block_q6_K *y, int64_t nb)
{
	for (int64_t i = 0; i < nb; i++, x += PF_QK_K) {
		float scale[16], max_scale = 0.0f, amax_scale = 0.0f;

		/* per group of 16: x ≈ scale*q with q in -32..31 */
		for (int g = 0; g < 16; g++) {
			scale[g] = pf_absmax_signed(x + 16 * g, 16) / -32.0f;
			if (fabsf(scale[g]) > amax_scale) {
				amax_scale = fabsf(scale[g]);
				max_scale = scale[g];
			}
		}
		const float d = max_scale / -128.0f;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;

		y[i].d = pf_f32_to_f16(d);
		const float dd = pf_f16_to_f32(y[i].d);
		uint8_t q[PF_QK_K];
		for (int g = 0; g < 16; g++) {
			int s = pf_clampi(pf_nearest(scale[g] * id), -128, 127);
			y[i].scales[g] = (int8_t)s;
			const float ds = dd * (float)s;
			const float ids = ds != 0.0f ? 1.0f / ds : 0.0f;
			for (int l = 0; l < 16; l++)
				q[16 * g + l] = (uint8_t)(pf_clampi(pf_nearest(x[16 * g + l] * ids), -32, 31) + 32);
		}
		/* per half of 128: element l, l+32, l+64, l+96 share ql/qh bytes */
		for (int h = 0; h < 2; h++) {
			const uint8_t *qq = q + 128 * h;
			uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
			for (int l = 0; l < 32; l++) {
				ql[l] = (uint8_t)((qq[l] & 0xf) | ((qq[l + 64] & 0xf) << 4));
				ql[l + 32] = (uint8_t)((qq[l + 32] & 0xf) | ((qq[l + 96] & 0xf) << 4));
				qh[l] = (uint8_t)((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) |
						  ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
			}
		}
	}
}

int pf_quantize_weights_ref(uint32_t wtype, const float *x, void *dst, int64_t n)
{
	const struct pf_dtype_info *info = pf_dtype_info(wtype);

	if (!info || n < 0 || n % info->block_elems)
		return -EINVAL;
	const int64_t nb = n / info->block_elems;

	switch (wtype) {
	case PF_DT_Q4_0:
		pf_quantize_q4_0(x, dst, nb);
		return 0;
	case PF_DT_Q4_1:
		pf_quantize_q4_1(x, dst, nb);
		return 0;
	case PF_DT_Q8_0:
		pf_quantize_row_q8_0_ref(x, dst, n);
		return 0;
	case PF_DT_Q4_K:
		pf_quantize_q4_K(x, dst, nb);
		return 0;
	case PF_DT_Q6_K:
		pf_quantize_q6_K(x, dst, nb);
		return 0;
	case PF_DT_F16:
		pf_quantize_row_f16_ref(x, dst, n);
		return 0;
	case PF_DT_BF16: {
		uint16_t *y = dst;
		for (int64_t j = 0; j < n; j++)
			y[j] = pf_f32_to_bf16(x[j]);
		return 0;
	}
	case PF_DT_F32:
		memmove(dst, x, (size_t)n * sizeof(float));
		return 0;
	default:
		return -EINVAL;
	}
}
