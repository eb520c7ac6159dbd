#!/usr/bin/env bash
# pinfer-server against a real pinferd, driven by the official `openai`
# Python package (tests/integration/server_test.py says what is checked).
#
# The package comes from PyPI into a virtual environment cached under the
# build folder (BUILD/venv-openai), so reruns do not download again.  The
# suite skips (77) only when PyPI cannot be reached, and says so; any other
# failure to set the environment up is a failure.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
openai_pin=3.63.0
venv=$build/venv-openai
work=$(mktemp -d /tmp/pinfer-server-XXXXXX)
sock=$work/d.sock
pids=()
failures=0

cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

for b in pinferd pinfer-server pinfer pinfer-top; do
  [ -x "$build/bin/$b" ] || { echo "FAIL: $build/bin/$b is not built"; exit 1; }
done

# ---- the Python environment -------------------------------------------------------
if ! "$venv/bin/python" -c "import openai, sys; sys.exit(0 if openai.__version__ == '$openai_pin' else 1)" 2>/dev/null; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >"$work/venv.log" 2>&1; then
    echo "FAIL: python3 -m venv does not work (install python3-venv):"; cat "$work/venv.log"; exit 1
  fi
  if ! "$venv/bin/pip" install -q --disable-pip-version-check "openai==$openai_pin" >"$work/pip.log" 2>&1; then
    if ! python3 -c "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/openai/', timeout=20)" 2>/dev/null; then
      echo "skip: pip cannot reach PyPI to install openai==$openai_pin:"; tail -3 "$work/pip.log"; rm -rf "$venv"; exit 77
    fi
    echo "FAIL: pip install openai==$openai_pin failed although PyPI answers:"; tail -20 "$work/pip.log"; rm -rf "$venv"; exit 1
  fi
fi
echo "# openai $openai_pin in $venv"

# ---- pinferd and two servers ----------------------------------------------------------
"$build/bin/pinferd" --model "$model" --socket "$sock" --kv-memory 96M --state-file none --max-inflight 256 \
  --log-level info >"$work/pinferd.log" 2>&1 &
d1pid=$!
pids+=($d1pid)
wait_for 120 test -S "$sock" || { echo "FAIL: pinferd did not start:"; cat "$work/pinferd.log"; exit 1; }

key=sk-test-$RANDOM$RANDOM
printf '%s\n' "$key" >"$work/key"
start_server() { # LOG SOCKET ARGS...: sets port and spid
  "$build/bin/pinfer-server" --socket "$2" --listen 127.0.0.1:0 --api-key-file "$work/key" "${@:3}" >"$1" 2>&1 &
  spid=$!
  pids+=($spid)
  wait_for 30 grep -qs "listening on" "$1" || { echo "FAIL: pinfer-server did not start:"; cat "$1"; exit 1; }
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$1")
}
# a server with room for one request at a time (the 429 path) and a short
# idle timeout (slow-loris); the main one keeps the default 60 s, so that
# pooled client connections are not closed under the clients' feet
start_server "$work/tight.log" "$sock" --served-model-name smol --max-requests 1 --timeout 20
tport=$port
start_server "$work/server.log" "$sock" --served-model-name smol --max-body 65536
main_port=$port
echo "# pinfer-server on ports $port and $tport (max-requests 1)"

# --help explains; a bad flag is refused naming it
"$build/bin/pinfer-server" --help | grep -q -- "--api-key-file" && ok "--help lists the options" || fail "--help"
out=$("$build/bin/pinfer-server" --max-body lots 2>&1) && fail "--max-body lots accepted" \
  || { echo "$out" | grep -q -- "--max-body" && ok "--max-body lots refused: $out" || fail "--max-body lots: $out"; }

PF_URL="http://127.0.0.1:$port" PF_TIGHT_URL="http://127.0.0.1:$tport" PF_KEY="$key" PF_MODEL_ID=smol \
  PF_SOCK="$sock" PF_BIN="$build/bin" PF_ASAN="${PF_ASAN:-0}" \
  timeout 1200 "$venv/bin/python" "$(dirname "$0")/server_test.py"
rc=$?
[ $rc -eq 0 ] || fail "server_test.py exited $rc"

# ---- /metrics: the daemon's series (the exporter's formatter) and the server's own ----------------
promok() { # exposition file: promtool parses it (0, or 3 with only style findings about ':' and _total)
  command -v promtool >/dev/null || return 0
  promtool check metrics <"$1" >"$work/promtool.out" 2>&1; local rc=$?
  [ $rc = 0 ] || { [ $rc = 3 ] && ! grep -v "should not contain ':'\|should not have \"_total\" suffix" "$work/promtool.out" | grep -q .; }
}
curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"
python3 - "$work/metrics.txt" <<'PY' && ok "/metrics: pinfer:* daemon series for smol, requests by endpoint and status, open streams, latency histogram" || fail "/metrics: $(head -c 600 "$work/metrics.txt")"
import re, sys
t = open(sys.argv[1]).read()
def v(pat):
    m = re.search("^" + pat + r" (\S+)$", t, re.M)
    return float(m.group(1)) if m else None
