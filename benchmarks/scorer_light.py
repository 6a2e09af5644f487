"""Benchmark: the scoring-only install -- footprint, cold start, throughput -- in one table each.

    python benchmarks/scorer_light.py        # run with the full install (.venv); needs .venv-scorer
                                             # (scripts/test-scorer-light.sh creates it)

1. Install footprint: .venv-scorer (pip install sign-mlops) vs .venv (everything), and the
   Docker images when a Docker engine is present.
2. Cold start (whole process, best of 5): `--help`; `score` of a 50-row file with the model as a
   file; with models:/sign-mnist-onnx@champion from a local sqlite store and from an MLflow
   server (model already in the cache), in the light and in the full install.
3. Throughput on the 27,455-row Kaggle training file (../shared; synthetic of the same size
   otherwise) with the default architecture (bn_cnn; fixed random weights -- speed does not
   depend on training), fp32 and INT8: the scorer in-process vs a naive 10-line pandas +
   onnxruntime script on the same model, rows/s and peak RSS (VmHWM: ru_maxrss would carry the
   parent's peak over fork+exec), each in its own process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table, real_or_synthetic_csv  # noqa: E402

FULL = ROOT / ".venv" / "bin"
LIGHT = ROOT / ".venv-scorer" / "bin"
NAIVE = """
import sys, time, numpy as np, pandas as pd, onnxruntime as ort
start = time.perf_counter()
frame = pd.read_csv(sys.argv[1])
pixels = frame[[f"pixel{i}" for i in range(1, 785)]].to_numpy(np.float32).reshape(-1, 28, 28, 1)
session = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
probs = np.concatenate([session.run(None, {session.get_inputs()[0].name: pixels[i:i + 256]})[0] for i in range(0, len(pixels), 256)])
pd.DataFrame({"row": np.arange(2, len(probs) + 2), "pred": probs.argmax(1), "confidence": probs.max(1)}).to_csv(sys.argv[3], index=False)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(len(frame) / (time.perf_counter() - start), int(hwm) / 1024)
"""
SCORER = """
import sys
from pathlib import Path
from sign_mlops.serving.model import load_onnx
from sign_mlops.serving.scorer import score_file
summary = score_file(Path(sys.argv[1]), load_onnx(Path(sys.argv[2])), Path(sys.argv[3]), overwrite=True)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(summary["rows_per_second"], int(hwm) / 1024)
"""


def mb(path: Path) -> str:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True)
    return out.stdout.split()[0] if out.returncode == 0 else "n/a"


def build_models(work: Path, data: Path) -> tuple[Path, Path, Path]:
    """bn_cnn as fp32 and INT8 ONNX, and a sqlite store with it registered as champion."""
    import mlflow
    import onnx

    from sign_mlops.contract.drift import build_profile, profile_json
    from sign_mlops.sign_model.data import load_dataset
    from sign_mlops.sign_model.export import keras_to_onnx, model_metadata, quantize_int8
    from sign_mlops.sign_model.model import build_model
    from sign_mlops.sign_model.quiet import quiet_tensorflow
    from sign_mlops.sign_model.train import set_seeds

    quiet_tensorflow()
    set_seeds(0)
    train = load_dataset(data)
    meta = model_metadata("bench", train.digest, {"reference_profile": profile_json(build_profile(train.images, train.labels))})
    fp32 = keras_to_onnx(build_model("bn_cnn", 0.3), work / "bn_cnn.onnx", meta)
    int8 = quantize_int8(fp32, work / "bn_cnn.int8.onnx", train.images[:512], meta)
    store = work / "home" / "outputs" / "mlflow.db"
    store.parent.mkdir(parents=True)
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    from sign_mlops.sign_model import registry, tracking
    from sign_mlops.sign_model.data import file_digest

    tracking.configure("bench", uri=f"sqlite:///{store}")
    with mlflow.start_run():
        info = mlflow.onnx.log_model(onnx.load(str(fp32)), name="onnx_model", pip_requirements=["onnxruntime"],
                                     save_as_external_data=False)
    version = registry.register(info.model_uri, registry.ONNX_MODEL, {"run_id": "bench", "onnx_sha256": file_digest(fp32)})
    mlflow.MlflowClient().set_registered_model_alias(registry.ONNX_MODEL, "champion", version.version)
    return fp32, int8, store


def timed(cmd: list[str], env: dict, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        best = min(best, time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {done.stderr[-1500:]}")
    return best


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(FULL / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}", "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1"], stdout=open(work / "server.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    import urllib.request

    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start")


def cold_start(work: Path, fp32: Path, store: Path, small: Path) -> list[list[str]]:
    rows = []
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SIGN_MLOPS_"))}
    home = store.parent.parent
    server, url = start_server(store, work)
    try:
        for label, bindir in (("scoring-only", LIGHT), ("full", FULL)):
            env = {**base, "SIGN_MLOPS_HOME": str(home)}
            cli = [str(bindir / "sign-mlops")]
            out = str(work / f"cold-{label}")
            cases = {
                "--help": [*cli, "--help"],
                "score 50 rows, --model file": [*cli, "score", str(small), "--model", str(fp32), "--out", out, "--overwrite"],
                "score 50 rows, models:/…@champion (sqlite)": [*cli, "score", str(small), "--out", out, "--overwrite"],
            }
            subprocess.run(cases["score 50 rows, models:/…@champion (sqlite)"], env=env, capture_output=True)  # fill the cache
            for case, cmd in cases.items():
                rows.append([label, case, f"{timed(cmd, env):.2f}"])
            server_env = {**env, "MLFLOW_TRACKING_URI": url}
            cmd = cases["score 50 rows, models:/…@champion (sqlite)"]
            subprocess.run(cmd, env=server_env, capture_output=True)
            rows.append([label, "score 50 rows, models:/…@champion (server)", f"{timed(cmd, server_env):.2f}"])
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    return rows


def throughput(work: Path, data: Path, fp32: Path, int8: Path) -> list[list[str]]:
    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for precision, model in (("fp32", fp32), ("INT8", int8)):
        for name, code in (("naive pandas + onnxruntime", NAIVE), ("sign-mlops scorer", SCORER)):
            target = work / f"{name.split()[0]}-{precision}"
            target = target if name.startswith("sign") else target.with_suffix(".csv")
            best_rate, rss = 0.0, 0.0
            for _ in range(2):
                done = subprocess.run([str(LIGHT / "python"), "-c", code, str(data), str(model), str(target)], env=env,
                                      capture_output=True, text=True, check=True)
                rate, peak = (float(v) for v in done.stdout.split())
                best_rate, rss = max(best_rate, rate), peak
            rows.append([precision, name, f"{best_rate:,.0f}", f"{rss:,.0f}"])
    for precision in ("fp32", "INT8"):
        naive, ours = (float(r[2].replace(",", "")) for r in rows if r[0] == precision)
        rows.append([precision, "ratio scorer / naive", f"{ours / naive:.2f}x", ""])
    return rows


def main() -> None:
    if not LIGHT.exists():
        sys.exit("run scripts/test-scorer-light.sh first (it creates .venv-scorer)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, described = real_or_synthetic_csv(work)
        fp32, int8, store = build_models(work, data)
        small = work / "small.csv"
        with open(data) as src, open(small, "w") as dst:
            for _ in range(51):
                dst.write(src.readline())
        footprint = [["pip install sign-mlops (scoring only)", mb(ROOT / ".venv-scorer")],
                     ["pip install -e '.[dev]' (everything)", mb(ROOT / ".venv")]]
        if shutil.which("docker"):
            images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"],
                                    capture_output=True, text=True).stdout.split("\n")
            footprint += [[f"image {line.split()[0]}", line.split()[1]] for line in images if line.startswith("sign-mlops")]
        print_table("Install footprint (MB)", ["install", "size"], footprint)
        print_table("Cold start, whole process, best of 5 (s)", ["install", "command", "seconds"],
                    cold_start(work, fp32, store, small))
        print_table(f"Throughput on {described}, bn_cnn, scoring-only install", ["model", "scorer", "rows/s",
                                                                                 "peak RSS MB"],
                    throughput(work, data, fp32, int8))


if __name__ == "__main__":
    main()
