#!/usr/bin/env bash
# Huge text prompts do not stall other clients (issue 14, item 3): a prompt
# too long for the context is refused before it is tokenized; long prompts
# are tokenized beside the engine's steps, so another client's stream keeps
# getting its tokens meanwhile (checked in tokens, not time, by
# BUILD/it/bigprompt — see tests/integration/bigprompt.c).  Then a client
# that dies with long prompts still being tokenized leaves nothing behind.
#
# Waits are for conditions with generous limits, never fixed sleeps to pass.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
work=$(mktemp -d /tmp/pinfer-it-XXXXXX)
sock=$work/d.sock
log=$work/pinferd.log
dpid=
failures=0

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

if [ ! -x "$build/it/bigprompt" ]; then echo "skip: BUILD/it/bigprompt is not built"; exit 77; fi

rm -f "$sock"
# a 2048-token context: prompts over ~160 KiB are refused unread, 128 KiB
# ones are tokenized (~0.4 s each here) and then refused
"$build/bin/pinferd" --model "$model" --socket "$sock" --kv-memory 64M --max-model-len 2048 --log-level info \
  >>"$log" 2>&1 &
dpid=$!
wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$log"; exit 1; }

if timeout 600 "$build/it/bigprompt" --socket "$sock" --prompts 12 --bytes 131072 --huge 4194304 --min-per-prompt 1 \
  >"$work/bp.out" 2>&1; then
  grep -v "^attacking" "$work/bp.out"
else
  cat "$work/bp.out"; fail "bigprompt"
fi

# a client killed while its long prompts are queued for tokenizing: the
# daemon stays up, serves the next client, and holds no request of it
"$build/it/bigprompt" --socket "$sock" --prompts 12 --bytes 131072 --huge 4194304 >"$work/bp2.out" 2>&1 &
bp=$!
wait_for 120 grep -q "^attacking" "$work/bp2.out" || fail "the second attacker never submitted: $(cat "$work/bp2.out")"
kill -KILL "$bp" 2>/dev/null; wait "$bp" 2>/dev/null
wait_for 60 bash -c "grep 'gone:' '$log' | tail -1 | grep -q 'KV blocks in use 0 of'" \
  && ok "a client killed with prompts being tokenized: its requests gone, no KV blocks held" \
  || fail "after the killed client: $(grep 'gone:' "$log" | tail -2)"
out=$(timeout 120 "$build/bin/pinfer" generate --socket "$sock" --temperature 0 --max-tokens 8 --ignore-eos "Say hello." 2>&1)
[ -n "$out" ] && kill -0 "$dpid" && ok "pinferd still serves: $out" || fail "pinferd after the killed client: $out"

kill -TERM "$dpid"; wait "$dpid"; drc=$?; dpid=
[ $drc = 0 ] && ok "SIGTERM stopped pinferd" || fail "pinferd exit status $drc after SIGTERM"
if [ $failures -gt 0 ]; then echo "--- pinferd log (tail)"; tail -30 "$log"; exit 1; fi
exit 0
