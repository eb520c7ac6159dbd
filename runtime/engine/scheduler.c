/* scheduler.c — continuous batching over the KV block manager; see scheduler.h. */
#include "runtime/engine/scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct seq_list {
	struct pf_seq *head, *tail;
	int32_t n;
};

struct pf_sched {
	struct pf_sched_config cfg;
	struct pf_kv *kv;
	int32_t bs;
	struct seq_list running, waiting;
	uint64_t next_id, next_order;
	uint64_t preemptions, steps;
	uint64_t swap_outs, swap_ins;
	uint64_t requests_added, requests_done;
	/* step output buffers */
	struct pf_sched_batch b;
	int32_t cap_tok, cap_seq, cap_copies, cap_swap_out, cap_swap_in;
	struct pf_seq **scheduled; /* sequences scheduled in the current step */
	int32_t n_scheduled;
	/* the static batch: requests in it, and whether it may still take
	 * more (it is formed over as many steps as the token budget needs to
	 * admit static_batch requests, then closed until it drains) */
	int32_t static_count;
	bool static_forming;
	int32_t prefill_budget;    /* pf_sched_set_prefill_budget; 0: none */
};

struct pf_sched_config pf_sched_config_default(void)
{
	return (struct pf_sched_config){
		.max_num_batched_tokens = 2048,
		.max_num_seqs = 256,
		.watermark_blocks = -1,
		.policy = PF_SCHED_FCFS,
		.prefix_caching = true,
		.static_batching = false,
		.static_batch = 8,
		.wait_timeout_ms = 0,
		.preemption_mode = PF_PREEMPT_AUTO,
		.swap_min_tokens = 256,
	};
}

/* ---- ordered lists --------------------------------------------------------- */

static bool before(const struct pf_sched *s, const struct pf_seq *a, const struct pf_seq *b)
{
	if (s->cfg.policy == PF_SCHED_PRIORITY && a->req->priority != b->req->priority)
		return a->req->priority < b->req->priority;
	return a->order < b->order;
}

static void list_remove(struct seq_list *l, struct pf_seq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	l->n--;
}

/* Insert keeping scheduling order; scans from the tail since new arrivals
 * usually belong there. */
static void list_insert(struct pf_sched *s, struct seq_list *l, struct pf_seq *q)
{
	struct pf_seq *p = l->tail;
	while (p && before(s, q, p))
		p = p->prev;
	q->prev = p;
	q->next = p ? p->next : l->head;
	if (q->next)
		q->next->prev = q;
	else
		l->tail = q;
	if (p)
		p->next = q;
	else
		l->head = q;
	l->n++;
}

/* ---- lifecycle -------------------------------------------------------------- */

