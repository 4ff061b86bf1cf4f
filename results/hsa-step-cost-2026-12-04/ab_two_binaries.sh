#!/bin/bash
# A/B of two binaries, rounds interleaved: OUT BIN_A BIN_B
OUT=$1; A=$2; B=$3; : > $OUT
for r in 1 2 3; do for b in $A $B; do
  /tmp/benchbin/$b bench --kv full,rocket --budget 256 --context 2048,8000 --gen 128 --repetitions 1 --json 2>/dev/null \
   | python3 -c "import sys,json
for l in sys.stdin:
    d=json.loads(l); d['binary']='$b'; d['round']=$r; print(json.dumps(d))" >> $OUT
done; done
