/*
 * common.cuh — internals shared by the .cu files (not a public API).
 *
 * Error mapping, warp reductions, and the weight formats as the device reads
 * them.  Every format is decoded in one place, dq32<T>() (32 consecutive
 * elements) or plain_at<T>() (one element of F32/F16/BF16), and every
 * kernel that reads weights goes through them, so there is one decoder per
 * format to check against quant_ref.c.  The float operations of the
 * decoders are the reference's, spelled with __fmul_rn/__fadd_rn so the
 * compiler cannot contract them into FMAs: dequantized values are then
 * bit-identical to pf_dequant_row_*_ref().
 */
#ifndef PF_CUDA_COMMON_CUH
#define PF_CUDA_COMMON_CUH

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/cuda.h"
extern "C" {
#include "kernels/dtype.h" /* a C header without extern "C" of its own */
}

/* ---- errors ---------------------------------------------------------------- */

static inline int pf_cuda_errno(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return 0;
	case cudaErrorMemoryAllocation: return -ENOMEM;
	case cudaErrorNoDevice:
	case cudaErrorInsufficientDriver:
	case cudaErrorInvalidDevice: return -ENODEV;
	case cudaErrorInvalidValue:
	case cudaErrorInvalidConfiguration: return -EINVAL;
	default: return -EIO;
	}
}

/* A CUDA status into a negative errno and a message; 0 on success. */
static inline int pf_cuda_check(cudaError_t e, const char *what, char *err, size_t errlen)
{
	if (e == cudaSuccess)
		return 0;
	if (err && errlen)
		snprintf(err, errlen, "CUDA %s failed: %s", what, cudaGetErrorString(e));
	return pf_cuda_errno(e);
}

/* The launch status of the kernel just queued (configuration errors; errors
 * while it runs surface at pf_cuda_sync). */
static inline int pf_cuda_launched(const struct pf_cuda_launch *lc, const char *what)
{
	return pf_cuda_check(cudaGetLastError(), what, lc->err, lc->errlen);
}

static inline int pf_cuda_bad_args(const struct pf_cuda_launch *lc, const char *what)
{
	if (lc->err && lc->errlen)
		snprintf(lc->err, lc->errlen, "%s: arguments out of range", what);
	return -EINVAL;
}

static inline cudaStream_t pf_cuda_stream(const struct pf_cuda_launch *lc)
{
	return (cudaStream_t)lc->stream;
}

static inline unsigned pf_cuda_blocks(int64_t n, int threads, unsigned cap)
{
	int64_t b = (n + threads - 1) / threads;
	return b < 1 ? 1u : b > (int64_t)cap ? cap : (unsigned)b;
}

/* ---- warp reductions --------------------------------------------------------- */

static __device__ __forceinline__ float pf_warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

static __device__ __forceinline__ float pf_warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* ---- weight formats -------------------------------------------------------- */

/* Block sizes in bytes (dtype.c's table; quant.h's structs). */
#define PF_CU_Q4_0_BYTES 18  /* f16 d, 16 bytes of nibbles */
#define PF_CU_Q4_1_BYTES 20  /* f16 d, f16 m, 16 bytes of nibbles */
#define PF_CU_Q8_0_BYTES 34  /* f16 d, 32 int8 */
#define PF_CU_Q4_K_BYTES 144 /* f16 d, f16 dmin, 12 bytes of scales, 128 bytes of nibbles */
#define PF_CU_Q6_K_BYTES 210 /* 128 ql, 64 qh, 16 int8 scales, f16 d */

/* Every block size is even and rows hold whole blocks, so each f16 field
 * below sits at an even address of a cudaMalloc'ed (256-aligned) tensor. */
static __device__ __forceinline__ float pf_ld_f16(const uint8_t *p)
{
	return __half2float(__ushort_as_half(*(const unsigned short *)p));
}

template <uint32_t T> struct pf_is_plain {
	static constexpr bool value = T == PF_DT_F32 || T == PF_DT_F16 || T == PF_DT_BF16;
};

/* Element i of a row of a plain format. */
template <uint32_t T> static __device__ __forceinline__ float plain_at(const uint8_t *row, int64_t i)
{
	if constexpr (T == PF_DT_F32) {
		return ((const float *)row)[i];
	} else if constexpr (T == PF_DT_F16) {
		return __half2float(((const __half *)row)[i]);
	} else {
		static_assert(T == PF_DT_BF16, "plain formats are F32, F16, BF16");
		return __uint_as_float((uint32_t)((const unsigned short *)row)[i] << 16);
	}
}

/*
 * Elements 32c .. 32c+31 of a row of a block format into w[32].  The
 * 256-element formats are decoded one 32-element sub-block at a time:
 * sub-block s = c % 8 of super-block c / 8.
 */
