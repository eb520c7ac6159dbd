/*
 * test_chat.c — chat templates against jinja2's renderings.
 *
 *  - chat_smollm2.txt (PF_GOLDEN, written by tests/golden/gen_chat.py with
 *    jinja2 3.1.6 the way transformers' apply_chat_template renders): C
 *    records (rendered prompt) and E records (raise_exception message) for
 *    the smollm2, llama3 and mistral families;
 *  - the model's own tokenizer.chat_template (PF_MODEL) must be detected as
 *    SmolLM2's ChatML with its default system message and reproduce the
 *    smollm2 records;
 *  - detection of each family's template text, the unknown-template error,
 *    Llama-2 cases (expected strings rendered with jinja2 by hand), errors.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/text/chat.h"
#include "runtime/model/gguf.h"
#include "tests/unit/testutil.h"

#define MAX_SHOW 10
#define MAX_MSGS 32

struct ccase {
	bool is_error;
	char family[16];
	int agp;
	size_t n;
	uint8_t *role[MAX_MSGS], *content[MAX_MSGS];
	size_t role_len[MAX_MSGS], content_len[MAX_MSGS];
	uint8_t *want;
	size_t want_len;
};

struct family_tok {
	char name[16];
	char bos[64], eos[64];
};

struct fixture {
	struct pf_gguf *g;
	struct ccase *c;
	size_t nc;
	struct family_tok fam[8];
	size_t nfam;
	char golden_dir[512];
};

static const char *env_or(const char *k, const char *def)
{
	const char *v = getenv(k);
	return v && *v ? v : def;
}

static int unhex(const char *s, uint8_t **ret, size_t *ret_len)
{
	size_t n = strlen(s);
	uint8_t *b;

	*ret = NULL;
	*ret_len = 0;
	if (strcmp(s, "-") == 0)
		return 0;
	if (n % 2)
		return -EINVAL;
	b = malloc(n / 2 + 1);
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1) {
			free(b);
			return -EINVAL;
		}
		b[i] = (uint8_t)v;
	}
	b[n / 2] = 0;
	*ret = b;
	*ret_len = n / 2;
	return 0;
}

static void unhex_into(const char *s, char *out, size_t cap)
{
	uint8_t *b;
	size_t n;

	out[0] = 0;
	if (unhex(s, &b, &n) || n >= cap) {
		free(b);
		return;
	}
	if (n)
		memcpy(out, b, n);
	out[n] = 0;
	free(b);
}

static void print_escaped(FILE *f, const void *p, size_t n)
{
	const uint8_t *b = p;
	fputc('"', f);
	for (size_t i = 0; i < n && i < 400; i++) {
		if (b[i] == '\n')
			fputs("\\n", f);
		else if (b[i] < 0x20 || b[i] == '"' || b[i] == '\\')
			fprintf(f, "\\x%02x", b[i]);
		else
			fputc(b[i], f);
	}
	fputc('"', f);
	if (n > 400)
		fprintf(f, "...(%zu bytes)", n);
}

static int load_golden(struct fixture *f, const char *path)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, ccap = 0;
	ssize_t len;

	if (!fp)
		return -errno;
	while ((len = getline(&line, &cap, fp)) >= 0) {
		char *save = NULL, *tk;
		struct ccase c;

		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (strncmp(line, "# family ", 9) == 0 && f->nfam < 8) {
			char name[16], bos[256], eos[256];
			struct family_tok *ft = &f->fam[f->nfam];
			if (sscanf(line, "# family %15s template %*s bos_token_hex %255s eos_token_hex %255s",
				   name, bos, eos) == 3) {
				snprintf(ft->name, sizeof(ft->name), "%s", name);
				unhex_into(bos, ft->bos, sizeof(ft->bos));
				unhex_into(eos, ft->eos, sizeof(ft->eos));
				f->nfam++;
			}
			continue;
		}
		if ((line[0] != 'C' && line[0] != 'E') || line[1] != ' ')
			continue;
		memset(&c, 0, sizeof(c));
		c.is_error = line[0] == 'E';
		tk = strtok_r(line + 2, " ", &save);
		snprintf(c.family, sizeof(c.family), "%s", tk ? tk : "");
		tk = strtok_r(NULL, " ", &save);
		c.agp = tk ? atoi(tk) : 0;
		tk = strtok_r(NULL, " ", &save);
		c.n = tk ? strtoul(tk, NULL, 10) : 0;
		assert_true(c.n <= MAX_MSGS);
		for (size_t i = 0; i < c.n; i++) {
			char *r = strtok_r(NULL, " ", &save), *x = strtok_r(NULL, " ", &save);
			assert_non_null(r);
			assert_non_null(x);
			assert_int_equal(unhex(r, &c.role[i], &c.role_len[i]), 0);
			assert_int_equal(unhex(x, &c.content[i], &c.content_len[i]), 0);
		}
		tk = strtok_r(NULL, " ", &save);
		assert_non_null(tk);
		assert_int_equal(unhex(tk, &c.want, &c.want_len), 0);
		if (f->nc == ccap) {
			ccap = ccap ? 2 * ccap : 64;
			f->c = realloc(f->c, ccap * sizeof(*f->c));
			assert_non_null(f->c);
		}
		f->c[f->nc++] = c;
	}
	free(line);
	fclose(fp);
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *model = env_or("PF_MODEL", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
	char err[256] = "", path[600];
	int r;

	if (!f)
		return -1;
	r = pf_gguf_open(model, &f->g, err, sizeof(err));
	if (r) {
		fprintf(stderr, "test_chat: cannot open the model %s (%s): run `make model` "
			"(make test fetches it) or set PF_MODEL\n", model, err[0] ? err : strerror(-r));
		free(f);
		return -1;
	}
	snprintf(f->golden_dir, sizeof(f->golden_dir), "%s", env_or("PF_GOLDEN", "tests/golden"));
	snprintf(path, sizeof(path), "%s/chat_smollm2.txt", f->golden_dir);
	r = load_golden(f, path);
	if (r)
		print_message("# %s: %s (golden cases skipped; built-in cases run)\n", path, strerror(-r));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f) /* the setup failed: CMocka calls the group teardown anyway */
		return 0;
	for (size_t i = 0; i < f->nc; i++) {
		for (size_t k = 0; k < f->c[i].n; k++) {
			free(f->c[i].role[k]);
			free(f->c[i].content[k]);
		}
		free(f->c[i].want);
	}
	free(f->c);
	pf_gguf_close(f->g);
	free(f);
	return 0;
}

