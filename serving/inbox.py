"""Inbox scoring: every new CSV in an inbox folder is scored once per model into an outbox.

- A manifest (outbox/manifest.json) records (input sha256, model sha256) -> outputs, so the
  same bytes are never scored twice by the same model, even if the file is dropped again.
- A scored file moves to inbox/processed/; a file that cannot be scored at all moves to
  inbox/failed/ with <name>.reason.txt next to it.
- Crash safety: outputs are atomic and the manifest is written after them, so a re-run
  re-scores (overwriting) whatever was not recorded, and skips what was.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from serving.model import LoadedModel
from serving.outputs import write_json_atomically
from serving.scorer import ScoringError, score_file
from sign_model.data import file_digest

log = logging.getLogger(__name__)
PATTERNS = ("*.csv", "*.csv.gz")


@dataclass
class InboxResult:
    scored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def pending_files(inbox: Path) -> list[Path]:
    """CSV files waiting in the inbox (not in processed/ or failed/), oldest name first."""
    return sorted({p for pattern in PATTERNS for p in inbox.glob(pattern) if p.is_file()})


def load_manifest(outbox: Path) -> dict:
    path = outbox / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"scored": {}}


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{file_digest(path)[:8]}{''.join(path.suffixes[-1:])}"
    shutil.move(str(path), target)
    return target


def claim_pending(inbox: Path, outbox: Path, model: LoadedModel, result: InboxResult) -> list[tuple[Path, str]]:
    """Pending files not yet scored by this model, with their manifest keys; already-scored
    ones (same bytes, same model) are moved to processed/ and reported as skipped."""
    manifest = load_manifest(outbox)
    todo = []
    for path in pending_files(inbox):
        key = f"{file_digest(path)}:{model.sha256}"
        if key in manifest["scored"]:
            log.info("skip %s: already scored by this model (%s)", path.name, manifest["scored"][key]["summary"])
            _move(path, inbox / "processed")
            result.skipped.append(path.name)
        else:
            todo.append((path, key))
    return todo


def mark_failed(inbox: Path, path: Path, reason: str, result: InboxResult) -> None:
    """Move a file that cannot be scored to failed/ with <name>.reason.txt next to it."""
    log.error("failed %s: %s", path.name, reason)
    moved = _move(path, inbox / "failed")
    moved.with_name(moved.name + ".reason.txt").write_text(reason + "\n")
    result.failed[path.name] = reason


def mark_scored(inbox: Path, outbox: Path, path: Path, key: str, summary: dict, model: LoadedModel,
                result: InboxResult) -> None:
    """Record the scored file in the manifest (after its outputs are final), then move it."""
    manifest = load_manifest(outbox)
    manifest["scored"][key] = {"input": path.name, "model": model.describe(), "summary": summary["outputs"]["summary"],
                               "rows_in": summary["rows_in"], "rows_rejected": summary["rows_rejected"]}
    write_json_atomically(manifest, outbox / "manifest.json")
    _move(path, inbox / "processed")
    result.scored.append(path.name)


def output_dir(outbox: Path, path: Path) -> Path:
    return outbox / path.name.removesuffix(".gz").removesuffix(".csv")


def score_inbox(inbox: Path, outbox: Path, model: LoadedModel, **score_options) -> InboxResult:
    """Score every pending file once for this model; move it to processed/ or failed/."""
    result = InboxResult()
    for path, key in claim_pending(inbox, outbox, model, result):
        try:
            summary = score_file(path, model, output_dir(outbox, path), overwrite=True, **score_options)
        except ScoringError as exc:
            mark_failed(inbox, path, str(exc), result)
            continue
        mark_scored(inbox, outbox, path, key, summary, model, result)
    return result
