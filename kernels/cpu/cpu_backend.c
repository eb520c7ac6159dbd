/*
 * cpu_backend.c — the llama-family forward pass on the CPU over a paged KV pool.
 *
 * Weights are used in place from the caller's (mmap'ed) bytes; the KV pool
 * and the activation scratch are ours.  One forward() call is one engine
 * step over a flattened varlen batch (see backend.h).
 */
#include "kernels/cpu/selfcheck.h"
#include "kernels/cpu/cpu_backend.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/dtype.h"

struct layer_ops {
	const struct pf_qtype_ops *wq, *wk, *wv, *wo, *gate, *up, *down;
};

struct cpu_ctx {
	const struct pf_model_weights *w;
	struct pf_kv_config kv;
	struct pf_tp *tp;
	enum pf_isa isa;
	struct layer_ops *lops;
	const struct pf_qtype_ops *emb_ops, *out_ops;
	char *kpool, *vpool;      /* n_layer slices of layer_bytes */
	size_t pool_bytes;
	/* host swap slots: slot h is 2·n_layer pieces of block_bytes (K of
	 * each layer, then V), back to back; NULL without swap space */
	char *swap;
	size_t swap_bytes, block_bytes;
	size_t layer_bytes;
	/* per-step scratch, grown on demand; n = the step's tokens (cap_tok),
	 * qd = n_head * head_dim, kvd = n_head_kv * head_dim */
	int64_t cap_tok;
	float *x;   /* (n, n_embd)  the residual stream */
	float *hn;  /* (n, n_embd)  x normalised (attention or FFN input) */
	float *q;   /* (n, qd)      queries, rotated */
	float *k;   /* (n, kvd)     new keys, rotated, before the cache store */
	float *v;   /* (n, kvd)     new values */
	float *att; /* (n, qd)      attention output, before attn_output */
	float *gt;  /* (n, n_ff)    FFN gate, then silu(gate) * up */
	float *up;  /* (n, n_ff)    FFN up projection */
	float *cs;  /* (n, n_rot)   RoPE cos/sin pairs per token */
	void *act;  /* (n, row)     activation rows quantized for the next matmul */
	size_t act_cap;
	uint32_t act_type; /* format of the rows in act */
	int64_t cap_logit;
	float *xo;  /* (n_logits, n_embd) the rows that need logits, normalised */
	float *attn_scratch;
	size_t attn_scratch_per_thread;
	char desc[128];
	char verdict[768]; /* the self-check's, selfcheck.h */
	char err[256];     /* why the last call failed (a bad batch or swap list) */
};

static size_t kv_es(uint32_t dt)
{
	return dt == PF_DT_F32 ? 4 : 2;
}

static int grow(float **p, size_t n)
{
	float *q = realloc(*p, n * sizeof(float));
	if (!q)
		return -ENOMEM;
	*p = q;
	return 0;
}

static int ensure_scratch(struct cpu_ctx *c, int64_t n_tok, int64_t n_logits, int32_t max_ctx)
{
	const struct pf_hparams *hp = &c->w->hp;
	int r = 0;
	if (n_tok > c->cap_tok) {
		size_t n = (size_t)n_tok;
		size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
		r = grow(&c->x, n * hp->n_embd) ?: grow(&c->hn, n * hp->n_embd) ?: grow(&c->q, n * qd) ?:
		    grow(&c->k, n * kvd) ?: grow(&c->v, n * kvd) ?: grow(&c->att, n * qd) ?:
		    grow(&c->gt, n * hp->n_ff) ?: grow(&c->up, n * hp->n_ff) ?: grow(&c->cs, n * hp->n_rot);
		if (r)
			return r;
		size_t in_max = (size_t)(hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd);
		size_t ab = 0;
		for (uint32_t t = 0; t < PF_DT_COUNT; t++) {
			if (!pf_qtype_ops(t, PF_ISA_SCALAR))
				continue;
			size_t b = pf_act_row_bytes(t, (int64_t)in_max);
			ab = b > ab ? b : ab;
		}
		void *a = realloc(c->act, ab * n);
		if (!a)
			return -ENOMEM;
		c->act = a;
		c->act_cap = ab;
		c->cap_tok = n_tok;
	}
	if (n_logits > c->cap_logit) {
		r = grow(&c->xo, (size_t)n_logits * hp->n_embd);
		if (r)
			return r;
		c->cap_logit = n_logits;
	}
	int32_t nq = hp->n_head / hp->n_head_kv;
	size_t per = pf_cpu_attention_scratch(nq, max_ctx, hp->head_dim);
	if (per > c->attn_scratch_per_thread) {
		r = grow(&c->attn_scratch, per * (size_t)pf_tp_size(c->tp));
		if (r)
			return r;
		c->attn_scratch_per_thread = per;
	}
	return 0;
}

