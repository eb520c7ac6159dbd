/*
 * submit.c — libpinfer's submission side: parameter checks, the payload
 * ring allocator, SUBMIT/CANCEL entries and waking a sleeping daemon.  See
 * client_impl.h for the allocator's invariants.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_impl.h"
#include "shm/proto.h"
#include "shm/ring.h"
#include "shm/wait.h"

/* The public header's limits are the wire's (it cannot include shm/proto.h,
 * which is not installed): one definition, checked here. */
static_assert(PINFER_MAX_N == PF_WIRE_MAX_SEQS, "PINFER_MAX_N");
static_assert(PINFER_MAX_BEAM_WIDTH == PF_WIRE_MAX_BEAMS, "PINFER_MAX_BEAM_WIDTH");
static_assert(PINFER_MAX_STOP == PF_WIRE_MAX_STOP, "PINFER_MAX_STOP");
static_assert(PINFER_MAX_STOP_LEN == PF_WIRE_MAX_STOP_LEN, "PINFER_MAX_STOP_LEN");
static_assert(PINFER_MAX_STOP_IDS == PF_WIRE_MAX_STOP_IDS, "PINFER_MAX_STOP_IDS");
static_assert(PINFER_MAX_TOP_LOGPROBS == PF_WIRE_MAX_TOP_LOGPROBS, "PINFER_MAX_TOP_LOGPROBS");

void pinfer_params_init(struct pinfer_params *p)
{
	memset(p, 0, sizeof(*p));
	p->temperature = 1.0f;
	p->top_p = 1.0f;
	p->repetition_penalty = 1.0f;
	p->max_tokens = 16;
	p->n = 1;
	p->length_penalty = 1.0f;
	p->add_special = true;
}

/* The ranges the daemon's sampler enforces (vLLM's); checking them here
 * gives the caller an immediate error instead of an ERROR event later. */
static int check_params(struct pinfer *c, const struct pinfer_params *p)
{
	const float f[] = { p->temperature, p->top_p, p->min_p, p->repetition_penalty,
			    p->presence_penalty, p->frequency_penalty, p->length_penalty };
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (!isfinite(f[i]))
			return pf_client_fail(c, -EINVAL, "a sampling parameter is NaN or infinite");
	if (p->temperature < 0)
		return pf_client_fail(c, -EINVAL, "temperature must be >= 0 (got %g)", p->temperature);
	if (!(p->top_p > 0 && p->top_p <= 1))
		return pf_client_fail(c, -EINVAL, "top_p must be in (0, 1] (got %g)", p->top_p);
	if (p->top_k < -1)
		return pf_client_fail(c, -EINVAL, "top_k must be >= 0, or -1 for off (got %d)", p->top_k);
	if (!(p->min_p >= 0 && p->min_p <= 1))
		return pf_client_fail(c, -EINVAL, "min_p must be in [0, 1] (got %g)", p->min_p);
	if (!(p->repetition_penalty > 0))
		return pf_client_fail(c, -EINVAL, "repetition_penalty must be > 0 (got %g)", p->repetition_penalty);
	if (fabsf(p->presence_penalty) > 2 || fabsf(p->frequency_penalty) > 2)
		return pf_client_fail(c, -EINVAL, "presence_penalty and frequency_penalty must be in [-2, 2]");
	if (p->max_tokens < 1)
		return pf_client_fail(c, -EINVAL, "max_tokens must be >= 1 (got %d)", p->max_tokens);
	if (p->min_tokens < 0 || p->min_tokens > p->max_tokens)
		return pf_client_fail(c, -EINVAL, "min_tokens must be in [0, max_tokens=%d] (got %d)", p->max_tokens,
				      p->min_tokens);
	if (p->n < 1)
		return pf_client_fail(c, -EINVAL, "n must be >= 1 (got %d)", p->n);
	if (p->beam_width < 0)
		return pf_client_fail(c, -EINVAL, "beam_width must be >= 0 (got %d)", p->beam_width);
	if (p->beam_width > 1 && p->n > 1)
		return pf_client_fail(c, -EINVAL, "n > 1 and beam search (beam_width > 1) cannot be combined");
	if (p->top_logprobs < 0 || p->top_logprobs > PINFER_MAX_TOP_LOGPROBS)
		return pf_client_fail(c, -EINVAL, "top_logprobs must be in [0, %d] (got %d)", PINFER_MAX_TOP_LOGPROBS,
				      p->top_logprobs);
	if (p->n_stop > PINFER_MAX_STOP || (p->n_stop && !p->stop))
		return pf_client_fail(c, -EINVAL, "at most %d stop strings", PINFER_MAX_STOP);
	for (size_t i = 0; i < p->n_stop; i++) {
		size_t l = p->stop[i] ? strlen(p->stop[i]) : 0;
		if (l < 1 || l > PINFER_MAX_STOP_LEN)
			return pf_client_fail(c, -EINVAL, "stop string %zu must be 1..%d bytes (got %zu)", i,
					      PINFER_MAX_STOP_LEN, l);
	}
	if (p->n_stop_ids > PINFER_MAX_STOP_IDS || (p->n_stop_ids && !p->stop_ids))
		return pf_client_fail(c, -EINVAL, "at most %d stop token ids", PINFER_MAX_STOP_IDS);
	for (size_t i = 0; i < p->n_stop_ids; i++)
		if (p->stop_ids[i] < 0 || p->stop_ids[i] >= c->n_vocab)
			return pf_client_fail(c, -EINVAL, "stop id %d is outside the vocabulary [0, %d)",
					      p->stop_ids[i], c->n_vocab);
	return 0;
}

