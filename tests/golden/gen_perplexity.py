#!/usr/bin/env python3
"""Reproduce `llama-perplexity -c 512` for SmolLM2-135M-Instruct (Q4_1) with llama.cpp.

Produces:  tests/golden/perplexity_smollm2.txt
Input:     tests/golden/ppl_text.txt  (committed; it is exactly
           `cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/GPL-2`
           from Debian base-files, sha256 66238ec9...1dc19, 53241 bytes)

Regenerate (from the repository root; ~5-10 minutes: two passes, single-threaded):
    pip install llama-cpp-python==0.3.36
    python3 tests/golden/gen_perplexity.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --text tests/golden/ppl_text.txt \
        --out tests/golden/perplexity_smollm2.txt

Pinned: llama-cpp-python 0.3.36 (llama.cpp ggml-org/llama.cpp@0c1e57098), CPU build.
Model sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53.

The algorithm is perplexity() in vendor/llama.cpp/tools/perplexity/perplexity.cpp
of that version, default options (no --ppl-stride, no --kl-divergence):
  1. text = file contents; ONE trailing '\\n' is removed (common/arg.cpp, -f).
  2. tokens = common_tokenize(ctx, text, add_special=true, parse_special=false)
     -> BOS only if the vocab's add_bos flag is set (it is NOT for this GGUF:
     tokenizer.ggml.add_bos_token = false, so no BOS anywhere below).
  3. n_chunk = len(tokens) // n_ctx (needs >= 2*n_ctx tokens); chunk i is
     tokens[i*n_ctx : (i+1)*n_ctx], non-overlapping; the tail is dropped.
  4. per chunk: fresh KV cache; if add_bos, the chunk's FIRST token is replaced
     by BOS (replaced, not prepended); positions 0..n_ctx-1.
  5. first = n_ctx/2; for j in [first, n_ctx-2]: logits of position j (float32)
     score token j+1:  nll_j = -(logit[t] - max - log(sum_k expf(logit[k] - max)))
     with max in float, expf in float, the sum in double, log in double.
     So n_ctx - first - 1 = 255 tokens are scored per chunk (not 256).
  6. ppl = exp(sum of all nll / count), count = n_chunk * (n_ctx - first - 1).
  llama-perplexity itself batches 4 chunks as 4 sequences in one 2048-token
  context (n_batch 2048 / n_ctx 512); here each chunk is one llama_decode of
  512 tokens in a 512-context (identical math, sequences are independent;
  differences are float-rounding only).  f16 KV cache; PPL with flash_attn
  off, PPLFA with flash_attn on.

Output format (ASCII, one record per line):
    # ...                       comments
    P n_ctx <n>                 context size per chunk (512)
    P add_bos <0|1> bos <id>    whether BOS replaced the first token of each chunk
    P n_tokens <n>              number of token ids of the whole text
    P n_chunks <n>
    P first <n>                 n_ctx/2: first position whose logits are used
    TOK <offset> <ids, comma-separated>   the token ids of the text, 512 per line;
                                <offset> is the index of the first id on the line
    CHUNK <i> <nll_sum %.9f> <n_scored> <running_ppl %.6f>
                                nll_sum = sum over the chunk's 255 scored tokens;
                                running_ppl = exp(total nll / total count) so far,
                                as llama-perplexity prints it ("[i]ppl,")
    PPL <ppl %.6f> <mean_nll %.9f> <count>
    CHUNKFA ... / PPLFA ...     the same, computed with flash attention ON.
                                llama-perplexity's default (-fa auto) resolves to
                                ON for the CPU backend, so PPLFA is the number the
                                stock tool prints; PPL (flash attention off: plain
                                softmax(QK^T)V, f32 scores) is the closer reference
                                for a straightforward implementation.  They differ
                                by ~0.06% (f16 accumulation inside ggml's CPU FA).
  Cross-checked: a C program doing exactly what perplexity.cpp does (4 chunks
  per llama_decode in a 2048 context) against the same libllama reproduced
  PPL (fa off) and PPLFA (fa auto) to all printed digits.
"""

import argparse
import datetime
import hashlib
import math
import sys

import numpy as np

