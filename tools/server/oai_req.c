/*
 * oai_req.c — OpenAI request bodies (/v1/chat/completions, /v1/completions)
 * to pinfer parameters.  Every value is checked against the range libpinfer
 * accepts and a bad one is refused naming the field and the range; every
 * parameter pinfer cannot honour is refused naming it — nothing is silently
 * ignored except `user` (an end-user id for abuse tracking; nothing to do).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/server/server.h"

int srv_err_set(struct srv_err *e, int status, const char *param, const char *fmt, ...)
{
	va_list ap;

	e->status = status;
	e->type = status == 401 ? "authentication_error"
		: status == 404 ? "not_found_error"
		: status == 429 ? "rate_limit_error"
		: status >= 500 ? "server_error"
		: "invalid_request_error";
	snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
	e->code[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- typed field access ------------------------------------------------------------- */

/* A number field in [lo, hi] (bounds inclusive unless open_lo); absent or
 * null leaves *out.  0 or -1 with e set. */
static int get_num(json_t *o, const char *k, double lo, double hi, bool open_lo, double *out, struct srv_err *e)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return srv_err_set(e, 400, k, "'%s' must be a number", k);
	double x = json_number_value(v);
	if (!isfinite(x) || x > hi || x < lo || (open_lo && x <= lo))
		return srv_err_set(e, 400, k, "'%s' is %g; it must be in %s%g, %g]", k, x, open_lo ? "(" : "[", lo, hi);
	*out = x;
	return 0;
}

static int get_int(json_t *o, const char *k, long long lo, long long hi, long long *out, struct srv_err *e)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return srv_err_set(e, 400, k, "'%s' must be an integer", k);
	long long x = json_integer_value(v);
	if (x < lo || x > hi)
		return srv_err_set(e, 400, k, "'%s' is %lld; it must be in [%lld, %lld]", k, x, lo, hi);
	*out = x;
	return 0;
}

static int get_bool(json_t *o, const char *k, bool *out, struct srv_err *e)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return srv_err_set(e, 400, k, "'%s' must be true or false", k);
	*out = json_is_true(v);
	return 0;
}

/* ---- what every generation request shares --------------------------------------------- */

static const char *const common_keys[] = {
	"model", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "presence_penalty",
	"frequency_penalty", "stream", "stream_options", "user", "top_k", "min_p", "repetition_penalty",
	"min_tokens", "ignore_eos", "priority", "logprobs", "logit_bias", NULL,
};
static const char *const chat_keys[] = {
	"messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "functions",
	"function_call", "response_format", "parallel_tool_calls", NULL,
};
static const char *const completion_keys[] = { "prompt", "echo", "suffix", "best_of", NULL };

static bool in_list(const char *const *l, const char *k)
{
	for (; *l; l++)
		if (strcmp(*l, k) == 0)
			return true;
	return false;
}

static int parse_stop(struct srv_req *r, json_t *body, struct srv_err *e)
{
	json_t *v = json_object_get(body, "stop");
	if (!v || json_is_null(v))
		return 0;
	if (json_is_string(v)) {
		r->stop[0] = json_string_value(v);
		r->params.n_stop = 1;
	} else if (json_is_array(v)) {
		if (json_array_size(v) > PINFER_MAX_STOP)
			return srv_err_set(e, 400, "stop", "'stop' has %zu strings; at most %d are supported",
					   json_array_size(v), PINFER_MAX_STOP);
		size_t i;
		json_t *s;
		json_array_foreach(v, i, s) {
			if (!json_is_string(s))
				return srv_err_set(e, 400, "stop", "'stop' must be a string or an array of strings");
			r->stop[r->params.n_stop++] = json_string_value(s);
		}
	} else {
		return srv_err_set(e, 400, "stop", "'stop' must be a string or an array of strings");
	}
	for (size_t i = 0; i < r->params.n_stop; i++) {
		size_t l = strlen(r->stop[i]);
		if (l < 1 || l > PINFER_MAX_STOP_LEN)
			return srv_err_set(e, 400, "stop", "each stop string must be 1 to %d bytes, not %zu",
					   PINFER_MAX_STOP_LEN, l);
	}
	r->params.stop = r->params.n_stop ? r->stop : NULL;
	return 0;
}

