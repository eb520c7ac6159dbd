/*
 * daemon_sqe.c — validate a client's SUBMIT entry and build engine
 * parameters from it.  Everything here works on the daemon's private copies;
 * shared memory is never read again after the copy.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/daemon/daemon.h"

static int fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -EINVAL;
}

static int failf(char *err, size_t errlen, const char *fmt, int limit) __attribute__((format(printf, 3, 0)));
static int failf(char *err, size_t errlen, const char *fmt, int limit)
{
	snprintf(err, errlen, fmt, limit);
	return -EINVAL;
}

int pf_sqe_to_params(const struct pf_sqe *e, const uint8_t *stop_bytes, uint32_t stop_len, const int32_t *stop_ids,
		     struct pf_request_params *p, char *err, size_t errlen)
{
	const float f[] = { e->temperature, e->top_p, e->min_p, e->repetition_penalty, e->presence_penalty,
			    e->frequency_penalty, e->length_penalty };
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (!isfinite(f[i]))
			return fail(err, errlen, "a sampling parameter is NaN or infinite");
	if (e->n < 1 || e->n > PF_WIRE_MAX_SEQS)
		return failf(err, errlen, "n must be 1..%d", PF_WIRE_MAX_SEQS);
	if (e->beam_width < 0 || e->beam_width > PF_WIRE_MAX_BEAMS)
		return failf(err, errlen, "beam_width must be 0..%d", PF_WIRE_MAX_BEAMS);
	if (e->n_stop_ids > PF_WIRE_MAX_STOP_IDS)
		return failf(err, errlen, "at most %d stop token ids", PF_WIRE_MAX_STOP_IDS);
	*p = pf_request_params_default();
	struct pf_sampling_params *s = &p->sampling;
	s->temperature = e->temperature;
	s->top_k = e->top_k;
	s->top_p = e->top_p;
	s->min_p = e->min_p;
	s->repetition_penalty = e->repetition_penalty;
	s->presence_penalty = e->presence_penalty;
	s->frequency_penalty = e->frequency_penalty;
	s->max_tokens = e->max_tokens;
	s->min_tokens = e->min_tokens;
	s->seed = e->seed;
	s->has_seed = e->flags & PF_SQE_HAS_SEED;
	s->ignore_eos = e->flags & PF_SQE_IGNORE_EOS;
	s->logprobs = e->flags & PF_SQE_LOGPROBS;
	s->top_logprobs = e->top_logprobs;
	p->n = e->n;
	p->beam_width = e->beam_width;
	p->length_penalty = e->length_penalty;
	p->priority = e->priority;
	for (uint32_t i = 0; i < e->n_stop_ids; i++)
		if (pf_sampling_params_add_stop_id(s, stop_ids[i]))
			return fail(err, errlen, "too many stop token ids");
	/* stop strings: n × { u8 len, bytes }, exactly filling stop_len */
	for (uint32_t off = 0; off < stop_len;) {
		uint32_t len = stop_bytes[off++];
		if (len == 0 || len > PF_SAMPLER_STOP_STRING_MAX || len > stop_len - off)
			return failf(err, errlen, "malformed stop strings (each 1..%d bytes, length-prefixed)",
				     PF_WIRE_MAX_STOP_LEN);
		if (pf_sampling_params_add_stop_string(s, (const char *)stop_bytes + off, len))
			return failf(err, errlen, "at most %d stop strings", PF_WIRE_MAX_STOP);
		off += len;
	}
	return 0;
}
