/*
 * tok_detok.c — ids back to text: whole sequences (llama_detokenize()'s
 * rules) and the streaming UTF-8-safe detokenizer.  See tok.h.
 */
#include "runtime/text/tok_impl.h"

#include <errno.h>
#include <string.h>

/* ---- whole sequence ----------------------------------------------------- */

/*
 * llama.cpp's clean_up_tokenization_spaces, three passes in place, kept
 * byte-for-byte: drop a space before ? ! . , ; turn " ' " into "'"; drop a
 * space before 's 'm 're 've.  Pass two writes a NUL over the space it
 * skips, which a later "previous byte" test can see; that is kept too.
 */
static size_t clean_spaces(char *x, size_t n)
{
	size_t total = n, t1, t2, t3;

	t1 = total;
	total = t1 ? 1 : 0;
	for (size_t i = 1; i < t1; i++) {
		char c = x[i];
		if (x[i - 1] == ' ' && (c == '?' || c == '!' || c == '.' || c == ','))
			total--;
		x[total++] = c;
	}

	t2 = total;
	total = t2 ? 1 : 0;
	for (size_t i = 1; i < t2; i++) {
		char c = x[i];
		if (c == '\'' && i + 1 < t2 && x[i - 1] == ' ' && x[i + 1] == ' ') {
			total--;
			x[++i] = '\0';
		}
		x[total++] = c;
	}

	t3 = total;
	total = t3 ? 1 : 0;
	for (size_t i = 1; i < t3; i++) {
		char c = x[i];
		if (x[i - 1] == ' ' && c == '\'' && i + 1 < t3) {
			char c1 = x[i + 1];
			if (c1 == 's' || c1 == 'm') {
				total--;
			} else if (c1 != 't' && c1 != 'd' && i + 2 < t3) {
				char c2 = x[i + 2];
				if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e'))
					total--;
			}
		}
		x[total++] = c;
	}
	return total;
}

int pf_tok_detokenize(const struct pf_tok *t, const int32_t *ids, size_t n,
		      bool remove_special, bool unparse_special,
		      char *buf, size_t cap, size_t *ret_n)
{
	bool strip = t->add_space_prefix;
	size_t total = 0;

	if (!ret_n || (n && !ids) || (cap && !buf))
		return -EINVAL;
	*ret_n = 0;
	for (size_t i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= t->n_vocab)
			return -EINVAL;
	if (remove_special && t->add_bos && n && ids[0] == t->bos) {
		/* llama.cpp keeps the prefix space when it drops the BOS */
		strip = false;
		ids++;
		n--;
	}
	if (remove_special && t->add_eos && n && ids[n - 1] == t->eos)
		n--;

	for (size_t i = 0; i < n; i++) {
		size_t pl;
		const char *p = pf_tok_piece(t, ids[i], unparse_special, &pl);
		/* only the first token loses one leading space */
		if (i == 0 && strip && pl && *p == ' ') {
			p++;
			pl--;
		}
		if (total + pl <= cap && pl)
			memcpy(buf + total, p, pl);
		total += pl;
	}
	*ret_n = total;
	if (total > cap)
		return -ENOSPC;
	if (t->clean_spaces)
		*ret_n = clean_spaces(buf, total);
	return 0;
}

/* ---- streaming ---------------------------------------------------------- */

/* Bytes a well-formed sequence starting with lead byte b has, 0 if b can
 * start none (continuation bytes, C0, C1, F5..FF). */
static inline unsigned seq_len(uint8_t b)
{
	if (b < 0x80)
		return 1;
	if (b >= 0xc2 && b <= 0xdf)
		return 2;
	if (b >= 0xe0 && b <= 0xef)
		return 3;
	if (b >= 0xf0 && b <= 0xf4)
		return 4;
	return 0;
}

/* May b follow lead byte `lead` at position `pos` (1..3)?  The second byte
 * carries the overlong / surrogate / >U+10FFFF exclusions. */
