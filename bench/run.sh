#!/usr/bin/env bash
# `make bench`: pinfer's figures beside llama.cpp's, from the same run.
#
#   1. engine, offline: pinfer-bench vs llama-batched-bench on the same GGUF
#      with the same thread count: -npp 128 -ntg 128 -npl 1,8,32,64 (unified
#      KV) and -npp 512 -ntg 1 -npl 1; runs interleaved, PF_BENCH_REPS times
#      (default 3); medians, spread and our/their ratios.
#   2. tokenizer: encode/decode MB/s, ours and llama.cpp's on the same text.
#   3. serving: continuous vs static batching (bench/serve.sh), if built.
#   4. end-to-end: the same comparison through pinferd from several client
#      processes (bench/e2e.sh; size with PF_E2E_REQUESTS/_CLIENTS/_MAX_OUTPUT).
# Results go to stdout and BUILD/bench-*.txt (make bench: build-bench/).
set -uo pipefail
build=${1:-build} model=${2:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
reps=${PF_BENCH_REPS:-3}
threads=${PF_BENCH_THREADS:-$(nproc)}
npl=${PF_BENCH_NPL:-1,8,32,64}
out=$build/bench-engine.tsv
mkdir -p "$build"
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, threads $threads"
lbin=$(bash bench/build-llamacpp.sh) || { echo "bench: cannot build llama.cpp's llama-batched-bench" >&2; lbin=""; }
: > "$out"
run_ours() { # npp ntg npl [label PF_ISA]
  PF_ISA=${5:-${PF_ISA:-}} "$build/bin/pinfer-bench" --model "$model" -t "$threads" --npp "$1" --ntg "$2" --npl "$3" 2>/dev/null \
    | awk -F'\t' -v l="${4:-pinfer}" '$1=="pinfer"{print l"\t"$2"\t"$3"\t"$4"\t"$6"\t"$8"\t"$9}' >> "$out"
}
# On an AVX-512 host the AVX2 kernels run too (PF_ISA=avx2), to show that
# AVX-512 is at least as fast while giving the same bits.
avx512=$(grep -qw avx512_vnni /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && echo 1)
run_theirs() { # npp ntg npl
  [ -n "$lbin" ] || return 0
  local ctx=$(( ( $1 + $2 ) * 64 + 512 ))
  LD_LIBRARY_PATH="$lbin" "$lbin/llama-batched-bench" -m "$model" -c "$ctx" -b 2048 -ub 512 -t "$threads" \
    -npp "$1" -ntg "$2" -npl "$3" -kvu 2>/dev/null \
    | awk -F'|' 'NF>9 && $2+0>0 {gsub(/ /,""); print "llama.cpp\t"$2"\t"$3"\t"$4"\t"$7"\t"$9"\t-"}' >> "$out"
}
for r in $(seq 1 "$reps"); do
  echo "== round $r of $reps"
  run_ours 128 128 "$npl"; run_theirs 128 128 "$npl"
  run_ours 512 1 1; run_theirs 512 1 1
  if [ -n "$avx512" ]; then run_ours 128 128 "$npl" pinfer-avx2 avx2; run_ours 512 1 1 pinfer-avx2 avx2; fi
done
python3 - "$out" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
data = {}
for impl, pp, tg, b, spp, stg, rss in rows:
    data.setdefault((int(pp), int(tg), int(b)), {}).setdefault(impl, []).append((float(spp), float(stg), rss))
def fmt(v):
    if not v: return "       -        "
    m = st.median(v); s = (max(v) - min(v)) / m * 100 if m else 0
    return f"{m:9.1f} ±{s:4.0f}%"
print()
print("engine, offline (tokens/s; median of runs, ± spread)")
print(f"{'PP':>4} {'TG':>4} {'B':>3} | {'prefill pinfer':>16} {'prefill llama.cpp':>17} {'ratio':>6} | {'decode pinfer':>16} {'decode llama.cpp':>16} {'ratio':>6} | RSS MiB")
for key in sorted(data):
    d = data[key]
    o = d.get("pinfer", []); t = d.get("llama.cpp", [])
    opp = [x[0] for x in o]; tpp = [x[0] for x in t]; otg = [x[1] for x in o]; ttg = [x[1] for x in t]
    r1 = f"{st.median(opp)/st.median(tpp):6.2f}" if opp and tpp else "     -"
    r2 = f"{st.median(otg)/st.median(ttg):6.2f}" if otg and ttg and key[1] > 1 else "     -"
    rss = o[-1][2] if o else "-"
    print(f"{key[0]:>4} {key[1]:>4} {key[2]:>3} | {fmt(opp):>16} {fmt(tpp):>17} {r1} | {fmt(otg) if key[1]>1 else '':>16} {fmt(ttg) if key[1]>1 else '':>16} {r2} | {rss}")
if any("pinfer-avx2" in d for d in data.values()):
    print()
    print("pinfer's AVX-512 kernels vs its AVX2 kernels (PF_ISA=avx2), same run, same bits (tokens/s)")
    print(f"{'PP':>4} {'TG':>4} {'B':>3} | {'prefill avx512':>16} {'prefill avx2':>16} {'ratio':>6} | {'decode avx512':>16} {'decode avx2':>16} {'ratio':>6}")
    for key in sorted(data):
        d = data[key]; o = d.get("pinfer", []); a = d.get("pinfer-avx2", [])
        if not o or not a: continue
        r1 = st.median([x[0] for x in o]) / st.median([x[0] for x in a])
        r2 = st.median([x[1] for x in o]) / st.median([x[1] for x in a]) if key[1] > 1 else None
        print(f"{key[0]:>4} {key[1]:>4} {key[2]:>3} | {fmt([x[0] for x in o]):>16} {fmt([x[0] for x in a]):>16} {r1:6.2f} | "
              f"{fmt([x[1] for x in o]) if key[1]>1 else '':>16} {fmt([x[1] for x in a]) if key[1]>1 else '':>16} {(f'{r2:6.2f}' if r2 else '     -')}")
PY
echo
if [ -x "$build/bin/pinfer-bench-tok" ]; then
  echo "== tokenizer"
  txt=$build/bench-tok-text.txt
  "$build/bin/pinfer-bench-tok" --model "$model" --dump-text "$txt" >/dev/null 2>&1 || true
  "$build/bin/pinfer-bench-tok" --model "$model" 2>&1 | tail -n 6
  if [ -s "$txt" ] && python3 -c "import llama_cpp" 2>/dev/null; then
    python3 bench/tok_bench_llamacpp.py --model "$model" --text "$txt" 2>&1 | tail -n 4
  else
    echo "(llama.cpp tokenizer figures need: pip install llama-cpp-python==0.3.36)"
  fi
fi
if [ -x "$build/bin/pinfer-bench-ipc" ]; then
  echo
  echo "== IPC alone (pinferd --echo-backend: no model)"
  sock=$(mktemp -u /tmp/pinfer-bench-XXXXXX.sock)
  "$build/bin/pinferd" --echo-backend --socket "$sock" --log-level warn &
  epid=$!
  for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
  "$build/bin/pinfer-bench-ipc" --socket "$sock" --iterations 20000 -c 32 --seconds 3 | tee "$build/bench-ipc.txt"
  kill -TERM "$epid"; wait "$epid" 2>/dev/null
  echo
  echo "== IPC share of step time at full load (pinferd on the model, 32 clients)"
  sock=$(mktemp -u /tmp/pinfer-bench-XXXXXX.sock)
  log=$(mktemp)
  "$build/bin/pinferd" --model "$model" --socket "$sock" --state-file none --log-level info 2>"$log" &
  dpid=$!
  for _ in $(seq 1 600); do [ -S "$sock" ] && break; sleep 0.1; done
  for i in $(seq 1 32); do
    "$build/bin/pinfer" generate --socket "$sock" --temperature 0 --max-tokens 64 --ignore-eos "Request $i: tell me about the sea." >/dev/null 2>&1 &
  done
  wait $(jobs -p | grep -v "^$dpid$") 2>/dev/null
  kill -TERM "$dpid"; wait "$dpid" 2>/dev/null
  grep "IPC path" "$log" | sed 's/^.*info: /  /'
  rm -f "$log"
fi
if [ -x "$build/bin/pinfer-bench-serve" ] && [ -f bench/serve.sh ]; then
  echo
  echo "== serving: continuous vs static batching"
  bash bench/serve.sh "$build" "$model"
fi
if [ -x "$build/bin/pinfer-bench-e2e" ] && [ -x "$build/bin/pinferd" ] && [ -f bench/e2e.sh ]; then
  echo
  echo "== end-to-end through pinferd: continuous vs static batching across client processes"
  bash bench/e2e.sh "$build" "$model"
fi
