/*
 * backend.h — the one interface between the engine and the compute backends.
 *
 * The engine (runtime/) knows requests, sequences and block tables; a backend
 * (kernels/cpu, kernels/cuda) knows weights, the KV pool memory and kernels.
 * They meet here:
 *
 *   - struct pf_model_weights describes a llama-family model: hyper-parameters
 *     and, per tensor, its type, shape and host bytes (the GGUF mapping).  A
 *     backend may use the bytes in place (CPU) or upload them (CUDA).
 *   - struct pf_batch is one engine step, flattened: the new tokens of many
 *     sequences back to back (prefill chunks and single-token decodes mixed),
 *     each with its position, plus each sequence's block table and which
 *     token rows need logits.  The weights are read once per step for all of
 *     them — the heart of continuous batching.
 *   - struct pf_backend_ops is a table of function pointers with a context;
 *     members marked optional may be NULL.
 *
 * KV cache: the backend owns one pool of `n_blocks` blocks; block b holds
 * `block_size` consecutive token positions of one sequence for every layer
 * (K and V).  The step first writes the new tokens' K/V into their slots,
 * then attention reads every position — new ones included — back from the
 * cache, so a row's arithmetic never depends on what else is in the batch.
 * Layout per layer: K[block][kv_head][slot][head_dim] and the same for V,
 * elements of `kv_dtype` (F16 default, F32 for tests; the dtype field leaves
 * room for an 8-bit cache).
 *
 * Shape comments use (rows, cols) with cols contiguous.
 */
#ifndef PF_BACKEND_H
#define PF_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pf_arch {
	PF_ARCH_LLAMA = 0, /* llama, SmolLM, Mistral (no sliding window): adjacent-pair RoPE */
	PF_ARCH_QWEN2 = 1, /* QKV bias, NEOX-pair RoPE */
};

struct pf_tensor_ref {
	uint32_t type;      /* enum pf_dtype */
	int64_t ne0, ne1;   /* ne0 = row length (contiguous), ne1 = rows */
	size_t row_bytes;
	const void *data;   /* host bytes, NULL when absent (optional tensors) */
};

struct pf_hparams {
	enum pf_arch arch;
	int32_t n_vocab;
	int32_t n_embd;
	int32_t n_layer;
	int32_t n_head;
	int32_t n_head_kv;
	int32_t head_dim;
	int32_t n_ff;
	int32_t n_ctx_train;
	int32_t n_rot;        /* rotated dims per head (usually head_dim) */
	float rope_base;
	float norm_eps;
	bool rope_neox;       /* pairs (i, i+n_rot/2) instead of (2i, 2i+1) */
};

struct pf_layer_weights {
	struct pf_tensor_ref attn_norm;            /* (1, n_embd) F32 */
	struct pf_tensor_ref wq, wk, wv, wo;       /* (n_head*hd, n_embd) … (n_embd, n_head*hd) */
	struct pf_tensor_ref bq, bk, bv;           /* optional biases (qwen2) F32 */
	struct pf_tensor_ref ffn_norm;             /* (1, n_embd) F32 */
	struct pf_tensor_ref w_gate, w_up, w_down; /* (n_ff, n_embd), (n_ff, n_embd), (n_embd, n_ff) */
};

struct pf_model_weights {
	struct pf_hparams hp;
	struct pf_tensor_ref tok_embd;   /* (n_vocab, n_embd) */
	struct pf_tensor_ref out_norm;   /* (1, n_embd) F32 */
	struct pf_tensor_ref output;     /* (n_vocab, n_embd); = tok_embd when tied */
	struct pf_tensor_ref rope_freqs; /* optional (1, n_rot/2) F32: Llama-3 frequency factors */
	struct pf_layer_weights *layers; /* n_layer entries */
};

struct pf_kv_config {
	int32_t n_blocks;
	int32_t block_size; /* 8, 16 or 32 */
	uint32_t kv_dtype;  /* PF_DT_F16 or PF_DT_F32 */
	/* Host swap slots, each one block of every layer's K and V (0: none;
	 * the backend then has no swap_out/swap_in, or they fail). */
	int32_t n_host_blocks;
};

/* One block move: pool block ids and host slot ids, as the op says. */
struct pf_block_pair {
	int32_t src, dst;
};

struct pf_batch {
	int32_t n_tokens;
	const int32_t *tokens;        /* (n_tokens) */
	const int32_t *pos;           /* (n_tokens) position of each token in its sequence */
	const int32_t *seq;           /* (n_tokens) index into the per-sequence arrays */
	int32_t n_seqs;
	const int32_t *const *block_table; /* (n_seqs) -> block ids covering positions 0..max pos */
	const int32_t *n_table;       /* (n_seqs) entries in each block table */
	int32_t n_logits;
	const int32_t *logit_rows;    /* (n_logits) token rows whose logits are wanted */
	/* Optional (n_seqs, may be NULL): each sequence's prompt length.  Rows
	 * at pos >= n_prompt[s] are generated tokens; the CPU backend sums their
	 * attention in llama.cpp's one-token-decode order, prompt rows (and all
	 * rows when NULL) in its batched-prompt order.  A property of the
	 * sequence, not of the batch, so batch invariance holds either way. */
	const int32_t *n_prompt;
};

