"""Multi-label attributes (face_attributes recipe): one logit per attribute, judged by mean average precision.

A teacher without weights is fitted with per-attribute binary cross-entropy on the labelled split. The student
only matches the teacher's sigmoid outputs (``MultiLabelKDLoss``), so its images need no labels; the same
binary cross-entropy on labels is the optional ground-truth term (``loss.terms.ground_truth``). Teacher and
student are evaluated by the same code: average precision of every attribute on the labelled test split and
their mean.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distill.metrics import multilabel_average_precision
from distill.tasks.base import Task, predict

__all__ = ["MultiLabelTask"]


def _check_pair(output: torch.Tensor, target: torch.Tensor, what: str) -> torch.Tensor:
    """``target`` as float, after checking it is (N, L) like ``output``."""
    if output.ndim != 2 or tuple(target.shape) != tuple(output.shape):
        raise ValueError(f"{what}: expected targets of shape {tuple(output.shape)} (one 0/1 column per attribute) "
                         f"to match the model's output, got {tuple(target.shape)}")
    return target.to(output.dtype)


class MultiLabelTask(Task):
    """``num_labels`` independent binary attributes (40 for CelebA and the synthetic faces)."""

    name = "multilabel"
    primary_metric = "mAP"

    def __init__(self, num_labels: int = 40) -> None:
        if isinstance(num_labels, bool) or int(num_labels) != num_labels or int(num_labels) < 1:
            raise ValueError(f"task.num_labels must be a positive integer, got {num_labels!r}")
        self.num_labels = int(num_labels)

    def _data_labels(self, datamodule: Any) -> int:
        found = int(datamodule.num_classes)
        if found != self.num_labels:
            raise ValueError(f"task.num_labels={self.num_labels} but {type(datamodule).__name__} has {found} "
                             f"attributes; set task.num_labels={found}")
        return found

    def teacher_num_classes(self, datamodule: Any) -> int:
        return self._data_labels(datamodule)

    def student_num_classes(self, datamodule: Any, teacher_output_dim: int) -> int:
        labels = self._data_labels(datamodule)
        if int(teacher_output_dim) != labels:
            raise ValueError(f"the teacher outputs {teacher_output_dim} values per image but the data has {labels} "
                             f"attributes: a multi-label teacher needs one logit per attribute")
        return labels

    def fit_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, _check_pair(output, target, "teacher fitting"))

    def ground_truth_loss(self, student_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(student_output,
                                                  _check_pair(student_output, target, "ground-truth loss"))

    def evaluate(self, model: nn.Module, datamodule: Any, resolution: int,
                 device: torch.device | str = "cpu") -> dict[str, Any]:
        """{"mAP": macro mean over attributes with a positive, "attributes_averaged": how many,
        "attributes_without_positives": [names], "ap_per_attribute": {name: AP or None}}."""
        logits, targets = predict(model, datamodule.eval_dataloader("test", resolution=resolution), device=device)
        if targets is None:
            raise ValueError(f"{type(datamodule).__name__}: the test split has no labels; mean average precision "
                             f"needs labelled test images")
        names = list(getattr(datamodule, "attribute_names", None) or [str(i) for i in range(logits.shape[1])])
        return multilabel_average_precision(logits, _check_pair(logits, targets, "evaluation"), names=names)
