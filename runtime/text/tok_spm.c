/*
 * tok_spm.c — SentencePiece-style BPE (tokenizer.ggml.model "llama").
 *
 * llama.cpp's llm_tokenizer_spm_session: spaces become U+2581 ("▁"), the
 * text is cut into UTF-8 characters by their lead byte alone (a stray byte
 * is one symbol; a truncated sequence takes what is left), and adjacent
 * symbols whose concatenation is a vocabulary entry are merged, highest
 * token score first, leftmost first among equal scores.  A final symbol
 * that is no token is spelled with byte tokens <0xXX>.
 *
 * There is no pre-tokenizer: a whole text fragment (between special
 * tokens) is one merge problem, so the heap matters here.
 */
#include "runtime/text/tok_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static inline bool bg_before(const struct pf_tok_bigram *a, const struct pf_tok_bigram *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(struct pf_tok_scratch *s, const struct pf_tok_bigram *e)
{
	pf_tok_heap_push(s, e, bg_before);
}

static struct pf_tok_bigram heap_pop(struct pf_tok_scratch *s)
{
	return pf_tok_heap_pop(s, bg_before);
}

void pf_tok_spm_load(struct pf_tok *t)
{
	for (unsigned b = 0; b < 256; b++) {
		char hex[7];
		char one = (char)b;
		int32_t id;

		snprintf(hex, sizeof(hex), "<0x%02X>", b);
		id = pf_tok_strmap_get(&t->tok_map, hex, 6);
		/* llama.cpp falls back to the byte itself as a token */
		if (id < 0)
			id = pf_tok_strmap_get(&t->tok_map, &one, 1);
		t->spm_byte_tok[b] = id;
	}
}

/* Bytes of the character whose lead byte is b, by its high nibble only
 * (llama.cpp's unicode_len_utf8). */
static inline size_t lead_len(uint8_t b)
{
	static const uint8_t len[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
	return len[b >> 4];
}

static void try_pair(const struct pf_tok *t, struct pf_tok_scratch *s, const char *x,
		     int32_t l, int32_t r)
{
	const struct pf_tok_bsym *sl, *sr;
	struct pf_tok_bigram e;
	int32_t id;

	if (l < 0 || r < 0)
		return;
	sl = &s->sym[l];
	sr = &s->sym[r];
	/* adjacent live symbols are contiguous in x */
	id = pf_tok_strmap_get(&t->tok_map, x + sl->start, sl->len + sr->len);
	if (id < 0)
		return;
	e.left = l;
	e.right = r;
	e.size = sl->len + sr->len;
	e.id = id;
	e.rank = 0;
	e.score = t->score[id];
	heap_push(s, &e);
}

int pf_tok_spm_encode(const struct pf_tok *t, struct pf_tok_scratch *s, const char *text, size_t len,
		      bool prefix_space)
{
	static const char sp[3] = { '\xe2', '\x96', '\x81' };   /* U+2581 */
	size_t n = 0, n_sym = 0, xl = 0;
	char *x;
	int r;

	/* escape: ' ' -> U+2581, with the optional leading one */
	for (size_t i = 0; i < len; i++)
		n += text[i] == ' ' ? 3 : 1;
	n += prefix_space ? 3 : 0;
	if (n > UINT32_MAX / 2)
		return -E2BIG;
	r = pf_tok_grow((void **)&s->norm, &s->norm_cap, n + 1, 1);
	if (r)
		return r;
	x = s->norm;
	if (prefix_space) {
		memcpy(x, sp, 3);
		xl = 3;
	}
	for (size_t i = 0; i < len; i++) {
		if (text[i] == ' ') {
			memcpy(x + xl, sp, 3);
			xl += 3;
		} else {
			x[xl++] = text[i];
		}
	}
	if (!xl)
		return 0;

	r = pf_tok_grow((void **)&s->sym, &s->sym_cap, xl, sizeof(*s->sym));
	if (!r)
		r = pf_tok_grow((void **)&s->heap, &s->heap_cap, 3 * xl, sizeof(*s->heap));
	if (r)
		return r;
	for (size_t i = 0; i < xl;) {
		size_t cl = lead_len((uint8_t)x[i]);
		if (cl > xl - i)
			cl = xl - i;
		s->sym[n_sym] = (struct pf_tok_bsym){
			.start = (uint32_t)i, .len = (uint32_t)cl, .id = -2,
			.prev = (int32_t)n_sym - 1, .next = i + cl < xl ? (int32_t)n_sym + 1 : -1,
		};
		n_sym++;
		i += cl;
	}

	s->heap_n = 0;
	for (size_t i = 0; i + 1 < n_sym; i++)
		try_pair(t, s, x, (int32_t)i, (int32_t)i + 1);
	while (s->heap_n) {
		struct pf_tok_bigram e = heap_pop(s);
		struct pf_tok_bsym *L = &s->sym[e.left], *R = &s->sym[e.right];

		if (!L->len || !R->len || L->len + R->len != e.size)
			continue;
		L->len += R->len;
		L->id = e.id;
		R->len = 0;
		L->next = R->next;
		if (R->next >= 0)
			s->sym[R->next].prev = e.left;
		try_pair(t, s, x, L->prev, e.left);
		try_pair(t, s, x, e.left, L->next);
	}

	for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
		const struct pf_tok_bsym *y = &s->sym[i];
		/* -2: never merged, look the character up now */
		int32_t id = y->id != -2 ? y->id : pf_tok_strmap_get(&t->tok_map, x + y->start, y->len);

		if (id >= 0) {
			pf_tok_emit(s, id);
			continue;
		}
		for (uint32_t k = 0; k < y->len; k++) {
			int32_t b = t->spm_byte_tok[(uint8_t)x[y->start + k]];
			if (b >= 0)
				pf_tok_emit(s, b);
		}
	}
	return 0;
}
