/*
 * pinfer — command-line client of pinferd, built on libpinfer.
 *
 *   pinfer generate [options] PROMPT...   stream a completion of PROMPT to stdout
 *   pinfer chat [options]                 chat, one user message per stdin line
 *   pinfer info [options]                 the daemon's model and limits
 *
 * Replies go to stdout (streamed as tokens arrive when there is one
 * sequence; with -n or --beam-width each sequence is printed whole at the
 * end); diagnostics and the usage line go to stderr.  Ctrl-C cancels the
 * request in flight (a second one quits at once).  Exit status: 0 ok,
 * 1 error, 2 bad usage, 130 interrupted.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>

#include "client/pinfer.h"
#include "tools/common/opts.h"

#define MAX_SEQS PINFER_MAX_N
#define MAX_BEAMS 8 /* the daemon's limit */

static volatile sig_atomic_t g_interrupted;
/* the connection whose wait a Ctrl-C stops; set while it is open */
static struct pinfer *volatile g_conn;

static void on_sigint(int sig)
{
	/* the second Ctrl-C does not wait for the cancellation to finish */
	if (g_interrupted)
		_exit(130);
	g_interrupted = 1;
	/* only this cancels a reply: other signals that break the wait
	 * (Ctrl-Z then fg) do not */
	struct pinfer *c = g_conn;
	if (c)
		pinfer_interrupt(c);
	(void)sig;
}

enum json_mode { JSON_OFF = 0, JSON_EVENTS = 1, JSON_SUMMARY = 2 };

struct cli {
	const char *cmd;
	struct pinfer_connect_opts conn;
	struct pinfer_params p;
	const char *stops[PINFER_MAX_STOP];
	int32_t stop_ids[PINFER_MAX_STOP_IDS];
	const char *system;
	enum json_mode json;
	bool quiet;
	bool show_logprobs;
	int resume_wait_s;           /* ride out a pinferd restart this long */
};

/* ---- JSON output (hand-escaped; output only) ------------------------------------ */

static void json_str(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		switch (ch) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (ch < 0x20 || ch == 0x7f)
				fprintf(f, "\\u%04x", ch);
			else
				fputc(ch, f); /* UTF-8 passes through: pinferd never splits a character */
		}
	}
	fputc('"', f);
}

static void json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
}

static void json_event(const struct pinfer_event *ev)
{
	FILE *f = stdout;
	switch (ev->kind) {
	case PINFER_EVENT_TOKENIZED:
	case PINFER_EVENT_DETOKENIZED:
		return; /* answers to requests this tool never sends */
	case PINFER_EVENT_TOKEN:
		fprintf(f, "{\"event\":\"token\",\"tag\":%llu,\"index\":%u,\"token\":%d,\"text\":",
			(unsigned long long)ev->tag, ev->index, ev->token);
		json_str(f, ev->text, ev->text_len);
		if (!isnan(ev->logprob)) {
			fputs(",\"logprob\":", f);
			json_num(f, ev->logprob);
		}
		break;
	case PINFER_EVENT_LOGPROBS:
		fprintf(f, "{\"event\":\"logprobs\",\"tag\":%llu,\"index\":%u,\"top\":[", (unsigned long long)ev->tag,
			ev->index);
		for (uint32_t i = 0; i < ev->n_top; i++) {
			fprintf(f, "%s{\"token\":%d,\"logprob\":", i ? "," : "", ev->top_token[i]);
			json_num(f, ev->top_logprob[i]);
			fputc('}', f);
		}
		fputc(']', f);
		break;
	case PINFER_EVENT_FINISHED:
		fprintf(f, "{\"event\":\"finished\",\"tag\":%llu,\"index\":%u,\"reason\":\"%s\",\"last\":%s,\"text\":",
			(unsigned long long)ev->tag, ev->index, pinfer_finish_reason_str(ev->reason),
			ev->last ? "true" : "false");
		json_str(f, ev->text, ev->text_len);
		fprintf(f, ",\"usage\":{\"prompt_tokens\":%d,\"cached_tokens\":%d,\"generated_tokens\":%d,\"queue_s\":",
			ev->usage.prompt_tokens, ev->usage.cached_tokens, ev->usage.generated_tokens);
		json_num(f, ev->usage.queue_s);
		fputs(",\"ttft_s\":", f);
		json_num(f, ev->usage.ttft_s);
		fputs(",\"decode_s\":", f);
		json_num(f, ev->usage.decode_s);
		fputs("},\"beam_score\":", f);
		json_num(f, ev->beam_score);
		break;
	case PINFER_EVENT_SUSPENDED:
		fprintf(f, "{\"event\":\"suspended\",\"tag\":%llu", (unsigned long long)ev->tag);
		break;
	case PINFER_EVENT_ERROR:
		fprintf(f, "{\"event\":\"error\",\"tag\":%llu,\"code\":%d,\"message\":", (unsigned long long)ev->tag,
			ev->error);
		json_str(f, ev->message, strlen(ev->message));
		break;
	}
	if (ev->truncated)
		fputs(",\"truncated\":true", f);
	fputs("}\n", f);
	fflush(f);
}

/* ---- one request's output ---------------------------------------------------------- */

