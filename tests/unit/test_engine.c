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
#include <cmocka.h>

#include "cpu/cpu_backend.h"
#include "dtype.h"
#include "engine.h"
#include "model.h"
#include "tok.h"
#include "testutil.h"

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

static void on_beam(void *ctx, uint64_t id, void *user, int32_t rank, const int32_t *tokens, int32_t n,
		    const char *text, size_t len, const struct pf_usage *u)
{
	struct capture *c = user;
	(void)ctx; (void)id; (void)text; (void)len;
	assert_true(rank < MAXSEQ && n <= MAXTOK);
	memcpy(c->beam_tokens[rank], tokens, sizeof(int32_t) * (size_t)n);
	c->beam_n[rank] = n;
	c->beam_score[rank] = u->beam_score;
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
	assert_int_equal(c->n_finished, 1);
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
	assert_int_equal(pf_engine_cancel(e, id), 0);
	assert_int_equal(c->why[0], PF_FINISH_CANCELLED);
	assert_false(pf_engine_has_work(e));
	pf_engine_get_stats(e, &st1);
	assert_int_equal(st1.kv.n_used, 0); /* blocks are back (free or cached) at once */
	assert_int_equal(pf_engine_cancel(e, id), -ENOENT);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parallel_sampling_matches_alone),
		cmocka_unit_test(test_beam_search_consistent),
		cmocka_unit_test(test_shared_prefix_same_tokens_less_compute),
		cmocka_unit_test(test_cancel_frees_and_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
