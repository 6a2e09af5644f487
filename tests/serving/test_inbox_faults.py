"""Inbox faults: nothing scored twice, nothing lost, nothing claimed before it is complete,
and a killed or overlapping run never corrupts the outbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sign_mlops.serving import inbox as inbox_module
from sign_mlops.serving.inbox import InboxError, rebuild_manifest, score_inbox
from sign_mlops.serving.model import load_onnx
from tests.conftest import kaggle_rows, rows_to_csv, write_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(onnx_model_path):
    return load_onnx(onnx_model_path)


@pytest.fixture()
def boxes(tmp_path):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    return inbox, outbox


def _batch(n: int, seed: int) -> str:
    return rows_to_csv(kaggle_rows(n, seed=seed))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_name_next_day_gets_its_own_outputs(boxes, model):
    inbox, outbox = boxes
    write_text(inbox / "batch.csv", _batch(10, 1))
    first = score_inbox(inbox, outbox, model, settle_s=0)
    before = _tree(Path(first.outputs["batch.csv"]))
    write_text(inbox / "batch.csv", _batch(14, 2))  # the next day, same name, new rows
    second = score_inbox(inbox, outbox, model, settle_s=0)
    assert second.scored == ["batch.csv"] and second.outputs["batch.csv"] != first.outputs["batch.csv"]
    assert _tree(Path(first.outputs["batch.csv"])) == before  # untouched
    summaries = sorted(json.loads(p.read_text())["rows_in"] for p in outbox.glob("*/batch.summary.json"))
    assert summaries == [10, 14]
    manifest = json.loads((outbox / "manifest.json").read_text())
    assert sorted(e["folder"] for e in manifest["scored"].values()) == sorted(
        [first.outputs["batch.csv"], second.outputs["batch.csv"]])
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["batch.csv", "batch.csv.1"]


def test_same_bytes_under_two_names_are_scored_once(boxes, model):
    inbox, outbox = boxes
    write_text(inbox / "a.csv", _batch(6, 3))
    write_text(inbox / "b.csv", _batch(6, 3))
    result = score_inbox(inbox, outbox, model, settle_s=0)
    assert result.scored == ["a.csv"] and result.skipped == ["b.csv"]
    assert len(list(outbox.glob("*/*.summary.json"))) == 1
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["a.csv", "b.csv"]


def test_incomplete_files_are_left_alone(boxes, model):
    inbox, outbox = boxes
    write_text(inbox / "fresh.csv", _batch(5, 4))
    write_text(inbox / "upload.csv.partial", _batch(5, 5))
    write_text(inbox / ".hidden.csv", _batch(5, 6))
    result = score_inbox(inbox, outbox, model, settle_s=60)
    assert result.scored == [] and "fresh.csv" in result.waiting
    assert sorted(p.name for p in inbox.iterdir() if p.is_file() and p.name != ".sign-mlops.lock") == [
        ".hidden.csv", "fresh.csv", "upload.csv.partial"]
    with open(inbox / "growing.csv", "w") as writer:  # a process still writing it
        writer.write(_batch(5, 7)[:5000])
        writer.flush()
        result = score_inbox(inbox, outbox, model, settle_s=0)
        assert "growing.csv" in result.waiting and "open for writing" in result.waiting["growing.csv"]
        assert result.scored == ["fresh.csv"]
        assert (inbox / "growing.csv").exists()
        writer.write(_batch(5, 7)[5000:])
    result = score_inbox(inbox, outbox, model, settle_s=0)
    assert result.scored == ["growing.csv"]
    summary = json.loads(Path(result.outputs["growing.csv"], "growing.summary.json").read_text())
    assert summary["rows_in"] == 5 == summary["rows_scored"]


def test_upper_case_names_are_scored_and_other_files_reported(boxes, model):
    inbox, outbox = boxes
    write_text(inbox / "BATCH.CSV", _batch(4, 8))
    write_text(inbox / "notes.txt", "hello")
    result = score_inbox(inbox, outbox, model, settle_s=0)
    assert result.scored == ["BATCH.CSV"] and "notes.txt" in result.ignored
    assert (inbox / "notes.txt").exists()
    assert Path(result.outputs["BATCH.CSV"], "BATCH.summary.json").exists()


def test_a_poison_file_does_not_block_the_others(boxes, model):
    inbox, outbox = boxes
    write_text(inbox / "a.csv", _batch(4, 9))
    (inbox / "b.csv.gz").write_bytes(b"\x1f\x8b" + os.urandom(500))  # corrupt gzip
    write_text(inbox / "c.csv", 'label,"pixel1\n' + _batch(4, 10))  # broken header quoting
    write_text(inbox / "d.csv", _batch(4, 11))
    result = score_inbox(inbox, outbox, model, settle_s=0)
    assert sorted(result.scored) == ["a.csv", "d.csv"] and sorted(result.failed) == ["b.csv.gz", "c.csv"]
    assert "corrupt" in (inbox / "failed" / "b.csv.gz.reason.txt").read_text()


def test_an_unexpected_error_fails_only_that_file(boxes, model, monkeypatch):
    inbox, outbox = boxes
    write_text(inbox / "a.csv", _batch(4, 12))
    write_text(inbox / "b.csv", _batch(4, 13))
    real = inbox_module.local_scorer(model)

    def buggy(path, folder, name):
        if name == "a.csv":
            raise KeyError("a bug")
        return real(path, folder, name)

    result = score_inbox(inbox, outbox, model, settle_s=0, scorer=buggy)
    assert result.scored == ["b.csv"] and "unexpected error" in result.failed["a.csv"]


def test_disk_full_stops_the_run_and_keeps_the_file(boxes, model, monkeypatch):
    import errno

    from sign_mlops.serving import scorer as scorer_module

    inbox, outbox = boxes
    write_text(inbox / "a.csv", _batch(4, 14))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scorer_module.json, "dump", disk_full)
    with pytest.raises(InboxError, match="disk is full"):
        score_inbox(inbox, outbox, model, settle_s=0)
    assert (inbox / "a.csv").exists() and not (inbox / "failed").exists()
    assert not list(outbox.glob("*/*.summary.json"))


def test_corrupt_manifest_touches_nothing_and_can_be_rebuilt(boxes, model):
    inbox, outbox = boxes
    write_text(inbox / "a.csv", _batch(4, 15))
    score_inbox(inbox, outbox, model, settle_s=0)
    good = json.loads((outbox / "manifest.json").read_text())
    (outbox / "manifest.json").write_text(json.dumps(good)[:40])  # truncated
    write_text(inbox / "b.csv", _batch(4, 16))
    with pytest.raises(InboxError, match="--rebuild-manifest"):
        score_inbox(inbox, outbox, model, settle_s=0)
    assert (inbox / "b.csv").exists()
    assert rebuild_manifest(outbox)["scored"] == good["scored"]
    assert score_inbox(inbox, outbox, model, settle_s=0).scored == ["b.csv"]


def test_a_second_run_while_one_holds_the_inbox_does_nothing(boxes, model):
    inbox, outbox = boxes
    write_text(inbox / "a.csv", _batch(4, 17))
    with inbox_module.inbox_lock(inbox) as held:
        assert held
        result = score_inbox(inbox, outbox, model, settle_s=0)
    assert result.busy and result.scored == [] and (inbox / "a.csv").exists()


def _slow_inbox(inbox: Path, outbox: Path, model_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.serving.slow_scoring", "inbox", str(inbox), str(outbox),
                             str(model_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _big_batches(inbox: Path, n: int) -> None:
    block = kaggle_rows(50, seed=18)
    for i in range(n):
        write_text(inbox / f"batch{i:02d}.csv", rows_to_csv(np.roll(np.tile(block, (12, 1)), i, axis=0)))


def test_concurrent_runs_score_each_file_exactly_once(boxes, onnx_model_path, model):
    inbox, outbox = boxes
    _big_batches(inbox, 8)
    procs = [_slow_inbox(inbox, outbox, onnx_model_path) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    manifest = json.loads((outbox / "manifest.json").read_text())
    assert sorted(e["input"] for e in manifest["scored"].values()) == [f"batch{i:02d}.csv" for i in range(8)]
    assert len(list(outbox.glob("*/*.summary.json"))) == 8
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == [f"batch{i:02d}.csv" for i in range(8)]
    # runs that overlapped either did the work or saw the lock; never both on one file
    assert score_inbox(inbox, outbox, model, settle_s=0).scored == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_inbox_run_loses_nothing(boxes, onnx_model_path, model, sig):
    inbox, outbox = boxes
    _big_batches(inbox, 3)
    proc = _slow_inbox(inbox, outbox, onnx_model_path)
    assert "STARTED" in proc.stdout.readline()
    proc.send_signal(sig)
    proc.wait(timeout=30)
    if sig == signal.SIGTERM:  # cleaned up at once: the claimed file is back, no partial outputs
        assert not (inbox / ".processing").exists()
        assert not list(outbox.rglob("*.partial"))
    incomplete = [p.parent for p in outbox.glob("*/*.predictions.csv") if not list(p.parent.glob("*.summary.json"))]
    assert incomplete == []
    result = score_inbox(inbox, outbox, model, settle_s=0)
    manifest = json.loads((outbox / "manifest.json").read_text())
    assert sorted(e["input"] for e in manifest["scored"].values()) == ["batch00.csv", "batch01.csv", "batch02.csv"]
    assert not (inbox / ".processing").exists() and not list(outbox.rglob("*.partial"))
    for summary in outbox.glob("*/*.summary.json"):
        assert json.loads(summary.read_text())["rows_in"] == 600
    assert len(result.scored) >= 1


def test_an_unreadable_file_fails_alone(boxes, model, monkeypatch):
    inbox, outbox = boxes
    write_text(inbox / "a.csv", _batch(4, 20))
    write_text(inbox / "b.csv", _batch(4, 21))
    real = inbox_module.file_digest

    def no_permission(path):
        if Path(path).name == "a.csv":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(inbox_module, "file_digest", no_permission)
    result = score_inbox(inbox, outbox, model, settle_s=0)
    assert result.scored == ["b.csv"] and "cannot read the file" in result.failed["a.csv"]
    assert (inbox / "failed" / "a.csv").exists()
