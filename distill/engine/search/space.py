"""A candidate student of the search: width multiplier, input resolution, prune ratio and precision (float32 or
ONNX Runtime int8), drawn by an Optuna trial on the space's steps (so equal candidates have equal parameters and the
study's records are exact)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from distill.engine.search.settings import Space

__all__ = ["Candidate", "suggest", "from_params", "smallest"]


@dataclass(frozen=True)
class Candidate:
    width: float
    resolution: int
    prune_ratio: float = 0.0  # share of the mult-adds removed by structured pruning after distillation
    int8: bool = False  # shipped as ONNX Runtime static int8 (compress=int8_ptq), measured and scored as such

    @property
    def label(self) -> str:
        pruned = f" pruned {self.prune_ratio:.2f}" if self.prune_ratio > 0 else ""
        return f"{self.width:g} MobileNet-{self.resolution}{pruned}{' int8' if self.int8 else ''}"

    def as_dict(self) -> dict[str, Any]:
        return {"width": self.width, "resolution": self.resolution, "prune_ratio": self.prune_ratio,
                "int8": self.int8}


def suggest(trial: optuna.trial.Trial, space: Space) -> Candidate:
    """The trial's candidate: the width on multiples of width_step, the resolution on multiples of
    resolution_step, the prune ratio (when searched) on multiples of prune_step, the precision (when searched)."""
    width = trial.suggest_float("width", space.width[0], space.width[1], step=space.width_step)
    resolution = trial.suggest_int("resolution", space.resolution[0], space.resolution[1],
                                   step=space.resolution_step)
    prune = 0.0
    if space.prune_ratio is not None:
        prune = trial.suggest_float("prune_ratio", space.prune_ratio[0], space.prune_ratio[1],
                                    step=space.prune_step)
    int8 = space.int8[0] if len(space.int8) == 1 else bool(trial.suggest_categorical("int8", list(space.int8)))
    return Candidate(round(float(width), 6), int(resolution), round(float(prune), 6), bool(int8))


def from_params(params: dict[str, Any], space: Space) -> Candidate:
    """The candidate of a trial's stored parameters (the precision is a parameter only when searched)."""
    int8 = bool(params["int8"]) if "int8" in params else space.int8[0]
    return Candidate(float(params["width"]), int(params["resolution"]), float(params.get("prune_ratio", 0.0)), int8)


def smallest(space: Space) -> list[Candidate]:
    """The cheapest students the space holds, one per precision (int8 is not always the faster: a tiny network's
    quantise / dequantise steps can cost more than its convolutions): the lowest width and resolution, the most
    pruning."""
    prune = space.prune_ratio[1] if space.prune_ratio else 0.0
    return [Candidate(space.width[0], space.resolution[0], prune, int8) for int8 in space.int8]
