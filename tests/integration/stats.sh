#!/usr/bin/env bash
# Observability against real daemons: pinfer-top (--once, --json, and the
# interactive screen under tmux when tmux is installed) and pinfer-exporter.
#
#   1. echo daemon: --once/--json snapshots; a registered client is listed
#   2. model daemon (PF_MODEL): generation tokens, KV blocks, latency
#      histograms after requests; one request of 5 tokens adds its whole
#      prompt to prompt_tokens_total (also when it comes again from the
#      prefix cache), one TTFT and 4 ITLs; a running request shows up in flight
#   3. exporter: the vLLM-style names, each series with model_name, HELP/TYPE,
#      cumulative histograms ending in le="+Inf" == _count, counters that grow
#      with requests, `promtool check metrics` clean but for the accepted
#      remarks on vLLM-style names, TTFT buckets up to 640 s, GET /health
#      200 "ok", 404 elsewhere, 405 for POST
#   4. a mixed workload on a small KV pool (preemptions, n > 1, beam search,
#      a deadline, a Ctrl-C cancel, a killed client): every snapshot adds up
#      (admitted == finished + running + waiting; KV used + cached + free ==
#      total), the screen shows the work, promtool passes during the work and
#      after the drain, KV usage falls back to 0, the finish reasons and the
#      prefix-cache counters (once per admission) match what was sent
#   5. daemon killed: /metrics and /health 503, pinfer-top --json exits 1, the screen says
#      so; restarted on the same socket: metrics (from the new daemon) come
#      back by themselves, and so does the screen
#
# Every exposition also passes check.py's consistency checks (the same sums
# as above, usage == used / num_gpu_blocks, hits <= queries).
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
ssock=$work/small.sock
epid= mpid= xpid= chatpid= longpid= spid= x2pid= pollpid=
tmux_sock=$work/tmux.sock
have_tmux=0
failures=0

