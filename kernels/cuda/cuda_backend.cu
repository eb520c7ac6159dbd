/*
 * cuda_backend.cu — the llama-family forward pass on one CUDA device over a
 * paged KV pool in device memory; see cuda.h.
 *
 * Step for step the CPU backend's forward (kernels/cpu/cpu_backend.c), with
 * the kernels of this directory: weights are uploaded once at create (and,
 * with gemm_f16, dequantized once more to FP16 for cuBLAS); each forward()
 * uploads the batch's small integer tables in one copy, runs every layer on
 * one stream and copies back only the wanted logits.  State across calls:
 * the KV pool and the scratch buffers, grown on demand and never shrunk.
 */
#include "kernels/cuda/common.cuh"

#include <cmath>
#include <cstdarg>
#include <cstdlib>
#include <cstring>

struct dev_tensor {
	uint32_t type;
	int64_t ne0, ne1;
	size_t row_bytes;
	void *d;     /* (ne1 rows of row_bytes) on the device; NULL when absent */
	void *f16;   /* (ne1, ne0) FP16 copy for cuBLAS, or NULL */
	bool shared; /* d and f16 belong to another dev_tensor (tied output) */
};

struct dev_layer {
	struct dev_tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, gate, up, down;
};

struct cuda_ctx {
	int dev;
	struct pf_hparams hp;
	struct pf_kv_config kv;
	struct pf_cuda_backend_config cfg;
	void *stream;
	struct pf_cuda_blas *blas; /* NULL when cuBLAS is not used */
	struct dev_layer *layers;  /* (n_layer) */
	struct dev_tensor tok_embd, out_norm, output, rope_freqs;
	void *pool;                /* 2·n_layer slices of layer_bytes: K of each layer, then V of each */
	size_t layer_bytes, block_bytes;
	size_t weight_bytes, f16_bytes;
	/* scratch, grown on demand */
	int32_t cap_tok, cap_logit;
	float *x, *hn, *q, *k, *v, *att, *gt, *up, *cs; /* (cap_tok, …) activations */
	void *xh;                  /* (cap_tok, max input) FP16 activations for cuBLAS */
	float *xo, *logits;        /* (cap_logit, n_embd), (cap_logit, n_vocab) */
	float *part;               /* decode attention partials */
	size_t cap_part;
	int32_t *hmeta, *dmeta;    /* the batch's integer tables: pinned host and device */
	size_t cap_meta;
	/* host swap slots: swap_h (host, page-locked and mapped) seen by the
	 * device at swap_d; n_host_blocks slots of 2·n_layer·block_bytes */
	void *swap_h, *swap_d;
	size_t swap_bytes;
	bool swap_registered;
	void (*swap_free)(void *p, size_t bytes);
	int32_t *hswap, *dswap;    /* a swap call's pairs: pinned host and device */
	size_t cap_swap;
	/* device sampling, pinned host and device, one layout: (cap_samp)
	 * rows of parameters, then tokens, then logprobs */
	void *hsamp, *dsamp;
	int32_t cap_samp;
	/* CUDA graphs of decode steps (cfg.cuda_graphs; see cuda.h): block
	 * kv.n_blocks of the pool is the padding rows' trash block; a graph
	 * step's rows stay below g_ctx positions (g_stride table entries) */
	int32_t g_ctx, g_stride;
	bool g_ready;               /* scratch sized for the largest bucket */
	cudaGraphExec_t g_exec[9];  /* per bucket (g_buckets), NULL until captured */
	bool g_failed[9];           /* capture failed: that bucket runs plain */
	int64_t g_replays, g_captures;
	char desc[256];
	char err[512];
};

/* Batch sizes a decode step is padded to for graph replay. */
static const int32_t g_buckets[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256 };
#define G_N_BUCKETS ((int32_t)(sizeof(g_buckets) / sizeof(g_buckets[0])))
#define G_MAX_BATCH 256
/* Positions a graph step's rows may reach at most (the decode attention
 * grid and its partials are sized for this many in every bucket). */
#define G_MAX_CTX 16384
static_assert(sizeof(((struct cuda_ctx *)nullptr)->g_exec) / sizeof(cudaGraphExec_t) == G_N_BUCKETS,
	      "one graph per bucket");

/* Forget every captured graph (they hold the scratch addresses). */
static void graphs_drop(struct cuda_ctx *c)
{
	for (int32_t k = 0; k < G_N_BUCKETS; k++) {
		if (c->g_exec[k])
			cudaGraphExecDestroy(c->g_exec[k]);
		c->g_exec[k] = nullptr;
	}
}

/* ---- create / destroy ------------------------------------------------------------ */

static void tensor_free(struct dev_tensor *t)
{
	if (!t->shared) {
		pf_cuda_free(t->d);
		pf_cuda_free(t->f16);
	}
	t->d = t->f16 = nullptr;
}

static void cuda_destroy(void *ctx)
{
	struct cuda_ctx *c = (struct cuda_ctx *)ctx;
	if (!c)
		return;
	pf_cuda_set_device(c->dev, nullptr, 0);
	if (c->stream) {
		/* nothing may still run on buffers we are about to free */
		struct pf_cuda_launch lc = { c->stream, nullptr, 0 };
		pf_cuda_sync(&lc);
	}
	graphs_drop(c);
	if (c->layers) {
		for (int32_t l = 0; l < c->hp.n_layer; l++) {
			struct dev_layer *L = &c->layers[l];
			struct dev_tensor *ts[] = { &L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk,
						    &L->bv, &L->ffn_norm, &L->gate, &L->up, &L->down };
			for (struct dev_tensor *t : ts)
				tensor_free(t);
		}
		free(c->layers);
	}
	tensor_free(&c->output); /* before tok_embd: it may share tok_embd's buffers */
	tensor_free(&c->tok_embd);
	tensor_free(&c->out_norm);
	tensor_free(&c->rope_freqs);
	pf_cuda_free(c->pool);
	float *bufs[] = { c->x, c->hn, c->q, c->k, c->v, c->att, c->gt, c->up, c->cs, c->xo, c->logits, c->part };
	for (float *b : bufs)
		pf_cuda_free(b);
	pf_cuda_free(c->xh);
	pf_cuda_free(c->dmeta);
	pf_cuda_host_free(c->hmeta);
	pf_cuda_free(c->dswap);
	pf_cuda_host_free(c->hswap);
	pf_cuda_free(c->dsamp);
	pf_cuda_host_free(c->hsamp);
	if (c->swap_registered)
		pf_cuda_host_unregister(c->swap_h);
	if (c->swap_h && c->swap_free)
		c->swap_free(c->swap_h, c->swap_bytes);
	pf_cuda_blas_destroy(c->blas);
	pf_cuda_stream_destroy(c->stream);
	free(c);
}

enum { T_OPTIONAL = 1, T_F32_ONLY = 2, T_GEMM = 4 };

