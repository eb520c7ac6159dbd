/*
 * test_kernels.c — every CUDA kernel, and the CUDA backend's whole forward
 * pass, against the scalar CPU reference.
 *
 * A plain C driver (no test framework), built by `make test-gpu` with
 * nothing but nvcc, a C compiler and libc, so a bare GPU machine runs it.
 * One line per check: "ok   name  err=… bound=…" or "FAIL name …".  Errors
 * are normalised as ggml's test-backend-ops does: max |gpu - ref| / max |ref|
 * over the output, held to a bound chosen from what differs between the two
 * paths (see cuda.h: fp32 reduction order ~1e-6, CUDA's expf/sinf a few
 * ulp, the CPU's 8-bit activations ~1e-2, half-rounded probabilities ~1e-3).
 * Shapes are odd on purpose: rows not a multiple of the warps per block,
 * head sizes not a multiple of 32, contexts just past a decode split.
 *
 * Exit: 0 every check passed, 1 a check failed, 77 no CUDA device (skipped).
 * Usage: test_kernels [substring of the tests to run]
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/cuda.h"
#include "kernels/dtype.h"

struct tctx {
	struct pf_cuda_launch lc;
	char err[512];
	int n_pass, n_fail;
	uint64_t rng;
};

/* ---- helpers ------------------------------------------------------------------ */

