/*
 * pinfer-bench-serve — serving benchmark: continuous batching against the
 * static-batching baseline on a realistic workload, in process.
 *
 * The workload is --requests (prompt_len, output_len) pairs drawn (seeded,
 * without replacement) from bench/data/sharegpt_lengths.tsv, which
 * bench/sharegpt_lengths.py extracts from ShareGPT.  Prompts are synthetic
 * token ids of those lengths (a seeded PRNG over [100, n_vocab), clear of
 * the control tokens); outputs are forced to their length with ignore_eos
 * and max_tokens = min(output_len, --max-output), greedy sampling.
 *
 * Each run builds a fresh engine with the same KV budget (--kv-memory) and
 * steps it in this thread.  Two modes: continuous (the default scheduler
 * configuration) and static (static_batching, --static-batch requests per
 * batch, each reserving prompt + max_tokens up front).  Two regimes:
 *
 *   throughput  every request is submitted at t = 0;
 *   latency     Poisson arrivals (seeded) at 80% of the static mode's
 *               measured throughput in requests/s (or --rate), simulated in
 *               real time: before each step every request whose arrival
 *               time has passed is submitted; an idle engine sleeps until
 *               the next arrival.  Latencies count from the arrival time.
 *
 * Per run: output tokens/s, requests/s, TTFT, TPOT ((e2e - ttft) /
 * (output - 1), vLLM's definition), end-to-end latency (p50/p99, linear
 * interpolation), the peak number of sequences in one step, preemptions,
 * and the KV waste: (token slots in allocated blocks that hold no K/V) /
 * (slots in allocated blocks).  Slots come from the engine's block count
 * (kv.n_used x block size); tokens held are counted from the callbacks: a
 * sequence that received a token in the step just run has exactly prompt +
 * generated - 1 positions in the cache.  That is exact only for steps in
 * which every running sequence received a token (a sequence in the middle
 * of a chunked prefill holds blocks the callbacks cannot see), so only such
 * steps are sampled; the report gives the share of steps sampled.  "At
 * peak" is the sampled steps with the most allocated blocks; "mean" weighs
 * every sampled step by its allocated slots.
 *
 * Wall-clock figures move with whatever else runs on the machine (the
 * report prints the load average around each run), so two numbers that do
 * not are printed beside them: output tokens per engine step (the mean
 * decode batch: what tokens/s becomes on a backend whose step time hardly
 * depends on the batch, a memory-bound GPU) and output tokens per CPU
 * second of this process (what it becomes on a compute-bound one).
 *
 * --prefix adds (and --prefix-only runs only) the prefix-caching figure:
 * --prefix-requests prompts of 512 tokens whose first 460 are one shared
 * system prompt, 16 output tokens each, run with prefix caching off and on;
 * it reports the prompt tokens the engine computed, the prompt tokens the
 * cache served (pf_usage.cached_tokens) and the block manager's counters
 * (which count every admission attempt, so a request that waited for room
 * is queried more than once).  Two arrival patterns: "burst" (all at t = 0, a cold cache:
 * the requests admitted in the first step cannot share, their blocks are
 * not computed yet) and "warm" (one request first, then the rest, as on a
 * server that has seen the system prompt before).
 *
 * Output: readable tables (continuous and static side by side, with the
 * ratio) on stdout, then a TSV block after a "# TSV" line.  Progress goes
 * to stderr.  Timings depend on the machine and its load; nothing here
 * asserts one.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tools/bench_common.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"

#define PROG "pinfer-bench-serve"

/* ---- options ------------------------------------------------------------------ */

