"""Score Kaggle-format pixel CSVs with an ONNX model, streaming and without losing a row.

Three threads per file, in chunk order: a reader thread parses, the calling thread runs
onnxruntime (which releases the GIL), and a writer thread formats and writes the results and
counts them behind it, so inference is never held up by reading or writing. The input's sha256
is computed first (a hashing thread beside onnxruntime cost more than it saved). Memory stays
flat: at most `queue_depth` parsed chunks and WRITE_DEPTH scored chunks wait at any time.

Outputs per input file become final together (sign_mlops.serving.outputs.OutputSet, summary last):
<stem>.predictions.csv, <stem>.rejects.csv, <stem>.summary.json. Rows in = rows scored + rows
rejected, checked before anything is final. Pass-through columns whose names collide with
output columns are renamed `input_<name>` (and listed in the summary's `renamed_columns`).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from sign_mlops.contract.csvformat import DataFormatError, check_regular_file, file_digest
from sign_mlops.contract.drift import DriftAccumulator
from sign_mlops.contract.files import sweep_stale_temps
from sign_mlops.contract.predictions import LOW_CONFIDENCE, prediction_columns, prediction_values
from sign_mlops.contract.summary import ScoreSummary
from sign_mlops.serving.model import LoadedModel
from sign_mlops.serving.outputs import OutputSet, refuse_existing
from sign_mlops.serving.reader import Chunk, Layout, iter_chunks, read_layout

REJECTS_HEADER = "row,reason\n"
DEFAULT_CHUNK_ROWS = 4096
DEFAULT_BATCH = 256  # measured: 256-1024 within noise on 2 cores; smaller batches keep latency low
WRITE_DEPTH = 2  # scored chunks waiting for the writer thread


class ScoringError(RuntimeError):
    """A whole file could not be scored; nothing final was written for it. `machine` is True
    when the machine, not the file, is at fault (disk full, folder not writable)."""

    def __init__(self, message: str, machine: bool = False) -> None:
        super().__init__(message)
        self.machine = machine


@dataclass(frozen=True)
class OutputPaths:
    predictions: Path
    rejects: Path
    summary: Path

    @classmethod
    def for_input(cls, input_path: Path, out_dir: Path) -> "OutputPaths":
        stem = input_stem(input_path)
        return cls(out_dir / f"{stem}.predictions.csv", out_dir / f"{stem}.rejects.csv", out_dir / f"{stem}.summary.json")

    def all(self) -> list[Path]:
        return [self.predictions, self.rejects, self.summary]


def input_stem(path: Path) -> str:
    """File name without .csv / .csv.gz (any case): the stem of its output files."""
    name = Path(path).name
    for suffix in (".gz", ".csv"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


class Totals:
    """Running counts for the summary; mergeable, so pieces scored elsewhere add up exactly."""

    def __init__(self, model: LoadedModel) -> None:
        self.rows_in = self.scored = self.rejected = self.labelled = self.correct = self.low_conf = 0
        self.confidence_sum = 0.0
        self.classes = np.zeros(len(model.letters), dtype=np.int64)
        # labelled rows and right predictions per true letter (output index), for per-class accuracy
        self.class_rows = np.zeros(len(model.letters), dtype=np.int64)
        self.class_correct = np.zeros(len(model.letters), dtype=np.int64)
        self._index_of_label = np.full(max([*model.labels, 25]) + 1, -1, dtype=np.int64)
        self._index_of_label[np.asarray(model.labels, dtype=np.int64)] = np.arange(len(model.labels))
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
            right = labels[pred] == chunk.labels
            self.labelled += len(pred)
            self.correct += int(right.sum())
            truth = self._index_of_label[chunk.labels]
            known = truth >= 0  # a label the model does not know is counted in accuracy only
            self.class_rows += np.bincount(truth[known], minlength=len(self.class_rows))
            self.class_correct += np.bincount(truth[known & right], minlength=len(self.class_correct))
        if self.drift is not None:
            self.drift.update(chunk.pixels, pred, conf)
        for _, reason in chunk.rejects:
            kind = reason.split(":")[0].split(" in column")[0]
            self.reject_reasons[kind] = self.reject_reasons.get(kind, 0) + 1

    def merge(self, other: "Totals") -> None:
        for name in ("rows_in", "scored", "rejected", "labelled", "correct", "low_conf", "confidence_sum"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.classes += other.classes
        self.class_rows += other.class_rows
        self.class_correct += other.class_correct
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


def output_columns(layout: Layout) -> tuple[list[str], dict[str, str]]:
    """Header of the predictions file (sign_mlops.contract.predictions: row, pass-through, predictions) and
    the renames of pass-through columns that collide with an output column (`input_` prefix)."""
    ours = ["row", *prediction_columns(layout.label_position is not None)]
    taken = set(ours) | set(layout.passthrough)
    renamed: dict[str, str] = {}
    for name in layout.passthrough:
        if name in ours:
            new = f"input_{name}"
            while new in taken:
                new = f"input_{new}"
            taken.add(new)
            renamed[name] = new
    passthrough = [renamed.get(name, name) for name in layout.passthrough]
    return ["row", *passthrough, *ours[1:]], renamed


def predictions_frame(chunk: Chunk, probs: np.ndarray, model: LoadedModel, columns: list[str]) -> pd.DataFrame:
    """One output row per accepted input row, in the order of `columns` (see output_columns)."""
    values: dict[str, np.ndarray] = {"row": chunk.line_numbers}
    names = iter(columns[1:1 + chunk.passthrough.shape[1]])
    for column in chunk.passthrough.columns:
        values[next(names)] = chunk.passthrough[column].to_numpy()
    values.update(prediction_values(probs, model.labels, model.letters, chunk.labels))
    return pd.DataFrame(values, columns=columns)


def score_chunks(chunks: Iterator[Chunk], model: LoadedModel, predictions: IO[str], rejects: IO[str],
                 totals: Totals, columns: list[str], batch_size: int = DEFAULT_BATCH,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
    """Score parsed chunks, appending prediction rows and reject rows (no headers): onnxruntime
    here, formatting, writing and counting in a writer thread behind it, in chunk order. Returns
    when every chunk is written; the first error of either thread is raised here."""
    labels = np.array(model.labels)

    def write(chunk: Chunk, probs: np.ndarray) -> None:
        predictions_frame(chunk, probs, model, columns).to_csv(predictions, index=False, header=False,
                                                               float_format="%.6f", quoting=_quoting(chunk))
        if chunk.rejects:
            pd.DataFrame(chunk.rejects, columns=["row", "reason"]).to_csv(rejects, index=False, header=False)
        totals.update(chunk, probs, labels)

    with _Behind(write, WRITE_DEPTH) as writer:
        for chunk in chunks:
            writer.put(chunk, _predict(model, chunk.pixels, batch_size))
            if on_progress:
                on_progress(chunk.rows_in, chunk.bytes_read)


class _Behind:
    """Runs `work(*item)` for each put item, in order, in one thread behind the caller. The
    first error it meets is raised in the caller (at the next put, or on leaving the `with`);
    after one, later items are skipped. Leaving the `with` normally waits for every item."""

    _DONE = object()

    def __init__(self, work: Callable[..., None], depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name="scorer-writer", daemon=True)

    def __enter__(self) -> "_Behind":
        self._thread.start()
        return self

    def _run(self, work: Callable[..., None]) -> None:
        while (item := self._queue.get()) is not self._DONE:
            if self._error is None and not self._stop.is_set():
                try:
                    work(*item)
                except BaseException as exc:  # handed to the caller
                    self._error = exc

    def put(self, *item: object) -> None:
        self._raise()
        self._queue.put(item)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:  # the caller failed: skip what is queued, do not wait long for the rest
            self._stop.set()
        try:
            self._queue.put(self._DONE, timeout=None if kind is None else 5)
        except queue.Full:
            return
        self._thread.join(timeout=None if kind is None else 5)
        if kind is None:
            self._raise()


def score_file(input_path: Path, model: LoadedModel, out_dir: Path, overwrite: bool = False,
               chunk_rows: int = DEFAULT_CHUNK_ROWS, batch_size: int = DEFAULT_BATCH, queue_depth: int = 3,
               on_progress: Callable[[int, int], None] | None = None,
               input_label: str | None = None) -> ScoreSummary:
    """Score one CSV; returns the summary (also written as JSON). Raises ScoringError if the file
    cannot be scored at all (missing, no pixel columns, corrupt, disk full); no final output
    appears then. `input_label` is the name recorded as the summary's input (default: the path)."""
    input_path = Path(input_path)
    paths = OutputPaths.for_input(input_path, out_dir)
    try:
        check_regular_file(input_path)
        layout = read_layout(input_path)
    except DataFormatError as exc:
        raise ScoringError(str(exc)) from None
    columns, renamed = output_columns(layout)
    sweep_stale_temps(out_dir)
    refuse_existing(paths.all(), overwrite)
    start = time.perf_counter()
    # sha256 first, not in a thread beside onnxruntime: on 2 cores a hashing thread slowed the
    # whole file by ~12 % (benchmarks/scorer_light.py), while hashing first costs ~0.15 s/80 MB.
    try:
        input_sha = file_digest(input_path)
    except OSError as exc:
        raise ScoringError(f"{input_path}: cannot read the file ({exc.strerror}); check it and score it again.") from None
    outputs = None
    try:
        outputs = OutputSet(paths.all())
        predictions, rejects, summary_file = outputs[0].handle, outputs[1].handle, outputs[2].handle
        predictions.write(_csv_line(columns))
        rejects.write(REJECTS_HEADER)
        chunks = _threaded(iter_chunks(input_path, chunk_rows), queue_depth)
        totals = Totals(model)
        score_chunks(chunks, model, predictions, rejects, totals, columns, batch_size, on_progress=on_progress)
        summary = replace(finish_summary(totals, input_label or str(input_path), input_sha, model,
                                         time.perf_counter() - start, paths), renamed_columns=renamed)
        json.dump(summary.to_dict(), summary_file, indent=2, default=str)
        outputs.commit()
        return summary
    except DataFormatError as exc:
        _abort(outputs)
        raise ScoringError(str(exc)) from None
    except OSError as exc:
        _abort(outputs)
        raise ScoringError(_write_error(exc, input_path, out_dir), machine=True) from None
    except BaseException:
        _abort(outputs)
        raise


