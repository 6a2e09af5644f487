"""Benchmark: what folding the input scaling into the first convolution buys, one table.

Every model divides the raw 0-255 pixels by 255 inside its graph (the ONNX contract). tf2onnx
exports that as a Mul over every input pixel, which onnxruntime runs as a separate pass, once
per sub-network that rescales (the classifier, and the left-hand detector on the image and on
its mirror image). `sign_mlops.sign_model.export.fold_input_scaling` moves the 1/255 into the weights of the
convolutions that read it. For the default and the `lite` models (fixed random weights: speed
does not depend on training), both exports in the same process, alternating:
1. onnxruntime alone, images/s (batch 256, the scorer's, best of --repeats);
2. the whole batch scorer (sign_mlops.serving.scorer.score_file, the summary's rows_per_second) on the
   27,455-row Kaggle training file from ../shared (synthetic of the same size otherwise).

    .venv/bin/python research/inference_graph.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table, real_or_synthetic_csv  # noqa: E402

MODELS = {"default (bn_cnn + detector 16)": ("bn_cnn", 16), "lite (bn_cnn16_late + detector 4)": ("bn_cnn16_late", 4)}
BATCH = 256


def export_both(architecture: str, detector_width: int, workdir: Path) -> dict[str, Path]:
    """The same Keras inference model exported with the Mul kept and with it folded."""
    from sign_mlops.sign_model.export import keras_to_onnx, model_metadata
    from sign_mlops.sign_model.handedness import build_hand_detector, with_hand_detector
    from sign_mlops.sign_model.model import build_model
    from sign_mlops.sign_model.train import set_seeds

    set_seeds(0)
    model = with_hand_detector(build_hand_detector(detector_width), build_model(architecture, 0.3))
    meta = model_metadata("benchmark", None)
    return {fold: keras_to_onnx(model, workdir / f"{architecture}-{fold}.onnx", meta, fold_scaling=fold == "folded")
            for fold in ("kept", "folded")}


def onnxruntime_images_per_second(paths: dict[str, Path], images, repeats: int) -> dict[str, float]:
    from sign_mlops.serving.model import load_onnx

    models = {name: load_onnx(path) for name, path in paths.items()}
    best = dict.fromkeys(models, float("inf"))
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            for i in range(0, len(images), BATCH):
                model.predict(images[i : i + BATCH])
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(images) / seconds for name, seconds in best.items()}


def scorer_rows_per_second(paths: dict[str, Path], csv_path: Path, repeats: int) -> dict[str, float]:
    from sign_mlops.serving.model import load_onnx
    from sign_mlops.serving.scorer import score_file

    models = {name: load_onnx(path) for name, path in paths.items()}
    best = dict.fromkeys(models, 0.0)
    with tempfile.TemporaryDirectory(prefix="fold-out-") as out:
        for _ in range(repeats):
            for name, model in models.items():
                summary = score_file(csv_path, model, Path(out), overwrite=True)
                best[name] = max(best[name], float(summary["rows_per_second"]))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np

    from sign_mlops.sign_model.export import onnx_macs
    from sign_mlops.sign_model.quiet import quiet_tensorflow

    quiet_tensorflow()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fold-") as tmp:
        workdir = Path(tmp)
        csv_path, source = real_or_synthetic_csv(workdir)
        images = np.random.default_rng(0).integers(0, 256, (16384, 784)).astype(np.float32)
        for label, (architecture, width) in MODELS.items():
            paths = export_both(architecture, width, workdir)
            engine = onnxruntime_images_per_second(paths, images, args.repeats)
            scorer = scorer_rows_per_second(paths, csv_path, max(3, args.repeats // 2))
            macs = onnx_macs(paths["folded"]) / 1e6
            for fold in ("kept", "folded"):
                rows.append([label, f"{macs:.2f}", fold, f"{engine[fold]:,.0f}", f"{scorer[fold]:,.0f}"])
            rows.append([label, "", "ratio folded / kept", f"{engine['folded'] / engine['kept']:.2f}x",
                         f"{scorer['folded'] / scorer['kept']:.2f}x"])
    print_table(f"Input scaling kept as a Mul or folded into the convolutions; {source}",
                ["model", "M MACs", "1/255", "onnxruntime images/s", "scorer rows/s"], rows)


if __name__ == "__main__":
    main()
