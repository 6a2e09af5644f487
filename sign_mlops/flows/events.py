"""Prefect events the product emits, for automations (docker/*.yaml) to act on:

- `sign-mlops.model.promoted` / `sign-mlops.model.refused`: every promotion-gate decision, with
  the version, the champion before and the gate's reasons;
- `sign-mlops.scoring.failed`: a file that could not be scored, or an inbox run that stopped;
- `sign-mlops.drift.detected` (sign_mlops.flows.scoring): a scored file whose inputs drifted.
"""

from __future__ import annotations

from pathlib import Path

from sign_mlops.sign_model.results import Promotion

PROMOTED_EVENT = "sign-mlops.model.promoted"
REFUSED_EVENT = "sign-mlops.model.refused"


def emit_promotion(promotion: Promotion, model_name: str, run_id: str = "") -> None:
    """One event per gate decision, about the challenger version."""
    from prefect.events import emit_event

    emit_event(event=PROMOTED_EVENT if promotion.promoted else REFUSED_EVENT,
               resource={"prefect.resource.id": f"sign-mlops.model.{model_name}.{promotion.version}",
                         "prefect.resource.name": f"{model_name} v{promotion.version}"},
               payload={"version": promotion.version, "promoted": promotion.promoted,
                        "champion_before": promotion.champion_before, "reasons": list(promotion.reasons),
                        "champion_uri": promotion.champion_uri, "run_id": run_id})


SCORING_FAILED_EVENT = "sign-mlops.scoring.failed"


def emit_scoring_failed(name: str, reason: str, model: dict[str, str]) -> None:
    """`sign-mlops.scoring.failed` about a file (or an inbox whose run stopped): an automation can
    notify someone (docker/notify-on-failure.yaml)."""
    from prefect.events import emit_event

    resource = {"prefect.resource.id": f"sign-mlops.file.{Path(name).name}", "prefect.resource.name": Path(name).name}
    related = ([{"prefect.resource.id": f"sign-mlops.model.{model.get('name')}.{model.get('version') or ''}",
                 "prefect.resource.role": "model"}] if model else [])
    emit_event(event=SCORING_FAILED_EVENT, resource=resource, related=related,
               payload={"file": name, "reason": reason, "model": model})
