#!/usr/bin/env bash
# Integration and fault tests against a real pinferd on SmolLM2.
#
#   1. 32 client processes streaming at once get exactly the tokens they get alone (greedy)
#   2. kill -9 of a client mid-generation: its requests are cancelled and every
#      KV block returns (the daemon's log reports blocks in use), others unaffected
#   3. a hostile client writing garbage everywhere: daemon stays up, a normal
#      client streaming at the same time gets its exact reply
#   4. a client that never reads: paused, memory bounded, cancelled after --stall-timeout
#   5. quotas: one request over --max-inflight gets EBUSY; token and KV-block quotas refuse with numbers
#   6. daemon killed and restarted: the client gets an error (no hang); a new client works
#   7. clients of the previous protocol versions (v1, v2) are served and get the same reply
#
# The wake-up path in use is checked against the environment: by default
# io_uring where the kernel allows it; PINFER_NO_IO_URING=1 (daemon-nouring.sh)
# forces futex + poll(2) on both sides; PINFER_WAIT=eventfd (daemon-eventfd.sh)
# makes clients sleep on the daemon's wake eventfd.
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
n32=${PF_IT_CLIENTS:-32}
[ "${PF_ASAN:-0}" = 1 ] && n32=${PF_IT_CLIENTS:-8}

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_model "$model"

start_daemon() {
  rm -f "$sock"
  "$build/bin/pinferd" --model "$model" --socket "$sock" --kv-memory 96M --state-file "$work/state" --stall-timeout 3 --max-inflight 4 --cq-entries 64 \
    --max-tokens-per-client 4000 --max-blocks-per-client 140 \
    --log-level info "$@" >>"$log" 2>&1 &
  dpid=$!
  wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$log"; exit 1; }
}

# bad preemption/swap flags: a clear error naming the flag, no daemon
for bad in "--preemption-mode sometimes" "--swap-space -3G" "--swap-space lots"; do
  # shellcheck disable=SC2086
  out=$("$build/bin/pinferd" --model "$model" --socket "$work/bad.sock" $bad 2>&1) && rc=0 || rc=$?
  [ "$rc" != 0 ] && [ ! -S "$work/bad.sock" ] && echo "$out" | grep -q -- "${bad%% *}" \
    && ok "pinferd $bad refused: $(echo "$out" | head -1)" || fail "pinferd $bad: rc=$rc, said: $out"
done

gen() { # prompt max_tokens -> stdout
  timeout 300 "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens "$2" --ignore-eos "$1" 2>/dev/null
}

if [ ! -x "$pinfer" ]; then echo "skip: the pinfer client is not built"; exit 77; fi
start_daemon

# ---- 0. the wake-up path this run exercises ----------------------------------------
wait_for 30 grep -q "io_uring" "$log"
mode_line=$(grep -m1 "io_uring" "$log" | sed 's/.*pinferd info: //')
client_wait=$("$pinfer" info --socket "$sock" | sed -n 's/^waiting *//p')
if [ -n "${PINFER_NO_IO_URING:-}" ]; then
  [[ "$mode_line" == "io_uring unavailable (disabled by PINFER_NO_IO_URING"* ]] && ok "daemon fell back: $mode_line" \
    || fail "PINFER_NO_IO_URING set but the daemon says: $mode_line"
  case "$client_wait" in futex|eventfd) ok "client sleeps with $client_wait";;
    *) fail "PINFER_NO_IO_URING set but the client sleeps with '$client_wait'";; esac
else
  echo "# daemon: $mode_line; client: $client_wait"
fi
if [ "${PINFER_WAIT:-}" = eventfd ]; then
  [[ "$client_wait" == *eventfd ]] && ok "client sleeps on the wake eventfd ($client_wait)" \
    || fail "PINFER_WAIT=eventfd but the client sleeps with '$client_wait'"
fi

# ---- 1. many clients at once == alone ----------------------------------------
prompts=()
for i in $(seq 1 "$n32"); do prompts+=("Question $i: name one interesting fact about the number $((i * 7))."); done
pids=()
for i in $(seq 0 $((n32 - 1))); do gen "${prompts[$i]}" 24 >"$work/together.$i" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent client failed"; done
same=0
for i in $(seq 0 $((n32 - 1))); do
  gen "${prompts[$i]}" 24 >"$work/alone.$i"
  if [ -s "$work/alone.$i" ] && cmp -s "$work/alone.$i" "$work/together.$i"; then same=$((same + 1)); else
    echo "  client $i differs:"; echo "   together: $(head -c 200 "$work/together.$i")"; echo "   alone:    $(head -c 200 "$work/alone.$i")"; fi
done
[ "$same" = "$n32" ] && ok "$n32 concurrent clients streamed exactly what each gets alone" || fail "$same of $n32 clients matched their solo run"

