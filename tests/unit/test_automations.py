"""The example automations in docker/ are valid for the Prefect server and fire on the events
this project (and Prefect) emit, and on nothing else."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _automation(name: str, placeholder: str):
    from prefect.events.schemas.automations import AutomationCore as ClientAutomation
    from prefect.server.events.schemas.automations import AutomationCore as ServerAutomation

    data = yaml.safe_load((DOCKER / name).read_text().replace(placeholder, str(uuid.uuid4())))
    ClientAutomation.model_validate(data)  # what `prefect automation create --from-file` sends
    return ServerAutomation.model_validate(data)  # what the server accepts


def _received(emitted: dict):
    from prefect.server.events.schemas.events import ReceivedEvent

    return ReceivedEvent(occurred=datetime.now(timezone.utc), event=emitted["event"], resource=emitted["resource"],
                         related=emitted.get("related", []), payload=emitted.get("payload", {}), id=uuid.uuid4())


def _flow_run_event(state: str, flow: str):
    return _received({"event": f"prefect.flow-run.{state}", "resource": {"prefect.resource.id": "prefect.flow-run.1"},
                      "related": [{"prefect.resource.id": "prefect.flow.2", "prefect.resource.role": "flow",
                                   "prefect.resource.name": flow}]})


def _fires(trigger, event) -> bool:
    triggers = getattr(trigger, "triggers", [trigger])
    return any(t.covers(event) for t in triggers)


def test_retraining_fires_on_input_drift_only():
    automation = _automation("retrain-on-drift.yaml", "DEPLOYMENT_ID")
    drift = _received({"event": "sign-mlops.drift.detected", "resource": {"prefect.resource.id": "sign-mlops.file.a.csv"}})
    assert _fires(automation.trigger, drift)
    assert not _fires(automation.trigger, _flow_run_event("Failed", "sign-mnist-inbox-scoring"))


@pytest.mark.parametrize("state", ["Failed", "Crashed"])
def test_failure_notification_fires_on_our_failed_flow_runs(state):
    automation = _automation("notify-on-failure.yaml", "BLOCK_DOCUMENT_ID")
    for flow in ("sign-mnist-training", "sign-mnist-inbox-scoring", "sign-mnist-inbox-scoring-dask",
                 "sign-mnist-score-files"):
        assert _fires(automation.trigger, _flow_run_event(state, flow)), flow
    assert not _fires(automation.trigger, _flow_run_event(state, "someone-elses-flow"))
    assert not _fires(automation.trigger, _flow_run_event("Completed", "sign-mnist-inbox-scoring"))


def test_failure_notification_fires_on_the_scoring_failed_event_we_emit(monkeypatch):
    import prefect.events
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from sign_mlops.flows.events import emit_scoring_failed

    emitted = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kwargs: emitted.append(kwargs))
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # a server to hear it
        emit_scoring_failed("inbox/b.csv", "no pixel columns", {"name": "sign-mnist-onnx", "version": "3"})
    automation = _automation("notify-on-failure.yaml", "BLOCK_DOCUMENT_ID")
    assert _fires(automation.trigger, _received(emitted[0]))
    drift = _received({"event": "sign-mlops.drift.detected", "resource": {"prefect.resource.id": "sign-mlops.file.a.csv"}})
    assert not _fires(automation.trigger, drift)
