#!/usr/bin/env bash
# Registrations that never finish must not stop pinferd serving anyone else
# (issue 14, item 1).  While a peer trickles a valid hello one byte every
# 1.5 s (84 s for all 56 bytes) and others connect and say nothing:
#   1. `pinfer info` answers and new clients register and stream;
#   2. a streaming client killed with kill -9 is noticed: its request is
#      cancelled and every KV block returns to the pool;
#   3. the slow peers are dropped at their --handshake-timeout deadline,
#      a total from connect, not a timeout per read that each byte restarts.
# Run with both control loops: io_uring, and poll(2) (PINFER_NO_IO_URING=1).
# Waits are for conditions with generous limits, never fixed sleeps to pass.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
work=$(mktemp -d /tmp/pinfer-hs-XXXXXX)
sock=$work/d.sock
dpid=
failures=0
hs_timeout=30

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; jobs -p | xargs -r kill -KILL 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

if [ ! -x "$build/it/slowpeer" ] || [ ! -x "$pinfer" ]; then echo "skip: slowpeer or pinfer not built"; exit 77; fi

run_mode() { # label
  local label=$1 log=$work/pinferd.$1.log
  rm -f "$sock"
  "$build/bin/pinferd" --model "$model" --socket "$sock" --kv-memory 96M --state-file none \
    --handshake-timeout "$hs_timeout" --log-level info >"$log" 2>&1 &
  dpid=$!
  wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$log"; exit 1; }
  if [ -n "${PINFER_NO_IO_URING:-}" ]; then
    grep -q "poll(2) control loop" "$log" || fail "$label: the daemon does not say it runs the poll(2) loop"
  fi

  "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 1500 --ignore-eos "Tell me a long story." \
    >"$work/victim" 2>/dev/null &
  local victim=$!
  wait_for 120 test -s "$work/victim" || fail "$label: the streaming client produced nothing"

  "$build/it/slowpeer" --socket "$sock" --mode trickle --interval 1.5 >"$work/trickle" 2>&1 &
  for i in 1 2 3; do "$build/it/slowpeer" --socket "$sock" --mode silent --seconds 120 >"$work/silent.$i" 2>&1 & done
  wait_for 30 bash -c "grep -q connected '$work/trickle' && grep -q connected '$work/silent.3'" \
    || fail "$label: the slow peers did not connect"

  # 1. others are served while the slow handshakes are pending
  if timeout 60 "$pinfer" info --socket "$sock" >"$work/info" 2>&1; then
    ok "$label: pinfer info answered while 4 peers held unfinished handshakes"
  else
    fail "$label: pinfer info failed: $(cat "$work/info")"
  fi
  local pids=() i
  for i in 1 2 3 4; do
    timeout 120 "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 8 --ignore-eos "Say hello." \
      >"$work/gen.$i" 2>&1 & pids+=($!)
  done
  local good=0
  for i in "${!pids[@]}"; do wait "${pids[$i]}" && [ -s "$work/gen.$((i + 1))" ] && good=$((good + 1)); done
  [ $good = 4 ] && ok "$label: 4 new clients registered and streamed" || fail "$label: only $good of 4 new clients were served"

  # 2. a killed client's blocks come back while the slow peers wait
  kill -KILL "$victim"
  wait_for 60 bash -c "grep 'gone: 1 requests cancelled' '$log' | tail -1 | grep -q 'KV blocks in use 0 of'" \
    && ok "$label: killed client's request cancelled, every block back in the pool" \
    || { fail "$label: the killed client's blocks were not freed"; grep "gone:" "$log" | tail -3; }

  # the checks above ran while the peers' handshakes were pending
  if grep -q dropped "$work/trickle" "$work"/silent.*; then
    fail "$label: a slow peer was dropped before the checks finished (machine too slow for a ${hs_timeout}s deadline?)"
  fi

  # 3. every slow peer dropped at its deadline, long before 56 bytes at 1.5 s each
  wait_for 90 bash -c "grep -q dropped '$work/trickle' && grep -q dropped '$work/silent.1' && grep -q dropped '$work/silent.2' && grep -q dropped '$work/silent.3'" \
    || fail "$label: slow peers not dropped: $(cat "$work/trickle" "$work"/silent.*)"
  local sent
  sent=$(sed -n 's/^dropped after \([0-9]*\) bytes.*/\1/p' "$work/trickle")
  if [ -n "$sent" ] && [ "$sent" -lt 56 ] && grep -q "handshake-timeout" "$work/trickle"; then
    ok "$label: trickling peer dropped at the deadline after $sent of 56 bytes: $(grep dropped "$work/trickle" | sed 's/^dropped after [0-9]* bytes: //')"
  else
    fail "$label: trickling peer: $(cat "$work/trickle")"
  fi
  grep -q "handshake-timeout" "$work/silent.1" && ok "$label: silent peers dropped at the deadline" \
    || fail "$label: silent peer: $(cat "$work/silent.1")"

  kill -TERM "$dpid"; wait "$dpid"; local drc=$?; dpid=
  [ $drc = 0 ] || fail "$label: pinferd exit status $drc after SIGTERM"
  if [ $failures -gt 0 ]; then echo "--- pinferd log ($label, tail)"; tail -30 "$log"; fi
}

run_mode io_uring
PINFER_NO_IO_URING=1 run_mode poll
[ $failures -eq 0 ]
