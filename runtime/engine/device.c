/* device.c — backend selection; see device.h. */
#include "runtime/engine/device.h"

#include <errno.h>
#include <math.h>
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#ifdef PF_HAVE_CUDA
#include "kernels/cuda/cuda.h"
#endif
/* the CUDA backend proper (cuda.h says so); discovery alone is not enough */
#if defined(PF_HAVE_CUDA) && defined(PF_CUDA_HAVE_BACKEND)
#define USE_CUDA 1
#endif

#define CPU_KV_DEFAULT (512LL << 20)
#define GPU_SWAP_DEFAULT (4LL << 30)

/* Host swap slots for `bytes` (or the default) of swap space. */
static int swap_blocks(const struct pf_model_weights *w, const struct pf_device_request *req, int64_t dflt,
		       int32_t *ret, char *err, size_t errlen)
{
	int64_t bytes = req->swap_space >= 0 ? req->swap_space : dflt;
	int64_t n = bytes / (int64_t)pf_kv_block_bytes(&w->hp, req->block_size, req->kv_dtype);
	if (n > (1 << 24)) {
		snprintf(err, errlen, "swap space of %lld bytes gives %lld blocks; at most %d", (long long)bytes,
			 (long long)n, 1 << 24);
		return -EINVAL;
	}
	*ret = (int32_t)n;
	return 0;
}

int pf_device_parse(const char *s, int *ret)
{
	if (!s || !*s || !strcmp(s, "auto")) {
		*ret = PF_DEVICE_AUTO;
		return 0;
	}
	if (!strcmp(s, "cpu")) {
		*ret = PF_DEVICE_CPU;
		return 0;
	}
	if (!strcmp(s, "cuda")) {
		*ret = 0;
		return 0;
	}
	if (!strncmp(s, "cuda:", 5) && s[5]) {
		char *end;
		long v = strtol(s + 5, &end, 10);
		if (*end || v < 0 || v > 1023)
			return -EINVAL;
		*ret = (int)v;
		return 0;
	}
	return -EINVAL;
}

static int cpu_backend(const struct pf_model_weights *w, const struct pf_device_request *req, struct pf_backend *ret,
		       char *err, size_t errlen)
{
	int64_t bytes = req->kv_memory > 0 ? req->kv_memory : CPU_KV_DEFAULT;
	size_t bb = pf_kv_block_bytes(&w->hp, req->block_size, req->kv_dtype);
	int64_t n_blocks = bytes / (int64_t)bb;
	if (n_blocks < 1 || n_blocks > (1 << 24)) {
		snprintf(err, errlen, "KV memory of %lld bytes gives %lld blocks of %zu bytes; need 1..%d", (long long)bytes,
			 (long long)n_blocks, bb, 1 << 24);
		return -EINVAL;
	}
	struct pf_kv_config kvc = { .n_blocks = (int32_t)n_blocks, .block_size = req->block_size, .kv_dtype = req->kv_dtype };
	int r = swap_blocks(w, req, 0, &kvc.n_host_blocks, err, errlen);
	if (r)
		return r;
	return pf_cpu_backend_create(w, &kvc, req->n_threads, ret, err, errlen);
}

#ifdef USE_CUDA
static void numa_host_free(void *p, size_t bytes)
{
	numa_free(p, bytes);
}

static int cuda_backend(const struct pf_model_weights *w, const struct pf_device_request *req, int dev,
			struct pf_backend *ret, char *err, size_t errlen)
{
	struct pf_cuda_backend_config cc = pf_cuda_backend_config_default();
	cc.device = dev;
	cc.log = req->log;
	if (req->gpu_memory_utilization > 0)
		cc.memory_utilization = req->gpu_memory_utilization;
	struct pf_kv_config kvc = { .n_blocks = 0, .block_size = req->block_size, .kv_dtype = req->kv_dtype };
	int r = swap_blocks(w, req, GPU_SWAP_DEFAULT, &kvc.n_host_blocks, err, errlen);
	if (r)
		return r;
	/* swap slots on the GPU's NUMA node when there is more than one node;
	 * else (or when that fails) the backend takes page-locked memory from
	 * the CUDA driver, placed wherever the kernel likes */
	int node = pf_cuda_device_numa_node(dev);
	if (kvc.n_host_blocks > 0 && node >= 0 && numa_available() >= 0 && numa_max_node() > 0) {
		size_t bytes = (size_t)kvc.n_host_blocks * pf_kv_block_bytes(&w->hp, req->block_size, req->kv_dtype);
		void *p = numa_alloc_onnode(bytes, node);
		if (p) {
			cc.swap_host = p;
			cc.swap_host_bytes = bytes;
			cc.swap_host_free = numa_host_free;
		}
	}
	if (req->kv_memory > 0) {
		size_t bb = pf_kv_block_bytes(&w->hp, req->block_size, req->kv_dtype);
		int64_t n_blocks = req->kv_memory / (int64_t)bb;
		if (n_blocks < 1 || n_blocks > (1 << 24)) {
			snprintf(err, errlen, "KV memory of %lld bytes gives %lld blocks of %zu bytes; need 1..%d",
				 (long long)req->kv_memory, (long long)n_blocks, bb, 1 << 24);
			return -EINVAL;
		}
		kvc.n_blocks = (int32_t)n_blocks;
	}
	return pf_cuda_backend_create(w, &kvc, &cc, ret, err, errlen); /* owns swap_host now */
}
#endif

