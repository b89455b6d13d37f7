"""What every training stage shares: optimizer and schedule, finite-loss checks, logging, exact resumes.

Both Lightning modules of the engine — ``TeacherFitModule`` (stage 1) and ``DistillationModule`` (stage 3) — are a
``TrainingModule``: they only say which parameters train and which named losses a batch gives.

Exact resumes, also from the middle of an epoch: the random state of a step is a function of (seed, step, rank),
and the checkpoint records how many batches of the current epoch were trained, which the data module's sampler
skips when the run continues (its order is a function of (seed, epoch)).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import pytorch_lightning as pl
import torch
from torch import nn

from distill.core.schedules import cosine_with_warmup

__all__ = ["TrainingModule", "SCHEDULES"]

SCHEDULES = ("cosine", "one_cycle", "none")
_POSITION_KEY = "distill_position"


class TrainingModule(pl.LightningModule):
    """Subclasses implement ``compute_losses(batch) -> {name: loss}``, ``batch_size(batch)`` and ``weights``."""

    def __init__(self, *, optimizer: Callable[..., torch.optim.Optimizer], scheduler: str | None = "cosine",
                 warmup_steps: int = 0, seed: int = 0, reseed_each_step: bool = True) -> None:
        super().__init__()
        scheduler = scheduler or "none"
        if scheduler not in SCHEDULES:
            raise ValueError(f"optimizer.scheduler must be one of {list(SCHEDULES)}, got {scheduler!r}")
        self.optimizer_factory = optimizer
        self.scheduler_name = scheduler
        self.warmup_steps = int(warmup_steps)
        self.seed = int(seed)
        self.reseed_each_step = bool(reseed_each_step)
        self.batches_this_epoch = 0
        self.resume_position: dict[str, int] | None = None  # read by the data module when the run continues

    # --- what a subclass provides -----------------------------------------------------------------------------
    def compute_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss_weights(self) -> Mapping[str, float]:
        """Weight of each loss name in the total (names not listed weigh 1)."""
        return {}

    def batch_size(self, batch: Any) -> int:
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # --- training ---------------------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        size = self.batch_size(batch)
        weights = self.loss_weights()
        for name, value in losses.items():
            if not torch.isfinite(value):
                raise FloatingPointError(
                    f"loss term {name!r} became {value.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                    f"training stopped. Lower the learning rate or this term's weight/temperature.")
            self.log(f"train/{name}", value.detach(), on_step=True, on_epoch=True, batch_size=size, sync_dist=True)
        total = sum(weights.get(name, 1.0) * value for name, value in losses.items())
        self.log("train/loss", total.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=size,
                 sync_dist=True)
        self.batches_this_epoch += 1
        return total

    def on_train_epoch_start(self) -> None:
        position = self.resume_position
        if position is None or position["epoch"] != self.current_epoch:
            self.batches_this_epoch = 0
        else:  # continuing inside the interrupted epoch: the sampler skips what was trained
            self.batches_this_epoch = position["batches"]
        self.resume_position = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if not self.reseed_each_step:
            return
        # Random state as a function of (seed, step, rank): a run resumed at any step continues identically.
        torch.manual_seed((self.seed * 1_000_003 + self.global_step) * 64 + self.global_rank)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[_POSITION_KEY] = {"epoch": int(self.current_epoch), "batches": int(self.batches_this_epoch)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.resume_position = checkpoint.get(_POSITION_KEY)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.resume_position and datamodule is not None and hasattr(datamodule, "resume_at"):
            datamodule.resume_at(self.resume_position["epoch"], self.resume_position["batches"])

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.trainable_parameters())
        if self.scheduler_name == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if self.scheduler_name == "one_cycle":
            lr = max(group["lr"] for group in optimizer.param_groups)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.15)
        else:
            scheduler = cosine_with_warmup(optimizer, total, self.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
