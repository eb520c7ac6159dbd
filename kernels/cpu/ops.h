/*
 * ops.h — the element-wise and attention kernels of the CPU backend.
 *
 * Every function here works on one row (one token) at a time, so a row's
 * result depends only on that row and the KV cache: the batch-invariance rule
 * of the engine.  The float arithmetic follows llama.cpp's CPU path where it
 * affects results (RMSNorm sums in double, RoPE angles by repeated
 * multiplication in float and the rotation fused as its build compiles it,
 * K/V stored as IEEE half with round-to-nearest-even, queries and softmax
 * probabilities rounded to half for a half cache, its AVX2 exponential and
 * summation orders) so greedy tokens agree with it up to genuine near-ties.
 */
#ifndef PF_CPU_OPS_H
#define PF_CPU_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* out (n) = x (n) / rms(x) * w (n).  out may alias x. */
void pf_cpu_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* Per-pair cos/sin for position `pos`: cs[2i] = cos, cs[2i+1] = sin for
 * i < n_rot/2.  freq_factors (n_rot/2) is optional (Llama-3 rope scaling). */
void pf_cpu_rope_cache(float *cs, int32_t pos, int32_t n_rot, float base, const float *freq_factors);

/* Rotate `n_heads` heads of `head_dim` in x, in place, by the cache cs.
 * neox: pairs (i, i + n_rot/2); otherwise adjacent pairs (2i, 2i+1). */
void pf_cpu_rope_apply(float *x, int32_t n_heads, int32_t head_dim, int32_t n_rot, const float *cs, bool neox);

/* out (n) = silu(gate) * up.  isa: enum pf_isa the caller detected once. */
void pf_cpu_swiglu(float *out, const float *gate, const float *up, int64_t n, int isa);

/* Store a float row into the cache element type (F16: RNE, F32: copy). */
void pf_cpu_store_kv(void *dst, const float *src, int32_t n, uint32_t kv_dtype);

/*
 * Attention of one token for the `n_q` query heads that share one KV head.
 *   q     (n_q, head_dim)           queries, already rotated
 *   out   (n_q, head_dim)           result
 *   k_base/v_base                   this layer's K/V pool; block b, this KV head,
 *                                   slot s is at base + ((b * n_head_kv + kvh) * block_size + s) * head_dim
 *   table (n_ctx / block_size …)    the sequence's block table
 *   n_ctx                           positions 0..n_ctx-1 are attended (causal)
 *   scratch pf_cpu_attention_scratch(n_q, n_ctx, head_dim) floats
 */
struct pf_attn_args {
	const float *q;
	float *out;
	const void *k_base, *v_base;
	uint32_t kv_dtype;
	int32_t kvh, n_head_kv, head_dim, block_size, n_q;
	const int32_t *table;
	int32_t n_ctx;
	float scale;
	float *scratch;
	int isa;            /* enum pf_isa the caller detected once */
	bool single;        /* a generated token: llama.cpp's one-token-decode order (see ops.c) */
};
void pf_cpu_attention(const struct pf_attn_args *a);
/* Floats of scratch pf_cpu_attention needs for up to n_ctx positions. */
size_t pf_cpu_attention_scratch(int32_t n_q, int32_t n_ctx, int32_t head_dim);

#endif
