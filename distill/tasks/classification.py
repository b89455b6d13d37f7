"""Single-label classification (smoke, dogs, planet cells): logits out, cross-entropy, top-k accuracy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distill.core.labels import UNLABELLED
from distill.metrics import most_confused_pairs, topk_accuracy
from distill.tasks.base import Task, predict

__all__ = ["ClassificationTask"]


class ClassificationTask(Task):
    name = "classification"
    primary_metric = "top1"

    def __init__(self, top_k: tuple[int, ...] = (1, 5), label_smoothing: float = 0.0, confused_pairs: int = 10) -> None:
        self.top_k = tuple(top_k)
        self.label_smoothing = float(label_smoothing)
        self.confused_pairs = int(confused_pairs)

    def teacher_num_classes(self, datamodule: Any) -> int:
        return datamodule.num_classes

    def student_num_classes(self, datamodule: Any, teacher_output_dim: int) -> int:
        return datamodule.num_classes

    def fit_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)

    def ground_truth_loss(self, student_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the labelled images of the batch (``UNLABELLED`` ones learn from the teacher only);
        zero, with a gradient path, when none of the batch is labelled."""
        labelled = target != UNLABELLED
        if not bool(labelled.any()):
            return student_output.sum() * 0.0
        return F.cross_entropy(student_output[labelled], target[labelled], label_smoothing=self.label_smoothing)

    def evaluate(self, model: nn.Module, datamodule: Any, resolution: int,
                 device: torch.device | str = "cpu") -> dict[str, Any]:
        logits, targets = predict(model, datamodule.eval_dataloader("test", resolution=resolution), device=device)
        if targets is None:
            raise ValueError("the test split has no labels: classification needs labelled test data")
        ks = tuple(k for k in self.top_k if k <= logits.shape[1])
        metrics: dict[str, Any] = topk_accuracy(logits, targets, ks=ks)
        names = getattr(datamodule, "class_names", None)
        metrics["most_confused"] = most_confused_pairs(logits, targets, class_names=names, k=self.confused_pairs)
        return metrics
