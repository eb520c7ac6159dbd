/*
 * testutil.h — small helpers shared by the unit tests (header-only).
 */
#ifndef PF_TESTUTIL_H
#define PF_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
