"""Load an ONNX model from a file or from the MLflow registry (`models:/<name>@<alias>`).

A registry URI is resolved by `sign_mlops.serving.registry_client` (sqlite3 / REST, no MLflow import);
the version's file is cached under <cache>/<name>/v<version> and its sha256 is checked against
the registry's record (`onnx_sha256` version tag) on every load. MLflow's own client is used
only for stores the light client does not speak.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sign_mlops.contract.csvformat import file_digest
from sign_mlops.contract.labels import parse_label_map

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
                         "(sign_mlops.sign_model.export), which records the label map.")
    records = parse_label_map(meta["label_map"])
    n_out = session.get_outputs()[0].shape[-1]
    if isinstance(n_out, int) and n_out != len(records):
        raise ModelError(f"{path}: model has {n_out} outputs but its label map has {len(records)} entries.")
    profile = json.loads(meta["reference_profile"]) if "reference_profile" in meta else None
    return LoadedModel(session, path, sha, session.get_inputs()[0].name, [str(r["letter"]) for r in records],
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


@dataclass(frozen=True)
class FetchedOnnx:
    """A registry version's ONNX file on local disk, with the sha256 the registry recorded."""

    path: Path
    version: str
    sha256: str | None


# (name, alias, version, cache_dir, tracking_uri) -> FetchedOnnx; raises ModelError
OnnxFetcher = Callable[[str, "str | None", "str | None", Path, str], FetchedOnnx]


def resolve(spec: str, cache_dir: Path, threads: int = 0, fetch_with_mlflow: OnnxFetcher | None = None) -> LoadedModel:
    """A file path, or models:/<name>@<alias> / models:/<name>/<version> from the MLflow registry.

    Stores the light registry client does not speak need `fetch_with_mlflow`, which the full
    install passes in (`sign_mlops.sign_model.model_fetch.fetch_with_mlflow`): serving never
    imports MLflow itself."""
    match = _REGISTRY_URI.match(spec)
    if not match:
        if spec.startswith("models:/"):
            raise ModelError(f"Cannot parse model URI {spec!r}; use models:/<name>@<alias> or models:/<name>/<version>.")
        return load_onnx(Path(spec), threads)
    return _from_registry(match["name"], match["alias"], match["version"], cache_dir, threads, fetch_with_mlflow)


def _from_registry(name: str, alias: str | None, version: str | None, cache_dir: Path, threads: int,
                   fetch_with_mlflow: OnnxFetcher | None) -> LoadedModel:
    """Resolve through the light client (no MLflow import); MLflow's client only where needed."""
    from sign_mlops.contract.paths import tracking_uri
    from sign_mlops.serving import registry_client

    uri = tracking_uri()
    try:
        info = registry_client.lookup(uri, name, alias, version)
        target = cache_dir / name / f"v{info.version}"
        path = cached_onnx(target, info.onnx_sha256) or registry_client.fetch_onnx(info, uri, target)
    except registry_client.RegistryError as exc:
        raise ModelError(str(exc)) from None
    except registry_client.Unsupported:
        if fetch_with_mlflow is None:
            wanted = f"models:/{name}{'@' + alias if alias else '/' + str(version)}"
            raise ModelError(f"{wanted} on {uri} needs MLflow's client: install 'sign-mlops[train]', use an "
                             "http(s) MLflow server or a local sqlite store, or pass --model path/to/model.onnx.") from None
        fetched = fetch_with_mlflow(name, alias, version, cache_dir, uri)
        return load_onnx(fetched.path, threads, name=name, version=fetched.version, expected_sha256=fetched.sha256)
    return load_onnx(path, threads, name=name, version=info.version, expected_sha256=info.onnx_sha256)


def cached_onnx(target: Path, expected_sha256: str | None) -> Path | None:
    """The cached file of a version when its sha256 matches the registry's record (else refetch)."""
    files = sorted(target.glob("*.onnx")) if target.is_dir() else []
    if files and (expected_sha256 is None or file_digest(files[0]) == expected_sha256):
        return files[0]
    return None
