#!/usr/bin/env python3
"""Generate greedy-decoding golden data for SmolLM2-135M-Instruct (Q4_1) from llama.cpp.

Produces:  tests/golden/generation_smollm2.txt

Regenerate (from the repository root; ~4 minutes single-threaded):
    pip install llama-cpp-python==0.3.36 jinja2==3.1.6
    python3 tests/golden/gen_generation.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --text tests/golden/ppl_text.txt \
        --out tests/golden/generation_smollm2.txt

Pinned: llama-cpp-python 0.3.36 (llama.cpp ggml-org/llama.cpp@0c1e57098), CPU build.
Model sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53.

Method:
  * Llama(n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=1 (--threads), logits_all=True,
    flash_attn=False, default f16 KV cache, CPU only).
  * Prompt tokens:
      chat prompts: messages rendered with the GGUF's own chat template
        (tests/golden/smollm2_chat_template.jinja, HF-style jinja2 env, see
        gen_chat.py) with add_generation_prompt=True, then
        llama_tokenize(add_special=True, parse_special=True).  This vocab has
        tokenizer.ggml.add_bos_token=false, so no BOS is prepended.
      raw prompts: plain text, llama_tokenize(add_special=True, parse_special=False).
      long prompts (~1000 tokens): whole lines of tests/golden/ppl_text.txt (the
        GPL-3 + GPL-2 texts), a fixed starting line, lines appended until the
        prompt reaches >= 1000 tokens.  Prompt ids are recorded, so consumers
        never need to re-tokenize.
  * The whole prompt is decoded with Llama.eval() (batches of 512), then each
    step takes the logits of the last position, picks argmax (first index on
    ties, = llama.cpp's greedy sampler), and decodes that one token.  Pure argmax
    of raw logits: no temperature, no repetition penalty, no logit bias.
  * EOS is ignored: exactly 128 tokens are generated for every prompt.
  * margin = top1 logit - top2 logit (float32 logits, difference printed with 4
    decimals) at every generated position.  A pinfer implementation that
    disagrees with llama.cpp only where the margin is tiny is numerically fine.

Output format (ASCII, one record per line):
    # ...  comments (versions, EOS/BOS ids, settings)
    G <name> <prompt ids, comma-separated> <128 generated ids, comma-separated> <128 margins, comma-separated, %.4f>
    K <name> <step> <id>:<logit>,... the 8 largest logits (id:logit with %.4f), best first,
        for steps 0..3 of each prompt (step 0 = the logits after the prompt)
  <name> is [A-Za-z0-9_]+.
"""

import argparse
import datetime
import hashlib
import json
import sys

import numpy as np

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

PINNED = "0.3.36"
N_GEN = 128
N_CTX = 2048
LONG_TARGET = 1000

CHAT_PROMPTS = [
    ("chat_capital", [("user", "What is the capital of France?")]),
    ("chat_haiku", [("user", "Write a haiku about the sea.")]),
    ("chat_recursion", [("user", "Explain recursion in one sentence.")]),
    ("chat_colors", [("user", "List three primary colors.")]),
    ("chat_translate", [("user", "Translate 'good morning' to Spanish.")]),
    ("chat_math", [("user", "What is 12 times 13?")]),
    ("chat_python", [("user", "Write a Python function that reverses a string.")]),
    ("chat_story", [("user", "Tell me a short story about a robot who learns to paint.")]),
    ("chat_system_pirate", [("system", "You are a pirate. Answer like a pirate."),
                            ("user", "How are you today?")]),
    ("chat_multiturn", [("user", "Hi! My name is Ada."),
                        ("assistant", "Hello Ada! How can I help you today?"),
                        ("user", "What is my name?")]),
    ("chat_chinese", [("user", "你好，请介绍一下你自己。")]),
    ("chat_empty_user", [("user", "")]),
    ("chat_json", [("user", "Give me a JSON object with keys name and age.")]),
    ("chat_list", [("system", "Be concise."), ("user", "Name five fruits.")]),
]

RAW_PROMPTS = [
    ("raw_capital", "The capital of France is"),
    ("raw_once", "Once upon a time"),
    ("raw_fib", "def fibonacci(n):\n    "),
    ("raw_count", "1, 2, 3, 4, 5,"),
    ("raw_fox", "The quick brown fox"),
    ("raw_history", "In 1492, Columbus"),
    ("raw_hello", "Hello"),
    ("raw_single_a", "A"),
    ("raw_numpy", "import numpy as np\n"),
    ("raw_json", "{\"name\": \""),
    ("raw_c", "#include <stdio.h>\n\nint main(void)\n{\n"),
    ("raw_recipe", "Ingredients:\n- 2 cups flour\n-"),
    ("raw_question", "Q: What is the boiling point of water?\nA:"),
    ("raw_french", "Il était une fois"),
    ("raw_newlines", "\n\n\n"),
]

