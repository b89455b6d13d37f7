"""Distillation losses, each an ``nn.Module`` named after its paper, and the registry that maps
config names to them (``create_loss("kd", temperature=4.0)``)."""

from distill.losses.detection import BoxHeadImitationLoss, FeatureImitationLoss, HeadImitationLoss
from distill.losses.embedding import CosineEmbeddingLoss, EmbeddingMSELoss
from distill.losses.features import AttentionTransferLoss, FitNetLoss
from distill.losses.logits import DISTLoss, DKDLoss, KDLoss, MultiLabelKDLoss
from distill.losses.registry import LOSSES, DistillationLoss, create_loss, list_losses, register_loss
from distill.losses.relational import PKTLoss, RKDLoss, SPKDLoss

__all__ = [
    "DistillationLoss",
    "LOSSES",
    "register_loss",
    "create_loss",
    "list_losses",
    "KDLoss",
    "DKDLoss",
    "DISTLoss",
    "MultiLabelKDLoss",
    "EmbeddingMSELoss",
    "CosineEmbeddingLoss",
    "FitNetLoss",
    "AttentionTransferLoss",
    "RKDLoss",
    "PKTLoss",
    "SPKDLoss",
    "FeatureImitationLoss",
    "HeadImitationLoss",
    "BoxHeadImitationLoss",
]
