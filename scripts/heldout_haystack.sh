#!/usr/bin/env bash
# The held-out haystack: the second half (in sorted name order) of the Paul Graham essays, which the default
# haystack's prompts (its first ~50,000 words) never reach. Settings chosen by looking at results on the default
# haystack (e.g. `--kv-option page-round=nearest`) are confirmed on this text with other seeds.
#   scripts/heldout_haystack.sh OUT_DIR      then   rocketkv eval ... --haystack OUT_DIR --seed 1001
set -euo pipefail
out="${1:?usage: heldout_haystack.sh OUT_DIR}"
src="${ROCKETKV_HOME:-$HOME/.cache/rocketkv}/data/paul_graham_essays"
[ -d "$src" ] || { echo "run any 'rocketkv eval' once to fetch the essays into $src" >&2; exit 1; }
mkdir -p "$out"
files=$(cd "$src" && ls *.txt | LC_ALL=C sort)
count=$(echo "$files" | wc -l)
echo "$files" | tail -n $((count - count / 2)) | while read -r f; do cp "$src/$f" "$out/"; done
echo "$out: $(ls "$out" | wc -l) of $count essays, $(cat "$out"/*.txt | wc -w) words" >&2
