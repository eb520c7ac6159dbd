/*
 * pinfer-gguf — print the metadata and tensor table of a GGUF model file.
 *
 * The first thing to run on a new model: it shows what the loader will see
 * (architecture, sizes, tokenizer, tensor types and shapes) or, for a broken
 * file, the exact field and offset that is wrong.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dtype.h"
#include "runtime/model/gguf.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinfer-gguf [options] [--model] PATH\n"
		"\n"
		"Print the metadata and tensor table of a GGUF model file.\n"
		"\n"
		"  -m, --model PATH     the GGUF file (may also be given as the only argument)\n"
		"  -a, --arrays N       print up to N elements of each array value (default 8)\n"
		"  -T, --no-tensors     omit the tensor table\n"
		"  -h, --help           this text\n"
		"\n"
		"Exit status: 0 when the file parses, 1 when it is malformed, 2 on usage errors.\n");
}

/* Print a byte string with non-printing bytes escaped, at most `max` bytes. */
static void put_str(const char *p, uint64_t len, uint64_t max)
{
	putchar('"');
	for (uint64_t i = 0; i < len && i < max; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch == '\n')
			fputs("\\n", stdout);
		else if (ch == '\t')
			fputs("\\t", stdout);
		else if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			printf("\\x%02x", ch);
		else
			putchar(ch);
	}
	putchar('"');
	if (len > max)
		printf("... (%" PRIu64 " bytes)", len);
}

static void put_scalar(const uint8_t *p, uint32_t t)
{
	union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
		float f32; uint64_t u64; int64_t i64; double f64; } v;
	memcpy(&v, p, pf_gguf_vtype_size(t));
	switch (t) {
	case PF_GGUF_U8: printf("%" PRIu8, v.u8); break;
	case PF_GGUF_I8: printf("%" PRId8, v.i8); break;
	case PF_GGUF_U16: printf("%" PRIu16, v.u16); break;
	case PF_GGUF_I16: printf("%" PRId16, v.i16); break;
	case PF_GGUF_U32: printf("%" PRIu32, v.u32); break;
	case PF_GGUF_I32: printf("%" PRId32, v.i32); break;
	case PF_GGUF_F32: printf("%g", (double)v.f32); break;
	case PF_GGUF_BOOL: printf("%s", v.u8 ? "true" : "false"); break;
	case PF_GGUF_U64: printf("%" PRIu64, v.u64); break;
	case PF_GGUF_I64: printf("%" PRId64, v.i64); break;
	case PF_GGUF_F64: printf("%g", v.f64); break;
	}
}

static void put_kv(const struct pf_gguf *g, const struct pf_gguf_kv *kv, uint64_t max_arr)
{
	printf("  %-44s %-8s ", kv->key, pf_gguf_vtype_name(kv->type));
	if (kv->type == PF_GGUF_STRING) {
		uint64_t len;
		memcpy(&len, g->base + kv->off, 8);
		put_str((const char *)g->base + kv->off + 8, len, 200);
	} else if (kv->type == PF_GGUF_ARRAY) {
		printf("[%" PRIu64 " x %s]", kv->arr_n, pf_gguf_vtype_name(kv->arr_type));
		size_t sz = pf_gguf_vtype_size(kv->arr_type);
		for (uint64_t i = 0; i < kv->arr_n && i < max_arr; i++) {
			fputs(i ? ", " : " ", stdout);
			if (kv->arr_type == PF_GGUF_STRING) {
				struct pf_gguf_str s;
				pf_gguf_arr_str(g, kv, i, &s);
				put_str(s.ptr, s.len, 40);
			} else if (sz) {
				put_scalar(g->base + kv->off + i * sz, kv->arr_type);
			} else {
				fputs("[...]", stdout);
				break;
			}
		}
		if (kv->arr_n > max_arr)
			fputs(", ...", stdout);
	} else {
		put_scalar(g->base + kv->off, kv->type);
	}
	putchar('\n');
}

static void human(double bytes, char *buf, size_t n)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;
	while (bytes >= 1024 && i < 4) {
		bytes /= 1024;
		i++;
	}
	snprintf(buf, n, "%.2f %s", bytes, u[i]);
}

