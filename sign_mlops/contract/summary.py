"""The summary of one scored file: what the scorer returns and writes beside the predictions as
`<name>.summary.json` (its `to_dict()`). Rows in = rows scored + rows rejected, always.

`drift` answers "do the images look different from the training images?" (only it raises the
drift event); `class_mix` answers "do the predicted letters come in the training shares?" (for
information: one batch of one letter is not drift). docs/drift.md shows both."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ScoreSummary:
    input: str
    input_sha256: str
    rows_in: int
    rows_scored: int
    rows_rejected: int
    rows_balanced: bool
    reject_reasons: dict[str, int]
    accuracy: float | None  # None when the file has no label column
    labelled_rows: int
    predicted_class_counts: dict[str, int]
    mean_confidence: float | None
    low_confidence_rows: int
    low_confidence_threshold: float
    seconds: float
    rows_per_second: float
    model: dict[str, str]  # name, version, path, sha256, mlflow_run_id, train_data_sha256
    drift: dict[str, Any]  # input drift (sign_mlops.contract.drift report): verdict, drift, drifted, tests
    checked_at: str
    outputs: dict[str, str]  # predictions, rejects, summary
    renamed_columns: dict[str, str] = field(default_factory=dict)  # pass-through columns renamed (input_ prefix)
    # the predicted letters' shares against the training labels' (DriftAccumulator.class_mix):
    # information, never part of the drift verdict; empty in summaries written before it existed
    class_mix: dict[str, Any] = field(default_factory=dict)
    # letter -> {"rows", "accuracy"} over labelled rows of that true letter; None without labels
    per_class_accuracy: dict[str, dict[str, float | int]] | None = None
    pieces: int | None = None  # scored on a Dask cluster: line-aligned pieces
    workers: int | None = None  # ... and the worker processes that scored them

    def to_dict(self) -> dict[str, Any]:
        """The JSON document; the cluster-only counts appear only when set."""
        return {k: v for k, v in asdict(self).items() if v is not None or k not in ("pieces", "workers")}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScoreSummary:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def read(cls, path: Path) -> ScoreSummary:
        return cls.from_dict(json.loads(Path(path).read_text()))
