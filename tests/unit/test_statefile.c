/*
 * test_statefile.c — the request state file: every field survives a round
 * trip; every truncation, every single-bit flip, another version, another
 * model and absurd counts are refused with a message that says what is
 * wrong; a failed write leaves the old file and no temporary behind;
 * quarantine moves a bad file aside without overwriting an earlier one.
 *
 * PF_STATE_SEED_DIR=DIR also writes the small valid files used here into DIR
 * (the fuzz seeds in tests/fuzz/corpus/statefile/ came from there).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <xxhash.h>

#include "runtime/daemon/statefile.h"
#include "tests/unit/testutil.h"

#define FP 0x0123456789abcdefULL

/* ---- building records ------------------------------------------------------ */

struct owned {
	struct pf_state_record r;
	int32_t *prompt, *gen;
	float *lp;
	struct pf_sample_logprob *top;
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* Record i with every field away from its default; sizes vary with i. */
static void make_record(struct owned *o, int i, int32_t n_prompt, int32_t n_gen)
{
	uint64_t s = 1000 + (uint64_t)i;
	struct pf_state_record *r = &o->r;
	struct pf_engine_snapshot *q = &r->seq;
	struct pf_sampling_params *sp = &q->params.sampling;
	memset(o, 0, sizeof(*o));
	r->uid = 1000 + (uint32_t)i;
	for (int k = 0; k < 16; k++)
		r->resume_token[k] = (uint8_t)rng_next(&s);
	r->tag = rng_next(&s);
	q->params = pf_request_params_default();
	q->params.n = 1 + i % 4;
	q->index = i % q->params.n;
	q->params.beam_width = 0;
	q->params.length_penalty = 0.75f + (float)i;
	q->params.priority = -3 + i;
	q->seed = rng_next(&s);
	sp->temperature = 0.7f;
	sp->top_k = 40 + i;
	sp->top_p = 0.9f;
	sp->min_p = 0.05f;
	sp->repetition_penalty = 1.1f;
	sp->presence_penalty = -0.5f;
	sp->frequency_penalty = 0.25f;
	sp->seed = rng_next(&s);
	sp->has_seed = i & 1;
	sp->ignore_eos = !(i & 2);
	sp->logprobs = i % 3 != 2;
	sp->top_logprobs = sp->logprobs ? i % 5 : 0;
	sp->max_tokens = n_gen + 10 + i;
	sp->min_tokens = i % 7;
	for (int k = 0; k < i % 17; k++)
		pf_sampling_params_add_stop_id(sp, 100 + k * 3 + i);
	static const char *stops[] = { "\n\n", "END", "### ", "</s>", "é", "x", "a longer stop string of some length" };
	for (int k = 0; k < i % 9; k++)
		pf_sampling_params_add_stop_string(sp, stops[(k + i) % 7], strlen(stops[(k + i) % 7]));
	o->prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
	o->gen = malloc(sizeof(int32_t) * (size_t)(n_gen ? n_gen : 1));
	for (int32_t k = 0; k < n_prompt; k++)
		o->prompt[k] = (int32_t)(rng_next(&s) % 49152);
	for (int32_t k = 0; k < n_gen; k++)
		o->gen[k] = (int32_t)(rng_next(&s) % 49152);
	q->prompt = o->prompt;
	q->n_prompt = n_prompt;
	q->generated = n_gen ? o->gen : NULL;
	q->n_generated = n_gen;
	if (sp->logprobs && n_gen) {
		size_t tk = (size_t)sp->top_logprobs;
		o->lp = malloc(sizeof(float) * (size_t)n_gen);
		o->top = malloc(sizeof(*o->top) * (size_t)n_gen * (tk ? tk : 1));
		for (int32_t k = 0; k < n_gen; k++) {
			o->lp[k] = -(float)(rng_next(&s) % 1000) / 97.0f;
			for (size_t j = 0; j < tk; j++)
				o->top[(size_t)k * tk + j] = (struct pf_sample_logprob){
					j + 1 == tk && k % 4 == 3 ? -1 : (int32_t)(rng_next(&s) % 49152), -(float)j * 0.5f };
		}
		q->logprobs = o->lp;
		q->top = tk ? o->top : NULL;
	}
}

static void owned_free(struct owned *o)
{
	free(o->prompt);
	free(o->gen);
	free(o->lp);
	free(o->top);
}

static void assert_same_float(float a, float b)
{
	assert_memory_equal(&a, &b, sizeof(float));
}

static void assert_same_record(const struct pf_state_record *a, const struct pf_state_record *b)
{
	const struct pf_engine_snapshot *x = &a->seq, *y = &b->seq;
	const struct pf_sampling_params *p = &x->params.sampling, *q = &y->params.sampling;
	assert_int_equal(a->uid, b->uid);
	assert_memory_equal(a->resume_token, b->resume_token, 16);
	assert_true(a->tag == b->tag);
	assert_true(x->seed == y->seed);
	assert_int_equal(x->index, y->index);
	assert_int_equal(x->params.n, y->params.n);
	assert_int_equal(x->params.beam_width, y->params.beam_width);
	assert_same_float(x->params.length_penalty, y->params.length_penalty);
	assert_int_equal(x->params.priority, y->params.priority);
	assert_same_float(p->temperature, q->temperature);
	assert_int_equal(p->top_k, q->top_k);
	assert_same_float(p->top_p, q->top_p);
	assert_same_float(p->min_p, q->min_p);
	assert_same_float(p->repetition_penalty, q->repetition_penalty);
	assert_same_float(p->presence_penalty, q->presence_penalty);
	assert_same_float(p->frequency_penalty, q->frequency_penalty);
	assert_true(p->seed == q->seed);
	assert_int_equal(p->has_seed, q->has_seed);
	assert_int_equal(p->ignore_eos, q->ignore_eos);
	assert_int_equal(p->logprobs, q->logprobs);
	assert_int_equal(p->top_logprobs, q->top_logprobs);
	assert_int_equal(p->max_tokens, q->max_tokens);
	assert_int_equal(p->min_tokens, q->min_tokens);
	assert_int_equal(p->n_stop_ids, q->n_stop_ids);
	assert_memory_equal(p->stop_ids, q->stop_ids, sizeof(int32_t) * p->n_stop_ids);
	assert_int_equal(p->n_stop_strings, q->n_stop_strings);
	for (uint32_t k = 0; k < p->n_stop_strings; k++) {
		assert_int_equal(p->stop_string_len[k], q->stop_string_len[k]);
		assert_memory_equal(p->stop_strings[k], q->stop_strings[k], p->stop_string_len[k]);
	}
	assert_int_equal(x->n_prompt, y->n_prompt);
	assert_memory_equal(x->prompt, y->prompt, sizeof(int32_t) * (size_t)x->n_prompt);
	assert_int_equal(x->n_generated, y->n_generated);
	if (x->n_generated)
		assert_memory_equal(x->generated, y->generated, sizeof(int32_t) * (size_t)x->n_generated);
	assert_int_equal(x->logprobs != NULL, y->logprobs != NULL);
	if (x->logprobs)
		assert_memory_equal(x->logprobs, y->logprobs, sizeof(float) * (size_t)x->n_generated);
	assert_int_equal(x->top != NULL, y->top != NULL);
	if (x->top)
		assert_memory_equal(x->top, y->top,
				    sizeof(struct pf_sample_logprob) * (size_t)x->n_generated * (size_t)p->top_logprobs);
}

/* A small valid file image of n records (free() it). */
static uint8_t *small_file(int n, size_t *ret_len)
{
	struct owned o[4];
	struct pf_state_record r[4];
	void *buf;
	char err[256];
	for (int i = 0; i < n; i++) {
		make_record(&o[i], i + 1, 3 + i, 2 + i);
		r[i] = o[i].r;
	}
	assert_int_equal(pf_state_encode(r, (size_t)n, FP, &buf, ret_len, err, sizeof(err)), 0);
	for (int i = 0; i < n; i++)
		owned_free(&o[i]);
	return buf;
}

static void save_seed(const char *name, const void *buf, size_t len)
{
	const char *dir = getenv("PF_STATE_SEED_DIR");
	char path[1024];
	if (!dir || !*dir)
		return;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
}

/* Recompute the checksum after editing an image, so a test reaches the
 * check behind it. */
static void reseal(uint8_t *b, size_t len)
{
	uint64_t h = XXH3_64bits(b + 16, len - 16);
	for (int k = 0; k < 8; k++)
		b[8 + k] = (uint8_t)(h >> (8 * k));
}

static void put32(uint8_t *b, uint32_t v)
{
	for (int k = 0; k < 4; k++)
		b[k] = (uint8_t)(v >> (8 * k));
}

static int parse(const void *b, size_t len, char *err, size_t errlen)
{
	struct pf_state_record *recs = (void *)1;
	size_t n = 99;
	int r = pf_state_parse(b, len, FP, &recs, &n, err, errlen);
	if (r) {
		/* a refusal leaves nothing behind and always says why */
		assert_null(recs);
		assert_int_equal(n, 0);
		assert_true(err[0] != '\0');
	}
	pf_state_records_free(recs);
	return r;
}

/* ---- temp dir ------------------------------------------------------------ */

static char tmpdir[256];

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pf-statefile-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	(void)state;
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	char p[600];
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", tmpdir, de->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(tmpdir);
	return 0;
}

