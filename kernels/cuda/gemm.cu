/* gemm.cu — cuBLAS GEMMs on FP16 weights for large batches; see cuda.h. */
#include "kernels/cuda/common.cuh"

#include <climits>
#include <cstdlib>
#include <cublas_v2.h>

struct pf_cuda_blas {
	cublasHandle_t h;
	void *ws; /* the handle's workspace (see pf_cuda_blas_create) */
	cudaStream_t stream; /* the stream last set, valid when stream_set */
	bool stream_set;
};

/* cuBLAS's recommended workspace for Hopper (4 MiB suffice before it) */
#define PF_CUDA_BLAS_WORKSPACE ((size_t)32 << 20)

static int blas_check(cublasStatus_t s, const char *what, char *err, size_t errlen)
{
	if (s == CUBLAS_STATUS_SUCCESS)
		return 0;
	if (err && errlen)
		snprintf(err, errlen, "cuBLAS %s failed: %s", what, cublasGetStatusString(s));
	switch (s) {
	case CUBLAS_STATUS_ALLOC_FAILED: return -ENOMEM;
	case CUBLAS_STATUS_NOT_INITIALIZED: return -ENODEV;
	case CUBLAS_STATUS_INVALID_VALUE: return -EINVAL;
	case CUBLAS_STATUS_NOT_SUPPORTED:
	case CUBLAS_STATUS_ARCH_MISMATCH: return -ENOTSUP;
	default: return -EIO;
	}
}

extern "C" int pf_cuda_blas_create(struct pf_cuda_blas **ret, char *err, size_t errlen)
{
	struct pf_cuda_blas *b = (struct pf_cuda_blas *)calloc(1, sizeof(*b));
	*ret = nullptr;
	if (!b)
		return -ENOMEM;
	int r = blas_check(cublasCreate(&b->h), "cublasCreate", err, errlen);
	if (r) {
		free(b);
		return r;
	}
	/* a workspace of our own, set once: cuBLAS then allocates nothing
	 * while it runs, which a stream being captured into a CUDA graph
	 * (the backend's decode steps) requires */
	r = pf_cuda_malloc(&b->ws, PF_CUDA_BLAS_WORKSPACE, err, errlen);
	if (!r)
		r = blas_check(cublasSetWorkspace(b->h, b->ws, PF_CUDA_BLAS_WORKSPACE), "cublasSetWorkspace", err, errlen);
	if (r) {
		pf_cuda_blas_destroy(b);
		return r;
	}
	*ret = b;
	return 0;
}

extern "C" void pf_cuda_blas_destroy(struct pf_cuda_blas *b)
{
	if (!b)
		return;
	cublasDestroy(b->h);
	pf_cuda_free(b->ws);
	free(b);
}

extern "C" int pf_cuda_gemm_f16(struct pf_cuda_blas *b, float *y, const void *w_f16, const float *x, void *xh,
				int64_t n_in, int64_t n_out, int32_t n_tok, const float *bias, const struct pf_cuda_launch *lc)
{
	if (!b || n_in <= 0 || n_out <= 0 || n_tok < 0 || n_in > INT_MAX || n_out > INT_MAX)
		return pf_cuda_bad_args(lc, "gemm_f16");
	int r;
	if (!b->stream_set || b->stream != pf_cuda_stream(lc)) {
		/* cublasSetStream puts the handle back on cuBLAS's default
		 * workspace pool, which may allocate, so ours goes back with it;
		 * only when the stream changes, so never while the backend
		 * captures its stream (it binds the stream before) */
		b->stream_set = false;
		r = blas_check(cublasSetStream(b->h, pf_cuda_stream(lc)), "cublasSetStream", lc->err, lc->errlen) ?:
		    blas_check(cublasSetWorkspace(b->h, b->ws, PF_CUDA_BLAS_WORKSPACE), "cublasSetWorkspace", lc->err,
			       lc->errlen);
		if (r)
			return r;
		b->stream = pf_cuda_stream(lc);
		b->stream_set = true;
	}
	if (n_tok == 0)
		return 0;
	r = pf_cuda_f32_to_f16(xh, x, (int64_t)n_tok * n_in, lc);
	if (r)
		return r;
	/*
	 * Row-major y (n_tok, n_out) = x (n_tok, n_in) · Wᵀ is, in cuBLAS's
	 * column-major terms, y' (n_out × n_tok) = W' ᵀ · x' with W' = W read
	 * as (n_in × n_out, ld n_in) and x' = x as (n_in × n_tok, ld n_in).
	 */
	const float alpha = 1.0f, beta = 0.0f;
	r = blas_check(cublasGemmEx(b->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_out, n_tok, (int)n_in, &alpha, w_f16, CUDA_R_16F,
				    (int)n_in, xh, CUDA_R_16F, (int)n_in, &beta, y, CUDA_R_32F, (int)n_out,
				    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
		       "cublasGemmEx", lc->err, lc->errlen);
	if (r)
		return r;
	return bias ? pf_cuda_add_bias(y, bias, n_tok, n_out, lc) : 0;
}
