/* chat.c — chat template families.  See chat.h for what each renders. */
#include "runtime/text/chat.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model/gguf.h"

#define SMOLLM2_SYSTEM "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
#define QWEN2_SYSTEM "You are a helpful assistant."

struct pf_chat {
	enum pf_chat_family family;
	char name[16];
	char *bos, *eos;
	size_t bos_len, eos_len;
	char *sys;                /* default system message, NULL if none */
	size_t sys_len;
};

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		if (n)
			memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

static int make(enum pf_chat_family fam, const char *name, const char *bos, size_t bos_len,
		const char *eos, size_t eos_len, const char *sys, size_t sys_len, struct pf_chat **ret)
{
	struct pf_chat *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->family = fam;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->bos = dup_n(bos ? bos : "", bos ? bos_len : 0);
	c->eos = dup_n(eos ? eos : "", eos ? eos_len : 0);
	c->bos_len = bos ? bos_len : 0;
	c->eos_len = eos ? eos_len : 0;
	if (sys) {
		c->sys = dup_n(sys, sys_len);
		c->sys_len = sys_len;
	}
	if (!c->bos || !c->eos || (sys && !c->sys)) {
		pf_chat_free(c);
		return -ENOMEM;
	}
	*ret = c;
	return 0;
}

void pf_chat_free(struct pf_chat *c)
{
	if (!c)
		return;
	free(c->bos);
	free(c->eos);
	free(c->sys);
	free(c);
}

enum pf_chat_family pf_chat_family(const struct pf_chat *c) { return c->family; }
const char *pf_chat_name(const struct pf_chat *c) { return c->name; }

const char *pf_chat_default_system(const struct pf_chat *c, size_t *ret_len)
{
	*ret_len = c->sys ? c->sys_len : 0;
	return c->sys;
}

int pf_chat_from_name(const char *name, const char *bos, const char *eos,
		      struct pf_chat **ret, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		enum pf_chat_family fam;
		const char *sys;
	} names[] = {
		{ "chatml", PF_CHAT_CHATML, NULL },
		{ "smollm2", PF_CHAT_CHATML, SMOLLM2_SYSTEM },
		{ "qwen2", PF_CHAT_CHATML, QWEN2_SYSTEM },
		{ "llama3", PF_CHAT_LLAMA3, NULL },
		{ "llama2", PF_CHAT_LLAMA2, NULL },
		{ "mistral", PF_CHAT_MISTRAL, NULL },
	};

	*ret = NULL;
	for (size_t i = 0; name && i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i].name) == 0)
			return make(names[i].fam, names[i].name, bos, bos ? strlen(bos) : 0, eos,
				    eos ? strlen(eos) : 0, names[i].sys, names[i].sys ? strlen(names[i].sys) : 0, ret);
	}
	set_err(err, errlen, "unknown chat template \"%s\" (choose chatml, smollm2, qwen2, llama3, llama2 or mistral)",
		name ? name : "(null)");
	return -ENOTSUP;
}

/* ---- detection ------------------------------------------------------------ */

static const char *find(const char *h, size_t hl, const char *n)
{
	return memmem(h, hl, n, strlen(n));
}

/*
 * Decode the Jinja string literal whose opening quote is at q (Python-style
 * escapes: \n \t \r \\ \' \"; others are kept as written) into a new
 * buffer *ret.  0, -EINVAL if the literal does not end inside the template,
 * -ENOMEM.
 */
static int jinja_literal(const char *q, const char *end, char **ret, size_t *ret_len)
{
	char quote = *q, *out = malloc((size_t)(end - q) + 1);
	size_t n = 0;

	*ret = NULL;
	if (!out)
		return -ENOMEM;
	for (const char *p = q + 1; p < end; p++) {
		if (*p == quote) {
			out[n] = 0;
			*ret = out;
			*ret_len = n;
			return 0;
		}
		if (*p == '\\' && p + 1 < end) {
			char e = *++p;
			switch (e) {
			case 'n': out[n++] = '\n'; break;
			case 't': out[n++] = '\t'; break;
			case 'r': out[n++] = '\r'; break;
			case '\\': case '\'': case '"': out[n++] = e; break;
			default: out[n++] = '\\'; out[n++] = e; break;
			}
			continue;
		}
		out[n++] = *p;
	}
	free(out);
	return -EINVAL;
}

