/*
 * sampler.h — per-request sampling: logits → next token, plus stop checks.
 *
 * One struct pf_sampler lives beside each sequence.  Each engine step hands
 * it that sequence's row of logits; it returns the chosen token, optionally
 * with log-probabilities, and later decides, from the token and its text,
 * whether the sequence is finished and which bytes may be sent to the client.
 *
 * Processing order inside pf_sampler_sample() (semantics follow vLLM except
 * where noted):
 *   1. logprobs   — if requested, log-softmax of the RAW logits (vLLM's
 *                   default logprobs_mode "raw_logprobs"): the chosen token's
 *                   logprob and the top-N alternatives ignore penalties,
 *                   temperature and truncation.
 *   2. penalties  — repetition (prompt AND output tokens, HF/vLLM style:
 *                   divide a positive logit, multiply a non-positive one),
 *                   then frequency (count in output) and presence (seen in
 *                   output), both over output tokens only, OpenAI/vLLM style.
 *   3. min_tokens — while fewer than min_tokens tokens have been generated,
 *                   the stop ids and (unless ignore_eos) the EOS ids get -inf.
 *   4. temperature— T < PF_SAMPLER_GREEDY_TEMP (incl. 0) means greedy: argmax,
 *                   ties to the lowest id; steps 5-7 cannot change an argmax
 *                   and are skipped.  Otherwise probabilities are
 *                   softmax(logits / T).
 *   5. top-k      — the k best tokens, EXACTLY k: ties at the boundary go to
 *                   the lower id (vLLM keeps all ties; we prefer a fixed
 *                   candidate count).
 *   6. top-p      — the shortest prefix of the remaining tokens, by
 *                   probability descending (ties: lower id first), whose
 *                   mass, renormalised over the top-k set, reaches top_p.
 *   7. min-p      — drop tokens whose probability is below min_p times the
 *                   best token's (after top-p, as llama.cpp's default
 *                   chain; vLLM runs min-p before top-k/top-p — the kept
 *                   sets can differ when both top-p and min-p are set).
 *   8. draw       — one uniform u in [0,1) (53 bits, see philox.h) from
 *                   Philox4x32-10 keyed by the seed with counter
 *                   (token_index, PF_SAMPLER_STREAM_TOKEN), and inverse-CDF
 *                   selection over the survivors (weights summed in double).
 * Non-finite input (a NaN or +inf logit), or nothing left to choose, is
 * reported as -EDOM instead of a made-up token.
 *
 * Efficiency: nothing is ever fully sorted.  Top-k (and the top-N
 * logprobs) scan the row once, keeping tokens that beat the current k-th
 * best in a 2k+64 buffer that a quickselect cuts back to k when full: one
 * compare for most tokens, linear even for an ascending row, O(k) scratch.
 * Top-p without top-k first keeps only tokens whose probability is
 * >= (1 - top_p) / n_vocab — the rest together weigh less than 1 - top_p,
 * so none can be in the nucleus — and then finds the nucleus with a
 * quickselect on cumulative weight (expected linear, no sort).  Min-p is a
 * filter.  Plain sampling needs one exp pass plus one 1/256 block of the
 * row, and no scratch.  Penalties touch only tokens the sequence has seen.
 * The survivors' order for the draw is whatever these deterministic steps
 * leave, a pure function of the logits, so the same (seed, token_index,
 * logits) always gives the same token.
 *
 * Memory: penalty counts are a sparse open-addressing map (token -> output
 * count, in-prompt flag), O(distinct tokens seen), never vocab-sized.  The
 * candidate scratch grows to the largest candidate set needed, which is
 * usually tens of entries; a set above PF_SAMPLER_SCRATCH_KEEP entries is
 * freed after the call so a long-lived sequence does not pin vocab-sized
 * memory.  Below that, nothing is allocated per call once buffers have grown.
 *
 * The caller's logits row is used as scratch for steps 2-3 and restored
 * before return (bit-exact), success or failure.
 *
 * Sequence of calls and state:
 *
 *   pf_sampler_init ─► pf_sampler_add_prompt* ─┐
 *        ┌─────────────────────────────────────┘
 *        ▼
 *   ┌─► pf_sampler_sample ─► pf_sampler_accept ─► pf_sampler_check_stop ─┐
 *   └────────────────────── CONTINUE ─────────────────────────────────────┤
 *                          STOP_TOKEN | STOP_STRING | LENGTH ─► finished ─► pf_sampler_destroy
 *
 * Resuming after a restart: init, add the prompt, then for each token
 * already generated accept it and (if stop strings are set) check_stop it
 * with its text, discarding the emits the client already has — that
 * rebuilds the held-back window; then continue with token_index =
 * n_generated: the draws are the same as the first time.  (Recompute
 * preemption keeps the sampler and needs none of this.)
 *
 * Stop strings: text that could be the start of a stop string is held back
 * (only as much as actually matches a prefix, so ordinary text streams
 * without delay); a match may span any number of tokens; the caller is told
 * how many bytes precede the stop string and never receives the stop string
 * itself (vLLM's include_stop_str_in_output=false).  Stop strings and stop
 * tokens take effect only once more than min_tokens tokens have been
 * generated; the text of the first min_tokens tokens is never held back or
 * cut (vLLM may cut a stop string that starts there; we keep the promise of
 * min_tokens literally).  A stop token's own text is not emitted.
 *
 * Not thread-safe per sampler; distinct samplers are independent.
 */
