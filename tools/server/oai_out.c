/*
 * oai_out.c — OpenAI response bodies and stream chunks, built with jansson.
 *
 * Finish reasons: pinfer's stop and length are OpenAI's; pinfer's own
 * (cancelled, deadline, stalled) are reported as "length" — the generation
 * was cut short by a limit, not ended by the model — with pinfer's reason
 * in `stop_reason` (the extra field vLLM uses), null otherwise.
 *
 * Log-probabilities: libpinfer reports the chosen token's id, log-probability
 * and the text it completes, and the alternatives' ids and log-probabilities
 * but not their text.  So the chosen token's `token` is that text (`bytes`
 * its UTF-8 bytes) and each alternative's `token` is "token_id:N" (vLLM's
 * spelling with --return-tokens-as-token-ids), `bytes` null.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tools/server/server.h"

const char *oai_finish_reason(enum pinfer_finish_reason r)
{
	return r == PINFER_FINISH_STOP ? "stop" : "length";
}

static json_t *stop_reason(enum pinfer_finish_reason r)
{
	return r == PINFER_FINISH_STOP || r == PINFER_FINISH_LENGTH ? json_null()
								      : json_string(pinfer_finish_reason_str(r));
}

json_t *oai_error_json(const struct srv_err *e)
{
	return json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", e->msg, "type", e->type ? e->type : "error",
			 "param", e->param[0] ? json_string(e->param) : json_null(), "code",
			 e->code[0] ? json_string(e->code) : json_null());
}

void oai_usage(const struct srv_req *r, int32_t *prompt, int32_t *completion, int32_t *cached)
{
	*prompt = *completion = *cached = 0;
	for (int i = 0; i < r->n_prompts; i++) {
		*prompt += r->prompt[i].prompt_tokens;
		*cached += r->prompt[i].cached_tokens;
	}
	for (int i = 0; i < r->n_prompts * r->n; i++)
		*completion += r->choice[i].tokens;
}

static json_t *usage_json(const struct srv_req *r)
{
	int32_t p, c, k;
	oai_usage(r, &p, &c, &k);
	return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", p, "completion_tokens", c, "total_tokens", p + c,
			 "prompt_tokens_details", "cached_tokens", k);
}

/* ---- logprobs ------------------------------------------------------------------------------ */

static json_t *bytes_of(const char *s, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_integer((unsigned char)s[i]));
	return a;
}

static json_t *num(float x)
{
	/* JSON has no -inf: a token the sampler could never pick gets OpenAI's floor */
	return json_real(isfinite(x) ? x : -9999.0);
}

json_t *oai_lp_entry(const struct srv_req *r, int32_t token, float logprob, const char *text, size_t len,
		     const int32_t *top_tok, const float *top_lp, uint32_t n_top)
{
	(void)token;
	json_t *top = json_array();
	char name[32];
	for (uint32_t i = 0; i < n_top && (int)i < r->logprobs; i++) {
		snprintf(name, sizeof(name), "token_id:%d", top_tok[i]);
		json_array_append_new(top, json_pack("{s:s, s:o, s:n}", "token", name, "logprob", num(top_lp[i]), "bytes"));
	}
	return json_pack("{s:s%, s:o, s:o, s:o}", "token", text, len, "logprob", num(logprob), "bytes",
			 bytes_of(text, len), "top_logprobs", top);
}

/* completions' shape: four parallel arrays */
static json_t *completion_lp_new(void)
{
	return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

static void completion_lp_add(json_t *lp, json_t *entry, size_t offset)
{
	json_array_append(json_object_get(lp, "tokens"), json_object_get(entry, "token"));
	json_array_append(json_object_get(lp, "token_logprobs"), json_object_get(entry, "logprob"));
	json_t *d = json_object();
	size_t i;
	json_t *alt;
	json_array_foreach(json_object_get(entry, "top_logprobs"), i, alt)
		json_object_set(d, json_string_value(json_object_get(alt, "token")), json_object_get(alt, "logprob"));
	json_array_append_new(json_object_get(lp, "top_logprobs"), d);
	json_array_append_new(json_object_get(lp, "text_offset"), json_integer((json_int_t)offset));
}

void oai_lp_append(struct srv_req *r, struct srv_choice *c, json_t *entry, size_t text_len)
{
	if (!c->lp)
		c->lp = r->kind == SRV_CHAT ? json_array() : completion_lp_new();
	if (r->kind == SRV_CHAT)
		json_array_append(c->lp, entry);
	else
		completion_lp_add(c->lp, entry, c->text_off);
	c->text_off += text_len;
}

static json_t *lp_field(const struct srv_req *r, const struct srv_choice *c)
{
	if (r->logprobs < 0)
		return json_null();
	if (r->kind == SRV_CHAT)
		return json_pack("{s:O}", "content", c->lp ? c->lp : json_array());
	return c->lp ? json_incref(c->lp) : completion_lp_new();
}

/* ---- whole answers ---------------------------------------------------------------------------- */

json_t *oai_final_json(const struct srv_req *r)
{
	json_t *choices = json_array();
	for (int i = 0; i < r->n_prompts * r->n; i++) {
		const struct srv_choice *c = &r->choice[i];
		json_t *ch;
		if (r->kind == SRV_CHAT)
			ch = json_pack("{s:i, s:{s:s, s:s%}, s:o, s:s, s:o}", "index", i, "message", "role", "assistant",
				       "content", c->text.p ? c->text.p : "", c->text.len, "logprobs", lp_field(r, c),
				       "finish_reason", oai_finish_reason(c->reason), "stop_reason", stop_reason(c->reason));
		else
			ch = json_pack("{s:i, s:s%, s:o, s:s, s:o}", "index", i, "text", c->text.p ? c->text.p : "",
				       c->text.len, "logprobs", lp_field(r, c), "finish_reason",
				       oai_finish_reason(c->reason), "stop_reason", stop_reason(c->reason));
		json_array_append_new(choices, ch);
	}
	return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o, s:n}", "id", r->id, "object",
			 r->kind == SRV_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)r->created,
			 "model", r->model, "choices", choices, "usage", usage_json(r), "system_fingerprint");
}

