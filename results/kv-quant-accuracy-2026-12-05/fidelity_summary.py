#!/usr/bin/env python3
"""Per method and budget of each fidelity folder: the mean teacher-forced NLL of the target tokens (nats per token,
over prompts) beside the top-1 agreement and KL that metrics.json holds (each against `full` of the same --kv-type).

    python3 fidelity_summary.py fidelity-4k-f16 fidelity-4k-q8_0 > fidelity-summary.jsonl
"""
import collections
import json
import sys

for folder in sys.argv[1:]:
    nll = collections.defaultdict(list)
    for line in open(f"{folder}/predictions.jsonl"):
        r = json.loads(line)
        nll[(r["method"], r.get("budget"))].append(r["nll"])
    for (method, budget), values in sorted(nll.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        print(json.dumps({"folder": folder, "method": method, "budget": budget, "prompts": len(values),
                          "mean_nll": round(sum(values) / len(values), 4)}))
