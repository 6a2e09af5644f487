"""The sweep flow: trials as Prefect tasks on a Dask cluster (a LocalCluster by default), each a
child MLflow run of one parent run; the parent gets the ranked table and the Pareto plot.

Threads: a LocalCluster of W workers is W processes of one Dask thread each, and each trains
with cores // W TensorFlow threads, so W parallel trials use the cores once. On an existing
cluster (--dask-address) each worker's own `--nthreads` decides how many trials it runs at once,
and a trial trains with the worker's SIGN_MLOPS_TRIAL_THREADS (else all its cores). --threads
overrides both."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.states import Failed, State

from sign_mlops.contract.paths import default_paths
from sign_mlops.flows.events import emit_promotion
from sign_mlops.sign_model import sweep as sw
from sign_mlops.sign_model.gate import GatePolicy
from sign_mlops.sign_model.results import DataFiles, Promotion


@dataclass(frozen=True)
class SweepResult:
    parent_run_id: str
    trials: int  # trials in the sweep
    trained: int  # trials trained by this call (the rest were finished before: resume)
    failed: int
    ranked: list[dict[str, Any]]  # RankedConfig.row(), best first
    table_path: str
    plot_path: str
    best_run_id: str
    best_run_dir: str
    promotion: Promotion | None = None


def trial_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@task(retries=1, retry_delay_seconds=2, task_run_name="trial-{trial.config.config_id}-s{trial.seed}")
def train_trial(trial: sw.Trial, parent_run_id: str, files: DataFiles, experiment: str, sweep_name: str,
                tracking_uri: str, runs_dir: str, threads: int, default_threads: int) -> sw.TrialResult:
    """One trial in its own child run; a failure marks that run FAILED (with why) and raises, so
    Prefect retries it once in a new child run and the sweep then records it as failed. Threads:
    --threads when given, else the worker's SIGN_MLOPS_TRIAL_THREADS (a cluster's operator knows
    how many workers share a host), else what the flow computed (cores // local workers)."""
    sw.limit_threads(threads or int(os.environ.get("SIGN_MLOPS_TRIAL_THREADS") or 0) or default_threads
                     or trial_threads(1))
    import mlflow

    from sign_mlops.sign_model import tracking

    tracking.configure(experiment, uri=tracking_uri)
    run_id = sw.start_trial_run(trial, parent_run_id, files, experiment, sweep_name)
    try:
        return sw.run_trial(trial, run_id, files, Path(runs_dir) / run_id)
    except BaseException as exc:
        client = mlflow.MlflowClient()
        client.set_tag(run_id, "sweep_status", "failed")
        client.set_tag(run_id, "sweep_error", f"{type(exc).__name__}: {exc}"[:1000])
        client.set_terminated(run_id, status="FAILED")
        raise


def _runner(workers: int, address: str | None):
    from prefect_dask import DaskTaskRunner

    if address:
        from sign_mlops.flows.scoring import check_scheduler

        check_scheduler(address)
        return DaskTaskRunner(address=address)
    from sign_mlops.flows import api_url_for_workers

    env = {name: value for name, value in (("PREFECT_API_URL", api_url_for_workers()),) if value}
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "env": env})