static uint64_t align8(uint64_t v)
{
	return (v + 7) & ~(uint64_t)7;
}

/* Everything up to the slot_end of the last entry the daemon consumed is
 * free again. */
static void reclaim(struct pinfer *c)
{
	/* acquire: pairs with the daemon's release of sq_head after it copied
	 * the entries (and their payloads) out, so we may overwrite them */
	uint32_t h = atomic_load_explicit(&c->d2c->sq_head, memory_order_acquire);
	uint32_t done = h - c->sq_head_seen;
	if (done == 0 || done > c->sq_tail - c->sq_head_seen)
		return; /* nothing new, or a value that cannot be right: ignore it */
	c->sq_head_seen = h;
	if (h == c->sq_tail) {
		/* all taken: restart at the next lap's offset 0, so that a chunk
		 * up to the whole area fits instead of skipping the tail */
		c->pay_tail = (c->pay_tail + c->payload_n - 1) / c->payload_n * c->payload_n;
		c->pay_head = c->pay_tail;
	} else {
		c->pay_head = c->slot_end[(h - 1) & (c->sq_n - 1)];
	}
}

/* Reserve len bytes contiguous in the payload area.  Returns the offset,
 * or -1 when they do not fit now (the caller checked len <= payload_n). */
static int64_t payload_alloc(struct pinfer *c, uint32_t len)
{
	/* 8-byte aligned starts keep the int32 stop ids aligned for the daemon
	 * (when payload_n is a multiple of 8, as it is by default) */
	uint64_t start = align8(c->pay_tail);
	uint64_t pos = start % c->payload_n;
	if (pos + len > c->payload_n)
		start += c->payload_n - pos; /* chunks never straddle the end */
	if (start + len - c->pay_head > c->payload_n)
		return -1;
	c->pay_tail = start + len;
	return (int64_t)(start % c->payload_n);
}

static int usable(struct pinfer *c)
{
	if (c->gone)
		return -ECONNRESET;
	uint32_t st = atomic_load_explicit(&c->d2c->daemon_state, memory_order_acquire);
	if (st == PF_DAEMON_DRAINING)
		return pf_client_fail(c, -ESHUTDOWN, "pinferd at %s is draining; it takes no new requests", c->path);
	if (st == PF_DAEMON_GONE)
		return pf_client_check_alive(c);
	return 0;
}

