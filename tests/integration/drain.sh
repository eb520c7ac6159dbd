#!/usr/bin/env bash
# Drain, persistence and reload against a real pinferd on SmolLM2.
#
#   1. SIGTERM mid-generation with several clients (greedy, seeded sampling,
#      n = 2): pinferd saves their requests, exits 0; a new pinferd restores
#      them; the clients (pinfer generate) reconnect by themselves and their
#      whole outputs equal uninterrupted runs byte for byte
#   2. a drain with nothing running leaves no state file
#   3. corrupt state files (truncations, bit flips, garbage, empty): each is
#      reported, moved aside (kept), and the daemon starts clean and serves
#   4. SIGHUP reloads the config file: changed run-time options are applied
#      and named, restart-only ones are named and ignored, a broken file keeps
#      the running configuration
#
# Waits are for conditions with generous limits, never fixed sleeps to pass.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
work=$(mktemp -d /tmp/pinfer-drain-XXXXXX)
sock=$work/d.sock
log=$work/pinferd.log
state=$work/pinferd.state
dpid=
failures=0

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_model "$model"
start_daemon() { # extra pinferd options...
  rm -f "$sock"
  "$build/bin/pinferd" --model "$model" --socket "$sock" --kv-memory 96M --state-file "$state" --drain-timeout 1 \
    --log-level info "$@" >>"$log" 2>&1 &
  dpid=$!
  wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; tail -20 "$log"; exit 1; }
}
moved_aside() { # the corrupt state file reported and moved aside, none left in place
  grep -q "moved it to .*corrupt" "$log" && ls "$state".corrupt-* >/dev/null 2>&1 && [ ! -e "$state" ]
}
stop_daemon() { # -> exit status
  kill -TERM "$dpid"; wait "$dpid"; local rc=$?; dpid=; return $rc
}

if [ ! -x "$pinfer" ]; then echo "skip: the pinfer client is not built"; exit 77; fi
start_daemon

# ---- 1. drain mid-generation, restart, resume ------------------------------------------
args=(
  "--temperature 0 --max-tokens 300 --ignore-eos|Tell me about the sea."
  "--temperature 0.8 --top-k 40 --top-p 0.9 --seed 7 --max-tokens 300 --ignore-eos|Write a poem about rain."
  "--temperature 0.7 --seed 3 -n 2 --max-tokens 200 --ignore-eos|Name some colours."
)
for i in "${!args[@]}"; do
  IFS='|' read -r opts prompt <<<"${args[$i]}"
  # shellcheck disable=SC2086 # options are meant to split
  timeout 300 "$pinfer" generate --socket "$sock" $opts "$prompt" >"$work/ref.$i" 2>/dev/null || fail "reference run $i failed"
done
pids=()
for i in "${!args[@]}"; do
  IFS='|' read -r opts prompt <<<"${args[$i]}"
  # shellcheck disable=SC2086
  timeout 300 "$pinfer" generate --socket "$sock" $opts "$prompt" >"$work/out.$i" 2>"$work/err.$i" & pids+=($!)
done
# the streaming clients are mid-reply
wait_for 60 bash -c "[ \$(wc -c <'$work/out.0') -gt 40 ] && [ \$(wc -c <'$work/out.1') -gt 40 ]" || fail "no output before the drain"
stop_daemon && ok "SIGTERM: pinferd drained and exited 0" || fail "pinferd exit status $? after SIGTERM"
grep -q "saved 3 unfinished requests" "$log" && ok "$(grep -o 'saved 3 unfinished.*' "$log" | head -1)" \
  || { fail "the requests were not saved"; grep -E "saved|drain" "$log" | tail -3; }
test -s "$state" && ok "state file written ($(stat -c %s "$state") bytes, mode $(stat -c %a "$state"))" || fail "no state file"
cp "$state" "$work/good.state" 2>/dev/null
start_daemon
wait_for 60 grep -q "restored 3 requests" "$log" && ok "the new pinferd restored them" || fail "not restored: $(grep restored "$log")"
wait_for 60 test ! -e "$state" && ok "the loaded state file was removed" || fail "state file still there after loading"
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"; rc=$?
  if [ $rc = 0 ] && cmp -s "$work/out.$i" "$work/ref.$i"; then ok "client $i resumed; its output equals the uninterrupted run's ($(wc -c <"$work/ref.$i") bytes)"
  else fail "client $i (exit $rc) differs from its uninterrupted run: $(tail -2 "$work/err.$i")"; diff <(head -c 400 "$work/ref.$i") <(head -c 400 "$work/out.$i") | head -5; fi
