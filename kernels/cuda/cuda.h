/*
 * cuda.h — the C face of the CUDA backend (the .cu files in kernels/cuda).
 *
 * Compiled only when the build finds nvcc (PF_HAVE_CUDA); callers check
 * pf_cuda_device_count() at run time, so a binary built with CUDA still
 * starts, and uses the CPU backend, on a machine without a GPU or driver.
 * Every CUDA call is checked: a failure becomes a negative errno and a line
 * in the caller's error buffer, never an abort.
 *
 * Built so far: device discovery and the RMSNorm kernel with its host
 * launcher (checked against the CPU reference by tests/unit/test_cuda.c).
 * The full CUDA backend (paged attention, quantized matvec, cuBLAS GEMMs)
 * is issue 8.
 */
#ifndef PF_CUDA_H
#define PF_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when there is no driver or no device).
 * Cannot fail. */
int pf_cuda_device_count(void);

/* Name and memory of device `dev` into buf.  Returns 0 or -ENODEV. */
int pf_cuda_device_describe(int dev, char *buf, size_t len);

/*
 * out (n_rows, n) = rmsnorm(x (n_rows, n)) * w (n), computed on device `dev`
 * from host buffers (copied in and out).  Returns 0, -ENODEV without a
 * device, -ENOMEM when device memory runs out, -EIO for any other CUDA error
 * (message in err).
 */
int pf_cuda_rmsnorm_host(int dev, float *out, const float *x, const float *w, int32_t n_rows, int32_t n,
			 float eps, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
