"""Inbox scoring: every complete CSV in an inbox folder is scored once per model into an outbox.

Guarantees (each is tested in tests/serving/test_inbox_faults.py):
- One run at a time per inbox: a run holds an exclusive `flock` on `inbox/.sign-mlops.lock`;
  a second run at the same time (a cron overlap, a second replica) finds it held, does nothing
  and says so. The lock dies with its process, so a killed run never blocks the next one.
- Only complete files are claimed: not hidden, not `*.partial`, unchanged for `settle_s`
  seconds and not open for writing by any process we can see (Linux /proc). Writers should
  write `name.csv.partial` (or a hidden name) and rename it when done.
- A claimed file moves (atomic rename) to `inbox/.processing/` while it is scored; a run that
  dies leaves it there and the next run puts it back into the inbox before anything else.
- Outputs of a file go to their own folder `outbox/<stem>-<input sha8>-<model sha8>/`, final
  together (summary last); a later file of the same name gets another folder, never this one.
- The manifest `outbox/manifest.json` maps (input sha256, model sha256) to the outputs; it is
  written atomically after the outputs and can be rebuilt from the outputs' summaries. The
  same bytes are never scored twice by the same model, under any name: a repeat moves to
  `processed/` and is reported as skipped, naming the earlier outputs.
- A file that cannot be scored moves to `failed/` with `<name>.reason.txt`; the others go on.
  Problems of the machine rather than the file (disk full) stop the run and leave the file
  in the inbox.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sign_mlops.contract.csvformat import file_digest
from sign_mlops.contract.files import write_json_atomically
from sign_mlops.contract.summary import ScoreSummary
from sign_mlops.serving.model import LoadedModel
from sign_mlops.serving.outputs import sigterm_as_exception
from sign_mlops.serving.scorer import ScoringError, input_stem, score_file

log = logging.getLogger(__name__)
SUFFIXES = (".csv", ".csv.gz")
LOCK_NAME = ".sign-mlops.lock"
PROCESSING = ".processing"
DEFAULT_SETTLE_S = 5.0


class InboxError(RuntimeError):
    """The inbox cannot be processed as a whole (corrupt manifest, disk full); nothing was lost."""


@dataclass
class InboxResult:
    scored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)  # not complete yet; stays in the inbox
    ignored: dict[str, str] = field(default_factory=dict)  # not a CSV file; stays in the inbox
    busy: bool = False  # another run holds the inbox
    outputs: dict[str, str] = field(default_factory=dict)  # name -> output folder


# ---------------------------------------------------------------- locking and signals


@contextmanager
def inbox_lock(inbox: Path) -> Iterator[bool]:
    """Yields True while holding the inbox's exclusive lock, False if another run holds it."""
    inbox.mkdir(parents=True, exist_ok=True)
    fd = os.open(inbox / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                yield False
                return
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


# ---------------------------------------------------------------- which files are ready


def is_csv_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES) and not name.startswith(".")


def open_for_writing() -> set[Path]:
    """Files some process holds open for writing (those whose /proc entries we may read)."""
    held: set[Path] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return held
    for pid in (p for p in proc.iterdir() if p.name.isdigit()):
        try:
            for fd in (pid / "fd").iterdir():
                try:
                    flags = int((pid / "fdinfo" / fd.name).read_text().split("flags:")[1].split()[0], 8)
                    if flags & (os.O_WRONLY | os.O_RDWR):
                        held.add(Path(os.readlink(fd)))
                except (OSError, IndexError, ValueError):
                    continue
        except OSError:  # the process ended, or it is not ours to look at
            continue
    return held


def sort_inbox(inbox: Path, settle_s: float, result: InboxResult) -> list[Path]:
    """Complete CSV files ready to claim, oldest name first; the rest are reported, left alone."""
    ready = []
    writing = open_for_writing()
    now = time.time()
    for path in sorted(inbox.iterdir()):
        name = path.name
        if name.startswith(".") or name in ("processed", "failed") or name.endswith(".partial"):
            continue
        if not path.is_file() or path.is_symlink():
            result.ignored[name] = "not a regular file"
        elif not is_csv_name(name):
            result.ignored[name] = "not a .csv or .csv.gz file (any case)"
        elif path.resolve() in writing:
            result.waiting[name] = "open for writing by another process"
        elif now - path.stat().st_mtime < settle_s:
            result.waiting[name] = f"modified less than {settle_s:g} s ago"
        else:
            ready.append(path)
    return ready


# ---------------------------------------------------------------- manifest


def manifest_path(outbox: Path) -> Path:
    return outbox / "manifest.json"


def load_manifest(outbox: Path) -> dict:
    path = manifest_path(outbox)
    if not path.exists():
        return {"scored": {}}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("scored"), dict):
            raise ValueError("no 'scored' table")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise InboxError(f"{path} is corrupt ({exc}); nothing was touched. Rebuild it from the outputs with "
                         "'sign-mlops score-inbox --rebuild-manifest' (or move it away), then run again.") from None
    return manifest


