/*
 * pinfer-tokenize — look at what the tokenizer and chat template do with a
 * piece of text, using nothing but the model file.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/chat.h"
#include "runtime/model/gguf.h"
#include "runtime/text/tok.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinfer-tokenize --model PATH [options] [TEXT]\n"
		"\n"
		"Tokenize TEXT (or standard input) with the model's own tokenizer and print\n"
		"each token's id and the bytes it stands for.\n"
		"\n"
		"  -m, --model PATH      the GGUF file\n"
		"  -s, --special         match special-token texts (<|im_start|> ...) in TEXT\n"
		"      --no-bos          do not add BOS/EOS even where the model asks for them\n"
		"  -c, --chat            render TEXT as a user message through the model's chat\n"
		"                        template first (implies --special)\n"
		"      --system TEXT     with --chat: put a system message first\n"
		"      --template NAME   with --chat: use chatml, smollm2, qwen2, llama3, llama2\n"
		"                        or mistral instead of the model's template\n"
		"  -i, --ids             print only the ids, space-separated\n"
		"  -d, --decode          TEXT is a list of ids: print the text they decode to\n"
		"  -f, --file PATH       read TEXT from PATH ('-' for standard input)\n"
		"      --hex-lines       batch mode for tests: each input line is\n"
		"                        \"ADD_SPECIAL PARSE_SPECIAL HEX\" (HEX '-' for empty);\n"
		"                        print each line's ids ('-' for none)\n"
		"  -h, --help            this text\n"
		"\n"
		"Exit status: 0 on success, 1 on errors, 2 on usage errors.\n");
}

static char *read_all(FILE *fp, size_t *ret_len)
{
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);

	while (b) {
		size_t got = fread(b + n, 1, cap - n, fp);
		n += got;
		if (n < cap) {
			if (ferror(fp)) {
				free(b);
				return NULL;
			}
			*ret_len = n;
			return b;
		}
		{
			char *nb = realloc(b, cap * 2);
			if (!nb)
				free(b);
			b = nb;
			cap *= 2;
		}
	}
	return NULL;
}

/* Does p[0..n) consist of whole, well-formed UTF-8 characters? */
static bool whole_utf8(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t l = p[i] < 0x80 ? 1 : (p[i] >= 0xc2 && p[i] <= 0xdf) ? 2 :
			   (p[i] & 0xf0) == 0xe0 ? 3 : (p[i] >= 0xf0 && p[i] <= 0xf4) ? 4 : 0;
		if (!l || i + l > n)
			return false;
		for (size_t k = 1; k < l; k++)
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
		i += l;
	}
	return true;
}

/* A piece in quotes; a piece that cuts a character apart (byte tokens)
 * shows its non-ASCII bytes as \xNN instead of mojibake. */
static void print_piece(const char *p, size_t n)
{
	bool raw = whole_utf8((const unsigned char *)p, n);

	putchar('\'');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c == '\r')
			fputs("\\r", stdout);
		else if (c == '\\' || c == '\'')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !raw))
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('\'');
}

static int encode_vec(const struct pf_tok *t, const char *s, size_t len, bool add, bool parse,
		      int32_t **ret, size_t *ret_n)
{
	size_t n = 0;
	int r = pf_tok_encode(t, s, len, add, parse, NULL, 0, &n);

	if (r && r != -ENOSPC)
		return r;
	*ret = malloc((n + 1) * sizeof(**ret));
	if (!*ret)
		return -ENOMEM;
	return pf_tok_encode(t, s, len, add, parse, *ret, n, ret_n);
}