assert v(r'pinfer:num_requests_running\{model_name="smol"\}') is not None
assert v(r'pinfer:kv_cache_usage_perc\{model_name="smol"\}') is not None
assert v(r'pinfer:generation_tokens_total\{model_name="smol"\}') > 0
assert v(r'pinfer_server:http_requests_total\{endpoint="/v1/completions",status="200"\}') >= 20
assert v(r'pinfer_server:http_requests_total\{endpoint="/v1/completions",status="400"\}') >= 50
assert v(r'pinfer_server:http_requests_total\{endpoint="/v1/chat/completions",status="200"\}') >= 5
assert v(r'pinfer_server:open_streams') == 0
assert v(r'pinfer_server:request_latency_seconds_count') >= 200
assert v(r'pinfer_server:request_latency_seconds_bucket\{le="\+Inf"\}') == v(r'pinfer_server:request_latency_seconds_count')
PY
promok "$work/metrics.txt" && ok "/metrics parses (promtool)" || fail "promtool: $(head -5 "$work/promtool.out")"

# ---- --listen unix:PATH --------------------------------------------------------------------------
"$build/bin/pinfer-server" --socket "$sock" --listen "unix:$work/http.sock" --api-key-file "$work/key" \
  --served-model-name smol >"$work/unix.log" 2>&1 &
