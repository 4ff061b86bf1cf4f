#!/bin/bash
# Interleaved rounds: old (a5c3093, f16 page bounds beside every cache) then new (int8 bounds beside quantized caches).
OUT=/work/main/results/kv-q8-bounds-2026-12-05
for round in 1 2 3; do
  for bin in old new2; do
    B=/tmp/evalbin2/rocketkv; [ $bin = new2 ] && B=/tmp/newbin/rocketkv
    echo "round $round $bin $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)" >> $OUT/bench.log
    $B bench --kv rocket --kv-type q8_0,q4_0 --budget 256 --context 8000,16384 --gen 32 --repetitions 1 --breakdown --json \
      2>>$OUT/bench.log | sed "s/^{/{\"binary\":\"$bin\",\"round\":$round,/" >> $OUT/rocket-$bin-block2.jsonl
  done
done
echo done >> $OUT/bench.log
