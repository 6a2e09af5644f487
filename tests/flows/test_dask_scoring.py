"""Scale-out scoring on a Dask LocalCluster (2 worker processes): identical outputs, lost workers
cost nothing, a bad scheduler address fails fast."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from sign_mlops.flows import final_result
from sign_mlops.flows.scoring import check_scheduler, inbox_scoring_flow, score_files_flow
from sign_mlops.serving.model import load_onnx
from sign_mlops.serving.scorer import ScoringError, score_file
from tests.conftest import kaggle_rows, rows_to_csv, write_text

distributed = pytest.importorskip("distributed")
prefect_dask = pytest.importorskip("prefect_dask")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local


@pytest.fixture()
def inputs(tmp_path, synthetic_files):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(synthetic_files[1], folder / "a.csv")
    mixed = rows_to_csv(kaggle_rows(300, seed=9)).split("\r\n")
    mixed[5] = mixed[5] + ",1"  # a bad row
    cells = mixed[77].split(",")
    cells[10] = "x"
    mixed[77] = ",".join(cells)
    write_text(folder / "b.csv", "\r\n".join(mixed))
    return folder


def _bytes(folder: Path, name: str) -> tuple[bytes, bytes]:
    stem = name.removesuffix(".csv")
    return (folder / f"{stem}.predictions.csv").read_bytes(), (folder / f"{stem}.rejects.csv").read_bytes()


@pytest.mark.slow
def test_cluster_outputs_are_byte_identical_to_one_machine(cluster, inputs, onnx_model_path, tmp_path):
    model = load_onnx(onnx_model_path)
    for name in ("a.csv", "b.csv"):
        score_file(inputs / name, model, tmp_path / "local")
    runner = prefect_dask.DaskTaskRunner(address=cluster.scheduler_address)
    result = score_files_flow.with_options(task_runner=runner)(
        [str(inputs / "a.csv"), str(inputs / "b.csv")], str(onnx_model_path), str(tmp_path / "dask"),
        piece_bytes=60_000)  # ~25 rows per piece: many pieces per file
    assert not result.failed
    for name in ("a.csv", "b.csv"):
        assert _bytes(tmp_path / "dask", name) == _bytes(tmp_path / "local", name)
        summary = result.summaries[str(inputs / name)].to_dict()
        local = json.loads((tmp_path / "local" / name.replace(".csv", ".summary.json")).read_text())
        for key in ("rows_in", "rows_scored", "rows_rejected", "accuracy", "predicted_class_counts",
                    "low_confidence_rows", "drift", "reject_reasons", "input_sha256"):
            assert summary[key] == local[key], key
        # both are rounded to 6 decimals after summing in another order, so a mean on a rounding
        # boundary comes out one step apart (0.666509 against 0.66651 in one CI run)
        assert summary["mean_confidence"] == pytest.approx(local["mean_confidence"], abs=1.5e-6)
        assert summary["pieces"] > 5 and summary["workers"] >= 1
    assert summary["rows_rejected"] == 2


@pytest.mark.slow
def test_inbox_on_the_cluster(cluster, inputs, onnx_model_path, tmp_path):
    inbox = tmp_path / "inbox"
    shutil.copytree(inputs, inbox)
    write_text(inbox / "broken.csv", "x,y\r\n1,2\r\n")
    state = inbox_scoring_flow(inbox=str(inbox), outbox=str(tmp_path / "outbox"), model=str(onnx_model_path),
                               dask_address=cluster.scheduler_address, settle_s=0, return_state=True)
    assert state.is_failed() and "broken.csv" in state.message
    result = final_result(state)
    assert sorted(result.scored) == ["a.csv", "b.csv"] and list(result.failed) == ["broken.csv"]
    assert (inbox / "failed" / "broken.csv.reason.txt").exists()
    again = inbox_scoring_flow(inbox=str(inbox), outbox=str(tmp_path / "outbox"), model=str(onnx_model_path),
                               dask_address=cluster.scheduler_address, settle_s=0)
    assert again.scored == [] and again.failed == {}


class _KillOnce(distributed.WorkerPlugin):
    """Worker plugin: the first worker to score piece 3 dies mid-task (os._exit), once."""

    name = "kill-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        import sign_mlops.serving.distributed as module

        real = module.score_piece
        marker = self.marker

        def dying(piece, *args, **kwargs):
            if piece.index == 3 and os.path.exists(marker):
                os.remove(marker)
                os._exit(1)
            return real(piece, *args, **kwargs)

        module.score_piece = dying


@pytest.mark.slow
def test_lost_worker_loses_and_duplicates_nothing(cluster, inputs, onnx_model_path, tmp_path):
    from distributed import Client

    marker = tmp_path / "kill-once"
    marker.write_text("armed")
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.register_plugin(_KillOnce(str(marker)))
        runner = prefect_dask.DaskTaskRunner(address=cluster.scheduler_address)
        result = score_files_flow.with_options(task_runner=runner)(
            [str(inputs / "b.csv")], str(onnx_model_path), str(tmp_path / "dask"), piece_bytes=60_000)
        client.unregister_worker_plugin("kill-once")
    assert not marker.exists(), "the fault was never injected"
    score_file(inputs / "b.csv", load_onnx(onnx_model_path), tmp_path / "local")
    assert _bytes(tmp_path / "dask", "b.csv") == _bytes(tmp_path / "local", "b.csv")
    summary = result.summaries[str(inputs / "b.csv")]
    assert summary.rows_in == 300 == summary.rows_scored + summary.rows_rejected


def test_bad_scheduler_address_fails_fast():
    start = time.perf_counter()
    with pytest.raises(ScoringError, match="Cannot reach the Dask scheduler"):
        check_scheduler("tcp://127.0.0.1:9", timeout=3)
    assert time.perf_counter() - start < 15


def test_score_command_with_dask_address_scores_on_the_cluster(cluster, inputs, onnx_model_path, tmp_path):
    """`sign-mlops score FILE --dask-address ...` (documented; it once raised NameError)."""
    from typer.testing import CliRunner

    from sign_mlops.cli.app import app

    model = load_onnx(onnx_model_path)
    score_file(inputs / "b.csv", model, tmp_path / "local")
    result = CliRunner().invoke(app, ["score", str(inputs / "b.csv"), "--model", str(onnx_model_path),
                                      "--out", str(tmp_path / "dask"), "--dask-address", cluster.scheduler_address])
    assert result.exit_code == 0, result.output
    assert "300 rows in = 298 scored + 2 rejected" in result.output
    assert _bytes(tmp_path / "dask", "b.csv") == _bytes(tmp_path / "local", "b.csv")


@pytest.mark.slow
def test_score_command_with_an_unreachable_scheduler_fails_in_one_line(onnx_model_path, inputs, tmp_path):
    from typer.testing import CliRunner

    from sign_mlops.cli.app import app

    result = CliRunner().invoke(app, ["score", str(inputs / "a.csv"), "--model", str(onnx_model_path),
                                      "--out", str(tmp_path), "--dask-address", "tcp://127.0.0.1:1"])
    assert result.exit_code == 1
    assert "Cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'" in result.output
    assert "Traceback" not in result.output
