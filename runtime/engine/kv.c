/* kv.c — the KV block manager; see kv.h for states and invariants. */
#include "runtime/engine/kv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

enum { B_FREE = 0, B_USED = 1, B_CACHED = 2 };

struct pf_kv {
	int32_t n, bs;
	int32_t *ref;
	uint8_t *state;
	uint8_t *registered;  /* in the hash table */
	int32_t *next, *prev; /* free stack (next) or LRU list (next/prev) */
	uint64_t *hash, *parent;
	int32_t *tokens;      /* (n, bs) token ids of registered blocks */
	int32_t free_top;     /* free stack head, -1 when empty */
	int32_t lru_head, lru_tail; /* CACHED blocks, least recently used first */
	int32_t n_free, n_cached, n_used; /* counted apart: see pf_kv_stats */
	int32_t *table;       /* open addressing hash → block, -1 empty */
	uint32_t table_mask;
	/* host swap slots: a free stack, nothing else (see kv.h) */
	int32_t n_host, host_free_top, n_host_free;
	int32_t *host_next;
	struct pf_kv_stats st;
};

uint64_t pf_kv_hash_block(uint64_t parent, const int32_t *tokens, int32_t n)
{
	/* parent as the seed chains the hashes: a block's hash names its prefix */
	return XXH3_64bits_withSeed(tokens, (size_t)n * sizeof(*tokens), parent);
}

int pf_kv_create(int32_t n_blocks, int32_t block_size, struct pf_kv **ret)
{
	struct pf_kv *kv;
	if (n_blocks < 1 || n_blocks > (1 << 28) || (block_size != 8 && block_size != 16 && block_size != 32))
		return -EINVAL;
	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	kv->n = n_blocks;
	kv->bs = block_size;
	uint32_t tcap = 16;
	while (tcap < (uint32_t)n_blocks * 2)
		tcap <<= 1;
	kv->table_mask = tcap - 1;
	kv->ref = calloc((size_t)n_blocks, sizeof(*kv->ref));
	kv->state = calloc((size_t)n_blocks, 1);
	kv->registered = calloc((size_t)n_blocks, 1);
	kv->next = malloc((size_t)n_blocks * sizeof(*kv->next));
	kv->prev = malloc((size_t)n_blocks * sizeof(*kv->prev));
	kv->hash = calloc((size_t)n_blocks, sizeof(*kv->hash));
	kv->parent = calloc((size_t)n_blocks, sizeof(*kv->parent));
	kv->tokens = malloc((size_t)n_blocks * block_size * sizeof(*kv->tokens));
	kv->table = malloc(tcap * sizeof(*kv->table));
	if (!kv->ref || !kv->state || !kv->registered || !kv->next || !kv->prev || !kv->hash || !kv->parent ||
	    !kv->tokens || !kv->table) {
		pf_kv_destroy(kv);
		return -ENOMEM;
	}
	memset(kv->table, 0xff, tcap * sizeof(*kv->table));
	/* stack so block 0 is handed out first: deterministic placement */
	for (int32_t i = 0; i < n_blocks; i++)
		kv->next[i] = i + 1 < n_blocks ? i + 1 : -1;
	kv->free_top = 0;
	kv->n_free = n_blocks;
	kv->host_free_top = -1;
	kv->lru_head = kv->lru_tail = -1;
	kv->st.n_blocks = n_blocks;
	*ret = kv;
	return 0;
}

void pf_kv_destroy(struct pf_kv *kv)
{
	if (!kv)
		return;
	free(kv->ref); free(kv->state); free(kv->registered); free(kv->next); free(kv->prev);
	free(kv->hash); free(kv->parent); free(kv->tokens); free(kv->table); free(kv->host_next);
	free(kv);
}

int32_t pf_kv_block_size(const struct pf_kv *kv)
{
	return kv->bs;
}

int32_t pf_kv_num_available(const struct pf_kv *kv)
{
	return kv->n_free + kv->n_cached;
}

void pf_kv_get_stats(const struct pf_kv *kv, struct pf_kv_stats *ret)
{
	*ret = kv->st;
	ret->n_free = kv->n_free;
	ret->n_cached = kv->n_cached;
	ret->n_used = kv->n_used;
	ret->n_host = kv->n_host;
	ret->n_host_free = kv->n_host_free;
}

int32_t pf_kv_refcount(const struct pf_kv *kv, int32_t b)
{
	return b >= 0 && b < kv->n ? kv->ref[b] : -1;
}

