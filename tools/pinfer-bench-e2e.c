/*
 * pinfer-bench-e2e — end-to-end serving benchmark through a real pinferd:
 * continuous batching against the static-batching baseline, driven by
 * several client processes over libpinfer.
 *
 * The same comparison as pinfer-bench-serve (which steps the engine in
 * process), now across the whole serving path: client processes, the
 * shared-memory rings, the daemon's engine loop and its wake-ups.
 *
 * Workload: --requests (prompt_len, output_len) pairs drawn (seeded, without
 * replacement) from bench/data/sharegpt_lengths.tsv exactly as
 * pinfer-bench-serve draws them, so the same --requests/--seed give the same
 * lengths.  Prompts are synthetic token ids (a seeded PRNG over
 * [100, n_vocab), clear of the control tokens), submitted with
 * pinfer_submit_tokens; outputs are forced to max_tokens = min(output_len,
 * --max-output) with ignore_eos and greedy sampling, so every run does
 * identical work.  Request i belongs to client process i mod --clients.
 *
 * Each run starts a fresh pinferd (found beside this program, or --pinferd)
 * on its own socket in a private directory, with the same KV budget:
 *   continuous  --batching continuous (prefix caching on, as a server runs)
 *   static      --batching static --static-batch N --no-prefix-caching
 * (the prompts are random, so the prefix cache finds nothing either way).
 * It then forks --clients processes; each connects, reports ready, and waits
 * for the common start time t0 (CLOCK_MONOTONIC is system-wide, so every
 * process measures against the same clock).  Two regimes:
 *
 *   throughput  every request arrives at t0;
 *   latency     Poisson arrivals (seeded) at --load (0.8) times the static
 *               run's measured requests/s, or --rate; each client submits
 *               its requests at their arrival times.
 *
 * Per request the client records, on the shared clock, when it submitted,
 * when the first TOKEN event arrived and when the final FINISHED arrived,
 * plus the daemon's own timings from FINISHED (ttft_s counts from when the
 * daemon took the request off the ring).  Latencies count from the arrival
 * time.  Throughput counts from t0 to the last FINISHED.
 *
 * While the clients run, this process samples the daemon's stats segment
 * (shm/stats.h) for peak running sequences and KV blocks, and reads the
 * daemon's CPU time from /proc; engine steps and tokens per step come from
 * the same segment, and the share of the daemon's busy loop spent in the IPC
 * path from the line pinferd logs when it stops.  Output tokens per step and
 * per daemon CPU-second move less with other load on the machine than
 * tokens per wall second do; the report prints the load average too.
 *
 * Cleanup: the daemon and every client are forked with PR_SET_PDEATHSIG, so
 * they end when this process dies however it dies; SIGINT/SIGTERM/SIGHUP
 * stop the run, end the daemon and the clients and remove the socket
 * directory.  The daemon's pid is kept in DIR/pinferd.pid while it runs, for
 * a wrapper script's trap.
 *
 * Output: tables on stdout (continuous and static side by side with the
 * ratio), then a TSV block after a "# TSV" line; progress on stderr.
 * Timings depend on the machine and its load; nothing here asserts one.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tools/bench_common.h"
#include "client/pinfer.h"
#include "shm/stats.h"
#include "tools/stats_fmt.h"

#define PROG "pinfer-bench-e2e"
#define MAX_CLIENTS 256

/* ---- options ------------------------------------------------------------------ */

struct opts {
	const char *model, *data, *pinferd, *socket_dir, *kv_memory;
	int requests, clients, max_output, static_batch, threads, block_size;
	uint64_t seed;
	enum pf_bench_regime regime;
	double rate, load, run_timeout;
	bool quiet, keep_logs;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n"
		"\n"
		"End-to-end serving benchmark: starts pinferd (continuous batching, then the\n"
		"static baseline) and drives it from several client processes through\n"
		"libpinfer, on ShareGPT prompt/output lengths; same workload, same KV budget.\n"
		"\n"
		"  -m, --model PATH         GGUF model (default models/SmolLM2-135M-Instruct.Q4_1.gguf)\n"
		"      --data PATH          length pairs (default bench/data/sharegpt_lengths.tsv)\n"
		"      --requests N         requests per run (default 16)\n"
		"  -c, --clients N          client processes, 1..%d (default 8; at most --requests)\n"
		"      --max-output N       cap on output tokens per request (default 1024)\n"
		"      --kv-memory SIZE     the daemon's KV pool in every run (default 64M)\n"
		"      --block-size N       KV block size 8, 16 or 32 (default 16)\n"
		"      --static-batch N     requests per static batch (default 8)\n"
		"  -t, --threads N          the daemon's CPU threads (default 0: every CPU it may use)\n"
		"      --seed N             workload, prompt and arrival seed (default 1)\n"
		"      --regime R           throughput, latency or both (default both)\n"
		"      --rate R             latency regime arrivals in requests/s (default: --load\n"
		"                           times the static run's measured requests/s)\n"
		"      --load F             fraction of static capacity offered (default 0.8)\n"
		"      --pinferd PATH       the daemon (default: pinferd beside this program)\n"
		"      --socket-dir DIR     where the daemons' sockets and logs go (default: a new\n"
		"                           private directory under $TMPDIR or /tmp, removed at the end)\n"
		"      --keep-logs          keep the daemons' logs (prints where)\n"
		"      --run-timeout S      give up on a run after S seconds (default 3600)\n"
		"  -q, --quiet              no progress on stderr\n"
		"  -h, --help               this text\n"
		"\n"
		"Without --rate, the latency regime needs the static throughput run first\n"
		"(it runs it if --regime latency is given alone).\n",
		MAX_CLIENTS);
}