/*
 * A ChatML template's default system message: a string literal that starts
 * with "<|im_start|>system\n" and holds a complete message (SmolLM2,
 * Qwen2).  Literals that continue with an expression ('<|im_start|>system\n'
 * + messages[0]['content']) have no "<|im_end|>" and do not count.
 * Returns 0 with *ret = NULL when there is none, -ENOMEM.
 */
static int chatml_default_system(const char *t, size_t len, char **ret, size_t *ret_len)
{
	static const char head[] = "<|im_start|>system\n", tail[] = "<|im_end|>";
	const char *end = t + len, *p = t;

	*ret = NULL;
	while ((p = memmem(p, (size_t)(end - p), "<|im_start|>system", 18))) {
		size_t dl = 0;
		char *d = NULL, *e;

		if (p > t && (p[-1] == '\'' || p[-1] == '"')) {
			int r = jinja_literal(p - 1, end, &d, &dl);
			if (r == -ENOMEM)
				return r;
			if (d && dl > sizeof(head) - 1 && memcmp(d, head, sizeof(head) - 1) == 0 &&
			    (e = memmem(d + sizeof(head) - 1, dl - (sizeof(head) - 1), tail, sizeof(tail) - 1))) {
				size_t sl = (size_t)(e - d) - (sizeof(head) - 1);
				memmove(d, d + sizeof(head) - 1, sl);
				d[sl] = 0;
				*ret = d;
				*ret_len = sl;
				return 0;
			}
			free(d);
		}
		p += 18;
	}
	return 0;
}

int pf_chat_detect(const char *tmpl, size_t len, const char *bos, const char *eos,
		   struct pf_chat **ret, char *err, size_t errlen)
{
	size_t bl = bos ? strlen(bos) : 0, el = eos ? strlen(eos) : 0;
	int r;

	*ret = NULL;
	if (!tmpl)
		len = 0;
	if (len && find(tmpl, len, "<|im_start|>") && find(tmpl, len, "<|im_end|>")) {
		char *sys = NULL;
		size_t sl = 0;
		const char *name = "chatml";

		/* reasoning templates (Qwen3 and kin) rewrite earlier assistant
		 * turns and the generation prompt around <think> blocks */
		if (find(tmpl, len, "<think>")) {
			set_err(err, errlen, "ChatML template with <think> reasoning blocks is not supported; "
				"choose \"chatml\" explicitly to use plain ChatML");
			return -ENOTSUP;
		}
		r = chatml_default_system(tmpl, len, &sys, &sl);
		if (r)
			return r;
		if (sys && strcmp(sys, SMOLLM2_SYSTEM) == 0)
			name = "smollm2";
		else if (sys && strcmp(sys, QWEN2_SYSTEM) == 0)
			name = "qwen2";
		r = make(PF_CHAT_CHATML, name, bos, bl, eos, el, sys, sl, ret);
		free(sys);
		return r;
	}
	if (len && find(tmpl, len, "<|start_header_id|>") && find(tmpl, len, "<|end_header_id|>")) {
		/* 3.1 and later add a knowledge-cutoff / tools preamble to
		 * the system message we do not reproduce */
		if (find(tmpl, len, "Cutting Knowledge Date") || find(tmpl, len, "Environment: ipython")) {
			set_err(err, errlen, "Llama 3.1+ chat template (date/tool preamble) is not supported; "
				"choose \"llama3\" explicitly to use the plain Llama 3 format");
			return -ENOTSUP;
		}
		return make(PF_CHAT_LLAMA3, "llama3", bos, bl, eos, el, NULL, 0, ret);
	}
	if (len && find(tmpl, len, "[INST]")) {
		if (find(tmpl, len, "<<SYS>>"))
			return make(PF_CHAT_LLAMA2, "llama2", bos, bl, eos, el, NULL, 0, ret);
		if (find(tmpl, len, "[AVAILABLE_TOOLS]") || find(tmpl, len, "[SYSTEM_PROMPT]") ||
		    find(tmpl, len, "[TOOL_CALLS]")) {
			set_err(err, errlen, "Mistral chat template with tools/system prompt is not supported; "
				"choose \"mistral\" explicitly to use the v0.1 [INST] format");
			return -ENOTSUP;
		}
		return make(PF_CHAT_MISTRAL, "mistral", bos, bl, eos, el, NULL, 0, ret);
	}
	set_err(err, errlen, "unrecognised chat template (not ChatML, Llama 3, Llama 2 or Mistral [INST]); "
		"choose one explicitly: chatml, smollm2, qwen2, llama3, llama2, mistral");
	return -ENOTSUP;
}