/* `model` names one of names[]: r->route and r->model; else 404. */
static int resolve_model(struct srv_req *r, json_t *body, char (*names)[128], int n_names, struct srv_err *e)
{
	json_t *v = json_object_get(body, "model");
	if (!v || !json_is_string(v))
		return srv_err_set(e, 400, "model", "'model' is required and must be a string");
	r->route = -1;
	for (int i = 0; i < n_names && r->route < 0; i++)
		if (names[i][0] && strcmp(json_string_value(v), names[i]) == 0)
			r->route = i;
	if (r->route < 0) {
		char list[256] = "";
		size_t l = 0;
		for (int i = 0; i < n_names && l < sizeof(list); i++)
			l += (size_t)snprintf(list + l, sizeof(list) - l, "%s'%s'", i ? ", " : "", names[i]);
		srv_err_set(e, 404, "model", "the model '%s' does not exist; this server serves %s", json_string_value(v),
			    list);
		snprintf(e->code, sizeof(e->code), "model_not_found");
		return -1;
	}
	snprintf(r->model, sizeof(r->model), "%s", names[r->route]);
	return 0;
}

static int parse_common(struct srv_req *r, json_t *body, char (*names)[128], int n_names, int32_t def_max,
			struct srv_err *e)
{
	struct pinfer_params *p = &r->params;
	const char *key;
	json_t *v;

	json_object_foreach(body, key, v) {
		if (in_list(common_keys, key) ||
		    in_list(r->kind == SRV_CHAT ? chat_keys : completion_keys, key))
			continue;
		return srv_err_set(e, 400, key, "unrecognized request argument '%s'", key);
	}
	if (resolve_model(r, body, names, n_names, e) < 0)
		return -1;

	/* refused: what pinfer cannot honour yet */
	v = json_object_get(body, "logit_bias");
	if (v && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0))
		return srv_err_set(e, 400, "logit_bias", "'logit_bias' is not supported by pinfer");

	double d;
	long long x;
	bool b;
	p->max_tokens = r->kind == SRV_CHAT ? def_max : 16;
	x = p->max_tokens;
	if (get_int(body, "max_tokens", 1, INT32_MAX, &x, e) < 0)
		return -1;
	if (r->kind == SRV_CHAT && get_int(body, "max_completion_tokens", 1, INT32_MAX, &x, e) < 0)
		return -1;
	p->max_tokens = (int32_t)x;
	d = p->temperature;
	if (get_num(body, "temperature", 0, 2, false, &d, e) < 0)
		return -1;
	p->temperature = (float)d;
	d = p->top_p;
	if (get_num(body, "top_p", 0, 1, true, &d, e) < 0)
		return -1;
	p->top_p = (float)d;
	x = 1;
	if (get_int(body, "n", 1, 16, &x, e) < 0)
		return -1;
	r->n = p->n = (int32_t)x;
	if (json_object_get(body, "seed") && !json_is_null(json_object_get(body, "seed"))) {
		x = 0;
		if (get_int(body, "seed", INT64_MIN, INT64_MAX, &x, e) < 0)
			return -1;
		p->has_seed = true;
		p->seed = (uint64_t)x;
	}
	d = 0;
	if (get_num(body, "presence_penalty", -2, 2, false, &d, e) < 0)
		return -1;
	p->presence_penalty = (float)d;
	d = 0;
	if (get_num(body, "frequency_penalty", -2, 2, false, &d, e) < 0)
		return -1;
	p->frequency_penalty = (float)d;
	x = 0;
	if (get_int(body, "top_k", -1, 1 << 20, &x, e) < 0)
		return -1;
	p->top_k = (int32_t)x;
	d = 0;
	if (get_num(body, "min_p", 0, 1, false, &d, e) < 0)
		return -1;
	p->min_p = (float)d;
	d = 1;
	if (get_num(body, "repetition_penalty", 0, 10, true, &d, e) < 0)
		return -1;
	p->repetition_penalty = (float)d;
	x = 0;
	if (get_int(body, "min_tokens", 0, p->max_tokens, &x, e) < 0)
		return -1;
	p->min_tokens = (int32_t)x;
	b = false;
	if (get_bool(body, "ignore_eos", &b, e) < 0)
		return -1;
	p->ignore_eos = b;
	x = 0;
	if (get_int(body, "priority", INT32_MIN, INT32_MAX, &x, e) < 0)
		return -1;
	p->priority = (int32_t)x;
	if (parse_stop(r, body, e) < 0)
		return -1;

	b = false;
	if (get_bool(body, "stream", &b, e) < 0)
		return -1;
	r->stream = b;
	v = json_object_get(body, "stream_options");
	if (v && !json_is_null(v)) {
		if (!r->stream)
			return srv_err_set(e, 400, "stream_options", "'stream_options' is only allowed with 'stream': true");
		if (!json_is_object(v))
			return srv_err_set(e, 400, "stream_options", "'stream_options' must be an object");
		const char *k2;
		json_t *v2;
		json_object_foreach(v, k2, v2) {
			if (strcmp(k2, "include_usage") != 0)
				return srv_err_set(e, 400, "stream_options", "unrecognized 'stream_options.%s'", k2);
		}
		b = false;
		if (get_bool(v, "include_usage", &b, e) < 0)
			return -1;
		r->include_usage = b;
	}
	v = json_object_get(body, "user");
	if (v && !json_is_null(v) && !json_is_string(v))
		return srv_err_set(e, 400, "user", "'user' must be a string");
	return 0;
}

