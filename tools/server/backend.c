/*
 * backend.c — the daemon connection and the pump thread.
 *
 * One libpinfer connection serves every HTTP request (its tags keep them
 * apart).  The HTTP thread submits under backend.mu; the pump thread reads
 * every event under the same mutex, turns it into text or SSE chunks on its
 * request, and resumes the request's suspended HTTP connection.  Between
 * reads it sleeps in poll(2) on the connection's wake eventfd
 * (pinfer_wait_fd), the registration socket (daemon gone) and its own
 * eventfd, for at most 100 ms.
 *
 * Client disconnects.  A suspended MHD connection is not watched by MHD, so
 * the pump polls the socket of every parked request for POLLRDHUP/POLLHUP
 * every 250 ms; a closed one cancels the request's sequences in the daemon
 * (pinfer_cancel) and is resumed so that MHD closes it.  An unparked
 * connection that closes is seen by MHD, whose completion callback cancels
 * the same way (backend_abandon).
 *
 * Daemon gone.  Requests the daemon suspended on a drain (SUSPENDED event)
 * wait up to --resume-wait for pinfer_reconnect() to reattach them — their
 * streams then continue, no token repeated or skipped; every other live
 * request fails (503, or an error event if its stream had started).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "tools/server/server.h"

double srv_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int sbuf_add(struct sbuf *b, const void *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

void sbuf_free(struct sbuf *b)
{
	free(b->p);
	*b = (struct sbuf){ 0 };
}

struct srv_req *srv_req_new(enum srv_kind kind)
{
	struct srv_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->kind = kind;
	r->n = 1;
	r->logprobs = -1;
	r->fd = -1;
	r->refs = 1;
	pinfer_params_init(&r->params);
	r->created = time(NULL);
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[12];
	/* ids need to be unique, not secret: a clock fallback is enough */
	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		for (size_t i = 0; i < sizeof(rnd); i++)
			rnd[i] = (unsigned char)((uint64_t)(srv_now() * 1e9) >> (i % 8 * 8)) ^ (unsigned char)(uintptr_t)r;
	char *p = r->id + snprintf(r->id, sizeof(r->id), "%s", kind == SRV_CHAT ? "chatcmpl-" : "cmpl-");
	for (size_t i = 0; i < sizeof(rnd); i++) {
		*p++ = hex[rnd[i] >> 4];
		*p++ = hex[rnd[i] & 15];
	}
	*p = '\0';
	return r;
}

void srv_req_unref(struct srv_req *r)
{
	if (!r || --r->refs > 0)
		return;
	for (int i = 0; i < SRV_MAX_CHOICES; i++) {
		sbuf_free(&r->choice[i].text);
		sbuf_free(&r->choice[i].pend_text);
		json_decref(r->choice[i].lp);
	}
	for (int i = 0; i < SRV_MAX_PROMPTS; i++)
		free(r->prompt[i].ids);
	for (size_t i = 0; i < r->n_msgs; i++)
		free(r->msg_text ? r->msg_text[i] : NULL);
	free(r->msg_text);
	free(r->msgs);
	sbuf_free(&r->out);
	json_decref(r->body);
	json_decref(r->ids);
	free(r);
}

/* ---- the live list ----------------------------------------------------------------------- */

static void unlink_live(struct backend *b, struct srv_req *r)
{
	for (struct srv_req **pp = &b->live; *pp; pp = &(*pp)->next_live)
		if (*pp == r) {
			*pp = r->next_live;
			r->next_live = NULL;
			srv_req_unref(r);
			return;
		}
}

static struct srv_req *find_tag(struct backend *b, uint64_t tag, int *pi)
{
	for (struct srv_req *r = b->live; r; r = r->next_live)
		for (int i = 0; i < r->n_prompts; i++)
			if (r->prompt[i].live && r->prompt[i].tag == tag) {
				*pi = i;
				return r;
			}
	return NULL;
}

/* Let the HTTP side look at r again. */
static void wake(struct srv_req *r)
{
	if (r->parked) {
		r->parked = false;
		MHD_resume_connection(r->conn);
	}
}

