#!/usr/bin/env bash
# Observability against real daemons: pinfer-top (--once, --json, and the
# interactive screen under tmux when tmux is installed) and pinfer-exporter.
#
#   1. echo daemon: --once/--json snapshots; a registered client is listed
#   2. model daemon (PF_MODEL): generation tokens, KV blocks, latency
#      histograms after requests; a running request shows up in flight
#   3. exporter: the vLLM-style names, each series with model_name, HELP/TYPE,
#      cumulative histograms ending in le="+Inf" == _count, counters that grow
#      with requests, 404 elsewhere, 405 for POST
#   4. daemon killed: /metrics 503, pinfer-top --json exits 1, the screen says
#      so; restarted on the same socket: metrics (from the new daemon) come
#      back by themselves, and so does the screen
#
# Waits are for conditions with generous limits, never fixed sleeps to pass.
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
pinfer=$build/bin/pinfer
top=$build/bin/pinfer-top
exporter=$build/bin/pinfer-exporter

command -v python3 >/dev/null || { echo "skip: python3 is needed to parse JSON and speak HTTP"; exit 77; }
for b in "$build/bin/pinferd" "$pinfer" "$top" "$exporter"; do
  [ -x "$b" ] || { echo "FAIL: $b is not built"; exit 1; }
done

work=$(mktemp -d /tmp/pinfer-stats-XXXXXX)
esock=$work/echo.sock
msock=$work/model.sock
epid= mpid= xpid= chatpid= longpid=
tmux_sock=$work/tmux.sock
have_tmux=0
failures=0

cleanup() {
  exec 8>&- 2>/dev/null
  for p in $longpid $chatpid $xpid $mpid $epid; do kill -KILL "$p" 2>/dev/null; done
  [ $have_tmux = 1 ] && tmux -S "$tmux_sock" kill-server 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "# ok: $*"; }

wait_for() { # seconds command...
  local limit=$1; shift
  local end=$((SECONDS + limit))
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.1; done
  return 1
}

start_echo() {
  rm -f "$esock"
  "$build/bin/pinferd" --echo-backend --socket "$esock" --log-level info >>"$work/echo.log" 2>&1 &
  epid=$!
  wait_for 30 test -S "$esock" || { echo "echo pinferd did not start:"; cat "$work/echo.log"; exit 1; }
}

start_model() {
  rm -f "$msock"
  "$build/bin/pinferd" --model "$model" --socket "$msock" --kv-memory 64M --log-level info >>"$work/model.log" 2>&1 &
  mpid=$!
  wait_for 120 test -S "$msock" || { echo "model pinferd did not start:"; cat "$work/model.log"; exit 1; }
}

gen() { # socket max_tokens prompt
  timeout 120 "$pinfer" generate --socket "$1" --temperature 0 --ignore-eos --max-tokens "$2" "$3" >/dev/null 2>&1
}

topjson() { # socket [more options] -> $work/top.json; exit status of pinfer-top
  "$top" --socket "$1" --json --interval 0 "${@:2}" >"$work/top.json" 2>"$work/top.err"
}

jq_py() { # python expression over j (the parsed $work/top.json); true when it is truthy
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$work/top.json"
}

http() { # METHOD URL -> status on stdout (0: no answer), body in $work/body
  python3 - "$1" "$2" "$work/body" <<'EOF'
import sys, urllib.request, urllib.error
method, url, out = sys.argv[1:4]
req = urllib.request.Request(url, method=method, data=b"x=1" if method == "POST" else None)
try:
    r = urllib.request.urlopen(req, timeout=15)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except Exception as e:
    code, body = 0, str(e).encode()
open(out, "wb").write(body)
print(code)
EOF
}

metrics_ok() { # -> 0 when GET /metrics answers 200; the body in $work/metrics
  [ "$(http GET "$url/metrics")" = 200 ] && cp "$work/body" "$work/metrics"
}

