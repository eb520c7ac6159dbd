#!/usr/bin/env bash
# Ctrl-Z and fg do not cancel a reply; Ctrl-C does (issue 14, item 9).
#
# SIGSTOP + SIGCONT make an io_uring wait return -EINTR, which pinfer_stream
# took for the user's interrupt: the reply was cut with exit 130.  Here a
# `pinfer generate --max-tokens 200` is stopped and continued several times
# while it streams, in each way the client can sleep (io_uring, plain futex,
# eventfd poll); it must end with exit 0 and the same 200 tokens as an
# undisturbed run.  A SIGINT still cancels at once (exit 130).
#
# Waits are for conditions (process state, output growth) with generous
# limits, never fixed sleeps to pass.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
work=$(mktemp -d /tmp/pinfer-it-XXXXXX)
sock=$work/d.sock
log=$work/pinferd.log
dpid=
failures=0
cycles=${PF_IT_STOP_CYCLES:-6}

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

if [ ! -x "$pinfer" ]; then echo "skip: the pinfer client is not built"; exit 77; fi

rm -f "$sock"
"$build/bin/pinferd" --model "$model" --socket "$sock" --kv-memory 64M --log-level info >>"$log" 2>&1 &
dpid=$!
wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$log"; exit 1; }

prompt="Tell me a story about a lighthouse keeper."

state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null; }
stopped() { [ "$(state "$1")" = T ]; }
running() { local s; s=$(state "$1"); [ -n "$s" ] && [ "$s" != T ]; }
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
grown() { [ "$(size "$1")" -gt "$2" ]; }
gone() { ! kill -0 "$1" 2>/dev/null; }

timeout 300 "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 200 --ignore-eos "$prompt" \
  >"$work/ref" 2>"$work/ref.err" || fail "reference run failed: $(cat "$work/ref.err")"

for mode in uring futex eventfd; do
  case $mode in
    uring) env=() ;;
    futex) env=(PINFER_NO_IO_URING=1) ;;
    eventfd) env=(PINFER_WAIT=eventfd) ;;
  esac
  out=$work/out.$mode
  env "${env[@]}" "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 200 --ignore-eos "$prompt" \
    >"$out" 2>"$out.err" &
  p=$!
  wait_for 120 test -s "$out" || fail "$mode: no output before the first stop"
  done_cycles=0
  for i in $(seq 1 "$cycles"); do
    gone "$p" && break
    kill -STOP "$p" 2>/dev/null || break
    wait_for 30 stopped "$p" || { gone "$p" || fail "$mode: cycle $i: the client did not stop"; break; }
    before=$(size "$out")
    kill -CONT "$p"
    wait_for 30 running "$p" || gone "$p" || { fail "$mode: cycle $i: the client did not continue"; break; }
    done_cycles=$i
    # let it stream a little (and sleep again) before the next stop
    wait_for 60 grown "$out" "$before" || gone "$p" || { fail "$mode: cycle $i: no output after SIGCONT"; break; }
  done
  wait_for 300 gone "$p" || { fail "$mode: the client never finished"; kill -KILL "$p"; }
  wait "$p"; rc=$?
  if [ $rc = 0 ] && cmp -s "$out" "$work/ref" && grep -q "generated 200" "$out.err"; then
    ok "$mode: $done_cycles SIGSTOP/SIGCONT cycles, exit 0, the same 200 tokens as undisturbed"
  else
    fail "$mode: after $done_cycles stop/continue cycles: exit $rc, $(wc -c <"$out") of $(wc -c <"$work/ref") bytes: $(tail -2 "$out.err")"
  fi
done

# a real Ctrl-C still cancels
"$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 1000 --ignore-eos "$prompt" >"$work/int" 2>"$work/int.err" &
p=$!
wait_for 120 test -s "$work/int" || fail "no output before SIGINT"
kill -INT "$p"
wait_for 60 gone "$p" || { fail "SIGINT did not end the client"; kill -KILL "$p"; }
wait "$p"; rc=$?
[ $rc = 130 ] && grep -q "interrupted" "$work/int.err" && ok "SIGINT cancels: exit 130, $(tail -1 "$work/int.err")" \
  || fail "SIGINT: exit $rc: $(cat "$work/int.err")"

kill -TERM "$dpid"; wait "$dpid"; dpid=
if [ $failures -gt 0 ]; then echo "--- pinferd log (tail)"; tail -30 "$log"; exit 1; fi
exit 0