/* After publishing: wake the daemon if it announced it sleeps. */
static void kick(struct pinfer *c)
{
	/* seq_cst: our store of sq_tail (in pf_ring_publish) must be ordered
	 * before the load of daemon_sleeping — Dekker with the daemon's store of
	 * daemon_sleeping, fence, re-check of sq_tail; otherwise both could
	 * miss the other and the request would sit until the next poll */
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&c->d2c->daemon_sleeping, memory_order_relaxed))
		return;
	/* the bump makes a FUTEX_WAITV that has not yet slept return at once */
	atomic_fetch_add_explicit(&c->c2d->sq_seq, 1, memory_order_release);
	pf_futex_wake(&c->c2d->sq_seq, 1);
}

/* Write sqe into the next slot and publish it; the caller checked there is
 * room.  end: pay_tail after this entry's chunk. */
static void sq_push(struct pinfer *c, const struct pf_sqe *e)
{
	uint32_t slot = c->sq_tail & (c->sq_n - 1);
	memcpy(&c->sq[slot], e, sizeof(*e));
	c->slot_end[slot] = c->pay_tail;
	c->sq_tail++;
	pf_ring_publish(&c->c2d->sq_tail, c->sq_tail);
	kick(c);
}

/* The prompt, given as one of three kinds. */
struct prompt {
	uint8_t op;                         /* enum pf_sq_op; 0: SUBMIT */
	uint8_t kind;                       /* enum pf_input_kind */
	const char *text;                   /* TEXT */
	size_t len;
	const int32_t *ids;                 /* TOKENS */
	const struct pinfer_message *msgs;  /* CHAT */
	size_t n;
};

static void put_u32(uint8_t *dst, uint32_t v)
{
	memcpy(dst, &v, 4);
}

