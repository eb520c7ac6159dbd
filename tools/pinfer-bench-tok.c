/*
 * pinfer-bench-tok — tokenizer throughput: encode and decode MB/s on a few
 * MB of mixed text (prose, code, numbers, CJK, Cyrillic, emoji and, when
 * the file is there, the golden test inputs), generated deterministically
 * so bench/tok_bench_llamacpp.py can time llama.cpp on the same bytes
 * (--dump-text writes them out).
 *
 * The text is cut into documents of about --doc-size bytes (prompts, not
 * one 4 MB string), each encoded with one pf_tok_encode() call.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/model/gguf.h"
#include "runtime/text/tok.h"

static const char *const fragments[] = {
	/* prose */
	"It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
	"foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
	"it was the season of Darkness, it was the spring of hope, it was the winter of despair.\n\n",
	"The scheduler rebuilds the batch every iteration: finished sequences leave, new ones join, and prefill "
	"chunks share the forward pass with decodes. Blocks of the KV cache are addressed through per-sequence "
	"block tables, so memory is allocated on demand and freed the moment a request completes.\n",
	"Q: What's the capital of France?\nA: Paris. It's also the largest city; they've lived there since "
	"the 3rd century BC, and I'm sure you'll agree it'd be worth a visit.\n",
	"Mr. Smith went to Washington D.C. on Jan. 5th, 2021 at 3:45 p.m. -- he paid $1,234.56 (incl. 20% VAT).\n",
	/* code */
	"static int add(int a, int b)\n{\n\treturn a + b;\n}\n\nint main(void)\n{\n\tfor (size_t i = 0; i < n; ++i)\n"
	"\t\tsum += x[i] * y[i];\n\tprintf(\"%d\\n\", add(1, 2));\n\treturn 0;\n}\n",
	"def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n"
	"print([fib(i) for i in range(10)])  # 0 1 1 2 3 5 8\n",
	"{\"model\": \"smollm2\", \"params\": {\"temperature\": 0.7, \"top_p\": 0.95}, \"stop\": [\"\\n\"], "
	"\"tags\": [\"a\", \"b\"]}\n",
	"<html><body><div class=\"x\">Hi &amp; bye</div></body></html>\n    \n\t\t  x = 1;\n",
	/* numbers */
	"3141592653589793238462643383279502884197169399375105820974944592 2024-06-01 12:34:56 192.168.0.1 "
	"0xDEADBEEF 6.022e23\n",
	/* CJK, Cyrillic, Arabic, Hindi, emoji */
	"中华人民共和国成立于1949年。我爱自然语言处理。机器学习是人工智能的一个分支。\n",
	"東京は日本の首都です。こんにちは世界、カタカナとひらがな。\n",
	"안녕하세요 세계, 한국어 토크나이저 테스트입니다.\n",
	"Съешь же ещё этих мягких французских булок, да выпей чаю. Привет, мир!\n",
	"مرحبا بالعالم — नमस्ते दुनिया — Γειά σου Κόσμε\n",
	"emoji 🚀 launch 👍🏽 👨‍👩‍👧‍👦 🇯🇵 ✔ ©️\n",
};

/* Deterministic PRNG (SplitMix64): the text must be the same every run. */
static uint64_t next_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct pool {
	char **s;
	size_t *len;
	size_t n, cap;
};

