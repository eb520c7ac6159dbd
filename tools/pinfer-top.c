/*
 * pinfer-top — a live monitor of pinferd, read from its statistics segment.
 *
 *   pinfer-top [--socket PATH | --instance NAME] [--interval MS] [--ascii]
 *   pinfer-top --once | --json [...]
 *
 * It registers as a stats reader (pinfer_stats_open: the daemon hands over
 * a read-only memfd), maps it PROT_READ and takes seqlock snapshots
 * (pf_stats_read); it never writes anything the daemon reads, so a monitor
 * cannot disturb serving.  Rates (steps/s, tokens/s) come from counter
 * deltas between our own samples, timed with our own monotonic clock: an
 * idle daemon stops rewriting the segment, so its uptime_ms is no clock.
 *
 * Every sample registers anew (see tools/stats_fmt.h): that is how a dead
 * or restarted daemon is noticed, since the old mapping stays readable.
 *
 * The screen (ncursesw, plain terminfo, no mouse; fine over ssh): header,
 * KV-cache bar, a sparkline of generation tokens/s over the last minute,
 * queues, prefix-cache hit rate, latency percentiles estimated from the
 * histograms, and the clients.  Keys: s sort column, r reverse, p pause,
 * q quit.
 */
#include <errno.h>
#include <getopt.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <ncurses.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "shm/path.h"
#include "client/pinfer.h"
#include "shm/stats.h"
#include "tools/common/opts.h"
#include "tools/stats_fmt.h"

#define EXIT_UNREACHABLE 1
#define EXIT_USAGE 2
#define EXIT_TERMINAL 3

#define SPARK_N 60           /* one bin per second: the last minute */
#define RETRY_MS 2000        /* reconnect attempts while the daemon is away */
#define DEFAULT_INTERVAL_MS 500

enum sort_col { SORT_PID, SORT_UID, SORT_COMM, SORT_INFLIGHT, SORT_IN, SORT_OUT, SORT_ERR, SORT_N };

static const struct {
	const char *title; /* column header */
	const char *name;  /* in words, for the table title */
	int width;
	bool left;         /* left-aligned text */
	bool desc;         /* largest first unless reversed */
} sort_cols[SORT_N] = {
	[SORT_PID] = { "PID", "pid", 8, false, false },
	[SORT_UID] = { "UID", "uid", 7, false, false },
	[SORT_COMM] = { "COMM", "command", 16, true, false },
	[SORT_INFLIGHT] = { "INFL", "in flight", 6, false, true },
	[SORT_IN] = { "TOK-IN", "tokens in", 10, false, true },
	[SORT_OUT] = { "TOK-OUT", "tokens out", 10, false, true },
	[SORT_ERR] = { "ERR", "errors", 7, false, true },
};

enum { PAIR_USED = 1, PAIR_CACHED, PAIR_ALERT, PAIR_SPARK };

struct top {
	struct pinfer_connect_opts conn;
	char err[256];
	char socket_desc[128];     /* the resolved socket path, for the header */
	struct stats_src src;

	struct pf_stats snap;      /* the last good snapshot */
	bool have_snap;
	bool connected;
	char why[320];             /* why not connected */
	double last_ok_t;          /* monotonic time of snap */

	/* counter deltas between two of our samples */
	bool have_prev;
	double prev_t;
	uint64_t prev_steps, prev_gen, prev_prompt;
	bool rates_valid;
	double rate_steps, rate_gen, rate_prompt, rate_dt;

	/* sparkline: generation tokens/s per second, NAN where unknown */
	double spark[SPARK_N];
	int spark_len, spark_head;  /* head: the next slot written */
	double bin_t;               /* start of the current bin; 0: none yet */
	uint64_t bin_gen;
	bool bin_valid;

	/* screen */
	enum sort_col sort;
	bool reverse, paused, utf8, color;
	int interval_ms;
};

static volatile sig_atomic_t g_quit;

static void on_signal(int sig)
{
	(void)sig;
	g_quit = 1;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinfer-top [options]\n"
		"\n"
		"A live monitor of pinferd: model, uptime, engine steps/s, KV-cache usage,\n"
		"generation throughput over the last minute, queues, preemptions, prefix-cache\n"
		"hit rate, latency percentiles (TTFT, inter-token, end-to-end; estimated from\n"
		"the daemon's histograms) and its clients.  It reads the daemon's read-only\n"
		"statistics segment and never slows the daemon down.\n"
		"\n"
		"  --socket PATH      the daemon's socket (default: resolved as clients do)\n"
		"  --instance NAME    the daemon instance (pinferd --instance NAME)\n"
		"  --interval MS      refresh period (default %d); with --once/--json, the\n"
		"                     time between the two samples rates come from (0: one\n"
		"                     sample, no rates)\n"
		"  --ascii            draw with ASCII only (default: Unicode blocks when the\n"
		"                     locale is UTF-8)\n"
		"  --once             print one plain-text snapshot and exit\n"
		"  --json             print one JSON snapshot and exit (histogram buckets are\n"
		"                     cumulative, like Prometheus; \"le\": null is +Inf)\n"
		"  --help             this text\n"
		"\n"
		"Keys: s  sort the clients by the next column    r  reverse the order\n"
		"      p  pause/resume                           q  quit (also Ctrl-C)\n"
		"\n"
		"When the daemon goes away the screen says so and pinfer-top reconnects\n"
		"every 2 s, also to a restarted daemon on the same socket.\n"
		"\n"
		"Exit status: 0 ok; 1 the daemon is unreachable or its statistics cannot be\n"
		"read (--once/--json); 2 bad usage; 3 the terminal cannot be used.\n",
		DEFAULT_INTERVAL_MS);
}

