#!/usr/bin/env python3
"""Copies a GGUF's metadata (no tensors) with another tokenizer.ggml.pre, to compare every
pre-tokenizer with llama.cpp on one vocabulary (llama.cpp loads such a file with vocab_only).

Needs the `gguf` package (dev only).

    python scripts/gguf_with_pre.py MODEL.gguf /tmp/llama3.gguf llama-bpe --drop tokenizer.ggml.add_bos_token
    python scripts/make_token_fixture.py --model /tmp/llama3.gguf --adhoc 2000 --out /tmp/llama3.json
    ROCKETKV_TOKEN_MODEL=/tmp/llama3.gguf ROCKETKV_TOKEN_CASES=/tmp/llama3.json \\
        swift test -c release --filter TokenizerFixtureTests/testAdHocComparison
"""
import argparse

from gguf import GGUFReader, GGUFValueType, GGUFWriter


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("pre", help="new tokenizer.ggml.pre ('-' to remove the key)")
    ap.add_argument("--drop", action="append", default=[], help="metadata key to leave out")
    ap.add_argument("--digit-merges", action="store_true",
                    help="append tokens and merges for all 2- and 3-digit strings, so that digit grouping shows in ids")
    args = ap.parse_args()

    r = GGUFReader(args.src)
    digits = "0123456789"
    pairs = [a + b for a in digits for b in digits]
    triples = [p + c for p in pairs for c in digits]
    extra = {
        "tokenizer.ggml.tokens": lambda v: [t for t in pairs + triples if t not in set(v)],
        "tokenizer.ggml.token_type": lambda v: [1] * len([t for t in pairs + triples
                                                          if t not in set(r.fields["tokenizer.ggml.tokens"].contents())]),
        "tokenizer.ggml.merges": lambda v: [a + " " + b for a, b in ((p[0], p[1]) for p in pairs)]
                                           + [p[:2] + " " + p[2] for p in triples],
    }
    w = GGUFWriter(args.dst, r.fields["general.architecture"].contents())
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in args.drop:
            continue
        value = field.contents()
        if args.digit_merges and key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            value = list(value) + extra[key](value)
        if key == "tokenizer.ggml.pre":
            if args.pre == "-":
                continue
            value = args.pre
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            w.add_key_value(key, value, kind, sub_type=field.types[1])
        else:
            w.add_key_value(key, value, kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
