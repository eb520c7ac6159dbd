/*
 * tok_pretok.c — UTF-8 normalisation and the regex pre-tokenizer (BPE).
 *
 * llama.cpp splits text into words with a list of regexes applied in
 * stages: stage k runs inside each piece stage k-1 produced, and both the
 * matches and the stretches between them become pieces ("isolated"
 * splitting).  For the common patterns (GPT-2, Llama-3, Qwen2) it uses
 * hand-written matchers over code points, for the rest std::regex over a
 * "collapsed" text with one byte per code point.  Both behave as the
 * regexes below do in PCRE2, given the same character classes:
 *
 *   \p{L} \p{N} \p{P}  llama.cpp's tables are Unicode 15.0, PCRE2 10.42's
 *   \p{M}              are 14.0, so the classes below add the letters,
 *                      digits, punctuation and marks Unicode 15.0 introduced
 *                      (harmless with a newer PCRE2);
 *   \s                 llama.cpp's is the White_Space property: tab..CR,
 *                      space, U+0085 and \p{Z}; PCRE2's \s lacks U+0085,
 *                      so we spell the class out;
 *   contractions       "(?i:'s)" in PCRE2 would also match U+017F (long s)
 *                      and U+212A (Kelvin) case-insensitively; llama.cpp's
 *                      adapted patterns spell '[sS]', and so do we;
 *   std::wregex path   regexes without \p{..} run on text whose non-ASCII
 *                      whitespace was replaced by U+000B, so a class that
 *                      names such a character literally (U+3000 in
 *                      DeepSeek's ranges) cannot match it; we subtract
 *                      whitespace from those classes.
 *
 * Invalid UTF-8 never reaches PCRE2: pf_tok_utf8_normalize() first
 * reproduces llama.cpp's lenient decode + re-encode (see tok_impl.h), and
 * replaces encoded surrogates, which PCRE2 rejects, by U+E000 — like a
 * surrogate in llama.cpp's tables it is neither letter, digit, punctuation
 * nor space, and it has the same 3-byte length, so offsets carry over.
 */
#include "runtime/text/tok_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------- */

static inline bool is_cont(uint8_t b)
{
	return (b & 0xc0) == 0x80;
}

uint32_t pf_tok_utf8_next_lenient(const uint8_t *s, size_t len, size_t *i)
{
	size_t p = *i;
	uint8_t b0 = s[p];
	uint32_t c;

	if (b0 < 0x80) {
		*i = p + 1;
		return b0;
	}
	if (!(b0 & 0x40))
		goto bad;
	if (!(b0 & 0x20)) {
		if (p + 1 >= len || !is_cont(s[p + 1]))
			goto bad;
		*i = p + 2;
		return ((uint32_t)(b0 & 0x1f) << 6) | (s[p + 1] & 0x3f);
	}
	if (!(b0 & 0x10)) {
		if (p + 2 >= len || !is_cont(s[p + 1]) || !is_cont(s[p + 2]))
			goto bad;
		*i = p + 3;
		return ((uint32_t)(b0 & 0x0f) << 12) | ((uint32_t)(s[p + 1] & 0x3f) << 6) |
		       (s[p + 2] & 0x3f);
	}
	if (!(b0 & 0x08)) {
		if (p + 3 >= len || !is_cont(s[p + 1]) || !is_cont(s[p + 2]) || !is_cont(s[p + 3]))
			goto bad;
		c = ((uint32_t)(b0 & 0x07) << 18) | ((uint32_t)(s[p + 1] & 0x3f) << 12) |
		    ((uint32_t)(s[p + 2] & 0x3f) << 6) | (s[p + 3] & 0x3f);
		/* llama.cpp aborts on these (see tok_impl.h); we call the lead
		 * byte invalid instead */
		if (c > 0x10ffff)
			goto bad;
		*i = p + 4;
		return c;
	}
bad:
	*i = p + 1;
	return 0xfffd;
}

