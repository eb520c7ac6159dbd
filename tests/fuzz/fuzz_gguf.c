/*
 * fuzz_gguf.c — libFuzzer harness for the GGUF reader (runtime/model/gguf.c).
 *
 * Each input is copied into a heap block of exactly its size (the object
 * points into it, and ASan guards its end) and parsed.  A refusal must be
 * -EINVAL or -ENOMEM with a one-line message that starts with the name and no
 * object; a success must keep every promise of gguf.h, which
 * tests/fuzz/gguf_check.h verifies by walking all keys, every getter on each,
 * every element of every string array and every tensor's data.  Anything
 * else aborts, which libFuzzer reports as a crash with the input saved.
 *
 * Built and run by tests/fuzz/run.sh (make test-fuzz).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model/gguf.h"
#include "tests/fuzz/gguf_check.h"

#define FUZZ_NAME "fuzz.gguf"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(int r, const struct pf_gguf *g, const char *err)
{
	if ((r != -EINVAL && r != -ENOMEM) || g) {
		fprintf(stderr, "refusal returned %d with object %p\n", r, (const void *)g);
		abort();
	}
	if (strncmp(err, FUZZ_NAME ": ", strlen(FUZZ_NAME ": ")) || strlen(err) <= strlen(FUZZ_NAME ": ")) {
		fprintf(stderr, "refusal message does not start with the name: '%s'\n", err);
		abort();
	}
	for (const char *p = err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			fprintf(stderr, "refusal message has control byte 0x%02x\n", (unsigned char)*p);
			abort();
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	struct pf_gguf *g = NULL;
	char err[512], buf[512];

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	int r = pf_gguf_open_mem(copy, size, FUZZ_NAME, &g, err, sizeof(err));
	if (r == 0) {
		const char *bad = gguf_check_invariants(g, copy, size, true, buf, sizeof(buf));
		if (bad) {
			fprintf(stderr, "invariant broken after a successful parse: %s\n", bad);
			abort();
		}
		/* lookups of names that may be absent, as the loader does */
		uint32_t u32;
		struct pf_gguf_str s;
		int a = pf_gguf_get_u32(g, "general.alignment", &u32);
		int b = pf_gguf_get_str(g, "general.architecture", &s);
		if ((a && a != -ENOENT && a != -EINVAL) || (b && b != -ENOENT && b != -EINVAL))
			abort();
		(void)pf_gguf_find_tensor(g, "token_embd.weight");
		pf_gguf_close(g);
	} else {
		check_refusal(r, g, err);
	}
	/* a tiny message buffer must be just as safe */
	g = NULL;
	r = pf_gguf_open_mem(copy, size, FUZZ_NAME, &g, err, 3);
	if (r == 0)
		pf_gguf_close(g);
	else if (strlen(err) > 2)
		abort();
	free(copy);
	return 0;
}
