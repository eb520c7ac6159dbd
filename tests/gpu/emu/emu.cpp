/* emu.cpp — the emulator's launches, barriers, and host versions of the CUDA
 * runtime and cuBLAS calls; see include/emu.h. */
#include "emu.h"
#include "cuda_runtime.h"
#include "cublas_v2.h"
#include <map>
#include <vector>
#include <ctime>
#include <cerrno>
#include <cstdio>

emu_tls_t emu_tls;
static cudaError_t g_last = cudaSuccess;
static std::map<const void *, int> g_attr;

/* stream capture: the work a capturing stream would run, in order */
struct emu_graph {
	std::vector<std::function<void()>> ops;
};
static std::map<cudaStream_t, emu_graph *> g_capture;

/* Run f now, or record it when stream s captures. */
static void emu_enqueue(void *s, std::function<void()> f)
{
	auto it = g_capture.find((cudaStream_t)s);
	if (it != g_capture.end())
		it->second->ops.push_back(std::move(f));
	else
		f();
}
static void emu_run(const void *fn, dim3 g, dim3 b, size_t smem, const std::function<void()> &body);

#include <ucontext.h>
struct Barrier {
	int expected = 0, arrived = 0;
	unsigned gen = 0;
	const char *name = "";
};
struct Fiber {
	ucontext_t ctx;
	char *stack;
	int tid;
	bool done;
	Barrier *wait_b;
	unsigned wait_gen;
};
struct Launch {
	dim3 g, b;
	int nthreads, nwarps;
	std::function<void()> body;
	Barrier block;
	Barrier warp[32];
	float slot[32][32];
	std::vector<unsigned char> dyn;
	std::vector<Fiber> f;
};
static Launch *cur;
static Fiber *cur_f;
static ucontext_t sched_ctx;
static const size_t STACK = 512 * 1024;

static void bwait(Barrier &b)
{
	if (++b.arrived >= b.expected) {
		b.arrived = 0;
		b.gen++;
		return;
	}
	cur_f->wait_b = &b;
	cur_f->wait_gen = b.gen;
	swapcontext(&cur_f->ctx, &sched_ctx);
}
static void bexit(Barrier &b)
{
	b.expected--;
	if (b.arrived > 0 && b.arrived >= b.expected) {
		b.arrived = 0;
		b.gen++;
	}
}

void __syncthreads() { bwait(cur->block); }
void __syncwarp(unsigned) { bwait(cur->warp[cur_f->tid / 32]); }
float emu_shfl_xor(float v, int o)
{
	const int w = cur_f->tid / 32, l = cur_f->tid % 32;
	cur->slot[w][l] = v;
	bwait(cur->warp[w]);
	float r = cur->slot[w][l ^ o];
	bwait(cur->warp[w]);
	return r;
}
void *emu_dyn_smem() { return cur->dyn.data(); }

static void fiber_main(int tid)
{
	Launch *L = cur;
	L->body();
	bexit(L->block);
	bexit(L->warp[tid / 32]);
	L->f[tid].done = true;
	/* returns to uc_link: the scheduler */
}

static void set_tls(Launch *L, int tid)
{
	emu_tls.bd = L->b;
	emu_tls.gd = L->g;
	emu_tls.ti.x = tid % L->b.x;
	emu_tls.ti.y = (tid / L->b.x) % L->b.y;
	emu_tls.ti.z = tid / (L->b.x * L->b.y);
	emu_tls.tid = tid;
}

