"""Registry and promotion gate: a worse challenger does not displace the champion, a better one does."""

from __future__ import annotations

import json
import logging

import mlflow
import onnx
import pytest

from sign_mlops.sign_model import registry, tracking
from sign_mlops.sign_model.export import ParityError
from sign_mlops.sign_model.pipeline import register_step
from sign_mlops.sign_model.results import DataFiles, Evaluated, Exported, Parity, Robustness, RunRecord, Trained


def _new_version(onnx_path, accuracy: float, parity: str = "true", robust: tuple[float, float] | None = (0.95, 0.9)) -> str:
    """Log the ONNX model in a fresh run and register it as the challenger with a test accuracy
    and (unless None) a robustness record (mean, worst kind)."""
    with mlflow.start_run() as run:
        info = mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="onnx_model", save_as_external_data=False,
                                     pip_requirements=["onnxruntime"])
    tags = {"test_accuracy": accuracy, "validation_passed": "true", "parity_passed": parity, "run_id": run.info.run_id}
    if robust is not None:
        tags.update({"robust_mean": robust[0], "robust_worst": robust[1], "robust_worst_kind": "mirror"})
    version = registry.register(info.model_uri, registry.ONNX_MODEL, tags)
    return str(version.version)


def test_gate_keeps_better_champion_and_records_reasons(mlflow_store, onnx_model_path, tmp_path):
    tracking.configure("gate", uri=mlflow_store)
    policy = registry.GatePolicy(accuracy_floor=0.8, tolerance=0.002)
    v1 = _new_version(onnx_model_path, 0.95)
    first = registry.promote(policy)
    assert first.promoted and str(registry.version_by_alias(registry.ONNX_MODEL, "champion").version) == v1

    v2 = _new_version(onnx_model_path, 0.93)
    worse = registry.promote(policy)
    assert not worse.promoted
    assert str(registry.version_by_alias(registry.ONNX_MODEL, "champion").version) == v1
    assert any(r.startswith("FAIL") and "champion v1" in r for r in worse.reasons)
    mv = mlflow.MlflowClient().get_model_version(registry.ONNX_MODEL, v2)
    assert mv.tags["promotion_decision"] == "rejected" and "FAIL" in mv.tags["promotion_reasons"]
    local = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="promotion", dst_path=str(tmp_path))
    (decision_file,) = [p for p in (tmp_path / "promotion").iterdir() if p.name.startswith(f"decision_v{v2}-")]
    decision = json.loads(decision_file.read_text())
    assert local
    assert decision["promoted"] is False and decision["champion_version"] == v1

    v3 = _new_version(onnx_model_path, 0.949)  # within tolerance of the champion
    assert registry.promote(policy).promoted
    assert str(registry.version_by_alias(registry.ONNX_MODEL, "champion").version) == v3


def test_a_champion_without_int8_takes_the_int8_champion_alias_away(mlflow_store, onnx_model_path):
    """INT8 is registered only when it pays, so a new champion may have none (lite's INT8 is not
    faster): models:/sign-mnist-onnx-int8@champion must then stop answering, not go on serving
    the previous champion's model."""
    tracking.configure("gate", uri=mlflow_store)
    policy = registry.GatePolicy(accuracy_floor=0.8)
    with mlflow.start_run() as run:
        info = mlflow.onnx.log_model(onnx.load(str(onnx_model_path)), name="int8", save_as_external_data=False,
                                     pip_requirements=["onnxruntime"])
    int8 = registry.register(info.model_uri, registry.INT8_MODEL, {"run_id": run.info.run_id})
    v1 = _new_version(onnx_model_path, 0.95)
    registry.tag_version(registry.ONNX_MODEL, v1, {"int8_version": str(int8.version)})
    assert registry.promote(policy).promoted
    assert registry.version_by_alias(registry.INT8_MODEL, "champion").version == int8.version

    v2 = _new_version(onnx_model_path, 0.96)  # no INT8 of its own
    assert registry.promote(policy).promoted
    assert str(registry.version_by_alias(registry.ONNX_MODEL, "champion").version) == v2
    assert registry.version_by_alias(registry.INT8_MODEL, "champion") is None


