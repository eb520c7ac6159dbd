#!/usr/bin/env bash
# Build the libFuzzer harnesses (tests/fuzz/fuzz_*.c) and run each for SECONDS.
# Usage: tests/fuzz/run.sh [SECONDS]     (default 60; `make test-fuzz` passes
#        PF_FUZZ_SECONDS)
#
# Each harness is built with clang -fsanitize=fuzzer,address,undefined from
# the few sources it needs (listed in `srcs` below; a new harness must be
# added there) into build-fuzz/.  It runs over two corpus directories:
#   build-fuzz/corpus/NAME   kept between runs; libFuzzer adds what it finds
#   a fresh temporary dir    the committed seeds (tests/fuzz/corpus/NAME/) plus,
#                            for gguf, the first 64 KiB of the real model
# with the dictionary tests/fuzz/corpus/NAME.dict when there is one.
# Any crash, leak, timeout or out-of-memory fails the run; the input is saved
# as build-fuzz/crash-NAME-* (reproduce: build-fuzz/fuzz_NAME FILE).
#
# The gguf seeds are the small files the unit test writes (every round trip
# and every rejection), minimised to the ones that add coverage:
#   PF_GGUF_SEED_DIR=/tmp/s build/tests/test_gguf
#   build-fuzz/fuzz_gguf -merge=1 tests/fuzz/corpus/gguf /tmp/s
#
# Needs clang and its fuzzer runtime: on Debian 12,
#   apt-get install clang libclang-rt-14-dev
set -euo pipefail

secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=build-fuzz
cc=${FUZZ_CC:-clang}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}

declare -A srcs=(
	[gguf]="runtime/model/gguf.c kernels/dtype.c"
	[sqe]="runtime/daemon/daemon_sqe.c runtime/engine/engine_params.c runtime/engine/sampler.c runtime/engine/philox.c"
	[statefile]="runtime/daemon/statefile.c runtime/engine/engine_params.c runtime/engine/sampler.c runtime/engine/philox.c -lxxhash"
)

flags=(-std=gnu11 -g -O1 -D_GNU_SOURCE -I.
       -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wno-unused-parameter
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

if ! command -v "$cc" >/dev/null; then
	echo "fuzz: $cc not found; install it with: apt-get install clang libclang-rt-14-dev" >&2
	exit 1
fi
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
	echo "usage: tests/fuzz/run.sh [SECONDS]" >&2
	exit 2
fi

mkdir -p "$out"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
# a clear message for the usual failure on a fresh machine
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined -o "$probe/p" "$probe/p.c" 2>"$probe/err"; then
	cat "$probe/err" >&2
	echo "fuzz: $cc cannot link libFuzzer; install it with: apt-get install libclang-rt-14-dev" >&2
	exit 1
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
shopt -s nullglob
for harness in tests/fuzz/fuzz_*.c; do
	name=$(basename "$harness" .c)
	name=${name#fuzz_}
	if [ -z "${srcs[$name]:-}" ]; then
		echo "fuzz: $harness has no entry in srcs in tests/fuzz/run.sh (the sources it links)" >&2
		status=1
		continue
	fi
	bin=$out/fuzz_$name
	# shellcheck disable=SC2086 # the source list is meant to split
	"$cc" "${flags[@]}" -o "$bin" "$harness" ${srcs[$name]}

	corpus=$out/corpus/$name
	seeds=$probe/seeds-$name
	mkdir -p "$corpus" "$seeds"
	[ -d "tests/fuzz/corpus/$name" ] && cp "tests/fuzz/corpus/$name"/* "$seeds"/ 2>/dev/null || true
	if [ "$name" = gguf ] && [ -f "$model" ]; then
		head -c 65536 "$model" >"$seeds/model-64k.gguf"
	fi
	args=(-max_total_time="$secs" -max_len=1048576 -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=20
	      -print_final_stats=1 -artifact_prefix="$out/crash-$name-")
	[ -f "tests/fuzz/corpus/$name.dict" ] && args+=(-dict="tests/fuzz/corpus/$name.dict")

	echo "fuzz: $name for ${secs}s ($(ls "$seeds" | wc -l) seeds, $(ls "$corpus" | wc -l) in $corpus)"
	start=$(date +%s)
	if "$bin" "${args[@]}" "$corpus" "$seeds" >"$out/fuzz-$name.log" 2>&1; then
		echo "fuzz: $name passed in $(( $(date +%s) - start ))s: $(grep -E '^stat::number_of_executed_units' "$out/fuzz-$name.log" | awk '{print $2}') runs, $(ls "$corpus" | wc -l) corpus files"
	else
		status=1
		echo "fuzz: $name FAILED; log $out/fuzz-$name.log:" >&2
		tail -n 60 "$out/fuzz-$name.log" | sed 's/^/      | /' >&2
	fi
done
exit $status