struct lp_rec {
	int32_t token;
	float logprob;
	char text[24];
	uint32_t n_top;
	int32_t top_token[PINFER_MAX_TOP_LOGPROBS];
	float top_logprob[PINFER_MAX_TOP_LOGPROBS];
};

struct run {
	const struct cli *cli;
	bool stream;                 /* print tokens as they come (one sequence) */
	char *text[MAX_SEQS];        /* each sequence's text */
	size_t len[MAX_SEQS], cap[MAX_SEQS];
	enum pinfer_finish_reason reason[MAX_SEQS];
	int32_t generated[MAX_SEQS];
	bool seen[MAX_SEQS];         /* a FINISHED arrived for the index */
	uint32_t n_seqs;             /* highest index seen + 1 */
	bool finished;
	struct pinfer_usage usage;   /* summed generated, first prompt/cached, min ttft, max decode */
	bool have_usage;
	struct pinfer_event error;
	bool failed;
	struct lp_rec *lps;          /* sequence 0's tokens, with --logprobs */
	size_t n_lps, cap_lps;
	bool oom;
};

static void run_append(struct run *r, uint32_t i, const char *s, size_t n)
{
	if (!n || r->oom)
		return;
	if (r->len[i] + n + 1 > r->cap[i]) {
		size_t cap = r->cap[i] ? r->cap[i] : 256;
		while (cap < r->len[i] + n + 1)
			cap *= 2;
		char *b = realloc(r->text[i], cap);
		if (!b) {
			r->oom = true;
			return;
		}
		r->text[i] = b;
		r->cap[i] = cap;
	}
	memcpy(r->text[i] + r->len[i], s, n);
	r->len[i] += n;
	r->text[i][r->len[i]] = 0;
}

static void run_free(struct run *r)
{
	for (int i = 0; i < MAX_SEQS; i++)
		free(r->text[i]);
	free(r->lps);
}

static void record_logprob(struct run *r, const struct pinfer_event *ev)
{
	if (ev->index != 0 || r->oom)
		return;
	if (ev->kind == PINFER_EVENT_LOGPROBS) {
		/* alternatives of the last token */
		if (!r->n_lps)
			return;
		struct lp_rec *l = &r->lps[r->n_lps - 1];
		for (uint32_t i = 0; i < ev->n_top && l->n_top < PINFER_MAX_TOP_LOGPROBS; i++) {
			l->top_token[l->n_top] = ev->top_token[i];
			l->top_logprob[l->n_top++] = ev->top_logprob[i];
		}
		return;
	}
	if (r->n_lps == r->cap_lps) {
		size_t cap = r->cap_lps ? r->cap_lps * 2 : 64;
		struct lp_rec *p = realloc(r->lps, cap * sizeof(*p));
		if (!p) {
			r->oom = true;
			return;
		}
		r->lps = p;
		r->cap_lps = cap;
	}
	struct lp_rec *l = &r->lps[r->n_lps++];
	memset(l, 0, sizeof(*l));
	l->token = ev->token;
	l->logprob = ev->logprob;
	snprintf(l->text, sizeof(l->text), "%.*s", (int)ev->text_len, ev->text);
}

static int on_event(void *ctx, const struct pinfer_event *ev)
{
	struct run *r = ctx;
	uint32_t i = ev->index < MAX_SEQS ? ev->index : MAX_SEQS - 1;
	if (r->cli->json == JSON_EVENTS)
		json_event(ev);
	if (i + 1 > r->n_seqs && ev->kind != PINFER_EVENT_ERROR)
		r->n_seqs = i + 1;
	switch (ev->kind) {
	case PINFER_EVENT_TOKEN:
	case PINFER_EVENT_FINISHED:
		run_append(r, i, ev->text, ev->text_len);
		if (r->stream && !r->cli->json && ev->text_len) {
			fwrite(ev->text, 1, ev->text_len, stdout);
			fflush(stdout);
		}
		if (ev->kind == PINFER_EVENT_TOKEN) {
			if (r->cli->show_logprobs)
				record_logprob(r, ev);
			break;
		}
		r->reason[i] = ev->reason;
		r->generated[i] = ev->usage.generated_tokens;
		r->seen[i] = true;
		if (!r->have_usage) {
			r->usage = ev->usage;
			r->have_usage = true;
		} else {
			r->usage.generated_tokens += ev->usage.generated_tokens;
			if (ev->usage.ttft_s < r->usage.ttft_s)
				r->usage.ttft_s = ev->usage.ttft_s;
			if (ev->usage.decode_s > r->usage.decode_s)
				r->usage.decode_s = ev->usage.decode_s;
		}
		r->finished |= ev->last;
		break;
	case PINFER_EVENT_LOGPROBS:
		if (r->cli->show_logprobs)
			record_logprob(r, ev);
		break;
	case PINFER_EVENT_ERROR:
		r->error = *ev;
		r->failed = true;
		break;
	case PINFER_EVENT_SUSPENDED:
		break; /* stream_resuming reconnects once the daemon is gone */
	case PINFER_EVENT_TOKENIZED:
	case PINFER_EVENT_DETOKENIZED:
		break; /* answers to requests this tool never sends */
	}
	/* non-zero asks pinfer_stream to cancel; it keeps delivering until the end */
	return g_interrupted;
}

