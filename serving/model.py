"""Load an ONNX model from a file or from the MLflow registry (`models:/<name>@<alias>`).

A registry URI is resolved by `serving.registry_client` (sqlite3 / REST, no MLflow import);
the version's file is cached under <cache>/<name>/v<version> and its sha256 is checked against
the registry's record (`onnx_sha256` version tag) on every load. MLflow's own client is used
only for stores the light client does not speak.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sign_model.csvformat import file_digest
from sign_model.labels import parse_label_map

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelError(RuntimeError):
    """The model cannot be used for scoring; the message says why and what to do."""


@dataclass
class LoadedModel:
    session: ort.InferenceSession
    path: Path
    sha256: str
    input_name: str
    letters: list[str]
    labels: list[int]
    profile: dict | None
    name: str = ""
    version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities (n, classes) for raw 0-255 pixels (n, 784) float32."""
        return self.session.run(None, {self.input_name: pixels.reshape(-1, 28, 28, 1)})[0]

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "path": str(self.path), "sha256": self.sha256,
                "mlflow_run_id": self.metadata.get("mlflow_run_id", ""),
                "train_data_sha256": self.metadata.get("train_data_sha256", "")}


def session_options(threads: int = 0) -> ort.SessionOptions:
    """Chosen by measurement (benchmarks/score.py, 2 cores): the CSV reader thread shares the
    cores with onnxruntime, so its threads must not busy-wait (spinning off: ~+10 % rows/s)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return options


def load_onnx(path: Path, threads: int = 0, name: str = "", version: str = "",
              expected_sha256: str | None = None) -> LoadedModel:
    """Open an ONNX file and check it is a sign model: input (N, 28, 28, 1), a label map."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"Model {path} is a folder; pass the .onnx file inside it or models:/<name>@<alias>.")
    if not path.is_file():
        raise ModelError(f"Model file {path} not found; pass an .onnx file or models:/<name>@<alias>.")
    sha = file_digest(path)
    if expected_sha256 and sha != expected_sha256:
        raise ModelError(f"{path}: sha256 {sha[:12]}... differs from the registry's {expected_sha256[:12]}...; "
                         "the cached file is corrupt or was changed. Delete the cache folder and retry.")
    try:
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several private exception types
        raise ModelError(f"{path}: not a loadable ONNX model ({exc}).") from exc
    _check_io(session, path)
    meta = session.get_modelmeta().custom_metadata_map
    if "label_map" not in meta:
        raise ModelError(f"{path}: no 'label_map' in the ONNX metadata; export it with 'sign-mlops train' "
                         "(sign_model.export), which records the label map.")
    records = parse_label_map(meta["label_map"])
    n_out = session.get_outputs()[0].shape[-1]
    if isinstance(n_out, int) and n_out != len(records):
        raise ModelError(f"{path}: model has {n_out} outputs but its label map has {len(records)} entries.")
    profile = json.loads(meta["reference_profile"]) if "reference_profile" in meta else None
    return LoadedModel(session, path, sha, session.get_inputs()[0].name, [r["letter"] for r in records],
                       [int(r["label"]) for r in records], profile, name or path.stem, version, dict(meta))


def _check_io(session: ort.InferenceSession, path: Path) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected one input, found {len(inputs)}.")
    shape = inputs[0].shape
    if len(shape) != 4 or list(shape[1:]) != [28, 28, 1]:
        raise ModelError(f"{path}: input shape {shape} is not (N, 28, 28, 1); this is not a Sign Language MNIST model.")
    if inputs[0].type != "tensor(float)":
        raise ModelError(f"{path}: input type {inputs[0].type}, expected tensor(float) raw 0-255 pixels.")


def resolve(spec: str, cache_dir: Path, threads: int = 0) -> LoadedModel:
    """A file path, or models:/<name>@<alias> / models:/<name>/<version> from the MLflow registry."""
    match = _REGISTRY_URI.match(spec)
    if not match:
        if spec.startswith("models:/"):
            raise ModelError(f"Cannot parse model URI {spec!r}; use models:/<name>@<alias> or models:/<name>/<version>.")
        return load_onnx(Path(spec), threads)
    return _from_registry(match["name"], match["alias"], match["version"], cache_dir, threads)