static int submit(struct pinfer *c, const struct prompt *pr, const struct pinfer_params *params, uint64_t *ret_tag)
{
	struct pinfer_params def;
	uint64_t plen, total, off_ids, off_stop, stop_len = 0;
	int r;

	if ((r = usable(c)))
		return r;
	if (!params) {
		pinfer_params_init(&def);
		params = &def;
	}
	if ((r = check_params(c, params)))
		return r;

	/* chunk layout: [prompt][pad][stop ids][stop strings as {u8 len, bytes}] */
	switch (pr->kind) {
	case PF_INPUT_TEXT:
		plen = pr->len;
		break;
	case PF_INPUT_TOKENS:
		if (pr->n < 1)
			return pf_client_fail(c, -EINVAL, "a token prompt needs at least one token");
		if (pr->n > c->payload_n / 4)
			return pf_client_fail(c, -E2BIG, "%zu prompt tokens can never fit the %u-byte payload area",
					      pr->n, c->payload_n);
		for (size_t i = 0; i < pr->n; i++)
			if (pr->ids[i] < 0 || pr->ids[i] >= c->n_vocab)
				return pf_client_fail(c, -EINVAL, "prompt token %zu (%d) is outside the vocabulary [0, %d)",
						      i, pr->ids[i], c->n_vocab);
		plen = (uint64_t)pr->n * 4;
		break;
	default: /* CHAT */
		if (pr->n < 1)
			return pf_client_fail(c, -EINVAL, "a chat needs at least one message");
		plen = 4;
		for (size_t i = 0; i < pr->n; i++) {
			if (!pr->msgs[i].role || !pr->msgs[i].content)
				return pf_client_fail(c, -EINVAL, "chat message %zu has no role or content", i);
			plen += 8 + strlen(pr->msgs[i].role) + strlen(pr->msgs[i].content);
			if (plen > c->payload_n)
				break;
		}
		break;
	}
	for (size_t i = 0; i < params->n_stop; i++)
		stop_len += 1 + strlen(params->stop[i]);
	off_ids = align8(plen);
	off_stop = off_ids + params->n_stop_ids * 4;
	total = off_stop + stop_len;
	if (total > c->payload_n)
		return pf_client_fail(c, -E2BIG,
				      "the prompt and stop strings (%llu bytes) can never fit the %u-byte payload area; "
				      "connect with a larger payload_bytes",
				      (unsigned long long)total, c->payload_n);
	if (c->max_inflight && c->n_live >= c->max_inflight)
		return pf_client_fail(c, -EAGAIN, "%u requests in flight, pinferd's limit per client", c->n_live);

	reclaim(c);
	if (pf_ring_free(c->sq_n, c->sq_tail, &c->d2c->sq_head) == 0)
		return pf_client_fail(c, -EAGAIN, "submission ring full (%u entries not yet taken by pinferd)", c->sq_n);
	uint64_t saved_tail = c->pay_tail;
	int64_t base = payload_alloc(c, (uint32_t)total);
	if (base < 0)
		return pf_client_fail(c, -EAGAIN, "payload area full (%u bytes not yet taken by pinferd)", c->payload_n);
	uint64_t tag = c->next_tag + 1;
	if ((r = pf_client_live_add(c, tag))) {
		c->pay_tail = saved_tail;
		return pf_client_fail(c, r, "out of memory");
	}
	c->next_tag = tag;

	uint8_t *dst = c->payload + base;
	switch (pr->kind) {
	case PF_INPUT_TEXT:
		memcpy(dst, pr->text, plen);
		break;
	case PF_INPUT_TOKENS:
		memcpy(dst, pr->ids, plen);
		break;
	default: {
		uint8_t *p = dst;
		put_u32(p, (uint32_t)pr->n);
		p += 4;
		for (size_t i = 0; i < pr->n; i++) {
			const char *s[2] = { pr->msgs[i].role, pr->msgs[i].content };
			for (int k = 0; k < 2; k++) {
				size_t l = strlen(s[k]);
				put_u32(p, (uint32_t)l);
				memcpy(p + 4, s[k], l);
				p += 4 + l;
			}
		}
		break;
	}
	}
	if (params->n_stop_ids)
		memcpy(dst + off_ids, params->stop_ids, params->n_stop_ids * 4);
	uint8_t *sp = dst + off_stop;
	for (size_t i = 0; i < params->n_stop; i++) {
		size_t l = strlen(params->stop[i]);
		*sp++ = (uint8_t)l;
		memcpy(sp, params->stop[i], l);
		sp += l;
	}

	struct pf_sqe e = {
		.op = pr->op ? pr->op : PF_OP_SUBMIT,
		.input = pr->kind,
		.payload_len = (uint32_t)plen,
		.payload_off = (uint32_t)base,
		.deadline_ms = params->deadline_ms,
		.tag = tag,
		.seed = params->seed,
		.temperature = params->temperature,
		.top_p = params->top_p,
		.min_p = params->min_p,
		.repetition_penalty = params->repetition_penalty,
		.presence_penalty = params->presence_penalty,
		.frequency_penalty = params->frequency_penalty,
		.length_penalty = params->length_penalty,
		.top_k = params->top_k,
		.max_tokens = params->max_tokens,
		.min_tokens = params->min_tokens,
		.n = params->n,
		.beam_width = params->beam_width,
		.priority = params->priority,
		.top_logprobs = params->top_logprobs,
		.stop_off = params->n_stop ? (uint32_t)(base + off_stop) : 0,
		.stop_len = (uint32_t)stop_len,
		.stop_ids_off = params->n_stop_ids ? (uint32_t)(base + off_ids) : 0,
		.n_stop_ids = (uint32_t)params->n_stop_ids,
	};
	if (params->add_special)
		e.flags |= PF_SQE_ADD_SPECIAL;
	if (params->parse_special)
		e.flags |= PF_SQE_PARSE_SPECIAL;
	if (params->ignore_eos)
		e.flags |= PF_SQE_IGNORE_EOS;
	if (params->logprobs || params->top_logprobs > 0)
		e.flags |= PF_SQE_LOGPROBS;
	if (params->has_seed)
		e.flags |= PF_SQE_HAS_SEED;
	if (params->no_text)
		e.flags |= PF_SQE_NO_TEXT;
	sq_push(c, &e);
	if (ret_tag)
		*ret_tag = tag;
	return 0;
}

int pinfer_submit_text(struct pinfer *c, const char *text, size_t len, const struct pinfer_params *params,
		       uint64_t *ret_tag)
{
	if (!text && len)
		return pf_client_fail(c, -EINVAL, "text is NULL");
	if (len > UINT32_MAX)
		return pf_client_fail(c, -E2BIG, "prompt of %zu bytes is too long", len);
	struct prompt pr = { .kind = PF_INPUT_TEXT, .text = text ? text : "", .len = len };
	return submit(c, &pr, params, ret_tag);
}