/* y (n_tok, ne1) = x (n_tok, ne0) · Wᵀ (+ bias).  `same_input`: x is the
 * input of the previous proj() call, unchanged, so its quantized rows are
 * reused when the activation format matches (Q/K/V, gate/up). */
static void proj(struct cpu_ctx *c, const struct pf_qtype_ops *ops, const struct pf_tensor_ref *w,
		 const struct pf_tensor_ref *bias, const float *x, int64_t n_tok, float *y, bool same_input)
{
	size_t arb = pf_act_row_bytes(w->type, w->ne0);
	if (!same_input || c->act_type != ops->act_type) {
		pf_cpu_quantize_acts(c->tp, ops, x, n_tok, w->ne0, c->act, arb);
		c->act_type = ops->act_type;
	}
	pf_cpu_matmul_act(c->tp, ops, w, c->act, arb, n_tok, y, w->ne1);
	if (bias && bias->data) {
		const float *b = bias->data;
		for (int64_t t = 0; t < n_tok; t++)
			for (int64_t i = 0; i < w->ne1; i++)
				y[t * w->ne1 + i] += b[i];
	}
}

struct attn_job {
	struct cpu_ctx *c;
	const struct pf_batch *b;
	int32_t layer;
};

static void attn_task(void *p, int ith, int nth)
{
	const struct attn_job *j = p;
	struct cpu_ctx *c = j->c;
	const struct pf_hparams *hp = &c->w->hp;
	const int32_t nq = hp->n_head / hp->n_head_kv, hd = hp->head_dim;
	const int64_t n_tasks = (int64_t)j->b->n_tokens * hp->n_head_kv;
	float *scratch = c->attn_scratch + (size_t)ith * c->attn_scratch_per_thread;
	(void)nth;
	for (;;) {
		int64_t task = pf_tp_next_chunk(c->tp);
		if (task >= n_tasks)
			break;
		int32_t t = (int32_t)(task / hp->n_head_kv), kvh = (int32_t)(task % hp->n_head_kv);
		int32_t s = j->b->seq[t];
		struct pf_attn_args a = {
			.q = c->q + ((int64_t)t * hp->n_head + (int64_t)kvh * nq) * hd,
			.out = c->att + ((int64_t)t * hp->n_head + (int64_t)kvh * nq) * hd,
			.k_base = c->kpool + (size_t)j->layer * c->layer_bytes,
			.v_base = c->vpool + (size_t)j->layer * c->layer_bytes,
			.kv_dtype = c->kv.kv_dtype,
			.kvh = kvh, .n_head_kv = hp->n_head_kv, .head_dim = hd,
			.block_size = c->kv.block_size, .n_q = nq,
			.table = j->b->block_table[s],
			.n_ctx = j->b->pos[t] + 1,
			.scale = 1.0f / sqrtf((float)hd),
			.scratch = scratch,
			.isa = c->isa,
			/* a generated token: llama.cpp decodes it alone (see ops.c) */
			.single = j->b->n_prompt && j->b->pos[t] >= j->b->n_prompt[s],
		};
		pf_cpu_attention(&a);
	}
}

static int check_batch(struct cpu_ctx *c, const struct pf_batch *b, int32_t *ret_max_ctx)
{
	struct pf_batch_extent x;
	int r = pf_backend_check_batch(b, c->w->hp.n_vocab, &c->kv, &x, c->err, sizeof(c->err));
	if (!r)
		*ret_max_ctx = x.max_ctx;
	return r;
}