/* Upload one tensor; with T_GEMM (and gemm_f16) also its FP16 copy. */
static int upload(struct cuda_ctx *c, struct dev_tensor *dst, const struct pf_tensor_ref *src, const char *name, int l,
		  int flags, char *err, size_t errlen)
{
	struct pf_cuda_launch lc = { c->stream, err, errlen };
	char what[64];
	int r;
	if (l >= 0)
		snprintf(what, sizeof(what), "%s of layer %d", name, l);
	else
		snprintf(what, sizeof(what), "%s", name);
	memset(dst, 0, sizeof(*dst));
	if (!src->data) {
		if (flags & T_OPTIONAL)
			return 0;
		snprintf(err, errlen, "tensor %s is missing", what);
		return -EINVAL;
	}
	if ((flags & T_F32_ONLY) && src->type != PF_DT_F32) {
		snprintf(err, errlen, "tensor %s has type %s; the CUDA backend takes F32 there", what,
			 pf_dtype_name(src->type));
		return -ENOTSUP;
	}
	if (!pf_cuda_weight_type_ok(src->type) || src->ne0 <= 0 || src->ne1 <= 0 ||
	    src->ne0 % pf_cuda_block_elems(src->type) || src->row_bytes != pf_dtype_row_bytes(src->type, (uint64_t)src->ne0)) {
		snprintf(err, errlen, "tensor %s (%s, %lld x %lld) is not something the CUDA kernels read", what,
			 pf_dtype_name(src->type), (long long)src->ne1, (long long)src->ne0);
		return -ENOTSUP;
	}
	dst->type = src->type;
	dst->ne0 = src->ne0;
	dst->ne1 = src->ne1;
	dst->row_bytes = src->row_bytes;
	const size_t bytes = src->row_bytes * (size_t)src->ne1;
	r = pf_cuda_malloc(&dst->d, bytes, err, errlen);
	if (!r)
		r = pf_cuda_memcpy(dst->d, src->data, bytes, &lc);
	if (r)
		return r;
	c->weight_bytes += bytes;
	if ((flags & T_GEMM) && c->blas && src->type != PF_DT_F16) {
		const size_t hb = (size_t)src->ne0 * (size_t)src->ne1 * 2;
		r = pf_cuda_malloc(&dst->f16, hb, err, errlen);
		if (!r)
			r = pf_cuda_dequant_f16(dst->f16, dst->d, dst->type, dst->row_bytes, dst->ne0, dst->ne1, &lc);
		if (r)
			return r;
		c->f16_bytes += hb;
	}
	return 0;
}

/* A weight matrix must map ne0 inputs to ne1 outputs. */
static int check_shape(const struct dev_tensor *t, int64_t ne0, int64_t ne1, const char *name, int l, char *err,
		       size_t errlen)
{
	if (!t->d || (t->ne0 == ne0 && t->ne1 == ne1))
		return 0;
	snprintf(err, errlen, "tensor %s of layer %d is %lld x %lld, expected %lld x %lld", name, l, (long long)t->ne1,
		 (long long)t->ne0, (long long)ne1, (long long)ne0);
	return -EINVAL;
}

static int upload_layer(struct cuda_ctx *c, struct dev_layer *L, const struct pf_layer_weights *W, int l, char *err,
			size_t errlen)
{
	const struct pf_hparams *hp = &c->hp;
	const int64_t E = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_head_kv * hp->head_dim;
	int r = upload(c, &L->attn_norm, &W->attn_norm, "attn_norm", l, T_F32_ONLY, err, errlen) ?:
		upload(c, &L->wq, &W->wq, "attn_q", l, T_GEMM, err, errlen) ?:
		upload(c, &L->wk, &W->wk, "attn_k", l, T_GEMM, err, errlen) ?:
		upload(c, &L->wv, &W->wv, "attn_v", l, T_GEMM, err, errlen) ?:
		upload(c, &L->wo, &W->wo, "attn_output", l, T_GEMM, err, errlen) ?:
		upload(c, &L->bq, &W->bq, "attn_q bias", l, T_OPTIONAL | T_F32_ONLY, err, errlen) ?:
		upload(c, &L->bk, &W->bk, "attn_k bias", l, T_OPTIONAL | T_F32_ONLY, err, errlen) ?:
		upload(c, &L->bv, &W->bv, "attn_v bias", l, T_OPTIONAL | T_F32_ONLY, err, errlen) ?:
		upload(c, &L->ffn_norm, &W->ffn_norm, "ffn_norm", l, T_F32_ONLY, err, errlen) ?:
		upload(c, &L->gate, &W->w_gate, "ffn_gate", l, T_GEMM, err, errlen) ?:
		upload(c, &L->up, &W->w_up, "ffn_up", l, T_GEMM, err, errlen) ?:
		upload(c, &L->down, &W->w_down, "ffn_down", l, T_GEMM, err, errlen);
	if (r)
		return r;
	/* the kernels trust these shapes for every index they form */
	return check_shape(&L->attn_norm, E, 1, "attn_norm", l, err, errlen) ?:
	       check_shape(&L->ffn_norm, E, 1, "ffn_norm", l, err, errlen) ?:
	       check_shape(&L->wq, E, qd, "attn_q", l, err, errlen) ?:
	       check_shape(&L->wk, E, kvd, "attn_k", l, err, errlen) ?:
	       check_shape(&L->wv, E, kvd, "attn_v", l, err, errlen) ?:
	       check_shape(&L->wo, qd, E, "attn_output", l, err, errlen) ?:
	       check_shape(&L->bq, qd, 1, "attn_q bias", l, err, errlen) ?:
	       check_shape(&L->bk, kvd, 1, "attn_k bias", l, err, errlen) ?:
	       check_shape(&L->bv, kvd, 1, "attn_v bias", l, err, errlen) ?:
	       check_shape(&L->gate, E, hp->n_ff, "ffn_gate", l, err, errlen) ?:
	       check_shape(&L->up, E, hp->n_ff, "ffn_up", l, err, errlen) ?:
	       check_shape(&L->down, hp->n_ff, E, "ffn_down", l, err, errlen);
}

static size_t kv_es(uint32_t dt)
{
	return dt == PF_DT_F32 ? 4 : 2;
}

extern "C" struct pf_cuda_backend_config pf_cuda_backend_config_default(void)
{
	struct pf_cuda_backend_config c;
	memset(&c, 0, sizeof(c));
	c.device = 0;
	c.memory_utilization = 0.90;
	c.activation_reserve = (size_t)512 << 20;
	c.gemm_f16 = true;
	c.batch_invariant = false;
	c.cuda_graphs = true;
	return c;
}