int pinfer_submit_tokens(struct pinfer *c, const int32_t *ids, size_t n, const struct pinfer_params *params,
			 uint64_t *ret_tag)
{
	if (!ids && n)
		return pf_client_fail(c, -EINVAL, "ids is NULL");
	struct prompt pr = { .kind = PF_INPUT_TOKENS, .ids = ids, .n = n };
	return submit(c, &pr, params, ret_tag);
}

int pinfer_submit_chat(struct pinfer *c, const struct pinfer_message *msgs, size_t n,
		       const struct pinfer_params *params, uint64_t *ret_tag)
{
	if (!msgs && n)
		return pf_client_fail(c, -EINVAL, "msgs is NULL");
	struct prompt pr = { .kind = PF_INPUT_CHAT, .msgs = msgs, .n = n };
	return submit(c, &pr, params, ret_tag);
}

int pinfer_submit_tokenize(struct pinfer *c, const char *text, size_t len, const struct pinfer_params *params,
			   uint64_t *ret_tag)
{
	if (!text && len)
		return pf_client_fail(c, -EINVAL, "text is NULL");
	if (len > UINT32_MAX)
		return pf_client_fail(c, -E2BIG, "text of %zu bytes is too long", len);
	struct prompt pr = { .op = PF_OP_TOKENIZE, .kind = PF_INPUT_TEXT, .text = text ? text : "", .len = len };
	return submit(c, &pr, params, ret_tag);
}

int pinfer_submit_tokenize_chat(struct pinfer *c, const struct pinfer_message *msgs, size_t n, uint64_t *ret_tag)
{
	if (!msgs && n)
		return pf_client_fail(c, -EINVAL, "msgs is NULL");
	struct prompt pr = { .op = PF_OP_TOKENIZE, .kind = PF_INPUT_CHAT, .msgs = msgs, .n = n };
	return submit(c, &pr, NULL, ret_tag);
}

int pinfer_submit_detokenize(struct pinfer *c, const int32_t *ids, size_t n, const struct pinfer_params *params,
			     uint64_t *ret_tag)
{
	if (!ids && n)
		return pf_client_fail(c, -EINVAL, "ids is NULL");
	struct prompt pr = { .op = PF_OP_DETOKENIZE, .kind = PF_INPUT_TOKENS, .ids = ids, .n = n };
	return submit(c, &pr, params, ret_tag);
}

int pinfer_cancel(struct pinfer *c, uint64_t tag)
{
	if (c->gone)
		return -ECONNRESET;
	if (!pf_client_live_has(c, tag))
		return pf_client_fail(c, -ENOENT, "no request with tag %llu is in flight", (unsigned long long)tag);
	reclaim(c);
	if (pf_ring_free(c->sq_n, c->sq_tail, &c->d2c->sq_head) == 0)
		return pf_client_fail(c, -EAGAIN, "submission ring full (%u entries not yet taken by pinferd)", c->sq_n);
	struct pf_sqe e = { .op = PF_OP_CANCEL, .tag = tag };
	sq_push(c, &e);
	return 0;
}

int pf_client_submit_resume(struct pinfer *c, const struct pf_live_slot *slot)
{
	reclaim(c);
	if (pf_ring_free(c->sq_n, c->sq_tail, &c->d2c->sq_head) == 0)
		return -EAGAIN;
	struct pf_resume_payload pl = { .n_seqs = PF_RESUME_MAX_SEQS };
	memcpy(pl.token, slot->token, sizeof(pl.token));
	memcpy(pl.received, slot->received, sizeof(pl.received));
	int64_t off = payload_alloc(c, sizeof(pl));
	if (off < 0)
		return -EAGAIN;
	memcpy(c->payload + off, &pl, sizeof(pl));
	struct pf_sqe e = { .op = PF_OP_RESUME, .tag = slot->tag, .payload_off = (uint32_t)off,
			    .payload_len = sizeof(pl) };
	sq_push(c, &e);
	return 0;
}
