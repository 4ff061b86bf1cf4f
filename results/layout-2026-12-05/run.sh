#!/bin/bash
# rocket @256 at 2,048 tokens, one process per run, in three address layouts interleaved:
#   aslr   - as a user runs it (address-space layout randomised per process);
#   fixed  - `setarch -R` (no randomisation: the same layout in every run);
#   shifted - `setarch -R` with the stack moved by an environment variable of random length (0-200 KB), so each
#            run has another fixed layout.
# Each JSON line gets "layout", "run" and, for shifted, "pad" (bytes).
bin=${BIN:-/tmp/benchbin/scales}
out=${1:-.}
for run in $(seq 1 ${RUNS:-8}); do
  for layout in aslr fixed shifted; do
    pad=0; pre=""; envs=()
    case $layout in
      fixed) pre="setarch $(uname -m) -R" ;;
      shifted) pre="setarch $(uname -m) -R"; pad=$((RANDOM * 6 % 200000 + 1)); envs=(PAD=$(head -c $pad /dev/zero | tr '\0' a)) ;;
    esac
    env "${envs[@]}" $pre $bin bench --kv rocket --budget 256 --context 2048 --gen 64 --repetitions 1 --breakdown --json 2>/dev/null |
      python3 -c "import json,sys
for l in sys.stdin: d=json.loads(l); d['layout']='$layout'; d['run']=$run; d['pad']=$pad; print(json.dumps(d))" >> $out/layout.jsonl
  done
done
