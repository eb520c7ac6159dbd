/* engine.c — one serving iteration at a time; see engine.h. */
#include "runtime/engine/engine.h"
#include "runtime/engine/device.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

/* the scheduler's swap lists go to the backend as they are */
static_assert(sizeof(struct pf_kv_copy) == sizeof(struct pf_block_pair) &&
		      offsetof(struct pf_kv_copy, src) == offsetof(struct pf_block_pair, src) &&
		      offsetof(struct pf_kv_copy, dst) == offsetof(struct pf_block_pair, dst),
	      "pf_kv_copy and pf_block_pair must have one layout");

#include "runtime/text/chat.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/dtype.h"
#include "runtime/model/gguf.h"
#include "runtime/model/model.h"
#include "runtime/engine/philox.h"
#include "runtime/text/tok.h"

#define MAX_N PF_WIRE_MAX_SEQS /* completions or beams (x2 candidates) per request */
static_assert(PF_WIRE_MAX_BEAMS == MAX_N / 2, "a beam keeps two candidates in the MAX_N slots");

struct ereq;

/* Engine state of one sequence (pf_seq.user). */
struct eseq {
	struct ereq *r;
	struct pf_seq *q;
	int32_t index;
	struct pf_sampler smp;
	struct pf_detok detok;
	double cum_logprob;   /* beam search */
	bool has_cand;
	int32_t n_cand;
	struct pf_sample_logprob cand[2 * MAX_N];
	/* resumed: earlier tokens (q->tokens after the prompt) still to be
	 * reported again at the next step */
	int32_t n_replay;
	/* with logprobs: what was reported for each generated token, kept so
	 * an export can carry it and a replay can report it again */
	float *lp;                        /* (cap_lp) */
	struct pf_sample_logprob *lp_top; /* (cap_lp, top_logprobs) */
	int32_t n_lp, cap_lp;
};

struct hyp {
	int32_t *tokens;
	int32_t n;
	double cum, score;
	enum pf_finish_reason why;
};

struct ereq {
	struct pf_req base;   /* the scheduler's view */
	uint64_t id;
	void *user;
	struct pf_request_params p;
	int32_t n_prompt;
	bool forked;
	int32_t n_live;
	struct eseq *seqs[MAX_N];
	double t_submit, t_sched, t_first;
	int32_t cached;
	struct hyp hyps[MAX_N];
	int32_t n_hyps;
	uint64_t base_seed;   /* Philox key of sequence 0; sibling k uses base + k·golden */
	uint64_t beam_mark;   /* the step that listed it for its beam step */
	/* resumed forked siblings after the first: each is its own request to
	 * the scheduler (it adds one sequence per request and counts requests
	 * by that), while the engine reports them as one */
	struct pf_req *sib_base;
	struct ereq *prev, *next;
};

