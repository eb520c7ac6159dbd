/*
 * cuda.h — the C face of the CUDA backend (the .cu files in kernels/cuda).
 *
 * Compiled only when the build finds nvcc (PF_HAVE_CUDA); callers check
 * pf_cuda_device_count() at run time, so a binary built with CUDA still
 * starts, and uses the CPU backend, on a machine without a GPU or driver.
 * This header needs no CUDA header: streams are `void *` (a cudaStream_t),
 * device buffers are plain pointers, so C code (the engine, the plain test
 * and benchmark drivers in tests/gpu) includes it as is.
 *
 * Three layers:
 *   1. device, memory and stream helpers (device.cu);
 *   2. kernels, each with a host launcher that takes device pointers and a
 *      struct pf_cuda_launch (the stream, and where a failure's message
 *      goes).  Launchers only enqueue work: they return once the kernel is
 *      queued, and an error that happens while it runs surfaces at the next
 *      pf_cuda_sync() on that stream;
 *   3. the backend (cuda_backend.cu): struct pf_backend_ops over device-
 *      resident weights and KV pool, created by pf_cuda_backend_create().
 *
 * Every CUDA and cuBLAS call is checked: a failure becomes a negative errno
 * (-ENOMEM when device memory runs out, -ENODEV without a usable device,
 * -EINVAL for arguments the kernels do not take, -EIO for anything else)
 * and a message in the caller's buffer, never an abort.
 *
 * Math: every kernel is the scalar CPU reference's formula (kernels/cpu,
 * quant_ref.c and ops.c) evaluated in fp32 on the device.  Differences from
 * the CPU backend, all within the normalised error bounds of
 * tests/gpu/test_kernels.c:
 *   - quantized matmuls dequantize the weights and multiply float
 *     activations (the CPU quantizes activations to 8 bits first);
 *   - reductions run in a different order (warp trees);
 *   - attention keeps softmax probabilities in fp32 (the CPU rounds them to
 *     half for a half cache, as llama.cpp does); queries are rounded to half
 *     for a half cache on both;
 *   - sinf/cosf/expf are CUDA's (≤ 2 ulp), not glibc's;
 *   - the cuBLAS path (batches past PF_CUDA_MATVEC_MAX_TOKENS) multiplies
 *     FP16-rounded weights and activations, summed in fp32.
 * Dequantization, RoPE (given the same cos/sin), K/V stores (F16 round to
 * nearest even), block copies and argmax are exact.
 *
 * Decode steps through CUDA graphs (cuda_graphs, default on): a step whose
 * rows are all single-token decodes (no prefill tile), at most 256 of them,
 * each below min(pool, n_ctx_train, 16384) positions, runs padded to the
 * smallest batch bucket (1, 2, 4, … 256) holding it, by replaying the
 * bucket's graph of everything up to the final hidden states (the table
 * upload, the embeddings and every layer); the logits/sampling tail runs
 * outside the graph as in a plain step.  Graphs are captured on a bucket's
 * first step (the plain path's launches with cudaStreamCaptureModeThreadLocal)
 * and replayed with cudaGraphLaunch.  Fixed addresses and shapes make this
 * work: the scratch for 256 rows is allocated before the first capture
 * (a later regrow drops every graph, to be captured again); the step's
 * integer tables are rewritten in the same pinned buffer, whose copy is a
 * node of the graph; each row has its own block-table row of a fixed
 * stride; decode attention's grid is sized for the longest context a graph
 * step allows (blocks past a row's context exit at once, the merge reads
 * each row's splits from its position); padding rows are token 0 at
 * position 0 of a sequence whose table is one extra pool block past
 * kv.n_blocks that the engine never names, and their logits are never read.
 * Every kernel computes each row on its own, so a real row's logits are the
 * plain path's bit for bit — with one caveat: buckets past
 * PF_CUDA_MATVEC_MAX_TOKENS multiply through cuBLAS (given a workspace at
 * create, so it allocates nothing under capture) at the bucket's row count,
 * for which cuBLAS may pick another algorithm than for the step's own.  A
 * failed capture logs one line and leaves that bucket on the plain path;
 * graphs go at destroy.  Anything else runs the plain path.
 *
 * Backend states: create → any number of forward / copy_block → destroy.
 * A failed call leaves the backend usable, except after an error the CUDA
 * context keeps (an illegal address in a kernel): then every later call
 * fails with -EIO and the only way on is destroy (and a new process).
 *
 * Shapes are (rows, cols) with cols contiguous, as in backend.h.
 */
