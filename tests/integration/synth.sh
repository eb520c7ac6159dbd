#!/usr/bin/env bash
# pinfer-synth-gguf: synthetic GGUF models with random weights.
#
#   1. bad options: each refused with exit 2, a message naming the problem,
#      and no file left behind; an unwritable output is exit 1
#   2. the tool alone: compiles from its own source and kernels/dtype.c with
#      nothing but libc and libm (what a bare GPU machine has) and writes the
#      same bytes as build/bin's; the same seed gives the same file, another
#      seed another
#   3. the tiny preset in every --type: pinfer-gguf reads it, the file is
#      exactly the size its shape implies (recomputed here in awk from the
#      block layouts, alignment included), the tokenizer round-trips text,
#      pinfer-run answers a chat message, and pinferd loads it and generates
#      8 tokens for `pinfer generate --ignore-eos`
#   4. a real shape: smollm2-135m at Q4_1 has the tensor data bytes of the
#      real SmolLM2-135M Q4_1 file (and of PF_MODEL when it is that file),
#      and pinferd generates with it
#   5. the Llama-3-8B shape (dry run, nothing written): 8030261248
#      parameters, and the planned tensor data matches awk's count at Q4_K
#      and F16
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
synth=$build/bin/pinfer-synth-gguf
root=$(cd "$(dirname "$0")/../.." && pwd)

for t in awk cmp stat; do
  command -v $t >/dev/null || { echo "skip: $t is needed"; exit 77; }
done
[ -x "$synth" ] || { echo "FAIL: $synth is not built"; exit 1; }
for b in pinfer-gguf pinfer-run pinfer-tokenize pinferd pinfer; do
  [ -x "$build/bin/$b" ] || { echo "skip: $build/bin/$b is not built (the engine is needed to load the files)"; exit 77; }
done

