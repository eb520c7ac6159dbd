/* model.c — hyper-parameters and weight tensors from GGUF; see model.h. */
#include "runtime/model/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dtype.h"

struct loader {
	const struct pf_gguf *g;
	const char *arch;
	char *err;
	size_t errlen;
};

static int get_u32(struct loader *L, const char *field, uint32_t *v, bool required)
{
	char key[128];
	snprintf(key, sizeof(key), "%s.%s", L->arch, field);
	int r = pf_gguf_get_u32(L->g, key, v);
	if (r == -ENOENT && !required)
		return 0;
	if (r)
		snprintf(L->err, L->errlen, "%s: metadata '%s' is %s", L->g->path, key,
			 r == -ENOENT ? "missing" : "not an unsigned integer");
	return r;
}

static int get_f32(struct loader *L, const char *field, float *v)
{
	char key[128];
	snprintf(key, sizeof(key), "%s.%s", L->arch, field);
	int r = pf_gguf_get_f32(L->g, key, v);
	if (r == -ENOENT)
		return 0;
	if (r)
		snprintf(L->err, L->errlen, "%s: metadata '%s' is not a float", L->g->path, key);
	return r;
}

/* Find tensor `name`, check its type is one we compute with (or F32 when
 * `f32_only`) and its shape is (ne1, ne0). */
