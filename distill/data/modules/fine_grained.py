"""Fine-grained recognition data modules (the dogs recipe): synthetic breeds by default, Stanford Dogs or any
ImageFolder-style data set by option.

- ``SyntheticFineGrainedDataModule``: the breeds of ``distill.data.synthetic.dogs``, balanced by class;
- ``StanfordDogsDataModule``: ``<root>/Images/<wnid>-<breed>/*.jpg`` with the official ``train_list.mat`` /
  ``test_list.mat`` (read by ``distill.data.readers.stanford_dogs``);
- ``ImageFolderDataModule``: ``<root>/<class>/*``.

Real images are decoded (centre square, resized to ``image_size``), upright by their EXIF orientation, from every
format Pillow reads for photos (``distill.data.readers.image_files.IMAGE_EXTENSIONS``): into memory when the data
set is small (``in_memory``: ``auto`` below ``distill.data.streaming.IN_MEMORY_AUTO_BYTES`` decoded), else one image
at a time in the DataLoader workers (``distill.data.streaming.DecodedFiles``), or read from LitData shards written by
``python -m distill.data.pack`` (``format=litdata``, ``uri``: a folder, or a URL such as ``s3://bucket/pack``
streamed through ``cache_dir``, ``distill.data.shards``). The three give the same batches for the same
(seed, view, index): the in-memory array is the streamed images read once, the shards hold the same pixels.

A corrupt or unreadable image is named in the error (``strict=True``). With ``strict=False`` a file whose header
does not read is left out when the splits are listed, and one whose pixel data fails later is replaced by the next
image of its class that decodes; both are logged and listed by reason in ``summary()["skipped"]`` (with the files of
a class folder that are not images, and hidden ones), which the engine writes to results.json.
The real readers' fingerprints hold their lists and every image used, by size and modification time or by content
(``verify``); packed shards carry the fingerprint of the files they were packed from; the synthetic breeds' hold the
generator's source.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from distill.core.fingerprint import files_fingerprint
from distill.core.labels import unlabelled_count
from distill.core.paths import default_cache_dir
from distill.data.array_store import source_digest
from distill.data.modules.base import ArrayDataModule, Split, teacher_split_parts
from distill.data.readers.image_files import SKIP_CORRUPT, SKIP_MISSING, IdentityFolder, SkipReport
from distill.data.readers.stanford_dogs import breed_name, read_split_list
from distill.data.shards import ShardImages, is_remote, open_pack, read_pack
from distill.data.streaming import (DecodedFiles, SkipLog, header_errors, in_memory_setting, keep_in_memory,
                                    materialise)
from distill.data.synthetic import dogs as synthetic_dogs
from distill.data.synthetic.dogs import MAX_CLASSES, breed_names, render_dogs

__all__ = ["DATA_FORMATS", "ImageFolderDataModule", "StanfordDogsDataModule", "SyntheticFineGrainedDataModule"]

DATA_FORMATS = ("files", "litdata")  # data.format: image files (data.root), or shards (data.uri)

log = logging.getLogger(__name__)


class SyntheticFineGrainedDataModule(ArrayDataModule):
    """Up to 120 dog "breeds"; labelled teacher_train, train (the student's) and test splits, balanced by class.

    ``num_unlabelled`` more breed images join the student's split without their labels (``UNLABELLED``): the
    teacher's soft targets teach on them, the labels' cross-entropy skips them.

    ``class_names`` names each breed by its four details, so the most-confused pairs in results.json read as such.
    """

    def __init__(self, num_classes: int = MAX_CLASSES, image_size: int = 32, num_teacher_train: int = 2400,
                 num_train: int = 1200, num_test: int = 1200, num_unlabelled: int = 0, **loader_args: Any) -> None:
        super().__init__(**loader_args)
        self.num_unlabelled = unlabelled_count(num_unlabelled)
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
                "num_unlabelled": self.num_unlabelled, "seed": self.seed, "generator": source_digest(synthetic_dogs)}

    def teacher_key_parts(self) -> dict[str, Any]:
        """The teacher's split is rendered first from its own stream: the student's and test splits and the
        unlabelled images leave it as it is, so changing them reuses a fitted teacher."""
        return teacher_split_parts(self.key_parts(), drop=("num_unlabelled",))

    def _render_balanced(self, count: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` images balanced over the breeds, shuffled, and their labels; a function of (seed, offset)."""
        rng = np.random.default_rng([self.seed, 1000 + offset])
        labels = rng.permutation(np.arange(count) % self._num_classes).astype(np.int64)
        return render_dogs(labels, self.image_size, seed=self.seed * 10 + offset), labels

    def build_splits(self) -> dict[str, Split]:
        splits = {name: Split(*self._render_balanced(count, offset))
                  for offset, (name, count) in enumerate(self.sizes.items())}
        if self.num_unlabelled:
            # the next offset, so the labelled splits' images stay those of a run without unlabelled ones
            extra, _ = self._render_balanced(self.num_unlabelled, len(self.sizes))
            splits["train"] = splits["train"].with_unlabelled(extra)
        return splits

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "classes": self._num_classes, "image_size": self.image_size,
                "unlabelled": self.num_unlabelled}


