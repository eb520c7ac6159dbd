/*
 * scheduler.h — the continuous-batching scheduler.
 *
 * Every engine step the scheduler rebuilds the batch (iteration-level
 * scheduling, Orca/vLLM): finished sequences have left, new ones may join,
 * and prefill chunks share the step with single-token decodes under one token
 * budget.  It only does bookkeeping — which sequence computes which token
 * positions this step, into which KV blocks — and is tested without a model.
 *
 * Units: a request (struct pf_req) owns one or more sequences (struct pf_seq):
 * n > 1 parallel samples and beam search fork sequences from the request's
 * first one after its prompt is computed (pf_sched_fork), sharing its KV
 * blocks copy-on-write.  Scheduling, preemption and cancellation work on
 * sequences; a request finishes when its last sequence does.
 *
 * Sequence states:
 *
 *   add ──► WAITING ──admit──► RUNNING ──finish/cancel──► (freed)
 *              ▲                  │
 *              └──── preempt ─────┘   recompute: blocks freed, tokens kept
 *                                     swap: K/V moved to host slots, kept
 *
 * Preemption modes (preemption_mode): RECOMPUTE frees the victim's blocks
 * and later recomputes its prompt and generated tokens as one prefill (the
 * prefix cache may hand part back).  SWAP copies the K/V of its computed
 * positions to host swap slots (pf_kv_set_host_blocks) and later copies it
 * back, computing nothing again; the step lists the moves in swap_out /
 * swap_in for the backend.  AUTO swaps when the host slots have room and
 * the victim has at least swap_min_tokens computed positions — moving K/V
 * over PCIe costs bytes ∝ context, recomputing costs a prefill ∝ context ×
 * model size, so swapping wins for long contexts on a GPU; short ones are
 * cheaper to recompute and leave the slots to long ones — and recomputes
 * otherwise.  Without host slots every mode recomputes.
 *
 * One step (pf_sched_step):
 *   1. RUNNING decodes first (one token each), then RUNNING prefills, each
 *      chunk capped by what is left of max_num_batched_tokens.  When a
 *      sequence cannot get a block, the lowest-priority, newest RUNNING
 *      sequence is preempted (its blocks freed, back to the front of WAITING
 *      with its generated tokens kept) until it can.
 *   2. If nobody was preempted, WAITING sequences are admitted in order
 *      (FCFS: arrival; PRIORITY: priority then arrival; preempted ones keep
 *      their arrival so they come first) while the token budget and
 *      max_num_seqs allow and the pool keeps `watermark` free blocks after
 *      the admission — that margin is what keeps preemption from thrashing.
 *      A sequence whose request already runs (a preempted beam) needs no
 *      margin: the running beams wait for it.
 *      Admission stops at the first that does not fit (no overtaking).
 *   3. With prefix caching on, admission first takes every cached leading
 *      block of the sequence's tokens and skips computing them.  The
 *      lookup is counted (pf_kv_record_prefix_lookup) only when the
 *      sequence is admitted, once per admission.
 *
 * Static batching (the baseline, same engine and kernels): admit up to
 * static_batch requests only when nothing runs, each reserving blocks for
 * its whole prompt + max_tokens up front; run until the last finishes.  A
 * batch whose prompts exceed one step's token budget is admitted over as
 * many steps as that takes (the budget bounds a step, not a batch); it
 * closes once it has static_batch requests, the queue is empty, or the
 * pool is full.
 *
 * After the backend ran the step, the engine calls pf_sched_step_done(), then
 * for each sequence that got logits appends its sampled token
 * (pf_sched_append) or finishes it (pf_sched_finish).
 */
#ifndef PF_SCHEDULER_H
#define PF_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/engine/kv.h"

enum pf_sched_policy { PF_SCHED_FCFS = 0, PF_SCHED_PRIORITY = 1 };

enum pf_preempt_mode { PF_PREEMPT_AUTO = 0, PF_PREEMPT_RECOMPUTE = 1, PF_PREEMPT_SWAP = 2 };