struct opts {
	const char *model, *data;
	int requests, max_output, static_batch, threads, block_size, max_batched, max_seqs;
	int64_t kv_memory;
	uint64_t seed;
	enum pf_bench_regime regime;
	double rate;           /* latency regime: 0 = 80% of static capacity */
	double load;           /* fraction of static capacity (default 0.8) */
	bool prefix, prefix_only;
	int prefix_requests;
	bool quiet;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n"
		"\n"
		"Serving benchmark in process: continuous batching vs the static-batching\n"
		"baseline on ShareGPT prompt/output lengths, same workload, same KV budget.\n"
		"\n"
		"  -m, --model PATH         GGUF model (default models/SmolLM2-135M-Instruct.Q4_1.gguf)\n"
		"      --data PATH          length pairs (default bench/data/sharegpt_lengths.tsv)\n"
		"      --requests N         requests per run (default 12)\n"
		"      --max-output N       cap on output tokens per request (default 1024)\n"
		"      --kv-memory BYTES    KV pool for every run (default 64M; K/M/G suffixes)\n"
		"      --block-size N       KV block size 8, 16 or 32 (default 16)\n"
		"      --static-batch N     requests per static batch (default 8)\n"
		"      --max-batched-tokens N  scheduler token budget per step, both modes\n"
		"                           (default: the scheduler's, 2048)\n"
		"      --max-seqs N         continuous mode's running-sequence cap (default: the\n"
		"                           scheduler's, 256)\n"
		"  -t, --threads N          CPU threads (default: every CPU this process may use)\n"
		"      --seed N             workload, prompt and arrival seed (default 1)\n"
		"      --regime R           throughput, latency or both (default both)\n"
		"      --rate R             latency regime arrivals in requests/s (default: --load\n"
		"                           times the static mode's measured throughput)\n"
		"      --load F             fraction of static capacity offered (default 0.8)\n"
		"      --prefix             also run the prefix-caching workload\n"
		"      --prefix-only        run only the prefix-caching workload\n"
		"      --prefix-requests N  requests in the prefix workload (default 16)\n"
		"  -q, --quiet              no progress on stderr\n"
		"  -h, --help               this text\n"
		"\n"
		"Without --rate, the latency regime first needs the static throughput run\n"
		"(it runs it if --regime latency is given alone).\n");
}

/* ---- small helpers ------------------------------------------------------------ */

/* CPU time this process has used so far, every thread. */
static double cpu_time_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru))
		return NAN;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

/* ---- workload ----------------------------------------------------------------- */

/* What one run saw of a request (the engine's callbacks get a pointer to it). */
struct req {
	int after;               /* submit only once request `after` is done (-1: no wait) */
	/* filled while running */
	double t_submit, t_first, t_done; /* absolute */
	int32_t gen, cached;     /* cached: prompt tokens the prefix cache served (usage) */
	uint64_t token_step;     /* the step that last gave it a token */
	bool submitted, done, failed;
};

struct workload {
	struct pf_bench_workload q;      /* what is asked */
	struct req *run;                 /* (q.n) */
};

static void workload_free(struct workload *w)
{
	pf_bench_workload_free(&w->q);
	free(w->run);
	w->run = NULL;
}

/* The run records for w->q, no request waiting for another.  Returns 0 or
 * -ENOMEM (w freed). */
static int workload_add_runs(struct workload *w)
{
	w->run = calloc((size_t)w->q.n, sizeof(*w->run));
	if (!w->run) {
		workload_free(w);
		return -ENOMEM;
	}
	for (int i = 0; i < w->q.n; i++)
		w->run[i].after = -1;
	return 0;
}

/* o->requests requests, the same as pinfer-bench-e2e draws (bench_common.h). */
static int workload_sharegpt(struct workload *w, const struct opts *o, int32_t n_vocab)
{
	int rc = pf_bench_workload_sharegpt(PROG, o->data, o->requests, o->max_output, n_vocab, o->seed, &w->q);
	return rc ? rc : workload_add_runs(w);
}

/* Prefix workload: n prompts of `len` tokens, the first `shared` the same. */
static int workload_prefix(struct workload *w, int n, int32_t len, int32_t shared, int32_t out, int32_t n_vocab,
			   uint64_t seed)
{
	if (pf_bench_workload_alloc(&w->q, n, (size_t)n * (size_t)len) || workload_add_runs(w))
		return -ENOMEM;
	uint64_t s = seed ^ PF_BENCH_SALT_PREFIX;
	int32_t *tok = w->q.tokens;
	for (int32_t k = 0; k < len; k++)
		tok[k] = pf_bench_prompt_token(&s, n_vocab);
	for (int i = 0; i < n; i++) {
		struct pf_bench_req *r = &w->q.reqs[i];
		r->n_prompt = len;
		r->max_tokens = out;
		r->prompt = tok + (size_t)i * (size_t)len;
		if (i > 0) {
			memcpy(r->prompt, tok, sizeof(int32_t) * (size_t)shared);
			for (int32_t k = shared; k < len; k++)
				r->prompt[k] = pf_bench_prompt_token(&s, n_vocab);
		}
	}
	return 0;
}

