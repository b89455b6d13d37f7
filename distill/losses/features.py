"""Losses on intermediate feature maps: FitNet hints and attention transfer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.registry import DistillationLoss, register_loss

__all__ = ["FitNetLoss", "AttentionTransferLoss"]


@register_loss("fitnet")
class FitNetLoss(DistillationLoss):
    """Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep Nets" (ICLR 2015).

    Mean squared error (mean over all elements) between the student's guided-layer feature,
    already mapped to the teacher's shape by a regressor (adapter), and the teacher's hint feature.
    """

    kind = "features"
    always_adapt = True

    def __init__(self):
        super().__init__()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_same_shape(
            student, teacher, hint="an adapter (regressor) mapping the student feature to the teacher's shape is needed"
        )
        return F.mse_loss(student, teacher.detach(), reduction="mean")


@register_loss("attention")
class AttentionTransferLoss(DistillationLoss):
    """Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the Performance of
    Convolutional Neural Networks via Attention Transfer" (ICLR 2017).

    Attention map = mean over channels of |f|^p, flattened and L2-normalised per sample; loss =
    mean over batch and positions of the squared difference of the student's and teacher's maps.
    Channel counts may differ; if spatial sizes differ the larger map is average-pooled to the
    smaller size. The paper weights this term by beta/2 = 500 per layer pair (set in the config).
    """

    kind = "features"
    same_shape = False

    def __init__(self, p: float = 2):
        super().__init__()
        self.p = self._check_hyperparameter("p", p)

    def _energy(self, feature: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1, H, W): mean over channels of |f|^p (before normalisation)."""
        return feature.abs().pow(self.p).mean(dim=1, keepdim=True)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_ndim(student, 4, "student feature maps (batch, channels, height, width)")
        self._check_ndim(teacher, 4, "teacher feature maps (batch, channels, height, width)")
        self._check_same_batch(student, teacher)
        teacher = teacher.detach()
        student_map = self._energy(student)
        teacher_map = self._energy(teacher)
        size = (min(student.shape[2], teacher.shape[2]), min(student.shape[3], teacher.shape[3]))
        if tuple(student_map.shape[2:]) != size:
            student_map = F.adaptive_avg_pool2d(student_map, size)
        if tuple(teacher_map.shape[2:]) != size:
            teacher_map = F.adaptive_avg_pool2d(teacher_map, size)
        student_map = F.normalize(student_map.flatten(1), dim=1)
        teacher_map = F.normalize(teacher_map.flatten(1), dim=1)
        return (student_map - teacher_map).pow(2).mean()
