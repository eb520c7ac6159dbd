/*
 * server.h — pinfer-server, the OpenAI-compatible HTTP front of pinferd.
 *
 * A separate, unprivileged process built only on libpinfer (client/), with
 * libmicrohttpd for HTTP and jansson for every JSON body: pinferd stays free
 * of HTTP, and the server never loads the model or the tokenizer.
 *
 *   HTTP thread (MHD, epoll)            pump thread (backend.c)
 *   ───────────────────────             ───────────────────────
 *   http.c: auth, body, limits          owns the libpinfer connection's
 *   oai_req.c: JSON → struct srv_req    read side: pinfer_next → oai_out.c
 *   backend_submit() ──pinfer_submit─►  appends SSE chunks / text to the
 *   suspend the connection              request, resumes its connection
 *   ◄──────────── MHD_resume_connection ─┘
 *
 * One mutex (backend.mu) guards the libpinfer connection (which wants one
 * user at a time) and the live part of every request; requests are small
 * state machines that the two threads hand to each other through it.
 *
 * Files, one job each: main.c (options, start, signals), http.c (routing,
 * auth, body and request limits, replies), oai_req.c (OpenAI request bodies
 * to pinfer parameters, every refusal), oai_out.c (response bodies and
 * stream chunks), backend.c (the daemon connection, event dispatch,
 * reconnection, cancel on client disconnect), metrics.c (GET /metrics).
 */
#ifndef PF_TOOLS_SERVER_H
#define PF_TOOLS_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "client/pinfer.h"

#define SRV_MAX_PROMPTS 16 /* prompts of one /v1/completions request */
#define SRV_MAX_CHOICES 64 /* prompts × n */
#define SRV_MAX_ROUTES 16  /* --route */

/* ---- growable byte buffer ---------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
};
int sbuf_add(struct sbuf *b, const void *s, size_t n); /* 0 or -ENOMEM; keeps a NUL after len */
void sbuf_free(struct sbuf *b);

/* ---- configuration ---------------------------------------------------------------- */

struct srv_config {
	const char *listen;          /* HOST:PORT */
	struct pinfer_connect_opts conn; /* without --route: the one daemon */
	const char *served_name;     /* without --route: the model id; NULL: the daemon's model name */
	struct srv_route {           /* --route NAME=INSTANCE|SOCKET-PATH */
		const char *name;
		const char *target;
	} route[SRV_MAX_ROUTES];
	int n_routes;
	char *api_key;               /* NULL: no authentication */
	size_t max_body;             /* bytes */
	unsigned max_requests;       /* generation requests in flight */
	unsigned max_connections;
	unsigned idle_timeout_s;
	int32_t default_max_tokens;  /* chat without max_tokens */
	double resume_wait_s;        /* how long streams wait for a draining daemon to return */
	int log_level;               /* 0 errors, 1 info, 2 debug (prompt text never logged below 2) */
};

/* ---- one generation request ---------------------------------------------------------- */

enum srv_kind { SRV_CHAT, SRV_COMPLETION, SRV_TOKENIZE, SRV_DETOKENIZE };

struct srv_choice {
	struct sbuf text;            /* non-streamed: the whole text */
	bool finished;
	enum pinfer_finish_reason reason;
	int32_t tokens;
	json_t *lp;                  /* logprobs entries (chat: content[]; completion: arrays) */
	size_t text_off;             /* completion logprobs: text_offset of the next token */
	/* the token whose alternatives (a LOGPROBS event) may still follow */
	bool pend;
	int32_t pend_token;
	float pend_logprob;
	struct sbuf pend_text;
};

struct srv_prompt {                  /* one pinfer request */
	const char *text;            /* text prompt (points into the parsed JSON), or NULL */
	int32_t *ids;                /* token prompt */
	size_t n_ids;
	uint64_t tag;
	bool live;                   /* submitted and not yet ended */
	bool suspended;              /* the daemon saved it on a drain (reattach on reconnect) */
	int32_t prompt_tokens, cached_tokens;
};

struct srv_req {
	/* fixed once parsed (oai_req.c) */
	enum srv_kind kind;
	json_t *body;                /* the parsed request; strings below point into it */
	bool stream, include_usage, echo;
	int logprobs;                /* -1 off; else number of alternatives (chat: top_logprobs) */
	int n;
	int n_prompts;
	struct srv_prompt prompt[SRV_MAX_PROMPTS];
	struct pinfer_message *msgs;
	size_t n_msgs;
	char **msg_text;             /* joined content parts */
	struct pinfer_params params;
	const char *stop[PINFER_MAX_STOP];
	json_t *ids;                 /* SRV_TOKENIZE: the answer */
	char id[48];
	time_t created;
	char model[128];

	/* live: under backend.mu */
	struct srv_choice choice[SRV_MAX_CHOICES];
	int n_live;                  /* prompts still live in the daemon */
	bool done;                   /* every prompt ended (or failed) */
	bool ready;                  /* something to answer with (first event, or done) */
	int err_status;              /* HTTP status of a failure before the answer started */
	char err_msg[384];
	const char *err_type;
	struct sbuf out;             /* streamed: SSE bytes not yet handed to MHD */
	size_t out_off;
	bool answered;               /* the HTTP response was queued */
	bool parked;                 /* its connection is suspended, waiting for the pump */
	int fd;                      /* the connection's socket, polled while parked */
	struct MHD_Connection *conn;
	bool client_gone;
	bool cancelled;
	bool admitted;               /* counted in backend.n_requests */
	int route;                   /* which backend */
	struct backend *backend;
	int refs;                    /* http side + backend side */
	struct srv_req *next_live;   /* backend's list */
};

struct srv_req *srv_req_new(enum srv_kind kind);
void srv_req_unref(struct srv_req *r); /* under backend.mu */

