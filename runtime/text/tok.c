/*
 * tok.c — loading a tokenizer from GGUF metadata, special-token
 * partitioning and the encode driver.  See tok.h for the contract and
 * tok_impl.h for the invariants.
 */
#include "runtime/text/tok_impl.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model/gguf.h"

/* GGUF tokenizer.ggml.token_type values */
enum {
	TT_NORMAL = 1,
	TT_UNKNOWN = 2,
	TT_CONTROL = 3,
	TT_USER_DEFINED = 4,
	TT_UNUSED = 5,
	TT_BYTE = 6,
};

#define ATTR_SPECIAL (PF_TOK_ATTR_CONTROL | PF_TOK_ATTR_USER_DEFINED | PF_TOK_ATTR_UNKNOWN)

__attribute__((format(printf, 3, 4)))
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
}

static int32_t find_str(const struct pf_tok *t, const char *s)
{
	return pf_tok_strmap_get(&t->tok_map, s, strlen(s));
}

/* ---- token texts -------------------------------------------------------- */

static int load_texts(struct pf_tok *t, const struct pf_gguf *g, const struct pf_gguf_kv *kv,
		      char *err, size_t errlen)
{
	size_t total = 0, off = 0;
	int r;

	for (int32_t i = 0; i < t->n_vocab; i++) {
		struct pf_gguf_str s;
		r = pf_gguf_arr_str(g, kv, (uint64_t)i, &s);
		if (r)
			return r;
		/* an empty text gets llama.cpp's "[EMPTY_<id>]" (at most 21 bytes) */
		total += s.len ? s.len : 24;
		if (total > UINT32_MAX) {
			fail(err, errlen, "tokenizer.ggml.tokens: texts too long");
			return -EINVAL;
		}
	}
	t->text_arena = malloc(total + 1);
	t->text = calloc((size_t)t->n_vocab, sizeof(*t->text));
	if (!t->text_arena || !t->text)
		return -ENOMEM;
	for (int32_t i = 0; i < t->n_vocab; i++) {
		struct pf_gguf_str s;
		size_t n;

		pf_gguf_arr_str(g, kv, (uint64_t)i, &s);
		if (s.len) {
			memcpy(t->text_arena + off, s.ptr, s.len);
			n = s.len;
		} else {
			n = (size_t)snprintf(t->text_arena + off, 24, "[EMPTY_%d]", i);
		}
		t->text[i] = (struct pf_tok_span){ .off = (uint32_t)off, .len = (uint32_t)n };
		off += n;
	}
	r = pf_tok_strmap_init(&t->tok_map, (size_t)t->n_vocab, t->text_arena, t->text);
	/* later duplicates win, as with llama.cpp's token_to_id[word] = i */
	for (int32_t i = 0; !r && i < t->n_vocab; i++)
		r = pf_tok_strmap_put(&t->tok_map, i, true);
	return r;
}

static int load_scores_types(struct pf_tok *t, const struct pf_gguf *g, char *err, size_t errlen)
{
	const struct pf_gguf_kv *sk = pf_gguf_find(g, "tokenizer.ggml.scores");
	const struct pf_gguf_kv *tk = pf_gguf_find(g, "tokenizer.ggml.token_type");

	t->score = calloc((size_t)t->n_vocab, sizeof(*t->score));
	t->attr = calloc((size_t)t->n_vocab, sizeof(*t->attr));
	t->flags = calloc((size_t)t->n_vocab, sizeof(*t->flags));
	if (!t->score || !t->attr || !t->flags)
		return -ENOMEM;

	if (sk) {
		if (sk->type != PF_GGUF_ARRAY ||
		    (sk->arr_type != PF_GGUF_F32 && sk->arr_type != PF_GGUF_I32) ||
		    sk->arr_n < (uint64_t)t->n_vocab) {
			fail(err, errlen, "tokenizer.ggml.scores: want an f32/i32 array of >= %d", t->n_vocab);
			return -EINVAL;
		}
		for (int32_t i = 0; i < t->n_vocab; i++)
			pf_gguf_arr_f32(g, sk, (uint64_t)i, &t->score[i]);
	}
	if (tk) {
		if (tk->type != PF_GGUF_ARRAY || tk->arr_type != PF_GGUF_I32 ||
		    tk->arr_n < (uint64_t)t->n_vocab) {
			fail(err, errlen, "tokenizer.ggml.token_type: want an i32 array of >= %d", t->n_vocab);
			return -EINVAL;
		}
	}
	for (int32_t i = 0; i < t->n_vocab; i++) {
		int64_t ty = TT_NORMAL;
		if (tk)
			pf_gguf_arr_i64(g, tk, (uint64_t)i, &ty);
		switch (ty) {
		case TT_NORMAL: t->attr[i] = PF_TOK_ATTR_NORMAL; break;
		case TT_UNKNOWN: t->attr[i] = PF_TOK_ATTR_UNKNOWN; break;
		case TT_CONTROL: t->attr[i] = PF_TOK_ATTR_CONTROL; break;
		case TT_USER_DEFINED: t->attr[i] = PF_TOK_ATTR_USER_DEFINED; break;
		case TT_UNUSED: t->attr[i] = PF_TOK_ATTR_UNUSED; break;
		case TT_BYTE: t->attr[i] = PF_TOK_ATTR_BYTE; break;
		default: t->attr[i] = PF_TOK_ATTR_UNDEFINED; break;
		}
	}
	return 0;
}

