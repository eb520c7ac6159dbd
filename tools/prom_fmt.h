/*
 * prom_fmt.h — pinferd's statistics (shm/stats.h) in Prometheus text format
 * 0.0.4: the one formatter pinfer-exporter and pinfer-server's /metrics
 * share.  Metric names mirror vLLM's; the prefix is "pinfer" (pinfer:X) or
 * "vllm" (vllm:X, so dashboards, HPA rules and the Gateway API Inference
 * Extension's endpoint picker written for vLLM work unchanged).  Every series
 * carries model_name="...".  Header-only (static inline); tools-local.
 */
#ifndef PF_TOOLS_PROM_FMT_H
#define PF_TOOLS_PROM_FMT_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "shm/stats.h"
#include "tools/stats_fmt.h"

struct prom {
	FILE *f;
	const char *model;                 /* of the snapshot being written */
	const char *prefix;                /* "pinfer" or "vllm": names are PREFIX:NAME */
	const struct pf_stats *const *all; /* one snapshot per daemon */
	int n;
};

/* Run `body` once per snapshot with `s` pointing at it: a family's samples
 * for every daemon follow its one HELP/TYPE header, as the format wants. */
#define PROM_EACH(p, body)                                        \
	for (int k_ = 0; k_ < (p)->n; k_++) {                     \
		const struct pf_stats *s = (p)->all[k_];          \
		(p)->model = s->model;                            \
		body;                                             \
	}

static inline void prom_head(struct prom *p, const char *name, const char *type, const char *help)
{
	fprintf(p->f, "# HELP %s:%s %s\n# TYPE %s:%s %s\n", p->prefix, name, help, p->prefix, name, type);
}

/* One sample: name{model_name="...",extra} value.  extra: "" or
 * `label="value"` text already escaped. */
static inline void prom_sample(struct prom *p, const char *name, const char *extra, double v)
{
	char num[32];
	stats_fmt_double(num, sizeof(num), v);
	fprintf(p->f, "%s:%s{model_name=", p->prefix, name);
	stats_prom_label(p->f, p->model);
	fprintf(p->f, "%s%s} %s\n", extra[0] ? "," : "", extra, num);
}

/* One daemon's samples of a histogram family.  The segment keeps per-bucket
 * counts; Prometheus wants cumulative ones, ending with le="+Inf" equal to
 * _count. */
static inline void prom_histogram_samples(struct prom *p, const char *name, const struct pf_stats_hist *h)
{
	char series[160], le[64], num[32];
	uint64_t cum = 0;
	bool have_inf = false;
	snprintf(series, sizeof(series), "%s_bucket", name);
	for (int i = 0; i < PF_STATS_HIST_BUCKETS; i++) {
		cum += h->counts[i];
		stats_fmt_double(num, sizeof(num), h->bounds[i]);
		have_inf = isinf(h->bounds[i]) && h->bounds[i] > 0;
		snprintf(le, sizeof(le), "le=\"%s\"", num);
		prom_sample(p, series, le, (double)cum);
		if (have_inf)
			break;
	}
	if (!have_inf) /* the layout promises a last +Inf bucket; never emit a histogram without one */
		prom_sample(p, series, "le=\"+Inf\"", (double)cum);
	snprintf(series, sizeof(series), "%s_sum", name);
	prom_sample(p, series, "", h->sum);
	snprintf(series, sizeof(series), "%s_count", name);
	prom_sample(p, series, "", (double)cum);
}

/* The statistics of n daemons under PREFIX: names ("pinfer", or "vllm" for
 * dashboards and autoscalers written for vLLM); each daemon's series carry
 * its snapshot's model name. */
