/*
 * bench_common.h — what the serving benchmarks share: pinfer-bench-serve
 * (engine stepped in process) and pinfer-bench-e2e (a real pinferd driven
 * by client processes) run the same comparison over the same workload, and
 * pinfer-run and pinfer-bench parse their numbers the same way.
 * Header-only (static inline); tools-local, not part of libpinfer.
 *
 * Same workload in both benchmarks.  The two reports are only comparable
 * when --requests/--seed give the same requests in each, so the draw lives
 * here once: pf_bench_workload_sharegpt() picks (prompt, output) length
 * pairs from bench/data/sharegpt_lengths.tsv without replacement (seeded
 * Fisher-Yates) and fills the prompts with ids from the same SplitMix64
 * stream; pf_bench_workload_arrivals() sets Poisson arrival times.  Each
 * random stream is seeded with the user's seed XOR its own salt
 * (PF_BENCH_SALT_*), so adding one stream never moves the numbers another
 * one draws.  Changing the order of the draws changes every benchmark's
 * workload (and the figures recorded in bench/RESULTS.md stop being
 * reproducible): don't, unless all of them are rerun.
 *
 * A workload (struct pf_bench_workload) is what is asked and nothing more;
 * what a run measured per request stays in each tool, since the two
 * measure in different places (engine callbacks, client processes).
 *
 * Messages.  Every function that can report a bad input prints one line to
 * stderr starting with the calling program's name (the `prog` argument) and
 * returns a negative errno; nothing here exits.
 */
#ifndef PF_TOOLS_BENCH_COMMON_H
#define PF_TOOLS_BENCH_COMMON_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Synthetic prompt ids start here: below are the control and byte tokens. */
#define PF_BENCH_PROMPT_ID_MIN 100

/* Salts of the random streams (see the top of this file). */
#define PF_BENCH_SALT_DRAW     0x5eed0001ULL /* which pairs, and the prompts' ids */
#define PF_BENCH_SALT_PREFIX   0x5eed0002ULL /* pinfer-bench-serve's shared-prefix prompts */
#define PF_BENCH_SALT_ARRIVALS 0x5eed0003ULL /* Poisson arrival times */

/* ---- command-line numbers ----------------------------------------------------- */

/* Parse a decimal integer in [lo, hi] for option `what` into *ret.  Returns
 * 0, or -EINVAL (message printed, *ret untouched). */
static inline int pf_bench_parse_long(const char *prog, const char *s, const char *what, long lo, long hi, long *ret)
{
	/* the wording of tools/common/opts.h, which this header cannot link
	 * (tests/gpu builds it alone): a number out of range says its range */
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end == s || *end || (errno && errno != ERANGE)) {
		fprintf(stderr, "%s: %s: \"%s\" is not an integer (it must be between %ld and %ld)\n", prog, what, s, lo,
			hi);
		return -EINVAL;
	}
	if (errno == ERANGE || v < lo || v > hi) {
		fprintf(stderr, "%s: %s: %s must be between %ld and %ld\n", prog, what, s, lo, hi);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

/* pf_bench_parse_long() for an int.  Returns 0 or -EINVAL. */
static inline int pf_bench_parse_int(const char *prog, const char *s, const char *what, int lo, int hi, int *ret)
{
	long v;
	int r = pf_bench_parse_long(prog, s, what, lo, hi, &v);
	if (!r)
		*ret = (int)v;
	return r;
}

/* Parse a finite number in [lo, hi] for option `what` into *ret.  Returns 0,
 * or -EINVAL (message printed, *ret untouched). */
static inline int pf_bench_parse_double(const char *prog, const char *s, const char *what, double lo, double hi,
					double *ret)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || isnan(v)) {
		fprintf(stderr, "%s: %s: \"%s\" is not a number\n", prog, what, s);
		return -EINVAL;
	}
	if (!isfinite(v) || v < lo || v > hi) {
		fprintf(stderr, "%s: %s: %s must be between %g and %g\n", prog, what, s, lo, hi);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

/* Parse a positive byte count with an optional K/M/G (binary) suffix, at
 * most 1e15, for option `what`; `example` is shown in the message ("64M").
 * Returns 0, or -EINVAL (message printed, *ret untouched). */
static inline int pf_bench_parse_size(const char *prog, const char *s, const char *what, const char *example,
				      int64_t *ret)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	double mul = 1;
	if (end != s && (*end == 'K' || *end == 'k'))
		mul = 1024, end++;
	else if (end != s && (*end == 'M' || *end == 'm'))
		mul = 1024.0 * 1024, end++;
	else if (end != s && (*end == 'G' || *end == 'g'))
		mul = 1024.0 * 1024 * 1024, end++;
	if (errno || end == s || *end || !isfinite(v) || v <= 0 || v * mul > 1e15) {
		fprintf(stderr, "%s: %s wants a size like %s, got '%s'\n", prog, what, example, s);
		return -EINVAL;
	}
	*ret = (int64_t)(v * mul);
	return 0;
}

