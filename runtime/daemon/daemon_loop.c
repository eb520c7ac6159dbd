/*
 * daemon_loop.c — pinferd's engine thread: every iteration takes new and
 * dead sessions from the inbox, polls every SQ ring, runs one engine step,
 * posts and flushes completions and wakes the clients that sleep.  With
 * nothing to do it sleeps on the clients' doorbell words (FUTEX_WAITV).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/daemon/daemon.h"
#include "shm/ring.h"
#include "shm/wait.h"

#include <systemd/sd-daemon.h>

#define IDLE_TIMEOUT_NS 200000000LL /* wake at least this often to check deadlines */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool has_work(struct pf_daemon *d)
{
	return d->engine && pf_engine_has_work(d->engine);
}

/* Requests the drain waits for: in the engine, or still being tokenized. */
static bool in_flight(struct pf_daemon *d)
{
	return has_work(d) || d->n_tokjobs > 0;
}

static void take_inbox(struct pf_daemon *d)
{
	pthread_mutex_lock(&d->lock);
	struct pf_session *nw = d->inbox_new, *dead = d->inbox_dead;
	struct pf_daemon_config *reload = d->reload;
	d->inbox_new = d->inbox_dead = NULL;
	d->reload = NULL;
	pthread_mutex_unlock(&d->lock);
	/* SIGHUP's run-time options, between steps */
	pf_daemon_apply_reload(d, reload);
	while (nw) {
		struct pf_session *s = nw;
		nw = s->next;
		s->next = d->sessions;
		d->sessions = s;
		d->n_sessions++;
		/* (without it its requests are refused: check_quota) */
		if (pf_uid_usage_attach(d, s))
			pf_daemon_log(d, PF_LOG_ERROR, "client %llu: out of memory for its uid's accounting",
				      (unsigned long long)s->id);
	}
	while (dead) {
		struct pf_session *s = dead;
		dead = s->dead_next;
		/* a dead client's sequences are cancelled in this iteration,
		 * before the next step, and their blocks return to the pool */
		int32_t n_req = s->n_inflight;
		pf_session_cancel_all(s, PF_FINISH_CANCELLED);
		pf_tokenize_forget(s); /* its prompts still in the worker */
		struct pf_engine_stats st = { 0 };
		if (d->engine)
			pf_engine_get_stats(d->engine, &st);
		pf_daemon_log(d, PF_LOG_INFO, "client %llu gone: %d requests cancelled; KV blocks in use %d of %d",
			      (unsigned long long)s->id, n_req, st.kv.n_used, st.kv.n_blocks);
		for (struct pf_session **pp = &d->sessions; *pp; pp = &(*pp)->next)
			if (*pp == s) {
				*pp = s->next;
				d->n_sessions--;
				break;
			}
		pf_uid_usage_detach(d, s);
		if (s->sock >= 0)
			close(s->sock);
		if (s->pidfd >= 0)
			close(s->pidfd);
		pf_session_free(s);
	}
}

/* Deadlines and stalled clients. */
static void check_timeouts(struct pf_daemon *d, int64_t now)
{
	for (struct pf_session *s = d->sessions; s; s = s->next) {
		if (s->paused && s->reqs && d->cfg.stall_timeout_s > 0 &&
		    now - s->paused_since_ns >= (int64_t)d->cfg.stall_timeout_s * 1000000000) {
			pf_daemon_log(d, PF_LOG_WARN, "client %llu (pid %d) has not read its completions for %d s: cancelling its requests",
				      (unsigned long long)s->id, s->pid, d->cfg.stall_timeout_s);
			pf_session_cancel_all(s, PF_FINISH_STALLED);
			continue;
		}
		for (struct pf_dreq *q = s->reqs, *next; q; q = next) {
			next = q->next;
			if (q->deadline_ns > 0 && now >= q->deadline_ns) {
				pf_engine_cancel(d->engine, q->engine_id, PF_FINISH_DEADLINE);
			}
		}
	}
}

#define FINAL_FLUSH_NS 5000000000LL /* at exit, readers get this long to take their last completions */
#define DRAIN_PROGRESS_NS 2000000000LL /* how often a drain logs what it still waits for */

/* One line of drain progress: what still runs and how long it may. */
static void log_drain_progress(struct pf_daemon *d, int64_t waited_ns)
{
	int32_t reqs = 0;
	int clients = 0;
	for (struct pf_session *s = d->sessions; s; s = s->next)
		if (s->n_inflight > 0 && !atomic_load(&s->dead)) {
			reqs += s->n_inflight;
			clients++;
		}
	struct pf_engine_stats es = { 0 };
	if (d->engine)
		pf_engine_get_stats(d->engine, &es);
	int64_t left = (int64_t)d->cfg.drain_timeout_s - waited_ns / 1000000000;
	pf_daemon_log(d, PF_LOG_INFO,
		      "draining: %d requests of %d clients still running (%d sequences running, %d waiting); "
		      "saved in %lld s, or now on a second Ctrl-C/SIGTERM",
		      reqs, clients, es.running, es.waiting, (long long)(left > 0 ? left : 0));
	sd_notifyf(0, "STATUS=draining: %d requests still running, saved in %lld s", reqs,
		   (long long)(left > 0 ? left : 0));
}

