#!/usr/bin/env bash
# End-to-end serving benchmark through pinferd (tools/pinfer-bench-e2e.c):
# continuous batching vs the static baseline on ShareGPT lengths, driven by
# several client processes over libpinfer, every request at once and with
# Poisson arrivals.  Each of its runs starts and stops its own pinferd.
# Usage: bench/e2e.sh [BUILD_DIR [MODEL]] [-- extra pinfer-bench-e2e options]
#   Size (defaults sized to finish in about five minutes on 2 cores):
#     PF_E2E_REQUESTS    requests per run (default 16)
#     PF_E2E_CLIENTS     client processes (default 8)
#     PF_E2E_MAX_OUTPUT  cap on output tokens per request (default 1024)
#     PF_E2E_ARGS        more options, e.g. "--static-batch 16 --kv-memory 128M"
#   Tees the report to BUILD_DIR/bench-e2e.txt.  Timings depend on the
#   machine and its load; nothing here asserts one.
set -euo pipefail
build=build
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ $# -gt 0 ] && [ "$1" != "--" ]; then build=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then model=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
bin=$build/bin/pinfer-bench-e2e
data=bench/data/sharegpt_lengths.tsv
[ -x "$bin" ] || { echo "bench/e2e.sh: $bin is missing; run make first" >&2; exit 1; }
[ -x "$build/bin/pinferd" ] || { echo "bench/e2e.sh: $build/bin/pinferd is missing; run make first" >&2; exit 1; }
[ -f "$model" ] || { echo "bench/e2e.sh: $model is missing; run make model" >&2; exit 1; }
[ -f "$data" ] || { echo "bench/e2e.sh: $data is missing; see bench/sharegpt_lengths.py" >&2; exit 1; }
out=$build/bench-e2e.txt

# The tool forks its daemons and clients with PR_SET_PDEATHSIG and stops
# them on SIGINT/SIGTERM; this trap also covers the tool being killed
# outright: the daemon it was running (pid file in the directory) goes too.
dir=$(mktemp -d "${TMPDIR:-/tmp}/pinfer-e2e-XXXXXX")
bpid=""
cleanup() {
  if [ -n "$bpid" ] && kill -0 "$bpid" 2>/dev/null; then
    kill -TERM "$bpid" 2>/dev/null || true
    wait "$bpid" 2>/dev/null || true
  fi
  if [ -f "$dir/pinferd.pid" ]; then
    local p
    p=$(cat "$dir/pinferd.pid" 2>/dev/null || true)
    # only if that pid is still a pinferd serving from our directory
    if [ -n "$p" ] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$dir/"; then
      kill -KILL "$p" 2>/dev/null || true
    fi
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Run in the background and wait, so a signal to this script is handled at
# once (bash defers traps while a foreground command runs).
# shellcheck disable=SC2086  # PF_E2E_ARGS is a word list on purpose
"$bin" --model "$model" --data "$data" --socket-dir "$dir" \
  --requests "${PF_E2E_REQUESTS:-16}" --clients "${PF_E2E_CLIENTS:-8}" --max-output "${PF_E2E_MAX_OUTPUT:-1024}" \
  ${PF_E2E_ARGS:-} "$@" > >(tee "$out") &
bpid=$!
rc=0
wait "$bpid" || rc=$?
bpid=""
echo "bench/e2e.sh: report in $out" >&2
exit "$rc"
