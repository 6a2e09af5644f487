"""Inbox scoring: never twice for the same model, failures moved aside, recovery after a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sign_mlops.flows import final_result
from sign_mlops.flows.scoring import inbox_scoring_flow
from sign_mlops.serving import inbox as inbox_module
from tests.conftest import kaggle_rows, rows_to_csv, write_text


@pytest.fixture()
def folders(tmp_path, synthetic_files):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    shutil.copy(synthetic_files[1], inbox / "batch1.csv")
    write_text(inbox / "batch2.csv", rows_to_csv(kaggle_rows(30, seed=5)))
    write_text(inbox / "broken.csv", b"not,a,pixel,file\r\n1,2,3,4\r\n")
    return inbox, outbox


def test_flow_scores_each_file_once_and_moves_failures(folders, onnx_model_path):
    inbox, outbox = folders
    state = inbox_scoring_flow(inbox=str(inbox), outbox=str(outbox), model=str(onnx_model_path), settle_s=0,
                               return_state=True)
    first = final_result(state)
    assert sorted(first.scored) == ["batch1.csv", "batch2.csv"]
    assert list(first.failed) == ["broken.csv"]
    assert (inbox / "failed" / "broken.csv").exists()
    assert "no pixel columns" in (inbox / "failed" / "broken.csv.reason.txt").read_text()
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["batch1.csv", "batch2.csv"]
    summary = json.loads(next(outbox.glob("batch2-*/batch2.summary.json")).read_text())
    assert summary["rows_in"] == 30 == summary["rows_scored"] + summary["rows_rejected"]

    again = final_result(inbox_scoring_flow(inbox=str(inbox), outbox=str(outbox), model=str(onnx_model_path), settle_s=0,
                                    return_state=True))
    assert again.scored == [] and again.skipped == []

    shutil.copy(inbox / "processed" / "batch2.csv", inbox / "batch2-again.csv")  # same bytes dropped again
    third = final_result(inbox_scoring_flow(inbox=str(inbox), outbox=str(outbox), model=str(onnx_model_path), settle_s=0,
                                    return_state=True))
    assert third.skipped == ["batch2-again.csv"] and third.scored == []


def test_rerun_after_crash_picks_up_where_it_stopped(folders, onnx_model_path, monkeypatch):
    inbox, outbox = folders
    real_write = inbox_module.write_json_atomically
    calls = {"n": 0}

    def crash_on_second_manifest(payload, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("simulated crash after outputs, before the manifest")
        return real_write(payload, path)

    monkeypatch.setattr(inbox_module, "write_json_atomically", crash_on_second_manifest)
    from sign_mlops.serving.model import load_onnx

    with pytest.raises(SystemExit):
        inbox_module.score_inbox(inbox, outbox, load_onnx(onnx_model_path), settle_s=0)
    monkeypatch.setattr(inbox_module, "write_json_atomically", real_write)
    assert (inbox / "processed" / "batch1.csv").exists() and (inbox / "batch2.csv").exists()

    result = final_result(inbox_scoring_flow(inbox=str(inbox), outbox=str(outbox), model=str(onnx_model_path), settle_s=0,
                                    return_state=True))
    assert result.scored == ["batch2.csv"]
    manifest = json.loads((outbox / "manifest.json").read_text())
    assert sorted(e["input"] for e in manifest["scored"].values()) == ["batch1.csv", "batch2.csv"]


def test_flow_defaults_honour_inbox_and_outbox_settings(tmp_path, monkeypatch, onnx_model_path):
    from sign_mlops.flows.scoring import inbox_scoring_flow

    monkeypatch.setenv("SIGN_MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGN_MLOPS_INBOX", str(tmp_path / "in"))
    (tmp_path / "in").mkdir()
    write_text(tmp_path / "in" / "a.csv", rows_to_csv(kaggle_rows(3, seed=19)))
    result = inbox_scoring_flow(model=str(onnx_model_path), settle_s=0)
    assert result.scored == ["a.csv"]
    assert Path(result.outputs["a.csv"]).parent == tmp_path / "home" / "outbox"


def test_drifted_file_raises_an_event_and_every_run_leaves_a_table(tmp_path, onnx_model_path, synthetic_datasets,
                                                                   monkeypatch):
    import numpy as np
    import prefect.events
    from prefect.artifacts import Artifact

    events = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kwargs: events.append(kwargs))
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    test = synthetic_datasets[1]
    dark = (test.images.astype(np.float32) * 0.5).astype(np.int64).reshape(len(test), -1)
    write_text(inbox / "dark.csv", rows_to_csv(np.column_stack([test.labels, dark])))
    write_text(inbox / "clean.csv", rows_to_csv(np.column_stack([test.labels, test.images.reshape(len(test), -1)])))
    result = final_result(inbox_scoring_flow(inbox=str(inbox), outbox=str(outbox), model=str(onnx_model_path), settle_s=0,
                                    return_state=True))
    assert sorted(result.scored) == ["clean.csv", "dark.csv"]
    assert [e["payload"]["file"] for e in events] == ["dark.csv"]
    event = events[0]
    assert event["event"] == "sign-mlops.drift.detected" and "mean_intensity" in event["payload"]["drifted"]
    assert event["resource"]["prefect.resource.id"] == "sign-mlops.file.dark.csv"
    table = Artifact.get("inbox-scoring")
    assert table is not None and "dark.csv" in str(table.data) and "no drift" in str(table.data)


def test_scoring_run_is_named_for_its_file_and_model(tmp_path, synthetic_files, onnx_model_path):
    from prefect.client.orchestration import get_client

    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    shutil.copy(synthetic_files[1], inbox / "monday.csv")
    state = inbox_scoring_flow(inbox=str(inbox), outbox=str(outbox), model=str(onnx_model_path), settle_s=0,
                               return_state=True)
    assert state.result().scored == ["monday.csv"]
    with get_client(sync_client=True) as client:
        name = client.read_flow_run(state.state_details.flow_run_id).name
    sha8 = state.result().model["sha256"][:8]
    assert name == f"score-monday-{sha8}"  # a model file has no registry version: its sha256 names it


def _flow_run(state):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def test_a_failed_file_makes_the_run_failed_and_names_it(folders, onnx_model_path, monkeypatch):
    """Read back through the Prefect API: the run is Failed, its message names the file, the
    other files' outputs are final, and a scoring.failed event went out for the file."""
    import prefect.events

    events = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kwargs: events.append(kwargs))
    inbox, outbox = folders
    state = inbox_scoring_flow(inbox=str(inbox), outbox=str(outbox), model=str(onnx_model_path), settle_s=0,
                               return_state=True)
    run = _flow_run(state)
    assert run.state.is_failed() and run.state.name == "Failed"
    assert "broken.csv: " in run.state.message and "1 file(s) failed" in run.state.message
    reason = (inbox / "failed" / "broken.csv.reason.txt").read_text().strip()
    assert reason[:60] in run.state.message  # the reason, not only the name
    assert sorted(final_result(state).scored) == ["batch1.csv", "batch2.csv"]
    assert len(list(outbox.glob("batch*-*/batch*.summary.json"))) == 2
    failed = [e for e in events if e["event"] == "sign-mlops.scoring.failed"]
    assert [e["payload"]["file"] for e in failed] == ["broken.csv"] and "no pixel columns" in failed[0]["payload"]["reason"]

    clean = inbox_scoring_flow(inbox=str(inbox), outbox=str(outbox), model=str(onnx_model_path), settle_s=0,
                               return_state=True)
    assert _flow_run(clean).state.is_completed()  # nothing new: nothing failed


def test_a_model_that_cannot_be_resolved_makes_the_run_failed(tmp_path, monkeypatch):
    import prefect.events

    events = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kwargs: events.append(kwargs))
    (tmp_path / "inbox").mkdir()
    write_text(tmp_path / "inbox" / "a.csv", rows_to_csv(kaggle_rows(3, seed=3)))
    state = inbox_scoring_flow(inbox=str(tmp_path / "inbox"), outbox=str(tmp_path / "outbox"),
                               model=str(tmp_path / "gone.onnx"), settle_s=0, return_state=True)
    run = _flow_run(state)
    assert run.state.is_failed() and "gone.onnx" in run.state.message and "not found" in run.state.message
    assert (tmp_path / "inbox" / "a.csv").exists()  # nothing was lost: it waits for the next run
    assert [e["event"] for e in events] == ["sign-mlops.scoring.failed"]