/* ---- sampling ------------------------------------------------------------------ */

static void spark_push(struct top *t, double v)
{
	t->spark[t->spark_head] = v;
	t->spark_head = (t->spark_head + 1) % SPARK_N;
	if (t->spark_len < SPARK_N)
		t->spark_len++;
}

/* Close the current one-second bin once a second has passed (several bins
 * after a longer gap; NAN for bins without a valid count). */
static void spark_advance(struct top *t, double now, bool ok, uint64_t gen)
{
	if (t->bin_t == 0) {
		t->bin_t = now;
		t->bin_gen = gen;
		t->bin_valid = ok;
		return;
	}
	double el = now - t->bin_t;
	/* samples come every ~0.5 s and jitter: a bin of 0.98 s is a second */
	if (el < 0.95)
		return;
	int n = (int)(el + 0.05);
	double rate = ok && t->bin_valid && gen >= t->bin_gen ? (double)(gen - t->bin_gen) / el : NAN;
	for (int i = 0; i < n && i < SPARK_N; i++)
		spark_push(t, rate);
	t->bin_t = now;
	t->bin_gen = gen;
	t->bin_valid = ok;
}

/* The i-th most recent bin (0 = newest). */
static double spark_get(const struct top *t, int i)
{
	return t->spark[(t->spark_head - 1 - i + 2 * SPARK_N) % SPARK_N];
}

/* Forget the counter baselines (new daemon, or after a pause). */
static void reset_baselines(struct top *t)
{
	t->have_prev = false;
	t->rates_valid = false;
	t->bin_valid = false;
}

/* Take one sample.  Returns 0, or a negative errno with t->why set. */
static int sample(struct top *t)
{
	double now = mono_s();
	struct pf_stats s;
	t->err[0] = '\0';
	int r = stats_src_refresh(&t->src, &t->conn);
	if (r < 0) {
		snprintf(t->why, sizeof(t->why), "%s", t->err[0] ? t->err : strerror(-r));
	} else {
		if (r == 1)
			reset_baselines(t);
		r = stats_src_read(&t->src, &s);
		if (r == -EPROTO)
			snprintf(t->why, sizeof(t->why),
				 "the daemon's statistics segment has layout version %u, this pinfer-top reads %d "
				 "(update the tools)",
				 s.version, PF_STATS_VERSION);
		else if (r < 0)
			snprintf(t->why, sizeof(t->why), "cannot read the statistics segment: %s", strerror(-r));
	}
	if (r < 0) {
		t->connected = false;
		t->have_prev = false;
		t->rates_valid = false;
		spark_advance(t, now, false, 0);
		return r;
	}
	t->connected = true;
	if (t->have_prev && now > t->prev_t && s.steps_total >= t->prev_steps && s.generation_tokens_total >= t->prev_gen &&
	    s.prompt_tokens_total >= t->prev_prompt) {
		double dt = now - t->prev_t;
		t->rate_steps = (double)(s.steps_total - t->prev_steps) / dt;
		t->rate_gen = (double)(s.generation_tokens_total - t->prev_gen) / dt;
		t->rate_prompt = (double)(s.prompt_tokens_total - t->prev_prompt) / dt;
		t->rate_dt = dt;
		t->rates_valid = true;
	} else {
		t->rates_valid = false;
	}
	t->have_prev = true;
	t->prev_t = now;
	t->prev_steps = s.steps_total;
	t->prev_gen = s.generation_tokens_total;
	t->prev_prompt = s.prompt_tokens_total;
	spark_advance(t, now, true, s.generation_tokens_total);
	t->snap = s;
	t->have_snap = true;
	t->last_ok_t = now;
	return 0;
}

/* ---- what a snapshot says, as text lines (shared by screen and --once) ---------- */

static uint64_t uptime_s(const struct pf_stats *s)
{
	/* uptime_ms freezes while the daemon idles; the start time does not */
	time_t now = time(NULL);
	if (s->start_unix_s && (uint64_t)now >= s->start_unix_s)
		return (uint64_t)now - s->start_unix_s;
	return s->uptime_ms / 1000;
}

/* The backend description without the model name it may start with. */
static const char *backend_desc(const struct pf_stats *s)
{
	size_t n = strlen(s->model);
	const char *b = s->backend;
	if (n && !strncmp(b, s->model, n) && b[n] == ' ')
		for (b += n; *b == ' '; b++)
			;
	return *b ? b : s->backend;
}

static double kv_usage(const struct pf_stats *s)
{
	return s->kv_blocks_total > 0 ? (double)s->kv_blocks_used / s->kv_blocks_total : 0.0;
}

static double prefix_hit_rate(const struct pf_stats *s)
{
	return s->prefix_queries_tokens ? (double)s->prefix_hits_tokens / (double)s->prefix_queries_tokens : NAN;
}

static void fmt_rate(char *buf, size_t len, const struct top *t, double v)
{
	if (!t->rates_valid)
		snprintf(buf, len, "-");
	else if (v < 100)
		snprintf(buf, len, "%.1f", v);
	else
		snprintf(buf, len, "%.0f", v);
}

