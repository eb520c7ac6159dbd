/*
 * events.c — libpinfer's completion side: reading the CQ ring, joining
 * MORE continuations into one event, sleeping until the daemon posts
 * (directly or through the application's own io_uring or epoll loop), and
 * the streaming conveniences built on pinfer_next.
 *
 * How pinfer_next sleeps, best first (chosen once per connection):
 *   io_uring FUTEX_WAIT    on d2c.cq_seq, linked to a timeout (Linux >= 6.7)
 *   io_uring POLL_ADD      on the daemon's wake eventfd (io_uring without
 *                          futex operations)
 *   futex(2)               where io_uring is unavailable or disabled
 *                          (PINFER_NO_IO_URING=1)
 * PINFER_WAIT=futex|eventfd forces one of the plain ways (eventfd: poll(2)
 * on the eventfd, or POLL_ADD through io_uring when it works).  The
 * daemon's wake matches what cq_waiting announces.
 */
#include <errno.h>
#include <liburing.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client_impl.h"
#include "shm/proto.h"
#include "shm/ring.h"
#include "shm/uring.h"
#include "shm/wait.h"

/* take_one converts kinds and reasons by value */
#define SAME(a, b) static_assert((int)(a) == (int)(b), #a " mirrors " #b)
SAME(PINFER_EVENT_TOKEN, PF_CQ_TOKENS);
SAME(PINFER_EVENT_FINISHED, PF_CQ_FINISHED);
SAME(PINFER_EVENT_ERROR, PF_CQ_ERROR);
SAME(PINFER_EVENT_LOGPROBS, PF_CQ_LOGPROBS);
SAME(PINFER_EVENT_SUSPENDED, PF_CQ_SUSPENDED);
SAME(PINFER_FINISH_STOP, PF_FINISHED_STOP);
SAME(PINFER_FINISH_LENGTH, PF_FINISHED_LENGTH);
SAME(PINFER_FINISH_CANCELLED, PF_FINISHED_CANCELLED);
SAME(PINFER_FINISH_ERROR, PF_FINISHED_ERROR);
SAME(PINFER_FINISH_DEADLINE, PF_FINISHED_DEADLINE);
SAME(PINFER_FINISH_STALLED, PF_FINISHED_STALLED);
#undef SAME
static_assert(PF_CQE_TEXT < 256, "evbuf starts at 256 bytes and must hold one entry's text");

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

static uint32_t cq_avail(struct pinfer *c)
{
	return pf_ring_avail(c->cq_n, c->cq_head, &c->d2c->cq_tail);
}

/* ---- reassembly ------------------------------------------------------------------ */

static struct pf_partial *partial_find(struct pinfer *c, uint64_t tag, uint8_t index)
{
	for (uint32_t i = 0; i < c->n_partials; i++)
		if (c->partials[i].tag == tag && c->partials[i].index == index)
			return &c->partials[i];
	return NULL;
}

static struct pf_partial *partial_open(struct pinfer *c, uint64_t tag, uint8_t index)
{
	if (c->n_partials == PF_CLIENT_MAX_PARTIALS)
		return NULL;
	if (c->n_partials == c->cap_partials) {
		uint32_t cap = c->cap_partials ? c->cap_partials * 2 : 8;
		struct pf_partial *p = realloc(c->partials, cap * sizeof(*p));
		if (!p)
			return NULL;
		c->partials = p;
		c->cap_partials = cap;
	}
	struct pf_partial *p = &c->partials[c->n_partials++];
	memset(p, 0, sizeof(*p));
	p->tag = tag;
	p->index = index;
	return p;
}

static void partial_drop(struct pinfer *c, struct pf_partial *p)
{
	free(p->buf);
	*p = c->partials[--c->n_partials];
}

/* A request ended: forget any chain it left open (a well-behaved daemon
 * leaves none; this bounds what a buggy one can make us keep). */
static void partials_drop_tag(struct pinfer *c, uint64_t tag)
{
	for (uint32_t i = 0; i < c->n_partials;) {
		if (c->partials[i].tag == tag)
			partial_drop(c, &c->partials[i]);
		else
			i++;
	}
}

