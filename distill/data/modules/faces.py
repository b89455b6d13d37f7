"""Synthetic face identities for the facenet recipe (the default, ``data=synthetic_faces``); real photographs are
``distill.data.modules.face_folder`` (``data=face_folder``).

Both serve three splits (see ``distill.data.modules.base``):

- ``teacher_train``: labelled identities, for fitting the teacher when no weights are given;
- ``train``: the student's distillation images (labels kept where they exist, for a labels-only baseline);
- ``test``: images of identities absent from the other splits, with ``extras["pairs"]`` an int64 array
  (P, 3) of (i, j, issame) over test indices in LFW's layout: fold after fold, same pairs then different ones.
  The real faces also give ``extras["pair_folds"]``, each pair's fold: pairs left out for an unreadable image
  (``strict=false``) leave the others in their folds.

Rendering thousands of faces takes a while, so the arrays are kept on disk once built, under
``<cache dir>/faces/``, keyed by the generator settings and source.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from distill.core.fingerprint import fingerprint
from distill.data.array_store import config_int, data_cache_dir, load_or_build_arrays, source_digest
from distill.data.modules.base import ArrayDataModule, Split, moved_classes, teacher_split_parts
from distill.data.readers.pairs import make_pairs
from distill.data.synthetic import faces as synthetic_faces

__all__ = ["SyntheticFacesDataModule", "data_cache_dir"]

log = logging.getLogger(__name__)

# Streams of the synthetic generator: identity pools and renderings of each split never share random numbers.
_POOL_TEACHER, _POOL_TRAIN, _POOL_TEST = 1, 2, 3
_IMAGES_TEACHER, _IMAGES_TRAIN, _IMAGES_TEST, _PAIRS = 4, 5, 6, 7


def _derived_seed(seed: int, stream: int) -> int:
    return int(seed) * 1000 + stream


class SyntheticFacesDataModule(ArrayDataModule):
    """Synthetic people from ``distill.data.synthetic.faces``.

    ``teacher_train``: ``num_identities`` people x ``images_per_identity`` renderings, labelled 0..K-1.
    ``train``: new renderings (``train_images_per_identity`` each) of the same people, with their labels, or,
    with ``num_train_identities`` > 0, renderings of that many other people, unlabelled.
    ``test``: ``num_test_identities`` further people x ``test_images_per_identity``, labelled within the test
    pool, and ``num_folds`` x (``pairs_per_fold`` same + as many different) pairs (LFW: 10 x (300 + 300)),
    identities disjoint across folds. ``image_size`` is the rendered size; ``resolution`` the student's input.
    """

    def __init__(
        self,
        image_size: int = 96,
        num_identities: int = 200,
        images_per_identity: int = 12,
        train_images_per_identity: int = 12,
        num_train_identities: int = 0,
        num_test_identities: int = 200,
        test_images_per_identity: int = 8,
        num_folds: int = 10,
        pairs_per_fold: int = 300,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        **loader_args: Any,
    ) -> None:
        super().__init__(**loader_args)
        self.image_size = config_int("image_size", image_size, 16)
        self.num_identities = config_int("num_identities", num_identities, 2)
        self.images_per_identity = config_int("images_per_identity", images_per_identity)
        self.train_images_per_identity = config_int("train_images_per_identity", train_images_per_identity)
        self.num_train_identities = config_int("num_train_identities", num_train_identities, 0)
        self.num_test_identities = config_int("num_test_identities", num_test_identities, 2)
        self.test_images_per_identity = config_int("test_images_per_identity", test_images_per_identity, 2)
        self.num_folds = config_int("num_folds", num_folds)
        self.pairs_per_fold = config_int("pairs_per_fold", pairs_per_fold)
        if self.seed < 0:
            raise ValueError(f"data.seed must be >= 0 for the synthetic faces, got {self.seed}")
        self.cache_dir = cache_dir
        self.use_cache = bool(use_cache)

    @property
    def num_classes(self) -> int:
        """Identities of the teacher's training split."""
        return self.num_identities

    @property
    def num_pair_folds(self) -> int:
        """Folds of the test pairs, in order (``data.num_folds``): what the evaluation splits them into."""
        return self.num_folds

    def fingerprint_parts(self) -> dict[str, Any]:
        return {
            "generator": source_digest(synthetic_faces),
            "image_size": self.image_size,
            "num_identities": self.num_identities,
            "images_per_identity": self.images_per_identity,
            "train_images_per_identity": self.train_images_per_identity,
            "num_train_identities": self.num_train_identities,
            "num_test_identities": self.num_test_identities,
            "test_images_per_identity": self.test_images_per_identity,
            "num_folds": self.num_folds,
            "pairs_per_fold": self.pairs_per_fold,
            "seed": self.seed,
        }

    def teacher_key_parts(self) -> dict[str, Any]:
        """The teacher's people and renderings come from their own streams: the student's and test splits'
        settings leave them as they are, so changing those reuses a fitted teacher."""
        others = ("train_images_per_identity", "num_train_identities", "num_test_identities",
                  "test_images_per_identity", "num_folds", "pairs_per_fold")
        return teacher_split_parts(self.key_parts(), sizes_key=None, drop=others)

    def _cache_file(self) -> Path | None:
        if not self.use_cache:
            return None
        # the rendered arrays depend on the generator and its settings only, not on the augmentation
        key = fingerprint(kind=type(self).__name__, **self.fingerprint_parts())
        return data_cache_dir(self.cache_dir) / "faces" / f"synthetic-{key}.npz"

    def _layout(self, split: str) -> tuple[int, int, int, int]:
        """(identity-pool stream, rendering stream, people, renderings per person) of a split."""
        if split == "teacher_train":
            return _POOL_TEACHER, _IMAGES_TEACHER, self.num_identities, self.images_per_identity
        if split == "train":
            if self.num_train_identities == 0:
                return _POOL_TEACHER, _IMAGES_TRAIN, self.num_identities, self.train_images_per_identity
            return _POOL_TRAIN, _IMAGES_TRAIN, self.num_train_identities, self.train_images_per_identity
        if split == "test":
            return _POOL_TEST, _IMAGES_TEST, self.num_test_identities, self.test_images_per_identity
        raise ValueError(f"split must be 'teacher_train', 'train' or 'test', got {split!r}")

    def identity_params(self, split: str) -> list[synthetic_faces.IdentityParams]:
        """The people of a split, in label order (independent random draws: pools never share a person)."""
        pool, _, people, _ = self._layout(split)
        return synthetic_faces.sample_identities(people, _derived_seed(self.seed, pool))

    def image_seed(self, split: str) -> int:
        """The ``seed`` given to ``synthetic_faces.render_faces`` for a split's renderings (ids 0..N-1)."""
        return _derived_seed(self.seed, self._layout(split)[1])

    def _render_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        _, _, people, per_person = self._layout(split)
        labels = np.repeat(np.arange(people, dtype=np.int64), per_person)
        images, _ = synthetic_faces.render_faces(self.identity_params(split), labels, self.image_seed(split),
                                                 self.image_size, workers=None)
        return images, labels

    def _render(self) -> dict[str, np.ndarray]:
        total = sum(self._layout(split)[2] * self._layout(split)[3] for split in ("teacher_train", "train", "test"))
        log.info("Face data: rendering %d synthetic faces of %d px (kept on disk for later runs)", total,
                 self.image_size)
        arrays: dict[str, np.ndarray] = {}
        for split in ("teacher_train", "train", "test"):
            arrays[f"{split}_images"], arrays[f"{split}_targets"] = self._render_split(split)
        if self.num_train_identities > 0:
            del arrays["train_targets"]  # other people than the teacher's classes: no usable labels
        pairs = make_pairs(arrays["test_targets"], num_folds=self.num_folds, pairs_per_fold=self.pairs_per_fold,
                           seed=_derived_seed(self.seed, _PAIRS))
        arrays["test_pairs"] = np.array(pairs, dtype=np.int64).reshape(-1, 3)
        return arrays

    def build_splits(self) -> dict[str, Split]:
        arrays = load_or_build_arrays(self._cache_file(), self._render, "Face data")
        return {
            "teacher_train": Split(arrays["teacher_train_images"], arrays["teacher_train_targets"]),
            "train": Split(arrays["train_images"], arrays.get("train_targets")),
            "test": Split(arrays["test_images"], arrays["test_targets"], extras={"pairs": arrays["test_pairs"]}),
        }

    def summary(self) -> dict[str, Any]:
        """Split sizes and identity counts, for results.json."""
        return {
            **super().summary(),
            "identities": {"teacher_train": self.num_identities,
                           "train": self.num_train_identities or self.num_identities,
                           "test": self.num_test_identities},
            "pairs": len(self.split("test").extras["pairs"]),
        }


# FaceFolderDataModule moved to distill.data.modules.face_folder.
__getattr__ = moved_classes(__name__, {"FaceFolderDataModule": "distill.data.modules.face_folder"})
