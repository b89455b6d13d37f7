"""Losses on classifier outputs (logits): KD, DKD, DIST and multi-label KD."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.core.labels import UNLABELLED
from distill.losses.registry import DistillationLoss, register_loss

__all__ = ["KDLoss", "DKDLoss", "DISTLoss", "MultiLabelKDLoss"]


@register_loss("kd")
class KDLoss(DistillationLoss):
    """Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

    KL(softmax(teacher / T) || softmax(student / T)) summed over classes, averaged over the batch,
    and multiplied by T^2 so that gradient magnitudes do not shrink as the temperature grows.
    """

    kind = "logits"

    def __init__(self, temperature: float = 4.0):
        super().__init__()
        self.temperature = self._check_hyperparameter("temperature", temperature)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_ndim(student, 2, "student logits (batch, classes)")
        self._check_same_shape(student, teacher)
        t = self.temperature
        log_p_student = F.log_softmax(student / t, dim=1)
        log_p_teacher = F.log_softmax(teacher.detach() / t, dim=1)
        kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
        return kl * t**2


@register_loss("dkd")
class DKDLoss(DistillationLoss):
    """Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation" (CVPR 2022).

    Splits KD into TCKD, the KL between the binary (target, non-target) distributions, and NCKD,
    the KL between the distributions over the non-target classes only (the target logit is masked
    by subtracting a large number). Loss = (alpha * TCKD + beta * NCKD) * T^2, batch mean.
    Without labels (``target=None``, or ``UNLABELLED`` for some images) the teacher's argmax is taken as the
    target class.
    The paper's linear warm-up of the loss weight is left to the training schedule.
    """

    kind = "logits"
    uses_target = True

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0):
        super().__init__()
        self.alpha = self._check_hyperparameter("alpha", alpha, allow_zero=True)
        self.beta = self._check_hyperparameter("beta", beta, allow_zero=True)
        self.temperature = self._check_hyperparameter("temperature", temperature)

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        self._check_ndim(student, 2, "student logits (batch, classes)")
        self._check_same_shape(student, teacher)
        teacher = teacher.detach()
        batch, num_classes = student.shape
        if num_classes < 2:
            raise ValueError(f"DKDLoss: needs at least 2 classes, got logits of shape {tuple(student.shape)}")
        if target is None:  # no labels at all: every image is unlabelled
            target = torch.full((batch,), UNLABELLED, dtype=torch.long)
        target = self._check_target(target, batch, num_classes).to(student.device)
        target = torch.where(target == UNLABELLED, teacher.argmax(dim=1), target)

        t = self.temperature
        gt_mask = F.one_hot(target, num_classes).to(dtype=torch.bool)
        p_student = F.softmax(student / t, dim=1)
        p_teacher = F.softmax(teacher / t, dim=1)

        # TCKD: binary distributions (p_target, 1 - p_target).
        pt_student = (p_student * gt_mask).sum(dim=1)
        pt_teacher = (p_teacher * gt_mask).sum(dim=1)
        binary_student = torch.stack([pt_student, 1.0 - pt_student], dim=1).clamp_min(1e-12)
        binary_teacher = torch.stack([pt_teacher, 1.0 - pt_teacher], dim=1)
        tckd = F.kl_div(binary_student.log(), binary_teacher, reduction="batchmean")

        # NCKD: distributions over the non-target classes.
        masked_student = student / t - 1000.0 * gt_mask
        masked_teacher = teacher / t - 1000.0 * gt_mask
        nckd = F.kl_div(
            F.log_softmax(masked_student, dim=1),
            F.log_softmax(masked_teacher, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return (self.alpha * tckd + self.beta * nckd) * t**2

    @staticmethod
    def _check_target(target: torch.Tensor, batch: int, num_classes: int) -> torch.Tensor:
        target = torch.as_tensor(target)
        if target.shape != (batch,) or target.dtype.is_floating_point or target.dtype == torch.bool:
            raise ValueError(
                f"DKDLoss: target must be integer class indices of shape ({batch},), "
                f"got shape {tuple(target.shape)} and dtype {target.dtype}"
            )
        if batch and (int(target.min()) < UNLABELLED or int(target.max()) >= num_classes):
            raise ValueError(f"DKDLoss: target class indices must lie in [0, {num_classes - 1}] "
                             f"(or be {UNLABELLED}: unlabelled)")
        return target.long()


def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@register_loss("dist")
class DISTLoss(DistillationLoss):
    """Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher" (NeurIPS 2022).

    Matches relations instead of exact probabilities: on softmax(logits / tau), the inter-class
    term is 1 - Pearson correlation between student and teacher per sample (over classes), the
    intra-class term is 1 - Pearson correlation per class (over the batch). Loss =
    tau^2 * (beta * inter + gamma * intra). With a batch of one sample the intra-class term is
    the constant 1 (no correlation is defined across a single sample).
    """

    kind = "logits"

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, tau: float = 1.0):
        super().__init__()
        self.beta = self._check_hyperparameter("beta", beta, allow_zero=True)
        self.gamma = self._check_hyperparameter("gamma", gamma, allow_zero=True)
        self.tau = self._check_hyperparameter("tau", tau)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_ndim(student, 2, "student logits (batch, classes)")
        self._check_same_shape(student, teacher)
        y_student = F.softmax(student / self.tau, dim=1)
        y_teacher = F.softmax(teacher.detach() / self.tau, dim=1)
        inter = 1.0 - _pearson_rows(y_student, y_teacher).mean()
        intra = 1.0 - _pearson_rows(y_student.t(), y_teacher.t()).mean()
        return self.tau**2 * (self.beta * inter + self.gamma * intra)


@register_loss("multilabel_kd")
class MultiLabelKDLoss(DistillationLoss):
    """Multi-label distillation of Howard et al., "MobileNets: Efficient Convolutional Neural
    Networks for Mobile Vision Applications" (2017), Sec. 4.3 (face attributes).

    Per-attribute binary cross-entropy of the student's logits against the teacher's sigmoid
    probabilities, both at temperature T, times T^2, averaged over attributes and batch. Needs no
    labels. Its minimum, reached when student == teacher, is the teacher's mean binary entropy
    (times T^2), not zero.
    """

    kind = "logits"

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = self._check_hyperparameter("temperature", temperature)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_ndim(student, 2, "student logits (batch, attributes)")
        self._check_same_shape(student, teacher)
        t = self.temperature
        soft_targets = torch.sigmoid(teacher.detach() / t)
        bce = F.binary_cross_entropy_with_logits(student / t, soft_targets, reduction="mean")
        return bce * t**2
