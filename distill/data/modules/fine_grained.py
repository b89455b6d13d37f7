"""Fine-grained recognition data modules (the dogs recipe): synthetic breeds by default, Stanford Dogs or any
ImageFolder-style data set by option.

- ``SyntheticFineGrainedDataModule``: the breeds of ``distill.data.synthetic.dogs``, balanced by class;
- ``StanfordDogsDataModule``: ``<root>/Images/<wnid>-<breed>/*.jpg`` with the official ``train_list.mat`` /
  ``test_list.mat`` (read by ``distill.data.readers.stanford_dogs``);
- ``ImageFolderDataModule``: ``<root>/<class>/*``.

Real images are decoded once into uint8 arrays (centre square, resized), upright by their EXIF orientation, from
every format Pillow reads for photos (``distill.data.readers.image_files.IMAGE_EXTENSIONS``). A corrupt or unreadable
image is named in the error (``strict=True``) or skipped; skipped files (also the files of a class folder that are
not images, and hidden ones) are logged, one WARNING per reason, and listed by reason in ``summary()["skipped"]``,
which the engine writes to results.json.
The real readers' fingerprints hold their lists and every image used, by size and modification time or by content
(``verify``); the synthetic breeds' hold the generator's source.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from distill.core.fingerprint import files_fingerprint
from distill.data.array_store import source_digest
from distill.data.modules.base import ArrayDataModule, Split
from distill.data.readers.image_files import SKIP_CORRUPT, SKIP_MISSING, IdentityFolder, SkipReport
from distill.data.readers.stanford_dogs import breed_name, decode_images, read_split_list
from distill.data.synthetic import dogs as synthetic_dogs
from distill.data.synthetic.dogs import MAX_CLASSES, breed_names, render_dogs

__all__ = ["ImageFolderDataModule", "StanfordDogsDataModule", "SyntheticFineGrainedDataModule"]

_REPORT_PATHS = 20  # skipped paths listed in summary() per reason

log = logging.getLogger(__name__)


class SyntheticFineGrainedDataModule(ArrayDataModule):
    """Up to 120 dog "breeds"; labelled teacher_train, train (the student's) and test splits, balanced by class.

    ``class_names`` names each breed by its four details, so the most-confused pairs in results.json read as such.
    """

    def __init__(self, num_classes: int = MAX_CLASSES, image_size: int = 32, num_teacher_train: int = 2400,
                 num_train: int = 1200, num_test: int = 1200, **loader_args: Any) -> None:
        super().__init__(**loader_args)
        if not 2 <= int(num_classes) <= MAX_CLASSES:
            raise ValueError(f"data.num_classes must be between 2 and {MAX_CLASSES}, got {num_classes}")
        if int(image_size) < 16:
            raise ValueError(f"data.image_size must be >= 16, got {image_size}")
        self._num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.sizes = {"teacher_train": int(num_teacher_train), "train": int(num_train), "test": int(num_test)}
        for name, count in self.sizes.items():
            if count < 1:
                raise ValueError(f"data.num_{name} must be positive, got {count}")
        self.class_names = breed_names(self._num_classes)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def fingerprint_parts(self) -> dict[str, Any]:
        return {"num_classes": self._num_classes, "image_size": self.image_size, "sizes": self.sizes,
                "seed": self.seed, "generator": source_digest(synthetic_dogs)}

    def build_splits(self) -> dict[str, Split]:
        splits = {}
        for offset, (name, count) in enumerate(self.sizes.items()):
            rng = np.random.default_rng([self.seed, 1000 + offset])
            labels = rng.permutation(np.arange(count) % self._num_classes).astype(np.int64)
            images = render_dogs(labels, self.image_size, seed=self.seed * 10 + offset)
            splits[name] = Split(images, labels)
        return splits

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "classes": self._num_classes, "image_size": self.image_size}


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
        self._skips = SkipReport()
        self._files_key: dict[str, str] | None = None

    def files_parts(self, groups: dict[str, list[Path]]) -> dict[str, Any]:
        """Digests of each group of files (lists, each split's images after the per-class cap), by ``verify``;
        computed once per data module (a run reads its files once)."""
        if self._files_key is None:
            self._files_key = {name: files_fingerprint(paths, self.verify) for name, paths in groups.items()}
        return {"files": self._files_key, "verify": self.verify}

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
        for path in skipped:
            self._skips.add(SKIP_CORRUPT if path.is_file() else SKIP_MISSING, path)
        if len(kept) == 0:
            raise ValueError(f"{type(self).__name__}: every image of the '{name}' split failed to decode "
                             f"(first: {skipped[0]})")
        labels = np.array([samples[i][1] for i in kept], dtype=np.int64)
        return Split(images, labels)

    def setup(self, stage: str | None = None) -> None:
        fresh = self._splits is None
        super().setup(stage)
        if fresh:
            self._skips.log(log, f"{type(self).__name__} (data.root={self.root})")

    def summary(self) -> dict[str, Any]:
        """Split sizes, class count and the skipped files by reason (``{"not an image": [...], "corrupt": [...]}``,
        the first paths of each) with their counts."""
        self.setup()
        return {**super().summary(), "classes": len(self.class_names), "strict": self.strict,
                "skipped": self._skips.as_dict(_REPORT_PATHS), "skipped_counts": self._skips.counts()}


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
        self._entries: dict[str, list[tuple[str, int]]] | None = None

    def entries(self) -> dict[str, list[tuple[str, int]]]:
        """Each split's (path relative to Images/, label) pairs from the official lists (read once)."""
        if self._entries is None:
            self._entries = {name: read_split_list(path) for name, path in self.list_files.items()}
        return self._entries

    def fingerprint_parts(self) -> dict[str, Any]:
        groups = {"lists": list(self.list_files.values())}
        for name, items in self.entries().items():
            groups[name] = [path for path, _ in self._cap([(self.images_dir / rel, label) for rel, label in items])]
        return {"root": str(self.root.resolve()), "lists": {k: str(v) for k, v in self.list_files.items()},
                "image_size": self.image_size, "strict": self.strict, "max_per_class": self.max_per_class,
                **self.files_parts(groups)}

    def build_splits(self) -> dict[str, Split]:
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"Stanford Dogs images folder not found: {self.images_dir}")
        entries = self.entries()
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
        self._samples: tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]] | None = None

    def fingerprint_parts(self) -> dict[str, Any]:
        _, train, test = self.samples()
        groups = {name: [path for path, _ in self._cap(items)] for name, items in (("train", train), ("test", test))}
        return {"root": str(self.root.resolve()), "test_root": str(self.test_root) if self.test_root else None,
                "test_fraction": self.test_fraction, "image_size": self.image_size, "strict": self.strict,
                "max_per_class": self.max_per_class, **self.files_parts(groups)}

    def build_splits(self) -> dict[str, Split]:
        class_names, train, test = self.samples()
        self.class_names = list(class_names)
        return {"train": self._decode_split("train", train), "test": self._decode_split("test", test)}

    def samples(self) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
        """(class names, train (path, label) list, test list) from the folders (listed once)."""
        if self._samples is None:
            self._samples = self._list_samples()
        return self._samples

    def _list_samples(self) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
        folder = IdentityFolder(self.root)
        self._skips.update(folder.skipped)
        if self.test_root is not None:
            test_folder = IdentityFolder(self.test_root)
            self._skips.update(test_folder.skipped)
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
        return list(folder.classes), train, test
