"""Scoring flows: the inbox (score each new CSV once per model version) and explicit file lists,
on this machine or fanned out over a Dask cluster (prefect-dask's DaskTaskRunner) by file and
by line-aligned pieces of large files, with identical outputs."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.states import Failed, State

from sign_mlops.contract.csvformat import DataFormatError
from sign_mlops.contract.paths import default_paths
from sign_mlops.contract.summary import ScoreSummary
from sign_mlops.flows import rename_flow_run
from sign_mlops.flows.events import emit_scoring_failed
from sign_mlops.flows.model_source import load_scoring_model
from sign_mlops.serving import distributed
from sign_mlops.serving.inbox import DEFAULT_SETTLE_S, InboxError, InboxResult, score_inbox
from sign_mlops.serving.model import LoadedModel, ModelError
from sign_mlops.serving.scorer import ScoringError, input_stem

SCHEDULER_TIMEOUT_S = 10


def _load(model_spec: str, cache_dir: str) -> LoadedModel:
    return load_scoring_model(model_spec, Path(cache_dir))


@dataclass
class InboxRun(InboxResult):
    """What an inbox scoring flow returns: the files' fates, the model, or why it stopped."""

    error: str | None = None  # the run could not start or stopped early (nothing was lost)
    model: dict[str, str] = field(default_factory=dict)  # LoadedModel.describe()

    @classmethod
    def of(cls, result: InboxResult, model: LoadedModel) -> InboxRun:
        return cls(**vars(result), model=model.describe())


@dataclass(frozen=True)
class FilesScored:
    """What `score_files_flow` returns: a summary per scored file, a reason per failed one."""

    summaries: dict[str, ScoreSummary]
    failed: dict[str, str]


def _failed_run(message: str) -> InboxRun:
    return InboxRun(error=message)


# No retries: the inbox is idempotent, but a file that fails is moved to failed/ with its reason
# and a machine problem (disk full) needs a person; the next scheduled run picks up the rest.
@task
def score_pending(inbox: str, outbox: str, model_spec: str, cache_dir: str, settle_s: float) -> InboxRun:
    """Load the model (from the registry when given models:/...) and score the complete files."""
    try:
        model = _load(model_spec, cache_dir)
        result = score_inbox(Path(inbox), Path(outbox), model, settle_s)
    except (ModelError, InboxError) as exc:
        return _failed_run(str(exc))
    return InboxRun.of(result, model)


# A piece re-run rewrites the same part files, so retries (and Dask re-running the piece of a
# lost worker) never duplicate or lose rows.
@task(retries=2, retry_delay_seconds=1)
def score_piece(piece: dict, model_spec: str, cache_dir: str, model_sha256: str,
                parts_dir: str) -> distributed.PieceResult:
    return distributed.score_piece(distributed.Piece(**piece), model_spec, cache_dir, model_sha256, parts_dir)


def check_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT_S) -> None:
    """Fail fast, with a clear message, when the Dask scheduler is not reachable."""
    from distributed import Client

    try:
        Client(address, timeout=f"{timeout}s", set_as_default=False).close()
    except (OSError, TimeoutError, ValueError) as exc:
        raise ScoringError(f"Cannot reach the Dask scheduler at {address!r} within {timeout:.0f}s ({exc}); "
                           "check --dask-address / SIGN_MLOPS_DASK_ADDRESS and that the scheduler is running.") from exc


