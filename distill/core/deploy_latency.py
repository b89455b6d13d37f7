"""Deployment latency measured side by side in one process: eager PyTorch, ONNX Runtime float32 and int8 (or any
callable), with the same thread count, interleaved round by round so that a load change on the machine hits every
runtime alike. Reported as the median latency at batch 1 and the throughput at a larger batch (32 by default).

Within a round each runtime runs a burst of back-to-back calls (at least ``burst_ms`` of them) and the round's
figure is the burst's mean: a deployed model serves calls one after another with its weights in the caches, while
a single call timed right after another runtime's (which evicts them) measures the eviction, not the runtime. The
shortest models gain most: a 0.4 ms int8 network timed one call at a time, between eager PyTorch calls, read
about twice as slow.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from distill.core.deploy import export_onnx, ort_session

__all__ = ["eager_runner", "ort_runner", "measure_side_by_side", "ort_latency_ms"]

Runner = Callable[[torch.Tensor], Any]


def eager_runner(model: nn.Module) -> Runner:
    """``model`` (as given: in eval mode, on the CPU) called under ``torch.inference_mode``."""

    def run(images: torch.Tensor) -> Any:
        with torch.inference_mode():
            return model(images)

    return run


def ort_runner(path: str | os.PathLike, threads: int | None) -> Runner:
    """An ONNX Runtime session on ``path`` with ``intra_op_num_threads=threads``, fed numpy arrays."""
    session = ort_session(path, threads)
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def run(images: torch.Tensor) -> Any:
        return session.run([output_name], {input_name: images.numpy()})

    return run


def measure_side_by_side(runners: dict[str, Runner | None], resolution: int, *, threads: int | None = None,
                         runs: int = 20, warmup: int = 3, batch: int = 32, batch_runs: int = 5,
                         burst_ms: float = 20.0) -> dict[str, Any]:
    """Median latency (ms) at batch 1 and throughput (images/s, from the median time) at ``batch``, per runner.

    A runner given as None (not available, e.g. no int8 file) reports None. Each of the ``runs`` rounds gives every
    runner, in turn, one burst of back-to-back calls lasting at least ``burst_ms`` (at least one call; 0: one call
    per round), so the runtimes share the machine's state and each is timed warm; torch's thread count is
    ``threads`` during the measurement (ONNX Runtime runners are built with theirs). ``batch_runs=0`` skips the
    throughput.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if burst_ms < 0:
        raise ValueError(f"burst_ms must be at least 0, got {burst_ms}")
    active = {name: runner for name, runner in runners.items() if runner is not None}
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        single = torch.rand(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
        latency = _rounds(active, single, runs, warmup, burst_ms)
        throughput: dict[str, float] = {}
        if batch_runs > 0:
            many = torch.rand(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(1))
            throughput = {name: round(batch / (ms / 1000.0), 2)
                          for name, ms in _rounds(active, many, batch_runs, 1, burst_ms).items()}
    finally:
        torch.set_num_threads(previous)
    return {
        "threads": int(threads or previous),
        "latency_b1_ms": {name: (round(latency[name], 3) if name in latency else None) for name in runners},
        f"throughput_b{batch}_ips": {name: throughput.get(name) for name in runners},
    }


def _burst_ms(runner: Runner, images: torch.Tensor, burst_ms: float) -> float:
    """Mean ms per call over back-to-back calls lasting at least ``burst_ms`` (at least one call)."""
    calls, start = 0, time.perf_counter()
    while True:
        runner(images)
        calls += 1
        elapsed = (time.perf_counter() - start) * 1000.0
        if elapsed >= burst_ms:
            return elapsed / calls


def _rounds(runners: dict[str, Runner], images: torch.Tensor, runs: int, warmup: int,
            burst_ms: float) -> dict[str, float]:
    for runner in runners.values():
        for _ in range(warmup):
            runner(images)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, runner in runners.items():
            times[name].append(_burst_ms(runner, images, burst_ms))
    return {name: statistics.median(values) for name, values in times.items()}


def ort_latency_ms(model: nn.Module, resolution: int, *, runs: int = 20, warmup: int = 3,
                   threads: int | None = None, onnx_path: str | os.PathLike | None = None) -> float:
    """Median ONNX Runtime float32 latency (ms) of ``model`` at batch 1, next to ``measure_latency_ms``'s eager figure.

    The model is exported to ``onnx_path`` (or a temporary file, removed afterwards); ``threads`` defaults to
    torch's current thread count, so both figures use the same. Raises when the model cannot be exported.
    """
    threads = threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="distill-ort-") as folder:
        path = Path(onnx_path) if onnx_path is not None else Path(folder) / "model.onnx"
        if onnx_path is None or not path.is_file():
            export_onnx(model.cpu().eval(), path, resolution, check=False)
        measured = measure_side_by_side({"ort": ort_runner(path, threads)}, resolution, threads=threads, runs=runs,
                                        warmup=warmup, batch_runs=0)
    return measured["latency_b1_ms"]["ort"]
