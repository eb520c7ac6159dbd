/*
 * gguf_check.h — the invariants gguf.h promises after a successful open,
 * checked independently of the parser.  Shared by the unit test (which runs
 * it after every hostile input that parsed) and the libFuzzer harness (which
 * aborts when it reports anything).
 *
 * Every range the object hands out (metadata values, array elements, tensor
 * data) is checked against the caller's buffer with overflow-safe arithmetic,
 * and the first and last byte of each is read, so that under ASan a range
 * that escapes the buffer is reported at the point it is handed out rather
 * than later by a consumer.  Tensor data is only touched when `touch_data` is
 * set: the truncation tests map the data section PROT_NONE on purpose.
 *
 * Header-only on purpose: the Makefile links each tests/unit/test_X.c alone,
 * so a shared .c file would need a rule of its own.
 */
#ifndef PF_TESTS_GGUF_CHECK_H
#define PF_TESTS_GGUF_CHECK_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dtype.h"
#include "runtime/model/gguf.h"

/* Read the ends of [p, p + n) so ASan sees a range outside the buffer. */
static void gguf_check_touch(const void *p, uint64_t n)
{
	const volatile uint8_t *b = p;
	if (n) {
		(void)b[0];
		(void)b[n - 1];
	}
}

/* True when [off, off + n) lies inside a buffer of `size` bytes. */
static bool gguf_check_inside(uint64_t off, uint64_t n, uint64_t size)
{
	return off <= size && n <= size - off;
}

struct gguf_check_span {
	uint64_t off, size;
};

