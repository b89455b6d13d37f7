"""Face-attribute data (face_attributes recipe): the base both its modules share (``AttributeDataModule``) and the
synthetic faces, the default (``data=synthetic_attributes``); CelebA is ``distill.data.modules.celeba``
(``data=celeba``).

Both serve three splits (see ``distill.data.modules.base``) with targets of shape (N, 40), uint8 0/1:

- ``teacher_train``: labelled faces, for fitting the teacher when no weights are given;
- ``train``: the student's faces, **served without labels** (``targets=None``): the student learns only from
  the teacher's outputs, so any face image will do; ``unlabeled_root`` adds a folder of them.
  ``student_labels=true`` serves the labels too, for comparing with a ground-truth loss;
- ``test``: labelled faces of other people, on which teacher and student are scored (mean AP).

The synthetic faces come from ``distill.data.synthetic.faces``; CelebA's lists are read by
``distill.data.readers.celeba``. Building the arrays (rendering or decoding thousands of faces) takes a while, so
they are kept on disk under ``<cache dir>/faces/``, keyed by everything that determines them. CelebA's photos
(and an ``unlabeled_root`` folder's) stream instead when they are too many to hold decoded (``in_memory``:
``auto`` below ``distill.data.streaming.IN_MEMORY_AUTO_BYTES``): each is decoded and cropped in the DataLoader
workers (``distill.data.streaming.DecodedFiles``) to the pixels the in-memory array holds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from distill.core.fingerprint import files_fingerprint, fingerprint
from distill.data.array_store import config_int, data_cache_dir, load_or_build_arrays, source_digest
from distill.data.modules.base import ArrayDataModule, Split, moved_classes, teacher_split_parts
from distill.data.readers.celeba import decode_images
from distill.data.readers.image_files import SKIP_CORRUPT, SkipReport, list_image_files
from distill.data.streaming import readable_headers
from distill.data.synthetic import faces as synthetic_faces

__all__ = ["AttributeDataModule", "SyntheticAttributesDataModule"]

log = logging.getLogger(__name__)

_STREAMS = {"teacher_train": 11, "train": 12, "test": 13}  # random streams of the synthetic splits


class AttributeDataModule(ArrayDataModule):
    """Shared parts: attribute names, hidden student labels, the extra unlabeled folder, the on-disk cache."""

    def __init__(self, *, image_size: int, student_labels: bool, unlabeled_root: str | os.PathLike | None,
                 crop_fraction: float, strict: bool, cache_dir: str | os.PathLike | None, use_cache: bool,
                 **loader_args: Any) -> None:
        super().__init__(**loader_args)
        self.image_size = config_int("image_size", image_size, 16)
        self.student_labels = bool(student_labels)
        self.unlabeled_root = Path(unlabeled_root).expanduser() if unlabeled_root else None
        if self.student_labels and self.unlabeled_root is not None:
            raise ValueError("data.student_labels=true needs a label for every student image, but the images of "
                             f"data.unlabeled_root={self.unlabeled_root} have none; use one or the other")
        if not 0.0 < float(crop_fraction) <= 1.0:
            raise ValueError(f"data.crop_fraction must be in (0, 1], got {crop_fraction}")
        self.crop_fraction = float(crop_fraction)
        self.strict = bool(strict)
        self.cache_dir = cache_dir
        self.use_cache = bool(use_cache)
        self._unlabeled_files: list[Path] | None = None
        self._key_parts: dict[str, Any] | None = None
        self._unlabeled_key: dict[str, Any] | None = None
        self._report: dict[str, Any] = {}
        self._unlabeled_skips = SkipReport()
        self._unlabeled_report = SkipReport()  # what is left out of the unlabeled folder, by reason

    @property
    def attribute_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    # --- set-up checks ----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        fresh = self._splits is None
        super().setup(stage)
        if fresh:
            self._check_test_coverage()

    def _test_size_keys(self) -> str:
        """The config keys that choose the test images (named in the coverage warning)."""
        return "data.num_test"

    def _check_test_coverage(self) -> None:
        """Warn, naming them, about attributes the test split cannot score: with no positive image an attribute has
        no AP (left out of the mean); with no negative its AP is 1 whatever the model predicts."""
        assert self._splits is not None
        targets = self._splits["test"].targets
        if targets is None or not len(targets):
            return
        positives = np.asarray(targets).reshape(len(targets), -1).sum(axis=0)
        names = self.attribute_names
        no_positive = [names[k] for k in np.flatnonzero(positives == 0)]
        no_negative = [names[k] for k in np.flatnonzero(positives == len(targets))]
        if not (no_positive or no_negative):
            return
        self._report["test_coverage"] = {"images": int(len(targets)), "no_positive": no_positive,
                                         "no_negative": no_negative}
        if no_positive:
            log.warning("%s: %d of %d attributes have no positive among the %d test images, so no AP (left out of "
                        "the mean AP): %s; more test images (%s) would cover them", type(self).__name__,
                        len(no_positive), len(names), len(targets), ", ".join(no_positive), self._test_size_keys())
        if no_negative:
            log.warning("%s: %d of %d attributes have no negative among the %d test images, so an AP of 1 whatever "
                        "the model predicts: %s; more test images (%s) would cover them", type(self).__name__,
                        len(no_negative), len(names), len(targets), ", ".join(no_negative), self._test_size_keys())

    @property
    def num_classes(self) -> int:
        """Number of attributes: the size of the teacher's and the student's output."""
        return len(self.attribute_names)

    def key_parts(self) -> dict[str, Any]:
        if self._key_parts is None:  # may stat (or read, verify=content) many files: computed once
            self._key_parts = super().key_parts()
        return self._key_parts

    def _cache_file(self, kind: str, key: str) -> Path | None:
        return data_cache_dir(self.cache_dir) / "faces" / f"{kind}-{key}.npz" if self.use_cache else None

    # --- the extra unlabeled folder -----------------------------------------------------------------
    def unlabeled_files(self) -> list[Path]:
        if self.unlabeled_root is None:
            return []
        if self._unlabeled_files is None:
            self._unlabeled_files = list_image_files(self.unlabeled_root, skipped=self._unlabeled_skips)
        return self._unlabeled_files

    def _unlabeled_parts(self) -> dict[str, Any] | None:
        files = self.unlabeled_files()
        if not files:
            return None
        if self._unlabeled_key is None:
            self._unlabeled_key = {"files": files_fingerprint(files, self.verify), "image_size": self.image_size,
                                   "crop_fraction": self.crop_fraction, "strict": self.strict}
        return self._unlabeled_key

    def _unlabeled_images(self) -> np.ndarray:
        files = self.unlabeled_files()
        key = fingerprint(**self._unlabeled_parts())

        def build() -> dict[str, np.ndarray]:
            log.info("Attribute data: decoding %d unlabeled images from %s", len(files), self.unlabeled_root)
            images, kept = decode_images(files, self.image_size, crop_fraction=self.crop_fraction, strict=self.strict,
                                         origins=[f"data.unlabeled_root={self.unlabeled_root}"] * len(files))
            return {"images": images, "kept": kept}

        arrays = load_or_build_arrays(self._cache_file("unlabeled", key), build, "Attribute data")
        ok = np.zeros(len(files), dtype=bool)
        ok[arrays["kept"]] = True
        self._note_unlabeled(ok)
        return arrays["images"]

    def _unlabeled_streamed(self) -> list[Path]:
        """The unlabeled files whose header reads (streamed: nothing is decoded now); the others are reported."""
        files = self.unlabeled_files()
        where = [f"data.unlabeled_root={self.unlabeled_root}"] * len(files)
        ok = readable_headers(files, strict=self.strict, where=where)
        self._note_unlabeled(ok)
        return [path for path, good in zip(files, ok) if good]

    def _note_unlabeled(self, ok: np.ndarray) -> None:
        """Log and report the unlabeled folder's skipped files: not images, hidden, and those not ``ok``."""
        report = self._unlabeled_report
        report.update(self._unlabeled_skips)  # not images, hidden files
        for i in np.flatnonzero(~ok):
            report.add(SKIP_CORRUPT, self.unlabeled_files()[i])
        if len(report):
            report.log(log, f"Attribute data (data.unlabeled_root={self.unlabeled_root})")
            self._report["unlabeled_skipped"] = report.summary()

    def _student_split(self, images: np.ndarray, labels: np.ndarray) -> Split:
        """The student's split: its labels only with ``student_labels``; the unlabeled folder appended."""
        if self.unlabeled_root is not None:
            extra = self._unlabeled_images()
            self._report["unlabeled_images"] = int(len(extra))
            images = np.concatenate([images, extra]) if len(images) else extra
        return Split(images, labels if self.student_labels else None)

    def summary(self) -> dict[str, Any]:
        """Split sizes, which splits carry labels, the attribute count and any skipped files."""
        self.setup()
        assert self._splits is not None
        return {**super().summary(), "attributes": self.num_classes,
                "labelled": {name: split.targets is not None for name, split in self._splits.items()},
                **self._report}


