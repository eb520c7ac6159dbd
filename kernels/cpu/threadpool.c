/* threadpool.c — persistent pinned workers; see threadpool.h. */
#include "kernels/cpu/threadpool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TP_MAX_THREADS 1024
/* Spin (pausing, then yielding) this many rounds before sleeping: the gaps between
 * regions of one step are microseconds, the gaps between steps may be long. */
#define TP_SPIN 20000
/* Pure pause-spinning this long (~10-50 µs) before yielding the CPU. */
#define TP_SPIN_PAUSE 500
#define TP_CLOSED (UINT64_C(1) << 63)

struct pf_tp_worker {
	struct pf_tp *tp;
	int ith;
	int cpu; /* -1: not pinned */
	pthread_t th;
};

struct pf_tp {
	int n;
	struct pf_tp_worker *w;
	/* region state, written by the caller before bumping gen */
	pf_tp_fn fn;
	void *arg;
	int nth;
	_Alignas(64) _Atomic uint32_t gen;  /* futex word: region generation */
	/* region state: bits 0-31 the region's generation, 32-47 threads that
	 * joined it, bit 63 closed (no more joins) */
	_Alignas(64) _Atomic uint64_t state;
	_Alignas(64) _Atomic int n_done;    /* joined workers finished with this region */
	_Alignas(64) _Atomic int64_t chunk; /* pf_tp_next_chunk counter */
	_Alignas(64) _Atomic int sleepers;  /* workers in (or about to enter) futex wait */
	_Atomic int stop;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
	return syscall(SYS_futex, (uint32_t *)addr, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static int cgroup_cpu_quota(void)
{
	/* cgroup v2: "max 100000" or "200000 100000" in our cgroup's cpu.max */
	char path[512], line[256];
	FILE *f = fopen("/proc/self/cgroup", "r");
	int cpus = 0;
	if (!f)
		return 0;
	if (fgets(line, sizeof(line), f) && !strncmp(line, "0::", 3)) {
		line[strcspn(line, "\n")] = '\0';
		snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpu.max", line + 3);
		FILE *q = fopen(path, "r");
		if (q) {
			long long quota, period;
			char qs[32];
			if (fscanf(q, "%31s %lld", qs, &period) == 2 && strcmp(qs, "max") && period > 0) {
				quota = atoll(qs);
				if (quota > 0)
					cpus = (int)((quota + period - 1) / period);
			}
			fclose(q);
		}
	}
	fclose(f);
	return cpus;
}

int pf_tp_default_threads(void)
{
	cpu_set_t set;
	int n = 1;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	int q = cgroup_cpu_quota();
	if (q > 0 && q < n)
		n = q;
	return n > 0 ? n : 1;
}

static void *worker_main(void *p)
{
	struct pf_tp_worker *w = p;
	struct pf_tp *tp = w->tp;
	uint32_t seen = 0;

	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	for (;;) {
		uint32_t g;
		int spins = 0;
		/* acquire: pairs with the release bump of gen in pf_tp_run, making
		 * fn/arg/nth visible */
		while ((g = atomic_load_explicit(&tp->gen, memory_order_acquire)) == seen) {
			if (++spins < TP_SPIN) {
				/* yield once the region is late: on an oversubscribed
				 * machine the thread we wait for may need our CPU */
				if (spins > TP_SPIN_PAUSE)
					sched_yield();
				else
					cpu_relax();
				continue;
			}
			/* Dekker with pf_tp_run: announce the sleep, then re-check gen
			 * (both seq_cst) so a bump between the check and the wait is
			 * either seen here or followed by a wake */
			atomic_fetch_add(&tp->sleepers, 1);
			if (atomic_load(&tp->gen) == seen)
				futex(&tp->gen, FUTEX_WAIT, seen);
			atomic_fetch_sub(&tp->sleepers, 1);
			spins = 0;
		}
		seen = g;
		if (atomic_load_explicit(&tp->stop, memory_order_acquire))
			break;
		/* join the region unless the caller already closed it (it did
		 * all the work itself while we were descheduled) */
		uint64_t st = atomic_load(&tp->state);
		int idx = -1;
		while ((uint32_t)st == g && !(st & TP_CLOSED)) {
			int joined = (int)((st >> 32) & 0xffff);
			if (joined + 1 >= tp->nth)
				break;
			/* acq_rel: pairs with the caller's store of the region state,
			 * making fn/arg/nth visible; a failed CAS reloads st */
			if (atomic_compare_exchange_weak(&tp->state, &st, st + (UINT64_C(1) << 32))) {
				idx = joined + 1;
				break;
			}
		}
		if (idx < 0)
			continue;
		tp->fn(tp->arg, idx, tp->nth);
		/* release: pairs with the acquire load of n_done in pf_tp_run, so the
		 * caller sees this worker's writes */
		atomic_fetch_add_explicit(&tp->n_done, 1, memory_order_release);
	}
	return NULL;
}

int pf_tp_create(int n_threads, int pin, struct pf_tp **ret)
{
	struct pf_tp *tp;
	cpu_set_t set;
	int cpus[TP_MAX_THREADS], n_cpus = 0, r = 0;

	if (n_threads < 0 || n_threads > TP_MAX_THREADS)
		return -EINVAL;
	if (n_threads == 0)
		n_threads = pf_tp_default_threads();
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		for (int c = 0; c < CPU_SETSIZE && n_cpus < TP_MAX_THREADS; c++)
			if (CPU_ISSET(c, &set))
				cpus[n_cpus++] = c;
	/* aligned_alloc, not calloc: the struct's 64-byte-aligned members
	 * (one cache line per hot word) need the struct itself so aligned */
	tp = aligned_alloc(_Alignof(struct pf_tp), (sizeof(*tp) + _Alignof(struct pf_tp) - 1) &
					   ~(_Alignof(struct pf_tp) - 1));
	if (!tp)
		return -ENOMEM;
	memset(tp, 0, sizeof(*tp));
	tp->n = n_threads;
	tp->nth = n_threads;
	tp->w = calloc((size_t)n_threads, sizeof(*tp->w));
	if (!tp->w) {
		free(tp);
		return -ENOMEM;
	}
	/* pin only when there are at least as many CPUs as threads; otherwise
	 * pinning would stack threads on one CPU */
	int do_pin = pin && n_cpus >= n_threads;
	for (int i = 0; i < n_threads; i++) {
		tp->w[i].tp = tp;
		tp->w[i].ith = i;
		tp->w[i].cpu = do_pin ? cpus[i] : -1;
	}
	/* the caller is worker 0 and is left unpinned: it is the caller's thread */
	for (int i = 1; i < n_threads; i++) {
		r = -pthread_create(&tp->w[i].th, NULL, worker_main, &tp->w[i]);
		if (r) {
			tp->n = i; /* join only those started */
			pf_tp_destroy(tp);
			return r;
		}
	}
	*ret = tp;
	return 0;
}

void pf_tp_destroy(struct pf_tp *tp)
{
	if (!tp)
		return;
	atomic_store(&tp->stop, 1);
	atomic_fetch_add(&tp->gen, 1);
	futex(&tp->gen, FUTEX_WAKE, INT_MAX);
	for (int i = 1; i < tp->n; i++)
		pthread_join(tp->w[i].th, NULL);
	free(tp->w);
	free(tp);
}

int pf_tp_size(const struct pf_tp *tp)
{
	return tp->n;
}

void pf_tp_run(struct pf_tp *tp, pf_tp_fn fn, void *arg, int nth)
{
	if (nth <= 0 || nth > tp->n)
		nth = tp->n;
	atomic_store_explicit(&tp->chunk, 0, memory_order_relaxed);
	if (nth == 1) {
		fn(arg, 0, 1);
		return;
	}
	tp->fn = fn;
	tp->arg = arg;
	tp->nth = nth;
	atomic_store_explicit(&tp->n_done, 0, memory_order_relaxed);
	uint32_t g = atomic_load_explicit(&tp->gen, memory_order_relaxed) + 1;
	/* seq_cst: opens the region for joins (pairs with the workers' CAS) */
	atomic_store(&tp->state, (uint64_t)g);
	/* seq_cst: wakes spinning workers and orders the bump before the
	 * sleepers check (Dekker with the worker's sleep) */
	atomic_store(&tp->gen, g);
	if (atomic_load(&tp->sleepers) > 0)
		futex(&tp->gen, FUTEX_WAKE, INT_MAX);
	fn(arg, 0, nth);
	/* Every chunk is claimed by now.  Close the region: a worker that has
	 * not joined yet never will, so we wait only for those that did — on an
	 * oversubscribed machine the caller simply does all the work instead
	 * of waiting for a thread the kernel has not scheduled. */
	uint64_t st = atomic_fetch_or(&tp->state, TP_CLOSED);
	int joined = (int)((st >> 32) & 0xffff);
	/* acquire: pairs with each joined worker's release increment of n_done */
	for (int spins = 0; atomic_load_explicit(&tp->n_done, memory_order_acquire) < joined; spins++) {
		if (spins > TP_SPIN_PAUSE)
			sched_yield();
		else
			cpu_relax();
	}
}

int64_t pf_tp_next_chunk(struct pf_tp *tp)
{
	return atomic_fetch_add_explicit(&tp->chunk, 1, memory_order_relaxed);
}
