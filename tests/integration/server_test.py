"""pinfer-server through the official `openai` package and raw HTTP (httpx,
which the package brings).  Run by tests/integration/server.sh, which starts
pinferd and the servers and passes them in the environment.

The typed models of `openai` accept missing optional fields and extra ones,
so every field we promise is checked on the raw JSON as well.  Waits are for
conditions with generous limits; nothing asserts a latency.
"""
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import threading
import time

import openai

try:  # the HTTP client `openai` itself uses: httpx, renamed httpx2 in later releases
    import httpx
except ImportError:
    import httpx2 as httpx

URL = os.environ["PF_URL"]
TIGHT = os.environ["PF_TIGHT_URL"]
KEY = os.environ["PF_KEY"]
MODEL = os.environ["PF_MODEL_ID"]
SOCK = os.environ["PF_SOCK"]
BIN = os.environ["PF_BIN"]
ASAN = os.environ.get("PF_ASAN") == "1"

failures = []


def check(cond, what):
    if cond:
        print("# ok:", what)
    else:
        print("FAIL:", what)
        failures.append(what)
    return cond


client = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=300)
http = httpx.Client(base_url=URL, headers={"Authorization": "Bearer " + KEY}, timeout=300)

FINISH = {"stop", "length", "tool_calls", "content_filter", "function_call"}


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def check_usage(u, what):
    ok = (isinstance(u, dict) and all(is_int(u.get(k)) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
          and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
          and isinstance(u.get("prompt_tokens_details"), dict)
          and is_int(u["prompt_tokens_details"].get("cached_tokens")))
    return check(ok, what + ": usage has prompt/completion/total (summing) and prompt_tokens_details.cached_tokens: %s" % u)


def check_completion_obj(j, kind, n, what):
    obj = "chat.completion" if kind == "chat" else "text_completion"
    prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
    ok = (isinstance(j.get("id"), str) and j["id"].startswith(prefix) and j.get("object") == obj
          and is_int(j.get("created")) and abs(j["created"] - time.time()) < 3600 and j.get("model") == MODEL
          and isinstance(j.get("choices"), list) and len(j["choices"]) == n)
    if ok:
        for i, c in enumerate(j["choices"]):
            ok &= c.get("index") == i and c.get("finish_reason") in FINISH and "logprobs" in c
            if kind == "chat":
                m = c.get("message")
                ok &= isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), str)
            else:
                ok &= isinstance(c.get("text"), str)
    check(ok, what + ": id, object, created, model, choices[index, %s, finish_reason, logprobs]"
          % ("message{role,content}" if kind == "chat" else "text"))
    check_usage(j.get("usage"), what)


def raw_post(path, body, headers=None, url=None):
    h = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    h.update(headers or {})
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post((url or URL) + path, content=data, headers=h, timeout=300)


def sse(path, body):
    """The data: payloads of a streamed answer, in order (the last is '[DONE]')."""
    out = []
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200, (r.status_code, r.read())
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(line[6:])
    return out


def err(r, status, what, param=None, contains=()):
    try:
        e = r.json().get("error", {})
    except Exception:
        e = {}
    ok = (r.status_code == status and isinstance(e.get("message"), str) and isinstance(e.get("type"), str)
          and "param" in e and "code" in e and (param is None or e.get("param") == param)
          and all(c in e.get("message", "") for c in contains))
    return check(ok, "%s -> %d %s" % (what, r.status_code, e.get("message")))


CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three colours."}]

# ---- GET endpoints ------------------------------------------------------------------------
j = httpx.get(URL + "/v1/models", headers={"Authorization": "Bearer " + KEY}).json()
d = j.get("data") or [{}]
check(j.get("object") == "list" and len(j["data"]) == 1 and d[0].get("id") == MODEL and d[0].get("object") == "model"
      and is_int(d[0].get("created")) and d[0].get("owned_by") == "pinfer" and is_int(d[0].get("max_model_len"))
      and d[0]["max_model_len"] > 0, "/v1/models: id, object, created, owned_by, max_model_len: %s" % j)