/* ---- small helpers ------------------------------------------------------------ */

/* CPU seconds (user + system, every thread) process pid has used: fields 14
 * and 15 of /proc/PID/stat, after the parenthesised command name.  NAN when
 * unreadable. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NAN;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return NAN;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	/* after ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return NAN;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Write all of buf (pipes to and from the clients). */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Set by SIGINT/SIGTERM/SIGHUP.  A signal handler can only reach file-scope
 * state; everything else lives in struct bench and is passed explicitly.
 */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	g_stop = sig;
}

/* ---- workload ----------------------------------------------------------------- */

/* The requests themselves are a struct pf_bench_workload (bench_common.h),
 * built before the clients fork; arrival times count from t0. */

/* What the client that owns a request measured: in the shared mapping, each
 * slot written by exactly one client process and read after it exited. */
enum req_status { RS_PENDING = 0, RS_OK, RS_SHORT, RS_ERROR };

struct req_result {
	double t_submit, t_first, t_done;  /* CLOCK_MONOTONIC */
	int32_t status;                    /* enum req_status */
	int32_t gen, token_events, prompt_tokens, cached;
	int32_t reason, error;             /* FINISHED reason / ERROR errno */
	float queue_s, ttft_s, decode_s;   /* the daemon's timings */
};

struct shared {
	double t0;                         /* written before the start, read after it */
	struct req_result res[];
};

/* ---- the daemon --------------------------------------------------------------- */

struct bench {
	const struct opts *o;
	char dir[200];                     /* sockets, logs, pid file (a socket path must fit 108 bytes) */
	bool own_dir;                      /* created here: removed at the end */
	char pinferd[PATH_MAX];
	pid_t daemon;                      /* 0: none running */
	char sock[PATH_MAX], log[PATH_MAX], pidfile[PATH_MAX];
	pid_t clients[MAX_CLIENTS];
	int n_clients;
	struct pf_bench_workload w;
	int32_t n_vocab, max_model_len;
};

/* Wait up to timeout_s for pid; SIGKILL it after that.  Returns its wait
 * status, or -1 when it could not be reaped. */
static int reap(pid_t pid, double timeout_s)
{
	int st;
	double end = pf_bench_now_s() + timeout_s;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR)
			return -1;
		if (pf_bench_now_s() > end)
			break;
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	return waitpid(pid, &st, 0) == pid ? st : -1;
}

static void kill_clients(struct bench *b)
{
	for (int i = 0; i < b->n_clients; i++)
		if (b->clients[i] > 0)
			kill(b->clients[i], SIGKILL);
	for (int i = 0; i < b->n_clients; i++)
		if (b->clients[i] > 0)
			waitpid(b->clients[i], NULL, 0);
	b->n_clients = 0;
}

/* SIGTERM (the daemon drains: nothing is in flight by then), wait, SIGKILL
 * if it lingers.  Accepts "no daemon".  Cannot fail. */