/*
 * pinfer_stream, riding out a pinferd restart: a draining daemon suspends
 * the request (saves it) and goes away; we reconnect for up to
 * --resume-wait seconds and the stream goes on where it stopped, no token
 * repeated or skipped.
 */
static int stream_resuming(struct pinfer *c, uint64_t tag, struct run *r)
{
	int rc = pinfer_stream(c, tag, on_event, r);
	while (rc == -ECONNRESET && r->cli->resume_wait_s > 0 && pinfer_suspended(c) > 0 && !g_interrupted) {
		if (!r->cli->quiet)
			fprintf(stderr, "pinfer: pinferd is restarting; waiting up to %d s to resume the reply\n",
				r->cli->resume_wait_s);
		struct timespec t0, now, tick = { .tv_nsec = 200000000 };
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int rr;
		while ((rr = pinfer_reconnect(c)) < 0 && !g_interrupted) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - t0.tv_sec >= r->cli->resume_wait_s)
				break;
			nanosleep(&tick, NULL); /* polling for the new daemon's socket */
		}
		if (rr < 0)
			return rc;
		if (!r->cli->quiet)
			fprintf(stderr, "pinfer: resumed\n");
		rc = pinfer_stream(c, tag, on_event, r);
	}
	return rc;
}

static void print_usage_line(const struct run *r)
{
	if (r->cli->quiet || !r->have_usage)
		return;
	const struct pinfer_usage *u = &r->usage;
	/* decode rate: tokens after each sequence's first, over the decode time */
	int32_t after_first = u->generated_tokens - (int32_t)r->n_seqs;
	fprintf(stderr, "pinfer: prompt %d tokens (%d cached), generated %d; queue %.1f ms, TTFT %.1f ms", u->prompt_tokens,
		u->cached_tokens, u->generated_tokens, u->queue_s * 1e3, u->ttft_s * 1e3);
	if (after_first > 0 && u->decode_s > 0)
		fprintf(stderr, ", %.1f tokens/s", after_first / u->decode_s);
	fputc('\n', stderr);
}

static void print_logprobs(const struct run *r)
{
	for (size_t k = 0; k < r->n_lps; k++) {
		const struct lp_rec *l = &r->lps[k];
		fprintf(stderr, "logprob %8.4f  token %6d  ", l->logprob, l->token);
		json_str(stderr, l->text, strlen(l->text));
		if (l->n_top)
			fputs("  top:", stderr);
		for (uint32_t i = 0; i < l->n_top; i++)
			fprintf(stderr, " %d(%.3f)", l->top_token[i], l->top_logprob[i]);
		fputc('\n', stderr);
	}
}

static void print_summary_json(struct pinfer *c, const struct run *r)
{
	FILE *f = stdout;
	fputs("{\"model\":", f);
	json_str(f, pinfer_model_name(c), strlen(pinfer_model_name(c)));
	fputs(",\"choices\":[", f);
	for (uint32_t i = 0; i < r->n_seqs; i++) {
		fprintf(f, "%s{\"index\":%u,\"text\":", i ? "," : "", i);
		json_str(f, r->text[i] ? r->text[i] : "", r->len[i]);
		fprintf(f, ",\"finish_reason\":\"%s\",\"generated_tokens\":%d}", pinfer_finish_reason_str(r->reason[i]),
			r->generated[i]);
	}
	fputs("]", f);
	if (r->failed) {
		fprintf(f, ",\"error\":{\"code\":%d,\"message\":", r->error.error);
		json_str(f, r->error.message, strlen(r->error.message));
		fputc('}', f);
	}
	if (r->have_usage) {
		const struct pinfer_usage *u = &r->usage;
		fprintf(f, ",\"usage\":{\"prompt_tokens\":%d,\"cached_tokens\":%d,\"completion_tokens\":%d,\"queue_s\":",
			u->prompt_tokens, u->cached_tokens, u->generated_tokens);
		json_num(f, u->queue_s);
		fputs(",\"ttft_s\":", f);
		json_num(f, u->ttft_s);
		fputs(",\"decode_s\":", f);
		json_num(f, u->decode_s);
		fputc('}', f);
	}
	fputs("}\n", f);
	fflush(f);
}

/* Print what the request produced (after it ended) and map the result of
 * pinfer_stream to an exit status. */
static int finish_run(struct pinfer *c, struct run *r, int rc)
{
	const struct cli *cli = r->cli;
	if (!cli->json) {
		if (r->stream) {
			if (r->len[0] && r->text[0][r->len[0] - 1] != '\n')
				fputc('\n', stdout);
		} else {
			for (uint32_t i = 0; i < r->n_seqs; i++) {
				if (r->n_seqs > 1)
					printf("--- %s %u (%s) ---\n", cli->p.beam_width > 1 ? "beam" : "sequence", i,
					       pinfer_finish_reason_str(r->reason[i]));
				if (r->len[i])
					fputs(r->text[i], stdout);
				if (!r->len[i] || r->text[i][r->len[i] - 1] != '\n')
					fputc('\n', stdout);
			}
		}
		fflush(stdout);
		if (cli->show_logprobs)
			print_logprobs(r);
	} else if (cli->json == JSON_SUMMARY) {
		print_summary_json(c, r);
	}
	print_usage_line(r);
	if (r->oom)
		fprintf(stderr, "pinfer: out of memory: the reply was cut\n");
	if (rc == 0)
		return 0;
	if (rc == -EINTR || rc == -ECANCELED || g_interrupted) {
		fprintf(stderr, "pinfer: interrupted: the request was cancelled\n");
		return 130;
	}
	if (r->failed)
		fprintf(stderr, "pinfer: pinferd refused the request: %s\n", r->error.message);
	else
		fprintf(stderr, "pinfer: %s\n", pinfer_last_error(c));
	return 1;
}

static int submit_error(struct pinfer *c, int r)
{
	fprintf(stderr, "pinfer: %s\n", pinfer_last_error(c));
	return r == -EINVAL || r == -E2BIG ? 2 : 1;
}

/* ---- commands -------------------------------------------------------------------- */

static char *read_all(FILE *f, size_t *ret_len)
{
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	while (b) {
		size_t k = fread(b + n, 1, cap - n - 1, f);
		n += k;
		if (k == 0)
			break;
		if (n + 1 == cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				return NULL;
			}
			b = nb;
			cap *= 2;
		}
	}
	if (b)
		b[n] = 0;
	*ret_len = n;
	return b;
}

static int cmd_generate(struct pinfer *c, const struct cli *cli, int argc, char **argv)
{
	char *prompt = NULL;
	size_t len = 0;
	if (argc == 0 || (argc == 1 && !strcmp(argv[0], "-"))) {
		if (argc == 0 && isatty(STDIN_FILENO)) {
			fprintf(stderr, "pinfer: generate needs a PROMPT (or \"-\" to read it from stdin); see --help\n");
			return 2;
		}
		prompt = read_all(stdin, &len);
	} else {
		/* words after the options form the prompt, joined by spaces */
		for (int i = 0; i < argc; i++)
			len += strlen(argv[i]) + 1;
		prompt = malloc(len + 1);
		if (prompt) {
			prompt[0] = 0;
			for (int i = 0; i < argc; i++) {
				strcat(prompt, argv[i]);
				if (i + 1 < argc)
					strcat(prompt, " ");
			}
			len = strlen(prompt);
		}
	}
	if (!prompt) {
		fprintf(stderr, "pinfer: out of memory\n");
		return 1;
	}
	struct run r = { .cli = cli, .stream = cli->p.n == 1 && cli->p.beam_width <= 1 };
	uint64_t tag;
	int rc = pinfer_submit_text(c, prompt, len, &cli->p, &tag);
	free(prompt);
	if (rc)
		return submit_error(c, rc);
	rc = stream_resuming(c, tag, &r);
	int status = finish_run(c, &r, rc);
	run_free(&r);
	return status;
}

struct history {
	struct pinfer_message *m;
	char **owned;                /* strings we allocated, freed with the history */
	size_t n, cap;
};

static int history_push(struct history *h, const char *role, char *content)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 16;
		struct pinfer_message *m = realloc(h->m, cap * sizeof(*m));
		char **o = m ? realloc(h->owned, cap * sizeof(*o)) : NULL;
		if (m)
			h->m = m;
		if (!o)
			return -ENOMEM;
		h->owned = o;
		h->cap = cap;
	}
	h->m[h->n].role = role;
	h->m[h->n].content = content;
	h->owned[h->n] = content;
	h->n++;
	return 0;
}

static void history_truncate(struct history *h, size_t n)
{
	while (h->n > n)
		free(h->owned[--h->n]);
}

/*
 * One line of chat input, without its newline, in *line (malloc'd; the
 * caller frees it).  On a terminal it is read with libedit: the line can be
 * edited (arrows, Ctrl-A/E, ...) and Up/Down recall this session's earlier
 * lines; the prompt goes to stderr like every diagnostic.  Elsewhere (a
 * pipe, a file) it is a plain getline.  Returns the length, or -1 at the
 * end of input (Ctrl-D) or on an error (errno says which; EINTR: Ctrl-C).
 */
static ssize_t read_message(bool edit, char **line)
{
	ssize_t n;
	errno = 0;
	if (edit) {
		*line = readline("> ");
		if (!*line)
			return -1;
		n = (ssize_t)strlen(*line);
		if (n > 0)
			add_history(*line);
	} else {
		size_t cap = 0;
		*line = NULL;
		n = getline(line, &cap, stdin);
		if (n < 0)
			return -1;
	}
	while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
		(*line)[--n] = 0;
	return n;
}

