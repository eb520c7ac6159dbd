/*
 * fuzz_sqe.c — libFuzzer harness for the daemon's submission validator.
 *
 * The input is a hostile client's view: 128 bytes of SQE followed by the
 * bytes it claims are its stop strings and stop ids.  pf_sqe_to_params must
 * either refuse with a message or produce parameters that the sampler's own
 * validator accepts for some vocabulary — never crash, never read past what
 * it was given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/daemon/daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pf_sqe e;
	struct pf_request_params p;
	char err[256];
	int32_t ids[16] = { 0 };
	if (size < sizeof(e))
		return 0;
	memcpy(&e, data, sizeof(e));
	size_t rest = size - sizeof(e);
	/* the daemon copies exactly stop_len bytes out of the payload area;
	 * model that with an exact-size heap copy so ASan sees any overread */
	uint32_t stop_len = e.stop_len < rest ? e.stop_len : (uint32_t)rest;
	uint8_t *stops = malloc(stop_len ? stop_len : 1);
	if (!stops)
		return 0;
	memcpy(stops, data + sizeof(e), stop_len);
	if (e.n_stop_ids <= 16)
		memcpy(ids, data + sizeof(e) + stop_len, rest - stop_len < 64 ? rest - stop_len : 64);
	if (e.n_stop_ids > 16)
		e.n_stop_ids = 16 + (e.n_stop_ids & 1); /* keep exercising the refusal */
	int r = pf_sqe_to_params(&e, stops, stop_len, ids, &p, err, sizeof(err));
	if (r == 0) {
		/* what the validator lets through must be well-formed enough for
		 * the sampler's checks to run on it (they may still refuse) */
		pf_sampler_validate(&p.sampling, 49152, err, sizeof(err));
		if (p.n < 1 || p.n > 16 || p.beam_width < 0 || p.beam_width > 8)
			abort();
	} else if (!err[0]) {
		abort(); /* every refusal says why */
	}
	free(stops);
	return 0;
}