#ifndef PF_CUDA_H
#define PF_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* backend.h declares C functions without its own extern "C" */
#include "kernels/backend.h"

/* ---- device, memory, streams (device.cu) --------------------------------- */

/* Where a launcher enqueues its work and reports a failure. */
struct pf_cuda_launch {
	void *stream;   /* cudaStream_t; NULL = the legacy default stream */
	char *err;      /* message buffer, may be NULL */
	size_t errlen;
};

struct pf_cuda_device_info {
	char name[128];
	int sm_major, sm_minor;
	int n_sm;
	size_t total_mem;
	double peak_bw;          /* bytes/s: 2 × memory clock × bus width (0 when unknown) */
	size_t max_smem_optin;   /* shared memory per block with the opt-in attribute */
};

/* Number of usable CUDA devices (0 when there is no driver or no device).
 * Cannot fail. */
int pf_cuda_device_count(void);

/* Name and memory of device `dev` into buf.  Returns 0 or -ENODEV. */
int pf_cuda_device_describe(int dev, char *buf, size_t len);

/* Properties of device `dev`.  Returns 0 or -ENODEV. */
int pf_cuda_device_info(int dev, struct pf_cuda_device_info *ret);

/* The NUMA node the device is attached to (from its PCI address in sysfs),
 * or -1 when unknown (one node, no sysfs, no such device).  Cannot fail. */
int pf_cuda_device_numa_node(int dev);

/* Make `dev` the calling thread's current device.  Returns 0 or a negative
 * errno with a message in err. */
int pf_cuda_set_device(int dev, char *err, size_t errlen);

/* Free and total bytes of the current device.  Returns 0 or a negative errno. */
int pf_cuda_mem_info(size_t *ret_free, size_t *ret_total, char *err, size_t errlen);

/* Device memory of `bytes` (> 0) into *ret.  Returns 0 or -ENOMEM/-EIO. */
int pf_cuda_malloc(void **ret, size_t bytes, char *err, size_t errlen);

/* Free device memory from pf_cuda_malloc.  Accepts NULL. */
void pf_cuda_free(void *p);

/* Page-locked host memory (fast, asynchronous copies).  Returns 0 or
 * -ENOMEM/-EIO; pf_cuda_host_free accepts NULL. */
int pf_cuda_host_alloc(void **ret, size_t bytes, char *err, size_t errlen);
void pf_cuda_host_free(void *p);

/* Page-lock caller-owned host memory and map it for the device; its device
 * address into *ret_dev.  Returns 0 or a negative errno; unregister
 * accepts NULL. */
int pf_cuda_host_register(void *p, size_t bytes, void **ret_dev, char *err, size_t errlen);
void pf_cuda_host_unregister(void *p);

/* Copy n bytes between any two of host and device memory (the direction is
 * taken from the pointers), queued on the stream.  Pageable host memory
 * makes the call wait for the copy.  Returns 0 or a negative errno. */
int pf_cuda_memcpy(void *dst, const void *src, size_t n, const struct pf_cuda_launch *lc);

/* Fill n bytes of device memory with byte v, queued on the stream. */
int pf_cuda_memset(void *dst, int v, size_t n, const struct pf_cuda_launch *lc);

/* A new non-blocking stream into *ret / destroy one (accepts NULL). */
int pf_cuda_stream_create(void **ret, char *err, size_t errlen);
void pf_cuda_stream_destroy(void *stream);

/* Wait until everything queued on lc->stream has run.  Returns 0, or the
 * negative errno of the first kernel or copy that failed on it. */
int pf_cuda_sync(const struct pf_cuda_launch *lc);

/* ---- kernels --------------------------------------------------------------
 *
 * All pointers are device pointers unless a comment says host.  Weight rows
 * are GGUF rows of `row_bytes` bytes in one of the formats the kernels read:
 * F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K (pf_cuda_weight_type_ok).
 */

/* True when the kernels read weights of type `t`.  Cannot fail. */
bool pf_cuda_weight_type_ok(uint32_t t);

/* out (n_tok, n) = dequantized rows tokens[t] of w (n_vocab rows of
 * row_bytes, type wtype).  Token ids are trusted (the caller checks them).
 * n must be a whole number of the format's blocks. */
