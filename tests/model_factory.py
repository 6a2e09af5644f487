"""The tiny test model: trained on the synthetic training file of `conftest.synthetic_files` and
exported to ONNX with its label map and reference profile. Run as
`python -m tests.model_factory PATH` (full install) to give the scoring-only install's tests a
model ($SIGN_MLOPS_TEST_MODEL)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

TINY_EPOCHS = 6
SYNTHETIC = {"n_train": 1440, "n_test": 480, "seed": 7}


def export_tiny_model(model, train, path: Path) -> Path:
    from sign_mlops.contract.drift import build_profile, profile_json
    from sign_mlops.sign_model.export import keras_to_onnx, model_metadata

    meta = model_metadata("test-run", train.digest, {"reference_profile": profile_json(build_profile(train.images, train.labels))})
    return keras_to_onnx(model, path, meta)


def build(path: Path) -> Path:
    from sign_mlops.sign_model.data import load_dataset
    from sign_mlops.sign_model.synthetic import synthesize_split
    from sign_mlops.sign_model.train import PRESETS, TrainConfig, train_model

    with tempfile.TemporaryDirectory() as tmp:
        train_file, _ = synthesize_split(Path(tmp), **SYNTHETIC)
        train = load_dataset(train_file)
        config = TrainConfig.from_dict({**PRESETS["smoke"].to_dict(), "epochs": TINY_EPOCHS})
        return export_tiny_model(train_model(train, config).model, train, path)


if __name__ == "__main__":
    from sign_mlops.sign_model.quiet import quiet_tensorflow

    quiet_tensorflow()
    print(build(Path(sys.argv[1])))
