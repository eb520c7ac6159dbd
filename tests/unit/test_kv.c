/* test_kv.c — the KV block manager: allocation, refcounts, CoW, prefix cache, LRU. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "runtime/engine/kv.h"
#include "tests/unit/testutil.h"

static void check(struct pf_kv *kv, const struct pf_kv_seq *const *seqs, int n)
{
	char err[256] = "";
	int r = pf_kv_check(kv, seqs, n, err, sizeof(err));
	if (r)
		fail_msg("invariant: %s", err);
	/* what the stats segment publishes adds up: referenced + cached + free */
	struct pf_kv_stats st;
	pf_kv_get_stats(kv, &st);
	if (st.n_used + st.n_cached + st.n_free != st.n_blocks || st.n_used < 0 || st.n_cached < 0 || st.n_free < 0)
		fail_msg("stats: used %d + cached %d + free %d != %d blocks", st.n_used, st.n_cached, st.n_free, st.n_blocks);
}

/* The checker itself: a corrupt refcount or table is reported, not missed. */
static void test_check_catches_corruption(void **state)
{
	(void)state;
	struct pf_kv *kv;
	char err[256] = "";
	assert_int_equal(pf_kv_create(8, 16, &kv), 0);
	struct pf_kv_seq a = { 0 }, stray = { 0 };
	assert_int_equal(pf_kv_seq_reserve(kv, &a, 40), 0);
	const struct pf_kv_seq *one[] = { &a };
	check(kv, one, 1);
	/* a table the checker is not shown holds references: refcount 2, one holder */
	assert_int_equal(pf_kv_seq_fork(kv, &a, &stray), 0);
	assert_int_equal(pf_kv_check(kv, one, 1, err, sizeof(err)), -EFAULT);
	assert_non_null(strstr(err, "refcount 2 but held by 1"));
	pf_kv_seq_release(kv, &stray);
	check(kv, one, 1);
	/* a table entry overwritten with another block */
	int32_t saved = a.blocks[1];
	a.blocks[1] = a.blocks[0];
	err[0] = 0;
	assert_int_equal(pf_kv_check(kv, one, 1, err, sizeof(err)), -EFAULT);
	assert_non_null(strstr(err, "refcount"));
	a.blocks[1] = saved;
	check(kv, one, 1);
	pf_kv_seq_release(kv, &a);
	pf_kv_destroy(kv);
}

static void test_alloc_free(void **state)
{
	(void)state;
	struct pf_kv *kv;
	assert_int_equal(pf_kv_create(0, 16, &kv), -EINVAL);
	assert_int_equal(pf_kv_create(4, 12, &kv), -EINVAL);
	assert_int_equal(pf_kv_create(4, 16, &kv), 0);
	struct pf_kv_seq a = { 0 }, b = { 0 };
	assert_int_equal(pf_kv_seq_reserve(kv, &a, 1), 0);
	assert_int_equal(a.n_blocks, 1);
	assert_int_equal(pf_kv_seq_reserve(kv, &a, 16), 0);
	assert_int_equal(a.n_blocks, 1); /* 16 slots fit one block */
	assert_int_equal(pf_kv_seq_reserve(kv, &a, 17), 0);
	assert_int_equal(a.n_blocks, 2);
	assert_int_equal(pf_kv_num_available(kv), 2);
	/* 3 more blocks do not fit: nothing changes */
	assert_int_equal(pf_kv_seq_reserve(kv, &b, 48), -ENOSPC);
	assert_int_equal(b.n_blocks, 0);
	assert_int_equal(pf_kv_num_available(kv), 2);
	assert_int_equal(pf_kv_seq_reserve(kv, &b, 32), 0);
	assert_int_equal(pf_kv_num_available(kv), 0);
	const struct pf_kv_seq *all[] = { &a, &b };
	check(kv, all, 2);
	pf_kv_seq_release(kv, &a);
	assert_int_equal(pf_kv_num_available(kv), 2);
	check(kv, all + 1, 1);
	pf_kv_seq_release(kv, &b);
	assert_int_equal(pf_kv_num_available(kv), 4);
	check(kv, NULL, 0);
	pf_kv_destroy(kv);
}

