"""DistillationModule: a frozen teacher, a trainable student, and a weighted sum of distillation losses.

Loss terms are declared in config, one per entry of ``loss.terms`` (a mapping from a term id to its settings):

    terms:
      kd:      {weight: 1.0, temperature: 4.0}                       # name defaults to the id
      hint:    {name: fitnet, student: stage3, teacher: block8, weight: 0.5}

``student``/``teacher`` name the layers whose outputs the loss compares ("output" by default); where the
shapes differ a learnable adapter (1x1 conv or linear) maps the student's feature to the teacher's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pytorch_lightning as pl
import torch
from torch import nn

from distill.core.schedules import cosine_with_warmup
from distill.features import OUTPUT, FeatureRecorder, make_adapter
from distill.losses import create_loss
from distill.tasks.base import Task

__all__ = ["LossTermSpec", "parse_loss_terms", "DistillationModule"]

_TERM_KEYS = {"name", "weight", "student", "teacher", "adapter"}


@dataclass(frozen=True)
class LossTermSpec:
    id: str
    name: str
    weight: float = 1.0
    student: str = OUTPUT
    teacher: str = OUTPUT
    adapter: bool | None = None  # None: only where shapes differ
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_loss_terms(terms: Mapping[str, Any] | list | None) -> list[LossTermSpec]:
    """Accepts the mapping form ({id: settings}) or a list of settings with a 'name' each."""
    if not terms:
        return []
    if isinstance(terms, Mapping):
        items = [(str(key), dict(value or {})) for key, value in terms.items()]
    else:
        items = []
        for position, value in enumerate(terms):
            value = dict(value)
            if "name" not in value:
                raise ValueError(f"loss.terms[{position}] has no 'name' (a loss from distill.losses.list_losses())")
            items.append((f"{value['name']}_{position}" if len(terms) > 1 else value["name"], value))
    specs = []
    for term_id, settings in items:
        if settings.get("weight", 1.0) is None:
            continue
        kwargs = {k: v for k, v in settings.items() if k not in _TERM_KEYS}
        specs.append(LossTermSpec(
            id=term_id,
            name=str(settings.get("name", term_id)),
            weight=float(settings.get("weight", 1.0)),
            student=str(settings.get("student", OUTPUT)),
            teacher=str(settings.get("teacher", OUTPUT)),
            adapter=settings.get("adapter"),
            kwargs=kwargs,
        ))
    return specs


class DistillationModule(pl.LightningModule):
    """Trains ``student`` to match ``teacher`` (frozen, always in eval mode, never optimised)."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        task: Task,
        loss_terms: list[LossTermSpec],
        *,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: str | None = "cosine",
        warmup_steps: int = 0,
        ground_truth_weight: float = 0.0,
        student_resolution: int = 224,
        teacher_resolution: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not loss_terms and ground_truth_weight <= 0:
            raise ValueError("nothing to train on: loss.terms is empty and loss.ground_truth_weight is 0")
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False)
        self.task = task
        self.specs = list(loss_terms)
        self.optimizer_factory = optimizer
        self.scheduler_name = scheduler
        self.warmup_steps = int(warmup_steps)
        self.ground_truth_weight = float(ground_truth_weight)
        self.student_resolution = int(student_resolution)
        self.teacher_resolution = int(teacher_resolution or student_resolution)
        self.seed = int(seed)
        self.teacher_cache = None  # set by train.run when teacher outputs are precomputed

        self.losses = nn.ModuleDict({spec.id: create_loss(spec.name, **spec.kwargs) for spec in self.specs})
        self.student_layers = sorted({spec.student for spec in self.specs} | {OUTPUT})
        self.teacher_layers = sorted({spec.teacher for spec in self.specs})
        self._student_features = FeatureRecorder(student, self.student_layers, model_label="student")
        self._teacher_features = FeatureRecorder(teacher, self.teacher_layers, model_label="teacher")
        self.adapters = nn.ModuleDict(self._build_adapters())

    # --- set-up ------------------------------------------------------------------------------------
    def _build_adapters(self) -> dict[str, nn.Module]:
        """Probe both models once to learn feature shapes, then create adapters where they differ."""
        if not self.specs:
            return {}
        with torch.no_grad():
            was_training = self.student.training
            self.student.eval()
            student_out = self._student_forward(torch.zeros(2, 3, self.student_resolution, self.student_resolution))
            self.student.train(was_training)
            teacher_out = self.teacher_forward(torch.zeros(2, 3, self.teacher_resolution, self.teacher_resolution))
        adapters = {}
        for spec in self.specs:
            s_shape, t_shape = student_out[spec.student].shape, teacher_out[spec.teacher].shape
            loss_fn = self.losses[spec.id]
            if spec.adapter is not None:
                wanted = bool(spec.adapter)
            else:
                wanted = loss_fn.always_adapt or (loss_fn.same_shape and tuple(s_shape[1:]) != tuple(t_shape[1:]))
            adapters[spec.id] = make_adapter(s_shape, t_shape, force=True) if wanted else nn.Identity()
        return adapters

    def train(self, mode: bool = True) -> "DistillationModule":
        super().train(mode)
        self.teacher.eval()  # BN statistics and dropout of the teacher never change
        return self

    # --- forward passes ----------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.student(images)

    def _student_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        output = self.student(images)
        features = dict(self._student_features.features)
        features[OUTPUT] = output
        return features

    @torch.no_grad()
    def teacher_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher outputs the loss terms need, by layer name (what the cache stores)."""
        output = self.teacher(images)
        features = dict(self._teacher_features.features)
        features[OUTPUT] = output
        return {name: features[name].detach() for name in self.teacher_layers}

    def teacher_outputs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.teacher_cache is not None:
            cached = self.teacher_cache.get(batch["index"].cpu(), batch["view"].cpu())
            return {name: cached[name].to(self.device) for name in self.teacher_layers}
        return self.teacher_forward(batch.get("teacher_image", batch["image"]))

    # --- training ---------------------------------------------------------------------------------
    def compute_losses(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        student = self._student_forward(batch["image"])
        teacher = self.teacher_outputs(batch) if self.specs else {}
        target = batch.get("target")
        losses = {}
        for spec in self.specs:
            loss_fn = self.losses[spec.id]
            student_feature = self.adapters[spec.id](student[spec.student])
            if getattr(loss_fn, "uses_target", False):
                losses[spec.id] = loss_fn(student_feature, teacher[spec.teacher], target=target)
            else:
                losses[spec.id] = loss_fn(student_feature, teacher[spec.teacher])
        if self.ground_truth_weight > 0 and target is not None:
            losses["ground_truth"] = self.task.ground_truth_loss(student[OUTPUT], target)
        return losses

    def total_loss(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        weights = {spec.id: spec.weight for spec in self.specs}
        weights["ground_truth"] = self.ground_truth_weight
        return sum(weights[name] * value for name, value in losses.items())

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        for name, value in losses.items():
            if not torch.isfinite(value):
                raise FloatingPointError(
                    f"loss term {name!r} became {value.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                    f"training stopped. Lower the learning rate or this term's weight/temperature."
                )
            self.log(f"train/{name}", value.detach(), on_step=True, on_epoch=True, batch_size=len(batch["image"]))
        total = self.total_loss(losses)
        self.log("train/loss", total.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["image"]))
        return total

    def on_train_epoch_start(self) -> None:
        # Random state as a function of (seed, epoch): a run resumed at an epoch boundary continues identically.
        torch.manual_seed(self.seed * 100_003 + self.current_epoch)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in list(self.student.parameters()) + list(self.adapters.parameters()) if p.requires_grad]

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.trainable_parameters())
        if not self.scheduler_name or self.scheduler_name == "none":
            return optimizer
        if self.scheduler_name != "cosine":
            raise ValueError(f"optimizer.scheduler must be 'cosine' or 'none', got {self.scheduler_name!r}")
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = cosine_with_warmup(optimizer, total, self.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
