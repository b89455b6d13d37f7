"""Real fine-grained data: Stanford Dogs in its published layout, and any ImageFolder-style data set.

Stanford Dogs: ``<root>/Images/<wnid>-<breed>/*.jpg`` with the official ``train_list.mat`` / ``test_list.mat``
(MATLAB files: ``file_list`` paths relative to ``Images/``, ``labels`` 1-based). ImageFolder: ``<root>/<class>/*``.
Images are decoded once into uint8 arrays (centre square, resized). A corrupt or unreadable image is named in the
error (``strict=True``) or skipped, counted and listed in ``summary()``, which the engine writes to results.json.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill.data.datamodule import ArrayDataModule, Split
from distill.data.image_files import CorruptImageError, IdentityFolder, load_image

__all__ = ["ImageFolderDataModule", "StanfordDogsDataModule", "breed_name", "decode_images", "read_split_list"]

_REPORT_PATHS = 20  # skipped paths listed in summary()


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


class _DecodedFolderDataModule(ArrayDataModule):
    """Shared machinery: decode each split's (path, label) list, keep the skip report, cap images per class."""

    def __init__(self, image_size: int = 96, strict: bool = True, max_per_class: int | None = None,
                 **loader_args: Any) -> None:
        super().__init__(**loader_args)
        if int(image_size) < 1:
            raise ValueError(f"data.image_size must be positive, got {image_size}")
        if max_per_class is not None and int(max_per_class) < 1:
            raise ValueError(f"data.max_per_class must be positive or null, got {max_per_class}")
        self.image_size = int(image_size)
        self.strict = bool(strict)
        self.max_per_class = None if max_per_class is None else int(max_per_class)
        self.class_names: list[str] = []
        self._skipped: dict[str, list[Path]] = {}

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.class_names)

    def _cap(self, samples: list[tuple[Path, int]]) -> list[tuple[Path, int]]:
        if self.max_per_class is None:
            return samples
        counts: dict[int, int] = {}
        capped = []
        for path, label in samples:
            if counts.get(label, 0) < self.max_per_class:
                counts[label] = counts.get(label, 0) + 1
                capped.append((path, label))
        return capped

    def _decode_split(self, name: str, samples: list[tuple[Path, int]]) -> Split:
        samples = self._cap(samples)
        if not samples:
            raise ValueError(f"{type(self).__name__}: the '{name}' split has no images")
        images, kept, skipped = decode_images([path for path, _ in samples], self.image_size, self.strict)
        self._skipped[name] = skipped
        if len(kept) == 0:
            raise ValueError(f"{type(self).__name__}: every image of the '{name}' split failed to decode "
                             f"(first: {skipped[0]})")
        labels = np.array([samples[i][1] for i in kept], dtype=np.int64)
        return Split(images, labels)

    def summary(self) -> dict[str, Any]:
        """Split sizes, class count and the skipped (corrupt or unreadable) images."""
        self.setup()
        skipped = [path for paths in self._skipped.values() for path in paths]
        return {**super().summary(), "classes": len(self.class_names), "strict": self.strict,
                "skipped": len(skipped), "skipped_files": [str(path) for path in skipped[:_REPORT_PATHS]]}


class StanfordDogsDataModule(_DecodedFolderDataModule):
    """Stanford Dogs (120 breeds): the official train list fits the teacher and trains the student; test scores both."""

    def __init__(self, root: str | os.PathLike | None = None, images_dir: str = "Images",
                 train_list: str = "train_list.mat", test_list: str = "test_list.mat", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if root is None:
            raise ValueError("data.root is required: the Stanford Dogs folder holding Images/, train_list.mat "
                             "and test_list.mat (python -m distill recipe=dogs data=stanford_dogs data.root=...)")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root={self.root} is not a folder (expected Stanford Dogs' Images/, "
                                    f"train_list.mat and test_list.mat inside)")
        self.images_dir = self.root / images_dir
        self.list_files = {"train": self.root / train_list, "test": self.root / test_list}

    def fingerprint_parts(self) -> dict[str, Any]:
        return {"root": str(self.root.resolve()), "lists": {k: str(v) for k, v in self.list_files.items()},
                "image_size": self.image_size, "strict": self.strict, "max_per_class": self.max_per_class}

    def build_splits(self) -> dict[str, Split]:
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"Stanford Dogs images folder not found: {self.images_dir}")
        entries = {name: read_split_list(path) for name, path in self.list_files.items()}
        folders: dict[int, str] = {}
        for name, items in entries.items():
            for relative, label in items:
                folder = Path(relative).parts[0]
                if folders.setdefault(label, folder) != folder:
                    raise ValueError(f"{self.list_files[name]}: label {label + 1} names two folders, "
                                     f"{folders[label]} and {folder}")
        num_classes = max(folders) + 1
        self.class_names = [breed_name(folders[label]) if label in folders else f"class {label}"
                            for label in range(num_classes)]
        return {name: self._decode_split(name, [(self.images_dir / rel, label) for rel, label in items])
                for name, items in entries.items()}


class ImageFolderDataModule(_DecodedFolderDataModule):
    """``<root>/<class>/<image>`` (classes sorted by folder name). Test data: ``test_root`` with the same class
    folders, or else a ``test_fraction`` of each class's images (every k-th file, deterministic)."""

    def __init__(self, root: str | os.PathLike | None = None, test_root: str | os.PathLike | None = None,
                 test_fraction: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if root is None:
            raise ValueError("data.root is required: a folder with one sub-folder of images per class")
        if test_root is None and not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"data.test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
        self.root = Path(root).expanduser()
        self.test_root = None if test_root is None else Path(test_root).expanduser()
        self.test_fraction = float(test_fraction)

    def fingerprint_parts(self) -> dict[str, Any]:
        return {"root": str(self.root.resolve()), "test_root": str(self.test_root) if self.test_root else None,
                "test_fraction": self.test_fraction, "image_size": self.image_size, "strict": self.strict,
                "max_per_class": self.max_per_class}

    def build_splits(self) -> dict[str, Split]:
        folder = IdentityFolder(self.root)
        self.class_names = list(folder.classes)
        if self.test_root is not None:
            test_folder = IdentityFolder(self.test_root)
            unknown = sorted(set(test_folder.classes) - set(folder.classes))
            if unknown:
                raise ValueError(f"data.test_root={self.test_root} has class folders not in data.root: {unknown[:5]}")
            train = list(folder.samples)
            test = [(path, folder.class_to_idx[test_folder.classes[label]]) for path, label in test_folder.samples]
        else:
            every = max(2, round(1.0 / self.test_fraction))
            train, test = [], []
            position: dict[int, int] = {}
            for path, label in folder.samples:
                index = position.get(label, 0)
                position[label] = index + 1
                (test if index % every == every - 1 else train).append((path, label))
        return {"train": self._decode_split("train", train), "test": self._decode_split("test", test)}
