/* gguf.c — parse and validate GGUF v2/v3 files.  See gguf.h for the contract. */
#include "runtime/model/gguf.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/dtype.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF reader assumes a little-endian host");

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_MAX_NEST 8        /* arrays of arrays deeper than this are refused */
#define GGUF_MAX_NAME 65535    /* longest key or tensor name we accept */

/* Parser state: a cursor over the untrusted bytes and where messages go. */
struct cur {
	const uint8_t *b;
	uint64_t size;
	uint64_t pos;
	const char *path;
	char *err;
	size_t errlen;
	/* name arena under construction: names are stored by offset until the
	 * arena stops moving */
	char *arena;
	size_t arena_len, arena_cap;
};

__attribute__((format(printf, 2, 3)))
static int fail(struct cur *c, const char *fmt, ...)
{
	if (c->err && c->errlen) {
		int n = snprintf(c->err, c->errlen, "%s: ", c->path);
		if (n >= 0 && (size_t)n < c->errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

static uint64_t remaining(const struct cur *c)
{
	return c->size - c->pos;
}

static int need(struct cur *c, uint64_t n, const char *what)
{
	if (n > remaining(c))
		return fail(c, "%s at offset %" PRIu64 " needs %" PRIu64 " bytes, file ends at %" PRIu64,
			    what, c->pos, n, c->size);
	return 0;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *what)
{
	int r = need(c, 4, what);
	if (r)
		return r;
	memcpy(v, c->b + c->pos, 4);
	c->pos += 4;
	return 0;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *what)
{
	int r = need(c, 8, what);
	if (r)
		return r;
	memcpy(v, c->b + c->pos, 8);
	c->pos += 8;
	return 0;
}

/* Read a string header and skip its bytes; *ret points into the file. */
static int rd_str(struct cur *c, struct pf_gguf_str *ret, const char *what)
{
	uint64_t at = c->pos, len;
	int r = rd_u64(c, &len, what);
	if (r)
		return r;
	if (len > remaining(c))
		return fail(c, "%s at offset %" PRIu64 ": string length %" PRIu64
			    " runs past end of file (size %" PRIu64 ")", what, at, len, c->size);
	ret->ptr = (const char *)c->b + c->pos;
	ret->len = len;
	c->pos += len;
	return 0;
}

/* Copy a name into the arena; returns its arena offset in *ret_off. */
static int arena_add(struct cur *c, struct pf_gguf_str s, uint64_t at, const char *what,
		     size_t *ret_off)
{
	if (s.len > GGUF_MAX_NAME)
		return fail(c, "%s at offset %" PRIu64 ": name of %" PRIu64 " bytes is longer than %d",
			    what, at, s.len, GGUF_MAX_NAME);
	if (memchr(s.ptr, '\0', s.len))
		return fail(c, "%s at offset %" PRIu64 ": name contains a NUL byte", what, at);
	if (c->arena_len + s.len + 1 > c->arena_cap) {
		size_t cap = c->arena_cap ? c->arena_cap : 4096;
		while (cap < c->arena_len + s.len + 1)
			cap *= 2;
		char *n = realloc(c->arena, cap);
		if (!n)
			return -ENOMEM;
		c->arena = n;
		c->arena_cap = cap;
	}
	memcpy(c->arena + c->arena_len, s.ptr, s.len);
	c->arena[c->arena_len + s.len] = '\0';
	*ret_off = c->arena_len;
	c->arena_len += s.len + 1;
	return 0;
}

/*
 * Write a name from the file into a message buffer: bytes that could end the
 * line or drive a terminal (controls, DEL) and the quote and backslash are
 * written as \xNN, and names longer than `max_in` bytes are cut with "...".
 * UTF-8 passes through.  `cap` must be at least 8.
 */
static void fmt_name(char *dst, size_t cap, const char *s, uint64_t len, size_t max_in)
{
	size_t o = 0;
	uint64_t i;
	for (i = 0; i < len && i < max_in; i++) {
		unsigned char ch = (unsigned char)s[i];
		bool esc = ch < 0x20 || ch == 0x7f || ch == '\\' || ch == '\'';
		if (o + (esc ? 4 : 1) + 4 > cap) /* keep room for "..." and the NUL */
			break;
		if (esc) {
			static const char hex[] = "0123456789abcdef";
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[ch >> 4];
			dst[o++] = hex[ch & 15];
		} else {
			dst[o++] = (char)ch;
		}
	}
	if (i < len) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

size_t pf_gguf_vtype_size(uint32_t t)
{
	switch (t) {
	case PF_GGUF_U8: case PF_GGUF_I8: case PF_GGUF_BOOL: return 1;
	case PF_GGUF_U16: case PF_GGUF_I16: return 2;
	case PF_GGUF_U32: case PF_GGUF_I32: case PF_GGUF_F32: return 4;
	case PF_GGUF_U64: case PF_GGUF_I64: case PF_GGUF_F64: return 8;
	default: return 0;
	}
}

const char *pf_gguf_vtype_name(uint32_t t)
{
	static const char *const names[PF_GGUF_VTYPE_COUNT] = {
		"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
	};
	return t < PF_GGUF_VTYPE_COUNT ? names[t] : "?";
}

/*
 * Skip `n` strings in a row, validating each.  This is the loop a vocabulary
 * spends its time in (100k tokens and merges), so it avoids a call per
 * element.  With `ret_offs` it also returns a malloc'd index of the file
 * offset of each element (NULL when n is 0).
 */
static int skip_strings(struct cur *c, uint64_t n, const char *what, uint64_t **ret_offs)
{
	uint64_t *offs = NULL, p = c->pos, len;
	if (ret_offs && n) {
		offs = malloc(n * sizeof(*offs)); /* n was bounded by the bytes left */
		if (!offs)
			return -ENOMEM;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (c->size - p < 8 || (memcpy(&len, c->b + p, 8), len > c->size - p - 8)) {
			struct pf_gguf_str s;
			free(offs);
			/* rd_str fails on the same test, with the usual message */
			c->pos = p;
			return rd_str(c, &s, what);
		}
		if (offs)
			offs[i] = p;
		p += 8 + len;
	}
	c->pos = p;
	if (ret_offs)
		*ret_offs = offs;
	return 0;
}

/* Skip one value of type `t`, validating it.  `what` names it in messages.
 * For an array of strings, `str_offs` (when non-NULL) receives the index of
 * its elements (see skip_strings). */
static int skip_value(struct cur *c, uint32_t t, int depth, const char *what, uint64_t **str_offs)
{
	size_t sz = pf_gguf_vtype_size(t);
	if (sz)
		return need(c, sz, what) ?: (c->pos += sz, 0);
	if (t == PF_GGUF_STRING) {
		struct pf_gguf_str s;
		return rd_str(c, &s, what);
	}
	if (t != PF_GGUF_ARRAY)
		return fail(c, "%s at offset %" PRIu64 ": unknown value type %" PRIu32, what, c->pos - 4, t);
	if (depth >= GGUF_MAX_NEST)
		return fail(c, "%s at offset %" PRIu64 ": arrays nested deeper than %d", what, c->pos, GGUF_MAX_NEST);
	uint64_t at = c->pos, n;
	uint32_t et;
	int r = rd_u32(c, &et, what) ?: rd_u64(c, &n, what);
	if (r)
		return r;
	if (et >= PF_GGUF_VTYPE_COUNT)
		return fail(c, "%s at offset %" PRIu64 ": unknown array element type %" PRIu32, what, at, et);
	sz = pf_gguf_vtype_size(et);
	/* smallest encoding of one element bounds the count before any loop */
	uint64_t min = sz ? sz : (et == PF_GGUF_STRING ? 8 : 12);
	if (n > remaining(c) / min)
		return fail(c, "%s at offset %" PRIu64 ": array of %" PRIu64 " %s elements runs past end of file (size %" PRIu64 ")",
			    what, at, n, pf_gguf_vtype_name(et), c->size);
	if (sz) {
		c->pos += n * sz;
		return 0;
	}
	if (et == PF_GGUF_STRING)
		return skip_strings(c, n, what, str_offs);
	for (uint64_t i = 0; i < n; i++) {
		r = skip_value(c, et, depth + 1, what, NULL);
		if (r)
			return r;
	}
	return 0;
}

static int cmp_kv_key(const void *a, const void *b)
{
	return strcmp(((const struct pf_gguf_kv *)a)->key, ((const struct pf_gguf_kv *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b)
{
	return strcmp(((const struct pf_gguf_tensor *)a)->name, ((const struct pf_gguf_tensor *)b)->name);
}

static int cmp_tensor_ptr_off(const void *a, const void *b)
{
	const struct pf_gguf_tensor *x = *(const struct pf_gguf_tensor *const *)a;
	const struct pf_gguf_tensor *y = *(const struct pf_gguf_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse_kvs(struct cur *c, struct pf_gguf *g, size_t *key_offs, uint64_t *key_at)
{
	char what[320], name[256];
	for (uint64_t i = 0; i < g->n_kv; i++) {
		struct pf_gguf_kv *kv = &g->kv[i];
		struct pf_gguf_str key;
		uint64_t at = c->pos;
		key_at[i] = at;
		snprintf(what, sizeof(what), "metadata entry %" PRIu64 " key", i);
		int r = rd_str(c, &key, what);
		if (r)
			return r;
		r = arena_add(c, key, at, what, &key_offs[i]);
		if (r)
			return r;
		/* the key is known now: name it in every later message */
		fmt_name(name, sizeof(name), key.ptr, key.len, 60);
		snprintf(what, sizeof(what), "metadata '%s'", name);
		r = rd_u32(c, &kv->type, what);
		if (r)
			return r;
		if (kv->type >= PF_GGUF_VTYPE_COUNT)
			return fail(c, "%s at offset %" PRIu64 ": unknown value type %" PRIu32, what, c->pos - 4, kv->type);
		if (kv->type == PF_GGUF_ARRAY) {
			uint64_t save = c->pos;
			/* string elements are indexed as they are skipped so
			 * lookups are O(1) */
			r = skip_value(c, PF_GGUF_ARRAY, 0, what, &kv->str_offs);
			if (r)
				return r;
			memcpy(&kv->arr_type, c->b + save, 4);
			memcpy(&kv->arr_n, c->b + save + 4, 8);
			kv->off = save + 12;
		} else {
			kv->off = c->pos;
			r = skip_value(c, kv->type, 0, what, NULL);
			if (r)
				return r;
		}
	}
	return 0;
}

static int parse_tensors(struct cur *c, struct pf_gguf *g, size_t *name_offs, uint64_t *info_at)
{
	char what[480], name_s[440];
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct pf_gguf_tensor *t = &g->tensors[i];
		struct pf_gguf_str name;
		uint64_t at = c->pos;
		info_at[i] = at;
		snprintf(what, sizeof(what), "tensor info %" PRIu64 " name", i);
		int r = rd_str(c, &name, what);
		if (r)
			return r;
		r = arena_add(c, name, at, what, &name_offs[i]);
		if (r)
			return r;
		fmt_name(name_s, sizeof(name_s), name.ptr, name.len, 100);
		snprintf(what, sizeof(what), "tensor '%s'", name_s);
		r = rd_u32(c, &t->n_dims, what);
		if (r)
			return r;
		if (t->n_dims < 1 || t->n_dims > PF_GGUF_MAX_DIMS)
			return fail(c, "%s at offset %" PRIu64 ": %" PRIu32 " dimensions (1..%d allowed)",
				    what, c->pos - 4, t->n_dims, PF_GGUF_MAX_DIMS);
		uint64_t ne_at = c->pos;
		t->n_elems = 1;
		for (uint32_t d = 0; d < PF_GGUF_MAX_DIMS; d++) {
			t->ne[d] = 1;
			if (d >= t->n_dims)
				continue;
			r = rd_u64(c, &t->ne[d], what);
			if (r)
				return r;
			/* keep every size below 2^62 so later products cannot wrap */
			if (t->ne[d] > (UINT64_C(1) << 62) ||
			    (t->ne[d] && t->n_elems > (UINT64_C(1) << 62) / t->ne[d]))
				return fail(c, "%s at offset %" PRIu64 ": dimension %" PRIu32 " = %" PRIu64 " makes the tensor absurdly large",
					    what, c->pos - 8, d, t->ne[d]);
			t->n_elems *= t->ne[d];
		}
		r = rd_u32(c, &t->type, what);
		if (r)
			return r;
		const struct pf_dtype_info *ti = pf_dtype_info(t->type);
		if (!ti)
			return fail(c, "%s at offset %" PRIu64 ": unknown tensor type id %" PRIu32,
				    what, c->pos - 4, t->type);
		if (t->ne[0] % ti->block_elems)
			return fail(c, "%s at offset %" PRIu64 ": row length %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
				    what, ne_at, t->ne[0], ti->name, ti->block_elems);
		/* the element count is below 2^62, but F32/I32/F64/I64 sizes are
		 * up to 8 times that: a wrapped size would pass the data check */
		if (__builtin_mul_overflow(t->n_elems / ti->block_elems, (uint64_t)ti->block_bytes, &t->size))
			return fail(c, "%s at offset %" PRIu64 ": %" PRIu64 " %s elements take more than 2^64 bytes",
				    what, c->pos - 4, t->n_elems, ti->name);
		r = rd_u64(c, &t->offset, what);
		if (r)
			return r;
		if (t->offset % g->alignment)
			return fail(c, "%s at offset %" PRIu64 ": data offset %" PRIu64 " is not a multiple of the alignment %" PRIu32,
				    what, c->pos - 8, t->offset, g->alignment);
	}
	return 0;
}

/* Place every tensor inside the data section and refuse overlaps. */
static int check_tensor_data(struct cur *c, struct pf_gguf *g)
{
	uint64_t data_size = c->size - g->data_off;
	char name[440], name2[440];
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct pf_gguf_tensor *t = &g->tensors[i];
		if (t->offset > data_size || t->size > data_size - t->offset) {
			fmt_name(name, sizeof(name), t->name, strlen(t->name), 100);
			/* a relative offset this large would wrap: show both parts */
			if (t->offset > UINT64_MAX - g->data_off)
				return fail(c, "tensor '%s': data [offset %" PRIu64 " + %" PRIu64 ", size %" PRIu64 "] runs past end of file (size %" PRIu64 ")",
					    name, g->data_off, t->offset, t->size, c->size);
			return fail(c, "tensor '%s': data [offset %" PRIu64 ", size %" PRIu64 "] runs past end of file (size %" PRIu64 ")",
				    name, g->data_off + t->offset, t->size, c->size);
		}
		t->offset += g->data_off;
		t->data = c->b + t->offset;
	}
	if (g->n_tensors < 2)
		return 0;
	struct pf_gguf_tensor **by_off = malloc(g->n_tensors * sizeof(*by_off));
	if (!by_off)
		return -ENOMEM;
	for (uint64_t i = 0; i < g->n_tensors; i++)
		by_off[i] = &g->tensors[i];
	qsort(by_off, g->n_tensors, sizeof(*by_off), cmp_tensor_ptr_off);
	/* compare each range with the furthest-reaching one before it, not only
	 * with its neighbour: a large tensor may contain several others, and
	 * empty tensors (which overlap nothing) may sit between them */
	const struct pf_gguf_tensor *reach = NULL;
	uint64_t end = 0;
	int r = 0;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct pf_gguf_tensor *b = by_off[i];
		if (!b->size)
			continue;
		if (reach && b->offset < end) {
			fmt_name(name, sizeof(name), reach->name, strlen(reach->name), 100);
			fmt_name(name2, sizeof(name2), b->name, strlen(b->name), 100);
			r = fail(c, "tensor '%s' (data at %" PRIu64 ", %" PRIu64 " bytes) overlaps tensor '%s' (data at %" PRIu64 ")",
				 name, reach->offset, reach->size, name2, b->offset);
			break;
		}
		if (b->offset + b->size > end) {
			end = b->offset + b->size;
			reach = b;
		}
	}
	free(by_off);
	return r;
}

/* The index of the entry whose name starts at arena offset `off`, given the
 * ascending arena offsets of all n names. */
static uint64_t entry_index(const size_t *offs, uint64_t n, size_t off)
{
	uint64_t lo = 0, hi = n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (offs[mid] < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n ? lo : 0;
}

int pf_gguf_open_mem(const void *data, size_t size, const char *name,
		     struct pf_gguf **ret, char *err, size_t errlen)
{
	struct cur c = { .b = data, .size = size, .path = name ? name : "<memory>", .err = err, .errlen = errlen };
	size_t *key_offs = NULL, *name_offs = NULL;
	uint64_t *key_at = NULL, *info_at = NULL;
	char nbuf[440];
	/* the name is copied behind the object: callers pass temporary buffers */
	size_t name_len = strlen(c.path);
	struct pf_gguf *g = calloc(1, sizeof(*g) + name_len + 1);
	uint32_t magic;
	int r;

	if (err && errlen)
		err[0] = '\0';
	if (!g)
		return -ENOMEM;
	g->path = memcpy((char *)(g + 1), c.path, name_len + 1);
	g->base = data;
	g->size = size;

	r = rd_u32(&c, &magic, "magic");
	if (r)
		goto out;
	if (magic != GGUF_MAGIC) {
		r = fail(&c, "not a GGUF file (magic at offset 0 is 0x%08" PRIx32 ", expected \"GGUF\")", magic);
		goto out;
	}
	r = rd_u32(&c, &g->version, "version");
	if (r)
		goto out;
	if (g->version != 2 && g->version != 3) {
		r = fail(&c, "GGUF version %" PRIu32 " at offset 4 is not supported (2 and 3 are)", g->version);
		goto out;
	}
	r = rd_u64(&c, &g->n_tensors, "tensor count") ?: rd_u64(&c, &g->n_kv, "metadata count");
	if (r)
		goto out;
	/* every entry takes at least 13 (kv) or 32 (tensor info) bytes */
	if (g->n_kv > remaining(&c) / 13) {
		r = fail(&c, "metadata count %" PRIu64 " at offset 16 is more than a file of %" PRIu64 " bytes could hold",
			 g->n_kv, c.size);
		goto out;
	}
	if (g->n_tensors > remaining(&c) / 32) {
		r = fail(&c, "tensor count %" PRIu64 " at offset 8 is more than a file of %" PRIu64 " bytes could hold",
			 g->n_tensors, c.size);
		goto out;
	}
	g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
	g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
	key_offs = calloc(g->n_kv ? g->n_kv : 1, sizeof(*key_offs));
	name_offs = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*name_offs));
	key_at = calloc(g->n_kv ? g->n_kv : 1, sizeof(*key_at));
	info_at = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*info_at));
	if (!g->kv || !g->tensors || !key_offs || !name_offs || !key_at || !info_at) {
		r = -ENOMEM;
		goto out;
	}
	r = parse_kvs(&c, g, key_offs, key_at);
	if (r)
		goto out;

	/* keys point into the arena for the alignment lookup; the arena may still
	 * move while tensor names are added, so they are resolved again below */
	g->alignment = PF_GGUF_DEFAULT_ALIGNMENT;
	for (uint64_t i = 0; i < g->n_kv; i++)
		g->kv[i].key = c.arena + key_offs[i];
	for (uint64_t i = 0; i < g->n_kv; i++) {
		const struct pf_gguf_kv *al = &g->kv[i];
		uint32_t a;
		if (strcmp(al->key, "general.alignment"))
			continue;
		if (al->type != PF_GGUF_U32) {
			r = fail(&c, "metadata 'general.alignment' at offset %" PRIu64 " has type %s, expected u32",
				 al->off, pf_gguf_vtype_name(al->type));
			goto out;
		}
		memcpy(&a, c.b + al->off, 4);
		if (a == 0 || (a & (a - 1)) || a > (1u << 20)) {
			r = fail(&c, "metadata 'general.alignment' = %" PRIu32 " at offset %" PRIu64 " is not a power of two up to 1 MiB",
				 a, al->off);
			goto out;
		}
		g->alignment = a;
	}

	r = parse_tensors(&c, g, name_offs, info_at);
	if (r)
		goto out;
	for (uint64_t i = 0; i < g->n_kv; i++)
		g->kv[i].key = c.arena + key_offs[i];
	for (uint64_t i = 0; i < g->n_tensors; i++)
		g->tensors[i].name = c.arena + name_offs[i];
	g->names = c.arena;
	c.arena = NULL;

	g->data_off = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
	if (g->data_off > c.size) {
		if (g->n_tensors) {
			r = fail(&c, "tensor data section would start at offset %" PRIu64 ", past end of file (size %" PRIu64 ")",
				 g->data_off, c.size);
			goto out;
		}
		g->data_off = c.size; /* a vocab-only file may end without padding */
	}
	r = check_tensor_data(&c, g);
	if (r)
		goto out;

	/* sort by name for binary search, refusing duplicates; the message names
	 * both entries by file offset, found from where each name sits in the
	 * arena (names are appended in file order) */
	qsort(g->kv, g->n_kv, sizeof(*g->kv), cmp_kv_key);
	for (uint64_t i = 0; i + 1 < g->n_kv; i++)
		if (!strcmp(g->kv[i].key, g->kv[i + 1].key)) {
			uint64_t a = key_at[entry_index(key_offs, g->n_kv, (size_t)(g->kv[i].key - g->names))];
			uint64_t b = key_at[entry_index(key_offs, g->n_kv, (size_t)(g->kv[i + 1].key - g->names))];
			fmt_name(nbuf, sizeof(nbuf), g->kv[i].key, strlen(g->kv[i].key), 100);
			r = fail(&c, "metadata key '%s' is repeated (entries at offsets %" PRIu64 " and %" PRIu64 ")",
				 nbuf, a < b ? a : b, a < b ? b : a);
			goto out;
		}
	qsort(g->tensors, g->n_tensors, sizeof(*g->tensors), cmp_tensor_name);
	for (uint64_t i = 0; i + 1 < g->n_tensors; i++)
		if (!strcmp(g->tensors[i].name, g->tensors[i + 1].name)) {
			uint64_t a = info_at[entry_index(name_offs, g->n_tensors, (size_t)(g->tensors[i].name - g->names))];
			uint64_t b = info_at[entry_index(name_offs, g->n_tensors, (size_t)(g->tensors[i + 1].name - g->names))];
			fmt_name(nbuf, sizeof(nbuf), g->tensors[i].name, strlen(g->tensors[i].name), 100);
			r = fail(&c, "tensor name '%s' is repeated (tensor infos at offsets %" PRIu64 " and %" PRIu64 ")",
				 nbuf, a < b ? a : b, a < b ? b : a);
			goto out;
		}
	*ret = g;
	g = NULL;
	r = 0;
out:
	if (r == -ENOMEM && err && errlen)
		snprintf(err, errlen, "%s: out of memory while indexing the file", c.path);
	free(key_offs);
	free(name_offs);
	free(key_at);
	free(info_at);
	free(c.arena);
	if (g) {
		g->base = NULL; /* the caller's buffer is not ours */
		g->mapped = false;
		pf_gguf_close(g);
	}
	return r;
}

int pf_gguf_open(const char *path, struct pf_gguf **ret, char *err, size_t errlen)
{
	struct stat st;
	void *map = MAP_FAILED;
	int fd, r;

	/* O_NONBLOCK: opening a FIFO would otherwise wait for a writer before
	 * the regular-file check below could refuse it */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		if (err && errlen)
			snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size == 0) {
		r = -EINVAL;
		if (err && errlen)
			snprintf(err, errlen, "%s: file is empty", path);
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		r = -errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot map %lld bytes: %s", path, (long long)st.st_size, strerror(-r));
		goto out;
	}
	r = pf_gguf_open_mem(map, (size_t)st.st_size, path, ret, err, errlen);
	if (r == 0) {
		(*ret)->mapped = true;
		map = MAP_FAILED;
	}
out:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	close(fd);
	return r;
}

void pf_gguf_close(struct pf_gguf *g)
{
	if (!g)
		return;
	if (g->mapped && g->base)
		munmap((void *)g->base, g->size);
	for (uint64_t i = 0; g->kv && i < g->n_kv; i++)
		free(g->kv[i].str_offs);
	free(g->kv);
	free(g->tensors);
	free(g->names);
	free(g);
}

const struct pf_gguf_kv *pf_gguf_find(const struct pf_gguf *g, const char *key)
{
	struct pf_gguf_kv k = { .key = key };
	return bsearch(&k, g->kv, g->n_kv, sizeof(*g->kv), cmp_kv_key);
}

const struct pf_gguf_tensor *pf_gguf_find_tensor(const struct pf_gguf *g, const char *name)
{
	struct pf_gguf_tensor t = { .name = name };
	return bsearch(&t, g->tensors, g->n_tensors, sizeof(*g->tensors), cmp_tensor_name);
}

/* Read a numeric scalar of type t at p, as both a signed/unsigned integer and
 * a double.  Returns -EINVAL for non-numeric types. */
static int load_num(const uint8_t *p, uint32_t t, int64_t *ri, uint64_t *ru, bool *is_neg, double *rd, bool *is_int)
{
	union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
		float f32; uint64_t u64; int64_t i64; double f64; } v;
	size_t sz = pf_gguf_vtype_size(t);
	if (!sz)
		return -EINVAL;
	memcpy(&v, p, sz);
	*is_int = true;
	*is_neg = false;
	switch (t) {
	case PF_GGUF_U8: case PF_GGUF_BOOL: *ru = v.u8; break;
	case PF_GGUF_U16: *ru = v.u16; break;
	case PF_GGUF_U32: *ru = v.u32; break;
	case PF_GGUF_U64: *ru = v.u64; break;
	case PF_GGUF_I8: *ri = v.i8; goto sgn;
	case PF_GGUF_I16: *ri = v.i16; goto sgn;
	case PF_GGUF_I32: *ri = v.i32; goto sgn;
	case PF_GGUF_I64: *ri = v.i64; goto sgn;
	case PF_GGUF_F32: *rd = v.f32; *is_int = false; return 0;
	case PF_GGUF_F64: *rd = v.f64; *is_int = false; return 0;
	default: return -EINVAL;
	}
	*ri = (int64_t)*ru;
	*rd = (double)*ru;
	return 0;
sgn:
	*is_neg = *ri < 0;
	*ru = (uint64_t)*ri;
	*rd = (double)*ri;
	return 0;
}

static const struct pf_gguf_kv *scalar_kv(const struct pf_gguf *g, const char *key, int *r)
{
	const struct pf_gguf_kv *kv = pf_gguf_find(g, key);
	*r = kv ? 0 : -ENOENT;
	return kv;
}

int pf_gguf_get_u64(const struct pf_gguf *g, const char *key, uint64_t *ret)
{
	int r;
	const struct pf_gguf_kv *kv = scalar_kv(g, key, &r);
	int64_t i; uint64_t u; double d; bool neg, isint;
	if (!kv)
		return r;
	if (kv->type == PF_GGUF_BOOL || load_num(g->base + kv->off, kv->type, &i, &u, &neg, &d, &isint) || !isint || neg)
		return -EINVAL;
	*ret = u;
	return 0;
}

int pf_gguf_get_u32(const struct pf_gguf *g, const char *key, uint32_t *ret)
{
	uint64_t v;
	int r = pf_gguf_get_u64(g, key, &v);
	if (r)
		return r;
	if (v > UINT32_MAX)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

int pf_gguf_get_i64(const struct pf_gguf *g, const char *key, int64_t *ret)
{
	int r;
	const struct pf_gguf_kv *kv = scalar_kv(g, key, &r);
	int64_t i; uint64_t u; double d; bool neg, isint;
	if (!kv)
		return r;
	if (kv->type == PF_GGUF_BOOL || load_num(g->base + kv->off, kv->type, &i, &u, &neg, &d, &isint) || !isint)
		return -EINVAL;
	if (kv->type == PF_GGUF_U64 && u > INT64_MAX)
		return -EINVAL;
	*ret = i;
	return 0;
}

int pf_gguf_get_f32(const struct pf_gguf *g, const char *key, float *ret)
{
	int r;
	const struct pf_gguf_kv *kv = scalar_kv(g, key, &r);
	int64_t i; uint64_t u; double d; bool neg, isint;
	if (!kv)
		return r;
	if (load_num(g->base + kv->off, kv->type, &i, &u, &neg, &d, &isint) || isint)
		return -EINVAL;
	*ret = (float)d;
	return 0;
}

int pf_gguf_get_bool(const struct pf_gguf *g, const char *key, bool *ret)
{
	int r;
	const struct pf_gguf_kv *kv = scalar_kv(g, key, &r);
	if (!kv)
		return r;
	if (kv->type != PF_GGUF_BOOL)
		return -EINVAL;
	*ret = g->base[kv->off] != 0;
	return 0;
}

int pf_gguf_get_str(const struct pf_gguf *g, const char *key, struct pf_gguf_str *ret)
{
	int r;
	const struct pf_gguf_kv *kv = scalar_kv(g, key, &r);
	if (!kv)
		return r;
	if (kv->type != PF_GGUF_STRING)
		return -EINVAL;
	memcpy(&ret->len, g->base + kv->off, 8);
	ret->ptr = (const char *)g->base + kv->off + 8;
	return 0;
}

int pf_gguf_arr_str(const struct pf_gguf *g, const struct pf_gguf_kv *kv, uint64_t i,
		    struct pf_gguf_str *ret)
{
	if (kv->type != PF_GGUF_ARRAY || kv->arr_type != PF_GGUF_STRING || i >= kv->arr_n)
		return -EINVAL;
	memcpy(&ret->len, g->base + kv->str_offs[i], 8);
	ret->ptr = (const char *)g->base + kv->str_offs[i] + 8;
	return 0;
}

int pf_gguf_arr_f32(const struct pf_gguf *g, const struct pf_gguf_kv *kv, uint64_t i, float *ret)
{
	size_t sz = pf_gguf_vtype_size(kv->arr_type);
	int64_t iv; uint64_t u; double d; bool neg, isint;
	/* bools are not numbers here, as for the scalar getters */
	if (kv->type != PF_GGUF_ARRAY || !sz || kv->arr_type == PF_GGUF_BOOL || i >= kv->arr_n)
		return -EINVAL;
	if (load_num(g->base + kv->off + i * sz, kv->arr_type, &iv, &u, &neg, &d, &isint))
		return -EINVAL;
	*ret = (float)d;
	return 0;
}

int pf_gguf_arr_i64(const struct pf_gguf *g, const struct pf_gguf_kv *kv, uint64_t i, int64_t *ret)
{
	size_t sz = pf_gguf_vtype_size(kv->arr_type);
	int64_t iv; uint64_t u; double d; bool neg, isint;
	if (kv->type != PF_GGUF_ARRAY || !sz || kv->arr_type == PF_GGUF_BOOL || i >= kv->arr_n)
		return -EINVAL;
	if (load_num(g->base + kv->off + i * sz, kv->arr_type, &iv, &u, &neg, &d, &isint) || !isint)
		return -EINVAL;
	/* a u64 above INT64_MAX would come back negative */
	if (kv->arr_type == PF_GGUF_U64 && u > INT64_MAX)
		return -EINVAL;
	*ret = iv;
	return 0;
}