def _abort(outputs: OutputSet | None) -> None:
    if outputs is not None:
        outputs.abort()


def _write_error(exc: OSError, input_path: Path, out_dir: Path) -> str:
    if exc.errno == errno.ENOSPC:
        what = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "the folder is not writable"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST) or (out_dir.exists() and not out_dir.is_dir()):
        what = "it is not a folder"
    else:
        what = exc.strerror or str(exc)
    return (f"{input_path}: cannot write outputs in {out_dir} ({what}); nothing final was written for this "
            "file. Fix that (or pass another --out) and score it again.")


def _quoting(chunk: Chunk) -> int:
    """Python's csv quotes a field holding \n but not one holding a lone \r, which other
    readers take for a line break: quote every text field of a chunk that has one."""
    for column in chunk.passthrough.columns:
        if chunk.passthrough[column].str.contains("\r", regex=False).any():
            return csv.QUOTE_NONNUMERIC
    return csv.QUOTE_MINIMAL


def _csv_line(fields: list[str]) -> str:
    out = io.StringIO()
    quoted = any("\r" in f for f in fields)
    csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL if quoted else csv.QUOTE_MINIMAL).writerow(fields)
    return out.getvalue()


def _predict(model: LoadedModel, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    if len(pixels) == 0:
        return np.zeros((0, len(model.letters)), dtype=np.float32)
    return np.concatenate([model.predict(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)])


def finish_summary(totals: Totals, input_path: Path | str, input_sha: str, model: LoadedModel, seconds: float,
                   paths: OutputPaths) -> ScoreSummary:
    """Check rows in = scored + rejected, then build the summary."""
    if totals.rows_in != totals.scored + totals.rejected:
        raise ScoringError(f"{input_path}: rows in ({totals.rows_in}) != scored ({totals.scored}) + rejected "
                           f"({totals.rejected}); this is a bug, please report it. No outputs were written.")
    return _summary(totals, input_path, input_sha, model, seconds, paths)


def _summary(totals: Totals, input_path: Path | str, input_sha: str, model: LoadedModel, seconds: float,
             paths: OutputPaths) -> ScoreSummary:
    scored = max(totals.scored, 1)
    no_profile = "not checked: the model carries no reference profile"
    return ScoreSummary(
        input=str(input_path), input_sha256=input_sha,
        rows_in=totals.rows_in, rows_scored=totals.scored, rows_rejected=totals.rejected,
        rows_balanced=totals.rows_in == totals.scored + totals.rejected,
        reject_reasons=dict(totals.reject_reasons),
        accuracy=round(totals.correct / totals.labelled, 6) if totals.labelled else None,
        labelled_rows=totals.labelled,
        predicted_class_counts=dict(zip(model.letters, totals.classes.tolist())),
        mean_confidence=round(totals.confidence_sum / scored, 6) if totals.scored else None,
        low_confidence_rows=totals.low_conf, low_confidence_threshold=LOW_CONFIDENCE,
        seconds=round(seconds, 3), rows_per_second=round(totals.rows_in / max(seconds, 1e-9), 1),
        model=model.describe(),
        drift=totals.drift.report() if totals.drift else {"verdict": no_profile, "drift": False},
        checked_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        outputs={"predictions": str(paths.predictions), "rejects": str(paths.rejects), "summary": str(paths.summary)},
        class_mix=totals.drift.class_mix() if totals.drift else {"verdict": no_profile, "differs": False},
        per_class_accuracy=_per_class_accuracy(totals, model) if totals.labelled else None,
    )


def _per_class_accuracy(totals: Totals, model: LoadedModel) -> dict[str, dict[str, float | int]]:
    """Letter -> labelled rows of that true letter and the share predicted right (letters present only)."""
    return {letter: {"rows": int(rows), "accuracy": round(int(right) / int(rows), 6)}
            for letter, rows, right in zip(model.letters, totals.class_rows, totals.class_correct) if rows}