json_t *oai_tok_json(const struct srv_req *r, int32_t max_model_len)
{
	if (r->kind == SRV_DETOKENIZE)
		return json_pack("{s:s%}", "prompt", r->choice[0].text.p ? r->choice[0].text.p : "", r->choice[0].text.len);
	json_t *ids = r->ids ? json_incref(r->ids) : json_array();
	return json_pack("{s:I, s:i, s:o, s:n}", "count", (json_int_t)json_array_size(ids), "max_model_len",
			 max_model_len, "tokens", ids, "token_strs");
}

/* ---- stream chunks ----------------------------------------------------------------------------- */

static void emit(struct srv_req *r, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return;
	sbuf_add(&r->out, "data: ", 6);
	sbuf_add(&r->out, s, strlen(s));
	sbuf_add(&r->out, "\n\n", 2);
	free(s);
}

static json_t *chunk(struct srv_req *r, json_t *choices)
{
	json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", r->id, "object",
			      r->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion", "created",
			      (json_int_t)r->created, "model", r->model, "choices", choices);
	if (r->include_usage)
		json_object_set_new(j, "usage", json_null());
	return j;
}

void oai_chunk_start(struct srv_req *r)
{
	for (int i = 0; i < r->n_prompts * r->n; i++) {
		json_t *ch;
		if (r->kind == SRV_CHAT)
			ch = json_pack("{s:i, s:{s:s, s:s}, s:n, s:n}", "index", i, "delta", "role", "assistant", "content",
				       "", "logprobs", "finish_reason");
		else if (r->echo)
			ch = json_pack("{s:i, s:s, s:n, s:n}", "index", i, "text", r->prompt[i / r->n].text, "logprobs",
				       "finish_reason");
		else
			continue;
		emit(r, chunk(r, json_pack("[o]", ch)));
	}
}

void oai_chunk_text(struct srv_req *r, int ci, const char *text, size_t len, json_t *lp)
{
	json_t *lpf = json_null();
	struct srv_choice *c = &r->choice[ci];
	if (lp && r->kind == SRV_CHAT) {
		lpf = json_pack("{s:[O]}", "content", lp);
	} else if (lp) {
		lpf = completion_lp_new();
		completion_lp_add(lpf, lp, c->text_off);
	}
	c->text_off += len;
	json_t *ch;
	if (r->kind == SRV_CHAT)
		ch = json_pack("{s:i, s:{s:s%}, s:o, s:n}", "index", ci, "delta", "content", text, len, "logprobs", lpf,
			       "finish_reason");
	else
		ch = json_pack("{s:i, s:s%, s:o, s:n}", "index", ci, "text", text, len, "logprobs", lpf, "finish_reason");
	emit(r, chunk(r, json_pack("[o]", ch)));
}

void oai_chunk_finish(struct srv_req *r, int ci)
{
	const struct srv_choice *c = &r->choice[ci];
	json_t *ch;
	if (r->kind == SRV_CHAT)
		ch = json_pack("{s:i, s:{}, s:n, s:s, s:o}", "index", ci, "delta", "logprobs", "finish_reason",
			       oai_finish_reason(c->reason), "stop_reason", stop_reason(c->reason));
	else
		ch = json_pack("{s:i, s:s, s:n, s:s, s:o}", "index", ci, "text", "", "logprobs", "finish_reason",
			       oai_finish_reason(c->reason), "stop_reason", stop_reason(c->reason));
	emit(r, chunk(r, json_pack("[o]", ch)));
}

void oai_chunk_end(struct srv_req *r)
{
	if (r->include_usage) {
		json_t *j = chunk(r, json_array());
		json_object_set_new(j, "usage", usage_json(r));
		emit(r, j);
	}
	sbuf_add(&r->out, "data: [DONE]\n\n", 14);
}

void oai_chunk_error(struct srv_req *r, const struct srv_err *e)
{
	emit(r, oai_error_json(e));
	sbuf_add(&r->out, "data: [DONE]\n\n", 14);
}
