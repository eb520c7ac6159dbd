/*
 * emu.h — a CUDA-on-CPU emulator for checking the kernels' logic on a machine
 * without a GPU (tests/gpu/emu/run.sh).  Each CUDA thread is a fiber
 * (ucontext) on one OS thread; the blocks of a launch run one after another;
 * __syncthreads, __syncwarp and warp shuffles are barriers that switch
 * fibers.  Launch limits (threads per block, grid y/z, shared memory with
 * and without the opt-in attribute) are enforced as on the device; device
 * memory and fresh shared memory read as NaN until written.  The CUDA
 * runtime and cuBLAS calls the .cu files make are implemented on the host
 * (include/).  It checks indices, barriers and arithmetic — not speed, the
 * memory model, or anything a real device does differently.
 */
#pragma once
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <functional>
#include <algorithm>

struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct uint3e { unsigned x, y, z; };
struct uint4 { unsigned x, y, z, w; };

struct emu_tls_t { uint3e ti, bi; dim3 bd, gd; int tid; };
extern emu_tls_t emu_tls;
#define threadIdx (emu_tls.ti)
#define blockIdx (emu_tls.bi)
#define blockDim (emu_tls.bd)
#define gridDim (emu_tls.gd)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);
float emu_shfl_xor(float v, int o);
static inline float __shfl_xor_sync(unsigned, float v, int o) { return emu_shfl_xor(v, o); }
void *emu_dyn_smem();
void emu_launch(const void *fn, dim3 g, dim3 b, size_t smem, void *stream, std::function<void()> body);

static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
static inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
static inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
static inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
