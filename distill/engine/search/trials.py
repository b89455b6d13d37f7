"""One candidate as an ordinary run of the engine: the recipe's config with the candidate's width and resolution,
the teacher's resolution pinned (so the fitted teacher and its cached outputs are shared by every trial: their keys
hold the teacher, the data and the teacher's resolution, nothing of the student), and the compress stage asked for
the candidate's pruning and, for an int8 candidate, int8 quantisation."""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import DictConfig, open_dict

from distill.engine.search.space import Candidate

__all__ = ["teacher_resolution", "trial_config", "shipped_metric"]


def teacher_resolution(cfg: DictConfig) -> int:
    """The teacher's input size in the recipe as given (its own, else the recipe's data resolution)."""
    return int(cfg.teacher.get("resolution") or cfg.data.resolution)


def trial_config(cfg: DictConfig, candidate: Candidate, *, epochs: int | None,
                 pinned_teacher_resolution: int) -> DictConfig:
    """The run config of ``candidate``: ``epochs`` of distillation (None: the recipe's schedule, for the retrained
    student; trials also skip the results' latency columns, which the search measures itself)."""
    trial = copy.deepcopy(cfg)
    methods = (["prune"] if candidate.prune_ratio > 0 else []) + (["int8_ptq"] if candidate.int8 else [])
    with open_dict(trial):
        trial.student.width_multiplier = candidate.width
        trial.data.resolution = candidate.resolution
        trial.teacher.resolution = pinned_teacher_resolution
        trial.resume = False
        if methods:
            trial.compress.methods = methods
            if candidate.prune_ratio > 0:
                trial.compress.target_mult_adds = round(1 - candidate.prune_ratio, 6)
            if candidate.int8:
                trial.compress.backend = "onnxruntime"
        if epochs is not None:
            trial.trainer.max_epochs = int(epochs)
            trial.latency_runs = 0
            trial.latency_ort = False
            if methods:
                trial.compress.latency_runs = 3
                trial.compress.throughput_runs = 0
    return trial


def shipped_metric(results: dict[str, Any]) -> float:
    """The primary metric of what ships: the last compressed model's when the run compressed its student."""
    primary = results["primary_metric"]
    compressed = results.get("compressed") or []
    if compressed:
        last = compressed[-1]
        if last.get("error"):
            raise RuntimeError(f"compress {last.get('method')} failed: {last['error']}")
        metrics = last["metrics"]
    else:
        metrics = results["student"]["metrics"]
    value = metrics.get(primary)
    if not isinstance(value, (int, float)):
        raise RuntimeError(f"the run reported no {primary!r} metric")
    return float(value)