static float frand(struct tctx *t) /* uniform in [-1, 1) */
{
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return (float)((double)((t->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void fill(struct tctx *t, float *x, size_t n, float scale)
{
	for (size_t i = 0; i < n; i++)
		x[i] = frand(t) * scale;
}

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	if (!p) {
		fprintf(stderr, "out of host memory\n");
		exit(1);
	}
	return p;
}

static void check(struct tctx *t, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(struct tctx *t, bool ok, const char *fmt, ...)
{
	va_list ap;
	printf("%s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (ok)
		t->n_pass++;
	else
		t->n_fail++;
}

/* A CUDA call of the test itself failed: report and tell the caller to stop. */
static bool cuda_failed(struct tctx *t, int rc, const char *what)
{
	if (!rc)
		return false;
	check(t, false, "%s: CUDA error %d: %s", what, rc, t->err);
	return true;
}

static void *dev_put(struct tctx *t, const void *h, size_t n)
{
	void *d = NULL;
	if (pf_cuda_malloc(&d, n ? n : 16, t->err, sizeof(t->err)))
		return NULL;
	if (h && n && pf_cuda_memcpy(d, h, n, &t->lc)) {
		pf_cuda_free(d);
		return NULL;
	}
	return d;
}

static int dev_get(struct tctx *t, void *h, const void *d, size_t n)
{
	return pf_cuda_memcpy(h, d, n, &t->lc) ?: pf_cuda_sync(&t->lc);
}

/* max |a - b| / max |ref| (ref = b); NaN anywhere gives +inf */
static double nerr(const float *a, const float *b, size_t n)
{
	double md = 0.0, mr = 0.0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);
		if (isnan(a[i]) != isnan(b[i]) || isnan(d))
			return INFINITY;
		md = d > md ? d : md;
		mr = fabs((double)b[i]) > mr ? fabs((double)b[i]) : mr;
	}
	return md / (mr > 1e-30 ? mr : 1e-30);
}

static bool want(const char *filter, const char *name)
{
	return !filter || strstr(name, filter);
}

static const uint32_t all_types[] = { PF_DT_F32, PF_DT_F16, PF_DT_BF16, PF_DT_Q8_0,
				      PF_DT_Q4_0, PF_DT_Q4_1, PF_DT_Q4_K, PF_DT_Q6_K };
#define N_TYPES (sizeof(all_types) / sizeof(all_types[0]))

/* A row length fitting type t: K formats need 256s, the others 32s; plain
 * types get an odd length. */
static int64_t row_len(uint32_t t, int64_t k_len, int64_t q_len, int64_t plain_len)
{
	if (t == PF_DT_Q4_K || t == PF_DT_Q6_K)
		return k_len;
	if (t == PF_DT_F32 || t == PF_DT_F16 || t == PF_DT_BF16)
		return plain_len;
	return q_len;
}

/* Random weights (rows, n) quantized to type t with the reference
 * quantizer; returns the bytes (rows × row_bytes). */
static void *make_weights(struct tctx *t, uint32_t type, int64_t rows, int64_t n, float scale, size_t *ret_row_bytes)
{
	size_t rb = pf_dtype_row_bytes(type, (uint64_t)n);
	char *w = xmalloc(rb * (size_t)rows);
	float *x = xmalloc(sizeof(float) * (size_t)n);
	for (int64_t r = 0; r < rows; r++) {
		fill(t, x, (size_t)n, scale);
		if (pf_quantize_weights_ref(type, x, w + (size_t)r * rb, n)) {
			fprintf(stderr, "cannot quantize to %s\n", pf_dtype_name(type));
			exit(1);
		}
	}
	free(x);
	*ret_row_bytes = rb;
	return w;
}

static void dequant_ref(uint32_t type, const void *w, size_t rb, int64_t rows, int64_t n, float *out)
{
	const struct pf_qtype_ops *ops = pf_qtype_ops(type, PF_ISA_SCALAR);
	for (int64_t r = 0; r < rows; r++)
		ops->dequant_row((const char *)w + (size_t)r * rb, out + r * n, n);
}

/* ---- embedding and load-time dequantization ----------------------------------- */

static void test_embed(struct tctx *t)
{
	const int32_t n_vocab = 37, n_tok = 6;
	const int32_t tokens[6] = { 5, 0, 36, 5, 17, 1 };
	for (size_t ti = 0; ti < N_TYPES; ti++) {
		const uint32_t type = all_types[ti];
		const int64_t n = row_len(type, 512, 96, 45);
		size_t rb;
		void *w = make_weights(t, type, n_vocab, n, 1.0f, &rb);
		float *ref = xmalloc(sizeof(float) * (size_t)(n_vocab * n)), *got = xmalloc(sizeof(float) * (size_t)(n_tok * n));
		float *want_rows = xmalloc(sizeof(float) * (size_t)(n_tok * n));
		dequant_ref(type, w, rb, n_vocab, n, ref);
		for (int32_t i = 0; i < n_tok; i++)
			memcpy(want_rows + i * n, ref + tokens[i] * n, sizeof(float) * (size_t)n);
		void *dw = dev_put(t, w, rb * n_vocab), *dtok = dev_put(t, tokens, sizeof(tokens));
		float *dout = dev_put(t, NULL, sizeof(float) * (size_t)(n_tok * n));
		int rc = (!dw || !dtok || !dout) ? -ENOMEM : 0;
		rc = rc ?: pf_cuda_embed(dout, dw, type, rb, n, dtok, n_tok, &t->lc) ?:
			    dev_get(t, got, dout, sizeof(float) * (size_t)(n_tok * n));
		if (!cuda_failed(t, rc, "embed")) {
			double e = nerr(got, want_rows, (size_t)(n_tok * n));
			/* the decoders spell the reference's float operations: bit-exact
			 * on x86-64 (the bound leaves room for a host compiler that fuses) */
			check(t, e <= 1e-6, "embed %-5s n=%lld  err=%.3g bound=1e-6", pf_dtype_name(type), (long long)n, e);
		}
		/* the FP16 copy for cuBLAS: the reference rounded to half */
		void *dh = dev_put(t, NULL, (size_t)(n_vocab * n) * 2);
		uint16_t *gh = xmalloc((size_t)(n_vocab * n) * 2);
		rc = dh ? 0 : -ENOMEM;
		rc = rc ?: pf_cuda_dequant_f16(dh, dw, type, rb, n, n_vocab, &t->lc) ?:
			    dev_get(t, gh, dh, (size_t)(n_vocab * n) * 2);
		if (!cuda_failed(t, rc, "dequant_f16")) {
			int64_t bad = 0;
			for (int64_t i = 0; i < n_vocab * n; i++)
				bad += gh[i] != pf_f32_to_f16(ref[i]);
			check(t, bad == 0, "dequant_f16 %-5s  %lld of %lld halves differ", pf_dtype_name(type), (long long)bad,
			      (long long)(n_vocab * n));
		}
		pf_cuda_free(dw); pf_cuda_free(dtok); pf_cuda_free(dout); pf_cuda_free(dh);
		free(w); free(ref); free(got); free(want_rows); free(gh);
	}
}

/* ---- element-wise ------------------------------------------------------------- */

static void test_rmsnorm(struct tctx *t)
{
	const int32_t rows = 7;
	const int64_t n = 579;
	float *x = xmalloc(sizeof(float) * rows * n), *w = xmalloc(sizeof(float) * n);
	float *ref = xmalloc(sizeof(float) * rows * n), *got = xmalloc(sizeof(float) * rows * n);
	fill(t, x, (size_t)(rows * n), 4.0f);
	for (int64_t i = 0; i < n; i++)
		w[i] = 0.5f + (float)i / (float)n;
	for (int32_t r = 0; r < rows; r++)
		pf_cpu_rmsnorm(ref + r * n, x + r * n, w, n, 1e-5f);
	float *dx = dev_put(t, x, sizeof(float) * rows * n), *dw = dev_put(t, w, sizeof(float) * n);
	int rc = (!dx || !dw) ? -ENOMEM : 0;
	/* in place, as the backend's final norm runs */
	rc = rc ?: pf_cuda_rmsnorm(dx, dx, dw, rows, n, 1e-5f, &t->lc) ?: dev_get(t, got, dx, sizeof(float) * rows * n);
	if (!cuda_failed(t, rc, "rmsnorm")) {
		double e = nerr(got, ref, (size_t)(rows * n));
		check(t, e <= 1e-6, "rmsnorm %dx%lld in place  err=%.3g bound=1e-6", rows, (long long)n, e);
	}
	pf_cuda_free(dx); pf_cuda_free(dw);
	free(x); free(w); free(ref); free(got);
}

static void test_rope(struct tctx *t)
{
	const int32_t n_tok = 5, n_heads = 3, hd = 80;
	const int32_t pos[5] = { 0, 1, 17, 4095, 70000 };
	const int64_t stride = n_heads * hd + 7; /* rows wider than the heads: q/k live in wider buffers */
	for (int variant = 0; variant < 8; variant++) {
		const bool neox = variant & 1, ff_on = variant & 2;
		const int32_t n_rot = variant & 4 ? 64 : hd; /* partial rotation leaves dims 64.. alone */
		const float base = ff_on ? 500000.0f : 10000.0f;
		float *ff = xmalloc(sizeof(float) * (size_t)(n_rot / 2));
		for (int32_t i = 0; i < n_rot / 2; i++)
			ff[i] = 1.0f + (float)(i % 7); /* Llama-3 factors are 1 .. 8 */
		float *x = xmalloc(sizeof(float) * n_tok * stride), *ref = xmalloc(sizeof(float) * n_tok * stride);
		float *got = xmalloc(sizeof(float) * n_tok * stride);
		float *cs_ref = xmalloc(sizeof(float) * n_tok * n_rot), *cs_got = xmalloc(sizeof(float) * n_tok * n_rot);
		fill(t, x, (size_t)(n_tok * stride), 3.0f);
		memcpy(ref, x, sizeof(float) * n_tok * stride);
		for (int32_t i = 0; i < n_tok; i++) {
			pf_cpu_rope_cache(cs_ref + i * n_rot, pos[i], n_rot, base, ff_on ? ff : NULL);
			pf_cpu_rope_apply(ref + i * stride, n_heads, hd, n_rot, cs_ref + i * n_rot, neox);
		}
		float *dx = dev_put(t, x, sizeof(float) * n_tok * stride), *dcs = dev_put(t, NULL, sizeof(float) * n_tok * n_rot);
		int32_t *dpos = dev_put(t, pos, sizeof(pos));
		float *dff = dev_put(t, ff, sizeof(float) * (size_t)(n_rot / 2));
		int rc = (!dx || !dcs || !dpos || !dff) ? -ENOMEM : 0;
		rc = rc ?: pf_cuda_rope_cache(dcs, dpos, n_tok, n_rot, base, ff_on ? dff : NULL, &t->lc) ?:
			    pf_cuda_rope(dx, stride, n_tok, n_heads, hd, n_rot, dcs, neox, &t->lc) ?:
			    dev_get(t, got, dx, sizeof(float) * n_tok * stride) ?:
			    dev_get(t, cs_got, dcs, sizeof(float) * n_tok * n_rot);
		if (!cuda_failed(t, rc, "rope")) {
			/* the angles are the CPU's bit for bit; sin/cos within a few ulp */
			double ec = nerr(cs_got, cs_ref, (size_t)(n_tok * n_rot));
			double e = nerr(got, ref, (size_t)(n_tok * stride));
			check(t, ec <= 1e-6 && e <= 2e-6, "rope %s n_rot=%d freq_factors=%s  cos/sin err=%.3g x err=%.3g bound=1e-6/2e-6",
			      neox ? "neox    " : "adjacent", n_rot, ff_on ? "yes" : "no ", ec, e);
		}
		pf_cuda_free(dx); pf_cuda_free(dcs); pf_cuda_free(dpos); pf_cuda_free(dff);
		free(ff); free(x); free(ref); free(got); free(cs_ref); free(cs_got);
	}
}

static void test_elementwise(struct tctx *t)
{
	const int64_t n = 1001, rows = 3;
	float *g = xmalloc(sizeof(float) * n * rows), *u = xmalloc(sizeof(float) * n * rows);
	float *ref = xmalloc(sizeof(float) * n * rows), *got = xmalloc(sizeof(float) * n * rows);
	fill(t, g, (size_t)(n * rows), 20.0f);
	fill(t, u, (size_t)(n * rows), 2.0f);
	pf_cpu_swiglu(ref, g, u, n * rows, PF_ISA_SCALAR);
	float *dg = dev_put(t, g, sizeof(float) * n * rows), *du = dev_put(t, u, sizeof(float) * n * rows);
	int rc = (!dg || !du) ? -ENOMEM : 0;
	rc = rc ?: pf_cuda_swiglu(dg, dg, du, n * rows, &t->lc) ?: dev_get(t, got, dg, sizeof(float) * n * rows);
	if (!cuda_failed(t, rc, "swiglu")) {
		double e = nerr(got, ref, (size_t)(n * rows));
		check(t, e <= 1e-6, "swiglu n=%lld in place  err=%.3g bound=1e-6", (long long)(n * rows), e);
	}

	/* add, add_bias, gather_rows, f32_to_f16: exact */
	const int32_t rsel[4] = { 2, 0, 2, 1 };
	float *want_add = xmalloc(sizeof(float) * n * rows), *gath = xmalloc(sizeof(float) * n * 4);
	for (int64_t i = 0; i < n * rows; i++)
		want_add[i] = g[i] + u[i] + u[i % n];
	for (int32_t r = 0; r < 4; r++)
		for (int64_t i = 0; i < n; i++)
			gath[r * n + i] = want_add[rsel[r] * n + i];
	int32_t *drs = dev_put(t, rsel, sizeof(rsel));
	float *dgo = dev_put(t, NULL, sizeof(float) * n * 4);
	rc = (!drs || !dgo) ? -ENOMEM : 0;
	rc = rc ?: pf_cuda_memcpy(dg, g, sizeof(float) * n * rows, &t->lc) ?: pf_cuda_add(dg, du, n * rows, &t->lc) ?:
		    pf_cuda_add_bias(dg, du, rows, n, &t->lc) ?: pf_cuda_gather_rows(dgo, dg, drs, 4, n, &t->lc) ?:
		    dev_get(t, got, dg, sizeof(float) * n * rows);
	if (!cuda_failed(t, rc, "add")) {
		double e = nerr(got, want_add, (size_t)(n * rows));
		check(t, e == 0.0, "add + add_bias  err=%.3g bound=0", e);
		float *gg = xmalloc(sizeof(float) * n * 4);
		rc = dev_get(t, gg, dgo, sizeof(float) * n * 4);
		if (!cuda_failed(t, rc, "gather_rows")) {
			e = nerr(gg, gath, (size_t)(n * 4));
			check(t, e == 0.0, "gather_rows  err=%.3g bound=0", e);
		}
		free(gg);
	}
	uint16_t *h = xmalloc(2 * (size_t)n);
	void *dh = dev_put(t, NULL, 2 * (size_t)n);
	/* values around the half range's edges: overflow, subnormals, ties */
	g[0] = 65519.0f; g[1] = 65520.0f; g[2] = 1e-8f; g[3] = 5.9604645e-08f; g[4] = -2.9802322e-08f; g[5] = 1.00048828125f;
	rc = dh ? 0 : -ENOMEM;
	rc = rc ?: pf_cuda_memcpy(dg, g, sizeof(float) * n, &t->lc) ?: pf_cuda_f32_to_f16(dh, dg, n, &t->lc) ?:
		    dev_get(t, h, dh, 2 * (size_t)n);
	if (!cuda_failed(t, rc, "f32_to_f16")) {
		int64_t bad = 0;
		for (int64_t i = 0; i < n; i++)
			bad += h[i] != pf_f32_to_f16(g[i]);
		check(t, bad == 0, "f32_to_f16  %lld of %lld differ from pf_f32_to_f16", (long long)bad, (long long)n);
	}
	pf_cuda_free(dg); pf_cuda_free(du); pf_cuda_free(drs); pf_cuda_free(dgo); pf_cuda_free(dh);
	free(g); free(u); free(ref); free(got); free(want_add); free(gath); free(h);
}

/* ---- KV pool: stores and block copies ------------------------------------------- */

static void test_kv(struct tctx *t)
{
	const int32_t n_blocks = 6, bs = 16, n_head_kv = 3, hd = 40, n_tok = 9, n_layer = 2;
	const int32_t slots[9] = { 0, 1, 15, 16, 2 * 16 + 7, 5 * 16 + 15, 4 * 16, 3 * 16 + 3, 17 };
	const int64_t stride = n_head_kv * hd + 5;
	for (int f16 = 0; f16 < 2; f16++) {
		const uint32_t dt = f16 ? PF_DT_F16 : PF_DT_F32;
		const size_t es = f16 ? 2 : 4;
		const size_t block_bytes = (size_t)n_head_kv * bs * hd * es, layer_bytes = block_bytes * n_blocks;
		const size_t pool_bytes = layer_bytes * 2 * n_layer;
		float *k = xmalloc(sizeof(float) * n_tok * stride), *v = xmalloc(sizeof(float) * n_tok * stride);
		char *ref = xmalloc(pool_bytes), *got = xmalloc(pool_bytes);
		fill(t, k, (size_t)(n_tok * stride), 4.0f);
		fill(t, v, (size_t)(n_tok * stride), 1.0f);
		k[3] = 1e-7f;     /* a half subnormal */
		k[5] = 70000.0f;  /* past the half range: inf, as the CPU */
		k[6] = -65520.0f; /* the first value that rounds to -inf */
		k[7] = 65519.0f;  /* the last that rounds to 65504 */
		/* layer 1: K slice 1, V slice 3 */
		char *kl = ref + layer_bytes, *vl = ref + 3 * layer_bytes;
		for (int32_t i = 0; i < n_tok; i++)
			for (int32_t h = 0; h < n_head_kv; h++) {
				size_t row = ((size_t)(slots[i] / bs) * n_head_kv + h) * bs + slots[i] % bs;
				pf_cpu_store_kv(kl + row * hd * es, k + i * stride + h * hd, hd, dt);
				pf_cpu_store_kv(vl + row * hd * es, v + i * stride + h * hd, hd, dt);
			}
		char *dpool = dev_put(t, NULL, pool_bytes);
		float *dk = dev_put(t, k, sizeof(float) * n_tok * stride), *dv = dev_put(t, v, sizeof(float) * n_tok * stride);
		int32_t *dslots = dev_put(t, slots, sizeof(slots));
		int rc = (!dpool || !dk || !dv || !dslots) ? -ENOMEM : 0;
		rc = rc ?: pf_cuda_memset(dpool, 0, pool_bytes, &t->lc) ?:
			    pf_cuda_kv_store(dpool + layer_bytes, dpool + 3 * layer_bytes, dk, dv, stride, dslots, n_tok,
					     n_head_kv, hd, bs, dt, &t->lc) ?:
			    dev_get(t, got, dpool, pool_bytes);
		if (!cuda_failed(t, rc, "kv_store"))
			check(t, !memcmp(got, ref, pool_bytes), "kv_store %s  pool bytes %s the CPU's", pf_dtype_name(dt),
			      memcmp(got, ref, pool_bytes) ? "differ from" : "equal");
		/* copy-on-write of block 2 into block 5 (block 5 held data) in
		 * every slice, then 0 into 3 */
		for (int32_t s = 0; s < 2 * n_layer; s++) {
			memcpy(ref + s * layer_bytes + 5 * block_bytes, ref + s * layer_bytes + 2 * block_bytes, block_bytes);
			memcpy(ref + s * layer_bytes + 3 * block_bytes, ref + s * layer_bytes + 0 * block_bytes, block_bytes);
		}
		rc = rc ?: pf_cuda_copy_block(dpool, layer_bytes, 2 * n_layer, block_bytes, 2, 5, &t->lc) ?:
			    pf_cuda_copy_block(dpool, layer_bytes, 2 * n_layer, block_bytes, 0, 3, &t->lc) ?:
			    dev_get(t, got, dpool, pool_bytes);
		if (!cuda_failed(t, rc, "copy_block"))
			check(t, !memcmp(got, ref, pool_bytes), "copy_block %s  pool bytes %s the CPU's", pf_dtype_name(dt),
			      memcmp(got, ref, pool_bytes) ? "differ from" : "equal");
		pf_cuda_free(dpool); pf_cuda_free(dk); pf_cuda_free(dv); pf_cuda_free(dslots);
		free(k); free(v); free(ref); free(got);
	}
}

/* ---- matvec and cuBLAS ----------------------------------------------------------- */

/* y (n_tok, n_out) = x · deq(W)ᵀ (+ b), in double */
static void matmul_ref(const float *wd, const float *x, const float *b, int64_t n_in, int64_t n_out, int32_t n_tok, float *y)
{
	for (int32_t tk = 0; tk < n_tok; tk++)
		for (int64_t r = 0; r < n_out; r++) {
			double s = 0.0;
			for (int64_t i = 0; i < n_in; i++)
				s += (double)wd[r * n_in + i] * (double)x[tk * n_in + i];
			y[tk * n_out + r] = (float)(s + (b ? (double)b[r] : 0.0));
		}
}

static void test_matvec(struct tctx *t)
{
	const int64_t n_out = 77; /* not a multiple of the 4 rows per block */
	const int32_t n_toks[4] = { 1, 3, 8, 11 };
	for (size_t ti = 0; ti < N_TYPES; ti++) {
		const uint32_t type = all_types[ti];
		const int64_t n_in = row_len(type, 512, 288, 333);
		size_t rb;
		void *w = make_weights(t, type, n_out, n_in, 1.0f, &rb);
		float *wd = xmalloc(sizeof(float) * (size_t)(n_out * n_in));
		dequant_ref(type, w, rb, n_out, n_in, wd);
		const struct pf_qtype_ops *ops = pf_qtype_ops(type, PF_ISA_SCALAR);
		float *bias = xmalloc(sizeof(float) * n_out);
		fill(t, bias, (size_t)n_out, 1.0f);
		void *dw = dev_put(t, w, rb * n_out);
		float *db = dev_put(t, bias, sizeof(float) * n_out);
		for (int k = 0; k < 4; k++) {
			const int32_t nt = n_toks[k];
			const bool with_bias = k == 2;
			float *x = xmalloc(sizeof(float) * nt * n_in), *ref = xmalloc(sizeof(float) * nt * n_out);
			float *got = xmalloc(sizeof(float) * nt * n_out), *cpu = xmalloc(sizeof(float) * nt * n_out);
			fill(t, x, (size_t)(nt * n_in), 1.0f);
			matmul_ref(wd, x, with_bias ? bias : NULL, n_in, n_out, nt, ref);
			/* what the CPU backend computes: 8-bit (or half) activations */
			char *act = xmalloc(pf_act_row_bytes(type, n_in) + 64);
			for (int32_t tk = 0; tk < nt; tk++) {
				ops->quantize_act(x + tk * n_in, act, n_in);
				for (int64_t r = 0; r < n_out; r++) {
					ops->vec_dot(n_in, &cpu[tk * n_out + r], (const char *)w + r * rb, act);
					cpu[tk * n_out + r] += with_bias ? bias[r] : 0.0f;
				}
			}
			float *dx = dev_put(t, x, sizeof(float) * nt * n_in), *dy = dev_put(t, NULL, sizeof(float) * nt * n_out);
			int rc = (!dw || !db || !dx || !dy) ? -ENOMEM : 0;
			rc = rc ?: pf_cuda_matvec(dy, dw, type, rb, n_in, n_out, dx, nt, with_bias ? db : NULL, &t->lc) ?:
				    dev_get(t, got, dy, sizeof(float) * nt * n_out);
			if (!cuda_failed(t, rc, "matvec")) {
				double e = nerr(got, ref, (size_t)(nt * n_out)), ec = nerr(got, cpu, (size_t)(nt * n_out));
				check(t, e <= 1e-5 && ec <= 2e-2,
				      "matvec %-5s %lldx%lld n_tok=%-2d%s  err=%.3g bound=1e-5 (vs CPU vec_dot %.3g bound=2e-2)",
				      pf_dtype_name(type), (long long)n_out, (long long)n_in, nt, with_bias ? " +bias" : "      ", e, ec);
			}
			pf_cuda_free(dx); pf_cuda_free(dy);
			free(x); free(ref); free(got); free(cpu); free(act);
		}
		pf_cuda_free(dw); pf_cuda_free(db);
		free(w); free(wd); free(bias);
	}
}

static void test_gemm(struct tctx *t)
{
	struct pf_cuda_blas *blas = NULL;
	if (cuda_failed(t, pf_cuda_blas_create(&blas, t->err, sizeof(t->err)), "blas_create"))
		return;
	const uint32_t types[3] = { PF_DT_F16, PF_DT_Q4_K, PF_DT_Q8_0 };
	const int32_t n_toks[3] = { 9, 33, 130 };
	const int64_t n_out = 77, n_in = 512;
	for (int ti = 0; ti < 3; ti++) {
		const uint32_t type = types[ti];
		size_t rb;
		void *w = make_weights(t, type, n_out, n_in, 1.0f, &rb);
		float *wd = xmalloc(sizeof(float) * (size_t)(n_out * n_in));
		dequant_ref(type, w, rb, n_out, n_in, wd);
		for (int64_t i = 0; i < n_out * n_in; i++) /* the FP16 copy cuBLAS reads */
			wd[i] = pf_f16_to_f32(pf_f32_to_f16(wd[i]));
		float *bias = xmalloc(sizeof(float) * n_out);
		fill(t, bias, (size_t)n_out, 1.0f);
		void *dw = dev_put(t, w, rb * n_out), *dh = dev_put(t, NULL, (size_t)(n_out * n_in) * 2);
		float *db = dev_put(t, bias, sizeof(float) * n_out);
		int rc = (!dw || !dh || !db) ? -ENOMEM : 0;
		rc = rc ?: (type == PF_DT_F16 ? pf_cuda_memcpy(dh, w, rb * n_out, &t->lc)
					      : pf_cuda_dequant_f16(dh, dw, type, rb, n_in, n_out, &t->lc));
		for (int k = 0; k < 3 && !rc; k++) {
			const int32_t nt = n_toks[k];
			const bool with_bias = k == 1;
			float *x = xmalloc(sizeof(float) * nt * n_in), *xr = xmalloc(sizeof(float) * nt * n_in);
			float *ref = xmalloc(sizeof(float) * nt * n_out), *got = xmalloc(sizeof(float) * nt * n_out);
			fill(t, x, (size_t)(nt * n_in), 1.0f);
			for (int64_t i = 0; i < nt * n_in; i++)
				xr[i] = pf_f16_to_f32(pf_f32_to_f16(x[i]));
			matmul_ref(wd, xr, with_bias ? bias : NULL, n_in, n_out, nt, ref);
			float *dx = dev_put(t, x, sizeof(float) * nt * n_in), *dy = dev_put(t, NULL, sizeof(float) * nt * n_out);
			void *dxh = dev_put(t, NULL, (size_t)(nt * n_in) * 2);
			int r2 = (!dx || !dy || !dxh) ? -ENOMEM : 0;
			r2 = r2 ?: pf_cuda_gemm_f16(blas, dy, dh, dx, dxh, n_in, n_out, nt, with_bias ? db : NULL, &t->lc) ?:
				    dev_get(t, got, dy, sizeof(float) * nt * n_out);
			if (!cuda_failed(t, r2, "gemm_f16")) {
				double e = nerr(got, ref, (size_t)(nt * n_out));
				check(t, e <= 5e-5, "gemm_f16 %-5s %lldx%lld n_tok=%-3d%s  err=%.3g bound=5e-5 (FP16 operands, FP32 sums)",
				      pf_dtype_name(type), (long long)n_out, (long long)n_in, nt, with_bias ? " +bias" : "      ", e);
			}
			pf_cuda_free(dx); pf_cuda_free(dy); pf_cuda_free(dxh);
			free(x); free(xr); free(ref); free(got);
		}
		cuda_failed(t, rc, "gemm setup");
		pf_cuda_free(dw); pf_cuda_free(dh); pf_cuda_free(db);
		free(w); free(wd); free(bias);
	}
	pf_cuda_blas_destroy(blas);
}

/* ---- paged attention --------------------------------------------------------------- */

struct attn_case {
	int32_t n_head, n_head_kv, hd;
};

static void test_attention(struct tctx *t)
{
	const struct attn_case cases[3] = { { 6, 2, 80 }, { 8, 8, 128 }, { 16, 2, 64 } };
	const int32_t bs = 16, n_seqs = 4;
	/* contexts: one position, a few blocks, just past one 512 split, three splits */
	const int32_t ctx[4] = { 1, 37, 513, 1500 };
	for (int ci = 0; ci < 3; ci++) {
		for (int f16 = 0; f16 < 2; f16++) {
			const struct attn_case *ac = &cases[ci];
			const int32_t H = ac->n_head, KV = ac->n_head_kv, hd = ac->hd, nq = H / KV;
			const uint32_t dt = f16 ? PF_DT_F16 : PF_DT_F32;
			const size_t es = f16 ? 2 : 4;
			int32_t stride = 0, n_used = 0;
			for (int s = 0; s < n_seqs; s++) {
				int32_t nb = (ctx[s] + bs - 1) / bs;
				stride = nb > stride ? nb : stride;
				n_used += nb;
			}
			const int32_t n_blocks = n_used + 3;
			/* block tables: a shuffled pool, so neighbours in a table are not neighbours in memory */
			int32_t *perm = xmalloc(sizeof(int32_t) * n_blocks), *tables = xmalloc(sizeof(int32_t) * n_seqs * stride);
			for (int32_t i = 0; i < n_blocks; i++)
				perm[i] = i;
			for (int32_t i = n_blocks - 1; i > 0; i--) {
				int32_t j = (int32_t)((t->rng = t->rng * 6364136223846793005ULL + 1442695040888963407ULL) >> 33) % (i + 1);
				int32_t tmp = perm[i];
				perm[i] = perm[j];
				perm[j] = tmp;
			}
			int32_t used = 0;
			const int32_t *tab[4];
			int32_t n_tab[4];
			for (int s = 0; s < n_seqs; s++) {
				n_tab[s] = (ctx[s] + bs - 1) / bs;
				for (int32_t i = 0; i < stride; i++)
					tables[s * stride + i] = i < n_tab[s] ? perm[used + i] : 0;
				used += n_tab[s];
				tab[s] = tables + s * stride;
			}
			/* the pool: random K and V in the cache type */
			const size_t layer_bytes = (size_t)n_blocks * KV * bs * hd * es;
			char *kp = xmalloc(layer_bytes), *vp = xmalloc(layer_bytes);
			const size_t n_el = layer_bytes / es;
			float *tmpf = xmalloc(sizeof(float) * n_el);
			fill(t, tmpf, n_el, 1.0f);
			pf_cpu_store_kv(kp, tmpf, (int32_t)n_el, dt);
			fill(t, tmpf, n_el, 1.0f);
			pf_cpu_store_kv(vp, tmpf, (int32_t)n_el, dt);
			free(tmpf);

			/* rows: the last position of each sequence (decodes), then
			 * prefill chunks: sequence 1 positions 0..36, sequence 2
			 * positions 480..512, sequence 0 position 0 */
			int32_t pos[128], seq[128], nt = 0;
			for (int s = 0; s < n_seqs; s++)
				pos[nt] = ctx[s] - 1, seq[nt++] = s;
			const int32_t pf_first = nt;
			for (int32_t p = 0; p < 37; p++)
				pos[nt] = p, seq[nt++] = 1;
			for (int32_t p = 480; p < 513; p++)
				pos[nt] = p, seq[nt++] = 2;
			pos[nt] = 0, seq[nt++] = 0;
			int32_t tiles[64], n_tiles = 0;
			for (int32_t r = pf_first; r < nt;) {
				int32_t u = r + 1;
				while (u < nt && u - r < PF_CUDA_ATTN_TILE && seq[u] == seq[r])
					u++;
				tiles[2 * n_tiles] = r, tiles[2 * n_tiles + 1] = u - r, n_tiles++;
				r = u;
			}
			int32_t rows_all[128];
			for (int32_t i = 0; i < nt; i++)
				rows_all[i] = i;
			const int64_t qd = (int64_t)H * hd;
			float *q = xmalloc(sizeof(float) * nt * qd), *ref = xmalloc(sizeof(float) * nt * qd);
			float *got = xmalloc(sizeof(float) * nt * qd);
			fill(t, q, (size_t)(nt * qd), 2.0f);
			float *scratch = xmalloc(sizeof(float) * pf_cpu_attention_scratch(nq, 1500, hd));
			const float scale = 1.0f / sqrtf((float)hd);
			for (int32_t r = 0; r < nt; r++)
				for (int32_t g = 0; g < KV; g++) {
					struct pf_attn_args a = {
						.q = q + r * qd + (int64_t)g * nq * hd, .out = ref + r * qd + (int64_t)g * nq * hd,
						.k_base = kp, .v_base = vp, .kv_dtype = dt, .kvh = g, .n_head_kv = KV,
						.head_dim = hd, .block_size = bs, .n_q = nq, .table = tab[seq[r]],
						.n_ctx = pos[r] + 1, .scale = scale, .scratch = scratch, .isa = PF_ISA_SCALAR,
					};
					pf_cpu_attention(&a);
				}
			const size_t sfl = pf_cuda_attn_decode_scratch(nt, 1500, H, KV, hd);
			void *dk = dev_put(t, kp, layer_bytes), *dv = dev_put(t, vp, layer_bytes);
			float *dq = dev_put(t, q, sizeof(float) * nt * qd), *dout = dev_put(t, NULL, sizeof(float) * nt * qd);
			int32_t *dpos = dev_put(t, pos, sizeof(int32_t) * nt), *dseq = dev_put(t, seq, sizeof(int32_t) * nt);
			int32_t *dtab = dev_put(t, tables, sizeof(int32_t) * n_seqs * stride);
			int32_t *drows = dev_put(t, rows_all, sizeof(int32_t) * nt), *dtiles = dev_put(t, tiles, sizeof(int32_t) * 2 * n_tiles);
			float *dscr = dev_put(t, NULL, sizeof(float) * (sfl ? sfl : 1));
			int rc = (!dk || !dv || !dq || !dout || !dpos || !dseq || !dtab || !drows || !dtiles || !dscr) ? -ENOMEM : 0;
			struct pf_cuda_attn_args aa = {
				.q = dq, .out = dout, .k_layer = dk, .v_layer = dv, .kv_dtype = dt, .pos = dpos, .seq = dseq,
				.tables = dtab, .table_stride = stride, .n_head = H, .n_head_kv = KV, .head_dim = hd,
				.block_size = bs, .scale = scale,
			};
			/* a half cache: the CPU rounds the probabilities to half, the GPU keeps them in fp32 */
			const double bound = f16 ? 2e-3 : 1e-5;
			/* every row through the decode kernel */
			rc = rc ?: pf_cuda_memset(dout, 0xff, sizeof(float) * nt * qd, &t->lc) ?:
				    pf_cuda_attn_decode(&aa, drows, nt, 1500, dscr, &t->lc) ?:
				    dev_get(t, got, dout, sizeof(float) * nt * qd);
			if (!cuda_failed(t, rc, "attn_decode")) {
				double e = nerr(got, ref, (size_t)(nt * qd));
				check(t, e <= bound, "attn_decode  %s H=%d KV=%d hd=%d rows=%d ctx 1..1500 (split %d)  err=%.3g bound=%.0e",
				      pf_dtype_name(dt), H, KV, hd, nt, pf_cuda_attn_split_len(H, KV, hd), e, bound);
			}
			/* the prefill rows through the tiled kernel */
			rc = rc ?: pf_cuda_memset(dout, 0xff, sizeof(float) * nt * qd, &t->lc) ?:
				    pf_cuda_attn_prefill(&aa, dtiles, n_tiles, &t->lc) ?:
				    dev_get(t, got, dout, sizeof(float) * nt * qd);
			if (!cuda_failed(t, rc, "attn_prefill")) {
				const size_t off = (size_t)pf_first * qd, cnt = (size_t)(nt - pf_first) * qd;
				double e = nerr(got + off, ref + off, cnt);
				check(t, e <= bound, "attn_prefill %s H=%d KV=%d hd=%d rows=%d tiles=%d  err=%.3g bound=%.0e",
				      pf_dtype_name(dt), H, KV, hd, nt - pf_first, n_tiles, e, bound);
			}
			pf_cuda_free(dk); pf_cuda_free(dv); pf_cuda_free(dq); pf_cuda_free(dout); pf_cuda_free(dpos);
			pf_cuda_free(dseq); pf_cuda_free(dtab); pf_cuda_free(drows); pf_cuda_free(dtiles); pf_cuda_free(dscr);
			free(perm); free(tables); free(kp); free(vp); free(q); free(ref); free(got); free(scratch);
		}
	}
}

/* ---- greedy sampling ---------------------------------------------------------------- */

static int32_t argmax_ref(const float *x, int64_t n)
{
	float m = -INFINITY;
	int32_t best = -1;
	for (int64_t i = 0; i < n; i++) {
		if (!(x[i] < INFINITY))
			return -1;
		if (x[i] > m)
			m = x[i], best = (int32_t)i;
	}
	return best;
}

static void test_argmax(struct tctx *t)
{
	const int32_t rows = 6;
	const int64_t n = 50001;
	float *x = xmalloc(sizeof(float) * rows * n);
	fill(t, x, (size_t)(rows * n), 10.0f);
	x[1 * n + 7] = 50.0f, x[1 * n + 40000] = 50.0f;   /* a tie: the lower id */
	x[2 * n + 123] = NAN;                             /* refused */
	for (int64_t i = 0; i < n; i++)
		x[3 * n + i] = -INFINITY;                 /* nothing to choose */
	x[4 * n + 9] = INFINITY;                          /* refused */
	x[5 * n + n - 1] = 11.0f;                         /* the last element */
	int32_t want_ids[6], got_ids[6];
	for (int32_t r = 0; r < rows; r++)
		want_ids[r] = argmax_ref(x + r * n, n);
	float *dx = dev_put(t, x, sizeof(float) * rows * n);
	int32_t *dout = dev_put(t, NULL, sizeof(got_ids));
	int rc = (!dx || !dout) ? -ENOMEM : 0;
	rc = rc ?: pf_cuda_argmax(dout, dx, rows, n, &t->lc) ?: dev_get(t, got_ids, dout, sizeof(got_ids));
	if (!cuda_failed(t, rc, "argmax"))
		check(t, !memcmp(got_ids, want_ids, sizeof(got_ids)), "argmax  rows=%d n=%lld  got %d %d %d %d %d %d, want %d %d %d %d %d %d",
		      rows, (long long)n, got_ids[0], got_ids[1], got_ids[2], got_ids[3], got_ids[4], got_ids[5],
		      want_ids[0], want_ids[1], want_ids[2], want_ids[3], want_ids[4], want_ids[5]);
	pf_cuda_free(dx); pf_cuda_free(dout);
	free(x);
}

/* ---- sampling on the device ------------------------------------------------------------ */

/* A candidate of the reference: a logit, later a weight, and its id. */
struct scand {
	float v;
	int32_t id;
};

static int scand_cmp(const void *pa, const void *pb) /* value desc, id asc */
{
	const struct scand *a = pa, *b = pb;
	if (a->v != b->v)
		return a->v > b->v ? -1 : 1;
	return (a->id > b->id) - (a->id < b->id);
}

static int scand_id_cmp(const void *pa, const void *pb)
{
	const struct scand *a = pa, *b = pb;
	return (a->id > b->id) - (a->id < b->id);
}

/* The reference's answer for one row: survivors in id order with their
 * running mass, the expected token, and what a rounding difference could
 * change (a truncation edge within eps). */
struct sref {
	struct scand *c;  /* (n) scratch, then the survivors in id order */
	double *cum;      /* (n) running mass after each survivor */
	int64_t ns;
	double z, target;
	int32_t tok;
	bool amb;         /* an edge of the set is within eps */
	int32_t extra[2]; /* ids the device may keep besides the survivors */
	int n_extra;
	double lse;       /* raw log-softmax normaliser */
};

/*
 * cuda.h's contract by sorting, as plainly as possible: -1 for NaN/+inf or
 * nothing finite; greedy = argmax; else sort by (logit desc, id asc), keep
 * k, weights expf((l - m) * (1/T)), sort by (w desc, id asc), keep the
 * shortest prefix reaching top_p of the mass, drop w < min_p, then walk the
 * survivors in ascending id order to the first whose running mass exceeds
 * u × their mass.
 */
static void sample_ref(const float *x, int64_t n, const struct pf_cuda_sample_params *p, double eps, struct sref *r)
{
	int64_t nf = 0, nc = 0;
	float m = -INFINITY;
	r->ns = 0, r->amb = false, r->n_extra = 0, r->tok = -1, r->lse = NAN;
	for (int64_t i = 0; i < n; i++) {
		if (!(x[i] < INFINITY))
			return;
		nf += x[i] > -INFINITY;
		m = x[i] > m ? x[i] : m;
	}
	if (nf == 0)
		return;
	double zr = 0.0;
	for (int64_t i = 0; i < n; i++)
		zr += expf(x[i] - m);
	r->lse = (double)m + log(zr);
	if (!(p->temperature >= PF_CUDA_SAMPLE_GREEDY_TEMP)) {
		r->tok = argmax_ref(x, n);
		return;
	}
	const float inv_t = 1.0f / p->temperature;
	struct scand *c = r->c;
	for (int64_t i = 0; i < n; i++)
		if (x[i] > -INFINITY)
			c[nc++] = (struct scand){ x[i], (int32_t)i };
	qsort(c, (size_t)nc, sizeof(*c), scand_cmp);
	int64_t keep = p->top_k > 0 && p->top_k < nf ? p->top_k : nf;
	for (int64_t j = 0; j < keep; j++)
		c[j].v = expf((c[j].v - m) * inv_t);
	if (p->top_p < 1.0f) {
		qsort(c, (size_t)keep, sizeof(*c), scand_cmp);
		double zk = 0.0, cum = 0.0, prev = 0.0;
		for (int64_t j = 0; j < keep; j++)
			zk += c[j].v;
		const double target = (double)p->top_p * zk;
		int64_t cut = keep;
		for (int64_t j = 0; j < keep; j++) {
			prev = cum;
			cum += c[j].v;
			if (cum >= target) {
				cut = j + 1;
				break;
			}
		}
		if (cut < keep && (fabs(cum - target) <= eps * zk || fabs(prev - target) <= eps * zk ||
				   c[cut].v >= c[cut - 1].v * (1.0 - eps))) {
			r->amb = true;
			r->extra[r->n_extra++] = c[cut].id;
		}
		keep = cut;
	}
	if (p->min_p > 0.0f) {
		int64_t k2 = 0;
		for (int64_t j = 0; j < keep; j++) {
			if (c[j].v >= p->min_p)
				c[k2++] = c[j];
			else if (c[j].v >= p->min_p * (1.0 - eps) && r->n_extra < 2)
				r->amb = true, r->extra[r->n_extra++] = c[j].id;
		}
		keep = k2;
	}
	qsort(c, (size_t)keep, sizeof(*c), scand_id_cmp);
	double z = 0.0;
	for (int64_t j = 0; j < keep; j++) {
		z += c[j].v;
		r->cum[j] = z;
	}
	r->ns = keep;
	r->z = z;
	r->target = p->u * z;
	for (int64_t j = 0; j < keep; j++) {
		if (c[j].v > 0.0f) {
			r->tok = c[j].id;
			if (r->cum[j] > r->target)
				break;
		}
	}
}

/* Whether token d is an acceptable answer where the reference says r->tok:
 * 0 no, 1 exactly, 2 across an edge within eps. */
static int sample_judge(const struct sref *r, int32_t d, double eps)
{
	if (d == r->tok)
		return 1;
	if (d < 0 || r->tok < 0)
		return 0;
	for (int i = 0; i < r->n_extra; i++)
		if (r->amb && d == r->extra[i])
			return 2;
	for (int64_t j = 0; j < r->ns; j++) {
		if (r->c[j].id != d)
			continue;
		if (r->amb)
			return 2;
		const double lo = j ? r->cum[j - 1] : 0.0, hi = r->cum[j];
		return r->target >= lo - eps * r->z && r->target <= hi + eps * r->z ? 2 : 0;
	}
	return 0;
}

/* Run the kernel over rows (n_rows, n) with params; tokens and logprobs
 * into the host arrays.  Returns 0 or the CUDA error. */
static int sample_run(struct tctx *t, const float *x, const struct pf_cuda_sample_params *ps, int32_t n_rows, int64_t n,
		      int32_t *tok, float *lp)
{
	float *dx = dev_put(t, x, sizeof(float) * (size_t)n_rows * (size_t)n);
	struct pf_cuda_sample_params *dp = dev_put(t, ps, sizeof(*ps) * (size_t)n_rows);
	int32_t *dt = dev_put(t, NULL, sizeof(int32_t) * (size_t)n_rows);
	float *dl = dev_put(t, NULL, sizeof(float) * (size_t)n_rows);
	int rc = (!dx || !dp || !dt || !dl) ? -ENOMEM : 0;
	rc = rc ?: pf_cuda_sample(dt, dl, dx, dp, n_rows, n, &t->lc) ?: dev_get(t, tok, dt, sizeof(int32_t) * (size_t)n_rows) ?:
		dev_get(t, lp, dl, sizeof(float) * (size_t)n_rows);
	pf_cuda_free(dx), pf_cuda_free(dp), pf_cuda_free(dt), pf_cuda_free(dl);
	return rc;
}

static double urand(struct tctx *t) /* uniform in [0, 1) */
{
	return ((double)frand(t) + 1.0) * 0.5;
}

static void test_sample(struct tctx *t)
{
	/* eps: relative width of an edge the device may land on the other side
	 * of — CUDA's expf (≤ 2 ulp) against glibc's, and double sums in
	 * another order.  The emulator shares glibc's expf, so there it should
	 * see none. */
	const double eps = 1e-6;
	static const struct {
		float temp;
		int32_t top_k;
		float top_p, min_p;
	} mixes[] = {
		{ 0.0f, 0, 1.0f, 0.0f },      /* greedy */
		{ 1.0f, 0, 1.0f, 0.0f },      /* temperature only */
		{ 0.7f, 1, 1.0f, 0.0f },      /* top-k 1 */
		{ 1.0f, 40, 1.0f, 0.0f },
		{ 1.3f, 1000, 1.0f, 0.0f },
		{ 1.0f, 0, 0.9f, 0.0f },      /* top-p */
		{ 0.8f, 0, 0.5f, 0.0f },
		{ 1.0f, 0, 1.0f, 0.05f },     /* min-p */
		{ 0.9f, 40, 0.9f, 0.0f },     /* combinations */
		{ 1.0f, 1000, 0.5f, 0.05f },
		{ 1.5f, 0, 0.9f, 0.05f },
		{ 2.0f, 5000, 0.95f, 0.0f },
	};
	const int n_mix = (int)(sizeof(mixes) / sizeof(mixes[0]));
	/* vocab, logit kinds (bit 0: random, bit 1: quantized to 0.5 — ties,
	 * bit 2: all equal, bit 3: a third -inf), draws per (kind, mix), mix mask */
	static const struct {
		int64_t n;
		int kinds, draws;
		uint32_t mix_mask;
	} shapes[] = {
		{ 37, 1 | 2 | 8, 4, 0xfff },
		{ 1000, 1 | 2 | 4, 3, 0xfff },
		{ 32000, 1 | 4, 1, 0xfff },
		{ 49152, 2, 1, 0x3aa },
		{ 128256, 1, 1, 0xb2a },
	};
	int64_t worst_n = 128256;
	struct sref r = { .c = xmalloc(sizeof(struct scand) * (size_t)worst_n), .cum = xmalloc(sizeof(double) * (size_t)worst_n) };
	for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
		const int64_t n = shapes[si].n;
		int32_t n_rows = 0, cap = 0;
		for (int kind = 1; kind <= 8; kind <<= 1)
			if (shapes[si].kinds & kind)
				cap += n_mix * shapes[si].draws;
		cap += 2; /* a NaN row and an all -inf row */
		float *x = xmalloc(sizeof(float) * (size_t)cap * (size_t)n);
		struct pf_cuda_sample_params *ps = xmalloc(sizeof(*ps) * (size_t)cap);
		for (int kind = 1; kind <= 8; kind <<= 1) {
			if (!(shapes[si].kinds & kind))
				continue;
			float *base = xmalloc(sizeof(float) * (size_t)n);
			fill(t, base, (size_t)n, 8.0f);
			for (int64_t i = 0; i < n; i++) {
				if (kind == 2)
					base[i] = roundf(base[i] * 2.0f) * 0.5f;
				else if (kind == 4)
					base[i] = 1.25f;
				else if (kind == 8 && i % 3 == 1)
					base[i] = -INFINITY;
			}
			for (int mi = 0; mi < n_mix; mi++) {
				if (!(shapes[si].mix_mask >> mi & 1))
					continue;
				for (int d = 0; d < shapes[si].draws; d++) {
					memcpy(x + (size_t)n_rows * (size_t)n, base, sizeof(float) * (size_t)n);
					ps[n_rows] = (struct pf_cuda_sample_params){ .u = urand(t), .temperature = mixes[mi].temp,
						.top_k = mixes[mi].top_k, .top_p = mixes[mi].top_p, .min_p = mixes[mi].min_p,
						.want_logprob = (n_rows % 3) != 2 };
					n_rows++;
				}
			}
			free(base);
		}
		/* refused rows: a NaN (sampled), nothing finite (sampled) */
		fill(t, x + (size_t)n_rows * (size_t)n, (size_t)n, 8.0f);
		x[(size_t)n_rows * (size_t)n + (size_t)n / 2] = NAN;
		ps[n_rows] = (struct pf_cuda_sample_params){ .u = 0.5, .temperature = 1.0f, .top_k = 40, .top_p = 0.9f, .want_logprob = 1 };
		n_rows++;
		for (int64_t i = 0; i < n; i++)
			x[(size_t)n_rows * (size_t)n + (size_t)i] = -INFINITY;
		ps[n_rows] = (struct pf_cuda_sample_params){ .u = 0.5, .temperature = 1.0f, .top_p = 1.0f, .want_logprob = 1 };
		n_rows++;

		int32_t *tok = xmalloc(sizeof(int32_t) * (size_t)n_rows);
		float *lp = xmalloc(sizeof(float) * (size_t)n_rows);
		int rc = sample_run(t, x, ps, n_rows, n, tok, lp);
		if (!cuda_failed(t, rc, "sample")) {
			int exact = 0, edge = 0, bad = 0, lp_bad = 0, refused = 0;
			double lp_err = 0.0;
			for (int32_t i = 0; i < n_rows; i++) {
				const float *xr = x + (size_t)i * (size_t)n;
				sample_ref(xr, n, &ps[i], eps, &r);
				const int j = sample_judge(&r, tok[i], eps);
				exact += j == 1, edge += j == 2;
				refused += j == 1 && r.tok < 0;
				if (!j) {
					if (bad++ < 5)
						printf("# sample n=%lld row %d (T=%g k=%d p=%g min_p=%g u=%.17g): got %d, want %d (survivors %lld)\n",
						       (long long)n, i, ps[i].temperature, ps[i].top_k, ps[i].top_p, ps[i].min_p, ps[i].u,
						       tok[i], r.tok, (long long)r.ns);
					continue;
				}
				if (ps[i].want_logprob && tok[i] >= 0) {
					const double want_lp = (double)xr[tok[i]] - r.lse, e = fabs((double)lp[i] - want_lp);
					lp_err = e > lp_err ? e : lp_err;
					lp_bad += !(e <= 1e-5);
				} else {
					lp_bad += !isnan(lp[i]);
				}
			}
			check(t, bad == 0 && lp_bad == 0 && edge <= 1 + n_rows / 50,
			      "sample  n=%lld rows=%d  exact %d, across an edge %d, refused %d, wrong %d; logprob max err %.2g (bound 1e-5), bad %d",
			      (long long)n, n_rows, exact, edge, refused, bad, lp_err, lp_bad);
		}
		free(tok), free(lp), free(x), free(ps);
	}

	/* The distribution: one row, u on a grid of G points; each survivor's
	 * share of the grid must be its probability to within a grid step. */
	{
		const int64_t n = 37;
		const int32_t G = 512;
		float base[37];
		fill(t, base, (size_t)n, 3.0f);
		base[5] = base[9]; /* a tie */
		const struct pf_cuda_sample_params p0 = { .temperature = 0.8f, .top_k = 24, .top_p = 0.97f, .min_p = 0.005f };
		float *x = xmalloc(sizeof(float) * (size_t)G * (size_t)n);
		struct pf_cuda_sample_params *ps = xmalloc(sizeof(*ps) * (size_t)G);
		for (int32_t g = 0; g < G; g++) {
			memcpy(x + (size_t)g * (size_t)n, base, sizeof(base));
			ps[g] = p0;
			ps[g].u = (g + 0.5) / G;
		}
		int32_t *tok = xmalloc(sizeof(int32_t) * (size_t)G);
		float *lp = xmalloc(sizeof(float) * (size_t)G);
		int rc = sample_run(t, x, ps, G, n, tok, lp);
		if (!cuda_failed(t, rc, "sample distribution")) {
			sample_ref(base, n, &p0, eps, &r);
			int count[37] = { 0 }, outside = 0;
			for (int32_t g = 0; g < G; g++)
				if (tok[g] >= 0 && tok[g] < n)
					count[tok[g]]++;
			double worst = 0.0;
			for (int64_t j = 0; j < r.ns; j++) {
				const double pj = r.c[j].v / r.z, dev = fabs(count[r.c[j].id] - pj * G);
				worst = dev > worst ? dev : worst;
				count[r.c[j].id] = 0;
			}
			for (int64_t i = 0; i < n; i++)
				outside += count[i];
			check(t, worst <= 1.0 && outside == 0,
			      "sample  distribution n=%lld survivors %lld grid %d: max |count - p·G| %.3f (bound 1), draws outside the survivors %d",
			      (long long)n, (long long)r.ns, G, worst, outside);
		}
		free(tok), free(lp), free(x), free(ps);
	}
	free(r.c), free(r.cum);
}

/* ---- the whole forward pass: CUDA backend vs CPU backend ----------------------------- */

struct tiny_model {
	struct pf_model_weights w;
	struct pf_layer_weights layers[2];
	void *bufs[64];
	int n_bufs;
};

static struct pf_tensor_ref tiny_tensor(struct tctx *t, struct tiny_model *m, uint32_t type, int64_t ne0, int64_t ne1,
					float scale)
{
	size_t rb;
	void *d = make_weights(t, type, ne1, ne0, scale, &rb);
	m->bufs[m->n_bufs++] = d;
	return (struct pf_tensor_ref){ .type = type, .ne0 = ne0, .ne1 = ne1, .row_bytes = rb, .data = d };
}

static struct pf_tensor_ref tiny_norm(struct tctx *t, struct tiny_model *m, int64_t n)
{
	float *d = xmalloc(sizeof(float) * n);
	for (int64_t i = 0; i < n; i++)
		d[i] = 1.0f + 0.3f * frand(t);
	m->bufs[m->n_bufs++] = d;
	return (struct pf_tensor_ref){ .type = PF_DT_F32, .ne0 = n, .ne1 = 1, .row_bytes = sizeof(float) * n, .data = d };
}

/* variant bit 0: 0 llama-style (adjacent RoPE, output tied to the
 *   embeddings), 1 qwen2-style (QKV biases, NEOX RoPE, Llama-3 frequency
 *   factors, a separate output);
 * variant bit 1: 0 quantized (llama: Q8_0/Q4_0/Q4_1 and Q4_K embeddings;
 *   qwen2: Q4_K/F16/Q6_K), 1 every tensor F32 — where the CPU quantizes
 *   no activations, so the two backends compute nearly the same thing. */
static void tiny_build(struct tctx *t, struct tiny_model *m, int variant)
{
	const bool f32 = variant & 2;
	variant &= 1;
	memset(m, 0, sizeof(*m));
	struct pf_hparams *hp = &m->w.hp;
	*hp = (struct pf_hparams){
		.arch = variant ? PF_ARCH_QWEN2 : PF_ARCH_LLAMA, .n_vocab = 311, .n_embd = 256, .n_layer = 2,
		.n_head = 4, .n_head_kv = 2, .head_dim = 64, .n_ff = 512, .n_ctx_train = 4096, .n_rot = 64,
		.rope_base = 10000.0f, .norm_eps = 1e-5f, .rope_neox = variant == 1,
	};
	const int64_t E = hp->n_embd, qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim, F = hp->n_ff;
	const float se = 1.0f / sqrtf((float)E), sf = 1.0f / sqrtf((float)F);
	for (int l = 0; l < 2; l++) {
		struct pf_layer_weights *L = &m->layers[l];
		const uint32_t ta = f32 ? PF_DT_F32 : variant ? PF_DT_Q4_K : PF_DT_Q8_0;
		const uint32_t tb = f32 ? PF_DT_F32 : variant ? PF_DT_F16 : PF_DT_Q4_0;
		const uint32_t tc = f32 ? PF_DT_F32 : variant ? PF_DT_Q6_K : PF_DT_Q4_1;
		L->attn_norm = tiny_norm(t, m, E);
		L->ffn_norm = tiny_norm(t, m, E);
		L->wq = tiny_tensor(t, m, ta, E, qd, 2.0f * se);
		L->wk = tiny_tensor(t, m, ta, E, kvd, 2.0f * se);
		L->wv = tiny_tensor(t, m, tb, E, kvd, 2.0f * se);
		L->wo = tiny_tensor(t, m, tc, qd, E, se);
		L->w_gate = tiny_tensor(t, m, ta, E, F, 2.0f * se);
		L->w_up = tiny_tensor(t, m, tb, E, F, 2.0f * se);
		L->w_down = tiny_tensor(t, m, tc, F, E, sf);
		if (variant) {
			L->bq = tiny_tensor(t, m, PF_DT_F32, qd, 1, 0.5f);
			L->bk = tiny_tensor(t, m, PF_DT_F32, kvd, 1, 0.5f);
			L->bv = tiny_tensor(t, m, PF_DT_F32, kvd, 1, 0.5f);
		}
	}
	m->w.layers = m->layers;
	m->w.tok_embd = tiny_tensor(t, m, f32 ? PF_DT_F32 : PF_DT_Q4_K, E, hp->n_vocab, 1.0f);
	m->w.out_norm = tiny_norm(t, m, E);
	if (variant) {
		m->w.output = tiny_tensor(t, m, f32 ? PF_DT_F32 : PF_DT_Q6_K, E, hp->n_vocab, 2.0f * se);
		float *ff = xmalloc(sizeof(float) * (size_t)(hp->n_rot / 2));
		for (int i = 0; i < hp->n_rot / 2; i++)
			ff[i] = 1.0f + (float)(i % 5);
		m->bufs[m->n_bufs++] = ff;
		m->w.rope_freqs = (struct pf_tensor_ref){ .type = PF_DT_F32, .ne0 = hp->n_rot / 2, .ne1 = 1,
							  .row_bytes = sizeof(float) * (size_t)(hp->n_rot / 2), .data = ff };
	} else {
		m->w.output = m->w.tok_embd;
	}
}

static void tiny_free(struct tiny_model *m)
{
	for (int i = 0; i < m->n_bufs; i++)
		free(m->bufs[i]);
}

/* One engine-like step on both backends; compares the logits. */
struct step {
	const char *what;
	int32_t n_tokens;
	int32_t tokens[64], pos[64], seq[64];
	int32_t n_logits, logit_rows[8];
	int32_t copy_src, copy_dst; /* a copy_block first when src >= 0 */
};

static void test_backend(struct tctx *t)
{
	const int32_t bs = 16, n_blocks = 24;
	/* sequence 0: blocks 3 7 1 9; sequence 1: 0 5 11; sequence 2 forks
	 * sequence 1 after its 20 first positions: shares block 0, copies
	 * block 5 into 13 */
	static const int32_t t0[] = { 3, 7, 1, 9 }, t1[] = { 0, 5, 11 }, t2[] = { 0, 13, 14 };
	const int32_t *tables[3] = { t0, t1, t2 };
	const int32_t n_table[3] = { 4, 3, 3 };
	struct step steps[4];
	memset(steps, 0, sizeof(steps));
	/* 1: prompts of 27 and 12 tokens (prefill tiles, cuBLAS) */
	steps[0].what = "prefill 27+12";
	for (int32_t i = 0; i < 27; i++)
		steps[0].tokens[i] = (i * 37 + 5) % 311, steps[0].pos[i] = i, steps[0].seq[i] = 0;
	for (int32_t i = 0; i < 12; i++)
		steps[0].tokens[27 + i] = (i * 91 + 3) % 311, steps[0].pos[27 + i] = i, steps[0].seq[27 + i] = 1;
	steps[0].n_tokens = 39, steps[0].n_logits = 2, steps[0].logit_rows[0] = 26, steps[0].logit_rows[1] = 38;
	steps[0].copy_src = -1;
	/* 2: sequence 1 continues its prompt to 21 positions; sequence 0 decodes */
	steps[1].what = "decode + chunk of 9";
	steps[1].tokens[0] = 17, steps[1].pos[0] = 27, steps[1].seq[0] = 0;
	for (int32_t i = 0; i < 9; i++)
		steps[1].tokens[1 + i] = (i * 13 + 1) % 311, steps[1].pos[1 + i] = 12 + i, steps[1].seq[1 + i] = 1;
	steps[1].n_tokens = 10, steps[1].n_logits = 2, steps[1].logit_rows[0] = 0, steps[1].logit_rows[1] = 9;
	steps[1].copy_src = -1;
	/* 3: fork sequence 1 into 2 (copy-on-write of its partial block), then
	 * both decode different tokens at position 21, with sequence 0 */
	steps[2].what = "fork (copy_block) + 3 decodes";
	steps[2].tokens[0] = 100, steps[2].pos[0] = 28, steps[2].seq[0] = 0;
	steps[2].tokens[1] = 200, steps[2].pos[1] = 21, steps[2].seq[1] = 1;
	steps[2].tokens[2] = 201, steps[2].pos[2] = 21, steps[2].seq[2] = 2;
	steps[2].n_tokens = 3, steps[2].n_logits = 3;
	steps[2].logit_rows[0] = 0, steps[2].logit_rows[1] = 1, steps[2].logit_rows[2] = 2;
	steps[2].copy_src = 5, steps[2].copy_dst = 13;
	/* 4: a long chunk for sequence 0 (positions 29..58: over block boundaries) */
	steps[3].what = "chunk of 30";
	for (int32_t i = 0; i < 30; i++)
		steps[3].tokens[i] = (i * 7 + 11) % 311, steps[3].pos[i] = 29 + i, steps[3].seq[i] = 0;
	steps[3].n_tokens = 30, steps[3].n_logits = 3;
	steps[3].logit_rows[0] = 0, steps[3].logit_rows[1] = 15, steps[3].logit_rows[2] = 29;
	steps[3].copy_src = -1;

	static const char *const names[4] = { "llama-like Q8_0/Q4_0/Q4_1 tied", "qwen2-like Q4_K/Q6_K/F16+bias",
					      "llama-like F32 tied", "qwen2-like F32+bias" };
	for (int variant = 0; variant < 4; variant++) {
		struct tiny_model m;
		const bool f32 = variant & 2;
		tiny_build(t, &m, variant);
		for (int mode = 0; mode < 2; mode++) {
			const bool invariant = mode == 1;
			/* an F32 cache for the F32 models: the CPU then rounds no probabilities either */
			struct pf_kv_config kv = { .n_blocks = n_blocks, .block_size = bs, .kv_dtype = f32 ? PF_DT_F32 : PF_DT_F16 };
			struct pf_backend cpu, gpu;
			struct pf_cuda_backend_config cc = pf_cuda_backend_config_default();
			cc.batch_invariant = invariant;
			int rc = pf_cpu_backend_create(&m.w, &kv, 1, &cpu, t->err, sizeof(t->err));
			if (rc) {
				check(t, false, "cpu backend: %d %s", rc, t->err);
				continue;
			}
			rc = pf_cuda_backend_create(&m.w, &kv, &cc, &gpu, t->err, sizeof(t->err));
			if (cuda_failed(t, rc, "pf_cuda_backend_create")) {
				cpu.ops->destroy(cpu.ctx);
				continue;
			}
			printf("#    %s\n", gpu.ops->describe(gpu.ctx));
			const int32_t V = m.w.hp.n_vocab;
			for (int s = 0; s < 4 && !rc; s++) {
				const struct step *st = &steps[s];
				struct pf_batch b = {
					.n_tokens = st->n_tokens, .tokens = st->tokens, .pos = st->pos, .seq = st->seq,
					.n_seqs = 3, .block_table = tables, .n_table = n_table, .n_logits = st->n_logits,
					.logit_rows = st->logit_rows, .n_prompt = NULL,
				};
				float *lc = xmalloc(sizeof(float) * st->n_logits * V), *lg = xmalloc(sizeof(float) * st->n_logits * V);
				if (st->copy_src >= 0) {
					rc = cpu.ops->copy_block(cpu.ctx, st->copy_src, st->copy_dst) ?:
					     gpu.ops->copy_block(gpu.ctx, st->copy_src, st->copy_dst);
				}
				rc = rc ?: cpu.ops->forward(cpu.ctx, &b, lc);
				if (!rc) {
					rc = gpu.ops->forward(gpu.ctx, &b, lg);
					if (rc)
						snprintf(t->err, sizeof(t->err), "%s", pf_cuda_backend_last_error(gpu.ctx));
				}
				if (!cuda_failed(t, rc, "forward")) {
					double e = nerr(lg, lc, (size_t)(st->n_logits * V));
					int agree = 0;
					for (int32_t i = 0; i < st->n_logits; i++)
						agree += argmax_ref(lg + i * V, V) == argmax_ref(lc + i * V, V);
					/* quantized: the CPU multiplies 8-bit activations (Q8_K's
					 * 256-wide blocks the coarsest: ~2e-2 here), the GPU
					 * float ones.  F32, batch-invariant: fp32 vs double sums
					 * and expf only (~1e-7).  F32 with cuBLAS: batches past
					 * the matvec width multiply FP16-rounded weights and
					 * activations (~3e-4), and their K/V feed later steps.
					 * A wrong index or a missed write gives O(1) in any case. */
					const double bound = !f32 ? 5e-2 : invariant ? 1e-5 : 3e-3;
					check(t, e <= bound, "backend %s%s step %d (%s)  logits err=%.3g bound=%.0e, argmax agrees %d/%d",
					      names[variant], invariant ? " batch-invariant" : "", s + 1, st->what, e, bound, agree,
					      st->n_logits);
				}
				free(lc);
				free(lg);
			}
			cpu.ops->destroy(cpu.ctx);
			gpu.ops->destroy(gpu.ctx);
		}
		tiny_free(&m);
	}

	/* batch invariance: a row's logits alone equal its logits in a batch */
	struct tiny_model m;
	tiny_build(t, &m, 0);
	struct pf_kv_config kv = { .n_blocks = n_blocks, .block_size = bs, .kv_dtype = PF_DT_F16 };
	struct pf_cuda_backend_config cc = pf_cuda_backend_config_default();
	cc.batch_invariant = true;
	struct pf_backend gpu;
	int rc = pf_cuda_backend_create(&m.w, &kv, &cc, &gpu, t->err, sizeof(t->err));
	if (!cuda_failed(t, rc, "pf_cuda_backend_create")) {
		const int32_t V = m.w.hp.n_vocab;
		float *batched = xmalloc(sizeof(float) * 2 * V), *alone = xmalloc(sizeof(float) * V);
		struct pf_batch b = {
			.n_tokens = steps[0].n_tokens, .tokens = steps[0].tokens, .pos = steps[0].pos, .seq = steps[0].seq,
			.n_seqs = 3, .block_table = tables, .n_table = n_table, .n_logits = 2,
			.logit_rows = steps[0].logit_rows,
		};
		rc = gpu.ops->forward(gpu.ctx, &b, batched);
		/* sequence 1's 12 prompt tokens alone (its cache rewritten with the same values) */
		const int32_t last = 11;
		struct pf_batch b1 = {
			.n_tokens = 12, .tokens = steps[0].tokens + 27, .pos = steps[0].pos + 27, .seq = steps[0].seq + 27,
			.n_seqs = 3, .block_table = tables, .n_table = n_table, .n_logits = 1, .logit_rows = &last,
		};
		rc = rc ?: gpu.ops->forward(gpu.ctx, &b1, alone);
		if (!cuda_failed(t, rc, "forward"))
			check(t, !memcmp(alone, batched + V, sizeof(float) * V),
			      "backend batch-invariant: a prompt's logits alone %s its logits batched with another",
			      memcmp(alone, batched + V, sizeof(float) * V) ? "differ from" : "equal (bitwise)");
		free(batched);
		free(alone);
		gpu.ops->destroy(gpu.ctx);
	}
	tiny_free(&m);
}


/* Swap ops and device sampling through the backend: a sequence's blocks
 * swapped out to host slots and back in to other blocks must give the
 * same logits, bit for bit, as the original blocks (on the GPU and on the
 * CPU); forward_sample's greedy rows must be forward's argmax and its
 * logprobs the log-softmax of forward's logits. */
static void test_backend_swap(struct tctx *t)
{
	const int32_t bs = 16;
	struct tiny_model m;
	tiny_build(t, &m, 0);
	const int32_t V = m.w.hp.n_vocab;
	struct pf_kv_config kv = { .n_blocks = 24, .block_size = bs, .kv_dtype = PF_DT_F16, .n_host_blocks = 8 };
	struct pf_cuda_backend_config cc = pf_cuda_backend_config_default();
	struct pf_backend be[2];
	int rc = pf_cpu_backend_create(&m.w, &kv, 1, &be[0], t->err, sizeof(t->err));
	if (rc) {
		check(t, false, "cpu backend: %d %s", rc, t->err);
		tiny_free(&m);
		return;
	}
	rc = pf_cuda_backend_create(&m.w, &kv, &cc, &be[1], t->err, sizeof(t->err));
	if (cuda_failed(t, rc, "pf_cuda_backend_create (with swap space)")) {
		be[0].ops->destroy(be[0].ctx);
		tiny_free(&m);
		return;
	}
	int32_t tok[27], pos[27], seq[27] = { 0 };
	for (int32_t i = 0; i < 27; i++)
		tok[i] = (i * 37 + 5) % 311, pos[i] = i;
	static const int32_t orig[] = { 3, 7 }, moved[] = { 15, 16 };
	const int32_t two = 2, last = 26, row0 = 0, p27 = 27, t27 = 42;
	const struct pf_block_pair out[] = { { 3, 2 }, { 7, 5 } }, in[] = { { 2, 15 }, { 5, 16 } };
	for (int k = 0; k < 2; k++) {
		const char *who = k ? "cuda" : "cpu";
		const struct pf_backend *b = &be[k];
		float *la = xmalloc(sizeof(float) * V), *lb = xmalloc(sizeof(float) * V), *scratch = xmalloc(sizeof(float) * V);
		const int32_t *t_orig[1] = { orig }, *t_moved[1] = { moved };
		struct pf_batch pre = { .n_tokens = 27, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = 1,
					.block_table = t_orig, .n_table = &two, .n_logits = 1, .logit_rows = &last };
		struct pf_batch dec = { .n_tokens = 1, .tokens = &t27, .pos = &p27, .seq = seq, .n_seqs = 1,
					.block_table = t_orig, .n_table = &two, .n_logits = 1, .logit_rows = &row0 };
		/* decode on the original blocks, then redo it on the swapped copies */
		rc = b->ops->forward(b->ctx, &pre, scratch) ?: b->ops->forward(b->ctx, &dec, la) ?:
		     b->ops->swap_out(b->ctx, out, 2) ?: b->ops->swap_in(b->ctx, in, 2);
		dec.block_table = t_moved;
		rc = rc ?: b->ops->forward(b->ctx, &dec, lb);
		if (!cuda_failed(t, rc, who))
			check(t, !memcmp(la, lb, sizeof(float) * V), "backend %s swap out + in to other blocks: logits %s",
			      who, memcmp(la, lb, sizeof(float) * V) ? "differ" : "equal (bitwise)");
		/* ids out of range are refused, nothing moved */
		const struct pf_block_pair bad[] = { { 3, 8 } };
		check(t, b->ops->swap_out(b->ctx, bad, 1) == -EINVAL, "backend %s swap to host slot 8 of 8 refused", who);
		if (k == 1 && !rc) {
			/* forward_sample on the same step: greedy = argmax; a sampled
			 * row's token and logprob consistent with the logits */
			struct pf_sample_row rows[1] = { { .temperature = 0.0f, .want_logprob = 1 } };
			int32_t got = -2;
			float lp = 0;
			rc = b->ops->forward_sample(b->ctx, &dec, rows, &got, &lp);
			if (!cuda_failed(t, rc, "forward_sample")) {
				double mx = -INFINITY, z = 0;
				for (int32_t v = 0; v < V; v++)
					mx = lb[v] > mx ? lb[v] : mx;
				for (int32_t v = 0; v < V; v++)
					z += exp((double)lb[v] - mx);
				int32_t want = argmax_ref(lb, V);
				double want_lp = (double)lb[want] - mx - log(z);
				check(t, got == want && fabs(lp - want_lp) <= 1e-5,
				      "backend forward_sample greedy: token %d (argmax %d), logprob %.6f (%.6f)", got, want,
				      (double)lp, want_lp);
				rows[0] = (struct pf_sample_row){ .u = 0.37, .temperature = 0.8f, .top_k = 20, .top_p = 0.9f,
								  .want_logprob = 1 };
				rc = b->ops->forward_sample(b->ctx, &dec, rows, &got, &lp);
				bool ok = !rc && got >= 0 && got < V;
				int32_t better = 0; /* top-k 20: at most 19 tokens above the chosen one */
				for (int32_t v = 0; ok && v < V; v++)
					better += lb[v] > lb[got];
				double lpw = ok ? (double)lb[got] - mx - log(z) : 0;
				check(t, ok && better < 20 && fabs(lp - lpw) <= 1e-5,
				      "backend forward_sample T=0.8 top-k 20 top-p 0.9: token %d ranks %d, logprob %.6f (%.6f)", got,
				      better + 1, (double)lp, lpw);
			}
		}
		free(la);
		free(lb);
		free(scratch);
	}
	be[0].ops->destroy(be[0].ctx);
	be[1].ops->destroy(be[1].ctx);
	tiny_free(&m);
}

/* CUDA graphs: a backend replaying decode steps from graphs (captured per
 * batch-size bucket) and one running every step plainly must give the same
 * logits bit for bit, over buckets captured then replayed with other
 * tokens, positions (some past one decode split) and block tables, with
 * steps holding a prefill chunk (plain on both) in between. */
static void test_graphs(struct tctx *t)
{
	enum { NS = 20, NT = 40, NB = 80 }; /* sequences, table entries, pool blocks */
	const int32_t bs = 16;
	static const int32_t sizes[] = { 1, 3, 8, 9, 20 };
	for (int variant = 0; variant < 2; variant++) {
		struct tiny_model m;
		tiny_build(t, &m, variant);
		const int32_t V = m.w.hp.n_vocab;
		struct pf_kv_config kv = { .n_blocks = NB, .block_size = bs, .kv_dtype = PF_DT_F16 };
		struct pf_backend be[2];
		int rc = 0, made = 0;
		for (int g = 0; g < 2 && !rc; g++) {
			struct pf_cuda_backend_config cc = pf_cuda_backend_config_default();
			cc.cuda_graphs = g == 1;
			rc = pf_cuda_backend_create(&m.w, &kv, &cc, &be[g], t->err, sizeof(t->err));
			made += !rc;
		}
		if (cuda_failed(t, rc, "pf_cuda_backend_create")) {
			for (int g = 0; g < made; g++)
				be[g].ops->destroy(be[g].ctx);
			tiny_free(&m);
			continue;
		}
		static int32_t tab[NS][NT];
		const int32_t *tables[NS];
		int32_t n_table[NS];
		for (int32_t s = 0; s < NS; s++)
			tables[s] = tab[s], n_table[s] = NT;
		float *l0 = xmalloc(sizeof(float) * NS * V), *l1 = xmalloc(sizeof(float) * NS * V);
		int32_t tok[NS], pos[NS], seq[NS], lr[NS];
		int n_same = 0, n_steps = 0;
		for (int round = 0; round < 3 && !rc; round++) {
			/* every row of a step writes its own block: s + 20 j differ mod 80 */
			for (int32_t s = 0; s < NS; s++)
				for (int32_t j = 0; j < NT; j++)
					tab[s][j] = (s + 20 * j + 20 * round) % NB;
			for (int k = 0; k < (int)(sizeof(sizes) / sizeof(sizes[0])) && !rc; k++) {
				const int32_t n = sizes[k];
				for (int32_t i = 0; i < n; i++) {
					seq[i] = (i + 7 * round) % NS;
					/* short contexts (the emulator is slow), one row past a split of 512 */
					pos[i] = i == n / 2 ? 515 + 40 * round + k : (round * 23 + i * 5 + k * 3) % 80;
					tok[i] = (round * 101 + i * 13 + k * 7 + 1) % V;
					lr[i] = n - 1 - i;
				}
				struct pf_batch b = { .n_tokens = n, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = NS,
						      .block_table = tables, .n_table = n_table, .n_logits = n, .logit_rows = lr };
				for (int g = 0; g < 2 && !rc; g++) {
					rc = be[g].ops->forward(be[g].ctx, &b, g ? l1 : l0);
					if (rc)
						snprintf(t->err, sizeof(t->err), "%s", pf_cuda_backend_last_error(be[g].ctx));
				}
				if (cuda_failed(t, rc, "forward"))
					break;
				const bool same = !memcmp(l0, l1, sizeof(float) * (size_t)n * V);
				int32_t maxpos = 0;
				for (int32_t i = 0; i < n; i++)
					maxpos = pos[i] > maxpos ? pos[i] : maxpos;
				n_same += same, n_steps++;
				check(t, same, "graphs variant %d round %d: %d decode rows (max pos %d): logits %s", variant,
				      round + 1, n, maxpos, same ? "equal (bitwise)" : "DIFFER from the plain path");
			}
			if (rc)
				break;
			/* a prefill chunk of 6 for sequence 1 between two decodes: plain on both */
			int32_t n = 0;
			tok[n] = 3, pos[n] = 30, seq[n++] = 0;
			for (int32_t i = 0; i < 6; i++)
				tok[n] = (i * 29 + round) % V, pos[n] = 40 + 6 * round + i, seq[n++] = 1;
			tok[n] = 5, pos[n] = 520, seq[n++] = 2;
			for (int32_t i = 0; i < n; i++)
				lr[i] = i;
			struct pf_batch b = { .n_tokens = n, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = NS,
					      .block_table = tables, .n_table = n_table, .n_logits = n, .logit_rows = lr };
			for (int g = 0; g < 2 && !rc; g++)
				rc = be[g].ops->forward(be[g].ctx, &b, g ? l1 : l0);
			if (!cuda_failed(t, rc, "forward (mixed)"))
				check(t, !memcmp(l0, l1, sizeof(float) * (size_t)n * V),
				      "graphs variant %d round %d: decode + prefill chunk of 6 + decode (plain): logits %s", variant,
				      round + 1, memcmp(l0, l1, sizeof(float) * (size_t)n * V) ? "DIFFER" : "equal (bitwise)");
		}
		if (!rc) {
			/* forward_sample through a replayed graph: the same tokens */
			struct pf_sample_row rows[3];
			int32_t got[2][3];
			float lp[2][3];
			for (int32_t i = 0; i < 3; i++) {
				rows[i] = (struct pf_sample_row){ .u = 0.25 + 0.2 * i, .temperature = i ? 0.9f : 0.0f,
								  .top_k = 30, .top_p = 0.95f, .want_logprob = 1 };
				tok[i] = 40 + i, pos[i] = 30 + 250 * i, seq[i] = 5 + i, lr[i] = i;
			}
			struct pf_batch b = { .n_tokens = 3, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = NS,
					      .block_table = tables, .n_table = n_table, .n_logits = 3, .logit_rows = lr };
			for (int g = 0; g < 2 && !rc; g++)
				rc = be[g].ops->forward_sample(be[g].ctx, &b, rows, got[g], lp[g]);
			if (!cuda_failed(t, rc, "forward_sample"))
				check(t, !memcmp(got[0], got[1], sizeof(got[0])) && !memcmp(lp[0], lp[1], sizeof(lp[0])),
				      "graphs variant %d forward_sample of 3 rows (bucket 4 replayed): tokens %d %d %d / %d %d %d",
				      variant, got[0][0], got[0][1], got[0][2], got[1][0], got[1][1], got[1][2]);
		}
		if (!rc && variant == 0) {
			/* 257 decode rows: past the largest bucket, plain on both, and
			 * the scratch regrows, which drops every graph; then bucket
			 * 4 is captured again and must still agree */
			static int32_t btok[257], bpos[257], bseq[257];
			const int32_t last = 256;
			for (int32_t i = 0; i < 257; i++)
				btok[i] = (i * 11 + 2) % V, bseq[i] = i % NS, bpos[i] = i / NS; /* short: the emulator is slow */
			struct pf_batch big = { .n_tokens = 257, .tokens = btok, .pos = bpos, .seq = bseq, .n_seqs = NS,
						.block_table = tables, .n_table = n_table, .n_logits = 1, .logit_rows = &last };
			for (int g = 0; g < 2 && !rc; g++)
				rc = be[g].ops->forward(be[g].ctx, &big, g ? l1 : l0);
			for (int32_t i = 0; i < 3; i++)
				tok[i] = 60 + i, pos[i] = 130 + 200 * i, seq[i] = 3 * i, lr[i] = i;
			struct pf_batch b = { .n_tokens = 3, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = NS,
					      .block_table = tables, .n_table = n_table, .n_logits = 3, .logit_rows = lr };
			for (int g = 0; g < 2 && !rc; g++)
				rc = be[g].ops->forward(be[g].ctx, &b, g ? l1 : l0);
			if (!cuda_failed(t, rc, "forward (257 rows, then 3)"))
				check(t, !memcmp(l0, l1, sizeof(float) * 3 * V),
				      "graphs variant %d: 3 decode rows after a step of 257 regrew the scratch: logits %s", variant,
				      memcmp(l0, l1, sizeof(float) * 3 * V) ? "DIFFER" : "equal (bitwise)");
		}
		printf("#    graphs variant %d: %d of %d decode steps bitwise equal\n", variant, n_same, n_steps);
		if (!rc) {
			/* the graph path did run: 15 decode steps, the sampled one
			 * (and the last of variant 0) replayed; 5 buckets (1, 4, 8,
			 * 16, 32) captured, and bucket 4 again after the regrow */
			int64_t rp[2], cp[2];
			for (int g = 0; g < 2; g++)
				pf_cuda_backend_graph_stats(be[g].ctx, &rp[g], &cp[g]);
			const int64_t want_rp = variant ? 16 : 17, want_cp = variant ? 5 : 6;
			check(t, rp[1] == want_rp && cp[1] == want_cp && rp[0] == 0 && cp[0] == 0,
			      "graphs variant %d: %lld steps replayed from %lld captured graphs (%lld from %lld), none without graphs (%lld, %lld)",
			      variant, (long long)rp[1], (long long)cp[1], (long long)want_rp, (long long)want_cp, (long long)rp[0],
			      (long long)cp[0]);
		}
		free(l0);
		free(l1);
		be[0].ops->destroy(be[0].ctx);
		be[1].ops->destroy(be[1].ctx);
		tiny_free(&m);
	}
}

/* ---- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	struct tctx t;
	memset(&t, 0, sizeof(t));
	t.rng = 0x9E3779B97F4A7C15ULL;
	t.lc.err = t.err;
	t.lc.errlen = sizeof(t.err);

	int n_dev = pf_cuda_device_count();
	if (n_dev <= 0) {
		printf("skip: no CUDA device (no NVIDIA driver, or it sees no GPU): GPU kernel tests not run\n");
		return 77;
	}
	char d[256];
	if (pf_cuda_device_describe(0, d, sizeof(d)) == 0)
		printf("# device 0: %s\n", d);
	if (pf_cuda_set_device(0, t.err, sizeof(t.err))) {
		printf("skip: cannot use CUDA device 0: %s\n", t.err);
		return 77;
	}
	if (pf_cuda_stream_create(&t.lc.stream, t.err, sizeof(t.err))) {
		printf("FAIL stream: %s\n", t.err);
		return 1;
	}
	static const struct {
		const char *name;
		void (*fn)(struct tctx *);
	} tests[] = {
		{ "embed", test_embed },         { "rmsnorm", test_rmsnorm }, { "rope", test_rope },
		{ "elementwise", test_elementwise }, { "kv", test_kv },       { "matvec", test_matvec },
		{ "gemm", test_gemm },           { "attention", test_attention }, { "argmax", test_argmax },
		{ "sample", test_sample },       { "backend", test_backend }, { "swap", test_backend_swap },
		{ "graphs", test_graphs },
	};
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		if (want(filter, tests[i].name))
			tests[i].fn(&t);
	pf_cuda_stream_destroy(t.lc.stream);
	printf("# %d checks passed, %d failed\n", t.n_pass, t.n_fail);
	return t.n_fail ? 1 : t.n_pass ? 0 : 77;
}