struct pf_sched_config {
	int32_t max_num_batched_tokens; /* token budget per step (default 2048) */
	int32_t max_num_seqs;           /* running sequences cap (default 256) */
	int32_t watermark_blocks;       /* free blocks kept at admission (-1: 1% of the pool) */
	enum pf_sched_policy policy;
	bool prefix_caching;            /* default true */
	bool static_batching;           /* baseline mode */
	int32_t static_batch;           /* requests per static batch (default 8) */
	int64_t wait_timeout_ms;        /* batching window when idle (default 0: none) */
	enum pf_preempt_mode preemption_mode; /* default AUTO (see above) */
	int32_t swap_min_tokens;        /* AUTO swaps victims with at least this many computed (default 256) */
};

enum pf_seq_state { PF_SEQ_WAITING = 0, PF_SEQ_RUNNING = 1, PF_SEQ_DONE = 2 };

struct pf_req;

struct pf_seq {
	uint64_t id;
	struct pf_req *req;
	enum pf_seq_state state;
	struct pf_kv_seq kv;
	int32_t *tokens;        /* prompt then generated tokens */
	int32_t n_tokens, cap;
	int32_t n_prompt;
	int32_t n_computed;     /* positions whose K/V is in the cache */
	int32_t n_preemptions;
	int32_t n_cached;       /* prompt tokens served by the prefix cache at first admission */
	uint64_t order;         /* arrival order (kept across preemption) */
	bool paused;            /* engine asks not to schedule it (full completion ring) */
	/* this step */
	int32_t step_new;       /* tokens computed this step */
	bool step_logits;       /* a next token will be sampled from this step */
	struct pf_seq *prev, *next;
	void *user;             /* engine data (sampler, stream state) */
};

struct pf_req {
	uint64_t id;
	int32_t priority;       /* lower runs first under PF_SCHED_PRIORITY */
	int32_t max_tokens;     /* generated tokens cap (for static reservations) */
	int32_t n_seqs;         /* live sequences */
	int64_t arrival_ms;
	void *user;
};

struct pf_sched_batch {
	int32_t n_tokens;
	int32_t *tokens, *pos, *seq_idx; /* (n_tokens) */
	int32_t n_seqs;
	struct pf_seq **seqs;            /* (n_seqs) sequences in this step */
	const int32_t **tables;          /* (n_seqs) their block tables */
	int32_t *n_table;                /* (n_seqs) */
	int32_t n_logits;
	int32_t *logit_rows;             /* (n_logits) token rows to sample from */
	struct pf_seq **logit_seqs;      /* (n_logits) the sequence of each */
	int32_t n_copies;
	struct pf_kv_copy *copies;       /* CoW block copies to run before the step */
	int32_t n_preempted;             /* preemptions during this step */
	/* Swap moves, in this order: swap_out (device block → host slot)
	 * before anything else of the step, since the blocks they read may be
	 * handed out again in it; then copies; then swap_in (host slot →
	 * device block).  A step never has both swap_out and swap_in. */
	int32_t n_swap_out, n_swap_in;
	struct pf_kv_copy *swap_out, *swap_in;
};

/*
 * Sequence counts and request counts: a request is running while any of
 * its sequences runs, waiting otherwise, and "preempted" when it waits
 * with a sequence that was preempted (a subset of waiting).  requests_added
 * counts pf_sched_add calls and requests_done the requests whose last
 * sequence finished, so requests_added - requests_done ==
 * n_req_running + n_req_waiting at every moment (pf_sched_check).
 */
struct pf_sched_stats {
	int32_t n_running, n_waiting, n_preempted_waiting; /* sequences */
	int32_t n_req_running, n_req_waiting, n_req_preempted;
	uint64_t preemptions_total;     /* of which: */
	uint64_t swap_outs_total;       /* preemptions by swapping (sequences) */
	uint64_t swap_ins_total;        /* swapped sequences resumed */
	int32_t n_swapped;              /* waiting sequences whose K/V is in host slots */
	uint64_t steps;
	uint64_t requests_added, requests_done;
};

