"""Training flow: validate -> explore -> train -> evaluate -> robustness -> export -> register -> promote.

Tasks pass paths, run ids, the frozen TrainConfig and small frozen results (never arrays);
only IO-bound steps retry. The flow logs one line per step.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger, task

from sign_mlops.contract.paths import Paths, default_paths
from sign_mlops.flows import rename_flow_run
from sign_mlops.flows.events import emit_promotion
from sign_mlops.sign_model import pipeline
from sign_mlops.sign_model.gate import GatePolicy
from sign_mlops.sign_model.registry import ONNX_MODEL
from sign_mlops.sign_model.results import (
    DataFiles,
    Evaluated,
    Exported,
    Promotion,
    Registered,
    Robustness,
    RunRecord,
    Trained,
    TrainingResult,
    Validated,
    result_rows,
)
from sign_mlops.sign_model.robustness import KINDS, SEVERITIES
from sign_mlops.sign_model.tracking import run_ui_url
from sign_mlops.sign_model.train_config import TrainConfig, resolve_config

IO_RETRIES = 2  # only the IO-bound steps retry
IO_RETRY_DELAY_S = 5


@task(retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY_S)
def resolve_data(train: str | None, test: str | None, home: str) -> DataFiles:
    return pipeline.resolve_data(Paths(Path(home)), Path(train) if train else None, Path(test) if test else None)


@task(retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY_S)
def check_retrain(files: DataFiles, config: TrainConfig, experiment: str, force: bool) -> tuple[bool, str]:
    return pipeline.retrain_needed(files, config, experiment, force)


@task(retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY_S)
def start_run(files: DataFiles, config: TrainConfig, experiment: str, name: str, prefect_tags: dict[str, str]) -> str:
    return pipeline.start_run(files, config, experiment, run_name=name, extra_tags=prefect_tags)


def name_this_flow_run(name: str) -> dict[str, str]:
    """Give the Prefect flow run the training run's name; its id and UI address for MLflow."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    run_id = rename_flow_run(name)
    if not run_id:
        return {}
    base = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return {"prefect.flow_run_id": str(run_id), "prefect.flow_run_url": f"{base}/runs/flow-run/{run_id}" if base else ""}


def _markdown_cell(text: str) -> str:
    """A bare | would end the table cell (e.g. in "max |dp|")."""
    return text.replace("|", "\\|")


