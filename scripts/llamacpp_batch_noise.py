#!/usr/bin/env python3
"""How far llama.cpp's logits move between a batched and a one-token-at-a-time evaluation of the same prompt
(the scale of "llama.cpp's own noise" that RocketKV's Gemma 3 parity test is compared with).

  /work/devenv/venv/bin/python scripts/llamacpp_batch_noise.py --model ~/.cache/rocketkv/models/gemma-3-270m-q4_k_m.gguf \
      --fixture Tests/RocketKVModelTests/Fixtures/gemma3/logits_short.json

Prints one JSON object: the prompt's token count, max |Δlogit| over every logit of every position, and the
positions whose argmax differs.
"""
import argparse
import json
import os

import numpy as np
from llama_cpp import Llama


def logits(model: str, tokens: list[int], batch: int) -> np.ndarray:
    llm = Llama(model_path=model, n_ctx=2048, n_batch=batch, n_ubatch=batch, logits_all=True, verbose=False, n_threads=2)
    llm.eval(tokens)
    return np.array(llm.scores[:len(tokens)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--fixture", required=True)
    args = ap.parse_args()
    tokens = json.load(open(args.fixture))["tokens"]
    model = os.path.expanduser(args.model)
    batched, single = logits(model, tokens, 512), logits(model, tokens, 1)
    print(json.dumps({"model": os.path.basename(model), "fixture": os.path.basename(args.fixture), "tokens": len(tokens),
                      "max_abs_diff": float(np.max(np.abs(batched - single))),
                      "argmax_differs_at": [int(i) for i in np.nonzero(batched.argmax(1) != single.argmax(1))[0]]}))


if __name__ == "__main__":
    main()