#ifndef PF_SAMPLER_H
#define PF_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/proto.h"

/* the wire's limits (shm/proto.h): what a request can carry is what the
 * sampler holds */
#define PF_SAMPLER_MAX_STOP_IDS     PF_WIRE_MAX_STOP_IDS
#define PF_SAMPLER_MAX_STOP_STRINGS PF_WIRE_MAX_STOP
#define PF_SAMPLER_STOP_STRING_MAX  PF_WIRE_MAX_STOP_LEN /* bytes, no NUL terminator needed */
#define PF_SAMPLER_MAX_TOP_LOGPROBS PF_WIRE_MAX_TOP_LOGPROBS
#define PF_SAMPLER_MAX_EOS          8
#define PF_SAMPLER_GREEDY_TEMP      1e-5f /* below this, sampling is argmax (vLLM's _SAMPLING_EPS) */
#define PF_SAMPLER_SCRATCH_KEEP     16384 /* candidates kept allocated between calls */
#define PF_SAMPLER_PENALTY_MAX      2.0f  /* |presence|, |frequency| bound (OpenAI, vLLM) */

/* Philox sub-streams (ctr[2]); one per independent use of randomness. */
enum pf_sampler_stream {
	PF_SAMPLER_STREAM_TOKEN = 0, /* the token draw */
	PF_SAMPLER_STREAM_SPEC = 1,  /* reserved: speculative-decoding acceptance */
};

/*
 * Per-request parameters.  A plain value: copy it freely.  Start from
 * pf_sampling_params_default() and check untrusted values with
 * pf_sampler_validate().  Defaults in brackets.
 */
struct pf_sampling_params {
	float temperature;        /* [1.0] >= 0; 0 = greedy */
	int32_t top_k;            /* [0] 0 or -1 = off; >= n_vocab = off */
	float top_p;              /* [1.0] in (0, 1]; 1 = off */
	float min_p;              /* [0.0] in [0, 1]; 0 = off */
	float repetition_penalty; /* [1.0] > 0; 1 = off; prompt + output tokens */
	float presence_penalty;   /* [0.0] in [-2, 2]; output tokens */
	float frequency_penalty;  /* [0.0] in [-2, 2]; output tokens */
	uint64_t seed;            /* [0] used only when has_seed */
	bool has_seed;            /* [false] else the seed derives from the request id */
	bool ignore_eos;          /* [false] EOS ids neither stop nor get masked */
	bool logprobs;            /* [false] return the chosen token's logprob */
	int32_t top_logprobs;     /* [0] 0..20 alternatives; > 0 needs logprobs */
	int32_t max_tokens;       /* [16] >= 1 (vLLM's default; the daemon may lower it to fit the context) */
	int32_t min_tokens;       /* [0] 0..max_tokens */
	uint32_t n_stop_ids;      /* [0] used entries of stop_ids */
	int32_t stop_ids[PF_SAMPLER_MAX_STOP_IDS];
	uint32_t n_stop_strings;  /* [0] used entries of stop_strings */
	uint32_t stop_string_len[PF_SAMPLER_MAX_STOP_STRINGS]; /* 1..64 bytes */
	char stop_strings[PF_SAMPLER_MAX_STOP_STRINGS][PF_SAMPLER_STOP_STRING_MAX]; /* UTF-8, not NUL-terminated */
};

/* One (token, logprob) pair. */
struct pf_sample_logprob {
	int32_t token;
	float logprob;
};

struct pf_sample_result {
	int32_t token;    /* the chosen token */
	float logprob;    /* its raw log-softmax when p->logprobs, else NAN */
	uint32_t n_top;   /* p->top_logprobs when p->logprobs (fewer if fewer finite logits), else 0 */
	bool replayed;    /* engine: re-reported after a resume, not newly sampled (see engine.h) */
	uint32_t gen_index; /* 0-based position among the sequence's generated tokens */
	struct pf_sample_logprob top[PF_SAMPLER_MAX_TOP_LOGPROBS]; /* logprob descending, ties: lower id first */
};

