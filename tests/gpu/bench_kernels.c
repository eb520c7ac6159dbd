/*
 * bench_kernels.c — throughput of the CUDA kernels and of the CUDA backend on
 * a synthetic Llama-3-8B-shaped model, with the share of the GPU's memory
 * bandwidth each achieves.
 *
 * A plain C driver built by `make bench-gpu` with nothing but nvcc, a C
 * compiler and libc.  Weights are random bytes with valid block scales, made
 * on the spot (no GGUF, no download): the shapes, types and layout are those
 * of the real model, the values are noise, which costs the same to read.
 *
 *   bench_kernels [kernels] [model] [--layers=N] [--types=q4k,f16] [--iters=N] [--tiny]
 *
 * "kernels": matvec GB/s per weight type at 8B projection shapes, cuBLAS
 * GEMM TFLOP/s, paged attention decode GB/s over contexts 512..8192,
 * prefill attention TFLOP/s.  "model": the whole forward pass of the CUDA
 * backend — decode steps at batch 1..256 (each sequence at position 511,
 * its K/V already in the pool) and 512-token prefills — as tokens/s, and
 * bytes read per step (weights + K/V) ÷ step time ÷ peak bandwidth.  Both
 * run when neither is named.  Exits 77 without a CUDA device.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/quant.h"
#include "kernels/cuda/cuda.h"
#include "kernels/dtype.h"
#include "tests/gpu/synth.h"

struct bctx {
	struct pf_cuda_launch lc;
	char err[512];
	double peak_bw;
	int iters;
	bool tiny; /* --tiny: shapes ~16x smaller, to check the driver itself quickly */
	uint64_t rng;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(struct bctx *b, int rc, const char *what)
{
	fprintf(stderr, "bench: %s failed (%d): %s\n", what, rc, b->err);
	exit(1);
}

/* the drivers share the synthetic weights (synth.h) and its allocator */
static void *xmalloc(size_t n)
{
	return pf_synth_xmalloc(n);
}

static void *dev_put(struct bctx *b, const void *h, size_t n)
{
	void *d = NULL;
	int rc = pf_cuda_malloc(&d, n, b->err, sizeof(b->err));
	if (!rc && h)
		rc = pf_cuda_memcpy(d, h, n, &b->lc);
	if (!rc && !h)
		rc = pf_cuda_memset(d, 0, n, &b->lc);
	if (rc)
		die(b, rc, "device allocation");
	return d;
}

/* Average seconds of one call of fn over b->iters calls, after two warm-up
 * calls; the stream is drained before and after the timed calls. */
typedef int (*bench_fn)(struct bctx *b, void *arg);
static double time_it(struct bctx *b, bench_fn fn, void *arg, const char *what)
{
	int rc = fn(b, arg) ?: fn(b, arg) ?: pf_cuda_sync(&b->lc);
	if (rc)
		die(b, rc, what);
	double t0 = now_s();
	for (int i = 0; i < b->iters && !rc; i++)
		rc = fn(b, arg);
	rc = rc ?: pf_cuda_sync(&b->lc);
	if (rc)
		die(b, rc, what);
	return (now_s() - t0) / b->iters;
}

/* ---- kernels ----------------------------------------------------------------- */

struct mv_arg {
	float *y, *x;
	void *w;
	uint32_t type;
	size_t rb;
	int64_t n_in, n_out;
	int32_t n_tok;
};

static int run_matvec(struct bctx *b, void *p)
{
	struct mv_arg *a = p;
	return pf_cuda_matvec(a->y, a->w, a->type, a->rb, a->n_in, a->n_out, a->x, a->n_tok, NULL, &b->lc);
}

