/*
 * cpu_backend.h — the CPU implementation of struct pf_backend_ops.
 *
 * Weights are read in place from the bytes pf_model_weights points at (the
 * GGUF mapping); the KV pool is one anonymous mapping of
 * kv->n_blocks × pf_kv_block_bytes(); compute runs on a persistent pool of
 * pinned threads with the best instruction set cpuid reports (PF_ISA caps it).
 */
#ifndef PF_CPU_BACKEND_H
#define PF_CPU_BACKEND_H

#include <stddef.h>

#include "kernels/backend.h"

/*
 * Create a CPU backend for `w` (which must outlive it) with a KV pool shaped
 * by `kv` and `n_threads` threads (0 = every CPU this process may use).
 * Returns 0 and fills *ret, or a negative errno with a message in err:
 * -ENOTSUP for a weight type without CPU kernels, -EINVAL for a bad KV shape,
 * -ENOMEM.
 */
int pf_cpu_backend_create(const struct pf_model_weights *w, const struct pf_kv_config *kv, int n_threads,
			  struct pf_backend *ret, char *err, size_t errlen);

#endif
