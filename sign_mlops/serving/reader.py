"""The scorer's row-tolerant streaming reader: a bad row becomes a reject with its line number
and reason, never a lost, misread or shifted row. Memory stays flat in the file's size.

Pipeline per block of raw lines:
1. `RecordSplitter` turns lines into CSV records. Quote-free lines (the Kaggle case) are one
   record each, on a fast path; a line with a `"` is parsed with RFC 4180 rules, may continue
   over following lines (a quoted newline) and is rejected -- alone, the rows after it still
   count -- when its quoting never makes sense (stray or unterminated quotes).
2. `parse_records` rejects rows with NUL bytes, invalid UTF-8 or a wrong field count, then
   parses the rest: straight into uint8 when every numeric cell is written as plain digits
   (the common case; read by numpy when the file has no text columns, else by pandas' C
   parser), otherwise with pandas as text judged cell by cell by the shared rules in
   `sign_mlops.contract.csvformat` (so `True`, `1.0` or `1e1` are never read as numbers).
"""

from __future__ import annotations

import csv
import io
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from sign_mlops.contract.csvformat import (
    CELL_OK,
    CELL_PROBLEM,
    NUM_PIXELS,
    PIXEL_COLUMNS,
    DataFormatError,
    check_pixel_header,
    decode_header,
    is_kaggle_label,
    judge_cells,
    open_binary,
    pixel_in_range,
    read_header_line,
)

BLOCK_BYTES_PER_ROW = 2200  # a Kaggle row is ~2-3 kB
MAX_LINE_BYTES = 16 << 20  # a longer line is rejected without being held in memory
MAX_RECORD_LINES = 100  # a quoted field may hold newlines, but not more than this many lines
_DIGITS_AND_COMMAS = b"0123456789,"


@dataclass
class Chunk:
    """One block of rows: accepted rows as arrays plus rejected rows."""

    line_numbers: np.ndarray  # (n,) int64, file line where each accepted row starts (header = line 1)
    pixels: np.ndarray  # (n, 784) float32 raw 0-255
    labels: np.ndarray | None  # (n,) int64 when the file has a label column
    passthrough: pd.DataFrame  # non-pixel, non-label columns as text, one row per accepted row
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    bytes_read: int = 0

    @property
    def rows_in(self) -> int:
        return len(self.line_numbers) + len(self.rejects)


@dataclass(frozen=True)
class Layout:
    """Where the pixel, label and pass-through columns are in a header."""

    columns: list[str]
    pixel_positions: np.ndarray
    label_position: int | None
    passthrough: list[str]  # output names of the pass-through columns (unnamed ones get column<N>)
    passthrough_positions: list[int]

    @property
    def lead(self) -> int:
        """Pass-through columns before the first numeric column (for the fast digit check)."""
        numeric = set(self.pixel_positions.tolist()) | ({self.label_position} if self.label_position is not None else set())
        return min(numeric)

    @property
    def trail(self) -> int:
        numeric = set(self.pixel_positions.tolist()) | ({self.label_position} if self.label_position is not None else set())
        return len(self.columns) - 1 - max(numeric)

    @property
    def numeric_contiguous(self) -> bool:
        return self.lead + self.trail == len(self.passthrough_positions)


def column_layout(columns: list[str]) -> Layout:
    position = {name: i for i, name in enumerate(columns)}
    numeric = set(PIXEL_COLUMNS) | {"label"}
    passthrough_positions = [i for i, c in enumerate(columns) if c not in numeric]
    return Layout(
        columns=columns,
        pixel_positions=np.array([position[c] for c in PIXEL_COLUMNS]),
        label_position=position.get("label"),
        passthrough=[columns[i] or f"column{i + 1}" for i in passthrough_positions],
        passthrough_positions=passthrough_positions,
    )


# ---------------------------------------------------------------- lines -> records


class _TooLong:
    """Stands in for a line longer than MAX_LINE_BYTES (its bytes are never held)."""

    def __init__(self, length: int) -> None:
        self.length = length


