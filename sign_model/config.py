"""Every path in one place, derived from the project home; settings come from the environment.

Importing this module has no side effects: nothing is created until a command asks for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TRAIN_NAMES = ("sign_mnist_train.csv", "sign_mnist_train.csv.gz")
TEST_NAMES = ("sign_mnist_test.csv", "sign_mnist_test.csv.gz")


def project_home() -> Path:
    """Project home: $SIGN_MLOPS_HOME, else the current directory."""
    return Path(os.environ.get("SIGN_MLOPS_HOME", ".")).resolve()


@dataclass(frozen=True)
class Paths:
    """Where inputs and outputs live, all under one home directory."""

    home: Path

    @property
    def data_dir(self) -> Path:
        """Put the Kaggle files here (sign_mnist_train.csv[.gz], sign_mnist_test.csv[.gz])."""
        return self.home / "data"

    @property
    def synthetic_dir(self) -> Path:
        """Generated data lives with the outputs: data/ holds only what a user brings."""
        return self.outputs_dir / "synthetic-data"

    @property
    def outputs_dir(self) -> Path:
        return self.home / "outputs"

    @property
    def reports_dir(self) -> Path:
        return self.outputs_dir / "reports"

    @property
    def figures_dir(self) -> Path:
        return self.outputs_dir / "figures"

    @property
    def mlflow_db(self) -> Path:
        return self.outputs_dir / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.outputs_dir / "mlartifacts"

    @property
    def model_cache(self) -> Path:
        return self.outputs_dir / "model-cache"

    @property
    def scores_dir(self) -> Path:
        return self.outputs_dir / "scores"

    @property
    def inbox(self) -> Path:
        """$SIGN_MLOPS_INBOX, else <home>/inbox."""
        return Path(os.environ.get("SIGN_MLOPS_INBOX") or self.home / "inbox")

    @property
    def outbox(self) -> Path:
        """$SIGN_MLOPS_OUTBOX, else <home>/outbox."""
        return Path(os.environ.get("SIGN_MLOPS_OUTBOX") or self.home / "outbox")


def default_paths() -> Paths:
    return Paths(project_home())


def tracking_uri(paths: Paths | None = None) -> str:
    """$MLFLOW_TRACKING_URI when set, else a local sqlite store under outputs/."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    paths = paths or default_paths()
    return f"sqlite:///{paths.mlflow_db}"


def find_kaggle_file(data_dir: Path, names: tuple[str, ...]) -> Path | None:
    """First existing Kaggle file in data_dir (plain CSV preferred over .gz)."""
    for name in names:
        candidate = data_dir / name
        if candidate.is_file():
            return candidate
    return None


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
        from sign_model.train_config import PRESETS

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
