/*
 * tok_bpe.c — byte-level BPE (tokenizer.ggml.model "gpt2").
 *
 * GPT-2 maps every byte to a printable character (bytes that are already
 * printable Latin-1 map to themselves, the other 68 to U+0100..U+0143 in
 * byte order) so that vocabulary texts are readable strings: "Ġthe" is
 * " the".  A word of n bytes therefore starts as n symbols, one per byte,
 * and we never build the mapped string except to look up merges whose
 * halves are not tokens (the fallback table, empty in real vocabularies).
 *
 * Merging follows llama.cpp's llm_tokenizer_bpe_session: a priority queue
 * of adjacent pairs ordered by merge rank, then by left position; a queued
 * pair whose symbols changed since is skipped.  Because symbols only grow,
 * "both symbols still have the lengths they had when queued" is exactly
 * "the pair is still adjacent and unchanged", which is what llama.cpp's
 * string comparison checks.  The queue therefore always yields the live
 * pair with the lowest (rank, position), and the same order can be had
 * more cheaply for short words by scanning (encode_small).
 *
 * Three shortcuts, all exact: a word that word_map knows is one token; a
 * one-byte word is its byte's token; words up to SMALL_WORD bytes merge by
 * scanning a small array instead of through the heap.
 */
#include "runtime/text/tok_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model/gguf.h"

/* ---- heap: lowest rank first, then leftmost ----------------------------- */

