"""CelebA for the face_attributes recipe (``data=celeba``): its published layout, lists and partitions.

The same three splits as the synthetic faces (``distill.data.modules.attributes``), with CelebA's 40 attributes as
targets. Its lists are read by ``distill.data.readers.celeba``. The decoded photos are kept on disk under
``<cache dir>/faces/``, keyed by the file list; they (and an ``unlabeled_root`` folder's) stream instead when they
are too many to hold decoded (``in_memory``: ``auto`` below ``distill.data.streaming.IN_MEMORY_AUTO_BYTES``): each
is decoded and cropped in the DataLoader workers (``distill.data.streaming.DecodedFiles``) to the pixels the
in-memory array holds.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill.core.fingerprint import files_fingerprint, fingerprint
from distill.data.array_store import config_int, load_or_build_arrays
from distill.data.modules.attributes import AttributeDataModule
from distill.data.modules.base import Split
from distill.data.readers.celeba import (CELEBA_PARTITIONS, decode_images, read_celeba_attributes,
                                         read_celeba_partition)
from distill.data.readers.image_files import REPORT_PATHS, SKIP_CORRUPT, SkipReport
from distill.data.streaming import (CentreCrop, DecodedFiles, SkipLog, in_memory_setting, keep_in_memory,
                                    readable_headers)

__all__ = ["CelebADataModule"]

log = logging.getLogger(__name__)


def _partition_codes(name: str, value: Any) -> tuple[int, ...]:
    names = [value] if isinstance(value, str) else list(value or [])
    unknown = [n for n in names if n not in CELEBA_PARTITIONS]
    if not names or unknown:
        raise ValueError(f"data.{name} must name partitions among {list(CELEBA_PARTITIONS)}, got {value!r}")
    return tuple(sorted({CELEBA_PARTITIONS[n] for n in names}))


class CelebADataModule(AttributeDataModule):
    """CelebA in its published layout under ``root``: ``img_align_celeba/*.jpg``, ``list_attr_celeba.txt``
    and ``list_eval_partition.txt``.

    ``teacher_partitions`` (default train) fit the teacher; ``student_partitions`` (default train) are the
    student's images, served without labels, plus any ``unlabeled_root`` folder; ``test_partitions`` (default
    test) score both. ``max_per_split`` keeps the first N images of each split (file order). Images are
    centre-cropped (``crop_fraction`` of the shorter side) and resized to ``image_size``: ``in_memory=true`` decodes
    them once and keeps the arrays on disk for later runs; ``false`` decodes each in the DataLoader workers when a
    batch needs it (the same pixels, the same key); ``auto`` keeps them in memory below
    ``distill.data.streaming.IN_MEMORY_AUTO_BYTES`` decoded.

    A missing or unreadable image is an error naming it and its line (``strict``); otherwise it is skipped and
    reported. Streamed, an image whose header reads but whose pixels do not is only met in a worker: it is then
    replaced by the next image of its split that decodes (its attributes stay the replaced image's), and reported.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        images_dir: str = "img_align_celeba",
        attributes_file: str = "list_attr_celeba.txt",
        partition_file: str = "list_eval_partition.txt",
        teacher_partitions: Sequence[str] | str = ("train",),
        student_partitions: Sequence[str] | str = ("train",),
        test_partitions: Sequence[str] | str = ("test",),
        max_per_split: int | None = None,
        image_size: int = 96,
        crop_fraction: float = 1.0,
        student_labels: bool = False,
        unlabeled_root: str | os.PathLike | None = None,
        strict: bool = True,
        in_memory: str | bool = "auto",
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        **loader_args: Any,
    ) -> None:
        super().__init__(image_size=image_size, student_labels=student_labels, unlabeled_root=unlabeled_root,
                         crop_fraction=crop_fraction, strict=strict, cache_dir=cache_dir, use_cache=use_cache,
                         **loader_args)
        self.in_memory = in_memory_setting(in_memory)
        self.kept_in_memory: bool | None = None
        self._skip_log: SkipLog | None = None  # streamed: images replaced in the workers
        if not root:
            raise ValueError("data.root is not set: give the CelebA folder holding img_align_celeba/, "
                             "list_attr_celeba.txt and list_eval_partition.txt (data.root=/path/to/celeba)")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"CelebA folder not found (or not a directory): {self.root} (data.root)")
        self.images_dir = self.root / images_dir
        self.attributes_file = self.root / attributes_file
        self.partition_file = self.root / partition_file
        self.partitions = {"teacher_train": _partition_codes("teacher_partitions", teacher_partitions),
                           "train": _partition_codes("student_partitions", student_partitions),
                           "test": _partition_codes("test_partitions", test_partitions)}
        overlap = set(self.partitions["test"]) & (set(self.partitions["teacher_train"]) | set(self.partitions["train"]))
        if overlap:
            names = [n for n, c in CELEBA_PARTITIONS.items() if c in overlap]
            raise ValueError(f"data.test_partitions share {names} with the training partitions: the test images "
                             f"must be held out")
        self.max_per_split = None if max_per_split is None else config_int("max_per_split", max_per_split, 1)
        self._listing: dict[str, Any] | None = None
        self._decode_key: str | None = None

    def _test_size_keys(self) -> str:
        return "data.max_per_split, null for all; or data.test_partitions"

    def listing(self) -> dict[str, Any]:
        """Parsed lists (read once): attributes, and each split's row indices into them."""
        if self._listing is not None:
            return self._listing
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"CelebA image folder not found: {self.images_dir}")
        table = read_celeba_attributes(self.attributes_file)
        partition = read_celeba_partition(self.partition_file)
        missing = [i for i, name in enumerate(table.files) if name not in partition]
        if missing:
            first = missing[0]
            raise ValueError(f"{self.attributes_file} line {table.lines[first]}: {table.files[first]} has no "
                             f"partition in {self.partition_file} ({len(missing)} such image(s))")
        codes = np.array([partition[name] for name in table.files])
        rows = {}
        for split, wanted in self.partitions.items():
            index = np.flatnonzero(np.isin(codes, wanted))
            if self.max_per_split is not None:
                index = index[: self.max_per_split]
            if len(index) == 0:
                raise ValueError(f"{self.partition_file}: no image in partition(s) {wanted} for split '{split}'")
            rows[split] = index
        self._listing = {"table": table, "rows": rows}
        return self._listing

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.listing()["table"].names

    def _needed_rows(self) -> np.ndarray:
        return np.unique(np.concatenate(list(self.listing()["rows"].values())))

    def _decode_parts(self) -> dict[str, Any]:
        """What determines the decoded CelebA arrays: the lists, the images used, the preprocessing."""
        if self._decode_key is None:
            table = self.listing()["table"]
            paths = [self.images_dir / table.files[i] for i in self._needed_rows()]
            self._decode_key = fingerprint(
                lists=files_fingerprint([self.attributes_file, self.partition_file], self.verify),
                images=files_fingerprint(paths, self.verify), partitions=self.partitions,
                max_per_split=self.max_per_split, image_size=self.image_size, crop_fraction=self.crop_fraction,
                strict=self.strict)
        return {"celeba": self._decode_key}

    def fingerprint_parts(self) -> dict[str, Any]:
        return {**self._decode_parts(), "unlabeled": self._unlabeled_parts(), "verify": self.verify}

    def _listed(self) -> tuple[np.ndarray, list[Path], list[str]]:
        """The rows every split needs, their image paths and where each is listed; strict: a missing one raises."""
        table = self.listing()["table"]
        rows = self._needed_rows()
        paths = [self.images_dir / table.files[i] for i in rows]
        origins = [f"{self.attributes_file} line {table.lines[i]}" for i in rows]
        if self.strict:
            absent = [n for n, path in enumerate(paths) if not path.is_file()]
            if absent:
                raise FileNotFoundError(f"CelebA image not found: {paths[absent[0]]} (listed in {origins[absent[0]]}); "
                                        f"{len(absent)} listed image(s) are missing")
        return rows, paths, origins

    def _decode(self) -> dict[str, np.ndarray]:
        rows, paths, origins = self._listed()
        log.info("Attribute data: decoding %d CelebA images to %d px (kept on disk for later runs)", len(paths),
                 self.image_size)
        images, kept = decode_images(paths, self.image_size, crop_fraction=self.crop_fraction, strict=self.strict,
                                     origins=origins)
        return {"rows": rows[kept], "images": images, "skipped": rows[np.setdiff1d(np.arange(len(rows)), kept)]}

    def build_splits(self) -> dict[str, Split]:
        total = len(self._needed_rows()) + len(self.unlabeled_files())
        self.kept_in_memory = keep_in_memory(self.in_memory, total, self.image_size)
        if not self.kept_in_memory:
            return self._streamed_splits()
        arrays = load_or_build_arrays(self._cache_file("celeba", self._decode_parts()["celeba"]), self._decode,
                                      "Attribute data")
        table = self.listing()["table"]
        position = {int(row): n for n, row in enumerate(arrays["rows"])}
        if len(arrays["skipped"]):
            self._report["skipped"] = {"count": int(len(arrays["skipped"])),
                                       "paths": [str(self.images_dir / table.files[i])
                                                 for i in arrays["skipped"][:REPORT_PATHS]]}

        def take(split: str) -> tuple[np.ndarray, np.ndarray]:
            rows = [int(r) for r in self.listing()["rows"][split] if int(r) in position]
            at = np.array([position[r] for r in rows], dtype=np.int64)
            if len(at) and at[-1] - at[0] == len(at) - 1:  # a partition is a block of rows: share, don't copy
                return arrays["images"][at[0]:at[-1] + 1], table.labels[rows]
            return arrays["images"][at], table.labels[rows]

        student_images, student_labels = take("train")
        return {"teacher_train": Split(*take("teacher_train")),
                "train": self._student_split(student_images, student_labels),
                "test": Split(*take("test"))}

    def _streamed_splits(self) -> dict[str, Split]:
        """Each split's files as ``DecodedFiles`` (decoded and cropped in the workers); the headers are checked now."""
        table = self.listing()["table"]
        rows, paths, origins = self._listed()
        ok = readable_headers(paths, strict=self.strict, where=origins)
        if not ok.all():
            bad = [str(paths[i]) for i in np.flatnonzero(~ok)]
            log.warning("Attribute data: skipped %d missing or unreadable CelebA image(s) (data.strict=false), e.g. %s",
                        len(bad), bad[0])
            self._report["skipped"] = {"count": len(bad), "paths": bad[:REPORT_PATHS]}
        usable = {int(row) for row in rows[ok]}
        self._skip_log = SkipLog()
        weakref.finalize(self, self._skip_log.remove)

        def files(split: str, extra: Sequence[Path] = ()) -> Split:
            kept = [int(row) for row in self.listing()["rows"][split] if int(row) in usable]
            listed = [self.images_dir / table.files[row] for row in kept] + list(extra)
            if not listed:
                raise ValueError(f"Attribute data: no image of split '{split}' can be read (data.strict=false)")
            images = DecodedFiles(listed, self.image_size, strict=self.strict, skip_log=self._skip_log,
                                  decoder=CentreCrop(self.image_size, self.crop_fraction))
            return Split(images, table.labels[kept])

        extra = self._unlabeled_streamed() if self.unlabeled_root is not None else []
        if self.unlabeled_root is not None:
            self._report["unlabeled_images"] = len(extra)
        student = files("train", extra)
        return {"teacher_train": files("teacher_train"),
                "train": Split(student.images, student.targets if self.student_labels else None),
                "test": files("test")}

    def summary(self) -> dict[str, Any]:
        """As for every attribute data set, with whether the images are in memory; streamed, the images replaced in
        the workers so far are counted with the skipped ones (``skipped``, ``unlabeled_skipped``)."""
        summary = {**super().summary(), "in_memory": self.kept_in_memory}
        replaced = self._skip_log.paths() if self._skip_log is not None else []
        unlabeled = {str(path) for path in self.unlabeled_files()}
        celeba = [str(path) for path in replaced if str(path) not in unlabeled]
        if celeba:
            before = summary.get("skipped", {"count": 0, "paths": []})
            summary["skipped"] = {"count": before["count"] + len(celeba),
                                  "paths": (before["paths"] + celeba)[:REPORT_PATHS]}
        extra = [path for path in replaced if str(path) in unlabeled]
        if extra:
            report = SkipReport()
            report.update(self._unlabeled_report)
            for path in extra:
                report.add(SKIP_CORRUPT, path)
            summary["unlabeled_skipped"] = report.summary()
        return summary
