"""The stack's logins for real, without Docker: `mlflow server --app-name basic-auth` (sqlite in a
temporary folder) set up by the stack's own init step (docker/mlflow_init.py), and `prefect server
start` with PREFECT_SERVER_API_AUTH_STRING, each on a free port; then who may do what, through
their REST APIs, MLflow's client, the scorer's light registry client and the CLI.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL = "sign-mnist-onnx"
LOGINS = {role: (name, f"{role}-{secrets.token_hex(12)}")
          for role, name in (("admin", "admin"), ("viewer", "viewer"), ("service", "sign-mlops-service"))}
PREFECT_AUTH = f"sign-mlops:{secrets.token_hex(16)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any MLflow or Prefect login or server address."""
    drop = ("MLFLOW_TRACKING_", "PREFECT_API_", "MLFLOW_AUTH_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, **extra}


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
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


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _init_env(base: str, **changed: str) -> dict[str, str]:
    env = _clean_env(MLFLOW_TRACKING_URI=base, MLFLOW_INIT_WAIT_S="30")
    for role in ("admin", "viewer", "service"):
        env[f"MLFLOW_{role.upper()}_USER"], env[f"MLFLOW_{role.upper()}_PASSWORD"] = LOGINS[role]
    return {**env, **changed}


def _run_init(base: str, **changed: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "docker" / "mlflow_init.py")], env=_init_env(base, **changed),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """MLflow (basic-auth, as docker/mlflow-start.sh configures it) and Prefect (auth string)."""
    work = tmp_path_factory.mktemp("auth-stack")
    mlflow_port, prefect_port = _free_port(), _free_port()
    config = work / "basic_auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{work / 'auth.db'}\nadmin_username = {LOGINS['admin'][0]}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                      "auth_cache_ttl_seconds = 60\n")
    mlflow_env = _clean_env(MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_AUTH_ADMIN_USERNAME=LOGINS["admin"][0],
                            MLFLOW_AUTH_ADMIN_PASSWORD=LOGINS["admin"][1],
                            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    prefect_env = _clean_env(PREFECT_HOME=str(work / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                             PREFECT_SERVER_API_AUTH_STRING=PREFECT_AUTH)
    logs = {name: work / f"{name}.log" for name in ("mlflow", "prefect")}
    procs = [
        subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--backend-store-uri",
             f"sqlite:///{work / 'mlflow.db'}", "--artifacts-destination", str(work / "artifacts"), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
             "--allowed-hosts", f"127.0.0.1:{mlflow_port},localhost:{mlflow_port}"],
            stdout=open(logs["mlflow"], "w"), stderr=subprocess.STDOUT, env=mlflow_env, start_new_session=True),
        subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            stdout=open(logs["prefect"], "w"), stderr=subprocess.STDOUT, env=prefect_env, start_new_session=True),
    ]
    try:
        mlflow, prefect = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{prefect_port}/api"
        _wait_http(f"{mlflow}/health", procs[0], logs["mlflow"])
        _wait_http(f"{prefect}/health", procs[1], logs["prefect"])
        done = _run_init(mlflow)
        assert done.returncode == 0, done.stdout + done.stderr
        yield {"mlflow": mlflow, "prefect": prefect, "work": work, "init_output": done.stdout}
    finally:
        _stop(procs)


def _mlflow(servers: dict, method: str, path: str, login: tuple[str, str] | None, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{servers['mlflow']}/api/2.0/mlflow/{path}", auth=login, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def champion(servers, onnx_model_path):
    """The service account logs a run with an ONNX file, registers it and makes it champion,
    through MLflow's client and the project's registry code (as the trainer does)."""
    import mlflow
    from mlflow import MlflowClient

    from sign_mlops.sign_model import registry

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", LOGINS["service"][0])
        mp.setenv("MLFLOW_TRACKING_PASSWORD", LOGINS["service"][1])
        mp.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        mlflow.set_tracking_uri(servers["mlflow"])
        client = MlflowClient(tracking_uri=servers["mlflow"], registry_uri=servers["mlflow"])
        experiment = client.get_experiment_by_name("sign-language-mnist")  # made by mlflow_init.py
        run = client.create_run(experiment.experiment_id)
        client.log_artifact(run.info.run_id, str(onnx_model_path), "model")
        client.log_metric(run.info.run_id, "test/accuracy", 0.9)
        client.set_terminated(run.info.run_id)
        sha = hashlib.sha256(onnx_model_path.read_bytes()).hexdigest()
        version = client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id,
                                              tags={"onnx_sha256": sha})
        client.set_registered_model_alias(MODEL, registry.CHALLENGER, version.version)
        client.set_registered_model_alias(MODEL, registry.CHAMPION, version.version)
        client.delete_registered_model_alias(MODEL, registry.CHALLENGER)  # removing an alias needs MANAGE
        found = registry.version_by_alias(MODEL, registry.CHAMPION)
        mlflow.set_tracking_uri(None)
    return {"version": version.version, "sha256": sha, "found": found}


