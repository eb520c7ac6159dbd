/*
 * dtype.h — element and block formats of weight and cache tensors.
 *
 * The numbering is the GGUF/ggml type id, so a tensor's type field in a GGUF
 * file maps straight onto enum pf_dtype.  Quantized formats store elements in
 * blocks: `block_elems` elements packed into `block_bytes` bytes; a row of a
 * tensor must hold a whole number of blocks.  Formats we can describe but not
 * compute with are still listed so tools can print any file; whether the
 * engine computes with a type is pf_dtype_supported().
 */
#ifndef PF_DTYPE_H
#define PF_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pf_dtype {
	PF_DT_F32 = 0,
	PF_DT_F16 = 1,
	PF_DT_Q4_0 = 2,
	PF_DT_Q4_1 = 3,
	PF_DT_Q5_0 = 6,
	PF_DT_Q5_1 = 7,
	PF_DT_Q8_0 = 8,
	PF_DT_Q8_1 = 9,
	PF_DT_Q2_K = 10,
	PF_DT_Q3_K = 11,
	PF_DT_Q4_K = 12,
	PF_DT_Q5_K = 13,
	PF_DT_Q6_K = 14,
	PF_DT_Q8_K = 15,
	PF_DT_I8 = 24,
	PF_DT_I16 = 25,
	PF_DT_I32 = 26,
	PF_DT_I64 = 27,
	PF_DT_F64 = 28,
	PF_DT_BF16 = 30,
	PF_DT_COUNT = 40, /* one past the largest id we know */
};

struct pf_dtype_info {
	const char *name;     /* NULL for an id we do not know */
	uint32_t block_elems; /* elements per block (1 for plain types) */
	uint32_t block_bytes; /* bytes per block */
};

/* Layout of type id `t`, or NULL when `t` is not a type we know.  Cannot fail
 * otherwise. */
const struct pf_dtype_info *pf_dtype_info(uint32_t t);

/* Name of `t` for messages ("Q4_1"); "unknown" for ids we do not know. */
const char *pf_dtype_name(uint32_t t);

/* True when the CPU engine can use `t` as a weight type. */
bool pf_dtype_supported(uint32_t t);

/* Bytes of one row of `n` elements of type `t`; 0 when `t` is unknown or `n`
 * is not a whole number of blocks. */
size_t pf_dtype_row_bytes(uint32_t t, uint64_t n);

#endif
