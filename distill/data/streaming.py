"""Images decoded on demand: a split's files read like a (N, S, S, 3) uint8 array, one image at a time.

Real data sets outgrow memory (Stanford Dogs at 256 px is 4 GB decoded, VGGFace2 at 160 px 250 GB), so their
images stay files and are decoded, centre-cropped and resized when a DataLoader worker asks for one.
``DecodedFiles`` is indexable like the in-memory array, and ``ImageArrayDataset`` (``distill.data.views``) serves
either: the augmentation of (seed, view, index) is the same function of the same pixels, so a streamed batch equals
the in-memory one, and the in-memory array itself is ``DecodedFiles`` read once (``materialise``).

The paths are kept in one bytes buffer with offsets (``PathTable``), not a list of Python objects: a list of
millions of ``Path`` objects costs hundreds of MB, and every forked worker would copy the pages its reference
counts touch.

A file that fails to decode (one that passed the listing's header check: its pixel data is cut short or damaged)
raises ``CorruptImageError`` naming it with ``strict=True``. Otherwise it is replaced, deterministically, by the
next file of the split (wrapping around) with the same label that decodes, and its path is written to a
``SkipLog``: a folder of one small text file per process, so files met inside DataLoader workers reach the data
module's ``summary()`` (results.json ``"data"``) in the main process. ``readable_headers`` is the cheap check a
data module runs on its lists before streaming them (the header of each file, nothing decoded).

How a file becomes its square is the data module's: by default ``load_image``'s centre square, resized; a
``decoder`` gives another one, such as ``CentreCrop`` (the face readers' central share of the shorter side) or
a face crop by a box found once. Whatever it is, the in-memory array of a data module is the same decoding of the
same files, so the pixels agree bit for bit.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from distill.data.align import centre_crop
from distill.data.readers.image_files import CorruptImageError, image_size, load_image

__all__ = ["IN_MEMORY_AUTO_BYTES", "CentreCrop", "DecodedFiles", "PathTable", "SkipLog", "decoded_bytes",
           "header_errors", "in_memory_setting", "keep_in_memory", "materialise", "readable_headers"]

log = logging.getLogger(__name__)

# data.in_memory=auto keeps a data set in memory when its decoded images take less than this.
IN_MEMORY_AUTO_BYTES = 512 * 2**20


class PathTable:
    """File paths packed in one UTF-8 buffer with offsets: compact, and cheap to pickle into workers."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        encoded = [os.fsencode(path) for path in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(item) for item in encoded], out=self.offsets[1:])
        self.buffer = b"".join(encoded)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> Path:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return Path(os.fsdecode(self.buffer[start:end]))


class SkipLog:
    """Paths of images replaced while streaming, appended by any process (DataLoader workers included)."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="distill-skipped-"))
        self.owner = os.getpid()  # only the process that made the folder removes it (not a forked worker)

    def add(self, path: str | os.PathLike) -> None:
        with open(self.folder / f"{os.getpid()}.txt", "a", encoding="utf-8") as handle:
            handle.write(f"{path}\n")

    def paths(self) -> list[Path]:
        """Every path logged so far, once each, sorted (the order workers met them in is not reproducible)."""
        found: set[str] = set()
        for file in self.folder.glob("*.txt"):
            found.update(line for line in file.read_text(encoding="utf-8").splitlines() if line)
        return [Path(path) for path in sorted(found)]

    def remove(self) -> None:
        if os.getpid() == self.owner:
            shutil.rmtree(self.folder, ignore_errors=True)


class DecodedFiles:
    """A split's image files, each decoded to a ``size`` x ``size`` RGB uint8 square when indexed.

    ``labels`` (optional) choose a replacement of the same class for a file that does not decode (``strict=False``).
    ``draft``: JPEG draft decoding (``distill.data.readers.image_files.load_image``).
    ``decoder``: ``decoder(path, index)`` gives file ``index``'s square instead of ``load_image``'s centre square
    (``CentreCrop``, a face crop by a box found once...); a picklable object, as DataLoader workers may need it.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], size: int, *, labels: np.ndarray | None = None,
                 strict: bool = True, draft: bool = False, skip_log: SkipLog | None = None,
                 decoder: Callable[[Path, int], np.ndarray] | None = None) -> None:
        if len(paths) == 0:
            raise ValueError("DecodedFiles needs at least one image file")
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(labels)} labels for {len(paths)} image files")
        self.paths = PathTable(paths)
        self.size = int(size)
        self.labels = None if labels is None else np.asarray(labels)
        self.strict = bool(strict)
        self.draft = bool(draft)
        self.skip_log = skip_log
        self.decoder = decoder

    # the array interface ImageArrayDataset checks and reads
    ndim = 4
    dtype = np.dtype(np.uint8)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.paths), self.size, self.size, 3

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if not 0 <= index < len(self.paths):
            raise IndexError(f"image index {index} out of range for {len(self.paths)} files")
        try:
            return self._decode(index)
        except (CorruptImageError, FileNotFoundError):
            if self.strict:
                raise
        return self._replacement(index)

    def _decode(self, index: int) -> np.ndarray:
        if self.decoder is None:
            image = load_image(self.paths[index], self.size, draft=self.draft)
        else:
            image = self.decoder(self.paths[index], index)
            if image.shape != (self.size, self.size, 3) or image.dtype != np.uint8:
                raise ValueError(f"{self.decoder!r} decoded {self.paths[index]} to {image.dtype} {image.shape}, "
                                 f"not a ({self.size}, {self.size}, 3) uint8 square")
        return image if image.flags.writeable else image.copy()  # Pillow's buffer is read-only; torch wants to own

    def _replacement(self, index: int) -> np.ndarray:
        """The next file (wrapping) with the same label that decodes; every failed one is logged."""
        self._skipped(index)
        for step in range(1, len(self.paths)):
            other = (index + step) % len(self.paths)
            if self.labels is not None and self.labels[other] != self.labels[index]:
                continue
            try:
                return self._decode(other)
            except (CorruptImageError, FileNotFoundError):
                self._skipped(other)
        label = "" if self.labels is None else f" with label {self.labels[index]}"
        raise CorruptImageError(f"no image{label} decodes to replace {self.paths[index]}")

    def _skipped(self, index: int) -> None:
        path = self.paths[index]
        log.warning("image %s does not decode (data.strict=false): a replacement is served", path)
        if self.skip_log is not None:
            self.skip_log.add(path)