/* One logit row's sampling, for a backend that samples where its logits
 * are (forward_sample).  The engine sends only rows that need nothing
 * more than this: no penalties, no masks, no top-N logprobs. */
struct pf_sample_row {
	double u;             /* the draw's uniform in [0, 1), from the sampler's Philox stream */
	float temperature;    /* below 1e-5: greedy (argmax, ties to the lowest id) */
	int32_t top_k;        /* <= 0: off */
	float top_p;          /* 1: off */
	float min_p;          /* 0: off */
	int32_t want_logprob; /* also the token's raw log-softmax */
	int32_t reserved;     /* 0 */
};

struct pf_backend_ops {
	const char *name;
	/* Run one step.  logits: (n_logits, n_vocab), row i for
	 * batch->logit_rows[i].  Returns 0 or a negative errno (-EINVAL for a
	 * malformed batch: positions past the block table, block ids out of
	 * the pool). */
	int (*forward)(void *ctx, const struct pf_batch *batch, float *logits);
	/* Copy every layer's K/V of block src into block dst (copy-on-write). */
	int (*copy_block)(void *ctx, int32_t src, int32_t dst);
	/* Optional: a description of the device for logs ("cpu avx2, 2 threads"). */
	const char *(*describe)(void *ctx);
	void (*destroy)(void *ctx);
	/* Optional (preemption by swapping; kv.n_host_blocks > 0): move whole
	 * blocks, every layer's K and V, from the pool to host slots (pairs:
	 * pool block → host slot) or back (host slot → pool block), in list
	 * order and before anything later asked of the backend touches them.
	 * Returns 0, -EINVAL for an id out of range. */
	int (*swap_out)(void *ctx, const struct pf_block_pair *pairs, int32_t n);
	int (*swap_in)(void *ctx, const struct pf_block_pair *pairs, int32_t n);
	/* Optional: forward, then draw each logit row's token where the
	 * logits are (a GPU: nothing vocabulary-sized crosses the bus).
	 * rows (n_logits): each row's parameters; survivors of the
	 * truncations are drawn in ascending token id.  ret_tokens
	 * (n_logits): the token, or -1 for a row with a NaN/+inf logit or
	 * nothing to draw from; ret_logprobs (n_logits): the raw logprob
	 * where asked.  Returns 0 or a negative errno, as forward. */
	int (*forward_sample)(void *ctx, const struct pf_batch *batch, const struct pf_sample_row *rows,
			      int32_t *ret_tokens, float *ret_logprobs);
	/* Optional: the verdict of the backend's load-time self-check (the CPU:
	 * its SIMD kernels against the scalar reference on the model's own
	 * weights, kernels/cpu/selfcheck.h), for the log at every start. */
	const char *(*self_check)(void *ctx);
};

struct pf_backend {
	const struct pf_backend_ops *ops;
	void *ctx;
	struct pf_kv_config kv;
};

/* ---- the backend-neutral checks (backend.c) ------------------------------- */

/* Bytes of KV cache one block takes for this model (all layers, K and V).
 * Cannot fail. */
size_t pf_kv_block_bytes(const struct pf_hparams *hp, int32_t block_size, uint32_t kv_dtype);

/* A KV configuration every backend accepts: block size 8/16/32, F16 or F32,
 * n_blocks >= 0 (what 0 means is the backend's), 0..2^24 host swap blocks.
 * Returns 0 or -EINVAL with the reason in err. */
int pf_backend_check_kv(const struct pf_kv_config *kv, char *err, size_t errlen);

/* What a valid batch spans: the longest context any row attends (largest
 * position + 1) and the longest block table. */
struct pf_batch_extent {
	int32_t max_ctx;
	int32_t max_table;
};

/* Check a batch against the vocabulary and the pool: counts, token ids,
 * sequence indices, positions inside their block tables, block ids inside
 * the pool, logit rows inside the batch.  Returns 0 (the extent in *ret
 * when non-NULL) or -EINVAL with the first problem in err. */
int pf_backend_check_batch(const struct pf_batch *b, int32_t n_vocab, const struct pf_kv_config *kv,
			   struct pf_batch_extent *ret, char *err, size_t errlen);

/* Check a swap list before moving anything (out: pool block -> host slot,
 * else host slot -> pool block).  Returns 0 or -EINVAL with the reason. */
int pf_backend_check_swap(const struct pf_block_pair *pairs, int32_t n, bool out, const struct pf_kv_config *kv,
			  char *err, size_t errlen);

/* Backends do not print: what they have to say (a fallback taken, a step
 * that failed) goes to the owner's log through this, when set.  level: 0
 * error, 1 warning, 2 info, 3 debug (the daemon's levels). */
struct pf_backend_log {
	void (*fn)(void *arg, int level, const char *msg);
	void *arg;
};
void pf_backend_logf(const struct pf_backend_log *log, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
