/*
 * fuzz_statefile.c — libFuzzer harness for the request state file reader.
 *
 * The input is a whole state file as a crash, a disk error or an attacker
 * with write access to the state directory might leave it.  pf_state_parse
 * must refuse it with a message or return records whose counts and arrays
 * are what they claim (ASan checks every element is readable), and what it
 * accepts must encode back to exactly the same bytes — never crash, never
 * read outside the buffer, never allocate from an unchecked count.
 *
 * Random bytes rarely pass the checksum, so every input is parsed twice: as
 * it is, and resealed (header made consistent, a valid checksum computed
 * over it) so the fuzzer reaches the record parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "runtime/daemon/statefile.h"

#define FP 0x5eed5eed5eed5eedULL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parse b[0..size) and check what comes back. */
static void check(const uint8_t *b, size_t size)
{
	struct pf_state_record *recs;
	size_t n;
	char err[256];
	int r = pf_state_parse(b, size, FP, &recs, &n, err, sizeof(err));
	if (r == 0) {
		uint64_t sum = 0;
		for (size_t i = 0; i < n; i++) {
			const struct pf_engine_snapshot *s = &recs[i].seq;
			const struct pf_sampling_params *sp = &s->params.sampling;
			if (s->n_prompt < 1 || s->n_generated < 0 || sp->n_stop_ids > 16 || sp->n_stop_strings > 8)
				abort();
			for (int32_t k = 0; k < s->n_prompt; k++)
				sum += (uint32_t)s->prompt[k];
			for (int32_t k = 0; k < s->n_generated; k++)
				sum += (uint32_t)s->generated[k];
			if (sp->logprobs && s->n_generated) {
				if (!s->logprobs || (sp->top_logprobs && !s->top))
					abort();
				for (int32_t k = 0; k < s->n_generated; k++)
					sum += (uint64_t)(s->logprobs[k] != 0);
				for (int64_t k = 0; k < (int64_t)s->n_generated * sp->top_logprobs; k++)
					sum += (uint32_t)s->top[k].token;
			}
		}
		/* what was accepted is exactly what the writer produces from
		 * the records (bytes 48..56, the write time, aside) */
		void *again;
		size_t len;
		if (pf_state_encode(recs, n, FP, &again, &len, err, sizeof(err)) != 0 || len != size ||
		    memcmp((uint8_t *)again + 16, b + 16, 32) || memcmp((uint8_t *)again + 56, b + 56, size - 56))
			abort();
		free(again);
		(void)sum;
	} else if (!err[0] || recs || n) {
		abort(); /* every refusal says why and returns nothing */
	}
	pf_state_records_free(recs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size heap copy so ASan sees any overread */
	uint8_t *b = malloc(size ? size : 1);
	if (!b)
		return 0;
	if (size)
		memcpy(b, data, size);
	check(b, size);
	if (size >= 64) {
		/* again with a self-consistent header: our version, the length,
		 * the model, and a checksum over the rest */
		b[16] = 1, b[17] = b[18] = b[19] = 0;
		b[20] = 64, b[21] = b[22] = b[23] = 0;
		for (int k = 0; k < 8; k++) {
			b[24 + k] = (uint8_t)((uint64_t)size >> (8 * k));
			b[32 + k] = (uint8_t)(FP >> (8 * k));
		}
		uint64_t h = XXH3_64bits(b + 16, size - 16);
		for (int k = 0; k < 8; k++)
			b[8 + k] = (uint8_t)(h >> (8 * k));
		check(b, size);
	}
	free(b);
	return 0;
}
