/*
 * bench_serve.c — serving throughput of the CUDA backend under the
 * continuous-batching scheduler, against the static-batching baseline, on
 * a synthetic Llama-3-8B-shaped model.
 *
 * A plain C driver built by `make build-gpu/bench_serve` (and run by `make
 * bench-gpu`) with nothing but nvcc, a C compiler and libc: the GPU machine
 * has no Debian packages, so it drives runtime/engine/scheduler.c and
 * runtime/engine/kv.c directly instead of runtime/engine/engine.c (which needs the
 * tokenizer's PCRE2), and kv.c gets the xxHash shim of tests/gpu/shim.
 * Weights are noise of the real shapes and types (synth.h): a decode step
 * reads as many bytes as with the real model.
 *
 * Workload (tools/bench_common.h, the same draw as pinfer-bench-serve and
 * pinfer-bench-e2e for the same --requests/--seed): (prompt, output) length
 * pairs from bench/data/sharegpt_lengths.tsv, drawn without replacement
 * (seeded), prompts of random token ids, every request submitted at t = 0,
 * ignore_eos: each request generates exactly min(output, --max-output)
 * tokens, each the argmax of its logits (greedy).
 *
 * One step: pf_sched_step → the step's block operations (CoW copies) →
 * forward over the flattened batch → pf_sched_step_done → argmax of each
 * logits row → append the token, or finish the request at its length.  The
 * time of each part is measured and printed as a share of the run: with
 * --sample device (the CUDA default) the logits stay on the GPU and only
 * the argmax ids come back; --sample host copies every logits row to the
 * host and takes the argmax there (what the engine does today), so the
 * copy's cost can be seen.
 *
 * Modes: continuous (the scheduler's defaults except --max-seqs and
 * --max-batched-tokens) and static (its static_batching baseline,
 * --static-batch requests per batch); --mode both runs continuous then
 * static on the same requests and the same backend (a fresh scheduler and
 * block manager per mode: the pool's old bytes are never read, since no
 * prefix-cache entry survives) and prints the ratio.
 *
 * The scheduler admits a static batch in one step (nothing more until it
 * has drained), so that step's token budget must hold the batch's prompts,
 * or the baseline runs smaller batches than --static-batch says.  The
 * static mode's budget is therefore max(--max-batched-tokens, the largest
 * sum of prompts of --static-batch consecutive requests), capped by
 * --static-max-batched-tokens (activation memory grows with it).
 *
 * --time-limit stops a mode when exceeded; the report then says so and
 * covers what was done until then.  Exits 77 with --backend cuda and no
 * CUDA device.  Progress goes to stderr, the report to stdout, ending in
 * one "serve ..." key=value line per mode (and one "serve compare ...").
 *
 *   make build-gpu/bench_serve && build-gpu/bench_serve     8B F16, 1000 requests, both modes
 *   build-gpu/bench_serve --max-seqs 128                     continuous capped at batch 128
 *   build-gpu/bench_serve --tiny --backend cpu --requests 40 --max-output 64
 *                                                            the driver's logic without a GPU
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda.h"
#include "kernels/dtype.h"
#include "runtime/engine/scheduler.h"
#include "tests/gpu/synth.h"
#include "tools/bench_common.h"

#define PROG "bench_serve"

/* ---- options ------------------------------------------------------------------ */

enum run_modes { MODE_CONTINUOUS = 1, MODE_STATIC = 2, MODE_BOTH = 3 };

struct opts {
	bool tiny, cuda, sample_host;
	int32_t n_layer;            /* 0: the preset's */
	uint32_t wtype;
	enum run_modes modes;
	int requests, max_output, max_seqs, max_batched, static_batch, static_max_batched;
	int32_t kv_blocks;          /* 0: CUDA sizes the pool by memory utilization */
	double mem_util;            /* 0: the CUDA backend's default */
	double time_limit;
	int threads;                /* CPU backend */
	uint64_t seed;
	const char *data;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n"
		"\n"
		"Continuous batching vs the static-batching baseline through the scheduler and\n"
		"a backend, on ShareGPT lengths with a synthetic model (random weights).\n"
		"\n"
		"  --preset llama3-8b|tiny     model shape (default llama3-8b)\n"
		"  --tiny                      = --preset tiny (4 layers unless --layers)\n"
		"  --layers N                  layers (default: 32, tiny 4)\n"
		"  --type T                    weight type: f16 (default), bf16, f32, q8_0, q4_0,\n"
		"                              q4_1, q4_k (ffn_down/output q6_k), q6_k\n"
		"  --backend cuda|cpu          (default cuda; exits 77 without a CUDA device)\n"
		"  --threads N                 CPU backend threads (default 0: all)\n"
		"  --mode continuous|static|both  (default both)\n"
		"  --requests N                requests (default 1000)\n"
		"  --max-output N              cap on output tokens per request (default none)\n"
		"  --max-seqs N                continuous: max_num_seqs (default 256)\n"
		"  --max-batched-tokens N      token budget per step (default 8192)\n"
		"  --static-batch B            static: requests per batch (default 128)\n"
		"  --static-max-batched-tokens N  cap on the static mode's budget (default 16384)\n"
		"  --kv-blocks N               KV pool blocks of 16 tokens (default: CUDA by\n"
		"                              memory utilization, CPU 2048)\n"
		"  --gpu-memory-utilization F  CUDA share of device memory (default 0.90)\n"
		"  --sample device|host        argmax on the GPU (default) or logits to the host\n"
		"  --time-limit S              seconds per mode before stopping (default 240)\n"
		"  --seed N                    workload seed (default 1)\n"
		"  --data PATH                 (default bench/data/sharegpt_lengths.tsv)\n"
		"  -h, --help\n");
}

