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

#include "kernels/backend.h"
#include "runtime/engine/kv.h"
#include "runtime/engine/sampler.h"
#include "runtime/engine/scheduler.h"

struct pf_tok;
struct pf_chat;
struct pf_model;

/* Why a sequence ended: the one vocabulary, from the engine to the wire (the
 * values are the wire's PF_FINISHED_*, shm/proto.h; the daemon passes them
 * through, checked by static_assert).  The engine decides STOP, LENGTH and
 * ERROR itself; CANCELLED, DEADLINE and STALLED are the reason its owner
 * gives pf_engine_cancel(). */
enum pf_finish_reason {
	PF_FINISH_STOP = 0,      /* EOS, a stop token or a stop string */
	PF_FINISH_LENGTH = 1,    /* max_tokens, or the model's context is full */
	PF_FINISH_CANCELLED = 2, /* asked for, or its client went away */
	PF_FINISH_ERROR = 3,
	PF_FINISH_DEADLINE = 4,  /* the request's deadline passed */
	PF_FINISH_STALLED = 5,   /* its client stopped reading completions */
};

struct pf_engine_config {
	const char *model_path;
	int n_threads;             /* 0: every CPU this process may use */
	int64_t kv_memory;         /* bytes for the KV pool; 0 (default): 512 MiB on the CPU, on a GPU
				    * what gpu_memory_utilization leaves after the weights */
	int device;                /* PF_DEVICE_CPU (default), PF_DEVICE_AUTO or a CUDA index (device.h) */
	double gpu_memory_utilization; /* share of the GPU's memory to use; 0: 0.90 */
	int32_t block_size;        /* 8, 16 or 32 (default 16) */
	uint32_t kv_dtype;         /* PF_DT_F16 (default) or PF_DT_F32 */
	int32_t max_model_len;     /* 0: the model's context length, capped by the pool */
	int64_t swap_space;        /* bytes of host KV swap slots; < 0 (default): 4 GiB on a GPU, none
				    * on the CPU (device.h); used as sched.preemption_mode says */
	/* Let a backend that can (CUDA) draw tokens where its logits are,
	 * for rows that need only temperature/top-k/top-p/min-p (default
	 * true).  Its draw orders the survivors by token id, the CPU sampler
	 * by its own steps, so a seeded request may pick another token than on
	 * the CPU — as the GPU's arithmetic may anyway. */
	bool device_sampling;
	/* Target time of one step, in ms (0, the default: none).  The prompt
	 * tokens a step takes (sched.max_num_batched_tokens at most) follow
	 * the measured cost of a token — a step's time is fitted as a fixed
	 * part (from steps of decodes only) plus a cost per prompt token — so
	 * steps stay near the target and running streams keep a steady
	 * inter-token latency while long prompts go in over several steps.
	 * Decodes are never held back for it.  The first steps with a prompt
	 * take PF_ENGINE_PROBE_TOKENS while there is nothing measured yet. */
	double max_step_ms;
	struct pf_sched_config sched;
	/* Where the backend's warnings and failed steps are reported (the
	 * daemon's log); unset: dropped (backends never print). */
	struct pf_backend_log backend_log;
};

#define PF_ENGINE_PROBE_TOKENS 8 /* prompt tokens per step before the cost is known */

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
	/* Beam search reports whole hypotheses instead of streaming tokens:
	 * one call per hypothesis, best first (rank 0..), each with why it
	 * ended (STOP: EOS or a stop token; LENGTH: max_tokens or the
	 * context), usage->last on the final one — which ends the request:
	 * no on_finish follows.  A beam request that is cancelled or fails
	 * reports one on_finish (index 0, last) instead. */
	void (*on_beam)(void *ctx, uint64_t req_id, void *req_user, int32_t rank, enum pf_finish_reason why,
			const int32_t *tokens, int32_t n, const char *text, size_t len, const struct pf_usage *usage);
};