/* Completions still held back for a live client whose CQ is full. */
static bool undelivered(struct pf_daemon *d)
{
	for (struct pf_session *s = d->sessions; s; s = s->next)
		if (s->n_pending && !atomic_load(&s->dead))
			return true;
	return false;
}

static bool any_submissions(struct pf_daemon *d)
{
	for (struct pf_session *s = d->sessions; s; s = s->next)
		if (!atomic_load(&s->dead) && pf_ring_avail(s->sq_n, s->sq_head, &s->c2d->sq_tail))
			return true;
	return false;
}

static void idle_wait(struct pf_daemon *d)
{
	_Atomic uint32_t *words[128];
	uint32_t vals[128];
	int n = 0;
	words[n] = &d->wake;
	vals[n++] = atomic_load(&d->wake);
	for (struct pf_session *s = d->sessions; s && n < 128; s = s->next) {
		words[n] = &s->c2d->sq_seq;
		vals[n++] = atomic_load(&s->c2d->sq_seq);
		/* seq_cst: announce the sleep before re-checking the SQs — the
		 * client publishes sq_tail, then reads daemon_sleeping (Dekker) */
		atomic_store(&s->d2c->daemon_sleeping, 1);
	}
	/* full fence between the stores above and the SQ re-check below: the
	 * Dekker pairing with the client's tail publish and sleeping check */
	atomic_thread_fence(memory_order_seq_cst);
	bool more = d->n_sessions >= 128; /* the rest are polled by the timeout */
	/* the worker counts a finished prompt before it moves d->wake, and
	 * vals[0] was read before this: a prompt finished after the check
	 * changes the word, so the wait returns at once */
	if (!any_submissions(d) && !d->inbox_new && !d->inbox_dead && !atomic_load(&d->draining) &&
	    !atomic_load(&d->tok.n_done)) {
		int r = pf_futex_waitv(words, vals, n, more ? 1000000 : IDLE_TIMEOUT_NS);
		if (r == -ENOSYS)
			pf_futex_wait(&d->wake, vals[0], 1000000); /* old kernel: poll every ms */
	}
	for (struct pf_session *s = d->sessions; s; s = s->next)
		atomic_store(&s->d2c->daemon_sleeping, 0);
}