/* Render case c with chat ch; true if it matches. */
static bool run_case(const struct pf_chat *ch, const struct ccase *c, bool show)
{
	struct pf_chat_msg m[MAX_MSGS];
	char err[256] = "";
	size_t need = 0, n = 0;
	char *buf;
	int r;
	bool ok;

	for (size_t i = 0; i < c->n; i++)
		m[i] = (struct pf_chat_msg){ (const char *)c->role[i], c->role_len[i],
					     (const char *)c->content[i], c->content_len[i] };
	r = pf_chat_render(ch, m, c->n, c->agp, NULL, 0, &need, err, sizeof(err));
	buf = malloc(need + 1);
	assert_non_null(buf);
	if (r == -ENOSPC || r == 0)
		r = pf_chat_render(ch, m, c->n, c->agp, buf, need, &n, err, sizeof(err));
	if (c->is_error)
		ok = r == -EINVAL && strlen(err) == c->want_len && memcmp(err, c->want, c->want_len) == 0;
	else
		ok = r == 0 && n == c->want_len && (!n || memcmp(buf, c->want, n) == 0);
	if (!ok && show) {
		fprintf(stderr, "MISMATCH %c %s agp=%d n=%zu:", c->is_error ? 'E' : 'C', c->family, c->agp, c->n);
		for (size_t i = 0; i < c->n; i++) {
			fprintf(stderr, " ");
			print_escaped(stderr, c->role[i], c->role_len[i]);
			fprintf(stderr, "=");
			print_escaped(stderr, c->content[i], c->content_len[i]);
		}
		fprintf(stderr, "\n  expected: ");
		print_escaped(stderr, c->want, c->want_len);
		fprintf(stderr, "\n  got (r=%d): ", r);
		if (r == 0)
			print_escaped(stderr, buf, n);
		else
			fprintf(stderr, "error \"%s\"", err);
		fprintf(stderr, "\n");
	}
	free(buf);
	return ok;
}

