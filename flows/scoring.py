"""Inbox scoring flow: score each new CSV in the inbox once per model version, on demand or on
an interval (`sign-mlops score-inbox --every 300`)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from serving.inbox import score_inbox
from serving.model import resolve
from sign_model.config import default_paths


# The inbox is idempotent (manifest + atomic outputs), so retrying after an IO error is safe.
@task(retries=2, retry_delay_seconds=5)
def score_pending(inbox: str, outbox: str, model_spec: str, cache_dir: str) -> dict:
    """Load the model (from the registry when given models:/...) and score the pending files."""
    if model_spec.startswith("models:/"):
        from sign_model import tracking

        tracking.configure()
    model = resolve(model_spec, Path(cache_dir))
    result = score_inbox(Path(inbox), Path(outbox), model)
    return {"scored": result.scored, "skipped": result.skipped, "failed": result.failed, "model": model.describe()}


@flow(name="sign-mnist-inbox-scoring", log_prints=True)
def inbox_scoring_flow(inbox: str = "inbox", outbox: str = "outbox",
                       model: str = "models:/sign-mnist-onnx@champion") -> dict:
    """Score every new file in `inbox` into `outbox`; failures go to inbox/failed/ with a reason."""
    logger = get_run_logger()
    result = score_pending(inbox, outbox, model, str(default_paths().model_cache))
    logger.info("scored %d, skipped %d (already scored by this model), failed %d",
                len(result["scored"]), len(result["skipped"]), len(result["failed"]))
    for name, reason in result["failed"].items():
        logger.error("%s -> failed/: %s", name, reason)
    return result