static void workload_reset(struct workload *w)
{
	for (int i = 0; i < w->q.n; i++) {
		struct req *r = &w->run[i];
		r->t_submit = r->t_first = r->t_done = 0;
		r->gen = r->cached = 0;
		r->token_step = 0;
		r->submitted = r->done = r->failed = false;
	}
}

/* ---- one run ------------------------------------------------------------------ */

struct run_result {
	const char *regime, *mode;
	int n, n_failed;
	double duration, out_tok_s, req_s;
	struct pf_bench_latency lat;
	int peak_running;
	double waste_peak, waste_mean;   /* NAN when no step could be sampled */
	int peak_used_blocks;            /* over every step */
	uint64_t steps, sampled_steps, preemptions;
	uint64_t gen_tokens, prompt_computed, prefix_hit, prefix_query, cached_tokens;
	double offered_rate;             /* latency regime */
	double load_start, load_end;     /* 1-minute load average around the run */
	double cpu_s;                    /* CPU time (user + system) of this process during the run */
};

struct run_ctx {
	uint64_t step;                   /* steps run so far (1-based while in a step) */
	int n_done, n_finished_step;
	const struct opts *o;
};

static void on_token(void *ctx, uint64_t id, void *user, int32_t index, int32_t token, const char *text, size_t len,
		     const struct pf_sample_result *res)
{
	struct run_ctx *c = ctx;
	struct req *r = user;
	if (r->gen++ == 0)
		r->t_first = pf_bench_now_s();
	r->token_step = c->step;
}

static void on_finish(void *ctx, uint64_t id, void *user, int32_t index, enum pf_finish_reason why, const char *text,
		      size_t len, const struct pf_usage *u)
{
	struct run_ctx *c = ctx;
	struct req *r = user;
	r->t_done = pf_bench_now_s();
	r->done = true;
	r->cached = u->cached_tokens;
	r->failed = why != PF_FINISH_LENGTH;
	c->n_done++;
	c->n_finished_step++;
}

struct engine_setup {
	const struct opts *o;
	bool static_batching, prefix_caching;
	bool shared_prefixes;    /* live sequences share blocks: the waste count would be wrong */
};

static int make_engine(const struct engine_setup *es, struct run_ctx *c, struct pf_engine **ret)
{
	const struct opts *o = es->o;
	struct pf_engine_config cfg = pf_engine_config_default();
	cfg.model_path = o->model;
	cfg.n_threads = o->threads;
	cfg.kv_memory = o->kv_memory;
	cfg.block_size = o->block_size;
	cfg.sched.prefix_caching = es->prefix_caching;
	if (o->max_batched > 0)
		cfg.sched.max_num_batched_tokens = o->max_batched;
	if (o->max_seqs > 0 && !es->static_batching)
		cfg.sched.max_num_seqs = o->max_seqs;
	if (es->static_batching) {
		cfg.sched.static_batching = true;
		cfg.sched.static_batch = o->static_batch;
	}
	struct pf_engine_events ev = { .ctx = c, .on_token = on_token, .on_finish = on_finish };
	char err[512];
	int r = pf_engine_create(&cfg, &ev, ret, err, sizeof(err));
	if (r)
		fprintf(stderr, PROG ": %s\n", err);
	return r;
}

/*
 * Run the workload on a fresh engine.  Requests whose t_arrival has passed
 * are submitted before each step (all of them at once for t_arrival = 0).
 */
static int run_workload(const struct engine_setup *es, struct workload *w, const char *regime, const char *mode,
			struct run_result *res)
{
	const struct opts *o = es->o;
	struct run_ctx c = { .o = o };
	struct pf_engine *e;
	int rc = make_engine(es, &c, &e);
	if (rc)
		return rc;
	workload_reset(w);
	memset(res, 0, sizeof(*res));
	res->regime = regime;
	res->mode = mode;
	res->n = w->q.n;

	const int32_t bs = o->block_size;
	res->load_start = pf_bench_loadavg1();
	double cpu0 = cpu_time_s();
	int next = 0, peak_used = -1, no_progress = 0;
	double waste_sum = 0, reserved_sum = 0, peak_waste = 0, peak_reserved = 0;
	char err[512];
	double t0 = pf_bench_now_s(), last_note = t0;
	struct pf_engine_stats st;

