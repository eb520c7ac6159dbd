/* cuda_fp16.h — the part of the real header the kernels use, on the host (see emu.h). */
#pragma once
#include "emu.h"
extern "C" float pf_f16_to_f32(uint16_t h);
extern "C" uint16_t pf_f32_to_f16(float f);
struct __half { unsigned short x; };
static inline float __half2float(__half h) { return pf_f16_to_f32(h.x); }
static inline __half __float2half_rn(float f) { __half h; h.x = pf_f32_to_f16(f); return h; }
static inline __half __ushort_as_half(unsigned short u) { __half h; h.x = u; return h; }
