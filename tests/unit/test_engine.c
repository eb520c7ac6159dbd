/*
 * test_engine.c — the serving engine end to end on SmolLM2-135M-Instruct:
 * parallel sampling, beam search and prefix caching must give exactly the
 * tokens of running each sequence alone; cancellation frees blocks at once;
 * the context limit is a clear error.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/dtype.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"
#include "runtime/daemon/statefile.h"
#include "runtime/text/tok.h"
#include "tests/unit/testutil.h"

#define MAXSEQ 16
#define MAXTOK 256

struct capture {
	int32_t tokens[MAXSEQ][MAXTOK];
	int32_t n[MAXSEQ];
	float logprob[MAXSEQ][MAXTOK];
	struct pf_sample_result last;
	int finished[MAXSEQ];
	int n_finished;
	enum pf_finish_reason why[MAXSEQ];
	struct pf_usage usage;
	/* beam hypotheses */
	int32_t beam_tokens[MAXSEQ][MAXTOK];
	int32_t beam_n[MAXSEQ];
	float beam_score[MAXSEQ];
	enum pf_finish_reason beam_why[MAXSEQ];
	int32_t beam_generated[MAXSEQ];
	bool beam_last_seen;
	int n_beams;
};

static void on_token(void *ctx, uint64_t id, void *user, int32_t index, int32_t token, const char *text, size_t len,
		     const struct pf_sample_result *res)
{
	struct capture *c = user;
	(void)ctx; (void)id; (void)text; (void)len;
	assert_true(index >= 0 && index < MAXSEQ && c->n[index] < MAXTOK);
	c->logprob[index][c->n[index]] = res->logprob;
	c->tokens[index][c->n[index]++] = token;
	c->last = *res;
}

static void on_finish(void *ctx, uint64_t id, void *user, int32_t index, enum pf_finish_reason why, const char *text,
		      size_t len, const struct pf_usage *u)
{
	struct capture *c = user;
	(void)ctx; (void)id; (void)text; (void)len;
	c->finished[index] = 1;
	c->why[index] = why;
	c->n_finished++;
	c->usage = *u;
}

static void on_beam(void *ctx, uint64_t id, void *user, int32_t rank, enum pf_finish_reason why,
		    const int32_t *tokens, int32_t n, const char *text, size_t len, const struct pf_usage *u)
{
	struct capture *c = user;
	(void)ctx; (void)id; (void)text; (void)len;
	assert_true(rank < MAXSEQ && n <= MAXTOK);
	/* ranks come in order, nothing after the last */
	assert_int_equal(rank, c->n_beams);
	assert_false(c->beam_last_seen);
	memcpy(c->beam_tokens[rank], tokens, sizeof(int32_t) * (size_t)n);
	c->beam_n[rank] = n;
	c->beam_score[rank] = u->beam_score;
	c->beam_why[rank] = why;
	c->beam_generated[rank] = u->generated_tokens;
	c->beam_last_seen = u->last;
	c->n_beams++;
}

static struct pf_engine *make_engine(bool prefix_caching)
{
	struct pf_engine_config cfg = pf_engine_config_default();
	struct pf_engine_events ev = { .on_token = on_token, .on_finish = on_finish, .on_beam = on_beam };
	struct pf_engine *e;
	char err[512];
	cfg.model_path = tu_model_path();
	cfg.kv_memory = 128LL << 20;
	cfg.sched.prefix_caching = prefix_caching;
	if (pf_engine_create(&cfg, &ev, &e, err, sizeof(err)))
		fail_msg("engine: %s", err);
	return e;
}

static int32_t encode(struct pf_engine *e, const char *text, int32_t *ids, int32_t cap)
{
	size_t n = 0;
	assert_int_equal(pf_tok_encode(pf_engine_tok(e), text, strlen(text), true, false, ids, (size_t)cap, &n), 0);
	return (int32_t)n;
}

static void run_until_idle(struct pf_engine *e)
{
	for (int guard = 0; pf_engine_has_work(e); guard++) {
		assert_true(pf_engine_step(e) >= 0);
		assert_true(guard < 100000);
	}
}

static void test_parallel_sampling_matches_alone(void **state)
{
	(void)state;
	struct pf_engine *e = make_engine(true);
	int32_t ids[256];
	int32_t n = encode(e, "Once upon a time, in a small village by the sea,", ids, 256);
	struct pf_request_params p = pf_request_params_default();
	p.sampling.temperature = 0.9f;
	p.sampling.top_p = 0.95f;
	p.sampling.seed = 1234;
	p.sampling.has_seed = true;
	p.sampling.max_tokens = 24;
	p.sampling.ignore_eos = true;
	p.n = 4;
	struct capture *together = calloc(1, sizeof(*together));
	uint64_t id;
	char err[256];
	assert_int_equal(pf_engine_submit(e, ids, n, &p, together, &id, err, sizeof(err)), 0);
	run_until_idle(e);
	assert_int_equal(together->n_finished, 4);
	int distinct = 0;
	for (int k = 0; k < 4; k++) {
		assert_int_equal(together->n[k], 24);
		if (k && memcmp(together->tokens[k], together->tokens[0], sizeof(int32_t) * 24))
			distinct++;
		/* the same sequence alone: n = 1 with sibling k's seed */
		struct capture *alone = calloc(1, sizeof(*alone));
		struct pf_request_params q = p;
		q.n = 1;
		q.sampling.seed = 1234 + (uint64_t)k * 0x9E3779B97F4A7C15ULL;
		assert_int_equal(pf_engine_submit(e, ids, n, &q, alone, &id, err, sizeof(err)), 0);
		run_until_idle(e);
		assert_memory_equal(alone->tokens[0], together->tokens[k], sizeof(int32_t) * 24);
		free(alone);
	}
	printf("# n=4: each completion equals its sequence run alone; %d of 3 siblings differ from the first\n", distinct);
	assert_true(distinct >= 1);
	struct pf_engine_stats st;
	pf_engine_get_stats(e, &st);
	assert_true(st.kv.cow_copies >= 3); /* the shared partial block was copied on write */
	free(together);
	pf_engine_destroy(e);
}

/* Cumulative log-probability of `hyp` after `prompt`, recomputed on a fresh
 * backend with no sharing: the prompt as one prefill, then each hypothesis
 * token decoded as a generated token — the same arithmetic the engine used
 * for the beams, so the sums must agree exactly (up to float summation). */
static double teacher_cum_logprob(struct pf_engine *e, const int32_t *prompt, int32_t n, const int32_t *hyp, int32_t nh)
{
	const struct pf_model *m = pf_engine_model(e);
	const int32_t nv = m->w.hp.n_vocab, bs = 16;
	struct pf_kv_config kv = { .n_blocks = (n + nh + bs) / bs + 1, .block_size = bs, .kv_dtype = PF_DT_F16 };
	struct pf_backend be;
	char err[256];
	if (pf_cpu_backend_create(&m->w, &kv, 0, &be, err, sizeof(err)))
		fail_msg("backend: %s", err);
	int32_t *table = malloc(sizeof(int32_t) * (size_t)kv.n_blocks), *pos = malloc(sizeof(int32_t) * (size_t)n);
	int32_t *seq = calloc((size_t)n, sizeof(int32_t));
	float *lg = malloc(sizeof(float) * (size_t)nv);
	for (int32_t i = 0; i < kv.n_blocks; i++)
		table[i] = i;
	for (int32_t i = 0; i < n; i++)
		pos[i] = i;
	const int32_t *tables[1] = { table };
	int32_t ntab = kv.n_blocks, np = n, row = n - 1;
	double cum = 0;
	for (int32_t j = 0; j < nh; j++) {
		int32_t p1 = n + j - 1, z = 0, r0 = 0;
		struct pf_batch b = {
			.n_tokens = j == 0 ? n : 1, .tokens = j == 0 ? prompt : &hyp[j - 1], .pos = j == 0 ? pos : &p1,
			.seq = j == 0 ? seq : &z, .n_seqs = 1, .block_table = tables, .n_table = &ntab,
			.n_logits = 1, .logit_rows = j == 0 ? &row : &r0, .n_prompt = &np,
		};
		assert_int_equal(be.ops->forward(be.ctx, &b, lg), 0);
		float mx = lg[0];
		for (int32_t v = 1; v < nv; v++)
			mx = lg[v] > mx ? lg[v] : mx;
		double sum = 0;
		for (int32_t v = 0; v < nv; v++)
			sum += exp((double)(lg[v] - mx));
		cum += (double)(lg[hyp[j]] - mx) - log(sum);
	}
	be.ops->destroy(be.ctx);
	free(table); free(pos); free(seq); free(lg);
	return cum;
}