# Checks one exposition; prints "name value" lines of the figures compared
# across scrapes.  Exit 1 with the reasons on stdout when malformed.
cat >"$work/check.py" <<'EOF'
import math, re, sys
text, model = open(sys.argv[1]).read(), sys.argv[2]
errs, fams, types, samples = [], {}, {}, []
line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
for ln in text.splitlines():
    if ln.startswith("# HELP "):
        fams.setdefault(ln.split()[2], set()).add("help")
    elif ln.startswith("# TYPE "):
        _, _, name, typ = ln.split()
        types[name] = typ
        if "help" not in fams.get(name, ()):
            errs.append("TYPE before HELP for " + name)
    elif ln.startswith("#") or not ln:
        continue
    else:
        m = line_re.match(ln)
        if not m:
            errs.append("bad line: " + ln); continue
        labels, rest = {}, m.group(2) or ""
        while rest:
            lm = label_re.match(rest)
            if not lm:
                errs.append("bad labels: " + ln); break
            labels[lm.group(1)] = lm.group(2); rest = rest[lm.end():]
        samples.append((m.group(1), labels, float(m.group(3))))
def family(name):
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and types.get(name[:-len(suf)]) == "histogram":
            return name[:-len(suf)]
    return name
for name, labels, v in samples:
    if family(name) not in types:
        errs.append("no TYPE for " + name)
    if labels.get("model_name") != model:
        errs.append("%s has model_name=%r, expected %r" % (name, labels.get("model_name"), model))
def get(name, **kw):
    return [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in kw.items())]
need = {"pinfer:num_requests_running": "gauge", "pinfer:num_requests_waiting": "gauge",
        "pinfer:kv_cache_usage_perc": "gauge", "pinfer:prefix_cache_queries_total": "counter",
        "pinfer:prefix_cache_hits_total": "counter", "pinfer:num_preemptions_total": "counter",
        "pinfer:prompt_tokens_total": "counter", "pinfer:generation_tokens_total": "counter",
        "pinfer:request_success_total": "counter", "pinfer:time_to_first_token_seconds": "histogram",
        "pinfer:inter_token_latency_seconds": "histogram", "pinfer:e2e_request_latency_seconds": "histogram",
        "pinfer:iteration_tokens_total": "histogram"}
for name, typ in need.items():
    if types.get(name) != typ:
        errs.append("%s: TYPE %r, expected %s" % (name, types.get(name), typ))
    elif typ != "histogram" and len(get(name)) < 1:
        errs.append("no sample of " + name)
for r in ("stop", "length"):
    if len(get("pinfer:request_success_total", finished_reason=r)) != 1:
        errs.append("no request_success_total{finished_reason=%s}" % r)
u = get("pinfer:kv_cache_usage_perc")
if u and not 0.0 <= u[0] <= 1.0:
    errs.append("kv_cache_usage_perc %g outside 0..1" % u[0])
for name, typ in types.items():
    if typ != "histogram":
        continue
    b = [(l["le"], v) for n, l, v in samples if n == name + "_bucket"]
    cnt, sm = get(name + "_count"), get(name + "_sum")
    if len(b) < 2 or len(cnt) != 1 or len(sm) != 1:
        errs.append("%s: buckets/_count/_sum missing" % name); continue
    les = [float(le) for le, _ in b]
    if b[-1][0] != "+Inf":
        errs.append("%s: last bucket le=%s, not +Inf" % (name, b[-1][0]))
    if any(les[i] >= les[i + 1] for i in range(len(les) - 1)):
        errs.append("%s: le not increasing" % name)
    if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
        errs.append("%s: buckets not cumulative: %s" % (name, [v for _, v in b]))
    if b[-1][1] != cnt[0]:
        errs.append("%s: +Inf bucket %g != _count %g" % (name, b[-1][1], cnt[0]))
if errs:
    print("\n".join(errs[:20])); sys.exit(1)
for name in ("pinfer:generation_tokens_total", "pinfer:prompt_tokens_total", "pinfer:time_to_first_token_seconds_count",
             "pinfer:e2e_request_latency_seconds_count", "pinfer:iteration_tokens_total_count"):
    print(name, int(get(name)[0]))
print("finished", int(sum(get("pinfer:request_success_total"))))
EOF

value() { # file name -> value
  awk -v n="$2" '$1 == n { print $2 }' "$1"
}

start_echo
have_model=0
if [ -f "$model" ]; then
  have_model=1
  start_model
else
  echo "# note: no model at $model: the model-dependent checks are left out"
fi

# ---- 1. echo daemon: snapshots, a registered client listed ---------------------
mkfifo "$work/chat.in"
"$pinfer" chat --socket "$esock" <"$work/chat.in" >/dev/null 2>&1 &
chatpid=$!
exec 8>"$work/chat.in"
if wait_for 30 bash -c "\"$top\" --socket \"$esock\" --once --interval 0 >\"$work/once.txt\" 2>&1 && grep -q '^ *$chatpid ' \"$work/once.txt\""; then
  grep -q "model echo" "$work/once.txt" && grep -q "^KV cache" "$work/once.txt" && grep -q "^TTFT" "$work/once.txt" \
    && ok "pinfer-top --once: header, KV line, latency table and the chat client (pid $chatpid)" \
    || { fail "pinfer-top --once lacks lines:"; cat "$work/once.txt"; }
else
  fail "pinfer-top --once never listed the chat client"; cat "$work/once.txt" "$work/echo.log"
fi
# another client comes and goes: the first one must stay listed (and served)
gen "$esock" 8 "hello" || fail "echo request failed"
if wait_for 10 bash -c "\"$top\" --socket \"$esock\" --json --interval 0 >\"$work/top.json\" 2>\"$work/top.err\" && python3 -c \"import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if any(c['pid'] == $chatpid for c in j['clients']) else 1)\" \"$work/top.json\""; then
  jq_py "j['model'] == 'echo' and any(c['pid'] == $chatpid and c['comm'] == 'pinfer' for c in j['clients']) and j['n_clients'] >= 1 and j['rates'] is None" \
    && ok "pinfer-top --json (echo): model, the chat client with pid and comm, still listed after another client left" \
    || { fail "pinfer-top --json (echo):"; cat "$work/top.json" "$work/top.err"; }
else
  fail "the chat client (pid $chatpid) vanished from the stats after another client disconnected (pinferd lost it from its session list?)"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('  n_clients', j['n_clients'], 'clients', j['clients'])" "$work/top.json"
  cat "$work/top.err"; sed 's/^/  /' "$work/echo.log"
fi
"$top" --socket "$esock" --json --interval 200 >"$work/top.json" 2>&1 && jq_py "j['rates']['interval_s'] > 0.1" \
  && ok "pinfer-top --json --interval 200: rates from two samples" || fail "no rates with --interval 200"
"$top" --bogus >/dev/null 2>&1; [ $? = 2 ] && ok "bad usage exits 2" || fail "bad usage did not exit 2"
"$top" --help | grep -q "Exit status" && "$exporter" --help | grep -q "Exit status" && ok "--help documents exit codes" \
  || fail "--help without exit codes"

# ---- 2. model daemon: figures after requests --------------------------------------
if [ $have_model = 1 ]; then
  for i in 1 2 3; do gen "$msock" 16 "Question $i: what is $i plus $i?" || fail "request $i failed"; done
  if topjson "$msock" && jq_py "j['tokens']['generation_total'] >= 48 and j['kv']['blocks_total'] > 0 and j['kv']['block_size'] > 0 and j['latency']['ttft_s']['count'] >= 3 and j['latency']['ttft_s']['p50'] is not None and j['requests']['finished']['length'] >= 3 and j['steps_total'] > 0"; then
    ok "pinfer-top --json (model): generation tokens, KV blocks, TTFT percentiles, finished requests"
  else
    fail "pinfer-top --json (model):"; cat "$work/top.json" "$work/top.err"
  fi
  model_name=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['model'])" "$work/top.json")
  # left to run on: it ends when the daemon is killed below (cancelling it
  # would test the daemon's cancel path, which is not this suite's business)
  "$pinfer" generate --socket "$msock" --ignore-eos --max-tokens 400 "Tell me a very long story." >/dev/null 2>&1 &
  longpid=$!
  wait_for 60 bash -c "\"$top\" --socket \"$msock\" --json --interval 0 >\"$work/top.json\" 2>/dev/null && python3 -c \"import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j['requests']['running'] >= 1 and any(c['pid'] == $longpid and c['inflight'] == 1 for c in j['clients']) and j['kv']['blocks_used'] > 0 else 1)\" \"$work/top.json\"" \
    && ok "a running request: running >= 1, its client in flight, KV blocks used" || { fail "running request not seen"; cat "$work/top.json"; }
  main_sock=$msock
