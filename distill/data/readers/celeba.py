"""CelebA's published lists, and decoding listed face images to centre crops.

``list_attr_celeba.txt``: line 1 the image count, line 2 the 40 attribute names, then ``<file> <-1|1 ...>`` per
image. ``list_eval_partition.txt``: ``<file> <0|1|2>`` per image (train, valid, test). Errors name the file and
the line, also for a file that is not UTF-8. ``decode_images`` decodes listed images (CelebA's, or any folder's)
to square centre crops, naming where a bad file was listed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from distill.data.align import centre_crop
from distill.data.readers.image_files import CorruptImageError, load_image
from distill.data.readers.text import read_utf8

__all__ = ["CELEBA_PARTITIONS", "CelebAAttributes", "decode_images", "read_celeba_attributes", "read_celeba_partition"]

CELEBA_PARTITIONS: dict[str, int] = {"train": 0, "valid": 1, "test": 2}  # list_eval_partition.txt's codes


@dataclass(eq=False)
class CelebAAttributes:
    """``list_attr_celeba.txt``: attribute names, files, labels (N, K) uint8 0/1, and each row's line number."""

    names: tuple[str, ...]
    files: list[str]
    labels: np.ndarray
    lines: list[int]

    def __len__(self) -> int:
        return len(self.files)


def read_celeba_attributes(path: str | os.PathLike) -> CelebAAttributes:
    """Parse CelebA's attribute list: line 1 the image count, line 2 the attribute names, then one row per
    image, ``<file> <one value per attribute, -1 or 1>``. Errors name the file and the line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CelebA attribute list not found: {path}")
    lines = read_utf8(path, "CelebA attribute list").split("\n")
    if lines[-1] == "":  # the final newline
        lines.pop()
    if len(lines) < 2:
        raise ValueError(f"{path}: expected the image count on line 1 and the attribute names on line 2, "
                         f"got {len(lines)} line(s)")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise ValueError(f"{path} line 1: expected the number of images, got {lines[0].strip()[:60]!r}") from None
    names = tuple(lines[1].split())
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{path} line 2: expected distinct attribute names, got {lines[1].strip()[:120]!r}")
    files: list[str] = []
    rows: list[list[int]] = []
    numbers: list[int] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise ValueError(f"{path} line {number}: expected a file name and {len(names)} values (-1 or 1), "
                             f"got {len(fields) - 1} value(s)")
        name = fields[0]
        if name in seen:
            raise ValueError(f"{path} line {number}: {name} is listed twice (first on line {seen[name]})")
        try:
            values = [int(v) for v in fields[1:]]
        except ValueError:
            values = []
        if len(values) != len(names) or any(v not in (-1, 1) for v in values):
            bad = next((v for v in fields[1:] if v not in ("-1", "1")), "?")
            raise ValueError(f"{path} line {number}: attribute values must be -1 or 1, got {bad!r}")
        seen[name] = number
        files.append(name)
        rows.append(values)
        numbers.append(number)
    if len(files) != count:
        raise ValueError(f"{path}: line 1 announces {count} images but {len(files)} rows follow")
    labels = (np.array(rows, dtype=np.int8).reshape(len(files), len(names)) > 0).astype(np.uint8)
    return CelebAAttributes(names=names, files=files, labels=labels, lines=numbers)


def read_celeba_partition(path: str | os.PathLike) -> dict[str, int]:
    """Parse ``list_eval_partition.txt`` (``<file> <0|1|2>`` per line: train, valid, test) into {file: code}."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CelebA partition list not found: {path}")
    partition: dict[str, int] = {}
    for number, line in enumerate(read_utf8(path, "CelebA partition list").split("\n"), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ValueError(f"{path} line {number}: expected '<file> <0|1|2>', got {line.strip()[:80]!r}")
        if fields[0] in partition:
            raise ValueError(f"{path} line {number}: {fields[0]} is listed twice")
        partition[fields[0]] = int(fields[1])
    if not partition:
        raise ValueError(f"{path}: no '<file> <0|1|2>' rows")
    return partition


def decode_images(paths: Sequence[Path], size: int, *, crop_fraction: float = 1.0, strict: bool = True,
                  origins: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``paths`` to (size, size) centre crops; returns (images uint8 (M, size, size, 3), kept indices).

    ``strict`` raises on a missing or undecodable file, naming it and ``origins[i]`` (where it was listed);
    otherwise such files are skipped and left out of the kept indices.
    """
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    kept: list[int] = []
    for i, path in enumerate(tqdm(paths, desc="decoding images", unit="image", leave=False, disable=None)):
        try:
            image = load_image(path)
        except (FileNotFoundError, CorruptImageError) as error:
            if strict:
                where = f" (listed in {origins[i]})" if origins is not None else ""
                raise type(error)(f"{error}{where}") from error
            continue
        images[len(kept)] = centre_crop(image, size, crop_fraction)
        kept.append(i)
    return images[: len(kept)], np.array(kept, dtype=np.int64)
