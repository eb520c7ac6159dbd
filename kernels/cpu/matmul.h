/*
 * matmul.h — threaded matmuls of quantized weights with a batch of activations.
 *
 *   y (n_tok, n_out) = x (n_tok, n_in) · Wᵀ,   W (n_out, n_in) of any weight type.
 *
 * Two phases, both parallel on the pool: the activation rows are quantized
 * once into the weight type's activation format (pf_cpu_quantize_acts), then
 * output rows are split into chunks claimed dynamically by the threads; each
 * chunk's weight rows (a few KiB) stay in L1/L2 while every token of the step
 * is multiplied with them, so the weights stream from memory once per step
 * whatever the batch size.  Each y element is one vec_dot of one weight row
 * and one activation row, so the result does not depend on the batch.
 * Quantized activations can be reused by several matmuls with the same input
 * (Q, K and V; gate and up).
 */
#ifndef PF_CPU_MATMUL_H
#define PF_CPU_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/threadpool.h"

/* Quantize x (n_tok, n_in) into act (n_tok rows of act_row_bytes) in the
 * activation format of `ops`.  Cannot fail. */
void pf_cpu_quantize_acts(struct pf_tp *tp, const struct pf_qtype_ops *ops, const float *x,
			  int64_t n_tok, int64_t n_in, void *act, size_t act_row_bytes);

/* y (n_tok, rows of y_stride floats) = act · Wᵀ.  Cannot fail. */
void pf_cpu_matmul_act(struct pf_tp *tp, const struct pf_qtype_ops *ops, const struct pf_tensor_ref *w,
		       const void *act, size_t act_row_bytes, int64_t n_tok, float *y, int64_t y_stride);

#endif