static int pool_add(struct pool *p, const char *s, size_t len)
{
	if (p->n == p->cap) {
		size_t c = p->cap ? 2 * p->cap : 64;
		char **ns = realloc(p->s, c * sizeof(*ns));
		size_t *nl;
		if (!ns)
			return -ENOMEM;
		p->s = ns;
		nl = realloc(p->len, c * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		p->len = nl;
		p->cap = c;
	}
	p->s[p->n] = malloc(len + 1);
	if (!p->s[p->n])
		return -ENOMEM;
	memcpy(p->s[p->n], s, len);
	p->len[p->n++] = len;
	return 0;
}

/* Well-formed UTF-8 without C0 controls other than tab/newline/CR. */
static bool valid_text(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t l = s[i] < 0x80 ? 1 : (s[i] & 0xe0) == 0xc0 ? 2 : (s[i] & 0xf0) == 0xe0 ? 3 :
			   (s[i] & 0xf8) == 0xf0 ? 4 : 0;
		if (!l || i + l > n || (s[i] < 0x20 && s[i] != '\n' && s[i] != '\t' && s[i] != '\r') ||
		    s[i] == 0xc0 || s[i] == 0xc1 || s[i] == 0xed || s[i] > 0xf4)
			return false;
		for (size_t k = 1; k < l; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		i += l;
	}
	return true;
}

/* Golden inputs that are ordinary text (T records), for variety. */
static void add_golden(struct pool *p, const char *path)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;

	if (!fp)
		return;
	while (getline(&line, &cap, fp) > 0) {
		char *h, *e;
		size_t n, k;
		char *b;
		if (strncmp(line, "T 0 0 ", 6))
			continue;
		h = line + 6;
		e = strchr(h, ' ');
		if (!e || *h == '-')
			continue;
		n = (size_t)(e - h) / 2;
		b = malloc(n + 1);
		if (!b)
			break;
		for (k = 0; k < n; k++) {
			unsigned v;
			sscanf(h + 2 * k, "%2x", &v);
			b[k] = (char)v;
		}
		/* text, not the invalid-UTF-8 and control-byte probes */
		if (valid_text((const uint8_t *)b, n))
			pool_add(p, b, n);
		free(b);
	}
	free(line);
	fclose(fp);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinfer-bench-tok --model PATH [options]\n"
		"\n"
		"Time the tokenizer on a deterministic mix of prose, code, numbers, CJK and\n"
		"emoji.  Prints encode and decode throughput in MB/s of text.\n"
		"\n"
		"  -m, --model PATH      the GGUF file\n"
		"      --mbytes N        size of the text in MiB (default 4)\n"
		"      --doc-size N      bytes per document / encode call (default 4096)\n"
		"      --golden PATH     mix in the T inputs of a golden file\n"
		"                        (default tests/golden/tokenizer_smollm2.txt if present)\n"
		"      --dump-text PATH  write the text (documents separated by a NUL byte) and exit\n"
		"      --min-time S      repeat each measurement for at least S seconds (default 1)\n"
		"  -h, --help            this text\n");
}

