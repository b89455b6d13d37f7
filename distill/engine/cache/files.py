"""File-system helpers of the cache: durable writes (fsync of files and directories) and removal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["fsync_dir", "fsync_file", "remove"]


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (new files, renames); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Delete a file, link or directory tree if it exists; errors inside a tree are ignored."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
