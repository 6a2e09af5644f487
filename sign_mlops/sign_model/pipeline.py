"""The pipeline's steps as plain functions over paths and run ids (no Prefect here).

`flows/training.py` wraps each in a thin Prefect task; tests and the CLI can call them
directly. Every step re-opens the MLflow run by id and logs what it produced.
"""

from __future__ import annotations

import functools
import json
import logging
import platform
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np

from sign_mlops.contract.paths import TEST_NAMES, TRAIN_NAMES, Paths, find_kaggle_file
from sign_mlops.sign_model import tracking
from sign_mlops.sign_model.data import SignDataset, file_digest, load_dataset
from sign_mlops.sign_model.results import (
    DataFiles,
    Evaluated,
    Exported,
    Int8Report,
    Promotion,
    Registered,
    Robustness,
    RunRecord,
    Trained,
    Validated,
)
from sign_mlops.sign_model.train_config import TrainConfig

if TYPE_CHECKING:
    from sign_mlops.sign_model import registry as registry_module
    from sign_mlops.sign_model.registry import GatePolicy

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- inputs read once per run
# The steps run one after another in one process (the flow's tasks), and three of them need the
# test split and the trained model: each is read once and kept while its file is unchanged
# (keyed by the sha256 computed once in DataFiles, and by the model file's path and mtime).


@functools.lru_cache(maxsize=2)
def _dataset_once(path: str, sha256: str) -> SignDataset:
    dataset = load_dataset(path)
    dataset.images.flags.writeable = False  # shared by the steps: none may change it
    dataset.labels.flags.writeable = False
    return dataset


def train_split(files: DataFiles) -> SignDataset:
    return _dataset_once(files.train, files.train_sha256)


def test_split(files: DataFiles) -> SignDataset:
    return _dataset_once(files.test, files.test_sha256)


@functools.lru_cache(maxsize=1)
def _keras_once(path: str, mtime_ns: int) -> Any:
    import keras

    return keras.models.load_model(path)


def trained_model(trained: Trained) -> Any:
    """The trained Keras model (loaded once; reloaded when the file changes)."""
    return _keras_once(trained.model_path, Path(trained.model_path).stat().st_mtime_ns)


class ValidationFailed(RuntimeError):
    """The data validation gate found errors; nothing was trained."""


class RegistrationFailed(RuntimeError):
    """The model could not be registered; its files are kept locally (the message says where)."""


def data_files(train: Path | str, test: Path | str, synthetic: bool) -> DataFiles:
    return DataFiles(str(train), str(test), synthetic, file_digest(train), file_digest(test))


def resolve_data(paths: Paths, train: Path | None = None, test: Path | None = None,
                 synthetic_rows: tuple[int, int] = (4800, 1200)) -> DataFiles:
    """Given files win; else Kaggle files in data/; else synthetic Kaggle-format data (and say so)."""
    train = train or find_kaggle_file(paths.data_dir, TRAIN_NAMES)
    test = test or find_kaggle_file(paths.data_dir, TEST_NAMES)
    if train and test:
        return data_files(train, test, synthetic=False)
    if train or test:
        raise FileNotFoundError(
            f"Found only one of the Kaggle files in {paths.data_dir} (train={train}, test={test}); "
            f"put both sign_mnist_train.csv and sign_mnist_test.csv there, or pass --train and --test.")
    from sign_mlops.sign_model.synthetic import synthesize_split

    existing = (paths.synthetic_dir / TRAIN_NAMES[0], paths.synthetic_dir / TEST_NAMES[0])
    if not all(p.is_file() for p in existing):
        log.info("No Kaggle files in %s: generating synthetic Kaggle-format data in %s", paths.data_dir, paths.synthetic_dir)
        existing = synthesize_split(paths.synthetic_dir, *synthetic_rows)
    else:
        log.info("No Kaggle files in %s: using synthetic data in %s", paths.data_dir, paths.synthetic_dir)
    return data_files(existing[0], existing[1], synthetic=True)


