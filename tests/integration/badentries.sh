#!/usr/bin/env bash
# Malformed submissions count per uid and survive a reconnect (issue 14,
# item 3): a client disconnected for more than 256 of them that comes back
# is disconnected again at its next one — the limit no longer resets when
# it reconnects — while a well-behaved client of the same uid is served.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
hostile=$build/it/hostile
work=$(mktemp -d /tmp/pinfer-bad-XXXXXX)
sock=$work/d.sock
log=$work/pinferd.log
dpid=
failures=0

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

[ -x "$hostile" ] || { echo "skip: hostile not built"; exit 77; }
need_model "$model"

"$build/bin/pinferd" --model "$model" --socket "$sock" --kv-memory 96M --state-file none --log-level info >"$log" 2>&1 &
dpid=$!
wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$log"; exit 1; }

out=$("$hostile" --socket "$sock" --seconds 120 --mode malformed300)
echo "$out" | grep -q "disconnected after 25[7-9]\|disconnected after 2[6-9][0-9]" \
  && ok "first connection: $out" || fail "first connection: $out"
out=$("$hostile" --socket "$sock" --seconds 60 --mode malformed10)
echo "$out" | grep -q "disconnected after [1-9] \|disconnected after 10 " \
  && ok "reconnected, same uid: $out (the limit did not reset)" || fail "reconnected, same uid: $out"
wait_for 30 grep -q "malformed submissions (.* by its uid), disconnecting" "$log" \
  && ok "logged: $(grep -o 'malformed submissions (.* by its uid), disconnecting' "$log" | tail -1)" \
  || fail "no disconnect logged"
reply=$(timeout 120 "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 4 "Hi" 2>&1)
[ -n "$reply" ] && ! echo "$reply" | grep -qi error && ok "a well-behaved client of the same uid is served: $reply" \
  || fail "well-behaved client: $reply"
kill -TERM "$dpid"; wait "$dpid"; rc=$?; dpid=
[ $rc = 0 ] && ok "pinferd exits 0" || fail "pinferd exit $rc"
[ $failures = 0 ]
