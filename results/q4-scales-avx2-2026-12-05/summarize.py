#!/usr/bin/env python3
"""Per binary and configuration of ab.jsonl or final-ab.jsonl: decode tok/s per round and medians; rocket/full per round."""
import json, statistics, sys, os
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "ab.jsonl")
rows = [json.loads(l) for l in open(path)]
keys = sorted({(r["method"], r["context"], r["batch"]) for r in rows})
binaries = list(dict.fromkeys(r["binary"] for r in rows))
print("| method, context, seqs | binary | decode tok/s (rounds) | median | matmul ms median | attention ms median | HSA selection thread-ms median |")
print("|---|---|---|---:|---:|---:|---:|")
for k in keys:
    for b in binaries:
        rs = sorted((r for r in rows if (r["method"], r["context"], r["batch"]) == k and r["binary"] == b), key=lambda r: r["round"])
        if not rs: continue
        tok = [r["decode_tok_s"] for r in rs]
        print(f"| {k[0]}, {k[1]}, {k[2]} | {b} | {', '.join('%.1f' % t for t in tok)} | {statistics.median(tok):.1f} | "
              f"{statistics.median(r['breakdown_matmul_ms'] for r in rs):.2f} | {statistics.median(r['breakdown_attention_ms'] for r in rs):.2f} | "
              f"{statistics.median(r['breakdown_hsa_selection_thread_ms'] for r in rs):.2f} |")
print()
for b in binaries:
    for ctx, batch in sorted({(r["context"], r["batch"]) for r in rows}):
        ratios = []
        for rnd in sorted({r["round"] for r in rows}):
            d = {r["method"]: r["decode_tok_s"] for r in rows if r["binary"] == b and r["round"] == rnd and r["context"] == ctx and r["batch"] == batch}
            if "full" in d and "rocket" in d: ratios.append(d["rocket"] / d["full"])
        if ratios: print(f"{b}: rocket / full at {ctx}, {batch} seqs, per round: {', '.join('%.2f' % x for x in ratios)}")
    for m in ("full", "rocket"):
        per = []
        for rnd in sorted({r["round"] for r in rows}):
            for ctx in sorted({r["context"] for r in rows}):
                d = {r["batch"]: r["decode_tok_s"] for r in rows if r["binary"] == b and r["round"] == rnd and r["context"] == ctx and r["method"] == m}
                if 1 in d and 8 in d: per.append((ctx, d[8] / d[1]))
        if per: print(f"{b}: {m} 8 seqs / 1 seq, per round: {', '.join('%.2f (%d)' % (x, c) for c, x in per)}")
