/*
 * pinfer-run — generate text with the engine in this process (no daemon).
 *
 * The quickest way to see a model answer: loads the GGUF, renders the chat
 * template when --chat is given, streams the reply to stdout as it is
 * generated and prints the timings to stderr.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/bench_common.h"
#include "tools/common/opts.h"
#include "runtime/text/chat.h"
#include "kernels/dtype.h"
#include "runtime/engine/engine.h"
#include "runtime/text/tok.h"

#define PROG "pinfer-run"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinfer-run [options] (--chat MESSAGE | --prompt TEXT)\n"
		"\n"
		"Generate text with the pinfer engine in this process.\n"
		"\n"
		"  -m, --model PATH         GGUF model (default models/SmolLM2-135M-Instruct.Q4_1.gguf)\n"
		"  -c, --chat MESSAGE       a user message, rendered with the model's chat template\n"
		"      --system TEXT        system message for --chat (default: the template's own)\n"
		"  -p, --prompt TEXT        raw text, tokenized as is\n"
		"      --max-tokens N       tokens to generate at most (default 128)\n"
		"      --temperature T      0 = greedy (default 0)\n"
		"      --top-k K, --top-p P, --min-p P, --repetition-penalty R, --seed S\n"
		"  -t, --threads N          CPU threads (default: every CPU this process may use)\n"
		"      --kv-memory BYTES    KV cache pool size (default 512M; K/M/G suffixes)\n"
		"  -h, --help               this text\n");
}

/* A number option, with this program's name on the message. */
static int parse_num(const char *s, const char *what, double lo, double hi, double *ret)
{
	return pf_opt_float(PROG, what, s, lo, hi, 0, ret);
}

static int parse_int(const char *s, const char *what, long long lo, long long hi, double *ret)
{
	long long v;
	int r = pf_opt_int(PROG, what, s, lo, hi, &v);
	if (!r)
		*ret = (double)v;
	return r;
}

struct out_state {
	int finished;
	struct pf_usage usage;
	enum pf_finish_reason why;
};

static void on_token(void *ctx, uint64_t id, void *user, int32_t index, int32_t token, const char *text, size_t len,
		     const struct pf_sample_result *res)
{
	fwrite(text, 1, len, stdout);
	fflush(stdout);
}

static void on_finish(void *ctx, uint64_t id, void *user, int32_t index, enum pf_finish_reason why, const char *text,
		      size_t len, const struct pf_usage *u)
{
	struct out_state *st = ctx;
	fwrite(text, 1, len, stdout);
	st->finished = 1;
	st->usage = *u;
	st->why = why;
}