	while (c.n_done < w->q.n) {
		double t = pf_bench_now_s() - t0;
		while (next < w->q.n && w->q.reqs[next].t_arrival <= t &&
		       (w->run[next].after < 0 || w->run[w->run[next].after].done)) {
			const struct pf_bench_req *q = &w->q.reqs[next];
			struct req *r = &w->run[next];
			struct pf_request_params p = pf_request_params_default();
			p.sampling.temperature = 0;
			p.sampling.ignore_eos = true;
			p.sampling.max_tokens = q->max_tokens;
			uint64_t id;
			rc = pf_engine_submit(e, q->prompt, q->n_prompt, &p, r, &id, err, sizeof(err));
			if (rc) {
				fprintf(stderr, PROG ": request %d: %s%s\n", next, err,
					rc == -EINVAL ? " (raise --kv-memory or lower --max-output)" : "");
				goto out;
			}
			r->submitted = true;
			r->t_submit = pf_bench_now_s();
			next++;
		}
		if (!pf_engine_has_work(e)) {
			if (next < w->q.n)
				pf_bench_sleep_s(w->q.reqs[next].t_arrival - (pf_bench_now_s() - t0));
			continue;
		}
		c.step++;
		c.n_finished_step = 0;
		int n = pf_engine_step(e);
		if (n < 0) {
			fprintf(stderr, PROG ": engine step failed: %s\n", strerror(-n));
			rc = n;
			goto out;
		}
		if (n == 0) {
			/* work queued but nothing admitted: with nothing running
			 * that can only mean a request the pool cannot hold */
			if (++no_progress > 1000) {
				fprintf(stderr,
					PROG ": %s/%s: the engine has work but schedules nothing (a request the KV pool can "
					"never admit?)\n", regime, mode);
				rc = -EDEADLK;
				goto out;
			}
			c.step--;
			continue;
		}
		no_progress = 0;
		pf_engine_get_stats(e, &st);
		int in_step = st.running + c.n_finished_step;
		if (in_step > res->peak_running)
			res->peak_running = in_step;
		if (st.kv.n_used > res->peak_used_blocks)
			res->peak_used_blocks = st.kv.n_used;
		/* KV waste: exact when every running sequence got a token now */
		int64_t held = 0;
		int n_acc = 0;
		for (int i = 0; i < next; i++) {
			const struct req *r = &w->run[i];
			if (r->done || r->token_step != c.step)
				continue;
			held += w->q.reqs[i].n_prompt + r->gen - 1;
			n_acc++;
		}
		if (!es->shared_prefixes && n_acc == st.running && st.kv.n_used > 0) {
			double reserved = (double)st.kv.n_used * bs;
			double waste = reserved - (double)held;
			res->sampled_steps++;
			waste_sum += waste;
			reserved_sum += reserved;
			if (st.kv.n_used > peak_used) {
				peak_used = st.kv.n_used;
				peak_waste = peak_reserved = 0;
			}
			if (st.kv.n_used == peak_used) {
				peak_waste += waste;
				peak_reserved += reserved;
			}
		}
		if (!o->quiet && pf_bench_now_s() - last_note > 10) {
			last_note = pf_bench_now_s();
			fprintf(stderr, PROG ": %s/%s: %.0f s, %d/%d done, %d running, %d waiting, %d/%d blocks used\n",
				regime, mode, last_note - t0, c.n_done, w->q.n, st.running, st.waiting, st.kv.n_used,
				st.kv.n_blocks);
		}
	}
	double t_end = pf_bench_now_s();
	pf_engine_get_stats(e, &st);

