/*
 * test_tok.c — the tokenizer against llama.cpp's own answers.
 *
 *  - tokenizer_smollm2.txt (PF_GOLDEN, written by tests/golden/gen_tokenizer.py
 *    with llama-cpp-python 0.3.36): T records (tokenize) and D records
 *    (llama_detokenize) for SmolLM2's byte-level BPE;
 *  - ggml-vocab-*.gguf + .inp/.out from llama.cpp's test suite, for the
 *    SentencePiece path (the llama-spm vocabulary is in PF_GOLDEN) and, when
 *    PF_LLAMA_VOCAB_DIR points at llama.cpp's models/ folder, for every
 *    other vocabulary there that we support;
 *  - properties: decode(encode(s)) == s for valid UTF-8, the streaming
 *    detokenizer only ever emits well-formed UTF-8 and adds up to the whole
 *    decode, error paths.
 *
 * Environment: PF_MODEL (default models/SmolLM2-135M-Instruct.Q4_1.gguf),
 * PF_GOLDEN (default tests/golden), PF_LLAMA_VOCAB_DIR (optional).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

#include <cmocka.h>

#include "runtime/model/gguf.h"
#include "runtime/text/tok.h"
#include "tests/unit/testutil.h"

#define MAX_SHOW 10

struct tcase {
	int add_special, parse_special;
	uint8_t *in;
	size_t in_len;
	int32_t *ids;
	size_t n_ids;
};

struct dcase {
	int remove_special, unparse_special;
	int32_t *ids;
	size_t n_ids;
	uint8_t *out;
	size_t out_len;
};

struct special_line {
	int32_t id;
	uint32_t attr;
};

struct fixture {
	struct pf_gguf *g;
	struct pf_tok *tok;
	struct tcase *t;
	size_t nt;
	struct dcase *d;
	size_t nd;
	struct special_line *sp;
	size_t nsp;
	int32_t bos, eos, add_bos, add_eos, n_vocab;
	char golden_path[512];
};

/* ---- small helpers ------------------------------------------------------ */

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
	*ret = b;
	*ret_len = n / 2;
	return 0;
}

static void print_hex(FILE *f, const void *p, size_t n, size_t max)
{
	const uint8_t *b = p;
	if (!n) {
		fputc('-', f);
		return;
	}
	for (size_t i = 0; i < n && i < max; i++)
		fprintf(f, "%02x", b[i]);
	if (n > max)
		fprintf(f, "...(%zu bytes)", n);
}

static void print_ids(FILE *f, const int32_t *v, size_t n, size_t max)
{
	if (!n)
		fputc('-', f);
	for (size_t i = 0; i < n && i < max; i++)
		fprintf(f, "%s%d", i ? " " : "", v[i]);
	if (n > max)
		fprintf(f, " ...(%zu ids)", n);
}