static inline bool bg_before(const struct pf_tok_bigram *a, const struct pf_tok_bigram *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(struct pf_tok_scratch *s, const struct pf_tok_bigram *e)
{
	pf_tok_heap_push(s, e, bg_before);
}

static struct pf_tok_bigram heap_pop(struct pf_tok_scratch *s)
{
	return pf_tok_heap_pop(s, bg_before);
}

/* ---- the byte <-> character map ----------------------------------------- */

static bool byte_is_printable(unsigned b)
{
	return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
}

/* Code point GPT-2 uses for byte b. */
static uint32_t byte_to_cpt(unsigned b)
{
	unsigned n = 0;

	if (byte_is_printable(b))
		return b;
	for (unsigned c = 0; c < b; c++)
		if (!byte_is_printable(c))
			n++;
	return 256 + n;
}

/* ---- loading ------------------------------------------------------------ */

static int fb_add(struct pf_tok *t, const char *a, size_t al, const char *b, size_t bl,
		  int32_t rank, int32_t res, size_t *arena_len, size_t *arena_cap, size_t *n_cap)
{
	uint32_t l32 = (uint32_t)al;
	size_t need = *arena_len + 4 + al + bl;
	int r;

	r = pf_tok_grow((void **)&t->fb_arena, arena_cap, need, 1);
	if (r)
		return r;
	if ((size_t)t->n_fb + 1 > *n_cap) {
		/* the three arrays grow in step, so one capacity describes them */
		size_t c = *n_cap, need_n = (size_t)t->n_fb + 1;
		r = pf_tok_grow((void **)&t->fb_keys, &c, need_n, sizeof(*t->fb_keys));
		c = *n_cap;
		if (!r)
			r = pf_tok_grow((void **)&t->fb_rank, &c, need_n, sizeof(*t->fb_rank));
		c = *n_cap;
		if (!r)
			r = pf_tok_grow((void **)&t->fb_res, &c, need_n, sizeof(*t->fb_res));
		if (r)
			return r;
		*n_cap = c;
	}
	memcpy(t->fb_arena + *arena_len, &l32, 4);
	memcpy(t->fb_arena + *arena_len + 4, a, al);
	memcpy(t->fb_arena + *arena_len + 4 + al, b, bl);
	t->fb_keys[t->n_fb] = (struct pf_tok_span){ .off = (uint32_t)*arena_len, .len = (uint32_t)(4 + al + bl) };
	t->fb_rank[t->n_fb] = rank;
	t->fb_res[t->n_fb] = res;
	t->n_fb++;
	*arena_len = need;
	return 0;
}

int pf_tok_bpe_load(struct pf_tok *t, const struct pf_gguf *g, char *err, size_t errlen)
{
	const struct pf_gguf_kv *kv = pf_gguf_find(g, "tokenizer.ggml.merges");
	size_t fb_len = 0, fb_cap = 0, n_fbcap = 0, cat_cap = 0;
	char *cat = NULL;
	int r = 0;

	for (unsigned c = 0; c < 256 + 68; c++)
		t->chr_byte[c] = -1;
	for (unsigned b = 0; b < 256; b++) {
		char one = (char)b;
		uint32_t c = byte_to_cpt(b);
		t->chr_byte[c] = (int16_t)b;
		t->byte_chr_len[b] = (uint8_t)pf_tok_utf8_put(c, t->byte_chr[b]);
		t->byte_tok[b] = pf_tok_strmap_get(&t->tok_map, (const char *)t->byte_chr[b], t->byte_chr_len[b]);
		t->single_tok[b] = pf_tok_strmap_get(&t->tok_map, &one, 1);
	}

	if (!kv) {
		if (err)
			snprintf(err, errlen, "tokenizer.ggml.merges is missing");
		return -ENOENT;
	}
	if (kv->type != PF_GGUF_ARRAY || kv->arr_type != PF_GGUF_STRING || kv->arr_n > INT32_MAX) {
		if (err)
			snprintf(err, errlen, "tokenizer.ggml.merges is not an array of strings");
		return -EINVAL;
	}
	r = pf_tok_pairmap_init(&t->merges, kv->arr_n);
	if (r)
		return r;

	for (uint64_t i = 0; i < kv->arr_n; i++) {
		struct pf_gguf_str m;
		const char *sp;
		size_t al, bl;
		int32_t a, b, res;

		r = pf_gguf_arr_str(g, kv, i, &m);
		if (r)
			goto out;
		/* llama.cpp splits at the first space after the first byte, so
		 * a merge may begin with a space ("  t" is " " + "t"); a line
		 * without one pairs two empty strings, which never match */
		sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
		if (!sp)
			continue;
		al = (size_t)(sp - m.ptr);
		bl = m.len - al - 1;
		a = pf_tok_strmap_get(&t->tok_map, m.ptr, al);
		b = pf_tok_strmap_get(&t->tok_map, sp + 1, bl);
		r = pf_tok_grow((void **)&cat, &cat_cap, al + bl, 1);
		if (r)
			goto out;
		memcpy(cat, m.ptr, al);
		memcpy(cat + al, sp + 1, bl);
		res = pf_tok_strmap_get(&t->tok_map, cat, al + bl);
		if (a >= 0 && b >= 0)
			r = pf_tok_pairmap_put(&t->merges, a, b, (int32_t)i, res);
		else
			r = fb_add(t, m.ptr, al, sp + 1, bl, (int32_t)i, res, &fb_len, &fb_cap, &n_fbcap);
		if (r)
			goto out;
	}

	if (t->n_fb) {
		r = pf_tok_strmap_init(&t->merge_fb, (size_t)t->n_fb, t->fb_arena, t->fb_keys);
		for (int32_t i = 0; !r && i < t->n_fb; i++)
			r = pf_tok_strmap_put(&t->merge_fb, i, false);
	}
out:
	free(cat);
	if (r && err && !*err)
		snprintf(err, errlen, "loading tokenizer.ggml.merges: %s", strerror(-r));
	return r;
}

/* ---- decoding (for the piece cache) ------------------------------------- */

int pf_tok_bpe_decode_text(const struct pf_tok *t, const char *text, size_t len,
			   char **buf, size_t *len_io, size_t *cap)
{
	const uint8_t *s = (const uint8_t *)text;
	size_t i = 0;
	int r;

	while (i < len) {
		uint32_t c = pf_tok_utf8_next_lenient(s, len, &i);
		int b = c < 256 + 68 ? t->chr_byte[c] : -1;

		if (b >= 0) {
			r = pf_tok_grow((void **)buf, cap, *len_io + 1, 1);
			if (r)
				return r;
			(*buf)[(*len_io)++] = (char)b;
		} else {
			/* llama.cpp's llama_decode_text(): "[UNK_BYTE_0x" + the
			 * character's UTF-8 in hex + the whole token text + "]" */
			uint8_t u[4];
			size_t un = pf_tok_utf8_put(c, u), need = 12 + 2 * un + len + 1;
			r = pf_tok_grow((void **)buf, cap, *len_io + need, 1);
			if (r)
				return r;
			memcpy(*buf + *len_io, "[UNK_BYTE_0x", 12);
			*len_io += 12;
			for (size_t k = 0; k < un; k++) {
				static const char hx[] = "0123456789abcdef";
				(*buf)[(*len_io)++] = hx[u[k] >> 4];
				(*buf)[(*len_io)++] = hx[u[k] & 15];
			}
			memcpy(*buf + *len_io, text, len);
			*len_io += len;
			(*buf)[(*len_io)++] = ']';
		}
	}
	return 0;
}

/* ---- encoding ----------------------------------------------------------- */

/* The mapped (GPT-2 character) form of w[0..n) into s->tmp at offset `at`;
 * returns the new end or (size_t)-1 on -ENOMEM. */
static size_t map_bytes(const struct pf_tok *t, struct pf_tok_scratch *s, size_t at,
			const uint8_t *w, size_t n)
{
	if (pf_tok_grow((void **)&s->tmp, &s->tmp_cap, at + 2 * n + 4, 1))
		return (size_t)-1;
	for (size_t i = 0; i < n; i++) {
		memcpy(s->tmp + at, t->byte_chr[w[i]], t->byte_chr_len[w[i]]);
		at += t->byte_chr_len[w[i]];
	}
	return at;
}

/*
 * The merge for adjacent symbols (left: bytes w[ls..ls+ll) with token lid,
 * right: w[rs..rs+rl) with rid): 1 with *rank and *res set, 0 if none,
 * -ENOMEM.
 */
static int lookup_pair(const struct pf_tok *t, struct pf_tok_scratch *s, const uint8_t *w,
		       uint32_t ls, uint32_t ll, int32_t lid, uint32_t rs, uint32_t rl, int32_t rid,
		       int32_t *rank, int32_t *res)
{
	if (lid >= 0 && rid >= 0) {
		const struct pf_tok_pairslot *m = pf_tok_pairmap_get(&t->merges, lid, rid);
		if (!m)
			return 0;
		*rank = m->rank;
		*res = m->res;
		return 1;
	}
	if (t->n_fb) {
		uint32_t l32;
		size_t end;
		int32_t k;

		/* key: u32 length of the mapped left text, mapped left, mapped right */
		end = map_bytes(t, s, 4, w + ls, ll);
		if (end == (size_t)-1)
			return -ENOMEM;
		l32 = (uint32_t)(end - 4);
		end = map_bytes(t, s, end, w + rs, rl);
		if (end == (size_t)-1)
			return -ENOMEM;
		memcpy(s->tmp, &l32, 4);
		k = pf_tok_strmap_get(&t->merge_fb, s->tmp, end);
		if (k < 0)
			return 0;
		*rank = t->fb_rank[k];
		*res = t->fb_res[k];
		return 1;
	}
	return 0;
}

/* Queue the pair (l, r) if a merge applies.  0 or -ENOMEM. */
static int try_pair(const struct pf_tok *t, struct pf_tok_scratch *s, const uint8_t *w,
		    int32_t l, int32_t r)
{
	const struct pf_tok_bsym *sl, *sr;
	struct pf_tok_bigram e;
	int k;

	if (l < 0 || r < 0)
		return 0;
	sl = &s->sym[l];
	sr = &s->sym[r];
	k = lookup_pair(t, s, w, sl->start, sl->len, sl->id, sr->start, sr->len, sr->id, &e.rank, &e.id);
	if (k <= 0)
		return k;
	e.left = l;
	e.right = r;
	e.size = sl->len + sr->len;
	e.score = 0;
	heap_push(s, &e);
	return 0;
}

/* A symbol no token covers: llama.cpp looks up each byte of its mapped text
 * as a one-byte token, which exists only for printable ASCII. */
static void emit_unknown(const struct pf_tok *t, struct pf_tok_scratch *s, const uint8_t *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (unsigned k = 0; k < t->byte_chr_len[w[i]]; k++) {
			int32_t id = t->single_tok[t->byte_chr[w[i]][k]];
			if (id >= 0)
				pf_tok_emit(s, id);
		}
	}
}