static int cpu_forward(void *ctx, const struct pf_batch *b, float *logits)
{
	struct cpu_ctx *c = ctx;
	const struct pf_model_weights *w = c->w;
	const struct pf_hparams *hp = &w->hp;
	const int64_t nt = b->n_tokens, E = hp->n_embd, hd = hp->head_dim;
	const int64_t qd = (int64_t)hp->n_head * hd, kvd = (int64_t)hp->n_head_kv * hd;
	const size_t es = kv_es(c->kv.kv_dtype);
	const int32_t bs = c->kv.block_size;
	int32_t max_ctx;
	int r = check_batch(c, b, &max_ctx);
	if (r)
		return r;
	r = ensure_scratch(c, nt, b->n_logits, max_ctx);
	if (r)
		return r;

	/* x (nt, E) = token embeddings */
	for (int64_t t = 0; t < nt; t++)
		c->emb_ops->dequant_row((const char *)w->tok_embd.data + (size_t)b->tokens[t] * w->tok_embd.row_bytes,
					c->x + t * E, E);
	const float *ff = w->rope_freqs.data;
	for (int64_t t = 0; t < nt; t++)
		pf_cpu_rope_cache(c->cs + t * hp->n_rot, b->pos[t], hp->n_rot, hp->rope_base, ff);

	for (int32_t l = 0; l < hp->n_layer; l++) {
		const struct pf_layer_weights *L = &w->layers[l];
		const struct layer_ops *o = &c->lops[l];
		for (int64_t t = 0; t < nt; t++)
			pf_cpu_rmsnorm(c->hn + t * E, c->x + t * E, L->attn_norm.data, E, hp->norm_eps);
		proj(c, o->wq, &L->wq, &L->bq, c->hn, nt, c->q, false);
		proj(c, o->wk, &L->wk, &L->bk, c->hn, nt, c->k, true);
		proj(c, o->wv, &L->wv, &L->bv, c->hn, nt, c->v, true);
		char *kl = c->kpool + (size_t)l * c->layer_bytes, *vl = c->vpool + (size_t)l * c->layer_bytes;
		for (int64_t t = 0; t < nt; t++) {
			const float *cs = c->cs + t * hp->n_rot;
			pf_cpu_rope_apply(c->q + t * qd, hp->n_head, (int32_t)hd, hp->n_rot, cs, hp->rope_neox);
			pf_cpu_rope_apply(c->k + t * kvd, hp->n_head_kv, (int32_t)hd, hp->n_rot, cs, hp->rope_neox);
			int32_t p = b->pos[t], blk = b->block_table[b->seq[t]][p / bs];
			for (int32_t h = 0; h < hp->n_head_kv; h++) {
				size_t row = ((size_t)blk * hp->n_head_kv + h) * bs + p % bs;
				pf_cpu_store_kv(kl + row * hd * es, c->k + t * kvd + h * hd, (int32_t)hd, c->kv.kv_dtype);
				pf_cpu_store_kv(vl + row * hd * es, c->v + t * kvd + h * hd, (int32_t)hd, c->kv.kv_dtype);
			}
		}
		struct attn_job aj = { c, b, l };
		pf_tp_run(c->tp, attn_task, &aj, 0);
		proj(c, o->wo, &L->wo, NULL, c->att, nt, c->hn, false);
		for (int64_t i = 0; i < nt * E; i++)
			c->x[i] += c->hn[i];
		for (int64_t t = 0; t < nt; t++)
			pf_cpu_rmsnorm(c->hn + t * E, c->x + t * E, L->ffn_norm.data, E, hp->norm_eps);
		proj(c, o->gate, &L->w_gate, NULL, c->hn, nt, c->gt, false);
		proj(c, o->up, &L->w_up, NULL, c->hn, nt, c->up, true);
		for (int64_t t = 0; t < nt; t++)
			pf_cpu_swiglu(c->gt + t * hp->n_ff, c->gt + t * hp->n_ff, c->up + t * hp->n_ff, hp->n_ff, c->isa);
		proj(c, o->down, &L->w_down, NULL, c->gt, nt, c->hn, false);
		for (int64_t i = 0; i < nt * E; i++)
			c->x[i] += c->hn[i];
	}
	if (b->n_logits == 0)
		return 0;
	for (int32_t i = 0; i < b->n_logits; i++)
		pf_cpu_rmsnorm(c->xo + (int64_t)i * E, c->x + (int64_t)b->logit_rows[i] * E, w->out_norm.data, E,
			       hp->norm_eps);
	proj(c, c->out_ops, &w->output, NULL, c->xo, b->n_logits, logits, false);
	return 0;
}