/* ---- hash table (linear probing, backward-shift deletion) ---------------- */

static int32_t table_find(const struct pf_kv *kv, uint64_t h)
{
	for (uint32_t i = (uint32_t)h & kv->table_mask;; i = (i + 1) & kv->table_mask) {
		int32_t b = kv->table[i];
		if (b < 0)
			return -1;
		if (kv->hash[b] == h)
			return b;
	}
}

static void table_insert(struct pf_kv *kv, int32_t b)
{
	uint32_t i = (uint32_t)kv->hash[b] & kv->table_mask;
	while (kv->table[i] >= 0)
		i = (i + 1) & kv->table_mask;
	kv->table[i] = b;
	kv->registered[b] = 1;
}

static void table_remove(struct pf_kv *kv, int32_t b)
{
	uint32_t i = (uint32_t)kv->hash[b] & kv->table_mask;
	while (kv->table[i] != b)
		i = (i + 1) & kv->table_mask;
	/* shift later members of the probe run back so lookups never stop early */
	uint32_t j = i;
	for (;;) {
		j = (j + 1) & kv->table_mask;
		int32_t c = kv->table[j];
		if (c < 0)
			break;
		uint32_t home = (uint32_t)kv->hash[c] & kv->table_mask;
		/* c may move to i when its home is not in the cyclic range (i, j] */
		if (((j - home) & kv->table_mask) >= ((j - i) & kv->table_mask)) {
			kv->table[i] = c;
			i = j;
		}
	}
	kv->table[i] = -1;
	kv->registered[b] = 0;
}

/* ---- block lifecycle ------------------------------------------------------ */

static void lru_unlink(struct pf_kv *kv, int32_t b)
{
	if (kv->prev[b] >= 0)
		kv->next[kv->prev[b]] = kv->next[b];
	else
		kv->lru_head = kv->next[b];
	if (kv->next[b] >= 0)
		kv->prev[kv->next[b]] = kv->prev[b];
	else
		kv->lru_tail = kv->prev[b];
	kv->n_cached--;
}

static void lru_push_tail(struct pf_kv *kv, int32_t b)
{
	kv->prev[b] = kv->lru_tail;
	kv->next[b] = -1;
	if (kv->lru_tail >= 0)
		kv->next[kv->lru_tail] = b;
	else
		kv->lru_head = b;
	kv->lru_tail = b;
	kv->n_cached++;
}

static int32_t block_alloc(struct pf_kv *kv)
{
	int32_t b = kv->free_top;
	if (b >= 0) {
		kv->free_top = kv->next[b];
		kv->n_free--;
	} else if (kv->lru_head >= 0) {
		/* only now, with the free list empty, give up a cached prefix */
		b = kv->lru_head;
		lru_unlink(kv, b);
		table_remove(kv, b);
		kv->st.evictions++;
	} else {
		return -1;
	}
	kv->state[b] = B_USED;
	kv->ref[b] = 1;
	kv->n_used++;
	return b;
}

static void block_unref(struct pf_kv *kv, int32_t b)
{
	if (--kv->ref[b] > 0)
		return;
	kv->n_used--;
	if (kv->registered[b]) {
		kv->state[b] = B_CACHED;
		lru_push_tail(kv, b);
	} else {
		kv->state[b] = B_FREE;
		kv->next[b] = kv->free_top;
		kv->free_top = b;
		kv->n_free++;
	}
}

static void block_ref(struct pf_kv *kv, int32_t b)
{
	if (kv->state[b] == B_CACHED) {
		lru_unlink(kv, b);
		kv->state[b] = B_USED;
		kv->n_used++;
	}
	kv->ref[b]++;
}

/* ---- sequences ------------------------------------------------------------ */

