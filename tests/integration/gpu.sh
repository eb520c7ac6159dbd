#!/usr/bin/env bash
# The CUDA kernel and backend tests (tests/gpu/test_kernels.c) as a suite of
# `make test`.  Skips (exit 77) before compiling anything on a machine
# without an NVIDIA driver, so it costs nothing there; on a GPU machine it
# builds build-gpu/test_kernels (`make test-gpu`'s binary) and runs it.
set -u
if ! command -v nvidia-smi >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  echo "skip: no NVIDIA driver (neither nvidia-smi nor libcuda.so.1): GPU tests not run"
  exit 77
fi
if command -v nvidia-smi >/dev/null 2>&1 && ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "skip: nvidia-smi lists no GPU: GPU tests not run"
  exit 77
fi
nvcc=${NVCC:-$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })}
if [ -z "$nvcc" ]; then
  echo "skip: a GPU but no nvcc (CUDA toolkit): GPU tests not built"
  exit 77
fi
make --no-print-directory -s NVCC="$nvcc" build-gpu/test_kernels || { echo "FAIL: building build-gpu/test_kernels"; exit 1; }
exec build-gpu/test_kernels