static int cuda_forward(void *ctx, const struct pf_batch *b, float *logits);
static int cuda_copy_block(void *ctx, int32_t src, int32_t dst);
static const char *cuda_describe(void *ctx);
static int cuda_swap_out(void *ctx, const struct pf_block_pair *pairs, int32_t n);
static int cuda_swap_in(void *ctx, const struct pf_block_pair *pairs, int32_t n);
static int cuda_forward_sample(void *ctx, const struct pf_batch *b, const struct pf_sample_row *rows,
			       int32_t *ret_tokens, float *ret_logprobs);

/* in the order of struct pf_backend_ops: name, forward, copy_block,
 * describe, destroy, swap_out, swap_in, forward_sample */
static const struct pf_backend_ops cuda_ops = { "cuda",	      cuda_forward,  cuda_copy_block, cuda_describe,
						cuda_destroy, cuda_swap_out, cuda_swap_in,    cuda_forward_sample };

/* the engine's rows go to the kernel as they are */
static_assert(sizeof(struct pf_sample_row) == sizeof(struct pf_cuda_sample_params) &&
		      offsetof(struct pf_sample_row, u) == offsetof(struct pf_cuda_sample_params, u) &&
		      offsetof(struct pf_sample_row, temperature) == offsetof(struct pf_cuda_sample_params, temperature) &&
		      offsetof(struct pf_sample_row, top_k) == offsetof(struct pf_cuda_sample_params, top_k) &&
		      offsetof(struct pf_sample_row, top_p) == offsetof(struct pf_cuda_sample_params, top_p) &&
		      offsetof(struct pf_sample_row, min_p) == offsetof(struct pf_cuda_sample_params, min_p) &&
		      offsetof(struct pf_sample_row, want_logprob) == offsetof(struct pf_cuda_sample_params, want_logprob),
	      "pf_sample_row and pf_cuda_sample_params must have one layout");

static void free_host(void *p, size_t bytes)
{
	(void)bytes;
	free(p);
}

/* Host swap slots for c->kv.n_host_blocks: the caller's memory (adopted
 * already) or our own, page-locked and mapped for the swap kernel. */
static int swap_space(struct cuda_ctx *c, char *err, size_t errlen)
{
	const size_t bytes = (size_t)c->kv.n_host_blocks * 2 * (size_t)c->hp.n_layer * c->block_bytes;
	if (c->swap_h && c->swap_bytes < bytes) {
		snprintf(err, errlen, "swap memory of %zu bytes given for %d blocks of %zu bytes", c->swap_bytes,
			 c->kv.n_host_blocks, 2 * (size_t)c->hp.n_layer * c->block_bytes);
		return -EINVAL;
	}
	if (!c->swap_h) {
		const size_t page = 4096, rounded = (bytes + page - 1) / page * page;
		if (posix_memalign(&c->swap_h, page, rounded)) {
			c->swap_h = nullptr;
			snprintf(err, errlen, "cannot allocate %.2f GiB of host memory for KV swap space (--swap-space)",
				 (double)bytes / (1 << 30));
			return -ENOMEM;
		}
		c->swap_bytes = rounded;
		c->swap_free = free_host;
	}
	int r = pf_cuda_host_register(c->swap_h, c->swap_bytes, &c->swap_d, err, errlen);
	if (r)
		return r;
	c->swap_registered = true;
	return 0;
}

