"""Fetch a registry version's ONNX file with MLflow's own client: for stores and artifact
locations the scorer's light registry client does not speak (it raises `Unsupported`).

Lives in the training layer because it imports MLflow; the CLI and flows hand it to
`sign_mlops.serving.model.resolve` as `fetch_with_mlflow`."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from sign_mlops.serving.model import FetchedOnnx, ModelError, cached_onnx
from sign_mlops.serving.registry_client import no_alias_message


def fetch_with_mlflow(name: str, alias: str | None, version: str | None, cache_dir: Path,
                      tracking_uri: str) -> FetchedOnnx:
    """Stores and artifact locations the light client does not speak (needs the full install)."""
    if not alias and version is None:  # resolve's models:/ pattern gives one or the other
        raise ValueError(f"fetch_with_mlflow({name!r}): pass an alias or a version.")
    wanted = f"models:/{name}{'@' + alias if alias else '/' + str(version)}"
    from sign_mlops.sign_model import tracking

    tracking.configure(experiment=None, uri=tracking_uri, scoring=True)
    client = mlflow.MlflowClient()
    try:
        if alias:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            assert version is not None  # checked above
            mv = client.get_model_version(name, version)
    except MlflowException as exc:
        if alias and ("RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower()):
            versions = len(client.search_model_versions(f"name='{name}'"))
            raise ModelError(no_alias_message(wanted, tracking_uri, name, alias, versions)) from None
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
            raise ModelError(f"{wanted} not found in the registry at {tracking_uri}; train and promote a "
                             "model first ('sign-mlops train'), or check the name and MLFLOW_TRACKING_URI.") from None
        raise ModelError(_unreachable(wanted, tracking_uri, exc)) from None
    except Exception as exc:  # connection errors surface as several types
        raise ModelError(_unreachable(wanted, tracking_uri, exc)) from None
    target = cache_dir / name / f"v{mv.version}"
    path = cached_onnx(target, mv.tags.get("onnx_sha256"))
    if path is None:
        try:
            _download(f"models:/{name}/{mv.version}", target)
        except Exception as exc:  # the artifact store is down or the files are gone
            raise ModelError(_unreachable(f"models:/{name}/{mv.version}", tracking_uri, exc)) from None
        onnx_files = sorted(target.rglob("*.onnx"))
        if not onnx_files:
            raise ModelError(f"models:/{name}/{mv.version} holds no .onnx file; is it the ONNX registered model?")
        path = onnx_files[0]
    return FetchedOnnx(path, str(mv.version), mv.tags.get("onnx_sha256"))


def _unreachable(uri: str, tracking_uri: str, exc: Exception) -> str:
    detail = str(getattr(exc, "message", exc)).splitlines()[0][:200]
    return (f"cannot resolve {uri}: the MLflow tracking store {tracking_uri} did not answer ({detail}); "
            "check that the server is up and MLFLOW_TRACKING_URI, or pass --model path/to/model.onnx.")


def _download(uri: str, target: Path) -> None:
    """Download a registry version into target via a private temp folder and a rename, so
    concurrent scorers (e.g. Dask workers on one host) never see a half-downloaded model."""
    import shutil
    import tempfile

    from sign_mlops.serving.registry_client import replace_folder

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp))
        replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
