"""A sweep for real: smoke trials on a 2-worker Dask LocalCluster, child runs under one parent,
the ranked table and plot, resume without retraining, and --promote-best through the gate."""

from __future__ import annotations

import mlflow
import pytest

from sign_mlops.flows import final_result
from sign_mlops.flows.sweep import SweepResult, sweep_flow
from sign_mlops.sign_model import registry
from sign_mlops.sign_model.gate import GatePolicy
from tests.conftest import write_text

pytestmark = pytest.mark.slow  # trains 5 models on a Dask cluster (~2 minutes on 2 cores)

SPEC = """
name: smoke-epochs
method: grid
presets: [smoke]
seeds: [0, 1]
rank_by: [val_accuracy, robust_worst]
fixed: {epochs: 2}
space:
  dropout: [0.1, 0.3]
"""


def _children(parent: str) -> list:
    return mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent}'", search_all_experiments=True,
                              output_format="list")


def test_sweep_trains_in_parallel_ranks_resumes_and_promotes(synthetic_files, mlflow_store, tmp_path):
    spec = write_text(tmp_path / "sweep.yaml", SPEC)
    train, test = (str(p) for p in synthetic_files)
    result = final_result(sweep_flow(str(spec), train, test, workers=2, return_state=True))
    assert isinstance(result, SweepResult) and (result.trials, result.trained, result.failed) == (4, 4, 0)
    children = _children(result.parent_run_id)
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.params["dropout"] for c in children} == {"0.1", "0.3"}
    for child in children:
        assert {"sweep/val_accuracy", "sweep/robust_worst", "sweep/mmacs", "sweep/rows_per_s"} <= set(child.data.metrics)
    assert [row["rank"] for row in result.ranked] == [1, 2] and all(row["seeds"] == 2 for row in result.ranked)
    means = [row["val_accuracy mean"] for row in result.ranked]
    assert means == sorted(means, reverse=True)
    parent = mlflow.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep_best_run"] == result.best_run_id
    files = {f.path for f in mlflow.MlflowClient().list_artifacts(result.parent_run_id, "sweep")}
    assert {"sweep/sweep_ranked.csv", "sweep/sweep_pareto.png", "sweep/sweep.yaml"} <= files
    assert registry.version_by_alias(registry.ONNX_MODEL, "challenger") is None  # a sweep registers nothing

    # a trial lost with its worker: its run never finished; resume trains it alone
    lost = children[0]
    mlflow.MlflowClient().set_tag(lost.info.run_id, "sweep_status", "failed")
    again = final_result(sweep_flow(str(spec), train, test, workers=2, resume=result.parent_run_id,
                                    promote_best=True, policy=GatePolicy(accuracy_floor=0.0), return_state=True))
    assert (again.trials, again.trained, again.failed) == (4, 1, 0)
    assert len(_children(result.parent_run_id)) == 5
    assert again.promotion is not None and again.promotion.promoted
    champion = registry.version_by_alias(registry.ONNX_MODEL, "champion")
    assert champion is not None and champion.tags["run_id"] == again.best_run_id


def test_resume_refuses_another_sweep_file(synthetic_files, mlflow_store, tmp_path):
    from sign_mlops.sign_model.sweep import SweepError

    spec = write_text(tmp_path / "a.yaml", SPEC.replace("seeds: [0, 1]", "seeds: [0]").replace("[0.1, 0.3]", "[0.1]"))
    train, test = (str(p) for p in synthetic_files)
    first = final_result(sweep_flow(str(spec), train, test, workers=1, return_state=True))
    other = write_text(tmp_path / "b.yaml", SPEC)
    with pytest.raises(SweepError, match="differs from the one that sweep started with"):
        final_result(sweep_flow(str(other), train, test, workers=1, resume=first.parent_run_id, return_state=True))
