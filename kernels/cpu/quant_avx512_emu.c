/*
 * quant_avx512_emu.c — the AVX-512 kernels of quant_avx512.c built a second
 * time over the plain-C emulation of their intrinsics (avx512_emu.h), as
 * pf_quant_ops_avx512_emu().  pf_qtype_ops() hands them out for
 * PF_ISA_AVX512EMU (PF_ISA=avx512emu), so the kernel tests and the model-level
 * cross-ISA tests check the AVX-512 code's arithmetic bit for bit on CPUs
 * without AVX-512.  Never selected by detection.
 */
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"

#if PF_QUANT_X86

#include "kernels/cpu/avx512_emu.h"

#define PF_AVX512 PF_EMU
#define pf_quant_ops_avx512 pf_quant_ops_avx512_emu
#include "kernels/cpu/quant_avx512.c"

#else
typedef int pf_quant_avx512_emu_empty; /* keeps the translation unit non-empty */
#endif
