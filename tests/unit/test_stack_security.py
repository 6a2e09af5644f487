"""A stack a team can share (issue 31), checked without Docker: secrets from scripts/make-env.sh
only (empty and placeholder ones refused), logins on MLflow and Prefect sent by every client,
one PostgreSQL role per service, non-root images, read-only root filesystems, nothing dangerous
published. The servers themselves: tests/integration/test_stack_auth.py."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
SERVICES = yaml.safe_load(COMPOSE_TEXT)["services"]
SECRETS = ["POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD", "PREFECT_DB_PASSWORD", "MLFLOW_ADMIN_PASSWORD",
           "MLFLOW_VIEWER_PASSWORD", "MLFLOW_SERVICE_PASSWORD", "MLFLOW_SECRET_KEY", "PREFECT_AUTH_PASSWORD"]


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def _make_env(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "make-env.sh"), "--out", str(out), *args],
                          capture_output=True, text=True)


def _check_env(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "check-env.sh"), *args], capture_output=True, text=True,
                          env=env)


# ---------------------------------------------------------------- secrets


def test_env_example_holds_no_secret():
    example = _env_file(ROOT / ".env.example")
    assert {name: example[name] for name in SECRETS} == dict.fromkeys(SECRETS, "")


def test_make_env_writes_fresh_random_secrets_for_its_owner_only(tmp_path):
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert _make_env(first).returncode == 0 and _make_env(second).returncode == 0
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    values = [_env_file(path)[name] for path in (first, second) for name in SECRETS]
    assert all(re.fullmatch(r"[0-9a-f]{48}", v) for v in values) and len(set(values)) == len(values)
    assert _check_env(str(first)).returncode == 0
    kept = {k: v for k, v in _env_file(first).items() if k not in SECRETS}
    assert kept == {k: v for k, v in _env_file(ROOT / ".env.example").items() if k not in SECRETS}


def test_make_env_keeps_an_existing_file_and_sets_extra_settings(tmp_path):
    env = tmp_path / ".env"
    assert _make_env(env, "COMPOSE_PROJECT_NAME=check", "MLFLOW_PORT=5001").returncode == 0
    before = env.read_text()
    refused = _make_env(env)
    assert refused.returncode == 1 and "--force" in refused.stderr and env.read_text() == before
    assert _env_file(env)["COMPOSE_PROJECT_NAME"] == "check" and _env_file(env)["MLFLOW_PORT"] == "5001"
    assert _make_env(env, "--force").returncode == 0 and env.read_text() != before


@pytest.mark.parametrize("value, reason", [
    ("", "is empty"),
    ("change-me", "is a placeholder"),
    ("CHANGEME-0123456789abcdef", "is a placeholder"),
    ("password-0123456789abcdef", "is a placeholder"),
    ("3f9a0c", "is shorter than 16 characters"),
    ("0123456789abcdef@host", "has characters outside"),
    ("0123456789abcdef 0123", "has characters outside"),
])
def test_check_env_refuses_empty_placeholder_short_and_unsafe_secrets_in_one_line(tmp_path, value, reason):
    env = tmp_path / ".env"
    assert _make_env(env).returncode == 0
    env.write_text(re.sub(r"(?m)^MLFLOW_VIEWER_PASSWORD=.*$", f"MLFLOW_VIEWER_PASSWORD={value}", env.read_text()))
    done = _check_env(str(env))
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"stack refused: MLFLOW_VIEWER_PASSWORD {reason}") and "make-env.sh" in done.stderr


def test_check_env_reads_the_environment_as_the_secrets_check_service_runs_it(tmp_path):
    env_file = tmp_path / ".env"
    _make_env(env_file)
    good = {**os.environ, **{name: _env_file(env_file)[name] for name in SECRETS}}
    assert _check_env(env=good).returncode == 0
    bad = _check_env(env={**good, "PREFECT_AUTH_PASSWORD": "change-me"})
    assert bad.returncode == 1 and "PREFECT_AUTH_PASSWORD is a placeholder (in the environment)" in bad.stderr


def test_every_secret_in_compose_is_required_and_named_in_its_message():
    for name in SECRETS:
        references = re.findall(r"\$\{" + name + r"(:\?[^}]*)?\}", COMPOSE_TEXT)
        assert references, f"{name} is not used by the stack"
        assert all(ref == f":?{name} is empty in .env; run scripts/make-env.sh" for ref in references), name


def test_secrets_check_runs_first_and_sees_every_secret():
    check = SERVICES["secrets-check"]
    assert check["entrypoint"] == ["bash", "/opt/sign-mlops/check-env.sh"] and check["network_mode"] == "none"
    assert set(check["environment"]) == set(SECRETS)
    assert SERVICES["postgres"]["depends_on"] == {"secrets-check": {"condition": "service_completed_successfully"}}


def _compose_client() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.mark.skipif(_compose_client() is None, reason="no compose client")
def test_compose_refuses_a_copy_of_env_example_naming_the_empty_secret(tmp_path):
    env = tmp_path / ".env"
    shutil.copy(ROOT / ".env.example", env)
    done = subprocess.run([*_compose_client(), "--env-file", str(env), "-f", str(ROOT / "docker-compose.yml"),
                           "config", "-q"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0
    assert re.search(r"[A-Z_]+_(PASSWORD|SECRET_KEY) is empty in \.env; run scripts/make-env\.sh", done.stderr)


# ---------------------------------------------------------------- logins


def test_mlflow_runs_its_basic_auth_app_with_users_from_env():
    mlflow, init = SERVICES["mlflow"], SERVICES["mlflow-init"]
    assert mlflow["command"].split()[:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    assert mlflow["entrypoint"] == ["sh", "/opt/sign-mlops/mlflow-start.sh"]
    assert {"MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"} \
        <= set(mlflow["environment"])
    start = (ROOT / "docker" / "mlflow-start.sh").read_text()
    assert "default_permission = READ" in start and "MLFLOW_AUTH_CONFIG_PATH" in start
    assert "${MLFLOW_AUTH_DB}" in start  # users and permissions in PostgreSQL, not in the container
    assert init["command"] == ["python", "/opt/sign-mlops/mlflow_init.py"] and init["restart"] == "no"
    assert init["depends_on"] == {"mlflow": {"condition": "service_healthy"}}


@pytest.mark.parametrize("name", ["trainer", "scorer", "dask-worker"])
def test_clients_send_the_service_login(name):
    env = SERVICES[name]["environment"]
    assert env["MLFLOW_TRACKING_USERNAME"] == "${MLFLOW_SERVICE_USER}"
    assert env["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_SERVICE_PASSWORD:?")
    if name != "dask-worker":  # the workers never call Prefect
        assert env["PREFECT_API_AUTH_STRING"].startswith("${PREFECT_AUTH_USER}:${PREFECT_AUTH_PASSWORD:?")
        assert env["PREFECT_API_AUTH_STRING"].split(":", 1)[1] == \
            SERVICES["prefect"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"].split(":", 1)[1]


def test_mlflow_init_names_the_projects_experiment_and_models():
    from sign_mlops.sign_model import registry, tracking

    spec = importlib.util.spec_from_file_location("mlflow_init", ROOT / "docker" / "mlflow_init.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.EXPERIMENT == tracking.DEFAULT_EXPERIMENT
    assert set(module.MODELS) == {registry.KERAS_MODEL, registry.ONNX_MODEL, registry.INT8_MODEL}


# ---------------------------------------------------------------- PostgreSQL roles


def test_each_service_reaches_postgres_as_its_own_role():
    assert "${POSTGRES_USER}" not in COMPOSE_TEXT.replace(COMPOSE_TEXT[COMPOSE_TEXT.index("  postgres:\n"):
                                                                      COMPOSE_TEXT.index("  mlflow:\n")], "")
    assert "postgresql+asyncpg://${PREFECT_DB_USER}:" in SERVICES["prefect"]["environment"][
        "PREFECT_API_DATABASE_CONNECTION_URL"]
    start = (ROOT / "docker" / "mlflow-start.sh").read_text()
    assert start.count("postgresql+psycopg2://${MLFLOW_DB_USER}:${MLFLOW_DB_PASSWORD}@") == 2
    init = (ROOT / "docker" / "postgres-init.sh").read_text()
    assert 'own_databases "$MLFLOW_DB_USER" "$MLFLOW_DB_PASSWORD" "$MLFLOW_DB" "$MLFLOW_AUTH_DB"' in init
    assert 'own_databases "$PREFECT_DB_USER" "$PREFECT_DB_PASSWORD" "$PREFECT_DB"' in init
    assert "REVOKE ALL ON DATABASE" in init and "NOSUPERUSER NOCREATEDB NOCREATEROLE" in init


# ---------------------------------------------------------------- least privilege


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "docker/scorer.Dockerfile", "docker/mlflow.Dockerfile"])
def test_project_images_run_as_an_unprivileged_user(dockerfile):
    users = re.findall(r"(?m)^USER\s+(\S+)", (ROOT / dockerfile).read_text())
    assert users and users[-1] not in ("root", "0", "0:0"), f"{dockerfile} ends as {users[-1:] or 'root'}"


def test_no_service_gets_the_docker_socket_or_privileges():
    for name, service in SERVICES.items():
        assert not any("docker.sock" in str(v) for v in service.get("volumes", [])), name
        assert not service.get("privileged") and "cap_add" not in service, name
        assert service.get("security_opt") == ["no-new-privileges:true"], name


def test_dask_scheduler_is_not_published():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert not port.endswith(":8786"), f"{name} publishes the Dask scheduler"
    assert SERVICES["dask-scheduler"]["ports"] == ["127.0.0.1:${DASK_DASHBOARD_PORT}:8787"]


def test_every_service_has_a_read_only_root_filesystem_and_a_writable_tmp():
    for name, service in SERVICES.items():
        assert service.get("read_only") is True, name
        if name not in ("secrets-check", "mlflow-init"):  # these two write nothing
            assert "/tmp" in service["tmpfs"], name
    for name in ("trainer", "scorer", "dask-scheduler", "dask-worker"):  # ~/.prefect, ~/.keras, caches
        assert SERVICES[name]["tmpfs"] == ["/tmp", "/home/app"] and SERVICES[name]["cap_drop"] == ["ALL"]
    assert SERVICES["prefect"]["environment"]["PREFECT_HOME"].startswith("/tmp/")
    assert SERVICES["postgres"]["tmpfs"] == ["/var/run/postgresql", "/tmp"]
