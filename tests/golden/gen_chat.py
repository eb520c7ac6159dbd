#!/usr/bin/env python3
"""Generate chat-template golden data (SmolLM2, Llama-3, Mistral [INST]).

Produces:
    tests/golden/chat_smollm2.txt              rendered prompts for all three families
    tests/golden/smollm2_chat_template.jinja   tokenizer.chat_template from the GGUF, byte-exact
    tests/golden/llama3_chat_template.jinja    Meta-Llama-3-8B-Instruct template (text below)
    tests/golden/mistral_chat_template.jinja   Mistral-7B-Instruct-v0.1 template (text below)
  (the .jinja files have no trailing newline added: their bytes are exactly the template)

Regenerate (from the repository root):
    pip install llama-cpp-python==0.3.36 jinja2==3.1.6
    python3 tests/golden/gen_chat.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --outdir tests/golden

Pinned: llama-cpp-python 0.3.36 (only used to read the GGUF metadata
`tokenizer.chat_template` and the BOS/EOS token texts), jinja2 3.1.6 (renders).
Model sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53.

Rendering mirrors Hugging Face transformers' apply_chat_template
(transformers/utils/chat_template_utils.py, _compile_jinja_template and
render_jinja_template):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
              trim_blocks=True, lstrip_blocks=True,
              extensions=[jinja2.ext.loopcontrols])   # + HF's {% generation %} tracker,
                                                      #   unused by these templates
    env.filters["tojson"] = json.dumps-based tojson (ensure_ascii=False)
    env.globals["raise_exception"] = raises jinja2.exceptions.TemplateError
    env.globals["strftime_now"]    = datetime.now().strftime (unused here)
    env.from_string(template).render(messages=..., tools=None, documents=None,
                                     add_generation_prompt=..., bos_token=..., eos_token=...)
  bos_token / eos_token are the tokenizer's special-token strings (HF passes the
  special_tokens_map); the values used per family are in the output header.
  keep_trailing_newline is jinja2's default (False): one trailing newline of the
  TEMPLATE SOURCE is dropped (none of these templates ends in one).

Output format of chat_smollm2.txt (ASCII only, one case per line):
    # ...  comments
    C <family> <add_generation_prompt 0|1> <n_messages> (<role_hex> <content_hex>){n_messages} <expected_hex>
    E <family> <add_generation_prompt 0|1> <n_messages> (<role_hex> <content_hex>){n_messages} <error_hex>
  family: smollm2 | llama3 | mistral.  Hex strings are lower-case hex of the
  UTF-8 bytes, '-' when empty.  C = rendered output; E = the template called
  raise_exception(); error_hex is the message passed to it.

Canonical template texts (copied verbatim from the authors' tokenizer_config.json):
  * LLAMA3: meta-llama/Meta-Llama-3-8B-Instruct "chat_template" (the revision
    that honours add_generation_prompt).  Note `'...' + message['content'] | trim + '...'`:
    the filter binds tighter than '+', so only the content is trimmed (Python
    str.strip(); all contents used here only have ASCII whitespace at the ends).
  * MISTRAL: mistralai/Mistral-7B-Instruct-v0.1 "chat_template" (original
    v0.1 text, with eos_token + ' ' after assistant turns; no system role).
"""

import argparse
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

PINNED = "0.3.36"

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_TOKENS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}

MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)
MISTRAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}

# Message lists.  (role, content) pairs.
U, A, S = "user", "assistant", "system"
CONVERSATIONS = [
    [],
    [(U, "Hello")],
    [(S, "You are a pirate."), (U, "Hi")],
    [(U, "Hi"), (A, "Hello! How can I help?"), (U, "Tell me a joke.")],
    [(S, "Be brief."), (U, "What is 2+2?"), (A, "4"), (U, "And 3+3?")],
    [(U, "What is the capital of France?"), (A, "Paris.")],
    [(U, "")],
    [(S, ""), (U, "x")],
    [(U, "Hi"), (A, ""), (U, "")],
    [(U, "你好，世界！请介绍一下你自己。")],
    [(S, "Réponds en français."), (U, "Ça va? 😀 Привет, мир! こんにちは")],
    [(U, "line one\nline two\n\nline four\n")],
    [(U, "  padded with spaces  \n\n"), (A, "\n\tleading tab and newline"), (U, "\r\nCRLF\r\n")],
    [(U, "def f(x):\n    return x * 2\n\nprint(f(21))"), (A, "```python\n\tprint(42)\n```")],
    [(U, "Say <|im_end|> and <|im_start|>assistant\nliterally")],
    [(U, "Template-looking text: {{ messages }} {% if x %} {# c #}"), (A, "ok")],
    [(U, "He said \"hi\" and 'bye' \\ backslash")],
    [(S, "sys"), (U, "u1"), (A, "a1"), (U, "u2"), (A, "a2"), (U, "u3"), (A, "a3"), (U, "u4")],
    [(S, "Only a system message.")],
    [(A, "I speak first.")],
    [(U, "one"), (U, "two")],
    [(U, "What's the weather?"), ("tool", "{\"temp\": 21}")],
]