int pf_cuda_embed(float *out, const void *w, uint32_t wtype, size_t row_bytes, int64_t n,
		  const int32_t *tokens, int32_t n_tok, const struct pf_cuda_launch *lc);

/* out (n_rows, n) FP16 = dequantized w (n_rows rows of row_bytes): the
 * load-time copy the cuBLAS path multiplies with. */
int pf_cuda_dequant_f16(void *out, const void *w, uint32_t wtype, size_t row_bytes, int64_t n, int64_t n_rows,
			const struct pf_cuda_launch *lc);

/* out (n_rows, n) = x / rms(x) * w (n), sum of squares in double as the CPU
 * reference.  out may alias x. */
int pf_cuda_rmsnorm(float *out, const float *x, const float *w, int32_t n_rows, int64_t n, float eps,
		    const struct pf_cuda_launch *lc);

/* cs (n_tok, n_rot): for each token, cos/sin pairs of pf_cpu_rope_cache()
 * for position pos[t] — the angles by the same repeated float
 * multiplications.  freq_factors (n_rot/2) may be NULL. */
int pf_cuda_rope_cache(float *cs, const int32_t *pos, int32_t n_tok, int32_t n_rot, float base,
		       const float *freq_factors, const struct pf_cuda_launch *lc);

/* Rotate, in place, n_heads heads of head_dim in each row of x (n_tok rows
 * of row_stride floats) by cs: pf_cpu_rope_apply() per row.  neox: pairs
 * (i, i + n_rot/2), else (2i, 2i+1). */
int pf_cuda_rope(float *x, int64_t row_stride, int32_t n_tok, int32_t n_heads, int32_t head_dim, int32_t n_rot,
		 const float *cs, bool neox, const struct pf_cuda_launch *lc);

/* out (n) = silu(gate) * up; out may alias gate. */
int pf_cuda_swiglu(float *out, const float *gate, const float *up, int64_t n, const struct pf_cuda_launch *lc);

/* y (n) += x (n). */
int pf_cuda_add(float *y, const float *x, int64_t n, const struct pf_cuda_launch *lc);

/* y (n_rows, n) += bias (n) for every row. */
int pf_cuda_add_bias(float *y, const float *bias, int64_t n_rows, int64_t n, const struct pf_cuda_launch *lc);

/* dst (n_rows, n) = src rows rows[i] (src rows of n floats). */
int pf_cuda_gather_rows(float *dst, const float *src, const int32_t *rows, int32_t n_rows, int64_t n,
			const struct pf_cuda_launch *lc);

/* dst (n) FP16 = src (n) rounded to nearest even. */
int pf_cuda_f32_to_f16(void *dst, const float *src, int64_t n, const struct pf_cuda_launch *lc);

/*
 * Write the new tokens' K and V into a layer's pool.  k, v: (n_tok, rows of
 * row_stride floats), head h of token t at row t, column h·head_dim.
 * slots (n_tok): block id · block_size + position % block_size.  Pool
 * layout K[block][kv_head][slot][head_dim] of kv_dtype (F16 rounded to
 * nearest even, or F32), as the CPU backend's.
 */
int pf_cuda_kv_store(void *k_layer, void *v_layer, const float *k, const float *v, int64_t row_stride,
		     const int32_t *slots, int32_t n_tok, int32_t n_head_kv, int32_t head_dim, int32_t block_size,
		     uint32_t kv_dtype, const struct pf_cuda_launch *lc);

/* Copy block src to block dst in each of n_slices pool slices (one slice
 * per layer and K/V) that lie slice_stride bytes apart from pool.
 * block_bytes and slice_stride must be multiples of 16. */
int pf_cuda_copy_block(void *pool, size_t slice_stride, int32_t n_slices, size_t block_bytes, int32_t src,
		       int32_t dst, const struct pf_cuda_launch *lc);

/*
 * Move whole blocks between the pool and host swap slots (preemption by
 * swapping): pairs (n_pairs, 2) device int32 (pool block, host slot) when
 * to_host, else (host slot, pool block).  A host slot is the block's
 * n_slices pieces of block_bytes back to back; host is the device address
 * of page-locked, mapped host memory (pf_cuda_host_register, or
 * cudaHostAlloc'd), so one kernel moves every pair over PCIe, instead of
 * n_pairs × n_slices copy calls.  Pairs run in list order only in that no
 * two pairs may name the same block or slot (the block manager never
 * lists one twice).  block_bytes and slice_stride multiples of 16.
 */