#ifdef USE_CUDA
/*
 * A GPU picked by auto must agree with the CPU before it serves: one short
 * prompt through both backends, the last row's logits compared by
 * normalised error.  The CPU multiplies 8-bit activations and the GPU float
 * ones, so a few percent is normal; a broken kernel, driver or build gives
 * O(1) or NaN.  Writes block 0 of the GPU pool, which holds nothing yet.
 * Returns 0 when they agree, else a negative errno with the reason.
 */
#define CHECK_TOKENS 8
#define CHECK_BOUND 0.15

static int check_against_cpu(const struct pf_model_weights *w, const struct pf_device_request *req,
			     const struct pf_backend *gpu, char *why, size_t whylen)
{
	struct pf_kv_config kvc = { .n_blocks = 1, .block_size = req->block_size, .kv_dtype = req->kv_dtype };
	const int32_t nv = w->hp.n_vocab;
	int32_t tok[CHECK_TOKENS], pos[CHECK_TOKENS], seq[CHECK_TOKENS] = { 0 }, table[1] = { 0 }, ntab = 1;
	int32_t last = CHECK_TOKENS - 1;
	const int32_t *tables[1] = { table };
	struct pf_backend cpu;
	char err[256];
	float *a = malloc(sizeof(float) * (size_t)nv), *b = malloc(sizeof(float) * (size_t)nv);
	int r = a && b ? 0 : -ENOMEM;
	if (r)
		goto out;
	for (int32_t i = 0; i < CHECK_TOKENS; i++) {
		tok[i] = (int32_t)((1 + 7919 * (int64_t)i) % nv); /* spread over the vocabulary */
		pos[i] = i;
	}
	struct pf_batch bt = { .n_tokens = CHECK_TOKENS, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = 1,
			       .block_table = tables, .n_table = &ntab, .n_logits = 1, .logit_rows = &last };
	r = pf_cpu_backend_create(w, &kvc, req->n_threads, &cpu, err, sizeof(err));
	if (r) {
		snprintf(why, whylen, "no CPU backend to check it against: %.150s", err);
		goto out;
	}
	r = cpu.ops->forward(cpu.ctx, &bt, a);
	cpu.ops->destroy(cpu.ctx);
	if (r) {
		snprintf(why, whylen, "the CPU reference forward failed (%d)", r);
		goto out;
	}
	r = gpu->ops->forward(gpu->ctx, &bt, b);
	if (r) {
		snprintf(why, whylen, "its first forward failed (%d)", r);
		goto out;
	}
	double num = 0, den = 0;
	for (int32_t v = 0; v < nv; v++) {
		num += ((double)b[v] - a[v]) * ((double)b[v] - a[v]);
		den += (double)a[v] * a[v];
	}
	double e = den > 0 ? sqrt(num / den) : sqrt(num);
	if (!(e <= CHECK_BOUND)) { /* NaN fails too */
		snprintf(why, whylen, "its logits disagree with the CPU's: normalised error %.3g > %.2g", e, CHECK_BOUND);
		r = -EIO;
	}
out:
	free(a);
	free(b);
	return r;
}
#endif

int pf_device_backend_create(const struct pf_model_weights *w, const struct pf_device_request *req,
			     struct pf_backend *ret, char *note, size_t notelen, char *err, size_t errlen)
{
	char dummy[8];
	if (!note) {
		note = dummy;
		notelen = sizeof(dummy);
	}
	note[0] = '\0';
	if (req->device == PF_DEVICE_CPU) {
		snprintf(note, notelen, "device: cpu (asked for)");
		return cpu_backend(w, req, ret, err, errlen);
	}
#ifdef USE_CUDA
	int n = pf_cuda_device_count();
	if (req->device >= 0) {
		if (req->device >= n) {
			snprintf(err, errlen, "--device cuda:%d: this machine has %d usable CUDA device%s", req->device, n,
				 n == 1 ? "" : "s");
			return -ENODEV;
		}
		snprintf(note, notelen, "device: cuda:%d (asked for)", req->device);
		return cuda_backend(w, req, req->device, ret, err, errlen);
	}
	if (n > 0) {
		char cerr[256] = "";
		int r = cuda_backend(w, req, 0, ret, cerr, sizeof(cerr));
		const bool created = r == 0;
		if (created)
			r = check_against_cpu(w, req, ret, cerr, sizeof(cerr));
		if (r == 0) {
			snprintf(note, notelen, "device: cuda:0 (auto: %d CUDA device%s, agrees with the CPU)", n,
				 n == 1 ? "" : "s");
			return 0;
		}
		if (created) {
			ret->ops->destroy(ret->ctx);
			memset(ret, 0, sizeof(*ret));
			snprintf(note, notelen, "device: cpu (auto: cuda:0 failed its check: %.200s)", cerr);
		} else {
			snprintf(note, notelen, "device: cpu (auto: cuda:0 could not take the model: %.200s)", cerr);
		}
	} else {
		snprintf(note, notelen, "device: cpu (auto: no usable CUDA device)");
	}
#else
	if (req->device >= 0) {
		snprintf(err, errlen, "--device cuda%s: this build has no CUDA (nvcc was not found when it was built)",
			 req->device ? ":N" : "");
		return -ENODEV;
	}
	snprintf(note, notelen, "device: cpu (auto: built without CUDA)");
#endif
	return cpu_backend(w, req, ret, err, errlen);
}
