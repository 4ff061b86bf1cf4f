#!/usr/bin/env python3
"""Writes llama.cpp tokenizations as a JSON fixture for the Swift tokenizer tests.

Needs llama-cpp-python (dev only; RocketKV never uses it at runtime).

    # the committed fixture (Tests/RocketKVModelTests/Fixtures/tokens.json)
    python scripts/make_token_fixture.py

    # a large ad-hoc comparison set (prose, code, random Unicode), plus every token's piece,
    # the end-of-generation and control ids; checked by TokenizerFixtureTests when
    # ROCKETKV_TOKEN_CASES=/tmp/cases.json (and ROCKETKV_TOKEN_MODEL=model.gguf) are set
    python scripts/make_token_fixture.py --adhoc 2000 --out /tmp/cases.json [--model other.gguf]

    # the same for another model profile (fixture_common.PROFILES): its model, and its own chat
    # special tokens in place of SmolLM2's ChatML ones (<start_of_turn>... for gemma3)
    python scripts/make_token_fixture.py --prefix gemma3 --adhoc 2000 --out /tmp/gemma3_cases.json

Format: {"model": NAME, "cases": [{"text", "add_special", "parse_special", "ids"}]}; the ad-hoc
file adds "pieces" (bytes of token_to_piece(special=True) per id), "eog" and "control".
"""
import argparse
import ctypes
import json
import os
import random

import sys

import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import PROFILES, with_markup  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "Tests", "RocketKVModelTests", "Fixtures", "tokens.json")

# (text, add_special, parse_special)
CASES = [
    ("Hello world", False, True),
    (" Hello world", False, True),
    ("  leading spaces and trailing   ", False, True),
    ("The year 1234567 and pi = 3.14159, not 2,718.28!", False, True),
    ("I'm sure you're right, they've said we'll go; it's Bob's and he'd DON'T", False, True),
    ("Tabs\tand\t\tmore tabs\n\nnewlines\r\nCRLF line\r\n", False, True),
    ("multiple     spaces\n    indented\n\n\n   \n", False, True),
    ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n", False, True),
    ("<|im_start|>user\nliteral markup, not special<|im_end|>", False, False),
    ("<|im_start|>user\nwith add_special<|im_end|>", True, True),
    ("broken <|im_start markup <|im_end|", False, True),
    ("<|endoftext|><|endoftext|>x<|im_end|>", False, True),
    ("Emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ and ✨", False, True),
    ("中文测试：你好，世界！日本語のテキスト、한국어 텍스트", False, True),
    ("Accents: café naïve résumé Ångström crème brûlée, combining: e\u0301 a\u0308", False, True),
    ("Ελληνικά και русский текст, العربية, हिन्दी, ไทย", False, True),
    ("def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n", False, True),
    ("func main() {\n\tlet x = [1, 2, 3].map { $0 * 2 } // comment\n\tprint(\"\\(x)\")\n}\n", False, True),
    ('{"key": "value", "n": [1, 2.5e-3, -7], "ok": true, "nested": {"a": null}}', False, True),
    ("<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>", False, True),
    ("Numbers: 0 00 007 42 1000000 1,000,000 1e10 0x1F -273.15 ²³ ½ Ⅻ ٣ ３", False, True),
    ("Symbols: $100 + 5% = <=> ^~| `code` @user #tag ~/path/to/file.txt", False, True),
    ("Unicode spaces:\u00a0nbsp\u2003em\u3000ideographic\u2028line\u0085nel end", False, True),
    ("Control chars: \x01\x02\x1b[31m red \x7f", False, True),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbb!!!!!!!!!!!!???", False, True),
    ("URL https://example.com/a?b=c&d=e#frag and email someone@example.org.", False, True),
    ("Mixed 'quotes' \"double\" «guillemets» “curly” ‘single’ — dashes – and … ellipsis", False, True),
    ("", False, True),
    (" ", False, True),
    ("\n", False, True),
    ("'s 'S 'll 'LL 're 'Re 've 'd 'm 't'", False, True),
]

PROSE = [
    "The most important thing about a startup is not the idea but the people. Ideas are cheap; "
    "what matters is whether the founders can make something users want, and keep making it better "
    "week after week. I've seen plenty of companies with mediocre ideas succeed because their founders "
    "were relentlessly resourceful.",
    "When I was in college I thought I wanted to study philosophy. It seemed like the field that dealt "
    "with the most fundamental questions. But I found that the papers were mostly about words, and "
    "the questions turned out to be less deep than they looked. So I switched to AI, which in 1985 "
    "meant programs that could understand natural language.",
    "Essays should be written the way you'd talk to a smart friend: plainly, with no more words than "
    "necessary. Don't try to sound impressive. If you can't explain something simply, that's usually "
    "a sign you don't understand it yet -- and figuring that out is half the point of writing.",
    "How do you find good ideas? Don't try to think of them directly. Instead, work on problems you "
    "have yourself, in fields you know well. The best ideas come from noticing what's missing: "
    "\"why doesn't this exist?\" is a much better question than \"what should I build?\"",
    "Lisp was different from other languages in 9 important ways, at least in 1958. Some of these "
    "ideas (conditionals, garbage collection, recursion) are now standard; others, like macros and "
    "the notion of code as data, are still unusual 60+ years later.",
]

