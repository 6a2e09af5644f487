"""The command line: help, synth, validate (exit codes, named lines), split."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sign_mlops.cli.app import app

runner = CliRunner()


def test_help_lists_every_step():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("data", "train", "promote", "score", "score-inbox", "serve"):
        assert command in result.output


def test_synth_validate_and_a_planted_error(tmp_path):
    assert runner.invoke(app, ["data", "synth", "--out", str(tmp_path), "--train-rows", "480", "--test-rows", "96"]).exit_code == 0
    train, test = tmp_path / "sign_mnist_train.csv", tmp_path / "sign_mnist_test.csv"
    ok = runner.invoke(app, ["data", "validate", str(train), "--test", str(test), "--report", str(tmp_path / "r.json")])
    assert ok.exit_code == 0, ok.output
    assert "validation passed" in ok.output and (tmp_path / "r.json").exists()
    lines = train.read_bytes().split(b"\r\n")
    lines[3] = b"9" + lines[3][lines[3].index(b","):]
    train.write_bytes(b"\r\n".join(lines))
    bad = runner.invoke(app, ["data", "validate", str(train)])
    assert bad.exit_code == 1 and "line 4" in bad.output and "label_set" in bad.output


def test_split_writes_a_grouped_holdout(tmp_path):
    runner.invoke(app, ["data", "synth", "--out", str(tmp_path), "--train-rows", "480", "--test-rows", "24"])
    result = runner.invoke(app, ["data", "split", str(tmp_path / "sign_mnist_train.csv"), "--out", str(tmp_path / "h")])
    assert result.exit_code == 0, result.output
    train_rows = (tmp_path / "h" / "sign_mnist_train.csv").read_bytes().count(b"\r\n") - 1
    test_rows = (tmp_path / "h" / "sign_mnist_test.csv").read_bytes().count(b"\r\n") - 1
    assert train_rows + test_rows == 480 and 24 <= test_rows <= 120


def test_score_with_a_missing_model_says_what_to_do(tmp_path):
    result = runner.invoke(app, ["score", str(tmp_path / "x.csv"), "--model", str(tmp_path / "none.onnx")])
    assert result.exit_code == 1 and "not found" in result.output


def test_validate_report_pointing_at_a_folder(tmp_path, synthetic_files):
    result = runner.invoke(app, ["data", "validate", str(synthetic_files[0]), "--report", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output


def test_train_with_a_missing_file_and_inbox_that_is_a_file(tmp_path):
    result = runner.invoke(app, ["train", "--train", str(tmp_path / "none.csv"), "--test", str(tmp_path / "none.csv")])
    assert result.exit_code == 2 and "--train" in result.output and "file not found" in result.output
    taken = tmp_path / "inbox"
    taken.write_text("x")
    result = runner.invoke(app, ["score-inbox", "--inbox", str(taken), "--outbox", str(tmp_path / "out")])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output


def test_promote_gets_the_gate_options_as_one_policy(monkeypatch):
    """The gate's options are declared once (GatePolicy) and reach the command whole."""
    import sign_mlops.sign_model.registry as registry
    import sign_mlops.sign_model.tracking as tracking
    from sign_mlops.sign_model.gate import GatePolicy

    seen = {}

    def fake_promote(policy, force=False, why=None):
        seen["policy"] = policy
        return registry.Decision(registry.ONNX_MODEL, "1", None, promoted=False, forced=False, reasons=["FAIL x"])

    monkeypatch.setattr(tracking, "configure", lambda *a, **k: "sqlite:///unused")
    monkeypatch.setattr(registry, "promote", fake_promote)
    monkeypatch.setattr(registry, "version_by_alias", lambda *a: None)
    result = runner.invoke(app, ["promote", "--accuracy-floor", "0.8", "--robust-worst-floor", "0.5"])
    assert result.exit_code == 3, result.output
    assert seen["policy"] == GatePolicy(accuracy_floor=0.8, robust_worst_floor=0.5)


def test_promote_without_a_prefect_server_sends_no_event(monkeypatch):
    """No PREFECT_API_URL: the decision's event has no one to hear it, and Prefect would start a
    temporary server just to take it (34 s and a traceback here); it is skipped instead."""
    import prefect.events
    from prefect.settings import PREFECT_API_URL, temporary_settings

    import sign_mlops.sign_model.registry as registry
    import sign_mlops.sign_model.tracking as tracking

    sent = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kwargs: sent.append(kwargs))
    monkeypatch.setattr(tracking, "configure", lambda *a, **k: "sqlite:///unused")
    monkeypatch.setattr(registry, "promote", lambda policy, force=False, why=None: registry.Decision(
        registry.ONNX_MODEL, "2", "1", promoted=True, forced=False, reasons=["PASS all"]))
    monkeypatch.setattr(registry, "version_by_alias", lambda *a: None)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        quiet = runner.invoke(app, ["promote"])
    assert quiet.exit_code == 0, quiet.output
    assert sent == []
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        heard = runner.invoke(app, ["promote"])
    assert heard.exit_code == 0 and [e["event"] for e in sent] == ["sign-mlops.model.promoted"]