static void partial_append(struct pf_partial *p, const uint8_t *t, size_t n)
{
	if (!n)
		return;
	if (p->len + n > PF_CLIENT_TEXT_MAX) {
		p->truncated = true;
		n = PF_CLIENT_TEXT_MAX - p->len;
	}
	if (p->len + n > p->cap) {
		size_t cap = p->cap ? p->cap : 256;
		while (cap < p->len + n)
			cap *= 2;
		char *b = realloc(p->buf, cap);
		if (!b) {
			p->truncated = true;
			return;
		}
		p->buf = b;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, t, n);
	p->len += n;
}

static void partial_append_lp(struct pf_partial *p, const struct pf_cqe *e)
{
	uint32_t n = e->u.lp.n < 8 ? e->u.lp.n : 8;
	for (uint32_t i = 0; i < n; i++) {
		if (p->n_top == PINFER_MAX_TOP_LOGPROBS) {
			p->truncated = true;
			return;
		}
		p->top_token[p->n_top] = e->u.lp.token[i];
		p->top_logprob[p->n_top] = e->u.lp.logprob[i];
		p->n_top++;
	}
}

/* Make evbuf hold len + 1 bytes; false when memory ran out. */
static bool evbuf_reserve(struct pinfer *c, size_t len)
{
	if (len + 1 <= c->evcap)
		return true;
	size_t cap = c->evcap;
	while (cap < len + 1)
		cap *= 2;
	char *b = realloc(c->evbuf, cap);
	if (!b)
		return false;
	c->evbuf = b;
	c->evcap = cap;
	return true;
}

/*
 * Consume one CQ entry.  Returns 1 with *ev filled when it completed an
 * event, 0 when it was absorbed (a continuation, or skipped), -EAGAIN when
 * the ring is empty, -EPROTO when the daemon opened too many chains.
 */