int pf_cuda_swap_blocks(void *pool, size_t slice_stride, int32_t n_slices, size_t block_bytes, void *host,
			const int32_t *pairs, int32_t n_pairs, bool to_host, const struct pf_cuda_launch *lc);

/* Tokens one matvec launch multiplies with each weight row it reads. */
#define PF_CUDA_MATVEC_MAX_TOKENS 8

/*
 * y (n_tok, n_out) = x (n_tok, n_in) · Wᵀ (+ bias (n_out), may be NULL), W
 * (n_out rows of row_bytes, type wtype), dequantized on the fly, products
 * accumulated in fp32.  One warp per output row reads the row once for up
 * to PF_CUDA_MATVEC_MAX_TOKENS tokens; larger n_tok takes several passes
 * (use pf_cuda_gemm_f16 there).  Each y element depends only on its own
 * weight row and token row: batch invariant.
 */
int pf_cuda_matvec(float *y, const void *w, uint32_t wtype, size_t row_bytes, int64_t n_in, int64_t n_out,
		   const float *x, int32_t n_tok, const float *bias, const struct pf_cuda_launch *lc);

/* A cuBLAS handle. */
struct pf_cuda_blas;

/* Create / destroy a cuBLAS handle (on the current device).  Returns 0 or a
 * negative errno; destroy accepts NULL. */
int pf_cuda_blas_create(struct pf_cuda_blas **ret, char *err, size_t errlen);
void pf_cuda_blas_destroy(struct pf_cuda_blas *b);

/*
 * y (n_tok, n_out) = x (n_tok, n_in) · Wᵀ (+ bias), W (n_out, n_in) FP16
 * (from pf_cuda_dequant_f16, or an F16 tensor as is), through
 * cublasGemmEx with FP16 inputs and FP32 accumulation.  x is first rounded
 * to FP16 into xh (n_tok · n_in halves of scratch).  Dimensions must fit
 * an int.  Results may depend on n_tok (cuBLAS picks algorithms by shape).
 * The handle works in its own workspace (allocated at create, so cuBLAS
 * allocates nothing under stream capture), on the stream of the last call;
 * n_tok == 0 queues nothing but binds the handle to lc's stream, as a
 * caller about to capture that stream wants.
 */
int pf_cuda_gemm_f16(struct pf_cuda_blas *b, float *y, const void *w_f16, const float *x, void *xh, int64_t n_in,
		     int64_t n_out, int32_t n_tok, const float *bias, const struct pf_cuda_launch *lc);

/* Largest head_dim the attention kernels take. */
#define PF_CUDA_MAX_HEAD_DIM 256
/* Query rows of one sequence one prefill tile holds. */
#define PF_CUDA_ATTN_TILE 16

/*
 * Paged attention of a flattened batch over one layer's K/V pool, which
 * already holds every attended position (new tokens included).  Token row
 * t attends positions 0..pos[t] of sequence seq[t] through its block table.
 * GQA: query head h reads KV head h / (n_head / n_head_kv).
 */
struct pf_cuda_attn_args {
	const float *q;            /* (n_tok, n_head·head_dim) rotated queries */
	float *out;                /* (n_tok, n_head·head_dim) */
	const void *k_layer, *v_layer;
	uint32_t kv_dtype;         /* PF_DT_F16 or PF_DT_F32 */
	const int32_t *pos;        /* (n_tok) */
	const int32_t *seq;        /* (n_tok) */
	const int32_t *tables;     /* (n_seqs, table_stride) block ids */
	int32_t table_stride;
	int32_t n_head, n_head_kv, head_dim, block_size;
	float scale;               /* usually 1/sqrt(head_dim) */
};

/* Positions one decode split covers for this head shape (a power of two,
 * 32..512, fixed by the shape alone so a row's arithmetic never depends on
 * the batch), or -EINVAL when even 32 does not fit shared memory. */
int pf_cuda_attn_split_len(int32_t n_head, int32_t n_head_kv, int32_t head_dim);

/* Floats of scratch pf_cuda_attn_decode needs for n_rows rows of at most
 * max_ctx positions (0 when no row needs more than one split). */
size_t pf_cuda_attn_decode_scratch(int32_t n_rows, int32_t max_ctx, int32_t n_head, int32_t n_head_kv,
				   int32_t head_dim);

