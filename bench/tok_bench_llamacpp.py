#!/usr/bin/env python3
"""llama.cpp's tokenizer speed on the text pinfer-bench-tok measures, for a
side-by-side figure.

    build/bin/pinfer-bench-tok --dump-text /tmp/tok_bench.txt
    python3 bench/tok_bench_llamacpp.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --text /tmp/tok_bench.txt

Needs llama-cpp-python (0.3.36 is what the golden data pins).  The model is
loaded with vocab_only=True.  Each document (NUL-separated in the text file)
is one llama_tokenize() call with a preallocated buffer, the way the C bench
calls pf_tok_encode(); decode is one llama_detokenize() per document, and
"decode streaming" one llama_token_to_piece() per token.  The ctypes call
overhead (about a microsecond) is small against a 4 KiB document but not
against one token, so read the streaming figure as a lower bound.
"""

import argparse
import ctypes
import sys
import time

import llama_cpp
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True, help="file written by pinfer-bench-tok --dump-text")
    ap.add_argument("--min-time", type=float, default=1.0)
    args = ap.parse_args()

    docs = [d for d in open(args.text, "rb").read().split(b"\0") if d]
    total = sum(len(d) for d in docs)
    llm = Llama(model_path=args.model, vocab_only=True, verbose=False)
    vocab = llm._model.vocab

    cap = max(len(d) for d in docs) * 4 + 16
    buf = (llama_cpp.llama_token * cap)()
    ids = []
    for d in docs:
        n = llama_cpp.llama_tokenize(vocab, d, len(d), buf, cap, False, False)
        assert n >= 0
        ids.append((llama_cpp.llama_token * max(n, 1))(*buf[:n]))
    n_tok = sum(len(x) for x in ids)
    print(f"text: {len(docs)} documents, {total / 2**20:.2f} MiB, {n_tok} tokens "
          f"({total / n_tok:.2f} bytes/token), llama-cpp-python {llama_cpp.__version__}")

    for special in (False, True):
        t0 = time.perf_counter()
        reps = 0
        while True:
            for d in docs:
                llama_cpp.llama_tokenize(vocab, d, len(d), buf, cap, False, special)
            reps += 1
            el = time.perf_counter() - t0
            if el >= args.min_time:
                break
        name = "encode parse_special" if special else "encode"
        print(f"{name:<22} {total * reps / el / 1e6:8.2f} MB/s  ({n_tok * reps / el:.0f} tokens/s)")

    out_cap = max(len(d) for d in docs) * 8 + 65536
    out = ctypes.create_string_buffer(out_cap)
    t0 = time.perf_counter()
    reps = 0
    while True:
        for x in ids:
            r = llama_cpp.llama_detokenize(vocab, x, len(x), out, out_cap, False, False)
            assert r >= 0
        reps += 1
        el = time.perf_counter() - t0
        if el >= args.min_time:
            break
    print(f"{'decode':<22} {total * reps / el / 1e6:8.2f} MB/s  ({n_tok * reps / el:.0f} tokens/s)")

    piece = ctypes.create_string_buffer(256)
    tp = llama_cpp.llama_token_to_piece
    t0 = time.perf_counter()
    reps = 0
    while True:
        for x in ids:
            for tok in x:
                tp(vocab, tok, piece, 256, 0, False)
        reps += 1
        el = time.perf_counter() - t0
        if el >= args.min_time:
            break
    print(f"{'decode streaming':<22} {total * reps / el / 1e6:8.2f} MB/s  ({n_tok * reps / el:.0f} tokens/s)"
          "  (includes Python call overhead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
