"""`sign-mlops serve` builds its deployments with module-path entrypoints, so Dask workers can
import the flow module (`sign_mlops.flows.scoring`) that cloudpickle references."""

from __future__ import annotations

import prefect
from typer.testing import CliRunner

from sign_mlops.cli.app import app


def test_deployments_use_module_path_entrypoints(monkeypatch, tmp_path):
    captured = []
    monkeypatch.setattr(prefect, "serve", lambda *deployments, **kwargs: captured.extend(deployments))
    monkeypatch.setenv("SIGN_MLOPS_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    entrypoints = {d.name: d.entrypoint for d in captured}
    assert entrypoints == {"scheduled-retraining": "sign_mlops.flows.training.training_flow",
                           "inbox-scoring": "sign_mlops.flows.scoring.inbox_scoring_flow"}