static inline bool cont_ok(uint8_t lead, unsigned pos, uint8_t b)
{
	uint8_t lo = 0x80, hi = 0xbf;

	if (pos == 1) {
		if (lead == 0xe0)
			lo = 0xa0;
		else if (lead == 0xed)
			hi = 0x9f;
		else if (lead == 0xf0)
			lo = 0x90;
		else if (lead == 0xf4)
			hi = 0x8f;
	}
	return b >= lo && b <= hi;
}

static const uint8_t fffd[3] = { 0xef, 0xbf, 0xbd };

/*
 * Run the decoder over `in` starting from the held-back bytes `pend`.
 * Writes the output to `out` when non-NULL (the caller guarantees room)
 * and returns its length; the new held-back bytes go to new_pend.
 */
static size_t feed(const uint8_t *pend, unsigned np, const uint8_t *in, size_t n, bool final,
		   uint8_t *out, uint8_t *new_pend, unsigned *new_np)
{
	uint8_t cur[4];
	unsigned k = np, need = np ? seq_len(pend[0]) : 0;
	size_t o = 0;

	memcpy(cur, pend, np);
	for (size_t i = 0; i < n;) {
		uint8_t b = in[i];

		if (k == 0) {
			unsigned l = seq_len(b);
			i++;
			if (l == 1) {
				if (out)
					out[o] = b;
				o++;
			} else if (l == 0) {
				if (out)
					memcpy(out + o, fffd, 3);
				o += 3;
			} else {
				cur[0] = b;
				k = 1;
				need = l;
			}
			continue;
		}
		if (!cont_ok(cur[0], k, b)) {
			/* the held bytes are a maximal ill-formed subpart: one
			 * U+FFFD, then b is looked at afresh */
			if (out)
				memcpy(out + o, fffd, 3);
			o += 3;
			k = 0;
			continue;
		}
		cur[k++] = b;
		i++;
		if (k == need) {
			if (out)
				memcpy(out + o, cur, k);
			o += k;
			k = 0;
		}
	}
	if (final && k) {
		if (out)
			memcpy(out + o, fffd, 3);
		o += 3;
		k = 0;
	}
	memcpy(new_pend, cur, k);
	*new_np = k;
	return o;
}

size_t pf_detok_max_out(const struct pf_tok *t)
{
	/* every input byte costs at most 3 output bytes, and up to 3 held
	 * bytes come along */
	return 3 * (t->max_piece + 4);
}

void pf_detok_init(struct pf_detok *d, const struct pf_tok *t, bool special)
{
	memset(d, 0, sizeof(*d));
	d->tok = t;
	d->special = special;
}

static int run(struct pf_detok *d, const uint8_t *in, size_t n, bool final,
	       char *buf, size_t cap, size_t *ret_n)
{
	uint8_t np[4];
	unsigned nn;
	size_t need;

	/* the bound avoids a counting pass in the common case */
	if (cap >= 3 * (n + d->n_pend + 1)) {
		need = feed(d->pend, d->n_pend, in, n, final, (uint8_t *)buf, np, &nn);
	} else {
		need = feed(d->pend, d->n_pend, in, n, final, NULL, np, &nn);
		if (need > cap) {
			*ret_n = need;
			return -ENOSPC;
		}
		feed(d->pend, d->n_pend, in, n, final, (uint8_t *)buf, np, &nn);
	}
	memcpy(d->pend, np, nn);
	d->n_pend = (uint8_t)nn;
	*ret_n = need;
	return 0;
}

int pf_detok_push(struct pf_detok *d, int32_t id, char *buf, size_t cap, size_t *ret_n)
{
	size_t pl;
	const char *p;

	*ret_n = 0;
	p = pf_tok_piece(d->tok, id, d->special, &pl);
	if (!p)
		return -EINVAL;
	return run(d, (const uint8_t *)p, pl, false, buf, cap, ret_n);
}

int pf_detok_flush(struct pf_detok *d, char *buf, size_t cap, size_t *ret_n)
{
	*ret_n = 0;
	return run(d, NULL, 0, true, buf, cap, ret_n);
}