cleanup() {
  exec 8>&- 2>/dev/null
  touch "$work/poll.stop" 2>/dev/null
  for p in $pollpid $x2pid $spid $longpid $chatpid $xpid $mpid $epid; do kill -KILL "$p" 2>/dev/null; done
  [ $have_tmux = 1 ] && tmux -S "$tmux_sock" kill-server 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

start_echo() {
  rm -f "$esock"
  "$build/bin/pinferd" --echo-backend --socket "$esock" --log-level info >>"$work/echo.log" 2>&1 &
  epid=$!
  wait_for 30 test -S "$esock" || { echo "echo pinferd did not start:"; cat "$work/echo.log"; exit 1; }
}

start_model() {
  rm -f "$msock"
  "$build/bin/pinferd" --model "$model" --socket "$msock" --kv-memory 64M --state-file none --log-level info >>"$work/model.log" 2>&1 &
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
        "pinfer:num_requests_preempted": "gauge", "pinfer:request_admitted_total": "counter",
        "pinfer:kv_cache_blocks": "gauge", "pinfer:cache_config_info": "gauge",
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
for r in ("stop", "length", "cancelled", "error", "deadline", "stalled"):
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
def one(name, **kw):
    v = get(name, **kw)
    return v[0] if len(v) == 1 else float("nan")
# what adds up in every snapshot (shm/stats.h): requests and KV blocks
adm, fin = one("pinfer:request_admitted_total"), sum(get("pinfer:request_success_total"))
run, wait, pre = one("pinfer:num_requests_running"), one("pinfer:num_requests_waiting"), one("pinfer:num_requests_preempted")
if not adm == fin + run + wait:
    errs.append("requests: admitted %g != finished %g + running %g + waiting %g" % (adm, fin, run, wait))
if not 0 <= pre <= wait:
    errs.append("num_requests_preempted %g not within 0..waiting %g" % (pre, wait))
blocks = {l.get("state"): v for n, l, v in samples if n == "pinfer:kv_cache_blocks"}
cfg = [l for n, l, v in samples if n == "pinfer:cache_config_info"]
total = float(cfg[0].get("num_gpu_blocks", "nan")) if len(cfg) == 1 else float("nan")
if sorted(blocks) != ["cached", "free", "used"] or not sum(blocks.values()) == total:
    errs.append("KV blocks %s do not add up to num_gpu_blocks %g" % (blocks, total))
elif u and abs(u[0] - (blocks["used"] / total if total else 0.0)) > 1e-9:
    errs.append("kv_cache_usage_perc %g != used %g / %g blocks" % (u[0], blocks["used"], total))
if not one("pinfer:num_swap_ins_total") <= one("pinfer:num_swap_outs_total") <= one("pinfer:num_preemptions_total"):
    errs.append("swaps: %g in, %g out, %g preemptions" % (one("pinfer:num_swap_ins_total"),
                one("pinfer:num_swap_outs_total"), one("pinfer:num_preemptions_total")))
if one("pinfer:prefix_cache_hits_total") > one("pinfer:prefix_cache_queries_total"):
    errs.append("more prefix-cache hits than queries")
if errs:
    print("\n".join(errs[:20])); sys.exit(1)
for name in ("pinfer:generation_tokens_total", "pinfer:prompt_tokens_total", "pinfer:time_to_first_token_seconds_count",
             "pinfer:inter_token_latency_seconds_count",
             "pinfer:e2e_request_latency_seconds_count", "pinfer:iteration_tokens_total_count",
             "pinfer:request_admitted_total", "pinfer:num_requests_running", "pinfer:num_requests_waiting",
             "pinfer:num_requests_preempted", "pinfer:num_preemptions_total", "pinfer:prefix_cache_queries_total",
             "pinfer:prefix_cache_hits_total", "pinfer:num_swap_outs_total", "pinfer:num_swap_ins_total",
             "pinfer:num_requests_swapped"):
    print(name, int(get(name)[0]))
for r in ("stop", "length", "cancelled", "error", "deadline", "stalled"):
    print("finished_" + r, int(one("pinfer:request_success_total", finished_reason=r)))
print("finished", int(fin))
print("kv_used_blocks", int(blocks["used"]))
print("kv_usage_ppm", int(round(u[0] * 1e6)))
EOF

value() { # file name -> value
  awk -v n="$2" '$1 == n { print $2 }' "$1"
}

# promtool check metrics (Debian 12's prometheus package, 2.42) exits 0
# when it finds nothing, 3 with lint findings and 1 when the text does not
# parse ("error while linting: text format parsing error in line N: ...").
# Findings go to stderr, one line "NAME PROBLEM" per metric family.  Two are
# accepted, matched whole, because they come from mirroring vLLM's names:
#   NAME metric names should not contain ':'       (every pinfer:NAME family,
#       and promtool must name each # TYPE family once: proof it read them)
#   pinfer:iteration_tokens_total non-counter metrics should not have "_total" suffix
#       (a histogram; vLLM's vllm:iteration_tokens_total draws the same remark)
# Anything else fails.  The findings are left in $work/promtool.out.
have_promtool=0
command -v promtool >/dev/null && have_promtool=1
promcheck() { # exposition file -> 0 when promtool accepts it as above
  [ $have_promtool = 1 ] || { echo "promtool not installed (Debian: apt-get install prometheus; make deps)"; return 1; }
  promtool check metrics <"$1" >"$work/promtool.out" 2>&1
  python3 - "$1" "$work/promtool.out" "$?" <<'EOF'
import sys
text, out, rc = open(sys.argv[1]).read(), open(sys.argv[2]).read().splitlines(), int(sys.argv[3])
fams = [ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")]
colon = {"%s metric names should not contain ':'" % f for f in fams if ":" in f}
ok = colon | {'pinfer:iteration_tokens_total non-counter metrics should not have "_total" suffix'}
bad = [ln for ln in out if ln not in ok]
missing = sorted(colon - set(out))
if rc not in (0, 3) or bad or missing or len(out) != len(set(out)):
    print("promtool exit %d; unexpected findings:" % rc, *bad, sep="\n  ")
    if missing:
        print("colon remarks promtool did not make (it did not read these families?):", *missing, sep="\n  ")
    sys.exit(1)
EOF
}

start_echo
have_model=0
if [ -f "$model" ]; then
  have_model=1
  start_model
elif [ "${PF_REQUIRE_MODEL:-0}" = 1 ]; then
  fail "no model at $model and PF_REQUIRE_MODEL=1 (\`make model\` fetches it): the model-dependent checks cannot run"
else
  echo "# note: no model at $model: the model-dependent checks are left out (make model)"
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
  # (the figures are published a moment after the replies end: waited for)
  three_done() { topjson "$msock" && jq_py "j['tokens']['generation_total'] >= 48 and j['kv']['blocks_total'] > 0 and j['kv']['block_size'] > 0 and j['latency']['ttft_s']['count'] >= 3 and j['latency']['ttft_s']['p50'] is not None and j['requests']['finished']['length'] >= 3 and j['steps_total'] > 0"; }
  if wait_for 30 three_done; then
    ok "pinfer-top --json (model): generation tokens, KV blocks, TTFT percentiles, finished requests"
  else
    fail "pinfer-top --json (model):"; cat "$work/top.json" "$work/top.err"
  fi
  model_name=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['model'])" "$work/top.json")
  # vLLM's meanings, with nothing else running: a request of 5 tokens adds
  # its whole prompt to prompt_tokens_total (as many tokens as it queried
  # in the prefix cache), one TTFT and 4 inter-token latencies (one per
  # token after the first); the same prompt again, partly served from the
  # prefix cache, still adds the whole prompt
  figs() { # -> "prompt_total queries hits ttft_count itl_count"
    topjson "$msock" && python3 -c "import json,sys; j=json.load(open(sys.argv[1])); l=j['latency']; print(j['tokens']['prompt_total'], j['prefix_cache']['queries_tokens'], j['prefix_cache']['hits_tokens'], l['ttft_s']['count'], l['itl_s']['count'])" "$work/top.json"
  }
  sky="Please explain in a few simple sentences why the sky looks blue on a clear day but red at sunset."
  read -r p0 q0 h0 t0 i0 < <(figs)
  gen "$msock" 5 "$sky" || fail "5-token request failed"
  read -r p1 q1 h1 t1 i1 < <(figs)
  gen "$msock" 5 "$sky" || fail "repeated 5-token request failed"
  read -r p2 q2 h2 t2 i2 < <(figs)
  mtok=$((q1 - q0))
  [ "$mtok" -gt 16 ] && [ $((p1 - p0)) = "$mtok" ] && [ $((t1 - t0)) = 1 ] && [ $((i1 - i0)) = 4 ] \
    && ok "5 tokens: prompt_tokens_total +$mtok (the whole prompt), one TTFT, 4 inter-token latencies (one per token after the first)" \
    || fail "one request of 5 tokens: prompt_tokens_total +$((p1 - p0)) (prompt $mtok), TTFT +$((t1 - t0)), ITL +$((i1 - i0)) (want 4)"
  [ $((h2 - h1)) -gt 0 ] && [ $((q2 - q1)) = "$mtok" ] && [ $((p2 - p1)) = "$mtok" ] \
    && ok "the prompt again: $((h2 - h1)) of its $mtok tokens from the prefix cache, prompt_tokens_total +$mtok all the same" \
    || fail "repeated prompt: $((h2 - h1)) prefix-cache hits, prompt_tokens_total +$((p2 - p1)) (want the whole $mtok)"
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
  ok "GET /metrics: required names, model_name on every series, HELP/TYPE, cumulative histograms ending in +Inf == _count, requests and KV blocks add up"
else
  fail "metrics malformed:"; cat "$work/v1"; head -40 "$work/metrics"
fi
promcheck "$work/metrics" && ok "promtool check metrics: only the accepted remarks on vLLM-style names ($(wc -l <"$work/promtool.out") lines)" \
  || { fail "promtool check metrics:"; cat "$work/promtool.out"; }
if [ $have_model = 1 ]; then
  gen "$msock" 12 "One more question, please." || fail "request failed"
  gen "$msock" 12 "And another one." || fail "request failed"
  grown() { # scrape into v2; true when every counter grew since v1
    metrics_ok && python3 "$work/check.py" "$work/metrics" "$model_name" >"$work/v2" || return 1
    local n a b
    for n in pinfer:generation_tokens_total pinfer:prompt_tokens_total pinfer:time_to_first_token_seconds_count finished; do
      a=$(value "$work/v1" "$n"); b=$(value "$work/v2" "$n")
      [ -n "$a" ] && [ -n "$b" ] && [ "$b" -gt "$a" ] || return 1
    done
  }
  grew=1
  if ! wait_for 30 grown; then
    grew=0
    for n in pinfer:generation_tokens_total pinfer:prompt_tokens_total pinfer:time_to_first_token_seconds_count finished; do
      echo "  $n: $(value "$work/v1" "$n") -> $(value "$work/v2" "$n")"
    done
    cat "$work/v2"
  fi
  promcheck "$work/metrics" || { fail "promtool, second scrape:"; cat "$work/promtool.out"; }
  [ $grew = 1 ] && ok "counters grew with requests ($(value "$work/v1" pinfer:generation_tokens_total) -> $(value "$work/v2" pinfer:generation_tokens_total) generation tokens)" \
    || fail "counters did not grow"
fi
# the TTFT buckets reach past the 10 s of vLLM's GPU-minded low end: CPU prefills take minutes
ttft_les=$(grep -o 'pinfer:time_to_first_token_seconds_bucket{[^}]*le="[^"]*"' "$work/metrics" | sed 's/.*le="//; s/"$//' | tr '\n' ' ')
python3 -c "import sys; les=[float(x) for x in sys.argv[1].split()]; sys.exit(0 if 160.0 in les and 640.0 in les and les[-1] == float('inf') else 1)" "$ttft_les" \
  && ok "TTFT buckets reach 640 s: le = $ttft_les" || fail "TTFT buckets stop early: le = $ttft_les"
# /health: the exporter's liveness probe
code=$(http GET "$url/health")
[ "$code" = 200 ] && [ "$(cat "$work/body")" = ok ] && ok "GET /health: 200 ok while the daemon is up" \
  || fail "GET /health with the daemon up: $code $(head -c 200 "$work/body")"
[ "$(http HEAD "$url/health")" = 200 ] && [ "$(http POST "$url/health")" = 405 ] && ok "HEAD /health: 200; POST /health: 405" \
  || fail "HEAD/POST /health"
[ "$(http GET "$url/foo")" = 404 ] && ok "GET /foo: 404" || fail "GET /foo: not 404"
[ "$(http POST "$url/metrics")" = 405 ] && ok "POST /metrics: 405" || fail "POST /metrics: not 405"
grep -q "text/plain; version=0.0.4" < <(python3 -c "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).headers['Content-Type'])" "$url/metrics") \
  && ok "Content-Type text/plain; version=0.0.4" || fail "wrong Content-Type"

# ---- 4. a mixed workload on a small pool: counters add up, promtool ---------------
# 6 MiB of KV is 17 blocks of 16 tokens: four 91-token requests cannot all
# fit, so sequences are preempted while others wait — swapped out to 3 MiB
# (8 blocks) of swap space while it lasts, recomputed beyond.  The
# mix: plain requests, n = 3, beam search, a deadline, one cancelled by
# Ctrl-C, one whose client is killed.  A poller checks every snapshot it
# sees while it runs; afterwards the totals must match what was sent.
if [ $have_model = 1 ]; then
  rm -f "$ssock"
  "$build/bin/pinferd" --model "$model" --socket "$ssock" --kv-memory 6M --swap-space 3M --preemption-mode swap --state-file none --log-level info >>"$work/small.log" 2>&1 &
  spid=$!
  wait_for 120 test -S "$ssock" || { fail "small-pool pinferd did not start:"; cat "$work/small.log"; }
  "$exporter" --listen 127.0.0.1:0 --socket "$ssock" 2>"$work/exporter2.log" &
  x2pid=$!
  wait_for 30 grep -qs "serving http://127.0.0.1:[0-9]*/metrics" "$work/exporter2.log" || fail "second exporter did not start"
  url2=$(grep -o "http://127.0.0.1:[0-9]*" "$work/exporter2.log" | head -1)
  scrape2() { # name -> $work/NAME.prom and its figures in $work/NAME.v
    [ "$(http GET "$url2/metrics")" = 200 ] && cp "$work/body" "$work/$1.prom" \
      && python3 "$work/check.py" "$work/$1.prom" "$model_name" >"$work/$1.v" || { cat "$work/$1.v" 2>/dev/null; return 1; }
  }
  delta() { # name a b -> value in b minus value in a
    echo $(( $(value "$work/$3.v" "$1") - $(value "$work/$2.v" "$1") ))
  }
  story="Write a long and detailed story about a lighthouse keeper who finds a message in a bottle on a stormy night, and tell it slowly."
  wait_for 30 scrape2 s0 || fail "small pool: first scrape"
  # one request alone: one prefix-cache query of exactly its prompt tokens
  gen "$ssock" 1 "$story" || fail "small pool: calibration request"
  one_done() { # scrape s1 until it shows the request finished
    scrape2 s1 && [ "$(delta finished_length s0 s1)" -ge 1 ]
  }
  wait_for 30 one_done || fail "small pool: no scrape after one request shows it finished"
  ptok=$(delta pinfer:prefix_cache_queries_total s0 s1)
  [ "$ptok" -gt 16 ] && [ "$(delta pinfer:request_admitted_total s0 s1)" = 1 ] && [ "$(delta finished_length s0 s1)" = 1 ] \
    && ok "one request: admitted 1, finished 1 (length), $ptok prompt tokens queried in the prefix cache" \
    || { fail "one request on the small pool:"; paste "$work/s0.v" "$work/s1.v"; }

  python3 - "$top" "$ssock" "$url2" "$work/poll.stop" "$work" >"$work/poll.out" 2>&1 <<'EOF' &
import json, os, subprocess, sys, time, urllib.request
top, sock, url, stop, work = sys.argv[1:6]
st = {"snaps": 0, "max_running": 0, "max_waiting": 0, "max_preempted": 0, "max_kv_used": 0, "max_seqs_running": 0,
      "violations": [], "mid": 0, "mid_preempted": 0}
def bad(msg):
    if len(st["violations"]) < 10:
        st["violations"].append(msg)
while not os.path.exists(stop):
    try:
        r = subprocess.run([top, "--socket", sock, "--json", "--interval", "0"], capture_output=True, text=True)
    except OSError as e:
        r = subprocess.CompletedProcess([], 1, "", str(e))
    if r.returncode != 0:
        # not a stats inconsistency; counted and shown, a few are tolerated
        st["top_errors"] = st.get("top_errors", 0) + 1
        st["top_error"] = r.stderr.strip()
        time.sleep(0.1)
        continue
    j = json.loads(r.stdout); q, kv = j["requests"], j["kv"]
    st["snaps"] += 1
    fin = sum(q["finished"].values())
    if q["admitted_total"] != fin + q["running"] + q["waiting"]:
        bad("admitted %d != finished %d + running %d + waiting %d" % (q["admitted_total"], fin, q["running"], q["waiting"]))
    if kv["blocks_used"] + kv["blocks_cached"] + kv["blocks_free"] != kv["blocks_total"]:
        bad("KV blocks used %(blocks_used)d + cached %(blocks_cached)d + free %(blocks_free)d != %(blocks_total)d" % kv)
    if not (0 <= q["preempted_waiting"] <= q["waiting"] and q["seqs_running"] >= q["running"] and q["seqs_waiting"] >= q["waiting"]):
        bad("request/sequence counts inconsistent: %s" % q)
    for k, v in (("max_running", q["running"]), ("max_waiting", q["waiting"]), ("max_preempted", q["preempted_waiting"]),
                 ("max_kv_used", kv["blocks_used"]), ("max_seqs_running", q["seqs_running"])):
        st[k] = max(st[k], v)
    # expositions taken while work runs (and while a request waits preempted)
    want = "mid" if not st["mid"] and q["running"] >= 1 and kv["blocks_used"] > 0 else \
           "mid_preempted" if not st["mid_preempted"] and q["preempted_waiting"] > 0 else None
    if want:
        body = urllib.request.urlopen(url + "/metrics", timeout=15).read().decode()
        running = [float(l.split()[-1]) for l in body.splitlines() if l.startswith("pinfer:num_requests_running{")]
        pre = [float(l.split()[-1]) for l in body.splitlines() if l.startswith("pinfer:num_requests_preempted{")]
        if running and running[0] >= 1 and (want == "mid" or (pre and pre[0] > 0)):
            open(os.path.join(work, want + ".prom"), "w").write(body)
            st[want] = 1
    time.sleep(0.05)
print(json.dumps(st))
EOF
  pollpid=$!
  # the screen while the work runs: model, running requests, KV used, clients
  top2=0
  if command -v tmux >/dev/null && tmux -S "$tmux_sock" -f /dev/null new-session -d -s top2 -x 120 -y 50 \
      "TERM=screen LANG=C.UTF-8 $top --socket $ssock --interval 200; sleep 30" 2>>"$work/tmux.err"; then
    have_tmux=1 top2=1
  fi
  wl=()
  for i in 1 2 3 4; do
    timeout 300 "$pinfer" generate --socket "$ssock" --temperature 0 --ignore-eos --max-tokens 64 -q "$story" >/dev/null 2>&1 &
    wl+=($!)
  done
  timeout 300 "$pinfer" generate --socket "$ssock" --ignore-eos -n 3 --max-tokens 16 -q "$story" >/dev/null 2>&1 & wl+=($!)
  timeout 300 "$pinfer" generate --socket "$ssock" --ignore-eos --deadline-ms 300 --max-tokens 200 -q "$story" >/dev/null 2>&1 & wl+=($!)
  "$pinfer" generate --socket "$ssock" --ignore-eos --max-tokens 200 -q "$story" >/dev/null 2>&1 &
  intpid=$!
  "$pinfer" generate --socket "$ssock" --ignore-eos --max-tokens 200 -q "$story" >/dev/null 2>&1 &
  killpid=$!
  in_flight() { # pid -> 0 once the daemon lists that client with a request in flight
    topjson "$ssock" && jq_py "any(c['pid'] == $1 and c['inflight'] == 1 for c in j['clients'])"
  }
  if [ $top2 = 1 ]; then
    screen2() { tmux -S "$tmux_sock" capture-pane -p -t top2 >"$work/screen2.txt" 2>/dev/null; }
    shows_work() { # the model, requests running, KV blocks used and a client (pid) on one screen
      screen2 && grep -q "model $model_name" "$work/screen2.txt" && grep -q "running [1-9]" "$work/screen2.txt" \
        && grep -q "used [1-9]" "$work/screen2.txt" && grep -q "^ *$intpid .* pinfer " "$work/screen2.txt"
    }
    wait_for 30 shows_work && ok "screen while work runs: model, $(grep -o "running [0-9]*" "$work/screen2.txt" | head -1), KV $(grep -o "used [0-9]*" "$work/screen2.txt" | head -1) blocks, client pid $intpid listed" \
      || { fail "the screen did not show the running work:"; cat "$work/screen2.txt"; }
  fi
  wait_for 60 in_flight $intpid && kill -INT $intpid || fail "the request to cancel was never in flight"
  wait_for 60 in_flight $killpid && kill -KILL $killpid || fail "the client to kill never had a request in flight"
  { # (bash reports the killed client on stderr when it reaps it)
    for p in "${wl[@]}"; do wait "$p" || fail "workload request (pid $p) failed: exit $?"; done
    wait $intpid; rc=$?
    [ $rc = 130 ] || [ $rc = 0 ] || fail "pinfer generate after Ctrl-C: exit $rc"
    wait $killpid
  } 2>/dev/null
  # the beam request after the mix, alone: a beam preempted beside others is
  # recomputed, never swapped (its siblings wait for its logits, scheduler.c
  # unwedge), which would leave the swap counters below to chance
  timeout 300 "$pinfer" generate --socket "$ssock" --ignore-eos --beam-width 2 --max-tokens 8 -q "$story" >/dev/null 2>&1 \
    || fail "beam request on the small pool: exit $?"
  drained() { topjson "$ssock" && jq_py "j['requests']['running'] == 0 and j['requests']['waiting'] == 0"; }
  wait_for 60 drained || { fail "the small pool did not drain"; cat "$work/top.json"; }
  touch "$work/poll.stop"
  [ $top2 = 1 ] && tmux -S "$tmux_sock" kill-session -t top2 2>/dev/null
  wait $pollpid
  poll=$(tail -1 "$work/poll.out")
  pq() { python3 -c "import json,sys; p=json.loads(sys.argv[1]); sys.exit(0 if ($1) else 1)" "$poll" 2>/dev/null; }
  seen=$(python3 -c "import json,sys; p=json.loads(sys.argv[1]); print('%d snapshots; at most %d requests running (%d sequences), %d waiting, %d waiting preempted, %d KV blocks used' % (p['snaps'], p['max_running'], p['max_seqs_running'], p['max_waiting'], p['max_preempted'], p['max_kv_used']))" "$poll" 2>/dev/null)
  pq "p['snaps'] >= 5 and not p['violations'] and p.get('top_errors', 0) <= 3" && ok "every snapshot during the workload added up: $seen" \
    || { fail "snapshots during the workload:"; cat "$work/poll.out"; }
  pq "p['max_kv_used'] > 0 and p['max_running'] >= 2" \
    && ok "KV usage and running requests rose while the work ran" || fail "KV usage or running never rose: $poll"
  pq "p['max_preempted'] >= 1" && ok "pinfer:num_requests_preempted / preempted_waiting seen > 0 while a preempted request waited" \
    || fail "no preempted request seen waiting: $poll"
  for f in mid mid_preempted; do
    if [ -s "$work/$f.prom" ]; then
      python3 "$work/check.py" "$work/$f.prom" "$model_name" >"$work/$f.v" || { fail "$f scrape:"; cat "$work/$f.v"; }
      promcheck "$work/$f.prom" && ok "promtool on the exposition taken while work ran ($f): kv_cache_usage_perc $(awk -v u="$(value "$work/$f.v" kv_usage_ppm)" 'BEGIN { print u / 1e6 }'), $(value "$work/$f.v" pinfer:num_requests_running) running, $(value "$work/$f.v" pinfer:num_requests_preempted) preempted" \
        || { fail "promtool, $f:"; cat "$work/promtool.out"; }
      [ "$(value "$work/$f.v" kv_usage_ppm)" -gt 0 ] || fail "$f: kv_cache_usage_perc 0 while work ran"
    else
      fail "no exposition was taken while work ran ($f)"
    fi
  done
  scrape2 s2 || fail "small pool: scrape after the drain"
  promcheck "$work/s2.prom" && ok "promtool on the exposition after the drain" || { fail "promtool, after the drain:"; cat "$work/promtool.out"; }
  d() { delta "$1" s1 s2; }
  [ "$(d pinfer:request_admitted_total)" = 9 ] && [ "$(d finished)" = 9 ] \
    && [ "$(d finished_length)" = 6 ] && [ "$(d finished_cancelled)" = 2 ] && [ "$(d finished_deadline)" = 1 ] \
    && [ "$(value "$work/s2.v" pinfer:num_requests_running)" = 0 ] && [ "$(value "$work/s2.v" pinfer:num_requests_waiting)" = 0 ] \
    && ok "after the drain: 9 admitted = 6 length + 2 cancelled (Ctrl-C, killed client) + 1 deadline; none running or waiting" \
    || { fail "request counters after the mixed workload (before | after):"; paste "$work/s1.v" "$work/s2.v"; }
  [ "$(value "$work/s2.v" kv_used_blocks)" = 0 ] && [ "$(value "$work/s2.v" kv_usage_ppm)" = 0 ] \
    && ok "KV usage back to 0 after the drain" || fail "KV still used after the drain: $(grep kv_ "$work/s2.v")"
  [ "$(d pinfer:num_preemptions_total)" -gt 0 ] && [ "$(value "$work/s2.v" pinfer:num_requests_preempted)" = 0 ] \
    && ok "$(d pinfer:num_preemptions_total) preemptions counted" || fail "no preemptions counted on the small pool"
  [ "$(d pinfer:num_swap_outs_total)" -gt 0 ] && [ "$(d pinfer:num_swap_ins_total)" -le "$(d pinfer:num_swap_outs_total)" ] \
    && [ "$(value "$work/s2.v" pinfer:num_requests_swapped)" = 0 ] \
    && ok "$(d pinfer:num_swap_outs_total) of them swapped out to host memory, $(d pinfer:num_swap_ins_total) back in (a cancelled one is not); none left swapped" \
    || fail "swap counters: $(d pinfer:num_swap_outs_total) out, $(d pinfer:num_swap_ins_total) in, $(value "$work/s2.v" pinfer:num_requests_swapped) swapped"
  q=$(d pinfer:prefix_cache_queries_total) h=$(d pinfer:prefix_cache_hits_total)
  # once per first admission: a multiple of the prompt, at most one per
  # request (one that waited through many admission attempts, or was
  # preempted and re-admitted, still counts once), at least the six that ran
  [ $((q % ptok)) = 0 ] && [ "$q" -le $((9 * ptok)) ] && [ "$q" -ge $((6 * ptok)) ] && [ $((h % 16)) = 0 ] && [ "$h" -le "$q" ] \
    && ok "prefix cache counted once per admitted request: $q tokens queried ($((q / ptok)) x $ptok), $h hit" \
    || fail "prefix-cache counters: $q queried (prompt $ptok tokens, 9 requests), $h hit"
  if topjson "$ssock" && jq_py "j['requests']['admitted_total'] == sum(j['requests']['finished'].values()) and j['kv']['blocks_used'] == 0 and j['kv']['blocks_used'] + j['kv']['blocks_cached'] + j['kv']['blocks_free'] == j['kv']['blocks_total']"; then
    ok "pinfer-top --json agrees: every admitted request finished; KV blocks free + cached = total"
  else
    fail "pinfer-top --json after the workload:"; cat "$work/top.json"
  fi
  kill -TERM $x2pid $spid; wait $x2pid $spid 2>/dev/null; x2pid= spid=
fi

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

# ---- 5. daemon gone, then back --------------------------------------------------------
if [ $have_model = 1 ]; then kill -KILL "$mpid"; wait "$mpid" 2>/dev/null; mpid=
else kill -KILL "$epid"; wait "$epid" 2>/dev/null; epid=; fi
if wait_for 30 bash -c "[ \"\$(python3 -c 'import urllib.request,urllib.error,sys
try: urllib.request.urlopen(sys.argv[1], timeout=15); print(200)
except urllib.error.HTTPError as e: print(e.code)' '$url/metrics')\" = 503 ]"; then
  code=$(http GET "$url/metrics")
  [ "$code" = 503 ] && [ "$(wc -l <"$work/body")" = 1 ] && grep -q "unreachable" "$work/body" \
    && ok "daemon killed: /metrics 503 with one line: $(cat "$work/body")" || fail "503 body: $(cat "$work/body")"
  code=$(http GET "$url/health")
  [ "$code" = 503 ] && grep -q "unreachable" "$work/body" && ok "daemon killed: /health 503: $(cat "$work/body")" \
    || fail "/health with the daemon gone: $code $(cat "$work/body")"
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
  [ "$(http GET "$url/health")" = 200 ] && ok "daemon restarted: /health 200 again" || fail "/health after the restart: $(cat "$work/body")"
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
