#!/usr/bin/env python3
"""Summarises scripts/answers_llamacpp.py outputs: per cache type, how many answers are the same text in both engines,
how many prompts each engine scores higher, both engines' means; and, per engine, the change from the f16 cache to
the q8_0 cache on the same prompts (mean difference in points with a 95 % paired bootstrap interval, 10,000 resamples
of the prompts, seed 0), so q8_0's cost in llama.cpp stands beside its cost here.

    python3 pair_engines.py llamacpp-ruler-4k-f16.jsonl llamacpp-ruler-4k-q8_0.jsonl > paired-engines.jsonl
"""
import json
import random
import sys


def load(path):
    return {(r["task"], r["length"], r["depth"], r["sample"]): r for r in map(json.loads, open(path))}


def interval(d):
    """95 % percentile bootstrap interval of 100 × the mean of `d`."""
    rng = random.Random(0)
    means = sorted(100 * sum(rng.choice(d) for _ in d) / len(d) for _ in range(10000))
    return [round(means[249], 2), round(means[9749], 2)]


f16, q8 = load(sys.argv[1]), load(sys.argv[2])
for name, rows in (("f16", f16), ("q8_0", q8)):
    n = len(rows)
    print(json.dumps({"kv_type": name, "prompts": n, "identical_text": sum(r["identical"] for r in rows.values()),
                      "same_score": sum(r["llamacpp_score"] == r["ours_score"] for r in rows.values()),
                      "llamacpp_higher": sum(r["llamacpp_score"] > r["ours_score"] for r in rows.values()),
                      "ours_higher": sum(r["ours_score"] > r["llamacpp_score"] for r in rows.values()),
                      "llamacpp_percent": round(100 * sum(r["llamacpp_score"] for r in rows.values()) / n, 2),
                      "ours_percent": round(100 * sum(r["ours_score"] for r in rows.values()) / n, 2),
                      "ours_minus_llamacpp_interval_95": interval([r["ours_score"] - r["llamacpp_score"] for r in rows.values()])}))
shared = sorted(set(f16) & set(q8))
for engine in ("llamacpp", "ours"):
    d = [q8[k][f"{engine}_score"] - f16[k][f"{engine}_score"] for k in shared]
    print(json.dumps({"engine": engine, "prompts": len(shared), "q8_0_minus_f16_points": round(100 * sum(d) / len(d), 2),
                      "interval_95": interval(d), "q8_0_higher": sum(x > 0 for x in d), "f16_higher": sum(x < 0 for x in d),
                      "same_text_f16_q8_0": sum(q8[k][f"{engine}_output"] == f16[k][f"{engine}_output"] for k in shared)}))
