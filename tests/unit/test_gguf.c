/*
 * test_gguf.c — the GGUF reader against files we write ourselves, and against
 * hostile variants (truncations, byte mutations) of the real model file.
 *
 * Small files come from the writer below (a growable byte buffer with
 * put_u32/put_u64/put_str/put_kv/put_tensor_info), so every field offset a
 * rejection message should name is known exactly.  Each small file is parsed
 * from a heap copy of exactly its length, so ASan reports any read past it.
 *
 * The hostile suite reads PF_MODEL (skipped when the file is absent) and
 * walks its layout with an independent walker (no pf_gguf code) to know where
 * every metadata entry, tensor info and tensor's data starts.  Truncated
 * inputs are presented so that the byte after the last one is unreadable:
 *
 *   - lengths up to 65536: a malloc of exactly L bytes (ASan catches an
 *     overread) and, so that the plain build checks it too, the window below;
 *   - lengths up to the end of the tensor infos (rounded up to a page): a
 *     window whose last byte sits right before a PROT_NONE guard page; the
 *     first L bytes of the file are copied to end exactly at the guard, so an
 *     overread by even one byte faults (SIGSEGV) in every build;
 *   - longer lengths, up to the whole 94 MB file: copying the file tens of
 *     thousands of times is too slow, so one view holds the header pages
 *     (everything up to the end of the tensor infos) followed by PROT_NONE
 *     pages covering the rest.  open() must not read the tensor data at all
 *     (it only places it arithmetically), so the view is handed over with
 *     size L and any read at or beyond the header pages — inside L, which
 *     would be open() reading data, or beyond L — faults.  This checks a
 *     little more than "no overread" and costs no copy per length.
 *
 * Byte mutations are applied in place to a heap copy of the whole file
 * (exactly its size, so ASan guards its end) and undone after each parse.
 * A fault prints the case being run (category, length or mutation index)
 * before the default or ASan handler reports it.  PF_GGUF_SEED reseeds the
 * random cases; PF_GGUF_SEED_DIR=dir writes every small file parsed here into
 * dir (that is how tests/fuzz/corpus/gguf was made).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kernels/dtype.h"
#include "runtime/model/gguf.h"
#include "tests/fuzz/gguf_check.h"
#include "tests/unit/testutil.h"

#define NAME "t.gguf"

/* ---- a tiny GGUF writer -------------------------------------------------- */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct wbuf *w, const void *d, size_t n)
{
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < w->len + n)
			cap *= 2;
		w->p = realloc(w->p, cap);
		assert_non_null(w->p);
		w->cap = cap;
	}
	if (n)
		memcpy(w->p + w->len, d, n);
	w->len += n;
}

