"""Sweep files: what they expand to, what they refuse, and how trials are ranked."""

from __future__ import annotations

import math

import pytest

from sign_mlops.sign_model.sweep import (
    Config,
    SweepError,
    Trial,
    TrialResult,
    configurations,
    pareto_front,
    parse_spec,
    rank,
    trials_of,
)


def test_a_grid_is_every_combination_of_presets_and_values_times_seeds():
    spec = parse_spec({"presets": ["smoke", "lite"], "space": {"epochs": [2, 3], "dropout": [0.1, 0.3]},
                       "fixed": {"batch_size": 64}, "seeds": [0, 1]}, "grid.yaml")
    configs = configurations(spec)
    assert len(configs) == 2 * 2 * 2
    assert {(c.preset, c.overrides["epochs"], c.overrides["dropout"]) for c in configs} == {
        (p, e, d) for p in ("smoke", "lite") for e in (2, 3) for d in (0.1, 0.3)}
    assert all(c.overrides["batch_size"] == 64 for c in configs)
    trials = trials_of(spec, configs)
    assert len(trials) == 16 and len({t.key for t in trials}) == 16
    assert len({c.config_id for c in configs}) == 8


def test_random_draws_are_reproducible_and_inside_their_ranges():
    raw = {"method": "random", "trials": 6, "presets": ["smoke"], "sampler_seed": 3,
           "space": {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": {"low": 2, "high": 4, "int": True}}}
    first, again = configurations(parse_spec(raw, "r.yaml")), configurations(parse_spec(raw, "r.yaml"))
    assert [c.config_id for c in first] == [c.config_id for c in again]  # a resumed sweep finds its trials
    for config in first:
        assert 1e-4 <= config.overrides["learning_rate"] <= 1e-2
        assert config.overrides["epochs"] in (2, 3, 4)
    other = configurations(parse_spec({**raw, "sampler_seed": 4}, "r.yaml"))
    assert [c.config_id for c in other] != [c.config_id for c in first]


@pytest.mark.parametrize("raw, words", [
    ({"space": {"epoch": [1]}}, "epoch"),  # a misspelt TrainConfig key
    ({"space": {"epochs": ["three"]}}, "epochs"),
    ({"presets": ["huge"]}, "unknown preset"),
    ({"method": "bayes"}, "method 'bayes'"),
    ({"method": "random"}, "needs 'trials'"),
    ({"space": {"learning_rate": {"low": 0.01, "high": 0.001}}}, "low: A, high: B"),
    ({"space": {"learning_rate": {"low": 0.001, "high": 0.01}}}, "need method random or tpe"),
    ({"rank_by": ["speed"]}, "rank_by"),
    ({"fixed": {"seed": 3}}, "'seeds' key"),
    ({"sapce": {}}, "unknown key"),
])
def test_a_bad_sweep_file_is_refused_with_what_and_where(raw, words):
    with pytest.raises(SweepError) as refused:
        parse_spec({"presets": ["smoke"], **raw}, "bad.yaml")
    assert "bad.yaml" in str(refused.value) and words in str(refused.value)


def _result(preset: str, seed: int, **metrics: float) -> TrialResult:
    return TrialResult(Trial(Config(preset, {}), seed), f"run-{preset}-{seed}", "", dict(metrics))


def test_ranking_uses_the_mean_over_seeds_and_breaks_ties_with_the_next_metric():
    results = [
        _result("a", 0, val_accuracy=0.99, robust_worst=0.50), _result("a", 1, val_accuracy=0.91, robust_worst=0.60),
        _result("b", 0, val_accuracy=0.95, robust_worst=0.70), _result("b", 1, val_accuracy=0.95, robust_worst=0.72),
        _result("c", 0, val_accuracy=0.95, robust_worst=0.90), _result("c", 1, val_accuracy=0.95, robust_worst=0.80),
        TrialResult(Trial(Config("d", {}), 0), "", "", error="KilledWorker: worker died"),
    ]
    ranked = rank(results, ("val_accuracy", "robust_worst"))
    assert [r.config.preset for r in ranked] == ["c", "b", "a", "d"]  # a's mean is 0.95 too, with the worst robustness
    assert ranked[0].mean["robust_worst"] == pytest.approx(0.85) and ranked[0].worst["robust_worst"] == 0.80
    assert ranked[0].best_trial.run_id == "run-c-0"
    assert ranked[-1].failed == 1 and ranked[-1].best_trial is None
    cheaper = rank([_result("x", 0, mmacs=5.0), _result("y", 0, mmacs=20.0)], ("mmacs",))
    assert [r.config.preset for r in cheaper] == ["x", "y"]  # fewer MACs is better


def test_the_pareto_front_keeps_only_points_nothing_beats():
    points = [(5.0, 0.95, 1), (20.0, 0.99, 2), (20.0, 0.94, 3), (6.0, 0.90, 4), (math.nan, 0.99, 5)]
    assert [p[2] for p in pareto_front(points, x_higher_better=False)] == [1, 2]
