#!/usr/bin/env bash
# Run the test suites of one build and print each suite's time.
# Usage: tests/run.sh BUILD_DIR [FILTER...]
#   Suites, in this order: tests/check/*.sh (static checks of the tree and
#   the self-test of this runner), BUILD_DIR/tests/test_* (CMocka unit
#   binaries, one per module) and tests/integration/*.sh (start a real
#   pinferd).  Each FILTER keeps the suites whose name contains it (several
#   FILTERs: any of them); a FILTER that keeps nothing fails the run, so a
#   typo cannot pass.
#
#   One case by name:  TEST_CASE=GLOB tests/run.sh build test_sched
#                      make test TEST_FILTER=test_sched TEST_CASE=test_swap_\*
#   TEST_CASE (an fnmatch(3) glob over case names) is read by every unit
#   binary (tests/unit/testutil.h); a binary in which it selects no case
#   fails.  With TEST_CASE set only the unit binaries run (scripts have no
#   cases), and a FILTER naming them is required.
#
#   A run that executes nothing fails: no suite selected, a unit binary that
#   reports zero cases run, or nothing but skips.
#
# Exit status 77 from a suite means "skipped" (GPU tests without a GPU, the
# model missing when run by hand) and is reported as such, not as a pass.
# Each suite runs under a time budget (the table below, seconds; ~3x its
# time on a loaded 2-core machine): a suite over it is killed with its
# processes and fails as "timed out after Ns".
#
# Environment: PF_MODEL (model path), PF_ASAN=1 (sanitizer build: suites may
#   shorten their slowest loops and skip none of their checks; budgets x3),
#   PF_REQUIRE_MODEL=1 (set by `make test`: a missing model fails the suites
#   that need it instead of skipping them), PF_TIMEOUT_SCALE (multiplies
#   every budget, e.g. 2 on a slow machine).
set -uo pipefail
build=${1:?usage: tests/run.sh BUILD_DIR [FILTER...]}
shift
filters=("$@")
case_filter=${TEST_CASE:-}
export PF_MODEL=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
export PF_BUILD=$build
export PF_GOLDEN=${PF_GOLDEN:-tests/golden}
export TEST_CASE=$case_filter

# ---- time budgets (seconds) -------------------------------------------------
# Measured on a 2-core machine shared with three other engineers' builds
# and tests (load 8-30): test_engine 150-300 s, test_generate 790 s,
# test_perplexity 460 s, test_gguf 160 s, daemon.sh 220 s, drain.sh
# 150-300 s, stats.sh 145 s; then about tripled.  A suite not listed
# gets default_budget.  A suite that grows (more ISAs, more cases) must
# grow its line here.
default_budget=300
declare -A budget=(
  [layers.sh]=60 [runner.sh]=120
  [test_chat]=60 [test_client]=180 [test_engine]=900 [test_generate]=3000
  [test_gguf]=600 [test_kv]=60 [test_perplexity]=1500 [test_quant]=900
  [test_sampler]=300 [test_sched]=180 [test_statefile]=180 [test_tok]=300
  [daemon.sh]=900 [daemon-eventfd.sh]=900 [daemon-nouring.sh]=900 [drain.sh]=600
  [fuzz.sh]=600 [gpu.sh]=900 [stats.sh]=600 [synth.sh]=600 [systemd.sh]=600
  [test_ops]=120 [test_selfcheck]=120 [test_conf]=60
  [install.sh]=900 [cli.sh]=300 [socketpath.sh]=300 [bigprompt.sh]=600 [beams.sh]=600
  [sigstop.sh]=600 [handshake.sh]=600 [wakefd.sh]=600 [uidquota.sh]=600 [interrupt.sh]=600
  [server.sh]=1500
)
scale=${PF_TIMEOUT_SCALE:-1}
[ "${PF_ASAN:-0}" = 1 ] && scale=$(awk -v s="$scale" 'BEGIN { print s * 3 }')
kill_after=10

if [ -n "$case_filter" ] && [ ${#filters[@]} -eq 0 ]; then
  echo "tests/run.sh: TEST_CASE='$case_filter' needs a suite filter naming the unit binary," >&2
  echo "  e.g. make test TEST_FILTER=test_sched TEST_CASE='$case_filter'" >&2
  exit 2
fi

suites=()
for t in tests/check/*.sh; do [ -f "$t" ] && suites+=("$t"); done
for t in "$build"/tests/test_*; do [ -x "$t" ] && suites+=("$t"); done
for t in tests/integration/*.sh; do [ -f "$t" ] && suites+=("$t"); done
selected=()
for t in "${suites[@]}"; do
  name=$(basename "$t")
  [ -n "$case_filter" ] && [[ "$t" == *.sh ]] && continue
  if [ ${#filters[@]} -gt 0 ]; then
    keep=0
    for f in "${filters[@]}"; do [[ "$name" == *"$f"* ]] && keep=1; done
    [ $keep = 1 ] || continue
  fi
  selected+=("$t")
done
if [ ${#selected[@]} -eq 0 ]; then
  echo "tests/run.sh: no suite matches the filter '${filters[*]}'${case_filter:+ (unit binaries only, as TEST_CASE is set)}; suites:" >&2
  for t in "${suites[@]}"; do printf '  %s\n' "$(basename "$t")" >&2; done
  exit 1
fi

pass=0 fail=0 skip=0
failed=()
total_start=$(date +%s%N)
for t in "${selected[@]}"; do
  name=$(basename "$t")
  limit=$(awk -v b="${budget[$name]:-$default_budget}" -v s="$scale" 'BEGIN { printf "%d", b * s + 0.5 }')
  start=$(date +%s%N)
  log=$(mktemp)
  # timeout(1) runs the suite in its own process group and signals the whole
  # group: a daemon the suite started goes with it.
  if [[ "$t" == *.sh ]]; then timeout --kill-after=$kill_after "$limit" bash "$t" >"$log" 2>&1
  else timeout --kill-after=$kill_after "$limit" "$t" >"$log" 2>&1; fi
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN{printf "%.2f", (b-a)/1e9}')
  why=
  if { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && awk -v s="$secs" -v l="$limit" 'BEGIN { exit !(s >= l) }'; then
    why="timed out after ${limit}s (budget in tests/run.sh)"
  elif [ $rc -eq 0 ] && [[ "$t" != *.sh ]]; then
    # a CMocka binary that exits 0 must have run cases ("[====...] N test(s) run.")
    ran=$(awk '/^\[==========\] [0-9]+ test\(s\) run\./ { n += $2 } END { print n + 0 }' "$log")
    [ "$ran" -gt 0 ] || why="exit 0 but no test case ran"
  fi
  if [ -n "$why" ]; then
    fail=$((fail + 1)); failed+=("$name"); printf 'FAIL  %-28s %7.2fs  (%s)\n' "$name" "$secs" "$why"
    tail -n 60 "$log" | sed 's/^/      | /'
  elif [ $rc -eq 0 ]; then
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
[ $pass -eq 0 ] && [ $fail -eq 0 ] && echo "tests/run.sh: nothing passed (every selected suite skipped)" >&2
[ $fail -eq 0 ] && [ $pass -gt 0 ]