static void test_fork_refcount_cow(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_kv_copy copies[8];
	int32_t nc = 0;
	assert_int_equal(pf_kv_create(8, 16, &kv), 0);
	struct pf_kv_seq p = { 0 }, c1 = { 0 }, c2 = { 0 };
	assert_int_equal(pf_kv_seq_reserve(kv, &p, 20), 0); /* one full block, one partial */
	assert_int_equal(pf_kv_seq_fork(kv, &p, &c1), 0);
	assert_int_equal(pf_kv_seq_fork(kv, &p, &c2), 0);
	assert_int_equal(pf_kv_refcount(kv, p.blocks[0]), 3);
	assert_int_equal(pf_kv_refcount(kv, p.blocks[1]), 3);
	const struct pf_kv_seq *all[] = { &p, &c1, &c2 };
	check(kv, all, 3);
	/* c1 writes position 20 (partial block 1): it gets a private copy */
	int32_t shared = p.blocks[1];
	assert_int_equal(pf_kv_seq_reserve(kv, &c1, 21), 0);
	assert_int_equal(pf_kv_seq_prepare_write(kv, &c1, 20, 21, copies, 8, &nc), 0);
	assert_int_equal(nc, 1);
	assert_int_equal(copies[0].src, shared);
	assert_int_not_equal(copies[0].dst, shared);
	assert_int_equal(c1.blocks[1], copies[0].dst);
	assert_int_equal(pf_kv_refcount(kv, shared), 2);
	assert_int_equal(pf_kv_refcount(kv, c1.blocks[1]), 1);
	assert_int_equal(pf_kv_refcount(kv, p.blocks[0]), 3); /* the full block stays shared */
	check(kv, all, 3);
	/* a second write into the now private block copies nothing */
	nc = 0;
	assert_int_equal(pf_kv_seq_prepare_write(kv, &c1, 21, 22, copies, 8, &nc), 0);
	assert_int_equal(nc, 0);
	/* copies capacity is respected */
	assert_int_equal(pf_kv_seq_prepare_write(kv, &c2, 20, 21, copies, 0, &nc), -E2BIG);
	pf_kv_seq_release(kv, &p);
	pf_kv_seq_release(kv, &c1);
	pf_kv_seq_release(kv, &c2);
	check(kv, NULL, 0);
	assert_int_equal(pf_kv_num_available(kv), 8);
	struct pf_kv_stats st;
	pf_kv_get_stats(kv, &st);
	assert_int_equal(st.cow_copies, 1);
	pf_kv_destroy(kv);
}

static void test_hash_chaining(void **state)
{
	(void)state;
	int32_t t[16];
	for (int i = 0; i < 16; i++)
		t[i] = i * 7;
	uint64_t h1 = pf_kv_hash_block(0, t, 16);
	uint64_t h2 = pf_kv_hash_block(h1, t, 16);
	assert_int_not_equal(h1, h2); /* same tokens, different prefix */
	assert_int_equal(h1, pf_kv_hash_block(0, t, 16));
	t[15]++;
	assert_int_not_equal(h1, pf_kv_hash_block(0, t, 16));
}

static void fill(int32_t *t, int n, int32_t seed)
{
	for (int i = 0; i < n; i++)
		t[i] = seed * 1000 + i;
}

