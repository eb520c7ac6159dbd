/* device.cu — device discovery, memory, copies and streams; see cuda.h. */
#include "kernels/cuda/common.cuh"

#include <cctype>
#include <cstdio>
#include <cstring>

extern "C" int pf_cuda_device_count(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		cudaGetLastError(); /* clear the "no driver" status so later calls start clean */
		return 0;
	}
	return n;
}

extern "C" int pf_cuda_device_info(int dev, struct pf_cuda_device_info *ret)
{
	cudaDeviceProp p;
	int clock_khz = 0, bus_bits = 0, optin = 0;
	if (cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
		cudaGetLastError();
		return -ENODEV;
	}
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->name, sizeof(ret->name), "%.*s", (int)sizeof(ret->name) - 1, p.name);
	ret->sm_major = p.major;
	ret->sm_minor = p.minor;
	ret->n_sm = p.multiProcessorCount;
	ret->total_mem = p.totalGlobalMem;
	/* the clock is an attribute since CUDA 13 dropped the property; DDR:
	 * two transfers per clock */
	if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev) == cudaSuccess &&
	    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess)
		ret->peak_bw = 2.0 * (double)clock_khz * 1e3 * (double)bus_bits / 8.0;
	else
		cudaGetLastError();
	if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess)
		ret->max_smem_optin = (size_t)optin;
	else
		cudaGetLastError();
	return 0;
}

extern "C" int pf_cuda_device_describe(int dev, char *buf, size_t len)
{
	struct pf_cuda_device_info i;
	int r = pf_cuda_device_info(dev, &i);
	if (r)
		return r;
	snprintf(buf, len, "%s (sm_%d%d, %d SMs, %.1f GiB, %.0f GB/s)", i.name, i.sm_major, i.sm_minor, i.n_sm,
		 (double)i.total_mem / (1024.0 * 1024.0 * 1024.0), i.peak_bw / 1e9);
	return 0;
}

extern "C" int pf_cuda_device_numa_node(int dev)
{
	char bus[32], path[96];
	if (cudaDeviceGetPCIBusId(bus, (int)sizeof(bus), dev) != cudaSuccess) {
		cudaGetLastError();
		return -1;
	}
	/* CUDA spells the address in upper case, sysfs in lower */
	for (char *p = bus; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/numa_node", bus);
	FILE *f = fopen(path, "r");
	int node = -1;
	if (f) {
		if (fscanf(f, "%d", &node) != 1)
			node = -1;
		fclose(f);
	}
	return node >= 0 ? node : -1; /* the kernel writes -1 for "no node" */
}

extern "C" int pf_cuda_host_register(void *p, size_t bytes, void **ret_dev, char *err, size_t errlen)
{
	*ret_dev = nullptr;
	int r = pf_cuda_check(cudaHostRegister(p, bytes, cudaHostRegisterPortable | cudaHostRegisterMapped),
			      "cudaHostRegister", err, errlen);
	if (r)
		return r;
	r = pf_cuda_check(cudaHostGetDevicePointer(ret_dev, p, 0), "cudaHostGetDevicePointer", err, errlen);
	if (r)
		cudaHostUnregister(p);
	return r;
}

extern "C" void pf_cuda_host_unregister(void *p)
{
	if (p)
		cudaHostUnregister(p);
}

extern "C" int pf_cuda_set_device(int dev, char *err, size_t errlen)
{
	return pf_cuda_check(cudaSetDevice(dev), "cudaSetDevice", err, errlen);
}

extern "C" int pf_cuda_mem_info(size_t *ret_free, size_t *ret_total, char *err, size_t errlen)
{
	return pf_cuda_check(cudaMemGetInfo(ret_free, ret_total), "cudaMemGetInfo", err, errlen);
}

extern "C" int pf_cuda_malloc(void **ret, size_t bytes, char *err, size_t errlen)
{
	*ret = nullptr;
	if (!bytes) {
		if (err && errlen)
			snprintf(err, errlen, "cudaMalloc of 0 bytes");
		return -EINVAL;
	}
	int r = pf_cuda_check(cudaMalloc(ret, bytes), "cudaMalloc", err, errlen);
	if (r) {
		*ret = nullptr;
		if (err && errlen && r == -ENOMEM) {
			size_t n = strlen(err);
			snprintf(err + n, errlen - n, " (%zu bytes)", bytes);
		}
	}
	return r;
}

extern "C" void pf_cuda_free(void *p)
{
	if (p)
		cudaFree(p); /* a failure here leaves nothing to recover */
}

extern "C" int pf_cuda_host_alloc(void **ret, size_t bytes, char *err, size_t errlen)
{
	*ret = nullptr;
	int r = pf_cuda_check(cudaMallocHost(ret, bytes ? bytes : 1), "cudaMallocHost", err, errlen);
	if (r)
		*ret = nullptr;
	return r;
}

extern "C" void pf_cuda_host_free(void *p)
{
	if (p)
		cudaFreeHost(p);
}

extern "C" int pf_cuda_memcpy(void *dst, const void *src, size_t n, const struct pf_cuda_launch *lc)
{
	if (!n)
		return 0;
	/* cudaMemcpyDefault: unified addressing tells host from device */
	return pf_cuda_check(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, pf_cuda_stream(lc)), "cudaMemcpyAsync",
			     lc->err, lc->errlen);
}

extern "C" int pf_cuda_memset(void *dst, int v, size_t n, const struct pf_cuda_launch *lc)
{
	if (!n)
		return 0;
	return pf_cuda_check(cudaMemsetAsync(dst, v, n, pf_cuda_stream(lc)), "cudaMemsetAsync", lc->err, lc->errlen);
}

extern "C" int pf_cuda_stream_create(void **ret, char *err, size_t errlen)
{
	cudaStream_t s = nullptr;
	/* non-blocking: no implicit ordering against the legacy default stream,
	 * which other libraries in the process may use */
	int r = pf_cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate", err, errlen);
	*ret = r ? nullptr : (void *)s;
	return r;
}

extern "C" void pf_cuda_stream_destroy(void *stream)
{
	if (stream)
		cudaStreamDestroy((cudaStream_t)stream);
}

extern "C" int pf_cuda_sync(const struct pf_cuda_launch *lc)
{
	return pf_cuda_check(cudaStreamSynchronize(pf_cuda_stream(lc)), "kernel or copy (at stream sync)", lc->err,
			     lc->errlen);
}

extern "C" bool pf_cuda_weight_type_ok(uint32_t t)
{
	bool ok = false;
	PF_CUDA_TYPE_SWITCH(t, ok = false, ok = PF_T == t)
	return ok;
}
