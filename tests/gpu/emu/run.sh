#!/usr/bin/env bash
# Build the GPU test (or benchmark) driver against the CPU emulator
# (include/emu.h) and run it: a check of the kernels' indices, barriers and
# arithmetic on a machine without a GPU.  Slow (the full test: ~15 minutes
# on 2 cores; `run.sh test matvec` takes seconds) and no substitute for a
# GPU run: it cannot see timing, the memory model or a real cuBLAS.
#   tests/gpu/emu/run.sh [test|bench] [driver arguments...]
#   EMU_SAN: sanitizer flags (default UBSan; "-fsanitize=address,undefined"
#   also works, with ASan's warning about swapcontext).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
what=${1:-test}
[ $# -gt 0 ] && shift
case $what in test) drv=test_kernels ;; bench) drv=bench_kernels ;; *) echo "usage: $0 [test|bench] [args]" >&2; exit 2 ;; esac
out=${EMU_BUILD:-$root/build-gpu/emu}
san=${EMU_SAN:--fsanitize=undefined -fno-sanitize-recover=undefined}
mkdir -p "$out/gen" "$out/obj"
cxx=(g++ -std=c++17 -O1 -g $san -ffp-contract=off -I"$here/include" -include emu.h -I"$root")
cc=(gcc -std=gnu11 -O1 -g $san -ffp-contract=off -pthread -D_GNU_SOURCE -I"$root" -DPF_HAVE_CUDA=1)
objs=()
pids=()
for f in "$root"/kernels/cuda/*.cu; do
  b=$(basename "$f" .cu)
  python3 "$here/xform.py" "$f" "$out/gen/$b.cpp"
  "${cxx[@]}" -c "$out/gen/$b.cpp" -o "$out/obj/cu_$b.o" & pids+=($!)
  objs+=("$out/obj/cu_$b.o")
done
g++ -std=c++17 -O1 -g $san -I"$here/include" -c "$here/emu.cpp" -o "$out/obj/emu.o" & pids+=($!)
for f in "$root"/kernels/cpu/*.c "$root"/kernels/*.c "$root/tests/gpu/$drv.c"; do
  b=$(basename "$f" .c)
  "${cc[@]}" -c "$f" -o "$out/obj/c_$b.o" & pids+=($!)
  objs+=("$out/obj/c_$b.o")
done
for p in "${pids[@]}"; do wait "$p"; done
g++ $san -o "$out/${drv}_emu" "${objs[@]}" "$out/obj/emu.o" -lpthread -lm
cd "$root"
exec "$out/${drv}_emu" "$@"
