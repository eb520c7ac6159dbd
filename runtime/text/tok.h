/*
 * tok.h — the tokenizer: text <-> token ids, built from GGUF metadata alone.
 *
 * Two vocabulary kinds are supported, chosen by tokenizer.ggml.model:
 *
 *   "gpt2"   byte-level BPE.  Text is split into words by the pre-tokenizer
 *            regexes that tokenizer.ggml.pre names (PCRE2, JIT), each word's
 *            bytes are mapped to GPT-2's printable stand-in characters, and
 *            adjacent symbols are merged lowest merge rank first (ties: the
 *            leftmost pair) until no listed merge applies.
 *   "llama"  SentencePiece-style.  Spaces become U+2581, a space is prefixed
 *            per tokenizer.ggml.add_space_prefix, adjacent symbols are merged
 *            highest token score first (ties: leftmost), and whatever does
 *            not end up as a vocabulary entry falls back to <0xXX> tokens.
 *
 * The reference is llama.cpp as vendored by llama-cpp-python 0.3.36: for
 * every input we aim to produce exactly the ids llama_tokenize() produces,
 * including its treatment of invalid UTF-8 in BPE vocabularies (each byte
 * that does not start a well-formed sequence becomes U+FFFD before
 * pre-tokenization; overlong forms and surrogates are decoded arithmetically
 * and re-encoded) and its special-token partitioning (token texts matched
 * longest first, CONTROL/UNKNOWN only with parse_special, USER_DEFINED
 * always).  Known deviations are listed in tok_impl.h.
 *
 * Lifetime and threads: pf_tok_load() copies everything it needs out of the
 * GGUF, so the file may be closed afterwards.  A loaded struct pf_tok is
 * immutable; every function taking a const pointer may be called from any
 * number of threads at once (scratch memory is per call).  A struct
 * pf_detok belongs to one sequence and one thread.
 *
 * Ids are int32_t like the engine's token buffers; "no such token" is -1.
 */
#ifndef PF_TOK_H
#define PF_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pf_gguf;
struct pf_tok;

/* Token attributes; the bit values are llama.cpp's llama_token_attr so that
 * golden files written from llama.cpp can be compared directly. */
enum pf_tok_attr {
	PF_TOK_ATTR_UNDEFINED    = 0,
	PF_TOK_ATTR_UNKNOWN      = 1 << 0,
	PF_TOK_ATTR_UNUSED       = 1 << 1,
	PF_TOK_ATTR_NORMAL       = 1 << 2,
	PF_TOK_ATTR_CONTROL      = 1 << 3,
	PF_TOK_ATTR_USER_DEFINED = 1 << 4,
	PF_TOK_ATTR_BYTE         = 1 << 5,
	PF_TOK_ATTR_NORMALIZED   = 1 << 6,
	PF_TOK_ATTR_LSTRIP       = 1 << 7,
	PF_TOK_ATTR_RSTRIP       = 1 << 8,
	PF_TOK_ATTR_SINGLE_WORD  = 1 << 9,
};

enum pf_tok_kind {
	PF_TOK_BPE = 1,  /* tokenizer.ggml.model "gpt2" */
	PF_TOK_SPM = 2,  /* tokenizer.ggml.model "llama" */
};

/*
 * Build a tokenizer from the tokenizer.* metadata of `g`.  Returns 0 and
 * stores a new object in *ret, or a negative errno with a one-line message
 * in `err` (when non-NULL): -ENOENT when a required key is missing,
 * -ENOTSUP for an unsupported tokenizer.ggml.model or tokenizer.ggml.pre,
 * -EINVAL for malformed arrays, -ENOMEM.
 */
int pf_tok_load(const struct pf_gguf *g, struct pf_tok **ret, char *err, size_t errlen);

/* Free a tokenizer.  Accepts NULL. */
void pf_tok_free(struct pf_tok *t);

/*
 * Tokenize `len` bytes of `text` (any bytes; need not be NUL-terminated or
 * valid UTF-8).  add_special: prepend BOS / append EOS as the model's
 * add_bos_token / add_eos_token say.  parse_special: match CONTROL tokens'
 * texts (e.g. "<|im_start|>") in the input; USER_DEFINED tokens are matched
 * either way, as in llama.cpp.
 *
 * Writes at most `cap` ids to `out` (which may be NULL when cap is 0) and
 * the total number in *ret_n.  Returns 0, or -ENOSPC when the ids did not
 * fit (*ret_n is then the number needed and `out` holds the first `cap`),
 * -ENOMEM, -E2BIG for texts over 1 GiB, -EIO if PCRE2 gives up on a match
 * (its match limit; not seen with the shipped patterns), or -EINVAL for bad
 * arguments.  Cost is linear in the text except for the merges inside one
 * pre-tokenized word, which are O(n log n) in its length.
 */
int pf_tok_encode(const struct pf_tok *t, const char *text, size_t len,
		  bool add_special, bool parse_special,
		  int32_t *out, size_t cap, size_t *ret_n);

/*
 * The bytes one token stands for, without copying: a pointer into the
 * tokenizer (valid until pf_tok_free) and its length in *ret_len.  CONTROL
 * and UNKNOWN tokens render as empty unless `special`; USER_DEFINED tokens
 * always render as their text.  Returns NULL (and *ret_len = 0) for an id
 * out of range.  Cannot fail otherwise.
 */
