"""Benchmark: the scorer's CSV reading, numpy for digit-only rows vs pandas' parser, one table.

For small models the scorer is bound by parsing, not by onnxruntime (issue 13: a 5.5 M-MAC
model scored ~9-11 k rows/s while onnxruntime alone ran it at ~40 k). Both readings run in the
same process on the same file, alternating, best of --repeats:
1. reading only (sign_mlops.serving.reader.iter_chunks), rows/s;
2. the whole scorer (sign_mlops.serving.scorer.score_file, its summary's rows_per_second) with models of
   three sizes (fixed random weights: speed does not depend on training).
Input: the 27,455-row Kaggle training file from ../shared (synthetic of the same size otherwise).

    .venv/bin/python benchmarks/reader.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table, real_or_synthetic_csv  # noqa: E402

MODELS = ("tiny_cnn", "bn_cnn16_late", "bn_cnn")


@contextmanager
def pandas_only():
    """The reader as it was before the numpy path: pandas parses every chunk."""
    from sign_mlops.serving import reader

    original = reader._read_small_numbers
    reader._read_small_numbers = lambda *args: None
    try:
        yield
    finally:
        reader._read_small_numbers = original


READINGS = {"pandas (before)": pandas_only, "numpy (now)": nullcontext}


def best_rates(run, rows: int, repeats: int) -> list[str]:
    """Best rows/s of each reading, the readings alternating within every repeat."""
    rates: dict[str, list[float]] = {name: [] for name in READINGS}
    for _ in range(repeats):
        for name, reading in READINGS.items():
            with reading():
                rates[name].append(run(rows))
    return [f"{max(values):,.0f}" for values in rates.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from sign_mlops.serving.model import load_onnx
    from sign_mlops.serving.reader import iter_chunks
    from sign_mlops.serving.scorer import score_file
    from sign_mlops.sign_model import export
    from sign_mlops.sign_model.model import build_model
    from sign_mlops.sign_model.quiet import quiet_tensorflow
    from sign_mlops.sign_model.train import set_seeds

    quiet_tensorflow()
    with tempfile.TemporaryDirectory(prefix="reader-bench-") as tmp:
        workdir = Path(tmp)
        source_path, source = real_or_synthetic_csv(workdir)
        csv_path = workdir / "input.csv"  # uncompressed: gzip would be measured too
        opener = gzip.open if str(source_path).endswith(".gz") else open
        with opener(source_path, "rb") as src, open(csv_path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        rows = sum(chunk.rows_in for chunk in iter_chunks(csv_path, 4096))

        def read_only(n: int) -> float:
            started = time.perf_counter()
            assert sum(chunk.rows_in for chunk in iter_chunks(csv_path, 4096)) == n
            return n / (time.perf_counter() - started)

        table = [["reading only", "-", *best_rates(read_only, rows, args.repeats)]]
        set_seeds(0)
        for name in MODELS:
            onnx_path = export.keras_to_onnx(build_model(name, 0.1), workdir / f"{name}.onnx",
                                             export.model_metadata(None, None))
            model = load_onnx(onnx_path)

            def whole(n: int) -> float:
                summary = score_file(csv_path, model, workdir / "out", overwrite=True)
                assert summary["rows_in"] == n
                return summary["rows_per_second"]

            table.append([f"scorer, {name}", f"{export.onnx_macs(onnx_path) / 1e6:.2f}",
                          *best_rates(whole, rows, args.repeats)])
        for row in table:
            before, now = (float(v.replace(",", "")) for v in row[2:4])
            row.append(f"{now / before:.2f}x")
        print_table(f"CSV reading, {source} ({rows:,} rows), best of {args.repeats}, rows/s",
                    ["what", "M MACs", *READINGS, "ratio now / before"], table)


if __name__ == "__main__":
    main()
