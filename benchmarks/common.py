"""Shared helpers for the benchmark scripts: input files, timing and a printed table."""

from __future__ import annotations

import gzip
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path

REAL_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sign-mnist-real" / "train.csv.gz"


def real_or_synthetic_csv(workdir: Path, rows: int = 27455) -> tuple[Path, str]:
    """An uncompressed Kaggle-format CSV: the real training file when present, else synthetic."""
    target = workdir / "train.csv"
    if REAL_TRAIN.exists():
        with gzip.open(REAL_TRAIN, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return target, f"real Kaggle training file ({REAL_TRAIN.name}, 27,455 rows)"
    from sign_mlops.sign_model.synthetic import generate_images, write_kaggle_csv

    write_kaggle_csv(target, *generate_images(rows, seed=0))
    return target, f"synthetic file ({rows} rows; ../shared not present)"


def real_or_synthetic_dataset():
    """The file of `real_or_synthetic_csv` loaded as a SignDataset (its temporary copy removed), and what it is."""
    import tempfile

    from sign_mlops.sign_model.data import load_dataset

    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        csv_path, source = real_or_synthetic_csv(Path(tmp))
        return load_dataset(csv_path), source


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


def preset_architectures() -> dict[str, tuple[str, int]]:
    """name -> (classifier architecture, hand detector width; 0 = none), as train_config's presets."""
    return {"lite": ("bn_cnn16_late", 4), "default": ("bn_cnn", 16), "seed": ("seed_cnn", 0)}


def build_untrained_onnx(arch: str, images, labels, workdir: Path) -> tuple[Path, dict[str, str]]:
    """An untrained model of preset `arch` (fixed seed; speed does not depend on the weights'
    values) exported to ONNX as the pipeline does, with a drift reference profile of the given
    rows; and its metadata (for quantising it the same way)."""
    from sign_mlops.contract.drift import build_profile, profile_json
    from sign_mlops.sign_model import export
    from sign_mlops.sign_model.evaluate import predict_probabilities
    from sign_mlops.sign_model.handedness import build_hand_detector, with_hand_detector
    from sign_mlops.sign_model.model import build_model
    from sign_mlops.sign_model.train import set_seeds

    classifier, detector = preset_architectures()[arch]
    set_seeds(0)
    model = build_model(classifier, 0.3)
    if detector:
        model = with_hand_detector(build_hand_detector(detector), model)
    probs = predict_probabilities(model, images)
    meta = export.model_metadata(None, None, {"reference_profile": profile_json(
        build_profile(images, labels, confidences=probs.max(axis=1)))})
    return export.keras_to_onnx(model, workdir / f"{arch}.onnx", meta), meta
