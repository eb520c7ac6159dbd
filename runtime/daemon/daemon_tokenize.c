/*
 * daemon_tokenize.c — prompts into token ids, and the worker thread that
 * does it for long ones.
 *
 * Tokenizing costs about 3 µs a byte: a 256 KiB prompt is most of a
 * second.  Done on the engine thread it stopped every client's tokens for
 * that long (twenty 1 MiB prompts froze another client's stream for 21.7
 * s).  So the work is bounded before it is done — a text longer than the
 * context's room times the longest token's bytes is refused at once — and
 * text or chat prompts longer than PF_TOKENIZE_INLINE_BYTES go to one worker
 * thread (not the control thread: registrations must not wait on it
 * either); the engine thread takes their token ids back between steps, so
 * its steps never wait for a tokenization.
 *
 * A job's life (struct pf_tokjob):
 *
 *   engine: queue ──► worker: tokenize ──► done list ──► engine: collect
 *              │                                              │
 *              └── d->tokjobs (every job not yet collected) ──┘
 *
 * The worker reads only the job's own copy of the submission and the
 * engine's tokenizer and chat template (immutable after load; tokenizing
 * keeps its scratch per call), never a session.  The engine thread alone
 * touches sessions: a client that cancels the request or dies marks its
 * jobs (pf_tokenize_cancel, pf_tokenize_forget) and collect drops their
 * results.  A job counts against its client's in-flight requests from
 * submission, so --max-inflight bounds what one client can queue.  Jobs
 * run in submission order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/daemon/daemon.h"
#include "runtime/text/chat.h"
#include "runtime/text/tok.h"
#include "shm/wait.h"

#define MAX_CHAT_MSGS 512

int pf_daemon_build_prompt(const struct pf_engine *eng, const struct pf_sqe *e, const uint8_t *in, int32_t max_tokens,
			   int32_t **ret, int32_t *ret_n, char *err, size_t errlen)
{
	const struct pf_tok *tok = pf_engine_tok(eng);
	char *text = NULL;
	size_t tlen = 0, n = 0;
	bool add_special = e->flags & PF_SQE_ADD_SPECIAL, parse_special = e->flags & PF_SQE_PARSE_SPECIAL;
	int r;

	if (e->input == PF_INPUT_TOKENS) {
		if (e->payload_len % 4 || e->payload_len == 0) {
			snprintf(err, errlen, "token input must be a non-empty array of int32 ids");
			return -EINVAL;
		}
		int32_t *ids = malloc(e->payload_len);
		if (!ids)
			return -ENOMEM;
		memcpy(ids, in, e->payload_len);
		*ret = ids;
		*ret_n = (int32_t)(e->payload_len / 4);
		return 0;
	}
	if (e->input == PF_INPUT_TEXT) {
		text = (char *)in;
		tlen = e->payload_len;
	} else if (e->input == PF_INPUT_CHAT) {
		const struct pf_chat *chat = pf_engine_chat(eng);
		struct pf_chat_msg msgs[MAX_CHAT_MSGS];
		uint32_t nm, off = 4;
		if (!chat) {
			snprintf(err, errlen, "the model has no chat template pinferd can render; send text instead");
			return -ENOTSUP;
		}
		if (e->payload_len < 4) {
			snprintf(err, errlen, "chat input too short");
			return -EINVAL;
		}
		memcpy(&nm, in, 4);
		if (nm == 0 || nm > MAX_CHAT_MSGS) {
			snprintf(err, errlen, "chat input must have 1..%d messages", MAX_CHAT_MSGS);
			return -EINVAL;
		}
		for (uint32_t i = 0; i < nm; i++) {
			uint32_t l;
			for (int part = 0; part < 2; part++) {
				if (e->payload_len - off < 4) {
					snprintf(err, errlen, "chat message %u runs past the payload", i);
					return -EINVAL;
				}
				memcpy(&l, in + off, 4);
				off += 4;
				if (l > e->payload_len - off) {
					snprintf(err, errlen, "chat message %u runs past the payload", i);
					return -EINVAL;
				}
				if (part == 0) {
					msgs[i].role = (const char *)in + off;
					msgs[i].role_len = l;
				} else {
					msgs[i].content = (const char *)in + off;
					msgs[i].content_len = l;
				}
				off += l;
			}
		}
		size_t need = 0;
		r = pf_chat_render(chat, msgs, nm, true, NULL, 0, &need, err, errlen);
		if (r && r != -ENOSPC)
			return r;
		text = malloc(need + 1);
		if (!text)
			return -ENOMEM;
		r = pf_chat_render(chat, msgs, nm, true, text, need + 1, &tlen, err, errlen);
		if (r) {
			free(text);
			return r;
		}
		/* the template's own markers are special tokens; the user's
		 * content is not re-scanned separately — it is part of the text,
		 * as llama.cpp's server does with its templated prompt */
		add_special = true;
		parse_special = true;
	} else {
		snprintf(err, errlen, "unknown input kind %u", e->input);
		return -EINVAL;
	}
	/* Bound the work before doing it: no token stands for more than
	 * max_piece bytes, so a text longer than the room left for the prompt
	 * times that cannot fit however it tokenizes — refused without paying
	 * for the tokenization (about 3 µs a byte). */
	int64_t room = (int64_t)pf_engine_max_model_len(eng) - (max_tokens > 0 ? max_tokens : 1);
	int64_t max_bytes = (room > 0 ? room : 0) * (int64_t)pf_tok_max_piece(tok);
	if ((int64_t)tlen > max_bytes) {
		snprintf(err, errlen, "prompt of %zu bytes cannot fit %lld tokens (context %d - max_tokens %d)", tlen,
			 (long long)(room > 0 ? room : 0), pf_engine_max_model_len(eng), max_tokens);
		if (text != (char *)in)
			free(text);
		return -E2BIG;
	}
	r = pf_tok_encode(tok, text, tlen, add_special, parse_special, NULL, 0, &n);
	int32_t *ids = (r == 0 || r == -ENOSPC) ? malloc(sizeof(int32_t) * (n + 1)) : NULL;
	if (ids)
		r = pf_tok_encode(tok, text, tlen, add_special, parse_special, ids, n, &n);
	if (text != (char *)in)
		free(text);
	if (!ids || r) {
		free(ids);
		snprintf(err, errlen, "cannot tokenize the prompt");
		return r ? r : -ENOMEM;
	}
	if (n == 0) {
		free(ids);
		snprintf(err, errlen, "the prompt is empty");
		return -EINVAL;
	}
	*ret = ids;
	*ret_n = (int32_t)n;
	return 0;
}

