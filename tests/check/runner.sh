#!/usr/bin/env bash
# The self-test of tests/run.sh: a run that cannot pass by accident.
# tests/run.sh runs on a scratch tree of fake suites, and must
#   1. fail a suite that hangs, naming it and "timed out after Ns", and kill
#      the processes it started (budgets scaled down with PF_TIMEOUT_SCALE)
#   2. report exit 77 as a skip, and fail a run that only skipped
#   3. fail a suite filter that matches no suite
#   4. fail a unit binary in which TEST_CASE selects no case (the real
#      BUILD/tests/test_kv), and run one case by name
#   5. fail a CMocka binary that exits 0 having run no case
#   6. refuse TEST_CASE without a suite filter
#   tests/check/runner.sh            (PF_BUILD: the build to take test_kv from)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${PF_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
kv=$build/tests/test_kv
[ -x "$kv" ] || { echo "skip: $kv is not built (make build)"; exit 77; }

work=$(mktemp -d /tmp/pinfer-runner-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
# shellcheck source=../integration/lib/common.sh
. "$root/tests/integration/lib/common.sh"

mkdir -p "$work/tests/check" "$work/tests/integration" "$work/b/tests"
cat >"$work/tests/integration/hang.sh" <<EOF
sleep 1000 &
echo \$! >"$work/hang.child"
wait
EOF
echo 'echo "skip: a fake suite that skips"; exit 77' >"$work/tests/integration/skips.sh"
echo 'echo "# fine"; exit 0' >"$work/tests/integration/fine.sh"
printf '#!/bin/sh\necho "[==========] Running 0 test(s)."\necho "[==========] 0 test(s) run."\nexit 0\n' >"$work/b/tests/test_zero"
chmod +x "$work/b/tests/test_zero"
ln -s "$kv" "$work/b/tests/test_kv"
case1=$(grep -m1 -o 'cmocka_unit_test(test_[a-z0-9_]*' "$root/tests/unit/test_kv.c" | sed 's/.*(//')

run() { # [VAR=value...] -- filters... : runs tests/run.sh b in the scratch tree, output in $work/out, status in $rc
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  (cd "$work" && env -u TEST_CASE -u PF_TIMEOUT_SCALE -u PF_ASAN "${envs[@]}" bash "$root/tests/run.sh" b "$@") >"$work/out" 2>&1
  rc=$?
}
show() { sed 's/^/    | /' "$work/out"; }

# 1. a hung suite: failed by name within its budget, its child killed
t0=$SECONDS
run PF_TIMEOUT_SCALE=0.01 -- hang
if [ $rc != 0 ] && grep -q "^FAIL  hang.sh .*timed out after 3s" "$work/out" && [ $((SECONDS - t0)) -lt 60 ]; then
  ok "a hung suite fails by name: $(grep -o 'timed out after 3s' "$work/out") ($((SECONDS - t0)) s)"
else
  fail "a hung suite (exit $rc, $((SECONDS - t0)) s):"; show
fi
child=$(cat "$work/hang.child" 2>/dev/null)
if [ -n "$child" ] && wait_for 20 bash -c "! kill -0 $child 2>/dev/null"; then ok "the hung suite's child process was killed with it"
else fail "the hung suite's child ${child:-?} is still running"; [ -n "$child" ] && kill -KILL "$child" 2>/dev/null; fi

# 2. skips: reported, and not a pass on their own
run -- skips fine
[ $rc = 0 ] && grep -q "^SKIP  skips.sh .*a fake suite that skips" "$work/out" && grep -q "^PASS  fine.sh" "$work/out" \
  && ok "exit 77 reported as a skip beside a pass" || { fail "skip beside a pass (exit $rc):"; show; }
run -- skips
[ $rc != 0 ] && grep -q "0 passed, 0 failed, 1 skipped" "$work/out" && ok "a run of nothing but skips fails" \
  || { fail "a run of only skips (exit $rc):"; show; }

# 3. a filter that matches nothing
run -- no-such-suite
[ $rc != 0 ] && grep -q "no suite matches the filter 'no-such-suite'" "$work/out" && ok "a filter matching no suite fails" \
  || { fail "a filter matching no suite (exit $rc):"; show; }

# 4. a case filter in a real unit binary
run TEST_CASE=no_such_case -- test_kv
[ $rc != 0 ] && grep -q "^FAIL  test_kv" "$work/out" && grep -q "TEST_CASE='no_such_case' selects none" "$work/out" \
  && ok "TEST_CASE selecting no case fails the binary" || { fail "TEST_CASE=no_such_case (exit $rc):"; show; }
run TEST_CASE="$case1" -- test_kv
[ $rc = 0 ] && grep -q "^PASS  test_kv" "$work/out" && grep -q "1 passed, 0 failed" "$work/out" \
  && ok "one case run by name: TEST_CASE=$case1" || { fail "TEST_CASE=$case1 (exit $rc):"; show; }
n=$(TEST_CASE="$case1" "$kv" 2>&1 | awk '/test\(s\) run\./ { print $2 }')
[ "$n" = 1 ] && ok "test_kv ran exactly that case" || fail "TEST_CASE=$case1: test_kv ran ${n:-?} cases"

# 5. a CMocka binary that ran nothing
run -- test_zero
[ $rc != 0 ] && grep -q "^FAIL  test_zero .*no test case ran" "$work/out" && ok "a binary that ran no case fails" \
  || { fail "a binary that ran no case (exit $rc):"; show; }

# 6. TEST_CASE needs a suite filter
run TEST_CASE="$case1" --
[ $rc = 2 ] && grep -q "needs a suite filter" "$work/out" && ok "TEST_CASE without a suite filter is refused" \
  || { fail "TEST_CASE without a filter (exit $rc):"; show; }

[ $failures = 0 ] || { echo "$failures runner check(s) failed"; exit 1; }
echo "# runner: all checks passed"
