/*
 * test_sched.c — the continuous-batching scheduler, without a model.
 *
 * A fake engine drives pf_sched: each step it "computes" the scheduled
 * tokens, appends a pseudo-random token for every sequence that got logits,
 * and finishes sequences at their max_tokens.  Seeded and repeatable.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "runtime/engine/kv.h"
#include "runtime/engine/scheduler.h"
#include "tests/unit/testutil.h"

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void check(struct pf_sched *s)
{
	char err[256] = "";
	if (pf_sched_check(s, err, sizeof(err)))
		fail_msg("scheduler invariant: %s", err);
}

/* Run one fake engine step; returns tokens scheduled.  Finishes sequences
 * whose generated count reaches their request's max_tokens. */
static int fake_step(struct pf_sched *s, const struct pf_sched_config *cfg, uint64_t *rng, int64_t now,
		     int *finished_reqs)
{
	struct pf_sched_batch b;
	int n = pf_sched_step(s, now, &b);
	assert_true(n >= 0);
	assert_true(b.n_tokens <= cfg->max_num_batched_tokens);
	struct pf_sched_stats st;
	pf_sched_get_stats(s, &st);
	assert_true(st.n_running <= cfg->max_num_seqs);
	/* every scheduled position lies inside its sequence's block table */
	for (int32_t t = 0; t < b.n_tokens; t++) {
		int32_t si = b.seq_idx[t];
		assert_true(si >= 0 && si < b.n_seqs);
		assert_true(b.pos[t] / 16 < b.n_table[si]);
	}
	check(s);
	pf_sched_step_done(s);
	for (int32_t i = 0; i < b.n_logits; i++) {
		struct pf_seq *q = b.logit_seqs[i];
		if (!q)
			continue;
		assert_int_equal(pf_sched_append(s, q, (int32_t)(rng_next(rng) % 50000)), 0);
		if (q->n_tokens - q->n_prompt >= q->req->max_tokens) {
			if (pf_sched_finish(s, q) == 0)
				(*finished_reqs)++;
		}
	}
	check(s);
	return n;
}