# ---------------------------------------------------------------- MLflow


def test_init_step_is_idempotent_and_follows_env_changes(servers):
    assert "viewer (read-only)" in servers["init_output"]
    again = _run_init(servers["mlflow"])
    assert again.returncode == 0 and again.stdout.count("\n") == 1, again.stdout + again.stderr
    changed = _run_init(servers["mlflow"], MLFLOW_VIEWER_PASSWORD="viewer-changed-" + secrets.token_hex(8))
    assert changed.returncode == 0, changed.stderr
    assert _mlflow(servers, "POST", "runs/search", LOGINS["viewer"], json={"experiment_ids": ["0"]}).status_code == 401
    assert _run_init(servers["mlflow"]).returncode == 0  # back to the password of this module
    assert _mlflow(servers, "POST", "runs/search", LOGINS["viewer"], json={"experiment_ids": ["0"]}).status_code == 200


def test_init_step_refuses_a_wrong_admin_password_in_one_line(servers):
    done = _run_init(servers["mlflow"], MLFLOW_ADMIN_PASSWORD="not-the-admin-password")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "refused admin 'admin' (HTTP 401)" in done.stderr, done.stderr


@pytest.mark.parametrize("login", [None, ("viewer", "wrong-password-123"), ("nobody", "some-password-123")],
                         ids=["anonymous", "wrong-password", "unknown-user"])
@pytest.mark.parametrize("request_", [("POST", "runs/search", {"experiment_ids": ["0"]}),
                                      ("POST", "registered-models/alias",
                                       {"name": MODEL, "alias": "champion", "version": "1"})],
                         ids=["search-runs", "set-alias"])
def test_mlflow_refuses_requests_without_a_valid_login(servers, login, request_):
    method, path, body = request_
    assert _mlflow(servers, method, path, login, json=body).status_code == 401


def test_health_needs_no_login(servers):
    """The compose healthchecks call these without credentials."""
    assert httpx.get(f"{servers['mlflow']}/health", timeout=10).status_code == 200
    assert httpx.get(f"{servers['prefect']}/health", timeout=10).status_code == 200


def test_service_account_registers_and_moves_the_champion(champion):
    assert champion["found"] is not None and champion["found"].version == champion["version"]


def test_viewer_reads_everything_but_cannot_move_the_champion(servers, champion):
    viewer = LOGINS["viewer"]
    assert _mlflow(servers, "POST", "runs/search", viewer, json={"experiment_ids": ["0", "1"]}).status_code == 200
    alias = _mlflow(servers, "GET", "registered-models/alias", viewer, params={"name": MODEL, "alias": "champion"})
    assert alias.status_code == 200 and alias.json()["model_version"]["version"] == champion["version"]
    attempts = [("POST", "registered-models/alias", {"json": {"name": MODEL, "alias": "champion", "version": "1"}}),
                ("DELETE", "registered-models/alias", {"params": {"name": MODEL, "alias": "champion"}}),
                ("POST", "model-versions/create", {"json": {"name": MODEL, "source": "mlflow-artifacts:/x"}}),
                ("POST", "registered-models/set-tag", {"json": {"name": MODEL, "key": "k", "value": "v"}})]
    for method, path, kwargs in attempts:
        assert _mlflow(servers, method, path, viewer, **kwargs).status_code == 403, path
    # nor can the viewer create the project's experiment or models anew: mlflow_init.py made them
    assert _mlflow(servers, "POST", "registered-models/create", viewer, json={"name": MODEL}).status_code != 200
    alias = _mlflow(servers, "GET", "registered-models/alias", viewer, params={"name": MODEL, "alias": "champion"})
    assert alias.json()["model_version"]["version"] == champion["version"]


def test_registry_client_resolves_the_champion_with_the_service_login(servers, champion, tmp_path, monkeypatch):
    from sign_mlops.serving import registry_client

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", LOGINS["service"][0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", LOGINS["service"][1])
    info = registry_client.lookup(servers["mlflow"], MODEL, alias="champion")
    assert info.version == champion["version"] and info.onnx_sha256 == champion["sha256"]
    path = registry_client.fetch_onnx(info, servers["mlflow"], tmp_path / "model")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == champion["sha256"]


