"""The smoke recipe's data module: ten synthetic shape classes (``distill.data.synthetic.shapes``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from distill.data.array_store import source_digest
from distill.data.modules.base import ArrayDataModule, Split
from distill.data.synthetic import shapes as synthetic_shapes
from distill.data.synthetic.shapes import SHAPES, render_shapes

__all__ = ["SyntheticShapesDataModule"]


class SyntheticShapesDataModule(ArrayDataModule):
    """Ten shape classes; a labelled teacher split, a student split and a test split, disjoint by sample."""

    def __init__(self, num_classes: int = 10, image_size: int = 32, num_teacher_train: int = 1000,
                 num_train: int = 1000, num_test: int = 500, **loader_args: Any) -> None:
        super().__init__(**loader_args)
        if not 2 <= num_classes <= len(SHAPES):
            raise ValueError(f"data.num_classes must be between 2 and {len(SHAPES)}, got {num_classes}")
        self._num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.sizes = {"teacher_train": int(num_teacher_train), "train": int(num_train), "test": int(num_test)}

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def fingerprint_parts(self) -> dict[str, Any]:
        return {"num_classes": self._num_classes, "image_size": self.image_size, "sizes": self.sizes, "seed": self.seed,
                "generator": source_digest(synthetic_shapes)}

    def build_splits(self) -> dict[str, Split]:
        splits = {}
        for offset, (name, count) in enumerate(self.sizes.items()):
            labels = np.random.default_rng([self.seed, offset]).integers(0, self._num_classes, size=count)
            images = render_shapes(labels, self.image_size, seed=self.seed * 10 + offset)
            splits[name] = Split(images, labels.astype(np.int64))
        return splits

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "classes": self._num_classes, "image_size": self.image_size}
