#!/usr/bin/env python3
"""Generate the committed llama.cpp reference fixtures for RocketKVModelTests.

Writes into Tests/RocketKVModelTests/Fixtures/ (or --out DIR); with --prefix NAME (a model profile of
fixture_common.PROFILES, e.g. gemma3) into Fixtures/NAME/ with that model's prompts and strings:

  tokens.json          {"model", "settings", "cases": [{"text", "add_special": false,
                        "parse_special": true, "ids"}]}
                        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special,
                                           special=parse_special)
                        (SmolLM2: always add_special false, parse_special true; gemma3 adds a few
                        cases with add_special true, i.e. BOS, and parse_special false)
  logits_<name>.json   one raw prompt (no chat template, add_bos=False) evaluated by
                        llama.cpp with logits for every position:
                        {"name", "prompt", "tokens", "n_vocab", "settings", "probe_ids",
                         "positions": [{"top": [[id, logit] x32], "probe": [64 logits],
                                        "max": x, "lse": x}],
                         "last_full": [n_vocab logits] | null (always null for gemma3,
                                      whose 262,144-token rows would make the files too big),
                         "greedy": [32 ids], "greedy_margins": [32 top1-top2 gaps]}

`top` is sorted by logit descending (ties: lower id first). `max` and `lse` (log-sum-exp)
cover the whole row and are computed in float64 from llama.cpp's float32 logits. All logits
are rounded to 5 decimals. `greedy` is produced with the low-level API: eval the prompt,
then 32 times append argmax(last logits) (ties: lowest id) and eval that single token -- no
sampler, no repetition penalty, no stop at EOS. `greedy_margins[i]` is the top-1 minus
top-2 logit at that step (small values mean a near tie, where another engine may diverge).

Every file carries "settings": the llama-cpp-python version, ggml's CPU feature line,
threads, n_ctx, n_batch/n_ubatch, flash attention and KV cache types, and the model's
SHA-256. llama-cpp-python's defaults are used for flash attention and the KV cache types
(recorded as they were).

Gemma 3 needs its BOS token: its prompts start with the literal "<bos>", which parse_special turns
into id 2 (the files still say add_bos false: nothing is added beyond the text). Its long prompt is
longer than Gemma's 512-token sliding window.

Usage:
  /work/devenv/venv/bin/python scripts/make_fixtures.py            # (re)write fixtures
  /work/devenv/venv/bin/python scripts/make_fixtures.py --prefix gemma3   # Fixtures/gemma3/
  /work/devenv/venv/bin/python scripts/make_fixtures.py --check    # regenerate into a temp
        dir and compare with the committed files (determinism / staleness check)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import PROFILES, essays_text, llama_cpp_versions, sha256_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_DIR = os.path.join(REPO, "Tests", "RocketKVModelTests", "Fixtures")

N_THREADS = 2
N_CTX = 2048          # >= longest prompt + greedy tokens
N_BATCH = 512
N_UBATCH = 512
TOP_K = 32
N_PROBE = 64
PROBE_SEED = 20241123
N_GREEDY = 32
DECIMALS = 5
LONG_TARGET_TOKENS = 1600
SAFE_MARGIN = 0.3     # see --noise: llama.cpp's own paths disagree on argmax below ~0.3
MAX_FILE_BYTES = 3 * 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024
GEMMA3_LONG_TARGET_TOKENS = 850   # > Gemma 3's 512-token sliding window
GEMMA3_MAX_TOTAL_BYTES = 4 * 1024 * 1024

GGML_TYPE_NAMES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1",
                   8: "q8_0", 30: "bf16"}
FLASH_ATTN_NAMES = {-1: "auto", 0: "disabled", 1: "enabled"}

SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
GEMMA_SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."


# --------------------------------------------------------------------------- inputs

def paragraph_2000(essays: str) -> str:
    """Exactly 2,000 characters of essay prose, whitespace collapsed to single spaces."""
    flat = re.sub(r"\s+", " ", essays)
    start = flat.index(". ", 5000) + 2  # start at a sentence boundary
    return flat[start:start + 2000]


def plain_token_cases() -> list[str]:
    """Strings without chat markup, shared by every model's tokens.json."""
    return [
        "Hello, world!",
        "",
        "a",
        " ",
        "\n",
        "\t",
        "    ",
        "\n\n\n",
        " leading space",
        "trailing space ",
        "   three leading spaces and two trailing  ",
        "multiple     spaces      between          words",
        "tab\tseparated\tvalues\t\tdouble tab\t",
        "line one\r\nline two\r\nline three\r\n",
        "lone\rcarriage return\r and \r\r twice",
        "new\n\nlines\n\n\nand more\n \n",
        "Café naïve résumé façade jalapeño Ångström Zürich œuvre",
        "Cafe\u0301 nai\u0308ve (combining marks, NFD)",
        "你好，世界！今天天气很好。日本語のテキストとカタカナ。한국어 문장입니다.",
        "مرحبا بالعالم، كيف حالك اليوم؟ ١٢٣ 123",
        "Привет, мир! Γειά σου Κόσμε. שלום עולם",
        "Tiếng Việt có dấu. ภาษาไทย สวัสดี. नमस्ते दुनिया।",
        "I love 🍕 and 🚀! 😀😃😄 👍🏽",
        "Family: 👨\u200d👩\u200d👧\u200d👦, coder: 👩🏽\u200d💻, rainbow: 🏳️\u200d🌈, heart: ❤️\u200d🔥",
        "Flags: 🇺🇸 🇫🇷 🇯🇵 🇧🇷 🇺🇦 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        "zero\u200bwidth\u200cnon\u200djoiner \ufeffBOM \u00a0nbsp",
        "1234567 3.14159 1e-9 2024-11-23 -42 +7 0x1F 1,000,000.50 $19.99 50%",
        "3141592653589793238462643383279502884197169399375105820974944",
        "I'm sure they'll say DON'T, but we've got it and she's ready. You'd've known; it's y'all's.",
        "I'M HERE, YOU'RE THERE, WE'LL SEE, He'S, it'D, ain't, o'clock, rock 'n' roll",
        "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n"
        "print([fib(i) for i in range(10)])  # 0 1 1 2 3\n",
        "import Foundation\n\nstruct Point: Codable {\n\tvar x: Double\n\tvar y: Double\n}\n\n"
        "let p = Point(x: 1.5, y: -2)\nprint(\"\\(p.x), \\(p.y)\")\n",
        '{"name": "RocketKV", "version": [0, 1, 0], "tags": ["kv", "cache"], '
        '"nested": {"ok": true, "n": null, "pi": 3.14}}',
        "grep -E '^[a-z]+\\d{2,}$' file.txt | sort -u > out.log 2>&1",
        '<div class="x">Hello &amp; goodbye</div><br/>',
        "# Title\n\n- item 1\n- item 2\n\n**bold** _italic_ `code` [link](http://x.y)",
        "Visit https://example.com/path?q=1&r=2#frag or mail john.doe+test@example.org",
        "Wait... what?!?! ---- *** ### @@@ ((())) [[]] {{}} ~~~ ___ ===",
        "∑_{i=1}^{n} x_i² ≤ ∞ ± √2 ≈ 1.41421 → ∀x∈ℝ, ½ ¾ °C",
        "naïve東京Tokyo2024😀end",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ]


