/*
 * http.c — libmicrohttpd glue: routing, bearer keys, body and request
 * limits, and the hand-over of generation requests to the backend.
 *
 * MHD runs one internal thread in epoll mode with suspend/resume: a
 * generation request is submitted, then its connection is suspended until
 * the pump resumes it — non-streamed when the answer is complete, streamed
 * when the first event (or an early error) arrives; after that the stream's
 * content reader hands out whatever SSE bytes are ready and suspends the
 * connection again when there are none.  No callback ever blocks, so one
 * thread holds thousands of idle or waiting connections.
 *
 * Answering a streamed request only after its first event lets errors the
 * daemon finds (prompt + max_tokens over the context, quotas) be real HTTP
 * errors (400, 429) instead of error events inside a 200.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tools/server/server.h"

#define SRV_VERSION "0.1.0"

enum endpoint { EP_NONE, EP_CHAT, EP_COMPLETIONS, EP_TOKENIZE, EP_DETOKENIZE, EP_MODELS, EP_HEALTH, EP_VERSION, EP_METRICS };

/* metric labels: fixed names, never the client's URL (unbounded series) */
static const char *const ep_label[] = {
	[EP_NONE] = "other",          [EP_CHAT] = "/v1/chat/completions", [EP_COMPLETIONS] = "/v1/completions",
	[EP_TOKENIZE] = "/tokenize",  [EP_DETOKENIZE] = "/detokenize",    [EP_MODELS] = "/v1/models",
	[EP_HEALTH] = "/health",      [EP_VERSION] = "/version",          [EP_METRICS] = "/metrics",
};

/* endpoints that take a body and go to a daemon */
static bool ep_posts(enum endpoint ep)
{
	return ep == EP_CHAT || ep == EP_COMPLETIONS || ep == EP_TOKENIZE || ep == EP_DETOKENIZE;
}

struct conn_state {
	enum endpoint ep;
	struct sbuf body;
	bool too_big;
	bool replied;               /* an early answer (401, 413) is queued */
	bool streaming;             /* counted in open_streams */
	double t0;                  /* when the headers were complete */
	struct srv_req *r;
};

struct http {
	struct backend *b;          /* one per route */
	int nb;
	struct srv_metrics *m;
	struct srv_config *cfg;
	time_t started;
};

/* ---- replies ------------------------------------------------------------------------------- */

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s)
		return MHD_NO;
	size_t n = strlen(s);
	struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(n, s, free);
	if (!r) {
		free(s);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (status == 429 || status == 503)
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	if (status == 401)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_err(struct MHD_Connection *c, const struct srv_err *e)
{
	return reply_json(c, (unsigned)e->status, oai_error_json(e));
}

static enum MHD_Result reply_errf(struct MHD_Connection *c, int status, const char *param, const char *msg)
{
	struct srv_err e;
	srv_err_set(&e, status, param, "%s", msg);
	return reply_err(c, &e);
}

/* ---- auth ---------------------------------------------------------------------------------- */

/* Constant time in the key's content: every byte of the longer string is
 * looked at whether or not an earlier one differed. */
static bool key_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), n = la > lb ? la : lb;
	unsigned char d = (unsigned char)(la != lb);
	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)((i < la ? a[i] : 0) ^ (i < lb ? b[i] : 0));
	return d == 0;
}

static bool authorized(struct http *h, struct MHD_Connection *c)
{
	if (!h->cfg->api_key)
		return true;
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!v || strncasecmp(v, "Bearer ", 7) != 0)
		return false;
	v += 7;
	while (*v == ' ')
		v++;
	return key_equal(v, h->cfg->api_key);
}

/* ---- GET endpoints ------------------------------------------------------------------------- */

/* Health: 200 when every route's daemon answers; else 503 naming the first
 * that does not.  Models: every route whose daemon was reached at least once
 * (its name may come from the daemon), 503 when none was. */
