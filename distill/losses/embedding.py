"""Losses on embeddings (one vector per sample): squared-difference and cosine matching."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.registry import DistillationLoss, register_loss

__all__ = ["EmbeddingMSELoss", "CosineEmbeddingLoss"]


@register_loss("embedding_mse")
class EmbeddingMSELoss(DistillationLoss):
    """Embedding distillation of Howard et al., "MobileNets: Efficient Convolutional Neural
    Networks for Mobile Vision Applications" (2017), Sec. 4.5 (FaceNet distillation).

    Squared difference between student and teacher embeddings, summed over the embedding
    dimension and averaged over the batch. ``normalize=True`` compares unit-length embeddings,
    the form a FaceNet verifier uses (squared L2 distance of L2-normalised vectors).
    """

    kind = "embedding"

    def __init__(self, normalize: bool = False):
        super().__init__()
        if not isinstance(normalize, bool):
            raise ValueError(f"EmbeddingMSELoss: normalize must be True or False, got {normalize!r}")
        self.normalize = normalize

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_same_batch(student, teacher)
        self._check_same_shape(student, teacher, hint="add a projection so the embedding sizes match")
        student = student.flatten(1)
        teacher = teacher.detach().flatten(1)
        if self.normalize:
            student = F.normalize(student, dim=1)
            teacher = F.normalize(teacher, dim=1)
        return (student - teacher).pow(2).sum(dim=1).mean()


@register_loss("cosine")
class CosineEmbeddingLoss(DistillationLoss):
    """Cosine embedding matching: 1 - cosine similarity between student and teacher embeddings,
    averaged over the batch. Ignores embedding length, as a cosine-similarity verifier does."""

    kind = "embedding"

    def __init__(self):
        super().__init__()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        self._check_same_batch(student, teacher)
        self._check_same_shape(student, teacher, hint="add a projection so the embedding sizes match")
        similarity = F.cosine_similarity(student.flatten(1), teacher.detach().flatten(1), dim=1)
        return (1.0 - similarity).mean()
