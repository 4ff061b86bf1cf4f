#!/bin/bash
cd /tmp/nibbench
for r in 1 2 3; do
  for b in head-ff nib; do
    /tmp/benchbin/$b bench --kv full,rocket --budget 256 --context 8000 --gen 32 --repetitions 1 --breakdown --json 2>>bench.log | python3 -c "
import sys,json
for l in sys.stdin:
    l=l.strip()
    if not l: continue
    try: d=json.loads(l)
    except Exception: print(l); continue
    d['binary']='$b'; d['round']=$r; print(json.dumps(d))" >> nibbles-8000.jsonl
  done
done
echo DONE
