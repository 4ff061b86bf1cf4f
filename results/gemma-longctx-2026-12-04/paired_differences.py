#!/usr/bin/env python3
"""Paired differences between two methods over the same prompts of an eval folder: the mean over tasks of the
per-prompt score differences (percentage points; one task for multiturn, seven for RULER) with a 95 % bootstrap
interval (10,000 resamples of prompts within each task, fixed seed), and how many prompts each side won.

    python3 paired_differences.py FOLDER A:B [A:B ...]      (A, B: a method, or method@budget)
"""
import json
import random
import sys

folder, pairs = sys.argv[1], sys.argv[2:]
score = {}
for line in open(f"{folder}/predictions.jsonl"):
    r = json.loads(line)
    name = r["method"] + (f"@{r['budget']}" if r.get("budget") else "")
    score[(name, r["task"], (r["length"], r.get("depth"), r["sample"]))] = r["score"]   # one prompt
rng = random.Random(12345)
for pair in pairs:
    if pair.count(":") != 1:
        print(f"paired_differences.py: {pair!r} is not A:B", file=sys.stderr)
        sys.exit(64)
    a, b = pair.split(":")
    tasks = {}
    for (m, task, prompt) in score:
        if m == a and (b, task, prompt) in score:
            tasks.setdefault(task, []).append(100 * (score[(a, task, prompt)] - score[(b, task, prompt)]))
    if not tasks:
        print(f"paired_differences.py: {a} and {b} share no prompt in {folder}/predictions.jsonl", file=sys.stderr)
        sys.exit(64)
    def mean_over_tasks(draw):
        return sum(sum(draw(d)) / len(d) for d in tasks.values()) / len(tasks)
    means = sorted(mean_over_tasks(lambda d: [rng.choice(d) for _ in d]) for _ in range(10000))
    every = [x for d in tasks.values() for x in d]
    print(json.dumps({"folder": folder, "a": a, "b": b, "tasks": len(tasks), "prompts": len(every),
                      "mean_difference": round(mean_over_tasks(lambda d: d), 2), "low": round(means[249], 2),
                      "high": round(means[9749], 2), "a_better": sum(x > 0 for x in every),
                      "b_better": sum(x < 0 for x in every), "ties": sum(x == 0 for x in every)}))
