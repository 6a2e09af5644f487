"""Atomic output files: write under a temporary name in the same folder, rename when complete."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO


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
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".partial")
        self.tmp = Path(tmp)
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp creates 0600; finals get the usual mode
        self.handle: IO[str] = os.fdopen(fd, "w", newline="", encoding="utf-8")

    def commit(self) -> Path:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self.handle.closed:
            self.handle.close()
        self.tmp.unlink(missing_ok=True)


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"Outputs already exist: {existing}; pass --overwrite to replace them "
                                "or choose another --out folder.")


def write_json_atomically(payload: dict, path: Path) -> Path:
    out = AtomicFile(path)
    try:
        json.dump(payload, out.handle, indent=2, default=str)
        return out.commit()
    except BaseException:
        out.abort()
        raise
