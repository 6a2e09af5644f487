"""The one label map: model output index <-> Kaggle label <-> letter.

Kaggle labels are 0-24 for A-Y; 9 (J) and 25 (Z) need motion and never occur.
"""

from __future__ import annotations

import json

KAGGLE_LABELS: tuple[int, ...] = tuple(label for label in range(25) if label != 9)
NUM_CLASSES: int = len(KAGGLE_LABELS)  # 24
LETTERS: tuple[str, ...] = tuple(chr(ord("A") + label) for label in KAGGLE_LABELS)
INDEX_OF_LABEL: dict[int, int] = {label: i for i, label in enumerate(KAGGLE_LABELS)}


def letter_of(label: int) -> str:
    """Letter for a Kaggle label, e.g. 0 -> 'A', 24 -> 'Y'."""
    if label not in INDEX_OF_LABEL:
        raise ValueError(f"Kaggle label {label} is not one of 0-24 without 9 (J) and 25 (Z).")
    return chr(ord("A") + label)


def label_map() -> list[dict[str, int | str]]:
    """The label map as records: output index, Kaggle label, letter."""
    return [
        {"index": i, "label": label, "letter": letter}
        for i, (label, letter) in enumerate(zip(KAGGLE_LABELS, LETTERS))
    ]


def label_map_json() -> str:
    """The label map as compact JSON (travels in ONNX metadata and MLflow)."""
    return json.dumps(label_map(), separators=(",", ":"))


def parse_label_map(text: str) -> list[dict[str, int | str]]:
    """Parse and check a label map written by `label_map_json`."""
    records = json.loads(text)
    if not isinstance(records, list) or not records:
        raise ValueError("Label map must be a non-empty JSON list of {index, label, letter}.")
    for i, rec in enumerate(records):
        if rec.get("index") != i or "label" not in rec or "letter" not in rec:
            raise ValueError(f"Label map entry {i} is malformed: {rec!r}")
    return records