static int take_one(struct pinfer *c, struct pinfer_event *ev)
{
	struct pf_cqe e;
	if (!cq_avail(c))
		return -EAGAIN;
	/* copy first: the slot is the daemon's again once cq_head moves */
	memcpy(&e, &c->cq[c->cq_head & (c->cq_n - 1)], sizeof(e));
	c->cq_head++;
	pf_ring_consume(&c->c2d->cq_head, c->cq_head);

	const uint8_t *txt = NULL;
	size_t tl = e.text_len < PF_CQE_TEXT ? e.text_len : PF_CQE_TEXT;
	switch (e.kind) {
	case PF_CQ_TOKENS:
		txt = e.u.tok.text;
		break;
	case PF_CQ_FINISHED:
		txt = e.u.fin.text;
		break;
	case PF_CQ_ERROR:
	case PF_CQ_LOGPROBS:
		tl = 0;
		break;
	case PF_CQ_TEXT:
		txt = e.u.tok.text;
		break;
	case PF_CQ_IDS:
		/* ids travel through the text reassembly as raw bytes */
		txt = (const uint8_t *)e.u.ids.id;
		tl = (e.u.ids.n < PF_CQE_IDS ? e.u.ids.n : PF_CQE_IDS) * sizeof(int32_t);
		break;
	case PF_CQ_SUSPENDED: {
		/* the daemon saved the request on its way down: remember how to
		 * reattach (pinfer_reconnect) and tell the application */
		struct pf_live_slot *sl = pf_client_live_get(c, e.tag);
		if (!sl)
			return 0;
		sl->suspended = true;
		memcpy(sl->token, e.u.sus.token, sizeof(sl->token));
		partials_drop_tag(c, e.tag);
		memset(ev, 0, sizeof(*ev));
		ev->kind = PINFER_EVENT_SUSPENDED;
		ev->tag = e.tag;
		c->evbuf[0] = 0;
		c->ev_n_ids = 0;
		ev->text = c->evbuf;
		ev->logprob = NAN;
		return 1;
	}
	default:
		return 0; /* a kind this version does not know: skip it */
	}
	struct pf_partial *p = partial_find(c, e.tag, e.index);
	if ((e.flags & PF_CQE_MORE) && e.kind != PF_CQ_ERROR) {
		if (!p && !(p = partial_open(c, e.tag, e.index)))
			return pf_client_fail(c, -EPROTO, "pinferd left more than %d texts unfinished",
					      PF_CLIENT_MAX_PARTIALS);
		partial_append(p, txt, tl);
		if (e.kind == PF_CQ_LOGPROBS)
			partial_append_lp(p, &e);
		return 0;
	}

	/* the final entry of a chain (or a whole event): it gives the kind */
	memset(ev, 0, sizeof(*ev));
	ev->kind = (enum pinfer_event_kind)e.kind;
	ev->tag = e.tag;
	ev->index = e.index;
	size_t len = 0;
	if (p) {
		partial_append(p, txt, tl);
		if (e.kind == PF_CQ_LOGPROBS)
			partial_append_lp(p, &e);
		ev->truncated = p->truncated;
		len = p->len;
		if (!evbuf_reserve(c, len)) {
			ev->truncated = true;
			len = c->evcap - 1;
		}
		if (len)
			memcpy(c->evbuf, p->buf, len);
		ev->n_top = p->n_top;
		memcpy(ev->top_token, p->top_token, sizeof(ev->top_token));
		memcpy(ev->top_logprob, p->top_logprob, sizeof(ev->top_logprob));
		partial_drop(c, p);
	} else {
		len = tl; /* evcap >= 256 > PF_CQE_TEXT */
		if (len)
			memcpy(c->evbuf, txt, len);
		if (e.kind == PF_CQ_LOGPROBS) {
			ev->n_top = e.u.lp.n < 8 ? e.u.lp.n : 8;
			memcpy(ev->top_token, e.u.lp.token, ev->n_top * sizeof(int32_t));
			memcpy(ev->top_logprob, e.u.lp.logprob, ev->n_top * sizeof(float));
		}
	}
	c->evbuf[len] = 0;
	ev->text = c->evbuf;
	ev->text_len = len;
	ev->logprob = NAN;
	c->ev_n_ids = 0;
	switch (e.kind) {
	case PF_CQ_TOKENS: {
		ev->token = e.u.tok.token;
		ev->logprob = e.u.tok.logprob;
		/* count what we have, so a resume after a drain continues after it */
		struct pf_live_slot *sl = ev->token >= 0 && e.index < PF_RESUME_MAX_SEQS ? pf_client_live_get(c, e.tag) : NULL;
		if (sl)
			sl->received[e.index]++;
		break;
	}
	case PF_CQ_FINISHED:
		ev->reason = (enum pinfer_finish_reason)e.u.fin.reason;
		ev->usage.prompt_tokens = e.u.fin.prompt_tokens;
		ev->usage.cached_tokens = e.u.fin.cached_tokens;
		ev->usage.generated_tokens = e.u.fin.generated_tokens;
		ev->usage.queue_s = e.u.fin.queue_s;
		ev->usage.ttft_s = e.u.fin.ttft_s;
		ev->usage.decode_s = e.u.fin.decode_s;
		ev->beam_score = e.u.fin.beam_score;
		ev->last = e.flags & PF_CQE_LAST;
		break;
	case PF_CQ_TEXT:
		ev->last = e.flags & PF_CQE_LAST;
		break;
	case PF_CQ_IDS:
		c->ev_n_ids = len / sizeof(int32_t);
		ev->text = c->evbuf + len; /* "": the bytes are ids */
		ev->text_len = 0;
		ev->last = e.flags & PF_CQE_LAST;
		break;
	case PF_CQ_ERROR: {
		size_t ml = strnlen(e.u.err.message, sizeof(e.u.err.message));
		memcpy(ev->message, e.u.err.message, ml);
		ev->message[ml] = 0;
		ev->error = e.u.err.code > 0 ? e.u.err.code : EIO;
		ev->last = true;
		break;
	}
	default:
		break;
	}
	if (ev->last) {
		pf_client_live_remove(c, e.tag);
		partials_drop_tag(c, e.tag);
	}
	return 1;
}

/* ---- waiting ------------------------------------------------------------------------ */

static void set_waiting(struct pinfer *c, uint32_t v)
{
	/* the Dekker half that matters is in the callers' fence; clearing needs
	 * no ordering (a stale value only costs the daemon a spare wake) */
	atomic_store_explicit(&c->c2d->cq_waiting, v, memory_order_relaxed);
}

static uint32_t wait_bits(enum pf_client_wait how)
{
	return how == PF_CW_URING_EVENTFD || how == PF_CW_POLL_EVENTFD ? PF_WAIT_EVENTFD : PF_WAIT_FUTEX;
}

