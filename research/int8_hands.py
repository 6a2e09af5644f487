"""Benchmark: INT8 for models with the left-hand detector, the switch in float against quantised. One table.

The pipeline calibrates INT8 on 1,024 training rows, and the Kaggle rows are all right hands. A
hand switch quantised with them never saw "left" and stays shut: left-handed signers reach the
classifier unmirrored. `sign_mlops.sign_model.export.quantize_int8` therefore keeps the detector, the switch
and the mirror in float and quantises the classifier. This scores both ways, side by side, in one
process: "switch quantised" rebuilds the old way by swapping `export.hand_switch_nodes` for one
that keeps nothing in float.

For each model: grouped-holdout accuracy on the images as given (right hands) and mirrored (left
hands), the robustness suite's moderate mean and worst kind, onnxruntime images/s (batches of
256, best of 3) and the batch scorer's rows/s on the whole 27,455-row file (best of 3).

Data: the Pareto study's grouped holdout of the real Kaggle training file (synthetic when
../shared is absent); calibration rows from its fit part, as the study draws them. Models: ONNX
files trained on the fit part only (a sweep trial's outputs/runs/<run id>/onnx/model.onnx).

    sign-mlops sweep research/sweeps/pareto.yaml --train FIT.csv --test HOLDOUT.csv   # docs/research/pareto.md
    .venv/bin/python research/int8_hands.py /tmp/keep/bn_cnn16_late-camera+hands4-0.onnx
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table, real_or_synthetic_csv  # noqa: E402
from research.holdout import Holdout, holdout_split, kept_model_paths  # noqa: E402


def images_per_second(path: Path, images: np.ndarray, batch_size: int = 256, repeats: int = 2) -> float:
    """onnxruntime alone (no CSV): images/s over `images`, best of `repeats`."""
    from sign_mlops.sign_model.export import onnx_session
    from sign_mlops.sign_model.model import INPUT_NAME

    session = onnx_session(path)
    x = images.reshape(-1, 28, 28, 1).astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(x), batch_size):
            session.run(None, {INPUT_NAME: x[i : i + batch_size]})
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def holdout_and_calibration(csv_path: Path, source: str) -> tuple[Holdout, np.ndarray]:
    """The study's grouped holdout, and 1,024 rows of its fit part drawn as the retired model_pareto.run_trial did
    draws them, from one reading of the file."""
    from sign_mlops.sign_model.data import load_dataset

    full = load_dataset(csv_path)
    fit, held = holdout_split(full.images, full.labels)
    calibration = full.images[fit][np.random.default_rng(0).choice(len(fit), 1024, replace=False)]
    return Holdout(full.images[held], full.labels[held], source), calibration


def quantised(fp32: Path, out: Path, calibration: np.ndarray, switch_in_float: bool) -> Path:
    from sign_mlops.sign_model import export

    keep_in_float = export.hand_switch_nodes
    if not switch_in_float:
        export.hand_switch_nodes = lambda model: []
    try:
        return export.quantize_int8(fp32, out, calibration, export.read_metadata(fp32))
    finally:
        export.hand_switch_nodes = keep_in_float


def measure(path: Path, holdout, csv_path: Path) -> list[str]:
    from sign_mlops.sign_model import export
    from sign_mlops.sign_model.robustness import robustness_report

    predict = export.onnx_predictor(path)
    right = (predict(holdout.images).argmax(1) == holdout.true_index).mean()
    left = (predict(holdout.images[:, :, ::-1]).argmax(1) == holdout.true_index).mean()
    report = robustness_report(predict, holdout.images, holdout.true_index, seed=0)
    return [f"{100 * right:.2f}", f"{100 * left:.2f}", f"{100 * report.mean:.2f}",
            f"{report.worst_kind} {100 * report.worst:.1f}",
            f"{images_per_second(path, holdout.images, repeats=3):,.0f}",
            f"{export.scorer_rows_per_second(path, csv_path):,.0f}"]


def main() -> None:
    from sign_mlops.sign_model.quiet import quiet_tensorflow

    quiet_tensorflow()
    models = kept_model_paths(__doc__)
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-hands-") as tmp:
        csv_path, source = real_or_synthetic_csv(Path(tmp))
        holdout, calibration = holdout_and_calibration(csv_path, source)
        for fp32 in models:
            variants = {"fp32": fp32,
                        "INT8, switch quantised (before)": quantised(fp32, Path(tmp) / f"{fp32.stem}.old.onnx",
                                                                     calibration, switch_in_float=False),
                        "INT8, switch in float (now)": quantised(fp32, Path(tmp) / f"{fp32.stem}.int8.onnx",
                                                                 calibration, switch_in_float=True)}
            for name, path in variants.items():
                rows.append([fp32.stem, name, *measure(path, holdout, csv_path)])
                print(" | ".join(rows[-1]), flush=True)
    print_table(f"INT8 with the left-hand detector ({source}; grouped holdout {len(holdout.labels):,} rows; "
                "scorer on the whole file; this machine)",
                ["model", "variant", "right hands %", "left hands %", "robust mean %", "worst kind %",
                 "onnxruntime images/s", "scorer rows/s"], rows)


if __name__ == "__main__":
    main()