static int parse_type(const char *s, uint32_t *ret)
{
	static const uint32_t ok[] = { PF_DT_F16, PF_DT_BF16, PF_DT_F32, PF_DT_Q8_0, PF_DT_Q4_0, PF_DT_Q4_1,
				       PF_DT_Q4_K, PF_DT_Q6_K };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!strcasecmp(s, pf_dtype_name(ok[i]))) {
			*ret = ok[i];
			return 0;
		}
	fprintf(stderr, PROG ": --type wants f16, bf16, f32, q8_0, q4_0, q4_1, q4_k or q6_k, got '%s'\n", s);
	return -EINVAL;
}

/* ---- sampling ----------------------------------------------------------------- */

/*
 * Where forward() writes the logits and where their argmax is taken.  The
 * CUDA backend copies the wanted logits rows into the caller's buffer with
 * cudaMemcpyDefault, so a device buffer keeps them on the GPU (a
 * device-to-device copy, ~0.1 ms for 256 rows of 128256).
 */
struct sampler {
	bool cuda, on_device;
	int32_t n_vocab, cap;
	float *logits;         /* (cap, n_vocab) forward's output: device memory under CUDA */
	float *h_logits;       /* (cap, n_vocab) pinned host copy (CUDA, --sample host) */
	int32_t *d_ids;        /* (cap) device argmax (CUDA, --sample device) */
	int32_t *h_ids;        /* (cap) the chosen tokens on the host */
	uint64_t bad_rows;     /* rows without a finite maximum (NaN/inf noise) */
	struct pf_cuda_launch lc;
	char err[512];
};

static void sampler_free(struct sampler *sp)
{
	if (sp->cuda) {
		pf_cuda_free(sp->logits);
		pf_cuda_host_free(sp->h_logits);
		pf_cuda_free(sp->d_ids);
		pf_cuda_host_free(sp->h_ids);
		pf_cuda_stream_destroy(sp->lc.stream);
	} else {
		free(sp->logits);
		free(sp->h_ids);
	}
	sp->logits = sp->h_logits = NULL;
	sp->d_ids = sp->h_ids = NULL;
	sp->lc.stream = NULL;
	sp->cap = 0;
}

/* Room for `rows` logits rows.  Returns 0 or a negative errno (message in
 * sp->err). */
static int sampler_reserve(struct sampler *sp, int32_t rows)
{
	if (rows <= sp->cap)
		return 0;
	const size_t lb = sizeof(float) * (size_t)rows * (size_t)sp->n_vocab, ib = sizeof(int32_t) * (size_t)rows;
	if (!sp->cuda) {
		free(sp->logits);
		free(sp->h_ids);
		sp->logits = malloc(lb);
		sp->h_ids = malloc(ib);
		if (!sp->logits || !sp->h_ids) {
			snprintf(sp->err, sizeof(sp->err), "out of host memory for %d logits rows", rows);
			return -ENOMEM;
		}
		sp->cap = rows;
		return 0;
	}
	void *stream = sp->lc.stream;
	sp->lc.stream = NULL; /* kept across the regrowth */
	sampler_free(sp);
	sp->lc.stream = stream;
	int r = 0;
	if (!sp->lc.stream)
		r = pf_cuda_stream_create(&sp->lc.stream, sp->err, sizeof(sp->err));
	r = r ?: pf_cuda_malloc((void **)&sp->logits, lb, sp->err, sizeof(sp->err)) ?:
		 pf_cuda_host_alloc((void **)&sp->h_ids, ib, sp->err, sizeof(sp->err));
	if (!r && sp->on_device)
		r = pf_cuda_malloc((void **)&sp->d_ids, ib, sp->err, sizeof(sp->err));
	if (!r && !sp->on_device)
		r = pf_cuda_host_alloc((void **)&sp->h_logits, lb, sp->err, sizeof(sp->err));
	if (r)
		return r;
	sp->cap = rows;
	return 0;
}

/* Index of the largest of row (n), ties to the lowest; -1 when no element
 * is finite and above -inf or one is NaN/+inf (pf_cuda_argmax's rule). */
static int32_t host_argmax(const float *row, int32_t n)
{
	int32_t best = -1;
	float bv = -INFINITY;
	for (int32_t i = 0; i < n; i++) {
		if (isnan(row[i]) || row[i] == INFINITY)
			return -1;
		if (row[i] > bv)
			bv = row[i], best = i;
	}
	return best;
}

