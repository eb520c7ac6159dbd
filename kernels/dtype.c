/* dtype.c — the table behind dtype.h. */
#include "kernels/dtype.h"

static const struct pf_dtype_info pf_dtypes[PF_DT_COUNT] = {
	[PF_DT_F32] = { "F32", 1, 4 },
	[PF_DT_F16] = { "F16", 1, 2 },
	[PF_DT_Q4_0] = { "Q4_0", 32, 2 + 16 },
	[PF_DT_Q4_1] = { "Q4_1", 32, 2 + 2 + 16 },
	[PF_DT_Q5_0] = { "Q5_0", 32, 2 + 4 + 16 },
	[PF_DT_Q5_1] = { "Q5_1", 32, 2 + 2 + 4 + 16 },
	[PF_DT_Q8_0] = { "Q8_0", 32, 2 + 32 },
	[PF_DT_Q8_1] = { "Q8_1", 32, 4 + 32 },
	[PF_DT_Q2_K] = { "Q2_K", 256, 16 + 64 + 2 + 2 },
	[PF_DT_Q3_K] = { "Q3_K", 256, 32 + 64 + 12 + 2 },
	[PF_DT_Q4_K] = { "Q4_K", 256, 2 + 2 + 12 + 128 },
	[PF_DT_Q5_K] = { "Q5_K", 256, 2 + 2 + 12 + 32 + 128 },
	[PF_DT_Q6_K] = { "Q6_K", 256, 128 + 64 + 16 + 2 },
	[PF_DT_Q8_K] = { "Q8_K", 256, 4 + 256 + 32 },
	[PF_DT_I8] = { "I8", 1, 1 },
	[PF_DT_I16] = { "I16", 1, 2 },
	[PF_DT_I32] = { "I32", 1, 4 },
	[PF_DT_I64] = { "I64", 1, 8 },
	[PF_DT_F64] = { "F64", 1, 8 },
	[PF_DT_BF16] = { "BF16", 1, 2 },
};

const struct pf_dtype_info *pf_dtype_info(uint32_t t)
{
	if (t >= PF_DT_COUNT || !pf_dtypes[t].name)
		return NULL;
	return &pf_dtypes[t];
}

const char *pf_dtype_name(uint32_t t)
{
	const struct pf_dtype_info *i = pf_dtype_info(t);
	return i ? i->name : "unknown";
}

bool pf_dtype_supported(uint32_t t)
{
	switch (t) {
	case PF_DT_F32: case PF_DT_F16: case PF_DT_BF16: case PF_DT_Q8_0:
	case PF_DT_Q4_0: case PF_DT_Q4_1: case PF_DT_Q4_K: case PF_DT_Q6_K:
		return true;
	default:
		return false;
	}
}

size_t pf_dtype_row_bytes(uint32_t t, uint64_t n)
{
	const struct pf_dtype_info *i = pf_dtype_info(t);
	if (!i || n % i->block_elems)
		return 0;
	return (size_t)(n / i->block_elems) * i->block_bytes;
}
