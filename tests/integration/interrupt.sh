#!/usr/bin/env bash
# Ctrl-C on a foreground pinferd (issue 14, item 11): the first SIGINT
# drains and says so, the drain logs its progress, and a second SIGINT
# saves the requests still running and exits at once — not after the whole
# --drain-timeout (here 600 s).  The same for two SIGTERMs.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
work=$(mktemp -d /tmp/pinfer-int-XXXXXX)
sock=$work/d.sock
dpid=
failures=0

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; jobs -p | xargs -r kill -KILL 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

[ -x "$pinfer" ] || { echo "skip: pinfer not built"; exit 77; }

run() { # SIGNAL
  local sig=$1 log=$work/pinferd.$1.log
  rm -f "$sock" "$work/state"
  "$build/bin/pinferd" --model "$model" --socket "$sock" --kv-memory 96M --state-file "$work/state" \
    --drain-timeout 600 --log-level info >"$log" 2>&1 &
  dpid=$!
  wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$log"; exit 1; }
  # long enough to be still running when the second signal comes
  "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 4000 --ignore-eos "Tell me a long story." \
    >"$work/out.$sig" 2>"$work/err.$sig" &
  local client=$!
  wait_for 120 test -s "$work/out.$sig" || fail "$sig: the client produced nothing"

  kill -"$sig" "$dpid"
  wait_for 30 grep -q "draining (no new clients" "$log" && ok "$sig: $(grep -o 'draining (no new clients.*' "$log")" \
    || fail "$sig: no drain announced"
  wait_for 30 grep -q "draining: 1 requests of 1 clients still running" "$log" \
    && ok "$sig: progress: $(grep -o 'draining: 1 requests.*' "$log" | head -1)" || fail "$sig: no drain progress in the log"

  kill -"$sig" "$dpid"
  if wait_for 60 bash -c "! kill -0 $dpid 2>/dev/null"; then
    wait "$dpid"; local rc=$?
    [ $rc = 0 ] && ok "$sig: the second signal stopped pinferd (exit 0)" || fail "$sig: pinferd exit status $rc"
  else
    fail "$sig: a second $sig did not stop pinferd within 60 s (drain timeout 600 s)"
  fi
  dpid=
  grep -q "drain cut short: saving the requests still running" "$log" && grep -q "saved 1 unfinished requests" "$log" \
    && [ -s "$work/state" ] && ok "$sig: the running request was saved to the state file" \
    || { fail "$sig: the running request was not saved"; tail -5 "$log"; }
  # (the client waits to reattach to the next pinferd and resume)
  kill -KILL "$client" 2>/dev/null; wait "$client" 2>/dev/null
}

run INT
run TERM
[ $failures -eq 0 ]