/*
 * Short words (the usual case) without the heap: keep the live symbols in
 * an array in text order with the rank of each one's pair with its right
 * neighbour, and merge the lowest rank, leftmost first -- the order the
 * queue would pop them in.
 */
#define SMALL_WORD 32

static int encode_small(const struct pf_tok *t, struct pf_tok_scratch *s, const uint8_t *w, size_t n)
{
	uint32_t st[SMALL_WORD], ln[SMALL_WORD];
	int32_t id[SMALL_WORD], rank[SMALL_WORD], res[SMALL_WORD];
	size_t m = n;
	int k;

	for (size_t i = 0; i < n; i++) {
		st[i] = (uint32_t)i;
		ln[i] = 1;
		id[i] = t->byte_tok[w[i]];
	}
	for (size_t i = 0; i + 1 < n; i++) {
		k = lookup_pair(t, s, w, st[i], 1, id[i], st[i + 1], 1, id[i + 1], &rank[i], &res[i]);
		if (k < 0)
			return k;
		if (!k)
			rank[i] = INT32_MAX;
	}
	rank[n - 1] = INT32_MAX;

	for (;;) {
		size_t b = 0;
		int32_t br = INT32_MAX;
		for (size_t i = 0; i + 1 < m; i++) {
			if (rank[i] < br) {
				br = rank[i];
				b = i;
			}
		}
		if (br == INT32_MAX)
			break;
		/* merge b and b+1 */
		ln[b] += ln[b + 1];
		id[b] = res[b];
		m--;
		for (size_t i = b + 1; i < m; i++) {
			st[i] = st[i + 1];
			ln[i] = ln[i + 1];
			id[i] = id[i + 1];
			rank[i] = rank[i + 1];
			res[i] = res[i + 1];
		}
		rank[m - 1] = INT32_MAX;
		if (b + 1 < m) {
			k = lookup_pair(t, s, w, st[b], ln[b], id[b], st[b + 1], ln[b + 1], id[b + 1], &rank[b], &res[b]);
			if (k < 0)
				return k;
			if (!k)
				rank[b] = INT32_MAX;
		}
		if (b > 0) {
			k = lookup_pair(t, s, w, st[b - 1], ln[b - 1], id[b - 1], st[b], ln[b], id[b],
					&rank[b - 1], &res[b - 1]);
			if (k < 0)
				return k;
			if (!k)
				rank[b - 1] = INT32_MAX;
		}
	}
	for (size_t i = 0; i < m; i++) {
		if (id[i] >= 0)
			pf_tok_emit(s, id[i]);
		else
			emit_unknown(t, s, w + st[i], ln[i]);
	}
	return 0;
}