def _from_registry(name: str, alias: str | None, version: str | None, cache_dir: Path, threads: int) -> LoadedModel:
    """Resolve through the light client (no MLflow import); MLflow's client only where needed."""
    from serving import registry_client
    from sign_model.config import tracking_uri

    uri = tracking_uri()
    try:
        info = registry_client.lookup(uri, name, alias, version)
        target = cache_dir / name / f"v{info.version}"
        path = _cached_onnx(target, info.onnx_sha256) or registry_client.fetch_onnx(info, uri, target)
    except registry_client.RegistryError as exc:
        raise ModelError(str(exc)) from None
    except registry_client.Unsupported:
        return _from_registry_with_mlflow(name, alias, version, cache_dir, threads, uri)
    return load_onnx(path, threads, name=name, version=info.version, expected_sha256=info.onnx_sha256)


def _cached_onnx(target: Path, expected_sha256: str | None) -> Path | None:
    """The cached file of a version when its sha256 matches the registry's record (else refetch)."""
    files = sorted(target.glob("*.onnx")) if target.is_dir() else []
    if files and (expected_sha256 is None or file_digest(files[0]) == expected_sha256):
        return files[0]
    return None


def _from_registry_with_mlflow(name: str, alias: str | None, version: str | None, cache_dir: Path, threads: int,
                               tracking_uri: str) -> LoadedModel:
    """Stores and artifact locations the light client does not speak (needs the full install)."""
    wanted = f"models:/{name}{'@' + alias if alias else '/' + str(version)}"
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise ModelError(f"{wanted} on {tracking_uri} needs MLflow's client: install 'sign-mlops[train]', use an "
                         "http(s) MLflow server or a local sqlite store, or pass --model path/to/model.onnx.") from None
    from sign_model import tracking

    tracking.configure(experiment=None, uri=tracking_uri, scoring=True)
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
            raise ModelError(f"{wanted} not found in the registry at {tracking_uri}; train and promote a "
                             "model first ('sign-mlops train'), or check the name and MLFLOW_TRACKING_URI.") from None
        raise ModelError(_unreachable(wanted, tracking_uri, exc)) from None
    except Exception as exc:  # connection errors surface as several types
        raise ModelError(_unreachable(wanted, tracking_uri, exc)) from None
    target = cache_dir / name / f"v{mv.version}"
    path = _cached_onnx(target, mv.tags.get("onnx_sha256"))
    if path is None:
        try:
            _download(f"models:/{name}/{mv.version}", target)
        except Exception as exc:  # the artifact store is down or the files are gone
            raise ModelError(_unreachable(f"models:/{name}/{mv.version}", tracking_uri, exc)) from None
        onnx_files = sorted(target.rglob("*.onnx"))
        if not onnx_files:
            raise ModelError(f"models:/{name}/{mv.version} holds no .onnx file; is it the ONNX registered model?")
        path = onnx_files[0]
    return load_onnx(path, threads, name=name, version=str(mv.version), expected_sha256=mv.tags.get("onnx_sha256"))


def _unreachable(uri: str, tracking_uri: str, exc: Exception) -> str:
    detail = str(getattr(exc, "message", exc)).splitlines()[0][:200]
    return (f"cannot resolve {uri}: the MLflow tracking store {tracking_uri} did not answer ({detail}); "
            "check that the server is up and MLFLOW_TRACKING_URI, or pass --model path/to/model.onnx.")


def _download(uri: str, target: Path) -> None:
    """Download a registry version into target via a private temp folder and a rename, so
    concurrent scorers (e.g. Dask workers on one host) never see a half-downloaded model."""
    import shutil
    import tempfile

    import mlflow

    from serving.registry_client import replace_folder

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp))
        replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