def rebuild_manifest(outbox: Path) -> dict:
    """The manifest, rebuilt from the summaries in the outbox's output folders (atomic write)."""
    manifest: dict = {"scored": {}}
    for summary_path in sorted(outbox.glob("*/*.summary.json")):
        try:
            summary = ScoreSummary.read(summary_path)
            key = manifest_key(summary.input_sha256, summary.model["sha256"])
        except (ValueError, KeyError, TypeError):
            log.warning("skipping unreadable summary %s", summary_path)
            continue
        manifest["scored"][key] = _entry(summary, summary_path.parent)
    write_json_atomically(manifest, manifest_path(outbox))
    return manifest


def manifest_key(input_sha256: str, model_sha256: str) -> str:
    return f"{input_sha256}:{model_sha256}"


def _entry(summary: ScoreSummary, folder: Path) -> dict:
    return {"input": Path(summary.input).name, "model": summary.model, "folder": str(folder),
            "summary": summary.outputs["summary"], "rows_in": summary.rows_in, "rows_rejected": summary.rows_rejected}


# ---------------------------------------------------------------- moving files


def _unique_target(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    n = 1
    while target.exists():
        target = folder / f"{name}.{n}"
        n += 1
    return target


def _move(path: Path, folder: Path, name: str | None = None) -> Path:
    target = _unique_target(folder, name or path.name)
    os.replace(path, target)
    return target


def restore_orphans(inbox: Path) -> list[str]:
    """Put files a dead run left in .processing/ back into the inbox (we hold the lock)."""
    restored = []
    processing = inbox / PROCESSING
    if processing.is_dir():
        for path in sorted(processing.iterdir()):
            _move(path, inbox)
            restored.append(path.name)
    if restored:
        log.warning("put back %d file(s) an interrupted run had claimed: %s", len(restored), restored)
    return restored


def output_dir(outbox: Path, name: str, input_sha256: str, model: LoadedModel) -> Path:
    return outbox / f"{input_stem(Path(name))}-{input_sha256[:8]}-{model.sha256[:8]}"


# ---------------------------------------------------------------- the run


# scorer(claimed file, output folder, original name) -> summary; raises ScoringError
Scorer = Callable[[Path, Path, str], ScoreSummary]


def local_scorer(model: LoadedModel, **score_options) -> Scorer:
    def score(path: Path, folder: Path, name: str) -> ScoreSummary:
        return score_file(path, model, folder, overwrite=True, input_label=name, **score_options)

    return score


def score_inbox(inbox: Path, outbox: Path, model: LoadedModel, settle_s: float = DEFAULT_SETTLE_S,
                scorer: Scorer | None = None) -> InboxResult:
    """Score every complete file once for this model; move it to processed/ or failed/."""
    inbox, outbox = Path(inbox), Path(outbox)
    scorer = scorer or local_scorer(model)
    result = InboxResult()
    with inbox_lock(inbox) as held, sigterm_as_exception():
        if not held:
            log.warning("another run is scoring %s (lock %s held); this run does nothing", inbox, inbox / LOCK_NAME)
            result.busy = True
            return result
        restore_orphans(inbox)
        manifest = load_manifest(outbox)
        for path in sort_inbox(inbox, settle_s, result):
            score_one(path, inbox, outbox, model, manifest, result, scorer)
    return result


def score_one(path: Path, inbox: Path, outbox: Path, model: LoadedModel, manifest: dict, result: InboxResult,
              scorer: Scorer) -> None:
    """Claim one file, score it (or skip a repeat), record it, move it on."""
    name = path.name
    try:
        claimed = _move(path, inbox / PROCESSING, name)
    except FileNotFoundError:  # removed between listing and claiming: nothing to do
        log.warning("%s disappeared from the inbox before it was claimed", name)
        return
    try:
        try:
            sha = file_digest(claimed)
        except OSError as exc:
            _fail(claimed, inbox, name, f"cannot read the file ({exc.strerror}); fix its permissions and drop it "
                                        "into the inbox again", result)
            return
        key = manifest_key(sha, model.sha256)
        if key in manifest["scored"]:
            earlier = manifest["scored"][key]
            log.info("skip %s: same bytes as %s, already scored by this model (%s)", name, earlier["input"],
                     earlier.get("folder", earlier["summary"]))
            result.skipped.append(name)
            _move(claimed, inbox / "processed", name)
            return
        folder = output_dir(outbox, name, sha, model)
        try:
            summary = scorer(claimed, folder, name)
        except ScoringError as exc:
            if exc.machine:
                raise InboxError(f"{name}: {exc} The file stays in the inbox.") from None
            _fail(claimed, inbox, name, str(exc), result)
            return
        except (InboxError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a bug must not block the files after this one
            log.exception("unexpected error scoring %s", name)
            _fail(claimed, inbox, name, f"unexpected error ({type(exc).__name__}: {exc}); please report it", result)
            return
        manifest["scored"][key] = _entry(summary, folder)
        write_json_atomically(manifest, manifest_path(outbox))
        _move(claimed, inbox / "processed", name)
        result.scored.append(name)
        result.outputs[name] = str(folder)
    finally:
        if claimed.exists() and claimed.parent.name == PROCESSING:
            _move(claimed, inbox, name)  # not finished: back into the inbox
        _remove_if_empty(inbox / PROCESSING)


def _fail(claimed: Path, inbox: Path, name: str, reason: str, result: InboxResult) -> None:
    log.error("failed %s: %s", name, reason)
    moved = _move(claimed, inbox / "failed", name)
    moved.with_name(moved.name + ".reason.txt").write_text(reason + "\n")
    result.failed[name] = reason


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass

