"""A sweep: many trainings of one data set, compared in MLflow as child runs of one parent run.

The search space is a YAML file (docs/sweeps.md):

    name: presets              # the parent run's name starts with it
    method: grid               # grid | random | tpe (Optuna's TPE, asked in rounds of --workers trials)
    trials: 8                  # random and tpe: how many configurations
    seeds: [0, 1]              # each configuration is trained once per seed (TrainConfig.seed)
    rank_by: [val_accuracy, robust_worst]   # the first decides, the next break ties
    presets: [default, lite]   # optional (default: [default]); a dimension of the space
    fixed: {epochs: 3}         # optional: TrainConfig keys every trial gets
    space:                     # TrainConfig keys: a list = these values; low/high = a range (random, tpe)
      learning_rate: {low: 0.0005, high: 0.005, log: true}
      dropout: [0.2, 0.4]

A trial is one configuration trained with one seed: a child MLflow run with the usual training
metrics plus `sweep/*` (grouped-validation accuracy, robustness mean and worst kind, M MACs,
scorer rows/s). Nothing is registered; `sign-mlops sweep --promote-best` (or `register --from`
with the best trial's folder) sends the best trial through the promotion gate.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import statistics
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sign_mlops.sign_model.train_config import PRESETS, ConfigError, check_overrides, resolve_config

METRICS = {  # name -> (higher is better, what it is)
    "val_accuracy": (True, "grouped-validation accuracy"),
    "test_accuracy": (True, "test-split accuracy"),
    "robust_mean": (True, "robustness suite mean (moderate severity)"),
    "robust_worst": (True, "robustness suite worst kind"),
    "mmacs": (False, "million multiply-adds per image"),
    "rows_per_s": (True, "batch scorer rows/s on the test file (fp32)"),
    "train_seconds": (False, "training wall time"),
}
METHODS = ("grid", "random", "tpe")
SWEEP_KEYS = {"name", "method", "trials", "seeds", "rank_by", "presets", "fixed", "space", "sampler_seed"}


class SweepError(ConfigError):
    """A sweep file that cannot be run; says where and what to do."""


@dataclass(frozen=True)
class Range:
    """A numeric range to draw from (random, tpe)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def draw(self, rng: random.Random) -> float | int:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return int(round(value)) if self.integer else float(f"{value:.6g}")


@dataclass(frozen=True)
class SweepSpec:
    name: str
    method: str
    seeds: tuple[int, ...]
    rank_by: tuple[str, ...]
    presets: tuple[str, ...]
    fixed: dict[str, Any]
    choices: dict[str, tuple[Any, ...]]  # key -> the values to try
    ranges: dict[str, Range]  # key -> a range (random, tpe)
    trials: int | None = None
    sampler_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Config:
    """One point of the space: a preset and the keys laid over it."""

    preset: str
    overrides: dict[str, Any]

    @property
    def config_id(self) -> str:
        """Stable id: the same configuration has the same id in every sweep and on resume."""
        text = json.dumps({"preset": self.preset, **self.overrides}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.overrides.items()))
        return self.preset + (f" ({shown})" if shown else "")


@dataclass(frozen=True)
class Trial:
    """One configuration trained with one seed."""

    config: Config
    seed: int

    @property
    def key(self) -> str:
        """Stable id of (configuration, seed): a resumed sweep skips trials whose key finished."""
        return f"{self.config.config_id}-s{self.seed}"


@dataclass(frozen=True)
class TrialResult:
    trial: Trial
    run_id: str
    run_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    worst_kind: str = ""
    error: str = ""  # a failed trial says why (its metrics are empty)

    @property
    def ok(self) -> bool:
        return not self.error


def load_spec(path: Path) -> SweepSpec:
    """Read and check a sweep file; SweepError names the file, the key and what to do."""
    import yaml  # type: ignore[import-untyped, unused-ignore]  # PyYAML ships no stubs

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SweepError(f"sweep file {path} not found; pass a YAML file (docs/sweeps.md shows one).") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"sweep file {path} is not valid YAML ({str(exc).splitlines()[0]}).") from None
    if not isinstance(raw, dict):
        raise SweepError(f"sweep file {path}: expected a mapping of keys (name, method, space, ...).")
    return parse_spec(raw, str(path))