static void put_u8(struct wbuf *w, uint8_t v) { put(w, &v, 1); }
static void put_u32(struct wbuf *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(struct wbuf *w, uint64_t v) { put(w, &v, 8); }

static void put_strn(struct wbuf *w, const void *s, uint64_t n)
{
	put_u64(w, n);
	put(w, s, n);
}

static void put_str(struct wbuf *w, const char *s) { put_strn(w, s, strlen(s)); }

static void put_header(struct wbuf *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
	put(w, "GGUF", 4);
	put_u32(w, version);
	put_u64(w, n_tensors);
	put_u64(w, n_kv);
}

/* Key and value type; returns where the entry starts.  The value follows. */
static uint64_t put_kv(struct wbuf *w, const char *key, uint32_t type)
{
	uint64_t at = w->len;
	put_str(w, key);
	put_u32(w, type);
	return at;
}

/* Bytes of one scalar, from the spec rather than from gguf.c. */
static size_t tsize(uint32_t t)
{
	static const uint8_t sz[PF_GGUF_VTYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
	return t < PF_GGUF_VTYPE_COUNT ? sz[t] : 0;
}

/* A scalar entry whose value is the low tsize(type) bytes of `bits`;
 * returns the value's offset. */
static uint64_t put_kv_scalar(struct wbuf *w, const char *key, uint32_t type, uint64_t bits)
{
	put_kv(w, key, type);
	uint64_t off = w->len;
	put(w, &bits, tsize(type));
	return off;
}

static uint64_t put_kv_u32(struct wbuf *w, const char *key, uint32_t v)
{
	return put_kv_scalar(w, key, PF_GGUF_U32, v);
}

static uint64_t put_kv_str(struct wbuf *w, const char *key, const char *s)
{
	put_kv(w, key, PF_GGUF_STRING);
	uint64_t off = w->len;
	put_str(w, s);
	return off;
}

/* An array header (element type, count); returns the first element's offset. */
static uint64_t put_arr_hdr(struct wbuf *w, uint32_t et, uint64_t n)
{
	put_u32(w, et);
	put_u64(w, n);
	return w->len;
}

static uint64_t put_kv_arr(struct wbuf *w, const char *key, uint32_t et, uint64_t n, const void *elems)
{
	put_kv(w, key, PF_GGUF_ARRAY);
	uint64_t off = put_arr_hdr(w, et, n);
	put(w, elems, n * tsize(et));
	return off;
}

static uint64_t put_kv_strs(struct wbuf *w, const char *key, const char *const *s, uint64_t n)
{
	put_kv(w, key, PF_GGUF_ARRAY);
	uint64_t off = put_arr_hdr(w, PF_GGUF_STRING, n);
	for (uint64_t i = 0; i < n; i++)
		put_str(w, s[i]);
	return off;
}

/* One tensor info; returns where it starts. */
static uint64_t put_tensor_info(struct wbuf *w, const char *name, uint32_t n_dims, const uint64_t *ne,
				uint32_t type, uint64_t offset)
{
	uint64_t at = w->len;
	put_str(w, name);
	put_u32(w, n_dims);
	/* at most five dimensions are written, enough for every rejection */
	for (uint32_t d = 0; d < n_dims && d < 5; d++)
		put_u64(w, ne[d]);
	put_u32(w, type);
	put_u64(w, offset);
	return at;
}

/* Zero bytes up to a multiple of `align`. */
static void put_pad(struct wbuf *w, size_t align)
{
	static const uint8_t zero[1 << 12];
	while (w->len % align)
		put(w, zero, align - w->len % align > sizeof(zero) ? sizeof(zero) : align - w->len % align);
}

static void put_fill(struct wbuf *w, uint8_t byte, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put_u8(w, byte);
}

static void patch_u64(struct wbuf *w, uint64_t at, uint64_t v)
{
	assert_true(at + 8 <= w->len);
	memcpy(w->p + at, &v, 8);
}

static void wfree(struct wbuf *w)
{
	free(w->p);
	*w = (struct wbuf){ 0 };
}

static uint64_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static uint64_t f64_bits(double f)
{
	uint64_t u;
	memcpy(&u, &f, 8);
	return u;
}

/* ---- parsing the written bytes ------------------------------------------ */

/* A parse of a heap copy of exactly w->len bytes (the object points into it). */
struct parsed {
	struct pf_gguf *g;
	uint8_t *copy;
	int r;
	char err[512];
};

static void save_seed(const struct wbuf *w)
{
	static unsigned n; /* numbers the seed files of one run */
	const char *dir = getenv("PF_GGUF_SEED_DIR");
	if (!dir || !*dir)
		return;
	char path[4096];
	snprintf(path, sizeof(path), "%s/unit-%03u.gguf", dir, n++);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(w->p, 1, w->len, f), w->len);
	assert_int_equal(fclose(f), 0);
}

static void parse_w(const struct wbuf *w, struct parsed *o)
{
	save_seed(w);
	o->g = NULL;
	o->copy = malloc(w->len ? w->len : 1);
	assert_non_null(o->copy);
	memcpy(o->copy, w->p, w->len);
	/* the error buffer must be left alone on success, set on failure */
	memset(o->err, 'X', sizeof(o->err) - 1);
	o->err[sizeof(o->err) - 1] = '\0';
	o->r = pf_gguf_open_mem(o->copy, w->len, NAME, &o->g, o->err, sizeof(o->err));
	if (o->r == 0) {
		char buf[512];
		const char *m = gguf_check_invariants(o->g, o->copy, w->len, true, buf, sizeof(buf));
		if (m)
			fail_msg("invariant broken after a successful parse: %s", m);
	}
}

static void unparse(struct parsed *o)
{
	pf_gguf_close(o->g);
	free(o->copy);
	o->g = NULL;
	o->copy = NULL;
}

/* The bytes must parse; returns with o->g open. */
static void expect_ok(const struct wbuf *w, struct parsed *o)
{
	parse_w(w, o);
	if (o->r != 0)
		fail_msg("expected a successful parse, got %d: %s", o->r, o->err);
	assert_non_null(o->g);
}

/*
 * The bytes must be refused with -EINVAL and a one-line message starting with
 * the file name and containing every fragment of the NULL-terminated list.
 */
static void expect_reject(const struct wbuf *w, ...)
{
	struct parsed o;
	va_list ap;
	parse_w(w, &o);
	if (o.r != -EINVAL) {
		fail_msg("expected -EINVAL, got %d (%s)", o.r, o.r ? o.err : "parsed");
	}
	assert_null(o.g);
	print_message("      refused: %s\n", o.err);
	if (strncmp(o.err, NAME ": ", strlen(NAME ": ")) || strlen(o.err) <= strlen(NAME ": "))
		fail_msg("message does not start with the file name: '%s'", o.err);
	for (const char *p = o.err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			fail_msg("message has control byte 0x%02x: '%s'", (unsigned char)*p, o.err);
	va_start(ap, w);
	for (const char *frag; (frag = va_arg(ap, const char *));)
		if (!strstr(o.err, frag)) {
			va_end(ap);
			fail_msg("message '%s' lacks '%s'", o.err, frag);
		}
	va_end(ap);
	unparse(&o);
}

/* "at offset N" and friends, formatted into the caller's buffer. */
__attribute__((format(printf, 2, 3)))
static const char *fmt(char buf[static 160], const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vsnprintf(buf, 160, f, ap);
	va_end(ap);
	return buf;
}

/* ---- round trip ---------------------------------------------------------- */

struct tspec {
	const char *name;
	uint32_t n_dims;
	uint64_t ne[4];
	uint32_t type;
	uint64_t size; /* expected bytes, worked out by hand from the block layouts */
};

static const struct tspec rt_tensors[] = {
	{ "a.f32.1d", 1, { 7 }, PF_DT_F32, 7 * 4 },
	{ "b.f16.2d", 2, { 3, 5 }, PF_DT_F16, 15 * 2 },
	{ "c.q4_0.3d", 3, { 64, 2, 3 }, PF_DT_Q4_0, 2 * 6 * 18 },
	{ "d.q4_1.4d", 4, { 32, 2, 1, 2 }, PF_DT_Q4_1, 4 * 20 },
	{ "e.q8_0.2d", 2, { 96, 3 }, PF_DT_Q8_0, 3 * 3 * 34 },
	{ "f.q4_k.2d", 2, { 256, 2 }, PF_DT_Q4_K, 2 * 144 },
	{ "g.q6_k.1d", 1, { 512 }, PF_DT_Q6_K, 2 * 210 },
	{ "h.empty", 2, { 0, 4 }, PF_DT_F32, 0 },
	{ "blk.0.attn_q.weight", 2, { 64, 64 }, PF_DT_Q4_1, 64 * 2 * 20 },
};
#define N_RT_TENSORS (sizeof(rt_tensors) / sizeof(rt_tensors[0]))

struct rt_file {
	struct wbuf w;
	uint32_t alignment;
	uint64_t data_off;
	uint64_t rel[N_RT_TENSORS]; /* data offset of each tensor, relative */
	struct {
		const char *key;
		uint64_t off;
	} offs[64];
	int n_offs;
};

static void rt_note(struct rt_file *f, const char *key, uint64_t off)
{
	assert_true(f->n_offs < 64);
	f->offs[f->n_offs].key = key;
	f->offs[f->n_offs++].off = off;
}

/* An array nested `levels` deep whose innermost array holds one u8 (42). */
static void put_nested(struct wbuf *w, int levels)
{
	if (levels == 1) {
		put_arr_hdr(w, PF_GGUF_U8, 1);
		put_u8(w, 42);
		return;
	}
	put_arr_hdr(w, PF_GGUF_ARRAY, 1);
	put_nested(w, levels - 1);
}

/*
 * A file with every metadata value type and the tensors above.  alignment 0
 * leaves general.alignment out (default 32).  Tensor data is laid out in the
 * reverse order of the infos, each block filled with byte 0x10 + index.
 */
static void build_rt(struct rt_file *f, uint32_t version, uint32_t alignment)
{
	struct wbuf *w = &f->w;
	uint64_t n_kv_at;
	int n_kv = 0;

	*f = (struct rt_file){ 0 };
	f->alignment = alignment ? alignment : 32;
	put_header(w, version, N_RT_TENSORS, 0);
	n_kv_at = 16;
#define KV(key, type, bits) (rt_note(f, key, put_kv_scalar(w, key, type, bits)), n_kv++)
	KV("s.u8", PF_GGUF_U8, 200);
	KV("s.i8", PF_GGUF_I8, (uint8_t)-100);
	KV("s.u16", PF_GGUF_U16, 60000);
	KV("s.i16", PF_GGUF_I16, (uint16_t)-30000);
	KV("s.u32", PF_GGUF_U32, 4000000000u);
	KV("s.i32", PF_GGUF_I32, (uint32_t)-2000000000);
	KV("s.i32_pos", PF_GGUF_I32, 123);
	KV("s.f32", PF_GGUF_F32, f32_bits(1.5f));
	KV("s.bool", PF_GGUF_BOOL, 1);
	KV("s.bool0", PF_GGUF_BOOL, 0);
	KV("s.u64", PF_GGUF_U64, (UINT64_C(1) << 63) + 5);
	KV("s.u64_small", PF_GGUF_U64, 77);
	KV("s.u64_2p32", PF_GGUF_U64, UINT64_C(1) << 32);
	KV("s.i64", PF_GGUF_I64, (uint64_t)-(INT64_C(1) << 40));
	KV("s.i64_min", PF_GGUF_I64, (uint64_t)INT64_MIN);
	KV("s.f64", PF_GGUF_F64, f64_bits(2.25));
#undef KV
	rt_note(f, "s.str", put_kv_str(w, "s.str", "hello, gguf"));
	n_kv++;
	rt_note(f, "s.empty_str", put_kv_str(w, "s.empty_str", ""));
	n_kv++;
	if (alignment) {
		rt_note(f, "general.alignment", put_kv_u32(w, "general.alignment", alignment));
		n_kv++;
	}

	static const uint8_t a_u8[] = { 1, 2, 255 };
	static const int8_t a_i8[] = { -1, 0, 127 };
	static const uint16_t a_u16[] = { 1, 65535 };
	static const int16_t a_i16[] = { -32768, 5 };
	static const uint32_t a_u32[] = { 7, 4294967295u };
	static const int32_t a_i32[] = { -5, 2147483647 };
	static const float a_f32[] = { 0.5f, -2.0f };
	static const uint8_t a_bool[] = { 1, 0, 1 };
	static const uint64_t a_u64[] = { 1, (UINT64_C(1) << 63) + 1 };
	static const int64_t a_i64[] = { -3, INT64_MAX };
	static const double a_f64[] = { 0.25, -8.0 };
	static const char *const a_str[] = { "alpha", "", "\xce\xb3-utf8", "d" };
#define ARR(key, et, a) (rt_note(f, key, put_kv_arr(w, key, et, sizeof(a) / sizeof(a[0]), a)), n_kv++)
	ARR("a.u8", PF_GGUF_U8, a_u8);
	ARR("a.i8", PF_GGUF_I8, a_i8);
	ARR("a.u16", PF_GGUF_U16, a_u16);
	ARR("a.i16", PF_GGUF_I16, a_i16);
	ARR("a.u32", PF_GGUF_U32, a_u32);
	ARR("a.i32", PF_GGUF_I32, a_i32);
	ARR("a.f32", PF_GGUF_F32, a_f32);
	ARR("a.bool", PF_GGUF_BOOL, a_bool);
	ARR("a.u64", PF_GGUF_U64, a_u64);
	ARR("a.i64", PF_GGUF_I64, a_i64);
	ARR("a.f64", PF_GGUF_F64, a_f64);
#undef ARR
	rt_note(f, "a.str", put_kv_strs(w, "a.str", a_str, 4));
	rt_note(f, "a.empty_u32", put_kv_arr(w, "a.empty_u32", PF_GGUF_U32, 0, NULL));
	rt_note(f, "a.empty_str", put_kv_strs(w, "a.empty_str", NULL, 0));
	put_kv(w, "a.empty_arr", PF_GGUF_ARRAY);
	rt_note(f, "a.empty_arr", put_arr_hdr(w, PF_GGUF_ARRAY, 0));
	n_kv += 4;

	/* array of arrays of strings, one of them empty */
	put_kv(w, "a.nested", PF_GGUF_ARRAY);
	rt_note(f, "a.nested", put_arr_hdr(w, PF_GGUF_ARRAY, 3));
	put_arr_hdr(w, PF_GGUF_STRING, 2);
	put_str(w, "x");
	put_str(w, "yy");
	put_arr_hdr(w, PF_GGUF_STRING, 0);
	put_arr_hdr(w, PF_GGUF_STRING, 1);
	put_str(w, "");
	/* inner arrays of different element types */
	put_kv(w, "a.nested_mixed", PF_GGUF_ARRAY);
	rt_note(f, "a.nested_mixed", put_arr_hdr(w, PF_GGUF_ARRAY, 2));
	put_arr_hdr(w, PF_GGUF_U32, 2);
	put_u32(w, 1);
	put_u32(w, 2);
	put_arr_hdr(w, PF_GGUF_F64, 1);
	put_u64(w, f64_bits(3.0));
	/* as deep as the reader allows */
	put_kv(w, "a.deep8", PF_GGUF_ARRAY);
	rt_note(f, "a.deep8", w->len + 12);
	put_nested(w, 8);
	n_kv += 3;
	/* an empty key and a key that is all UTF-8 are legal */
	rt_note(f, "", put_kv_u32(w, "", 5));
	rt_note(f, "\xe2\x9c\x93", put_kv_u32(w, "\xe2\x9c\x93", 6));
	n_kv += 2;
	patch_u64(w, n_kv_at, (uint64_t)n_kv);

	/* data laid out back to front so file order, name order and data order differ */
	uint64_t rel = 0;
	for (size_t k = N_RT_TENSORS; k-- > 0;) {
		f->rel[k] = rel;
		rel += (rt_tensors[k].size + f->alignment - 1) / f->alignment * f->alignment;
	}
	for (size_t k = 0; k < N_RT_TENSORS; k++) {
		const struct tspec *t = &rt_tensors[k];
		put_tensor_info(w, t->name, t->n_dims, t->ne, t->type, f->rel[k]);
	}
	put_pad(w, f->alignment);
	f->data_off = w->len;
	for (size_t k = N_RT_TENSORS; k-- > 0;) {
		assert_int_equal(w->len, f->data_off + f->rel[k]);
		put_fill(w, (uint8_t)(0x10 + k), rt_tensors[k].size);
		put_pad(w, f->alignment);
	}
}

static uint64_t rt_off(const struct rt_file *f, const char *key)
{
	for (int i = 0; i < f->n_offs; i++)
		if (!strcmp(f->offs[i].key, key))
			return f->offs[i].off;
	fail_msg("no offset noted for '%s'", key);
	return 0;
}

static void check_kv(const struct pf_gguf *g, const struct rt_file *f, const char *key, uint32_t type,
		     uint32_t arr_type, uint64_t arr_n)
{
	const struct pf_gguf_kv *kv = pf_gguf_find(g, key);
	if (!kv)
		fail_msg("key '%s' not found", key);
	assert_string_equal(kv->key, key);
	assert_int_equal(kv->type, type);
	assert_int_equal(kv->off, rt_off(f, key));
	if (type == PF_GGUF_ARRAY) {
		assert_int_equal(kv->arr_type, arr_type);
		assert_int_equal(kv->arr_n, arr_n);
	}
}

static void check_rt(const struct rt_file *f, const struct pf_gguf *g, uint32_t version)
{
	struct pf_gguf_str s;
	float fv;
	int64_t iv;

	assert_int_equal(g->version, version);
	assert_int_equal(g->alignment, f->alignment);
	assert_int_equal(g->data_off, f->data_off);
	assert_int_equal(g->n_kv, (uint64_t)f->n_offs);
	assert_int_equal(g->n_tensors, N_RT_TENSORS);

	static const struct {
		const char *key;
		uint32_t type;
	} scalars[] = {
		{ "s.u8", PF_GGUF_U8 }, { "s.i8", PF_GGUF_I8 }, { "s.u16", PF_GGUF_U16 },
		{ "s.i16", PF_GGUF_I16 }, { "s.u32", PF_GGUF_U32 }, { "s.i32", PF_GGUF_I32 },
		{ "s.f32", PF_GGUF_F32 }, { "s.bool", PF_GGUF_BOOL }, { "s.u64", PF_GGUF_U64 },
		{ "s.i64", PF_GGUF_I64 }, { "s.f64", PF_GGUF_F64 }, { "s.str", PF_GGUF_STRING },
		{ "s.empty_str", PF_GGUF_STRING }, { "", PF_GGUF_U32 }, { "\xe2\x9c\x93", PF_GGUF_U32 },
	};
	for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
		check_kv(g, f, scalars[i].key, scalars[i].type, 0, 0);
	static const struct {
		const char *key;
		uint32_t et;
		uint64_t n;
	} arrays[] = {
		{ "a.u8", PF_GGUF_U8, 3 }, { "a.i8", PF_GGUF_I8, 3 }, { "a.u16", PF_GGUF_U16, 2 },
		{ "a.i16", PF_GGUF_I16, 2 }, { "a.u32", PF_GGUF_U32, 2 }, { "a.i32", PF_GGUF_I32, 2 },
		{ "a.f32", PF_GGUF_F32, 2 }, { "a.bool", PF_GGUF_BOOL, 3 }, { "a.u64", PF_GGUF_U64, 2 },
		{ "a.i64", PF_GGUF_I64, 2 }, { "a.f64", PF_GGUF_F64, 2 }, { "a.str", PF_GGUF_STRING, 4 },
		{ "a.empty_u32", PF_GGUF_U32, 0 }, { "a.empty_str", PF_GGUF_STRING, 0 },
		{ "a.empty_arr", PF_GGUF_ARRAY, 0 }, { "a.nested", PF_GGUF_ARRAY, 3 },
		{ "a.nested_mixed", PF_GGUF_ARRAY, 2 }, { "a.deep8", PF_GGUF_ARRAY, 1 },
	};
	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
		check_kv(g, f, arrays[i].key, PF_GGUF_ARRAY, arrays[i].et, arrays[i].n);

	/* string values, byte for byte, empty ones included */
	assert_int_equal(pf_gguf_get_str(g, "s.str", &s), 0);
	assert_int_equal(s.len, 11);
	assert_memory_equal(s.ptr, "hello, gguf", 11);
	assert_int_equal(pf_gguf_get_str(g, "s.empty_str", &s), 0);
	assert_int_equal(s.len, 0);
	assert_ptr_equal(s.ptr, (const char *)g->base + rt_off(f, "s.empty_str") + 8);
	static const char *const a_str[] = { "alpha", "", "\xce\xb3-utf8", "d" };
	const struct pf_gguf_kv *kv = pf_gguf_find(g, "a.str");
	for (uint64_t i = 0; i < 4; i++) {
		assert_int_equal(pf_gguf_arr_str(g, kv, i, &s), 0);
		assert_int_equal(s.len, strlen(a_str[i]));
		assert_memory_equal(s.ptr, a_str[i], s.len);
	}
	assert_int_equal(pf_gguf_arr_str(g, kv, 4, &s), -EINVAL);
	kv = pf_gguf_find(g, "a.empty_str");
	assert_int_equal(pf_gguf_arr_str(g, kv, 0, &s), -EINVAL);
	/* nested arrays are described but not indexed */
	kv = pf_gguf_find(g, "a.nested");
	assert_int_equal(pf_gguf_arr_str(g, kv, 0, &s), -EINVAL);
	assert_int_equal(pf_gguf_arr_f32(g, kv, 0, &fv), -EINVAL);
	assert_int_equal(pf_gguf_arr_i64(g, kv, 0, &iv), -EINVAL);

	/* every numeric array element, converted */
	kv = pf_gguf_find(g, "a.i8");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 0, &iv), 0);
	assert_int_equal(iv, -1);
	assert_int_equal(pf_gguf_arr_i64(g, kv, 2, &iv), 0);
	assert_int_equal(iv, 127);
	kv = pf_gguf_find(g, "a.u8");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 2, &iv), 0);
	assert_int_equal(iv, 255);
	kv = pf_gguf_find(g, "a.u16");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 1, &iv), 0);
	assert_int_equal(iv, 65535);
	kv = pf_gguf_find(g, "a.i16");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 0, &iv), 0);
	assert_int_equal(iv, -32768);
	kv = pf_gguf_find(g, "a.u32");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 1, &iv), 0);
	assert_int_equal(iv, 4294967295);
	kv = pf_gguf_find(g, "a.i32");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 0, &iv), 0);
	assert_int_equal(iv, -5);
	assert_int_equal(pf_gguf_arr_f32(g, kv, 1, &fv), 0);
	assert_true(fv == 2147483647.0f);
	kv = pf_gguf_find(g, "a.i64");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 1, &iv), 0);
	assert_true(iv == INT64_MAX);
	kv = pf_gguf_find(g, "a.u64");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 0, &iv), 0);
	assert_int_equal(iv, 1);
	/* 2^63 + 1 does not fit in an int64: refused, as pf_gguf_get_i64 does */
	assert_int_equal(pf_gguf_arr_i64(g, kv, 1, &iv), -EINVAL);
	assert_int_equal(pf_gguf_arr_f32(g, kv, 1, &fv), 0);
	assert_true(fv == 9223372036854775808.0f);
	kv = pf_gguf_find(g, "a.f32");
	assert_int_equal(pf_gguf_arr_f32(g, kv, 0, &fv), 0);
	assert_true(fv == 0.5f);
	assert_int_equal(pf_gguf_arr_f32(g, kv, 1, &fv), 0);
	assert_true(fv == -2.0f);
	assert_int_equal(pf_gguf_arr_i64(g, kv, 0, &iv), -EINVAL); /* floats are not integers */
	assert_int_equal(pf_gguf_arr_f32(g, kv, 2, &fv), -EINVAL);
	assert_int_equal(pf_gguf_arr_str(g, kv, 0, &s), -EINVAL);
	kv = pf_gguf_find(g, "a.f64");
	assert_int_equal(pf_gguf_arr_f32(g, kv, 1, &fv), 0);
	assert_true(fv == -8.0f);
	/* bools are not numbers, for arrays as for scalars */
	kv = pf_gguf_find(g, "a.bool");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 0, &iv), -EINVAL);
	assert_int_equal(pf_gguf_arr_f32(g, kv, 0, &fv), -EINVAL);
	kv = pf_gguf_find(g, "a.empty_u32");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 0, &iv), -EINVAL);
	/* array accessors refuse scalars */
	kv = pf_gguf_find(g, "s.u32");
	assert_int_equal(pf_gguf_arr_i64(g, kv, 0, &iv), -EINVAL);
	assert_int_equal(pf_gguf_arr_f32(g, kv, 0, &fv), -EINVAL);
	assert_int_equal(pf_gguf_arr_str(g, kv, 0, &s), -EINVAL);
	kv = pf_gguf_find(g, "s.str");
	assert_int_equal(pf_gguf_arr_str(g, kv, 0, &s), -EINVAL);

	assert_null(pf_gguf_find(g, "s.missing"));
	assert_null(pf_gguf_find(g, "s.u"));  /* a prefix of a key is not the key */
	assert_null(pf_gguf_find(g, "s.u8x"));
	assert_null(pf_gguf_find_tensor(g, "missing"));
	assert_null(pf_gguf_find_tensor(g, "a.f32"));

	for (size_t k = 0; k < N_RT_TENSORS; k++) {
		const struct tspec *ts = &rt_tensors[k];
		const struct pf_gguf_tensor *t = pf_gguf_find_tensor(g, ts->name);
		if (!t)
			fail_msg("tensor '%s' not found", ts->name);
		assert_string_equal(t->name, ts->name);
		assert_int_equal(t->type, ts->type);
		assert_int_equal(t->n_dims, ts->n_dims);
		uint64_t n = 1;
		for (uint32_t d = 0; d < PF_GGUF_MAX_DIMS; d++) {
			uint64_t want = d < ts->n_dims ? ts->ne[d] : 1;
			assert_int_equal(t->ne[d], want);
			n *= want;
		}
		assert_int_equal(t->n_elems, n);
		assert_int_equal(t->size, ts->size);
		assert_int_equal(t->offset, f->data_off + f->rel[k]);
		assert_int_equal(t->offset % f->alignment, 0);
		assert_ptr_equal(t->data, g->base + t->offset);
		for (uint64_t b = 0; b < t->size; b++)
			if (((const uint8_t *)t->data)[b] != 0x10 + k)
				fail_msg("tensor '%s' byte %" PRIu64 " is wrong", ts->name, b);
	}
}

