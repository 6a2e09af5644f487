"""The scoring-only install (`pip install sign-mlops`): scores without TensorFlow, Keras,
tf2onnx, MLflow or Prefect, and says which extra a training command needs. These tests run in
that environment (`scripts/test-scorer-light.sh`, part of .ci/run) and skip in the full one."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import kaggle_rows, rows_to_csv, write_text

HEAVY = ("tensorflow", "keras", "tf2onnx", "prefect", "mlflow", "pandera", "matplotlib")
light = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                           reason="the full install is present; these check the scoring-only install")


@light
def test_heavy_packages_are_not_installed():
    assert [m for m in HEAVY if importlib.util.find_spec(m) is not None] == []


@light
def test_score_works_and_imports_nothing_heavy(tmp_path, onnx_model_path):
    path = write_text(tmp_path / "a.csv", rows_to_csv(kaggle_rows(20)))
    code = ("import sys\nfrom sign_mlops.cli.app import app\n"
            f"try:\n    app(['score', r'{path}', '--model', r'{onnx_model_path}', '--out', r'{tmp_path / 'out'}'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\nassert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "a.summary.json").exists()


@light
@pytest.mark.parametrize("args, extra", [(["train"], "train"), (["promote"], "train"),
                                         (["score-inbox"], "orchestrate"), (["serve", "--only", "scoring"], "orchestrate")])
def test_training_commands_say_which_extra_is_missing(args, extra):
    done = subprocess.run([sys.executable, "-m", "sign_mlops.cli.app", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"pip install 'sign-mlops[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr
