/*
 * bigprompt.c — huge text prompts must not stall other clients (issue 14,
 * item 3).
 *
 * Two connections in one process.  A victim thread streams a long greedy
 * reply and counts its tokens.  The attacker first sends a prompt far over
 * what the context can hold (--huge bytes): it must be refused at once with
 * E2BIG, its size stated, before any tokenizing.  Then it sends --prompts
 * prompts of --bytes random letters each — under that bound, so they are
 * tokenized, and over the context, so each is refused afterwards — all at
 * once.  Tokenized on the engine thread they took the victim's steps with
 * them (one engine iteration tokenized all of them: the victim got a token
 * or two in the meantime); tokenized beside the steps, the victim keeps
 * getting a token every step.  The check is in tokens, never in time: the
 * victim must get at least --min-per-prompt tokens per attacking prompt
 * between the first submission and the last refusal (tokenizing one such
 * prompt costs many decode steps).
 *
 * usage: bigprompt --socket PATH [--prompts K] [--bytes N] [--huge N] [--min-per-prompt M]
 * Exit 0 when every check held; prints what it saw.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/pinfer.h"

static const char *g_sock;
static atomic_int g_victim_tokens;
static atomic_bool g_victim_stop, g_victim_failed;

static int connect_to(uint32_t payload, struct pinfer **ret)
{
	char err[256];
	struct pinfer_connect_opts o;
	pinfer_connect_opts_init(&o);
	o.socket_path = g_sock;
	o.payload_bytes = payload;
	o.err = err;
	o.err_len = sizeof(err);
	int r = pinfer_connect(&o, ret);
	if (r)
		fprintf(stderr, "bigprompt: connect: %s\n", err);
	return r;
}

static void *victim_main(void *arg)
{
	(void)arg;
	struct pinfer *c;
	if (connect_to(0, &c)) {
		atomic_store(&g_victim_failed, true);
		return NULL;
	}
	struct pinfer_params p;
	pinfer_params_init(&p);
	p.temperature = 0;
	p.ignore_eos = true;
	p.max_tokens = 1500;
	const char *text = "Tell me a long story about a lighthouse keeper and the sea.";
	uint64_t tag;
	if (pinfer_submit_text(c, text, strlen(text), &p, &tag)) {
		fprintf(stderr, "bigprompt: victim submit: %s\n", pinfer_last_error(c));
		atomic_store(&g_victim_failed, true);
		pinfer_close(c);
		return NULL;
	}
	bool cancelled = false;
	for (;;) {
		struct pinfer_event ev;
		int r = pinfer_next(c, &ev, 1000);
		if (r == -ETIMEDOUT || r == -EINTR) {
			/* stopping when told, not only at the next token */
		} else if (r) {
			fprintf(stderr, "bigprompt: victim: %s\n", pinfer_last_error(c));
			atomic_store(&g_victim_failed, true);
			break;
		} else {
			if (ev.kind == PINFER_EVENT_TOKEN && ev.token >= 0)
				atomic_fetch_add(&g_victim_tokens, 1);
			if (ev.kind == PINFER_EVENT_ERROR) {
				fprintf(stderr, "bigprompt: victim got an error: %s\n", ev.message);
				atomic_store(&g_victim_failed, true);
			}
			if (ev.last)
				break;
		}
		if (atomic_load(&g_victim_stop) && !cancelled) {
			pinfer_cancel(c, tag);
			cancelled = true;
		}
	}
	pinfer_close(c);
	return NULL;
}

static void nap(void)
{
	struct timespec t = { .tv_nsec = 20000000 };
	nanosleep(&t, NULL);
}

