#!/usr/bin/env bash
# `make run`: generate a reply to a sample prompt with the engine.
set -euo pipefail
build=$1 model=$2
if [ -x "$build/bin/pinfer-run" ]; then
  exec "$build/bin/pinfer-run" --model "$model" --chat "What is the capital of France? Answer in one sentence."
fi
echo "pinfer: the engine is not built yet; showing the model instead" >&2
exec "$build/bin/pinfer-gguf" --no-tensors "$model"
