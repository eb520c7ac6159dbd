/* statefile.c — the request state file; see statefile.h for the format. */
#include "runtime/daemon/statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static const uint8_t state_magic[8] = { 'P', 'F', 'S', 'T', 'A', 'T', 'E', 0 };

/* Record bytes before the variable parts (after rec_len): owner, counts,
 * request and sampling scalars, the two list counts. */
#define REC_FIXED (4 + 16 + 8 + 8 + 4 + 4 + 4 + 4 + 16 + 7 * 4 + 8 + 4 * 4 + 4 + 4)
/* the smallest record: fixed part + one prompt token, plus its length word */
#define REC_MIN (4 + REC_FIXED + 4)

#define SF_HAS_SEED   1u
#define SF_IGNORE_EOS 2u
#define SF_LOGPROBS   4u

__attribute__((format(printf, 3, 4)))
static void msg(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- little-endian buffer ---------------------------------------------------- */

struct obuf {
	uint8_t *p;
	size_t len, cap;
};

static void put_bytes(struct obuf *o, const void *v, size_t n)
{
	/* the buffer is sized exactly beforehand; an overrun is a bug */
	if (n > o->cap - o->len)
		abort();
	if (n)
		memcpy(o->p + o->len, v, n);
	o->len += n;
}

static void put_u32(struct obuf *o, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	put_bytes(o, b, 4);
}

static void put_u64(struct obuf *o, uint64_t v)
{
	put_u32(o, (uint32_t)v);
	put_u32(o, (uint32_t)(v >> 32));
}

static void put_i32(struct obuf *o, int32_t v) { put_u32(o, (uint32_t)v); }

static void put_f32(struct obuf *o, float f)
{
	uint32_t v;
	memcpy(&v, &f, 4);
	put_u32(o, v);
}

static uint32_t rd_u32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t rd_u64(const uint8_t *b)
{
	return (uint64_t)rd_u32(b) | (uint64_t)rd_u32(b + 4) << 32;
}

/* A bounded reader over one record; every get fails cleanly past the end. */
struct cur {
	const uint8_t *p;
	size_t len, off;
};

static bool get(struct cur *c, size_t n, const uint8_t **ret)
{
	if (n > c->len - c->off)
		return false;
	*ret = c->p + c->off;
	c->off += n;
	return true;
}

static bool get_u32(struct cur *c, uint32_t *v)
{
	const uint8_t *b;
	if (!get(c, 4, &b))
		return false;
	*v = rd_u32(b);
	return true;
}

static bool get_i32(struct cur *c, int32_t *v)
{
	uint32_t u;
	if (!get_u32(c, &u))
		return false;
	*v = (int32_t)u;
	return true;
}

static bool get_u64(struct cur *c, uint64_t *v)
{
	const uint8_t *b;
	if (!get(c, 8, &b))
		return false;
	*v = rd_u64(b);
	return true;
}

static bool get_f32(struct cur *c, float *f)
{
	uint32_t u;
	if (!get_u32(c, &u))
		return false;
	memcpy(f, &u, 4);
	return true;
}

/* ---- encoding ---------------------------------------------------------------- */

static int32_t top_n(const struct pf_engine_snapshot *s)
{
	return s->params.sampling.logprobs ? s->params.sampling.top_logprobs : 0;
}

/* Bytes of one record after its length word, or 0 when the reader would
 * refuse it (message in err). */
static size_t record_size(const struct pf_state_record *r, size_t i, char *err, size_t errlen)
{
	const struct pf_engine_snapshot *s = &r->seq;
	const struct pf_sampling_params *sp = &s->params.sampling;
	if (s->n_prompt < 1 || s->n_prompt > PF_STATE_MAX_TOKENS || !s->prompt) {
		msg(err, errlen, "record %zu: prompt of %d tokens (1..%d)", i, s->n_prompt, PF_STATE_MAX_TOKENS);
		return 0;
	}
	if (s->n_generated < 0 || s->n_generated > PF_STATE_MAX_TOKENS || (s->n_generated && !s->generated)) {
		msg(err, errlen, "record %zu: %d generated tokens (0..%d)", i, s->n_generated, PF_STATE_MAX_TOKENS);
		return 0;
	}
	if (sp->n_stop_ids > PF_SAMPLER_MAX_STOP_IDS || sp->n_stop_strings > PF_SAMPLER_MAX_STOP_STRINGS ||
	    sp->top_logprobs < 0 || sp->top_logprobs > PF_SAMPLER_MAX_TOP_LOGPROBS) {
		msg(err, errlen, "record %zu: stop lists or top_logprobs out of range", i);
		return 0;
	}
	if (sp->logprobs && s->n_generated && (!s->logprobs || (top_n(s) && !s->top))) {
		msg(err, errlen, "record %zu: logprobs requested but not supplied", i);
		return 0;
	}
	size_t n = REC_FIXED + 4 * (size_t)sp->n_stop_ids;
	for (uint32_t k = 0; k < sp->n_stop_strings; k++) {
		if (sp->stop_string_len[k] < 1 || sp->stop_string_len[k] > PF_SAMPLER_STOP_STRING_MAX) {
			msg(err, errlen, "record %zu: stop string %u of %u bytes", i, k, sp->stop_string_len[k]);
			return 0;
		}
		n += 4 + sp->stop_string_len[k];
	}
	n += 4 * ((size_t)s->n_prompt + (size_t)s->n_generated);
	if (sp->logprobs)
		n += (size_t)s->n_generated * (4 + 8 * (size_t)top_n(s));
	return n;
}

static void encode_record(struct obuf *o, const struct pf_state_record *r, size_t rec_len)
{
	const struct pf_engine_snapshot *s = &r->seq;
	const struct pf_request_params *p = &s->params;
	const struct pf_sampling_params *sp = &p->sampling;
	put_u32(o, (uint32_t)rec_len);
	put_u32(o, r->uid);
	put_bytes(o, r->resume_token, 16);
	put_u64(o, r->tag);
	put_u64(o, s->seed);
	put_i32(o, s->index);
	put_i32(o, s->n_prompt);
	put_i32(o, s->n_generated);
	put_u32(o, 0);
	put_i32(o, p->n);
	put_i32(o, p->beam_width);
	put_f32(o, p->length_penalty);
	put_i32(o, p->priority);
	put_f32(o, sp->temperature);
	put_i32(o, sp->top_k);
	put_f32(o, sp->top_p);
	put_f32(o, sp->min_p);
	put_f32(o, sp->repetition_penalty);
	put_f32(o, sp->presence_penalty);
	put_f32(o, sp->frequency_penalty);
	put_u64(o, sp->seed);
	put_u32(o, (sp->has_seed ? SF_HAS_SEED : 0) | (sp->ignore_eos ? SF_IGNORE_EOS : 0) |
			   (sp->logprobs ? SF_LOGPROBS : 0));
	put_i32(o, sp->top_logprobs);
	put_i32(o, sp->max_tokens);
	put_i32(o, sp->min_tokens);
	put_u32(o, sp->n_stop_ids);
	for (uint32_t k = 0; k < sp->n_stop_ids; k++)
		put_i32(o, sp->stop_ids[k]);
	put_u32(o, sp->n_stop_strings);
	for (uint32_t k = 0; k < sp->n_stop_strings; k++) {
		put_u32(o, sp->stop_string_len[k]);
		put_bytes(o, sp->stop_strings[k], sp->stop_string_len[k]);
	}
	for (int32_t k = 0; k < s->n_prompt; k++)
		put_i32(o, s->prompt[k]);
	for (int32_t k = 0; k < s->n_generated; k++)
		put_i32(o, s->generated[k]);
	if (sp->logprobs) {
		int32_t tn = top_n(s);
		for (int32_t k = 0; k < s->n_generated; k++) {
			put_f32(o, s->logprobs[k]);
			for (int32_t j = 0; j < tn; j++) {
				const struct pf_sample_logprob *t = &s->top[(size_t)k * (size_t)tn + (size_t)j];
				put_i32(o, t->token);
				put_f32(o, t->logprob);
			}
		}
	}
}

int pf_state_encode(const struct pf_state_record *recs, size_t n, uint64_t model_fp, void **ret_buf,
		    size_t *ret_len, char *err, size_t errlen)
{
	*ret_buf = NULL;
	*ret_len = 0;
	if (err && errlen)
		err[0] = '\0';
	if (n > PF_STATE_MAX_RECORDS) {
		msg(err, errlen, "%zu records, at most %d", n, PF_STATE_MAX_RECORDS);
		return -EINVAL;
	}
	uint64_t total = PF_STATE_HEADER_LEN;
	for (size_t i = 0; i < n; i++) {
		size_t rl = record_size(&recs[i], i, err, errlen);
		if (!rl)
			return -EINVAL;
		total += 4 + (uint64_t)rl;
	}
	if (total > PF_STATE_MAX_FILE) {
		msg(err, errlen, "%llu bytes exceed the state file limit", (unsigned long long)total);
		return -EINVAL;
	}
	struct obuf o = { .p = malloc((size_t)total), .cap = (size_t)total };
	if (!o.p)
		return -ENOMEM;
	put_bytes(&o, state_magic, 8);
	put_u64(&o, 0); /* checksum, filled last */
	put_u32(&o, PF_STATE_VERSION);
	put_u32(&o, PF_STATE_HEADER_LEN);
	put_u64(&o, total);
	put_u64(&o, model_fp);
	put_u32(&o, (uint32_t)n);
	put_u32(&o, 0);
	put_u64(&o, (uint64_t)time(NULL));
	put_u64(&o, 0);
	for (size_t i = 0; i < n; i++)
		encode_record(&o, &recs[i], record_size(&recs[i], i, NULL, 0));
	if (o.len != total)
		abort();
	uint64_t h = XXH3_64bits(o.p + 16, o.len - 16);
	o.len = 8;
	put_u64(&o, h);
	*ret_buf = o.p;
	*ret_len = (size_t)total;
	return 0;
}

/* ---- parsing ----------------------------------------------------------------- */

/*
 * Check record i at c (its bytes after the length word) and, when out is not
 * NULL, fill *out with its arrays carved from *arena.  *arena_need grows by
 * the arena bytes the record takes, so one dry run sizes the allocation for
 * the second.  Returns 0 or -EBADMSG with a message.
 */
static int parse_record(struct cur *c, size_t i, struct pf_state_record *out, uint8_t **arena, size_t *arena_need,
			char *err, size_t errlen)
{
	struct pf_state_record r;
	struct pf_engine_snapshot *s = &r.seq;
	struct pf_request_params *p = &s->params;
	struct pf_sampling_params *sp = &p->sampling;
	const uint8_t *b;
	uint32_t u, flags, bits;
	memset(&r, 0, sizeof(r));
	*p = pf_request_params_default();
#define NEED(x, what)                                                                          \
	do {                                                                                   \
		if (!(x)) {                                                                    \
			msg(err, errlen, "record %zu: %s ends past the record's %zu bytes", i, \
			    what, c->len);                                                     \
			return -EBADMSG;                                                       \
		}                                                                              \
	} while (0)
#define BAD(...)                                                          \
	do {                                                              \
		char m_[160];                                             \
		snprintf(m_, sizeof(m_), __VA_ARGS__);                    \
		msg(err, errlen, "record %zu: %s", i, m_);                \
		return -EBADMSG;                                          \
	} while (0)
	NEED(get_u32(c, &r.uid), "uid");
	NEED(get(c, 16, &b), "resume token");
	memcpy(r.resume_token, b, 16);
	NEED(get_u64(c, &r.tag), "tag");
	NEED(get_u64(c, &s->seed), "seed");
	NEED(get_i32(c, &s->index), "index");
	NEED(get_i32(c, &s->n_prompt), "prompt length");
	NEED(get_i32(c, &s->n_generated), "generated length");
	NEED(get_u32(c, &flags), "flags");
	if (flags)
		BAD("unknown flags 0x%x", flags);
	NEED(get_i32(c, &p->n), "n");
	NEED(get_i32(c, &p->beam_width), "beam_width");
	NEED(get_f32(c, &p->length_penalty), "length_penalty");
	NEED(get_i32(c, &p->priority), "priority");
	NEED(get_f32(c, &sp->temperature), "temperature");
	NEED(get_i32(c, &sp->top_k), "top_k");
	NEED(get_f32(c, &sp->top_p), "top_p");
	NEED(get_f32(c, &sp->min_p), "min_p");
	NEED(get_f32(c, &sp->repetition_penalty), "repetition_penalty");
	NEED(get_f32(c, &sp->presence_penalty), "presence_penalty");
	NEED(get_f32(c, &sp->frequency_penalty), "frequency_penalty");
	NEED(get_u64(c, &sp->seed), "sampling seed");
	NEED(get_u32(c, &bits), "sampling flags");
	if (bits & ~(SF_HAS_SEED | SF_IGNORE_EOS | SF_LOGPROBS))
		BAD("unknown sampling flags 0x%x", bits);
	sp->has_seed = bits & SF_HAS_SEED;
	sp->ignore_eos = bits & SF_IGNORE_EOS;
	sp->logprobs = bits & SF_LOGPROBS;
	NEED(get_i32(c, &sp->top_logprobs), "top_logprobs");
	NEED(get_i32(c, &sp->max_tokens), "max_tokens");
	NEED(get_i32(c, &sp->min_tokens), "min_tokens");
	NEED(get_u32(c, &sp->n_stop_ids), "stop id count");
	if (sp->n_stop_ids > PF_SAMPLER_MAX_STOP_IDS)
		BAD("%u stop ids, at most %d", sp->n_stop_ids, PF_SAMPLER_MAX_STOP_IDS);
	for (uint32_t k = 0; k < sp->n_stop_ids; k++)
		NEED(get_i32(c, &sp->stop_ids[k]), "stop ids");
	NEED(get_u32(c, &sp->n_stop_strings), "stop string count");
	if (sp->n_stop_strings > PF_SAMPLER_MAX_STOP_STRINGS)
		BAD("%u stop strings, at most %d", sp->n_stop_strings, PF_SAMPLER_MAX_STOP_STRINGS);
	for (uint32_t k = 0; k < sp->n_stop_strings; k++) {
		NEED(get_u32(c, &u), "stop string length");
		if (u < 1 || u > PF_SAMPLER_STOP_STRING_MAX)
			BAD("stop string %u has %u bytes (1..%d)", k, u, PF_SAMPLER_STOP_STRING_MAX);
		NEED(get(c, u, &b), "stop string");
		memcpy(sp->stop_strings[k], b, u);
		sp->stop_string_len[k] = u;
	}
	/* values the engine would refuse are refused here, with their name:
	 * a large vocabulary bound leaves only the id range to the engine */
	char verr[160];
	if (pf_sampler_validate(sp, INT32_MAX, verr, sizeof(verr)))
		BAD("%s", verr);
	if (p->n < 1 || p->n > 64 || p->beam_width < 0 || p->beam_width > 64 || s->index < 0 || s->index >= p->n)
		BAD("n %d, beam_width %d, sequence index %d out of range", p->n, p->beam_width, s->index);
	if (s->n_prompt < 1 || s->n_prompt > PF_STATE_MAX_TOKENS)
		BAD("prompt of %d tokens (1..%d)", s->n_prompt, PF_STATE_MAX_TOKENS);
	if (s->n_generated < 0 || s->n_generated > PF_STATE_MAX_TOKENS)
		BAD("%d generated tokens (0..%d)", s->n_generated, PF_STATE_MAX_TOKENS);
	size_t ntok = (size_t)s->n_prompt + (size_t)s->n_generated;
	int32_t tn = sp->logprobs ? sp->top_logprobs : 0;
	size_t lp_bytes = sp->logprobs ? (size_t)s->n_generated * (4 + 8 * (size_t)tn) : 0;
	if (4 * ntok + lp_bytes != c->len - c->off)
		BAD("%zu bytes of tokens%s expected, %zu remain", 4 * ntok + lp_bytes, sp->logprobs ? " and logprobs" : "",
		    c->len - c->off);
	/* arena: tokens, then logprobs, then alternatives; all 4-aligned */
	size_t need = 4 * ntok + (sp->logprobs ? (size_t)s->n_generated * (4 + sizeof(struct pf_sample_logprob) * (size_t)tn) : 0);
	*arena_need += need;
	int32_t *tok = out ? (int32_t *)(void *)*arena : NULL;
	for (size_t k = 0; k < ntok; k++) {
		int32_t t;
		get_i32(c, &t);
		if (t < 0)
			BAD("%s token %zu is %d", k < (size_t)s->n_prompt ? "prompt" : "generated",
			    k < (size_t)s->n_prompt ? k : k - (size_t)s->n_prompt, t);
		if (tok)
			tok[k] = t;
	}
	float *lp = tok && sp->logprobs ? (float *)(void *)(tok + ntok) : NULL;
	struct pf_sample_logprob *top = lp ? (struct pf_sample_logprob *)(void *)(lp + s->n_generated) : NULL;
	for (int32_t k = 0; sp->logprobs && k < s->n_generated; k++) {
		float f;
		get_f32(c, &f);
		if (lp)
			lp[k] = f;
		for (int32_t j = 0; j < tn; j++) {
			struct pf_sample_logprob t;
			get_i32(c, &t.token);
			get_f32(c, &t.logprob);
			if (t.token < -1)
				BAD("logprob alternative token %d", t.token);
			if (top)
				top[(size_t)k * (size_t)tn + (size_t)j] = t;
		}
	}
	if (!out)
		return 0;
	s->prompt = tok;
	s->generated = s->n_generated ? tok + s->n_prompt : NULL;
	s->logprobs = s->n_generated ? lp : NULL;
	s->top = s->n_generated && tn ? top : NULL;
	*out = r;
	*arena += need;
	return 0;
#undef NEED
#undef BAD
}

/* Walk every record; fill recs when not NULL.  Returns 0 or -EBADMSG. */
static int parse_records(const uint8_t *body, size_t len, size_t n, struct pf_state_record *recs, uint8_t *arena,
			 size_t *arena_need, char *err, size_t errlen)
{
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		if (len - off < 4) {
			msg(err, errlen, "record %zu of %zu: starts past the end of the file", i, n);
			return -EBADMSG;
		}
		uint32_t rl = rd_u32(body + off);
		off += 4;
		if (rl > len - off || rl < REC_MIN - 4) {
			msg(err, errlen, "record %zu of %zu: length %u does not fit the %zu bytes left", i, n, rl, len - off);
			return -EBADMSG;
		}
		struct cur c = { body + off, rl, 0 };
		int r = parse_record(&c, i, recs ? &recs[i] : NULL, &arena, arena_need, err, errlen);
		if (r)
			return r;
		off += rl;
	}
	if (off != len) {
		msg(err, errlen, "%zu bytes after the last of %zu records", len - off, n);
		return -EBADMSG;
	}
	return 0;
}