static void test_golden(void **state)
{
	struct fixture *f = *state;
	size_t ok = 0, bad = 0;

	if (!f->nc) {
		print_message("# chat golden: no cases (file missing)\n");
		return;
	}
	for (size_t i = 0; i < f->nc; i++) {
		const struct ccase *c = &f->c[i];
		const struct family_tok *ft = NULL;
		struct pf_chat *ch = NULL;
		char err[256];

		for (size_t k = 0; k < f->nfam; k++)
			if (strcmp(f->fam[k].name, c->family) == 0)
				ft = &f->fam[k];
		assert_non_null(ft);
		assert_int_equal(pf_chat_from_name(c->family, ft->bos, ft->eos, &ch, err, sizeof(err)), 0);
		if (run_case(ch, c, bad < MAX_SHOW))
			ok++;
		else
			bad++;
		pf_chat_free(ch);
	}
	print_message("# chat golden: %zu/%zu cases match\n", ok, ok + bad);
	assert_int_equal(bad, 0);
}

/* The model's own template, detected, renders the smollm2 records. */
static void test_model_template(void **state)
{
	struct fixture *f = *state;
	struct pf_chat *ch = NULL;
	char err[256] = "";
	size_t sl, ok = 0, bad = 0;
	const char *sys;

	assert_int_equal(pf_chat_from_gguf(f->g, &ch, err, sizeof(err)), 0);
	assert_int_equal(pf_chat_family(ch), PF_CHAT_CHATML);
	assert_string_equal(pf_chat_name(ch), "smollm2");
	sys = pf_chat_default_system(ch, &sl);
	assert_non_null(sys);
	assert_int_equal(sl, strlen("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
	assert_memory_equal(sys, "You are a helpful AI assistant named SmolLM, trained by Hugging Face", sl);
	for (size_t i = 0; i < f->nc; i++) {
		if (strcmp(f->c[i].family, "smollm2"))
			continue;
		if (run_case(ch, &f->c[i], bad < MAX_SHOW))
			ok++;
		else
			bad++;
	}
	if (ok + bad)
		print_message("# chat golden via the model's template: %zu/%zu smollm2 cases match\n", ok, ok + bad);
	pf_chat_free(ch);
	assert_int_equal(bad, 0);
}

static char *slurp(const char *path, size_t *ret_len)
{
	FILE *fp = fopen(path, "rb");
	char *b = NULL;
	long n;

	if (!fp)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
		b = malloc((size_t)n + 1);
		if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) {
			free(b);
			b = NULL;
		}
		if (b) {
			b[n] = 0;
			*ret_len = (size_t)n;
		}
	}
	fclose(fp);
	return b;
}

static const char qwen2_tmpl[] =
	"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
	"{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
	"{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
	"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
/* the same with Jinja escapes instead of raw newlines, and a quote inside */
static const char chatml_escaped_tmpl[] =
	"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
	"{{ \"<|im_start|>system\\nYou're \\\"Bob\\\".<|im_end|>\\n\" }}{% endif %}"
	"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
	"{% endfor %}";
static const char chatml_plain_tmpl[] =
	"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
	" + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
/* Qwen2.5's tool branch: '<|im_start|>system\n' + messages[0]['content'] is no default */
static const char qwen25_like_tmpl[] =
	"{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
	"'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
	"You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}";
static const char llama2_tmpl[] =
	"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
	"messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
	"{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
	"{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
	"{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
	"'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
	"{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
	"{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
static const char llama31_tmpl[] =
	"{{- bos_token }}{%- set date_string = \"26 Jul 2024\" %}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
	"{{- \"Cutting Knowledge Date: December 2023\\n\" }}{{- '<|start_header_id|>' + message['role'] + "
	"'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}";