static void test_beam_search_consistent(void **state)
{
	(void)state;
	struct pf_engine *e = make_engine(true);
	int32_t ids[512];
	int32_t n = encode(e, "The three most important inventions in history are", ids, 256);
	struct pf_request_params p = pf_request_params_default();
	p.beam_width = 4;
	p.length_penalty = 0; /* score = cumulative logprob: comparable exactly */
	p.sampling.max_tokens = 12;
	p.sampling.ignore_eos = true;
	struct capture *c = calloc(1, sizeof(*c));
	uint64_t id;
	char err[256];
	assert_int_equal(pf_engine_submit(e, ids, n, &p, c, &id, err, sizeof(err)), 0);
	run_until_idle(e);
	assert_int_equal(c->n_beams, 4);
	assert_true(c->beam_last_seen);
	assert_int_equal(c->n_finished, 0); /* the hypotheses are the report */
	/* greedy for comparison */
	struct capture *g = calloc(1, sizeof(*g));
	struct pf_request_params gp = pf_request_params_default();
	gp.sampling.temperature = 0;
	gp.sampling.max_tokens = 12;
	gp.sampling.ignore_eos = true;
	gp.sampling.logprobs = true;
	assert_int_equal(pf_engine_submit(e, ids, n, &gp, g, &id, err, sizeof(err)), 0);
	run_until_idle(e);
	double greedy_cum = 0;
	for (int j = 0; j < 12; j++)
		greedy_cum += g->logprob[0][j];
	for (int b = 0; b < 4; b++) {
		/* every hypothesis' score is its tokens' logprob sum, recomputed
		 * one prefix at a time without any sharing */
		double cum = teacher_cum_logprob(e, ids, n, c->beam_tokens[b], c->beam_n[b]);
		printf("# beam %d: %d tokens, score %.4f, recomputed %.4f\n", b, c->beam_n[b], (double)c->beam_score[b], cum);
		assert_true(fabs(cum - c->beam_score[b]) < 1e-3);
		if (b)
			assert_true(c->beam_score[b] <= c->beam_score[b - 1]);
	}
	printf("# greedy cumulative logprob %.4f, best beam %.4f\n", greedy_cum, (double)c->beam_score[0]);
	assert_true(c->beam_score[0] >= greedy_cum - 1e-3);
	free(c);
	free(g);
	pf_engine_destroy(e);
}

static void test_shared_prefix_same_tokens_less_compute(void **state)
{
	(void)state;
	static const char *sys =
		"<|im_start|>system\nYou are a meticulous assistant for a public library. You answer questions about "
		"opening hours, borrowing rules, fines, events and the catalogue. Be brief, friendly and exact. If you do "
		"not know an answer, say so and suggest asking the front desk. Never invent book titles. The library opens "
		"at nine in the morning and closes at eight in the evening on weekdays, and at five on Saturdays. It is "
		"closed on Sundays and public holidays. Members may borrow up to ten items for three weeks.<|im_end|>\n";
	static const char *questions[] = {
		"When do you open on Saturday?", "How many books can I borrow?", "Are you open on Sunday?",
		"How long is the loan period?", "Can I renew a book online?", "Do you have study rooms?",
		"What are the fines for late returns?", "Is there a children's section?",
	};
	const int nq = 8;
	struct pf_engine *with = make_engine(true), *without = make_engine(false);
	struct pf_engine *engines[2] = { with, without };
	struct capture *caps[2][8];
	uint64_t prompt_computed[2];
	for (int ei = 0; ei < 2; ei++) {
		struct pf_engine *e = engines[ei];
		for (int i = 0; i < nq; i++) {
			char text[2048];
			snprintf(text, sizeof(text), "%s<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", sys, questions[i]);
			int32_t ids[1024];
			size_t n = 0;
			assert_int_equal(pf_tok_encode(pf_engine_tok(e), text, strlen(text), true, true, ids, 1024, &n), 0);
			struct pf_request_params p = pf_request_params_default();
			p.sampling.temperature = 0;
			p.sampling.max_tokens = 16;
			p.sampling.ignore_eos = true;
			caps[ei][i] = calloc(1, sizeof(struct capture));
			uint64_t id;
			char err[256];
			assert_int_equal(pf_engine_submit(e, ids, (int32_t)n, &p, caps[ei][i], &id, err, sizeof(err)), 0);
			/* one after another, so later requests find the prefix cached */
			run_until_idle(e);
		}
		struct pf_engine_stats st;
		pf_engine_get_stats(e, &st);
		prompt_computed[ei] = st.prompt_tokens_computed;
		if (ei == 0)
			printf("# prefix cache: %llu of %llu queried prompt tokens hit\n",
			       (unsigned long long)st.kv.prefix_hits_tokens, (unsigned long long)st.kv.prefix_queries_tokens);
	}
	for (int i = 0; i < nq; i++) {
		assert_memory_equal(caps[0][i]->tokens[0], caps[1][i]->tokens[0], sizeof(int32_t) * 16);
		free(caps[0][i]);
		free(caps[1][i]);
	}
	printf("# prompt tokens computed: %llu with prefix caching, %llu without (%.1fx fewer)\n",
	       (unsigned long long)prompt_computed[0], (unsigned long long)prompt_computed[1],
	       (double)prompt_computed[1] / (double)prompt_computed[0]);
	assert_true(prompt_computed[0] * 3 < prompt_computed[1]);
	pf_engine_destroy(with);
	pf_engine_destroy(without);
}

/* An engine whose KV pool holds exactly n_blocks blocks of 16 tokens. */
static struct pf_engine *make_engine_blocks(int32_t n_blocks, bool prefix_caching)
{
	struct pf_engine_config cfg = pf_engine_config_default();
	struct pf_engine_events ev = { .on_token = on_token, .on_finish = on_finish, .on_beam = on_beam };
	struct pf_engine *e;
	char err[512];
	cfg.model_path = tu_model_path();
	cfg.sched.prefix_caching = prefix_caching;
	if (pf_engine_create(&cfg, &ev, &e, err, sizeof(err)))
		fail_msg("engine: %s", err);
	size_t bb = pf_kv_block_bytes(&pf_engine_model(e)->w.hp, 16, PF_DT_F16);
	pf_engine_destroy(e);
	cfg.kv_memory = (int64_t)((size_t)n_blocks * bb);
	if (pf_engine_create(&cfg, &ev, &e, err, sizeof(err)))
		fail_msg("engine: %s", err);
	struct pf_engine_stats st;
	pf_engine_get_stats(e, &st);
	assert_int_equal(st.kv.n_blocks, n_blocks);
	return e;
}

/* Step until idle; a step that computes nothing while work is left means
 * the engine is stuck (nothing here waits for a batching window). */