/*
 * The argmax of each of the `rows` logits rows forward() just wrote, into
 * sp->h_ids.  *t_copy: seconds spent moving logits to the host (0 on the
 * device path); *t_argmax: the rest (the device path's kernel and the ids'
 * copy back).  Returns 0 or a negative errno.
 */
static int sampler_run(struct sampler *sp, int32_t rows, double *t_copy, double *t_argmax)
{
	double t0 = pf_bench_now_s(), t1 = t0;
	int r = 0;
	const float *host = sp->logits;
	if (sp->cuda && sp->on_device) {
		r = pf_cuda_argmax(sp->d_ids, sp->logits, rows, sp->n_vocab, &sp->lc) ?:
		    pf_cuda_memcpy(sp->h_ids, sp->d_ids, sizeof(int32_t) * (size_t)rows, &sp->lc) ?:
		    pf_cuda_sync(&sp->lc);
		*t_copy = 0;
		*t_argmax = pf_bench_now_s() - t0;
	} else {
		if (sp->cuda) {
			r = pf_cuda_memcpy(sp->h_logits, sp->logits, sizeof(float) * (size_t)rows * (size_t)sp->n_vocab,
					   &sp->lc) ?:
			    pf_cuda_sync(&sp->lc);
			host = sp->h_logits;
			t1 = pf_bench_now_s();
		}
		for (int32_t i = 0; !r && i < rows; i++)
			sp->h_ids[i] = host_argmax(host + (size_t)i * (size_t)sp->n_vocab, sp->n_vocab);
		*t_copy = t1 - t0;
		*t_argmax = pf_bench_now_s() - t1;
	}
	for (int32_t i = 0; !r && i < rows; i++)
		if (sp->h_ids[i] < 0) {
			/* noise weights may overflow somewhere: keep the request's
			 * length (the work is the same), but say so */
			sp->h_ids[i] = PF_BENCH_PROMPT_ID_MIN;
			sp->bad_rows++;
		}
	return r;
}

/* ---- one run ------------------------------------------------------------------ */

struct sreq {
	struct pf_req base;     /* base.user points back here */
	const struct pf_bench_req *q;
	int32_t gen;            /* tokens generated so far */
	bool done;
};

struct mode_result {
	const char *mode;
	bool complete;           /* every request finished within the time limit */
	int n, n_done;
	uint64_t out_tokens, prompt_tokens, prompt_rows, steps, decode_steps, decode_tokens, preemptions;
	double wall, decode_time;
	double t_sched, t_blockops, t_forward, t_copy, t_argmax;
	double mean_seqs;
	int32_t max_seqs, kv_blocks, kv_peak, budget, seq_cap;
};

struct bench {
	struct opts o;
	struct pf_backend be;
	struct sampler sp;
	struct pf_bench_workload w;
	int32_t n_vocab;
	char err[512];
};

/* Run the step's block operations before its forward pass: today the CoW
 * copies; the swap lists will join here, in the order scheduler.h gives.
 * Returns 0 or the backend's negative errno. */
static int run_block_ops(struct pf_backend *be, const struct pf_sched_batch *b)
{
	int r = 0;
	/* scheduler.h's order: swap-outs first (their blocks may be reused
	 * in this step), then CoW copies, then swap-ins */
	if (b->n_swap_out)
		r = be->ops->swap_out(be->ctx, (const struct pf_block_pair *)b->swap_out, b->n_swap_out);
	for (int32_t i = 0; i < b->n_copies && !r; i++)
		r = be->ops->copy_block(be->ctx, b->copies[i].src, b->copies[i].dst);
	if (!r && b->n_swap_in)
		r = be->ops->swap_in(be->ctx, (const struct pf_block_pair *)b->swap_in, b->n_swap_in);
	return r;
}

/* The static mode's token budget: the largest prompt sum of static_batch
 * consecutive requests (the scheduler admits them in submission order, a
 * whole batch in one step), at least the continuous budget, at most the
 * cap. */
static int32_t static_budget(const struct bench *bn, bool *ret_capped)
{
	const struct opts *o = &bn->o;
	int64_t best = 0;
	for (int i = 0; i < bn->w.n; i += o->static_batch) {
		int64_t sum = 0;
		for (int k = i; k < bn->w.n && k < i + o->static_batch; k++)
			sum += bn->w.reqs[k].n_prompt;
		best = sum > best ? sum : best;
	}
	*ret_capped = best > o->static_max_batched;
	if (best > o->static_max_batched)
		best = o->static_max_batched;
	return (int32_t)(best > o->max_batched ? best : o->max_batched);
}