/* ids separated by `sep`, or "-" */
static int parse_ids(char *s, const char *sep, int32_t **ret, size_t *ret_n)
{
	size_t cap = 16, n = 0;
	int32_t *v;
	char *save = NULL;

	*ret = NULL;
	*ret_n = 0;
	if (!s || strcmp(s, "-") == 0)
		return 0;
	v = malloc(cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (char *tk = strtok_r(s, sep, &save); tk; tk = strtok_r(NULL, sep, &save)) {
		if (n == cap) {
			int32_t *nv = realloc(v, 2 * cap * sizeof(*v));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap *= 2;
		}
		v[n++] = (int32_t)strtol(tk, NULL, 10);
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* Strict UTF-8 check (RFC 3629). */
static bool utf8_ok(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t b = s[i];
		size_t l;
		uint32_t c;
		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf) {
			l = 2;
			c = b & 0x1f;
		} else if (b >= 0xe0 && b <= 0xef) {
			l = 3;
			c = b & 0x0f;
		} else if (b >= 0xf0 && b <= 0xf4) {
			l = 4;
			c = b & 0x07;
		} else {
			return false;
		}
		if (i + l > n)
			return false;
		for (size_t k = 1; k < l; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			c = (c << 6) | (s[i + k] & 0x3f);
		}
		if ((l == 3 && c < 0x800) || (l == 4 && (c < 0x10000 || c > 0x10ffff)) ||
		    (c >= 0xd800 && c <= 0xdfff))
			return false;
		i += l;
	}
	return true;
}

/* Could p[0..l) still be completed to one well-formed character of
 * `want` bytes?  Brute force over continuation padding. */
static bool is_prefix(const uint8_t *p, size_t l, size_t want)
{
	uint8_t tmp[4];

	memcpy(tmp, p, l);
	for (unsigned pad = 0x80; pad <= 0xbf; pad++) {
		for (size_t k = l; k < want; k++)
			tmp[k] = (uint8_t)pad;
		if (utf8_ok(tmp, want))
			return true;
	}
	return false;
}

/*
 * Reference replacement decoding, written differently from tok_detok.c on
 * purpose (brute force against utf8_ok): a complete character is copied, a
 * maximal prefix that cannot be completed costs one U+FFFD.
 */
static size_t ref_replace(const uint8_t *s, size_t n, uint8_t *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		uint8_t b = s[i];
		size_t want = b < 0x80 ? 1 : (b >= 0xc2 && b <= 0xdf) ? 2 :
			      (b >= 0xe0 && b <= 0xef) ? 3 : (b >= 0xf0 && b <= 0xf4) ? 4 : 0;
		size_t l = 1;

		if (want == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		while (l < want && i + l < n && is_prefix(s + i, l + 1, want))
			l++;
		if (l == want) {
			memcpy(out + o, s + i, want);
			o += want;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
		}
		i += l;
	}
	return o;
}

/* ---- golden file -------------------------------------------------------- */

static int load_golden(struct fixture *f, const char *path)
{
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, tcap = 0, dcap = 0, scap = 0;
	ssize_t n;

	if (!fp)
		return -errno;
	f->bos = f->eos = -1;
	while ((n = getline(&line, &cap, fp)) >= 0) {
		char *save = NULL, *tk;

		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		if (strncmp(line, "# n_vocab ", 10) == 0) {
			sscanf(line, "# n_vocab %d bos %d eos %d add_bos %d add_eos %d", &f->n_vocab,
			       &f->bos, &f->eos, &f->add_bos, &f->add_eos);
			continue;
		}
		if (strncmp(line, "# special id ", 13) == 0) {
			if (f->nsp == scap) {
				scap = scap ? 2 * scap : 32;
				f->sp = realloc(f->sp, scap * sizeof(*f->sp));
				assert_non_null(f->sp);
			}
			sscanf(line, "# special id %d attr %u", &f->sp[f->nsp].id, &f->sp[f->nsp].attr);
			f->nsp++;
			continue;
		}
		if (line[0] == 'T' && line[1] == ' ') {
			struct tcase c = { 0 };
			char *in, *rest;
			tk = strtok_r(line + 2, " ", &save);
			c.add_special = tk ? atoi(tk) : 0;
			tk = strtok_r(NULL, " ", &save);
			c.parse_special = tk ? atoi(tk) : 0;
			in = strtok_r(NULL, " ", &save);
			rest = strtok_r(NULL, "", &save);
			if (!in || unhex(in, &c.in, &c.in_len) || parse_ids(rest, " ", &c.ids, &c.n_ids)) {
				fprintf(stderr, "bad T line: %.80s\n", line);
				continue;
			}
			if (f->nt == tcap) {
				tcap = tcap ? 2 * tcap : 256;
				f->t = realloc(f->t, tcap * sizeof(*f->t));
				assert_non_null(f->t);
			}
			f->t[f->nt++] = c;
		} else if (line[0] == 'D' && line[1] == ' ') {
			struct dcase c = { 0 };
			char *ids, *out;
			tk = strtok_r(line + 2, " ", &save);
			c.remove_special = tk ? atoi(tk) : 0;
			tk = strtok_r(NULL, " ", &save);
			c.unparse_special = tk ? atoi(tk) : 0;
			ids = strtok_r(NULL, " ", &save);
			out = strtok_r(NULL, " ", &save);
			if (!ids || !out || parse_ids(ids, ",", &c.ids, &c.n_ids) ||
			    unhex(out, &c.out, &c.out_len)) {
				fprintf(stderr, "bad D line: %.80s\n", line);
				continue;
			}
			if (f->nd == dcap) {
				dcap = dcap ? 2 * dcap : 256;
				f->d = realloc(f->d, dcap * sizeof(*f->d));
				assert_non_null(f->d);
			}
			f->d[f->nd++] = c;
		}
	}
	free(line);
	fclose(fp);
	return 0;
}

/* Hand-checked cases, used in addition to the golden file (and instead of
 * it while it does not exist).  Ids read off llama.cpp by hand. */
static const struct {
	const char *in;
	int add_special, parse_special;
	int32_t ids[8];
	size_t n;
} hand_cases[] = {
	{ "Hello world", 0, 0, { 19556, 905 }, 2 },
	{ "Hello, world!", 0, 0, { 19556, 28, 905, 17 }, 4 },
	{ "", 1, 1, { 0 }, 0 },
	{ "<|im_start|>", 0, 1, { 1 }, 1 },
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *model = env_or("PF_MODEL", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
	char err[256] = "";
	int r;

	if (!f)
		return -1;
	r = pf_gguf_open(model, &f->g, err, sizeof(err));
	if (r) {
		fprintf(stderr, "test_tok: cannot open the model %s (%s): run `make model` "
			"(make test fetches it) or set PF_MODEL\n", model, err[0] ? err : strerror(-r));
		free(f);
		return -1;
	}
	r = pf_tok_load(f->g, &f->tok, err, sizeof(err));
	if (r) {
		fprintf(stderr, "test_tok: pf_tok_load: %s (%d)\n", err, r);
		pf_gguf_close(f->g);
		free(f);
		return -1;
	}
	snprintf(f->golden_path, sizeof(f->golden_path), "%s/tokenizer_smollm2.txt",
		 env_or("PF_GOLDEN", "tests/golden"));
	r = load_golden(f, f->golden_path);
	if (r)
		fprintf(stderr, "test_tok: %s: %s (only the built-in cases run)\n", f->golden_path, strerror(-r));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f) /* the setup failed: CMocka calls the group teardown anyway */
		return 0;
	for (size_t i = 0; i < f->nt; i++) {
		free(f->t[i].in);
		free(f->t[i].ids);
	}
	for (size_t i = 0; i < f->nd; i++) {
		free(f->d[i].ids);
		free(f->d[i].out);
	}
	free(f->t);
	free(f->d);
	free(f->sp);
	pf_tok_free(f->tok);
	pf_gguf_close(f->g);
	free(f);
	return 0;
}

/* Encode into a right-sized vector. */
static int encode(const struct pf_tok *t, const void *in, size_t len, bool add, bool parse,
		  int32_t **ret, size_t *ret_n)
{
	size_t n = 0;
	int r = pf_tok_encode(t, in, len, add, parse, NULL, 0, &n);
	int32_t *v;

	if (r && r != -ENOSPC)
		return r;
	v = malloc((n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	r = pf_tok_encode(t, in, len, add, parse, v, n, ret_n);
	if (r) {
		free(v);
		return r;
	}
	*ret = v;
	return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_vocab_facts(void **state)
{
	struct fixture *f = *state;
	const struct pf_tok *t = f->tok;

	assert_int_equal(pf_tok_kind(t), PF_TOK_BPE);
	assert_string_equal(pf_tok_pre_name(t), "smollm");
	assert_int_equal(pf_tok_n_vocab(t), 49152);
	assert_int_equal(pf_tok_bos(t), 1);
	assert_int_equal(pf_tok_eos(t), 2);
	assert_int_equal(pf_tok_eot(t), 2);     /* <|im_end|> */
	assert_false(pf_tok_add_bos(t));
	assert_false(pf_tok_add_eos(t));
	/* <|endoftext|>, <|im_end|> by name, <reponame> as FIM repo */
	assert_true(pf_tok_is_eog(t, 0));
	assert_true(pf_tok_is_eog(t, 2));
	assert_true(pf_tok_is_eog(t, 4));
	assert_false(pf_tok_is_eog(t, 1));
	assert_false(pf_tok_is_eog(t, 19556));
	assert_false(pf_tok_is_eog(t, -1));
	assert_false(pf_tok_is_eog(t, 49152));
	assert_int_equal(pf_tok_find(t, "<|im_start|>", 12), 1);
	assert_int_equal(pf_tok_find(t, "no such token", 13), -ENOENT);
	if (f->n_vocab) {
		assert_int_equal(f->n_vocab, pf_tok_n_vocab(t));
		assert_int_equal(f->bos, pf_tok_bos(t));
		assert_int_equal(f->eos, pf_tok_eos(t));
		assert_int_equal(f->add_bos, pf_tok_add_bos(t));
		assert_int_equal(f->add_eos, pf_tok_add_eos(t));
	}
	/* every special token of the golden header, with llama.cpp's attributes */
	for (size_t i = 0; i < f->nsp; i++)
		assert_int_equal(pf_tok_attr(t, f->sp[i].id), f->sp[i].attr);
	for (int32_t id = 0; id < pf_tok_n_vocab(t); id++) {
		bool listed = false;
		for (size_t i = 0; i < f->nsp; i++)
			listed |= f->sp[i].id == id;
		if (f->nsp && !listed)
			assert_int_equal(pf_tok_attr(t, id) &
					 (PF_TOK_ATTR_CONTROL | PF_TOK_ATTR_USER_DEFINED | PF_TOK_ATTR_UNKNOWN), 0);
	}
}

static void test_hand_cases(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(hand_cases) / sizeof(hand_cases[0]); i++) {
		int32_t *ids = NULL;
		size_t n = 0;
		assert_int_equal(encode(f->tok, hand_cases[i].in, strlen(hand_cases[i].in),
					hand_cases[i].add_special, hand_cases[i].parse_special, &ids, &n), 0);
		assert_int_equal(n, hand_cases[i].n);
		for (size_t k = 0; k < n; k++)
			assert_int_equal(ids[k], hand_cases[i].ids[k]);
		free(ids);
	}
}

static void test_golden_encode(void **state)
{
	struct fixture *f = *state;
	size_t ok = 0, bad = 0;

	if (!f->nt) {
		print_message("# tokenizer golden: %s missing, skipped\n", f->golden_path);
		return;
	}
	for (size_t i = 0; i < f->nt; i++) {
		const struct tcase *c = &f->t[i];
		int32_t *ids = NULL;
		size_t n = 0;
		int r = encode(f->tok, c->in, c->in_len, c->add_special, c->parse_special, &ids, &n);

		if (!r && n == c->n_ids && (!n || memcmp(ids, c->ids, n * sizeof(*ids)) == 0)) {
			ok++;
		} else {
			if (bad < MAX_SHOW) {
				fprintf(stderr, "MISMATCH T %d %d in=", c->add_special, c->parse_special);
				print_hex(stderr, c->in, c->in_len, 200);
				fprintf(stderr, "\n  expected: ");
				print_ids(stderr, c->ids, c->n_ids, 64);
				fprintf(stderr, "\n  got (r=%d): ", r);
				print_ids(stderr, ids, r ? 0 : n, 64);
				fprintf(stderr, "\n");
			}
			bad++;
		}
		free(ids);
	}
	print_message("# tokenizer golden: %zu/%zu tokenize cases match\n", ok, ok + bad);
	assert_int_equal(bad, 0);
}

static void test_golden_detokenize(void **state)
{
	struct fixture *f = *state;
	size_t ok = 0, bad = 0, cap = 1 << 16;
	char *buf = malloc(cap);

	assert_non_null(buf);
	for (size_t i = 0; i < f->nd; i++) {
		const struct dcase *c = &f->d[i];
		size_t n = 0;
		int r = pf_tok_detokenize(f->tok, c->ids, c->n_ids, c->remove_special, c->unparse_special,
					  buf, cap, &n);
		if (!r && n == c->out_len && (!n || memcmp(buf, c->out, n) == 0)) {
			ok++;
		} else {
			if (bad < MAX_SHOW) {
				fprintf(stderr, "MISMATCH D %d %d ids=", c->remove_special, c->unparse_special);
				print_ids(stderr, c->ids, c->n_ids, 32);
				fprintf(stderr, "\n  expected: ");
				print_hex(stderr, c->out, c->out_len, 200);
				fprintf(stderr, "\n  got (r=%d): ", r);
				print_hex(stderr, buf, r ? 0 : n, 200);
				fprintf(stderr, "\n");
			}
			bad++;
		}
	}
	free(buf);
	if (f->nd)
		print_message("# tokenizer golden: %zu/%zu detokenize cases match\n", ok, ok + bad);
	assert_int_equal(bad, 0);
}

/* GPT-2's stand-in character for byte b, as UTF-8 (test-side copy). */
static size_t gpt2_char(unsigned b, char *out)
{
	unsigned c = b, n = 0;

	if (!((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)) {
		for (unsigned k = 0; k < b; k++)
			n += !((k >= 0x21 && k <= 0x7e) || (k >= 0xa1 && k <= 0xac) || k >= 0xae);
		c = 256 + n;
	}
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	out[0] = (char)(0xc0 | (c >> 6));
	out[1] = (char)(0x80 | (c & 0x3f));
	return 2;
}

/*
 * decode(encode(s)) == s for every valid UTF-8 golden input -- except that
 * a byte whose GPT-2 character is not in the vocabulary cannot be encoded
 * at all (SmolLM2 lacks six C0 controls; llama.cpp drops them too, see the
 * golden T records), so those bytes are expected to vanish.
 */
static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	size_t n_checked = 0, n_lossy = 0;
	bool no_token[256];

	for (unsigned b = 0; b < 256; b++) {
		char c[2];
		size_t l = gpt2_char(b, c);
		no_token[b] = pf_tok_find(f->tok, c, l) < 0;
	}
	for (size_t i = 0; i < f->nt; i++) {
		const struct tcase *c = &f->t[i];
		int32_t *ids = NULL;
		size_t n = 0, o = 0, wl = 0;
		char *out, *want;

		if (!utf8_ok(c->in, c->in_len))
			continue;
		want = malloc(c->in_len + 1);
		out = malloc(c->in_len + 1);
		assert_true(want && out);
		for (size_t k = 0; k < c->in_len; k++)
			if (!no_token[c->in[k]])
				want[wl++] = (char)c->in[k];
		n_lossy += wl != c->in_len;
		assert_int_equal(encode(f->tok, c->in, c->in_len, false, false, &ids, &n), 0);
		for (size_t k = 0; k < n; k++) {
			size_t pl;
			const char *p = pf_tok_piece(f->tok, ids[k], false, &pl);
			assert_non_null(p);
			assert_true(o + pl <= wl);
			memcpy(out + o, p, pl);
			o += pl;
		}
		assert_int_equal(o, wl);
		assert_memory_equal(out, want, o);
		n_checked++;
		free(out);
		free(want);
		free(ids);
	}
	print_message("# round trip: %zu valid UTF-8 inputs (%zu with bytes the vocabulary lacks)\n",
		      n_checked, n_lossy);
}

/* Feed ids one by one; every chunk is well-formed and the chunks add up
 * to the replacement-decoded concatenation of the pieces. */
static void check_stream(const struct pf_tok *t, const int32_t *ids, size_t n, bool special, size_t cap)
{
	struct pf_detok d;
	size_t raw_len = 0, got_len = 0, bound = pf_detok_max_out(t);
	uint8_t *raw, *want, *got;
	char *chunk = malloc(bound);

	for (size_t k = 0; k < n; k++) {
		size_t pl;
		pf_tok_piece(t, ids[k], special, &pl);
		raw_len += pl;
	}
	raw = malloc(raw_len + 1);
	want = malloc(3 * raw_len + 4);
	got = malloc(3 * raw_len + 4);
	assert_true(raw && want && got && chunk);
	raw_len = 0;
	for (size_t k = 0; k < n; k++) {
		size_t pl;
		const char *p = pf_tok_piece(t, ids[k], special, &pl);
		memcpy(raw + raw_len, p, pl);
		raw_len += pl;
	}
	pf_detok_init(&d, t, special);
	for (size_t k = 0; k <= n; k++) {
		size_t m = 0;
		int r = k < n ? pf_detok_push(&d, ids[k], chunk, cap, &m) : pf_detok_flush(&d, chunk, cap, &m);
		if (r == -ENOSPC) {
			/* state untouched: retry with the size asked for */
			assert_true(m > cap && m <= bound);
			r = k < n ? pf_detok_push(&d, ids[k], chunk, bound, &m) : pf_detok_flush(&d, chunk, bound, &m);
		}
		assert_int_equal(r, 0);
		assert_true(utf8_ok((uint8_t *)chunk, m));
		memcpy(got + got_len, chunk, m);
		got_len += m;
	}
	{
		size_t wl = ref_replace(raw, raw_len, want);
		assert_int_equal(got_len, wl);
		assert_memory_equal(got, want, wl);
		if (utf8_ok(raw, raw_len)) {
			assert_int_equal(got_len, raw_len);
			assert_memory_equal(got, raw, raw_len);
		}
	}
	free(raw);
	free(want);
	free(got);
	free(chunk);
}

static void test_stream_detok(void **state)
{
	struct fixture *f = *state;
	/* pieces that cut characters apart: "😀" is split over byte tokens */
	static const char *const texts[] = {
		"😀👍🏽👨‍👩‍👧‍👦 你好，世界！ Привет", "\xf0\x9f\x98\x80\xf0\x9f\x98", "a\xc3(b\xe2\x82",
		"\xed\xa0\x80 \xf4\x90\x80\x80 \xc0\x80 \xff",
	};

	for (size_t i = 0; i < f->nt; i++)
		check_stream(f->tok, f->t[i].ids, f->t[i].n_ids, i & 1, i % 3 ? 4096 : 2);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		int32_t *ids = NULL;
		size_t n = 0;
		assert_int_equal(encode(f->tok, texts[i], strlen(texts[i]), false, false, &ids, &n), 0);
		check_stream(f->tok, ids, n, false, 3);
		free(ids);
	}
	/* arbitrary id triples: the first 256 normal ids after the specials
	 * are the single-byte tokens, so this covers stray bytes too */
	{
		int32_t ids[3];
		for (int32_t id = 0; id < 300; id++) {
			ids[0] = id;
			ids[1] = (id * 7919) % pf_tok_n_vocab(f->tok);
			ids[2] = (id * 104729) % pf_tok_n_vocab(f->tok);
			check_stream(f->tok, ids, 3, id & 1, 3);
		}
	}
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	const struct pf_tok *t = f->tok;
	int32_t out[4];
	size_t n = 99;
	char buf[8];
	struct pf_detok d;

	/* "Hello world" is 2 tokens: cap 1 asks for 2 and fills the first */
	assert_int_equal(pf_tok_encode(t, "Hello world", 11, false, false, out, 1, &n), -ENOSPC);
	assert_int_equal(n, 2);
	assert_int_equal(out[0], 19556);
	assert_int_equal(pf_tok_encode(t, "Hello world", 11, false, false, NULL, 0, &n), -ENOSPC);
	assert_int_equal(n, 2);
	assert_int_equal(pf_tok_encode(t, "", 0, true, true, NULL, 0, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(pf_tok_encode(t, NULL, 3, false, false, out, 4, &n), -EINVAL);
	assert_int_equal(pf_tok_encode(NULL, "x", 1, false, false, out, 4, &n), -EINVAL);

	/* pieces */
	assert_null(pf_tok_piece(t, -1, true, &n));
	assert_int_equal(n, 0);
	assert_null(pf_tok_piece(t, 49152, true, &n));
	assert_int_equal(pf_tok_token_to_piece(t, 49152, true, buf, sizeof(buf), &n), -EINVAL);
	assert_int_equal(pf_tok_token_to_piece(t, 1, true, buf, 4, &n), -ENOSPC);
	assert_int_equal(n, 12);        /* "<|im_start|>" */
	assert_int_equal(pf_tok_token_to_piece(t, 1, false, buf, 0, &n), 0);
	assert_int_equal(n, 0);         /* control tokens are empty unless asked */
	assert_int_equal(pf_tok_token_to_piece(t, 19556, false, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "Hello", 5);

	/* detokenize */
	{
		int32_t bad[2] = { 19556, -5 }, good[2] = { 19556, 905 };
		assert_int_equal(pf_tok_detokenize(t, bad, 2, false, false, buf, sizeof(buf), &n), -EINVAL);
		assert_int_equal(pf_tok_detokenize(t, good, 2, false, false, buf, 4, &n), -ENOSPC);
		assert_int_equal(n, 11);
	}

	/* streaming */
	pf_detok_init(&d, t, false);
	assert_int_equal(pf_detok_push(&d, 49152, buf, sizeof(buf), &n), -EINVAL);
	assert_int_equal(pf_detok_push(&d, 19556, buf, 2, &n), -ENOSPC);
	assert_int_equal(n, 5);
	assert_int_equal(pf_detok_push(&d, 19556, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(pf_detok_flush(&d, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 0);
}

/* Long and repetitive inputs: the heap merge path, long regex matches.
 * Shorter under the sanitizers (PF_ASAN), as tests/run.sh allows. */
static void test_long_inputs(void **state)
{
	struct fixture *f = *state;
	size_t len = getenv("PF_ASAN") ? (size_t)64 << 10 : (size_t)512 << 10;
	char *s = malloc(len);
	int32_t *ids = NULL;
	size_t n = 0;
	static const char *const fill[] = { " ", "a", "7", "\n", "!", "你", "\xc3" };

	assert_non_null(s);
	for (size_t k = 0; k < sizeof(fill) / sizeof(fill[0]); k++) {
		size_t fl = strlen(fill[k]), m = len / fl * fl;
		for (size_t i = 0; i < m; i += fl)
			memcpy(s + i, fill[k], fl);
		assert_int_equal(encode(f->tok, s, m, false, false, &ids, &n), 0);
		assert_true(n > 0);
		free(ids);
	}
	free(s);
}

/* ---- llama.cpp's vocab test files (.gguf + .inp + .out) ----------------- */

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

/* Returns mismatches, or -1 when the vocabulary is not supported (skipped). */
static int run_vocab_file(const char *gguf_path, size_t *ret_total)
{
	char p_inp[1024], p_out[1024], err[256] = "";
	struct pf_gguf *g = NULL;
	struct pf_tok *t = NULL;
	size_t il = 0, ol = 0, total = 0;
	char *inp, *outf, *ip, *op;
	int bad = 0, r;
	static const char sep[] = "\n__ggml_vocab_test__\n";

	snprintf(p_inp, sizeof(p_inp), "%s.inp", gguf_path);
	snprintf(p_out, sizeof(p_out), "%s.out", gguf_path);
	inp = slurp(p_inp, &il);
	outf = slurp(p_out, &ol);
	if (!inp || !outf) {
		free(inp);
		free(outf);
		return -1;
	}
	r = pf_gguf_open(gguf_path, &g, err, sizeof(err));
	if (!r)
		r = pf_tok_load(g, &t, err, sizeof(err));
	if (r) {
		print_message("# vocab %s: not loaded (%s)\n", gguf_path, err);
		pf_gguf_close(g);
		free(inp);
		free(outf);
		/* an unsupported tokenizer is expected; anything else is a bug */
		return r == -ENOTSUP ? -1 : 1000000;
	}

	ip = inp;
	op = outf;
	for (;;) {
		char *next = strstr(ip, sep), *oe = strchr(op, '\n');
		size_t tl = next ? (size_t)(next - ip) : strlen(ip);
		int32_t *want = NULL, *got = NULL;
		size_t nw = 0, ng = 0;

		if (!oe)
			break;
		*oe = 0;
		parse_ids(op, " ", &want, &nw);
		r = encode(t, ip, tl, false, false, &got, &ng);
		total++;
		if (r || nw != ng || (nw && memcmp(want, got, nw * sizeof(*got)))) {
			if (bad < MAX_SHOW) {
				fprintf(stderr, "MISMATCH %s in=", gguf_path);
				print_hex(stderr, ip, tl, 120);
				fprintf(stderr, "\n  expected: ");
				print_ids(stderr, want, nw, 40);
				fprintf(stderr, "\n  got (r=%d): ", r);
				print_ids(stderr, got, r ? 0 : ng, 40);
				fprintf(stderr, "\n");
			}
			bad++;
		}
		free(want);
		free(got);
		op = oe + 1;
		if (!next)
			break;
		ip = next + sizeof(sep) - 1;
	}
	print_message("# vocab %s (%s): %zu/%zu cases match\n", strrchr(gguf_path, '/') ? strrchr(gguf_path, '/') + 1 : gguf_path,
		      pf_tok_kind(t) == PF_TOK_SPM ? "spm" : pf_tok_pre_name(t), total - (size_t)bad, total);
	pf_tok_free(t);
	pf_gguf_close(g);
	free(inp);
	free(outf);
	*ret_total = total;
	return bad;
}

static void test_spm_vocab(void **state)
{
	char path[1024];
	size_t total = 0;
	int bad;

	(void)state;
	snprintf(path, sizeof(path), "%s/ggml-vocab-llama-spm.gguf", env_or("PF_GOLDEN", "tests/golden"));
	bad = run_vocab_file(path, &total);
	if (bad < 0) {
		print_message("# %s or its .inp/.out missing\n", path);
		fail_msg("the SentencePiece golden vocabulary is missing: %s", path);
	}
	assert_int_equal(bad, 0);
	assert_true(total > 0);
}

static void test_more_vocabs(void **state)
{
	const char *dir = getenv("PF_LLAMA_VOCAB_DIR");
	DIR *dp;
	struct dirent *de;
	int bad_total = 0;

	(void)state;
	if (!dir || !*dir) {
		print_message("# PF_LLAMA_VOCAB_DIR unset: llama.cpp's other vocab files not checked\n");
		return;
	}
	dp = opendir(dir);
	assert_non_null(dp);
	while ((de = readdir(dp))) {
		size_t l = strlen(de->d_name), total = 0;
		char path[1024];
		int bad;
		if (strncmp(de->d_name, "ggml-vocab-", 11) || l < 5 || strcmp(de->d_name + l - 5, ".gguf"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		bad = run_vocab_file(path, &total);
		if (bad > 0)
			bad_total += bad;
	}
	closedir(dp);
	assert_int_equal(bad_total, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vocab_facts),
		cmocka_unit_test(test_hand_cases),
		cmocka_unit_test(test_golden_encode),
		cmocka_unit_test(test_golden_detokenize),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_stream_detok),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_long_inputs),
		cmocka_unit_test(test_spm_vocab),
		cmocka_unit_test(test_more_vocabs),
	};

	tu_need_model("test_tok");
	return tu_run_group_tests("test_tok", tests, setup, teardown);
}
