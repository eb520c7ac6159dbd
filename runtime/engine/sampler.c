/*
 * sampler.c — per-request sampling and stop checks.  See sampler.h for the
 * processing order, the memory rules and the call sequence.
 */
#include "runtime/engine/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine/philox.h"

/* ---- parameters ---------------------------------------------------------- */

struct pf_sampling_params pf_sampling_params_default(void)
{
	struct pf_sampling_params p;

	/* memset, not a designated initializer, so padding and the unused
	 * array tails are zero too: the struct may be hashed or compared. */
	memset(&p, 0, sizeof(p));
	p.temperature = 1.0f;
	p.top_k = 0;
	p.top_p = 1.0f;
	p.min_p = 0.0f;
	p.repetition_penalty = 1.0f;
	p.presence_penalty = 0.0f;
	p.frequency_penalty = 0.0f;
	p.max_tokens = 16;
	p.min_tokens = 0;
	return p;
}

int pf_sampling_params_add_stop_id(struct pf_sampling_params *p, int32_t token)
{
	if (p->n_stop_ids >= PF_SAMPLER_MAX_STOP_IDS)
		return -ENOSPC;
	p->stop_ids[p->n_stop_ids++] = token;
	return 0;
}

int pf_sampling_params_add_stop_string(struct pf_sampling_params *p, const char *s, size_t len)
{
	if (len == 0 || len > PF_SAMPLER_STOP_STRING_MAX || s == NULL)
		return -EINVAL;
	if (p->n_stop_strings >= PF_SAMPLER_MAX_STOP_STRINGS)
		return -ENOSPC;
	memcpy(p->stop_strings[p->n_stop_strings], s, len);
	p->stop_string_len[p->n_stop_strings] = (uint32_t)len;
	p->n_stop_strings++;
	return 0;
}

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF, and
 * no NUL (a stop string with NUL would never match detokenized text and is
 * more likely a client bug than intent). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t len;
		uint32_t cp, min;

		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0) {
			len = 2;
			cp = c & 0x1F;
			min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3;
			cp = c & 0x0F;
			min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			len = 4;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += len;
	}
	return true;
}

int pf_sampler_validate(const struct pf_sampling_params *p, int32_t n_vocab, char *err, size_t errlen)
{
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (p == NULL)
		return fail(err, errlen, "sampling parameters missing");
	if (n_vocab < 1)
		return fail(err, errlen, "n_vocab %d must be >= 1", n_vocab);
	/* Every float test is written so that NaN fails it. */
	if (!(isfinite(p->temperature) && p->temperature >= 0.0f))
		return fail(err, errlen, "temperature %g must be a finite number >= 0", (double)p->temperature);
	if (p->top_k < -1)
		return fail(err, errlen, "top_k %d must be -1 or 0 (off) or positive", p->top_k);
	if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
		return fail(err, errlen, "top_p %g must be in (0, 1]", (double)p->top_p);
	if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
		return fail(err, errlen, "min_p %g must be in [0, 1]", (double)p->min_p);
	if (!(isfinite(p->repetition_penalty) && p->repetition_penalty > 0.0f))
		return fail(err, errlen, "repetition_penalty %g must be a finite number > 0",
			    (double)p->repetition_penalty);
	if (!(p->presence_penalty >= -PF_SAMPLER_PENALTY_MAX && p->presence_penalty <= PF_SAMPLER_PENALTY_MAX))
		return fail(err, errlen, "presence_penalty %g must be in [-2, 2]", (double)p->presence_penalty);
	if (!(p->frequency_penalty >= -PF_SAMPLER_PENALTY_MAX && p->frequency_penalty <= PF_SAMPLER_PENALTY_MAX))
		return fail(err, errlen, "frequency_penalty %g must be in [-2, 2]", (double)p->frequency_penalty);
	if (p->max_tokens < 1)
		return fail(err, errlen, "max_tokens %d must be >= 1", p->max_tokens);
	if (p->min_tokens < 0 || p->min_tokens > p->max_tokens)
		return fail(err, errlen, "min_tokens %d must be in [0, max_tokens=%d]", p->min_tokens, p->max_tokens);
	if (p->top_logprobs < 0 || p->top_logprobs > PF_SAMPLER_MAX_TOP_LOGPROBS)
		return fail(err, errlen, "top_logprobs %d must be in [0, %d]", p->top_logprobs,
			    PF_SAMPLER_MAX_TOP_LOGPROBS);
	if (p->top_logprobs > 0 && !p->logprobs)
		return fail(err, errlen, "top_logprobs %d requires logprobs", p->top_logprobs);
	if (p->n_stop_ids > PF_SAMPLER_MAX_STOP_IDS)
		return fail(err, errlen, "%u stop token ids, at most %d allowed", p->n_stop_ids,
			    PF_SAMPLER_MAX_STOP_IDS);
	for (uint32_t i = 0; i < p->n_stop_ids; i++) {
		if (p->stop_ids[i] < 0 || p->stop_ids[i] >= n_vocab)
			return fail(err, errlen, "stop token id %d (stop_ids[%u]) outside the vocabulary [0, %d)",
				    p->stop_ids[i], i, n_vocab);
	}
	if (p->n_stop_strings > PF_SAMPLER_MAX_STOP_STRINGS)
		return fail(err, errlen, "%u stop strings, at most %d allowed", p->n_stop_strings,
			    PF_SAMPLER_MAX_STOP_STRINGS);
	for (uint32_t i = 0; i < p->n_stop_strings; i++) {
		uint32_t len = p->stop_string_len[i];

		if (len == 0 || len > PF_SAMPLER_STOP_STRING_MAX)
			return fail(err, errlen, "stop string %u has length %u, must be 1..%d bytes", i, len,
				    PF_SAMPLER_STOP_STRING_MAX);
		if (!utf8_valid((const unsigned char *)p->stop_strings[i], len))
			return fail(err, errlen, "stop string %u is not valid UTF-8 (or contains NUL)", i);
	}
	return 0;
}

