"""Load the model a scoring command or flow names: the light registry client first, MLflow's
own client for other stores when the full install has it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sign_mlops.serving.model import LoadedModel, OnnxFetcher, resolve


def mlflow_fetcher() -> OnnxFetcher | None:
    """MLflow's client as the registry fallback, or None in the scoring-only install. MLflow is
    imported only when the fallback is used: scoring an .onnx file or a store the light client
    speaks never pays its 0.9 CPU s import."""
    if importlib.util.find_spec("mlflow") is None:
        return None

    def fetch_with_mlflow(*args, **kwargs):
        from sign_mlops.sign_model.model_fetch import fetch_with_mlflow as fetch

        return fetch(*args, **kwargs)

    return fetch_with_mlflow


def load_scoring_model(spec: str, cache_dir: Path, threads: int = 0) -> LoadedModel:
    """An .onnx file or models:/<name>@<alias>, checked; raises ModelError with what to do."""
    return resolve(spec, cache_dir, threads, fetch_with_mlflow=mlflow_fetcher())