static void daemon_stop(struct bench *b)
{
	if (b->daemon <= 0)
		return;
	kill(b->daemon, SIGTERM);
	int st = reap(b->daemon, 15);
	if (st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !b->o->quiet)
		fprintf(stderr, PROG ": pinferd (pid %d) ended with %s %d\n", (int)b->daemon,
			WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	b->daemon = 0;
	unlink(b->pidfile);
	unlink(b->sock);
}

/* The last lines of the daemon's log, to stderr (why a run failed). */
static void log_tail(const struct bench *b)
{
	FILE *f = fopen(b->log, "r");
	if (!f)
		return;
	char lines[8][512];
	int n = 0;
	while (fgets(lines[n % 8], sizeof(lines[0]), f))
		n++;
	fclose(f);
	fprintf(stderr, PROG ": last lines of %s:\n", b->log);
	for (int i = n > 8 ? n - 8 : 0; i < n; i++)
		fprintf(stderr, "  %s", lines[i % 8]);
}

/*
 * Start pinferd for one run (name: used in the socket and log names) and
 * wait until it accepts a client.  Fills b->n_vocab and b->max_model_len
 * from the handshake.  Returns 0 or a negative errno (the log's tail is
 * printed).
 */
static int daemon_start(struct bench *b, const char *name, bool static_batching)
{
	const struct opts *o = b->o;
	snprintf(b->sock, sizeof(b->sock), "%s/pinferd-%s.sock", b->dir, name);
	snprintf(b->log, sizeof(b->log), "%s/pinferd-%s.log", b->dir, name);
	snprintf(b->pidfile, sizeof(b->pidfile), "%s/pinferd.pid", b->dir);
	if (strlen(b->sock) >= 108) {
		fprintf(stderr, PROG ": socket path %s is too long for a unix socket; use a shorter --socket-dir\n",
			b->sock);
		return -ENAMETOOLONG;
	}
	unlink(b->sock);
	char threads[16], sbatch[16], bsize[16], inflight[16];
	snprintf(threads, sizeof(threads), "%d", o->threads);
	snprintf(sbatch, sizeof(sbatch), "%d", o->static_batch);
	snprintf(bsize, sizeof(bsize), "%d", o->block_size);
	/* every request of a client may be in flight at once */
	snprintf(inflight, sizeof(inflight), "%d", (o->requests + o->clients - 1) / o->clients + 64);
	const char *argv[40];
	int a = 0;
	argv[a++] = b->pinferd;
	argv[a++] = "--model"; argv[a++] = o->model;
	/* /dev/null: never pick up /etc/pinfer/pinferd.conf, both runs get only these */
	argv[a++] = "--config"; argv[a++] = "/dev/null";
	argv[a++] = "--socket"; argv[a++] = b->sock;
	argv[a++] = "--threads"; argv[a++] = threads;
	argv[a++] = "--kv-memory"; argv[a++] = o->kv_memory;
	argv[a++] = "--block-size"; argv[a++] = bsize;
	argv[a++] = "--max-inflight"; argv[a++] = inflight;
	argv[a++] = "--drain-timeout"; argv[a++] = "5";
	/* a benchmark's leftovers are not worth resuming */
	argv[a++] = "--state-file"; argv[a++] = "none";
	argv[a++] = "--log-level"; argv[a++] = "info";
	argv[a++] = "--batching"; argv[a++] = static_batching ? "static" : "continuous";
	if (static_batching) {
		argv[a++] = "--static-batch"; argv[a++] = sbatch;
		argv[a++] = "--no-prefix-caching";
	}
	argv[a] = NULL;

	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		fprintf(stderr, PROG ": fork: %s\n", strerror(e));
		return -e;
	}
	if (pid == 0) {
		/* the daemon must not outlive us, however we end */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int fd = open(b->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execv(b->pinferd, (char *const *)argv);
		fprintf(stderr, PROG ": cannot run %s: %s\n", b->pinferd, strerror(errno));
		_exit(127);
	}
	b->daemon = pid;
	FILE *pf = fopen(b->pidfile, "w");
	if (pf) {
		fprintf(pf, "%d\n", (int)pid);
		fclose(pf);
	}

	/* ready once a client can register (the model is loaded by then) */
	char err[256] = "";
	struct pinfer_connect_opts co;
	pinfer_connect_opts_init(&co);
	co.socket_path = b->sock;
	co.timeout_ms = 2000;
	co.err = err;
	co.err_len = sizeof(err);
	double deadline = pf_bench_now_s() + 120;
	int r = -ETIMEDOUT;
	while (!g_stop && pf_bench_now_s() < deadline) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, PROG ": pinferd exited while starting (%s %d)\n",
				WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			b->daemon = 0;
			unlink(b->pidfile);
			log_tail(b);
			return -ECHILD;
		}
		struct pinfer *c;
		r = pinfer_connect(&co, &c);
		if (r == 0) {
			b->n_vocab = pinfer_n_vocab(c);
			b->max_model_len = pinfer_max_model_len(c);
			pinfer_close(c);
			return 0;
		}
		if (r != -ENOENT && r != -ECONNREFUSED)
			break;
		pf_bench_sleep_s(0.1);
	}
	if (g_stop)
		r = -EINTR;
	fprintf(stderr, PROG ": pinferd did not accept a client: %s\n", err[0] ? err : strerror(-r));
	log_tail(b);
	daemon_stop(b);
	return r;
}

/* "IPC path ... took X% of busy loop time" from the stopped daemon's log;
 * NAN when absent. */
static double daemon_ipc_share(const struct bench *b)
{
	FILE *f = fopen(b->log, "r");
	if (!f)
		return NAN;
	char line[1024];
	double v = NAN;
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "IPC path");
		p = p ? strstr(p, "took ") : NULL;
		if (p)
			v = strtod(p + 5, NULL);
	}
	fclose(f);
	return v;
}

/* ---- a client process --------------------------------------------------------- */

struct client_args {
	const struct bench *b;
	int k;                             /* this client: requests i with i % n_clients == k */
	int n_clients;
	struct shared *sh;
	int ready_fd, go_fd;
};

/* Index of the request a tag belongs to; -1 when unknown. */
static int tag_lookup(const uint64_t *tags, const int *idx, int n, uint64_t tag)
{
	for (int i = 0; i < n; i++)
		if (tags[i] == tag)
			return idx[i];
	return -1;
}

/*
 * Body of one client process: connect, report ready ('R', or 'E' on
 * failure), wait for the start (EOF on go_fd), then submit each of its
 * requests at its arrival time and read events until all have ended.
 * Returns the process's exit status.
 */