static void line_header2(const struct top *t, char *buf, size_t len)
{
	const struct pf_stats *s = &t->snap;
	char up[32], steps[32], rate[32];
	stats_fmt_uptime(up, sizeof(up), uptime_s(s));
	stats_fmt_count(steps, sizeof(steps), s->steps_total);
	fmt_rate(rate, sizeof(rate), t, t->rate_steps);
	snprintf(buf, len, "up %s   steps %s (%s/s)   clients %d   context %d   socket %s", up, steps, rate, s->n_clients,
		 s->max_model_len, t->socket_desc);
}

static void line_kv(const struct top *t, char *buf, size_t len)
{
	const struct pf_stats *s = &t->snap;
	snprintf(buf, len, "%.1f%%  used %d  cached %d  free %d of %d blocks", 100.0 * kv_usage(s), s->kv_blocks_used,
		 s->kv_blocks_cached, s->kv_blocks_free, s->kv_blocks_total);
}

/* width cells: '#' used, '=' cached (evictable), '.' free */
static void kv_bar(const struct pf_stats *s, char *bar, int width)
{
	int used = 0, cached = 0;
	if (s->kv_blocks_total > 0) {
		double tot = s->kv_blocks_total;
		used = (int)lround(s->kv_blocks_used / tot * width);
		int upto = (int)lround((double)(s->kv_blocks_used + s->kv_blocks_cached) / tot * width);
		/* a non-empty share is never drawn as nothing */
		if (s->kv_blocks_used > 0 && used == 0)
			used = 1;
		if (upto < used)
			upto = used;
		if (s->kv_blocks_cached > 0 && upto == used)
			upto = used + 1;
		if (upto > width)
			upto = width;
		if (used > width)
			used = width;
		cached = upto - used;
	}
	for (int i = 0; i < width; i++)
		bar[i] = i < used ? '#' : i < used + cached ? '=' : '.';
	bar[width] = '\0';
}

static void line_requests(const struct top *t, char *buf, size_t len)
{
	const struct pf_stats *s = &t->snap;
	char adm[32];
	stats_fmt_count(adm, sizeof(adm), s->requests_admitted_total);
	int n = snprintf(buf, len, "requests  running %d   waiting %d (%d preempted)   preemptions %llu   admitted %s",
			 s->running, s->waiting, s->preempted_waiting, (unsigned long long)s->preemptions_total, adm);
	/* sequences only when they differ: n > 1 and beam search */
	if (n > 0 && (size_t)n < len && (s->seqs_running != s->running || s->seqs_waiting != s->waiting))
		snprintf(buf + n, len - (size_t)n, "   (sequences %d running, %d waiting)", s->seqs_running, s->seqs_waiting);
}

static void line_finished(const struct top *t, char *buf, size_t len)
{
	const struct pf_stats *s = &t->snap;
	int n = snprintf(buf, len, "finished ");
	for (int i = 0; i < PF_STATS_FIN_COUNT && n > 0 && (size_t)n < len; i++) {
		char c[32];
		stats_fmt_count(c, sizeof(c), s->requests_finished[i]);
		n += snprintf(buf + n, len - (size_t)n, " %s %s ", stats_finish_name(i), c);
	}
}

static void line_tokens(const struct top *t, char *buf, size_t len)
{
	const struct pf_stats *s = &t->snap;
	char p[32], g[32], pr[32], gr[32], hit[32];
	stats_fmt_count(p, sizeof(p), s->prompt_tokens_total);
	stats_fmt_count(g, sizeof(g), s->generation_tokens_total);
	fmt_rate(pr, sizeof(pr), t, t->rate_prompt);
	fmt_rate(gr, sizeof(gr), t, t->rate_gen);
	double hr = prefix_hit_rate(s);
	if (isnan(hr))
		snprintf(hit, sizeof(hit), "-");
	else
		snprintf(hit, sizeof(hit), "%.1f%%", 100.0 * hr);
	snprintf(buf, len, "tokens    prompt %s (%s/s)   generated %s (%s/s)   prefix-cache hits %s", p, pr, g, gr, hit);
}

static const struct {
	int id;
	const char *name;
	bool seconds;
} lat_rows[] = {
	{ PF_HIST_TTFT, "TTFT", true },
	{ PF_HIST_ITL, "ITL", true },
	{ PF_HIST_E2E, "E2E", true },
	{ PF_HIST_STEP_TIME, "step", true },
	{ PF_HIST_STEP_TOKENS, "step tokens", false },
};
#define N_LAT_ROWS (int)(sizeof(lat_rows) / sizeof(lat_rows[0]))

static void line_lat_header(char *buf, size_t len)
{
	snprintf(buf, len, "%-12s %9s %9s %9s %9s %9s", "latency", "p50", "p90", "p99", "mean", "count");
}

static void fmt_hist_val(char *buf, size_t len, double v, bool seconds)
{
	if (seconds || isnan(v))
		stats_fmt_secs(buf, len, v);
	else
		snprintf(buf, len, "%.1f", v);
}