int pf_daemon_engine_loop(struct pf_daemon *d)
{
	int64_t last_timeouts = 0, t_ipc = 0, t_step = 0, last_watchdog = 0, last_status = 0, drain_start = 0;
	int64_t flush_start = 0, last_progress = 0;
	uint64_t busy_iters = 0, wd_usec = 0;
	/* the watchdog is petted from this loop, so a hung engine (not a hung
	 * control thread) is what systemd restarts */
	bool watchdog = sd_watchdog_enabled(0, &wd_usec) > 0;
	while (!atomic_load(&d->stop)) {
		int64_t t0 = now_ns();
		if (watchdog && t0 - last_watchdog > (int64_t)wd_usec * 1000 / 2) {
			sd_notify(0, "WATCHDOG=1");
			last_watchdog = t0;
		}
		if (t0 - last_status > 5000000000LL && d->engine && !atomic_load(&d->draining)) {
			struct pf_engine_stats es;
			pf_engine_get_stats(d->engine, &es);
			sd_notifyf(0, "STATUS=serving: %d clients, %d running, %d waiting, KV %d/%d blocks", d->n_sessions,
				   es.running, es.waiting, es.kv.n_used, es.kv.n_blocks);
			last_status = t0;
		}
		take_inbox(d);
		for (struct pf_session *s = d->sessions; s; s = s->next)
			pf_session_poll_sq(s);
		pf_tokenize_collect(d);
		if (t0 - last_timeouts > 10000000) {
			check_timeouts(d, t0);
			pf_daemon_parked_expire(d, t0);
			last_timeouts = t0;
		}
		for (struct pf_session *s = d->sessions; s; s = s->next)
			pf_session_flush(s);
		int r = 0;
		int64_t t1 = now_ns(), t2 = t1;
		if (has_work(d)) {
			r = pf_engine_step(d->engine);
			if (r < 0)
				pf_daemon_log(d, PF_LOG_ERROR, "engine step failed: %s (its requests were failed)", strerror(-r));
			t2 = now_ns();
		}
		for (struct pf_session *s = d->sessions; s; s = s->next) {
			pf_session_flush(s);
			pf_session_wake(s);
		}
		pf_waker_flush(&d->waker);
		if (r > 0) {
			pf_daemon_stats_observe(d, PF_HIST_STEP_TIME, (double)(t2 - t1) * 1e-9);
			pf_daemon_stats_observe(d, PF_HIST_STEP_TOKENS, (double)r);
		}
		pf_daemon_stats_publish(d, false);
		if (r > 0) {
			/* what the IPC path costs next to the step it feeds */
			t_step += t2 - t1;
			t_ipc += (t1 - t0) + (now_ns() - t2);
			busy_iters++;
		}
		if (atomic_load(&d->draining) && !d->drain_announced) {
			/* clients turn new submissions into a local error at once */
			for (struct pf_session *s = d->sessions; s; s = s->next)
				atomic_store(&s->d2c->daemon_state, PF_DAEMON_DRAINING);
			d->drain_announced = true;
			drain_start = t0;
			sd_notifyf(0, "STOPPING=1\nSTATUS=draining: waiting up to %d s for in-flight requests", d->cfg.drain_timeout_s);
		}
		bool now_please = atomic_load(&d->drain_now);
		if (atomic_load(&d->draining) && in_flight(d) && !d->state_saved && !now_please &&
		    t0 - last_progress >= DRAIN_PROGRESS_NS) {
			log_drain_progress(d, t0 - drain_start);
			last_progress = t0;
		}
		/* once: prompts the worker still holds are cancelled here but
		 * stay in flight until it hands them back */
		if (atomic_load(&d->draining) && in_flight(d) && !d->state_saved &&
		    (now_please || t0 - drain_start >= (int64_t)d->cfg.drain_timeout_s * 1000000000)) {
			/* the requests still running are saved for the next start
			 * (their clients get SUSPENDED and a resume token); what
			 * cannot be saved — no state file, v1 clients — ends now
			 * as CANCELLED */
			if (now_please)
				pf_daemon_log(d, PF_LOG_INFO, "drain cut short: saving the requests still running");
			else
				pf_daemon_log(d, PF_LOG_INFO, "drain timeout (%d s): saving the requests still running",
					      d->cfg.drain_timeout_s);
			int sr = pf_daemon_state_save(d);
			if (sr == -ENOTSUP)
				pf_daemon_log(d, PF_LOG_WARN, "no state file (--state-file none): cancelling them instead");
			else if (sr < 0)
				pf_daemon_log(d, PF_LOG_ERROR, "saving failed (%s): cancelling them instead", strerror(-sr));
			d->state_saved = true;
			for (struct pf_session *s = d->sessions; s; s = s->next)
				pf_session_cancel_all(s, PF_FINISH_CANCELLED);
		}
		if (atomic_load(&d->draining) && !in_flight(d) && undelivered(d)) {
			/* the last completions (FINISHED, and the SUSPENDED that
			 * carry resume tokens) still wait for room in some client's
			 * CQ: give readers a moment before the segments go */
			if (!flush_start)
				flush_start = t0;
			/* (a second signal asked to be quick: one second) */
			if (t0 - flush_start < (atomic_load(&d->drain_now) ? FINAL_FLUSH_NS / 5 : FINAL_FLUSH_NS)) {
				pf_futex_wait(&d->wake, atomic_load(&d->wake), 10000000);
				continue;
			}
			for (struct pf_session *s = d->sessions; s; s = s->next)
				if (s->n_pending && !atomic_load(&s->dead))
					pf_daemon_log(d, PF_LOG_WARN, "client %llu (pid %d) did not read its last %u completions; "
						      "requests among them cannot be resumed", (unsigned long long)s->id, s->pid,
						      s->n_pending);
		}
		if (atomic_load(&d->draining) && !in_flight(d)) {
			pf_daemon_log(d, PF_LOG_INFO, "drained: every request has finished or was saved");
			/* restored requests nobody reclaimed go back to the file */
			if (!d->state_saved && d->parked)
				pf_daemon_state_save(d);
			break;
		}
		/* a step that computed nothing (everything paused) must not spin */
		if (r <= 0 && !any_submissions(d)) {
			pf_daemon_stats_publish(d, true);
			idle_wait(d);
		}
	}
	if (busy_iters)
		pf_daemon_log(d, PF_LOG_INFO, "IPC path (poll SQs, post and wake) took %.3f%% of busy loop time: %.1f ms next to %.1f ms of engine steps over %llu steps",
			      100.0 * (double)t_ipc / (double)(t_ipc + t_step), (double)t_ipc / 1e6, (double)t_step / 1e6,
			      (unsigned long long)busy_iters);
	/* tell clients the daemon is gone before the segments go away */
	for (struct pf_session *s = d->sessions; s; s = s->next) {
		atomic_store(&s->d2c->daemon_state, PF_DAEMON_GONE);
		s->cq_dirty = true;
		pf_session_wake(s);
	}
	pf_waker_flush(&d->waker);
	return 0;
}