static int client_main(const struct client_args *ca)
{
	const struct bench *b = ca->b;
	const struct pf_bench_workload *w = &b->w;
	char err[256] = "";
	struct pinfer_connect_opts co;
	pinfer_connect_opts_init(&co);
	co.socket_path = b->sock;
	co.err = err;
	co.err_len = sizeof(err);
	struct pinfer *c = NULL;
	int r = pinfer_connect(&co, &c);
	char ch = r ? 'E' : 'R';
	if (write_all(ca->ready_fd, &ch, 1) || r) {
		if (r)
			fprintf(stderr, PROG ": client %d: cannot connect: %s\n", ca->k, err);
		pinfer_close(c);
		return 1;
	}
	close(ca->ready_fd);
	/* the parent never writes: EOF is the start */
	char buf[1];
	ssize_t n;
	do
		n = read(ca->go_fd, buf, 1);
	while (n < 0 && errno == EINTR);
	close(ca->go_fd);
	double t0 = ca->sh->t0;

	int mine = 0;
	for (int i = ca->k; i < w->n; i += ca->n_clients)
		mine++;
	uint64_t *tags = calloc((size_t)mine, sizeof(*tags));
	int *tidx = calloc((size_t)mine, sizeof(*tidx));
	if (!tags || !tidx) {
		r = -ENOMEM;
		goto out;
	}
	struct pinfer_params p;
	pinfer_params_init(&p);
	p.temperature = 0;
	p.ignore_eos = true;
	p.no_text = true; /* token ids only: text would be work the clients never look at */

	int next = 0, done = 0, n_tags = 0;
	while (done < mine) {
		double now = pf_bench_now_s();
		bool ring_full = false;
		while (next < mine) {
			int i = ca->k + next * ca->n_clients;
			const struct pf_bench_req *q = &w->reqs[i];
			if (t0 + q->t_arrival > now)
				break;
			p.max_tokens = q->max_tokens;
			uint64_t tag;
			r = pinfer_submit_tokens(c, q->prompt, (size_t)q->n_prompt, &p, &tag);
			if (r == -EAGAIN) {
				ring_full = true;
				break;
			}
			if (r) {
				fprintf(stderr, PROG ": client %d: request %d: %s\n", ca->k, i, pinfer_last_error(c));
				goto out;
			}
			ca->sh->res[i].t_submit = pf_bench_now_s();
			tags[n_tags] = tag;
			tidx[n_tags++] = i;
			next++;
		}
		int timeout = -1;
		if (next < mine && !ring_full) {
			double dt = t0 + w->reqs[ca->k + next * ca->n_clients].t_arrival - pf_bench_now_s();
			timeout = dt <= 0 ? 0 : (int)ceil(dt * 1000);
		}
		if (pinfer_inflight(c) == 0) {
			if (next >= mine) {
				fprintf(stderr, PROG ": client %d: nothing in flight but %d requests not ended\n", ca->k,
					mine - done);
				r = -EPROTO;
				goto out;
			}
			/* nothing to read: wait for the next arrival */
			pf_bench_sleep_s(ring_full ? 0.001 : (double)timeout / 1000);
			continue;
		}
		struct pinfer_event ev;
		r = pinfer_next(c, &ev, timeout);
		if (r == -ETIMEDOUT || r == -EAGAIN || r == -EINTR)
			continue;
		if (r) {
			fprintf(stderr, PROG ": client %d: %s\n", ca->k, pinfer_last_error(c));
			goto out;
		}
		int i = tag_lookup(tags, tidx, n_tags, ev.tag);
		if (i < 0)
			continue;
		struct req_result *res = &ca->sh->res[i];
		switch (ev.kind) {
		case PINFER_EVENT_TOKEN:
			if (res->token_events++ == 0)
				res->t_first = pf_bench_now_s();
			break;
		case PINFER_EVENT_FINISHED:
			res->gen = ev.usage.generated_tokens;
			res->prompt_tokens = ev.usage.prompt_tokens;
			res->cached = ev.usage.cached_tokens;
			res->queue_s = (float)ev.usage.queue_s;
			res->ttft_s = (float)ev.usage.ttft_s;
			res->decode_s = (float)ev.usage.decode_s;
			res->reason = (int32_t)ev.reason;
			if (ev.last) {
				res->t_done = pf_bench_now_s();
				res->status = ev.reason == PINFER_FINISH_LENGTH && res->gen == w->reqs[i].max_tokens
					      ? RS_OK : RS_SHORT;
				done++;
			}
			break;
		case PINFER_EVENT_ERROR:
			res->t_done = pf_bench_now_s();
			res->status = RS_ERROR;
			res->error = ev.error;
			fprintf(stderr, PROG ": client %d: request %d: error %d: %s\n", ca->k, i, ev.error, ev.message);
			done++;
			break;
		default:
			break;
		}
	}
	r = 0;
out:
	free(tags);
	free(tidx);
	pinfer_close(c);
	return r ? 1 : 0;
}

/* ---- one run ------------------------------------------------------------------ */

struct run_result {
	const char *regime, *mode;
	int n, n_failed, clients;
	double offered_rate;
	double duration, out_tok_s, total_tok_s, req_s;
	struct pf_bench_latency lat;
	double d_ttft_p50, d_ttft_p99, d_queue_p50;        /* the daemon's view */
	uint64_t gen_tokens, prompt_tokens;
	int peak_running, peak_kv_used, kv_total;
	uint64_t steps, preemptions;
	double daemon_cpu_s, ipc_share;
	double load_start, load_end;
};

/*
 * Start a daemon, fork the clients, run the workload with the arrival times
 * in b->w, collect.  Returns 0 or a negative errno (the run was stopped and
 * everything it started is gone).
 */
