"""Decoded or rendered image arrays kept on disk, so that later runs skip the slow part.

Rendering thousands of synthetic faces, or decoding (and aligning) thousands of photographs, takes minutes;
the data modules keep the resulting arrays in one ``.npz`` under the cache folder, named by a digest of
everything that determines them (settings, the generator's source, or the files' sizes and modification times).
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill.core.fingerprint import file_sha256, files_fingerprint, source_tree_digest
from distill.core.io import atomic_write
from distill.core.paths import default_cache_dir

__all__ = ["config_int", "data_cache_dir", "file_digest", "load_or_build_arrays", "source_digest"]

log = logging.getLogger(__name__)


def data_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """Where built arrays are kept: ``cache_dir``, else $DISTILL_CACHE_DIR, else ~/.cache/distill (as train.py)."""
    return default_cache_dir(cache_dir)


def file_digest(paths: Sequence[Path], mode: str = "stat") -> str:
    """Digest of a file list with each file's size and modification time (or content, ``mode="content"``): any
    change gives a new cache. The same as ``distill.core.fingerprint.files_fingerprint``."""
    return files_fingerprint(paths, mode)


def source_digest(module) -> str:
    """Digest of a generator's source: a changed generator renders different images, so caches must change.

    A module: its file. A package: every ``.py`` file under its folder, in the order of their relative paths
    (``/``-separated), each digested with its path and length, so a change, addition, removal or rename of any part
    gives a new digest.
    """
    path = Path(module.__file__)
    if not hasattr(module, "__path__"):
        return file_sha256(path)[:16]
    return source_tree_digest(path.parent)


def load_or_build_arrays(path: Path | None, build: Callable[[], dict[str, np.ndarray]],
                         what: str = "data") -> dict[str, np.ndarray]:
    """Arrays from the .npz at ``path`` when readable, else ``build()`` (then written to ``path`` atomically).

    An unreadable file (cut short, damaged) is rebuilt with a warning rather than failing the run.
    """
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            log.info("%s: loaded from cache %s", what, path)
            return arrays
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            warnings.warn(f"cached arrays {path} are unreadable ({error}); building them again", RuntimeWarning)
    arrays = build()
    if path is not None:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write(path, write)
    return arrays


def config_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, or a ValueError naming the config key ``data.<name>`` and what was expected."""
    try:
        number = int(value)
        ok = not isinstance(value, bool) and number == value and number >= minimum
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"data.{name} must be an integer >= {minimum}, got {value!r}")
    return number
