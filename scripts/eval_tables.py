#!/usr/bin/env python3
"""Markdown tables for EVALUATION.md from the metrics.json that `rocketkv eval` writes: one row per method,
budget and length with the sample count and the 95 % interval `rocketkv eval` computed (Wilson for 0/1 scores,
bootstrap over prompts for means), each table preceded by the <!-- source: --> line scripts/check_doc_numbers.py
checks. Rows can be filtered by method, budget and length.

usage: scripts/eval_tables.py DIR/metrics.json [--methods full,rocket,...] [--budgets 128,256] [--lengths 4096]
"""
import collections
import json
import os
import sys


def row_name(m):
    return m["method"] + (f"@{m['budget']}" if m.get("budget") else "")


def interval(i):
    return f"{i['low']:.0f}–{i['high']:.0f}"


def table(source, header, rows):
    out = [f"<!-- source: {source} -->", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def main(path, methods, budgets, lengths):
    metrics = [m for m in json.load(open(path)) if (not methods or m["method"] in methods)
               and (not budgets or m.get("budget") is None or m["budget"] in budgets) and (not lengths or m["length"] in lengths)]
    source = os.path.relpath(os.path.abspath(path), os.getcwd())
    by_task = collections.defaultdict(list)
    for m in metrics:
        by_task[m["task"].split("/")[0]].append(m)
    read = lambda m: f"{m['kv_read_bytes_per_step'] / 2**20:.2f}" + (
        f" (ideal {m['kv_ideal_read_bytes_per_step'] / 2**20:.2f})" if m.get("kv_ideal_read_bytes_per_step") else "")
    if "passkey" in by_task:
        print("### passkey: the key as a whole number in the answer, % (95 % Wilson interval)\n")
        print(table(source, ["method@budget", "length", "n", "exact %", "95 % interval", "substring %", "KV read/step MiB"],
                    [[row_name(m), str(m["length"]), str(m["count"]), f"{m['accuracy']:.0f}", interval(m["interval"]),
                      f"{m['substring']:.0f}" if m.get("substring") is not None else "–", read(m)] for m in by_task["passkey"]]))
    if "ruler" in by_task:
        print("### RULER: string match % per task, and the means (bootstrap intervals over prompts)\n")
        print(table(source, ["task", "method@budget", "length", "n", "match %", "95 % interval"],
                    [[m["task"].split("/", 1)[1], row_name(m), str(m["length"]), str(m["count"]), f"{m['accuracy']:.1f}",
                      interval(m["interval"])] for m in by_task["ruler"]]))
    if "multiturn" in by_task:
        print("### multi-turn: values retrieved, % of turns (bootstrap interval over sessions)\n")
        print(table(source, ["method@budget", "length", "sessions", "turns answered %", "95 % interval", "KV read/step MiB"],
                    [[row_name(m), str(m["length"]), str(m["count"]), f"{m['accuracy']:.1f}", interval(m["interval"]), read(m)]
                     for m in by_task["multiturn"]]))
    if "fidelity" in by_task:
        print("### fidelity: teacher-forced agreement with full (interval over prompts)\n")
        print(table(source, ["method@budget", "length", "prompts", "top-1 agree %", "95 % interval", "KL(full‖method)", "perplexity",
                             "KV read/step MiB"],
                    [[row_name(m), str(m["length"]), str(m["count"]), f"{m['accuracy']:.1f}", interval(m["interval"]),
                      f"{m['kl']:.4f}", f"{m['perplexity']:.3f}", read(m)] for m in by_task["fidelity"]]))


if __name__ == "__main__":
    args = sys.argv[1:]

    def chosen(flag, kind):
        return {kind(v) for v in args[args.index(flag) + 1].split(",")} if flag in args else set()

    main(args[0], chosen("--methods", str), chosen("--budgets", int), chosen("--lengths", int))