/*
 * Announce that we are about to sleep (the way `bits` says) and read the
 * futex word.  Returns true with *seq set when the CQ is still empty (sleep
 * on seq), false when entries arrived meanwhile (don't sleep; cq_waiting is
 * cleared again).
 */
static bool arm_wait(struct pinfer *c, uint32_t bits, uint32_t *seq)
{
	set_waiting(c, bits);
	/* seq_cst: our store of cq_waiting is ordered before the loads below —
	 * Dekker with the daemon's publish of cq_tail, seq_cst bump of cq_seq,
	 * load of cq_waiting: either it sees us waiting and wakes us, or we see
	 * its entries (or the bumped cq_seq, and the futex returns at once) */
	atomic_thread_fence(memory_order_seq_cst);
	/* acquire: pairs with the daemon's bump after it published cq_tail, so
	 * if we read the new seq we also see the new tail just below */
	*seq = atomic_load_explicit(&c->d2c->cq_seq, memory_order_acquire);
	if (cq_avail(c)) {
		set_waiting(c, 0);
		return false;
	}
	return true;
}

/* Clear the wake descriptor (non-blocking; the daemon's write may not have
 * happened).  It is a pipe from pinferd's of this version on (8 bytes a
 * wake, so one read takes several), an eventfd before (one read clears the
 * counter); a wake left in the pipe is only an early look at the ring. */
static void drain_eventfd(struct pinfer *c)
{
	uint64_t v[32];
	ssize_t n = read(c->efd, v, sizeof(v));
	(void)n;
}

/* Done waiting: clear our announcement (and the eventfd, if we asked for
 * it).  Called after every sleep and when a wait the application queued
 * (pinfer_prep_futex_wait / pinfer_wait_fd) has fired. */
static void disarm_wait(struct pinfer *c)
{
	uint32_t how = atomic_load_explicit(&c->c2d->cq_waiting, memory_order_relaxed);
	if (!how)
		return;
	set_waiting(c, 0);
	if ((how & PF_WAIT_EVENTFD) && c->efd >= 0)
		drain_eventfd(c);
}

void pf_client_pick_wait(struct pinfer *c)
{
	const char *force = getenv("PINFER_WAIT"), *spins = getenv("PINFER_SPINS");
	/* spinning first saves a sleep and a wake when the answer is near;
	 * PINFER_SPINS=0 sleeps at once (measurements, CPU-starved hosts) */
	c->spins = PF_CLIENT_SPINS;
	if (spins && *spins) {
		long v = strtol(spins, NULL, 10);
		c->spins = v < 0 ? 0 : v > 1000000 ? 1000000 : (int)v;
	}
	struct pf_uring_caps caps;
	pf_uring_probe(&caps);
	if (force && strcmp(force, "futex") == 0)
		c->wait_how = PF_CW_FUTEX;
	else if (force && strcmp(force, "eventfd") == 0 && c->efd >= 0)
		c->wait_how = caps.usable ? PF_CW_URING_EVENTFD : PF_CW_POLL_EVENTFD;
	else if (caps.usable && caps.futex)
		c->wait_how = PF_CW_URING_FUTEX;
	else if (caps.usable && c->efd >= 0)
		c->wait_how = PF_CW_URING_EVENTFD;
	else
		c->wait_how = PF_CW_FUTEX;
}

void pf_client_ring_free(struct pinfer *c)
{
	if (c->ring) {
		io_uring_queue_exit(c->ring);
		free(c->ring);
		c->ring = NULL;
	}
}

#define UD_WAIT 1
#define UD_TIMEOUT 2
#define UD_CANCEL 3

/*
 * Sleep through our own small ring: the wait (FUTEX_WAIT or POLL_ADD)
 * linked to a timeout, so one io_uring_enter sleeps with a bound and both
 * completions are reaped before we return — the ring is empty between
 * calls.  A signal cancels the pair and returns -EINTR.  Returns 0 (woken or
 * timed out: the caller re-checks), -EINTR, or another negative errno when
 * this way of sleeping does not work here (the caller falls back).
 */
