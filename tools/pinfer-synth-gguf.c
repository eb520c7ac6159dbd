/*
 * pinfer-synth-gguf — write a GGUF model with random weights for any
 * llama-family shape.
 *
 * Throughput depends on the shapes and types of the weights, not on their
 * values, so a file with the tensors of Llama-3-8B (names, shapes, types,
 * byte layout) measures what the real one would without downloading it.
 * The output is a GGUF v3 file that runtime/model/gguf.c, runtime/model/model.c and the
 * tokenizer load like any llama.cpp conversion: the same metadata keys and
 * tensor names, dims in ggml order (ne0 = row length), every tensor's data
 * at a multiple of general.alignment (32).  It generates nonsense text.
 *
 * Values: F32/F16/BF16 weights are drawn from N(0, 0.02) (through a
 * 65536-entry table of normal samples, so a 16 GB file is quick to make);
 * quantized weights are blocks of uniformly random quants whose f16 scales
 * give about the same spread; norm weights are 1 ± 0.02.  That keeps a
 * forward pass of any depth far from overflow in F16.  Each tensor has its
 * own PRNG stream (xoshiro256** keyed by --seed and the tensor's index), so
 * the same options and seed give the same file byte for byte.
 *
 * Types: --type for the seven matrices of each block; norms always F32;
 * the output matrix (output.weight, or token_embd.weight when tied) by
 * llama-quantize's rule — Q6_K for a quantized --type, Q8_0 when --type is
 * q8_0 or rows are not a multiple of 256 — so that, e.g., the smollm2-135m
 * preset at q4_1 has exactly the tensor bytes of the real SmolLM2 Q4_1
 * file; an untied token_embd.weight has --type.  --embd-type and
 * --output-type override both.
 *
 * The tokenizer is byte-level BPE (tokenizer.ggml.model "gpt2", pre
 * "smollm"): <|endoftext|>, <|im_start|>, <|im_end|> (ids 0-2, bos 1,
 * eos 2), the 256 byte tokens in GPT-2's byte-to-unicode mapping, then
 * merged pairs of bytes (frequent English characters first) and triples
 * up to --vocab, each with its merge; plus a plain ChatML chat template.
 *
 * The file is written front to back, tensor by tensor, from one 8 MiB
 * buffer: nothing is held in memory but the header (a few MB of tokenizer
 * metadata), whatever the model size.  Space is reserved up front with
 * fallocate(2) where the filesystem has it, so a full disk is reported
 * before anything is written.  The file is written under a temporary name
 * and renamed into place, so it never replaces a model half-written.
 *
 * It needs nothing but libc and libm, so it builds where the rest of
 * pinfer's dependencies are missing (a bare GPU machine):
 *
 *     cc -std=gnu11 -O2 -I. tools/pinfer-synth-gguf.c kernels/dtype.c -lm -o pinfer-synth-gguf
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* fallocate(2) */
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "kernels/dtype.h"

#define PROG "pinfer-synth-gguf"
#define GGUF_ALIGN 32
#define WEIGHT_STD 0.02
#define CHUNK_BYTES (8u << 20)
#define N_SPECIAL 3
#define MIN_VOCAB (N_SPECIAL + 256)
#define MAX_VOCAB (1u << 22)

/* ---- shapes -------------------------------------------------------------- */

struct synth_shape {
	const char *name;
	const char *what; /* the model whose shape this is, for --help */
	uint32_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
	float rope_base, norm_eps;
	bool tied; /* no output.weight: the output projection is token_embd.weight */
};

/* Shapes from each model's config.json.  tiny keeps hidden and ff multiples
 * of 256 so that every --type, k-quants included, applies to it. */
static const struct synth_shape presets[] = {
	{ "tiny", "for tests", 2, 256, 4, 2, 512, 512, 512, 10000.0f, 1e-5f, false },
	{ "smollm2-135m", "SmolLM2-135M", 30, 576, 9, 3, 1536, 49152, 8192, 100000.0f, 1e-5f, true },
	{ "llama3-1b", "Llama-3.2-1B", 16, 2048, 32, 8, 8192, 128256, 131072, 500000.0f, 1e-5f, true },
	{ "llama3-8b", "Llama-3-8B", 32, 4096, 32, 8, 14336, 128256, 8192, 500000.0f, 1e-5f, false },
	{ "llama2-7b", "Llama-2-7B", 32, 4096, 32, 32, 11008, 32000, 4096, 10000.0f, 1e-5f, false },
	{ "llama3-70b", "Llama-3-70B", 80, 8192, 64, 8, 28672, 128256, 8192, 500000.0f, 1e-5f, false },
};
#define N_PRESETS (sizeof(presets) / sizeof(presets[0]))

/* The weight types the engine computes with (dtype.c's pf_dtype_supported). */
static const uint32_t weight_types[] = {
	PF_DT_F32, PF_DT_F16, PF_DT_BF16, PF_DT_Q8_0, PF_DT_Q4_0, PF_DT_Q4_1, PF_DT_Q4_K, PF_DT_Q6_K,
};

struct options {
	struct synth_shape s;
	const char *preset;
	uint32_t type, embd_type, output_type; /* UINT32_MAX: not given (auto) */
	bool embd_given;
	uint64_t seed;
	const char *out;
	bool dry_run, quiet;
};

/* ---- PRNG: splitmix64 to seed xoshiro256** -------------------------------- */

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull);
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

/* uniform in (0, 1] */
static double rng_unit(struct rng *r)
{
	return (double)((rng_next(r) >> 11) + 1) * 0x1.0p-53;
}

static void rng_bytes(struct rng *r, uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t v = rng_next(r);
		memcpy(p, &v, 8);
		p += 8;
		n -= 8;
	}
	if (n) {
		uint64_t v = rng_next(r);
		memcpy(p, &v, n);
	}
}

/* ---- float formats ------------------------------------------------------- */

/* IEEE half, round to nearest even, subnormals kept (the smallest quant
 * scales are near the bottom of the normal range). */
