/* rmsnorm.cu — RMSNorm; see cuda.h. */
#include "kernels/cuda/common.cuh"

#define RMS_THREADS 256 /* a power of two: the tree reduction halves it */

/* One block per row; each thread strides over the row, then a shared-memory
 * tree reduction of the sum of squares in double, as the CPU reference (the
 * order differs, so the scale may differ in its last bit). */
__global__ static void __launch_bounds__(RMS_THREADS)
rmsnorm_kernel(float *out, const float *x, const float *w, int64_t n, float eps)
{
	__shared__ double partial[RMS_THREADS];
	const float *xr = x + (int64_t)blockIdx.x * n;
	float *orow = out + (int64_t)blockIdx.x * n;
	double s = 0.0;
	for (int64_t i = threadIdx.x; i < n; i += RMS_THREADS)
		s += (double)(xr[i] * xr[i]);
	partial[threadIdx.x] = s;
	__syncthreads();
	for (int k = RMS_THREADS / 2; k > 0; k >>= 1) {
		if ((int)threadIdx.x < k)
			partial[threadIdx.x] += partial[threadIdx.x + k];
		__syncthreads();
	}
	/* every thread has read xr into s before the barrier, so out may alias x */
	const float scale = 1.0f / sqrtf((float)(partial[0] / (double)n) + eps);
	for (int64_t i = threadIdx.x; i < n; i += RMS_THREADS)
		orow[i] = xr[i] * scale * w[i];
}

extern "C" int pf_cuda_rmsnorm(float *out, const float *x, const float *w, int32_t n_rows, int64_t n, float eps,
			       const struct pf_cuda_launch *lc)
{
	if (n_rows < 0 || n <= 0)
		return pf_cuda_bad_args(lc, "rmsnorm");
	if (n_rows == 0)
		return 0;
	rmsnorm_kernel<<<(unsigned)n_rows, RMS_THREADS, 0, pf_cuda_stream(lc)>>>(out, x, w, n, eps);
	return pf_cuda_launched(lc, "rmsnorm launch");
}