static enum MHD_Result get_endpoint(struct http *h, struct MHD_Connection *c, enum endpoint ep)
{
	json_t *data = json_array();
	char why[512] = "";
	for (int i = 0; i < h->nb; i++) {
		struct backend *b = &h->b[i];
		pthread_mutex_lock(&b->mu);
		if (!(b->c && b->away_since == 0) && !why[0])
			snprintf(why, sizeof(why), "%s%s%s", h->nb > 1 ? backend_name(b) : "", h->nb > 1 ? ": " : "",
				 b->why);
		if (b->model[0])
			json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:i}", "id", backend_name(b), "object",
							      "model", "created", (json_int_t)h->started, "owned_by",
							      "pinfer", "max_model_len", b->max_model_len));
		pthread_mutex_unlock(&b->mu);
	}

	switch (ep) {
	case EP_HEALTH:
		json_decref(data);
		if (!why[0])
			return reply_json(c, 200, json_pack("{s:s}", "status", "ok"));
		return reply_errf(c, 503, NULL, why);
	case EP_VERSION:
		json_decref(data);
		return reply_json(c, 200, json_pack("{s:s}", "version", SRV_VERSION));
	case EP_METRICS: {
		json_decref(data);
		char *body = NULL;
		size_t len = 0;
		int up = srv_metrics_render(h->m, h->b, h->nb, &body, &len);
		if (up < 0)
			return reply_errf(c, 500, NULL, "out of memory");
		/* no daemon answered: 503, so Prometheus records up == 0 (the
		 * server's own series are in the body all the same) */
		struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
		if (!r) {
			free(body);
			return MHD_NO;
		}
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
		enum MHD_Result ret = MHD_queue_response(c, up > 0 ? 200 : 503, r);
		MHD_destroy_response(r);
		return ret;
	}
	case EP_MODELS:
		if (json_array_size(data) == 0) {
			json_decref(data);
			return reply_errf(c, 503, NULL, why);
		}
		return reply_json(c, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
	default:
		json_decref(data);
		return reply_errf(c, 404, NULL, "not found");
	}
}

/* ---- streaming ------------------------------------------------------------------------------- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct srv_req *r = cls;
	struct backend *b = r->backend;
	ssize_t n;
	(void)pos;
	pthread_mutex_lock(&b->mu);
	if (r->client_gone) {
		n = MHD_CONTENT_READER_END_WITH_ERROR;
	} else if (r->out.len > r->out_off) {
		size_t k = r->out.len - r->out_off;
		if (k > max)
			k = max;
		memcpy(buf, r->out.p + r->out_off, k);
		r->out_off += k;
		if (r->out_off == r->out.len)
			r->out_off = r->out.len = 0;
		n = (ssize_t)k;
	} else if (r->done) {
		n = MHD_CONTENT_READER_END_OF_STREAM;
	} else {
		backend_park(b, r); /* the pump resumes it when there is more */
		n = 0;
	}
	pthread_mutex_unlock(&b->mu);
	return n;
}

static void stream_free(void *cls)
{
	(void)cls; /* the request is released by the completion callback */
}

/* ---- generation requests ----------------------------------------------------------------------- */

static enum MHD_Result generate_start(struct http *h, struct MHD_Connection *c, struct conn_state *st)
{
	struct srv_err e;
	if (st->too_big) {
		srv_err_set(&e, 413, NULL, "the body is larger than the limit of %zu bytes (--max-body)", h->cfg->max_body);
		return reply_err(c, &e);
	}
	static const enum srv_kind kinds[] = {
		[EP_CHAT] = SRV_CHAT, [EP_COMPLETIONS] = SRV_COMPLETION, [EP_TOKENIZE] = SRV_TOKENIZE,
		[EP_DETOKENIZE] = SRV_DETOKENIZE,
	};
	struct srv_req *r = srv_req_new(kinds[st->ep]);
	if (!r)
		return reply_errf(c, 500, NULL, "out of memory");
	st->r = r;
	char names[SRV_MAX_ROUTES][128];
	for (int i = 0; i < h->nb; i++) {
		pthread_mutex_lock(&h->b[i].mu);
		snprintf(names[i], sizeof(names[i]), "%s", backend_name(&h->b[i]));
		pthread_mutex_unlock(&h->b[i].mu);
	}
	if (h->nb == 1 && !names[0][0]) {
		srv_err_set(&e, 503, NULL, "pinferd is not reachable: %s", h->b[0].why);
		return reply_err(c, &e);
	}
	const char *body = st->body.p ? st->body.p : "";
	int prc = r->kind == SRV_TOKENIZE || r->kind == SRV_DETOKENIZE
			  ? oai_parse_tok(r, body, st->body.len, names, h->nb, &e)
			  : oai_parse(r, body, st->body.len, names, h->nb, h->cfg->default_max_tokens, &e);
	if (prc < 0)
		return reply_err(c, &e);
	struct backend *b = r->backend = &h->b[r->route];
	if (h->cfg->log_level >= 2)
		fprintf(stderr, "pinfer-server: %s: %s\n", r->id, st->body.p);
	sbuf_free(&st->body);

