/*
 * test_perplexity.c — perplexity of SmolLM2-135M-Instruct on a fixed ~11k
 * token text, computed the way `llama-perplexity -c 512` does, must be
 * within 1% of llama.cpp's (tests/golden/perplexity_smollm2.txt, made by
 * tests/golden/gen_perplexity.py).
 *
 * llama-perplexity's method: the token stream is cut into non-overlapping
 * windows of n_ctx tokens; each window is evaluated from an empty cache; only
 * the second half is scored: for j in [n_ctx/2, n_ctx - 1) the negative
 * log-likelihood of token j+1 under the logits of position j.  (This model
 * adds no BOS, so no token is replaced.)  ppl = exp(mean NLL).
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
#include "kernels/dtype.h"
#include "runtime/model/model.h"
#include "tests/unit/testutil.h"

struct golden {
	int32_t n_ctx, first, n_chunks;
	int32_t *tokens;
	int32_t n_tokens;
	double *chunk_nll;
	double ppl;
};

static void load_golden(struct golden *g)
{
	char path[512], *line = NULL;
	size_t cap = 0;
	snprintf(path, sizeof(path), "%s/perplexity_smollm2.txt", tu_golden_dir());
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s", path);
	memset(g, 0, sizeof(*g));
	int32_t total = 0;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = '\0';
		char key[32];
		long v;
		if (!strncmp(line, "P ", 2) && sscanf(line, "P %31s %ld", key, &v) == 2) {
			if (!strcmp(key, "n_ctx"))
				g->n_ctx = (int32_t)v;
			else if (!strcmp(key, "first"))
				g->first = (int32_t)v;
			else if (!strcmp(key, "n_chunks"))
				g->n_chunks = (int32_t)v;
			else if (!strcmp(key, "n_tokens"))
				total = (int32_t)v;
		} else if (!strncmp(line, "TOK ", 4)) {
			char *sp = strchr(line + 4, ' ');
			int32_t *ids = NULL;
			assert_non_null(sp);
			int n = tu_parse_ids(sp + 1, &ids);
			assert_true(n > 0);
			g->tokens = realloc(g->tokens, sizeof(int32_t) * (size_t)(g->n_tokens + n));
			memcpy(g->tokens + g->n_tokens, ids, sizeof(int32_t) * (size_t)n);
			g->n_tokens += n;
			free(ids);
		} else if (!strncmp(line, "CHUNK ", 6)) {
			int i;
			double nll;
			if (sscanf(line, "CHUNK %d %lf", &i, &nll) == 2 && i >= 0 && i < 4096) {
				g->chunk_nll = realloc(g->chunk_nll, sizeof(double) * (size_t)(i + 1));
				g->chunk_nll[i] = nll;
			}
		} else if (!strncmp(line, "PPL ", 4)) {
			g->ppl = strtod(line + 4, NULL);
		}
	}
	free(line);
	fclose(f);
	assert_int_equal(g->n_tokens, total);
	assert_true(g->n_ctx > 0 && g->first > 0 && g->n_chunks > 0 && g->ppl > 1);
}

static void test_perplexity_matches_llamacpp(void **state)
{
	(void)state;
	struct golden g;
	load_golden(&g);
	struct pf_model *m;
	char err[512];
	if (pf_model_load(tu_model_path(), &m, err, sizeof(err)))
		fail_msg("model: %s", err);
	const int32_t bs = 16, nb = g.n_ctx / bs, nv = m->w.hp.n_vocab;
	struct pf_kv_config kv = { .n_blocks = nb, .block_size = bs, .kv_dtype = PF_DT_F16 };
	struct pf_backend be;
	if (pf_cpu_backend_create(&m->w, &kv, 0, &be, err, sizeof(err)))
		fail_msg("backend: %s", err);
	int32_t n_scored = g.n_ctx - g.first - 1;
	int32_t *pos = malloc(sizeof(int32_t) * (size_t)g.n_ctx), *seq = calloc((size_t)g.n_ctx, sizeof(int32_t));
	int32_t *rows = malloc(sizeof(int32_t) * (size_t)n_scored), *table = malloc(sizeof(int32_t) * (size_t)nb);
	float *logits = malloc(sizeof(float) * (size_t)n_scored * (size_t)nv);
	for (int32_t i = 0; i < g.n_ctx; i++)
		pos[i] = i;
	for (int32_t i = 0; i < n_scored; i++)
		rows[i] = g.first + i;
	for (int32_t i = 0; i < nb; i++)
		table[i] = i;
	int chunks = g.n_chunks;
	if (tu_asan())
		chunks = 1; /* the sanitizer build checks the path, not the figure */
	double nll = 0, their = 0;
	int64_t count = 0;
	for (int c = 0; c < chunks; c++) {
		const int32_t *tok = g.tokens + (size_t)c * g.n_ctx;
		const int32_t *tables[1] = { table };
		int32_t ntab = nb;
		struct pf_batch b = {
			.n_tokens = g.n_ctx, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = 1,
			.block_table = tables, .n_table = &ntab, .n_logits = n_scored, .logit_rows = rows,
		};
		assert_int_equal(be.ops->forward(be.ctx, &b, logits), 0);
		double cn = 0;
		for (int32_t i = 0; i < n_scored; i++) {
			const float *lg = logits + (size_t)i * nv;
			float mx = lg[0];
			for (int32_t v = 1; v < nv; v++)
				mx = lg[v] > mx ? lg[v] : mx;
			double sum = 0;
			for (int32_t v = 0; v < nv; v++)
				sum += exp((double)(lg[v] - mx));
			int32_t next = tok[g.first + i + 1];
			cn += -((double)(lg[next] - mx) - log(sum));
		}
		nll += cn;
		their += g.chunk_nll[c];
		count += n_scored;
		printf("# chunk %2d: NLL %.3f (llama.cpp %.3f), running ppl %.4f\n", c, cn, g.chunk_nll[c], exp(nll / (double)count));
	}
	double ppl = exp(nll / (double)count), ref = chunks == g.n_chunks ? g.ppl : exp(their / (double)count);
	printf("# perplexity %.4f, llama.cpp %.4f (%+.3f%%) over %d chunks of %d\n", ppl, ref, 100 * (ppl / ref - 1), chunks,
	       g.n_ctx);
	assert_true(fabs(ppl / ref - 1) < 0.01);
	be.ops->destroy(be.ctx);
	pf_model_free(m);
	free(pos); free(seq); free(rows); free(table); free(logits); free(g.tokens); free(g.chunk_nll);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_perplexity_matches_llamacpp),
	};

	tu_need_model("test_perplexity");
	return tu_run_group_tests("test_perplexity", tests, NULL, NULL);
}