static void run_until_idle_unstuck(struct pf_engine *e)
{
	for (int guard = 0; pf_engine_has_work(e); guard++) {
		int n = pf_engine_step(e);
		assert_true(n >= 0);
		if (n == 0) {
			struct pf_engine_stats st;
			pf_engine_get_stats(e, &st);
			fail_msg("stuck: work left but nothing to compute after %d steps (%d sequences running, %d waiting, "
				 "%d of %d blocks used)", guard, st.running, st.waiting, st.kv.n_used, st.kv.n_blocks);
		}
		assert_true(guard < 10000);
	}
}

/*
 * Beam search needs all its beams' blocks at once; a request whose beams
 * cannot fit the pool used to be admitted and hang (2 beams running and
 * waiting for 2 that could never be admitted).  It is refused at
 * submission with the numbers; one that fits — to the last block — runs to
 * the end, also while another request competes for the pool.
 */
static void test_beams_that_cannot_fit(void **state)
{
	(void)state;
	struct pf_engine *e = make_engine_blocks(5, true);
	int32_t ids[64];
	int32_t n = encode(e, "Hello world", ids, 64);
	assert_true(n > 0 && n < 16);
	struct pf_request_params p = pf_request_params_default();
	p.beam_width = 4;
	p.sampling.max_tokens = 60;
	p.sampling.ignore_eos = true;
	struct capture *c = calloc(1, sizeof(*c));
	uint64_t id;
	char err[256] = "";
	/* the brief's case: 4 beams x up to 4 blocks on a 5-block pool */
	assert_int_equal(pf_engine_submit(e, ids, n, &p, c, &id, err, sizeof(err)), -ENOSPC);
	printf("# refused: %s\n", err);
	assert_non_null(strstr(err, "need 16 KV blocks"));
	assert_non_null(strstr(err, "the pool has 5"));
	assert_false(pf_engine_has_work(e));
	/* one position over a block per beam: 4 x 2 blocks */
	p.sampling.max_tokens = 16 - n + 2;
	assert_int_equal(pf_engine_submit(e, ids, n, &p, c, &id, err, sizeof(err)), -ENOSPC);
	/* every beam within one block: 5 beams fill the pool exactly */
	p.sampling.max_tokens = 16 - n + 1;
	p.beam_width = 5;
	assert_int_equal(pf_engine_submit(e, ids, n, &p, c, &id, err, sizeof(err)), 0);
	run_until_idle_unstuck(e);
	assert_int_equal(c->n_beams, 5);
	for (int b = 0; b < 5; b++)
		assert_int_equal(c->beam_n[b], p.sampling.max_tokens);
	struct pf_engine_stats st;
	pf_engine_get_stats(e, &st);
	assert_int_equal(st.kv.n_used, 0);

	/* 4 beams alone, then beside a greedy request that holds 3 of the 5
	 * blocks: the beams get preempted, come back, and choose the same */
	struct capture *alone = calloc(1, sizeof(*alone)), *with = calloc(1, sizeof(*with));
	struct capture *other = calloc(1, sizeof(*other));
	p.beam_width = 4;
	assert_int_equal(pf_engine_submit(e, ids, n, &p, alone, &id, err, sizeof(err)), 0);
	run_until_idle_unstuck(e);
	assert_int_equal(alone->n_beams, 4);
	struct pf_request_params g = pf_request_params_default();
	g.sampling.temperature = 0;
	g.sampling.ignore_eos = true;
	g.sampling.max_tokens = 40;
	assert_int_equal(pf_engine_submit(e, ids, n, &g, other, &id, err, sizeof(err)), 0);
	for (int i = 0; i < 3; i++)
		assert_true(pf_engine_step(e) > 0);
	assert_int_equal(pf_engine_submit(e, ids, n, &p, with, &id, err, sizeof(err)), 0);
	g.sampling.max_tokens = 20;
	struct capture *other2 = calloc(1, sizeof(*other2));
	assert_int_equal(pf_engine_submit(e, ids, n, &g, other2, &id, err, sizeof(err)), 0);
	run_until_idle_unstuck(e);
	assert_int_equal(other->n[0], 40);
	assert_int_equal(other2->n[0], 20);
	free(other2);
	assert_int_equal(with->n_beams, 4);
	for (int b = 0; b < 4; b++) {
		assert_int_equal(with->beam_n[b], alone->beam_n[b]);
		assert_memory_equal(with->beam_tokens[b], alone->beam_tokens[b], sizeof(int32_t) * (size_t)alone->beam_n[b]);
	}
	pf_engine_get_stats(e, &st);
	printf("# beams beside a greedy request on 5 blocks: %llu preemptions\n", (unsigned long long)st.preemptions);
	assert_int_equal(st.kv.n_used, 0);
	/* two beam requests that each fit the pool, but not together */
	struct capture *two[2] = { calloc(1, sizeof(struct capture)), calloc(1, sizeof(struct capture)) };
	for (int k = 0; k < 2; k++)
		assert_int_equal(pf_engine_submit(e, ids, n, &p, two[k], &id, err, sizeof(err)), 0);
	run_until_idle_unstuck(e);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(two[k]->n_beams, 4);
		for (int b = 0; b < 4; b++)
			assert_memory_equal(two[k]->beam_tokens[b], alone->beam_tokens[b],
					    sizeof(int32_t) * (size_t)alone->beam_n[b]);
		free(two[k]);
	}
	pf_engine_get_stats(e, &st);
	printf("# two beam requests that do not fit together: %llu preemptions\n", (unsigned long long)st.preemptions);
	assert_int_equal(st.kv.n_used, 0);
	/* the same with beams of two blocks: 2 x 2 each, 8 of 5 together */
	struct pf_request_params p2 = p;
	p2.beam_width = 2;
	p2.sampling.max_tokens = 30 - n;
	struct capture *solo = calloc(1, sizeof(*solo));
	assert_int_equal(pf_engine_submit(e, ids, n, &p2, solo, &id, err, sizeof(err)), 0);
	run_until_idle_unstuck(e);
	for (int k = 0; k < 2; k++)
		two[k] = calloc(1, sizeof(struct capture));
	for (int k = 0; k < 2; k++)
		assert_int_equal(pf_engine_submit(e, ids, n, &p2, two[k], &id, err, sizeof(err)), 0);
	run_until_idle_unstuck(e);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(two[k]->n_beams, 2);
		for (int b = 0; b < 2; b++)
			assert_memory_equal(two[k]->beam_tokens[b], solo->beam_tokens[b],
					    sizeof(int32_t) * (size_t)solo->beam_n[b]);
		free(two[k]);
	}
	free(solo);
	pf_engine_get_stats(e, &st);
	printf("# two 2-block beam requests that do not fit together: %llu preemptions\n",
	       (unsigned long long)st.preemptions);
	assert_int_equal(st.kv.n_used, 0);
	free(c);
	free(alone);
	free(with);
	free(other);
	pf_engine_destroy(e);
}

/*
 * More beam requests in one step than the engine once had room to list
 * (256): every one must get its beam step and finish, each with the
 * hypotheses of the same request run alone.
 */