static uint16_t f32_to_f16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	x &= 0x7fffffff;
	if (x >= 0x7f800000)
		return sign | 0x7c00 | (x > 0x7f800000 ? 0x200 : 0);
	if (x >= 0x477ff000) /* rounds past 65504 */
		return sign | 0x7c00;
	if (x < 0x38800000) { /* below 2^-14: a half subnormal, in units of 2^-24 */
		if (x < 0x33000000)
			return sign;
		uint32_t mant = (x & 0x7fffff) | 0x800000, shift = 126 - (x >> 23);
		uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (h & 1)))
			h++;
		return sign | (uint16_t)h;
	}
	uint32_t h = (x - 0x38000000) >> 13, rem = x & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++;
	return sign | (uint16_t)h;
}

static uint16_t f32_to_bf16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

static float f16_to_f32(uint16_t h)
{
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
	float v = e ? ldexpf((float)(m | 0x400), (int)e - 25) : ldexpf((float)m, -24);
	return h & 0x8000 ? -v : v;
}

/* ---- value generators ------------------------------------------------------ */

/*
 * Tables every tensor's generator indexes with random bits, built once per
 * run from the seed: normal samples in each float format, and per-block
 * scales for each quantized format (a spread of 0.75-1.25 around the scale
 * that gives WEIGHT_STD).
 */
struct tables {
	float *f32;    /* [65536] N(0, WEIGHT_STD) */
	uint16_t *f16; /* [65536] the same as half */
	uint16_t *bf16;
	uint16_t q8_0_d[256], q4_0_d[256], q4_1_d[256], q4_1_m[256];
	uint16_t q4_K_d[256], q4_K_dmin[256], q6_K_d[256];
};

/*
 * Standard deviations of the quants as drawn below: uniform int8 in
 * [-127, 127]; q - 8 for q uniform in [0, 15]; 6-bit q - 32.  Sub-block
 * scales: Q4_K in [40, 63] (mean 51.5), Q6_K in [8, 15] (mean 11.5).
 */
#define SD_Q8 73.6
#define SD_Q4 4.61
#define SD_Q6 18.5
#define Q4K_SC_LO 40
#define Q6K_SC_LO 8

static int tables_init(struct tables *t, uint64_t seed)
{
	struct rng r;
	rng_seed(&r, seed, UINT64_MAX);
	t->f32 = malloc(65536 * sizeof(float));
	t->f16 = malloc(65536 * sizeof(uint16_t));
	t->bf16 = malloc(65536 * sizeof(uint16_t));
	if (!t->f32 || !t->f16 || !t->bf16)
		return -ENOMEM;
	for (int i = 0; i < 65536; i += 2) { /* Box-Muller: two samples per pair */
		double rad = sqrt(-2.0 * log(rng_unit(&r))), th = 2.0 * M_PI * rng_unit(&r);
		t->f32[i] = (float)(WEIGHT_STD * rad * cos(th));
		t->f32[i + 1] = (float)(WEIGHT_STD * rad * sin(th));
	}
	for (int i = 0; i < 65536; i++) {
		t->f16[i] = f32_to_f16(t->f32[i]);
		t->bf16[i] = f32_to_bf16(t->f32[i]);
	}
	for (int i = 0; i < 256; i++) {
		double j = 0.75 + 0.5 * (double)i / 255.0;
		t->q8_0_d[i] = f32_to_f16((float)(j * WEIGHT_STD / SD_Q8));
		t->q4_0_d[i] = f32_to_f16((float)(j * WEIGHT_STD / SD_Q4));
		t->q4_1_d[i] = t->q4_0_d[i];
		/* the min centres the quants' mean 7.5 on zero */
		t->q4_1_m[i] = f32_to_f16(-7.5f * f16_to_f32(t->q4_1_d[i]));
		t->q4_K_d[i] = f32_to_f16((float)(j * WEIGHT_STD / (SD_Q4 * (Q4K_SC_LO + 11.5))));
		/* dmin = 8 d keeps the mins (about 7.5 sc / 8) within 6 bits */
		t->q4_K_dmin[i] = f32_to_f16(8.0f * f16_to_f32(t->q4_K_d[i]));
		t->q6_K_d[i] = f32_to_f16((float)(j * WEIGHT_STD / (SD_Q6 * (Q6K_SC_LO + 3.5))));
	}
	return 0;
}

static void tables_fini(struct tables *t)
{
	free(t->f32);
	free(t->f16);
	free(t->bf16);
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

/* 16-bit samples four at a time from one 64-bit draw */
static void gen_u16(struct rng *r, const uint16_t *tab, uint8_t *out, uint64_t n)
{
	uint16_t *o = (uint16_t *)(void *)out;
	uint64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		uint64_t v = rng_next(r);
		o[i] = tab[v & 0xffff];
		o[i + 1] = tab[(v >> 16) & 0xffff];
		o[i + 2] = tab[(v >> 32) & 0xffff];
		o[i + 3] = tab[v >> 48];
	}
	for (uint64_t v = rng_next(r); i < n; i++, v >>= 16)
		o[i] = tab[v & 0xffff];
}

static void gen_f32(struct rng *r, const float *tab, float add, uint8_t *out, uint64_t n)
{
	float *o = (float *)(void *)out;
	uint64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		uint64_t v = rng_next(r);
		o[i] = add + tab[v & 0xffff];
		o[i + 1] = add + tab[(v >> 16) & 0xffff];
		o[i + 2] = add + tab[(v >> 32) & 0xffff];
		o[i + 3] = add + tab[v >> 48];
	}
	for (uint64_t v = rng_next(r); i < n; i++, v >>= 16)
		o[i] = add + tab[v & 0xffff];
}

/* Q4_K's 12 scale bytes from 8 six-bit scales and 8 six-bit mins (the
 * inverse of ggml's get_scale_min_k4). */
