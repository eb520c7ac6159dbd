"""Streams through pinfer-server survive a pinferd drain and restart.

Run by tests/integration/server.sh: it computes reference answers, opens
three streams (greedy, seeded sampling, n=2), writes MARKER once every stream
has received some tokens, and expects the shell to SIGTERM pinferd and start
it again; each stream must then complete with exactly the reference text.
"""
import concurrent.futures
import json
import os
import sys
import threading
import time

import openai

URL = os.environ["PF_URL"]
KEY = os.environ["PF_KEY"]
MODEL = os.environ["PF_MODEL_ID"]
MARKER = os.environ["PF_MARKER"]

REQS = [
    {"prompt": "Tell me about the sea.", "max_tokens": 120, "temperature": 0},
    {"prompt": "Write a poem about rain.", "max_tokens": 120, "temperature": 0.8, "top_p": 0.9, "seed": 7},
    {"prompt": "Name some colours.", "max_tokens": 100, "temperature": 0.7, "seed": 3, "n": 2},
]
client = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=600)
ref = []
for r in REQS:
    c = client.completions.create(model=MODEL, extra_body={"ignore_eos": True}, **r)
    ref.append([ch.text for ch in sorted(c.choices, key=lambda x: x.index)])

started = [threading.Event() for _ in REQS]


def stream(i):
    r = REQS[i]
    texts = [""] * r.get("n", 1)
    reasons = [None] * len(texts)
    for ch in client.completions.create(model=MODEL, stream=True, extra_body={"ignore_eos": True}, **r):
        for c in ch.choices:
            texts[c.index] += c.text
            reasons[c.index] = c.finish_reason or reasons[c.index]
        if all(len(t) > 20 for t in texts):
            started[i].set()
    started[i].set()
    return texts, reasons


with concurrent.futures.ThreadPoolExecutor(len(REQS)) as ex:
    futs = [ex.submit(stream, i) for i in range(len(REQS))]
    for e in started:
        e.wait(300)
    with open(MARKER, "w") as f:
        f.write("go\n")
    res = [f.result() for f in futs]

bad = 0
for i, (texts, reasons) in enumerate(res):
    if texts != ref[i] or any(x != "length" for x in reasons):
        bad += 1
        print("FAIL: stream %d after the restart: %r (reasons %s) != %r" % (i, texts, reasons, ref[i]))
    else:
        print("# ok: stream %d complete across the drain and restart, equal to an uninterrupted run" % i)
sys.exit(1 if bad else 0)