static int run_mode(struct bench *bn, bool is_static, struct mode_result *res)
{
	const struct opts *o = &bn->o;
	struct pf_kv *kv = NULL;
	struct pf_sched *s = NULL;
	struct sreq *reqs = calloc((size_t)bn->w.n, sizeof(*reqs));
	int r = reqs ? 0 : -ENOMEM;
	memset(res, 0, sizeof(*res));
	res->mode = is_static ? "static" : "continuous";
	res->n = bn->w.n;
	res->kv_blocks = bn->be.kv.n_blocks;

	struct pf_sched_config cfg = pf_sched_config_default();
	cfg.max_num_batched_tokens = o->max_batched;
	cfg.max_num_seqs = o->max_seqs;
	if (is_static) {
		bool capped;
		cfg.static_batching = true;
		cfg.static_batch = o->static_batch;
		cfg.max_num_seqs = o->static_batch > o->max_seqs ? o->static_batch : o->max_seqs;
		cfg.max_num_batched_tokens = static_budget(bn, &capped);
		if (capped)
			printf("note: static batches' prompts exceed --static-max-batched-tokens %d: some batches will "
			       "be admitted smaller than %d\n", o->static_max_batched, o->static_batch);
	}
	res->budget = cfg.max_num_batched_tokens;
	res->seq_cap = is_static ? o->static_batch : cfg.max_num_seqs;
	if (!r)
		r = pf_kv_create(bn->be.kv.n_blocks, bn->be.kv.block_size, &kv);
	if (!r)
		r = pf_sched_create(&cfg, kv, &s);
	if (!r && (r = sampler_reserve(&bn->sp, cfg.max_num_seqs)))
		fprintf(stderr, PROG ": logits buffers: %s\n", bn->sp.err);
	for (int i = 0; !r && i < bn->w.n; i++) {
		struct sreq *q = &reqs[i];
		q->q = &bn->w.reqs[i];
		q->base = (struct pf_req){ .id = (uint64_t)i, .max_tokens = q->q->max_tokens, .user = q };
		struct pf_seq *seq;
		r = pf_sched_add(s, &q->base, q->q->prompt, q->q->n_prompt, 0, &seq);
		if (!r)
			seq->user = q;
	}
	if (r) {
		fprintf(stderr, PROG ": %s: setting up the scheduler failed: %s\n", res->mode, strerror(-r));
		goto out;
	}

	const double t0 = pf_bench_now_s();
	double last_note = t0;
	uint64_t seq_sum = 0;
	res->complete = true;
	while (res->n_done < bn->w.n) {
		double ta = pf_bench_now_s();
		if (ta - t0 > o->time_limit) {
			res->complete = false;
			break;
		}
		struct pf_sched_batch b;
		int n = pf_sched_step(s, (int64_t)((ta - t0) * 1000), &b);
		if (n < 0) {
			r = n;
			fprintf(stderr, PROG ": %s: pf_sched_step failed: %s\n", res->mode, strerror(-n));
			goto out;
		}
		if (n == 0) {
			/* every request is queued at t = 0 and none is running:
			 * one must be too large for the pool */
			r = -EDEADLK;
			fprintf(stderr, PROG ": %s: the scheduler has work but schedules nothing (a request larger than "
				"the KV pool of %d blocks? raise --kv-blocks or lower --max-output)\n", res->mode,
				bn->be.kv.n_blocks);
			goto out;
		}
		struct pf_kv_stats ks;
		pf_kv_get_stats(kv, &ks);
		res->kv_peak = ks.n_used > res->kv_peak ? ks.n_used : res->kv_peak;
		bool decode_only = true;
		for (int32_t t = 0; t < b.n_tokens; t++)
			if (b.pos[t] < b.seqs[b.seq_idx[t]]->n_prompt) {
				decode_only = false;
				res->prompt_rows++;
			}
		double tb = pf_bench_now_s();
		r = run_block_ops(&bn->be, &b);
		double tc = pf_bench_now_s();
		if (!r && (r = sampler_reserve(&bn->sp, b.n_logits)))
			fprintf(stderr, PROG ": logits buffers: %s\n", bn->sp.err);
		if (!r) {
			/* n_prompt NULL: the CPU backend sums every row in its
			 * prompt order; the CUDA backend ignores it */
			struct pf_batch fb = {
				.n_tokens = b.n_tokens, .tokens = b.tokens, .pos = b.pos, .seq = b.seq_idx,
				.n_seqs = b.n_seqs, .block_table = b.tables, .n_table = b.n_table,
				.n_logits = b.n_logits, .logit_rows = b.logit_rows, .n_prompt = NULL,
			};
			r = bn->be.ops->forward(bn->be.ctx, &fb, bn->sp.logits);
		}
		double td = pf_bench_now_s();
		pf_sched_step_done(s);
		double t_copy = 0, t_argmax = 0;
		if (!r && b.n_logits > 0 && (r = sampler_run(&bn->sp, b.n_logits, &t_copy, &t_argmax)))
			fprintf(stderr, PROG ": argmax: %s\n", bn->sp.err);
		if (r) {
			fprintf(stderr, PROG ": %s: step %llu failed (%d): %s\n", res->mode,
				(unsigned long long)res->steps + 1, r, strerror(-r));
			goto out;
		}
		double te = pf_bench_now_s();
		int32_t step_out = 0;
		for (int32_t i = 0; i < b.n_logits; i++) {
			struct pf_seq *seq = b.logit_seqs[i];
			struct sreq *q = seq->user;
			if (q->gen++ == 0)
				res->prompt_tokens += (uint64_t)q->q->n_prompt;
			step_out++;
			if (q->gen < q->q->max_tokens) {
				if ((r = pf_sched_append(s, seq, bn->sp.h_ids[i]))) {
					fprintf(stderr, PROG ": %s: pf_sched_append: %s\n", res->mode, strerror(-r));
					goto out;
				}
				continue;
			}
			/* the last token is not appended: the sequence holds the
			 * prompt and every generated token before it */
			if (seq->n_tokens != q->q->n_prompt + q->q->max_tokens - 1) {
				fprintf(stderr, PROG ": %s: request %llu ends with %d tokens, want %d + %d - 1\n", res->mode,
					(unsigned long long)q->base.id, seq->n_tokens, q->q->n_prompt, q->q->max_tokens);
				r = -EFAULT;
				goto out;
			}
			pf_sched_finish(s, seq);
			q->done = true;
			res->n_done++;
		}
		double tf = pf_bench_now_s();
		res->out_tokens += (uint64_t)step_out;
		res->steps++;
		seq_sum += (uint64_t)b.n_seqs;
		res->max_seqs = b.n_seqs > res->max_seqs ? b.n_seqs : res->max_seqs;
		res->t_sched += (tb - ta) + (tf - te);
		res->t_blockops += tc - tb;
		res->t_forward += td - tc;
		res->t_copy += t_copy;
		res->t_argmax += t_argmax;
		if (decode_only) {
			res->decode_steps++;
			res->decode_tokens += (uint64_t)step_out;
			res->decode_time += tf - ta;
		}
		if (tf - last_note > 10) {
			last_note = tf;
			fprintf(stderr, PROG ": %s: %.0f s, %d/%d done, %llu steps, %d seqs in the last, %d/%d blocks used\n",
				res->mode, tf - t0, res->n_done, bn->w.n, (unsigned long long)res->steps, b.n_seqs, ks.n_used,
				ks.n_blocks);
		}
	}
	res->wall = pf_bench_now_s() - t0;
	res->mean_seqs = res->steps ? (double)seq_sum / (double)res->steps : 0;
	struct pf_sched_stats ss;
	pf_sched_get_stats(s, &ss);
	res->preemptions = ss.preemptions_total;
	if (res->complete) {
		/* every request ran to its exact length and gave its blocks back */
		struct pf_kv_stats ks;
		pf_kv_get_stats(kv, &ks);
		r = pf_sched_check(s, bn->err, sizeof(bn->err));
		if (r)
			fprintf(stderr, PROG ": %s: scheduler invariants: %s\n", res->mode, bn->err);
		for (int i = 0; !r && i < bn->w.n; i++)
			if (!reqs[i].done || reqs[i].gen != reqs[i].q->max_tokens) {
				fprintf(stderr, PROG ": %s: request %d generated %d of %d tokens\n", res->mode, i,
					reqs[i].gen, reqs[i].q->max_tokens);
				r = -EFAULT;
			}
		if (!r && ks.n_used != 0) {
			fprintf(stderr, PROG ": %s: %d KV blocks still in use after the last request\n", res->mode,
				ks.n_used);
			r = -EFAULT;
		}
	}
out:
	pf_sched_destroy(s);
	pf_kv_destroy(kv);
	free(reqs);
	return r;
}

