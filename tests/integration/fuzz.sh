#!/usr/bin/env bash
# The libFuzzer harnesses (GGUF reader, submission validator), each for
# PF_FUZZ_SECONDS (60 in `make test`, 15 in `make asan`, whose own build is
# already sanitized).  Any crash fails the suite.
set -euo pipefail
secs=${PF_FUZZ_SECONDS:-60}
[ "${PF_ASAN:-0}" = 1 ] && secs=${PF_FUZZ_SECONDS:-15}
exec bash "$(dirname "$0")/../fuzz/run.sh" "$secs"