	r->conn = c;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	r->fd = ci ? ci->connect_fd : -1;
	pthread_mutex_lock(&b->mu);
	int rc = backend_submit(b, r, &e);
	if (rc == 0)
		backend_park(b, r);
	pthread_mutex_unlock(&b->mu);
	if (rc < 0)
		return reply_err(c, &e);
	return MHD_YES;
}

/* The connection was resumed: answer if there is something to answer with. */
static enum MHD_Result generate_resume(struct http *h, struct MHD_Connection *c, struct srv_req *r)
{
	struct backend *b = r->backend;
	(void)h;
	pthread_mutex_lock(&b->mu);
	if (r->client_gone) {
		pthread_mutex_unlock(&b->mu);
		return MHD_NO;
	}
	if (r->err_status) {
		struct srv_err e;
		srv_err_set(&e, r->err_status, NULL, "%s", r->err_msg);
		r->answered = true;
		pthread_mutex_unlock(&b->mu);
		return reply_err(c, &e);
	}
	if (!r->stream) {
		if (!r->done) {
			backend_park(b, r);
			pthread_mutex_unlock(&b->mu);
			return MHD_YES;
		}
		json_t *j = r->kind == SRV_TOKENIZE || r->kind == SRV_DETOKENIZE ? oai_tok_json(r, b->max_model_len)
										  : oai_final_json(r);
		r->answered = true;
		pthread_mutex_unlock(&b->mu);
		return reply_json(c, 200, j);
	}
	if (!r->ready) {
		backend_park(b, r);
		pthread_mutex_unlock(&b->mu);
		return MHD_YES;
	}
	r->answered = true;
	pthread_mutex_unlock(&b->mu);
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, r, stream_free);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	enum MHD_Result ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- the access handler ------------------------------------------------------------------------- */

static enum endpoint route(const char *url, const char *method, bool *method_ok)
{
	static const struct {
		const char *url;
		const char *method;
		enum endpoint ep;
	} tab[] = {
		{ "/v1/chat/completions", "POST", EP_CHAT }, { "/v1/completions", "POST", EP_COMPLETIONS },
		{ "/tokenize", "POST", EP_TOKENIZE },        { "/detokenize", "POST", EP_DETOKENIZE },
		{ "/v1/models", "GET", EP_MODELS },          { "/health", "GET", EP_HEALTH },
		{ "/version", "GET", EP_VERSION },           { "/metrics", "GET", EP_METRICS },
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcmp(url, tab[i].url) == 0) {
			*method_ok = strcmp(method, tab[i].method) == 0 ||
				     (strcmp(tab[i].method, "GET") == 0 && strcmp(method, "HEAD") == 0);
			return tab[i].ep;
		}
	*method_ok = true;
	return EP_NONE;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct http *h = cls;
	struct conn_state *st = *con_cls;
	(void)version;