static int encode_word(const struct pf_tok *t, struct pf_tok_scratch *s, const uint8_t *w, size_t n)
{
	int32_t id;
	int r;

	if (t->ignore_merges) {
		size_t end = map_bytes(t, s, 0, w, n);
		if (end == (size_t)-1)
			return -ENOMEM;
		id = pf_tok_strmap_get(&t->tok_map, s->tmp, end);
		if (id >= 0) {
			pf_tok_emit(s, id);
			return 0;
		}
	}
	/* most words of real text are one token: see word_map in tok_impl.h */
	if (n > 1 && (id = pf_tok_strmap_get(&t->word_map, (const char *)w, n)) >= 0) {
		pf_tok_emit(s, id);
		return 0;
	}
	if (n == 1) {
		if (t->byte_tok[w[0]] >= 0)
			pf_tok_emit(s, t->byte_tok[w[0]]);
		else
			emit_unknown(t, s, w, 1);
		return 0;
	}
	if (n <= SMALL_WORD)
		return encode_small(t, s, w, n);

	r = pf_tok_grow((void **)&s->sym, &s->sym_cap, n, sizeof(*s->sym));
	if (!r)
		r = pf_tok_grow((void **)&s->heap, &s->heap_cap, 3 * n, sizeof(*s->heap));
	if (r)
		return r;
	for (size_t i = 0; i < n; i++)
		s->sym[i] = (struct pf_tok_bsym){
			.start = (uint32_t)i, .len = 1, .id = t->byte_tok[w[i]],
			.prev = (int32_t)i - 1, .next = i + 1 < n ? (int32_t)i + 1 : -1,
		};
	s->heap_n = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		r = try_pair(t, s, w, (int32_t)i, (int32_t)i + 1);
		if (r)
			return r;
	}

	while (s->heap_n) {
		struct pf_tok_bigram e = heap_pop(s);
		struct pf_tok_bsym *L = &s->sym[e.left], *R = &s->sym[e.right];

		if (!L->len || !R->len || L->len + R->len != e.size)
			continue;       /* stale: one side merged since */
		L->len += R->len;
		L->id = e.id;
		R->len = 0;
		L->next = R->next;
		if (R->next >= 0)
			s->sym[R->next].prev = e.left;
		/* a merge queues at most two pairs, which the 3n heap covers:
		 * n-1 initial pairs + 2 per merge, at most n-1 merges */
		r = try_pair(t, s, w, L->prev, e.left);
		if (!r)
			r = try_pair(t, s, w, e.left, L->next);
		if (r)
			return r;
	}

	for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
		const struct pf_tok_bsym *y = &s->sym[i];
		if (y->id >= 0)
			pf_tok_emit(s, y->id);
		else
			emit_unknown(t, s, w + y->start, y->len);
	}
	return 0;
}

