#!/usr/bin/env python3
"""Dumps llama.cpp's intermediate tensors (its graph's named nodes: attn_norm-L, Qcur-L, kqv_out-L, ffn_out-L,
l_out-L, ...) for one fixture prompt into an .npz, through the eval callback (`cb_eval`) of llama-cpp-python.

This is how Gemma 3's logits were made bit-identical (2026-12-04): compare these with the same points of the Swift
forward pass, layer by layer, and the first tensor that differs names the operation whose arithmetic differs.

  /work/devenv/venv/bin/python scripts/llamacpp_dump_tensors.py --model ~/.cache/rocketkv/models/gemma-3-270m-q4_k_m.gguf \\
      --fixture Tests/RocketKVModelTests/Fixtures/gemma3/logits_short.json --out /tmp/short.npz [--keep l_out,ffn_out]

Settings are make_fixtures.py's (n_ctx 2048, batch 512, 2 threads). Each key is the node's name; a name seen again
(the same node in a later ubatch, or a second node of that name) gets `#1`, `#2`, ... Arrays are float32, shaped
[ne3, ne2, ne1, ne0] as ggml stores them (F32 and F16 nodes only).
"""
import argparse
import ctypes
import json
import os

import numpy as np
import llama_cpp.llama as llama_module
from llama_cpp import Llama
from llama_cpp import llama_cpp as C

# struct ggml_tensor (ggml.h): type at 0, ne[4] at 16, nb[4] at 48, data at 248, name[64] at 256.
TYPE, NE, NB, DATA, NAME = 0, 16, 48, 248, 256


def tensor(address: int):
    typ = ctypes.c_int32.from_address(address + TYPE).value
    ne = [ctypes.c_int64.from_address(address + NE + 8 * i).value for i in range(4)]
    nb = [ctypes.c_size_t.from_address(address + NB + 8 * i).value for i in range(4)]
    data = ctypes.c_void_p.from_address(address + DATA).value
    name = ctypes.string_at(address + NAME).decode(errors="replace")
    return typ, ne, nb, data, name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--fixture", required=True, help="a logits fixture (its `tokens` are evaluated)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--keep", default="", help="comma-separated name prefixes to keep (default: every F32/F16 node)")
    args = ap.parse_args()
    keep = [k for k in args.keep.split(",") if k]
    tokens = json.load(open(args.fixture))["tokens"]
    dumps: dict[str, np.ndarray] = {}

    @C.ggml_backend_sched_eval_callback
    def callback(t, ask, _user_data):
        if ask:
            return True
        typ, ne, nb, data, name = tensor(ctypes.cast(t, ctypes.c_void_p).value)
        if typ not in (0, 1) or not data or (keep and not any(name.startswith(k) for k in keep)):
            return True
        size = 4 if typ == 0 else 2
        span = sum((n - 1) * b for n, b in zip(ne, nb)) + size
        raw = np.frombuffer((ctypes.c_char * span).from_address(data), dtype=np.float32 if typ == 0 else np.float16)
        array = np.lib.stride_tricks.as_strided(raw, shape=tuple(reversed(ne)), strides=tuple(reversed(nb)))
        key, i = name, 0
        while key in dumps:
            i += 1
            key = f"{name}#{i}"
        dumps[key] = array.astype(np.float32)
        return True

    defaults = llama_module.llama_cpp.llama_context_default_params

    def with_callback():
        params = defaults()
        params.cb_eval = callback
        return params

    llama_module.llama_cpp.llama_context_default_params = with_callback
    llm = Llama(model_path=os.path.expanduser(args.model), n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=2,
                n_threads_batch=2, logits_all=True, seed=0, verbose=False)
    llm.eval(tokens)
    np.savez(args.out, **dumps)
    print(f"{len(dumps)} tensors from {len(tokens)} tokens -> {args.out}")


if __name__ == "__main__":
    main()