static void test_prefix_cache_and_lru(void **state)
{
	(void)state;
	struct pf_kv *kv;
	int32_t a[64], b[64];
	assert_int_equal(pf_kv_create(6, 16, &kv), 0);
	fill(a, 64, 1);
	fill(b, 64, 2);
	/* sequence A computes 40 tokens: 2 full blocks get registered */
	struct pf_kv_seq s = { 0 };
	assert_int_equal(pf_kv_seq_match_prefix(kv, &s, a, 40, 39), 0);
	assert_int_equal(pf_kv_seq_reserve(kv, &s, 40), 0);
	pf_kv_seq_commit(kv, &s, a, 40);
	assert_int_equal(s.n_hashed, 2);
	int32_t a0 = s.blocks[0], a1 = s.blocks[1];
	pf_kv_seq_release(kv, &s);
	struct pf_kv_stats st;
	pf_kv_get_stats(kv, &st);
	assert_int_equal(st.n_cached, 2); /* kept for reuse */
	assert_int_equal(pf_kv_num_available(kv), 6);

	/* same first 32 tokens, then different: both cached blocks are hit */
	int32_t a2[48];
	memcpy(a2, a, sizeof(int32_t) * 32);
	fill(a2 + 32, 16, 9);
	struct pf_kv_seq s2 = { 0 };
	assert_int_equal(pf_kv_seq_match_prefix(kv, &s2, a2, 48, 47), 32);
	assert_int_equal(s2.blocks[0], a0);
	assert_int_equal(s2.blocks[1], a1);
	assert_int_equal(s2.n_tokens, 32);
	/* the last prompt token is always computed: max_tokens caps the hit */
	struct pf_kv_seq s3 = { 0 };
	assert_int_equal(pf_kv_seq_match_prefix(kv, &s3, a, 32, 31), 16);
	assert_int_equal(pf_kv_refcount(kv, a0), 2);
	const struct pf_kv_seq *all[] = { &s2, &s3 };
	check(kv, all, 2);
	pf_kv_seq_release(kv, &s2);
	pf_kv_seq_release(kv, &s3);

	/* a different prefix misses */
	struct pf_kv_seq s4 = { 0 };
	assert_int_equal(pf_kv_seq_match_prefix(kv, &s4, b, 64, 63), 0);
	/* fill the pool: free blocks go first, cached ones only when none are free */
	assert_int_equal(pf_kv_seq_reserve(kv, &s4, 64), 0); /* 4 blocks: exactly the free ones */
	pf_kv_get_stats(kv, &st);
	assert_int_equal(st.n_cached, 2);
	assert_int_equal(st.evictions, 0);
	assert_int_equal(pf_kv_seq_reserve(kv, &s4, 65), 0); /* evicts the least recently used */
	pf_kv_get_stats(kv, &st);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.n_cached, 1);
	const struct pf_kv_seq *one[] = { &s4 };
	check(kv, one, 1);
	/* LRU order: a1 was released before a0 (tail first), so a1 went first */
	assert_int_equal(s4.blocks[4], a1);
	/* a0 is still cached and still hits */
	struct pf_kv_seq s5 = { 0 };
	assert_int_equal(pf_kv_seq_match_prefix(kv, &s5, a, 40, 39), 16);
	/* lookups alone count nothing: the scheduler records admissions */
	pf_kv_get_stats(kv, &st);
	assert_true(st.prefix_hits_tokens == 0 && st.prefix_queries_tokens == 0);
	pf_kv_record_prefix_lookup(kv, 40, 16, false);
	pf_kv_record_prefix_lookup(kv, 48, 32, false);
	pf_kv_record_prefix_lookup(kv, 60, 48, true); /* a re-admission after preemption */
	pf_kv_get_stats(kv, &st);
	assert_true(st.prefix_queries_tokens == 88 && st.prefix_hits_tokens == 48);
	assert_true(st.prefix_preempted_queries_tokens == 60 && st.prefix_preempted_hits_tokens == 48);
	pf_kv_seq_release(kv, &s4);
	pf_kv_seq_release(kv, &s5);
	check(kv, NULL, 0);
	pf_kv_destroy(kv);
}

static void test_random_ops_invariants(void **state)
{
	(void)state;
	struct pf_kv *kv;
	enum { NS = 12 };
	struct pf_kv_seq seqs[NS];
	int32_t toks[NS][512];
	struct pf_kv_copy copies[64];
	uint64_t rng = 7;
	memset(seqs, 0, sizeof(seqs));
	assert_int_equal(pf_kv_create(64, 8, &kv), 0);
	for (int i = 0; i < NS; i++)
		for (int j = 0; j < 512; j++)
			toks[i][j] = (i % 3) * 100 + j % 50; /* shared prefixes across seqs */
	for (int step = 0; step < 20000; step++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		int s = (int)((rng >> 33) % NS), op = (int)((rng >> 40) % 5);
		struct pf_kv_seq *q = &seqs[s];
		if (op == 0 && q->n_blocks == 0) {
			pf_kv_seq_match_prefix(kv, q, toks[s], 200, 199);
		} else if (op == 1) {
			int32_t n = q->n_tokens + 1 + (int32_t)((rng >> 20) % 20);
			if (n <= 512 && pf_kv_seq_reserve(kv, q, n) == 0) {
				int32_t nc = 0;
				pf_kv_seq_prepare_write(kv, q, n - 1, n, copies, 64, &nc);
				pf_kv_seq_commit(kv, q, toks[s], n);
			}
		} else if (op == 2) {
			int d = (s + 1) % NS;
			if (seqs[d].n_blocks == 0 && q->n_blocks)
				assert_int_equal(pf_kv_seq_fork(kv, q, &seqs[d]), 0);
		} else if (op == 3) {
			pf_kv_seq_release(kv, q);
		}
		const struct pf_kv_seq *all[NS];
		for (int i = 0; i < NS; i++)
			all[i] = &seqs[i];
		check(kv, all, NS);
	}
	for (int i = 0; i < NS; i++)
		pf_kv_seq_release(kv, &seqs[i]);
	check(kv, NULL, 0);
	assert_int_equal(pf_kv_num_available(kv), 64);
	pf_kv_destroy(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_free),
		cmocka_unit_test(test_check_catches_corruption),
		cmocka_unit_test(test_fork_refcount_cow),
		cmocka_unit_test(test_hash_chaining),
		cmocka_unit_test(test_prefix_cache_and_lru),
		cmocka_unit_test(test_random_ops_invariants),
	};
	return tu_run_group_tests("test_kv", tests, NULL, NULL);
}
