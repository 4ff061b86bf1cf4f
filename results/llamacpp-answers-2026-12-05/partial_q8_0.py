#!/usr/bin/env python3
"""llama.cpp's Q8_0 cache beside ours on the RULER prompts of a partial `answers_llamacpp.py` run, from its log (the run
writes its JSON only at the end; each log line holds a prompt's task, length, sample, llama.cpp's score and ours with
the same cache type). Adds our f16 score of the same prompt (FOLDER: the f16 eval folder) and prints one JSON line per
prompt, then a summary: on the prompts where our Q8_0 scores below our f16, what llama.cpp's Q8_0 scores.

    python3 partial_q8_0.py LOG F16_FOLDER > partial-q8_0.jsonl
"""
import json
import re
import sys

line_re = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+llama\.cpp ([\d.]+) ours ([\d.]+)\s+(same|DIFFERENT)")
f16 = {}
for line in open(f"{sys.argv[2]}/predictions.jsonl"):
    r = json.loads(line)
    if r["method"] == "full" and "kv-type=" not in (r.get("configuration") or ""):
        f16[(r["task"], r["length"], r["sample"])] = r["score"]
rows = []
for line in open(sys.argv[1]):
    m = line_re.match(line)
    if not m:
        continue
    task, length, sample = m.group(1), int(m.group(2)), int(m.group(3))
    row = {"task": task, "length": length, "sample": sample, "llamacpp_q8_0": float(m.group(4)), "ours_q8_0": float(m.group(5)),
           "ours_f16": f16[(task, length, sample)], "same_text_q8_0": m.group(6) == "same"}
    rows.append(row)
    print(json.dumps(row))
lost = [r for r in rows if r["ours_q8_0"] < r["ours_f16"]]
gained = [r for r in rows if r["ours_q8_0"] > r["ours_f16"]]
print(json.dumps({"summary": True, "prompts": len(rows), "same_score_q8_0_engines": sum(r["llamacpp_q8_0"] == r["ours_q8_0"] for r in rows),
                  "same_text_q8_0_engines": sum(r["same_text_q8_0"] for r in rows),
                  "ours_q8_0_below_ours_f16": len(lost), "of_these_llamacpp_q8_0_below_ours_f16": sum(r["llamacpp_q8_0"] < r["ours_f16"] for r in lost),
                  "llamacpp_q8_0_below_ours_f16": sum(r["llamacpp_q8_0"] < r["ours_f16"] for r in rows),
                  "ours_q8_0_above_ours_f16": len(gained), "of_these_llamacpp_q8_0_above_ours_f16": sum(r["llamacpp_q8_0"] > r["ours_f16"] for r in gained),
                  "llamacpp_q8_0_percent": round(100 * sum(r["llamacpp_q8_0"] for r in rows) / len(rows), 2),
                  "ours_q8_0_percent": round(100 * sum(r["ours_q8_0"] for r in rows) / len(rows), 2),
                  "ours_f16_percent": round(100 * sum(r["ours_f16"] for r in rows) / len(rows), 2)}))
