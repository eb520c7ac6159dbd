#!/usr/bin/env bash
# A client must not be able to block pinferd's wake of it (issue 14, item 2).
# The hostile client makes its wake descriptor blocking and saturates it if
# it can write it (with an eventfd shared with the daemon it could: the
# daemon's next write(2) blocked its engine thread for good), then keeps
# requests running while asking for eventfd wakes.  Meanwhile:
#   1. another client streams its exact greedy reply;
#   2. the attacker's own requests keep finishing;
#   3. SIGTERM still drains and stops the daemon.
# Run without io_uring (PINFER_NO_IO_URING=1: the daemon wakes by write(2),
# the path that blocked) and with it.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
work=$(mktemp -d /tmp/pinfer-wake-XXXXXX)
sock=$work/d.sock
dpid=
failures=0

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; jobs -p | xargs -r kill -KILL 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

if [ ! -x "$build/it/hostile" ] || [ ! -x "$pinfer" ]; then echo "skip: hostile or pinfer not built"; exit 77; fi

gen() { timeout 120 "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 16 --ignore-eos "Say hello." 2>/dev/null; }

run_mode() { # label
  local label=$1 log=$work/pinferd.$1.log
  rm -f "$sock"
  "$build/bin/pinferd" --model "$model" --socket "$sock" --kv-memory 96M --state-file none --drain-timeout 5 \
    --log-level info >"$log" 2>&1 &
  dpid=$!
  wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$log"; exit 1; }
  if [ -n "${PINFER_NO_IO_URING:-}" ]; then
    grep -q "io_uring unavailable" "$log" || fail "$label: the daemon did not fall back to write(2) wakes"
  fi
  gen >"$work/ref.$label"
  [ -s "$work/ref.$label" ] || fail "$label: no reply before the attack"

  "$build/it/hostile" --socket "$sock" --mode wakeblock --seconds 15 >"$work/attack" 2>&1 &
  local h=$!
  local i ok_n=0
  for i in 1 2 3; do
    gen >"$work/during.$i"
    cmp -s "$work/during.$i" "$work/ref.$label" || break
    ok_n=$((ok_n + 1))
  done
  [ $ok_n = 3 ] && ok "$label: 3 clients streamed their exact reply during the attack" \
    || fail "$label: $ok_n of 3 replies during the attack were right: $(head -c 200 "$work/during.1")"
  if wait_for 60 bash -c "! kill -0 $h 2>/dev/null"; then
    wait "$h"
    local done_n
    done_n=$(sed -n 's/.* \([0-9]*\) requests finished.*/\1/p' "$work/attack")
    [ -n "$done_n" ] && [ "$done_n" -ge 2 ] && ok "$label: $(cat "$work/attack")" \
      || fail "$label: the attacker's own requests stopped: $(cat "$work/attack")"
  else
    fail "$label: the attacking client did not finish"
  fi
  kill -TERM "$dpid"
  if wait_for 60 bash -c "! kill -0 $dpid 2>/dev/null"; then
    wait "$dpid"; local drc=$?
    [ $drc = 0 ] && ok "$label: SIGTERM stopped pinferd" || fail "$label: pinferd exit status $drc after SIGTERM"
  else
    fail "$label: SIGTERM did not stop pinferd within 60 s"
  fi
  dpid=
  if [ $failures -gt 0 ]; then echo "--- pinferd log ($label, tail)"; tail -20 "$log"; fi
}

PINFER_NO_IO_URING=1 run_mode write
run_mode io_uring
[ $failures -eq 0 ]
