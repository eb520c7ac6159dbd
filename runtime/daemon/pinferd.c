/*
 * pinferd — the pinfer runtime daemon.  See daemon.h for its threads and
 * ARCHITECTURE.md for the whole picture.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "runtime/daemon/daemon.h"

/* The backend's warnings and failed steps, into the daemon's log. */
static void backend_log(void *arg, int level, const char *msg)
{
	pf_daemon_log(arg, level, "backend: %s", msg);
}

int main(int argc, char **argv)
{
	struct pf_daemon *d = calloc(1, sizeof(*d));
	char err[512];
	int r;

	if (!d)
		return 1;
	r = pf_daemon_config_parse(&d->cfg, argc, argv);
	if (r)
		return r > 0 ? 0 : 2;
	d->log_level = d->cfg.log_level;
	d->argc = argc;
	d->argv = argv;
	d->listen_fd = d->signal_fd = -1;
	d->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pthread_mutex_init(&d->lock, NULL);

	/* signals are read by the control thread from a signalfd; block them
	 * everywhere else (threads inherit the mask) */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	d->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (d->signal_fd < 0) {
		perror("pinferd: signalfd");
		return 1;
	}

	/* io_uring where it works (control loop, batched wakes), else plain
	 * futex/eventfd and poll(2) — the same behaviour, more syscalls */
	pf_uring_probe(&d->uring);
	if (d->uring.usable && d->uring.futex)
		pf_daemon_log(d, PF_LOG_INFO, "io_uring: control loop and batched wakes (FUTEX_WAKE and eventfd writes)");
	else if (d->uring.usable)
		pf_daemon_log(d, PF_LOG_INFO, "io_uring: control loop and batched eventfd wakes; futex wakes by syscall (%s)",
			      d->uring.why);
	else
		pf_daemon_log(d, PF_LOG_INFO, "io_uring unavailable (%s): poll(2) control loop, futex/eventfd wakes by syscall",
			      d->uring.why);
	r = pf_waker_init(&d->waker, &d->uring);
	if (r) {
		pf_daemon_log(d, PF_LOG_WARN, "io_uring ring for wakes failed (%s); waking by syscall", strerror(-r));
		d->uring.usable = false;
	}

	struct pf_engine_config ec = pf_engine_config_default();
	ec.backend_log = (struct pf_backend_log){ .fn = backend_log, .arg = d };
	ec.model_path = d->cfg.model;
	ec.n_threads = d->cfg.threads;
	ec.kv_memory = d->cfg.kv_memory;
	ec.swap_space = d->cfg.swap_space;
	ec.sched.preemption_mode = (enum pf_preempt_mode)d->cfg.preemption_mode;
	ec.device = d->cfg.device;
	ec.gpu_memory_utilization = d->cfg.gpu_memory_utilization;
	ec.block_size = d->cfg.block_size;
	ec.max_model_len = d->cfg.max_model_len;
	ec.sched.max_num_seqs = d->cfg.max_num_seqs;
	ec.sched.max_num_batched_tokens = d->cfg.max_batched_tokens;
	ec.max_step_ms = d->cfg.max_step_ms;
	ec.sched.prefix_caching = d->cfg.prefix_caching;
	ec.sched.policy = d->cfg.priority_policy ? PF_SCHED_PRIORITY : PF_SCHED_FCFS;
	ec.sched.static_batching = d->cfg.static_batching;
	ec.sched.static_batch = d->cfg.static_batch;
	struct pf_engine_events ev = pf_daemon_events;
	ev.ctx = d;
	if (d->cfg.echo_backend) {
		pf_daemon_log(d, PF_LOG_INFO, "echo backend: no model; requests are echoed (IPC benchmarking)");
	} else {
		pf_daemon_log(d, PF_LOG_INFO, "loading %s", d->cfg.model);
		sd_notifyf(0, "STATUS=loading %s", d->cfg.model);
		r = pf_engine_create(&ec, &ev, &d->engine, err, sizeof(err));
		if (r) {
			pf_daemon_log(d, PF_LOG_ERROR, "%s", err);
			return 1;
		}
		pf_daemon_log(d, PF_LOG_INFO, "%s", pf_engine_device_note(d->engine));
		pf_daemon_log(d, PF_LOG_INFO, "model: %s", pf_engine_describe(d->engine));
		if (pf_engine_self_check(d->engine)) {
			const char *v = pf_engine_self_check(d->engine);
			/* a SIMD level that failed is a warning: this CPU serves slower than it could */
			pf_daemon_log(d, strstr(v, "FAILED") ? PF_LOG_WARN : PF_LOG_INFO, "kernel self-check: %s", v);
		}
		if (d->cfg.static_batching)
			pf_daemon_log(d, PF_LOG_INFO, "batching: static (the baseline), %d requests per batch",
				      d->cfg.static_batch);
	}
	d->stats_fd = -1;
	r = pf_daemon_stats_init(d);
	if (r) {
		pf_daemon_log(d, PF_LOG_ERROR, "cannot create the stats segment: %s", strerror(-r));
		return 1;
	}
	r = pf_daemon_listen(d);
	if (r) {
		pf_engine_destroy(d->engine);
		return 1;
	}
	/* requests a previous pinferd saved on its drain wait for their
	 * clients; loaded only now that this daemon is sure to serve (the file
	 * goes once loaded) */
	pf_daemon_state_load(d);
	/* what SIGHUP compares a reloaded configuration with (control thread) */
	d->cfg_seen = malloc(sizeof(*d->cfg_seen));
	if (d->cfg_seen)
		*d->cfg_seen = d->cfg;
	/* long prompts are tokenized off the engine thread; without the
	 * worker they are tokenized inline, as before */
	if (d->engine && (r = pf_tokenize_start(d)))
		pf_daemon_log(d, PF_LOG_WARN, "no tokenizer thread (%s): long prompts are tokenized between steps",
			      strerror(-r));
	pthread_t ctl;
	r = pthread_create(&ctl, NULL, pf_daemon_control_main, d);
	if (r) {
		pf_daemon_log(d, PF_LOG_ERROR, "cannot start the control thread: %s", strerror(r));
		return 1;
	}
	pf_daemon_log(d, PF_LOG_INFO, "ready: listening on %s", d->socket_path);
	/* READY only now: the model is loaded and the socket accepts */
	sd_notifyf(0, "READY=1\nSTATUS=serving %s on %s", d->acc.model, d->socket_path);
	pf_daemon_engine_loop(d);
	pf_tokenize_stop(d); /* before the engine (its tokenizer) goes */
	atomic_store(&d->stop, true);
	pthread_join(ctl, NULL);
	unlink(d->socket_path);
	while (d->sessions) {
		struct pf_session *s = d->sessions;
		d->sessions = s->next;
		pf_session_cancel_all(s, PF_FINISH_CANCELLED);
		close(s->sock);
		if (s->pidfd >= 0)
			close(s->pidfd);
		pf_session_free(s);
	}
	while (d->uid_usage) {
		struct pf_uid_usage *u = d->uid_usage;
		d->uid_usage = u->next;
		free(u);
	}
	free(d->uid_clients);
	pf_engine_destroy(d->engine);
	pf_daemon_parked_free(d);
	pf_waker_destroy(&d->waker);
	close(d->listen_fd);
	close(d->signal_fd);
	pf_daemon_log(d, PF_LOG_INFO, "stopped");
	free(d->reload);
	free(d->cfg_seen);
	if (d->reserve_fd >= 0)
		close(d->reserve_fd);
	free(d);
	return 0;
}