enum pf_sampler_stop {
	PF_SAMPLER_CONTINUE = 0,
	PF_SAMPLER_STOP_TOKEN = 1,  /* a stop id, or an EOS id unless ignore_eos */
	PF_SAMPLER_STOP_STRING = 2, /* the text now contains a stop string */
	PF_SAMPLER_LENGTH = 3,      /* max_tokens generated */
};

struct pf_stop_result {
	int32_t reason;     /* enum pf_sampler_stop */
	int32_t stop_index; /* STOP_STRING: index in stop_strings; STOP_TOKEN: index in
			     * stop_ids, or -1 - (index in the EOS ids); otherwise -1 */
	const char *emit;   /* bytes to send to the client now; valid until the next call on the sampler */
	size_t emit_len;
};

/* Private: one token seen by the sequence. */
struct pf_sampler_seen {
	int32_t token;
	uint32_t n_out : 31;    /* occurrences in the output (saturating) */
	uint32_t in_prompt : 1;
};

/* Private: a candidate token during truncation. */
struct pf_sampler_cand {
	float logit;  /* (penalised) logit, later its weight exp((l - max) / T) */
	int32_t token;
};

/* Private: a logit overwritten in place, for the restore. */
struct pf_sampler_saved {
	int32_t token;
	float logit;
};

/*
 * Per-sequence state.  Embed it anywhere; all fields are private except that
 * n_generated may be read.
 */
struct pf_sampler {
	uint64_t seed;         /* Philox key: the seed, or derived from the request id */
	int32_t n_vocab;
	bool penalties;        /* any penalty active at init: track seen tokens */
	uint32_t n_eos;
	int32_t eos[PF_SAMPLER_MAX_EOS];

	uint32_t n_generated;  /* tokens accepted so far (readable) */
	int32_t last_token;    /* last accepted token, -1 before the first */
	bool checked;          /* check_stop already ran for last_token */
	int32_t finished;      /* enum pf_sampler_stop: CONTINUE until a stop */

	struct pf_sampler_seen *seen; /* (n_seen) dense, insertion order */
	uint32_t n_seen, cap_seen;
	uint32_t *slots;       /* (slot_mask + 1) open addressing: 0 empty, else seen index + 1 */
	uint32_t slot_mask;

	struct pf_sampler_cand *cand;   /* (cap_cand) scratch */
	size_t cap_cand;
	struct pf_sampler_saved *saved; /* (cap_saved) scratch */
	size_t cap_saved;

	char *text;            /* stop-string window: held-back text, then the new piece */
	size_t text_len, text_cap;
	size_t held_off, held_len; /* bytes of text[] still held back after the last call */
};

/* Defaults as documented on the struct.  Cannot fail. */
struct pf_sampling_params pf_sampling_params_default(void);

/*
 * Append a stop token id.  Returns 0, or -ENOSPC when 16 are already set.
 * The id is range-checked by pf_sampler_validate(), not here.
 */
int pf_sampling_params_add_stop_id(struct pf_sampling_params *p, int32_t token);

/*
 * Append a stop string of len bytes (copied; need not be NUL-terminated).
 * Returns 0, -EINVAL when len is 0 or above 64, or -ENOSPC when 8 are set.
 * Content (UTF-8, no NUL) is checked by pf_sampler_validate().
 */
int pf_sampling_params_add_stop_string(struct pf_sampling_params *p, const char *s, size_t len);

/*
 * Check every field of p against n_vocab; meant for untrusted client input.
 * Returns 0 when p is usable, -EINVAL with a one-line message naming the
 * field and its value in err (NUL-terminated, truncated to errlen; err may
 * be NULL when errlen is 0) at the first problem.  Rejects NaN/inf floats,
 * temperature < 0, top_k < -1, top_p outside (0, 1], min_p outside [0, 1],
 * repetition_penalty <= 0, presence/frequency outside [-2, 2],
 * max_tokens < 1, min_tokens outside [0, max_tokens], top_logprobs outside
 * [0, 20] or set without logprobs, too many stop ids or strings, stop ids
 * outside [0, n_vocab), stop strings empty, longer than 64 bytes, not valid
 * UTF-8 or containing NUL, and n_vocab < 1.
 */
int pf_sampler_validate(const struct pf_sampling_params *p, int32_t n_vocab, char *err, size_t errlen);