static void put_summary(const struct pf_gguf *g)
{
	struct pf_gguf_str arch = { "?", 1 }, name = { "?", 1 };
	char key[128], hb[32];
	uint64_t params = 0, bytes = 0, per_type[PF_DT_COUNT] = { 0 };

	pf_gguf_get_str(g, "general.architecture", &arch);
	pf_gguf_get_str(g, "general.name", &name);
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		params += g->tensors[i].n_elems;
		bytes += g->tensors[i].size;
		per_type[g->tensors[i].type] += g->tensors[i].n_elems;
	}
	human((double)bytes, hb, sizeof(hb));
	printf("model:        %.*s\n", (int)name.len, name.ptr);
	printf("architecture: %.*s\n", (int)arch.len, arch.ptr);
	static const char *const fields[] = {
		"context_length", "embedding_length", "block_count", "feed_forward_length",
		"attention.head_count", "attention.head_count_kv", "rope.freq_base",
		"attention.layer_norm_rms_epsilon", "vocab_size",
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		snprintf(key, sizeof(key), "%.*s.%s", (int)arch.len, arch.ptr, fields[i]);
		const struct pf_gguf_kv *kv = pf_gguf_find(g, key);
		if (!kv || !pf_gguf_vtype_size(kv->type))
			continue;
		printf("  %-34s ", fields[i]);
		put_scalar(g->base + kv->off, kv->type);
		putchar('\n');
	}
	printf("parameters:   %" PRIu64 " (%.1f M), %s of tensor data\n", params, (double)params / 1e6, hb);
	printf("weight types:");
	for (uint32_t t = 0; t < PF_DT_COUNT; t++)
		if (per_type[t])
			printf(" %s %.1f%%", pf_dtype_name(t), 100.0 * (double)per_type[t] / (double)(params ? params : 1));
	putchar('\n');
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "arrays", required_argument, NULL, 'a' },
		{ "no-tensors", no_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = NULL;
	uint64_t max_arr = 8;
	int show_tensors = 1, c;
	char err[512];
	struct pf_gguf *g = NULL;

	while ((c = getopt_long(argc, argv, "m:a:Th", opts, NULL)) != -1) {
		switch (c) {
		case 'm': path = optarg; break;
		case 'a': {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg) {
				fprintf(stderr, "pinfer-gguf: --arrays wants a count, got '%s'\n", optarg);
				return 2;
			}
			max_arr = v;
			break;
		}
		case 'T': show_tensors = 0; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!path && optind < argc)
		path = argv[optind++];
	if (!path || optind < argc) {
		usage(stderr);
		return 2;
	}
	int r = pf_gguf_open(path, &g, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "pinfer-gguf: %s\n", err);
		return 1;
	}
	printf("file:         %s (GGUF v%" PRIu32 ", %" PRIu64 " bytes, alignment %" PRIu32 ")\n",
	       path, g->version, g->size, g->alignment);
	put_summary(g);
	printf("\nmetadata (%" PRIu64 " entries):\n", g->n_kv);
	for (uint64_t i = 0; i < g->n_kv; i++)
		put_kv(g, &g->kv[i], max_arr);
	if (show_tensors) {
		printf("\ntensors (%" PRIu64 "):\n", g->n_tensors);
		printf("  %-32s %-6s %-24s %12s %12s\n", "name", "type", "shape", "offset", "bytes");
		for (uint64_t i = 0; i < g->n_tensors; i++) {
			const struct pf_gguf_tensor *t = &g->tensors[i];
			char shape[64];
			int n = 0;
			for (uint32_t d = 0; d < t->n_dims; d++)
				n += snprintf(shape + n, sizeof(shape) - (size_t)n, "%s%" PRIu64, d ? " x " : "", t->ne[d]);
			printf("  %-32s %-6s %-24s %12" PRIu64 " %12" PRIu64 "\n", t->name, pf_dtype_name(t->type),
			       shape, t->offset, t->size);
		}
	}
	pf_gguf_close(g);
	return 0;
}
