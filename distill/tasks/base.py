"""The Task interface: the part of a recipe that depends on what the model predicts.

The engine (``distill.engine``) is task-agnostic. A task tells it:
- how to build a model for the data (``build_model``: a classifier head of the right size, or a detector around a
  backbone) and the output sizes of teacher and student;
- how one batch flows through a model: ``student_step`` (the student's output, its own supervised losses — the
  ``ground_truth`` loss term — and what loss terms may need to know of the batch) and ``teacher_forward``;
- how a teacher is fitted when no weights are given (``fit_losses``);
- whether the teacher's outputs can be computed once per (sample, view) and cached;
- the evaluation (``evaluate``), run by the same code on teacher and student.

Image tasks (classification, embedding, multi-label, geolocation) use the defaults below: batches are dicts
{"image", "index", "view", ["target"], ["teacher_image"]} and a model maps images to one tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from distill.core.cost import profile
from distill.models.registry import build_model, builder_path

__all__ = ["Task", "StudentStep", "predict", "GROUND_TRUTH"]

# The loss term that weights the task's own supervised losses (labels, or a detector's box losses).
GROUND_TRUTH = "ground_truth"


class Rows:
    """Rows of batches gathered into one tensor as they come: sized by ``expected`` (the rows a loader will give)
    when known, doubled when outgrown. Keeping a small tensor per batch and concatenating at the end pinned the
    memory every batch's activations used in between (freed memory between kept blocks cannot be returned), so a
    run held far more than its outputs, growing with the test set."""

    def __init__(self, expected: int | None = None) -> None:
        self.expected = expected
        self.buffer: torch.Tensor | None = None
        self.rows = 0

    def add(self, batch: torch.Tensor) -> None:
        end = self.rows + len(batch)
        if self.buffer is None or end > len(self.buffer):
            capacity = max(end, self.expected or 0, 2 * (len(self.buffer) if self.buffer is not None else 0))
            grown = batch.new_empty((capacity, *batch.shape[1:]))
            if self.buffer is not None:
                grown[: self.rows] = self.buffer[: self.rows]
            self.buffer = grown
        self.buffer[self.rows:end] = batch
        self.rows = end

    def tensor(self) -> torch.Tensor | None:
        """The rows added (None when none were)."""
        if self.buffer is None:
            return None
        return self.buffer if self.rows == len(self.buffer) else self.buffer[: self.rows].clone()


def _expected_rows(loader: Any) -> int | None:
    """The rows a loader gives in all, when it says (a map-style dataset without a batch dropped), else None."""
    try:
        if getattr(loader, "drop_last", False):
            return None
        return len(loader.sampler) if getattr(loader, "sampler", None) is not None else len(loader.dataset)
    except (AttributeError, TypeError):
        return None


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, *, image_key: str = "image",
            device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``model`` over a loader in eval mode on ``device``; returns (outputs, targets or None), in loader order.
    Each batch's outputs are copied into one tensor for all (``Rows``), not kept per batch."""
    was_training = model.training
    model.eval().to(device)
    outputs, targets = Rows(_expected_rows(loader)), Rows(_expected_rows(loader))
    for batch in loader:
        outputs.add(model(batch[image_key].to(device)).float().cpu())
        if "target" in batch:
            targets.add(batch["target"])
    model.train(was_training)
    gathered = outputs.tensor()
    if gathered is None:
        raise ValueError("predict: the loader gave no batches")
    return gathered, targets.tensor()