def token_cases(essays: str) -> list[str]:
    return plain_token_cases() + [
        "<|im_start|>user\nhi<|im_end|>",
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
        "What is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>assistant<|im_end|><|endoftext|>text after",
        "not special: <|im_start |> <im_end> <|unknown|> < |im_end| >",
        paragraph_2000(essays),
    ]


def gemma3_token_cases(essays: str) -> list[tuple[str, bool, bool]]:
    """(text, add_special, parse_special): the SmolLM2 strings with Gemma's chat markup, plus
    Gemma-specific ones (whitespace runs, which its vocabulary has tokens for; digits, which it
    splits one by one; image markers) and a few with BOS added or special tokens not parsed."""
    sot, eot = "<start_of_turn>", "<end_of_turn>"
    chat = (f"<bos>{sot}user\n{GEMMA_SYSTEM_PROMPT}\n\nWhat is 2+2?{eot}\n{sot}model\n")
    texts = plain_token_cases() + [
        f"{sot}user\nhi{eot}",
        chat,
        f"{sot}model\n4{eot}\n{sot}user\nThanks!{eot}\n{sot}model\n",
        f"{sot}model{eot}<eos>text after",
        "<bos><bos>x<eos><pad>",
        "not special: <start_of_turn > <end_of_turn <unknown> < start_of_turn > <bos",
        "<start_of_image> <end_of_image> <image_soft_token>",
        " " * 31 + "x" + " " * 32 + "y" + " " * 40,
        "\t\t\t\t\t\t\t\t\t\t\t\t indented code",
        "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
        "\r\n\r\n\r\n  \r\n\t\r\n",
        "12345678901234567890 and 1,234.5678 and ٣٤٥ and １２３",
        "<table><tr><td>cell</td></tr></table>",
        paragraph_2000(essays),
    ]
    cases = [(t, False, True) for t in texts]
    cases += [
        ("Hello, world!", True, True),
        ("", True, True),
        (" leading space with BOS", True, True),
        (chat, False, False),
        (f"{sot}user\nliteral markup, not special{eot}", False, False),
        (f"{sot}user\nwith BOS added{eot}\n", True, True),
    ]
    return cases