static int run_once(struct bench *b, const char *regime, const char *mode, bool static_batching,
		    struct run_result *res)
{
	const struct opts *o = b->o;
	char name[64];
	snprintf(name, sizeof(name), "%s-%s", regime, mode);
	memset(res, 0, sizeof(*res));
	res->regime = regime;
	res->mode = mode;
	int rc = daemon_start(b, name, static_batching);
	if (rc)
		return rc;
	struct pf_bench_workload *w = &b->w;
	size_t sh_bytes = sizeof(struct shared) + sizeof(struct req_result) * (size_t)w->n;
	struct shared *sh = mmap(NULL, sh_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int ready[2] = { -1, -1 }, go[2] = { -1, -1 };
	struct stats_src ss;
	stats_src_init(&ss);
	double *v = NULL;
	if (sh == MAP_FAILED) {
		sh = NULL;
		rc = -errno;
		goto out;
	}
	if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC)) {
		rc = -errno;
		goto out;
	}

	int nc = o->clients;
	res->clients = nc;
	pid_t parent = getpid();
	fflush(NULL);
	for (int k = 0; k < nc; k++) {
		pid_t pid = fork();
		if (pid < 0) {
			rc = -errno;
			fprintf(stderr, PROG ": fork: %s\n", strerror(-rc));
			goto out;
		}
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(1);
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			signal(SIGHUP, SIG_DFL);
			close(ready[0]);
			close(go[1]);
			struct client_args ca = { .b = b, .k = k, .n_clients = nc, .sh = sh, .ready_fd = ready[1],
						  .go_fd = go[0] };
			_exit(client_main(&ca));
		}
		b->clients[b->n_clients++] = pid;
	}
	close(ready[1]);
	close(go[0]);
	ready[1] = go[0] = -1;
	for (int k = 0; k < nc; k++) {
		char ch;
		ssize_t n;
		while ((n = read(ready[0], &ch, 1)) < 0 && errno == EINTR && !g_stop)
			;
		if (n != 1 || ch != 'R' || g_stop) {
			fprintf(stderr, PROG ": %s: a client could not connect\n", name);
			rc = g_stop ? -EINTR : -ECONNREFUSED;
			goto out;
		}
	}
	char err[256] = "";
	struct pinfer_connect_opts co;
	pinfer_connect_opts_init(&co);
	co.socket_path = b->sock;
	co.err = err;
	co.err_len = sizeof(err);
	if (stats_src_refresh(&ss, &co) < 0 && !o->quiet)
		fprintf(stderr, PROG ": %s: no stats segment (%s): peaks and steps will read 0\n", name, err);
	struct pf_stats st0 = { 0 }, st = { 0 };
	stats_src_read(&ss, &st0);

	/* go */
	res->load_start = pf_bench_loadavg1();
	double cpu0 = proc_cpu_s(b->daemon);
	sh->t0 = pf_bench_now_s() + 0.01;
	close(go[1]);
	go[1] = -1;

	int alive = nc;
	double last_note = pf_bench_now_s(), deadline = sh->t0 + o->run_timeout;
	while (alive > 0) {
		if (g_stop) {
			rc = -EINTR;
			goto out;
		}
		if (pf_bench_now_s() > deadline) {
			fprintf(stderr, PROG ": %s: not done after %.0f s (--run-timeout)\n", name, o->run_timeout);
			rc = -ETIMEDOUT;
			goto out;
		}
		int ws;
		if (waitpid(b->daemon, &ws, WNOHANG) == b->daemon) {
			fprintf(stderr, PROG ": %s: pinferd died during the run\n", name);
			b->daemon = 0;
			log_tail(b);
			rc = -ECHILD;
			goto out;
		}
		for (int k = 0; k < b->n_clients; k++) {
			if (b->clients[k] <= 0 || waitpid(b->clients[k], &ws, WNOHANG) != b->clients[k])
				continue;
			b->clients[k] = -1;
			alive--;
			if (!WIFEXITED(ws) || WEXITSTATUS(ws)) {
				fprintf(stderr, PROG ": %s: client %d failed\n", name, k);
				rc = -EIO;
				goto out;
			}
		}
		if (stats_src_read(&ss, &st) == 0) {
			if (st.running > res->peak_running)
				res->peak_running = st.running;
			if (st.kv_blocks_used > res->peak_kv_used)
				res->peak_kv_used = st.kv_blocks_used;
		}
		if (!o->quiet && pf_bench_now_s() - last_note > 10) {
			last_note = pf_bench_now_s();
			int n_done = 0;
			for (int i = 0; i < w->n; i++)
				n_done += sh->res[i].status != RS_PENDING;
			fprintf(stderr, PROG ": %s: %.0f s, %d/%d done, %d running, %d waiting, %d/%d KV blocks used\n",
				name, last_note - sh->t0, n_done, w->n, st.running, st.waiting, st.kv_blocks_used,
				st.kv_blocks_total);
		}
		pf_bench_sleep_s(0.02);
	}
	b->n_clients = 0;
	res->load_end = pf_bench_loadavg1();
	res->daemon_cpu_s = proc_cpu_s(b->daemon) - cpu0;
	/* the daemon publishes its stats once more before it sleeps */
	for (int tries = 0; tries < 50; tries++) {
		if (stats_src_read(&ss, &st) == 0 && st.running == 0 && st.waiting == 0)
			break;
		pf_bench_sleep_s(0.02);
	}
	res->steps = st.steps_total - st0.steps_total;
	res->preemptions = st.preemptions_total - st0.preemptions_total;
	res->kv_total = st.kv_blocks_total;

	v = malloc(sizeof(double) * (size_t)w->n * 6);
	if (!v) {
		rc = -ENOMEM;
		goto out;
	}
	double *ttft = v, *tpot = v + w->n, *e2e = v + 2 * w->n, *dttft = v + 3 * w->n, *dq = v + 4 * w->n;
	int n_ok = 0, n_tpot = 0;
	double t_last = sh->t0;
	res->n = w->n;
	for (int i = 0; i < w->n; i++) {
		const struct req_result *r = &sh->res[i];
		res->gen_tokens += (uint64_t)(r->gen > 0 ? r->gen : 0);
		res->prompt_tokens += (uint64_t)w->reqs[i].n_prompt;
		if (r->t_done > t_last)
			t_last = r->t_done;
		if (r->status != RS_OK) {
			res->n_failed++;
			continue;
		}
		double arr = sh->t0 + w->reqs[i].t_arrival;
		ttft[n_ok] = r->t_first - arr;
		e2e[n_ok] = r->t_done - arr;
		dttft[n_ok] = r->ttft_s;
		dq[n_ok] = r->queue_s;
		n_ok++;
		if (r->gen > 1)
			tpot[n_tpot++] = (r->t_done - r->t_first) / (r->gen - 1);
	}
	res->duration = t_last - sh->t0;
	res->out_tok_s = (double)res->gen_tokens / res->duration;
	res->total_tok_s = (double)(res->gen_tokens + res->prompt_tokens) / res->duration;
	res->req_s = (double)n_ok / res->duration;
	pf_bench_latency_from(&res->lat, ttft, e2e, n_ok, tpot, n_tpot);
	res->d_ttft_p50 = pf_bench_percentile(dttft, n_ok, 50);
	res->d_ttft_p99 = pf_bench_percentile(dttft, n_ok, 99);
	res->d_queue_p50 = pf_bench_percentile(dq, n_ok, 50);
	if (res->n_failed)
		fprintf(stderr, PROG ": %s: %d requests did not finish with exactly max_tokens tokens\n", name,
			res->n_failed);
	if (!o->quiet)
		fprintf(stderr, PROG ": %s: %d requests from %d client processes, %llu output tokens in %.1f s\n", name,
			w->n, nc, (unsigned long long)res->gen_tokens, res->duration);