static void roundtrip(uint32_t version, uint32_t alignment)
{
	struct rt_file f;
	struct parsed o;
	build_rt(&f, version, alignment);
	expect_ok(&f.w, &o);
	check_rt(&f, o.g, version);
	unparse(&o);
	wfree(&f.w);
}

static void test_roundtrip_v2_default_alignment(void **state) { roundtrip(2, 0); }
static void test_roundtrip_v3_default_alignment(void **state) { roundtrip(3, 0); }
static void test_roundtrip_v3_alignment_64(void **state) { roundtrip(3, 64); }
static void test_roundtrip_v2_alignment_32_explicit(void **state) { roundtrip(2, 32); }
static void test_roundtrip_v3_alignment_1(void **state) { roundtrip(3, 1); }
static void test_roundtrip_v3_alignment_1mib(void **state) { roundtrip(3, 1u << 20); }

/* The smallest files: a bare header, with and without the trailing padding. */
static void test_empty_files(void **state)
{
	struct wbuf w = { 0 };
	struct parsed o;
	for (uint32_t v = 2; v <= 3; v++) {
		put_header(&w, v, 0, 0);
		expect_ok(&w, &o);
		assert_int_equal(o.g->n_kv, 0);
		assert_int_equal(o.g->n_tensors, 0);
		assert_int_equal(o.g->data_off, 24); /* vocab-only: no padding needed */
		assert_null(pf_gguf_find(o.g, "x"));
		assert_null(pf_gguf_find_tensor(o.g, "x"));
		unparse(&o);
		put_pad(&w, 32);
		expect_ok(&w, &o);
		assert_int_equal(o.g->data_off, 32);
		unparse(&o);
		wfree(&w);
	}
	/* a tensor of zero bytes needs no data section */
	put_header(&w, 3, 1, 0);
	put_tensor_info(&w, "z", 1, (const uint64_t[]){ 0 }, PF_DT_F32, 0);
	put_pad(&w, 32);
	expect_ok(&w, &o);
	assert_int_equal(o.g->tensors[0].size, 0);
	assert_int_equal(o.g->tensors[0].offset, w.len);
	unparse(&o);
	wfree(&w);
}

/* ---- typed getters -------------------------------------------------------- */

static void test_getters(void **state)
{
	struct rt_file f;
	struct parsed o;
	uint64_t u64;
	uint32_t u32;
	int64_t i64;
	float fv;
	bool b;
	struct pf_gguf_str s;

	build_rt(&f, 3, 0);
	expect_ok(&f.w, &o);
	const struct pf_gguf *g = o.g;

	/* unsigned scalars: every integer getter takes them when the value fits */
	assert_int_equal(pf_gguf_get_u64(g, "s.u8", &u64), 0);
	assert_int_equal(u64, 200);
	assert_int_equal(pf_gguf_get_u32(g, "s.u8", &u32), 0);
	assert_int_equal(u32, 200);
	assert_int_equal(pf_gguf_get_i64(g, "s.u8", &i64), 0);
	assert_int_equal(i64, 200);
	assert_int_equal(pf_gguf_get_u32(g, "s.u16", &u32), 0);
	assert_int_equal(u32, 60000);
	assert_int_equal(pf_gguf_get_u32(g, "s.u32", &u32), 0);
	assert_int_equal(u32, 4000000000u);
	assert_int_equal(pf_gguf_get_i64(g, "s.u32", &i64), 0);
	assert_int_equal(i64, 4000000000);
	assert_int_equal(pf_gguf_get_u64(g, "s.u64", &u64), 0);
	assert_true(u64 == (UINT64_C(1) << 63) + 5);
	assert_int_equal(pf_gguf_get_u32(g, "s.u64", &u32), -EINVAL);   /* too big */
	assert_int_equal(pf_gguf_get_i64(g, "s.u64", &i64), -EINVAL);   /* too big */
	assert_int_equal(pf_gguf_get_u32(g, "s.u64_2p32", &u32), -EINVAL);
	assert_int_equal(pf_gguf_get_u64(g, "s.u64_2p32", &u64), 0);
	assert_int_equal(pf_gguf_get_u32(g, "s.u64_small", &u32), 0);
	assert_int_equal(u32, 77);

	/* signed scalars: negative ones refuse the unsigned getters */
	assert_int_equal(pf_gguf_get_i64(g, "s.i8", &i64), 0);
	assert_int_equal(i64, -100);
	assert_int_equal(pf_gguf_get_u64(g, "s.i8", &u64), -EINVAL);
	assert_int_equal(pf_gguf_get_u32(g, "s.i8", &u32), -EINVAL);
	assert_int_equal(pf_gguf_get_i64(g, "s.i16", &i64), 0);
	assert_int_equal(i64, -30000);
	assert_int_equal(pf_gguf_get_i64(g, "s.i32", &i64), 0);
	assert_int_equal(i64, -2000000000);
	assert_int_equal(pf_gguf_get_u32(g, "s.i32_pos", &u32), 0);
	assert_int_equal(u32, 123);
	assert_int_equal(pf_gguf_get_i64(g, "s.i64", &i64), 0);
	assert_true(i64 == -(INT64_C(1) << 40));
	assert_int_equal(pf_gguf_get_i64(g, "s.i64_min", &i64), 0);
	assert_true(i64 == INT64_MIN);
	assert_int_equal(pf_gguf_get_u64(g, "s.i64_min", &u64), -EINVAL);

	/* floats: F32 and F64 only; integers are not floats and floats not integers */
	assert_int_equal(pf_gguf_get_f32(g, "s.f32", &fv), 0);
	assert_true(fv == 1.5f);
	assert_int_equal(pf_gguf_get_f32(g, "s.f64", &fv), 0);
	assert_true(fv == 2.25f);
	assert_int_equal(pf_gguf_get_f32(g, "s.u32", &fv), -EINVAL);
	assert_int_equal(pf_gguf_get_u64(g, "s.f32", &u64), -EINVAL);
	assert_int_equal(pf_gguf_get_i64(g, "s.f64", &i64), -EINVAL);

	/* bools: only get_bool */
	assert_int_equal(pf_gguf_get_bool(g, "s.bool", &b), 0);
	assert_true(b);
	assert_int_equal(pf_gguf_get_bool(g, "s.bool0", &b), 0);
	assert_false(b);
	assert_int_equal(pf_gguf_get_u64(g, "s.bool", &u64), -EINVAL);
	assert_int_equal(pf_gguf_get_u32(g, "s.bool", &u32), -EINVAL);
	assert_int_equal(pf_gguf_get_i64(g, "s.bool", &i64), -EINVAL);
	assert_int_equal(pf_gguf_get_f32(g, "s.bool", &fv), -EINVAL);
	assert_int_equal(pf_gguf_get_bool(g, "s.u8", &b), -EINVAL);

	/* strings: only get_str */
	assert_int_equal(pf_gguf_get_str(g, "s.str", &s), 0);
	assert_int_equal(pf_gguf_get_u64(g, "s.str", &u64), -EINVAL);
	assert_int_equal(pf_gguf_get_f32(g, "s.str", &fv), -EINVAL);
	assert_int_equal(pf_gguf_get_bool(g, "s.str", &b), -EINVAL);
	assert_int_equal(pf_gguf_get_str(g, "s.u32", &s), -EINVAL);

	/* arrays are not scalars */
	static const char *const arrs[] = { "a.u8", "a.str", "a.nested", "a.empty_u32" };
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(pf_gguf_get_u64(g, arrs[i], &u64), -EINVAL);
		assert_int_equal(pf_gguf_get_u32(g, arrs[i], &u32), -EINVAL);
		assert_int_equal(pf_gguf_get_i64(g, arrs[i], &i64), -EINVAL);
		assert_int_equal(pf_gguf_get_f32(g, arrs[i], &fv), -EINVAL);
		assert_int_equal(pf_gguf_get_bool(g, arrs[i], &b), -EINVAL);
		assert_int_equal(pf_gguf_get_str(g, arrs[i], &s), -EINVAL);
	}

	/* absent keys; the output is left alone on any failure */
	u64 = 99;
	assert_int_equal(pf_gguf_get_u64(g, "nope", &u64), -ENOENT);
	assert_int_equal(pf_gguf_get_u32(g, "nope", &u32), -ENOENT);
	assert_int_equal(pf_gguf_get_i64(g, "nope", &i64), -ENOENT);
	assert_int_equal(pf_gguf_get_f32(g, "nope", &fv), -ENOENT);
	assert_int_equal(pf_gguf_get_bool(g, "nope", &b), -ENOENT);
	assert_int_equal(pf_gguf_get_str(g, "nope", &s), -ENOENT);
	assert_int_equal(pf_gguf_get_u64(g, "s.i8", &u64), -EINVAL);
	assert_int_equal(u64, 99);

	assert_string_equal(pf_gguf_vtype_name(PF_GGUF_U32), "u32");
	assert_string_equal(pf_gguf_vtype_name(PF_GGUF_ARRAY), "array");
	assert_string_equal(pf_gguf_vtype_name(PF_GGUF_VTYPE_COUNT), "?");
	assert_string_equal(pf_gguf_vtype_name(UINT32_MAX), "?");
	for (uint32_t t = 0; t <= PF_GGUF_VTYPE_COUNT; t++)
		assert_int_equal(pf_gguf_vtype_size(t), tsize(t));
	unparse(&o);
	wfree(&f.w);
}

