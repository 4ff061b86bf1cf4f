#!/usr/bin/env python3
"""Pairs the predictions of two eval folders made on the same prompts with different --kv-type: per method, budget and
length, how many prompts each answers (RULER: the sum of their scores), how many only one of them answers, how many answers are the same text, and a 95 % paired bootstrap interval of the
difference in points (10,000 resamples of the prompts, seed 0).

    python3 compare_types.py passkey-f16 passkey-q8_0 > paired-f16-q8_0.jsonl
"""
import collections
import json
import random
import sys


def load(folder):
    rows = {}
    for line in open(f"{folder}/predictions.jsonl"):
        r = json.loads(line)
        rows[(r["method"], r.get("budget"), r["length"], r.get("task"), r["depth"], r["sample"])] = r   # task: RULER
    return rows


a, b = load(sys.argv[1]), load(sys.argv[2])
cells = collections.defaultdict(lambda: collections.Counter())
differences = collections.defaultdict(list)
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
    differences[key[:3]].append(rb["score"] - ra["score"])


def interval(d):
    """95 % percentile bootstrap interval of 100 × the mean of `d`."""
    rng = random.Random(0)
    means = sorted(100 * sum(rng.choice(d) for _ in d) / len(d) for _ in range(10000))
    return [round(means[249], 2), round(means[9749], 2)]


for (method, budget, length), c in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])):
    print(json.dumps({"a": sys.argv[1], "b": sys.argv[2], "method": method, "budget": budget, "length": length, **c,
                      "a_percent": 100 * c["a_correct"] / c["n"], "b_percent": 100 * c["b_correct"] / c["n"],
                      "difference_points": 100 * (c["b_correct"] - c["a_correct"]) / c["n"],
                      "difference_interval_95": interval(differences[(method, budget, length)])}))
