#!/usr/bin/env bash
# Build llama.cpp's llama-batched-bench (the peer we measure against) from the
# vendored llama.cpp in the pinned llama-cpp-python source package, once, into
# a cache folder outside the repository.  Prints the binary's folder.
set -euo pipefail
ver=0.3.36
cache=${PF_BENCH_CACHE:-$HOME/.cache/pinfer}/llama.cpp-$ver
bin=$cache/build/bin
if [ -x "$bin/llama-batched-bench" ]; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
command -v cmake >/dev/null || { echo "bench: cmake is needed (apt-get install cmake)" >&2; exit 1; }
if [ ! -d "$cache/src" ]; then
  tmp=$(mktemp -d)
  pip download --quiet --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$ver" >&2
  tar -xzf "$tmp"/llama_cpp_python-$ver.tar.gz -C "$tmp"
  mv "$tmp/llama_cpp_python-$ver/vendor/llama.cpp" "$cache/src"
  rm -rf "$tmp"
fi
echo "bench: building llama-batched-bench (once; a few minutes on 2 cores)" >&2
cmake -S "$cache/src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=ON >&2
cmake --build "$cache/build" --target llama-batched-bench -j"$(nproc)" >&2
echo "$bin"