void backend_park(struct backend *b, struct srv_req *r)
{
	(void)b;
	r->parked = true;
	MHD_suspend_connection(r->conn);
}

static void cancel_live(struct backend *b, struct srv_req *r)
{
	if (r->cancelled)
		return;
	r->cancelled = true;
	for (int i = 0; i < r->n_prompts; i++)
		if (r->prompt[i].live && b->c)
			pinfer_cancel(b->c, r->prompt[i].tag); /* -EAGAIN: the pump retries (cancelled stays false) */
}

void backend_abandon(struct backend *b, struct srv_req *r)
{
	r->client_gone = true;
	if (!r->done)
		cancel_live(b, r);
}

/* r failed as a whole: an error answer if none started, else an error event. */
static void fail_req(struct srv_req *r, int status, const char *msg)
{
	if (r->done)
		return;
	struct srv_err e;
	srv_err_set(&e, status, NULL, "%s", msg);
	if (r->stream && r->answered) {
		oai_chunk_error(r, &e);
	} else if (!r->answered) {
		r->err_status = e.status;
		r->err_type = e.type;
		snprintf(r->err_msg, sizeof(r->err_msg), "%s", e.msg);
	}
	r->done = r->ready = true;
}

static void finish_if_done(struct backend *b, struct srv_req *r)
{
	if (r->n_live > 0 || r->done)
		return;
	if (r->stream && !r->err_status)
		oai_chunk_end(r);
	r->done = r->ready = true;
}

/* ---- events ------------------------------------------------------------------------------- */

static void deliver(struct srv_req *r, int ci, const char *text, size_t len, json_t *lp)
{
	struct srv_choice *c = &r->choice[ci];
	if (r->stream) {
		if (len || lp)
			oai_chunk_text(r, ci, text, len, lp);
	} else {
		sbuf_add(&c->text, text, len);
		if (lp)
			oai_lp_append(r, c, lp, len);
	}
	json_decref(lp);
}

static void flush_pending(struct srv_req *r, int ci, const struct pinfer_event *lpev)
{
	struct srv_choice *c = &r->choice[ci];
	if (!c->pend)
		return;
	c->pend = false;
	json_t *lp = oai_lp_entry(r, c->pend_token, c->pend_logprob, c->pend_text.p ? c->pend_text.p : "",
				  c->pend_text.len, lpev ? lpev->top_token : NULL, lpev ? lpev->top_logprob : NULL,
				  lpev ? lpev->n_top : 0);
	deliver(r, ci, c->pend_text.p ? c->pend_text.p : "", c->pend_text.len, lp);
	c->pend_text.len = 0;
}

static int errno_status(int err)
{
	switch (err) {
	case EINVAL: case E2BIG: case ERANGE: case ENOTSUP: case EMSGSIZE: case EOVERFLOW: return 400;
	case EBUSY: case EAGAIN: case EDQUOT: case ENOSPC: return 429;
	case ESHUTDOWN: case ECONNRESET: return 503;
	default: return 500;
	}
}

