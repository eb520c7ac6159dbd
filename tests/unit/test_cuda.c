/*
 * test_cuda.c — CUDA kernels against the CPU reference.  Exits 77 (skipped)
 * when the build has no CUDA or the machine has no usable GPU.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "cpu/ops.h"
#ifdef PF_HAVE_CUDA
#include "cuda/cuda.h"
#endif

#ifdef PF_HAVE_CUDA
static void test_rmsnorm_matches_cpu(void **state)
{
	(void)state;
	const int32_t rows = 7, n = 576 + 3;
	float *x = malloc(sizeof(float) * rows * n), *w = malloc(sizeof(float) * n);
	float *ref = malloc(sizeof(float) * rows * n), *got = malloc(sizeof(float) * rows * n);
	char err[256] = "";
	uint64_t s = 42;
	for (int32_t i = 0; i < rows * n; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		x[i] = (float)((int64_t)(s >> 33) % 2000 - 1000) / 250.0f;
	}
	for (int32_t i = 0; i < n; i++)
		w[i] = 0.5f + (float)i / (float)n;
	for (int32_t r = 0; r < rows; r++)
		pf_cpu_rmsnorm(ref + r * n, x + r * n, w, n, 1e-5f);
	int rc = pf_cuda_rmsnorm_host(0, got, x, w, rows, n, 1e-5f, err, sizeof(err));
	if (rc)
		fail_msg("pf_cuda_rmsnorm_host: %d %s", rc, err);
	double maxerr = 0;
	for (int32_t i = 0; i < rows * n; i++) {
		double e = fabs((double)got[i] - ref[i]) / (fabs(ref[i]) + 1e-6);
		maxerr = e > maxerr ? e : maxerr;
	}
	printf("# rmsnorm max relative error vs CPU: %.3g\n", maxerr);
	assert_true(maxerr < 1e-5);
	free(x); free(w); free(ref); free(got);
}
#endif

int main(void)
{
#ifdef PF_HAVE_CUDA
	int n = pf_cuda_device_count();
	if (n <= 0) {
		printf("skip: no CUDA device\n");
		return 77;
	}
	char d[256];
	if (pf_cuda_device_describe(0, d, sizeof(d)) == 0)
		printf("# device 0: %s\n", d);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rmsnorm_matches_cpu),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
#else
	printf("skip: built without CUDA (PF_CUDA=0 or no nvcc)\n");
	return 77;
#endif
}
