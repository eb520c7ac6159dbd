#!/usr/bin/env bash
# The socket path is the user's to mistype (issue 14, item 10):
#   1. `pinferd --socket FILE` where FILE is a regular file (or a directory)
#      exits non-zero with a clear message, and the file survives byte for
#      byte (it used to be unlinked and replaced by the socket);
#   2. a client pointed at that file is told it is not a socket, and is not
#      advised to start pinferd on it;
#   3. a socket the user may not connect to: pinfer, pinfer-top and
#      pinfer-exporter all say "permission denied" (the tools used to say
#      "start pinferd").
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
work=$(mktemp -d /tmp/pinfer-sp-XXXXXX)
dpid=
failures=0

cleanup() { [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null; jobs -p | xargs -r kill -KILL 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

for b in "$build/bin/pinferd" "$pinfer" "$build/bin/pinfer-top" "$build/bin/pinfer-exporter"; do
  [ -x "$b" ] || { echo "skip: $b not built"; exit 77; }
done

# ---- 1. a regular file or a directory at --socket ---------------------------------
printf 'precious data\n\x00\x01binary too\n' >"$work/f"
cp "$work/f" "$work/f.orig"
mkdir "$work/dir"
for target in "$work/f" "$work/dir"; do
  "$build/bin/pinferd" --model "$model" --socket "$target" --state-file none >"$work/out" 2>&1 &
  p=$!
  # it exits at once, or (the bug) replaces the path with its socket
  wait_for 120 bash -c "! kill -0 $p 2>/dev/null || test -S '$target'"
  if kill -0 "$p" 2>/dev/null; then
    kill -KILL "$p"; wait "$p" 2>/dev/null
    fail "pinferd --socket $(basename "$target") started serving: $(tail -2 "$work/out")"
    continue
  fi
  wait "$p"; rc=$?
  [ $rc != 0 ] && grep -q "exists and is not a socket" "$work/out" \
    && ok "pinferd --socket <$( [ -d "$target" ] && echo directory || echo file)> refused (exit $rc): $(grep -o 'that path exists.*' "$work/out")" \
    || fail "pinferd --socket $(basename "$target"): exit $rc, said: $(cat "$work/out")"
done
cmp -s "$work/f" "$work/f.orig" && ok "the file at the path is byte-identical" || fail "the file at the path changed or vanished"
[ -d "$work/dir" ] || fail "the directory at the path vanished"

# ---- 2. a client pointed at the file ----------------------------------------------------
"$pinfer" info --socket "$work/f" >/dev/null 2>"$work/err"
if grep -q "not a socket" "$work/err" && ! grep -q "start it with" "$work/err"; then
  ok "pinfer info --socket <file>: $(cat "$work/err")"
else
  fail "pinfer info --socket <file> said: $(cat "$work/err")"
fi
cmp -s "$work/f" "$work/f.orig" || fail "the file changed after the client's attempt"

# ---- 3. permission denied, in every tool ------------------------------------------------------
if ! command -v setpriv >/dev/null || [ "$(id -u)" != 0 ]; then
  echo "# (permission checks skipped: need root and setpriv to act as another user)"
  [ $failures -eq 0 ]; exit
fi
chmod 755 "$work"
sock=$work/d.sock
"$build/bin/pinferd" --model "$model" --socket "$sock" --socket-mode 0600 --state-file none >"$work/d.log" 2>&1 &
dpid=$!
wait_for 120 test -S "$sock" || { echo "pinferd did not start:"; cat "$work/d.log"; exit 1; }
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
nobody "$pinfer" info --socket "$sock" >/dev/null 2>"$work/err.pinfer"
grep -q "permission denied connecting to" "$work/err.pinfer" && ok "pinfer: $(cat "$work/err.pinfer")" \
  || fail "pinfer as another user said: $(cat "$work/err.pinfer")"
nobody "$build/bin/pinfer-top" --once --socket "$sock" >/dev/null 2>"$work/err.top"
grep -q "permission denied connecting to" "$work/err.top" && ok "pinfer-top: $(cat "$work/err.top")" \
  || fail "pinfer-top as another user said: $(cat "$work/err.top")"
# (setpriv itself, not the function: $! must be the exporter's pid)
setpriv --reuid=65534 --regid=65534 --clear-groups "$build/bin/pinfer-exporter" --listen 127.0.0.1:0 --socket "$sock" \
  2>"$work/exp.log" &
exp=$!
if wait_for 30 grep -qs "serving http://127.0.0.1:[0-9]*/metrics" "$work/exp.log"; then
  url=$(grep -o "http://127.0.0.1:[0-9]*" "$work/exp.log" | head -1)
  body=$(curl -s "$url/metrics")
  echo "$body" | grep -q "permission denied connecting to" && ok "pinfer-exporter: $body" \
    || fail "pinfer-exporter as another user answered: $body"
else
  fail "pinfer-exporter did not start: $(cat "$work/exp.log")"
fi
kill -TERM "$exp" 2>/dev/null; wait "$exp" 2>/dev/null
kill -TERM "$dpid"; wait "$dpid"; dpid=
[ $failures -eq 0 ]