/* ---- rejections ---------------------------------------------------------- */

static void test_reject_header(void **state)
{
	struct wbuf w = { 0 };
	char b1[160], b2[160];

	put(&w, "GGU", 3);
	expect_reject(&w, "magic at offset 0 needs 4 bytes, file ends at 3", NULL);
	wfree(&w);

	put(&w, "GGUX", 4);
	put_u32(&w, 3);
	put_u64(&w, 0);
	put_u64(&w, 0);
	expect_reject(&w, "not a GGUF file", "magic at offset 0 is 0x58554747", NULL);
	w.p[0] = 'g';
	w.p[3] = 'F';
	expect_reject(&w, "not a GGUF file", "offset 0", NULL);
	wfree(&w);

	static const uint32_t bad_versions[] = { 0, 1, 4, 0x03000000u, UINT32_MAX };
	for (size_t i = 0; i < sizeof(bad_versions) / sizeof(bad_versions[0]); i++) {
		put_header(&w, bad_versions[i], 0, 0);
		expect_reject(&w, fmt(b1, "GGUF version %" PRIu32 " at offset 4 is not supported", bad_versions[i]), NULL);
		wfree(&w);
	}

	put(&w, "GGUF", 4);
	put_u32(&w, 3);
	put_u32(&w, 0);
	expect_reject(&w, "tensor count at offset 8 needs 8 bytes, file ends at 12", NULL);
	wfree(&w);
	put(&w, "GGUF", 4);
	put_u32(&w, 3);
	put_u64(&w, 0);
	put_u32(&w, 0);
	expect_reject(&w, "metadata count at offset 16 needs 8 bytes, file ends at 20", NULL);
	wfree(&w);

	/* counts no file of this size could hold, up to the largest u64 */
	static const uint64_t absurd[] = { 2, 1000, UINT64_C(1) << 32, UINT64_C(1) << 60, UINT64_MAX };
	for (size_t i = 0; i < sizeof(absurd) / sizeof(absurd[0]); i++) {
		put_header(&w, 3, 0, absurd[i]);
		put_kv_u32(&w, "k", 1);
		expect_reject(&w, fmt(b1, "metadata count %" PRIu64 " at offset 16", absurd[i]),
			      "more than a file of 41 bytes could hold", NULL);
		wfree(&w);
		put_header(&w, 3, absurd[i], 0);
		put_tensor_info(&w, "t", 1, (const uint64_t[]){ 1 }, PF_DT_F32, 0);
		expect_reject(&w, fmt(b2, "tensor count %" PRIu64 " at offset 8", absurd[i]),
			      "more than a file of 57 bytes could hold", NULL);
		wfree(&w);
	}
}

static void test_reject_strings(void **state)
{
	struct wbuf w = { 0 };
	char b1[160];
	uint64_t at;

	/* key length past the end, including lengths that would wrap a sum */
	static const uint64_t lens[] = { 14, 1000, UINT64_C(1) << 63, UINT64_MAX - 7, UINT64_MAX };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		put_header(&w, 3, 0, 1);
		put_u64(&w, lens[i]);
		put(&w, "abcdefghijklm", 13); /* 13: the smallest entry the count bound allows */
		expect_reject(&w, fmt(b1, "metadata entry 0 key at offset 24: string length %" PRIu64
				      " runs past end of file (size 45)", lens[i]), NULL);
		wfree(&w);
	}

	/* a string value, the second entry */
	put_header(&w, 3, 0, 2);
	put_kv_u32(&w, "first", 1);
	put_kv(&w, "name", PF_GGUF_STRING);
	at = w.len;
	put_u64(&w, 6);
	put(&w, "hello", 5);
	expect_reject(&w, fmt(b1, "metadata 'name' at offset %" PRIu64 ": string length 6 runs past end of file (size %zu)",
			      at, w.len), NULL);
	wfree(&w);

	/* the third element of a string array */
	put_header(&w, 3, 0, 1);
	put_kv(&w, "tokens", PF_GGUF_ARRAY);
	put_arr_hdr(&w, PF_GGUF_STRING, 3);
	put_str(&w, "a");
	put_str(&w, "bb");
	at = w.len;
	put_u64(&w, 100);
	put_fill(&w, 'c', 40);
	expect_reject(&w, fmt(b1, "metadata 'tokens' at offset %" PRIu64 ": string length 100 runs past end of file", at), NULL);
	wfree(&w);

	/* a tensor name */
	put_header(&w, 3, 1, 0);
	at = w.len;
	put_u64(&w, 64);
	put_fill(&w, 'n', 40);
	expect_reject(&w, fmt(b1, "tensor info 0 name at offset %" PRIu64 ": string length 64 runs past end of file", at), NULL);
	wfree(&w);

	/* a key with a NUL byte, as the second entry; and a tensor name with one */
	put_header(&w, 3, 0, 2);
	put_kv_u32(&w, "ok", 1);
	at = w.len;
	put_strn(&w, "bad\0key", 7);
	put_u32(&w, PF_GGUF_U32);
	put_u32(&w, 1);
	expect_reject(&w, fmt(b1, "metadata entry 1 key at offset %" PRIu64 ": name contains a NUL byte", at), NULL);
	wfree(&w);
	put_header(&w, 3, 2, 0);
	put_tensor_info(&w, "a", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 0);
	at = w.len;
	put_strn(&w, "b\0", 2);
	put_u32(&w, 1);
	put_u64(&w, 8);
	put_u32(&w, PF_DT_F32);
	put_u64(&w, 32);
	put_pad(&w, 32);
	put_fill(&w, 0, 64);
	expect_reject(&w, fmt(b1, "tensor info 1 name at offset %" PRIu64 ": name contains a NUL byte", at), NULL);
	wfree(&w);

	/* names longer than 64 KiB */
	char *big = malloc(65536);
	assert_non_null(big);
	memset(big, 'k', 65536);
	put_header(&w, 3, 0, 1);
	put_strn(&w, big, 65536);
	put_u32(&w, PF_GGUF_U8);
	put_u8(&w, 1);
	expect_reject(&w, "metadata entry 0 key at offset 24: name of 65536 bytes is longer than 65535", NULL);
	wfree(&w);
	/* ...while 65535 is fine */
	struct parsed o;
	put_header(&w, 3, 0, 1);
	put_strn(&w, big, 65535);
	put_u32(&w, PF_GGUF_U8);
	put_u8(&w, 1);
	expect_ok(&w, &o);
	unparse(&o);
	wfree(&w);
	free(big);
}

static void test_reject_types(void **state)
{
	struct wbuf w = { 0 };
	char b1[160];
	uint64_t at;

	static const uint32_t bad[] = { PF_GGUF_VTYPE_COUNT, 100, 0x80000000u, UINT32_MAX };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* as a value type */
		put_header(&w, 3, 0, 2);
		put_kv_u32(&w, "first", 1);
		put_str(&w, "second");
		at = w.len;
		put_u32(&w, bad[i]);
		put_u64(&w, 0);
		expect_reject(&w, fmt(b1, "metadata 'second' at offset %" PRIu64 ": unknown value type %" PRIu32, at, bad[i]), NULL);
		wfree(&w);

		/* as an array element type */
		put_header(&w, 3, 0, 1);
		put_kv(&w, "arr", PF_GGUF_ARRAY);
		at = w.len;
		put_arr_hdr(&w, bad[i], 1);
		put_u64(&w, 0);
		expect_reject(&w, fmt(b1, "metadata 'arr' at offset %" PRIu64 ": unknown array element type %" PRIu32, at, bad[i]), NULL);
		wfree(&w);

		/* as the element type of an inner array */
		put_header(&w, 3, 0, 1);
		put_kv(&w, "arr", PF_GGUF_ARRAY);
		put_arr_hdr(&w, PF_GGUF_ARRAY, 2);
		put_arr_hdr(&w, PF_GGUF_U8, 1);
		put_u8(&w, 1);
		at = w.len;
		put_arr_hdr(&w, bad[i], 1);
		put_u64(&w, 0);
		expect_reject(&w, fmt(b1, "metadata 'arr' at offset %" PRIu64 ": unknown array element type %" PRIu32, at, bad[i]), NULL);
		wfree(&w);
	}

	/* array counts past the end, for fixed-size, string and array elements */
	static const struct {
		uint32_t et;
		const char *name;
	} ets[] = { { PF_GGUF_U8, "u8" }, { PF_GGUF_U64, "u64" }, { PF_GGUF_STRING, "string" }, { PF_GGUF_ARRAY, "array" } };
	for (size_t i = 0; i < 4; i++) {
		static const uint64_t ns[] = { 100, UINT64_C(1) << 61, UINT64_MAX };
		for (size_t j = 0; j < 3; j++) {
			put_header(&w, 3, 0, 1);
			put_kv(&w, "arr", PF_GGUF_ARRAY);
			at = w.len;
			put_arr_hdr(&w, ets[i].et, ns[j]);
			put_fill(&w, 0, 20);
			expect_reject(&w, fmt(b1, "metadata 'arr' at offset %" PRIu64 ": array of %" PRIu64 " %s elements runs past end of file (size %zu)",
					      at, ns[j], ets[i].name, w.len), NULL);
			wfree(&w);
		}
	}

	/* nine levels of arrays: one more than allowed */
	put_header(&w, 3, 0, 1);
	put_kv(&w, "deep", PF_GGUF_ARRAY);
	for (int l = 0; l < 8; l++)
		put_arr_hdr(&w, PF_GGUF_ARRAY, 1);
	at = w.len;
	put_arr_hdr(&w, PF_GGUF_U8, 1);
	put_u8(&w, 1);
	expect_reject(&w, fmt(b1, "metadata 'deep' at offset %" PRIu64 ": arrays nested deeper than 8", at), NULL);
	wfree(&w);
	/* and a wide file of many nested levels does not recurse without bound */
	put_header(&w, 3, 0, 1);
	put_kv(&w, "deep", PF_GGUF_ARRAY);
	for (int l = 0; l < 10000; l++)
		put_arr_hdr(&w, PF_GGUF_ARRAY, 1);
	expect_reject(&w, "arrays nested deeper than 8", NULL);
	wfree(&w);

	/* a truncated scalar value and a truncated value type */
	put_header(&w, 3, 0, 1);
	put_kv(&w, "v", PF_GGUF_U64);
	at = w.len;
	put_u32(&w, 0);
	expect_reject(&w, fmt(b1, "metadata 'v' at offset %" PRIu64 " needs 8 bytes, file ends at %zu", at, w.len), NULL);
	wfree(&w);
	put_header(&w, 3, 0, 1);
	put_str(&w, "vvvvv"); /* long enough for the count bound of 13 bytes per entry */
	put_u8(&w, 4);
	put_u8(&w, 0);
	expect_reject(&w, "metadata 'vvvvv' at offset 37 needs 4 bytes, file ends at 39", NULL);
	wfree(&w);
}

