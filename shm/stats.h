/*
 * stats.h — pinferd's read-only statistics segment.
 *
 * The daemon keeps one memfd with a struct pf_stats, rewrites it after every
 * engine step (at most every PF_STATS_PERIOD_MS while busy) and hands a
 * read-only descriptor to any client that registers with
 * PF_HELLO_STATS_ONLY (pinfer-top, pinfer-exporter): anyone allowed to
 * connect may read the stats, nobody else can see them, and readers never
 * write anything the daemon reads.
 *
 * Consistency: a seqlock.  The writer increments `seq` (odd: writing),
 * fences, writes the body, fences, increments `seq` again (even).  A reader
 * copies the whole struct between two reads of `seq` and retries when they
 * differ or are odd — it never blocks the engine and never keeps a torn
 * snapshot.  pf_stats_read() does that.
 *
 * Histograms store per-bucket (non-cumulative) counts: bucket i counts
 * observations in (bounds[i-1], bounds[i]]; the last bound is +Inf.
 * Readers that export Prometheus histograms accumulate them.
 *
 * What adds up in every snapshot (one engine-thread moment, one seqlock
 * write), which tests/integration/stats.sh checks:
 *   requests_admitted_total == sum(requests_finished[*]) + running + waiting
 *     (requests: a request with n > 1 sequences or beams counts once;
 *     cancelled, deadline and stalled requests are among the finished)
 *   kv_blocks_used + kv_blocks_cached + kv_blocks_free == kv_blocks_total
 *     (three counters the block manager keeps apart, not one derived)
 *   preempted_waiting <= waiting, seqs_* >= the request counts
 *
 * Layout history: 1 first; 2 added seqs_running/seqs_waiting and
 * requests_admitted_total, made running/waiting/preempted_waiting count
 * requests, and prefix_* count once per admission; 3 appended the swap
 * figures (preemption by swapping K/V to host memory).  Within 3, without
 * a layout change: prompt_tokens_total counts whole prompts (it counted
 * the prompt tokens computed, leaving out prefix-cache hits), the ITL
 * histogram one observation per token (it had one per request, its mean
 * gap), and the TTFT bounds reach 640 s — readers take bounds from the
 * segment, so older tools read newer daemons and the reverse.
 */
#ifndef PF_SHM_STATS_H
#define PF_SHM_STATS_H

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PF_STATS_MAGIC 0x50465354u /* "PFST" */
#define PF_STATS_VERSION 3
#define PF_STATS_HIST_BUCKETS 16
#define PF_STATS_MAX_CLIENTS 64
#define PF_STATS_PERIOD_MS 5
#define PF_HELLO_STATS_ONLY 1u     /* pf_hello.flags: register as a stats reader */

enum pf_stats_hist_id {
	PF_HIST_TTFT = 0,        /* seconds */
	PF_HIST_ITL = 1,         /* seconds between tokens: one per token after a sequence's first */
	PF_HIST_E2E = 2,         /* seconds */
	PF_HIST_STEP_TIME = 3,   /* seconds per engine step */
	PF_HIST_STEP_TOKENS = 4, /* tokens per step */
	PF_HIST_COUNT
};

struct pf_stats_hist {
	double bounds[PF_STATS_HIST_BUCKETS];   /* upper bounds; last is +Inf */
	uint64_t counts[PF_STATS_HIST_BUCKETS]; /* non-cumulative counts per bucket */
	uint64_t count;
	double sum;
};

struct pf_stats_client {
	uint64_t id;
	int32_t pid;
	uint32_t uid;
	char comm[16];
	int32_t inflight;
	uint32_t pad;
	uint64_t tokens_in, tokens_out, errors;
};

enum pf_stats_finish { PF_STATS_FIN_STOP, PF_STATS_FIN_LENGTH, PF_STATS_FIN_CANCELLED, PF_STATS_FIN_ERROR,
		       PF_STATS_FIN_DEADLINE, PF_STATS_FIN_STALLED, PF_STATS_FIN_COUNT };

struct pf_stats {
	uint32_t magic;
	uint32_t version;
	_Atomic uint32_t seq;       /* seqlock word: odd while the daemon writes */
	uint32_t size;              /* sizeof(struct pf_stats) the daemon wrote */
	char model[96];
	char backend[96];
	uint64_t start_unix_s;
	uint64_t uptime_ms;
	/* requests: running while any of their sequences runs; preempted:
	 * the waiting ones with a sequence waiting to be recomputed */
	int32_t running, waiting, preempted_waiting, n_clients;
	int32_t seqs_running, seqs_waiting; /* sequences (n > 1, beams) */
	int32_t kv_blocks_total, kv_blocks_used, kv_blocks_cached, kv_blocks_free;
	int32_t block_size, max_model_len;
	/* tokens of new requests looked up in / served by the prefix cache,
	 * once per admission (vLLM's prefix_cache_queries/hits) */
	uint64_t prefix_queries_tokens, prefix_hits_tokens;
	/* prompt_tokens_total: whole prompts (prefix-cache hits included, as
	 * vLLM counts them), once per request when its first token comes */
	uint64_t prompt_tokens_total, generation_tokens_total;
	uint64_t steps_total, preemptions_total;
	uint64_t requests_admitted_total;   /* submissions the engine accepted */
	uint64_t requests_finished[PF_STATS_FIN_COUNT];
	struct pf_stats_hist hist[PF_HIST_COUNT];
	struct pf_stats_client clients[PF_STATS_MAX_CLIENTS];
	/* version 3: preemption by swapping */
	int32_t seqs_swapped;       /* waiting sequences whose K/V is in host swap slots */
	int32_t host_blocks_total;  /* swap slots (--swap-space), each one KV block */
	int32_t host_blocks_free;
	int32_t pad3;
	uint64_t swap_outs_total, swap_ins_total; /* preemptions by swapping, and their resumptions */
};
static_assert(sizeof(struct pf_stats) % 8 == 0, "pf_stats layout");
static_assert(offsetof(struct pf_stats, seq) == 8, "pf_stats layout");
static_assert(offsetof(struct pf_stats, running) == 224, "pf_stats layout");
static_assert(offsetof(struct pf_stats, prefix_queries_tokens) == 272, "pf_stats layout");
static_assert(offsetof(struct pf_stats, requests_finished) == 328, "pf_stats layout");
static_assert(offsetof(struct pf_stats, hist) % 8 == 0 && offsetof(struct pf_stats, clients) % 8 == 0,
	      "pf_stats layout");

/* Take a consistent snapshot of *src into *dst.  Returns 0, or -EAGAIN when
 * the daemon kept writing through many attempts (call again). */
static inline int pf_stats_read(const struct pf_stats *src, struct pf_stats *dst)
{
	for (int tries = 0; tries < 1000; tries++) {
		/* acquire: pairs with the writer's release increment that ends a write */
		uint32_t s1 = atomic_load_explicit(&src->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		memcpy(dst, (const void *)src, sizeof(*dst));
		/* the copy must complete before the second read of seq */
		atomic_thread_fence(memory_order_acquire);
		uint32_t s2 = atomic_load_explicit(&src->seq, memory_order_relaxed);
		if (s1 == s2)
			return 0;
	}
	return -11; /* -EAGAIN */
}

#endif
