"""Benchmark: how often the INT8 gate's speed decision flips on the same two files, before and after.

The gate registers INT8 only when it scores faster than fp32 by Int8Bounds.min_speedup (1.05).
Both procedures run on the same fp32 + INT8 files and the same CSV, the procedures alternating
(old first in even repetitions, new first in odd ones) so both meet the same machine:
- old: best of 3 whole-file scorer runs of fp32, then best of 3 of INT8 (the gate until
  2026-12), accepted when INT8/fp32 >= 1.05; 6 runs per decision;
- new: sign_mlops.sign_model.export.measure_speed_pairs + judge_speedup, 6 alternating pairs,
  accepted when every pair but one reaches 1.05; 12 runs per decision.
Only the speed part of the gate is measured: accuracy and robustness are deterministic.

Models (built untrained: speed does not depend on the weights' values; fixed seed), exported and
quantised as the pipeline does (calibration on 1,024 rows, a drift reference profile):
`lite` (bn_cnn16_late behind the width-4 hand detector; research/int8.md measured its INT8 at
0.96-1.06x fp32 on the scorer, near the bar), `default` (bn_cnn behind the width-16 detector,
1.47x) and `seed` (the seed notebook's CNN). Or --model DIR with model.onnx and model.int8.onnx
(a run's outputs/runs/<run id>/onnx). Scoring CSV: 7,172 rows (the size of Kaggle's test file)
of the real training file from ../shared, not those used for calibration; synthetic otherwise.

    .venv/bin/python benchmarks/int8_gate.py [--arch lite --arch seed] [--repeats 10] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import REAL_TRAIN, build_untrained_onnx, preset_architectures, print_table  # noqa: E402

TEST_ROWS = 7172  # Kaggle's sign_mnist_test.csv
CALIBRATION_ROWS = 1024
PROFILE_ROWS = 4096
OLD_REPEATS = 3


def load_rows():
    """Real Kaggle rows (images, labels) when ../shared has them, else synthetic; and what they are."""
    if REAL_TRAIN.exists():
        from sign_mlops.sign_model.data import load_dataset

        data = load_dataset(REAL_TRAIN)
        return data.images, data.labels, f"real Kaggle rows ({REAL_TRAIN.name})"
    from sign_mlops.sign_model.synthetic import generate_images

    images, labels = generate_images(TEST_ROWS + PROFILE_ROWS, seed=0)
    return images, labels, "synthetic rows (../shared not present)"


def build_pair(arch: str, images: np.ndarray, labels: np.ndarray, workdir: Path) -> tuple[Path, Path]:
    """An untrained model of `arch` exported to ONNX and quantised as the pipeline does."""
    from sign_mlops.sign_model import export

    fp32, meta = build_untrained_onnx(arch, images, labels, workdir)
    int8 = export.quantize_int8(fp32, workdir / f"{arch}.int8.onnx", images[:CALIBRATION_ROWS], meta)
    return fp32, int8


def old_decision(fp32: Path, int8: Path, csv_path: Path, out: Path, min_speedup: float) -> tuple[float, bool]:
    """The gate until 2026-12: fp32 best of 3, then INT8 best of 3 (each model loaded afresh)."""
    from sign_mlops.serving.model import load_onnx
    from sign_mlops.serving.scorer import score_file

    def best_of_3(path: Path) -> float:
        model = load_onnx(path)
        return max(float(score_file(csv_path, model, out, overwrite=True).rows_per_second)
                   for _ in range(OLD_REPEATS))

    fp32_speed = best_of_3(fp32)
    ratio = best_of_3(int8) / fp32_speed
    return ratio, ratio >= min_speedup


def new_decision(fp32: Path, int8: Path, csv_path: Path, out: Path, min_speedup: float, pairs: int):
    """The gate now (sign_mlops.sign_model.export.judge_int8's speed part)."""
    from sign_mlops.sign_model import export

    measured = export.measure_speed_pairs(export.scorer_timer(fp32, csv_path, out / "fp32"),
                                          export.scorer_timer(int8, csv_path, out / "int8"), pairs)
    return export.judge_speedup(measured, min_speedup)


def compare(name: str, fp32: Path, int8: Path, csv_path: Path, repeats: int, workdir: Path) -> list[list[str]]:
    """Both procedures `repeats` times, alternating; one table row per procedure."""
    from sign_mlops.sign_model.export import Int8Bounds

    bounds = Int8Bounds()
    old: list[tuple[float, bool]] = []
    new = []
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    for i in range(repeats):
        for which in (("old", "new") if i % 2 == 0 else ("new", "old")):
            started = time.perf_counter()
            if which == "old":
                old.append(old_decision(fp32, int8, csv_path, workdir / "out", bounds.min_speedup))
            else:
                new.append(new_decision(fp32, int8, csv_path, workdir / "out", bounds.min_speedup,
                                        bounds.speed_pairs))
            seconds[which].append(time.perf_counter() - started)
        print(f"  {name} {i + 1}/{repeats}: old x{old[-1][0]:.2f} {'accept' if old[-1][1] else 'refuse'}; "
              f"new x{new[-1].median:.2f} (low x{new[-1].low:.2f}, pairs "
              f"{' '.join(f'{r:.2f}' for r in new[-1].ratios)}) {'accept' if new[-1].accepted else 'refuse'}",
              flush=True)
    pair_ratios = [r for speed in new for r in speed.ratios]
    return [_row(name, "old: best of 3 each, in turn", 2 * OLD_REPEATS, seconds["old"],
                 [r for r, _ in old], [a for _, a in old], "-"),
            _row(name, f"new: {bounds.speed_pairs} alternating pairs", 2 * bounds.speed_pairs, seconds["new"],
                 [s.median for s in new], [s.accepted for s in new],
                 f"{min(pair_ratios):.2f} / {statistics.median(pair_ratios):.2f} / {max(pair_ratios):.2f}")]


def _row(model: str, procedure: str, runs: int, seconds: list[float], speedups: list[float], accepted: list[bool],
         pairs: str) -> list[str]:
    majority = Counter(accepted).most_common(1)[0][1]
    return [model, procedure, str(runs), f"{statistics.median(seconds):.1f}",
            f"{min(speedups):.2f} / {statistics.median(speedups):.2f} / {max(speedups):.2f}", pairs,
            str(sum(accepted)), str(len(accepted) - sum(accepted)), str(len(accepted) - majority)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=sorted(preset_architectures()),
                        help="model(s) to build untrained (default: lite and seed, ~10 min on 2 cores)")
    parser.add_argument("--model", type=Path, help="a folder with model.onnx and model.int8.onnx instead")
    parser.add_argument("--repeats", type=int, default=10, help="decisions per procedure and model")
    args = parser.parse_args()

    from sign_mlops.sign_model.quiet import quiet_tensorflow
    from sign_mlops.sign_model.synthetic import write_kaggle_csv

    quiet_tensorflow()
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    images, labels, source = load_rows()
    with tempfile.TemporaryDirectory(prefix="int8-gate-bench-") as tmp:
        workdir = Path(tmp)
        csv_path = write_kaggle_csv(workdir / "test.csv", images[-TEST_ROWS:], labels[-TEST_ROWS:])
        rest, rest_labels = images[:-TEST_ROWS][:PROFILE_ROWS], labels[:-TEST_ROWS][:PROFILE_ROWS]
        if args.model:
            models = {args.model.name: (args.model / "model.onnx", args.model / "model.int8.onnx")}
        else:
            models = {arch: build_pair(arch, rest, rest_labels, workdir) for arch in args.arch or ["lite", "seed"]}
        table = []
        for name, (fp32, int8) in models.items():
            table += compare(name, fp32, int8, csv_path, args.repeats, workdir)
    print_table(f"INT8 speed decision, {args.repeats} decisions per procedure on the same files; scoring CSV "
                f"{TEST_ROWS:,} {source}; bar x1.05; {time.perf_counter() - started:.0f} s in all; "
                f"{os.cpu_count()} cores, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
                ["model", "procedure", "runs", "s/decision", "speed-up min / median / max", "single pairs min / "
                 "median / max", "accepted", "refused", "differ from majority"], table)


if __name__ == "__main__":
    main()