static void test_reject_duplicates(void **state)
{
	struct wbuf w = { 0 };
	char b1[160];
	uint64_t a1, a2;

	put_header(&w, 3, 0, 4);
	put_kv_u32(&w, "a", 1);
	a1 = put_kv(&w, "dup", PF_GGUF_U8);
	put_u8(&w, 1);
	put_kv_str(&w, "b", "x");
	a2 = put_kv(&w, "dup", PF_GGUF_STRING);
	put_str(&w, "y");
	expect_reject(&w, fmt(b1, "metadata key 'dup' is repeated (entries at offsets %" PRIu64 " and %" PRIu64 ")", a1, a2), NULL);
	wfree(&w);

	put_header(&w, 3, 3, 0);
	a1 = put_tensor_info(&w, "w", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 0);
	put_tensor_info(&w, "x", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 32);
	a2 = put_tensor_info(&w, "w", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 64);
	put_pad(&w, 32);
	put_fill(&w, 0, 96);
	expect_reject(&w, fmt(b1, "tensor name 'w' is repeated (tensor infos at offsets %" PRIu64 " and %" PRIu64 ")", a1, a2), NULL);
	wfree(&w);
}

/* One tensor info with the given fields, then padding and `data` bytes. */
static uint64_t one_tensor(struct wbuf *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
			   uint64_t offset, size_t data)
{
	put_header(w, 3, 1, 0);
	uint64_t at = put_tensor_info(w, name, n_dims, ne, type, offset);
	put_pad(w, 32);
	put_fill(w, 0, data);
	return at;
}

static void test_reject_tensor_shapes(void **state)
{
	struct wbuf w = { 0 };
	char b1[160];
	uint64_t at;
	const uint64_t ne4[5] = { 32, 2, 2, 2, 2 };

	/* n_dims 0 and 5 (and a huge one); the field follows the 8+len name */
	static const uint32_t dims[] = { 0, 5, UINT32_MAX };
	for (size_t i = 0; i < 3; i++) {
		at = one_tensor(&w, "blk.0.ffn_up.weight", dims[i], ne4, PF_DT_F32, 0, 4096);
		expect_reject(&w, fmt(b1, "tensor 'blk.0.ffn_up.weight' at offset %" PRIu64 ": %" PRIu32 " dimensions (1..4 allowed)",
				      at + 8 + 19, dims[i]), NULL);
		wfree(&w);
	}

	/* dimensions whose product does not fit: the first dimension that overflows is named */
	at = one_tensor(&w, "t", 2, (const uint64_t[]){ UINT64_C(1) << 32, UINT64_C(1) << 32 }, PF_DT_F32, 0, 64);
	expect_reject(&w, fmt(b1, "tensor 't' at offset %" PRIu64 ": dimension 1 = 4294967296", at + 8 + 1 + 4 + 8), NULL);
	wfree(&w);
	at = one_tensor(&w, "t", 4, (const uint64_t[]){ 1 << 16, 1 << 16, 1 << 16, 1 << 16 }, PF_DT_F32, 0, 64);
	expect_reject(&w, fmt(b1, "tensor 't' at offset %" PRIu64 ": dimension 3 = 65536", at + 8 + 1 + 4 + 24), NULL);
	wfree(&w);
	at = one_tensor(&w, "t", 1, (const uint64_t[]){ UINT64_MAX }, PF_DT_F32, 0, 64);
	expect_reject(&w, fmt(b1, "tensor 't' at offset %" PRIu64 ": dimension 0 = %" PRIu64, at + 13, UINT64_MAX), NULL);
	wfree(&w);
	/* element counts that fit but whose byte size wraps 2^64 (to 0 here) */
	at = one_tensor(&w, "t", 2, (const uint64_t[]){ UINT64_C(1) << 31, UINT64_C(1) << 31 }, PF_DT_F32, 0, 64);
	expect_reject(&w, fmt(b1, "tensor 't' at offset %" PRIu64 ": 4611686018427387904 F32 elements take more than 2^64 bytes",
			      at + 8 + 1 + 4 + 16), NULL);
	wfree(&w);
	at = one_tensor(&w, "t", 1, (const uint64_t[]){ UINT64_C(1) << 61 }, PF_DT_F64, 0, 64);
	expect_reject(&w, fmt(b1, "tensor 't' at offset %" PRIu64 ": 2305843009213693952 F64 elements take more than 2^64 bytes",
			      at + 8 + 1 + 4 + 8), NULL);
	wfree(&w);
	/* ...and a huge count whose size does fit still has to be in the file */
	one_tensor(&w, "t", 2, (const uint64_t[]){ UINT64_C(1) << 30, UINT64_C(1) << 30 }, PF_DT_Q4_0, 0, 64);
	expect_reject(&w, "tensor 't': data [offset 96, size 648518346341351424] runs past end of file (size 160)", NULL);
	wfree(&w);

	/* unknown type ids: gaps in the table and ids past its end */
	static const uint32_t types[] = { 4, 5, 16, 23, 29, 31, 39, 40, 1000, UINT32_MAX };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		at = one_tensor(&w, "t", 1, (const uint64_t[]){ 256 }, types[i], 0, 4096);
		expect_reject(&w, fmt(b1, "tensor 't' at offset %" PRIu64 ": unknown tensor type id %" PRIu32, at + 21, types[i]), NULL);
		wfree(&w);
	}

	/* rows that are not whole blocks */
	static const struct {
		uint32_t type;
		uint64_t ne0;
		const char *name;
		uint32_t block;
	} rows[] = {
		{ PF_DT_Q4_0, 33, "Q4_0", 32 }, { PF_DT_Q4_1, 16, "Q4_1", 32 }, { PF_DT_Q8_0, 48, "Q8_0", 32 },
		{ PF_DT_Q4_K, 128, "Q4_K", 256 }, { PF_DT_Q6_K, 257, "Q6_K", 256 },
	};
	for (size_t i = 0; i < 5; i++) {
		at = one_tensor(&w, "t", 2, (const uint64_t[]){ rows[i].ne0, 2 }, rows[i].type, 0, 4096);
		expect_reject(&w, fmt(b1, "tensor 't' at offset %" PRIu64 ": row length %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
				      at + 13, rows[i].ne0, rows[i].name, rows[i].block), NULL);
		wfree(&w);
	}

	/* a truncated tensor info: inside n_dims, the dimensions, the type and the
	 * offset (the long name keeps the file above the count bound) */
	static const char long_name[] = "a_rather_long_tensor_name_here";
	put_header(&w, 3, 1, 0);
	at = put_tensor_info(&w, long_name, 2, (const uint64_t[]){ 32, 2 }, PF_DT_F32, 0);
	for (uint64_t cut = at + 8 + 30 + 1; cut < w.len; cut += 3) {
		struct wbuf t = { 0 };
		put(&t, w.p, cut);
		expect_reject(&t, "tensor 'a_rather_long_tensor_name_here' at offset", fmt(b1, "file ends at %" PRIu64, cut), NULL);
		wfree(&t);
	}
	wfree(&w);
}

static void test_reject_tensor_data(void **state)
{
	struct wbuf w = { 0 };
	char b1[160];
	uint64_t at;

	/* misaligned data offsets, default and custom alignment */
	at = one_tensor(&w, "t", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 16, 64);
	expect_reject(&w, fmt(b1, "tensor 't' at offset %" PRIu64 ": data offset 16 is not a multiple of the alignment 32", at + 25), NULL);
	wfree(&w);
	put_header(&w, 3, 1, 1);
	put_kv_u32(&w, "general.alignment", 64);
	at = put_tensor_info(&w, "t", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 32);
	put_pad(&w, 64);
	put_fill(&w, 0, 128);
	expect_reject(&w, fmt(b1, "tensor 't' at offset %" PRIu64 ": data offset 32 is not a multiple of the alignment 64", at + 25), NULL);
	wfree(&w);

	/* data past the end: the message of the issue, to the byte */
	put_header(&w, 3, 2, 0);
	put_tensor_info(&w, "blk.2.attn_q.weight", 1, (const uint64_t[]){ 32 }, PF_DT_F32, 0);
	put_tensor_info(&w, "blk.3.attn_q.weight", 2, (const uint64_t[]){ 64, 4 }, PF_DT_Q8_0, 128);
	put_pad(&w, 32);
	uint64_t data_off = w.len;
	put_fill(&w, 1, 400 - data_off);
	{
		struct parsed o;
		parse_w(&w, &o);
		assert_int_equal(o.r, -EINVAL);
		assert_string_equal(o.err, fmt(b1, NAME ": tensor 'blk.3.attn_q.weight': data [offset %" PRIu64 ", size 272] runs past end of file (size 400)",
					       data_off + 128));
		unparse(&o);
	}
	wfree(&w);
	/* relative offsets so large the absolute one would wrap */
	one_tensor(&w, "t", 1, (const uint64_t[]){ 8 }, PF_DT_F32, UINT64_MAX - 31, 64);
	expect_reject(&w, fmt(b1, "tensor 't': data [offset 64 + %" PRIu64 ", size 32] runs past end of file (size 128)", UINT64_MAX - 31), NULL);
	wfree(&w);
	/* a zero-size tensor may sit at the very end, not past it */
	one_tensor(&w, "t", 1, (const uint64_t[]){ 0 }, PF_DT_F32, 96, 64);
	expect_reject(&w, "tensor 't': data [offset 160, size 0] runs past end of file (size 128)", NULL);
	wfree(&w);

	/* tensors but no room for the data section to start */
	put_header(&w, 3, 1, 0);
	put_tensor_info(&w, "t", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 0);
	expect_reject(&w, "tensor data section would start at offset 64, past end of file (size 57)", NULL);
	wfree(&w);

	/* overlapping data */
	put_header(&w, 3, 2, 0);
	put_tensor_info(&w, "a", 1, (const uint64_t[]){ 16 }, PF_DT_F32, 0);
	put_tensor_info(&w, "b", 1, (const uint64_t[]){ 16 }, PF_DT_F32, 32);
	put_pad(&w, 32);
	data_off = w.len;
	put_fill(&w, 0, 128);
	expect_reject(&w, fmt(b1, "tensor 'a' (data at %" PRIu64 ", 64 bytes) overlaps tensor 'b' (data at %" PRIu64 ")",
			      data_off, data_off + 32), NULL);
	wfree(&w);
	/* the same start */
	put_header(&w, 3, 2, 0);
	put_tensor_info(&w, "a", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 32);
	put_tensor_info(&w, "b", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 32);
	put_pad(&w, 32);
	put_fill(&w, 0, 128);
	expect_reject(&w, "overlaps tensor", NULL);
	wfree(&w);
	/* one tensor containing two others, with a zero-size tensor between
	 * them in offset order: only neighbours would be compared otherwise */
	put_header(&w, 3, 3, 0);
	put_tensor_info(&w, "big", 1, (const uint64_t[]){ 64 }, PF_DT_F32, 0);
	put_tensor_info(&w, "empty", 1, (const uint64_t[]){ 0 }, PF_DT_F32, 64);
	put_tensor_info(&w, "inside", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 128);
	put_pad(&w, 32);
	data_off = w.len;
	put_fill(&w, 0, 512);
	expect_reject(&w, fmt(b1, "tensor 'big' (data at %" PRIu64 ", 256 bytes) overlaps tensor 'inside' (data at %" PRIu64 ")",
			      data_off, data_off + 128), NULL);
	wfree(&w);
	/* a big tensor spanning two later neighbours */
	put_header(&w, 3, 3, 0);
	put_tensor_info(&w, "big", 1, (const uint64_t[]){ 64 }, PF_DT_F32, 0);
	put_tensor_info(&w, "small1", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 256);
	put_tensor_info(&w, "small2", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 64);
	put_pad(&w, 32);
	put_fill(&w, 0, 512);
	expect_reject(&w, "tensor 'big'", "overlaps tensor 'small2'", NULL);
	wfree(&w);
	/* zero-size tensors may share offsets with anything */
	{
		struct parsed o;
		put_header(&w, 3, 3, 0);
		put_tensor_info(&w, "a", 1, (const uint64_t[]){ 16 }, PF_DT_F32, 0);
		put_tensor_info(&w, "z1", 1, (const uint64_t[]){ 0 }, PF_DT_F32, 0);
		put_tensor_info(&w, "z2", 2, (const uint64_t[]){ 32, 0 }, PF_DT_Q4_0, 32);
		put_pad(&w, 32);
		put_fill(&w, 0, 64);
		expect_ok(&w, &o);
		unparse(&o);
		wfree(&w);
	}
}