static const char mistral_v3_tmpl[] =
	"{{- bos_token }}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}{%- if tools is not none %}"
	"{{- \"[AVAILABLE_TOOLS] [\" }}{%- endif %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}{%- endfor %}";

static const char qwen3_like_tmpl[] =
	"{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + "
	"'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
	"{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
	"{%- endif %}{%- endif %}";

static void expect_detect(const char *tmpl, size_t len, int want_r, const char *want_name,
			  const char *want_sys)
{
	struct pf_chat *ch = NULL;
	char err[256] = "";
	int r = pf_chat_detect(tmpl, len, "<s>", "</s>", &ch, err, sizeof(err));

	assert_int_equal(r, want_r);
	if (r) {
		assert_null(ch);
		assert_true(strlen(err) > 0);
		return;
	}
	assert_string_equal(pf_chat_name(ch), want_name);
	{
		size_t sl;
		const char *sys = pf_chat_default_system(ch, &sl);
		if (want_sys) {
			assert_non_null(sys);
			assert_int_equal(sl, strlen(want_sys));
			assert_memory_equal(sys, want_sys, sl);
		} else {
			assert_null(sys);
		}
	}
	pf_chat_free(ch);
}

static void test_detect(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *file, *name, *sys;
	} files[] = {
		{ "smollm2_chat_template.jinja", "smollm2",
		  "You are a helpful AI assistant named SmolLM, trained by Hugging Face" },
		{ "llama3_chat_template.jinja", "llama3", NULL },
		{ "mistral_chat_template.jinja", "mistral", NULL },
	};
	struct pf_chat *ch = NULL;
	char err[256] = "";

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[700];
		size_t n = 0;
		char *t;
		snprintf(path, sizeof(path), "%s/%s", f->golden_dir, files[i].file);
		t = slurp(path, &n);
		if (!t) {
			print_message("# %s missing: detection checked on built-in texts only\n", path);
			continue;
		}
		expect_detect(t, n, 0, files[i].name, files[i].sys);
		free(t);
	}
	expect_detect(qwen2_tmpl, strlen(qwen2_tmpl), 0, "qwen2", "You are a helpful assistant.");
	expect_detect(chatml_escaped_tmpl, strlen(chatml_escaped_tmpl), 0, "chatml", "You're \"Bob\".");
	expect_detect(chatml_plain_tmpl, strlen(chatml_plain_tmpl), 0, "chatml", NULL);
	expect_detect(qwen25_like_tmpl, strlen(qwen25_like_tmpl), 0, "chatml",
		      "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
	expect_detect(llama2_tmpl, strlen(llama2_tmpl), 0, "llama2", NULL);
	expect_detect(llama31_tmpl, strlen(llama31_tmpl), -ENOTSUP, NULL, NULL);
	expect_detect(mistral_v3_tmpl, strlen(mistral_v3_tmpl), -ENOTSUP, NULL, NULL);
	expect_detect(qwen3_like_tmpl, strlen(qwen3_like_tmpl), -ENOTSUP, NULL, NULL);

	/* unknown: a clear error that names the override */
	assert_int_equal(pf_chat_detect("{{ messages }}", 14, NULL, NULL, &ch, err, sizeof(err)), -ENOTSUP);
	assert_null(ch);
	assert_non_null(strstr(err, "chatml"));
	assert_int_equal(pf_chat_detect(NULL, 0, NULL, NULL, &ch, err, sizeof(err)), -ENOTSUP);
	assert_int_equal(pf_chat_from_name("vicuna", NULL, NULL, &ch, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "llama3"));
	assert_null(ch);
}

/* Llama-2 expectations rendered with jinja2 3.1.6 (HF settings) from
 * llama2_tmpl, bos "<s>", eos "</s>". */