static int tensor(struct loader *L, const char *name, int64_t ne0, int64_t ne1, bool f32_only, bool optional,
		  struct pf_tensor_ref *ret)
{
	const struct pf_gguf_tensor *t = pf_gguf_find_tensor(L->g, name);
	memset(ret, 0, sizeof(*ret));
	if (!t) {
		if (optional)
			return 0;
		snprintf(L->err, L->errlen, "%s: tensor '%s' is missing", L->g->path, name);
		return -EINVAL;
	}
	if (f32_only ? t->type != PF_DT_F32 : !pf_dtype_supported(t->type)) {
		snprintf(L->err, L->errlen, "%s: tensor '%s' has type %s, which pinfer cannot compute with (%s)",
			 L->g->path, name, pf_dtype_name(t->type),
			 f32_only ? "F32 expected" : "supported: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q4_K Q6_K");
		return -ENOTSUP;
	}
	int64_t got1 = (int64_t)(t->n_elems / (t->ne[0] ? t->ne[0] : 1));
	if ((int64_t)t->ne[0] != ne0 || got1 != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
		snprintf(L->err, L->errlen, "%s: tensor '%s' has shape %llu x %llu x %llu x %llu, expected %lld x %lld",
			 L->g->path, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
			 (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (long long)ne0, (long long)ne1);
		return -EINVAL;
	}
	ret->type = t->type;
	ret->ne0 = ne0;
	ret->ne1 = ne1;
	ret->row_bytes = pf_dtype_row_bytes(t->type, (uint64_t)ne0);
	ret->data = t->data;
	return 0;
}

static int load_hparams(struct loader *L, struct pf_model *m)
{
	struct pf_hparams *hp = &m->w.hp;
	uint32_t n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0, n_ctx = 0, key_len = 0, n_rot = 0;
	int r = get_u32(L, "embedding_length", &n_embd, true) ?: get_u32(L, "block_count", &n_layer, true) ?:
		get_u32(L, "attention.head_count", &n_head, true) ?: get_u32(L, "feed_forward_length", &n_ff, true) ?:
		get_u32(L, "context_length", &n_ctx, true) ?: get_u32(L, "attention.head_count_kv", &n_head_kv, false) ?:
		get_u32(L, "attention.key_length", &key_len, false) ?: get_u32(L, "rope.dimension_count", &n_rot, false);
	if (r)
		return r;
	if (!n_head_kv)
		n_head_kv = n_head;
	hp->rope_base = 10000.0f;
	hp->norm_eps = 1e-5f;
	r = get_f32(L, "rope.freq_base", &hp->rope_base) ?: get_f32(L, "attention.layer_norm_rms_epsilon", &hp->norm_eps);
	if (r)
		return r;
	/* sane bounds keep every later size computation far from overflow */
	if (!n_embd || n_embd > 65536 || !n_layer || n_layer > 1024 || !n_head || n_head > 1024 ||
	    n_head_kv > n_head || n_head % n_head_kv || !n_ff || n_ff > 1 << 20 || !n_ctx) {
		snprintf(L->err, L->errlen, "%s: implausible hyper-parameters (embd %u, layers %u, heads %u/%u, ff %u, ctx %u)",
			 L->g->path, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx);
		return -EINVAL;
	}
	uint32_t hd = key_len ? key_len : n_embd / n_head;
	if (!key_len && n_embd % n_head) {
		snprintf(L->err, L->errlen, "%s: embedding length %u is not a multiple of %u heads", L->g->path, n_embd, n_head);
		return -EINVAL;
	}
	if (!n_rot)
		n_rot = hd;
	if (n_rot > hd || n_rot % 2 || hd > 1024) {
		snprintf(L->err, L->errlen, "%s: rope dimension %u does not fit head size %u", L->g->path, n_rot, hd);
		return -EINVAL;
	}
	hp->n_embd = (int32_t)n_embd;
	hp->n_layer = (int32_t)n_layer;
	hp->n_head = (int32_t)n_head;
	hp->n_head_kv = (int32_t)n_head_kv;
	hp->head_dim = (int32_t)hd;
	hp->n_ff = (int32_t)n_ff;
	hp->n_ctx_train = n_ctx > INT32_MAX ? INT32_MAX : (int32_t)n_ctx;
	hp->n_rot = (int32_t)n_rot;
	return 0;
}

int pf_model_from_gguf(struct pf_gguf *g, struct pf_model **ret, char *err, size_t errlen)
{
	struct loader L = { .g = g, .err = err, .errlen = errlen };
	struct pf_gguf_str arch;
	struct pf_model *m;
	char name[96];
	int r;

	if (pf_gguf_get_str(g, "general.architecture", &arch)) {
		snprintf(err, errlen, "%s: metadata 'general.architecture' is missing", g->path);
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	snprintf(m->arch_name, sizeof(m->arch_name), "%.*s", (int)(arch.len < 31 ? arch.len : 31), arch.ptr);
	if (!strcmp(m->arch_name, "llama")) {
		m->w.hp.arch = PF_ARCH_LLAMA;
	} else if (!strcmp(m->arch_name, "qwen2")) {
		m->w.hp.arch = PF_ARCH_QWEN2;
		m->w.hp.rope_neox = true;
	} else {
		snprintf(err, errlen, "%s: architecture '%s' is not supported (llama, qwen2)", g->path, m->arch_name);
		r = -ENOTSUP;
		goto fail;
	}
	struct pf_gguf_str gname;
	if (!pf_gguf_get_str(g, "general.name", &gname))
		snprintf(m->name, sizeof(m->name), "%.*s", (int)(gname.len < 127 ? gname.len : 127), gname.ptr);
	L.arch = m->arch_name;
	r = load_hparams(&L, m);
	if (r)
		goto fail;

	struct pf_hparams *hp = &m->w.hp;
	const struct pf_gguf_tensor *te = pf_gguf_find_tensor(g, "token_embd.weight");
	if (!te || te->ne[0] != (uint64_t)hp->n_embd || te->n_dims != 2 || te->ne[1] > (1u << 24) || !te->ne[1]) {
		snprintf(err, errlen, "%s: tensor 'token_embd.weight' is missing or not (n_vocab, %d)", g->path, hp->n_embd);
		r = -EINVAL;
		goto fail;
	}
	hp->n_vocab = (int32_t)te->ne[1];
	int64_t E = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_head_kv * hp->head_dim;
	r = tensor(&L, "token_embd.weight", E, hp->n_vocab, false, false, &m->w.tok_embd) ?:
	    tensor(&L, "output_norm.weight", E, 1, true, false, &m->w.out_norm) ?:
	    tensor(&L, "output.weight", E, hp->n_vocab, false, true, &m->w.output) ?:
	    tensor(&L, "rope_freqs.weight", hp->n_rot / 2, 1, true, true, &m->w.rope_freqs);
	if (r)
		goto fail;
	if (!m->w.output.data)
		m->w.output = m->w.tok_embd; /* tied embeddings */
	m->w.layers = calloc((size_t)hp->n_layer, sizeof(*m->w.layers));
	if (!m->w.layers) {
		r = -ENOMEM;
		goto fail;
	}
	bool bias = hp->arch == PF_ARCH_QWEN2;
	for (int32_t l = 0; l < hp->n_layer && !r; l++) {
		struct pf_layer_weights *Lw = &m->w.layers[l];
#define T(field, suffix, ne0, ne1, f32, opt) \
	(snprintf(name, sizeof(name), "blk.%d." suffix, l), tensor(&L, name, ne0, ne1, f32, opt, &Lw->field))
		r = T(attn_norm, "attn_norm.weight", E, 1, true, false) ?:
		    T(wq, "attn_q.weight", E, qd, false, false) ?:
		    T(wk, "attn_k.weight", E, kvd, false, false) ?:
		    T(wv, "attn_v.weight", E, kvd, false, false) ?:
		    T(wo, "attn_output.weight", qd, E, false, false) ?:
		    T(bq, "attn_q.bias", qd, 1, true, !bias) ?:
		    T(bk, "attn_k.bias", kvd, 1, true, !bias) ?:
		    T(bv, "attn_v.bias", kvd, 1, true, !bias) ?:
		    T(ffn_norm, "ffn_norm.weight", E, 1, true, false) ?:
		    T(w_gate, "ffn_gate.weight", E, hp->n_ff, false, false) ?:
		    T(w_up, "ffn_up.weight", E, hp->n_ff, false, false) ?:
		    T(w_down, "ffn_down.weight", hp->n_ff, E, false, false);
#undef T
	}
	if (r)
		goto fail;
	m->gguf = g;
	*ret = m;
	return 0;
fail:
	free(m->w.layers);
	free(m);
	return r;
}

int pf_model_load(const char *path, struct pf_model **ret, char *err, size_t errlen)
{
	struct pf_gguf *g;
	int r = pf_gguf_open(path, &g, err, errlen);
	if (r)
		return r;
	r = pf_model_from_gguf(g, ret, err, errlen);
	if (r)
		pf_gguf_close(g);
	return r;
}

void pf_model_free(struct pf_model *m)
{
	if (!m)
		return;
	pf_gguf_close(m->gguf);
	free(m->w.layers);
	free(m);
}