static void run_block(Launch *L)
{
	L->block.expected = L->nthreads;
	L->block.arrived = 0;
	for (int w = 0; w < L->nwarps; w++) {
		L->warp[w].expected = std::min(32, L->nthreads - 32 * w);
		L->warp[w].arrived = 0;
	}
	std::fill(L->dyn.begin(), L->dyn.end(), 0xff); /* uninitialised shared memory reads as NaN */
	for (int i = 0; i < L->nthreads; i++) {
		Fiber &f = L->f[i];
		f.done = false;
		f.wait_b = nullptr;
		getcontext(&f.ctx);
		f.ctx.uc_stack.ss_sp = f.stack;
		f.ctx.uc_stack.ss_size = STACK;
		f.ctx.uc_link = &sched_ctx;
		makecontext(&f.ctx, (void (*)())fiber_main, 1, i);
	}
	for (;;) {
		bool progress = false, all_done = true;
		for (int i = 0; i < L->nthreads; i++) {
			Fiber &f = L->f[i];
			if (f.done)
				continue;
			all_done = false;
			if (f.wait_b && f.wait_b->gen == f.wait_gen)
				continue;
			f.wait_b = nullptr;
			set_tls(L, i);
			cur_f = &f;
			swapcontext(&sched_ctx, &f.ctx);
			progress = true;
		}
		if (all_done)
			return;
		if (!progress) {
			fprintf(stderr, "EMU DEADLOCK: block %u %u %u, a barrier some threads never reach\n", emu_tls.bi.x, emu_tls.bi.y, emu_tls.bi.z);
			abort();
		}
	}
}

void emu_launch(const void *fn, dim3 g, dim3 b, size_t smem, void *stream, std::function<void()> body)
{
	size_t nt = (size_t)b.x * b.y * b.z;
	int limit = 48 * 1024;
	auto it = g_attr.find(fn);
	if (it != g_attr.end())
		limit = it->second;
	if (nt == 0 || nt > 1024 || g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535 || g.x > 2147483647u ||
	    (int)smem > limit || smem > 227 * 1024) {
		fprintf(stderr, "EMU bad launch: grid %u %u %u block %u %u %u smem %zu (limit %d)\n", g.x, g.y, g.z, b.x, b.y, b.z, smem, limit);
		g_last = cudaErrorInvalidConfiguration;
		return;
	}
	emu_enqueue(stream, [=]() { emu_run(fn, g, b, smem, body); });
}

static void emu_run(const void *, dim3 g, dim3 b, size_t smem, const std::function<void()> &body)
{
	const size_t nt = (size_t)b.x * b.y * b.z;
	Launch *L = new Launch();
	L->g = g;
	L->b = b;
	L->nthreads = (int)nt;
	L->nwarps = ((int)nt + 31) / 32;
	L->body = body;
	L->dyn.resize(smem + 16);
	L->f.resize(nt);
	for (size_t i = 0; i < nt; i++) {
		L->f[i].tid = (int)i;
		L->f[i].stack = (char *)malloc(STACK);
	}
	Launch *prev = cur;
	cur = L;
	for (unsigned z = 0; z < g.z; z++)
		for (unsigned y = 0; y < g.y; y++)
			for (unsigned x = 0; x < g.x; x++) {
				emu_tls.bi.x = x;
				emu_tls.bi.y = y;
				emu_tls.bi.z = z;
				run_block(L);
			}
	cur = prev;
	for (size_t i = 0; i < nt; i++)
		free(L->f[i].stack);
	delete L;
}

