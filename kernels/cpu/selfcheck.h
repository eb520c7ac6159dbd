/*
 * selfcheck.h — the load-time proof that the kernels about to serve give the
 * scalar reference's bits on this model's own weights.
 *
 * Every CPU kernel sums in one canonical order (quant.h), so the SIMD levels
 * must agree with the scalar reference exactly, not within a tolerance.  A
 * path nobody has run on this kind of CPU (AVX-512 on a host the tests never
 * saw, a miscompiled build, a CPU erratum) must not serve silently: before
 * the backend serves, a few rows of every weight matrix type the model uses
 * (layer 0's seven matrices and the output matrix; rows from both ends and
 * the middle, through vec_dot and vec_dot_4x) and the SwiGLU and attention
 * ops are computed with the chosen ISA and with the scalar reference, from
 * the same activations, and compared bit for bit.  On any difference the
 * figures go into the verdict and the next ISA down is tried (AVX-512 ->
 * AVX2 -> scalar; the scalar reference needs no check).  Bounded: a few
 * dozen rows, milliseconds even for an 8B model.
 */
#ifndef PF_CPU_SELFCHECK_H
#define PF_CPU_SELFCHECK_H

#include <stddef.h>

#include "kernels/backend.h"
#include "kernels/cpu/quant.h"

/*
 * Pick the ISA to serve `w` with, starting from `want`: the first level from
 * `want` down whose kernels pass the check.  The verdict (what was checked,
 * what failed with its figures, what was chosen) goes into `verdict`.
 * Returns the ISA; cannot fail (the scalar reference is the floor).
 */
enum pf_isa pf_cpu_selfcheck(const struct pf_model_weights *w, enum pf_isa want, char *verdict, size_t len);

#endif