def test_floor_and_parity_block_promotion_unless_forced(mlflow_store, onnx_model_path):
    tracking.configure("gate", uri=mlflow_store)
    _new_version(onnx_model_path, 0.5)
    low = registry.promote(registry.GatePolicy(accuracy_floor=0.9))
    assert not low.promoted and any("floor" in r for r in low.reasons)
    _new_version(onnx_model_path, 0.99, parity="false")
    assert not registry.promote(registry.GatePolicy(accuracy_floor=0.9)).promoted
    with pytest.raises(ValueError, match="needs a reason"):
        registry.promote(force=True)
    forced = registry.promote(force=True, why="hotfix approved by on-call")
    assert forced.promoted and "FORCED" in forced.reasons[-1] and "hotfix" in forced.reasons[-1]


def test_gate_refuses_a_model_that_breaks_under_shift(mlflow_store, onnx_model_path):
    """Accurate on clean data but fragile (e.g. never trained on left hands): refused on the
    worst-kind floor, and a later challenger must not be less robust than the champion."""
    tracking.configure("gate", uri=mlflow_store)
    policy = registry.GatePolicy(accuracy_floor=0.8, robust_mean_floor=0.85, robust_worst_floor=0.6, robust_tolerance=0.01)
    _new_version(onnx_model_path, 0.999, robust=(0.90, 0.18))
    fragile = registry.promote(policy)
    assert not fragile.promoted
    assert any(r.startswith("FAIL robustness worst kind (mirror) 0.1800") for r in fragile.reasons)

    _new_version(onnx_model_path, 0.99, robust=(0.99, 0.97))
    assert registry.promote(policy).promoted
    _new_version(onnx_model_path, 0.995, robust=(0.985, 0.94))  # more accurate, less robust
    less_robust = registry.promote(policy)
    assert not less_robust.promoted
    assert [r for r in less_robust.reasons if r.startswith("FAIL")] == [
        "FAIL robustness worst kind 0.9400 vs champion v2 0.9700 (mirror; tolerance 0.01)"]
    _new_version(onnx_model_path, 0.99, robust=(0.985, 0.965))  # within the tolerance
    assert registry.promote(policy).promoted


def test_gate_needs_a_robustness_record_but_accepts_a_champion_without_one(mlflow_store, onnx_model_path):
    tracking.configure("gate", uri=mlflow_store)
    _new_version(onnx_model_path, 0.99, robust=None)
    unknown = registry.promote(registry.GatePolicy(accuracy_floor=0.8))
    assert not unknown.promoted and any("no robustness record" in r for r in unknown.reasons)
    registry.promote(force=True, why="champion from before the robustness suite")
    _new_version(onnx_model_path, 0.99, robust=(0.95, 0.9))
    judged = registry.promote(registry.GatePolicy(accuracy_floor=0.8))
    assert judged.promoted and any("has no robustness record: nothing to compare" in r for r in judged.reasons)


def _record(run_id: str, run_dir: str, parity: bool = True, uri: str = "models:/m-does-not-exist") -> RunRecord:
    files = DataFiles("train.csv", "test.csv", False, "a" * 64, "b" * 64)
    return RunRecord(run_id, run_dir, files, Trained(f"{run_dir}/model/model.keras", "h.json", uri, 0.99, 1.0),
                     Evaluated(0.99, 0.99, 1, 100), Exported(f"{run_dir}/onnx/model.onnx", "x" * 64,
                                                             Parity(1.0 if parity else 0.97, 0.0 if parity else 0.3, parity), uri),
                     Robustness(0.95, 0.9, "mirror", 0.99, 100, f"{run_dir}/robustness/robustness.csv"))


def test_failed_parity_registers_nothing(mlflow_store, tmp_path):
    with pytest.raises(ParityError, match="nothing was registered"):
        register_step(_record("run", str(tmp_path), parity=False))
    assert registry.version_by_alias(registry.ONNX_MODEL, "challenger") is None
    assert registry.version_by_alias(registry.KERAS_MODEL, "challenger") is None


