"""Resolve `models:/<name>@<alias>` (or `/<version>`) without importing MLflow.

Importing MLflow and opening its SQL store took most of a scoring call's start-up; the scorer
only needs three facts about a version -- its number, where its files are and the sha256 the
registry recorded -- so it asks for them directly:
- a local `sqlite:///...` store is read with Python's sqlite3, read-only (MLflow 3's
  `registered_model_aliases`, `model_versions` and `model_version_tags` tables);
- an `http(s)://` tracking server through MLflow's REST API (`registered-models/alias`,
  `model-versions/get`) and its artifact proxy (`mlflow-artifacts`), with the standard
  MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD credentials.
Anything else (other stores, artifacts on S3...) raises `Unsupported`; the caller then uses
MLflow's own client when the full install is present.

Staleness: the alias is looked up on every call (one query); only the files of a version are
cached, under their version number, so a moved alias is served at once.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

RETRIES = 2  # about 15 s when the server refuses connections; 3 x 10 s + back-off when it hangs
TIMEOUT_S = 10.0


class Unsupported(Exception):
    """This store or artifact location needs MLflow's own client."""


class RegistryError(RuntimeError):
    """The registry answered (or could not be reached); the message says what to do."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    location: str  # where the version's files are: file://..., mlflow-artifacts:/..., s3://...
    onnx_sha256: str | None


# ---------------------------------------------------------------- lookup


def lookup(tracking_uri: str, name: str, alias: str | None = None, version: str | None = None) -> VersionInfo:
    """The version holding `alias` (or `version`), straight from the store."""
    if tracking_uri.startswith("sqlite:///"):
        return _sqlite_lookup(Path(tracking_uri.removeprefix("sqlite:///")), name, alias, version)
    if tracking_uri.startswith(("http://", "https://")):
        return _rest_lookup(tracking_uri.rstrip("/"), name, alias, version)
    raise Unsupported(tracking_uri)


def _sqlite_lookup(db: Path, name: str, alias: str | None, version: str | None) -> VersionInfo:
    wanted = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    if not db.is_file():
        raise RegistryError(f"{wanted} not found: there is no MLflow store at {db} yet; train and promote a model "
                            "first ('sign-mlops train'), or set MLFLOW_TRACKING_URI.")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=TIMEOUT_S) as db_conn:
            if alias:
                row = db_conn.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                                      (name, alias)).fetchone()
                if row is None:
                    count = db_conn.execute("SELECT COUNT(*) FROM model_versions WHERE name = ?", (name,)).fetchone()
                    raise RegistryError(no_alias_message(wanted, str(db), name, alias, int(count[0])))
                version = str(row[0])
            if version is None:
                raise RegistryError(f"models:/{name}: name an alias (models:/{name}@champion) or a version.")
            row = db_conn.execute("SELECT storage_location, source FROM model_versions WHERE name = ? AND version = ?",
                                  (name, int(version))).fetchone()
            if row is None:
                raise RegistryError(f"{wanted} not found in the registry at {db}; check the name and version.")
            tag = db_conn.execute("SELECT value FROM model_version_tags WHERE name = ? AND version = ? AND key = ?",
                                  (name, int(version), "onnx_sha256")).fetchone()
    except sqlite3.Error as exc:  # another schema, a locked or broken file: let MLflow's client try
        raise Unsupported(f"sqlite store {db}: {exc}") from None
    return VersionInfo(name, str(version), row[0] or row[1], tag[0] if tag else None)


def no_alias_message(wanted: str, where: str, name: str, alias: str, versions: int) -> str:
    """Why an alias is missing, and the way out: nothing trained yet, or versions the gate refused."""
    if versions == 0:
        return (f"{wanted} not found at {where}: no version of {name} is registered yet; train one "
                "('sign-mlops train'), or check the name and MLFLOW_TRACKING_URI.")
    return (f"{wanted} not found at {where}: {name} has {versions} version(s) but none is '{alias}' (the promotion "
            "gate refused them: 'sign-mlops models' shows why); make one champion with 'sign-mlops promote "
            "--version N --why \"...\"', or train the default preset ('sign-mlops train').")


def _rest_lookup(base: str, name: str, alias: str | None, version: str | None) -> VersionInfo:
    if alias:
        query = urllib.parse.urlencode({"name": name, "alias": alias})
        try:
            found = _get_json(f"{base}/api/2.0/mlflow/registered-models/alias?{query}", f"models:/{name}@{alias}")
        except RegistryError as exc:
            if "not found" not in str(exc):
                raise
            raise RegistryError(no_alias_message(f"models:/{name}@{alias}", base, name, alias,
                                                 _rest_version_count(base, name))) from None
    else:
        query = urllib.parse.urlencode({"name": name, "version": version})
        found = _get_json(f"{base}/api/2.0/mlflow/model-versions/get?{query}", f"models:/{name}/{version}")
    mv = found["model_version"]
    tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
    location = mv.get("storage_location") or _logged_model_location(base, mv.get("source", ""))
    return VersionInfo(name, str(mv["version"]), location, tags.get("onnx_sha256"))


def _rest_version_count(base: str, name: str) -> int:
    """How many versions the registered model has (0 when it does not exist)."""
    query = urllib.parse.urlencode({"filter": f"name='{name}'", "max_results": 1000})
    try:
        found = _get_json(f"{base}/api/2.0/mlflow/model-versions/search?{query}", f"versions of {name}")
    except RegistryError:
        return 0
    return len(found.get("model_versions", []))


def _logged_model_location(base: str, source: str) -> str:
    """MLflow 3 versions point at a logged model (models:/m-...); its files are at its artifact_uri."""
    if not source.startswith("models:/m-"):
        return source
    model_id = source.removeprefix("models:/").split("/")[0]
    return _get_json(f"{base}/api/2.0/mlflow/logged-models/{model_id}", source)["model"]["info"]["artifact_uri"]


# ---------------------------------------------------------------- files


def fetch_onnx(info: VersionInfo, tracking_uri: str, target: Path) -> Path:
    """Copy or download the version's .onnx file into `target` (a folder, filled atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if info.location.startswith("file://") or info.location.startswith("/"):
            _copy_local(info, tmp)
        elif info.location.startswith("mlflow-artifacts:/") and tracking_uri.startswith(("http://", "https://")):
            _download_proxied(info, tracking_uri.rstrip("/"), tmp)
        else:
            raise Unsupported(info.location)
        replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    onnx_files = sorted(target.glob("*.onnx"))
    if not onnx_files:
        raise RegistryError(f"models:/{info.name}/{info.version} holds no .onnx file ({info.location}); "
                            "is it the ONNX registered model?")
    return onnx_files[0]