size_t pf_tok_utf8_put(uint32_t c, uint8_t *b)
{
	if (c < 0x80) {
		b[0] = (uint8_t)c;
		return 1;
	}
	if (c < 0x800) {
		b[0] = (uint8_t)(0xc0 | (c >> 6));
		b[1] = (uint8_t)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		b[0] = (uint8_t)(0xe0 | (c >> 12));
		b[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
		b[2] = (uint8_t)(0x80 | (c & 0x3f));
		return 3;
	}
	b[0] = (uint8_t)(0xf0 | (c >> 18));
	b[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3f));
	b[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
	b[3] = (uint8_t)(0x80 | (c & 0x3f));
	return 4;
}

/* Length of the well-formed (RFC 3629) UTF-8 prefix of s[0..len). */
static size_t utf8_valid_prefix(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t b = s[i];
		if (b < 0x80) {
			/* skip ASCII eight bytes at a time: most text is ASCII */
			while (i + 8 <= len) {
				uint64_t v;
				memcpy(&v, s + i, 8);
				if (v & 0x8080808080808080ull)
					break;
				i += 8;
			}
			if (i < len && s[i] < 0x80)
				i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf) {
			if (i + 1 >= len || !is_cont(s[i + 1]))
				return i;
			i += 2;
		} else if (b >= 0xe0 && b <= 0xef) {
			uint8_t lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
			if (i + 2 >= len || s[i + 1] < lo || s[i + 1] > hi || !is_cont(s[i + 2]))
				return i;
			i += 3;
		} else if (b >= 0xf0 && b <= 0xf4) {
			uint8_t lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
			if (i + 3 >= len || s[i + 1] < lo || s[i + 1] > hi || !is_cont(s[i + 2]) ||
			    !is_cont(s[i + 3]))
				return i;
			i += 4;
		} else {
			return i;
		}
	}
	return len;
}

int pf_tok_utf8_normalize(struct pf_tok_scratch *s, const char *text, size_t len,
			  const char **ret_norm, const char **ret_subj, size_t *ret_len)
{
	const uint8_t *in = (const uint8_t *)text;
	size_t ok = utf8_valid_prefix(in, len), i, o;
	uint8_t *norm, *subj;
	int r;

	if (ok == len) {
		*ret_norm = *ret_subj = text;
		*ret_len = len;
		return 0;
	}
	/* Re-encoding never grows the text: U+FFFD (3 bytes) replaces one
	 * byte only where a well-formed 3-byte sequence cannot start, so bound
	 * by 3 bytes per input byte. */
	if (len > SIZE_MAX / 3)
		return -ENOMEM;
	r = pf_tok_grow((void **)&s->norm, &s->norm_cap, 3 * len + 4, 1);
	if (!r)
		r = pf_tok_grow((void **)&s->subj, &s->subj_cap, 3 * len + 4, 1);
	if (r)
		return r;
	norm = (uint8_t *)s->norm;
	subj = (uint8_t *)s->subj;
	memcpy(norm, in, ok);
	memcpy(subj, in, ok);
	i = o = ok;
	while (i < len) {
		uint32_t c = pf_tok_utf8_next_lenient(in, len, &i);
		size_t n = pf_tok_utf8_put(c, norm + o);
		if (c >= 0xd800 && c <= 0xdfff)
			pf_tok_utf8_put(0xe000, subj + o);
		else
			memcpy(subj + o, norm + o, n);
		o += n;
	}
	*ret_norm = s->norm;
	*ret_subj = s->subj;
	*ret_len = o;
	return 0;
}

/* ---- patterns ---------------------------------------------------------- */

/* Class bodies (use inside [...]).  The \x{..} ranges are what Unicode 15.0
 * added to L, N and P, which llama.cpp's tables know and PCRE2 10.42 does
 * not (found by comparing the two code point by code point). */
#define C_L "\\p{L}\\x{1123F}-\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}" \
	"\\x{1342F}\\x{13441}-\\x{13446}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}" \
	"\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"
#define C_N "\\p{N}\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}"
#define C_P "\\p{P}\\x{11B00}-\\x{11B09}\\x{11F43}-\\x{11F4F}"
#define C_M "\\p{M}\\x{CF3}\\x{ECE}\\x{10EFD}-\\x{10EFF}\\x{11241}\\x{11F00}-\\x{11F01}\\x{11F03}" \
	"\\x{11F34}-\\x{11F3A}\\x{11F3E}-\\x{11F42}\\x{13440}\\x{13447}-\\x{13455}\\x{1E08F}\\x{1E4EC}-\\x{1E4EF}"