static void bench_matvec(struct bctx *b)
{
	static const int64_t full[3][2] = { { 4096, 4096 }, { 4096, 14336 }, { 14336, 4096 } }; /* n_in, n_out */
	static const int64_t tiny[3][2] = { { 256, 256 }, { 256, 768 }, { 768, 256 } };
	const int64_t(*shapes)[2] = b->tiny ? tiny : full;
	static const uint32_t types[] = { PF_DT_F16, PF_DT_Q8_0, PF_DT_Q4_0, PF_DT_Q4_1, PF_DT_Q4_K, PF_DT_Q6_K };
	printf("\nmatvec (one warp per row; GB/s of weights read, %% of peak)\n");
	printf("%-6s %-13s %6s %10s %9s %7s\n", "type", "n_out x n_in", "n_tok", "us", "GB/s", "peak%");
	for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++)
		for (int si = 0; si < 3; si++) {
			struct mv_arg a = { .type = types[ti], .n_in = shapes[si][0], .n_out = shapes[si][1] };
			void *hw = pf_synth_weights(&b->rng, a.type, a.n_out, a.n_in, &a.rb);
			a.w = dev_put(b, hw, a.rb * (size_t)a.n_out);
			free(hw);
			a.x = dev_put(b, NULL, sizeof(float) * 8 * (size_t)a.n_in);
			a.y = dev_put(b, NULL, sizeof(float) * 8 * (size_t)a.n_out);
			for (int32_t nt = 1; nt <= 8; nt *= 8) {
				a.n_tok = nt;
				double t = time_it(b, run_matvec, &a, "matvec");
				double bytes = (double)a.rb * (double)a.n_out;
				printf("%-6s %5lldx%-7lld %6d %10.1f %9.1f %6.1f%%\n", pf_dtype_name(a.type), (long long)a.n_out,
				       (long long)a.n_in, nt, t * 1e6, bytes / t / 1e9, b->peak_bw > 0 ? 100.0 * bytes / t / b->peak_bw : 0.0);
			}
			pf_cuda_free(a.w);
			pf_cuda_free(a.x);
			pf_cuda_free(a.y);
		}
}

struct gemm_arg {
	struct pf_cuda_blas *blas;
	float *y, *x;
	void *w, *xh;
	int64_t n_in, n_out;
	int32_t n_tok;
};

static int run_gemm(struct bctx *b, void *p)
{
	struct gemm_arg *a = p;
	return pf_cuda_gemm_f16(a->blas, a->y, a->w, a->x, a->xh, a->n_in, a->n_out, a->n_tok, NULL, &b->lc);
}

static void bench_gemm(struct bctx *b)
{
	struct gemm_arg a = { .n_in = b->tiny ? 256 : 4096, .n_out = b->tiny ? 768 : 14336 };
	const int32_t max_tok = b->tiny ? 64 : 2048;
	size_t rb;
	int rc = pf_cuda_blas_create(&a.blas, b->err, sizeof(b->err));
	if (rc)
		die(b, rc, "cuBLAS");
	void *hw = pf_synth_weights(&b->rng, PF_DT_F16, a.n_out, a.n_in, &rb);
	a.w = dev_put(b, hw, rb * (size_t)a.n_out);
	free(hw);
	a.x = dev_put(b, NULL, sizeof(float) * (size_t)max_tok * (size_t)a.n_in);
	a.xh = dev_put(b, NULL, 2 * (size_t)max_tok * (size_t)a.n_in);
	a.y = dev_put(b, NULL, sizeof(float) * (size_t)max_tok * (size_t)a.n_out);
	printf("\ncuBLAS GEMM FP16 x FP16 -> FP32 (activation conversion included), %lldx%lld weights\n",
	       (long long)a.n_out, (long long)a.n_in);
	printf("%6s %10s %9s %9s\n", "n_tok", "us", "TFLOP/s", "GB/s(W)");
	for (int32_t nt = 16; nt <= max_tok; nt *= 2) {
		a.n_tok = nt;
		double t = time_it(b, run_gemm, &a, "gemm");
		double flops = 2.0 * nt * (double)a.n_in * (double)a.n_out;
		printf("%6d %10.1f %9.1f %9.1f\n", nt, t * 1e6, flops / t / 1e12, (double)rb * a.n_out / t / 1e9);
	}
	pf_cuda_free(a.w); pf_cuda_free(a.x); pf_cuda_free(a.xh); pf_cuda_free(a.y);
	pf_cuda_blas_destroy(a.blas);
}

struct attn_arg {
	struct pf_cuda_attn_args a;
	int32_t *rows, *tiles;
	int32_t n_rows, n_tiles, max_ctx;
	float *scratch;
};

static int run_decode(struct bctx *b, void *p)
{
	struct attn_arg *a = p;
	return pf_cuda_attn_decode(&a->a, a->rows, a->n_rows, a->max_ctx, a->scratch, &b->lc);
}