static void line_lat(const struct top *t, int row, char *buf, size_t len)
{
	const struct pf_stats_hist *h = &t->snap.hist[lat_rows[row].id];
	bool sec = lat_rows[row].seconds;
	char p50[16], p90[16], p99[16], mean[16], cnt[32];
	fmt_hist_val(p50, sizeof(p50), stats_hist_quantile(h, 0.50), sec);
	fmt_hist_val(p90, sizeof(p90), stats_hist_quantile(h, 0.90), sec);
	fmt_hist_val(p99, sizeof(p99), stats_hist_quantile(h, 0.99), sec);
	fmt_hist_val(mean, sizeof(mean), stats_hist_mean(h), sec);
	stats_fmt_count(cnt, sizeof(cnt), stats_hist_total(h));
	snprintf(buf, len, "%-12s %9s %9s %9s %9s %9s", lat_rows[row].name, p50, p90, p99, mean, cnt);
}

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static int cmp_clients(const void *pa, const void *pb, void *ctx)
{
	const struct pf_stats_client *a = pa, *b = pb;
	const struct top *t = ctx;
	enum sort_col k = t->sort < SORT_N ? t->sort : SORT_OUT;
	int c = 0;
	switch (k) {
	case SORT_PID: c = cmp_u64((uint64_t)(int64_t)a->pid, (uint64_t)(int64_t)b->pid); break;
	case SORT_UID: c = cmp_u64(a->uid, b->uid); break;
	case SORT_COMM: c = strcmp(a->comm, b->comm); break;
	case SORT_INFLIGHT: c = (a->inflight > b->inflight) - (a->inflight < b->inflight); break;
	case SORT_IN: c = cmp_u64(a->tokens_in, b->tokens_in); break;
	case SORT_OUT: c = cmp_u64(a->tokens_out, b->tokens_out); break;
	case SORT_ERR: c = cmp_u64(a->errors, b->errors); break;
	default: break;
	}
	if (sort_cols[k].desc != t->reverse)
		c = -c;
	/* ties: the oldest registration first, so rows do not jump around */
	return c ? c : cmp_u64(a->id, b->id);
}

/* The clients in display order; returns how many. */
static int sorted_clients(const struct top *t, struct pf_stats_client *out)
{
	int n = t->snap.n_clients;
	memcpy(out, t->snap.clients, (size_t)n * sizeof(*out));
	qsort_r(out, (size_t)n, sizeof(*out), cmp_clients, (void *)t);
	return n;
}

static void line_client(const struct top *t, const struct pf_stats_client *c, char *buf, size_t len)
{
	char comm[64], in[32], out[32], err[32];
	stats_sanitize(comm, sizeof(comm), c->comm, !t->utf8);
	stats_fmt_count(in, sizeof(in), c->tokens_in);
	stats_fmt_count(out, sizeof(out), c->tokens_out);
	stats_fmt_count(err, sizeof(err), c->errors);
	snprintf(buf, len, "%*d %*u  %-*s%*d %*s %*s %*s", sort_cols[SORT_PID].width, c->pid, sort_cols[SORT_UID].width,
		 c->uid, sort_cols[SORT_COMM].width - 1, comm, sort_cols[SORT_INFLIGHT].width, c->inflight,
		 sort_cols[SORT_IN].width, in, sort_cols[SORT_OUT].width, out, sort_cols[SORT_ERR].width, err);
}

/* The column titles, in the same layout as line_client(); ret_off and ret_w
 * locate the sorted column's title. */
static void line_client_header(const struct top *t, char *buf, size_t len, int *ret_off, int *ret_w)
{
	int n = 0;
	for (int i = 0; i < SORT_N && n >= 0 && (size_t)n < len; i++) {
		int w = sort_cols[i].width;
		const char *sep = i == SORT_COMM ? "  " : i == 0 || i == SORT_INFLIGHT ? "" : " ";
		n += snprintf(buf + n, len - (size_t)n, "%s", sep);
		if (i == (int)t->sort) {
			*ret_off = n;
			*ret_w = i == SORT_COMM ? w - 1 : w;
		}
		if (i == SORT_COMM)
			n += snprintf(buf + n, len - (size_t)n, "%-*s", w - 1, sort_cols[i].title);
		else
			n += snprintf(buf + n, len - (size_t)n, "%*s", w, sort_cols[i].title);
	}
}

/* ---- --once -------------------------------------------------------------------- */

static void print_once(const struct top *t)
{
	const struct pf_stats *s = &t->snap;
	char line[512], model[128], backend[128], bar[64];
	stats_sanitize(model, sizeof(model), s->model, false);
	stats_sanitize(backend, sizeof(backend), backend_desc(s), false);
	printf("pinfer-top   model %s   backend %s\n", model, backend);
	line_header2(t, line, sizeof(line));
	printf("%s\n", line);
	kv_bar(s, bar, 50);
	line_kv(t, line, sizeof(line));
	printf("KV cache  [%s] %s (%d tokens each)\n", bar, line, s->block_size);
	line_requests(t, line, sizeof(line));
	printf("%s\n", line);
	line_finished(t, line, sizeof(line));
	printf("%s\n", line);
	line_tokens(t, line, sizeof(line));
	printf("%s (%llu of %llu prompt tokens)\n", line, (unsigned long long)s->prefix_hits_tokens,
	       (unsigned long long)s->prefix_queries_tokens);
	if (t->rates_valid)
		printf("rates over the last %.2f s\n", t->rate_dt);
	printf("\n");
	line_lat_header(line, sizeof(line));
	printf("%s\n", line);
	for (int i = 0; i < N_LAT_ROWS; i++) {
		line_lat(t, i, line, sizeof(line));
		printf("%s\n", line);
	}
	printf("\nclients %d\n", s->n_clients);
	struct pf_stats_client cl[PF_STATS_MAX_CLIENTS];
	int n = sorted_clients(t, cl), off, w;
	line_client_header(t, line, sizeof(line), &off, &w);
	printf("%s\n", line);
	for (int i = 0; i < n; i++) {
		line_client(t, &cl[i], line, sizeof(line));
		printf("%s\n", line);
	}
}