def test_train_keeps_its_own_option_names_beside_the_gate_options(monkeypatch, tmp_path):
    from dataclasses import fields

    from sign_mlops.sign_model.gate import GatePolicy

    help_text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"}).output
    for option in ("--train", "--test", "--preset", "--config", "--skip-if-unchanged", "--no-int8",
                   *(f"--{f.name.replace('_', '-')}" for f in fields(GatePolicy))):
        assert option in help_text, option
    out_of_range = runner.invoke(app, ["train", "--accuracy-floor", "1.5"])
    assert out_of_range.exit_code == 2 and "accuracy-floor" in out_of_range.output
    missing = runner.invoke(app, ["train", "--train", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "--train" in missing.output and "file not found" in missing.output


# Every command's argument handling: a bad argument is refused with a short message and the
# documented exit code (2 usage, 1 data/model), never a traceback.
BAD_ARGUMENTS = [
    (["data", "synth", "--train-rows", "0"], 2, "--train-rows"),
    (["data", "synth", "--test-rows", "-1"], 2, "--test-rows"),
    (["data", "split", "{tmp}/none.csv"], 2, "file not found"),
    (["data", "split", "{tmp}/none.csv", "--fraction", "0.9"], 2, "--fraction"),
    (["data", "validate", "{tmp}/none.csv"], 2, "file not found"),
    (["data", "explore", "{tmp}/none.csv"], 2, "file not found"),
    (["train", "--preset", "nope"], 2, "--preset"),
    (["train", "--test", "{tmp}"], 2, "is a folder"),
    (["register", "--from", "{tmp}/none"], 2, "--from"),
    (["promote", "--force"], 2, "--why"),
    (["promote", "--tolerance", "-0.1"], 2, "--tolerance"),
    (["score", "{tmp}/a.csv", "--model", "{tmp}/none.onnx"], 1, "not found"),
    (["score", "{tmp}/a.csv", "--chunk-rows", "0"], 2, "--chunk-rows"),
    (["score", "{tmp}/*.nothing"], 1, "no file matches"),
    (["score-inbox", "--inbox", "{tmp}/a.csv"], 2, "is a file"),
    (["score-inbox", "--settle-seconds", "-1"], 2, "--settle-seconds"),
    (["serve", "--only", "nothing"], 2, "--only"),
    (["models", "--limit", "0"], 2, "--limit"),
    (["compare", "champion", "challenger", "--data", "{tmp}/none.csv"], 2, "no such file"),
    (["compare", "champion", "challenger", "--data", "{tmp}/a.csv", "--pairs", "0"], 2, "--pairs"),
    (["promote", "--version", "3"], 2, "--why"),
    (["sweep", "{tmp}/none.yaml"], 2, "no such file"),
    (["sweep", "{tmp}/a.csv"], 2, "a.csv"),  # not a sweep file: one line naming it
    (["sweep", "{tmp}/a.csv", "--workers", "0"], 2, "--workers"),
]


@pytest.mark.parametrize("args, code, message", BAD_ARGUMENTS, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _, _) in
                                                                    enumerate(BAD_ARGUMENTS)])
def test_bad_arguments_are_refused_in_a_line(args, code, message, tmp_path):
    (tmp_path / "a.csv").write_text("label,pixel1\n")
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def _commands(group, path=()):
    """Every command of the CLI with its path, e.g. ("data", "synth")."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (Typer vendors its own click)
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_help_shows_the_documented_defaults():
    """Rich reads '[default: …]' in a help string as markup and drops it; every one must show."""
    import re

    import typer.main

    help_text = runner.invoke(app, ["score", "--help"], env={"COLUMNS": "200"}).output
    assert "[default: <home>/outputs/scores]" in help_text
    documented = 0
    for path, command in _commands(typer.main.get_command(app)):
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).output
        for param in command.params:
            for default in re.findall(r"\[default: [^\]]*\]", (getattr(param, "help", None) or "").replace("\\[", "[")):
                documented += 1
                assert default in shown, (path, param.name)
    assert documented >= 6


# A usage error is refused before TensorFlow or MLflow is imported: no start-up lines, exit 2, one
# line on stderr. Run as a real process, with TensorFlow's own logging turned fully on.
PROBE = ("import sys\nfrom sign_mlops.cli.app import app\ntry:\n    app(sys.argv[1:])\nfinally:\n"
         "    print('imported:', [m for m in ('tensorflow', 'mlflow') if m in sys.modules], file=sys.stderr)\n")
USAGE_ERRORS = [
    ["train", "--train", "{tmp}/none.csv"],
    ["train", "--test", "{tmp}"],
    ["register", "--from", "{tmp}/none"],
    ["register", "--from", "{tmp}/empty-run"],
    ["promote", "--force"],
    ["data", "validate", "{tmp}/none.csv"],
    ["data", "validate", "{tmp}/a.csv", "--test", "{tmp}/none.csv"],
    ["data", "explore", "{tmp}"],
    ["data", "split", "{tmp}/none.csv"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=[" ".join(a) for a in USAGE_ERRORS])
def test_usage_errors_exit_2_before_any_heavy_import(args, tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "a.csv").write_text("label,pixel1\n1,2\n")
    (tmp_path / "empty-run").mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", PROBE, *(a.format(tmp=tmp_path) for a in args)],
                          capture_output=True, text=True, env=env, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert lines[-1] == "imported: []", done.stderr
    assert len(lines) == 2 and lines[0].startswith("error: "), done.stderr
    assert not any(word in done.stderr.lower() for word in ("onednn", "cuda", "tensorflow", "traceback"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args", [["promote"], ["train", "--preset", "smoke"]], ids=["promote", "train"])
def test_a_dead_tracking_server_is_one_short_line(args, tmp_path):
    import os
    import subprocess
    import sys

    uri = f"http://127.0.0.1:{_free_port()}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "SIGN_MLOPS_HOME": str(tmp_path), "COLUMNS": "200"}
    cli = str(Path(sys.executable).with_name("sign-mlops"))
    done = subprocess.run([cli, *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line == (f"error: MLflow tracking server {uri} is not reachable (connection refused); "
                    "start it or set MLFLOW_TRACKING_URI."), line
    assert len(line) < 200
