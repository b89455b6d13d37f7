"""Stanford Dogs in its published layout: the official split lists, breed names, and decoding a list of images.

``<root>/Images/<wnid>-<breed>/*.jpg`` with ``train_list.mat`` / ``test_list.mat`` (MATLAB files: ``file_list``
paths relative to ``Images/``, ``labels`` 1-based). ``file_list`` is read as a cell array of strings (the official
files) or as a char matrix, whose rows MATLAB and ``scipy.io.savemat`` pad with spaces to the longest (stripped).
``decode_images`` turns any list of paths (also an ImageFolder's) into uint8 arrays (centre square, resized, upright
by the EXIF orientation), raising on a corrupt or unreadable image (``strict``) or skipping it and saying which.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from distill.data.readers.image_files import CorruptImageError, load_image

__all__ = ["breed_name", "decode_images", "read_split_list"]


def _cell_text(entry: object) -> str | None:
    """The string of one ``file_list`` cell (a char array, possibly nested in 1x1 cells); None if it holds none."""
    value = np.asarray(entry)
    while value.dtype == object and value.size == 1:
        value = np.asarray(value.ravel()[0])
    if value.dtype.kind != "U" or value.size == 0:
        return None
    if value.dtype.itemsize == 4 and value.size > 1:  # one character per element (chars_as_strings off)
        return "".join(value.ravel().tolist())
    return "".join(str(part) for part in value.ravel())


def _mat_strings(value: object, path: Path, key: str) -> list[str]:
    """Rows of a MATLAB cell array of strings or of a char matrix, without the padding of char matrix rows."""
    array = np.asarray(value)
    if array.dtype.kind == "U" and array.ndim == 2 and array.dtype.itemsize == 4 and array.shape[1] > 1:
        rows = ["".join(row) for row in array.tolist()]  # a char matrix read one character per element
    elif array.dtype.kind == "U":
        rows = [str(row) for row in array.ravel()]  # a char matrix read as one string per row
    elif array.dtype == object:
        rows = []
        for position, entry in enumerate(array.ravel()):
            text = _cell_text(entry)
            if text is None:
                raise ValueError(f"{path}: {key}{{{position + 1}}} is not a string (got {np.asarray(entry).dtype}); "
                                 f"expected a cell array of relative image paths or a char matrix")
            rows.append(text)
    else:
        raise ValueError(f"{path}: {key} must be a cell array of strings or a char matrix, got {array.dtype} "
                         f"{array.shape}")
    rows = [row.rstrip(" \x00") for row in rows]  # char matrix rows are padded to the longest with spaces
    empty = [n + 1 for n, row in enumerate(rows) if not row.strip()]
    if empty:
        raise ValueError(f"{path}: {key} entry {empty[0]} (1-based) is empty")
    return rows


def read_split_list(path: str | os.PathLike) -> list[tuple[str, int]]:
    """(relative path, 0-based label) pairs of an official Stanford Dogs split file (``train_list.mat``)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Stanford Dogs split file not found: {path} (expected the official train_list.mat "
                                f"or test_list.mat next to the Images/ folder)")
    try:
        content = loadmat(str(path))
    except NotImplementedError as error:  # MATLAB v7.3 files are HDF5
        raise ValueError(f"{path}: a MATLAB v7.3 (HDF5) file, which scipy cannot read; save it with "
                         f"save(..., '-v7') ({error})") from error
    except Exception as error:  # a damaged file fails in scipy's reader in many ways (MatReadError, IndexError, ...)
        raise ValueError(f"{path} is not a readable MATLAB file ({type(error).__name__}: {error})") from error
    missing = [key for key in ("file_list", "labels") if key not in content]
    if missing:
        raise ValueError(f"{path}: expected MATLAB fields 'file_list' and 'labels', missing {missing}")
    files = _mat_strings(content["file_list"], path, "file_list")
    raw = np.asarray(content["labels"]).ravel()
    if raw.dtype.kind not in "iuf" or (raw.size and not np.all(np.isfinite(raw) & (raw == np.round(raw)))):
        raise ValueError(f"{path}: labels must be whole numbers (1-based class indices), got {raw.dtype} {raw[:5]}")
    labels = raw.astype(np.int64)
    if len(files) != len(labels):
        raise ValueError(f"{path}: {len(files)} entries in file_list but {len(labels)} labels")
    if labels.size and labels.min() < 1:
        raise ValueError(f"{path}: labels must be 1-based (MATLAB), found {labels.min()}")
    return [(name, int(label) - 1) for name, label in zip(files, labels)]


def breed_name(folder: str) -> str:
    """``n02085620-Chihuahua`` -> ``Chihuahua`` (underscores read as spaces)."""
    name = folder.split("-", 1)[1] if "-" in folder else folder
    return name.replace("_", " ")


def decode_images(paths: Sequence[Path], size: int, strict: bool) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Decode ``paths`` to (N, size, size, 3) uint8; returns (images, kept positions, skipped paths).

    ``strict`` raises on the first missing or corrupt file (the error names it); otherwise such files are skipped.
    """
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    kept: list[int] = []
    skipped: list[Path] = []
    for position, path in enumerate(tqdm(paths, desc="decoding images", unit="image", leave=False, disable=None)):
        try:
            images[len(kept)] = load_image(path, size)
        except (CorruptImageError, FileNotFoundError):
            if strict:
                raise
            skipped.append(Path(path))
            continue
        kept.append(position)
    return images[:len(kept)], np.asarray(kept, dtype=np.int64), skipped