/* ---- special ids -------------------------------------------------------- */

/* An id key: a valid value replaces *id, an out-of-range one is ignored
 * (llama.cpp warns and keeps the default). */
static void read_id(const struct pf_tok *t, const struct pf_gguf *g, const char *key, int32_t *id)
{
	uint32_t v;

	if (*id >= t->n_vocab)
		*id = -1;
	if (pf_gguf_get_u32(g, key, &v) == 0 && v < (uint32_t)t->n_vocab)
		*id = (int32_t)v;
}

static void read_bool(const struct pf_gguf *g, const char *key, bool *v)
{
	bool b;
	if (pf_gguf_get_bool(g, key, &b) == 0)
		*v = b;
}

/* Set *id to the first listed text present in the vocabulary, if *id is
 * unset, and make that token CONTROL (llama.cpp's by-text detection). */
static void detect_by_text(struct pf_tok *t, int32_t *id, const char *const *names)
{
	if (*id >= 0)
		return;
	for (; *names; names++) {
		int32_t k = find_str(t, *names);
		if (k >= 0) {
			*id = k;
			t->attr[k] |= PF_TOK_ATTR_CONTROL;
			return;
		}
	}
}

static const char *const eot_names[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
	"<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
	"<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
	"<end_of_utterance>", NULL,
};
static const char *const eom_names[] = { "<|eom_id|>", NULL };
static const char *const fim_pre_names[] = {
	"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
	"<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL,
};
static const char *const fim_suf_names[] = {
	"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>",
	"<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL,
};
static const char *const fim_mid_names[] = {
	"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
	"<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL,
};
static const char *const fim_pad_names[] = { "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL };
static const char *const fim_rep_names[] = {
	"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL,
};
static const char *const fim_sep_names[] = { "<|file_sep|>", NULL };

/* Texts llama.cpp treats as end-of-generation wherever they appear. */
static const char *const eog_names[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
	"<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
	"<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
	"<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", "[e~[", NULL,
};

static void set_eog(struct pf_tok *t, int32_t id)
{
	if (id >= 0 && id < t->n_vocab)
		t->flags[id] |= PF_TOK_EOG_BIT;
}

static int32_t eog_with_text(const struct pf_tok *t, const char *s)
{
	int32_t id = find_str(t, s);
	return id >= 0 && (t->flags[id] & PF_TOK_EOG_BIT) ? id : -1;
}

static void setup_special(struct pf_tok *t, const struct pf_gguf *g)
{
	int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;

	read_id(t, g, "tokenizer.ggml.bos_token_id", &t->bos);
	read_id(t, g, "tokenizer.ggml.eos_token_id", &t->eos);
	read_id(t, g, "tokenizer.ggml.eot_token_id", &t->eot);
	read_id(t, g, "tokenizer.ggml.eom_token_id", &t->eom);
	read_id(t, g, "tokenizer.ggml.unknown_token_id", &t->unk);
	read_id(t, g, "tokenizer.ggml.seperator_token_id", &t->sep);
	read_id(t, g, "tokenizer.ggml.padding_token_id", &t->pad);
	read_id(t, g, "tokenizer.ggml.fim_pre_token_id", &fim_pre);
	read_id(t, g, "tokenizer.ggml.fim_suf_token_id", &fim_suf);
	read_id(t, g, "tokenizer.ggml.fim_mid_token_id", &fim_mid);
	read_id(t, g, "tokenizer.ggml.fim_pad_token_id", &fim_pad);
	read_id(t, g, "tokenizer.ggml.fim_rep_token_id", &fim_rep);
	read_id(t, g, "tokenizer.ggml.fim_sep_token_id", &fim_sep);
	read_id(t, g, "tokenizer.ggml.prefix_token_id", &fim_pre);
	read_id(t, g, "tokenizer.ggml.suffix_token_id", &fim_suf);
	read_id(t, g, "tokenizer.ggml.middle_token_id", &fim_mid);

	read_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos);
	read_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos);

	detect_by_text(t, &t->eot, eot_names);
	detect_by_text(t, &t->eom, eom_names);
	detect_by_text(t, &fim_pre, fim_pre_names);
	detect_by_text(t, &fim_suf, fim_suf_names);
	detect_by_text(t, &fim_mid, fim_mid_names);
	detect_by_text(t, &fim_pad, fim_pad_names);
	detect_by_text(t, &fim_rep, fim_rep_names);
	detect_by_text(t, &fim_sep, fim_sep_names);

	/* control tokens named "unused..." are placeholders */
	for (int32_t i = 0; i < t->n_vocab; i++) {
		if ((t->attr[i] & PF_TOK_ATTR_CONTROL) &&
		    memmem(t->text_arena + t->text[i].off, t->text[i].len, "unused", 6))
			t->attr[i] |= PF_TOK_ATTR_UNUSED;
	}

	set_eog(t, fim_pad);
	set_eog(t, fim_rep);
	set_eog(t, fim_sep);
	for (const char *const *n = eog_names; *n; n++) {
		int32_t id = find_str(t, *n);
		if (id >= 0) {
			set_eog(t, id);
			t->attr[id] |= PF_TOK_ATTR_CONTROL;
		}
	}
	/* gpt-oss: these render even without special */
	{
		static const char *const shown[] = { "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL };
		for (const char *const *n = shown; *n; n++) {
			int32_t id = find_str(t, *n);
			if (id >= 0)
				t->attr[id] = PF_TOK_ATTR_USER_DEFINED;
		}
	}
	set_eog(t, t->eos);
	set_eog(t, t->eot);
	set_eog(t, t->eom);

	/* harmony / solar-open: "<|end|>" ends a message, not the generation */
	{
		int32_t end = eog_with_text(t, "<|end|>");
		bool ret_ = eog_with_text(t, "<|return|>") >= 0;
		bool call = eog_with_text(t, "<|call|>") >= 0 || eog_with_text(t, "<|calls|>") >= 0;
		bool flush = eog_with_text(t, "<|flush|>") >= 0;
		if (end >= 0 && ((ret_ && call) || (call && flush))) {
			t->flags[end] &= (uint8_t)~PF_TOK_EOG_BIT;
			t->attr[end] = PF_TOK_ATTR_USER_DEFINED;
		}
	}
	/* gemma4 / plamo2: their "</s>" is an ordinary token */
	{
		int32_t s = eog_with_text(t, "</s>");
		if (s >= 0 && (eog_with_text(t, "<|tool_response>") >= 0 || eog_with_text(t, "<|plamo:eos|>") >= 0)) {
			t->flags[s] &= (uint8_t)~PF_TOK_EOG_BIT;
			t->attr[s] = PF_TOK_ATTR_NORMAL;
		}
	}
}