static void pack_q4_K_scales(const uint8_t sc[8], const uint8_t mn[8], uint8_t q[12])
{
	for (int j = 0; j < 4; j++) {
		q[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
		q[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
		q[j + 8] = (uint8_t)((sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4));
	}
}

/* `nb` blocks (elements for plain types) of type `type` into `out`. */
static void gen_blocks(struct rng *r, const struct tables *t, uint32_t type, uint8_t *out, uint64_t nb)
{
	switch (type) {
	case PF_DT_F32: gen_f32(r, t->f32, 0.0f, out, nb); return;
	case PF_DT_F16: gen_u16(r, t->f16, out, nb); return;
	case PF_DT_BF16: gen_u16(r, t->bf16, out, nb); return;
	default: break;
	}
	const uint32_t bb = pf_dtype_info(type)->block_bytes;
	for (uint64_t b = 0; b < nb; b++, out += bb) {
		uint64_t v = rng_next(r);
		switch (type) {
		case PF_DT_Q8_0:
			put16(out, t->q8_0_d[v & 0xff]);
			rng_bytes(r, out + 2, 32);
			/* -128 has no positive twin: sign tricks in int8 dot kernels wrap on it */
			for (int i = 2; i < 34; i++)
				if (out[i] == 0x80)
					out[i] = 0x81;
			break;
		case PF_DT_Q4_0:
			/* q - 8 averages -1/2: a random sign on d centres the weights */
			put16(out, (uint16_t)(t->q4_0_d[v & 0xff] | ((v >> 8) & 1) << 15));
			rng_bytes(r, out + 2, 16);
			break;
		case PF_DT_Q4_1:
			put16(out, t->q4_1_d[v & 0xff]);
			put16(out + 2, t->q4_1_m[v & 0xff]);
			rng_bytes(r, out + 4, 16);
			break;
		case PF_DT_Q4_K: {
			uint8_t sc[8], mn[8];
			put16(out, t->q4_K_d[v & 0xff]);
			put16(out + 2, t->q4_K_dmin[v & 0xff]);
			v >>= 8;
			for (int j = 0; j < 8; j++, v >>= 5) {
				sc[j] = (uint8_t)(Q4K_SC_LO + (v & 0x1f) % 24);
				mn[j] = (uint8_t)((sc[j] * 15 + 8) / 16); /* d·sc·7.5 ≈ dmin·mn: mean zero */
			}
			pack_q4_K_scales(sc, mn, out + 4);
			rng_bytes(r, out + 16, 128);
			break;
		}
		case PF_DT_Q6_K:
			rng_bytes(r, out, 128 + 64);
			for (int j = 0; j < 16; j++, v >>= 3)
				out[192 + j] = (uint8_t)(Q6K_SC_LO + (v & 7));
			v = rng_next(r); /* q - 32 averages -1/2, as for Q4_0 */
			put16(out + 208, (uint16_t)(t->q6_K_d[v & 0xff] | ((v >> 8) & 1) << 15));
			break;
		default:
			abort(); /* plan() admits only the types above */
		}
	}
}

/* ---- the plan: every tensor's name, shape, type and place ---------------- */

enum fill { FILL_WEIGHT, FILL_NORM };

struct tensor {
	char name[48];
	uint32_t n_dims, type;
	uint64_t ne[2];
	uint64_t offset; /* from the start of the data section */
	uint64_t size;
	enum fill fill;
};

struct plan {
	struct tensor *t;
	uint32_t n;
	uint64_t data_bytes; /* data section, with padding */
	uint64_t n_params;
};

static uint64_t align_up(uint64_t x)
{
	return (x + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
}

static void add_tensor(struct plan *p, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1, enum fill fill)
{
	struct tensor *t = &p->t[p->n++];
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->type = type;
	t->n_dims = ne1 ? 2 : 1;
	t->ne[0] = ne0;
	t->ne[1] = ne1 ? ne1 : 1;
	t->fill = fill;
	t->size = pf_dtype_row_bytes(type, ne0) * t->ne[1];
	t->offset = align_up(p->data_bytes);
	p->data_bytes = t->offset + t->size;
	p->n_params += ne0 * t->ne[1];
}

/* Tensors in llama.cpp's order: embeddings, each block, the output. */
static int plan_build(const struct options *o, struct plan *p)
{
	const struct synth_shape *s = &o->s;
	uint64_t E = s->n_embd, F = s->n_ff, V = s->n_vocab;
	uint64_t kvd = (uint64_t)s->n_head_kv * (s->n_embd / s->n_head);
	char name[48];

	memset(p, 0, sizeof(*p));
	p->t = calloc((size_t)s->n_layer * 9 + 3, sizeof(*p->t));
	if (!p->t)
		return -ENOMEM;
	add_tensor(p, "token_embd.weight", o->embd_type, E, V, FILL_WEIGHT);
	for (uint32_t l = 0; l < s->n_layer; l++) {
#define T(suffix, type, ne0, ne1, fill) \
	(snprintf(name, sizeof(name), "blk.%" PRIu32 ".%s", l, suffix), add_tensor(p, name, type, ne0, ne1, fill))
		T("attn_norm.weight", PF_DT_F32, E, 0, FILL_NORM);
		T("attn_q.weight", o->type, E, E, FILL_WEIGHT);
		T("attn_k.weight", o->type, E, kvd, FILL_WEIGHT);
		T("attn_v.weight", o->type, E, kvd, FILL_WEIGHT);
		T("attn_output.weight", o->type, E, E, FILL_WEIGHT);
		T("ffn_norm.weight", PF_DT_F32, E, 0, FILL_NORM);
		T("ffn_gate.weight", o->type, E, F, FILL_WEIGHT);
		T("ffn_up.weight", o->type, E, F, FILL_WEIGHT);
		T("ffn_down.weight", o->type, F, E, FILL_WEIGHT);
#undef T
	}
	add_tensor(p, "output_norm.weight", PF_DT_F32, E, 0, FILL_NORM);
	if (!s->tied)
		add_tensor(p, "output.weight", o->output_type, E, V, FILL_WEIGHT);
	return 0;
}

/* ---- the header ------------------------------------------------------------ */

enum { GV_U32 = 4, GV_F32 = 6, GV_BOOL = 7, GV_STR = 8, GV_ARR = 9 };

struct hdr {
	uint8_t *p;
	size_t len, cap;
	uint64_t n_kv;
	bool oom;
};

static void put(struct hdr *h, const void *d, size_t n)
{
	if (h->oom)
		return;
	if (h->len + n > h->cap) {
		size_t cap = h->cap ? h->cap : 1 << 16;
		while (cap < h->len + n)
			cap *= 2;
		uint8_t *np = realloc(h->p, cap);
		if (!np) {
			h->oom = true;
			return;
		}
		h->p = np;
		h->cap = cap;
	}
	memcpy(h->p + h->len, d, n);
	h->len += n;
}

static void put_u32(struct hdr *h, uint32_t v) { put(h, &v, 4); }
static void put_u64(struct hdr *h, uint64_t v) { put(h, &v, 8); }

static void put_str(struct hdr *h, const char *s, size_t n)
{
	put_u64(h, n);
	put(h, s, n);
}

static void kv_key(struct hdr *h, const char *key, uint32_t type)
{
	put_str(h, key, strlen(key));
	put_u32(h, type);
	h->n_kv++;
}

static void kv_u32(struct hdr *h, const char *key, uint32_t v) { kv_key(h, key, GV_U32); put_u32(h, v); }
static void kv_f32(struct hdr *h, const char *key, float v) { kv_key(h, key, GV_F32); put(h, &v, 4); }
static void kv_str(struct hdr *h, const char *key, const char *v) { kv_key(h, key, GV_STR); put_str(h, v, strlen(v)); }

static void kv_bool(struct hdr *h, const char *key, bool v)
{
	uint8_t b = v;
	kv_key(h, key, GV_BOOL);
	put(h, &b, 1);
}

static void kv_arr(struct hdr *h, const char *key, uint32_t elem_type, uint64_t n)
{
	kv_key(h, key, GV_ARR);
	put_u32(h, elem_type);
	put_u64(h, n);
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves,
 * the others for code points 256, 257, … in byte order. */
static uint32_t byte_to_cpt(uint32_t b)
{
	if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
		return b;
	uint32_t n = 0;
	for (uint32_t c = 0; c < b; c++)
		if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff)))
			n++;
	return 256 + n;
}

/* UTF-8 of byte b's stand-in character: 1 or 2 bytes. */
static size_t byte_utf8(uint32_t b, char out[2])
{
	uint32_t c = byte_to_cpt(b);
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	out[0] = (char)(0xc0 | (c >> 6));
	out[1] = (char)(0x80 | (c & 0x3f));
	return 2;
}

/*
 * The vocabulary after the specials and bytes.  Bytes are ranked by how
 * often they occur in English text, so a small --vocab still merges the
 * common letters.  Pair k is (rank i, rank j) in shells of max(i, j):
 * shell s holds (s, 0..s) then (0..s-1, s).  After the 65536 pairs come
 * triples: pair token k/64 followed by byte rank k%64.  Every token is a
 * distinct string (pairs are two bytes, triples three).
 */
struct vocab_gen {
	uint8_t by_rank[256];
	char utf8[256][2]; /* each byte's stand-in character */
	uint8_t utf8_len[256];
};

static void vocab_init(struct vocab_gen *v)
{
	static const char common[] = " etaoinsrhldcumfpgwybvkxjqzETAOINSRHLDCUMFPGWYBVKXJQZ0123456789.,'\"-\n!?:;()";
	bool used[256] = { false };
	size_t n = 0;
	for (const char *c = common; *c; c++) {
		v->by_rank[n++] = (uint8_t)*c;
		used[(uint8_t)*c] = true;
	}
	for (uint32_t b = 0; b < 256; b++) {
		if (!used[b])
			v->by_rank[n++] = (uint8_t)b;
		v->utf8_len[b] = (uint8_t)byte_utf8(b, v->utf8[b]);
	}
}

static size_t put_byte(const struct vocab_gen *v, uint32_t b, char *out)
{
	memcpy(out, v->utf8[b], v->utf8_len[b]);
	return v->utf8_len[b];
}

static void pair_ranks(uint32_t k, uint32_t *i, uint32_t *j)
{
	uint32_t s = (uint32_t)sqrt((double)k);
	while (s * s > k)
		s--;
	while ((s + 1) * (s + 1) <= k)
		s++;
	uint32_t o = k - s * s; /* shell s starts at s², holds 2s + 1 pairs */
	if (o <= s) {
		*i = s;
		*j = o;
	} else {
		*i = o - s - 1;
		*j = s;
	}
}

/* Token `id`'s text (GPT-2 characters) into `out` (at least 16 bytes), and its
 * merge ("A B") into `merge`; returns the text length, sets *mlen (0 for no merge). */
static size_t vocab_token(const struct vocab_gen *v, uint32_t id, char *out, char *merge, size_t *mlen)
{
	static const char *const special[N_SPECIAL] = { "<|endoftext|>", "<|im_start|>", "<|im_end|>" };
	*mlen = 0;
	if (id < N_SPECIAL) {
		strcpy(out, special[id]);
		return strlen(out);
	}
	if (id < MIN_VOCAB)
		return put_byte(v, id - N_SPECIAL, out);
	uint32_t k = id - MIN_VOCAB, i, j;
	size_t la, lb;
	char a[4], b[2];
	if (k < 65536) {
		pair_ranks(k, &i, &j);
		la = put_byte(v, v->by_rank[i], a);
		lb = put_byte(v, v->by_rank[j], b);
	} else {
		k -= 65536;
		pair_ranks(k / 64, &i, &j);
		la = put_byte(v, v->by_rank[i], a);
		la += put_byte(v, v->by_rank[j], a + la);
		lb = put_byte(v, v->by_rank[k % 64], b);
	}
	memcpy(out, a, la);
	memcpy(out + la, b, lb);
	memcpy(merge, a, la);
	merge[la] = ' ';
	memcpy(merge + la + 1, b, lb);
	*mlen = la + 1 + lb;
	return la + lb;
}

static uint32_t file_type(uint32_t t)
{
	switch (t) { /* llama_ftype; a k-quant file with Q6_K output is "Q4_K_S" */
	case PF_DT_F32: return 0;
	case PF_DT_F16: return 1;
	case PF_DT_Q4_0: return 2;
	case PF_DT_Q4_1: return 3;
	case PF_DT_Q8_0: return 7;
	case PF_DT_Q4_K: return 14;
	case PF_DT_Q6_K: return 18;
	case PF_DT_BF16: return 32;
	default: return 0;
	}
}

static bool is_quant(uint32_t t)
{
	return t != PF_DT_F32 && t != PF_DT_F16 && t != PF_DT_BF16;
}

static const char chatml_template[] =
	"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
	"'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* Header, metadata and tensor infos, padded to the data section. */
static int build_header(const struct options *o, const struct plan *p, struct hdr *h)
{
	const struct synth_shape *s = &o->s;
	char buf[256], text[16], merge[24];
	size_t mlen;
	struct vocab_gen vg;

	put(h, "GGUF", 4);
	put_u32(h, 3);
	put_u64(h, p->n);
	put_u64(h, 0); /* n_kv, patched below */

	kv_str(h, "general.architecture", "llama");
	kv_str(h, "general.type", "model");
	snprintf(buf, sizeof(buf), "synthetic %s %s", o->preset, pf_dtype_name(o->type));
	kv_str(h, "general.name", buf);
	snprintf(buf, sizeof(buf),
		 "random weights written by " PROG " (seed %" PRIu64 "); shapes and types are real, the text it generates is not",
		 o->seed);
	kv_str(h, "general.description", buf);
	kv_u32(h, "general.file_type", file_type(o->type));
	if (is_quant(o->type))
		kv_u32(h, "general.quantization_version", 2);
	kv_u32(h, "general.alignment", GGUF_ALIGN);
	kv_u32(h, "llama.block_count", s->n_layer);
	kv_u32(h, "llama.context_length", s->n_ctx);
	kv_u32(h, "llama.embedding_length", s->n_embd);
	kv_u32(h, "llama.feed_forward_length", s->n_ff);
	kv_u32(h, "llama.attention.head_count", s->n_head);
	kv_u32(h, "llama.attention.head_count_kv", s->n_head_kv);
	kv_f32(h, "llama.rope.freq_base", s->rope_base);
	kv_f32(h, "llama.attention.layer_norm_rms_epsilon", s->norm_eps);
	kv_u32(h, "llama.rope.dimension_count", s->n_embd / s->n_head);
	kv_u32(h, "llama.vocab_size", s->n_vocab);

	vocab_init(&vg);
	kv_str(h, "tokenizer.ggml.model", "gpt2");
	kv_str(h, "tokenizer.ggml.pre", "smollm");
	kv_arr(h, "tokenizer.ggml.tokens", GV_STR, s->n_vocab);
	for (uint32_t id = 0; id < s->n_vocab; id++) {
		size_t n = vocab_token(&vg, id, text, merge, &mlen);
		put_str(h, text, n);
	}
	kv_arr(h, "tokenizer.ggml.token_type", 5 /* i32 */, s->n_vocab);
	for (uint32_t id = 0; id < s->n_vocab; id++)
		put_u32(h, id < N_SPECIAL ? 3 /* control */ : 1 /* normal */);
	kv_arr(h, "tokenizer.ggml.merges", GV_STR, s->n_vocab - MIN_VOCAB);
	for (uint32_t id = MIN_VOCAB; id < s->n_vocab; id++) {
		vocab_token(&vg, id, text, merge, &mlen);
		put_str(h, merge, mlen);
	}
	kv_u32(h, "tokenizer.ggml.bos_token_id", 1);
	kv_u32(h, "tokenizer.ggml.eos_token_id", 2);
	kv_u32(h, "tokenizer.ggml.unknown_token_id", 0);
	kv_u32(h, "tokenizer.ggml.padding_token_id", 2);
	kv_bool(h, "tokenizer.ggml.add_bos_token", false);
	kv_bool(h, "tokenizer.ggml.add_space_prefix", false);
	kv_str(h, "tokenizer.chat_template", chatml_template);

	for (uint32_t i = 0; i < p->n; i++) {
		const struct tensor *t = &p->t[i];
		put_str(h, t->name, strlen(t->name));
		put_u32(h, t->n_dims);
		for (uint32_t d = 0; d < t->n_dims; d++)
			put_u64(h, t->ne[d]);
		put_u32(h, t->type);
		put_u64(h, t->offset);
	}
	static const uint8_t zeros[GGUF_ALIGN];
	put(h, zeros, (size_t)(align_up(h->len) - h->len));
	if (h->oom)
		return -ENOMEM;
	memcpy(h->p + 16, &h->n_kv, 8);
	return 0;
}

/* ---- writing ---------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One tensor's data, chunk by chunk; `stream` keys its PRNG. */
static int write_tensor(int fd, const struct tensor *t, const struct tables *tab, uint64_t seed, uint64_t stream,
			uint8_t *buf)
{
	const struct pf_dtype_info *ti = pf_dtype_info(t->type);
	uint64_t total = t->size / ti->block_bytes, per = CHUNK_BYTES / ti->block_bytes;
	struct rng r;
	rng_seed(&r, seed, stream);
	for (uint64_t done = 0; done < total;) {
		uint64_t nb = total - done < per ? total - done : per;
		if (t->fill == FILL_NORM) /* norms scale the activations: 1 + N(0, 0.02) */
			gen_f32(&r, tab->f32, 1.0f, buf, nb);
		else
			gen_blocks(&r, tab, t->type, buf, nb);
		int e = write_all(fd, buf, (size_t)(nb * ti->block_bytes));
		if (e)
			return e;
		done += nb;
	}
	return 0;
}

static void human(double bytes, char *out, size_t n)
{
	if (bytes >= 1e9)
		snprintf(out, n, "%.2f GB", bytes / 1e9);
	else if (bytes >= 1e6)
		snprintf(out, n, "%.1f MB", bytes / 1e6);
	else
		snprintf(out, n, "%.1f kB", bytes / 1e3);
}

static int write_file(const struct options *o, const struct plan *p, const struct hdr *h)
{
	uint64_t total = h->len + p->data_bytes, written = h->len;
	struct tables tab = { 0 };
	uint8_t *buf = NULL;
	bool progress = !o->quiet && isatty(2) && total > (256u << 20);
	double t0 = now_s();
	char sz[32];
	/* written beside the target and renamed over it at the end: a pinferd
	 * serving the old file keeps its mapping instead of faulting on a
	 * truncated one, and a failed run leaves no half-written model */
	size_t tl = strlen(o->out) + 32;
	char *tmp = malloc(tl);
	int e, fd = -1;

	if (!tmp) {
		fprintf(stderr, PROG ": out of memory\n");
		return -ENOMEM;
	}
	snprintf(tmp, tl, "%s.tmp.%ld", o->out, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		e = -errno;
		fprintf(stderr, PROG ": cannot create %s: %s\n", tmp, strerror(-e));
		free(tmp);
		return e;
	}
	/* a full disk is better found now than 15 GB in; filesystems without
	 * fallocate (or files that are not regular) simply skip this */
	if (fallocate(fd, 0, 0, (off_t)total) && (errno == ENOSPC || errno == EFBIG)) {
		e = -errno;
		human((double)total, sz, sizeof(sz));
		fprintf(stderr, PROG ": %s: no room for %s (%" PRIu64 " bytes): %s\n", o->out, sz, total, strerror(-e));
		goto fail;
	}
	e = tables_init(&tab, o->seed);
	buf = aligned_alloc(4096, CHUNK_BYTES);
	if (e || !buf) {
		e = -ENOMEM;
		fprintf(stderr, PROG ": out of memory\n");
		goto fail;
	}
	e = write_all(fd, h->p, h->len);
	for (uint32_t i = 0; i < p->n && !e; i++) {
		const struct tensor *t = &p->t[i];
		uint64_t pad = h->len + t->offset - written;
		static const uint8_t zeros[GGUF_ALIGN];
		e = write_all(fd, zeros, (size_t)pad) ?: write_tensor(fd, t, &tab, o->seed, i, buf);
		written += pad + t->size;
		if (progress && !e)
			fprintf(stderr, "\r" PROG ": %5.1f%% (%s)  ", 100.0 * (double)written / (double)total, t->name);
	}
	if (progress)
		fputc('\n', stderr);
	if (e) {
		fprintf(stderr, PROG ": writing %s: %s\n", o->out, strerror(-e));
		goto fail;
	}
	off_t end = lseek(fd, 0, SEEK_CUR);
	if (end >= 0 && (uint64_t)end != total) { /* a bug here, not the disk's */
		fprintf(stderr, PROG ": %s: wrote %lld bytes, planned %" PRIu64 "\n", o->out, (long long)end, total);
		e = -EIO;
		goto fail;
	}
	if (close(fd)) {
		fd = -1;
		e = -errno;
		fprintf(stderr, PROG ": closing %s: %s\n", o->out, strerror(-e));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, o->out)) {
		e = -errno;
		fprintf(stderr, PROG ": renaming %s to %s: %s\n", tmp, o->out, strerror(-e));
		goto fail;
	}
	double dt = now_s() - t0;
	if (!o->quiet) {
		human((double)total, sz, sizeof(sz));
		double np = (double)p->n_params;
		fprintf(stderr, PROG ": wrote %s: %s (%" PRIu64 " bytes), %" PRIu32 " tensors, %.2f %s parameters in %.2f s (%.0f MB/s)\n",
			o->out, sz, total, p->n, np >= 1e9 ? np / 1e9 : np / 1e6, np >= 1e9 ? "G" : "M", dt,
			(double)total / 1e6 / (dt > 0 ? dt : 1e-9));
	}
	free(buf);
	free(tmp);
	tables_fini(&tab);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	free(buf);
	tables_fini(&tab);
	return e;
}

