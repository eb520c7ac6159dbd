/* rope.cu — rotary position embedding: the cos/sin cache and the rotation;
 * see cuda.h. */
#include "kernels/cuda/common.cuh"

#include <cmath>

#define ROPE_THREADS 128

/*
 * One block per token, one thread per pair i.  The angle of pair i is the
 * reference's: theta = pos, multiplied i times by theta_scale in float (each
 * thread repeats the chain up to its own i, so every value is the CPU's bit
 * for bit), then divided by the frequency factor.
 */
__global__ static void __launch_bounds__(ROPE_THREADS)
rope_cache_kernel(float *cs, const int32_t *pos, int32_t n_rot, float theta_scale, const float *ff)
{
	const int64_t t = blockIdx.x;
	for (int32_t i = threadIdx.x; i < n_rot / 2; i += ROPE_THREADS) {
		float theta = (float)pos[t];
		for (int32_t k = 0; k < i; k++)
			theta = __fmul_rn(theta, theta_scale);
		const float th = ff ? __fdiv_rn(theta, ff[i]) : theta;
		cs[t * n_rot + 2 * i] = cosf(th);
		cs[t * n_rot + 2 * i + 1] = sinf(th);
	}
}

/* One block per token, one thread per (head, pair): pairs are disjoint, so
 * the rotation is safe in place. */
__global__ static void __launch_bounds__(ROPE_THREADS)
rope_kernel(float *x, int64_t row_stride, int32_t n_heads, int32_t head_dim, int32_t n_rot, const float *cs, bool neox)
{
	const int64_t t = blockIdx.x;
	const int32_t half = n_rot / 2;
	for (int32_t idx = threadIdx.x; idx < n_heads * half; idx += ROPE_THREADS) {
		const int32_t h = idx / half, i = idx % half;
		float *v = x + t * row_stride + (int64_t)h * head_dim;
		const int32_t a = neox ? i : 2 * i;
		const int32_t b = neox ? i + half : 2 * i + 1;
		const float c = cs[t * n_rot + 2 * i], s = cs[t * n_rot + 2 * i + 1];
		const float x0 = v[a], x1 = v[b];
		/* the reference's fused form: one product rounded, the other fused */
		v[a] = fmaf(x0, c, -__fmul_rn(x1, s));
		v[b] = fmaf(x0, s, __fmul_rn(x1, c));
	}
}

extern "C" int pf_cuda_rope_cache(float *cs, const int32_t *pos, int32_t n_tok, int32_t n_rot, float base,
				  const float *freq_factors, const struct pf_cuda_launch *lc)
{
	if (n_tok < 0 || n_rot <= 0 || n_rot % 2)
		return pf_cuda_bad_args(lc, "rope_cache");
	if (n_tok == 0)
		return 0;
	/* host powf, as the CPU reference computes it */
	const float theta_scale = powf(base, -2.0f / (float)n_rot);
	rope_cache_kernel<<<(unsigned)n_tok, ROPE_THREADS, 0, pf_cuda_stream(lc)>>>(cs, pos, n_rot, theta_scale,
										      freq_factors);
	return pf_cuda_launched(lc, "rope_cache launch");
}

extern "C" int pf_cuda_rope(float *x, int64_t row_stride, int32_t n_tok, int32_t n_heads, int32_t head_dim, int32_t n_rot,
			    const float *cs, bool neox, const struct pf_cuda_launch *lc)
{
	if (n_tok < 0 || n_heads <= 0 || n_rot <= 0 || n_rot % 2 || n_rot > head_dim ||
	    row_stride < (int64_t)n_heads * head_dim)
		return pf_cuda_bad_args(lc, "rope");
	if (n_tok == 0)
		return 0;
	rope_kernel<<<(unsigned)n_tok, ROPE_THREADS, 0, pf_cuda_stream(lc)>>>(x, row_stride, n_heads, head_dim, n_rot, cs,
										 neox);
	return pf_cuda_launched(lc, "rope launch");
}