def test_registration_failure_keeps_files_and_says_how_to_finish(mlflow_store, tmp_path):
    from sign_mlops.sign_model.pipeline import RegistrationFailed

    tracking.configure("registration-failure", uri=mlflow_store)
    with mlflow.start_run() as run:
        pass
    run_dir = tmp_path / "runs" / run.info.run_id
    with pytest.raises(RegistrationFailed, match=f"register --from {run_dir}"):
        register_step(_record(run.info.run_id, str(run_dir)))


def test_register_from_a_run_folder_is_idempotent(mlflow_store, tmp_path, onnx_model_path):
    """A run whose registration failed is finished by 'sign-mlops register --from' without
    retraining; running it twice registers nothing twice."""
    from typer.testing import CliRunner

    from sign_mlops.cli.app import app

    tracking.configure("register-from", uri=mlflow_store)
    with mlflow.start_run() as run:
        mlflow.set_tag("validation_passed", "true")
        info = mlflow.onnx.log_model(onnx.load(str(onnx_model_path)), name="onnx_model",
                                     pip_requirements=["onnxruntime"])
    run_dir = tmp_path / "runs" / run.info.run_id
    record = _record(run.info.run_id, str(run_dir), uri=info.model_uri)
    record.save()
    assert RunRecord.load(run_dir) == record
    runner = CliRunner()
    first = runner.invoke(app, ["register", "--from", str(run_dir), "--accuracy-floor", "0.5"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["register", "--from", str(run_dir), "--accuracy-floor", "0.5"])
    assert second.exit_code == 0, second.output
    client = mlflow.MlflowClient()
    for name in (registry.ONNX_MODEL, registry.KERAS_MODEL):
        versions = client.search_model_versions(f"name='{name}'")
        assert len(versions) == 1 and versions[0].tags["run_id"] == run.info.run_id
    assert str(registry.version_by_alias(registry.ONNX_MODEL, "champion").version) == "1"
    missing = runner.invoke(app, ["register", "--from", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such folder" in missing.output  # a usage error
    (tmp_path / "empty").mkdir()
    unfinished = runner.invoke(app, ["register", "--from", str(tmp_path / "empty")])
    assert unfinished.exit_code == 2 and "run_record.json not found" in unfinished.output


def test_unreachable_tracking_server_is_reported_clearly(monkeypatch):
    from sign_mlops.sign_model.tracking import TrackingUnavailable, configure

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    try:
        with pytest.raises(TrackingUnavailable, match="not reachable.*MLFLOW_TRACKING_URI"):
            configure("x", uri="http://127.0.0.1:9")
    finally:
        mlflow.set_tracking_uri(None)


def test_experiment_artifacts_live_next_to_the_store_and_a_split_is_reported(tmp_path, caplog):
    from sign_mlops.sign_model import tracking

    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    try:
        tracking.configure("home-experiment", uri=uri)
        location = mlflow.get_experiment_by_name("home-experiment").artifact_location
        assert location == (tmp_path / "outputs" / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment("old-experiment", artifact_location=(tmp_path / "elsewhere").as_uri())
        logger = logging.getLogger("sign_mlops.sign_model.tracking")  # the CLI may have stopped propagation
        logger.addHandler(caplog.handler)
        try:
            with caplog.at_level("WARNING", logger="sign_mlops.sign_model.tracking"):
                tracking.configure("old-experiment", uri=uri)
                tracking.configure("old-experiment", uri=uri)
        finally:
            logger.removeHandler(caplog.handler)
        warnings = [r for r in caplog.records if "keeps its artifacts" in r.getMessage()]
        assert len({id(r) for r in warnings}) == 1 and "elsewhere" in warnings[0].getMessage()  # warned once
    finally:
        mlflow.set_tracking_uri(None)


def test_models_lists_versions_and_a_rollback_is_recorded_like_a_decision(mlflow_store, onnx_model_path, tmp_path,
                                                                           monkeypatch):
    """`sign-mlops models` answers "which model is serving, and was it better?"; `promote
    --version N --why` moves the champion back, the INT8 alias follows, the decision is recorded
    and a model.promoted event goes out."""
    import prefect.events
    from typer.testing import CliRunner

    from sign_mlops.cli.app import app

    events = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kwargs: events.append(kwargs))
    tracking.configure("rollback", uri=mlflow_store)
    policy = registry.GatePolicy(accuracy_floor=0.8)
    v1 = _new_version(onnx_model_path, 0.95)
    with mlflow.start_run() as run:  # v1 has an INT8 variant
        info = mlflow.onnx.log_model(onnx.load(str(onnx_model_path)), name="int8", save_as_external_data=False,
                                     pip_requirements=["onnxruntime"])
    int8 = registry.register(info.model_uri, registry.INT8_MODEL, {"run_id": run.info.run_id})
    registry.tag_version(registry.ONNX_MODEL, v1, {"int8_version": str(int8.version)})
    assert registry.promote(policy).promoted
    v2 = _new_version(onnx_model_path, 0.90)
    assert not registry.promote(policy).promoted
    v3 = _new_version(onnx_model_path, 0.96)
    assert registry.promote(policy).promoted
    assert registry.version_by_alias(registry.INT8_MODEL, "champion") is None  # v3 has no INT8 variant

    runner = CliRunner()
    listed = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    lines = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if line.count("│") > 5}
    assert "champion" in lines[v3] and "promoted" in lines[v3] and "96.00%" in lines[v3]
    assert "rejected" in lines[v2] and f"v{v2} rejected: FAIL test accuracy 0.9000 vs champion" in listed.output
    assert f"v{v3} promoted: all checks passed" in listed.output
    assert f"v{int8.version}" in lines[v1]

    refused = runner.invoke(app, ["promote", "--version", v1])
    assert refused.exit_code == 2 and "--why" in refused.output
    missing = runner.invoke(app, ["promote", "--version", "99", "--why", "x"])
    assert missing.exit_code == 1 and "no version 99" in missing.output

    back = runner.invoke(app, ["promote", "--version", v1, "--why", "v3 misreads left hands in production"])
    assert back.exit_code == 0, back.output
    assert str(registry.version_by_alias(registry.ONNX_MODEL, "champion").version) == v1
    assert str(registry.version_by_alias(registry.INT8_MODEL, "champion").version) == str(int8.version)
    tags = mlflow.MlflowClient().get_model_version(registry.ONNX_MODEL, v1).tags
    assert tags["promotion_decision"] == "pinned" and "v3 misreads left hands" in tags["promotion_reasons"]
    assert "champion was v3" in tags["promotion_reasons"] and tags["promotion_decided_at"]
    assert events[-1]["event"] == "sign-mlops.model.promoted" and events[-1]["payload"]["version"] == v1
    assert events[-1]["payload"]["champion_before"] == v3


def test_a_first_model_under_the_floor_says_how_to_get_a_champion(mlflow_store, onnx_model_path, tmp_path):
    """The smoke preset on the real file scores ~80 %, under the 0.90 floor: the refusal names the
    floor, the score and the commands out; scoring the missing champion says the same, not "train
    first"; and the command it names works."""
    from sign_mlops.flows.model_source import load_scoring_model
    from sign_mlops.serving.model import ModelError

    tracking.configure("first-under-floor", uri=mlflow_store)
    version = _new_version(onnx_model_path, 0.8012)
    refused = registry.promote(registry.GatePolicy())
    assert not refused.promoted
    line = next(r for r in refused.reasons if "test accuracy" in r)
    assert "0.8012 vs floor 0.9000" in line and "'sign-mlops train'" in line
    assert "'sign-mlops promote --accuracy-floor 0.80'" in line
    with pytest.raises(ModelError) as missing:
        load_scoring_model("models:/sign-mnist-onnx@champion", tmp_path / "cache")
    text = str(missing.value)
    assert "has 1 version(s) but none is 'champion'" in text and "sign-mlops promote --version N" in text
    assert "sign-mlops models" in text
    assert registry.promote(registry.GatePolicy(accuracy_floor=0.80)).promoted
    assert str(registry.version_by_alias(registry.ONNX_MODEL, "champion").version) == version
