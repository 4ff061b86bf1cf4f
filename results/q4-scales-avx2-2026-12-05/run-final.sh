#!/bin/bash
# The committed change (/tmp/benchbin/final) against b1f54a8's kernels (/tmp/benchbin/nib), 3 rounds interleaved:
# `full` and `rocket` @256 at 8,000 tokens, and `full` at 100 tokens (a step that is nearly all weight matmuls) with
# 1 and 8 sequences. Each line gets "binary" and "round".
out=${1:-.}
for round in 1 2 3; do
  for bin in nib final; do
    for args in "--kv full,rocket --budget 256 --context 8000" "--kv full --context 100 --batch 1,8"; do
      /tmp/benchbin/$bin bench $args --gen 64 --repetitions 1 --breakdown --json 2>/dev/null |
        python3 -c "import json,sys
for l in sys.stdin: d=json.loads(l); d['binary']='$bin'; d['round']=$round; print(json.dumps(d))" >> $out/final-ab.jsonl
    done
  done
done
