/*
 * tok_impl.h — the tokenizer's insides, shared by runtime/tok*.c only.
 *
 * Files: tok.c (loading, special-token partitioning, the encode driver,
 * accessors), tok_map.c (hash tables), tok_pretok.c (UTF-8 normalisation
 * and the PCRE2 pre-tokenizer), tok_bpe.c (byte-level BPE), tok_spm.c
 * (SentencePiece merges), tok_detok.c (whole-sequence and streaming
 * detokenization).
 *
 * Invariants of a loaded struct pf_tok:
 *   - text[i] is token i's vocabulary text inside text_arena; tok_map maps
 *     every text to the LAST id carrying it (llama.cpp's token_to_id[]
 *     assignment order), so duplicate texts resolve the same way;
 *   - piece[i] is what token i renders to with special=true (computed once
 *     at load, like llama.cpp's cache_token_to_piece);
 *   - merges holds (left id, right id) -> (rank, id of left+right) for every
 *     merge whose two halves are tokens, keeping the FIRST rank of a
 *     duplicated merge (bpe_ranks.emplace); merges whose halves are not
 *     tokens go to the string-keyed fallback table, which real vocabularies
 *     leave empty;
 *   - special[] lists CONTROL / USER_DEFINED / UNKNOWN ids, longest text
 *     first (ties by id, so the order is deterministic);
 *   - word_map (BPE) holds NORMAL token i under its piece bytes exactly
 *     when merging those bytes yields [i]: a pre-tokenized word found there
 *     is that one token, with no merging.  BPE on a word depends on its
 *     bytes alone, so this is a cache of exact answers, built at load.
 *
 * Deviations from llama.cpp (on purpose):
 *   - code points above U+10FFFF (F4 90.. to F7 ..): llama.cpp throws from
 *     inside llama_tokenize() and the process aborts; we treat the lead byte
 *     as invalid (U+FFFD) and go on;
 *   - the EOT token, when no tokenizer.ggml.eot_token_id is given, is the
 *     first of llama.cpp's EOT names in list order ("<|eot_id|>",
 *     "<|im_end|>", ...) rather than whichever an unordered_map yields;
 *   - pre-tokenizers not in tok_pretok.c's table are refused (-ENOTSUP)
 *     rather than approximated, and the per-model-name attribute fix-ups
 *     (phi-3 RSTRIP and friends) are applied only for the names listed in
 *     tok.c.
 */
#ifndef PF_TOK_IMPL_H
#define PF_TOK_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/text/tok.h"

/* A byte range inside some buffer. */
struct pf_tok_span {
	uint32_t off;
	uint32_t len;
};

/*
 * Open-addressing map from byte strings to int32 values.  The keys are not
 * stored: slot values index `keys` (spans inside `arena`), which the owner
 * keeps alive and unmoved.  Linear probing, power-of-two capacity, load
 * factor <= 1/2, no deletion.
 */
struct pf_tok_strslot {
	uint32_t hash;   /* low 32 bits of the key's hash, to skip memcmp */
	int32_t val;     /* -1: empty */
};

struct pf_tok_strmap {
	uint32_t mask;
	uint32_t n;
	struct pf_tok_strslot *slots;
	const char *arena;
	const struct pf_tok_span *keys;
};

/* (int32 left, int32 right) -> (rank, result id).  Empty slot: key == ~0. */
struct pf_tok_pairslot {
	uint64_t key;
	int32_t rank;
	int32_t res;
};

struct pf_tok_pairmap {
	uint32_t mask;
	uint32_t n;
	struct pf_tok_pairslot *slots;
};

#define PF_TOK_PAIR_EMPTY UINT64_MAX

uint64_t pf_tok_hash(const void *p, size_t n);
int pf_tok_strmap_init(struct pf_tok_strmap *m, size_t n_expected,
		       const char *arena, const struct pf_tok_span *keys);
void pf_tok_strmap_fini(struct pf_tok_strmap *m);
/* Map keys[val] to val.  An existing equal key keeps its value unless
 * `replace`.  Returns 0 or -ENOMEM (never: capacity is fixed at init and
 * must cover every insert; -ENOSPC if the caller breaks that). */
int pf_tok_strmap_put(struct pf_tok_strmap *m, int32_t val, bool replace);
/* The value stored for the key s[0..n), or -1. */
int32_t pf_tok_strmap_get(const struct pf_tok_strmap *m, const char *s, size_t n);

