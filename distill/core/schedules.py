"""Learning-rate schedules shared by every training stage."""

from __future__ import annotations

import math

import torch

__all__ = ["cosine_with_warmup"]


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0):
    """Linear warm-up over ``warmup_steps``, then a cosine decay to zero at ``total_steps`` (per optimizer step)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
