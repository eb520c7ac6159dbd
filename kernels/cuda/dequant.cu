/* dequant.cu — whole-row dequantization: embedding lookup (rows picked by
 * token id, to F32) and the load-time FP16 copy of weights for cuBLAS; see
 * cuda.h. */
#include "kernels/cuda/common.cuh"

#define DQ_THREADS 256

template <typename O> static __device__ __forceinline__ O dq_out(float v);
template <> __device__ __forceinline__ float dq_out<float>(float v) { return v; }
template <> __device__ __forceinline__ __half dq_out<__half>(float v) { return __float2half_rn(v); }

/* One block per output row r, reading weight row rows[r] (or r when rows is
 * NULL).  Block formats: one thread per 32-element unit; plain formats: one
 * thread per element. */
template <uint32_t T, typename O>
__global__ static void __launch_bounds__(DQ_THREADS)
dequant_rows_kernel(O *out, const uint8_t *w, size_t row_bytes, int64_t n, const int32_t *rows)
{
	const int64_t r = blockIdx.x;
	const uint8_t *row = w + (size_t)(rows ? rows[r] : r) * row_bytes;
	O *o = out + r * n;
	if constexpr (pf_is_plain<T>::value) {
		for (int64_t i = threadIdx.x; i < n; i += DQ_THREADS)
			o[i] = dq_out<O>(plain_at<T>(row, i));
	} else {
		for (int64_t c = threadIdx.x; c < n / 32; c += DQ_THREADS) {
			float v[32];
			dq32<T>(row, c, v);
#pragma unroll
			for (int j = 0; j < 32; j++)
				o[c * 32 + j] = dq_out<O>(v[j]);
		}
	}
}

template <typename O>
static int dequant_rows(O *out, const void *w, uint32_t wtype, size_t row_bytes, int64_t n, const int32_t *rows,
			int64_t n_rows, const struct pf_cuda_launch *lc, const char *what)
{
	bool ok = true;
	if (n <= 0 || n_rows < 0 || n_rows > INT32_MAX || !pf_cuda_weight_type_ok(wtype) ||
	    n % pf_cuda_block_elems(wtype) || pf_dtype_row_bytes(wtype, (uint64_t)n) > row_bytes)
		return pf_cuda_bad_args(lc, what);
	if (n_rows == 0)
		return 0;
	PF_CUDA_TYPE_SWITCH(wtype, ok = false,
		dequant_rows_kernel<PF_T, O><<<(unsigned)n_rows, DQ_THREADS, 0, pf_cuda_stream(lc)>>>(
			out, (const uint8_t *)w, row_bytes, n, rows))
	if (!ok)
		return pf_cuda_bad_args(lc, what);
	return pf_cuda_launched(lc, what);
}

extern "C" int pf_cuda_embed(float *out, const void *w, uint32_t wtype, size_t row_bytes, int64_t n,
			     const int32_t *tokens, int32_t n_tok, const struct pf_cuda_launch *lc)
{
	return dequant_rows<float>(out, w, wtype, row_bytes, n, tokens, n_tok, lc, "embed");
}

extern "C" int pf_cuda_dequant_f16(void *out, const void *w, uint32_t wtype, size_t row_bytes, int64_t n, int64_t n_rows,
				   const struct pf_cuda_launch *lc)
{
	return dequant_rows<__half>((__half *)out, w, wtype, row_bytes, n, nullptr, n_rows, lc, "dequant_f16");
}