static bool penalties_active(const struct pf_sampling_params *p)
{
	return p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
}

/* ---- life cycle ---------------------------------------------------------- */

uint64_t pf_sampler_derive_seed(uint64_t request_id)
{
	/* SplitMix64's finalizer (Steele, Lea, Flood 2014): a bijection, so
	 * distinct ids never share a key. */
	uint64_t z = request_id + 0x9E3779B97F4A7C15ull;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

int pf_sampler_init(struct pf_sampler *s, const struct pf_sampling_params *p, int32_t n_vocab,
		    const int32_t *eos, size_t n_eos, uint64_t request_id)
{
	if (s == NULL)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->last_token = -1;
	if (pf_sampler_validate(p, n_vocab, NULL, 0) < 0)
		return -EINVAL;
	if (n_eos > PF_SAMPLER_MAX_EOS || (n_eos > 0 && eos == NULL))
		return -EINVAL;
	for (size_t i = 0; i < n_eos; i++) {
		if (eos[i] < 0 || eos[i] >= n_vocab)
			return -EINVAL;
		s->eos[i] = eos[i];
	}
	s->n_eos = (uint32_t)n_eos;
	s->n_vocab = n_vocab;
	s->seed = p->has_seed ? p->seed : pf_sampler_derive_seed(request_id);
	s->penalties = penalties_active(p);
	s->finished = PF_SAMPLER_CONTINUE;
	return 0;
}

void pf_sampler_destroy(struct pf_sampler *s)
{
	if (s == NULL)
		return;
	free(s->seen);
	free(s->slots);
	free(s->cand);
	free(s->saved);
	free(s->text);
	memset(s, 0, sizeof(*s));
	s->last_token = -1;
}

/* ---- seen-token map -------------------------------------------------------
 * Dense array of entries (iterated by the penalty pass, in insertion order so
 * results never depend on hash layout) plus an open-addressing index with
 * linear probing, kept at most half full.
 */

static uint32_t seen_hash(int32_t token)
{
	uint32_t h = (uint32_t)token * 0x9E3779B1u; /* Fibonacci hashing */

	return h ^ (h >> 15);
}

/* Slot holding token, or the empty slot where it would go. */
static uint32_t *seen_slot(const struct pf_sampler *s, int32_t token)
{
	uint32_t i = seen_hash(token) & s->slot_mask;

	for (;;) {
		uint32_t v = s->slots[i];

		if (v == 0 || s->seen[v - 1].token == token)
			return &s->slots[i];
		i = (i + 1) & s->slot_mask;
	}
}

/* Make room for one more entry, so a following insert cannot fail. */
static int seen_reserve(struct pf_sampler *s)
{
	if (s->n_seen == s->cap_seen) {
		uint32_t cap = s->cap_seen ? s->cap_seen * 2 : 64;
		struct pf_sampler_seen *e;

		if (cap < s->cap_seen)
			return -ENOMEM;
		e = realloc(s->seen, (size_t)cap * sizeof(*e));
		if (e == NULL)
			return -ENOMEM;
		s->seen = e;
		s->cap_seen = cap;
	}
	if (s->slots == NULL || (size_t)(s->n_seen + 1) * 2 > (size_t)s->slot_mask + 1) {
		size_t n_slots = s->slots ? ((size_t)s->slot_mask + 1) * 2 : 128;
		uint32_t *slots;

		if (n_slots > UINT32_MAX)
			return -ENOMEM;
		slots = calloc(n_slots, sizeof(*slots));
		if (slots == NULL)
			return -ENOMEM;
		free(s->slots);
		s->slots = slots;
		s->slot_mask = (uint32_t)(n_slots - 1);
		for (uint32_t i = 0; i < s->n_seen; i++)
			*seen_slot(s, s->seen[i].token) = i + 1;
	}
	return 0;
}

/* Find or insert token.  Returns the entry or NULL on -ENOMEM. */
static struct pf_sampler_seen *seen_get(struct pf_sampler *s, int32_t token)
{
	uint32_t *slot;

	if (s->slots != NULL) {
		slot = seen_slot(s, token);
		if (*slot != 0)
			return &s->seen[*slot - 1];
	}
	if (seen_reserve(s) < 0)
		return NULL;
	slot = seen_slot(s, token);
	s->seen[s->n_seen] = (struct pf_sampler_seen){ .token = token };
	*slot = ++s->n_seen;
	return &s->seen[s->n_seen - 1];
}

int pf_sampler_add_prompt(struct pf_sampler *s, const int32_t *tokens, size_t n)
{
	if (s == NULL || (n > 0 && tokens == NULL))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (tokens[i] < 0 || tokens[i] >= s->n_vocab)
			return -EINVAL;
	}
	/* Only the repetition penalty reads the prompt, but whether it is on
	 * is a per-request constant, so tracking follows init. */
	if (!s->penalties)
		return 0;
	for (size_t i = 0; i < n; i++) {
		struct pf_sampler_seen *e = seen_get(s, tokens[i]);

		if (e == NULL)
			return -ENOMEM;
		e->in_prompt = 1;
	}
	return 0;
}

