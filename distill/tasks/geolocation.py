"""Geolocation as classification over S2 cells (PlaNet; MobileNet paper Table 11).

Models output one logit per cell of the data's partition; a photo is placed at the centre of its most probable
cell and judged by the great-circle distance to where it was taken: the share within 1 / 25 / 200 / 750 / 2500 km
(street / city / region / country / continent), the median error, and the cell (top-1) accuracy. Teacher and
student are evaluated by this same code. Fitting and the ground-truth loss are the classification task's
(cross-entropy over cells; the student's ``UNLABELLED`` photos, whose places are hidden, are skipped by it and left
off the maps).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill.core.labels import UNLABELLED
from distill.metrics import GeolocationAccuracy
from distill.tasks.base import predict
from distill.tasks.classification import ClassificationTask
from distill.tasks.geo_maps import plot_errors, plot_partition

__all__ = ["GEO_METRIC_SCALES_KM", "GeolocationTask", "geolocation_metrics", "known_places"]

log = logging.getLogger(__name__)

GEO_METRIC_SCALES_KM = {"acc_1km": 1, "acc_25km": 25, "acc_200km": 200, "acc_750km": 750, "acc_2500km": 2500}


def geolocation_metrics(logits: torch.Tensor, targets: torch.Tensor | np.ndarray | None, centres: np.ndarray,
                        true_latlon: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of cell logits (N, K) against the true places (N, 2); returns (metrics, predicted places (N, 2)).

    ``targets`` are the true cells (-1 where the place lies in no cell: never a correct top-1).
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    true_latlon = np.asarray(true_latlon, dtype=np.float64).reshape(-1, 2)
    if logits.ndim != 2 or logits.shape[1] != len(centres):
        raise ValueError(f"expected logits of shape (N, {len(centres)} cells), got {tuple(logits.shape)}")
    if len(true_latlon) != len(logits):
        raise ValueError(f"{len(logits)} predictions but {len(true_latlon)} true places")
    predicted_cell = logits.argmax(dim=1).numpy()
    predicted = centres[predicted_cell]
    metric = GeolocationAccuracy(scales_km=GEO_METRIC_SCALES_KM)
    metric.update(torch.from_numpy(predicted[:, 0]), torch.from_numpy(predicted[:, 1]),
                  torch.from_numpy(true_latlon[:, 0]), torch.from_numpy(true_latlon[:, 1]))
    metrics = metric.compute()
    if targets is not None:
        metrics["top1"] = float((predicted_cell == np.asarray(targets)).mean())
    return metrics, predicted


def known_places(split: Any) -> np.ndarray:
    """The places (M, 2) of a training split's photos whose place is known: not the ``UNLABELLED`` ones (their
    places hidden, NaN). Not for the test split, where -1 marks a known place outside every cell."""
    latlon = np.asarray(split.extras["latlon"], dtype=np.float64).reshape(-1, 2)
    known = np.isfinite(latlon).all(axis=1)
    if split.targets is not None:
        known &= np.asarray(split.targets).reshape(-1) != UNLABELLED
    return latlon[known]


class GeolocationTask(ClassificationTask):
    """Classification over the data module's ``partition`` cells, judged by distance on the globe.

    ``save_artifacts`` writes ``partition.json`` (the cells as plain data, so a student predicts places anywhere)
    and, with ``maps=True``, two world maps: the photos' density with the cells, and the errors of the models
    evaluated in this run (the last one evaluated, the student in a run, drawn as lines from truth to prediction).
    """

    name = "geolocation"
    primary_metric = "acc_2500km"

    def __init__(self, label_smoothing: float = 0.0, maps: bool = True, max_error_lines: int = 300) -> None:
        super().__init__(top_k=(1,), label_smoothing=label_smoothing, confused_pairs=0)
        self.maps = bool(maps)
        self.max_error_lines = int(max_error_lines)
        self.evaluations: list[dict[str, Any]] = []

    def evaluate(self, model: nn.Module, datamodule: Any, resolution: int,
                 device: torch.device | str = "cpu") -> dict[str, Any]:
        logits, targets = predict(model, datamodule.eval_dataloader("test", resolution=resolution), device=device)
        true_latlon = datamodule.split("test").extras["latlon"]
        metrics, predicted = geolocation_metrics(logits, targets, datamodule.partition.centres, true_latlon)
        self.evaluations.append({"model": type(model).__name__, "predicted": predicted,
                                 "true": np.asarray(true_latlon, dtype=np.float64), "metrics": metrics})
        return metrics

    def save_artifacts(self, datamodule: Any, run_dir: Path) -> dict[str, Any]:
        run_dir = Path(run_dir)
        partition = datamodule.partition
        partition.save(run_dir / "partition.json")
        artifacts: dict[str, Any] = {"partition": "partition.json", "partition_data": partition.to_dict()}
        if self.maps:
            training = [known_places(datamodule.split(name)) for name in ("teacher_train", "train")
                        if datamodule.has_split(name)]
            plot_partition(partition, np.concatenate(training), run_dir / "world_cells.png")
            artifacts["maps"] = {"cells": "world_cells.png"}
            if self.evaluations:
                plot_errors(self.evaluations, run_dir / "world_errors.png", max_lines=self.max_error_lines)
                artifacts["maps"]["errors"] = "world_errors.png"
        return artifacts
