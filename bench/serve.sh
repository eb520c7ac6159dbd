#!/usr/bin/env bash
# Serving benchmark: continuous batching vs the static baseline on ShareGPT
# lengths, plus the prefix-caching figure (tools/pinfer-bench-serve.c).
# Usage: bench/serve.sh [BUILD_DIR [MODEL]] [-- extra pinfer-bench-serve options]
#   Runs the defaults (sized to finish in about five minutes on 2 cores) and
#   tees the report to BUILD_DIR/bench-serve.txt.  PF_SERVE_ARGS adds options
#   too, e.g. PF_SERVE_ARGS="--requests 200" for a fuller (much longer) run.
#   Timings depend on the machine and its load; nothing here asserts one.
set -euo pipefail
build=build
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ $# -gt 0 ] && [ "$1" != "--" ]; then build=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then model=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
bin=$build/bin/pinfer-bench-serve
data=bench/data/sharegpt_lengths.tsv
[ -x "$bin" ] || { echo "bench/serve.sh: $bin is missing; run make first" >&2; exit 1; }
[ -f "$model" ] || { echo "bench/serve.sh: $model is missing; run make model" >&2; exit 1; }
[ -f "$data" ] || { echo "bench/serve.sh: $data is missing; see bench/sharegpt_lengths.py" >&2; exit 1; }
out=$build/bench-serve.txt
# shellcheck disable=SC2086  # PF_SERVE_ARGS is a word list on purpose
"$bin" --model "$model" --data "$data" --prefix ${PF_SERVE_ARGS:-} "$@" | tee "$out"
echo "bench/serve.sh: report in $out" >&2