def parse_spec(raw: dict[str, Any], source: str) -> SweepSpec:
    """A checked sweep; every problem is a SweepError naming the file and the key."""
    try:
        return _parse_spec(raw, source)
    except SweepError:
        raise
    except ConfigError as exc:  # a TrainConfig key or value (check_overrides, resolve_config)
        raise SweepError(str(exc)) from None


def _parse_spec(raw: dict[str, Any], source: str) -> SweepSpec:
    unknown = sorted(set(raw) - SWEEP_KEYS)
    if unknown:
        raise SweepError(f"{source}: unknown key(s) {unknown}; a sweep file has {sorted(SWEEP_KEYS)}.")
    method = raw.get("method", "grid")
    if method not in METHODS:
        raise SweepError(f"{source}: method {method!r}; choose one of {list(METHODS)}.")
    presets = tuple(_as_list(raw.get("presets", ["default"])))
    bad = [p for p in presets if p not in PRESETS]
    if bad or not presets:
        raise SweepError(f"{source}: unknown preset(s) {bad}; choose from {sorted(PRESETS)}.")
    seeds = tuple(int(s) for s in _as_list(raw.get("seeds", [0])))
    rank_by = tuple(_as_list(raw.get("rank_by", ["val_accuracy"])))
    if not rank_by or any(m not in METRICS for m in rank_by):
        raise SweepError(f"{source}: rank_by {list(rank_by)}; choose from {list(METRICS)}.")
    fixed = check_overrides(raw.get("fixed") or {}, f"{source} (fixed)")
    choices, ranges = _space(raw.get("space") or {}, source)
    if "seed" in fixed or "seed" in choices or "seed" in ranges:
        raise SweepError(f"{source}: set seeds with the 'seeds' key, not as a TrainConfig key.")
    trials = raw.get("trials")
    if method == "grid" and ranges:
        raise SweepError(f"{source}: a grid needs lists of values; ranges {sorted(ranges)} need method random or tpe.")
    if method != "grid" and (not isinstance(trials, int) or trials < 1):
        raise SweepError(f"{source}: method {method} needs 'trials', a whole number >= 1.")
    spec = SweepSpec(str(raw.get("name", Path(source).stem)), method, seeds, rank_by, presets, fixed, choices, ranges,
                     trials, int(raw.get("sampler_seed", 0)))
    for config in configurations(spec)[:50]:  # every drawn or listed configuration is a valid TrainConfig
        resolve_config(config.preset, config.overrides, source)
    return spec


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _space(space: Any, source: str) -> tuple[dict[str, tuple[Any, ...]], dict[str, Range]]:
    if not isinstance(space, dict):
        raise SweepError(f"{source}: 'space' must map TrainConfig keys to lists or ranges.")
    choices: dict[str, tuple[Any, ...]] = {}
    ranges: dict[str, Range] = {}
    for key, value in space.items():
        where = f"{source}: space.{key}"
        if isinstance(value, dict):
            extra = set(value) - {"low", "high", "log", "int"}
            if extra or "low" not in value or "high" not in value or not value["low"] < value["high"]:
                raise SweepError(f"{where}: a range is {{low: A, high: B[, log: true][, int: true]}} with A < B.")
            if value.get("log") and value["low"] <= 0:
                raise SweepError(f"{where}: a log range needs low > 0.")
            ranges[key] = Range(float(value["low"]), float(value["high"]), bool(value.get("log")), bool(value.get("int")))
            check_overrides({key: int(value["low"]) if value.get("int") else value["low"]}, where)
        else:
            values = tuple(_as_list(value))
            if not values:
                raise SweepError(f"{where}: give at least one value.")
            for v in values:
                check_overrides({key: v}, where)
            choices[key] = values
    return choices, ranges


def configurations(spec: SweepSpec) -> list[Config]:
    """Grid: every combination of presets and listed values; random: `trials` draws from a
    generator seeded with `sampler_seed` (the same file draws the same configurations). TPE
    draws as results come in (sign_mlops.flows.sweep)."""
    if spec.method == "grid":
        keys = sorted(spec.choices)
        combos = itertools.product(spec.presets, *(spec.choices[k] for k in keys))
        return [Config(c[0], {**spec.fixed, **dict(zip(keys, c[1:]))}) for c in combos]
    rng = random.Random(spec.sampler_seed)
    drawn = []
    for _ in range(spec.trials or 0):
        values: dict[str, Any] = {k: rng.choice(v) for k, v in sorted(spec.choices.items())}
        values.update({k: r.draw(rng) for k, r in sorted(spec.ranges.items())})
        drawn.append(Config(rng.choice(spec.presets), {**spec.fixed, **values}))
    return drawn