PINNED = "0.3.36"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def nll_of(logits, tok):
    """-log_softmax(logits)[tok] exactly as perplexity.cpp log_softmax()."""
    logits = logits.astype(np.float32, copy=False)
    mx = np.float32(logits.max())
    e = np.exp(logits - mx, dtype=np.float32)          # expf(logit - max), float
    s = math.fsum(e.astype(np.float64).tolist())        # double accumulation
    return -(float(np.float32(logits[tok] - mx)) - math.log(s))


def main():
    ap = argparse.ArgumentParser(description="llama-perplexity reproduction")
    ap.add_argument("--model", default="/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--text", default="tests/golden/ppl_text.txt")
    ap.add_argument("--out", default="tests/golden/perplexity_smollm2.txt")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama
    if llama_cpp.__version__ != PINNED:
        sys.exit(f"llama-cpp-python {PINNED} required, found {llama_cpp.__version__}")

    n_ctx = args.n_ctx
    llm = Llama(model_path=args.model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                n_threads=args.threads, n_threads_batch=args.threads, logits_all=True,
                flash_attn=False, n_gpu_layers=0, verbose=False)
    vocab = llm._model.vocab
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    assert not llama_cpp.llama_vocab_get_add_eos(vocab)
    bos = llama_cpp.llama_vocab_bos(vocab)

    with open(args.text, "rb") as f:
        text = f.read()
    if text.endswith(b"\n"):
        text = text[:-1]
    tokens = llm.tokenize(text, add_bos=True, special=False)
    n_chunk = len(tokens) // n_ctx
    assert len(tokens) >= 2 * n_ctx
    first = n_ctx // 2

    lines = []
    L = lines.append
    L("# pinfer perplexity golden data -- generated by tests/golden/gen_perplexity.py")
    L(f"# reproduces `llama-perplexity -m MODEL -f ppl_text.txt -c {n_ctx}` of llama.cpp@0c1e57098")
    L(f"# llama-cpp-python {llama_cpp.__version__}, CPU, n_threads {args.threads}, KV cache f16; CHUNK/PPL flash_attn off")
    L(f"# generated {datetime.date.today().isoformat()}")
    L(f"# model SmolLM2-135M-Instruct.Q4_1.gguf sha256 {sha256_file(args.model)}")
    L(f"# text {args.text} sha256 {sha256_file(args.text)} (one trailing newline stripped before tokenizing)")
    L("# records: P key value | TOK offset ids | CHUNK i nll_sum n_scored running_ppl | PPL ppl mean_nll count")
    L("# CHUNKFA/PPLFA: same with flash attention on (= llama-perplexity default -fa auto on CPU)")
    L(f"P n_ctx {n_ctx}")
    L(f"P add_bos {int(add_bos)} bos {bos}")
    L(f"P n_tokens {len(tokens)}")
    L(f"P n_chunks {n_chunk}")
    L(f"P first {first}")
    for off in range(0, len(tokens), 512):
        L(f"TOK {off} " + ",".join(map(str, tokens[off:off + 512])))

    def run(llm, tag):
        nll_total = 0.0
        count = 0
        for i in range(n_chunk):
            chunk = list(tokens[i * n_ctx:(i + 1) * n_ctx])
            if add_bos:
                chunk[0] = bos
            llm.reset()
            llm.eval(chunk)
            scores = llm.scores
            s = 0.0
            for j in range(first, n_ctx - 1):
                s += nll_of(np.asarray(scores[j]), tokens[i * n_ctx + j + 1])
            nll_total += s
            count += n_ctx - first - 1
            L(f"CHUNK{tag} {i} {s:.9f} {n_ctx - first - 1} {math.exp(nll_total / count):.6f}")
            print(f"{tag}[{i + 1}]{math.exp(nll_total / count):.4f}", file=sys.stderr, flush=True)
        ppl = math.exp(nll_total / count)
        L(f"PPL{tag} {ppl:.6f} {nll_total / count:.9f} {count}")
        return ppl

    ppl = run(llm, "")
    del llm
    llm_fa = Llama(model_path=args.model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                   n_threads=args.threads, n_threads_batch=args.threads, logits_all=True,
                   flash_attn=True, n_gpu_layers=0, verbose=False)
    ppl_fa = run(llm_fa, "FA")

    out = "\n".join(lines) + "\n"
    out.encode("ascii")
    with open(args.out, "w") as f:
        f.write(out)
    print(f"perplexity {ppl:.4f} (flash-attn: {ppl_fa:.4f}) over {n_chunk} chunks ({len(tokens)} tokens) -> {args.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