int pf_tok_pairmap_init(struct pf_tok_pairmap *m, size_t n_expected);
void pf_tok_pairmap_fini(struct pf_tok_pairmap *m);
/* Insert unless present (first rank wins).  0, or -ENOSPC past capacity. */
int pf_tok_pairmap_put(struct pf_tok_pairmap *m, int32_t l, int32_t r, int32_t rank, int32_t res);
/* The slot for (l, r), or NULL. */
const struct pf_tok_pairslot *pf_tok_pairmap_get(const struct pf_tok_pairmap *m, int32_t l, int32_t r);

/* Grow *p (an array of elsz-byte elements with *cap of them) to hold at
 * least `need`.  0 or -ENOMEM (then *p is unchanged).  The check is inline
 * because the encode loops call it per word. */
int pf_tok_grow_slow(void **p, size_t *cap, size_t need, size_t elsz);

static inline int pf_tok_grow(void **p, size_t *cap, size_t need, size_t elsz)
{
	return need <= *cap ? 0 : pf_tok_grow_slow(p, cap, need, elsz);
}

/* ---- pre-tokenizer ---------------------------------------------------- */

#define PF_TOK_MAX_RE 6

struct pf_tok_pretok {
	int n_re;
	pcre2_code *re[PF_TOK_MAX_RE];
	bool jit[PF_TOK_MAX_RE];
};

/* What tokenizer.ggml.pre implies besides the regexes. */
struct pf_tok_pre_info {
	const char *name;     /* canonical name of the regex family */
	bool ignore_merges;   /* a word that is itself a token is emitted whole */
	int add_bos;          /* -1: keep the default, else 0/1 */
	bool clean_spaces;    /* llama_detokenize's space clean-up */
	bool no_bos;          /* the vocabulary has no BOS (chatglm) */
};

/* Look `pre` up and compile its regexes.  0, -ENOTSUP (unknown name),
 * -EINVAL (a pattern did not compile: a bug), -ENOMEM. */
int pf_tok_pretok_init(struct pf_tok_pretok *p, const char *pre, size_t pre_len,
		       struct pf_tok_pre_info *info, char *err, size_t errlen);
void pf_tok_pretok_fini(struct pf_tok_pretok *p);

/* ---- per-call scratch ---------------------------------------------------- */

/* A symbol of the merge loops: a byte range of the word, linked to its
 * live neighbours; len 0 once merged into its left neighbour. */
struct pf_tok_bsym {
	uint32_t start, len;
	int32_t id;                 /* token of this text, -1 if none */
	int32_t prev, next;         /* -1 at the ends */
};

/* A candidate merge of two adjacent symbols.  BPE orders by lowest rank,
 * SPM by highest score; both break ties by the leftmost pair. */
struct pf_tok_bigram {
	int32_t left, right;
	uint32_t size;              /* len(left) + len(right) when queued */
	int32_t id;                 /* token of the merged text, -1 if none */
	int32_t rank;
	float score;
};

struct pf_tok_scratch {
	/* output */
	int32_t *out;
	size_t cap, n;

	/* UTF-8 normalisation (BPE) */
	char *norm;                 /* llama.cpp's re-encoded text */
	size_t norm_cap;
	char *subj;                 /* the same with surrogates replaced, for PCRE2 */
	size_t subj_cap;

	/* pre-tokenizer word lists, swapped between regex stages */
	struct pf_tok_span *wa, *wb;
	size_t wa_cap, wb_cap;
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	pcre2_jit_stack *jstack;
	size_t jstack_max;

	/* merge state (BPE and SPM) */
	struct pf_tok_bsym *sym;
	size_t sym_cap;
	struct pf_tok_bigram *heap;
	size_t heap_cap, heap_n;
	char *tmp;                  /* fallback string building */
	size_t tmp_cap;
};

/* Binary min-heap of merge candidates in s->heap, ordered by `before`
 * (BPE: lowest merge rank; SPM: highest score; ties: leftmost).  Shared by
 * both merge loops; static inline so the comparator is inlined. */
typedef bool (*pf_tok_bigram_before_fn)(const struct pf_tok_bigram *a, const struct pf_tok_bigram *b);

