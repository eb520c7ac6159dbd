/* matmul.c — see matmul.h. */
#include "kernels/cpu/matmul.h"

/* Output rows per dynamically claimed chunk: small enough to balance two to
 * a few dozen threads on the narrow (192-row) projections, large enough that
 * claiming a chunk costs nothing next to computing it. */
#define MM_CHUNK_ROWS 16

struct qa_args {
	struct pf_tp *tp;
	const struct pf_qtype_ops *ops;
	const float *x;
	int64_t n_tok, n_in;
	char *act;
	size_t act_row_bytes;
};

static void quantize_task(void *p, int ith, int nth)
{
	const struct qa_args *a = p;
	(void)ith;
	(void)nth;
	for (int64_t t; (t = pf_tp_next_chunk(a->tp)) < a->n_tok;)
		a->ops->quantize_act(a->x + t * a->n_in, a->act + (size_t)t * a->act_row_bytes, a->n_in);
}

void pf_cpu_quantize_acts(struct pf_tp *tp, const struct pf_qtype_ops *ops, const float *x,
			  int64_t n_tok, int64_t n_in, void *act, size_t act_row_bytes)
{
	struct qa_args a = { tp, ops, x, n_tok, n_in, act, act_row_bytes };
	pf_tp_run(tp, quantize_task, &a, n_tok < pf_tp_size(tp) ? (int)n_tok : 0);
}

struct mm_args {
	struct pf_tp *tp;
	const struct pf_qtype_ops *ops;
	const struct pf_tensor_ref *w;
	const char *act;
	size_t act_row_bytes;
	int64_t n_tok;
	float *y;
	int64_t y_stride;
	int64_t n_chunks;
};

static void matmul_task(void *p, int ith, int nth)
{
	const struct mm_args *a = p;
	const int64_t n_in = a->w->ne0, n_out = a->w->ne1;
	const char *wb = a->w->data;
	for (;;) {
		int64_t c = pf_tp_next_chunk(a->tp);
		if (c >= a->n_chunks)
			break;
		int64_t r0 = c * MM_CHUNK_ROWS;
		int64_t r1 = r0 + MM_CHUNK_ROWS < n_out ? r0 + MM_CHUNK_ROWS : n_out;
		for (int64_t t = 0; t < a->n_tok; t++) {
			const char *ar = a->act + (size_t)t * a->act_row_bytes;
			float *yr = a->y + t * a->y_stride;
			int64_t r = r0;
			/* with several tokens the chunk's rows are in cache: the fused
			 * 4-row kernel reuses each activation load four times.  It is
			 * bit-identical to four vec_dot calls, so which path a row
			 * takes never changes its result.  A single token streams the
			 * weights from memory, where one row at a time prefetches better. */
			if (a->n_tok > 1)
				for (; r + 4 <= r1; r += 4)
					a->ops->vec_dot_4x(n_in, &yr[r], wb + (size_t)r * a->w->row_bytes, a->w->row_bytes, ar);
			for (; r < r1; r++)
				a->ops->vec_dot(n_in, &yr[r], wb + (size_t)r * a->w->row_bytes, ar);
		}
	}
}

void pf_cpu_matmul_act(struct pf_tp *tp, const struct pf_qtype_ops *ops, const struct pf_tensor_ref *w,
		       const void *act, size_t act_row_bytes, int64_t n_tok, float *y, int64_t y_stride)
{
	struct mm_args a = {
		.tp = tp, .ops = ops, .w = w, .act = act, .act_row_bytes = act_row_bytes,
		.n_tok = n_tok, .y = y, .y_stride = y_stride,
		.n_chunks = (w->ne1 + MM_CHUNK_ROWS - 1) / MM_CHUNK_ROWS,
	};
	pf_tp_run(tp, matmul_task, &a, 0);
}
