#!/usr/bin/env bash
# Builds the libFuzzer harnesses of Fuzz/ (with AddressSanitizer) and runs each for SECONDS (default 60):
#   scripts/fuzz.sh [SECONDS] [HARNESS...]      harnesses: gguf tokenizer template request (default: all four)
# Each run starts from the seeds (Fuzz/Corpus/NAME; the gguf ones are written by scripts/make_fuzz_seeds.py into
# .fuzz/gguf/seeds) plus what earlier runs found (.fuzz/NAME, not committed), stops at the first crash, leak, sanitizer report, timeout (10 s per input) or 2 GB of memory,
# and prints one summary line. Exit status 1 if any harness found something (the input is kept in .fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"; shift || true
harnesses=("$@"); [ ${#harnesses[@]} -gt 0 ] || harnesses=(gguf tokenizer template request)

# A failed build stops here: running the harnesses an earlier build left behind would test old code.
mkdir -p .fuzz
if ! swift build -c release --package-path Fuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld > .fuzz/build.log 2>&1; then
    grep -E "error" .fuzz/build.log | head -20 >&2
    echo "fuzz: the harnesses did not build (.fuzz/build.log)" >&2
    exit 1
fi
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
    seeds="Fuzz/Corpus/$name"
    if [ "$name" = gguf ]; then
        # Model files are not committed: the two tiny GGUF seeds are written here (deterministic, ~5 KB each) with
        # the gguf package, from the CI virtualenv when there is one.
        seeds="$work/seeds"
        if [ ! -f "$seeds/llama-gpt2.gguf" ] || [ ! -f "$seeds/llama-spm.gguf" ]; then
            python="${ROCKETKV_CI_VENV:-$HOME/.cache/rocketkv/ci-venv}/bin/python"; [ -x "$python" ] || python=python3
            mkdir -p "$seeds"
            "$python" scripts/make_fuzz_seeds.py "$seeds" || { echo "fuzz gguf: cannot write the seeds (needs gguf and numpy: see .ci/run)" >&2; exit 1; }
        fi
    fi
    if "$bin/$exe" "$work/corpus" "$seeds" -max_total_time="$seconds" -max_len="$maxlen" -timeout=10 \
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
