#!/usr/bin/env bash
# Run every test suite of one build and print each suite's time.
# Usage: tests/run.sh BUILD_DIR [FILTER]
#   Suites: tests/check/*.sh (static checks of the tree: the layering rule),
#   BUILD_DIR/tests/test_* (CMocka unit binaries, one per module) and
#   tests/integration/*.sh (start a real pinferd).  FILTER keeps suites whose
#   name contains it.  Exit status 77 from a suite means "skipped" (GPU tests
#   without a GPU) and is reported as such, not as a pass.
# Environment: PF_MODEL (model path), PF_ASAN=1 (sanitizer build: suites may
#   shorten their slowest loops and skip none of their checks).
set -uo pipefail
build=${1:?usage: tests/run.sh BUILD_DIR [FILTER]}
filter=${2:-}
export PF_MODEL=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
export PF_BUILD=$build
export PF_GOLDEN=${PF_GOLDEN:-tests/golden}
pass=0 fail=0 skip=0
failed=()
total_start=$(date +%s%N)
suites=()
for t in tests/check/*.sh; do [ -f "$t" ] && suites+=("$t"); done
for t in "$build"/tests/test_*; do [ -x "$t" ] && suites+=("$t"); done
for t in tests/integration/*.sh; do [ -f "$t" ] && suites+=("$t"); done
for t in "${suites[@]}"; do
  name=$(basename "$t")
  [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && continue
  start=$(date +%s%N)
  log=$(mktemp)
  if [[ "$t" == *.sh ]]; then bash "$t" >"$log" 2>&1; else "$t" >"$log" 2>&1; fi
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN{printf "%.2f", (b-a)/1e9}')
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1)); printf 'PASS  %-28s %7.2fs\n' "$name" "$secs"
    grep -E '^(# |INFO )' "$log" | sed 's/^/      /'
  elif [ $rc -eq 77 ]; then
    skip=$((skip + 1)); printf 'SKIP  %-28s %7.2fs  (%s)\n' "$name" "$secs" "$(grep -m1 -i 'skip' "$log" || echo 'exit 77')"
  else
    fail=$((fail + 1)); failed+=("$name"); printf 'FAIL  %-28s %7.2fs  (exit %d)\n' "$name" "$secs" "$rc"
    tail -n 60 "$log" | sed 's/^/      | /'
  fi
  rm -f "$log"
done
awk -v a="$total_start" -v b="$(date +%s%N)" 'BEGIN{printf "total time %.1fs\n", (b-a)/1e9}'
[ ${#failed[@]} -gt 0 ] && echo "failed suites: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