static int seq_grow_table(struct pf_kv_seq *seq, int32_t need)
{
	if (need <= seq->cap)
		return 0;
	int32_t cap = seq->cap ? seq->cap : 8;
	while (cap < need)
		cap *= 2;
	int32_t *nb = realloc(seq->blocks, (size_t)cap * sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	seq->blocks = nb;
	seq->cap = cap;
	return 0;
}

int pf_kv_seq_reserve(struct pf_kv *kv, struct pf_kv_seq *seq, int32_t n_tokens)
{
	if (n_tokens < 0)
		return -EINVAL;
	int32_t need = (n_tokens + kv->bs - 1) / kv->bs;
	if (need > seq->n_blocks) {
		if (need - seq->n_blocks > pf_kv_num_available(kv))
			return -ENOSPC;
		int r = seq_grow_table(seq, need);
		if (r)
			return r;
		while (seq->n_blocks < need)
			seq->blocks[seq->n_blocks++] = block_alloc(kv);
	}
	if (n_tokens > seq->n_tokens)
		seq->n_tokens = n_tokens;
	return 0;
}

int pf_kv_seq_prepare_write(struct pf_kv *kv, struct pf_kv_seq *seq, int32_t from, int32_t to,
			    struct pf_kv_copy *copies, int32_t cap_copies, int32_t *n_copies)
{
	if (from < 0 || to > seq->n_blocks * kv->bs)
		return -EINVAL;
	for (int32_t i = from / kv->bs; i < seq->n_blocks && i * kv->bs < to; i++) {
		int32_t b = seq->blocks[i];
		if (kv->ref[b] <= 1)
			continue;
		if (*n_copies >= cap_copies)
			return -E2BIG;
		int32_t nb = block_alloc(kv);
		if (nb < 0)
			return -ENOSPC;
		copies[(*n_copies)++] = (struct pf_kv_copy){ b, nb };
		block_unref(kv, b);
		seq->blocks[i] = nb;
		kv->st.cow_copies++;
		/* the copy is private and about to change: it is not the cached block */
		if (i < seq->n_hashed) {
			seq->n_hashed = i;
			seq->last_hash = i ? kv->hash[seq->blocks[i - 1]] : 0;
		}
	}
	return 0;
}

int pf_kv_seq_match_prefix(struct pf_kv *kv, struct pf_kv_seq *seq, const int32_t *tokens, int32_t n,
			   int32_t max_tokens)
{
	uint64_t h = 0;
	int32_t i = 0, nb = (max_tokens < n ? max_tokens : n) / kv->bs;
	if (nb <= 0)
		return 0;
	int r = seq_grow_table(seq, seq->n_blocks + nb);
	if (r)
		return r;
	for (; i < nb; i++) {
		const int32_t *t = tokens + (size_t)i * kv->bs;
		uint64_t hi = pf_kv_hash_block(h, t, kv->bs);
		int32_t b = table_find(kv, hi);
		/* verify, so only a true match of the whole prefix is shared */
		if (b < 0 || kv->parent[b] != h || memcmp(kv->tokens + (size_t)b * kv->bs, t, (size_t)kv->bs * sizeof(*t)))
			break;
		block_ref(kv, b);
		seq->blocks[seq->n_blocks++] = b;
		h = hi;
	}
	seq->n_hashed = i;
	seq->last_hash = h;
	seq->n_tokens = i * kv->bs;
	return i * kv->bs;
}

void pf_kv_record_prefix_lookup(struct pf_kv *kv, int32_t n_queried, int32_t n_hit, bool preempted)
{
	uint64_t q = (uint64_t)(n_queried > 0 ? n_queried : 0), h = (uint64_t)(n_hit > 0 ? n_hit : 0);
	if (preempted) {
		kv->st.prefix_preempted_queries_tokens += q;
		kv->st.prefix_preempted_hits_tokens += h;
	} else {
		kv->st.prefix_queries_tokens += q;
		kv->st.prefix_hits_tokens += h;
	}
}

void pf_kv_seq_commit(struct pf_kv *kv, struct pf_kv_seq *seq, const int32_t *tokens, int32_t n_computed)
{
	int32_t full = n_computed / kv->bs;
	if (full > seq->n_blocks)
		full = seq->n_blocks;
	for (int32_t i = seq->n_hashed; i < full; i++) {
		const int32_t *t = tokens + (size_t)i * kv->bs;
		uint64_t h = pf_kv_hash_block(seq->last_hash, t, kv->bs);
		int32_t b = seq->blocks[i];
		/* a block shared with another table (fork) may be registered already */
		if (!kv->registered[b] && table_find(kv, h) < 0) {
			kv->hash[b] = h;
			kv->parent[b] = seq->last_hash;
			memcpy(kv->tokens + (size_t)b * kv->bs, t, (size_t)kv->bs * sizeof(*t));
			table_insert(kv, b);
		}
		seq->last_hash = h;
		seq->n_hashed = i + 1;
	}
}

int pf_kv_seq_fork(struct pf_kv *kv, const struct pf_kv_seq *src, struct pf_kv_seq *dst)
{
	int r = seq_grow_table(dst, src->n_blocks);
	if (r)
		return r;
	for (int32_t i = 0; i < src->n_blocks; i++) {
		block_ref(kv, src->blocks[i]);
		dst->blocks[i] = src->blocks[i];
	}
	dst->n_blocks = src->n_blocks;
	dst->n_tokens = src->n_tokens;
	dst->n_hashed = src->n_hashed;
	dst->last_hash = src->last_hash;
	return 0;
}

static void host_free(struct pf_kv *kv, int32_t h)
{
	kv->host_next[h] = kv->host_free_top;
	kv->host_free_top = h;
	kv->n_host_free++;
}

void pf_kv_seq_release(struct pf_kv *kv, struct pf_kv_seq *seq)
{
	/* release from the tail so the LRU evicts a prefix's deepest blocks first */
	for (int32_t i = seq->n_blocks - 1; i >= 0; i--) {
		if (seq->swapped)
			host_free(kv, seq->blocks[i]);
		else
			block_unref(kv, seq->blocks[i]);
	}
	free(seq->blocks);
	memset(seq, 0, sizeof(*seq));
}

int pf_kv_set_host_blocks(struct pf_kv *kv, int32_t n_host)
{
	if (n_host < 0 || n_host > (1 << 28))
		return -EINVAL;
	if (kv->n_host_free != kv->n_host)
		return -EBUSY;
	int32_t *next = NULL;
	if (n_host > 0 && !(next = malloc((size_t)n_host * sizeof(*next))))
		return -ENOMEM;
	free(kv->host_next);
	kv->host_next = next;
	kv->n_host = kv->n_host_free = n_host;
	/* a stack from slot 0, like the device blocks: deterministic placement */
	for (int32_t i = 0; i < n_host; i++)
		next[i] = i + 1 < n_host ? i + 1 : -1;
	kv->host_free_top = n_host > 0 ? 0 : -1;
	return 0;
}

int32_t pf_kv_num_host_free(const struct pf_kv *kv)
{
	return kv->n_host_free;
}

int pf_kv_seq_swap_out(struct pf_kv *kv, struct pf_kv_seq *seq, int32_t n_valid, struct pf_kv_copy *pairs,
		       int32_t cap_pairs, int32_t *n_pairs)
{
	if (seq->swapped || n_valid < 0 || n_valid > seq->n_tokens)
		return -EINVAL;
	int32_t keep = (n_valid + kv->bs - 1) / kv->bs;
	if (keep > seq->n_blocks)
		keep = seq->n_blocks;
	if (keep > kv->n_host_free)
		return -ENOSPC;
	if (*n_pairs + keep > cap_pairs)
		return -E2BIG;
	/* blocks past the valid positions hold nothing worth keeping */
	for (int32_t i = seq->n_blocks - 1; i >= keep; i--)
		block_unref(kv, seq->blocks[i]);
	for (int32_t i = 0; i < keep; i++) {
		int32_t h = kv->host_free_top;
		kv->host_free_top = kv->host_next[h];
		kv->n_host_free--;
		pairs[(*n_pairs)++] = (struct pf_kv_copy){ seq->blocks[i], h };
		/* a block shared with a sibling stays with it; one only we held
		 * goes FREE (or CACHED, still good for prefix hits) — the pair
		 * reads it before anything may reuse it (kv.h: ordering) */
		block_unref(kv, seq->blocks[i]);
		seq->blocks[i] = h;
	}
	seq->n_blocks = keep;
	seq->n_tokens = n_valid;
	/* n_hashed and last_hash stay: the hash chain names token content,
	 * not physical blocks (and n_hashed ≤ full computed blocks ≤ keep), so
	 * commits after the swap-in carry on the chain */
	seq->swapped = true;
	kv->st.swapped_out_blocks += (uint64_t)keep;
	return 0;
}

int pf_kv_seq_swap_in(struct pf_kv *kv, struct pf_kv_seq *seq, struct pf_kv_copy *pairs, int32_t cap_pairs,
		      int32_t *n_pairs)
{
	if (!seq->swapped)
		return -EINVAL;
	if (seq->n_blocks > pf_kv_num_available(kv))
		return -ENOSPC;
	if (*n_pairs + seq->n_blocks > cap_pairs)
		return -E2BIG;
	for (int32_t i = 0; i < seq->n_blocks; i++) {
		int32_t b = block_alloc(kv), h = seq->blocks[i];
		pairs[(*n_pairs)++] = (struct pf_kv_copy){ h, b };
		host_free(kv, h);
		seq->blocks[i] = b;
	}
	seq->swapped = false;
	kv->st.swapped_in_blocks += (uint64_t)seq->n_blocks;
	return 0;
}

int pf_kv_check(const struct pf_kv *kv, const struct pf_kv_seq *const *seqs, int32_t n_seqs, char *err,
		size_t errlen)
{
	int32_t *cnt = calloc((size_t)kv->n, sizeof(*cnt));
	int r = 0;
	if (!cnt)
		return -ENOMEM;
	int32_t n_host_used = 0;
	uint8_t *host_seen = kv->n_host ? calloc((size_t)kv->n_host, 1) : NULL;
	if (kv->n_host && !host_seen) {
		free(cnt);
		return -ENOMEM;
	}
	for (int32_t s = 0; s < n_seqs; s++)
		for (int32_t i = 0; i < seqs[s]->n_blocks; i++) {
			int32_t b = seqs[s]->blocks[i];
			if (seqs[s]->swapped) {
				if (b < 0 || b >= kv->n_host || host_seen[b]++) {
					snprintf(err, errlen, "seq %d holds host slot %d: out of range or held twice", s, b);
					r = -EFAULT;
					goto out;
				}
				n_host_used++;
				continue;
			}
			if (b < 0 || b >= kv->n) {
				snprintf(err, errlen, "seq %d holds block id %d out of range", s, b);
				r = -EFAULT;
				goto out;
			}
			cnt[b]++;
		}
	int32_t n_free = 0, n_cached = 0, n_used = 0;
	for (int32_t b = 0; b < kv->n; b++) {
		n_used += kv->ref[b] > 0;
		if (cnt[b] != kv->ref[b]) {
			snprintf(err, errlen, "block %d: refcount %d but held by %d tables", b, kv->ref[b], cnt[b]);
			r = -EFAULT;
			goto out;
		}
		int want = kv->ref[b] > 0 ? B_USED : kv->registered[b] ? B_CACHED : B_FREE;
		if (kv->state[b] != want) {
			snprintf(err, errlen, "block %d: state %d, expected %d (ref %d, registered %d)", b, kv->state[b],
				 want, kv->ref[b], kv->registered[b]);
			r = -EFAULT;
			goto out;
		}
		if (kv->registered[b] && table_find(kv, kv->hash[b]) != b) {
			snprintf(err, errlen, "block %d: registered but not found under its hash", b);
			r = -EFAULT;
			goto out;
		}
	}
	for (int32_t b = kv->free_top; b >= 0; b = kv->next[b]) {
		if (kv->state[b] != B_FREE || ++n_free > kv->n) {
			snprintf(err, errlen, "free list corrupt at block %d", b);
			r = -EFAULT;
			goto out;
		}
	}
	for (int32_t b = kv->lru_head; b >= 0; b = kv->next[b]) {
		if (kv->state[b] != B_CACHED || ++n_cached > kv->n) {
			snprintf(err, errlen, "LRU list corrupt at block %d", b);
			r = -EFAULT;
			goto out;
		}
	}
	int32_t n_host_free = 0;
	for (int32_t h = kv->host_free_top; h >= 0; h = kv->host_next[h]) {
		if (host_seen[h] || ++n_host_free > kv->n_host) {
			snprintf(err, errlen, "host slot free list corrupt at slot %d", h);
			r = -EFAULT;
			goto out;
		}
	}
	if (n_host_free != kv->n_host_free || n_host_used + n_host_free != kv->n_host) {
		snprintf(err, errlen, "host slots: %d free (%d counted), %d held, of %d", n_host_free, kv->n_host_free,
			 n_host_used, kv->n_host);
		r = -EFAULT;
		goto out;
	}
	if (n_free != kv->n_free || n_cached != kv->n_cached || n_used != kv->n_used ||
	    kv->n_free + kv->n_cached + kv->n_used != kv->n) {
		snprintf(err, errlen, "counts: free %d/%d cached %d/%d used %d/%d of %d blocks", n_free, kv->n_free, n_cached,
			 kv->n_cached, n_used, kv->n_used, kv->n);
		r = -EFAULT;
	}
out:
	free(cnt);
	free(host_seen);
	return r;
}