/*
 * Decode attention for the token rows listed in rows (n_rows), e.g. one
 * per sequence: each row's context is cut into splits of
 * pf_cuda_attn_split_len() positions, one thread block per (row, KV head,
 * split), and the partial softmaxes of rows longer than one split are
 * merged by a second kernel.  max_ctx: the largest pos[t] + 1 of the rows
 * (sizes the grid).  scratch: pf_cuda_attn_decode_scratch() floats (NULL
 * when that is 0).
 */
int pf_cuda_attn_decode(const struct pf_cuda_attn_args *a, const int32_t *rows, int32_t n_rows, int32_t max_ctx,
			float *scratch, const struct pf_cuda_launch *lc);

/*
 * Prefill attention: tiles (n_tiles, 2) of (first row, count ≤
 * PF_CUDA_ATTN_TILE) consecutive token rows of one sequence; one thread
 * block per (tile, query head) walks the K/V positions in tiles staged in
 * shared memory with an online softmax, causal per row.
 */
int pf_cuda_attn_prefill(const struct pf_cuda_attn_args *a, const int32_t *tiles, int32_t n_tiles,
			 const struct pf_cuda_launch *lc);

/* out (n_rows): index of the largest logit of each row of logits (n_rows,
 * n), ties to the lowest index — the CPU sampler's greedy choice; -1 for a
 * row holding NaN or +inf or nothing above -inf (the sampler's -EDOM). */
int pf_cuda_argmax(int32_t *out, const float *logits, int32_t n_rows, int64_t n, const struct pf_cuda_launch *lc);

/* ---- sampling (sample.cu) ------------------------------------------------- */

/* Below this temperature a row is greedy (runtime/engine/sampler.h's
 * PF_SAMPLER_GREEDY_TEMP; kernels depend on nothing in runtime/). */
#define PF_CUDA_SAMPLE_GREEDY_TEMP 1e-5f

/* One row's sampling parameters (an array of them in device memory, one
 * per row).  Values are trusted: check them with pf_sampler_validate(). */
struct pf_cuda_sample_params {
	double u;             /* the draw's uniform in [0, 1): pf_philox_u01d() of
			       * pf_philox_draw(seed, token_index, PF_SAMPLER_STREAM_TOKEN),
			       * made on the host, so the stream is the CPU sampler's */
	float temperature;    /* < PF_CUDA_SAMPLE_GREEDY_TEMP (incl. 0): greedy */
	int32_t top_k;        /* <= 0 or >= the finite logits: off */
	float top_p;          /* >= 1: off; else in (0, 1) */
	float min_p;          /* <= 0: off; else in (0, 1] */
	int32_t want_logprob; /* nonzero: the chosen token's raw logprob too */
	int32_t reserved;     /* 0 (keeps the size 32 bytes in C and C++) */
};

/*
 * out_tokens (n_rows): one token per row of logits (n_rows, n), steps 4-8
 * of runtime/engine/sampler.h without penalties, min_tokens or logit bias (the
 * caller sends only rows that need none):
 *   - greedy (temperature below PF_CUDA_SAMPLE_GREEDY_TEMP): argmax, ties to
 *     the lowest id — the same token as pf_cuda_argmax();
 *   - else weights w = expf((l - max) * (1.0f / temperature)) (the CPU's
 *     formula, so CUDA's expf, ≤ 2 ulp, is the only difference); top-k keeps
 *     exactly k finite logits by (logit desc, id asc); top-p keeps the
 *     shortest prefix by (w desc, id asc) of that set whose mass (summed in
 *     double) reaches top_p × the set's mass; min-p keeps w >= min_p (w of
 *     the best is 1); the draw is the first survivor IN ASCENDING ID ORDER
 *     whose running mass (double) exceeds u × the survivors' mass, zero
 *     weights never chosen.  The CPU sampler draws over its survivors in an
 *     internal order, so for the same u the two can choose different
 *     tokens; each follows the same distribution, and the device's choice is
 *     a pure function of (row, params, n).
 * A row holding NaN or +inf, or with nothing left to draw from, gets -1 (the
 * CPU sampler's -EDOM).
 * out_logprobs (n_rows) may be NULL; otherwise every entry is written: for a
 * row with want_logprob and a token, that token's raw log-softmax
 * (l - max - log Σ exp(l_i - max), summed in double: vLLM's raw_logprobs,
 * ignoring temperature and truncation), else NaN.
 * One block of 512 threads per row.  Reads per row: one pass (greedy, two
 * with a logprob); sampling adds two (the draw), plus per truncation a pass
 * per search round (usually 1-3) and two to gather ≤ 4096 candidates, which
 * are sorted in shared memory — never the vocabulary.  No scratch memory.
 * Returns 0 or -EINVAL (n outside [1, INT32_MAX], n_rows < 0, a NULL array)
 * with a message in lc->err; the kernel itself cannot fail.
 */