static int cmp_special(const void *a, const void *b, void *arg)
{
	const struct pf_tok *t = arg;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	if (t->text[x].len != t->text[y].len)
		return t->text[x].len > t->text[y].len ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int build_special(struct pf_tok *t)
{
	int32_t n = 0;

	for (int32_t i = 0; i < t->n_vocab; i++)
		n += (t->attr[i] & ATTR_SPECIAL) != 0;
	t->special = malloc(((size_t)n + 1) * sizeof(*t->special));
	if (!t->special)
		return -ENOMEM;
	n = 0;
	for (int32_t i = 0; i < t->n_vocab; i++)
		if (t->attr[i] & ATTR_SPECIAL)
			t->special[n++] = i;
	qsort_r(t->special, (size_t)n, sizeof(*t->special), cmp_special, t);
	t->n_special = n;
	return 0;
}

/* ---- pieces ------------------------------------------------------------- */

/* strtol(text.substr(3, 2), 16) as llama.cpp's token_to_byte() does it */
static uint8_t byte_of(const char *s, size_t n)
{
	char hex[3] = { 0, 0, 0 };

	if (n > 3)
		hex[0] = s[3];
	if (n > 4)
		hex[1] = s[4];
	return (uint8_t)strtol(hex, NULL, 16);
}

static int build_pieces(struct pf_tok *t)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;
	int r = 0;

	t->piece = calloc((size_t)t->n_vocab, sizeof(*t->piece));
	if (!t->piece)
		return -ENOMEM;
	for (int32_t i = 0; i < t->n_vocab && !r; i++) {
		const char *s = t->text_arena + t->text[i].off;
		size_t n = t->text[i].len, start = len;
		uint32_t a = t->attr[i];

		if (a & ATTR_SPECIAL) {
			r = pf_tok_grow((void **)&buf, &cap, len + n, 1);
			if (!r) {
				memcpy(buf + len, s, n);
				len += n;
			}
		} else if (a & PF_TOK_ATTR_NORMAL) {
			if (t->kind == PF_TOK_BPE) {
				r = pf_tok_bpe_decode_text(t, s, n, &buf, &len, &cap);
			} else {
				/* U+2581 back to ' ' */
				r = pf_tok_grow((void **)&buf, &cap, len + n, 1);
				for (size_t k = 0; !r && k < n;) {
					if (k + 3 <= n && memcmp(s + k, "\xe2\x96\x81", 3) == 0) {
						buf[len++] = ' ';
						k += 3;
					} else {
						buf[len++] = s[k++];
					}
				}
			}
		} else if (a & PF_TOK_ATTR_BYTE) {
			r = pf_tok_grow((void **)&buf, &cap, len + 1, 1);
			if (!r)
				buf[len++] = (char)byte_of(s, n);
		}
		/* UNUSED / UNDEFINED render as nothing */
		if (len - start > UINT32_MAX || len > UINT32_MAX)
			r = -E2BIG;
		t->piece[i] = (struct pf_tok_span){ .off = (uint32_t)start, .len = (uint32_t)(len - start) };
		if (len - start > t->max_piece)
			t->max_piece = len - start;
	}
	t->piece_arena = buf;
	return r;
}