def _score_files_on_cluster(files: list[Path], model: LoadedModel, model_spec: str, out_dirs: list[Path],
                            overwrite: bool, piece_bytes: int, parts_root: Path,
                            input_labels: list[str] | None = None,
                            ) -> tuple[dict[str, ScoreSummary], dict[str, ScoringError]]:
    """Submit every piece of every file first, then merge file by file (in input order).

    Part files go to a temporary folder under parts_root, which workers must be able to write
    (a shared volume on a real cluster)."""
    cache = str(default_paths().model_cache)
    spec = str(model.path) if not model_spec.startswith("models:/") else model_spec
    parts_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".pieces-", dir=parts_root))
    submitted: list = []
    failed: dict[str, ScoringError] = {}
    summaries: dict[str, ScoreSummary] = {}
    try:
        for i, path in enumerate(files):
            started = time.perf_counter()
            try:
                pieces = distributed.plan_pieces(path, piece_bytes)
            except (DataFormatError, OSError) as exc:  # header, missing file
                failed[str(path)] = ScoringError(str(exc))
                continue
            parts = work / f"{i:04d}"
            parts.mkdir()
            futures = [score_piece.submit(asdict(p), spec, cache, model.sha256, str(parts)) for p in pieces]
            submitted.append((i, path, out_dirs[i], parts, futures, started))
        for i, path, out_dir, parts, futures, started in submitted:
            label = input_labels[i] if input_labels else None
            try:
                summaries[str(path)] = distributed.merge_pieces(path, [f.result() for f in futures], parts, out_dir,
                                                                model, started, overwrite, input_label=label)
            except ScoringError as exc:
                failed[str(path)] = exc
            except FileExistsError as exc:
                failed[str(path)] = ScoringError(str(exc))
    finally:  # a failed or interrupted run leaves no .pieces-* folder behind
        shutil.rmtree(work, ignore_errors=True)
    return summaries, failed


@flow(name="sign-mnist-score-files", log_prints=True)
def score_files_flow(inputs: list[str], model: str, out_dir: str, overwrite: bool = False,
                     piece_bytes: int = distributed.DEFAULT_PIECE_BYTES) -> FilesScored | State:
    """Score explicit files on the flow's task runner (a DaskTaskRunner when scaled out).

    Ends `Failed` (its message names the files) when any file could not be scored; the other
    files' outputs are final either way. Call it with return_state=True to read the result."""
    loaded = _load(model, str(default_paths().model_cache))
    files = [Path(p) for p in inputs]
    summaries, failed = _score_files_on_cluster(files, loaded, model, [Path(out_dir)] * len(files), overwrite,
                                                piece_bytes, Path(out_dir))
    result = FilesScored(summaries, {name: str(exc) for name, exc in failed.items()})
    for name, reason in result.failed.items():
        emit_scoring_failed(name, reason, loaded.describe())
    if result.failed:
        return Failed(message=f"{len(result.failed)} of {len(files)} file(s) failed: {_reasons(result.failed)}",
                      data=result)
    return result


@flow(name="sign-mnist-inbox-scoring-dask", log_prints=True)
def inbox_on_cluster_flow(inbox: str, outbox: str, model: str, settle_s: float = DEFAULT_SETTLE_S,
                          piece_bytes: int = distributed.DEFAULT_PIECE_BYTES) -> InboxRun:
    """The inbox, with each file's pieces fanned out over the flow's task runner."""
    try:
        loaded = _load(model, str(default_paths().model_cache))
    except ModelError as exc:
        return _failed_run(str(exc))

    def on_cluster(path: Path, folder: Path, name: str) -> ScoreSummary:
        summaries, failed = _score_files_on_cluster([path], loaded, model, [folder], True, piece_bytes, Path(outbox),
                                                    input_labels=[name])
        if failed:
            raise failed[str(path)]
        return summaries[str(path)]

    try:
        result = score_inbox(Path(inbox), Path(outbox), loaded, settle_s, scorer=on_cluster)
    except InboxError as exc:
        return _failed_run(str(exc))
    return InboxRun.of(result, loaded)


def dask_runner(address: str):
    from prefect_dask import DaskTaskRunner

    check_scheduler(address)
    return DaskTaskRunner(address=address)


