/*
 * threadpool.h — a persistent pool of pinned worker threads for the CPU kernels.
 *
 * One engine step issues a few hundred parallel regions (several per layer),
 * so creating threads or sleeping in the kernel between them would cost more
 * than the work.  Workers are created once, pinned one per allowed CPU, and
 * wait for the next region by spinning on a generation counter for a short
 * while before falling back to a futex sleep.  The calling thread takes part
 * as worker 0, so a pool of N threads starts N-1 workers.
 *
 * A region is `fn(arg, ith, nth)` run by the caller (ith 0) and by every
 * worker that joins it in time (ith 1..nth-1, unique within the region, so
 * it may index per-thread scratch).  Work inside must be claimed
 * dynamically with pf_tp_next_chunk(), an atomic counter shared by the
 * region — never split statically by (ith, nth): once the caller has
 * claimed the last chunk it closes the region, and a worker the kernel has
 * not scheduled by then does not join at all.  That is what keeps a step
 * fast on an oversubscribed host: nobody waits for a descheduled thread.
 * pf_tp_run() returns when every chunk is done and every thread that joined
 * has left, so regions are barriers.  Only one thread may call pf_tp_run()
 * at a time.
 *
 * States: IDLE --pf_tp_run--> RUNNING --all done--> IDLE; destroy from IDLE.
 */
#ifndef PF_CPU_THREADPOOL_H
#define PF_CPU_THREADPOOL_H

#include <stdint.h>

struct pf_tp;

typedef void (*pf_tp_fn)(void *arg, int ith, int nth);

/* Threads the process may use: the CPUs in its affinity mask, capped by a
 * cgroup v2 cpu.max quota when one is set (rounded up).  At least 1. */
int pf_tp_default_threads(void);

/*
 * Start a pool of `n_threads` (including the caller; 0 = pf_tp_default_threads()).
 * `pin` pins worker i to the i-th CPU of the affinity mask.  Returns 0 and
 * *ret, or a negative errno (-EINVAL for n_threads < 0 or > 1024, -ENOMEM,
 * or pthread_create's error).
 */
int pf_tp_create(int n_threads, int pin, struct pf_tp **ret);

/* Stop and join the workers.  Accepts NULL. */
void pf_tp_destroy(struct pf_tp *tp);

/* Number of threads including the caller.  Cannot fail. */
int pf_tp_size(const struct pf_tp *tp);

/* Run fn(arg, ith, nth) on every thread of the pool and wait for all of them.
 * `nth` may be smaller than the pool to use fewer threads (small regions);
 * 0 means the whole pool.  Cannot fail. */
void pf_tp_run(struct pf_tp *tp, pf_tp_fn fn, void *arg, int nth);

/* Inside a region: claim the next chunk of work.  Returns the chunk index,
 * or a value >= n_chunks when none is left.  Chunks are claimed in
 * increasing order across threads. */
int64_t pf_tp_next_chunk(struct pf_tp *tp);

#endif