int pf_state_parse(const void *buf, size_t len, uint64_t model_fp, struct pf_state_record **ret_recs,
		   size_t *ret_n, char *err, size_t errlen)
{
	const uint8_t *b = buf;
	*ret_recs = NULL;
	*ret_n = 0;
	if (err && errlen)
		err[0] = '\0';
	if (len == 0) {
		msg(err, errlen, "empty file");
		return -EBADMSG;
	}
	if (memcmp(b, state_magic, len < 8 ? len : 8)) {
		msg(err, errlen, "not a pinfer state file (bad magic)");
		return -EBADMSG;
	}
	if (len < PF_STATE_HEADER_LEN) {
		msg(err, errlen, "truncated: %zu of at least %d bytes (the header)", len, PF_STATE_HEADER_LEN);
		return -EBADMSG;
	}
	uint32_t version = rd_u32(b + 16), hlen = rd_u32(b + 20), n = rd_u32(b + 40), flags = rd_u32(b + 44);
	uint64_t total = rd_u64(b + 24), fp = rd_u64(b + 32);
	if (version != PF_STATE_VERSION) {
		msg(err, errlen, "format version %u, this pinferd reads %d", version, PF_STATE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (hlen != PF_STATE_HEADER_LEN) {
		msg(err, errlen, "header length %u, version %d has %d", hlen, PF_STATE_VERSION, PF_STATE_HEADER_LEN);
		return -EBADMSG;
	}
	if (total > len) {
		msg(err, errlen, "truncated: %zu of %llu bytes", len, (unsigned long long)total);
		return -EBADMSG;
	}
	if (total < len) {
		msg(err, errlen, "%llu bytes long but the header says %llu", (unsigned long long)len,
		    (unsigned long long)total);
		return -EBADMSG;
	}
	uint64_t want = rd_u64(b + 8), got = XXH3_64bits(b + 16, len - 16);
	if (want != got) {
		msg(err, errlen, "checksum mismatch (stored %016llx, computed %016llx)", (unsigned long long)want,
		    (unsigned long long)got);
		return -EBADMSG;
	}
	if (fp != model_fp) {
		msg(err, errlen, "made with another model (fingerprint %016llx, this model %016llx)",
		    (unsigned long long)fp, (unsigned long long)model_fp);
		return -ESTALE;
	}
	if (flags || rd_u64(b + 56)) {
		msg(err, errlen, "unknown header flags 0x%x", flags);
		return -EBADMSG;
	}
	const uint8_t *body = b + PF_STATE_HEADER_LEN;
	size_t blen = len - PF_STATE_HEADER_LEN;
	if (n > PF_STATE_MAX_RECORDS || (size_t)n > blen / REC_MIN) {
		msg(err, errlen, "%u records cannot fit in %zu bytes", n, blen);
		return -EBADMSG;
	}
	size_t arena_need = 0;
	int r = parse_records(body, blen, n, NULL, NULL, &arena_need, err, errlen);
	if (r)
		return r;
	if (n == 0)
		return 0;
	/* records and their arrays in one block, so one free() releases all */
	size_t head = sizeof(struct pf_state_record) * (size_t)n;
	struct pf_state_record *recs = malloc(head + arena_need);
	if (!recs) {
		msg(err, errlen, "out of memory for %u records", n);
		return -ENOMEM;
	}
	arena_need = 0;
	r = parse_records(body, blen, n, recs, (uint8_t *)recs + head, &arena_need, err, errlen);
	if (r) {
		free(recs); /* cannot happen: the dry run accepted the same bytes */
		return r;
	}
	*ret_recs = recs;
	*ret_n = n;
	return 0;
}

void pf_state_records_free(struct pf_state_record *recs)
{
	free(recs);
}

/* ---- files ------------------------------------------------------------------- */

/* The directory part of path ("." when none) into buf. */
static int dir_of(const char *path, char *buf, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return snprintf(buf, cap, ".") < (int)cap ? 0 : -ENAMETOOLONG;
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	if (n + 1 > cap)
		return -ENAMETOOLONG;
	memcpy(buf, path, n);
	buf[n] = '\0';
	return 0;
}

/* Make a rename or unlink in path's directory durable. */
static int fsync_dir(const char *path)
{
	char dir[PATH_MAX];
	int r = dir_of(path, dir, sizeof(dir));
	if (r)
		return r;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = fsync(fd) ? -errno : 0;
	close(fd);
	return r;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int pf_state_write(const char *path, const struct pf_state_record *recs, size_t n, uint64_t model_fp, char *err,
		   size_t errlen)
{
	void *buf = NULL;
	size_t len = 0;
	char tmp[PATH_MAX];
	int fd = -1, r;
	const char *step = "encode";
	if (err && errlen)
		err[0] = '\0';
	r = pf_state_encode(recs, n, model_fp, &buf, &len, err, errlen);
	if (r)
		return r;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp)) {
		r = -ENAMETOOLONG;
		step = "name the temporary file";
		goto out;
	}
	/* mkostemp creates the file 0600 with a name no other writer holds */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		step = "create";
		tmp[0] = '\0';
		goto out;
	}
	step = "write";
	r = write_all(fd, buf, len);
	if (r)
		goto out;
	step = "fsync";
	if (fsync(fd)) {
		r = -errno;
		goto out;
	}
	step = "close";
	r = close(fd) ? -errno : 0;
	fd = -1;
	if (r)
		goto out;
	step = "rename";
	if (rename(tmp, path)) {
		r = -errno;
		goto out;
	}
	tmp[0] = '\0';
	step = "fsync the directory of";
	r = fsync_dir(path);
out:
	if (fd >= 0)
		close(fd);
	if (r && tmp[0])
		unlink(tmp);
	if (r)
		msg(err, errlen, "%s: cannot %s the state file: %s", path, step, strerror(-r));
	free(buf);
	return r;
}

