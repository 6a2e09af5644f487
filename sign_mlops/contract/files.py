"""Files that appear under their final name complete or not at all -- the one way this
project writes an output (scores, reports, models, run records, generated data).

Each is written under a temporary name in its final folder (`.<name>.<random>.partial`), held
under an exclusive `flock` while its writer lives, fsynced and renamed into place on success,
removed on any error. `sweep_stale_temps` removes temporaries whose writer is gone (the lock is
free again after a crash or SIGKILL, whatever became of its pid).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".partial"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """A text file that appears under its final name only on `commit()`; `abort()` removes it."""

    def __init__(self, path: Path, binary: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live writer; see sweep_stale_temps
        self.tmp = Path(tmp)
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp creates 0600; finals get the usual mode
        self.handle: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")

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


@contextmanager
def atomic_output(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """`with atomic_output(path) as handle:` -- the file appears complete when the block ends,
    and not at all when it raises."""
    out = AtomicFile(path, binary)
    try:
        yield out.handle
        out.commit()
    except BaseException:
        out.abort()
        raise


def write_json_atomically(payload: Any, path: Path) -> Path:
    with atomic_output(path) as handle:
        json.dump(payload, handle, indent=2, default=str)
    return Path(path)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_stale_temps(folder: Path) -> list[Path]:
    """Remove temporaries left by writers that died (their flock is free); returns them."""
    removed: list[Path] = []
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