int pf_cuda_sample(int32_t *out_tokens, float *out_logprobs, const float *logits,
		   const struct pf_cuda_sample_params *params, int32_t n_rows, int64_t n,
		   const struct pf_cuda_launch *lc);

/* ---- the backend (cuda_backend.cu) --------------------------------------- */

/* The backend below exists (runtime/engine/device.c takes the CUDA path only then). */
#define PF_CUDA_HAVE_BACKEND 1

struct pf_cuda_backend_config {
	int device;                /* CUDA device index */
	/* Where the backend's warnings and step failures go (a fallback taken,
	 * a failed forward); unset: nowhere — the backend never prints. */
	struct pf_backend_log log;
	/* KV pool when kv->n_blocks is 0: this share of the device's memory
	 * (weights included) minus activation_reserve. */
	double memory_utilization;
	size_t activation_reserve; /* bytes kept free for activations and cuBLAS */
	/* Keep an FP16 copy of every non-F16 weight matrix (2 bytes per
	 * weight) and multiply batches of more than PF_CUDA_MATVEC_MAX_TOKENS
	 * tokens with cuBLAS; otherwise the matvec kernels take every batch. */
	bool gemm_f16;
	/* Only kernels whose per-row arithmetic ignores the rest of the batch:
	 * matvec for every projection, decode attention for every row (no
	 * cuBLAS, no prefill tiles).  Slower prefill; the same logits for a row
	 * whatever it is batched with. */
	bool batch_invariant;
	/* Host swap slots (kv->n_host_blocks of them): caller memory of
	 * swap_host_bytes (e.g. on the GPU's NUMA node), which the backend
	 * page-locks and owns from the create call on, success or failure —
	 * it calls swap_host_free(swap_host, swap_host_bytes) when done.
	 * NULL: the backend takes page-locked memory from the driver. */
	void *swap_host;
	size_t swap_host_bytes;
	void (*swap_host_free)(void *p, size_t bytes);
	/* Replay decode steps from CUDA graphs captured per batch-size bucket
	 * (see the top of this file); the pool gets one block more. */
	bool cuda_graphs;
};

/* Defaults: device 0, utilization 0.90, 512 MiB reserve, gemm_f16 on,
 * batch_invariant off, cuda_graphs on.  Cannot fail. */
struct pf_cuda_backend_config pf_cuda_backend_config_default(void);

/*
 * Create a CUDA backend for `w` (host bytes, read only here: everything is
 * uploaded, so `w` may go once this returns) with a KV pool shaped by `kv`;
 * kv->n_blocks == 0 sizes the pool from cfg (see above).  ret->kv holds the
 * pool actually made.  Returns 0 or a negative errno with a message in err:
 * -ENODEV (no such device), -ENOTSUP (a weight type or head size the
 * kernels do not take), -EINVAL (bad KV shape), -ENOMEM (device memory).
 * The calling thread's current device becomes cfg->device; forward and
 * copy_block set it again, so any one thread at a time may call them.
 */
int pf_cuda_backend_create(const struct pf_model_weights *w, const struct pf_kv_config *kv,
			   const struct pf_cuda_backend_config *cfg, struct pf_backend *ret, char *err, size_t errlen);

/* The message of the backend's last failed forward/copy_block ("" when
 * none); ctx is pf_backend.ctx of a CUDA backend.  Cannot fail. */
const char *pf_cuda_backend_last_error(void *ctx);

/* Steps the backend ran through CUDA graphs, and graphs it captured (a
 * bucket's graph is captured again after a scratch regrow dropped it).
 * Cannot fail. */
void pf_cuda_backend_graph_stats(void *ctx, int64_t *ret_replays, int64_t *ret_captures);

#ifdef __cplusplus
}
#endif

#endif