const char *pf_tok_piece(const struct pf_tok *t, int32_t id, bool special, size_t *ret_len);

/*
 * Copying form of pf_tok_piece().  Returns 0 with the length in *ret_n,
 * -EINVAL for an id out of range, or -ENOSPC when `cap` is too small
 * (*ret_n is then the length needed; nothing is written).
 */
int pf_tok_token_to_piece(const struct pf_tok *t, int32_t id, bool special,
			  char *buf, size_t cap, size_t *ret_n);

/*
 * Detokenize a whole sequence the way llama_detokenize() does:
 * remove_special drops a leading BOS / trailing EOS when the model adds
 * them; unparse_special renders CONTROL tokens' texts; SPM vocabularies
 * drop the space added by add_space_prefix; vocabularies whose
 * pre-tokenizer asks for it get llama.cpp's clean-up of " ." " ," " 's"...
 * Returns 0 with the length in *ret_n, -EINVAL for an id out of range
 * (nothing useful is written), or -ENOSPC with the length needed.
 * The output is not NUL-terminated and may be invalid UTF-8 (a token can
 * end in the middle of a character); see struct pf_detok for streaming.
 */
int pf_tok_detokenize(const struct pf_tok *t, const int32_t *ids, size_t n,
		      bool remove_special, bool unparse_special,
		      char *buf, size_t cap, size_t *ret_n);

/* Vocabulary facts.  None of these can fail; ids that do not exist are -1. */
enum pf_tok_kind pf_tok_kind(const struct pf_tok *t);
const char *pf_tok_pre_name(const struct pf_tok *t);  /* "smollm", "llama3", "" for SPM */
int32_t pf_tok_n_vocab(const struct pf_tok *t);
int32_t pf_tok_bos(const struct pf_tok *t);
int32_t pf_tok_eos(const struct pf_tok *t);
int32_t pf_tok_eot(const struct pf_tok *t);   /* end of turn, e.g. <|im_end|>; may equal eos */
bool pf_tok_add_bos(const struct pf_tok *t);
bool pf_tok_add_eos(const struct pf_tok *t);

/* True when generating `id` ends the sequence (eos, eot, eom and the tokens
 * llama.cpp marks end-of-generation by their text).  False for ids out of
 * range. */
bool pf_tok_is_eog(const struct pf_tok *t, int32_t id);

/* enum pf_tok_attr bits of `id`, 0 for ids out of range. */
uint32_t pf_tok_attr(const struct pf_tok *t, int32_t id);

/* The vocabulary text of `id` (GPT-2 stand-in characters, U+2581 ...) and
 * its length, or NULL for ids out of range. */
const char *pf_tok_text(const struct pf_tok *t, int32_t id, size_t *ret_len);

/* The id whose vocabulary text is exactly `text`, or -ENOENT. */
int32_t pf_tok_find(const struct pf_tok *t, const char *text, size_t len);

/* The longest piece any token renders to (special or not), in bytes: an
 * upper bound callers can size buffers with.  Cannot fail. */
size_t pf_tok_max_piece(const struct pf_tok *t);

/*
 * Streaming detokenizer: one per sequence.  Feed generated ids one at a
 * time; each call emits only complete, well-formed UTF-8.  Bytes that may
 * still become a character are held back (at most 3); bytes that can no
 * longer become one are emitted as U+FFFD, one per maximal ill-formed
 * subpart (the Unicode / WHATWG convention, which is also Python's
 * errors="replace").  pf_detok_flush() ends the sequence: whatever is held
 * back becomes U+FFFD.  The concatenation of all outputs equals the
 * replacement-decoded concatenation of the pieces.
 *
 *   init ──push*──► (pending 0..3 bytes) ──flush──► empty (reusable)
 *
 * The state is plain data: no allocation, nothing to free.
 */
struct pf_detok {
	const struct pf_tok *tok;
	bool special;         /* render CONTROL tokens */
	uint8_t n_pend;       /* held-back bytes of an incomplete character */
	uint8_t pend[4];
};

/* Output bytes a single pf_detok_push() or pf_detok_flush() can produce at
 * most; a buffer this large never yields -ENOSPC.  Cannot fail. */
size_t pf_detok_max_out(const struct pf_tok *t);

/* Start a sequence.  Cannot fail. */
void pf_detok_init(struct pf_detok *d, const struct pf_tok *t, bool special);

/*
 * Add token `id`.  Writes the newly completed text to `buf` and its length
 * to *ret_n.  Returns 0, -EINVAL for an id out of range (state unchanged),
 * or -ENOSPC when `cap` is too small (*ret_n = bytes needed, state
 * unchanged, so the call can be repeated with a larger buffer).
 */
int pf_detok_push(struct pf_detok *d, int32_t id, char *buf, size_t cap, size_t *ret_n);

/* End the sequence: held-back bytes are always the valid start of one
 * character, so they become a single U+FFFD (3 bytes).  Same returns as
 * pf_detok_push(); afterwards the state is as after pf_detok_init(). */
int pf_detok_flush(struct pf_detok *d, char *buf, size_t cap, size_t *ret_n);

#endif