template <uint32_t T> static __device__ __forceinline__ void dq32(const uint8_t *row, int64_t c, float *w)
{
	if constexpr (T == PF_DT_Q4_0) {
		/* element j < 16: low nibble of qs[j]; j >= 16: high nibble of qs[j-16] */
		const uint8_t *b = row + c * PF_CU_Q4_0_BYTES, *qs = b + 2;
		const float d = pf_ld_f16(b);
#pragma unroll
		for (int j = 0; j < 16; j++) {
			w[j] = __fmul_rn((float)((qs[j] & 0xf) - 8), d);
			w[j + 16] = __fmul_rn((float)((qs[j] >> 4) - 8), d);
		}
	} else if constexpr (T == PF_DT_Q4_1) {
		const uint8_t *b = row + c * PF_CU_Q4_1_BYTES, *qs = b + 4;
		const float d = pf_ld_f16(b), m = pf_ld_f16(b + 2);
#pragma unroll
		for (int j = 0; j < 16; j++) {
			w[j] = __fadd_rn(__fmul_rn((float)(qs[j] & 0xf), d), m);
			w[j + 16] = __fadd_rn(__fmul_rn((float)(qs[j] >> 4), d), m);
		}
	} else if constexpr (T == PF_DT_Q8_0) {
		const uint8_t *b = row + c * PF_CU_Q8_0_BYTES;
		const int8_t *qs = (const int8_t *)(b + 2);
		const float d = pf_ld_f16(b);
#pragma unroll
		for (int j = 0; j < 32; j++)
			w[j] = __fmul_rn((float)qs[j], d);
	} else if constexpr (T == PF_DT_Q4_K) {
		const uint8_t *b = row + (c >> 3) * PF_CU_Q4_K_BYTES;
		const int s = (int)(c & 7);
		const uint8_t *sc = b + 4, *qs = b + 16;
		/* the 6-bit scale and min of sub-block s (ggml's get_scale_min_k4,
		 * quant_impl.h's pf_q4k_unpack_scales) */
		int scale, min;
		if (s < 4) {
			scale = sc[s] & 63;
			min = sc[s + 4] & 63;
		} else {
			scale = (sc[s + 4] & 0xf) | ((sc[s - 4] >> 6) << 4);
			min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
		}
		const float d1 = __fmul_rn(pf_ld_f16(b), (float)scale);
		const float m1 = __fmul_rn(pf_ld_f16(b + 2), (float)min);
		/* 32 bytes of qs hold sub-block 2k in the low nibbles, 2k+1 in the high */
		const uint8_t *q = qs + 32 * (s >> 1);
		const int shift = 4 * (s & 1);
#pragma unroll
		for (int l = 0; l < 32; l++)
			w[l] = __fsub_rn(__fmul_rn(d1, (float)((q[l] >> shift) & 0xf)), m1);
	} else if constexpr (T == PF_DT_Q6_K) {
		const uint8_t *b = row + (c >> 3) * PF_CU_Q6_K_BYTES;
		const int s = (int)(c & 7);
		const int h = s >> 2, qq = s & 3; /* half of 128, quarter of that half */
		const uint8_t *ql = b + 64 * h + 32 * (qq & 1), *qh = b + 128 + 32 * h;
		const int8_t *sc = (const int8_t *)(b + 192) + 8 * h + 2 * qq;
		const float d = pf_ld_f16(b + 208);
		const int nib_shift = 4 * (qq >> 1), hi_shift = 2 * qq;
#pragma unroll
		for (int l = 0; l < 32; l++) {
			const int q = (((ql[l] >> nib_shift) & 0xf) | (((qh[l] >> hi_shift) & 3) << 4)) - 32;
			w[l] = __fmul_rn(__fmul_rn(d, (float)sc[l / 16]), (float)q);
		}
	} else {
		static_assert(T == PF_DT_Q4_0, "dq32: not a block format");
	}
}

/* Run the statements after the type argument with the constant PF_T set to
 * the weight type t, for each type the kernels read; `on_other` runs for
 * any other t.  (A switch of template instantiations, one per format.) */
#define PF_CUDA_TYPE_SWITCH(t, on_other, ...)                                          \
	switch (t) {                                                                   \
	case PF_DT_F32: { constexpr uint32_t PF_T = PF_DT_F32; __VA_ARGS__; } break;  \
	case PF_DT_F16: { constexpr uint32_t PF_T = PF_DT_F16; __VA_ARGS__; } break;  \
	case PF_DT_BF16: { constexpr uint32_t PF_T = PF_DT_BF16; __VA_ARGS__; } break; \
	case PF_DT_Q8_0: { constexpr uint32_t PF_T = PF_DT_Q8_0; __VA_ARGS__; } break; \
	case PF_DT_Q4_0: { constexpr uint32_t PF_T = PF_DT_Q4_0; __VA_ARGS__; } break; \
	case PF_DT_Q4_1: { constexpr uint32_t PF_T = PF_DT_Q4_1; __VA_ARGS__; } break; \
	case PF_DT_Q4_K: { constexpr uint32_t PF_T = PF_DT_Q4_K; __VA_ARGS__; } break; \
	case PF_DT_Q6_K: { constexpr uint32_t PF_T = PF_DT_Q6_K; __VA_ARGS__; } break; \
	default: on_other; break;                                                      \
	}

/* Elements per block of the formats above (32 for the plain ones too, the
 * unit dq32 works in; plain rows need not be a multiple of it). */
static inline int64_t pf_cuda_block_elems(uint32_t t)
{
	return t == PF_DT_Q4_K || t == PF_DT_Q6_K ? 256 : t == PF_DT_F32 || t == PF_DT_F16 || t == PF_DT_BF16 ? 1 : 32;
}

#endif