def long_prompt(llm, essays: str, target: int = LONG_TARGET_TOKENS, prefix: str = "") -> str:
    """Essay prefix cut at a sentence end so it tokenizes to just under `target` tokens
    (`prefix`, e.g. "<bos>", is put in front and counted)."""
    head = prefix + essays[:target * 8]
    ids = tokenize(llm, head)
    assert len(ids) > target, "essay head too short"
    n_chars = len(llm.detokenize(ids[:target], special=True).decode("utf-8", "replace"))
    cut = head.rfind(". ", 0, n_chars)
    return head[:cut + 1]


def logits_prompts(llm, essays: str) -> dict[str, str]:
    return {
        "short": "The quick brown fox jumps over the lazy dog. After that, the fox ran into the "
                 "forest and",
        "chat": f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
                "What is the capital of France, and why is it famous?<|im_end|>\n"
                "<|im_start|>assistant\n",
        "code": "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n"
                "    if len(items) <= 1:\n        return items\n    pivot = items[0]\n"
                "    left = [x for x in items[1:] if x < pivot]\n    right = [",
        "unicode": "Café, naïve, 東京 and Москва: in 2024 we visited 🇫🇷 and 🇯🇵 😀. "
                   "The price was 3.14159 € — cheap! Next,",
        "numbers": "1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144,",
        "long": long_prompt(llm, essays),
    }


def gemma3_logits_prompts(llm, essays: str) -> dict[str, str]:
    sot, eot = "<start_of_turn>", "<end_of_turn>"
    return {
        "short": "<bos>The quick brown fox jumps over the lazy dog. After that, the fox ran into "
                 "the forest and",
        "chat": f"<bos>{sot}user\n{GEMMA_SYSTEM_PROMPT}\n\nWhat is the capital of France, and why "
                f"is it famous?{eot}\n{sot}model\n",
        "code": "<bos>def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n"
                "    if len(items) <= 1:\n        return items\n    pivot = items[0]\n"
                "    left = [x for x in items[1:] if x < pivot]\n    right = [",
        "long": long_prompt(llm, essays, GEMMA3_LONG_TARGET_TOKENS, prefix="<bos>"),
    }


# What differs per --prefix: the strings, the prompts, whether the full last row is stored, limits.
FIXTURE_SETS = {
    "": {"token_cases": lambda essays: [(t, False, True) for t in token_cases(essays)],
         "prompts": logits_prompts, "full_last": True, "max_total": MAX_TOTAL_BYTES,
         "extra_settings": False},
    "gemma3": {"token_cases": gemma3_token_cases, "prompts": gemma3_logits_prompts,
               "full_last": False, "max_total": GEMMA3_MAX_TOTAL_BYTES, "extra_settings": True},
}


# --------------------------------------------------------------------------- llama.cpp

def load_llama(model_path: str):
    from llama_cpp import Llama
    return Llama(model_path=model_path, n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_UBATCH,
                 n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
                 seed=0, verbose=False)