static int cmd_chat(struct pinfer *c, const struct cli *cli)
{
	struct history h = { 0 };
	bool tty = isatty(STDIN_FILENO);
	bool edit = tty && isatty(STDERR_FILENO);
	char *line = NULL;
	int status = 0;

	if (cli->system && history_push(&h, "system", strdup(cli->system))) {
		fprintf(stderr, "pinfer: out of memory\n");
		return 1;
	}
	size_t base = h.n;
	if (tty)
		fprintf(stderr, "pinfer chat with %s — one message per line; /reset clears the history, /exit or "
				"Ctrl-D quits, Ctrl-C stops a reply.\n",
			pinfer_model_name(c));
	if (edit)
		rl_outstream = stderr; /* the prompt and the line being edited: not the reply stream */
	for (;;) {
		if (tty && !edit) {
			fputs("> ", stderr);
			fflush(stderr);
		}
		g_interrupted = 0;
		free(line);
		ssize_t n = read_message(edit, &line);
		if (n < 0) {
			if (tty)
				fputc('\n', stderr);
			if (errno == EINTR || g_interrupted)
				status = 130;
			break;
		}
		if (n == 0)
			continue;
		if (!strcmp(line, "/exit") || !strcmp(line, "/quit"))
			break;
		if (!strcmp(line, "/reset")) {
			history_truncate(&h, base);
			if (tty)
				fprintf(stderr, "(history cleared)\n");
			continue;
		}
		char *content = strdup(line);
		if (!content || history_push(&h, "user", content)) {
			free(content);
			fprintf(stderr, "pinfer: out of memory\n");
			status = 1;
			break;
		}
		struct run r = { .cli = cli, .stream = cli->p.n == 1 && cli->p.beam_width <= 1 };
		uint64_t tag;
		int rc = pinfer_submit_chat(c, h.m, h.n, &cli->p, &tag);
		if (rc) {
			history_truncate(&h, h.n - 1);
			status = submit_error(c, rc);
			if (rc == -ECONNRESET || !tty)
				break;
			continue;
		}
		rc = stream_resuming(c, tag, &r);
		int st = finish_run(c, &r, rc);
		if (r.len[0] && (st == 0 || st == 130)) {
			/* keep the reply, even a cut one, so the next turn sees it */
			char *reply = r.text[0];
			r.text[0] = NULL;
			if (history_push(&h, "assistant", reply)) {
				free(reply);
				status = 1;
				run_free(&r);
				break;
			}
		} else if (st != 0) {
			history_truncate(&h, h.n - 1); /* the turn failed: forget it */
		}
		run_free(&r);
		if (st == 1 && (!tty || rc == -ECONNRESET)) {
			status = 1;
			break;
		}
		if (st == 130 && !tty) {
			status = 130;
			break;
		}
	}
	free(line);
	history_truncate(&h, 0);
	free(h.m);
	free(h.owned);
	return status;
}

static int cmd_info(struct pinfer *c, const struct cli *cli)
{
	if (cli->json) {
		printf("{\"model\":");
		json_str(stdout, pinfer_model_name(c), strlen(pinfer_model_name(c)));
		printf(",\"n_vocab\":%d,\"max_model_len\":%d,\"bos\":%d,\"eos\":%d,\"max_inflight\":%u,\"socket\":",
		       pinfer_n_vocab(c), pinfer_max_model_len(c), pinfer_bos(c), pinfer_eos(c), pinfer_max_inflight(c));
		json_str(stdout, pinfer_socket_path(c), strlen(pinfer_socket_path(c)));
		printf(",\"wait\":");
		json_str(stdout, pinfer_wait_method(c), strlen(pinfer_wait_method(c)));
		printf("}\n");
	} else {
		printf("model          %s\n", pinfer_model_name(c));
		printf("vocabulary     %d tokens (bos %d, eos %d)\n", pinfer_n_vocab(c), pinfer_bos(c), pinfer_eos(c));
		printf("context        %d tokens per sequence\n", pinfer_max_model_len(c));
		printf("in flight      at most %u requests per client\n", pinfer_max_inflight(c));
		printf("socket         %s\n", pinfer_socket_path(c));
		printf("waiting        %s\n", pinfer_wait_method(c));
	}
	return 0;
}