work=$(mktemp -d /tmp/pinfer-synth-XXXXXX)
dpid=
failures=0
cleanup() {
  [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

# ---- 1. bad options ----------------------------------------------------------
bad() { # expected-substring args...
  local want=$1; shift
  local out=$work/bad.gguf
  rm -f "$out"
  "$synth" -o "$out" "$@" >"$work/bad.out" 2>&1
  local rc=$?
  if [ $rc -ne 2 ]; then fail "'$*' exited $rc, expected 2"; cat "$work/bad.out"; return; fi
  grep -qF -- "$want" "$work/bad.out" || { fail "'$*' did not say '$want':"; cat "$work/bad.out"; return; }
  [ -e "$out" ] && { fail "'$*' left $out behind"; return; }
  ok "refused $*: $(head -n1 "$work/bad.out")"
}
bad "is not a multiple of --heads" --hidden 100 --heads 3
bad "multiples of 256" --preset smollm2-135m --type q4_k
bad "multiples of 256" --preset smollm2-135m --type q8_0 --output-type q6_k
bad "not a multiple of 32" --ff 100 --type q4_0
bad "does not divide --heads" --kv-heads 3
bad "must be even" --hidden 96 --heads 32
bad "is not a weight type" --type q5_0
bad "wants an integer in [259," --vocab 10
bad "wants an integer in [1," --layers x
bad "wants a positive number" --rope-base -1
bad "unknown preset 'nope' (tiny, smollm2-135m" --preset nope
bad "Try" --bogus
bad "unexpected argument" extra
"$synth" -q -o "$work/no/such/dir/x.gguf" >"$work/bad.out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "cannot create" "$work/bad.out"; then ok "unwritable output: exit 1"; else fail "unwritable output: exit $rc"; cat "$work/bad.out"; fi
"$synth" --help | grep -q "llama3-8b .*14336" || fail "--help does not list the presets"

# ---- 2. standalone build, determinism ------------------------------------------
"$synth" -q --seed 7 -o "$work/a.gguf" && "$synth" -q --seed 7 -o "$work/b.gguf" || fail "writing tiny F16"
cmp -s "$work/a.gguf" "$work/b.gguf" && ok "same seed, same bytes" || fail "same seed gave different files"
"$synth" -q --seed 8 -o "$work/c.gguf"
cmp -s "$work/a.gguf" "$work/c.gguf" && fail "another seed gave the same file" || ok "another seed, other bytes"
cc=$(command -v cc || command -v gcc || command -v clang)
if [ -n "$cc" ]; then
  if "$cc" -std=gnu11 -O2 -Wall -Wextra -Werror -I"$root" "$root/tools/pinfer-synth-gguf.c" "$root/kernels/dtype.c" -lm \
       -o "$work/synth-alone" 2>"$work/cc.log"; then
    libs=$(ldd "$work/synth-alone" 2>/dev/null | awk '{print $1}' | grep -vE '^(linux-vdso|/lib.*ld-linux|libc\.so|libm\.so)' | tr '\n' ' ')
    [ -z "$libs" ] && ok "standalone build needs only libc and libm" || fail "standalone build links $libs"
    "$work/synth-alone" -q --seed 7 -o "$work/d.gguf"
    cmp -s "$work/a.gguf" "$work/d.gguf" && ok "standalone build writes the same bytes" || fail "standalone build differs"
  else
    fail "standalone build failed:"; cat "$work/cc.log"
  fi
else
  echo "# no C compiler on PATH: standalone build not checked"
fi

# ---- expected sizes -----------------------------------------------------------------
# Tensor data bytes of a llama shape, from the GGUF block layouts, each
# tensor's start aligned to 32: prints "data_with_padding params".
expect() { # layers hidden heads kv ff vocab type embd_type output_type(- when tied)
  awk -v L="$1" -v E="$2" -v H="$3" -v KV="$4" -v F="$5" -v V="$6" -v T="$7" -v TE="$8" -v TO="$9" '
    function rowb(t, n) {
      if (t == "F32") return n * 4
      if (t == "F16" || t == "BF16") return n * 2
      if (t == "Q8_0") return n / 32 * 34
      if (t == "Q4_0") return n / 32 * 18
      if (t == "Q4_1") return n / 32 * 20
      if (t == "Q4_K") return n / 256 * 144
      if (t == "Q6_K") return n / 256 * 210
      print "unknown type " t > "/dev/stderr"; exit 1
    }
    function add(t, ne0, ne1) { off = int((off + 31) / 32) * 32; off += rowb(t, ne0) * ne1; params += ne0 * ne1 }
    BEGIN {
      kvd = KV * (E / H)
      add(TE, E, V)
      for (l = 0; l < L; l++) {
        add("F32", E, 1); add(T, E, E); add(T, E, kvd); add(T, E, kvd); add(T, E, E)
        add("F32", E, 1); add(T, E, F); add(T, E, F); add(T, F, E)
      }
      add("F32", E, 1)
      if (TO != "-") add(TO, E, V)
      printf "%.0f %.0f\n", off, params
    }'
}

# the data section starts at the smallest tensor offset pinfer-gguf shows
data_start() { awk '/^tensors \(/ { t = 1; next } t && NF >= 5 && $(NF-1) ~ /^[0-9]+$/ { if (min == "" || $(NF-1) + 0 < min) min = $(NF-1) + 0 } END { print min }' "$1"; }

start_daemon() { # model
  local sock=$work/d.sock
  rm -f "$sock"
  "$build/bin/pinferd" --model "$1" --socket "$sock" --kv-memory 16M --threads 2 --state-file none \
    --log-level warn >"$work/d.log" 2>&1 &
  dpid=$!
  wait_for 120 test -S "$sock" || { fail "pinferd did not start on $1:"; cat "$work/d.log"; kill -KILL $dpid 2>/dev/null; dpid=; return 1; }
}

stop_daemon() {
  kill -TERM "$dpid" 2>/dev/null
  wait "$dpid"
  local rc=$?
  dpid=
  [ $rc -eq 0 ] || fail "pinferd exited $rc"
}

gen8() { # name
  timeout 60 "$build/bin/pinfer" generate --socket "$work/d.sock" --max-tokens 8 --temperature 0 --ignore-eos \
    "hello" >"$work/gen.out" 2>"$work/gen.err"
  local rc=$?
  if [ $rc -ne 0 ]; then fail "$1: pinfer generate exited $rc"; cat "$work/gen.err" "$work/d.log"; return; fi
  grep -q "generated 8;" "$work/gen.err" && ok "$1: pinferd generated 8 tokens" || { fail "$1: not 8 tokens:"; cat "$work/gen.err"; }
}

check_file() { # name file expected_data expected_params
  local name=$1 f=$2 want=$3 params=$4
  if ! "$build/bin/pinfer-gguf" "$f" >"$work/gguf.out" 2>&1; then fail "$name: pinfer-gguf failed:"; head "$work/gguf.out"; return 1; fi
  local size start
  size=$(stat -c %s "$f")
  start=$(data_start "$work/gguf.out")
  [ "$size" = $((start + want)) ] && ok "$name: $size bytes = data at $start + $want" ||
    fail "$name: file is $size bytes, expected $start + $want = $((start + want))"
  grep -q "^parameters: *$params " "$work/gguf.out" || fail "$name: parameter count is not $params: $(grep '^parameters' "$work/gguf.out")"
}

# ---- 3. tiny in every type ---------------------------------------------------------
text="Hello world, the quick brown fox: 12345!"
for t in f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q6_k; do
  T=${t^^}
  f=$work/tiny-$t.gguf
  "$synth" -q --type "$t" -o "$f" || { fail "tiny $t: not written"; continue; }
  case $T in F32|F16|BF16) TO=$T ;; Q8_0) TO=Q8_0 ;; *) TO=Q6_K ;; esac
  read -r want params < <(expect 2 256 4 2 512 512 "$T" "$T" "$TO")
  check_file "tiny $t" "$f" "$want" "$params" || continue
  grep -qE "^ +blk\.1\.ffn_down\.weight +$T +512 x 256 " "$work/gguf.out" || fail "tiny $t: ffn_down is not $T 512 x 256"
  ids=$("$build/bin/pinfer-tokenize" --model "$f" --ids "$text") &&
    back=$("$build/bin/pinfer-tokenize" --model "$f" --decode "$ids") &&
    [ "$back" = "$text" ] && ok "tiny $t: tokenizer round trip ($(wc -w <<<"$ids") tokens)" ||
    fail "tiny $t: tokenizer round trip gave '${back:-}' from '${ids:-}'"
  if [ "$t" = q4_k ]; then
    timeout 60 "$build/bin/pinfer-run" -m "$f" -t 2 --kv-memory 16M -c "hi" --max-tokens 4 >"$work/run.out" 2>"$work/run.err" &&
      grep -qE "[1-4] generated" "$work/run.err" && ok "tiny $t: pinfer-run answers a chat message" ||
      { fail "tiny $t: pinfer-run --chat failed"; cat "$work/run.err"; }
  fi
  start_daemon "$f" && { gen8 "tiny $t"; stop_daemon; }
