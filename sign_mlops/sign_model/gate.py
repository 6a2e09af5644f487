"""The promotion gate's policy: floors and tolerances, in one typed object (no MLflow import, so
the CLI can show the defaults). `sign_mlops.sign_model.registry.judge` applies it.

The policy travels whole -- CLI options, the training flow's parameter, `promote` -- so a new
knob is one field here (its `help` becomes the CLI option's help) plus its check in the judge."""

from __future__ import annotations

from dataclasses import dataclass, field


def _knob(default: float, help: str) -> float:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class GatePolicy:
    accuracy_floor: float = _knob(0.90, "Promotion gate: minimum test accuracy.")
    # a challenger may be this much below the champion and still win
    tolerance: float = _knob(0.002, "Promotion gate: allowed accuracy drop vs the champion.")
    # robustness suite at the moderate severity (sign_mlops.sign_model.robustness). The floors are
    # off by default (a smoke model on synthetic data must still become the first champion); the
    # comparison with the champion always applies. Deployments that must handle real cameras
    # raise them (e.g. --robust-mean-floor 0.9 --robust-worst-floor 0.8).
    robust_mean_floor: float = _knob(0.0, "Promotion gate: minimum mean accuracy over the robustness suite's "
                                          "shifts (moderate severity).")
    robust_worst_floor: float = _knob(0.0, "Promotion gate: minimum accuracy of the worst shift kind "
                                           "(moderate severity).")
    robust_tolerance: float = _knob(0.01, "Promotion gate: allowed drop of robustness mean and worst kind vs "
                                          "the champion.")

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"gate policy {name}={value} is out of range; use a share between 0 and 1.")
