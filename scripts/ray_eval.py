#!/usr/bin/env python3
"""Runs one `rocketkv eval` sweep as N shards on a Ray cluster, then merges the shards.

Each shard is a Ray task running `rocketkv eval ARGS --shard I/N --out OUT/shard-I` on whichever node Ray
places it (the binary, the model cache and OUT must be reachable at the same paths there, e.g. on a shared
file system). After all shards finish, `rocketkv eval merge OUT/shard-* --out OUT/merged` writes the combined
predictions, metrics and report, equal to the unsharded run. Several sweeps (passkey, then ruler, ...) go into
the same OUT one launch after another; each launch re-merges every sweep run so far.

    pip install --only-binary=:all: 'ray==2.*'
    ray start --head                      # or an existing cluster: --address HOST:PORT
    python3 scripts/ray_eval.py --shards 8 --out results/eval-ray -- \
        passkey --lengths 2048,4096 --samples 4 --threads 2

`--cpus` is the number of CPUs Ray reserves per shard (give the same as --threads). The exit status is non-zero
when any shard or the merge fails; each shard's stderr is in OUT/shard-I.log.
"""
import argparse
import os
import shutil
import subprocess
import sys

import ray


@ray.remote
def run_shard(binary, args, index, count, out):
    folder = os.path.join(out, f"shard-{index}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(out, f"shard-{index}.log"), "ab") as log:
        done = subprocess.run([binary, "eval", *args, "--shard", f"{index}/{count}", "--out", folder],
                              stdout=log, stderr=log)
    return index, done.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, required=True, help="number of shards N")
    parser.add_argument("--out", required=True, help="folder for shard-I/ and merged/")
    parser.add_argument("--address", default="auto", help="Ray cluster address (default: auto, the running local cluster)")
    parser.add_argument("--cpus", type=float, default=1, help="CPUs Ray reserves per shard")
    parser.add_argument("--rocketkv", default=".build/release/rocketkv", help="path of the rocketkv binary")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then the eval task and its options (no --shard, no --out)")
    options = parser.parse_args()
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    if options.shards < 1 or not args or any(a in ("--shard", "--out") or a.startswith(("--shard=", "--out=")) for a in args):
        parser.error("give --shards N ≥ 1 and, after --, the eval task and options without --shard or --out")
    binary = os.path.abspath(options.rocketkv)
    out = os.path.abspath(options.out)
    os.makedirs(out, exist_ok=True)

    ray.init(address=options.address, log_to_driver=False)
    tasks = [run_shard.options(num_cpus=options.cpus).remote(binary, args, i, options.shards, out) for i in range(options.shards)]
    failed = [index for index, code in ray.get(tasks) if code != 0]
    if failed:
        sys.exit(f"shards {failed} failed; see {out}/shard-I.log")

    merged = os.path.join(out, "merged")
    shutil.rmtree(merged, ignore_errors=True)   # derived from the shards, rebuilt from all of them
    shards = [os.path.join(out, f"shard-{i}") for i in range(options.shards)]
    sys.exit(subprocess.run([binary, "eval", "merge", *shards, "--out", merged]).returncode)


if __name__ == "__main__":
    main()