/* running/waiting count sequences (n > 1 and beams count each);
 * req_* count requests (see struct pf_sched_stats).  requests_admitted
 * counts accepted submissions: each ends in exactly one on_finish with
 * usage->last (a finished beam search: in one on_beam with usage->last),
 * so admitted == those finishes + req_running + req_waiting. */
struct pf_engine_stats {
	int32_t running, waiting, preempted_waiting;
	int32_t req_running, req_waiting, req_preempted;
	uint64_t requests_admitted;
	struct pf_kv_stats kv;
	uint64_t steps, preemptions;
	uint64_t swap_outs, swap_ins;  /* preemptions by swapping, and their resumptions */
	int32_t swapped;               /* waiting sequences whose K/V is in host slots */
	uint64_t prompt_tokens_computed, generation_tokens;
	int32_t last_step_tokens;
	int32_t last_step_prompt_tokens; /* of those, prompt tokens (prefill) */
	int32_t prefill_budget;        /* max_step_ms: prompt tokens the next step may take; 0: no cap */
	double step_base_ms, prompt_token_ms; /* max_step_ms: the fitted step time model */
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
 * limit — the message states both numbers), -ENOSPC with a message when
 * beam search's beams could not all hold their KV blocks in the pool at
 * once (they wait for each other, so they would never finish), -ENOMEM.
 */
int pf_engine_submit(struct pf_engine *e, const int32_t *prompt, int32_t n, const struct pf_request_params *p,
		     void *user, uint64_t *ret_id, char *err, size_t errlen);

/* End a request in any state; its blocks return to the pool now and
 * on_finish reports `why` (CANCELLED, DEADLINE or STALLED; anything else is
 * taken as CANCELLED) for each live sequence.  -ENOENT if unknown. */
int pf_engine_cancel(struct pf_engine *e, uint64_t id, enum pf_finish_reason why);

/* Pause or resume a request's sequences (back-pressure).  -ENOENT if unknown. */
int pf_engine_pause(struct pf_engine *e, uint64_t id, bool paused);

/* Run one iteration.  Returns the tokens computed (0: nothing to do) or a
 * negative errno from the backend (the step's requests are failed). */
int pf_engine_step(struct pf_engine *e);
/* Whether this build checks the scheduler and KV invariants after every
 * step (PF_CHECK_INVARIANTS; a broken one aborts with a message). */
bool pf_engine_checks_invariants(void);

bool pf_engine_has_work(const struct pf_engine *e);
void pf_engine_get_stats(const struct pf_engine *e, struct pf_engine_stats *ret);

const struct pf_tok *pf_engine_tok(const struct pf_engine *e);
const struct pf_chat *pf_engine_chat(const struct pf_engine *e); /* NULL when the model has no known template */
const struct pf_model *pf_engine_model(const struct pf_engine *e);
const char *pf_engine_describe(const struct pf_engine *e);
/* The backend's load-time self-check verdict ("avx2 kernels bit-identical to
 * the scalar reference on …", or what failed and what it fell back to), or
 * NULL when the backend has none.  Cannot fail. */
const char *pf_engine_self_check(const struct pf_engine *e);
/* Which device the engine runs on and why ("device: cpu (auto: no usable
 * CUDA device)"), for the log.  Cannot fail. */
const char *pf_engine_device_note(const struct pf_engine *e);
int32_t pf_engine_max_model_len(const struct pf_engine *e);