/* ---- chat ---------------------------------------------------------------------------------- */

static int parse_messages(struct srv_req *r, json_t *body, struct srv_err *e);

static int parse_chat(struct srv_req *r, json_t *body, struct srv_err *e)
{
	json_t *v;
	static const char *const refused[] = { "tools", "functions", "function_call" };
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		v = json_object_get(body, refused[i]);
		if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0))
			return srv_err_set(e, 400, refused[i], "'%s' (tool and function calling) is not supported by pinfer",
					   refused[i]);
	}
	v = json_object_get(body, "tool_choice");
	if (v && !json_is_null(v) && !(json_is_string(v) && strcmp(json_string_value(v), "none") == 0))
		return srv_err_set(e, 400, "tool_choice", "'tool_choice' is not supported by pinfer (only \"none\")");
	v = json_object_get(body, "response_format");
	if (v && !json_is_null(v)) {
		json_t *t = json_is_object(v) ? json_object_get(v, "type") : NULL;
		if (!t || !json_is_string(t) || strcmp(json_string_value(t), "text") != 0)
			return srv_err_set(e, 400, "response_format",
					   "'response_format' other than {\"type\": \"text\"} is not supported by pinfer");
	}

	bool lp = false;
	if (get_bool(body, "logprobs", &lp, e) < 0)
		return -1;
	long long top = 0;
	if (get_int(body, "top_logprobs", 0, PINFER_MAX_TOP_LOGPROBS, &top, e) < 0)
		return -1;
	if (json_object_get(body, "top_logprobs") && !json_is_null(json_object_get(body, "top_logprobs")) && !lp)
		return srv_err_set(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
	r->logprobs = lp ? (int)top : -1;
	return parse_messages(r, body, e);
}

/* `messages`: system/user/assistant, content a string or text parts. */
static int parse_messages(struct srv_req *r, json_t *body, struct srv_err *e)
{
	json_t *msgs = json_object_get(body, "messages");
	if (!msgs || !json_is_array(msgs) || json_array_size(msgs) == 0)
		return srv_err_set(e, 400, "messages", "'messages' is required: a non-empty array");
	size_t n = json_array_size(msgs);
	r->msgs = calloc(n, sizeof(*r->msgs));
	r->msg_text = calloc(n, sizeof(*r->msg_text));
	if (!r->msgs || !r->msg_text)
		return srv_err_set(e, 500, NULL, "out of memory");
	r->n_msgs = n;
	char pname[96];
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(msgs, i);
		if (!json_is_object(m))
			return srv_err_set(e, 400, "messages", "'messages[%zu]' must be an object", i);
		json_t *role = json_object_get(m, "role");
		snprintf(pname, sizeof(pname), "messages[%zu].role", i);
		if (!role || !json_is_string(role))
			return srv_err_set(e, 400, pname, "'%s' is required: system, user or assistant", pname);
		const char *rs = json_string_value(role);
		if (strcmp(rs, "developer") == 0)
			rs = "system"; /* OpenAI's newer name for the system role */
		if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
			return srv_err_set(e, 400, pname, "'%s' is '%s'; pinfer supports system, user and assistant", pname,
					   rs);
		const char *key;
		json_t *f;
		json_object_foreach(m, key, f) {
			if (strcmp(key, "role") && strcmp(key, "content") && strcmp(key, "name")) {
				snprintf(pname, sizeof(pname), "messages[%zu].%s", i, key);
				return srv_err_set(e, 400, pname, "'%s' is not supported by pinfer", pname);
			}
		}
		json_t *c = json_object_get(m, "content");
		snprintf(pname, sizeof(pname), "messages[%zu].content", i);
		struct sbuf t = { 0 };
		if (c && json_is_string(c)) {
			if (sbuf_add(&t, json_string_value(c), json_string_length(c)) < 0)
				return srv_err_set(e, 500, NULL, "out of memory");
		} else if (c && json_is_array(c)) {
			size_t j;
			json_t *part;
			json_array_foreach(c, j, part) {
				json_t *ty = json_is_object(part) ? json_object_get(part, "type") : NULL;
				json_t *tx = json_is_object(part) ? json_object_get(part, "text") : NULL;
				snprintf(pname, sizeof(pname), "messages[%zu].content[%zu].type", i, j);
				if (!ty || !json_is_string(ty) || strcmp(json_string_value(ty), "text") != 0) {
					sbuf_free(&t);
					return srv_err_set(e, 400, pname, "'%s' is %s; pinfer supports only \"text\" parts",
							   pname, ty && json_is_string(ty) ? json_string_value(ty) : "missing");
				}
				if (!tx || !json_is_string(tx)) {
					sbuf_free(&t);
					snprintf(pname, sizeof(pname), "messages[%zu].content[%zu].text", i, j);
					return srv_err_set(e, 400, pname, "'%s' must be a string", pname);
				}
				/* parts are joined with a newline, as vLLM does */
				if ((j && sbuf_add(&t, "\n", 1) < 0) ||
				    sbuf_add(&t, json_string_value(tx), json_string_length(tx)) < 0) {
					sbuf_free(&t);
					return srv_err_set(e, 500, NULL, "out of memory");
				}
			}
		} else {
			return srv_err_set(e, 400, pname, "'%s' must be a string or an array of text parts", pname);
		}
		if (sbuf_add(&t, "", 0) < 0)
			return srv_err_set(e, 500, NULL, "out of memory");
		if (strlen(t.p) != t.len) {
			sbuf_free(&t);
			return srv_err_set(e, 400, pname, "'%s' contains a NUL character", pname);
		}
		r->msg_text[i] = t.p;
		r->msgs[i].role = rs;
		r->msgs[i].content = t.p;
	}
	r->n_prompts = 1;
	return 0;
}

