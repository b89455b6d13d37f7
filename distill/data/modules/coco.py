"""Lightning data modules for detection: any COCO-format dataset, or the built-in synthetic scenes.

Three splits: ``teacher_train`` (fits the teacher when no weights are given), ``train`` (the student's labelled
images) and ``test`` (scores both). On a real dataset the teacher and the student share the training file unless
``teacher_ann_file`` names another; the test split is ``test_ann_file`` or every k-th training image.
``unlabelled_ann_file`` (an image-info file such as COCO's ``image_info_unlabeled2017.json``, images under
``unlabelled_root``) adds images without boxes to the student's split: the teacher's maps and head outputs teach
on them, the box losses skip them (an SSD image without boxes adds nothing to its loss). They do not shape the
teacher, so they are not in its key.

``setup()`` reads and checks the annotation files and opens every listed image once (a JPEG decoded at an eighth
of its size, which is fast), so an undecodable image or one whose size differs from its annotation file stops the
run before any training, with an error naming the file. The fingerprint (the fitted teacher's key) holds the
annotation files and every image, by size and modification time or by content (``verify``); the synthetic
scenes' holds the generator's source.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from PIL import Image
from torch.utils.data import DataLoader

from distill.core.images import SWAPS_SIDES, orientation
from distill.core.fingerprint import files_fingerprint, fingerprint, verify_mode
from distill.core.labels import unlabelled_count
from distill.core.paths import default_cache_dir
from distill.data.array_store import source_digest
from distill.data.modules.base import teacher_split_parts
from distill.data.readers.coco import (BOX_POLICIES, CocoDetectionDataset, CocoImage, CocoIndex, collate_detection,
                                       load_coco)
from distill.data.synthetic import coco_scenes
from distill.data.synthetic.coco_scenes import write_synthetic_coco
from distill.data.views import ViewSampler
from distill.data.workers import loader_workers

__all__ = ["CocoDataModule", "SyntheticCocoDataModule", "SPLITS"]

SPLITS = ("teacher_train", "train", "test")

log = logging.getLogger(__name__)


class CocoDataModule(pl.LightningDataModule):
    """A COCO-format dataset: ``root`` holds the images named in ``ann_file``."""

    def __init__(self, root: str | os.PathLike | None = None, ann_file: str | os.PathLike | None = None, *,
                 test_root: str | None = None, test_ann_file: str | None = None, test_every: int = 10,
                 teacher_root: str | None = None, teacher_ann_file: str | None = None,
                 max_images: int | None = None, resolution: int = 300, batch_size: int = 16,
                 eval_batch_size: int = 32, num_workers: int = 0, flip: bool = True, seed: int = 0,
                 verify: str = "stat", box_policy: str = "error", unlabelled_root: str | None = None,
                 unlabelled_ann_file: str | None = None):
        super().__init__()
        if box_policy not in BOX_POLICIES:
            raise ValueError(f"data.box_policy must be one of {list(BOX_POLICIES)} (what a box past its image's edge "
                             f"does), got {box_policy!r}")
        self.box_policy = box_policy
        if not root or not ann_file:
            raise ValueError("data.root and data.ann_file are required for COCO data: the image folder and its "
                             "instances JSON (e.g. data.root=/data/coco/train2017 "
                             "data.ann_file=/data/coco/annotations/instances_train2017.json)")
        if test_every < 2:
            raise ValueError(f"data.test_every must be >= 2 (every k-th image is held out), got {test_every}")
        self.root, self.ann_file = Path(root).expanduser(), Path(ann_file).expanduser()
        self.test_root = Path(test_root).expanduser() if test_root else self.root
        self.test_ann_file = Path(test_ann_file).expanduser() if test_ann_file else None
        self.teacher_root = Path(teacher_root).expanduser() if teacher_root else self.root
        self.teacher_ann_file = Path(teacher_ann_file).expanduser() if teacher_ann_file else None
        self.unlabelled_ann_file = Path(unlabelled_ann_file).expanduser() if unlabelled_ann_file else None
        self.unlabelled_root = Path(unlabelled_root).expanduser() if unlabelled_root else self.root
        self.test_every = int(test_every)
        self.max_images = max_images
        self.resolution = int(resolution)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers, self.flip, self.seed = loader_workers(num_workers), bool(flip), int(seed)
        self.verify = verify_mode(verify, "data.verify")
        self.splits: dict[str, list[CocoImage]] = {}
        self.unlabelled: list[CocoImage] = []  # the student's images without boxes (after its labelled ones)
        self.index: CocoIndex | None = None
        self._resume: tuple[int, int] | None = None
        self._files_key: dict[str, str] | None = None

    # --- set-up -------------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        index = load_coco(self.ann_file, self.root, max_images=self.max_images, box_policy=self.box_policy)
        _check_images(index)
        if self.test_ann_file is not None:
            test = load_coco(self.test_ann_file, self.test_root, max_images=self.max_images, box_policy=self.box_policy)
            _same_categories(index, test)
            _check_images(test)
            train, test_images = index.images, test.images
        else:
            train = [im for i, im in enumerate(index.images) if i % self.test_every != self.test_every - 1]
            test_images = [im for i, im in enumerate(index.images) if i % self.test_every == self.test_every - 1]
        teacher_train = train
        if self.teacher_ann_file is not None:
            teacher = load_coco(self.teacher_ann_file, self.teacher_root, max_images=self.max_images,
                                box_policy=self.box_policy)
            _same_categories(index, teacher)
            _check_images(teacher)
            teacher_train = teacher.images
        for name, images in (("train", train), ("test", test_images), ("teacher_train", teacher_train)):
            if not images:
                raise ValueError(f"the {name} split of {self.ann_file} is empty")
        if self.unlabelled_ann_file is not None:
            extra = load_coco(self.unlabelled_ann_file, self.unlabelled_root, max_images=self.max_images,
                              unlabelled=True)
            _same_categories(index, extra)
            _check_images(extra)
            if not extra.images:
                raise ValueError(f"data.unlabelled_ann_file={self.unlabelled_ann_file} lists no images")
            self.unlabelled = extra.images
        self.index = index
        self.splits = {"teacher_train": teacher_train, "train": train, "test": test_images}
        for name, images in self.splits.items():
            clipped, skipped = (sum(getattr(im, f"boxes_{what}") for im in images) for what in ("clipped", "skipped"))
            if clipped or skipped:
                log.warning("COCO data, %s split: %d box(es) past the image's edge %s (data.box_policy=%s)", name,
                            clipped or skipped, "clipped to it" if clipped else "left out", self.box_policy)

    @property
    def num_classes(self) -> int:
        self.setup()
        return self.index.num_classes

    @property
    def class_names(self) -> list[str]:
        self.setup()
        return list(self.index.class_names)

    def annotation_files(self) -> list[Path]:
        return [path for path in (self.ann_file, self.test_ann_file, self.teacher_ann_file) if path is not None]

    def key_parts(self) -> dict[str, Any]:
        """What shapes a teacher fitted on this data: the annotation files and every image (by ``verify``: size and
        modification time, or content), how they are split, the classes and the flips."""
        self.setup()
        if self._files_key is None:  # computed once per data module: a run reads its files once
            images = sorted({str(image.path) for split in self.splits.values() for image in split})
            self._files_key = {"annotations": files_fingerprint(self.annotation_files(), self.verify),
                               "images": files_fingerprint(images, self.verify)}
        return {"kind": type(self).__name__, "ann_files": [str(path) for path in self.annotation_files()],
                "test_every": self.test_every, "max_images": self.max_images,
                "splits": {name: len(images) for name, images in self.splits.items()},
                "classes": self.class_names, "flip": self.flip, "box_policy": self.box_policy,
                "files": self._files_key, "verify": self.verify}

    def fingerprint(self) -> str:
        """Key of the data for the fitted teacher (see ``key_parts``)."""
        return fingerprint(**self.key_parts())

    def summary(self) -> dict[str, Any]:
        self.setup()
        return {"splits": {name: len(images) for name, images in self.splits.items()},
                "boxes": {name: int(sum(len(im.boxes) for im in images)) for name, images in self.splits.items()},
                "classes": self.num_classes, "class_names": self.class_names, "ann_file": str(self.ann_file),
                "box_policy": self.box_policy,
                "boxes_clipped": {name: int(sum(im.boxes_clipped for im in images))
                                  for name, images in self.splits.items()},
                "boxes_skipped": {name: int(sum(im.boxes_skipped for im in images))
                                  for name, images in self.splits.items()},
                "unlabelled": len(self.unlabelled)}

    # --- loaders ------------------------------------------------------------------------------------------------
    def _loader(self, split: str, *, train: bool, batch_size: int | None = None, shard: bool = True) -> DataLoader:
        """Training order and flips are functions of (seed, epoch): the view of an image is the epoch."""
        self.setup()
        images = self.splits[split] + (self.unlabelled if split == "train" else [])
        dataset = CocoDetectionDataset(images, flip=self.flip and train, seed=self.seed)
        sampler = None
        if train:
            sampler = ViewSampler(len(dataset), 1_000_000, shuffle=True, seed=self.seed,
                                  **({} if shard else {"rank": 0, "world_size": 1}))
            if self._resume is not None and split == "train":
                sampler.resume_at(self._resume[0], self._resume[1] * self.batch_size)
                self._resume = None
        return DataLoader(dataset, batch_size=int(batch_size or (self.batch_size if train else self.eval_batch_size)),
                          sampler=sampler, shuffle=False, drop_last=False, num_workers=self.num_workers,
                          collate_fn=collate_detection, persistent_workers=False)

    def resume_at(self, epoch: int, batches: int) -> None:
        """The next training loader skips the ``batches`` of ``epoch`` already trained on (a mid-epoch resume)."""
        self._resume = (int(epoch), int(batches))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def teacher_train_dataloader(self, batch_size: int | None = None) -> DataLoader:
        """One process fits the teacher: its loader is never sharded by rank."""
        return self._loader("teacher_train", train=True, batch_size=batch_size, shard=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


def _check_images(index: CocoIndex) -> None:
    """Open every image of ``index`` once: one that cannot be decoded, or whose size differs from its annotation
    file, raises a ValueError naming the file, the image id and the annotation file (before any training)."""
    for record in index.images:
        where = f"image file {record.path} (image id {record.id}, listed in {index.ann_file})"
        try:
            with Image.open(record.path) as handle:
                size = handle.size
                if orientation(handle) in SWAPS_SIDES:  # EXIF-turned: the images are read upright
                    size = size[::-1]
                handle.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))  # JPEG: decode at 1/8 scale
                handle.load()
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
            raise ValueError(f"{where} cannot be decoded: {error}") from error
        if tuple(size) != (record.width, record.height):
            raise ValueError(f"{where} is {size[0]}x{size[1]}, but the annotation file says "
                             f"{record.width}x{record.height}")


def _same_categories(reference: CocoIndex, other: CocoIndex) -> None:
    if other.category_ids != reference.category_ids:
        raise ValueError(f"{other.ann_file} has category ids {other.category_ids}, but {reference.ann_file} has "
                         f"{reference.category_ids}; both files must list the same categories")


class SyntheticCocoDataModule(CocoDataModule):
    """Synthetic shape scenes (distill.data.synthetic.coco_scenes), written once as COCO files and read back.

    They go to ``<cache_dir>/synthetic_coco/<key of the settings>`` (``cache_dir`` null: the default cache).
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, *, num_classes: int = 4, image_size: int = 128,
                 num_teacher_train: int = 800, num_train: int = 400, num_test: int = 200, max_objects: int = 4,
                 min_scale: float = 0.15, max_scale: float = 0.5, colour_jitter: float = 40.0, resolution: int = 128,
                 batch_size: int = 8, eval_batch_size: int = 32, num_workers: int = 0, flip: bool = True, seed: int = 0,
                 box_policy: str = "error", num_unlabelled: int = 0):
        self.settings = {"num_classes": int(num_classes), "image_size": int(image_size), "max_objects": int(max_objects),
                         "min_scale": float(min_scale), "max_scale": float(max_scale),
                         "colour_jitter": float(colour_jitter), "seed": int(seed)}
        self.counts = {"teacher_train": int(num_teacher_train), "train": int(num_train), "test": int(num_test)}
        if min(self.counts.values()) < 1:
            raise ValueError(f"every synthetic split needs at least one image, got {self.counts}")
        self.num_unlabelled = unlabelled_count(num_unlabelled)
        # written after the labelled splits, from their own random stream: those stay the scenes of a run without
        written = {**self.counts, **({"unlabelled": self.num_unlabelled} if self.num_unlabelled else {})}
        self.written = written
        self.generator = source_digest(coco_scenes)  # a changed generator writes other scenes: a new folder
        key = fingerprint(**self.settings, counts=written, generator=self.generator)
        self.folder = default_cache_dir(cache_dir) / "synthetic_coco" / key
        files = {split: self.folder / "annotations" / f"{split}.json" for split in written}
        super().__init__(self.folder / "images", files["train"], test_ann_file=str(files["test"]),
                         teacher_ann_file=str(files["teacher_train"]), resolution=resolution, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers, flip=flip, seed=seed,
                         box_policy=box_policy, unlabelled_ann_file=files.get("unlabelled"))
        self.test_root = self.teacher_root = self.unlabelled_root = self.root

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            write_synthetic_coco(self.folder, self.written, **self.settings)
        super().setup(stage)

    def key_parts(self) -> dict[str, Any]:
        """The scenes are a function of the settings and the generator's source (their folder's key); the
        student's unlabelled scenes do not shape the teacher."""
        return {"kind": type(self).__name__, "synthetic": self.settings, "generator": self.generator,
                "counts": self.counts, "flip": self.flip}

    def teacher_key_parts(self) -> dict[str, Any]:
        """Each split's scenes come from their own random streams: the student's and test splits leave the
        teacher's as they are, so changing them reuses a fitted teacher."""
        return teacher_split_parts(self.key_parts(), sizes_key="counts")

    def test_key_parts(self) -> dict[str, Any]:
        """What shapes the test split's batches: its scenes (from their own random stream, whatever the other splits
        hold), the detectors' input size and the evaluation batch size; test images are never flipped."""
        return {**teacher_split_parts(self.key_parts(), sizes_key="counts", keep=("test",), drop=("flip",)),
                "resolution": self.resolution, "eval_batch_size": self.eval_batch_size}
