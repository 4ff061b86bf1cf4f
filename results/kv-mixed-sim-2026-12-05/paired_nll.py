#!/usr/bin/env python3
"""`full`'s teacher-forced NLL (nats per token) of each fidelity folder, and its per-prompt difference from a base
folder's (same prompts), with a 95 % bootstrap interval over prompts (10,000 resamples, seed 0 for each folder).

    python3 paired_nll.py BASE FOLDER...
"""
import json
import random
import sys


def nll(folder):
    rows = {}
    for line in open(f"{folder}/predictions.jsonl"):
        r = json.loads(line)
        if r["method"] == "full":
            rows[(r["length"], r["sample"])] = r["nll"]
    return rows


base = nll(sys.argv[1])
for folder in sys.argv[1:]:
    rng = random.Random(0)
    other = nll(folder)
    keys = sorted(base)
    assert sorted(other) == keys, f"{folder}: other prompts than {sys.argv[1]}"
    d = [other[k] - base[k] for k in keys]
    means = sorted(sum(rng.choice(d) for _ in d) / len(d) for _ in range(10000))
    print(json.dumps({"folder": folder.rstrip("/").split("/")[-1], "prompts": len(d),
                      "mean_nll": round(sum(other.values()) / len(d), 4),
                      "minus_base": round(sum(d) / len(d), 4), "base": sys.argv[1].rstrip("/").split("/")[-1],
                      "interval95": [round(means[249], 4), round(means[9749], 4)],
                      "prompts_higher": sum(x > 0 for x in d), "prompts_lower": sum(x < 0 for x in d)}))
