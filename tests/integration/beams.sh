#!/usr/bin/env bash
# Beam search through pinferd and the pinfer CLI (issue 14, items 6 and 8).
#
#   1. --beam-width 2 --max-tokens 5 --json: exactly one FINISHED per
#      hypothesis, reason "length" (they hit max_tokens), 5 tokens each,
#      `last` on the final one only — no extra FINISHED for index 0
#   2. on a 5-block pool (--kv-memory 2M), 4 beams x 60 tokens cannot fit:
#      refused at once with the numbers (ENOSPC), not hung; beams that fit
#      run to the end
#
# Waits are for conditions with generous limits, never fixed sleeps to pass.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
work=$(mktemp -d /tmp/pinfer-it-XXXXXX)
sock=$work/d.sock
log=$work/pinferd.log
dpid=
failures=0

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

if [ ! -x "$pinfer" ]; then echo "skip: the pinfer client is not built"; exit 77; fi

start_daemon() {
  rm -f "$sock"
  "$build/bin/pinferd" --model "$model" --socket "$sock" --log-level info "$@" >>"$log" 2>&1 &
  dpid=$!
  wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$log"; exit 1; }
}
stop_daemon() { kill -TERM "$dpid"; wait "$dpid"; dpid=; }

# ---- 1. one FINISHED per hypothesis --------------------------------------------------
start_daemon --kv-memory 64M
timeout 120 "$pinfer" generate --socket "$sock" --beam-width 2 --max-tokens 5 --ignore-eos --json "Hello world" \
  >"$work/beam.json" 2>"$work/beam.err"
rc=$?
fin=$(grep -c '"event":"finished"' "$work/beam.json")
want='{"index":0,"reason":"length","last":false,"gen":5}
{"index":1,"reason":"length","last":true,"gen":5}'
got=$(grep '"event":"finished"' "$work/beam.json" \
  | sed -E 's/.*"index":([0-9]+),"reason":"([a-z]+)","last":(true|false),.*"generated_tokens":([0-9]+).*/{"index":\1,"reason":"\2","last":\3,"gen":\4}/')
if [ $rc = 0 ] && [ "$got" = "$want" ]; then
  ok "beam width 2: $fin FINISHED events, one per hypothesis, reason length, last on the final one"
else
  fail "beam events (rc $rc): wanted"; echo "$want"; echo "got:"; cat "$work/beam.json" "$work/beam.err"
fi
stop_daemon

# ---- 2. beams that cannot fit the pool --------------------------------------------------
start_daemon --kv-memory 2M
timeout 60 "$pinfer" generate --socket "$sock" --beam-width 4 --max-tokens 60 "Hello world" >"$work/nofit.out" 2>"$work/nofit.err"
rc=$?
if [ $rc != 0 ] && [ $rc != 124 ] && grep -q "need [0-9]* KV blocks, the pool has 5" "$work/nofit.err"; then
  ok "4 beams x 60 tokens on 5 blocks refused: $(tail -1 "$work/nofit.err")"
else
  fail "beams that cannot fit: rc $rc (124: hung), said: $(cat "$work/nofit.err")"
fi
timeout 120 "$pinfer" generate --socket "$sock" --beam-width 2 --max-tokens 8 --ignore-eos "Hello world" >"$work/fit.out" 2>"$work/fit.err"
rc=$?
[ $rc = 0 ] && [ -s "$work/fit.out" ] && ok "2 beams x 8 tokens on the same pool finish" || fail "beams that fit: rc $rc: $(cat "$work/fit.err")"
stop_daemon

if [ $failures -gt 0 ]; then echo "--- pinferd log (tail)"; tail -30 "$log"; exit 1; fi
exit 0
