#!/bin/bash
# 3 interleaved rounds, old and new, full+rocket, f16+q8_0 at 8000
cd /tmp/q8bench
/tmp/pause.sh stop
for r in 1 2 3; do
  for b in old new; do
    /tmp/benchbin/$b bench --kv full,rocket --budget 256 --kv-type f16,q8_0 --context 8000 --gen 32 --repetitions 1 --breakdown --json 2>>bench.log | python3 -c "
import sys,json
for l in sys.stdin:
    l=l.strip()
    if not l: continue
    try: d=json.loads(l)
    except Exception: print(l); continue
    d['binary']='$b'; d['round']=$r; print(json.dumps(d))" >> q8-8000.jsonl
  done
done
/tmp/pause.sh cont
echo DONE