	if (!st) {
		st = calloc(1, sizeof(*st));
		if (!st)
			return MHD_NO;
		*con_cls = st;
		st->t0 = srv_now();
		bool method_ok;
		st->ep = route(url, method, &method_ok);
		if (st->ep == EP_NONE) {
			st->replied = true;
			return reply_errf(c, 404, NULL, "not found: pinfer-server serves /v1/chat/completions, "
							"/v1/completions, /v1/models, /tokenize, /detokenize, /health and /version");
		}
		if (!method_ok) {
			st->replied = true;
			return reply_errf(c, 405, NULL, "method not allowed");
		}
		if ((strncmp(url, "/v1/", 4) == 0 || ep_posts(st->ep)) && !authorized(h, c)) {
			st->replied = true;
			return reply_errf(c, 401, NULL, "missing or wrong API key (Authorization: Bearer KEY)");
		}
		if (ep_posts(st->ep)) {
			const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
			if (cl && strtoull(cl, NULL, 10) > h->cfg->max_body) {
				st->replied = true;
				struct srv_err e;
				srv_err_set(&e, 413, NULL, "the body (%s bytes) is larger than the limit of %zu bytes (--max-body)",
					    cl, h->cfg->max_body);
				return reply_err(c, &e);
			}
		}
		/* answered on the next call, after the whole request was read:
		 * a response queued on the first call makes libmicrohttpd close
		 * the connection (it cannot know no body follows) */
		return MHD_YES;
	}
	if (!ep_posts(st->ep)) {
		*upload_size = 0;
		return get_endpoint(h, c, st->ep);
	}
	if (st->replied) {
		*upload_size = 0; /* discard the rest of a refused body */
		return MHD_YES;
	}
	if (*upload_size) {
		if (!st->too_big && st->body.len + *upload_size > h->cfg->max_body) {
			st->too_big = true;
			sbuf_free(&st->body);
		}
		if (!st->too_big && sbuf_add(&st->body, upload, *upload_size) < 0)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	if (!st->r)
		return generate_start(h, c, st);
	enum MHD_Result ret = generate_resume(h, c, st->r);
	if (!st->streaming && st->r->stream && st->r->answered && !st->r->err_status) {
		st->streaming = true;
		srv_metrics_streams(h->m, 1);
	}
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct http *h = cls;
	struct conn_state *st = *con_cls;
	(void)toe;
	if (!st)
		return;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
	/* 499: the client left before an answer was queued (nginx's code) */
	unsigned status = ci && ci->http_status ? ci->http_status : 499;
	srv_metrics_observe(h->m, ep_label[st->ep], status, srv_now() - st->t0);
	if (st->streaming)
		srv_metrics_streams(h->m, -1);
	if (st->r && st->r->backend) {
		struct backend *b = st->r->backend;
		pthread_mutex_lock(&b->mu);
		backend_release(b, st->r);
		srv_req_unref(st->r);
		pthread_mutex_unlock(&b->mu);
	} else if (st->r) {
		srv_req_unref(st->r); /* never reached a backend: nobody else holds it */
	}
	sbuf_free(&st->body);
	free(st);
	*con_cls = NULL;
}

struct MHD_Daemon *http_start(struct backend *b, int nb, struct srv_config *cfg, struct srv_metrics *m,
			      const struct sockaddr *sa, bool ipv6, int listen_fd)
{
	static struct http h;
	h.b = b;
	h.nb = nb;
	h.m = m;
	h.cfg = cfg;
	h.started = time(NULL);
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ipv6)
		flags |= MHD_USE_IPv6;
	if (listen_fd >= 0)
		return MHD_start_daemon(flags, 0, NULL, NULL, on_request, &h, MHD_OPTION_LISTEN_SOCKET, listen_fd,
					MHD_OPTION_NOTIFY_COMPLETED, on_completed, &h, MHD_OPTION_CONNECTION_LIMIT,
					cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s,
					MHD_OPTION_END);
	return MHD_start_daemon(flags, 0, NULL, NULL, on_request, &h, MHD_OPTION_SOCK_ADDR, sa,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, &h, MHD_OPTION_CONNECTION_LIMIT,
				cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s,
				MHD_OPTION_END);
}