def publish_result(result: TrainingResult, mlflow_url: str) -> None:
    """The run's story in the Prefect UI: a markdown result table with the gate's reasons and links."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    rows = [*result_rows(result), ("MLflow run", f"[{result.run_id}]({mlflow_url})")]
    assert result.promotion is not None  # result_rows raised for a run that did not finish
    table = "\n".join(f"| {k} | {_markdown_cell(v)} |" for k, v in rows)
    reasons = "\n".join(f"- {reason}" for reason in result.promotion.reasons)
    create_markdown_artifact(f"## {result.run_name}\n\n| | |\n|---|---|\n{table}\n\n### Promotion gate\n\n{reasons}\n",
                             key="training-result", description="Result of this training run and the gate's decision.")
    create_link_artifact(mlflow_url, link_text=f"MLflow run {result.run_id}", key="mlflow-run")


@task
def validate_data(run_id: str, files: DataFiles, report_path: str) -> Validated:
    return pipeline.validate_step(run_id, files, Path(report_path))


@task
def explore_data(run_id: str, files: DataFiles, out_dir: str) -> list[str]:
    return pipeline.explore_step(run_id, files, Path(out_dir))


@task(log_prints=False)  # the per-epoch progress lines go straight to the console
def train_model(run_id: str, files: DataFiles, config: TrainConfig, out_dir: str) -> Trained:
    return pipeline.train_step(run_id, files, config, Path(out_dir))


@task
def evaluate_model(run_id: str, files: DataFiles, trained: Trained, out_dir: str) -> Evaluated:
    return pipeline.evaluate_step(run_id, files, trained, Path(out_dir))


@task
def check_robustness(run_id: str, files: DataFiles, trained: Trained, out_dir: str) -> Robustness:
    return pipeline.robustness_step(run_id, files, trained, Path(out_dir))


@task
def export_model(run_id: str, files: DataFiles, trained: Trained, out_dir: str, int8: bool) -> Exported:
    return pipeline.export_step(run_id, files, trained, Path(out_dir), int8=int8)


# No task-level retries: MLflow's HTTP client already retries transient errors a bounded number
# of times (sign_mlops.sign_model.tracking.HTTP_RETRY_DEFAULTS), and a failed registration is completed
# later with `sign-mlops register --from <run dir>` (idempotent).
@task
def register_models(record: RunRecord) -> Registered:
    return pipeline.register_step(record)


@task(retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY_S)
def promote_challenger(policy: GatePolicy) -> Promotion:
    return pipeline.promote_step(policy)


@flow(name="sign-mnist-training", log_prints=True)
def training_flow(train: str | None = None, test: str | None = None, preset: str = "default",
                  overrides: dict | None = None, experiment: str = "sign-language-mnist",
                  policy: GatePolicy = GatePolicy(), int8: bool = True, home: str | None = None,
                  force: bool = True) -> TrainingResult:
    """Validate, explore, train, evaluate, export, register and promote one model.

    `overrides` holds only the config keys a user set; they are laid over `preset` once;
    `policy` is the promotion gate's whole policy (a deployment may set some of its fields).
    With force=False (scheduled runs) it skips when the training data digest and the config
    equal those of the current champion's run."""
    logger = get_run_logger()
    paths = default_paths() if home is None else Paths(Path(home))
    config = resolve_config(preset, overrides)  # the one place preset and overrides meet
    files = resolve_data(train, test, str(paths.home))
    if files.synthetic:
        logger.warning("Training on SYNTHETIC data (%s); put the Kaggle files in %s for the real thing.",
                       files.train, paths.data_dir)
    needed, reason = check_retrain(files, config, experiment, force)
    if not needed:
        logger.info("Skipping retraining: %s. Pass force=True to retrain anyway.", reason)
        return TrainingResult(skipped=True, reason=reason, data=files)
    name = pipeline.run_name(preset, files, datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"))
    prefect_tags = name_this_flow_run(name)
    run_id = start_run(files, config, experiment, name, prefect_tags)
    out = pipeline.run_dir(paths, run_id)
    logger.info("MLflow run %s; files in %s", run_id, out)
    validated = validate_data(run_id, files, str(out / "validation_report.json"))
    logger.info("validate: passed (%d warnings)", len(validated.warnings))
    explore_data(run_id, files, str(out / "figures"))
    logger.info("explore: figures in %s", out / "figures")
    logger.info("train: %s, %d epochs", config.architecture, config.epochs)
    trained = train_model(run_id, files, config, str(out / "model"))
    logger.info("train: grouped-validation accuracy %.4f in %.0f s", trained.val_accuracy, trained.train_seconds)
    evaluated = evaluate_model(run_id, files, trained, str(out / "evaluation"))
    logger.info("evaluate: test accuracy %.4f, macro-F1 %.4f", evaluated.test_accuracy, evaluated.test_macro_f1)
    logger.info("robustness: the shift suite (%d kinds x %d severities) on up to 3,000 test rows...", len(KINDS),
                len(SEVERITIES))
    robustness = check_robustness(run_id, files, trained, str(out / "robustness"))
    logger.info("robustness: mean %.4f, worst kind %s %.4f", robustness.mean, robustness.worst_kind, robustness.worst)
    logger.info("export: ONNX and its parity on the test split%s...",
                "; then INT8: quantise, accuracy, robustness, 6 alternating scorer speed pairs" if int8 else "")
    exported = export_model(run_id, files, trained, str(out / "onnx"), int8)
    logger.info("export: ONNX parity %s", "passed" if exported.parity.passed else "FAILED")
    if exported.int8 is not None:
        logger.info("export: INT8 %s: %s", "accepted" if exported.int8.accepted else "refused", exported.int8.reason)
    record = RunRecord(run_id, str(out), files, trained, evaluated, exported, robustness)
    record.save()
    registered = register_models(record)
    logger.info("register: keras v%s, onnx v%s, int8 %s", registered.keras_version, registered.onnx_version,
                f"v{registered.int8_version}" if registered.int8_version else "not registered")
    promotion = promote_challenger(policy)
    logger.info("promote: %s v%s", "PROMOTED" if promotion.promoted else "not promoted", promotion.version)
    emit_promotion(promotion, ONNX_MODEL, run_id)
    result = TrainingResult(False, "trained", files, run_id, str(out), trained, evaluated, robustness, exported,
                            registered, promotion, run_name=name)
    publish_result(result, run_ui_url(run_id))
    return result
