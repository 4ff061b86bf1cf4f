#!/usr/bin/env python3
"""Checks that the tables of README.md, BENCHMARKS.md and EVALUATION.md quote committed raw output.

Every table must be preceded (within the 3 lines above its header) by one of:

    <!-- source: results/a.jsonl results/eval-v2/passkey -->   raw files or folders (every file inside) the numbers come from
    <!-- source: FILES (medians) -->                           also midpoints of two raw numbers (medians of an even count)
    <!-- source: none -->                                      a table without measurements (options, commands, targets' wording)
    <!-- source: unrecorded -->                                measured, but the raw output was not kept: listed, and an
                                                               error with --strict (these rows need a re-measurement)

For a sourced table, every number in a data row (outside the first column, which labels the row, `code spans`,
file paths under results/ and sample counts written n = N) must equal, at the precision it is written
with, a number of the source files — as it is, × 100 (a fraction as a percentage), or in MB, MiB or GB (from
bytes) — or be a ratio written `N×` of two other numbers of the same row (within 2 %), a difference written `+N` or
`−N` of two numbers of the row or itself a raw number with that sign, or, in a column headed "ratio" or "× ...", a ratio of two numbers of the table. JSON files are read value by
value (numbers inside strings too), other files as text. Exit status 1 on any failure.

    python3 scripts/check_doc_numbers.py [--strict] [FILE.md ...]
"""
import json
import math
import os
import re
import sys

root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
number = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])-?\d+(?:\.\d+)?")
scales = [1, 100, 1e-6, 1 / 2**20, 1e-9]


def raw_numbers(paths):
    """Every number in the files under `paths`."""
    values = set()

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            values.add(float(value))
        elif isinstance(value, str):
            values.update(float(n.replace(",", "")) for n in number.findall(value))
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)

    files = []
    for path in paths:
        full = os.path.join(root, path)
        if os.path.isdir(full):
            files += [os.path.join(d, f) for d, _, names in os.walk(full) for f in names]
        elif os.path.isfile(full):
            files.append(full)
        else:
            raise FileNotFoundError(path)
    for file in files:
        text = open(file, encoding="utf-8", errors="replace").read()
        try:
            walk(json.loads(text))
            continue
        except ValueError:
            pass
        for line in text.splitlines():
            try:
                walk(json.loads(line))
            except ValueError:
                walk(line)
    return values


def decimals(token):
    return len(token.split(".")[1]) if "." in token else 0


def quoted(token, raw):
    """Whether `token` as written is a raw number, at its precision, under one of the scales."""
    x, d = float(token.replace(",", "")), decimals(token)
    half = 0.5 * 10 ** -d + 1e-9
    return any(abs(v * s - x) <= half for v in raw for s in scales)


def cells(row):
    return [c.strip() for c in row.strip().strip("|").split("|")]


def check(path, strict):
    lines = open(path, encoding="utf-8").read().splitlines()
    errors, unrecorded = [], []
    i = 0
    while i < len(lines):
        if not (lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1])):
            i += 1
            continue
        start = i
        end = i + 2
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        where = f"{os.path.relpath(path, root)}:{start + 1}"
        source = None
        for back in range(1, 4):
            m = start - back >= 0 and re.match(r"^<!-- source: (.*?) -->$", lines[start - back].strip())
            if m:
                source = m.group(1).split()
                break
        i = end
        if source is None:
            errors.append(f"{where}: table without a <!-- source: ... --> line")
            continue
        if source == ["none"]:
            continue
        if source == ["unrecorded"]:
            unrecorded.append(where)
            continue
        medians = "(medians)" in source
        source = [s for s in source if s != "(medians)"]
        try:
            raw = raw_numbers(source)
            if medians:   # the median of an even count: the midpoint of two raw numbers
                raw = raw | {(a + b) / 2 for a in raw for b in raw}
        except FileNotFoundError as e:
            errors.append(f"{where}: source {e} does not exist")
            continue
        # A column headed "ratio" or "× ..." holds ratios of other numbers of the table (e.g. "× full": this row's
        # figure over full's row); elsewhere a ratio is written "N×" and is one of two numbers of its own row.
        ratio_columns = {c for c, h in enumerate(cells(lines[start])) if "ratio" in h or h.startswith("×")}
        table_values = []
        rows = []
        for r in range(start + 2, end):
            parsed = []
            for c, text in enumerate(cells(lines[r])):
                if c == 0:
                    continue   # the row's label (lengths, budgets, prompt counts as words)
                text = re.sub(r"`[^`]*`|results/\S+|\bn\s*=\s*\d+", "", text)
                for m in number.finditer(text):
                    sign = text[m.start() - 1:m.start()]
                    kind = ("row-ratio" if re.match(r"×(?!\d)", text[m.end():]) else "difference" if sign in ("+", "−")
                            else "table-ratio" if c in ratio_columns else "value")
                    parsed.append(("-" + m.group(0) if kind == "difference" and sign == "−" else m.group(0), kind))
            rows.append((r, parsed))
            table_values += [float(t.replace(",", "")) for t, kind in parsed if kind == "value"]
        for r, parsed in rows:
            row_values = [float(t.replace(",", "")) for t, kind in parsed if kind == "value"]
            for token, kind in parsed:
                x = float(token.replace(",", ""))
                pool = row_values if kind in ("row-ratio", "difference") else table_values
                if kind == "difference":   # a raw number with this sign (e.g. a paired difference), or two of the row's apart
                    if not (quoted(token, raw)
                            or any(abs(abs(a - b) - abs(x)) <= 0.5 * 10 ** -decimals(token) + 1e-9 for a in pool for b in pool)):
                        errors.append(f"{where} row {r + 1}: difference {token} is not one of two numbers of the row")
                elif kind != "value":
                    if not any(b and abs(a / b - x) <= max(0.5 * 10 ** -decimals(token), 0.02 * x) for a in pool for b in pool):
                        errors.append(f"{where} row {r + 1}: ratio {token} is not one of two numbers of the {'row' if kind == 'row-ratio' else 'table'}")
                elif not quoted(token, raw):
                    errors.append(f"{where} row {r + 1}: {token} is not in {' '.join(source)}")
    return errors, unrecorded


def main():
    args = sys.argv[1:]
    strict = "--strict" in args
    docs = [a for a in args if a != "--strict"] or [os.path.join(root, n) for n in ("README.md", "BENCHMARKS.md", "EVALUATION.md")]
    errors, unrecorded = [], []
    for doc in docs:
        e, u = check(doc, strict)
        errors += e
        unrecorded += u
    for where in unrecorded:
        print(f"unrecorded (no raw output committed): {where}")
    if strict:
        errors += [f"{w}: unrecorded numbers (--strict)" for w in unrecorded]
    for e in errors:
        print(f"error: {e}")
    print(f"{len(docs)} documents: {len(errors)} errors, {len(unrecorded)} unrecorded tables")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
