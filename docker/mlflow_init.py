"""Users and permissions of the stack's MLflow server, from .env; run by the one-shot mlflow-init
service after mlflow is healthy, before the trainer and the scorer start. Idempotent: every run
makes the server match .env (a changed viewer or service password is applied; a user made admin
by hand is made ordinary again).

- the admin (created by MLflow itself on first start, from MLFLOW_AUTH_ADMIN_*) logs in here;
- MLFLOW_VIEWER_USER: an ordinary user; the server's default permission (READ) lets it see
  everything and change nothing of the project's;
- MLFLOW_SERVICE_USER: the trainer's and scorer's account; EDIT on the project's experiment
  (runs, logged models) and MANAGE on its three registered models (new versions, the
  `challenger`/`champion` aliases; removing an alias needs MANAGE).
The experiment and the registered models are created here, by the admin, when missing: a user
who creates a resource owns it, so creating them first keeps any other login from claiming the
names the trainer registers under.

Standard library only (runs on the MLflow image). Exit 0, or 1 with one line saying what to do.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

EXPERIMENT = "sign-language-mnist"  # sign_mlops.sign_model.tracking.DEFAULT_EXPERIMENT
MODELS = ("sign-mnist-keras", "sign-mnist-onnx", "sign-mnist-onnx-int8")  # sign_model.registry
MODEL_DEVELOPMENT_TAG = {"key": "mlflow.experimentKind", "value": "custom_model_development"}


class InitError(Exception):
    """What went wrong and what to do, in one line."""


def main() -> int:
    try:
        summary = init(os.environ)
    except InitError as exc:
        print(f"mlflow-init: {exc}", file=sys.stderr)
        return 1
    print(f"mlflow-init: {summary}")
    return 0


def init(env) -> str:
    """Make the server's users and grants match the environment; returns a one-line summary."""
    base = _required(env, "MLFLOW_TRACKING_URI").rstrip("/")
    admin = (_required(env, "MLFLOW_ADMIN_USER"), _required(env, "MLFLOW_ADMIN_PASSWORD"))
    viewer = (_required(env, "MLFLOW_VIEWER_USER"), _required(env, "MLFLOW_VIEWER_PASSWORD"))
    service = (_required(env, "MLFLOW_SERVICE_USER"), _required(env, "MLFLOW_SERVICE_PASSWORD"))
    if len({admin[0], viewer[0], service[0]}) < 3:
        raise InitError("MLFLOW_ADMIN_USER, MLFLOW_VIEWER_USER and MLFLOW_SERVICE_USER must be three different names.")
    api = Api(base, admin)
    api.wait_healthy(float(env.get("MLFLOW_INIT_WAIT_S", "180")))
    api.check_admin_login()
    for user, password in (viewer, service):
        api.ensure_user(user, password)
    experiment_id = api.ensure_experiment(EXPERIMENT)
    api.ensure_grant(service[0], "experiment", experiment_id, "EDIT")
    for name in MODELS:
        api.ensure_registered_model(name)
        api.ensure_grant(service[0], "registered_model", name, "MANAGE")
    return (f"users {viewer[0]} (read-only) and {service[0]} ready; {service[0]} may write to experiment "
            f"{EXPERIMENT} and manage models {', '.join(MODELS)}; everyone else reads them")


def _required(env, name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise InitError(f"{name} is not set; run scripts/make-env.sh for a .env with every setting.")
    return value


class Api:
    """The MLflow server's REST API as the admin."""

    def __init__(self, base: str, admin: tuple[str, str]):
        self.base = base
        self.admin = admin[0]
        token = base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> tuple[int, dict]:
        url = f"{self.base}/api/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {}
        except (urllib.error.URLError, OSError) as exc:
            raise InitError(f"MLflow server {self.base} did not answer ({getattr(exc, 'reason', exc)}); "
                            "is the mlflow service up?") from None

    def ok(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict:
        status, answer = self.call(method, path, body, query)
        if status >= 300:
            raise InitError(f"{method} {path} answered HTTP {status}: {answer.get('message', answer)}")
        return answer

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise InitError(f"MLflow server {self.base} not healthy after {timeout_s:.0f} s; "
                                    "see: docker compose logs mlflow") from None
                time.sleep(2)

    def check_admin_login(self) -> None:
        status, _ = self.call("GET", "2.0/mlflow/users/get", query={"username": self.admin})
        if status in (401, 403):
            raise InitError(f"the server refused admin {self.admin!r} (HTTP {status}): MLFLOW_ADMIN_PASSWORD is "
                            "only used on the first start; if you changed it in .env, change it on the server "
                            "too (docs/compose.md, 'Access').")
        if status >= 300:
            raise InitError(f"reading user {self.admin!r} answered HTTP {status}")

    def ensure_user(self, user: str, password: str) -> None:
        status, found = self.call("GET", "2.0/mlflow/users/get", query={"username": user})
        if status == 404 or (status >= 400 and found.get("error_code") == "RESOURCE_DOES_NOT_EXIST"):
            self.ok("POST", "2.0/mlflow/users/create", {"username": user, "password": password})
            return
        if status >= 300:
            raise InitError(f"reading user {user!r} answered HTTP {status}: {found.get('message', found)}")
        self.ok("PATCH", "2.0/mlflow/users/update-password", {"username": user, "password": password})
        if found.get("user", {}).get("is_admin"):
            self.ok("PATCH", "2.0/mlflow/users/update-admin", {"username": user, "is_admin": False})

    def ensure_experiment(self, name: str) -> str:
        status, found = self.call("GET", "2.0/mlflow/experiments/get-by-name", query={"experiment_name": name})
        if status < 300:
            return found["experiment"]["experiment_id"]
        created = self.ok("POST", "2.0/mlflow/experiments/create", {"name": name, "tags": [MODEL_DEVELOPMENT_TAG]})
        return created["experiment_id"]

    def ensure_registered_model(self, name: str) -> None:
        status, _ = self.call("GET", "2.0/mlflow/registered-models/get", query={"name": name})
        if status >= 300:
            self.ok("POST", "2.0/mlflow/registered-models/create", {"name": name})

    def ensure_grant(self, user: str, resource_type: str, resource_id: str, permission: str) -> None:
        """`user` holds exactly `permission` on the resource (an explicit grant, replaced if different)."""
        where = {"username": user, "resource_type": resource_type, "resource_id": resource_id}
        status, _ = self.call("POST", "3.0/mlflow/users/permissions/grant", {**where, "permission": permission})
        if status < 300:
            return
        current = self.ok("GET", "3.0/mlflow/users/permissions/get", query=where).get("permission")
        if current == permission:
            return
        self.ok("POST", "3.0/mlflow/users/permissions/revoke", where)
        self.ok("POST", "3.0/mlflow/users/permissions/grant", {**where, "permission": permission})


if __name__ == "__main__":
    sys.exit(main())