@flow(name="sign-mnist-inbox-scoring", log_prints=True)
def inbox_scoring_flow(inbox: str | None = None, outbox: str | None = None,
                       model: str = "models:/sign-mnist-onnx@champion", dask_address: str | None = None,
                       settle_s: float = DEFAULT_SETTLE_S) -> InboxRun | State:
    """Score every complete file in `inbox` into `outbox` (defaults: SIGN_MLOPS_INBOX/OUTBOX, else
    <home>/inbox, <home>/outbox); failures go to inbox/failed/ with a reason. With a Dask
    scheduler address each file's pieces fan out over that cluster.

    The run ends `Failed` when the model cannot be resolved, the run stopped (disk full, a
    corrupt manifest...) or any file failed -- its message says which -- while every other
    file's outputs stay final; each failure also emits `sign-mlops.scoring.failed`. Call it with
    return_state=True to read the result whatever the state."""
    logger = get_run_logger()
    paths = default_paths()
    inbox, outbox = inbox or str(paths.inbox), outbox or str(paths.outbox)
    if dask_address:
        result = inbox_on_cluster_flow.with_options(task_runner=dask_runner(dask_address))(inbox, outbox, model, settle_s)
    else:
        result = score_pending(inbox, outbox, model, str(paths.model_cache), settle_s)
    if result.error:
        logger.error("inbox scoring stopped: %s", result.error)
        emit_scoring_failed(inbox, result.error, result.model)
        return Failed(message=f"inbox scoring stopped: {result.error}", data=result)
    if result.busy:
        logger.warning("another run is scoring %s; this run did nothing", inbox)
    logger.info("scored %d, skipped %d (already scored by this model), failed %d, waiting %d (incomplete)",
                len(result.scored), len(result.skipped), len(result.failed), len(result.waiting))
    for name, reason in result.failed.items():
        logger.error("%s -> failed/: %s", name, reason)
        emit_scoring_failed(name, reason, result.model)
    for name, reason in {**result.waiting, **result.ignored}.items():
        logger.info("left in the inbox: %s (%s)", name, reason)
    report_scored_files(result)
    rename_flow_run(scoring_run_name(list(result.outputs) + list(result.failed), result.model))
    if result.failed:
        scored = f"; {len(result.scored)} scored" if result.scored else ""
        return Failed(message=f"{len(result.failed)} file(s) failed (moved to failed/ with a reason): "
                              f"{_reasons(result.failed)}{scored}", data=result)
    return result


def scoring_run_name(files: list[str], model: dict) -> str:
    """score-<file>-<model version>; several files: score-<first>+<n more>-..., none: score-nothing-..."""
    version = f"v{model['version']}" if model.get("version") else (model.get("sha256") or "model")[:8]
    if not files:
        return f"score-nothing-{version}"
    first = input_stem(Path(files[0]))
    return f"score-{first}-{version}" if len(files) == 1 else f"score-{first}+{len(files) - 1}-more-{version}"


def _reasons(failed: dict[str, str], limit: int = 120) -> str:
    """'a.csv: reason; b.csv: reason' for a Failed state's message, each reason cut short."""
    return "; ".join(f"{name}: {reason[:limit] + '…' if len(reason) > limit else reason}"
                     for name, reason in sorted(failed.items()))


DRIFT_EVENT = "sign-mlops.drift.detected"


def report_scored_files(result: InboxRun) -> None:
    """A table artifact of this run's files, and a `sign-mlops.drift.detected` event for every
    file whose drift check failed (an automation can notify someone or start a retraining)."""
    from prefect.artifacts import create_table_artifact
    from prefect.events import emit_event

    rows = []
    for name, folder in result.outputs.items():
        summary = ScoreSummary.read(Path(folder) / f"{input_stem(Path(name))}.summary.json")
        drift = summary.drift
        rows.append({"file": name, "rows in": summary.rows_in, "scored": summary.rows_scored,
                     "rejected": summary.rows_rejected, "accuracy": summary.accuracy,
                     "drift": drift.get("verdict"), "class mix": summary.class_mix.get("verdict"), "outputs": folder})
        if drift.get("drift"):
            model = summary.model
            emit_event(event=DRIFT_EVENT,
                       resource={"prefect.resource.id": f"sign-mlops.file.{name}", "prefect.resource.name": name},
                       related=[{"prefect.resource.id": f"sign-mlops.model.{model['name']}.{model['version']}",
                                 "prefect.resource.role": "model"}],
                       payload={"file": name, "outputs": folder, "model": model, "drifted": drift["drifted"],
                                "tests": drift.get("tests", {}), "checked_at": summary.checked_at})
    rows += [{"file": name, "rows in": None, "scored": None, "rejected": None, "accuracy": None,
              "drift": f"failed: {reason}", "class mix": None, "outputs": ""} for name, reason in result.failed.items()]
    if rows:
        create_table_artifact(rows, key="inbox-scoring", description="Files scored by this run (rows in = scored + "
                                                                     "rejected); input drift and class mix per file.")