static int hex_lines(const struct pf_tok *t)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;

	while ((len = getline(&line, &cap, stdin)) >= 0) {
		int a = 0, p = 0;
		size_t bl = 0, n = 0;
		char *b, *h;
		int32_t *ids = NULL;

		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (sscanf(line, "%d %d", &a, &p) != 2 || !(h = strchr(line, ' ')) || !(h = strchr(h + 1, ' '))) {
			fprintf(stderr, "pinfer-tokenize: bad line: %.60s\n", line);
			rc = 1;
			break;
		}
		h++;
		b = malloc(strlen(h) / 2 + 1);
		if (!b) {
			rc = 1;
			break;
		}
		if (strcmp(h, "-")) {
			for (; h[0] && h[1]; h += 2) {
				unsigned v;
				sscanf(h, "%2x", &v);
				b[bl++] = (char)v;
			}
		}
		if (encode_vec(t, b, bl, a, p, &ids, &n)) {
			printf("ERROR\n");
		} else if (!n) {
			printf("-\n");
		} else {
			for (size_t i = 0; i < n; i++)
				printf("%s%d", i ? " " : "", ids[i]);
			putchar('\n');
		}
		free(ids);
		free(b);
	}
	free(line);
	return rc;
}

int main(int argc, char **argv)
{
	enum { OPT_NO_BOS = 256, OPT_SYSTEM, OPT_TEMPLATE, OPT_HEX };
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "special", no_argument, NULL, 's' },
		{ "no-bos", no_argument, NULL, OPT_NO_BOS },
		{ "chat", no_argument, NULL, 'c' },
		{ "system", required_argument, NULL, OPT_SYSTEM },
		{ "template", required_argument, NULL, OPT_TEMPLATE },
		{ "ids", no_argument, NULL, 'i' },
		{ "decode", no_argument, NULL, 'd' },
		{ "file", required_argument, NULL, 'f' },
		{ "hex-lines", no_argument, NULL, OPT_HEX },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *model = NULL, *file = NULL, *system = NULL, *tmpl_name = NULL;
	bool special = false, add = true, chat = false, ids_only = false, decode = false, hex = false;
	struct pf_gguf *g = NULL;
	struct pf_tok *t = NULL;
	struct pf_chat *ch = NULL;
	char err[512] = "";
	char *text = NULL, *prompt = NULL;
	size_t text_len = 0;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	int c, r, rc = 1;

	while ((c = getopt_long(argc, argv, "m:scidf:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': model = optarg; break;
		case 's': special = true; break;
		case OPT_NO_BOS: add = false; break;
		case 'c': chat = true; special = true; break;
		case OPT_SYSTEM: system = optarg; break;
		case OPT_TEMPLATE: tmpl_name = optarg; break;
		case 'i': ids_only = true; break;
		case 'd': decode = true; break;
		case 'f': file = optarg; break;
		case OPT_HEX: hex = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!model && optind < argc && !file && argc - optind == 2)
		model = argv[optind++];
	if (!model || (optind < argc && file) || argc - optind > 1 || (hex && (chat || decode))) {
		usage(stderr);
		return 2;
	}

	r = pf_gguf_open(model, &g, err, sizeof(err));
	if (r) {
		fprintf(stderr, "pinfer-tokenize: %s\n", err);
		return 1;
	}
	r = pf_tok_load(g, &t, err, sizeof(err));
	if (r) {
		fprintf(stderr, "pinfer-tokenize: %s: %s\n", model, err);
		goto out;
	}
	if (hex) {
		rc = hex_lines(t);
		goto out;
	}

	if (optind < argc) {
		text_len = strlen(argv[optind]);
		text = malloc(text_len + 1);
		if (text)
			memcpy(text, argv[optind], text_len + 1);
	} else {
		FILE *fp = !file || strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
		if (!fp) {
			fprintf(stderr, "pinfer-tokenize: %s: %s\n", file, strerror(errno));
			goto out;
		}
		text = read_all(fp, &text_len);
		if (fp != stdin)
			fclose(fp);
	}
	if (!text) {
		fprintf(stderr, "pinfer-tokenize: out of memory or read error\n");
		goto out;
	}

	if (decode) {
		size_t cap = 16, n = 0, out_n = 0;
		int32_t *v = malloc(cap * sizeof(*v));
		char *buf = NULL;
		for (char *p = text; v && *p;) {
			char *e;
			long id = strtol(p, &e, 10);
			if (e == p) {
				p++;
				continue;
			}
			if (n == cap) {
				int32_t *nv = realloc(v, 2 * cap * sizeof(*v));
				if (!nv)
					break;
				v = nv;
				cap *= 2;
			}
			v[n++] = (int32_t)id;
			p = e;
		}
		r = v ? pf_tok_detokenize(t, v, n, false, special, NULL, 0, &out_n) : -ENOMEM;
		if (r == -ENOSPC || r == 0) {
			buf = malloc(out_n + 1);
			r = buf ? pf_tok_detokenize(t, v, n, false, special, buf, out_n, &out_n) : -ENOMEM;
		}
		if (r) {
			fprintf(stderr, "pinfer-tokenize: decode: %s\n", r == -EINVAL ? "id out of range" : strerror(-r));
		} else {
			fwrite(buf, 1, out_n, stdout);
			putchar('\n');
			rc = 0;
		}
		free(v);
		free(buf);
		goto out;
	}

	if (chat) {
		struct pf_chat_msg m[2];
		size_t nm = 0, need = 0;

		if (tmpl_name) {
			size_t bl = 0, el = 0;
			const char *b = pf_tok_text(t, pf_tok_bos(t), &bl), *e = pf_tok_text(t, pf_tok_eos(t), &el);
			char *bz = strndup(b ? b : "", bl), *ez = strndup(e ? e : "", el);
			r = bz && ez ? pf_chat_from_name(tmpl_name, bz, ez, &ch, err, sizeof(err)) : -ENOMEM;
			free(bz);
			free(ez);
		} else {
			r = pf_chat_from_gguf(g, &ch, err, sizeof(err));
		}
		if (r) {
			fprintf(stderr, "pinfer-tokenize: chat template: %s\n", err[0] ? err : strerror(-r));
			goto out;
		}
		if (system)
			m[nm++] = (struct pf_chat_msg){ "system", 6, system, strlen(system) };
		m[nm++] = (struct pf_chat_msg){ "user", 4, text, text_len };
		r = pf_chat_render(ch, m, nm, true, NULL, 0, &need, err, sizeof(err));
		if (r == 0 || r == -ENOSPC) {
			prompt = malloc(need + 1);
			r = prompt ? pf_chat_render(ch, m, nm, true, prompt, need, &need, err, sizeof(err)) : -ENOMEM;
		}
		if (r) {
			fprintf(stderr, "pinfer-tokenize: rendering (%s): %s\n", pf_chat_name(ch),
				err[0] ? err : strerror(-r));
			goto out;
		}
		free(text);
		text = prompt;
		prompt = NULL;
		text_len = need;
		if (!ids_only) {
			printf("template %s, prompt:\n", pf_chat_name(ch));
			fwrite(text, 1, text_len, stdout);
			printf("\n---\n");
		}
	}

	r = encode_vec(t, text, text_len, add, special, &ids, &n_ids);
	if (r) {
		fprintf(stderr, "pinfer-tokenize: tokenize: %s\n", strerror(-r));
		goto out;
	}
	if (ids_only) {
		for (size_t i = 0; i < n_ids; i++)
			printf("%s%d", i ? " " : "", ids[i]);
		putchar('\n');
	} else {
		for (size_t i = 0; i < n_ids; i++) {
			size_t pl;
			const char *p = pf_tok_piece(t, ids[i], true, &pl);
			printf("%8d  ", ids[i]);
			print_piece(p, pl);
			if (pf_tok_attr(t, ids[i]) & PF_TOK_ATTR_CONTROL)
				fputs("  (control)", stdout);
			putchar('\n');
		}
		printf("%zu tokens, %zu bytes\n", n_ids, text_len);
	}
	rc = 0;
out:
	free(ids);
	free(text);
	free(prompt);
	pf_chat_free(ch);
	pf_tok_free(t);
	pf_gguf_close(g);
	return rc;
}
