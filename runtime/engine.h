/*
 * engine.h — the serving engine: model + backend + KV manager + scheduler +
 * sampler + tokenizer, stepped one iteration at a time.
 *
 * This is the whole inference path without any IPC: pinferd wraps it with
 * shared-memory rings, pinfer-run and pinfer-bench call it in process.
 * Requests go in with pf_engine_submit(); each pf_engine_step() runs one
 * scheduler step and one backend forward over the batch it built, samples
 * one token for every sequence that produced logits, and reports through the
 * callbacks in struct pf_engine_events: on_token with the new token and the
 * UTF-8 text it completes (never a broken character, never part of a stop
 * string), on_finish with the reason and usage counts.
 *
 * Parallel sampling (n > 1): the prompt is computed once; when its logits
 * arrive the request forks n sequences that share the prompt's KV blocks
 * copy-on-write and sample independently (sequence k uses seed + k).
 *
 * Beam search (beam_width > 1): the prompt is computed once; every step the
 * live beams' candidates are scored by cumulative log-probability and the
 * best beam_width continue (forking a beam that keeps several children,
 * dropping beams with none).  A beam that ends in EOS or a stop token is
 * set aside as a finished hypothesis; the search ends when beam_width
 * hypotheses are finished or max_tokens is reached, and the hypotheses are
 * reported best first by cum_logprob / length^length_penalty.
 *
 * Single-threaded: every function must be called from the engine thread.
 */
#ifndef PF_ENGINE_H
#define PF_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "kv.h"
#include "sampler.h"
#include "scheduler.h"

struct pf_tok;
struct pf_chat;
struct pf_model;

enum pf_finish_reason {
	PF_FINISH_STOP = 0,      /* EOS, a stop token or a stop string */
	PF_FINISH_LENGTH = 1,    /* max_tokens, or the model's context is full */
	PF_FINISH_CANCELLED = 2,
	PF_FINISH_ERROR = 3,
};

struct pf_engine_config {
	const char *model_path;
	int n_threads;             /* 0: every CPU this process may use */
	int64_t kv_memory;         /* bytes for the KV pool (default 512 MiB) */
	int32_t block_size;        /* 8, 16 or 32 (default 16) */
	uint32_t kv_dtype;         /* PF_DT_F16 (default) or PF_DT_F32 */
	int32_t max_model_len;     /* 0: the model's context length, capped by the pool */
	struct pf_sched_config sched;
};

struct pf_request_params {
	struct pf_sampling_params sampling;
	int32_t n;                 /* completions (default 1) */
	int32_t beam_width;        /* 0 or 1: off */
	float length_penalty;      /* beam search score exponent (default 1) */
	int32_t priority;          /* lower runs first under the priority policy */
};

struct pf_usage {
	int32_t prompt_tokens;
	int32_t cached_tokens;     /* prompt tokens served from the prefix cache */
	int32_t generated_tokens;
	double queue_s;            /* submit → first scheduled */
	double ttft_s;             /* submit → first token */
	double decode_s;           /* first token → finish */
	float beam_score;          /* beam search: the hypothesis' score */
	bool last;                 /* on_finish: the request's last live sequence ended */
};

struct pf_engine_events {
	void *ctx;
	/* A token of sequence `index` (0..n-1) and the text it completes. */
	void (*on_token)(void *ctx, uint64_t req_id, void *req_user, int32_t index, int32_t token,
			 const char *text, size_t len, const struct pf_sample_result *res);
	/* Sequence `index` finished.  `text` is any text released at the end. */
	void (*on_finish)(void *ctx, uint64_t req_id, void *req_user, int32_t index, enum pf_finish_reason why,
			  const char *text, size_t len, const struct pf_usage *usage);
	/* Beam search reports whole hypotheses instead of streaming tokens. */
	void (*on_beam)(void *ctx, uint64_t req_id, void *req_user, int32_t rank, const int32_t *tokens,
			int32_t n, const char *text, size_t len, const struct pf_usage *usage);
};

struct pf_engine_stats {
	int32_t running, waiting;
	struct pf_kv_stats kv;
	uint64_t steps, preemptions;
	uint64_t prompt_tokens_computed, generation_tokens;
	int32_t last_step_tokens;
};

struct pf_engine;

/* Defaults as documented on the fields.  Cannot fail. */
struct pf_engine_config pf_engine_config_default(void);
struct pf_request_params pf_request_params_default(void);

/* Load the model and start the CPU backend.  Returns 0, or a negative errno
 * with a message in err. */
int pf_engine_create(const struct pf_engine_config *cfg, const struct pf_engine_events *ev,
		     struct pf_engine **ret, char *err, size_t errlen);

/* Cancels everything still running.  Accepts NULL. */
void pf_engine_destroy(struct pf_engine *e);

/*
 * Queue a request.  Returns 0 and its id, or -EINVAL with a message (bad
 * parameters, token ids out of range, prompt + max_tokens over the context
 * limit — the message states both numbers), -ENOMEM.
 */
int pf_engine_submit(struct pf_engine *e, const int32_t *prompt, int32_t n, const struct pf_request_params *p,
		     void *user, uint64_t *ret_id, char *err, size_t errlen);

/* Cancel a request in any state; its blocks return to the pool now and
 * on_finish reports CANCELLED for each live sequence.  -ENOENT if unknown. */
int pf_engine_cancel(struct pf_engine *e, uint64_t id);

/* Pause or resume a request's sequences (back-pressure).  -ENOENT if unknown. */
int pf_engine_pause(struct pf_engine *e, uint64_t id, bool paused);

/* Run one iteration.  Returns the tokens computed (0: nothing to do) or a
 * negative errno from the backend (the step's requests are failed). */
int pf_engine_step(struct pf_engine *e);

bool pf_engine_has_work(const struct pf_engine *e);
void pf_engine_get_stats(const struct pf_engine *e, struct pf_engine_stats *ret);

const struct pf_tok *pf_engine_tok(const struct pf_engine *e);
const struct pf_chat *pf_engine_chat(const struct pf_engine *e); /* NULL when the model has no known template */
const struct pf_model *pf_engine_model(const struct pf_engine *e);
const char *pf_engine_describe(const struct pf_engine *e);
int32_t pf_engine_max_model_len(const struct pf_engine *e);

#endif