/* ---- report ------------------------------------------------------------------- */

static double pct(double part, double whole)
{
	return whole > 0 ? 100.0 * part / whole : 0.0;
}

static void print_result(const struct bench *bn, const struct mode_result *m)
{
	const struct opts *o = &bn->o;
	const double busy = m->t_sched + m->t_blockops + m->t_forward + m->t_copy + m->t_argmax;
	printf("\n== %s: %s ==\n", m->mode,
	       !strcmp(m->mode, "static") ? "static batching baseline" : "continuous batching");
	if (!m->complete)
		printf("  TIME LIMIT: stopped after %.1f s (--time-limit %.0f) with %d of %d requests finished;\n"
		       "  every figure below covers only the partial run (tokens of unfinished requests included)\n",
		       m->wall, o->time_limit, m->n_done, m->n);
	if (!strcmp(m->mode, "static"))
		printf("  static batch %d, token budget per step %d (holds each batch's prompts)\n", o->static_batch,
		       m->budget);
	else
		printf("  max_num_seqs %d, max_num_batched_tokens %d\n", m->seq_cap, m->budget);
	printf("  %-30s %d / %d%s\n", "requests finished", m->n_done, m->n, m->complete ? " (each with exactly its tokens)" : "");
	printf("  %-30s %llu\n", "output tokens", (unsigned long long)m->out_tokens);
	printf("  %-30s %llu (rows computed at prompt positions, recompute included: %llu)\n", "prompt tokens",
	       (unsigned long long)m->prompt_tokens, (unsigned long long)m->prompt_rows);
	printf("  %-30s %.2f\n", "wall time (s)", m->wall);
	printf("  %-30s %.1f\n", "output tokens/s", m->wall > 0 ? (double)m->out_tokens / m->wall : 0.0);
	printf("  %-30s %.1f\n", "total tokens/s (prompt+output)",
	       m->wall > 0 ? (double)(m->out_tokens + m->prompt_tokens) / m->wall : 0.0);
	printf("  %-30s %llu (decode-only %llu: %.1f output tokens/s over them)\n", "steps",
	       (unsigned long long)m->steps, (unsigned long long)m->decode_steps,
	       m->decode_time > 0 ? (double)m->decode_tokens / m->decode_time : 0.0);
	printf("  %-30s mean %.1f, max %d\n", "running sequences per step", m->mean_seqs, m->max_seqs);
	printf("  %-30s %llu\n", "preemptions", (unsigned long long)m->preemptions);
	printf("  %-30s %d blocks x %d tokens; peak used %d (%.1f%%)\n", "KV pool", m->kv_blocks,
	       bn->be.kv.block_size, m->kv_peak, pct(m->kv_peak, m->kv_blocks));
	printf("  %-30s %.2f ms: forward %.1f%%, logits copy %.1f%%, argmax %.1f%%, scheduler %.1f%%, block ops %.1f%%\n",
	       "step time, mean", m->steps ? 1e3 * busy / (double)m->steps : 0.0, pct(m->t_forward, busy),
	       pct(m->t_copy, busy), pct(m->t_argmax, busy), pct(m->t_sched, busy), pct(m->t_blockops, busy));
	fflush(stdout);
}