else
  model_name=echo
  main_sock=$esock
fi

# ---- 3. exporter ------------------------------------------------------------------
"$exporter" --listen 127.0.0.1:0 --socket "$main_sock" 2>"$work/exporter.log" &
xpid=$!
wait_for 30 grep -qs "serving http://127.0.0.1:[0-9]*/metrics" "$work/exporter.log" \
  || { fail "pinfer-exporter did not start:"; cat "$work/exporter.log"; exit 1; }
url=$(grep -o "http://127.0.0.1:[0-9]*" "$work/exporter.log" | head -1)
if wait_for 30 metrics_ok && python3 "$work/check.py" "$work/metrics" "$model_name" >"$work/v1"; then
  ok "GET /metrics: required names, model_name on every series, HELP/TYPE, cumulative histograms ending in +Inf == _count"
else
  fail "metrics malformed:"; cat "$work/v1"; head -40 "$work/metrics"
fi
if [ $have_model = 1 ]; then
  gen "$msock" 12 "One more question, please." || fail "request failed"
  gen "$msock" 12 "And another one." || fail "request failed"
  metrics_ok && python3 "$work/check.py" "$work/metrics" "$model_name" >"$work/v2" || fail "second scrape"
  grew=1
  for n in pinfer:generation_tokens_total pinfer:prompt_tokens_total pinfer:time_to_first_token_seconds_count finished; do
    a=$(value "$work/v1" "$n"); b=$(value "$work/v2" "$n")
    [ -n "$a" ] && [ -n "$b" ] && [ "$b" -gt "$a" ] || { grew=0; echo "  $n: $a -> $b"; }
  done
  [ $grew = 1 ] && ok "counters grew with requests ($(value "$work/v1" pinfer:generation_tokens_total) -> $(value "$work/v2" pinfer:generation_tokens_total) generation tokens)" \
    || fail "counters did not grow"
fi
[ "$(http GET "$url/foo")" = 404 ] && ok "GET /foo: 404" || fail "GET /foo: not 404"
[ "$(http POST "$url/metrics")" = 405 ] && ok "POST /metrics: 405" || fail "POST /metrics: not 405"
grep -q "text/plain; version=0.0.4" < <(python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).headers['Content-Type'])" "$url/metrics") \
  && ok "Content-Type text/plain; version=0.0.4" || fail "wrong Content-Type"

# ---- the screen, under tmux ------------------------------------------------------------
screen() { tmux -S "$tmux_sock" capture-pane -p -t top 2>/dev/null; }
screen_has() { screen | grep -q -- "$1"; }
if command -v tmux >/dev/null; then
  have_tmux=1
  tmux -S "$tmux_sock" -f /dev/null new-session -d -s top -x 120 -y 40 \
    "TERM=screen LANG=C.UTF-8 $top --socket $main_sock; echo \$? >$work/top.rc; sleep 30" 2>"$work/tmux.err" \
    || { fail "tmux did not start"; cat "$work/tmux.err"; have_tmux=0; }
fi
if [ $have_tmux = 1 ]; then
  if wait_for 30 screen_has "KV cache *\["; then
    screen_has "pinfer-top   model" && screen_has "latency " && screen_has "clients " \
      && ok "screen: header, KV bar, latency table, clients" || { fail "screen incomplete:"; screen; }
  else
    fail "screen never showed the KV bar:"; screen; cat "$work/tmux.err"
  fi
  tmux -S "$tmux_sock" send-keys -t top s
  wait_for 10 screen_has "sorted by errors" && ok "s: next sort column" || { fail "s did nothing:"; screen | tail -5; }
  tmux -S "$tmux_sock" send-keys -t top p
  wait_for 10 screen_has "PAUSED" && ok "p: paused" || fail "p did not pause"
  tmux -S "$tmux_sock" send-keys -t top p
  wait_for 10 bash -c "! tmux -S '$tmux_sock' capture-pane -p -t top | grep -q PAUSED" && ok "p again: resumed" || fail "p did not resume"
  tmux -S "$tmux_sock" resize-window -t top -x 80 -y 24 2>/dev/null
  if wait_for 10 bash -c "tmux -S '$tmux_sock' capture-pane -p -t top | tail -1 | grep -q 'q quit'" && screen_has "KV cache *\["; then
    ok "resized to 80x24: redrawn, key line at the bottom"
  else
    fail "resize:"; screen
  fi