/* A KV block size for --block-size: 8, 16 or 32.  Returns 0 or -EINVAL. */
static inline int pf_bench_parse_block_size(const char *prog, const char *s, int *ret)
{
	int v;
	if (pf_bench_parse_int(prog, s, "--block-size", 8, 32, &v))
		return -EINVAL;
	if (v != 8 && v != 16 && v != 32) {
		fprintf(stderr, "%s: --block-size must be 8, 16 or 32, got %d\n", prog, v);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

/* Which arrival patterns a benchmark runs (a bit set). */
enum pf_bench_regime {
	PF_BENCH_THROUGHPUT = 1,      /* every request at t = 0 */
	PF_BENCH_LATENCY = 2,         /* Poisson arrivals */
	PF_BENCH_BOTH = 3,
};

/* --regime throughput|latency|both.  Returns 0 or -EINVAL. */
static inline int pf_bench_parse_regime(const char *prog, const char *s, enum pf_bench_regime *ret)
{
	if (!strcmp(s, "throughput"))
		*ret = PF_BENCH_THROUGHPUT;
	else if (!strcmp(s, "latency"))
		*ret = PF_BENCH_LATENCY;
	else if (!strcmp(s, "both"))
		*ret = PF_BENCH_BOTH;
	else {
		fprintf(stderr, "%s: --regime wants throughput, latency or both, got '%s'\n", prog, s);
		return -EINVAL;
	}
	return 0;
}

/* ---- clocks and load ---------------------------------------------------------- */

/* CLOCK_MONOTONIC in seconds: system-wide, so forked processes can compare
 * their readings.  Cannot fail. */
static inline double pf_bench_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleep s seconds (nothing for s <= 0).  Returns 0, or -EINTR when a
 * signal handler ran first: the caller decides whether to sleep on (the
 * benchmarks recompute what they wait for and loop). */
static inline int pf_bench_sleep_s(double s)
{
	if (s <= 0)
		return 0;
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9) };
	return nanosleep(&ts, NULL) ? -errno : 0;
}

/* The 1-minute load average (other work on the machine skews timings, so
 * the reports print it); NAN when unknown. */
static inline double pf_bench_loadavg1(void)
{
	double l[1];
	return getloadavg(l, 1) == 1 ? l[0] : NAN;
}

/* ---- random streams ----------------------------------------------------------- */