int main(int argc, char **argv)
{
	/* -n is the number of completions in the pinfer tools: the length is
	 * --max-tokens, long only (tools/common/opts.h) */
	enum { O_TEMP = 256, O_TOPK, O_TOPP, O_MINP, O_REP, O_SEED, O_SYS, O_KVMEM, O_MAXTOK };
	static const struct pf_opt_hint hints[] = {
		{ 'n', "the length is --max-tokens (-n is the number of completions in pinfer)" }, { 0, 0 },
	};
	static const char shortopts[] = "m:c:p:t:h";
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' }, { "chat", required_argument, NULL, 'c' },
		{ "prompt", required_argument, NULL, 'p' }, { "max-tokens", required_argument, NULL, O_MAXTOK },
		{ "threads", required_argument, NULL, 't' }, { "temperature", required_argument, NULL, O_TEMP },
		{ "top-k", required_argument, NULL, O_TOPK }, { "top-p", required_argument, NULL, O_TOPP },
		{ "min-p", required_argument, NULL, O_MINP }, { "repetition-penalty", required_argument, NULL, O_REP },
		{ "seed", required_argument, NULL, O_SEED }, { "system", required_argument, NULL, O_SYS },
		{ "kv-memory", required_argument, NULL, O_KVMEM }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct pf_engine_config cfg = pf_engine_config_default();
	struct pf_request_params rp = pf_request_params_default();
	const char *chat = NULL, *prompt = NULL, *system = NULL;
	double v;
	int c;
	char err[512];

	rp.sampling.temperature = 0;
	rp.sampling.max_tokens = 128;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
		switch (c) {
		case 'm': cfg.model_path = optarg; break;
		case 'c': chat = optarg; break;
		case 'p': prompt = optarg; break;
		case O_MAXTOK: if (parse_int(optarg, "--max-tokens", 1, 1 << 20, &v)) return 2; rp.sampling.max_tokens = (int32_t)v; break;
		case 't': if (parse_int(optarg, "--threads", 0, 1024, &v)) return 2; cfg.n_threads = (int)v; break;
		case O_TEMP: if (parse_num(optarg, "--temperature", 0, 100, &v)) return 2; rp.sampling.temperature = (float)v; break;
		case O_TOPK: if (parse_int(optarg, "--top-k", -1, 1 << 24, &v)) return 2; rp.sampling.top_k = (int32_t)v; break;
		case O_TOPP: if (parse_num(optarg, "--top-p", 0, 1, &v)) return 2; rp.sampling.top_p = (float)v; break;
		case O_MINP: if (parse_num(optarg, "--min-p", 0, 1, &v)) return 2; rp.sampling.min_p = (float)v; break;
		case O_REP: if (parse_num(optarg, "--repetition-penalty", 0, 100, &v)) return 2; rp.sampling.repetition_penalty = (float)v; break;
		case O_SEED: if (parse_num(optarg, "--seed", 0, 1.8e19, &v)) return 2; rp.sampling.seed = (uint64_t)v; rp.sampling.has_seed = true; break;
		case O_SYS: system = optarg; break;
		case O_KVMEM: if (pf_bench_parse_size(PROG, optarg, "--kv-memory", "512M", &cfg.kv_memory)) return 2; break;
		case 'h': usage(stdout); return 0;
		default: pf_opt_error(PROG, argc, argv, shortopts, opts, hints); return 2;
		}
	}
	if (optind < argc || (!chat == !prompt)) {
		fprintf(stderr, "pinfer-run: give exactly one of --chat or --prompt\n");
		usage(stderr);
		return 2;
	}
	struct out_state st = { 0 };
	struct pf_engine_events ev = { .ctx = &st, .on_token = on_token, .on_finish = on_finish };
	struct pf_engine *e;
	if (pf_engine_create(&cfg, &ev, &e, err, sizeof(err))) {
		fprintf(stderr, "pinfer-run: %s\n", err);
		return 1;
	}
	fprintf(stderr, "pinfer-run: %s\n", pf_engine_describe(e));
	if (pf_engine_self_check(e))
		fprintf(stderr, "pinfer-run: kernel self-check: %s\n", pf_engine_self_check(e));
	const struct pf_tok *tok = pf_engine_tok(e);
	char *text = NULL;
	size_t tlen = 0;
	bool special = false;
	if (chat) {
		const struct pf_chat *ct = pf_engine_chat(e);
		if (!ct) {
			fprintf(stderr, "pinfer-run: the model has no chat template pinfer knows; use --prompt\n");
			pf_engine_destroy(e);
			return 1;
		}
		struct pf_chat_msg msgs[2];
		size_t nm = 0;
		if (system)
			msgs[nm++] = (struct pf_chat_msg){ "system", 6, system, strlen(system) };
		msgs[nm++] = (struct pf_chat_msg){ "user", 4, chat, strlen(chat) };
		size_t need = 0;
		pf_chat_render(ct, msgs, nm, true, NULL, 0, &need, err, sizeof(err));
		text = malloc(need + 1);
		if (!text || pf_chat_render(ct, msgs, nm, true, text, need + 1, &tlen, err, sizeof(err))) {
			fprintf(stderr, "pinfer-run: chat template: %s\n", err);
			pf_engine_destroy(e);
			free(text);
			return 1;
		}
		special = true; /* the rendered template's control tokens are real */
	} else {
		tlen = strlen(prompt);
		text = strdup(prompt);
	}
	size_t n_ids = 0;
	pf_tok_encode(tok, text, tlen, true, special, NULL, 0, &n_ids);
	int32_t *ids = malloc(sizeof(int32_t) * (n_ids + 1));
	if (!ids || pf_tok_encode(tok, text, tlen, true, special, ids, n_ids, &n_ids)) {
		fprintf(stderr, "pinfer-run: cannot tokenize the prompt\n");
		return 1;
	}
	uint64_t id;
	if (pf_engine_submit(e, ids, (int32_t)n_ids, &rp, NULL, &id, err, sizeof(err))) {
		fprintf(stderr, "pinfer-run: %s\n", err);
		return 1;
	}
	while (!st.finished) {
		int r = pf_engine_step(e);
		if (r < 0) {
			fprintf(stderr, "pinfer-run: engine step failed: %s\n", strerror(-r));
			break;
		}
	}
	printf("\n");
	const struct pf_usage *u = &st.usage;
	fprintf(stderr, "pinfer-run: %d prompt tokens, %d generated (%s); time to first token %.3f s, %.1f tokens/s after it\n",
		u->prompt_tokens, u->generated_tokens, st.why == PF_FINISH_STOP ? "stop" : "length", u->ttft_s,
		u->decode_s > 0 ? (u->generated_tokens - 1) / u->decode_s : 0.0);
	free(ids);
	free(text);
	pf_engine_destroy(e);
	return st.finished ? 0 : 1;
}
