"""Score Kaggle-format pixel CSVs with an ONNX model, streaming and without losing a row.

Parsing runs in a reader thread while the main thread runs onnxruntime and writes results
(pandas' C parser and onnxruntime both release the GIL), so the two overlap. Memory stays
flat: at most `queue_depth` parsed chunks wait at any time.

Outputs per input file, written atomically: <stem>.predictions.csv, <stem>.rejects.csv,
<stem>.summary.json. Rows in = rows scored + rows rejected, checked before anything is final.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from serving.model import LoadedModel
from serving.outputs import AtomicFile, refuse_existing, write_json_atomically
from sign_model.data import (Chunk, DataFormatError, check_pixel_header, column_layout, file_digest, iter_chunks,
                              read_header)
from sign_model.drift import DriftAccumulator

REJECTS_HEADER = "row,reason\n"
LOW_CONFIDENCE = 0.5
TOP_K = 3
DEFAULT_CHUNK_ROWS = 4096
DEFAULT_BATCH = 256  # measured: 256-1024 within noise on 2 cores; smaller batches keep latency low


class ScoringError(RuntimeError):
    """A whole file could not be scored; nothing final was written for it."""


@dataclass(frozen=True)
class OutputPaths:
    predictions: Path
    rejects: Path
    summary: Path

    @classmethod
    def for_input(cls, input_path: Path, out_dir: Path) -> "OutputPaths":
        stem = input_path.name.removesuffix(".gz").removesuffix(".csv")
        return cls(out_dir / f"{stem}.predictions.csv", out_dir / f"{stem}.rejects.csv", out_dir / f"{stem}.summary.json")

    def all(self) -> list[Path]:
        return [self.predictions, self.rejects, self.summary]


class Totals:
    """Running counts for the summary; mergeable, so pieces scored elsewhere add up exactly."""

    def __init__(self, model: LoadedModel) -> None:
        self.rows_in = self.scored = self.rejected = self.labelled = self.correct = self.low_conf = 0
        self.confidence_sum = 0.0
        self.classes = np.zeros(len(model.letters), dtype=np.int64)
        self.drift = DriftAccumulator(model.profile) if model.profile else None
        self.reject_reasons: dict[str, int] = {}

    def update(self, chunk: Chunk, probs: np.ndarray, labels: np.ndarray) -> None:
        pred = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        self.rows_in += chunk.rows_in
        self.scored += len(pred)
        self.rejected += len(chunk.rejects)
        self.confidence_sum += float(conf.sum())
        self.low_conf += int((conf < LOW_CONFIDENCE).sum())
        self.classes += np.bincount(pred, minlength=len(self.classes))
        if chunk.labels is not None:
            self.labelled += len(pred)
            self.correct += int((labels[pred] == chunk.labels).sum())
        if self.drift is not None:
            self.drift.update(chunk.pixels, pred)
        for _, reason in chunk.rejects:
            kind = reason.split(":")[0].split(" in column")[0]
            self.reject_reasons[kind] = self.reject_reasons.get(kind, 0) + 1

    def merge(self, other: "Totals") -> None:
        for name in ("rows_in", "scored", "rejected", "labelled", "correct", "low_conf", "confidence_sum"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.classes += other.classes
        if self.drift is not None and other.drift is not None:
            self.drift.merge(other.drift)
        for kind, n in other.reject_reasons.items():
            self.reject_reasons[kind] = self.reject_reasons.get(kind, 0) + n


def _threaded(chunks: Iterator[Chunk], depth: int) -> Iterator[Chunk]:
    """Run a chunk iterator in a reader thread; re-raise its errors in the caller."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, name="csv-reader", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _digest_in_background(path: Path) -> Callable[[], str]:
    """sha256 of the input computed while it is being scored (hashlib releases the GIL)."""
    result: dict[str, str] = {}

    def digest() -> None:
        try:
            result["sha"] = file_digest(path)
        except OSError:  # the file vanished or is unreadable: the scoring itself reports that
            result["sha"] = ""

    thread = threading.Thread(target=digest, name="input-sha256", daemon=True)
    thread.start()

    def wait() -> str:
        thread.join()
        return result["sha"]

    return wait


def predictions_frame(chunk: Chunk, probs: np.ndarray, model: LoadedModel) -> pd.DataFrame:
    """One output row per accepted input row."""
    top = np.argsort(-probs, axis=1)[:, :TOP_K]
    top_p = np.take_along_axis(probs, top, axis=1)
    letters = np.array(model.letters)
    labels = np.array(model.labels)
    frame = pd.DataFrame({"row": chunk.line_numbers})
    for column in chunk.passthrough.columns:
        frame[column] = chunk.passthrough[column].to_numpy()
    if chunk.labels is not None:
        frame["true_label"] = chunk.labels
        frame["correct"] = labels[top[:, 0]] == chunk.labels
    frame["pred_label"] = labels[top[:, 0]]
    frame["pred_letter"] = letters[top[:, 0]]
    frame["confidence"] = top_p[:, 0]
    for k in range(TOP_K):
        frame[f"top{k + 1}_letter"] = letters[top[:, k]]
        frame[f"top{k + 1}_prob"] = top_p[:, k]
    return frame


