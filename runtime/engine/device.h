/*
 * device.h — choosing the compute backend for the engine: `--device
 * cpu|cuda|cuda:N|auto`.
 *
 * auto (the default) takes the first CUDA device when the build has CUDA
 * and a device works — it loads the model, and one short prompt's logits
 * agree with the CPU backend's (normalised error ≤ 0.15) — else the CPU;
 * the choice, and why a GPU was passed over, goes into a note the daemon
 * logs.  An explicit cuda/cuda:N that
 * cannot be had is an error, never a silent fall back to the CPU.
 *
 * KV pool size: `kv_memory` bytes when given (> 0); else 512 MiB on the
 * CPU, and on a GPU what `gpu_memory_utilization` of the device leaves
 * after the weights and an activation reserve.
 *
 * Swap space (preemption by swapping K/V out instead of recomputing):
 * `swap_space` bytes of host memory, in whole blocks; < 0 takes the
 * device's default — 4 GiB for a GPU (vLLM's), none on the CPU, whose pool
 * is host memory already (a CPU may still be given some: a preempted
 * sequence then costs a memcpy instead of a prefill).  For a GPU the
 * slots are page-locked and, where libnuma says the machine has several
 * nodes, placed on the GPU's own NUMA node, so the copies do not cross
 * the socket interconnect.
 */
#ifndef PF_DEVICE_H
#define PF_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

#define PF_DEVICE_CPU (-1)
#define PF_DEVICE_AUTO (-2)

/* Parse "cpu", "cuda", "cuda:N", "auto" (NULL or "" = auto) into
 * PF_DEVICE_CPU, a CUDA index, or PF_DEVICE_AUTO.  Returns 0 or -EINVAL. */
int pf_device_parse(const char *s, int *ret);

struct pf_device_request {
	int device;                     /* PF_DEVICE_* or a CUDA index */
	int n_threads;                  /* CPU backend */
	int64_t kv_memory;              /* bytes; 0: the device's default */
	double gpu_memory_utilization;  /* (0, 1]; 0: 0.90 */
	int32_t block_size;
	uint32_t kv_dtype;
	int64_t swap_space;             /* bytes of host swap slots; < 0: the device's default */
	struct pf_backend_log log;      /* the backend's warnings and failures (GPU); may be unset */
};

/*
 * Create the backend for `w` as `req` asks; ret->kv is the pool made.
 * note (may be NULL): which device and why, for the log.  Returns 0 or a
 * negative errno with a message in err (-ENODEV: an explicit CUDA device
 * that the build or the machine does not have).
 */
int pf_device_backend_create(const struct pf_model_weights *w, const struct pf_device_request *req,
			     struct pf_backend *ret, char *note, size_t notelen, char *err, size_t errlen);

#endif
