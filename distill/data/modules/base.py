"""The DataModule every recipe's data builds on: named splits of uint8 image arrays.

Splits by role:
- ``teacher_train``: labelled images the teacher is fitted on when no pretrained weights are given;
- ``train``: the student's distillation data (labels optional: the teacher provides the targets);
- ``test``: labelled held-out data on which teacher and student are evaluated by the same code.
A subclass only says how to build the arrays (``build_splits``) and what identifies them (``fingerprint_parts``).

``fingerprint()`` keys the teacher-output cache: the subclass's parts (a real reader's files, digested by
``verify``: ``stat`` or ``content``, see ``distill.core.fingerprint.files_fingerprint``; a generator's source and
settings) and the augmentation (``augmentation()``), which shapes it. ``teacher_key_parts()`` keys the fitted
teacher: all of it by default; a module whose teacher split is drawn on its own narrows it to what shapes that split
(``teacher_split_parts``), so that a run changing only the student's or the test split reuses the fitted teacher.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, default_collate

from distill.core.fingerprint import fingerprint, verify_mode
from distill.core.labels import UNLABELLED
from distill.data.views import DEFAULT_MEAN, DEFAULT_STD, ImageArrayDataset, ViewSampler
from distill.data.workers import loader_workers

__all__ = ["Split", "ArrayDataModule", "moved_classes", "teacher_split_parts"]


@dataclass
class Split:
    """One split: images (N, H, W, 3) uint8, optional targets, and any extra arrays a task needs (e.g. pairs)."""

    images: np.ndarray
    targets: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def with_unlabelled(self, images: np.ndarray, extras: dict[str, np.ndarray] | None = None) -> Split:
        """This split followed by ``images`` whose target is ``UNLABELLED``; ``extras`` gives their rows of each
        of this split's extras (every extra needs them)."""
        extras = extras or {}
        if set(extras) != set(self.extras):
            raise ValueError(f"unlabelled images need rows for the extras {sorted(self.extras)}, got {sorted(extras)}")
        hidden = np.full(len(images), UNLABELLED, dtype=self.targets.dtype)
        return Split(np.concatenate([self.images, images]), np.concatenate([self.targets, hidden]),
                     extras={key: np.concatenate([value, extras[key]]) for key, value in self.extras.items()})