int pf_sched_create(const struct pf_sched_config *cfg, struct pf_kv *kv, struct pf_sched **ret)
{
	struct pf_sched *s;
	if (cfg->max_num_batched_tokens < 1 || cfg->max_num_seqs < 1 || (cfg->static_batching && cfg->static_batch < 1) ||
	    cfg->preemption_mode < PF_PREEMPT_AUTO || cfg->preemption_mode > PF_PREEMPT_SWAP || cfg->swap_min_tokens < 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->kv = kv;
	s->bs = pf_kv_block_size(kv);
	if (s->cfg.watermark_blocks < 0) {
		struct pf_kv_stats st;
		pf_kv_get_stats(kv, &st);
		s->cfg.watermark_blocks = st.n_blocks / 100;
	}
	if (s->cfg.static_batching)
		s->cfg.prefix_caching = false; /* the baseline reuses nothing */
	s->next_id = 1;
	*ret = s;
	return 0;
}

static void seq_free(struct pf_sched *s, struct pf_seq *q)
{
	pf_kv_seq_release(s->kv, &q->kv);
	free(q->tokens);
	free(q);
}

void pf_sched_destroy(struct pf_sched *s)
{
	if (!s)
		return;
	struct seq_list *lists[] = { &s->running, &s->waiting };
	for (int i = 0; i < 2; i++)
		while (lists[i]->head) {
			struct pf_seq *q = lists[i]->head;
			list_remove(lists[i], q);
			seq_free(s, q);
		}
	struct pf_sched_batch *b = &s->b;
	free(b->tokens); free(b->pos); free(b->seq_idx); free(b->seqs); free(b->tables); free(b->n_table);
	free(b->logit_rows); free(b->logit_seqs); free(b->copies); free(s->scheduled);
	free(b->swap_out); free(b->swap_in);
	free(s);
}

static int seq_reserve_tokens(struct pf_seq *q, int32_t n)
{
	if (n <= q->cap)
		return 0;
	int32_t cap = q->cap ? q->cap : 64;
	while (cap < n)
		cap *= 2;
	int32_t *t = realloc(q->tokens, (size_t)cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	q->tokens = t;
	q->cap = cap;
	return 0;
}

int pf_sched_add(struct pf_sched *s, struct pf_req *req, const int32_t *prompt, int32_t n, int64_t now_ms,
		 struct pf_seq **ret_seq)
{
	if (n < 1 || !req)
		return -EINVAL;
	struct pf_seq *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	if (seq_reserve_tokens(q, n + 1)) {
		free(q);
		return -ENOMEM;
	}
	memcpy(q->tokens, prompt, (size_t)n * sizeof(*prompt));
	q->n_tokens = q->n_prompt = n;
	q->id = s->next_id++;
	q->order = s->next_order++;
	q->req = req;
	q->state = PF_SEQ_WAITING;
	req->n_seqs++;
	req->arrival_ms = now_ms;
	list_insert(s, &s->waiting, q);
	s->requests_added++;
	*ret_seq = q;
	return 0;
}

int32_t pf_sched_finish(struct pf_sched *s, struct pf_seq *q)
{
	struct pf_req *req = q->req;
	if (q->state == PF_SEQ_RUNNING)
		list_remove(&s->running, q);
	else if (q->state == PF_SEQ_WAITING)
		list_remove(&s->waiting, q);
	/* a sequence finished mid-step must not be touched by step_done */
	for (int32_t i = 0; i < s->n_scheduled; i++)
		if (s->scheduled[i] == q)
			s->scheduled[i] = NULL;
	q->state = PF_SEQ_DONE;
	seq_free(s, q);
	if (--req->n_seqs == 0)
		s->requests_done++;
	return req->n_seqs;
}

/* Room for n more pairs in *arr (capacity *cap). */
static int pairs_room(struct pf_kv_copy **arr, int32_t *cap, int32_t used, int32_t n)
{
	if (used + n <= *cap)
		return 0;
	int32_t c = *cap ? *cap : 64;
	while (c < used + n)
		c *= 2;
	struct pf_kv_copy *p = realloc(*arr, (size_t)c * sizeof(*p));
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = c;
	return 0;
}

/* Should victim q (RUNNING, not in this step) be swapped out rather than
 * recomputed?  See the modes in scheduler.h. */
static bool want_swap(const struct pf_sched *s, const struct pf_seq *q)
{
	int32_t need = (q->n_computed + s->bs - 1) / s->bs;
	if (s->cfg.preemption_mode == PF_PREEMPT_RECOMPUTE || q->n_computed == 0 || need > pf_kv_num_host_free(s->kv))
		return false;
	return s->cfg.preemption_mode == PF_PREEMPT_SWAP || q->n_computed >= s->cfg.swap_min_tokens;
}

/* Preempt q, by swapping when `swap` and the moves fit; else recompute. */
static int preempt(struct pf_sched *s, struct pf_seq *q, bool swap)
{
	if (q->state != PF_SEQ_RUNNING)
		return 0;
	if (swap) {
		int r = pairs_room(&s->b.swap_out, &s->cap_swap_out, s->b.n_swap_out, q->kv.n_blocks);
		if (r)
			return r;
		r = pf_kv_seq_swap_out(s->kv, &q->kv, q->n_computed, s->b.swap_out, s->cap_swap_out, &s->b.n_swap_out);
		if (r && r != -ENOSPC)
			return r;
		swap = r == 0;
	}
	list_remove(&s->running, q);
	for (int32_t i = 0; i < s->n_scheduled; i++)
		if (s->scheduled[i] == q)
			s->scheduled[i] = NULL;
	if (swap) {
		/* its K/V waits in host slots: n_computed stands */
		s->swap_outs++;
	} else {
		/* recompute: every token so far becomes prompt to recompute; the
		 * prefix cache may hand most of it back at re-admission */
		pf_kv_seq_release(s->kv, &q->kv);
		q->n_computed = 0;
	}
	q->n_preemptions++;
	q->step_new = 0;
	q->step_logits = false;
	q->state = PF_SEQ_WAITING;
	list_insert(s, &s->waiting, q);
	s->preemptions++;
	return 0;
}

void pf_sched_preempt(struct pf_sched *s, struct pf_seq *q)
{
	preempt(s, q, false); /* cannot fail without a swap */
}

int pf_sched_fork(struct pf_sched *s, struct pf_seq *src, struct pf_seq **ret)
{
	if (src->state != PF_SEQ_RUNNING)
		return -EINVAL;
	struct pf_seq *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	if (seq_reserve_tokens(q, src->n_tokens + 1) || pf_kv_seq_fork(s->kv, &src->kv, &q->kv)) {
		free(q->tokens);
		free(q);
		return -ENOMEM;
	}
	memcpy(q->tokens, src->tokens, (size_t)src->n_tokens * sizeof(*q->tokens));
	q->n_tokens = src->n_tokens;
	q->n_prompt = src->n_prompt;
	q->n_computed = src->n_computed;
	q->id = s->next_id++;
	q->order = src->order; /* siblings schedule together */
	q->req = src->req;
	q->state = PF_SEQ_RUNNING;
	src->req->n_seqs++;
	list_insert(s, &s->running, q);
	*ret = q;
	return 0;
}

int pf_sched_append(struct pf_sched *s, struct pf_seq *q, int32_t token)
{
	(void)s;
	int r = seq_reserve_tokens(q, q->n_tokens + 1);
	if (r)
		return r;
	q->tokens[q->n_tokens++] = token;
	return 0;
}

/* ---- building a step -------------------------------------------------------- */

static int batch_grow(struct pf_sched *s, int32_t n_tok, int32_t n_seq)
{
	struct pf_sched_batch *b = &s->b;
	if (n_tok > s->cap_tok) {
		int32_t cap = s->cap_tok ? s->cap_tok : 256;
		while (cap < n_tok)
			cap *= 2;
		int32_t *t = realloc(b->tokens, (size_t)cap * sizeof(int32_t));
		if (!t)
			return -ENOMEM;
		b->tokens = t;
		if (!(t = realloc(b->pos, (size_t)cap * sizeof(int32_t))))
			return -ENOMEM;
		b->pos = t;
		if (!(t = realloc(b->seq_idx, (size_t)cap * sizeof(int32_t))))
			return -ENOMEM;
		b->seq_idx = t;
		s->cap_tok = cap;
	}
	if (n_seq > s->cap_seq) {
		int32_t cap = s->cap_seq ? s->cap_seq : 64;
		while (cap < n_seq)
			cap *= 2;
		void *p;
		if (!(p = realloc(b->seqs, (size_t)cap * sizeof(*b->seqs))))
			return -ENOMEM;
		b->seqs = p;
		if (!(p = realloc(b->tables, (size_t)cap * sizeof(*b->tables))))
			return -ENOMEM;
		b->tables = p;
		if (!(p = realloc(b->n_table, (size_t)cap * sizeof(*b->n_table))))
			return -ENOMEM;
		b->n_table = p;
		if (!(p = realloc(b->logit_rows, (size_t)cap * sizeof(*b->logit_rows))))
			return -ENOMEM;
		b->logit_rows = p;
		if (!(p = realloc(b->logit_seqs, (size_t)cap * sizeof(*b->logit_seqs))))
			return -ENOMEM;
		b->logit_seqs = p;
		if (!(p = realloc(s->scheduled, (size_t)cap * sizeof(*s->scheduled))))
			return -ENOMEM;
		s->scheduled = p;
		if (!(p = realloc(b->copies, (size_t)cap * 2 * sizeof(*b->copies))))
			return -ENOMEM;
		b->copies = p;
		s->cap_copies = cap * 2;
		s->cap_seq = cap;
	}
	return 0;
}

/*
 * Secure KV room for q's positions [n_computed, n_computed + n_new): new
 * blocks plus private copies of shared ones.  On -ENOSPC preempt the last
 * RUNNING sequence (lowest priority, newest) and retry; returns 1 when q
 * itself was the victim, 0 when it has its room, <0 on error.
 */
static int secure_room(struct pf_sched *s, struct pf_seq *q, int32_t n_new)
{
	int32_t copies_before = s->b.n_copies;
	for (;;) {
		int r = pf_kv_seq_reserve(s->kv, &q->kv, q->n_computed + n_new);
		if (!r)
			r = pf_kv_seq_prepare_write(s->kv, &q->kv, q->n_computed, q->n_computed + n_new, s->b.copies,
						    s->cap_copies, &s->b.n_copies);
		if (r != -ENOSPC)
			return r;
		/* Victims come from the sequences not yet in this step (their
		 * tokens are not in the batch).  Paused ones (their client is not
		 * reading) go first; then the lowest priority; among equals the
		 * one preempted least often, then the newest.  Preferring the
		 * least-preempted spreads recomputation so no request thrashes:
		 * without it the newest request is the victim every time it is
		 * re-admitted. */
		struct pf_seq *victim = NULL, *paused = NULL;
		for (struct pf_seq *p = s->running.tail; p; p = p->prev) {
			if (p == q || p->step_new)
				continue;
			if (p->paused) {
				paused = p;
				break;
			}
			if (!victim) {
				victim = p;
				continue;
			}
			if (s->cfg.policy == PF_SCHED_PRIORITY && p->req->priority != victim->req->priority)
				continue; /* walking from the tail: p has higher priority */
			if (p->n_preemptions < victim->n_preemptions)
				victim = p;
		}
		victim = paused ? paused : victim ? victim : q;
		/* q itself recomputes: its fresh CoW copies are dropped below, so
		 * blocks it now holds may not hold its K/V yet */
		bool swap = victim != q && want_swap(s, victim);
		if (victim == q)
			s->b.n_copies = copies_before; /* its copies would target freed blocks */
		r = preempt(s, victim, swap);
		if (r)
			return r;
		s->b.n_preempted++;
		if (victim == q)
			return 1;
	}
}

static void emit(struct pf_sched *s, struct pf_seq *q, int32_t n_new)
{
	struct pf_sched_batch *b = &s->b;
	int32_t si = b->n_seqs++;
	b->seqs[si] = q;
	s->scheduled[s->n_scheduled++] = q;
	for (int32_t i = 0; i < n_new; i++) {
		b->tokens[b->n_tokens] = q->tokens[q->n_computed + i];
		b->pos[b->n_tokens] = q->n_computed + i;
		b->seq_idx[b->n_tokens++] = si;
	}
	q->step_new = n_new;
	q->step_logits = q->n_computed + n_new == q->n_tokens;
	if (q->step_logits) {
		b->logit_rows[b->n_logits] = b->n_tokens - 1;
		b->logit_seqs[b->n_logits++] = q;
	}
}

/*
 * Free blocks an admission must leave: the watermark plus one per running
 * sequence, so the running ones can grow a while without preempting anyone
 * (the static baseline reserves whole requests and keeps only the
 * watermark).  With nothing running there is nobody to keep room for: a
 * request that fits the pool at all must be admitted, or it waits forever;
 * the same holds for a sequence whose request already runs (below).
 */
static int32_t admission_headroom(const struct pf_sched *s, const struct pf_seq *q)
{
	if (s->running.n == 0)
		return 0;
	/* A sequence whose request already runs (a preempted beam or
	 * sibling) gets in whenever it fits: beam search chooses the next
	 * beams only when every beam has its logits, so the running ones wait
	 * for it, and room kept for them would be kept from them. */
	int32_t waiting = 0;
	for (const struct pf_seq *p = q; p && p->req == q->req; p = p->next)
		waiting++; /* siblings share their arrival order: they sit together */
	for (const struct pf_seq *p = q->prev; p && p->req == q->req; p = p->prev)
		waiting++;
	if (waiting < q->req->n_seqs)
		return 0;
	return s->cfg.watermark_blocks + (s->cfg.static_batching ? 0 : s->running.n + 1);
}

/*
 * Admit a swapped-out waiting sequence: device blocks for its swapped K/V
 * and this step's new tokens, under the same headroom rule as any
 * admission.  Returns the tokens emitted (> 0), 0 when it does not fit
 * now (nothing changed), or a negative errno.
 */
static int admit_swapped(struct pf_sched *s, struct pf_seq *q, int32_t budget)
{
	struct pf_sched_batch *b = &s->b;
	int32_t left = q->n_tokens - q->n_computed;
	int32_t n_new = left < budget ? left : budget;
	int32_t need = (q->n_computed + n_new + s->bs - 1) / s->bs;
	if (pf_kv_num_available(s->kv) - need < admission_headroom(s, q))
		return 0;
	int r = pairs_room(&b->swap_in, &s->cap_swap_in, b->n_swap_in, q->kv.n_blocks);
	if (!r)
		r = pf_kv_seq_swap_in(s->kv, &q->kv, b->swap_in, s->cap_swap_in, &b->n_swap_in);
	/* the blocks were counted above, and nothing shared is left to copy */
	if (!r)
		r = pf_kv_seq_reserve(s->kv, &q->kv, q->n_computed + n_new);
	if (r)
		return r;
	list_remove(&s->waiting, q);
	q->state = PF_SEQ_RUNNING;
	list_insert(s, &s->running, q);
	s->swap_ins++;
	emit(s, q, n_new);
	return n_new;
}

/*
 * Beams of one request wait for each other: a beam with its logits computes
 * nothing until its siblings have theirs, holding its blocks meanwhile.  So
 * when a step finds nothing to schedule while sequences wait and no running
 * sequence has anything left to compute, the running ones are all such
 * beams, holding room their waiting siblings need: two beam requests can
 * hold each other's room forever.  The newest of them is preempted
 * (recompute; it recomputes its logits, the same, when it is back), so
 * the oldest requests' beams get in and finish first.  Returns true when
 * it preempted one (the caller tries admission again).
 */
static bool unwedge(struct pf_sched *s)
{
	if (s->b.n_tokens || !s->waiting.head || s->cfg.static_batching)
		return false;
	for (const struct pf_seq *p = s->running.head; p; p = p->next)
		if (p->n_computed < p->n_tokens)
			return false; /* something can still run (or is paused): no deadlock */
	if (!s->running.tail)
		return false;
	preempt(s, s->running.tail, false); /* cannot fail without a swap */
	s->b.n_preempted++;
	return true;
}

int pf_sched_step(struct pf_sched *s, int64_t now_ms, struct pf_sched_batch *out)
{
	struct pf_sched_batch *b = &s->b;
	int32_t budget = s->cfg.max_num_batched_tokens;
	int r = batch_grow(s, budget, s->running.n + s->waiting.n + 1);
	if (r)
		return r;
	b->n_tokens = b->n_seqs = b->n_logits = b->n_copies = b->n_preempted = 0;
	b->n_swap_out = b->n_swap_in = 0;
	s->n_scheduled = 0;

	/* decodes first, then prefill chunks of running sequences */
	for (int pass = 0; pass < 2 && budget > 0; pass++) {
		/* prefill (and admission) takes at most the prefill budget:
		 * decodes never wait for it, a long prompt goes in chunks */
		if (pass == 1 && s->prefill_budget > 0 && budget > s->prefill_budget)
			budget = s->prefill_budget;
		struct pf_seq *q = s->running.head;
		while (q && budget > 0) {
			struct pf_seq *next = q->next;
			int32_t left = q->n_tokens - q->n_computed;
			bool decode = left == 1;
			if (q->paused || q->step_new || decode != (pass == 0) || left < 1) {
				q = next;
				continue;
			}
			int32_t n_new = left < budget ? left : budget;
			r = secure_room(s, q, n_new);
			if (r < 0)
				return r;
			if (r == 0) {
				emit(s, q, n_new);
				budget -= n_new;
			}
			/* a preemption may have removed `next`: restart from the
			 * head; scheduled sequences are skipped by step_new */
			q = r == 0 && !b->n_preempted ? next : s->running.head;
		}
	}

	bool window_closed = true;
	if (s->cfg.wait_timeout_ms > 0 && s->running.n == 0 && s->waiting.head &&
	    s->waiting.n < s->cfg.max_num_seqs)
		window_closed = now_ms - s->waiting.head->req->arrival_ms >= s->cfg.wait_timeout_ms;
	bool may_admit = !b->n_preempted && window_closed;
	if (s->cfg.static_batching) {
		if (s->running.n == 0) {
			s->static_count = 0;
			s->static_forming = true;
		}
		may_admit = may_admit && s->static_forming;
	}
	int32_t admitted = 0;
admit:
	while (may_admit && budget > 0 && s->waiting.head && s->running.n < s->cfg.max_num_seqs) {
		struct pf_seq *q = s->waiting.head;
		if (s->cfg.static_batching && s->static_count >= s->cfg.static_batch)
			break;
		if (q->kv.swapped) {
			r = admit_swapped(s, q, budget);
			if (r < 0)
				return r;
			if (r == 0)
				break;
			budget -= r;
			admitted++;
			continue;
		}
		int32_t hit = -1; /* tokens the prefix cache served; -1: not looked up */
		if (s->cfg.prefix_caching && q->kv.n_blocks == 0) {
			hit = pf_kv_seq_match_prefix(s->kv, &q->kv, q->tokens, q->n_tokens, q->n_tokens - 1);
			if (hit < 0)
				return hit;
			q->n_computed = hit;
			if (q->n_preemptions == 0)
				q->n_cached = q->n_computed;
		}
		int32_t left = q->n_tokens - q->n_computed;
		int32_t n_new = left < budget ? left : budget;
		/* the baseline reserves the whole prompt + max_tokens up front */
		int32_t reserve = s->cfg.static_batching ? q->n_prompt + q->req->max_tokens : q->n_computed + n_new;
		int32_t need = (reserve + s->bs - 1) / s->bs - q->kv.n_blocks;
		if (need > 0 && pf_kv_num_available(s->kv) - need < admission_headroom(s, q)) {
			/* give matched prefix blocks back while it waits */
			pf_kv_seq_release(s->kv, &q->kv);
			q->n_computed = 0;
			break;
		}
		r = pf_kv_seq_reserve(s->kv, &q->kv, reserve);
		if (!r)
			r = pf_kv_seq_prepare_write(s->kv, &q->kv, q->n_computed, q->n_computed + n_new, b->copies,
						    s->cap_copies, &b->n_copies);
		if (r == -ENOSPC) {
			pf_kv_seq_release(s->kv, &q->kv);
			q->n_computed = 0;
			break;
		}
		if (r)
			return r;
		list_remove(&s->waiting, q);
		q->state = PF_SEQ_RUNNING;
		list_insert(s, &s->running, q);
		/* counted here, not at the lookup: a sequence that waited
		 * through several attempts is one query (as vLLM counts) */
		if (hit >= 0)
			pf_kv_record_prefix_lookup(s->kv, q->n_tokens, hit, q->n_preemptions > 0);
		emit(s, q, n_new);
		budget -= n_new;
		admitted++;
		s->static_count++;
	}
	if (may_admit && unwedge(s))
		goto admit;
	/* a static batch keeps forming only while the token budget alone
	 * cut admission short: a batch of static_batch requests must not
	 * shrink to what one step's budget can prefill */
	if (s->cfg.static_batching && s->static_count > 0 &&
	    !(budget <= 0 && s->waiting.head && s->static_count < s->cfg.static_batch))
		s->static_forming = false;

	for (int32_t i = 0; i < b->n_seqs; i++) {
		b->tables[i] = b->seqs[i]->kv.blocks;
		b->n_table[i] = b->seqs[i]->kv.n_blocks;
	}
	if (b->n_tokens)
		s->steps++;
	*out = *b;
	return b->n_tokens;
}

void pf_sched_set_prefill_budget(struct pf_sched *s, int32_t n)
{
	s->prefill_budget = n > 0 ? n : 0;
}

void pf_sched_step_done(struct pf_sched *s)
{
	for (int32_t i = 0; i < s->n_scheduled; i++) {
		struct pf_seq *q = s->scheduled[i];
		if (!q)
			continue;
		q->n_computed += q->step_new;
		q->step_new = 0;
		q->step_logits = false;
		if (s->cfg.prefix_caching)
			pf_kv_seq_commit(s->kv, &q->kv, q->tokens, q->n_computed);
	}
	s->n_scheduled = 0;
}

void pf_sched_get_stats(const struct pf_sched *s, struct pf_sched_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->n_running = s->running.n;
	ret->n_waiting = s->waiting.n;
	/* A request's sequences share its priority and arrival order, so they
	 * sit next to each other in each list: one group per request. */
	for (const struct pf_seq *q = s->running.head; q; q = q->next)
		ret->n_req_running += !q->prev || q->prev->req != q->req;
	int32_t group = 0;
	bool preempted = false;
	for (const struct pf_seq *q = s->waiting.head; q; q = q->next) {
		ret->n_preempted_waiting += q->n_preemptions > 0;
		ret->n_swapped += q->kv.swapped;
		group++;
		preempted |= q->n_preemptions > 0;
		if (q->next && q->next->req == q->req)
			continue;
		/* the whole request waits unless some sibling runs */
		if (group == q->req->n_seqs) {
			ret->n_req_waiting++;
			ret->n_req_preempted += preempted;
		}
		group = 0;
		preempted = false;
	}
	ret->preemptions_total = s->preemptions;
	ret->swap_outs_total = s->swap_outs;
	ret->swap_ins_total = s->swap_ins;
	ret->steps = s->steps;
	ret->requests_added = s->requests_added;
	ret->requests_done = s->requests_done;
}

void pf_sched_check_or_abort(const struct pf_sched *s, const char *where)
{
	char err[256] = "";
	int r = pf_sched_check(s, err, sizeof(err));
	if (r == 0 || r == -ENOMEM) /* no memory to check with is not a broken invariant */
		return;
	fprintf(stderr, "pinfer: invariant broken after %s: %s\n", where, err);
	fflush(stderr);
	abort();
}

struct pf_seq *pf_sched_first(const struct pf_sched *s, enum pf_seq_state st)
{
	return st == PF_SEQ_RUNNING ? s->running.head : st == PF_SEQ_WAITING ? s->waiting.head : NULL;
}

int pf_sched_check(const struct pf_sched *s, char *err, size_t errlen)
{
	int32_t n = s->running.n + s->waiting.n, k = 0;
	const struct pf_kv_seq **tables = malloc(sizeof(*tables) * (size_t)(n ? n : 1));
	int r = 0;
	if (!tables)
		return -ENOMEM;
	if (s->running.n > s->cfg.max_num_seqs) {
		snprintf(err, errlen, "%d running > max_num_seqs %d", s->running.n, s->cfg.max_num_seqs);
		r = -EFAULT;
		goto out;
	}
	const struct seq_list *lists[] = { &s->running, &s->waiting };
	for (int li = 0; li < 2; li++) {
		int32_t cnt = 0;
		for (const struct pf_seq *q = lists[li]->head; q; q = q->next, cnt++) {
			if ((int)q->state != (li == 0 ? PF_SEQ_RUNNING : PF_SEQ_WAITING)) {
				snprintf(err, errlen, "seq %llu in the wrong list for state %d", (unsigned long long)q->id, q->state);
				r = -EFAULT;
				goto out;
			}
			if (q->next && before(s, q->next, q)) {
				snprintf(err, errlen, "list %d out of order at seq %llu", li, (unsigned long long)q->id);
				r = -EFAULT;
				goto out;
			}
			if (q->n_computed > q->n_tokens || q->kv.n_blocks * s->bs < q->n_computed) {
				snprintf(err, errlen, "seq %llu: computed %d of %d tokens with %d blocks", (unsigned long long)q->id,
					 q->n_computed, q->n_tokens, q->kv.n_blocks);
				r = -EFAULT;
				goto out;
			}
			tables[k++] = &q->kv;
		}
		if (cnt != lists[li]->n) {
			snprintf(err, errlen, "list %d counts %d, holds %d", li, lists[li]->n, cnt);
			r = -EFAULT;
			goto out;
		}
	}
	struct pf_sched_stats st;
	pf_sched_get_stats(s, &st);
	if (st.requests_added - st.requests_done != (uint64_t)(st.n_req_running + st.n_req_waiting) ||
	    st.n_req_preempted > st.n_req_waiting || st.n_preempted_waiting > st.n_waiting) {
		snprintf(err, errlen, "requests: %llu added, %llu done, but %d running + %d waiting (%d preempted)",
			 (unsigned long long)st.requests_added, (unsigned long long)st.requests_done, st.n_req_running,
			 st.n_req_waiting, st.n_req_preempted);
		r = -EFAULT;
		goto out;
	}
	r = pf_kv_check(s->kv, tables, k, err, errlen);
out:
	free(tables);
	return r;
}