@flow(name="sign-mnist-sweep", log_prints=True)
def sweep_flow(spec_path: str, train: str | None = None, test: str | None = None, workers: int = 2,
               dask_address: str | None = None, threads: int = 0, resume: str | None = None,
               promote_best: bool = False, policy: GatePolicy = GatePolicy(),
               experiment: str = "sign-language-mnist-sweeps") -> SweepResult | State:
    """Run (or resume) the sweep in `spec_path`; ranked table and Pareto plot on the parent run.
    Ends Failed when every trial failed; with promote_best the best trial goes through the gate."""
    logger = get_run_logger()
    spec = sw.load_spec(Path(spec_path))
    paths = default_paths()
    from sign_mlops.sign_model import pipeline, tracking

    files = pipeline.resolve_data(paths, Path(train) if train else None, Path(test) if test else None)
    uri = tracking.configure(experiment)
    parent = resume or _open_parent(spec, spec_path, files, experiment)
    if resume:
        _check_resumable(resume, spec)
    else:
        pipeline.validate_step(parent, files, pipeline.run_dir(paths, parent) / "validation.json")
    import mlflow

    mlflow.MlflowClient().update_run(parent, status="RUNNING")  # until the last trial is in (_close_parent)
    trials = sw.trials_of(spec, sw.configurations(spec))
    done = _finished_trials(parent)
    pending = [t for t in trials if t.key not in done]
    logger.info("sweep %s: %d trials (%d configurations x %d seeds), %d already finished, %d to train on %s",
                parent, len(trials), len(trials) // len(spec.seeds), len(spec.seeds), len(trials) - len(pending),
                len(pending), dask_address or f"a LocalCluster of {workers} workers")
    # --threads travels as is; without it each worker decides (its SIGN_MLOPS_TRIAL_THREADS), else
    # cores // workers of this machine on a LocalCluster, the worker's own cores on a cluster
    default_threads = 0 if dask_address else trial_threads(workers)
    trained = []
    if pending:
        runner = _runner(workers, dask_address)
        trained = _train_all.with_options(task_runner=runner)(pending, parent, files, experiment, spec.name, uri,
                                                               str(pipeline.run_dir(paths, "")), threads,
                                                               default_threads)
    results = [done[t.key] for t in trials if t.key in done] + list(trained)
    return _finish(spec, parent, results, len(trials), len(trained), pipeline.run_dir(paths, parent), promote_best,
                   policy)


@flow(name="sign-mnist-sweep-trials")
def _train_all(pending: list[sw.Trial], parent: str, files: DataFiles, experiment: str, name: str, uri: str,
               runs_dir: str, threads: int, default_threads: int) -> list[sw.TrialResult]:
    """Every pending trial submitted at once; a trial that failed twice becomes a failed result."""
    futures = [train_trial.submit(t, parent, files, experiment, name, uri, runs_dir, threads, default_threads)
               for t in pending]
    results = []
    for trial, future in zip(pending, futures):
        state = future.wait() or future.state
        value = state.result(raise_on_failure=False)
        if isinstance(value, sw.TrialResult):
            results.append(value)
        else:
            results.append(sw.TrialResult(trial, "", "", error=f"{type(value).__name__}: {value}"[:500]))
    return results


def _open_parent(spec: sw.SweepSpec, spec_path: str, files: DataFiles, experiment: str) -> str:
    import mlflow

    from sign_mlops.sign_model import tracking

    when = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tags = {"sweep": "parent", "sweep_spec_sha256": _spec_digest(spec), "train_sha256": files.train_sha256,
            "test_sha256": files.test_sha256, "synthetic_data": str(files.synthetic).lower()}
    with mlflow.start_run(run_name=f"sweep-{spec.name}-{when}", tags=tags) as run:
        mlflow.log_params({"sweep/method": spec.method, "sweep/seeds": list(spec.seeds),
                           "sweep/rank_by": list(spec.rank_by), "sweep/presets": list(spec.presets),
                           "sweep/trials": spec.trials or 0})
        mlflow.log_artifact(spec_path, "sweep")
        tracking.log_json(spec.to_dict(), "sweep/spec.json")
    return run.info.run_id


def _spec_digest(spec: sw.SweepSpec) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode()).hexdigest()


def _check_resumable(parent: str, spec: sw.SweepSpec) -> None:
    import mlflow

    run = mlflow.get_run(parent)
    if run.data.tags.get("sweep") != "parent":
        raise sw.SweepError(f"--resume {parent}: that run is not a sweep's parent run; pass the parent run id "
                            "that 'sign-mlops sweep' printed.")
    if run.data.tags.get("sweep_spec_sha256") != _spec_digest(spec):
        raise sw.SweepError(f"--resume {parent}: the sweep file differs from the one that sweep started with "
                            "(its copy is the parent run's artifact sweep/); resume with that file, or start a new sweep.")