def trials_of(spec: SweepSpec, configs: list[Config]) -> list[Trial]:
    """Each configuration once per seed of the spec."""
    return [Trial(c, seed) for c in configs for seed in spec.seeds]


@dataclass(frozen=True)
class RankedConfig:
    """A configuration's results over its seeds: means (and the worst seed) of each metric."""

    rank: int
    config_id: str
    config: Config
    seeds: int
    failed: int
    mean: dict[str, float]
    worst: dict[str, float]
    best_trial: TrialResult | None

    def row(self) -> dict[str, Any]:
        """One row of the ranked table (CSV, Prefect table artifact)."""
        out: dict[str, Any] = {"rank": self.rank, "configuration": self.config.label, "config_id": self.config_id,
                               "seeds": self.seeds, "failed": self.failed}
        for name in METRICS:
            if name in self.mean:
                out[f"{name} mean"] = round(self.mean[name], 6)
                out[f"{name} worst"] = round(self.worst[name], 6)
        out["best trial run"] = self.best_trial.run_id if self.best_trial else ""
        return out


def rank(results: list[TrialResult], rank_by: tuple[str, ...]) -> list[RankedConfig]:
    """Configurations ranked by the mean over their seeds of rank_by[0] (ties: the next); those
    whose every seed failed come last. The best trial of a configuration is its best seed."""
    groups: dict[str, list[TrialResult]] = {}
    for result in results:
        groups.setdefault(result.trial.config.config_id, []).append(result)
    ranked = []
    for cid, members in groups.items():
        ok = [m for m in members if m.ok]
        names = sorted(set().union(*(m.metrics for m in ok))) if ok else []
        mean = {n: statistics.fmean(m.metrics[n] for m in ok if n in m.metrics) for n in names}
        worst = {n: (min if METRICS.get(n, (True,))[0] else max)(m.metrics[n] for m in ok if n in m.metrics)
                 for n in names}
        best = max(ok, key=lambda m: _sort_key(m.metrics, rank_by)) if ok else None
        ranked.append(RankedConfig(0, cid, members[0].trial.config, len(members), len(members) - len(ok), mean,
                                   worst, best))
    ranked.sort(key=lambda r: (r.best_trial is not None, _sort_key(r.mean, rank_by)), reverse=True)
    return [replace(r, rank=i + 1) for i, r in enumerate(ranked)]


def _sort_key(metrics: dict[str, float], rank_by: tuple[str, ...]) -> tuple[float, ...]:
    """Larger is better for every position (lower-is-better metrics are negated)."""
    return tuple((1 if METRICS[n][0] else -1) * metrics.get(n, -math.inf if METRICS[n][0] else math.inf)
                 for n in rank_by)


