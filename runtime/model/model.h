/*
 * model.h — a llama-family model loaded from a GGUF file.
 *
 * pf_model_load() reads the hyper-parameters from the GGUF metadata, finds
 * every tensor the graph needs, and checks each one's type and shape before
 * anything runs, so a wrong or unsupported file fails at load with a message
 * naming the tensor ("blk.3.attn_q.weight has type Q5_K, which ...") rather
 * than producing garbage.  Weights stay in the file mapping (zero copy); the
 * model owns the mapping through its struct pf_gguf.
 *
 * Supported: general.architecture "llama" (Llama 2/3, SmolLM, Mistral without
 * sliding window) and "qwen2"; weights F32, F16, BF16, Q8_0, Q4_0, Q4_1,
 * Q4_K, Q6_K; tied embeddings (no output.weight).
 */
#ifndef PF_MODEL_H
#define PF_MODEL_H

#include <stddef.h>

#include "kernels/backend.h"
#include "runtime/model/gguf.h"

struct pf_model {
	struct pf_gguf *gguf;
	struct pf_model_weights w;
	char arch_name[32];
	char name[128];
};

/* Open `path` and load the model.  Returns 0 and *ret, or a negative errno
 * with a one-line message in err (-ENOENT, -EINVAL for a malformed file,
 * -ENOTSUP for an unsupported architecture or tensor type, -ENOMEM). */
int pf_model_load(const char *path, struct pf_model **ret, char *err, size_t errlen);

/* Same, from an already open GGUF, which the model takes ownership of on success. */
int pf_model_from_gguf(struct pf_gguf *g, struct pf_model **ret, char *err, size_t errlen);

/* Accepts NULL. */
void pf_model_free(struct pf_model *m);

#endif