class _DecodedFolderDataModule(ArrayDataModule):
    """Shared machinery: each split's (path, label) list (``list_splits``) as decoded images in memory, streamed
    from the files or read from shards; the skip report; the per-class cap."""

    def __init__(self, image_size: int = 96, strict: bool = True, max_per_class: int | None = None,
                 in_memory: str | bool = "auto", format: str = "files", uri: str | os.PathLike | None = None,
                 fast_decode: bool = False, cache_dir: str | os.PathLike | None = None, **loader_args: Any) -> None:
        super().__init__(**loader_args)
        if int(image_size) < 1:
            raise ValueError(f"data.image_size must be positive, got {image_size}")
        if max_per_class is not None and int(max_per_class) < 1:
            raise ValueError(f"data.max_per_class must be positive or null, got {max_per_class}")
        if format not in DATA_FORMATS:
            raise ValueError(f"data.format must be one of {list(DATA_FORMATS)}, got {format!r}")
        if format == "litdata" and not uri:
            raise ValueError("data.format=litdata needs data.uri: the folder python -m distill.data.pack wrote")
        self.image_size = int(image_size)
        self.strict = bool(strict)
        self.max_per_class = None if max_per_class is None else int(max_per_class)
        self.in_memory = in_memory_setting(in_memory)
        self.format = format
        self.uri = None if uri is None else str(uri)
        self.fast_decode = bool(fast_decode)
        self.cache_dir = cache_dir  # where a remote data.uri's pack files and chunks are downloaded
        self.class_names: list[str] = []
        self.kept_in_memory: bool | None = None
        self._skips = SkipReport()
        self._skip_log: SkipLog | None = None
        self._pack: dict[str, Any] | None = None
        self._pack_folder: Path | None = None
        self._files_key: dict[str, str] | None = None

    # --- what a subclass provides -------------------------------------------------------------
    def list_splits(self) -> dict[str, list[tuple[Path, int]]]:
        """Each split's (path, label) list (before the per-class cap); sets ``class_names``."""
        raise NotImplementedError

    def file_parts(self) -> dict[str, Any]:
        """What identifies the files and settings of ``format=files`` (see ``fingerprint_parts``)."""
        raise NotImplementedError

    # --- shared machinery -----------------------------------------------------------------------
    def files_parts(self, groups: dict[str, list[Path]]) -> dict[str, Any]:
        """Digests of each group of files (lists, each split's images after the per-class cap), by ``verify``;
        computed once per data module (a run reads its files once)."""
        if self._files_key is None:
            self._files_key = {name: files_fingerprint(paths, self.verify) for name, paths in groups.items()}
        return {"files": self._files_key, "verify": self.verify}

    def fingerprint_parts(self) -> dict[str, Any]:
        """The files' parts; from shards, the parts of the files they were packed from (the same key, so fitted
        teachers and teacher outputs are shared). JPEG draft decoding changes pixels: in the key when on."""
        if self.format == "litdata":
            return dict(self.pack()["fingerprint_parts"])
        return {**self.file_parts(), **({"fast_decode": True} if self.fast_decode else {})}

    def pack_folder(self) -> Path:
        """The folder with the pack's small files: ``data.uri``, or their copies downloaded from its URL (once)."""
        self.pack()
        assert self._pack_folder is not None
        return self._pack_folder

    def pack(self) -> dict[str, Any]:
        """The ``distill_pack.json`` of ``data.uri`` (read once), checked against this module's settings."""
        if self._pack is None:
            self._pack_folder, self._pack = open_pack(self.uri, default_cache_dir(self.cache_dir), type(self).__name__,
                                                      self.image_size)
        return self._pack

    def pack_splits(self) -> dict[str, Split]:
        """What ``python -m distill.data.pack`` writes: each split as training reads it (streamed)."""
        return {name: self.split(name) for name in self.summary()["splits"]}

    def pack_meta(self) -> dict[str, Any]:
        """What ``distill_pack.json`` records besides the split sizes; asked for after the images are written, so
        it reports the images replaced while packing."""
        summary = self.summary()
        return {"kind": type(self).__name__, "fingerprint_parts": self.fingerprint_parts(),
                "image_size": self.image_size, "class_names": list(self.class_names), "fast_decode": self.fast_decode,
                "strict": self.strict, "skipped": summary["skipped"], "skipped_counts": summary["skipped_counts"]}

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

    def _readable(self, name: str, samples: list[tuple[Path, int]]) -> list[tuple[Path, int]]:
        """The samples whose image header reads (a cheap check: nothing is decoded). Strict: the first bad file
        raises, naming it; otherwise bad files are left out and reported."""
        paths = [path for path, _ in samples]
        bad = set()
        for position, error in header_errors(paths, desc=f"{name}: checking"):
            if self.strict:
                raise error
            self._skips.add(SKIP_CORRUPT if paths[position].is_file() else SKIP_MISSING, paths[position])
            bad.add(position)
        kept = [sample for position, sample in enumerate(samples) if position not in bad]
        if not kept:
            raise ValueError(f"{type(self).__name__}: every image of the '{name}' split failed to decode "
                             f"(first: {samples[0][0]})")
        return kept

    def build_splits(self) -> dict[str, Split]:
        if self.format == "litdata":
            return self._shard_splits()
        listed = {name: self._cap(items) for name, items in self.list_splits().items()}
        for name, items in listed.items():
            if not items:
                raise ValueError(f"{type(self).__name__}: the '{name}' split has no images")
        total = sum(len(items) for items in listed.values())
        self.kept_in_memory = keep_in_memory(self.in_memory, total, self.image_size)
        if self.kept_in_memory and self.strict:
            checked = listed  # decoding everything now names the first bad file
        else:  # streamed, or bad files left out: the same files in memory and streamed
            checked = {name: self._readable(name, items) for name, items in listed.items()}
        self._skip_log = SkipLog()
        weakref.finalize(self, self._skip_log.remove)
        splits = {}
        for name, items in checked.items():
            labels = np.array([label for _, label in items], dtype=np.int64)
            images = DecodedFiles([path for path, _ in items], self.image_size, labels=labels, strict=self.strict,
                                  draft=self.fast_decode, skip_log=self._skip_log)
            splits[name] = Split(materialise(images, f"{name} images") if self.kept_in_memory else images, labels)
        return splits

    def _shard_splits(self) -> dict[str, Split]:
        meta = self.pack()
        folder = self.pack_folder()
        _, targets = read_pack(folder)
        self.class_names = list(meta.get("class_names", []))
        sizes = {name: int(count) for name, count in meta["splits"].items()}
        self.kept_in_memory = keep_in_memory(self.in_memory, sum(sizes.values()), self.image_size)
        splits = {}
        for name, count in sizes.items():
            images = ShardImages(folder, name, self.image_size, count,
                                 url=self.uri.rstrip("/") if is_remote(self.uri) else None)
            splits[name] = Split(materialise(images, f"{name} images") if self.kept_in_memory else images,
                                 targets.get(name))
        return splits

    def skip_report(self) -> SkipReport:
        """Files left out when listing, and images replaced while decoding (also in DataLoader workers)."""
        report = SkipReport()
        report.update(self._skips)
        if self._skip_log is not None:
            for path in self._skip_log.paths():
                report.add(SKIP_CORRUPT, path)
        return report

    def setup(self, stage: str | None = None) -> None:
        fresh = self._splits is None
        super().setup(stage)
        if fresh and self.format == "files":  # shards: reported when they were packed, and in summary()
            self.skip_report().log(log, f"{type(self).__name__} (data.root={self.root})")

    def summary(self) -> dict[str, Any]:
        """Split sizes, class count, where the images come from, and the skipped files by reason
        (``{"not an image": [...], "corrupt": [...]}``, the first paths of each) with their counts; from shards,
        those of the files they were packed from."""
        self.setup()
        if self.format == "litdata":
            skipped, counts = self.pack().get("skipped", {}), dict(self.pack().get("skipped_counts", {}))
        else:
            report = self.skip_report()
            skipped, counts = report.as_dict(), report.counts()
        return {**super().summary(), "classes": len(self.class_names), "strict": self.strict,
                "format": self.format, "in_memory": self.kept_in_memory, "skipped": skipped,
                "skipped_counts": counts}