cudaError_t emu_func_set_attr(const void *fn, int attr, int v)
{
	if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || v > 227 * 1024)
		return cudaErrorInvalidValue;
	g_attr[fn] = v;
	return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev)
{
	if (dev != 0)
		return cudaErrorInvalidDevice;
	memset(p, 0, sizeof(*p));
	strcpy(p->name, "EMU (CPU emulation)");
	p->major = 9;
	p->multiProcessorCount = 1;
	p->totalGlobalMem = 16ull << 30;
	return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int dev)
{
	(void)dev;
	*v = a == cudaDevAttrMemoryClockRate ? 1000000 : a == cudaDevAttrGlobalMemoryBusWidth ? 512 : 227 * 1024;
	return cudaSuccess;
}
cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { *f = 8ull << 30; *t = 16ull << 30; return cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t n)
{
	size_t r = (n + 255) & ~(size_t)255;
	if (posix_memalign(p, 256, n ? n : 1)) *p = nullptr;
	if (!*p)
		return cudaErrorMemoryAllocation;
	memset(*p, 0xff, n ? n : 1); (void)r; /* garbage: NaN floats */
	return cudaSuccess;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMallocHost(void **p, size_t n) { *p = malloc(n); return *p ? cudaSuccess : cudaErrorMemoryAllocation; }
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
/* host memory is device memory here: registering maps it to itself */
cudaError_t cudaHostRegister(void *p, size_t n, unsigned) { return p && n ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaHostUnregister(void *) { return cudaSuccess; }
cudaError_t cudaHostGetDevicePointer(void **d, void *h, unsigned) { *d = h; return cudaSuccess; }
cudaError_t cudaDeviceGetPCIBusId(char *bus, int len, int) { snprintf(bus, (size_t)len, "0000:00:00.0"); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t st)
{
	emu_enqueue(st, [=]() { memcpy(d, s, n); });
	return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t st)
{
	emu_enqueue(st, [=]() { memset(d, v, n); });
	return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = (cudaStream_t)malloc(1); return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { free(s); return cudaSuccess; }
/* as on the device: a capturing stream cannot be waited for */
cudaError_t cudaStreamSynchronize(cudaStream_t s) { return g_capture.count(s) ? cudaErrorStreamCaptureUnsupported : cudaSuccess; }
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode)
{
	if (!s || g_capture.count(s))
		return cudaErrorInvalidValue;
	g_capture[s] = new emu_graph();
	return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g)
{
	auto it = g_capture.find(s);
	if (it == g_capture.end())
		return cudaErrorInvalidValue;
	*g = it->second;
	g_capture.erase(it);
	return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long)
{
	*e = new emu_graph(*g);
	return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s)
{
	if (!e)
		return cudaErrorInvalidValue;
	emu_enqueue(s, [e]() {
		for (auto &f : e->ops)
			f();
	});
	return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete e; return cudaSuccess; }
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }
cudaError_t cudaGetLastError() { cudaError_t e = g_last; g_last = cudaSuccess; return e; }
const char *cudaGetErrorString(cudaError_t e) { return e == cudaErrorInvalidConfiguration ? "invalid configuration (emu)" : "emu error"; }

struct cublasContext {
	cudaStream_t s;
	void *ws;
	size_t ws_bytes;
};
cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new cublasContext(); return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) { h->s = s; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes)
{
	if (bytes && !ws)
		return CUBLAS_STATUS_INVALID_VALUE;
	h->ws = ws;
	h->ws_bytes = bytes;
	return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t) { return "emu cublas error"; }
extern "C" float pf_f16_to_f32(uint16_t h);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
	const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb,
	const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t, cublasGemmAlgo_t)
{
	if (ta != CUBLAS_OP_T || tb != CUBLAS_OP_N || at != CUDA_R_16F || bt != CUDA_R_16F || ct != CUDA_R_32F || lda < k || ldb < k || ldc < m)
		return CUBLAS_STATUS_INVALID_VALUE;
	const uint16_t *a = (const uint16_t *)A, *b = (const uint16_t *)B;
	float *c = (float *)C;
	float al = *(const float *)alpha, be = *(const float *)beta;
	/* queued on the handle's stream like the real one (recorded while it captures) */
	emu_enqueue(h->s, [=]() {
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			float s = 0.0f;
			for (int p = 0; p < k; p++)
				s += pf_f16_to_f32(a[p + (size_t)i * lda]) * pf_f16_to_f32(b[p + (size_t)j * ldb]);
			c[i + (size_t)j * ldc] = al * s + (be != 0.0f ? be * c[i + (size_t)j * ldc] : 0.0f);
		}
	});
	return CUBLAS_STATUS_SUCCESS;
}