static int uring_sleep(struct pinfer *c, uint32_t seq, int64_t slice_ns)
{
	if (!c->ring) {
		c->ring = calloc(1, sizeof(*c->ring));
		if (!c->ring)
			return -ENOMEM;
		int r = io_uring_queue_init(4, c->ring, IORING_SETUP_COOP_TASKRUN);
		if (r == -EINVAL)
			r = io_uring_queue_init(4, c->ring, 0);
		if (r < 0) {
			free(c->ring);
			c->ring = NULL;
			return r;
		}
	}
	struct io_uring *ring = c->ring;
	struct __kernel_timespec ts = { .tv_sec = slice_ns / 1000000000, .tv_nsec = slice_ns % 1000000000 };
	struct io_uring_sqe *w = io_uring_get_sqe(ring), *t = io_uring_get_sqe(ring);
	if (!w || !t)
		return -EBUSY; /* cannot happen: the ring is empty between calls */
	if (c->wait_how == PF_CW_URING_FUTEX)
		pf_uring_prep_futex_wait(w, &c->d2c->cq_seq, seq);
	else
		io_uring_prep_poll_add(w, c->efd, POLLIN);
	io_uring_sqe_set_data64(w, UD_WAIT);
	w->flags |= IOSQE_IO_LINK;
	io_uring_prep_link_timeout(t, &ts, 0);
	io_uring_sqe_set_data64(t, UD_TIMEOUT);
	int r = io_uring_submit(ring);
	if (r != 2)
		return r < 0 ? r : -EIO;
	int reaped = 0, wait_res = 0;
	bool interrupted = false, cancelled = false;
	while (reaped < 2) {
		struct io_uring_cqe *cqe;
		r = io_uring_wait_cqe(ring, &cqe);
		if (r == -EINTR) {
			/* a signal: stop sleeping now, but the ring must be empty
			 * before we return, so cancel and keep reaping */
			interrupted = true;
			if (!cancelled) {
				struct io_uring_sqe *x = io_uring_get_sqe(ring);
				if (x) {
					io_uring_prep_cancel64(x, UD_WAIT, 0);
					io_uring_sqe_set_data64(x, UD_CANCEL);
					io_uring_submit(ring);
				}
				cancelled = true;
			}
			continue;
		}
		if (r < 0)
			return r;
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		if (ud == UD_WAIT)
			wait_res = cqe->res;
		if (ud != UD_CANCEL)
			reaped++;
		io_uring_cqe_seen(ring, cqe);
	}
	if (interrupted)
		return -EINTR;
	/* -EAGAIN: the word had already changed; -ECANCELED: the timeout
	 * fired; -EINVAL/-EOPNOTSUPP: this kernel cannot do it after all */
	if (wait_res == -EINVAL || wait_res == -EOPNOTSUPP || wait_res == -EBADF)
		return wait_res;
	return 0;
}

/* Sleep until the daemon wakes us or slice_ns passes.  Returns 0 or -EINTR. */
static int sleep_once(struct pinfer *c, uint32_t seq, int64_t slice_ns)
{
	int r;
	switch (c->wait_how) {
	case PF_CW_URING_FUTEX:
	case PF_CW_URING_EVENTFD:
		r = uring_sleep(c, seq, slice_ns);
		if (r == 0 || r == -EINTR)
			return r;
		/* io_uring let us down here: fall back for good (the daemon
		 * honours whatever cq_waiting says next time) */
		pf_client_ring_free(c);
		c->wait_how = c->efd >= 0 && c->wait_how == PF_CW_URING_EVENTFD ? PF_CW_POLL_EVENTFD : PF_CW_FUTEX;
		return 0;
	case PF_CW_POLL_EVENTFD: {
		struct pollfd p = { .fd = c->efd, .events = POLLIN };
		r = poll(&p, 1, (int)((slice_ns + 999999) / 1000000));
		return r < 0 && errno == EINTR ? -EINTR : 0;
	}
	case PF_CW_FUTEX:
	default:
		r = pf_futex_wait(&c->d2c->cq_seq, seq, slice_ns);
		return r == -EINTR ? -EINTR : 0;
	}
}

/* pinfer_next; *ret_asked tells whether an -EINTR came from
 * pinfer_interrupt() (taken: it is reported once) rather than from any
 * signal that broke the sleep. */