ctx = d[0].get("max_model_len", 0)
check([m.id for m in client.models.list()] == [MODEL], "openai: models.list()")
r = httpx.get(URL + "/health")
check(r.status_code == 200, "/health 200 while pinferd answers")
r = httpx.get(URL + "/version")
check(r.status_code == 200 and isinstance(r.json().get("version"), str), "/version: %s" % r.text)

# ---- chat, not streamed ------------------------------------------------------------------------
raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=CHAT, max_tokens=24, temperature=0)
j = json.loads(raw.text)
check_completion_obj(j, "chat", 1, "chat")
typed = raw.parse()
check(typed.choices[0].message.content == j["choices"][0]["message"]["content"] and len(typed.choices[0].message.content) > 0,
      "openai: chat.completions.create -> %r" % typed.choices[0].message.content)
chat_text = j["choices"][0]["message"]["content"]
chat_usage = j["usage"]

# content as an array of text parts, max_completion_tokens: the same greedy answer
j2 = raw_post("/v1/chat/completions", {"model": MODEL, "max_completion_tokens": 24, "temperature": 0, "messages": [
    CHAT[0], {"role": "user", "content": [{"type": "text", "text": "Name three colours."}]}]}).json()
check(j2["choices"][0]["message"]["content"] == chat_text, "chat: content as text parts, max_completion_tokens")

# ---- chat, streamed: role first, usage on request, chunks == whole --------------------------------
ev = sse("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "max_tokens": 24, "temperature": 0, "stream": True,
                                  "stream_options": {"include_usage": True}})
check(ev[-1] == "[DONE]", "chat stream ends with [DONE]")
chunks = [json.loads(e) for e in ev[:-1]]
ok = all(c.get("object") == "chat.completion.chunk" and c.get("id") == chunks[0]["id"] and c.get("model") == MODEL
         and is_int(c.get("created")) and "usage" in c for c in chunks)
check(ok, "chat chunks: object, one id, model, created, usage key on every chunk")
check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first chat chunk carries the role")
body = [c for c in chunks if c["choices"]]
check(all(c["usage"] is None for c in body), "usage is null on every chunk with choices")
fu = chunks[-1].get("usage") or {}
check_usage(fu, "final chat chunk")
check(chunks[-1]["choices"] == [] and all(fu.get(k) == chat_usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")),
      "final chunk: choices [] and the token counts of the non-streamed answer: %s" % fu)
text = "".join(c["choices"][0]["delta"].get("content") or "" for c in body)
check(text == chat_text, "concatenated chat deltas equal the non-streamed text")
fin = [c["choices"][0].get("finish_reason") for c in body]
check(fin[-1] in FINISH and all(f is None for f in fin[:-1]), "finish_reason only in the last chunk of the choice")

# the openai client's own streaming
s = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=24, temperature=0, stream=True)
check("".join(c.choices[0].delta.content or "" for c in s if c.choices) == chat_text, "openai: chat stream=True")

# ---- completions --------------------------------------------------------------------------------
P = "The capital of France is"
raw = client.completions.with_raw_response.create(model=MODEL, prompt=P, max_tokens=20, temperature=0,
                                                  extra_body={"ignore_eos": True})
j = json.loads(raw.text)
check_completion_obj(j, "completion", 1, "completion")
comp_text = j["choices"][0]["text"]
check(j["usage"]["completion_tokens"] == 20 and j["choices"][0]["finish_reason"] == "length",
      "ignore_eos: 20 tokens, finish_reason length")

# greedy through HTTP == greedy through libpinfer (the pinfer CLI)
cli = subprocess.run([BIN + "/pinfer", "generate", "--socket", SOCK, "--temperature", "0", "--max-tokens", "20",
                      "--ignore-eos", P], capture_output=True, text=True, timeout=300)