/* ---- persistence (graceful drain, issue 7) ----------------------------------
 *
 * pf_engine_export() describes every unfinished sequence so it can be written
 * to the state file (statefile.h); pf_engine_resume() queues it again in
 * another engine, which recomputes the KV of prompt + generated tokens
 * (prefill, reusing cached prefix blocks) and then samples on exactly where
 * the first run stopped: the sampler's Philox counter is the generated-token
 * count, penalties, min_tokens and max_tokens see the earlier tokens, and the
 * stop-string window and streaming detokenizer are rebuilt by feeding the
 * earlier tokens through them again.  With greedy sampling or a seed the
 * continuation is bit-identical to an uninterrupted run.
 *
 * Replay: at the start of the first pf_engine_step() after a resume, every
 * earlier token is reported again through on_token, in order, with exactly
 * the text the first run reported for it, with res->replayed set and
 * res->gen_index its position (0-based) among the generated tokens, and with
 * the logprobs the first run reported.  The daemon forwards only those the
 * reconnecting client has not received.  New tokens follow with replayed
 * false.  on_finish counts every generated token, replayed ones included.
 *
 *   export: RUNNING/WAITING seq ──► snapshot (prompt, generated, params, seed)
 *   resume: snapshot ──► WAITING ──prefill──► replay (first step) ──► decode…
 */

/*
 * One unfinished sequence.  In pf_engine_export()'s result the pointers
 * point into engine memory, valid until the next call that changes the
 * engine (step, submit, resume, cancel, destroy).
 *
 * What is exported:
 *   - plain sequences (n = 1, or a forked n > 1 sibling): the generated
 *     tokens so far, one snapshot per live sequence with its index (finished
 *     siblings were already reported and are not exported);
 *   - n > 1 not yet forked (still in prefill): one snapshot, index 0, no
 *     generated tokens, n intact, so the resumed request forks as before;
 *   - beam search: one snapshot, no generated tokens — beam search reports
 *     only whole hypotheses at the end, so restarting from the prompt is
 *     exactly equivalent.
 */
struct pf_engine_snapshot {
	void *user;                   /* export: the request's user pointer; resume ignores it */
	uint64_t req_id;              /* export: the request's id; resume ignores it */
	int32_t index;                /* the sequence's index, 0..n-1 */
	uint64_t seed;                /* this sequence's Philox key (its effective seed) */
	struct pf_request_params params;
	const int32_t *prompt;        /* (n_prompt) */
	int32_t n_prompt;
	const int32_t *generated;     /* (n_generated) tokens already reported through on_token */
	int32_t n_generated;
	/* when params.sampling.logprobs and n_generated > 0, else NULL: */
	const float *logprobs;        /* (n_generated) each token's reported logprob */
	const struct pf_sample_logprob *top; /* (n_generated, top_logprobs) alternatives; unused: token -1 */
};

/*
 * Describe every unfinished sequence (see struct pf_engine_snapshot).
 * Returns the number of snapshots (>= 0) and *ret, one malloc'ed array the
 * caller frees with free() (NULL when there are none), or -ENOMEM.
 * Changes nothing in the engine.
 */
int pf_engine_export(const struct pf_engine *e, struct pf_engine_snapshot **ret);

/*
 * Queue again the exported sequences of one request: seqs[0..n_seqs) must
 * share prompt and params and have distinct indices (several only for a
 * forked n > 1 request).  They become one request with a new id, reported
 * with their original indices; user is its user pointer.  Checks everything
 * pf_engine_submit() checks, plus: tokens in the vocabulary, fewer generated
 * tokens than max_tokens (a sequence at its limit had finished), no
 * generated tokens for beam search, indices below n.  Returns 0 and the id,
 * or -EINVAL with a message, -ENOMEM (nothing queued either way).  The
 * earlier tokens are replayed through on_token at the start of the next
 * pf_engine_step(), before any new token.
 */
int pf_engine_resume(struct pf_engine *e, const struct pf_engine_snapshot *seqs, int32_t n_seqs, void *user,
		     uint64_t *ret_id, char *err, size_t errlen);

/*
 * A 64-bit fingerprint of the loaded model: XXH3 of the GGUF file's size,
 * its metadata and tensor directory (names, types, shapes, offsets — the
 * tokenizer is in the metadata).  Equal fingerprints mean token ids and the
 * arithmetic mean the same; the state file stores it to refuse resuming on
 * another model.  Cannot fail.
 */
uint64_t pf_engine_model_fingerprint(const struct pf_engine *e);

#endif