static void test_300_beam_requests(void **state)
{
	(void)state;
	enum { NR = 300 };
	struct pf_engine_config cfg = pf_engine_config_default();
	struct pf_engine_events ev = { .on_token = on_token, .on_finish = on_finish, .on_beam = on_beam };
	struct pf_engine *e;
	char err[512];
	cfg.model_path = tu_model_path();
	cfg.kv_memory = 512LL << 20;
	cfg.sched.max_num_seqs = 2 * NR;
	cfg.sched.max_num_batched_tokens = 4096;
	if (pf_engine_create(&cfg, &ev, &e, err, sizeof(err)))
		fail_msg("engine: %s", err);
	int32_t ids[64];
	int32_t n = encode(e, "The sky is", ids, 64);
	struct pf_request_params p = pf_request_params_default();
	p.beam_width = 2;
	p.sampling.max_tokens = 2;
	p.sampling.ignore_eos = true;
	uint64_t id;
	struct capture *alone = calloc(1, sizeof(*alone));
	assert_int_equal(pf_engine_submit(e, ids, n, &p, alone, &id, err, sizeof(err)), 0);
	run_until_idle_unstuck(e);
	assert_int_equal(alone->n_beams, 2);
	struct capture *c = calloc(NR, sizeof(*c));
	for (int i = 0; i < NR; i++)
		assert_int_equal(pf_engine_submit(e, ids, n, &p, &c[i], &id, err, sizeof(err)), 0);
	/* all 300 prefill in one step and decode side by side */
	assert_int_equal(pf_engine_step(e), NR * n);
	run_until_idle_unstuck(e);
	for (int i = 0; i < NR; i++) {
		assert_int_equal(c[i].n_beams, 2);
		for (int b = 0; b < 2; b++) {
			assert_int_equal(c[i].beam_n[b], alone->beam_n[b]);
			assert_memory_equal(c[i].beam_tokens[b], alone->beam_tokens[b], sizeof(int32_t) * (size_t)alone->beam_n[b]);
		}
	}
	struct pf_engine_stats st;
	pf_engine_get_stats(e, &st);
	assert_int_equal(st.kv.n_used, 0);
	free(c);
	free(alone);
	pf_engine_destroy(e);
}

/*
 * Beam search reports one event per hypothesis and nothing else: the
 * reason each one ended (these hit max_tokens: LENGTH, not STOP), its own
 * token count, `last` on the final one and no further on_finish (which
 * the daemon turned into a third FINISHED for index 0 with 0 tokens).  A
 * cancelled beam request reports its end once.
 */
static void test_beam_events(void **state)
{
	(void)state;
	struct pf_engine *e = make_engine(true);
	int32_t ids[64];
	int32_t n = encode(e, "Hello world", ids, 64);
	struct pf_request_params p = pf_request_params_default();
	p.beam_width = 2;
	p.sampling.max_tokens = 5;
	p.sampling.ignore_eos = true;
	struct capture *c = calloc(1, sizeof(*c));
	uint64_t id;
	char err[256];
	assert_int_equal(pf_engine_submit(e, ids, n, &p, c, &id, err, sizeof(err)), 0);
	run_until_idle_unstuck(e);
	assert_int_equal(c->n_beams, 2);
	assert_int_equal(c->n_finished, 0);
	assert_true(c->beam_last_seen);
	for (int b = 0; b < 2; b++) {
		assert_int_equal(c->beam_why[b], PF_FINISH_LENGTH);
		assert_int_equal(c->beam_n[b], 5);
		assert_int_equal(c->beam_generated[b], 5);
	}
	/* a hypothesis that ends in a stop token says STOP: make the best
	 * one's third token a stop id */
	struct capture *s = calloc(1, sizeof(*s));
	p.sampling.stop_ids[0] = c->beam_tokens[0][2];
	p.sampling.n_stop_ids = 1;
	assert_int_equal(pf_engine_submit(e, ids, n, &p, s, &id, err, sizeof(err)), 0);
	run_until_idle_unstuck(e);
	assert_int_equal(s->n_finished, 0);
	assert_true(s->beam_last_seen);
	int n_stop = 0;
	for (int b = 0; b < s->n_beams; b++) {
		assert_int_equal(s->beam_why[b], s->beam_n[b] < 5 ? PF_FINISH_STOP : PF_FINISH_LENGTH);
		n_stop += s->beam_why[b] == PF_FINISH_STOP;
	}
	assert_true(n_stop > 0);
	/* cancelled after two steps: one end, with index 0 and last */
	struct capture *k = calloc(1, sizeof(*k));
	p.sampling.n_stop_ids = 0;
	assert_int_equal(pf_engine_submit(e, ids, n, &p, k, &id, err, sizeof(err)), 0);
	assert_true(pf_engine_step(e) > 0);
	assert_true(pf_engine_step(e) > 0);
	assert_int_equal(pf_engine_cancel(e, id, PF_FINISH_CANCELLED), 0);
	assert_int_equal(k->n_finished, 1);
	assert_int_equal(k->why[0], PF_FINISH_CANCELLED);
	assert_true(k->usage.last);
	assert_int_equal(k->n_beams, 0);
	assert_false(pf_engine_has_work(e));
	free(c);
	free(s);
	free(k);
	pf_engine_destroy(e);
}

/*
 * --max-step-ms: a long prompt goes in over several steps, each taking no
 * more prompt tokens than the budget derived for it, while a running
 * stream gets a token every step — and the tokens are the same as without
 * the budget (chunking never changes a row's arithmetic).  Counted in
 * steps and tokens, never in time: a 1 ms target keeps every budget near
 * its floor of one token whatever this machine's speed.
 */
static void test_max_step_ms(void **state)
{
	(void)state;
	struct capture *ref[2], *got[2];
	int32_t ids[2][1024], n[2];
	for (int run = 0; run < 2; run++) {
		struct pf_engine_config cfg = pf_engine_config_default();
		struct pf_engine_events ev = { .on_token = on_token, .on_finish = on_finish, .on_beam = on_beam };
		struct pf_engine *e;
		char err[512];
		cfg.model_path = tu_model_path();
		cfg.kv_memory = 64LL << 20;
		cfg.max_step_ms = run ? 1 : 0;
		if (pf_engine_create(&cfg, &ev, &e, err, sizeof(err)))
			fail_msg("engine: %s", err);
		struct capture **c = run ? got : ref;
		c[0] = calloc(1, sizeof(**c));
		c[1] = calloc(1, sizeof(**c));
		n[0] = encode(e, "Write a poem about the sea.", ids[0], 1024);
		char text[4096] = "";
		for (int i = 0; i < 6; i++)
			strcat(text, "The quick brown fox jumps over the lazy dog again. ");
		n[1] = encode(e, text, ids[1], 1024);
		assert_true(n[1] > 40);
		struct pf_request_params p = pf_request_params_default();
		p.sampling.temperature = 0;
		p.sampling.ignore_eos = true;
		p.sampling.max_tokens = 200; /* outlasts the prompt's steps */
		uint64_t id;
		assert_int_equal(pf_engine_submit(e, ids[0], n[0], &p, c[0], &id, err, sizeof(err)), 0);
		for (int i = 0; i < 3; i++)
			assert_true(pf_engine_step(e) > 0);
		p.sampling.max_tokens = 4;
		assert_int_equal(pf_engine_submit(e, ids[1], n[1], &p, c[1], &id, err, sizeof(err)), 0);
		int steps = 0;
		while (c[1]->n[0] == 0) {
			int32_t before = c[0]->n[0];
			assert_true(pf_engine_step(e) > 0);
			struct pf_engine_stats st;
			pf_engine_get_stats(e, &st);
			assert_int_equal(c[0]->n[0], before + 1); /* the stream's token, every step */
			if (run) {
				assert_true(st.prefill_budget >= 1);
				assert_true(st.last_step_prompt_tokens <= st.prefill_budget);
			}
			steps++;
		}
		struct pf_engine_stats st;
		pf_engine_get_stats(e, &st);
		printf("# max_step_ms %g: a %d-token prompt took %d steps beside a stream (budget %d; step %.1f ms + "
		       "%.2f ms a prompt token)\n", cfg.max_step_ms, n[1], steps, st.prefill_budget, st.step_base_ms,
		       st.prompt_token_ms);
		if (run) {
			assert_true(steps >= n[1] / PF_ENGINE_PROBE_TOKENS); /* in small chunks */
			assert_true(st.prompt_token_ms > 0 && st.step_base_ms > 0);
		} else {
			assert_int_equal(steps, 1);
		}
		run_until_idle_unstuck(e);
		pf_engine_destroy(e);
	}
	for (int k = 0; k < 2; k++) {
		assert_int_equal(got[k]->n[0], ref[k]->n[0]);
		assert_memory_equal(got[k]->tokens[0], ref[k]->tokens[0], sizeof(int32_t) * (size_t)ref[k]->n[0]);
		free(got[k]);
		free(ref[k]);
	}
}

