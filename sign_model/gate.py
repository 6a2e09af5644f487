"""The promotion gate's policy: floors and tolerances, in one place (no MLflow import, so the CLI
can show the defaults). `sign_model.registry.judge` applies it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GatePolicy:
    accuracy_floor: float = 0.90
    tolerance: float = 0.002  # a challenger may be this much below the champion and still win
    # robustness suite at the moderate severity (sign_model.robustness). The floors are off by
    # default (a smoke model on synthetic data must still become the first champion); the
    # comparison with the champion always applies. Deployments that must handle real cameras
    # raise them (e.g. --robust-mean-floor 0.9 --robust-worst-floor 0.8).
    robust_mean_floor: float = 0.0
    robust_worst_floor: float = 0.0
    robust_tolerance: float = 0.01