check(cli.returncode == 0 and cli.stdout.rstrip("\n") == comp_text.rstrip("\n") and cli.stdout.startswith(comp_text.rstrip("\n")),
      "greedy over HTTP equals `pinfer generate` (%r vs %r)" % (comp_text, cli.stdout))

ev = sse("/v1/completions", {"model": MODEL, "prompt": P, "max_tokens": 20, "temperature": 0, "ignore_eos": True,
                             "stream": True})
chunks = [json.loads(e) for e in ev[:-1]]
check(ev[-1] == "[DONE]" and all(c["object"] == "text_completion" and "usage" not in c for c in chunks),
      "completion stream: text_completion chunks, no usage key without include_usage, [DONE]")
check("".join(c["choices"][0]["text"] for c in chunks) == comp_text, "concatenated completion chunks equal the whole")

s = client.completions.create(model=MODEL, prompt=P, max_tokens=20, temperature=0, stream=True,
                              extra_body={"ignore_eos": True})
check("".join(c.choices[0].text for c in s if c.choices) == comp_text, "openai: completions stream=True")

# echo
j = raw_post("/v1/completions", {"model": MODEL, "prompt": P, "max_tokens": 20, "temperature": 0, "ignore_eos": True,
                                 "echo": True}).json()
check(j["choices"][0]["text"] == P + comp_text, "echo puts the prompt before the text")

# n=2, several prompts, token-id prompts
j = raw_post("/v1/completions", {"model": MODEL, "prompt": [P, "One, two,"], "max_tokens": 8, "temperature": 0,
                                 "n": 2, "ignore_eos": True}).json()
check_completion_obj(j, "completion", 4, "2 prompts x n=2")
t = [c["text"] for c in j["choices"]]
check(t[0] == t[1] and t[2] == t[3] and t[0] != t[2] and t[0] == comp_text[:len(t[0])],
      "2 prompts x n=2 greedy: choices 0,1 are prompt 0's, 2,3 prompt 1's")
check(j["usage"]["completion_tokens"] == 32 and j["usage"]["prompt_tokens"] > 5,
      "usage counts the 4 choices' tokens (32) and both prompts: %s" % j["usage"])

# token ids: the ids of P from the logprob-free route are not known here; use ids that
# certainly exist and check the shape, and that one list and a list of lists agree
ids = [504, 3575, 282, 4649, 314]
j1 = raw_post("/v1/completions", {"model": MODEL, "prompt": ids, "max_tokens": 6, "temperature": 0}).json()
j2 = raw_post("/v1/completions", {"model": MODEL, "prompt": [ids, ids], "max_tokens": 6, "temperature": 0}).json()
check("choices" in j1 and "choices" in j2 and len(j2["choices"]) == 2 and j1["usage"]["prompt_tokens"] == 5
      and j2["choices"][0]["text"] == j1["choices"][0]["text"] == j2["choices"][1]["text"],
      "token-id prompts: %r, prompt_tokens 5" % (j1.get("choices") and j1["choices"][0]["text"]))

# /tokenize and /detokenize (vLLM's shapes) through the daemon's tokenizer
comp_prompt_tokens = json.loads(raw.text)["usage"]["prompt_tokens"]
t = raw_post("/tokenize", {"model": MODEL, "prompt": P}).json()
check(is_int(t.get("count")) and t["count"] == comp_prompt_tokens and isinstance(t.get("tokens"), list)
      and len(t["tokens"]) == t["count"] and all(is_int(x) for x in t["tokens"]) and t.get("max_model_len") == ctx
      and "token_strs" in t, "/tokenize: count (= the completion's prompt_tokens), tokens, max_model_len: %s" % t)
j = raw_post("/v1/completions", {"model": MODEL, "prompt": t["tokens"], "max_tokens": 20, "temperature": 0,
                                 "ignore_eos": True}).json()