done

# ---- 4. smollm2-135m at Q4_1 ---------------------------------------------------------
f=$work/smollm2.gguf
start=$(date +%s%N)
"$synth" -q --preset smollm2-135m --type q4_1 -o "$f" || fail "smollm2-135m q4_1: not written"
echo "# smollm2-135m q4_1 written in $(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN{printf "%.2f", (b-a)/1e9}') s"
read -r want params < <(expect 30 576 9 3 1536 49152 Q4_1 Q8_0 -)
[ "$want" = 96576768 ] || fail "awk's count for SmolLM2-135M Q4_1 is $want, the real file holds 96576768 bytes of tensor data"
check_file "smollm2-135m q4_1" "$f" "$want" "$params"
if [ -f "$model" ] && "$build/bin/pinfer-gguf" -T "$model" 2>/dev/null | grep -q "^model: .*[Ss]mol[Ll][Mm]2 135M" &&
   "$build/bin/pinfer-gguf" "$model" >"$work/real.out" 2>/dev/null; then
  real=$(( $(stat -c %s "$model") - $(data_start "$work/real.out") ))
  [ "$real" = "$want" ] && ok "same tensor data bytes as $model" || fail "$model holds $real bytes of tensor data, we wrote $want"
fi
start_daemon "$f" && { gen8 "smollm2-135m q4_1"; stop_daemon; }

# ---- 5. the Llama-3-8B shape, planned only ---------------------------------------------
for t in q4_k f16; do
  T=${t^^}
  case $T in F16) TO=F16 ;; *) TO=Q6_K ;; esac
  "$synth" --preset llama3-8b --type "$t" --dry-run -o "$work/l8.gguf" >"$work/plan.out" 2>&1 || { fail "llama3-8b $t: dry run failed"; cat "$work/plan.out"; continue; }
  [ -e "$work/l8.gguf" ] && fail "llama3-8b $t: --dry-run wrote a file"
  read -r want params < <(expect 32 4096 32 8 14336 128256 "$T" "$T" "$TO")
  grep -q "8030261248 parameters" "$work/plan.out" || fail "llama3-8b: not 8030261248 parameters: $(cat "$work/plan.out")"
  grep -q "tensor data $want)" "$work/plan.out" && ok "llama3-8b $t: $(grep '^size' "$work/plan.out")" ||
    fail "llama3-8b $t: planned $(grep '^size' "$work/plan.out"), awk counts $want of data"
done

left=$(find "$work" -name '*.tmp.*')
[ -z "$left" ] || fail "temporary files left behind: $left"

[ $failures -eq 0 ] || { echo "$failures failures"; exit 1; }
echo "all synth checks passed"