static int gguf_check_cmp_span(const void *a, const void *b)
{
	const struct gguf_check_span *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Every getter on every key must answer 0 or -EINVAL (never -ENOENT for a key
 * that exists, never crash); the values themselves are not checked. */
static const char *gguf_check_getters(const struct pf_gguf *g, const struct pf_gguf_kv *kv,
				      char *buf, size_t buflen)
{
	uint64_t u64;
	uint32_t u32;
	int64_t i64;
	float f;
	bool b;
	struct pf_gguf_str s;
	int r[6] = {
		pf_gguf_get_u64(g, kv->key, &u64),
		pf_gguf_get_u32(g, kv->key, &u32),
		pf_gguf_get_i64(g, kv->key, &i64),
		pf_gguf_get_f32(g, kv->key, &f),
		pf_gguf_get_bool(g, kv->key, &b),
		pf_gguf_get_str(g, kv->key, &s),
	};
	for (int i = 0; i < 6; i++)
		if (r[i] != 0 && r[i] != -EINVAL) {
			snprintf(buf, buflen, "getter %d on key '%s' returned %d", i, kv->key, r[i]);
			return buf;
		}
	if (r[5] == 0) {
		if ((const uint8_t *)s.ptr != g->base + kv->off + 8 ||
		    !gguf_check_inside(kv->off + 8, s.len, g->size)) {
			snprintf(buf, buflen, "string '%s' escapes the buffer", kv->key);
			return buf;
		}
		gguf_check_touch(s.ptr, s.len);
	}
	return NULL;
}

static const char *gguf_check_kv(const struct pf_gguf *g, const struct pf_gguf_kv *kv,
				 char *buf, size_t buflen)
{
	uint64_t size = g->size;
	struct pf_gguf_str s;
	float f;
	int64_t i64;

	if (pf_gguf_find(g, kv->key) != kv) {
		snprintf(buf, buflen, "pf_gguf_find('%s') does not return its entry", kv->key);
		return buf;
	}
	if (kv->type >= PF_GGUF_VTYPE_COUNT) {
		snprintf(buf, buflen, "key '%s' has type %" PRIu32, kv->key, kv->type);
		return buf;
	}
	if (kv->type == PF_GGUF_STRING) {
		uint64_t len;
		if (!gguf_check_inside(kv->off, 8, size))
			goto escapes;
		memcpy(&len, g->base + kv->off, 8);
		if (!gguf_check_inside(kv->off + 8, len, size))
			goto escapes;
	} else if (kv->type != PF_GGUF_ARRAY) {
		if (!gguf_check_inside(kv->off, pf_gguf_vtype_size(kv->type), size))
			goto escapes;
		gguf_check_touch(g->base + kv->off, pf_gguf_vtype_size(kv->type));
	} else {
		size_t sz = pf_gguf_vtype_size(kv->arr_type);
		if (kv->arr_type >= PF_GGUF_VTYPE_COUNT) {
			snprintf(buf, buflen, "array '%s' has element type %" PRIu32, kv->key, kv->arr_type);
			return buf;
		}
		if (sz) {
			if (kv->arr_n > size / sz || !gguf_check_inside(kv->off, kv->arr_n * sz, size))
				goto escapes;
			gguf_check_touch(g->base + kv->off, kv->arr_n * sz);
			if (kv->arr_n) {
				/* both must answer; -EINVAL is a type refusal */
				int a = pf_gguf_arr_f32(g, kv, kv->arr_n - 1, &f);
				int b = pf_gguf_arr_i64(g, kv, kv->arr_n - 1, &i64);
				if ((a && a != -EINVAL) || (b && b != -EINVAL)) {
					snprintf(buf, buflen, "array '%s': numeric getters returned %d/%d", kv->key, a, b);
					return buf;
				}
			}
		} else if (kv->arr_type == PF_GGUF_STRING) {
			for (uint64_t i = 0; i < kv->arr_n; i++) {
				if (pf_gguf_arr_str(g, kv, i, &s)) {
					snprintf(buf, buflen, "array '%s': element %" PRIu64 " refused", kv->key, i);
					return buf;
				}
				uint64_t at = (uint64_t)((const uint8_t *)s.ptr - g->base);
				if ((const uint8_t *)s.ptr < g->base + 8 || !gguf_check_inside(at, s.len, size)) {
					snprintf(buf, buflen, "array '%s': element %" PRIu64 " escapes the buffer", kv->key, i);
					return buf;
				}
				gguf_check_touch(s.ptr, s.len);
			}
		}
		if (pf_gguf_arr_str(g, kv, kv->arr_n, &s) != -EINVAL ||
		    pf_gguf_arr_f32(g, kv, kv->arr_n, &f) != -EINVAL ||
		    pf_gguf_arr_i64(g, kv, kv->arr_n, &i64) != -EINVAL) {
			snprintf(buf, buflen, "array '%s': index arr_n accepted", kv->key);
			return buf;
		}
	}
	return gguf_check_getters(g, kv, buf, buflen);
escapes:
	snprintf(buf, buflen, "value of '%s' at %" PRIu64 " escapes the buffer (size %" PRIu64 ")",
		 kv->key, kv->off, size);
	return buf;
}

static const char *gguf_check_tensor(const struct pf_gguf *g, const struct pf_gguf_tensor *t,
				     bool touch_data, char *buf, size_t buflen)
{
	const struct pf_dtype_info *ti = pf_dtype_info(t->type);
	uint64_t n = 1;

	if (pf_gguf_find_tensor(g, t->name) != t) {
		snprintf(buf, buflen, "pf_gguf_find_tensor('%s') does not return it", t->name);
		return buf;
	}
	if (t->n_dims < 1 || t->n_dims > PF_GGUF_MAX_DIMS || !ti) {
		snprintf(buf, buflen, "tensor '%s': %" PRIu32 " dims, type %" PRIu32, t->name, t->n_dims, t->type);
		return buf;
	}
	for (uint32_t d = 0; d < PF_GGUF_MAX_DIMS; d++) {
		if (d >= t->n_dims && t->ne[d] != 1) {
			snprintf(buf, buflen, "tensor '%s': unused ne[%" PRIu32 "] = %" PRIu64, t->name, d, t->ne[d]);
			return buf;
		}
		if (__builtin_mul_overflow(n, t->ne[d], &n)) {
			snprintf(buf, buflen, "tensor '%s': element count overflows", t->name);
			return buf;
		}
	}
	uint64_t want;
	if (n != t->n_elems || t->ne[0] % ti->block_elems ||
	    __builtin_mul_overflow(n / ti->block_elems, (uint64_t)ti->block_bytes, &want) || want != t->size) {
		snprintf(buf, buflen, "tensor '%s': n_elems %" PRIu64 " / size %" PRIu64 " do not match its shape",
			 t->name, t->n_elems, t->size);
		return buf;
	}
	if (t->offset < g->data_off || t->offset % g->alignment || !gguf_check_inside(t->offset, t->size, g->size) ||
	    (const uint8_t *)t->data != g->base + t->offset) {
		snprintf(buf, buflen, "tensor '%s': data [%" PRIu64 ", +%" PRIu64 "] misplaced (data section %" PRIu64
			 ", alignment %" PRIu32 ", size %" PRIu64 ")",
			 t->name, t->offset, t->size, g->data_off, g->alignment, g->size);
		return buf;
	}
	if (touch_data)
		gguf_check_touch(t->data, t->size);
	return NULL;
}

/*
 * NULL when `g` (opened from `size` bytes at `base`) keeps every promise of
 * gguf.h; otherwise a description of the first broken one, written to buf.
 */
static const char *gguf_check_invariants(const struct pf_gguf *g, const void *base, size_t size,
					 bool touch_data, char *buf, size_t buflen)
{
	const char *m;

	if (g->base != base || g->size != size) {
		snprintf(buf, buflen, "object describes another buffer");
		return buf;
	}
	if ((g->version != 2 && g->version != 3) || !g->alignment || (g->alignment & (g->alignment - 1))) {
		snprintf(buf, buflen, "version %" PRIu32 ", alignment %" PRIu32, g->version, g->alignment);
		return buf;
	}
	if (g->data_off > size || (g->data_off % g->alignment && !(g->data_off == size && !g->n_tensors))) {
		snprintf(buf, buflen, "data section at %" PRIu64 " (alignment %" PRIu32 ", size %zu)",
			 g->data_off, g->alignment, size);
		return buf;
	}
	for (uint64_t i = 0; i < g->n_kv; i++) {
		if (i && strcmp(g->kv[i - 1].key, g->kv[i].key) >= 0) {
			snprintf(buf, buflen, "keys '%s' and '%s' not sorted and unique", g->kv[i - 1].key, g->kv[i].key);
			return buf;
		}
		m = gguf_check_kv(g, &g->kv[i], buf, buflen);
		if (m)
			return m;
	}
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		if (i && strcmp(g->tensors[i - 1].name, g->tensors[i].name) >= 0) {
			snprintf(buf, buflen, "tensor names '%s' and '%s' not sorted and unique",
				 g->tensors[i - 1].name, g->tensors[i].name);
			return buf;
		}
		m = gguf_check_tensor(g, &g->tensors[i], touch_data, buf, buflen);
		if (m)
			return m;
	}
	if (g->n_tensors < 2)
		return NULL;
	/* overlap: walk non-empty ranges by start, keeping the furthest end seen
	 * (comparing only neighbours would miss one range containing two) */
	struct gguf_check_span *sp = malloc(g->n_tensors * sizeof(*sp));
	if (!sp) {
		snprintf(buf, buflen, "out of memory in the checker");
		return buf;
	}
	for (uint64_t i = 0; i < g->n_tensors; i++)
		sp[i] = (struct gguf_check_span){ g->tensors[i].offset, g->tensors[i].size };
	qsort(sp, g->n_tensors, sizeof(*sp), gguf_check_cmp_span);
	uint64_t end = 0;
	m = NULL;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		if (!sp[i].size)
			continue;
		if (sp[i].off < end) {
			snprintf(buf, buflen, "tensor data at %" PRIu64 " overlaps an earlier tensor ending at %" PRIu64,
				 sp[i].off, end);
			m = buf;
			break;
		}
		end = sp[i].off + sp[i].size;
	}
	free(sp);
	return m;
}

#endif