/* ---- options ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fputs("usage: pinfer generate [OPTIONS] PROMPT...   complete PROMPT (\"-\": read it from stdin)\n"
	      "       pinfer chat [OPTIONS]                 chat: one user message per line of stdin\n"
	      "       pinfer info [OPTIONS]                 show the daemon's model and limits\n"
	      "\n"
	      "generate streams the reply to stdout as tokens arrive (with -n or --beam-width\n"
	      "each sequence is printed whole at the end).  chat keeps the conversation and\n"
	      "sends it as chat messages; pinferd renders the model's chat template.  It reads\n"
	      "stdin line by line until EOF, so it also works with a pipe; on a terminal, lines\n"
	      "can be edited (libedit: arrows, Ctrl-A/E, ...) and Up/Down recall earlier ones,\n"
	      "/reset clears the history and /exit or Ctrl-D quits.  Ctrl-C cancels the reply in\n"
	      "flight; a second Ctrl-C quits.  A usage line (prompt/cached/generated tokens, time\n"
	      "to first token, tokens/s) is printed on stderr after each reply.\n"
	      "\n"
	      "Connection:\n"
	      "  --socket PATH            pinferd's socket (default: $RUNTIME_DIRECTORY/pinferd.sock,\n"
	      "                           /run/pinfer/pinferd.sock as root, $XDG_RUNTIME_DIR/pinfer/pinferd.sock,\n"
	      "                           else /tmp/pinfer-UID/pinferd.sock — the same order pinferd uses)\n"
	      "  --instance NAME          talk to `pinferd --instance NAME` (socket pinferd-NAME.sock)\n"
	      "\n"
	      "Sampling (defaults in brackets; vLLM's meanings).  The defaults are this\n"
	      "command's, chosen for good answers: sampling at temperature 0.7 from the top 90%\n"
	      "of the probability mass, replies that end at the model's end-of-sequence token or\n"
	      "after 256 tokens (512 in chat).  (A program using libpinfer starts from vLLM's\n"
	      "defaults instead: temperature 1, top-p 1, 16 tokens; see pinfer.h.)\n"
	      "  --temperature F          [0.7] 0..100; 0 = greedy\n"
	      "  --top-k N                [0] keep the N most likely tokens; 0 or -1 = off\n"
	      "  --top-p F                [0.9] nucleus sampling, in (0, 1]; 1 = off\n"
	      "  --min-p F                [0.0] 0..1: drop tokens below F x the top probability\n"
	      "  --repetition-penalty F   [1.0] in (0, 100]; > 1 discourages tokens of prompt and reply\n"
	      "  --presence-penalty F     [0.0] in [-2, 2]\n"
	      "  --frequency-penalty F    [0.0] in [-2, 2]\n"
	      "  --seed N                 [random] reproducible sampling\n"
	      "  --max-tokens N           [256 for generate, 512 for chat] new tokens per sequence\n"
	      "                           (the reply ends earlier at end-of-sequence, unless --ignore-eos)\n"
	      "  --min-tokens N           [0] ignore EOS and stops before N tokens\n"
	      "  --stop STR               stop when the reply contains STR (repeatable, up to 8, 64 bytes each)\n"
	      "  --stop-id N              stop at token id N (repeatable, up to 16)\n"
	      "  --ignore-eos             keep generating past end-of-sequence\n"
	      "  --logprobs N             report each token's log-probability and its N best\n"
	      "                           alternatives (0..20; 0 = the chosen token only)\n"
	      "  -n N                     [1] independent completions (1..16)\n"
	      "  --beam-width N           [0] beam search with N beams (2..8; not with -n)\n"
	      "  --length-penalty F       [1.0] in [-10, 10]; beam score = logprob / length^F\n"
	      "  --priority N             [0] lower runs first (pinferd --policy priority)\n"
	      "  --deadline-ms N          [0] give up after N ms (reason \"deadline\"); 0 = none\n"
	      "  --no-special             don't add BOS/EOS to a generate prompt\n"
	      "  --parse-special          turn special-token text in the prompt (e.g. <|im_end|>) into tokens\n"
	      "\n"
	      "Chat:\n"
	      "  --system TEXT            system message opening the conversation\n"
	      "\n"
	      "Restarts:\n"
	      "  --resume-wait N          [60] when pinferd restarts mid-reply (it saves the request on\n"
	      "                           its drain), reconnect for up to N s and continue; 0 = give up\n"
	      "\n"
	      "Output:\n"
	      "  --json                   one JSON object per event on stdout (token, logprobs, finished,\n"
	      "                           suspended, error)\n"
	      "  --json-summary           one JSON object per reply: texts, finish reasons, usage\n"
	      "  -q, --quiet              no usage line on stderr\n"
	      "  -h, --help               this text\n"
	      "\n"
	      "Flags mean the same in every pinfer tool: -n is the number of completions and\n"
	      "--max-tokens the length of each.\n"
	      "\n"
	      "Exit status: 0 ok, 1 error (no daemon, request refused, daemon gone), 2 bad usage\n"
	      "(the message says which value or option is wrong), 130 interrupted.\n",
	      f);
}

enum {
	OPT_SOCKET = 256, OPT_INSTANCE, OPT_TEMPERATURE, OPT_TOP_K, OPT_TOP_P, OPT_MIN_P, OPT_REP, OPT_PRES,
	OPT_FREQ, OPT_SEED, OPT_MAX_TOKENS, OPT_MIN_TOKENS, OPT_STOP, OPT_STOP_ID, OPT_IGNORE_EOS, OPT_LOGPROBS,
	OPT_BEAM, OPT_LENGTH_PENALTY, OPT_PRIORITY, OPT_DEADLINE, OPT_RESUME_WAIT, OPT_NO_SPECIAL, OPT_PARSE_SPECIAL, OPT_SYSTEM,
	OPT_JSON, OPT_JSON_SUMMARY,
};

static const struct option long_opts[] = {
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "instance", required_argument, NULL, OPT_INSTANCE },
	{ "temperature", required_argument, NULL, OPT_TEMPERATURE },
	{ "top-k", required_argument, NULL, OPT_TOP_K },
	{ "top-p", required_argument, NULL, OPT_TOP_P },
	{ "min-p", required_argument, NULL, OPT_MIN_P },
	{ "repetition-penalty", required_argument, NULL, OPT_REP },
	{ "presence-penalty", required_argument, NULL, OPT_PRES },
	{ "frequency-penalty", required_argument, NULL, OPT_FREQ },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "max-tokens", required_argument, NULL, OPT_MAX_TOKENS },
	{ "min-tokens", required_argument, NULL, OPT_MIN_TOKENS },
	{ "stop", required_argument, NULL, OPT_STOP },
	{ "stop-id", required_argument, NULL, OPT_STOP_ID },
	{ "ignore-eos", no_argument, NULL, OPT_IGNORE_EOS },
	{ "logprobs", required_argument, NULL, OPT_LOGPROBS },
	{ "beam-width", required_argument, NULL, OPT_BEAM },
	{ "length-penalty", required_argument, NULL, OPT_LENGTH_PENALTY },
	{ "priority", required_argument, NULL, OPT_PRIORITY },
	{ "deadline-ms", required_argument, NULL, OPT_DEADLINE },
	{ "resume-wait", required_argument, NULL, OPT_RESUME_WAIT },
	{ "no-special", no_argument, NULL, OPT_NO_SPECIAL },
	{ "parse-special", no_argument, NULL, OPT_PARSE_SPECIAL },
	{ "system", required_argument, NULL, OPT_SYSTEM },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "json-summary", no_argument, NULL, OPT_JSON_SUMMARY },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char *opt_name(int id)
{
	if (id == 'n')
		return "-n";
	for (const struct option *o = long_opts; o->name; o++)
		if (o->val == id)
			return o->name;
	return "?";
}

/* The option's name as typed: "-n" or "--max-tokens". */
static const char *flag_of(int id, char *buf, size_t len)
{
	const char *n = opt_name(id);
	snprintf(buf, len, "%s%s", n[0] == '-' ? "" : "--", n);
	return buf;
}

