"""Benchmark: scale-out scoring on a Dask LocalCluster (1 and 2 worker processes) against the
single-machine scorer, for one large file and for many files, plus the overhead per piece.

    python benchmarks/dask_score.py [--big-rows 1000000] [--files 20]

All outputs of the cluster runs are compared byte for byte with the single-machine outputs.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from benchmarks.common import print_table, real_or_synthetic_csv  # noqa: E402
from benchmarks.score import build_models, count_rows, make_big_csv  # noqa: E402


def single_machine(files: list[Path], model_path: str, out: Path) -> float:
    from sign_mlops.serving.model import load_onnx
    from sign_mlops.serving.scorer import score_file

    model = load_onnx(Path(model_path))
    start = time.perf_counter()
    for path in files:
        score_file(path, model, out, overwrite=True)
    return time.perf_counter() - start


def on_cluster(files: list[Path], model_path: str, out: Path, workers: int, piece_bytes: int) -> float:
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from sign_mlops.flows.scoring import score_files_flow

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        runner = DaskTaskRunner(address=cluster.scheduler_address)
        start = time.perf_counter()
        result = score_files_flow.with_options(task_runner=runner)([str(f) for f in files], model_path, str(out),
                                                                   overwrite=True, piece_bytes=piece_bytes)
        seconds = time.perf_counter() - start
    assert not result.failed, result.failed
    return seconds


def same_outputs(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.csv"))
    return names == sorted(p.name for p in b.glob("*.csv")) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=20)
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp, prefect_test_harness(server_startup_timeout=120):
        work = Path(tmp)
        small, _ = real_or_synthetic_csv(work)
        model = build_models(work, small)["fp32"]
        big = make_big_csv(small, work / "big.csv", args.big_rows)
        many = []
        for i in range(args.files):
            many.append(work / f"many_{i:02d}.csv")
            os.link(small, many[-1])
        rows = []
        for label, files in ((f"one file, {count_rows(big):,} rows", [big]),
                             (f"{args.files} files x {count_rows(small):,} rows", many)):
            n = sum(count_rows(f) for f in files)
            base = single_machine(files, model, work / "single")
            rows.append([label, "single-machine scorer", "-", f"{base:.1f}", f"{n / base:,.0f}", "1.00x", "reference"])
            for workers in (1, 2):
                out = work / f"dask{workers}"
                sec = on_cluster(files, model, out, workers, 32 << 20)
                rows.append([label, f"LocalCluster, {workers} worker(s)", "32 MB", f"{sec:.1f}", f"{n / sec:,.0f}",
                             f"{base / sec:.2f}x", "identical" if same_outputs(work / "single", out) else "DIFFERENT"])
        print_table("Scale-out scoring on this 2-core machine (fp32 seed-sized model)",
                    ["input", "engine", "piece", "seconds", "rows/s", "speed vs single", "outputs"], rows)
        # overhead per piece: the same 1 file cut into many small vs few large pieces, 2 workers
        one = [small]
        t_big = on_cluster(one, model, work / "o1", 2, 32 << 20)
        t_small = on_cluster(one, model, work / "o2", 2, 256 << 10)
        from sign_mlops.serving.distributed import plan_pieces

        n_big, n_small = len(plan_pieces(small, 32 << 20)), len(plan_pieces(small, 256 << 10))
        per_piece = (t_small - t_big) / (n_small - n_big)
        print(f"\nOverhead per piece (2 workers): ({t_small:.2f}s for {n_small} pieces - {t_big:.2f}s for {n_big}) "
              f"/ {n_small - n_big} = {per_piece * 1000:.0f} ms; chosen piece size 32 MB (~12 k rows).")


if __name__ == "__main__":
    main()
