"""The smoke recipe's data module: ten synthetic shape classes (``distill.data.synthetic.shapes``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from distill.core.labels import unlabelled_count
from distill.data.array_store import source_digest
from distill.data.modules.base import ArrayDataModule, Split, teacher_split_parts
from distill.data.synthetic import shapes as synthetic_shapes
from distill.data.synthetic.shapes import SHAPES, render_shapes

__all__ = ["SyntheticShapesDataModule"]


class SyntheticShapesDataModule(ArrayDataModule):
    """Ten shape classes; a labelled teacher split, a student split and a test split, disjoint by sample.

    ``num_unlabelled`` more images join the student's ``train`` split after its labelled ones, with target
    ``UNLABELLED``: the teacher's soft targets teach on them, the labels' cross-entropy skips them. They are drawn
    from their own seed, so the labelled splits are those of a run without them.
    """

    def __init__(self, num_classes: int = 10, image_size: int = 32, num_teacher_train: int = 1000,
                 num_train: int = 1000, num_test: int = 500, num_unlabelled: int = 0, **loader_args: Any) -> None:
        super().__init__(**loader_args)
        if not 2 <= num_classes <= len(SHAPES):
            raise ValueError(f"data.num_classes must be between 2 and {len(SHAPES)}, got {num_classes}")
        self.num_unlabelled = unlabelled_count(num_unlabelled)
        self._num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.sizes = {"teacher_train": int(num_teacher_train), "train": int(num_train), "test": int(num_test)}

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def fingerprint_parts(self) -> dict[str, Any]:
        return {"num_classes": self._num_classes, "image_size": self.image_size, "sizes": self.sizes,
                "num_unlabelled": self.num_unlabelled, "seed": self.seed,
                "generator": source_digest(synthetic_shapes)}

    def teacher_key_parts(self) -> dict[str, Any]:
        """The teacher's split is drawn first from its own stream: the student's and test splits and the
        unlabelled images leave it as it is, so changing them reuses a fitted teacher."""
        return teacher_split_parts(self.key_parts(), drop=("num_unlabelled",))

    def build_splits(self) -> dict[str, Split]:
        splits = {name: Split(*self._draw(offset, count)) for offset, (name, count) in enumerate(self.sizes.items())}
        if self.num_unlabelled:
            # the next offset: the labelled splits stay those of a run without unlabelled images
            hidden, _ = self._draw(len(self.sizes), self.num_unlabelled)
            splits["train"] = splits["train"].with_unlabelled(hidden)
        return splits

    def _draw(self, offset: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` images and their classes, a function of (seed, offset) alone."""
        labels = np.random.default_rng([self.seed, offset]).integers(0, self._num_classes, size=count)
        return render_shapes(labels, self.image_size, seed=self.seed * 10 + offset), labels.astype(np.int64)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "classes": self._num_classes, "image_size": self.image_size,
                "unlabelled": self.num_unlabelled}
