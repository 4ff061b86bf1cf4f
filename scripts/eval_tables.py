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
        lengths = sorted({m["length"] for m in by_task["passkey"]})
        cell = {(row_name(m), m["length"]): m for m in by_task["passkey"]}
        rows = [[r] + [f"{cell[(r, L)]['accuracy']:.0f}" if (r, L) in cell else "–" for L in lengths]
                for r in order if any((r, L) in cell for L in lengths)]
        print("### passkey: exact match %\n")
        print(table(["method@budget"] + [f"{L} tok (n={cell[(order[0], L)]['count']})" for L in lengths], rows) + "\n")

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

    if "fidelity" in by_task:
        rows = [[row_name(m), str(m["length"]), str(m["count"]), f"{m['accuracy']:.1f}", f"{m['kl']:.4f}",
                 f"{m['perplexity']:.3f}", f"{m['kv_read_bytes_per_step'] / 2**20:.2f}"]
                for m in by_task["fidelity"]]
        print("### fidelity: teacher-forced agreement with full\n")
        print(table(["method@budget", "length", "prompts", "top-1 agree %", "KL(full‖method)", "perplexity",
                     "KV read/step MiB"], rows) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