static void test_reject_alignment(void **state)
{
	struct wbuf w = { 0 };
	char b1[160];
	uint64_t at;

	static const uint32_t bad[] = { 0, 3, 48, 96, (1u << 20) + 1, 1u << 21, 1u << 31, UINT32_MAX };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put_header(&w, 3, 0, 2);
		put_kv_u32(&w, "general.name", 7);
		at = put_kv_u32(&w, "general.alignment", bad[i]);
		expect_reject(&w, fmt(b1, "metadata 'general.alignment' = %" PRIu32 " at offset %" PRIu64 " is not a power of two up to 1 MiB",
				      bad[i], at), NULL);
		wfree(&w);
	}
	static const struct {
		uint32_t type;
		const char *name;
	} wrong[] = { { PF_GGUF_U64, "u64" }, { PF_GGUF_I32, "i32" }, { PF_GGUF_U16, "u16" }, { PF_GGUF_STRING, "string" } };
	for (size_t i = 0; i < 4; i++) {
		put_header(&w, 3, 0, 1);
		put_kv(&w, "general.alignment", wrong[i].type);
		at = w.len;
		if (wrong[i].type == PF_GGUF_STRING)
			put_str(&w, "32");
		else
			put(&w, (const uint64_t[]){ 32 }, tsize(wrong[i].type));
		expect_reject(&w, fmt(b1, "metadata 'general.alignment' at offset %" PRIu64 " has type %s, expected u32", at, wrong[i].name), NULL);
		wfree(&w);
	}
	put_header(&w, 3, 0, 1);
	put_kv(&w, "general.alignment", PF_GGUF_ARRAY);
	at = put_arr_hdr(&w, PF_GGUF_U32, 1);
	put_u32(&w, 32);
	expect_reject(&w, fmt(b1, "metadata 'general.alignment' at offset %" PRIu64 " has type array, expected u32", at), NULL);
	wfree(&w);
	/* twice, even with the same value */
	put_header(&w, 3, 0, 2);
	put_kv_u32(&w, "general.alignment", 32);
	put_kv_u32(&w, "general.alignment", 32);
	expect_reject(&w, "metadata key 'general.alignment' is repeated", NULL);
	wfree(&w);
}

/* Names with control bytes are legal but must not reach a terminal raw. */
static void test_message_escapes_names(void **state)
{
	struct wbuf w = { 0 };

	put_header(&w, 3, 0, 1);
	put_str(&w, "evil\n\x1b[2Jkey\x7f");
	put_u32(&w, 99);
	expect_reject(&w, "metadata 'evil\\x0a\\x1b[2Jkey\\x7f' at offset", "unknown value type 99", NULL);
	wfree(&w);

	put_header(&w, 3, 1, 0);
	put_tensor_info(&w, "t\r\n", 1, (const uint64_t[]){ 8 }, PF_DT_F32, 0);
	put_pad(&w, 32);
	expect_reject(&w, "tensor 't\\x0d\\x0a': data [offset", NULL);
	wfree(&w);

	/* long names are cut in messages, not in the object */
	char name[300];
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	put_header(&w, 3, 0, 1);
	put_str(&w, name);
	put_u32(&w, 99);
	expect_reject(&w, "nnnn...' at offset", NULL);
	wfree(&w);
}

/* The error buffer: NULL, size 0 and tiny sizes are all safe. */
static void test_error_buffer(void **state)
{
	struct wbuf w = { 0 };
	struct pf_gguf *g = NULL;
	char err[16];

	put_header(&w, 1, 0, 0);
	assert_int_equal(pf_gguf_open_mem(w.p, w.len, NAME, &g, NULL, 0), -EINVAL);
	assert_int_equal(pf_gguf_open_mem(w.p, w.len, NAME, &g, NULL, 100), -EINVAL);
	memset(err, 'X', sizeof(err));
	assert_int_equal(pf_gguf_open_mem(w.p, w.len, NAME, &g, err, 0), -EINVAL);
	assert_int_equal(err[0], 'X');
	for (size_t n = 1; n <= sizeof(err); n++) {
		memset(err, 'X', sizeof(err));
		assert_int_equal(pf_gguf_open_mem(w.p, w.len, NAME, &g, err, n), -EINVAL);
		assert_true(strlen(err) == n - 1);
		if (n < sizeof(err))
			assert_int_equal(err[n], 'X');
	}
	/* no name: a placeholder */
	char big[256];
	assert_int_equal(pf_gguf_open_mem(w.p, w.len, NULL, &g, big, sizeof(big)), -EINVAL);
	assert_non_null(strstr(big, "<memory>: "));
	assert_null(g);
	pf_gguf_close(NULL);
	wfree(&w);
}

/* ---- pf_gguf_open -------------------------------------------------------- */

static void write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

static void test_open_path(void **state)
{
	char dir[] = "/tmp/pf-gguf-XXXXXX";
	char path[256], err[512];
	struct pf_gguf *g = NULL;

	assert_non_null(mkdtemp(dir));

	snprintf(path, sizeof(path), "%s/missing.gguf", dir);
	assert_int_equal(pf_gguf_open(path, &g, err, sizeof(err)), -ENOENT);
	assert_null(g);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "cannot open"));

	assert_int_equal(pf_gguf_open(dir, &g, err, sizeof(err)), -EINVAL);
	assert_null(g);
	assert_non_null(strstr(err, "not a regular file"));

	snprintf(path, sizeof(path), "%s/empty.gguf", dir);
	write_file(path, "", 0);
	assert_int_equal(pf_gguf_open(path, &g, err, sizeof(err)), -EINVAL);
	assert_null(g);
	assert_non_null(strstr(err, "file is empty"));
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	unlink(path);

	/* a valid file opens mapped, and its data is readable until close */
	struct rt_file f;
	build_rt(&f, 3, 64);
	snprintf(path, sizeof(path), "%s/ok.gguf", dir);
	write_file(path, f.w.p, f.w.len);
	assert_int_equal(pf_gguf_open(path, &g, err, sizeof(err)), 0);
	assert_true(g->mapped);
	assert_string_equal(g->path, path);
	check_rt(&f, g, 3);
	pf_gguf_close(g);
	g = NULL;

	/* the same file cut inside the last tensor's data (its 28 bytes are
	 * followed by 36 of padding) names the file in the message */
	write_file(path, f.w.p, f.w.len - 40);
	assert_int_equal(pf_gguf_open(path, &g, err, sizeof(err)), -EINVAL);
	assert_null(g);
	assert_int_equal(strncmp(err, path, strlen(path)), 0);
	assert_non_null(strstr(err, "runs past end of file"));
	unlink(path);
	wfree(&f.w);

	/* a FIFO is refused without waiting for a writer (alarm: a hang fails) */
	snprintf(path, sizeof(path), "%s/fifo.gguf", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(10);
	assert_int_equal(pf_gguf_open(path, &g, err, sizeof(err)), -EINVAL);
	alarm(0);
	assert_null(g);
	assert_non_null(strstr(err, "not a regular file"));
	unlink(path);
	assert_int_equal(pf_gguf_open("/dev/null", &g, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "/dev/null: not a regular file"));

	/* the object keeps its own copy of the name it was given */
	{
		struct wbuf w = { 0 };
		char name[64];
		put_header(&w, 3, 0, 0);
		snprintf(name, sizeof(name), "temporary-name.gguf");
		assert_int_equal(pf_gguf_open_mem(w.p, w.len, name, &g, err, sizeof(err)), 0);
		memset(name, 0, sizeof(name));
		assert_string_equal(g->path, "temporary-name.gguf");
		pf_gguf_close(g);
		assert_int_equal(pf_gguf_open_mem(w.p, w.len, NULL, &g, err, sizeof(err)), 0);
		assert_string_equal(g->path, "<memory>");
		pf_gguf_close(g);
		g = NULL;
		wfree(&w);
	}

	/* an unreadable file, when not root (root reads anything) */
	if (geteuid() != 0) {
		snprintf(path, sizeof(path), "%s/noperm.gguf", dir);
		write_file(path, "GGUF", 4);
		assert_int_equal(chmod(path, 0), 0);
		assert_int_equal(pf_gguf_open(path, &g, err, sizeof(err)), -EACCES);
		unlink(path);
	}
	assert_int_equal(rmdir(dir), 0);
}

/* ---- the real model ------------------------------------------------------- */

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define MNAME "m.gguf"

struct u64vec {
	uint64_t *v;
	size_t n, cap;
};

static void vpush(struct u64vec *v, uint64_t x)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? 2 * v->cap : 256;
		v->v = realloc(v->v, v->cap * sizeof(*v->v));
		assert_non_null(v->v);
	}
	v->v[v->n++] = x;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct mkv {
	const char *key; /* into the file, not NUL-terminated */
	uint64_t key_len;
	uint32_t type;
	uint64_t val_off; /* first element for arrays, as pf_gguf_kv.off */
};

struct mtensor {
	const char *name;
	uint64_t name_len;
	uint64_t rel, size;
};

/* The model file and its layout as our own walker sees it. */
struct model {
	bool loaded, absent;
	const char *path;
	uint8_t *file; /* the whole file, a heap block of exactly its size */
	uint64_t size;
	uint64_t n_kv, n_tensors;
	uint32_t alignment;
	uint64_t info_end;  /* end of the last tensor info */
	uint64_t data_off;  /* start of the data section */
	uint64_t data_end;  /* end of the furthest tensor's data */
	struct mkv *kvs;
	struct mtensor *ts;
	struct u64vec bounds; /* where entries, sections and tensor data start and end */
	struct u64vec fields; /* header, count, length, type, n_dims, ne and offset fields */
	struct u64vec elems;  /* length fields of string array elements */
	size_t page;
	/* truncations up to slide_len bytes: copied to end at a PROT_NONE page */
	uint8_t *slide_map;
	size_t slide_len;
	/* longer ones: the header pages, then PROT_NONE up to the end and beyond */
	uint8_t *view_map;
	size_t view_map_len;
	uint64_t seed;
	bool asan;
};