static int backend_create(const struct pf_model_weights *w, const struct pf_kv_config *kv,
			  const struct pf_cuda_backend_config *cfg, struct pf_backend *ret, char *err, size_t errlen,
			  bool *adopted)
{
	const struct pf_hparams *hp = &w->hp;
	struct cuda_ctx *c;
	int r;

	r = pf_backend_check_kv(kv, err, errlen);
	if (r)
		return r;
	if (hp->n_layer <= 0 || hp->n_embd <= 0 || hp->n_vocab <= 0 || hp->n_ff <= 0 || hp->n_head <= 0 ||
	    hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv || hp->head_dim <= 0 || hp->n_rot <= 0 ||
	    hp->n_rot % 2 || hp->n_rot > hp->head_dim) {
		snprintf(err, errlen, "model hyper-parameters out of range");
		return -EINVAL;
	}
	if (hp->head_dim > PF_CUDA_MAX_HEAD_DIM ||
	    pf_cuda_attn_split_len(hp->n_head, hp->n_head_kv, hp->head_dim) <= 0) {
		snprintf(err, errlen, "head size %d with %d query heads per KV head: the CUDA attention kernels take "
			 "head sizes up to %d", hp->head_dim, hp->n_head / hp->n_head_kv, PF_CUDA_MAX_HEAD_DIM);
		return -ENOTSUP;
	}
	if (cfg->device < 0 || cfg->device >= pf_cuda_device_count()) {
		snprintf(err, errlen, "CUDA device %d does not exist (%d usable devices)", cfg->device,
			 pf_cuda_device_count());
		return -ENODEV;
	}
	c = (struct cuda_ctx *)calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->dev = cfg->device;
	c->hp = *hp;
	c->kv = *kv;
	c->cfg = *cfg;
	c->swap_h = cfg->swap_host; /* ours now: cuda_destroy frees it */
	c->swap_bytes = cfg->swap_host_bytes;
	c->swap_free = cfg->swap_host_free;
	*adopted = true;
	struct pf_cuda_launch lc = { nullptr, err, errlen };
	r = pf_cuda_set_device(c->dev, err, errlen);
	if (!r)
		r = pf_cuda_stream_create(&c->stream, err, errlen);
	if (r)
		goto fail;
	lc.stream = c->stream;
	if (cfg->gemm_f16 && !cfg->batch_invariant) {
		r = pf_cuda_blas_create(&c->blas, err, errlen);
		if (r)
			goto fail;
	}

	c->layers = (struct dev_layer *)calloc((size_t)hp->n_layer, sizeof(*c->layers));
	if (!c->layers) {
		r = -ENOMEM;
		goto fail;
	}
	for (int32_t l = 0; l < hp->n_layer; l++) {
		r = upload_layer(c, &c->layers[l], &w->layers[l], l, err, errlen);
		if (r)
			goto fail;
	}
	{
		/* tied output: one copy on the device, with the FP16 copy the
		 * output projection wants */
		const bool tied = w->output.data == w->tok_embd.data;
		r = upload(c, &c->tok_embd, &w->tok_embd, "token_embd", -1, tied ? T_GEMM : 0, err, errlen) ?:
		    upload(c, &c->out_norm, &w->out_norm, "output_norm", -1, T_F32_ONLY, err, errlen) ?:
		    upload(c, &c->rope_freqs, &w->rope_freqs, "rope_freqs", -1, T_OPTIONAL | T_F32_ONLY, err, errlen);
		if (r)
			goto fail;
		if (tied) {
			c->output = c->tok_embd;
			c->output.shared = true;
		} else {
			r = upload(c, &c->output, &w->output, "output", -1, T_GEMM, err, errlen);
			if (r)
				goto fail;
		}
		if (c->tok_embd.ne0 != hp->n_embd || c->tok_embd.ne1 != hp->n_vocab || c->output.ne0 != hp->n_embd ||
		    c->output.ne1 != hp->n_vocab || c->out_norm.ne0 != hp->n_embd ||
		    (c->rope_freqs.d && c->rope_freqs.ne0 < hp->n_rot / 2)) {
			snprintf(err, errlen, "embedding, output or rope_freqs tensor has the wrong shape");
			r = -EINVAL;
			goto fail;
		}
	}
	r = pf_cuda_sync(&lc); /* the uploads and FP16 conversions are done */
	if (r)
		goto fail;

	c->block_bytes = (size_t)hp->n_head_kv * (size_t)kv->block_size * (size_t)hp->head_dim * kv_es(kv->kv_dtype);
	if (c->kv.n_blocks == 0) {
		size_t fr = 0, total = 0;
		r = pf_cuda_mem_info(&fr, &total, err, errlen);
		if (r)
			goto fail;
		/* vLLM's rule: weights + activations + KV within the share of
		 * the whole device, whatever else already uses it */
		const double budget = (double)total * cfg->memory_utilization - (double)(total - fr) -
				      (double)cfg->activation_reserve;
		const double per_block = (double)c->block_bytes * 2.0 * hp->n_layer;
		/* graphs: one block more for the padding rows */
		const double nb = budget / per_block - (cfg->cuda_graphs ? 1.0 : 0.0);
		if (nb < 1.0) {
			snprintf(err, errlen, "no device memory left for the KV cache: %.2f GiB total, %.2f GiB free after "
				 "the weights, utilization %.2f, reserve %.2f GiB", (double)total / (1 << 30),
				 (double)fr / (1 << 30), cfg->memory_utilization,
				 (double)cfg->activation_reserve / (1 << 30));
			r = -ENOMEM;
			goto fail;
		}
		c->kv.n_blocks = nb > (double)(1 << 24) ? (1 << 24) : (int32_t)nb;
	}
	if (c->kv.n_host_blocks > 0) {
		/* swap space is an optimisation: without it preempted
		 * sequences are recomputed, so a host that cannot pin it still
		 * serves from the GPU */
		char serr[256] = "";
		if (swap_space(c, serr, sizeof(serr))) {
			pf_backend_logf(&c->cfg.log, 1, "cuda:%d: no KV swap space (%s); preempted sequences will be recomputed",
				c->dev, serr);
			if (c->swap_registered)
				pf_cuda_host_unregister(c->swap_h);
			if (c->swap_h && c->swap_free)
				c->swap_free(c->swap_h, c->swap_bytes);
			c->swap_h = c->swap_d = nullptr;
			c->swap_registered = false;
			c->kv.n_host_blocks = 0;
			(void)cudaGetLastError(); /* a failed registration must not fail the next call */
		}
	}
	/* with graphs, one block past kv.n_blocks that the engine never names:
	 * the padding rows of graph steps write their K/V there */
	c->layer_bytes = (size_t)(c->kv.n_blocks + (cfg->cuda_graphs ? 1 : 0)) * c->block_bytes;
	if (cfg->cuda_graphs) {
		int64_t ctx = (int64_t)c->kv.n_blocks * kv->block_size;
		ctx = hp->n_ctx_train > 0 && hp->n_ctx_train < ctx ? hp->n_ctx_train : ctx;
		ctx = ctx < G_MAX_CTX ? ctx : G_MAX_CTX;
		c->g_stride = (int32_t)((ctx + kv->block_size - 1) / kv->block_size);
		c->g_ctx = c->g_stride * kv->block_size;
	}
	r = pf_cuda_malloc(&c->pool, c->layer_bytes * 2 * (size_t)hp->n_layer, err, errlen);
	if (!r) /* zeroed as the CPU pool's fresh pages are: nothing reads a slot before it is written, but no NaN lurks either */
		r = pf_cuda_memset(c->pool, 0, c->layer_bytes * 2 * (size_t)hp->n_layer, &lc);
	if (!r)
		r = pf_cuda_sync(&lc);
	if (r)
		goto fail;
	{
		char dd[192] = "";
		pf_cuda_device_describe(c->dev, dd, sizeof(dd));
		snprintf(c->desc, sizeof(c->desc), "cuda:%d %s, weights %.2f GiB%s%.2f GiB FP16%s", c->dev, dd,
			 (double)c->weight_bytes / (1 << 30), c->blas ? " + " : "", c->blas ? (double)c->f16_bytes / (1 << 30) : 0.0,
			 cfg->batch_invariant ? ", batch-invariant" : "");
		if (!c->blas) /* drop the FP16 figure */
			snprintf(c->desc, sizeof(c->desc), "cuda:%d %s, weights %.2f GiB%s", c->dev, dd,
				 (double)c->weight_bytes / (1 << 30), cfg->batch_invariant ? ", batch-invariant" : "");
	}
	ret->ops = &cuda_ops;
	ret->ctx = c;
	ret->kv = c->kv;
	return 0;
fail:
	cuda_destroy(c);
	return r;
}

extern "C" int pf_cuda_backend_create(const struct pf_model_weights *w, const struct pf_kv_config *kv,
				      const struct pf_cuda_backend_config *cfg, struct pf_backend *ret, char *err,
				      size_t errlen)
{
	bool adopted = false;
	int r = backend_create(w, kv, cfg, ret, err, errlen, &adopted);
	/* the caller's swap memory is ours from the call on, success or not */
	if (r && !adopted && cfg->swap_host && cfg->swap_host_free)
		cfg->swap_host_free(cfg->swap_host, cfg->swap_host_bytes);
	return r;
}

/* ---- forward ---------------------------------------------------------------------- */

