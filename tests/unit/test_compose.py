"""The docker-compose stack is well-formed (no Docker engine here: parse and check it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_services_of_the_stack():
    assert {"postgres", "mlflow", "prefect", "trainer", "scorer"} <= set(SERVICES)


@pytest.mark.parametrize("name", ["postgres", "mlflow", "prefect", "trainer", "scorer"])
def test_every_service_has_a_healthcheck(name):
    check = SERVICES[name]["healthcheck"]
    assert check["test"] and check["retries"] >= 3


ONE_SHOT = {"secrets-check", "mlflow-init"}  # run to completion; the others wait for their success


def test_startup_order_waits_for_healthy_dependencies():
    for name, service in SERVICES.items():
        for dep, cond in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert dep in SERVICES and cond == {"condition": wanted}, name
    assert set(SERVICES["postgres"]["depends_on"]) == {"secrets-check"}
    for name in ("trainer", "scorer"):
        assert set(SERVICES[name]["depends_on"]) == {"mlflow", "mlflow-init", "prefect"}


def test_ports_bound_to_localhost_only():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_named_volumes_are_declared():
    declared = set(COMPOSE["volumes"])
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared


def test_env_references_are_defined_in_env_example_and_secrets_are_not_committed():
    text = (ROOT / "docker-compose.yml").read_text()
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(?::?[?-][^}]*)?\}", text))
    assert referenced <= set(_env_example()), referenced - set(_env_example())
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()


def test_mlflow_server_on_postgres_with_proxied_artifacts_and_allowed_hosts():
    command = SERVICES["mlflow"]["command"]
    start = (ROOT / "docker" / "mlflow-start.sh").read_text()  # the stores' URLs (passwords) stay off the command line
    assert "MLFLOW_BACKEND_STORE_URI=\"postgresql+psycopg2://" in start and "exec \"$@\"" in start
    assert "--artifacts-destination /mlartifacts" in command
    assert "--serve-artifacts" in command and "mlflow:5000" in command
    assert "psycopg2" in (ROOT / SERVICES["mlflow"]["build"]["dockerfile"]).read_text()
    assert "postgresql+asyncpg://" in SERVICES["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]


def test_training_and_scoring_run_on_their_own_images():
    trainer, scorer = SERVICES["trainer"], SERVICES["scorer"]
    assert trainer["build"] == "." and "serve --only training" in trainer["command"]
    assert scorer["build"]["dockerfile"] == "docker/scorer.Dockerfile" and "serve --only scoring" in scorer["command"]
    assert {"/srv/sign-mlops/inbox", "/srv/sign-mlops/outbox"} <= {v.split(":")[1] for v in scorer["volumes"]}
    assert "/srv/sign-mlops/data" in {v.split(":")[1] for v in trainer["volumes"]}
    for service in (trainer, scorer):
        assert service["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_scorer_image_is_light_and_non_root():
    text = (ROOT / "docker" / "scorer.Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text and "USER app" in text
    assert 'pip install ".[orchestrate]"' in text and "train" not in text.split("pip install")[1].split("\n")[0]
    assert 'pip install ".[train,server]"' in (ROOT / "Dockerfile").read_text()


def _compose_clients() -> list[list[str]]:
    """Every compose client on this machine: Compose v2 (`docker compose`) and v1 (`docker-compose`)."""
    clients = []
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        clients.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        clients.append(["docker-compose"])
    return clients


@pytest.mark.skipif(not _compose_clients(), reason="no compose client (.ci/run installs Debian's docker-compose)")
@pytest.mark.parametrize("profile", [[], ["--profile", "scale"]])
def test_compose_clients_accept_the_file(tmp_path, profile):
    env = tmp_path / ".env"
    subprocess.run(["bash", str(ROOT / "scripts" / "make-env.sh"), "--out", str(env)], check=True, capture_output=True)
    for client in _compose_clients():
        done = subprocess.run([*client, "--env-file", str(env), "-f", str(ROOT / "docker-compose.yml"), *profile,
                               "config", "-q"], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, (client, done.stderr)


def test_file_works_with_compose_v1_and_v2():
    assert "name" not in COMPOSE, "top-level 'name:' is Compose v2 only; COMPOSE_PROJECT_NAME in .env works in both"
    assert _env_example()["COMPOSE_PROJECT_NAME"] == "sign-mlops"


def test_image_creates_every_mount_point_owned_by_the_app_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    scorer_dockerfile = (ROOT / "docker" / "scorer.Dockerfile").read_text()
    for service, text in (("trainer", dockerfile), ("scorer", scorer_dockerfile), ("dask-worker", scorer_dockerfile)):
        for volume in SERVICES[service]["volumes"]:
            target = volume.split(":")[1]
            assert target in text, f"{target} is not created in the image of {service}"
    assert "chown -R app:app /srv/sign-mlops" in dockerfile and "USER app" in dockerfile


def test_build_context_is_an_allowlist_without_secrets_data_or_environments():
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "everything is left out unless allowed"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "sign_mlops"}


def test_mlflow_server_worker_count_is_set_for_a_small_host():
    assert "--workers ${MLFLOW_WORKERS}" in SERVICES["mlflow"]["command"]


def test_scale_profile_adds_dask_scheduler_and_workers_on_the_scorer_image():
    scheduler, worker = SERVICES["dask-scheduler"], SERVICES["dask-worker"]
    assert scheduler["profiles"] == ["scale"] and worker["profiles"] == ["scale"]
    assert scheduler["image"] == worker["image"] == SERVICES["scorer"]["image"]
    assert "tcp://dask-scheduler:8786" in worker["command"]
    assert worker["depends_on"] == {"dask-scheduler": {"condition": "service_healthy"}}
    shared = {v.split(":")[1] for v in worker["volumes"]} & {v.split(":")[1] for v in SERVICES["scorer"]["volumes"]}
    assert {"/srv/sign-mlops/inbox", "/srv/sign-mlops/outbox"} <= shared
    assert "SIGN_MLOPS_DASK_ADDRESS" in SERVICES["scorer"]["environment"]