/* ---- --json -------------------------------------------------------------------- */

static void json_num(double v)
{
	if (isfinite(v))
		printf("%.9g", v);
	else
		fputs("null", stdout);
}

static void json_hist(const struct pf_stats_hist *h)
{
	printf("{\"count\":%llu,\"sum\":", (unsigned long long)stats_hist_total(h));
	json_num(h->sum);
	fputs(",\"mean\":", stdout);
	json_num(stats_hist_mean(h));
	fputs(",\"p50\":", stdout);
	json_num(stats_hist_quantile(h, 0.50));
	fputs(",\"p90\":", stdout);
	json_num(stats_hist_quantile(h, 0.90));
	fputs(",\"p99\":", stdout);
	json_num(stats_hist_quantile(h, 0.99));
	/* cumulative, like Prometheus; le null is +Inf */
	fputs(",\"buckets\":[", stdout);
	uint64_t cum = 0;
	for (int i = 0; i < PF_STATS_HIST_BUCKETS; i++) {
		cum += h->counts[i];
		printf("%s{\"le\":", i ? "," : "");
		json_num(h->bounds[i]);
		printf(",\"count\":%llu}", (unsigned long long)cum);
	}
	fputs("]}", stdout);
}

static void print_json(const struct top *t)
{
	const struct pf_stats *s = &t->snap;
	fputs("{\"model\":", stdout);
	stats_json_str(stdout, s->model);
	fputs(",\"backend\":", stdout);
	stats_json_str(stdout, s->backend);
	fputs(",\"socket\":", stdout);
	stats_json_str(stdout, t->socket_desc);
	printf(",\"stats_version\":%u,\"start_unix_s\":%llu,\"uptime_s\":%llu,\"max_model_len\":%d", s->version,
	       (unsigned long long)s->start_unix_s, (unsigned long long)uptime_s(s), s->max_model_len);
	printf(",\"requests\":{\"running\":%d,\"waiting\":%d,\"preempted_waiting\":%d,\"seqs_running\":%d,"
	       "\"seqs_waiting\":%d,\"admitted_total\":%llu,\"finished\":{",
	       s->running, s->waiting, s->preempted_waiting, s->seqs_running, s->seqs_waiting,
	       (unsigned long long)s->requests_admitted_total);
	for (int i = 0; i < PF_STATS_FIN_COUNT; i++)
		printf("%s\"%s\":%llu", i ? "," : "", stats_finish_name(i), (unsigned long long)s->requests_finished[i]);
	printf("}},\"preemptions_total\":%llu,\"steps_total\":%llu", (unsigned long long)s->preemptions_total,
	       (unsigned long long)s->steps_total);
	printf(",\"swap\":{\"seqs_swapped\":%d,\"host_blocks_total\":%d,\"host_blocks_free\":%d,\"swap_outs_total\":%llu,"
	       "\"swap_ins_total\":%llu}",
	       s->seqs_swapped, s->host_blocks_total, s->host_blocks_free, (unsigned long long)s->swap_outs_total,
	       (unsigned long long)s->swap_ins_total);
	printf(",\"kv\":{\"blocks_total\":%d,\"blocks_used\":%d,\"blocks_cached\":%d,\"blocks_free\":%d,\"block_size\":%d,"
	       "\"usage_perc\":",
	       s->kv_blocks_total, s->kv_blocks_used, s->kv_blocks_cached, s->kv_blocks_free, s->block_size);
	json_num(kv_usage(s));
	printf("},\"prefix_cache\":{\"queries_tokens\":%llu,\"hits_tokens\":%llu,\"hit_rate\":",
	       (unsigned long long)s->prefix_queries_tokens, (unsigned long long)s->prefix_hits_tokens);
	json_num(prefix_hit_rate(s));
	printf("},\"tokens\":{\"prompt_total\":%llu,\"generation_total\":%llu}", (unsigned long long)s->prompt_tokens_total,
	       (unsigned long long)s->generation_tokens_total);
	fputs(",\"rates\":", stdout);
	if (t->rates_valid) {
		fputs("{\"interval_s\":", stdout);
		json_num(t->rate_dt);
		fputs(",\"steps_per_s\":", stdout);
		json_num(t->rate_steps);
		fputs(",\"prompt_tokens_per_s\":", stdout);
		json_num(t->rate_prompt);
		fputs(",\"generation_tokens_per_s\":", stdout);
		json_num(t->rate_gen);
		fputs("}", stdout);
	} else {
		fputs("null", stdout);
	}
	static const char *const hist_names[PF_HIST_COUNT] = {
		[PF_HIST_TTFT] = "ttft_s", [PF_HIST_ITL] = "itl_s", [PF_HIST_E2E] = "e2e_s",
		[PF_HIST_STEP_TIME] = "step_time_s", [PF_HIST_STEP_TOKENS] = "step_tokens",
	};
	fputs(",\"latency\":{", stdout);
	for (int h = 0; h < PF_HIST_COUNT; h++) {
		printf("%s\"%s\":", h ? "," : "", hist_names[h]);
		json_hist(&s->hist[h]);
	}
	printf("},\"n_clients\":%d,\"clients\":[", s->n_clients);
	struct pf_stats_client cl[PF_STATS_MAX_CLIENTS];
	int n = sorted_clients(t, cl);
	for (int i = 0; i < n; i++) {
		printf("%s{\"id\":%llu,\"pid\":%d,\"uid\":%u,\"comm\":", i ? "," : "", (unsigned long long)cl[i].id, cl[i].pid,
		       cl[i].uid);
		stats_json_str(stdout, cl[i].comm);
		printf(",\"inflight\":%d,\"tokens_in\":%llu,\"tokens_out\":%llu,\"errors\":%llu}", cl[i].inflight,
		       (unsigned long long)cl[i].tokens_in, (unsigned long long)cl[i].tokens_out,
		       (unsigned long long)cl[i].errors);
	}
	fputs("]}\n", stdout);
}

