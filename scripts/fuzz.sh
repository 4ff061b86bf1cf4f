#!/usr/bin/env bash
# Builds the libFuzzer harnesses of Fuzz/ (with AddressSanitizer) and runs each for SECONDS (default 60):
#   scripts/fuzz.sh [SECONDS] [HARNESS...]      harnesses: gguf tokenizer template request (default: all four)
# Each run starts from the committed seeds (Fuzz/Corpus/NAME) plus what earlier runs found (.fuzz/NAME, not
# committed), stops at the first crash, leak, sanitizer report, timeout (10 s per input) or 2 GB of memory,
# and prints one summary line. Exit status 1 if any harness found something (the input is kept in .fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"; shift || true
harnesses=("$@"); [ ${#harnesses[@]} -gt 0 ] || harnesses=(gguf tokenizer template request)

swift build -c release --package-path Fuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld 2>&1 | grep -E "error|warning: |Compiling|Build complete" | grep -v -e "^\[" -e "distributed-tracing" || true
bin=.build-fuzz/release

status=0
for name in "${harnesses[@]}"; do
    case "$name" in
        gguf) exe=FuzzGGUF; maxlen=65536 ;;
        tokenizer) exe=FuzzTokenizer; maxlen=4096 ;;
        template) exe=FuzzTemplate; maxlen=8192 ;;
        request) exe=FuzzRequest; maxlen=16384 ;;
        *) echo "unknown harness '$name' (gguf, tokenizer, template, request)" >&2; exit 64 ;;
    esac
    work=".fuzz/$name"; mkdir -p "$work/corpus" "$work/findings"
    log="$work/last-run.log"
    if "$bin/$exe" "$work/corpus" "Fuzz/Corpus/$name" -max_total_time="$seconds" -max_len="$maxlen" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/findings/" >"$log" 2>&1; then
        result="ok"
    else
        result="FAILED (see $log and $work/findings/)"; status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    corpus=$(ls "$work/corpus" | wc -l)
    echo "fuzz $name: ${seconds}s, $runs executions, coverage $cov edges, $ft features, corpus $corpus inputs: $result"
done
exit $status
