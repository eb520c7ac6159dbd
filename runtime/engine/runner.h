/*
 * runner.h — drive the backend over a fixed set of sequences, greedily.
 *
 * The offline path used by tests, `pinfer-run` and `pinfer-bench`: every
 * sequence owns a caller-provided list of KV blocks; each step packs, for
 * every unfinished sequence, either its next prefill chunk (up to
 * `prefill_chunk` prompt tokens) or its one decode token into one flattened
 * batch, runs the backend once, and takes the argmax of the logits of each
 * sequence that produced a next token.  No scheduling policy lives here —
 * the continuous-batching scheduler (scheduler.h) decides admission, budgets and
 * preemption for the daemon; this is the engine step without it, which is
 * what the kernel-level tests and benchmarks want.
 */
#ifndef PF_RUNNER_H
#define PF_RUNNER_H

#include <stdint.h>

#include "kernels/backend.h"

struct pf_run_seq {
	/* in */
	const int32_t *prompt;
	int32_t n_prompt;
	int32_t n_gen;         /* tokens to generate (EOS does not stop it) */
	const int32_t *blocks; /* KV blocks, enough for n_prompt + n_gen positions */
	int32_t n_blocks;
	/* out */
	int32_t *out;          /* (n_gen) generated tokens */
	float *margin;         /* optional (n_gen): top-1 minus top-2 logit at each step */
	float *logits_first;   /* optional (n_vocab): logits after the prompt */
	/* state */
	int32_t n_fed;         /* prompt tokens already in the cache */
	int32_t n_out;
};

struct pf_run_stats {
	int64_t steps;
	int64_t prefill_tokens, decode_tokens;
	double prefill_s, decode_s; /* wall time of steps that had prefill / only decodes */
};

/*
 * Run the sequences to completion.  `prefill_chunk` caps the prompt tokens a
 * sequence feeds per step (≥ 1).  Returns 0, or a negative errno from the
 * backend (-EINVAL when a sequence's blocks are too few), -ENOMEM.
 * `stats` is optional.
 */
int pf_run_greedy(struct pf_backend *be, const struct pf_hparams *hp, struct pf_run_seq *seqs, int32_t n_seqs,
		  int32_t prefill_chunk, struct pf_run_stats *stats);

/* Index of the largest of n logits (lowest index on ties); the margin to the
 * second largest in *ret_margin when non-NULL.  Cannot fail for n ≥ 1. */
int32_t pf_argmax(const float *logits, int32_t n, float *ret_margin);

#endif
