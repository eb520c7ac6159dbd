/*
 * chat.h — chat templates: a conversation (role, content pairs) to the
 * prompt text the model was trained on.
 *
 * We do not run Jinja.  Models ship a Jinja template in
 * tokenizer.chat_template, but nearly all of them are one of a few
 * families; we recognise the family by distinctive substrings of the
 * template and render it with C code that reproduces, byte for byte, what
 * Hugging Face's apply_chat_template (jinja2 with trim_blocks and
 * lstrip_blocks) produces for plain role/content messages:
 *
 *   chatml   "<|im_start|>" role "\n" content "<|im_end|>\n" per message,
 *            "<|im_start|>assistant\n" as the generation prompt.  When the
 *            template carries a default system message (SmolLM2, Qwen2) it
 *            is put first unless the first message is a system message;
 *            we extract it from the template's string literal.  Templates
 *            with <think> reasoning blocks are refused.
 *   llama3   bos on the first message, "<|start_header_id|>" role
 *            "<|end_header_id|>\n\n" trim(content) "<|eot_id|>"; generation
 *            prompt "<|start_header_id|>assistant<|end_header_id|>\n\n".
 *            Llama 3.1+ templates (date and tool preamble) are refused.
 *   llama2   Llama-2-chat: "<s>[INST] <<SYS>>\n...\n<</SYS>>\n\n..." with
 *            roles that must alternate user/assistant.
 *   mistral  Mistral-7B-Instruct v0.1: bos, "[INST] " content " [/INST]",
 *            assistant content + eos + " "; roles must alternate and only
 *            user/assistant exist.  No generation prompt.
 *
 * Where the Jinja template would call raise_exception(), rendering fails
 * with -EINVAL and the template's message.  An unrecognised template is
 * -ENOTSUP with a message naming the explicit override
 * (pf_chat_from_name).
 *
 * A struct pf_chat is immutable after creation and may be shared between
 * threads.
 */
#ifndef PF_CHAT_H
#define PF_CHAT_H

#include <stdbool.h>
#include <stddef.h>

struct pf_gguf;
struct pf_chat;

enum pf_chat_family {
	PF_CHAT_CHATML = 1,
	PF_CHAT_LLAMA3 = 2,
	PF_CHAT_LLAMA2 = 3,
	PF_CHAT_MISTRAL = 4,
};

/* One message.  Strings are byte ranges (need not be NUL-terminated). */
struct pf_chat_msg {
	const char *role;
	size_t role_len;
	const char *content;
	size_t content_len;
};

/*
 * Recognise the template text `tmpl` (len bytes).  bos / eos: the
 * tokenizer's BOS and EOS texts (NUL-terminated; NULL means "").  Returns 0
 * and a new object in *ret; -ENOTSUP for a template we cannot render (with a
 * message in err), -ENOMEM.
 */
int pf_chat_detect(const char *tmpl, size_t len, const char *bos, const char *eos,
		   struct pf_chat **ret, char *err, size_t errlen);

/*
 * pf_chat_detect() on the GGUF's tokenizer.chat_template, with BOS and EOS
 * texts from tokenizer.ggml.tokens.  -ENOENT when the file has no template.
 */
int pf_chat_from_gguf(const struct pf_gguf *g, struct pf_chat **ret, char *err, size_t errlen);

/*
 * Choose a family by name: "chatml" (no default system message),
 * "smollm2" and "qwen2" (ChatML with that model's default system message),
 * "llama3", "llama2", "mistral".  -ENOTSUP for other names.
 */
int pf_chat_from_name(const char *name, const char *bos, const char *eos,
		      struct pf_chat **ret, char *err, size_t errlen);

/* Free.  Accepts NULL. */
void pf_chat_free(struct pf_chat *c);

/* Family, its name ("chatml", "smollm2", ...) and the default system
 * message (NULL when there is none).  Cannot fail. */
enum pf_chat_family pf_chat_family(const struct pf_chat *c);
const char *pf_chat_name(const struct pf_chat *c);
const char *pf_chat_default_system(const struct pf_chat *c, size_t *ret_len);

/*
 * Render `n` messages (and, if add_generation_prompt, the opening of the
 * assistant's reply) into buf.  Returns 0 with the length in *ret_n;
 * -ENOSPC when cap is too small (*ret_n = length needed, buf unspecified);
 * -EINVAL when the template would raise (message in err, e.g. roles that do
 * not alternate for mistral).  The output is not NUL-terminated.
 */
int pf_chat_render(const struct pf_chat *c, const struct pf_chat_msg *msgs, size_t n,
		   bool add_generation_prompt, char *buf, size_t cap, size_t *ret_n,
		   char *err, size_t errlen);

#endif