def tokenize(llm, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
    return [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=add_special,
                                         special=parse_special)]




def settings_of(llm, model_path: str, extra: bool = False) -> dict:
    cp = llm.context_params
    s = {
        "engine": "llama.cpp (via llama-cpp-python, CPU)",
        **llama_cpp_versions(),
        "model": os.path.basename(model_path),
        "model_sha256": sha256_file(model_path),
        "n_threads": int(cp.n_threads),
        "n_threads_batch": int(cp.n_threads_batch),
        "n_ctx": int(llm.n_ctx()),
        "n_batch": int(cp.n_batch),
        "n_ubatch": int(cp.n_ubatch),
        "flash_attn": FLASH_ATTN_NAMES.get(int(cp.flash_attn_type), str(int(cp.flash_attn_type))),
        "type_k": GGML_TYPE_NAMES.get(int(cp.type_k), str(int(cp.type_k))),
        "type_v": GGML_TYPE_NAMES.get(int(cp.type_v), str(int(cp.type_v))),
        "logits_all": True,
        "add_bos": False,
        "parse_special": True,
        "logit_decimals": DECIMALS,
    }
    if extra:  # newer fixture sets also say how sliding-window layers were cached
        s["swa_full"] = bool(cp.swa_full)
    return s


def r(x) -> float:
    v = round(float(x), DECIMALS)
    return 0.0 if v == 0 else v  # no "-0.0"


def top_k(row: np.ndarray, k: int) -> list[int]:
    # Sort by logit descending, ties by id ascending (deterministic).
    idx = np.lexsort((np.arange(row.size), -row.astype(np.float64)))
    return [int(i) for i in idx[:k]]


def row_stats(row: np.ndarray, probe_ids: list[int]) -> dict:
    r64 = row.astype(np.float64)
    m = float(r64.max())
    lse = m + math.log(float(np.exp(r64 - m).sum()))
    return {
        "top": [[i, r(row[i])] for i in top_k(row, TOP_K)],
        "probe": [r(row[i]) for i in probe_ids],
        "max": r(m),
        "lse": r(lse),
    }


def run_prompt(llm, name: str, prompt: str, probe_ids: list[int], settings: dict,
               full_last: bool) -> dict:
    tokens = tokenize(llm, prompt)
    n = len(tokens)
    assert n + N_GREEDY <= llm.n_ctx(), f"{name}: {n} tokens do not fit n_ctx"
    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(tokens)
    scores = llm.scores
    positions = [row_stats(scores[i], probe_ids) for i in range(n)]
    last_full = [r(x) for x in scores[n - 1]] if full_last else None

    greedy, margins = [], []
    for _ in range(N_GREEDY):
        row = llm.scores[llm.n_tokens - 1]
        a, b = top_k(row, 2)
        greedy.append(a)
        margins.append(r(float(row[a]) - float(row[b])))
        llm.eval([a])
    return {
        "name": name,
        "prompt": prompt,
        "tokens": tokens,
        "n_vocab": int(llm.n_vocab()),
        "settings": settings,
        "probe_ids": probe_ids,
        "positions": positions,
        "last_full": last_full,
        "greedy": greedy,
        "greedy_margins": margins,
    }


# --------------------------------------------------------------------------- output

def compact(v) -> str:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def write_json(path: str, obj: dict, one_per_line: tuple[str, ...] = ()) -> int:
    """Deterministic JSON: one top-level key per line; listed array keys one item per line."""
    parts = []
    for k, v in obj.items():
        if k in one_per_line and isinstance(v, list) and v:
            inner = ",\n".join("  " + compact(x) for x in v)
            parts.append(f"{json.dumps(k)}:[\n{inner}\n]")
        else:
            parts.append(f"{json.dumps(k)}:{compact(v)}")
    text = "{\n" + ",\n".join(parts) + "\n}\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return len(text.encode("utf-8"))