static void dispatch(struct backend *b, const struct pinfer_event *ev)
{
	int pi;
	struct srv_req *r = find_tag(b, ev->tag, &pi);
	if (!r)
		return;
	struct srv_prompt *p = &r->prompt[pi];
	int ci = pi * r->n + (int)ev->index;
	if (ev->kind != PINFER_EVENT_ERROR && ev->kind != PINFER_EVENT_SUSPENDED &&
	    (ev->index >= (uint32_t)r->n || ci >= SRV_MAX_CHOICES))
		return;
	struct srv_choice *c = &r->choice[ci];
	switch (ev->kind) {
	case PINFER_EVENT_TOKEN:
		if (ev->token >= 0)
			c->tokens++;
		if (r->logprobs >= 0 && ev->token >= 0) {
			flush_pending(r, ci, NULL);
			c->pend = true;
			c->pend_token = ev->token;
			c->pend_logprob = ev->logprob;
			sbuf_add(&c->pend_text, ev->text, ev->text_len);
			if (r->logprobs == 0)
				flush_pending(r, ci, NULL); /* no alternatives will follow */
		} else {
			deliver(r, ci, ev->text, ev->text_len, NULL);
		}
		break;
	case PINFER_EVENT_LOGPROBS:
		flush_pending(r, ci, ev);
		break;
	case PINFER_EVENT_FINISHED:
		flush_pending(r, ci, NULL);
		deliver(r, ci, ev->text, ev->text_len, NULL);
		c->finished = true;
		c->reason = ev->reason;
		c->tokens = ev->usage.generated_tokens;
		p->prompt_tokens = ev->usage.prompt_tokens;
		p->cached_tokens = ev->usage.cached_tokens;
		if (r->stream)
			oai_chunk_finish(r, ci);
		if (ev->last) {
			p->live = false;
			r->n_live--;
		}
		break;
	case PINFER_EVENT_ERROR:
		p->live = false;
		r->n_live--;
		if (!r->done) {
			int st = errno_status(ev->error);
			fail_req(r, st, ev->message[0] ? ev->message : strerror(ev->error));
		}
		cancel_live(b, r); /* the request's other prompts */
		break;
	case PINFER_EVENT_SUSPENDED:
		p->suspended = true;
		break;
	case PINFER_EVENT_TOKENIZED: {
		size_t n;
		const int32_t *ids = pinfer_event_ids(b->c, &n);
		json_decref(r->ids);
		r->ids = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(r->ids, json_integer(ids[i]));
		p->live = false;
		r->n_live--;
		break;
	}
	case PINFER_EVENT_DETOKENIZED:
		sbuf_add(&c->text, ev->text, ev->text_len);
		p->live = false;
		r->n_live--;
		break;
	}
	r->ready = true;
	finish_if_done(b, r);
	/* non-streamed answers wait for the end; streams for anything to send */
	if (r->done || (r->stream && (!r->answered || r->out.len > r->out_off)))
		wake(r);
}

/* ---- connection management ------------------------------------------------------------------ */

static void note_model(struct backend *b)
{
	snprintf(b->model, sizeof(b->model), "%s", pinfer_model_name(b->c));
	b->max_model_len = pinfer_max_model_len(b->c);
	b->n_vocab = pinfer_n_vocab(b->c);
}

static void try_connect(struct backend *b)
{
	struct pinfer *c = NULL;
	b->conn.timeout_ms = 2000;
	b->conn.err = b->why;
	b->conn.err_len = sizeof(b->why);
	if (pinfer_connect(&b->conn, &c) == 0) {
		b->c = c;
		b->away_since = 0;
		note_model(b);
		if (b->cfg->log_level >= 1)
			fprintf(stderr, "pinfer-server: connected to pinferd (%s, model %s, context %d)\n",
				pinfer_socket_path(c), b->model, b->max_model_len);
	}
}

/* The daemon went away: keep what it suspended, fail the rest. */
static void daemon_gone(struct backend *b)
{
	snprintf(b->why, sizeof(b->why), "pinferd went away: %s", pinfer_last_error(b->c));
	if (b->cfg->log_level >= 1)
		fprintf(stderr, "pinfer-server: %s\n", b->why);
	b->away_since = srv_now();
	for (struct srv_req *r = b->live; r; r = r->next_live) {
		bool keep = false;
		for (int i = 0; i < r->n_prompts; i++)
			keep |= r->prompt[i].live && r->prompt[i].suspended;
		if (!keep && !r->done) {
			fail_req(r, 503, "pinferd went away while serving this request");
			wake(r);
		}
	}
}

static bool any_suspended(struct backend *b)
{
	for (struct srv_req *r = b->live; r; r = r->next_live)
		if (!r->done)
			for (int i = 0; i < r->n_prompts; i++)
				if (r->prompt[i].live && r->prompt[i].suspended)
					return true;
	return false;
}

