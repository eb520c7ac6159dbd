/* runner.c — see runner.h. */
#include "runtime/engine/runner.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int32_t pf_argmax(const float *logits, int32_t n, float *ret_margin)
{
	int32_t best = 0;
	float b1 = logits[0], b2 = -__builtin_inff();
	for (int32_t i = 1; i < n; i++) {
		if (logits[i] > b1) {
			b2 = b1;
			b1 = logits[i];
			best = i;
		} else if (logits[i] > b2) {
			b2 = logits[i];
		}
	}
	if (ret_margin)
		*ret_margin = b1 - b2;
	return best;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int pf_run_greedy(struct pf_backend *be, const struct pf_hparams *hp, struct pf_run_seq *seqs, int32_t n_seqs,
		  int32_t prefill_chunk, struct pf_run_stats *stats)
{
	int64_t cap = 0;
	int32_t *tok = NULL, *pos = NULL, *seq = NULL, *rows = NULL, *row_seq = NULL, *n_table = NULL, *n_prompt = NULL;
	const int32_t **tables = NULL;
	float *logits = NULL;
	int r = 0;

	if (prefill_chunk < 1 || n_seqs < 1)
		return -EINVAL;
	for (int32_t s = 0; s < n_seqs; s++) {
		struct pf_run_seq *q = &seqs[s];
		int64_t need = (int64_t)q->n_prompt + q->n_gen;
		if (q->n_prompt < 1 || q->n_gen < 0 || need > (int64_t)q->n_blocks * be->kv.block_size)
			return -EINVAL;
		q->n_fed = 0;
		q->n_out = 0;
		cap += q->n_prompt < prefill_chunk ? q->n_prompt : prefill_chunk;
	}
	tok = malloc((size_t)cap * sizeof(*tok));
	pos = malloc((size_t)cap * sizeof(*pos));
	seq = malloc((size_t)cap * sizeof(*seq));
	rows = malloc((size_t)n_seqs * sizeof(*rows));
	row_seq = malloc((size_t)n_seqs * sizeof(*row_seq));
	n_table = malloc((size_t)n_seqs * sizeof(*n_table));
	n_prompt = malloc((size_t)n_seqs * sizeof(*n_prompt));
	tables = malloc((size_t)n_seqs * sizeof(*tables));
	logits = malloc((size_t)n_seqs * (size_t)hp->n_vocab * sizeof(*logits));
	if (!tok || !pos || !seq || !rows || !row_seq || !n_table || !n_prompt || !tables || !logits) {
		r = -ENOMEM;
		goto out;
	}
	for (int32_t s = 0; s < n_seqs; s++) {
		tables[s] = seqs[s].blocks;
		n_table[s] = seqs[s].n_blocks;
		n_prompt[s] = seqs[s].n_prompt;
	}
	for (;;) {
		int32_t nt = 0, nl = 0;
		bool prefill = false;
		for (int32_t s = 0; s < n_seqs; s++) {
			struct pf_run_seq *q = &seqs[s];
			if (q->n_fed < q->n_prompt) {
				int32_t n = q->n_prompt - q->n_fed;
				n = n < prefill_chunk ? n : prefill_chunk;
				for (int32_t i = 0; i < n; i++) {
					tok[nt] = q->prompt[q->n_fed + i];
					pos[nt] = q->n_fed + i;
					seq[nt++] = s;
				}
				q->n_fed += n;
				prefill = true;
				if (q->n_fed == q->n_prompt && q->n_gen > 0) {
					rows[nl] = nt - 1;
					row_seq[nl++] = s;
				}
			} else if (q->n_out < q->n_gen && q->n_out > 0) {
				/* feed the last generated token; the final one is never fed */
				tok[nt] = q->out[q->n_out - 1];
				pos[nt] = q->n_prompt + q->n_out - 1;
				seq[nt++] = s;
				rows[nl] = nt - 1;
				row_seq[nl++] = s;
			}
		}
		if (nt == 0)
			break;
		struct pf_batch b = {
			.n_tokens = nt, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = n_seqs,
			.block_table = tables, .n_table = n_table, .n_logits = nl, .logit_rows = rows,
			.n_prompt = n_prompt,
		};
		double t0 = now_s();
		r = be->ops->forward(be->ctx, &b, logits);
		if (r)
			goto out;
		double dt = now_s() - t0;
		if (stats) {
			stats->steps++;
			if (prefill) {
				stats->prefill_s += dt;
				stats->prefill_tokens += nt;
			} else {
				stats->decode_s += dt;
				stats->decode_tokens += nt;
			}
		}
		for (int32_t i = 0; i < nl; i++) {
			struct pf_run_seq *q = &seqs[row_seq[i]];
			const float *lg = logits + (size_t)i * hp->n_vocab;
			float m;
			if (q->n_out == 0 && q->logits_first)
				memcpy(q->logits_first, lg, (size_t)hp->n_vocab * sizeof(float));
			int32_t id = pf_argmax(lg, hp->n_vocab, &m);
			if (q->margin)
				q->margin[q->n_out] = m;
			q->out[q->n_out++] = id;
		}
	}
out:
	free(tok); free(pos); free(seq); free(rows); free(row_seq); free(n_table); free(n_prompt); free(tables); free(logits);
	return r;
}
