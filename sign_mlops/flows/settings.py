"""Settings of the long-running service (`sign-mlops serve`), read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sign_mlops.contract.paths import Paths, project_home
from sign_mlops.sign_model.train_config import PRESETS


@dataclass(frozen=True)
class ServiceSettings:
    """Settings of the long-running service (`sign-mlops serve`), from the environment."""

    retrain_cron: str = "0 3 * * *"
    score_interval_s: int = 300
    inbox: Path = Path("inbox")
    outbox: Path = Path("outbox")
    model_uri: str = "models:/sign-mnist-onnx@champion"
    preset: str = "default"

    @classmethod
    def from_env(cls) -> "ServiceSettings":
        """Read and check every setting; a bad one is a ValueError naming the variable."""
        env = os.environ
        home = project_home()
        settings = cls(
            retrain_cron=env.get("SIGN_MLOPS_RETRAIN_CRON", cls.retrain_cron).strip(),
            score_interval_s=_positive_int(env, "SIGN_MLOPS_SCORE_INTERVAL", cls.score_interval_s),
            inbox=Paths(home).inbox,
            outbox=Paths(home).outbox,
            model_uri=env.get("SIGN_MLOPS_MODEL_URI", cls.model_uri),
            preset=env.get("SIGN_MLOPS_PRESET", cls.preset),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if not _valid_cron(self.retrain_cron):
            raise ValueError(f"SIGN_MLOPS_RETRAIN_CRON={self.retrain_cron!r} is not a valid cron expression; "
                             "use five fields, e.g. '0 3 * * *' (03:00 every day).")
        if self.preset not in PRESETS:
            raise ValueError(f"SIGN_MLOPS_PRESET={self.preset!r} is not a preset; choose one of {sorted(PRESETS)}.")
        if not (self.model_uri.startswith("models:/") or self.model_uri.endswith(".onnx")):
            raise ValueError(f"SIGN_MLOPS_MODEL_URI={self.model_uri!r}: expected models:/<name>@<alias> or an .onnx file.")


def _positive_int(env, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number of seconds; e.g. {name}=300.") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1 second.")
    return value


def _valid_cron(expression: str) -> bool:
    """Checked with Prefect's own schedule model (what `serve` will use)."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=expression)
    except ValueError:  # pydantic's ValidationError is a ValueError
        return False
    return True