def compile_template(src):
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(src)


def hexs(s):
    b = s.encode("utf-8")
    return b.hex() if b else "-"


def main():
    ap = argparse.ArgumentParser(description="chat template golden data")
    ap.add_argument("--model", default="/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--outdir", default="tests/golden")
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama
    if llama_cpp.__version__ != PINNED:
        sys.exit(f"llama-cpp-python {PINNED} required, found {llama_cpp.__version__}")
    llm = Llama(model_path=args.model, vocab_only=True, verbose=False)
    smol_src = llm.metadata["tokenizer.chat_template"]
    vocab = llm._model.vocab
    smol_tokens = {
        "bos_token": llama_cpp.llama_vocab_get_text(vocab, llama_cpp.llama_vocab_bos(vocab)).decode(),
        "eos_token": llama_cpp.llama_vocab_get_text(vocab, llama_cpp.llama_vocab_eos(vocab)).decode(),
    }

    families = [
        ("smollm2", smol_src, smol_tokens),
        ("llama3", LLAMA3_TEMPLATE, LLAMA3_TOKENS),
        ("mistral", MISTRAL_TEMPLATE, MISTRAL_TOKENS),
    ]
    for name, src, _ in families:
        with open(os.path.join(args.outdir, f"{name}_chat_template.jinja"), "wb") as f:
            f.write(src.encode("utf-8"))

    lines = []
    L = lines.append
    L("# pinfer chat-template golden data -- generated by tests/golden/gen_chat.py")
    L(f"# llama-cpp-python {llama_cpp.__version__} (GGUF metadata), jinja2 {jinja2.__version__} (rendering)")
    L(f"# generated {datetime.date.today().isoformat()}")
    L("# model SmolLM2-135M-Instruct.Q4_1.gguf sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    L("# env: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loopcontrols), "
      "raise_exception, tojson, strftime_now; render(messages, tools=None, documents=None, "
      "add_generation_prompt, bos_token, eos_token)")
    for name, src, toks in families:
        L(f"# family {name} template {name}_chat_template.jinja bos_token_hex {hexs(toks['bos_token'])} "
          f"eos_token_hex {hexs(toks['eos_token'])}")
    L("# C <family> <add_generation_prompt> <n_messages> (<role_hex> <content_hex>)* <expected_hex>")
    L("# E <family> <add_generation_prompt> <n_messages> (<role_hex> <content_hex>)* <error_message_hex>")

    n_c = n_e = 0
    for name, src, toks in families:
        tmpl = compile_template(src)
        for conv in CONVERSATIONS:
            msgs = [{"role": r, "content": c} for r, c in conv]
            fields = [str(len(msgs))]
            for r, c in conv:
                fields += [hexs(r), hexs(c)]
            for agp in (0, 1):
                try:
                    out = tmpl.render(messages=msgs, tools=None, documents=None,
                                      add_generation_prompt=bool(agp), **toks)
                    L(f"C {name} {agp} " + " ".join(fields) + f" {hexs(out)}")
                    n_c += 1
                except TemplateError as e:
                    L(f"E {name} {agp} " + " ".join(fields) + f" {hexs(str(e))}")
                    n_e += 1

    text = "\n".join(lines) + "\n"
    text.encode("ascii")
    with open(os.path.join(args.outdir, "chat_smollm2.txt"), "w") as f:
        f.write(text)
    print(f"{n_c} C records, {n_e} E records")


if __name__ == "__main__":
    main()