static int cpu_copy_block(void *ctx, int32_t src, int32_t dst)
{
	struct cpu_ctx *c = ctx;
	const struct pf_hparams *hp = &c->w->hp;
	if (src < 0 || dst < 0 || src >= c->kv.n_blocks || dst >= c->kv.n_blocks)
		return -EINVAL;
	size_t bb = (size_t)hp->n_head_kv * c->kv.block_size * hp->head_dim * kv_es(c->kv.kv_dtype);
	for (int32_t l = 0; l < hp->n_layer; l++) {
		char *kl = c->kpool + (size_t)l * c->layer_bytes, *vl = c->vpool + (size_t)l * c->layer_bytes;
		memcpy(kl + (size_t)dst * bb, kl + (size_t)src * bb, bb);
		memcpy(vl + (size_t)dst * bb, vl + (size_t)src * bb, bb);
	}
	return 0;
}

/* One block between the pool and a host slot, every layer's K and V. */
static void swap_one(struct cpu_ctx *c, int32_t block, int32_t slot, bool out)
{
	const size_t bb = c->block_bytes;
	const int32_t nl = c->w->hp.n_layer;
	char *h = c->swap + (size_t)slot * bb * 2 * (size_t)nl;
	for (int32_t l = 0; l < 2 * nl; l++) {
		char *pool = (l < nl ? c->kpool : c->vpool) + (size_t)(l % nl) * c->layer_bytes + (size_t)block * bb;
		if (out)
			memcpy(h + (size_t)l * bb, pool, bb);
		else
			memcpy(pool, h + (size_t)l * bb, bb);
	}
}

static int cpu_swap(struct cpu_ctx *c, const struct pf_block_pair *pairs, int32_t n, bool out)
{
	/* check all first: a bad list moves nothing */
	int r = pf_backend_check_swap(pairs, n, out, &c->kv, c->err, sizeof(c->err));
	if (r)
		return r;
	for (int32_t i = 0; i < n; i++)
		swap_one(c, out ? pairs[i].src : pairs[i].dst, out ? pairs[i].dst : pairs[i].src, out);
	return 0;
}

static int cpu_swap_out(void *ctx, const struct pf_block_pair *pairs, int32_t n)
{
	return cpu_swap(ctx, pairs, n, true);
}

static int cpu_swap_in(void *ctx, const struct pf_block_pair *pairs, int32_t n)
{
	return cpu_swap(ctx, pairs, n, false);
}

static const char *cpu_describe(void *ctx)
{
	return ((struct cpu_ctx *)ctx)->desc;
}

static const char *cpu_self_check(void *ctx)
{
	return ((struct cpu_ctx *)ctx)->verdict;
}

static void cpu_destroy(void *ctx)
{
	struct cpu_ctx *c = ctx;
	if (!c)
		return;
	pf_tp_destroy(c->tp);
	if (c->kpool)
		munmap(c->kpool, c->pool_bytes);
	if (c->swap)
		munmap(c->swap, c->swap_bytes);
	free(c->lops);
	free(c->x); free(c->hn); free(c->q); free(c->k); free(c->v); free(c->att);
	free(c->gt); free(c->up); free(c->cs); free(c->act); free(c->xo); free(c->attn_scratch);
	free(c);
}

static const struct pf_backend_ops cpu_ops = {
	.name = "cpu",
	.forward = cpu_forward,
	.copy_block = cpu_copy_block,
	.describe = cpu_describe,
	.self_check = cpu_self_check,
	.destroy = cpu_destroy,
	.swap_out = cpu_swap_out,
	.swap_in = cpu_swap_in,
};

static int lookup_ops(const struct pf_tensor_ref *t, enum pf_isa isa, const struct pf_qtype_ops **ret,
		      const char *what, int l, char *err, size_t errlen)
{
	*ret = pf_qtype_ops(t->type, isa);
	if (*ret && (*ret)->vec_dot && (*ret)->dequant_row)
		return 0;
	snprintf(err, errlen, "tensor %s of layer %d has weight type %s, which the CPU backend cannot compute with",
		 what, l, pf_dtype_name(t->type));
	return -ENOTSUP;
}

