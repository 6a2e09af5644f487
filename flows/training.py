"""Training flow: validate -> explore -> train -> evaluate -> export -> register -> promote.

Tasks pass paths, run ids and small dicts (never arrays); only IO-bound steps retry.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from sign_model import pipeline
from sign_model.config import Paths, default_paths
from sign_model.registry import GatePolicy
from sign_model.train_config import TrainConfig, resolve_config

IO_RETRIES = {"retries": 2, "retry_delay_seconds": 5}


@task(**IO_RETRIES)
def resolve_data(train: str | None, test: str | None, home: str) -> pipeline.DataFiles:
    return pipeline.resolve_data(Paths(Path(home)), Path(train) if train else None, Path(test) if test else None)


@task(**IO_RETRIES)
def check_retrain(files: pipeline.DataFiles, config: TrainConfig, experiment: str, force: bool) -> dict:
    needed, reason = pipeline.retrain_needed(files, config, experiment, force)
    return {"needed": needed, "reason": reason}


@task(**IO_RETRIES)
def start_run(files: pipeline.DataFiles, config: TrainConfig, experiment: str) -> str:
    return pipeline.start_run(files, config, experiment)


@task
def validate_data(run_id: str, files: pipeline.DataFiles, report_path: str) -> dict:
    return pipeline.validate_step(run_id, files, Path(report_path))


@task
def explore_data(run_id: str, files: pipeline.DataFiles, out_dir: str) -> list[str]:
    return pipeline.explore_step(run_id, files, Path(out_dir))


@task(log_prints=False)  # the per-epoch progress lines go straight to the console
def train_model(run_id: str, files: pipeline.DataFiles, config: TrainConfig, out_dir: str) -> dict:
    return pipeline.train_step(run_id, files, config, Path(out_dir))


@task
def evaluate_model(run_id: str, files: pipeline.DataFiles, trained: dict, out_dir: str) -> dict:
    return pipeline.evaluate_step(run_id, files, trained["model_path"], trained["history_path"], Path(out_dir))


@task
def export_model(run_id: str, files: pipeline.DataFiles, trained: dict, out_dir: str, int8: bool) -> dict:
    return pipeline.export_step(run_id, files, trained["model_path"], Path(out_dir), int8=int8)


# No task-level retries: a retry could register duplicate versions; MLflow's HTTP client already
# retries transient errors a bounded number of times (sign_model.tracking.HTTP_RETRY_DEFAULTS).
@task
def register_models(run_id: str, files: pipeline.DataFiles, trained: dict, evaluated: dict, exported: dict) -> dict:
    return pipeline.register_step(run_id, files, trained, evaluated, exported)


@task(**IO_RETRIES)
def promote_challenger(accuracy_floor: float, tolerance: float) -> dict:
    return pipeline.promote_step(GatePolicy(accuracy_floor, tolerance))


@flow(name="sign-mnist-training", log_prints=True)
def training_flow(train: str | None = None, test: str | None = None, preset: str = "default",
                  overrides: dict | None = None, experiment: str = "sign-language-mnist",
                  accuracy_floor: float = 0.90, tolerance: float = 0.002, int8: bool = True,
                  home: str | None = None, force: bool = True) -> dict:
    """Validate, explore, train, evaluate, export, register and promote one model.

    With force=False (scheduled runs) it skips when the training data digest and the config
    equal those of the current champion's run."""
    logger = get_run_logger()
    paths = default_paths() if home is None else Paths(Path(home))
    config = resolve_config(preset, overrides)  # the one place preset and overrides meet
    files = resolve_data(train, test, str(paths.home))
    if files.synthetic:
        logger.warning("Training on SYNTHETIC data (%s); put the Kaggle files in %s for the real thing.",
                       files.train, paths.data_dir)
    decision = check_retrain(files, config, experiment, force)
    if not decision["needed"]:
        logger.info("Skipping retraining: %s. Pass force=True to retrain anyway.", decision["reason"])
        return {"skipped": True, "reason": decision["reason"], "data": files.__dict__}
    run_id = start_run(files, config, experiment)
    out = pipeline.run_dir(paths, run_id)
    logger.info("MLflow run %s; files in %s", run_id, out)
    validated = validate_data(run_id, files, str(out / "validation_report.json"))
    logger.info("validate: passed (%d warnings)", len(validated["warnings"]))
    explore_data(run_id, files, str(out / "figures"))
    logger.info("explore: figures in %s", out / "figures")
    logger.info("train: %s, %d epochs", config.architecture, config.epochs)
    trained = train_model(run_id, files, config, str(out / "model"))
    logger.info("train: grouped-validation accuracy %.4f in %.0f s", trained["val_accuracy"], trained["train_seconds"])
    evaluated = evaluate_model(run_id, files, trained, str(out / "evaluation"))
    logger.info("evaluate: test accuracy %.4f, macro-F1 %.4f", evaluated["test_accuracy"], evaluated["test_macro_f1"])
    exported = export_model(run_id, files, trained, str(out / "onnx"), int8)
    logger.info("export: ONNX parity %s", "passed" if exported["parity"]["passed"] else "FAILED")
    registered = register_models(run_id, files, trained, evaluated, exported)
    logger.info("register: %s", registered)
    promotion = promote_challenger(accuracy_floor, tolerance)
    logger.info("promote: %s v%s", "PROMOTED" if promotion["promoted"] else "not promoted", promotion["version"])
    return {"skipped": False, "run_id": run_id, "data": files.__dict__, "outputs": str(out), **evaluated,
            "val_accuracy": trained["val_accuracy"], "train_seconds": trained["train_seconds"],
            "parity": exported["parity"], "int8": exported.get("int8"), "registered": registered,
            "promotion": promotion}