/*
 * Derive the Philox key of a request without a seed: a SplitMix64 mix of
 * request_id, so neighbouring ids give unrelated streams.  The caller should
 * make request ids unique across daemon restarts (e.g. mix in a boot
 * nonce) if unseeded requests must not repeat after a restart.  Cannot fail.
 */
uint64_t pf_sampler_derive_seed(uint64_t request_id);

/*
 * Set up s for one sequence.  p is not kept, but pass the same p to every
 * later call.  eos (n_eos entries, at most 8, each in [0, n_vocab)) are the
 * tokenizer's end-of-generation ids, used both for min_tokens masking and
 * for stop checks (given once here rather than on every call, so the two
 * can never disagree); NULL when n_eos is 0.  The seed is p->seed when
 * p->has_seed, else pf_sampler_derive_seed(request_id).  Allocates nothing
 * until used.  Returns 0, or -EINVAL when p fails pf_sampler_validate() or
 * an EOS id is bad.  On failure s is still safe to pass to
 * pf_sampler_destroy().
 */
int pf_sampler_init(struct pf_sampler *s, const struct pf_sampling_params *p, int32_t n_vocab,
		    const int32_t *eos, size_t n_eos, uint64_t request_id);

/* Free what s owns and leave it zeroed.  Accepts NULL.  Cannot fail. */
void pf_sampler_destroy(struct pf_sampler *s);

/*
 * Record prompt tokens (for the repetition penalty).  Call before the first
 * accept.  All of tokens[0..n) are checked first: -EINVAL if any is outside
 * [0, n_vocab) (nothing recorded), -ENOMEM if the map cannot grow (a prefix
 * may be recorded).  A no-op when init saw no penalty.  Returns 0 on success.
 */
int pf_sampler_add_prompt(struct pf_sampler *s, const int32_t *tokens, size_t n);

/*
 * Record a generated token: counts it for the penalties and n_generated.
 * Returns 0, -EINVAL when token is outside [0, n_vocab) or the sequence has
 * finished, -ENOMEM when the map cannot grow (then nothing is recorded).
 */
int pf_sampler_accept(struct pf_sampler *s, int32_t token);

/*
 * Choose the next token from logits (n_vocab), the model's output row for
 * this sequence, following the order in the file comment.  token_index
 * picks the Philox counter; pass s->n_generated (the index of the token
 * being generated) so that a resumed sequence repeats its draws.  logits is
 * modified during the call and restored before return.
 * Returns the token id (>= 0; also in ret->token), -EINVAL if n_vocab
 * differs from init or p enables penalties that init did not see, -EDOM if a
 * logit is NaN or +inf or every token is masked, -ENOMEM if scratch cannot
 * grow.  On error *ret is unspecified.
 */
int pf_sampler_sample(struct pf_sampler *s, const struct pf_sampling_params *p, float *logits,
		      int32_t n_vocab, uint64_t token_index, struct pf_sample_result *ret);

/*
 * Apply steps 2-3 (penalties, min_tokens masking) to logits (n_vocab) in
 * place and leave them so — for callers that want the processed row (tests,
 * a "processed logprobs" mode).  Returns 0 or -EINVAL (n_vocab mismatch,
 * penalties unseen at init).
 */
int pf_sampler_apply_penalties(const struct pf_sampler *s, const struct pf_sampling_params *p,
			       float *logits, int32_t n_vocab);

/*
 * Decide whether the sequence stops after token, which must be the token
 * just passed to pf_sampler_accept(), and whose detokenized text is
 * piece[0..piece_len) (may be empty; may be a partial UTF-8 sequence).
 * Order: stop token, then stop string, then length, so a stop that
 * coincides with the length limit reports STOP (finish_reason "stop").
 * ret->emit/emit_len are the bytes the caller should send now: text
 * released from hold-back; for STOP_STRING the text before the stop string;
 * for STOP_TOKEN the held-back text without the token's own text; for
 * LENGTH everything pending.  Once finished, further calls return the same
 * reason with nothing to emit.
 * Returns the reason (>= 0, also in ret->reason), -EINVAL if token is not
 * the last accepted token or was already checked, -ENOMEM if the text
 * window cannot grow.
 */
int pf_sampler_check_stop(struct pf_sampler *s, const struct pf_sampling_params *p, int32_t token,
			  const char *piece, size_t piece_len, struct pf_stop_result *ret);

/*
 * The text currently held back (a possible stop-string start), for an
 * engine that ends the sequence for its own reasons (context full, abort)
 * and still wants to deliver it.  *ret_text stays valid until the next call
 * on s.  Returns its length (0 when nothing is held).  Cannot fail.
 */
size_t pf_sampler_held(const struct pf_sampler *s, const char **ret_text);

#endif /* PF_SAMPLER_H */