def iter_line_blocks(fh: IO[bytes], block_bytes: int) -> Iterator[list[bytes | _TooLong]]:
    """Lines (without the final \\n) in blocks of about block_bytes; memory stays bounded."""
    rest = b""
    skipping = 0  # > 0 while inside an over-long line: bytes seen so far
    while True:
        data = fh.read(block_bytes)
        if not data:
            if skipping:
                yield [_TooLong(skipping)]
            elif rest:
                yield [rest]
            return
        if skipping:
            cut = data.find(b"\n")
            if cut < 0:
                skipping += len(data)
                continue
            lines: list[bytes | _TooLong] = [_TooLong(skipping + cut)]
            skipping, data, rest = 0, data[cut + 1:], b""
        else:
            lines = []
        data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
        else:
            lines.extend(data[:cut].split(b"\n"))
            rest = data[cut + 1:]
        if len(rest) > MAX_LINE_BYTES:
            skipping, rest = len(rest), b""
        if lines:
            yield lines


def _parse_quoted(text: bytes) -> tuple[str, list[str] | str]:
    """('ok', fields) | ('open', '') when a quoted field continues on the next line | ('bad', why)."""
    try:
        rows = list(csv.reader([text.decode("utf-8", "surrogateescape")], strict=True))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return "open", ""
        return "bad", f"malformed quoting ({exc})"
    return "ok", rows[0] if rows else [""]


def _normalise(fields: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(fields)  # quotes any field holding \r or \n
    return out.getvalue()[:-2].encode("utf-8", "surrogateescape")


@dataclass
class Records:
    """Complete records of a block: raw bytes (no line ending), the file line each starts on,
    and their field counts; plus the lines rejected while splitting."""

    records: list[bytes] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    fields: list[int] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)
    quoted: bool = False


class RecordSplitter:
    """Lines -> CSV records, carrying a quoted field that spans lines over block boundaries."""

    def __init__(self, n_fields: int, first_line: int, text_positions: list[int] | None = None) -> None:
        self.n_fields = n_fields
        self.text_positions = set(text_positions or [])
        self.next_line = first_line
        self.pending: list[tuple[int, bytes]] = []

    def feed(self, lines: list[bytes | _TooLong]) -> Records:
        out = Records()
        first = self.next_line
        self.next_line += len(lines)
        plain = [line for line in lines if isinstance(line, bytes)]
        if not self.pending and len(plain) == len(lines) and not any(b'"' in line for line in plain):
            out.records = [line.rstrip(b"\r") for line in plain]
            out.lines = list(range(first, first + len(lines)))
            out.fields = [record.count(b",") + 1 for record in out.records]
            return out
        work = deque(zip(range(first, first + len(lines)), lines))
        while work:
            self._take(work, out)
        return out

    def close(self) -> Records:
        """End of input: a record still open has an unterminated quote."""
        out = Records()
        work: deque = deque()
        while self.pending:
            self._reject_pending(work, out, "unterminated quote: the quoted field never closes")
            while work:
                self._take(work, out)
        return out

    def _take(self, work: deque, out: Records) -> None:
        number, line = work.popleft()
        if isinstance(line, _TooLong):
            if self.pending:
                self._reject_pending(work, out, "unterminated quote: the quoted field never closes")
            out.rejects.append((number, f"line too long ({line.length} bytes > {MAX_LINE_BYTES})"))
            return
        if not self.pending and b'"' not in line:
            record = line.rstrip(b"\r")
            self._emit(out, number, record, record.count(b",") + 1)
            return
        self.pending.append((number, line))
        text = b"\n".join(part for _, part in self.pending).rstrip(b"\r")
        status, result = _parse_quoted(text)
        start = self.pending[0][0]
        if status == "open":
            if len(self.pending) >= MAX_RECORD_LINES:
                self._reject_pending(work, out, f"unterminated quote: the quoted field runs over {MAX_RECORD_LINES} lines")
            return
        if status == "ok" and isinstance(result, list) and len(result) == self.n_fields \
                and self._newlines_only_in_text(result):
            self.pending = []
            out.quoted = True
            self._emit(out, start, _normalise(result), self.n_fields)
        elif len(self.pending) > 1:  # the lines it swallowed are rows of their own
            self._reject_pending(work, out, "unterminated quote: the quoted field swallows the next line")
        else:
            self.pending = []
            out.rejects.append((start, result if isinstance(result, str) else
                                f"wrong number of fields: expected {self.n_fields}, found {len(result)}"))

    def _newlines_only_in_text(self, fields: list[str]) -> bool:
        """A quoted newline may sit in a pass-through (text) column, never in a number's."""
        if len(self.pending) == 1:
            return True
        return all(i in self.text_positions for i, value in enumerate(fields) if "\n" in value)

    def _reject_pending(self, work: deque, out: Records, reason: str) -> None:
        """Reject the first line of the open record; its other lines go back to be read afresh."""
        (start, _), rest = self.pending[0], self.pending[1:]
        self.pending = []
        out.rejects.append((start, reason))
        work.extendleft(reversed(rest))

    @staticmethod
    def _emit(out: Records, number: int, record: bytes, n_fields: int) -> None:
        out.records.append(record)
        out.lines.append(number)
        out.fields.append(n_fields)