static void test_cancel_frees_and_limits(void **state)
{
	(void)state;
	struct pf_engine *e = make_engine(true);
	int32_t ids[64];
	int32_t n = encode(e, "Count from one to a hundred: one, two, three,", ids, 64);
	struct pf_request_params p = pf_request_params_default();
	p.sampling.temperature = 0;
	p.sampling.max_tokens = 200;
	p.sampling.ignore_eos = true;
	struct capture *c = calloc(1, sizeof(*c));
	uint64_t id;
	char err[256];
	struct pf_engine_stats st0, st1;
	pf_engine_get_stats(e, &st0);
	assert_int_equal(pf_engine_submit(e, ids, n, &p, c, &id, err, sizeof(err)), 0);
	for (int i = 0; i < 5; i++)
		assert_true(pf_engine_step(e) > 0);
	assert_int_equal(c->n[0], 5);
	assert_int_equal(pf_engine_cancel(e, id, PF_FINISH_CANCELLED), 0);
	assert_int_equal(c->why[0], PF_FINISH_CANCELLED);
	assert_false(pf_engine_has_work(e));
	pf_engine_get_stats(e, &st1);
	assert_int_equal(st1.kv.n_used, 0); /* blocks are back (free or cached) at once */
	assert_int_equal(pf_engine_cancel(e, id, PF_FINISH_CANCELLED), -ENOENT);
	/* prompt + max_tokens over the limit: a clear error with both numbers */
	p.sampling.max_tokens = pf_engine_max_model_len(e);
	assert_int_equal(pf_engine_submit(e, ids, n, &p, c, &id, err, sizeof(err)), -EINVAL);
	printf("# over the limit: %s\n", err);
	assert_non_null(strstr(err, "exceeds the context limit"));
	/* a token outside the vocabulary */
	ids[0] = 1 << 30;
	p.sampling.max_tokens = 4;
	assert_int_equal(pf_engine_submit(e, ids, n, &p, c, &id, err, sizeof(err)), -EINVAL);
	free(c);
	pf_engine_destroy(e);
}

/* ---- persistence: export → state file → new engine → resume ------------------
 *
 * Each case runs a request uninterrupted, then again interrupted after k
 * tokens (k = 0, 1 and a later one): the unfinished sequences are exported,
 * written to a state file, the engine is destroyed, a new engine reads the
 * file and resumes them.  Replayed plus new tokens, each token's text chunk,
 * the whole text, logprobs, the finish reason and the usage count must equal
 * the uninterrupted run exactly.
 */

#define RS_SEQ 4
#define RS_TOK 64
#define RS_TEXT 4096

struct rs_cap {
	int32_t tok[RS_SEQ][RS_TOK];
	int32_t n[RS_SEQ];
	uint32_t chunk[RS_SEQ][RS_TOK];   /* text bytes reported with each token */
	float lp[RS_SEQ][RS_TOK];
	uint32_t n_top[RS_SEQ][RS_TOK];
	struct pf_sample_logprob top[RS_SEQ][RS_TOK][4];
	char text[RS_SEQ][RS_TEXT];
	size_t text_len[RS_SEQ];
	int32_t n_replayed[RS_SEQ];
	bool bad_order;                   /* gen_index off, or a replay after a new token */
	bool finished[RS_SEQ];
	enum pf_finish_reason why[RS_SEQ];
	int32_t usage_gen[RS_SEQ];
	int32_t cached[RS_SEQ];
	int n_finished;
	int32_t beam_tok[RS_SEQ][RS_TOK];
	int32_t beam_n[RS_SEQ];
	float beam_score[RS_SEQ];
	int n_beams;
};

static void rs_text(struct rs_cap *c, int32_t i, const char *t, size_t len)
{
	assert_true(c->text_len[i] + len <= RS_TEXT);
	if (len) /* on_finish passes NULL with nothing to release */
		memcpy(c->text[i] + c->text_len[i], t, len);
	c->text_len[i] += len;
}

static void rs_on_token(void *ctx, uint64_t id, void *user, int32_t index, int32_t token, const char *text,
			size_t len, const struct pf_sample_result *res)
{
	struct rs_cap *c = user;
	(void)ctx; (void)id;
	assert_true(index >= 0 && index < RS_SEQ && c->n[index] < RS_TOK);
	int32_t k = c->n[index];
	if (res->gen_index != (uint32_t)k || (res->replayed && c->n_replayed[index] != k) || res->token != token)
		c->bad_order = true;
	c->n_replayed[index] += res->replayed;
	c->tok[index][k] = token;
	c->chunk[index][k] = (uint32_t)len;
	c->lp[index][k] = res->logprob;
	c->n_top[index][k] = res->n_top;
	for (uint32_t j = 0; j < res->n_top && j < 4; j++)
		c->top[index][k][j] = res->top[j];
	c->n[index]++;
	rs_text(c, index, text, len);
}

static void rs_on_finish(void *ctx, uint64_t id, void *user, int32_t index, enum pf_finish_reason why,
			 const char *text, size_t len, const struct pf_usage *u)
{
	struct rs_cap *c = user;
	(void)ctx; (void)id;
	c->finished[index] = true;
	c->why[index] = why;
	c->usage_gen[index] = u->generated_tokens;
	c->cached[index] = u->cached_tokens;
	c->n_finished++;
	rs_text(c, index, text, len);
}

static void rs_on_beam(void *ctx, uint64_t id, void *user, int32_t rank, enum pf_finish_reason why,
		       const int32_t *tokens, int32_t n, const char *text, size_t len, const struct pf_usage *u)
{
	struct rs_cap *c = user;
	(void)ctx; (void)id; (void)text; (void)len; (void)why;
	assert_true(rank < RS_SEQ && n <= RS_TOK);
	memcpy(c->beam_tok[rank], tokens, sizeof(int32_t) * (size_t)n);
	c->beam_n[rank] = n;
	c->beam_score[rank] = u->beam_score;
	c->n_beams++;
}

static struct pf_engine *rs_engine(void)
{
	struct pf_engine_config cfg = pf_engine_config_default();
	struct pf_engine_events ev = { .on_token = rs_on_token, .on_finish = rs_on_finish, .on_beam = rs_on_beam };
	struct pf_engine *e;
	char err[512];
	cfg.model_path = tu_model_path();
	cfg.kv_memory = 64LL << 20;
	if (pf_engine_create(&cfg, &ev, &e, err, sizeof(err)))
		fail_msg("engine: %s", err);
	return e;
}

/* Write the exported sequences of request `user` to path, as the daemon
 * would at shutdown.  Returns how many were written. */
static int rs_save(struct pf_engine *e, void *user, const char *path)
{
	struct pf_engine_snapshot *v;
	int n = pf_engine_export(e, &v);
	assert_true(n >= 0);
	struct pf_state_record recs[RS_SEQ];
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (v[i].user != user)
			continue;
		assert_true(k < RS_SEQ);
		memset(&recs[k], 0, sizeof(recs[k]));
		recs[k].uid = 1000;
		recs[k].tag = 77;
		memset(recs[k].resume_token, 0xA5, 16);
		recs[k].seq = v[i];
		k++;
	}
	char err[256];
	assert_int_equal(pf_state_write(path, recs, (size_t)k, pf_engine_model_fingerprint(e), err, sizeof(err)), 0);
	free(v);
	return k;
}