int pf_sampler_accept(struct pf_sampler *s, int32_t token)
{
	if (s == NULL || token < 0 || token >= s->n_vocab || s->finished != PF_SAMPLER_CONTINUE ||
	    s->n_generated == UINT32_MAX)
		return -EINVAL;
	if (s->penalties) {
		struct pf_sampler_seen *e = seen_get(s, token);

		if (e == NULL)
			return -ENOMEM;
		if (e->n_out < 0x7FFFFFFFu)
			e->n_out++;
	}
	s->n_generated++;
	s->last_token = token;
	s->checked = false;
	return 0;
}

/* ---- logit processing ---------------------------------------------------- */

static void overwrite(float *logits, int32_t token, float v, struct pf_sampler_saved *saved, size_t *n_saved)
{
	if (saved != NULL)
		saved[(*n_saved)++] = (struct pf_sampler_saved){ .token = token, .logit = logits[token] };
	logits[token] = v;
}

/* Upper bound of the entries process() may overwrite. */
static size_t process_bound(const struct pf_sampler *s)
{
	return (size_t)s->n_seen + PF_SAMPLER_MAX_STOP_IDS + PF_SAMPLER_MAX_EOS;
}

/*
 * Steps 2-3: penalties and min_tokens masking, in place.  When saved is not
 * NULL, each overwritten logit is recorded first (process_bound() entries
 * suffice) so the caller can undo the writes in reverse order.
 */
static size_t process(const struct pf_sampler *s, const struct pf_sampling_params *p, float *logits,
		      int32_t n_vocab, struct pf_sampler_saved *saved)
{
	size_t n_saved = 0;

	if (penalties_active(p)) {
		const float rep = p->repetition_penalty;
		const float freq = p->frequency_penalty;
		const float pres = p->presence_penalty;

		for (uint32_t i = 0; i < s->n_seen; i++) {
			const struct pf_sampler_seen *e = &s->seen[i];
			float v = logits[e->token];

			/* Every entry was seen in the prompt or the output,
			 * which is the repetition window (vLLM). */
			if (rep != 1.0f)
				v = v > 0.0f ? v / rep : v * rep;
			/* Two separate float subtractions in vLLM's order,
			 * so float results agree with it. */
			if (e->n_out > 0) {
				v -= freq * (float)e->n_out;
				v -= pres;
			}
			overwrite(logits, e->token, v, saved, &n_saved);
		}
	}
	if (s->n_generated < (uint32_t)p->min_tokens) {
		uint32_t n_stop = p->n_stop_ids < PF_SAMPLER_MAX_STOP_IDS ? p->n_stop_ids : PF_SAMPLER_MAX_STOP_IDS;

		for (uint32_t i = 0; i < n_stop; i++) {
			if (p->stop_ids[i] >= 0 && p->stop_ids[i] < n_vocab)
				overwrite(logits, p->stop_ids[i], -INFINITY, saved, &n_saved);
		}
		if (!p->ignore_eos) {
			for (uint32_t i = 0; i < s->n_eos; i++)
				overwrite(logits, s->eos[i], -INFINITY, saved, &n_saved);
		}
	}
	return n_saved;
}

int pf_sampler_apply_penalties(const struct pf_sampler *s, const struct pf_sampling_params *p,
			       float *logits, int32_t n_vocab)
{
	if (s == NULL || p == NULL || logits == NULL || n_vocab != s->n_vocab)
		return -EINVAL;
	if (penalties_active(p) && !s->penalties)
		return -EINVAL;
	process(s, p, logits, n_vocab, NULL);
	return 0;
}

/* ---- candidate ordering and selection ------------------------------------ */

/* Strict total order "a ranks before b": higher value (a logit, or later a
 * weight), then lower id. */
static inline bool better(const struct pf_sampler_cand *a, const struct pf_sampler_cand *b)
{
	return a->logit > b->logit || (a->logit == b->logit && a->token < b->token);
}

