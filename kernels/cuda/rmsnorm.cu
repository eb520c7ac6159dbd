/* rmsnorm.cu — device discovery and the RMSNorm kernel; see cuda.h. */
#include "cuda/cuda.h"

#include <cerrno>
#include <cstdio>
#include <cuda_runtime.h>

/* Turn a CUDA status into a negative errno and a message; evaluates to 0 on success. */
static int cuda_check(cudaError_t e, const char *what, char *err, size_t errlen)
{
	if (e == cudaSuccess)
		return 0;
	if (err && errlen)
		snprintf(err, errlen, "CUDA %s failed: %s", what, cudaGetErrorString(e));
	if (e == cudaErrorMemoryAllocation)
		return -ENOMEM;
	if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice)
		return -ENODEV;
	return -EIO;
}

extern "C" int pf_cuda_device_count(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		cudaGetLastError(); /* clear the sticky "no driver" status */
		return 0;
	}
	return n;
}

extern "C" int pf_cuda_device_describe(int dev, char *buf, size_t len)
{
	cudaDeviceProp p;
	if (cudaGetDeviceProperties(&p, dev) != cudaSuccess)
		return -ENODEV;
	snprintf(buf, len, "%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor,
		 (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
	return 0;
}

/* One block per row; each thread strides over the row, then a shared-memory
 * tree reduction of the sum of squares (in double, as the CPU reference). */
__global__ static void rmsnorm_kernel(float *out, const float *x, const float *w, int n, float eps)
{
	extern __shared__ double partial[];
	const float *xr = x + (size_t)blockIdx.x * n;
	float *orow = out + (size_t)blockIdx.x * n;
	double s = 0.0;
	for (int i = threadIdx.x; i < n; i += blockDim.x)
		s += (double)(xr[i] * xr[i]);
	partial[threadIdx.x] = s;
	__syncthreads();
	for (int k = blockDim.x / 2; k > 0; k >>= 1) {
		if (threadIdx.x < k)
			partial[threadIdx.x] += partial[threadIdx.x + k];
		__syncthreads();
	}
	float scale = 1.0f / sqrtf((float)(partial[0] / n) + eps);
	for (int i = threadIdx.x; i < n; i += blockDim.x)
		orow[i] = xr[i] * scale * w[i];
}

extern "C" int pf_cuda_rmsnorm_host(int dev, float *out, const float *x, const float *w, int32_t n_rows, int32_t n,
				    float eps, char *err, size_t errlen)
{
	float *dx = nullptr, *dw = nullptr, *dout = nullptr;
	size_t bytes = (size_t)n_rows * (size_t)n * sizeof(float);
	const int threads = 256;
	int r;

	if (n_rows <= 0 || n <= 0)
		return -EINVAL;
	r = cuda_check(cudaSetDevice(dev), "cudaSetDevice", err, errlen);
	if (r)
		return r;
	r = cuda_check(cudaMalloc(&dx, bytes), "cudaMalloc", err, errlen);
	if (!r)
		r = cuda_check(cudaMalloc(&dout, bytes), "cudaMalloc", err, errlen);
	if (!r)
		r = cuda_check(cudaMalloc(&dw, (size_t)n * sizeof(float)), "cudaMalloc", err, errlen);
	if (!r)
		r = cuda_check(cudaMemcpy(dx, x, bytes, cudaMemcpyHostToDevice), "cudaMemcpy", err, errlen);
	if (!r)
		r = cuda_check(cudaMemcpy(dw, w, (size_t)n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy", err, errlen);
	if (!r) {
		rmsnorm_kernel<<<n_rows, threads, threads * sizeof(double)>>>(dout, dx, dw, n, eps);
		r = cuda_check(cudaGetLastError(), "rmsnorm launch", err, errlen);
	}
	if (!r)
		r = cuda_check(cudaMemcpy(out, dout, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy", err, errlen);
	cudaFree(dx);
	cudaFree(dout);
	cudaFree(dw);
	return r;
}
