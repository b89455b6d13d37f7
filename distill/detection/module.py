"""Detection distillation: a student detector trained on its own losses plus the imitation of a frozen teacher.

loss = detection losses + feature_weight x FeatureImitation(backbone maps) + head_weight x head imitation
(SSD: class distributions and box offsets on the shared default boxes; Faster R-CNN: RPN objectness and deltas on
the shared anchors); see distill.detection.imitation. With no teacher, or both weights 0, it is plain detector
training: the no-teacher baseline, and how the teacher itself is fitted.
"""

from __future__ import annotations

import math
from typing import Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torchvision.models.detection.ssd import SSD

from distill.detection.detectors import backbone_maps
from distill.detection.imitation import FeatureImitation, rpn_head_imitation, ssd_head_imitation

__all__ = ["DetectionDistillModule"]


def _channels(backbone: nn.Module) -> list[int]:
    """Channels of each map a detector backbone gives (torchvision backbones carry ``out_channels``)."""
    channels = backbone.out_channels
    return [int(c) for c in channels] if isinstance(channels, (list, tuple)) else [int(channels)]


def _head(detector: nn.Module) -> nn.Module:
    """The head whose outputs are imitated: SSD's box predictor, or Faster R-CNN's RPN head."""
    return detector.head if isinstance(detector, SSD) else detector.rpn.head


class DetectionDistillModule(pl.LightningModule):
    """Trains ``student`` (a torchvision detector) on its losses plus the weighted imitation terms."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, *, feature_weight: float = 1.0,
                 head_weight: float = 0.0, mask: bool = False, temperature: float = 1.0,
                 optimizer: Callable[..., torch.optim.Optimizer], scheduler: str | None = "cosine",
                 warmup_steps: int = 0):
        super().__init__()
        for name, value in (("feature_weight", feature_weight), ("head_weight", head_weight)):
            if value < 0:
                raise ValueError(f"loss.{name} must be >= 0, got {value}")
        if temperature <= 0:
            raise ValueError(f"loss.temperature must be > 0, got {temperature}")
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.feature_weight = float(feature_weight) if teacher is not None else 0.0
        self.head_weight = float(head_weight) if teacher is not None else 0.0
        self.temperature = float(temperature)
        self.optimizer_factory = optimizer
        self.scheduler_name = scheduler
        self.warmup_steps = int(warmup_steps)
        self.imitation = None
        if self.feature_weight > 0:
            self.imitation = FeatureImitation(_channels(student.backbone), _channels(self.teacher.backbone), mask=mask)
        self._recorded: dict[str, object] = {}
        student.backbone.register_forward_hook(lambda module, inputs, output: self._record("maps", output))
        _head(student).register_forward_hook(lambda module, inputs, output: self._record("head", output))

    def _record(self, name: str, output) -> None:
        if self.student.training:  # only what a training step needs (nothing is kept from evaluation passes)
            self._recorded[name] = output

    @property
    def uses_teacher(self) -> bool:
        return self.feature_weight > 0 or self.head_weight > 0

    def train(self, mode: bool = True) -> "DetectionDistillModule":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen BN statistics
        return self

    def _imitation_terms(self, images, targets) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            prepared, prepared_targets = self.teacher.transform(images, targets)
            teacher_maps = backbone_maps(self.teacher.backbone(prepared.tensors))
            teacher_head = _head(self.teacher)(teacher_maps) if self.head_weight > 0 else None
        terms = {}
        if self.feature_weight > 0:
            terms["feature_imitation"] = self.imitation(
                backbone_maps(self._recorded["maps"]), teacher_maps, [t["boxes"] for t in prepared_targets],
                tuple(prepared.tensors.shape[-2:]))
        if self.head_weight > 0:
            imitate = ssd_head_imitation if isinstance(self.teacher, SSD) else rpn_head_imitation
            terms["head_imitation"] = imitate(self._recorded["head"], teacher_head, self.temperature)
        return terms

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        losses = self.student(images, targets)
        detection = sum(losses.values())
        logs = {f"train/{name}": value.detach() for name, value in losses.items()}
        total = detection
        if self.uses_teacher:
            terms = self._imitation_terms(images, targets)
            weights = {"feature_imitation": self.feature_weight, "head_imitation": self.head_weight}
            total = detection + sum(weights[name] * value for name, value in terms.items())
            logs.update({f"train/{name}": value.detach() for name, value in terms.items()})
        self._recorded.clear()
        if not torch.isfinite(total):
            raise FloatingPointError(f"detection training diverged at step {self.global_step} (losses "
                                     f"{ {k: float(v) for k, v in losses.items()} }); lower the learning rate")
        logs["train/detection"] = detection.detach()
        self.log_dict(logs, batch_size=len(images))
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=len(images))
        return total

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_name in (None, "none"):
            return optimizer
        if self.scheduler_name != "cosine":
            raise ValueError(f"optimizer.scheduler must be 'cosine' or 'none', got {self.scheduler_name!r}")
        total, warmup = max(1, int(self.trainer.estimated_stepping_batches)), self.warmup_steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
