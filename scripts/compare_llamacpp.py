#!/usr/bin/env python3
"""Run `rocketkv bench` and scripts/llamacpp_bench.py on the same contexts, interleaved per context
(so both see the same machine load), and print prefill/decode tok/s side by side with the ratios.

  /work/devenv/venv/bin/python scripts/compare_llamacpp.py --context 512,2048,8000 --gen 64 --repetitions 3

Build first: `swift build -c release`. Add --json for one JSON object per context per line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(cmd: list[str]) -> list[dict]:
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, cwd=ROOT).stdout.decode()
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--context", default="512,2048,8000")
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rocketkv", default=os.path.join(ROOT, ".build", "release", "rocketkv"))
    ap.add_argument("--model", default=None,
                    help="GGUF path for both engines (default: each one's default model, SmolLM2), e.g. "
                         "~/.cache/rocketkv/models/gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model = ["--model", os.path.expanduser(args.model)] if args.model else []

    rows = []
    for context in [int(c) for c in args.context.split(",")]:
        common = ["--context", str(context), "--gen", str(args.gen), "--repetitions", str(args.repetitions),
                  "--threads", str(args.threads), "--json"]
        print(f"context {context}: llama.cpp ...", file=sys.stderr)
        ref = run_json([sys.executable, os.path.join(ROOT, "scripts", "llamacpp_bench.py")] + common + model)[0]
        print(f"context {context}: rocketkv ...", file=sys.stderr)
        ours = run_json([args.rocketkv, "bench", "--kv", "full"] + common + model)[0]
        row = {
            "model": os.path.basename(args.model) if args.model else "default",
            "context": context,
            "prefill_tok_s": ours["prefill_tok_s"], "llamacpp_prefill_tok_s": ref["prefill_tok_s"],
            "prefill_ratio": ours["prefill_tok_s"] / ref["prefill_tok_s"],
            "decode_tok_s": ours["decode_tok_s"], "llamacpp_decode_tok_s": ref["decode_tok_s"],
            "decode_ratio": ours["decode_tok_s"] / ref["decode_tok_s"],
            "bound_tok_s": ours.get("bound_tok_s"), "bandwidth_gbs": ours.get("bandwidth_gbs"),
            "peak_rss_bytes": ours["peak_rss_bytes"], "llamacpp_peak_rss_bytes": ref.get("peak_rss_bytes"),
        }
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:   # a progress line per context, the table at the end
            print(f"context {context}: prefill {row['prefill_tok_s']:.1f} vs {row['llamacpp_prefill_tok_s']:.1f} tok/s "
                  f"({row['prefill_ratio']:.2f}x), decode {row['decode_tok_s']:.1f} vs {row['llamacpp_decode_tok_s']:.1f} tok/s "
                  f"({row['decode_ratio']:.2f}x)", file=sys.stderr, flush=True)

    if not args.json:
        print("| context | prefill tok/s rocketkv | llama.cpp | ratio | decode tok/s rocketkv | llama.cpp | ratio | bound tok/s |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['context']} | {r['prefill_tok_s']:.1f} | {r['llamacpp_prefill_tok_s']:.1f} | {r['prefill_ratio']:.2f}x "
                  f"| {r['decode_tok_s']:.1f} | {r['llamacpp_decode_tok_s']:.1f} | {r['decode_ratio']:.2f}x "
                  f"| {r['bound_tok_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