def retrain_needed(files: DataFiles, config: TrainConfig, experiment: str, force: bool = False) -> tuple[bool, str]:
    """Skip retraining when data digest and config equal the champion's (unless forced)."""
    from sign_mlops.sign_model.registry import champion_matches

    if force:
        return True, "forced"
    tracking.configure(experiment)
    same, reason = champion_matches(files.train_sha256, config.to_dict())
    return (not same), reason


def run_name(preset: str, files: DataFiles, when: str) -> str:
    """The one name a training run has in MLflow and in Prefect: train-<preset>-<data sha8>-<when>."""
    return f"train-{preset}-{files.train_sha256[:8]}-{when}"


def start_run(files: DataFiles, config: TrainConfig, experiment: str, run_name: str | None = None,
              extra_tags: dict[str, str] | None = None) -> str:
    """Open the MLflow run for this pipeline: params, tags, data digests; returns its id."""
    tracking.configure(experiment)
    tags = {"train_sha256": files.train_sha256, "test_sha256": files.test_sha256,
            "synthetic_data": str(files.synthetic).lower(), "python": platform.python_version(), **(extra_tags or {})}
    commit = tracking.git_commit()
    if commit:
        tags["git_commit"] = commit
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_params(config.to_dict())
        mlflow.log_params({"train_file": files.train, "test_file": files.test})
        tracking.log_json(config.to_dict(), "config/train_config.json")
        return run.info.run_id


def validate_step(run_id: str, files: DataFiles, report_path: Path) -> Validated:
    """Validation gate; logs the report; raises ValidationFailed (run marked FAILED) on errors."""
    from sign_mlops.sign_model.validate import validate_files

    report = validate_files(Path(files.train), Path(files.test))
    report.write(report_path)
    with tracking.resume_run(run_id):
        mlflow.log_artifact(str(report_path), "validation")
        mlflow.set_tag("validation_passed", str(report.passed).lower())
        for key, value in report.stats.items():
            mlflow.log_metric(f"data/{key}", value)
    if not report.passed:
        with tracking.no_run_links():  # the run's link was printed when it was opened
            mlflow.MlflowClient().set_terminated(run_id, status="FAILED")
        raise ValidationFailed(f"{report.summary()} (full report: {report_path})")
    return Validated(True, str(report_path), tuple(w.message for w in report.warnings))


def explore_step(run_id: str, files: DataFiles, out_dir: Path) -> list[str]:
    """Exploration pictures, saved and logged."""
    from sign_mlops.sign_model.explore import explore

    paths = explore(train_split(files), test_split(files), out_dir)
    with tracking.resume_run(run_id):
        for path in paths:
            mlflow.log_artifact(str(path), "figures")
    return [str(p) for p in paths]


def train_step(run_id: str, files: DataFiles, config: TrainConfig, out_dir: Path) -> Trained:
    """Train on the training file (grouped validation inside); log curves and the Keras model."""
    from sign_mlops.sign_model.train import epoch_progress, save_training_outputs, train_model

    train = train_split(files)
    with tracking.resume_run(run_id):
        tracking.log_dataset(train.images, train.labels, files.train, train.digest, "train", "training")
        # MLflow's own Keras callback logs train/loss, train/accuracy, val/loss, val/accuracy per
        # epoch (step = epoch, from 0); one progress line per epoch goes to the console/run log.
        result = train_model(train, config, callbacks=[tracking.epoch_metrics_callback(), epoch_progress(config.epochs)])
        mlflow.flush_async_logging()
        saved = save_training_outputs(result, config, out_dir)
        mlflow.log_metrics({"train/best_epoch": result.best_epoch, "val/best_accuracy": result.val_accuracy,
                            "val/best_loss": result.val_loss, "train/seconds": result.train_seconds,
                            "train/rows": result.train_rows, "val/rows": result.val_rows,
                            "train/epochs_run": len(result.history["loss"]), "model/params": result.model.count_params()})
        if result.hand is not None:  # the left-hand detector's validation check, and whether it is in the model
            mlflow.log_metrics(result.hand.metrics())
            mlflow.set_tag("hand_detector", result.hand.reason)
        mlflow.log_artifact(str(saved["history"]), "training")
        model_uri = _log_keras_model(result.model, train.images[:2])
    return Trained(str(saved["model"]), str(saved["history"]), model_uri, result.val_accuracy, result.train_seconds,
                   result.hand.reason if result.hand is not None else "")