static int token_text(const struct pf_gguf *g, const char *key, char **ret)
{
	const struct pf_gguf_kv *kv = pf_gguf_find(g, "tokenizer.ggml.tokens");
	struct pf_gguf_str s;
	uint32_t id;

	*ret = NULL;
	if (!kv || pf_gguf_get_u32(g, key, &id) || pf_gguf_arr_str(g, kv, id, &s))
		return 0;       /* no such token: render it as "" */
	*ret = dup_n(s.ptr, s.len);
	return *ret ? 0 : -ENOMEM;
}

int pf_chat_from_gguf(const struct pf_gguf *g, struct pf_chat **ret, char *err, size_t errlen)
{
	struct pf_gguf_str t;
	char *bos = NULL, *eos = NULL;
	int r;

	*ret = NULL;
	r = pf_gguf_get_str(g, "tokenizer.chat_template", &t);
	if (r) {
		set_err(err, errlen, "the model has no tokenizer.chat_template; choose a template explicitly "
			"(chatml, smollm2, qwen2, llama3, llama2, mistral)");
		return r == -ENOENT ? -ENOENT : -EINVAL;
	}
	r = token_text(g, "tokenizer.ggml.bos_token_id", &bos);
	if (!r)
		r = token_text(g, "tokenizer.ggml.eos_token_id", &eos);
	if (!r)
		r = pf_chat_detect(t.ptr, t.len, bos, eos, ret, err, errlen);
	free(bos);
	free(eos);
	return r;
}

/* ---- rendering ------------------------------------------------------------ */

struct out {
	char *buf;
	size_t cap, n;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (n && o->n + n <= o->cap)
		memcpy(o->buf + o->n, s, n);
	o->n += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static bool is(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* Python's str.isspace() for one code point */
static bool py_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The code point of the well-formed character at s[0..n) and its length,
 * or 0 for anything else. */
static size_t decode_at(const uint8_t *s, size_t n, uint32_t *c)
{
	if (!n)
		return 0;
	if (s[0] < 0x80) {
		*c = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0 && n >= 2 && (s[1] & 0xc0) == 0x80) {
		*c = ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f);
		return *c >= 0x80 ? 2 : 0;
	}
	if ((s[0] & 0xf0) == 0xe0 && n >= 3 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80) {
		*c = ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
		return *c >= 0x800 ? 3 : 0;
	}
	return 0;   /* the spaces we strip are all below U+10000 */
}

/* Python's str.lstrip() / str.rstrip() with no argument. */
static void lstrip(const char **s, size_t *n)
{
	const uint8_t *p = (const uint8_t *)*s;
	size_t l;
	uint32_t c;

	while ((l = decode_at(p, *n, &c)) && py_space(c)) {
		p += l;
		*n -= l;
	}
	*s = (const char *)p;
}

static void rstrip(const char *s, size_t *n)
{
	const uint8_t *p = (const uint8_t *)s;
	uint32_t c;

	for (;;) {
		/* the spaces we strip are 1 to 3 bytes long */
		size_t k, got = 0;
		for (k = 1; k <= 3 && k <= *n; k++) {
			if (decode_at(p + *n - k, k, &c) == k) {
				got = k;
				break;
			}
		}
		if (!got || !py_space(c))
			return;
		*n -= got;
	}
}

/* Jinja's |trim and Python's str.strip() */
static void strip(const char **s, size_t *n)
{
	lstrip(s, n);
	rstrip(*s, n);
}

static void render_chatml(const struct pf_chat *c, const struct pf_chat_msg *m, size_t n, bool agp,
			  struct out *o)
{
	for (size_t i = 0; i < n; i++) {
		if (i == 0 && c->sys && !is(m[0].role, m[0].role_len, "system")) {
			puts_(o, "<|im_start|>system\n");
			put(o, c->sys, c->sys_len);
			puts_(o, "<|im_end|>\n");
		}
		puts_(o, "<|im_start|>");
		put(o, m[i].role, m[i].role_len);
		puts_(o, "\n");
		put(o, m[i].content, m[i].content_len);
		puts_(o, "<|im_end|>\n");
	}
	if (agp)
		puts_(o, "<|im_start|>assistant\n");
}

static void render_llama3(const struct pf_chat *c, const struct pf_chat_msg *m, size_t n, bool agp,
			  struct out *o)
{
	for (size_t i = 0; i < n; i++) {
		const char *s = m[i].content;
		size_t sl = m[i].content_len;

		if (i == 0)
			put(o, c->bos, c->bos_len);
		puts_(o, "<|start_header_id|>");
		put(o, m[i].role, m[i].role_len);
		puts_(o, "<|end_header_id|>\n\n");
		strip(&s, &sl);
		put(o, s, sl);
		puts_(o, "<|eot_id|>");
	}
	if (agp)
		puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static const char alternate_msg[] = "Conversation roles must alternate user/assistant/user/assistant/...";

static int render_llama2(const struct pf_chat *c, const struct pf_chat_msg *m, size_t n,
			 struct out *o, char *err, size_t errlen)
{
	const struct pf_chat_msg *sys = NULL;