static inline void prom_render_n(FILE *f, const struct pf_stats *const *all, int n, const char *prefix)
{
	struct prom p = { .f = f, .prefix = prefix, .all = all, .n = n };
	char extra[128];

	prom_head(&p, "backend_info", "gauge", "The daemon's compute backend, as a label; always 1.");
	PROM_EACH(&p, {
		fprintf(f, "%s:backend_info{model_name=", prefix);
		stats_prom_label(f, s->model);
		fputs(",backend=", f);
		stats_prom_label(f, s->backend);
		fputs("} 1.0\n", f);
	});
	prom_head(&p, "daemon_start_time_seconds", "gauge", "Unix time at which pinferd started.");
	PROM_EACH(&p, prom_sample(&p, "daemon_start_time_seconds", "", (double)s->start_unix_s));

	prom_head(&p, "num_requests_running", "gauge", "Number of requests in model execution batches.");
	PROM_EACH(&p, prom_sample(&p, "num_requests_running", "", s->running));
	prom_head(&p, "num_requests_waiting", "gauge", "Number of requests waiting to be processed.");
	PROM_EACH(&p, prom_sample(&p, "num_requests_waiting", "", s->waiting));
	prom_head(&p, "num_requests_preempted", "gauge", "Number of requests waiting to be recomputed after a preemption (counted in num_requests_waiting too).");
	PROM_EACH(&p, prom_sample(&p, "num_requests_preempted", "", s->preempted_waiting));
	prom_head(&p, "num_clients", "gauge", "Number of registered client connections.");
	PROM_EACH(&p, prom_sample(&p, "num_clients", "", s->n_clients));
	prom_head(&p, "kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.");
	PROM_EACH(&p, prom_sample(&p, "kv_cache_usage_perc", "", s->kv_blocks_total > 0 ? (double)s->kv_blocks_used / s->kv_blocks_total : 0.0));
	prom_head(&p, "kv_cache_blocks", "gauge",
	     "KV-cache blocks by state: used (referenced), cached (unreferenced, kept for prefix reuse), free.");
	PROM_EACH(&p, {
		prom_sample(&p, "kv_cache_blocks", "state=\"used\"", s->kv_blocks_used);
		prom_sample(&p, "kv_cache_blocks", "state=\"cached\"", s->kv_blocks_cached);
		prom_sample(&p, "kv_cache_blocks", "state=\"free\"", s->kv_blocks_free);
	});
	prom_head(&p, "cache_config_info", "gauge", "Information of the KV cache configuration; always 1.");
	PROM_EACH(&p, {
		snprintf(extra, sizeof(extra), "block_size=\"%d\",num_gpu_blocks=\"%d\"", s->block_size,
			 s->kv_blocks_total);
		prom_sample(&p, "cache_config_info", extra, 1.0);
	});

	prom_head(&p, "prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.");
	PROM_EACH(&p, prom_sample(&p, "prefix_cache_queries_total", "", (double)(s->prefix_queries_tokens)));
	prom_head(&p, "prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.");
	PROM_EACH(&p, prom_sample(&p, "prefix_cache_hits_total", "", (double)(s->prefix_hits_tokens)));
	prom_head(&p, "num_preemptions_total", "counter", "Cumulative number of preemptions from the engine.");
	PROM_EACH(&p, prom_sample(&p, "num_preemptions_total", "", (double)(s->preemptions_total)));
	prom_head(&p, "num_requests_swapped", "gauge", "Number of sequences whose KV cache is swapped out to host memory.");
	PROM_EACH(&p, prom_sample(&p, "num_requests_swapped", "", s->seqs_swapped));
	prom_head(&p, "cpu_cache_usage_perc", "gauge", "Host swap space usage. 1 means 100 percent usage.");
	PROM_EACH(&p, prom_sample(&p, "cpu_cache_usage_perc", "", s->host_blocks_total > 0 ? (double)(s->host_blocks_total - s->host_blocks_free) / s->host_blocks_total : 0.0));
	prom_head(&p, "num_swap_outs_total", "counter", "Preemptions that swapped a sequence's KV cache out to host memory.");
	PROM_EACH(&p, prom_sample(&p, "num_swap_outs_total", "", (double)(s->swap_outs_total)));
	prom_head(&p, "num_swap_ins_total", "counter", "Swapped-out sequences whose KV cache was swapped back in.");
	PROM_EACH(&p, prom_sample(&p, "num_swap_ins_total", "", (double)(s->swap_ins_total)));
	prom_head(&p, "prompt_tokens_total", "counter", "Number of prefill tokens processed (whole prompts, prefix-cache hits included).");
	PROM_EACH(&p, prom_sample(&p, "prompt_tokens_total", "", (double)(s->prompt_tokens_total)));
	prom_head(&p, "generation_tokens_total", "counter", "Number of generation tokens processed.");
	PROM_EACH(&p, prom_sample(&p, "generation_tokens_total", "", (double)(s->generation_tokens_total)));
	prom_head(&p, "engine_steps_total", "counter", "Number of engine steps (iterations) run.");
	PROM_EACH(&p, prom_sample(&p, "engine_steps_total", "", (double)(s->steps_total)));
	prom_head(&p, "request_admitted_total", "counter", "Number of requests the engine accepted; each ends in request_success_total or is still running or waiting.");
	PROM_EACH(&p, prom_sample(&p, "request_admitted_total", "", (double)(s->requests_admitted_total)));

	prom_head(&p, "request_success_total", "counter",
	     "Count of finished requests by finish reason (stop, length, cancelled, error, deadline, stalled).");
	PROM_EACH(&p, {
		for (int i = 0; i < PF_STATS_FIN_COUNT; i++) {
			snprintf(extra, sizeof(extra), "finished_reason=\"%s\"", stats_finish_name(i));
			prom_sample(&p, "request_success_total", extra, (double)s->requests_finished[i]);
		}
	});

	prom_head(&p, "time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.");
	PROM_EACH(&p, prom_histogram_samples(&p, "time_to_first_token_seconds", &s->hist[PF_HIST_TTFT]));
	prom_head(&p, "inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds (one observation per token).");
	PROM_EACH(&p, prom_histogram_samples(&p, "inter_token_latency_seconds", &s->hist[PF_HIST_ITL]));
	prom_head(&p, "e2e_request_latency_seconds", "histogram", "Histogram of e2e request latency in seconds.");
	PROM_EACH(&p, prom_histogram_samples(&p, "e2e_request_latency_seconds", &s->hist[PF_HIST_E2E]));
	prom_head(&p, "iteration_tokens_total", "histogram", "Histogram of number of tokens per engine_step.");
	PROM_EACH(&p, prom_histogram_samples(&p, "iteration_tokens_total", &s->hist[PF_HIST_STEP_TOKENS]));
	prom_head(&p, "iteration_time_seconds", "histogram", "Histogram of engine step duration in seconds.");
	PROM_EACH(&p, prom_histogram_samples(&p, "iteration_time_seconds", &s->hist[PF_HIST_STEP_TIME]));
}

static inline void prom_render(FILE *f, const struct pf_stats *s, const char *prefix)
{
	prom_render_n(f, &s, 1, prefix);
}

#endif