/* ---- the screen ------------------------------------------------------------------ */

/* Draw s at (y, x), clipped at column `right` (by display columns; never
 * wraps to the next line).  Returns the columns used. */
static int put_clip(int y, int x, int right, attr_t attr, const char *s)
{
	if (right > COLS)
		right = COLS;
	if (y < 0 || y >= LINES || x >= right)
		return 0;
	int room = right - x, cols = 0;
	size_t bytes = 0, n = strlen(s);
	mbstate_t st;
	memset(&st, 0, sizeof(st));
	while (bytes < n) {
		wchar_t wc;
		size_t l = mbrtowc(&wc, s + bytes, n - bytes, &st);
		if (l == (size_t)-1 || l == (size_t)-2 || l == 0) /* sanitized text: not expected */
			break;
		int w = wcwidth(wc);
		if (w < 0)
			w = 1;
		if (cols + w > room)
			break;
		cols += w;
		bytes += l;
	}
	attron(attr);
	mvaddnstr(y, x, s, (int)bytes);
	attroff(attr);
	return cols;
}

static int put(int y, int x, attr_t attr, const char *s)
{
	return put_clip(y, x, COLS, attr, s);
}

static void putf(int y, int x, attr_t attr, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void putf(int y, int x, attr_t attr, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	put(y, x, attr, buf);
}

static attr_t pair_attr(const struct top *t, int pair)
{
	return t->color ? (attr_t)COLOR_PAIR(pair) : A_NORMAL;
}

/* The bar, and its figures beside it or (narrow screens) below it.
 * Returns the lines used. */
static int draw_kv(const struct top *t, int y)
{
	enum { X_BAR = 10, MIN_BAR = 16, MAX_BAR = 60 };
	char bar[MAX_BAR + 1], text[256];
	line_kv(t, text, sizeof(text));
	int tl = (int)strlen(text);
	int w = COLS - X_BAR - 4 - tl;
	bool below = w < MIN_BAR;
	if (below)
		w = COLS - X_BAR - 3;
	w = w > MAX_BAR ? MAX_BAR : w < 1 ? 1 : w;
	kv_bar(&t->snap, bar, w);
	put(y, 0, A_BOLD, "KV cache");
	put(y, X_BAR, A_NORMAL, "[");
	for (int i = 0; i < w; i++) {
		attr_t a = bar[i] == '#'   ? pair_attr(t, PAIR_USED) | A_BOLD
			   : bar[i] == '=' ? pair_attr(t, PAIR_CACHED)
					   : A_DIM;
		char c[2] = { bar[i], 0 };
		put(y, X_BAR + 1 + i, a, c);
	}
	put(y, X_BAR + 1 + w, A_NORMAL, "]");
	if (!below) {
		put(y, X_BAR + 3 + w, A_NORMAL, text);
		return 1;
	}
	put(y + 1, X_BAR + 1, A_NORMAL, text);
	return 2;
}

static void draw_spark(const struct top *t, int y)
{
	static const char *const blocks[8] = { "\u2581", "\u2582", "\u2583", "\u2584",
					       "\u2585", "\u2586", "\u2587", "\u2588" };
	static const char ascii[8] = { '_', '.', ':', '-', '=', '+', '*', '#' };
	int span = SPARK_N < COLS - 2 ? SPARK_N : COLS - 2;
	int w = t->spark_len < span ? t->spark_len : span;
	double mx = 0, now = t->spark_len ? spark_get(t, 0) : NAN;
	for (int i = 0; i < w; i++) {
		double v = spark_get(t, i);
		if (isfinite(v) && v > mx)
			mx = v;
	}
	char nows[32];
	if (isfinite(now))
		snprintf(nows, sizeof(nows), "%.1f", now);
	else
		snprintf(nows, sizeof(nows), "-");
	int x = put(y, 0, A_BOLD, "generation tokens/s");
	putf(y, x, A_NORMAL, "   now %s   peak %.1f   (last %d s)", nows, mx, span);
	/* oldest left, newest right; the window fills from the right */
	put(y + 1, 0, A_DIM, "|");
	put(y + 1, span + 1, A_DIM, "|");
	for (int i = 0; i < w; i++) {
		double v = spark_get(t, w - 1 - i);
		char cell[8];
		if (!isfinite(v)) {
			snprintf(cell, sizeof(cell), " ");
		} else {
			int lvl = mx > 0 ? (int)lround(v / mx * 7.0) : 0;
			lvl = lvl < 0 ? 0 : lvl > 7 ? 7 : lvl;
			if (t->utf8)
				snprintf(cell, sizeof(cell), "%s", blocks[lvl]);
			else
				snprintf(cell, sizeof(cell), "%c", ascii[lvl]);
		}
		put(y + 1, 1 + span - w + i, pair_attr(t, PAIR_SPARK), cell);
	}
}

static void draw(struct top *t)
{
	erase();
	char line[1024];
	int y = 0;
	if (!t->have_snap) {
		put(0, 0, A_BOLD, "pinfer-top");
		putf(0, 12, A_NORMAL, "socket %s", t->socket_desc);
		putf(2, 0, pair_attr(t, PAIR_ALERT) | A_BOLD, "pinferd unreachable: %s", t->why);
		putf(3, 0, A_NORMAL, "retrying every %d s ...   (q quits)", RETRY_MS / 1000);
		refresh();
		return;
	}
	const struct pf_stats *s = &t->snap;
	/* below 30 lines the blank separators go, leaving room for clients */
	int gap = LINES >= 30 ? 1 : 0;
	char model[128], backend[128];
	stats_sanitize(model, sizeof(model), s->model, !t->utf8);
	stats_sanitize(backend, sizeof(backend), backend_desc(s), !t->utf8);
	int right = t->paused ? COLS - 9 : COLS;
	int x = put_clip(y, 0, right, A_BOLD, "pinfer-top");
	x += put_clip(y, x, right, A_NORMAL, "   model ");
	x += put_clip(y, x, right, A_BOLD, model);
	x += put_clip(y, x, right, A_NORMAL, "   backend ");
	put_clip(y, x, right, A_NORMAL, backend);
	if (t->paused && COLS > 10)
		put(y, COLS - 8, A_REVERSE | A_BOLD, "PAUSED");
	y++;
	line_header2(t, line, sizeof(line));
	put(y++, 0, A_NORMAL, line);
	if (!t->connected) {
		double ago = mono_s() - t->last_ok_t;
		putf(y, 0, pair_attr(t, PAIR_ALERT) | A_BOLD | (t->color ? 0 : A_REVERSE),
		     "pinferd unreachable, retrying every %d s (figures %.0f s old): %s", RETRY_MS / 1000, ago, t->why);
		y++;
	} else {
		y += gap;
	}
	y += draw_kv(t, y);
	y += gap;
	line_requests(t, line, sizeof(line));
	put(y++, 0, A_NORMAL, line);
	line_finished(t, line, sizeof(line));
	put(y++, 0, A_NORMAL, line);
	line_tokens(t, line, sizeof(line));
	put(y++, 0, A_NORMAL, line);
	y += gap;
	draw_spark(t, y);
	y += 2 + gap;
	line_lat_header(line, sizeof(line));
	put(y++, 0, A_BOLD, line);
	for (int i = 0; i < N_LAT_ROWS; i++) {
		line_lat(t, i, line, sizeof(line));
		put(y++, 0, A_NORMAL, line);
	}
	y += gap;
	if (y < LINES - 2) {
		putf(y++, 0, A_BOLD, "clients %d   sorted by %s, %s", s->n_clients, sort_cols[t->sort].name,
		     sort_cols[t->sort].desc != t->reverse ? "largest first" : "smallest first");
		int off = 0, w = 0;
		line_client_header(t, line, sizeof(line), &off, &w);
		int len = (int)strlen(line);
		if (len < COLS && COLS < (int)sizeof(line))
			snprintf(line + len, sizeof(line) - (size_t)len, "%*s", COLS - len, "");
		put(y, 0, A_REVERSE, line);
		char title[64];
		snprintf(title, sizeof(title), "%.*s", w, line + off);
		put(y, off, A_REVERSE | A_BOLD | A_UNDERLINE, title);
		y++;
		struct pf_stats_client cl[PF_STATS_MAX_CLIENTS];
		int n = sorted_clients(t, cl);
		int room = LINES - 1 - y;
		for (int i = 0; i < n && i < room; i++) {
			if (i == room - 1 && n > room) {
				putf(y++, 0, A_DIM, "... %d more", n - i);
				break;
			}
			line_client(t, &cl[i], line, sizeof(line));
			put(y++, 0, A_NORMAL, line);
		}
	}
	move(LINES - 1, 0);
	clrtoeol();
	put(LINES - 1, 0, A_DIM, "s sort  r reverse  p pause  q quit");
	refresh();
}

static int run_screen(struct top *t, bool ascii)
{
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "pinfer-top: not a terminal (use --once or --json for a snapshot)\n");
		return EXIT_TERMINAL;
	}
	setlocale(LC_ALL, "");
	t->utf8 = !ascii && strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	/* our handlers, installed first, keep ncurses from installing its own;
	 * no SA_RESTART, so a signal ends the wait in getch() at once */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	SCREEN *scr = newterm(NULL, stdout, stdin);
	if (!scr) {
		const char *term = getenv("TERM");
		fprintf(stderr, "pinfer-top: cannot use the terminal (TERM=%s)\n", term ? term : "(unset)");
		return EXIT_TERMINAL;
	}
	set_term(scr);
	cbreak();
	noecho();
	keypad(stdscr, TRUE);
	curs_set(0);
	if (has_colors()) {
		start_color();
		use_default_colors();
		init_pair(PAIR_USED, COLOR_GREEN, -1);
		init_pair(PAIR_CACHED, COLOR_YELLOW, -1);
		init_pair(PAIR_ALERT, COLOR_RED, -1);
		init_pair(PAIR_SPARK, COLOR_CYAN, -1);
		t->color = true;
	}
	sample(t);
	draw(t);
	double next = mono_s() + (t->connected ? t->interval_ms : RETRY_MS) / 1000.0;
	while (!g_quit) {
		double now = mono_s();
		int wait_ms = next > now ? (int)ceil((next - now) * 1000.0) : 0;
		timeout(wait_ms);
		int ch = getch();
		switch (ch) {
		case 'q':
		case 'Q':
			g_quit = 1;
			break;
		case 's':
			t->sort = (enum sort_col)((t->sort + 1) % SORT_N);
			t->reverse = false;
			break;
		case 'S':
			t->sort = (enum sort_col)((t->sort + SORT_N - 1) % SORT_N);
			t->reverse = false;
			break;
		case 'r':
			t->reverse = !t->reverse;
			break;
		case 'p':
		case ' ':
			t->paused = !t->paused;
			if (!t->paused) {
				/* the paused stretch is a gap, not an average */
				reset_baselines(t);
				next = 0;
			}
			break;
		case 12: /* Ctrl-L */
			clearok(curscr, TRUE);
			break;
		case KEY_RESIZE: /* ncurses resized stdscr already */
		default:
			break;
		}
		if (g_quit)
			break;
		now = mono_s();
		if (now >= next) {
			if (!t->paused)
				sample(t);
			double period = (t->connected || t->paused ? t->interval_ms : RETRY_MS) / 1000.0;
			next += period;
			if (next < now)
				next = now + period;
		}
		draw(t);
	}
	endwin();
	delscreen(scr);
	return 0;
}