class SyntheticAttributesDataModule(AttributeDataModule):
    """Synthetic faces (``distill.data.synthetic.faces``) with CelebA's 40 attributes, which drive the rendering.

    Each split renders its own people (``images_per_identity`` images each): ``num_teacher_train`` labelled
    faces for the teacher, ``num_train`` faces of other people for the student (labels withheld), ``num_test``
    labelled faces of yet other people. ``image_size`` is the rendered size; ``resolution`` the student's input.
    """

    def __init__(
        self,
        image_size: int = 96,
        num_teacher_train: int = 3000,
        num_train: int = 5000,
        num_test: int = 2000,
        images_per_identity: int = 1,
        student_labels: bool = False,
        unlabeled_root: str | os.PathLike | None = None,
        crop_fraction: float = 1.0,
        strict: bool = True,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        **loader_args: Any,
    ) -> None:
        super().__init__(image_size=image_size, student_labels=student_labels, unlabeled_root=unlabeled_root,
                         crop_fraction=crop_fraction, strict=strict, cache_dir=cache_dir, use_cache=use_cache,
                         **loader_args)
        self.sizes = {"teacher_train": config_int("num_teacher_train", num_teacher_train, 1),
                      "train": config_int("num_train", num_train, 0 if self.unlabeled_root is not None else 1),
                      "test": config_int("num_test", num_test, 2)}
        self.images_per_identity = config_int("images_per_identity", images_per_identity, 1)
        if self.seed < 0:
            raise ValueError(f"data.seed must be >= 0 for the synthetic faces, got {self.seed}")

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return synthetic_faces.ATTRIBUTE_NAMES

    def _render_parts(self) -> dict[str, Any]:
        source = source_digest(synthetic_faces)
        return {"generator": source, "image_size": self.image_size, "sizes": self.sizes,
                "images_per_identity": self.images_per_identity, "seed": self.seed}

    def fingerprint_parts(self) -> dict[str, Any]:
        # student_labels only decides whether the student's labels are served, not what the data is: a teacher
        # fitted (and its outputs cached) for one setting serves the other.
        return {**self._render_parts(), "unlabeled": self._unlabeled_parts()}

    def teacher_key_parts(self) -> dict[str, Any]:
        """Each split renders its own people from its own stream: the student's and test splits and the extra
        unlabeled folder leave the teacher's as it is, so changing them reuses a fitted teacher."""
        return teacher_split_parts(self.key_parts(), drop=("unlabeled",))

    def split_stream(self, name: str) -> int:
        """The seed a split's people (``sample_identities``) and renderings (``render_faces``) are drawn with."""
        if name not in _STREAMS:
            raise ValueError(f"split must be one of {list(_STREAMS)}, got {name!r}")
        return self.seed * 1000 + _STREAMS[name]

    def render_split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, attributes) of one split: its own people, rendered from the split's own random streams."""
        count = self.sizes[name]
        if count == 0:
            return (np.empty((0, self.image_size, self.image_size, 3), np.uint8),
                    np.empty((0, self.num_classes), np.uint8))
        stream = self.split_stream(name)
        people = synthetic_faces.sample_identities(-(-count // self.images_per_identity), stream)
        index = np.arange(count) // self.images_per_identity
        images, attributes = synthetic_faces.render_faces(people, index, stream, self.image_size, workers=None)
        return images, attributes.astype(np.uint8)

    def _render(self) -> dict[str, np.ndarray]:
        log.info("Attribute data: rendering %d synthetic faces of %d px (kept on disk for later runs)",
                 sum(self.sizes.values()), self.image_size)
        arrays = {}
        for name in self.sizes:
            arrays[f"{name}_images"], arrays[f"{name}_targets"] = self.render_split(name)
        return arrays

    def build_splits(self) -> dict[str, Split]:
        arrays = load_or_build_arrays(self._cache_file("attributes", fingerprint(**self._render_parts())), self._render,
                                      "Attribute data")
        return {
            "teacher_train": Split(arrays["teacher_train_images"], arrays["teacher_train_targets"]),
            "train": self._student_split(arrays["train_images"], arrays["train_targets"]),
            "test": Split(arrays["test_images"], arrays["test_targets"]),
        }



# CelebADataModule moved to distill.data.modules.celeba.
__getattr__ = moved_classes(__name__, {"CelebADataModule": "distill.data.modules.celeba"})