@pytest.mark.parametrize("login, expected", [
    (None, "wants a login (HTTP 401); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    (("sign-mlops-service", "wrong-password-123"), "refused the login of user sign-mlops-service (HTTP 401)"),
], ids=["no-login", "wrong-password"])
def test_registry_client_without_the_login_fails_in_one_line(servers, champion, monkeypatch, login, expected):
    from sign_mlops.serving import registry_client

    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    if login:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", login[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", login[1])
    with pytest.raises(registry_client.RegistryError) as caught:
        registry_client.lookup(servers["mlflow"], MODEL, alias="champion")
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def _score(servers: dict, csv: Path, out: Path, **login: str) -> subprocess.CompletedProcess:
    env = _clean_env(MLFLOW_TRACKING_URI=servers["mlflow"], SIGN_MLOPS_HOME=str(out.parent / "home"), **login)
    return subprocess.run([str(BIN / "sign-mlops"), "score", str(csv), "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_scorer_scores_with_the_champion_given_the_service_login_and_says_why_not_without(
        servers, champion, synthetic_files, tmp_path):
    service = {"MLFLOW_TRACKING_USERNAME": LOGINS["service"][0], "MLFLOW_TRACKING_PASSWORD": LOGINS["service"][1]}
    scored = _score(servers, synthetic_files[1], tmp_path / "scored", **service)
    assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr[-2000:]
    assert (tmp_path / "scored" / f"{synthetic_files[1].name.split('.')[0]}.summary.json").exists()
    refused = _score(servers, synthetic_files[1], tmp_path / "refused")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr + refused.stdout
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "HTTP 401" in lines[0] and "MLFLOW_TRACKING_USERNAME" in lines[0], refused.stderr


# ---------------------------------------------------------------- Prefect


def _basic(auth_string: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


@pytest.mark.parametrize("headers", [{}, _basic("sign-mlops:wrong"), {"Authorization": "Bearer x"}],
                         ids=["anonymous", "wrong-password", "not-basic"])
def test_prefect_refuses_reading_and_creating_flow_runs_without_the_auth_string(servers, headers):
    read = httpx.post(f"{servers['prefect']}/flow_runs/filter", json={}, headers=headers, timeout=10)
    create = httpx.post(f"{servers['prefect']}/flow_runs/", json={"flow_id": "00000000-0000-0000-0000-000000000000"},
                        headers=headers, timeout=10)
    assert (read.status_code, create.status_code) == (401, 401)


def test_prefect_answers_with_the_auth_string(servers):
    headers = _basic(PREFECT_AUTH)
    flow = httpx.post(f"{servers['prefect']}/flows/", json={"name": "auth-check"}, headers=headers, timeout=10)
    assert flow.status_code in (200, 201), flow.text
    run = httpx.post(f"{servers['prefect']}/flow_runs/", json={"flow_id": flow.json()["id"]}, headers=headers, timeout=10)
    assert run.status_code in (200, 201), run.text
    found = httpx.post(f"{servers['prefect']}/flow_runs/filter", json={}, headers=headers, timeout=10)
    assert run.json()["id"] in {r["id"] for r in found.json()}


def test_cli_flows_and_serve_send_both_logins(servers, champion, synthetic_files, tmp_path):
    """`sign-mlops score-inbox` (a Prefect flow resolving the champion) and `sign-mlops serve`
    work with PREFECT_API_AUTH_STRING and the service login, as the trainer and scorer run them."""
    home = tmp_path / "home"
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    shutil.copy(synthetic_files[1], inbox / "batch.csv")
    env = _clean_env(MLFLOW_TRACKING_URI=servers["mlflow"], PREFECT_API_URL=servers["prefect"],
                     PREFECT_API_AUTH_STRING=PREFECT_AUTH, MLFLOW_TRACKING_USERNAME=LOGINS["service"][0],
                     MLFLOW_TRACKING_PASSWORD=LOGINS["service"][1], SIGN_MLOPS_HOME=str(home),
                     PREFECT_HOME=str(tmp_path / "client-prefect-home"), SIGN_MLOPS_SCORE_INTERVAL="3600")
    done = subprocess.run([str(BIN / "sign-mlops"), "score-inbox", "--inbox", str(inbox), "--outbox",
                           str(home / "outbox"), "--settle-seconds", "0"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert list((home / "outbox").glob("batch-*/batch.summary.json"))
    headers = _basic(PREFECT_AUTH)
    flows = httpx.post(f"{servers['prefect']}/flows/filter", json={}, headers=headers, timeout=10).json()
    assert "sign-mnist-inbox-scoring" in {f["name"] for f in flows}

    log = tmp_path / "serve.log"
    proc = subprocess.Popen([str(BIN / "sign-mlops"), "serve", "--only", "scoring"], env=env, cwd=home,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        names: set[str] = set()
        while time.time() < deadline and "inbox-scoring" not in names:
            assert proc.poll() is None, log.read_text()[-3000:]
            deployments = httpx.post(f"{servers['prefect']}/deployments/filter", json={}, headers=headers, timeout=10)
            names = {d["name"] for d in deployments.json()}
            time.sleep(1)
        assert "inbox-scoring" in names, log.read_text()[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_dask_workers_score_for_an_authenticated_flow(servers, champion, synthetic_files, tmp_path):
    """As in the stack's `scale` profile: the workers get the MLflow service login only; their
    Prefect task runs reach the server with the settings (auth string included) that the
    scorer's flow hands them."""
    pytest.importorskip("prefect_dask")
    port = _free_port()
    service = {"MLFLOW_TRACKING_USERNAME": LOGINS["service"][0], "MLFLOW_TRACKING_PASSWORD": LOGINS["service"][1]}
    worker_env = _clean_env(MLFLOW_TRACKING_URI=servers["mlflow"], SIGN_MLOPS_HOME=str(tmp_path / "home"), **service)
    log = open(tmp_path / "dask.log", "w")
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", "127.0.0.1:0"], env=worker_env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)]
    procs.append(subprocess.Popen([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "1",
                                   "--nthreads", "1", "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                                   "--local-directory", str(tmp_path / "dask-scratch")], env=worker_env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        home = tmp_path / "home"
        inbox = home / "inbox"
        inbox.mkdir(parents=True)
        shutil.copy(synthetic_files[1], inbox / "batch.csv")
        env = _clean_env(MLFLOW_TRACKING_URI=servers["mlflow"], PREFECT_API_URL=servers["prefect"],
                         PREFECT_API_AUTH_STRING=PREFECT_AUTH, SIGN_MLOPS_HOME=str(home),
                         PREFECT_HOME=str(tmp_path / "client-prefect-home"), **service)
        done = subprocess.run([str(BIN / "sign-mlops"), "score-inbox", "--inbox", str(inbox), "--outbox",
                               str(home / "outbox"), "--settle-seconds", "0", "--dask-address",
                               f"tcp://127.0.0.1:{port}"], env=env, cwd=home, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:] + (tmp_path / "dask.log").read_text()[-2000:]
        assert list((home / "outbox").glob("batch-*/batch.summary.json"))
        headers = _basic(PREFECT_AUTH)
        runs = httpx.post(f"{servers['prefect']}/flow_runs/filter", headers=headers, timeout=10, json={
            "flows": {"name": {"any_": ["sign-mnist-inbox-scoring-dask"]}}}).json()
        assert runs and runs[0]["state_type"] == "COMPLETED"
        deadline, task_runs = time.time() + 60, []
        while time.time() < deadline and not task_runs:  # the workers' task runs arrive as events
            task_runs = httpx.post(f"{servers['prefect']}/task_runs/filter", headers=headers, timeout=10, json={
                "flow_runs": {"id": {"any_": [r["id"] for r in runs]}}}).json()
            time.sleep(2)
        assert task_runs and all(t["state_type"] == "COMPLETED" for t in task_runs), task_runs
    finally:
        _stop(procs)


def test_prefect_client_without_the_auth_string_is_refused(servers, tmp_path):
    script = ("from prefect import flow\n@flow\ndef hello():\n    return 1\nhello()\n")
    env = _clean_env(PREFECT_API_URL=servers["prefect"], PREFECT_HOME=str(tmp_path / "prefect-home"))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "401" in done.stdout + done.stderr


# ---------------------------------------------------------------- the trainer (last: it makes a new champion)


def test_training_with_the_service_login_registers_and_promotes(servers, champion, synthetic_files, tmp_path):
    """`sign-mlops train` as the trainer service runs it: the service account's grants (EDIT on the
    experiment, MANAGE on the models made by mlflow_init.py) are enough for a whole run."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    shutil.copy(synthetic_files[0], home / "data" / "sign_mnist_train.csv")
    shutil.copy(synthetic_files[1], home / "data" / "sign_mnist_test.csv")
    env = _clean_env(MLFLOW_TRACKING_URI=servers["mlflow"], PREFECT_API_URL=servers["prefect"],
                     PREFECT_API_AUTH_STRING=PREFECT_AUTH, MLFLOW_TRACKING_USERNAME=LOGINS["service"][0],
                     MLFLOW_TRACKING_PASSWORD=LOGINS["service"][1], SIGN_MLOPS_HOME=str(home),
                     PREFECT_HOME=str(tmp_path / "client-prefect-home"), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([str(BIN / "sign-mlops"), "train", "--preset", "smoke", "--accuracy-floor", "0.3"],
                          env=env, cwd=home, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    alias = _mlflow(servers, "GET", "registered-models/alias", LOGINS["viewer"],
                    params={"name": MODEL, "alias": "champion"})
    assert alias.status_code == 200 and int(alias.json()["model_version"]["version"]) > int(champion["version"])