check(j["choices"][0]["text"] == comp_text, "greedy from /tokenize's ids equals greedy from the text")
d = raw_post("/detokenize", {"model": MODEL, "tokens": t["tokens"]}).json()
check(d.get("prompt") == P, "/detokenize(/tokenize(P)) == P: %r" % d.get("prompt"))
t = raw_post("/tokenize", {"model": MODEL, "messages": CHAT}).json()
check(t.get("count") == chat_usage["prompt_tokens"], "/tokenize messages: count equals the chat's prompt_tokens (%s)" % t.get("count"))
err(raw_post("/detokenize", {"model": MODEL, "tokens": [-1]}), 400, "/detokenize a negative id", "tokens")
err(raw_post("/detokenize", {"model": MODEL, "tokens": [10 ** 9]}), 400, "/detokenize an id past the vocabulary",
    None, ("vocabulary",))
err(raw_post("/tokenize", {"model": MODEL, "prompt": P}, {"Authorization": "Bearer wrong"}), 401, "/tokenize wrong key")
err(raw_post("/tokenize", {"model": "gpt-4", "prompt": P}), 404, "/tokenize unknown model", "model")

# chat n=2 with a seed: reproducible, choices differ from each other only by chance
req = {"model": MODEL, "messages": CHAT, "max_tokens": 16, "temperature": 1.0, "seed": 1234, "n": 2}
a = raw_post("/v1/chat/completions", req).json()
b = raw_post("/v1/chat/completions", req).json()
check_completion_obj(a, "chat", 2, "chat n=2")
check([c["message"]["content"] for c in a["choices"]] == [c["message"]["content"] for c in b["choices"]],
      "same seed, same texts")
others = [raw_post("/v1/chat/completions", dict(req, seed=s_, n=1)).json()["choices"][0]["message"]["content"]
          for s_ in (1, 2, 3)]
check(len(set(others + [a["choices"][0]["message"]["content"]])) > 1, "different seeds give different texts")

# stop strings: the text ends before the first stop, finish_reason stop
full = raw_post("/v1/completions", {"model": MODEL, "prompt": P, "max_tokens": 20, "temperature": 0,
                                    "ignore_eos": True}).json()["choices"][0]["text"]
stop = "." if "." in full else full[3:5]
j = raw_post("/v1/completions", {"model": MODEL, "prompt": P, "max_tokens": 20, "temperature": 0, "stop": [stop, "zzz"]}).json()
check(j["choices"][0]["text"] == full[:full.index(stop)] and j["choices"][0]["finish_reason"] == "stop",
      "stop %r: %r, finish_reason stop" % (stop, j["choices"][0]["text"]))
s = client.completions.create(model=MODEL, prompt=P, max_tokens=20, temperature=0, stop=stop, stream=True)
check("".join(c.choices[0].text for c in s if c.choices) == full[:full.index(stop)], "stop string, streamed")

# logprobs, both shapes
j = raw_post("/v1/completions", {"model": MODEL, "prompt": P, "max_tokens": 6, "temperature": 0, "logprobs": 2}).json()
lp = j["choices"][0]["logprobs"]
n_tok = j["usage"]["completion_tokens"]
check(isinstance(lp, dict) and all(len(lp[k]) == n_tok for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset"))
      and "".join(lp["tokens"]) == j["choices"][0]["text"] and all(x <= 0 for x in lp["token_logprobs"])
      and all(isinstance(d_, dict) and 1 <= len(d_) <= 2 for d_ in lp["top_logprobs"])
      and lp["text_offset"] == [sum(len(t_) for t_ in lp["tokens"][:i]) for i in range(n_tok)],
      "completion logprobs: tokens, token_logprobs, top_logprobs, text_offset")
j = raw_post("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "max_tokens": 6, "temperature": 0,
                                      "logprobs": True, "top_logprobs": 3}).json()