class StanfordDogsDataModule(_DecodedFolderDataModule):
    """Stanford Dogs (120 breeds): the official train list fits the teacher and trains the student; test scores both."""

    def __init__(self, root: str | os.PathLike | None = None, images_dir: str = "Images",
                 train_list: str = "train_list.mat", test_list: str = "test_list.mat", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if root is None and self.format == "files":
            raise ValueError("data.root is required: the Stanford Dogs folder holding Images/, train_list.mat "
                             "and test_list.mat (python -m distill recipe=dogs data=stanford_dogs data.root=...)")
        self.root = Path(root if root is not None else ".").expanduser()
        if self.format == "files" and not self.root.is_dir():
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

    def file_parts(self) -> dict[str, Any]:
        groups = {"lists": list(self.list_files.values())}
        for name, items in self.entries().items():
            groups[name] = [path for path, _ in self._cap([(self.images_dir / rel, label) for rel, label in items])]
        return {"root": str(self.root.resolve()), "lists": {k: str(v) for k, v in self.list_files.items()},
                "image_size": self.image_size, "strict": self.strict, "max_per_class": self.max_per_class,
                **self.files_parts(groups)}

    def list_splits(self) -> dict[str, list[tuple[Path, int]]]:
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
        return {name: [(self.images_dir / rel, label) for rel, label in items] for name, items in entries.items()}


class ImageFolderDataModule(_DecodedFolderDataModule):
    """``<root>/<class>/<image>`` (classes sorted by folder name). Test data: ``test_root`` with the same class
    folders, or else a ``test_fraction`` of each class's images (every k-th file, deterministic)."""

    def __init__(self, root: str | os.PathLike | None = None, test_root: str | os.PathLike | None = None,
                 test_fraction: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if root is None and self.format == "files":
            raise ValueError("data.root is required: a folder with one sub-folder of images per class")
        if test_root is None and not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"data.test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
        self.root = Path(root if root is not None else ".").expanduser()
        self.test_root = None if test_root is None else Path(test_root).expanduser()
        self.test_fraction = float(test_fraction)
        self._samples: tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]] | None = None

    def file_parts(self) -> dict[str, Any]:
        _, train, test = self.samples()
        groups = {name: [path for path, _ in self._cap(items)] for name, items in (("train", train), ("test", test))}
        return {"root": str(self.root.resolve()), "test_root": str(self.test_root) if self.test_root else None,
                "test_fraction": self.test_fraction, "image_size": self.image_size, "strict": self.strict,
                "max_per_class": self.max_per_class, **self.files_parts(groups)}

    def list_splits(self) -> dict[str, list[tuple[Path, int]]]:
        class_names, train, test = self.samples()
        self.class_names = list(class_names)
        return {"train": train, "test": test}

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
