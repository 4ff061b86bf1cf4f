#!/usr/bin/env python3
"""Test of scripts/ray_eval.py on a local Ray cluster that this test starts and stops.

Runs a small passkey sweep (SmolLM2, 512 tokens, 3 depths, full and streaming@64) unsharded, and as 2 shards
through Ray plus `rocketkv eval merge`; the merged predictions.jsonl, metrics.json and report.html must equal
the unsharded ones byte for byte. Needs `ray` (pip install --only-binary=:all: 'ray==2.*') and a release build:

    swift build -c release && /work/devenv/ray-venv/bin/python scripts/test_ray_eval.py
"""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
binary = os.path.abspath(os.path.join(here, "..", ".build", "release", "rocketkv"))
ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
sweep = ["passkey", "--methods", "full,streaming", "--budgets", "64", "--lengths", "512", "--depths", "0,0.5,1",
         "--samples", "1", "--max-tokens", "4", "--threads", "1"]


def main():
    if not os.path.exists(binary):
        sys.exit(f"build first: swift build -c release ({binary} is missing)")
    with tempfile.TemporaryDirectory() as root:
        env = dict(os.environ, RAY_TMPDIR=os.path.join(root, "ray"))
        os.makedirs(env["RAY_TMPDIR"])
        subprocess.run([ray_cli, "start", "--head", "--num-cpus", "2", "--include-dashboard=false",
                        "--temp-dir", env["RAY_TMPDIR"], "--disable-usage-stats"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        try:
            whole = os.path.join(root, "whole")
            subprocess.run([binary, "eval", *sweep, "--out", whole], check=True, stdout=subprocess.DEVNULL)
            out = os.path.join(root, "ray")
            subprocess.run([sys.executable, os.path.join(here, "ray_eval.py"), "--shards", "2", "--out", out,
                            "--rocketkv", binary, "--", *sweep], check=True, env=env, stdout=subprocess.DEVNULL)
            for name in ["predictions.jsonl", "metrics.json", "report.html"]:
                with open(os.path.join(whole, name), "rb") as a, open(os.path.join(out, "merged", name), "rb") as b:
                    if a.read() != b.read():
                        sys.exit(f"FAIL: merged {name} differs from the unsharded run's")
            with open(os.path.join(out, "merged", "predictions.jsonl")) as f:
                lines = sum(1 for _ in f)
            if lines != 6:
                sys.exit(f"FAIL: {lines} merged predictions, expected 3 prompts × 2 runs")
            print("ok: 2 Ray shards merged equal the unsharded sweep (6 predictions)")
        finally:
            subprocess.run([ray_cli, "stop", "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
