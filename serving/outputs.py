"""Output files that become final together or not at all.

Each output is written under a temporary name in its final folder
(`.<name>.<random>.partial`), held under an exclusive `flock` while its writer lives. `commit`
fsyncs every file, then renames them into place with the summary last: a summary on disk
means its set is complete, and a predictions file without its summary is the leftover of a
killed run (the next run replaces it). `sweep_stale_temps` removes temporaries whose writer is
gone (the lock is free again after a crash or SIGKILL, whatever became of its pid).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".partial"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class OutputExistsError(FileExistsError):
    """A final output already exists and overwriting was not asked for."""


class AtomicFile:
    """A text file that appears under its final name only on `commit()`; `abort()` removes it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live writer; see sweep_stale_temps
        self.tmp = Path(tmp)
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp creates 0600; finals get the usual mode
        self.handle: IO[str] = os.fdopen(fd, "w", newline="", encoding="utf-8")

    def sync(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def commit(self) -> Path:
        self.sync()
        os.replace(self.tmp, self.path)
        self.handle.close()
        return self.path

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)
        if not self.handle.closed:
            try:
                self.handle.close()
            except OSError:  # e.g. ENOSPC flushing the buffer of a file we are throwing away
                pass


class OutputSet:
    """Several AtomicFiles committed together, the last one (the summary) last."""

    def __init__(self, paths: list[Path]) -> None:
        self.files: list[AtomicFile] = []
        try:
            for path in paths:
                self.files.append(AtomicFile(path))
        except BaseException:
            self.abort()
            raise

    def __getitem__(self, index: int) -> AtomicFile:
        return self.files[index]

    def commit(self) -> None:
        """fsync all, then rename all; if any step fails, no new final file is left behind."""
        done: list[Path] = []
        try:
            for file in self.files:
                file.sync()
            for file in self.files:
                done.append(file.commit())
        except BaseException:
            for path in done:
                path.unlink(missing_ok=True)
            self.abort()
            raise
        try:
            _fsync_dir(self.files[0].path.parent)
        except OSError:  # the renames happened; durability of the folder entry is best effort
            pass

    def abort(self) -> None:
        for file in self.files:
            file.abort()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_stale_temps(folder: Path) -> list[Path]:
    """Remove temporaries left by writers that died (their flock is free); returns them."""
    removed = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        else:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        finally:
            os.close(fd)
    return removed


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Refuse when a complete set exists (its summary, the last path, is there)."""
    if paths[-1].exists() and not overwrite:
        raise OutputExistsError(f"Outputs already exist ({paths[-1]}); pass --overwrite to replace them "
                                "or choose another --out folder.")


def write_json_atomically(payload: dict, path: Path) -> Path:
    out = AtomicFile(path)
    try:
        json.dump(payload, out.handle, indent=2, default=str)
        return out.commit()
    except BaseException:
        out.abort()
        raise


class Terminated(SystemExit):
    """SIGTERM arrived; raised in the main thread so every `finally` cleans up."""


@contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """In the main thread, turn SIGTERM (docker stop, systemd, timeout) into a `Terminated`
    exception, so temporaries are removed and claimed inbox files put back before exiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
