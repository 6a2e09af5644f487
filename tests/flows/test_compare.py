"""`sign-mlops compare A B --data FILE`: two models on the operator's own labelled file."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import onnx
from onnx import numpy_helper
from typer.testing import CliRunner

from sign_mlops.cli.app import app
from sign_mlops.sign_model import registry, tracking
from tests.conftest import kaggle_rows, rows_to_csv, write_text


def _shifted_model(onnx_path, target):
    """The same network with its last layer's outputs rotated by one letter: every prediction
    moves to the next letter, so it is wrong wherever the original is right."""
    model = onnx.load(str(onnx_path))
    rotated = 0
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.shape and values.shape[-1] == 24:
            init.CopyFrom(numpy_helper.from_array(np.roll(values, 1, axis=-1), init.name))
            rotated += 1
    assert rotated >= 1
    onnx.save(model, str(target))
    return target


def _table_row(output: str, label: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.strip().startswith("│ " + label) or label in line)
    return [cell.strip() for cell in line.split("│")[1:-1]]


def test_compare_scores_both_models_on_the_same_rows(onnx_model_path, synthetic_files, tmp_path):
    """A model against a copy that predicts the next letter: the table, the JSON and the PNG say
    which is right where, per letter, and that they never agree; bad rows are counted, not compared."""
    shifted = _shifted_model(onnx_model_path, tmp_path / "shifted.onnx")
    data = synthetic_files[1]
    extra = write_text(tmp_path / "with-bad.csv", data.read_text() + "3," + ",".join(["x"] * 784) + "\n")
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", str(onnx_model_path), str(shifted), "--data", str(extra),
                                      "--out", str(out), "--pairs", "1", "--robust-rows", "200"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["rows"] == 480 and saved["rejected"] == 1
    a, b = saved["a"], saved["b"]
    assert a["accuracy"] > 0.8 and b["accuracy"] < 0.2
    assert saved["agreement"] < 0.05
    assert saved["only_a_right"] + saved["both_right"] == round(a["accuracy"] * 480)
    assert set(a["per_class"]) == set(b["per_class"]) and len(a["per_class"]) == 24
    assert a["rows_per_second"] > 0 and b["rows_per_second"] > 0
    assert 0 <= b["robust_mean"] < a["robust_mean"] <= 1
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "agreement (same letter predicted)" in result.output and "480 labelled rows (1 rejected" in result.output
    assert f"{100 * a['accuracy']:.2f}%" in " ".join(_table_row(result.output, "accuracy"))
    assert not list(out.glob("compare-*"))  # the scorer's scratch outputs are gone


def test_compare_refuses_what_it_cannot_compare(onnx_model_path, tmp_path):
    runner = CliRunner()
    unlabelled = write_text(tmp_path / "unlabelled.csv", rows_to_csv(kaggle_rows(20)[:, 1:], newline="\n",
                                                                     header=",".join(f"pixel{i}" for i in range(1, 785))))
    refused = runner.invoke(app, ["compare", str(onnx_model_path), str(onnx_model_path), "--data", str(unlabelled),
                                  "--out", str(tmp_path / "o")])
    assert refused.exit_code == 2 and "no 'label' column" in refused.output
    missing = runner.invoke(app, ["compare", "champion", "challenger", "--data", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    labelled = write_text(tmp_path / "l.csv", rows_to_csv(kaggle_rows(20), newline="\n"))
    no_model = runner.invoke(app, ["compare", str(tmp_path / "none.onnx"), str(onnx_model_path), "--data",
                                   str(labelled), "--out", str(tmp_path / "o")])
    assert no_model.exit_code == 1 and "none.onnx" in no_model.output and "Traceback" not in no_model.output


def test_compare_champion_with_a_version_and_log_it_to_a_run(mlflow_store, onnx_model_path, synthetic_files,
                                                             tmp_path):
    """Names an operator uses (`champion`, `2`) resolve through the registry; --run logs the
    metrics and both files to that run."""
    tracking.configure("compare", uri=mlflow_store)
    versions = []
    for path in (onnx_model_path, _shifted_model(onnx_model_path, tmp_path / "shifted.onnx")):
        with mlflow.start_run() as run:
            info = mlflow.onnx.log_model(onnx.load(str(path)), name="onnx_model", save_as_external_data=False,
                                         pip_requirements=["onnxruntime"])
        versions.append(registry.register(info.model_uri, registry.ONNX_MODEL, {"run_id": run.info.run_id}).version)
    mlflow.MlflowClient().set_registered_model_alias(registry.ONNX_MODEL, "champion", str(versions[0]))
    with mlflow.start_run() as log_run:
        pass
    result = CliRunner().invoke(app, ["compare", "champion", f"v{versions[1]}", "--data", str(synthetic_files[1]),
                                      "--out", str(tmp_path / "cmp"), "--pairs", "1", "--robust-rows", "100",
                                      "--run", log_run.info.run_id], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert (saved["a"]["version"], saved["b"]["version"]) == (str(versions[0]), str(versions[1]))
    logged = mlflow.MlflowClient().get_run(log_run.info.run_id)
    assert logged.data.metrics["compare/a/accuracy"] == saved["a"]["accuracy"]
    assert logged.data.metrics["compare/agreement"] == saved["agreement"]
    files = {f.path for f in mlflow.MlflowClient().list_artifacts(log_run.info.run_id, "compare")}
    assert files == {"compare/comparison.json", "compare/comparison.png"}