static int count_entries(const char *prefix)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	int n = 0;
	while (d && (de = readdir(d)))
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	if (d)
		closedir(d);
	return n;
}

static uint8_t *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc((size_t)n + 1);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*ret_len = (size_t)n;
	return b;
}

static void spit(const char *path, const void *b, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, len, f), len);
	fclose(f);
}

/* ---- tests --------------------------------------------------------------- */

static void test_round_trip(void **state)
{
	(void)state;
	enum { N = 60 };
	struct owned *o = calloc(N, sizeof(*o));
	struct pf_state_record r[N];
	char path[512], err[256];
	for (int i = 0; i < N; i++) {
		/* sizes include an empty generation and a long prompt */
		make_record(&o[i], i, i == 7 ? 5000 : 1 + i * 3, i % 10 == 0 ? 0 : i * 2);
		r[i] = o[i].r;
	}
	snprintf(path, sizeof(path), "%s/state", tmpdir);
	assert_int_equal(pf_state_write(path, r, N, FP, err, sizeof(err)), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600); /* it holds prompts */
	assert_int_equal(count_entries("state.tmp"), 0);
	struct pf_state_record *back;
	size_t n;
	assert_int_equal(pf_state_read(path, FP, &back, &n, err, sizeof(err)), 0);
	assert_int_equal(n, N);
	for (int i = 0; i < N; i++) {
		assert_null(back[i].seq.user);
		assert_same_record(&r[i], &back[i]);
	}
	pf_state_records_free(back);

	/* the same bytes through encode/parse, and again after rewriting */
	void *buf;
	size_t len;
	assert_int_equal(pf_state_encode(r, N, FP, &buf, &len, err, sizeof(err)), 0);
	assert_int_equal(pf_state_parse(buf, len, FP, &back, &n, err, sizeof(err)), 0);
	void *buf2;
	size_t len2;
	assert_int_equal(pf_state_encode(back, n, FP, &buf2, &len2, err, sizeof(err)), 0);
	assert_int_equal(len, len2);
	/* bytes 48..56 are the write time */
	assert_memory_equal((uint8_t *)buf + 16, (uint8_t *)buf2 + 16, 32);
	assert_memory_equal((uint8_t *)buf + 56, (uint8_t *)buf2 + 56, len - 56);
	printf("# %d records, %zu bytes, round trip exact\n", N, len);
	free(buf);
	free(buf2);
	pf_state_records_free(back);

	/* no records is a valid file too */
	assert_int_equal(pf_state_write(path, NULL, 0, FP, err, sizeof(err)), 0);
	assert_int_equal(pf_state_read(path, FP, &back, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	assert_null(back);
	for (int i = 0; i < N; i++)
		owned_free(&o[i]);
	free(o);

	size_t sl;
	uint8_t *s = small_file(1, &sl);
	save_seed("one-record", s, sl);
	free(s);
	s = small_file(3, &sl);
	save_seed("three-records", s, sl);
	free(s);
}

static void test_every_truncation(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_file(3, &len);
	char err[256], path[512], want[128];
	snprintf(path, sizeof(path), "%s/trunc", tmpdir);
	for (size_t l = 0; l < len; l++) {
		int r = parse(b, l, err, sizeof(err));
		assert_int_equal(r, -EBADMSG);
		if (l == 0)
			assert_string_equal(err, "empty file");
		else if (l < PF_STATE_HEADER_LEN)
			assert_non_null(strstr(err, "the header"));
		else {
			snprintf(want, sizeof(want), "truncated: %zu of %zu bytes", l, len);
			assert_string_equal(err, want);
		}
		/* and through a real file, as a crash would leave it */
		spit(path, b, l);
		struct pf_state_record *recs;
		size_t n;
		assert_int_equal(pf_state_read(path, FP, &recs, &n, err, sizeof(err)), -EBADMSG);
		assert_non_null(strstr(err, path));
		if (l == len / 2)
			printf("# %zu of %zu bytes: %s\n", l, len, err);
	}
	/* the full length parses, and one byte more is refused too */
	assert_int_equal(parse(b, len, err, sizeof(err)), 0);
	uint8_t *longer = calloc(1, len + 1);
	memcpy(longer, b, len);
	assert_int_equal(parse(longer, len + 1, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "header says"));
	free(longer);
	free(b);
}

static void test_every_bit_flip(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_file(1, &len);
	char err[256];
	int by_kind[4] = { 0 };
	for (size_t i = 0; i < len * 8; i++) {
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
		int r = parse(b, len, err, sizeof(err));
		assert_true(r < 0);
		if (strstr(err, "checksum mismatch"))
			by_kind[0]++;
		else if (strstr(err, "bad magic"))
			by_kind[1]++;
		else if (strstr(err, "format version"))
			by_kind[2]++;
		else
			by_kind[3]++;
		b[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	assert_int_equal(parse(b, len, err, sizeof(err)), 0);
	printf("# %zu single-bit flips of a %zu-byte file, all refused: %d checksum, %d magic, %d version, %d length\n",
	       len * 8, len, by_kind[0], by_kind[1], by_kind[2], by_kind[3]);
	assert_int_equal(by_kind[1], 64);
	assert_int_equal(by_kind[2], 32);
	free(b);
}

static void test_version_and_model(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_file(2, &len);
	char err[256];
	struct pf_state_record *recs;
	size_t n;
	assert_int_equal(pf_state_parse(b, len, FP ^ 1, &recs, &n, err, sizeof(err)), -ESTALE);
	printf("# another model: %s\n", err);
	assert_non_null(strstr(err, "made with another model"));
	put32(b + 16, 3);
	reseal(b, len);
	assert_int_equal(parse(b, len, err, sizeof(err)), -EPROTONOSUPPORT);
	assert_string_equal(err, "format version 3, this pinferd reads 1");
	/* a future version is recognised as such even when its layout (and
	 * so its checksum) is not ours */
	put32(b + 16, 2);
	assert_int_equal(parse(b, len, err, sizeof(err)), -EPROTONOSUPPORT);
	free(b);

	b = small_file(1, &len);
	memcpy(b, "GGUF\3\0\0\0", 8);
	assert_int_equal(parse(b, len, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "not a pinfer state file"));
	free(b);
}

/* Offsets inside the first record (see statefile.h). */
enum {
	R0 = PF_STATE_HEADER_LEN, O_RECLEN = R0, O_INDEX = R0 + 4 + 36, O_NPROMPT = O_INDEX + 4, O_NGEN = O_NPROMPT + 4,
	O_RFLAGS = O_NGEN + 4, O_N = O_RFLAGS + 4, O_TEMP = O_N + 16, O_SBITS = O_TEMP + 36, O_TOPLP = O_SBITS + 4,
	O_MAXT = O_TOPLP + 4, O_NSTOPID = O_MAXT + 8,
};

static void expect_bad(const uint8_t *orig, size_t len, size_t off, uint32_t v, const char *what)
{
	uint8_t *b = malloc(len);
	char err[256];
	memcpy(b, orig, len);
	put32(b + off, v);
	reseal(b, len);
	assert_int_equal(parse(b, len, err, sizeof(err)), -EBADMSG);
	printf("# %s: %s\n", what, err);
	free(b);
}

static void test_absurd_counts(void **state)
{
	(void)state;
	size_t len;
	/* record 0 of small_file: n_prompt 3, n_generated 2, 1 stop id, 1 stop string */
	uint8_t *b = small_file(2, &len);
	char err[256];
	assert_int_equal(parse(b, len, err, sizeof(err)), 0);
	expect_bad(b, len, 40, 0xFFFFFFFFu, "n_records 2^32-1");
	expect_bad(b, len, 40, 3, "one record more than written");
	expect_bad(b, len, 40, 1, "one record fewer");
	expect_bad(b, len, O_RECLEN, 0xFFFFFFF0u, "record length 2^32-16");
	expect_bad(b, len, O_RECLEN, 8, "record length 8");
	expect_bad(b, len, O_NPROMPT, 0x7FFFFFFF, "prompt length 2^31-1");
	expect_bad(b, len, O_NPROMPT, 0, "prompt length 0");
	expect_bad(b, len, O_NPROMPT, 4, "prompt length one more");
	expect_bad(b, len, O_NGEN, 0x80000000u, "negative generated length");
	expect_bad(b, len, O_NSTOPID, 1000000, "a million stop ids");
	expect_bad(b, len, O_NSTOPID, 17, "17 stop ids");
	expect_bad(b, len, O_TOPLP, 21, "top_logprobs 21");
	expect_bad(b, len, O_RFLAGS, 1, "unknown record flags");
	expect_bad(b, len, O_SBITS, 8, "unknown sampling flags");
	expect_bad(b, len, O_TEMP, 0x7FC00000u, "temperature NaN");
	expect_bad(b, len, O_MAXT, 0, "max_tokens 0");
	expect_bad(b, len, O_INDEX, 7, "sequence index past n");
	expect_bad(b, len, O_N, 0, "n 0");
	expect_bad(b, len, O_NSTOPID + 12, 0, "stop string of 0 bytes"); /* after 1 stop id */
	expect_bad(b, len, O_NSTOPID + 12, 65, "stop string of 65 bytes");
	expect_bad(b, len, 44, 1, "header flags");
	free(b);

	/* the writer refuses what the reader would */
	struct owned o;
	void *buf;
	char e2[256];
	make_record(&o, 4, 3, 2);
	o.r.seq.n_prompt = 0;
	assert_int_equal(pf_state_encode(&o.r, 1, FP, &buf, &len, e2, sizeof(e2)), -EINVAL);
	o.r.seq.n_prompt = 3;
	o.r.seq.params.sampling.logprobs = true;
	o.r.seq.logprobs = NULL;
	assert_int_equal(pf_state_encode(&o.r, 1, FP, &buf, &len, e2, sizeof(e2)), -EINVAL);
	assert_non_null(strstr(e2, "logprobs"));
	owned_free(&o);
}

static void test_write_is_atomic(void **state)
{
	(void)state;
	char path[512], err[512];
	struct owned o[3];
	struct pf_state_record r[3];
	for (int i = 0; i < 3; i++) {
		make_record(&o[i], i, 2000, 500);
		r[i] = o[i].r;
	}
	snprintf(path, sizeof(path), "%s/atomic", tmpdir);
	assert_int_equal(pf_state_write(path, r, 1, FP, err, sizeof(err)), 0);
	size_t l0, l1;
	uint8_t *before = slurp(path, &l0);

	/* a write that runs out of room half way: RLIMIT_FSIZE makes write(2)
	 * fail with EFBIG like a full disk would with ENOSPC, and works for
	 * root (a read-only directory would not stop root) */
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = l0 + 100; /* the new file is three times larger */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	int rc = pf_state_write(path, r, 3, FP, err, sizeof(err));
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	printf("# write past the size limit: %s\n", err);
	assert_int_equal(rc, -EFBIG);
	assert_non_null(strstr(err, "cannot write"));
	uint8_t *after = slurp(path, &l1);
	assert_int_equal(l0, l1);
	assert_memory_equal(before, after, l0);
	assert_int_equal(count_entries("atomic.tmp"), 0);
	free(after);

	/* a directory that does not exist: nothing is created */
	char bad[600];
	snprintf(bad, sizeof(bad), "%s/no/such/dir/state", tmpdir);
	assert_int_equal(pf_state_write(bad, r, 1, FP, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot create"));

	/* the target replaced as a whole */
	assert_int_equal(pf_state_write(path, r, 3, FP, err, sizeof(err)), 0);
	struct pf_state_record *back;
	size_t n;
	assert_int_equal(pf_state_read(path, FP, &back, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 3);
	pf_state_records_free(back);
	free(before);
	for (int i = 0; i < 3; i++)
		owned_free(&o[i]);
}

static void test_read_errors_and_quarantine(void **state)
{
	(void)state;
	char path[512], err[512], moved[600], moved2[600];
	struct pf_state_record *recs;
	size_t n;
	snprintf(path, sizeof(path), "%s/qstate", tmpdir);
	/* no file: a normal start, and no message */
	err[0] = 'x';
	assert_int_equal(pf_state_read(path, FP, &recs, &n, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "");
	assert_int_equal(pf_state_quarantine(path, moved, sizeof(moved)), -ENOENT);

	/* a directory where the file should be */
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(pf_state_read(path, FP, &recs, &n, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(rmdir(path), 0);

	spit(path, "garbage, not a state file", 25);
	assert_int_equal(pf_state_read(path, FP, &recs, &n, err, sizeof(err)), -EBADMSG);
	assert_int_equal(pf_state_quarantine(path, moved, sizeof(moved)), 0);
	printf("# quarantined as %s\n", moved);
	assert_non_null(strstr(moved, "qstate.corrupt-"));
	assert_int_equal(access(path, F_OK), -1);
	size_t l;
	uint8_t *kept = slurp(moved, &l);
	assert_non_null(kept);
	assert_int_equal(l, 25);
	assert_memory_equal(kept, "garbage, not a state file", 25);
	free(kept);
	/* not loaded again */
	assert_int_equal(pf_state_read(path, FP, &recs, &n, err, sizeof(err)), -ENOENT);

	/* a second bad file in the same second keeps the first */
	spit(path, "second", 6);
	assert_int_equal(pf_state_quarantine(path, moved2, sizeof(moved2)), 0);
	assert_string_not_equal(moved, moved2);
	kept = slurp(moved, &l);
	assert_int_equal(l, 25);
	free(kept);
	assert_int_equal(count_entries("qstate.corrupt-"), 2);

	/* remove after a successful resume; no file is fine */
	size_t sl;
	uint8_t *s = small_file(1, &sl);
	spit(path, s, sl);
	free(s);
	assert_int_equal(pf_state_read(path, FP, &recs, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	pf_state_records_free(recs);
	assert_int_equal(pf_state_remove(path), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(pf_state_remove(path), 0);
	pf_state_records_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_every_bit_flip),
		cmocka_unit_test(test_version_and_model),
		cmocka_unit_test(test_absurd_counts),
		cmocka_unit_test(test_write_is_atomic),
		cmocka_unit_test(test_read_errors_and_quarantine),
	};
	return tu_run_group_tests("test_statefile", tests, setup_dir, teardown_dir);
}
