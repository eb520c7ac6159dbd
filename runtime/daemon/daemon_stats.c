/*
 * daemon_stats.c — pinferd's statistics: private accumulators updated by the
 * engine thread, published into the read-only stats segment (shm/stats.h)
 * under a seqlock after engine steps and while idle.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "runtime/daemon/daemon.h"
#include "runtime/model/model.h"

static const double latency_bounds[PF_STATS_HIST_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, INFINITY,
};
/* Time to first token: a CPU prefill of a long prompt takes minutes, so the
 * buckets reach 640 s (every bound is one of vLLM's TTFT bounds; the finest
 * of theirs below 10 ms are left out to fit the segment's 16 buckets). */
static const double ttft_bounds[PF_STATS_HIST_BUCKETS] = {
	0.01, 0.02, 0.04, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, INFINITY,
};
static const double e2e_bounds[PF_STATS_HIST_BUCKETS] = {
	0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 300.0, INFINITY,
};
static const double token_bounds[PF_STATS_HIST_BUCKETS] = {
	1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, INFINITY,
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int pf_daemon_stats_init(struct pf_daemon *d)
{
	int fd = memfd_create("pinfer-stats", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, sizeof(struct pf_stats)) < 0)
		goto fail;
	void *m = mmap(NULL, sizeof(struct pf_stats), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		goto fail;
	/* readers can only ever map it read-only, and nobody can resize it */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0) {
		munmap(m, sizeof(struct pf_stats));
		goto fail;
	}
	d->stats_fd = fd;
	d->stats = m;
	struct pf_stats *a = &d->acc;
	memset(a, 0, sizeof(*a));
	a->magic = PF_STATS_MAGIC;
	a->version = PF_STATS_VERSION;
	a->size = sizeof(*a);
	a->start_unix_s = (uint64_t)time(NULL);
	d->start_ms = mono_ms();
	for (int h = 0; h < PF_HIST_COUNT; h++)
		memcpy(a->hist[h].bounds,
		       h == PF_HIST_STEP_TOKENS ? token_bounds : h == PF_HIST_E2E ? e2e_bounds
			       : h == PF_HIST_TTFT ? ttft_bounds : latency_bounds,
		       sizeof(latency_bounds));
	if (d->engine) {
		snprintf(a->model, sizeof(a->model), "%.95s", pf_engine_model(d->engine)->name);
		snprintf(a->backend, sizeof(a->backend), "%.95s", pf_engine_describe(d->engine));
		a->max_model_len = pf_engine_max_model_len(d->engine);
	} else {
		snprintf(a->model, sizeof(a->model), "echo");
		snprintf(a->backend, sizeof(a->backend), "echo (no model)");
	}
	pf_daemon_stats_publish(d, true);
	return 0;
fail:;
	int r = -errno;
	close(fd);
	return r;
}

void pf_daemon_stats_observe(struct pf_daemon *d, int hist, double v)
{
	struct pf_stats_hist *h = &d->acc.hist[hist];
	int i = 0;
	while (i < PF_STATS_HIST_BUCKETS - 1 && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += v;
}

void pf_daemon_stats_publish(struct pf_daemon *d, bool force)
{
	uint64_t now = mono_ms();
	if (!d->stats || (!force && now - d->last_publish_ms < PF_STATS_PERIOD_MS))
		return;
	d->last_publish_ms = now;
	struct pf_stats *a = &d->acc;
	a->uptime_ms = now - d->start_ms;
	if (d->engine) {
		struct pf_engine_stats es;
		pf_engine_get_stats(d->engine, &es);
		a->running = es.req_running;
		a->waiting = es.req_waiting;
		a->preempted_waiting = es.req_preempted;
		a->seqs_running = es.running;
		a->seqs_waiting = es.waiting;
		a->requests_admitted_total = es.requests_admitted;
		a->kv_blocks_total = es.kv.n_blocks;
		a->kv_blocks_used = es.kv.n_used;
		a->kv_blocks_cached = es.kv.n_cached;
		a->kv_blocks_free = es.kv.n_free;
		a->prefix_queries_tokens = es.kv.prefix_queries_tokens;
		a->prefix_hits_tokens = es.kv.prefix_hits_tokens;
		a->generation_tokens_total = es.generation_tokens;
		a->steps_total = es.steps;
		a->preemptions_total = es.preemptions;
		a->seqs_swapped = es.swapped;
		a->host_blocks_total = es.kv.n_host;
		a->host_blocks_free = es.kv.n_host_free;
		a->swap_outs_total = es.swap_outs;
		a->swap_ins_total = es.swap_ins;
		a->block_size = d->cfg.block_size;
	}
	int n = 0;
	for (struct pf_session *s = d->sessions; s && n < PF_STATS_MAX_CLIENTS; s = s->next, n++) {
		struct pf_stats_client *c = &a->clients[n];
		c->id = s->id;
		c->pid = s->pid;
		c->uid = s->uid;
		snprintf(c->comm, sizeof(c->comm), "%.15s", s->comm);
		c->inflight = s->n_inflight;
		c->tokens_in = s->tokens_in;
		c->tokens_out = s->tokens_out;
		c->errors = s->errors;
	}
	a->n_clients = n;
	/* seqlock write: odd, body, even.  The release orders pair with the
	 * reader's acquire loads in pf_stats_read(). */
	uint32_t seq = atomic_load_explicit(&d->stats->seq, memory_order_relaxed);
	atomic_store_explicit(&d->stats->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	size_t off = offsetof(struct pf_stats, size);
	memcpy((char *)d->stats + off, (const char *)a + off, sizeof(*a) - off);
	d->stats->magic = a->magic;
	d->stats->version = a->version;
	atomic_store_explicit(&d->stats->seq, seq + 2, memory_order_release);
}