# ---------------------------------------------------------------- records -> rows


def parse_records(block: Records, layout: Layout) -> Chunk:
    """Reject rows that are not well-formed text with the right field count; parse the rest."""
    rejects = list(block.rejects)
    keep = _structurally_good(block, layout, rejects)
    records = [r for r, ok in zip(block.records, keep) if ok]
    lines = np.array([n for n, ok in zip(block.lines, keep) if ok], dtype=np.int64)
    chunk = _parse_rows(records, lines, layout, rejects, quoted=block.quoted)
    chunk.rejects.sort()
    return chunk


def _structurally_good(block: Records, layout: Layout, rejects: list[tuple[int, str]]) -> list[bool]:
    n_fields = len(layout.columns)
    joined = b"".join(block.records)
    check_nul, check_utf8 = b"\x00" in joined, not joined.isascii()
    keep = []
    for record, number, fields in zip(block.records, block.lines, block.fields):
        reason = ""
        if check_nul and b"\x00" in record:
            reason = "NUL byte in the row (binary data?)"
        elif check_utf8 and not _is_utf8(record):
            reason = "row is not valid UTF-8 text; re-save the file as UTF-8"
        elif fields != n_fields:
            reason = ("empty line" if not record.strip() else
                      f"wrong number of fields: expected {n_fields}, found {fields}")
        if reason:
            rejects.append((number, reason))
        keep.append(not reason)
    return keep


def _is_utf8(record: bytes) -> bool:
    try:
        record.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_rows(records: list[bytes], lines: np.ndarray, layout: Layout, rejects: list[tuple[int, str]],
                quoted: bool) -> Chunk:
    if not records:
        return _empty_chunk(layout, rejects)
    buffer = b"\n".join(records) + b"\n"
    frame = None
    if not quoted and _plain_digits(records, buffer, layout):
        frame = _read_small_numbers(buffer, len(records), layout) if not layout.passthrough_positions else None
        if frame is None:
            frame = _read(buffer, layout, numeric_dtype=np.uint8)
    if frame is None:
        frame = _read(buffer, layout, numeric_dtype=None)
    if frame is None or len(frame) != len(records):  # never shift rows: parse one by one
        frame = _read_one_by_one(records, layout)
    return _judge(frame, lines, layout, rejects)


def _plain_digits(records: list[bytes], buffer: bytes, layout: Layout) -> bool:
    """Every numeric cell written as plain digits? (Then the uint8 parse cannot misread.)"""
    if not layout.passthrough_positions:
        return not buffer.translate(None, _DIGITS_AND_COMMAS + b"\n")
    if not layout.numeric_contiguous:
        return False
    lead, trail = layout.lead, layout.trail
    for record in records:
        middle = record.split(b",", lead)[-1] if lead else record
        middle = middle.rsplit(b",", trail)[0] if trail else middle
        if middle.translate(None, _DIGITS_AND_COMMAS):
            return False
    return True