class ArrayDataModule(pl.LightningDataModule):
    """Serves the splits as dict batches {"image", "index", "view", ["target"], ["teacher_image"]}."""

    def __init__(
        self,
        resolution: int = 96,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        num_views: int = 2,
        augment: bool = True,
        seed: int = 0,
        min_crop_scale: float = 0.8,
        flip: bool = True,
        verify: str = "stat",
    ) -> None:
        super().__init__()
        if int(batch_size) <= 0:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        if not 0.0 < float(min_crop_scale) <= 1.0:
            raise ValueError(f"data.min_crop_scale must be in (0, 1] (the smallest crop's share of the image "
                             f"area), got {min_crop_scale}")
        self.resolution = int(resolution)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.num_workers = loader_workers(num_workers)  # never more than the machine's cores
        self.num_views = int(num_views)
        self.augment = augment
        self.seed = int(seed)
        self.min_crop_scale = float(min_crop_scale)
        self.flip = bool(flip)
        self.verify = verify_mode(verify, "data.verify")
        self.teacher_resolution: int | None = None
        self._splits: dict[str, Split] | None = None
        self._resume: tuple[int, int] | None = None

    # --- what a subclass provides -------------------------------------------------------------
    def build_splits(self) -> dict[str, Split]:
        raise NotImplementedError

    def fingerprint_parts(self) -> dict[str, Any]:
        """Plain data that identifies the images and labels (not the loader settings): a real reader's files
        (``files_fingerprint(paths, self.verify)``), a generator's source and settings."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    # --- shared machinery -----------------------------------------------------------------------
    def augmentation(self) -> dict[str, Any]:
        """What shapes a training sample besides the images: crops, flips, normalisation (``ImageArrayDataset``)."""
        return {"augment": bool(self.augment), "min_crop_scale": self.min_crop_scale, "flip": self.flip,
                "mean": list(DEFAULT_MEAN), "std": list(DEFAULT_STD)}

    def key_parts(self) -> dict[str, Any]:
        """The plain data ``fingerprint()`` digests: the kind, ``fingerprint_parts()`` and ``augmentation()``."""
        return {"kind": type(self).__name__, **self.fingerprint_parts(), "augmentation": self.augmentation()}

    def fingerprint(self) -> str:
        """Key of the data for the teacher outputs (see ``key_parts``)."""
        return fingerprint(**self.key_parts())

    def teacher_key_parts(self) -> dict[str, Any]:
        """What shapes a teacher fitted on ``teacher_train_dataloader()``: here all of ``key_parts()``; a subclass
        whose teacher split does not depend on the other splits leaves those out."""
        return self.key_parts()

    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            splits = self.build_splits()
            for name in ("train", "test"):
                if name not in splits:
                    raise ValueError(f"{type(self).__name__}.build_splits() returned no '{name}' split")
            self._splits = splits

    def split(self, name: str) -> Split:
        self.setup()
        assert self._splits is not None
        if name not in self._splits:
            raise KeyError(f"{type(self).__name__} has no '{name}' split (has: {sorted(self._splits)})")
        return self._splits[name]

    def summary(self) -> dict[str, Any]:
        """Plain facts about the data for results.json ("data"): the split sizes; subclasses add what they count."""
        self.setup()
        assert self._splits is not None
        return {"name": type(self).__name__, "splits": {name: len(split) for name, split in self._splits.items()}}

    def has_split(self, name: str) -> bool:
        self.setup()
        assert self._splits is not None
        return name in self._splits

    def dataset(self, name: str, *, resolution: int | None = None, augment: bool | None = None,
                with_teacher_image: bool = False) -> ImageArrayDataset:
        split = self.split(name)
        return ImageArrayDataset(
            split.images,
            split.targets,
            resolution or self.resolution,
            teacher_resolution=self.teacher_resolution if with_teacher_image else None,
            augment=self.augment if augment is None else augment,
            seed=self.seed,
            min_scale=self.min_crop_scale,
            flip=self.flip,
        )

    def _loader(self, dataset: ImageArrayDataset, *, shuffle: bool, batch_size: int, views: int = 1,
                shard: bool = True) -> DataLoader:
        sampler = ViewSampler(len(dataset), views, shuffle=shuffle, seed=self.seed,
                              **({} if shard else {"rank": 0, "world_size": 1}))
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        """The student's training data, views cycling with the epoch (teacher outputs cacheable per view)."""
        dataset = self.dataset("train", with_teacher_image=True)
        loader = self._loader(dataset, shuffle=True, batch_size=self.batch_size, views=self.num_views)
        if self._resume is not None:
            epoch, batches = self._resume
            # The sampler starts at the epoch training continues with: a loader with workers draws its first
            # indices when Lightning creates its iterator, which on a resume comes before Lightning's set_epoch.
            if batches >= len(loader):  # the checkpoint closed its epoch: the next one starts afresh
                loader.sampler.set_epoch(epoch + 1)
            else:
                loader.sampler.set_epoch(epoch)
                loader.sampler.resume_at(epoch, batches * self.batch_size)
            self._resume = None
        return loader

    def resume_at(self, epoch: int, batches: int) -> None:
        """The next training loader skips the ``batches`` of ``epoch`` already trained on (a mid-epoch resume)."""
        self._resume = (int(epoch), int(batches))

    def view_dataloader(self, view: int) -> DataLoader:
        """All training samples of one augmentation view, in order: what the teacher-output cache is built from."""
        dataset = self.dataset("train", with_teacher_image=True)
        pairs = [(index, view) for index in range(len(dataset))]
        return DataLoader(pairs, batch_size=self.eval_batch_size, collate_fn=lambda items: _collate(dataset, items),
                          num_workers=0)

    def teacher_train_dataloader(self, batch_size: int | None = None) -> DataLoader:
        """Labelled data at the teacher's resolution, for fitting a teacher when no weights are given (by one process:
        never sharded by rank)."""
        name = "teacher_train" if self.has_split("teacher_train") else "train"
        dataset = self.dataset(name, resolution=self.teacher_resolution or self.resolution)
        if dataset.targets is None:
            raise ValueError(f"{type(self).__name__}: split '{name}' has no labels to fit a teacher on")
        return self._loader(dataset, shuffle=True, batch_size=batch_size or self.batch_size, views=1_000_000,
                            shard=False)

    def eval_dataloader(self, name: str = "test", *, resolution: int | None = None) -> DataLoader:
        dataset = self.dataset(name, resolution=resolution, augment=False)
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers)


def _collate(dataset: ImageArrayDataset, items: list[tuple[int, int]]) -> dict:
    return default_collate([dataset[item] for item in items])


def teacher_split_parts(parts: Mapping[str, Any], *, sizes_key: str | None = "sizes",
                        keep: Iterable[str] = ("teacher_train",), drop: Iterable[str] = ()) -> dict[str, Any]:
    """``parts`` (a synthetic module's ``key_parts()``) narrowed to what its teacher split depends on: the split
    counts under ``sizes_key`` cut to ``keep`` (None: the parts hold no such counts), and the ``drop`` keys
    (settings of the other splits) left out. A key named here that ``parts`` lacks raises: a renamed part would
    otherwise stay in the key unnoticed.

    Only for generators that draw each split from its own random stream, so that the kept splits are the same
    images whatever the other splits hold (the tests check this byte for byte).
    """
    dropped = set(drop)
    named = dropped if sizes_key is None else dropped | {sizes_key}
    missing = sorted(named - set(parts))
    if missing:
        raise KeyError(f"teacher_split_parts: no {missing} in the data's key parts (has {sorted(parts)})")
    narrowed = {name: value for name, value in parts.items() if name not in dropped}
    if sizes_key is not None:
        narrowed[sizes_key] = {name: parts[sizes_key][name] for name in keep}
    return narrowed


def moved_classes(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module's ``__getattr__`` that finds classes which have moved to other modules (``moved``: class name ->
    its module now), so that configurations recorded before the move (an earlier run's run_config.json, read by
    ``distill.compress``) still name a class that loads."""

    def __getattr__(name: str) -> Any:
        if name in moved:
            return getattr(importlib.import_module(moved[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
