/*
 * testutil.h — small helpers shared by the unit tests (header-only).
 *
 * Every unit binary runs its CMocka groups through tu_run_group_tests()
 * (one group) or tu_run_group() + tu_finish() (several), so that each one
 * selects cases the same way and none can pass by running nothing:
 *
 *   TEST_CASE=GLOB   run only the cases whose name matches GLOB (fnmatch(3):
 *                    `test_resume_*`, `test_golden`); tests/run.sh and
 *                    `make test TEST_FILTER=test_sched TEST_CASE=NAME` pass it
 *                    on.  A filter that selects no case in the whole binary
 *                    makes the binary fail with a message: a mistyped name
 *                    must not look like a pass.  (The selection is made here,
 *                    not with cmocka_set_test_filter(): CMocka 1.1 runs the
 *                    group setup and returns 0 when its filter matches
 *                    nothing, so the count would have to be redone anyway.)
 *
 * Binaries that need the model call tu_need_model() first: without the file
 * they exit 77 (skipped) naming `make model`, except under PF_REQUIRE_MODEL=1
 * (`make test`, which fetches the model), where a missing model is a failure.
 */
#ifndef PF_TESTUTIL_H
#define PF_TESTUTIL_H

#include <errno.h>
#include <fnmatch.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static inline const char *tu_model_path(void)
{
	const char *p = getenv("PF_MODEL");
	return p && *p ? p : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

static inline const char *tu_golden_dir(void)
{
	const char *p = getenv("PF_GOLDEN");
	return p && *p ? p : "tests/golden";
}

static inline int tu_asan(void)
{
	const char *p = getenv("PF_ASAN");
	return p && *p == '1';
}

static inline int tu_env_flag(const char *name)
{
	const char *p = getenv(name);
	return p && *p == '1';
}

/* Exit 77 (skip) without the model file, or 1 when PF_REQUIRE_MODEL=1. */
static inline void tu_need_model(const char *binary)
{
	const char *p = tu_model_path();

	if (access(p, R_OK) == 0)
		return;
	if (tu_env_flag("PF_REQUIRE_MODEL")) {
		fprintf(stderr, "FAIL: %s: the model %s cannot be read (%s) and PF_REQUIRE_MODEL=1: "
			"`make model` fetches it\n", binary, p, strerror(errno));
		exit(1);
	}
	printf("skip: %s: the model %s cannot be read (%s): run `make model` or set PF_MODEL\n",
	       binary, p, strerror(errno));
	exit(77);
}

/* The cases of one or more groups that TEST_CASE selected, counted. */
struct tu_run {
	int failed;	 /* cases that failed, over every group */
	size_t selected; /* cases selected, over every group */
};

/*
 * Runs the cases of `tests` that TEST_CASE selects (all without it) as one
 * CMocka group; a group with none selected is not run at all (its setup
 * may load a model for nothing).
 */
static inline void tu_run_group(struct tu_run *r, const char *group, const struct CMUnitTest *tests, size_t n,
				CMFixtureFunction setup, CMFixtureFunction teardown)
{
	const char *pat = getenv("TEST_CASE");
	struct CMUnitTest *sel = malloc(sizeof(*sel) * (n ? n : 1));
	size_t k = 0;

	if (!sel) {
		r->failed++;
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (!pat || !*pat || fnmatch(pat, tests[i].name, 0) == 0)
			sel[k++] = tests[i];
	if (k) {
		r->selected += k;
		r->failed += _cmocka_run_group_tests(group, sel, k, setup, teardown);
	}
	free(sel);
}

/* The binary's exit status: 1 when a case failed or none was selected. */
static inline int tu_finish(const struct tu_run *r, const char *binary)
{
	const char *pat = getenv("TEST_CASE");

	if (!r->selected) {
		fprintf(stderr, "FAIL: %s: TEST_CASE='%s' selects none of its cases\n", binary, pat ? pat : "");
		return 1;
	}
	return r->failed ? 1 : 0;
}

#define TU_NCASES(tests) (sizeof(tests) / sizeof((tests)[0]))

/* One group: cmocka_run_group_tests() with the case selection above. */
#define tu_run_group_tests(binary, tests, setup, teardown)                                   \
	({                                                                                   \
		struct tu_run tu_r_ = { 0, 0 };                                              \
		tu_run_group(&tu_r_, #tests, (tests), TU_NCASES(tests), (setup), (teardown)); \
		tu_finish(&tu_r_, (binary));                                                  \
	})

/* Parse "1,2,3" into a malloc'ed array; returns the count or -1. */
static inline int tu_parse_ids(const char *s, int32_t **ret)
{
	int cap = 16, n = 0;
	int32_t *v = malloc(sizeof(*v) * (size_t)cap);
	if (!v)
		return -1;
	if (!strcmp(s, "-")) {
		*ret = v;
		return 0;
	}
	while (*s) {
		char *end;
		long x = strtol(s, &end, 10);
		if (end == s) {
			free(v);
			return -1;
		}
		if (n == cap) {
			cap *= 2;
			int32_t *nv = realloc(v, sizeof(*v) * (size_t)cap);
			if (!nv) {
				free(v);
				return -1;
			}
			v = nv;
		}
		v[n++] = (int32_t)x;
		s = end;
		while (*s == ',' || *s == ' ')
			s++;
	}
	*ret = v;
	return n;
}

/* Parse "0.1,2.5" into a malloc'ed float array; returns the count or -1. */
static inline int tu_parse_floats(const char *s, float **ret)
{
	int cap = 16, n = 0;
	float *v = malloc(sizeof(*v) * (size_t)cap);
	if (!v)
		return -1;
	while (*s) {
		char *end;
		float x = strtof(s, &end);
		if (end == s) {
			free(v);
			return -1;
		}
		if (n == cap) {
			cap *= 2;
			float *nv = realloc(v, sizeof(*v) * (size_t)cap);
			if (!nv) {
				free(v);
				return -1;
			}
			v = nv;
		}
		v[n++] = x;
		s = end;
		while (*s == ',' || *s == ' ')
			s++;
	}
	*ret = v;
	return n;
}

#endif
