"""Stage 4, evaluation: teacher and student judged by the task's own metric code, on the Trainer's device, once
(on rank 0); then their cost (paper-convention mult-adds and parameters) and measured CPU latency at batch 1, in
eager PyTorch and in ONNX Runtime (float32) beside it."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from distill.core.deploy_latency import ort_latency_ms
from distill.core.latency import measure_latency_ms
from distill.tasks.base import Task

__all__ = ["evaluate_models", "model_cost"]

log = logging.getLogger(__name__)


def evaluate_models(task: Task, datamodule: Any, models: dict[str, tuple[nn.Module, int]],
                    device: torch.device, known: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """{role: metrics} for each (model, resolution) in ``models``, all evaluated on ``device``; a role in
    ``known`` (metrics read from the cache) keeps those and is not evaluated again."""
    known = dict(known or {})
    todo = [role for role in models if role not in known]
    if todo:
        log.info("Evaluating %s on the test split (%s)", " and ".join(todo), device)
    for role in known:
        log.info("The %s's metrics on this test split: read from the cache (evaluated by an earlier run)", role)
    return {role: known[role] if role in known else task.evaluate(model.eval(), datamodule, resolution, device=device)
            for role, (model, resolution) in models.items()}


def model_cost(model: nn.Module, task: Task, datamodule: Any, resolution: int, latency_runs: int, *,
               onnx_runtime: bool = True) -> dict[str, Any]:
    """Paper-convention cost (the task's count), plus the measured CPU latency at batch 1 (median of ``latency_runs``)
    in eager PyTorch (``latency_ms``) and, with ``onnx_runtime``, in ONNX Runtime float32 (``latency_ort_ms``, null
    where the model takes no image batch, e.g. a detector, or cannot be exported)."""
    model = model.cpu().eval()
    measured = task.cost(model, resolution)
    if latency_runs > 0:
        example = task.latency_input(datamodule, resolution)
        measured["latency_ms"] = measure_latency_ms(model, resolution, runs=latency_runs, example=example)
        if onnx_runtime:
            measured["latency_ort_ms"] = _ort_latency(model, example, resolution, latency_runs)
    return measured


def _ort_latency(model: nn.Module, example: Any, resolution: int, runs: int) -> float | None:
    if not isinstance(example, torch.Tensor):  # a detector's list of images: no single-tensor ONNX graph
        return None
    try:
        return ort_latency_ms(model, resolution, runs=runs)
    except Exception as error:  # not exportable, or onnx / onnxruntime missing: the figure is left out
        log.warning("ONNX Runtime latency of %s not measured: %s: %s", type(model).__name__, type(error).__name__,
                    str(error).strip().splitlines()[0][:300] if str(error).strip() else "")
        return None
