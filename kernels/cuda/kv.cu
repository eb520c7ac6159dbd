/* kv.cu — writing new K/V into the paged pool, and block copies
 * (copy-on-write); see cuda.h. */
#include "kernels/cuda/common.cuh"

#define KV_THREADS 128

static __device__ __forceinline__ void kv_put(void *base, int64_t i, float v, bool f16)
{
	if (f16)
		((__half *)base)[i] = __float2half_rn(v); /* IEEE round to nearest even, as pf_f32_to_f16 */
	else
		((float *)base)[i] = v;
}

/* One block per (token, KV head); threads over head_dim. */
__global__ static void __launch_bounds__(KV_THREADS)
kv_store_kernel(void *k_layer, void *v_layer, const float *k, const float *v, int64_t row_stride, const int32_t *slots,
		int32_t n_head_kv, int32_t head_dim, int32_t block_size, bool f16)
{
	const int64_t t = blockIdx.x;
	const int32_t h = blockIdx.y;
	const int32_t slot = slots[t];
	/* K[block][kv_head][slot][head_dim] */
	const int64_t row = ((int64_t)(slot / block_size) * n_head_kv + h) * block_size + slot % block_size;
	const float *ks = k + t * row_stride + (int64_t)h * head_dim;
	const float *vs = v + t * row_stride + (int64_t)h * head_dim;
	for (int32_t d = threadIdx.x; d < head_dim; d += KV_THREADS) {
		kv_put(k_layer, row * head_dim + d, ks[d], f16);
		kv_put(v_layer, row * head_dim + d, vs[d], f16);
	}
}

/* grid (n_slices, chunks): 16-byte words of one block in one slice. */
__global__ static void copy_block_kernel(uint8_t *pool, size_t slice_stride, size_t block_bytes, int32_t src, int32_t dst)
{
	uint8_t *base = pool + (size_t)blockIdx.x * slice_stride;
	const uint4 *s = (const uint4 *)(base + (size_t)src * block_bytes);
	uint4 *d = (uint4 *)(base + (size_t)dst * block_bytes);
	const size_t n16 = block_bytes / 16;
	for (size_t i = (size_t)blockIdx.y * blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.y * blockDim.x)
		d[i] = s[i];
}

/* grid (n_pairs, n_slices, chunks): 16-byte words of one block's piece in
 * one slice, between the pool and the block's host slot. */
__global__ static void swap_blocks_kernel(uint8_t *pool, size_t slice_stride, int32_t n_slices, size_t block_bytes,
					  uint8_t *host, const int32_t *pairs, bool to_host)
{
	const int32_t block = pairs[2 * blockIdx.x + (to_host ? 0 : 1)];
	const int32_t slot = pairs[2 * blockIdx.x + (to_host ? 1 : 0)];
	uint4 *dev = (uint4 *)(pool + (size_t)blockIdx.y * slice_stride + (size_t)block * block_bytes);
	uint4 *hst = (uint4 *)(host + ((size_t)slot * n_slices + blockIdx.y) * block_bytes);
	const size_t n16 = block_bytes / 16;
	for (size_t i = (size_t)blockIdx.z * blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.z * blockDim.x) {
		if (to_host)
			hst[i] = dev[i];
		else
			dev[i] = hst[i];
	}
}

extern "C" int pf_cuda_swap_blocks(void *pool, size_t slice_stride, int32_t n_slices, size_t block_bytes, void *host,
				   const int32_t *pairs, int32_t n_pairs, bool to_host, const struct pf_cuda_launch *lc)
{
	if (n_pairs < 0 || n_slices <= 0 || n_slices > 65535 || block_bytes % 16 || slice_stride % 16 ||
	    (uintptr_t)pool % 16 || (uintptr_t)host % 16 || !host || !pool)
		return pf_cuda_bad_args(lc, "swap_blocks");
	if (n_pairs == 0 || block_bytes == 0)
		return 0;
	const int threads = 256;
	/* a few thread blocks per piece keep enough 16-byte stores in flight
	 * to fill PCIe; the grid's x covers up to 2^31 - 1 pairs */
	dim3 grid((unsigned)n_pairs, (unsigned)n_slices, pf_cuda_blocks((int64_t)(block_bytes / 16), threads, 8));
	swap_blocks_kernel<<<grid, threads, 0, pf_cuda_stream(lc)>>>((uint8_t *)pool, slice_stride, n_slices, block_bytes,
								       (uint8_t *)host, pairs, to_host);
	return pf_cuda_launched(lc, "swap_blocks launch");
}

extern "C" int pf_cuda_kv_store(void *k_layer, void *v_layer, const float *k, const float *v, int64_t row_stride,
				const int32_t *slots, int32_t n_tok, int32_t n_head_kv, int32_t head_dim, int32_t block_size,
				uint32_t kv_dtype, const struct pf_cuda_launch *lc)
{
	if (n_tok < 0 || n_head_kv <= 0 || n_head_kv > 65535 || head_dim <= 0 || block_size <= 0 ||
	    row_stride < (int64_t)n_head_kv * head_dim || (kv_dtype != PF_DT_F16 && kv_dtype != PF_DT_F32))
		return pf_cuda_bad_args(lc, "kv_store");
	if (n_tok == 0)
		return 0;
	dim3 grid((unsigned)n_tok, (unsigned)n_head_kv);
	kv_store_kernel<<<grid, KV_THREADS, 0, pf_cuda_stream(lc)>>>(k_layer, v_layer, k, v, row_stride, slots, n_head_kv,
								    head_dim, block_size, kv_dtype == PF_DT_F16);
	return pf_cuda_launched(lc, "kv_store launch");
}

extern "C" int pf_cuda_copy_block(void *pool, size_t slice_stride, int32_t n_slices, size_t block_bytes, int32_t src,
				  int32_t dst, const struct pf_cuda_launch *lc)
{
	if (n_slices <= 0 || n_slices > 65535 * 1024 || src < 0 || dst < 0 || block_bytes % 16 || slice_stride % 16 ||
	    ((uintptr_t)pool % 16))
		return pf_cuda_bad_args(lc, "copy_block");
	if (src == dst || block_bytes == 0)
		return 0;
	const int threads = 256;
	/* enough blocks per slice to cover a block of up to a few MiB in one pass */
	dim3 grid((unsigned)n_slices, pf_cuda_blocks((int64_t)(block_bytes / 16), threads, 64));
	copy_block_kernel<<<grid, threads, 0, pf_cuda_stream(lc)>>>((uint8_t *)pool, slice_stride, block_bytes, src, dst);
	return pf_cuda_launched(lc, "copy_block launch");
}