static int fail_msg(struct cuda_ctx *c, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_msg(struct cuda_ctx *c, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return r;
}

static int check_batch(struct cuda_ctx *c, const struct pf_batch *b, int32_t *ret_stride)
{
	struct pf_batch_extent x;
	int r = pf_backend_check_batch(b, c->hp.n_vocab, &c->kv, &x, c->err, sizeof(c->err));
	if (!r)
		*ret_stride = x.max_table;
	return r;
}

/* Free-and-allocate: nothing in a scratch buffer outlives a step. */
template <typename B> static int regrow(B **p, size_t n, char *err, size_t errlen)
{
	pf_cuda_free(*p);
	*p = nullptr;
	void *q = nullptr;
	int r = pf_cuda_malloc(&q, n * sizeof(B), err, errlen);
	*p = (B *)q;
	return r;
}

static int ensure_scratch(struct cuda_ctx *c, int32_t nt, int32_t n_logits, size_t part, size_t meta)
{
	const struct pf_hparams *hp = &c->hp;
	char *e = c->err;
	const size_t el = sizeof(c->err);
	int r = 0;
	if (nt > c->cap_tok) {
		graphs_drop(c); /* they hold the addresses about to go */
		const size_t n = (size_t)nt, E = (size_t)hp->n_embd, ff = (size_t)hp->n_ff;
		const size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
		size_t in_max = E > ff ? E : ff;
		in_max = qd > in_max ? qd : in_max;
		c->cap_tok = 0;
		r = regrow(&c->x, n * E, e, el) ?: regrow(&c->hn, n * E, e, el) ?: regrow(&c->q, n * qd, e, el) ?:
		    regrow(&c->k, n * kvd, e, el) ?: regrow(&c->v, n * kvd, e, el) ?: regrow(&c->att, n * qd, e, el) ?:
		    regrow(&c->gt, n * ff, e, el) ?: regrow(&c->up, n * ff, e, el) ?:
		    regrow(&c->cs, n * (size_t)hp->n_rot, e, el);
		if (!r && c->blas) {
			pf_cuda_free(c->xh);
			c->xh = nullptr;
			r = pf_cuda_malloc(&c->xh, n * in_max * 2, e, el);
		}
		if (r)
			return r;
		c->cap_tok = nt;
	}
	if (n_logits > c->cap_logit) {
		c->cap_logit = 0;
		r = regrow(&c->xo, (size_t)n_logits * hp->n_embd, e, el) ?:
		    regrow(&c->logits, (size_t)n_logits * hp->n_vocab, e, el);
		if (r)
			return r;
		c->cap_logit = n_logits;
	}
	if (part > c->cap_part) {
		graphs_drop(c);
		c->cap_part = 0;
		r = regrow(&c->part, part, e, el);
		if (r)
			return r;
		c->cap_part = part;
	}
	if (meta > c->cap_meta) {
		graphs_drop(c);
		c->cap_meta = 0;
		pf_cuda_host_free(c->hmeta);
		c->hmeta = nullptr;
		void *h = nullptr;
		r = pf_cuda_host_alloc(&h, meta * sizeof(int32_t), e, el);
		c->hmeta = (int32_t *)h;
		if (!r)
			r = regrow(&c->dmeta, meta, e, el);
		if (r)
			return r;
		c->cap_meta = meta;
	}
	return 0;
}

/* y (n_tok, w.ne1) = x (n_tok, w.ne0) · Wᵀ (+ bias): cuBLAS on the FP16
 * copy for batches past the matvec width, else the matvec kernels. */
static int proj(struct cuda_ctx *c, const struct dev_tensor *w, const struct dev_tensor *bias, const float *x,
		int32_t n_tok, float *y, const struct pf_cuda_launch *lc)
{
	const float *bd = bias ? (const float *)bias->d : nullptr;
	const void *wh = w->f16 ? w->f16 : w->type == PF_DT_F16 ? w->d : nullptr;
	if (c->blas && wh && n_tok > PF_CUDA_MATVEC_MAX_TOKENS)
		return pf_cuda_gemm_f16(c->blas, y, wh, x, c->xh, w->ne0, w->ne1, n_tok, bd, lc);
	return pf_cuda_matvec(y, w->d, w->type, w->row_bytes, w->ne0, w->ne1, x, n_tok, bd, lc);
}

/* Room for n rows of device sampling (see cuda_ctx.hsamp). */
static size_t samp_bytes(int32_t n)
{
	return (size_t)n * (sizeof(struct pf_cuda_sample_params) + sizeof(int32_t) + sizeof(float));
}

static int ensure_samp(struct cuda_ctx *c, int32_t n)
{
	if (n <= c->cap_samp)
		return 0;
	c->cap_samp = 0;
	pf_cuda_host_free(c->hsamp);
	pf_cuda_free(c->dsamp);
	c->hsamp = c->dsamp = nullptr;
	int r = pf_cuda_host_alloc(&c->hsamp, samp_bytes(n), c->err, sizeof(c->err)) ?:
		pf_cuda_malloc(&c->dsamp, samp_bytes(n), c->err, sizeof(c->err));
	if (!r)
		c->cap_samp = n;
	return r;
}

/* Where a step's integer tables lie on the device (see forward_impl). */
struct step_tabs {
	const int32_t *tok, *pos, *seq, *slot, *tab, *lr, *dec, *tiles;
	int32_t stride;              /* table entries per sequence */
	int32_t n_dec, max_ctx_dec;  /* decode rows, the grid's context */
	int32_t n_tiles;             /* prefill tiles */
};

/* Embeddings and every layer for nt token rows, up to the final hidden
 * states in c->x: what a graph captures. */
static int enqueue_layers(struct cuda_ctx *c, int32_t nt, const struct step_tabs *st, const struct pf_cuda_launch *lc)
{
	const struct pf_hparams *hp = &c->hp;
	const int32_t bs = c->kv.block_size;
	const int64_t E = hp->n_embd, hd = hp->head_dim;
	const int64_t qd = (int64_t)hp->n_head * hd, kvd = (int64_t)hp->n_head_kv * hd;
	/* x (nt, E) = token embeddings; cs (nt, n_rot) = RoPE cos/sin */
	int r = pf_cuda_embed(c->x, c->tok_embd.d, c->tok_embd.type, c->tok_embd.row_bytes, E, st->tok, nt, lc) ?:
		pf_cuda_rope_cache(c->cs, st->pos, nt, hp->n_rot, hp->rope_base, (const float *)c->rope_freqs.d, lc);
	for (int32_t l = 0; l < hp->n_layer && !r; l++) {
		const struct dev_layer *L = &c->layers[l];
		char *kl = (char *)c->pool + (size_t)l * c->layer_bytes;
		char *vl = (char *)c->pool + (size_t)(hp->n_layer + l) * c->layer_bytes;
		struct pf_cuda_attn_args aa;
		aa.q = c->q;
		aa.out = c->att;
		aa.k_layer = kl;
		aa.v_layer = vl;
		aa.kv_dtype = c->kv.kv_dtype;
		aa.pos = st->pos;
		aa.seq = st->seq;
		aa.tables = st->tab;
		aa.table_stride = st->stride;
		aa.n_head = hp->n_head;
		aa.n_head_kv = hp->n_head_kv;
		aa.head_dim = (int32_t)hd;
		aa.block_size = bs;
		aa.scale = 1.0f / sqrtf((float)hd);
		r = pf_cuda_rmsnorm(c->hn, c->x, (const float *)L->attn_norm.d, nt, E, hp->norm_eps, lc) ?:
		    proj(c, &L->wq, &L->bq, c->hn, nt, c->q, lc) ?:
		    proj(c, &L->wk, &L->bk, c->hn, nt, c->k, lc) ?:
		    proj(c, &L->wv, &L->bv, c->hn, nt, c->v, lc) ?:
		    pf_cuda_rope(c->q, qd, nt, hp->n_head, (int32_t)hd, hp->n_rot, c->cs, hp->rope_neox, lc) ?:
		    pf_cuda_rope(c->k, kvd, nt, hp->n_head_kv, (int32_t)hd, hp->n_rot, c->cs, hp->rope_neox, lc) ?:
		    /* new K/V into the cache first: attention reads every position back from it */
		    pf_cuda_kv_store(kl, vl, c->k, c->v, kvd, st->slot, nt, hp->n_head_kv, (int32_t)hd, bs, c->kv.kv_dtype,
				     lc) ?:
		    (st->n_dec ? pf_cuda_attn_decode(&aa, st->dec, st->n_dec, st->max_ctx_dec, c->part, lc) : 0) ?:
		    (st->n_tiles ? pf_cuda_attn_prefill(&aa, st->tiles, st->n_tiles, lc) : 0) ?:
		    proj(c, &L->wo, nullptr, c->att, nt, c->hn, lc) ?:
		    pf_cuda_add(c->x, c->hn, (int64_t)nt * E, lc) ?:
		    pf_cuda_rmsnorm(c->hn, c->x, (const float *)L->ffn_norm.d, nt, E, hp->norm_eps, lc) ?:
		    proj(c, &L->gate, nullptr, c->hn, nt, c->gt, lc) ?:
		    proj(c, &L->up, nullptr, c->hn, nt, c->up, lc) ?:
		    pf_cuda_swiglu(c->gt, c->gt, c->up, (int64_t)nt * hp->n_ff, lc) ?:
		    proj(c, &L->down, nullptr, c->gt, nt, c->hn, lc) ?:
		    pf_cuda_add(c->x, c->hn, (int64_t)nt * E, lc);
	}
	return r;
}

/* The step's tail, after the layers: the nl logit rows (d_lr) of c->x
 * through the output norm and projection, then to the host (logits), or
 * sampled on the device with rows; then wait for the stream. */
static int finish_step(struct cuda_ctx *c, int32_t nl, const int32_t *d_lr, float *logits,
		       const struct pf_sample_row *rows, int32_t *ret_tokens, float *ret_logprobs,
		       const struct pf_cuda_launch *lc)
{
	const struct pf_hparams *hp = &c->hp;
	const int64_t E = hp->n_embd;
	int r = 0;
	if (nl > 0) {
		r = pf_cuda_gather_rows(c->xo, c->x, d_lr, nl, E, lc) ?:
		    pf_cuda_rmsnorm(c->xo, c->xo, (const float *)c->out_norm.d, nl, E, hp->norm_eps, lc) ?:
		    proj(c, &c->output, nullptr, c->xo, nl, c->logits, lc);
		if (!r && rows) {
			/* only the chosen tokens (and logprobs) cross the bus */
			const size_t rb = (size_t)nl * sizeof(struct pf_cuda_sample_params);
			char *hs = (char *)c->hsamp, *ds = (char *)c->dsamp;
			memcpy(hs, rows, rb);
			r = pf_cuda_memcpy(ds, hs, rb, lc) ?:
			    pf_cuda_sample((int32_t *)(ds + rb), (float *)(ds + rb + (size_t)nl * 4), c->logits,
					   (const struct pf_cuda_sample_params *)ds, nl, hp->n_vocab, lc) ?:
			    pf_cuda_memcpy(hs + rb, ds + rb, (size_t)nl * 8, lc);
		} else if (!r) {
			r = pf_cuda_memcpy(logits, c->logits, (size_t)nl * (size_t)hp->n_vocab * sizeof(float), lc);
		}
		if (r)
			return r;
	}
	r = pf_cuda_sync(lc);
	if (!r && rows && nl > 0) {
		const char *hs = (const char *)c->hsamp + (size_t)nl * sizeof(struct pf_cuda_sample_params);
		memcpy(ret_tokens, hs, (size_t)nl * 4);
		memcpy(ret_logprobs, hs + (size_t)nl * 4, (size_t)nl * 4);
	}
	return r;
}

/* Graph steps' table layout for bucket B (stride g_stride): tokens, pos,
 * seq, slots, decode rows, logit rows (B each), then B block tables —
 * row i reads table i, so padding rows need no sequence of the batch. */
static size_t graph_meta(const struct cuda_ctx *c, int32_t B)
{
	return (size_t)B * (6 + (size_t)c->g_stride);
}

/*
 * A decode step through the graph of bucket k (capturing it first when
 * there is none): *ran is false when the bucket cannot have a graph (the
 * capture failed, now or before), and the caller runs the plain path.
 */
static int graph_step(struct cuda_ctx *c, const struct pf_batch *b, int32_t k, float *logits,
		      const struct pf_sample_row *rows, int32_t *ret_tokens, float *ret_logprobs, bool *ran)
{
	const struct pf_hparams *hp = &c->hp;
	const int32_t nt = b->n_tokens, nl = b->n_logits, bs = c->kv.block_size, B = g_buckets[k], S = c->g_stride;
	const int32_t trash = c->kv.n_blocks;
	struct pf_cuda_launch lc = { c->stream, c->err, sizeof(c->err) };
	int r;
	*ran = false;
	if (!c->g_ready) {
		/* every bucket's scratch at once, before the first capture: a
		 * later regrow would drop the graphs */
		const size_t part = pf_cuda_attn_decode_scratch(G_MAX_BATCH, c->g_ctx, hp->n_head, hp->n_head_kv, hp->head_dim);
		r = ensure_scratch(c, G_MAX_BATCH, 1, part, graph_meta(c, G_MAX_BATCH));
		if (r) {
			/* the plain path sizes its scratch per step as before */
			pf_backend_logf(&c->cfg.log, 1, "cuda:%d no room for CUDA graphs' scratch (%d), plain decode steps from now "
				"on: %s", c->dev, r, c->err);
			c->cfg.cuda_graphs = false;
			c->err[0] = '\0';
			return 0;
		}
		c->g_ready = true;
	}
	r = ensure_scratch(c, B, nl > 0 ? nl : 1, 0, graph_meta(c, B));
	if (r)
		return r;
	const size_t o_tok = 0, o_pos = (size_t)B, o_seq = 2 * (size_t)B, o_slot = 3 * (size_t)B, o_dec = 4 * (size_t)B;
	const size_t o_lr = 5 * (size_t)B, o_tab = 6 * (size_t)B;
	int32_t *m = c->hmeta;
	for (int32_t i = 0; i < B; i++) {
		int32_t *tab = m + o_tab + (size_t)i * S;
		m[o_seq + i] = i;
		m[o_dec + i] = i;
		if (i < nt) {
			const int32_t s = b->seq[i], p = b->pos[i], n = b->n_table[s] < S ? b->n_table[s] : S;
			m[o_tok + i] = b->tokens[i];
			m[o_pos + i] = p;
			m[o_slot + i] = b->block_table[s][p / bs] * bs + p % bs;
			memcpy(tab, b->block_table[s], (size_t)n * sizeof(int32_t)); /* entries past n are never read */
		} else {
			/* padding: token 0 at position 0 of a sequence of the trash block */
			m[o_tok + i] = 0;
			m[o_pos + i] = 0;
			m[o_slot + i] = trash * bs;
			tab[0] = trash;
		}
	}
	for (int32_t i = 0; i < nl; i++)
		m[o_lr + i] = b->logit_rows[i];
	if (!c->g_exec[k]) {
		/* capture the plain path's launches for B rows, every one
		 * reading the tables above at their fixed addresses; the table
		 * copy is a node of the graph, so each replay reads hmeta anew */
		const int32_t *d = c->dmeta;
		/* in step_tabs' order; the grid of the longest context: blocks
		 * past a row's own context exit at once */
		const struct step_tabs st = { d + o_tok, d + o_pos, d + o_seq, d + o_slot, d + o_tab, d + o_lr,
					      d + o_dec, nullptr, S, B, c->g_ctx, 0 };
		cudaGraph_t g = nullptr;
		/* cuBLAS on our stream and workspace before the capture: no
		 * handle settings change under it */
		r = c->blas ? pf_cuda_gemm_f16(c->blas, nullptr, nullptr, nullptr, nullptr, 1, 1, 0, nullptr, &lc) : 0;
		if (r)
			return r;
		r = pf_cuda_check(cudaStreamBeginCapture((cudaStream_t)c->stream, cudaStreamCaptureModeThreadLocal),
				  "cudaStreamBeginCapture", c->err, sizeof(c->err));
		if (!r) {
			r = pf_cuda_memcpy(c->dmeta, c->hmeta, graph_meta(c, B) * sizeof(int32_t), &lc) ?:
			    enqueue_layers(c, B, &st, &lc);
			/* always: it ends the capture, failed or not */
			const int re = pf_cuda_check(cudaStreamEndCapture((cudaStream_t)c->stream, &g), "cudaStreamEndCapture",
						     r ? nullptr : c->err, sizeof(c->err));
			r = r ?: re;
		}
		if (!r)
			r = pf_cuda_check(cudaGraphInstantiate(&c->g_exec[k], g, 0), "cudaGraphInstantiate", c->err,
					  sizeof(c->err));
		if (g)
			cudaGraphDestroy(g);
		c->g_captures += !r;
		if (r) {
			c->g_exec[k] = nullptr;
			c->g_failed[k] = true;
			(void)cudaGetLastError(); /* a launch error of the capture is not the next call's */
			pf_backend_logf(&c->cfg.log, 1, "cuda:%d graph capture of decode steps of %d rows failed (%d), plain path for "
				"them from now on: %s", c->dev, B, r, c->err);
			c->err[0] = '\0';
			return 0;
		}
	}
	*ran = true;
	c->g_replays++;
	r = pf_cuda_check(cudaGraphLaunch(c->g_exec[k], (cudaStream_t)c->stream), "cudaGraphLaunch", c->err,
			  sizeof(c->err));
	return r ?: finish_step(c, nl, c->dmeta + o_lr, logits, rows, ret_tokens, ret_logprobs, &lc);
}

/* The bucket a step runs in through a graph, or -1 for the plain path: every
 * row a decode (no two neighbours of one sequence: no prefill tile), at
 * most G_MAX_BATCH of them, each within the graphs' context. */
static int32_t graph_bucket(const struct cuda_ctx *c, const struct pf_batch *b)
{
	if (!c->cfg.cuda_graphs || b->n_tokens > G_MAX_BATCH)
		return -1;
	for (int32_t t = 0; t < b->n_tokens; t++)
		if (b->pos[t] >= c->g_ctx || (!c->cfg.batch_invariant && t > 0 && b->seq[t] == b->seq[t - 1]))
			return -1;
	int32_t k = 0;
	while (g_buckets[k] < b->n_tokens)
		k++;
	return c->g_failed[k] ? -1 : k;
}

/* One step: logits to the host (logits != NULL), or each logit row
 * sampled on the device with rows[i] (tokens and logprobs back). */
static int forward_impl(struct cuda_ctx *c, const struct pf_batch *b, float *logits, const struct pf_sample_row *rows,
			int32_t *ret_tokens, float *ret_logprobs)
{
	const struct pf_hparams *hp = &c->hp;
	const int32_t nt = b->n_tokens, nl = b->n_logits, bs = c->kv.block_size;
	const int64_t hd = hp->head_dim;
	struct pf_cuda_launch lc = { c->stream, c->err, sizeof(c->err) };
	int32_t stride = 1;
	int r;

	c->err[0] = '\0';
	r = pf_cuda_set_device(c->dev, c->err, sizeof(c->err)) ?: check_batch(c, b, &stride);
	if (!r && rows)
		r = ensure_samp(c, nl > 0 ? nl : 1);
	if (r)
		goto out;
	{
		const int32_t k = graph_bucket(c, b);
		if (k >= 0) {
			bool ran = false;
			r = graph_step(c, b, k, logits, rows, ret_tokens, ret_logprobs, &ran);
			if (r || ran)
				goto out;
		}
	}
	{
		/* the batch's integer tables, one int32 array: tokens, pos, seq,
		 * slots (n_tok each), block tables (n_seqs, stride), logit rows,
		 * decode rows (≤ n_tok), prefill tiles (≤ n_tok pairs) */
		const size_t o_tok = 0, o_pos = (size_t)nt, o_seq = 2 * (size_t)nt, o_slot = 3 * (size_t)nt;
		const size_t o_tab = 4 * (size_t)nt, o_lr = o_tab + (size_t)b->n_seqs * stride, o_dec = o_lr + (size_t)nl;
		const size_t o_tiles = o_dec + (size_t)nt, n_meta = o_tiles + 2 * (size_t)nt;
		/* rows of one sequence next to each other form prefill tiles;
		 * a row alone (a decode) goes to the split-K decode kernel */
		int32_t n_dec = 0, n_tiles = 0, max_ctx_dec = 1;
		/* room for the tables first; the decode scratch is known once they are */
		r = ensure_scratch(c, nt, nl > 0 ? nl : 1, 0, n_meta);
		if (r)
			goto out;
		int32_t *m = c->hmeta;
		for (int32_t t = 0; t < nt; t++) {
			const int32_t s = b->seq[t], p = b->pos[t];
			m[o_tok + t] = b->tokens[t];
			m[o_pos + t] = p;
			m[o_seq + t] = s;
			m[o_slot + t] = b->block_table[s][p / bs] * bs + p % bs;
		}
		for (int32_t s = 0; s < b->n_seqs; s++)
			for (int32_t i = 0; i < stride; i++) /* padding never read: positions were checked */
				m[o_tab + (size_t)s * stride + i] = i < b->n_table[s] ? b->block_table[s][i] : 0;
		for (int32_t i = 0; i < nl; i++)
			m[o_lr + i] = b->logit_rows[i];
		for (int32_t t = 0; t < nt;) {
			int32_t u = t + 1;
			if (!c->cfg.batch_invariant)
				while (u < nt && u - t < PF_CUDA_ATTN_TILE && b->seq[u] == b->seq[t])
					u++;
			if (u - t == 1) {
				m[o_dec + n_dec++] = t;
				max_ctx_dec = b->pos[t] + 1 > max_ctx_dec ? b->pos[t] + 1 : max_ctx_dec;
			} else {
				m[o_tiles + 2 * (size_t)n_tiles] = t;
				m[o_tiles + 2 * (size_t)n_tiles + 1] = u - t;
				n_tiles++;
			}
			t = u;
		}
		const size_t part = pf_cuda_attn_decode_scratch(n_dec, max_ctx_dec, hp->n_head, hp->n_head_kv, (int32_t)hd);
		r = ensure_scratch(c, nt, nl > 0 ? nl : 1, part, n_meta) ?:
		    pf_cuda_memcpy(c->dmeta, c->hmeta, n_meta * sizeof(int32_t), &lc);
		if (r)
			goto out;
		const int32_t *d = c->dmeta;
		/* in step_tabs' order */
		const struct step_tabs st = { d + o_tok, d + o_pos, d + o_seq, d + o_slot, d + o_tab, d + o_lr,
					      d + o_dec, d + o_tiles, stride, n_dec, max_ctx_dec, n_tiles };
		r = enqueue_layers(c, nt, &st, &lc) ?:
		    finish_step(c, nl, st.lr, logits, rows, ret_tokens, ret_logprobs, &lc);
	}
out:
	if (r) {
		/* drain what was queued before the failure: the next step rewrites
		 * the pinned tables a pending copy may still read */
		struct pf_cuda_launch drain = { c->stream, nullptr, 0 };
		pf_cuda_sync(&drain);
		pf_backend_logf(&c->cfg.log, 0, "cuda:%d forward failed (%d): %s", c->dev, r, c->err);
	}
	return r;
}

static int cuda_forward(void *ctx, const struct pf_batch *b, float *logits)
{
	return forward_impl((struct cuda_ctx *)ctx, b, logits, nullptr, nullptr, nullptr);
}

static int cuda_forward_sample(void *ctx, const struct pf_batch *b, const struct pf_sample_row *rows,
			       int32_t *ret_tokens, float *ret_logprobs)
{
	return forward_impl((struct cuda_ctx *)ctx, b, nullptr, rows, ret_tokens, ret_logprobs);
}

static int cuda_copy_block(void *ctx, int32_t src, int32_t dst)
{
	struct cuda_ctx *c = (struct cuda_ctx *)ctx;
	struct pf_cuda_launch lc = { c->stream, c->err, sizeof(c->err) };
	if (src < 0 || dst < 0 || src >= c->kv.n_blocks || dst >= c->kv.n_blocks)
		return fail_msg(c, -EINVAL, "copy_block %d -> %d outside a pool of %d blocks", src, dst, c->kv.n_blocks);
	/* queued on the forward stream, so the next step sees the copy; an
	 * error while it runs surfaces at that step's sync */
	int r = pf_cuda_set_device(c->dev, c->err, sizeof(c->err)) ?:
		pf_cuda_copy_block(c->pool, c->layer_bytes, 2 * c->hp.n_layer, c->block_bytes, src, dst, &lc);
	if (r)
		pf_backend_logf(&c->cfg.log, 0, "cuda:%d copy_block failed (%d): %s", c->dev, r, c->err);
	return r;
}

static int cuda_swap(struct cuda_ctx *c, const struct pf_block_pair *pairs, int32_t n, bool out)
{
	struct pf_cuda_launch lc = { c->stream, c->err, sizeof(c->err) };
	if (n < 0 || (n > 0 && !c->swap_d))
		return fail_msg(c, -EINVAL, "swap of %d blocks without swap space", n);
	int r0 = pf_backend_check_swap(pairs, n, out, &c->kv, c->err, sizeof(c->err));
	if (r0)
		return r0;
	if (n == 0)
		return 0;
	int r = pf_cuda_set_device(c->dev, c->err, sizeof(c->err));
	if (!r && (size_t)n * 2 > c->cap_swap) {
		c->cap_swap = 0;
		pf_cuda_host_free(c->hswap);
		c->hswap = nullptr;
		void *h = nullptr;
		r = pf_cuda_host_alloc(&h, (size_t)n * 2 * sizeof(int32_t), c->err, sizeof(c->err));
		c->hswap = (int32_t *)h;
		if (!r)
			r = regrow(&c->dswap, (size_t)n * 2, c->err, sizeof(c->err));
		if (!r)
			c->cap_swap = (size_t)n * 2;
	}
	if (!r) {
		for (int32_t i = 0; i < n; i++) {
			c->hswap[2 * i] = pairs[i].src;
			c->hswap[2 * i + 1] = pairs[i].dst;
		}
		/* then wait: swaps are rare (preemptions), and the pinned pair
		 * list may be rewritten by the next call as soon as we return */
		r = pf_cuda_memcpy(c->dswap, c->hswap, (size_t)n * 2 * sizeof(int32_t), &lc) ?:
		    pf_cuda_swap_blocks(c->pool, c->layer_bytes, 2 * c->hp.n_layer, c->block_bytes, c->swap_d, c->dswap, n,
					out, &lc) ?:
		    pf_cuda_sync(&lc);
	}
	if (r) {
		struct pf_cuda_launch drain = { c->stream, nullptr, 0 };
		pf_cuda_sync(&drain);
		pf_backend_logf(&c->cfg.log, 0, "cuda:%d swap %s of %d blocks failed (%d): %s", c->dev, out ? "out" : "in", n, r,
			c->err);
	}
	return r;
}

static int cuda_swap_out(void *ctx, const struct pf_block_pair *pairs, int32_t n)
{
	return cuda_swap((struct cuda_ctx *)ctx, pairs, n, true);
}

static int cuda_swap_in(void *ctx, const struct pf_block_pair *pairs, int32_t n)
{
	return cuda_swap((struct cuda_ctx *)ctx, pairs, n, false);
}

static const char *cuda_describe(void *ctx)
{
	return ((struct cuda_ctx *)ctx)->desc;
}

extern "C" const char *pf_cuda_backend_last_error(void *ctx)
{
	return ctx ? ((struct cuda_ctx *)ctx)->err : "";
}

extern "C" void pf_cuda_backend_graph_stats(void *ctx, int64_t *ret_replays, int64_t *ret_captures)
{
	const struct cuda_ctx *c = (const struct cuda_ctx *)ctx;
	*ret_replays = c ? c->g_replays : 0;
	*ret_captures = c ? c->g_captures : 0;
}