static bool opt_int(int id, const char *arg, long long lo, long long hi, long long *ret)
{
	char flag[48];
	return pf_opt_int("pinfer", flag_of(id, flag, sizeof(flag)), arg, lo, hi, ret) == 0;
}

/* Ranges as client/pinfer.h documents them (the daemon checks again). */
static bool opt_float(int id, const char *arg, float *ret)
{
	char flag[48];
	double lo = 0, hi = 100, v;
	int lo_open = 0;
	switch (id) {
	case OPT_TOP_P: lo_open = 1; hi = 1; break;
	case OPT_MIN_P: hi = 1; break;
	case OPT_REP: lo_open = 1; break;
	case OPT_PRES: case OPT_FREQ: lo = -2; hi = 2; break;
	case OPT_LENGTH_PENALTY: lo = -10; hi = 10; break;
	default: break;
	}
	if (pf_opt_float("pinfer", flag_of(id, flag, sizeof(flag)), arg, lo, hi, lo_open, &v))
		return false;
	*ret = (float)v;
	return true;
}

static int bad_value(int id, const char *arg, const char *want)
{
	fprintf(stderr, "pinfer: --%s: \"%s\" is not %s\n", opt_name(id), arg, want);
	return 2;
}

/* Returns -1 when parsed, or an exit status. */
static int parse_args(struct cli *cli, int argc, char **argv, int *ret_optind)
{
	static const char shortopts[] = "n:qh";
	bool max_tokens_set = false;
	int ch;
	long long v;
	float f;
	opterr = 0; /* pf_opt_error says what was wrong, and what was meant */
	while ((ch = getopt_long(argc, argv, shortopts, long_opts, NULL)) != -1) {
		switch (ch) {
		case OPT_SOCKET:
			cli->conn.socket_path = optarg;
			break;
		case OPT_INSTANCE:
			cli->conn.instance = optarg;
			break;
		case OPT_TEMPERATURE:
		case OPT_TOP_P:
		case OPT_MIN_P:
		case OPT_REP:
		case OPT_PRES:
		case OPT_FREQ:
		case OPT_LENGTH_PENALTY:
			if (!opt_float(ch, optarg, &f))
				return 2;
			*(ch == OPT_TEMPERATURE ? &cli->p.temperature
			  : ch == OPT_TOP_P     ? &cli->p.top_p
			  : ch == OPT_MIN_P     ? &cli->p.min_p
			  : ch == OPT_REP       ? &cli->p.repetition_penalty
			  : ch == OPT_PRES      ? &cli->p.presence_penalty
			  : ch == OPT_FREQ      ? &cli->p.frequency_penalty
						: &cli->p.length_penalty) = f;
			break;
		case OPT_TOP_K:
			if (!opt_int(ch, optarg, -1, INT32_MAX, &v))
				return 2;
			cli->p.top_k = (int32_t)v;
			break;
		case OPT_SEED: {
			char *end;
			errno = 0;
			unsigned long long s = strtoull(optarg, &end, 0);
			if (end == optarg || *end || optarg[0] == '-')
				return bad_value(ch, optarg, "an unsigned 64-bit integer");
			if (errno) {
				fprintf(stderr, "pinfer: --seed: %s must be between 0 and %llu\n", optarg, ULLONG_MAX);
				return 2;
			}
			cli->p.seed = s;
			cli->p.has_seed = true;
			break;
		}
		case OPT_MAX_TOKENS:
			if (!opt_int(ch, optarg, 1, INT32_MAX, &v))
				return 2;
			cli->p.max_tokens = (int32_t)v;
			max_tokens_set = true;
			break;
		case OPT_MIN_TOKENS:
			if (!opt_int(ch, optarg, 0, INT32_MAX, &v))
				return 2;
			cli->p.min_tokens = (int32_t)v;
			break;
		case OPT_STOP:
			if (cli->p.n_stop == PINFER_MAX_STOP) {
				fprintf(stderr, "pinfer: at most %d --stop strings\n", PINFER_MAX_STOP);
				return 2;
			}
			if (strlen(optarg) < 1 || strlen(optarg) > PINFER_MAX_STOP_LEN)
				return bad_value(ch, optarg, "1..64 bytes long");
			cli->stops[cli->p.n_stop++] = optarg;
			break;
		case OPT_STOP_ID:
			if (cli->p.n_stop_ids == PINFER_MAX_STOP_IDS) {
				fprintf(stderr, "pinfer: at most %d --stop-id values\n", PINFER_MAX_STOP_IDS);
				return 2;
			}
			if (!opt_int(ch, optarg, 0, INT32_MAX, &v))
				return 2;
			cli->stop_ids[cli->p.n_stop_ids++] = (int32_t)v;
			break;
		case OPT_IGNORE_EOS:
			cli->p.ignore_eos = true;
			break;
		case OPT_LOGPROBS:
			if (!opt_int(ch, optarg, 0, PINFER_MAX_TOP_LOGPROBS, &v))
				return 2;
			cli->p.logprobs = true;
			cli->p.top_logprobs = (int32_t)v;
			cli->show_logprobs = true;
			break;
		case 'n':
			if (!opt_int(ch, optarg, 1, MAX_SEQS, &v))
				return 2;
			cli->p.n = (int32_t)v;
			break;
		case OPT_BEAM:
			if (!opt_int(ch, optarg, 0, MAX_BEAMS, &v))
				return 2;
			cli->p.beam_width = (int32_t)v;
			break;
		case OPT_PRIORITY:
			if (!opt_int(ch, optarg, INT32_MIN, INT32_MAX, &v))
				return 2;
			cli->p.priority = (int32_t)v;
			break;
		case OPT_DEADLINE:
			if (!opt_int(ch, optarg, 0, UINT32_MAX, &v))
				return 2;
			cli->p.deadline_ms = (uint32_t)v;
			break;
		case OPT_RESUME_WAIT:
			if (!opt_int(ch, optarg, 0, 86400, &v))
				return 2;
			cli->resume_wait_s = (int)v;
			break;
		case OPT_NO_SPECIAL:
			cli->p.add_special = false;
			break;
		case OPT_PARSE_SPECIAL:
			cli->p.parse_special = true;
			break;
		case OPT_SYSTEM:
			cli->system = optarg;
			break;
		case OPT_JSON:
			cli->json = JSON_EVENTS;
			break;
		case OPT_JSON_SUMMARY:
			cli->json = JSON_SUMMARY;
			break;
		case 'q':
			cli->quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			pf_opt_error("pinfer", argc, argv, shortopts, long_opts, NULL);
			return 2;
		}
	}
	cli->p.stop = cli->stops;
	cli->p.stop_ids = cli->stop_ids;
	/* a reply is rarely useful cut at pinfer_params' 16 tokens: long
	 * enough for an answer, while EOS still ends it where the model does */
	if (!max_tokens_set)
		cli->p.max_tokens = !strcmp(cli->cmd, "chat") ? 512 : 256;
	*ret_optind = optind;
	return -1;
}

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	char err[256] = "";
	int optind_after = 1, status;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cli.cmd = argv[1];
	if (strcmp(cli.cmd, "generate") && strcmp(cli.cmd, "chat") && strcmp(cli.cmd, "info")) {
		fprintf(stderr, "pinfer: unknown command \"%s\" (generate, chat or info); see `pinfer --help`\n", cli.cmd);
		return 2;
	}
	pinfer_connect_opts_init(&cli.conn);
	pinfer_params_init(&cli.p);
	/* the CLI's defaults (see usage()), not pinfer_params' */
	cli.p.temperature = 0.7f;
	cli.p.top_p = 0.9f;
	cli.resume_wait_s = 60;
	status = parse_args(&cli, argc - 1, argv + 1, &optind_after);
	if (status >= 0)
		return status;
	int rest = argc - 1 - optind_after;
	char **rest_argv = argv + 1 + optind_after;
	if (strcmp(cli.cmd, "generate") && rest > 0) {
		fprintf(stderr, "pinfer: %s takes no arguments (got \"%s\")\n", cli.cmd, rest_argv[0]);
		return 2;
	}
	if (cli.p.n > 1 && cli.p.beam_width > 1) {
		fprintf(stderr, "pinfer: -n and --beam-width cannot be combined\n");
		return 2;
	}

	/* no SA_RESTART: a Ctrl-C must interrupt the futex wait (and getline)
	 * so the request can be cancelled at once */
	struct sigaction sa = { .sa_handler = on_sigint };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);

	struct pinfer *c;
	cli.conn.err = err;
	cli.conn.err_len = sizeof(err);
	int r = pinfer_connect(&cli.conn, &c);
	if (r) {
		fprintf(stderr, "pinfer: %s\n", err);
		return 1;
	}
	g_conn = c;
	if (!strcmp(cli.cmd, "generate"))
		status = cmd_generate(c, &cli, rest, rest_argv);
	else if (!strcmp(cli.cmd, "chat"))
		status = cmd_chat(c, &cli);
	else
		status = cmd_info(c, &cli);
	g_conn = NULL;
	pinfer_close(c);
	return status;
}
