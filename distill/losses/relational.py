"""Relational losses: match how samples relate to each other, so student and teacher widths may differ."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.registry import DistillationLoss, register_loss

__all__ = ["RKDLoss", "PKTLoss", "SPKDLoss"]


def _pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, D) -> (B, B) Euclidean distances with an exact zero diagonal and a finite gradient."""
    squared_norms = x.pow(2).sum(dim=1)
    squared = squared_norms.unsqueeze(1) + squared_norms.unsqueeze(0) - 2.0 * (x @ x.t())
    off_diagonal = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return squared.clamp_min(eps).sqrt() * off_diagonal


def _triplet_cosines(x: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B, B): entry [i, j, k] is the cosine of the angle at x_i between x_j and x_k."""
    directions = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)
    return directions @ directions.transpose(1, 2)


@register_loss("rkd")
class RKDLoss(DistillationLoss):
    """Park, Kim, Lu & Cho, "Relational Knowledge Distillation" (CVPR 2019).

    Distance-wise term: pairwise Euclidean distances of the batch, each divided by its mean over
    the off-diagonal pairs, compared by smooth L1 (mean over all pairs). Angle-wise term: cosines
    of the angles formed by every triplet, compared by smooth L1 (mean over all triplets).
    Loss = distance_weight * distance + angle_weight * angle. Inputs are flattened to (B, D);
    both terms are unchanged if either embedding is scaled by a constant.
    """

    kind = "embedding"
    same_shape = False

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0):
        super().__init__()
        self.distance_weight = self._check_hyperparameter("distance_weight", distance_weight, allow_zero=True)
        self.angle_weight = self._check_hyperparameter("angle_weight", angle_weight, allow_zero=True)

    @staticmethod
    def _normalised_distances(x: torch.Tensor) -> torch.Tensor:
        distances = _pairwise_distances(x)
        num_pairs = x.shape[0] * (x.shape[0] - 1)
        return distances / (distances.sum() / num_pairs)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_same_batch(student, teacher)
        if student.shape[0] < 2:
            raise ValueError(
                f"RKDLoss: needs a batch of at least 2 samples to form pairs, got student shape {tuple(student.shape)}"
            )
        student = student.flatten(1)
        teacher = teacher.detach().flatten(1)
        loss = student.new_zeros(())
        if self.distance_weight:
            distance = F.smooth_l1_loss(self._normalised_distances(student), self._normalised_distances(teacher))
            loss = loss + self.distance_weight * distance
        if self.angle_weight:
            angle = F.smooth_l1_loss(_triplet_cosines(student), _triplet_cosines(teacher))
            loss = loss + self.angle_weight * angle
        return loss


@register_loss("pkt")
class PKTLoss(DistillationLoss):
    """Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer" (ECCV 2018).

    Cosine similarities between the samples of the batch, mapped to [0, 1] and normalised per row
    into conditional probability distributions, for student and teacher; loss = mean over all
    (i, j) of p_t log((p_t + eps) / (p_s + eps)), the KL divergence (teacher || student) of the
    reference implementation. Inputs are flattened to (B, D).
    """

    kind = "embedding"
    same_shape = False

    def __init__(self, eps: float = 1e-7):
        super().__init__()
        self.eps = self._check_hyperparameter("eps", eps)

    def _conditional_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        x = x / (x.norm(dim=1, keepdim=True) + self.eps)
        similarity = (x @ x.t() + 1.0) / 2.0
        return similarity / similarity.sum(dim=1, keepdim=True)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_same_batch(student, teacher)
        p_student = self._conditional_probabilities(student.flatten(1))
        p_teacher = self._conditional_probabilities(teacher.detach().flatten(1))
        return (p_teacher * torch.log((p_teacher + self.eps) / (p_student + self.eps))).mean()


@register_loss("spkd")
class SPKDLoss(DistillationLoss):
    """Tung & Mori, "Similarity-Preserving Knowledge Distillation" (ICCV 2019).

    Each sample's activation is flattened; G = F F^T (B x B) with rows L2-normalised, for student
    and teacher; loss = ||G_s - G_t||_F^2 / B^2. Unchanged if either activation is scaled by a
    constant; channel counts and spatial sizes may differ.
    """

    kind = "features"
    same_shape = False

    def __init__(self):
        super().__init__()

    @staticmethod
    def _similarity(x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return F.normalize(x @ x.t(), p=2, dim=1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_same_batch(student, teacher)
        batch = student.shape[0]
        difference = self._similarity(student) - self._similarity(teacher.detach())
        return difference.pow(2).sum() / batch**2
