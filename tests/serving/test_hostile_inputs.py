"""Hostile and unusual inputs: every row is scored or rejected with its line, never misread,
shifted or lost; whole-file problems are one clear error, never a traceback or a hang."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sign_mlops.contract.csvformat import KAGGLE_HEADER, PIXEL_COLUMNS
from sign_mlops.serving import reader
from sign_mlops.serving.model import ModelError, load_onnx
from sign_mlops.serving.scorer import ScoringError, score_file
from tests.conftest import kaggle_rows, write_text

ROWS = kaggle_rows(8, seed=11)
PIXELS = [",".join(map(str, r[1:])) for r in ROWS]
LABELS = [str(r[0]) for r in ROWS]
PIXEL_HEADER = ",".join(PIXEL_COLUMNS)


@pytest.fixture(scope="module")
def model(onnx_model_path):
    return load_onnx(onnx_model_path)


def _score(tmp_path: Path, payload: bytes | str, model, name: str = "in.csv", **options):
    path = write_text(tmp_path / name, payload)
    summary = score_file(path, model, tmp_path / "out", **options)
    predictions = pd.read_csv(summary.outputs["predictions"], dtype=str, keep_default_na=False)
    rejects = pd.read_csv(summary.outputs["rejects"], keep_default_na=False)
    assert summary.rows_in == summary.rows_scored + summary.rows_rejected
    assert len(predictions) == summary.rows_scored and len(rejects) == summary.rows_rejected
    return summary, predictions, rejects


def _expected_letters(model, rows: list[int]) -> list[str]:
    probs = model.predict(ROWS[rows, 1:].astype(np.float32))
    return [model.letters[i] for i in probs.argmax(1)]


def test_quoted_passthrough_fields_follow_rfc4180(tmp_path, model):
    text = (f"id,note,{PIXEL_HEADER}\r\n"
            f'"a,1",plain,{PIXELS[0]}\r\n'
            f'b2,"two\r\nlines",{PIXELS[1]}\r\n'
            f'"c""3","",{PIXELS[2]}\r\n'
            f'd4,x,{PIXELS[3]}\r\n')
    summary, predictions, rejects = _score(tmp_path, text, model)
    assert summary.rows_in == 4 and summary.rows_rejected == 0
    assert predictions["id"].tolist() == ["a,1", "b2", 'c"3', "d4"]
    assert predictions["note"].tolist() == ["plain", "two\r\nlines", "", "x"]  # the value, byte for byte
    assert predictions["row"].tolist() == ["2", "3", "5", "6"]  # the quoted newline spans lines 3-4
    assert predictions["pred_letter"].tolist() == _expected_letters(model, [0, 1, 2, 3])


@pytest.mark.parametrize("bad", ['"unterminated', 'x"y"z', '"closed"junk'])
def test_broken_quoting_rejects_that_row_only(tmp_path, model, bad):
    text = f"id,{PIXEL_HEADER}\n" + "".join(f"{i},{PIXELS[i]}\n" for i in range(2)) + f"{bad},{PIXELS[2]}\n" + \
        "".join(f"{i},{PIXELS[i]}\n" for i in range(3, 6))
    summary, predictions, rejects = _score(tmp_path, text, model)
    assert summary.rows_in == 6
    if bad == 'x"y"z':  # a quote inside an unquoted field is literal text (RFC 4180 readers agree)
        assert summary.rows_scored == 6 and predictions["id"].tolist()[2] == 'x"y"z'
        return
    assert rejects["row"].tolist() == [4] and "quot" in rejects["reason"].iloc[0]
    assert predictions["row"].tolist() == ["2", "3", "5", "6", "7"]
    assert predictions["pred_letter"].tolist() == _expected_letters(model, [0, 1, 3, 4, 5])


def test_unterminated_quote_on_the_last_row(tmp_path, model):
    text = f"id,{PIXEL_HEADER}\n0,{PIXELS[0]}\n\"open,{PIXELS[1]}"
    summary, _, rejects = _score(tmp_path, text, model)
    assert summary.rows_scored == 1 and rejects["row"].tolist() == [3]


def test_passthrough_columns_named_like_outputs_are_renamed(tmp_path, model):
    header = f"row,confidence,input_row,pred_letter,label,{PIXEL_HEADER}"
    text = header + "\n" + "".join(f"r{i},c{i},x{i},p{i},{LABELS[i]},{PIXELS[i]}\n" for i in range(3))
    summary, predictions, _ = _score(tmp_path, text, model)
    assert summary.renamed_columns == {"row": "input_input_row", "confidence": "input_confidence",
                                          "pred_letter": "input_pred_letter"}
    assert predictions["row"].tolist() == ["2", "3", "4"]
    assert predictions["input_input_row"].tolist() == ["r0", "r1", "r2"]
    assert predictions["input_row"].tolist() == ["x0", "x1", "x2"]
    assert predictions["input_confidence"].tolist() == ["c0", "c1", "c2"]
    assert predictions["pred_letter"].tolist() == _expected_letters(model, [0, 1, 2])
    assert len(set(predictions.columns)) == len(predictions.columns)


@pytest.mark.parametrize("cell", ["True", "False", "1.0", "1e1", "0x1", "five", "nan"])
@pytest.mark.parametrize("column", ["label", "pixel5"])
def test_cells_are_integers_and_nothing_else_even_in_a_one_row_file(tmp_path, model, cell, column):
    cells = dict(zip(KAGGLE_HEADER, [LABELS[0], *PIXELS[0].split(",")]))
    cells[column] = cell
    text = ",".join(KAGGLE_HEADER) + "\n" + ",".join(cells.values()) + "\n"
    summary, _, rejects = _score(tmp_path, text, model)
    assert summary.rows_scored == 0 and summary.rows_rejected == 1
    assert column in rejects["reason"].iloc[0]


def test_integers_with_signs_spaces_and_leading_zeros_are_accepted(tmp_path, model):
    cells = PIXELS[0].split(",")
    cells[0], cells[1], cells[2] = "+7", " 8 ", "009"
    summary, _, _ = _score(tmp_path, PIXEL_HEADER + "\n" + ",".join(cells) + "\n", model)
    assert summary.rows_scored == 1


def test_text_that_looks_missing_passes_through_unchanged(tmp_path, model):
    text = f"id,{PIXEL_HEADER}\n" + "".join(f"{v},{PIXELS[i]}\n" for i, v in enumerate(["NA", "null", "", "NaN"]))
    _, predictions, _ = _score(tmp_path, text, model)
    assert predictions["id"].tolist() == ["NA", "null", "", "NaN"]


def test_header_longer_than_a_mebibyte(tmp_path, model):
    names = [f"meta_{i:04d}_" + "x" * 300 for i in range(4000)]  # ~1.2 MB of header
    header = ",".join(names[:2000] + list(PIXEL_COLUMNS) + names[2000:])
    rows = "".join(",".join(["a"] * 2000 + [PIXELS[i]] + ["b"] * 2000) + "\n" for i in range(3))
    summary, predictions, _ = _score(tmp_path, header + "\n" + rows, model)
    assert len(header) > 1 << 20
    assert summary.rows_scored == 3 and predictions[names[-1]].tolist() == ["b", "b", "b"]
    assert predictions["pred_letter"].tolist() == _expected_letters(model, [0, 1, 2])


@pytest.mark.slow
def test_ten_thousand_columns_finish(tmp_path, model):
    extra = [f"c{i}" for i in range(10_000 - 784)]
    text = ",".join(list(PIXEL_COLUMNS) + extra) + "\n" + "".join(
        PIXELS[i % 8] + "," + ",".join(["7"] * len(extra)) + "\n" for i in range(20))
    summary, predictions, _ = _score(tmp_path, text, model)
    assert summary.rows_scored == 20 and predictions.shape[1] == 1 + len(extra) + 3 + 2 * 2  # row, extras, predictions


@pytest.mark.parametrize("ending", [b"\r\r\n", b"\n\r", b"\r\n"])
def test_odd_line_endings(tmp_path, model, ending):
    body = ending.join(p.encode() for p in [PIXEL_HEADER, *PIXELS[:4]]) + ending
    summary, predictions, _ = _score(tmp_path, body, model)
    assert predictions["pred_letter"].tolist()[:4] == _expected_letters(model, [0, 1, 2, 3])
    assert summary.rows_scored == 4


def test_non_utf8_and_nul_bytes_reject_only_their_rows(tmp_path, model):
    lines = [f"id,{PIXEL_HEADER}".encode(), b"ok0," + PIXELS[0].encode(), b"caf\xe9," + PIXELS[1].encode(),
             b"n\x00ul," + PIXELS[2].encode(), b"ok3," + PIXELS[3].encode(), PIXELS[4].encode() + b"\x00"]
    summary, predictions, rejects = _score(tmp_path, b"\n".join(lines) + b"\n", model)
    assert predictions["id"].tolist() == ["ok0", "ok3"]
    assert rejects["row"].tolist() == [3, 4, 6]
    assert "UTF-8" in rejects["reason"].iloc[0] and "NUL" in rejects["reason"].iloc[1]


def test_overlong_line_is_rejected_without_holding_it(tmp_path, model, monkeypatch):
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 50_000)
    text = PIXEL_HEADER + "\n" + PIXELS[0] + "\n" + "1," * 100_000 + "1\n" + PIXELS[1] + "\n"
    summary, _, rejects = _score(tmp_path, text, model, chunk_rows=2)
    assert summary.rows_scored == 2 and rejects["row"].tolist() == [3]
    assert "line too long" in rejects["reason"].iloc[0]


def test_fifo_is_refused_without_hanging(tmp_path, model):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    outcome: dict = {}

    def run() -> None:
        try:
            score_file(fifo, model, tmp_path / "out")
        except ScoringError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "scoring a FIFO hung"
    assert "pipe" in outcome["error"] and "write the data to a .csv" in outcome["error"]


def test_model_that_is_a_folder(tmp_path):
    with pytest.raises(ModelError, match="is a folder"):
        load_onnx(tmp_path)


# ---------------------------------------------------------------- fuzz


def _mutate(line: bytes, kind: str, data) -> bytes:
    cells = line.split(b",")
    at = data.draw(st.integers(0, len(cells) - 1))
    if kind == "quote":
        cells[at] = data.draw(st.sampled_from([b'"', b'"' + cells[at], cells[at] + b'"', b'"a,b"', b'""']))
    elif kind == "cr":
        cells[at] = cells[at] + b"\r"
    elif kind == "bytes":
        cells[at] = data.draw(st.binary(min_size=1, max_size=6))
    elif kind == "nul":
        cells[at] = cells[at] + b"\x00"
    elif kind == "drop":
        del cells[at]
    elif kind == "extra":
        cells.insert(at, b"9")
    elif kind == "huge":
        cells[at] = b"7" * data.draw(st.integers(1000, 300_000))
    elif kind == "newline":
        cells[at] = cells[at] + b"\n"
    return b",".join(cells)


KINDS = ["good", "good", "quote", "cr", "bytes", "nul", "drop", "extra", "huge", "newline"]


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=25),
       chunk_rows=st.integers(1, 9), with_id=st.booleans())
def test_fuzzed_rows_never_raise_and_every_row_is_accounted(model, data, kinds, chunk_rows, with_id):
    header = (b"id," if with_id else b"") + ",".join(KAGGLE_HEADER).encode()
    lines = []
    for i, kind in enumerate(kinds):
        good = ((f"r{i}," if with_id else "") + LABELS[i % 8] + "," + PIXELS[i % 8]).encode()
        lines.append(good if kind == "good" else _mutate(good, kind, data))
    payload = header + b"\r\n" + b"\r\n".join(lines) + data.draw(st.sampled_from([b"", b"\r\n", b"\n"]))
    last_line = payload.count(b"\n") + 1
    with tempfile.TemporaryDirectory() as tmp:
        path = write_text(Path(tmp) / "fuzz.csv", payload)
        summary = score_file(path, model, Path(tmp) / "out", chunk_rows=chunk_rows)
        predictions = pd.read_csv(summary.outputs["predictions"], dtype=str, keep_default_na=False)
        rejects = pd.read_csv(summary.outputs["rejects"], keep_default_na=False)
    assert summary.rows_in == summary.rows_scored + summary.rows_rejected
    assert len(predictions) == summary.rows_scored and len(rejects) == summary.rows_rejected
    seen = [int(r) for r in predictions["row"]] + rejects["row"].tolist()
    assert len(seen) == len(set(seen)) and all(2 <= r <= last_line for r in seen)
    assert all(isinstance(reason, str) and reason for reason in rejects["reason"])
    if not any(b'"' in line or b"\n" in line for line in lines):  # then a line is a row: no good row is lost
        good_lines = {i + 2 for i, k in enumerate(kinds) if k == "good"}
        assert good_lines <= {int(r) for r in predictions["row"]}


def test_cr_only_line_endings_are_one_clear_error(tmp_path, model):
    path = write_text(tmp_path / "mac.csv", "\r".join([PIXEL_HEADER, PIXELS[0], PIXELS[1]]) + "\r")
    with pytest.raises(ScoringError, match="CR-only line endings"):
        score_file(path, model, tmp_path / "out")


def test_non_ascii_digits_are_not_numbers(tmp_path, model):
    cells = PIXELS[0].split(",")
    cells[3] = "\uff11\uff12"  # fullwidth "12"
    summary, _, rejects = _score(tmp_path, PIXEL_HEADER + "\n" + ",".join(cells) + "\n" + PIXELS[1] + "\n", model)
    assert summary.rows_scored == 1 and "non-numeric value in column pixel4" in rejects["reason"].iloc[0]


# ---------------------------------------------------------------- the plain-digit fast path

SPECIAL_CELLS = ["", "0", "00", "007", "099", "255", "256", "999", "0255", "1000", "65535"]


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**16), n_rows=st.integers(1, 4), labelled=st.booleans(),
       edits=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 784), st.sampled_from(SPECIAL_CELLS)), max_size=3))
def test_numpy_reading_of_plain_digits_agrees_with_pandas(seed, n_rows, labelled, edits):
    """Digit-only rows are read by numpy (the scorer's fast path); every value, reject and reason
    must be what pandas' parser gives, including empty cells, leading zeros, 4+ digits and > 255."""
    header = list(KAGGLE_HEADER) if labelled else list(PIXEL_COLUMNS)
    layout = reader.column_layout(header)
    values = np.random.default_rng(seed).integers(0, 256, (n_rows, len(header)))
    if labelled:
        values[:, 0] = values[:, 0] % 24
    rows = [[str(v) for v in row] for row in values]
    for row, column, cell in edits:
        rows[row % n_rows][column % len(header)] = cell
    records = [",".join(r).encode() for r in rows]
    block = reader.Records(records=records, lines=list(range(2, 2 + len(rows))), fields=[len(r) for r in rows],
                           rejects=[], quoted=False)
    fast = reader.parse_records(block, layout)
    original = reader._read_small_numbers
    try:
        reader._read_small_numbers = lambda *args: None  # pandas only, as before the fast path
        slow = reader.parse_records(block, layout)
    finally:
        reader._read_small_numbers = original
    assert fast.rejects == slow.rejects
    assert np.array_equal(fast.line_numbers, slow.line_numbers)
    assert np.array_equal(fast.pixels, slow.pixels) and fast.pixels.dtype == slow.pixels.dtype
    assert (fast.labels is None) == (slow.labels is None)
    if fast.labels is not None:
        assert np.array_equal(fast.labels, slow.labels)


def test_kaggle_rows_take_the_numpy_path(monkeypatch):
    layout = reader.column_layout(list(KAGGLE_HEADER))
    records = [(LABELS[i] + "," + PIXELS[i]).encode() for i in range(8)]
    block = reader.Records(records=records, lines=list(range(2, 10)), fields=[785] * 8, rejects=[], quoted=False)
    monkeypatch.setattr(reader, "_read", lambda *a, **k: pytest.fail("pandas was used for plain digits"))
    chunk = reader.parse_records(block, layout)
    assert np.array_equal(chunk.pixels, ROWS[:, 1:].astype(np.float32)) and chunk.labels.tolist() == ROWS[:, 0].tolist()