def _log_keras_model(model, example: np.ndarray) -> str:
    import keras
    import tensorflow as tf
    from mlflow.models import infer_signature

    x = example[..., None].astype(np.float32)
    signature = infer_signature(x, np.asarray(model.predict(x, verbose=0)))
    # No input_example here: mlflow.keras (3.17) fails to create its folder first (mlflow/mlflow#16183,
    # open); the ONNX models, which the scorer loads, carry the example.
    info = mlflow.keras.log_model(model, name="keras_model", signature=signature,
                                  pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"])
    return info.model_uri


def evaluate_step(run_id: str, files: DataFiles, trained: Trained, out_dir: Path) -> Evaluated:
    """Test-split metrics and the seed's analysis pictures, logged to the run."""

    from sign_mlops.sign_model.evaluate import evaluate_model, save_evaluation_outputs

    test, model = test_split(files), trained_model(trained)
    evaluation = evaluate_model(model, test)
    history = json.loads(Path(trained.history_path).read_text())["history"]
    outputs = save_evaluation_outputs(evaluation, test, history, out_dir)
    summary = {"overall": evaluation.overall, "per_class": evaluation.per_class}
    with tracking.resume_run(run_id):
        tracking.log_dataset(test.images, test.labels, files.test, test.digest, "test", "evaluation")
        mlflow.log_metrics(evaluation.metrics())
        for path in outputs.values():  # pictures at the run's root: MLflow's compare view shows root files only
            mlflow.log_artifact(str(path), None if path.suffix == ".png" else "evaluation")
        tracking.log_json(summary, "evaluation/metrics.json")
        mlflow.set_tag("test_accuracy", f"{evaluation.overall['accuracy']:.6f}")
    overall = evaluation.overall
    return Evaluated(float(overall["accuracy"]), float(overall["macro_f1"]), int(overall["errors"]), int(overall["rows"]),
                     evaluation.confidence)


def robustness_step(run_id: str, files: DataFiles, trained: Trained, out_dir: Path) -> Robustness:
    """The robustness suite on the test split: metrics robust/<kind>/<severity>, a table, a heat map."""

    from sign_mlops.sign_model import robustness
    from sign_mlops.sign_model.evaluate import predict_probabilities
    from sign_mlops.sign_model.train import to_indices

    test, model = test_split(files), trained_model(trained)
    report = robustness.robustness_report(lambda x: predict_probabilities(model, x, batch_size=1024),
                                          test.images, to_indices(test.labels))
    table = robustness.write_table(report, out_dir / "robustness.csv")
    figure = robustness.plot_heatmap(report)
    figure.savefig(out_dir / "robustness_heatmap.png", dpi=110)
    with tracking.resume_run(run_id):
        mlflow.log_metrics(report.metrics())
        mlflow.log_artifact(str(table), "robustness")
        mlflow.log_figure(figure, "robustness_heatmap.png")  # root: the compare view lines it up across runs
        tracking.log_json(report.to_dict(), "robustness/report.json")
        mlflow.set_tags({"robust_mean": f"{report.mean:.6f}", "robust_worst": f"{report.worst:.6f}",
                         "robust_worst_kind": report.worst_kind})
    from sign_mlops.sign_model.explore import plt

    plt.close(figure)
    log.info("robustness: moderate mean %.4f, worst %s %.4f (%d rows)", report.mean, report.worst_kind, report.worst,
             report.rows)
    return Robustness(report.mean, report.worst, report.worst_kind, report.clean_accuracy, report.rows, str(table),
                      report.errors_flagged)


def export_step(run_id: str, files: DataFiles, trained: Trained, out_dir: Path, int8: bool = True) -> Exported:
    """ONNX export + parity proof on the full test split (+ INT8 variant); logs both models."""

    from sign_mlops.contract.drift import build_profile, profile_json
    from sign_mlops.sign_model import export
    from sign_mlops.sign_model.evaluate import predict_probabilities

    train, test, model = train_split(files), test_split(files), trained_model(trained)
    test_probs = predict_probabilities(model, test.images)
    # drift reference: training-image features, class shares, and confidence on unseen (test) rows
    profile = build_profile(train.images, train.labels, confidences=test_probs.max(axis=1))
    metadata = export.model_metadata(run_id, train.digest, {"reference_profile": profile_json(profile)})
    fp32_path = export.keras_to_onnx(model, out_dir / "model.onnx", metadata)
    parity = export.check_parity(test_probs, fp32_path, test.images)
    with tracking.resume_run(run_id):
        mlflow.log_metrics(parity.metrics())
        mlflow.set_tag("parity_passed", str(parity.passed).lower())
        if not parity.passed:
            log.error("ONNX parity failed: agreement %.4f, max |dp| %.2e", parity.argmax_agreement, parity.max_abs_delta)
            return Exported(str(fp32_path), file_digest(fp32_path), parity)
        onnx_uri = _log_onnx_model(fp32_path, "onnx_model", test.images[:2])
        int8_result = _int8_variant(fp32_path, out_dir, train, test, metadata, Path(files.test)) if int8 else None
    return Exported(str(fp32_path), file_digest(fp32_path), parity, onnx_uri, int8_result)


def _int8_variant(fp32_path: Path, out_dir: Path, train, test, metadata: dict[str, str], test_csv: Path) -> Int8Report:
    from sign_mlops.sign_model import export
    from sign_mlops.sign_model.train import to_indices

    rng = np.random.default_rng(0)
    calibration = train.images[rng.choice(len(train), size=min(len(train), 1024), replace=False)]
    int8_path = export.quantize_int8(fp32_path, out_dir / "model.int8.onnx", calibration, metadata)
    report = export.judge_int8(fp32_path, int8_path, test.images, to_indices(test.labels), test_csv)
    mlflow.log_metrics(report.metrics())
    for step, pair in enumerate(report.pair_metrics()):  # the speed gate's evidence, pair by pair
        mlflow.log_metrics(pair, step=step)
    mlflow.set_tag("int8_decision", report.reason)
    log.info("INT8: %s", report.reason)
    if not report.accepted:
        return replace(report, path=str(int8_path))
    return replace(report, path=str(int8_path), model_uri=_log_onnx_model(int8_path, "onnx_int8_model", test.images[:2]),
                   sha256=file_digest(int8_path))


def _log_onnx_model(path: Path, name: str, example: np.ndarray) -> str:
    import onnx
    import onnxruntime
    from mlflow.models import infer_signature

    from sign_mlops.sign_model.export import onnx_probabilities

    x = example[..., None].astype(np.float32)
    signature = infer_signature(x, onnx_probabilities(path, example))
    info = mlflow.onnx.log_model(onnx.load(str(path)), name=name, signature=signature, save_as_external_data=False,
                                 input_example=x, onnx_execution_providers=["CPUExecutionProvider"],
                                 pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"])
    return info.model_uri


def register_step(record: RunRecord) -> Registered:
    """Register Keras + ONNX (+ INT8) versions as challengers, tagged and linked; parity gates it.

    Idempotent: a version already registered for this run (tag run_id) is reused, so a failed
    registration can be completed with `sign-mlops register --from <run dir>`."""
    from sign_mlops.sign_model.export import ParityError

    parity = record.exported.parity
    if not parity.passed:
        raise ParityError(f"ONNX parity failed for run {record.run_id} (argmax agreement {parity.argmax_agreement:.4%}, "
                          f"max |dp| {parity.max_abs_delta:.2e}); nothing was registered. Inspect the export before retrying.")
    try:
        return _register(record)
    except Exception as exc:
        raise RegistrationFailed(
            f"Registering run {record.run_id} failed ({type(exc).__name__}: {str(exc)[:300]}); the trained model, ONNX "
            f"files and reports are kept in {record.run_dir}. When the tracking server is back, finish it with "
            f"'sign-mlops register --from {record.run_dir}' (no retraining).") from exc


def _register(record: RunRecord) -> Registered:
    from sign_mlops.sign_model import registry

    tracking.configure(experiment=None)
    run_id, exported = record.run_id, record.exported
    robust = record.robustness
    run_data = mlflow.get_run(run_id).data
    if exported.onnx_model_uri is None:
        raise ValueError(f"run {run_id} logged no ONNX model (its export stopped early); there is nothing to register")
    common: dict[str, str] = {"run_id": run_id, "train_sha256": record.files.train_sha256,
              "test_accuracy": f"{record.evaluated.test_accuracy:.6f}",
              **({"robust_mean": f"{robust.mean:.6f}", "robust_worst": f"{robust.worst:.6f}",
                  "robust_worst_kind": robust.worst_kind} if robust else {}),
              "validation_passed": run_data.tags.get("validation_passed", "unknown"),
              "parity_passed": "true", "parity_argmax_agreement": str(exported.parity.argmax_agreement),
              "parity_max_abs_delta": str(exported.parity.max_abs_delta)}
    keras_v = registry.register_once(record.trained.keras_model_uri, registry.KERAS_MODEL, common)
    onnx_tags = {**common, "keras_version": str(keras_v.version), "onnx_sha256": exported.onnx_sha256}
    int8 = exported.int8 if exported.int8 is not None and exported.int8.accepted else None
    if int8 is not None:
        assert int8.model_uri is not None, "an accepted INT8 model is logged to MLflow"
        int8_v = registry.register_once(int8.model_uri, registry.INT8_MODEL,
                                        {**registry_int8_tags(common, int8), "keras_version": str(keras_v.version)})
        onnx_tags["int8_version"] = str(int8_v.version)
    onnx_v = registry.register_once(exported.onnx_model_uri, registry.ONNX_MODEL, onnx_tags)
    registry.tag_version(registry.KERAS_MODEL, keras_v.version, {"onnx_version": onnx_v.version})
    params = run_data.params
    architecture = params.get("architecture", "?")
    if run_data.metrics.get("hand/used"):
        architecture += f" behind a left-hand detector (width {params.get('hand_detector')})"
    registry.describe(registry.KERAS_MODEL, keras_v.version, registry.model_card(common, architecture))
    registry.describe(registry.ONNX_MODEL, onnx_v.version, registry.model_card(onnx_tags, architecture))
    if int8 is not None:
        registry.describe(registry.INT8_MODEL, onnx_tags["int8_version"],
                          registry.model_card(registry_int8_tags(common, int8), architecture + " INT8"))
    return Registered(str(keras_v.version), str(onnx_v.version),
                      str(onnx_tags["int8_version"]) if "int8_version" in onnx_tags else None)


def registry_int8_tags(common: dict[str, str], int8: Int8Report) -> dict[str, str]:
    """The INT8 version's own figures over the run's common tags."""
    return {**common, "onnx_sha256": str(int8.sha256), "test_accuracy": f"{int8.int8_accuracy:.6f}",
            "robust_mean": f"{int8.int8_robust_mean:.6f}", "robust_worst": f"{int8.int8_robust_worst:.6f}"}


def promote_step(policy: "GatePolicy | None" = None, force: bool = False, why: str | None = None) -> Promotion:
    """Run the promotion gate on the current ONNX challenger."""
    from sign_mlops.sign_model import registry

    return _promotion(registry.promote(policy or registry.GatePolicy(), force=force, why=why))


def pin_step(version: str, why: str) -> Promotion:
    """Make ONNX version N the champion by hand (a rollback or a pin), recorded like the gate."""
    from sign_mlops.sign_model import registry

    return _promotion(registry.pin_champion(version, why))


def _promotion(decision: "registry_module.Decision") -> Promotion:
    from sign_mlops.sign_model import registry

    log.info(decision.summary())
    int8 = registry.version_by_alias(registry.INT8_MODEL, registry.CHAMPION)
    return Promotion(decision.promoted, decision.challenger_version, decision.champion_version,
                     tuple(decision.reasons), f"models:/{registry.ONNX_MODEL}@{registry.CHAMPION}",
                     f"models:/{registry.INT8_MODEL}@{registry.CHAMPION}" if int8 is not None else None)


def run_dir(paths: Paths, run_id: str) -> Path:
    """The one place a run's local folder is decided."""
    return paths.outputs_dir / "runs" / run_id