/* ---- oai_req.c: parse and validate ------------------------------------------------ */

struct srv_err {
	int status;
	const char *type;            /* "invalid_request_error", ... */
	char param[96];
	char code[32];
	char msg[384];
};
int srv_err_set(struct srv_err *e, int status, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Parse body into r (kind set); `model` must be one of names[0..n_names)
 * (else 404), and r->route is its index.  Returns 0 or -1 with e filled. */
int oai_parse(struct srv_req *r, const char *body, size_t len, char (*names)[128], int n_names,
	      int32_t default_max_tokens, struct srv_err *e);

/* /tokenize and /detokenize bodies (vLLM's shapes), same contract. */
int oai_parse_tok(struct srv_req *r, const char *body, size_t len, char (*names)[128], int n_names, struct srv_err *e);

/* ---- oai_out.c: render -------------------------------------------------------------- */

json_t *oai_error_json(const struct srv_err *e);
/* The whole non-streamed answer (under backend.mu, r done). */
json_t *oai_final_json(const struct srv_req *r);
json_t *oai_tok_json(const struct srv_req *r, int32_t max_model_len);
/* Append stream chunks to r->out. */
void oai_chunk_start(struct srv_req *r);                          /* chat: the role deltas */
void oai_chunk_text(struct srv_req *r, int ci, const char *text, size_t len, json_t *lp);
void oai_chunk_finish(struct srv_req *r, int ci);
void oai_chunk_end(struct srv_req *r);                            /* usage + [DONE] */
void oai_chunk_error(struct srv_req *r, const struct srv_err *e); /* error event + [DONE] */
const char *oai_finish_reason(enum pinfer_finish_reason r);
/* logprob entries */
json_t *oai_lp_entry(const struct srv_req *r, int32_t token, float logprob, const char *text, size_t len,
		     const int32_t *top_tok, const float *top_lp, uint32_t n_top);
void oai_lp_append(struct srv_req *r, struct srv_choice *c, json_t *entry, size_t text_len);
void oai_usage(const struct srv_req *r, int32_t *prompt, int32_t *completion, int32_t *cached);

/* ---- backend.c ------------------------------------------------------------------------ */

struct backend {
	pthread_mutex_t mu;
	struct srv_config *cfg;
	struct pinfer_connect_opts conn;
	char served[128];            /* the model id clients send; "" = the daemon's model name */
	struct pinfer *c;            /* NULL while the daemon is away */
	char model[128];             /* daemon model name, "" before the first connect */
	int32_t max_model_len;
	int32_t n_vocab;
	struct srv_req *live;        /* requests with prompts in the daemon or parked connections */
	unsigned n_requests;         /* generation requests admitted and not yet answered */
	int wake_fd;                 /* eventfd: wakes the pump */
	bool stop;
	double away_since;           /* monotonic seconds the daemon has been gone; 0 if here */
	pthread_t thread;
	char why[256];               /* why the daemon is unreachable */
};

/* Connect (or keep trying) to the daemon at conn, serving model id `served`
 * (NULL: the daemon's model name). */
int backend_start(struct backend *b, struct srv_config *cfg, const struct pinfer_connect_opts *conn,
		  const char *served);
/* The model id clients use for b ("" before the daemon was first reached).  Under b->mu. */
const char *backend_name(const struct backend *b);
void backend_stop(struct backend *b);
/* Submit r (parsed).  Under b->mu.  0, or -1 with e filled (429, 503, 400). */
int backend_submit(struct backend *b, struct srv_req *r, struct srv_err *e);
/* The client went away or the HTTP side is done with r: cancel what is live. Under b->mu. */
void backend_abandon(struct backend *b, struct srv_req *r);
/* The HTTP side is done with r (answered, or the client left).  Under b->mu. */
void backend_release(struct backend *b, struct srv_req *r);
/* Drop requests that neither side needs any more.  Under b->mu. */
void backend_reap(struct backend *b);
/* Park r's connection until the pump has something for it.  Under b->mu. */
void backend_park(struct backend *b, struct srv_req *r);
double srv_now(void);

/* ---- metrics.c ------------------------------------------------------------------------- */

#define SRV_LAT_BUCKETS 13 /* + the +Inf bucket */
#define SRV_MAX_SERIES 64  /* (endpoint, status) pairs counted */

struct stats_src;

struct srv_metrics {
	pthread_mutex_t mu;
	struct {
		char endpoint[32];
		unsigned status;
		uint64_t count;
	} series[SRV_MAX_SERIES];
	int n_series;
	int open_streams;
	uint64_t lat_counts[SRV_LAT_BUCKETS + 1];
	double lat_sum;
	struct stats_src *src;       /* one per backend (the daemon's stats segment) */
	const char *prefix;          /* --metrics-prefix: "pinfer" or "vllm" */
};

int srv_metrics_init(struct srv_metrics *m, int n_backends, const char *prefix);
void srv_metrics_observe(struct srv_metrics *m, const char *endpoint, unsigned status, double seconds);
void srv_metrics_streams(struct srv_metrics *m, int delta);
/* The /metrics body (malloc'ed) in *ret: the daemons' statistics, then the
 * server's own.  Returns how many daemons answered (>= 0) or -ENOMEM. */
int srv_metrics_render(struct srv_metrics *m, struct backend *b, int nb, char **ret, size_t *ret_len);

/* ---- http.c ---------------------------------------------------------------------------- */

struct sockaddr;
/* Listen on sa, or on the bound and listening socket listen_fd when >= 0. */
struct MHD_Daemon *http_start(struct backend *b, int n_backends, struct srv_config *cfg, struct srv_metrics *m,
			      const struct sockaddr *sa, bool ipv6, int listen_fd);

#endif
