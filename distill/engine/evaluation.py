"""Stage 4, evaluation: teacher and student judged by the task's own metric code, on the Trainer's device, once
(on rank 0); then their cost (paper-convention mult-adds and parameters) and measured CPU latency at batch 1."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from distill.core.latency import measure_latency_ms
from distill.tasks.base import Task

__all__ = ["evaluate_models", "model_cost"]

log = logging.getLogger(__name__)


def evaluate_models(task: Task, datamodule: Any, models: dict[str, tuple[nn.Module, int]],
                    device: torch.device) -> dict[str, dict[str, Any]]:
    """{role: metrics} for each (model, resolution) in ``models``, all evaluated on ``device``."""
    log.info("Evaluating %s on the test split (%s)", " and ".join(models), device)
    return {role: task.evaluate(model.eval(), datamodule, resolution, device=device)
            for role, (model, resolution) in models.items()}


def model_cost(model: nn.Module, task: Task, datamodule: Any, resolution: int, latency_runs: int) -> dict[str, Any]:
    """Paper-convention cost (the task's count), plus the measured CPU latency at batch 1 (median of ``latency_runs``)."""
    model = model.cpu().eval()
    measured = task.cost(model, resolution)
    if latency_runs > 0:
        measured["latency_ms"] = measure_latency_ms(model, resolution, runs=latency_runs,
                                                    example=task.latency_input(datamodule, resolution))
    return measured