static void print_line(const struct bench *bn, const struct mode_result *m)
{
	const struct opts *o = &bn->o;
	const double busy = m->t_sched + m->t_blockops + m->t_forward + m->t_copy + m->t_argmax;
	printf("serve mode=%s preset=%s type=%s backend=%s layers=%d requests=%d finished=%d complete=%d "
	       "output_tokens=%llu prompt_tokens=%llu wall_s=%.3f output_tok_s=%.1f total_tok_s=%.1f steps=%llu "
	       "mean_seqs=%.1f max_seqs=%d preemptions=%llu kv_blocks=%d kv_peak=%d sample_share=%.4f "
	       "decode_tok_s=%.1f\n",
	       m->mode, o->tiny ? "tiny" : "llama3-8b", pf_dtype_name(o->wtype), o->cuda ? "cuda" : "cpu", o->n_layer,
	       m->n, m->n_done, m->complete, (unsigned long long)m->out_tokens, (unsigned long long)m->prompt_tokens,
	       m->wall, m->wall > 0 ? (double)m->out_tokens / m->wall : 0.0,
	       m->wall > 0 ? (double)(m->out_tokens + m->prompt_tokens) / m->wall : 0.0,
	       (unsigned long long)m->steps, m->mean_seqs, m->max_seqs, (unsigned long long)m->preemptions,
	       m->kv_blocks, m->kv_peak, busy > 0 ? (m->t_copy + m->t_argmax) / busy : 0.0,
	       m->decode_time > 0 ? (double)m->decode_tokens / m->decode_time : 0.0);
}

/* ---- setup -------------------------------------------------------------------- */

static int make_backend(struct bench *bn, const struct pf_model_weights *w)
{
	const struct opts *o = &bn->o;
	struct pf_kv_config kv = { .n_blocks = o->kv_blocks, .block_size = 16, .kv_dtype = PF_DT_F16 };
	int r;
	if (o->cuda) {
		struct pf_cuda_backend_config cc = pf_cuda_backend_config_default();
		if (o->mem_util > 0)
			cc.memory_utilization = o->mem_util;
		r = pf_cuda_backend_create(w, &kv, &cc, &bn->be, bn->err, sizeof(bn->err));
	} else {
		if (!kv.n_blocks)
			kv.n_blocks = 2048;
		r = pf_cpu_backend_create(w, &kv, o->threads, &bn->be, bn->err, sizeof(bn->err));
	}
	if (r)
		fprintf(stderr, PROG ": creating the %s backend failed (%d): %s\n", o->cuda ? "CUDA" : "CPU", r, bn->err);
	return r;
}

