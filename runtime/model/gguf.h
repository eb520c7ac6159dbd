/*
 * gguf.h — a hardened reader for GGUF model files (versions 2 and 3).
 *
 * The file is mapped read-only and parsed once, front to back, by
 * pf_gguf_open().  Every count, length, dimension and offset is checked
 * against the bytes that remain and against integer overflow before it is
 * used, so a truncated or hostile file yields -EINVAL (or -ENOMEM for counts
 * that are valid but too large to index) and a message naming the field and
 * its file offset; it never reads outside the mapping.
 *
 * After a successful open the object is immutable: metadata values and tensor
 * data are read straight from the mapping through the accessors below, which
 * only hand out ranges already validated.  Key and tensor names are copied
 * into NUL-terminated strings (names containing a NUL byte are rejected).
 *
 * Invariants after open:
 *   - keys are unique, tensor names are unique;
 *   - every tensor's data lies inside the data section, starts at a multiple
 *     of general.alignment, has ne[0] a whole number of blocks of its type,
 *     and no two tensors' data overlap.
 *
 * Multi-byte values are little-endian on disk; we only support little-endian
 * hosts (x86-64), which a static_assert in gguf.c states.
 */
#ifndef PF_GGUF_H
#define PF_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pf_gguf_vtype {
	PF_GGUF_U8 = 0,
	PF_GGUF_I8 = 1,
	PF_GGUF_U16 = 2,
	PF_GGUF_I16 = 3,
	PF_GGUF_U32 = 4,
	PF_GGUF_I32 = 5,
	PF_GGUF_F32 = 6,
	PF_GGUF_BOOL = 7,
	PF_GGUF_STRING = 8,
	PF_GGUF_ARRAY = 9,
	PF_GGUF_U64 = 10,
	PF_GGUF_I64 = 11,
	PF_GGUF_F64 = 12,
	PF_GGUF_VTYPE_COUNT
};

#define PF_GGUF_MAX_DIMS 4
#define PF_GGUF_DEFAULT_ALIGNMENT 32

/* A byte string inside the mapping: not NUL-terminated. */
struct pf_gguf_str {
	const char *ptr;
	uint64_t len;
};

struct pf_gguf_kv {
	const char *key;     /* NUL-terminated copy */
	uint32_t type;       /* enum pf_gguf_vtype */
	uint32_t arr_type;   /* element type when type == ARRAY */
	uint64_t arr_n;      /* element count when type == ARRAY */
	uint64_t off;        /* file offset of the value (of the first element for arrays) */
	uint64_t *str_offs;  /* for arrays of strings: file offset of each element's length */
};

struct pf_gguf_tensor {
	const char *name;    /* NUL-terminated copy */
	uint32_t type;       /* enum pf_dtype (ggml type id) */
	uint32_t n_dims;
	uint64_t ne[PF_GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
	uint64_t n_elems;
	uint64_t offset;     /* absolute file offset of the data */
	uint64_t size;       /* bytes of data */
	const void *data;    /* offset into the mapping */
};

struct pf_gguf {
	const char *path;    /* name used in messages */
	const uint8_t *base; /* mapping (or caller's buffer) */
	uint64_t size;
	bool mapped;         /* base came from mmap and is unmapped on close */
	uint32_t version;
	uint32_t alignment;
	uint64_t data_off;   /* start of the tensor data section */
	uint64_t n_kv;
	struct pf_gguf_kv *kv;
	uint64_t n_tensors;
	struct pf_gguf_tensor *tensors;
	char *names;         /* arena holding every key and tensor name */
};

/*
 * Map and parse the file at `path`.  On success returns 0 and *ret owns the
 * mapping (free with pf_gguf_close).  On failure returns a negative errno
 * (-ENOENT/-EACCES from open, -EINVAL for a malformed file or one that is not
 * a regular file, -ENOMEM), leaves *ret alone and, if `err` is non-NULL,
 * writes a one-line message of at most `errlen` bytes that starts with the
 * file name (names from the file appear with control bytes escaped as \xNN).
 */
int pf_gguf_open(const char *path, struct pf_gguf **ret, char *err, size_t errlen);

/*
 * Parse `size` bytes at `data` (not copied: they must outlive the object).
 * `name` (NULL: "<memory>") is used in messages and copied into the object
 * as its `path`.  Same returns as pf_gguf_open().  This is the entry point
 * of the fuzz harness and the hostile-input tests.
 */
int pf_gguf_open_mem(const void *data, size_t size, const char *name,
		     struct pf_gguf **ret, char *err, size_t errlen);

/* Unmap and free.  Accepts NULL. */
void pf_gguf_close(struct pf_gguf *g);

/* The key-value entry named `key`, or NULL. */
const struct pf_gguf_kv *pf_gguf_find(const struct pf_gguf *g, const char *key);

/* The tensor named `name`, or NULL. */
const struct pf_gguf_tensor *pf_gguf_find_tensor(const struct pf_gguf *g, const char *name);

/*
 * Typed getters.  Each returns 0 and stores the value, -ENOENT when the key
 * is absent, or -EINVAL when its type does not convert (integers convert
 * between widths only when the value fits; a float getter accepts F32/F64).
 */
int pf_gguf_get_u64(const struct pf_gguf *g, const char *key, uint64_t *ret);
int pf_gguf_get_u32(const struct pf_gguf *g, const char *key, uint32_t *ret);
int pf_gguf_get_i64(const struct pf_gguf *g, const char *key, int64_t *ret);
int pf_gguf_get_f32(const struct pf_gguf *g, const char *key, float *ret);
int pf_gguf_get_bool(const struct pf_gguf *g, const char *key, bool *ret);
int pf_gguf_get_str(const struct pf_gguf *g, const char *key, struct pf_gguf_str *ret);

/*
 * Element `i` of an array entry.  pf_gguf_arr_str: array of strings.
 * pf_gguf_arr_f32 / pf_gguf_arr_i64: numeric arrays of any numeric element
 * type (converted; bool is not numeric, as for the scalar getters;
 * pf_gguf_arr_i64 refuses float elements and u64 values above INT64_MAX).
 * Return 0, or -EINVAL for a wrong type, a value that does not convert, or
 * i >= arr_n.  Arrays of arrays are described (arr_type, arr_n) but not
 * indexed.
 */
int pf_gguf_arr_str(const struct pf_gguf *g, const struct pf_gguf_kv *kv, uint64_t i,
		    struct pf_gguf_str *ret);
int pf_gguf_arr_f32(const struct pf_gguf *g, const struct pf_gguf_kv *kv, uint64_t i, float *ret);
int pf_gguf_arr_i64(const struct pf_gguf *g, const struct pf_gguf_kv *kv, uint64_t i, int64_t *ret);

/* "u32", "string", "array"…; "?" for an unknown id.  Cannot fail. */
const char *pf_gguf_vtype_name(uint32_t t);

/* Bytes of one scalar of type `t`, or 0 for STRING/ARRAY/unknown. */
size_t pf_gguf_vtype_size(uint32_t t);

#endif