static int cand_cmp(const void *pa, const void *pb)
{
	const struct pf_sampler_cand *a = pa, *b = pb;

	if (better(a, b))
		return -1;
	return better(b, a) ? 1 : 0;
}

static inline void cand_swap(struct pf_sampler_cand *a, struct pf_sampler_cand *b)
{
	struct pf_sampler_cand t = *a;

	*a = *b;
	*b = t;
}

static void insertion_sort(struct pf_sampler_cand *a, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct pf_sampler_cand x = a[i];
		size_t j = i;

		while (j > 0 && better(&x, &a[j - 1])) {
			a[j] = a[j - 1];
			j--;
		}
		a[j] = x;
	}
}

/*
 * Partition a[lo..hi) (hi - lo >= 3) around a median-of-three pivot: returns
 * st with a[lo..st) ranking before a[st] and a(st..hi) after it.  Elements
 * are distinct under better() (ids are unique), so two ways suffice.
 */
static size_t partition(struct pf_sampler_cand *a, size_t lo, size_t hi)
{
	size_t mid = lo + (hi - lo) / 2, st = lo;

	if (better(&a[mid], &a[lo]))
		cand_swap(&a[mid], &a[lo]);
	if (better(&a[hi - 1], &a[lo]))
		cand_swap(&a[hi - 1], &a[lo]);
	if (better(&a[mid], &a[hi - 1]))
		cand_swap(&a[mid], &a[hi - 1]);
	for (size_t j = lo; j < hi - 1; j++) {
		if (better(&a[j], &a[hi - 1]))
			cand_swap(&a[st++], &a[j]);
	}
	cand_swap(&a[st], &a[hi - 1]);
	return st;
}

/* Rounds of partitioning before falling back to a sort: 2*log2(n) + 8, so
 * an adversarial input costs O(n log n), never O(n^2). */
static int depth_limit(size_t n)
{
	int depth = 8;

	for (; n > 1; n >>= 1)
		depth += 2;
	return depth;
}

/* Reorder a[0..n) so that a[0..k) are the k best, in no particular order. */
static void quickselect(struct pf_sampler_cand *a, size_t n, size_t k)
{
	size_t lo = 0, hi = n;
	int depth = depth_limit(n);

	while (hi - lo > 16) {
		size_t st;

		if (depth-- == 0) {
			qsort(a + lo, hi - lo, sizeof(*a), cand_cmp);
			return;
		}
		st = partition(a, lo, hi);
		if (st == k || st + 1 == k)
			return;
		if (k < st)
			hi = st;
		else
			lo = st + 1;
	}
	insertion_sort(a + lo, hi - lo);
}

/*
 * Top-p without sorting: c[0..n) hold weights; reorder them so that
 * c[0..ret) is the nucleus — the shortest best-first prefix whose weight
 * reaches target — and return ret.  A quickselect on cumulative weight:
 * when the better side of a pivot already carries the target, the cut lies
 * there; otherwise that side (and the pivot) are in, and the search goes on
 * in the worse side for what is missing.  Expected O(n).
 */
static size_t nucleus(struct pf_sampler_cand *c, size_t n, double target)
{
	size_t lo = 0, hi = n;
	int depth = depth_limit(n);
	double cum = 0.0;

	while (hi - lo > 16 && depth-- > 0) {
		size_t st = partition(c, lo, hi);
		double left = 0.0;

		for (size_t i = lo; i < st; i++)
			left += c[i].logit;
		if (left >= target) {
			hi = st;
		} else if (left + c[st].logit >= target) {
			return st + 1;
		} else {
			target -= left + c[st].logit;
			lo = st + 1;
		}
	}
	/* Few left (or too many rounds): sort them and walk. */
	if (hi - lo > 16)
		qsort(c + lo, hi - lo, sizeof(*c), cand_cmp);
	else
		insertion_sort(c + lo, hi - lo);
	for (size_t i = lo; i < hi; i++) {
		cum += c[i].logit;
		if (cum >= target)
			return i + 1;
	}
	/* Rounding left the walk a hair short: everything up to hi. */
	return hi;
}

