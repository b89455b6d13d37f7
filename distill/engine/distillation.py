"""DistillationModule: a frozen teacher, a trainable student, and a weighted sum of loss terms.

Loss terms are declared in config, one per entry of ``loss.terms`` (a mapping from a term id to its settings):

    terms:
      kd:           {weight: 0.9, temperature: 4.0}                     # name defaults to the id
      hint:         {name: fitnet, student: stage3, teacher: block8, weight: 0.5}
      ground_truth: {weight: 0.1}                                       # the task's own loss (labels, boxes)

``student``/``teacher`` name the layers whose outputs the loss compares ("output" by default); where the
shapes differ a learnable adapter (1x1 conv or linear) maps the student's feature to the teacher's shape. The
``ground_truth`` term weights what the task computes from the labels (cross-entropy, a detector's box losses).

A training checkpoint (``checkpoints/last.ckpt``) holds the student, the adapters, the losses' own parameters and
the optimizer, not the frozen teacher: the engine rebuilds the teacher from its weights or cache before resuming,
and the checkpoint records the teacher's fingerprint so that a resume with another teacher is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from distill.core.fingerprint import module_fingerprint
from distill.engine.features import OUTPUT, FeatureRecorder, first_tensor, make_adapter
from distill.engine.training import TrainingModule
from distill.losses import create_loss
from distill.tasks.base import GROUND_TRUTH, Task

__all__ = ["LossTermSpec", "parse_loss_terms", "DistillationModule"]

_TERM_KEYS = {"name", "weight", "student", "teacher", "adapter"}
_TEACHER_PREFIX = "teacher."
_TEACHER_FINGERPRINT_KEY = "distill_teacher_fingerprint"


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
    """Accepts the mapping form ({id: settings}) or a list of settings with a 'name' each; a null weight drops a term."""
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
        name = str(settings.get("name", term_id))
        kwargs = {k: v for k, v in settings.items() if k not in _TERM_KEYS}
        if name == GROUND_TRUTH and kwargs:
            raise ValueError(f"loss.terms.{term_id}: the {GROUND_TRUTH} term takes only a weight, got {sorted(kwargs)}")
        specs.append(LossTermSpec(id=term_id, name=name, weight=float(settings.get("weight", 1.0)),
                                  student=str(settings.get("student", OUTPUT)),
                                  teacher=str(settings.get("teacher", OUTPUT)),
                                  adapter=settings.get("adapter"), kwargs=kwargs))
    return specs


class DistillationModule(TrainingModule):
    """Trains ``student`` to match ``teacher`` (frozen, always in eval mode, never optimised)."""

    def __init__(self, student: nn.Module, teacher: nn.Module | None, task: Task, loss_terms: list[LossTermSpec], *,
                 optimizer: Callable[..., torch.optim.Optimizer], scheduler: str | None = "cosine",
                 warmup_steps: int = 0, student_resolution: int = 224, teacher_resolution: int | None = None,
                 seed: int = 0) -> None:
        super().__init__(optimizer=optimizer, scheduler=scheduler, warmup_steps=warmup_steps, seed=seed)
        terms = list(loss_terms)
        ground_truth = [spec for spec in terms if spec.name == GROUND_TRUTH]
        self.specs = [spec for spec in terms if spec.name != GROUND_TRUTH]
        self.ground_truth_weight = sum(spec.weight for spec in ground_truth)
        if not self.specs and self.ground_truth_weight <= 0:
            raise ValueError(f"nothing to train on: loss.terms has no distillation term and no '{GROUND_TRUTH}' term "
                             f"with a positive weight")
        if self.specs and teacher is None:
            raise ValueError(f"loss terms {[s.id for s in self.specs]} need a teacher")
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.task = task
        self.student_resolution = int(student_resolution)
        self.teacher_resolution = int(teacher_resolution or student_resolution)
        self.teacher_cache = None  # set by the engine when teacher outputs are precomputed

        self.losses = nn.ModuleDict({spec.id: create_loss(spec.name, **spec.kwargs) for spec in self.specs})
        self.student_layers = sorted({spec.student for spec in self.specs} | {OUTPUT})
        self.teacher_layers = sorted({spec.teacher for spec in self.specs})
        # the teacher's outputs depend on the student's step (e.g. its sampled regions): passed the step's context
        self.teacher_reads_context = teacher is not None and task.teacher_reads_context(self.teacher_layers)
        self._student_features = FeatureRecorder(student, self.student_layers, model_label="student")
        self._teacher_features = (FeatureRecorder(teacher, self.teacher_layers, model_label="teacher")
                                  if teacher is not None else None)
        self.adapters = nn.ModuleDict(self._build_adapters())
        self._teacher_fingerprint: str | None = None

    # --- set-up -------------------------------------------------------------------------------------------------
    def _build_adapters(self) -> dict[str, nn.Module]:
        """Probe both models once to learn feature shapes; create adapters where they differ, and let losses size
        their own learnable parts."""
        if not self.specs:
            return {}
        probe = self.task.probe_batch(self.student_resolution, self.teacher_resolution)
        with torch.no_grad():
            was_training = self.student.training
            self.student.eval()
            step = self.task.student_step(self.student, probe, with_losses=False)
            student_out = self._student_features_of(step)
            self.student.train(was_training)
            teacher_out = self.teacher_forward(probe, step.context)
        adapters = {}
        for spec in self.specs:
            loss_fn = self.losses[spec.id]
            student_feature, teacher_feature = student_out[spec.student], teacher_out[spec.teacher]
            loss_fn.setup(student_feature, teacher_feature)
            if loss_fn.structured:
                adapters[spec.id] = nn.Identity()
                continue
            s_shape, t_shape = first_tensor(student_feature).shape, first_tensor(teacher_feature).shape
            if spec.adapter is not None:
                wanted = bool(spec.adapter)
            else:
                wanted = loss_fn.always_adapt or (loss_fn.same_shape and tuple(s_shape[1:]) != tuple(t_shape[1:]))
            adapters[spec.id] = make_adapter(s_shape, t_shape, force=True) if wanted else nn.Identity()
        return adapters

    def train(self, mode: bool = True) -> "DistillationModule":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # BN statistics and dropout of the teacher never change
        return self

    # --- forward passes -----------------------------------------------------------------------------------------
    def forward(self, images: Any) -> Any:
        return self.student(images)

    def _student_features_of(self, step) -> dict[str, Any]:
        features = dict(self._student_features.features)
        features[OUTPUT] = step.output
        return features

    @torch.no_grad()
    def teacher_forward(self, batch: Any, context: dict | None = None) -> dict[str, Any]:
        """The teacher outputs the loss terms need, by layer name (what the cache stores). ``context`` is the
        student step's, handed to the task when its teacher reads it for these layers
        (``Task.teacher_reads_context``: a Faster R-CNN's regions); a layer that did not run on this batch is None."""
        self._teacher_features.features.clear()  # never a layer's output of an earlier batch
        extra = (context,) if self.teacher_reads_context else ()
        output = self.task.teacher_forward(self.teacher, batch, *extra)
        features = dict(self._teacher_features.features)
        features[OUTPUT] = output
        return {name: features.get(name) for name in self.teacher_layers}

    def teacher_outputs(self, batch: Any, context: dict | None = None) -> dict[str, Any]:
        if self.teacher_cache is not None:
            cached = self.teacher_cache.get(batch["index"].cpu(), batch["view"].cpu())
            return {name: cached[name].to(self.device) for name in self.teacher_layers}
        return self.teacher_forward(batch, context)

    # --- training -----------------------------------------------------------------------------------------------
    def batch_size(self, batch: Any) -> int:
        return self.task.batch_size(batch)

    def loss_weights(self) -> dict[str, float]:
        weights = {spec.id: spec.weight for spec in self.specs}
        weights[GROUND_TRUTH] = self.ground_truth_weight
        return weights

    def compute_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        self._student_features.features.clear()  # never a layer's output of an earlier batch
        step = self.task.student_step(self.student, batch, with_losses=self.ground_truth_weight > 0)
        student = self._student_features_of(step)
        teacher = self.teacher_outputs(batch, step.context) if self.specs else {}
        losses = {}
        for spec in self.specs:
            loss_fn = self.losses[spec.id]
            student_feature, teacher_feature = student.get(spec.student), teacher[spec.teacher]
            if student_feature is None or teacher_feature is None:
                if loss_fn.optional_per_batch:  # e.g. a detector's box head, which runs on labelled images only
                    continue
                missing = "student" if student_feature is None else "teacher"
                raise RuntimeError(f"loss term {spec.id}: the {missing}'s layer "
                                   f"{spec.student if missing == 'student' else spec.teacher!r} did not run on this "
                                   f"batch")
            if not loss_fn.structured:
                student_feature, teacher_feature = first_tensor(student_feature), first_tensor(teacher_feature)
            extra = {}
            if getattr(loss_fn, "uses_target", False):
                extra["target"] = step.context.get("target")
            if loss_fn.uses_context:
                extra["context"] = step.context
            losses[spec.id] = loss_fn(self.adapters[spec.id](student_feature), teacher_feature, **extra)
        if self.ground_truth_weight > 0 and step.losses:
            losses[GROUND_TRUTH] = sum(step.losses.values())
            if len(step.losses) > 1:  # e.g. a detector's classification and box losses, logged one by one
                for name, value in step.losses.items():
                    self.log(f"train/{GROUND_TRUTH}/{name}", value.detach(), on_step=True, on_epoch=True,
                             batch_size=self.batch_size(batch), sync_dist=True)
        return losses

    # --- checkpoints: the frozen teacher is rebuilt, never saved -------------------------------------------------
    def teacher_fingerprint(self) -> str | None:
        """Digest of the frozen teacher's weights (computed once: the teacher never changes)."""
        if self.teacher is not None and self._teacher_fingerprint is None:
            self._teacher_fingerprint = module_fingerprint(self.teacher)
        return self._teacher_fingerprint

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint.get("state_dict") or {}
        for key in [key for key in state if key.startswith(_TEACHER_PREFIX)]:
            del state[key]
        if self.teacher is not None:
            checkpoint[_TEACHER_FINGERPRINT_KEY] = self.teacher_fingerprint()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict")
        if self.teacher is None or state is None:
            return
        recorded = checkpoint.get(_TEACHER_FINGERPRINT_KEY)
        if recorded is not None and recorded != self.teacher_fingerprint():
            raise ValueError(f"the checkpoint was trained with another teacher (fingerprint {recorded}, this run's "
                             f"teacher {self.teacher_fingerprint()}): resume with the same teacher.weights / data / "
                             f"seed, or start a new run")
        for key, value in self.teacher.state_dict().items():  # the teacher as rebuilt (older checkpoints hold it)
            state.setdefault(_TEACHER_PREFIX + key, value)

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = list(self.student.parameters()) + list(self.adapters.parameters()) + list(self.losses.parameters())
        return [p for p in params if p.requires_grad]
