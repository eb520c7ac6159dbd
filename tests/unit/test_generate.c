/*
 * test_generate.c — greedy generation on SmolLM2-135M-Instruct against
 * llama.cpp, and batch invariance of the engine step.
 *
 * Golden data: tests/golden/generation_smollm2.txt, made by
 * tests/golden/gen_generation.py with llama-cpp-python (see its header).
 * Each case has the prompt ids, llama.cpp's 128 greedy tokens and its margin
 * between the top two logits at each position.  Our tokens must equal
 * llama.cpp's up to the first position where that margin is below 0.05 (a
 * near-tie that float rounding may legitimately flip); any earlier difference
 * is a bug.  At least 90% of the prompts must match all 128 tokens.
 *
 * The goldens run on every SIMD level the host has (AVX2, and AVX-512 where
 * present).  ISA invariance: the first-token logits of the short goldens are
 * bit-identical from the scalar reference, AVX2, the emulated AVX-512 and
 * real AVX-512 (kernels/cpu/quant.h's canonical order).
 *
 * Batch invariance: a row's arithmetic never depends on what else is in the
 * batch, so 16 prompts decoded together give bit-identical logits and the
 * same tokens as each alone, and prefill in chunks of 1, 7, 64, 512 gives the
 * same logits as one chunk.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/quant.h"
#include "kernels/dtype.h"
#include "runtime/model/model.h"
#include "runtime/engine/runner.h"
#include "tests/unit/testutil.h"

#define NEAR_TIE 0.05f
#define BS 16

struct gcase {
	char name[64];
	int32_t *prompt, *gen;
	float *margin;
	int n_prompt, n_gen;
};

struct fixture {
	struct pf_model *m;
	struct pf_backend be;
	struct gcase *cases;
	int n_cases;
};

static int load_cases(struct fixture *f)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/generation_smollm2.txt", tu_golden_dir());
	FILE *fp = fopen(path, "r");
	if (!fp) {
		fprintf(stderr, "cannot open %s\n", path);
		return -1;
	}
	size_t cap = 0;
	char *line = NULL;
	ssize_t len;
	while ((len = getline(&line, &cap, fp)) > 0) {
		if (line[0] != 'G' || line[1] != ' ')
			continue;
		line[strcspn(line, "\n")] = '\0';
		char *save, *tok[5];
		int nt = 0;
		for (char *p = strtok_r(line, " ", &save); p && nt < 5; p = strtok_r(NULL, " ", &save))
			tok[nt++] = p;
		if (nt != 5)
			continue;
		struct gcase *c = realloc(f->cases, sizeof(*c) * (size_t)(f->n_cases + 1));
		assert_non_null(c);
		f->cases = c;
		c = &f->cases[f->n_cases++];
		snprintf(c->name, sizeof(c->name), "%s", tok[1]);
		c->n_prompt = tu_parse_ids(tok[2], &c->prompt);
		c->n_gen = tu_parse_ids(tok[3], &c->gen);
		int nm = tu_parse_floats(tok[4], &c->margin);
		assert_true(c->n_prompt > 0 && c->n_gen > 0 && nm == c->n_gen);
	}
	free(line);
	fclose(fp);
	return f->n_cases;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[512];
	if (!f)
		return -1;
	*state = f; /* the teardown frees whatever was made */
	if (pf_model_load(tu_model_path(), &f->m, err, sizeof(err))) {
		fprintf(stderr, "model: %s (run `make model`)\n", err);
		return -1;
	}
	if (load_cases(f) <= 0)
		return -1;
	struct pf_kv_config kv = { .n_blocks = 2048, .block_size = BS, .kv_dtype = PF_DT_F16 };
	if (pf_cpu_backend_create(&f->m->w, &kv, 0, &f->be, err, sizeof(err))) {
		fprintf(stderr, "backend: %s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	if (f->be.ops)
		f->be.ops->destroy(f->be.ctx);
	if (f->m)
		pf_model_free(f->m);
	for (int i = 0; i < f->n_cases; i++) {
		free(f->cases[i].prompt);
		free(f->cases[i].gen);
		free(f->cases[i].margin);
	}
	free(f->cases);
	free(f);
	return 0;
}

/* Give each sequence its own run of consecutive blocks from block `base`. */
static int32_t *alloc_blocks(struct pf_run_seq *s, int n, int32_t base)
{
	int32_t total = 0;
	for (int i = 0; i < n; i++)
		total += (s[i].n_prompt + s[i].n_gen + BS - 1) / BS;
	int32_t *ids = malloc(sizeof(*ids) * (size_t)(total ? total : 1));
	assert_non_null(ids);
	int32_t k = 0;
	for (int i = 0; i < n; i++) {
		s[i].blocks = ids + k;
		s[i].n_blocks = (s[i].n_prompt + s[i].n_gen + BS - 1) / BS;
		for (int32_t j = 0; j < s[i].n_blocks; j++, k++)
			ids[k] = base + k;
	}
	assert_true(base + total <= 2048);
	return ids;
}

/* A CPU backend with its kernels picked as PF_ISA=`isa` picks them. */
static int backend_for_isa(struct fixture *f, const char *isa, struct pf_backend *be)
{
	const char *old = getenv("PF_ISA");
	char *saved = old ? strdup(old) : NULL, err[512];
	struct pf_kv_config kv = { .n_blocks = 2048, .block_size = BS, .kv_dtype = PF_DT_F16 };

	setenv("PF_ISA", isa, 1);
	int r = pf_cpu_backend_create(&f->m->w, &kv, 0, be, err, sizeof(err));
	if (saved)
		setenv("PF_ISA", saved, 1);
	else
		unsetenv("PF_ISA");
	free(saved);
	if (r)
		fprintf(stderr, "backend (%s): %s\n", isa, err);
	return r;
}

/* The goldens on one backend; returns the prompts diverging before a near-tie. */
static void greedy_goldens(struct fixture *f, struct pf_backend *be, const char *isa)
{
	const int group = 8;
	int full = 0, bad = 0;
	int n = f->n_cases;
	if (tu_asan() && n > 4)
		n = 4; /* the sanitizer build checks a few goldens */
	for (int g0 = 0; g0 < n; g0 += group) {
		int ng = n - g0 < group ? n - g0 : group;
		struct pf_run_seq seqs[8];
		memset(seqs, 0, sizeof(seqs));
		for (int i = 0; i < ng; i++) {
			struct gcase *c = &f->cases[g0 + i];
			seqs[i].prompt = c->prompt;
			seqs[i].n_prompt = c->n_prompt;
			seqs[i].n_gen = c->n_gen;
			seqs[i].out = calloc((size_t)c->n_gen, sizeof(int32_t));
			seqs[i].margin = calloc((size_t)c->n_gen, sizeof(float));
		}
		int32_t *ids = alloc_blocks(seqs, ng, 0);
		assert_int_equal(pf_run_greedy(be, &f->m->w.hp, seqs, ng, 512, NULL), 0);
		for (int i = 0; i < ng; i++) {
			struct gcase *c = &f->cases[g0 + i];
			int first_diff = -1, first_tie = -1;
			for (int j = 0; j < c->n_gen; j++) {
				if (first_tie < 0 && c->margin[j] < NEAR_TIE)
					first_tie = j;
				if (first_diff < 0 && seqs[i].out[j] != c->gen[j])
					first_diff = j;
			}
			if (first_diff < 0) {
				full++;
				printf("# %-24s prompt %4d tokens: all %d tokens match\n", c->name, c->n_prompt, c->n_gen);
			} else {
				int ok = first_tie >= 0 && first_diff >= first_tie;
				printf("# %-24s prompt %4d tokens: diverged at %d (llama.cpp %d, ours %d), llama.cpp margin there %.4f, first near-tie at %d%s\n",
				       c->name, c->n_prompt, first_diff, c->gen[first_diff], seqs[i].out[first_diff],
				       (double)c->margin[first_diff], first_tie, ok ? "" : "  <-- BUG: before any near-tie");
				bad += !ok;
			}
			free(seqs[i].out);
			free(seqs[i].margin);
		}
		free(ids);
	}
	printf("# %s: %d of %d prompts match all tokens; %d diverge before a near-tie\n", isa, full, n, bad);
	assert_int_equal(bad, 0);
	assert_true(full * 10 >= n * 9);
}

/* Every SIMD level the host has, not only the best one (the scalar reference
 * and the emulated AVX-512 are held to these logits bit for bit below: a
 * whole scalar run takes ~20 minutes). */
static void test_greedy_matches_llamacpp(void **state)
{
	struct fixture *f = *state;
	const enum pf_isa hw = pf_cpu_isa_detect();

	greedy_goldens(f, &f->be, pf_isa_name(hw));
	for (int isa = PF_ISA_AVX2; isa < (int)hw && hw <= PF_ISA_AVX512VNNI; isa++) {
		struct pf_backend be;
		assert_int_equal(backend_for_isa(f, pf_isa_name((enum pf_isa)isa), &be), 0);
		greedy_goldens(f, &be, pf_isa_name((enum pf_isa)isa));
		be.ops->destroy(be.ctx);
	}
}

/* Run `n` prompts (the first n golden cases, cut to 48 generated tokens)
 * with the given grouping and chunk size; return tokens (n, 48). */
static int32_t *run_set(struct fixture *f, int n, int together, int32_t chunk, float *first_logits)
{
	const int ngen = 48;
	int32_t *out = calloc((size_t)n * ngen, sizeof(int32_t));
	assert_non_null(out);
	for (int g0 = 0; g0 < n; g0 += together) {
		int ng = n - g0 < together ? n - g0 : together;
		struct pf_run_seq *seqs = calloc((size_t)ng, sizeof(*seqs));
		for (int i = 0; i < ng; i++) {
			struct gcase *c = &f->cases[g0 + i];
			seqs[i].prompt = c->prompt;
			seqs[i].n_prompt = c->n_prompt;
			seqs[i].n_gen = ngen;
			seqs[i].out = out + (size_t)(g0 + i) * ngen;
			if (first_logits)
				seqs[i].logits_first = first_logits + (size_t)(g0 + i) * f->m->w.hp.n_vocab;
		}
		/* a different block placement per grouping: invariance must
		 * hold whatever blocks a sequence gets */
		int32_t *ids = alloc_blocks(seqs, ng, together == 1 ? 700 : 0);
		assert_int_equal(pf_run_greedy(&f->be, &f->m->w.hp, seqs, ng, chunk, NULL), 0);
		free(ids);
		free(seqs);
	}
	return out;
}

static void test_batch_invariance(void **state)
{
	struct fixture *f = *state;
	int n = f->n_cases < 16 ? f->n_cases : 16;
	if (tu_asan())
		n = n < 4 ? n : 4;
	size_t nv = (size_t)f->m->w.hp.n_vocab;
	float *la = malloc(sizeof(float) * nv * (size_t)n), *lb = malloc(sizeof(float) * nv * (size_t)n);
	int32_t *alone = run_set(f, n, 1, 512, la);
	int32_t *together = run_set(f, n, n, 512, lb);
	assert_memory_equal(alone, together, sizeof(int32_t) * (size_t)n * 48);
	assert_memory_equal(la, lb, sizeof(float) * nv * (size_t)n);
	printf("# %d prompts: decoded together == alone (tokens and logits bit-identical)\n", n);
	int32_t chunks[] = { 1, 7, 64, 512 };
	int nc = tu_asan() ? 2 : 4;
	for (int i = 0; i < nc; i++) {
		int m = chunks[i] == 1 ? (n < 4 ? n : 4) : n; /* chunk 1 is one step per token: keep it short */
		int32_t *ch = run_set(f, m, m, chunks[i], lb);
		assert_memory_equal(alone, ch, sizeof(int32_t) * (size_t)m * 48);
		assert_memory_equal(la, lb, sizeof(float) * nv * (size_t)m);
		printf("# prefill chunk %3d: tokens and logits identical for %d prompts\n", chunks[i], m);
		free(ch);
	}
	free(alone);
	free(together);
	free(la);
	free(lb);
}

/*
 * The same logits on every CPU: the first-token logits of the short golden
 * prompts (up to 64 tokens, all 29 of them; the slow scalar and emulated
 * levels the 11 of up to 8 tokens, all with PF_ISA_CHECK_ALL=1) are
 * bit-identical whichever ISA computes them — the scalar reference, AVX2, the emulated AVX-512 kernels
 * (PF_ISA=avx512emu: the AVX-512 code's arithmetic on any AVX2 CPU) and real
 * AVX-512 where the CPU has it.  The kernels sum in one canonical order
 * (kernels/cpu/quant.h), so this holds exactly, not within a tolerance.
 */
static void test_logits_identical_across_isas(void **state)
{
	struct fixture *f = *state;
	const enum pf_isa hw = pf_cpu_isa_detect();
	const char *isas[4];
	int n_isa = 0;
	isas[n_isa++] = "scalar";
	if (hw >= PF_ISA_AVX2) {
		isas[n_isa++] = "avx2";
		isas[n_isa++] = "avx512emu";
	}
	if (hw >= PF_ISA_AVX512VNNI)
		isas[n_isa++] = "avx512";
	/* The scalar reference and the emulation run ~20x slower than AVX2:
	 * they take the prompts of up to 8 tokens (11 of them) unless
	 * PF_ISA_CHECK_ALL=1; the native SIMD levels take all 29. */
	const bool all = getenv("PF_ISA_CHECK_ALL") && !strcmp(getenv("PF_ISA_CHECK_ALL"), "1");
	int idx[64], n = 0, n_slow = 0;
	for (int i = 0; i < f->n_cases && n < 64; i++)
		if (f->cases[i].n_prompt <= 64)
			idx[n++] = i;
	/* the short ones first: the slow levels take a prefix of idx */
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (f->cases[idx[j]].n_prompt < f->cases[idx[i]].n_prompt) {
				int t = idx[i];
				idx[i] = idx[j];
				idx[j] = t;
			}
	while (n_slow < n && (all || f->cases[idx[n_slow]].n_prompt <= 8))
		n_slow++;
	if (tu_asan() && n > 3)
		n = n_slow = 3;
	assert_true(n > 0 && n_slow > 0);
	const size_t nv = (size_t)f->m->w.hp.n_vocab;
	float *first = malloc(sizeof(float) * nv * (size_t)n), *other = malloc(sizeof(float) * nv * (size_t)n);
	assert_non_null(first);
	assert_non_null(other);
	/* avx2 (or the best native level) is the reference for all the prompts;
	 * scalar and avx512emu are held to its first n_slow, which equals
	 * holding them to each other */
	int order[4], n_order = 0;
	for (int k = 1; k < n_isa; k++)
		if (strcmp(isas[k], "avx512emu"))
			order[n_order++] = k;
	order[n_order++] = 0;
	for (int k = 1; k < n_isa; k++)
		if (!strcmp(isas[k], "avx512emu"))
			order[n_order++] = k;
	for (int oi = 0; oi < n_order; oi++) {
		const int k = order[oi];
		const bool slow = !strcmp(isas[k], "scalar") || !strcmp(isas[k], "avx512emu");
		const int m = slow ? n_slow : n;
		struct pf_backend be;
		struct pf_run_seq seqs[64];
		memset(seqs, 0, sizeof(seqs));
		int32_t out[64];
		assert_int_equal(backend_for_isa(f, isas[k], &be), 0);
		for (int i = 0; i < m; i++) {
			seqs[i].prompt = f->cases[idx[i]].prompt;
			seqs[i].n_prompt = f->cases[idx[i]].n_prompt;
			seqs[i].n_gen = 1;
			seqs[i].out = out + i;
			seqs[i].logits_first = (oi ? other : first) + (size_t)i * nv;
		}
		int32_t *ids = alloc_blocks(seqs, m, 0);
		assert_int_equal(pf_run_greedy(&be, &f->m->w.hp, seqs, m, 512, NULL), 0);
		free(ids);
		be.ops->destroy(be.ctx);
		if (oi == 0) {
			printf("# %-9s first-token logits of %d prompts: the reference\n", isas[k], m);
			continue;
		}
		int differ = 0;
		for (int i = 0; i < m; i++) {
			const float *a = first + (size_t)i * nv, *b = other + (size_t)i * nv;
			if (memcmp(a, b, sizeof(float) * nv)) {
				size_t j = 0;
				while (j < nv && !memcmp(a + j, b + j, sizeof(float)))
					j++;
				printf("# %s: %s logits differ from %s's (first at token %zu: %.9g vs %.9g)\n",
				       f->cases[idx[i]].name, isas[k], isas[order[0]], j, (double)b[j], (double)a[j]);
				differ++;
			}
		}
		printf("# %-9s first-token logits of %d prompts x %zu: %s %s's\n", isas[k], m, nv,
		       differ ? "DIFFERENT from" : "bit-identical to", isas[order[0]]);
		assert_int_equal(differ, 0);
	}
	if (hw < PF_ISA_AVX512VNNI)
		printf("# avx512vnni: not on this CPU (its kernels checked through avx512emu above)\n");
	free(first);
	free(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greedy_matches_llamacpp),
		cmocka_unit_test(test_batch_invariance),
		cmocka_unit_test(test_logits_identical_across_isas),
	};
	tu_need_model("test_generate");
	return tu_run_group_tests("test_generate", tests, setup, teardown);
}