/* ---- options ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n"
		"\n"
		"Write a GGUF model file with random weights in the exact tensor names,\n"
		"shapes, types and layout of a llama-family model, to measure throughput\n"
		"at real model sizes without downloading one.  pinferd and every pinfer\n"
		"tool load it (tokenizer and ChatML template included); the text it\n"
		"generates is nonsense.\n"
		"\n"
		"Shape: a preset, then any field overridden\n"
		"  -p, --preset NAME    one of the presets below (default tiny)\n"
		"      --layers N       transformer blocks\n"
		"      --hidden N       embedding length; a multiple of --heads and of the\n"
		"                       block size of every type used (32, or 256 for q4_k/q6_k)\n"
		"      --heads N        attention heads (head size hidden/heads: even, <= 1024)\n"
		"      --kv-heads N     key/value heads (GQA); divides --heads\n"
		"      --ff N           feed-forward length; a multiple of the --type block size\n"
		"      --vocab N        vocabulary, %u..%u\n"
		"      --ctx N          llama.context_length\n"
		"      --rope-base F    llama.rope.freq_base\n"
		"      --norm-eps F     llama.attention.layer_norm_rms_epsilon\n"
		"      --tied           no output.weight: the output projection is token_embd.weight\n"
		"      --untied         a separate output.weight\n"
		"\n"
		"Types (f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q6_k; any case):\n"
		"      --type T         the attention and feed-forward matrices (default f16)\n"
		"      --embd-type T    token_embd.weight (default: --type; when tied, the\n"
		"                       output type below)\n"
		"      --output-type T  output.weight, or token_embd.weight when tied.  Default:\n"
		"                       what llama-quantize picks: for f32/f16/bf16 --type itself;\n"
		"                       for a quantized --type Q6_K, or Q8_0 when --type is q8_0\n"
		"                       or hidden is not a multiple of 256\n"
		"                       Norm weights are always F32.\n"
		"\n"
		"Output:\n"
		"  -o, --output FILE    the file to write (default synth-PRESET-TYPE.gguf), written\n"
		"                       as FILE.tmp.PID and renamed over FILE once complete\n"
		"  -s, --seed N         PRNG seed (default 0): the same options and seed give the\n"
		"                       same file byte for byte\n"
		"      --dry-run        print the plan (shape, types, exact size) and write nothing\n"
		"  -q, --quiet          no report on stderr\n"
		"  -h, --help           this text\n"
		"\n"
		"Values: F32/F16/BF16 weights ~ N(0, %.2g); quantized blocks hold uniformly\n"
		"random quants with f16 scales for about the same spread; norms ~ 1.  The\n"
		"tokenizer is byte-level BPE: <|endoftext|> <|im_start|> (bos) <|im_end|> (eos),\n"
		"the 256 byte tokens, then merged byte pairs and triples up to --vocab.\n"
		"\n"
		"Presets:\n"
		"  name          model          layers hidden heads kv    ff     vocab    ctx  rope base  embeddings\n",
		MIN_VOCAB, MAX_VOCAB, WEIGHT_STD);
	for (size_t i = 0; i < N_PRESETS; i++) {
		const struct synth_shape *s = &presets[i];
		fprintf(f, "  %-13s %-14s %6u %6u %5u %3u %6u %8u %6u %10g  %s\n", s->name, s->what, s->n_layer, s->n_embd,
			s->n_head, s->n_head_kv, s->n_ff, s->n_vocab, s->n_ctx, (double)s->rope_base,
			s->tied ? "tied" : "untied");
	}
	fprintf(f,
		"\n"
		"Example: the Llama-3-8B shape at Q4_K (4.6 GB) and at F16 (16 GB):\n"
		"  " PROG " --preset llama3-8b --type q4_k -o /tmp/llama3-8b-q4_k.gguf\n"
		"  " PROG " --preset llama3-8b --type f16 -o /tmp/llama3-8b-f16.gguf\n"
		"\n"
		"Exit status: 0 written, 1 could not write, 2 bad options.\n");
}

static int parse_u32(const char *s, const char *what, uint32_t lo, uint32_t hi, uint32_t *ret)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi) {
		fprintf(stderr, PROG ": %s wants an integer in [%" PRIu32 ", %" PRIu32 "], got '%s'\n", what, lo, hi, s);
		return -EINVAL;
	}
	*ret = (uint32_t)v;
	return 0;
}

static int parse_pos_float(const char *s, const char *what, float *ret)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > 1e30) {
		fprintf(stderr, PROG ": %s wants a positive number, got '%s'\n", what, s);
		return -EINVAL;
	}
	*ret = (float)v;
	return 0;
}

static int parse_type(const char *s, const char *what, uint32_t *ret)
{
	for (size_t i = 0; i < sizeof(weight_types) / sizeof(weight_types[0]); i++)
		if (!strcasecmp(s, pf_dtype_name(weight_types[i]))) {
			*ret = weight_types[i];
			return 0;
		}
	fprintf(stderr, PROG ": %s '%s' is not a weight type pinfer computes with (f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q6_k)\n",
		what, s);
	return -EINVAL;
}

/* Shape rules of model.c and of the types' blocks, with what to change. */
static int check(const struct options *o)
{
	const struct synth_shape *s = &o->s;
	if (s->n_embd % s->n_head) {
		fprintf(stderr, PROG ": --hidden %u is not a multiple of --heads %u\n", s->n_embd, s->n_head);
		return -EINVAL;
	}
	uint32_t hd = s->n_embd / s->n_head;
	if (hd % 2 || hd > 1024) {
		fprintf(stderr, PROG ": head size %u (hidden %u / heads %u) must be even and at most 1024\n", hd, s->n_embd,
			s->n_head);
		return -EINVAL;
	}
	if (s->n_head_kv > s->n_head || s->n_head % s->n_head_kv) {
		fprintf(stderr, PROG ": --kv-heads %u does not divide --heads %u\n", s->n_head_kv, s->n_head);
		return -EINVAL;
	}
	/* tied, the one embedding matrix has the output type unless --embd-type
	 * was given: blame the flag that chose it */
	const struct { uint32_t type; const char *flag; uint32_t len; const char *dim; } rows[] = {
		{ o->type, "--type", s->n_embd, "--hidden" },
		{ o->type, "--type", s->n_ff, "--ff" },
		{ o->embd_type, s->tied && !o->embd_given ? "--output-type" : "--embd-type", s->n_embd, "--hidden" },
		{ o->output_type, "--output-type", s->n_embd, "--hidden" }, /* the same matrix when tied */
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint32_t be = pf_dtype_info(rows[i].type)->block_elems;
		if (rows[i].len % be) {
			fprintf(stderr, PROG ": %s %s packs rows in blocks of %u, but %s %u is not a multiple of %u%s\n",
				rows[i].flag, pf_dtype_name(rows[i].type), be, rows[i].dim, rows[i].len, be,
				be == 256 ? " (k-quants need rows that are multiples of 256: use q8_0, q4_0 or q4_1)" : "");
			return -EINVAL;
		}
	}
	return 0;
}