def replace_folder(tmp: Path, target: Path) -> None:
    """Put a filled private folder in place of target (concurrent scorers on one host never see
    a half-written model: whoever renames first wins, and its copy is as good)."""
    shutil.rmtree(target, ignore_errors=True)  # a stale folder without a model
    try:
        tmp.rename(target)
    except OSError:
        pass


def _copy_local(info: VersionInfo, tmp: Path) -> None:
    folder = Path(urllib.parse.unquote(urllib.parse.urlparse(info.location).path)) \
        if info.location.startswith("file://") else Path(info.location)
    files = sorted(folder.glob("*.onnx"))
    if not files:
        raise RegistryError(f"models:/{info.name}/{info.version}: no .onnx file in {folder}; were the artifacts "
                            "moved or deleted?")
    for path in files:
        shutil.copy2(path, tmp / path.name)


def _download_proxied(info: VersionInfo, base: str, tmp: Path) -> None:
    path = info.location.removeprefix("mlflow-artifacts:").lstrip("/")
    listing = _get_json(f"{base}/api/2.0/mlflow-artifacts/artifacts?{urllib.parse.urlencode({'path': path})}",
                        f"models:/{info.name}/{info.version}")
    names = [f["path"].split("/")[-1] for f in listing.get("files", []) if f["path"].endswith(".onnx")]
    for name in names:
        url = f"{base}/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(path)}/{urllib.parse.quote(name)}"
        with _open(url, f"models:/{info.name}/{info.version}") as response, open(tmp / name, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)


# ---------------------------------------------------------------- HTTP


def _headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _open(url: str, what: str):
    """GET with bounded retries on connection errors and 5xx; 404 -> RegistryError at once."""
    request = urllib.request.Request(url, headers=_headers())
    for attempt in range(RETRIES + 1):
        try:
            return urllib.request.urlopen(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code in (400, 404):
                raise RegistryError(f"{what} not found at {url.split('/api/')[0]}; train and promote a model first "
                                    "('sign-mlops train'), or check the name and MLFLOW_TRACKING_URI.") from None
            if exc.code in (401, 403):
                raise RegistryError(_refused_message(what, url.split("/api/")[0], exc.code)) from None
            if exc.code < 500 or attempt == RETRIES:
                raise RegistryError(f"cannot resolve {what}: the tracking server answered HTTP {exc.code}; "
                                    "check MLFLOW_TRACKING_URI and its credentials.") from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt == RETRIES:
                reason = getattr(exc, "reason", exc)
                raise RegistryError(f"cannot resolve {what}: the MLflow tracking store {url.split('/api/')[0]} did not "
                                    f"answer ({reason}); check that the server is up and MLFLOW_TRACKING_URI, or pass "
                                    "--model path/to/model.onnx.") from None
        time.sleep(2**attempt)
    raise AssertionError("unreachable")


def _refused_message(what: str, base: str, code: int) -> str:
    """The tracking server wants a login (401) or keeps this model from the login (403): what to do."""
    token, user = os.environ.get("MLFLOW_TRACKING_TOKEN"), os.environ.get("MLFLOW_TRACKING_USERNAME")
    login = "MLFLOW_TRACKING_TOKEN" if token else f"user {user}"
    if code == 403:
        return (f"cannot resolve {what}: the MLflow server {base} does not let {login} read it (HTTP 403); "
                "ask an MLflow admin for READ on the model.")
    if not _headers():
        return (f"cannot resolve {what}: the MLflow server {base} wants a login (HTTP 401); set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN).")
    return (f"cannot resolve {what}: the MLflow server {base} refused the login of {login} (HTTP 401); "
            "check MLFLOW_TRACKING_PASSWORD (or the token).")


def _get_json(url: str, what: str) -> dict:
    with _open(url, what) as response:
        return json.load(response)
