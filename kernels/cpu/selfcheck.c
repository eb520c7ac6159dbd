/* selfcheck.c — see selfcheck.h. */
#include "kernels/cpu/selfcheck.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/dtype.h"
#include "kernels/cpu/ops.h"

#define ROWS 12 /* per matrix: 4 at each end and 4 in the middle */

struct check {
	enum pf_isa isa;
	long compared;
	char fail[256]; /* the first difference, empty while none */
};

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* Deterministic activations: a smooth spread with a few outliers, as real
 * hidden states have (the outliers set the 8-bit scales). */
static void fill(float *x, int64_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	for (int64_t i = 0; i < n; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		float u = (float)((s >> 40) * 0x1p-24) * 2.0f - 1.0f;
		x[i] = i % 97 == 5 ? u * 40.0f : u * 1.5f;
	}
}

static void failf(struct check *c, const char *fmt, ...)
{
	va_list ap;
	if (c->fail[0])
		return;
	va_start(ap, fmt);
	vsnprintf(c->fail, sizeof(c->fail), fmt, ap);
	va_end(ap);
}

static void check_matrix(struct check *c, const struct pf_tensor_ref *t, const char *name, float *x, void *a0,
			 void *a1)
{
	const struct pf_qtype_ops *ref = pf_qtype_ops(t->type, PF_ISA_SCALAR), *ops = pf_qtype_ops(t->type, c->isa);
	const int64_t n = t->ne0;
	int64_t rows[ROWS];

	if (!t->data || !ref || !ops || ops == ref || t->ne1 < 4)
		return;
	for (int i = 0; i < 4; i++) {
		rows[i] = i;
		rows[4 + i] = t->ne1 / 2 - 2 + i;
		rows[8 + i] = t->ne1 - 4 + i;
	}
	fill(x, n, (uint64_t)t->type * 131 + (uint64_t)n);
	ref->quantize_act(x, a0, n);
	ops->quantize_act(x, a1, n);
	if (memcmp(a0, a1, pf_act_row_bytes(t->type, n))) {
		failf(c, "%s: the %s activation quantizer's bytes differ from the scalar reference's",
		      name, pf_dtype_name(t->type));
		return;
	}
	for (int g = 0; g < ROWS; g += 4) {
		const char *w = (const char *)t->data + (size_t)rows[g] * t->row_bytes;
		float s4[4], want[4];
		ops->vec_dot_4x(n, s4, w, t->row_bytes, a1);
		for (int r = 0; r < 4; r++) {
			float one;
			ref->vec_dot(n, &want[r], w + (size_t)r * t->row_bytes, a0);
			ops->vec_dot(n, &one, w + (size_t)r * t->row_bytes, a1);
			c->compared += 2;
			if (bits(one) != bits(want[r]) || bits(s4[r]) != bits(want[r]))
				failf(c, "%s (%s) row %lld: %.9g (0x%08x), 4-row kernel %.9g, scalar reference %.9g (0x%08x)",
				      name, pf_dtype_name(t->type), (long long)rows[g] + r, (double)one, bits(one),
				      (double)s4[r], (double)want[r], bits(want[r]));
		}
	}
}