int main(int argc, char **argv)
{
	/* -n and -t are completions and threads in the pinfer tools: long only here */
	enum { O_MBYTES = 256, O_MINTIME };
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "mbytes", required_argument, NULL, O_MBYTES },
		{ "doc-size", required_argument, NULL, 'D' },
		{ "golden", required_argument, NULL, 'G' },
		{ "dump-text", required_argument, NULL, 'O' },
		{ "min-time", required_argument, NULL, O_MINTIME },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *model = NULL, *golden = "tests/golden/tokenizer_smollm2.txt", *dump = NULL;
	double mib = 4, min_time = 1;
	size_t doc_size = 4096, total = 0, n_docs = 0, *doc_off = NULL, *n_ids = NULL, ids_total = 0;
	struct pool p = { 0 };
	uint64_t seed = 20240601;
	char *text = NULL, err[256] = "", *buf = NULL;
	int32_t **ids = NULL;
	struct pf_gguf *g = NULL;
	struct pf_tok *t = NULL;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case O_MBYTES: mib = atof(optarg); break;
		case 'D': doc_size = strtoul(optarg, NULL, 10); break;
		case 'G': golden = optarg; break;
		case 'O': dump = optarg; break;
		case O_MINTIME: min_time = atof(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if ((!model && !dump) || mib <= 0 || doc_size < 16) {
		usage(stderr);
		return 2;
	}

	for (size_t i = 0; i < sizeof(fragments) / sizeof(fragments[0]); i++)
		pool_add(&p, fragments[i], strlen(fragments[i]));
	add_golden(&p, golden);

	/* documents: fragments drawn at random (prose weighted up by the
	 * pool's make-up), cut at doc_size */
	total = (size_t)(mib * 1024 * 1024);
	text = malloc(total + doc_size + 4096);
	doc_off = malloc((total / 16 + 2) * sizeof(*doc_off));
	if (!text || !doc_off)
		goto out;
	{
		size_t o = 0;
		while (o < total) {
			size_t start = o;
			doc_off[n_docs++] = o;
			while (o - start < doc_size) {
				size_t k = next_rand(&seed) % p.n;
				/* every other draw from the hand-written fragments so
				 * the golden strings do not dominate */
				if (next_rand(&seed) & 1)
					k %= sizeof(fragments) / sizeof(fragments[0]);
				if (o - start + p.len[k] > doc_size + 2048)
					break;
				memcpy(text + o, p.s[k], p.len[k]);
				o += p.len[k];
			}
			if (o == start) {
				memcpy(text + o, fragments[0], strlen(fragments[0]));
				o += strlen(fragments[0]);
			}
		}
		total = o;
		doc_off[n_docs] = o;
	}

	if (dump) {
		FILE *fp = fopen(dump, "wb");
		if (!fp) {
			fprintf(stderr, "pinfer-bench-tok: %s: %s\n", dump, strerror(errno));
			goto out;
		}
		for (size_t d = 0; d < n_docs; d++) {
			fwrite(text + doc_off[d], 1, doc_off[d + 1] - doc_off[d], fp);
			fputc(0, fp);
		}
		fclose(fp);
		printf("%zu documents, %zu bytes -> %s\n", n_docs, total, dump);
		rc = 0;
		goto out;
	}

	if (pf_gguf_open(model, &g, err, sizeof(err)) || pf_tok_load(g, &t, err, sizeof(err))) {
		fprintf(stderr, "pinfer-bench-tok: %s\n", err);
		goto out;
	}
	ids = calloc(n_docs, sizeof(*ids));
	n_ids = calloc(n_docs, sizeof(*n_ids));
	if (!ids || !n_ids)
		goto out;
	for (size_t d = 0; d < n_docs; d++) {
		size_t len = doc_off[d + 1] - doc_off[d], n = 0;
		pf_tok_encode(t, text + doc_off[d], len, false, false, NULL, 0, &n);
		ids[d] = malloc((n + 1) * sizeof(**ids));
		if (!ids[d] || pf_tok_encode(t, text + doc_off[d], len, false, false, ids[d], n, &n_ids[d]))
			goto out;
		ids_total += n_ids[d];
	}
	printf("text: %zu documents, %.2f MiB, %zu tokens (%.2f bytes/token), vocab %d (%s)\n",
	       n_docs, (double)total / (1 << 20), ids_total, (double)total / (double)ids_total,
	       pf_tok_n_vocab(t), pf_tok_pre_name(t));

	for (int mode = 0; mode < 2; mode++) {
		double t0 = now(), el;
		size_t reps = 0, cap = 0;
		int32_t *out = NULL;
		do {
			for (size_t d = 0; d < n_docs; d++) {
				size_t len = doc_off[d + 1] - doc_off[d], n = 0;
				if (cap < 2 * n_ids[d] + 16) {
					cap = 4 * (n_ids[d] + 16);
					free(out);
					out = malloc(cap * sizeof(*out));
					if (!out)
						goto out;
				}
				/* parse_special may change the answer (the golden
				 * strings hold special texts); plain must not */
				if (pf_tok_encode(t, text + doc_off[d], len, false, mode, out, cap, &n) ||
				    (!mode && n != n_ids[d])) {
					fprintf(stderr, "pinfer-bench-tok: encode changed its answer\n");
					free(out);
					goto out;
				}
			}
			reps++;
			el = now() - t0;
		} while (el < min_time);
		free(out);
		printf("encode%-16s %8.2f MB/s  (%.0f tokens/s)\n", mode ? " parse_special" : "",
		       (double)total * (double)reps / el / 1e6, (double)ids_total * (double)reps / el);
	}

	buf = malloc(pf_detok_max_out(t) + 8 * total / n_docs + 65536);
	if (!buf)
		goto out;
	{
		/* whole-document detokenize (llama_detokenize equivalent) */
		double t0 = now(), el;
		size_t reps = 0, cap = pf_detok_max_out(t) + 8 * total / n_docs + 65536;
		do {
			for (size_t d = 0; d < n_docs; d++) {
				size_t n;
				if (pf_tok_detokenize(t, ids[d], n_ids[d], false, false, buf, cap, &n))
					goto out;
			}
			reps++;
			el = now() - t0;
		} while (el < min_time);
		printf("decode                 %8.2f MB/s  (%.0f tokens/s)\n",
		       (double)total * (double)reps / el / 1e6, (double)ids_total * (double)reps / el);
	}
	{
		/* streaming: one push per token, as the engine does */
		double t0 = now(), el;
		size_t reps = 0, cap = pf_detok_max_out(t);
		do {
			for (size_t d = 0; d < n_docs; d++) {
				struct pf_detok dt;
				size_t n;
				pf_detok_init(&dt, t, false);
				for (size_t k = 0; k < n_ids[d]; k++)
					if (pf_detok_push(&dt, ids[d][k], buf, cap, &n))
						goto out;
				pf_detok_flush(&dt, buf, cap, &n);
			}
			reps++;
			el = now() - t0;
		} while (el < min_time);
		printf("decode streaming       %8.2f MB/s  (%.0f tokens/s)\n",
		       (double)total * (double)reps / el / 1e6, (double)ids_total * (double)reps / el);
	}
	rc = 0;
out:
	if (ids)
		for (size_t d = 0; d < n_docs; d++)
			free(ids[d]);
	free(ids);
	free(n_ids);
	free(buf);
	free(text);
	free(doc_off);
	for (size_t i = 0; i < p.n; i++)
		free(p.s[i]);
	free(p.s);
	free(p.len);
	pf_tok_free(t);
	pf_gguf_close(g);
	return rc;
}
