/*
 * test_selfcheck.c — the load-time kernel self-check (kernels/cpu/selfcheck.h)
 * on the real model: it passes on healthy kernels, and a fault injected into
 * one kernel makes the backend fall back to the next ISA that agrees and say
 * so, with the figures, in its verdict.
 *
 * The fault: this binary defines the strong pf_qtype_ops_fault (the library
 * has a weak identity), switched by PF_FAULT_KERNEL=TYPE:ISA (e.g.
 * "q4_1:avx2"): that ISA's table of that weight type gets a vec_dot whose
 * result is off by one ulp now and then — the kind of difference a wrong
 * summation order makes.  Only test binaries carry it.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"
#include "kernels/cpu/selfcheck.h"
#include "kernels/dtype.h"
#include "runtime/model/model.h"
#include "tests/unit/testutil.h"

/* ---- the fault ------------------------------------------------------------ */

static const struct pf_qtype_ops *faulty_base;
static struct pf_qtype_ops faulty;

static void bad_dot(int64_t n, float *s, const void *w, const void *a)
{
	faulty_base->vec_dot(n, s, w, a);
	uint32_t u;
	memcpy(&u, s, 4);
	if (u & 0x10) /* about half the rows, one ulp */
		u ^= 1;
	memcpy(s, &u, 4);
}

static void bad_dot4(int64_t n, float *s, const void *w, size_t ws, const void *a)
{
	for (int r = 0; r < 4; r++)
		bad_dot(n, s + r, (const char *)w + (size_t)r * ws, a);
}

const struct pf_qtype_ops *pf_qtype_ops_fault(const struct pf_qtype_ops *ops, uint32_t wtype, enum pf_isa isa)
{
	const char *f = getenv("PF_FAULT_KERNEL");
	char want[64];
	if (!f || !ops)
		return ops;
	snprintf(want, sizeof(want), "%s:%s", pf_dtype_name(wtype), pf_isa_name(isa));
	if (strcasecmp(f, want))
		return ops;
	faulty_base = ops;
	faulty = *ops;
	faulty.vec_dot = bad_dot;
	faulty.vec_dot_4x = bad_dot4;
	return &faulty;
}

/* ---- tests ---------------------------------------------------------------- */

struct fixture {
	struct pf_model *m;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[512];
	if (!f)
		return -1;
	*state = f;
	if (pf_model_load(tu_model_path(), &f->m, err, sizeof(err))) {
		fprintf(stderr, "model: %s (run `make model`)\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	if (f->m)
		pf_model_free(f->m);
	free(f);
	return 0;
}

/* A backend with PF_ISA and PF_FAULT_KERNEL as given (NULL: unset); its
 * verdict into `verdict`, its description into `desc`. */
static void make_backend(struct fixture *f, const char *isa, const char *fault, char *verdict, char *desc)
{
	struct pf_kv_config kv = { .n_blocks = 8, .block_size = 16, .kv_dtype = PF_DT_F16 };
	struct pf_backend be;
	char err[256];
	if (isa)
		setenv("PF_ISA", isa, 1);
	else
		unsetenv("PF_ISA");
	if (fault)
		setenv("PF_FAULT_KERNEL", fault, 1);
	else
		unsetenv("PF_FAULT_KERNEL");
	assert_int_equal(pf_cpu_backend_create(&f->m->w, &kv, 1, &be, err, sizeof(err)), 0);
	assert_non_null(be.ops->self_check);
	snprintf(verdict, 1024, "%s", be.ops->self_check(be.ctx));
	snprintf(desc, 256, "%s", be.ops->describe(be.ctx));
	be.ops->destroy(be.ctx);
	unsetenv("PF_ISA");
	unsetenv("PF_FAULT_KERNEL");
	printf("# PF_ISA=%s PF_FAULT_KERNEL=%s: %s | %s\n", isa ? isa : "(best)", fault ? fault : "-", desc, verdict);
}

static void test_healthy(void **state)
{
	struct fixture *f = *state;
	char v[1024], d[256], want[64];
	const enum pf_isa hw = pf_cpu_isa_detect();

	make_backend(f, NULL, NULL, v, d);
	if (hw == PF_ISA_SCALAR) {
		assert_non_null(strstr(v, "scalar reference (nothing to check)"));
		return;
	}
	snprintf(want, sizeof(want), "%s kernels bit-identical to the scalar reference on ", pf_isa_name(hw));
	assert_non_null(strstr(v, want));
	assert_null(strstr(v, "FAILED"));
	snprintf(want, sizeof(want), "cpu %s,", pf_isa_name(hw));
	assert_non_null(strstr(d, want));
	/* the emulated AVX-512 kernels pass too */
	make_backend(f, "avx512emu", NULL, v, d);
	assert_non_null(strstr(v, "avx512emu kernels bit-identical to the scalar reference"));
	assert_non_null(strstr(d, "cpu avx512emu,"));
}

static void test_fault_falls_back(void **state)
{
	struct fixture *f = *state;
	char v[1024], d[256];

	if (pf_cpu_isa_detect() < PF_ISA_AVX2) {
		printf("# no AVX2 on this CPU: only the scalar reference, nothing to fall back from\n");
		make_backend(f, NULL, "q4_1:scalar", v, d);
		assert_non_null(strstr(v, "scalar reference (nothing to check)"));
		return;
	}
	/* a faulty emulated AVX-512 Q4_1 kernel: AVX2 serves, and the verdict
	 * names the failure with its figures */
	make_backend(f, "avx512emu", "q4_1:avx512emu", v, d);
	assert_non_null(strstr(v, "avx512emu FAILED (blk.0."));
	assert_non_null(strstr(v, "(Q4_1) row "));
	assert_non_null(strstr(v, "scalar reference"));
	assert_non_null(strstr(v, "avx2 kernels bit-identical to the scalar reference"));
	assert_non_null(strstr(d, "cpu avx2,"));
	/* a faulty AVX2 Q8_0 kernel (the output matrix): the scalar reference serves */
	make_backend(f, "avx2", "q8_0:avx2", v, d);
	assert_non_null(strstr(v, "avx2 FAILED (output (Q8_0) row "));
	assert_non_null(strstr(v, "falling back to the scalar reference"));
	assert_non_null(strstr(d, "cpu scalar,"));
	/* a fault in a type this model does not use changes nothing */
	make_backend(f, "avx2", "q6_k:avx2", v, d);
	assert_null(strstr(v, "FAILED"));
	assert_non_null(strstr(d, "cpu avx2,"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthy),
		cmocka_unit_test(test_fault_falls_back),
	};
	tu_need_model("test_selfcheck");
	return tu_run_group_tests("test_selfcheck", tests, setup, teardown);
}
