#!/usr/bin/env python3
"""Answer an eval sweep's exported prompts in llama.cpp and compare with our `full` predictions.

PROMPTS is what `rocketkv eval run TASK ... --prompts-out PROMPTS` wrote (passkey or RULER: each prompt's token ids as
the sweep feeds them, the answers the scorer looks for and how many tokens to generate); FOLDER is an eval folder of the
same sweep (predictions.jsonl). llama.cpp (CPU, n_batch 512, 2 threads) evaluates the same token ids and decodes
greedily up to the same number of tokens, stopping at an end-of-generation token, with its f16 cache (flash
attention off) or its Q8_0 K and V cache (`--kv-type q8_0`; llama.cpp quantizes V only with flash attention on).
Each answer is scored as our harness scores it (passkey: the key as a whole number; RULER: the share of answers
found, case-insensitive) and set beside our `full` prediction of the same prompt made with the same cache type.
Prints one row per prompt and a summary; with --out, writes the rows as JSON lines.

  rocketkv eval run ruler --lengths 4096 --samples 20 --kv-type q8_0 --prompts-out prompts.jsonl
  venv/bin/python scripts/answers_llamacpp.py prompts.jsonl ruler-4k-q8_0 --kv-type q8_0 --out llamacpp-q8_0.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

HOME = os.path.expanduser(os.environ.get("ROCKETKV_HOME", "~/.cache/rocketkv"))
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3-270m": "gemma-3-270m-q4_k_m.gguf"}


def score(task: str, output: str, answers: list[str]) -> float:
    """Our harness's score: `Passkey.exactMatch` and `Ruler.score`."""
    if task == "passkey":
        return 1.0 if answers[0] in re.split(r"[^0-9]+", output) else 0.0
    text = output.lower()
    return sum(a.lower() in text for a in answers) / len(answers) if answers else 0.0


def ours_full(folder: str, kv_type: str) -> dict[tuple, dict]:
    """Our `full` predictions keyed by (task, length, depth, sample), only those made with `kv_type`."""
    rows = {}
    for line in open(os.path.join(folder, "predictions.jsonl")):
        r = json.loads(line)
        made_with = re.search(r"kv-type=([\w/]+)", r.get("configuration") or "")   # q8_0, or KEY/VALUE
        if r["method"] == "full" and (made_with.group(1) if made_with else "f16") == kv_type:
            rows[(r["task"], r["length"], r["depth"], r["sample"])] = r
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prompts", help="the file `rocketkv eval run ... --prompts-out` wrote")
    ap.add_argument("folder", help="an eval folder of the same sweep (with predictions.jsonl)")
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3-270m or a GGUF path")
    ap.add_argument("--kv-type", choices=["f16", "q8_0"], default="f16", help="llama.cpp's K and V cache type")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import numpy as np
    from llama_cpp import Llama, llama_vocab_is_eog

    model_path = os.path.join(HOME, "models", MODELS[args.model]) if args.model in MODELS else args.model
    prompts = [json.loads(line) for line in open(args.prompts)]
    if any(p["task"] == "fidelity" for p in prompts):
        print("fidelity prompts are teacher-forced; this script answers passkey and RULER prompts", file=sys.stderr)
        return 64
    ours = ours_full(args.folder, args.kv_type)
    # GGML_TYPE_F16 = 1, GGML_TYPE_Q8_0 = 8.
    cache = {"type_k": 1, "type_v": 1, "flash_attn": False} if args.kv_type == "f16" else {"type_k": 8, "type_v": 8, "flash_attn": True}
    results, llm, llm_ctx = [], None, 0
    for p in prompts:
        key = (p["task"], p["length"], p.get("depth"), p["sample"])
        if key not in ours:
            print(f"no {args.kv_type} full prediction for {key} in {args.folder}", file=sys.stderr)
            return 65
        need = len(p["tokens"]) + p["max_tokens"]
        if need > llm_ctx:
            llm_ctx = need + 16
            # Logits of the last position only (logits_all would compute the output matrix for every prompt token).
            llm = Llama(model_path=model_path, n_ctx=llm_ctx, n_batch=512, n_ubatch=512, n_threads=args.threads,
                        n_threads_batch=args.threads, logits_all=False, verbose=False, **cache)
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval(p["tokens"])
        out = []
        for _ in range(p["max_tokens"]):
            token = int(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).argmax())
            if llama_vocab_is_eog(llm._model.vocab, token):
                break
            out.append(token)
            llm.eval([token])
        text = llm.detokenize(out).decode("utf-8", "replace")
        mine = ours[key]
        row = {"task": p["task"], "length": p["length"], "depth": p.get("depth"), "sample": p["sample"], "kv_type": args.kv_type,
               "prompt_tokens": len(p["tokens"]), "llamacpp_output": text, "ours_output": mine["output"],
               "identical": text == mine["output"], "llamacpp_score": score(p["task"], text, p["answers"]), "ours_score": mine["score"]}
        results.append(row)
        print(f"{p['task']:<22} {p['length']:>6} {p.get('depth') or '':<5} {p['sample']:>3}  llama.cpp {row['llamacpp_score']:.2f} "
              f"ours {row['ours_score']:.2f}  {'same' if row['identical'] else 'DIFFERENT'}  {text!r:.60}", flush=True)
    n = len(results)
    same = sum(r["identical"] for r in results)
    mean = lambda k: 100 * sum(r[k] for r in results) / max(n, 1)
    print(f"{same} of {n} answers identical; mean score llama.cpp {mean('llamacpp_score'):.1f}, ours {mean('ours_score'):.1f}")
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            for row in results:
                f.write(json.dumps(row) + "\n")
        os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
