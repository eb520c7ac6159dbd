/*
 * kv.h — the paged KV-cache block manager (PagedAttention's allocator).
 *
 * The backend owns the KV memory: `n_blocks` blocks of `block_size` token
 * slots each.  This module owns who uses which block.  It never touches KV
 * data itself; when a copy is needed (copy-on-write) it tells the caller,
 * which asks the backend to copy.
 *
 * Block states:
 *
 *            alloc                      unref→0 (not cached)
 *   FREE ───────────► USED (ref ≥ 1) ─────────────────────────► FREE
 *     ▲                 │   ▲
 *     │ evict (LRU,     │   │ lookup hit (ref 0→1)
 *     │ only when the   │   │
 *     │ free list is    ▼   │
 *     └──────────── CACHED (ref 0, full, hashed; content kept)
 *                       unref→0 of a registered block
 *
 * - Free list: an intrusive stack, O(1) alloc and free.
 * - Refcounts: one per block table that holds the block.  Sequences forked
 *   from one prompt (n > 1 sampling, beam search) share blocks; the first
 *   write into a shared block goes to a private copy (pf_kv_seq_prepare_write).
 * - Prefix caching: a full block is identified by
 *     hash = XXH3(parent block's hash, the block's token ids)
 *   so a block's hash names its whole prefix.  Registered blocks stay in a
 *   hash table; when their last user lets go they become CACHED instead of
 *   FREE, are reused by later requests with the same prefix, and are evicted
 *   least-recently-used only when the free list is empty.  A hit is verified
 *   against the stored parent hash and token ids, not the hash alone, so a
 *   crafted collision cannot hand one client another client's KV.
 *
 * Sequences: struct pf_kv_seq is a block table plus the token count it
 * covers.  All operations here are single-threaded (the engine thread).
 *
 * Host swap slots (optional, pf_kv_set_host_blocks): a second, plain pool
 * of `n_host` slots in host memory, each the size of one block, for
 * preemption by swapping instead of recomputing.  A swapped-out sequence's
 * table holds host slot ids (seq->swapped); swap-out drops its device
 * blocks (a block it shared stays with the others; one only it held
 * becomes FREE, or CACHED if registered, its content still valid for prefix
 * hits), swap-in takes fresh private device blocks.  Like CoW, both only
 * list (src, dst) pairs; the backend moves the bytes.  Host slots have no
 * refcounts and no hashes: exactly one swapped table holds each used slot.
 *
 *   device blocks ──swap_out──► host slots ──swap_in──► fresh device blocks
 *
 * Ordering the caller must keep within one step: swap-outs read blocks that
 * are FREE again once this returns, so they run before anything writes a
 * device block (CoW copies, swap-ins, the forward pass); swap-ins read host
 * slots that are free again, so a step that swaps in must not also swap out
 * (the scheduler admits nothing in a step that preempted).
 */
#ifndef PF_KV_H
#define PF_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pf_kv;

struct pf_kv_seq {
	int32_t *blocks;      /* block table */
	int32_t n_blocks;     /* entries used */
	int32_t cap;          /* entries allocated */
	int32_t n_tokens;     /* token positions the table covers (0..n_tokens-1 hold K/V) */
	int32_t n_hashed;     /* leading full blocks whose hash is known */
	uint64_t last_hash;   /* hash of block n_hashed-1 (0 for none) */
	bool swapped;         /* blocks[] are host swap slots, not device blocks */
};

/*
 * n_free, n_cached and n_used are three counters kept apart (each block
 * moves between them as it changes state), not one derived from the
 * others, so n_used + n_cached + n_free == n_blocks is a real check.
 *
 * The prefix counters follow vLLM's token-based ones and are recorded by
 * the caller once per admission (pf_kv_record_prefix_lookup), not per
 * lookup: a request that waits through several admission attempts is
 * counted once.
 */
struct pf_kv_stats {
	int32_t n_blocks;
	int32_t n_free;       /* on the free list */
	int32_t n_cached;     /* ref 0 but kept for prefix reuse (evictable) */
	int32_t n_used;       /* ref ≥ 1 */
	uint64_t prefix_queries_tokens; /* tokens of new requests looked up in the prefix cache */
	uint64_t prefix_hits_tokens;    /* of those, served from cached blocks */
	uint64_t prefix_preempted_queries_tokens; /* the same for re-admissions after preemption */
	uint64_t prefix_preempted_hits_tokens;
	uint64_t evictions;
	uint64_t cow_copies;
	int32_t n_host;        /* host swap slots (0: swapping off) */
	int32_t n_host_free;
	uint64_t swapped_out_blocks; /* blocks moved to host slots, ever */
	uint64_t swapped_in_blocks;
};

/* A block copy the backend must perform before the next step writes (CoW). */
struct pf_kv_copy {
	int32_t src, dst;
};

/* Create a manager of n_blocks blocks of block_size slots.  Returns 0 and
 * *ret, -EINVAL for n_blocks < 1 or block_size not 8/16/32, -ENOMEM. */
int pf_kv_create(int32_t n_blocks, int32_t block_size, struct pf_kv **ret);

/* Accepts NULL. */
void pf_kv_destroy(struct pf_kv *kv);

int32_t pf_kv_block_size(const struct pf_kv *kv);

