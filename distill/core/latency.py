"""CPU latency of a model at batch 1: what a phone-sized deployment feels, next to mult-adds and params."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

__all__ = ["measure_latency_ms"]


@torch.inference_mode()
def measure_latency_ms(model: nn.Module, resolution: int | None = None, *, runs: int = 20, warmup: int = 3,
                       threads: int | None = None, example: Any = None) -> float:
    """Median wall time in milliseconds of one forward pass, in eval mode, on the model's device.

    The input is a blank (1, 3, R, R) image, or ``example`` as given (e.g. a detector's list of one image).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if example is None:
        if resolution is None:
            raise ValueError("measure_latency_ms needs a resolution or an example input")
        example = torch.zeros(1, 3, resolution, resolution)
    x = _to(example, device)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(was_training)
        torch.set_num_threads(previous_threads)
    return round(statistics.median(times), 3)


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(item, device) for item in value)
    return value