def generate(out_dir: str, model_path: str, prefix: str = "", log=print) -> list[tuple[str, int]]:
    fs = FIXTURE_SETS[prefix]
    os.makedirs(out_dir, exist_ok=True)
    essays = essays_text()
    llm = load_llama(model_path)
    settings = settings_of(llm, model_path, extra=fs["extra_settings"])
    n_vocab = int(llm.n_vocab())
    rng = np.random.default_rng(PROBE_SEED)
    probe_ids = sorted(int(i) for i in rng.choice(n_vocab, size=N_PROBE, replace=False))

    written = []
    cases = []
    for text, add_special, parse_special in fs["token_cases"](essays):
        cases.append({"text": text, "add_special": add_special, "parse_special": parse_special,
                      "ids": tokenize(llm, text, add_special, parse_special)})
    path = os.path.join(out_dir, "tokens.json")
    written.append(("tokens.json", write_json(
        path, {"model": os.path.basename(model_path), "settings": settings, "cases": cases},
        one_per_line=("cases",))))
    log(f"tokens.json: {len(cases)} cases")

    for name, prompt in fs["prompts"](llm, essays).items():
        fx = run_prompt(llm, name, prompt, probe_ids, settings, full_last=fs["full_last"])
        fname = f"logits_{name}.json"
        size = write_json(os.path.join(out_dir, fname), fx, one_per_line=("positions",))
        if size > MAX_FILE_BYTES:  # drop the full last row if the file got too big
            fx["last_full"] = None
            size = write_json(os.path.join(out_dir, fname), fx, one_per_line=("positions",))
        written.append((fname, size))
        log(f"{fname}: {len(fx['tokens'])} tokens, {size} bytes, greedy={fx['greedy'][:8]}...")
    total = sum(s for _, s in written)
    assert all(s <= MAX_FILE_BYTES for _, s in written), "a fixture exceeds 3 MB"
    assert total <= fs["max_total"], f"fixtures total {total} bytes > {fs['max_total']} bytes"
    return written


# --------------------------------------------------------------------------- checks

def _diff(a, b, path, acc):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in set(a) | set(b):
            if k not in a or k not in b:
                acc["structural"].append(f"{path}.{k} missing on one side")
            else:
                _diff(a[k], b[k], f"{path}.{k}", acc)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            acc["structural"].append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", acc)
    elif isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            d = abs(float(a) - float(b))
            if d > acc["max"]:
                acc["max"], acc["where"] = d, path
        else:
            acc["structural"].append(f"{path}: {a!r} != {b!r}")
    elif a != b:
        acc["structural"].append(f"{path}: {a!r} != {b!r}")


def compare_dirs(a_dir: str, b_dir: str) -> bool:
    ok = True
    names = sorted(n for n in os.listdir(a_dir)  # only what generate() writes (not method_golden)
                   if n == "tokens.json" or (n.startswith("logits_") and n.endswith(".json")))
    for n in names:
        pa, pb = os.path.join(a_dir, n), os.path.join(b_dir, n)
        if not os.path.exists(pb):
            print(f"{n}: missing in {b_dir}")
            ok = False
            continue
        if open(pa, "rb").read() == open(pb, "rb").read():
            print(f"{n}: identical")
            continue
        ok = False
        acc = {"max": 0.0, "where": None, "structural": []}
        _diff(json.load(open(pa)), json.load(open(pb)), n, acc)
        print(f"{n}: DIFFERENT; max |diff| = {acc['max']:.6g} at {acc['where']}; "
              f"{len(acc['structural'])} non-numeric differences")
        for s in acc["structural"][:10]:
            print("   ", s)
    return ok


def margin_report(fixture_dir: str) -> None:
    """Smallest top-1/top-2 margins per prompt (to choose a comparison tolerance)."""
    for n in sorted(os.listdir(fixture_dir)):
        if not n.startswith("logits_"):
            continue
        fx = json.load(open(os.path.join(fixture_dir, n)))
        gaps = [(p["top"][0][1] - p["top"][1][1], i) for i, p in enumerate(fx["positions"])]
        gaps.sort()
        below = {t: sum(1 for g, _ in gaps if g < t) for t in (0.01, 0.05, 0.1)}
        g_min = min(fx["greedy_margins"])
        safe = next((i for i, g in enumerate(fx["greedy_margins"]) if g < SAFE_MARGIN), N_GREEDY)
        print(f"{fx['name']:8s} n={len(gaps):5d}  smallest gaps (gap@pos): "
              + ", ".join(f"{g:.5f}@{i}" for g, i in gaps[:4])
              + f"  #<0.01:{below[0.01]} #<0.05:{below[0.05]} #<0.1:{below[0.1]}"
              + f"  greedy min gap {g_min:.5f}@step{fx['greedy_margins'].index(g_min)}"
              + f"  greedy steps before first gap<{SAFE_MARGIN}: {safe}")


