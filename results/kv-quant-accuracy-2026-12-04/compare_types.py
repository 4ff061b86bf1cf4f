#!/usr/bin/env python3
"""Pairs the predictions of two eval folders made on the same prompts with different --kv-type: per method, budget and
length, how many prompts each answers (RULER: the sum of their scores), how many only one of them answers, and how many answers are the same text.

    python3 compare_types.py passkey-f16 passkey-q8_0 > paired-f16-q8_0.jsonl
"""
import collections
import json
import sys


def load(folder):
    rows = {}
    for line in open(f"{folder}/predictions.jsonl"):
        r = json.loads(line)
        rows[(r["method"], r.get("budget"), r["length"], r.get("task"), r["depth"], r["sample"])] = r   # task: RULER
    return rows


a, b = load(sys.argv[1]), load(sys.argv[2])
cells = collections.defaultdict(lambda: collections.Counter())
for key, ra in a.items():
    rb = b.get(key)
    if rb is None:
        continue
    c = cells[key[:3]]
    c["n"] += 1
    c["a_correct"] += ra["score"]
    c["b_correct"] += rb["score"]
    c["only_a"] += ra["score"] > rb["score"]   # for 0/1 scores: only a answers
    c["only_b"] += rb["score"] > ra["score"]
    c["same_text"] += ra["output"] == rb["output"]
for (method, budget, length), c in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])):
    print(json.dumps({"a": sys.argv[1], "b": sys.argv[2], "method": method, "budget": budget, "length": length, **c,
                      "a_percent": 100 * c["a_correct"] / c["n"], "b_percent": 100 * c["b_correct"] / c["n"],
                      "difference_points": 100 * (c["b_correct"] - c["a_correct"]) / c["n"]}))