/* ---- main ---------------------------------------------------------------------- */

static int parse_int(const char *opt, const char *v, long lo, long hi, int *ret)
{
	long long x;
	int r = pf_opt_int("pinfer-top", opt, v, lo, hi, &x);
	if (!r)
		*ret = (int)x;
	return r;
}

int main(int argc, char **argv)
{
	enum { OPT_SOCKET = 256, OPT_INSTANCE, OPT_INTERVAL, OPT_ASCII, OPT_ONCE, OPT_JSON };
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "instance", required_argument, NULL, OPT_INSTANCE },
		{ "interval", required_argument, NULL, OPT_INTERVAL },
		{ "ascii", no_argument, NULL, OPT_ASCII },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct top top; /* large (two snapshots): not on the stack */
	struct top *t = &top;
	bool ascii = false, once = false, json = false;
	int c;

	pinfer_connect_opts_init(&t->conn);
	t->conn.err = t->err;
	t->conn.err_len = sizeof(t->err);
	/* a hung daemon must not freeze the screen for long */
	t->conn.timeout_ms = 1000;
	t->interval_ms = DEFAULT_INTERVAL_MS;
	t->sort = SORT_OUT;
	stats_src_init(&t->src);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_SOCKET: t->conn.socket_path = optarg; break;
		case OPT_INSTANCE: t->conn.instance = optarg; break;
		case OPT_INTERVAL:
			if (parse_int("--interval", optarg, 0, 60000, &t->interval_ms))
				return EXIT_USAGE;
			break;
		case OPT_ASCII: ascii = true; break;
		case OPT_ONCE: once = true; break;
		case OPT_JSON: json = true; break;
		case 'h': usage(stdout); return 0;
		default: pf_opt_error("pinfer-top", argc, argv, "h", opts, NULL); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pinfer-top: unexpected argument '%s' (see --help)\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (once && json) {
		fprintf(stderr, "pinfer-top: --once and --json exclude each other\n");
		return EXIT_USAGE;
	}
	if (t->conn.socket_path && t->conn.instance) {
		fprintf(stderr, "pinfer-top: give --socket or --instance, not both\n");
		return EXIT_USAGE;
	}
	if (pf_shm_socket_path(t->conn.socket_path, t->conn.instance, t->socket_desc, sizeof(t->socket_desc)) < 0) {
		fprintf(stderr, "pinfer-top: bad socket path or instance name (names: 1..64 of [A-Za-z0-9._-])\n");
		return EXIT_USAGE;
	}
	if (!once && !json) {
		if (t->interval_ms < 100)
			t->interval_ms = 100;
		int r = run_screen(t, ascii);
		stats_src_close(&t->src);
		return r;
	}

	setlocale(LC_ALL, "");
	t->utf8 = !ascii && strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	t->conn.timeout_ms = 5000;
	int r = sample(t);
	if (!r && t->interval_ms > 0) {
		struct timespec ts = { t->interval_ms / 1000, (long)(t->interval_ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		r = sample(t);
	}
	stats_src_close(&t->src);
	if (r < 0) {
		fprintf(stderr, "pinfer-top: pinferd unreachable: %s\n", t->why);
		return EXIT_UNREACHABLE;
	}
	if (json)
		print_json(t);
	else
		print_once(t);
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "pinfer-top: cannot write the snapshot: %s\n", strerror(errno));
		return EXIT_UNREACHABLE;
	}
	return 0;
}
