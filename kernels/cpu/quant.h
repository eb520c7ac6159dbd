/*
 * quant.h — quantized weight formats and their dot-product kernels (CPU).
 *
 * A matmul y = W·x on quantized weights never dequantizes W to floats: the
 * activation row x is quantized once per step to an 8-bit format that pairs
 * with the weight format (its "activation type"), and each output element is
 * an integer dot product of one weight row and one activation row, scaled by
 * the blocks' scales.  The pairings follow the GGUF block layouts:
 *
 *   weight   activation   block
 *   Q4_0     Q8_0         32
 *   Q4_1     Q8_1         32   (Q8_1 carries s = d·Σq for the weight's min term)
 *   Q8_0     Q8_0         32
 *   Q4_K     Q8_K         256
 *   Q6_K     Q8_K         256
 *   F16      F16          1    (x converted to half, products summed in float)
 *   BF16     F32          1
 *   F32      F32          1
 *
 * Every kernel exists as a portable scalar reference (PF_ISA_SCALAR) and, for
 * the hot formats, AVX2 and AVX-512 VNNI versions chosen at run time by cpuid
 * (pf_cpu_isa_detect).  A row's result never depends on what else is in the
 * batch: kernels take one weight row and one activation row.
 *
 * The canonical order.  Every ISA gives the same bits: the scalar reference
 * (quant_ref.c) defines them and the SIMD kernels must match it exactly — the
 * activation is re-quantized to 8 bits before each matmul, so a 1-ulp change
 * can move an int8 value a whole step and, 30 layers on, a token.  For Q4_1
 * and Q8_0 (SmolLM2's formats) it is llama.cpp's AVX2 order, so we equal its
 * goldens (tests/golden, test_generate); for the other formats it is our AVX2
 * kernels' order, defined here — llama.cpp's differs in places (its Q4_0 keeps
 * one accumulator, its F16 folds (0+2)+(1+3)), so those equal llama.cpp only
 * up to rounding:
 *   - Integer products are summed exactly.  Lane l of a 32-element block holds
 *     elements 4l..4l+3 (an AVX2 register's 8 int32 lanes); in the K formats
 *     lane l of a super-block gathers elements 4l..4l+3 of each 32-run
 *     (Q4_K: of both nibble halves of each 64, times their sub-block scales;
 *     Q6_K: of its four 32-runs per 128, plus the -32·Σscale·bsum offset).
 *   - Each lane is accumulated in float across blocks by one fused
 *     multiply-add per block, acc[l] = fma(d, (float)lane[l], acc[l]), where d
 *     is the product of the two scales rounded to float: Q4_1, Q8_0, Q4_K and
 *     Q6_K in one accumulator, Q4_0 in two (block i into acc[i % 2], added
 *     lane-wise at the end).
 *   - Q4_1's m·s terms are fused into one scalar block by block
 *     (summ = fma(m, s, summ)); Q4_K's mins into 4 lanes by fma(dmin, ·).
 *   - The 8 lanes fold as ((0+4)+(2+6)) + ((1+5)+(3+7)); then + summ (Q4_1),
 *     - the folded mins ((0+2)+(1+3)) (Q4_K).
 *   - F16/BF16/F32: four 8-lane accumulators over runs of 32 elements, runs
 *     of 8 into the first, lanes combined (0+1)+(2+3) then folded as above,
 *     plus the rest of the row fused into a scalar.
 * Wider vectors may compute more at once (AVX-512 does two blocks' integers
 * per instruction) but combine the float partial sums in this order.  The
 * kernel files are built with -ffp-contract=off: every fusion is written as
 * fmaf or an FMA intrinsic, none is left to the compiler.  ops.c follows the
 * same rule for SwiGLU and attention.  test_quant and test_ops check it bit
 * for bit on every ISA the host has plus the emulated AVX-512
 * (PF_ISA_AVX512EMU), test_generate on the model's logits, and
 * selfcheck.h at every load.
 */
#ifndef PF_CPU_QUANT_H
#define PF_CPU_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/dtype.h"

/* ---- block layouts (exactly the on-disk GGUF layouts) -------------------- */

#define PF_QK 32   /* elements per block of the 32-element formats */
#define PF_QK_K 256 /* elements per super-block of the K formats */
#define PF_K_SCALE_SIZE 12