int pf_cpu_backend_create(const struct pf_model_weights *w, const struct pf_kv_config *kv, int n_threads,
			  struct pf_backend *ret, char *err, size_t errlen)
{
	const struct pf_hparams *hp = &w->hp;
	struct cpu_ctx *c;
	int r;

	r = pf_backend_check_kv(kv, err, errlen);
	if (r)
		return r;
	if (kv->n_blocks == 0) { /* no device memory to size a pool from */
		snprintf(err, errlen, "KV pool needs at least one block");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->w = w;
	c->kv = *kv;
	/* the detected ISA serves only if its kernels prove themselves on this
	 * model's weights; otherwise the next one down that does */
	c->isa = pf_cpu_selfcheck(w, pf_cpu_isa_detect(), c->verdict, sizeof(c->verdict));
	c->lops = calloc((size_t)hp->n_layer, sizeof(*c->lops));
	if (!c->lops) {
		r = -ENOMEM;
		goto fail;
	}
	for (int l = 0; l < hp->n_layer; l++) {
		const struct pf_layer_weights *L = &w->layers[l];
		struct layer_ops *o = &c->lops[l];
		r = lookup_ops(&L->wq, c->isa, &o->wq, "attn_q", l, err, errlen) ?:
		    lookup_ops(&L->wk, c->isa, &o->wk, "attn_k", l, err, errlen) ?:
		    lookup_ops(&L->wv, c->isa, &o->wv, "attn_v", l, err, errlen) ?:
		    lookup_ops(&L->wo, c->isa, &o->wo, "attn_output", l, err, errlen) ?:
		    lookup_ops(&L->w_gate, c->isa, &o->gate, "ffn_gate", l, err, errlen) ?:
		    lookup_ops(&L->w_up, c->isa, &o->up, "ffn_up", l, err, errlen) ?:
		    lookup_ops(&L->w_down, c->isa, &o->down, "ffn_down", l, err, errlen);
		if (r)
			goto fail;
	}
	r = lookup_ops(&w->tok_embd, c->isa, &c->emb_ops, "token_embd", -1, err, errlen) ?:
	    lookup_ops(&w->output, c->isa, &c->out_ops, "output", -1, err, errlen);
	if (r)
		goto fail;

	c->layer_bytes = (size_t)kv->n_blocks * hp->n_head_kv * kv->block_size * hp->head_dim * kv_es(kv->kv_dtype);
	c->pool_bytes = c->layer_bytes * (size_t)hp->n_layer * 2;
	/* anonymous mapping: pages are committed on first write, so an
	 * oversized pool costs address space, not memory, until used */
	void *pool = mmap(NULL, c->pool_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (pool == MAP_FAILED) {
		snprintf(err, errlen, "cannot allocate a KV pool of %zu bytes", c->pool_bytes);
		r = -ENOMEM;
		goto fail;
	}
	c->kpool = pool;
	c->vpool = c->kpool + c->layer_bytes * (size_t)hp->n_layer;
	c->block_bytes = (size_t)hp->n_head_kv * kv->block_size * hp->head_dim * kv_es(kv->kv_dtype);
	if (kv->n_host_blocks > 0) {
		/* the pool is host memory already; swap slots are more of it
		 * beyond --kv-memory, which saves a preempted sequence its
		 * recompute (a prefill, costly on a CPU) for a memcpy */
		c->swap_bytes = c->block_bytes * 2 * (size_t)hp->n_layer * (size_t)kv->n_host_blocks;
		void *sw = mmap(NULL, c->swap_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				-1, 0);
		if (sw == MAP_FAILED) {
			snprintf(err, errlen, "cannot allocate %zu bytes of KV swap space", c->swap_bytes);
			r = -ENOMEM;
			goto fail;
		}
		c->swap = sw;
	}
	r = pf_tp_create(n_threads, 1, &c->tp);
	if (r) {
		snprintf(err, errlen, "cannot start %d CPU threads", n_threads);
		goto fail;
	}
	snprintf(c->desc, sizeof(c->desc), "cpu %s, %d threads", pf_isa_name(c->isa), pf_tp_size(c->tp));
	ret->ops = &cpu_ops;
	ret->ctx = c;
	ret->kv = *kv;
	return 0;
fail:
	cpu_destroy(c);
	return r;
}