	double *ttft = malloc(sizeof(double) * (size_t)w->q.n * 3);
	if (!ttft) {
		rc = -ENOMEM;
		goto out;
	}
	double *tpot = ttft + w->q.n, *e2e = tpot + w->q.n;
	int n_tpot = 0, n_ok = 0;
	uint64_t gen = 0;
	for (int i = 0; i < w->q.n; i++) {
		const struct req *r = &w->run[i];
		gen += (uint64_t)r->gen;
		res->cached_tokens += (uint64_t)r->cached;
		if (r->failed) {
			res->n_failed++;
			continue;
		}
		/* latency counts from the arrival, which a request that waited
		 * for another one reaches when it is submitted */
		double arr = r->after >= 0 ? r->t_submit : t0 + w->q.reqs[i].t_arrival;
		ttft[n_ok] = r->t_first - arr;
		e2e[n_ok] = r->t_done - arr;
		n_ok++;
		if (r->gen > 1)
			tpot[n_tpot++] = (r->t_done - r->t_first) / (r->gen - 1);
	}
	res->duration = t_end - t0;
	res->load_end = pf_bench_loadavg1();
	res->cpu_s = cpu_time_s() - cpu0;
	res->gen_tokens = gen;
	res->out_tok_s = (double)gen / res->duration;
	res->req_s = w->q.n / res->duration;
	pf_bench_latency_from(&res->lat, ttft, e2e, n_ok, tpot, n_tpot);
	free(ttft);
	res->waste_peak = peak_reserved > 0 ? peak_waste / peak_reserved : NAN;
	res->waste_mean = reserved_sum > 0 ? waste_sum / reserved_sum : NAN;
	res->steps = st.steps;
	res->preemptions = st.preemptions;
	res->prompt_computed = st.prompt_tokens_computed;
	res->prefix_hit = st.kv.prefix_hits_tokens;
	res->prefix_query = st.kv.prefix_queries_tokens;
	if (res->n_failed)
		fprintf(stderr, PROG ": %s/%s: %d requests did not finish by length (stopped, cancelled or failed)\n",
			regime, mode, res->n_failed);
	if (!o->quiet)
		fprintf(stderr, PROG ": %s/%s: %d requests, %llu output tokens in %.1f s\n", regime, mode, w->q.n,
			(unsigned long long)gen, res->duration);
out:
	pf_engine_destroy(e);
	return rc;
}

/* ---- report ------------------------------------------------------------------- */

#define LABEL_W 28 /* the label column */

static void row(const char *name, double a, double b, const char *fmt, double scale)
{
	pf_bench_row(LABEL_W, name, a, b, fmt, scale);
}

static void print_pair(const char *title, const struct run_result *c, const struct run_result *s)
{
	pf_bench_table_head(LABEL_W, title);
	row("output tokens/s", c->out_tok_s, s->out_tok_s, "%.1f", 1);
	row("requests/s", c->req_s, s->req_s, "%.3f", 1);
	pf_bench_rows_latency(LABEL_W, &c->lat, &s->lat);
	row("peak running seqs", c->peak_running, s->peak_running, "%.0f", 1);
	row("peak KV blocks used", c->peak_used_blocks, s->peak_used_blocks, "%.0f", 1);
	row("KV waste at peak (%)", c->waste_peak, s->waste_peak, "%.1f", 100);
	row("KV waste, mean (%)", c->waste_mean, s->waste_mean, "%.1f", 100);
	row("steps sampled for waste (%)", c->steps ? (double)c->sampled_steps / (double)c->steps : NAN,
	    s->steps ? (double)s->sampled_steps / (double)s->steps : NAN, "%.0f", 100);
	row("preemptions", (double)c->preemptions, (double)s->preemptions, "%.0f", 1);
	row("output tokens", (double)c->gen_tokens, (double)s->gen_tokens, "%.0f", 1);
	row("engine steps", (double)c->steps, (double)s->steps, "%.0f", 1);
	row("output tokens per step", c->steps ? (double)c->gen_tokens / (double)c->steps : NAN,
	    s->steps ? (double)s->gen_tokens / (double)s->steps : NAN, "%.2f", 1);
	row("duration (s)", c->duration, s->duration, "%.1f", 1);
	row("CPU time (s)", c->cpu_s, s->cpu_s, "%.1f", 1);
	row("output tokens per CPU-second", (double)c->gen_tokens / c->cpu_s, (double)s->gen_tokens / s->cpu_s, "%.1f", 1);
	pf_bench_row_load(LABEL_W, c->load_start, c->load_end, s->load_start, s->load_end);
}

static void tsv_header(void)
{
	printf("# TSV\n");
	printf("regime\tmode\trequests\tfailed\toffered_req_s\tduration_s\toutput_tokens\tout_tok_s\treq_s\tttft_p50_s\t"
	       "ttft_p99_s\ttpot_p50_s\ttpot_p99_s\te2e_p50_s\te2e_p99_s\tpeak_running\tpeak_kv_blocks\t"
	       "kv_waste_peak\tkv_waste_mean\tsampled_steps\tsteps\tpreemptions\tprompt_tokens_computed\t"
	       "prefix_hit_tokens\tprefix_query_tokens\tout_tok_per_step\tload_start\tload_end\tcpu_s\t"
	       "cached_prompt_tokens\n");
}

