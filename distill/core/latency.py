"""CPU latency of a model at batch 1: what a phone-sized deployment feels, next to mult-adds and params."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

__all__ = ["measure_latency_ms"]


@torch.inference_mode()
def measure_latency_ms(model: nn.Module, resolution: int, *, runs: int = 20, warmup: int = 3,
                       threads: int | None = None) -> float:
    """Median wall time in milliseconds of one forward pass on a (1, 3, R, R) input, on the CPU, in eval mode."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, resolution, resolution, device=device)
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
