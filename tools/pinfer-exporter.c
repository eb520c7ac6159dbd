/*
 * pinfer-exporter — pinferd's statistics in Prometheus text format 0.0.4.
 *
 *   pinfer-exporter --listen 127.0.0.1:9400 [--socket PATH | --instance NAME]
 *
 * An unprivileged helper: pinferd carries no HTTP code; this process
 * registers as a stats reader (pinfer_stats_open), maps the read-only
 * segment and renders a seqlock snapshot (pf_stats_read) on each GET
 * /metrics.  Metric names mirror vLLM's (vllm:X becomes pinfer:X) so
 * existing dashboards and autoscalers work; every series carries
 * model_name="...".
 *
 * Every scrape registers anew (tools/stats_fmt.h): a dead daemon's mapping
 * stays readable and an idle daemon's does not change, so that is the one
 * sure way to tell "alive" from "gone", and it follows a restarted daemon
 * to its new segment.  When the daemon cannot be reached, /metrics answers
 * 503 with one line saying why: Prometheus then records up == 0 for this
 * target, which is exactly "no numbers from pinferd right now" (a 200 with
 * stale or partial numbers would hide the outage from alerts on up).
 * GET /health is the liveness probe (vLLM's /health): the same check,
 * 200 "ok" while the daemon's stats segment is live, 503 and why otherwise.
 *
 * HTTP is libmicrohttpd with one internal polling thread: requests are
 * served one at a time on that thread, so the stats source needs no lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/pinfer.h"
#include "shm/stats.h"
#include "tools/common/listen.h"
#include "tools/common/opts.h"
#include "tools/prom_fmt.h"
#include "tools/stats_fmt.h"

#define EXIT_LISTEN 1
#define EXIT_USAGE 2

#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct exporter {
	struct pinfer_connect_opts conn;
	char err[256];
	const char *target;  /* --socket / --instance, for log lines */
	struct stats_src src;
	int state;           /* -1 not yet scraped, 0 daemon down, 1 up */
	bool quiet;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinfer-exporter [--listen HOST:PORT] [--socket PATH | --instance NAME]\n"
		"\n"
		"Serves pinferd's statistics for Prometheus at http://HOST:PORT/metrics (text\n"
		"format 0.0.4).  Metric names mirror vLLM's with the pinfer: prefix\n"
		"(pinfer:num_requests_running, pinfer:kv_cache_usage_perc,\n"
		"pinfer:time_to_first_token_seconds, ...), every series labelled\n"
		"model_name=\"...\".  The daemon is read on every scrape; a restarted daemon\n"
		"is followed automatically.\n"
		"\n"
		"  --listen HOST:PORT  address to serve on (default 127.0.0.1:9400); only that\n"
		"                      address is bound.  IPv6: [::1]:9400.  Port 0 picks a free\n"
		"                      port (logged at start).  0.0.0.0:PORT serves every IPv4\n"
		"                      interface: the numbers are not secret, but mind the host.\n"
		"  --socket PATH       the daemon's socket (default: resolved as clients do)\n"
		"  --instance NAME     the daemon instance (pinferd --instance NAME)\n"
		"  --quiet             log only errors (default: also start and daemon up/down)\n"
		"  --help              this text\n"
		"\n"
		"HTTP: GET (or HEAD) /metrics -> 200 with the metrics, or 503 with a one-line\n"
		"reason when pinferd cannot be reached (Prometheus then records up=0 for the\n"
		"target).  GET (or HEAD) /health -> 200 \"ok\" while pinferd's statistics\n"
		"segment is live, else 503 with the reason (a liveness probe).  Other paths\n"
		"-> 404; other methods -> 405.\n"
		"\n"
		"Metrics (model_name on each): gauges pinfer:num_requests_running,\n"
		"num_requests_waiting, num_requests_preempted (waiting to be recomputed after a\n"
		"preemption; also in waiting), num_clients, kv_cache_usage_perc (0..1: used\n"
		"blocks of all), kv_cache_blocks{state=used|cached|free},\n"
		"cache_config_info{block_size,num_gpu_blocks}, num_requests_swapped (sequences\n"
		"whose KV is in host swap space), cpu_cache_usage_perc (0..1 of the swap\n"
		"space), daemon_start_time_seconds,\n"
		"backend_info{backend}; counters prompt_tokens_total (whole prompts, cached\n"
		"tokens included, once per request at its first token), generation_tokens_total,\n"
		"prefix_cache_queries_total, prefix_cache_hits_total (tokens of new requests,\n"
		"once per admission), num_preemptions_total, num_swap_outs_total,\n"
		"num_swap_ins_total, engine_steps_total,\n"
		"request_admitted_total, request_success_total\n"
		"{finished_reason=stop|length|cancelled|error|deadline|stalled}; histograms\n"
		"time_to_first_token_seconds (buckets up to 640 s: CPU prefills are long),\n"
		"inter_token_latency_seconds (one observation per token after a sequence's\n"
		"first), e2e_request_latency_seconds, iteration_tokens_total,\n"
		"iteration_time_seconds.\n"
		"Requests count once whatever their n or beam width.  At every scrape\n"
		"request_admitted_total == sum(request_success_total) + num_requests_running\n"
		"+ num_requests_waiting, and the kv_cache_blocks states sum to num_gpu_blocks.\n"
		"\n"
		"Stops on SIGINT, SIGTERM or SIGHUP.  Exit status: 0 stopped by a signal;\n"
		"1 cannot listen on the address; 2 bad usage.\n");
}