out:
	kill_clients(b);
	stats_src_close(&ss);
	daemon_stop(b);
	if (!rc)
		res->ipc_share = daemon_ipc_share(b);
	else if (rc != -EINTR && rc != -ECHILD)
		log_tail(b); /* (a dead daemon's tail was printed already) */
	if (!o->keep_logs)
		unlink(b->log);
	for (int i = 0; i < 2; i++) {
		if (ready[i] >= 0)
			close(ready[i]);
		if (go[i] >= 0)
			close(go[i]);
	}
	if (sh)
		munmap(sh, sh_bytes);
	free(v);
	return rc;
}

/* ---- report ------------------------------------------------------------------- */

#define LABEL_W 32 /* the label column */

static void row(const char *name, double a, double b, const char *fmt, double scale)
{
	pf_bench_row(LABEL_W, name, a, b, fmt, scale);
}

static void print_pair(const char *title, const struct run_result *c, const struct run_result *s)
{
	pf_bench_table_head(LABEL_W, title);
	row("requests/s", c->req_s, s->req_s, "%.3f", 1);
	row("output tokens/s", c->out_tok_s, s->out_tok_s, "%.1f", 1);
	row("total tokens/s (prompt+output)", c->total_tok_s, s->total_tok_s, "%.1f", 1);
	pf_bench_rows_latency(LABEL_W, &c->lat, &s->lat);
	row("daemon TTFT p50 (s)", c->d_ttft_p50, s->d_ttft_p50, "%.3f", 1);
	row("daemon queue time p50 (s)", c->d_queue_p50, s->d_queue_p50, "%.3f", 1);
	row("peak running seqs (sampled)", c->peak_running, s->peak_running, "%.0f", 1);
	row("peak KV blocks used (sampled)", c->peak_kv_used, s->peak_kv_used, "%.0f", 1);
	row("preemptions", (double)c->preemptions, (double)s->preemptions, "%.0f", 1);
	row("output tokens", (double)c->gen_tokens, (double)s->gen_tokens, "%.0f", 1);
	row("engine steps", (double)c->steps, (double)s->steps, "%.0f", 1);
	row("output tokens per step", c->steps ? (double)c->gen_tokens / (double)c->steps : NAN,
	    s->steps ? (double)s->gen_tokens / (double)s->steps : NAN, "%.2f", 1);
	row("duration (s)", c->duration, s->duration, "%.1f", 1);
	row("daemon CPU time (s)", c->daemon_cpu_s, s->daemon_cpu_s, "%.1f", 1);
	row("output tokens per daemon CPU-s", (double)c->gen_tokens / c->daemon_cpu_s,
	    (double)s->gen_tokens / s->daemon_cpu_s, "%.1f", 1);
	row("IPC share of daemon loop (%)", c->ipc_share, s->ipc_share, "%.3f", 1);
	pf_bench_row_load(LABEL_W, c->load_start, c->load_end, s->load_start, s->load_end);
	if (c->n_failed || s->n_failed)
		printf("  (requests that did not finish with exactly max_tokens tokens: continuous %d, static %d;\n"
		       "   they are left out of the rates and latencies)\n", c->n_failed, s->n_failed);
}

static void tsv_header(void)
{
	printf("# TSV\n");
	printf("regime\tmode\tclients\trequests\tfailed\toffered_req_s\tduration_s\toutput_tokens\tprompt_tokens\t"
	       "req_s\tout_tok_s\ttotal_tok_s\tttft_p50_s\tttft_p99_s\ttpot_p50_s\ttpot_p99_s\te2e_p50_s\te2e_p99_s\t"
	       "daemon_ttft_p50_s\tdaemon_ttft_p99_s\tdaemon_queue_p50_s\tpeak_running\tpeak_kv_blocks\tkv_blocks\t"
	       "steps\tpreemptions\tout_tok_per_step\tdaemon_cpu_s\tipc_share_pct\tload_start\tload_end\n");
}

static void tsv_row(const struct run_result *r)
{
	printf("%s\t%s\t%d\t%d\t%d\t%.4f\t%.3f\t%llu\t%llu\t%.4f\t%.2f\t%.2f\t%.4f\t%.4f\t%.5f\t%.5f\t%.3f\t%.3f\t"
	       "%.4f\t%.4f\t%.4f\t%d\t%d\t%d\t%llu\t%llu\t%.3f\t%.2f\t%.3f\t%.2f\t%.2f\n",
	       r->regime, r->mode, r->clients, r->n, r->n_failed, r->offered_rate, r->duration,
	       (unsigned long long)r->gen_tokens, (unsigned long long)r->prompt_tokens, r->req_s, r->out_tok_s,
	       r->total_tok_s, r->lat.ttft_p50, r->lat.ttft_p99, r->lat.tpot_p50, r->lat.tpot_p99, r->lat.e2e_p50,
	       r->lat.e2e_p99, r->d_ttft_p50, r->d_ttft_p99, r->d_queue_p50, r->peak_running, r->peak_kv_used,
	       r->kv_total, (unsigned long long)r->steps, (unsigned long long)r->preemptions,
	       r->steps ? (double)r->gen_tokens / (double)r->steps : 0.0, r->daemon_cpu_s, r->ipc_share,
	       r->load_start, r->load_end);
}