struct pf_block_q4_0 {
	uint16_t d;              /* f16 scale */
	uint8_t qs[PF_QK / 2];   /* nibbles: element j in low nibble of qs[j], j+16 in the high */
};
struct pf_block_q4_1 {
	uint16_t d, m;           /* f16 scale and min */
	uint8_t qs[PF_QK / 2];
};
struct pf_block_q8_0 {
	uint16_t d;
	int8_t qs[PF_QK];
};
struct pf_block_q8_1 {
	uint16_t d;              /* f16 scale */
	uint16_t s;              /* f16 d * sum(qs) */
	int8_t qs[PF_QK];
};
struct pf_block_q4_K {
	uint16_t d, dmin;        /* f16 super-block scale for scales and mins */
	uint8_t scales[PF_K_SCALE_SIZE]; /* 8 sub-block scales and mins, 6 bits each */
	uint8_t qs[PF_QK_K / 2];
};
struct pf_block_q6_K {
	uint8_t ql[PF_QK_K / 2]; /* low 4 bits */
	uint8_t qh[PF_QK_K / 4]; /* high 2 bits */
	int8_t scales[PF_QK_K / 16];
	uint16_t d;
};
struct pf_block_q8_K {
	float d;
	int8_t qs[PF_QK_K];
	int16_t bsums[PF_QK_K / 16]; /* sums of groups of 16 quants */
};

_Static_assert(sizeof(struct pf_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(struct pf_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(struct pf_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(struct pf_block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(struct pf_block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(struct pf_block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(struct pf_block_q8_K) == 292, "q8_K layout");

/* ---- instruction sets ---------------------------------------------------- */

enum pf_isa {
	PF_ISA_SCALAR = 0,
	PF_ISA_AVX2 = 1,       /* AVX2 + FMA + F16C */
	PF_ISA_AVX512VNNI = 2, /* AVX-512 F/BW/VL + VNNI */
	/* The AVX-512 kernels over a plain-C emulation of their intrinsics
	 * (quant_avx512_emu.c): slow, needs AVX2, chosen only by name
	 * (PF_ISA=avx512emu) — how the AVX-512 code is checked bit for bit on
	 * CPUs without AVX-512.  Elsewhere it ranks as AVX2 (the ops of ops.h). */
	PF_ISA_AVX512EMU = 3,
};

/* The best ISA this CPU supports (cpuid + OS XSAVE state).  The environment
 * variable PF_ISA=scalar|avx2|avx512 caps it, for tests and comparisons;
 * PF_ISA=avx512emu selects the emulated AVX-512 kernels where AVX2 exists.
 * Cannot fail. */
enum pf_isa pf_cpu_isa_detect(void);

/* "scalar", "avx2", "avx512vnni", "avx512emu".  Cannot fail. */
const char *pf_isa_name(enum pf_isa isa);

/* ---- kernels ------------------------------------------------------------- */

/* Quantize (or convert) one activation row of n floats into `dst`, in the
 * activation format the weight type pairs with. */
typedef void (*pf_quantize_row_fn)(const float *x, void *dst, int64_t n);

/* *s = dot(weight row w, activation row a), both n elements long. */
typedef void (*pf_vec_dot_fn)(int64_t n, float *s, const void *w, const void *a);

/* Dequantize one weight row of n elements to floats. */
typedef void (*pf_dequant_row_fn)(const void *w, float *y, int64_t n);

/* s[r] = dot(weight row r, activation row a) for the 4 weight rows at
 * w + r·w_stride bytes: the activation blocks are loaded (and their scales
 * converted) once for four rows.  Each s[r] is bit-identical to what vec_dot
 * gives for that row alone, so callers may mix the two freely. */
typedef void (*pf_vec_dot_4x_fn)(int64_t n, float *s /* [4] */, const void *w, size_t w_stride,
				 const void *a);

struct pf_qtype_ops {
	uint32_t wtype;            /* enum pf_dtype of the weights */
	uint32_t act_type;         /* enum pf_dtype of the activation rows */
	pf_quantize_row_fn quantize_act;
	pf_vec_dot_fn vec_dot;
	pf_dequant_row_fn dequant_row;
	pf_vec_dot_4x_fn vec_dot_4x; /* never NULL (four vec_dot calls where no
				      * fused kernel exists) */
};

/* Kernels for weight type `wtype` on `isa` (falling back to the best lower
 * ISA that has them), or NULL when `wtype` is not a supported weight type. */
const struct pf_qtype_ops *pf_qtype_ops(uint32_t wtype, enum pf_isa isa);

/* Bytes of one activation row of n elements for weight type `wtype`. */
size_t pf_act_row_bytes(uint32_t wtype, int64_t n);

/* ---- half precision ------------------------------------------------------ */

float pf_f16_to_f32(uint16_t h);
uint16_t pf_f32_to_f16(float f);     /* round to nearest even */
float pf_bf16_to_f32(uint16_t h);

/* Quantize a float row into the weight format `wtype` (reference, scalar):
 * used by tests to build weights and by tools.  Returns 0, or -EINVAL when
 * `wtype` is not quantizable here or n is not a whole number of blocks. */
int pf_quantize_weights_ref(uint32_t wtype, const float *x, void *dst, int64_t n);

#endif