def score_chunks(chunks: Iterator[Chunk], model: LoadedModel, predictions: IO[str], rejects: IO[str],
                 totals: Totals, batch_size: int = DEFAULT_BATCH, header: bool = True,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
    """Score parsed chunks, appending prediction rows and reject rows (no headers for rejects)."""
    labels = np.array(model.labels)
    for chunk in chunks:
        probs = _predict(model, chunk.pixels, batch_size)
        predictions_frame(chunk, probs, model).to_csv(predictions, index=False, header=header, float_format="%.6f")
        header = False
        pd.DataFrame(chunk.rejects, columns=["row", "reason"]).to_csv(rejects, index=False, header=False)
        totals.update(chunk, probs, labels)
        if on_progress:
            on_progress(chunk.rows_in, chunk.bytes_read)


def score_file(input_path: Path, model: LoadedModel, out_dir: Path, overwrite: bool = False,
               chunk_rows: int = DEFAULT_CHUNK_ROWS, batch_size: int = DEFAULT_BATCH, queue_depth: int = 3,
               on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Score one CSV; returns the summary (also written as JSON). Raises ScoringError if the file
    cannot be scored at all (missing, no pixel columns, corrupt); no final output appears then."""
    input_path = Path(input_path)
    paths = OutputPaths.for_input(input_path, out_dir)
    refuse_existing(paths.all(), overwrite)
    start = time.perf_counter()
    input_sha = _digest_in_background(input_path) if input_path.is_file() else None
    predictions, rejects = AtomicFile(paths.predictions), AtomicFile(paths.rejects)
    totals = Totals(model)
    try:
        rejects.handle.write(REJECTS_HEADER)
        predictions.handle.write(",".join(prediction_columns(input_path, model)) + "\n")
        chunks = _threaded(iter_chunks(input_path, chunk_rows), queue_depth)
        score_chunks(chunks, model, predictions.handle, rejects.handle, totals, batch_size, header=False,
                     on_progress=on_progress)
        summary = finish_summary(totals, input_path, input_sha() if input_sha else "", model,
                                 time.perf_counter() - start, paths)
        predictions.commit()
        rejects.commit()
        write_json_atomically(summary, paths.summary)
        return summary
    except DataFormatError as exc:
        predictions.abort()
        rejects.abort()
        raise ScoringError(str(exc)) from exc
    except BaseException:
        predictions.abort()
        rejects.abort()
        raise


def _predict(model: LoadedModel, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    if len(pixels) == 0:
        return np.zeros((0, len(model.letters)), dtype=np.float32)
    return np.concatenate([model.predict(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)])


def prediction_columns(input_path: Path, model: LoadedModel) -> list[str]:
    """Header of the predictions file: row, pass-through columns, [true_label, correct], predictions."""
    columns = read_header(input_path)
    check_pixel_header(columns, input_path)
    layout = column_layout(columns)
    labelled = ["true_label", "correct"] if layout.label_position is not None else []
    tops = [f"top{k + 1}_{what}" for k in range(TOP_K) for what in ("letter", "prob")]
    return ["row", *layout.passthrough, *labelled, "pred_label", "pred_letter", "confidence", *tops]


def finish_summary(totals: Totals, input_path: Path, input_sha: str, model: LoadedModel, seconds: float,
                   paths: OutputPaths) -> dict:
    """Check rows in = scored + rejected, then build the summary."""
    if totals.rows_in != totals.scored + totals.rejected:
        raise ScoringError(f"{input_path}: rows in ({totals.rows_in}) != scored ({totals.scored}) + rejected "
                           f"({totals.rejected}); this is a bug, please report it. No outputs were written.")
    return _summary(totals, input_path, input_sha, model, seconds, paths)


def _summary(totals: Totals, input_path: Path, input_sha: str, model: LoadedModel, seconds: float,
             paths: OutputPaths) -> dict:
    scored = max(totals.scored, 1)
    return {
        "input": str(input_path), "input_sha256": input_sha,
        "rows_in": totals.rows_in, "rows_scored": totals.scored, "rows_rejected": totals.rejected,
        "rows_balanced": totals.rows_in == totals.scored + totals.rejected,
        "reject_reasons": totals.reject_reasons,
        "accuracy": round(totals.correct / totals.labelled, 6) if totals.labelled else None,
        "labelled_rows": totals.labelled,
        "predicted_class_counts": dict(zip(model.letters, totals.classes.tolist())),
        "mean_confidence": round(totals.confidence_sum / scored, 6) if totals.scored else None,
        "low_confidence_rows": totals.low_conf, "low_confidence_threshold": LOW_CONFIDENCE,
        "seconds": round(seconds, 3), "rows_per_second": round(totals.rows_in / max(seconds, 1e-9), 1),
        "model": model.describe(),
        "drift": totals.drift.report() if totals.drift else {"note": "model carries no reference profile"},
        "outputs": {"predictions": str(paths.predictions), "rejects": str(paths.rejects), "summary": str(paths.summary)},
    }
