"""A candidate student of the search: width multiplier, input resolution and prune ratio, drawn by an Optuna trial
on the space's steps (so equal candidates have equal parameters and the study's records are exact)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from distill.engine.search.settings import Space

__all__ = ["Candidate", "suggest", "smallest"]


@dataclass(frozen=True)
class Candidate:
    width: float
    resolution: int
    prune_ratio: float = 0.0  # share of the mult-adds removed by structured pruning after distillation

    @property
    def label(self) -> str:
        pruned = f" pruned {self.prune_ratio:.2f}" if self.prune_ratio > 0 else ""
        return f"{self.width:g} MobileNet-{self.resolution}{pruned}"

    def as_dict(self) -> dict[str, Any]:
        return {"width": self.width, "resolution": self.resolution, "prune_ratio": self.prune_ratio}


def suggest(trial: optuna.trial.Trial, space: Space) -> Candidate:
    """The trial's candidate: the width on multiples of width_step, the resolution on multiples of
    resolution_step, the prune ratio (when searched) on multiples of prune_step."""
    width = trial.suggest_float("width", space.width[0], space.width[1], step=space.width_step)
    resolution = trial.suggest_int("resolution", space.resolution[0], space.resolution[1],
                                   step=space.resolution_step)
    prune = 0.0
    if space.prune_ratio is not None:
        prune = trial.suggest_float("prune_ratio", space.prune_ratio[0], space.prune_ratio[1],
                                    step=space.prune_step)
    return Candidate(round(float(width), 6), int(resolution), round(float(prune), 6))


def smallest(space: Space) -> Candidate:
    """The cheapest student the space holds: the lowest width and resolution, the most pruning."""
    return Candidate(space.width[0], space.resolution[0], space.prune_ratio[1] if space.prune_ratio else 0.0)
