"""Real images on disk: identity / class folders (VGGFace2, CASIA-WebFace, LFW, ImageFolder layout), listing every
image under a folder, and safe decoding.

A corrupt or truncated file raises ``CorruptImageError`` naming it instead of an anonymous PIL error in a
data-loader worker; ``scan_images`` checks a whole list up front and reports the bad ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "CorruptImageError", "IdentityFolder", "list_image_files", "load_image", "scan_images"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")


class CorruptImageError(ValueError):
    """An image file that exists but cannot be fully decoded."""


class IdentityFolder:
    """One sub-folder per identity under ``root``; ``samples`` is a sorted list of (path, label).

    Classes are the sub-folders holding at least one image, sorted by name, labelled 0..K-1;
    files directly under ``root`` and other extensions are ignored (extensions match case-insensitively).
    """

    def __init__(self, root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"identity folder root not found (or not a directory): {self.root}")
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        per_class: list[tuple[str, list[Path]]] = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in self.extensions)
            if files:
                per_class.append((folder.name, files))
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


def _open_decoded(path: Path) -> Image.Image:
    """Open and fully decode ``path`` (``Image.open`` alone reads only the header)."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"cannot decode image {path}: {exc}") from exc


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """RGB uint8 (size, size, 3): centre-cropped to a square, then resized (bilinear); ``None`` keeps the size."""
    img = _open_decoded(Path(path))
    if size is not None:
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
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
            _open_decoded(path)
        except (CorruptImageError, FileNotFoundError):
            if strict:
                raise
            bad.append(path)
        else:
            good.append(path)
    return good, bad


def list_image_files(root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Every image under ``root`` (any depth), sorted; extensions match case-insensitively."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found (or not a directory): {root}")
    wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
    if not files:
        raise ValueError(f"no images with extensions {sorted(wanted)} under {root}")
    return files