int main(int argc, char **argv)
{
	enum { O_PRESET = 256, O_TINY, O_LAYERS, O_TYPE, O_BACKEND, O_THREADS, O_MODE, O_REQ, O_MAXOUT, O_MAXSEQS,
	       O_MAXBATCH, O_STATIC, O_STATICMAX, O_KVB, O_MEM, O_SAMPLE, O_TLIM, O_SEED, O_DATA };
	static const struct option lopts[] = {
		{ "preset", required_argument, NULL, O_PRESET }, { "tiny", no_argument, NULL, O_TINY },
		{ "layers", required_argument, NULL, O_LAYERS }, { "type", required_argument, NULL, O_TYPE },
		{ "backend", required_argument, NULL, O_BACKEND }, { "threads", required_argument, NULL, O_THREADS },
		{ "mode", required_argument, NULL, O_MODE }, { "requests", required_argument, NULL, O_REQ },
		{ "max-output", required_argument, NULL, O_MAXOUT }, { "max-seqs", required_argument, NULL, O_MAXSEQS },
		{ "max-batched-tokens", required_argument, NULL, O_MAXBATCH },
		{ "static-batch", required_argument, NULL, O_STATIC },
		{ "static-max-batched-tokens", required_argument, NULL, O_STATICMAX },
		{ "kv-blocks", required_argument, NULL, O_KVB }, { "gpu-memory-utilization", required_argument, NULL, O_MEM },
		{ "sample", required_argument, NULL, O_SAMPLE }, { "time-limit", required_argument, NULL, O_TLIM },
		{ "seed", required_argument, NULL, O_SEED }, { "data", required_argument, NULL, O_DATA },
		{ "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct bench bn;
	memset(&bn, 0, sizeof(bn));
	struct opts *o = &bn.o;
	*o = (struct opts){
		.cuda = true, .wtype = PF_DT_F16, .modes = MODE_BOTH, .requests = 1000, .max_output = 1 << 20,
		.max_seqs = 256, .max_batched = 8192, .static_batch = 128, .static_max_batched = 16384,
		.time_limit = 240, .seed = 1, .data = "bench/data/sharegpt_lengths.tsv",
	};
	bool sample_given = false;
	int c;
	long lv;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case O_PRESET:
			if (!strcmp(optarg, "tiny"))
				o->tiny = true;
			else if (!strcmp(optarg, "llama3-8b"))
				o->tiny = false;
			else {
				fprintf(stderr, PROG ": --preset wants llama3-8b or tiny, got '%s'\n", optarg);
				return 2;
			}
			break;
		case O_TINY: o->tiny = true; break;
		case O_LAYERS: if (pf_bench_parse_int(PROG, optarg, "--layers", 1, 1024, &o->n_layer)) return 2; break;
		case O_TYPE: if (parse_type(optarg, &o->wtype)) return 2; break;
		case O_BACKEND:
			if (!strcmp(optarg, "cuda") || !strcmp(optarg, "cpu"))
				o->cuda = !strcmp(optarg, "cuda");
			else {
				fprintf(stderr, PROG ": --backend wants cuda or cpu, got '%s'\n", optarg);
				return 2;
			}
			break;
		case O_THREADS: if (pf_bench_parse_int(PROG, optarg, "--threads", 0, 1024, &o->threads)) return 2; break;
		case O_MODE:
			if (!strcmp(optarg, "continuous"))
				o->modes = MODE_CONTINUOUS;
			else if (!strcmp(optarg, "static"))
				o->modes = MODE_STATIC;
			else if (!strcmp(optarg, "both"))
				o->modes = MODE_BOTH;
			else {
				fprintf(stderr, PROG ": --mode wants continuous, static or both, got '%s'\n", optarg);
				return 2;
			}
			break;
		case O_REQ: if (pf_bench_parse_int(PROG, optarg, "--requests", 1, 1 << 20, &o->requests)) return 2; break;
		case O_MAXOUT: if (pf_bench_parse_int(PROG, optarg, "--max-output", 1, 1 << 20, &o->max_output)) return 2; break;
		case O_MAXSEQS: if (pf_bench_parse_int(PROG, optarg, "--max-seqs", 1, 65536, &o->max_seqs)) return 2; break;
		case O_MAXBATCH:
			if (pf_bench_parse_int(PROG, optarg, "--max-batched-tokens", 1, 1 << 20, &o->max_batched)) return 2;
			break;
		case O_STATIC: if (pf_bench_parse_int(PROG, optarg, "--static-batch", 1, 65536, &o->static_batch)) return 2; break;
		case O_STATICMAX:
			if (pf_bench_parse_int(PROG, optarg, "--static-max-batched-tokens", 1, 1 << 20, &o->static_max_batched))
				return 2;
			break;
		case O_KVB: if (pf_bench_parse_int(PROG, optarg, "--kv-blocks", 1, 1 << 24, &o->kv_blocks)) return 2; break;
		case O_MEM:
			if (pf_bench_parse_double(PROG, optarg, "--gpu-memory-utilization", 0.05, 0.99, &o->mem_util)) return 2;
			break;
		case O_SAMPLE:
			if (strcmp(optarg, "device") && strcmp(optarg, "host")) {
				fprintf(stderr, PROG ": --sample wants device or host, got '%s'\n", optarg);
				return 2;
			}
			o->sample_host = !strcmp(optarg, "host");
			sample_given = true;
			break;
		case O_TLIM: if (pf_bench_parse_double(PROG, optarg, "--time-limit", 1, 1e6, &o->time_limit)) return 2; break;
		case O_SEED:
			if (pf_bench_parse_long(PROG, optarg, "--seed", 0, __LONG_MAX__, &lv)) return 2;
			o->seed = (uint64_t)lv;
			break;
		case O_DATA: o->data = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!o->cuda && sample_given && !o->sample_host) {
		fprintf(stderr, PROG ": --sample device needs --backend cuda\n");
		return 2;
	}
	if (!o->n_layer)
		o->n_layer = o->tiny ? 4 : 32;
	if (o->cuda && pf_cuda_device_count() <= 0) {
		printf("skip: no CUDA device (no NVIDIA driver, or it sees no GPU): serving benchmark not run "
		       "(--backend cpu runs it on the CPU)\n");
		return 77;
	}

	const struct pf_hparams hp = pf_synth_hparams(o->tiny, o->n_layer);
	bn.n_vocab = hp.n_vocab;
	int r = pf_bench_workload_sharegpt(PROG, o->data, o->requests, o->max_output, hp.n_vocab, o->seed, &bn.w);
	if (r)
		return 1;
	pf_bench_workload_print(&bn.w, o->data, o->seed, 0, o->max_output);

	double t0 = pf_bench_now_s();
	uint64_t rng = 0x9E3779B97F4A7C15ULL;
	struct pf_synth_model sm;
	pf_synth_model_build(&rng, &hp, o->wtype, &sm);
	if (make_backend(&bn, &sm.w)) {
		pf_synth_model_free(&sm);
		pf_bench_workload_free(&bn.w);
		return 1;
	}
	/* the CUDA backend uploaded everything; the CPU one reads in place */
	if (o->cuda)
		pf_synth_model_free(&sm);
	bn.sp = (struct sampler){ .cuda = o->cuda, .on_device = o->cuda && !o->sample_host, .n_vocab = hp.n_vocab };
	bn.sp.lc.err = bn.sp.err;
	bn.sp.lc.errlen = sizeof(bn.sp.err);
	const char *desc = bn.be.ops->describe ? bn.be.ops->describe(bn.be.ctx) : bn.be.ops->name;
	printf("model: %s shapes, %d layers, %s weights (ffn_down and output %s), random;\n  weights made and backend created in %.1f s: "
	       "%s\n", o->tiny ? "tiny" : "Llama-3-8B", o->n_layer, pf_dtype_name(o->wtype),
	       pf_dtype_name(pf_synth_down_type(o->wtype)), pf_bench_now_s() - t0, desc);
	printf("KV pool: %d blocks x %d tokens = %lld token slots (%.2f GiB); sampling: greedy argmax on the %s\n",
	       bn.be.kv.n_blocks, bn.be.kv.block_size, (long long)bn.be.kv.n_blocks * bn.be.kv.block_size,
	       (double)pf_kv_block_bytes(&hp, bn.be.kv.block_size, bn.be.kv.kv_dtype) * bn.be.kv.n_blocks / (1 << 30),
	       bn.sp.on_device ? "GPU (ids copied back)" : "host (logits copied back)");
	fflush(stdout);

	struct mode_result res[2];
	int n_res = 0;
	for (int k = 0; k < 2 && !r; k++) {
		if (!(o->modes & (k ? MODE_STATIC : MODE_CONTINUOUS)))
			continue;
		r = run_mode(&bn, k == 1, &res[n_res]);
		if (!r)
			print_result(&bn, &res[n_res++]);
	}
	if (bn.sp.bad_rows)
		printf("note: %llu logits rows had no finite maximum (noise weights); they took token %d\n",
		       (unsigned long long)bn.sp.bad_rows, PF_BENCH_PROMPT_ID_MIN);
	if (n_res == 2) {
		double c_ts = res[0].wall > 0 ? (double)res[0].out_tokens / res[0].wall : 0;
		double s_ts = res[1].wall > 0 ? (double)res[1].out_tokens / res[1].wall : 0;
		printf("\ncontinuous / static output tokens/s: %.1f / %.1f = %.2fx%s\n", c_ts, s_ts,
		       s_ts > 0 ? c_ts / s_ts : 0.0,
		       res[0].complete && res[1].complete ? "" : "  (a run hit the time limit: partial figures)");
	}
	printf("\n");
	for (int k = 0; k < n_res; k++)
		print_line(&bn, &res[k]);
	if (n_res == 2) {
		double c_ts = res[0].wall > 0 ? (double)res[0].out_tokens / res[0].wall : 0;
		double s_ts = res[1].wall > 0 ? (double)res[1].out_tokens / res[1].wall : 0;
		printf("serve compare preset=%s type=%s backend=%s requests=%d complete=%d continuous_output_tok_s=%.1f "
		       "static_output_tok_s=%.1f ratio=%.3f\n", o->tiny ? "tiny" : "llama3-8b", pf_dtype_name(o->wtype),
		       o->cuda ? "cuda" : "cpu", bn.w.n, res[0].complete && res[1].complete, c_ts, s_ts,
		       s_ts > 0 ? c_ts / s_ts : 0.0);
	}
	sampler_free(&bn.sp);
	bn.be.ops->destroy(bn.be.ctx);
	pf_synth_model_free(&sm);
	pf_bench_workload_free(&bn.w);
	return r ? 1 : 0;
}