static int next_event(struct pinfer *c, struct pinfer_event *ev, int timeout_ms, bool *ret_asked)
{
	int64_t deadline = timeout_ms > 0 ? now_ns() + (int64_t)timeout_ms * 1000000 : 0;
	int r;

	/* a wait queued by pinfer_prep_futex_wait or pinfer_wait_fd has fired
	 * (the contract says so); we are awake now */
	disarm_wait(c);
	if (c->resume_backlog && !c->gone)
		pf_client_resume_backlog(c);
	for (;;) {
		while ((r = take_one(c, ev)) == 0)
			;
		if (r == 1)
			return 0;
		if (r != -EAGAIN)
			return r;
		/* ring empty; everything the daemon posted before dying was read */
		if (c->gone)
			return -ECONNRESET;
		if (c->n_live == 0 && c->n_partials == 0)
			return pf_client_fail(c, -ENOMSG, "no request in flight: nothing to wait for");
		if (timeout_ms == 0) {
			/* polling callers learn of a dead daemon too, at a bounded
			 * syscall cost (one poll() per slice) */
			int64_t t = now_ns();
			if (t >= c->next_check_ns) {
				c->next_check_ns = t + (int64_t)PF_CLIENT_SLICE_MS * 1000000;
				if (pf_client_check_alive(c))
					continue; /* drain, then report */
			}
			return -EAGAIN;
		}
		for (int i = 0; i < c->spins; i++) {
			/* relaxed: only a hint; take_one re-reads with acquire */
			if (atomic_load_explicit(&c->d2c->cq_tail, memory_order_relaxed) != c->cq_head)
				break;
			cpu_relax();
		}
		if (cq_avail(c))
			continue;
		int64_t slice = (int64_t)PF_CLIENT_SLICE_MS * 1000000;
		if (deadline) {
			int64_t left = deadline - now_ns();
			if (left <= 0)
				return pf_client_fail(c, -ETIMEDOUT, "no completion within %d ms", timeout_ms);
			if (left < slice)
				slice = left;
		}
		uint32_t seq;
		if (!arm_wait(c, wait_bits(c->wait_how), &seq))
			continue;
		if (atomic_load_explicit(&c->d2c->daemon_state, memory_order_acquire) == PF_DAEMON_GONE) {
			disarm_wait(c);
			pf_client_check_alive(c);
			continue;
		}
		r = sleep_once(c, seq, slice);
		disarm_wait(c);
		/* checked after the sleep: an interrupt that came just before it
		 * is seen within one slice, also when its handler has SA_RESTART */
		if (atomic_exchange_explicit(&c->interrupt, 0, memory_order_acq_rel)) {
			*ret_asked = true;
			return pf_client_fail(c, -EINTR, "interrupted (pinfer_interrupt)");
		}
		if (r == -EINTR)
			return pf_client_fail(c, -EINTR, "interrupted by a signal");
		if (!cq_avail(c))
			pf_client_check_alive(c); /* sets gone: the loop drains, then reports */
	}
}

int pinfer_next(struct pinfer *c, struct pinfer_event *ev, int timeout_ms)
{
	bool asked = false;
	return next_event(c, ev, timeout_ms, &asked);
}

void pinfer_interrupt(struct pinfer *c)
{
	/* async-signal-safe: one lock-free atomic store, nothing else */
	atomic_store_explicit(&c->interrupt, 1, memory_order_release);
}

const int32_t *pinfer_event_ids(const struct pinfer *c, size_t *n)
{
	*n = c ? c->ev_n_ids : 0;
	return *n ? (const int32_t *)(const void *)c->evbuf : NULL;
}

int pinfer_poll_ready(struct pinfer *c)
{
	if (cq_avail(c))
		return 1;
	if (c->gone)
		return -ECONNRESET;
	if (atomic_load_explicit(&c->d2c->daemon_state, memory_order_acquire) == PF_DAEMON_GONE) {
		/* mark the connection gone, so pinfer_reconnect() takes it up */
		c->gone = true;
		return pf_client_fail(c, -ECONNRESET, "pinferd at %s shut down; reconnect once it is back", c->path);
	}
	return 0;
}

