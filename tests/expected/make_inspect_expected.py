"""Independent reference for `timekd inspect`: split ranges, window counts, scaler stats.

Written from docs/timekd-model.md §1 alone, with Python's csv module and numpy (no code
shared with the Rust crate). Run once from the repository root with the benchmark CSVs in
../shared/data; the output, inspect_expected.json, is committed and read by the tests.

    python3 tests/expected/make_inspect_expected.py ../shared/data > tests/expected/inspect_expected.json
"""
import csv
import json
import sys

import numpy as np

CASES = [  # (file, L, H)
    ("ETTh1.csv", 96, 96),
    ("ETTh1.csv", 96, 24),
    ("weather.csv", 96, 192),
    ("exchange_rate.csv", 96, 96),
    ("national_illness.csv", 36, 24),
]


def load(path, ett):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    names = header[1:]
    values = np.array([[float(c) for c in r[1:]] for r in body], dtype=np.float64)
    if not ett and "OT" in names:  # target moved last
        order = [i for i, n in enumerate(names) if n != "OT"] + [names.index("OT")]
        names = [names[i] for i in order]
        values = values[:, order]
    return names, values


def borders(stem, rows, L):
    if stem.startswith("ETTh") or stem.startswith("ETTm"):
        m = 30 * 24 * (4 if stem.startswith("ETTm") else 1)
        return [(0, 12 * m), (12 * m - L, 16 * m), (16 * m - L, 20 * m)]
    a, b = int(rows * 0.7), int(rows * 0.2)
    v = rows - a - b
    return [(0, a), (a - L, a + v), (rows - b - L, rows)]


def main(data_dir):
    out = []
    for name, L, H in CASES:
        stem = name[:-4]
        names, values = load(f"{data_dir}/{name}", stem.startswith("ETT"))
        splits = borders(stem, len(values), L)
        s0, e0 = splits[0]
        train = values[s0:e0]
        out.append({
            "file": name, "input_len": L, "output_len": H,
            "rows": len(values), "variables": names,
            "splits": {k: {"start": s, "end": e, "windows": e - s - L - H + 1}
                       for k, (s, e) in zip(["train", "val", "test"], splits)},
            "scaler": {"mean": train.mean(axis=0).tolist(), "std": train.std(axis=0, ddof=0).tolist()},
        })
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
