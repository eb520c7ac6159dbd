/*
 * backend.c — the backend-neutral half of backend.h's contract: the checks
 * every backend makes of a KV configuration, a batch and a swap list, with
 * the same limits and the same messages, and the size of a KV block.
 * Written once here so the CPU and CUDA backends cannot drift apart.
 */
#include "kernels/backend.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "kernels/dtype.h"

#define PF_MAX_HOST_BLOCKS (1 << 24)

size_t pf_kv_block_bytes(const struct pf_hparams *hp, int32_t block_size, uint32_t kv_dtype)
{
	size_t es = kv_dtype == PF_DT_F32 ? 4 : 2;
	return (size_t)hp->n_layer * 2 * (size_t)hp->n_head_kv * (size_t)block_size * (size_t)hp->head_dim * es;
}

static int msg(char *err, size_t errlen, int r, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int msg(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;
	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

int pf_backend_check_kv(const struct pf_kv_config *kv, char *err, size_t errlen)
{
	if (kv->block_size != 8 && kv->block_size != 16 && kv->block_size != 32)
		return msg(err, errlen, -EINVAL, "KV block size %d is not supported (8, 16 or 32)", kv->block_size);
	if (kv->kv_dtype != PF_DT_F16 && kv->kv_dtype != PF_DT_F32)
		return msg(err, errlen, -EINVAL, "KV cache type %s is not supported (F16 or F32)",
			   pf_dtype_name(kv->kv_dtype));
	if (kv->n_blocks < 0)
		return msg(err, errlen, -EINVAL, "KV pool of %d blocks", kv->n_blocks);
	if (kv->n_host_blocks < 0 || kv->n_host_blocks > PF_MAX_HOST_BLOCKS)
		return msg(err, errlen, -EINVAL, "%d host swap blocks: need 0..%d", kv->n_host_blocks,
			   PF_MAX_HOST_BLOCKS);
	return 0;
}

int pf_backend_check_batch(const struct pf_batch *b, int32_t n_vocab, const struct pf_kv_config *kv,
			   struct pf_batch_extent *ret, char *err, size_t errlen)
{
	struct pf_batch_extent x = { .max_ctx = 1, .max_table = 1 };

	if (b->n_tokens <= 0 || b->n_seqs <= 0 || b->n_logits < 0 || b->n_logits > b->n_tokens)
		return msg(err, errlen, -EINVAL, "batch of %d tokens, %d sequences, %d logit rows", b->n_tokens,
			   b->n_seqs, b->n_logits);
	for (int32_t t = 0; t < b->n_tokens; t++) {
		int32_t s = b->seq[t], p = b->pos[t];
		if (b->tokens[t] < 0 || b->tokens[t] >= n_vocab || s < 0 || s >= b->n_seqs || p < 0)
			return msg(err, errlen, -EINVAL, "batch row %d: token %d, sequence %d, position %d out of range",
				   t, b->tokens[t], s, p);
		if (p / kv->block_size >= b->n_table[s])
			return msg(err, errlen, -EINVAL, "batch row %d: position %d past the block table of sequence %d",
				   t, p, s);
		x.max_ctx = p + 1 > x.max_ctx ? p + 1 : x.max_ctx;
	}
	for (int32_t s = 0; s < b->n_seqs; s++) {
		x.max_table = b->n_table[s] > x.max_table ? b->n_table[s] : x.max_table;
		for (int32_t i = 0; i < b->n_table[s]; i++)
			if (b->block_table[s][i] < 0 || b->block_table[s][i] >= kv->n_blocks)
				return msg(err, errlen, -EINVAL, "sequence %d: block %d out of the pool of %d", s,
					   b->block_table[s][i], kv->n_blocks);
	}
	for (int32_t i = 0; i < b->n_logits; i++)
		if (b->logit_rows[i] < 0 || b->logit_rows[i] >= b->n_tokens)
			return msg(err, errlen, -EINVAL, "logit row %d out of the batch", b->logit_rows[i]);
	if (ret)
		*ret = x;
	return 0;
}

int pf_backend_check_swap(const struct pf_block_pair *pairs, int32_t n, bool out, const struct pf_kv_config *kv,
			  char *err, size_t errlen)
{
	if (n > 0 && kv->n_host_blocks <= 0)
		return msg(err, errlen, -EINVAL, "swap of %d blocks without swap space", n);
	for (int32_t i = 0; i < n; i++) {
		int32_t block = out ? pairs[i].src : pairs[i].dst, slot = out ? pairs[i].dst : pairs[i].src;
		if (block < 0 || block >= kv->n_blocks || slot < 0 || slot >= kv->n_host_blocks)
			return msg(err, errlen, -EINVAL, "swap pair %d: block %d / host slot %d outside %d / %d", i, block,
				   slot, kv->n_blocks, kv->n_host_blocks);
	}
	return 0;
}

void pf_backend_logf(const struct pf_backend_log *log, int level, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	if (!log || !log->fn)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log->fn(log->arg, level, line);
}