	if (!n) {
		/* messages[0] on an empty list is an UndefinedError in jinja2 */
		set_err(err, errlen, "list object has no element 0");
		return -EINVAL;
	}
	if (is(m[0].role, m[0].role_len, "system")) {
		sys = &m[0];
		m++;
		n--;
	}
	for (size_t i = 0; i < n; i++) {
		bool user = is(m[i].role, m[i].role_len, "user");
		const char *s = m[i].content;
		size_t sl = m[i].content_len;

		if (user != (i % 2 == 0)) {
			set_err(err, errlen, "%s", alternate_msg);
			return -EINVAL;
		}
		if (user) {
			put(o, c->bos, c->bos_len);
			puts_(o, "[INST] ");
			if (i == 0 && sys) {
				/* ('<<SYS>>\n' + system + '\n<</SYS>>\n\n' +
				 * content).strip(): the front is "<<SYS>>", so only
				 * trailing space goes, and an all-space content
				 * takes the "\n\n" with it */
				rstrip(s, &sl);
				puts_(o, "<<SYS>>\n");
				put(o, sys->content, sys->content_len);
				if (sl) {
					puts_(o, "\n<</SYS>>\n\n");
					put(o, s, sl);
				} else {
					/* the strip stops at "<</SYS>>" */
					puts_(o, "\n<</SYS>>");
				}
			} else {
				strip(&s, &sl);
				put(o, s, sl);
			}
			puts_(o, " [/INST]");
		} else if (is(m[i].role, m[i].role_len, "assistant")) {
			strip(&s, &sl);
			puts_(o, " ");
			put(o, s, sl);
			puts_(o, " ");
			put(o, c->eos, c->eos_len);
		}
	}
	return 0;
}

static int render_mistral(const struct pf_chat *c, const struct pf_chat_msg *m, size_t n,
			  struct out *o, char *err, size_t errlen)
{
	put(o, c->bos, c->bos_len);
	for (size_t i = 0; i < n; i++) {
		bool user = is(m[i].role, m[i].role_len, "user");

		if (user != (i % 2 == 0)) {
			set_err(err, errlen, "%s", alternate_msg);
			return -EINVAL;
		}
		if (user) {
			puts_(o, "[INST] ");
			put(o, m[i].content, m[i].content_len);
			puts_(o, " [/INST]");
		} else if (is(m[i].role, m[i].role_len, "assistant")) {
			put(o, m[i].content, m[i].content_len);
			put(o, c->eos, c->eos_len);
			puts_(o, " ");
		} else {
			set_err(err, errlen, "Only user and assistant roles are supported!");
			return -EINVAL;
		}
	}
	return 0;
}

int pf_chat_render(const struct pf_chat *c, const struct pf_chat_msg *msgs, size_t n,
		   bool add_generation_prompt, char *buf, size_t cap, size_t *ret_n,
		   char *err, size_t errlen)
{
	struct out o = { .buf = buf, .cap = buf ? cap : 0, .n = 0 };
	int r = 0;

	if (!c || !ret_n || (n && !msgs))
		return -EINVAL;
	*ret_n = 0;
	for (size_t i = 0; i < n; i++)
		if ((!msgs[i].role && msgs[i].role_len) || (!msgs[i].content && msgs[i].content_len))
			return -EINVAL;
	switch (c->family) {
	case PF_CHAT_CHATML:
		render_chatml(c, msgs, n, add_generation_prompt, &o);
		break;
	case PF_CHAT_LLAMA3:
		render_llama3(c, msgs, n, add_generation_prompt, &o);
		break;
	case PF_CHAT_LLAMA2:
		r = render_llama2(c, msgs, n, &o, err, errlen);
		break;
	case PF_CHAT_MISTRAL:
		r = render_mistral(c, msgs, n, &o, err, errlen);
		break;
	}
	if (r)
		return r;
	*ret_n = o.n;
	return o.n > o.cap ? -ENOSPC : 0;
}