/* Read path and resume its request in e for user c. */
static int rs_load(struct pf_engine *e, const char *path, struct rs_cap *c, int32_t want_gen)
{
	struct pf_state_record *recs;
	size_t n;
	char err[256];
	assert_int_equal(pf_state_read(path, pf_engine_model_fingerprint(e), &recs, &n, err, sizeof(err)), 0);
	assert_true(n >= 1 && n <= RS_SEQ);
	struct pf_engine_snapshot v[RS_SEQ];
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(recs[i].uid, 1000);
		assert_true(recs[i].tag == 77);
		assert_int_equal(recs[i].seq.n_generated, want_gen);
		v[i] = recs[i].seq;
	}
	uint64_t id;
	if (pf_engine_resume(e, v, (int32_t)n, c, &id, err, sizeof(err)))
		fail_msg("resume: %s", err);
	pf_state_records_free(recs); /* the engine keeps copies */
	unlink(path);
	return (int)n;
}

static int32_t rs_min_n(const struct rs_cap *c, int32_t n)
{
	int32_t m = c->n[0];
	for (int32_t i = 1; i < n; i++)
		m = c->n[i] < m ? c->n[i] : m;
	return m;
}

/* Resumed run `got` (interrupted after k tokens) against the reference. */
static void rs_compare(const struct rs_cap *ref, const struct rs_cap *got, int32_t n_seq, int32_t k, bool logprobs)
{
	assert_false(got->bad_order);
	assert_int_equal(got->n_finished, ref->n_finished);
	for (int32_t i = 0; i < n_seq; i++) {
		assert_true(got->finished[i]);
		assert_int_equal(got->n_replayed[i], k);
		assert_int_equal(got->n[i], ref->n[i]);
		assert_memory_equal(got->tok[i], ref->tok[i], sizeof(int32_t) * (size_t)ref->n[i]);
		assert_memory_equal(got->chunk[i], ref->chunk[i], sizeof(uint32_t) * (size_t)ref->n[i]);
		assert_int_equal(got->text_len[i], ref->text_len[i]);
		assert_memory_equal(got->text[i], ref->text[i], ref->text_len[i]);
		assert_int_equal(got->why[i], ref->why[i]);
		assert_int_equal(got->usage_gen[i], ref->usage_gen[i]);
		if (logprobs) {
			assert_memory_equal(got->lp[i], ref->lp[i], sizeof(float) * (size_t)ref->n[i]);
			assert_memory_equal(got->n_top[i], ref->n_top[i], sizeof(uint32_t) * (size_t)ref->n[i]);
			assert_memory_equal(got->top[i], ref->top[i], sizeof(got->top[i][0]) * (size_t)ref->n[i]);
		}
	}
}

struct rs_case {
	const char *name;
	const char *prompt;
	struct pf_request_params p;
	int32_t ks[3];          /* interruption points; clamped below the reference's length */
	bool warm_cache;        /* run the request once in the new engine before resuming */
	bool chain;             /* the last resumed run is exported and resumed once more */
};

static void rs_run_case(struct rs_case *c)
{
	struct pf_engine *a = rs_engine();
	int32_t ids[256];
	int32_t np = encode(a, c->prompt, ids, 256);
	const int32_t ns = c->p.n;
	uint64_t id, pid[3];
	char err[256], path[3][256];
	struct rs_cap *ref = calloc(1, sizeof(*ref)), *part[3], *res[3];
	assert_int_equal(pf_engine_submit(a, ids, np, &c->p, ref, &id, err, sizeof(err)), 0);
	run_until_idle(a);
	int32_t len = rs_min_n(ref, ns);
	for (int j = 0; j < 3; j++) {
		if (c->ks[j] >= len)
			c->ks[j] = len - 1;
		snprintf(path[j], sizeof(path[j]), "/tmp/pf-test-resume-%d-%s-%d", (int)getpid(), c->name, j);
		part[j] = calloc(1, sizeof(*part[j]));
		res[j] = calloc(1, sizeof(*res[j]));
		assert_int_equal(pf_engine_submit(a, ids, np, &c->p, part[j], &pid[j], err, sizeof(err)), 0);
	}
	/* the interrupted copies run together; each is saved and cancelled
	 * once it has k tokens, as a drain would leave it */
	bool saved[3] = { false, false, false };
	int n_rec[3];
	for (int guard = 0;; guard++) {
		int left = 0;
		for (int j = 0; j < 3; j++) {
			if (saved[j] || rs_min_n(part[j], ns) < c->ks[j]) {
				left += !saved[j];
				continue;
			}
			assert_int_equal(rs_min_n(part[j], ns), c->ks[j]);
			n_rec[j] = rs_save(a, part[j], path[j]);
			assert_int_equal(pf_engine_cancel(a, pid[j], PF_FINISH_CANCELLED), 0);
			saved[j] = true;
		}
		if (!left)
			break;
		assert_true(pf_engine_step(a) > 0 && guard < 1000);
	}
	pf_engine_destroy(a);

	struct pf_engine *b = rs_engine();
	struct rs_cap *warm = NULL;
	if (c->warm_cache) {
		warm = calloc(1, sizeof(*warm));
		assert_int_equal(pf_engine_submit(b, ids, np, &c->p, warm, &id, err, sizeof(err)), 0);
		run_until_idle(b);
		rs_compare(ref, warm, ns, 0, c->p.sampling.logprobs);
	}
	for (int j = 0; j < 3; j++) {
		/* n > 1 before its fork is one record, after it one per sibling */
		assert_int_equal(n_rec[j], ns > 1 && c->ks[j] == 0 ? 1 : ns);
		assert_int_equal(rs_load(b, path[j], res[j], c->ks[j]), n_rec[j]);
	}
	if (c->chain) {
		/* a resumed request survives a second restart: export it after
		 * a few more tokens, copy it through the file format, cancel it
		 * and resume the copy */
		for (int i = 0; i < 4; i++)
			assert_true(pf_engine_step(b) > 0);
		struct pf_engine_snapshot *v;
		struct pf_state_record recs[RS_SEQ], *back;
		int n = pf_engine_export(b, &v), k = 0;
		uint64_t rid = 0, fp = pf_engine_model_fingerprint(b);
		for (int i = 0; i < n; i++)
			if (v[i].user == res[2]) {
				recs[k++] = (struct pf_state_record){ .seq = v[i] };
				rid = v[i].req_id;
			}
		assert_true(k >= 1);
		void *buf;
		size_t blen, nr;
		assert_int_equal(pf_state_encode(recs, (size_t)k, fp, &buf, &blen, err, sizeof(err)), 0);
		free(v);
		assert_int_equal(pf_state_parse(buf, blen, fp, &back, &nr, err, sizeof(err)), 0);
		free(buf);
		struct pf_engine_snapshot sv[RS_SEQ];
		for (int i = 0; i < k; i++)
			sv[i] = back[i].seq;
		int32_t gen2 = sv[0].n_generated;
		assert_true(gen2 > c->ks[2]);
		assert_int_equal(pf_engine_cancel(b, rid, PF_FINISH_CANCELLED), 0);
		struct rs_cap *chained = calloc(1, sizeof(*chained));
		assert_int_equal(pf_engine_resume(b, sv, k, chained, &id, err, sizeof(err)), 0);
		pf_state_records_free(back);
		c->ks[2] = gen2;
		free(res[2]);
		res[2] = chained;
	}
	run_until_idle(b);
	for (int j = 0; j < 3; j++) {
		rs_compare(ref, res[j], ns, c->ks[j], c->p.sampling.logprobs);
		if (c->warm_cache)
			assert_true(res[j]->cached[0] > 0); /* the resumed prefill reused cached blocks */
	}
	printf("# %s: %d tokens, %s; resumed after %d, %d, %d tokens%s: identical\n", c->name, ref->n[0],
	       ref->why[0] == PF_FINISH_STOP ? "stop" : "length", c->ks[0], c->ks[1], c->ks[2],
	       c->chain ? " (the last restarted twice)" : "");
	pf_engine_destroy(b);
	for (int j = 0; j < 3; j++) {
		free(part[j]);
		free(res[j]);
	}
	free(warm);
	free(ref);
}

