"""Any timm model as a teacher, optionally with weights from a local file (never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import timm
from torch import nn

from distill.models.registry import register_builder
from distill.models.teachers.weights import load_weights_file

__all__ = ["build_timm_teacher"]


@register_builder
def build_timm_teacher(model_name: str, num_classes: int | None = None, weights: str | os.PathLike | None = None,
                       **kwargs) -> nn.Module:
    """``timm.create_model(model_name, pretrained=False)``; ``weights`` is a local state-dict file to load."""
    if not timm.is_model(model_name):
        raise ValueError(f"teacher.builder.model_name={model_name!r} is not a timm model (see timm.list_models())")
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    model = timm.create_model(model_name, pretrained=False, **kwargs)
    if weights:
        load_weights_file(model, Path(weights))
    return model