static void check_ops(struct check *c, const struct pf_hparams *hp)
{
	enum { N = 67, CTX = 37, NQ = 2, BS = 16 };
	float g[N], u[N], o0[N], o1[N];

	fill(g, N, 7);
	fill(u, N, 8);
	for (int i = 0; i < N; i++)
		g[i] *= 12.0f;
	pf_cpu_swiglu(o0, g, u, N, PF_ISA_SCALAR);
	pf_cpu_swiglu(o1, g, u, N, c->isa);
	for (int i = 0; i < N; i++, c->compared++)
		if (bits(o0[i]) != bits(o1[i]))
			failf(c, "swiglu [%d]: %.9g, scalar reference %.9g", i, (double)o1[i], (double)o0[i]);

	const int32_t hd = hp->head_dim;
	if (hd <= 0 || hd % 8 || hd > 1024)
		return;
	const int32_t nblk = (CTX + BS - 1) / BS, table[3] = { 2, 0, 1 };
	const size_t scratch = pf_cpu_attention_scratch(NQ, CTX, hd);
	uint16_t *kv = calloc((size_t)2 * 3 * BS * hd, sizeof(uint16_t));
	float *q = malloc(sizeof(float) * NQ * hd), *scr = malloc(sizeof(float) * scratch);
	float *r0 = malloc(sizeof(float) * NQ * hd), *r1 = malloc(sizeof(float) * NQ * hd);
	float *tmp = malloc(sizeof(float) * (size_t)3 * BS * hd * 2);
	if (!kv || !q || !scr || !r0 || !r1 || !tmp || nblk > 3) {
		failf(c, "attention: out of memory for the check");
		goto out;
	}
	fill(q, NQ * hd, 9);
	fill(tmp, (int64_t)3 * BS * hd * 2, 10);
	pf_cpu_store_kv(kv, tmp, 3 * BS * hd * 2, PF_DT_F16);
	for (int single = 0; single < 2; single++) {
		struct pf_attn_args a = {
			.q = q, .out = r0, .k_base = kv, .v_base = kv + (size_t)3 * BS * hd, .kv_dtype = PF_DT_F16,
			.kvh = 0, .n_head_kv = 1, .head_dim = hd, .block_size = BS, .n_q = NQ, .table = table,
			.n_ctx = CTX, .scale = 1.0f / sqrtf((float)hd), .scratch = scr, .isa = PF_ISA_SCALAR,
			.single = single,
		};
		pf_cpu_attention(&a);
		a.out = r1;
		a.isa = c->isa;
		pf_cpu_attention(&a);
		for (int i = 0; i < NQ * hd; i++, c->compared++)
			if (bits(r0[i]) != bits(r1[i]))
				failf(c, "attention (head_dim %d, %s order) [%d]: %.9g, scalar reference %.9g", hd,
				      single ? "decode" : "prefill", i, (double)r1[i], (double)r0[i]);
	}
out:
	free(kv), free(q), free(scr), free(r0), free(r1), free(tmp);
}

static void run_check(struct check *c, const struct pf_model_weights *w)
{
	static const char *names[7] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };
	const struct pf_layer_weights *L = w->hp.n_layer > 0 ? &w->layers[0] : NULL;
	const struct pf_tensor_ref *mats[8] = { 0 };
	int64_t maxn = 1;
	char name[64];

	if (L) {
		const struct pf_tensor_ref *m[7] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
		memcpy(mats, m, sizeof(m));
	}
	mats[7] = &w->output;
	for (int i = 0; i < 8; i++)
		if (mats[i] && mats[i]->ne0 > maxn)
			maxn = mats[i]->ne0;
	float *x = malloc(sizeof(float) * (size_t)maxn);
	/* the largest activation row of any format: F32, 4 bytes an element */
	void *a0 = malloc((size_t)maxn * 4 + 64), *a1 = malloc((size_t)maxn * 4 + 64);
	if (!x || !a0 || !a1) {
		failf(c, "out of memory for the check");
		goto out;
	}
	for (int i = 0; i < 8; i++) {
		if (!mats[i])
			continue;
		snprintf(name, sizeof(name), i < 7 ? "blk.0.%s" : "output", i < 7 ? names[i] : "");
		check_matrix(c, mats[i], name, x, a0, a1);
	}
	check_ops(c, &w->hp);
out:
	free(x), free(a0), free(a1);
}

static enum pf_isa next_down(enum pf_isa isa)
{
	switch (isa) {
	case PF_ISA_AVX512EMU:
	case PF_ISA_AVX512VNNI: return PF_ISA_AVX2;
	default: return PF_ISA_SCALAR;
	}
}

enum pf_isa pf_cpu_selfcheck(const struct pf_model_weights *w, enum pf_isa want, char *verdict, size_t len)
{
	struct timespec t0, t1;
	size_t off = 0;
	enum pf_isa isa = want;

	verdict[0] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (isa != PF_ISA_SCALAR) {
		struct check c = { .isa = isa };
		run_check(&c, w);
		if (!c.fail[0]) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			snprintf(verdict + off, len - off,
				 "%s kernels bit-identical to the scalar reference on %ld results from this model's weights (%.1f ms)",
				 pf_isa_name(isa), c.compared,
				 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
			return isa;
		}
		off += (size_t)snprintf(verdict + off, len - off, "%s FAILED (%s); ", pf_isa_name(isa), c.fail);
		if (off >= len)
			off = len - 1;
		isa = next_down(isa);
	}
	snprintf(verdict + off, len - off, "%s", want == PF_ISA_SCALAR ? "scalar reference (nothing to check)"
								      : "falling back to the scalar reference");
	return PF_ISA_SCALAR;
}