static void tsv_row(const struct run_result *r)
{
	printf("%s\t%s\t%d\t%d\t%.4f\t%.3f\t%llu\t%.2f\t%.4f\t%.4f\t%.4f\t%.5f\t%.5f\t%.3f\t%.3f\t%d\t%d\t%.4f\t%.4f\t"
	       "%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%.3f\t%.2f\t%.2f\t%.2f\t%llu\n",
	       r->regime, r->mode, r->n, r->n_failed, r->offered_rate, r->duration, (unsigned long long)r->gen_tokens,
	       r->out_tok_s, r->req_s, r->lat.ttft_p50, r->lat.ttft_p99, r->lat.tpot_p50, r->lat.tpot_p99, r->lat.e2e_p50,
	       r->lat.e2e_p99, r->peak_running, r->peak_used_blocks, r->waste_peak, r->waste_mean,
	       (unsigned long long)r->sampled_steps, (unsigned long long)r->steps, (unsigned long long)r->preemptions,
	       (unsigned long long)r->prompt_computed, (unsigned long long)r->prefix_hit,
	       (unsigned long long)r->prefix_query, r->steps ? (double)r->gen_tokens / (double)r->steps : 0.0,
	       r->load_start, r->load_end, r->cpu_s, (unsigned long long)r->cached_tokens);
}

/* ---- the benchmark ------------------------------------------------------------ */

#define MAX_RESULTS 12

static int run_serving(const struct opts *o, int32_t n_vocab, struct run_result *out, int *n_out)
{
	struct workload w = { 0 };
	int rc = workload_sharegpt(&w, o, n_vocab);
	if (rc)
		return rc;
	pf_bench_workload_print(&w.q, o->data, o->seed, 0, o->max_output);

	struct engine_setup cont = { .o = o, .static_batching = false, .prefix_caching = true };
	struct engine_setup stat = { .o = o, .static_batching = true, .prefix_caching = false };
	struct run_result tc, ts;
	if (o->regime & PF_BENCH_THROUGHPUT) {
		if ((rc = run_workload(&cont, &w, "throughput", "continuous", &tc)))
			goto out;
	}
	if ((o->regime & PF_BENCH_THROUGHPUT) || o->rate <= 0) {
		if ((rc = run_workload(&stat, &w, "throughput", "static", &ts)))
			goto out;
	}
	if (o->regime & PF_BENCH_THROUGHPUT) {
		print_pair("throughput: every request at t = 0", &tc, &ts);
		out[(*n_out)++] = tc;
		out[(*n_out)++] = ts;
		fflush(stdout);
	}
	if (o->regime & PF_BENCH_LATENCY) {
		double rate = o->rate > 0 ? o->rate : o->load * ts.req_s;
		pf_bench_workload_arrivals(&w.q, o->seed, rate);
		struct run_result lc, ls;
		if ((rc = run_workload(&cont, &w, "latency", "continuous", &lc)) ||
		    (rc = run_workload(&stat, &w, "latency", "static", &ls)))
			goto out;
		lc.offered_rate = ls.offered_rate = rate;
		char title[256];
		pf_bench_latency_title(title, sizeof(title), o->rate > 0, rate, o->load, ts.req_s, o->seed);
		print_pair(title, &lc, &ls);
		printf("  (arrivals span %.1f s; latencies count from each request's arrival)\n",
		       w.q.reqs[w.q.n - 1].t_arrival);
		out[(*n_out)++] = lc;
		out[(*n_out)++] = ls;
		fflush(stdout);
	}
out:
	workload_free(&w);
	return rc;
}

#define PREFIX_LEN 512
#define PREFIX_SHARED 460
#define PREFIX_OUT 16

