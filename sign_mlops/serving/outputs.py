"""A scored file's outputs become final together or not at all.

Each output is an `AtomicFile` (sign_mlops.contract.files). `OutputSet.commit` fsyncs every
file, then renames them into place with the summary last: a summary on disk means its set is
complete, and a predictions file without its summary is the leftover of a killed run (the next
run replaces it).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sign_mlops.contract.files import AtomicFile, fsync_dir


class OutputExistsError(FileExistsError):
    """A final output already exists and overwriting was not asked for."""


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
            fsync_dir(self.files[0].path.parent)
        except OSError:  # the renames happened; durability of the folder entry is best effort
            pass

    def abort(self) -> None:
        for file in self.files:
            file.abort()


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Refuse when a complete set exists (its summary, the last path, is there)."""
    if paths[-1].exists() and not overwrite:
        raise OutputExistsError(f"Outputs already exist ({paths[-1]}); pass --overwrite to replace them "
                                "or choose another --out folder.")


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
