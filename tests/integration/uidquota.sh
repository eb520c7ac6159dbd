#!/usr/bin/env bash
# Quotas per user, not per connection (issue 14, item 5).  One process
# opening many connections used to take every --max-clients slot (and a
# token/KV quota per connection):
#   1. one uid gets --max-clients-per-uid registrations, the next is refused
#      with a message naming the option, and another uid still registers;
#   2. the token quota of a uid counts all of its connections
#      (--max-tokens-per-uid), and another uid has its own;
#   3. --trusted-uid UID:FACTOR gives a multiplexing client FACTOR times the
#      per-uid share (and --max-clients still holds).
# Another user is played by setpriv (root needed; skipped otherwise).
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
work=$(mktemp -d /tmp/pinfer-uq-XXXXXX)
sock=$work/d.sock
dpid=
failures=0

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; jobs -p | xargs -r kill -KILL 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

[ -x "$build/it/manyclients" ] && [ -x "$pinfer" ] || { echo "skip: manyclients or pinfer not built"; exit 77; }
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then echo "skip: needs root and setpriv (a second uid)"; exit 77; fi
chmod 755 "$work"
other() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

start_daemon() {
  rm -f "$sock"
  "$build/bin/pinferd" --model "$model" --socket "$sock" --socket-mode 0666 --kv-memory 96M --state-file none \
    --max-clients 16 --log-level info "$@" >>"$work/pinferd.log" 2>&1 &
  dpid=$!
  wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$work/pinferd.log"; exit 1; }
}
stop_daemon() { kill -TERM "$dpid"; wait "$dpid"; dpid=; }

# ---- 1. clients per uid ------------------------------------------------------------
start_daemon --max-clients-per-uid 4
"$build/it/manyclients" --socket "$sock" --n 16 >"$work/many" 2>&1 &
many=$!
wait_for 60 grep -q "^registered" "$work/many" || fail "manyclients said nothing"
if grep -q "^registered 4 of 16" "$work/many" && grep -q "max-clients-per-uid" "$work/many"; then
  ok "one uid, 16 connections: $(tr '\n' ' ' <"$work/many")"
else
  fail "one uid, 16 connections: $(cat "$work/many")"
fi
other "$pinfer" info --socket "$sock" >"$work/other" 2>&1 && ok "another uid still registers while the first holds its share" \
  || fail "another uid was refused: $(cat "$work/other")"
kill -KILL "$many"; wait "$many" 2>/dev/null
# the slots come back when the connections go
wait_for 30 bash -c "'$build/it/manyclients' --socket '$sock' --n 4 --seconds 0 | grep -q '^registered 4 of 4'" \
  && ok "the uid's slots came back when its clients went" || fail "the uid's slots did not come back"
stop_daemon

# ---- 2. tokens per uid ------------------------------------------------------------------
start_daemon --max-tokens-per-uid 400 --max-tokens-per-client 1000
"$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 300 --ignore-eos "Tell me a story." >"$work/a" 2>/dev/null &
a=$!
wait_for 120 test -s "$work/a" || fail "the first request produced nothing"
"$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 300 --ignore-eos "Tell me a story." >/dev/null 2>"$work/b.err"
grep -q "uid token quota.*--max-tokens-per-uid" "$work/b.err" && ok "same uid, second connection: $(tail -1 "$work/b.err")" \
  || fail "a second connection of the same uid was not held to the uid's quota: $(cat "$work/b.err")"
other "$pinfer" generate --socket "$sock" --temperature 0 --max-tokens 8 --ignore-eos "Say hello." >"$work/c" 2>"$work/c.err" \
  && [ -s "$work/c" ] && ok "another uid's request runs beside it" || fail "another uid was refused: $(cat "$work/c.err")"
kill -KILL "$a"; wait "$a" 2>/dev/null
stop_daemon

# ---- 3. a trusted multiplexing uid ---------------------------------------------------------
start_daemon --max-clients-per-uid 4 --trusted-uid 0:3
"$build/it/manyclients" --socket "$sock" --n 16 --seconds 0 >"$work/many" 2>&1
grep -q "^registered 12 of 16" "$work/many" && ok "--trusted-uid 0:3: $(head -1 "$work/many")" \
  || fail "--trusted-uid 0:3: $(cat "$work/many")"
stop_daemon
start_daemon --max-clients-per-uid 4 --trusted-uid 0
"$build/it/manyclients" --socket "$sock" --n 20 --seconds 0 >"$work/many" 2>&1
grep -q "^registered 16 of 20" "$work/many" && grep -q "maximum number of clients" "$work/many" \
  && ok "--trusted-uid 0: no per-uid limit, --max-clients holds: $(tr '\n' ' ' <"$work/many")" \
  || fail "--trusted-uid 0: $(cat "$work/many")"
stop_daemon
[ $failures -eq 0 ]
