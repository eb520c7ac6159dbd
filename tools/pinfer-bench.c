/*
 * pinfer-bench — engine benchmarks.
 *
 * Offline mode (default; engine only, no IPC) runs the workloads
 * llama.cpp's llama-batched-bench runs, so the two print comparable rows:
 * for each B in --npl, B sequences of --npp prompt tokens are prefilled
 * together, then --ntg decode steps of B tokens each.  Prefill speed is
 * B·npp / prefill time, decode speed B·ntg / decode time.
 *
 * Output: one line per B, tab-separated, easy for bench/run.sh to parse:
 *   pinfer  PP  TG  B  T_PP_s  S_PP_tok/s  T_TG_s  S_TG_tok/s  peak_rss_MiB
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tools/bench_common.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/dtype.h"
#include "runtime/model/model.h"
#include "runtime/engine/runner.h"

#define PROG "pinfer-bench"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinfer-bench [options]\n"
		"\n"
		"Offline engine benchmark (no daemon, no IPC), shaped like llama-batched-bench.\n"
		"\n"
		"  -m, --model PATH     GGUF model (default models/SmolLM2-135M-Instruct.Q4_1.gguf)\n"
		"      --npp N          prompt tokens per sequence (default 128)\n"
		"      --ntg N          generated tokens per sequence (default 128)\n"
		"      --npl LIST       comma-separated sequence counts (default 1,8,32,64)\n"
		"  -t, --threads N      CPU threads (default: every CPU this process may use)\n"
		"      --block-size N   KV block size 8, 16 or 32 (default 16)\n"
		"  -h, --help           this text\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' }, { "npp", required_argument, NULL, 'p' },
		{ "ntg", required_argument, NULL, 'g' }, { "npl", required_argument, NULL, 'b' },
		{ "threads", required_argument, NULL, 't' }, { "block-size", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' }, { 0 },
	};
	const char *model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
	char npl_buf[256] = "1,8,32,64";
	int npp = 128, ntg = 128, threads = 0, bs = 16, c;
	char err[512];

	while ((c = getopt_long(argc, argv, "m:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 'p': if (pf_bench_parse_int(PROG, optarg, "--npp", 1, 1 << 16, &npp)) return 2; break;
		case 'g': if (pf_bench_parse_int(PROG, optarg, "--ntg", 0, 1 << 16, &ntg)) return 2; break;
		case 'b': snprintf(npl_buf, sizeof(npl_buf), "%s", optarg); break;
		case 't': if (pf_bench_parse_int(PROG, optarg, "--threads", 0, 1024, &threads)) return 2; break;
		case 's': if (pf_bench_parse_int(PROG, optarg, "--block-size", 8, 32, &bs)) return 2; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	int npl[32], n_npl = 0, max_b = 0;
	for (char *save, *p = strtok_r(npl_buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		if (n_npl == 32 || pf_bench_parse_int(PROG, p, "--npl", 1, 4096, &npl[n_npl]))
			return 2;
		max_b = npl[n_npl] > max_b ? npl[n_npl] : max_b;
		n_npl++;
	}
	struct pf_model *m;
	if (pf_model_load(model, &m, err, sizeof(err))) {
		fprintf(stderr, "pinfer-bench: %s\n", err);
		return 1;
	}
	int32_t per_seq = (npp + ntg + 1 + bs - 1) / bs;
	struct pf_kv_config kv = { .n_blocks = per_seq * max_b, .block_size = bs, .kv_dtype = PF_DT_F16 };
	struct pf_backend be;
	if (pf_cpu_backend_create(&m->w, &kv, threads, &be, err, sizeof(err))) {
		fprintf(stderr, "pinfer-bench: %s\n", err);
		pf_model_free(m);
		return 1;
	}
	fprintf(stderr, "pinfer-bench: %s, backend %s, block size %d\n", model, be.ops->describe(be.ctx), bs);
	int32_t *prompt = malloc(sizeof(int32_t) * (size_t)npp * (size_t)max_b);
	int32_t *blocks = malloc(sizeof(int32_t) * (size_t)kv.n_blocks);
	int32_t *out = malloc(sizeof(int32_t) * (size_t)(ntg + 1) * (size_t)max_b);
	struct pf_run_seq *seqs = calloc((size_t)max_b, sizeof(*seqs));
	uint64_t rng = 1234567;
	for (int32_t i = 0; i < npp * max_b; i++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		prompt[i] = (int32_t)((rng >> 33) % (uint64_t)m->w.hp.n_vocab);
	}
	for (int32_t i = 0; i < kv.n_blocks; i++)
		blocks[i] = i;
	printf("#impl\tPP\tTG\tB\tT_PP_s\tS_PP\tT_TG_s\tS_TG\tRSS_MiB\n");
	int rc = 0;
	for (int k = 0; k < n_npl; k++) {
		int B = npl[k];
		for (int s = 0; s < B; s++) {
			seqs[s] = (struct pf_run_seq){
				.prompt = prompt + (size_t)s * npp, .n_prompt = npp, .n_gen = ntg + 1,
				.blocks = blocks + (size_t)s * per_seq, .n_blocks = per_seq,
				.out = out + (size_t)s * (ntg + 1),
			};
		}
		struct pf_run_stats st = { 0 };
		int r = pf_run_greedy(&be, &m->w.hp, seqs, B, npp, &st);
		if (r) {
			fprintf(stderr, "pinfer-bench: step failed: %s\n", strerror(-r));
			rc = 1;
			break;
		}
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		printf("pinfer\t%d\t%d\t%d\t%.3f\t%.2f\t%.3f\t%.2f\t%.1f\n", npp, ntg, B, st.prefill_s,
		       (double)B * npp / st.prefill_s, st.decode_s, st.decode_s > 0 ? (double)B * ntg / st.decode_s : 0.0,
		       (double)ru.ru_maxrss / 1024.0);
		fflush(stdout);
	}
	free(prompt); free(blocks); free(out); free(seqs);
	be.ops->destroy(be.ctx);
	pf_model_free(m);
	return rc;
}