content = (j["choices"][0].get("logprobs") or {}).get("content")
check(isinstance(content, list) and len(content) == j["usage"]["completion_tokens"]
      and all(isinstance(e["token"], str) and e["logprob"] <= 0 and isinstance(e["bytes"], list)
              and len(e["top_logprobs"]) == 3 and all("token" in a_ and "logprob" in a_ and "bytes" in a_ for a_ in e["top_logprobs"])
              and e["top_logprobs"][0]["logprob"] >= e["top_logprobs"][-1]["logprob"] for e in content)
      and "".join(e["token"] for e in content) == j["choices"][0]["message"]["content"],
      "chat logprobs.content: token, logprob, bytes, top_logprobs x3")

# ---- errors ---------------------------------------------------------------------------------------


err(raw_post("/v1/chat/completions", '{"model": "smol", "messages": ['), 400, "truncated JSON")
err(raw_post("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "temperature": 5}), 400, "temperature 5",
    "temperature", ("[0, 2]",))
err(raw_post("/v1/completions", {"model": MODEL, "prompt": P, "max_tokens": "many"}), 400, "max_tokens a string", "max_tokens")
err(raw_post("/v1/completions", {"model": "gpt-4", "prompt": P}), 404, "unknown model", "model")
try:
    client.completions.create(model="gpt-4", prompt=P)
    check(False, "openai: unknown model raises NotFoundError")
except openai.NotFoundError:
    check(True, "openai: unknown model raises NotFoundError")
err(raw_post("/v1/completions", {"model": MODEL, "prompt": P, "max_tokens": ctx}), 400, "prompt + max_tokens over the context",
    None, (str(ctx),))
err(raw_post("/v1/completions", {"model": MODEL, "prompt": P}, {"Authorization": "Bearer wrong"}), 401, "wrong key")
err(httpx.post(URL + "/v1/completions", json={"model": MODEL, "prompt": P}), 401, "missing key")
try:
    openai.OpenAI(base_url=URL + "/v1", api_key="nope", max_retries=0).models.list()
    check(False, "openai: wrong key raises AuthenticationError")
except openai.AuthenticationError:
    check(True, "openai: wrong key raises AuthenticationError")
err(raw_post("/v1/completions", {"model": MODEL, "prompt": "x" * 70000}), 413, "a 70 kB body over --max-body 64 kB")
err(raw_post("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}),
    400, "tools refused", "tools")
err(raw_post("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "response_format": {"type": "json_object"}}),
    400, "response_format json_object refused", "response_format")
err(raw_post("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "logit_bias": {"50": 10}}), 400, "logit_bias refused",
    "logit_bias")
err(raw_post("/v1/completions", {"model": MODEL, "prompt": P, "suffix": "end"}), 400, "suffix refused", "suffix")
err(raw_post("/v1/completions", {"model": MODEL, "prompt": P, "best_of": 3}), 400, "best_of > n refused", "best_of")
err(raw_post("/v1/completions", {"model": MODEL, "prompt": P, "echo": True, "logprobs": 1}), 400, "echo + logprobs refused",
    "logprobs")
err(raw_post("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "stream_options": {"include_usage": True}}), 400,
    "stream_options without stream", "stream_options")
err(raw_post("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}), 400, "image part refused",
    "messages[0].content[0].type")
err(raw_post("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "frobnicate": 1}), 400, "unknown field", "frobnicate")
err(raw_post("/v1/chat/completions", {"model": MODEL, "messages": CHAT, "n": 99}), 400, "n 99", "n", ("[1, 16]",))

# 429: the tight server takes one request at a time
tight = httpx.Client(base_url=TIGHT, headers={"Authorization": "Bearer " + KEY}, timeout=300)
with tight.stream("POST", "/v1/completions", json={"model": MODEL, "prompt": P, "max_tokens": 400, "ignore_eos": True,
                                                   "stream": True}) as held:
    next(held.iter_lines())
    r = tight.post("/v1/completions", json={"model": MODEL, "prompt": P, "max_tokens": 2})
    err(r, 429, "a second request over --max-requests 1")
    check(r.headers.get("retry-after") == "1", "429 carries Retry-After")

# ---- a client that disconnects mid-stream frees its KV blocks ---------------------------------------


def kv_used():
    out = subprocess.run([BIN + "/pinfer-top", "--socket", SOCK, "--json", "--interval", "0"], capture_output=True,
                         text=True, timeout=60)
    return json.loads(out.stdout)["kv"]["blocks_used"] if out.returncode == 0 else None


def wait_for(limit, fn):
    end = time.time() + limit
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    return None


check(wait_for(60, lambda: kv_used() == 0), "KV blocks in use 0 before the disconnect test")
sock = socket.create_connection(("127.0.0.1", int(URL.rsplit(":", 1)[1])))
body = json.dumps({"model": MODEL, "prompt": P, "max_tokens": 3000, "ignore_eos": True, "stream": True}).encode()
sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
             b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
got = b""
while got.count(b"data: ") < 3:
    got += sock.recv(65536)
check(b"200 OK" in got and wait_for(60, lambda: (kv_used() or 0) > 0), "a long stream runs and holds KV blocks")
sock.close()
check(wait_for(120, lambda: kv_used() == 0) is not None, "after the client disconnected mid-stream KV blocks in use return to 0")
# and a client that leaves while waiting for a non-streamed answer
sock = socket.create_connection(("127.0.0.1", int(URL.rsplit(":", 1)[1])))
body = json.dumps({"model": MODEL, "prompt": P, "max_tokens": 3000, "ignore_eos": True}).encode()
sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
             b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
check(wait_for(60, lambda: (kv_used() or 0) > 0), "a long non-streamed request holds KV blocks")
sock.close()
check(wait_for(120, lambda: kv_used() == 0) is not None, "after the client left mid-request KV blocks in use return to 0")

# ---- 64 concurrent streams, correct and separate ---------------------------------------------------
N = 16 if ASAN else 64
prompts = ["Count to ten: one,", "My favourite food is", "The ocean is", "Once upon a time",
           "def fibonacci(n):", "The best way to learn", "In 1969, humans", "Water boils at"]
expect = {p: raw_post("/v1/completions", {"model": MODEL, "prompt": p, "max_tokens": 8, "temperature": 0,
                                          "ignore_eos": True}).json()["choices"][0]["text"] for p in prompts}
check(len(set(expect.values())) == len(prompts), "8 prompts with 8 different greedy answers")
barrier = threading.Barrier(N)


def one_stream(i):
    p = prompts[i % len(prompts)]
    c = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=600)
    barrier.wait(timeout=120)
    s_ = c.completions.create(model=MODEL, prompt=p, max_tokens=8, temperature=0, stream=True,
                              extra_body={"ignore_eos": True})
    return p, "".join(ch.choices[0].text for ch in s_ if ch.choices)


with concurrent.futures.ThreadPoolExecutor(N) as ex:
    res = list(ex.map(one_stream, range(N)))
bad = [(p, t) for p, t in res if t != expect[p]]
check(not bad, "%d concurrent streams each got its own prompt's greedy text (%d wrong: %s)" % (N, len(bad), bad[:3]))

# ---- 200 malformed requests: each a 4xx, the server stays up ------------------------------------------
bodies = []
good = json.dumps({"model": MODEL, "prompt": P, "max_tokens": 4})
for i in range(60):
    bodies.append(("/v1/completions", good[:i * len(good) // 60]))                       # truncated
for k, v in [("max_tokens", "x"), ("max_tokens", 1e300), ("max_tokens", 10 ** 30), ("temperature", "hot"),
             ("n", -1), ("top_p", 0), ("stop", 7), ("stop", ["a"] * 20), ("seed", "s"), ("prompt", 5),
             ("prompt", []), ("prompt", [[]]), ("prompt", [-1]), ("prompt", {"a": 1}), ("logprobs", 99),
             ("stream", "yes"), ("min_p", 2), ("top_k", -5), ("priority", 1.5), ("echo", 1)]:
    b_ = json.loads(good)
    b_[k] = v
    for _ in range(3):
        bodies.append(("/v1/completions", json.dumps(b_)))                                # wrong types, huge numbers
for i in range(40):
    bodies.append(("/v1/chat/completions", b'{"model": "smol", "messages": [{"role": "user", "content": "\xff\xfe' +
                   bytes([0x80 + i]) + b'"}]}'))                                          # invalid UTF-8
for i in range(20):
    bodies.append(("/v1/chat/completions", "[" * (i + 1) * 50))                           # nesting
for i in range(20):
    bodies.append(("/v1/completions", "{" + " " * (70000 + i)))                           # oversized
bodies = bodies[:200]
statuses = []
for path, b_ in bodies:
    try:
        statuses.append(raw_post(path, b_).status_code)
    except httpx.HTTPError as e:
        statuses.append(str(e))
bad = [(i, s_) for i, s_ in enumerate(statuses) if not (isinstance(s_, int) and 400 <= s_ < 500)]
check(len(statuses) == 200 and not bad, "200 malformed requests each got a 4xx (%s)" % bad[:5])
check(httpx.get(URL + "/health").status_code == 200, "the server still answers after the malformed requests")

# ---- slow-loris: a header that never ends is closed (or 408) after --timeout -----------------------------
sock = socket.create_connection(("127.0.0.1", int(TIGHT.rsplit(":", 1)[1])))  # --timeout 20
sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
sock.settimeout(120)
t0 = time.time()
try:
    data = sock.recv(4096)
except OSError:
    data = b"error"
check(data == b"" or data.startswith(b"HTTP/1.1 408"), "an unfinished header is dropped after the idle timeout (%r)" % data[:40])
sock.close()

# ---- 1,000 idle keep-alive connections are held, and requests still go through ---------------------
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 1000 if not ASAN else 300
if soft < want + 100 and hard >= want + 100:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want + 100, hard))
tport = int(TIGHT.rsplit(":", 1)[1])  # the tight server keeps idle connections for 20 s


def health_on(s_):
    """GET /health on an open connection; True on a whole 200 answer (headers + Content-Length body)."""
    s_.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d_ = s_.recv(4096)
        if not d_:
            return False
        buf += d_
    head_, _, rest = buf.partition(b"\r\n\r\n")
    n_ = [int(l.split(b":")[1]) for l in head_.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    while n_ and len(rest) < n_[0]:
        d_ = s_.recv(4096)
        if not d_:
            return False
        rest += d_
    return head_.startswith(b"HTTP/1.1 200") and bool(n_) and len(rest) == n_[0]


conns = []
ok = True
try:
    for i in range(want):
        conns.append(socket.create_connection(("127.0.0.1", tport), timeout=60))
    for s_ in conns:
        ok &= health_on(s_)
except OSError as e:
    ok = False
    print("# %d connections open when: %s" % (len(conns), e))
check(ok and len(conns) == want, "%d keep-alive connections opened, each answered" % want)
r = raw_post("/v1/completions", {"model": MODEL, "prompt": P, "max_tokens": 20, "temperature": 0, "ignore_eos": True},
             url=TIGHT)
check(r.status_code == 200 and r.json()["choices"][0]["text"] == comp_text, "a request while they are held")
again = 0
for s_ in conns:
    try:
        again += health_on(s_)
    except OSError:
        pass
    s_.close()
check(again == want, "all %d still open and answering afterwards (%d)" % (want, again))

# normal service afterwards
j = raw_post("/v1/completions", {"model": MODEL, "prompt": P, "max_tokens": 20, "temperature": 0, "ignore_eos": True}).json()
check(j["choices"][0]["text"] == comp_text, "the same greedy answer at the end")

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
