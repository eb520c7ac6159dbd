/*
 * synth.h — synthetic llama-family weights of real shapes for the plain C
 * GPU drivers (bench_kernels.c, bench_serve.c).
 *
 * Header-only (static inline) so each driver stays one .c file: the
 * emulator build (tests/gpu/emu/run.sh) and the Makefile's GPU rules compile
 * a driver alone.  libc only.
 *
 * The bytes are noise with valid block scales: every f16 field is a small
 * finite half, so the arithmetic runs on finite numbers as in a real model,
 * and reading noise costs the same as reading real weights.  One set of
 * layer weights is made on the host and every layer points at it: the
 * host holds one layer, a backend that uploads (CUDA) holds n_layer copies.
 * The draws come from one xorshift64 stream in a fixed order, so the same
 * seed gives the same weights.
 */
#ifndef PF_TESTS_GPU_SYNTH_H
#define PF_TESTS_GPU_SYNTH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/dtype.h"

/* malloc that exits with a message: the drivers cannot go on without it. */
static inline void *pf_synth_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "bench: out of host memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

/* xorshift64; *rng must not be 0.  Cannot fail. */
static inline uint64_t pf_synth_next(uint64_t *rng)
{
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	return *rng;
}

/* A small random half, |v| in [2^-8, 2^-7): a valid block scale or weight. */
static inline uint16_t pf_synth_small_half(uint64_t r)
{
	return (uint16_t)((r & 0x83ffu) | (7u << 10));
}

/* rows × n weights of type t (malloc'd, free() them): random bytes, every
 * f16 field a valid small half.  *ret_rb: bytes per row. */
static inline void *pf_synth_weights(uint64_t *rng, uint32_t t, int64_t rows, int64_t n, size_t *ret_rb)
{
	const struct pf_dtype_info *di = pf_dtype_info(t);
	const size_t rb = pf_dtype_row_bytes(t, (uint64_t)n), total = rb * (size_t)rows;
	uint8_t *w = pf_synth_xmalloc(total + 8);
	for (size_t i = 0; i < total; i += 8) {
		uint64_t r = pf_synth_next(rng);
		memcpy(w + i, &r, 8);
	}
	const size_t bb = di->block_bytes, nblk = total / bb;
	for (size_t k = 0; k < nblk; k++) {
		uint8_t *blk = w + k * bb;
		uint16_t h = pf_synth_small_half(pf_synth_next(rng)), h2 = pf_synth_small_half(pf_synth_next(rng));
		switch (t) {
		case PF_DT_F16: memcpy(blk, &h, 2); break;
		case PF_DT_BF16: { uint16_t bf = (uint16_t)(0x3c00u | (h & 0x807fu)); memcpy(blk, &bf, 2); break; }
		case PF_DT_F32: { float f = (float)(int64_t)(pf_synth_next(rng) % 2001 - 1000) * 1e-5f; memcpy(blk, &f, 4); break; }
		case PF_DT_Q4_0: case PF_DT_Q8_0: memcpy(blk, &h, 2); break;
		case PF_DT_Q4_1: case PF_DT_Q4_K: memcpy(blk, &h, 2); memcpy(blk + 2, &h2, 2); break;
		case PF_DT_Q6_K: memcpy(blk + 208, &h, 2); break;
		default: break;
		}
	}
	*ret_rb = rb;
	return w;
}

/* Llama-3-8B (4096 wide, 32 heads of 128, 8 KV heads, FFN 14336, vocab
 * 128256), or with tiny the same family ~16x narrower (256 wide, 4 heads
 * of 64, 2 KV heads, FFN 768, vocab 1000).  Cannot fail. */
static inline struct pf_hparams pf_synth_hparams(bool tiny, int32_t n_layer)
{
	struct pf_hparams hp = {
		.arch = PF_ARCH_LLAMA, .n_vocab = 128256, .n_embd = 4096, .n_layer = n_layer, .n_head = 32,
		.n_head_kv = 8, .head_dim = 128, .n_ff = 14336, .n_ctx_train = 8192, .n_rot = 128,
		.rope_base = 500000.0f, .norm_eps = 1e-5f,
	};
	if (tiny) {
		hp.n_vocab = 1000, hp.n_embd = 256, hp.n_head = 4, hp.n_head_kv = 2, hp.head_dim = 64;
		hp.n_ff = 768, hp.n_rot = 64;
	}
	return hp;
}