done
wait_for 60 bash -c "[ \$(grep -c 'resumed a saved request' '$log') = 3 ]" && ok "three requests resumed" || fail "resumed $(grep -c 'resumed a saved request' "$log") of 3"

# ---- 2. a second drain with nothing running leaves no state file ---------------------------
stop_daemon || fail "second drain failed"
test ! -e "$state" && ok "nothing running: no state file" || fail "a state file appeared with nothing to save"

# ---- 3. corrupt state files ---------------------------------------------------------------
size=$(stat -c %s "$work/good.state")
variants=("trunc:0" "trunc:10" "trunc:63" "trunc:64" "trunc:$((size / 2))" "trunc:$((size - 1))"
          "flip:0" "flip:20" "flip:70" "flip:$((size - 5))" "garbage:1000")
for v in "${variants[@]}"; do
  kind=${v%%:*}; n=${v#*:}
  rm -f "$state" "$state".corrupt-*
  case $kind in
    trunc) head -c "$n" "$work/good.state" >"$state";;
    flip) cp "$work/good.state" "$state"
          b=$(od -An -tu1 -j "$n" -N1 "$state" | tr -d ' ')
          printf "$(printf '\\%03o' $((b ^ 4)))" | dd of="$state" bs=1 seek="$n" conv=notrunc 2>/dev/null;;
    garbage) head -c "$n" /dev/urandom >"$state";;
  esac
  : >"$log"
  start_daemon
  # (the daemon reports the file just after its socket appears, not before)
  if wait_for 60 moved_aside; then
    reply=$(timeout 120 "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 4 "Hi" 2>/dev/null)
    [ -n "$reply" ] && ok "$v: $(grep -o 'error: .*' "$log" | head -1 | cut -c1-160)" || fail "$v: daemon does not serve"
  else
    fail "$v: not reported and moved aside: $(grep -iE 'state|error' "$log" | head -3)"
  fi
  stop_daemon || fail "$v: daemon exit status $?"
done

# ---- 4. SIGHUP reload ------------------------------------------------------------------------
conf=$work/pinferd.conf
# (options given as flags win over the file, so change ones start_daemon does not pass)
printf 'max-inflight = 4\nstall-timeout = 30\n' >"$conf"
: >"$log"
start_daemon --config "$conf"
printf 'max-inflight = 2\nstall-timeout = 45\nblock-size = 32\n' >"$conf"
kill -HUP "$dpid"
wait_for 30 grep -q "SIGHUP: configuration reloaded" "$log" && grep -q "max-inflight 4 -> 2, stall-timeout 30 -> 45" "$log" \
  && ok "SIGHUP: $(grep -o 'configuration reloaded:.*' "$log")" || fail "reload not reported: $(grep SIGHUP "$log")"
wait_for 30 grep -q "KV pool changed but can only change with a restart" "$log" && ok "restart-only change named and ignored" \
  || fail "restart-only change not reported"
"$build/it/hostile" --socket "$sock" --seconds 30 --mode quota >"$work/quota.out" 2>&1 && grep -q "limit 2 per client" "$work/quota.out" \
  && ok "new quota in force: $(cat "$work/quota.out")" || fail "quota after reload: $(cat "$work/quota.out")"
printf 'max-inflight = lots\n' >"$conf"
kill -HUP "$dpid"
wait_for 30 grep -q "keeping the running one" "$log" && ok "a broken config file keeps the running configuration" \
  || fail "broken config on SIGHUP: $(grep SIGHUP "$log" | tail -1)"
kill -0 "$dpid" 2>/dev/null && ok "pinferd still serving after the reloads" || fail "pinferd died on SIGHUP"
stop_daemon || fail "final drain failed"

if [ $failures -gt 0 ]; then echo "--- pinferd log (tail)"; tail -30 "$log"; exit 1; fi
exit 0