/* Per-model attribute fix-ups llama.cpp applies by name (after the caches
 * are built, so they only change partitioning). */
static void name_fixups(struct pf_tok *t, const struct pf_gguf *g)
{
	struct pf_gguf_str name = { 0 }, pre = { 0 }, arch = { 0 };
	char lname[128];
	size_t n;

	pf_gguf_get_str(g, "general.name", &name);
	pf_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
	pf_gguf_get_str(g, "general.architecture", &arch);
	n = name.len < sizeof(lname) - 1 ? name.len : sizeof(lname) - 1;
	for (size_t i = 0; i < n; i++)
		lname[i] = (char)tolower((unsigned char)name.ptr[i]);
	lname[n] = 0;

	if ((pre.len && (memmem(pre.ptr, pre.len, "jina-v2-de", 10) || memmem(pre.ptr, pre.len, "jina-v2-es", 10) ||
			 memmem(pre.ptr, pre.len, "jina-v2-code", 12))) ||
	    (arch.len && (memmem(arch.ptr, arch.len, "nomic-bert-moe", 14) ||
			  memmem(arch.ptr, arch.len, "jina-bert-v3", 12)))) {
		int32_t id = find_str(t, "<mask>");
		if (id >= 0)
			t->attr[id] |= PF_TOK_ATTR_LSTRIP;
	} else if (strstr(lname, "phi-3") || strstr(lname, "phi3")) {
		static const char *const keep[] = { "<unk>", "<s>", "<|endoftext|>" };
		int32_t id;
		for (int32_t i = 0; i < t->n_special; i++)
			t->attr[t->special[i]] |= PF_TOK_ATTR_RSTRIP;
		id = find_str(t, "</s>");
		if (id >= 0)
			t->attr[id] |= PF_TOK_ATTR_RSTRIP;
		for (size_t k = 0; k < 3; k++) {
			id = find_str(t, keep[k]);
			if (id >= 0)
				t->attr[id] &= ~(uint32_t)PF_TOK_ATTR_RSTRIP;
		}
	} else if (strstr(lname, "modern-bert")) {
		int32_t id = find_str(t, "[MASK]");
		if (id >= 0)
			t->attr[id] |= PF_TOK_ATTR_LSTRIP;
	}
}