@dataclass
class StudentStep:
    """One training forward of the student: its output, its own losses by name, and batch facts for loss terms."""

    output: Any
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base class: image-in, tensor-out tasks. Subclasses implement the sizes, the losses and ``evaluate``."""

    name = "task"
    primary_metric = ""
    # Teacher outputs are a deterministic function of (sample, augmentation view): computed once, then read back.
    caches_teacher_outputs = True
    # The student maps an image batch to one tensor: it can be int8-quantised and pruned (the compress stage).
    compressible = True

    def teacher_reads_context(self, teacher_layers: Iterable[str]) -> bool:
        """Whether the teacher's forward also takes the student step's context to produce ``teacher_layers``
        (``teacher_forward(teacher, batch, context)``), e.g. to run part of the teacher on what the student chose.
        Such outputs depend on the student, so they are never cached. The teacher runs on the batch alone here."""
        return False

    # --- models ---------------------------------------------------------------------------------------------
    def teacher_num_classes(self, datamodule: Any) -> int | None:
        """Output size of a teacher built for this data (None: the teacher's own, e.g. an embedding)."""
        raise NotImplementedError

    def student_num_classes(self, datamodule: Any, teacher_output_dim: int) -> int:
        raise NotImplementedError

    def build_model(self, builder: Mapping[str, Any], *, num_classes: int | None, resolution: int,
                    **extra: Any) -> tuple[nn.Module, str, dict[str, Any]]:
        """Build a model from its config (``_target_`` + plain arguments); returns (model, builder, kwargs).

        The builder and kwargs are what a checkpoint stores to rebuild the model (``distill.load_student``).
        """
        kwargs = {key: value for key, value in builder.items() if key not in ("_target_", "name")}
        kwargs.update(extra)
        if num_classes is not None:
            kwargs["num_classes"] = int(num_classes)
        target = builder_path(builder["_target_"])
        return build_model(target, **kwargs), target, kwargs

    def teacher_for_fitting(self, teacher: nn.Module, datamodule: Any) -> nn.Module:
        """The module trained with ``fit_losses`` when the teacher has to be fitted (the teacher itself by default)."""
        return teacher

    def teacher_from_fitted(self, fitted: nn.Module) -> nn.Module:
        return fitted

    def output_dim(self, model: nn.Module, resolution: int) -> int:
        """Size of one output vector of ``model`` (probed on two blank images in eval mode)."""
        was_training = model.training
        with torch.no_grad():
            dim = model.eval()(torch.zeros(2, 3, resolution, resolution)).shape[1]
        model.train(was_training)
        return int(dim)

    # --- one batch --------------------------------------------------------------------------------------------
    def batch_size(self, batch: Any) -> int:
        return len(batch["image"])

    def probe_batch(self, student_resolution: int, teacher_resolution: int) -> Any:
        """A two-sample batch of blank inputs, used once to learn the shapes of the hooked features."""
        return {"image": torch.zeros(2, 3, student_resolution, student_resolution),
                "teacher_image": torch.zeros(2, 3, teacher_resolution, teacher_resolution)}

    def student_step(self, student: nn.Module, batch: Any, *, with_losses: bool) -> StudentStep:
        output = student(batch["image"])
        losses = {}
        if with_losses:
            target = batch.get("target")
            if target is None:
                raise ValueError(f"the '{GROUND_TRUTH}' loss term needs labels, but this batch of the student's "
                                 f"training data has none")
            losses[GROUND_TRUTH] = self.ground_truth_loss(output, target)
        return StudentStep(output, losses, {"target": batch.get("target")})

    def teacher_forward(self, teacher: nn.Module, batch: Any) -> Any:
        """The teacher's output on the batch (forward hooks record the layers loss terms name)."""
        return teacher(batch.get("teacher_image", batch["image"]))

    def fit_losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """The losses a teacher is fitted on (by the engine's teacher stage), by name."""
        return {"fit": self.fit_loss(model(batch["image"]), batch["target"])}

    def fit_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ground_truth_loss(self, student_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"task {self.name!r} has no ground-truth loss")

    def check_ground_truth(self, datamodule: Any) -> None:
        """Fail before any work when the ground-truth term is asked for but the student's data has no labels."""
        if datamodule.split("train").targets is None:
            raise ValueError(
                f"loss.terms.{GROUND_TRUTH} needs labels on the student's training images, but "
                f"{type(datamodule).__name__} serves its 'train' split without labels; remove the term "
                f"(~loss.terms.{GROUND_TRUTH}) or use data that labels them (e.g. data.student_labels=true, or "
                f"data.num_train_identities=0 for the synthetic faces, where the data module has that option)")

    # --- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, datamodule: Any, resolution: int,
                 device: torch.device | str = "cpu") -> dict[str, Any]:
        raise NotImplementedError

    def cost(self, model: nn.Module, resolution: int) -> dict[str, Any]:
        """Mult-adds and parameters by the paper's convention (``distill.cost.profile``)."""
        counted = profile(model, input_size=(3, resolution, resolution))
        return {"mult_adds": counted.mult_adds, "params": counted.params}

    def latency_input(self, datamodule: Any, resolution: int) -> Any:
        """What one batch-1 latency measurement feeds the model (a blank image by default)."""
        return torch.zeros(1, 3, resolution, resolution)

    def preprocessing(self, datamodule: Any) -> dict[str, Any]:
        """How a user prepares an image for the student (stored in its checkpoint): the normalisation, and the
        decoded size and centre-crop share of the data's images (``distill.models.preprocess`` repeats them)."""
        dataset = datamodule.dataset("test")
        decoded = {key: value for key in ("image_size", "crop_fraction")
                   if isinstance(value := getattr(datamodule, key, None), (int, float)) and not isinstance(value, bool)}
        if getattr(datamodule, "align", False) is True:  # trained on MTCNN face crops: users give face crops
            decoded = {"image_size": decoded.get("image_size"), "aligned_faces": True}
        return {"mean": list(dataset.mean.flatten().tolist()), "std": list(dataset.std.flatten().tolist()), **decoded}

    def save_artifacts(self, datamodule: Any, run_dir: Path) -> dict[str, Any]:
        """Write what a user needs beside the student to use it (e.g. a class-to-place table) into ``run_dir``.

        Returns plain data (str, numbers, lists, dicts) stored in the student checkpoint's meta and in results.json
        under "artifacts"; nothing by default.
        """
        return {}