int pf_state_read(const char *path, uint64_t model_fp, struct pf_state_record **ret_recs, size_t *ret_n,
		  char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	struct stat st;
	int r = 0;
	*ret_recs = NULL;
	*ret_n = 0;
	if (err && errlen)
		err[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		if (r != -ENOENT)
			msg(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st)) {
		r = -errno;
		msg(err, errlen, "%s: %s", path, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EBADMSG;
		msg(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > PF_STATE_MAX_FILE) {
		r = -EBADMSG;
		msg(err, errlen, "%s: %lld bytes, more than a state file may have (%llu)", path, (long long)st.st_size,
		    (unsigned long long)PF_STATE_MAX_FILE);
		goto out;
	}
	size_t len = (size_t)st.st_size, got = 0;
	buf = malloc(len ? len : 1);
	if (!buf) {
		r = -ENOMEM;
		msg(err, errlen, "%s: out of memory for %zu bytes", path, len);
		goto out;
	}
	while (got < len) {
		ssize_t k = read(fd, buf + got, len - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			msg(err, errlen, "%s: %s", path, strerror(-r));
			goto out;
		}
		if (k == 0)
			break; /* shrank under us: parse what is there, it will say truncated */
		got += (size_t)k;
	}
	char perr[256];
	r = pf_state_parse(buf, got, model_fp, ret_recs, ret_n, perr, sizeof(perr));
	if (r)
		msg(err, errlen, "%s: %s", path, perr);
out:
	close(fd);
	free(buf);
	return r;
}

/* Rename src to dst unless dst exists.  RENAME_NOREPLACE where the file
 * system has it, else link + unlink (link never replaces a name either). */
static int rename_noreplace(const char *src, const char *dst)
{
	if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
		return -errno;
	if (link(src, dst))
		return -errno;
	if (unlink(src)) {
		int r = -errno;
		unlink(dst);
		return r;
	}
	return 0;
}

int pf_state_quarantine(const char *path, char *ret_path, size_t cap)
{
	char dst[PATH_MAX];
	long long now = (long long)time(NULL);
	int r = -EEXIST;
	if (ret_path && cap)
		ret_path[0] = '\0';
	/* an earlier quarantined file from the same second is never replaced */
	for (int k = 0; k < 1000 && r == -EEXIST; k++) {
		int w = k ? snprintf(dst, sizeof(dst), "%s.corrupt-%lld-%d", path, now, k)
			  : snprintf(dst, sizeof(dst), "%s.corrupt-%lld", path, now);
		if (w < 0 || (size_t)w >= sizeof(dst))
			return -ENAMETOOLONG;
		r = rename_noreplace(path, dst);
	}
	if (r)
		return r;
	if (ret_path && cap)
		snprintf(ret_path, cap, "%s", dst);
	fsync_dir(path); /* best effort: the file is out of the way either way */
	return 0;
}

int pf_state_remove(const char *path)
{
	if (unlink(path))
		return errno == ENOENT ? 0 : -errno;
	return fsync_dir(path);
}
