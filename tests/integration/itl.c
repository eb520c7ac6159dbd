/*
 * itl.c — inter-token latency of a running stream while a long prompt is
 * admitted beside it (issue 14, item 4: --max-step-ms).  A measuring
 * helper, not a test: it prints numbers and asserts nothing about time.
 *
 * A stream (greedy, ignore_eos) runs; once it has produced a few tokens a
 * second connection submits --prompt-tokens synthetic token ids (seeded,
 * clear of the control tokens) with max_tokens 1.  Every gap between two of
 * the stream's tokens that ends while the long prompt is in flight (from
 * its submission to its FINISHED) is one ITL sample; printed: the count,
 * p50, p99 and the longest, and the long prompt's time to its token.
 *
 * usage: itl --socket PATH [--prompt-tokens N] [--vocab V]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/pinfer.h"

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int conn(const char *sock, struct pinfer **ret)
{
	char err[256];
	struct pinfer_connect_opts o;
	pinfer_connect_opts_init(&o);
	o.socket_path = sock;
	o.err = err;
	o.err_len = sizeof(err);
	int r = pinfer_connect(&o, ret);
	if (r)
		fprintf(stderr, "itl: %s\n", err);
	return r;
}

int main(int argc, char **argv)
{
	const char *sock = NULL;
	int n_prompt = 2048, vocab = 49152;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--socket"))
			sock = argv[i + 1];
		else if (!strcmp(argv[i], "--prompt-tokens"))
			n_prompt = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--vocab"))
			vocab = atoi(argv[i + 1]);
	}
	if (!sock || n_prompt < 1 || vocab < 200) {
		fprintf(stderr, "usage: itl --socket PATH [--prompt-tokens N] [--vocab V]\n");
		return 2;
	}
	struct pinfer *v, *a;
	if (conn(sock, &v) || conn(sock, &a))
		return 1;
	struct pinfer_params p;
	pinfer_params_init(&p);
	p.temperature = 0;
	p.ignore_eos = true;
	p.max_tokens = 4000;
	const char *text = "Tell me a long story about a lighthouse keeper.";
	uint64_t vtag, atag;
	if (pinfer_submit_text(v, text, strlen(text), &p, &vtag))
		return 1;
	int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_prompt);
	unsigned seed = 7;
	for (int i = 0; i < n_prompt; i++)
		ids[i] = 100 + (int32_t)((seed = seed * 1103515245 + 12345) % (unsigned)(vocab - 100));
	size_t cap = 1 << 16, n_gap = 0;
	double *gap = malloc(sizeof(double) * cap);
	double last = 0, t_sub = 0, t_done = 0;
	int tokens = 0, after = 0;
	bool submitted = false, done = false;
	struct pinfer_event ev;
	for (;;) {
		int r = pinfer_next(v, &ev, 10);
		if (r && r != -ETIMEDOUT && r != -EINTR) {
			fprintf(stderr, "itl: stream: %s\n", pinfer_last_error(v));
			return 1;
		}
		if (!r && ev.kind == PINFER_EVENT_TOKEN && ev.token >= 0) {
			double t = now_s();
			if (submitted && last > 0 && !done && n_gap < cap)
				gap[n_gap++] = t - last;
			last = t;
			tokens++;
			after += done;
		}
		if (!r && ev.last) {
			fprintf(stderr, "itl: the stream ended before the long prompt did\n");
			break;
		}
		if (!submitted && tokens >= 5) {
			struct pinfer_params ap;
			pinfer_params_init(&ap);
			ap.temperature = 0;
			ap.max_tokens = 1;
			if (pinfer_submit_tokens(a, ids, (size_t)n_prompt, &ap, &atag)) {
				fprintf(stderr, "itl: submit: %s\n", pinfer_last_error(a));
				return 1;
			}
			t_sub = now_s();
			submitted = true;
		}
		if (submitted && !done) {
			while (pinfer_next(a, &ev, 0) == 0)
				if (ev.last) {
					if (ev.kind == PINFER_EVENT_ERROR) {
						fprintf(stderr, "itl: long prompt: %s\n", ev.message);
						return 1;
					}
					done = true;
					t_done = now_s();
				}
		}
		if (done && after >= 3)
			break;
	}
	pinfer_cancel(v, vtag);
	qsort(gap, n_gap, sizeof(double), cmp_d);
	if (n_gap == 0) {
		printf("no inter-token gaps while the long prompt ran\n");
		return 1;
	}
	size_t i99 = (size_t)(0.99 * (double)(n_gap - 1) + 0.5);
	printf("%d-token prompt: its token after %.2f s; stream ITL while it ran: %zu gaps, p50 %.1f ms, p99 %.1f ms, "
	       "max %.1f ms\n", n_prompt, t_done - t_sub, n_gap, gap[n_gap / 2] * 1e3, gap[i99] * 1e3,
	       gap[n_gap - 1] * 1e3);
	pinfer_close(a);
	pinfer_close(v);
	return 0;
}