static void logmsg(const struct exporter *e, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logmsg(const struct exporter *e, bool error, const char *fmt, ...)
{
	if (e->quiet && !error)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("pinfer-exporter: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- HTTP --------------------------------------------------------------------------- */

/* Queue body (malloc'd; freed here whatever happens) as the answer. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype, char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
	char *body = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (n < 0)
		return MHD_NO;
	return reply(c, status, "text/plain; charset=utf-8", body, (size_t)n);
}

/* Read the daemon: a snapshot in *s, or a negative errno and the reason. */
static int scrape(struct exporter *e, struct pf_stats *s, char *why, size_t why_len)
{
	e->err[0] = '\0';
	int r = stats_src_refresh(&e->src, &e->conn);
	if (r < 0) {
		snprintf(why, why_len, "%s", e->err[0] ? e->err : strerror(-r));
	} else {
		bool restarted = r == 1 && e->state == 1;
		r = stats_src_read(&e->src, s);
		if (r == -EPROTO)
			snprintf(why, why_len,
				 "pinferd's statistics segment has layout version %u, this exporter reads %d "
				 "(update the tools)",
				 s->version, PF_STATS_VERSION);
		else if (r < 0)
			snprintf(why, why_len, "cannot read pinferd's statistics: %s", strerror(-r));
		else if (restarted)
			logmsg(e, false, "pinferd at %s restarted; following it", e->target);
	}
	int now = r < 0 ? 0 : 1;
	if (now != e->state) {
		if (now) {
			char model[128];
			stats_sanitize(model, sizeof(model), s->model, false);
			logmsg(e, false, "pinferd at %s is up (model %s)", e->target, model);
		} else {
			logmsg(e, true, "pinferd at %s unreachable: %s", e->target, why);
		}
		e->state = now;
	}
	return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
	struct exporter *e = cls;
	static int seen;
	/* MHD calls twice for a request without a body: once with the headers,
	 * once more when the whole request is in.  Answering at the first call
	 * works too, but MHD then closes the connection instead of keeping it
	 * alive for the next scrape. */
	if (!*req_cls) {
		*req_cls = &seen;
		return MHD_YES;
	}
	if (*upload_data_size) { /* a body nobody asked for: skip it */
		*upload_data_size = 0;
		return MHD_YES;
	}
	bool health = strcmp(url, "/health") == 0;
	if (!health && strcmp(url, "/metrics") != 0)
		return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: pinfer-exporter serves /metrics and /health\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET %s\n", url);

	static struct pf_stats s; /* one request at a time: see the top of the file */
	char why[384];
	if (scrape(e, &s, why, sizeof(why)) < 0)
		return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "pinferd unreachable: %s\n", why);
	if (health)
		return reply_text(c, MHD_HTTP_OK, "ok\n");
	char *body = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&body, &len);
	if (!f)
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	prom_render(f, &s, "pinfer");
	if (fclose(f) != 0) {
		free(body);
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	}
	return reply(c, MHD_HTTP_OK, CONTENT_TYPE_METRICS, body, len);
}

/* ---- main --------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	enum { OPT_LISTEN = 256, OPT_SOCKET, OPT_INSTANCE, OPT_QUIET };
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "instance", required_argument, NULL, OPT_INSTANCE },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct exporter ex;
	struct exporter *e = &ex;
	const char *listen = "127.0.0.1:9400";
	char target[128];
	int c;

	pinfer_connect_opts_init(&e->conn);
	e->conn.err = e->err;
	e->conn.err_len = sizeof(e->err);
	/* a hung daemon must not hold a scrape past Prometheus's usual 10 s timeout */
	e->conn.timeout_ms = 2000;
	e->state = -1;
	stats_src_init(&e->src);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_LISTEN: listen = optarg; break;
		case OPT_SOCKET: e->conn.socket_path = optarg; break;
		case OPT_INSTANCE: e->conn.instance = optarg; break;
		case OPT_QUIET: e->quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: pf_opt_error("pinfer-exporter", argc, argv, "h", opts, NULL); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pinfer-exporter: unexpected argument '%s' (see --help)\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (e->conn.socket_path && e->conn.instance) {
		fprintf(stderr, "pinfer-exporter: give --socket or --instance, not both\n");
		return EXIT_USAGE;
	}
	if (e->conn.socket_path)
		snprintf(target, sizeof(target), "%s", e->conn.socket_path);
	else if (e->conn.instance)
		snprintf(target, sizeof(target), "instance %s", e->conn.instance);
	else
		snprintf(target, sizeof(target), "the default socket");
	e->target = target;

	struct sockaddr_storage sa;
	socklen_t sa_len = 0;
	if (pf_parse_listen("pinfer-exporter", "127.0.0.1:9400", listen, &sa, &sa_len) < 0)
		return EXIT_USAGE;

	/* the signals we stop on are taken with sigwait below; block them
	 * before MHD starts its thread so that thread never takes them */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	uint16_t port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
						       : ((struct sockaddr_in *)&sa)->sin_port);
	struct MHD_Daemon *d = MHD_start_daemon(flags, port, NULL, NULL, on_request, e,
						MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
						MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
						MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
						MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "pinfer-exporter: cannot listen on %s (in use, or not an address of this host?)\n", listen);
		return EXIT_LISTEN;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (di && di->port)
		port = di->port;
	char host[INET6_ADDRSTRLEN];
	inet_ntop(sa.ss_family,
		  sa.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&sa)->sin6_addr
					   : (void *)&((struct sockaddr_in *)&sa)->sin_addr,
		  host, sizeof(host));
	logmsg(e, false, "serving http://%s%s%s:%u/metrics for pinferd at %s", sa.ss_family == AF_INET6 ? "[" : "", host,
	       sa.ss_family == AF_INET6 ? "]" : "", port, e->target);

	int sig;
	while (sigwait(&stop, &sig) != 0)
		;
	logmsg(e, false, "stopping (%s)", strsignal(sig));
	MHD_stop_daemon(d);
	stats_src_close(&e->src);
	return 0;
}