static int run_prefill(struct bctx *b, void *p)
{
	struct attn_arg *a = p;
	return pf_cuda_attn_prefill(&a->a, a->tiles, a->n_tiles, &b->lc);
}

/* Llama-3-8B attention: 32 query heads, 8 KV heads of 128, F16 cache, blocks of 16. */
static void bench_attention(struct bctx *b)
{
	const int32_t H = b->tiny ? 8 : 32, KV = b->tiny ? 2 : 8, hd = b->tiny ? 64 : 128, bs = 16;
	static const int32_t full_b[3] = { 1, 16, 64 }, full_c[3] = { 512, 2048, 8192 };
	static const int32_t tiny_b[3] = { 1, 2, 4 }, tiny_c[3] = { 64, 160, 600 };
	const int32_t *batches = b->tiny ? tiny_b : full_b, *ctxs = b->tiny ? tiny_c : full_c;
	printf("\npaged attention decode (Llama-3-8B heads, F16 cache; GB/s of K+V read, %% of peak)\n");
	printf("%6s %6s %8s %10s %9s %7s\n", "batch", "ctx", "split", "us", "GB/s", "peak%");
	for (int bi = 0; bi < 3; bi++)
		for (int ci = 0; ci < 3; ci++) {
			const int32_t B = batches[bi], ctx = ctxs[ci], nb = ctx / bs;
			struct attn_arg a;
			memset(&a, 0, sizeof(a));
			int32_t *tables = xmalloc(sizeof(int32_t) * (size_t)B * nb), *pos = xmalloc(sizeof(int32_t) * B);
			int32_t *seq = xmalloc(sizeof(int32_t) * B), *rows = xmalloc(sizeof(int32_t) * B);
			for (int32_t s = 0; s < B; s++) {
				pos[s] = ctx - 1, seq[s] = s, rows[s] = s;
				for (int32_t i = 0; i < nb; i++) /* interleaved: sequences' blocks apart, as after churn */
					tables[s * nb + i] = i * B + s;
			}
			const size_t layer_bytes = (size_t)B * nb * KV * bs * hd * 2;
			a.a = (struct pf_cuda_attn_args){
				.q = dev_put(b, NULL, sizeof(float) * (size_t)B * H * hd),
				.out = dev_put(b, NULL, sizeof(float) * (size_t)B * H * hd),
				.k_layer = dev_put(b, NULL, layer_bytes), .v_layer = dev_put(b, NULL, layer_bytes),
				.kv_dtype = PF_DT_F16, .pos = dev_put(b, pos, sizeof(int32_t) * B),
				.seq = dev_put(b, seq, sizeof(int32_t) * B),
				.tables = dev_put(b, tables, sizeof(int32_t) * (size_t)B * nb), .table_stride = nb,
				.n_head = H, .n_head_kv = KV, .head_dim = hd, .block_size = bs, .scale = 0.088f,
			};
			a.rows = dev_put(b, rows, sizeof(int32_t) * B);
			a.n_rows = B;
			a.max_ctx = ctx;
			size_t sfl = pf_cuda_attn_decode_scratch(B, ctx, H, KV, hd);
			a.scratch = sfl ? dev_put(b, NULL, sizeof(float) * sfl) : NULL;
			double t = time_it(b, run_decode, &a, "attn_decode");
			double bytes = 2.0 * (double)layer_bytes;
			printf("%6d %6d %8d %10.1f %9.1f %6.1f%%\n", B, ctx, pf_cuda_attn_split_len(H, KV, hd), t * 1e6,
			       bytes / t / 1e9, b->peak_bw > 0 ? 100.0 * bytes / t / b->peak_bw : 0.0);
			pf_cuda_free((void *)a.a.q); pf_cuda_free(a.a.out); pf_cuda_free((void *)a.a.k_layer);
			pf_cuda_free((void *)a.a.v_layer); pf_cuda_free((void *)a.a.pos); pf_cuda_free((void *)a.a.seq);
			pf_cuda_free((void *)a.a.tables); pf_cuda_free(a.rows); pf_cuda_free(a.scratch);
			free(tables); free(pos); free(seq); free(rows);
		}

	/* one 2048-token prompt, causal, in tiles of PF_CUDA_ATTN_TILE rows */
	const int32_t n = b->tiny ? 128 : 2048, nb = n / bs;
	struct attn_arg a;
	memset(&a, 0, sizeof(a));
	int32_t *tables = xmalloc(sizeof(int32_t) * nb), *pos = xmalloc(sizeof(int32_t) * n);
	int32_t *seq = xmalloc(sizeof(int32_t) * n), *tiles = xmalloc(sizeof(int32_t) * 2 * n);
	for (int32_t i = 0; i < nb; i++)
		tables[i] = i;
	for (int32_t i = 0; i < n; i++)
		pos[i] = i, seq[i] = 0;
	for (int32_t i = 0; i < n; i += PF_CUDA_ATTN_TILE)
		tiles[2 * a.n_tiles] = i, tiles[2 * a.n_tiles + 1] = PF_CUDA_ATTN_TILE, a.n_tiles++;
	const size_t layer_bytes = (size_t)nb * KV * bs * hd * 2;
	a.a = (struct pf_cuda_attn_args){
		.q = dev_put(b, NULL, sizeof(float) * (size_t)n * H * hd), .out = dev_put(b, NULL, sizeof(float) * (size_t)n * H * hd),
		.k_layer = dev_put(b, NULL, layer_bytes), .v_layer = dev_put(b, NULL, layer_bytes), .kv_dtype = PF_DT_F16,
		.pos = dev_put(b, pos, sizeof(int32_t) * n), .seq = dev_put(b, seq, sizeof(int32_t) * n),
		.tables = dev_put(b, tables, sizeof(int32_t) * nb), .table_stride = nb, .n_head = H, .n_head_kv = KV,
		.head_dim = hd, .block_size = bs, .scale = 0.088f,
	};
	a.tiles = dev_put(b, tiles, sizeof(int32_t) * 2 * (size_t)a.n_tiles);
	double t = time_it(b, run_prefill, &a, "attn_prefill");
	/* QKᵀ and PV over the causal half: 4·H·hd·Σ(pos+1) */
	double flops = 4.0 * H * hd * ((double)n * (n + 1) / 2.0);
	printf("\npaged attention prefill, one %d-token prompt (tiles of %d rows): %.1f us, %.2f TFLOP/s\n", n,
	       PF_CUDA_ATTN_TILE, t * 1e6, flops / t / 1e12);
	pf_cuda_free((void *)a.a.q); pf_cuda_free(a.a.out); pf_cuda_free((void *)a.a.k_layer);
	pf_cuda_free((void *)a.a.v_layer); pf_cuda_free((void *)a.a.pos); pf_cuda_free((void *)a.a.seq);
	pf_cuda_free((void *)a.a.tables); pf_cuda_free(a.tiles);
	free(tables); free(pos); free(seq); free(tiles);
}