static void test_llama2(void **state)
{
	static const struct {
		size_t n;
		const char *m[8];
		int r;
		const char *want;
	} cases[] = {
		{ 1, { "user", " hi " }, 0, "<s>[INST] hi [/INST]" },
		{ 2, { "system", "", "user", "x" }, 0, "<s>[INST] <<SYS>>\n\n<</SYS>>\n\nx [/INST]" },
		{ 1, { "system", "S" }, 0, "" },
		{ 2, { "user", "a", "tool", "b" }, 0, "<s>[INST] a [/INST]" },
		{ 3, { "user", "a", "assistant", " b\n", "user", "c" }, 0,
		  "<s>[INST] a [/INST] b </s><s>[INST] c [/INST]" },
		{ 2, { "system", "Be nice.", "user", "  \n" }, 0, "<s>[INST] <<SYS>>\nBe nice.\n<</SYS>> [/INST]" },
		{ 2, { "system", "sys", "user", " \xe3\x80\x80q\x1f " }, 0,
		  "<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\n \xe3\x80\x80q [/INST]" },
		{ 1, { "assistant", "x" }, -EINVAL, "Conversation roles must alternate user/assistant/user/assistant/..." },
		{ 0, { NULL }, -EINVAL, "list object has no element 0" },
	};
	struct pf_chat *ch = NULL;
	char err[256];

	(void)state;
	assert_int_equal(pf_chat_from_name("llama2", "<s>", "</s>", &ch, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pf_chat_msg m[4];
		char buf[512];
		size_t n = 0;
		int r;

		for (size_t k = 0; k < cases[i].n; k++)
			m[k] = (struct pf_chat_msg){ cases[i].m[2 * k], strlen(cases[i].m[2 * k]),
						     cases[i].m[2 * k + 1], strlen(cases[i].m[2 * k + 1]) };
		err[0] = 0;
		r = pf_chat_render(ch, m, cases[i].n, true, buf, sizeof(buf), &n, err, sizeof(err));
		assert_int_equal(r, cases[i].r);
		if (r) {
			assert_string_equal(err, cases[i].want);
		} else {
			assert_int_equal(n, strlen(cases[i].want));
			assert_memory_equal(buf, cases[i].want, n);
		}
	}
	pf_chat_free(ch);
}

/* Llama-3's |trim is Python's strip(): Unicode spaces and \x1c-\x1f too. */
static void test_llama3_trim(void **state)
{
	struct pf_chat *ch = NULL;
	char err[64], buf[256];
	size_t n;
	struct pf_chat_msg m = { "user", 4, "\xe3\x80\x80 hi \x1f\xc2\x85", 10 };
	static const char want[] =
		"<B><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
		"<|start_header_id|>assistant<|end_header_id|>\n\n";

	(void)state;
	assert_int_equal(pf_chat_from_name("llama3", "<B>", "<E>", &ch, err, sizeof(err)), 0);
	assert_int_equal(pf_chat_render(ch, &m, 1, true, buf, sizeof(buf), &n, err, sizeof(err)), 0);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(buf, want, n);
	pf_chat_free(ch);
}

static void test_errors(void **state)
{
	struct pf_chat *ch = NULL;
	char err[64], buf[8];
	size_t n = 0;
	struct pf_chat_msg m = { "user", 4, "hello", 5 };

	(void)state;
	assert_int_equal(pf_chat_from_name("smollm2", NULL, NULL, &ch, err, sizeof(err)), 0);
	/* too small: the length needed comes back */
	assert_int_equal(pf_chat_render(ch, &m, 1, true, buf, sizeof(buf), &n, err, sizeof(err)), -ENOSPC);
	assert_int_equal(n, strlen("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
				   "Hugging Face<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"));
	assert_int_equal(pf_chat_render(ch, NULL, 1, true, buf, sizeof(buf), &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(pf_chat_render(ch, NULL, 0, false, NULL, 0, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	pf_chat_free(ch);
	pf_chat_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_model_template),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_llama2),
		cmocka_unit_test(test_llama3_trim),
		cmocka_unit_test(test_errors),
	};

	tu_need_model("test_chat");
	return tu_run_group_tests("test_chat", tests, setup, teardown);
}