static void test_resume_greedy(void **state)
{
	(void)state;
	/* a prompt longer than a KV block, so the warm cache has a block to give */
	struct rs_case c = { .name = "greedy",
			     .prompt = "Here is a story about a brave knight named Arthur who lived in a castle on a hill. "
				       "One day, he",
			     .ks = { 0, 1, 13 }, .warm_cache = true };
	c.p = pf_request_params_default();
	c.p.sampling.temperature = 0;
	c.p.sampling.max_tokens = 32;
	c.p.sampling.ignore_eos = true;
	rs_run_case(&c);
}

static void test_resume_seeded_sampling(void **state)
{
	(void)state;
	struct rs_case c = { .name = "seeded", .prompt = "My favourite recipe for a rainy day is", .ks = { 0, 1, 11 },
			     .chain = true };
	c.p = pf_request_params_default();
	c.p.sampling.temperature = 0.8f;
	c.p.sampling.top_k = 40;
	c.p.sampling.top_p = 0.9f;
	c.p.sampling.seed = 42;
	c.p.sampling.has_seed = true;
	c.p.sampling.repetition_penalty = 1.1f;
	c.p.sampling.frequency_penalty = 0.2f;
	c.p.sampling.presence_penalty = 0.1f;
	c.p.sampling.min_tokens = 4;
	c.p.sampling.logprobs = true;
	c.p.sampling.top_logprobs = 3;
	c.p.sampling.max_tokens = 32;
	rs_run_case(&c);
}

static void test_resume_parallel(void **state)
{
	(void)state;
	struct rs_case c = { .name = "n=2", .prompt = "Once upon a time, in a small village by the sea,",
			     .ks = { 0, 1, 9 } };
	c.p = pf_request_params_default();
	c.p.n = 2;
	c.p.sampling.temperature = 0.9f;
	c.p.sampling.top_p = 0.95f;
	c.p.sampling.seed = 7;
	c.p.sampling.has_seed = true;
	c.p.sampling.max_tokens = 24;
	c.p.sampling.ignore_eos = true;
	rs_run_case(&c);
}

/* A stop string that straddles the interruption: chosen from a plain run so
 * that it begins inside token j's text and ends inside token j+1's, and the
 * run is interrupted after token j — its first bytes are then held back, in
 * the sampler's window, when the state is saved. */
static void test_resume_stop_string(void **state)
{
	(void)state;
	const char *prompt = "The history of the printing press begins";
	struct pf_request_params p = pf_request_params_default();
	p.sampling.temperature = 0;
	p.sampling.max_tokens = 40;
	p.sampling.ignore_eos = true;
	struct pf_engine *e = rs_engine();
	int32_t ids[256];
	int32_t np = encode(e, prompt, ids, 256);
	struct rs_cap *plain = calloc(1, sizeof(*plain));
	uint64_t id;
	char err[256];
	assert_int_equal(pf_engine_submit(e, ids, np, &p, plain, &id, err, sizeof(err)), 0);
	run_until_idle(e);
	pf_engine_destroy(e);
	/* the first j (from the middle) whose chunk and the next have >= 2
	 * ASCII bytes and whose 4-byte straddle occurs first right there */
	size_t off = 0;
	int32_t j = -1;
	char stop[4];
	for (int32_t t = 0; t + 1 < plain->n[0]; t++) {
		size_t a = plain->chunk[0][t], b = plain->chunk[0][t + 1];
		off += a;
		if (t < 8 || a < 2 || b < 2)
			continue;
		memcpy(stop, plain->text[0] + off - 2, 4);
		bool ascii = true;
		for (int q = 0; q < 4; q++)
			ascii &= stop[q] > 0 && stop[q] != '\0';
		const char *hit = memmem(plain->text[0], plain->text_len[0], stop, 4);
		if (ascii && hit == plain->text[0] + off - 2) {
			j = t;
			break;
		}
	}
	assert_true(j > 0);
	printf("# stop string \"%.4s\" straddles tokens %d and %d\n", stop, j, j + 1);
	struct rs_case c = { .name = "stop", .prompt = prompt, .p = p, .ks = { 0, j, j + 1 } };
	assert_int_equal(pf_sampling_params_add_stop_string(&c.p.sampling, stop, 4), 0);
	rs_run_case(&c);
	free(plain);
}

/* This prompt makes the model repeat an emoji whose 4 UTF-8 bytes come in
 * three tokens: interrupted after the first or second, the streaming
 * detokenizer holds an incomplete character when the state is saved. */
static void test_resume_utf8_split(void **state)
{
	(void)state;
	struct rs_case c = { .name = "utf8", .prompt = "Write a short list of fruits, one per line:", .ks = { 4, 5, 8 } };
	c.p = pf_request_params_default();
	c.p.sampling.temperature = 0;
	c.p.sampling.max_tokens = 24;
	c.p.sampling.ignore_eos = true;
	rs_run_case(&c);
}

static void test_resume_beam_and_checks(void **state)
{
	(void)state;
	struct pf_engine *a = rs_engine();
	int32_t ids[256];
	int32_t np = encode(a, "The three most important inventions in history are", ids, 256);
	struct pf_request_params p = pf_request_params_default();
	p.beam_width = 3;
	p.sampling.max_tokens = 8;
	p.sampling.ignore_eos = true;
	struct rs_cap *ref = calloc(1, sizeof(*ref)), *part = calloc(1, sizeof(*part)), *got = calloc(1, sizeof(*got));
	uint64_t id;
	char err[256], path[256];
	assert_int_equal(pf_engine_submit(a, ids, np, &p, ref, &id, err, sizeof(err)), 0);
	run_until_idle(a);
	assert_int_equal(ref->n_beams, 3);
	assert_int_equal(pf_engine_submit(a, ids, np, &p, part, &id, err, sizeof(err)), 0);
	for (int i = 0; i < 4; i++)
		assert_true(pf_engine_step(a) > 0);
	snprintf(path, sizeof(path), "/tmp/pf-test-resume-%d-beam", (int)getpid());
	assert_int_equal(rs_save(a, part, path), 1); /* one record, from the prompt */
	pf_engine_destroy(a);

	struct pf_engine *b = rs_engine();
	assert_int_equal(rs_load(b, path, got, 0), 1);
	run_until_idle(b);
	assert_int_equal(got->n_beams, 3);
	for (int r = 0; r < 3; r++) {
		assert_int_equal(got->beam_n[r], ref->beam_n[r]);
		assert_memory_equal(got->beam_tok[r], ref->beam_tok[r], sizeof(int32_t) * (size_t)ref->beam_n[r]);
		assert_true(got->beam_score[r] == ref->beam_score[r]);
	}
	printf("# beam search (width 3) restarted from its prompt: same hypotheses and scores\n");

	/* what a resume refuses, each with a message */
	int32_t gen[4] = { 1, 2, 3, 4 };
	struct pf_engine_snapshot s = {
		.params = pf_request_params_default(), .prompt = ids, .n_prompt = np, .generated = gen, .n_generated = 4,
	};
	s.params.sampling.max_tokens = 8;
	struct pf_engine_snapshot two[2] = { s, s };
	struct { struct pf_engine_snapshot *v; int32_t n; const char *what; } bad[8];
	struct pf_engine_snapshot c0 = s, c1 = s, c2 = s, c3 = s, c4 = s, c5 = s;
	int32_t gen_bad[4] = { 1, 2, 1 << 30, 4 };
	c0.generated = gen_bad;
	c1.params.sampling.max_tokens = 4;          /* already at its limit: it had finished */
	c2.params.beam_width = 2;                   /* beam search with generated tokens */
	c3.params.sampling.logprobs = true;         /* logprobs requested, none supplied */
	c4.index = 1;                               /* index past n = 1 */
	c5.params.sampling.max_tokens = pf_engine_max_model_len(b); /* over the context */
	int nb = 0;
	bad[nb++] = (typeof(bad[0])){ &c0, 1, "token outside the vocabulary" };
	bad[nb++] = (typeof(bad[0])){ &c1, 1, "at max_tokens" };
	bad[nb++] = (typeof(bad[0])){ &c2, 1, "beam with tokens" };
	bad[nb++] = (typeof(bad[0])){ &c3, 1, "logprobs missing" };
	bad[nb++] = (typeof(bad[0])){ &c4, 1, "index past n" };
	bad[nb++] = (typeof(bad[0])){ &c5, 1, "over the context" };
	bad[nb++] = (typeof(bad[0])){ two, 2, "two sequences with index 0" };
	bad[nb++] = (typeof(bad[0])){ &s, 0, "no sequences" };
	for (int i = 0; i < nb; i++) {
		err[0] = '\0';
		assert_int_equal(pf_engine_resume(b, bad[i].v, bad[i].n, got, &id, err, sizeof(err)), -EINVAL);
		printf("# refused (%s): %s\n", bad[i].what, err);
		assert_true(err[0] != '\0');
	}
	assert_false(pf_engine_has_work(b));
	/* the fingerprint is a property of the model file */
	assert_true(pf_engine_model_fingerprint(b) != 0);
	pf_engine_destroy(b);
	free(ref);
	free(part);
	free(got);
}