def noise_report(model_path: str, prefix: str = "", n_tokens: int = 200) -> None:
    """How much llama.cpp disagrees with itself: the fixture path (batched prefill, f16 KV,
    no flash attention) against one-token-at-a-time decode, flash attention and an f32 KV
    cache, on the first n_tokens of the long prompt. This is the floor for any tolerance."""
    from llama_cpp import Llama
    essays = essays_text()
    base = load_llama(model_path)
    toks = tokenize(base, FIXTURE_SETS[prefix]["prompts"](base, essays)["long"])[:n_tokens]
    del base

    def run(chunk, **kw):
        llm = Llama(model_path=model_path, n_ctx=n_tokens + 16, n_batch=N_BATCH, n_ubatch=N_UBATCH,
                    n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
                    verbose=False, **kw)
        for i in range(0, len(toks), chunk):
            llm.eval(toks[i:i + chunk])
        return llm.scores[:len(toks)].astype(np.float64)

    def log_softmax(x):
        m = x.max(1, keepdims=True)
        return x - m - np.log(np.exp(x - m).sum(1, keepdims=True))

    ref = run(N_BATCH)
    lp = log_softmax(ref)
    srt = np.sort(ref, 1)
    margin = srt[:, -1] - srt[:, -2]
    print(f"reference: batched prefill (n_batch {N_BATCH}), f16 KV, flash attention off; "
          f"{len(toks)} tokens of the long prompt")
    for label, chunk, kw in [("batched, 2 tokens per decode", 2, {}),
                             ("one token per decode", 1, {}),
                             ("flash attention, batched", N_BATCH, {"flash_attn": True}),
                             ("flash attention, one token", 1, {"flash_attn": True}),
                             ("f32 KV cache, batched", N_BATCH, {"type_k": 0, "type_v": 0})]:
        x = run(chunk, **kw)
        lq = log_softmax(x)
        kl = (np.exp(lp) * (lp - lq)).sum(1)
        dis = ref.argmax(1) != x.argmax(1)
        d = np.abs(ref - x)
        print(f"  {label:30s} |dlogit| mean {d.mean():.4f} max {d.max():.4f}; KL mean "
              f"{kl.mean():.5f} max {kl.max():.5f}; argmax differs at {int(dis.sum())} "
              f"positions (largest reference top1-top2 gap there: "
              f"{(margin[dis].max() if dis.any() else 0.0):.3f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default="", choices=sorted(FIXTURE_SETS),
                    help="model profile; its fixtures go to Fixtures/PREFIX/ (default: SmolLM2 "
                         "into Fixtures/)")
    ap.add_argument("--model", help="GGUF (default: the profile's model)")
    ap.add_argument("--out", help="output directory (default: Fixtures/ or Fixtures/PREFIX/)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with --out (no writes to --out)")
    ap.add_argument("--margins", action="store_true",
                    help="only print the top-1/top-2 margin report for the fixtures in --out")
    ap.add_argument("--noise", action="store_true",
                    help="only measure llama.cpp's self-disagreement across evaluation paths")
    args = ap.parse_args()
    args.model = args.model or PROFILES[args.prefix]["model"]
    args.out = args.out or os.path.join(FIXTURE_DIR, args.prefix)  # join(DIR, "") is DIR/
    if args.noise:
        noise_report(args.model, args.prefix)
        return 0
    if args.margins:
        margin_report(args.out)
        return 0
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp, args.model, args.prefix)
            return 0 if compare_dirs(args.out, tmp) else 1
    written = generate(args.out, args.model, args.prefix)
    for n, s in written:
        print(f"{s:>10,d}  {n}")
    print(f"{sum(s for _, s in written):>10,d}  total")
    margin_report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
