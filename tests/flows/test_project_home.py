"""All state under the project home: a smoke run and a registry score started from another
directory leave that directory empty, and the MLflow artifacts sit under <home>/outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_run_and_score_write_nothing_outside_home(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SIGN_MLOPS_", "PREFECT_API_URL"))}
    env.update(SIGN_MLOPS_HOME=str(home), PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "sign_mlops.cli.app"]
    trained = subprocess.run([*cli, "train", "--preset", "smoke", "--accuracy-floor", "0.3"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert "tiny_cnn" in trained.stdout and "epoch   1/3" in trained.stdout
    assert "cuInit" not in trained.stderr and "oneDNN" not in trained.stderr
    scored = subprocess.run([*cli, "score", str(home / "outputs" / "synthetic-data" / "sign_mnist_test.csv")], cwd=elsewhere,
                            env=env, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert list(elsewhere.iterdir()) == []
    assert (home / "outputs" / "scores" / "sign_mnist_test.summary.json").exists()
    assert list((home / "outputs" / "mlartifacts").rglob("*.onnx"))
    assert list((home / "outputs" / "model-cache").rglob("*.onnx"))


@pytest.mark.slow
def test_errors_inside_the_flow_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("label,pixel1\n1,2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SIGN_MLOPS_", "PREFECT_API_URL"))}
    env.update(SIGN_MLOPS_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "sign_mlops.cli.app", "train", "--preset", "smoke", "--train", str(bad),
                           "--test", str(bad)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr and "error: validation failed" in done.stderr
    env["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    done = subprocess.run([sys.executable, "-m", "sign_mlops.cli.app", "train", "--preset", "smoke"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "not reachable" in done.stderr and "Traceback" not in done.stderr
