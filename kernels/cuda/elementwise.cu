/* elementwise.cu — SwiGLU, residual and bias adds, row gathers, FP16
 * conversion; see cuda.h.  Grid-stride loops over flat indices. */
#include "kernels/cuda/common.cuh"

#define EW_THREADS 256
#define EW_MAX_BLOCKS 65535u

__global__ static void swiglu_kernel(float *out, const float *gate, const float *up, int64_t n)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
		const float g = gate[i];
		/* the reference's scalar formula: g / (1 + e^-g) · up */
		out[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

__global__ static void add_kernel(float *y, const float *x, int64_t n)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
		y[i] += x[i];
}

__global__ static void add_bias_kernel(float *y, const float *bias, int64_t n_rows, int64_t n)
{
	const int64_t total = n_rows * n;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
		y[i] += bias[i % n];
}

/* one block per gathered row */
__global__ static void gather_rows_kernel(float *dst, const float *src, const int32_t *rows, int64_t n)
{
	const float *s = src + (int64_t)rows[blockIdx.x] * n;
	float *d = dst + (int64_t)blockIdx.x * n;
	for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
		d[i] = s[i];
}

__global__ static void f32_to_f16_kernel(__half *dst, const float *src, int64_t n)
{
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
		dst[i] = __float2half_rn(src[i]);
}

extern "C" int pf_cuda_swiglu(float *out, const float *gate, const float *up, int64_t n, const struct pf_cuda_launch *lc)
{
	if (n < 0)
		return pf_cuda_bad_args(lc, "swiglu");
	if (n == 0)
		return 0;
	swiglu_kernel<<<pf_cuda_blocks(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, pf_cuda_stream(lc)>>>(out, gate, up, n);
	return pf_cuda_launched(lc, "swiglu launch");
}

extern "C" int pf_cuda_add(float *y, const float *x, int64_t n, const struct pf_cuda_launch *lc)
{
	if (n < 0)
		return pf_cuda_bad_args(lc, "add");
	if (n == 0)
		return 0;
	add_kernel<<<pf_cuda_blocks(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, pf_cuda_stream(lc)>>>(y, x, n);
	return pf_cuda_launched(lc, "add launch");
}

extern "C" int pf_cuda_add_bias(float *y, const float *bias, int64_t n_rows, int64_t n, const struct pf_cuda_launch *lc)
{
	if (n_rows < 0 || n <= 0)
		return pf_cuda_bad_args(lc, "add_bias");
	if (n_rows == 0)
		return 0;
	add_bias_kernel<<<pf_cuda_blocks(n_rows * n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, pf_cuda_stream(lc)>>>(
		y, bias, n_rows, n);
	return pf_cuda_launched(lc, "add_bias launch");
}

extern "C" int pf_cuda_gather_rows(float *dst, const float *src, const int32_t *rows, int32_t n_rows, int64_t n,
				   const struct pf_cuda_launch *lc)
{
	if (n_rows < 0 || n <= 0)
		return pf_cuda_bad_args(lc, "gather_rows");
	if (n_rows == 0)
		return 0;
	gather_rows_kernel<<<(unsigned)n_rows, EW_THREADS, 0, pf_cuda_stream(lc)>>>(dst, src, rows, n);
	return pf_cuda_launched(lc, "gather_rows launch");
}

extern "C" int pf_cuda_f32_to_f16(void *dst, const float *src, int64_t n, const struct pf_cuda_launch *lc)
{
	if (n < 0)
		return pf_cuda_bad_args(lc, "f32_to_f16");
	if (n == 0)
		return 0;
	f32_to_f16_kernel<<<pf_cuda_blocks(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, pf_cuda_stream(lc)>>>(
		(__half *)dst, src, n);
	return pf_cuda_launched(lc, "f32_to_f16 launch");
}