#define C_S "\\t-\\r\\x{20}\\x{85}\\p{Z}"

#define RE_CONTRACT_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static const char re_gpt2[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?[" C_L "]+| ?[" C_N "]+| ?[^" C_S C_L C_N "]+"
	"|[" C_S "]+(?![^" C_S "])";

/* (?i:'s|..)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static const char re_llama3[] =
	RE_CONTRACT_CI "|[^\\r\\n" C_L C_N "]?[" C_L "]+|[" C_N "]{1,3}"
	"| ?[^" C_S C_L C_N "]+[\\r\\n]*|[" C_S "]*[\\r\\n]+|[" C_S "]+(?![^" C_S "])|[" C_S "]+";

/* as Llama-3 with single digits */
static const char re_qwen2[] =
	RE_CONTRACT_CI "|[^\\r\\n" C_L C_N "]?[" C_L "]+|[" C_N "]"
	"| ?[^" C_S C_L C_N "]+[\\r\\n]*|[" C_S "]*[\\r\\n]+|[" C_S "]+(?![^" C_S "])|[" C_S "]+";

/* as Qwen2 with combining marks in letter runs (Qwen3.5) */
static const char re_qwen35[] =
	RE_CONTRACT_CI "|[^\\r\\n" C_L C_N "]?[" C_L C_M "]+|[" C_N "]"
	"| ?[^" C_S C_L C_M C_N "]+[\\r\\n]*|[" C_S "]*[\\r\\n]+|[" C_S "]+(?![^" C_S "])|[" C_S "]+";

static const char re_digit[] = "[" C_N "]";
static const char re_digits[] = "[" C_N "]+";
static const char re_3digits[] = "[0-9][0-9][0-9]";
static const char re_default_punct[] = "[" C_P "\\$\\+<=>\\^~\\|]+";
static const char re_falcon_punct[] = "[" C_P "\\$\\+<=>\\^~\\|`]+";
static const char re_newline[] = "[\\r\\n]";

/* DeepSeek's CJK range, minus the spaces it contains (std::wregex path) */
static const char re_ds_cjk[] =
	"(?:(?![" C_S "])[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}])+";

static const char re_dscoder_letters[] = "[" C_S "]?[" C_L "]+";
static const char re_dscoder_punct[] = "[" C_S "]?[" C_P "]+";

static const char re_dsllm_letters[] =
	"[" C_S "]?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
	"\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}"
	"\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}"
	"\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}"
	"\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}"
	"\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}"
	"\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"
	"\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
	"\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}"
	"\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}"
	"\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}"
	"\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}"
	"\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
	"\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
	"\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
	"\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+";
/* U+3000 is in DeepSeek's range but is whitespace, see the top comment */
static const char re_dsllm_punct[] =
	"[" C_S "]?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3001}-\\x{3002}]+";
static const char re_trailing_space[] = "[" C_S "]+$";

/* " ?[^(\s|.,!?…。，、।۔،)]+" (BLOOM, Poro, Viking) */
static const char re_bloom[] =
	" ?[^(" C_S "|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+";

struct pre_family {
	const char *family;
	const char *names;    /* '|'-separated tokenizer.ggml.pre values */
	const char *re[PF_TOK_MAX_RE];
	bool ignore_merges;
	int add_bos;
	bool clean_spaces;
	bool no_bos;
};

/* Which tokenizer.ggml.pre values select which regexes and flags, after
 * llama.cpp's llama_vocab::impl::load().  Names llama.cpp knows but we do
 * not list are refused rather than guessed. */
