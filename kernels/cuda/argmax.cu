/* argmax.cu — greedy sampling on the device; see cuda.h. */
#include "kernels/cuda/common.cuh"

#define AM_THREADS 256

/* (value, index) with the reference's preference: the larger value, on a
 * tie the lower index; index -1 means "nothing above -inf yet". */
static __device__ __forceinline__ void am_take(float &m, int64_t &best, float v, int64_t i)
{
	if (v > m || (v == m && best >= 0 && i >= 0 && i < best)) {
		m = v;
		best = i;
	}
}

/* One block per row. */
__global__ static void __launch_bounds__(AM_THREADS) argmax_kernel(int32_t *out, const float *logits, int64_t n)
{
	__shared__ float sm[AM_THREADS];
	__shared__ int64_t si[AM_THREADS];
	__shared__ int bad_any;
	const float *row = logits + (int64_t)blockIdx.x * n;
	float m = -INFINITY;
	int64_t best = -1;
	int bad = 0;
	if (threadIdx.x == 0)
		bad_any = 0;
	for (int64_t i = threadIdx.x; i < n; i += AM_THREADS) {
		const float v = row[i];
		if (!(v < INFINITY)) /* NaN or +inf: the sampler refuses the row */
			bad = 1;
		else if (v > m) /* strict: a thread's first maximum is its lowest index */
			m = v, best = i;
	}
	sm[threadIdx.x] = m;
	si[threadIdx.x] = best;
	__syncthreads();
	if (bad)
		bad_any = 1; /* benign race: every writer writes 1 */
	for (int k = AM_THREADS / 2; k > 0; k >>= 1) {
		if ((int)threadIdx.x < k) {
			float mm = sm[threadIdx.x];
			int64_t bb = si[threadIdx.x];
			am_take(mm, bb, sm[threadIdx.x + k], si[threadIdx.x + k]);
			sm[threadIdx.x] = mm;
			si[threadIdx.x] = bb;
		}
		__syncthreads();
	}
	if (threadIdx.x == 0)
		out[blockIdx.x] = bad_any || si[0] < 0 ? -1 : (int32_t)si[0];
}

extern "C" int pf_cuda_argmax(int32_t *out, const float *logits, int32_t n_rows, int64_t n, const struct pf_cuda_launch *lc)
{
	if (n_rows < 0 || n <= 0 || n > INT32_MAX)
		return pf_cuda_bad_args(lc, "argmax");
	if (n_rows == 0)
		return 0;
	argmax_kernel<<<(unsigned)n_rows, AM_THREADS, 0, pf_cuda_stream(lc)>>>(out, logits, n);
	return pf_cuda_launched(lc, "argmax launch");
}