/* SplitMix64: a small, well-mixed, seedable stream.  Cannot fail. */
static inline uint64_t pf_bench_rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1), 53 bits. */
static inline double pf_bench_rng_unit(uint64_t *s)
{
	return (double)(pf_bench_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* A synthetic prompt token in [PF_BENCH_PROMPT_ID_MIN, n_vocab); n_vocab
 * must exceed PF_BENCH_PROMPT_ID_MIN. */
static inline int32_t pf_bench_prompt_token(uint64_t *s, int32_t n_vocab)
{
	return PF_BENCH_PROMPT_ID_MIN + (int32_t)(pf_bench_rng_next(s) % (uint64_t)(n_vocab - PF_BENCH_PROMPT_ID_MIN));
}

/* ---- statistics --------------------------------------------------------------- */

/* qsort comparator for doubles, ascending. */
static inline int pf_bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Percentile q (0..100) of v[0..n) with linear interpolation (numpy's
 * default); sorts v.  NAN for n = 0. */
static inline double pf_bench_percentile(double *v, int n, double q)
{
	if (n <= 0)
		return NAN;
	qsort(v, (size_t)n, sizeof(*v), pf_bench_cmp_double);
	double pos = q / 100.0 * (n - 1);
	int lo = (int)floor(pos);
	int hi = lo + 1 < n ? lo + 1 : lo;
	return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

/* ---- the ShareGPT workload ---------------------------------------------------- */

struct pf_bench_pair {
	int32_t prompt, output;
};

/*
 * Read "prompt<TAB>output" lines ('#' lines and empty lines are skipped),
 * each length in 1..2^20.  On success *ret (free() it) holds *ret_n >= 1
 * pairs.  Returns 0 or a negative errno (-EINVAL for a bad line or no
 * pairs; message printed).
 */
static inline int pf_bench_load_pairs(const char *prog, const char *path, struct pf_bench_pair **ret, int *ret_n)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		fprintf(stderr, "%s: cannot open %s: %s (generate it with bench/sharegpt_lengths.py)\n", prog, path,
			strerror(e));
		return e > 0 ? -e : -EIO;
	}
	struct pf_bench_pair *v = NULL;
	int n = 0, cap = 0, line = 0, r = 0;
	char buf[256];
	while (fgets(buf, sizeof(buf), f)) {
		line++;
		if (buf[0] == '#' || buf[0] == '\n')
			continue;
		char *end, *end2 = NULL;
		errno = 0;
		long p = strtol(buf, &end, 10);
		long o = end != buf ? strtol(end, &end2, 10) : 0;
		if (errno || end == buf || end2 == end || (*end2 && *end2 != '\n') || p < 1 || o < 1 || p > 1 << 20 ||
		    o > 1 << 20) {
			fprintf(stderr, "%s: %s:%d: want two positive integers, got '%.60s'\n", prog, path, line, buf);
			r = -EINVAL;
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			struct pf_bench_pair *nv = realloc(v, sizeof(*v) * (size_t)cap);
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		v[n++] = (struct pf_bench_pair){ (int32_t)p, (int32_t)o };
	}
	fclose(f);
	if (!r && n == 0) {
		fprintf(stderr, "%s: %s holds no length pairs\n", prog, path);
		r = -EINVAL;
	}
	if (r) {
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* One request as every run and every process sees it. */
struct pf_bench_req {
	int32_t n_prompt, max_tokens;     /* max_tokens: forced (ignore_eos), so every run does the same work */
	int32_t *prompt;                  /* (n_prompt): into the workload's tokens */
	double t_arrival;                 /* seconds after the run's start; 0 until arrivals are drawn */
};

/* What a benchmark asks: n requests over one token buffer. */
struct pf_bench_workload {
	struct pf_bench_req *reqs;        /* (n) */
	int n;
	int32_t *tokens;                  /* every prompt, back to back */
};

/* Free both arrays and zero w.  Accepts a zeroed workload.  Cannot fail. */
static inline void pf_bench_workload_free(struct pf_bench_workload *w)
{
	free(w->reqs);
	free(w->tokens);
	memset(w, 0, sizeof(*w));
}

/* Zeroed requests and room for n_tokens prompt tokens (prompts unset).
 * Returns 0 or -ENOMEM (w left zeroed). */
static inline int pf_bench_workload_alloc(struct pf_bench_workload *w, int n, size_t n_tokens)
{
	w->reqs = calloc((size_t)n, sizeof(*w->reqs));
	w->tokens = malloc(sizeof(int32_t) * (n_tokens ? n_tokens : 1));
	w->n = n;
	if (!w->reqs || !w->tokens) {
		pf_bench_workload_free(w);
		return -ENOMEM;
	}
	return 0;
}

/*
 * n requests drawn from the length pairs in `path`, without replacement
 * (seeded Fisher-Yates), max_tokens = min(output, max_output); prompts are
 * random ids in [PF_BENCH_PROMPT_ID_MIN, n_vocab), n_vocab above that.  The
 * same seed gives the same requests.  Arrival times are left at 0.  Returns
 * 0 or a negative errno (-EINVAL when the file is bad or holds fewer than n
 * pairs; message printed).
 */
static inline int pf_bench_workload_sharegpt(const char *prog, const char *path, int n, int max_output,
					     int32_t n_vocab, uint64_t seed, struct pf_bench_workload *ret)
{
	struct pf_bench_pair *pairs = NULL;
	int n_pairs = 0;
	int rc = pf_bench_load_pairs(prog, path, &pairs, &n_pairs);
	if (rc)
		return rc;
	if (n > n_pairs) {
		fprintf(stderr, "%s: --requests %d but the data holds only %d pairs\n", prog, n, n_pairs);
		free(pairs);
		return -EINVAL;
	}
	int *idx = malloc(sizeof(int) * (size_t)n_pairs);
	if (!idx) {
		free(pairs);
		return -ENOMEM;
	}
	for (int i = 0; i < n_pairs; i++)
		idx[i] = i;
	uint64_t s = seed ^ PF_BENCH_SALT_DRAW;
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		int j = i + (int)(pf_bench_rng_next(&s) % (uint64_t)(n_pairs - i));
		int t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
		total += (size_t)pairs[idx[i]].prompt;
	}
	rc = pf_bench_workload_alloc(ret, n, total);
	int32_t *tok = ret->tokens;
	for (int i = 0; !rc && i < n; i++) {
		struct pf_bench_req *r = &ret->reqs[i];
		const struct pf_bench_pair *p = &pairs[idx[i]];
		r->n_prompt = p->prompt;
		r->max_tokens = p->output < max_output ? p->output : max_output;
		r->prompt = tok;
		for (int32_t k = 0; k < r->n_prompt; k++)
			tok[k] = pf_bench_prompt_token(&s, n_vocab);
		tok += r->n_prompt;
	}
	free(idx);
	free(pairs);
	return rc;
}

/* Set the arrival times: Poisson arrivals (exponential gaps, seeded) at
 * `rate` > 0 requests/s.  Cannot fail. */
static inline void pf_bench_workload_arrivals(struct pf_bench_workload *w, uint64_t seed, double rate)
{
	uint64_t s = seed ^ PF_BENCH_SALT_ARRIVALS;
	double t = 0;
	for (int i = 0; i < w->n; i++) {
		t += -log(1.0 - pf_bench_rng_unit(&s)) / rate;
		w->reqs[i].t_arrival = t;
	}
}

/* The "workload:" line of the report (clients: the client processes, 0 for
 * none), flushed. */
static inline void pf_bench_workload_print(const struct pf_bench_workload *w, const char *path, uint64_t seed,
					   int clients, int max_output)
{
	int64_t sp = 0, so = 0;
	int32_t mp = 0, mo = 0;
	for (int i = 0; i < w->n; i++) {
		const struct pf_bench_req *r = &w->reqs[i];
		sp += r->n_prompt;
		so += r->max_tokens;
		mp = r->n_prompt > mp ? r->n_prompt : mp;
		mo = r->max_tokens > mo ? r->max_tokens : mo;
	}
	printf("workload: %d requests drawn from %s (seed %llu)", w->n, path, (unsigned long long)seed);
	if (clients > 0)
		printf(" over %d client processes", clients);
	printf(": prompt tokens mean %.1f max %d; output tokens mean %.1f max %d (capped at %d); %lld output tokens "
	       "in all\n", (double)sp / w->n, mp, (double)so / w->n, mo, max_output, (long long)so);
	fflush(stdout);
}

/* ---- latency figures ---------------------------------------------------------- */

/* TTFT, TPOT ((e2e - ttft) / (output - 1), vLLM's definition) and end-to-end
 * latency in seconds; NAN where there were no samples. */
struct pf_bench_latency {
	double ttft_p50, ttft_p99, tpot_p50, tpot_p99, e2e_p50, e2e_p99;
};

/* From per-request samples: ttft and e2e of the n_ok requests that
 * finished, tpot of the n_tpot of them with more than one token.  Sorts the
 * arrays.  Cannot fail. */
static inline void pf_bench_latency_from(struct pf_bench_latency *l, double *ttft, double *e2e, int n_ok, double *tpot,
					 int n_tpot)
{
	l->ttft_p50 = pf_bench_percentile(ttft, n_ok, 50);
	l->ttft_p99 = pf_bench_percentile(ttft, n_ok, 99);
	l->tpot_p50 = pf_bench_percentile(tpot, n_tpot, 50);
	l->tpot_p99 = pf_bench_percentile(tpot, n_tpot, 99);
	l->e2e_p50 = pf_bench_percentile(e2e, n_ok, 50);
	l->e2e_p99 = pf_bench_percentile(e2e, n_ok, 99);
}

/* ---- report: continuous and static side by side ------------------------------- */

/* "== title ==" and the column heads; `width`: the label column. */
static inline void pf_bench_table_head(int width, const char *title)
{
	printf("\n== %s ==\n", title);
	printf("  %-*s %12s %12s %11s\n", width, "", "continuous", "static", "cont/static");
}

/* One row: a (continuous) and b (static) times scale in fmt, "n/a" when not
 * finite, then a / b when both are finite and b > 0. */
static inline void pf_bench_row(int width, const char *name, double a, double b, const char *fmt, double scale)
{
	char buf[64];
	printf("  %-*s", width, name);
	snprintf(buf, sizeof(buf), fmt, a * scale);
	printf(" %12s", isfinite(a) ? buf : "n/a");
	snprintf(buf, sizeof(buf), fmt, b * scale);
	printf(" %12s", isfinite(b) ? buf : "n/a");
	if (isfinite(a) && isfinite(b) && b > 0)
		printf("  %9.2fx", a / b);
	printf("\n");
}

/* The six latency rows (TTFT, TPOT in ms, e2e). */
static inline void pf_bench_rows_latency(int width, const struct pf_bench_latency *c, const struct pf_bench_latency *s)
{
	pf_bench_row(width, "TTFT p50 (s)", c->ttft_p50, s->ttft_p50, "%.3f", 1);
	pf_bench_row(width, "TTFT p99 (s)", c->ttft_p99, s->ttft_p99, "%.3f", 1);
	pf_bench_row(width, "TPOT p50 (ms)", c->tpot_p50, s->tpot_p50, "%.1f", 1e3);
	pf_bench_row(width, "TPOT p99 (ms)", c->tpot_p99, s->tpot_p99, "%.1f", 1e3);
	pf_bench_row(width, "e2e latency p50 (s)", c->e2e_p50, s->e2e_p50, "%.2f", 1);
	pf_bench_row(width, "e2e latency p99 (s)", c->e2e_p99, s->e2e_p99, "%.2f", 1);
}

/* The load average around each of the two runs. */
static inline void pf_bench_row_load(int width, double c_start, double c_end, double s_start, double s_end)
{
	printf("  %-*s %5.1f->%-6.1f %5.1f->%-6.1f\n", width, "load average (start->end)", c_start, c_end, s_start,
	       s_end);
}

/* The latency table's title: the offered rate, given (--rate) or as `load`
 * times the static run's requests/s. */
static inline void pf_bench_latency_title(char *buf, size_t size, bool rate_given, double rate, double load,
					  double static_req_s, uint64_t seed)
{
	if (rate_given)
		snprintf(buf, size, "latency: Poisson arrivals at %.3f requests/s (--rate), seed %llu", rate,
			 (unsigned long long)seed);
	else
		snprintf(buf, size,
			 "latency: Poisson arrivals at %.3f requests/s = %.0f%% of static capacity %.3f req/s, seed %llu",
			 rate, load * 100, static_req_s, (unsigned long long)seed);
}

#endif
