#!/bin/bash
: > /tmp/exp/k2_ab.jsonl
for r in 1 2 3; do for b in rocketkv10 rocketkv12; do
  /tmp/benchbin/$b bench --kv full,rocket --budget 512 --context 100,200 --gen 32 --repetitions 1 --json 2>/dev/null \
   | python3 -c "import sys,json
for l in sys.stdin:
    d=json.loads(l); d['binary']='$b'; d['round']=$r; print(json.dumps(d))" >> /tmp/exp/k2_ab.jsonl
done; done