static const struct pre_family pre_families[] = {
	{ "default", "default", { re_default_punct, re_gpt2, re_digits, re_3digits }, false, -1, true, false },
	{ "llama3", "llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano",
	  { re_llama3 }, true, 1, true, false },
	{ "llama3", "dbrx|smaug-bpe", { re_llama3 }, false, -1, true, false },
	{ "llama3", "chatglm-bpe", { re_llama3 }, false, -1, true, true },
	{ "llama3", "glm4|glm5", { re_llama3 }, true, -1, true, true },
	{ "gpt2", "gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|"
		  "modern-bert|exaone4|mpt|olmo|jais", { re_gpt2 }, false, -1, true, false },
	{ "starcoder", "starcoder|refact|codeshell|exaone|minerva-7b|mellum2",
	  { re_digit, re_gpt2 }, false, -1, true, false },
	{ "starcoder", "smollm|command-r", { re_digit, re_gpt2 }, false, -1, false, false },
	{ "qwen2", "qwen2|deepseek-r1-qwen|kormo|f2llmv2", { re_qwen2 }, false, -1, false, false },
	{ "qwen2", "stablelm2|megrez", { re_qwen2 }, false, -1, true, false },
	{ "qwen35", "qwen35", { re_qwen35 }, false, -1, false, false },
	{ "falcon", "falcon", { re_falcon_punct, re_gpt2, re_3digits }, false, -1, true, false },
	{ "deepseek-llm", "deepseek-llm",
	  { re_newline, re_dsllm_letters, re_dsllm_punct, re_trailing_space, re_ds_cjk, re_digits },
	  false, -1, false, false },
	{ "deepseek-coder", "deepseek-coder",
	  { re_newline, re_dscoder_letters, re_dscoder_punct, re_ds_cjk, re_digit },
	  false, -1, false, false },
	{ "bloom", "bloom|gpt3-finnish", { re_bloom }, false, -1, true, false },
	{ "bloom", "poro-chat", { re_bloom }, false, -1, false, false },
	{ "viking", "viking", { re_bloom, re_digit }, false, -1, false, false },
};

static bool name_in(const char *names, const char *s, size_t n)
{
	const char *p = names;

	for (;;) {
		const char *e = strchr(p, '|');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == n && memcmp(p, s, n) == 0)
			return true;
		if (!e)
			return false;
		p = e + 1;
	}
}

int pf_tok_pretok_init(struct pf_tok_pretok *p, const char *pre, size_t pre_len,
		       struct pf_tok_pre_info *info, char *err, size_t errlen)
{
	const struct pre_family *f = NULL;

	memset(p, 0, sizeof(*p));
	/* a missing or empty tokenizer.ggml.pre means "default" to llama.cpp */
	if (!pre || !pre_len) {
		pre = "default";
		pre_len = 7;
	}
	for (size_t i = 0; i < sizeof(pre_families) / sizeof(pre_families[0]); i++) {
		if (name_in(pre_families[i].names, pre, pre_len)) {
			f = &pre_families[i];
			break;
		}
	}
	if (!f) {
		if (err)
			snprintf(err, errlen, "unsupported pre-tokenizer tokenizer.ggml.pre=\"%.*s\"",
				 (int)(pre_len > 64 ? 64 : pre_len), pre);
		return -ENOTSUP;
	}
	info->name = f->family;
	info->ignore_merges = f->ignore_merges;
	info->add_bos = f->add_bos;
	info->clean_spaces = f->clean_spaces;
	info->no_bos = f->no_bos;

