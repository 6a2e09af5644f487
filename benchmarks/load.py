"""Benchmark: the CSV loader against the seed notebook's row-by-row loader, same file, same run.

    python benchmarks/load.py
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REAL_TRAIN, best_of, print_table, real_or_synthetic_csv  # noqa: E402
from sign_mlops.sign_model.data import iter_chunks, load_dataset  # noqa: E402


def seed_get_data(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The seed notebook's loader: csv.reader, one row at a time, np.array_split per image."""
    images, labels = [], []
    with open(path) as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            labels.append(row[0])
            images.append(np.array_split(row[1:], 28))
    return np.array(images).astype(float), np.array(labels).astype(float)


def stream_all(path: Path) -> int:
    return sum(len(chunk.line_numbers) for chunk in iter_chunks(path))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, what = real_or_synthetic_csv(Path(tmp))
        seed_images, seed_labels = seed_get_data(csv_path)
        ours = load_dataset(csv_path)
        assert np.array_equal(seed_images.astype(np.uint8), ours.images) and np.array_equal(seed_labels, ours.labels)
        timings = {"seed row-by-row loader (csv.reader + np.array_split)": best_of(lambda: seed_get_data(csv_path), 1),
                   "sign_mlops.sign_model.data.load_dataset (.csv, strict)": best_of(lambda: load_dataset(csv_path)),
                   "sign_mlops.sign_model.data.iter_chunks (.csv, streaming, row-tolerant)": best_of(lambda: stream_all(csv_path))}
        if REAL_TRAIN.exists():
            timings["sign_mlops.sign_model.data.load_dataset (.csv.gz as shipped)"] = best_of(lambda: load_dataset(REAL_TRAIN))
    base = timings["seed row-by-row loader (csv.reader + np.array_split)"]
    rows = [[name, f"{sec:.2f}", f"{len(ours) / sec:,.0f}", f"{base / sec:.1f}x"] for name, sec in timings.items()]
    print_table(f"Loading {what} (2-core machine; best of 3, seed once); identical arrays checked",
                ["loader", "seconds", "rows/s", "vs seed"], rows)


if __name__ == "__main__":
    main()