static int cand_reserve(struct pf_sampler *s, size_t n)
{
	struct pf_sampler_cand *c;
	size_t cap;

	if (n <= s->cap_cand)
		return 0;
	cap = s->cap_cand * 2 > n ? s->cap_cand * 2 : n;
	if (cap < 64)
		cap = 64;
	c = realloc(s->cand, cap * sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	s->cand = c;
	s->cap_cand = cap;
	return 0;
}

/*
 * The k best finite logits into buf[0..*ret_n), in no set order; buf holds
 * cap >= k + 1 entries (2k + 64 works well).  One scan keeps every token
 * that beats the current k-th best (thr); when buf fills, a quickselect
 * cuts it back to k and raises thr.  Because ids grow along the scan, a tie
 * with thr loses (its id is larger), so "logit > thr" is the whole test and
 * most tokens cost one compare.  A compaction handles cap elements and
 * frees cap - k slots, so even an ascending row costs O(n * cap / (cap - k)):
 * linear, with no row-sized copy.  Returns 0 or -EDOM on a NaN/+inf logit.
 */
static int select_best(const float *logits, int32_t n, size_t k, struct pf_sampler_cand *buf, size_t cap,
		       size_t *ret_n)
{
	float thr = -INFINITY;
	size_t nb = 0;

	for (int32_t i = 0; i < n; i++) {
		float v = logits[i];

		if (!(v < INFINITY))
			return -EDOM;
		if (!(v > thr))
			continue;
		if (nb == cap) {
			quickselect(buf, nb, k);
			nb = k;
			thr = buf[0].logit;
			for (size_t j = 1; j < k; j++)
				thr = buf[j].logit < thr ? buf[j].logit : thr;
			if (!(v > thr))
				continue;
		}
		buf[nb++] = (struct pf_sampler_cand){ .logit = v, .token = i };
	}
	if (nb > k) {
		quickselect(buf, nb, k);
		nb = k;
	}
	*ret_n = nb;
	return 0;
}

/* Scratch entries select_best() is given for k. */
static size_t select_cap(size_t k, int32_t n)
{
	size_t cap = 2 * k + 64;

	return cap < (size_t)n ? cap : (size_t)n + 1;
}

/* The k best finite logits into s->cand[0..*ret_n), in no set order. */
static int select_top_k(struct pf_sampler *s, const float *logits, int32_t n, size_t k, size_t *ret_n)
{
	const size_t cap = select_cap(k, n);
	size_t nc = 0;
	int rc;

	rc = cand_reserve(s, cap);
	if (rc < 0)
		return rc;
	rc = select_best(logits, n, k, s->cand, cap, &nc);
	if (rc < 0)
		return rc;
	if (nc == 0)
		return -EDOM;
	*ret_n = nc;
	return 0;
}

/* Largest logit; -EDOM on NaN/+inf or when every logit is -inf. */
static int max_logit(const float *logits, int32_t n, float *ret_max)
{
	float m = -INFINITY;
	bool bad = false;

	for (int32_t i = 0; i < n; i++) {
		float v = logits[i];

		bad |= !(v < INFINITY);
		m = v > m ? v : m;
	}
	if (bad || m == -INFINITY)
		return -EDOM;
	*ret_max = m;
	return 0;
}

/* Greedy: argmax, ties to the lowest id (the scan keeps the first max). */
static int argmax(const float *logits, int32_t n)
{
	float m = -INFINITY;
	int32_t best = -1;

	for (int32_t i = 0; i < n; i++) {
		float v = logits[i];

		if (!(v < INFINITY))
			return -EDOM;
		if (v > m) {
			m = v;
			best = i;
		}
	}
	return best >= 0 ? best : -EDOM;
}

/*
 * Inverse CDF over c[0..n), whose logit fields hold weights: the first
 * candidate where the running sum exceeds u * sum.  The sum is formed in the
 * same order both times, so the walk always ends on a candidate; zero
 * weights can never be chosen.
 */
static int32_t draw_weighted(const struct pf_sampler_cand *c, size_t n, double u)
{
	double z = 0.0, cum = 0.0, target;
	int32_t last = -1;

	for (size_t i = 0; i < n; i++)
		z += c[i].logit;
	target = u * z;
	for (size_t i = 0; i < n; i++) {
		if (c[i].logit > 0.0f) {
			cum += c[i].logit;
			last = c[i].token;
			if (cum > target)
				return c[i].token;
		}
	}
	return last;
}

/*
 * Steps 6-8 over candidates c[0..n) (any order; the max logit m among them
 * is the distribution's max): logits become weights w = exp((l - m) / T),
 * so the best has w = 1; top-p keeps the nucleus against z_full (the mass
 * of what is being truncated: the whole vocabulary, or 0 for "the
 * candidates themselves" after top-k); min-p keeps w >= min_p; draw.  The
 * order the survivors end up in is a pure function of the input, so the
 * draw is reproducible.
 */
static int32_t pick(struct pf_sampler_cand *c, size_t n, const struct pf_sampling_params *p, float m,
		    float inv_t, double z_full, double u)
{
	size_t keep = 0;
	double z = 0.0;

	for (size_t i = 0; i < n; i++) {
		c[i].logit = expf((c[i].logit - m) * inv_t);
		z += c[i].logit;
	}
	if (z_full <= 0.0)
		z_full = z;
	if (p->top_p < 1.0f)
		n = nucleus(c, n, (double)p->top_p * z_full);
	if (p->min_p > 0.0f) {
		/* p_i >= min_p * p_max  <=>  w_i >= min_p, as w_max = 1. */
		for (size_t i = 0; i < n; i++) {
			if (c[i].logit >= p->min_p)
				c[keep++] = c[i];
		}
		n = keep;
	}
	return draw_weighted(c, n, u);
}

/* Collect tokens with logit >= thr into s->cand, in id order. */
static int collect_above(struct pf_sampler *s, const float *logits, int32_t n, float thr, size_t *ret_n)
{
	size_t nc = 0;

	for (int32_t i = 0; i < n; i++) {
		if (logits[i] >= thr) {
			if (nc == s->cap_cand && cand_reserve(s, nc + 1) < 0)
				return -ENOMEM;
			s->cand[nc++] = (struct pf_sampler_cand){ .logit = logits[i], .token = i };
		}
	}
	*ret_n = nc;
	return 0;
}

/*
 * Logit threshold equivalent to weight w_thr (exp((l - m) / T) >= w_thr),
 * lowered by a margin that covers the rounding of both sides: the set it
 * selects is a superset of the exact one, which is all the callers need
 * (exact weights are computed and compared afterwards).
 */
static float logit_threshold(float m, float temperature, double w_thr)
{
	double d = (double)temperature * log(w_thr);

	return (float)((double)m + d - 1e-4 * (1.0 + fabs((double)m) + fabs(d)));
}

/*
 * Plain sampling over the whole row with no scratch: one exp pass builds
 * the total and PLAIN_BLOCKS partial sums; the draw then re-walks only the
 * block where the running sum crosses u * z.
 */
#define PLAIN_BLOCKS 256
static int sample_plain(const float *logits, int32_t n, float m, float inv_t, double u)
{
	double part[PLAIN_BLOCKS], z = 0.0, cum = 0.0, target;
	const int32_t bs = (n + PLAIN_BLOCKS - 1) / PLAIN_BLOCKS;
	int32_t nb = (n + bs - 1) / bs, b, last = -1;

	for (b = 0; b < nb; b++) {
		const int32_t end = (b + 1) * bs < n ? (b + 1) * bs : n;
		double sb = 0.0;

		for (int32_t i = b * bs; i < end; i++)
			sb += expf((logits[i] - m) * inv_t);
		part[b] = sb;
		z += sb;
	}
	target = u * z;
	for (b = 0; b < nb; b++) {
		if (part[b] > 0.0 && cum + part[b] > target)
			break;
		cum += part[b];
	}
	if (b == nb) {
		/* Only rounding gets here: take the last block with mass. */
		while (b > 0 && !(part[b - 1] > 0.0))
			b--;
		if (b == 0)
			return -EDOM;
		b--;
		target = INFINITY; /* the walk ends on the block's last token */
	}
	{
		const int32_t end = (b + 1) * bs < n ? (b + 1) * bs : n;

		for (int32_t i = b * bs; i < end; i++) {
			float w = expf((logits[i] - m) * inv_t);

			if (w > 0.0f) {
				cum += w;
				last = i;
				if (cum > target)
					return i;
			}
		}
	}
	/* The block's own sum crossed but its walk, summed in a different
	 * association, fell a rounding error short: its last token. */
	return last >= 0 ? last : -EDOM;
}

/* Steps 5-8 for T > 0.  Returns the token or a negative errno. */
static int sample_random(struct pf_sampler *s, const struct pf_sampling_params *p, const float *logits,
			 int32_t n, double u)
{
	const float inv_t = 1.0f / p->temperature;
	float m;
	size_t nc;
	int rc;

	if (p->top_k > 0 && p->top_k < n) {
		rc = select_top_k(s, logits, n, (size_t)p->top_k, &nc);
		if (rc < 0)
			return rc;
		m = s->cand[0].logit;
		for (size_t i = 1; i < nc; i++)
			m = s->cand[i].logit > m ? s->cand[i].logit : m;
		/* Top-p renormalises over the top-k set: z_full = 0. */
		return pick(s->cand, nc, p, m, inv_t, 0.0, u);
	}
	rc = max_logit(logits, n, &m);
	if (rc < 0)
		return rc;
	if (p->top_p < 1.0f) {
		double z = 0.0, w_thr;

		for (int32_t i = 0; i < n; i++)
			z += expf((logits[i] - m) * inv_t);
		/* Tokens below (1 - top_p) * z / n weigh less than
		 * (1 - top_p) * z together, so the nucleus lies above; min-p
		 * (applied after) may raise the bar further.  w_max = 1 is
		 * always above both, as z <= n and min_p <= 1. */
		w_thr = (1.0 - (double)p->top_p) * z / (double)n;
		if ((double)p->min_p > w_thr)
			w_thr = p->min_p;
		rc = collect_above(s, logits, n, logit_threshold(m, p->temperature, w_thr), &nc);
		if (rc < 0)
			return rc;
		return pick(s->cand, nc, p, m, inv_t, z, u);
	}
	if (p->min_p > 0.0f) {
		rc = collect_above(s, logits, n, logit_threshold(m, p->temperature, p->min_p), &nc);
		if (rc < 0)
			return rc;
		return pick(s->cand, nc, p, m, inv_t, 0.0, u);
	}
	return sample_plain(logits, n, m, inv_t, u);
}


/* Step 1: raw log-softmax normaliser and the top-N alternatives. */
static int raw_logprobs(const float *logits, int32_t n, uint32_t top_n, struct pf_sample_result *ret,
			double *ret_lse)
{
	struct pf_sampler_cand h[2 * PF_SAMPLER_MAX_TOP_LOGPROBS + 64];
	size_t nh = 0;
	double z = 0.0, lse;
	float m;
	int rc;

	rc = max_logit(logits, n, &m);
	if (rc < 0)
		return rc;
	for (int32_t i = 0; i < n; i++)
		z += expf(logits[i] - m);
	lse = (double)m + log(z);
	if (top_n > 0) {
		rc = select_best(logits, n, top_n, h, select_cap(top_n, n), &nh);
		if (rc < 0)
			return rc;
		insertion_sort(h, nh);
	}
	for (size_t i = 0; i < nh; i++) {
		ret->top[i].token = h[i].token;
		ret->top[i].logprob = (float)((double)h[i].logit - lse);
	}
	ret->n_top = (uint32_t)nh;
	*ret_lse = lse;
	return 0;
}

int pf_sampler_sample(struct pf_sampler *s, const struct pf_sampling_params *p, float *logits,
		      int32_t n_vocab, uint64_t token_index, struct pf_sample_result *ret)
{
	size_t n_saved = 0;
	double lse = 0.0;
	int rc;

	if (s == NULL || p == NULL || logits == NULL || ret == NULL || n_vocab != s->n_vocab || n_vocab < 1)
		return -EINVAL;
	if (penalties_active(p) && !s->penalties)
		return -EINVAL;
	ret->token = -1;
	ret->logprob = NAN;
	ret->n_top = 0;
	ret->replayed = false;
	ret->gen_index = (uint32_t)token_index;

	if (p->logprobs) {
		uint32_t top_n = p->top_logprobs > 0 ? (uint32_t)p->top_logprobs : 0;

		if (top_n > PF_SAMPLER_MAX_TOP_LOGPROBS)
			top_n = PF_SAMPLER_MAX_TOP_LOGPROBS;
		rc = raw_logprobs(logits, n_vocab, top_n, ret, &lse);
		if (rc < 0)
			return rc;
	}

	/* Reserve the undo log before touching the row, so no error path
	 * leaves it half-processed. */
	if (process_bound(s) > s->cap_saved) {
		size_t cap = process_bound(s) * 2;
		struct pf_sampler_saved *sv = realloc(s->saved, cap * sizeof(*sv));

		if (sv == NULL)
			return -ENOMEM;
		s->saved = sv;
		s->cap_saved = cap;
	}
	n_saved = process(s, p, logits, n_vocab, s->saved);

	if (p->temperature < PF_SAMPLER_GREEDY_TEMP) {
		rc = argmax(logits, n_vocab);
	} else {
		uint32_t r[4];

		pf_philox_draw(s->seed, token_index, PF_SAMPLER_STREAM_TOKEN, r);
		rc = sample_random(s, p, logits, n_vocab, pf_philox_u01d(r[0], r[1]));
	}

	/* Undo in reverse: a token both penalised and masked gets its
	 * original value back from the first record. */
	while (n_saved > 0) {
		n_saved--;
		logits[s->saved[n_saved].token] = s->saved[n_saved].logit;
	}
	if (s->cap_cand > PF_SAMPLER_SCRATCH_KEEP) {
		free(s->cand);
		s->cand = NULL;
		s->cap_cand = 0;
	}
	if (rc < 0)
		return rc;
	ret->token = rc;
	if (p->logprobs)
		ret->logprob = (float)((double)logits[rc] - lse);
	return rc;
}

/* ---- stop conditions ----------------------------------------------------- */

/* Index of token among the stop ids (>= 0) or EOS ids (-1 - i); else INT32_MIN. */
static int32_t stop_token_index(const struct pf_sampler *s, const struct pf_sampling_params *p, int32_t token)
{
	uint32_t n_stop = p->n_stop_ids < PF_SAMPLER_MAX_STOP_IDS ? p->n_stop_ids : PF_SAMPLER_MAX_STOP_IDS;

	for (uint32_t i = 0; i < n_stop; i++) {
		if (p->stop_ids[i] == token)
			return (int32_t)i;
	}
	if (!p->ignore_eos) {
		for (uint32_t i = 0; i < s->n_eos; i++) {
			if (s->eos[i] == token)
				return -1 - (int32_t)i;
		}
	}
	return INT32_MIN;
}

static uint32_t n_stop_strings(const struct pf_sampling_params *p)
{
	return p->n_stop_strings < PF_SAMPLER_MAX_STOP_STRINGS ? p->n_stop_strings : PF_SAMPLER_MAX_STOP_STRINGS;
}

static size_t stop_len(const struct pf_sampling_params *p, uint32_t i)
{
	return p->stop_string_len[i] < PF_SAMPLER_STOP_STRING_MAX ? p->stop_string_len[i]
								  : PF_SAMPLER_STOP_STRING_MAX;
}

/* Earliest stop-string occurrence in t[0..len): its offset, or -1.  At
 * equal offsets the earlier-listed string wins. */
static ptrdiff_t find_stop(const struct pf_sampling_params *p, const char *t, size_t len, int32_t *ret_index)
{
	ptrdiff_t best = -1;

	for (uint32_t i = 0; i < n_stop_strings(p); i++) {
		size_t sl = stop_len(p, i);
		const char *hit;

		if (sl == 0)
			continue;
		hit = memmem(t, len, p->stop_strings[i], sl);
		if (hit != NULL && (best < 0 || hit - t < best)) {
			best = hit - t;
			*ret_index = (int32_t)i;
		}
	}
	return best;
}

/* Length of the longest suffix of t[0..len) that is a proper prefix of some
 * stop string: the text that must be held back. */
static size_t held_suffix(const struct pf_sampling_params *p, const char *t, size_t len)
{
	size_t longest = 0, lim;

	for (uint32_t i = 0; i < n_stop_strings(p); i++) {
		if (stop_len(p, i) > longest)
			longest = stop_len(p, i);
	}
	if (longest == 0)
		return 0;
	lim = len < longest - 1 ? len : longest - 1;
	for (size_t l = lim; l > 0; l--) {
		for (uint32_t i = 0; i < n_stop_strings(p); i++) {
			if (stop_len(p, i) > l && memcmp(t + len - l, p->stop_strings[i], l) == 0)
				return l;
		}
	}
	return 0;
}

static int finish(struct pf_sampler *s, struct pf_stop_result *ret, int32_t reason, int32_t index,
		  size_t emit_len)
{
	s->finished = reason;
	s->checked = true;
	s->held_off = 0;
	s->held_len = 0;
	ret->reason = reason;
	ret->stop_index = index;
	ret->emit = s->text;
	ret->emit_len = emit_len;
	return reason;
}

int pf_sampler_check_stop(struct pf_sampler *s, const struct pf_sampling_params *p, int32_t token,
			  const char *piece, size_t piece_len, struct pf_stop_result *ret)
{
	bool active;
	int32_t idx = -1;
	ptrdiff_t at;
	size_t need, hold;

	if (s == NULL || p == NULL || ret == NULL || (piece == NULL && piece_len > 0))
		return -EINVAL;
	ret->reason = PF_SAMPLER_CONTINUE;
	ret->stop_index = -1;
	ret->emit = "";
	ret->emit_len = 0;
	if (s->finished != PF_SAMPLER_CONTINUE) {
		ret->reason = s->finished;
		return s->finished;
	}
	if (s->n_generated == 0 || token != s->last_token || s->checked)
		return -EINVAL;

	/* The previous call's emitted bytes may still be in use by the
	 * caller until now; only now is the held tail moved to the front. */
	if (s->held_off > 0)
		memmove(s->text, s->text + s->held_off, s->held_len);
	s->held_off = 0;
	s->text_len = s->held_len;
	if (piece_len > SIZE_MAX - s->text_len)
		return -ENOMEM;
	need = s->text_len + piece_len;
	if (need + 1 > s->text_cap) {
		size_t cap = need + 1 > 2 * s->text_cap ? need + 1 : 2 * s->text_cap;
		char *t;

		if (cap < 128)
			cap = 128;
		t = realloc(s->text, cap);
		if (t == NULL)
			return -ENOMEM;
		s->text = t;
		s->text_cap = cap;
	}

	/* Until more than min_tokens tokens exist, nothing stops and nothing
	 * is held back (see the file comment). */
	active = s->n_generated > (uint32_t)p->min_tokens;
	if (active) {
		idx = stop_token_index(s, p, token);
		if (idx != INT32_MIN)
			return finish(s, ret, PF_SAMPLER_STOP_TOKEN, idx, s->held_len);
	}
	if (piece_len > 0)
		memcpy(s->text + s->text_len, piece, piece_len);
	s->text_len += piece_len;
	s->text[s->text_len] = '\0'; /* for debuggers only; lengths rule */

	if (active && n_stop_strings(p) > 0) {
		at = find_stop(p, s->text, s->text_len, &idx);
		if (at >= 0)
			return finish(s, ret, PF_SAMPLER_STOP_STRING, idx, (size_t)at);
	}
	if (s->n_generated >= (uint32_t)p->max_tokens)
		return finish(s, ret, PF_SAMPLER_LENGTH, -1, s->text_len);

	hold = active ? held_suffix(p, s->text, s->text_len) : 0;
	s->held_off = s->text_len - hold;
	s->held_len = hold;
	s->checked = true;
	ret->emit = s->text;
	ret->emit_len = s->text_len - hold;
	return PF_SAMPLER_CONTINUE;
}

size_t pf_sampler_held(const struct pf_sampler *s, const char **ret_text)
{
	*ret_text = s->held_len > 0 ? s->text + s->held_off : "";
	return s->held_len;
}