/* What is running, for the fault handler: a category and a number. */
static const char *volatile crash_what;
static volatile uint64_t crash_n;
static struct sigaction crash_old_segv, crash_old_bus;

static void crash_report(int sig, siginfo_t *si, void *uc)
{
	char buf[200], num[24];
	size_t n = 0, k = 0;
	const char *parts[4] = { "test_gguf: fault while running ", crash_what ? crash_what : "?", " case ", num };
	uint64_t v = crash_n;
	do
		num[k++] = (char)('0' + v % 10);
	while ((v /= 10) && k < sizeof(num) - 1);
	for (size_t i = 0; i < k / 2; i++) {
		char t = num[i];
		num[i] = num[k - 1 - i];
		num[k - 1 - i] = t;
	}
	num[k] = '\0';
	for (int i = 0; i < 4; i++)
		for (const char *p = parts[i]; *p && n < sizeof(buf) - 2; p++)
			buf[n++] = *p;
	buf[n++] = '\n';
	if (write(2, buf, n) < 0)
		n = 0;
	/* returning re-runs the faulting access under the previous handler,
	 * which reports it (ASan) or dumps core */
	sigaction(sig, sig == SIGSEGV ? &crash_old_segv : &crash_old_bus, NULL);
}

/* CMocka installs its own fault handlers around each test (and restores the
 * old ones after it), so each model test installs this one in front. */
static void install_crash_handler(void)
{
	struct sigaction sa = { .sa_sigaction = crash_report, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &crash_old_segv);
	sigaction(SIGBUS, &sa, &crash_old_bus);
}

static uint64_t m_u64(const struct model *m, uint64_t at)
{
	uint64_t v;
	if (at > m->size || m->size - at < 8)
		fail_msg("model walk: u64 at %" PRIu64 " is past the end", at);
	memcpy(&v, m->file + at, 8);
	return v;
}

static uint32_t m_u32(const struct model *m, uint64_t at)
{
	uint32_t v;
	if (at > m->size || m->size - at < 4)
		fail_msg("model walk: u32 at %" PRIu64 " is past the end", at);
	memcpy(&v, m->file + at, 4);
	return v;
}

/* Skip one value of type t at p (the model is trusted, but checked); returns
 * the offset after it. */
static uint64_t m_value(struct model *m, uint64_t p, uint32_t t, int depth)
{
	if (tsize(t))
		return p + tsize(t);
	if (t == PF_GGUF_STRING)
		return p + 8 + m_u64(m, p);
	assert_int_equal(t, PF_GGUF_ARRAY);
	assert_true(depth < 8);
	uint32_t et = m_u32(m, p);
	uint64_t n = m_u64(m, p + 4);
	vpush(&m->fields, p);
	vpush(&m->fields, p + 4);
	p += 12;
	if (tsize(et)) {
		assert_true(n <= (m->size - p) / tsize(et));
		return p + n * tsize(et);
	}
	for (uint64_t i = 0; i < n; i++) {
		if (et == PF_GGUF_STRING)
			vpush(&m->elems, p);
		p = m_value(m, p, et, depth + 1);
		assert_true(p <= m->size);
	}
	return p;
}

/* Lay out the file without pf_gguf: every boundary and field offset. */
static void walk_model(struct model *m)
{
	assert_true(m->size >= 24);
	assert_memory_equal(m->file, "GGUF", 4);
	m->n_tensors = m_u64(m, 8);
	m->n_kv = m_u64(m, 16);
	assert_true(m->n_kv < 100000 && m->n_tensors < 100000);
	m->kvs = calloc(m->n_kv + 1, sizeof(*m->kvs));
	m->ts = calloc(m->n_tensors + 1, sizeof(*m->ts));
	assert_true(m->kvs && m->ts);
	for (uint64_t f = 0; f < 24; f += f < 8 ? 4 : 8) {
		vpush(&m->fields, f);
		vpush(&m->bounds, f);
	}
	m->alignment = PF_GGUF_DEFAULT_ALIGNMENT;
	uint64_t p = 24;
	for (uint64_t i = 0; i < m->n_kv; i++) {
		struct mkv *kv = &m->kvs[i];
		vpush(&m->bounds, p);
		vpush(&m->fields, p);
		kv->key_len = m_u64(m, p);
		assert_true(kv->key_len < 256 && p + 8 + kv->key_len <= m->size);
		kv->key = (const char *)m->file + p + 8;
		p += 8 + kv->key_len;
		vpush(&m->fields, p);
		kv->type = m_u32(m, p);
		p += 4;
		vpush(&m->bounds, p);
		kv->val_off = kv->type == PF_GGUF_ARRAY ? p + 12 : p;
		if (kv->key_len == 17 && !memcmp(kv->key, "general.alignment", 17) && kv->type == PF_GGUF_U32)
			m->alignment = m_u32(m, p);
		p = m_value(m, p, kv->type, 0);
	}
	for (uint64_t i = 0; i < m->n_tensors; i++) {
		struct mtensor *t = &m->ts[i];
		vpush(&m->bounds, p);
		vpush(&m->fields, p);
		t->name_len = m_u64(m, p);
		assert_true(t->name_len < 256);
		t->name = (const char *)m->file + p + 8;
		p += 8 + t->name_len;
		vpush(&m->fields, p);
		uint32_t n_dims = m_u32(m, p);
		assert_true(n_dims >= 1 && n_dims <= 4);
		p += 4;
		uint64_t ne[4] = { 1, 1, 1, 1 };
		for (uint32_t d = 0; d < n_dims; d++, p += 8) {
			vpush(&m->fields, p);
			ne[d] = m_u64(m, p);
		}
		vpush(&m->fields, p);
		uint32_t type = m_u32(m, p);
		p += 4;
		vpush(&m->fields, p);
		t->rel = m_u64(m, p);
		p += 8;
		size_t row = pf_dtype_row_bytes(type, ne[0]);
		assert_true(row > 0);
		t->size = row * ne[1] * ne[2] * ne[3];
	}
	m->info_end = p;
	m->data_off = (p + m->alignment - 1) / m->alignment * m->alignment;
	vpush(&m->bounds, m->info_end);
	vpush(&m->bounds, m->data_off);
	for (uint64_t i = 0; i < m->n_tensors; i++) {
		uint64_t a = m->data_off + m->ts[i].rel;
		vpush(&m->bounds, a);
		vpush(&m->bounds, a + m->ts[i].size);
		if (a + m->ts[i].size > m->data_end)
			m->data_end = a + m->ts[i].size;
	}
	assert_true(m->data_end <= m->size);
}

