#!/usr/bin/env python3
"""Generates Tests/RocketKVTests/ReferenceVectors.swift: expected values for the Swift tests,
computed with gguf-py's numpy reference code (gguf.quants) and GGUFWriter.

Run with the dev environment's Python (which has the `gguf` package):
    /work/devenv/g/bin/python scripts/make_quant_vectors.py

Contents:
  * dequantization vectors: for every GGMLType, raw blocks (random bytes with chosen, finite
    fp16/fp32 scales) and the floats gguf.quants.dequantize produces for them. Q8_1 and Q8_K have no
    gguf-py dequantizer (and gguf-py's size table lists an outdated 40-byte Q8_1), so their expected
    values are computed here with numpy straight from the ggml-common.h layout (value = d * q).
  * round trips: a random normal vector quantized by gguf.quants.quantize (the types gguf-py can
    quantize: F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), with the original and the reference
    dequantization.
  * the first outputs of SplitMix64-seeded xoshiro256** (the sampler's RNG) for a few seeds.
  * a small GGUF file written by gguf-py's GGUFWriter, to check the reader against another writer.
"""
import os
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "RocketKVTests", "ReferenceVectors.swift")
rng = np.random.default_rng(20250601)

# Our block sizes (ggml-common.h). gguf-py agrees except for Q8_1 (it says 40: an old float layout).
LAYOUT = {
    T.Q4_0: (32, 18), T.Q4_1: (32, 20), T.Q5_0: (32, 22), T.Q5_1: (32, 24), T.Q8_0: (32, 34),
    T.Q8_1: (32, 36), T.Q2_K: (256, 84), T.Q3_K: (256, 110), T.Q4_K: (256, 144), T.Q5_K: (256, 176),
    T.Q6_K: (256, 210), T.Q8_K: (256, 292),
}
# Byte offsets of the fp16 scale fields ("d"-like: signed, "m"-like: a min, may be negative).
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.Q8_1: [0, 2],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
SWIFT_NAME = {
    T.F32: "f32", T.F16: "f16", T.BF16: "bf16", T.Q4_0: "q4_0", T.Q4_1: "q4_1", T.Q5_0: "q5_0",
    T.Q5_1: "q5_1", T.Q8_0: "q8_0", T.Q8_1: "q8_1", T.Q2_K: "q2_K", T.Q3_K: "q3_K", T.Q4_K: "q4_K",
    T.Q5_K: "q5_K", T.Q6_K: "q6_K", T.Q8_K: "q8_K",
}


def f32hex(a: np.ndarray) -> str:
    return np.asarray(a, dtype="<f4").tobytes().hex()


def random_scale() -> float:
    return float(rng.uniform(0.001, 0.2) * rng.choice([-1.0, 1.0]))


def raw_blocks(qtype: T, n_blocks: int) -> bytes:
    block_size, type_size = LAYOUT[qtype]
    raw = bytearray(rng.integers(0, 256, size=n_blocks * type_size, dtype=np.uint8).tobytes())
    for b in range(n_blocks):
        base = b * type_size
        if qtype == T.Q8_K:
            raw[base:base + 4] = np.float32(random_scale()).astype("<f4").tobytes()
            continue
        for off in HALF_FIELDS[qtype]:
            raw[base + off:base + off + 2] = np.float16(random_scale()).astype("<f2").tobytes()
    return bytes(raw)


def reference_dequantize(qtype: T, raw: bytes) -> np.ndarray:
    data = np.frombuffer(raw, dtype=np.uint8)
    if qtype == T.Q8_1:  # fp16 d, fp16 s, int8 qs[32]
        blocks = data.reshape(-1, 36)
        d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)
        q = blocks[:, 4:].copy().view(np.int8).astype(np.float32)
        return (q * d).reshape(-1)
    if qtype == T.Q8_K:  # f32 d, int8 qs[256], int16 bsums[16]
        blocks = data.reshape(-1, 292)
        d = blocks[:, 0:4].copy().view("<f4")
        q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (q * d).reshape(-1)
    return np.asarray(dequantize(data, qtype), dtype=np.float32).reshape(-1)


def known_vectors() -> list[tuple[str, int, str, str]]:
    out = []
    # Floats: special values plus random ones.
    f32 = np.array([0.0, -0.0, 1.0, -2.5, 1e-45, 3.4028235e38, np.inf, -np.inf, np.nan, 1.17549435e-38]
                   + list(rng.standard_normal(6)), dtype=np.float32)
    out.append(("f32", len(f32), f32.tobytes().hex(), f32hex(dequantize(f32.view(np.uint8), T.F32))))
    half_bits = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xC000, 0x7BFF, 0xFBFF,
                          0x7C00, 0xFC00, 0x7E00, 0x7C01, 0x3555, 0x0200]
                         + list(rng.integers(0, 0x7C00, size=16)), dtype="<u2")
    out.append(("f16", len(half_bits), half_bits.tobytes().hex(),
                f32hex(dequantize(half_bits.view(np.uint8), T.F16))))
    bf_bits = np.array([0x0000, 0x8000, 0x0001, 0x3F80, 0xC020, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0, 0x0080]
                       + list(rng.integers(0, 0x10000, size=6)), dtype="<u2")
    bf_bits[10:][(bf_bits[10:] & 0x7F80) == 0x7F80] &= 0xBFFF  # keep the random ones finite
    out.append(("bf16", len(bf_bits), bf_bits.tobytes().hex(),
                f32hex(dequantize(bf_bits.view(np.uint8), T.BF16))))
    for qtype in LAYOUT:
        raw = raw_blocks(qtype, 2)
        expected = reference_dequantize(qtype, raw)
        assert expected.size == 2 * LAYOUT[qtype][0] and np.all(np.isfinite(expected))
        out.append((SWIFT_NAME[qtype], expected.size, raw.hex(), f32hex(expected)))
    return out


def round_trips() -> list[tuple[str, int, str, str, str]]:
    out = []
    x = (rng.standard_normal(64) * 0.5).astype(np.float32)
    x[5] = 2.0  # a clear maximum
    for qtype in [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
        q = np.asarray(quantize(x, qtype)).view(np.uint8)
        back = np.asarray(dequantize(q, qtype), dtype=np.float32).reshape(-1)
        out.append((SWIFT_NAME[qtype], x.size, f32hex(x), q.tobytes().hex(), f32hex(back)))
    return out


def xoshiro_outputs(seed: int, n: int) -> list[int]:
    M = (1 << 64) - 1

    def splitmix(state):
        state = (state + 0x9E3779B97F4A7C15) & M
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return state, z ^ (z >> 31)

    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M

    s, st = [], seed
    for _ in range(4):
        st, v = splitmix(st)
        s.append(v)
    outs = []
    for _ in range(n):
        outs.append((rotl((s[1] * 5) & M, 7) * 9) & M)
        t = (s[1] << 17) & M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
    return outs


def gguf_writer_image() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tiny.gguf")
        w = gguf.GGUFWriter(path, "llama")
        w.add_uint32("tiny.count", 7)
        w.add_int32("tiny.negative", -3)
        w.add_float32("tiny.ratio", 0.5)
        w.add_bool("tiny.flag", True)
        w.add_string("tiny.name", "héllo")
        w.add_array("tiny.tokens", ["a", "bc", ""])
        w.add_array("tiny.ints", [1, 2, 3])
        w.add_tensor("weight", np.arange(8, dtype=np.float32).reshape(2, 4))
        q = np.asarray(quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), T.Q8_0))
        w.add_tensor("quant", q, raw_dtype=T.Q8_0)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        with open(path, "rb") as f:
            return f.read()


def swift_string(hex_text: str, indent: str = "") -> str:
    # One literal per value: long `+` chains of literals are slow for Swift's type checker.
    return f'"{hex_text}"'


def main() -> None:
    lines = [
        "// Generated by scripts/make_quant_vectors.py from gguf-py's numpy reference (gguf.quants) and",
        "// GGUFWriter. Do not edit by hand; rerun the script instead.",
        "import RocketKV",
        "",
        "enum ReferenceVectors {",
        "    /// Raw blocks and the floats gguf.quants.dequantize returns for them (hex, little-endian f32).",
        "    static let known: [(type: GGMLType, count: Int, blocks: String, expected: String)] = [",
    ]
    for name, count, raw, expected in known_vectors():
        lines.append(f"        (.{name}, {count},")
        lines.append("            " + swift_string(raw) + ",")
        lines.append("            " + swift_string(expected) + "),")
    lines += [
        "    ]",
        "",
        "    /// A random vector quantized by gguf.quants.quantize, and its reference dequantization.",
        "    static let roundTrips: [(type: GGMLType, count: Int, original: String, blocks: String, expected: String)] = [",
    ]
    for name, count, orig, raw, back in round_trips():
        lines.append(f"        (.{name}, {count},")
        lines.append("            " + swift_string(orig) + ",")
        lines.append("            " + swift_string(raw) + ",")
        lines.append("            " + swift_string(back) + "),")
    lines += ["    ]", "", "    /// First outputs of xoshiro256** seeded through SplitMix64."]
    lines.append("    static let xoshiro: [(seed: UInt64, outputs: [UInt64])] = [")
    for seed in [0, 42, 0xFFFF_FFFF_FFFF_FFFF]:
        outs = ", ".join(f"0x{v:016X}" for v in xoshiro_outputs(seed, 4))
        lines.append(f"        (0x{seed:X}, [{outs}]),")
    lines += ["    ]", "", "    /// A GGUF file written by gguf-py's GGUFWriter (see gguf_writer_image in the script)."]
    lines.append("    static let ggufWriterImage: String =")
    lines.append("        " + swift_string(gguf_writer_image().hex(), "        "))
    lines += ["}", ""]
    with open(OUT, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {os.path.relpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