static inline void pf_tok_heap_push(struct pf_tok_scratch *s, const struct pf_tok_bigram *e,
				    pf_tok_bigram_before_fn before)
{
	struct pf_tok_bigram *h = s->heap;
	size_t i = s->heap_n++;

	while (i) {
		size_t p = (i - 1) / 2;
		if (!before(e, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = *e;
}

static inline struct pf_tok_bigram pf_tok_heap_pop(struct pf_tok_scratch *s, pf_tok_bigram_before_fn before)
{
	struct pf_tok_bigram *h = s->heap;
	struct pf_tok_bigram top = h[0], last = h[--s->heap_n];
	size_t n = s->heap_n, i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && before(&h[c + 1], &h[c]))
			c++;
		if (!before(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (n)
		h[i] = last;
	return top;
}

static inline void pf_tok_emit(struct pf_tok_scratch *s, int32_t id)
{
	if (s->n < s->cap)
		s->out[s->n] = id;
	s->n++;
}

void pf_tok_scratch_fini(struct pf_tok_scratch *s);

/*
 * llama.cpp's lenient UTF-8 round trip of text[0..len): returns 0 and sets
 * *ret_norm (bytes the tokenizer works on), *ret_subj (the same, safe for
 * PCRE2) and *ret_len.  When the input is already well-formed both point at
 * `text` itself.  -ENOMEM.
 */
int pf_tok_utf8_normalize(struct pf_tok_scratch *s, const char *text, size_t len,
			  const char **ret_norm, const char **ret_subj, size_t *ret_len);

/* Split subj[0..len) into words with the regex stages of `p`; the words are
 * s->wa[0..*ret_n).  0, -ENOMEM, -EIO (a PCRE2 match error). */
int pf_tok_pretok_split(const struct pf_tok_pretok *p, struct pf_tok_scratch *s,
			const char *subj, size_t len, size_t *ret_n);

/* ---- the tokenizer ------------------------------------------------------ */

#define PF_TOK_EOG_BIT 0x1u

struct pf_tok {
	enum pf_tok_kind kind;
	char pre[48];               /* tokenizer.ggml.pre as given */
	int32_t n_vocab;

	char *text_arena;
	struct pf_tok_span *text;   /* (n_vocab) */
	float *score;               /* (n_vocab) */
	uint32_t *attr;             /* (n_vocab) enum pf_tok_attr bits */
	uint8_t *flags;             /* (n_vocab) PF_TOK_EOG_BIT */
	char *piece_arena;
	struct pf_tok_span *piece;  /* (n_vocab) rendering with special=true */
	size_t max_piece;

	struct pf_tok_strmap tok_map;

	int32_t *special;           /* ids, longest text first */
	int32_t n_special;

	int32_t bos, eos, eot, eom, unk, sep, pad;
	bool add_bos, add_eos, add_space_prefix;
	bool ignore_merges, clean_spaces;

	/* BPE */
	struct pf_tok_pretok pretok;
	struct pf_tok_strmap word_map;    /* piece bytes -> id, for tokens BPE
					   * maps their own bytes to (keys: piece) */
	struct pf_tok_pairmap merges;
	struct pf_tok_strmap merge_fb;    /* fallback: keys in fb_arena */
	char *fb_arena;
	struct pf_tok_span *fb_keys;
	int32_t *fb_rank, *fb_res;
	int32_t n_fb;
	uint8_t byte_chr[256][2];         /* GPT-2 stand-in character of each byte, UTF-8 */
	uint8_t byte_chr_len[256];
	int32_t byte_tok[256];            /* id of that character's string, or -1 */
	int32_t single_tok[256];          /* id of the 1-byte string, or -1 */
	int16_t chr_byte[256 + 68];       /* inverse of byte_chr by code point, or -1 */

	/* SPM */
	int32_t spm_byte_tok[256];        /* <0xXX> (or the raw byte) token, or -1 */
};

/* tok_bpe.c */
int pf_tok_bpe_load(struct pf_tok *t, const struct pf_gguf *g, char *err, size_t errlen);
int pf_tok_bpe_encode(const struct pf_tok *t, struct pf_tok_scratch *s, const char *text, size_t len);
/* Build word_map (needs the pieces).  0 or -ENOMEM. */
int pf_tok_bpe_build_word_map(struct pf_tok *t);
/* GPT-2 stand-in text -> bytes, llama.cpp's llama_decode_text(); appends to
 * *buf.  0 or -ENOMEM. */
int pf_tok_bpe_decode_text(const struct pf_tok *t, const char *text, size_t len,
			   char **buf, size_t *len_io, size_t *cap);

/* tok_spm.c */
void pf_tok_spm_load(struct pf_tok *t);
int pf_tok_spm_encode(const struct pf_tok *t, struct pf_tok_scratch *s, const char *text, size_t len,
		      bool prefix_space);

/* UTF-8 helpers (tok_pretok.c) */
/* llama.cpp's unicode_cpt_from_utf8 with its error handling: decodes one
 * code point at s[*i] leniently, advancing *i; returns 0xFFFD (advancing one
 * byte) where llama.cpp would throw. */
uint32_t pf_tok_utf8_next_lenient(const uint8_t *s, size_t len, size_t *i);
/* Encode cpt (<= 0x10FFFF, surrogates included) into b; returns the length. */
size_t pf_tok_utf8_put(uint32_t cpt, uint8_t *b);

#endif
