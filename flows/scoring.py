"""Scoring flows: the inbox (score each new CSV once per model version) and explicit file lists,
on this machine or fanned out over a Dask cluster (prefect-dask's DaskTaskRunner) by file and
by line-aligned pieces of large files, with identical outputs."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task

from serving import distributed
from serving.inbox import InboxResult, claim_pending, mark_failed, mark_scored, output_dir, score_inbox
from serving.model import LoadedModel, resolve
from serving.scorer import ScoringError
from sign_model.config import default_paths

SCHEDULER_TIMEOUT_S = 10


def _load(model_spec: str, cache_dir: str) -> LoadedModel:
    if model_spec.startswith("models:/"):
        from sign_model import tracking

        tracking.configure(experiment=None)
    return resolve(model_spec, Path(cache_dir))


# The inbox is idempotent (manifest + atomic outputs), so retrying after an IO error is safe.
@task(retries=2, retry_delay_seconds=5)
def score_pending(inbox: str, outbox: str, model_spec: str, cache_dir: str) -> dict:
    """Load the model (from the registry when given models:/...) and score the pending files."""
    model = _load(model_spec, cache_dir)
    result = score_inbox(Path(inbox), Path(outbox), model)
    return {"scored": result.scored, "skipped": result.skipped, "failed": result.failed, "model": model.describe()}


# A piece re-run rewrites the same part files, so retries (and Dask re-running the piece of a
# lost worker) never duplicate or lose rows.
@task(retries=2, retry_delay_seconds=1)
def score_piece(piece: dict, model_spec: str, cache_dir: str, model_sha256: str, parts_dir: str) -> dict:
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
                            overwrite: bool, piece_bytes: int, parts_root: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Submit every piece of every file first, then merge file by file (in input order).

    Part files go to a temporary folder under parts_root, which workers must be able to write
    (a shared volume on a real cluster)."""
    cache = str(default_paths().model_cache)
    spec = str(model.path) if not model_spec.startswith("models:/") else model_spec
    parts_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".pieces-", dir=parts_root))
    submitted, failed, summaries = [], {}, {}
    for i, path in enumerate(files):
        started = time.perf_counter()
        try:
            pieces = distributed.plan_pieces(path, piece_bytes)
        except Exception as exc:  # DataFormatError (header), missing file
            failed[str(path)] = str(exc)
            continue
        parts = work / f"{i:04d}"
        parts.mkdir()
        futures = [score_piece.submit(asdict(p), spec, cache, model.sha256, str(parts)) for p in pieces]
        submitted.append((path, out_dirs[i], parts, futures, started))
    for path, out_dir, parts, futures, started in submitted:
        try:
            summaries[str(path)] = distributed.merge_pieces(path, [f.result() for f in futures], parts, out_dir,
                                                            model, started, overwrite)
        except (ScoringError, FileExistsError) as exc:
            failed[str(path)] = str(exc)
    shutil.rmtree(work, ignore_errors=True)
    return summaries, failed


@flow(name="sign-mnist-score-files", log_prints=True)
def score_files_flow(inputs: list[str], model: str, out_dir: str, overwrite: bool = False,
                     piece_bytes: int = distributed.DEFAULT_PIECE_BYTES) -> dict:
    """Score explicit files on the flow's task runner (a DaskTaskRunner when scaled out)."""
    loaded = _load(model, str(default_paths().model_cache))
    files = [Path(p) for p in inputs]
    summaries, failed = _score_files_on_cluster(files, loaded, model, [Path(out_dir)] * len(files), overwrite,
                                                piece_bytes, Path(out_dir))
    return {"summaries": summaries, "failed": failed}


@flow(name="sign-mnist-inbox-scoring-dask", log_prints=True)
def inbox_on_cluster_flow(inbox: str, outbox: str, model: str, piece_bytes: int = distributed.DEFAULT_PIECE_BYTES) -> dict:
    """The inbox, with scoring fanned out over the flow's task runner."""
    loaded = _load(model, str(default_paths().model_cache))
    result = InboxResult()
    todo = claim_pending(Path(inbox), Path(outbox), loaded, result)
    out_dirs = [output_dir(Path(outbox), p) for p, _ in todo]
    summaries, failed = _score_files_on_cluster([p for p, _ in todo], loaded, model, out_dirs, True, piece_bytes,
                                                Path(outbox))
    for path, key in todo:
        if str(path) in failed:
            mark_failed(Path(inbox), path, failed[str(path)], result)
        else:
            mark_scored(Path(inbox), Path(outbox), path, key, summaries[str(path)], loaded, result)
    return {"scored": result.scored, "skipped": result.skipped, "failed": result.failed, "model": loaded.describe()}


def dask_runner(address: str):
    from prefect_dask import DaskTaskRunner

    check_scheduler(address)
    return DaskTaskRunner(address=address)


@flow(name="sign-mnist-inbox-scoring", log_prints=True)
def inbox_scoring_flow(inbox: str = "inbox", outbox: str = "outbox", model: str = "models:/sign-mnist-onnx@champion",
                       dask_address: str | None = None) -> dict:
    """Score every new file in `inbox` into `outbox`; failures go to inbox/failed/ with a reason.
    With a Dask scheduler address the work fans out over that cluster."""
    logger = get_run_logger()
    if dask_address:
        result = inbox_on_cluster_flow.with_options(task_runner=dask_runner(dask_address))(inbox, outbox, model)
    else:
        result = score_pending(inbox, outbox, model, str(default_paths().model_cache))
    logger.info("scored %d, skipped %d (already scored by this model), failed %d",
                len(result["scored"]), len(result["skipped"]), len(result["failed"]))
    for name, reason in result["failed"].items():
        logger.error("%s -> failed/: %s", name, reason)
    return result