int main(int argc, char **argv)
{
	int k = 12, min_per = 1;
	size_t bytes = 128 << 10, huge = 4 << 20;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--socket"))
			g_sock = argv[i + 1];
		else if (!strcmp(argv[i], "--prompts"))
			k = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--bytes"))
			bytes = (size_t)atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--huge"))
			huge = (size_t)atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--min-per-prompt"))
			min_per = atoi(argv[i + 1]);
	}
	if (!g_sock || k < 1 || k > 64 || bytes < 1 || huge < bytes) {
		fprintf(stderr, "usage: bigprompt --socket PATH [--prompts K] [--bytes N] [--huge N] [--min-per-prompt M]\n");
		return 2;
	}
	size_t need = huge > (size_t)k * bytes ? huge : (size_t)k * bytes;
	struct pinfer *a;
	if (connect_to((uint32_t)(need + (1 << 20)), &a))
		return 1;
	char *text = malloc(huge);
	if (!text)
		return 1;
	unsigned seed = 12345;
	for (size_t i = 0; i < huge; i++)
		text[i] = (char)('a' + (seed = seed * 1103515245 + 12345) % 26);
	struct pinfer_params p;
	pinfer_params_init(&p);
	p.temperature = 0;
	p.max_tokens = 16;
	int failures = 0;
	struct pinfer_event ev;
	uint64_t tag;

	/* 1. far over any context: refused before tokenizing, with its size */
	int r = pinfer_submit_text(a, text, huge, &p, &tag);
	if (r) {
		fprintf(stderr, "bigprompt: huge submit: %s\n", pinfer_last_error(a));
		return 1;
	}
	r = pinfer_next(a, &ev, 60000);
	char want[64];
	snprintf(want, sizeof(want), "prompt of %zu bytes", huge);
	if (r || ev.kind != PINFER_EVENT_ERROR || ev.error != E2BIG || !strstr(ev.message, want)) {
		printf("FAIL: a %zu-byte prompt: %s (event %d, error %d: %s)\n", huge, r ? pinfer_last_error(a) : "",
		       r ? -1 : (int)ev.kind, r ? 0 : ev.error, r ? "" : ev.message);
		failures++;
	} else {
		printf("# ok: a %zu-byte prompt refused before tokenizing: %s\n", huge, ev.message);
	}

	/* 2. k tokenizable but oversized prompts while the victim streams */
	pthread_t vt;
	if (pthread_create(&vt, NULL, victim_main, NULL))
		return 1;
	while (atomic_load(&g_victim_tokens) < 3 && !atomic_load(&g_victim_failed))
		nap(); /* waiting for a condition: the victim is streaming */
	int v0 = atomic_load(&g_victim_tokens);
	for (int i = 0; i < k; i++) {
		/* each its own letters, so nothing is cached between them */
		text[0] = (char)('a' + i % 26);
		text[1] = (char)('a' + i / 26);
		while ((r = pinfer_submit_text(a, text, bytes, &p, &tag)) == -EAGAIN)
			nap();
		if (r) {
			fprintf(stderr, "bigprompt: submit %d: %s\n", i, pinfer_last_error(a));
			return 1;
		}
	}
	printf("attacking: %d prompts submitted\n", k);
	fflush(stdout);
	int refused = 0, other = 0;
	for (int got = 0; got < k;) {
		r = pinfer_next(a, &ev, 600000);
		if (r) {
			fprintf(stderr, "bigprompt: attacker: %s\n", pinfer_last_error(a));
			return 1;
		}
		if (!ev.last)
			continue;
		got++;
		if (ev.kind == PINFER_EVENT_ERROR && strstr(ev.message, "exceeds the context limit"))
			refused++;
		else
			other++;
	}
	int v1 = atomic_load(&g_victim_tokens);
	atomic_store(&g_victim_stop, true);
	pthread_join(vt, NULL);
	printf("# the victim got %d tokens while %d prompts of %zu bytes were tokenized and refused (%d other answers)\n",
	       v1 - v0, refused, bytes, other);
	if (refused != k) {
		printf("FAIL: %d of %d oversized prompts refused for the context limit\n", refused, k);
		failures++;
	}
	if (atomic_load(&g_victim_failed)) {
		printf("FAIL: the victim's stream failed\n");
		failures++;
	}
	if (v1 - v0 < min_per * k) {
		printf("FAIL: the victim got %d tokens meanwhile, fewer than %d per attacking prompt: tokenizing stalled "
		       "its steps\n", v1 - v0, min_per);
		failures++;
	} else {
		printf("# ok: the victim kept streaming: %d tokens, at least %d per attacking prompt\n", v1 - v0, min_per);
	}

	/* 3. a cancel reaches a prompt still waiting to be tokenized (behind
	 * two others): it ends CANCELLED, at once, and is never tokenized */
	uint64_t tags[3];
	for (int i = 0; i < 3; i++) {
		text[0] = (char)('A' + i);
		while ((r = pinfer_submit_text(a, text, bytes, &p, &tags[i])) == -EAGAIN)
			nap();
		if (r)
			return 1;
	}
	if (pinfer_cancel(a, tags[2]))
		return 1;
	int got3 = 0, cancelled = 0;
	while (got3 < 3) {
		if (pinfer_next(a, &ev, 600000))
			return 1;
		if (!ev.last)
			continue;
		got3++;
		if (ev.tag == tags[2])
			cancelled = ev.kind == PINFER_EVENT_FINISHED && ev.reason == PINFER_FINISH_CANCELLED;
	}
	if (cancelled) {
		printf("# ok: a prompt cancelled while queued for tokenizing ends CANCELLED\n");
	} else {
		printf("FAIL: the cancelled queued prompt did not end CANCELLED\n");
		failures++;
	}
	free(text);
	pinfer_close(a);
	return failures ? 1 : 0;
}