/* The weight type of ffn_down and output for weight type wtype: Q6_K under
 * Q4_K, as Q4_K_M files have it; wtype otherwise. */
static inline uint32_t pf_synth_down_type(uint32_t wtype)
{
	return wtype == PF_DT_Q4_K ? PF_DT_Q6_K : wtype;
}

/* A synthetic model: w points into the buffers below. */
struct pf_synth_model {
	struct pf_model_weights w;
	struct pf_tensor_ref wq, wk, wv, wo, wg, wu, wd, emb, out, norm;
	float *ones;                   /* (n_embd) every norm weight */
	double layer_bytes;            /* stored bytes of one layer's projections */
	double layer_params;           /* weights of one layer's projections */
	double out_bytes;              /* stored bytes of the output matrix */
};

/* Fill m with a model of shape hp, weights of wtype (ffn_down and output of
 * pf_synth_down_type(wtype)), drawn from *rng in the order wq wk wv wo gate
 * up down embedding output.  Exits on host memory exhaustion. */
static inline void pf_synth_model_build(uint64_t *rng, const struct pf_hparams *hp, uint32_t wtype,
					struct pf_synth_model *m)
{
	const int64_t E = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
	const int64_t kvd = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
	const uint32_t dtype = pf_synth_down_type(wtype);
	size_t rb;
	memset(m, 0, sizeof(*m));
#define PF_SYN(ref, t, ne0_, ne1_) do { void *d_ = pf_synth_weights(rng, t, ne1_, ne0_, &rb); \
	ref = (struct pf_tensor_ref){ .type = t, .ne0 = ne0_, .ne1 = ne1_, .row_bytes = rb, .data = d_ }; } while (0)
	PF_SYN(m->wq, wtype, E, qd);
	PF_SYN(m->wk, wtype, E, kvd);
	PF_SYN(m->wv, wtype, E, kvd);
	PF_SYN(m->wo, wtype, qd, E);
	PF_SYN(m->wg, wtype, E, F);
	PF_SYN(m->wu, wtype, E, F);
	PF_SYN(m->wd, dtype, F, E);
	PF_SYN(m->emb, wtype, E, hp->n_vocab);
	PF_SYN(m->out, dtype, E, hp->n_vocab);
#undef PF_SYN
	m->ones = pf_synth_xmalloc(sizeof(float) * (size_t)E);
	for (int64_t i = 0; i < E; i++)
		m->ones[i] = 1.0f;
	m->norm = (struct pf_tensor_ref){ .type = PF_DT_F32, .ne0 = E, .ne1 = 1, .row_bytes = sizeof(float) * E,
					  .data = m->ones };
	struct pf_layer_weights *layers = pf_synth_xmalloc(sizeof(*layers) * (size_t)hp->n_layer);
	for (int32_t l = 0; l < hp->n_layer; l++)
		layers[l] = (struct pf_layer_weights){ .attn_norm = m->norm, .wq = m->wq, .wk = m->wk, .wv = m->wv,
						       .wo = m->wo, .ffn_norm = m->norm, .w_gate = m->wg,
						       .w_up = m->wu, .w_down = m->wd };
	m->w = (struct pf_model_weights){ .hp = *hp, .tok_embd = m->emb, .out_norm = m->norm, .output = m->out,
					  .layers = layers };
	const struct pf_tensor_ref *proj[] = { &m->wq, &m->wk, &m->wv, &m->wo, &m->wg, &m->wu, &m->wd };
	for (size_t i = 0; i < sizeof(proj) / sizeof(proj[0]); i++)
		m->layer_bytes += (double)(proj[i]->row_bytes * (size_t)proj[i]->ne1);
	m->layer_params = (double)(E * qd + 2 * E * kvd + qd * E + 3 * E * F);
	m->out_bytes = (double)(m->out.row_bytes * (size_t)m->out.ne1);
}

/* Free the host bytes of m (a backend that reads them in place, the CPU
 * one, must be gone).  Accepts a zeroed m.  Cannot fail. */
static inline void pf_synth_model_free(struct pf_synth_model *m)
{
	const struct pf_tensor_ref *t[] = { &m->wq, &m->wk, &m->wv, &m->wo, &m->wg, &m->wu, &m->wd, &m->emb, &m->out };
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		free((void *)t[i]->data);
	free(m->ones);
	free(m->w.layers);
	memset(m, 0, sizeof(*m));
}

#endif