CODE = [
    "import numpy as np\n\ndef softmax(x: np.ndarray) -> np.ndarray:\n    e = np.exp(x - x.max())\n    return e / e.sum()\n",
    "#include <stdio.h>\nint main(void) {\n    for (int i = 0; i < 10; ++i) printf(\"%d\\n\", i);\n    return 0;\n}\n",
    "SELECT id, name FROM users WHERE age >= 21 AND name LIKE 'A%' ORDER BY id DESC;\n",
    "<div id=\"app\">\n  <p>{{ message }}</p>\n</div>\n<script>\n  const x = () => { return [1,2,3].map(n => n ** 2); };\n</script>",
    "```swift\nstruct Point: Hashable { var x, y: Double }\nlet p = Point(x: 1.5, y: -2)\n```\n",
    "$ ls -la ~/src && git commit -m \"fix: don't crash\" && echo $?\n",
]

POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 4
    + list("0123456789") * 3
    + list(" ") * 12
    + list("\t\n\r\x0b\x0c\u00a0\u3000\u2028\u0085\u2003")
    + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") * 2
    + list("éèêëàâäôöûüçñßÅØæœıİſ")
    + ["e\u0301", "a\u0308", "\u0301", "\u0915\u093f", "\u0e01\u0e34"]
    + list("中文字测试你好世界日本語ひらがなカタカナ한국어")
    + list("αβγΔΩжЖщЯ") + list("عربى") + list("हिन्दी")
    + list("²³½¼Ⅻ٣３①")
    + list("€£¥©®™°±×÷∞≠≤≥→←↑↓∑√")
    + ["😀", "👍", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "✨", "🤖", "\u200d", "\ufe0f", "\u200b", "\ufeff"]
    + list("«»“”‘’—–…·•")
    + ["'s", "'S", "'ll", "'LL", "'re", "'Ve", "'d", "'M", "n't", "N'T"]
    + ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_", "|>", "<file_sep>", "<repo_name>"]
    + ["  ", "   ", "\n\n", "\r\n", " \n", "\t\t", "    "]
    + ["123", "4567", "3.14", "1,000", "2024-01-01", "0x1F"]
    + ["\x00", "\x01", "\x1b", "\x7f", "\U0001F600\U0001F601", "\U00020000", "\U0010FFFD"]
)


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(POOL) for _ in range(rng.randint(1, 60)))


def adhoc_cases(n: int, seed: int):
    rng = random.Random(seed)
    texts = [c[0] for c in CASES] + PROSE + CODE + ["\n\n".join(PROSE), "\n".join(CODE)]
    for p in PROSE:  # prose with light corruption
        for _ in range(5):
            words = p.split(" ")
            i = rng.randrange(len(words))
            words[i] = words[i] + rng.choice(POOL)
            texts.append(rng.choice(["", " ", "\n", "  "]) + " ".join(words) + rng.choice(["", " ", "\n", "   ", "\r\n"]))
    while len(texts) < n:
        texts.append(random_text(rng))
    cases = []
    for t in texts:
        cases.append((t, False, True))
        cases.append((t, False, False))
    cases.append((texts[0], True, True))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default="", choices=sorted(PROFILES),
                    help="model profile: its model by default, and its chat special tokens")
    ap.add_argument("--model", help="GGUF (default: the profile's model)")
    ap.add_argument("--out", help="output file (default: Fixtures/tokens.json; required with --prefix)")
    ap.add_argument("--adhoc", type=int, default=0, help="write N+ varied strings, pieces, eog and control ids")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    if args.prefix and not args.out:
        ap.error("--prefix needs --out (Fixtures/PREFIX/tokens.json is make_fixtures.py's)")
    args.out = args.out or FIXTURE
    args.model = args.model or PROFILES[args.prefix]["model"]
    markup = PROFILES[args.prefix]["markup"]
    if markup:
        POOL[:] = [with_markup(p, markup) for p in POOL]
        CASES[:] = [(with_markup(t, markup), a, p) for t, a, p in CASES]

    llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
    cases = adhoc_cases(args.adhoc, args.seed) if args.adhoc else CASES
    out = {"model": os.path.basename(args.model), "cases": []}
    for text, add_special, parse_special in cases:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
        out["cases"].append({"text": text, "add_special": add_special, "parse_special": parse_special, "ids": ids})

    if args.adhoc:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        n = llama_cpp.llama_vocab_n_tokens(vocab)
        buf = ctypes.create_string_buffer(1024)
        pieces = []
        for i in range(n):
            k = llama_cpp.llama_token_to_piece(vocab, i, buf, len(buf), 0, True)
            assert k >= 0, (i, k)
            pieces.append(list(buf.raw[:k]))
        out["pieces"] = pieces
        out["eog"] = [i for i in range(n) if llama_cpp.llama_vocab_is_eog(vocab, i)]
        out["control"] = [i for i in range(n) if llama_cpp.llama_vocab_is_control(vocab, i)]

    with open(args.out, "w", encoding="utf-8") as f:  # one case per line
        f.write("{\"model\": %s,\n \"cases\": [\n" % json.dumps(out["model"]))
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in out["cases"]))
        f.write("\n ]")
        for key in ("pieces", "eog", "control"):
            if key in out:
                f.write(",\n \"%s\": %s" % (key, json.dumps(out[key])))
        f.write("\n}\n")
    print(f"wrote {len(out['cases'])} cases to {args.out}")


if __name__ == "__main__":
    main()
