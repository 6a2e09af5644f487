"""The scorer's writer thread: results are written in chunk order whatever its pace, its errors
reach the caller at once (nothing final, no thread left), and a failing caller does not wait for it."""

from __future__ import annotations

import errno
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sign_mlops.serving import scorer as scorer_module
from sign_mlops.serving.model import load_onnx
from sign_mlops.serving.scorer import WRITE_DEPTH, ScoringError, _Behind, score_file
from tests.conftest import kaggle_rows, rows_to_csv, write_text


@pytest.fixture(scope="module")
def model(onnx_model_path):
    return load_onnx(onnx_model_path)


def _csv(path: Path, rows: int = 600) -> Path:
    return write_text(path, rows_to_csv(np.tile(kaggle_rows(50, seed=4), (rows // 50, 1))))


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "scorer-writer"]


def test_a_slow_uneven_writer_keeps_every_row_in_order(tmp_path, model, monkeypatch):
    path = _csv(tmp_path / "in.csv")
    reference = score_file(path, model, tmp_path / "one-chunk")
    pace = random.Random(0)
    real = scorer_module.predictions_frame

    def uneven(*args, **kwargs):
        time.sleep(pace.choice([0, 0, 0.02]))
        return real(*args, **kwargs)

    monkeypatch.setattr(scorer_module, "predictions_frame", uneven)
    chunked = score_file(path, model, tmp_path / "chunked", chunk_rows=37, batch_size=16)
    assert Path(chunked.outputs["predictions"]).read_bytes() == Path(reference.outputs["predictions"]).read_bytes()
    assert chunked.rows_scored == reference.rows_scored == 600
    assert _writer_threads() == []


def test_a_write_error_stops_scoring_at_once_and_leaves_nothing_final(tmp_path, model, monkeypatch):
    path = _csv(tmp_path / "in.csv", rows=3000)
    written, predicted = [], []
    real_frame, real_predict = scorer_module.predictions_frame, scorer_module._predict

    def fails_on_third(*args, **kwargs):
        written.append(1)
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_frame(*args, **kwargs)

    def counted(*args, **kwargs):
        predicted.append(1)
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(scorer_module, "predictions_frame", fails_on_third)
    monkeypatch.setattr(scorer_module, "_predict", counted)
    with pytest.raises(ScoringError, match="the disk is full"):
        score_file(path, model, tmp_path / "out", chunk_rows=50)  # 60 chunks
    assert len(written) == 3  # nothing written after the error
    assert len(predicted) <= 3 + WRITE_DEPTH + 2  # the caller learnt of it within a few chunks, not at the end
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    assert _writer_threads() == []


def test_a_failing_caller_skips_queued_work_and_does_not_wait_for_it():
    done = []
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), _Behind(lambda n: (time.sleep(0.2), done.append(n)), depth=4) as writer:
        for n in range(4):
            writer.put(n)
        raise KeyboardInterrupt
    assert time.perf_counter() - started < 0.6  # at most the item in hand, not all four
    assert len(done) <= 1


def test_a_writer_error_reaches_the_caller_at_the_next_put():
    def work(n):
        if n == 1:
            raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"), _Behind(work, depth=1) as writer:
        for n in range(100):
            writer.put(n)
            time.sleep(0.01)
        pytest.fail("the error was not raised before the end")  # pragma: no cover