/* ---- load / free -------------------------------------------------------- */

int pf_tok_load(const struct pf_gguf *g, struct pf_tok **ret, char *err, size_t errlen)
{
	struct pf_gguf_str model, pre = { .ptr = NULL, .len = 0 };
	const struct pf_gguf_kv *tokens;
	struct pf_tok *t;
	int r;

	if (err && errlen)
		err[0] = 0;
	if (!g || !ret)
		return -EINVAL;
	*ret = NULL;
	r = pf_gguf_get_str(g, "tokenizer.ggml.model", &model);
	if (r) {
		fail(err, errlen, "tokenizer.ggml.model is %s", r == -ENOENT ? "missing" : "not a string");
		return r == -ENOENT ? -ENOENT : -EINVAL;
	}
	tokens = pf_gguf_find(g, "tokenizer.ggml.tokens");
	if (!tokens) {
		fail(err, errlen, "tokenizer.ggml.tokens is missing");
		return -ENOENT;
	}
	if (tokens->type != PF_GGUF_ARRAY || tokens->arr_type != PF_GGUF_STRING ||
	    tokens->arr_n == 0 || tokens->arr_n > (1u << 24)) {
		fail(err, errlen, "tokenizer.ggml.tokens: want a non-empty array of strings (at most 2^24)");
		return -EINVAL;
	}

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->n_vocab = (int32_t)tokens->arr_n;
	t->eot = t->eom = t->sep = t->pad = -1;

	if (model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0) {
		t->kind = PF_TOK_BPE;
		/* llama.cpp's defaults for BPE vocabularies */
		t->bos = 11;
		t->eos = 11;
		t->unk = -1;
		t->clean_spaces = true;
	} else if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0) {
		t->kind = PF_TOK_SPM;
		t->bos = 1;
		t->eos = 2;
		t->unk = 0;
		t->add_space_prefix = true;
		t->add_bos = true;
	} else {
		fail(err, errlen, "unsupported tokenizer.ggml.model \"%.*s\" (supported: gpt2, llama)",
		     (int)(model.len > 32 ? 32 : model.len), model.ptr);
		r = -ENOTSUP;
		goto fail;
	}

	r = load_texts(t, g, tokens, err, errlen);
	if (!r)
		r = load_scores_types(t, g, err, errlen);
	if (r)
		goto fail;

	if (t->kind == PF_TOK_BPE) {
		struct pf_tok_pre_info info;

		pf_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
		r = pf_tok_pretok_init(&t->pretok, pre.ptr, pre.len, &info, err, errlen);
		if (r)
			goto fail;
		snprintf(t->pre, sizeof(t->pre), "%.*s", (int)pre.len, pre.len ? pre.ptr : "default");
		t->ignore_merges = info.ignore_merges;
		t->clean_spaces = info.clean_spaces;
		if (info.add_bos >= 0)
			t->add_bos = info.add_bos;
		if (info.no_bos)
			t->bos = -1;
		r = pf_tok_bpe_load(t, g, err, errlen);
		if (r)
			goto fail;
	} else {
		pf_tok_spm_load(t);
	}
	read_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix);

	setup_special(t, g);
	r = build_special(t);
	if (!r)
		r = build_pieces(t);
	if (!r && t->kind == PF_TOK_BPE)
		r = pf_tok_bpe_build_word_map(t);
	if (r)
		goto fail;
	name_fixups(t, g);

	*ret = t;
	return 0;
fail:
	if (err && errlen && !err[0])
		fail(err, errlen, "loading the tokenizer: %s", strerror(-r));
	pf_tok_free(t);
	return r;
}