/* ---- completions ---------------------------------------------------------------------------- */

static int token_array(struct srv_prompt *p, json_t *a, const char *pname, struct srv_err *e)
{
	size_t n = json_array_size(a), i;
	json_t *t;
	const char *param = strcmp(pname, "tokens") == 0 ? "tokens" : "prompt";
	if (n == 0)
		return srv_err_set(e, 400, param, "'%s' is an empty token list", pname);
	p->ids = calloc(n, sizeof(*p->ids));
	if (!p->ids)
		return srv_err_set(e, 500, NULL, "out of memory");
	json_array_foreach(a, i, t) {
		if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX)
			return srv_err_set(e, 400, param, "'%s[%zu]' must be a token id (an integer >= 0)", pname, i);
		p->ids[i] = (int32_t)json_integer_value(t);
	}
	p->n_ids = n;
	return 0;
}

static int parse_completion(struct srv_req *r, json_t *body, struct srv_err *e)
{
	json_t *v = json_object_get(body, "suffix");
	if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
		return srv_err_set(e, 400, "suffix", "'suffix' (insertion) is not supported by pinfer");
	long long best = r->n;
	if (get_int(body, "best_of", 1, 16, &best, e) < 0)
		return -1;
	if (best != r->n)
		return srv_err_set(e, 400, "best_of", "'best_of' other than n (%d) is not supported by pinfer", r->n);
	bool echo = false;
	if (get_bool(body, "echo", &echo, e) < 0)
		return -1;
	r->echo = echo;
	long long lp = -1;
	if (get_int(body, "logprobs", 0, PINFER_MAX_TOP_LOGPROBS, &lp, e) < 0)
		return -1;
	r->logprobs = (int)lp;
	if (echo && lp >= 0)
		return srv_err_set(e, 400, "logprobs",
				   "'echo' with 'logprobs' needs prompt log-probabilities, which pinfer does not compute");

	json_t *pr = json_object_get(body, "prompt");
	if (!pr || json_is_null(pr))
		return srv_err_set(e, 400, "prompt", "'prompt' is required");
	char pname[32];
	if (json_is_string(pr)) {
		r->prompt[0].text = json_string_value(pr);
		r->n_prompts = 1;
	} else if (json_is_array(pr) && json_array_size(pr) > 0) {
		json_t *first = json_array_get(pr, 0);
		if (json_is_integer(first)) {
			r->n_prompts = 1;
			if (token_array(&r->prompt[0], pr, "prompt", e) < 0)
				return -1;
		} else {
			if (json_array_size(pr) > SRV_MAX_PROMPTS)
				return srv_err_set(e, 400, "prompt", "'prompt' has %zu prompts; at most %d per request",
						   json_array_size(pr), SRV_MAX_PROMPTS);
			size_t i;
			json_t *p;
			json_array_foreach(pr, i, p) {
				snprintf(pname, sizeof(pname), "prompt[%zu]", i);
				if (json_is_string(p))
					r->prompt[i].text = json_string_value(p);
				else if (json_is_array(p)) {
					if (token_array(&r->prompt[i], p, pname, e) < 0)
						return -1;
				} else
					return srv_err_set(e, 400, "prompt",
							   "'%s' must be a string or an array of token ids", pname);
			}
			r->n_prompts = (int)json_array_size(pr);
		}
	} else {
		return srv_err_set(e, 400, "prompt",
				   "'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays");
	}
	for (int i = 0; i < r->n_prompts; i++) {
		if (r->prompt[i].text && strlen(r->prompt[i].text) == 0)
			return srv_err_set(e, 400, "prompt", "the prompt is empty");
		if (echo && !r->prompt[i].text)
			return srv_err_set(e, 400, "echo", "'echo' with a token-id prompt is not supported by pinfer");
	}
	if (r->n_prompts * r->n > SRV_MAX_CHOICES)
		return srv_err_set(e, 400, "n", "%d prompts × n %d is more than %d choices per request", r->n_prompts, r->n,
				   SRV_MAX_CHOICES);
	return 0;
}