int pinfer_prep_futex_wait(struct pinfer *c, void *io_uring_sqe)
{
	uint32_t seq;
	if (c->gone)
		return -ECONNRESET;
	if (!arm_wait(c, PF_WAIT_FUTEX, &seq))
		return -EAGAIN;
	if (atomic_load_explicit(&c->d2c->daemon_state, memory_order_acquire) == PF_DAEMON_GONE) {
		set_waiting(c, 0);
		return pf_client_check_alive(c);
	}
	pf_uring_prep_futex_wait(io_uring_sqe, &c->d2c->cq_seq, seq);
	return 0;
}

int pinfer_wait_fd(struct pinfer *c)
{
	uint32_t seq;
	if (c->gone)
		return -ECONNRESET;
	if (c->efd < 0)
		return pf_client_fail(c, -ENOTSUP, "this pinferd sends no wake eventfd (protocol v1)");
	if (!arm_wait(c, PF_WAIT_EVENTFD, &seq))
		return -EAGAIN;
	if (atomic_load_explicit(&c->d2c->daemon_state, memory_order_acquire) == PF_DAEMON_GONE) {
		set_waiting(c, 0);
		return pf_client_check_alive(c);
	}
	return c->efd;
}

const char *pinfer_wait_method(const struct pinfer *c)
{
	switch (c->wait_how) {
	case PF_CW_URING_FUTEX:
		return "io_uring futex";
	case PF_CW_URING_EVENTFD:
		return "io_uring eventfd";
	case PF_CW_POLL_EVENTFD:
		return "eventfd";
	case PF_CW_FUTEX:
	default:
		return "futex";
	}
}

/* ---- conveniences ------------------------------------------------------------------- */

int pinfer_stream(struct pinfer *c, uint64_t tag, pinfer_event_cb cb, void *ctx)
{
	bool want_cancel = false, cancel_sent = false, interrupted = false, cb_cancelled = false;
	struct pinfer_event ev;
	int r;

	if (!pf_client_live_has(c, tag))
		return pf_client_fail(c, -ENOENT, "no request with tag %llu is in flight", (unsigned long long)tag);
	for (;;) {
		if (want_cancel && !cancel_sent) {
			r = pinfer_cancel(c, tag);
			/* -EAGAIN: ring full, retry after the next event; -ENOENT:
			 * it ended meanwhile and its last event is on its way */
			if (r == 0 || r == -ENOENT)
				cancel_sent = true;
			else if (r != -EAGAIN)
				return r;
		}
		bool asked = false;
		r = next_event(c, &ev, -1, &asked);
		if (r == -EINTR) {
			/* only pinfer_interrupt() cancels: a signal that merely broke
			 * the sleep — SIGSTOP/SIGCONT (Ctrl-Z, fg) makes an io_uring
			 * wait return -EINTR, a handler of anything else may too — is
			 * no reason to stop the user's reply */
			if (asked)
				interrupted = want_cancel = true;
			continue;
		}
		if (r)
			return r;
		if (cb && cb(ctx, &ev) && ev.tag == tag && !ev.last)
			cb_cancelled = want_cancel = true;
		if (ev.tag != tag || !ev.last)
			continue;
		/* an interrupt meant for this stream ends with it, rather than
		 * cancel the caller's next one */
		atomic_store_explicit(&c->interrupt, 0, memory_order_relaxed);
		if (ev.kind == PINFER_EVENT_ERROR) {
			pf_client_fail(c, -ev.error, "%s", ev.message);
			return -ev.error;
		}
		if (interrupted)
			return pf_client_fail(c, -EINTR, "interrupted: the request was cancelled");
		if (cb_cancelled)
			return pf_client_fail(c, -ECANCELED, "cancelled by the callback");
		return 0;
	}
}

int pinfer_generate(struct pinfer *c, const char *text, const struct pinfer_params *params, pinfer_event_cb cb,
		    void *ctx)
{
	uint64_t tag;
	int r = pinfer_submit_text(c, text, text ? strlen(text) : 0, params, &tag);
	return r ? r : pinfer_stream(c, tag, cb, ctx);
}

int pinfer_generate_chat(struct pinfer *c, const struct pinfer_message *msgs, size_t n,
			 const struct pinfer_params *params, pinfer_event_cb cb, void *ctx)
{
	uint64_t tag;
	int r = pinfer_submit_chat(c, msgs, n, params, &tag);
	return r ? r : pinfer_stream(c, tag, cb, ctx);
}