/* ---- the benchmark ------------------------------------------------------------ */

/* The workload needs the vocabulary size, which the first daemon reports. */
static int build_workload(struct bench *b)
{
	const struct opts *o = b->o;
	if (b->n_vocab <= PF_BENCH_PROMPT_ID_MIN) {
		fprintf(stderr, PROG ": the model's vocabulary (%d) is too small for synthetic prompts\n", b->n_vocab);
		return -EINVAL;
	}
	int rc = pf_bench_workload_sharegpt(PROG, o->data, o->requests, o->max_output, b->n_vocab, o->seed, &b->w);
	if (rc)
		return rc;
	for (int i = 0; i < b->w.n; i++) {
		const struct pf_bench_req *r = &b->w.reqs[i];
		if (r->n_prompt + r->max_tokens > b->max_model_len) {
			fprintf(stderr, PROG ": request %d needs %d tokens of context; the daemon allows %d (raise "
				"--kv-memory or lower --max-output)\n", i, r->n_prompt + r->max_tokens, b->max_model_len);
			return -EINVAL;
		}
	}
	pf_bench_workload_print(&b->w, o->data, o->seed, o->clients, o->max_output);
	return 0;
}

static int run_all(struct bench *b, struct run_result *out, int *n_out)
{
	const struct opts *o = b->o;
	struct run_result tc, ts;
	int rc;
	bool need_static = (o->regime & PF_BENCH_THROUGHPUT) || o->rate <= 0;
	if (o->regime & PF_BENCH_THROUGHPUT) {
		if ((rc = run_once(b, "throughput", "continuous", false, &tc)))
			return rc;
	}
	if (need_static) {
		if ((rc = run_once(b, "throughput", "static", true, &ts)))
			return rc;
	}
	if (o->regime & PF_BENCH_THROUGHPUT) {
		print_pair("throughput: every request at t = 0, across client processes", &tc, &ts);
		out[(*n_out)++] = tc;
		out[(*n_out)++] = ts;
		fflush(stdout);
	}
	if (o->regime & PF_BENCH_LATENCY) {
		double rate = o->rate > 0 ? o->rate : o->load * ts.req_s;
		if (!(rate > 0)) {
			fprintf(stderr, PROG ": the static run measured no throughput; give --rate\n");
			return -EINVAL;
		}
		pf_bench_workload_arrivals(&b->w, o->seed, rate);
		struct run_result lc, ls;
		if ((rc = run_once(b, "latency", "continuous", false, &lc)) ||
		    (rc = run_once(b, "latency", "static", true, &ls)))
			return rc;
		lc.offered_rate = ls.offered_rate = rate;
		char title[256];
		pf_bench_latency_title(title, sizeof(title), o->rate > 0, rate, o->load, ts.req_s, o->seed);
		print_pair(title, &lc, &ls);
		printf("  (arrivals span %.1f s; latencies count from each request's arrival)\n",
		       b->w.reqs[b->w.n - 1].t_arrival);
		out[(*n_out)++] = lc;
		out[(*n_out)++] = ls;
		fflush(stdout);
	}
	return 0;
}

/* pinferd beside this program (build/bin/), unless --pinferd says. */
static int find_pinferd(struct bench *b)
{
	if (b->o->pinferd) {
		snprintf(b->pinferd, sizeof(b->pinferd), "%s", b->o->pinferd);
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			return -errno;
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		snprintf(b->pinferd, sizeof(b->pinferd), "%.*s/pinferd", PATH_MAX - 16, self);
	}
	if (access(b->pinferd, X_OK)) {
		fprintf(stderr, PROG ": %s is not executable (build it, or give --pinferd)\n", b->pinferd);
		return -ENOENT;
	}
	return 0;
}

static void remove_dir(struct bench *b)
{
	if (!b->own_dir || !b->dir[0])
		return;
	if (rmdir(b->dir))
		fprintf(stderr, PROG ": cannot remove %s: %s\n", b->dir, strerror(errno));
}

