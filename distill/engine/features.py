"""Feature hooks and adapters: how a loss term reaches inside the student and the teacher.

A loss term names a layer of each model ("stage3", "block8", or "output" for the model's own output).
`FeatureRecorder` keeps the latest output of each named layer through forward hooks; `make_adapter`
builds the small learnable map (1x1 conv or linear) that brings a student feature to the teacher's shape.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OUTPUT", "FeatureRecorder", "FeatureAdapter", "make_adapter", "layer_names", "first_tensor"]

OUTPUT = "output"


def first_tensor(value):
    """A layer's output as one tensor: the first element of a tuple or list output (e.g. (features, aux))."""
    while isinstance(value, (tuple, list)) and value:
        value = value[0]
    return value


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


class FeatureRecorder:
    """Registers forward hooks on named sub-modules and stores what they return on the latest call, as returned
    (a tensor, or a dict / tuple for structured outputs such as a detector's head)."""

    def __init__(self, model: nn.Module, names: Iterable[str], *, model_label: str = "model") -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._handles = []
        known = dict(model.named_modules())
        for name in sorted(set(names) - {OUTPUT}):
            if name not in known:
                close = [n for n in known if n and (n.startswith(name) or name in n)][:8]
                hint = f" Similar names: {close}." if close else ""
                raise ValueError(
                    f"loss term refers to layer {name!r} of the {model_label}, which has no such sub-module.{hint} "
                    f"Use 'output' for the model output, or a name from model.named_modules()."
                )
            self._handles.append(known[name].register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def store(_module: nn.Module, _inputs: tuple, output) -> None:
            self.features[name] = output

        return store

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class FeatureAdapter(nn.Module):
    """1x1 conv (maps) or linear (vectors) from the student's channels to the teacher's, resizing maps if needed."""

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        super().__init__()
        if len(student_shape) != len(teacher_shape):
            raise ValueError(f"cannot adapt a student feature of shape {tuple(student_shape)} "
                             f"to a teacher feature of shape {tuple(teacher_shape)}")
        self.spatial = tuple(teacher_shape[2:]) if len(teacher_shape) == 4 else None
        if len(teacher_shape) == 4:
            self.proj = nn.Sequential(nn.Conv2d(student_shape[1], teacher_shape[1], 1, bias=False),
                                      nn.BatchNorm2d(teacher_shape[1]))
        elif len(teacher_shape) == 2:
            self.proj = nn.Linear(student_shape[1], teacher_shape[1])
        else:
            raise ValueError(f"adapters handle (B, C, H, W) maps and (B, D) vectors, got {tuple(teacher_shape)}")

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        if self.spatial is not None and tuple(feature.shape[2:]) != self.spatial:
            feature = F.interpolate(feature, size=self.spatial, mode="bilinear", align_corners=False)
        return self.proj(feature)


def make_adapter(student_shape: torch.Size, teacher_shape: torch.Size, force: bool = False) -> nn.Module:
    """An adapter where shapes differ (or when forced, as FitNet's regressor); identity otherwise."""
    if not force and tuple(student_shape[1:]) == tuple(teacher_shape[1:]):
        return nn.Identity()
    return FeatureAdapter(student_shape, teacher_shape)