struct pf_engine {
	struct pf_engine_config cfg;
	struct pf_engine_events ev;
	struct pf_model *model;
	struct pf_tok *tok;
	struct pf_chat *chat;
	struct pf_backend be;
	char device_note[320];       /* which device and why (pf_engine_device_note) */
	struct pf_kv *kv;
	struct pf_sched *sched;
	int32_t n_vocab, max_model_len;
	int32_t eos[8];
	size_t n_eos;
	float *logits;
	int32_t cap_logits;
	/* (cap_logits) rows for a backend that samples by itself */
	struct pf_sample_row *dev_rows;
	int32_t *dev_tokens;
	float *dev_logprobs;
	struct ereq **beam_reqs; /* (cap_logits) beam requests with rows in the step */
	uint64_t step_no;        /* marks them (ereq.beam_mark) */
	int32_t *n_prompt;    /* (cap_seqs) per-sequence prompt lengths of the step */
	int32_t cap_seqs;
	char *text;           /* detokenizer output scratch */
	size_t text_cap;
	struct ereq *reqs;    /* active requests */
	uint64_t next_id;
	uint64_t prompt_computed, generated;
	int32_t last_step_tokens, last_step_prompt;
	/* max_step_ms: the step time model (seconds; 0: not measured yet)
	 * and the prompt-token budget it gives */
	double step_base_s, prompt_tok_s;
	int32_t prefill_budget;
	bool replay_pending;  /* a resumed sequence has tokens to report again */
	char desc[512];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct pf_engine_config pf_engine_config_default(void)
{
	return (struct pf_engine_config){
		.model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf",
		.kv_memory = 0,
		.swap_space = -1,
		.device_sampling = true,
		.device = PF_DEVICE_CPU,
		.block_size = 16,
		.kv_dtype = PF_DT_F16,
		.sched = pf_sched_config_default(),
	};
}

int pf_engine_create(const struct pf_engine_config *cfg, const struct pf_engine_events *ev,
		     struct pf_engine **ret, char *err, size_t errlen)
{
	struct pf_engine *e = calloc(1, sizeof(*e));
	int r;
	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	if (ev)
		e->ev = *ev;
	e->next_id = 1;
	r = pf_model_load(cfg->model_path, &e->model, err, errlen);
	if (r)
		goto fail;
	r = pf_tok_load(e->model->gguf, &e->tok, err, errlen);
	if (r)
		goto fail;
	char cerr[256];
	if (pf_chat_from_gguf(e->model->gguf, &e->chat, cerr, sizeof(cerr)))
		e->chat = NULL; /* raw prompts still work; chat requests get a clear error */
	const struct pf_hparams *hp = &e->model->w.hp;
	e->n_vocab = hp->n_vocab;
	if (pf_tok_n_vocab(e->tok) > e->n_vocab) {
		snprintf(err, errlen, "%s: tokenizer has %d tokens but the model only %d", cfg->model_path,
			 pf_tok_n_vocab(e->tok), e->n_vocab);
		r = -EINVAL;
		goto fail;
	}
	/* every end-of-generation id the tokenizer knows, for stop and min_tokens */
	for (int32_t id = 0; id < pf_tok_n_vocab(e->tok) && e->n_eos < 8; id++)
		if (pf_tok_is_eog(e->tok, id))
			e->eos[e->n_eos++] = id;
	struct pf_device_request dreq = {
		.device = cfg->device,
		.n_threads = cfg->n_threads,
		.kv_memory = cfg->kv_memory,
		.gpu_memory_utilization = cfg->gpu_memory_utilization,
		.block_size = cfg->block_size,
		.kv_dtype = cfg->kv_dtype,
		.swap_space = cfg->swap_space,
		.log = cfg->backend_log,
	};
	r = pf_device_backend_create(&e->model->w, &dreq, &e->be, e->device_note, sizeof(e->device_note), err, errlen);
	if (r)
		goto fail;
	/* the pool the backend actually made (a GPU sizes it from its memory) */
	int64_t n_blocks = e->be.kv.n_blocks;
	r = pf_kv_create((int32_t)n_blocks, cfg->block_size, &e->kv);
	if (r)
		goto fail;
	/* swap slots only where the backend can move blocks to them */
	if (e->be.kv.n_host_blocks > 0 && e->be.ops->swap_out && e->be.ops->swap_in) {
		r = pf_kv_set_host_blocks(e->kv, e->be.kv.n_host_blocks);
		if (r)
			goto fail;
	}
	r = pf_sched_create(&cfg->sched, e->kv, &e->sched);
	if (r) {
		snprintf(err, errlen, "invalid scheduler configuration");
		goto fail;
	}
	int64_t pool_tokens = n_blocks * cfg->block_size;
	e->max_model_len = cfg->max_model_len > 0 ? cfg->max_model_len : hp->n_ctx_train;
	if (e->max_model_len > pool_tokens)
		e->max_model_len = (int32_t)pool_tokens;
	if (cfg->max_model_len > hp->n_ctx_train) {
		snprintf(err, errlen, "--max-model-len %d exceeds the model's context length %d", cfg->max_model_len,
			 hp->n_ctx_train);
		r = -EINVAL;
		goto fail;
	}
	e->text_cap = pf_detok_max_out(e->tok) + 64;
	e->text = malloc(e->text_cap);
	if (!e->text) {
		r = -ENOMEM;
		goto fail;
	}
	snprintf(e->desc, sizeof(e->desc), "%.128s (%s), %.128s, KV %lld blocks x %d tokens (%s)",
		 e->model->name, e->model->arch_name, e->be.ops->describe(e->be.ctx), (long long)n_blocks,
		 cfg->block_size, pf_dtype_name(cfg->kv_dtype));
	*ret = e;
	return 0;
fail:
	pf_engine_destroy(e);
	return r;
}

static void eseq_free(struct eseq *es)
{
	if (!es)
		return;
	pf_sampler_destroy(&es->smp);
	free(es->lp);
	free(es->lp_top);
	free(es);
}

static void req_unlink(struct pf_engine *e, struct ereq *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		e->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	for (int i = 0; i < r->n_hyps; i++)
		free(r->hyps[i].tokens);
	free(r->sib_base);
	free(r);
}

static void fill_usage(const struct ereq *r, const struct eseq *es, struct pf_usage *u)
{
	double t = now_s();
	memset(u, 0, sizeof(*u));
	u->prompt_tokens = r->n_prompt;
	/* a resumed sequence may find generated tokens cached too */
	u->cached_tokens = r->cached < r->n_prompt ? r->cached : r->n_prompt;
	/* tokens still to replay were reported before the restart */
	u->generated_tokens = es ? (int32_t)es->smp.n_generated + es->n_replay : 0;
	u->queue_s = r->t_sched > 0 ? r->t_sched - r->t_submit : t - r->t_submit;
	u->ttft_s = r->t_first > 0 ? r->t_first - r->t_submit : 0;
	u->decode_s = r->t_first > 0 ? t - r->t_first : 0;
}

/* End one sequence: report, release its blocks, drop the request when it
 * was the last. */
static void seq_end(struct pf_engine *e, struct eseq *es, enum pf_finish_reason why, const char *text, size_t len,
		    bool report)
{
	struct ereq *r = es->r;
	if (report && e->ev.on_finish) {
		struct pf_usage u;
		fill_usage(r, es, &u);
		u.last = r->n_live == 1;
		e->ev.on_finish(e->ev.ctx, r->id, r->user, es->index, why, text, len, &u);
	}
	for (int i = 0; i < MAX_N; i++)
		if (r->seqs[i] == es)
			r->seqs[i] = NULL;
	r->n_live--;
	pf_sched_finish(e->sched, es->q);
	eseq_free(es);
	if (r->n_live == 0)
		req_unlink(e, r);
}

static struct eseq *eseq_new(struct pf_engine *e, struct ereq *r, struct pf_seq *q, int32_t index, char *err,
			     size_t errlen)
{
	struct eseq *es = calloc(1, sizeof(*es));
	if (!es)
		return NULL;
	es->r = r;
	es->q = q;
	es->index = index;
	q->user = es;
	struct pf_sampling_params sp = r->p.sampling;
	/* sibling k draws from its own Philox key; the base is kept in the
	 * request (not re-derived from its id) so a resumed request, which has
	 * a new id, draws what the first run would have */
	sp.seed = r->base_seed + (uint64_t)index * 0x9E3779B97F4A7C15ULL;
	sp.has_seed = true;
	if (pf_sampler_init(&es->smp, &sp, e->n_vocab, e->eos, e->n_eos, r->id) ||
	    pf_sampler_add_prompt(&es->smp, q->tokens, (size_t)r->n_prompt)) {
		if (err)
			snprintf(err, errlen, "sampler initialisation failed");
		eseq_free(es);
		return NULL;
	}
	r->p.sampling = r->p.sampling; /* params stay per request; only the key differs */
	es->smp.seed = sp.has_seed ? sp.seed : es->smp.seed;
	pf_detok_init(&es->detok, e->tok, false);
	for (int i = 0; i < MAX_N; i++)
		if (!r->seqs[i]) {
			r->seqs[i] = es;
			break;
		}
	r->n_live++;
	return es;
}

/*
 * Beam search needs every beam's K/V at once: a step chooses the next beams
 * only when all live beams have their candidates, so beams that cannot all
 * hold their blocks wait for each other forever.  Their worst case is known
 * at submission: the prompt's full blocks are shared by every beam (forks
 * share them copy-on-write, and after a preemption the prefix cache hands
 * them back — without it a recomputed beam needs its own), each beam owns
 * the rest of its at most n_prompt + max_tokens - 1 positions (the last
 * token is chosen, never computed).  Returns 0 or -ENOSPC with the numbers.
 */
static int beam_fit_check(const struct pf_engine *e, int32_t n_prompt, const struct pf_request_params *p, char *err,
			  size_t errlen)
{
	if (p->beam_width <= 1)
		return 0;
	int64_t bs = e->cfg.block_size;
	int64_t positions = (int64_t)n_prompt + (p->sampling.max_tokens > 0 ? p->sampling.max_tokens - 1 : 0);
	int64_t per_beam = (positions + bs - 1) / bs;
	int64_t shared = e->cfg.sched.prefix_caching ? n_prompt / bs : 0;
	int64_t need = shared + (int64_t)p->beam_width * (per_beam - shared);
	struct pf_kv_stats st;
	pf_kv_get_stats(e->kv, &st);
	if (need > st.n_blocks) {
		snprintf(err, errlen, "beam search: %d beams x %lld tokens need %lld KV blocks, the pool has %d",
			 p->beam_width, (long long)positions, (long long)need, st.n_blocks);
		return -ENOSPC;
	}
	return 0;
}

int pf_engine_submit(struct pf_engine *e, const int32_t *prompt, int32_t n, const struct pf_request_params *p,
		     void *user, uint64_t *ret_id, char *err, size_t errlen)
{
	if (n < 1) {
		snprintf(err, errlen, "the prompt is empty");
		return -EINVAL;
	}
	for (int32_t i = 0; i < n; i++)
		if (prompt[i] < 0 || prompt[i] >= e->n_vocab) {
			snprintf(err, errlen, "prompt token %d at position %d is outside the vocabulary (0..%d)", prompt[i], i,
				 e->n_vocab - 1);
			return -EINVAL;
		}
	int r = pf_sampler_validate(&p->sampling, e->n_vocab, err, errlen);
	if (r)
		return r;
	if (p->n < 1 || p->n > MAX_N || p->beam_width < 0 || p->beam_width > MAX_N / 2 ||
	    (p->beam_width > 1 && p->n > 1)) {
		snprintf(err, errlen, "n must be 1..%d and beam_width 0..%d (not both above 1); got n=%d beam_width=%d",
			 MAX_N, MAX_N / 2, p->n, p->beam_width);
		return -EINVAL;
	}
	if (!isfinite(p->length_penalty)) {
		snprintf(err, errlen, "length_penalty must be finite");
		return -EINVAL;
	}
	int64_t need = (int64_t)n + p->sampling.max_tokens;
	if (need > e->max_model_len) {
		snprintf(err, errlen, "prompt (%d tokens) + max_tokens (%d) = %lld exceeds the context limit of %d tokens",
			 n, p->sampling.max_tokens, (long long)need, e->max_model_len);
		return -EINVAL;
	}
	r = beam_fit_check(e, n, p, err, errlen);
	if (r)
		return r;
	struct ereq *rq = calloc(1, sizeof(*rq));
	if (!rq)
		return -ENOMEM;
	rq->id = e->next_id++;
	rq->user = user;
	rq->p = *p;
	rq->n_prompt = n;
	rq->base.id = rq->id;
	rq->base.priority = p->priority;
	rq->base.max_tokens = p->sampling.max_tokens;
	rq->base_seed = p->sampling.has_seed ? p->sampling.seed : pf_sampler_derive_seed(rq->id);
	rq->t_submit = now_s();
	struct pf_seq *q;
	r = pf_sched_add(e->sched, &rq->base, prompt, n, (int64_t)(rq->t_submit * 1000), &q);
	if (r) {
		free(rq);
		return r;
	}
	if (!eseq_new(e, rq, q, 0, err, errlen)) {
		pf_sched_finish(e->sched, q);
		free(rq);
		return -ENOMEM;
	}
	rq->next = e->reqs;
	if (e->reqs)
		e->reqs->prev = rq;
	e->reqs = rq;
	*ret_id = rq->id;
	return 0;
}

static struct ereq *find_req(struct pf_engine *e, uint64_t id)
{
	for (struct ereq *r = e->reqs; r; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

int pf_engine_cancel(struct pf_engine *e, uint64_t id, enum pf_finish_reason why)
{
	struct ereq *r = find_req(e, id);
	if (!r)
		return -ENOENT;
	if (why != PF_FINISH_DEADLINE && why != PF_FINISH_STALLED)
		why = PF_FINISH_CANCELLED;
	/* seq_end frees r with the last sequence.  Beams are one sequence
	 * to the caller (they report hypotheses, not streams): the last
	 * one reports the end. */
	for (int i = MAX_N - 1; i >= 0; i--) {
		if (!r->seqs[i])
			continue;
		bool last = r->n_live == 1;
		seq_end(e, r->seqs[i], why, NULL, 0, last || r->p.beam_width <= 1);
		if (last)
			break;
	}
	return 0;
}

int pf_engine_pause(struct pf_engine *e, uint64_t id, bool paused)
{
	struct ereq *r = find_req(e, id);
	if (!r)
		return -ENOENT;
	for (int i = 0; i < MAX_N; i++)
		if (r->seqs[i])
			r->seqs[i]->q->paused = paused;
	return 0;
}

/* Keep what on_token reports as logprobs for token res (see struct eseq). */
static int lp_record(struct eseq *es, const struct pf_sampling_params *sp, const struct pf_sample_result *res)
{
	if (!sp->logprobs)
		return 0;
	size_t k = (size_t)sp->top_logprobs;
	if (es->n_lp == es->cap_lp) {
		int32_t cap = es->cap_lp ? 2 * es->cap_lp : 32;
		float *lp = realloc(es->lp, sizeof(float) * (size_t)cap);
		if (!lp)
			return -ENOMEM;
		es->lp = lp;
		if (k) {
			struct pf_sample_logprob *t = realloc(es->lp_top, sizeof(*t) * (size_t)cap * k);
			if (!t)
				return -ENOMEM;
			es->lp_top = t;
		}
		es->cap_lp = cap;
	}
	es->lp[es->n_lp] = res->logprob;
	for (size_t j = 0; j < k; j++)
		es->lp_top[(size_t)es->n_lp * k + j] =
			j < res->n_top ? res->top[j] : (struct pf_sample_logprob){ -1, NAN };
	es->n_lp++;
	return 0;
}

/* The chosen token `tok` (or < 0: the draw failed) of a sequence, with
 * its sample result: accept, stream, check for the end. */
/*
 * The one token-emission path, for new tokens (take_token) and for a resumed
 * sequence's replayed ones (replay_seq): the sampler takes the token (its
 * counters and penalties), the detokenizer its bytes, the stop-string window
 * decides what text may go out, on_token reports it, and a stop or the
 * length limit ends the sequence.  Returns false when the sequence ended.
 */
static bool emit_token(struct pf_engine *e, struct eseq *es, int32_t tok, const struct pf_sample_result *res)
{
	struct ereq *r = es->r;
	struct pf_stop_result st;
	size_t n = 0;
	if (pf_sampler_accept(&es->smp, tok) || pf_detok_push(&es->detok, tok, e->text, e->text_cap, &n) ||
	    pf_sampler_check_stop(&es->smp, &r->p.sampling, tok, e->text, n, &st) < 0) {
		seq_end(e, es, PF_FINISH_ERROR, NULL, 0, true);
		return false;
	}
	if (e->ev.on_token)
		e->ev.on_token(e->ev.ctx, r->id, r->user, es->index, tok, st.emit, st.emit_len, res);
	if (st.reason != PF_SAMPLER_CONTINUE) {
		/* a trailing incomplete character is delivered as U+FFFD on LENGTH */
		size_t fl = 0;
		if (st.reason == PF_SAMPLER_LENGTH)
			pf_detok_flush(&es->detok, e->text, e->text_cap, &fl);
		seq_end(e, es, st.reason == PF_SAMPLER_LENGTH ? PF_FINISH_LENGTH : PF_FINISH_STOP, e->text, fl, true);
		return false;
	}
	return true;
}

/* A newly sampled token: into the sequence's KV (scheduler) and logprob
 * record, then out through emit_token; the context limit ends it too. */
static void take_token(struct pf_engine *e, struct eseq *es, int tok, const struct pf_sample_result *resp)
{
	struct ereq *r = es->r;
	struct pf_sample_result res = *resp;
	if (tok < 0 || pf_sched_append(e->sched, es->q, tok) || lp_record(es, &r->p.sampling, &res)) {
		seq_end(e, es, PF_FINISH_ERROR, NULL, 0, true);
		return;
	}
	e->generated++;
	if (r->t_first == 0)
		r->t_first = now_s();
	if (!emit_token(e, es, tok, &res))
		return;
	if (es->q->n_tokens >= e->max_model_len) {
		const char *held;
		size_t hl = pf_sampler_held(&es->smp, &held);
		seq_end(e, es, PF_FINISH_LENGTH, held, hl, true);
	}
}

/* Sample, stream and maybe finish one (non-beam) sequence from its logits. */
static void sample_one(struct pf_engine *e, struct eseq *es, float *lg)
{
	struct pf_sample_result res;
	int tok = pf_sampler_sample(&es->smp, &es->r->p.sampling, lg, e->n_vocab, es->smp.n_generated, &res);
	take_token(e, es, tok, &res);
}

/*
 * Can the backend draw this sequence's next token by itself?  Only when
 * nothing but temperature, top-k/p and min-p shapes it: no penalties, no
 * min_tokens mask, no top-N logprobs, no beam scoring, no first step of an
 * n > 1 request (its siblings fork from this row).  The draw uses the
 * sampler's own Philox stream, so a seeded request stays reproducible.
 */
static bool device_samplable(const struct eseq *es)
{
	const struct ereq *r = es->r;
	const struct pf_sampling_params *p = &r->p.sampling;
	if (r->p.beam_width > 1 || (!r->forked && r->p.n > 1) || p->top_logprobs > 0)
		return false;
	if (p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f)
		return false;
	return es->smp.n_generated >= (uint32_t)p->min_tokens;
}

static struct pf_sample_row sample_row(const struct eseq *es)
{
	const struct pf_sampling_params *p = &es->r->p.sampling;
	struct pf_sample_row row = {
		.temperature = p->temperature, .top_k = p->top_k, .top_p = p->top_p, .min_p = p->min_p,
		.want_logprob = p->logprobs,
	};
	if (p->temperature >= PF_SAMPLER_GREEDY_TEMP) {
		uint32_t rnd[4];
		pf_philox_draw(es->smp.seed, es->smp.n_generated, PF_SAMPLER_STREAM_TOKEN, rnd);
		row.u = pf_philox_u01d(rnd[0], rnd[1]);
	}
	return row;
}

/* ---- beam search ------------------------------------------------------------ */

/* Top-k (k ≤ 2·MAX_N) tokens of log_softmax(lg), best first. */
static int32_t top_logprobs(const float *lg, int32_t nv, int32_t k, struct pf_sample_logprob *out)
{
	float mx = -INFINITY;
	for (int32_t i = 0; i < nv; i++)
		mx = lg[i] > mx ? lg[i] : mx;
	double sum = 0;
	for (int32_t i = 0; i < nv; i++)
		sum += exp((double)(lg[i] - mx));
	float lse = mx + (float)log(sum);
	int32_t n = 0;
	for (int32_t i = 0; i < nv; i++) {
		float v = lg[i];
		if (n == k && v <= out[k - 1].logprob)
			continue;
		int32_t j = n < k ? n++ : k - 1;
		while (j > 0 && out[j - 1].logprob < v) {
			out[j] = out[j - 1];
			j--;
		}
		out[j] = (struct pf_sample_logprob){ i, v };
	}
	for (int32_t i = 0; i < n; i++)
		out[i].logprob -= lse;
	return n;
}

static double beam_score(const struct ereq *r, double cum, int32_t len)
{
	return cum / pow(len > 0 ? (double)len : 1.0, (double)r->p.length_penalty);
}

static void add_hyp(struct ereq *r, const struct eseq *b, int32_t extra, double cum, enum pf_finish_reason why)
{
	if (r->n_hyps >= MAX_N)
		return;
	int32_t ng = b->q->n_tokens - r->n_prompt;
	struct hyp *h = &r->hyps[r->n_hyps];
	h->tokens = malloc(sizeof(int32_t) * (size_t)(ng + 1));
	if (!h->tokens)
		return;
	memcpy(h->tokens, b->q->tokens + r->n_prompt, sizeof(int32_t) * (size_t)ng);
	if (extra >= 0)
		h->tokens[ng++] = extra;
	h->n = ng;
	h->cum = cum;
	h->score = beam_score(r, cum, ng);
	h->why = why;
	r->n_hyps++;
}

static bool is_stop_token(const struct pf_engine *e, const struct ereq *r, int32_t t)
{
	if (!r->p.sampling.ignore_eos)
		for (size_t i = 0; i < e->n_eos; i++)
			if (e->eos[i] == t)
				return true;
	for (uint32_t i = 0; i < r->p.sampling.n_stop_ids; i++)
		if (r->p.sampling.stop_ids[i] == t)
			return true;
	return false;
}

static int cmp_hyp(const void *a, const void *b)
{
	double x = ((const struct hyp *)a)->score, y = ((const struct hyp *)b)->score;
	return x > y ? -1 : x < y;
}

static void beam_finish(struct pf_engine *e, struct ereq *r)
{
	qsort(r->hyps, (size_t)r->n_hyps, sizeof(r->hyps[0]), cmp_hyp);
	int32_t w = r->p.beam_width;
	struct pf_usage u;
	fill_usage(r, NULL, &u);
	for (int32_t i = 0; i < r->n_hyps && i < w; i++) {
		size_t len = 0;
		char *txt = NULL;
		size_t need = 0;
		pf_tok_detokenize(e->tok, r->hyps[i].tokens, (size_t)r->hyps[i].n, false, false, NULL, 0, &need);
		txt = malloc(need + 1);
		if (txt && pf_tok_detokenize(e->tok, r->hyps[i].tokens, (size_t)r->hyps[i].n, false, false, txt, need, &len))
			len = 0;
		u.generated_tokens = r->hyps[i].n;
		u.beam_score = (float)r->hyps[i].score;
		u.last = i + 1 == r->n_hyps || i + 1 == w;
		if (e->ev.on_beam)
			e->ev.on_beam(e->ev.ctx, r->id, r->user, i, r->hyps[i].why, r->hyps[i].tokens, r->hyps[i].n, txt,
				      len, &u);
		free(txt);
	}
	/* The hypotheses were the request's report, the last one its end:
	 * the beams go quietly.  Without any (out of memory), the last beam
	 * reports the end as any request's last sequence does. */
	bool quiet = r->n_hyps > 0;
	for (int i = MAX_N - 1; i >= 0; i--) {
		if (!r->seqs[i])
			continue;
		bool last = r->n_live == 1;
		seq_end(e, r->seqs[i], PF_FINISH_LENGTH, NULL, 0, last && !quiet);
		if (last)
			break;
	}
}

/* All live beams of r have candidates: choose the next beams. */
static void beam_step(struct pf_engine *e, struct ereq *r)
{
	const int32_t w = r->p.beam_width;
	struct { double score; struct eseq *b; struct pf_sample_logprob c; } all[MAX_N * 2 * MAX_N];
	int32_t na = 0;
	for (int i = 0; i < MAX_N; i++) {
		struct eseq *b = r->seqs[i];
		if (!b)
			continue;
		for (int32_t j = 0; j < b->n_cand; j++)
			all[na++] = (typeof(all[0])){ b->cum_logprob + b->cand[j].logprob, b, b->cand[j] };
		b->has_cand = false;
	}
	/* best first; ties keep the earlier beam's candidate (stable order) */
	for (int32_t i = 1; i < na; i++)
		for (int32_t j = i; j > 0 && all[j].score > all[j - 1].score; j--) {
			typeof(all[0]) t = all[j];
			all[j] = all[j - 1];
			all[j - 1] = t;
		}
	struct { struct eseq *b; int32_t tok; double cum; } next[MAX_N];
	int32_t nn = 0;
	for (int32_t i = 0; i < na && nn < w; i++) {
		if (is_stop_token(e, r, all[i].c.token)) {
			if (r->n_hyps < w)
				add_hyp(r, all[i].b, -1, all[i].score, PF_FINISH_STOP);
			continue;
		}
		next[nn++] = (typeof(next[0])){ all[i].b, all[i].c.token, all[i].score };
	}
	int32_t gen = 0;
	for (int i = 0; i < MAX_N; i++)
		if (r->seqs[i])
			gen = r->seqs[i]->q->n_tokens - r->n_prompt;
	bool done = r->n_hyps >= w || nn == 0 || gen + 1 >= r->p.sampling.max_tokens ||
		    r->n_prompt + gen + 1 >= e->max_model_len;
	if (done) {
		/* the live candidates complete as length-limited hypotheses */
		for (int32_t i = 0; i < nn && r->n_hyps < w; i++)
			add_hyp(r, next[i].b, next[i].tok, next[i].cum, PF_FINISH_LENGTH);
		beam_finish(e, r);
		return;
	}
	/* children: the first child of a beam continues it, others fork it
	 * (before any token is appended, so they share the parent's state) */
	struct eseq *child[MAX_N];
	bool used[MAX_N] = { false };
	for (int32_t i = 0; i < nn; i++) {
		int pi = -1;
		for (int k = 0; k < MAX_N; k++)
			if (r->seqs[k] == next[i].b)
				pi = k;
		if (!used[pi]) {
			used[pi] = true;
			child[i] = next[i].b;
			continue;
		}
		struct pf_seq *fq;
		child[i] = NULL;
		if (pf_sched_fork(e->sched, next[i].b->q, &fq) == 0) {
			child[i] = eseq_new(e, r, fq, 0, NULL, 0);
			if (!child[i])
				pf_sched_finish(e->sched, fq);
		}
	}
	/* beams with no child end here, quietly */
	for (int k = 0; k < MAX_N; k++) {
		struct eseq *b = r->seqs[k];
		if (!b || used[k])
			continue;
		bool is_child = false;
		for (int32_t i = 0; i < nn; i++)
			is_child |= child[i] == b;
		if (!is_child)
			seq_end(e, b, PF_FINISH_STOP, NULL, 0, false);
	}
	for (int32_t i = 0; i < nn; i++) {
		if (!child[i])
			continue;
		child[i]->cum_logprob = next[i].cum;
		pf_sched_append(e->sched, child[i]->q, next[i].tok);
		e->generated++;
	}
	if (r->t_first == 0)
		r->t_first = now_s();
}

/* ---- the step --------------------------------------------------------------- */

static void replay_all(struct pf_engine *e);
static int engine_step(struct pf_engine *e);

/* Test builds check every scheduler and KV invariant after each step
 * (PF_CHECK_INVARIANTS: the Makefile's default and ASan builds; off for
 * make bench) and abort on the first broken one. */
#ifndef PF_CHECK_INVARIANTS
#define PF_CHECK_INVARIANTS 0
#endif

bool pf_engine_checks_invariants(void)
{
	return PF_CHECK_INVARIANTS;
}

/*
 * max_step_ms: the prompt tokens the next step may take.  A step's time is
 * modelled as base + prompt_tokens x cost: base from steps of decodes only
 * (weights are read once a step whatever its rows), the cost from steps
 * with prompt tokens, both moving averages so they follow the load and the
 * context length.  Until a cost is measured, a probe-sized chunk.
 */
static void plan_step_budget(struct pf_engine *e)
{
	double target = e->cfg.max_step_ms * 1e-3;
	int32_t cap = e->cfg.sched.max_num_batched_tokens, n;
	if (e->prompt_tok_s <= 0) {
		n = PF_ENGINE_PROBE_TOKENS;
	} else {
		double room = (target - e->step_base_s) / e->prompt_tok_s;
		n = room >= (double)cap ? cap : (int32_t)room;
	}
	/* a prompt always moves, a token a step at the least */
	if (n < 1)
		n = 1;
	e->prefill_budget = n < cap ? n : cap;
	pf_sched_set_prefill_budget(e->sched, e->prefill_budget);
}

static void measure_step(struct pf_engine *e, int32_t n_tokens, int32_t n_prompt, double dt)
{
	const double w = 0.25; /* weight of the newest step */
	if (n_prompt == 0) {
		e->step_base_s = e->step_base_s > 0 ? (1 - w) * e->step_base_s + w * dt : dt;
		return;
	}
	/* without a base yet, the whole step is charged to its tokens: an
	 * overestimate, so the budget errs small */
	double c = e->step_base_s > 0 ? (dt - e->step_base_s) / n_prompt : dt / n_tokens;
	if (c < dt / (4.0 * n_tokens))
		c = dt / (4.0 * n_tokens); /* noise: never near free */
	e->prompt_tok_s = e->prompt_tok_s > 0 ? (1 - w) * e->prompt_tok_s + w * c : c;
}

int pf_engine_step(struct pf_engine *e)
{
	int n = engine_step(e);
	if (PF_CHECK_INVARIANTS)
		pf_sched_check_or_abort(e->sched, "pf_engine_step");
	return n;
}

static int engine_step(struct pf_engine *e)
{
	struct pf_sched_batch b;
	if (e->replay_pending)
		replay_all(e);
	if (e->cfg.max_step_ms > 0)
		plan_step_budget(e);
	double t = now_s();
	int n = pf_sched_step(e->sched, (int64_t)(t * 1000), &b);
	if (n <= 0) {
		e->last_step_tokens = 0;
		e->last_step_prompt = 0;
		return n;
	}
	int r = 0;
	bool use_dev = false;
	/* the order scheduler.h prescribes: swap-outs read blocks this step
	 * may hand out again, so they go before anything writes one */
	if (b.n_swap_out)
		r = e->be.ops->swap_out(e->be.ctx, (const struct pf_block_pair *)b.swap_out, b.n_swap_out);
	for (int32_t i = 0; i < b.n_copies && !r; i++)
		r = e->be.ops->copy_block(e->be.ctx, b.copies[i].src, b.copies[i].dst);
	if (!r && b.n_swap_in)
		r = e->be.ops->swap_in(e->be.ctx, (const struct pf_block_pair *)b.swap_in, b.n_swap_in);
	if (b.n_logits > e->cap_logits) {
		float *l = realloc(e->logits, sizeof(float) * (size_t)b.n_logits * (size_t)e->n_vocab);
		if (l)
			e->logits = l;
		/* the device-sampling arrays grow with it */
		struct pf_sample_row *dr = realloc(e->dev_rows, sizeof(*dr) * (size_t)b.n_logits);
		if (dr)
			e->dev_rows = dr;
		int32_t *dt = realloc(e->dev_tokens, sizeof(*dt) * (size_t)b.n_logits);
		if (dt)
			e->dev_tokens = dt;
		float *dl = realloc(e->dev_logprobs, sizeof(*dl) * (size_t)b.n_logits);
		if (dl)
			e->dev_logprobs = dl;
		struct ereq **br = realloc(e->beam_reqs, sizeof(*br) * (size_t)b.n_logits);
		if (br)
			e->beam_reqs = br;
		if (!l || !dr || !dt || !dl || !br)
			r = -ENOMEM;
		else
			e->cap_logits = b.n_logits;
	}
	if (!r && b.n_seqs > e->cap_seqs) {
		int32_t *np = realloc(e->n_prompt, sizeof(int32_t) * (size_t)b.n_seqs);
		if (!np)
			r = -ENOMEM;
		else {
			e->n_prompt = np;
			e->cap_seqs = b.n_seqs;
		}
	}
	/* generated tokens are summed in the one-token decode order, also when
	 * recomputed after a preemption: a property of the sequence */
	for (int32_t i = 0; !r && i < b.n_seqs; i++)
		e->n_prompt[i] = b.seqs[i]->n_prompt;
	if (!r) {
		struct pf_batch fb = {
			.n_tokens = b.n_tokens, .tokens = b.tokens, .pos = b.pos, .seq = b.seq_idx, .n_seqs = b.n_seqs,
			.block_table = b.tables, .n_table = b.n_table, .n_logits = b.n_logits, .logit_rows = b.logit_rows,
			.n_prompt = e->n_prompt,
		};
		use_dev = e->cfg.device_sampling && e->be.ops->forward_sample;
		for (int32_t i = 0; use_dev && i < b.n_logits; i++)
			use_dev = b.logit_seqs[i]->user && device_samplable(b.logit_seqs[i]->user);
		if (use_dev) {
			for (int32_t i = 0; i < b.n_logits; i++)
				e->dev_rows[i] = sample_row(b.logit_seqs[i]->user);
			r = e->be.ops->forward_sample(e->be.ctx, &fb, e->dev_rows, e->dev_tokens, e->dev_logprobs);
		} else {
			r = e->be.ops->forward(e->be.ctx, &fb, e->logits);
		}
	}
	pf_sched_step_done(e->sched);
	for (int32_t i = 0; i < b.n_seqs; i++) {
		struct eseq *es = b.seqs[i]->user;
		if (es && es->r->t_sched == 0)
			es->r->t_sched = t;
		if (es && b.seqs[i]->n_cached && !es->r->cached)
			es->r->cached = b.seqs[i]->n_cached;
	}
	if (r) {
		/* the step failed: fail every request in it rather than loop */
		for (int32_t i = 0; i < b.n_seqs; i++) {
			struct eseq *es = b.seqs[i]->user;
			if (es)
				seq_end(e, es, PF_FINISH_ERROR, NULL, 0, es->r->p.beam_width <= 1 || es->r->n_live == 1);
		}
		return r;
	}
	int32_t n_prompt_tok = 0;
	for (int32_t i = 0; i < b.n_tokens; i++)
		n_prompt_tok += b.pos[i] < b.seqs[b.seq_idx[i]]->n_prompt;
	e->prompt_computed += (uint64_t)n_prompt_tok;
	e->last_step_tokens = b.n_tokens;
	e->last_step_prompt = n_prompt_tok;

	/* Sequences never end before this loop has seen every row: beam
	 * bookkeeping is deferred to after it.  Every beam request with a row
	 * here is listed once (marked with the step), however many there are:
	 * one left out would wait for its beam step forever. */
	int32_t n_beam = 0;
	e->step_no++;
	for (int32_t i = 0; i < b.n_logits; i++) {
		struct eseq *es = b.logit_seqs[i]->user;
		float *lg = e->logits + (size_t)i * (size_t)e->n_vocab;
		struct ereq *rq = es->r;
		if (use_dev) {
			struct pf_sample_result res = { .token = e->dev_tokens[i], .gen_index = es->smp.n_generated };
			res.logprob = rq->p.sampling.logprobs ? e->dev_logprobs[i] : NAN;
			take_token(e, es, e->dev_tokens[i], &res);
			continue;
		}
		if (rq->p.beam_width > 1) {
			if (!rq->forked) {
				rq->forked = true;
				es->cum_logprob = 0;
			}
			es->n_cand = top_logprobs(lg, e->n_vocab, 2 * rq->p.beam_width, es->cand);
			es->has_cand = true;
			if (rq->beam_mark != e->step_no) {
				rq->beam_mark = e->step_no;
				/* b.n_logits entries at most: sized before the loop */
				e->beam_reqs[n_beam++] = rq;
			}
			continue;
		}
		if (!rq->forked && rq->p.n > 1) {
			rq->forked = true;
			struct eseq *sib[MAX_N];
			int32_t ns = 0;
			for (int32_t k = 1; k < rq->p.n; k++) {
				struct pf_seq *fq;
				if (pf_sched_fork(e->sched, es->q, &fq))
					break;
				struct eseq *f = eseq_new(e, rq, fq, k, NULL, 0);
				if (!f) {
					pf_sched_finish(e->sched, fq);
					break;
				}
				sib[ns++] = f;
			}
			sample_one(e, es, lg);
			for (int32_t k = 0; k < ns; k++)
				sample_one(e, sib[k], lg);
			continue;
		}
		sample_one(e, es, lg);
	}
	if (e->cfg.max_step_ms > 0)
		measure_step(e, b.n_tokens, n_prompt_tok, now_s() - t);
	for (int32_t k = 0; k < n_beam; k++) {
		struct ereq *rq = e->beam_reqs[k];
		/* a beam preempted after it got its candidates waits to be
		 * recomputed (forking it needs it running): its logits come
		 * again, the same, when it is */
		bool ready = true;
		for (int i = 0; i < MAX_N; i++)
			if (rq->seqs[i] && (!rq->seqs[i]->has_cand || rq->seqs[i]->q->state != PF_SEQ_RUNNING))
				ready = false;
		if (ready)
			beam_step(e, rq);
	}
	return n;
}

bool pf_engine_has_work(const struct pf_engine *e)
{
	return e->reqs != NULL;
}

void pf_engine_get_stats(const struct pf_engine *e, struct pf_engine_stats *ret)
{
	struct pf_sched_stats ss;
	memset(ret, 0, sizeof(*ret));
	pf_sched_get_stats(e->sched, &ss);
	ret->running = ss.n_running;
	ret->waiting = ss.n_waiting;
	ret->preempted_waiting = ss.n_preempted_waiting;
	ret->req_running = ss.n_req_running;
	ret->req_waiting = ss.n_req_waiting;
	ret->req_preempted = ss.n_req_preempted;
	ret->requests_admitted = ss.requests_added;
	ret->steps = ss.steps;
	ret->preemptions = ss.preemptions_total;
	ret->swap_outs = ss.swap_outs_total;
	ret->swap_ins = ss.swap_ins_total;
	ret->swapped = ss.n_swapped;
	pf_kv_get_stats(e->kv, &ret->kv);
	ret->prompt_tokens_computed = e->prompt_computed;
	ret->generation_tokens = e->generated;
	ret->last_step_tokens = e->last_step_tokens;
	ret->last_step_prompt_tokens = e->last_step_prompt;
	ret->prefill_budget = e->cfg.max_step_ms > 0 ? e->prefill_budget : 0;
	ret->step_base_ms = e->step_base_s * 1e3;
	ret->prompt_token_ms = e->prompt_tok_s * 1e3;
}

const struct pf_tok *pf_engine_tok(const struct pf_engine *e) { return e->tok; }
const struct pf_chat *pf_engine_chat(const struct pf_engine *e) { return e->chat; }
const struct pf_model *pf_engine_model(const struct pf_engine *e) { return e->model; }
const char *pf_engine_describe(const struct pf_engine *e) { return e->desc; }

const char *pf_engine_self_check(const struct pf_engine *e)
{
	return e->be.ops->self_check ? e->be.ops->self_check(e->be.ctx) : NULL;
}
const char *pf_engine_device_note(const struct pf_engine *e) { return e->device_note; }
int32_t pf_engine_max_model_len(const struct pf_engine *e) { return e->max_model_len; }

void pf_engine_destroy(struct pf_engine *e)
{
	if (!e)
		return;
	while (e->reqs)
		pf_engine_cancel(e, e->reqs->id, PF_FINISH_CANCELLED);
	pf_sched_destroy(e->sched);
	pf_kv_destroy(e->kv);
	if (e->be.ops)
		e->be.ops->destroy(e->be.ctx);
	pf_chat_free(e->chat);
	pf_tok_free(e->tok);
	pf_model_free(e->model);
	free(e->logits);
	free(e->dev_rows);
	free(e->dev_tokens);
	free(e->dev_logprobs);
	free(e->beam_reqs);
	free(e->n_prompt);
	free(e->text);
	free(e);
}

/* ---- persistence: export, resume, replay ------------------------------------ */

#define SIBLING_STRIDE 0x9E3779B97F4A7C15ULL /* as in eseq_new */

/* Requests restarted from their prompt on resume: beam search (it reports
 * only whole hypotheses, at the end) and n > 1 not forked yet. */
static bool export_prompt_only(const struct ereq *r)
{
	return r->p.beam_width > 1 || (r->p.n > 1 && !r->forked);
}

static struct eseq *first_live(const struct ereq *r)
{
	for (int i = 0; i < MAX_N; i++)
		if (r->seqs[i])
			return r->seqs[i];
	return NULL;
}

int pf_engine_export(const struct pf_engine *e, struct pf_engine_snapshot **ret)
{
	size_t n = 0, k = 0;
	*ret = NULL;
	for (const struct ereq *r = e->reqs; r; r = r->next)
		n += export_prompt_only(r) ? 1 : (size_t)r->n_live;
	if (n == 0)
		return 0;
	struct pf_engine_snapshot *v = calloc(n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (const struct ereq *r = e->reqs; r; r = r->next) {
		const struct eseq *s0 = first_live(r);
		if (!s0)
			continue;
		if (export_prompt_only(r)) {
			v[k++] = (struct pf_engine_snapshot){
				.user = r->user, .req_id = r->id, .index = 0, .seed = r->base_seed, .params = r->p,
				.prompt = s0->q->tokens, .n_prompt = r->n_prompt,
			};
			continue;
		}
		/* by index, so a reader sees siblings in their natural order */
		for (int32_t idx = 0; idx < MAX_N; idx++) {
			for (int i = 0; i < MAX_N; i++) {
				const struct eseq *es = r->seqs[i];
				if (!es || es->index != idx)
					continue;
				int32_t ng = es->q->n_tokens - r->n_prompt;
				bool lp = r->p.sampling.logprobs && ng > 0 && es->n_lp >= ng;
				v[k++] = (struct pf_engine_snapshot){
					.user = r->user, .req_id = r->id, .index = es->index, .seed = es->smp.seed,
					.params = r->p, .prompt = es->q->tokens, .n_prompt = r->n_prompt,
					.generated = ng ? es->q->tokens + r->n_prompt : NULL, .n_generated = ng,
					.logprobs = lp ? es->lp : NULL,
					.top = lp && r->p.sampling.top_logprobs > 0 ? es->lp_top : NULL,
				};
			}
		}
	}
	*ret = v;
	return (int)k;
}

__attribute__((format(printf, 3, 4)))
static int resume_fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Everything pf_engine_submit checks, plus what only a resume can get
 * wrong.  Returns 0 or -EINVAL with a message. */
static int resume_check(const struct pf_engine *e, const struct pf_engine_snapshot *seqs, int32_t n_seqs, char *err,
			size_t errlen)
{
	if (!seqs || n_seqs < 1 || n_seqs > MAX_N)
		return resume_fail(err, errlen, "%d sequences to resume, 1..%d allowed", n_seqs, MAX_N);
	const struct pf_engine_snapshot *s0 = &seqs[0];
	const struct pf_request_params *p = &s0->params;
	if (s0->n_prompt < 1 || !s0->prompt)
		return resume_fail(err, errlen, "the prompt is empty");
	for (int32_t i = 0; i < s0->n_prompt; i++)
		if (s0->prompt[i] < 0 || s0->prompt[i] >= e->n_vocab)
			return resume_fail(err, errlen, "prompt token %d at position %d is outside the vocabulary (0..%d)",
					   s0->prompt[i], i, e->n_vocab - 1);
	int r = pf_sampler_validate(&p->sampling, e->n_vocab, err, errlen);
	if (r)
		return r;
	if (p->n < 1 || p->n > MAX_N || p->beam_width < 0 || p->beam_width > MAX_N / 2 ||
	    (p->beam_width > 1 && p->n > 1))
		return resume_fail(err, errlen,
				   "n must be 1..%d and beam_width 0..%d (not both above 1); got n=%d beam_width=%d", MAX_N,
				   MAX_N / 2, p->n, p->beam_width);
	if (!isfinite(p->length_penalty))
		return resume_fail(err, errlen, "length_penalty must be finite");
	int64_t need = (int64_t)s0->n_prompt + p->sampling.max_tokens;
	if (need > e->max_model_len)
		return resume_fail(err, errlen,
				   "prompt (%d tokens) + max_tokens (%d) = %lld exceeds the context limit of %d tokens",
				   s0->n_prompt, p->sampling.max_tokens, (long long)need, e->max_model_len);
	r = beam_fit_check(e, s0->n_prompt, p, err, errlen);
	if (r)
		return r;
	uint32_t seen = 0;
	for (int32_t k = 0; k < n_seqs; k++) {
		const struct pf_engine_snapshot *s = &seqs[k];
		if (s->n_prompt != s0->n_prompt || memcmp(s->prompt, s0->prompt, sizeof(int32_t) * (size_t)s0->n_prompt) ||
		    s->params.n != p->n || s->params.beam_width != p->beam_width)
			return resume_fail(err, errlen, "sequence %d has another prompt or n than the first", k);
		if (s->index < 0 || s->index >= p->n || (seen & (1u << s->index)))
			return resume_fail(err, errlen, "sequence index %d is outside 0..%d or repeated", s->index, p->n - 1);
		seen |= 1u << s->index;
		if (s->n_generated < 0 || (s->n_generated > 0 && !s->generated))
			return resume_fail(err, errlen, "sequence %d: %d generated tokens", s->index, s->n_generated);
		if (s->n_generated >= p->sampling.max_tokens)
			return resume_fail(err, errlen, "sequence %d already has its %d tokens (max_tokens %d): it had finished",
					   s->index, s->n_generated, p->sampling.max_tokens);
		if (p->beam_width > 1 && (s->n_generated > 0 || n_seqs > 1))
			return resume_fail(err, errlen, "beam search restarts from its prompt: no generated tokens");
		for (int32_t i = 0; i < s->n_generated; i++)
			if (s->generated[i] < 0 || s->generated[i] >= e->n_vocab)
				return resume_fail(err, errlen, "sequence %d: generated token %d at %d is outside the vocabulary",
						   s->index, s->generated[i], i);
		if (p->sampling.logprobs && s->n_generated > 0 &&
		    (!s->logprobs || (p->sampling.top_logprobs > 0 && !s->top)))
			return resume_fail(err, errlen, "sequence %d: logprobs requested but its earlier ones are missing",
					   s->index);
	}
	return 0;
}

int pf_engine_resume(struct pf_engine *e, const struct pf_engine_snapshot *seqs, int32_t n_seqs, void *user,
		     uint64_t *ret_id, char *err, size_t errlen)
{
	int r = resume_check(e, seqs, n_seqs, err, errlen);
	if (r)
		return r;
	const struct pf_engine_snapshot *s0 = &seqs[0];
	const struct pf_request_params *p = &s0->params;
	bool any_gen = false;
	for (int32_t k = 0; k < n_seqs; k++)
		any_gen |= seqs[k].n_generated > 0;
	struct ereq *rq = calloc(1, sizeof(*rq));
	if (!rq)
		return -ENOMEM;
	rq->id = e->next_id++;
	rq->user = user;
	rq->p = *p;
	rq->n_prompt = s0->n_prompt;
	rq->base.id = rq->id;
	rq->base.priority = p->priority;
	rq->base.max_tokens = p->sampling.max_tokens;
	/* sequences that were running on their own stay on their own; only an
	 * n > 1 request caught before its fork forks again */
	rq->forked = p->beam_width <= 1 && p->n > 1 && (n_seqs > 1 || any_gen || s0->index > 0);
	rq->base_seed = s0->seed - (uint64_t)s0->index * SIBLING_STRIDE;
	rq->t_submit = now_s();
	if (n_seqs > 1) {
		rq->sib_base = calloc((size_t)n_seqs - 1, sizeof(*rq->sib_base));
		if (!rq->sib_base) {
			free(rq);
			return -ENOMEM;
		}
		for (int32_t k = 0; k < n_seqs - 1; k++)
			rq->sib_base[k] = rq->base;
	}
	/* linked first so the failure path can end its sequences like any
	 * request's, quietly */
	rq->next = e->reqs;
	if (e->reqs)
		e->reqs->prev = rq;
	e->reqs = rq;
	int32_t *toks = NULL;
	for (int32_t k = 0; k < n_seqs; k++) {
		const struct pf_engine_snapshot *s = &seqs[k];
		int32_t nt = s->n_prompt + s->n_generated;
		struct pf_seq *q;
		free(toks);
		toks = malloc(sizeof(int32_t) * (size_t)nt);
		if (!toks) {
			r = -ENOMEM;
			goto fail;
		}
		memcpy(toks, s->prompt, sizeof(int32_t) * (size_t)s->n_prompt);
		if (s->n_generated)
			memcpy(toks + s->n_prompt, s->generated, sizeof(int32_t) * (size_t)s->n_generated);
		r = pf_sched_add(e->sched, k ? &rq->sib_base[k - 1] : &rq->base, toks, nt, (int64_t)(rq->t_submit * 1000),
				 &q);
		if (r)
			goto fail;
		/* the earlier tokens recompute in the one-token decode order, as
		 * after a preemption, so the continuation is bit-identical */
		q->n_prompt = s->n_prompt;
		struct eseq *es = eseq_new(e, rq, q, s->index, err, errlen);
		if (!es) {
			pf_sched_finish(e->sched, q);
			r = -ENOMEM;
			goto fail;
		}
		es->smp.seed = s->seed;
		es->n_replay = s->n_generated;
		struct pf_sample_result res = { 0 };
		int32_t tk = p->sampling.logprobs ? p->sampling.top_logprobs : 0;
		for (int32_t i = 0; p->sampling.logprobs && i < s->n_generated; i++) {
			res.logprob = s->logprobs[i];
			res.n_top = 0;
			for (int32_t j = 0; j < tk; j++) {
				const struct pf_sample_logprob *t = &s->top[(size_t)i * (size_t)tk + (size_t)j];
				if (t->token >= 0 && t->token < e->n_vocab)
					res.top[res.n_top++] = *t;
			}
			if (lp_record(es, &p->sampling, &res)) {
				r = -ENOMEM;
				goto fail;
			}
		}
	}
	free(toks);
	e->replay_pending |= any_gen;
	*ret_id = rq->id;
	return 0;
fail:
	free(toks);
	if (r == -ENOMEM)
		snprintf(err, errlen, "out of memory resuming a request");
	if (rq->n_live == 0) {
		req_unlink(e, rq);
		return r;
	}
	for (int i = MAX_N - 1; i >= 0; i--) {
		if (!rq->seqs[i])
			continue;
		bool last = rq->n_live == 1;
		seq_end(e, rq->seqs[i], PF_FINISH_CANCELLED, NULL, 0, false);
		if (last)
			break;
	}
	return r;
}

/* Report a resumed sequence's earlier tokens again, through a fresh
 * sampler, detokenizer and stop-string window: each call sees exactly the
 * inputs it saw the first time, so each token's text is what was reported
 * then, and the state left behind is the first run's at that point. */
static void replay_seq(struct pf_engine *e, struct eseq *es)
{
	struct ereq *r = es->r;
	const struct pf_sampling_params *sp = &r->p.sampling;
	int32_t n = es->n_replay, tk = sp->logprobs ? sp->top_logprobs : 0;
	es->n_replay = 0;
	for (int32_t i = 0; i < n; i++) {
		int32_t tok = es->q->tokens[r->n_prompt + i];
		struct pf_sample_result res = { .token = tok, .logprob = NAN, .replayed = true, .gen_index = (uint32_t)i };
		for (int32_t j = 0; i < es->n_lp && j < tk; j++) {
			const struct pf_sample_logprob *t = &es->lp_top[(size_t)i * (size_t)tk + (size_t)j];
			if (t->token >= 0)
				res.top[res.n_top++] = *t;
		}
		if (sp->logprobs && i < es->n_lp)
			res.logprob = es->lp[i];
		/* (a stop cannot happen for what pf_engine_export wrote: those
		 * sequences had not stopped; it would end it as take_token does) */
		if (!emit_token(e, es, tok, &res))
			return;
	}
}

static void replay_all(struct pf_engine *e)
{
	e->replay_pending = false;
	struct ereq *next;
	for (struct ereq *r = e->reqs; r; r = next) {
		next = r->next;
		/* replay_seq may end its own sequence (and with the last one
		 * free r), never another: work from a copy of the list */
		struct eseq *todo[MAX_N];
		int32_t n = 0;
		for (int i = 0; i < MAX_N; i++)
			if (r->seqs[i] && r->seqs[i]->n_replay > 0)
				todo[n++] = r->seqs[i];
		for (int32_t k = 0; k < n; k++)
			replay_seq(e, todo[k]);
	}
}

uint64_t pf_engine_model_fingerprint(const struct pf_engine *e)
{
	const struct pf_gguf *g = e->model->gguf;
	/* the file's size as the seed: a file rewritten with other weights
	 * but the same directory still differs in size or offsets */
	return XXH3_64bits_withSeed(g->base, (size_t)g->data_off, g->size);
}
