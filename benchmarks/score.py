"""Benchmark: end-to-end batch scoring (CSV in -> CSV out), whole processes.

Default: `sign-mlops score` against the script a user would write (pandas read_csv, onnxruntime
in batches of 256, predictions CSV out: NAIVE below) on the same CSV -- the 27,455-row real
Kaggle training file from ../shared decompressed to a temporary .csv (synthetic of the same size
otherwise) -- for untrained ONNX models of the `default` and `lite` presets, built and exported
as the pipeline does (benchmarks/common.build_untrained_onnx; speed does not depend on the
weights' values). --repeats pairs per model, the order alternating within pairs (scorer first in
even pairs); medians, the spread (min-max) and the ratio, with the load average before and after.

--others: the older table instead -- this scorer fp32 / INT8, Keras `predict` + pandas (chunked)
and `mlflow models predict`, on (a) the same file and (b) a generated file of --big-rows rows.

    python benchmarks/score.py [--repeats 7] [--arch default --arch lite]
    python benchmarks/score.py --others [--big-rows 1000000] [--skip-mlflow-big]   # ~7 min
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import build_untrained_onnx, preset_architectures, print_table, real_or_synthetic_csv  # noqa: E402

PROFILE_ROWS = 4096  # rows of the drift reference profile, as benchmarks/int8_gate.py
CHILD_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def build_models(workdir: Path, calibration_csv: Path) -> dict[str, str]:
    """The seed-sized CNN (fixed random weights: speed does not depend on training) as fp32 and
    INT8 ONNX, registered in a temporary MLflow store."""
    import mlflow
    import onnx

    from sign_mlops.contract.drift import build_profile, profile_json
    from sign_mlops.sign_model.data import load_dataset
    from sign_mlops.sign_model.export import keras_to_onnx, model_metadata, quantize_int8
    from sign_mlops.sign_model.model import build_seed_cnn
    from sign_mlops.sign_model.train import set_seeds

    set_seeds(0)
    keras_model = build_seed_cnn()
    keras_path = workdir / "seed.keras"
    keras_model.save(keras_path)
    data = load_dataset(calibration_csv)
    meta = model_metadata("benchmark", data.digest, {"reference_profile": profile_json(build_profile(data.images, data.labels))})
    fp32 = keras_to_onnx(keras_model, workdir / "seed.onnx", meta)
    int8 = quantize_int8(fp32, workdir / "seed.int8.onnx", data.images[:512], meta)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("benchmark")
    with mlflow.start_run():
        info = mlflow.onnx.log_model(onnx.load(str(fp32)), name="onnx_model", save_as_external_data=False,
                                     registered_model_name="bench-onnx", pip_requirements=["onnxruntime"])
    return {"fp32": str(fp32), "int8": str(int8), "keras": str(keras_path), "tracking_uri": uri,
            "registry_uri": f"models:/bench-onnx/{info.registered_model_version}"}


def make_big_csv(source: Path, target: Path, rows: int) -> Path:
    """Repeat the source rows (header once) until the file holds `rows` rows."""
    lines = source.read_bytes().split(b"\n", 1)
    header, body = lines[0] + b"\n", lines[1]
    body_rows = body.count(b"\n")
    with open(target, "wb") as out:
        out.write(header)
        written = 0
        while written + body_rows <= rows:
            out.write(body)
            written += body_rows
        rest = body.split(b"\n")[: rows - written]
        out.write(b"".join(r + b"\n" for r in rest))
    return target


KERAS_CHILD = """
import sys, time, numpy as np, pandas as pd, keras
from sign_mlops.contract.labels import KAGGLE_LABELS, LETTERS
model = keras.models.load_model(sys.argv[1]); labels = np.array(KAGGLE_LABELS); letters = np.array(LETTERS)
header = True
for chunk in pd.read_csv(sys.argv[2], chunksize=8192):
    x = chunk.filter(like="pixel").to_numpy(np.float32).reshape(-1, 28, 28, 1)
    p = model.predict(x, batch_size=256, verbose=0)
    out = pd.DataFrame({"pred_label": labels[p.argmax(1)], "pred_letter": letters[p.argmax(1)], "confidence": p.max(1)})
    out.to_csv(sys.argv[3], mode="w" if header else "a", header=header, index=False); header = False
"""

MLFLOW_PREP = """
import sys, json, pandas as pd, numpy as np
frame = pd.read_csv(sys.argv[1])
x = frame.filter(like="pixel").to_numpy(np.float32).reshape(-1, 28, 28, 1)
json.dump({"inputs": {"pixels": x.tolist()}}, open(sys.argv[2], "w"))
"""


def run_timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a command and its children (GNU time)."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, env=env or CHILD_ENV)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed:\n{done.stderr[-3000:]}")
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1024


def scorer(model: str, csv_path: Path, out: Path, extra: list[str] | None = None) -> tuple[float, float]:
    return run_timed([sys.executable, "-m", "sign_mlops.cli.app", "score", str(csv_path), "--model", model,
                      "--out", str(out), "--overwrite", *(extra or [])])


def keras_pandas(keras_path: str, csv_path: Path, out: Path) -> tuple[float, float]:
    return run_timed([sys.executable, "-c", KERAS_CHILD, keras_path, str(csv_path), str(out / "keras.csv")])


def mlflow_predict(models: dict, csv_path: Path, out: Path) -> tuple[float, float]:
    """CSV -> the JSON tensor payload the model's signature needs -> `mlflow models predict`."""
    prep_s, prep_mb = run_timed([sys.executable, "-c", MLFLOW_PREP, str(csv_path), str(out / "in.json")])
    env = {**CHILD_ENV, "MLFLOW_TRACKING_URI": models["tracking_uri"]}
    cli = str(Path(sys.executable).with_name("mlflow"))
    pred_s, pred_mb = run_timed([cli, "models", "predict", "-m", models["registry_uri"], "-i", str(out / "in.json"),
                                 "-t", "json", "-o", str(out / "mlflow_out.json"), "--env-manager", "local"], env)
    return prep_s + pred_s, max(prep_mb, pred_mb)


def count_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b"")) - 1


NAIVE = """
import sys, numpy as np, pandas as pd, onnxruntime as ort
frame = pd.read_csv(sys.argv[1])
pixels = frame[[f"pixel{i}" for i in range(1, 785)]].to_numpy(np.float32).reshape(-1, 28, 28, 1)
session = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
probs = np.concatenate([session.run(None, {name: pixels[i:i + 256]})[0] for i in range(0, len(pixels), 256)])
pd.DataFrame({"row": np.arange(2, len(probs) + 2), "pred": probs.argmax(1), "confidence": probs.max(1)}).to_csv(sys.argv[3], index=False)
"""