static void map_guards(struct model *m)
{
	long ps = sysconf(_SC_PAGESIZE);
	assert_true(ps > 0);
	m->page = (size_t)ps;
	m->slide_len = (m->info_end + m->page - 1) / m->page * m->page;

	m->slide_map = mmap(NULL, m->slide_len + m->page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(m->slide_map != MAP_FAILED);
	assert_int_equal(mprotect(m->slide_map, m->slide_len, PROT_READ | PROT_WRITE), 0);

	m->view_map_len = (m->size + m->page - 1) / m->page * m->page + m->page;
	m->view_map = mmap(NULL, m->view_map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(m->view_map != MAP_FAILED);
	assert_int_equal(mprotect(m->view_map, m->slide_len, PROT_READ | PROT_WRITE), 0);
	memcpy(m->view_map, m->file, m->slide_len);
	assert_int_equal(mprotect(m->view_map, m->slide_len, PROT_READ), 0);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Load and walk the model once; skips the calling test when it is absent. */
static struct model *model_get(void **state)
{
	struct model *m = *state;
	if (m->loaded) {
		install_crash_handler();
		return m;
	}
	if (m->absent)
		skip();
	m->path = getenv("PF_MODEL");
	if (!m->path || !*m->path)
		m->path = DEFAULT_MODEL;
	int fd = open(m->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* by hand a skip; under make test (PF_REQUIRE_MODEL=1) a failure */
		if (tu_env_flag("PF_REQUIRE_MODEL"))
			fail_msg("%s: %s and PF_REQUIRE_MODEL=1: `make model` fetches it", m->path, strerror(errno));
		printf("# %s: %s: the hostile-input tests on the real model are skipped (make model)\n",
		       m->path, strerror(errno));
		m->absent = true;
		skip();
	}
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	m->size = (uint64_t)st.st_size;
	m->file = malloc(m->size);
	assert_non_null(m->file);
	for (uint64_t got = 0; got < m->size;) {
		ssize_t n = read(fd, m->file + got, m->size - got);
		assert_true(n > 0);
		got += (uint64_t)n;
	}
	close(fd);
	walk_model(m);
	map_guards(m);

	const char *s = getenv("PF_GGUF_SEED");
	m->seed = s && *s ? strtoull(s, NULL, 0) : UINT64_C(0x5eed6a9f0c0ffee1);
	s = getenv("PF_ASAN");
	m->asan = s && !strcmp(s, "1");

	install_crash_handler();

	printf("# model %s: %" PRIu64 " bytes, %" PRIu64 " kv, %" PRIu64 " tensors, tensor infos end at %" PRIu64
	       ", data at %" PRIu64 "; seed 0x%016" PRIx64 " (PF_GGUF_SEED)\n",
	       m->path, m->size, m->n_kv, m->n_tensors, m->info_end, m->data_off, m->seed);
	m->loaded = true;
	return m;
}

static int model_group_setup(void **state)
{
	*state = calloc(1, sizeof(struct model));
	return *state ? 0 : -1;
}

static int model_group_teardown(void **state)
{
	struct model *m = *state;
	if (!m) /* the setup failed: CMocka calls the group teardown anyway */
		return 0;
	if (m->slide_map)
		munmap(m->slide_map, m->slide_len + m->page);
	if (m->view_map)
		munmap(m->view_map, m->view_map_len);
	free(m->file);
	free(m->kvs);
	free(m->ts);
	free(m->bounds.v);
	free(m->fields.v);
	free(m->elems.v);
	free(m);
	return 0;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t *s, uint64_t n)
{
	return n ? splitmix64(s) % n : 0;
}

/* Compare a successful parse with what the walker saw. */
static void check_against_walk(const struct model *m, const struct pf_gguf *g)
{
	char key[256];
	assert_int_equal(g->n_kv, m->n_kv);
	assert_int_equal(g->n_tensors, m->n_tensors);
	assert_int_equal(g->alignment, m->alignment);
	assert_int_equal(g->data_off, m->data_off);
	for (uint64_t i = 0; i < m->n_kv; i++) {
		memcpy(key, m->kvs[i].key, m->kvs[i].key_len);
		key[m->kvs[i].key_len] = '\0';
		const struct pf_gguf_kv *kv = pf_gguf_find(g, key);
		if (!kv)
			fail_msg("key '%s' not found", key);
		assert_int_equal(kv->type, m->kvs[i].type);
		assert_int_equal(kv->off, m->kvs[i].val_off);
	}
	for (uint64_t i = 0; i < m->n_tensors; i++) {
		memcpy(key, m->ts[i].name, m->ts[i].name_len);
		key[m->ts[i].name_len] = '\0';
		const struct pf_gguf_tensor *t = pf_gguf_find_tensor(g, key);
		if (!t)
			fail_msg("tensor '%s' not found", key);
		assert_int_equal(t->offset, m->data_off + m->ts[i].rel);
		assert_int_equal(t->size, m->ts[i].size);
	}
}

static void test_model_parse(void **state)
{
	struct model *m = model_get(state);
	struct pf_gguf *g = NULL;
	char err[512], buf[512];
	const char *bad;

	double t0 = now_s();
	int runs = 20;
	for (int i = 0; i < runs; i++) {
		assert_int_equal(pf_gguf_open_mem(m->file, m->size, MNAME, &g, err, sizeof(err)), 0);
		if (i + 1 < runs)
			pf_gguf_close(g);
	}
	double per = (now_s() - t0) / runs;
	check_against_walk(m, g);
	bad = gguf_check_invariants(g, m->file, m->size, true, buf, sizeof(buf));
	if (bad)
		fail_msg("%s", bad);
	/* the model's own promises, as the loader will rely on them */
	uint32_t u32;
	struct pf_gguf_str s;
	assert_int_equal(pf_gguf_get_u32(g, "llama.block_count", &u32), 0);
	assert_int_equal(u32, 30);
	assert_int_equal(pf_gguf_get_str(g, "general.architecture", &s), 0);
	assert_int_equal(s.len, 5);
	assert_memory_equal(s.ptr, "llama", 5);
	const struct pf_gguf_kv *tok = pf_gguf_find(g, "tokenizer.ggml.tokens");
	assert_non_null(tok);
	assert_int_equal(tok->arr_n, 49152);
	assert_int_equal(pf_gguf_arr_str(g, tok, 0, &s), 0);
	assert_int_equal(s.len, 13);
	assert_memory_equal(s.ptr, "<|endoftext|>", 13);
	pf_gguf_close(g);

	/* the same through the file and its mapping */
	assert_int_equal(pf_gguf_open(m->path, &g, err, sizeof(err)), 0);
	assert_true(g->mapped);
	check_against_walk(m, g);
	bad = gguf_check_invariants(g, g->base, m->size, true, buf, sizeof(buf));
	if (bad)
		fail_msg("%s", bad);
	pf_gguf_close(g);

	/* and from the view whose data section is unreadable: open() must not
	 * touch tensor data, which the truncation tests rely on */
	crash_what = "full view";
	crash_n = m->size;
	assert_int_equal(pf_gguf_open_mem(m->view_map, m->size, MNAME, &g, err, sizeof(err)), 0);
	check_against_walk(m, g);
	pf_gguf_close(g);
	printf("# full parse of the model: %.2f ms\n", per * 1e3);
}

/*
 * Parse the first L bytes of the model, presented so that the byte after
 * them is unreadable, and demand the verdict: parsed when L covers all the
 * tensor data; otherwise -EINVAL with a message that starts with the name and
 * states the length it ran into (and, once the data section is reached, the
 * data that runs past it).
 */
static void check_trunc(const struct model *m, const uint8_t *p, uint64_t L, bool data_readable, const char *what)
{
	struct pf_gguf *g = NULL;
	char err[512], want[96], buf[512];

	crash_what = what;
	crash_n = L;
	int r = pf_gguf_open_mem(p, L, MNAME, &g, err, sizeof(err));
	if (L >= m->data_end) {
		if (r)
			fail_msg("%s: length %" PRIu64 " refused: %s", what, L, err);
		const char *bad = gguf_check_invariants(g, p, L, data_readable, buf, sizeof(buf));
		if (bad)
			fail_msg("%s: length %" PRIu64 ": %s", what, L, bad);
		pf_gguf_close(g);
		return;
	}
	if (r != -EINVAL)
		fail_msg("%s: length %" PRIu64 ": expected -EINVAL, got %d (%s)", what, L, r, r ? err : "parsed");
	if (g)
		fail_msg("%s: length %" PRIu64 ": object returned on failure", what, L);
	if (strncmp(err, MNAME ": ", strlen(MNAME ": ")) || strlen(err) <= strlen(MNAME ": "))
		fail_msg("%s: length %" PRIu64 ": bad message '%s'", what, L, err);
	if (L >= m->data_off && m->n_tensors) {
		snprintf(want, sizeof(want), "runs past end of file (size %" PRIu64 ")", L);
		if (!strstr(err, "data [offset ") || !strstr(err, want))
			fail_msg("%s: length %" PRIu64 ": message '%s' lacks '%s'", what, L, err, want);
		return;
	}
	static const char *const forms[] = { "file ends at %" PRIu64, "(size %" PRIu64 ")", "a file of %" PRIu64 " bytes" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(want, sizeof(want), forms[i], L);
		if (strstr(err, want))
			return;
	}
	fail_msg("%s: length %" PRIu64 ": message '%s' does not state the length", what, L, err);
}

/* The first L bytes of the model, ending right before an unreadable page. */
static void check_trunc_guarded(struct model *m, uint64_t L, const char *what)
{
	if (L <= m->slide_len) {
		uint8_t *p = m->slide_map + m->slide_len - L;
		memcpy(p, m->file, L);
		check_trunc(m, p, L, true, what);
	} else {
		assert_true(L <= m->size);
		check_trunc(m, m->view_map, L, false, what);
	}
}

/* (a) every length from 0 to 64 KiB */
static void test_model_truncate_prefix(void **state)
{
	struct model *m = model_get(state);
	uint64_t top = m->size < 65536 ? m->size : 65536;
	double t0 = now_s();
	for (uint64_t L = 0; L <= top; L++) {
		uint8_t *p = malloc(L ? L : 1);
		assert_non_null(p);
		memcpy(p, m->file, L);
		check_trunc(m, p, L, true, "prefix malloc");
		free(p);
		check_trunc_guarded(m, L, "prefix guard");
	}
	printf("# truncations 0..%" PRIu64 ": %" PRIu64 " lengths x 2 presentations, %.2f s\n", top, top + 1, now_s() - t0);
}

/* (b) every boundary the walker found, +-8 bytes */
static void test_model_truncate_boundaries(void **state)
{
	struct model *m = model_get(state);
	struct u64vec ls = { 0 };
	for (size_t i = 0; i < m->bounds.n; i++)
		for (int d = -8; d <= 8; d++) {
			uint64_t b = m->bounds.v[i];
			if ((d < 0 && b < (uint64_t)-d) || b + (uint64_t)d > m->size)
				continue;
			vpush(&ls, b + (uint64_t)d);
		}
	qsort(ls.v, ls.n, sizeof(*ls.v), cmp_u64);
	size_t n = 0, in_header = 0;
	for (size_t i = 0; i < ls.n; i++)
		if (!n || ls.v[i] != ls.v[n - 1])
			ls.v[n++] = ls.v[i];
	double t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		in_header += ls.v[i] <= m->slide_len;
		check_trunc_guarded(m, ls.v[i], "boundary");
	}
	printf("# truncations at %zu boundaries +-8: %zu lengths (%zu in the header pages), %.2f s\n",
	       m->bounds.n, n, in_header, now_s() - t0);
	free(ls.v);
}

/* (c) seeded random lengths: most over the whole file, a quarter inside the
 * header pages where every byte matters (half as many under PF_ASAN=1) */
static void test_model_truncate_random(void **state)
{
	struct model *m = model_get(state);
	uint64_t rng = m->seed ^ 0xc;
	unsigned n = m->asan ? 10000 : 20000, in_header = 0;
	double t0 = now_s();
	for (unsigned i = 0; i < n; i++) {
		uint64_t L = i % 4 == 3 ? rnd_below(&rng, m->slide_len + 1) : rnd_below(&rng, m->size + 1);
		in_header += L <= m->slide_len;
		check_trunc_guarded(m, L, "random length");
	}
	printf("# truncations at random lengths: %u (%u in the header pages), %.2f s\n", n, in_header, now_s() - t0);
}

/* (d) seeded random byte mutations, in place in the heap copy, undone after
 * each: 1-8 bytes flipped, zeroed, set or randomised, clustered around a
 * structural field (a count, length, type, dimension or offset), a string
 * element's length or any byte of the header; and some in the tensor data,
 * which must not change the verdict (4/5 as many under PF_ASAN=1) */
static void test_model_mutations(void **state)
{
	struct model *m = model_get(state);
	uint64_t rng = m->seed ^ 0xd;
	unsigned n_hdr = m->asan ? 4000 : 5000, n_data = m->asan ? 400 : 500, parsed = 0, refused = 0;
	char err[512], buf[512];
	double t0 = now_s();

	for (unsigned i = 0; i < n_hdr + n_data; i++) {
		bool data = i >= n_hdr;
		uint64_t pos[8], center;
		uint8_t old[8];
		unsigned k = 1 + (unsigned)rnd_below(&rng, 8);
		unsigned pick = (unsigned)rnd_below(&rng, 100);

		if (data)
			center = m->data_off + rnd_below(&rng, m->size - m->data_off);
		else if (pick < 40)
			center = m->fields.v[rnd_below(&rng, m->fields.n)];
		else if (pick < 55)
			center = m->elems.v[rnd_below(&rng, m->elems.n)];
		else
			center = rnd_below(&rng, m->info_end);
		for (unsigned j = 0; j < k; j++) {
			/* clustered around the centre, with a stray byte now and then */
			uint64_t p = j == 0 || rnd_below(&rng, 4) ? center + rnd_below(&rng, 16)
				     : data ? m->data_off + rnd_below(&rng, m->size - m->data_off)
					    : rnd_below(&rng, m->info_end);
			pos[j] = p < m->size ? p : m->size - 1;
			old[j] = m->file[pos[j]];
			switch (rnd_below(&rng, 4)) {
			case 0: m->file[pos[j]] ^= (uint8_t)(1u << rnd_below(&rng, 8)); break;
			case 1: m->file[pos[j]] = 0x00; break;
			case 2: m->file[pos[j]] = 0xff; break;
			default: m->file[pos[j]] = (uint8_t)splitmix64(&rng); break;
			}
		}
		struct pf_gguf *g = NULL;
		crash_what = "mutation";
		crash_n = i;
		int r = pf_gguf_open_mem(m->file, m->size, MNAME, &g, err, sizeof(err));
		if (r == 0) {
			parsed++;
			const char *bad = gguf_check_invariants(g, m->file, m->size, true, buf, sizeof(buf));
			if (bad)
				fail_msg("mutation %u: %s", i, bad);
			/* tensor data is not the reader's business: nothing changes */
			if (data && (g->data_off != m->data_off || g->n_tensors != m->n_tensors || g->n_kv != m->n_kv))
				fail_msg("mutation %u in the data section changed the layout", i);
			pf_gguf_close(g);
		} else {
			refused++;
			if (data)
				fail_msg("mutation %u in the data section refused: %s", i, err);
			if ((r != -EINVAL && r != -ENOMEM) || g)
				fail_msg("mutation %u: returned %d", i, r);
			if (strncmp(err, MNAME ": ", strlen(MNAME ": ")) || strlen(err) <= strlen(MNAME ": "))
				fail_msg("mutation %u: bad message '%s'", i, err);
		}
		for (unsigned j = k; j-- > 0;)
			m->file[pos[j]] = old[j];
	}
	printf("# mutations: %u in the header, %u in the data; %u parsed, %u refused, %.2f s\n",
	       n_hdr, n_data, parsed, refused, now_s() - t0);
}

int main(void)
{
	const struct CMUnitTest small[] = {
		cmocka_unit_test(test_roundtrip_v2_default_alignment),
		cmocka_unit_test(test_roundtrip_v3_default_alignment),
		cmocka_unit_test(test_roundtrip_v3_alignment_64),
		cmocka_unit_test(test_roundtrip_v2_alignment_32_explicit),
		cmocka_unit_test(test_roundtrip_v3_alignment_1),
		cmocka_unit_test(test_roundtrip_v3_alignment_1mib),
		cmocka_unit_test(test_empty_files),
		cmocka_unit_test(test_getters),
		cmocka_unit_test(test_reject_header),
		cmocka_unit_test(test_reject_strings),
		cmocka_unit_test(test_reject_types),
		cmocka_unit_test(test_reject_duplicates),
		cmocka_unit_test(test_reject_tensor_shapes),
		cmocka_unit_test(test_reject_tensor_data),
		cmocka_unit_test(test_reject_alignment),
		cmocka_unit_test(test_message_escapes_names),
		cmocka_unit_test(test_error_buffer),
		cmocka_unit_test(test_open_path),
	};
	const struct CMUnitTest model[] = {
		cmocka_unit_test(test_model_parse),
		cmocka_unit_test(test_model_truncate_prefix),
		cmocka_unit_test(test_model_truncate_boundaries),
		cmocka_unit_test(test_model_truncate_random),
		cmocka_unit_test(test_model_mutations),
	};
	struct tu_run r = { 0, 0 };
	tu_run_group(&r, "gguf", small, TU_NCASES(small), NULL, NULL);
	tu_run_group(&r, "gguf_model", model, TU_NCASES(model), model_group_setup, model_group_teardown);
	return tu_finish(&r, "test_gguf");
}