/* Blocks that an allocation can get right now: free plus evictable cached. */
int32_t pf_kv_num_available(const struct pf_kv *kv);

void pf_kv_get_stats(const struct pf_kv *kv, struct pf_kv_stats *ret);

/* Refcount of block b (tests and invariant checks). */
int32_t pf_kv_refcount(const struct pf_kv *kv, int32_t b);

/* Hash of a full block given its parent's hash (0 for the first block). */
uint64_t pf_kv_hash_block(uint64_t parent, const int32_t *tokens, int32_t n);

/*
 * Grow `seq` so it covers n_tokens positions, allocating blocks as needed.
 * Returns 0, or -ENOSPC when blocks ran out (the table is left as it was),
 * -ENOMEM.
 */
int pf_kv_seq_reserve(struct pf_kv *kv, struct pf_kv_seq *seq, int32_t n_tokens);

/*
 * Before writing positions [from, to) of `seq`: every block in that range
 * with refcount > 1 is replaced by a private copy.  Each copy is appended to
 * copies[*n_copies] (capacity cap_copies).  Returns 0, -ENOSPC when no block
 * is available for a copy, -E2BIG when copies is full.
 */
int pf_kv_seq_prepare_write(struct pf_kv *kv, struct pf_kv_seq *seq, int32_t from, int32_t to,
			    struct pf_kv_copy *copies, int32_t cap_copies, int32_t *n_copies);

/*
 * Prefix cache lookup for a new sequence with `tokens` (n): takes every
 * cached leading full block, at most `max_tokens` tokens' worth (callers pass
 * n - 1 so the last prompt token is always computed), into the empty `seq`.
 * Returns the number of tokens served from the cache (a multiple of the block
 * size), or -ENOMEM.  Counts nothing: the caller records the lookup with
 * pf_kv_record_prefix_lookup() once the sequence is actually admitted.
 */
int pf_kv_seq_match_prefix(struct pf_kv *kv, struct pf_kv_seq *seq, const int32_t *tokens, int32_t n,
			   int32_t max_tokens);

/*
 * Count one admitted sequence's prefix lookup: n_queried tokens looked up
 * (all its tokens, as vLLM counts), n_hit of them served from the cache.
 * A sequence coming back after a preemption (`preempted`) goes to the
 * separate preempted counters, so recomputation does not inflate the hit
 * rate of new requests.  Cannot fail.
 */
void pf_kv_record_prefix_lookup(struct pf_kv *kv, int32_t n_queried, int32_t n_hit, bool preempted);

/*
 * Register the full blocks of `seq` whose K/V are now computed (positions
 * below `n_computed`), given the sequence's token ids, so later requests can
 * reuse them.  Blocks already registered are skipped.  Cannot fail.
 */
void pf_kv_seq_commit(struct pf_kv *kv, struct pf_kv_seq *seq, const int32_t *tokens, int32_t n_computed);

/* dst (empty) shares every block of src (refcounts +1).  Returns 0, -ENOMEM. */
int pf_kv_seq_fork(struct pf_kv *kv, const struct pf_kv_seq *src, struct pf_kv_seq *dst);

/* Drop every block of `seq` and free its table.  Cannot fail. */
void pf_kv_seq_release(struct pf_kv *kv, struct pf_kv_seq *seq);

/* Give the manager n_host host swap slots (n_host ≥ 0; 0 turns swapping
 * off).  Returns 0, -EBUSY while any slot is in use, -EINVAL, -ENOMEM. */
int pf_kv_set_host_blocks(struct pf_kv *kv, int32_t n_host);

/* Host slots free right now.  Cannot fail. */
int32_t pf_kv_num_host_free(const struct pf_kv *kv);

/*
 * Swap out `seq` (not swapped): its blocks holding positions below
 * n_valid (≤ seq->n_tokens) move to host slots, one (device block, host
 * slot) pair each appended to pairs[*n_pairs] (capacity cap_pairs); blocks
 * past n_valid are dropped.  Afterwards seq->swapped and the table holds
 * the slots; seq->n_tokens = n_valid.  Returns 0, -ENOSPC when the host
 * slots do not suffice, -E2BIG when pairs is full (both: nothing changed).
 */
int pf_kv_seq_swap_out(struct pf_kv *kv, struct pf_kv_seq *seq, int32_t n_valid, struct pf_kv_copy *pairs,
		       int32_t cap_pairs, int32_t *n_pairs);

/*
 * Swap a swapped-out `seq` back in: each host slot gets a fresh device
 * block, one (host slot, device block) pair each appended to pairs, and
 * the slot is free again.  Returns 0, -ENOSPC when device blocks do not
 * suffice, -E2BIG when pairs is full (both: nothing changed).
 */
int pf_kv_seq_swap_in(struct pf_kv *kv, struct pf_kv_seq *seq, struct pf_kv_copy *pairs, int32_t cap_pairs,
		      int32_t *n_pairs);

/* Check every invariant against the given tables (tests): refcount of each
 * block == number of tables holding it; free/cached/used partition; hash
 * table consistent; each used host slot held by exactly one swapped table.
 * Returns 0 or -EFAULT with a message in err. */
int pf_kv_check(const struct pf_kv *kv, const struct pf_kv_seq *const *seqs, int32_t n_seqs, char *err,
		size_t errlen);

#endif