static int run_prefix(const struct opts *o, int32_t n_vocab, struct run_result *out, int *n_out)
{
	struct workload w = { 0 };
	int rc = workload_prefix(&w, o->prefix_requests, PREFIX_LEN, PREFIX_SHARED, PREFIX_OUT, n_vocab, o->seed);
	if (rc)
		return rc;
	struct engine_setup off = { .o = o, .prefix_caching = false, .shared_prefixes = true };
	struct engine_setup on = { .o = o, .prefix_caching = true, .shared_prefixes = true };
	/* Without the cache every prompt token is computed whatever the
	 * arrivals, so one cache-off run serves as the baseline for both. */
	struct run_result r[3];
	for (int k = 0; k < 3 && !rc; k++) {
		for (int i = 0; i < w.q.n; i++)
			w.run[i].after = k == 2 && i > 0 ? 0 : -1;
		rc = run_workload(k ? &on : &off, &w, k == 2 ? "prefix-warm" : "prefix-burst", k ? "cache-on" : "cache-off",
				  &r[k]);
	}
	if (rc)
		goto done;
	printf("\n== prefix caching: %d requests, %d-token prompts whose first %d tokens are shared, %d output tokens ==\n",
	       w.q.n, PREFIX_LEN, PREFIX_SHARED, PREFIX_OUT);
	printf("  burst: all at t = 0 (cold cache); warm: the first request alone, then the other %d\n", w.q.n - 1);
	printf("  %-30s %12s %12s %12s\n", "", "cache off", "on, burst", "on, warm");
	printf("  %-30s %12llu %12llu %12llu\n", "prompt tokens computed", (unsigned long long)r[0].prompt_computed,
	       (unsigned long long)r[1].prompt_computed, (unsigned long long)r[2].prompt_computed);
	printf("  %-30s %12s", "reduction vs cache off", "1.00x");
	for (int k = 1; k < 3; k++)
		printf(" %11.2fx", r[k].prompt_computed ? (double)r[0].prompt_computed / (double)r[k].prompt_computed : NAN);
	printf("\n  %-30s %12llu %12llu %12llu\n", "prompt tokens served by cache", (unsigned long long)r[0].cached_tokens,
	       (unsigned long long)r[1].cached_tokens, (unsigned long long)r[2].cached_tokens);
	printf("  %-30s", "kv prefix hit/query counters");
	for (int k = 0; k < 3; k++) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%llu/%llu", (unsigned long long)r[k].prefix_hit,
			 (unsigned long long)r[k].prefix_query);
		printf(" %12s", buf);
	}
	printf("\n  %-30s %12llu %12llu %12llu\n", "preemptions", (unsigned long long)r[0].preemptions,
	       (unsigned long long)r[1].preemptions, (unsigned long long)r[2].preemptions);
	printf("  %-30s %12.1f %12.1f %12.1f\n", "duration (s)", r[0].duration, r[1].duration, r[2].duration);
	fflush(stdout);
	for (int k = 0; k < 3; k++)
		out[(*n_out)++] = r[k];
done:
	workload_free(&w);
	return rc;
}

