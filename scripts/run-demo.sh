#!/usr/bin/env bash
# `make run`: start pinferd on the model, stream a chat reply through the
# `pinfer` client, then stop the daemon (SIGTERM drains it).
set -euo pipefail
build=$1 model=$2
prompt=${PF_PROMPT:-"What is the capital of France? Answer in one sentence."}
if [ ! -x "$build/bin/pinfer" ]; then
  # no client yet: run the engine in this process
  exec "$build/bin/pinfer-run" --model "$model" --chat "$prompt"
fi
sock=$(mktemp -u /tmp/pinfer-demo-XXXXXX.sock)
log=$(mktemp /tmp/pinferd-demo-XXXXXX.log)
"$build/bin/pinferd" --model "$model" --socket "$sock" --state-file none --log-level warn 2>"$log" &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$sock" "$log"; }
trap cleanup EXIT
for _ in $(seq 1 600); do
  [ -S "$sock" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "pinferd failed to start:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -S "$sock" ] || { echo "pinferd did not come up within 60 s" >&2; cat "$log" >&2; exit 1; }
echo "> $prompt"
printf '%s\n' "$prompt" | "$build/bin/pinfer" chat --socket "$sock" --temperature 0 --max-tokens 128