# (name, first line index into ppl_text.txt, wrap in chat template?)
LONG_PROMPTS = [
    ("long_gpl3_start", 0, False),
    ("long_gpl3_mid", 300, False),
    ("long_gpl2_start", None, False),   # None: start of the GPL-2 part
    ("long_chat_summarize", 120, True),
]


def compile_template(src):
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(src)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description="greedy generation golden data")
    ap.add_argument("--model", default="/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--text", default="tests/golden/ppl_text.txt")
    ap.add_argument("--out", default="tests/golden/generation_smollm2.txt")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama
    if llama_cpp.__version__ != PINNED:
        sys.exit(f"llama-cpp-python {PINNED} required, found {llama_cpp.__version__}")

    llm = Llama(model_path=args.model, n_ctx=N_CTX, n_batch=512, n_ubatch=512,
                n_threads=args.threads, n_threads_batch=args.threads, logits_all=True,
                flash_attn=False, n_gpu_layers=0, verbose=False)
    vocab = llm._model.vocab
    bos = llama_cpp.llama_vocab_bos(vocab)
    eos = llama_cpp.llama_vocab_eos(vocab)
    eot = llama_cpp.llama_vocab_eot(vocab)
    add_bos = llama_cpp.llama_vocab_get_add_bos(vocab)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    tmpl = compile_template(llm.metadata["tokenizer.chat_template"])
    tok_text = lambda s: llm.tokenize(s.encode("utf-8"), add_bos=True, special=False)

    def chat_ids(msgs):
        text = tmpl.render(messages=[{"role": r, "content": c} for r, c in msgs],
                           add_generation_prompt=True, tools=None, documents=None,
                           bos_token=llama_cpp.llama_vocab_get_text(vocab, bos).decode(),
                           eos_token=llama_cpp.llama_vocab_get_text(vocab, eos).decode())
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    with open(args.text, encoding="utf-8") as f:
        text_lines = f.read().split("\n")
    gpl2_start = next(i for i, l in enumerate(text_lines) if "Version 2, June 1991" in l) - 1

    def long_text(start):
        out = ""
        i = start
        while True:
            out += text_lines[i] + "\n"
            i += 1
            if len(tok_text(out)) >= LONG_TARGET:
                return out

    prompts = []
    for name, msgs in CHAT_PROMPTS:
        prompts.append((name, chat_ids(msgs)))
    for name, s in RAW_PROMPTS:
        prompts.append((name, tok_text(s)))
    for name, start, chat in LONG_PROMPTS:
        if start is None:
            start = gpl2_start
        body = long_text(start)
        if chat:
            ids = chat_ids([("user", "Summarize the following text:\n\n" + body)])
        else:
            ids = tok_text(body)
        prompts.append((name, ids))

    lines = []
    L = lines.append
    L("# pinfer greedy-generation golden data -- generated by tests/golden/gen_generation.py")
    L(f"# llama-cpp-python {llama_cpp.__version__} (llama.cpp ggml-org/llama.cpp@0c1e57098), CPU, "
      f"n_threads {args.threads}, flash_attn off, KV cache f16")
    L(f"# generated {datetime.date.today().isoformat()}")
    L(f"# model SmolLM2-135M-Instruct.Q4_1.gguf sha256 {sha256_file(args.model)}")
    L(f"# text {args.text} sha256 {sha256_file(args.text)}")
    L(f"# n_vocab {n_vocab} bos {bos} eos {eos} eot {eot} eog {','.join(map(str, eog))} add_bos {int(add_bos)}")
    L(f"# n_ctx {N_CTX} n_batch 512 n_gen {N_GEN}; greedy argmax of raw logits; EOS/EOG ignored (always {N_GEN} tokens)")
    L("# G <name> <prompt ids,> <generated ids,> <margins top1-top2,>")
    L("# K <name> <step> <id:logit,> (8 largest logits at that step, best first)")

    for name, ids in prompts:
        assert len(ids) + N_GEN <= N_CTX, name
        llm.reset()
        llm.eval(ids)
        gen, margins, topk = [], [], []
        for step in range(N_GEN):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            best = int(np.argmax(logits))
            order = np.argsort(-logits, kind="stable")
            second = float(logits[order[1]]) if int(order[0]) == best else float(logits[order[0]])
            margins.append(float(logits[best]) - second)
            if step < 4:
                topk.append([(int(i), float(logits[i])) for i in order[:8]])
            gen.append(best)
            llm.eval([best])
        L(f"G {name} {','.join(map(str, ids))} {','.join(map(str, gen))} "
          + ",".join(f"{m:.4f}" for m in margins))
        for step, tk in enumerate(topk):
            L(f"K {name} {step} " + ",".join(f"{i}:{v:.4f}" for i, v in tk))
        text = llm.detokenize(gen).decode("utf-8", "replace")
        print(f"{name}: {len(ids)} prompt tokens, min margin {min(margins):.4f}: {text[:70]!r}",
              file=sys.stderr)

    out = "\n".join(lines) + "\n"
    out.encode("ascii")
    with open(args.out, "w") as f:
        f.write(out)
    print(f"{len(prompts)} prompts -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
