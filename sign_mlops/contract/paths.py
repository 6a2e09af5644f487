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
