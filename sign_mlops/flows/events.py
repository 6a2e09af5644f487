"""Prefect events the product emits, for automations (docker/*.yaml) to act on:

- `sign-mlops.model.promoted` / `sign-mlops.model.refused`: every promotion-gate decision, with
  the version, the champion before and the gate's reasons;
- `sign-mlops.scoring.failed`: a file that could not be scored, or an inbox run that stopped;
- `sign-mlops.drift.detected` (sign_mlops.flows.scoring): a scored file whose inputs drifted.

Events go to the Prefect API the process talks to: inside a flow run always; from a plain CLI
command (`sign-mlops promote`) only when PREFECT_API_URL names a server. Without one, Prefect
would start a temporary in-process server just to receive an event that no automation can hear
(34 s and a traceback on a busy 2-core machine), so the event is skipped and the log says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sign_mlops.sign_model.results import Promotion

PROMOTED_EVENT = "sign-mlops.model.promoted"
REFUSED_EVENT = "sign-mlops.model.refused"
SCORING_FAILED_EVENT = "sign-mlops.scoring.failed"
log = logging.getLogger(__name__)


def someone_listens() -> bool:
    """A Prefect API is there to receive events: we are in a flow or task run, or one is configured."""
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value()) or FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _emit(**event) -> None:
    from prefect.events import emit_event

    if someone_listens():
        emit_event(**event)
    else:
        log.info("no Prefect API configured (PREFECT_API_URL): event %s not sent", event["event"])


def emit_promotion(promotion: Promotion, model_name: str, run_id: str = "") -> None:
    """One event per gate decision, about the challenger version."""
    _emit(event=PROMOTED_EVENT if promotion.promoted else REFUSED_EVENT,
          resource={"prefect.resource.id": f"sign-mlops.model.{model_name}.{promotion.version}",
                    "prefect.resource.name": f"{model_name} v{promotion.version}"},
          payload={"version": promotion.version, "promoted": promotion.promoted,
                   "champion_before": promotion.champion_before, "reasons": list(promotion.reasons),
                   "champion_uri": promotion.champion_uri, "run_id": run_id})


def emit_scoring_failed(name: str, reason: str, model: dict[str, str]) -> None:
    """`sign-mlops.scoring.failed` about a file (or an inbox whose run stopped): an automation can
    notify someone (docker/notify-on-failure.yaml)."""
    resource = {"prefect.resource.id": f"sign-mlops.file.{Path(name).name}", "prefect.resource.name": Path(name).name}
    related = ([{"prefect.resource.id": f"sign-mlops.model.{model.get('name')}.{model.get('version') or ''}",
                 "prefect.resource.role": "model"}] if model else [])
    _emit(event=SCORING_FAILED_EVENT, resource=resource, related=related,
          payload={"file": name, "reason": reason, "model": model})