static void test_budget_and_chunked_prefill(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.max_num_batched_tokens = 64;
	cfg.watermark_blocks = 0;
	assert_int_equal(pf_kv_create(256, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t prompt[300];
	for (int i = 0; i < 300; i++)
		prompt[i] = i;
	struct pf_req r1 = { .id = 1, .max_tokens = 4 }, r2 = { .id = 2, .max_tokens = 4 };
	struct pf_seq *q1, *q2;
	assert_int_equal(pf_sched_add(s, &r1, prompt, 10, 0, &q1), 0);
	struct pf_sched_batch b;
	/* step 1: the short prompt is prefilled whole and will sample */
	assert_int_equal(pf_sched_step(s, 0, &b), 10);
	assert_int_equal(b.n_logits, 1);
	pf_sched_step_done(s);
	assert_int_equal(pf_sched_append(s, q1, 7), 0);
	/* a long prompt arrives: it is chunked while q1 keeps decoding */
	assert_int_equal(pf_sched_add(s, &r2, prompt, 300, 0, &q2), 0);
	assert_int_equal(pf_sched_step(s, 0, &b), 64);
	assert_int_equal(b.n_seqs, 2);
	assert_ptr_equal(b.seqs[0], q1); /* decodes go first */
	assert_int_equal(b.n_logits, 1);   /* only q1 samples; q2 is mid-prefill */
	assert_ptr_equal(b.logit_seqs[0], q1);
	assert_int_equal(q2->step_new, 63);
	pf_sched_step_done(s);
	assert_int_equal(q2->n_computed, 63);
	assert_int_equal(pf_sched_finish(s, q1), 0);
	/* the rest of the prompt in chunks of 64, the last one samples */
	int steps = 0;
	while (q2->n_computed < 300) {
		assert_true(pf_sched_step(s, 0, &b) <= 64);
		pf_sched_step_done(s);
		steps++;
	}
	assert_int_equal(steps, 4); /* 237 tokens left = 64+64+64+45 */
	assert_int_equal(b.n_logits, 1);
	check(s);
	pf_sched_finish(s, q2);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

/*
 * A prefill budget (what --max-step-ms derives) caps the prompt tokens of
 * each step, never the decodes: three streams decode every step while a
 * 300-token prompt goes in 20 tokens a step.
 */
static void test_prefill_budget(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.watermark_blocks = 0;
	assert_int_equal(pf_kv_create(256, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t prompt[300];
	for (int i = 0; i < 300; i++)
		prompt[i] = i;
	struct pf_req r[4] = { { .id = 1, .max_tokens = 100 }, { .id = 2, .max_tokens = 100 },
			       { .id = 3, .max_tokens = 100 }, { .id = 4, .max_tokens = 4 } };
	struct pf_seq *q[4];
	struct pf_sched_batch b;
	for (int i = 0; i < 3; i++)
		assert_int_equal(pf_sched_add(s, &r[i], prompt + 100 * i, 5, 0, &q[i]), 0);
	assert_int_equal(pf_sched_step(s, 0, &b), 15);
	pf_sched_step_done(s);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pf_sched_append(s, q[i], 1), 0);
	pf_sched_set_prefill_budget(s, 20);
	assert_int_equal(pf_sched_add(s, &r[3], prompt, 300, 0, &q[3]), 0);
	int steps = 0;
	while (q[3]->n_computed < 300) {
		int n = pf_sched_step(s, 0, &b);
		int decodes = 0, prompt_tokens = 0;
		for (int32_t t = 0; t < b.n_tokens; t++) {
			if (b.seqs[b.seq_idx[t]] == q[3])
				prompt_tokens++;
			else
				decodes++;
		}
		assert_int_equal(decodes, 3);      /* every stream, every step */
		assert_true(prompt_tokens <= 20);  /* the budget holds */
		assert_int_equal(n, decodes + prompt_tokens);
		pf_sched_step_done(s);
		for (int i = 0; i < 3; i++)
			assert_int_equal(pf_sched_append(s, q[i], 1), 0);
		steps++;
		check(s);
	}
	assert_int_equal(steps, 15); /* 300 / 20 */
	/* no cap: the next prompt goes in whole, beside the decodes */
	pf_sched_finish(s, q[3]);
	pf_sched_set_prefill_budget(s, 0);
	for (int i = 0; i < 300; i++)
		prompt[i] = 1000 + i; /* another prompt: nothing of it cached */
	assert_int_equal(pf_sched_add(s, &r[3], prompt, 300, 0, &q[3]), 0);
	assert_int_equal(pf_sched_step(s, 0, &b), 303);
	pf_sched_step_done(s);
	for (int i = 0; i < 4; i++)
		pf_sched_finish(s, q[i]);
	check(s);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

/*
 * Two beam requests holding each other's room: each has a beam running
 * that has its logits and waits (computes nothing) for its sibling, and a
 * sibling waiting for blocks the other request's running beam holds.
 * Nothing could be scheduled ever again; the newest idle beam must make
 * room so the older request's beam gets in, then the rest follow.
 */
static void test_idle_beams_unwedged(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.watermark_blocks = 0;
	cfg.prefix_caching = false;
	assert_int_equal(pf_kv_create(5, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t pa[20], pb[20];
	for (int i = 0; i < 20; i++) {
		pa[i] = i;
		pb[i] = 100 + i;
	}
	struct pf_req ra = { .id = 1, .max_tokens = 100 }, rb = { .id = 2, .max_tokens = 100 };
	struct pf_seq *a1, *b1, *a2, *b2;
	struct pf_sched_batch b;
	assert_int_equal(pf_sched_add(s, &ra, pa, 16, 0, &a1), 0);
	assert_int_equal(pf_sched_add(s, &rb, pb, 16, 0, &b1), 0);
	assert_int_equal(pf_sched_step(s, 0, &b), 32);
	pf_sched_step_done(s);
	/* both grow into a second block: 1 of 5 left */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pf_sched_append(s, a1, 1), 0);
		assert_int_equal(pf_sched_append(s, b1, 1), 0);
		assert_int_equal(pf_sched_step(s, 0, &b), 2);
		pf_sched_step_done(s);
	}
	/* each forks a sibling (a beam) that gets preempted: a1 and b1 now
	 * wait for them (they have their logits), and they need 2 blocks each
	 * to recompute, with 1 free */
	assert_int_equal(pf_sched_fork(s, a1, &a2), 0);
	assert_int_equal(pf_sched_fork(s, b1, &b2), 0);
	pf_sched_preempt(s, a2);
	pf_sched_preempt(s, b2);
	check(s);
	int n = pf_sched_step(s, 0, &b);
	assert_true(n > 0); /* before: 0, for ever */
	assert_int_equal(a1->state, PF_SEQ_RUNNING);
	assert_int_equal(a2->state, PF_SEQ_RUNNING); /* the older request's beam got in */
	assert_int_equal(b1->state, PF_SEQ_WAITING); /* the newest idle beam made room */
	assert_int_equal(n, 20);
	check(s);
	pf_sched_step_done(s);
	/* the older request finishes; the other one gets back in whole */
	pf_sched_finish(s, a1);
	pf_sched_finish(s, a2);
	int guard = 0;
	while (b1->n_computed < b1->n_tokens || b2->n_computed < b2->n_tokens) {
		assert_true(pf_sched_step(s, 0, &b) > 0);
		pf_sched_step_done(s);
		assert_true(++guard < 10);
	}
	check(s);
	pf_sched_finish(s, b1);
	pf_sched_finish(s, b2);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

static void test_preemption_and_recompute(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.watermark_blocks = 0;
	cfg.prefix_caching = false;
	assert_int_equal(pf_kv_create(6, 16, &kv), 0); /* 96 token slots */
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t prompt[32] = { 0 };
	struct pf_req r1 = { .max_tokens = 100 }, r2 = { .max_tokens = 100 };
	struct pf_seq *q1, *q2;
	assert_int_equal(pf_sched_add(s, &r1, prompt, 32, 0, &q1), 0);
	assert_int_equal(pf_sched_add(s, &r2, prompt, 31, 0, &q2), 0);
	struct pf_sched_batch b;
	assert_int_equal(pf_sched_step(s, 0, &b), 63); /* both admitted: headroom allows it */
	pf_sched_step_done(s);
	/* both decode until the pool runs dry; then q2, the newest, is preempted */
	int steps = 0;
	do {
		pf_sched_append(s, q1, 1);
		if (q2->state == PF_SEQ_RUNNING)
			pf_sched_append(s, q2, 1);
		assert_true(pf_sched_step(s, 0, &b) >= 1);
		pf_sched_step_done(s);
		check(s);
		assert_true(++steps < 100);
	} while (b.n_preempted == 0);
	assert_int_equal(q2->state, PF_SEQ_WAITING);
	assert_int_equal(q1->state, PF_SEQ_RUNNING);
	assert_int_equal(q2->n_computed, 0);
	assert_int_equal(q2->n_tokens, 31 + steps); /* its generated tokens are kept */
	assert_int_equal(q2->n_preemptions, 1);
	/* when q1 finishes, q2 is recomputed: prompt and generated tokens */
	pf_sched_finish(s, q1);
	assert_int_equal(pf_sched_step(s, 0, &b), 31 + steps);
	assert_int_equal(b.n_logits, 1);
	pf_sched_step_done(s);
	check(s);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

static void test_priority_policy(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.policy = PF_SCHED_PRIORITY;
	cfg.max_num_seqs = 1;
	assert_int_equal(pf_kv_create(64, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t p[4] = { 1, 2, 3, 4 };
	struct pf_req lo = { .priority = 5 }, hi = { .priority = -1 };
	struct pf_seq *ql, *qh;
	assert_int_equal(pf_sched_add(s, &lo, p, 4, 0, &ql), 0);
	assert_int_equal(pf_sched_add(s, &hi, p, 4, 0, &qh), 0);
	struct pf_sched_batch b;
	assert_int_equal(pf_sched_step(s, 0, &b), 4);
	assert_ptr_equal(b.seqs[0], qh); /* lower value runs first despite arriving later */
	pf_sched_step_done(s);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

static void test_cancel_any_state(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.max_num_batched_tokens = 16;
	cfg.watermark_blocks = 0;
	assert_int_equal(pf_kv_create(32, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t p[100] = { 0 };
	struct pf_req r[3] = { { 0 } };
	struct pf_seq *q[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pf_sched_add(s, &r[i], p, 40, 0, &q[i]), 0);
	struct pf_sched_batch b;
	pf_sched_step(s, 0, &b); /* q0 prefilling (16 of 40) */
	pf_sched_step_done(s);
	assert_int_equal(q[0]->state, PF_SEQ_RUNNING);
	assert_int_equal(pf_sched_finish(s, q[0]), 0); /* cancelled mid-prefill */
	assert_int_equal(pf_sched_finish(s, q[2]), 0); /* cancelled while queued */
	check(s);
	pf_sched_step(s, 0, &b);
	assert_ptr_equal(b.seqs[0], q[1]);
	assert_int_equal(pf_sched_finish(s, q[1]), 0); /* cancelled inside a step */
	pf_sched_step_done(s);                          /* must not touch it */
	check(s);
	assert_int_equal(pf_kv_num_available(kv), 32);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

static void test_fork_shares_then_copies(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	assert_int_equal(pf_kv_create(32, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t p[20] = { 0 };
	struct pf_req r = { .max_tokens = 8 };
	struct pf_seq *a, *c;
	assert_int_equal(pf_sched_add(s, &r, p, 20, 0, &a), 0);
	struct pf_sched_batch b;
	pf_sched_step(s, 0, &b);
	pf_sched_step_done(s);
	assert_int_equal(pf_sched_fork(s, a, &c), 0);
	assert_int_equal(r.n_seqs, 2);
	assert_int_equal(pf_kv_refcount(kv, a->kv.blocks[1]), 2);
	pf_sched_append(s, a, 1);
	pf_sched_append(s, c, 2);
	assert_int_equal(pf_sched_step(s, 0, &b), 2);
	/* position 20 lies in the shared partial block: one copy each side? no —
	 * the first writer copies, the second then owns the original */
	assert_int_equal(b.n_copies, 1);
	assert_int_not_equal(a->kv.blocks[1], c->kv.blocks[1]);
	assert_int_equal(a->kv.blocks[0], c->kv.blocks[0]); /* full block still shared */
	pf_sched_step_done(s);
	check(s);
	assert_int_equal(pf_sched_finish(s, a), 1);
	assert_int_equal(pf_sched_finish(s, c), 0);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

static void test_static_batching_reserves(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.static_batching = true;
	cfg.static_batch = 2;
	cfg.watermark_blocks = 0;
	assert_int_equal(pf_kv_create(64, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t p[10] = { 0 };
	struct pf_req r[3] = { { .max_tokens = 100 }, { .max_tokens = 2 }, { .max_tokens = 2 } };
	struct pf_seq *q[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pf_sched_add(s, &r[i], p, 10, 0, &q[i]), 0);
	struct pf_sched_batch b;
	pf_sched_step(s, 0, &b);
	assert_int_equal(b.n_seqs, 2);
	assert_int_equal(q[0]->kv.n_blocks, (10 + 100 + 15) / 16); /* whole max_tokens reserved */
	pf_sched_step_done(s);
	pf_sched_append(s, q[0], 1);
	pf_sched_append(s, q[1], 1);
	pf_sched_finish(s, q[1]);
	/* q2 must wait for the whole batch (q0) to finish */
	pf_sched_step(s, 0, &b);
	assert_int_equal(b.n_seqs, 1);
	assert_int_equal(q[2]->state, PF_SEQ_WAITING);
	pf_sched_step_done(s);
	pf_sched_finish(s, q[0]);
	pf_sched_step(s, 0, &b);
	assert_ptr_equal(b.seqs[0], q[2]);
	pf_sched_step_done(s);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

/* 100k random operations, invariants after each step, then drain: every
 * admitted request must finish (FCFS). */
static void test_random_property(void **state)
{
	(void)state;
	uint64_t rng = 12345;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.max_num_batched_tokens = 96;
	cfg.max_num_seqs = 12;
	cfg.watermark_blocks = 2;
	assert_int_equal(pf_kv_create(48, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	enum { MAXR = 4096 };
	struct pf_req *reqs = calloc(MAXR, sizeof(*reqs));
	int n_req = 0, finished = 0, cancelled = 0;
	int32_t prompt[200];
	int ops = 100000;
	for (int op = 0; op < ops; op++) {
		int k = (int)(rng_next(&rng) % 100);
		if (k < 3 && n_req < MAXR) {
			int32_t n = 1 + (int32_t)(rng_next(&rng) % 150);
			for (int i = 0; i < n; i++)
				prompt[i] = (int32_t)(rng_next(&rng) % 4) * 1000 + i; /* some shared prefixes */
			struct pf_req *r = &reqs[n_req++];
			r->id = (uint64_t)n_req;
			r->max_tokens = 1 + (int32_t)(rng_next(&rng) % 60);
			struct pf_seq *q;
			assert_int_equal(pf_sched_add(s, r, prompt, n, op, &q), 0);
		} else if (k < 5) {
			/* cancel a random running or waiting sequence */
			struct pf_seq *q = pf_sched_first(s, (rng_next(&rng) & 1) ? PF_SEQ_RUNNING : PF_SEQ_WAITING);
			if (q && pf_sched_finish(s, q) == 0)
				cancelled++;
		} else if (k < 7) {
			/* fork a running sequence whose prompt is done (n > 1 sampling) */
			struct pf_seq *q = pf_sched_first(s, PF_SEQ_RUNNING);
			struct pf_sched_stats st;
			pf_sched_get_stats(s, &st);
			if (q && q->n_computed == q->n_tokens && st.n_running < cfg.max_num_seqs) {
				struct pf_seq *c;
				assert_int_equal(pf_sched_fork(s, q, &c), 0);
			}
		} else if (k < 8) {
			struct pf_seq *q = pf_sched_first(s, PF_SEQ_RUNNING);
			if (q)
				pf_sched_preempt(s, q);
		} else {
			fake_step(s, &cfg, &rng, op, &finished);
		}
		check(s);
	}
	/* drain: nothing new arrives; everything admitted must finish */
	int guard = 0;
	for (;;) {
		struct pf_sched_stats st;
		pf_sched_get_stats(s, &st);
		if (st.n_running == 0 && st.n_waiting == 0)
			break;
		fake_step(s, &cfg, &rng, ops, &finished);
		assert_true(++guard < 200000);
	}
	printf("# %d requests: %d finished, %d cancelled, drained in %d steps\n", n_req, finished, cancelled, guard);
	assert_int_equal(finished + cancelled, n_req);
	assert_int_equal(pf_kv_num_available(kv), 48);
	/* the counters the stats segment publishes add up after the workload */
	struct pf_sched_stats st;
	struct pf_kv_stats ks;
	pf_sched_get_stats(s, &st);
	pf_kv_get_stats(kv, &ks);
	assert_true(st.requests_added == (uint64_t)n_req && st.requests_done == (uint64_t)(finished + cancelled));
	assert_int_equal(st.n_req_running + st.n_req_waiting + st.n_req_preempted, 0);
	assert_int_equal(ks.n_used, 0);
	assert_int_equal(ks.n_cached + ks.n_free, ks.n_blocks);
	assert_true(ks.prefix_hits_tokens <= ks.prefix_queries_tokens);
	free(reqs);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

/* Sustained overload: far more requests than the pool holds; the watermark
 * must keep any request from being preempted more than twice. */
static void test_overload_no_thrash(void **state)
{
	(void)state;
	uint64_t rng = 99;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.max_num_batched_tokens = 256;
	cfg.max_num_seqs = 64;
	cfg.watermark_blocks = 4;
	assert_int_equal(pf_kv_create(64, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	enum { NR = 400 };
	struct pf_req *reqs = calloc(NR, sizeof(*reqs));
	int32_t prompt[128];
	int finished = 0, added = 0, max_pre = 0;
	for (int step = 0; added < NR || finished < NR; step++) {
		/* keep the queue full: 4 arrivals per step while any remain */
		for (int a = 0; a < 4 && added < NR; a++) {
			int32_t n = 16 + (int32_t)(rng_next(&rng) % 100);
			for (int i = 0; i < n; i++)
				prompt[i] = (int32_t)(rng_next(&rng) % 30000);
			reqs[added].max_tokens = 20 + (int32_t)(rng_next(&rng) % 180);
			struct pf_seq *q;
			assert_int_equal(pf_sched_add(s, &reqs[added++], prompt, n, step, &q), 0);
		}
		struct pf_sched_batch b;
		assert_true(pf_sched_step(s, step, &b) >= 0);
		pf_sched_step_done(s);
		for (int32_t i = 0; i < b.n_logits; i++) {
			struct pf_seq *q = b.logit_seqs[i];
			if (q->n_preemptions > max_pre)
				max_pre = q->n_preemptions;
			pf_sched_append(s, q, 1);
			if (q->n_tokens - q->n_prompt >= q->req->max_tokens) {
				pf_sched_finish(s, q);
				finished++;
			}
		}
		assert_true(step < 100000);
	}
	struct pf_sched_stats st;
	pf_sched_get_stats(s, &st);
	printf("# overload: %d requests, %llu preemptions in total, at most %d for one request\n", NR,
	       (unsigned long long)st.preemptions_total, max_pre);
	assert_true(max_pre <= 2);
	free(reqs);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

static void get_stats(struct pf_sched *s, struct pf_sched_stats *st)
{
	pf_sched_get_stats(s, st);
	check(s);
}

/* Requests and sequences are counted apart: forked siblings are one
 * request, running while any sibling runs, preempted only when all wait. */
static void test_request_counts(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	struct pf_sched_stats st;
	assert_int_equal(pf_kv_create(32, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t p[20] = { 0 };
	struct pf_req r = { .max_tokens = 8 }, r2 = { .max_tokens = 8 };
	struct pf_seq *a, *c, *d;
	assert_int_equal(pf_sched_add(s, &r, p, 20, 0, &a), 0);
	get_stats(s, &st);
	assert_true(st.requests_added == 1 && st.n_req_waiting == 1 && st.n_req_running == 0);
	struct pf_sched_batch b;
	pf_sched_step(s, 0, &b);
	pf_sched_step_done(s);
	assert_int_equal(pf_sched_fork(s, a, &c), 0);
	assert_int_equal(pf_sched_add(s, &r2, p, 10, 0, &d), 0);
	get_stats(s, &st);
	assert_int_equal(st.n_running, 2);
	assert_int_equal(st.n_req_running, 1);
	assert_int_equal(st.n_req_waiting, 1);
	/* one sibling preempted: the request still runs */
	pf_sched_preempt(s, c);
	get_stats(s, &st);
	assert_true(st.n_running == 1 && st.n_waiting == 2 && st.n_preempted_waiting == 1);
	assert_true(st.n_req_running == 1 && st.n_req_waiting == 1 && st.n_req_preempted == 0);
	/* both: the request waits, preempted */
	pf_sched_preempt(s, a);
	get_stats(s, &st);
	assert_true(st.n_running == 0 && st.n_waiting == 3 && st.n_preempted_waiting == 2);
	assert_true(st.n_req_running == 0 && st.n_req_waiting == 2 && st.n_req_preempted == 1);
	assert_true(st.preemptions_total == 2);
	assert_int_equal(pf_sched_finish(s, a), 1);
	assert_int_equal(pf_sched_finish(s, d), 0);
	get_stats(s, &st);
	assert_true(st.requests_done == 1 && st.n_req_waiting == 1 && st.n_req_preempted == 1);
	assert_int_equal(pf_sched_finish(s, c), 0);
	get_stats(s, &st);
	assert_true(st.requests_added == 2 && st.requests_done == 2 && st.n_req_waiting == 0 && st.n_req_preempted == 0);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

/* A request that fails admission for lack of blocks is looked up in the
 * prefix cache at every attempt, but counted once, when admitted (vLLM's
 * token counters); a re-admission after preemption counts apart. */
static void test_prefix_counted_once(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	struct pf_kv_stats ks;
	struct pf_sched_batch b;
	cfg.watermark_blocks = 0;
	assert_int_equal(pf_kv_create(8, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t pa[32], pb[64], pc[72];
	for (int i = 0; i < 72; i++) {
		if (i < 32)
			pa[i] = i;
		if (i < 64)
			pb[i] = 1000 + i;
		pc[i] = i; /* pa's 32 tokens, then 40 more */
	}
	struct pf_req ra = { .max_tokens = 1 }, rb = { .max_tokens = 10 }, rc = { .max_tokens = 4 };
	struct pf_seq *qa, *qb, *qc;
	/* A leaves two cached blocks behind */
	assert_int_equal(pf_sched_add(s, &ra, pa, 32, 0, &qa), 0);
	assert_int_equal(pf_sched_step(s, 0, &b), 32);
	pf_sched_step_done(s);
	pf_sched_finish(s, qa);
	/* B holds most of the pool; C (A's prefix + 40) cannot get its 3 more */
	assert_int_equal(pf_sched_add(s, &rb, pb, 64, 0, &qb), 0);
	assert_int_equal(pf_sched_step(s, 0, &b), 64);
	pf_sched_step_done(s);
	assert_int_equal(pf_sched_add(s, &rc, pc, 72, 0, &qc), 0);
	int attempts = 0;
	while (qb->n_tokens - qb->n_prompt < rb.max_tokens) {
		pf_sched_append(s, qb, 1);
		assert_true(pf_sched_step(s, 0, &b) >= 1);
		assert_int_equal(qc->state, PF_SEQ_WAITING);
		pf_sched_step_done(s);
		check(s);
		attempts++;
	}
	assert_true(attempts >= 5);
	pf_sched_finish(s, qb);
	pf_kv_get_stats(kv, &ks);
	assert_true(ks.prefix_queries_tokens == 32 + 64 && ks.prefix_hits_tokens == 0);
	/* admitted now: one query of its 72 tokens, 32 of them cached */
	assert_int_equal(pf_sched_step(s, 0, &b), 40);
	assert_int_equal(qc->state, PF_SEQ_RUNNING);
	pf_sched_step_done(s);
	pf_kv_get_stats(kv, &ks);
	assert_true(ks.prefix_queries_tokens == 32 + 64 + 72 && ks.prefix_hits_tokens == 32);
	/* preempted and re-admitted: its 64 committed tokens come back, counted apart */
	pf_sched_append(s, qc, 7);
	pf_sched_preempt(s, qc);
	assert_int_equal(pf_sched_step(s, 0, &b), 73 - 64);
	pf_sched_step_done(s);
	pf_kv_get_stats(kv, &ks);
	assert_true(ks.prefix_queries_tokens == 32 + 64 + 72 && ks.prefix_hits_tokens == 32);
	assert_true(ks.prefix_preempted_queries_tokens == 73 && ks.prefix_preempted_hits_tokens == 64);
	check(s);
	pf_sched_finish(s, qc);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

/*
 * A fake backend that stores, in each KV slot, the token id whose K/V it
 * would hold, and moves those ids exactly as a backend moves K/V: swap-outs,
 * then CoW copies, then swap-ins, then the step's writes.  Before each
 * write, every earlier position of the sequence must read back its own
 * token through the block table — the check that no swap, copy, prefix hit,
 * fork or preemption ever hands a sequence K/V that is not its own.
 */
struct shadow {
	int32_t bs, n_blocks, n_host;
	int32_t *pool, *host; /* (n_blocks, bs), (n_host, bs) token ids; -1: never written */
	uint64_t verified;
};

static void shadow_move(int32_t *dst, int32_t dst_id, const int32_t *src, int32_t src_id, int32_t bs)
{
	memcpy(dst + (size_t)dst_id * bs, src + (size_t)src_id * bs, (size_t)bs * sizeof(int32_t));
}

static void shadow_step(struct shadow *sh, const struct pf_sched_batch *b)
{
	/* a step never both swaps out and in: a freed host slot could be
	 * reused before its swap-in read it */
	assert_false(b->n_swap_out && b->n_swap_in);
	for (int32_t i = 0; i < b->n_swap_out; i++) {
		assert_true(b->swap_out[i].src >= 0 && b->swap_out[i].src < sh->n_blocks);
		assert_true(b->swap_out[i].dst >= 0 && b->swap_out[i].dst < sh->n_host);
		shadow_move(sh->host, b->swap_out[i].dst, sh->pool, b->swap_out[i].src, sh->bs);
	}
	for (int32_t i = 0; i < b->n_copies; i++)
		shadow_move(sh->pool, b->copies[i].dst, sh->pool, b->copies[i].src, sh->bs);
	for (int32_t i = 0; i < b->n_swap_in; i++) {
		assert_true(b->swap_in[i].src >= 0 && b->swap_in[i].src < sh->n_host);
		assert_true(b->swap_in[i].dst >= 0 && b->swap_in[i].dst < sh->n_blocks);
		shadow_move(sh->pool, b->swap_in[i].dst, sh->host, b->swap_in[i].src, sh->bs);
	}
	/* what attention would read: every earlier position of each sequence */
	for (int32_t si = 0; si < b->n_seqs; si++) {
		const struct pf_seq *q = b->seqs[si];
		for (int32_t p = 0; p < q->n_computed; p++) {
			int32_t blk = b->tables[si][p / sh->bs];
			int32_t got = sh->pool[(size_t)blk * sh->bs + p % sh->bs];
			if (got != q->tokens[p])
				fail_msg("seq %llu position %d (block %d): K/V of token %d, expected %d",
					 (unsigned long long)q->id, p, blk, got, q->tokens[p]);
			sh->verified++;
		}
	}
	for (int32_t t = 0; t < b->n_tokens; t++) {
		int32_t si = b->seq_idx[t], p = b->pos[t];
		sh->pool[(size_t)b->tables[si][p / sh->bs] * sh->bs + p % sh->bs] = b->tokens[t];
	}
}

/* Random arrivals, cancels, forks and steps under a pool far too small,
 * with every preemption swapped (or, in AUTO, the long ones), checked
 * against the shadow KV; then a drain.  Compared with recompute, the
 * swapped run must compute fewer prompt tokens again. */
static uint64_t run_swap_workload(enum pf_preempt_mode mode, int32_t n_host, uint64_t *ret_swaps)
{
	uint64_t rng = 777;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.max_num_batched_tokens = 128;
	cfg.max_num_seqs = 16;
	cfg.watermark_blocks = 1;
	cfg.preemption_mode = mode;
	cfg.swap_min_tokens = 40;
	const int32_t n_blocks = 32, bs = 16;
	assert_int_equal(pf_kv_create(n_blocks, bs, &kv), 0);
	assert_int_equal(pf_kv_set_host_blocks(kv, n_host), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	struct shadow sh = { .bs = bs, .n_blocks = n_blocks, .n_host = n_host };
	sh.pool = malloc(sizeof(int32_t) * (size_t)n_blocks * bs);
	sh.host = malloc(sizeof(int32_t) * (size_t)(n_host ? n_host : 1) * bs);
	memset(sh.pool, 0xff, sizeof(int32_t) * (size_t)n_blocks * bs);
	memset(sh.host, 0xff, sizeof(int32_t) * (size_t)(n_host ? n_host : 1) * bs);
	enum { NR = 600 };
	struct pf_req *reqs = calloc(NR, sizeof(*reqs));
	int32_t prompt[160];
	int added = 0;
	uint64_t computed = 0;
	for (int op = 0;; op++) {
		struct pf_sched_stats st;
		pf_sched_get_stats(s, &st);
		if (added == NR && st.n_running == 0 && st.n_waiting == 0)
			break;
		assert_true(op < 400000);
		int k = (int)(rng_next(&rng) % 100);
		if (k < 10 && added < NR) {
			int32_t n = 1 + (int32_t)(rng_next(&rng) % 150);
			for (int i = 0; i < n; i++)
				prompt[i] = (int32_t)(rng_next(&rng) % 3) * 1000 + i; /* shared prefixes */
			reqs[added].max_tokens = 1 + (int32_t)(rng_next(&rng) % 400);
			struct pf_seq *q;
			assert_int_equal(pf_sched_add(s, &reqs[added++], prompt, n, op, &q), 0);
		} else if (k < 11) {
			/* cancel, swapped ones included */
			struct pf_seq *q = pf_sched_first(s, (rng_next(&rng) & 1) ? PF_SEQ_RUNNING : PF_SEQ_WAITING);
			if (q)
				pf_sched_finish(s, q);
		} else if (k < 14) {
			struct pf_seq *q = pf_sched_first(s, PF_SEQ_RUNNING);
			if (q && q->n_computed == q->n_tokens && st.n_running < cfg.max_num_seqs) {
				struct pf_seq *c;
				assert_int_equal(pf_sched_fork(s, q, &c), 0);
			}
		} else {
			struct pf_sched_batch b;
			int n = pf_sched_step(s, op, &b);
			assert_true(n >= 0);
			shadow_step(&sh, &b);
			computed += (uint64_t)b.n_tokens;
			pf_sched_step_done(s);
			for (int32_t i = 0; i < b.n_logits; i++) {
				struct pf_seq *q = b.logit_seqs[i];
				if (!q)
					continue;
				assert_int_equal(pf_sched_append(s, q, 100000 + (int32_t)(rng_next(&rng) % 50000)), 0);
				if (q->n_tokens - q->n_prompt >= q->req->max_tokens)
					pf_sched_finish(s, q);
			}
		}
		check(s);
	}
	struct pf_sched_stats st;
	struct pf_kv_stats ks;
	pf_sched_get_stats(s, &st);
	pf_kv_get_stats(kv, &ks);
	printf("# %s, %d host slots: %llu preemptions (%llu swapped out, %llu in), %llu blocks out, %llu tokens "
	       "computed, %llu K/V reads verified\n",
	       mode == PF_PREEMPT_SWAP ? "swap" : mode == PF_PREEMPT_AUTO ? "auto" : "recompute", n_host,
	       (unsigned long long)st.preemptions_total, (unsigned long long)st.swap_outs_total,
	       (unsigned long long)st.swap_ins_total, (unsigned long long)ks.swapped_out_blocks,
	       (unsigned long long)computed, (unsigned long long)sh.verified);
	assert_true(st.preemptions_total > 20); /* the pool really was too small */
	assert_true(st.swap_ins_total <= st.swap_outs_total);
	assert_int_equal(ks.n_host_free, n_host); /* every slot came back */
	assert_int_equal(ks.n_used, 0);
	assert_int_equal(st.n_swapped, 0);
	*ret_swaps = st.swap_outs_total;
	free(sh.pool);
	free(sh.host);
	free(reqs);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
	return computed;
}

static void test_swap_preemption(void **state)
{
	(void)state;
	uint64_t swaps_r, swaps_s, swaps_a, swaps_small;
	uint64_t recompute = run_swap_workload(PF_PREEMPT_RECOMPUTE, 64, &swaps_r);
	uint64_t swap = run_swap_workload(PF_PREEMPT_SWAP, 64, &swaps_s);
	uint64_t aut = run_swap_workload(PF_PREEMPT_AUTO, 64, &swaps_a);
	/* too few host slots for all victims: swaps while room lasts, then recomputes */
	run_swap_workload(PF_PREEMPT_SWAP, 6, &swaps_small);
	assert_int_equal(swaps_r, 0);
	assert_true(swaps_s > 0 && swaps_a > 0 && swaps_small > 0);
	/* AUTO swaps only long victims, so some preemptions recompute */
	assert_true(swaps_a <= swaps_s);
	/* swapping saves recomputation */
	assert_true(swap < recompute);
	(void)aut;
}

/* Swap-out drops blocks past the computed positions; host slot
 * bookkeeping, refusal when slots run out, and swap-in of a sequence
 * that shared blocks with a fork. */
static void test_swap_kv_unit(void **state)
{
	(void)state;
	struct pf_kv *kv;
	assert_int_equal(pf_kv_create(8, 16, &kv), 0);
	assert_int_equal(pf_kv_set_host_blocks(kv, 3), 0);
	struct pf_kv_seq a = { 0 }, b = { 0 };
	struct pf_kv_copy pairs[8];
	int32_t n = 0;
	assert_int_equal(pf_kv_seq_reserve(kv, &a, 40), 0); /* 3 blocks */
	assert_int_equal(pf_kv_seq_fork(kv, &a, &b), 0);    /* shared */
	int32_t a0 = a.blocks[0];
	/* only 2 blocks hold positions below 20: the third is dropped */
	assert_int_equal(pf_kv_seq_swap_out(kv, &a, 20, pairs, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_true(a.swapped && a.n_blocks == 2 && a.n_tokens == 20);
	assert_int_equal(pairs[0].src, a0);
	assert_int_equal(pf_kv_refcount(kv, a0), 1); /* b still holds it */
	assert_int_equal(pf_kv_num_host_free(kv), 1);
	assert_int_equal(pf_kv_set_host_blocks(kv, 5), -EBUSY);
	/* b needs 3 slots, 1 is left: refused, nothing changed */
	n = 0;
	assert_int_equal(pf_kv_seq_swap_out(kv, &b, 40, pairs, 8, &n), -ENOSPC);
	assert_int_equal(n, 0);
	assert_false(b.swapped);
	const struct pf_kv_seq *tables[] = { &a, &b };
	char err[256];
	assert_int_equal(pf_kv_check(kv, tables, 2, err, sizeof(err)), 0);
	/* back in: fresh private blocks, slots free again */
	n = 0;
	assert_int_equal(pf_kv_seq_swap_in(kv, &a, pairs, 1, &n), -E2BIG);
	assert_int_equal(pf_kv_seq_swap_in(kv, &a, pairs, 8, &n), 0);
	assert_int_equal(n, 2);
	assert_false(a.swapped);
	assert_true(a.blocks[0] != a0 && pf_kv_refcount(kv, a.blocks[0]) == 1);
	assert_int_equal(pf_kv_num_host_free(kv), 3);
	assert_int_equal(pf_kv_check(kv, tables, 2, err, sizeof(err)), 0);
	/* a swapped sequence released gives its slots back */
	n = 0;
	assert_int_equal(pf_kv_seq_swap_out(kv, &b, 40, pairs, 8, &n), 0);
	pf_kv_seq_release(kv, &b);
	assert_int_equal(pf_kv_num_host_free(kv), 3);
	pf_kv_seq_release(kv, &a);
	assert_int_equal(pf_kv_num_available(kv), 8);
	pf_kv_destroy(kv);
}

/* A static batch larger than one step's token budget forms over several
 * steps (the budget bounds a step, not the batch), then closes. */
static void test_static_batch_spans_budget(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.static_batching = true;
	cfg.static_batch = 4;
	cfg.max_num_batched_tokens = 25; /* two 10-token prompts and a bit per step */
	cfg.watermark_blocks = 0;
	assert_int_equal(pf_kv_create(64, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t p[10] = { 0 };
	struct pf_req r[6];
	struct pf_seq *q[6];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 6; i++) {
		r[i].max_tokens = 3;
		assert_int_equal(pf_sched_add(s, &r[i], p, 10, 0, &q[i]), 0);
	}
	struct pf_sched_batch b;
	int steps = 0;
	while (q[3]->state == PF_SEQ_WAITING || q[3]->n_computed < 10) {
		assert_true(pf_sched_step(s, 0, &b) > 0);
		pf_sched_step_done(s);
		for (int32_t i = 0; i < b.n_logits; i++)
			pf_sched_append(s, b.logit_seqs[i], 1);
		assert_true(++steps < 10);
	}
	assert_true(steps >= 2); /* it did take more than one step */
	for (int i = 0; i < 4; i++)
		assert_int_equal(q[i]->state, PF_SEQ_RUNNING);
	/* closed at 4: the fifth waits for the batch to drain */
	pf_sched_step(s, 0, &b);
	pf_sched_step_done(s);
	assert_int_equal(q[4]->state, PF_SEQ_WAITING);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

/*
 * The checks the engine runs after every step in test builds
 * (PF_CHECK_INVARIANTS): a corrupt scheduler or KV state is reported by
 * pf_sched_check(), and pf_sched_check_or_abort() stops the process loudly
 * (seen here in a child, so this binary goes on).
 */
static void test_check_catches_corruption(void **state)
{
	(void)state;
	struct pf_kv *kv;
	struct pf_sched *s;
	struct pf_sched_config cfg = pf_sched_config_default();
	char err[256] = "";
	assert_int_equal(pf_kv_create(32, 16, &kv), 0);
	assert_int_equal(pf_sched_create(&cfg, kv, &s), 0);
	int32_t p[40] = { 0 };
	struct pf_req r = { .max_tokens = 8 };
	struct pf_seq *q;
	assert_int_equal(pf_sched_add(s, &r, p, 40, 0, &q), 0);
	struct pf_sched_batch b;
	assert_true(pf_sched_step(s, 0, &b) > 0);
	pf_sched_step_done(s);
	check(s);
	pf_sched_check_or_abort(s, "a healthy step"); /* returns */

	/* a reference the scheduler does not know of: a leaked fork */
	struct pf_kv_seq stray = { 0 };
	assert_int_equal(pf_kv_seq_fork(kv, &q->kv, &stray), 0);
	assert_int_equal(pf_sched_check(s, err, sizeof(err)), -EFAULT);
	assert_non_null(strstr(err, "refcount 2 but held by 1"));

	/* the same state through the engine's hook: message and abort() */
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 2);
		pf_sched_check_or_abort(s, "the corrupting step");
		_exit(0); /* not reached when the check works */
	}
	close(fds[1]);
	char msg[512] = "";
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(msg) - 1 && (n = read(fds[0], msg + got, sizeof(msg) - 1 - got)) > 0)
		got += (size_t)n;
	close(fds[0]);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGABRT);
	assert_non_null(strstr(msg, "pinfer: invariant broken after the corrupting step: block "));
	assert_non_null(strstr(msg, "refcount 2 but held by 1"));

	pf_kv_seq_release(kv, &stray);
	check(s);

	/* a sequence claiming more computed tokens than it has */
	int32_t saved = q->n_computed;
	q->n_computed = q->n_tokens + 1;
	assert_int_equal(pf_sched_check(s, err, sizeof(err)), -EFAULT);
	assert_non_null(strstr(err, "computed"));
	q->n_computed = saved;
	check(s);
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_counts),
		cmocka_unit_test(test_prefix_counted_once),
		cmocka_unit_test(test_budget_and_chunked_prefill),
		cmocka_unit_test(test_prefill_budget),
		cmocka_unit_test(test_idle_beams_unwedged),
		cmocka_unit_test(test_preemption_and_recompute),
		cmocka_unit_test(test_priority_policy),
		cmocka_unit_test(test_cancel_any_state),
		cmocka_unit_test(test_fork_shares_then_copies),
		cmocka_unit_test(test_static_batching_reserves),
		cmocka_unit_test(test_static_batch_spans_budget),
		cmocka_unit_test(test_random_property),
		cmocka_unit_test(test_overload_no_thrash),
		cmocka_unit_test(test_swap_kv_unit),
		cmocka_unit_test(test_swap_preemption),
		cmocka_unit_test(test_check_catches_corruption),
	};
	return tu_run_group_tests("test_sched", tests, NULL, NULL);
}