void pf_tok_free(struct pf_tok *t)
{
	if (!t)
		return;
	pf_tok_pretok_fini(&t->pretok);
	pf_tok_pairmap_fini(&t->merges);
	pf_tok_strmap_fini(&t->merge_fb);
	pf_tok_strmap_fini(&t->word_map);
	pf_tok_strmap_fini(&t->tok_map);
	free(t->fb_arena);
	free(t->fb_keys);
	free(t->fb_rank);
	free(t->fb_res);
	free(t->text_arena);
	free(t->text);
	free(t->score);
	free(t->attr);
	free(t->flags);
	free(t->piece_arena);
	free(t->piece);
	free(t->special);
	free(t);
}

/* ---- encoding ----------------------------------------------------------- */

/* A piece of the input: raw text (id < 0) or a matched special token. */
struct frag {
	int32_t id;
	uint32_t off, len;
};

struct fragvec {
	struct frag *v;
	size_t n, cap;
};

static int frag_push(struct fragvec *f, int32_t id, size_t off, size_t len)
{
	int r = pf_tok_grow((void **)&f->v, &f->cap, f->n + 1, sizeof(*f->v));
	if (r)
		return r;
	f->v[f->n++] = (struct frag){ .id = id, .off = (uint32_t)off, .len = (uint32_t)len };
	return 0;
}

/*
 * llama.cpp's tokenizer_st_partition(): for each special token, longest
 * first, cut every still-raw fragment at each (non-overlapping, leftmost
 * first) occurrence.  Longest-first over the whole text is not the same as
 * a leftmost-longest scan ("ab" and "bcd" in "abcd" give "a" + <bcd>), so
 * we keep the token-by-token order.
 */
static int partition(const struct pf_tok *t, const char *text, size_t len, bool parse_special,
		     struct fragvec *cur, struct fragvec *nxt)
{
	int r = frag_push(cur, -1, 0, len);

	for (int32_t k = 0; !r && k < t->n_special; k++) {
		int32_t id = t->special[k];
		uint32_t a = t->attr[id];
		const char *tt = t->text_arena + t->text[id].off;
		size_t tl = t->text[id].len;

		if (!parse_special && (a & (PF_TOK_ATTR_CONTROL | PF_TOK_ATTR_UNKNOWN)))
			continue;
		if (!memmem(text, len, tt, tl))
			continue;       /* cheap reject for the common case */
		nxt->n = 0;
		for (size_t f = 0; !r && f < cur->n; f++) {
			const struct frag *fr = &cur->v[f];
			size_t pos = fr->off, end = (size_t)fr->off + fr->len;
			const char *m;

			if (fr->id >= 0) {
				r = frag_push(nxt, fr->id, fr->off, fr->len);
				continue;
			}
			while (!r && (m = memmem(text + pos, end - pos, tt, tl))) {
				size_t ms = (size_t)(m - text), left = ms - pos;

				if (a & PF_TOK_ATTR_LSTRIP)
					while (left && isspace((unsigned char)text[pos + left - 1]))
						left--;
				if (left)
					r = frag_push(nxt, -1, pos, left);
				if (!r)
					r = frag_push(nxt, id, ms, tl);
				pos = ms + tl;
				if (a & PF_TOK_ATTR_RSTRIP)
					while (pos < end && isspace((unsigned char)text[pos]))
						pos++;
			}
			if (!r && pos < end)
				r = frag_push(nxt, -1, pos, end - pos);
		}
		{
			struct fragvec tmp = *cur;
			*cur = *nxt;
			*nxt = tmp;
		}
	}
	return r;
}

void pf_tok_scratch_fini(struct pf_tok_scratch *s)
{
	free(s->norm);
	free(s->subj);
	free(s->wa);
	free(s->wb);
	free(s->sym);
	free(s->heap);
	free(s->tmp);
	if (s->md)
		pcre2_match_data_free(s->md);
	if (s->jstack)
		pcre2_jit_stack_free(s->jstack);
	if (s->mctx)
		pcre2_match_context_free(s->mctx);
}