def _read_small_numbers(buffer: bytes, rows: int, layout: Layout) -> pd.DataFrame | None:
    """Rows of 1-3 digit cells (digits, commas and newlines only: `_plain_digits`) as uint8, in
    a few numpy passes instead of pandas' per-cell parser (the scorer's bottleneck for small
    models). None when a cell is empty, longer than 3 digits or over 255: pandas decides then."""
    text = np.frombuffer(buffer, dtype=np.uint8)
    ends = np.flatnonzero(text < ord("0"))  # "," and "\n" sort below the digits: one separator after every cell
    if len(ends) != rows * len(layout.columns):
        return None
    lengths = np.empty_like(ends)
    lengths[0], lengths[1:] = ends[0], ends[1:] - ends[:-1] - 1
    if lengths.min() < 1 or lengths.max() > 3:
        return None

    def digit(back: int) -> np.ndarray:  # the digit `back` places before each cell's end (masked by the caller)
        return text[ends - back].astype(np.int16) - ord("0")

    values = digit(1) + np.where(lengths >= 2, digit(2), 0) * 10 + np.where(lengths == 3, digit(3), 0) * 100
    if values.max() > 255:
        return None
    return pd.DataFrame(values.astype(np.uint8).reshape(rows, len(layout.columns)))


def _read(buffer: bytes, layout: Layout, numeric_dtype) -> pd.DataFrame | None:
    passthrough = set(layout.passthrough_positions)
    dtype = {i: (str if i in passthrough or numeric_dtype is None else numeric_dtype) for i in range(len(layout.columns))}
    try:
        return pd.read_csv(io.BytesIO(buffer), header=None, names=range(len(layout.columns)), dtype=dtype, engine="c",
                           na_filter=False, skip_blank_lines=False, lineterminator="\n", encoding="utf-8")
    except (ValueError, OverflowError, pd.errors.ParserError, UnicodeDecodeError):
        return None


def _read_one_by_one(records: list[bytes], layout: Layout) -> pd.DataFrame:
    rows = []
    for record in records:
        fields = next(csv.reader(io.StringIO(record.decode("utf-8", "replace"), newline="")), [])
        rows.append((fields + [""] * len(layout.columns))[: len(layout.columns)])
    return pd.DataFrame(rows, columns=range(len(layout.columns)), dtype=object)


def _judge(frame: pd.DataFrame, lines: np.ndarray, layout: Layout, rejects: list[tuple[int, str]]) -> Chunk:
    pixels, reasons = _numbers(frame, layout.pixel_positions, layout, "pixel")
    labels = None
    if layout.label_position is not None:
        label_values, label_reasons = _numbers(frame, np.array([layout.label_position]), layout, "label")
        labels = label_values[:, 0]
        reasons = np.where(reasons == "", label_reasons, reasons)
    first = frame.iloc[:, 0]
    if not pd.api.types.is_numeric_dtype(first):
        repeated = first.astype(str).str.strip().eq(layout.columns[0]).to_numpy()
        reasons = np.where(repeated, "repeated header line", reasons)
    bad = reasons != ""
    rejects.extend((int(line), str(reason)) for line, reason in zip(lines[bad], reasons[bad]))
    keep = ~bad
    passthrough = frame.iloc[keep, layout.passthrough_positions].set_axis(layout.passthrough, axis=1)
    return Chunk(
        line_numbers=lines[keep],
        pixels=pixels[keep].astype(np.float32),
        labels=None if labels is None else labels[keep].astype(np.int64),
        passthrough=passthrough.reset_index(drop=True),
        rejects=rejects,
    )


