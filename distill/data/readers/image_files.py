"""Real images on disk: identity / class folders (VGGFace2, CASIA-WebFace, LFW, ImageFolder layout), listing every
image under a folder, and the one way images are decoded here.

``open_image`` is the loader every reader uses: the file fully decoded, turned upright by its EXIF orientation
(phone photos store their pixels sideways and say so in the EXIF), as RGB (grayscale spread to three channels,
transparency composited over white, 16-bit samples scaled to 8). Every format Pillow decodes for photos is read:
``IMAGE_EXTENSIONS`` (jpg, jpeg, png, webp, bmp, tif, tiff, gif's first frame, the netpbm formats).

A corrupt or truncated file raises ``CorruptImageError`` naming it instead of an anonymous PIL error in a
data-loader worker; ``scan_images`` checks a whole list up front and reports the bad ones. Files a folder reader
leaves out are collected with their reason in a ``SkipReport`` (``"not an image"``, ``"corrupt"``, ...), which the
data modules log (one WARNING line per reason) and put in ``summary()`` (results.json ``"data"``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from distill.core.images import SWAPS_SIDES, orientation, to_rgb, upright

__all__ = ["IMAGE_EXTENSIONS", "REPORT_PATHS", "SKIP_CORRUPT", "SKIP_HIDDEN", "SKIP_MISSING", "SKIP_NOT_IMAGE", "SKIP_OUTSIDE",
           "CorruptImageError", "IdentityFolder", "SkipReport", "image_size", "list_image_files", "load_image",
           "open_image", "scan_images"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif",
                                     ".tiff", ".gif", ".ppm", ".pgm", ".pbm", ".pnm")

# Why a file was left out (the keys of ``SkipReport`` and of summary()["skipped"]).
SKIP_NOT_IMAGE = "not an image"           # an extension that is not an image format (.txt, .json, .heic ...)
SKIP_HIDDEN = "hidden"                    # a dot file or folder (.DS_Store, macOS ._IMG_0001.jpg, .ipynb_checkpoints)
SKIP_OUTSIDE = "outside the class folders"  # an image directly under an identity / class root
SKIP_CORRUPT = "corrupt"                  # an image file that does not decode (data.strict=false)
SKIP_MISSING = "missing"                  # a listed image that is not there (data.strict=false)

_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


REPORT_PATHS = 20  # paths a data module's summary() lists per kind of problem


class CorruptImageError(ValueError):
    """An image file that exists but cannot be fully decoded."""


class SkipReport:
    """Files left out of a data set, by reason (``SKIP_*``), in the order they were met."""

    def __init__(self) -> None:
        self.files: dict[str, list[Path]] = {}

    def add(self, reason: str, path: str | os.PathLike) -> None:
        self.files.setdefault(reason, []).append(Path(path))

    def update(self, other: "SkipReport") -> None:
        for reason, paths in other.files.items():
            for path in paths:
                self.add(reason, path)

    def __len__(self) -> int:
        return sum(len(paths) for paths in self.files.values())

    def counts(self) -> dict[str, int]:
        return {reason: len(paths) for reason, paths in self.files.items()}

    def as_dict(self, limit: int | None = REPORT_PATHS) -> dict[str, list[str]]:
        """{reason: [path, ...]} (the first ``limit`` paths of each reason): what summary() reports."""
        return {reason: [str(path) for path in paths[:limit]] for reason, paths in self.files.items()}

    def summary(self) -> dict[str, Any]:
        """The count, the first paths, and the first paths of each reason: a data module's summary() entry."""
        every = [path for paths in self.files.values() for path in paths]
        return {"count": len(every), "paths": [str(path) for path in every[:REPORT_PATHS]],
                "by_reason": self.as_dict()}

    def log(self, logger: logging.Logger, where: str, names: int = 3) -> None:
        """One WARNING per reason: the count and the first ``names`` files."""
        for reason, paths in self.files.items():
            shown = ", ".join(str(path) for path in paths[:names]) + (", ..." if len(paths) > names else "")
            logger.warning("%s: skipped %d file(s), %s: %s", where, len(paths), reason, shown)


def _extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


