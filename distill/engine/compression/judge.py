"""Judging the artefact that ships: the compressed model is evaluated on the recipe's test split by the task's own
metric code (an ONNX file through ``OnnxRuntimeModel``), and measured side by side with its float32 forms."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.core.deploy_latency import eager_runner, measure_side_by_side, ort_runner
from distill.engine.compression.request import CompressRequest
from distill.tasks.base import Task

__all__ = ["judge"]

log = logging.getLogger(__name__)


def _size(path: Path | None) -> int | None:
    return path.stat().st_size if path is not None and path.is_file() else None


def judge(task: Task, datamodule: Any, request: CompressRequest, *, method: str, shipped: nn.Module,
          artifact: Path, fp32_model: nn.Module, fp32_onnx: Path | None, int8_onnx: Path | None,
          student_onnx: Path | None, resolution: int, device: torch.device | str = "cpu",
          extra_runners: dict[str, Any] | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``compressed`` entry of results.json for one compressed model.

    ``shipped``: what is evaluated (the int8 file as a module, or the pruned student); ``fp32_model`` /
    ``fp32_onnx``: the float32 network it was made from (same architecture: the eager and ONNX Runtime fp32
    figures); ``int8_onnx``: its int8 file, if any; ``student_onnx``: the uncompressed student's float32 file (the
    size ratio's denominator).
    """
    log.info("Evaluating the %s student (%s) on the test split", method, artifact.name)
    shipped.eval()
    metrics = task.evaluate(shipped, datamodule, resolution, device=device)
    cost = task.cost(fp32_model.cpu().eval(), resolution)
    threads = request.threads or torch.get_num_threads()
    runners = {"eager": eager_runner(fp32_model),
               "ort_fp32": ort_runner(fp32_onnx, threads) if fp32_onnx is not None else None,
               "ort_int8": ort_runner(int8_onnx, threads) if int8_onnx is not None else None,
               **(extra_runners or {})}
    runtime = measure_side_by_side(runners, resolution, threads=threads, runs=request.latency_runs,
                                   batch=request.throughput_batch, batch_runs=request.throughput_runs)
    # the file that ships: the int8 file (ONNX or pt2), or the pruned network's float32 ONNX graph
    deployed = artifact if artifact.suffix in (".onnx", ".pt2") else fp32_onnx
    student_size = _size(student_onnx)
    entry = {
        "method": method,
        "artifact": artifact.name,
        "metrics": metrics,
        "mult_adds": cost.get("mult_adds"),
        "params": cost.get("params"),
        "file_size_bytes": _size(artifact),
        "onnx_fp32_size_bytes": _size(fp32_onnx),
        "onnx_int8_size_bytes": _size(int8_onnx),
        # the deployed file against the uncompressed student's float32 ONNX file
        "size_ratio": round(_size(deployed) / student_size, 4) if _size(deployed) and student_size else None,
        **runtime,
        **(details or {}),
    }
    return entry