def plot_pareto(ranked: list[RankedConfig], path: Path) -> Path:
    """Two panels: accuracy vs cost (M MACs) and robustness (worst kind) vs accuracy, one point
    per configuration (mean over seeds), the Pareto front joined, labelled by rank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sign_mlops.contract.files import atomic_output

    done = [r for r in ranked if r.best_trial is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    panels = (("mmacs", "val_accuracy", "M MACs per image (lower is cheaper)", "grouped-validation accuracy"),
              ("val_accuracy", "robust_worst", "grouped-validation accuracy", "robustness, worst kind"))
    for ax, (x_name, y_name, x_label, y_label) in zip(axes, panels):
        points = [(r.mean.get(x_name, math.nan), r.mean.get(y_name, math.nan), r.rank) for r in done]
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue")
        for x, y, number in points:
            ax.annotate(str(number), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = pareto_front(points, x_higher_better=METRICS[x_name][0])
        ax.plot([p[0] for p in front], [p[1] for p in front], color="tab:orange", linewidth=1, marker="o",
                markerfacecolor="none", markersize=11, label="Pareto front")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.legend(fontsize=8)
    fig.suptitle("sweep: one point per configuration (mean over seeds), numbered by rank", fontsize=10)
    fig.tight_layout()
    with atomic_output(path, binary=True) as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return path


def pareto_front(points: list[tuple[float, float, int]], x_higher_better: bool) -> list[tuple[float, float, int]]:
    """Points no other point beats on both axes (y: higher is better), sorted by x."""
    finite = [p for p in points if not (math.isnan(p[0]) or math.isnan(p[1]))]

    def beats(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
        better_x = a[0] >= b[0] if x_higher_better else a[0] <= b[0]
        return better_x and a[1] >= b[1] and (a[0], a[1]) != (b[0], b[1])

    return sorted((p for p in finite if not any(beats(q, p) for q in finite)), key=lambda p: p[0])


# ---------------------------------------------------------------- one trial


def limit_threads(threads: int) -> None:
    """This process trains with `threads` CPU threads (TensorFlow intra-op and inter-op, BLAS).
    Each sweep worker is one process; the cores are split between workers, so parallel trials do
    not oversubscribe the machine. Later calls in the same process keep the first setting."""
    import os

    from sign_mlops.sign_model.quiet import quiet_tensorflow, stderr_muted

    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(name, str(threads))
    with stderr_muted():  # TensorFlow's start-up chatter, once per worker
        import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:  # TensorFlow already started in this worker: the first trial set it
        pass
    quiet_tensorflow()


def start_trial_run(trial: Trial, parent_run_id: str, files, experiment: str, sweep_name: str) -> str:
    """The trial's child run under the sweep's parent run (MLflow's nested-run tag)."""
    from sign_mlops.sign_model import pipeline

    config = resolve_config(trial.config.preset, {**trial.config.overrides, "seed": trial.seed})
    return pipeline.start_run(files, config, experiment, run_name=f"{sweep_name}-{trial.key}",
                              extra_tags={"mlflow.parentRunId": parent_run_id, "sweep_trial": trial.key,
                                          # the data were validated once, in the parent run (a sweep stops
                                          # there when they fail); the gate reads this tag per version
                                          "validation_passed": "true", "validated_in_run": parent_run_id,
                                          "sweep_config": trial.config.config_id, "sweep_preset": trial.config.preset,
                                          "sweep_label": trial.config.label[:250],
                                          "sweep_overrides": json.dumps(trial.config.overrides, sort_keys=True)})


def run_trial(trial: Trial, run_id: str, files, run_dir: Path) -> TrialResult:
    """Train, evaluate, stress and export one trial in its child run; log `sweep/*` metrics and
    leave a run_record.json (so `register --from` or --promote-best can register it)."""
    import mlflow

    from sign_mlops.sign_model import pipeline, tracking
    from sign_mlops.sign_model.export import onnx_macs
    from sign_mlops.sign_model.results import RunRecord
    from sign_mlops.sign_model.speed import scorer_timer

    config = resolve_config(trial.config.preset, {**trial.config.overrides, "seed": trial.seed})
    trained = pipeline.train_step(run_id, files, config, run_dir / "model")
    evaluated = pipeline.evaluate_step(run_id, files, trained, run_dir / "evaluation")
    robustness = pipeline.robustness_step(run_id, files, trained, run_dir / "robustness")
    exported = pipeline.export_step(run_id, files, trained, run_dir / "onnx", int8=False)
    RunRecord(run_id, str(run_dir), files, trained, evaluated, exported, robustness).save()
    with tempfile.TemporaryDirectory(prefix="sweep-speed-") as scratch:
        timer = scorer_timer(Path(exported.onnx_path), Path(files.test), Path(scratch))
        rows_per_s = statistics.median(timer() for _ in range(3))
    metrics = {"val_accuracy": trained.val_accuracy, "test_accuracy": evaluated.test_accuracy,
               "robust_mean": robustness.mean, "robust_worst": robustness.worst,
               "mmacs": onnx_macs(Path(exported.onnx_path)) / 1e6, "rows_per_s": rows_per_s,
               "train_seconds": trained.train_seconds}
    with tracking.resume_run(run_id):
        mlflow.log_metrics({f"sweep/{k}": float(v) for k, v in metrics.items()})
        mlflow.set_tag("sweep_status", "finished")
    return TrialResult(trial, run_id, str(run_dir), metrics, robustness.worst_kind)
