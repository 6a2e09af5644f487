"""Scale-out scoring: split files into pieces (byte ranges aligned to lines), score pieces on any
worker, merge them back into exactly the outputs the single-machine scorer writes.

No Dask or Prefect here: `flows/scoring.py` runs `score_piece` as Prefect tasks on a
DaskTaskRunner. Workers need the input files and the model on a path they can read (a shared
volume) or a `models:/` URI they can resolve.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sign_mlops.contract.csvformat import GZIP_MAGIC, DataFormatError, file_digest
from sign_mlops.contract.files import AtomicFile, sweep_stale_temps
from sign_mlops.contract.summary import ScoreSummary
from sign_mlops.serving.model import LoadedModel, resolve
from sign_mlops.serving.outputs import OutputSet, refuse_existing
from sign_mlops.serving.reader import (
    BLOCK_BYTES_PER_ROW,
    guarded_blocks,
    iter_chunks_of_lines,
    iter_line_blocks,
    open_scoring_input,
    read_layout,
)
from sign_mlops.serving.scorer import (
    REJECTS_HEADER,
    OutputPaths,
    ScoringError,
    Totals,
    _csv_line,
    _write_error,
    finish_summary,
    output_columns,
    score_chunks,
)

DEFAULT_PIECE_BYTES = 32 << 20  # ~12 k Kaggle rows: seconds of work, small next to task overhead
_MODELS: dict[str, LoadedModel] = {}  # per worker process: each model is loaded once


@dataclass(frozen=True)
class Piece:
    """Rows of one file between two byte offsets; `first_line` is the file line of its first row."""

    path: str
    index: int
    start: int
    end: int  # -1: to the end of the file (whole gzip files are one piece)
    first_line: int


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def plan_pieces(path: Path, piece_bytes: int = DEFAULT_PIECE_BYTES) -> list[Piece]:
    """Cut a plain CSV into line-aligned byte ranges of about piece_bytes. A .gz file, and a file
    with any `"` (a quoted field may hold a newline, so a line is not always a row), is one piece."""
    path = Path(path)
    read_layout(path)
    if _is_gzip(path) or _has_quotes(path):
        return [Piece(str(path), 0, -1, -1, 2)]
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.readline()
        starts = [fh.tell()]
        while starts[-1] + piece_bytes < size:
            fh.seek(starts[-1] + piece_bytes)
            fh.readline()
            if fh.tell() >= size:
                break
            starts.append(fh.tell())
    lines = _line_numbers_at(path, starts)
    ends = starts[1:] + [size]
    return [Piece(str(path), i, s, e, line) for i, (s, e, line) in enumerate(zip(starts, ends, lines))]


def _has_quotes(path: Path) -> bool:
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            if b'"' in block:
                return True
    return False


def _line_numbers_at(path: Path, offsets: list[int]) -> list[int]:
    """File line number (1-based) starting at each byte offset, counting newlines in one pass."""
    result, newlines, position = [], 0, 0
    with open(path, "rb") as fh:
        for offset in offsets:
            while position < offset:
                block = fh.read(min(1 << 24, offset - position))
                newlines += block.count(b"\n")
                position += len(block)
            result.append(newlines + 1)
    return result


def load_model_once(model_spec: str, cache_dir: str, expected_sha256: str) -> LoadedModel:
    """The worker's copy of the model, loaded on first use and checked against the driver's sha256."""
    model = _MODELS.get(expected_sha256)
    if model is None:
        model = resolve(model_spec, Path(cache_dir), threads=1)
        if model.sha256 != expected_sha256:
            raise ScoringError(f"worker {os.getpid()} loaded {model_spec} with sha256 {model.sha256[:12]}..., "
                               f"the driver expected {expected_sha256[:12]}...; is the model path shared?")
        _MODELS[expected_sha256] = model
    return model


def _piece_blocks(piece: Piece, chunk_rows: int):
    """Raw lines of a piece in blocks of about chunk_rows lines."""
    fh, _ = open_scoring_input(piece.path)
    with fh:
        data = fh
        if piece.start >= 0:
            fh.seek(piece.start)
            data = io.BytesIO(fh.read(piece.end - piece.start))
        yield from guarded_blocks(iter_line_blocks(data, chunk_rows * BLOCK_BYTES_PER_ROW), piece.path)


@dataclass(frozen=True)
class PieceResult:
    """One scored piece: its counts (Totals, serialised), or the data error that stopped it."""

    index: int
    error: str | None = None
    pid: int = 0  # the worker process that scored it
    totals: dict[str, Any] | None = None  # totals_to_dict(...)


def score_piece(piece: Piece, model_spec: str, cache_dir: str, model_sha256: str, parts_dir: str,
                chunk_rows: int = 4096, batch_size: int = 256) -> PieceResult:
    """Score one piece into parts_dir/<index>.pred.csv and .rej.csv (atomic); return its counts.

    Data errors come back as the result's `error` (retrying cannot fix them); anything else
    raises, so the orchestrator retries the piece. Re-running a piece rewrites the same part files.
    """
    model = load_model_once(model_spec, cache_dir, model_sha256)
    path = Path(piece.path)
    totals = Totals(model)
    pred = AtomicFile(Path(parts_dir) / f"{piece.index:06d}.pred.csv")
    rej = AtomicFile(Path(parts_dir) / f"{piece.index:06d}.rej.csv")
    try:
        layout = read_layout(path)
        columns, _ = output_columns(layout)
        chunks = iter_chunks_of_lines(_piece_blocks(piece, chunk_rows), layout, piece.first_line)
        score_chunks(chunks, model, pred.handle, rej.handle, totals, columns, batch_size)
    except DataFormatError as exc:
        pred.abort()
        rej.abort()
        return PieceResult(piece.index, error=str(exc))
    except BaseException:
        pred.abort()
        rej.abort()
        raise
    pred.commit()
    rej.commit()
    return PieceResult(piece.index, pid=os.getpid(), totals=totals_to_dict(totals))


def totals_to_dict(totals: Totals) -> dict:
    out = {k: getattr(totals, k) for k in ("rows_in", "scored", "rejected", "labelled", "correct", "low_conf",
                                           "confidence_sum")}
    out["classes"] = totals.classes.tolist()
    out["class_rows"] = totals.class_rows.tolist()
    out["class_correct"] = totals.class_correct.tolist()
    out["reject_reasons"] = dict(totals.reject_reasons)
    out["drift"] = totals.drift.state() if totals.drift else None
    return out


def _totals_from_dict(values: dict, model: LoadedModel) -> Totals:
    totals = Totals(model)
    for key in ("rows_in", "scored", "rejected", "labelled", "correct", "low_conf", "confidence_sum"):
        setattr(totals, key, values[key])
    totals.classes = np.array(values["classes"], dtype=np.int64)
    totals.class_rows = np.array(values["class_rows"], dtype=np.int64)
    totals.class_correct = np.array(values["class_correct"], dtype=np.int64)
    totals.reject_reasons = dict(values["reject_reasons"])
    if totals.drift is not None and values["drift"] is not None:
        totals.drift.load_state(values["drift"])
    return totals


def merge_pieces(input_path: Path, results: list[PieceResult], parts_dir: Path, out_dir: Path, model: LoadedModel,
                 started: float, overwrite: bool = False, input_label: str | None = None) -> ScoreSummary:
    """Concatenate part files in piece order into the final outputs (atomic) and merge the counts."""
    input_path = Path(input_path)
    errors = [r.error for r in results if r.error]
    if errors:
        raise ScoringError(errors[0])
    results = sorted(results, key=lambda r: r.index)
    if [r.index for r in results] != list(range(len(results))):
        raise ScoringError(f"{input_path}: pieces missing from the results; no outputs written.")
    paths = OutputPaths.for_input(input_path, out_dir)
    sweep_stale_temps(out_dir)
    refuse_existing(paths.all(), overwrite)
    totals = Totals(model)
    for result in results:
        assert result.totals is not None  # a piece without an error carries its counts
        totals.merge(_totals_from_dict(result.totals, model))
    columns, renamed = output_columns(read_layout(input_path))
    outputs = OutputSet(paths.all())
    try:
        outputs[0].handle.write(_csv_line(columns))
        outputs[1].handle.write(REJECTS_HEADER)
        for result in results:
            for suffix, target in (("pred", outputs[0]), ("rej", outputs[1])):
                with open(parts_dir / f"{result.index:06d}.{suffix}.csv", encoding="utf-8") as part:
                    shutil.copyfileobj(part, target.handle, 1 << 20)
        summary = replace(finish_summary(totals, input_label or str(input_path), file_digest(input_path), model,
                                         time.perf_counter() - started, paths),
                          renamed_columns=renamed, pieces=len(results), workers=len({r.pid for r in results}))
        json.dump(summary.to_dict(), outputs[2].handle, indent=2, default=str)
        outputs.commit()
    except OSError as exc:
        outputs.abort()
        raise ScoringError(_write_error(exc, input_path, out_dir), machine=True) from None
    except BaseException:
        outputs.abort()
        raise
    return summary
