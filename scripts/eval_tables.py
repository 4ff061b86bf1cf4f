#!/usr/bin/env python3
"""Markdown tables for EVALUATION.md from the metrics.json that `rocketkv eval` writes.

usage: scripts/eval_tables.py DIR/metrics.json
"""
import collections
import json
import sys


def row_name(m):
    return m["method"] + (f"@{m['budget']}" if m.get("budget") else "")


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main(path):
    metrics = json.load(open(path))
    order = []
    for m in metrics:
        if row_name(m) not in order:
            order.append(row_name(m))
    by_task = collections.defaultdict(list)
    for m in metrics:
        by_task["ruler" if m["task"].startswith("ruler/") else m["task"]].append(m)

    if "passkey" in by_task:
        # Rows: methods; columns: length × budget (the full cache has one value per length).
        rows_m = by_task["passkey"]
        lengths = sorted({m["length"] for m in rows_m})
        budgets = sorted({m["budget"] for m in rows_m if m.get("budget")})
        cell = {(m["method"], m.get("budget"), m["length"]): m for m in rows_m}
        methods = []
        for m in rows_m:
            if m["method"] not in methods:
                methods.append(m["method"])
        rows = []
        for name in methods:
            values = []
            for L in lengths:
                for b in budgets:
                    m = cell.get((name, b, L)) or cell.get((name, None, L))
                    values.append(f"{m['accuracy']:.0f}" if m else "–")
            rows.append([name] + values)
        n = {L: next(m["count"] for m in rows_m if m["length"] == L) for L in lengths}
        print("### passkey: exact match % (full: no budget, same value in every column)\n")
        print(table(["method"] + [f"{L} tok @{b}" for L in lengths for b in budgets], rows))
        print("\n" + ", ".join(f"n = {n[L]} prompts at {L} tokens" for L in lengths) + "\n")

    if "ruler" in by_task:
        tasks = []
        for m in by_task["ruler"]:
            if m["task"] not in tasks:
                tasks.append(m["task"])
        lengths = sorted({m["length"] for m in by_task["ruler"]})
        for L in lengths:
            cell = {(row_name(m), m["task"]): m for m in by_task["ruler"] if m["length"] == L}
            rows = []
            for r in order:
                values = [cell[(r, t)]["accuracy"] for t in tasks if (r, t) in cell]
                if values:
                    rows.append([r] + [f"{cell[(r, t)]['accuracy']:.0f}" if (r, t) in cell else "–" for t in tasks]
                                + [f"**{sum(values) / len(values):.1f}**"])
            n = next(iter(cell.values()))["count"]
            print(f"### RULER at {L} tokens: string match % (n={n} per task)\n")
            print(table(["method@budget"] + [t.split("/", 1)[1] for t in tasks] + ["mean"], rows) + "\n")

    if "multiturn" in by_task:
        rows = [[row_name(m), str(m["length"]), str(m["count"]), f"{m['accuracy']:.1f}",
                 f"{m['kv_read_bytes_per_step'] / 2**20:.2f}"] for m in by_task["multiturn"]]
        print("### multi-turn: values retrieved, % of turns\n")
        print(table(["method@budget", "length", "sessions", "turns answered %", "KV read/step MiB"], rows) + "\n")

    if "fidelity" in by_task:
        rows = [[row_name(m), str(m["length"]), str(m["count"]), f"{m['accuracy']:.1f}", f"{m['kl']:.4f}",
                 f"{m['perplexity']:.3f}", f"{m['kv_read_bytes_per_step'] / 2**20:.2f}"]
                for m in by_task["fidelity"]]
        print("### fidelity: teacher-forced agreement with full\n")
        print(table(["method@budget", "length", "prompts", "top-1 agree %", "KL(full‖method)", "perplexity",
                     "KV read/step MiB"], rows) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