def run_cpu_timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, children included) of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=CHILD_ENV)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def scorer_vs_naive(model: Path, csv_path: Path, out: Path, repeats: int, name: str) -> dict[str, list[tuple[float, float]]]:
    """`repeats` pairs of whole-process runs, scorer first in even pairs, naive first in odd ones."""
    cli = str(Path(sys.executable).with_name("sign-mlops"))
    commands = {"scorer": [cli, "score", str(csv_path), "--model", str(model), "--out", str(out / "scorer"),
                           "--overwrite"],
                "naive": [sys.executable, "-c", NAIVE, str(csv_path), str(model), str(out / "naive.csv")]}
    runs: dict[str, list[tuple[float, float]]] = {"scorer": [], "naive": []}
    for i in range(repeats):
        for which in (("scorer", "naive") if i % 2 == 0 else ("naive", "scorer")):
            runs[which].append(run_cpu_timed(commands[which]))
        print(f"  {name} pair {i + 1}/{repeats}: scorer {runs['scorer'][-1][0]:.2f} s, naive "
              f"{runs['naive'][-1][0]:.2f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    return runs


def naive_table(archs: list[str], repeats: int) -> None:
    """The scorer CLI vs NAIVE for each preset's model; one table."""
    from sign_mlops.sign_model.data import load_dataset
    from sign_mlops.sign_model.quiet import quiet_tensorflow

    quiet_tensorflow()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        csv_path, what = real_or_synthetic_csv(work)
        data = load_dataset(csv_path)
        models = {arch: build_untrained_onnx(arch, data.images[:PROFILE_ROWS], data.labels[:PROFILE_ROWS], work)[0]
                  for arch in archs}
        n = count_rows(csv_path)
        load_before, started = os.getloadavg(), time.perf_counter()
        table = []
        for arch, model in models.items():
            runs = scorer_vs_naive(model, csv_path, work, repeats, arch)
            walls = {k: [w for w, _ in v] for k, v in runs.items()}
            cpus = {k: [c for _, c in v] for k, v in runs.items()}
            pairs = sorted(n_ / s for s, n_ in zip(walls["scorer"], walls["naive"]))
            for which in ("naive", "scorer"):
                rates = sorted(n / w for w in walls[which])
                table.append([arch, which, f"{n / statistics.median(walls[which]):,.0f}",
                              f"{rates[0]:,.0f} - {rates[-1]:,.0f}", f"{statistics.median(cpus[which]):.2f}", ""])
            table.append([arch, "scorer / naive", f"{statistics.median(walls['naive']) / statistics.median(walls['scorer']):.2f}x",
                          "", f"{statistics.median(cpus['naive']) / statistics.median(cpus['scorer']):.2f}x",
                          f"{pairs[0]:.2f} / {statistics.median(pairs):.2f} / {pairs[-1]:.2f}"])
    print_table(f"Whole process, CSV in -> predictions CSV out: {what}, {n:,} rows; {repeats} alternating pairs per "
                f"model; {os.cpu_count()} cores, load average {load_before[0]:.1f} / {load_before[1]:.1f} before, "
                f"{os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} after ({time.perf_counter() - started:.0f} s)",
                ["model", "variant", "rows/s (median)", "rows/s min - max", "CPU s (median)",
                 "pair ratios min / median / max"], table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="alternating scorer/naive pairs per model")
    parser.add_argument("--arch", action="append", choices=sorted(preset_architectures()),
                        help="preset model(s) to compare with the naive script (default: default and lite)")
    parser.add_argument("--others", action="store_true",
                        help="the older table: scorer fp32/INT8 vs Keras + pandas vs `mlflow models predict`")
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-mlflow-big", action="store_true", default=True,
                        help="skip `mlflow models predict` on the big file (its JSON input alone is ~10 GB)")
    args = parser.parse_args()
    if not args.others:
        naive_table(args.arch or ["default", "lite"], args.repeats)
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        small, what = real_or_synthetic_csv(work)
        models = build_models(work, small)
        big = make_big_csv(small, work / "big.csv", args.big_rows)
        rows_table = []
        for label, path in ((f"(a) {what}", small), (f"(b) generated {args.big_rows:,} rows", big)):
            n = count_rows(path)
            results = {"this scorer fp32": scorer(models["fp32"], path, work / "o1"),
                       "this scorer INT8": scorer(models["int8"], path, work / "o2"),
                       "Keras predict + pandas (chunked)": keras_pandas(models["keras"], path, work)}
            if path == small or not args.skip_mlflow_big:
                results["mlflow models predict"] = mlflow_predict(models, path, work)
            base = n / results["this scorer fp32"][0]
            for name, (sec, mb) in results.items():
                rate = n / sec
                rows_table.append([label, name, f"{n:,}", f"{sec:.1f}", f"{rate:,.0f}", f"{base / rate:.2f}x", f"{mb:,.0f}"])
        print_table("End-to-end scoring, CSV in -> CSV out, process start included (2 cores)",
                    ["input", "variant", "rows", "seconds", "rows/s", "this scorer is x faster", "peak RSS MB"], rows_table)


if __name__ == "__main__":
    main()
