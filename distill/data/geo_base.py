"""What every geolocation data module shares: the S2 partition built from its training places, and cell labels.

PlaNet's classes are the cells of an adaptive partition of the training photos' places (distill.geo). A subclass
gives each split's places; this base builds the partition from the teacher_train and train places, labels every
photo with its cell (-1 outside the kept cells), leaves training photos outside the cells out (they have no class,
as in PlaNet) and keeps every test photo (judged by its distance to the prediction, whatever its cell). Each split
carries its places as ``extras["latlon"]`` (N, 2) degrees, which the geolocation task measures distances with.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distill.data.datamodule import ArrayDataModule
from distill.geo import S2Partition

__all__ = ["TRAINING_SPLITS", "GeoArrayDataModule"]

TRAINING_SPLITS = ("teacher_train", "train")


class GeoArrayDataModule(ArrayDataModule):
    """Base of the geolocation data modules: ``t1``/``t2``/``max_level`` set the partition (PlaNet: 10000 / 50)."""

    def __init__(self, t1: int = 10000, t2: int = 50, max_level: int = 30, **loader_args: Any) -> None:
        super().__init__(**loader_args)
        if int(t1) < 1:
            raise ValueError(f"data.t1 must be >= 1 (the most photos a cell holds before it is split), got {t1}")
        if not 1 <= int(t2) <= int(t1):
            raise ValueError(f"data.t2 must lie in [1, data.t1={t1}] (the fewest photos a kept cell holds), got {t2}")
        self.t1, self.t2, self.max_level = int(t1), int(t2), int(max_level)
        self._partition: S2Partition | None = None
        self._outside: dict[str, int] = {}

    def partition_settings(self) -> dict[str, int]:
        return {"t1": self.t1, "t2": self.t2, "max_level": self.max_level}

    @property
    def partition(self) -> S2Partition:
        self.setup()
        assert self._partition is not None, f"{type(self).__name__}.build_splits() did not call label_places()"
        return self._partition

    @property
    def num_classes(self) -> int:
        return self.partition.num_classes

    def label_places(self, places: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Build the partition from the training splits' places; return every split's cell indices (-1: none)."""
        training = [np.asarray(places[name], dtype=np.float64).reshape(-1, 2) for name in TRAINING_SPLITS
                    if name in places]
        if not training:
            raise ValueError(f"{type(self).__name__}: no training split ({' or '.join(TRAINING_SPLITS)}) to build "
                             f"the partition from")
        coords = np.concatenate(training)
        try:
            self._partition = S2Partition.build(coords[:, 0], coords[:, 1], t1=self.t1, t2=self.t2,
                                                max_level=self.max_level)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: data.t1={self.t1}, data.t2={self.t2}: {error}") from error
        targets = {}
        for name, latlon in places.items():
            latlon = np.asarray(latlon, dtype=np.float64).reshape(-1, 2)
            targets[name] = self._partition.cell_of(latlon[:, 0], latlon[:, 1])
            self._outside[name] = int((targets[name] < 0).sum())
        return targets

    @staticmethod
    def kept(name: str, targets: np.ndarray) -> np.ndarray:
        """Positions a split keeps: training photos inside a kept cell; every test photo."""
        return np.nonzero(targets >= 0)[0] if name in TRAINING_SPLITS else np.arange(len(targets))

    def summary(self) -> dict[str, Any]:
        """Split sizes and the partition: cells, levels, and the photos outside it (left out of training)."""
        partition = self.partition
        return {**super().summary(), "cells": partition.num_classes, **self.partition_settings(),
                "cell_levels": [int(partition.levels.min()), int(partition.levels.max())],
                "outside_partition": dict(self._outside)}