static void reconnect(struct backend *b)
{
	if (b->c && any_suspended(b)) {
		int n = pinfer_reconnect(b->c);
		if (n >= 0) {
			if (b->cfg->log_level >= 1)
				fprintf(stderr, "pinfer-server: pinferd is back; %d requests reattached\n", n);
			b->away_since = 0;
			note_model(b);
			for (struct srv_req *r = b->live; r; r = r->next_live)
				for (int i = 0; i < r->n_prompts; i++)
					r->prompt[i].suspended = false;
			return;
		}
		if (srv_now() - b->away_since < b->cfg->resume_wait_s)
			return;
		for (struct srv_req *r = b->live; r; r = r->next_live)
			if (!r->done) {
				fail_req(r, 503, "pinferd did not come back within --resume-wait");
				wake(r);
			}
	}
	if (b->c) {
		/* nothing of the old connection can come back: forget its tags */
		for (struct srv_req *r = b->live; r; r = r->next_live) {
			for (int i = 0; i < r->n_prompts; i++)
				r->prompt[i].live = false;
			r->n_live = 0;
		}
		pinfer_close(b->c);
		b->c = NULL;
	}
	try_connect(b);
}

/* Parked connections whose client hung up: cancel, and let MHD close them. */
static void check_disconnects(struct backend *b)
{
	for (struct srv_req *r = b->live; r; r = r->next_live) {
		if (r->cancelled && r->n_live > 0 && !r->done && b->c) {
			r->cancelled = false;
			cancel_live(b, r); /* an earlier cancel found the ring full */
		}
		if (!r->parked || r->fd < 0 || r->client_gone)
			continue;
		struct pollfd pf = { .fd = r->fd, .events = POLLRDHUP };
		if (poll(&pf, 1, 0) == 1 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			if (b->cfg->log_level >= 2)
				fprintf(stderr, "pinfer-server: %s: client disconnected, cancelling\n", r->id);
			backend_abandon(b, r);
			wake(r);
		}
	}
}