/* ---- the whole model ---------------------------------------------------------------- */

struct model_arg {
	struct pf_backend be;
	struct pf_batch batch;
	float *logits;
};

static int run_forward(struct bctx *b, void *p)
{
	struct model_arg *m = p;
	(void)b;
	return m->be.ops->forward(m->be.ctx, &m->batch, m->logits);
}

static void bench_model(struct bctx *b, uint32_t wtype, int32_t n_layer)
{
	/* Llama-3-8B (or the tiny shape), one layer's weights on the host,
	 * uploaded once per layer: the device holds n_layer copies */
	const struct pf_hparams hp = pf_synth_hparams(b->tiny, n_layer);
	const int64_t E = hp.n_embd, kvd = (int64_t)hp.n_head_kv * hp.head_dim;
	struct pf_synth_model sm;
	pf_synth_model_build(&b->rng, &hp, wtype, &sm);
	const struct pf_model_weights w = sm.w;
	const double layer_bytes = sm.layer_bytes, layer_params = sm.layer_params, out_bytes = sm.out_bytes;

	const int32_t ctx = b->tiny ? 48 : 512, bs = 16, max_b = b->tiny ? 16 : 256, blocks_per_seq = ctx / bs + 1;
	struct pf_kv_config kv = { .n_blocks = max_b * blocks_per_seq, .block_size = bs, .kv_dtype = PF_DT_F16 };
	struct pf_cuda_backend_config cc = pf_cuda_backend_config_default();
	struct model_arg m;
	memset(&m, 0, sizeof(m));
	double t0 = now_s();
	int rc = pf_cuda_backend_create(&w, &kv, &cc, &m.be, b->err, sizeof(b->err));
	if (rc)
		die(b, rc, "pf_cuda_backend_create");
	printf("\nmodel: %s shapes, %d layers, %s weights (ffn_down and output %s), created in %.1f s\n  %s\n",
	       b->tiny ? "tiny" : "Llama-3-8B", n_layer, pf_dtype_name(wtype), pf_dtype_name(pf_synth_down_type(wtype)), now_s() - t0, m.be.ops->describe(m.be.ctx));

	int32_t *tables = xmalloc(sizeof(int32_t) * (size_t)max_b * blocks_per_seq);
	const int32_t **tab = xmalloc(sizeof(*tab) * max_b);
	int32_t *n_table = xmalloc(sizeof(int32_t) * max_b);
	for (int32_t s = 0; s < max_b; s++) {
		for (int32_t i = 0; i < blocks_per_seq; i++)
			tables[s * blocks_per_seq + i] = s * blocks_per_seq + i;
		tab[s] = tables + s * blocks_per_seq;
		n_table[s] = blocks_per_seq;
	}
	const int32_t n_pf = 4 * ctx;
	int32_t *tokens = xmalloc(sizeof(int32_t) * n_pf), *pos = xmalloc(sizeof(int32_t) * n_pf);
	int32_t *seq = xmalloc(sizeof(int32_t) * n_pf), *lrows = xmalloc(sizeof(int32_t) * n_pf);
	m.logits = xmalloc(sizeof(float) * (size_t)max_b * hp.n_vocab);
	const double kv_per_tok = 2.0 * n_layer * kvd * 2; /* K and V, every layer, F16 */

	printf("%-8s %6s %10s %11s %12s %7s   %s\n", "step", "batch", "ms", "tokens/s", "GB read", "peak%", "(weights read as)");
	static const int32_t batches[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256 };
	for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]) && batches[bi] <= max_b; bi++) {
		const int32_t B = batches[bi];
		for (int32_t s = 0; s < B; s++)
			tokens[s] = (s * 7919) % hp.n_vocab, pos[s] = ctx - 1, seq[s] = s, lrows[s] = s;
		m.batch = (struct pf_batch){ .n_tokens = B, .tokens = tokens, .pos = pos, .seq = seq, .n_seqs = B,
					     .block_table = tab, .n_table = n_table, .n_logits = B, .logit_rows = lrows };
		double t = time_it(b, run_forward, &m, "decode step");
		/* the projections read the stored weights up to the matvec width,
		 * the FP16 copies past it */
		const bool f16_read = B > PF_CUDA_MATVEC_MAX_TOKENS;
		const double wbytes = f16_read ? (layer_params * 2.0 * n_layer + (double)E * hp.n_vocab * 2.0)
					       : (layer_bytes * n_layer + out_bytes);
		const double bytes = wbytes + kv_per_tok * ctx * B;
		printf("%-8s %6d %10.2f %11.1f %12.2f %6.1f%%   %s\n", "decode", B, t * 1e3, B / t, bytes / 1e9,
		       b->peak_bw > 0 ? 100.0 * bytes / t / b->peak_bw : 0.0, f16_read ? "FP16 copies, cuBLAS" : pf_dtype_name(wtype));
	}
	/* prefill: 1 and 4 prompts of 512 tokens, logits of the last row of each */
	for (int32_t np = 1; np <= 4; np *= 4) {
		const int32_t n = np * ctx;
		for (int32_t i = 0; i < n; i++)
			tokens[i] = (i * 7919) % hp.n_vocab, pos[i] = i % ctx, seq[i] = i / ctx;
		for (int32_t s = 0; s < np; s++)
			lrows[s] = s * ctx + ctx - 1;
		m.batch = (struct pf_batch){ .n_tokens = n, .tokens = tokens, .pos = pos, .seq = seq, .n_seqs = np,
					     .block_table = tab, .n_table = n_table, .n_logits = np, .logit_rows = lrows };
		double t = time_it(b, run_forward, &m, "prefill step");
		printf("%-8s %6d %10.2f %11.1f %12s %7s   prompts of %d tokens\n", "prefill", n, t * 1e3, n / t, "-", "-", ctx);
	}
	/* the decode steps above replay CUDA graphs (the default); the same
	 * steps on a backend without them: the launch overhead graphs save */
	m.be.ops->destroy(m.be.ctx);
	cc.cuda_graphs = false;
	rc = pf_cuda_backend_create(&w, &kv, &cc, &m.be, b->err, sizeof(b->err));
	if (rc)
		die(b, rc, "pf_cuda_backend_create (no graphs)");
	for (int32_t B = 1; B <= max_b; B *= 16) {
		for (int32_t s = 0; s < B; s++)
			tokens[s] = (s * 7919) % hp.n_vocab, pos[s] = ctx - 1, seq[s] = s, lrows[s] = s;
		m.batch = (struct pf_batch){ .n_tokens = B, .tokens = tokens, .pos = pos, .seq = seq, .n_seqs = B,
					     .block_table = tab, .n_table = n_table, .n_logits = B, .logit_rows = lrows };
		double t = time_it(b, run_forward, &m, "decode step (no graphs)");
		printf("%-8s %6d %10.2f %11.1f %12s %7s   without CUDA graphs (the decode rows above use them)\n", "decode", B,
		       t * 1e3, B / t, "-", "-");
	}
	m.be.ops->destroy(m.be.ctx);
	pf_synth_model_free(&sm);
	free(tables); free(tab); free(n_table); free(tokens); free(pos); free(seq); free(lrows); free(m.logits);
}