int pf_tok_encode(const struct pf_tok *t, const char *text, size_t len,
		  bool add_special, bool parse_special,
		  int32_t *out, size_t cap, size_t *ret_n)
{
	struct pf_tok_scratch s = { .out = out, .cap = out ? cap : 0 };
	struct fragvec fa = { 0 }, fb = { 0 };
	bool prev_special = true;   /* SPM: a space goes before the first text */
	int r = 0;

	if (!t || (!text && len) || !ret_n)
		return -EINVAL;
	*ret_n = 0;
	if (len > UINT32_MAX / 4)
		return -E2BIG;

	if (len)
		r = partition(t, text, len, parse_special, &fa, &fb);
	if (r)
		goto out;

	if (add_special && t->add_bos && t->bos >= 0)
		pf_tok_emit(&s, t->bos);
	for (size_t i = 0; i < fa.n && !r; i++) {
		const struct frag *f = &fa.v[i];
		if (f->id >= 0) {
			pf_tok_emit(&s, f->id);
			prev_special = true;
			continue;
		}
		if (t->kind == PF_TOK_BPE) {
			r = pf_tok_bpe_encode(t, &s, text + f->off, f->len);
		} else {
			r = pf_tok_spm_encode(t, &s, text + f->off, f->len,
					      t->add_space_prefix && prev_special);
			prev_special = false;
		}
	}
	if (!r && add_special && t->add_eos && t->eos >= 0)
		pf_tok_emit(&s, t->eos);
	if (!r) {
		*ret_n = s.n;
		if (s.n > s.cap)
			r = -ENOSPC;
	}
out:
	free(fa.v);
	free(fb.v);
	pf_tok_scratch_fini(&s);
	return r;
}

/* ---- accessors ---------------------------------------------------------- */

const char *pf_tok_piece(const struct pf_tok *t, int32_t id, bool special, size_t *ret_len)
{
	*ret_len = 0;
	if (id < 0 || id >= t->n_vocab)
		return NULL;
	if (!special && (t->attr[id] & (PF_TOK_ATTR_CONTROL | PF_TOK_ATTR_UNKNOWN)))
		return t->piece_arena ? t->piece_arena : "";
	*ret_len = t->piece[id].len;
	return t->piece_arena + t->piece[id].off;
}

int pf_tok_token_to_piece(const struct pf_tok *t, int32_t id, bool special,
			  char *buf, size_t cap, size_t *ret_n)
{
	size_t n;
	const char *p = pf_tok_piece(t, id, special, &n);

	*ret_n = 0;
	if (!p)
		return -EINVAL;
	*ret_n = n;
	if (n > cap)
		return -ENOSPC;
	if (n)
		memcpy(buf, p, n);
	return 0;
}

enum pf_tok_kind pf_tok_kind(const struct pf_tok *t) { return t->kind; }
const char *pf_tok_pre_name(const struct pf_tok *t) { return t->pre; }
int32_t pf_tok_n_vocab(const struct pf_tok *t) { return t->n_vocab; }
int32_t pf_tok_bos(const struct pf_tok *t) { return t->bos; }
int32_t pf_tok_eos(const struct pf_tok *t) { return t->eos; }
int32_t pf_tok_eot(const struct pf_tok *t) { return t->eot; }
bool pf_tok_add_bos(const struct pf_tok *t) { return t->add_bos; }
bool pf_tok_add_eos(const struct pf_tok *t) { return t->add_eos; }
size_t pf_tok_max_piece(const struct pf_tok *t) { return t->max_piece; }

bool pf_tok_is_eog(const struct pf_tok *t, int32_t id)
{
	return id >= 0 && id < t->n_vocab && (t->flags[id] & PF_TOK_EOG_BIT);
}

uint32_t pf_tok_attr(const struct pf_tok *t, int32_t id)
{
	return id >= 0 && id < t->n_vocab ? t->attr[id] : 0;
}

const char *pf_tok_text(const struct pf_tok *t, int32_t id, size_t *ret_len)
{
	if (id < 0 || id >= t->n_vocab) {
		*ret_len = 0;
		return NULL;
	}
	*ret_len = t->text[id].len;
	return t->text_arena + t->text[id].off;
}

int32_t pf_tok_find(const struct pf_tok *t, const char *text, size_t len)
{
	int32_t id = pf_tok_strmap_get(&t->tok_map, text, len);
	return id >= 0 ? id : -ENOENT;
}