int main(int argc, char **argv)
{
	enum { O_DATA = 256, O_MAXOUT, O_KVMEM, O_BS, O_STATIC, O_SEED, O_REGIME, O_RATE, O_LOAD, O_PREFIX,
	       O_PREFIX_ONLY, O_PREFIX_N, O_MAXBATCH, O_MAXSEQS, O_REQUESTS }; /* -n means completions in pinfer */
	static const struct option lopts[] = {
		{ "model", required_argument, NULL, 'm' }, { "data", required_argument, NULL, O_DATA },
		{ "requests", required_argument, NULL, O_REQUESTS }, { "max-output", required_argument, NULL, O_MAXOUT },
		{ "kv-memory", required_argument, NULL, O_KVMEM }, { "block-size", required_argument, NULL, O_BS },
		{ "static-batch", required_argument, NULL, O_STATIC }, { "threads", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, O_SEED }, { "regime", required_argument, NULL, O_REGIME },
		{ "rate", required_argument, NULL, O_RATE }, { "load", required_argument, NULL, O_LOAD },
		{ "prefix", no_argument, NULL, O_PREFIX }, { "prefix-only", no_argument, NULL, O_PREFIX_ONLY },
		{ "prefix-requests", required_argument, NULL, O_PREFIX_N }, { "quiet", no_argument, NULL, 'q' },
		{ "max-batched-tokens", required_argument, NULL, O_MAXBATCH },
		{ "max-seqs", required_argument, NULL, O_MAXSEQS },
		{ "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct opts o = {
		.model = "models/SmolLM2-135M-Instruct.Q4_1.gguf",
		.data = "bench/data/sharegpt_lengths.tsv",
		.requests = 12,
		.max_output = 1024,
		.static_batch = 8,
		.threads = 0,
		.block_size = 16,
		.kv_memory = 64LL << 20,
		.seed = 1,
		.regime = PF_BENCH_BOTH,
		.load = 0.8,
		.prefix_requests = 16,
	};
	int c;
	long lv;
	while ((c = getopt_long(argc, argv, "m:t:qh", lopts, NULL)) != -1) {
		switch (c) {
		case 'm': o.model = optarg; break;
		case O_DATA: o.data = optarg; break;
		case O_REQUESTS: if (pf_bench_parse_int(PROG, optarg, "--requests", 1, 1 << 20, &o.requests)) return 2; break;
		case O_MAXOUT: if (pf_bench_parse_int(PROG, optarg, "--max-output", 1, 1 << 20, &o.max_output)) return 2; break;
		case O_KVMEM: if (pf_bench_parse_size(PROG, optarg, "--kv-memory", "64M", &o.kv_memory)) return 2; break;
		case O_BS: if (pf_bench_parse_block_size(PROG, optarg, &o.block_size)) return 2; break;
		case O_STATIC: if (pf_bench_parse_int(PROG, optarg, "--static-batch", 1, 4096, &o.static_batch)) return 2; break;
		case 't': if (pf_bench_parse_int(PROG, optarg, "--threads", 0, 1024, &o.threads)) return 2; break;
		case O_SEED:
			if (pf_bench_parse_long(PROG, optarg, "--seed", 0, __LONG_MAX__, &lv)) return 2;
			o.seed = (uint64_t)lv;
			break;
		case O_REGIME: if (pf_bench_parse_regime(PROG, optarg, &o.regime)) return 2; break;
		case O_RATE: if (pf_bench_parse_double(PROG, optarg, "--rate", 1e-6, 1e6, &o.rate)) return 2; break;
		case O_LOAD: if (pf_bench_parse_double(PROG, optarg, "--load", 0.01, 10, &o.load)) return 2; break;
		case O_PREFIX: o.prefix = true; break;
		case O_PREFIX_ONLY: o.prefix = o.prefix_only = true; break;
		case O_PREFIX_N:
			if (pf_bench_parse_int(PROG, optarg, "--prefix-requests", 2, 4096, &o.prefix_requests)) return 2;
			break;
		case O_MAXBATCH:
			if (pf_bench_parse_int(PROG, optarg, "--max-batched-tokens", 1, 1 << 20, &o.max_batched)) return 2;
			break;
		case O_MAXSEQS: if (pf_bench_parse_int(PROG, optarg, "--max-seqs", 1, 1 << 20, &o.max_seqs)) return 2; break;
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

	/* One engine up front for its description and the vocabulary size. */
	struct run_ctx dummy = { .o = &o };
	struct engine_setup es = { .o = &o };
	struct pf_engine *e;
	if (make_engine(&es, &dummy, &e))
		return 1;
	int32_t n_vocab = pf_engine_model(e)->w.hp.n_vocab;
	struct pf_engine_stats st;
	pf_engine_get_stats(e, &st);
	printf("pinfer-bench-serve: %s\n", pf_engine_describe(e));
	printf("KV budget: %.0f MiB = %d blocks x %d = %d token slots for every run; static batch %d; "
	       "max_num_batched_tokens %d\n",
	       (double)o.kv_memory / (1 << 20), st.kv.n_blocks, o.block_size, st.kv.n_blocks * o.block_size,
	       o.static_batch, o.max_batched > 0 ? o.max_batched : pf_engine_config_default().sched.max_num_batched_tokens);
	pf_engine_destroy(e);
	if (n_vocab <= PF_BENCH_PROMPT_ID_MIN) {
		fprintf(stderr, PROG ": the model's vocabulary (%d) is too small for synthetic prompts\n", n_vocab);
		return 1;
	}

	struct run_result res[MAX_RESULTS];
	int n_res = 0, rc = 0;
	double t_start = pf_bench_now_s();
	if (!o.prefix_only)
		rc = run_serving(&o, n_vocab, res, &n_res);
	if (!rc && o.prefix)
		rc = run_prefix(&o, n_vocab, res, &n_res);
	if (n_res) {
		printf("\n");
		tsv_header();
		for (int i = 0; i < n_res; i++)
			tsv_row(&res[i]);
	}
	fprintf(stderr, PROG ": total %.1f s\n", pf_bench_now_s() - t_start);
	return rc ? 1 : 0;
}