static void print_plan(const struct options *o, const struct plan *p, uint64_t header_bytes)
{
	const struct synth_shape *s = &o->s;
	char sz[32];
	human((double)(header_bytes + p->data_bytes), sz, sizeof(sz));
	printf("file:       %s\n", o->out);
	printf("shape:      %s: %u layers, hidden %u, heads %u/%u (head size %u), ff %u, vocab %u, ctx %u, rope base %g, %s\n",
	       o->preset, s->n_layer, s->n_embd, s->n_head, s->n_head_kv, s->n_embd / s->n_head, s->n_ff, s->n_vocab,
	       s->n_ctx, (double)s->rope_base, s->tied ? "tied embeddings" : "untied output");
	printf("types:      matmuls %s, token_embd %s, output %s, norms F32\n", pf_dtype_name(o->type),
	       pf_dtype_name(o->embd_type), s->tied ? "(token_embd)" : pf_dtype_name(o->output_type));
	printf("tensors:    %" PRIu32 ", %" PRIu64 " parameters\n", p->n, p->n_params);
	printf("size:       %s: %" PRIu64 " bytes (header %" PRIu64 ", tensor data %" PRIu64 ")\n", sz,
	       header_bytes + p->data_bytes, header_bytes, p->data_bytes);
}

int main(int argc, char **argv)
{
	/* -n and -t mean completions and threads in the other pinfer tools:
	 * --type and --dry-run have no short letters */
	enum { O_LAYERS = 256, O_HIDDEN, O_HEADS, O_KV, O_FF, O_VOCAB, O_CTX, O_ROPE, O_EPS, O_TIED, O_UNTIED,
	       O_EMBD, O_OUTT, O_TYPE, O_DRY };
	static const struct option lopts[] = {
		{ "preset", required_argument, NULL, 'p' }, { "layers", required_argument, NULL, O_LAYERS },
		{ "hidden", required_argument, NULL, O_HIDDEN }, { "heads", required_argument, NULL, O_HEADS },
		{ "kv-heads", required_argument, NULL, O_KV }, { "ff", required_argument, NULL, O_FF },
		{ "vocab", required_argument, NULL, O_VOCAB }, { "ctx", required_argument, NULL, O_CTX },
		{ "rope-base", required_argument, NULL, O_ROPE }, { "norm-eps", required_argument, NULL, O_EPS },
		{ "tied", no_argument, NULL, O_TIED }, { "untied", no_argument, NULL, O_UNTIED },
		{ "type", required_argument, NULL, O_TYPE }, { "embd-type", required_argument, NULL, O_EMBD },
		{ "output-type", required_argument, NULL, O_OUTT }, { "output", required_argument, NULL, 'o' },
		{ "seed", required_argument, NULL, 's' }, { "dry-run", no_argument, NULL, O_DRY },
		{ "quiet", no_argument, NULL, 'q' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct options o = { .preset = "tiny", .type = PF_DT_F16, .embd_type = UINT32_MAX, .output_type = UINT32_MAX };
	/* shape fields given on the command line, applied over the preset at the end */
	struct { uint32_t *field; uint32_t v; } set[16];
	size_t n_set = 0;
	float rope = 0, eps = 0;
	int tied = -1, c;
	char outbuf[128];

	while ((c = getopt_long(argc, argv, "p:o:s:qh", lopts, NULL)) != -1) {
		uint32_t v = 0;
		uint32_t *field = NULL;
		int e = 0;
		switch (c) {
		case 'p': o.preset = optarg; break;
		case O_TYPE: e = parse_type(optarg, "--type", &o.type); break;
		case O_EMBD: e = parse_type(optarg, "--embd-type", &o.embd_type); break;
		case O_OUTT: e = parse_type(optarg, "--output-type", &o.output_type); break;
		case 'o': o.out = optarg; break;
		case 's': {
			char *end;
			errno = 0;
			o.seed = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end || *optarg == '-') {
				fprintf(stderr, PROG ": --seed wants an unsigned integer, got '%s'\n", optarg);
				e = -EINVAL;
			}
			break;
		}
		case O_DRY: o.dry_run = true; break;
		case 'q': o.quiet = true; break;
		case O_TIED: tied = 1; break;
		case O_UNTIED: tied = 0; break;
		case O_ROPE: e = parse_pos_float(optarg, "--rope-base", &rope); break;
		case O_EPS: e = parse_pos_float(optarg, "--norm-eps", &eps); break;
		case O_LAYERS: e = parse_u32(optarg, "--layers", 1, 1024, &v); field = &o.s.n_layer; break;
		case O_HIDDEN: e = parse_u32(optarg, "--hidden", 1, 65536, &v); field = &o.s.n_embd; break;
		case O_HEADS: e = parse_u32(optarg, "--heads", 1, 1024, &v); field = &o.s.n_head; break;
		case O_KV: e = parse_u32(optarg, "--kv-heads", 1, 1024, &v); field = &o.s.n_head_kv; break;
		case O_FF: e = parse_u32(optarg, "--ff", 1, 1u << 20, &v); field = &o.s.n_ff; break;
		case O_VOCAB: e = parse_u32(optarg, "--vocab", MIN_VOCAB, MAX_VOCAB, &v); field = &o.s.n_vocab; break;
		case O_CTX: e = parse_u32(optarg, "--ctx", 1, INT32_MAX, &v); field = &o.s.n_ctx; break;
		case 'h': usage(stdout); return 0;
		default:
			if (optopt == 'n' || optopt == 't')
				fprintf(stderr, PROG ": -n and -t are the number of completions and the threads in the "
						     "pinfer tools; here: --%s\n", optopt == 'n' ? "dry-run" : "type");
			fprintf(stderr, "Try '" PROG " --help'.\n");
			return 2;
		}
		if (e)
			return 2;
		if (field && n_set < sizeof(set) / sizeof(set[0])) {
			set[n_set].field = field;
			set[n_set++].v = v;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s' (options only; see --help)\n", argv[optind]);
		return 2;
	}
	const struct synth_shape *ps = NULL;
	for (size_t i = 0; i < N_PRESETS; i++)
		if (!strcmp(o.preset, presets[i].name))
			ps = &presets[i];
	if (!ps) {
		fprintf(stderr, PROG ": unknown preset '%s' (", o.preset);
		for (size_t i = 0; i < N_PRESETS; i++)
			fprintf(stderr, "%s%s", i ? ", " : "", presets[i].name);
		fprintf(stderr, ")\n");
		return 2;
	}
	/* the pointers in set[] point into o.s: copy the preset under them */
	o.s = *ps;
	for (size_t i = 0; i < n_set; i++)
		*set[i].field = set[i].v;
	if (rope > 0)
		o.s.rope_base = rope;
	if (eps > 0)
		o.s.norm_eps = eps;
	if (tied >= 0)
		o.s.tied = tied;
	if (o.output_type == UINT32_MAX) {
		o.output_type = o.type;
		if (is_quant(o.type))
			o.output_type = o.s.n_embd % 256 || o.type == PF_DT_Q8_0 ? PF_DT_Q8_0 : PF_DT_Q6_K;
	}
	o.embd_given = o.embd_type != UINT32_MAX;
	if (!o.embd_given)
		o.embd_type = o.s.tied ? o.output_type : o.type;
	if (o.s.tied)
		o.output_type = o.embd_type; /* one matrix, token_embd.weight */
	if (!o.out) {
		char lower[8];
		snprintf(lower, sizeof(lower), "%s", pf_dtype_name(o.type));
		for (char *q = lower; *q; q++)
			*q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
		snprintf(outbuf, sizeof(outbuf), "synth-%s-%s.gguf", o.preset, lower);
		o.out = outbuf;
	}
	if (check(&o))
		return 2;

	struct plan p;
	struct hdr h = { 0 };
	int rc = 1;
	if (plan_build(&o, &p) || build_header(&o, &p, &h)) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	if (o.dry_run) {
		print_plan(&o, &p, h.len);
		rc = 0;
		goto out;
	}
	rc = write_file(&o, &p, &h) ? 1 : 0;
out:
	free(p.t);
	free(h.p);
	return rc;
}