else
  echo "# note: tmux not installed: the interactive screen is not tested"
fi

# ---- 4. daemon gone, then back --------------------------------------------------------
if [ $have_model = 1 ]; then kill -KILL "$mpid"; wait "$mpid" 2>/dev/null; mpid=
else kill -KILL "$epid"; wait "$epid" 2>/dev/null; epid=; fi
if wait_for 30 bash -c "[ \"\$(python3 -c 'import urllib.request,urllib.error,sys
try: urllib.request.urlopen(sys.argv[1], timeout=15); print(200)
except urllib.error.HTTPError as e: print(e.code)' '$url/metrics')\" = 503 ]"; then
  code=$(http GET "$url/metrics")
  [ "$code" = 503 ] && [ "$(wc -l <"$work/body")" = 1 ] && grep -q "unreachable" "$work/body" \
    && ok "daemon killed: /metrics 503 with one line: $(cat "$work/body")" || fail "503 body: $(cat "$work/body")"
else
  fail "no 503 after the daemon died"
fi
topjson "$main_sock"; rc=$?
[ $rc = 1 ] && grep -q "unreachable" "$work/top.err" && ok "pinfer-top --json exits 1 when the daemon is gone" \
  || { fail "pinfer-top --json with the daemon gone: exit $rc"; cat "$work/top.err"; }
if [ $have_tmux = 1 ]; then
  wait_for 15 screen_has "unreachable" && ok "screen: daemon unreachable shown" || { fail "screen did not notice:"; screen | head -5; }
fi
if [ $have_model = 1 ]; then start_model; else start_echo; fi
if wait_for 60 metrics_ok && python3 "$work/check.py" "$work/metrics" "$model_name" >"$work/v3"; then
  if [ $have_model = 1 ]; then
    [ "$(value "$work/v3" pinfer:generation_tokens_total)" = 0 ] && ok "daemon restarted: metrics back, from the new daemon (counters reset)" \
      || fail "metrics still from the old daemon? $(cat "$work/v3")"
  else
    ok "daemon restarted: metrics back"
  fi
else
  fail "metrics did not come back after the restart"; cat "$work/v3" 2>/dev/null
fi
topjson "$main_sock" && ok "pinfer-top --json works against the restarted daemon" || fail "pinfer-top --json after the restart"
if [ $have_tmux = 1 ]; then
  wait_for 15 bash -c "! tmux -S '$tmux_sock' capture-pane -p -t top | grep -q unreachable" && ok "screen: reconnected by itself" \
    || { fail "screen did not reconnect:"; screen | head -5; }
  tmux -S "$tmux_sock" send-keys -t top q
  wait_for 10 test -s "$work/top.rc" && [ "$(cat "$work/top.rc")" = 0 ] && ok "q: quit, exit 0" || fail "q: exit $(cat "$work/top.rc" 2>/dev/null)"
fi

kill -TERM "$xpid"
wait_for 10 bash -c "! kill -0 $xpid 2>/dev/null" && wait "$xpid"; rc=$?
[ $rc = 0 ] && ok "exporter stops on SIGTERM with exit 0" || fail "exporter exit on SIGTERM: $rc"
xpid=
grep -q "unreachable" "$work/exporter.log" && grep -c "is up" "$work/exporter.log" | grep -q 2 \
  && ok "exporter logged the outage and the return once each" || { fail "exporter log:"; cat "$work/exporter.log"; }

[ $failures = 0 ] && echo "stats: all checks passed" || echo "stats: $failures check(s) failed"
exit $((failures > 0))