	for (int i = 0; i < PF_TOK_MAX_RE && f->re[i]; i++) {
		int ec;
		PCRE2_SIZE eo;
		/* DOLLAR_ENDONLY: std::regex's $ is the end of the piece only */
		pcre2_code *re = pcre2_compile((PCRE2_SPTR)f->re[i], PCRE2_ZERO_TERMINATED,
					       PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
		if (!re) {
			PCRE2_UCHAR msg[160];
			pcre2_get_error_message(ec, msg, sizeof(msg));
			if (err)
				snprintf(err, errlen, "pre-tokenizer %s: regex %d: %s at %zu",
					 f->family, i, (const char *)msg, (size_t)eo);
			pf_tok_pretok_fini(p);
			return ec == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -EINVAL;
		}
		p->re[i] = re;
		/* without JIT (e.g. SELinux denying executable memory) the
		 * interpreter gives the same answers, only slower */
		p->jit[i] = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
		p->n_re = i + 1;
	}
	return 0;
}

void pf_tok_pretok_fini(struct pf_tok_pretok *p)
{
	for (int i = 0; i < p->n_re; i++)
		pcre2_code_free(p->re[i]);
	p->n_re = 0;
}

/* ---- splitting --------------------------------------------------------- */

static int push_span(struct pf_tok_span **v, size_t *cap, size_t *n, size_t off, size_t len)
{
	int r = pf_tok_grow((void **)v, cap, *n + 1, sizeof(**v));
	if (r)
		return r;
	(*v)[*n] = (struct pf_tok_span){ .off = (uint32_t)off, .len = (uint32_t)len };
	(*n)++;
	return 0;
}

static int match_once(const struct pf_tok_pretok *p, int k, struct pf_tok_scratch *s,
		      const char *subj, size_t len, size_t start)
{
	int rc;

	for (;;) {
		if (p->jit[k])
			rc = pcre2_jit_match(p->re[k], (PCRE2_SPTR)subj, len, start, 0, s->md, s->mctx);
		else
			rc = pcre2_match(p->re[k], (PCRE2_SPTR)subj, len, start, PCRE2_NO_UTF_CHECK,
					 s->md, s->mctx);
		if (rc != PCRE2_ERROR_JIT_STACKLIMIT)
			return rc;
		/* Long runs of one class can outgrow the 32 KiB machine stack
		 * JIT code starts with; give it a heap stack, growing up to
		 * 256 MiB, and retry. */
		if (s->jstack_max >= ((size_t)256 << 20))
			return rc;
		s->jstack_max = s->jstack_max ? s->jstack_max * 8 : ((size_t)1 << 20);
		if (s->jstack)
			pcre2_jit_stack_free(s->jstack);
		s->jstack = pcre2_jit_stack_create(32 * 1024, s->jstack_max, NULL);
		if (!s->mctx)
			s->mctx = pcre2_match_context_create(NULL);
		if (!s->jstack || !s->mctx)
			return PCRE2_ERROR_NOMEMORY;
		pcre2_jit_stack_assign(s->mctx, NULL, s->jstack);
	}
}

int pf_tok_pretok_split(const struct pf_tok_pretok *p, struct pf_tok_scratch *s,
			const char *subj, size_t len, size_t *ret_n)
{
	size_t na = 0, nb;
	int r;

	if (len > UINT32_MAX)
		return -E2BIG;
	if (!s->md) {
		s->md = pcre2_match_data_create(2, NULL);
		if (!s->md)
			return -ENOMEM;
	}
	r = push_span(&s->wa, &s->wa_cap, &na, 0, len);
	if (r)
		return r;

	for (int k = 0; k < p->n_re; k++) {
		nb = 0;
		for (size_t w = 0; w < na; w++) {
			const char *base = subj + s->wa[w].off;
			size_t n = s->wa[w].len, start = 0;

			/* The subject is the piece alone, so lookaheads and $
			 * see its end as the end of text, as in llama.cpp. */
			while (start < n) {
				PCRE2_SIZE *ov;
				size_t ms, me;
				int rc = match_once(p, k, s, base, n, start);

				if (rc == PCRE2_ERROR_NOMATCH)
					break;
				if (rc < 0)
					return rc == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -EIO;
				ov = pcre2_get_ovector_pointer(s->md);
				ms = ov[0];
				me = ov[1];
				if (ms > start) {
					r = push_span(&s->wb, &s->wb_cap, &nb, s->wa[w].off + start, ms - start);
					if (r)
						return r;
				}
				if (me == ms) {
					/* none of our patterns matches empty; stay safe
					 * and step over one character if one ever does */
					me = ms + 1;
					while (me < n && ((uint8_t)base[me] & 0xc0) == 0x80)
						me++;
					r = push_span(&s->wb, &s->wb_cap, &nb, s->wa[w].off + ms, me - ms);
				} else {
					r = push_span(&s->wb, &s->wb_cap, &nb, s->wa[w].off + ms, me - ms);
				}
				if (r)
					return r;
				start = me;
			}
			if (start < n) {
				r = push_span(&s->wb, &s->wb_cap, &nb, s->wa[w].off + start, n - start);
				if (r)
					return r;
			}
		}
		/* swap: this stage's output is the next stage's input */
		{
			struct pf_tok_span *tv = s->wa;
			size_t tc = s->wa_cap;
			s->wa = s->wb;
			s->wa_cap = s->wb_cap;
			s->wb = tv;
			s->wb_cap = tc;
			na = nb;
		}
	}
	*ret_n = na;
	return 0;
}