class CentreCrop:
    """A ``DecodedFiles`` decoder: the whole image (``load_image``), then its central square of side ``fraction`` x
    the shorter side resized to ``size`` (``distill.data.align.centre_crop``), as the face readers decode."""

    def __init__(self, size: int, fraction: float = 1.0) -> None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.size = int(size)
        self.fraction = float(fraction)

    def __call__(self, path: Path, index: int) -> np.ndarray:
        return centre_crop(load_image(path), self.size, self.fraction)

    def __repr__(self) -> str:
        return f"CentreCrop(size={self.size}, fraction={self.fraction})"


def header_errors(paths: Sequence[str | os.PathLike], *,
                  desc: str = "checking images") -> Iterator[tuple[int, CorruptImageError | FileNotFoundError]]:
    """(position, error) of each file whose image header does not read (``image_size``: nothing is decoded), in
    order and lazily, so a strict caller stops at the first: the cheap check of a list before it is decoded or
    streamed. Each data module reports what it yields in its own terms (a CSV line, a skip reason)."""
    for position, path in enumerate(tqdm(paths, desc=desc, unit="image", leave=False, disable=None)):
        try:
            image_size(path)
        except (CorruptImageError, FileNotFoundError) as error:
            yield position, error


def readable_headers(paths: Sequence[str | os.PathLike], *, strict: bool = True,
                     where: Sequence[str] | None = None) -> np.ndarray:
    """Which files' image headers read, as a bool mask. Strict: the first missing or unreadable file raises
    (FileNotFoundError or ``CorruptImageError``) naming it and ``where[i]``, where it was listed; otherwise its
    entry is False."""
    ok = np.ones(len(paths), dtype=bool)
    for i, error in header_errors(paths):
        if strict:
            listed = f" (listed in {where[i]})" if where is not None else ""
            raise type(error)(f"{error}{listed}") from error
        ok[i] = False
    return ok


def materialise(images: Any, what: str = "images") -> np.ndarray:
    """An image source (``DecodedFiles``, shard images) read whole into one (N, S, S, 3) uint8 array."""
    array = np.empty(tuple(images.shape), dtype=np.uint8)
    for index in tqdm(range(len(images)), desc=f"decoding {what}", unit="image", leave=False, disable=None):
        array[index] = images[index]
    return array


def in_memory_setting(value: Any) -> str | bool:
    """``data.in_memory`` as ``"auto"``, True or False; a ValueError naming the key otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[text]
    raise ValueError(f"data.in_memory must be auto, true or false, got {value!r}")


def decoded_bytes(num_images: int, size: int) -> int:
    """What ``num_images`` decoded ``size`` x ``size`` RGB squares take in memory."""
    return int(num_images) * int(size) * int(size) * 3


def keep_in_memory(setting: str | bool, num_images: int, size: int) -> bool:
    """Whether a data set is decoded into memory: as set, or with ``auto`` when it is under IN_MEMORY_AUTO_BYTES."""
    if setting == "auto":
        return decoded_bytes(num_images, size) < IN_MEMORY_AUTO_BYTES
    return bool(setting)
