/*
 * metrics.c — GET /metrics: every route's daemon statistics through the
 * formatter pinfer-exporter uses (tools/prom_fmt.h; --metrics-prefix
 * pinfer|vllm picks the names), then the server's own: HTTP requests by
 * endpoint and status, open streams, and a request latency histogram
 * (pinfer_server:...).
 *
 * The daemon's segment is re-read on every scrape (stats_src_refresh
 * registers anew: the one sure sign the daemon is alive, and it follows a
 * restarted daemon).  That runs on the HTTP thread with a 1 s handshake
 * limit; a daemon that does not answer is left out, with the server's own
 * metrics still served (the whole answer is 503 only when no daemon answers).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/prom_fmt.h"
#include "tools/server/server.h"
#include "tools/stats_fmt.h"

static const double lat_bounds[SRV_LAT_BUCKETS] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120 };

int srv_metrics_init(struct srv_metrics *m, int n_backends, const char *prefix)
{
	pthread_mutex_init(&m->mu, NULL);
	m->prefix = prefix;
	m->src = calloc((size_t)n_backends, sizeof(*m->src));
	if (!m->src)
		return -ENOMEM;
	for (int i = 0; i < n_backends; i++)
		stats_src_init(&m->src[i]);
	return 0;
}

void srv_metrics_observe(struct srv_metrics *m, const char *endpoint, unsigned status, double seconds)
{
	pthread_mutex_lock(&m->mu);
	int i;
	for (i = 0; i < m->n_series; i++)
		if (m->series[i].status == status && strcmp(m->series[i].endpoint, endpoint) == 0)
			break;
	if (i == m->n_series && m->n_series < SRV_MAX_SERIES) {
		snprintf(m->series[i].endpoint, sizeof(m->series[i].endpoint), "%s", endpoint);
		m->series[i].status = status;
		m->n_series++;
	}
	if (i < m->n_series)
		m->series[i].count++;
	int b = 0;
	while (b < SRV_LAT_BUCKETS && seconds > lat_bounds[b])
		b++;
	m->lat_counts[b]++;
	m->lat_sum += seconds;
	pthread_mutex_unlock(&m->mu);
}

void srv_metrics_streams(struct srv_metrics *m, int delta)
{
	pthread_mutex_lock(&m->mu);
	m->open_streams += delta;
	pthread_mutex_unlock(&m->mu);
}

static void own_metrics(FILE *f, struct srv_metrics *m)
{
	char num[32];
	pthread_mutex_lock(&m->mu);
	fputs("# HELP pinfer_server:http_requests_total HTTP requests answered, by endpoint and status.\n"
	      "# TYPE pinfer_server:http_requests_total counter\n",
	      f);
	for (int i = 0; i < m->n_series; i++) {
		fputs("pinfer_server:http_requests_total{endpoint=", f);
		stats_prom_label(f, m->series[i].endpoint);
		fprintf(f, ",status=\"%u\"} %llu\n", m->series[i].status, (unsigned long long)m->series[i].count);
	}
	fprintf(f,
		"# HELP pinfer_server:open_streams Streamed answers in progress.\n"
		"# TYPE pinfer_server:open_streams gauge\npinfer_server:open_streams %d\n",
		m->open_streams);
	fputs("# HELP pinfer_server:request_latency_seconds Time from a request's headers to the end of its answer.\n"
	      "# TYPE pinfer_server:request_latency_seconds histogram\n",
	      f);
	uint64_t cum = 0;
	for (int b = 0; b <= SRV_LAT_BUCKETS; b++) {
		cum += m->lat_counts[b];
		if (b < SRV_LAT_BUCKETS)
			stats_fmt_double(num, sizeof(num), lat_bounds[b]);
		fprintf(f, "pinfer_server:request_latency_seconds_bucket{le=\"%s\"} %llu\n",
			b < SRV_LAT_BUCKETS ? num : "+Inf", (unsigned long long)cum);
	}
	stats_fmt_double(num, sizeof(num), m->lat_sum);
	fprintf(f, "pinfer_server:request_latency_seconds_sum %s\npinfer_server:request_latency_seconds_count %llu\n",
		num, (unsigned long long)cum);
	pthread_mutex_unlock(&m->mu);
}

int srv_metrics_render(struct srv_metrics *m, struct backend *b, int nb, char **ret, size_t *ret_len)
{
	static struct pf_stats snap[SRV_MAX_ROUTES]; /* the HTTP thread is the only caller */
	const struct pf_stats *all[SRV_MAX_ROUTES];
	char *body = NULL;
	size_t len = 0;
	int up = 0;
	FILE *f = open_memstream(&body, &len);
	if (!f)
		return -ENOMEM;
	for (int i = 0; i < nb; i++) {
		struct pf_stats *s = &snap[up];
		struct pinfer_connect_opts o;
		pthread_mutex_lock(&b[i].mu);
		o = b[i].conn;
		pthread_mutex_unlock(&b[i].mu);
		o.err = NULL;
		o.err_len = 0;
		o.timeout_ms = 1000;
		if (stats_src_refresh(&m->src[i], &o) < 0 || stats_src_read(&m->src[i], s) < 0)
			continue;
		/* the model id clients use (routes tell daemons apart by it) */
		if (b[i].served[0])
			snprintf(s->model, sizeof(s->model), "%s", b[i].served);
		all[up++] = s;
	}
	if (up)
		prom_render_n(f, all, up, m->prefix);
	own_metrics(f, m);
	if (fclose(f) != 0) {
		free(body);
		return -ENOMEM;
	}
	*ret = body;
	*ret_len = len;
	return up;
}
