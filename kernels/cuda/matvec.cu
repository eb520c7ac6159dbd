/* matvec.cu — dequantizing matrix × few-vectors products for small batches;
 * see cuda.h. */
#include "kernels/cuda/common.cuh"

#define MV_WARPS 4 /* output rows per block */
#define MV_NT PF_CUDA_MATVEC_MAX_TOKENS

/*
 * One warp per output row r.  Block formats: lane l takes the 32-element
 * units l, l+32, … of the row, decodes each once into registers and
 * multiplies it with every token's matching 32 activations; plain formats:
 * lane l takes elements l, l+32, … (coalesced).  Per token, each lane sums
 * in fp32 in a fixed order and the warp tree-reduces: the result of a token
 * row never depends on the other rows of the launch.
 */
template <uint32_t T>
__global__ static void __launch_bounds__(MV_WARPS * 32)
matvec_kernel(float *y, const uint8_t *w, size_t row_bytes, const float *x, const float *bias, int64_t n_in,
	      int64_t n_out, int n_tok)
{
	const int lane = threadIdx.x & 31;
	const int64_t r = (int64_t)blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
	if (r >= n_out)
		return; /* the whole warp: r is the same for its 32 lanes, so the shuffles below stay full */
	const uint8_t *row = w + (size_t)r * row_bytes;
	float acc[MV_NT];
#pragma unroll
	for (int t = 0; t < MV_NT; t++)
		acc[t] = 0.0f;
	if constexpr (pf_is_plain<T>::value) {
		for (int64_t i = lane; i < n_in; i += 32) {
			const float wv = plain_at<T>(row, i);
#pragma unroll
			for (int t = 0; t < MV_NT; t++)
				if (t < n_tok)
					acc[t] += wv * x[t * n_in + i];
		}
	} else {
		for (int64_t c = lane; c < n_in / 32; c += 32) {
			float wv[32];
			dq32<T>(row, c, wv);
#pragma unroll
			for (int t = 0; t < MV_NT; t++) {
				if (t < n_tok) {
					const float *xc = x + t * n_in + c * 32;
					float s = 0.0f;
#pragma unroll
					for (int j = 0; j < 32; j++)
						s += wv[j] * xc[j];
					acc[t] += s;
				}
			}
		}
	}
#pragma unroll
	for (int t = 0; t < MV_NT; t++)
		acc[t] = pf_warp_sum(acc[t]);
	if (lane == 0) {
		const float b = bias ? bias[r] : 0.0f;
		for (int t = 0; t < n_tok; t++)
			y[t * n_out + r] = acc[t] + b;
	}
}

extern "C" int pf_cuda_matvec(float *y, const void *w, uint32_t wtype, size_t row_bytes, int64_t n_in, int64_t n_out,
			      const float *x, int32_t n_tok, const float *bias, const struct pf_cuda_launch *lc)
{
	if (n_in <= 0 || n_out <= 0 || n_tok < 0 || !pf_cuda_weight_type_ok(wtype) ||
	    n_in % pf_cuda_block_elems(wtype) || pf_dtype_row_bytes(wtype, (uint64_t)n_in) > row_bytes ||
	    (n_out + MV_WARPS - 1) / MV_WARPS > INT32_MAX)
		return pf_cuda_bad_args(lc, "matvec");
	const unsigned blocks = (unsigned)((n_out + MV_WARPS - 1) / MV_WARPS);
	/* more tokens than one launch holds: several launches, each reading
	 * the weights once more (cuBLAS is the path for large batches) */
	for (int32_t t0 = 0; t0 < n_tok; t0 += MV_NT) {
		const int nt = n_tok - t0 < MV_NT ? n_tok - t0 : MV_NT;
		const float *xs = x + (int64_t)t0 * n_in;
		float *ys = y + (int64_t)t0 * n_out;
		bool ok = true;
		PF_CUDA_TYPE_SWITCH(wtype, ok = false,
			matvec_kernel<PF_T><<<blocks, MV_WARPS * 32, 0, pf_cuda_stream(lc)>>>(
				ys, (const uint8_t *)w, row_bytes, xs, bias, n_in, n_out, nt))
		if (!ok)
			return pf_cuda_bad_args(lc, "matvec");
		int r = pf_cuda_launched(lc, "matvec launch");
		if (r)
			return r;
	}
	return 0;
}