# ---- 2. kill -9 a client mid-generation ----------------------------------------
"$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 1500 --ignore-eos "Tell me a long story." >"$work/victim" 2>/dev/null &
victim=$!
gen "Say hello." 16 >"$work/bystander.ref"
wait_for 120 test -s "$work/victim" || fail "victim produced nothing"
"$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 16 --ignore-eos "Say hello." >"$work/bystander" 2>/dev/null &
by=$!
kill -KILL "$victim"
wait_for 30 grep -q "requests cancelled; KV blocks in use" "$log" || fail "no cancellation logged for the killed client"
wait "$by"
cmp -s "$work/bystander" "$work/bystander.ref" && ok "bystander unaffected by the killed client" || fail "bystander output changed"
wait_for 30 bash -c "grep 'gone: 1 requests cancelled' '$log' | tail -1 | grep -q 'KV blocks in use 0 of'" \
  && ok "killed client's request cancelled, every block back in the pool" || { fail "blocks not returned"; grep "gone:" "$log" | tail -3; }

# ---- 3. hostile client alongside a normal one ------------------------------------
"$build/it/hostile" --socket "$sock" --seconds 4 --seed 11 >"$work/hostile.out" 2>&1 &
h=$!
gen "Say hello." 16 >"$work/normal"
wait "$h"; hrc=$?
[ $hrc = 0 ] && ok "hostile client: $(cat "$work/hostile.out")" || fail "hostile client check failed: $(cat "$work/hostile.out")"
cmp -s "$work/normal" "$work/bystander.ref" && ok "normal client streamed its exact reply during the attack" || fail "normal client output changed during the attack"
kill -0 "$dpid" 2>/dev/null && ok "pinferd survived the hostile client" || fail "pinferd died"

# ---- 4. a client that never reads -------------------------------------------------
"$build/it/hostile" --socket "$sock" --seconds 90 --mode noread >"$work/noread.out" 2>&1 \
  && wait_for 30 grep -q "has not read its completions" "$log" \
  && ok "$(cat "$work/noread.out"); the daemon logged the stall" || fail "stall: $(cat "$work/noread.out")"
rss=$(awk '/VmRSS/{print $2}' /proc/$dpid/status 2>/dev/null)
[ -n "$rss" ] && [ "$rss" -lt 1500000 ] && ok "daemon RSS ${rss} KiB" || fail "daemon RSS ${rss:-?} KiB"

# ---- 5. quota ------------------------------------------------------------------------
"$build/it/hostile" --socket "$sock" --seconds 30 --mode quota >"$work/quota.out" 2>&1 && ok "quota: $(cat "$work/quota.out")" || fail "quota: $(cat "$work/quota.out")"

# ---- 7. protocol v1 client ------------------------------------------------------------
"$build/it/hostile" --socket "$sock" --seconds 120 --mode v1 --proto 1 >"$work/v1" 2>"$work/v1.err"
if cmp -s "$work/v1" "$work/bystander.ref"; then ok "a protocol v1 client got the same reply as a v2 client"
else fail "v1 client: $(cat "$work/v1.err") $(head -c 200 "$work/v1")"; fi
wait_for 30 grep -q "protocol v1" "$log" && ok "the daemon registered it as protocol v1" || fail "no v1 registration logged"
# v3 (tokenize/detokenize) kept v2 clients working too
"$build/it/hostile" --socket "$sock" --seconds 120 --mode v1 --proto 2 >"$work/v2" 2>"$work/v2.err"
if cmp -s "$work/v2" "$work/bystander.ref"; then ok "a protocol v2 client got the same reply as a v3 client"
else fail "v2 client: $(cat "$work/v2.err") $(head -c 200 "$work/v2")"; fi
wait_for 30 grep -q "protocol v2" "$log" && ok "the daemon registered it as protocol v2" || fail "no v2 registration logged"

# token and KV-block quotas: refused up front with the numbers and the option to change
"$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 2300 "Hi" >/dev/null 2>"$work/qb.err"
grep -q "KV block quota.*--max-blocks-per-client" "$work/qb.err" && ok "block quota: $(tail -1 "$work/qb.err")" \
  || fail "block quota not enforced: $(cat "$work/qb.err")"
"$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 1000 -n 4 "Hi" >/dev/null 2>"$work/qt.err"
grep -q "token quota.*--max-tokens-per-client" "$work/qt.err" && ok "token quota: $(tail -1 "$work/qt.err")" \
  || fail "token quota not enforced: $(cat "$work/qt.err")"

# ---- 6. daemon killed and restarted ----------------------------------------------------
"$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 1500 --ignore-eos "Tell me a long story." >"$work/orphan" 2>"$work/orphan.err" &
orphan=$!
wait_for 120 test -s "$work/orphan" || fail "orphan produced nothing"
kill -KILL "$dpid"; wait "$dpid" 2>/dev/null; dpid=
if wait_for 15 bash -c "! kill -0 $orphan 2>/dev/null"; then
  wait "$orphan"; orc=$?
  [ $orc != 0 ] && ok "client saw the daemon go away: $(tail -1 "$work/orphan.err")" || fail "client exited 0 after the daemon died"
else
  fail "client hung after the daemon died"; kill -KILL "$orphan"
fi
start_daemon
gen "Say hello." 16 >"$work/after"
cmp -s "$work/after" "$work/bystander.ref" && ok "after a restart a new client gets the same reply" || fail "no reply after restart"

kill -TERM "$dpid"; wait "$dpid"; drc=$?; dpid=
[ $drc = 0 ] && ok "SIGTERM drained and stopped pinferd" || fail "pinferd exit status $drc after SIGTERM"
if [ $failures -gt 0 ]; then echo "--- pinferd log (tail)"; tail -30 "$log"; exit 1; fi
exit 0