int main(int argc, char **argv)
{
	enum { O_DATA = 256, O_MAXOUT, O_KVMEM, O_BS, O_STATIC, O_SEED, O_REGIME, O_RATE, O_LOAD, O_PINFERD,
	       O_SOCKDIR, O_KEEP, O_TIMEOUT, O_REQUESTS }; /* -n means completions in pinfer: --requests is long only */
	static const struct option lopts[] = {
		{ "model", required_argument, NULL, 'm' }, { "data", required_argument, NULL, O_DATA },
		{ "requests", required_argument, NULL, O_REQUESTS }, { "clients", required_argument, NULL, 'c' },
		{ "max-output", required_argument, NULL, O_MAXOUT }, { "kv-memory", required_argument, NULL, O_KVMEM },
		{ "block-size", required_argument, NULL, O_BS }, { "static-batch", required_argument, NULL, O_STATIC },
		{ "threads", required_argument, NULL, 't' }, { "seed", required_argument, NULL, O_SEED },
		{ "regime", required_argument, NULL, O_REGIME }, { "rate", required_argument, NULL, O_RATE },
		{ "load", required_argument, NULL, O_LOAD }, { "pinferd", required_argument, NULL, O_PINFERD },
		{ "socket-dir", required_argument, NULL, O_SOCKDIR }, { "keep-logs", no_argument, NULL, O_KEEP },
		{ "run-timeout", required_argument, NULL, O_TIMEOUT }, { "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct opts o = {
		.model = "models/SmolLM2-135M-Instruct.Q4_1.gguf",
		.data = "bench/data/sharegpt_lengths.tsv",
		.kv_memory = "64M",
		.requests = 16,
		.clients = 8,
		.max_output = 1024,
		.static_batch = 8,
		.block_size = 16,
		.seed = 1,
		.regime = PF_BENCH_BOTH,
		.load = 0.8,
		.run_timeout = 3600,
	};
	int c;
	long lv;
	while ((c = getopt_long(argc, argv, "m:c:t:qh", lopts, NULL)) != -1) {
		switch (c) {
		case 'm': o.model = optarg; break;
		case O_DATA: o.data = optarg; break;
		case O_REQUESTS: if (pf_bench_parse_int(PROG, optarg, "--requests", 1, 1 << 20, &o.requests)) return 2; break;
		case 'c': if (pf_bench_parse_int(PROG, optarg, "--clients", 1, MAX_CLIENTS, &o.clients)) return 2; break;
		case O_MAXOUT: if (pf_bench_parse_int(PROG, optarg, "--max-output", 1, 1 << 20, &o.max_output)) return 2; break;
		case O_KVMEM: o.kv_memory = optarg; break;
		case O_BS: if (pf_bench_parse_block_size(PROG, optarg, &o.block_size)) return 2; break;
		case O_STATIC: if (pf_bench_parse_int(PROG, optarg, "--static-batch", 1, 65536, &o.static_batch)) return 2; break;
		case 't': if (pf_bench_parse_int(PROG, optarg, "--threads", 0, 1024, &o.threads)) return 2; break;
		case O_SEED:
			if (pf_bench_parse_long(PROG, optarg, "--seed", 0, __LONG_MAX__, &lv)) return 2;
			o.seed = (uint64_t)lv;
			break;
		case O_REGIME: if (pf_bench_parse_regime(PROG, optarg, &o.regime)) return 2; break;
		case O_RATE: if (pf_bench_parse_double(PROG, optarg, "--rate", 1e-6, 1e6, &o.rate)) return 2; break;
		case O_LOAD: if (pf_bench_parse_double(PROG, optarg, "--load", 0.01, 10, &o.load)) return 2; break;
		case O_PINFERD: o.pinferd = optarg; break;
		case O_SOCKDIR: o.socket_dir = optarg; break;
		case O_KEEP: o.keep_logs = true; break;
		case O_TIMEOUT: if (pf_bench_parse_double(PROG, optarg, "--run-timeout", 1, 1e6, &o.run_timeout)) return 2; break;
		case 'q': o.quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (o.clients > o.requests) {
		if (!o.quiet)
			fprintf(stderr, PROG ": %d clients for %d requests: using %d clients\n", o.clients, o.requests,
				o.requests);
		o.clients = o.requests;
	}
	if (access(o.model, R_OK)) {
		fprintf(stderr, PROG ": cannot read the model %s (make model)\n", o.model);
		return 1;
	}

	struct bench b = { .o = &o };
	if (find_pinferd(&b))
		return 1;
	if (o.socket_dir) {
		if (strlen(o.socket_dir) >= sizeof(b.dir)) {
			fprintf(stderr, PROG ": --socket-dir %s is too long\n", o.socket_dir);
			return 2;
		}
		snprintf(b.dir, sizeof(b.dir), "%s", o.socket_dir);
	} else {
		const char *tmp = getenv("TMPDIR");
		if (!tmp || !*tmp || strlen(tmp) > 64)
			tmp = "/tmp";
		snprintf(b.dir, sizeof(b.dir), "%s/pinfer-e2e-XXXXXX", tmp);
		if (!mkdtemp(b.dir)) {
			fprintf(stderr, PROG ": mkdtemp %s: %s\n", b.dir, strerror(errno));
			return 1;
		}
		b.own_dir = true;
	}
	if (o.keep_logs)
		b.own_dir = false;

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	double t_start = pf_bench_now_s();
	struct run_result res[4];
	int n_res = 0;
	/* a first daemon for the vocabulary size and context limit */
	int rc = daemon_start(&b, "probe", false);
	if (!rc) {
		char th[32];
		if (o.threads)
			snprintf(th, sizeof(th), "%d", o.threads);
		else
			snprintf(th, sizeof(th), "all %ld CPUs", sysconf(_SC_NPROCESSORS_ONLN));
		printf("pinfer-bench-e2e: %s on %s; KV %s, block %d, static batch %d, daemon threads: %s\n", b.pinferd,
		       o.model, o.kv_memory, o.block_size, o.static_batch, th);
		daemon_stop(&b);
		if (!o.keep_logs)
			unlink(b.log);
		rc = build_workload(&b);
	}
	if (!rc)
		rc = run_all(&b, res, &n_res);
	if (n_res) {
		printf("\n");
		tsv_header();
		for (int i = 0; i < n_res; i++)
			tsv_row(&res[i]);
	}
	kill_clients(&b);
	daemon_stop(&b);
	if (!o.keep_logs && b.log[0])
		unlink(b.log); /* a daemon that failed to start leaves its log */
	if (o.keep_logs && !o.quiet)
		fprintf(stderr, PROG ": daemon logs in %s\n", b.dir);
	remove_dir(&b);
	pf_bench_workload_free(&b.w);
	if (g_stop)
		fprintf(stderr, PROG ": stopped by signal %d\n", (int)g_stop);
	if (!o.quiet)
		fprintf(stderr, PROG ": total %.1f s\n", pf_bench_now_s() - t_start);
	return rc ? 1 : 0;
}