def _numbers(frame: pd.DataFrame, positions: np.ndarray, layout: Layout, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of the given columns and a per-row reason ('' when the row is fine)."""
    block = frame.iloc[:, positions]
    reasons = np.full(len(frame), "", dtype=object)
    if all(t == np.uint8 for t in block.dtypes):  # parsed from plain digits: only the label set can be wrong
        values = block.to_numpy()
        if kind == "pixel":
            return values, reasons
        text = values.astype(str)
        verdict = np.full(values.shape, CELL_OK, dtype=np.int8)
    else:
        text = block.to_numpy(dtype=object).astype(str)
        values, verdict = judge_cells(text)
    in_range = pixel_in_range(values) if kind == "pixel" else is_kaggle_label(values)
    verdict[(verdict == CELL_OK) & ~in_range] = 9
    for row in np.flatnonzero((verdict != CELL_OK).any(axis=1)):
        col = int(np.flatnonzero(verdict[row] != CELL_OK)[0])
        name, value, code = layout.columns[positions[col]], str(text[row, col]), verdict[row, col]
        if code != 9:
            reasons[row] = f"{CELL_PROBLEM[code]} in column {name}: {value!r}"
        elif kind == "pixel":
            reasons[row] = f"pixel out of range 0-255 in column {name}: {value!r}"
        else:
            reasons[row] = f"label not a Kaggle label (0-24 without 9): {value.strip()}"
    return values, reasons


def _empty_chunk(layout: Layout, rejects: list[tuple[int, str]]) -> Chunk:
    return Chunk(
        line_numbers=np.zeros(0, np.int64),
        pixels=np.zeros((0, NUM_PIXELS), np.float32),
        labels=None if layout.label_position is None else np.zeros(0, np.int64),
        passthrough=pd.DataFrame(columns=layout.passthrough),
        rejects=rejects,
    )


# ---------------------------------------------------------------- files


def open_scoring_input(path: str | Path) -> tuple[IO[bytes], Layout]:
    """Open a pixel CSV and read its header (pixel1..pixel784 in any order, `label` optional)."""
    path = Path(path)
    fh = open_binary(path)
    try:
        columns = decode_header(read_header_line(fh, path), path)
        check_pixel_header(columns, path)
    except (OSError, EOFError, zlib.error) as exc:
        fh.close()
        raise DataFormatError(f"{path}: cannot read the file ({exc}); is it a truncated or corrupt gzip?") from None
    except BaseException:
        fh.close()
        raise
    return fh, column_layout(columns)


def read_layout(path: str | Path) -> Layout:
    fh, layout = open_scoring_input(path)
    fh.close()
    return layout


def iter_chunks(path: str | Path, chunk_rows: int = 8192) -> Iterator[Chunk]:
    """Stream a pixel CSV in blocks of about `chunk_rows` lines; every row is either in a
    chunk's accepted rows or in its rejects, with its line number."""
    path = Path(path)
    fh, layout = open_scoring_input(path)
    with fh:
        yield from iter_chunks_of_lines(guarded_blocks(iter_line_blocks(fh, chunk_rows * BLOCK_BYTES_PER_ROW), path),
                                        layout, first_line=2)


def iter_chunks_of_lines(blocks: Iterable[list[bytes | _TooLong]], layout: Layout, first_line: int) -> Iterator[Chunk]:
    """Blocks of raw lines -> chunks (used for whole files and for byte-range pieces)."""
    splitter = RecordSplitter(len(layout.columns), first_line, layout.passthrough_positions)
    for lines in blocks:
        size = sum(len(line) + 1 if isinstance(line, bytes) else line.length for line in lines)
        chunk = parse_records(splitter.feed(lines), layout)
        chunk.bytes_read = size
        yield chunk
    tail = splitter.close()
    if tail.rejects or tail.records:
        yield parse_records(tail, layout)


def guarded_blocks(blocks: Iterator[list[bytes | _TooLong]], path: Path | str) -> Iterator[list[bytes | _TooLong]]:
    """Turn read errors mid-file (truncated gzip, I/O error) into a DataFormatError."""
    read = 0
    while True:
        try:
            lines = next(blocks)
        except StopIteration:
            return
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{path} after about {read} lines: the file ends early or is corrupt ({exc}); "
                                  "re-copy the file and score it again.") from None
        read += len(lines)
        yield lines
