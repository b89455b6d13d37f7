"""A candidate's cost before any training: the student built from the recipe's builder at the candidate's width
(random weights; pruned to its ratio where asked), its mult-adds and params counted exactly by the task's profiler,
and its batch-1 latency measured in the budget's runtime on this machine (eager PyTorch, ONNX Runtime float32, or
ONNX Runtime int8 after static quantisation on random calibration images: an int8 graph's speed does not depend on
the calibrated ranges)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.core.deploy import TensorCalibrationReader, export_onnx, quantize_onnx_int8
from distill.core.deploy_latency import eager_runner, measure_side_by_side, ort_runner
from distill.engine.compression import CompressRequest
from distill.engine.compression.prune import prune_to_target
from distill.engine.search.space import Candidate
from distill.tasks.base import Task

__all__ = ["StudentFactory", "Cost", "measure", "latency_ms"]

_CALIBRATION_IMAGES = 8


@dataclass
class StudentFactory:
    """Builds the recipe's student at any width: the task, the student config and the output size it needs."""

    task: Task
    student_cfg: dict[str, Any]
    num_classes: int | None
    seed: int
    compress: CompressRequest  # the run's compress settings: pruning (tolerance, importance, steps), int8 float_convs

    def build(self, candidate: Candidate) -> tuple[nn.Module, str, dict[str, Any]]:
        torch.manual_seed(self.seed)
        return self.task.build_model({**self.student_cfg, "width_multiplier": candidate.width},
                                     num_classes=self.num_classes, resolution=candidate.resolution)

    def network(self, candidate: Candidate) -> nn.Module:
        """The candidate's network as it would ship (pruned to its ratio of mult-adds when it has one)."""
        model, builder, kwargs = self.build(candidate)
        if candidate.prune_ratio > 0:
            request = self.compress
            model = prune_to_target(model, builder, kwargs, candidate.resolution, target=1 - candidate.prune_ratio,
                                    tolerance=request.tolerance, importance=request.importance,
                                    max_layer_pruning=request.max_layer_pruning, steps=request.pruning_steps).model
        return model.cpu().eval()


@dataclass(frozen=True)
class Cost:
    mult_adds: int
    params: int
    latency_ms: float | None  # in ``runtime``; None when not measured
    runtime: str

    def value(self, name: str) -> float | None:
        """The cost by its budget / objective name (``latency`` in ms)."""
        return {"latency": self.latency_ms, "mult_adds": self.mult_adds, "params": self.params}[name]

    def as_dict(self) -> dict[str, Any]:
        return {"mult_adds": self.mult_adds, "params": self.params, "latency_ms": self.latency_ms,
                "runtime": self.runtime}


def latency_ms(model: nn.Module, resolution: int, runtime: str, *, threads: int, runs: int,
               float_convs: int = 0) -> float:
    """Median batch-1 latency (ms) of ``model`` in ``runtime`` (torch | ort_fp32 | ort_int8) with ``threads``;
    the int8 file keeps its first ``float_convs`` convolutions float32, as the compress stage writes it."""
    with tempfile.TemporaryDirectory(prefix="distill-search-") as folder:
        if runtime == "torch":
            runner = eager_runner(model)
        else:
            path = export_onnx(model, Path(folder) / "student.onnx", resolution, check=False)
            if runtime == "ort_int8":
                images = torch.rand(_CALIBRATION_IMAGES, 3, resolution, resolution,
                                    generator=torch.Generator().manual_seed(0))
                path = quantize_onnx_int8(path, Path(folder) / "student.int8.onnx", TensorCalibrationReader([images]),
                                          float_convs=float_convs)
            runner = ort_runner(path, threads)
        measured = measure_side_by_side({runtime: runner}, resolution, threads=threads, runs=runs, batch_runs=0)
    return float(measured["latency_b1_ms"][runtime])


def measure(factory: StudentFactory, candidate: Candidate, runtime: str, *, with_latency: bool, threads: int,
            runs: int) -> Cost:
    """The candidate's exact mult-adds and params, and its latency in ``runtime`` when ``with_latency``."""
    model = factory.network(candidate)
    counted = factory.task.cost(model, candidate.resolution)
    latency = latency_ms(model, candidate.resolution, runtime, threads=threads, runs=runs,
                         float_convs=factory.compress.float_convs) if with_latency else None
    return Cost(int(counted["mult_adds"]), int(counted["params"]), latency, runtime)