class IdentityFolder:
    """One sub-folder per identity under ``root``; ``samples`` is a sorted list of (path, label).

    Classes are the sub-folders holding at least one image, sorted by name, labelled 0..K-1; extensions match
    case-insensitively. What is left out is listed in ``skipped`` (a ``SkipReport``): files that are not images
    (other extensions), hidden files and folders (names starting with a dot: ``.DS_Store``, the ``._IMG_0001.jpg``
    copies macOS leaves on shared drives, ``.ipynb_checkpoints``), and images directly under ``root``.
    """

    def __init__(self, root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"identity folder root not found (or not a directory): {self.root}")
        self.extensions = _extensions(extensions)
        self.skipped = SkipReport()
        per_class: list[tuple[str, list[Path]]] = []
        for entry in sorted(self.root.iterdir()):
            if _hidden(entry):
                self.skipped.add(SKIP_HIDDEN, entry)
            elif entry.is_file():
                self.skipped.add(SKIP_OUTSIDE if entry.suffix.lower() in self.extensions else SKIP_NOT_IMAGE, entry)
            elif entry.is_dir():
                files = []
                for path in sorted(p for p in entry.iterdir() if p.is_file()):
                    if _hidden(path):
                        self.skipped.add(SKIP_HIDDEN, path)
                    elif path.suffix.lower() in self.extensions:
                        files.append(path)
                    else:
                        self.skipped.add(SKIP_NOT_IMAGE, path)
                if files:
                    per_class.append((entry.name, files))
        if not per_class:
            raise ValueError(f"no images with extensions {self.extensions} in identity sub-folders of {self.root}")
        self.classes: list[str] = [name for name, _ in per_class]
        self.class_to_idx: dict[str, int] = {name: i for i, name in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = [(path, label) for label, (_, files) in enumerate(per_class)
                                                for path in files]

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Path, int]:
        return self.samples[index]

    def __repr__(self) -> str:
        return f"IdentityFolder({str(self.root)!r}: {len(self.classes)} identities, {len(self.samples)} images)"


def open_image(path: str | os.PathLike, draft: int | None = None) -> Image.Image:
    """Open and fully decode ``path`` (``Image.open`` alone reads only the header): upright by its EXIF orientation,
    RGB (``distill.core.images.to_rgb``); a multi-frame file (GIF, TIFF) gives its first frame.

    ``draft``: a JPEG is decoded at the smallest of 1/2, 1/4, 1/8 scale whose sides are still >= ``draft`` pixels
    (Pillow's ``draft``: the DCT does the downscaling, several times faster for large photos, slightly different
    pixels); other formats ignore it. Raises FileNotFoundError or ``CorruptImageError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            if draft is not None and img.format == "JPEG":
                img.draft("RGB", (int(draft), int(draft)))
            img.load()
            return to_rgb(upright(img))
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"cannot decode image {path}: {exc}") from exc


def image_size(path: str | os.PathLike) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of the upright image, from the header only (nothing is decoded).

    The orientation is 1 without an EXIF tag; with 5..8 the stored pixels are turned by 90 degrees, so the upright
    width is the stored height. Raises FileNotFoundError or ``CorruptImageError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            width, height = img.size
            turn = orientation(img)
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"cannot decode image {path}: {exc}") from exc
    if turn in SWAPS_SIDES:
        width, height = height, width
    return width, height, turn


def load_image(path: str | os.PathLike, size: int | None = None, draft: bool = False) -> np.ndarray:
    """RGB uint8 (H, W, 3) of ``open_image``; with ``size``, centre-cropped to a square and resized (bilinear).

    ``draft`` (with ``size``): JPEGs decoded at a reduced scale still >= ``size`` (``open_image``), then the same
    crop and resize. Every path that decodes one data set must decode it the same way: the setting changes pixels.
    """
    if size is not None and int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    img = open_image(path, draft=int(size) if draft and size is not None else None)
    if size is not None:
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((int(size), int(size)), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def scan_images(paths: Iterable[str | os.PathLike], strict: bool = True) -> tuple[list[Path], list[Path]]:
    """Check that every image decodes; returns (good, bad).

    ``strict`` raises on the first bad file (``CorruptImageError`` or ``FileNotFoundError`` naming it);
    otherwise bad files are collected so the caller can report how many were skipped.
    """
    good: list[Path] = []
    bad: list[Path] = []
    for p in paths:
        path = Path(p)
        try:
            open_image(path)
        except (CorruptImageError, FileNotFoundError):
            if strict:
                raise
            bad.append(path)
        else:
            good.append(path)
    return good, bad


def list_image_files(root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                     skipped: SkipReport | None = None) -> list[Path]:
    """Every image under ``root`` (any depth), sorted; extensions match case-insensitively.

    Other files, and hidden ones (a dot in front of the name or of a folder on the way), are left out and, when
    ``skipped`` is given, added to it with their reason.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found (or not a directory): {root}")
    wanted = set(_extensions(extensions))
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            reason = SKIP_HIDDEN
        elif path.suffix.lower() in wanted:
            files.append(path)
            continue
        else:
            reason = SKIP_NOT_IMAGE
        if skipped is not None:
            skipped.add(reason, path)
    if not files:
        raise ValueError(f"no images with extensions {sorted(wanted)} under {root}")
    return files
