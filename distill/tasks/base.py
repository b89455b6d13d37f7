"""The Task interface: the part of a recipe that depends on what the model predicts.

The engine (train.py, module.py) is task-agnostic; a task tells it the student's output size, how to fit
a teacher from labels when no weights are given, the optional ground-truth loss, and the evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["Task", "predict"]


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, *, image_key: str = "image",
            device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``model`` over a loader in eval mode; returns (outputs, targets or None), in loader order."""
    was_training = model.training
    model.eval().to(device)
    outputs, targets = [], []
    for batch in loader:
        outputs.append(model(batch[image_key].to(device)).float().cpu())
        if "target" in batch:
            targets.append(batch["target"])
    model.train(was_training)
    return torch.cat(outputs), (torch.cat(targets) if targets else None)


class Task:
    """Base class; subclasses implement the methods below.

    A task whose training does not fit the engine's image-in, tensor-out loop (object detection) may instead
    define ``run_recipe(cfg, *, run_dir, callbacks, started) -> results dict``; ``distill.train.run`` then hands
    the whole run to it.
    """

    name = "task"
    primary_metric = ""

    def teacher_num_classes(self, datamodule: Any) -> int | None:
        """Output size of a teacher built for this data (None: the teacher's own, e.g. an embedding)."""
        raise NotImplementedError

    def student_num_classes(self, datamodule: Any, teacher_output_dim: int) -> int:
        raise NotImplementedError

    def teacher_for_fitting(self, teacher: nn.Module, datamodule: Any) -> nn.Module:
        """The module trained with `fit_loss` when the teacher has to be fitted (the teacher itself by default)."""
        return teacher

    def teacher_from_fitted(self, fitted: nn.Module) -> nn.Module:
        return fitted

    def fit_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ground_truth_loss(self, student_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"task {self.name!r} has no ground-truth loss")

    def evaluate(self, model: nn.Module, datamodule: Any, resolution: int) -> dict[str, Any]:
        raise NotImplementedError

    def save_artifacts(self, datamodule: Any, run_dir: Path) -> dict[str, Any]:
        """Write what a user needs beside the student to use it (e.g. a class-to-place table) into ``run_dir``.

        Returns plain data (str, numbers, lists, dicts) stored in the student checkpoint's meta and in results.json
        under "artifacts"; nothing by default.
        """
        return {}
