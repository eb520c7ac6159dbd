/*
 * daemon_session.c — one registered client: its two shared segments, its
 * submissions (validated copies only) and its completions (with
 * back-pressure).  Engine thread only, except pf_session_create, which the
 * control thread calls before handing the session over.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "runtime/text/chat.h"
#include "runtime/daemon/daemon.h"
#include "shm/ring.h"
#include "runtime/text/tok.h"
#include "shm/wait.h"

#define MAX_PENDING 65536    /* completions held back for one client, at most */
#define MAX_BAD_ENTRIES 256  /* malformed submissions before we disconnect */
#define PF_BAD_FORGIVE_NS (600LL * 1000000000) /* a uid's malformed submissions are forgotten after 10 min without one */
#define MAX_CHAT_MSGS 512

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int make_segment(size_t bytes, const char *name, int *ret_fd, void **ret_map)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)bytes) < 0)
		goto fail;
	/* sealed against shrink/grow before anyone maps it: a client can
	 * never truncate it under us and SIGBUS the daemon */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		goto fail;
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		goto fail;
	*ret_fd = fd;
	*ret_map = m;
	return 0;
fail:;
	int r = -errno;
	close(fd);
	return r;
}

int pf_session_create(struct pf_daemon *d, int sock, pid_t pid, uid_t uid, gid_t gid, uint32_t sq, uint32_t cq,
		      uint32_t payload, struct pf_session **ret)
{
	struct pf_session *s = calloc(1, sizeof(*s));
	void *m;
	int r;
	if (!s)
		return -ENOMEM;
	s->d = d;
	s->sock = sock;
	s->pidfd = -1;
	s->c2d_fd = s->d2c_fd = s->efd = -1;
	s->pid = pid;
	s->uid = uid;
	s->gid = gid;
	s->sq_n = sq;
	s->cq_n = cq;
	s->payload_n = payload;
	s->c2d_bytes = pf_c2d_bytes(sq, payload);
	s->d2c_bytes = pf_d2c_bytes(cq);
	r = make_segment(s->c2d_bytes, "pinfer-c2d", &s->c2d_fd, &m);
	if (r)
		goto fail;
	s->c2d = m;
	r = make_segment(s->d2c_bytes, "pinfer-d2c", &s->d2c_fd, &m);
	if (r)
		goto fail;
	s->d2c = m;
	s->sq = (struct pf_sqe *)(s->c2d + 1);
	s->payload = (uint8_t *)(s->sq + sq);
	s->cq = (struct pf_cqe *)(s->d2c + 1);
	s->c2d->magic = PF_PROTO_MAGIC;
	s->c2d->version = PF_PROTO_VERSION;
	s->d2c->magic = PF_PROTO_MAGIC;
	s->d2c->version = PF_PROTO_VERSION;
	s->d2c->sq_entries = sq;
	s->d2c->cq_entries = cq;
	s->d2c->payload_bytes = payload;
	/* the client maps d2c read-only; FUTURE_WRITE makes that the only way
	 * it can map it, while our own writable mapping stays valid */
	if (fcntl(s->d2c_fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0 ||
	    fcntl(s->c2d_fd, F_ADD_SEALS, F_SEAL_SEAL) < 0) {
		r = -errno;
		goto fail;
	}
	*ret = s;
	return 0;
fail:
	pf_session_free(s);
	return r;
}

void pf_session_free(struct pf_session *s)
{
	if (!s)
		return;
	while (s->reqs) {
		struct pf_dreq *q = s->reqs;
		s->reqs = q->next;
		free(q);
	}
	if (s->c2d)
		munmap(s->c2d, s->c2d_bytes);
	if (s->d2c)
		munmap(s->d2c, s->d2c_bytes);
	if (s->c2d_fd >= 0)
		close(s->c2d_fd);
	if (s->d2c_fd >= 0)
		close(s->d2c_fd);
	if (s->efd >= 0)
		close(s->efd);
	free(s->pending);
	free(s);
}

/* ---- completions ------------------------------------------------------------- */

static void cq_write(struct pf_session *s, const struct pf_cqe *e)
{
	s->cq[s->cq_tail & (s->cq_n - 1)] = *e;
	s->cq_tail++;
	pf_ring_publish(&s->d2c->cq_tail, s->cq_tail);
	s->cq_dirty = true;
}

void pf_session_post(struct pf_session *s, const struct pf_cqe *e)
{
	if (atomic_load(&s->dead))
		return;
	if (s->n_pending == 0 && pf_ring_free(s->cq_n, s->cq_tail, &s->c2d->cq_head) > 0) {
		cq_write(s, e);
		return;
	}
	/* the CQ is full: hold it (tokens are never dropped); the session's
	 * sequences are paused by pf_session_flush so this stays bounded */
	if (s->n_pending == s->cap_pending) {
		uint32_t cap = s->cap_pending ? s->cap_pending * 2 : 64;
		struct pf_cqe *p = cap <= MAX_PENDING ? realloc(s->pending, cap * sizeof(*p)) : NULL;
		if (!p) {
			pf_daemon_log(s->d, PF_LOG_WARN, "client %llu (pid %d): %u completions unread, disconnecting",
				      (unsigned long long)s->id, s->pid, s->n_pending);
			atomic_store(&s->dead, true);
			shutdown(s->sock, SHUT_RDWR);
			return;
		}
		s->pending = p;
		s->cap_pending = cap;
	}
	s->pending[s->n_pending++] = *e;
}

static void set_paused(struct pf_session *s, bool paused)
{
	if (s->paused == paused || !s->d->engine)
		return;
	s->paused = paused;
	s->paused_since_ns = paused ? now_ns() : 0;
	for (struct pf_dreq *q = s->reqs; q; q = q->next)
		pf_engine_pause(s->d->engine, q->engine_id, paused);
}

void pf_session_flush(struct pf_session *s)
{
	if (atomic_load(&s->dead))
		return;
	uint32_t i = 0;
	uint32_t room = pf_ring_free(s->cq_n, s->cq_tail, &s->c2d->cq_head);
	for (; i < s->n_pending && room > 0; i++, room--)
		cq_write(s, &s->pending[i]);
	if (i) {
		memmove(s->pending, s->pending + i, (s->n_pending - i) * sizeof(*s->pending));
		s->n_pending -= i;
	}
	/* pause while a step's worth of output (a few entries per sequence)
	 * might not fit; resume with half the ring free */
	uint32_t need = (uint32_t)s->n_inflight * 16 + 16;
	if (need > s->cq_n / 2)
		need = s->cq_n / 2;
	if (s->n_pending || room < need)
		set_paused(s, true);
	else if (room >= s->cq_n / 2)
		set_paused(s, false);
}

void pf_session_wake(struct pf_session *s)
{
	if (!s->cq_dirty || atomic_load(&s->dead))
		return;
	s->cq_dirty = false;
	/* seq_cst: the bump (after publishing cq_tail) is ordered before the
	 * load of cq_waiting — the daemon's half of the Dekker handshake with
	 * the client's store of cq_waiting and re-check of cq_tail */
	atomic_fetch_add(&s->d2c->cq_seq, 1);
	uint32_t how = atomic_load(&s->c2d->cq_waiting);
	if (!how)
		return;
	/* a client may set any bits; PF_WAIT_EVENTFD only means something to
	 * a v2 session, which has the eventfd */
	bool efd = (how & PF_WAIT_EVENTFD) && s->efd >= 0;
	bool futex = (how & PF_WAIT_FUTEX) || !efd;
	pf_waker_add(&s->d->waker, futex ? &s->d2c->cq_seq : NULL, efd ? s->efd : -1);
}

void pf_session_post_error(struct pf_session *s, uint64_t tag, int code, const char *msg)
{
	struct pf_cqe e = { .kind = PF_CQ_ERROR, .tag = tag };
	e.u.err.code = code;
	snprintf(e.u.err.message, sizeof(e.u.err.message), "%s", msg);
	s->errors++;
	pf_session_post(s, &e);
}

/* Post `text` as continuation entries so that at most PF_CQE_TEXT bytes
 * remain for the final entry, whose text_len/text the caller fills. */
static size_t post_text_prefix(struct pf_session *s, uint64_t tag, uint8_t index, const char *text, size_t len)
{
	size_t off = 0;
	while (len - off > PF_CQE_TEXT) {
		struct pf_cqe e = { .kind = PF_CQ_TOKENS, .index = index, .flags = PF_CQE_MORE, .tag = tag };
		e.u.tok.token = -1;
		e.u.tok.logprob = NAN;
		e.text_len = PF_CQE_TEXT;
		memcpy(e.u.tok.text, text + off, PF_CQE_TEXT);
		pf_session_post(s, &e);
		off += PF_CQE_TEXT;
	}
	return off;
}

/* ---- engine callbacks ----------------------------------------------------------- */

/* The request's prompt, whole, once: at its first token (or its first
 * result, for beam search; or at its end when its length was not known at
 * the first token).  A preempted and recomputed request does not count it
 * again. */
static void count_prompt(struct pf_daemon *d, struct pf_dreq *q, int32_t n_prompt)
{
	if (q->prompt_counted || n_prompt <= 0)
		return;
	q->prompt_counted = true;
	d->acc.prompt_tokens_total += (uint64_t)n_prompt;
}

static void ev_token(void *ctx, uint64_t id, void *user, int32_t index, int32_t token, const char *text, size_t len,
		     const struct pf_sample_result *res)
{
	struct pf_dreq *q = user;
	struct pf_session *s = q->s;
	if (q->suspended)
		return;
	count_prompt(s->d, q, q->n_prompt);
	if (index >= 0 && index < PF_RESUME_MAX_SEQS) {
		/* one inter-token latency per token after a sequence's first, as
		 * vLLM observes it: the gaps of a sequence sum to its decode time */
		int64_t t = now_ns();
		if (q->last_token_ns[index] > 0)
			pf_daemon_stats_observe(s->d, PF_HIST_ITL, (double)(t - q->last_token_ns[index]) * 1e-9);
		q->last_token_ns[index] = t;
	}
	/* after a RESUME the engine replays the sequence's earlier tokens;
	 * the client already has the first skip[index] of them */
	if (res->replayed && index >= 0 && index < PF_RESUME_MAX_SEQS && res->gen_index < q->skip[index])
		return;
	/* the token's own entry comes last, with the end of its text, so a
	 * client sees the id once the whole text has arrived */
	size_t off = post_text_prefix(s, q->tag, (uint8_t)index, text, len);
	struct pf_cqe e = { .kind = PF_CQ_TOKENS, .index = (uint8_t)index, .tag = q->tag };
	e.u.tok.token = token;
	e.u.tok.logprob = res->logprob;
	e.text_len = (uint16_t)(len - off);
	if (len > off)
		memcpy(e.u.tok.text, text + off, len - off);
	pf_session_post(s, &e);
	s->tokens_out++;
	for (uint32_t i = 0; i < res->n_top; i += 8) {
		struct pf_cqe l = { .kind = PF_CQ_LOGPROBS, .index = (uint8_t)index, .tag = q->tag };
		/* chained so a client sees one event with every alternative */
		l.flags = i + 8 < res->n_top ? PF_CQE_MORE : 0;
		l.u.lp.n = res->n_top - i < 8 ? res->n_top - i : 8;
		for (uint32_t j = 0; j < l.u.lp.n; j++) {
			l.u.lp.token[j] = res->top[i + j].token;
			l.u.lp.logprob[j] = res->top[i + j].logprob;
		}
		pf_session_post(s, &l);
	}
}

int pf_uid_usage_attach(struct pf_daemon *d, struct pf_session *s)
{
	struct pf_uid_usage *u = d->uid_usage;
	while (u && u->uid != (uint32_t)s->uid)
		u = u->next;
	if (!u) {
		u = calloc(1, sizeof(*u));
		if (!u)
			return -ENOMEM;
		u->uid = (uint32_t)s->uid;
		u->next = d->uid_usage;
		d->uid_usage = u;
	}
	u->sessions++;
	s->usage = u;
	return 0;
}

void pf_uid_usage_detach(struct pf_daemon *d, struct pf_session *s)
{
	struct pf_uid_usage *u = s->usage;
	s->usage = NULL;
	if (!u || --u->sessions > 0 || u->bad_entries > 0)
		return; /* a uid with malformed submissions on record stays known */
	for (struct pf_uid_usage **pp = &d->uid_usage; *pp; pp = &(*pp)->next)
		if (*pp == u) {
			*pp = u->next;
			break;
		}
	free(u);
}

static void dreq_remove(struct pf_session *s, struct pf_dreq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		s->reqs = q->next;
	if (q->next)
		q->next->prev = q->prev;
	s->n_inflight--;
	s->quota_tokens -= q->quota_tokens;
	s->quota_blocks -= q->quota_blocks;
	if (s->usage) {
		s->usage->tokens -= q->quota_tokens;
		s->usage->blocks -= q->quota_blocks;
	}
	free(q);
}

static void post_finished(struct pf_session *s, struct pf_dreq *q, int32_t index, uint8_t reason, const char *text,
			  size_t len, const struct pf_usage *u, bool last)
{
	size_t off = post_text_prefix(s, q->tag, (uint8_t)index, text, len);
	struct pf_cqe e = { .kind = PF_CQ_FINISHED, .index = (uint8_t)index, .tag = q->tag };
	e.flags = last ? PF_CQE_LAST : 0;
	e.u.fin.reason = reason;
	e.u.fin.prompt_tokens = u->prompt_tokens;
	e.u.fin.cached_tokens = u->cached_tokens;
	e.u.fin.generated_tokens = u->generated_tokens;
	e.u.fin.queue_s = (float)u->queue_s;
	e.u.fin.ttft_s = (float)u->ttft_s;
	e.u.fin.decode_s = (float)u->decode_s;
	e.u.fin.beam_score = u->beam_score;
	e.text_len = (uint16_t)(len - off);
	if (len > off)
		memcpy(e.u.fin.text, text + off, len - off);
	pf_session_post(s, &e);
}

/* The engine's reasons are the wire's (engine.h) */
static_assert((int)PF_FINISH_STOP == (int)PF_FINISHED_STOP && (int)PF_FINISH_LENGTH == (int)PF_FINISHED_LENGTH &&
		      (int)PF_FINISH_CANCELLED == (int)PF_FINISHED_CANCELLED &&
		      (int)PF_FINISH_ERROR == (int)PF_FINISHED_ERROR &&
		      (int)PF_FINISH_DEADLINE == (int)PF_FINISHED_DEADLINE &&
		      (int)PF_FINISH_STALLED == (int)PF_FINISHED_STALLED,
	      "one finish-reason vocabulary");

static uint8_t finish_reason(enum pf_finish_reason why)
{
	return why <= PF_FINISH_STALLED ? (uint8_t)why : PF_FINISHED_ERROR;
}

/* The request's last FINISHED was posted: count it and forget it. */
static void dreq_done(struct pf_session *s, struct pf_dreq *q, uint8_t reason, const struct pf_usage *u)
{
	struct pf_daemon *d = s->d;
	d->acc.requests_finished[reason < PF_STATS_FIN_COUNT ? reason : PF_STATS_FIN_ERROR]++;
	if (u->generated_tokens > 0) {
		count_prompt(d, q, u->prompt_tokens);
		pf_daemon_stats_observe(d, PF_HIST_TTFT, u->ttft_s);
		pf_daemon_stats_observe(d, PF_HIST_E2E, u->ttft_s + u->decode_s);
	}
	dreq_remove(s, q);
}

static void ev_finish(void *ctx, uint64_t id, void *user, int32_t index, enum pf_finish_reason why, const char *text,
		      size_t len, const struct pf_usage *u)
{
	struct pf_dreq *q = user;
	struct pf_session *s = q->s;
	uint8_t reason = finish_reason(why);
	if (q->suspended) {
		/* saved to the state file; the client was told SUSPENDED */
		if (u->last)
			dreq_remove(s, q);
		return;
	}
	post_finished(s, q, index, reason, text, len, u, u->last);
	if (u->last)
		dreq_done(s, q, reason, u);
}

static void ev_beam(void *ctx, uint64_t id, void *user, int32_t rank, enum pf_finish_reason why,
		    const int32_t *tokens, int32_t n, const char *text, size_t len, const struct pf_usage *u)
{
	struct pf_dreq *q = user;
	struct pf_session *s = q->s;
	uint8_t reason = finish_reason(why);
	if (q->suspended) {
		if (u->last)
			dreq_remove(s, q);
		return;
	}
	count_prompt(s->d, q, u->prompt_tokens);
	/* one FINISHED per hypothesis (its text, reason and score, best
	 * first); the last one ends the request */
	post_finished(s, q, rank, reason, text, len, u, u->last);
	if (u->last)
		dreq_done(s, q, reason, u);
}

const struct pf_engine_events pf_daemon_events = {
	.on_token = ev_token,
	.on_finish = ev_finish,
	.on_beam = ev_beam,
};

/* ---- submissions ------------------------------------------------------------------ */

/* Copy [off, off+len) of the payload area into a fresh buffer, bounds-checked. */
static int copy_payload(const struct pf_session *s, uint32_t off, uint32_t len, uint8_t **ret)
{
	if ((uint64_t)off + len > s->payload_n)
		return -EINVAL;
	uint8_t *b = malloc(len ? len : 1);
	if (!b)
		return -ENOMEM;
	memcpy(b, s->payload + off, len);
	*ret = b;
	return 0;
}


/*
 * Per-client quotas on what a request may come to hold, counted at
 * submission from its worst case — prompt + max_tokens for every sequence,
 * and the KV blocks that takes without any sharing (the prompt's once, each
 * sequence's own, plus one partly filled block each) — so a client learns at
 * once, with numbers, instead of finding its request starved later.  Fills
 * the request's charges; returns 0 or -EDQUOT with a message.
 */
int pf_session_check_quota(const struct pf_session *s, int32_t n_prompt, const struct pf_request_params *p,
			   int64_t *ret_tokens, int64_t *ret_blocks, char *err, size_t errlen)
{
	const struct pf_daemon_config *cfg = &s->d->cfg;
	int64_t seqs = p->n > p->beam_width ? p->n : p->beam_width;
	if (seqs < 1)
		seqs = 1;
	int64_t gen = p->sampling.max_tokens > 0 ? p->sampling.max_tokens : 0;
	int64_t bs = cfg->block_size > 0 ? cfg->block_size : 16;
	int64_t tokens = n_prompt + gen * seqs;
	int64_t blocks = (n_prompt + bs - 1) / bs + seqs * ((gen + bs - 1) / bs + 1);
	*ret_tokens = tokens;
	*ret_blocks = blocks;
	/* (the completion's message holds 108 bytes: numbers first) */
	if (cfg->max_client_tokens > 0 && s->quota_tokens + tokens > cfg->max_client_tokens) {
		snprintf(err, errlen, "token quota: request needs %lld tokens, client holds %lld of %lld (--max-tokens-per-client)",
			 (long long)tokens, (long long)s->quota_tokens, (long long)cfg->max_client_tokens);
		return -EDQUOT;
	}
	if (cfg->max_client_blocks > 0 && s->quota_blocks + blocks > cfg->max_client_blocks) {
		snprintf(err, errlen, "KV block quota: request needs %lld blocks, client holds %lld of %lld (--max-blocks-per-client)",
			 (long long)blocks, (long long)s->quota_blocks, (long long)cfg->max_client_blocks);
		return -EDQUOT;
	}
	/* the same over every client of the user: one process opening many
	 * connections gets no more than one user's share */
	const struct pf_uid_usage *u = s->usage;
	if (!u) {
		snprintf(err, errlen, "pinferd is out of memory for this client's accounting");
		return -ENOMEM;
	}
	int64_t ut = pf_daemon_uid_limit(cfg, (uint32_t)s->uid, cfg->max_uid_tokens);
	if (ut > 0 && u->tokens + tokens > ut) {
		snprintf(err, errlen, "uid token quota: request needs %lld tokens, uid %u holds %lld of %lld (--max-tokens-per-uid)",
			 (long long)tokens, (unsigned)s->uid, (long long)u->tokens, (long long)ut);
		return -EDQUOT;
	}
	int64_t ub = pf_daemon_uid_limit(cfg, (uint32_t)s->uid, cfg->max_uid_blocks);
	if (ub > 0 && u->blocks + blocks > ub) {
		snprintf(err, errlen, "uid KV block quota: request needs %lld blocks, uid %u holds %lld of %lld (--max-blocks-per-uid)",
			 (long long)blocks, (unsigned)s->uid, (long long)u->blocks, (long long)ub);
		return -EDQUOT;
	}
	return 0;
}

void pf_session_charge(struct pf_session *s, struct pf_dreq *q, int64_t tokens, int64_t blocks)
{
	q->quota_tokens = tokens;
	q->quota_blocks = blocks;
	s->quota_tokens += tokens;
	s->quota_blocks += blocks;
	if (s->usage) {
		s->usage->tokens += tokens;
		s->usage->blocks += blocks;
	}
}

void pf_session_add_req(struct pf_session *s, struct pf_dreq *q)
{
	q->prev = NULL;
	q->next = s->reqs;
	if (s->reqs)
		s->reqs->prev = q;
	s->reqs = q;
	s->n_inflight++;
}

void pf_session_submit_prompt(struct pf_session *s, uint64_t tag, const struct pf_request_params *p,
			      const int32_t *prompt, int32_t n_prompt, int64_t deadline_ns)
{
	char err[256] = "";
	int64_t q_tokens = 0, q_blocks = 0;
	int r = pf_session_check_quota(s, n_prompt, p, &q_tokens, &q_blocks, err, sizeof(err));
	struct pf_dreq *q = NULL;
	if (!r) {
		q = calloc(1, sizeof(*q));
		r = q ? 0 : -ENOMEM;
	}
	if (!r) {
		q->s = s;
		q->tag = tag;
		q->n_prompt = n_prompt;
		q->deadline_ns = deadline_ns;
		r = pf_engine_submit(s->d->engine, prompt, n_prompt, p, q, &q->engine_id, err, sizeof(err));
	}
	if (r) {
		free(q);
		if (r == -EINVAL)
			s->bad_entries++;
		pf_session_post_error(s, tag, -r, err[0] ? err : strerror(-r));
		return;
	}
	pf_session_charge(s, q, q_tokens, q_blocks);
	pf_session_add_req(s, q);
	s->tokens_in += (uint64_t)n_prompt;
	if (s->paused)
		pf_engine_pause(s->d->engine, q->engine_id, true);
}

static void handle_submit(struct pf_session *s, const struct pf_sqe *e)
{
	char err[256] = "";
	uint8_t *in = NULL, *stops = NULL, *sid = NULL;
	int32_t *prompt = NULL, n_prompt = 0;
	struct pf_request_params p;
	int r;

	if (atomic_load(&s->d->draining)) {
		pf_session_post_error(s, e->tag, ESHUTDOWN, "pinferd is draining; resubmit to the restarted daemon");
		return;
	}
	if (s->n_inflight >= s->d->cfg.max_inflight) {
		snprintf(err, sizeof(err), "too many requests in flight (limit %d per client)", s->d->cfg.max_inflight);
		pf_session_post_error(s, e->tag, EBUSY, err);
		return;
	}
	if (copy_payload(s, e->payload_off, e->payload_len, &in) ||
	    copy_payload(s, e->stop_off, e->stop_len, &stops) ||
	    e->n_stop_ids > 16 || copy_payload(s, e->stop_ids_off, e->n_stop_ids * 4, &sid)) {
		s->bad_entries++;
		pf_session_post_error(s, e->tag, EINVAL, "payload, stop strings or stop ids lie outside the payload area");
		goto out;
	}
	if (!s->d->engine) {
		/* echo backend: answer at once, max_tokens tokens cycling through
		 * the prompt's bytes — the IPC path alone, without a model */
		int32_t n = e->max_tokens > 0 ? e->max_tokens : 1;
		for (int32_t i = 0; i < n; i++) {
			struct pf_cqe t = { .kind = PF_CQ_TOKENS, .tag = e->tag, .text_len = e->payload_len ? 1 : 0 };
			t.u.tok.token = e->payload_len ? in[i % e->payload_len] : 0;
			t.u.tok.logprob = NAN;
			t.u.tok.text[0] = (uint8_t)t.u.tok.token;
			pf_session_post(s, &t);
		}
		struct pf_cqe f = { .kind = PF_CQ_FINISHED, .flags = PF_CQE_LAST, .tag = e->tag };
		f.u.fin.reason = PF_FINISHED_LENGTH;
		f.u.fin.prompt_tokens = (int32_t)e->payload_len;
		f.u.fin.generated_tokens = n;
		pf_session_post(s, &f);
		s->tokens_out += (uint64_t)n;
		goto out;
	}
	int32_t ids[PF_WIRE_MAX_STOP_IDS];
	memcpy(ids, sid, e->n_stop_ids * 4);
	r = pf_sqe_to_params(e, stops, e->stop_len, ids, &p, err, sizeof(err));
	int64_t deadline_ns = e->deadline_ms ? now_ns() + (int64_t)e->deadline_ms * 1000000 : 0;
	if (!r && pf_tokenize_wanted(s->d, e)) {
		/* a long text: tokenized by the worker, submitted when it is done
		 * (pf_tokenize_collect); this thread goes on stepping meanwhile */
		pf_tokenize_queue(s, e, &p, in, deadline_ns);
		in = NULL;
		goto out;
	}
	if (!r)
		r = pf_daemon_build_prompt(s->d->engine, e, in, p.sampling.max_tokens, &prompt, &n_prompt, err,
					   sizeof(err));
	if (r) {
		if (r == -EINVAL)
			s->bad_entries++;
		pf_session_post_error(s, e->tag, -r, err[0] ? err : strerror(-r));
		goto out;
	}
	pf_session_submit_prompt(s, e->tag, &p, prompt, n_prompt, deadline_ns);
out:
	free(prompt);
	free(in);
	free(stops);
	free(sid);
}

/* ---- v3: the tokenizer as a service ----------------------------------------------- */

static void post_ids(struct pf_session *s, uint64_t tag, const int32_t *ids, size_t n)
{
	size_t off = 0;
	do {
		size_t k = n - off < PF_CQE_IDS ? n - off : PF_CQE_IDS;
		struct pf_cqe e = { .kind = PF_CQ_IDS, .tag = tag };
		e.flags = off + k < n ? PF_CQE_MORE : PF_CQE_LAST;
		e.u.ids.n = (uint32_t)k;
		memcpy(e.u.ids.id, ids + off, k * sizeof(int32_t));
		pf_session_post(s, &e);
		off += k;
	} while (off < n);
}

static void post_text(struct pf_session *s, uint64_t tag, const char *text, size_t len)
{
	size_t off = 0;
	do {
		size_t k = len - off < PF_CQE_TEXT ? len - off : PF_CQE_TEXT;
		struct pf_cqe e = { .kind = PF_CQ_TEXT, .tag = tag, .text_len = (uint16_t)k };
		e.flags = off + k < len ? PF_CQE_MORE : PF_CQE_LAST;
		e.u.tok.token = -1;
		memcpy(e.u.tok.text, text + off, k);
		pf_session_post(s, &e);
		off += k;
	} while (off < len);
}

/* Text of ids as generation streams it: well-formed UTF-8 (pf_detok). */
static int detokenize(const struct pf_tok *tok, const int32_t *ids, size_t n, bool special, char **ret, size_t *ret_len,
		      char *err, size_t errlen)
{
	size_t step = pf_detok_max_out(tok), len = 0, cap = 4 * step + 4096, got;
	char *buf = malloc(cap);
	struct pf_detok d;
	if (!buf)
		return -ENOMEM;
	pf_detok_init(&d, tok, special);
	for (size_t i = 0; i <= n; i++) {
		if (cap - len < step) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		if (i == n) {
			if (pf_detok_flush(&d, buf + len, step, &got) == 0)
				len += got;
			break;
		}
		if (pf_detok_push(&d, ids[i], buf + len, step, &got)) {
			free(buf);
			snprintf(err, errlen, "token %zu (%d) is outside the vocabulary [0, %d)", i, ids[i],
				 pf_tok_n_vocab(tok));
			return -EINVAL;
		}
		len += got;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static void handle_tokenize(struct pf_session *s, const struct pf_sqe *e)
{
	char err[256] = "";
	uint8_t *in = NULL;
	int32_t *ids = NULL, n = 0;
	char *text = NULL;
	size_t tlen = 0;
	int r;

	if (copy_payload(s, e->payload_off, e->payload_len, &in)) {
		s->bad_entries++;
		pf_session_post_error(s, e->tag, EINVAL, "payload lies outside the payload area");
		return;
	}
	if (!s->d->engine) {
		pf_session_post_error(s, e->tag, ENOTSUP, "no model loaded (echo backend): nothing to tokenize with");
		goto out;
	}
	if (e->op == PF_OP_TOKENIZE) {
		r = pf_daemon_build_prompt(s->d->engine, e, in, 0, &ids, &n, err, sizeof(err));
		if (r == 0)
			post_ids(s, e->tag, ids, (size_t)n);
	} else if (e->input != PF_INPUT_TOKENS || e->payload_len % 4 || e->payload_len == 0) {
		snprintf(err, sizeof(err), "detokenize takes a non-empty array of int32 token ids");
		r = -EINVAL;
	} else {
		r = detokenize(pf_engine_tok(s->d->engine), (const int32_t *)in, e->payload_len / 4,
			       e->flags & PF_SQE_PARSE_SPECIAL, &text, &tlen, err, sizeof(err));
		if (r == 0)
			post_text(s, e->tag, text, tlen);
	}
	if (r)
		pf_session_post_error(s, e->tag, -r, err[0] ? err : strerror(-r));
out:
	free(ids);
	free(text);
	free(in);
}

int pf_session_poll_sq(struct pf_session *s)
{
	if (atomic_load(&s->dead))
		return 0;
	uint32_t n = pf_ring_avail(s->sq_n, s->sq_head, &s->c2d->sq_tail);
	for (uint32_t i = 0; i < n; i++) {
		/* one copy out of shared memory; only the copy is looked at */
		struct pf_sqe e = s->sq[(s->sq_head + i) & (s->sq_n - 1)];
		if (e.op == PF_OP_SUBMIT) {
			handle_submit(s, &e);
		} else if (e.op == PF_OP_RESUME && s->version >= 2) {
			pf_daemon_resume(s, &e);
		} else if ((e.op == PF_OP_TOKENIZE || e.op == PF_OP_DETOKENIZE) && s->version >= 3) {
			handle_tokenize(s, &e);
		} else if (e.op == PF_OP_CANCEL) {
			if (pf_tokenize_cancel(s, e.tag))
				continue; /* still being tokenized: answered there */
			for (struct pf_dreq *q = s->reqs; q; q = q->next)
				if (q->tag == e.tag) {
					pf_engine_cancel(s->d->engine, q->engine_id, PF_FINISH_CANCELLED);
					break;
				}
		} else {
			s->bad_entries++;
			pf_session_post_error(s, e.tag, EINVAL, "unknown submission op");
		}
	}
	s->sq_head += n;
	if (n)
		pf_ring_consume(&s->d2c->sq_head, s->sq_head);
	/* the limit holds per uid too, and survives a reconnect: a client that
	 * was disconnected for malformed submissions and comes back goes again
	 * at its next one (until PF_BAD_FORGIVE_NS pass without any) */
	struct pf_uid_usage *u = s->usage;
	if (u && s->bad_entries > s->bad_counted) {
		int64_t t = now_ns();
		if (t - u->bad_last_ns > PF_BAD_FORGIVE_NS)
			u->bad_entries = 0;
		u->bad_entries += s->bad_entries - s->bad_counted;
		u->bad_last_ns = t;
		s->bad_counted = s->bad_entries;
	}
	if ((s->bad_entries > MAX_BAD_ENTRIES || (u && u->bad_entries > MAX_BAD_ENTRIES && s->bad_entries > 0)) &&
	    !atomic_load(&s->dead)) {
		pf_daemon_log(s->d, PF_LOG_WARN, "client %llu (pid %d, uid %u): %d malformed submissions (%d by its uid), disconnecting",
			      (unsigned long long)s->id, s->pid, (unsigned)s->uid, s->bad_entries, u ? u->bad_entries : 0);
		atomic_store(&s->dead, true);
		shutdown(s->sock, SHUT_RDWR);
	}
	return (int)n;
}

void pf_session_cancel_all(struct pf_session *s, enum pf_finish_reason why)
{
	if (!s->d->engine)
		return;
	pf_tokenize_cancel_all(s);
	/* pf_engine_cancel reports through ev_finish, which frees the dreq */
	while (s->reqs) {
		struct pf_dreq *q = s->reqs;
		if (pf_engine_cancel(s->d->engine, q->engine_id, why) == -ENOENT)
			dreq_remove(s, q);
	}
}