int oai_parse(struct srv_req *r, const char *body, size_t len, char (*names)[128], int n_names, int32_t def_max,
	      struct srv_err *e)
{
	json_error_t je;
	r->body = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!r->body)
		return srv_err_set(e, 400, NULL, "the body is not valid JSON: %s (at byte %d)", je.text, je.position);
	if (!json_is_object(r->body))
		return srv_err_set(e, 400, NULL, "the body must be a JSON object");
	if (parse_common(r, r->body, names, n_names, def_max, e) < 0)
		return -1;
	if (r->kind == SRV_CHAT ? parse_chat(r, r->body, e) : parse_completion(r, r->body, e))
		return -1;
	if (r->logprobs >= 0) {
		r->params.logprobs = true;
		r->params.top_logprobs = r->logprobs;
	}
	return 0;
}

/* ---- /tokenize and /detokenize (vLLM's shapes) ------------------------------------------------ */

int oai_parse_tok(struct srv_req *r, const char *body, size_t len, char (*names)[128], int n_names, struct srv_err *e)
{
	static const char *const tok_keys[] = { "model", "prompt", "messages", "add_special_tokens",
						"add_generation_prompt", NULL };
	static const char *const detok_keys[] = { "model", "tokens", NULL };
	json_error_t je;
	const char *key;
	json_t *v;

	r->body = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!r->body)
		return srv_err_set(e, 400, NULL, "the body is not valid JSON: %s (at byte %d)", je.text, je.position);
	if (!json_is_object(r->body))
		return srv_err_set(e, 400, NULL, "the body must be a JSON object");
	json_object_foreach(r->body, key, v) {
		if (!in_list(r->kind == SRV_TOKENIZE ? tok_keys : detok_keys, key))
			return srv_err_set(e, 400, key, "unrecognized request argument '%s'", key);
	}
	if (resolve_model(r, r->body, names, n_names, e) < 0)
		return -1;
	r->n_prompts = 1;
	if (r->kind == SRV_DETOKENIZE) {
		v = json_object_get(r->body, "tokens");
		if (!v || !json_is_array(v))
			return srv_err_set(e, 400, "tokens", "'tokens' is required: an array of token ids");
		return token_array(&r->prompt[0], v, "tokens", e);
	}
	bool b = true;
	if (get_bool(r->body, "add_special_tokens", &b, e) < 0)
		return -1;
	r->params.add_special = b;
	b = true;
	if (get_bool(r->body, "add_generation_prompt", &b, e) < 0)
		return -1;
	if (!b)
		return srv_err_set(e, 400, "add_generation_prompt",
				   "'add_generation_prompt': false is not supported by pinfer (the template always adds it)");
	json_t *pr = json_object_get(r->body, "prompt"), *m = json_object_get(r->body, "messages");
	if ((pr != NULL) == (m != NULL))
		return srv_err_set(e, 400, "prompt", "give either 'prompt' (a string) or 'messages'");
	if (m)
		return parse_messages(r, r->body, e);
	if (!json_is_string(pr))
		return srv_err_set(e, 400, "prompt", "'prompt' must be a string");
	r->prompt[0].text = json_string_value(pr);
	return 0;
}
