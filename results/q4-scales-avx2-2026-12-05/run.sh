#!/bin/bash
# Old (b1f54a8's kernels, /tmp/benchbin/nib) and new (this change, /tmp/benchbin/scales) interleaved, 3 rounds.
# Each line of the outputs gets "binary" and "round" fields.
out=${1:-.}
for round in 1 2 3; do
  for bin in nib scales; do
    for args in "--context 8000" "--context 2000 --batch 1,8"; do
      /tmp/benchbin/$bin bench --kv full,rocket --budget 256 $args --gen 64 --repetitions 1 --breakdown --json 2>/dev/null |
        python3 -c "import json,sys
for l in sys.stdin: d=json.loads(l); d['binary']='$bin'; d['round']=$round; print(json.dumps(d))" >> $out/ab.jsonl
    done
  done
done
