"""docker/postgres-init.sh on a real PostgreSQL 15 cluster of its own (temporary folder, free
port, unix socket beside it): each service's role logs in to its own databases only, with its
password; the script is idempotent and applies a changed password. Skips without PostgreSQL 15.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="PostgreSQL 15 server not installed")]
SUPERUSER = "signmlops"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def cluster():
    folder = Path(tempfile.mkdtemp(prefix="pg-roles-", dir="/tmp"))  # reachable by the postgres user
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(folder, postgres.pw_uid, postgres.pw_gid)
    data, port = folder / "data", _free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth-local=trust",
                                 "--auth-host=scram-sha-256"]),
                   check=True, capture_output=True, cwd="/")
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                                 f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True, cwd="/")
    try:
        yield {"socket": str(folder), "port": str(port)}
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True, cwd="/")
        shutil.rmtree(folder, ignore_errors=True)


def _settings(**changed: str) -> dict[str, str]:
    return {"POSTGRES_USER": SUPERUSER, "MLFLOW_DB": "mlflow", "MLFLOW_AUTH_DB": "mlflow_auth",
            "MLFLOW_DB_USER": "mlflow", "MLFLOW_DB_PASSWORD": "mlflow-0123456789abcdef",
            "PREFECT_DB": "prefect", "PREFECT_DB_USER": "prefect", "PREFECT_DB_PASSWORD": "prefect-0123456789abcdef",
            **changed}


def _init(cluster: dict, **changed: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGHOST": cluster["socket"], "PGPORT": cluster["port"], **_settings(**changed)}
    return subprocess.run(["bash", str(ROOT / "docker" / "postgres-init.sh")], env=env, capture_output=True, text=True)


def _login(cluster: dict, role: str, password: str, database: str) -> subprocess.CompletedProcess:
    """Over TCP with a password, as the services connect."""
    env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
    return subprocess.run(["psql", "-h", "127.0.0.1", "-p", cluster["port"], "-U", role, "-d", database,
                           "-v", "ON_ERROR_STOP=1", "-Atc", "SELECT current_user"],
                          env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def initialised(cluster):
    done = _init(cluster)
    assert done.returncode == 0, done.stderr
    return cluster


@pytest.mark.parametrize("role, password, database, allowed", [
    ("mlflow", "mlflow-0123456789abcdef", "mlflow", True),
    ("mlflow", "mlflow-0123456789abcdef", "mlflow_auth", True),
    ("mlflow", "mlflow-0123456789abcdef", "prefect", False),
    ("prefect", "prefect-0123456789abcdef", "prefect", True),
    ("prefect", "prefect-0123456789abcdef", "mlflow", False),
    ("prefect", "prefect-0123456789abcdef", "mlflow_auth", False),
    ("prefect", "prefect-0123456789abcdef", "postgres", False),  # not even the maintenance database
    ("mlflow", "wrong-password-0123456", "mlflow", False),
])
def test_each_role_reaches_its_own_databases_only(initialised, role, password, database, allowed):
    done = _login(initialised, role, password, database)
    assert (done.returncode == 0) is allowed, done.stderr
    if allowed:
        assert done.stdout.strip() == role


def test_roles_own_their_databases_and_hold_no_other_power(initialised):
    query = ("SELECT string_agg(d.datname || '=' || r.rolname, ',' ORDER BY d.datname) FROM pg_database d "
             "JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname IN ('mlflow', 'mlflow_auth', 'prefect')")
    owners = subprocess.run(["psql", "-h", initialised["socket"], "-p", initialised["port"], "-U", SUPERUSER,
                             "-d", "postgres", "-Atc", query], capture_output=True, text=True, check=True)
    assert owners.stdout.strip() == "mlflow=mlflow,mlflow_auth=mlflow,prefect=prefect"
    powers = subprocess.run(["psql", "-h", initialised["socket"], "-p", initialised["port"], "-U", SUPERUSER,
                             "-d", "postgres", "-Atc", "SELECT bool_or(rolsuper OR rolcreatedb OR rolcreaterole) "
                             "FROM pg_roles WHERE rolname IN ('mlflow', 'prefect')"],
                            capture_output=True, text=True, check=True)
    assert powers.stdout.strip() == "f"


def test_init_is_idempotent_and_applies_a_changed_password(initialised):
    again = _init(initialised, MLFLOW_DB_PASSWORD="mlflow-changed-0123456789")
    assert again.returncode == 0, again.stderr
    assert _login(initialised, "mlflow", "mlflow-changed-0123456789", "mlflow").returncode == 0
    assert _login(initialised, "mlflow", "mlflow-0123456789abcdef", "mlflow").returncode != 0
    assert _init(initialised).returncode == 0  # back to the module's password
