"""The production stack for real, without Docker: PostgreSQL, an MLflow server on it with proxied
artifacts, a Prefect server on it; then the CLI (training flow, inbox scoring, `serve`) against them.

Skips cleanly where PostgreSQL is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration,
              pytest.mark.skipif(shutil.which("pg_ctlcluster") is None, reason="PostgreSQL (pg_ctlcluster) not installed")]

BIN = Path(sys.executable).parent
ROLE = "sign_mlops_test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _psql(sql: str) -> None:
    cmd = ["psql", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd="/")


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def postgres():
    """The host's PostgreSQL cluster: started if it was stopped, and then stopped again after
    (a cluster that was already running is left running)."""
    was_running = subprocess.run(["pg_ctlcluster", "15", "main", "status"], capture_output=True).returncode == 0
    if not was_running:
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], capture_output=True, check=True)
    try:
        yield from _databases()
    finally:
        if not was_running:
            subprocess.run(["pg_ctlcluster", "15", "main", "stop"], capture_output=True)


def _databases():
    suffix = uuid.uuid4().hex[:8]
    dbs = {"mlflow": f"mlflow_{suffix}", "prefect": f"prefect_{suffix}"}
    _psql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN "
          f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE}'; END IF; END $$;")
    for db in dbs.values():
        _psql(f"CREATE DATABASE {db} OWNER {ROLE}")
    yield {k: f"{ROLE}:{ROLE}@127.0.0.1:5432/{v}" for k, v in dbs.items()}
    for db in dbs.values():
        _psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture(scope="module")
def servers(postgres, tmp_path_factory):
    work = tmp_path_factory.mktemp("stack")
    mlflow_port, prefect_port = _free_port(), _free_port()
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(work / "prefect-home"),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{postgres['prefect']}"}
    env.pop("PREFECT_API_URL", None)
    logs = {name: work / f"{name}.log" for name in ("mlflow", "prefect")}
    procs = {
        "mlflow": subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"postgresql+psycopg2://{postgres['mlflow']}",
             "--artifacts-destination", str(work / "artifacts"), "--serve-artifacts", "--host", "127.0.0.1",
             "--port", str(mlflow_port), "--workers", "1", "--allowed-hosts", f"127.0.0.1:{mlflow_port},localhost:{mlflow_port}"],
            stdout=open(logs["mlflow"], "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True),
        "prefect": subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            stdout=open(logs["prefect"], "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True),
    }
    try:
        _wait_http(f"http://127.0.0.1:{mlflow_port}/health", procs["mlflow"], logs["mlflow"])
        _wait_http(f"http://127.0.0.1:{prefect_port}/api/health", procs["prefect"], logs["prefect"])
        yield {"mlflow": f"http://127.0.0.1:{mlflow_port}", "prefect": f"http://127.0.0.1:{prefect_port}/api",
               "work": work}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def client_env(servers, synthetic_files):
    home = servers["work"] / "home"
    (home / "data").mkdir(parents=True)
    shutil.copy(synthetic_files[0], home / "data" / "sign_mnist_train.csv")
    shutil.copy(synthetic_files[1], home / "data" / "sign_mnist_test.csv")
    env = {**os.environ, "MLFLOW_TRACKING_URI": servers["mlflow"], "PREFECT_API_URL": servers["prefect"],
           "SIGN_MLOPS_HOME": str(home), "SIGN_MLOPS_PRESET": "smoke", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PREFECT_HOME": str(servers["work"] / "client-prefect-home")}
    return env, home


def _cli(env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "sign-mlops"), *args], env=env, cwd=env["SIGN_MLOPS_HOME"],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _prefect_post(servers: dict, path: str, body: dict | None = None) -> list | dict:
    response = httpx.post(f"{servers['prefect']}{path}", json=body or {}, timeout=10)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def trained(client_env, servers):
    env, home = client_env
    _cli(env, "train", "--preset", "smoke", "--accuracy-floor", "0.3")
    return env, home


def test_training_run_and_champion_live_on_the_servers(trained, servers):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=servers["mlflow"], registry_uri=servers["mlflow"])
    champion = client.get_model_version_by_alias("sign-mnist-onnx", "champion")
    run = client.get_run(champion.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test/accuracy"] > 0.3
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "confusion_matrix.png" in names and "robustness_heatmap.png" in names
    assert (servers["work"] / "artifacts").exists()
    runs = _prefect_post(servers, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
    assert any(r["name"] and r["state_type"] == "COMPLETED" for r in runs)


def test_inbox_scoring_against_the_servers(trained, servers):
    env, home = trained
    inbox = home / "inbox"
    inbox.mkdir(exist_ok=True)
    shutil.copy(home / "data" / "sign_mnist_test.csv", inbox / "batch.csv")
    _cli(env, "score-inbox", "--inbox", str(inbox), "--outbox", str(home / "outbox"), "--settle-seconds", "0")
    import json

    summary = json.loads(next((home / "outbox").glob("batch-*/batch.summary.json")).read_text())
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_rejected"] > 0
    assert summary["model"]["name"] == "sign-mnist-onnx" and summary["model"]["version"]
    flows = _prefect_post(servers, "/flows/filter")
    assert {"sign-mnist-training", "sign-mnist-inbox-scoring"} <= {f["name"] for f in flows}


def test_serve_registers_both_schedules_and_skips_unchanged_data(trained, servers):
    env, home = trained
    env = {**env, "PREFECT_RUNNER_POLL_FREQUENCY": "2", "SIGN_MLOPS_SCORE_INTERVAL": "3600"}
    log = servers["work"] / "serve.log"
    # a terminal's Ctrl-C reaches a process whose SIGINT is not ignored; a test run started in the
    # background of a script (nohup ... &) hands its children SIGINT ignored, so put it back
    proc = subprocess.Popen([str(BIN / "sign-mlops"), "serve"], env=env, cwd=home, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deployments = _wait_for_deployments(servers, proc, log)
        by_name = {d["name"]: d for d in deployments}
        assert {"scheduled-retraining", "inbox-scoring"} <= set(by_name)
        assert all(not by_name[n]["paused"] and by_name[n]["schedules"] for n in ("scheduled-retraining", "inbox-scoring"))
        runs_before = _mlflow_runs(servers)
        run = _prefect_post(servers, f"/deployments/{by_name['scheduled-retraining']['id']}/create_flow_run", {})
        state = _wait_for_final_state(servers, run["id"])
        assert state == "COMPLETED", log.read_text()[-3000:]
        messages = _wait_for_log(servers, run["id"], "Skipping retraining")
        assert any("Skipping retraining" in m for m in messages), messages
        assert _mlflow_runs(servers) == runs_before  # nothing was trained
    finally:
        _stop_with_ctrl_c(proc, log)
    after = {d["name"]: d for d in _prefect_post(servers, "/deployments/filter")}
    assert not after["scheduled-retraining"]["paused"] and not after["inbox-scoring"]["paused"]


def _stop_with_ctrl_c(proc: subprocess.Popen, log: Path, patience: float = 120.0) -> None:
    """Ctrl-C must stop `serve` (in about a second here); the patience is generous for loaded
    machines, and a serve that outlives it is killed (never left behind) and fails with its log."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=patience)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"sign-mlops serve did not stop within {patience:.0f} s of Ctrl-C; its log ends:\n"
                             + log.read_text()[-3000:]) from None


def _mlflow_runs(servers: dict) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=servers["mlflow"])
    return sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())


def _wait_for_log(servers: dict, run_id: str, text: str, timeout: float = 60) -> list[str]:
    """Flow-run logs reach the API in batches after the run ends: poll until `text` shows up."""
    deadline = time.time() + timeout
    messages: list[str] = []
    while time.time() < deadline:
        logs = _prefect_post(servers, "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}})
        messages = [entry["message"] for entry in logs]
        if any(text in m for m in messages):
            break
        time.sleep(2)
    return messages


def _wait_for_deployments(servers: dict, proc: subprocess.Popen, log: Path, timeout: float = 120) -> list:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited:\n{log.read_text()[-3000:]}")
        deployments = _prefect_post(servers, "/deployments/filter")
        if len(deployments) >= 2:
            return deployments
        time.sleep(1)
    raise TimeoutError(log.read_text()[-3000:])


def _wait_for_final_state(servers: dict, run_id: str, timeout: float = 300) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = httpx.get(f"{servers['prefect']}/flow_runs/{run_id}", timeout=10).json()
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run["state_type"]
        time.sleep(2)
    return "TIMEOUT"