/* Preemption by swapping on a pool far too small for the batch: every
 * completion (greedy and seeded sampling) must equal the same request run
 * alone on a roomy pool, bit for bit — a swap moves K/V bytes, it never
 * recomputes them — and swaps must really have happened. */
static void run_tight(enum pf_preempt_mode mode, int64_t swap_space, struct capture *caps, int first, int n_req,
		      struct pf_engine_stats *ret_st)
{
	struct pf_engine_config cfg = pf_engine_config_default();
	struct pf_engine_events ev = { .on_token = on_token, .on_finish = on_finish, .on_beam = on_beam };
	struct pf_engine *e;
	char err[512];
	cfg.model_path = tu_model_path();
	cfg.sched.prefix_caching = false; /* recompute would otherwise get its blocks back from the cache */
	cfg.sched.preemption_mode = mode;
	cfg.sched.swap_min_tokens = 24;
	cfg.sched.watermark_blocks = 0;
	if (pf_engine_create(&cfg, &ev, &e, err, sizeof(err)))
		fail_msg("engine: %s", err);
	/* the pool: 14 blocks of 16 for 8 requests that grow to 4..5 blocks each */
	size_t bb = pf_kv_block_bytes(&pf_engine_model(e)->w.hp, 16, PF_DT_F16);
	pf_engine_destroy(e);
	cfg.kv_memory = (int64_t)(14 * bb);
	cfg.swap_space = swap_space < 0 ? swap_space : (int64_t)((size_t)swap_space * bb);
	if (pf_engine_create(&cfg, &ev, &e, err, sizeof(err)))
		fail_msg("engine: %s", err);
	static const char *prompts[] = { "The capital of France is", "Once upon a time,",
					 "List three colors:", "def fibonacci(n):",
					 "The quick brown fox", "In 1492, Columbus",
					 "Water boils at", "My favourite food is" };
	for (int i = first; i < first + n_req; i++) {
		int32_t ids[64];
		int32_t n = encode(e, prompts[i % 8], ids, 64);
		struct pf_request_params p = pf_request_params_default();
		p.sampling.max_tokens = 56;
		p.sampling.ignore_eos = true;
		p.sampling.temperature = 0.0f; /* greedy */
		if (i % 2) {
			p.sampling.temperature = 0.8f;
			p.sampling.top_k = 40;
			p.sampling.seed = 77 + (uint64_t)i;
			p.sampling.has_seed = true;
		}
		uint64_t id;
		assert_int_equal(pf_engine_submit(e, ids, n, &p, &caps[i - first], &id, err, sizeof(err)), 0);
	}
	run_until_idle(e);
	pf_engine_get_stats(e, ret_st);
	pf_engine_destroy(e);
}

/* The build `make test` and `make asan` use checks every scheduler and KV
 * invariant after each step of every engine in these tests (and in the
 * daemon suites); that the checker catches corruption is test_sched's
 * test_check_catches_corruption. */
static void test_invariants_checked_every_step(void **state)
{
	(void)state;
	if (!pf_engine_checks_invariants())
		fail_msg("this build does not check invariants after each engine step: build it with the Makefile "
			 "(PF_CHECK_INVARIANTS=1 is its default)");
}

static void test_swap_preemption_exact(void **state)
{
	(void)state;
	enum { NR = 8 };
	struct capture *swapped = calloc(NR, sizeof(*swapped)), *recomputed = calloc(NR, sizeof(*recomputed));
	struct pf_engine_stats st_swap, st_rec;
	run_tight(PF_PREEMPT_SWAP, 64, swapped, 0, NR, &st_swap);
	run_tight(PF_PREEMPT_RECOMPUTE, 0, recomputed, 0, NR, &st_rec);
	printf("# 8 requests on a 14-block pool: swap mode %llu preemptions (%llu swapped out, %llu in, %llu blocks), "
	       "%llu prompt tokens computed; recompute mode %llu preemptions, %llu prompt tokens computed\n",
	       (unsigned long long)st_swap.preemptions, (unsigned long long)st_swap.swap_outs,
	       (unsigned long long)st_swap.swap_ins, (unsigned long long)st_swap.kv.swapped_out_blocks,
	       (unsigned long long)st_swap.prompt_tokens_computed, (unsigned long long)st_rec.preemptions,
	       (unsigned long long)st_rec.prompt_tokens_computed);
	assert_true(st_swap.swap_outs > 0 && st_swap.swap_ins == st_swap.swap_outs);
	assert_int_equal(st_rec.swap_outs, 0);
	assert_true(st_rec.preemptions > 0);
	assert_int_equal(st_swap.kv.n_host_free, st_swap.kv.n_host);
	/* recompute pays a prefill for every preemption; swap pays none */
	assert_true(st_swap.prompt_tokens_computed < st_rec.prompt_tokens_computed);
	for (int i = 0; i < NR; i++) {
		struct capture *alone = calloc(1, sizeof(*alone));
		struct pf_engine_stats st;
		/* alone: request i on its own, which the pool holds whole */
		run_tight(PF_PREEMPT_RECOMPUTE, 0, alone, i, 1, &st);
		assert_int_equal(st.preemptions, 0);
		assert_int_equal(swapped[i].n[0], 56);
		assert_memory_equal(alone->tokens[0], swapped[i].tokens[0], sizeof(int32_t) * 56);
		assert_memory_equal(alone->tokens[0], recomputed[i].tokens[0], sizeof(int32_t) * 56);
		free(alone);
	}
	free(swapped);
	free(recomputed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_invariants_checked_every_step),
		cmocka_unit_test(test_parallel_sampling_matches_alone),
		cmocka_unit_test(test_swap_preemption_exact),
		cmocka_unit_test(test_beam_search_consistent),
		cmocka_unit_test(test_beams_that_cannot_fit),
		cmocka_unit_test(test_300_beam_requests),
		cmocka_unit_test(test_beam_events),
		cmocka_unit_test(test_max_step_ms),
		cmocka_unit_test(test_shared_prefix_same_tokens_less_compute),
		cmocka_unit_test(test_cancel_frees_and_limits),
		cmocka_unit_test(test_resume_greedy),
		cmocka_unit_test(test_resume_seeded_sampling),
		cmocka_unit_test(test_resume_parallel),
		cmocka_unit_test(test_resume_stop_string),
		cmocka_unit_test(test_resume_utf8_split),
		cmocka_unit_test(test_resume_beam_and_checks),
	};

	tu_need_model("test_engine");
	return tu_run_group_tests("test_engine", tests, NULL, NULL);
}