int main(int argc, char **argv)
{
	struct bctx b;
	bool kernels = false, model = false;
	int32_t n_layer = 32;
	bool q4k = true, f16 = true;
	memset(&b, 0, sizeof(b));
	b.rng = 0x9E3779B97F4A7C15ULL;
	b.iters = 20;
	b.lc.err = b.err;
	b.lc.errlen = sizeof(b.err);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "kernels"))
			kernels = true;
		else if (!strcmp(argv[i], "model"))
			model = true;
		else if (!strncmp(argv[i], "--layers=", 9))
			n_layer = atoi(argv[i] + 9);
		else if (!strcmp(argv[i], "--tiny"))
			b.tiny = true;
		else if (!strncmp(argv[i], "--iters=", 8))
			b.iters = atoi(argv[i] + 8);
		else if (!strncmp(argv[i], "--types=", 8)) {
			q4k = strstr(argv[i] + 8, "q4k") != NULL;
			f16 = strstr(argv[i] + 8, "f16") != NULL;
		} else {
			fprintf(stderr, "usage: %s [kernels] [model] [--layers=N] [--types=q4k,f16] [--iters=N] [--tiny]\n", argv[0]);
			return 2;
		}
	}
	if (!kernels && !model)
		kernels = model = true;
	if (n_layer < 1 || b.iters < 1) {
		fprintf(stderr, "bench: --layers and --iters must be at least 1\n");
		return 2;
	}
	if (pf_cuda_device_count() <= 0) {
		printf("skip: no CUDA device (no NVIDIA driver, or it sees no GPU): GPU benchmarks not run\n");
		return 77;
	}
	struct pf_cuda_device_info di;
	char d[256];
	if (pf_cuda_device_info(0, &di) || pf_cuda_set_device(0, b.err, sizeof(b.err)) ||
	    pf_cuda_stream_create(&b.lc.stream, b.err, sizeof(b.err))) {
		printf("skip: cannot use CUDA device 0: %s\n", b.err);
		return 77;
	}
	b.peak_bw = di.peak_bw;
	pf_cuda_device_describe(0, d, sizeof(d));
	printf("device 0: %s; peak memory bandwidth %.0f GB/s (2 x memory clock x bus width)\n", d, b.peak_bw / 1e9);
	if (kernels) {
		bench_matvec(&b);
		bench_gemm(&b);
		bench_attention(&b);
	}
	if (model) {
		if (q4k)
			bench_model(&b, PF_DT_Q4_K, n_layer);
		if (f16)
			bench_model(&b, PF_DT_F16, n_layer);
	}
	pf_cuda_stream_destroy(b.lc.stream);
	return 0;
}
