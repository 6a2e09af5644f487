"""The training flow end to end on small synthetic data, tracked in a temporary MLflow store."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pytest

from sign_mlops.flows import final_result
from sign_mlops.flows.training import training_flow
from sign_mlops.sign_model.gate import GatePolicy
from sign_mlops.sign_model.pipeline import ValidationFailed
from sign_mlops.sign_model.registry import CHAMPION, KERAS_MODEL, ONNX_MODEL, version_by_alias

SMOKE = {"epochs": 4, "hand_detector": 4, "hand_detector_epochs": 2}


@pytest.fixture(scope="module")
def flow_home(tmp_path_factory, synthetic_files):
    home = tmp_path_factory.mktemp("home")
    (home / "data").mkdir()
    shutil.copy(synthetic_files[0], home / "data" / "sign_mnist_train.csv")
    shutil.copy(synthetic_files[1], home / "data" / "sign_mnist_test.csv")
    return home


@pytest.fixture(scope="module")
def flow_result(flow_home, tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    policy = GatePolicy(accuracy_floor=0.3, robust_mean_floor=0.2, robust_worst_floor=0.0, robust_tolerance=1.0)
    result = training_flow(preset="smoke", overrides=SMOKE, home=str(flow_home), policy=policy, int8=True)
    yield result, uri
    mp.undo()


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_flow_discovers_kaggle_files_in_data_dir(flow_result, flow_home):
    result, _ = flow_result
    assert result.data.synthetic is False
    assert result.data.train == str(flow_home / "data" / "sign_mnist_train.csv")


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_run_holds_params_metrics_inputs_pictures_and_model(flow_result):
    result, uri = flow_result
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(result.run_id)
    assert run.data.params["architecture"] == "tiny_cnn" and run.data.params["epochs"] == "4"
    assert {"test/accuracy", "test/macro_f1", "train/seconds", "val/best_accuracy", "parity/argmax_agreement",
            "int8/accuracy_loss_points", "data/train_near_duplicate_rate", "test/f1/A", "test/mean_confidence",
            "test/low_confidence", "test/calibration_error"} <= set(run.data.metrics)
    namespaces = {name.split("/")[0] for name in run.data.metrics}
    assert namespaces <= {"train", "val", "test", "data", "parity", "int8", "robust", "model", "hand"}, namespaces
    client = mlflow.MlflowClient()
    per_epoch = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert len(per_epoch) == run.data.metrics["train/epochs_run"] and [m.step for m in per_epoch][0] == 0
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == len(per_epoch)
    contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(contexts) == {"training", "evaluation"}
    assert run.data.tags["train_sha256"].startswith(contexts["training"].digest)
    artifacts = {a.path for folder in ("figures", "evaluation", "validation")
                 for a in client.list_artifacts(run.info.run_id, folder)}
    for name in ("figures/samples_train.png", "figures/class_counts_test.png", "evaluation/test_predictions.csv",
                 "evaluation/metrics.json", "validation/validation_report.json"):
        assert name in artifacts
    # the pictures people compare sit at the root: MLflow's compare view lists common root files only
    root_files = {a.path for a in client.list_artifacts(run.info.run_id) if not a.is_dir}
    assert {"confusion_matrix.png", "misclassified.png", "training_curves.png", "per_class_counts.png",
            "robustness_heatmap.png"} <= root_files
    assert run.data.tags["validation_passed"] == "true" and run.data.tags["parity_passed"] == "true"


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_the_hand_detectors_check_is_in_the_run_and_the_result(flow_result):
    """Whether the left-hand detector is in the model is never silent: tag, metrics, result table."""
    from sign_mlops.cli.render import result_rows

    result, uri = flow_result
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(result.run_id)
    assert {"hand/val_right_accuracy", "hand/val_left_accuracy", "hand/used"} <= set(run.data.metrics)
    assert run.data.tags["hand_detector"] == result.trained.hand_detector
    assert ("NOT used" in result.trained.hand_detector) == (run.data.metrics["hand/used"] == 0.0)
    assert ("left-hand detector", result.trained.hand_detector) in result_rows(result)


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_the_result_names_the_int8_champion_only_when_there_is_one(flow_result):
    from dataclasses import replace

    from sign_mlops.cli.render import result_rows

    result, _ = flow_result
    uri = "models:/sign-mnist-onnx-int8@champion"

    def rows(int8_champion_uri):
        return dict(result_rows(replace(result, promotion=replace(result.promotion, int8_champion_uri=int8_champion_uri))))

    assert rows(uri)["champion, INT8"].startswith(uri)
    assert "champion, INT8" not in rows(None)


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_every_run_logs_the_robustness_suite_and_the_gate_reads_it(flow_result):
    from sign_mlops.sign_model.robustness import KINDS, SEVERITIES

    result, uri = flow_result
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    run = mlflow.get_run(result.run_id)
    robust = {k: v for k, v in run.data.metrics.items() if k.startswith("robust/")}
    assert {f"robust/{k}/{s}" for k in KINDS for s in SEVERITIES} | {"robust/mean", "robust/worst", "robust/clean",
                                                                      "robust/errors_flagged"} == set(robust)
    assert robust["robust/errors_flagged"] == pytest.approx(result.robustness.errors_flagged)
    assert robust["robust/mean"] == pytest.approx(result.robustness.mean)
    assert {a.path for a in client.list_artifacts(result.run_id, "robustness")} == {
        "robustness/robustness.csv", "robustness/report.json"}
    version = version_by_alias(ONNX_MODEL, CHAMPION)
    assert float(version.tags["robust_worst"]) == pytest.approx(result.robustness.worst, abs=1e-6)
    assert version.tags["robust_worst_kind"] == result.robustness.worst_kind in KINDS
    assert any(r.startswith("PASS robustness worst kind") for r in result.promotion.reasons)


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_registered_models_and_versions_carry_a_model_card(flow_result):
    result, uri = flow_result
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    card = client.get_model_version(ONNX_MODEL, result.registered.onnx_version).description
    assert "**tiny_cnn**" in card and result.run_id in card and result.data.train_sha256[:12] in card
    assert f"{100 * result.evaluated.test_accuracy:.2f} %" in card and "raw 0-255 pixels" in card
    assert client.get_registered_model(ONNX_MODEL).description.startswith("The Keras model exported to ONNX")
    assert client.get_registered_model(KERAS_MODEL).description.startswith("Sign Language MNIST classifier")
    onnx_info = mlflow.models.get_model_info(result.exported.onnx_model_uri)
    assert onnx_info.saved_input_example_info is not None  # the UI shows what goes in


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_logged_keras_model_reproduces_evaluation_accuracy(flow_result, synthetic_datasets):
    result, uri = flow_result
    mlflow.set_tracking_uri(uri)
    version = version_by_alias(KERAS_MODEL, CHAMPION)
    model = mlflow.keras.load_model(f"models:/{KERAS_MODEL}/{version.version}")
    test = synthetic_datasets[1]
    probs = model.predict(test.images[..., None].astype(np.float32), verbose=0)  # raw 0-255 pixels
    from sign_mlops.sign_model.train import to_indices

    accuracy = float((probs.argmax(1) == to_indices(test.labels)).mean())
    assert accuracy == pytest.approx(result.evaluated.test_accuracy, abs=1e-9)


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_champion_onnx_loads_and_names_its_letters(flow_result, tmp_path):
    result, uri = flow_result
    mlflow.set_tracking_uri(uri)
    from sign_mlops.serving.model import resolve

    assert result.promotion.promoted
    model = resolve(f"models:/{ONNX_MODEL}@{CHAMPION}", tmp_path / "cache")
    assert model.letters[0] == "A" and model.letters[-1] == "Y" and "J" not in model.letters
    assert model.version == result.registered.onnx_version
    assert model.sha256 == version_by_alias(ONNX_MODEL, CHAMPION).tags["onnx_sha256"]


def test_defective_data_stops_the_flow_before_training(tmp_path, synthetic_files, mlflow_store):
    lines = synthetic_files[0].read_bytes().split(b"\r\n")
    cells = lines[5].split(b",")
    cells[0] = b"9"
    lines[5] = b",".join(cells)
    bad = tmp_path / "bad_train.csv"
    bad.write_bytes(b"\r\n".join(lines))
    state = training_flow(train=str(bad), test=str(synthetic_files[1]), preset="smoke", home=str(tmp_path),
                          return_state=True)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # what the Prefect UI and automations see
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.is_failed() and "line 6" in run.state.message
    with pytest.raises(ValidationFailed, match="line 6"):
        final_result(state)
    runs = mlflow.search_runs(experiment_names=["sign-language-mnist"], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert "train/seconds" not in runs[0].data.metrics
    assert version_by_alias(ONNX_MODEL, "challenger") is None


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_unchanged_data_and_config_skip_retraining(flow_result, flow_home):
    from sign_mlops.sign_model.registry import champion_matches
    from sign_mlops.sign_model.train import PRESETS, TrainConfig

    result, _ = flow_result
    again = training_flow(preset="smoke", overrides=SMOKE, home=str(flow_home), force=False)
    assert again.skipped is True and "equal champion" in again.reason
    changed = TrainConfig.from_dict({**PRESETS["smoke"].to_dict(), **SMOKE, "epochs": 5}).to_dict()
    sha = mlflow.get_run(result.run_id).data.tags["train_sha256"]
    same, reason = champion_matches(sha, changed)
    assert not same and "['epochs']" in reason
    assert "training data changed" in champion_matches("0" * 64, changed)[1]


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_one_name_and_links_in_both_tools(flow_result):
    from prefect.artifacts import Artifact
    from prefect.client.orchestration import get_client

    result, uri = flow_result
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(result.run_id)
    assert run.info.run_name == result.run_name and result.run_name.startswith("train-smoke-")
    assert result.data.train_sha256[:8] in result.run_name
    flow_run_id = run.data.tags["prefect.flow_run_id"]
    assert run.data.tags["prefect.flow_run_url"].endswith(f"/runs/flow-run/{flow_run_id}")
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run_id).name == result.run_name
    story = Artifact.get("training-result")
    assert story is not None and "test accuracy" in story.data and "Promotion gate" in story.data
    assert "| robustness (moderate shifts) | mean " in story.data
    assert "of its errors under the low-confidence threshold" in story.data  # does the flag still work under shift
    assert "| test confidence | mean " in story.data
    assert "max \\|dp\\| " in story.data  # escaped: a bare | would end the table cell
    assert f"/runs/{result.run_id}" in Artifact.get("mlflow-run").data


@pytest.mark.slow  # trains and registers through the whole flow (the module's run is shared)
def test_library_log_messages_reach_the_flow_run_log(flow_result):
    """sign_model's own logging (the grouped split, the robustness summary, registration) is in
    the Prefect run's log, next to the flow's step lines."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    result, uri = flow_result
    mlflow.set_tracking_uri(uri)
    flow_run_id = mlflow.get_run(result.run_id).data.tags["prefect.flow_run_id"]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
    by_logger = {}
    for entry in logs:
        by_logger.setdefault(entry.name, []).append(entry.message)
    assert any(m.startswith("grouped split:") for m in by_logger.get("sign_mlops.sign_model.train", []))
    assert any(m.startswith("robustness: moderate mean") for m in by_logger.get("sign_mlops.sign_model.pipeline", []))
    assert any("as challenger" in m for m in by_logger.get("sign_mlops.sign_model.registry", []))