struct pf_sched;

/* Defaults documented on the fields.  Cannot fail. */
struct pf_sched_config pf_sched_config_default(void);

/* Create a scheduler over the block manager `kv` (not owned).  Returns 0,
 * -EINVAL for a bad config, -ENOMEM. */
int pf_sched_create(const struct pf_sched_config *cfg, struct pf_kv *kv, struct pf_sched **ret);

/* Frees every sequence still queued or running.  Accepts NULL. */
void pf_sched_destroy(struct pf_sched *s);

/*
 * Queue a request with one sequence holding `prompt` (n ≥ 1 tokens).  `req`
 * is caller-owned and must outlive its sequences.  Returns 0 and the new
 * sequence in *ret_seq, -EINVAL, -ENOMEM.
 */
int pf_sched_add(struct pf_sched *s, struct pf_req *req, const int32_t *prompt, int32_t n, int64_t now_ms,
		 struct pf_seq **ret_seq);

/*
 * Build the next step into *b (valid until the next call).  Returns the
 * number of tokens scheduled (0 when there is nothing to do), or -ENOMEM.
 */
int pf_sched_step(struct pf_sched *s, int64_t now_ms, struct pf_sched_batch *b);

/*
 * Cap the prompt tokens (prefill chunks and admissions) of each following
 * step at n, under max_num_batched_tokens; decodes are not counted and never
 * cut.  The engine sets it from the measured cost of a token so that a step
 * stays near a target time (--max-step-ms): running streams keep their
 * inter-token latency while a long prompt goes in over several steps.  n <=
 * 0: no cap.  Cannot fail.
 */
void pf_sched_set_prefill_budget(struct pf_sched *s, int32_t n);

/* The step ran: advance every scheduled sequence's computed count and
 * register its newly full blocks in the prefix cache.  Cannot fail. */
void pf_sched_step_done(struct pf_sched *s);

/* Append a sampled token to a RUNNING sequence.  Returns 0, -ENOMEM. */
int pf_sched_append(struct pf_sched *s, struct pf_seq *seq, int32_t token);

/* A new RUNNING sequence of the same request sharing `src`'s blocks and
 * tokens (copy-on-write).  Returns 0, -EINVAL if src is not RUNNING, -ENOMEM. */
int pf_sched_fork(struct pf_sched *s, struct pf_seq *src, struct pf_seq **ret);

/* Finish or cancel a sequence in any state: its blocks return to the pool
 * now and it is freed.  Returns the request's remaining live sequences. */
int32_t pf_sched_finish(struct pf_sched *s, struct pf_seq *seq);

/* Preempt a RUNNING sequence now, by recompute whatever the mode (a swap
 * needs a step to carry its moves).  Cannot fail. */
void pf_sched_preempt(struct pf_sched *s, struct pf_seq *seq);

void pf_sched_get_stats(const struct pf_sched *s, struct pf_sched_stats *ret);

/* Invariants for tests: refcounts match tables, states match lists, running
 * count within max_num_seqs, every request added is finished, running or
 * waiting.  Returns 0 or -EFAULT with a message. */
int pf_sched_check(const struct pf_sched *s, char *err, size_t errlen);

/* pf_sched_check() for the engine's test builds (PF_CHECK_INVARIANTS, set
 * by the Makefile for `make test` and ASan, not for `make bench`): a broken
 * invariant prints "pinfer: invariant broken after WHERE: why" on stderr
 * and aborts — a corrupt KV table must stop the run where it happened, not
 * turn into wrong tokens many steps later. */
void pf_sched_check_or_abort(const struct pf_sched *s, const char *where);

/* Iterate: first/next over RUNNING then WAITING sequences (tests, stats). */
struct pf_seq *pf_sched_first(const struct pf_sched *s, enum pf_seq_state st);

#endif