static void *pump(void *arg)
{
	struct backend *b = arg;
	struct pinfer_event ev;
	double last_check = 0, last_try = 0;

	pthread_mutex_lock(&b->mu);
	while (!b->stop) {
		struct pollfd pf[3] = { { .fd = b->wake_fd, .events = POLLIN } };
		int nfd = 1, timeout = 100;
		bool alive = b->c && b->away_since == 0;
		if (alive) {
			int rc;
			int budget = 4096; /* let submitters in now and then */
			while (budget-- > 0 && (rc = pinfer_next(b->c, &ev, 0)) == 0)
				dispatch(b, &ev);
			if (budget > 0 && rc == -ECONNRESET) {
				daemon_gone(b);
				continue;
			}
		}
		double now = srv_now();
		if (now - last_check >= 0.25) {
			check_disconnects(b);
			backend_reap(b);
			last_check = now;
		}
		if (!alive && now - last_try >= 0.2) {
			reconnect(b);
			last_try = now;
			continue;
		}
		if (alive) {
			int wfd = pinfer_wait_fd(b->c);
			if (wfd == -EAGAIN)
				continue;
			if (wfd >= 0)
				pf[nfd++] = (struct pollfd){ .fd = wfd, .events = POLLIN };
			else
				timeout = 2; /* v1 daemon: no eventfd to sleep on */
			pf[nfd++] = (struct pollfd){ .fd = pinfer_fd(b->c), .events = POLLIN };
		}
		pthread_mutex_unlock(&b->mu);
		poll(pf, (nfds_t)nfd, timeout);
		if (pf[0].revents & POLLIN) {
			uint64_t x;
			if (read(b->wake_fd, &x, sizeof(x)) < 0) {
				/* nothing: the eventfd is non-blocking and a wake is only a hint */
			}
		}
		pthread_mutex_lock(&b->mu);
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

/* ---- submitting ---------------------------------------------------------------------------- */

int backend_submit(struct backend *b, struct srv_req *r, struct srv_err *e)
{
	if (!b->c || b->away_since != 0)
		return srv_err_set(e, 503, NULL, "pinferd is not reachable: %s", b->why);
	if (b->n_requests >= b->cfg->max_requests) {
		srv_err_set(e, 429, NULL, "too many requests in flight (limit %u); retry shortly", b->cfg->max_requests);
		return -1;
	}
	for (int i = 0; i < r->n_prompts; i++) {
		struct srv_prompt *p = &r->prompt[i];
		int rc;
		if (r->kind == SRV_TOKENIZE && r->msgs)
			rc = pinfer_submit_tokenize_chat(b->c, r->msgs, r->n_msgs, &p->tag);
		else if (r->kind == SRV_TOKENIZE)
			rc = pinfer_submit_tokenize(b->c, p->text, strlen(p->text), &r->params, &p->tag);
		else if (r->kind == SRV_DETOKENIZE)
			rc = pinfer_submit_detokenize(b->c, p->ids, p->n_ids, &r->params, &p->tag);
		else if (r->kind == SRV_CHAT)
			rc = pinfer_submit_chat(b->c, r->msgs, r->n_msgs, &r->params, &p->tag);
		else if (p->text)
			rc = pinfer_submit_text(b->c, p->text, strlen(p->text), &r->params, &p->tag);
		else
			rc = pinfer_submit_tokens(b->c, p->ids, p->n_ids, &r->params, &p->tag);
		if (rc < 0) {
			for (int j = 0; j < i; j++)
				pinfer_cancel(b->c, r->prompt[j].tag); /* its events are dropped: no request has the tag */
			r->n_live = 0;
			for (int j = 0; j < i; j++)
				r->prompt[j].live = false;
			if (rc == -EAGAIN)
				return srv_err_set(e, 429, NULL, "pinferd's queue for this server is full; retry shortly");
			if (rc == -EINVAL || rc == -E2BIG)
				return srv_err_set(e, 400, NULL, "%s", pinfer_last_error(b->c));
			return srv_err_set(e, 503, NULL, "pinferd refused the request: %s", pinfer_last_error(b->c));
		}
		p->live = true;
		r->n_live++;
	}
	b->n_requests++;
	r->admitted = true;
	r->refs++;
	r->next_live = b->live;
	b->live = r;
	if (r->stream)
		oai_chunk_start(r);
	if (r->echo && !r->stream)
		for (int i = 0; i < r->n_prompts * r->n; i++)
			sbuf_add(&r->choice[i].text, r->prompt[i / r->n].text, strlen(r->prompt[i / r->n].text));
	return 0;
}

/* The HTTP side is done with r (answered and completed, or the client left). */
void backend_release(struct backend *b, struct srv_req *r)
{
	if (!r->done)
		backend_abandon(b, r);
	if (r->admitted)
		b->n_requests--;
	r->admitted = false;
	/* it stays on the live list until its sequences end in the daemon */
}

/* Drop requests nobody waits for any more (called by the pump). */
void backend_reap(struct backend *b)
{
	struct srv_req *r = b->live, *next;
	for (; r; r = next) {
		next = r->next_live;
		if (r->refs == 1 && r->n_live == 0)
			unlink_live(b, r);
	}
}

const char *backend_name(const struct backend *b)
{
	return b->served[0] ? b->served : b->model;
}

int backend_start(struct backend *b, struct srv_config *cfg, const struct pinfer_connect_opts *conn,
		  const char *served)
{
	pthread_mutex_init(&b->mu, NULL);
	b->cfg = cfg;
	b->conn = *conn;
	/* one connection carries every HTTP request: rings for hundreds of them
	 * (pinferd's defaults suit one program's few requests) */
	if (!b->conn.sq_entries)
		b->conn.sq_entries = 1024;
	if (!b->conn.cq_entries)
		b->conn.cq_entries = 16384;
	if (!b->conn.payload_bytes)
		b->conn.payload_bytes = 16u << 20;
	snprintf(b->served, sizeof(b->served), "%s", served ? served : "");
	b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->wake_fd < 0)
		return -errno;
	snprintf(b->why, sizeof(b->why), "not connected yet");
	b->away_since = srv_now();
	try_connect(b);
	if (!b->c)
		fprintf(stderr, "pinfer-server: pinferd not reachable yet (%s); retrying\n", b->why);
	int rc = pthread_create(&b->thread, NULL, pump, b);
	return -rc;
}

void backend_stop(struct backend *b)
{
	pthread_mutex_lock(&b->mu);
	b->stop = true;
	pthread_mutex_unlock(&b->mu);
	uint64_t one = 1;
	if (write(b->wake_fd, &one, sizeof(one)) < 0) {
		/* the pump wakes within 100 ms anyway */
	}
	pthread_join(b->thread, NULL);
	pinfer_close(b->c);
	b->c = NULL;
}
