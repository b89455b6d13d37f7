"""Stanford Dogs in its published layout: the official split lists, breed names, and decoding a list of images.

``<root>/Images/<wnid>-<breed>/*.jpg`` with ``train_list.mat`` / ``test_list.mat`` (MATLAB files: ``file_list``
paths relative to ``Images/``, ``labels`` 1-based). ``decode_images`` turns any list of paths (also an
ImageFolder's) into uint8 arrays (centre square, resized), raising on a corrupt or unreadable image (``strict``)
or skipping it and saying which.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distill.data.readers.image_files import CorruptImageError, load_image

__all__ = ["breed_name", "decode_images", "read_split_list"]


def read_split_list(path: str | os.PathLike) -> list[tuple[str, int]]:
    """(relative path, 0-based label) pairs of an official Stanford Dogs split file (``train_list.mat``)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Stanford Dogs split file not found: {path} (expected the official train_list.mat "
                                f"or test_list.mat next to the Images/ folder)")
    content = loadmat(str(path))
    missing = [key for key in ("file_list", "labels") if key not in content]
    if missing:
        raise ValueError(f"{path}: expected MATLAB fields 'file_list' and 'labels', missing {missing}")
    files = [str(np.asarray(entry).ravel()[0]) for entry in np.asarray(content["file_list"]).ravel()]
    labels = np.asarray(content["labels"]).ravel().astype(np.int64)
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
    for position, path in enumerate(paths):
        try:
            images[len(kept)] = load_image(path, size)
        except (CorruptImageError, FileNotFoundError):
            if strict:
                raise
            skipped.append(Path(path))
            continue
        kept.append(position)
    return images[:len(kept)], np.asarray(kept, dtype=np.int64), skipped