upid=$!
pids+=($upid)
if wait_for 30 test -S "$work/http.sock"; then
  [ "$(stat -c %a "$work/http.sock")" = 660 ] && ok "unix socket mode 0660" || fail "unix socket mode $(stat -c %a "$work/http.sock")"
  st=$(curl -s -o "$work/ubody" -w '%{http_code}' --unix-socket "$work/http.sock" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' http://localhost/v1/completions \
    -d '{"model": "smol", "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}')
  [ "$st" = 200 ] && grep -q '"text":" Paris' "$work/ubody" && ok "--listen unix:PATH serves completions" \
    || fail "unix socket: $st $(cat "$work/ubody")"
  kill -TERM "$upid"; wait "$upid"
  [ ! -e "$work/http.sock" ] && ok "the unix socket is removed on exit" || fail "the unix socket was left behind"
else
  fail "pinfer-server --listen unix: did not start: $(cat "$work/unix.log")"
fi

# ---- a pinferd drain + restart mid-stream: every stream completes, equal to an uninterrupted run ----
sock2=$work/d2.sock
start_daemon2() {
  rm -f "$sock2"
  "$build/bin/pinferd" --model "$model" --socket "$sock2" --kv-memory 96M --state-file "$work/d2.state" \
    --drain-timeout 1 --log-level info >>"$work/pinferd2.log" 2>&1 &
  d2pid=$!
  pids+=($d2pid)
  wait_for 120 test -S "$sock2" || { echo "FAIL: pinferd (2) did not start:"; tail -20 "$work/pinferd2.log"; exit 1; }
}
start_daemon2
main_spid=$spid
start_server "$work/drain-server.log" "$sock2" --served-model-name smol --resume-wait 120
dport=$port
spid=$main_spid
PF_URL="http://127.0.0.1:$dport" PF_KEY="$key" PF_MODEL_ID=smol PF_MARKER="$work/go" \
  timeout 900 "$venv/bin/python" "$(dirname "$0")/server_drain.py" &
drainpy=$!
if wait_for 600 test -f "$work/go"; then
  kill -TERM "$d2pid"
  wait "$d2pid"; drc=$?
  [ $drc -eq 0 ] && ok "pinferd drained mid-stream and exited 0" || fail "pinferd drain exited $drc"
  wait_for 30 bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$dport/health | grep -q 503" \
    && ok "/health 503 while pinferd is away" || fail "/health did not say 503 while pinferd was away"
  start_daemon2
  wait_for 60 grep -q "restored 3 requests" "$work/pinferd2.log" && ok "the new pinferd restored the 3 requests" \
    || fail "not restored: $(grep restored "$work/pinferd2.log")"
else
  fail "the drain test's streams did not start"
fi
wait "$drainpy" || fail "streams across the drain and restart (server_drain.py)"
grep -q "reattached" "$work/drain-server.log" && ok "pinfer-server: $(grep -m1 reattached "$work/drain-server.log" | sed 's/^pinfer-server: //')" \
  || fail "pinfer-server did not reattach: $(tail -5 "$work/drain-server.log")"

# ---- --route: one server, two daemons, chosen by the request's model ----------------------
# (not start_server: it passes --socket, which --route refuses)
"$build/bin/pinfer-server" --listen 127.0.0.1:0 --api-key-file "$work/key" --route "smol=$sock" --route "other=$sock2" --metrics-prefix vllm \
  >"$work/route.log" 2>&1 &
rpid=$!
pids+=($rpid)
wait_for 30 grep -qs "listening on" "$work/route.log" || fail "the route server did not start: $(cat "$work/route.log")"
rport=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/route.log")
rurl=http://127.0.0.1:$rport
post() { curl -s -o "$work/body" -w '%{http_code}' -H "Authorization: Bearer $key" -H 'Content-Type: application/json' "$rurl$1" -d "$2"; }
models=$(curl -s -H "Authorization: Bearer $key" "$rurl/v1/models" | python3 -c 'import json,sys; print(" ".join(sorted(m["id"] for m in json.load(sys.stdin)["data"])))')
[ "$models" = "other smol" ] && ok "--route: /v1/models lists both names" || fail "--route: /v1/models lists '$models'"
for m in smol other; do
  st=$(post /v1/completions "{\"model\": \"$m\", \"prompt\": \"Hello\", \"max_tokens\": 4}")
  [ "$st" = 200 ] && ok "--route: model $m answers" || fail "--route: model $m: $st $(cat "$work/body")"
done
st=$(post /v1/completions '{"model": "nope", "prompt": "Hello", "max_tokens": 4}')
[ "$st" = 404 ] && grep -q "'smol'" "$work/body" && ok "--route: an unknown name is 404 listing the names" || fail "--route: unknown: $st $(cat "$work/body")"
curl -s "$rurl/metrics" >"$work/rmetrics.txt"
[ "$(grep -c '^vllm:num_requests_waiting{model_name="\(smol\|other\)"}' "$work/rmetrics.txt")" = 2 ] \
  && [ "$(grep -c '^# TYPE vllm:num_requests_waiting gauge' "$work/rmetrics.txt")" = 1 ] && ! grep -q '^pinfer:' "$work/rmetrics.txt" \
  && promok "$work/rmetrics.txt" && ok "--metrics-prefix vllm: vllm:* series of both daemons in one family each, promtool parses" \
  || fail "--route /metrics: $(grep num_requests_waiting "$work/rmetrics.txt") $(head -3 "$work/promtool.out" 2>/dev/null)"
kill -TERM "$d2pid"; wait "$d2pid"
wait_for 30 bash -c "curl -s -o /dev/null -w '%{http_code}' $rurl/health | grep -q 503" && ok "--route: /health 503 once one daemon is gone" \
  || fail "--route: /health did not turn 503"
st=$(post /v1/completions '{"model": "other", "prompt": "Hello", "max_tokens": 4}')
st2=$(post /v1/completions '{"model": "smol", "prompt": "Hello", "max_tokens": 4}')
[ "$st" = 503 ] && [ "$st2" = 200 ] && ok "--route: the stopped daemon's model 503, the other still 200" \
  || fail "--route: after stopping 'other': other $st, smol $st2"
out=$("$build/bin/pinfer-server" --route smol --listen 127.0.0.1:0 2>&1) && fail "--route smol accepted" \
  || { echo "$out" | grep -q -- "--route" && ok "--route without =TARGET refused" || fail "--route smol: $out"; }

# ---- a daemon that dies mid-stream (no drain): an error event, then [DONE] ------------------------
python3 - "$main_port" "$key" "$d1pid" <<'PY' && ok "pinferd killed mid-stream: the stream ends with an error event and [DONE]" || fail "error event after the stream started"
import http.client, json, os, signal, sys
port, key, dpid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
c.request("POST", "/v1/completions", json.dumps({"model": "smol", "prompt": "Once upon a time", "max_tokens": 3000,
          "ignore_eos": True, "stream": True}), {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
r = c.getresponse()
assert r.status == 200, r.status
events, killed = [], False
for line in r:
    line = line.decode().strip()
    if line.startswith("data: "):
        events.append(line[6:])
        if len(events) == 3 and not killed:
            os.kill(dpid, signal.SIGKILL)
            killed = True
assert killed and events[-1] == "[DONE]", events[-3:]
e = json.loads(events[-2])
assert set(e) == {"error"} and {"message", "type", "param", "code"} <= set(e["error"]), e
print("# error event:", e["error"]["message"])
PY

# the server survived everything and stops cleanly
kill -0 "$spid" 2>/dev/null && ok "pinfer-server still running" || { fail "pinfer-server died:"; tail -20 "$work/server.log"; }
kill -TERM "$spid"
if wait_for 30 bash -c "! kill -0 $spid 2>/dev/null"; then
  wait "$spid"; src=$?
  [ $src -eq 0 ] && ok "pinfer-server stops on SIGTERM with status 0" || fail "pinfer-server exited $src on SIGTERM"
else
  fail "pinfer-server did not stop on SIGTERM"
fi
if grep -qi "capital of" "$work/server.log"; then fail "prompt text in the server log at the default level"; else ok "no prompt text logged"; fi

[ $failures -eq 0 ] || { echo "$failures failures"; tail -30 "$work/server.log"; exit 1; }
echo "# all pinfer-server checks passed"