static void *worker_main(void *arg)
{
	struct pf_daemon *d = arg;
	struct pf_tokenizer *t = &d->tok;
	pthread_mutex_lock(&t->lock);
	for (;;) {
		while (!t->todo && !t->stop)
			pthread_cond_wait(&t->cond, &t->lock);
		if (t->stop)
			break;
		struct pf_tokjob *j = t->todo;
		t->todo = j->q_next;
		if (!t->todo)
			t->todo_tail = NULL;
		pthread_mutex_unlock(&t->lock);
		/* nobody waits for a cancelled one (its client left or gave up) */
		j->r = atomic_load(&j->cancelled) ? -ECANCELED : pf_daemon_build_prompt(d->engine, &j->e, j->in, j->p.sampling.max_tokens, &j->prompt, &j->n_prompt,
					      j->err, sizeof(j->err));
		pthread_mutex_lock(&t->lock);
		j->q_next = t->done;
		t->done = j;
		/* counted before the wake word moves: the engine's idle wait
		 * reads the word, then this count (see idle_wait) */
		atomic_fetch_add(&t->n_done, 1);
		atomic_fetch_add(&d->wake, 1);
		pf_futex_wake(&d->wake, 1);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int pf_tokenize_start(struct pf_daemon *d)
{
	struct pf_tokenizer *t = &d->tok;
	int r = pthread_mutex_init(&t->lock, NULL);
	if (r)
		return -r;
	r = pthread_cond_init(&t->cond, NULL);
	if (r) {
		pthread_mutex_destroy(&t->lock);
		return -r;
	}
	r = pthread_create(&t->thread, NULL, worker_main, d);
	if (r) {
		pthread_cond_destroy(&t->cond);
		pthread_mutex_destroy(&t->lock);
		return -r;
	}
	t->started = true;
	return 0;
}

static void job_free(struct pf_tokjob *j)
{
	free(j->in);
	free(j->prompt);
	free(j);
}

void pf_tokenize_stop(struct pf_daemon *d)
{
	struct pf_tokenizer *t = &d->tok;
	if (t->started) {
		pthread_mutex_lock(&t->lock);
		t->stop = true;
		pthread_cond_signal(&t->cond);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->thread, NULL);
		pthread_cond_destroy(&t->cond);
		pthread_mutex_destroy(&t->lock);
		t->started = false;
	}
	/* every job, queued, done or neither, is on d->tokjobs */
	while (d->tokjobs) {
		struct pf_tokjob *j = d->tokjobs;
		d->tokjobs = j->next;
		job_free(j);
	}
	d->n_tokjobs = 0;
}

bool pf_tokenize_wanted(const struct pf_daemon *d, const struct pf_sqe *e)
{
	return d->tok.started && (e->input == PF_INPUT_TEXT || e->input == PF_INPUT_CHAT) &&
	       e->payload_len > PF_TOKENIZE_INLINE_BYTES;
}

void pf_tokenize_queue(struct pf_session *s, const struct pf_sqe *e, const struct pf_request_params *p, uint8_t *in,
		       int64_t deadline_ns)
{
	struct pf_daemon *d = s->d;
	struct pf_tokjob *j = calloc(1, sizeof(*j));
	if (!j) {
		free(in);
		pf_session_post_error(s, e->tag, ENOMEM, "out of memory queuing the prompt");
		return;
	}
	j->s = s;
	j->tag = e->tag;
	j->deadline_ns = deadline_ns;
	j->p = *p;
	j->e = *e;
	j->in = in;
	j->next = d->tokjobs;
	if (d->tokjobs)
		d->tokjobs->prev = j;
	d->tokjobs = j;
	d->n_tokjobs++;
	s->n_inflight++;
	pthread_mutex_lock(&d->tok.lock);
	if (d->tok.todo_tail)
		d->tok.todo_tail->q_next = j;
	else
		d->tok.todo = j;
	d->tok.todo_tail = j;
	pthread_cond_signal(&d->tok.cond);
	pthread_mutex_unlock(&d->tok.lock);
}

/* The job's client no longer waits for it: answered, or gone. */
static void job_drop(struct pf_tokjob *j)
{
	if (j->s && !atomic_load(&j->cancelled))
		j->s->n_inflight--;
	atomic_store(&j->cancelled, true);
}

bool pf_tokenize_cancel(struct pf_session *s, uint64_t tag)
{
	for (struct pf_tokjob *j = s->d->tokjobs; j; j = j->next) {
		if (j->s != s || j->tag != tag || atomic_load(&j->cancelled))
			continue;
		job_drop(j);
		/* it never reached the engine: its end is reported here */
		struct pf_cqe f = { .kind = PF_CQ_FINISHED, .flags = PF_CQE_LAST, .tag = tag };
		f.u.fin.reason = PF_FINISHED_CANCELLED;
		pf_session_post(s, &f);
		return true;
	}
	return false;
}

void pf_tokenize_cancel_all(struct pf_session *s)
{
	for (struct pf_tokjob *j = s->d->tokjobs; j; j = j->next)
		if (j->s == s && !atomic_load(&j->cancelled))
			pf_tokenize_cancel(s, j->tag);
}

void pf_tokenize_forget(struct pf_session *s)
{
	for (struct pf_tokjob *j = s->d->tokjobs; j; j = j->next)
		if (j->s == s) {
			job_drop(j);
			j->s = NULL;
		}
}

void pf_tokenize_collect(struct pf_daemon *d)
{
	struct pf_tokenizer *t = &d->tok;
	if (!t->started || atomic_load(&t->n_done) == 0)
		return;
	pthread_mutex_lock(&t->lock);
	struct pf_tokjob *done = t->done;
	t->done = NULL;
	atomic_store(&t->n_done, 0);
	pthread_mutex_unlock(&t->lock);
	/* the list is newest first: reverse it, so they go on in order */
	struct pf_tokjob *fifo = NULL;
	while (done) {
		struct pf_tokjob *j = done;
		done = j->q_next;
		j->q_next = fifo;
		fifo = j;
	}
	while (fifo) {
		struct pf_tokjob *j = fifo;
		fifo = j->q_next;
		if (j->prev)
			j->prev->next = j->next;
		else
			d->tokjobs = j->next;
		if (j->next)
			j->next->prev = j->prev;
		d->n_tokjobs--;
		if (!atomic_load(&j->cancelled) && j->s) {
			struct pf_session *s = j->s;
			s->n_inflight--;
			if (j->r) {
				if (j->r == -EINVAL)
					s->bad_entries++;
				pf_session_post_error(s, j->tag, -j->r, j->err[0] ? j->err : strerror(-j->r));
			} else {
				pf_session_submit_prompt(s, j->tag, &j->p, j->prompt, j->n_prompt, j->deadline_ns);
			}
		}
		job_free(j);
	}
}
