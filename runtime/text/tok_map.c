/* tok_map.c — the tokenizer's hash tables.  See tok_impl.h. */
#include "runtime/text/tok_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * A small multiply-xorshift hash, 8 bytes per step.  Token texts average
 * about six bytes, so per-call overhead matters more than bulk speed; this
 * is not meant to resist hash flooding (keys come from the model file,
 * lookups from the text, and a collision costs a probe, not correctness).
 */
#define K1 0x9e3779b97f4a7c15ull
#define K2 0xbf58476d1ce4e5b9ull
#define K3 0x94d049bb133111ebull

static inline uint64_t mix64(uint64_t h)
{
	h ^= h >> 30;
	h *= K2;
	h ^= h >> 27;
	h *= K3;
	h ^= h >> 31;
	return h;
}

uint64_t pf_tok_hash(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = K1 ^ (n * K3);
	uint64_t v;

	while (n >= 8) {
		memcpy(&v, b, 8);
		h = (h ^ (v * K1)) * K2;
		h ^= h >> 29;
		b += 8;
		n -= 8;
	}
	v = 0;
	if (n)
		memcpy(&v, b, n);
	h ^= v * K3;
	return mix64(h);
}

static uint32_t cap_for(size_t n_expected)
{
	size_t c = 16;
	while (c < n_expected * 2 + 1)
		c <<= 1;
	return (uint32_t)c;
}

int pf_tok_strmap_init(struct pf_tok_strmap *m, size_t n_expected,
		       const char *arena, const struct pf_tok_span *keys)
{
	uint32_t c;

	if (n_expected > (1u << 29))
		return -ENOMEM;
	c = cap_for(n_expected);
	m->slots = malloc((size_t)c * sizeof(*m->slots));
	if (!m->slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < c; i++)
		m->slots[i] = (struct pf_tok_strslot){ .hash = 0, .val = -1 };
	m->mask = c - 1;
	m->n = 0;
	m->arena = arena;
	m->keys = keys;
	return 0;
}

void pf_tok_strmap_fini(struct pf_tok_strmap *m)
{
	free(m->slots);
	m->slots = NULL;
}

static inline bool key_eq(const struct pf_tok_strmap *m, int32_t val, const char *s, size_t n)
{
	const struct pf_tok_span *k = &m->keys[val];
	return k->len == n && memcmp(m->arena + k->off, s, n) == 0;
}

int pf_tok_strmap_put(struct pf_tok_strmap *m, int32_t val, bool replace)
{
	const struct pf_tok_span *k = &m->keys[val];
	const char *s = m->arena + k->off;
	uint64_t h = pf_tok_hash(s, k->len);
	uint32_t i = (uint32_t)h & m->mask;

	for (;;) {
		struct pf_tok_strslot *sl = &m->slots[i];
		if (sl->val < 0)
			break;
		if (sl->hash == (uint32_t)h && key_eq(m, sl->val, s, k->len)) {
			if (replace)
				sl->val = val;
			return 0;
		}
		i = (i + 1) & m->mask;
	}
	/* keep the load factor at or below 1/2 so probes stay short */
	if ((size_t)(m->n + 1) * 2 > (size_t)m->mask + 1)
		return -ENOSPC;
	m->slots[i] = (struct pf_tok_strslot){ .hash = (uint32_t)h, .val = val };
	m->n++;
	return 0;
}

int32_t pf_tok_strmap_get(const struct pf_tok_strmap *m, const char *s, size_t n)
{
	uint64_t h;
	uint32_t i;

	if (!m->slots)
		return -1;
	h = pf_tok_hash(s, n);
	i = (uint32_t)h & m->mask;
	for (;;) {
		const struct pf_tok_strslot *sl = &m->slots[i];
		if (sl->val < 0)
			return -1;
		if (sl->hash == (uint32_t)h && key_eq(m, sl->val, s, n))
			return sl->val;
		i = (i + 1) & m->mask;
	}
}

static inline uint64_t pair_key(int32_t l, int32_t r)
{
	return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
}

static inline uint32_t pair_slot(const struct pf_tok_pairmap *m, uint64_t key)
{
	return (uint32_t)mix64(key) & m->mask;
}

int pf_tok_pairmap_init(struct pf_tok_pairmap *m, size_t n_expected)
{
	uint32_t c;

	if (n_expected > (1u << 29))
		return -ENOMEM;
	c = cap_for(n_expected);
	m->slots = malloc((size_t)c * sizeof(*m->slots));
	if (!m->slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < c; i++)
		m->slots[i].key = PF_TOK_PAIR_EMPTY;
	m->mask = c - 1;
	m->n = 0;
	return 0;
}

void pf_tok_pairmap_fini(struct pf_tok_pairmap *m)
{
	free(m->slots);
	m->slots = NULL;
}

int pf_tok_pairmap_put(struct pf_tok_pairmap *m, int32_t l, int32_t r, int32_t rank, int32_t res)
{
	uint64_t key = pair_key(l, r);
	uint32_t i = pair_slot(m, key);

	while (m->slots[i].key != PF_TOK_PAIR_EMPTY) {
		if (m->slots[i].key == key)
			return 0;
		i = (i + 1) & m->mask;
	}
	if ((size_t)(m->n + 1) * 2 > (size_t)m->mask + 1)
		return -ENOSPC;
	m->slots[i] = (struct pf_tok_pairslot){ .key = key, .rank = rank, .res = res };
	m->n++;
	return 0;
}

const struct pf_tok_pairslot *pf_tok_pairmap_get(const struct pf_tok_pairmap *m, int32_t l, int32_t r)
{
	uint64_t key = pair_key(l, r);
	uint32_t i;

	if (!m->slots)
		return NULL;
	i = pair_slot(m, key);
	for (;;) {
		const struct pf_tok_pairslot *sl = &m->slots[i];
		if (sl->key == key)
			return sl;
		if (sl->key == PF_TOK_PAIR_EMPTY)
			return NULL;
		i = (i + 1) & m->mask;
	}
}

int pf_tok_grow_slow(void **p, size_t *cap, size_t need, size_t elsz)
{
	size_t c = *cap ? *cap : 64;
	void *q;

	if (need <= *cap)
		return 0;
	while (c < need) {
		if (c > SIZE_MAX / 2 / elsz)
			return -ENOMEM;
		c *= 2;
	}
	q = realloc(*p, c * elsz);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}