def _finished_trials(parent: str) -> dict[str, sw.TrialResult]:
    """Trials of this parent that finished before (a resumed sweep does not train them again)."""
    import json

    import mlflow

    from sign_mlops.sign_model.pipeline import run_dir

    runs = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent}' and "
                                            "tags.sweep_status = 'finished' and attributes.status = 'FINISHED'",
                              search_all_experiments=True, output_format="list")
    done = {}
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        trial = sw.Trial(sw.Config(tags["sweep_preset"], json.loads(tags["sweep_overrides"])),
                         int(run.data.params["seed"]))
        if trial.key != tags.get("sweep_trial"):
            continue  # recorded under another spec: not this sweep's trial
        done[trial.key] = sw.TrialResult(trial, run.info.run_id, str(run_dir(default_paths(), run.info.run_id)),
                                         {k.removeprefix("sweep/"): v for k, v in metrics.items()
                                          if k.startswith("sweep/")})
    return done


def _finish(spec: sw.SweepSpec, parent: str, results: list[sw.TrialResult], total: int, trained: int,
            out_dir: Path, promote_best: bool, policy: GatePolicy) -> SweepResult | State:
    ranked = sw.rank(results, spec.rank_by)
    out_dir.mkdir(parents=True, exist_ok=True)
    table, plot = _write_outputs(parent, ranked, out_dir)
    failed = sum(not r.ok for r in results)
    best = ranked[0].best_trial if ranked else None
    promotion = _promote(best, policy) if promote_best and best is not None else None
    result = SweepResult(parent, total, trained, failed, [r.row() for r in ranked], str(table), str(plot),
                         best.run_id if best else "", best.run_dir if best else "", promotion)
    _close_parent(parent, ranked, failed, total)
    if failed == total:
        return Failed(message=f"every trial of the sweep failed ({failed}); see the child runs' sweep_error tag",
                      data=result)
    if failed:
        get_run_logger().warning("%d of %d trials failed (retried once each); see their sweep_error tags", failed,
                                 total)
    return result


def _write_outputs(parent: str, ranked: list[sw.RankedConfig], out_dir: Path) -> tuple[Path, Path]:
    import mlflow
    import pandas as pd
    from prefect.artifacts import create_table_artifact

    from sign_mlops.contract.files import atomic_output

    rows = [r.row() for r in ranked]
    table = out_dir / "sweep_ranked.csv"
    with atomic_output(table) as handle:
        pd.DataFrame(rows).to_csv(handle, index=False)
    plot = sw.plot_pareto(ranked, out_dir / "sweep_pareto.png")
    client = mlflow.MlflowClient()
    client.log_artifact(parent, str(table), "sweep")
    client.log_artifact(parent, str(plot), "sweep")
    create_table_artifact(rows, key="sweep-ranked", description=f"Sweep {parent}: configurations ranked, best first "
                                                                "(mean and worst over seeds).")
    return table, plot


def _close_parent(parent: str, ranked: list[sw.RankedConfig], failed: int, total: int) -> None:
    import time

    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    metrics = [Metric("sweep/trials", float(total), now, 0), Metric("sweep/failed", float(failed), now, 0)]
    if ranked and ranked[0].best_trial is not None:
        metrics += [Metric(f"sweep/best_{k}", v, now, 0) for k, v in ranked[0].mean.items()]
        client.set_tag(parent, "sweep_best_run", ranked[0].best_trial.run_id)
        client.set_tag(parent, "sweep_best_configuration", ranked[0].config.label[:250])
    client.log_batch(parent, metrics=metrics)
    client.set_terminated(parent, status="FAILED" if failed == total else "FINISHED")


def _promote(best: sw.TrialResult, policy: GatePolicy) -> Promotion:
    """The best trial registered like a training run and judged by the gate, as `register --from` does."""
    from sign_mlops.sign_model import pipeline, registry
    from sign_mlops.sign_model.results import RunRecord

    record = RunRecord.load(Path(best.run_dir))
    pipeline.register_step(record)
    promotion = pipeline.promote_step(policy)
    emit_promotion(promotion, registry.ONNX_MODEL, best.run_id)
    return promotion