int pf_tok_bpe_encode(const struct pf_tok *t, struct pf_tok_scratch *s, const char *text, size_t len)
{
	const char *norm, *subj;
	size_t n, n_words;
	int r;

	r = pf_tok_utf8_normalize(s, text, len, &norm, &subj, &n);
	if (r)
		return r;
	r = pf_tok_pretok_split(&t->pretok, s, subj, n, &n_words);
	if (r)
		return r;
	for (size_t i = 0; i < n_words; i++) {
		const struct pf_tok_span *wd = &s->wa[i];
		r = encode_word(t, s, (const uint8_t *)norm + wd->off, wd->len);
		if (r)
			return r;
	}
	return 0;
}

int pf_tok_bpe_build_word_map(struct pf_tok *t)
{
	struct pf_tok_scratch s = { 0 };
	int32_t out[2];
	int r;

	/* an empty map while we build it: encode_word looks it up */
	r = pf_tok_strmap_init(&t->word_map, (size_t)t->n_vocab, t->piece_arena, t->piece);
	for (int32_t i = 0; !r && i < t->n_vocab; i++) {
		const uint8_t *w = (const uint8_t *)t->piece_arena + t->piece[i].off;
		size_t n = t->piece[i].len;

		if (!(t->attr[i] & PF_TOK_ATTR_NORMAL) || n < 2)
			continue;
		s.out = out;
		s.cap = 2;
		s.n = 0;
		r = encode_word(t, &s, w, n);
		if (!r && s.n == 1 && out[0] == i)
			r = pf_tok_strmap_put(&t->word_map, i, false);
	}
	pf_tok_scratch_fini(&s);
	return r;
}
