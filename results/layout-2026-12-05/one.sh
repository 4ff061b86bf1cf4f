#!/bin/bash
# pad.so: gcc -shared -fPIC -O2 -o /tmp/s/pad.so pad.c (preloaded; HEAPPAD / MMAPPAD pages). Output lines: see setarch-R-shifted.txt.
# usage: one.sh LABEL [env...]
label=$1; shift
cd /work/main
r=$(env "$@" LD_PRELOAD=/tmp/s/pad.so setarch $(uname -m) -R .build/release/rocketkv bench --kv rocket --budget 256 --context 2048 --gen 64 --repetitions 1 --breakdown --json 2>/dev/null | python3 -c "
import json,sys
r=json.loads(sys.stdin.readline()); print('tok/s %.1f mm %.2f att %.2f sel %.2f hsaatt %.2f' % (r['decode_tok_s'], r['breakdown_matmul_ms'], r['breakdown_attention_ms'], r['breakdown_hsa_selection_thread_ms'], r['breakdown_hsa_attention_thread_ms']))")
echo "$label $* $r"
